/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/audit.h - reading the audit log.
 *
 * The registry (gpuwarden/registry.h) appends one JSON object per line to
 * <state_dir>/audit.log for every transition; docs/lifecycle.md describes the
 * fields. This module reads it back, filtered, for `gpuwarden audit` and the
 * daemon's audit request. Reading never writes and needs no lock: a line the
 * daemon is still writing (no newline yet) is not returned.
 *
 *     gw_audit_filter f = GW_AUDIT_FILTER_INIT;
 *     f.address = "0000:3b:00.0";
 *     gw_audit *log;
 *     if (gw_audit_read(&log, "/var/lib/gpuwarden", &f) < 0)
 *         errx(1, "%s", gw_error_message());
 *     for (size_t i = 0; i < gw_audit_count(log); i++)
 *         printf("%s\n", gw_event_name(gw_audit_get(log, i)->event));
 *     gw_audit_free(log);
 */
#ifndef GPUWARDEN_AUDIT_H
#define GPUWARDEN_AUDIT_H

#include <gpuwarden/common.h>
#include <gpuwarden/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gw_audit gw_audit;

typedef struct gw_audit_filter {
    unsigned int version;
    const char *address;    /* only this device address; NULL = all */
    uint64_t since_seq;     /* only records with seq > since_seq */
    int64_t since_ms;       /* only records with time_ms >= since_ms; 0 = all */
    size_t last;            /* only the last N matching records; 0 = all */
} gw_audit_filter;

#define GW_AUDIT_FILTER_VERSION 1
#define GW_AUDIT_FILTER_INIT { GW_AUDIT_FILTER_VERSION, NULL, 0, 0, 0 }

/*
 * Read <state_dir>/audit.log, oldest first, keeping the records that pass
 * `filter` (NULL = all). Errors: -ENOENT naming the file when there is no
 * log; GW_ESTATE_CORRUPT naming the file and line when a complete line is
 * not a valid record; -EINVAL for a malformed filter address.
 */
GW_EXTERN int gw_audit_read(gw_audit **out, const char *state_dir, const gw_audit_filter *filter);
/* The same, from a log file named directly. */
GW_EXTERN int gw_audit_read_file(gw_audit **out, const char *path, const gw_audit_filter *filter);
GW_EXTERN void gw_audit_free(gw_audit *log);

GW_EXTERN size_t gw_audit_count(const gw_audit *log);
/* Record i (0 = oldest); NULL when out of range. Valid until gw_audit_free(). */
GW_EXTERN const gw_transition *gw_audit_get(const gw_audit *log, size_t i);
/* True when `last` left older matching records out. */
GW_EXTERN bool gw_audit_truncated(const gw_audit *log);

/* The records as a JSON array of audit objects; free() the string. */
GW_EXTERN int gw_audit_to_json(const gw_audit *log, char **out);

#ifdef __cplusplus
}
#endif
#endif
