/* SPDX-License-Identifier: Apache-2.0 */
/* What the `metrics` op reports beyond the counters the daemon keeps
 * elsewhere: histograms of clean-up and request durations, failures by
 * clean-up step, quarantines by cause, events by kind and the libvirt
 * watcher's disconnections (PROTOCOL.md §8 "metrics", docs/metrics.md).
 *
 * Written from every thread (clean-up workers, the libvirt watcher, the
 * registry's callback, the request loop), read by the request loop: one
 * mutex, held for a few additions at a time. A histogram and its count are
 * updated under it together, so a reader never sees them disagree. */
#ifndef GWD_METRICS_H
#define GWD_METRICS_H

#include <gpuwarden/registry.h>
#include <gpuwarden/sanitize.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto_codec.h"

/* Upper bounds of the histograms' buckets in microseconds, one more bucket
 * (+Inf) after the last. */
#define GWD_HIST_MAX 16

typedef struct gwd_hist {
    uint64_t buckets[GWD_HIST_MAX + 1];     /* per bucket, not cumulative; the last is +Inf */
    uint64_t sum_us;
    uint64_t count;
} gwd_hist;

/* Why a GPU became quarantined (PROTOCOL.md §8 "metrics", `quarantines`). */
typedef enum {
    GWD_QCAUSE_CLEANUP,     /* a clean-up failed */
    GWD_QCAUSE_FAULT,       /* a scan found it dead */
    GWD_QCAUSE_GONE,        /* it left the bus */
    GWD_QCAUSE_OPERATOR,    /* `quarantine` */
    GWD_QCAUSE_CYBORG,      /* `maintenance on` */
    GWD_QCAUSE_OTHER,
    GWD_QCAUSE_COUNT
} gwd_qcause;

/* The event kinds of PROTOCOL.md §9, in its order. */
#define GWD_EVENT_KINDS 3

typedef struct gwd_metrics_data {
    gwd_hist request[GW_OP_COUNT];
    gwd_hist cleanup;                       /* whole clean-up runs */
    gwd_hist step[GW_STEP_COUNT];           /* by gw_step_id */
    uint64_t step_failed[GW_STEP_COUNT];
    uint64_t cleanups_aborted;              /* found the GPU in use: dirty, not quarantined */
    uint64_t quarantines[GWD_QCAUSE_COUNT];
    uint64_t events[GWD_EVENT_KINDS];
    uint64_t libvirt_disconnects;
} gwd_metrics_data;

typedef struct gwd_metrics {
    pthread_mutex_t lock;
    gwd_metrics_data v;
} gwd_metrics;

/* The libvirt watcher as the daemon sees it when asked. */
typedef struct gwd_watcher_state {
    bool enabled;       /* a libvirt URI is configured */
    bool connected;     /* connected to libvirtd now */
    bool current;       /* connected and has read every domain since */
} gwd_watcher_state;

/* Never destroyed: a clean-up step abandoned after its timeout may report
 * after main() returns (main.c). */
void gwd_metrics_init(gwd_metrics *m);

/* One answered request of `op`, `us` microseconds from its receipt to its
 * reply. */
void gwd_metrics_request(gwd_metrics *m, gw_proto_op op, uint64_t us);
/* A finished clean-up: each step's duration and verdict, the whole run's
 * duration, and whether it found the GPU in use (aborted). */
void gwd_metrics_cleanup(gwd_metrics *m, const gw_sanitize_result *res, bool aborted);
/* A persisted transition (the registry's callback): counts quarantines. */
void gwd_metrics_transition(gwd_metrics *m, const gw_transition *t);
/* An event queued for publication, by kind ("transition", ...). */
void gwd_metrics_event(gwd_metrics *m, const char *kind);
/* The libvirt watcher lost its current view (it disconnected). */
void gwd_metrics_libvirt_lost(gwd_metrics *m);

/* The additions to the `metrics` result, in the order PROTOCOL.md lists
 * them, appended to `o`; `aborted` goes into `cleanups`. */
void gwd_metrics_to_json(gwd_metrics *m, const gwd_watcher_state *w, json_t *o, json_t *cleanups);

/* Monotonic microseconds, for durations; and milliseconds, for the
 * daemon's timers (retry waits, rescans, log rate limits). */
uint64_t gwd_mono_us(void);
int64_t gwd_mono_ms(void);

#endif
