/* SPDX-License-Identifier: Apache-2.0 */
/* The clean-up path. Reads top to bottom:
 *   kick (main thread): every device waiting for a clean-up, managed, on the
 *     bus, held by no VM and in an IOMMU group of which no VM holds another
 *     member -> "cleanup started" persisted -> queued on the pool;
 *   the pool runs the pipeline on a worker thread (never the request path);
 *   done (worker thread): the result and the pins it updated are persisted with
 *     "cleanup passed" (-> sanitized) or "cleanup failed" (-> quarantined, the
 *     failing step and its evidence as the reason) by gw_sanitize_result_apply,
 *     a cleanup event is published, and the main loop is woken. A clean-up
 *     that found the GPU in use (a VM, or a process holding its VFIO group)
 *     is "cleanup aborted" instead: dirty, not quarantined, and it waits a
 *     while before the next try.
 * The daemon must start the libvirt watcher before the pool: the pool keeps
 * the attachment source it was given. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- waiting after an in-use clean-up ------------------------------------
 * An aborted clean-up leaves the GPU dirty, so the next kick (at once: done()
 * wakes the loop) would start another, which fails again for as long as the
 * VM or the process holds the GPU: a loop as fast as the pipeline, two audit
 * records a turn. For a VM the watcher's report soon makes the GPU attached;
 * a process libvirt does not know about (a QEMU started by hand) has no such
 * end. So the GPU waits in_use_retry_s, doubling while it stays in use, up to
 * RETRY_MAX_MS. Any other transition of the device (attach or detach seen,
 * an operator's sanitize) lifts the wait: its seq no longer matches. A
 * clean-up that could not be started or queued (the checkpoint could not be
 * written) waits the same way, so a failing disk is not retried on every
 * wake-up.
 *
 * A VM holding another GPU of the same IOMMU group is not retried at all:
 * the clean-up rebinds and resets the whole group and its not_in_use step
 * refuses while any member is held, so it could only abort (on a switch with
 * four GPUs per group, once per kick for each sibling). The kick does not
 * start it while a member is held (group_holder) and starts it as soon as
 * that member is released (the detach wakes the loop), whatever wait an
 * earlier abort had set. */
#define RETRY_MAX_MS (600 * 1000)

/* Caller holds d->lock. */
static gwd_retry *retry_find(gwd *d, const char *address)
{
    for (size_t i = 0; i < d->n_retries; i++)
        if (!strcmp(d->retries[i].address, address))
            return &d->retries[i];
    return NULL;
}

static void retry_forget(gwd *d, const char *address)
{
    pthread_mutex_lock(&d->lock);
    gwd_retry *e = retry_find(d, address);
    if (e)
        *e = d->retries[--d->n_retries];
    pthread_mutex_unlock(&d->lock);
}

/* The clean-up that just ended (seq: its abort) found the GPU in use. An
 * entry still there means the one before did too, with nothing in between
 * (the kick drops entries whose seq moved on): wait twice as long. */
static int64_t retry_later(gwd *d, const char *address, uint64_t seq)
{
    int64_t base = (int64_t)d->cfg.in_use_retry_s * 1000;     /* 1..600, checked at start and reload */
    pthread_mutex_lock(&d->lock);
    gwd_retry *e = retry_find(d, address);
    if (!e) {
        d->retries = gw_xrealloc(d->retries, d->n_retries + 1, sizeof *d->retries);
        e = &d->retries[d->n_retries++];
        memset(e, 0, sizeof *e);
        snprintf(e->address, sizeof e->address, "%s", address);
        e->delay_ms = base;
    } else if (e->group_wait || !e->delay_ms) {
        e->delay_ms = base;     /* it waited for a release, not after an abort */
    } else {
        e->delay_ms = e->delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : e->delay_ms * 2;
    }
    e->group_wait = false;
    e->seq = seq;
    e->not_before_ms = gwd_mono_ms() + e->delay_ms;
    if (e->not_before_ms < d->retry_wake_ms)
        d->retry_wake_ms = e->not_before_ms;
    int64_t delay = e->delay_ms;
    pthread_mutex_unlock(&d->lock);
    return delay;
}

bool gwd_cleanup_retry_due(gwd *d)
{
    pthread_mutex_lock(&d->lock);
    bool due = gwd_mono_ms() >= d->retry_wake_ms;
    if (due) {
        /* The next end among the others (the kick starts the due ones). */
        int64_t now = gwd_mono_ms();
        d->retry_wake_ms = INT64_MAX;
        for (size_t i = 0; i < d->n_retries; i++)
            if (d->retries[i].not_before_ms > now && d->retries[i].not_before_ms < d->retry_wake_ms)
                d->retry_wake_ms = d->retries[i].not_before_ms;
    }
    pthread_mutex_unlock(&d->lock);
    return due;
}

/* Whether the device must still wait; its group holds no VM (the kick asked
 * group_holder first). Caller holds d->lock. */
static bool retry_waiting(gwd *d, const gw_device *dev)
{
    gwd_retry *e = retry_find(d, dev->identity.address);
    if (!e)
        return false;
    /* Moved on since; or it waited for a group member that is released now:
     * the release, not the clock, ends that wait. */
    if (e->seq != dev->seq || e->group_wait) {
        *e = d->retries[--d->n_retries];
        return false;
    }
    return gwd_mono_ms() < e->not_before_ms;
}

/* The managed GPU other than `address` in its IOMMU group that a domain
 * holds: in the attachment view, or attached in the registry (after a restart
 * without libvirt the hints that made it so are gone, and the VM may still
 * run). NULL when none. Caller holds d->lock. */
static const char *group_holder(gwd *d, const char *address, gw_device *const *list, size_t n)
{
    const gw_gpu *g = gwd_fleet_gpu(d, address);
    if (!g || !g->iommu_group)
        return NULL;
    for (char **m = d->managed; m && *m; m++) {
        const gw_gpu *o = gwd_fleet_gpu(d, *m);
        if (!o || !strcmp(*m, address) || !o->iommu_group || strcmp(o->iommu_group, g->iommu_group))
            continue;
        if (gwd_attachment_domains(d, *m))
            return *m;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(list[i]->identity.address, *m) && list[i]->state == GW_STATE_ATTACHED)
                return *m;
    }
    return NULL;
}

/* The device waits for `holder`'s release; said once per wait. Caller holds
 * d->lock. */
static void group_wait(gwd *d, const gw_device *dev, const char *holder)
{
    const char *address = dev->identity.address;
    gwd_retry *e = retry_find(d, address);
    if (e && e->seq == dev->seq && e->group_wait)
        return;
    if (!e) {
        d->retries = gw_xrealloc(d->retries, d->n_retries + 1, sizeof *d->retries);
        e = &d->retries[d->n_retries++];
        memset(e, 0, sizeof *e);
        snprintf(e->address, sizeof e->address, "%s", address);
    }
    e->seq = dev->seq;
    e->group_wait = true;
    const gw_gpu *g = gwd_fleet_gpu(d, address);
    gw_log(GW_LOG_NOTICE, "%s: clean-up waits until %s, in the same IOMMU group %s, is released by its domain",
           address, holder, g && g->iommu_group ? g->iommu_group : "?");
}

/* The GPU was in use: nothing is known to be wrong with it, so no
 * quarantine. It stays dirty; a VM's watcher report makes it attached, and
 * otherwise the clean-up runs again after a wait. */
static int abort_in_use(gwd *d, const gw_sanitize_result *res)
{
    const char *address = gw_sanitize_result_address(res);
    gw_apply_options o = GW_APPLY_OPTIONS_INIT;
    o.reason = gw_sanitize_result_reason(res);
    uint64_t seq = 0;
    int r = gw_registry_apply(d->reg, address, GW_EVENT_CLEANUP_ABORTED, &o, &seq);
    if (r == 0) {
        int64_t wait = retry_later(d, address, seq);
        gw_log(GW_LOG_NOTICE, "%s: clean-up aborted, next try in %lld s: %s", address, (long long)(wait / 1000),
               o.reason);
        return 0;
    }
    retry_forget(d, address);
    if (r == -EPERM) {
        /* Already attached (defined mid-clean-up): it was never cleaned. */
        gw_log(GW_LOG_NOTICE, "%s: clean-up aborted, the GPU is attached now: %s", address, o.reason);
        gw_registry_set_fact(d->reg, address, "attach.clean", "0");
        r = 0;
    }
    return r;
}

static void done(gw_sanitize_result *res, void *userdata)
{
    gwd *d = userdata;
    /* Released by freed(), once the run's last step has returned. */
    atomic_fetch_add(&d->runs_unreleased, 1);
    const char *address = gw_sanitize_result_address(res);
    bool passed = gw_sanitize_result_verdict(res) == GW_VERDICT_PASS;
    bool in_use = gw_sanitize_result_failed_step(res) == GW_STEP_NOT_IN_USE || gw_sanitize_result_in_use(res);
    int r;
    if (in_use) {
        /* A VM took the GPU between the kick and the check, or a process
         * holds its VFIO group (found at not_in_use, or at the reset step's
         * own check right before it writes). */
        r = abort_in_use(d, res);
        passed = false;
    } else {
        retry_forget(d, address);
        /* The pins, the result and the transition, persisted before anything
         * is announced. */
        r = gw_sanitize_result_apply(res, d->reg, "system");
    }
    if (r == -EPERM)
        settle_attached(d, address, passed, passed ? NULL : gw_sanitize_result_reason(res));
    else if (r < 0)
        gw_log(GW_LOG_ERR, "%s: clean-up %s not recorded: %s", address, passed ? "passed" : "failed",
               gw_error_message());

    if (passed && r == 0)
        atomic_store(&d->promote_due, true);    /* sanitized now: the main loop may promote it */
    if (passed)
        atomic_fetch_add(&d->cleanups_passed, 1);
    else
        atomic_fetch_add(&d->cleanups_failed, 1);
    gwd_metrics_cleanup(&d->metrics, res, in_use);
    if (!in_use)    /* abort_in_use() said it */
        gw_log_gpu(passed ? GW_LOG_INFO : GW_LOG_WARNING, address,
                   passed ? NULL : gw_step_name((gw_step_id)gw_sanitize_result_failed_step(res)), "clean-up %s%s%s",
                   passed ? "passed" : "failed", passed ? "" : ": ", passed ? "" : gw_sanitize_result_reason(res));
    void *ctx[2] = { d, res };
    gwd_event_publish(d, "cleanup", address, pack_cleanup_event, ctx);
    gw_sanitize_result_free(res);
    gwd_wake(d);
}

/* A device is free again. done() woke the loop already, but then the device
 * was still busy, so a kick in between skipped its group siblings; wake
 * again now. (Without this a sibling waited for the loop's idle timeout,
 * which never comes while clients keep asking.) */
static void freed(const char *address, void *userdata)
{
    (void)address;
    gwd *d = userdata;
    gwd_wake(d);
    /* Last: shutdown frees what the run may touch once this reads 0. */
    atomic_fetch_sub(&d->runs_unreleased, 1);
}

int gwd_cleanup_init(gwd *d)
{
    d->retry_wake_ms = INT64_MAX;
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
    o.freed = freed;
    o.userdata = d;
    int r = gw_cleanup_pool_new(&d->pool, &o);
    if (r < 0)
        gw_log(GW_LOG_ERR, "clean-up pool: %s", gw_error_message());
    return r;
}

/* How long shutdown waits for steps abandoned after their timeout (a sysfs
 * write blocked in the kernel, a libvirt query that never answers) to
 * return, before the daemon exits with them still running. */
#define SHUTDOWN_STEP_GRACE_MS 10000

bool gwd_cleanup_fini(gwd *d)
{
    /* Drops what is queued and waits for the clean-ups that run: each ends
     * within its steps' timeouts. */
    gw_cleanup_pool_free(d->pool);
    d->pool = NULL;
    free(d->retries);
    d->retries = NULL;
    d->n_retries = 0;
    /* A step abandoned after its timeout outlives its clean-up (and the
     * pool): it may still be in the attachment source's query, and its end
     * wakes the loop through d. Nothing it can reach is freed before it
     * returns. */
    int64_t give_up = gwd_mono_ms() + SHUTDOWN_STEP_GRACE_MS;
    int left;
    while ((left = atomic_load(&d->runs_unreleased)) > 0 && gwd_mono_ms() < give_up) {
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (left > 0) {
        gw_log(GW_LOG_WARNING, "shutdown: %d clean-up step(s) abandoned after a timeout still running after %d s; "
                               "exiting with them, the attachment source they may use left in place",
               left, SHUTDOWN_STEP_GRACE_MS / 1000);
        return false;
    }
    gw_attach_source_free(d->hint_source);
    d->hint_source = NULL;
    return true;
}

/* The clean-up of `dev` after its `cleanup_started` (r: how that went):
 * queued on the pool, or the wait that keeps a failing one from being
 * retried on every turn. */
static void start(gwd *d, const gw_device *dev, int r)
{
    const char *address = dev->identity.address;
    if (r < 0) {
        if (r != -ESTALE && r != -EBUSY) {
            /* Nothing changed, so nothing wakes the loop for it: the wait
             * keeps a failing checkpoint from being retried every turn. */
            int64_t wait = retry_later(d, address, dev->seq);
            gw_log(GW_LOG_ERR, "%s: cannot start clean-up, next try in %lld s: %s", address,
                   (long long)(wait / 1000), strerror(-r));
        }
        return;
    }
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = address;
    req.pins = dev->facts;
    req.n_pins = dev->n_facts;
    gwd_fence_yield(d, address);
    r = gw_cleanup_pool_submit(d->pool, &req);
    if (r < 0) {
        gw_log(GW_LOG_ERR, "%s: clean-up not queued: %s", address, gw_error_message());
        gw_apply_options a = GW_APPLY_OPTIONS_INIT;
        a.reason = "clean-up could not be queued";
        uint64_t seq = 0;
        /* The abort wakes the loop: without a wait the next kick would queue
         * it again at once. */
        if (gw_registry_apply(d->reg, address, GW_EVENT_CLEANUP_ABORTED, &a, &seq) == 0)
            retry_later(d, address, seq);
        return;
    }
    gw_log_gpu(GW_LOG_INFO, address, NULL, "clean-up started");
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

/* Whether a and b are in one IOMMU group. Caller holds d->lock. */
static bool same_group(gwd *d, const char *a, const char *b)
{
    const gw_gpu *ga = gwd_fleet_gpu(d, a), *gb = gwd_fleet_gpu(d, b);
    return ga && gb && ga->iommu_group && gb->iommu_group && !strcmp(ga->iommu_group, gb->iommu_group);
}

/* Every eligible device's `cleanup_started` goes to disk together
 * (gw_registry_apply_many: one checkpoint write per 32), then each is
 * queued: a first start on 64 GPUs wrote 64 checkpoints here, one after
 * the other on the request thread, before READY. */
void gwd_cleanup_kick(gwd *d)
{
    gw_device **list = NULL;
    size_t n = 0;
    if (gw_registry_list(d->reg, &list, &n) < 0)
        return;
    /* Fences first: a GPU released from quarantine is let go before its
     * clean-up, which holds the group itself, starts; one quarantined just
     * now is fenced before the op that did it answers. */
    gwd_fence_sync(d, list, n);
    pthread_mutex_lock(&d->lock);
    bool ready = gwd_attachment_ready(d);
    pthread_mutex_unlock(&d->lock);
    if (!ready) {
        gw_device_list_free(list, n);
        return;
    }
    const gw_device **go = gw_xcalloc(n + 1, sizeof *go);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const gw_device *dev = list[i];
        if (!gw_device_needs_cleanup(dev) || gw_cleanup_pool_busy(d->pool, dev->identity.address))
            continue;
        pthread_mutex_lock(&d->lock);
        bool eligible = gwd_fleet_is_managed(d, dev->identity.address) &&
                        !gwd_attachment_domains(d, dev->identity.address) &&
                        !group_busy(d, dev->identity.address);
        /* Nor with one chosen just now: it is not busy in the pool yet. */
        for (size_t j = 0; eligible && j < k; j++)
            eligible = !same_group(d, go[j]->identity.address, dev->identity.address);
        if (eligible) {
            const char *holder = group_holder(d, dev->identity.address, list, n);
            if (holder)
                group_wait(d, dev, holder);
            eligible = !holder && !retry_waiting(d, dev);
        }
        pthread_mutex_unlock(&d->lock);
        if (eligible)
            go[k++] = dev;
    }
    gw_apply_item *items = gw_xcalloc(k + 1, sizeof *items);
    gw_apply_options *opts = gw_xcalloc(k + 1, sizeof *opts);
    for (size_t j = 0; j < k; j++) {
        opts[j] = (gw_apply_options)GW_APPLY_OPTIONS_INIT;
        opts[j].actor = "system";
        opts[j].if_seq = go[j]->seq;
        items[j] = (gw_apply_item){ .address = go[j]->identity.address, .event = GW_EVENT_CLEANUP_STARTED,
                                    .opts = &opts[j] };
    }
    if (k)
        gw_registry_apply_many(d->reg, items, k);
    for (size_t j = 0; j < k; j++)
        start(d, go[j], items[j].result);
    free(opts);
    free(items);
    free(go);
    gw_device_list_free(list, n);
}
