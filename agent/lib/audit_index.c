/* SPDX-License-Identifier: Apache-2.0 */
/* An index of the audit log in memory: per segment file, the byte offset and
 * length of each device's lines (audit_internal.h).
 *
 * Why: the daemon's `audit` for one device read every line of every segment
 * to find that device's records (its text filter spares the parse, not the
 * read): 20,000 records, ~5 MiB, for each request, and ~130 such requests a
 * second took a whole CPU of a 2-CPU host from the request thread and its
 * `gate` (docs/BENCHMARKS.md). With the index a read costs the lines it
 * returns, and nothing for a device with no record.
 *
 * Why it follows the files instead of being fed by the registry's appends:
 * the files stay the one truth (the CLI reads them too; rotation renames them
 * under the reader), and the index cannot drift from them. Before each read
 * it takes what was appended to each segment since (a stat, and a read of
 * only the new bytes), keeps a segment across its renames (it is keyed by
 * device and inode), forgets segments that are gone, and starts a segment
 * afresh when its file is not the one it indexed (shorter than what was
 * indexed, or other first bytes: a new file that got a deleted one's inode).
 *
 * Which device a line is: the value of its one `"address":"` (the registry
 * writes records compactly, and a quote inside a string is escaped, so the
 * text occurs once, in the device object). A line where it does not occur
 * exactly once, or holds no PCI address, goes to the segment's `other`
 * lines, which every read parses: what the index cannot place is read, never
 * left out. Each line read is still parsed and filtered as gw_audit_read()
 * does (the same cursor), so the index only decides which lines are read. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_internal.h"
#include "util.h"

/* Bytes read at a time while indexing (grown for a longer line). */
#define SCAN_CHUNK (256u << 10)
/* A segment's first bytes, kept to tell its file from a new one with the
 * same inode: the first record's seq and time are there. */
#define HEAD_BYTES 64

typedef struct ix_line {
    off_t off;
    size_t len;                 /* without the newline */
} ix_line;

typedef struct ix_list {
    ix_line *v;
    size_t n, cap;
} ix_list;

typedef struct ix_dev {
    char address[GW_ADDR_LEN];
    ix_list lines;
} ix_dev;

typedef struct ix_seg {
    dev_t dev;
    ino_t ino;
    off_t indexed;              /* bytes of whole lines indexed */
    unsigned char head[HEAD_BYTES];
    size_t head_len;
    ix_dev *devs;
    size_t n_devs;
    ix_list other;              /* lines without one readable address */
    bool seen;                  /* among the segments of the current read */
} ix_seg;

struct gw_audit_index {
    pthread_mutex_t lock;
    ix_seg *segs;
    size_t n;
    uint64_t bytes_indexed, lines_read;
};

/* ---- building ----------------------------------------------------------- */

static void list_push(ix_list *l, off_t off, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = gw_xrealloc(l->v, l->cap, sizeof *l->v);
    }
    l->v[l->n++] = (ix_line){ off, len };
}

static void seg_clear(ix_seg *x)
{
    for (size_t i = 0; i < x->n_devs; i++)
        free(x->devs[i].lines.v);
    free(x->devs);
    free(x->other.v);
    x->devs = NULL;
    x->n_devs = 0;
    memset(&x->other, 0, sizeof x->other);
    x->indexed = 0;
    x->head_len = 0;
}

static ix_dev *seg_device(ix_seg *x, const char *address, bool add)
{
    for (size_t i = 0; i < x->n_devs; i++)
        if (!strcmp(x->devs[i].address, address))
            return &x->devs[i];
    if (!add)
        return NULL;
    x->devs = gw_xrealloc(x->devs, x->n_devs + 1, sizeof *x->devs);
    ix_dev *d = &x->devs[x->n_devs++];
    memset(d, 0, sizeof *d);
    snprintf(d->address, sizeof d->address, "%s", address);
    return d;
}

/* The address of a compact record line, into buf; false when the line does
 * not name exactly one (see the top of the file). */
static bool line_address(const char *line, char buf[GW_ADDR_LEN])
{
    static const char key[] = "\"address\":\"";
    const char *p = strstr(line, key);
    if (!p || strstr(p + 1, key))
        return false;
    p += sizeof key - 1;
    const char *end = strchr(p, '"');
    if (!end || end - p >= GW_ADDR_LEN)
        return false;
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = '\0';
    return gw_is_bdf(buf);
}

static void index_line(ix_seg *x, const char *line, off_t off, size_t len)
{
    char address[GW_ADDR_LEN];
    if (line_address(line, address))
        list_push(&seg_device(x, address, true)->lines, off, len);
    else
        list_push(&x->other, off, len);
}

/* Index the whole lines of s from x->indexed to its size (the size it had
 * when opened; a line still being written waits for the next read). */
static int index_tail(gw_audit_index *ix, ix_seg *x, gw_audit_segment *s)
{
    if (x->indexed >= s->size)
        return 0;       /* nothing new: the common case, and free */
    size_t cap = SCAN_CHUNK, have = 0;     /* buf[0..have) is the file's [pos, pos + have) */
    _cleanup_free_ char *buf = gw_xrealloc(NULL, cap + 1, 1);
    off_t pos = x->indexed;
    while (pos + (off_t)have < s->size) {
        if (have == cap) {
            /* One line longer than the buffer: room for the rest of it. */
            cap *= 2;
            buf = gw_xrealloc(buf, cap + 1, 1);
        }
        off_t left = s->size - pos - (off_t)have;
        size_t n = left < (off_t)(cap - have) ? (size_t)left : cap - have;
        int r = gw_audit_pread(s->fd, s->path, buf + have, n, pos + (off_t)have);
        if (r < 0)
            return r;
        have += n;
        ix->bytes_indexed += n;
        size_t start = 0;
        char *nl;
        while ((nl = memchr(buf + start, '\n', have - start))) {
            size_t end = (size_t)(nl - buf);
            *nl = '\0';
            index_line(x, buf + start, pos + (off_t)start, end - start);
            start = end + 1;
        }
        memmove(buf, buf + start, have - start);
        pos += (off_t)start;
        have -= start;
    }
    x->indexed = pos;
    return 0;
}

/* Start x afresh unless it still describes s's file (see the top of the
 * file); either way keep the file's first bytes for the next time. */
static int check_file(ix_seg *x, gw_audit_segment *s)
{
    unsigned char head[HEAD_BYTES];
    size_t n = s->size < (off_t)sizeof head ? (size_t)s->size : sizeof head;
    int r = gw_audit_pread(s->fd, s->path, (char *)head, n, 0);
    if (r < 0)
        return r;
    if (x->indexed > s->size || x->head_len > n || memcmp(x->head, head, x->head_len))
        seg_clear(x);
    memcpy(x->head, head, n);
    x->head_len = n;
    return 0;
}

static ix_seg *find_seg(gw_audit_index *ix, const gw_audit_segment *s)
{
    for (size_t i = 0; i < ix->n; i++)
        if (ix->segs[i].dev == s->dev && ix->segs[i].ino == s->ino)
            return &ix->segs[i];
    return NULL;
}

/* Bring the index up to the segments as opened; forget the ones gone. Caller
 * holds ix->lock. */
static int sync_index(gw_audit_index *ix, gw_audit_segment *segs, size_t n)
{
    for (size_t i = 0; i < ix->n; i++)
        ix->segs[i].seen = false;
    for (size_t i = 0; i < n; i++) {
        ix_seg *x = find_seg(ix, &segs[i]);
        if (!x) {
            ix->segs = gw_xrealloc(ix->segs, ix->n + 1, sizeof *ix->segs);
            x = &ix->segs[ix->n++];
            memset(x, 0, sizeof *x);
            x->dev = segs[i].dev;
            x->ino = segs[i].ino;
        }
        int r = check_file(x, &segs[i]);
        if (r == 0)
            r = index_tail(ix, x, &segs[i]);
        if (r < 0) {
            seg_clear(x);       /* half indexed: start it afresh next time */
            return r;
        }
        x->seen = true;
    }
    for (size_t i = 0; i < ix->n;) {
        if (ix->segs[i].seen) {
            i++;
            continue;
        }
        seg_clear(&ix->segs[i]);
        ix->segs[i] = ix->segs[--ix->n];
    }
    return 0;
}

/* ---- reading ------------------------------------------------------------ */

/* The device's lines and the unplaced ones of a segment, merged in file
 * order, each handed to the cursor: oldest first forwards, newest first
 * backwards. 1 when the read is complete. */
static int read_lines(gw_audit_index *ix, gw_audit_cursor *c, gw_audit_segment *s, const ix_list *a,
                      const ix_list *b)
{
    size_t ia = 0, ib = 0, n = (a ? a->n : 0) + b->n;
    size_t cap = 0;
    _cleanup_free_ char *buf = NULL;    /* a device with no line here allocates nothing */
    for (size_t k = 0; k < n; k++) {
        /* Forwards: the smaller offset next; backwards the larger, from the end. */
        const ix_line *la = a && ia < a->n ? &a->v[c->backward ? a->n - 1 - ia : ia] : NULL;
        const ix_line *lb = ib < b->n ? &b->v[c->backward ? b->n - 1 - ib : ib] : NULL;
        bool take_a = la && (!lb || (c->backward ? la->off > lb->off : la->off < lb->off));
        const ix_line *l = take_a ? la : lb;
        if (take_a)
            ia++;
        else
            ib++;
        if (l->off + (off_t)l->len >= s->size)
            continue;   /* not whole in what this read opened */
        if (!buf || l->len > cap) {
            cap = l->len > 4096 ? l->len : 4096;
            buf = gw_xrealloc(buf, cap + 1, 1);
        }
        int r = gw_audit_pread(s->fd, s->path, buf, l->len, l->off);
        if (r < 0)
            return r;
        buf[l->len] = '\0';
        ix->lines_read++;
        r = gw_audit_cursor_line(c, s, buf, l->off);
        if (r != 0)
            return r;
    }
    return 0;
}

static int read_indexed(gw_audit_index *ix, gw_audit **out, gw_audit_segment *segs, size_t n,
                        const gw_audit_filter *filter)
{
    gw_audit_cursor c;
    gw_audit_cursor_init(&c, filter);
    int r = 0;
    for (size_t k = 0; k < n && r == 0; k++) {
        /* segs are newest first. */
        gw_audit_segment *s = &segs[c.backward ? k : n - 1 - k];
        ix_seg *x = find_seg(ix, s);
        if (!x) {
            r = gw_error_set(-EIO, "%s: not indexed", s->path);
            break;
        }
        ix_dev *d = seg_device(x, filter->address, false);
        r = read_lines(ix, &c, s, d ? &d->lines : NULL, &x->other);
    }
    if (r > 0)
        r = 0;
    *out = gw_audit_cursor_finish(&c, r);
    return r;
}

/* ---- the interface ------------------------------------------------------ */

gw_audit_index *gw_audit_index_new(void)
{
    gw_audit_index *ix = gw_xcalloc(1, sizeof *ix);
    pthread_mutex_init(&ix->lock, NULL);
    return ix;
}

void gw_audit_index_free(gw_audit_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n; i++)
        seg_clear(&ix->segs[i]);
    free(ix->segs);
    pthread_mutex_destroy(&ix->lock);
    free(ix);
}

int gw_audit_index_update(gw_audit_index *ix, const char *state_dir)
{
    gw_audit_segment *segs = NULL;
    size_t n = 0;
    int r = gw_audit_segments_open(state_dir, &segs, &n);
    if (r < 0)
        return r;
    pthread_mutex_lock(&ix->lock);
    r = sync_index(ix, segs, n);
    pthread_mutex_unlock(&ix->lock);
    gw_audit_segments_free(segs, n);
    return r;
}

int gw_audit_index_read(gw_audit_index *ix, gw_audit **out, const char *state_dir, const gw_audit_filter *filter)
{
    if (!ix || !out || !state_dir)
        return gw_error_set(-EINVAL, "gw_audit_index_read: NULL argument");
    int r = gw_audit_filter_check(filter);
    if (r < 0)
        return r;
    if (!filter || !filter->address)
        return gw_audit_read(out, state_dir, filter);
    gw_audit_segment *segs = NULL;
    size_t n = 0;
    if ((r = gw_audit_segments_open(state_dir, &segs, &n)) < 0)
        return r;
    pthread_mutex_lock(&ix->lock);
    r = sync_index(ix, segs, n);
    if (r == 0)
        r = read_indexed(ix, out, segs, n, filter);
    pthread_mutex_unlock(&ix->lock);
    gw_audit_segments_free(segs, n);
    return r;
}

void gw_audit_index_stats(gw_audit_index *ix, uint64_t *bytes_indexed, uint64_t *lines_read)
{
    pthread_mutex_lock(&ix->lock);
    if (bytes_indexed)
        *bytes_indexed = ix->bytes_indexed;
    if (lines_read)
        *lines_read = ix->lines_read;
    pthread_mutex_unlock(&ix->lock);
}
