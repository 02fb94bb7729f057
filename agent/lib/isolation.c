/* SPDX-License-Identifier: Apache-2.0 */
/* gw_iso_judge(): the isolation verdict from a gw_iso_view, and nothing
 * else. Three parts, each with evidence in words:
 *
 * - the IOMMU group: every member a bridge, or a function of the GPU's own
 *   slot that VFIO can take. A VM is given a whole group, so a device of
 *   another slot would go along (not isolated, whatever it is bound to), and
 *   VFIO refuses the group while any function of it is on a host driver
 *   (the GPU's own HDA function on snd_hda_intel included: until it is on
 *   vfio-pci no VM can start with the GPU);
 * - the ACS path: every root and downstream port above the GPU has ACS SV RR
 *   CR UF enabled, as the kernel's pci_acs_flags_enabled() counts them (a
 *   flag the port does not implement is hard-wired on); a bridge that cannot
 *   have ACS (conventional PCI, PCIe-to-PCI) fails; switch upstream ports are
 *   not judged (the kernel asks ACS of them only when multifunction);
 * - ATS: the GPU's ATS Control Enable bit clear. With ATS a device may send
 *   requests marked as already translated, which the IOMMU lets through.
 *
 * What is unknown fails: a verdict of "isolated" must be proved. */
#include "isolation.h"

#include <stdlib.h>
#include <string.h>

#include "strv.h"
#include "util.h"

GW_EXTERN const char *gw_iso_kind_name(int kind)
{
    switch (kind) {
    case GW_ISO_NO_GROUP: return "no_group";
    case GW_ISO_FOREIGN_DEVICE: return "foreign_device";
    case GW_ISO_HOST_DRIVER: return "host_driver";
    case GW_ISO_MEMBER_UNKNOWN: return "member_unknown";
    case GW_ISO_ACS: return "acs";
    case GW_ISO_ACS_UNKNOWN: return "acs_unknown";
    case GW_ISO_ATS: return "ats";
    case GW_ISO_ATS_UNKNOWN: return "ats_unknown";
    default: return "unknown";
    }
}

bool gw_acs_flag_enabled(uint16_t cap, uint16_t ctrl, uint16_t flag)
{
    return !(cap & flag) || (ctrl & flag);
}

bool gw_iso_driver_ok(const char *driver)
{
    if (!driver || !strcmp(driver, "vfio-pci") || !strcmp(driver, "pci-stub"))
        return true;
    size_t n = strlen(driver);
    return n > 9 && !strcmp(driver + n - 9, "_vfio_pci");
}

/* ---- the view ------------------------------------------------------------ */

void gw_iso_view_init(gw_iso_view *v, const char *address)
{
    memset(v, 0, sizeof *v);
    snprintf(v->address, sizeof v->address, "%s", address);
}

void gw_iso_view_clear(gw_iso_view *v)
{
    for (size_t i = 0; i < v->n_members; i++)
        free(v->members[i].driver);
    free(v->members);
    free(v->group);
    free(v->path);
    memset(v, 0, sizeof *v);
}

gw_iso_member *gw_iso_view_add_member(gw_iso_view *v, const char *address)
{
    v->members = gw_xrealloc(v->members, v->n_members + 1, sizeof *v->members);
    gw_iso_member *m = &v->members[v->n_members++];
    memset(m, 0, sizeof *m);
    snprintf(m->address, sizeof m->address, "%s", address);
    return m;
}

static int cmp_member(const void *a, const void *b)
{
    return strcmp(((const gw_iso_member *)a)->address, ((const gw_iso_member *)b)->address);
}

void gw_iso_view_sort(gw_iso_view *v)
{
    if (v->n_members > 1)
        qsort(v->members, v->n_members, sizeof *v->members, cmp_member);
}

/* ---- the verdict --------------------------------------------------------- */

static char *join(const gw_strv *parts, const char *sep)
{
    size_t len = 1;
    for (size_t i = 0; i < parts->n; i++)
        len += strlen(parts->v[i]) + strlen(sep);
    char *s = gw_xcalloc(len, 1);
    for (size_t i = 0; i < parts->n; i++) {
        if (i)
            strcat(s, sep);
        strcat(s, parts->v[i]);
    }
    return s;
}

/* Add a reason (text taken) about `devices` (a gw_strv of addresses, may be
 * NULL) and, when `part` is given, its text to that part's evidence. */
static void add_reason(gw_iso_verdict *d, gw_strv *part, int kind, char *text, const gw_strv *devices)
{
    d->reasons = gw_xrealloc(d->reasons, d->n_reasons + 1, sizeof *d->reasons);
    gw_iso_reason *r = &d->reasons[d->n_reasons++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->text = text;
    size_t n = devices ? devices->n : 0;
    char (*devs)[GW_ADDR_LEN] = gw_xcalloc(n ? n : 1, sizeof *devs);
    for (size_t i = 0; i < n; i++)
        snprintf(devs[i], GW_ADDR_LEN, "%s", devices->v[i]);
    r->devices = (const char(*)[GW_ADDR_LEN])devs;
    r->n_devices = n;
    if (part)
        gw_strv_push(part, gw_xstrdup(text));
}

static void add_reason_one(gw_iso_verdict *d, gw_strv *part, int kind, char *text, const char *device)
{
    gw_strv devs = { 0 };
    if (device)
        gw_strv_push(&devs, gw_xstrdup(device));
    add_reason(d, part, kind, text, &devs);
    gw_strv_free(&devs);
}

static void judge_group(const gw_iso_view *v, gw_iso_verdict *d)
{
    gw_strv parts = { 0 };
    switch (v->group_state) {
    case GW_ISO_GROUP_NONE:
        add_reason_one(d, &parts, GW_ISO_NO_GROUP,
                       gw_xstrdup("no IOMMU group: the IOMMU is off or absent, so the GPU cannot be "
                                  "isolated"), v->address);
        break;
    case GW_ISO_GROUP_DANGLING:
        add_reason_one(d, &parts, GW_ISO_NO_GROUP,
                       gw_xstrdup("IOMMU group unknown: the iommu_group link is dangling"), v->address);
        break;
    case GW_ISO_GROUP_UNREADABLE:
        add_reason_one(d, &parts, GW_ISO_NO_GROUP,
                       gw_strdup_printf("IOMMU group %s: members unknown", v->group ? v->group : "?"),
                       v->address);
        break;
    case GW_ISO_GROUP_OK:
        break;
    }
    if (v->group_state != GW_ISO_GROUP_OK) {
        d->group_evidence = join(&parts, "; ");
        gw_strv_free(&parts);
        return;
    }

    char slot[11];
    snprintf(slot, sizeof slot, "%.10s", v->address);
    gw_strv ok_fns = { 0 }, bridges = { 0 }, foreign = { 0 }, hosted = { 0 }, unknown = { 0 };
    gw_strv foreign_a = { 0 }, hosted_a = { 0 }, unknown_a = { 0 };
    for (size_t i = 0; i < v->n_members; i++) {
        const gw_iso_member *m = &v->members[i];
        const char *drv = m->driver ? m->driver : "no driver";
        bool own = !strncmp(m->address, v->address, 10);
        if (!m->known) {
            gw_strv_push(&unknown, gw_xstrdup(m->address));
            gw_strv_push(&unknown_a, gw_xstrdup(m->address));
        } else if (m->is_bridge) {
            gw_strv_pushf(&bridges, "%s [%s]", m->address, drv);
        } else if (!own) {
            gw_strv_pushf(&foreign, "%s [%s]", m->address, drv);
            gw_strv_push(&foreign_a, gw_xstrdup(m->address));
        } else if (!gw_iso_driver_ok(m->driver)) {
            gw_strv_pushf(&hosted, "%s bound to %s (%04x:%04x, class %04x)", m->address, m->driver,
                          m->vendor_id, m->device_id, m->class_code);
            gw_strv_push(&hosted_a, gw_xstrdup(m->address));
        } else {
            gw_strv_pushf(&ok_fns, "%s [%s]", m->address, drv);
        }
    }
    _cleanup_free_ char *f = join(&foreign, ", ");
    _cleanup_free_ char *h = join(&hosted, ", ");
    _cleanup_free_ char *u = join(&unknown, ", ");
    if (foreign.n)
        add_reason(d, &parts, GW_ISO_FOREIGN_DEVICE,
                   gw_strdup_printf("group %s also holds %s: neither functions of slot %s nor bridges",
                                    v->group, f, slot), &foreign_a);
    if (hosted.n)
        add_reason(d, &parts, GW_ISO_HOST_DRIVER,
                   gw_strdup_printf("group %s not viable: %s: VFIO gives a VM the group only when each of "
                                    "its functions is on vfio-pci or unbound; the clean-up's bind step "
                                    "moves the GPU's own functions there when the policy manages them",
                                    v->group, h), &hosted_a);
    if (unknown.n)
        add_reason(d, &parts, GW_ISO_MEMBER_UNKNOWN,
                   gw_strdup_printf("group %s: %s unreadable (not in bus/pci/devices, or neither header "
                                    "nor class readable): cannot tell what %s", v->group, u,
                                    unknown.n == 1 ? "it is" : "they are"), &unknown_a);
    if (parts.n) {
        d->group_evidence = join(&parts, "; ");
    } else {
        _cleanup_free_ char *o = join(&ok_fns, ", ");
        _cleanup_free_ char *b = join(&bridges, ", ");
        d->group_ok = true;
        d->group_evidence = gw_strdup_printf("group %s: %s (functions of slot %s)%s%s", v->group,
                                             ok_fns.n ? o : "none", slot, bridges.n ? " and bridges " : "",
                                             b);
    }
    gw_strv *all[] = { &parts, &ok_fns, &bridges, &foreign, &hosted, &unknown, &foreign_a, &hosted_a,
                       &unknown_a };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        gw_strv_free(all[i]);
}

static void acs_flags(char *buf, size_t size, uint16_t cap, uint16_t ctrl)
{
    snprintf(buf, size, "SV%c RR%c CR%c UF%c (ACS cap %04x ctrl %04x)",
             gw_acs_flag_enabled(cap, ctrl, GW_ACS_SV) ? '+' : '-',
             gw_acs_flag_enabled(cap, ctrl, GW_ACS_RR) ? '+' : '-',
             gw_acs_flag_enabled(cap, ctrl, GW_ACS_CR) ? '+' : '-',
             gw_acs_flag_enabled(cap, ctrl, GW_ACS_UF) ? '+' : '-', cap, ctrl);
}

/* One port: its evidence, and a reason when it breaks isolation. */
static void judge_port(const gw_bridge *b, gw_iso_verdict *d, gw_strv *parts)
{
    static const struct { uint16_t bit; const char *name; } names[] = {
        { GW_ACS_SV, "SV" }, { GW_ACS_RR, "RR" }, { GW_ACS_CR, "CR" }, { GW_ACS_UF, "UF" },
    };
    const char *type = gw_port_type_name(b->port_type);
    char flags[96];
    switch (b->port_type) {
    case GW_PORT_UPSTREAM:
        return;
    case GW_PORT_ROOT_PORT:
    case GW_PORT_DOWNSTREAM:
        if (!b->acs.known) {
            add_reason_one(d, parts, GW_ISO_ACS_UNKNOWN,
                           gw_strdup_printf("%s %s: ACS unknown (extended config space not readable)",
                                            b->address, type), b->address);
            return;
        }
        if (!b->acs.present) {
            add_reason_one(d, parts, GW_ISO_ACS, gw_strdup_printf("%s %s: no ACS capability", b->address, type),
                           b->address);
            return;
        }
        char missing[16] = "";
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            if (!gw_acs_flag_enabled(b->acs.cap, b->acs.ctrl, names[i].bit))
                snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                         *missing ? " " : "", names[i].name);
        if (*missing) {
            add_reason_one(d, parts, GW_ISO_ACS,
                           gw_strdup_printf("%s %s: ACS %s not enabled (ACS cap %04x ctrl %04x)", b->address,
                                            type, missing, b->acs.cap, b->acs.ctrl), b->address);
        } else {
            acs_flags(flags, sizeof flags, b->acs.cap, b->acs.ctrl);
            gw_strv_pushf(parts, "%s %s: %s", b->address, type, flags);
        }
        return;
    case GW_PORT_NONE:
        add_reason_one(d, parts, GW_ISO_ACS,
                       gw_strdup_printf("%s: no PCIe capability (conventional PCI bridge or unreadable "
                                        "config): no ACS", b->address), b->address);
        return;
    default:
        add_reason_one(d, parts, GW_ISO_ACS,
                       gw_strdup_printf("%s %s: cannot isolate (the kernel's ACS check fails for this port "
                                        "type)", b->address, type), b->address);
        return;
    }
}

static void judge_acs(const gw_iso_view *v, gw_iso_verdict *d)
{
    size_t before = d->n_reasons;
    gw_strv parts = { 0 };
    if (!v->path_complete)
        add_reason(d, &parts, GW_ISO_ACS_UNKNOWN, gw_xstrdup("upstream path incomplete: ports above are unknown"),
                   NULL);
    for (size_t i = 0; i < v->n_path; i++)
        judge_port(&v->path[i], d, &parts);
    d->acs_ok = d->n_reasons == before;
    d->acs_evidence = parts.n ? join(&parts, "; ")
                              : gw_xstrdup("no root or downstream port between the GPU and the root complex");
    gw_strv_free(&parts);
}

static void judge_ats(const gw_iso_view *v, gw_iso_verdict *d)
{
    char *text;
    switch (v->ats) {
    case GW_ISO_ATS_ABSENT:
        d->ats_ok = true;
        d->ats_evidence = gw_xstrdup("no ATS capability");
        return;
    case GW_ISO_ATS_PRESENT:
        if (!(v->ats_ctrl & GW_ATS_ENABLE)) {
            d->ats_ok = true;
            d->ats_evidence = gw_strdup_printf("ATS disabled (control 0x%04x)", v->ats_ctrl);
            return;
        }
        text = gw_strdup_printf("ATS enabled on %s (control 0x%04x): translated requests bypass the IOMMU",
                                v->address, v->ats_ctrl);
        add_reason_one(d, NULL, GW_ISO_ATS, text, v->address);
        break;
    case GW_ISO_ATS_NO_CONFIG:
    case GW_ISO_ATS_NO_EXT:
        text = gw_strdup_printf("ATS state of %s unknown: %s", v->address,
                                v->ats == GW_ISO_ATS_NO_EXT ? "extended config space not readable"
                                                            : "config space unreadable, truncated or all-ones");
        add_reason_one(d, NULL, GW_ISO_ATS_UNKNOWN, text, v->address);
        break;
    }
    d->ats_evidence = gw_xstrdup(d->reasons[d->n_reasons - 1].text);
}

void gw_iso_judge(const gw_iso_view *v, gw_iso_verdict *out)
{
    memset(out, 0, sizeof *out);
    judge_group(v, out);
    judge_acs(v, out);
    judge_ats(v, out);
    out->viable = out->group_ok && out->acs_ok && out->ats_ok;
    gw_strv parts = { 0 };
    if (out->viable) {
        gw_strv_push(&parts, gw_xstrdup(out->group_evidence));
        gw_strv_push(&parts, gw_xstrdup(out->acs_evidence));
        gw_strv_push(&parts, gw_xstrdup(out->ats_evidence));
    } else {
        for (size_t i = 0; i < out->n_reasons; i++)
            gw_strv_push(&parts, gw_xstrdup(out->reasons[i].text));
    }
    out->evidence = join(&parts, "; ");
    gw_strv_free(&parts);
}

void gw_iso_verdict_clear(gw_iso_verdict *d)
{
    for (size_t i = 0; i < d->n_reasons; i++) {
        free((char *)d->reasons[i].text);
        free((void *)d->reasons[i].devices);
    }
    free(d->reasons);
    free(d->group_evidence);
    free(d->acs_evidence);
    free(d->ats_evidence);
    free(d->evidence);
    memset(d, 0, sizeof *d);
}
