/* SPDX-License-Identifier: Apache-2.0 */
/* Vendor and device names from a pci.ids file, the answers libpci 3.9's
 * pci_lookup_name() gives (PCI_LOOKUP_NO_NUMBERS, hwdb off), without its
 * cost: libpci reads the 36,000-line file through zlib's gzgets() a line at
 * a time and copies every name into its hash, about 9 ms of a 30 ms
 * `gpuwarden discover` on a 2-vCPU VM, for the two names a GPU needs.
 *
 * Here the file is mapped, every line is checked by the rules of libpci's
 * id_parse_list() (lib/names-parse.c), and the vendor and device lines are
 * indexed in file order. pci.ids lists every level in strictly ascending
 * order (vendors; devices of a vendor; subsystems of a device; classes,
 * subclasses, programming interfaces), which is what makes binary search
 * possible and a duplicate (libpci: "Duplicate entry") impossible; that
 * order is checked too. Wherever libpci's own reading would differ or fail
 * (no such file, a gzip file, a NUL byte, a line libpci's fgets() would
 * split, a parse error, an entry out of order or repeated, a generic "S"
 * subsystem block) the index is not used (GW_IDS_LIBPCI) and the caller
 * asks libpci, which then answers, or fails, as it always did. */
#include "pciids.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define MAX_LINE 1024           /* libpci's fgets() buffer: longer lines are split */

enum { CAT_NONE, CAT_VENDOR, CAT_DEVICE, CAT_SUBSYSTEM, CAT_CLASS, CAT_SUBCLASS, CAT_PROGIF,
       CAT_UNKNOWN };

typedef struct {
    const char *name;
    uint32_t len;
    uint16_t id;
    uint32_t dev_begin, dev_end;    /* vendors: their devices in `devs` */
} entry;

struct gw_ids {
    void *map;
    size_t map_len;
    entry *vendors, *devs;
    size_t n_vendors, n_devs, cap_vendors, cap_devs;
};

/* The bytes of one line as libpci sees it after its trimming: [p, e). */
static int ch(const char *p, const char *e) { return p < e ? (unsigned char)*p : 0; }
static bool white(int c) { return c == ' ' || c == '\t'; }

static int id_hex(const char *p, const char *e, int cnt)
{
    int x = 0;
    while (cnt--) {
        int c = ch(p++, e);
        x <<= 4;
        if (c >= '0' && c <= '9')
            x += c - '0';
        else if (c >= 'a' && c <= 'f')
            x += c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            x += c - 'A' + 10;
        else
            return -1;
    }
    return x;
}

static entry *push(entry **v, size_t *n, size_t *cap)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *v = gw_xrealloc(*v, *cap, sizeof **v);
    }
    return memset(&(*v)[(*n)++], 0, sizeof **v);
}

/* Strictly above the previous id of its scope (-1: none yet). */
static bool ascending(long *last, long id)
{
    if (id <= *last)
        return false;
    *last = id;
    return true;
}

/* id_parse_list() over the mapped file; false where libpci reports an
 * error, or the order that rules out duplicates does not hold. */
static bool parse(gw_ids *t, const char *s, const char *end)
{
    int cat = CAT_NONE, id = 0;
    long last_vendor = -1, last_dev = -1, last_sub = -1, last_class = -1, last_subclass = -1,
         last_progif = -1;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl || nl - s >= MAX_LINE - 1)
            return false;       /* no final newline, or split by fgets() */
        const char *line = s, *e = s;
        s = nl + 1;
        while (e < nl && *e != '\r')
            e++;
        if (e > line && white(e[-1]))
            e--;
        const char *p = line;
        while (white(ch(p, e)))
            p++;
        if (!ch(p, e) || *p == '#')
            continue;
        for (p = line; ch(p, e) == '\t'; p++)
            ;
        long nest = p - line;
        if (!nest) {
            if (p[0] == 'C' && ch(p + 1, e) == ' ') {
                if ((id = id_hex(p + 2, e, 2)) < 0 || !white(ch(p + 4, e)) || !ascending(&last_class, id))
                    return false;
                cat = CAT_CLASS;
                last_subclass = -1;
                p += 5;
            } else if (p[0] == 'S' && ch(p + 1, e) == ' ') {
                return false;   /* generic subsystems: libpci's hash decides */
            } else if (p[0] >= 'A' && p[0] <= 'Z' && ch(p + 1, e) == ' ') {
                cat = CAT_UNKNOWN;
                continue;
            } else {
                if ((id = id_hex(p, e, 4)) < 0 || !white(ch(p + 4, e)) || !ascending(&last_vendor, id))
                    return false;
                cat = CAT_VENDOR;
                last_dev = -1;
                p += 5;
            }
        } else if (cat == CAT_UNKNOWN) {
            continue;
        } else if (nest == 1) {
            switch (cat) {
            case CAT_VENDOR:
            case CAT_DEVICE:
            case CAT_SUBSYSTEM:
                if ((id = id_hex(p, e, 4)) < 0 || !white(ch(p + 4, e)) || !ascending(&last_dev, id))
                    return false;
                p += 5;
                cat = CAT_DEVICE;
                last_sub = -1;
                break;
            case CAT_CLASS:
            case CAT_SUBCLASS:
            case CAT_PROGIF:
                if ((id = id_hex(p, e, 2)) < 0 || !white(ch(p + 2, e)) || !ascending(&last_subclass, id))
                    return false;
                p += 3;
                cat = CAT_SUBCLASS;
                last_progif = -1;
                break;
            default:
                return false;
            }
        } else if (nest == 2) {
            int sv, sd;
            switch (cat) {
            case CAT_DEVICE:
            case CAT_SUBSYSTEM:
                if ((sv = id_hex(p, e, 4)) < 0 || !white(ch(p + 4, e)) || (sd = id_hex(p + 5, e, 4)) < 0 ||
                    !white(ch(p + 9, e)) || !ascending(&last_sub, (long)sv << 16 | sd))
                    return false;
                p += 10;
                cat = CAT_SUBSYSTEM;
                break;
            case CAT_CLASS:
            case CAT_SUBCLASS:
            case CAT_PROGIF:
                if ((id = id_hex(p, e, 2)) < 0 || !white(ch(p + 2, e)) || !ascending(&last_progif, id))
                    return false;
                p += 3;
                cat = CAT_PROGIF;
                break;
            default:
                return false;
            }
        } else {
            return false;
        }
        while (white(ch(p, e)))
            p++;
        if (!ch(p, e))
            return false;
        entry *x = NULL;
        if (cat == CAT_VENDOR) {
            x = push(&t->vendors, &t->n_vendors, &t->cap_vendors);
            x->dev_begin = x->dev_end = (uint32_t)t->n_devs;
        } else if (cat == CAT_DEVICE) {
            x = push(&t->devs, &t->n_devs, &t->cap_devs);
            t->vendors[t->n_vendors - 1].dev_end = (uint32_t)t->n_devs;
        }
        if (x) {
            x->id = (uint16_t)id;
            x->name = p;
            x->len = (uint32_t)(e - p);
        }
    }
    return true;
}

int gw_ids_load(gw_ids **out, const char *path)
{
    *out = NULL;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0)
        return GW_IDS_LIBPCI;
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return GW_IDS_LIBPCI;
    const unsigned char *b = map;
    gw_ids *t = gw_xcalloc(1, sizeof *t);
    t->map = map;
    t->map_len = len;
    /* gzip (libpci reads it through zlib), or a NUL its fgets() stops at. */
    if ((len >= 2 && b[0] == 0x1f && b[1] == 0x8b) || memchr(b, '\0', len) ||
        !parse(t, map, (const char *)map + len)) {
        gw_ids_free(t);
        return GW_IDS_LIBPCI;
    }
    *out = t;
    return 0;
}

void gw_ids_free(gw_ids *t)
{
    if (!t)
        return;
    if (t->map)
        munmap(t->map, t->map_len);
    free(t->vendors);
    free(t->devs);
    free(t);
}

static const entry *search(const entry *v, size_t lo, size_t hi, uint16_t id)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].id == id)
            return &v[mid];
        if (v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

char *gw_ids_vendor(const gw_ids *t, uint16_t vendor)
{
    const entry *x = search(t->vendors, 0, t->n_vendors, vendor);
    return x ? gw_strdup_printf("%.*s", (int)x->len, x->name) : NULL;
}

char *gw_ids_device(const gw_ids *t, uint16_t vendor, uint16_t device)
{
    const entry *v = search(t->vendors, 0, t->n_vendors, vendor);
    const entry *x = v ? search(t->devs, v->dev_begin, v->dev_end, device) : NULL;
    return x ? gw_strdup_printf("%.*s", (int)x->len, x->name) : NULL;
}
