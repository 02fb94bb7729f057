/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log's reading, shared by audit.c (every line of the segments)
 * and audit_index.c (only the lines an index says are a device's), so that
 * both take a line to a record, filter and order it the same way. */
#ifndef GW_AUDIT_INTERNAL_H
#define GW_AUDIT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <gpuwarden/audit.h>

/* One segment of the log, open: what a read sees of it is its first `size`
 * bytes (the size when it was opened). */
typedef struct gw_audit_segment {
    int fd;
    char *path;
    off_t size;
    dev_t dev;                  /* the file, whatever its name now */
    ino_t ino;
} gw_audit_segment;

/* The segments of <state_dir>'s log, newest first (audit.log, then
 * audit.log.1, ...), each file once. -ENOENT naming audit.log when there is
 * none. */
int gw_audit_segments_open(const char *state_dir, gw_audit_segment **segs, size_t *n);
void gw_audit_segments_free(gw_audit_segment *segs, size_t n);

int gw_audit_filter_check(const gw_audit_filter *filter);
/* pread() all of it, or an error naming `path` (a file that shrank is -EIO). */
int gw_audit_pread(int fd, const char *path, char *buf, size_t len, off_t off);

/* A read in progress. Forwards (no `last`): lines oldest first, segments
 * oldest first. Backwards (`last` N): lines newest first, segments newest
 * first, until N are taken. */
typedef struct gw_audit_cursor {
    gw_audit *log;
    const gw_audit_filter *filter;
    uint64_t mark;              /* forwards: the last seq taken; backwards: the last seen */
    bool backward;
} gw_audit_cursor;

void gw_audit_cursor_init(gw_audit_cursor *c, const gw_audit_filter *filter);
/* One complete line (NUL-terminated, no newline) found at byte `off` of `s`.
 * 1: the read is complete (backwards); 0: go on; <0: a damaged line, the
 * error naming its file and line. */
int gw_audit_cursor_line(gw_audit_cursor *c, gw_audit_segment *s, const char *line, off_t off);
/* The records read, oldest first; NULL (and freed) when r < 0. */
gw_audit *gw_audit_cursor_finish(gw_audit_cursor *c, int r);

/*
 * An index of the log in memory: for each segment file (by device and inode,
 * so a rotation, which renames, keeps it), where each device's lines are.
 * A read for one device then reads only that device's lines, and one for a
 * device with no record reads none. The index follows the files: each read
 * first indexes what was appended since the last one (only those bytes) and
 * forgets segments that are gone, so it needs no word from the writer.
 * Thread-safe (one lock; reads through it are serialised).
 */
typedef struct gw_audit_index gw_audit_index;

gw_audit_index *gw_audit_index_new(void);
void gw_audit_index_free(gw_audit_index *ix);
/* Index whatever <state_dir>'s log holds that is not indexed yet (at start,
 * so that the first read does not pay for the whole log). */
int gw_audit_index_update(gw_audit_index *ix, const char *state_dir);
/* gw_audit_read() through the index: the same records, errors and order. A
 * filter without an address reads the files as gw_audit_read() does (a
 * `last` N read costs about N then). */
int gw_audit_index_read(gw_audit_index *ix, gw_audit **out, const char *state_dir, const gw_audit_filter *filter);
/* Bytes of the log indexed so far, and the lines read for requests (tests,
 * logs). */
void gw_audit_index_stats(gw_audit_index *ix, uint64_t *bytes_indexed, uint64_t *lines_read);

#endif
