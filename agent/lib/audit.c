/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log: one JSON object per line per transition, appended by the
 * registry, read back (filtered) for operators.
 *
 * Segments. <dir>/audit.log is the one being written. With rotation on
 * (gw_audit_log_rotate, the registry's audit_segment_bytes), when it reaches
 * the size it becomes audit.log.1, what was audit.log.1 becomes .2, and so
 * on; the segments beyond the number kept are deleted, oldest first. Every
 * step is a rename within the directory, so at any moment (and after a crash
 * between two of them) a larger number is an older segment, and the records
 * of all of them, oldest segment first, are in sequence order; a crash can
 * leave a number out, never two segments out of order.
 *
 * Reading. gw_audit_read() opens the segments newest first and skips a file
 * it has opened already under another name (a rotation between two opens
 * renames audit.log to audit.log.1): what it reads is the log as it was when
 * it opened audit.log. A request for the last N records reads backwards from
 * the end and stops once it has them (and knows whether older ones match),
 * so its cost follows N, not the size of the log. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "audit_internal.h"
#include "record.h"
#include "util.h"

#define TAIL_CHUNK (1u << 20)
/* Read size when reading a segment backwards. */
#define BACK_CHUNK (64u << 10)
/* Numbers above this are not taken for segments (audit.log.<n>). */
#define SEGMENT_MAX 100000u

struct gw_audit {
    gw_transition *items;
    size_t n, cap;
    bool truncated;
};

int gw_audit_log_append(int fd, const char *path, const gw_transition *t, bool sync)
{
    json_t *o = gw_transition_to_jobj(t);
    _cleanup_free_ char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!line)
        return gw_error_set(-ENOMEM, "%s: cannot encode record %" PRIu64, path, t->seq);
    size_t len = strlen(line);
    line[len] = '\n';   /* json_dumps leaves room for the NUL: reuse it */
    int r = gw_write_all(fd, path, line, len + 1);
    line[len] = '\0';
    if (r < 0)
        return r;
    if (sync && fdatasync(fd) < 0)
        return gw_error_set(-errno, "fdatasync %s: %s", path, strerror(errno));
    return 0;
}

int gw_audit_pread(int fd, const char *path, char *buf, size_t len, off_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, off + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return gw_error_set(-errno, "read %s: %s", path, strerror(errno));
        if (n == 0)
            return gw_error_set(-EIO, "read %s: file shrank while reading", path);
        got += (size_t)n;
    }
    return 0;
}

/* ---- segments ----------------------------------------------------------- */

/* <dir>/audit.log for n == 0, else <dir>/audit.log.<n>. */
static char *segment_path(const char *dir, unsigned n)
{
    return n ? gw_strdup_printf("%s/" GW_AUDIT_NAME ".%u", dir, n) : gw_strdup_printf("%s/" GW_AUDIT_NAME, dir);
}

static int cmp_unsigned(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? -1 : x > y;
}

/* The numbers of the rotated segments in `dir` (audit.log.<n>, n >= 1, no
 * leading zero), ascending: newest first. */
static int list_rotated(const char *dir, unsigned **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    DIR *dh = opendir(dir);
    if (!dh)
        return gw_error_set(-errno, "%s: %s", dir, strerror(errno));
    const size_t plen = strlen(GW_AUDIT_NAME ".");
    unsigned *v = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dh))) {
        const char *s = e->d_name;
        if (strncmp(s, GW_AUDIT_NAME ".", plen) || s[plen] < '1' || s[plen] > '9')
            continue;
        char *end;
        unsigned long num = strtoul(s + plen, &end, 10);
        if (*end || num > SEGMENT_MAX)
            continue;
        v = gw_xrealloc(v, n + 1, sizeof *v);
        v[n++] = (unsigned)num;
    }
    closedir(dh);
    if (n)
        qsort(v, n, sizeof *v, cmp_unsigned);
    *out = v;
    *count = n;
    return 0;
}

/* The seq of the last parseable line in buf[0..len) (which ends with a
 * newline), or 0 when there is none. */
static uint64_t last_seq_in(const char *path, char *buf, size_t len)
{
    size_t end = len;   /* buf[end-1] == '\n' */
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && buf[start - 1] != '\n')
            start--;
        buf[end - 1] = '\0';
        json_t *o = json_loads(buf + start, 0, NULL);
        json_t *seq = json_object_get(o, "seq");
        uint64_t v = json_is_integer(seq) && json_integer_value(seq) > 0
                         ? (uint64_t)json_integer_value(seq) : 0;
        json_decref(o);
        if (v)
            return v;
        gw_log(GW_LOG_ERR, "%s: the line at byte %zu of the tail is not an audit record",
               path, start);
        end = start;
    }
    return 0;
}

/* The last record's seq in a rotated segment (its lines are all complete:
 * only whole appends are rotated); 0 when it has none or cannot be read. */
static uint64_t segment_last_seq(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0)
        return 0;
    size_t chunk = (uint64_t)st.st_size < TAIL_CHUNK ? (size_t)st.st_size : TAIL_CHUNK;
    _cleanup_free_ char *buf = gw_xcalloc(chunk + 1, 1);
    if (gw_audit_pread(fd, path, buf, chunk, st.st_size - (off_t)chunk) < 0)
        return 0;
    size_t keep = chunk;
    while (keep > 0 && buf[keep - 1] != '\n')
        keep--;
    return last_seq_in(path, buf, keep);
}

int gw_audit_log_open(const char *dir, int *out_fd, uint64_t *last_seq)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s/" GW_AUDIT_NAME, dir);
    bool created = access(path, F_OK) < 0 && errno == ENOENT;
    _cleanup_close_ int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    if (created) {
        int r = gw_fsync_dir(dir);
        if (r < 0)
            return r;
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));

    uint64_t seq = 0;
    off_t size = st.st_size;
    if (size > 0) {
        size_t chunk = (uint64_t)size < TAIL_CHUNK ? (size_t)size : TAIL_CHUNK;
        off_t off = size - (off_t)chunk;
        _cleanup_free_ char *buf = gw_xcalloc(chunk + 1, 1);
        int r = gw_audit_pread(fd, path, buf, chunk, off);
        if (r < 0)
            return r;
        size_t keep = chunk;
        while (keep > 0 && buf[keep - 1] != '\n')
            keep--;
        if (keep < chunk) {
            /* A line without its newline is a write cut short by a crash:
             * its transition is still in the checkpoint's journal and is
             * written again by the caller. */
            if (keep == 0 && off > 0)
                return gw_error_set(GW_ESTATE_CORRUPT, "%s: last line longer than %u bytes",
                                    path, TAIL_CHUNK);
            gw_log(GW_LOG_WARNING, "%s: dropping a record cut short by a crash (%zu bytes)", path,
                   chunk - keep);
            if (ftruncate(fd, off + (off_t)keep) < 0)
                return gw_error_set(-errno, "truncate %s: %s", path, strerror(errno));
            if (fsync(fd) < 0)
                return gw_error_set(-errno, "fsync %s: %s", path, strerror(errno));
        }
        seq = last_seq_in(path, buf, keep);
    }
    if (seq == 0) {
        /* Just rotated (or a crash right after the rename): the last record
         * is in the newest rotated segment. Without it the caller would take
         * the log for empty and write the checkpoint's journal again. */
        _cleanup_free_ unsigned *nums = NULL;
        size_t n = 0;
        if (list_rotated(dir, &nums, &n) == 0 && n) {
            _cleanup_free_ char *newest = segment_path(dir, nums[0]);
            seq = segment_last_seq(newest);
        }
    }
    *last_seq = seq;
    *out_fd = fd;
    fd = -1;
    return 0;
}

int gw_audit_log_rotate(int fd, const char *dir, uint64_t max_bytes, unsigned keep)
{
    struct stat st;
    if (!max_bytes)
        return 0;
    if (fstat(fd, &st) < 0)
        return gw_error_set(-errno, "%s/" GW_AUDIT_NAME ": %s", dir, strerror(errno));
    if ((uint64_t)st.st_size < max_bytes)
        return 0;
    if (keep < 1 || keep > SEGMENT_MAX)
        return gw_error_set(-EINVAL, "audit log rotation: keep 1..%u segments, not %u", SEGMENT_MAX, keep);
    /* Oldest first, so that a crash in between leaves every segment older
     * than every lower-numbered one: delete what would go beyond `keep`
     * (also segments left by an earlier, larger `keep`), then shift. */
    _cleanup_free_ unsigned *nums = NULL;
    size_t n = 0;
    int r = list_rotated(dir, &nums, &n);
    if (r < 0)
        return r;
    for (size_t i = n; i-- > 0;) {
        if (nums[i] < keep)
            break;
        _cleanup_free_ char *p = segment_path(dir, nums[i]);
        if (unlink(p) < 0 && errno != ENOENT)
            return gw_error_set(-errno, "unlink %s: %s", p, strerror(errno));
    }
    for (unsigned i = keep; i-- > 1;) {
        _cleanup_free_ char *from = segment_path(dir, i);
        _cleanup_free_ char *to = segment_path(dir, i + 1);
        if (rename(from, to) < 0 && errno != ENOENT)
            return gw_error_set(-errno, "rename %s: %s", from, strerror(errno));
    }
    _cleanup_free_ char *cur = segment_path(dir, 0);
    _cleanup_free_ char *first = segment_path(dir, 1);
    if (rename(cur, first) < 0)
        return gw_error_set(-errno, "rename %s: %s", cur, strerror(errno));
    /* Until the new file is in place `fd` still appends to audit.log.1,
     * which stays in order: it is the newest segment then. */
    int nfd = open(cur, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (nfd < 0)
        return gw_error_set(-errno, "%s: %s", cur, strerror(errno));
    /* The caller's descriptor now names the new file: the registry keeps
     * the one it opened. */
    if (dup3(nfd, fd, O_CLOEXEC) < 0) {
        int e = errno;
        close(nfd);
        return gw_error_set(-e, "dup3 %s: %s", cur, strerror(e));
    }
    close(nfd);
    return gw_fsync_dir(dir);
}

/* ---- reading ------------------------------------------------------------ */

GW_EXTERN size_t gw_audit_count(const gw_audit *log) { return log ? log->n : 0; }

GW_EXTERN const gw_transition *gw_audit_get(const gw_audit *log, size_t i)
{
    return log && i < log->n ? &log->items[i] : NULL;
}

GW_EXTERN bool gw_audit_truncated(const gw_audit *log) { return log && log->truncated; }

GW_EXTERN void gw_audit_free(gw_audit *log)
{
    if (!log)
        return;
    for (size_t i = 0; i < log->n; i++)
        gw_transition_clear(&log->items[i]);
    free(log->items);
    free(log);
}

static bool matches(const gw_transition *t, const gw_audit_filter *f)
{
    if (!f)
        return true;
    if (f->address && strcmp(f->address, t->device.address))
        return false;
    return t->seq > f->since_seq && t->time_ms >= f->since_ms;
}

static void push(gw_audit *log, const gw_transition *t)
{
    if (log->n == log->cap) {
        log->cap = log->cap ? 2 * log->cap : 64;
        log->items = gw_xrealloc(log->items, log->cap, sizeof *log->items);
    }
    log->items[log->n++] = *t;
}

/* Whether a line may pass `f`, from its text alone: the registry writes
 * records compactly (`"address":"...`, `"time_ms":...`), so a line in that
 * form that lacks the address, or is older than since_ms, is skipped without
 * parsing it. Anything else is left to the parser. */
static bool may_match(const char *line, const gw_audit_filter *f)
{
    if (!f)
        return true;
    if (f->address && strstr(line, "\"address\":\"")) {
        char want[GW_ADDR_LEN + 16];
        snprintf(want, sizeof want, "\"address\":\"%s\"", f->address);
        if (!strstr(line, want))
            return false;
    }
    if (f->since_ms) {
        const char *tm = strstr(line, "\"time_ms\":");
        if (tm) {
            char *end;
            long long v = strtoll(tm + 10, &end, 10);
            if (end != tm + 10 && (*end == ',' || *end == '}') && v < f->since_ms)
                return false;
        }
    }
    return true;
}

/* One line (NUL-terminated, no newline) into *t; ctx names where it is. */
static int parse_line(const char *line, const char *ctx, gw_transition *t)
{
    json_error_t jerr;
    json_t *o = json_loads(line, 0, &jerr);
    if (!o)
        return gw_error_set(GW_ESTATE_CORRUPT, "%s: not JSON: %s", ctx, jerr.text);
    int r = gw_transition_from_jobj(o, t, ctx);
    json_decref(o);
    return r;
}

typedef gw_audit_segment segment;

void gw_audit_segments_free(segment *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i].fd >= 0)
            close(s[i].fd);
        free(s[i].path);
    }
    free(s);
}

/* Open `path` as one more segment unless it is one opened already (the same
 * file under its next name). A file that is gone is skipped unless
 * `required`. */
static int segment_add(segment **v, size_t *n, const char *path, bool required)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && !required)
            return 0;
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return gw_error_set(-e, "%s: %s", path, strerror(e));
    }
    for (size_t i = 0; i < *n; i++) {
        struct stat o;
        if (fstat((*v)[i].fd, &o) == 0 && o.st_dev == st.st_dev && o.st_ino == st.st_ino) {
            close(fd);
            return 0;
        }
    }
    *v = gw_xrealloc(*v, *n + 1, sizeof **v);
    (*v)[(*n)++] = (segment){ fd, gw_xstrdup(path), st.st_size, st.st_dev, st.st_ino };
    return 0;
}

/* Every line of a segment, oldest first, through gw_audit_cursor_line(). */
static int read_forward(segment *s, gw_audit_cursor *c)
{
    int fd = dup(s->fd);
    _cleanup_fclose_ FILE *f = fd < 0 ? NULL : fdopen(fd, "re");
    if (!f) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return gw_error_set(-e, "%s: %s", s->path, strerror(e));
    }
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    off_t off = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n')
            break;      /* still being written */
        line[len - 1] = '\0';
        int r = gw_audit_cursor_line(c, s, line, off);
        if (r < 0)
            return r;
        off += len;
    }
    if (ferror(f))
        return gw_error_set(-EIO, "read %s: %s", s->path, strerror(errno));
    return 0;
}

/* The line number of byte `off` of a segment, for an error message. */
static unsigned long line_of(segment *s, off_t off)
{
    unsigned long line = 1;
    char buf[BACK_CHUNK];
    for (off_t at = 0; at < off;) {
        size_t n = (size_t)(off - at < (off_t)sizeof buf ? off - at : (off_t)sizeof buf);
        ssize_t got = pread(s->fd, buf, n, at);
        if (got <= 0)
            break;
        for (ssize_t i = 0; i < got; i++)
            line += buf[i] == '\n';
        at += got;
    }
    return line;
}

/* The line of s found at byte `off`. A damaged one's error names its file
 * and line number, counted only then (the index hands lines over out of
 * order, and a read backwards has not counted them). */
static int parse_at(segment *s, const char *line, off_t off, gw_transition *t)
{
    if (parse_line(line, s->path, t) == 0)
        return 0;
    char ctx[PATH_MAX + 32];
    snprintf(ctx, sizeof ctx, "%s:%lu", s->path, line_of(s, off));
    return parse_line(line, ctx, t);
}

/* Forwards: a record at or below the last one taken is the same record under
 * a segment's next name. */
static int forward_line(gw_audit_cursor *c, segment *s, const char *line, off_t off)
{
    gw_transition t;
    int r = parse_at(s, line, off, &t);
    if (r < 0)
        return r;
    if (t.seq <= c->mark || !matches(&t, c->filter)) {
        gw_transition_clear(&t);
        return 0;
    }
    c->mark = t.seq;
    push(c->log, &t);
    return 0;
}

/* Backwards: newest first, stopping once `last` are taken (and one more
 * match says older ones exist) or the records get older than since_seq. */
static int back_line(gw_audit_cursor *c, segment *s, const char *line, off_t off)
{
    const gw_audit_filter *f = c->filter;
    gw_transition t;
    int r = parse_at(s, line, off, &t);
    if (r < 0)
        return r;
    if (c->mark && t.seq >= c->mark) {
        gw_transition_clear(&t);     /* read already, under the segment's next name */
        return 0;
    }
    c->mark = t.seq;
    if (f && t.seq <= f->since_seq) {
        gw_transition_clear(&t);     /* every older record is older still */
        return 1;
    }
    if (!matches(&t, f)) {
        gw_transition_clear(&t);
        return 0;
    }
    if (c->log->n == f->last) {
        /* One more match than asked for: older matching records exist. */
        gw_transition_clear(&t);
        c->log->truncated = true;
        return 1;
    }
    push(c->log, &t);
    return 0;
}

int gw_audit_cursor_line(gw_audit_cursor *c, segment *s, const char *line, off_t off)
{
    if (!may_match(line, c->filter))
        return 0;
    return c->backward ? back_line(c, s, line, off) : forward_line(c, s, line, off);
}

void gw_audit_cursor_init(gw_audit_cursor *c, const gw_audit_filter *filter)
{
    memset(c, 0, sizeof *c);
    c->log = gw_xcalloc(1, sizeof *c->log);
    c->filter = filter;
    c->backward = filter && filter->last;
}

gw_audit *gw_audit_cursor_finish(gw_audit_cursor *c, int r)
{
    gw_audit *log = c->log;
    c->log = NULL;
    if (r < 0) {
        gw_audit_free(log);
        return NULL;
    }
    /* Collected newest first backwards: the caller gets them oldest first. */
    for (size_t i = 0, j = log->n; c->backward && i + 1 < j--; i++) {
        gw_transition tmp = log->items[i];
        log->items[i] = log->items[j];
        log->items[j] = tmp;
    }
    return log;
}

/* The segment's complete lines, newest first, through
 * gw_audit_cursor_line(). The last line without its newline is being
 * written: not a record yet. */
static int read_backward(segment *s, gw_audit_cursor *c)
{
    _cleanup_free_ char *win = NULL;
    size_t wlen = 0, wcap = 0;      /* win[0..wlen) is the file's bytes [pos, pos + wlen) */
    off_t pos = s->size;
    bool tail_cut = false;
    while (pos > 0) {
        size_t n = (size_t)(pos > (off_t)BACK_CHUNK ? (off_t)BACK_CHUNK : pos);
        if (wlen + n > wcap) {
            wcap = wlen + n;
            win = gw_xrealloc(win, wcap, 1);
        }
        memmove(win + n, win, wlen);
        int r = gw_audit_pread(s->fd, s->path, win, n, pos - (off_t)n);
        if (r < 0)
            return r;
        pos -= (off_t)n;
        wlen += n;
        if (!tail_cut) {
            size_t e = wlen;
            while (e > 0 && win[e - 1] != '\n')
                e--;
            if (e == 0 && pos > 0)
                continue;       /* no newline yet: the whole window is the unfinished line */
            wlen = e;
            tail_cut = true;
        }
        /* Complete lines in the window, newest first. A line that starts
         * before the window waits for the next chunk (its bytes stay). */
        size_t end = wlen;
        while (end > 0) {
            size_t start = end - 1;
            while (start > 0 && win[start - 1] != '\n')
                start--;
            if (start == 0 && pos > 0)
                break;
            win[end - 1] = '\0';
            r = gw_audit_cursor_line(c, s, win + start, pos + (off_t)start);
            if (r != 0)
                return r < 0 ? r : 1;
            end = start;
        }
        wlen = end;
    }
    return 0;
}

int gw_audit_filter_check(const gw_audit_filter *filter)
{
    if (filter && filter->version < 1)
        return gw_error_set(-EINVAL, "audit filter version %u (initialise it with "
                            "GW_AUDIT_FILTER_INIT)", filter->version);
    if (filter && filter->address && !gw_is_bdf(filter->address))
        return gw_error_set(-EINVAL, "audit filter: '%s' is not a PCI address like 0000:3b:00.0",
                            filter->address);
    return 0;
}

/* segs: newest first. */
static int read_segments(gw_audit **out, segment *segs, size_t n, const gw_audit_filter *filter)
{
    gw_audit_cursor c;
    gw_audit_cursor_init(&c, filter);
    int r = 0;
    if (c.backward) {
        for (size_t i = 0; i < n && r == 0; i++)
            r = read_backward(&segs[i], &c);
        if (r > 0)
            r = 0;
    } else {
        for (size_t i = n; i-- > 0 && r == 0;)
            r = read_forward(&segs[i], &c);
    }
    *out = gw_audit_cursor_finish(&c, r);
    return r;
}

GW_EXTERN int gw_audit_read_file(gw_audit **out, const char *path, const gw_audit_filter *filter)
{
    if (!out || !path)
        return gw_error_set(-EINVAL, "gw_audit_read_file: NULL argument");
    int r = gw_audit_filter_check(filter);
    if (r < 0)
        return r;
    segment *segs = NULL;
    size_t n = 0;
    if ((r = segment_add(&segs, &n, path, true)) == 0)
        r = read_segments(out, segs, n, filter);
    gw_audit_segments_free(segs, n);
    return r;
}

int gw_audit_segments_open(const char *state_dir, segment **out, size_t *count)
{
    segment *segs = NULL;
    size_t n = 0;
    _cleanup_free_ unsigned *nums = NULL;
    size_t nn = 0;
    _cleanup_free_ char *current = segment_path(state_dir, 0);
    /* audit.log before listing the rotated ones: a rotation in between
     * shows the same file again as audit.log.1, which is skipped. */
    int r = segment_add(&segs, &n, current, false);
    if (r == 0)
        r = list_rotated(state_dir, &nums, &nn);
    for (size_t i = 0; i < nn && r == 0; i++) {
        _cleanup_free_ char *p = segment_path(state_dir, nums[i]);
        r = segment_add(&segs, &n, p, false);
    }
    if (r == 0 && n == 0)
        r = gw_error_set(-ENOENT, "%s: %s", current, strerror(ENOENT));
    if (r < 0) {
        gw_audit_segments_free(segs, n);
        return r;
    }
    *out = segs;
    *count = n;
    return 0;
}

GW_EXTERN int gw_audit_read(gw_audit **out, const char *state_dir, const gw_audit_filter *filter)
{
    if (!out)
        return gw_error_set(-EINVAL, "gw_audit_read: NULL argument");
    if (!state_dir)
        return gw_error_set(-EINVAL, "gw_audit_read: no state directory");
    int r = gw_audit_filter_check(filter);
    if (r < 0)
        return r;
    segment *segs = NULL;
    size_t n = 0;
    if ((r = gw_audit_segments_open(state_dir, &segs, &n)) == 0)
        r = read_segments(out, segs, n, filter);
    gw_audit_segments_free(segs, n);
    return r;
}

GW_EXTERN int gw_audit_to_json(const gw_audit *log, char **out)
{
    if (!log || !out)
        return gw_error_set(-EINVAL, "gw_audit_to_json: NULL argument");
    json_t *a = json_array();
    for (size_t i = 0; i < log->n; i++)
        json_array_append_new(a, gw_transition_to_jobj(&log->items[i]));
    *out = json_dumps(a, JSON_INDENT(2));
    json_decref(a);
    if (!*out)
        return gw_error_set(-ENOMEM, "gw_audit_to_json: out of memory");
    return 0;
}
