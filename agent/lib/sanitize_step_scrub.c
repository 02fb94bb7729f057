/* SPDX-License-Identifier: Apache-2.0 */
/* Step scrub: clear the memory a tenant leaves in the device, where the GPU's
 * model says it is (gw_model_policy: a BAR of one of the slot's functions).
 * Neither FLR nor a bus reset clears a GPU's memory, so the next tenant could
 * read the last one's data; this step writes zeros over the whole BAR
 * through VFIO and then reads it back. The verdict comes from the read-back,
 * never from the writes having returned: a byte that is not zero afterwards
 * (an engine still writing, a BAR that does not map what we think) fails the
 * step with its offset, and a BAR that cannot be read back fails it too.
 *
 * The device is opened through the group node held for the step (the same
 * exclusive open that keeps VMs out during the reset), zeroed through a
 * mapping when the kernel allows one (one store per 8 bytes instead of a
 * system call per chunk), else with pwrite, and verified through a fresh
 * mapping or pread: every byte, or an even spread of pages when the model
 * sets a verify fraction below 1. */
#include <string.h>
#include <time.h>

#include "sanitize_internal.h"

#define PAGE 4096u
#define CHUNK ((size_t)1 << 20)     /* pwrite/pread size, and how often abandonment is checked */

typedef struct scrub {
    gw_sctx *c;
    const gw_model_policy *m;
    char fn[GW_ADDR_LEN];           /* the function whose BAR is scrubbed */
    void *dev;
    gw_vfio_region region;
    bool mapped_zero;               /* zeroed through a mapping */
} scrub;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double mb_per_s(uint64_t bytes, uint64_t ns)
{
    return ns ? (double)bytes * 1000.0 / (double)ns : 0.0;
}

/* ---- zeroing ------------------------------------------------------------- */

/* 8-byte stores through the mapping: the widest a BAR takes as one access
 * everywhere, and volatile so that they happen, in order, once each. */
static int zero_mapped(scrub *s, volatile uint8_t *p)
{
    uint64_t size = s->region.size;
    for (uint64_t off = 0; off < size; off += CHUNK) {
        if (gw_sctx_abandoned(s->c))
            return gw_error_set(-ECANCELED, "run abandoned after a timeout: zeroing stopped at 0x%llx",
                                (unsigned long long)off);
        uint64_t end = off + CHUNK < size ? off + CHUNK : size;
        uint64_t i = off;
        for (; i + 8 <= end; i += 8)
            *(volatile uint64_t *)(p + i) = 0;
        for (; i < end; i++)
            p[i] = 0;
    }
    return 0;
}

static int zero_written(scrub *s)
{
    _cleanup_free_ void *zeros = gw_xcalloc(1, CHUNK);
    uint64_t size = s->region.size;
    for (uint64_t off = 0; off < size; off += CHUNK) {
        if (gw_sctx_abandoned(s->c))
            return gw_error_set(-ECANCELED, "run abandoned after a timeout: zeroing stopped at 0x%llx",
                                (unsigned long long)off);
        size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
        int r = gw_hostops_vfio_write(s->c->ops, s->dev, s->m->scrub_bar, off, zeros, n);
        if (r < 0)
            return r;
    }
    return 0;
}

static int zero_bar(scrub *s)
{
    gw_sctx *c = s->c;
    if (s->region.flags & GW_VFIO_REGION_MMAP) {
        void *p = NULL;
        if (gw_hostops_vfio_map(c->ops, s->dev, s->m->scrub_bar, &p) == 0) {
            int r = zero_mapped(s, p);
            gw_hostops_vfio_unmap(c->ops, s->dev, s->m->scrub_bar, p);
            s->mapped_zero = true;
            return r;
        }
        gw_note(c, "mapping refused (%s): zeroing with pwrite", gw_error_message());
    }
    if (!(s->region.flags & GW_VFIO_REGION_WRITE))
        return gw_error_set(-EACCES, "BAR %u of %s can be neither mapped nor written", s->m->scrub_bar, s->fn);
    return zero_written(s);
}

/* ---- verification ------------------------------------------------------ */

/* The pages to read back: all of them, or k spread evenly from the first to
 * the last (deterministic, so two runs check the same pages). */
static uint64_t pages_to_check(uint64_t pages, double f)
{
    if (f >= 1.0 || pages <= 2)
        return pages;
    uint64_t k = (uint64_t)((double)pages * f + 0.999999);
    return k < 2 ? 2 : k > pages ? pages : k;
}

static uint64_t nth_page(uint64_t j, uint64_t k, uint64_t pages)
{
    return k == pages ? j : j * (pages - 1) / (k - 1);
}

/* First non-zero byte in [off, off+len) of a mapping, or -1. */
static int64_t first_nonzero_mapped(const volatile uint8_t *p, uint64_t off, uint64_t len)
{
    uint64_t i = off, end = off + len;
    for (; i + 8 <= end; i += 8) {
        if (*(const volatile uint64_t *)(p + i) == 0)
            continue;
        for (uint64_t b = i; b < i + 8; b++)
            if (p[b])
                return (int64_t)b;
    }
    for (; i < end; i++)
        if (p[i])
            return (int64_t)i;
    return -1;
}

typedef struct reader {
    scrub *s;
    const volatile uint8_t *map;    /* NULL: pread */
    uint8_t *buf;
    uint8_t bad_value;              /* what the first non-zero byte read */
} reader;

/* Check [off, off+len) (len <= CHUNK): 1 and *bad when a byte is not zero. */
static int check_range(reader *rd, uint64_t off, uint64_t len, int64_t *bad)
{
    if (rd->map) {
        *bad = first_nonzero_mapped(rd->map, off, len);
        if (*bad >= 0)
            rd->bad_value = rd->map[*bad];
        return *bad >= 0;
    }
    int r = gw_hostops_vfio_read(rd->s->c->ops, rd->s->dev, rd->s->m->scrub_bar, off, rd->buf, (size_t)len);
    if (r < 0)
        return r;
    for (uint64_t i = 0; i < len; i++) {
        if (rd->buf[i]) {
            *bad = (int64_t)(off + i);
            rd->bad_value = rd->buf[i];
            return 1;
        }
    }
    return 0;
}

/* Walk the chosen pages in runs of up to CHUNK. *checked counts bytes read. */
static int check_pages(reader *rd, uint64_t *checked, int64_t *bad)
{
    uint64_t size = rd->s->region.size, pages = (size + PAGE - 1) / PAGE;
    uint64_t k = pages_to_check(pages, rd->s->m->scrub_verify_fraction);
    *checked = 0;
    for (uint64_t j = 0; j < k;) {
        /* Consecutive chosen pages are read as one range. */
        uint64_t first = nth_page(j, k, pages), last = first;
        while (j + 1 < k && nth_page(j + 1, k, pages) == last + 1 && (last + 2 - first) * PAGE <= CHUNK)
            last = nth_page(++j, k, pages);
        j++;
        uint64_t off = first * PAGE, end = (last + 1) * PAGE < size ? (last + 1) * PAGE : size;
        int r = check_range(rd, off, end - off, bad);
        if (r != 0)
            return r;
        *checked += end - off;
    }
    return 0;
}

/* What the read-back found. */
typedef struct verdict_bytes {
    uint64_t checked;               /* bytes read */
    int64_t bad;                    /* offset of the first non-zero byte, -1 */
    uint8_t value;                  /* and what it read */
    const char *how;                /* "mmap" or "pread" */
} verdict_bytes;

/* Read back through a fresh mapping (what any later user of the BAR sees)
 * or pread. Returns 0 all zero, 1 with a bad byte, < 0 when it could not
 * read. */
static int verify_bar(scrub *s, verdict_bytes *vb)
{
    gw_sctx *c = s->c;
    reader rd = { s, NULL, NULL, 0 };
    void *p = NULL;
    if ((s->region.flags & GW_VFIO_REGION_MMAP) && gw_hostops_vfio_map(c->ops, s->dev, s->m->scrub_bar, &p) == 0) {
        rd.map = p;
        vb->how = "mmap";
    } else if (s->region.flags & GW_VFIO_REGION_READ) {
        rd.buf = gw_xcalloc(1, CHUNK);
        vb->how = "pread";
    } else {
        return gw_error_set(-EACCES, "BAR %u of %s can be neither mapped nor read", s->m->scrub_bar, s->fn);
    }
    int r = check_pages(&rd, &vb->checked, &vb->bad);
    vb->value = rd.bad_value;
    if (p)
        gw_hostops_vfio_unmap(c->ops, s->dev, s->m->scrub_bar, p);
    free(rd.buf);
    return r;
}

/* ---- the step ------------------------------------------------------------ */

static gw_verdict zero_and_verify(scrub *s)
{
    gw_sctx *c = s->c;
    unsigned bar = s->m->scrub_bar;
    if (gw_hostops_vfio_region(c->ops, s->dev, bar, &s->region) < 0)
        return gw_fail(c, "BAR %u of %s: %s: not scrubbed", bar, s->fn, gw_error_message());
    if (!s->region.size)
        return gw_fail(c, "BAR %u of %s is not implemented (size 0): nothing to scrub where the model says the "
                       "memory is", bar, s->fn);
    uint64_t size = s->region.size, t0 = mono_ns();
    if (zero_bar(s) < 0)
        return gw_fail(c, "zeroing BAR %u of %s failed: %s", bar, s->fn, gw_error_message());
    uint64_t t1 = mono_ns();
    gw_note(c, "zeroed BAR %u of %s (%llu bytes, %s) in %.1f ms: %.1f MB/s", bar, s->fn, (unsigned long long)size,
            s->mapped_zero ? "mmap" : "pwrite", (double)(t1 - t0) / 1e6, mb_per_s(size, t1 - t0));
    verdict_bytes vb = { 0, -1, 0, "" };
    int r = verify_bar(s, &vb);
    uint64_t t2 = mono_ns();
    if (r < 0)
        return gw_fail(c, "cannot read BAR %u of %s back (%s): the scrub is not verified", bar, s->fn,
                       gw_error_message());
    if (r > 0)
        return gw_fail(c, "byte at offset 0x%llx of BAR %u of %s is not zero after the scrub (reads 0x%02x): "
                       "memory not cleared", (unsigned long long)vb.bad, bar, s->fn, vb.value);
    double f = s->m->scrub_verify_fraction;
    gw_note(c, "read back %llu bytes (%s, %s) in %.1f ms: %.1f MB/s: all zero", (unsigned long long)vb.checked,
            f >= 1.0 ? "every byte" : "an even spread of pages", vb.how, (double)(t2 - t1) / 1e6,
            mb_per_s(vb.checked, t2 - t1));
    return GW_VERDICT_PASS;
}

/* Open the function through its held group node, scrub, close. */
static gw_verdict scrub_held(scrub *s, const gw_group_holds *holds)
{
    gw_sctx *c = s->c;
    _cleanup_free_ char *group = NULL;
    void *held;
    if (gw_group_held_for(c, holds, s->fn, &group, &held) < 0)
        return gw_fail(c, "%s has no IOMMU group (%s): no VFIO access, not scrubbed", s->fn, gw_error_message());
    if (!held)
        return gw_fail(c, "/dev/vfio/%s is not held: no VFIO access to %s, not scrubbed", group, s->fn);
    if (gw_sctx_abandoned(c))
        return gw_fail(c, "run abandoned: not scrubbed");
    if (gw_hostops_vfio_open(c->ops, held, s->fn, &s->dev) < 0)
        return gw_fail(c, "cannot open %s through VFIO: %s: not scrubbed", s->fn, gw_error_message());
    gw_verdict v = zero_and_verify(s);
    gw_hostops_vfio_close(c->ops, s->dev);
    s->dev = NULL;
    return v;
}

/* The function holding the memory: the GPU's own, or another of its slot. */
static gw_verdict pick_function(scrub *s)
{
    gw_sctx *c = s->c;
    if (s->m->scrub_function < 0)
        snprintf(s->fn, sizeof s->fn, "%s", c->address);
    else
        snprintf(s->fn, sizeof s->fn, "%.10s.%c", c->address, '0' + (s->m->scrub_function & 7));
    _cleanup_free_ char *dir = gw_dev_path(s->fn, NULL);
    if (gw_hostops_exists(c->ops, dir) < 0)
        return gw_fail(c, "model %s: scrub function %s does not exist: not scrubbed", s->m->id, s->fn);
    _cleanup_free_ char *why = NULL;
    if (gw_dev_managed(c->ops, &c->policy->pol, s->fn, &why) <= 0)
        return gw_fail(c, "%s: the scrub writes only to managed functions: not scrubbed",
                       why ? why : gw_error_message());
    return GW_VERDICT_PASS;
}

static gw_verdict scrub_model(gw_sctx *c, const gw_model_policy *m)
{
    scrub s = { .c = c, .m = m };
    if (pick_function(&s) != GW_VERDICT_PASS)
        return GW_VERDICT_FAIL;
    gw_note(c, "model %s: scrub bar: BAR %u of %s, verify fraction %g", m->id, m->scrub_bar, s.fn,
            m->scrub_verify_fraction);
    gw_addrlist fns = { 0 }, bridges = { 0 };
    _cleanup_free_ char *group = NULL;
    gw_verdict v;
    if (gw_dev_targets(c->ops, c->address, &fns, &bridges, &group) < 0) {
        v = gw_fail(c, "cannot list the device's functions: %s: not scrubbed", gw_error_message());
    } else if (gw_check_not_in_use(c, &fns) != GW_VERDICT_PASS) {
        v = gw_fail(c, "not scrubbed");
    } else {
        gw_group_holds holds;
        v = gw_hold_groups(c, &fns, "the scrub", &holds);
        v = v == GW_VERDICT_PASS ? scrub_held(&s, &holds) : gw_fail(c, "not scrubbed");
        gw_release_groups(c, &holds);
    }
    gw_addrlist_clear(&fns);
    gw_addrlist_clear(&bridges);
    return v;
}

static gw_verdict run(gw_sctx *c)
{
    uint32_t id;
    if (gw_dev_config32(c->ops, c->address, 0, &id) < 0)
        return gw_fail(c, "config unreadable (%s): the model, and so its scrub, is unknown", gw_error_message());
    const gw_model_policy *m = gw_policy_model(&c->policy->pol, id & 0xffff, id >> 16);
    if (!m || m->scrub == GW_SCRUB_NONE)
        return gw_skip(c, "no scrub configured for %04x:%04x", id & 0xffff, id >> 16);
    if (m->scrub == GW_SCRUB_DRIVER)
        return gw_scrub_driver(c, m);
    if (m->scrub != GW_SCRUB_BAR)
        return gw_fail(c, "model %s: scrub method %s is not implemented: not scrubbed", m->id,
                       gw_scrub_method_name(m->scrub));
    return scrub_model(c, m);
}

const gw_step_def gw_step_scrub = { GW_STEP_SCRUB, "scrub", run };
