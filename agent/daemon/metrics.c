/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's histograms and counters for the `metrics` op (metrics.h). */
#include "metrics.h"

#include <string.h>
#include <time.h>

/* Request latencies: 100 µs .. 10 s. A request on the main thread takes
 * tens of microseconds (simulated host); a slow one (audit, an inventory
 * of a large host) milliseconds; anything near the client's 5 s default
 * timeout is worth its own buckets. */
static const uint64_t request_bounds[] = {
    100,    250,    500,    1000,    2500,    5000,    10000,   25000,
    50000,  100000, 250000, 500000,  1000000, 2500000, 5000000, 10000000,
};
/* Clean-up steps and runs: 1 ms .. 600 s (the hooks step's default
 * timeout). The simulated backend's steps take microseconds to a few
 * milliseconds; a real reset or scrub seconds to minutes. */
static const uint64_t cleanup_bounds[] = {
    1000,    5000,    10000,    50000,    100000,   500000,    1000000, 2500000,
    5000000, 10000000, 30000000, 60000000, 120000000, 300000000, 600000000,
};
#define N_REQUEST_BOUNDS (sizeof request_bounds / sizeof *request_bounds)
#define N_CLEANUP_BOUNDS (sizeof cleanup_bounds / sizeof *cleanup_bounds)
_Static_assert(N_REQUEST_BOUNDS <= GWD_HIST_MAX && N_CLEANUP_BOUNDS <= GWD_HIST_MAX, "GWD_HIST_MAX");

/* The pipeline's run order (sanitize.h), the order of `cleanup_steps`. */
static const gw_step_id run_order[GW_STEP_COUNT] = {
    GW_STEP_NOT_IN_USE, GW_STEP_BIND,      GW_STEP_RESET,    GW_STEP_SCRUB,
    GW_STEP_HEALTH,     GW_STEP_ISOLATION, GW_STEP_FIRMWARE, GW_STEP_HOOKS,
};

static const char *const qcause_names[GWD_QCAUSE_COUNT] = {
    [GWD_QCAUSE_CLEANUP] = "cleanup", [GWD_QCAUSE_FAULT] = "fault",   [GWD_QCAUSE_GONE] = "gone",
    [GWD_QCAUSE_OPERATOR] = "operator", [GWD_QCAUSE_CYBORG] = "cyborg", [GWD_QCAUSE_OTHER] = "other",
};

static const char *const event_kinds[GWD_EVENT_KINDS] = { "transition", "cleanup", "attachment" };

uint64_t gwd_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t gwd_mono_ms(void)
{
    return (int64_t)(gwd_mono_us() / 1000u);
}

void gwd_metrics_init(gwd_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
}

/* Caller holds m->lock. */
static void observe(gwd_hist *h, const uint64_t *bounds, size_t n, uint64_t us)
{
    size_t i = 0;
    while (i < n && us > bounds[i])
        i++;
    h->buckets[i]++;
    h->sum_us += us;
    h->count++;
}

void gwd_metrics_request(gwd_metrics *m, gw_proto_op op, uint64_t us)
{
    if ((unsigned)op >= GW_OP_COUNT)
        return;
    pthread_mutex_lock(&m->lock);
    observe(&m->v.request[op], request_bounds, N_REQUEST_BOUNDS, us);
    pthread_mutex_unlock(&m->lock);
}

void gwd_metrics_cleanup(gwd_metrics *m, const gw_sanitize_result *res, bool aborted)
{
    int64_t start = gw_sanitize_result_start_ms(res), end = gw_sanitize_result_end_ms(res);
    uint64_t run_us = end > start ? (uint64_t)(end - start) * 1000u : 0;
    size_t n = gw_sanitize_result_step_count(res);
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < n; i++) {
        const gw_step_result *s = gw_sanitize_result_step(res, i);
        if ((unsigned)s->step >= GW_STEP_COUNT)
            continue;
        observe(&m->v.step[s->step], cleanup_bounds, N_CLEANUP_BOUNDS, s->duration_us);
        m->v.step_failed[s->step] += s->verdict == GW_VERDICT_FAIL;
    }
    observe(&m->v.cleanup, cleanup_bounds, N_CLEANUP_BOUNDS, run_us);
    m->v.cleanups_aborted += aborted;
    pthread_mutex_unlock(&m->lock);
}

static gwd_qcause qcause(const gw_transition *t)
{
    switch (t->event) {
    case GW_EVENT_CLEANUP_FAILED:
        return GWD_QCAUSE_CLEANUP;
    case GW_EVENT_FAULT:
        return GWD_QCAUSE_FAULT;
    case GW_EVENT_GONE:
        return GWD_QCAUSE_GONE;
    case GW_EVENT_QUARANTINE:
        break;
    default:
        return GWD_QCAUSE_OTHER;
    }
    /* The actors ops.c and cleanup.c give a quarantine: "operator:...",
     * "cyborg" (maintenance), the daemon's own for a clean-up that failed
     * after a domain took the GPU (settle_attached). */
    const char *a = t->actor ? t->actor : "";
    if (!strncmp(a, "operator:", 9))
        return GWD_QCAUSE_OPERATOR;
    if (!strcmp(a, "cyborg"))
        return GWD_QCAUSE_CYBORG;
    if (!*a || !strcmp(a, "system"))
        return GWD_QCAUSE_CLEANUP;
    return GWD_QCAUSE_OTHER;
}

void gwd_metrics_transition(gwd_metrics *m, const gw_transition *t)
{
    if (t->to != GW_STATE_QUARANTINED || t->from == GW_STATE_QUARANTINED)
        return;
    gwd_qcause c = qcause(t);
    pthread_mutex_lock(&m->lock);
    m->v.quarantines[c]++;
    pthread_mutex_unlock(&m->lock);
}

void gwd_metrics_event(gwd_metrics *m, const char *kind)
{
    for (size_t i = 0; i < GWD_EVENT_KINDS; i++) {
        if (!strcmp(kind, event_kinds[i])) {
            pthread_mutex_lock(&m->lock);
            m->v.events[i]++;
            pthread_mutex_unlock(&m->lock);
            return;
        }
    }
}

void gwd_metrics_libvirt_lost(gwd_metrics *m)
{
    pthread_mutex_lock(&m->lock);
    m->v.libvirt_disconnects++;
    pthread_mutex_unlock(&m->lock);
}

static json_t *uint_array(const uint64_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((json_int_t)v[i]));
    return a;
}

/* {bounds_us, counts, count, sum_us}: counts cumulative, one per bound, as
 * Prometheus' buckets; count is the +Inf one. */
static json_t *hist_json(const gwd_hist *h, const uint64_t *bounds, size_t n)
{
    uint64_t cum[GWD_HIST_MAX], acc = 0;
    for (size_t i = 0; i < n; i++)
        cum[i] = acc += h->buckets[i];
    json_t *o = json_object();
    json_object_set_new(o, "bounds_us", uint_array(bounds, n));
    json_object_set_new(o, "counts", uint_array(cum, n));
    json_object_set_new(o, "count", json_integer((json_int_t)h->count));
    json_object_set_new(o, "sum_us", json_integer((json_int_t)h->sum_us));
    return o;
}

void gwd_metrics_to_json(gwd_metrics *m, const gwd_watcher_state *w, json_t *o, json_t *cleanups)
{
    /* A copy, so that the lock is not held while building JSON. */
    pthread_mutex_lock(&m->lock);
    gwd_metrics_data s = m->v;
    pthread_mutex_unlock(&m->lock);

    json_object_set_new(cleanups, "aborted", json_integer((json_int_t)s.cleanups_aborted));
    json_object_set_new(o, "cleanup_duration", hist_json(&s.cleanup, cleanup_bounds, N_CLEANUP_BOUNDS));
    json_t *steps = json_object();
    for (size_t i = 0; i < GW_STEP_COUNT; i++) {
        gw_step_id id = run_order[i];
        json_object_set_new(steps, gw_step_name(id),
                            json_pack("{s:I,s:o}", "failed", (json_int_t)s.step_failed[id], "duration",
                                      hist_json(&s.step[id], cleanup_bounds, N_CLEANUP_BOUNDS)));
    }
    json_object_set_new(o, "cleanup_steps", steps);
    json_t *q = json_object();
    for (size_t i = 0; i < GWD_QCAUSE_COUNT; i++)
        json_object_set_new(q, qcause_names[i], json_integer((json_int_t)s.quarantines[i]));
    json_object_set_new(o, "quarantines", q);
    json_t *req = json_object();
    for (int op = 0; op < GW_OP_COUNT; op++)
        json_object_set_new(req, gw_proto_op_name((gw_proto_op)op),
                            hist_json(&s.request[op], request_bounds, N_REQUEST_BOUNDS));
    json_object_set_new(o, "request_duration", req);
    json_t *ev = json_object();
    for (size_t i = 0; i < GWD_EVENT_KINDS; i++)
        json_object_set_new(ev, event_kinds[i], json_integer((json_int_t)s.events[i]));
    json_object_set_new(o, "events_published", ev);
    json_object_set_new(o, "libvirt", json_pack("{s:b,s:b,s:b,s:I}", "enabled", w->enabled, "connected", w->connected,
                                                "current", w->current, "disconnects",
                                                (json_int_t)s.libvirt_disconnects));
}
