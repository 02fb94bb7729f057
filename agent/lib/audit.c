/* The audit log: one JSON object per line per transition, appended by the
 * registry, read back (filtered) for operators. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "record.h"
#include "util.h"

#define TAIL_CHUNK (1u << 20)

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

static int pread_all(int fd, const char *path, char *buf, size_t len, off_t off)
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
        int r = pread_all(fd, path, buf, chunk, off);
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
    *last_seq = seq;
    *out_fd = fd;
    fd = -1;
    return 0;
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

GW_EXTERN int gw_audit_read_file(gw_audit **out, const char *path, const gw_audit_filter *filter)
{
    if (!out || !path)
        return gw_error_set(-EINVAL, "gw_audit_read_file: NULL argument");
    if (filter && filter->version < 1)
        return gw_error_set(-EINVAL, "audit filter version %u (initialise it with "
                            "GW_AUDIT_FILTER_INIT)", filter->version);
    if (filter && filter->address && !gw_is_bdf(filter->address))
        return gw_error_set(-EINVAL, "audit filter: '%s' is not a PCI address like 0000:3b:00.0",
                            filter->address);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return gw_error_set(-errno, "%s: %s", path, strerror(errno));

    gw_audit *log = gw_xcalloc(1, sizeof *log);
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long lineno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[len - 1] != '\n')
            break;      /* still being written */
        line[len - 1] = '\0';
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        char ctx[256];
        snprintf(ctx, sizeof ctx, "%s:%lu", path, lineno);
        if (!o) {
            gw_audit_free(log);
            return gw_error_set(GW_ESTATE_CORRUPT, "%s: not JSON: %s", ctx, jerr.text);
        }
        gw_transition t;
        int r = gw_transition_from_jobj(o, &t, ctx);
        json_decref(o);
        if (r < 0) {
            gw_audit_free(log);
            return r;
        }
        if (!matches(&t, filter)) {
            gw_transition_clear(&t);
            continue;
        }
        if (log->n == log->cap) {
            log->cap = log->cap ? 2 * log->cap : 64;
            log->items = gw_xrealloc(log->items, log->cap, sizeof *log->items);
        }
        log->items[log->n++] = t;
    }
    if (ferror(f)) {
        gw_audit_free(log);
        return gw_error_set(-EIO, "read %s: %s", path, strerror(errno));
    }
    if (filter && filter->last && log->n > filter->last) {
        size_t drop = log->n - filter->last;
        for (size_t i = 0; i < drop; i++)
            gw_transition_clear(&log->items[i]);
        memmove(log->items, log->items + drop, filter->last * sizeof *log->items);
        log->n = filter->last;
        log->truncated = true;
    }
    *out = log;
    return 0;
}

GW_EXTERN int gw_audit_read(gw_audit **out, const char *state_dir, const gw_audit_filter *filter)
{
    if (!state_dir)
        return gw_error_set(-EINVAL, "gw_audit_read: no state directory");
    _cleanup_free_ char *path = gw_strdup_printf("%s/" GW_AUDIT_NAME, state_dir);
    return gw_audit_read_file(out, path, filter);
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
