/* Step isolation: the IOMMU group is viable (every member a bridge, or a
 * function of the GPU's own slot on vfio-pci), every root and downstream port above the GPU has ACS SV RR CR UF
 * (as the kernel's pci_acs_flags_enabled counts them), and ATS is disabled on
 * the GPU (an ATS-enabled device may issue translated requests that bypass
 * the IOMMU). Policy decides whether a problem fails or only warns. */
#include <string.h>

#include "sanitize_internal.h"

static void check_group(gw_sctx *c, gw_strbuf *problems)
{
    gw_addrlist members = { 0 };
    _cleanup_free_ char *group = NULL;
    int r = gw_dev_group(c->ops, c->address, &group, &members);
    if (r == -ENOENT) {
        gw_strbuf_append(problems, "%sno IOMMU group (IOMMU off?)", problems->len ? "; " : "");
        return;
    }
    if (r < 0) {
        gw_strbuf_append(problems, "%sIOMMU group unreadable: %s", problems->len ? "; " : "", gw_error_message());
        return;
    }
    size_t bad = 0;
    for (size_t i = 0; i < members.n; i++) {
        const char *m = members.v[i];
        int b = gw_dev_is_bridge(c->ops, m);
        if (b == 1)
            continue;
        _cleanup_free_ char *drv = NULL;
        if (b == 0 && strncmp(m, c->address, 10)) {
            /* Another device in the group: it can only go to the same VM,
             * and nothing separates it from this GPU. */
            gw_strbuf_append(problems, "%sgroup %s not isolated: %s is outside the GPU's slot",
                             problems->len ? "; " : "", group, m);
            bad++;
        } else if (b < 0 || gw_dev_driver(c->ops, m, &drv) < 0) {
            gw_strbuf_append(problems, "%sgroup %s: %s unreadable: %s", problems->len ? "; " : "", group, m,
                             gw_error_message());
            bad++;
        } else if (!drv || strcmp(drv, "vfio-pci")) {
            gw_strbuf_append(problems, "%sgroup %s not viable: %s bound to %s", problems->len ? "; " : "", group,
                             m, drv ? drv : "no driver");
            bad++;
        }
    }
    if (!bad)
        gw_note(c, "IOMMU group %s viable (%zu member%s)", group, members.n, members.n == 1 ? "" : "s");
    gw_addrlist_clear(&members);
}

static int port_type(gw_sctx *c, const char *addr)
{
    int pos = gw_dev_find_cap(c->ops, addr, GW_PCI_CAP_EXP);
    uint16_t flags;
    if (pos <= 0 || gw_dev_config16(c->ops, addr, (unsigned)pos + 2, &flags) < 0)
        return -1;
    return (flags >> 4) & 0xf;
}

static void flag_names(gw_strbuf *b, uint16_t flags)
{
    static const struct { uint16_t bit; const char *name; } names[] = {
        { GW_ACS_SV, "SV" }, { GW_ACS_RR, "RR" }, { GW_ACS_CR, "CR" }, { GW_ACS_UF, "UF" },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (flags & names[i].bit)
            gw_strbuf_append(b, "%s%s", b->len ? " " : "", names[i].name);
}

static void check_acs(gw_sctx *c, gw_strbuf *problems)
{
    gw_addrlist up = { 0 };
    if (gw_dev_upstream(c->ops, c->address, &up) < 0) {
        gw_strbuf_append(problems, "%supstream path unknown: %s", problems->len ? "; " : "", gw_error_message());
        return;
    }
    size_t checked = 0, bad = 0;
    for (size_t i = 0; i < up.n; i++) {
        const char *p = up.v[i];
        int t = port_type(c, p);
        if (t != 4 && t != 6)   /* root port, downstream port */
            continue;
        const char *kind = t == 4 ? "root port" : "downstream port";
        checked++;
        int pos = gw_dev_find_ext_cap(c->ops, p, GW_PCI_EXT_CAP_ACS);
        uint16_t cap, ctrl;
        if (pos < 0) {
            gw_strbuf_append(problems, "%s%s (%s): ACS unknown: %s", problems->len ? "; " : "", p, kind,
                             gw_error_message());
            bad++;
            continue;
        }
        if (pos == 0) {
            gw_strbuf_append(problems, "%s%s (%s) has no ACS capability", problems->len ? "; " : "", p, kind);
            bad++;
            continue;
        }
        if (gw_dev_config16(c->ops, p, (unsigned)pos + 4, &cap) < 0 ||
            gw_dev_config16(c->ops, p, (unsigned)pos + 6, &ctrl) < 0) {
            gw_strbuf_append(problems, "%s%s: ACS registers unreadable", problems->len ? "; " : "", p);
            bad++;
            continue;
        }
        /* A flag the port does not implement counts as hard-wired on. */
        uint16_t req = (GW_ACS_SV | GW_ACS_RR | GW_ACS_CR | GW_ACS_UF) & (cap | GW_ACS_EC);
        uint16_t missing = req & ~ctrl;
        if (missing) {
            gw_strbuf names = { 0 };
            flag_names(&names, missing);
            gw_strbuf_append(problems, "%s%s (%s): ACS %s not enabled (cap 0x%04x ctrl 0x%04x)",
                             problems->len ? "; " : "", p, kind, gw_strbuf_str(&names), cap, ctrl);
            gw_strbuf_clear(&names);
            bad++;
        }
    }
    if (!bad)
        gw_note(c, "ACS SV RR CR UF on %zu port%s above the GPU", checked, checked == 1 ? "" : "s");
    gw_addrlist_clear(&up);
}

static void check_ats(gw_sctx *c, gw_strbuf *problems)
{
    int pos = gw_dev_find_ext_cap(c->ops, c->address, GW_PCI_EXT_CAP_ATS);
    uint16_t ctrl;
    if (pos < 0) {
        gw_strbuf_append(problems, "%sATS state unknown: %s", problems->len ? "; " : "", gw_error_message());
    } else if (pos == 0) {
        gw_note(c, "no ATS capability");
    } else if (gw_dev_config16(c->ops, c->address, (unsigned)pos + 6, &ctrl) < 0) {
        gw_strbuf_append(problems, "%sATS control unreadable", problems->len ? "; " : "");
    } else if (ctrl & GW_ATS_ENABLE) {
        gw_strbuf_append(problems, "%sATS enabled on %s (control 0x%04x): translated requests bypass the IOMMU",
                         problems->len ? "; " : "", c->address, ctrl);
    } else {
        gw_note(c, "ATS disabled");
    }
}

static gw_verdict run(gw_sctx *c)
{
    gw_strbuf problems = { 0 };
    check_group(c, &problems);
    check_acs(c, &problems);
    check_ats(c, &problems);
    gw_verdict v = GW_VERDICT_PASS;
    if (problems.len) {
        if (c->policy->pol.isolation == GW_ISOLATION_WARN)
            gw_note(c, "WARNING (isolation policy warn): %s", gw_strbuf_str(&problems));
        else
            v = gw_fail(c, "%s", gw_strbuf_str(&problems));
    }
    gw_strbuf_clear(&problems);
    return v;
}

const gw_step_def gw_step_isolation = { GW_STEP_ISOLATION, "isolation", run };
