/* The clean-up path. Reads top to bottom:
 *   kick (main thread): every device waiting for a clean-up, managed, on the
 *     bus and held by no VM -> "cleanup started" persisted -> queued on the pool;
 *   the pool runs the pipeline on a worker thread (never the request path);
 *   done (worker thread): the result and the pins it updated are persisted with
 *     "cleanup passed" (-> sanitized) or "cleanup failed" (-> quarantined, the
 *     failing step and its evidence as the reason) by gw_sanitize_result_apply,
 *     a cleanup event is published, and the main loop is woken.
 * The daemon must start the libvirt watcher before the pool: the pool keeps
 * the attachment source it was given. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "daemon.h"
#include "proto_codec.h"
#include "util.h"

/* Without libvirt, the pipeline's "not in use" step asks the attachment view
 * fed by the hook's hints, through the same interface the libvirt watcher
 * implements. With libvirt the watcher itself answers (from the worker
 * thread, so a slow libvirtd delays only that clean-up). */
typedef struct hint_source {
    gw_attach_source base;
    gwd *d;
} hint_source;

static int hint_query(gw_attach_source *src, const char *address, char ***domains)
{
    gwd *d = ((hint_source *)src)->d;
    pthread_mutex_lock(&d->lock);
    char *const *held = gwd_attachment_domains(d, address);
    size_t n = 0;
    while (held && held[n])
        n++;
    *domains = gwd_strv_copy((const char *const *)held, n);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static void hint_free(gw_attach_source *src)
{
    free(src);
}

static const gw_attach_source_ops hint_ops = {
    GW_ATTACH_SOURCE_OPS_VERSION, "hook-hints", hint_query, NULL, hint_free,
};

static void pack_cleanup_event(void *pkv, uint64_t seq, void *userdata)
{
    msgpack_packer *pk = pkv;
    gwd *d = ((void **)userdata)[0];
    const gw_sanitize_result *res = ((void **)userdata)[1];
    int64_t start = gw_sanitize_result_start_ms(res), end = gw_sanitize_result_end_ms(res);
    gw_proto_pack_event_head(pk, seq, (uint64_t)d->boot_ms, (uint64_t)end, "cleanup",
                             gw_sanitize_result_address(res), 3);
    gw_proto_pack_cstr(pk, "result");
    gw_proto_pack_cstr(pk, gw_sanitize_result_verdict(res) == GW_VERDICT_PASS ? "passed" : "failed");
    gw_proto_pack_cstr(pk, "duration_ms");
    msgpack_pack_uint64(pk, (uint64_t)(end > start ? end - start : 0));
    gw_proto_pack_cstr(pk, "steps");
    size_t n = gw_sanitize_result_step_count(res);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        const gw_step_result *s = gw_sanitize_result_step(res, i);
        msgpack_pack_map(pk, 4);
        gw_proto_pack_cstr(pk, "name");
        gw_proto_pack_cstr(pk, s->name);
        gw_proto_pack_cstr(pk, "verdict");
        gw_proto_pack_cstr(pk, gw_verdict_name(s->verdict));
        gw_proto_pack_cstr(pk, "evidence");
        gw_proto_pack_cstr(pk, s->evidence);
        gw_proto_pack_cstr(pk, "duration_ms");
        msgpack_pack_uint64(pk, s->duration_us / 1000);
    }
}

/* A domain was defined on the GPU while its clean-up ran, so the device is
 * attached now and the table takes no clean-up verdict. The verdict still
 * decides: passed -> that domain got a clean GPU (the gate lets it start);
 * failed -> quarantined, as any failed clean-up. */
static void settle_attached(gwd *d, const char *address, bool passed, const char *reason)
{
    gw_device *dev = NULL;
    if (gw_registry_get(d->reg, address, &dev) < 0)
        return;
    const char *clean = gw_device_fact(dev, "attach.clean");
    bool pending = dev->state == GW_STATE_ATTACHED && clean && !strcmp(clean, "pending");
    gw_device_free(dev);
    if (!pending) {
        gw_log(GW_LOG_NOTICE, "%s: clean-up %s after its state changed; not recorded", address,
               passed ? "passed" : "failed");
        return;
    }
    if (passed) {
        gw_registry_set_fact(d->reg, address, "attach.clean", "1");
        return;
    }
    gw_apply_options o = GW_APPLY_OPTIONS_INIT;
    o.reason = reason;
    if (gw_registry_apply(d->reg, address, GW_EVENT_QUARANTINE, &o, NULL) < 0)
        gw_log(GW_LOG_ERR, "%s: cannot quarantine after a failed clean-up: %s", address, gw_error_message());
}

static void done(gw_sanitize_result *res, void *userdata)
{
    gwd *d = userdata;
    const char *address = gw_sanitize_result_address(res);
    bool passed = gw_sanitize_result_verdict(res) == GW_VERDICT_PASS;
    int r;
    if (gw_sanitize_result_failed_step(res) == GW_STEP_NOT_IN_USE) {
        /* A VM took the GPU between the kick and the check: nothing is wrong
         * with the GPU, so no quarantine. It stays dirty, and the watcher's
         * report makes it attached. */
        gw_apply_options o = GW_APPLY_OPTIONS_INIT;
        o.reason = gw_sanitize_result_reason(res);
        r = gw_registry_apply(d->reg, address, GW_EVENT_CLEANUP_ABORTED, &o, NULL);
        passed = false;
        if (r == -EPERM) {
            /* Already attached (defined mid-clean-up): it was never cleaned. */
            gw_registry_set_fact(d->reg, address, "attach.clean", "0");
            r = 0;
        }
    } else {
        /* The pins, the result and the transition, persisted before anything
         * is announced. */
        r = gw_sanitize_result_apply(res, d->reg, "system");
    }
    if (r == -EPERM)
        settle_attached(d, address, passed, passed ? NULL : gw_sanitize_result_reason(res));
    else if (r < 0)
        gw_log(GW_LOG_ERR, "%s: clean-up %s not recorded: %s", address, passed ? "passed" : "failed",
               gw_error_message());

    if (passed)
        atomic_fetch_add(&d->cleanups_passed, 1);
    else
        atomic_fetch_add(&d->cleanups_failed, 1);
    gw_log(passed ? GW_LOG_INFO : GW_LOG_WARNING, "%s: clean-up %s%s%s", address, passed ? "passed" : "failed",
           passed ? "" : ": ", passed ? "" : gw_sanitize_result_reason(res));
    void *ctx[2] = { d, res };
    gwd_event_publish(d, "cleanup", address, pack_cleanup_event, ctx);
    gw_sanitize_result_free(res);
    gwd_wake(d);
}

int gwd_cleanup_init(gwd *d)
{
    if (!d->attach) {
        hint_source *hs = gw_xcalloc(1, sizeof *hs);
        hs->base.ops = &hint_ops;
        hs->d = d;
        d->hint_source = &hs->base;
    }
    gw_cleanup_pool_options o = GW_CLEANUP_POOL_OPTIONS_INIT;
    o.workers = (unsigned)d->cfg.cleanup_workers;
    o.ops = d->ops;
    o.attach = d->attach ? d->attach : d->hint_source;
    o.policy = &d->policy;
    o.done = done;
    o.userdata = d;
    int r = gw_cleanup_pool_new(&d->pool, &o);
    if (r < 0)
        gw_log(GW_LOG_ERR, "clean-up pool: %s", gw_error_message());
    return r;
}

void gwd_cleanup_fini(gwd *d)
{
    gw_cleanup_pool_free(d->pool);
    d->pool = NULL;
    gw_attach_source_free(d->hint_source);
    d->hint_source = NULL;
}

static void start(gwd *d, const gw_device *dev)
{
    const char *address = dev->identity.address;
    gw_apply_options o = GW_APPLY_OPTIONS_INIT;
    o.actor = "system";
    o.if_seq = dev->seq;
    int r = gw_registry_apply(d->reg, address, GW_EVENT_CLEANUP_STARTED, &o, NULL);
    if (r < 0) {
        if (r != -ESTALE && r != -EBUSY)
            gw_log(GW_LOG_ERR, "%s: cannot start clean-up: %s", address, gw_error_message());
        return;
    }
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = address;
    req.pins = dev->facts;
    req.n_pins = dev->n_facts;
    r = gw_cleanup_pool_submit(d->pool, &req);
    if (r < 0) {
        gw_log(GW_LOG_ERR, "%s: clean-up not queued: %s", address, gw_error_message());
        gw_apply_options a = GW_APPLY_OPTIONS_INIT;
        a.reason = "clean-up could not be queued";
        gw_registry_apply(d->reg, address, GW_EVENT_CLEANUP_ABORTED, &a, NULL);
        return;
    }
    gw_log(GW_LOG_INFO, "%s: clean-up started", address);
}

/* One clean-up per IOMMU group at a time: a clean-up rebinds and resets the
 * whole group (HDA, USB functions), so two GPUs of one group cleaned at once
 * would race on the same functions. The other waits for the next kick.
 * Caller holds d->lock. */
static bool group_busy(gwd *d, const char *address)
{
    const gw_gpu *g = gwd_fleet_gpu(d, address);
    if (!g || !g->iommu_group)
        return false;
    for (char **m = d->managed; m && *m; m++) {
        const gw_gpu *o = gwd_fleet_gpu(d, *m);
        if (o && strcmp(o->address, address) && o->iommu_group && !strcmp(o->iommu_group, g->iommu_group) &&
            gw_cleanup_pool_busy(d->pool, o->address))
            return true;
    }
    return false;
}

void gwd_cleanup_kick(gwd *d)
{
    pthread_mutex_lock(&d->lock);
    bool ready = gwd_attachment_ready(d);
    pthread_mutex_unlock(&d->lock);
    if (!ready)
        return;
    gw_device **list = NULL;
    size_t n = 0;
    if (gw_registry_list(d->reg, &list, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        const gw_device *dev = list[i];
        if (!gw_device_needs_cleanup(dev) || gw_cleanup_pool_busy(d->pool, dev->identity.address))
            continue;
        pthread_mutex_lock(&d->lock);
        bool eligible = gwd_fleet_is_managed(d, dev->identity.address) &&
                        !gwd_attachment_domains(d, dev->identity.address) &&
                        !group_busy(d, dev->identity.address);
        pthread_mutex_unlock(&d->lock);
        if (eligible)
            start(d, dev);
    }
    gw_device_list_free(list, n);
}
