/* SPDX-License-Identifier: Apache-2.0 */
/* Which VMs hold which GPU. The libvirt watcher reports the set of domains
 * referencing each managed GPU (and which of them run); this module keeps
 * that view and turns changes into lifecycle events: referenced -> attach
 * seen; no longer referenced -> detach seen, which makes the GPU dirty and
 * wakes the main loop to start its clean-up. Without libvirt the hook's hints
 * feed the same function. A GPU held only by domains that do not run is
 * reserved in the inventory (see "Stopped domains").
 *
 * The gate needs to know whether a VM got the GPU clean: attach seen always
 * marks a GPU dirty, whatever it was before. So the attach also pins
 * "attach.domain" and "attach.clean": "1" when the GPU was clean
 * (allocatable or sanitized), "pending" when a domain was defined on it while
 * its clean-up ran (cleanup.c settles it with the verdict), else "0". The
 * gate reads them back, also after a restart.
 *
 * What is known (see "Unknown attachment"): the watcher is told about every
 * managed GPU, whenever it became managed, and says when its view is current.
 * While it is not, nobody may act on the view: no clean-up, no promotion,
 * and the gate refuses. */
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "proto_codec.h"
#include "util.h"

void gwd_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* Split "a, b,c" into a NULL-terminated list: the policy's lists at the
 * start (main.c), the extra traits again on a reload (loop.c). */
char **gwd_split_list(const char *s)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    char **v = gw_xcalloc(cap + 1, sizeof *v);
    size_t n = 0;
    _cleanup_free_ char *copy = gw_xstrdup(s);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
        v[n++] = gw_xstrdup(tok);
    return v;
}

char **gwd_strv_copy(const char *const *v, size_t n)
{
    char **c = gw_xcalloc(n + 1, sizeof *c);
    for (size_t i = 0; i < n; i++)
        c[i] = gw_xstrdup(v[i]);
    return c;
}

char **gwd_strv_without(char *const *v, const char *drop, size_t *n)
{
    size_t len = 0;
    while (v && v[len])
        len++;
    char **out = gw_xcalloc(len + 1, sizeof *out);
    *n = 0;
    for (size_t i = 0; i < len; i++)
        if (strcmp(v[i], drop))
            out[(*n)++] = gw_xstrdup(v[i]);
    return out;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool strv_has(char *const *v, const char *s)
{
    for (; v && *v; v++)
        if (!strcmp(*v, s))
            return true;
    return false;
}

/* Remove `s` from the NULL-terminated list *v (owned), if there. */
static void strv_drop(char **v, const char *s)
{
    for (size_t i = 0; v && v[i]; i++) {
        if (!strcmp(v[i], s)) {
            free(v[i]);
            for (size_t k = i; v[k]; k++)
                v[k] = v[k + 1];
            return;
        }
    }
}

/* Add `s` to the NULL-terminated list *v (owned; NULL is empty), if not there. */
static void strv_put(char ***v, const char *s)
{
    if (strv_has(*v, s))
        return;
    size_t n = 0;
    while (*v && (*v)[n])
        n++;
    *v = gw_xrealloc(*v, n + 2, sizeof **v);
    (*v)[n] = gw_xstrdup(s);
    (*v)[n + 1] = NULL;
}

static gwd_attachment *find(gwd *d, const char *address)
{
    for (size_t i = 0; i < d->n_attachments; i++)
        if (!strcmp(d->attachments[i].address, address))
            return &d->attachments[i];
    return NULL;
}

char *const *gwd_attachment_domains(gwd *d, const char *address)
{
    gwd_attachment *a = find(d, address);
    return a && a->domains && a->domains[0] ? a->domains : NULL;
}

/* ---- Unknown attachment ---------------------------------------------------
 * The view is the watcher's last report. It says nothing of a GPU the watcher
 * has not reported yet (managed after the start: hot-plugged, bound to
 * vfio-pci later, or managed by a changed policy), nor of anything that
 * happened while the watcher was not connected: libvirtd restarting, or the
 * watcher's reconnect backoff (up to 30 s), in which a VM may start on a GPU
 * and end without a single event reaching us. So, with libvirt:
 *
 * - every scan hands the managed set to the watcher (gwd_attachment_follow),
 *   which reports a new GPU after its next full read;
 * - the watcher says when it stops being current (connection lost) and when
 *   a full read makes it current again (on_sync);
 * - while a GPU's attachment is unknown, no clean-up starts
 *   (gwd_attachment_ready: a VM could hold it), no GPU is promoted to
 *   allocatable, and the gate refuses it, saying why (ops.c);
 * - the hook still reaches the daemon meanwhile: a hint naming a domain the
 *   watcher never reported on the GPU (one that came and went unseen) counts
 *   as an attach by that domain, and the watcher is asked for a full report,
 *   whose "nobody" then makes the GPU dirty and starts its clean-up. */

static bool reported(gwd *d, const char *address)
{
    gwd_attachment *a = find(d, address);
    return a && a->reported;
}

bool gwd_attachment_ready(gwd *d)
{
    if (!d->attach)
        return true;
    if (!d->attach_current)
        return false;
    for (char **m = d->managed; m && *m; m++)
        if (!reported(d, *m))
            return false;
    return true;
}

const char *gwd_attachment_unknown(gwd *d, const char *address)
{
    if (!d->attach)
        return NULL;
    if (!d->attach_current)
        return gw_attach_libvirt_connected(d->attach)
                   ? "the libvirt watcher has not read libvirt since it connected"
                   : "the libvirt watcher is not connected to libvirt (reconnecting)";
    if (!reported(d, address))
        return "libvirt has not been read since the GPU became managed";
    return NULL;
}

/* ---- Stopped domains -------------------------------------------------------
 * A persistent domain that is shut off still references its GPU until it is
 * undefined: the GPU stays attached and no clean-up runs. Nova keeps a stopped
 * instance's Placement allocation, and when it deletes the instance it
 * undefines the domain and then deletes the allocation, with no qemu hook in
 * between (nothing is released: the domain is not running). Were the GPU
 * "attached, not reserved" until then, Placement would show it free from that
 * DELETE until the driver hears of the undefine (the watcher's detach, the
 * driver's sync), while it is dirty. So a GPU referenced only by domains that
 * do not run is reserved in the inventory from the moment its domain stops
 * (Placement takes reserved on top of the allocation; the attach handle stays,
 * Cyborg has bound it to the stopped instance's request), and the hook's
 * `release end`, which libvirt runs inside the stop, waits until Placement
 * shows that.
 *
 * Who says whether a domain runs: the watcher (on every event and
 * reconcile), and earlier the hook: `release end` runs inside the destroy,
 * before the watcher can read the domain, and `released` answers with the
 * revision that shows the reservation. The hook's word is kept as an override
 * (said_stopped / said_running) until the watcher agrees or the domain leaves
 * the GPU; a said_running also ends when the watcher sees the domain stop. A
 * said_stopped is not ended by a report that shows the domain running: that
 * report may rest on a read from before the destroy, and a real start comes
 * with the hook's `started`, which replaces it. Either way a mistake reserves
 * too much (Placement under-offers), never too little.
 *
 * Without libvirt `release end` detaches (the hint is all the daemon knows),
 * so a GPU is never "stopped" there. */

/* Referenced, and by no domain that runs, the hook's word first. */
static bool held_by_stopped_only(const gwd_attachment *a)
{
    if (!a->domains || !a->domains[0])
        return false;
    for (char **dm = a->domains; *dm; dm++) {
        if (strv_has(a->said_running, *dm))
            return false;
        if (strv_has(a->running, *dm) && !strv_has(a->said_stopped, *dm))
            return false;
    }
    return true;
}

bool gwd_attachment_stopped(gwd *d, const char *address)
{
    /* From the view itself, not the flag last announced: an inventory built
     * between a change and its announcement already shows it. */
    gwd_attachment *a = find(d, address);
    return a && held_by_stopped_only(a);
}

static void set_view(gwd *d, const char *address, const char *const *domains, size_t n,
                     const char *const *running, size_t n_running)
{
    gwd_attachment *a = find(d, address);
    if (!a) {
        d->attachments = gw_xrealloc(d->attachments, d->n_attachments + 1, sizeof *d->attachments);
        a = &d->attachments[d->n_attachments++];
        memset(a, 0, sizeof *a);
        snprintf(a->address, sizeof a->address, "%s", address);
    }
    char **was_running = a->running;
    gwd_strv_free(a->domains);
    a->domains = gwd_strv_copy(domains, n);
    a->running = gwd_strv_copy(running, n_running);
    /* The watcher's report against the hook's word (see above). */
    for (size_t i = 0; a->said_stopped && a->said_stopped[i];) {
        const char *dm = a->said_stopped[i];
        if (!strv_has(a->domains, dm) || !strv_has(a->running, dm))
            strv_drop(a->said_stopped, dm);
        else
            i++;
    }
    for (size_t i = 0; a->said_running && a->said_running[i];) {
        const char *dm = a->said_running[i];
        if (!strv_has(a->domains, dm) || strv_has(a->running, dm) ||
            (strv_has(was_running, dm) && !strv_has(a->running, dm)))
            strv_drop(a->said_running, dm);
        else
            i++;
    }
    gwd_strv_free(was_running);
}

typedef struct attachment_event {
    gwd *d;
    const char *address, *domain;
    bool stopped;
} attachment_event;

static void pack_attachment(void *pkv, uint64_t seq, void *userdata)
{
    msgpack_packer *pk = pkv;
    const attachment_event *e = userdata;
    gw_proto_pack_event_head(pk, seq, (uint64_t)e->d->boot_ms, (uint64_t)gwd_now_ms(), "attachment", e->address, 2);
    gw_proto_pack_cstr(pk, "domain");
    gw_proto_pack_cstr(pk, e->domain);
    gw_proto_pack_cstr(pk, "stopped");
    if (e->stopped)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

/* After a change of the view: when the GPU's "held by stopped domains only"
 * changed, say so (log, and an `attachment` event, on which the Cyborg driver
 * reads the inventory again: its `reserved` changed). Takes d->lock. */
static void announce_stopped(gwd *d, const char *address)
{
    pthread_mutex_lock(&d->lock);
    gwd_attachment *a = find(d, address);
    bool now = a && held_by_stopped_only(a);
    if (!a || now == a->stopped) {
        pthread_mutex_unlock(&d->lock);
        return;
    }
    a->stopped = now;
    _cleanup_free_ char *domain = a->domains && a->domains[0] ? gw_xstrdup(a->domains[0]) : NULL;
    pthread_mutex_unlock(&d->lock);
    if (now)
        gw_log(GW_LOG_NOTICE, "%s: domain '%s' does not run: reserved in the inventory until it runs again or "
                              "is undefined", address, domain);
    else
        gw_log(GW_LOG_NOTICE, "%s: %s%s%s", address, domain ? "domain '" : "no domain references it",
               domain ? domain : "", domain ? "' runs" : "");
    attachment_event e = { d, address, domain, now };
    gwd_event_publish(d, "attachment", address, pack_attachment, &e);
}

/* Attach seen, remembering whether the VM got the GPU clean. Reads the record
 * and applies against its sequence number, so nothing slips in between.
 * `actor`/`why`: who says so, NULL for the watcher's report. */
static void attach_seen(gwd *d, const char *address, const char *domain, const char *actor, const char *why)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        gw_device *dev = NULL;
        if (gw_registry_get(d->reg, address, &dev) < 0)
            return;
        /* "pending": defined while its clean-up runs; the verdict settles it. */
        const char *clean = dev->state == GW_STATE_ALLOCATABLE || dev->state == GW_STATE_SANITIZED ? "1"
                            : (dev->flags & GW_FLAG_CLEANING)                                        ? "pending"
                                                                                                     : "0";
        gw_apply_options o = GW_APPLY_OPTIONS_INIT;
        o.actor = actor ? actor : "libvirt";
        char reason[320];
        snprintf(reason, sizeof reason, "%s domain '%s'", why ? why : "referenced by", domain);
        o.reason = reason;
        o.if_seq = dev->seq;
        gw_device_free(dev);
        int r = gw_registry_apply(d->reg, address, GW_EVENT_ATTACH_SEEN, &o, NULL);
        if (r == -ESTALE)
            continue;
        if (r == 0 || r == -EALREADY || r == -EPERM) {
            /* -EPERM: quarantined (or missing); the VM holds it all the same,
             * so the gate and the view still need the domain. */
            if (r == 0) {
                gw_registry_set_fact(d->reg, address, "attach.domain", domain);
                gw_registry_set_fact(d->reg, address, "attach.clean", clean);
            }
            return;
        }
        gw_log(GW_LOG_ERR, "%s: attach seen (domain '%s'): %s", address, domain, gw_error_message());
        return;
    }
}

static void detach_seen(gwd *d, const char *address)
{
    gw_apply_options o = GW_APPLY_OPTIONS_INIT;
    o.actor = "libvirt";
    o.reason = "no domain references it";
    int r = gw_registry_apply(d->reg, address, GW_EVENT_DETACH_SEEN, &o, NULL);
    if (r < 0) {
        /* -EPERM: it was not attached (the watcher's first full report names
         * every GPU) or is quarantined, which only a release ends. */
        if (r != -EPERM && r != -EALREADY)
            gw_log(GW_LOG_ERR, "%s: detach seen: %s", address, gw_error_message());
        return;
    }
    gw_registry_set_fact(d->reg, address, "attach.domain", NULL);
    gw_registry_set_fact(d->reg, address, "attach.clean", NULL);
}

/* A running domain holds a quarantined GPU: its last clean-up failed, so
 * what the previous tenant left may still be on it. No start the hook gates
 * gets there (the gate refuses a quarantined GPU), but libvirt runs no hook
 * for a hot-plug (`virsh attach-device`, docs/libvirt.md, "Hot-plug"), and a
 * QEMU may have been started by hand. The daemon cannot take the device
 * back; it says so at error priority, naming the domain and the quarantine's
 * reason, so that the operator can. Checked once when a domain starts to run
 * on the GPU (not on every report while it runs: that reads the record). */
static void alarm_if_quarantined(gwd *d, const char *address)
{
    pthread_mutex_lock(&d->lock);
    gwd_attachment *a = find(d, address);
    _cleanup_free_ char *domain = NULL;
    for (char *const *dm = a ? a->running : NULL; dm && *dm && !domain; dm++)
        if (strv_has(a->domains, *dm))
            domain = gw_xstrdup(*dm);
    bool check = a && domain && !a->hold_checked;
    if (a)
        a->hold_checked = domain != NULL;
    pthread_mutex_unlock(&d->lock);
    gw_device *dev = NULL;
    if (!check || gw_registry_get(d->reg, address, &dev) < 0)
        return;
    if (dev->state == GW_STATE_QUARANTINED)
        gw_log_gpu(GW_LOG_ERR, address, NULL,
                   "%s: quarantined (%s), and yet domain '%s' runs with it: a GPU whose clean-up did not pass is in "
                   "a VM (a hot-plug, or a QEMU no hook gated); detach it, then release and clean it",
                   address, dev->quarantine_reason ? dev->quarantine_reason : "no reason recorded", domain);
    gw_device_free(dev);
}

/* `watcher`: the report is the watcher's (the GPU's attachment is known from
 * now on), not the hook's hints without libvirt. */
static void update(gwd *d, const char *address, const char *const *domains, size_t n, const char *const *running,
                   size_t n_running, bool watcher)
{
    pthread_mutex_lock(&d->lock);
    bool managed = gwd_fleet_is_managed(d, address);
    if (managed) {
        set_view(d, address, domains, n, running, n_running);
        if (watcher)
            find(d, address)->reported = true;
        gwd_view_changed(d);
    }
    pthread_mutex_unlock(&d->lock);
    if (!managed)
        return;
    if (n > 0)
        attach_seen(d, address, domains[0], NULL, NULL);
    else
        detach_seen(d, address);
    alarm_if_quarantined(d, address);
    announce_stopped(d, address);
    gwd_wake(d);
}

void gwd_attachment_update(gwd *d, const char *address, const char *const *domains, size_t n)
{
    update(d, address, domains, n, domains, n, false);
}

void gwd_attachment_hint(gwd *d, const char *address, const char *domain, bool running)
{
    pthread_mutex_lock(&d->lock);
    gwd_attachment *a = find(d, address);
    bool known = a && strv_has(a->domains, domain);
    if (!known) {
        /* A domain the watcher never reported on the GPU: it is behind (its
         * report will agree), or it missed the domain (not connected, or
         * the domain came and went between two reads). Either way the
         * domain had the GPU: the view holds it until libvirt's full report
         * replaces the view, and the registry sees an attach (the GPU is
         * dirty from now on, whatever that report says). */
        if (!a) {
            d->attachments = gw_xrealloc(d->attachments, d->n_attachments + 1, sizeof *d->attachments);
            a = &d->attachments[d->n_attachments++];
            memset(a, 0, sizeof *a);
            snprintf(a->address, sizeof a->address, "%s", address);
        }
        size_t n = 0;
        strv_put(&a->domains, domain);
        while (a->domains[n])
            n++;
        qsort(a->domains, n, sizeof *a->domains, cmp_strp);
    }
    strv_drop(running ? a->said_stopped : a->said_running, domain);
    strv_put(running ? &a->said_running : &a->said_stopped, domain);
    gwd_view_changed(d);
    pthread_mutex_unlock(&d->lock);
    if (!known) {
        gw_log(GW_LOG_NOTICE, "%s: the hook says domain '%s' %s on it, which libvirt has not shown: counted as "
                              "attached to it until libvirt has been read again",
               address, domain, running ? "started" : "stopped");
        attach_seen(d, address, domain, "libvirt-hook",
                    running ? "the qemu hook says it started with" : "the qemu hook says it stopped with");
        gw_attach_libvirt_resync(d->attach);
    }
    announce_stopped(d, address);
    gwd_wake(d);
}

static void on_state(const char *address, const char *const *domains, size_t n, const char *const *running,
                     size_t n_running, void *userdata)
{
    update(userdata, address, domains, n, running, n_running, true);
}

static void on_sync(bool current, void *userdata)
{
    gwd *d = userdata;
    pthread_mutex_lock(&d->lock);
    bool lost = d->attach_current && !current;
    d->attach_current = current;
    gwd_view_changed(d);
    pthread_mutex_unlock(&d->lock);
    if (lost)
        gwd_metrics_libvirt_lost(&d->metrics);
    if (current) {
        gw_log(GW_LOG_NOTICE, "libvirt read: the attachment of every watched GPU is known; clean-ups, promotions "
                              "and the gate go on");
        /* Promotions held back meanwhile: no `published` may come for them
         * when Placement already shows the current revision. */
        atomic_store(&d->promote_due, true);
    } else {
        gw_log(GW_LOG_WARNING, "libvirt watcher disconnected: the attachment of every GPU is unknown until it "
                               "has read libvirt again; meanwhile no clean-up starts, no GPU becomes allocatable "
                               "and the gate refuses managed GPUs");
    }
    gwd_wake(d);
}

/* Remove the view's entry of a GPU (no longer managed). Caller holds d->lock. */
static void forget(gwd *d, const char *address)
{
    gwd_attachment *a = find(d, address);
    if (!a)
        return;
    gwd_strv_free(a->domains);
    gwd_strv_free(a->running);
    gwd_strv_free(a->said_running);
    gwd_strv_free(a->said_stopped);
    *a = d->attachments[--d->n_attachments];
    gwd_view_changed(d);
}

void gwd_attachment_follow(gwd *d)
{
    if (!d->attach)
        return;
    pthread_mutex_lock(&d->lock);
    size_t n = 0, n_old = 0;
    for (char **m = d->managed; m && *m; m++)
        n++;
    for (char **w = d->watched; w && *w; w++)
        n_old++;
    bool same = n == n_old;
    for (size_t i = 0; same && i < n; i++)
        same = !strcmp(d->managed[i], d->watched[i]);      /* both sorted */
    if (same) {
        pthread_mutex_unlock(&d->lock);
        return;
    }
    char **next = gwd_strv_copy((const char *const *)d->managed, n);
    qsort(next, n, sizeof *next, cmp_strp);
    char added[512] = "", dropped[512] = "";
    for (size_t i = 0; i < n; i++)
        if (!strv_has(d->watched, next[i]))
            snprintf(added + strlen(added), sizeof added - strlen(added), " %s", next[i]);
    for (size_t i = 0; i < n_old; i++) {
        if (!strv_has(next, d->watched[i])) {
            snprintf(dropped + strlen(dropped), sizeof dropped - strlen(dropped), " %s", d->watched[i]);
            /* When it is managed again, only a new report says who has it. */
            forget(d, d->watched[i]);
        }
    }
    gwd_strv_free(d->watched);
    d->watched = next;
    int r = gw_attach_libvirt_watch(d->attach, (const char *const *)next, n);
    pthread_mutex_unlock(&d->lock);
    if (r < 0)
        gw_log(GW_LOG_ERR, "libvirt watcher: %s", gw_error_message());
    else
        gw_log(GW_LOG_NOTICE, "libvirt watcher now watching %zu GPU(s)%s%s%s%s; a new one is neither cleaned, "
                              "offered nor let through the gate before libvirt has been read", n,
               *added ? "; added:" : "", added, *dropped ? "; no longer managed:" : "", dropped);
}

void gwd_attachment_reconfigure(gwd *d)
{
    if (d->attach)
        gw_attach_libvirt_set_reconcile_interval(d->attach, (unsigned)(d->cfg.reconcile_interval_s * 1000));
}

int gwd_attachment_start(gwd *d)
{
    if (!d->cfg.libvirt_uri[0]) {
        gw_log(GW_LOG_NOTICE, "libvirt disabled: attachment comes from the hook's hints only");
        return 0;
    }
    pthread_mutex_lock(&d->lock);
    size_t n = 0;
    for (char **m = d->managed; m && *m; m++)
        n++;
    char **watch = gwd_strv_copy((const char *const *)d->managed, n);
    qsort(watch, n, sizeof *watch, cmp_strp);
    d->attach_current = false;
    gwd_view_changed(d);
    pthread_mutex_unlock(&d->lock);

    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.uri = d->cfg.libvirt_uri;
    o.watch = (const char *const *)watch;
    o.n_watch = n;
    o.state_changed = on_state;
    o.sync_changed = on_sync;
    o.userdata = d;
    o.reconcile_interval_ms = (unsigned)(d->cfg.reconcile_interval_s * 1000);
    /* Before the watcher exists: its first reports may come at once, and
     * the next scan compares with this. */
    pthread_mutex_lock(&d->lock);
    d->watched = watch;
    pthread_mutex_unlock(&d->lock);
    int r = gw_attach_libvirt_new(&d->attach, &o);
    if (r < 0)
        gw_log(GW_LOG_ERR, "libvirt watcher on %s: %s", d->cfg.libvirt_uri, gw_error_message());
    else
        gw_log(GW_LOG_INFO, "watching libvirt at %s for %zu GPUs", d->cfg.libvirt_uri, n);
    return r;
}

void gwd_attachment_stop(gwd *d)
{
    gw_attach_source_free(d->attach);
    d->attach = NULL;
    for (size_t i = 0; i < d->n_attachments; i++) {
        gwd_strv_free(d->attachments[i].domains);
        gwd_strv_free(d->attachments[i].running);
        gwd_strv_free(d->attachments[i].said_running);
        gwd_strv_free(d->attachments[i].said_stopped);
    }
    free(d->attachments);
    d->attachments = NULL;
    d->n_attachments = 0;
    gwd_strv_free(d->watched);
    d->watched = NULL;
}
