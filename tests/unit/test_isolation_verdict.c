/* SPDX-License-Identifier: Apache-2.0 */
/* gw_iso_judge(), the one isolation verdict, on views built by hand: a
 * healthy GPU, ACS missing or off on the path, a foreign device in the group
 * on a host driver, a companion function (the GPU's own HDA) on a host
 * driver, ATS enabled, and what is unknown. Each case asserts the verdict,
 * its reasons (kind, devices named, text) and the evidence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "isolation.h"
#include "util.h"

#define GPU "0000:03:00.0"
#define HDA "0000:03:00.1"
#define DSP "0000:02:08.0"
#define USP "0000:01:00.0"
#define RP "0000:00:01.0"

static gw_iso_member *member(gw_iso_view *v, const char *addr, const char *driver, uint16_t vendor,
                             uint16_t device, uint16_t cls)
{
    gw_iso_member *m = gw_iso_view_add_member(v, addr);
    m->known = true;
    m->is_bridge = cls == 0x0604;
    m->vendor_id = vendor;
    m->device_id = device;
    m->class_code = cls;
    m->driver = driver ? gw_xstrdup(driver) : NULL;
    return m;
}

static gw_bridge *port(gw_iso_view *v, const char *addr, int type, int acs_cap, uint16_t acs_ctrl)
{
    v->path = gw_xrealloc(v->path, v->n_path + 1, sizeof *v->path);
    gw_bridge *b = &v->path[v->n_path++];
    memset(b, 0, sizeof *b);
    snprintf(b->address, sizeof b->address, "%s", addr);
    b->port_type = type;
    b->acs.known = true;
    if (acs_cap >= 0) {
        b->acs.present = true;
        b->acs.cap = (uint16_t)acs_cap;
        b->acs.ctrl = acs_ctrl;
    }
    return b;
}

/* An RTX A6000 with its HDA function on vfio-pci in group 12, behind a
 * switch whose downstream port and the root port have ACS SV RR CR UF on,
 * no ATS capability: isolated. */
static void healthy(gw_iso_view *v)
{
    gw_iso_view_init(v, GPU);
    v->group = gw_xstrdup("12");
    member(v, GPU, "vfio-pci", 0x10de, 0x2230, 0x0300);
    member(v, HDA, "vfio-pci", 0x10de, 0x1aef, 0x0403);
    port(v, DSP, GW_PORT_DOWNSTREAM, 0x187f, 0x001d);
    port(v, USP, GW_PORT_UPSTREAM, -1, 0);
    port(v, RP, GW_PORT_ROOT_PORT, 0x001f, 0x001d);
    v->path_complete = true;
}

#define OK_GROUP "group 12: 0000:03:00.0 [vfio-pci], 0000:03:00.1 [vfio-pci] (functions of slot 0000:03:00)"
#define OK_ACS "0000:02:08.0 downstream: SV+ RR+ CR+ UF+ (ACS cap 187f ctrl 001d); " \
               "0000:00:01.0 root_port: SV+ RR+ CR+ UF+ (ACS cap 001f ctrl 001d)"

static void assert_reason(const gw_iso_verdict *d, size_t i, int kind, const char *device, const char *text)
{
    assert_true(i < d->n_reasons);
    const gw_iso_reason *r = &d->reasons[i];
    assert_string_equal(gw_iso_kind_name(r->kind), gw_iso_kind_name(kind));
    if (device) {
        assert_true(r->n_devices >= 1);
        assert_string_equal(r->devices[0], device);
    } else {
        assert_int_equal(r->n_devices, 0);
    }
    assert_string_equal(r->text, text);
}

static void a_healthy_gpu_is_viable(void **state)
{
    (void)state;
    gw_iso_view v;
    healthy(&v);
    gw_iso_verdict d;
    gw_iso_judge(&v, &d);
    assert_true(d.viable && d.group_ok && d.acs_ok && d.ats_ok);
    assert_int_equal(d.n_reasons, 0);
    assert_string_equal(d.group_evidence, OK_GROUP);
    assert_string_equal(d.acs_evidence, OK_ACS);
    assert_string_equal(d.ats_evidence, "no ATS capability");
    assert_string_equal(d.evidence, OK_GROUP "; " OK_ACS "; no ATS capability");
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

/* ---- ACS ------------------------------------------------------------------ */

static void acs_missing_on_the_path(void **state)
{
    (void)state;
    gw_iso_view v;
    healthy(&v);
    v.path[0].acs.present = false;          /* the switch's downstream port has no ACS */
    gw_iso_verdict d;
    gw_iso_judge(&v, &d);
    assert_false(d.viable);
    assert_true(d.group_ok && d.ats_ok);
    assert_false(d.acs_ok);
    assert_int_equal(d.n_reasons, 1);
    assert_reason(&d, 0, GW_ISO_ACS, DSP, "0000:02:08.0 downstream: no ACS capability");
    assert_string_equal(d.acs_evidence, "0000:02:08.0 downstream: no ACS capability; "
                                        "0000:00:01.0 root_port: SV+ RR+ CR+ UF+ (ACS cap 001f ctrl 001d)");
    assert_string_equal(d.evidence, "0000:02:08.0 downstream: no ACS capability");
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

static void acs_flags_off_name_the_flags(void **state)
{
    (void)state;
    gw_iso_view v;
    healthy(&v);
    v.path[0].acs.ctrl = 0x0011;            /* SV UF only: pci=disable_acs_redir */
    v.path[2].acs.ctrl = 0x0000;            /* root port: nothing enabled */
    gw_iso_verdict d;
    gw_iso_judge(&v, &d);
    assert_false(d.acs_ok);
    assert_int_equal(d.n_reasons, 2);
    assert_reason(&d, 0, GW_ISO_ACS, DSP, "0000:02:08.0 downstream: ACS RR CR not enabled (ACS cap 187f ctrl 0011)");
    assert_reason(&d, 1, GW_ISO_ACS, RP,
                  "0000:00:01.0 root_port: ACS SV RR CR UF not enabled (ACS cap 001f ctrl 0000)");
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

/* The kernel's pci_acs_flags_enabled(): a flag the port does not implement
 * is hard-wired on. Switch upstream ports are not judged at all. */
static void acs_flag_not_implemented_counts_as_enabled(void **state)
{
    (void)state;
    gw_iso_view v;
    healthy(&v);
    v.path[0].acs.cap = 0x0007;             /* SV TB RR: CR and UF hard-wired */
    v.path[0].acs.ctrl = 0x0005;
    v.path[1].acs.known = false;            /* the upstream port's ACS does not matter */
    gw_iso_verdict d;
    gw_iso_judge(&v, &d);
    assert_true(d.viable);
    assert_string_equal(d.acs_evidence, "0000:02:08.0 downstream: SV+ RR+ CR+ UF+ (ACS cap 0007 ctrl 0005); "
                                        "0000:00:01.0 root_port: SV+ RR+ CR+ UF+ (ACS cap 001f ctrl 001d)");
    assert_true(gw_acs_flag_enabled(0x0000, 0x0000, GW_ACS_RR));
    assert_false(gw_acs_flag_enabled(0x0004, 0x0000, GW_ACS_RR));
    assert_true(gw_acs_flag_enabled(0x0004, 0x0004, GW_ACS_RR));
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

/* What cannot be proved fails: unreadable ACS, a path that stops short of
 * a root bus, bridges that cannot have ACS at all. */
static void acs_unknown_and_bridges_without_acs(void **state)
{
    (void)state;
    gw_iso_view v;
    healthy(&v);
    v.path[0].acs.known = false;
    v.path[1].port_type = GW_PORT_PCIE_TO_PCI;
    v.path[2].port_type = GW_PORT_NONE;
    v.path_complete = false;
    gw_iso_verdict d;
    gw_iso_judge(&v, &d);
    assert_false(d.acs_ok);
    assert_int_equal(d.n_reasons, 4);
    assert_reason(&d, 0, GW_ISO_ACS_UNKNOWN, NULL, "upstream path incomplete: ports above are unknown");
    assert_reason(&d, 1, GW_ISO_ACS_UNKNOWN, DSP,
                  "0000:02:08.0 downstream: ACS unknown (extended config space not readable)");
    assert_reason(&d, 2, GW_ISO_ACS, USP,
                  "0000:01:00.0 pcie_to_pci: cannot isolate (the kernel's ACS check fails for this port type)");
    assert_reason(&d, 3, GW_ISO_ACS, RP,
                  "0000:00:01.0: no PCIe capability (conventional PCI bridge or unreadable config): no ACS");
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);

    /* A GPU on the root bus (an iGPU) has no port to judge. */
    healthy(&v);
    v.n_path = 0;
    gw_iso_judge(&v, &d);
    assert_true(d.viable);
    assert_string_equal(d.acs_evidence, "no root or downstream port between the GPU and the root complex");
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

/* ---- the group ------------------------------------------------------------ */

/* An NVMe drive behind the same port without ACS shares the group: a VM
 * given the GPU would get it too. Named with its driver; the port is a
 * bridge and allowed. */
static void foreign_device_on_a_host_driver(void **state)
{
    (void)state;
    gw_iso_view v;
    healthy(&v);
    member(&v, DSP, "pcieport", 0x10b5, 0x8747, 0x0604);
    member(&v, "0000:06:00.0", "nvme", 0x144d, 0xa808, 0x0108);
    gw_iso_view_sort(&v);
    gw_iso_verdict d;
    gw_iso_judge(&v, &d);
    assert_false(d.viable);
    assert_false(d.group_ok);
    assert_true(d.acs_ok && d.ats_ok);
    assert_int_equal(d.n_reasons, 1);
    assert_reason(&d, 0, GW_ISO_FOREIGN_DEVICE, "0000:06:00.0",
                  "group 12 also holds 0000:06:00.0 [nvme]: neither functions of slot 0000:03:00 nor bridges");
    assert_string_equal(d.evidence, d.reasons[0].text);
    assert_string_equal(d.group_evidence, d.reasons[0].text);
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);

    /* On vfio-pci it is still another device: still not isolated. */
    healthy(&v);
    member(&v, "0000:04:00.0", "vfio-pci", 0x10de, 0x2230, 0x0300);
    member(&v, "0000:04:00.1", NULL, 0x10de, 0x1aef, 0x0403);
    gw_iso_judge(&v, &d);
    assert_int_equal(d.n_reasons, 1);
    assert_int_equal(d.reasons[0].n_devices, 2);
    assert_string_equal(d.reasons[0].devices[1], "0000:04:00.1");
    assert_reason(&d, 0, GW_ISO_FOREIGN_DEVICE, "0000:04:00.0",
                  "group 12 also holds 0000:04:00.0 [vfio-pci], 0000:04:00.1 [no driver]: neither functions of "
                  "slot 0000:03:00 nor bridges");
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

#define HDA_ON_SND                                                                                            \
    "group 12 not viable: 0000:03:00.1 bound to snd_hda_intel (10de:1aef, class 0403): VFIO gives a VM the "   \
    "group only when each of its functions is on vfio-pci or unbound; the clean-up's bind step moves the "     \
    "GPU's own functions there when the policy manages them"

/* The RTX 3060 case: the GPU's own HDA function on snd_hda_intel. It is of
 * the GPU's slot, so it would go to the VM with the GPU, but VFIO refuses
 * the group while a host driver holds it: not viable, naming it, whatever
 * the clean-up could do about it later. */
static void companion_function_on_a_host_driver(void **state)
{
    (void)state;
    gw_iso_view v;
    healthy(&v);
    free(v.members[1].driver);
    v.members[1].driver = gw_xstrdup("snd_hda_intel");
    gw_iso_verdict d;
    gw_iso_judge(&v, &d);
    assert_false(d.viable);
    assert_false(d.group_ok);
    assert_int_equal(d.n_reasons, 1);
    assert_reason(&d, 0, GW_ISO_HOST_DRIVER, HDA, HDA_ON_SND);
    assert_string_equal(d.evidence, HDA_ON_SND);
    gw_iso_verdict_clear(&d);

    /* Unbound, pci-stub or a vfio-pci variant driver: VFIO can take it. */
    const char *fine[] = { NULL, "pci-stub", "nvgrace_gpu_vfio_pci", "vfio-pci" };
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++) {
        free(v.members[1].driver);
        v.members[1].driver = fine[i] ? gw_xstrdup(fine[i]) : NULL;
        gw_iso_judge(&v, &d);
        assert_true(d.viable);
        gw_iso_verdict_clear(&d);
    }
    assert_string_equal(v.members[1].driver, "vfio-pci");
    assert_false(gw_iso_driver_ok("nvidia"));
    assert_false(gw_iso_driver_ok("vfio_pci"));     /* a name, not a variant: "_vfio_pci" after something */
    assert_false(gw_iso_driver_ok("pcieport"));     /* fine on a bridge only, and bridges are not asked */

    /* The GPU itself on its vendor driver counts the same. */
    free(v.members[0].driver);
    v.members[0].driver = gw_xstrdup("nvidia");
    gw_iso_judge(&v, &d);
    assert_reason(&d, 0, GW_ISO_HOST_DRIVER, GPU,
                  "group 12 not viable: 0000:03:00.0 bound to nvidia (10de:2230, class 0300): VFIO gives a VM "
                  "the group only when each of its functions is on vfio-pci or unbound; the clean-up's bind "
                  "step moves the GPU's own functions there when the policy manages them");
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

static void no_group_and_unknown_members(void **state)
{
    (void)state;
    static const struct { gw_iso_group_state state; const char *text; } cases[] = {
        { GW_ISO_GROUP_NONE, "no IOMMU group: the IOMMU is off or absent, so the GPU cannot be isolated" },
        { GW_ISO_GROUP_DANGLING, "IOMMU group unknown: the iommu_group link is dangling" },
        { GW_ISO_GROUP_UNREADABLE, "IOMMU group 12: members unknown" },
    };
    gw_iso_view v;
    gw_iso_verdict d;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        healthy(&v);
        v.group_state = cases[i].state;
        gw_iso_judge(&v, &d);
        assert_false(d.viable);
        assert_int_equal(d.n_reasons, 1);
        assert_reason(&d, 0, GW_ISO_NO_GROUP, GPU, cases[i].text);
        gw_iso_verdict_clear(&d);
        gw_iso_view_clear(&v);
    }
    healthy(&v);
    v.members[1].known = false;
    gw_iso_judge(&v, &d);
    assert_reason(&d, 0, GW_ISO_MEMBER_UNKNOWN, HDA,
                  "group 12: 0000:03:00.1 unreadable (not in bus/pci/devices, or neither header nor class "
                  "readable): cannot tell what it is");
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

/* ---- ATS ------------------------------------------------------------------ */

static void ats_enabled_and_unknown(void **state)
{
    (void)state;
    gw_iso_view v;
    gw_iso_verdict d;
    healthy(&v);
    v.ats = GW_ISO_ATS_PRESENT;
    v.ats_ctrl = 0x0000;
    gw_iso_judge(&v, &d);
    assert_true(d.viable);
    assert_string_equal(d.ats_evidence, "ATS disabled (control 0x0000)");
    gw_iso_verdict_clear(&d);

    v.ats_ctrl = 0x8000;
    gw_iso_judge(&v, &d);
    assert_false(d.viable);
    assert_true(d.group_ok && d.acs_ok);
    assert_false(d.ats_ok);
    assert_reason(&d, 0, GW_ISO_ATS, GPU,
                  "ATS enabled on 0000:03:00.0 (control 0x8000): translated requests bypass the IOMMU");
    assert_string_equal(d.ats_evidence, d.reasons[0].text);
    gw_iso_verdict_clear(&d);

    v.ats = GW_ISO_ATS_NO_EXT;
    gw_iso_judge(&v, &d);
    assert_reason(&d, 0, GW_ISO_ATS_UNKNOWN, GPU, "ATS state of 0000:03:00.0 unknown: extended config space not readable");
    gw_iso_verdict_clear(&d);
    v.ats = GW_ISO_ATS_NO_CONFIG;
    gw_iso_judge(&v, &d);
    assert_reason(&d, 0, GW_ISO_ATS_UNKNOWN, GPU,
                  "ATS state of 0000:03:00.0 unknown: config space unreadable, truncated or all-ones");
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

/* Everything wrong at once: the reasons come group, ACS, ATS, and the
 * evidence is their texts in that order. */
static void reasons_in_order(void **state)
{
    (void)state;
    gw_iso_view v;
    healthy(&v);
    free(v.members[1].driver);
    v.members[1].driver = gw_xstrdup("snd_hda_intel");
    member(&v, "0000:06:00.0", "nvme", 0x144d, 0xa808, 0x0108);
    v.path[0].acs.present = false;
    v.ats = GW_ISO_ATS_PRESENT;
    v.ats_ctrl = 0x8000;
    gw_iso_verdict d;
    gw_iso_judge(&v, &d);
    assert_int_equal(d.n_reasons, 4);
    assert_int_equal(d.reasons[0].kind, GW_ISO_FOREIGN_DEVICE);
    assert_int_equal(d.reasons[1].kind, GW_ISO_HOST_DRIVER);
    assert_int_equal(d.reasons[2].kind, GW_ISO_ACS);
    assert_int_equal(d.reasons[3].kind, GW_ISO_ATS);
    char *want = gw_strdup_printf("%s; %s; %s; %s", d.reasons[0].text, d.reasons[1].text, d.reasons[2].text,
                                  d.reasons[3].text);
    assert_string_equal(d.evidence, want);
    free(want);
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&v);
}

static void kind_names(void **state)
{
    (void)state;
    const char *want[] = { "no_group", "foreign_device", "host_driver", "member_unknown",
                           "acs", "acs_unknown", "ats", "ats_unknown" };
    for (int k = 0; k < 8; k++)
        assert_string_equal(gw_iso_kind_name(k), want[k]);
    assert_string_equal(gw_iso_kind_name(8), "unknown");
    assert_string_equal(gw_iso_kind_name(-1), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_healthy_gpu_is_viable),
        cmocka_unit_test(acs_missing_on_the_path),
        cmocka_unit_test(acs_flags_off_name_the_flags),
        cmocka_unit_test(acs_flag_not_implemented_counts_as_enabled),
        cmocka_unit_test(acs_unknown_and_bridges_without_acs),
        cmocka_unit_test(foreign_device_on_a_host_driver),
        cmocka_unit_test(companion_function_on_a_host_driver),
        cmocka_unit_test(no_group_and_unknown_members),
        cmocka_unit_test(ats_enabled_and_unknown),
        cmocka_unit_test(reasons_in_order),
        cmocka_unit_test(kind_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
