/* SPDX-License-Identifier: Apache-2.0 */
/* Step health, after the reset, from live config space (never from what
 * sysfs cached at enumeration, which no reset changes):
 *   - vendor/device not all-ones and the same as before the reset;
 *   - the error registers (sanitize_health_errors.c): PCI Status, Device
 *     Status and AER status of the GPU judged and then cleared, the ports
 *     above recorded, the kernel's AER counters against the pins;
 *   - link width (LnkSta) not below the smaller of both ends' maximum
 *     (LnkCap) nor below the width pinned at the first clean-up; a lower
 *     link *speed* is only evidence: idle GPUs train down to 2.5 GT/s;
 *   - BAR registers still hold the addresses the kernel assigned (sysfs
 *     `resource`): a function that came back from the reset without its
 *     restored BARs decodes nothing a VM could use;
 *   - BAR0 read through VFIO is not all-ones; on NVIDIA its first dword
 *     (the boot id) is the one pinned at the first clean-up. */
#include <string.h>

#include "sanitize_health.h"

#define PIN_LINK_WIDTH "sanitize.link_width"

void gw_health_problem(gw_health *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg;
    if (vasprintf(&msg, fmt, ap) >= 0) {
        gw_note(h->c, "%s", msg);
        free(msg);
    }
    va_end(ap);
    h->failures++;
}

static bool check_config(gw_health *h)
{
    gw_sctx *c = h->c;
    uint32_t id;
    if (gw_dev_config32(c->ops, c->address, 0, &id) < 0) {
        gw_health_problem(h, "config space unreadable after reset: %s", gw_error_message());
        return false;
    }
    if (id == 0xffffffff) {
        gw_health_problem(h, "config space reads all-ones after reset: the device is off the bus");
        return false;
    }
    if (c->id_known && id != c->id_before) {
        gw_health_problem(h, "vendor/device changed across the reset: %04x:%04x -> %04x:%04x",
                          c->id_before & 0xffff, c->id_before >> 16, id & 0xffff, id >> 16);
        return false;
    }
    gw_note(c, "config readable (%04x:%04x)", id & 0xffff, id >> 16);
    return true;
}

/* ---- link ------------------------------------------------------------- */

typedef struct link_regs {
    unsigned type;              /* device/port type of the PCIe capability */
    int width, max_width;       /* LnkSta negotiated, LnkCap maximum */
    unsigned speed, max_speed;  /* speed codes: 1 = 2.5 GT/s ... 6 = 64 GT/s */
} link_regs;

/* The live link registers of `addr`: 0, -ENOENT without a PCIe capability. */
static int read_link(gw_hostops *ops, const char *addr, link_regs *out)
{
    int exp = gw_dev_find_cap(ops, addr, GW_PCI_CAP_EXP);
    if (exp <= 0)
        return exp < 0 ? exp : gw_error_set(-ENOENT, "%s: no PCIe capability", addr);
    unsigned e = (unsigned)exp;
    uint16_t flags, lnksta;
    uint32_t lnkcap, lnkcap2 = 0;
    int r;
    if ((r = gw_dev_config16(ops, addr, e + 0x02, &flags)) < 0 ||
        (r = gw_dev_config32(ops, addr, e + 0x0c, &lnkcap)) < 0 ||
        (r = gw_dev_config16(ops, addr, e + 0x12, &lnksta)) < 0)
        return r;
    /* As the kernel's pcie_get_speed_cap(): the Supported Link Speeds vector
     * of LnkCap2 (capability version 2) when it has one, else LnkCap. */
    if ((flags & 0xf) >= 2 && (r = gw_dev_config32(ops, addr, e + 0x2c, &lnkcap2)) < 0)
        return r;
    unsigned vec = (lnkcap2 >> 1) & 0x7f, top = 0;
    for (unsigned b = 0; b < 7; b++)
        if (vec & (1u << b))
            top = b + 1;
    *out = (link_regs){ (flags >> 4) & 0xfu, (lnksta >> 4) & 0x3f, (int)((lnkcap >> 4) & 0x3f), lnksta & 0xfu,
                        top ? top : lnkcap & 0xfu };
    return 0;
}

static double gts(unsigned code)
{
    static const double v[] = { 0, 2.5, 5.0, 8.0, 16.0, 32.0, 64.0 };
    return code < sizeof v / sizeof v[0] ? v[code] : 0;
}

/* The width both ends can reach: the smaller maximum; *pmax the partner's
 * (0 when unknown). */
static int reachable_width(gw_sctx *c, const char *partner, int max, int *pmax)
{
    link_regs p;
    *pmax = 0;
    if (partner && read_link(c->ops, partner, &p) == 0 && p.max_width > 0 && p.max_width <= 32)
        *pmax = p.max_width;
    return *pmax && *pmax < max ? *pmax : max;
}

/* Narrower than the first clean-up saw: fails; the first passing one pins. */
static bool check_width_pin(gw_health *h, int cur, bool ok)
{
    gw_sctx *c = h->c;
    const char *pin = gw_pin_get(c, PIN_LINK_WIDTH);
    if (pin) {
        long first = strtol(pin, NULL, 10);
        if (cur < first) {
            gw_health_problem(h, "link width x%d below x%ld recorded at the first clean-up", cur, first);
            return false;
        }
    } else if (ok) {
        char buf[24];
        snprintf(buf, sizeof buf, "%d", cur);
        gw_pin_set(c, PIN_LINK_WIDTH, buf);
        gw_note(c, "link width x%d pinned", cur);
    }
    return ok;
}

static void check_link(gw_health *h, const gw_addrlist *up)
{
    gw_sctx *c = h->c;
    link_regs l;
    int r = read_link(c->ops, c->address, &l);
    if (r < 0) {
        gw_note(c, "link registers unreadable (%s): link not checked", gw_error_message());
        return;
    }
    /* An integrated endpoint (or event collector) has no link at all. */
    if (l.type == 9 || l.type == 10) {
        gw_note(c, "no PCIe link (root complex integrated): link not checked");
        return;
    }
    /* 0 where the registers say nothing (a link that is down reads 0 too,
     * but then config space would not answer). */
    if (l.width <= 0 || l.max_width <= 0 || l.max_width > 32) {
        gw_note(c, "link width unknown (LnkSta x%d, LnkCap x%d): not checked", l.width, l.max_width);
        return;
    }
    const char *partner = up->n ? up->v[0] : NULL;
    int pmax;
    int reach = reachable_width(c, partner, l.max_width, &pmax);
    bool ok = true;
    if (l.width < reach) {
        if (pmax)
            gw_health_problem(h, "link width x%d below x%d, the smaller of both ends' maximum (GPU x%d, %s x%d)",
                              l.width, reach, l.max_width, partner, pmax);
        else
            gw_health_problem(h, "link width x%d below the GPU's maximum x%d", l.width, reach);
        ok = false;
    }
    if (check_width_pin(h, l.width, ok))
        gw_note(c, "link x%d (can reach x%d), from LnkSta/LnkCap", l.width, reach);
    double sp = gts(l.speed), msp = gts(l.max_speed);
    if (sp > 0 && msp > 0 && sp + 0.05 < msp)
        gw_note(c, "link at %.1f GT/s of %.1f GT/s: a lower speed is normal for an idle GPU, not a fault", sp, msp);
    else if (sp > 0)
        gw_note(c, "link at %.1f GT/s", sp);
}

/* ---- BARs ------------------------------------------------------------- */

/* BAR i's address as its register holds it; *span 2 for a 64-bit BAR. */
static int bar_address(gw_hostops *ops, const char *addr, int i, uint64_t *out, uint32_t *raw, int *span)
{
    uint32_t lo, hi = 0;
    int r = gw_dev_config32(ops, addr, 0x10 + 4 * (unsigned)i, &lo);
    if (r < 0)
        return r;
    bool io = lo & 0x1, mem64 = !io && ((lo >> 1) & 0x3) == 2 && i < 5;
    if (mem64 && (r = gw_dev_config32(ops, addr, 0x14 + 4 * (unsigned)i, &hi)) < 0)
        return r;
    *raw = lo;
    *span = mem64 ? 2 : 1;
    *out = (io ? lo & ~0x3u : lo & ~0xfu) | (uint64_t)hi << 32;
    return 0;
}

/* One BAR the kernel assigned: 1 when its register still holds it. The
 * comparison takes bus address = CPU address, as on x86 without VMD. */
static int check_bar(gw_health *h, int i, const gw_dev_resource *res, uint64_t reg, uint32_t raw)
{
    if (reg == 0) {
        gw_health_problem(h, "BAR%d lost its address: the register reads 0x%08x, the kernel assigned 0x%llx", i,
                          raw, (unsigned long long)res->start);
        return 0;
    }
    if (reg != res->start) {
        gw_health_problem(h, "BAR%d holds 0x%llx, the kernel assigned 0x%llx", i, (unsigned long long)reg,
                          (unsigned long long)res->start);
        return 0;
    }
    return 1;
}

/* A BAR the device implements but the kernel gave no address: measured in
 * the lab, a display device hot-plugged under a port whose window is too
 * small ("BAR 0 [mem size 0x01000000 pref]: can't assign; no space"). sysfs
 * then shows the BAR as all zeros, as if absent, but the register holds no
 * address while its type bits (I/O, 64-bit or prefetchable) say it is there. A VM would get
 * a GPU without its memory BAR. (A 32-bit non-prefetchable memory BAR reads
 * 0 either way and cannot be told apart without sizing, which would write.) */
static bool unassigned_bar(gw_health *h, int i, uint32_t raw)
{
    if (!(raw & 0x1) && !(raw & 0xe))
        return false;
    gw_health_problem(h, "BAR%d is implemented (register 0x%08x: %s) but the kernel assigned it no address "
                      "(no room in the bridge window? see the kernel log)", i, raw,
                      raw & 0x1 ? "I/O" : (raw & 0x8) ? "prefetchable memory" : "64-bit memory");
    return true;
}

static void check_bars(gw_health *h)
{
    gw_sctx *c = h->c;
    gw_dev_resource res[7];
    if (gw_dev_resources(c->ops, c->address, res) < 0) {
        gw_health_problem(h, "BAR assignments unreadable: %s", gw_error_message());
        return;
    }
    gw_strbuf held = { 0 };
    int bad = 0;
    for (int i = 0, span = 1; i < 6; i += span) {
        uint64_t reg;
        uint32_t raw;
        if (bar_address(c->ops, c->address, i, &reg, &raw, &span) < 0) {
            gw_health_problem(h, "BAR%d register unreadable: %s", i, gw_error_message());
            bad++;
            break;
        }
        if (!res[i].start || (res[i].flags & GW_IORESOURCE_UNSET) || res[i].end < res[i].start) {
            if (!reg && unassigned_bar(h, i, raw))
                bad++;
            continue;   /* nothing assigned, nothing to hold */
        }
        if (check_bar(h, i, &res[i], reg, raw))
            gw_strbuf_append(&held, "%sBAR%d 0x%llx", held.len ? ", " : "", i, (unsigned long long)reg);
        else
            bad++;
    }
    if (!bad && held.len)
        gw_note(c, "BAR registers hold the addresses the kernel assigned (%s)", gw_strbuf_str(&held));
    else if (!bad)
        gw_note(c, "no BAR assigned: BAR registers not compared");
    gw_strbuf_clear(&held);
}

/* ---- BAR0 through VFIO -------------------------------------------------- */

#define PIN_BOOT_ID "sanitize.bar0_boot_id"
#define VENDOR_NVIDIA 0x10de

/* What BAR0's first dword says, judged: all-ones means the chip behind the
 * config space does not answer memory reads (config space can still answer
 * for a wedged GPU). On NVIDIA, BAR0 offset 0 is NV_PMC_BOOT_0, the chip's
 * id: pinned at the first clean-up and compared after. */
static void judge_bar0(gw_health *h, uint32_t v)
{
    gw_sctx *c = h->c;
    if (v == 0xffffffff) {
        gw_health_problem(h, "BAR0 reads all-ones through VFIO: the device does not answer memory reads");
        return;
    }
    uint16_t vendor = 0;
    if (gw_dev_config16(c->ops, c->address, 0, &vendor) < 0 || vendor != VENDOR_NVIDIA) {
        gw_note(c, "BAR0[0] 0x%08x through VFIO", v);
        return;
    }
    char now[16];
    snprintf(now, sizeof now, "0x%08x", v);
    const char *pin = gw_pin_get(c, PIN_BOOT_ID);
    if (!pin) {
        gw_pin_set(c, PIN_BOOT_ID, now);
        gw_note(c, "BAR0 boot id (NV_PMC_BOOT_0) %s pinned at the first clean-up", now);
    } else if (strcmp(pin, now)) {
        gw_health_problem(h, "BAR0 boot id (NV_PMC_BOOT_0) %s differs from %s at the first clean-up", now, pin);
    } else {
        gw_note(c, "BAR0 boot id (NV_PMC_BOOT_0) %s as at the first clean-up", now);
    }
}

static void read_bar0(gw_health *h, void *held)
{
    gw_sctx *c = h->c;
    void *dev;
    int r = gw_hostops_vfio_open(c->ops, held, c->address, &dev);
    if (r == -EPERM) {
        /* The group is not viable: a member is on a host driver. That is
         * the isolation step's verdict to give, with its evidence. */
        gw_note(c, "BAR0 not read: %s (the isolation step judges the group)", gw_error_message());
        return;
    }
    if (r == -ENOTTY || r == -EOPNOTSUPP || r == -ENOENT) {
        gw_note(c, "BAR0 not read: no VFIO here (%s)", gw_error_message());
        return;
    }
    if (r < 0) {
        gw_health_problem(h, "BAR0 not read: cannot open %s through VFIO: %s", c->address, gw_error_message());
        return;
    }
    gw_vfio_region bar0;
    uint32_t v;
    if (gw_hostops_vfio_region(c->ops, dev, 0, &bar0) < 0)
        gw_health_problem(h, "BAR0 region unknown through VFIO: %s", gw_error_message());
    else if (bar0.size < sizeof v)
        gw_note(c, "no BAR0 (VFIO region 0 is empty): nothing to read");
    else if (gw_hostops_vfio_read(c->ops, dev, 0, 0, &v, sizeof v) < 0)
        gw_health_problem(h, "BAR0 read through VFIO failed: %s", gw_error_message());
    else
        judge_bar0(h, v);
    gw_hostops_vfio_close(c->ops, dev);
}

/* A live read of BAR0 through VFIO, the way a VM would see the device:
 * opening it through VFIO also wakes it (vfio-pci takes a runtime PM
 * reference while it is open), so this is never a read of a D3hot device.
 * The group is held for the read, as for the reset. Without a group node
 * (a test tree, no VFIO) it is noted, not judged. */
static void check_bar0(gw_health *h)
{
    gw_sctx *c = h->c;
    gw_addrlist fns = { 0 };
    gw_addrlist_add(&fns, c->address);
    _cleanup_free_ char *group = NULL;
    gw_group_holds holds;
    gw_verdict v = gw_hold_groups(c, &fns, "the BAR0 read", &holds);
    gw_addrlist_clear(&fns);
    void *held = NULL;
    if (v == GW_VERDICT_PASS)
        (void)gw_group_held_for(c, &holds, c->address, &group, &held);    /* no group: not held */
    if (v != GW_VERDICT_PASS)
        h->failures++;      /* gw_hold_groups said why */
    else if (!held)
        gw_note(c, "BAR0 not read: no VFIO group node for %s", c->address);
    else
        read_bar0(h, held);
    gw_release_groups(c, &holds);
}

static gw_verdict run(gw_sctx *c)
{
    gw_health h = { .c = c };
    if (!check_config(&h))
        return GW_VERDICT_FAIL;
    gw_addrlist up = { 0 };
    if (gw_dev_upstream(c->ops, c->address, &up) < 0)
        gw_note(c, "upstream port unknown (%s): link partner not checked", gw_error_message());
    gw_health_errors(&h, &up);
    check_link(&h, &up);
    check_bars(&h);
    check_bar0(&h);
    gw_addrlist_clear(&up);
    return h.failures ? GW_VERDICT_FAIL : GW_VERDICT_PASS;
}

const gw_step_def gw_step_health = { GW_STEP_HEALTH, "health", run };
