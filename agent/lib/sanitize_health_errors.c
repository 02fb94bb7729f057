/* SPDX-License-Identifier: Apache-2.0 */
/* Health, the error registers: what the device itself recorded, read live
 * from config space, so that a check can fail on a host where nothing else
 * would tell (firmware-first AER: the kernel's aer_dev_* counters stay 0).
 *
 * The GPU's registers are judged and then cleared (they are
 * write-1-to-clear: writing back the bits read clears exactly those), so the
 * next clean-up starts from zero and judges only what happened since:
 *   - PCI Status: any of the six error bits fails;
 *   - PCIe Device Status: Fatal or Non-Fatal Error Detected fails;
 *     Correctable and Unsupported Request Detected are noted only (healthy
 *     GPU audio functions and switch ports show both: an Unsupported
 *     Request handled as an advisory non-fatal error sets them);
 *   - AER Uncorrectable Error Status: any bit fails, masked or not (a mask
 *     only stops the report, the device still saw the error); Correctable
 *     Error Status is noted only: the link corrected it.
 * The upstream port's and the root port's registers are recorded, not
 * judged: the clean-up may not write to a port it does not manage, so their
 * bits could be older than this tenancy and would fail every clean-up after.
 * The kernel's cumulative counters (aer_dev_*) stay an additional source,
 * judged against the pins, for the GPU and its link partner. */
#include <string.h>

#include "sanitize_health.h"

#define STATUS_ERRORS 0xf900u       /* PCI Status bits 8, 11-15 */
#define DEVSTA_ERRORS 0x000fu       /* PCIe Device Status bits 0-3 */
#define DEVSTA_UNCORRECTABLE 0x0006u    /* Non-Fatal, Fatal Error Detected */
#define AER_UNCOR_STATUS 0x04
#define AER_UNCOR_MASK 0x08
#define AER_UNCOR_SEVER 0x0c
#define AER_COR_STATUS 0x10
#define AER_ROOT_STATUS 0x30
#define AER_ERROR_SOURCE 0x34
#define ROOT_STATUS_BITS 0x7fu

typedef struct bitname {
    unsigned bit;
    const char *name;
} bitname;

static const bitname status_names[] = {
    { 15, "Detected Parity Error" }, { 14, "Signaled System Error" }, { 13, "Received Master Abort" },
    { 12, "Received Target Abort" }, { 11, "Signaled Target Abort" }, { 8, "Master Data Parity Error" },
};

static const bitname devsta_names[] = {
    { 0, "Correctable Error Detected" }, { 1, "Non-Fatal Error Detected" }, { 2, "Fatal Error Detected" },
    { 3, "Unsupported Request Detected" },
};

static const bitname uncor_names[] = {
    { 4, "Data Link Protocol Error" }, { 5, "Surprise Down Error" }, { 12, "Poisoned TLP" },
    { 13, "Flow Control Protocol Error" }, { 14, "Completion Timeout" }, { 15, "Completer Abort" },
    { 16, "Unexpected Completion" }, { 17, "Receiver Overflow" }, { 18, "Malformed TLP" }, { 19, "ECRC Error" },
    { 20, "Unsupported Request" }, { 21, "ACS Violation" }, { 22, "Uncorrectable Internal Error" },
    { 23, "MC Blocked TLP" }, { 24, "AtomicOp Egress Blocked" }, { 25, "TLP Prefix Blocked" },
    { 26, "Poisoned TLP Egress Blocked" },
};

static const bitname cor_names[] = {
    { 0, "Receiver Error" }, { 6, "Bad TLP" }, { 7, "Bad DLLP" }, { 8, "REPLAY_NUM Rollover" },
    { 12, "Replay Timer Timeout" }, { 13, "Advisory Non-Fatal Error" }, { 14, "Corrected Internal Error" },
    { 15, "Header Log Overflow" },
};

static const bitname root_names[] = {
    { 0, "ERR_COR received" }, { 1, "multiple ERR_COR" }, { 2, "ERR_FATAL/NONFATAL received" },
    { 3, "multiple ERR_FATAL/NONFATAL" }, { 4, "first uncorrectable fatal" },
    { 5, "non-fatal error messages" }, { 6, "fatal error messages" },
};

#define N(t) (sizeof(t) / sizeof((t)[0]))

/* "Poisoned TLP (non-fatal), bit 30" for the set bits of `v`. With `sev`,
 * each uncorrectable error says its severity and whether it is masked. */
static char *bits_text(uint32_t v, const bitname *t, size_t n, const uint32_t *sev, uint32_t masked)
{
    gw_strbuf b = { 0 };
    for (unsigned bit = 0; bit < 32; bit++) {
        if (!(v & (1u << bit)))
            continue;
        const char *name = NULL;
        for (size_t i = 0; i < n && !name; i++)
            if (t[i].bit == bit)
                name = t[i].name;
        gw_strbuf_append(&b, "%s", b.len ? ", " : "");
        if (name)
            gw_strbuf_append(&b, "%s", name);
        else
            gw_strbuf_append(&b, "bit %u", bit);
        if (sev)
            gw_strbuf_append(&b, " (%s%s)", *sev & (1u << bit) ? "fatal" : "non-fatal",
                             masked & (1u << bit) ? ", masked" : "");
    }
    return b.s ? b.s : gw_xstrdup("");
}

/* Clear write-1-to-clear `bits` of a `width`-byte register of `addr` by
 * writing them back. The write, or why it failed, is in the evidence; a
 * failed clear does not fail the step (the next clean-up sees the bits
 * again and judges them then). */
static void clear_bits(gw_health *h, const char *addr, unsigned off, uint32_t bits, size_t width)
{
    uint8_t b[4];
    for (size_t i = 0; i < width; i++)
        b[i] = (uint8_t)(bits >> (8 * i));
    (void)gw_host_write_config(h->c, addr, off, b, width);
}

/* ---- the GPU: judged, then cleared ------------------------------------- */

static void gpu_status(gw_health *h)
{
    const char *a = h->c->address;
    uint16_t st;
    if (gw_dev_config16(h->c->ops, a, 0x06, &st) < 0) {
        gw_health_problem(h, "%s: PCI Status unreadable: %s", a, gw_error_message());
        return;
    }
    uint16_t err = st & STATUS_ERRORS;
    if (!err) {
        gw_note(h->c, "%s: PCI Status 0x%04x: no error bits", a, st);
        return;
    }
    _cleanup_free_ char *text = bits_text(err, status_names, N(status_names), NULL, 0);
    gw_health_problem(h, "%s: PCI Status 0x%04x: %s", a, st, text);
    clear_bits(h, a, 0x06, err, 2);
}

static void gpu_device_status(gw_health *h, unsigned exp)
{
    const char *a = h->c->address;
    uint16_t ds;
    if (gw_dev_config16(h->c->ops, a, exp + 0x0a, &ds) < 0) {
        gw_health_problem(h, "%s: Device Status unreadable: %s", a, gw_error_message());
        return;
    }
    uint16_t bits = ds & DEVSTA_ERRORS;
    if (!bits) {
        gw_note(h->c, "%s: Device Status 0x%04x: no error bits", a, ds);
        return;
    }
    _cleanup_free_ char *text = bits_text(bits, devsta_names, N(devsta_names), NULL, 0);
    if (bits & DEVSTA_UNCORRECTABLE)
        gw_health_problem(h, "%s: Device Status 0x%04x: %s", a, ds, text);
    else
        gw_note(h->c, "%s: Device Status 0x%04x: %s: not a failure (corrected, or an Unsupported Request "
                "handled as advisory)", a, ds, text);
    clear_bits(h, a, exp + 0x0a, bits, 2);
}

static void gpu_aer(gw_health *h)
{
    gw_sctx *c = h->c;
    const char *a = c->address;
    int aer = gw_dev_find_ext_cap(c->ops, a, GW_PCI_EXT_CAP_AER);
    if (aer <= 0) {
        gw_note(c, "%s: %s: no live AER status", a, aer == 0 ? "no AER capability" : gw_error_message());
        return;
    }
    uint32_t ue, mask, sev, ce;
    if (gw_dev_config32(c->ops, a, (unsigned)aer + AER_UNCOR_STATUS, &ue) < 0 ||
        gw_dev_config32(c->ops, a, (unsigned)aer + AER_UNCOR_MASK, &mask) < 0 ||
        gw_dev_config32(c->ops, a, (unsigned)aer + AER_UNCOR_SEVER, &sev) < 0 ||
        gw_dev_config32(c->ops, a, (unsigned)aer + AER_COR_STATUS, &ce) < 0) {
        gw_health_problem(h, "%s: AER registers unreadable: %s", a, gw_error_message());
        return;
    }
    if (!ue && !ce) {
        gw_note(c, "%s: AER status clear (uncorrectable 0x00000000, correctable 0x00000000)", a);
        return;
    }
    if (ue) {
        _cleanup_free_ char *text = bits_text(ue, uncor_names, N(uncor_names), &sev, mask);
        gw_health_problem(h, "%s: AER Uncorrectable Error Status 0x%08x: %s", a, ue, text);
    }
    if (ce) {
        _cleanup_free_ char *text = bits_text(ce, cor_names, N(cor_names), NULL, 0);
        gw_note(c, "%s: AER Correctable Error Status 0x%08x: %s: corrected by the link, not a failure", a, ce,
                text);
    }
    if (ue)
        clear_bits(h, a, (unsigned)aer + AER_UNCOR_STATUS, ue, 4);
    if (ce)
        clear_bits(h, a, (unsigned)aer + AER_COR_STATUS, ce, 4);
}

/* ---- the ports above it: recorded ------------------------------------- */

/* One register of a port for the record: " Device Status 0x0009 (...)". */
static void port_reg(gw_strbuf *b, const char *what, uint32_t v, int digits, uint32_t bits, const bitname *t,
                     size_t n)
{
    gw_strbuf_append(b, "%s%s 0x%0*x", b->len ? ", " : "", what, digits, v);
    if (v & bits) {
        _cleanup_free_ char *text = bits_text(v & bits, t, n, NULL, 0);
        gw_strbuf_append(b, " (%s)", text);
    }
}

/* "ERR_FATAL/NONFATAL from 03:00.0": the requester the root port names. */
static void root_sources(gw_strbuf *b, uint32_t root, uint32_t src)
{
    if (root & 0x1)
        gw_strbuf_append(b, ", ERR_COR from %02x:%02x.%x", (src >> 8) & 0xff, (src >> 3) & 0x1f, src & 0x7);
    if (root & 0x4)
        gw_strbuf_append(b, ", ERR_FATAL/NONFATAL from %02x:%02x.%x", src >> 24, (src >> 19) & 0x1f,
                         (src >> 16) & 0x7);
}

/* The AER part of a port's record; its status bits in *set for the clear. */
static void port_aer(gw_health *h, const char *port, bool root, gw_strbuf *b, uint32_t set[3], int *aer_out)
{
    gw_hostops *ops = h->c->ops;
    int aer = gw_dev_find_ext_cap(ops, port, GW_PCI_EXT_CAP_AER);
    *aer_out = aer;
    if (aer <= 0) {
        gw_strbuf_append(b, "%sno AER", b->len ? ", " : "");
        return;
    }
    uint32_t ue, ce, rs = 0, src = 0;
    if (gw_dev_config32(ops, port, (unsigned)aer + AER_UNCOR_STATUS, &ue) < 0 ||
        gw_dev_config32(ops, port, (unsigned)aer + AER_COR_STATUS, &ce) < 0 ||
        (root && (gw_dev_config32(ops, port, (unsigned)aer + AER_ROOT_STATUS, &rs) < 0 ||
                  gw_dev_config32(ops, port, (unsigned)aer + AER_ERROR_SOURCE, &src) < 0))) {
        gw_strbuf_append(b, "%sAER unreadable (%s)", b->len ? ", " : "", gw_error_message());
        return;
    }
    port_reg(b, "AER uncorrectable", ue, 8, 0xffffffff, uncor_names, N(uncor_names));
    port_reg(b, "correctable", ce, 8, 0xffffffff, cor_names, N(cor_names));
    if (root) {
        port_reg(b, "Root Error Status", rs, 8, ROOT_STATUS_BITS, root_names, N(root_names));
        root_sources(b, rs, src);
    }
    set[0] = ue;
    set[1] = ce;
    set[2] = rs & ROOT_STATUS_BITS;
}

/* Clear a managed port's bits after recording them. */
static void port_clear(gw_health *h, const char *port, int exp, uint16_t ds, int aer, const uint32_t set[3])
{
    if (ds & DEVSTA_ERRORS)
        clear_bits(h, port, (unsigned)exp + 0x0a, ds & DEVSTA_ERRORS, 2);
    static const unsigned off[3] = { AER_UNCOR_STATUS, AER_COR_STATUS, AER_ROOT_STATUS };
    for (int i = 0; i < 3 && aer > 0; i++)
        if (set[i])
            clear_bits(h, port, (unsigned)aer + off[i], set[i], 4);
}

static void port_record(gw_health *h, const char *port, const char *role)
{
    gw_sctx *c = h->c;
    int exp = gw_dev_find_cap(c->ops, port, GW_PCI_CAP_EXP);
    uint16_t ds = 0, flags = 0;
    if (exp <= 0 || gw_dev_config16(c->ops, port, (unsigned)exp + 0x0a, &ds) < 0 ||
        gw_dev_config16(c->ops, port, (unsigned)exp + 0x02, &flags) < 0) {
        gw_note(c, "%s %s: error status unreadable or no PCIe capability: not recorded", role, port);
        return;
    }
    bool root = ((flags >> 4) & 0xf) == 4;
    gw_strbuf b = { 0 };
    port_reg(&b, "Device Status", ds, 4, DEVSTA_ERRORS, devsta_names, N(devsta_names));
    uint32_t set[3] = { 0 };
    int aer = 0;
    port_aer(h, port, root, &b, set, &aer);
    bool any = (ds & DEVSTA_ERRORS) || set[0] || set[1] || set[2];
    const char *who = root ? "root port" : role;
    bool managed = any && gw_dev_managed(c->ops, &c->policy->pol, port, NULL) > 0;
    if (!any && aer > 0)
        gw_note(c, "%s %s: no error status bits (Device Status, AER%s)", who, port, root ? ", Root Error Status" : "");
    else if (!any)
        gw_note(c, "%s %s: %s", who, port, gw_strbuf_str(&b));
    else
        gw_note(c, "%s %s: %s: recorded, not judged%s", who, port, gw_strbuf_str(&b),
                managed ? "" : ", not cleared (not managed)");
    gw_strbuf_clear(&b);
    if (managed)
        port_clear(h, port, exp, ds, aer, set);
}

/* The link partner, and the root port when it is another device. */
static void ports(gw_health *h, const gw_addrlist *up)
{
    if (!up->n)
        return;
    port_record(h, up->v[0], "upstream port");
    if (up->n > 1)
        port_record(h, up->v[up->n - 1], "top port");
}

/* ---- the kernel's counters -------------------------------------------- */

static void aer_counters(gw_health *h, const gw_addrlist *up)
{
    gw_sctx *c = h->c;
    const char *devs[2] = { c->address, up->n ? up->v[0] : NULL };
    /* Pin keys name the role, not the address: the registry's fact keys are
     * [a-z0-9_.-], and a record is one identity at one address anyway. */
    static const char *const roles[2] = { "gpu", "upstream" };
    static const char *const kinds[2] = { "fatal", "nonfatal" };
    for (int d = 0; d < 2 && devs[d]; d++) {
        for (int k = 0; k < 2; k++) {
            long now;
            int r = gw_dev_aer_total(c->ops, devs[d], kinds[k], &now);
            if (r == -ENOENT) {
                if (k == 0)
                    gw_note(c, "%s: no AER counters", devs[d]);
                break;
            }
            if (r < 0) {
                gw_health_problem(h, "%s: AER counters unreadable: %s", devs[d], gw_error_message());
                continue;
            }
            _cleanup_free_ char *key = gw_strdup_printf("sanitize.aer_%s.%s", kinds[k], roles[d]);
            const char *pin = gw_pin_get(c, key);
            if (!pin) {
                gw_note(c, "%s: aer_dev_%s TOTAL %ld, baseline recorded", devs[d], kinds[k], now);
            } else {
                long before = strtol(pin, NULL, 10);
                if (now > before)
                    gw_health_problem(h, "%s: aer_dev_%s TOTAL rose from %ld to %ld since the last clean-up",
                                      devs[d], kinds[k], before, now);
                else if (now < before)
                    gw_note(c, "%s: aer_dev_%s TOTAL %ld below the baseline %ld (host rebooted?): new baseline",
                            devs[d], kinds[k], now, before);
                else
                    gw_note(c, "%s: aer_dev_%s TOTAL %ld unchanged", devs[d], kinds[k], now);
            }
            /* The next clean-up compares with this one, also after a
             * failure the operator has since released. */
            char buf[24];
            snprintf(buf, sizeof buf, "%ld", now);
            gw_pin_set(c, key, buf);
        }
    }
}

void gw_health_errors(gw_health *h, const gw_addrlist *up)
{
    gw_sctx *c = h->c;
    gpu_status(h);
    int exp = gw_dev_find_cap(c->ops, c->address, GW_PCI_CAP_EXP);
    if (exp > 0) {
        gpu_device_status(h, (unsigned)exp);
        gpu_aer(h);
    } else {
        gw_note(c, "%s: %s: no Device Status, no AER", c->address,
                exp == 0 ? "no PCIe capability" : gw_error_message());
    }
    ports(h, up);
    aer_counters(h, up);
}
