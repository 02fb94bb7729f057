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

#include "sanitize_internal.h"
#include "sanitize_result.h"

static const gw_step_def *const pipeline[GW_STEP_COUNT] = {
    &gw_step_not_in_use, &gw_step_bind,     &gw_step_reset, &gw_step_health,
    &gw_step_isolation,  &gw_step_firmware, &gw_step_hooks,
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

gw_sanitize_result *gw_pipeline_run(gw_sctx *c)
{
    gw_sanitize_result *r = gw_result_new(c->address);
    r->start_ms = wall_ms();
    for (int i = 0; i < GW_STEP_COUNT; i++) {
        const gw_step_def *def = pipeline[i];
        unsigned timeout = gw_step_timeout_ms(&c->policy->pol, def->id);
        uint64_t t0 = mono_us();
        _cleanup_free_ char *evidence = NULL;
        gw_verdict v = run_step(c, def, timeout, &evidence);
        gw_result_add_step(r, def->id, v, evidence, mono_us() - t0);
        pthread_mutex_lock(&c->lock);
        gw_strbuf_append(&c->history, "%s: %s: %s\n", def->name, gw_verdict_name(v), evidence);
        pthread_mutex_unlock(&c->lock);
        if (v == GW_VERDICT_FAIL)
            break;
    }
    pthread_mutex_lock(&c->lock);
    gw_kvlist_copy(&r->pins, c->pins.v, c->pins.n);
    pthread_mutex_unlock(&c->lock);
    r->end_ms = wall_ms();
    if (r->verdict == GW_VERDICT_PASS)
        gw_log(GW_LOG_INFO, "clean-up %s: pass in %lld ms", c->address, (long long)(r->end_ms - r->start_ms));
    else
        gw_log(GW_LOG_WARNING, "clean-up %s: fail: %s", c->address, r->reason);
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
