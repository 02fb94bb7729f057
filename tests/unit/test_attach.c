/* SPDX-License-Identifier: Apache-2.0 */
/* The libvirt attachment watcher against libvirt's test driver, and the
 * domain XML parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <gpuwarden/attach.h>
#include <gpuwarden/host.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "attach_internal.h"
#include "util.h"

#define WAIT_MS 5000u           /* how long a test waits for a callback at most */
#define LATENCY_BOUND_MS 1000u  /* the acceptance bound: seen within 1 s */

static const char *const X299_GPUS[] = { "0000:1a:00.0", "0000:67:00.0", "0000:68:00.0" };
static const char *const SM4029_GPUS[] = { "0000:1a:00.0", "0000:1c:00.0", "0000:1d:00.0",
                                           "0000:1e:00.0", "0000:3d:00.0", "0000:3f:00.0",
                                           "0000:40:00.0", "0000:41:00.0" };

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- a recorder for the change callback ---------------------------------- */

typedef struct change {
    char address[GW_ADDR_LEN];
    char *domains;          /* names joined with ',', "" for none */
    uint64_t at_ms;
} change;

typedef struct recorder {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    change *v;
    size_t n;
    bool bad_thread;        /* a callback arrived on the caller's thread */
    pthread_t caller;
} recorder;

static void recorder_init(recorder *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->caller = pthread_self();
}

static void recorder_clear(recorder *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].domains);
    free(r->v);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
}

static void on_changed(const char *address, const char *const *domains, size_t n, void *userdata)
{
    recorder *r = userdata;
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(domains[i]) + 1;
    char *joined = gw_xcalloc(len, 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(joined, ",");
        strcat(joined, domains[i]);
    }
    assert_null(domains[n]);
    pthread_mutex_lock(&r->lock);
    if (pthread_equal(pthread_self(), r->caller))
        r->bad_thread = true;
    r->v = gw_xrealloc(r->v, r->n + 1, sizeof *r->v);
    change *c = &r->v[r->n++];
    snprintf(c->address, sizeof c->address, "%s", address);
    c->domains = joined;
    c->at_ms = now_ms();
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* The version-2 callback, recorded as "names;running" (each joined with ','),
 * e.g. "vm-shutoff;" for a GPU held by a shut-off domain only. */
static void on_state(const char *address, const char *const *domains, size_t n, const char *const *running,
                     size_t n_running, void *userdata)
{
    char both[1024] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(both + strlen(both), sizeof both - strlen(both), "%s%s", i ? "," : "", domains[i]);
    strcat(both, ";");
    for (size_t i = 0; i < n_running; i++) {
        snprintf(both + strlen(both), sizeof both - strlen(both), "%s%s", i ? "," : "", running[i]);
        bool listed = false;
        for (size_t k = 0; k < n; k++)
            listed |= !strcmp(domains[k], running[i]);
        assert_true(listed);        /* running is a subset of domains */
    }
    assert_null(running[n_running]);
    const char *one[] = { both, NULL };
    on_changed(address, one, 1, userdata);
}

/* Index of the first change at or after `from` for `address` with exactly
 * `domains`, waiting up to WAIT_MS; -1 when none came. */
static long wait_change(recorder *r, size_t from, const char *address, const char *domains,
                        uint64_t *at_ms)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        for (size_t i = from; i < r->n; i++) {
            if (!strcmp(r->v[i].address, address) && !strcmp(r->v[i].domains, domains)) {
                if (at_ms)
                    *at_ms = r->v[i].at_ms;
                pthread_mutex_unlock(&r->lock);
                return (long)i;
            }
        }
        uint64_t now = now_ms();
        if (now >= deadline)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (deadline - now > 50 ? 50 : deadline - now) * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
    return -1;
}

/* The last reported set for `address` ("" none; NULL when never reported). */
static char *last_state(recorder *r, const char *address)
{
    char *s = NULL;
    pthread_mutex_lock(&r->lock);
    for (size_t i = r->n; i-- > 0;) {
        if (!strcmp(r->v[i].address, address)) {
            s = gw_xstrdup(r->v[i].domains);
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return s;
}

static size_t change_count(recorder *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static void assert_state(recorder *r, const char *address, const char *domains)
{
    char *s = last_state(r, address);
    if (!s || strcmp(s, domains))
        fail_msg("%s: last reported '%s', expected '%s'", address, s ? s : "(never)", domains);
    free(s);
}

/* ---- helpers ------------------------------------------------------------- */

static char *fixture_uri(const char *name)
{
    return gw_strdup_printf("test://%s/tests/fixtures/libvirt/%s", GW_SOURCE_DIR, name);
}

static gw_attach_source *start_watcher(const char *uri, const char *const *gpus, size_t n,
                                       recorder *rec, bool read_write, bool no_events,
                                       unsigned int interval_ms)
{
    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.uri = uri;
    o.watch = gpus;
    o.n_watch = n;
    o.changed = on_changed;
    o.userdata = rec;
    o.read_write = read_write;
    o.no_events = no_events;
    o.reconcile_interval_ms = interval_ms;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 200;
    gw_attach_source *src = NULL;
    if (gw_attach_libvirt_new(&src, &o) < 0)
        fail_msg("gw_attach_libvirt_new: %s", gw_error_message());
    assert_string_equal(gw_attach_source_name(src), "libvirt");
    return src;
}

/* A watcher that reports through the version-2 callback only. */
static gw_attach_source *start_state_watcher(const char *uri, const char *const *gpus, size_t n, recorder *rec)
{
    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.uri = uri;
    o.watch = gpus;
    o.n_watch = n;
    o.state_changed = on_state;
    o.userdata = rec;
    o.read_write = true;
    o.reconcile_interval_ms = 60000;    /* within the test only events explain a change */
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 200;
    gw_attach_source *src = NULL;
    if (gw_attach_libvirt_new(&src, &o) < 0)
        fail_msg("gw_attach_libvirt_new: %s", gw_error_message());
    return src;
}

static void assert_query(gw_attach_source *src, const char *address, const char *expected)
{
    char **names = NULL;
    if (gw_attach_query(src, address, &names) < 0)
        fail_msg("query %s: %s", address, gw_error_message());
    char joined[512] = "";
    for (char **p = names; *p; p++) {
        if (p != names)
            strcat(joined, ",");
        strcat(joined, *p);
    }
    gw_attach_list_free(names);
    if (strcmp(joined, expected))
        fail_msg("query %s: '%s', expected '%s'", address, joined, expected);
}

static char *domain_xml(const char *name, const char *const *sources, size_t n)
{
    char *devs = gw_xstrdup("");
    for (size_t i = 0; i < n; i++) {
        unsigned dom, bus, slot, fn;
        assert_int_equal(sscanf(sources[i], "%x:%x:%x.%x", &dom, &bus, &slot, &fn), 4);
        char *d = gw_strdup_printf(
            "%s<hostdev mode='subsystem' type='pci' managed='yes'><source>"
            "<address domain='0x%04x' bus='0x%02x' slot='0x%02x' function='0x%x'/></source>"
            "</hostdev>", devs, dom, bus, slot, fn);
        free(devs);
        devs = d;
    }
    char *xml = gw_strdup_printf("<domain type='test'><name>%s</name><memory>1048576</memory>"
                                 "<os><type>hvm</type></os><devices>%s</devices></domain>",
                                 name, devs);
    free(devs);
    return xml;
}

static virDomainPtr define(virConnectPtr c, const char *name, const char *const *sources, size_t n)
{
    char *xml = domain_xml(name, sources, n);
    virDomainPtr d = virDomainDefineXML(c, xml);
    free(xml);
    if (!d)
        fail_msg("define %s: %s", name, virGetLastErrorMessage());
    return d;
}

static void undefine(virConnectPtr c, const char *name)
{
    virDomainPtr d = virDomainLookupByName(c, name);
    if (!d)
        fail_msg("lookup %s: %s", name, virGetLastErrorMessage());
    assert_int_equal(virDomainUndefine(d), 0);
    virDomainFree(d);
}

static void assert_latency(const char *what, uint64_t t0, uint64_t t1)
{
    uint64_t ms = t1 >= t0 ? t1 - t0 : 0;
    printf("# %s: callback %llu ms after the libvirt call\n", what, (unsigned long long)ms);
    if (ms > LATENCY_BOUND_MS)
        fail_msg("%s took %llu ms, more than %u ms", what, (unsigned long long)ms, LATENCY_BOUND_MS);
}

/* ---- the XML parser ------------------------------------------------------ */

static void expect_sources(const char *xml, const char *expected, const char *expected_name)
{
    char **list = NULL, *name = NULL;
    if (gw_domain_xml_pci_sources(xml, strlen(xml), &list, &name) < 0)
        fail_msg("parse: %s", gw_error_message());
    char joined[512] = "";
    for (char **p = list; *p; p++) {
        if (p != list)
            strcat(joined, ",");
        strcat(joined, *p);
    }
    assert_string_equal(joined, expected);
    assert_string_equal(name, expected_name);
    gw_attach_list_free(list);
    free(name);
}

static void expect_parse_error(const char *xml, const char *needle)
{
    char **list = (char **)1, *name = (char *)1;
    assert_int_equal(gw_domain_xml_pci_sources(xml, strlen(xml), &list, &name), -EINVAL);
    assert_null(list);
    assert_null(name);
    if (!strstr(gw_error_message(), needle))
        fail_msg("error '%s' does not mention '%s'", gw_error_message(), needle);
}

static void xml_source_address_not_guest_address(void **state)
{
    /* The guest <address> equals a GPU's host address; only the source counts. */
    expect_sources("<domain type='kvm'><name>vm1</name><devices>"
                   "<hostdev mode='subsystem' type='pci' managed='yes'>"
                   "<source><address domain='0x0000' bus='0x1a' slot='0x00' function='0x0'/></source>"
                   "<address type='pci' domain='0x0000' bus='0x67' slot='0x00' function='0x0'/>"
                   "</hostdev></devices></domain>",
                   "0000:1a:00.0", "vm1");
    /* Two GPUs, an SR-IOV style interface hostdev, a duplicate, a USB hostdev
     * (not PCI) and a hostdev outside <devices> (not a device): sorted, unique. */
    expect_sources("<domain><name>vm2</name><devices>"
                   "<hostdev type='pci'><source><address domain='0x0000' bus='0x68' slot='0x00' function='0x0'/></source></hostdev>"
                   "<hostdev type='pci'><source><address domain='0x0000' bus='0x1a' slot='0x00' function='0x1'/></source></hostdev>"
                   "<hostdev type='pci'><source><address domain='0x0000' bus='0x68' slot='0x00' function='0x0'/></source></hostdev>"
                   "<interface type='hostdev'><source><address type='pci' domain='0x0001' bus='0x3b' slot='0x02' function='0x7'/></source></interface>"
                   "<hostdev type='usb'><source><address bus='1' device='2'/></source></hostdev>"
                   "</devices><hostdev type='pci'><source><address bus='0x99' slot='0' function='0'/></source></hostdev>"
                   "</domain>",
                   "0000:1a:00.1,0000:68:00.0,0001:3b:02.7", "vm2");
    /* libvirt reads attributes with base 0: decimal, 0x-hex, 0-octal;
     * a missing domain means 0. */
    expect_sources("<domain><name>vm3</name><devices>"
                   "<hostdev type='pci'><source><address bus='26' slot='0' function='1'/></source></hostdev>"
                   "<hostdev type='pci'><source><address domain='0' bus='0150' slot='0x1f' function='7'/></source></hostdev>"
                   "</devices></domain>",
                   "0000:1a:00.1,0000:68:1f.7", "vm3");
    expect_sources("<domain><name>empty</name><devices><disk type='file'/></devices></domain>", "",
                   "empty");
}

static void xml_bad_input_is_refused(void **state)
{
    expect_parse_error("<domain><name>x</name", "not well-formed");
    expect_parse_error("", "not well-formed");
    expect_parse_error("<node><domain/></node>", "expected <domain>");
    expect_parse_error("<domain><name>x</name><devices><hostdev type='pci'><source>"
                       "<address bus='0x1a' slot='0x20' function='0'/></source></hostdev></devices></domain>",
                       "slot='0x20'");
    expect_parse_error("<domain><name>x</name><devices><hostdev type='pci'><source>"
                       "<address slot='0' function='0'/></source></hostdev></devices></domain>",
                       "without 'bus'");
    expect_parse_error("<domain><name>x</name><devices><hostdev type='pci'><source>"
                       "<address bus='0x1a' slot='0' function='-1'/></source></hostdev></devices></domain>",
                       "function='-1'");
    expect_parse_error("<domain><name>x</name><devices><hostdev type='pci'><source>"
                       "<address bus='0x1a' slot='0' function='0x0 '/></source></hostdev></devices></domain>",
                       "function=");
    expect_parse_error("<domain><name>x</name><devices><hostdev type='pci'><source>"
                       "<address type='drive' bus='0x1a' slot='0' function='0'/></source></hostdev></devices></domain>",
                       "type 'drive'");
    expect_parse_error("<domain><devices/></domain>", "no <name>");
    /* No name wanted: a nameless domain is fine. */
    char **list = NULL;
    assert_int_equal(gw_domain_xml_pci_sources("<domain/>", 9, &list, NULL), 0);
    assert_null(list[0]);
    gw_attach_list_free(list);
}

/* ---- the watcher --------------------------------------------------------- */

static void options_are_checked(void **state)
{
    gw_attach_source *src = (gw_attach_source *)1;
    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.version = 99;
    assert_int_equal(gw_attach_libvirt_new(&src, &o), -EINVAL);
    assert_null(src);
    assert_non_null(strstr(gw_error_message(), "version 99"));

    const char *bad[] = { "0000:1a:00.0", "1a:00.0" };
    o = (gw_attach_libvirt_options)GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.watch = bad;
    o.n_watch = 2;
    assert_int_equal(gw_attach_libvirt_new(&src, &o), -EINVAL);
    assert_non_null(strstr(gw_error_message(), "'1a:00.0'"));

    o = (gw_attach_libvirt_options)GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.uri = "";
    assert_int_equal(gw_attach_libvirt_new(&src, &o), -EINVAL);
    assert_int_equal(gw_attach_libvirt_new(NULL, NULL), -EINVAL);

    char **names = (char **)1;
    assert_int_equal(gw_attach_query(NULL, "0000:1a:00.0", &names), -EINVAL);
    assert_null(names);
    assert_int_equal(gw_attach_libvirt_wait_synced(NULL, 1), -EINVAL);
    assert_false(gw_attach_libvirt_connected(NULL));
    gw_attach_source_free(NULL);
}

/* The libvirt fixtures reference exactly the GPUs of the bundled test hosts. */
static void fixtures_match_the_test_hosts(void **state)
{
    static const struct { const char *host; const char *const *gpus; size_t n; } hosts[] = {
        { "x299-3xa6000", X299_GPUS, 3 },
        { "sm4029-8xrtx5000", SM4029_GPUS, 8 },
    };
    for (size_t h = 0; h < 2; h++) {
        char *root = gw_strdup_printf("%s/tests/fixtures/hosts/%s", GW_SOURCE_DIR, hosts[h].host);
        gw_host_options o = GW_HOST_OPTIONS_INIT;
        o.root = root;
        gw_host *host = NULL;
        if (gw_host_scan(&host, &o) < 0)
            fail_msg("scan %s: %s", root, gw_error_message());
        assert_int_equal(gw_host_gpu_count(host), hosts[h].n);
        for (size_t i = 0; i < hosts[h].n; i++)
            assert_string_equal(gw_host_gpu(host, i)->address, hosts[h].gpus[i]);
        gw_host_free(host);
        free(root);
    }
}

static void x299_initial_attachment(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("x299-3xa6000.xml");
    gw_attach_source *src = start_watcher(uri, X299_GPUS, 3, &rec, false, false, 60000);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    assert_true(gw_attach_libvirt_connected(src));

    /* One initial report per watched GPU, empty ones included. */
    assert_int_equal(change_count(&rec), 3);
    assert_state(&rec, "0000:1a:00.0", "vm-a6000");     /* GPU + HDA function, running */
    assert_state(&rec, "0000:67:00.0", "");             /* only a guest address */
    assert_state(&rec, "0000:68:00.0", "vm-shutoff");   /* defined, not running */
    assert_false(rec.bad_thread);

    /* The synchronous query reads libvirt now and matches on the slot. */
    assert_query(src, "0000:1a:00.0", "vm-a6000");
    assert_query(src, "0000:1a:00.1", "vm-a6000");
    assert_query(src, "0000:67:00.0", "");
    assert_query(src, "0000:68:00.0", "vm-shutoff");
    assert_query(src, "0000:00:1f.3", "vm-guest-addr");
    char **names = (char **)1;
    assert_int_equal(gw_attach_query(src, "67:00.0", &names), -EINVAL);
    assert_null(names);

    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

static void sm4029_initial_attachment(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("sm4029-8xrtx5000.xml");
    gw_attach_source *src = start_watcher(uri, SM4029_GPUS, 8, &rec, false, false, 60000);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    assert_int_equal(change_count(&rec), 8);
    assert_state(&rec, "0000:1a:00.0", "vm-pair");
    assert_state(&rec, "0000:1c:00.0", "vm-pair");
    assert_state(&rec, "0000:1d:00.0", "vm-hda-only");
    assert_state(&rec, "0000:1e:00.0", "");
    assert_state(&rec, "0000:3d:00.0", "vm-shared-a,vm-shared-b");
    assert_state(&rec, "0000:3f:00.0", "");
    assert_state(&rec, "0000:40:00.0", "vm-decimal");
    assert_state(&rec, "0000:41:00.0", "");
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

static void events_define_and_undefine(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("x299-3xa6000.xml");
    /* A 60 s reconcile period: within the test only events can explain a change. */
    gw_attach_source *src = start_watcher(uri, X299_GPUS, 3, &rec, true, false, 60000);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    virConnectPtr c = gw_attach_libvirt_connection(src);
    assert_non_null(c);
    uint64_t t0, t1;

    /* Defining a domain with a GPU: attached. */
    size_t mark = change_count(&rec);
    const char *gpu67[] = { "0000:67:00.0" };
    t0 = now_ms();
    virDomainPtr d = define(c, "vm-new", gpu67, 1);
    assert_true(wait_change(&rec, mark, "0000:67:00.0", "vm-new", &t1) >= 0);
    assert_latency("define -> attached", t0, t1);

    /* Undefining a shut-off domain: no longer referenced. */
    mark = change_count(&rec);
    t0 = now_ms();
    undefine(c, "vm-shutoff");
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "", &t1) >= 0);
    assert_latency("undefine -> detached", t0, t1);

    /* Starting and stopping a defined domain changes nothing: it still
     * references the GPU. A later change is the barrier that proves the
     * start/stop events were processed. */
    mark = change_count(&rec);
    assert_int_equal(virDomainCreate(d), 0);
    assert_int_equal(virDomainDestroy(d), 0);
    const char *gpu68[] = { "0000:68:00.0" };
    virDomainPtr barrier = define(c, "vm-barrier", gpu68, 1);
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "vm-barrier", NULL) >= 0);
    assert_int_equal(change_count(&rec), mark + 1);
    assert_state(&rec, "0000:67:00.0", "vm-new");

    /* Undefining a RUNNING domain leaves it transient and running: still
     * attached. Destroying it then makes it vanish: detached. */
    mark = change_count(&rec);
    undefine(c, "vm-a6000");
    assert_int_equal(virDomainUndefine(barrier), 0);
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "", NULL) >= 0);
    assert_state(&rec, "0000:1a:00.0", "vm-a6000");
    assert_query(src, "0000:1a:00.0", "vm-a6000");
    mark = change_count(&rec);
    virDomainPtr a = virDomainLookupByName(c, "vm-a6000");
    assert_non_null(a);
    t0 = now_ms();
    assert_int_equal(virDomainDestroy(a), 0);
    assert_true(wait_change(&rec, mark, "0000:1a:00.0", "", &t1) >= 0);
    assert_latency("destroy transient -> detached", t0, t1);
    assert_query(src, "0000:1a:00.0", "");

    /* A transient domain (created, never defined) references while it runs. */
    mark = change_count(&rec);
    char *xml = domain_xml("vm-transient", (const char *[]){ "0000:1a:00.1" }, 1);
    virDomainPtr t = virDomainCreateXML(c, xml, 0);
    free(xml);
    assert_non_null(t);
    assert_true(wait_change(&rec, mark, "0000:1a:00.0", "vm-transient", NULL) >= 0);
    assert_int_equal(virDomainDestroy(t), 0);
    assert_true(wait_change(&rec, mark, "0000:1a:00.0", "", NULL) >= 0);
    assert_false(rec.bad_thread);

    virDomainFree(t);
    virDomainFree(a);
    virDomainFree(barrier);
    virDomainFree(d);
    virConnectClose(c);
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

/* The version-2 callback: the initial report says which referencing domains
 * run; starting or stopping a defined domain is reported (the version-1
 * callback stays silent for those, events_define_and_undefine). */
static void events_start_and_stop_report_running(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("x299-3xa6000.xml");
    gw_attach_source *src = start_state_watcher(uri, X299_GPUS, 3, &rec);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    assert_int_equal(change_count(&rec), 3);
    assert_state(&rec, "0000:1a:00.0", "vm-a6000;vm-a6000");    /* running */
    assert_state(&rec, "0000:67:00.0", ";");
    assert_state(&rec, "0000:68:00.0", "vm-shutoff;");          /* defined, shut off: held, not running */
    virConnectPtr c = gw_attach_libvirt_connection(src);
    assert_non_null(c);

    uint64_t t0, t1;
    virDomainPtr off = virDomainLookupByName(c, "vm-shutoff");
    assert_non_null(off);
    size_t mark = change_count(&rec);
    t0 = now_ms();
    assert_int_equal(virDomainCreate(off), 0);
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "vm-shutoff;vm-shutoff", &t1) >= 0);
    assert_latency("start -> running", t0, t1);
    mark = change_count(&rec);
    t0 = now_ms();
    assert_int_equal(virDomainDestroy(off), 0);
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "vm-shutoff;", &t1) >= 0);
    assert_latency("destroy -> not running", t0, t1);

    /* A running persistent domain destroyed: still referenced, not running;
     * undefined afterwards: referenced by nobody. */
    virDomainPtr a = virDomainLookupByName(c, "vm-a6000");
    assert_non_null(a);
    mark = change_count(&rec);
    assert_int_equal(virDomainDestroy(a), 0);
    assert_true(wait_change(&rec, mark, "0000:1a:00.0", "vm-a6000;", NULL) >= 0);
    mark = change_count(&rec);
    assert_int_equal(virDomainUndefine(a), 0);
    assert_true(wait_change(&rec, mark, "0000:1a:00.0", ";", NULL) >= 0);

    /* Two domains on one GPU: running as soon as either runs. */
    const char *gpu68[] = { "0000:68:00.0" };
    mark = change_count(&rec);
    virDomainPtr b = define(c, "vm-b", gpu68, 1);
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "vm-b,vm-shutoff;", NULL) >= 0);
    mark = change_count(&rec);
    assert_int_equal(virDomainCreate(b), 0);
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "vm-b,vm-shutoff;vm-b", NULL) >= 0);
    assert_false(rec.bad_thread);

    virDomainFree(b);
    virDomainFree(a);
    virDomainFree(off);
    virConnectClose(c);
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

/* A caller built against version 1 of the options (no state_changed): its
 * struct ends before the field, and the watcher works as before. */
static void options_version_1_still_accepted(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("x299-3xa6000.xml");
    gw_attach_libvirt_options full = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    full.version = 1;
    full.uri = uri;
    full.watch = X299_GPUS;
    full.n_watch = 3;
    full.changed = on_changed;
    full.userdata = &rec;
    full.no_events = true;
    /* Exactly as long as a version-1 struct: ASan sees a read past it. */
    void *o = gw_xcalloc(1, offsetof(gw_attach_libvirt_options, state_changed));
    memcpy(o, &full, offsetof(gw_attach_libvirt_options, state_changed));
    gw_attach_source *src = NULL;
    if (gw_attach_libvirt_new(&src, o) < 0)
        fail_msg("gw_attach_libvirt_new: %s", gw_error_message());
    free(o);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    assert_state(&rec, "0000:68:00.0", "vm-shutoff");
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

static void events_domain_with_two_gpus(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("sm4029-8xrtx5000.xml");
    gw_attach_source *src = start_watcher(uri, SM4029_GPUS, 8, &rec, true, false, 60000);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    virConnectPtr c = gw_attach_libvirt_connection(src);
    assert_non_null(c);

    size_t mark = change_count(&rec);
    const char *two[] = { "0000:1e:00.0", "0000:41:00.0" };
    virDomainPtr d = define(c, "vm-duo", two, 2);
    assert_true(wait_change(&rec, mark, "0000:1e:00.0", "vm-duo", NULL) >= 0);
    assert_true(wait_change(&rec, mark, "0000:41:00.0", "vm-duo", NULL) >= 0);
    assert_query(src, "0000:41:00.0", "vm-duo");

    /* Sharing a GPU with an existing domain: both are listed, sorted. */
    const char *pair1a[] = { "0000:1a:00.0" };
    virDomainPtr e = define(c, "vm-aaa", pair1a, 1);
    assert_true(wait_change(&rec, mark, "0000:1a:00.0", "vm-aaa,vm-pair", NULL) >= 0);

    mark = change_count(&rec);
    assert_int_equal(virDomainUndefine(d), 0);
    assert_true(wait_change(&rec, mark, "0000:1e:00.0", "", NULL) >= 0);
    assert_true(wait_change(&rec, mark, "0000:41:00.0", "", NULL) >= 0);
    assert_int_equal(virDomainUndefine(e), 0);
    assert_true(wait_change(&rec, mark, "0000:1a:00.0", "vm-pair", NULL) >= 0);
    /* Exactly the four changes above, nothing for the untouched GPUs. */
    assert_int_equal(change_count(&rec), mark + 3);

    virDomainFree(e);
    virDomainFree(d);
    virConnectClose(c);
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

/* Without events the periodic reconcile alone finds the change. */
static void reconcile_finds_what_events_missed(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("x299-3xa6000.xml");
    gw_attach_source *src = start_watcher(uri, X299_GPUS, 3, &rec, true, true, 200);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    virConnectPtr c = gw_attach_libvirt_connection(src);
    size_t mark = change_count(&rec);
    uint64_t t0 = now_ms(), t1;
    undefine(c, "vm-shutoff");
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "", &t1) >= 0);
    assert_latency("undefine -> detached by a 200 ms reconcile", t0, t1);

    /* An explicit request works without waiting for the period. */
    mark = change_count(&rec);
    const char *gpu67[] = { "0000:67:00.0" };
    virDomainPtr d = define(c, "vm-new", gpu67, 1);
    assert_int_equal(gw_attach_reconcile(src), 0);
    assert_true(wait_change(&rec, mark, "0000:67:00.0", "vm-new", NULL) >= 0);
    virDomainFree(d);
    virConnectClose(c);
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

/*
 * A daemon restart: the domain is undefined while no watcher runs. The
 * fresh watcher's first report says "nobody", which the daemon compares with
 * its persisted "attached". test:///default is one in-process instance that
 * lives while any connection to it is open, like a libvirtd outliving the
 * daemon.
 */
static void reconcile_after_restart(void **state)
{
    virConnectPtr lv = virConnectOpen("test:///default");
    assert_non_null(lv);
    const char *gpu[] = { "0000:1a:00.0" };
    virDomainPtr d = define(lv, "vm-restart", gpu, 1);

    recorder rec;
    recorder_init(&rec);
    gw_attach_source *src = start_watcher("test:///default", gpu, 1, &rec, false, false, 60000);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    assert_state(&rec, "0000:1a:00.0", "vm-restart");
    gw_attach_source_free(src);
    recorder_clear(&rec);

    assert_int_equal(virDomainUndefine(d), 0);      /* while the "daemon" is down */

    recorder_init(&rec);
    uint64_t t0 = now_ms(), t1;
    src = start_watcher("test:///default", gpu, 1, &rec, false, false, 60000);
    assert_true(wait_change(&rec, 0, "0000:1a:00.0", "", &t1) >= 0);
    assert_latency("restart -> initial report 'nobody'", t0, t1);
    assert_int_equal(change_count(&rec), 1);

    /* A second client of the same libvirt defines a domain: the watcher
     * hears the event on its own connection. */
    virDomainFree(d);
    d = define(lv, "vm-other-client", gpu, 1);
    assert_true(wait_change(&rec, 0, "0000:1a:00.0", "vm-other-client", NULL) >= 0);
    assert_int_equal(virDomainUndefine(d), 0);
    assert_true(wait_change(&rec, 1, "0000:1a:00.0", "", NULL) >= 0);

    gw_attach_source_free(src);
    recorder_clear(&rec);
    virDomainFree(d);
    virConnectClose(lv);
}

static char *copy_fixture(const char *dir, const char *name)
{
    char *from = gw_strdup_printf("%s/tests/fixtures/libvirt/%s", GW_SOURCE_DIR, name);
    char *to = gw_strdup_printf("%s/%s", dir, name);
    char *data = NULL;
    assert_int_equal(gw_read_file(from, &data), 0);
    FILE *f = fopen(to, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
    free(data);
    free(from);
    return to;
}

/* Remove the <domain> whose <name> is `name` from a node file. */
static void drop_domain(const char *path, const char *name)
{
    char *data = NULL;
    assert_int_equal(gw_read_file(path, &data), 0);
    char *needle = gw_strdup_printf("<name>%s</name>", name);
    char *at = strstr(data, needle);
    assert_non_null(at);
    *at = '\0';
    char *start = strrchr(data, '<');
    while (start && strncmp(start, "<domain", 7))
        start = start > data ? memrchr(data, '<', (size_t)(start - data)) : NULL;
    assert_non_null(start);
    char *end = strstr(at + 1, "</domain>");
    assert_non_null(end);
    *start = '\0';
    FILE *f = fopen(path, "w");
    fputs(data, f);
    fputs(end + strlen("</domain>"), f);
    fclose(f);
    free(needle);
    free(data);
}

/*
 * libvirtd goes away and comes back with different domains: the watcher
 * reconnects and reconciles. The test driver never closes on its own, so the
 * test calls what libvirt's close callback calls; a test:///file connection
 * reads the file afresh, which plays the restarted libvirtd.
 */
static void reconnect_after_close(void **state)
{
    char dir[] = "/tmp/gw-attach-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = copy_fixture(dir, "x299-3xa6000.xml");
    char *uri = gw_strdup_printf("test://%s", path);
    recorder rec;
    recorder_init(&rec);
    gw_attach_source *src = start_watcher(uri, X299_GPUS, 3, &rec, false, false, 60000);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    assert_state(&rec, "0000:68:00.0", "vm-shutoff");

    drop_domain(path, "vm-shutoff");
    size_t mark = change_count(&rec);
    gw_attach_libvirt_connection_lost(src, VIR_CONNECT_CLOSE_REASON_EOF);
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "", NULL) >= 0);
    assert_true(gw_attach_libvirt_connected(src));
    /* Only the GPU whose domain went away changed. */
    assert_int_equal(change_count(&rec), mark + 1);
    assert_state(&rec, "0000:1a:00.0", "vm-a6000");

    gw_attach_source_free(src);
    recorder_clear(&rec);
    unlink(path);
    rmdir(dir);
    free(uri);
    free(path);
}

/* libvirtd not there yet: retried with backoff; nothing is reported until
 * a real answer; the query refuses to guess. */
static void connect_retries_until_libvirt_appears(void **state)
{
    char dir[] = "/tmp/gw-attach-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *uri = gw_strdup_printf("test://%s/x299-3xa6000.xml", dir);
    recorder rec;
    recorder_init(&rec);
    gw_attach_source *src = start_watcher(uri, X299_GPUS, 3, &rec, false, false, 60000);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, 300), -ETIMEDOUT);
    assert_false(gw_attach_libvirt_connected(src));
    assert_int_equal(change_count(&rec), 0);
    char **names = (char **)1;
    assert_int_equal(gw_attach_query(src, "0000:1a:00.0", &names), -ENOTCONN);
    assert_null(names);
    assert_non_null(strstr(gw_error_message(), "not connected"));

    char *path = copy_fixture(dir, "x299-3xa6000.xml");
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    assert_true(gw_attach_libvirt_connected(src));
    assert_state(&rec, "0000:1a:00.0", "vm-a6000");
    assert_query(src, "0000:1a:00.0", "vm-a6000");

    gw_attach_source_free(src);
    recorder_clear(&rec);
    unlink(path);
    rmdir(dir);
    free(path);
    free(uri);
}

/* ---- what the watcher watches, and whether it is current (issue 15) ------ */

/* The sync callback, recorded as a change of the pseudo-address "sync" with
 * "current" or "lost". */
static void on_sync(bool current, void *userdata)
{
    const char *one[] = { current ? "current" : "lost", NULL };
    on_changed("sync", one, 1, userdata);
}

static gw_attach_source *start_sync_watcher(const char *uri, const char *const *gpus, size_t n, recorder *rec)
{
    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.uri = uri;
    o.watch = gpus;
    o.n_watch = n;
    o.changed = on_changed;
    o.sync_changed = on_sync;
    o.userdata = rec;
    o.read_write = true;
    o.reconcile_interval_ms = 60000;    /* within the test only events and requests explain a report */
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 200;
    gw_attach_source *src = NULL;
    if (gw_attach_libvirt_new(&src, &o) < 0)
        fail_msg("gw_attach_libvirt_new: %s", gw_error_message());
    return src;
}

/* A GPU watched later (hot-plugged, rebound to vfio-pci after the start) is
 * reported with its set after the next full read, empty sets included; one
 * no longer watched is not reported any more; one kept is not reported
 * again unless it changes. */
static void watch_set_changes_while_running(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("x299-3xa6000.xml");
    const char *first[] = { "0000:1a:00.0" };
    gw_attach_source *src = start_sync_watcher(uri, first, 1, &rec);
    /* "current" comes after the first read's reports: the barrier for them. */
    assert_true(wait_change(&rec, 0, "sync", "current", NULL) >= 0);
    assert_state(&rec, "0000:1a:00.0", "vm-a6000");
    assert_null(last_state(&rec, "0000:68:00.0"));

    size_t mark = change_count(&rec);
    const char *more[] = { "0000:68:00.0", "0000:1a:00.0", "0000:67:00.0" };   /* any order */
    assert_int_equal(gw_attach_libvirt_watch(src, more, 3), 0);
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "vm-shutoff", NULL) >= 0);
    assert_true(wait_change(&rec, mark, "0000:67:00.0", "", NULL) >= 0);
    /* The barrier: a define the watcher must report; nothing else came. */
    virConnectPtr c = gw_attach_libvirt_connection(src);
    const char *gpu67[] = { "0000:67:00.0" };
    virDomainPtr d = define(c, "vm-barrier", gpu67, 1);
    assert_true(wait_change(&rec, mark, "0000:67:00.0", "vm-barrier", NULL) >= 0);
    assert_int_equal(change_count(&rec), mark + 3);

    /* 68 no longer watched: its undefine is not reported. */
    mark = change_count(&rec);
    const char *fewer[] = { "0000:1a:00.0", "0000:67:00.0" };
    assert_int_equal(gw_attach_libvirt_watch(src, fewer, 2), 0);
    undefine(c, "vm-shutoff");
    assert_int_equal(virDomainUndefine(d), 0);
    assert_true(wait_change(&rec, mark, "0000:67:00.0", "", NULL) >= 0);
    assert_int_equal(change_count(&rec), mark + 1);

    /* Bad input changes nothing. */
    const char *bad[] = { "0000:1a:00.0", "1a:00.0" };
    assert_int_equal(gw_attach_libvirt_watch(src, bad, 2), -EINVAL);
    assert_non_null(strstr(gw_error_message(), "'1a:00.0'"));
    assert_int_equal(gw_attach_libvirt_watch(NULL, fewer, 2), -EINVAL);
    assert_int_equal(gw_attach_libvirt_resync(NULL), -EINVAL);
    assert_int_equal(gw_attach_libvirt_set_reconcile_interval(NULL, 1), -EINVAL);
    assert_false(gw_attach_libvirt_current(NULL));
    assert_false(rec.bad_thread);

    virDomainFree(d);
    virConnectClose(c);
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

/* A resync reports every GPU again, changed or not: a consumer that heard
 * of a domain elsewhere (the hook) gets libvirt's word on each. */
static void resync_reports_every_gpu_again(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("x299-3xa6000.xml");
    gw_attach_source *src = start_sync_watcher(uri, X299_GPUS, 3, &rec);
    assert_true(wait_change(&rec, 0, "sync", "current", NULL) >= 0);
    size_t mark = change_count(&rec);
    assert_int_equal(gw_attach_libvirt_resync(src), 0);
    assert_true(wait_change(&rec, mark, "0000:1a:00.0", "vm-a6000", NULL) >= 0);
    assert_true(wait_change(&rec, mark, "0000:67:00.0", "", NULL) >= 0);
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "vm-shutoff", NULL) >= 0);
    /* Already current: no second "current". */
    assert_int_equal(change_count(&rec), mark + 3);
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

/*
 * Current, lost, current again: a lost connection is said at once, and
 * "current" again only after the reconnection's full read, whose reports
 * come first. While libvirt stays away nothing else is reported; a
 * reconcile request cuts the reconnect backoff short.
 */
static void sync_lost_and_current_again(void **state)
{
    char dir[] = "/tmp/gw-attach-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = copy_fixture(dir, "x299-3xa6000.xml");
    char *uri = gw_strdup_printf("test://%s", path);
    recorder rec;
    recorder_init(&rec);
    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.uri = uri;
    o.watch = X299_GPUS;
    o.n_watch = 3;
    o.changed = on_changed;
    o.sync_changed = on_sync;
    o.userdata = &rec;
    o.reconcile_interval_ms = 60000;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 60000;         /* the backoff grows past what the test waits */
    gw_attach_source *src = NULL;
    assert_int_equal(gw_attach_libvirt_new(&src, &o), 0);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    assert_true(wait_change(&rec, 0, "sync", "current", NULL) >= 0);
    assert_true(gw_attach_libvirt_current(src));
    assert_int_equal(change_count(&rec), 4);    /* three GPUs, then current */
    assert_string_equal(rec.v[3].address, "sync");

    size_t mark = change_count(&rec);
    unlink(path);       /* libvirtd gone: reconnects fail */
    gw_attach_libvirt_connection_lost(src, VIR_CONNECT_CLOSE_REASON_EOF);
    assert_true(wait_change(&rec, mark, "sync", "lost", NULL) >= 0);
    assert_false(gw_attach_libvirt_current(src));
    /* Let the backoff grow (20, 40, ... ms) well past a second. */
    struct timespec ts = { 1, 500 * 1000000L };
    nanosleep(&ts, NULL);
    assert_false(gw_attach_libvirt_connected(src));
    assert_int_equal(change_count(&rec), mark + 1);

    /* Back, with vm-shutoff gone; a request makes it try at once. */
    mark = change_count(&rec);
    free(copy_fixture(dir, "x299-3xa6000.xml"));
    drop_domain(path, "vm-shutoff");
    uint64_t t0 = now_ms(), t1;
    assert_int_equal(gw_attach_reconcile(src), 0);
    long at = wait_change(&rec, mark, "sync", "current", &t1);
    assert_true(at >= 0);
    assert_latency("reconcile request while away -> current again", t0, t1);
    long gone = wait_change(&rec, mark, "0000:68:00.0", "", NULL);
    assert_true(gone >= 0 && gone < at);        /* the reports of that read come first */
    assert_true(gw_attach_libvirt_current(src));

    gw_attach_source_free(src);
    recorder_clear(&rec);
    unlink(path);
    rmdir(dir);
    free(uri);
    free(path);
}

/* A caller built against version 2 of the options (no sync_changed). */
static void options_version_2_still_accepted(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("x299-3xa6000.xml");
    gw_attach_libvirt_options full = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    full.version = 2;
    full.uri = uri;
    full.watch = X299_GPUS;
    full.n_watch = 3;
    full.state_changed = on_state;
    full.userdata = &rec;
    full.no_events = true;
    /* Exactly as long as a version-2 struct: ASan sees a read past it. */
    void *o = gw_xcalloc(1, offsetof(gw_attach_libvirt_options, sync_changed));
    memcpy(o, &full, offsetof(gw_attach_libvirt_options, sync_changed));
    gw_attach_source *src = NULL;
    if (gw_attach_libvirt_new(&src, o) < 0)
        fail_msg("gw_attach_libvirt_new: %s", gw_error_message());
    free(o);
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    assert_state(&rec, "0000:68:00.0", "vm-shutoff;");
    assert_true(gw_attach_libvirt_current(src));
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

/* A shorter reconcile period applies at once, without a restart. */
static void reconcile_interval_changes_live(void **state)
{
    recorder rec;
    recorder_init(&rec);
    char *uri = fixture_uri("x299-3xa6000.xml");
    gw_attach_source *src = start_watcher(uri, X299_GPUS, 3, &rec, true, true, 60000);   /* no events */
    assert_int_equal(gw_attach_libvirt_wait_synced(src, WAIT_MS), 0);
    virConnectPtr c = gw_attach_libvirt_connection(src);
    assert_int_equal(gw_attach_libvirt_set_reconcile_interval(src, 100), 0);
    size_t mark = change_count(&rec);
    uint64_t t0 = now_ms(), t1;
    undefine(c, "vm-shutoff");
    assert_true(wait_change(&rec, mark, "0000:68:00.0", "", &t1) >= 0);
    assert_latency("undefine -> detached by a reconcile period shortened live", t0, t1);
    virConnectClose(c);
    gw_attach_source_free(src);
    free(uri);
    recorder_clear(&rec);
}

/* Several watchers share the one libvirt event loop; freeing one leaves the
 * other's events flowing, and the loop restarts after all are gone. */
static void watchers_share_the_event_loop(void **state)
{
    char *uri = fixture_uri("x299-3xa6000.xml");
    for (int round = 0; round < 2; round++) {
        recorder r1, r2;
        recorder_init(&r1);
        recorder_init(&r2);
        gw_attach_source *a = start_watcher(uri, X299_GPUS, 3, &r1, true, false, 60000);
        gw_attach_source *b = start_watcher(uri, X299_GPUS, 3, &r2, true, false, 60000);
        assert_int_equal(gw_attach_libvirt_wait_synced(a, WAIT_MS), 0);
        assert_int_equal(gw_attach_libvirt_wait_synced(b, WAIT_MS), 0);
        gw_attach_source_free(a);
        virConnectPtr c = gw_attach_libvirt_connection(b);
        size_t mark = change_count(&r2);
        undefine(c, "vm-shutoff");
        assert_true(wait_change(&r2, mark, "0000:68:00.0", "", NULL) >= 0);
        virConnectClose(c);
        gw_attach_source_free(b);
        recorder_clear(&r1);
        recorder_clear(&r2);
    }
    free(uri);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(xml_source_address_not_guest_address),
        cmocka_unit_test(xml_bad_input_is_refused),
        cmocka_unit_test(options_are_checked),
        cmocka_unit_test(fixtures_match_the_test_hosts),
        cmocka_unit_test(x299_initial_attachment),
        cmocka_unit_test(sm4029_initial_attachment),
        cmocka_unit_test(events_define_and_undefine),
        cmocka_unit_test(events_start_and_stop_report_running),
        cmocka_unit_test(options_version_1_still_accepted),
        cmocka_unit_test(events_domain_with_two_gpus),
        cmocka_unit_test(reconcile_finds_what_events_missed),
        cmocka_unit_test(reconcile_after_restart),
        cmocka_unit_test(reconnect_after_close),
        cmocka_unit_test(connect_retries_until_libvirt_appears),
        cmocka_unit_test(watchers_share_the_event_loop),
        cmocka_unit_test(watch_set_changes_while_running),
        cmocka_unit_test(resync_reports_every_gpu_again),
        cmocka_unit_test(sync_lost_and_current_again),
        cmocka_unit_test(options_version_2_still_accepted),
        cmocka_unit_test(reconcile_interval_changes_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
