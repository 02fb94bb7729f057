/* SPDX-License-Identifier: Apache-2.0 */
/* Internal: device records and transitions in memory and as JSON, shared by
 * the registry, the checkpoint store and the audit log. */
#ifndef GW_RECORD_H
#define GW_RECORD_H

#include <gpuwarden/audit.h>
#include <gpuwarden/registry.h>
#include <jansson.h>

/* File names inside a state directory. */
#define GW_CHECKPOINT_NAME "checkpoint"
#define GW_AUDIT_NAME "audit.log"
#define GW_LOCK_NAME "lock"

/* Wall clock in ms since the epoch. */
int64_t gw_now_ms(void);
/* "2024-05-01T12:00:00.123Z" into buf (at least 32 bytes). */
const char *gw_time_format(int64_t ms, char *buf, size_t len);

/* A copy of `s` fit for JSON: invalid UTF-8 bytes become '?', and text
 * beyond `max` bytes is cut on a character boundary with " [cut]" appended.
 * NULL gives "". */
char *gw_text_clean(const char *s, size_t max);

/* "pass", "fail" or "skip". */
bool gw_verdict_valid(const char *v);

/* Record fields: every string owned by the gw_device, never NULL. */
gw_device *gw_device_new_blank(void);
void gw_device_set_text(const char **field, const char *value);
void gw_device_set_cleanup(gw_device *dev, const gw_cleanup_result *r);
/* Pin or (value NULL) drop a fact; keeps facts sorted by key. */
void gw_device_put_fact(gw_device *dev, const char *key, const char *value);

/* Transitions with owned strings (the journal, audit lists). */
void gw_transition_copy(gw_transition *dst, const gw_transition *src);
void gw_transition_clear(gw_transition *t);

/* JSON forms. The _from_ functions return GW_ESTATE_CORRUPT with the
 * message prefixed by `ctx` (a file name, "devices[3]", ...) on any
 * missing or mistyped field. */
json_t *gw_identity_to_jobj(const gw_identity *id);
int gw_identity_from_jobj(json_t *o, gw_identity *out, const char *ctx);
json_t *gw_device_to_jobj(const gw_device *dev);
int gw_device_from_jobj(json_t *o, gw_device **out, const char *ctx);
json_t *gw_transition_to_jobj(const gw_transition *t);
/* The strings of *out are owned: gw_transition_clear() them. */
int gw_transition_from_jobj(json_t *o, gw_transition *out, const char *ctx);

/* The checkpoint file (store.c): a header line "GWCHECKPOINT <version>
 * <length> <sha256 hex>\n" and a JSON body of exactly <length> bytes. */
#define GW_CHECKPOINT_VERSION 1
/* Write atomically: temp file, fsync, rename, fsync of the directory. */
int gw_checkpoint_write(const char *dir, const char *body, size_t len);
/* Read and verify; -ENOENT (message set) when there is none, else
 * GW_ESTATE_CORRUPT / GW_ESTATE_VERSION naming the path. *body is
 * NUL-terminated; free() it. */
int gw_checkpoint_read(const char *dir, char **body, size_t *len);
/* Header + body as the file holds them (tests build bad files with it). */
char *gw_checkpoint_encode(unsigned version, const char *body, size_t len, size_t *out_len);
int gw_fsync_dir(const char *dir);
/* Move the checkpoint aside to checkpoint.corrupt-<UTC time>; the caller
 * holds the directory's lock. */
int gw_checkpoint_reset(const char *dir, char **moved_to);

/* The audit log (audit.c). */
/* Open <dir>/audit.log for appending (created 0640), drop a torn last line
 * (a write cut short by a crash) and find the last record's seq: of
 * audit.log, or when that is empty (just rotated) of the newest rotated
 * segment; 0 when there is none. */
int gw_audit_log_open(const char *dir, int *fd, uint64_t *last_seq);
/* Append one line; fsync when `sync`. */
int gw_audit_log_append(int fd, const char *path, const gw_transition *t, bool sync);
/* When the file behind `fd` (<dir>/audit.log) has reached `max_bytes` (0:
 * never), rotate: delete the segments numbered `keep` (1..100000) and above,
 * rename audit.log.<n> to audit.log.<n+1>, audit.log to audit.log.1, and
 * make `fd` the new, empty audit.log (the caller's descriptor number is kept).
 * Records are never rewritten; whole old segments are dropped. */
int gw_audit_log_rotate(int fd, const char *dir, uint64_t max_bytes, unsigned keep);

#endif
