/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libvirt attachment watcher.
 *
 * Threads: libvirt's event loop thread (attach_loop.c) only queues "domain X
 * changed" and wakes the watcher; the watcher's own thread does everything
 * that talks to libvirt (connect with backoff, read domain XML, periodic
 * reconcile) and calls the consumer. So a slow libvirtd never stalls the event
 * loop (which also runs keepalives), and the map needs no lock: only the
 * watcher thread touches it. query() reads libvirt live on the caller's thread.
 *
 * Safety rule: attachment is only ever reported from a successful read of
 * libvirt. Losing the connection, or failing to read a domain, keeps the last
 * known map: a libvirtd restart must never look like a detach, which would
 * start a clean-up of a GPU a VM still uses. What happened while the
 * connection was down is not in any event, so the consumer is told when the
 * watcher stops being current and when a full read makes it current again
 * (sync_changed).
 */
#include <gpuwarden/attach.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "attach_internal.h"
#include "util.h"

#define DEFAULT_URI "qemu:///system"
#define DEFAULT_RECONCILE_MS 30000u
#define DEFAULT_BACKOFF_MIN_MS 500u
#define DEFAULT_BACKOFF_MAX_MS 30000u

typedef struct watched {
    char address[GW_ADDR_LEN];
    char **domains;                 /* as last reported; NULL before the first report */
    char **running;                 /* those of them that were running then */
} watched;

typedef struct dom_entry {
    char uuid[VIR_UUID_STRING_BUFLEN];
    char *name;
    char **addrs;                   /* PCI source addresses, sorted */
    bool active;                    /* running (or paused): a shut-off persistent domain is not */
} dom_entry;

typedef struct dom_map {
    dom_entry *v;
    size_t n;
} dom_map;

typedef struct pending {            /* a domain that an event says changed */
    struct pending *next;
    char uuid[VIR_UUID_STRING_BUFLEN];
} pending;

enum { EV_LIFECYCLE, EV_DEVICE_ADDED, EV_DEVICE_REMOVED, EV_COUNT };

typedef struct lv_source {
    gw_attach_source base;
    atomic_int refs;                /* the handle + one per registered libvirt callback */

    char *uri;
    gw_attach_changed_fn changed;
    gw_attach_state_fn state_changed;
    gw_attach_sync_fn sync_changed;
    void *userdata;
    atomic_uint interval_ms;        /* changed live (gw_attach_libvirt_set_reconcile_interval) */
    unsigned int backoff_min_ms, backoff_max_ms;
    bool no_events, read_write;
    watched *watch;                 /* watcher thread only (the set is changed through next_watch) */
    size_t n_watch;

    pthread_t thread;
    bool thread_started, loop_held;

    pthread_mutex_t lock;           /* guards the fields down to `conn` */
    pthread_cond_t cond;            /* CLOCK_MONOTONIC */
    bool stop, lost, reconcile_requested, synced;
    bool current;                   /* connected, and fully read since (sync_changed) */
    bool connect_now;               /* cut a reconnect backoff short */
    bool resync_requested;          /* report every GPU at the next reconcile */
    bool interval_changed;
    char **next_watch;              /* a new set of GPUs, NULL-terminated, when watch_pending */
    size_t n_next_watch;
    bool watch_pending;
    pending *queue;
    virConnectPtr conn;

    /* Watcher thread only. */
    int event_ids[EV_COUNT];
    dom_map map;
    bool reported;
} lv_source;

static const gw_attach_source_ops lv_ops;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wait on s->cond until deadline (monotonic ms); s->lock held. */
static void timed_wait(lv_source *s, uint64_t deadline)
{
    struct timespec ts = { .tv_sec = (time_t)(deadline / 1000u),
                           .tv_nsec = (long)(deadline % 1000u) * 1000000L };
    pthread_cond_timedwait(&s->cond, &s->lock, &ts);
}

static void dom_entry_clear(dom_entry *e)
{
    free(e->name);
    gw_attach_list_free(e->addrs);
    e->name = NULL;
    e->addrs = NULL;
}

static void dom_map_clear(dom_map *m)
{
    for (size_t i = 0; i < m->n; i++)
        dom_entry_clear(&m->v[i]);
    free(m->v);
    m->v = NULL;
    m->n = 0;
}

static void dom_map_remove(dom_map *m, const char *uuid)
{
    for (size_t i = 0; i < m->n; i++) {
        if (!strcmp(m->v[i].uuid, uuid)) {
            dom_entry_clear(&m->v[i]);
            m->v[i] = m->v[--m->n];
            return;
        }
    }
}

/* Takes ownership of e's strings. */
static void dom_map_put(dom_map *m, dom_entry *e)
{
    dom_map_remove(m, e->uuid);
    m->v = gw_xrealloc(m->v, m->n + 1, sizeof *m->v);
    m->v[m->n++] = *e;
    e->name = NULL;
    e->addrs = NULL;
}

static void source_unref(lv_source *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n_watch; i++) {
        gw_attach_list_free(s->watch[i].domains);
        gw_attach_list_free(s->watch[i].running);
    }
    free(s->watch);
    gw_attach_list_free(s->next_watch);
    dom_map_clear(&s->map);
    while (s->queue) {
        pending *p = s->queue;
        s->queue = p->next;
        free(p);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->uri);
    free(s);
}

/* libvirt calls this when it drops a callback registration. */
static void callback_released(void *opaque)
{
    source_unref(opaque);
}

/* ---- reading domains ---------------------------------------------------- */

static int merge_xml(lv_source *s, virDomainPtr d, unsigned int flags, dom_entry *e)
{
    _cleanup_free_ char *xml = sym_virDomainGetXMLDesc(d, flags);
    if (!xml) {
        if (sym_virGetLastErrorCode() == VIR_ERR_NO_DOMAIN)
            return -ENOENT;     /* vanished meanwhile: not an error */
        return gw_error_set(-EIO, "libvirt %s: domain %s: cannot read its XML: %s",
                            s->uri, e->name, sym_virGetLastErrorMessage());
    }
    char **addrs;
    int r = gw_domain_xml_pci_sources(xml, strlen(xml), &addrs, NULL);
    if (r < 0)
        return gw_error_set(r, "libvirt %s: domain %s: %s", s->uri, e->name, gw_error_message());
    size_t n = 0;
    while (e->addrs[n])
        n++;
    for (char **a = addrs; *a; a++)
        gw_attach_list_add(&e->addrs, &n, *a);
    gw_attach_list_sort(e->addrs, n);
    gw_attach_list_free(addrs);
    return 0;
}

/*
 * A running domain uses its live definition; a persistent one may also hold
 * a different next-boot definition. Both reference the device.
 */
static int read_domain(lv_source *s, virDomainPtr d, dom_entry *e)
{
    *e = (dom_entry){ 0 };
    if (sym_virDomainGetUUIDString(d, e->uuid) < 0)
        return gw_error_set(-EIO, "libvirt %s: cannot read a domain's UUID: %s", s->uri,
                            sym_virGetLastErrorMessage());
    const char *name = sym_virDomainGetName(d);
    e->name = gw_xstrdup(name ? name : e->uuid);
    e->addrs = gw_attach_list_empty();
    int active = sym_virDomainIsActive(d);
    if (active < 0) {
        int code = sym_virGetLastErrorCode();
        dom_entry_clear(e);
        if (code == VIR_ERR_NO_DOMAIN)
            return -ENOENT;     /* vanished meanwhile: not an error */
        return gw_error_set(-EIO, "libvirt %s: domain %s: cannot tell whether it runs: %s", s->uri,
                            name ? name : e->uuid, sym_virGetLastErrorMessage());
    }
    e->active = active == 1;
    int r = merge_xml(s, d, 0, e);
    if (r == 0 && e->active && sym_virDomainIsPersistent(d) == 1)
        r = merge_xml(s, d, VIR_DOMAIN_XML_INACTIVE, e);
    if (r < 0)
        dom_entry_clear(e);
    return r;
}

/* Every domain, running or not. On failure `out` is untouched. */
static int read_all_domains(lv_source *s, virConnectPtr c, dom_map *out)
{
    virDomainPtr *doms = NULL;
    int n = sym_virConnectListAllDomains(c, &doms, 0);
    if (n < 0)
        return gw_error_set(-EIO, "libvirt %s: cannot list domains: %s", s->uri,
                            sym_virGetLastErrorMessage());
    dom_map m = { 0 };
    int r = 0;
    for (int i = 0; i < n; i++) {
        dom_entry e;
        if (r == 0) {
            int rr = read_domain(s, doms[i], &e);
            if (rr == 0)
                dom_map_put(&m, &e);
            else if (rr != -ENOENT)     /* vanished meanwhile: fine */
                r = rr;
        }
        sym_virDomainFree(doms[i]);
    }
    free(doms);
    if (r < 0) {
        dom_map_clear(&m);
        return r;
    }
    dom_map_clear(out);
    *out = m;
    return 0;
}

/* Sorted names of the domains in `m` that reference the slot of `address`
 * (only the running ones when `active_only`). */
static char **names_for(const dom_map *m, const char *address, bool active_only, size_t *count)
{
    char **names = gw_attach_list_empty();
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (active_only && !m->v[i].active)
            continue;
        for (char **a = m->v[i].addrs; *a; a++)
            if (gw_attach_same_slot(*a, address)) {
                gw_attach_list_add(&names, &n, m->v[i].name);
                break;
            }
    }
    gw_attach_list_sort(names, n);
    if (count)
        *count = n;
    return names;
}

/* ---- reporting ----------------------------------------------------------- */

/* "a, b" into buf. */
static const char *joined(char *const *names, char *buf, size_t size)
{
    buf[0] = '\0';
    for (size_t k = 0, len = 0; names[k] && len < size; k++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", k ? ", " : "", names[k]);
    return buf;
}

static void report(lv_source *s)
{
    if (!s->reported)
        return;
    for (size_t i = 0; i < s->n_watch; i++) {
        watched *w = &s->watch[i];
        size_t n, n_run;
        char **now = names_for(&s->map, w->address, false, &n);
        char **run = names_for(&s->map, w->address, true, &n_run);
        bool names_changed = !w->domains || !gw_attach_list_equal(now, w->domains);
        bool running_changed = !w->running || !gw_attach_list_equal(run, w->running);
        if (!names_changed && !running_changed) {
            gw_attach_list_free(now);
            gw_attach_list_free(run);
            continue;
        }
        gw_attach_list_free(w->domains);
        gw_attach_list_free(w->running);
        w->domains = now;
        w->running = run;
        char names[512], running[512];
        gw_log(GW_LOG_INFO, "libvirt %s: %s referenced by %s%s%s%s", s->uri, w->address,
               n ? joined(now, names, sizeof names) : "no domain", n ? " (running: " : "",
               n ? (n_run ? joined(run, running, sizeof running) : "none") : "", n ? ")" : "");
        if (s->changed && names_changed)
            s->changed(w->address, (const char *const *)now, n, s->userdata);
        if (s->state_changed)
            s->state_changed(w->address, (const char *const *)now, n, (const char *const *)run, n_run,
                             s->userdata);
    }
}

/* Current again (or for the first time): after a full read, whose reports
 * have just been made. */
static void become_current(lv_source *s)
{
    pthread_mutex_lock(&s->lock);
    bool was = s->current;
    s->current = true;
    s->synced = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (was)
        return;
    gw_log(GW_LOG_NOTICE, "libvirt %s: every domain read: the attachment of the %zu watched GPU(s) is current",
           s->uri, s->n_watch);
    if (s->sync_changed)
        s->sync_changed(true, s->userdata);
}

/* The connection is gone: whatever happens in libvirt from now on is unseen
 * until a full read after the reconnection. */
static void lose_currency(lv_source *s)
{
    pthread_mutex_lock(&s->lock);
    bool was = s->current;
    s->current = false;
    pthread_mutex_unlock(&s->lock);
    if (was && s->sync_changed)
        s->sync_changed(false, s->userdata);
}

static int reconcile(lv_source *s, virConnectPtr c)
{
    int r = read_all_domains(s, c, &s->map);
    if (r < 0) {
        gw_log(GW_LOG_WARNING, "%s (keeping the last known attachments)", gw_error_message());
        return r;
    }
    s->reported = true;
    report(s);
    become_current(s);
    return 0;
}

/* Take a new set of watched GPUs: those kept keep what was last reported
 * of them (no report unless it changes), new ones have nothing (reported at
 * the next reconcile). Watcher thread. */
static void apply_watch(lv_source *s, char **next, size_t n)
{
    watched *w = gw_xcalloc(n, sizeof *w);
    for (size_t i = 0; i < n; i++) {
        memcpy(w[i].address, next[i], GW_ADDR_LEN);
        for (size_t k = 0; k < s->n_watch; k++) {
            if (!strcmp(s->watch[k].address, next[i])) {
                w[i].domains = s->watch[k].domains;
                w[i].running = s->watch[k].running;
                s->watch[k].domains = s->watch[k].running = NULL;
                break;
            }
        }
    }
    for (size_t k = 0; k < s->n_watch; k++) {
        gw_attach_list_free(s->watch[k].domains);
        gw_attach_list_free(s->watch[k].running);
    }
    free(s->watch);
    s->watch = w;
    s->n_watch = n;
    gw_log(GW_LOG_INFO, "libvirt %s: watching %zu GPU(s)", s->uri, n);
}

/* Report every GPU at the next successful read, changed or not. */
static void forget_reports(lv_source *s)
{
    for (size_t i = 0; i < s->n_watch; i++) {
        gw_attach_list_free(s->watch[i].domains);
        gw_attach_list_free(s->watch[i].running);
        s->watch[i].domains = s->watch[i].running = NULL;
    }
}

/* Re-read one domain after an event. */
static int refresh_domain(lv_source *s, virConnectPtr c, const char *uuid)
{
    virDomainPtr d = sym_virDomainLookupByUUIDString(c, uuid);
    if (!d) {
        if (sym_virGetLastErrorCode() == VIR_ERR_NO_DOMAIN) {
            dom_map_remove(&s->map, uuid);
            return 0;
        }
        return gw_error_set(-EIO, "libvirt %s: domain %s: lookup failed: %s", s->uri, uuid,
                            sym_virGetLastErrorMessage());
    }
    dom_entry e;
    int r = read_domain(s, d, &e);
    sym_virDomainFree(d);
    if (r == -ENOENT) {
        dom_map_remove(&s->map, uuid);
        return 0;
    }
    if (r < 0)
        return r;
    dom_map_put(&s->map, &e);
    return 0;
}

/* ---- libvirt callbacks (event loop thread) ------------------------------- */

static void enqueue(lv_source *s, virDomainPtr dom)
{
    pending *p = gw_xcalloc(1, sizeof *p);
    if (sym_virDomainGetUUIDString(dom, p->uuid) < 0) {
        free(p);
        pthread_mutex_lock(&s->lock);
        s->reconcile_requested = true;      /* cannot tell which: read them all */
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    pthread_mutex_lock(&s->lock);
    pending **tail = &s->queue;
    while (*tail && strcmp((*tail)->uuid, p->uuid))
        tail = &(*tail)->next;
    if (*tail)
        free(p);        /* already queued: one re-read covers both events */
    else
        *tail = p;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static int on_lifecycle(virConnectPtr c, virDomainPtr dom, int event, int detail, void *opaque)
{
    gw_log(GW_LOG_DEBUG, "libvirt: domain %s: lifecycle event %d/%d", sym_virDomainGetName(dom), event,
           detail);
    enqueue(opaque, dom);
    return 0;
}

static void on_device(virConnectPtr c, virDomainPtr dom, const char *alias, void *opaque)
{
    gw_log(GW_LOG_DEBUG, "libvirt: domain %s: device %s added or removed", sym_virDomainGetName(dom),
           alias);
    enqueue(opaque, dom);
}

static void on_close(virConnectPtr c, int reason, void *opaque)
{
    lv_source *s = opaque;
    pthread_mutex_lock(&s->lock);
    s->lost = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    gw_log(GW_LOG_WARNING, "libvirt %s: connection closed (reason %d)", s->uri, reason);
}

/* ---- connection ---------------------------------------------------------- */

static void disconnect(lv_source *s)
{
    pthread_mutex_lock(&s->lock);
    virConnectPtr c = s->conn;
    s->conn = NULL;
    pthread_mutex_unlock(&s->lock);
    if (!c)
        return;
    for (int i = 0; i < EV_COUNT; i++) {
        if (s->event_ids[i] >= 0 && sym_virConnectDomainEventDeregisterAny(c, s->event_ids[i]) < 0)
            gw_log(GW_LOG_DEBUG, "libvirt %s: deregistering an event: %s", s->uri,
                   sym_virGetLastErrorMessage());
        s->event_ids[i] = -1;
    }
    sym_virConnectUnregisterCloseCallback(c, on_close);
    sym_virConnectClose(c);
}

static int register_event(lv_source *s, virConnectPtr c, int slot, int id, virConnectDomainEventGenericCallback cb)
{
    atomic_fetch_add(&s->refs, 1);
    int r = sym_virConnectDomainEventRegisterAny(c, NULL, id, cb, s, callback_released);
    if (r < 0) {
        source_unref(s);    /* libvirt did not keep it */
        return gw_error_set(-EIO, "libvirt %s: cannot register for domain events: %s", s->uri,
                            sym_virGetLastErrorMessage());
    }
    s->event_ids[slot] = r;
    return 0;
}

static int connect_libvirt(lv_source *s)
{
    virConnectPtr c = s->read_write ? sym_virConnectOpen(s->uri) : sym_virConnectOpenReadOnly(s->uri);
    if (!c)
        return gw_error_set(-ENOTCONN, "libvirt %s: cannot connect: %s", s->uri,
                            sym_virGetLastErrorMessage());
    pthread_mutex_lock(&s->lock);
    s->lost = false;
    s->conn = c;
    pthread_mutex_unlock(&s->lock);
    if (sym_virConnectRegisterCloseCallback(c, on_close, s, NULL) < 0)
        gw_log(GW_LOG_WARNING, "libvirt %s: no close callback (%s): a lost connection is seen at the next reconcile",
               s->uri, sym_virGetLastErrorMessage());
    if (s->no_events)
        return 0;
    int r;
    if ((r = register_event(s, c, EV_LIFECYCLE, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                            VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle))) < 0) {
        disconnect(s);
        return r;
    }
    /* Hotplug changes a running domain without a lifecycle event. Drivers
     * without hotplug may refuse these; lifecycle events and the reconcile
     * still cover them. */
    if (register_event(s, c, EV_DEVICE_ADDED, VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
                       VIR_DOMAIN_EVENT_CALLBACK(on_device)) < 0 ||
        register_event(s, c, EV_DEVICE_REMOVED, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                       VIR_DOMAIN_EVENT_CALLBACK(on_device)) < 0)
        gw_log(GW_LOG_DEBUG, "%s", gw_error_message());
    return 0;
}

/* ---- the watcher thread -------------------------------------------------- */

static bool queued(const pending *list, const pending *upto, const char *uuid)
{
    for (const pending *p = list; p != upto; p = p->next)
        if (!strcmp(p->uuid, uuid))
            return true;
    return false;
}

/* Returns false when a refresh failed and a full reconcile is needed. */
static bool process_events(lv_source *s, pending *list)
{
    pthread_mutex_lock(&s->lock);
    virConnectPtr c = s->conn;
    pthread_mutex_unlock(&s->lock);
    bool ok = true;
    for (pending *p = list; p; p = p->next) {
        if (queued(list, p, p->uuid))
            continue;       /* one read per domain and batch */
        if (refresh_domain(s, c, p->uuid) < 0) {
            gw_log(GW_LOG_WARNING, "%s", gw_error_message());
            ok = false;
        }
    }
    while (list) {
        pending *p = list;
        list = p->next;
        free(p);
    }
    report(s);
    return ok;
}

static bool connection_dead(lv_source *s)
{
    pthread_mutex_lock(&s->lock);
    virConnectPtr c = s->conn;
    pthread_mutex_unlock(&s->lock);
    return !c || sym_virConnectIsAlive(c) != 1;
}

/* The backoff between reconnect attempts: until deadline, stopped, or asked
 * to try now (a reconcile request: somebody needs libvirt's answer, e.g.
 * the hook, which runs only while libvirtd is up). */
static void backoff_until(lv_source *s, uint64_t deadline)
{
    pthread_mutex_lock(&s->lock);
    while (!s->stop && !s->connect_now && now_ms() < deadline)
        timed_wait(s, deadline);
    s->connect_now = false;
    pthread_mutex_unlock(&s->lock);
}

static bool try_connect(lv_source *s, unsigned int *backoff, unsigned int *failures)
{
    pthread_mutex_lock(&s->lock);
    s->connect_now = false;     /* this attempt answers the requests so far */
    pthread_mutex_unlock(&s->lock);
    if (connect_libvirt(s) < 0) {
        (*failures)++;
        gw_log(*failures == 1 || *failures % 10 == 0 ? GW_LOG_WARNING : GW_LOG_DEBUG,
               "%s; retrying in %u ms (attempt %u)", gw_error_message(), *backoff, *failures);
        backoff_until(s, now_ms() + *backoff);
        *backoff = *backoff > s->backoff_max_ms / 2 ? s->backoff_max_ms : *backoff * 2;
        return false;
    }
    gw_log(GW_LOG_NOTICE, "libvirt %s: connected%s, watching %zu GPU(s)", s->uri,
           s->no_events ? " (reconcile only)" : "", s->n_watch);
    *backoff = s->backoff_min_ms;
    *failures = 0;
    return true;
}

static void *watcher_main(void *arg)
{
    lv_source *s = arg;
    unsigned int backoff = s->backoff_min_ms, failures = 0;
    uint64_t next_reconcile = 0;
    bool connected = false;

    for (;;) {
        if (!connected) {
            pthread_mutex_lock(&s->lock);
            bool stop = s->stop;
            pthread_mutex_unlock(&s->lock);
            if (stop)
                break;
            if (!(connected = try_connect(s, &backoff, &failures)))
                continue;
            next_reconcile = 0;     /* events were missed while away */
        }

        pthread_mutex_lock(&s->lock);
        while (!s->stop && !s->lost && !s->reconcile_requested && !s->queue && !s->watch_pending &&
               !s->resync_requested && !s->interval_changed && now_ms() < next_reconcile)
            timed_wait(s, next_reconcile);
        if (s->stop || s->lost) {
            /* A new watch set or a resync waits for the next connection. */
            bool stop = s->stop;
            pending *list = s->queue;
            s->queue = NULL;
            pthread_mutex_unlock(&s->lock);
            while (list) {
                pending *p = list;
                list = p->next;
                free(p);
            }
            if (stop)
                break;
            gw_log(GW_LOG_WARNING, "libvirt %s: connection lost; reconnecting", s->uri);
            lose_currency(s);
            disconnect(s);
            connected = false;
            continue;
        }
        bool requested = s->reconcile_requested, resync = s->resync_requested;
        pending *list = s->queue;
        char **next_watch = s->watch_pending ? s->next_watch : NULL;
        size_t n_next = s->n_next_watch;
        if (s->interval_changed) {
            uint64_t sooner = now_ms() + atomic_load(&s->interval_ms);
            if (sooner < next_reconcile)
                next_reconcile = sooner;
        }
        s->queue = NULL;
        s->reconcile_requested = s->resync_requested = s->interval_changed = s->watch_pending = false;
        s->next_watch = NULL;
        s->n_next_watch = 0;
        pthread_mutex_unlock(&s->lock);

        bool need = requested || resync || now_ms() >= next_reconcile;
        if (next_watch) {
            apply_watch(s, next_watch, n_next);
            gw_attach_list_free(next_watch);
            need = true;
        }
        if (list && !process_events(s, list))
            need = true;
        if (!need)
            continue;
        if (resync)
            forget_reports(s);
        pthread_mutex_lock(&s->lock);
        virConnectPtr c = s->conn;
        pthread_mutex_unlock(&s->lock);
        unsigned int interval = atomic_load(&s->interval_ms);
        if (reconcile(s, c) < 0) {
            if (connection_dead(s)) {
                gw_log(GW_LOG_WARNING, "libvirt %s: connection dead; reconnecting", s->uri);
                lose_currency(s);
                disconnect(s);
                connected = false;
                continue;
            }
            /* Alive but failing (a domain we cannot read): retry soon. */
            next_reconcile = now_ms() + (s->backoff_min_ms < interval ? s->backoff_min_ms : interval);
            continue;
        }
        next_reconcile = now_ms() + interval;
    }
    disconnect(s);
    return NULL;
}

/* ---- the vtable ---------------------------------------------------------- */

static lv_source *as_libvirt(gw_attach_source *src)
{
    return src && src->ops == &lv_ops ? (lv_source *)src : NULL;
}

static virConnectPtr ref_connection(lv_source *s)
{
    pthread_mutex_lock(&s->lock);
    virConnectPtr c = s->conn;
    if (c && sym_virConnectRef(c) < 0)
        c = NULL;
    pthread_mutex_unlock(&s->lock);
    return c;
}

static int lv_query(gw_attach_source *src, const char *address, char ***out)
{
    lv_source *s = (lv_source *)src;
    virConnectPtr c = ref_connection(s);
    if (!c)
        return gw_error_set(-ENOTCONN, "libvirt %s: not connected, cannot tell who uses %s", s->uri,
                            address);
    dom_map m = { 0 };
    int r = read_all_domains(s, c, &m);
    sym_virConnectClose(c);
    if (r < 0)
        return r;
    *out = names_for(&m, address, false, NULL);
    dom_map_clear(&m);
    return 0;
}

static int lv_reconcile(gw_attach_source *src)
{
    lv_source *s = (lv_source *)src;
    pthread_mutex_lock(&s->lock);
    s->reconcile_requested = true;
    s->connect_now = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void lv_free(gw_attach_source *src)
{
    lv_source *s = (lv_source *)src;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    if (s->loop_held)
        gw_virt_loop_release();
    source_unref(s);
}

static const gw_attach_source_ops lv_ops = {
    .version = GW_ATTACH_SOURCE_OPS_VERSION,
    .name = "libvirt",
    .query = lv_query,
    .reconcile = lv_reconcile,
    .free = lv_free,
};

static int check_options(const gw_attach_libvirt_options *o)
{
    if (!o)
        return 0;
    if (o->version < 1 || o->version > GW_ATTACH_LIBVIRT_OPTIONS_VERSION)
        return gw_error_set(-EINVAL, "libvirt watcher: options version %u, expected 1 to %u", o->version,
                            GW_ATTACH_LIBVIRT_OPTIONS_VERSION);
    if (o->uri && !o->uri[0])
        return gw_error_set(-EINVAL, "libvirt watcher: empty URI");
    if (o->n_watch && !o->watch)
        return gw_error_set(-EINVAL, "libvirt watcher: n_watch is %zu but watch is NULL", o->n_watch);
    for (size_t i = 0; i < o->n_watch; i++)
        if (!o->watch[i] || !gw_is_bdf(o->watch[i]))
            return gw_error_set(-EINVAL, "libvirt watcher: watched address '%s' is not dddd:bb:dd.f",
                                o->watch[i] ? o->watch[i] : "(null)");
    return 0;
}

GW_EXTERN int gw_attach_libvirt_new(gw_attach_source **out, const gw_attach_libvirt_options *opts)
{
    if (!out)
        return gw_error_set(-EINVAL, "libvirt watcher: no output pointer");
    *out = NULL;
    int r = check_options(opts);
    if (r < 0)
        return r;
    /* libvirt is loaded here, not at process start (libvirt_dl.h). */
    if ((r = gw_libvirt_dlopen()) < 0)
        return r;
    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    if (opts && opts->version == 1)
        memcpy(&o, opts, offsetof(gw_attach_libvirt_options, state_changed));  /* a version-1 struct ends there */
    else if (opts && opts->version == 2)
        memcpy(&o, opts, offsetof(gw_attach_libvirt_options, sync_changed));   /* a version-2 struct ends there */
    else if (opts)
        o = *opts;

    lv_source *s = gw_xcalloc(1, sizeof *s);
    s->base.ops = &lv_ops;
    atomic_init(&s->refs, 1);
    s->uri = gw_xstrdup(o.uri ? o.uri : DEFAULT_URI);
    s->changed = o.changed;
    s->state_changed = o.state_changed;
    s->sync_changed = o.sync_changed;
    s->userdata = o.userdata;
    atomic_init(&s->interval_ms, o.reconcile_interval_ms ? o.reconcile_interval_ms : DEFAULT_RECONCILE_MS);
    s->backoff_min_ms = o.reconnect_min_ms ? o.reconnect_min_ms : DEFAULT_BACKOFF_MIN_MS;
    s->backoff_max_ms = o.reconnect_max_ms ? o.reconnect_max_ms : DEFAULT_BACKOFF_MAX_MS;
    if (s->backoff_max_ms < s->backoff_min_ms)
        s->backoff_max_ms = s->backoff_min_ms;
    s->no_events = o.no_events;
    s->read_write = o.read_write;
    s->watch = gw_xcalloc(o.n_watch, sizeof *s->watch);
    s->n_watch = o.n_watch;
    for (size_t i = 0; i < o.n_watch; i++)
        memcpy(s->watch[i].address, o.watch[i], GW_ADDR_LEN);
    for (int i = 0; i < EV_COUNT; i++)
        s->event_ids[i] = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);

    if ((r = gw_virt_loop_acquire()) < 0) {
        lv_free(&s->base);
        return r;
    }
    s->loop_held = true;
    int e = pthread_create(&s->thread, NULL, watcher_main, s);
    if (e) {
        lv_free(&s->base);
        return gw_error_set(-e, "libvirt watcher: cannot start its thread: %s", strerror(e));
    }
    s->thread_started = true;
    *out = &s->base;
    return 0;
}

GW_EXTERN int gw_attach_libvirt_wait_synced(gw_attach_source *src, unsigned int timeout_ms)
{
    lv_source *s = as_libvirt(src);
    if (!s)
        return gw_error_set(-EINVAL, "wait synced: not a libvirt watcher");
    uint64_t deadline = now_ms() + timeout_ms;
    pthread_mutex_lock(&s->lock);
    while (!s->synced && now_ms() < deadline)
        timed_wait(s, deadline);
    bool synced = s->synced;
    pthread_mutex_unlock(&s->lock);
    return synced ? 0 : gw_error_set(-ETIMEDOUT, "libvirt %s: no reconcile within %u ms", s->uri,
                                     timeout_ms);
}

GW_EXTERN bool gw_attach_libvirt_connected(gw_attach_source *src)
{
    lv_source *s = as_libvirt(src);
    if (!s)
        return false;
    pthread_mutex_lock(&s->lock);
    bool c = s->conn != NULL;
    pthread_mutex_unlock(&s->lock);
    return c;
}

GW_EXTERN bool gw_attach_libvirt_current(gw_attach_source *src)
{
    lv_source *s = as_libvirt(src);
    if (!s)
        return false;
    pthread_mutex_lock(&s->lock);
    bool c = s->current;
    pthread_mutex_unlock(&s->lock);
    return c;
}

GW_EXTERN int gw_attach_libvirt_watch(gw_attach_source *src, const char *const *watch, size_t n_watch)
{
    lv_source *s = as_libvirt(src);
    if (!s)
        return gw_error_set(-EINVAL, "watch: not a libvirt watcher");
    if (n_watch && !watch)
        return gw_error_set(-EINVAL, "libvirt watcher: n_watch is %zu but watch is NULL", n_watch);
    char **next = gw_attach_list_empty();
    size_t n = 0;
    for (size_t i = 0; i < n_watch; i++) {
        if (!watch[i] || !gw_is_bdf(watch[i])) {
            gw_attach_list_free(next);
            return gw_error_set(-EINVAL, "libvirt watcher: watched address '%s' is not dddd:bb:dd.f",
                                watch[i] ? watch[i] : "(null)");
        }
        gw_attach_list_add(&next, &n, watch[i]);
    }
    pthread_mutex_lock(&s->lock);
    gw_attach_list_free(s->next_watch);     /* a set not yet taken: this one replaces it */
    s->next_watch = next;
    s->n_next_watch = n;
    s->watch_pending = true;
    s->connect_now = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

GW_EXTERN int gw_attach_libvirt_resync(gw_attach_source *src)
{
    lv_source *s = as_libvirt(src);
    if (!s)
        return gw_error_set(-EINVAL, "resync: not a libvirt watcher");
    pthread_mutex_lock(&s->lock);
    s->resync_requested = true;
    s->connect_now = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

GW_EXTERN int gw_attach_libvirt_set_reconcile_interval(gw_attach_source *src, unsigned int interval_ms)
{
    lv_source *s = as_libvirt(src);
    if (!s)
        return gw_error_set(-EINVAL, "reconcile interval: not a libvirt watcher");
    atomic_store(&s->interval_ms, interval_ms ? interval_ms : DEFAULT_RECONCILE_MS);
    pthread_mutex_lock(&s->lock);
    s->interval_changed = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

virConnectPtr gw_attach_libvirt_connection(gw_attach_source *src)
{
    lv_source *s = as_libvirt(src);
    return s ? ref_connection(s) : NULL;
}

void gw_attach_libvirt_connection_lost(gw_attach_source *src, int reason)
{
    lv_source *s = as_libvirt(src);
    if (s)
        on_close(NULL, reason, s);
}
