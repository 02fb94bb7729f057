/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus text exposition of the `metrics` op (prometheus.h).
 *
 * Naming follows Prometheus' conventions: the gpuwarden_ prefix, base units
 * (seconds), _total on counters, histograms as _bucket{le=...} (cumulative,
 * ending with +Inf), _sum and _count. The protocol carries no floats
 * (PROTOCOL.md §3), so durations come as integer microseconds or
 * milliseconds and are printed here as exact decimal seconds. */
#include "prometheus.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Microseconds as decimal seconds without trailing zeros: 250 -> 0.00025,
 * 2500000 -> 2.5, 1000000 -> 1. */
static const char *seconds(uint64_t us, char buf[32])
{
    int n = snprintf(buf, 32, "%" PRIu64 ".%06" PRIu64, us / 1000000u, us % 1000000u);
    while (n > 0 && buf[n - 1] == '0')
        buf[--n] = 0;
    if (n > 0 && buf[n - 1] == '.')
        buf[--n] = 0;
    return buf;
}

/* A label value or HELP text, escaped as the format wants: backslash and
 * newline always, the double quote in label values. */
static void escaped(FILE *f, const char *s, bool label)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '"' && label)
            fputs("\\\"", f);
        else
            fputc(*s, f);
    }
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s ", name);
    escaped(f, help, false);
    fprintf(f, "\n# TYPE %s %s\n", name, type);
}

/* name{label="value"} or name; `extra`: a second label (le) or NULL. */
static void sample_head(FILE *f, const char *name, const char *label, const char *value, const char *extra,
                        const char *extra_value)
{
    fputs(name, f);
    if (!label && !extra)
        return;
    fputc('{', f);
    if (label) {
        fprintf(f, "%s=\"", label);
        escaped(f, value, true);
        fputc('"', f);
    }
    if (extra) {
        fprintf(f, "%s%s=\"", label ? "," : "", extra);
        escaped(f, extra_value, true);
        fputc('"', f);
    }
    fputc('}', f);
}

static uint64_t uint_of(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void sample_uint(FILE *f, const char *name, const char *label, const char *value, uint64_t v)
{
    sample_head(f, name, label, value, NULL, NULL);
    fprintf(f, " %" PRIu64 "\n", v);
}

/* A gauge or counter with no labels, from an integer member of `o`; left
 * out when the daemon does not send it. */
static void scalar(FILE *f, const json_t *o, const char *key, const char *name, const char *type, const char *help)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) && !json_is_boolean(v))
        return;
    family(f, name, type, help);
    sample_uint(f, name, NULL, NULL, json_is_boolean(v) ? json_is_true(v) : uint_of(v));
}

/* One sample per member of the map `o[key]` (the daemon lists every label
 * value, zeros included), labelled `label`. */
static void labelled(FILE *f, const json_t *o, const char *key, const char *name, const char *type,
                     const char *label, const char *help)
{
    const json_t *m = json_object_get(o, key);
    if (!json_is_object(m))
        return;
    family(f, name, type, help);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)m, k, v)
        sample_uint(f, name, label, k, uint_of(v));
}

/* One histogram's samples: {bounds_us, counts (cumulative), count, sum_us}. */
static void histogram_samples(FILE *f, const char *name, const char *label, const char *value, const json_t *h)
{
    const json_t *bounds = json_object_get(h, "bounds_us"), *counts = json_object_get(h, "counts");
    size_t n = json_array_size(bounds);
    if (json_array_size(counts) != n)
        return;
    char bucket[128], sum[128], count[128], le[32];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    snprintf(sum, sizeof sum, "%s_sum", name);
    snprintf(count, sizeof count, "%s_count", name);
    for (size_t i = 0; i < n; i++) {
        sample_head(f, bucket, label, value, "le", seconds(uint_of(json_array_get(bounds, i)), le));
        fprintf(f, " %" PRIu64 "\n", uint_of(json_array_get(counts, i)));
    }
    uint64_t total = uint_of(json_object_get(h, "count"));
    sample_head(f, bucket, label, value, "le", "+Inf");
    fprintf(f, " %" PRIu64 "\n", total);
    sample_head(f, sum, label, value, NULL, NULL);
    fprintf(f, " %s\n", seconds(uint_of(json_object_get(h, "sum_us")), le));
    sample_uint(f, count, label, value, total);
}

/* A histogram family from a map of label value -> histogram; with
 * `sub`, each member's histogram is member[sub]. */
static void histograms(FILE *f, const json_t *m, const char *sub, const char *name, const char *label,
                       const char *help)
{
    if (!json_is_object(m))
        return;
    family(f, name, "histogram", help);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)m, k, v)
        histogram_samples(f, name, label, k, sub ? json_object_get(v, sub) : v);
}

static void cleanups(FILE *f, const json_t *m)
{
    const json_t *c = json_object_get(m, "cleanups");
    if (!json_is_object(c))
        return;
    /* The protocol's `failed` counts the aborted runs too; here each run
     * has one result. */
    const json_t *ab = json_object_get(c, "aborted");
    uint64_t failed = uint_of(json_object_get(c, "failed")), aborted = uint_of(ab);
    family(f, "gpuwarden_cleanups_total", "counter",
           "Clean-up runs finished since the daemon started, by result: passed (the GPU is sanitized), "
           "failed (a step failed: the GPU is quarantined) or aborted (the GPU was in use: it stays dirty and is "
           "tried again).");
    sample_uint(f, "gpuwarden_cleanups_total", "result", "passed", uint_of(json_object_get(c, "passed")));
    sample_uint(f, "gpuwarden_cleanups_total", "result", "failed", failed >= aborted ? failed - aborted : 0);
    if (ab)
        sample_uint(f, "gpuwarden_cleanups_total", "result", "aborted", aborted);
}

static void cleanup_steps(FILE *f, const json_t *m)
{
    const json_t *steps = json_object_get(m, "cleanup_steps");
    if (!json_is_object(steps))
        return;
    histograms(f, steps, "duration", "gpuwarden_cleanup_step_duration_seconds", "step",
               "Duration of each clean-up step that ran, by step.");
    family(f, "gpuwarden_cleanup_step_failures_total", "counter",
           "Clean-up runs stopped by this step's failure, by step (not_in_use also fails when the GPU is in "
           "use: those runs are aborted, not quarantined).");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)steps, k, v)
        sample_uint(f, "gpuwarden_cleanup_step_failures_total", "step", k, uint_of(json_object_get(v, "failed")));
}

static void watcher(FILE *f, const json_t *m)
{
    const json_t *l = json_object_get(m, "libvirt");
    if (!json_is_object(l))
        return;
    scalar(f, l, "enabled", "gpuwarden_libvirt_watcher_enabled", "gauge",
           "1 when the daemon watches libvirt (libvirt_uri set); 0 when attachment comes from the hook's hints.");
    scalar(f, l, "connected", "gpuwarden_libvirt_watcher_connected", "gauge",
           "1 while the libvirt watcher is connected to libvirtd.");
    scalar(f, l, "current", "gpuwarden_libvirt_watcher_synced", "gauge",
           "1 while the watcher is connected and has read every domain since: only then do clean-ups start, "
           "GPUs become allocatable and the gate lets managed GPUs through.");
    scalar(f, l, "disconnects", "gpuwarden_libvirt_watcher_disconnects_total", "counter",
           "Times the watcher lost its current view of libvirt (libvirtd went away) since the daemon started.");
}

int cli_prometheus_write(const json_t *m, FILE *f)
{
    family(f, "gpuwarden_up", "gauge", "1 when gpuwardend answered the metrics request, 0 when it did not.");
    fprintf(f, "gpuwarden_up %d\n", m ? 1 : 0);
    if (!m)
        return fflush(f) == 0 && !ferror(f) ? 0 : -EIO;

    const json_t *up = json_object_get(m, "uptime_ms");
    if (json_is_integer(up)) {
        char buf[32];
        family(f, "gpuwarden_uptime_seconds", "gauge", "Seconds since gpuwardend started.");
        fprintf(f, "gpuwarden_uptime_seconds %s\n", seconds(uint_of(up) * 1000u, buf));
    }
    labelled(f, m, "devices", "gpuwarden_gpus", "gauge", "state",
             "Managed GPUs by lifecycle state (discovered, sanitized, allocatable, attached, quarantined).");
    scalar(f, m, "dirty", "gpuwarden_gpus_dirty", "gauge",
           "Managed GPUs used since their last passing clean-up.");
    scalar(f, m, "cleaning", "gpuwarden_gpus_cleaning", "gauge", "Managed GPUs whose clean-up runs now.");
    scalar(f, m, "fenced", "gpuwarden_gpus_fenced", "gauge",
           "Quarantined GPUs whose IOMMU group gpuwardend holds open, so that no VM can open it (a hot-plug "
           "included); fewer than gpuwarden_gpus{state=\"quarantined\"}: some are not fenced (the log says why).");
    cleanups(f, m);
    const json_t *run = json_object_get(m, "cleanup_duration");
    if (json_is_object(run)) {
        family(f, "gpuwarden_cleanup_duration_seconds", "histogram",
               "Duration of whole clean-up runs, any result (millisecond resolution).");
        histogram_samples(f, "gpuwarden_cleanup_duration_seconds", NULL, NULL, run);
    }
    cleanup_steps(f, m);
    labelled(f, m, "quarantines", "gpuwarden_quarantines_total", "counter", "cause",
             "GPUs put into quarantine since the daemon started, by cause: cleanup (a clean-up failed), fault (a "
             "scan found the GPU dead), gone (it left the bus), operator (gpuwarden quarantine), cyborg (Cyborg's "
             "device disable), other.");
    labelled(f, m, "requests", "gpuwarden_requests_total", "counter", "op",
             "Requests answered since the daemon started, by op, whatever the outcome.");
    histograms(f, json_object_get(m, "request_duration"), NULL, "gpuwarden_request_duration_seconds", "op",
               "Time from receiving a request to its reply, by op (slow ops include their wait for the worker).");
    labelled(f, m, "errors", "gpuwarden_request_errors_total", "counter", "code",
             "Error replies since the daemon started, by error code (PROTOCOL.md section 6).");
    labelled(f, m, "events_published", "gpuwarden_events_published_total", "counter", "kind",
             "Events published on the events endpoint since the daemon started, by kind.");
    scalar(f, m, "events", "gpuwarden_events_last_seq", "gauge",
           "The seq of the last event published (0: none yet); starts again at 1 when the daemon restarts.");
    scalar(f, m, "revision", "gpuwarden_inventory_revision", "gauge",
           "Revision of the current inventory content (1 for the first of this daemon run, +1 per change).");
    scalar(f, m, "published_revision", "gpuwarden_inventory_published_revision", "gauge",
           "The highest inventory revision Placement is known to show (0: none confirmed since the start); "
           "below gpuwarden_inventory_revision while a change waits for the Placement writer.");
    watcher(f, m);
    return fflush(f) == 0 && !ferror(f) ? 0 : -EIO;
}

int cli_prometheus_textfile(const char *cmd, const char *path, const json_t *metrics)
{
    char *dcopy = strdup(path), *bcopy = strdup(path);
    char *tmp = NULL;
    int r = -ENOMEM;
    if (!dcopy || !bcopy ||
        asprintf(&tmp, "%s/.%s.XXXXXX", dirname(dcopy), basename(bcopy)) < 0) {
        tmp = NULL;
        fprintf(stderr, "gpuwarden %s: out of memory\n", cmd);
        goto out;
    }
    /* A dot name: node_exporter reads only *.prom, so it never sees it. */
    int fd = mkstemp(tmp);
    if (fd < 0) {
        r = -errno;
        fprintf(stderr, "gpuwarden %s: %s: %s\n", cmd, tmp, strerror(errno));
        goto out;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        r = -errno;
        close(fd);
        goto fail;
    }
    r = fchmod(fd, 0644) < 0 ? -errno : cli_prometheus_write(metrics, f);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (fclose(f) != 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r == 0)
        goto out;
fail:
    fprintf(stderr, "gpuwarden %s: %s: %s\n", cmd, path, strerror(-r));
    unlink(tmp);
out:
    free(tmp);
    free(dcopy);
    free(bcopy);
    return r;
}
