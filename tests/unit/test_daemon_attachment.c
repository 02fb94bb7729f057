/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwardend's attachment view, its gate and its promotions while the libvirt
 * watcher loses its connection, against libvirt's test driver, in-process;
 * and the fences of quarantined GPUs (fence.c) on the simulated backend,
 * whose group nodes open once at a time, as the kernel's do.
 *
 * The daemon's sources that make the gate's answer (the attachment view,
 * the clean-ups, the ops; loop.c's three helpers are stubbed below, and no
 * endpoint is served) are compiled into this test, so that it can do what no client of a
 * running daemon can: drop the watcher's connection while libvirt is
 * unreachable (gw_attach_libvirt_connection_lost() is what libvirt's close
 * callback does; a test:///FILE URI whose file is gone is a libvirtd that is
 * not there) and see what the daemon allows meanwhile. The restart and
 * start-up cases run against the real daemon in
 * tests/python/test_daemon_libvirt.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../agent/daemon/attachment.c"
#include "../../agent/daemon/cleanup.c"
#include "../../agent/daemon/config.c"
#include "../../agent/daemon/events.c"
#include "../../agent/daemon/fence.c"
#include "../../agent/daemon/fence_store.c"
#include "../../agent/daemon/fleet.c"
#include "../../agent/daemon/manpage.c"
#include "../../agent/daemon/metrics.c"
#include "../../agent/daemon/ops.c"

#include <gpuwarden/audit.h>
#include <libvirt/libvirt.h>

#include "attach_internal.h"
#include "hostops_sim.h"

#define GPU_67 "0000:67:00.0"
#define WAIT_MS 10000

/* ---- loop.c's helpers --------------------------------------------------- */

int64_t gwd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gwd_wake(gwd *d)
{
    uint64_t one = 1;
    if (d->wake_fd >= 0 && write(d->wake_fd, &one, sizeof one) < 0)
        return;     /* EAGAIN: already awake; the test polls anyway */
}

/* Events are built (the builders run, as in the daemon) and dropped. */
void gwd_event_publish(gwd *d, const char *kind, const char *address, gwd_event_builder build, void *userdata)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pthread_mutex_lock(&d->event_lock);
    build(&pk, ++d->event_seq, userdata);
    pthread_mutex_unlock(&d->event_lock);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- a daemon ----------------------------------------------------------- */

typedef struct world {
    gwd d;
    gw_sim *sim;
    char dir[32];
    char *node, *state, *hooks;
    char *fixture;              /* the node file's text */
} world;

static world W;

static uint64_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* What the main loop does on each turn, until `until` holds (the test has no
 * main loop: it turns it by hand). */
static bool pump(bool (*until)(void), unsigned timeout_ms)
{
    uint64_t deadline = mono_now() + timeout_ms;
    while (mono_now() < deadline) {
        gwd_cleanup_kick(&W.d);
        if (atomic_exchange(&W.d.promote_due, false))
            gwd_promote_confirmed(&W.d);
        if (until())
            return true;
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    }
    return until();
}

static gw_state state_of(const char *address)
{
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(W.d.reg, address, &dev), 0);
    gw_state s = dev->state;
    gw_device_free(dev);
    return s;
}

static bool all_settled(void)
{
    pthread_mutex_lock(&W.d.lock);
    bool ready = gwd_attachment_ready(&W.d);
    pthread_mutex_unlock(&W.d.lock);
    return ready && state_of(GPU_67) == GW_STATE_SANITIZED && state_of("0000:1a:00.0") == GW_STATE_ATTACHED;
}

static bool disconnected(void)
{
    return !gw_attach_libvirt_connected(W.d.attach);
}

static int run_op(gw_proto_op op, const char *domain, const char *address, json_t **out)
{
    gw_proto_request req;
    memset(&req, 0, sizeof req);
    req.op = op;
    req.major = 1;
    const char *addrs[] = { address };
    req.args.domain = domain;
    req.args.addresses = addrs;
    req.args.n_addresses = address ? 1 : 0;
    req.args.limit = 100;
    gw_proto_error err;
    memset(&err, 0, sizeof err);
    return gwd_op_run(&W.d, &req, true, out, &err);
}

/* The gate's reason for `domain` on the GPU; NULL when allowed. */
static char *gate(const char *domain, const char *address)
{
    json_t *res = NULL;
    assert_int_equal(run_op(GW_OP_GATE, domain, address, &res), 0);
    json_t *reasons = json_object_get(res, "reasons");
    char *why = json_array_size(reasons)
                    ? gw_xstrdup(json_string_value(json_object_get(json_array_get(reasons, 0), "reason")))
                    : NULL;
    assert_true(json_is_true(json_object_get(res, "allowed")) == (why == NULL));
    json_decref(res);
    return why;
}

static void hint(gw_proto_op op, const char *domain, const char *address)
{
    json_t *res = NULL;
    assert_int_equal(run_op(op, domain, address, &res), 0);
    json_decref(res);
}

/* `published` for the current generation: how many GPUs it promoted. */
static size_t publish_current(void)
{
    json_t *inv = NULL, *res = NULL;
    assert_int_equal(run_op(GW_OP_INVENTORY, NULL, NULL, &inv), 0);
    gw_proto_request req;
    memset(&req, 0, sizeof req);
    req.op = GW_OP_PUBLISHED;
    req.major = 1;
    req.args.generation = (uint64_t)json_integer_value(json_object_get(inv, "generation"));
    gw_proto_error err;
    assert_int_equal(gwd_op_run(&W.d, &req, true, &res, &err), 0);
    size_t n = json_array_size(json_object_get(res, "promoted"));
    json_decref(res);
    json_decref(inv);
    return n;
}

/* The audit's events for a GPU, joined with ' '. */
static char *audit_of(const char *address)
{
    gw_audit_filter f = GW_AUDIT_FILTER_INIT;
    f.address = address;
    gw_audit *log = NULL;
    assert_int_equal(gw_audit_read(&log, W.state, &f), 0);
    char *s = gw_xstrdup("");
    for (size_t i = 0; i < gw_audit_count(log); i++) {
        char *t = gw_strdup_printf("%s%s%s", s, *s ? " " : "", gw_event_name(gw_audit_get(log, i)->event));
        free(s);
        s = t;
    }
    gw_audit_free(log);
    return s;
}

static int setup_host(const char *host, bool (*settled)(void))
{
    memset(&W, 0, sizeof W);
    snprintf(W.dir, sizeof W.dir, "/tmp/gw-dattach-XXXXXX");
    assert_non_null(mkdtemp(W.dir));
    W.node = gw_strdup_printf("%s/node.xml", W.dir);
    W.state = gw_strdup_printf("%s/state", W.dir);
    W.hooks = gw_strdup_printf("%s/hooks.d", W.dir);
    char *fixture = gw_strdup_printf("%s/tests/fixtures/libvirt/x299-3xa6000.xml", GW_SOURCE_DIR);
    assert_int_equal(gw_read_file(fixture, &W.fixture), 0);
    free(fixture);
    write_text(W.node, W.fixture);

    gwd *d = &W.d;
    d->signal_fd = d->wake_fd = -1;
    d->boot_ms = gwd_now_ms();
    pthread_mutex_init(&d->event_lock, NULL);
    pthread_mutex_init(&d->lock, NULL);
    gwd_metrics_init(&d->metrics);
    char *root = gw_strdup_printf("%s/tests/fixtures/hosts/%s", GW_SOURCE_DIR, host);
    char *uri = gw_strdup_printf("test://%s", W.node);
    char *argv[] = { "gpuwardend", "--config", "/dev/null", "--host-root", root, "--host-backend", "simulated",
                     "--state-dir", W.state, "--hooks-dir", W.hooks, "--libvirt-uri", uri,
                     "--host-name", "cmp1", "--reconcile-interval", "60", NULL };
    assert_int_equal(gwd_config_load(&d->cfg, (int)(sizeof argv / sizeof *argv) - 1, argv), 0);
    free(root);
    free(uri);
    d->host_name = gw_xstrdup("cmp1");
    d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    d->policy = (gw_sanitize_policy)GW_SANITIZE_POLICY_INIT;
    d->policy.hooks_dir = d->cfg.hooks_dir;
    assert_int_equal(gw_hostops_sim_new(&d->ops, &W.sim, d->cfg.host_root), 0);
    gw_registry_options ro = GW_REGISTRY_OPTIONS_INIT;
    ro.state_dir = W.state;
    assert_int_equal(gw_registry_open(&d->reg, &ro), 0);
    gw_registry_set_callback(d->reg, gwd_events_on_transition, d);
    assert_int_equal(gwd_fleet_scan(d), 0);
    assert_int_equal(gwd_attachment_start(d), 0);
    assert_int_equal(gwd_cleanup_init(d), 0);
    if (!pump(settled, WAIT_MS))
        fail_msg("the daemon did not settle: 0000:67:00.0 %s", gw_state_name(state_of(GPU_67)));
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return setup_host("x299-3xa6000", all_settled);
}

static int teardown(void **state)
{
    gwd *d = &W.d;
    gwd_cleanup_fini(d);
    gwd_attachment_stop(d);
    gwd_fence_fini(d);
    gw_inventory_free(d->inventory);
    gw_host_free(d->host);
    gwd_strv_free(d->managed);
    gw_registry_free(d->reg);
    gw_hostops_unref(d->ops);
    close(d->wake_fd);
    free(d->host_name);
    gwd_config_free(&d->cfg);
    unlink(W.node);
    char *cmd = gw_strdup_printf("rm -rf '%s'", W.dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(W.node);
    free(W.state);
    free(W.hooks);
    free(W.fixture);
    return 0;
}

static bool gpu67_clean_again(void)
{
    char *events = audit_of(GPU_67);
    const char *tail = "attach_seen detach_seen cleanup_started cleanup_passed";
    size_t n = strlen(events), k = strlen(tail);
    bool clean = n >= k && !strcmp(events + n - k, tail) && state_of(GPU_67) == GW_STATE_SANITIZED;
    free(events);
    return clean;
}

/* The `metrics` op's word on the watcher: "connected current disconnects". */
static void watcher_metrics(char *buf, size_t n)
{
    json_t *m = NULL;
    gw_proto_error err;
    assert_int_equal(op_metrics(&W.d, NULL, false, &m, &err), 0);
    json_t *l = json_object_get(m, "libvirt");
    assert_true(json_is_true(json_object_get(l, "enabled")));
    snprintf(buf, n, "%d %d %lld", json_is_true(json_object_get(l, "connected")),
             json_is_true(json_object_get(l, "current")), json_integer_value(json_object_get(l, "disconnects")));
    json_decref(m);
}

/*
 * libvirtd goes away while the daemon runs; meanwhile a VM starts and stops
 * on a clean GPU (only the hook's hints tell of it). While the watcher is not
 * connected nothing is promoted and the gate refuses, saying why; once it has
 * read libvirt again the GPU the VM used is detached and cleaned.
 */
static void vm_during_a_disconnection(void **state)
{
    char *why = gate("vm-new", GPU_67);
    assert_null(why);
    char wm[64];
    watcher_metrics(wm, sizeof wm);
    assert_string_equal(wm, "1 1 0");

    unlink(W.node);     /* libvirtd is gone: every reconnect fails */
    gw_attach_libvirt_connection_lost(W.d.attach, VIR_CONNECT_CLOSE_REASON_EOF);
    assert_true(pump(disconnected, WAIT_MS));
    watcher_metrics(wm, sizeof wm);
    assert_string_equal(wm, "0 0 1");

    why = gate("vm-new", GPU_67);
    if (!why || strncmp(why, "attachment unknown: ", 20) || !strstr(why, "not connected"))
        fail_msg("gate while disconnected: %s", why ? why : "allowed");
    free(why);
    assert_int_equal(publish_current(), 0);
    assert_int_equal(state_of(GPU_67), GW_STATE_SANITIZED);

    hint(GW_OP_ATTACHED, "vm-x", GPU_67);
    hint(GW_OP_RELEASED, "vm-x", GPU_67);
    assert_int_equal(state_of(GPU_67), GW_STATE_ATTACHED);
    assert_int_equal(publish_current(), 0);

    write_text(W.node, W.fixture);      /* back, without vm-x */
    if (!pump(gpu67_clean_again, WAIT_MS)) {
        char *events = audit_of(GPU_67);
        fail_msg("0000:67:00.0 not cleaned after the reconnect: %s", events);
    }
    why = gate("vm-new", GPU_67);
    assert_null(why);
    watcher_metrics(wm, sizeof wm);
    assert_string_equal(wm, "1 1 1");
    assert_int_equal(publish_current(), 1);
    assert_int_equal(state_of(GPU_67), GW_STATE_ALLOCATABLE);
}

/* ---- fences ---------------------------------------------------------------- */

/* An operator's op on one GPU (quarantine, release): the device it answers
 * with. */
static json_t *operator_op(gw_proto_op op, const char *address, const char *reason)
{
    gw_proto_request req;
    memset(&req, 0, sizeof req);
    req.op = op;
    req.major = 1;
    req.args.address = address;
    req.args.reason = reason;
    gw_proto_error err;
    memset(&err, 0, sizeof err);
    json_t *out = NULL;
    if (gwd_op_run(&W.d, &req, true, &out, &err) < 0)
        fail_msg("%s %s: %s", gw_proto_op_name(op), address, err.message);
    return out;
}

static bool device_fenced(const char *address)
{
    gw_proto_request req;
    memset(&req, 0, sizeof req);
    req.op = GW_OP_DEVICE;
    req.major = 1;
    req.args.address = address;
    gw_proto_error err;
    json_t *out = NULL;
    assert_int_equal(gwd_op_run(&W.d, &req, true, &out, &err), 0);
    bool fenced = json_is_true(json_object_get(out, "fenced"));
    json_decref(out);
    return fenced;
}

static char *group_node(const char *address)
{
    pthread_mutex_lock(&W.d.lock);
    const gw_gpu *g = gwd_fleet_gpu(&W.d, address);
    char *node = gw_strdup_printf("dev/vfio/%s", g->iommu_group);
    pthread_mutex_unlock(&W.d.lock);
    return node;
}

/* What QEMU's open of the group node gets from the kernel: 0 (it has the
 * group now, released at once), or -EBUSY. */
static int qemu_open(const char *node)
{
    void *h = NULL;
    int r = gw_hostops_hold(W.d.ops, node, &h);
    gw_hostops_release(W.d.ops, h);
    return r;
}

/* Why the fence of the group of `address` is not held (the log's words), or
 * NULL. */
static const char *fence_why(const char *address)
{
    pthread_mutex_lock(&W.d.lock);
    const gw_gpu *g = gwd_fleet_gpu(&W.d, address);
    gwd_fence *f = fence_find(&W.d, g->iommu_group);
    const char *why = f ? f->why : NULL;
    pthread_mutex_unlock(&W.d.lock);
    return why;
}

/* A few turns of the loop, then: `address` is not fenced, and the reason
 * the daemon logged contains `because`. */
static void assert_not_fenced(const char *address, const char *because)
{
    for (int i = 0; i < 5; i++)
        gwd_cleanup_kick(&W.d);
    assert_false(device_fenced(address));
    const char *why = fence_why(address);
    if (!why || !strstr(why, because))
        fail_msg("%s: why not fenced: %s", address, why ? why : "(nothing said)");
}

static bool gpu67_fenced(void)
{
    return device_fenced(GPU_67);
}

static bool gpu67_sanitized(void)
{
    return state_of(GPU_67) == GW_STATE_SANITIZED && !gw_cleanup_pool_busy(W.d.pool, GPU_67);
}

/*
 * A quarantined GPU's group node is held by the daemon: a QEMU's open of it
 * gets EBUSY (a hot-plug, which no hook gates). The release lifts the fence
 * before the clean-up starts, and the clean-up, which holds the group itself
 * across the reset, passes; the group opens again.
 */
static void a_quarantined_gpu_is_fenced(void **state)
{
    (void)state;
    _cleanup_free_ char *node = group_node(GPU_67);
    assert_int_equal(qemu_open(node), 0);
    assert_false(device_fenced(GPU_67));
    /* The reply to the quarantine shows the fence already. */
    json_t *q = operator_op(GW_OP_QUARANTINE, GPU_67, "fan noise");
    assert_true(json_is_true(json_object_get(q, "fenced")));
    json_decref(q);
    assert_int_equal(qemu_open(node), -EBUSY);
    assert_null(fence_why(GPU_67));
    /* The other GPUs' groups are not held. */
    _cleanup_free_ char *other = group_node("0000:1a:00.0");
    pthread_mutex_lock(&W.d.lock);
    assert_int_equal(gwd_fence_count(&W.d), 1);
    pthread_mutex_unlock(&W.d.lock);

    q = operator_op(GW_OP_RELEASE, GPU_67, "fan replaced");
    assert_false(json_is_true(json_object_get(q, "fenced")));
    json_decref(q);
    if (!pump(gpu67_sanitized, WAIT_MS)) {
        _cleanup_free_ char *events = audit_of(GPU_67);
        fail_msg("0000:67:00.0 not cleaned after the release: %s", events);
    }
    _cleanup_free_ char *events = audit_of(GPU_67);
    assert_non_null(strstr(events, "quarantine release cleanup_started cleanup_passed"));
    assert_false(device_fenced(GPU_67));
    assert_int_equal(qemu_open(node), 0);
    pthread_mutex_lock(&W.d.lock);
    assert_int_equal(gwd_fence_count(&W.d), 0);
    pthread_mutex_unlock(&W.d.lock);
}

/*
 * A process holds the group when the GPU is quarantined (a QEMU that was
 * given it before): no fence, and the reason names the process; once it lets
 * go, the fence is taken.
 */
static void a_fence_waits_for_the_holder(void **state)
{
    (void)state;
    _cleanup_free_ char *node = group_node(GPU_67);
    const char *group = node + strlen("dev/vfio/");
    gw_sim_hold_group(W.sim, group, 4242, "qemu-system-x86");
    json_decref(operator_op(GW_OP_QUARANTINE, GPU_67, "fan noise"));
    assert_not_fenced(GPU_67, "is open already, by pid 4242 (qemu-system-x86)");
    gw_sim_release_group(W.sim, group, 4242);
    assert_true(pump(gpu67_fenced, WAIT_MS));
    assert_int_equal(qemu_open(node), -EBUSY);
}

static bool acs_root_settled(void)
{
    pthread_mutex_lock(&W.d.lock);
    bool ready = gwd_attachment_ready(&W.d);
    pthread_mutex_unlock(&W.d.lock);
    return ready && state_of("0000:68:00.0") == GW_STATE_ATTACHED && state_of("0000:1a:00.0") == GW_STATE_ATTACHED;
}

static int setup_acs_off_root(void **state)
{
    (void)state;
    return setup_host("acs-off-root", acs_root_settled);
}

/*
 * Two GPUs in one IOMMU group (acs-off-root: the root port without ACS
 * takes both, with their HDA functions and the switch). One quarantined while
 * the other is attached to a defined domain: no fence, it would keep that
 * GPU from its domain, and the reason names it. Both quarantined: the group
 * is fenced (the other GPU's HDA function belongs to a quarantined GPU's
 * slot). One released: the fence is lifted.
 */
static void a_fence_spares_a_group_mate(void **state)
{
    (void)state;
    const char *gpu68 = "0000:68:00.0";
    _cleanup_free_ char *node = group_node(GPU_67);
    json_decref(operator_op(GW_OP_QUARANTINE, GPU_67, "fan noise"));
    assert_not_fenced(GPU_67, "GPU 0000:68:00.0 is in the same IOMMU group 46 and is attached");

    json_decref(operator_op(GW_OP_QUARANTINE, gpu68, "board swap"));
    assert_true(pump(gpu67_fenced, WAIT_MS));
    assert_true(device_fenced(gpu68));
    assert_int_equal(qemu_open(node), -EBUSY);
    /* vm-shutoff may not start on 0000:68:00.0 now: the gate says so, and
     * the kernel would refuse its QEMU the group. */
    char *g = gate("vm-shutoff", gpu68);
    assert_non_null(g);
    free(g);

    /* Released, 0000:68:00.0 is dirty and still vm-shutoff's (no clean-up
     * while a domain references it): the fence goes, the group opens. */
    json_decref(operator_op(GW_OP_RELEASE, gpu68, "board swapped"));
    assert_not_fenced(GPU_67, "GPU 0000:68:00.0 is in the same IOMMU group 46 and is ");
    assert_int_equal(qemu_open(node), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(vm_during_a_disconnection, setup, teardown),
        cmocka_unit_test_setup_teardown(a_quarantined_gpu_is_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(a_fence_waits_for_the_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(a_fence_spares_a_group_mate, setup_acs_off_root, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
