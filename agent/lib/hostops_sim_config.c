/* SPDX-License-Identifier: Apache-2.0 */
/* Config space writes in the simulated backend: they land in the overlay's
 * copy of the device's config (taken from the tree at the first write), byte
 * by byte with the register semantics the clean-up depends on. The error
 * status registers are write-1-to-clear, as the PCI and PCIe specs define
 * them (and QEMU models them, as the lab shows): writing back the bits read
 * clears exactly those bits, and a 0 bit leaves its bit alone:
 *   - PCI Status (0x06): bits 8, 11-15; the other bits read-only;
 *   - PCIe Device Status (capability + 0x0a): bits 0-3; others read-only;
 *   - AER Uncorrectable (+0x04) and Correctable (+0x10) Error Status: all;
 *   - AER Root Error Status (+0x30) of a root port or event collector:
 *     bits 0-6; the interrupt message number read-only.
 * Every other byte takes the written value (no read-only or reserved bits
 * modelled: the clean-up writes nothing else). */
#include <string.h>

#include "hostops_sim_internal.h"

typedef struct w1c_reg {
    unsigned off, size;
    uint32_t w1c;
} w1c_reg;

static unsigned rd16(const uint8_t *c, unsigned off)
{
    return (unsigned)c[off] | (unsigned)c[off + 1] << 8;
}

static uint32_t rd32(const uint8_t *c, unsigned off)
{
    return (uint32_t)rd16(c, off) | (uint32_t)rd16(c, off + 2) << 16;
}

/* The PCIe capability's offset in `c` (len bytes), 0 when none. */
static unsigned find_exp(const uint8_t *c, size_t len)
{
    if (len < 0x40 || !(rd16(c, 0x06) & 0x10))
        return 0;
    unsigned ptr = c[0x34];
    for (int hops = 0; ptr >= 0x40 && ptr + 2 <= len && hops < 48; hops++) {
        ptr &= 0xfc;
        if (c[ptr] == 0x10)
            return ptr;
        ptr = c[ptr + 1];
    }
    return 0;
}

/* The AER extended capability's offset, 0 when none (or only 256 bytes). */
static unsigned find_aer(const uint8_t *c, size_t len)
{
    unsigned pos = 0x100;
    for (int hops = 0; pos >= 0x100 && pos + 4 <= len && hops < 480; hops++) {
        uint32_t hdr = rd32(c, pos);
        if (hdr == 0 || hdr == 0xffffffff)
            return 0;
        if ((hdr & 0xffff) == 0x0001)
            return pos;
        pos = (hdr >> 20) & 0xffc;
    }
    return 0;
}

/* The write-1-to-clear registers of this config space. */
static size_t w1c_regs(const uint8_t *c, size_t len, w1c_reg regs[5])
{
    size_t n = 0;
    regs[n++] = (w1c_reg){ 0x06, 2, 0xf900 };
    unsigned exp = find_exp(c, len), aer = find_aer(c, len);
    if (exp)
        regs[n++] = (w1c_reg){ exp + 0x0a, 2, 0x000f };
    if (aer) {
        regs[n++] = (w1c_reg){ aer + 0x04, 4, 0xffffffff };
        regs[n++] = (w1c_reg){ aer + 0x10, 4, 0xffffffff };
        unsigned type = exp ? (rd16(c, exp + 2) >> 4) & 0xf : 0;
        if (type == 4 || type == 10)    /* root port, root complex event collector */
            regs[n++] = (w1c_reg){ aer + 0x30, 4, 0x0000007f };
    }
    return n;
}

/* One byte written at `pos`. */
static uint8_t byte_after(const w1c_reg *regs, size_t n, unsigned pos, uint8_t old, uint8_t written)
{
    for (size_t i = 0; i < n; i++) {
        if (pos < regs[i].off || pos >= regs[i].off + regs[i].size)
            continue;
        uint8_t mask = (uint8_t)(regs[i].w1c >> (8 * (pos - regs[i].off)));
        return (uint8_t)(old & ~(written & mask));
    }
    return written;
}

int gw_sim_config_write(gw_sim *s, const char *path, unsigned int offset, const void *buf, size_t len)
{
    sim_file *f = gw_sim_file_find(s, path);
    if (!f) {
        _cleanup_free_ char *cfg = NULL;
        size_t n = 0;
        /* More than 4096 allowed: a read of exactly `max` bytes cannot tell
         * the file's end from a longer file. */
        int r = gw_hostops_read(s->base, path, 8192, &cfg, &n);
        if (r < 0)
            return r;
        if (n > 4096)
            return gw_error_set(-EIO, "sim: %s: %zu bytes, more than config space has", path, n);
        gw_sim_file_set(s, path, cfg, n);
        f = gw_sim_file_find(s, path);
    }
    if (offset > f->len || len > f->len - offset)
        return gw_error_set(-EIO, "sim: %s: cannot write %zu bytes at 0x%x (%zu bytes of config)", path, len,
                            offset, f->len);
    /* The registers as they are before this write: a write cannot move a
     * capability it does not touch, and the clean-up never writes one. */
    uint8_t *c = (uint8_t *)f->data;
    w1c_reg regs[5];
    size_t n = w1c_regs(c, f->len, regs);
    const uint8_t *w = buf;
    for (size_t i = 0; i < len; i++)
        c[offset + i] = byte_after(regs, n, offset + (unsigned)i, c[offset + i], w[i]);
    return 0;
}
