/* SPDX-License-Identifier: Apache-2.0 */
/* The pipeline: steps in order, each on a thread of its own with a timeout.
 *
 * Why a thread per step: a sysfs write can block in the kernel (a reset
 * waiting on a wedged device) where no signal reaches it, so the only thing
 * that can enforce a timeout is to stop waiting. The waiting side gives up at
 * the deadline, marks the run abandoned (no further writes, evidence or pins
 * from it) and fails the step; the step thread finishes whenever the kernel
 * lets it and drops its references then. A child process would not help: it
 * would sit in the same uninterruptible sleep, and the simulated backend's
 * state lives in this process. */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sanitize_internal.h"
#include "sanitize_result.h"

/* Run order, which is not the order of the step ids: scrub came later and
 * has the last id, but it must follow the reset (a reset does not clear a
 * GPU's memory, and a scrub before it could be undone by nothing, while one
 * after it leaves the memory as the next tenant sees it) and come before
 * health, which judges the device as the scrub left it. */
static const gw_step_def *const pipeline[GW_STEP_COUNT] = {
    &gw_step_not_in_use, &gw_step_bind,      &gw_step_reset,    &gw_step_scrub,
    &gw_step_health,     &gw_step_isolation, &gw_step_firmware, &gw_step_hooks,
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct step_job {
    atomic_int refs;
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool done;
    gw_verdict verdict;
    gw_sctx *c;
    const gw_step_def *def;
} step_job;

static void job_unref(step_job *j)
{
    if (atomic_fetch_sub(&j->refs, 1) != 1)
        return;
    gw_sctx_unref(j->c);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->m);
    free(j);
}

static void *job_main(void *arg)
{
    step_job *j = arg;
    gw_error_clear();
    gw_verdict v = j->def->run(j->c);
    pthread_mutex_lock(&j->m);
    j->done = true;
    j->verdict = v;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->m);
    job_unref(j);
    return NULL;
}

/* Run one step; *evidence is malloc'd. */
static gw_verdict run_step(gw_sctx *c, const gw_step_def *def, unsigned timeout_ms, char **evidence)
{
    pthread_mutex_lock(&c->lock);
    gw_strbuf_clear(&c->evidence);
    pthread_mutex_unlock(&c->lock);

    step_job *j = gw_xcalloc(1, sizeof *j);
    atomic_init(&j->refs, 2);
    pthread_mutex_init(&j->m, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    j->c = gw_sctx_ref(c);
    j->def = def;

    pthread_t th;
    pthread_attr_t ta;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&th, &ta, job_main, j);
    pthread_attr_destroy(&ta);
    if (e) {
        atomic_store(&j->refs, 1);
        job_unref(j);
        *evidence = gw_strdup_printf("cannot start the step's thread: %s", strerror(e));
        return GW_VERDICT_FAIL;
    }

    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->m);
    while (!j->done) {
        if (pthread_cond_timedwait(&j->cv, &j->m, &dl) == ETIMEDOUT && !j->done)
            break;
    }
    bool done = j->done;
    gw_verdict v = j->verdict;
    pthread_mutex_unlock(&j->m);

    pthread_mutex_lock(&c->lock);
    if (done) {
        *evidence = gw_xstrdup(gw_strbuf_str(&c->evidence));
    } else {
        c->abandoned = true;
        *evidence = gw_strdup_printf("timed out after %u ms, step abandoned%s%s", timeout_ms,
                                     c->evidence.len ? "; before that: " : "", gw_strbuf_str(&c->evidence));
        v = GW_VERDICT_FAIL;
    }
    pthread_mutex_unlock(&c->lock);
    job_unref(j);
    return v;
}

/* A step can pass on a device that left the bus while it ran: a hook that
 * never touches it, a ROM read that came before. Measured in the QEMU lab: a
 * device removed with device_del during the hooks step, and the clean-up
 * passed. So after every step that did not fail, look again: the device's
 * sysfs directory must still exist and its config space must still answer
 * with the same ids. NULL when it is there; else why not (malloc'd). */
static char *gone_since(gw_sctx *c, bool health_done)
{
    _cleanup_free_ char *dir = gw_dev_path(c->address, NULL);
    if (gw_hostops_exists(c->ops, dir) < 0)
        return gw_strdup_printf("device gone from the bus during this step: %s no longer exists", dir);
    uint32_t id;
    if (gw_dev_config32(c->ops, c->address, 0, &id) < 0)
        return gw_strdup_printf("device gone during this step: config space unreadable (%s)", gw_error_message());
    /* Until health has judged it, all-ones is that step's verdict to give
     * (bind refuses an all-ones device, health one that did not come back
     * from the reset, with more to say); after health it means the device
     * fell off the bus. */
    if (id == 0xffffffff)
        return health_done ? gw_xstrdup("device gone during this step: config space reads all-ones") : NULL;
    if (c->id_known && id != c->id_before)
        return gw_strdup_printf("device changed during this step: ids %04x:%04x, were %04x:%04x", id & 0xffff,
                                id >> 16, c->id_before & 0xffff, c->id_before >> 16);
    return NULL;
}

/* Whether another process opened the device's VFIO nodes during the step
 * that just ended: evidence, or NULL. From bind on the run holds the group
 * node (gw_hold_for_run), which the kernel lets no one else open; this is
 * the check for what that hold does not cover: a VFIO device node
 * (/dev/vfio/devices/vfioN, not exclusive) and the driver scrub's round
 * trip, during which the group is let go. libvirt runs no hook for a
 * hot-plug (`virsh attach-device`), so a running domain could take a GPU
 * there; the clean-up then does not count (in use: the GPU stays dirty, and
 * the domain that took it is told it is not clean). This process's own
 * holds (the run's, a fence, another worker's reset) are not a tenant's.
 * `fns`: the device's functions, listed once for the run. */
static char *opened_since(gw_sctx *c, const gw_addrlist *fns)
{
    gw_vfio_scan s;
    char *why = NULL;
    if (gw_vfio_holders(c->ops, fns, &s) < 0) {
        why = gw_strdup_printf("cannot tell whether a process opened the device's VFIO nodes during this step (%s); "
                               "counted as in use", gw_error_message());
    } else {
        gw_strbuf who = { 0 };
        for (size_t i = 0; i < s.n_holders; i++) {
            bool named = s.holders[i].pid == (long)getpid();   /* or once already (two descriptors) */
            for (size_t j = 0; j < i && !named; j++)
                named = s.holders[j].pid == s.holders[i].pid && s.holders[j].node == s.holders[i].node;
            if (!named)
                gw_strbuf_append(&who, "%s%s (%s) by pid %ld (%s)", who.len ? ", " : "",
                                 s.nodes[s.holders[i].node].what, s.nodes[s.holders[i].node].path, s.holders[i].pid,
                                 s.holders[i].comm ? s.holders[i].comm : "?");
        }
        if (who.len)
            why = gw_strdup_printf("opened during this step: %s: a process took the device while its clean-up "
                                   "ran (a hot-plug, which no libvirt hook gates); this clean-up does not count",
                                   gw_strbuf_str(&who));
        gw_strbuf_clear(&who);
    }
    gw_vfio_scan_clear(&s);
    if (why) {
        pthread_mutex_lock(&c->lock);
        c->in_use = true;
        pthread_mutex_unlock(&c->lock);
    }
    return why;
}

/* The end of the run: power/control back to what bind found, on a thread
 * like a step (a sysfs write may block). Its evidence goes after the last
 * step's, so that the result says what state the device was left in. */
#define POWER_RESTORE_TIMEOUT_MS 10000

static void end_run(gw_sctx *c, char **evidence)
{
    if (!gw_power_pending(c))
        return;
    _cleanup_free_ char *more = NULL;
    if (gw_sctx_abandoned(c))
        more = gw_power_abandoned(c);
    else
        run_step(c, &gw_step_power_restore, POWER_RESTORE_TIMEOUT_MS, &more);
    if (!more || !*more)
        return;
    char *joined = gw_strdup_printf("%s%send of the run: %s", *evidence, **evidence ? "; " : "", more);
    free(*evidence);
    *evidence = joined;
}

gw_sanitize_result *gw_pipeline_run(gw_sctx *c)
{
    /* The ids the run starts with, read once: what gone_since() and health
     * compare with (no step changes them; a reset must not either). */
    uint32_t id;
    if (gw_dev_config32(c->ops, c->address, 0, &id) == 0 && id != 0xffffffff) {
        c->id_before = id;
        c->id_known = true;
    }
    /* For opened_since(): which functions' VFIO nodes to watch. When they
     * cannot be listed, not_in_use fails the run before it is needed. */
    gw_addrlist fns = { 0 }, bridges = { 0 };
    _cleanup_free_ char *group = NULL;
    bool watch = gw_dev_targets(c->ops, c->address, &fns, &bridges, &group) == 0;
    gw_addrlist_clear(&bridges);
    gw_sanitize_result *r = gw_result_new(c->address);
    r->start_ms = wall_ms();
    bool health_done = false;
    for (int i = 0; i < GW_STEP_COUNT; i++) {
        const gw_step_def *def = pipeline[i];
        unsigned timeout = gw_step_timeout_ms(&c->policy->pol, def->id);
        uint64_t t0 = mono_us();
        _cleanup_free_ char *evidence = NULL;
        gw_verdict v = run_step(c, def, timeout, &evidence);
        health_done = health_done || def->id == GW_STEP_HEALTH;
        _cleanup_free_ char *gone = v == GW_VERDICT_FAIL ? NULL : gone_since(c, health_done);
        if (!gone && watch && v != GW_VERDICT_FAIL && def->id != GW_STEP_NOT_IN_USE)
            gone = opened_since(c, &fns);
        if (gone) {
            char *both = gw_strdup_printf("%s%s%s", evidence, *evidence ? "; " : "", gone);
            free(evidence);
            evidence = both;
            v = GW_VERDICT_FAIL;
        }
        uint64_t took = mono_us() - t0;
        if (v == GW_VERDICT_FAIL || i == GW_STEP_COUNT - 1)
            end_run(c, &evidence);
        gw_result_add_step(r, def->id, v, evidence, took);
        gw_log_gpu(GW_LOG_DEBUG, c->address, def->name,
                   "clean-up step %s: %s in %llu ms: %s", def->name, gw_verdict_name(v),
                   (unsigned long long)(took / 1000), evidence);
        pthread_mutex_lock(&c->lock);
        gw_strbuf_append(&c->history, "%s: %s: %s\n", def->name, gw_verdict_name(v), evidence);
        pthread_mutex_unlock(&c->lock);
        if (v == GW_VERDICT_FAIL)
            break;
    }
    gw_addrlist_clear(&fns);
    /* Every step thread has returned unless the run was abandoned (then the
     * last reference lets go, gw_sctx_unref()): the group is free for the
     * next tenant only now, after the last step. */
    if (!gw_sctx_abandoned(c))
        gw_release_run_holds(c, NULL);
    pthread_mutex_lock(&c->lock);
    gw_kvlist_copy(&r->pins, c->pins.v, c->pins.n);
    r->in_use = r->verdict == GW_VERDICT_FAIL && c->in_use;
    pthread_mutex_unlock(&c->lock);
    r->end_ms = wall_ms();
    if (r->verdict == GW_VERDICT_PASS)
        gw_log_gpu(GW_LOG_INFO, c->address, NULL, "clean-up: pass in %lld ms", (long long)(r->end_ms - r->start_ms));
    else
        gw_log_gpu(GW_LOG_WARNING, c->address, gw_step_name((gw_step_id)gw_sanitize_result_failed_step(r)),
                   "clean-up: fail: %s", r->reason);
    return r;
}

GW_EXTERN int gw_sanitize_run(gw_sanitize_result **out, gw_hostops *ops, gw_attach_source *attach,
                              const gw_sanitize_policy *policy, const gw_sanitize_request *request)
{
    if (!out || !ops || !request)
        return gw_error_set(-EINVAL, "gw_sanitize_run: NULL argument");
    if (request->version != GW_SANITIZE_REQUEST_VERSION)
        return gw_error_set(-EINVAL, "gw_sanitize_run: request version %u, expected %u", request->version,
                            GW_SANITIZE_REQUEST_VERSION);
    if (!request->address || !gw_is_bdf(request->address))
        return gw_error_set(-EINVAL, "gw_sanitize_run: '%s' is not a PCI address (dddd:bb:dd.f)",
                            request->address ? request->address : "(null)");
    if (request->n_pins && !request->pins)
        return gw_error_set(-EINVAL, "gw_sanitize_run: n_pins without pins");
    gw_spolicy *p;
    int r = gw_spolicy_new(&p, policy);
    if (r < 0)
        return r;
    gw_sctx *c = gw_sctx_new(ops, attach, p, request);
    gw_spolicy_unref(p);
    *out = gw_pipeline_run(c);
    gw_sctx_unref(c);
    return 0;
}
