/* SPDX-License-Identifier: Apache-2.0 */
/* Discovery on small synthetic trees written by the test (hosttree.h):
 * every field of one GPU, ACS flag semantics, cliques, and each kind of
 * broken sysfs, one at a time. The real-host fixtures are in test_discover.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <gpuwarden/host.h>

#include "hosttree.h"
#include "isolation.h"
#include "pcifunc.h"
#include "sysfs_attrs.h"
#include "util.h"

static ht_dev *dev(const char *addr)
{
    ht_dev *d = calloc(1, sizeof *d);
    snprintf(d->addr, sizeof d->addr, "%s", addr);
    return d;
}

/* Root port 00:01.0 -> GPU 01:00.0 + HDA 01:00.1 in group 7. */
static char *workstation(void)
{
    char *root = ht_mkroot();
    ht_dev *rp = dev("0000:00:01.0"), *gpu = dev("0000:01:00.0"), *hda = dev("0000:01:00.1");
    ht_config(rp, 0x8086, 0x1901, 0x060400, 1, 4, 0, 3, 16, 3, 16);
    ht_acs(rp, 0x005f, 0x001d);
    ht_place(root, rp, NULL);
    ht_driver(root, rp, "pcieport");
    ht_group(root, rp, "3");

    ht_config(gpu, 0x10de, 0x20b0, 0x030200, 0x80, 0, 0x10008000u, 4, 16, 3, 8);
    ht_aer(gpu);
    ht_ats(gpu, true);
    ht_dsn(gpu, 0x48b02dffff6bc0abull);
    ht_place(root, gpu, rp);
    ht_printf(gpu->path, "numa_node", "1\n");
    ht_printf(gpu->path, "local_cpulist", "28-55,84-111\n");
    ht_printf(gpu->path, "reset_method", "flr bus\n");
    ht_printf(gpu->path, "aer_dev_correctable", "RxErr 0\nBadTLP 3\nTOTAL_ERR_COR 5\n");
    ht_printf(gpu->path, "aer_dev_fatal", "Undefined 0\nTOTAL_ERR_FATAL 0\n");
    ht_printf(gpu->path, "aer_dev_nonfatal", "Undefined 0\nTOTAL_ERR_NONFATAL 2\n");
    ht_printf(gpu->path, "resource",
              "0x00000000f0000000 0x00000000f0ffffff 0x0000000000040200\n"
              "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
              "0x0000038000000000 0x0000038fffffffff 0x000000000014220c\n"
              "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
              "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
              "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
              "0x00000000f1000000 0x00000000f107ffff 0x0000000000046200\n");
    ht_write(gpu->path, "rom", "", 0);
    ht_driver(root, gpu, "vfio-pci");
    ht_group(root, gpu, "7");

    ht_config(hda, 0x10de, 0x1aef, 0x040300, 0, 0, 0, 4, 16, 3, 8);
    ht_place(root, hda, rp);
    ht_driver(root, hda, "snd_hda_intel");
    ht_group(root, hda, "7");
    free(rp);
    free(gpu);
    free(hda);
    return root;
}

static gw_host *scan(const char *root)
{
    gw_host_options o = GW_HOST_OPTIONS_INIT;
    o.root = root;
    gw_host *h = NULL;
    int r = gw_host_scan(&h, &o);
    if (r < 0)
        fail_msg("scan of %s failed: %s", root, gw_error_message());
    return h;
}

static void every_field_of_one_gpu(void **state)
{
    char *root = workstation();
    gw_host *h = scan(root);
    assert_int_equal(gw_host_gpu_count(h), 1);
    assert_int_equal(gw_host_error_count(h), 0);
    const gw_gpu *g = gw_host_gpu(h, 0);
    assert_ptr_equal(g, gw_host_find_gpu(h, "0000:01:00.0"));
    assert_null(gw_host_find_gpu(h, "0000:01:00.1"));
    assert_string_equal(g->address, "0000:01:00.0");
    assert_int_equal(g->vendor_id, 0x10de);
    assert_int_equal(g->device_id, 0x20b0);
    assert_int_equal(g->subsystem_vendor_id, 0x10de);
    assert_int_equal(g->subsystem_device_id, 0x1234);
    assert_int_equal(g->revision, 0xa1);
    assert_int_equal(g->class_code, 0x0302);
    assert_string_equal(g->vendor_name, "NVIDIA Corporation");
    assert_int_equal(g->numa_node, 1);
    assert_string_equal(g->local_cpulist, "28-55,84-111");
    assert_string_equal(g->driver, "vfio-pci");
    assert_string_equal(g->iommu_group, "7");
    assert_int_equal(g->n_group_members, 2);
    assert_string_equal(g->group_members[0].address, "0000:01:00.0");
    assert_string_equal(g->group_members[0].driver, "vfio-pci");
    assert_true(g->group_members[0].same_slot);
    assert_false(g->group_members[0].is_bridge);
    assert_string_equal(g->group_members[1].address, "0000:01:00.1");
    assert_string_equal(g->group_members[1].driver, "snd_hda_intel");
    assert_true(g->group_members[1].same_slot);
    assert_int_equal(g->n_reset_methods, 2);
    assert_string_equal(g->reset_methods[0], "flr");
    assert_string_equal(g->reset_methods[1], "bus");
    assert_true(g->flr);
    assert_true(g->link.present);
    assert_true(g->link.speed_gts == 8.0);
    assert_int_equal(g->link.width, 8);
    assert_true(g->link.max_speed_gts == 16.0);
    assert_int_equal(g->link.max_width, 16);
    assert_true(g->ats_present);
    assert_true(g->ats_enabled);
    assert_true(g->aer_present);
    assert_int_equal(g->aer.correctable, 5);
    assert_int_equal(g->aer.fatal, 0);
    assert_int_equal(g->aer.nonfatal, 2);
    assert_true(g->dsn_present);
    assert_true(g->dsn == 0x48b02dffff6bc0abull);
    assert_true(g->rom_present);
    assert_true(g->bar_sizes[0] == 0x1000000);
    assert_true(g->bar_sizes[1] == 0);
    assert_true(g->bar_sizes[2] == 0x1000000000ull);
    assert_int_equal(g->n_functions, 1);
    assert_string_equal(g->functions[0], "0000:01:00.1");
    assert_int_equal(g->n_upstream, 1);
    assert_string_equal(g->upstream[0].address, "0000:00:01.0");
    assert_int_equal(g->upstream[0].vendor_id, 0x8086);
    assert_int_equal(g->upstream[0].port_type, GW_PORT_ROOT_PORT);
    assert_true(g->upstream[0].acs.present);
    assert_true(g->upstream[0].acs.known);
    assert_int_equal(g->upstream[0].acs.cap, 0x005f);
    assert_int_equal(g->upstream[0].acs.ctrl, 0x001d);
    assert_true(g->acs_path_ok);
    assert_string_equal(g->acs_evidence,
                        "0000:00:01.0 root_port: SV+ RR+ CR+ UF+ (ACS cap 005f ctrl 001d)");
    /* The HDA function is the GPU's own, but on snd_hda_intel VFIO refuses
     * the group: not viable until it is on vfio-pci (isolation.c). */
    assert_false(g->group_viable);
    assert_string_equal(g->group_evidence,
                        "group 7 not viable: 0000:01:00.1 bound to snd_hda_intel (10de:1aef, class 0403): VFIO "
                        "gives a VM the group only when each of its functions is on vfio-pci or unbound; the "
                        "clean-up's bind step moves the GPU's own functions there when the policy manages them");
    /* ATS Enable set too. */
    assert_false(g->ats_ok);
    assert_string_equal(g->ats_evidence,
                        "ATS enabled on 0000:01:00.0 (control 0x8000): translated requests bypass the IOMMU");
    assert_false(g->isolation_viable);
    assert_int_equal(g->n_isolation_reasons, 2);
    assert_int_equal(g->isolation_reasons[0].kind, GW_ISO_HOST_DRIVER);
    assert_int_equal(g->isolation_reasons[0].n_devices, 1);
    assert_string_equal(g->isolation_reasons[0].devices[0], "0000:01:00.1");
    assert_string_equal(g->isolation_reasons[0].text, g->group_evidence);
    assert_int_equal(g->isolation_reasons[1].kind, GW_ISO_ATS);
    assert_string_equal(g->isolation_reasons[1].devices[0], "0000:01:00.0");
    char *ev = gw_strdup_printf("%s; %s", g->group_evidence, g->ats_evidence);
    assert_string_equal(g->isolation_evidence, ev);
    free(ev);
    assert_int_equal(g->clique, -1);
    assert_int_equal(g->n_errors, 0);
    assert_int_equal(gw_host_clique_count(h), 0);
    gw_host_free(h);
    ht_rmroot(root);
}

static void json_schema(void **state)
{
    char *root = workstation();
    gw_host *h = scan(root);
    char *s = NULL;
    assert_int_equal(gw_host_to_json(h, &s), 0);
    json_error_t err;
    json_t *j = json_loads(s, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "host_root")), root);
    assert_int_equal(json_array_size(json_object_get(j, "cliques")), 0);
    assert_int_equal(json_array_size(json_object_get(j, "errors")), 0);
    json_t *g = json_array_get(json_object_get(j, "gpus"), 0);
    assert_string_equal(json_string_value(json_object_get(g, "address")), "0000:01:00.0");
    assert_string_equal(json_string_value(json_object_get(g, "vendor_id")), "10de");
    assert_string_equal(json_string_value(json_object_get(g, "device_id")), "20b0");
    assert_string_equal(json_string_value(json_object_get(g, "class")), "0302");
    assert_int_equal(json_integer_value(json_object_get(g, "numa_node")), 1);
    assert_string_equal(json_string_value(json_object_get(g, "local_cpulist")), "28-55,84-111");
    assert_string_equal(json_string_value(json_object_get(g, "iommu_group")), "7");
    assert_string_equal(json_string_value(json_object_get(g, "driver")), "vfio-pci");
    assert_true(json_is_true(json_object_get(g, "flr")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(g, "reset_methods"), 1)), "bus");
    json_t *link = json_object_get(g, "link");
    assert_true(json_real_value(json_object_get(link, "speed_gts")) == 8.0);
    assert_int_equal(json_integer_value(json_object_get(link, "width")), 8);
    assert_true(json_real_value(json_object_get(link, "max_speed_gts")) == 16.0);
    assert_int_equal(json_integer_value(json_object_get(link, "max_width")), 16);
    json_t *ats = json_object_get(g, "ats");
    assert_true(json_is_true(json_object_get(ats, "present")));
    assert_true(json_is_true(json_object_get(ats, "enabled")));
    assert_true(json_is_true(json_object_get(g, "acs_path_ok")));
    assert_true(json_is_false(json_object_get(g, "group_viable")));
    json_t *iso = json_object_get(g, "isolation");
    assert_true(json_is_false(json_object_get(iso, "viable")));
    assert_true(json_is_false(json_object_get(iso, "ats_ok")));
    assert_string_equal(json_string_value(json_object_get(iso, "ats_evidence")),
                        "ATS enabled on 0000:01:00.0 (control 0x8000): translated requests bypass the IOMMU");
    json_t *r0 = json_array_get(json_object_get(iso, "reasons"), 0);
    assert_string_equal(json_string_value(json_object_get(r0, "kind")), "host_driver");
    assert_string_equal(json_string_value(json_array_get(json_object_get(r0, "devices"), 0)), "0000:01:00.1");
    assert_string_equal(json_string_value(json_object_get(r0, "text")),
                        json_string_value(json_object_get(g, "group_evidence")));
    json_t *r1 = json_array_get(json_object_get(iso, "reasons"), 1);
    assert_string_equal(json_string_value(json_object_get(r1, "kind")), "ats");
    assert_int_equal(json_array_size(json_object_get(iso, "reasons")), 2);
    /* "isolation" comes right after "group_evidence". */
    const char *prev = NULL;
    const char *key;
    json_t *val;
    json_object_foreach(g, key, val) {
        if (!strcmp(key, "isolation"))
            break;
        prev = key;
    }
    assert_string_equal(prev, "group_evidence");
    assert_true(json_is_null(json_object_get(g, "clique")));
    assert_true(json_is_false(json_object_get(g, "config_all_ones")));
    assert_string_equal(json_string_value(json_object_get(g, "dsn")), "48-b0-2d-ff-ff-6b-c0-ab");
    json_t *up = json_array_get(json_object_get(g, "upstream"), 0);
    assert_string_equal(json_string_value(json_object_get(up, "address")), "0000:00:01.0");
    assert_string_equal(json_string_value(json_object_get(up, "port_type")), "root_port");
    assert_string_equal(json_string_value(json_object_get(json_object_get(up, "acs"), "ctrl")), "001d");
    assert_string_equal(json_string_value(json_array_get(json_object_get(g, "functions"), 0)),
                        "0000:01:00.1");
    assert_int_equal(json_array_size(json_object_get(g, "errors")), 0);
    json_decref(j);
    free(s);
    gw_host_free(h);
    ht_rmroot(root);
}

/* Root port 00:01.0 -> switch 01:00.0 -> DSPs 02:08.0, 02:10.0 -> GPUs
 * 03:00.0, 04:00.0; root port 00:02.0 -> GPU 05:00.0 alone; NVMe 06:00.0
 * shares 04:00.0's group. */
static char *switched(void)
{
    char *root = ht_mkroot();
    ht_dev *rp = dev("0000:00:01.0"), *rp2 = dev("0000:00:02.0"), *usp = dev("0000:01:00.0"),
           *d1 = dev("0000:02:08.0"), *d2 = dev("0000:02:10.0"), *g1 = dev("0000:03:00.0"),
           *g2 = dev("0000:04:00.0"), *g3 = dev("0000:05:00.0"), *nvme = dev("0000:06:00.0");
    ht_config(rp, 0x8086, 0x2030, 0x060400, 1, 4, 0, 3, 16, 3, 16);
    ht_acs(rp, 0x005f, 0x001d);
    ht_place(root, rp, NULL);
    ht_config(rp2, 0x8086, 0x2032, 0x060400, 1, 4, 0, 3, 16, 3, 16);
    ht_acs(rp2, 0x005f, 0x001d);
    ht_place(root, rp2, NULL);
    ht_config(usp, 0x10b5, 0x8747, 0x060400, 1, 5, 0, 3, 16, 3, 16);
    ht_place(root, usp, rp);
    ht_config(d1, 0x10b5, 0x8747, 0x060400, 1, 6, 0, 3, 16, 3, 16);
    ht_acs(d1, 0x001f, 0x001f);
    ht_place(root, d1, usp);
    /* RR implemented but off; CR not implemented: counts as enabled. */
    ht_config(d2, 0x10b5, 0x8747, 0x060400, 1, 6, 0, 3, 16, 3, 16);
    ht_acs(d2, 0x0017, 0x0013);
    ht_place(root, d2, usp);
    ht_config(g1, 0x10de, 0x1db4, 0x030200, 0, 0, 0x10000000u, 3, 16, 3, 16);
    ht_place(root, g1, d1);
    ht_group(root, g1, "20");
    ht_config(g2, 0x10de, 0x1db4, 0x030200, 0, 0, 0, 3, 16, 3, 16);
    ht_place(root, g2, d2);
    ht_group(root, g2, "21");
    ht_group(root, d2, "21");
    ht_config(g3, 0x1002, 0x66af, 0x030000, 0, 0, 0, 3, 16, 3, 16);
    ht_place(root, g3, rp2);
    ht_config(nvme, 0x144d, 0xa808, 0x010802, 0, 0, 0, 3, 4, 3, 4);
    ht_place(root, nvme, rp2);
    ht_driver(root, nvme, "nvme");
    ht_group(root, nvme, "21");
    ht_dev *all[] = { rp, rp2, usp, d1, d2, g1, g2, g3, nvme };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        free(all[i]);
    return root;
}

static void switch_acs_cliques_groups(void **state)
{
    char *root = switched();
    gw_host *h = scan(root);
    assert_int_equal(gw_host_gpu_count(h), 3);
    assert_int_equal(gw_host_error_count(h), 0);

    const gw_gpu *g1 = gw_host_gpu(h, 0), *g2 = gw_host_gpu(h, 1), *g3 = gw_host_gpu(h, 2);
    assert_string_equal(g1->address, "0000:03:00.0");
    assert_int_equal(g1->n_upstream, 3);
    assert_string_equal(g1->upstream[0].address, "0000:02:08.0");
    assert_int_equal(g1->upstream[0].port_type, GW_PORT_DOWNSTREAM);
    assert_string_equal(g1->upstream[1].address, "0000:01:00.0");
    assert_int_equal(g1->upstream[1].port_type, GW_PORT_UPSTREAM);
    assert_false(g1->upstream[1].acs.present);
    assert_true(g1->upstream[1].acs.known);
    assert_string_equal(g1->upstream[2].address, "0000:00:01.0");
    assert_true(g1->acs_path_ok);
    assert_string_equal(g1->acs_evidence,
                        "0000:02:08.0 downstream: SV+ RR+ CR+ UF+ (ACS cap 001f ctrl 001f); "
                        "0000:00:01.0 root_port: SV+ RR+ CR+ UF+ (ACS cap 005f ctrl 001d)");
    assert_true(g1->flr);
    assert_true(g1->group_viable);
    assert_string_equal(g1->iommu_group, "20");
    assert_null(g1->driver);
    assert_int_equal(g1->numa_node, -1);
    assert_int_equal(g1->clique, 0);

    assert_string_equal(g2->address, "0000:04:00.0");
    assert_false(g2->flr);
    assert_true(g2->upstream[0].acs.sv);
    assert_false(g2->upstream[0].acs.rr);
    assert_true(g2->upstream[0].acs.cr);
    assert_true(g2->upstream[0].acs.uf);
    assert_false(g2->acs_path_ok);
    assert_string_equal(g2->acs_evidence,
                        "0000:02:10.0 downstream: ACS RR not enabled (ACS cap 0017 ctrl 0013); "
                        "0000:00:01.0 root_port: SV+ RR+ CR+ UF+ (ACS cap 005f ctrl 001d)");
    assert_false(g2->group_viable);
    assert_int_equal(g2->n_group_members, 3);
    assert_string_equal(g2->group_members[0].address, "0000:02:10.0");
    assert_true(g2->group_members[0].is_bridge);
    assert_false(g2->group_members[0].same_slot);
    assert_string_equal(g2->group_members[2].address, "0000:06:00.0");
    assert_string_equal(g2->group_members[2].driver, "nvme");
    assert_false(g2->group_members[2].is_bridge);
    assert_string_equal(g2->group_evidence, "group 21 also holds 0000:06:00.0 [nvme]: neither "
                                            "functions of slot 0000:04:00 nor bridges");
    assert_int_equal(g2->clique, 0);

    assert_string_equal(g3->address, "0000:05:00.0");
    assert_int_equal(g3->class_code, 0x0300);
    assert_int_equal(g3->clique, -1);
    assert_false(g3->group_viable);
    assert_string_equal(g3->group_evidence,
                        "no IOMMU group: the IOMMU is off or absent, so the GPU cannot be isolated");
    assert_int_equal(g3->n_errors, 0);

    assert_int_equal(gw_host_clique_count(h), 1);
    assert_int_equal(gw_host_clique_size(h, 0), 2);
    assert_string_equal(gw_host_clique_member(h, 0, 0), "0000:03:00.0");
    assert_string_equal(gw_host_clique_member(h, 0, 1), "0000:04:00.0");
    assert_null(gw_host_clique_member(h, 0, 2));
    assert_null(gw_host_clique_member(h, 1, 0));
    gw_host_free(h);
    ht_rmroot(root);
}

/* 17 switches with two GPUs each: one clique more than QEMU can number. */
static void seventeen_cliques(void **state)
{
    char *root = ht_mkroot();
    for (int i = 0; i < 17; i++) {
        int b = 1 + 4 * i;
        char a[13];
        ht_dev *rp, *usp, *d[2], *g[2];
        snprintf(a, sizeof a, "0000:00:%02x.0", i + 1);
        rp = dev(a);
        ht_config(rp, 0x8086, 0x2030, 0x060400, 1, 4, 0, 3, 16, 3, 16);
        ht_acs(rp, 0x005f, 0x001d);
        ht_place(root, rp, NULL);
        snprintf(a, sizeof a, "0000:%02x:00.0", b);
        usp = dev(a);
        ht_config(usp, 0x1000, 0xc010, 0x060400, 1, 5, 0, 4, 16, 4, 16);
        ht_place(root, usp, rp);
        for (int k = 0; k < 2; k++) {
            snprintf(a, sizeof a, "0000:%02x:%02x.0", b + 1, k);
            d[k] = dev(a);
            ht_config(d[k], 0x1000, 0xc010, 0x060400, 1, 6, 0, 4, 16, 4, 16);
            ht_acs(d[k], 0x005f, 0x001d);
            ht_place(root, d[k], usp);
            snprintf(a, sizeof a, "0000:%02x:00.0", b + 2 + k);
            g[k] = dev(a);
            ht_config(g[k], 0x10de, 0x2330, 0x030200, 0, 0, 0x10000000u, 5, 16, 5, 16);
            ht_place(root, g[k], d[k]);
        }
        free(rp);
        free(usp);
        free(d[0]);
        free(d[1]);
        free(g[0]);
        free(g[1]);
    }
    gw_host *h = scan(root);
    assert_int_equal(gw_host_gpu_count(h), 34);
    assert_int_equal(gw_host_clique_count(h), 17);
    assert_string_equal(gw_host_clique_member(h, 16, 0), "0000:43:00.0");
    assert_string_equal(gw_host_clique_member(h, 16, 1), "0000:44:00.0");
    assert_int_equal(gw_host_find_gpu(h, "0000:44:00.0")->clique, 16);
    assert_int_equal(gw_host_find_gpu(h, "0000:03:00.0")->clique, 0);
    assert_int_equal(gw_host_error_count(h), 1);
    assert_string_equal(gw_host_error(h, 0), "17 P2P cliques: QEMU's clique id has 4 bits "
                                             "(0-15), so cliques 16 and above cannot be expressed");
    gw_host_free(h);
    ht_rmroot(root);
}

static char *path_of(const char *root, const char *addr, const char *attr)
{
    return gw_strdup_printf("%s/sys/bus/pci/devices/%s/%s", root, addr, attr);
}

static void assert_error(const gw_gpu *g, size_t i, const char *expected)
{
    if (i >= g->n_errors)
        fail_msg("%s: no error #%zu (want '%s')", g->address, i, expected);
    assert_string_equal(g->errors[i], expected);
}

static void broken_attributes(void **state)
{
    char *root = workstation();
    char *p = path_of(root, "0000:01:00.0", "vendor");
    assert_int_equal(unlink(p), 0);
    free(p);
    p = path_of(root, "0000:01:00.0", "numa_node");
    ht_write(strrchr(p, '/') ? (*strrchr(p, '/') = '\0', p) : p, "numa_node", "banana\n", 7);
    free(p);
    gw_host *h = scan(root);
    const gw_gpu *g = gw_host_gpu(h, 0);
    assert_int_equal(g->vendor_id, 0x10de);   /* from config space */
    assert_int_equal(g->numa_node, -1);
    assert_int_equal(g->n_errors, 2);
    char *want = gw_strdup_printf("vendor/device: Cannot open %s/sys/bus/pci/devices/0000:01:00.0/"
                                  "vendor: No such file or directory; ids taken from config space",
                                  root);
    assert_error(g, 0, want);
    free(want);
    want = gw_strdup_printf("numa_node: %s/sys/bus/pci/devices/0000:01:00.0/numa_node: not an "
                            "integer: 'banana'", root);
    assert_error(g, 1, want);
    free(want);
    gw_host_free(h);
    ht_rmroot(root);
}

static void config_truncated_or_all_ones(void **state)
{
    char *root = workstation();
    char *dir = path_of(root, "0000:01:00.0", "");
    uint8_t ones[4096];
    memset(ones, 0xff, sizeof ones);
    ht_write(dir, "config", ones, sizeof ones);
    free(dir);
    dir = path_of(root, "0000:01:00.1", "");
    char *cfg = gw_strdup_printf("%s/config", dir);
    uint8_t head[40];
    FILE *f = fopen(cfg, "r");
    assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    ht_write(dir, "config", head, sizeof head);
    free(cfg);
    free(dir);
    gw_host *h = scan(root);
    const gw_gpu *g = gw_host_gpu(h, 0);
    assert_int_equal(g->n_errors, 2);
    assert_error(g, 0, "config space reads all-ones (vendor ffff): the device fell off the bus "
                       "(or is powered off); nothing from config space can be trusted");
    /* the slot's other function reports through its GPU */
    assert_error(g, 1, "function 0000:01:00.1: config: truncated: 40 bytes, less than the "
                       "64-byte header");
    assert_int_equal(g->vendor_id, 0x10de);  /* the kernel's cached sysfs view */
    assert_false(g->flr);
    assert_false(g->ats_present);
    assert_false(g->dsn_present);
    assert_true(g->config_all_ones);
    assert_int_equal(gw_host_error_count(h), 0);
    gw_host_free(h);
    ht_rmroot(root);
}

static void dangling_group_and_junk_entries(void **state)
{
    char *root = workstation();
    char *p = gw_strdup_printf("%s/sys/kernel/iommu_groups/7", root);
    char *cmd = gw_strdup_printf("rm -rf '%s'", p);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(p);
    p = gw_strdup_printf("%s/sys/bus/pci/devices/not-a-device", root);
    assert_int_equal(mkdir(p, 0755), 0);
    free(p);
    p = gw_strdup_printf("%s/sys/bus/pci/devices/.hidden", root);
    assert_int_equal(mkdir(p, 0755), 0);
    free(p);

    gw_host *h = scan(root);
    assert_int_equal(gw_host_gpu_count(h), 1);
    const gw_gpu *g = gw_host_gpu(h, 0);
    assert_null(g->iommu_group);
    assert_false(g->group_viable);
    assert_string_equal(g->group_evidence, "IOMMU group unknown: the iommu_group link is dangling");
    assert_int_equal(g->n_errors, 2);
    assert_error(g, 0, "iommu_group: dangling link to '../../../../kernel/iommu_groups/7' "
                       "(target missing)");
    /* the HDA function's link dangles too */
    assert_error(g, 1, "function 0000:01:00.1: iommu_group: dangling link to "
                       "'../../../../kernel/iommu_groups/7' (target missing)");
    assert_int_equal(gw_host_error_count(h), 1);
    p = gw_strdup_printf("%s/sys/bus/pci/devices/not-a-device: not a PCI address (dddd:bb:dd.f); "
                         "skipped", root);
    assert_string_equal(gw_host_error(h, 0), p);
    free(p);
    gw_host_free(h);
    ht_rmroot(root);
}

static void flat_layout_has_no_path(void **state)
{
    char *root = ht_mkroot();
    ht_dev *g = dev("0000:3b:00.0");
    ht_config(g, 0x10de, 0x20b0, 0x030200, 0, 0, 0x10000000u, 3, 16, 4, 16);
    ht_w32(g, 0x40 + 0x2c, 0x1e);   /* LnkCap2: 2.5-16 GT/s, above LnkCap's 8 */
    /* a real directory directly in devices/, not a link into sys/devices */
    snprintf(g->path, sizeof g->path, "%s/sys/bus/pci/devices/%s", root, g->addr);
    ht_mkdirs(g->path);
    ht_write(g->path, "vendor", "0x10de\n", 7);
    ht_write(g->path, "device", "0x20b0\n", 7);
    ht_write(g->path, "class", "0x030200\n", 9);
    ht_write(g->path, "config", g->cfg, g->cfg_len);
    gw_host *h = scan(root);
    const gw_gpu *gpu = gw_host_gpu(h, 0);
    assert_int_equal(gpu->n_upstream, 0);
    assert_false(gpu->acs_path_ok);
    assert_string_equal(gpu->acs_evidence, "upstream path incomplete: ports above are unknown");
    assert_int_equal(gpu->n_errors, 1);
    char *want = gw_strdup_printf("upstream path: cannot place in the PCI tree: the parent "
                                  "directory %s/sys/bus/pci/devices is neither a PCI function nor "
                                  "a root bus (pciDDDD:BB); flat sysfs layout?", root);
    assert_string_equal(gpu->errors[0], want);
    free(want);
    /* no link files: LnkSta/LnkCap from config space, max speed from LnkCap2 */
    assert_true(gpu->link.present);
    assert_true(gpu->link.speed_gts == 16.0);
    assert_int_equal(gpu->link.width, 16);
    assert_true(gpu->link.max_speed_gts == 16.0);
    assert_int_equal(gpu->link.max_width, 16);
    assert_int_equal(gpu->numa_node, -1);
    assert_null(gpu->local_cpulist);
    assert_int_equal(gpu->n_reset_methods, 0);
    assert_true(gpu->flr);
    free(g);
    gw_host_free(h);
    ht_rmroot(root);
}

static void scan_fails_without_a_pci_tree(void **state)
{
    gw_host_options o = GW_HOST_OPTIONS_INIT;
    o.root = "/nonexistent-gpuwarden-root";
    gw_host *h = (gw_host *)0x1;
    assert_int_equal(gw_host_scan(&h, &o), -ENOENT);
    assert_null(h);
    assert_string_equal(gw_error_message(), "cannot read /nonexistent-gpuwarden-root/sys/bus/pci/"
                                            "devices: No such file or directory");
    o.version = 99;
    assert_int_equal(gw_host_scan(&h, &o), -EINVAL);
    assert_int_equal(gw_host_scan(NULL, NULL), -EINVAL);
}

struct thread_arg {
    const char *root;
    int ok;
};

static void *scan_thread(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < 5; i++) {
        gw_host_options o = GW_HOST_OPTIONS_INIT;
        o.root = a->root;
        gw_host *h;
        if (gw_host_scan(&h, &o) < 0)
            return NULL;
        const gw_gpu *g = gw_host_gpu(h, 0);
        if (g && g->n_errors == 1 && strstr(g->errors[0], "vendor/device: Cannot open"))
            a->ok++;
        gw_host_free(h);
    }
    return NULL;
}

/* libpci's fatal error inside a scan unwinds on the thread that hit it. */
static void libpci_errors_per_thread(void **state)
{
    char *root = workstation();
    char *p = path_of(root, "0000:01:00.0", "vendor");
    assert_int_equal(unlink(p), 0);
    free(p);
    pthread_t t[4];
    struct thread_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thread_arg){ root, 0 };
        assert_int_equal(pthread_create(&t[i], NULL, scan_thread, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].ok, 5);
    }
    ht_rmroot(root);
}

static void attribute_formats(void **state)
{
    char *root = ht_mkroot();
    char *d = gw_strdup_printf("%s/d", root);
    ht_mkdirs(d);
    gw_root R;      /* the readers take the host root and a directory below it */
    assert_int_equal(gw_root_init(&R, root), 0);
    assert_true(gw_parse_link_speed("2.5 GT/s PCIe") == 2.5);
    assert_true(gw_parse_link_speed("8 GT/s") == 8.0);        /* kernels before 5.x */
    assert_true(gw_parse_link_speed("Unknown") == 0);

    gw_link l;
    assert_int_equal(gw_attr_link(&R, "d", &l), 0);
    assert_false(l.present);
    ht_printf(d, "current_link_speed", "Unknown\n");
    ht_printf(d, "current_link_width", "0\n");
    assert_int_equal(gw_attr_link(&R, "d", &l), 0);
    assert_true(l.present);
    assert_true(l.speed_gts == 0);
    ht_printf(d, "max_link_width", "255\n");     /* the kernel's unknown width */
    assert_int_equal(gw_attr_link(&R, "d", &l), 0);
    assert_int_equal(l.max_width, 0);
    ht_printf(d, "max_link_width", "64\n");
    assert_int_equal(gw_attr_link(&R, "d", &l), -EINVAL);
    ht_printf(d, "max_link_width", "16\n");
    ht_printf(d, "max_link_speed", "fast\n");
    assert_int_equal(gw_attr_link(&R, "d", &l), -EINVAL);

    gw_aer_counts aer;
    assert_int_equal(gw_attr_aer(&R, "d", &aer), 0);
    assert_int_equal(aer.correctable, -1);
    ht_printf(d, "aer_dev_correctable", "RxErr 1\nTOTAL_ERR_CORX 3\n");
    assert_int_equal(gw_attr_aer(&R, "d", &aer), -EINVAL);
    assert_non_null(strstr(gw_error_message(), "no TOTAL_ERR_COR line"));

    int numa;
    assert_int_equal(gw_attr_numa_node(&R, "d", &numa), 0);
    assert_int_equal(numa, -1);
    ht_printf(d, "numa_node", "-1\n");
    assert_int_equal(gw_attr_numa_node(&R, "d", &numa), 0);
    assert_int_equal(numa, -1);
    ht_printf(d, "numa_node", "-2\n");
    assert_int_equal(gw_attr_numa_node(&R, "d", &numa), -EINVAL);
    assert_int_equal(numa, -1);

    char *cpus;
    ht_printf(d, "local_cpulist", "0-3,8\n");
    assert_int_equal(gw_attr_local_cpulist(&R, "d", &cpus), 0);
    assert_string_equal(cpus, "0-3,8");
    free(cpus);
    ht_printf(d, "local_cpulist", "ff,ff\n");
    assert_int_equal(gw_attr_local_cpulist(&R, "d", &cpus), -EINVAL);
    assert_null(cpus);

    uint64_t bars[6];
    ht_printf(d, "resource", "garbage\n");
    assert_int_equal(gw_attr_bar_sizes(&R, "d", bars), -EINVAL);

    gw_strv m = { 0 };
    assert_int_equal(gw_attr_reset_methods(&R, "d", &m), 0);
    assert_int_equal(m.n, 0);
    ht_printf(d, "reset_method", "device_specific flr pm bus\n");
    assert_int_equal(gw_attr_reset_methods(&R, "d", &m), 0);
    assert_int_equal(m.n, 4);
    assert_string_equal(m.v[0], "device_specific");
    assert_string_equal(m.v[3], "bus");
    gw_strv_free(&m);

    /* the kernel's pci_acs_flags_enabled */
    assert_true(gw_acs_flag_enabled(0x0000, 0x0000, 0x0004));   /* not implemented */
    assert_false(gw_acs_flag_enabled(0x0004, 0x0000, 0x0004));  /* implemented, off */
    assert_true(gw_acs_flag_enabled(0x0004, 0x0004, 0x0004));
    assert_string_equal(gw_port_type_name(GW_PORT_DOWNSTREAM), "downstream");
    assert_string_equal(gw_port_type_name(GW_PORT_NONE), "none");
    assert_string_equal(gw_port_type_name(3), "unknown");
    gw_root_clear(&R);
    free(d);
    ht_rmroot(root);
}

/* Every path under `dir` with type, mode and size, sorted: a fingerprint
 * that shows any write to a tree. */
static char *listing(const char *dir)
{
    char *cmd = gw_strdup_printf("cd '%s' && find . -printf '%%p %%y %%m %%s %%l\\n' | sort", dir);
    FILE *p = popen(cmd, "r");
    free(cmd);
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(1, cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    pclose(p);
    return buf;
}

static char *json_of(const char *root)
{
    gw_host *h = scan(root);
    char *s = NULL;
    assert_int_equal(gw_host_to_json(h, &s), 0);
    gw_host_free(h);
    /* paths in messages name the root: make them comparable */
    size_t rl = strlen(root);
    for (char *p = strstr(s, root); p; p = strstr(p, root)) {
        memmove(p + 4, p + rl, strlen(p + rl) + 1);
        memcpy(p, "ROOT", 4);
    }
    return s;
}

static void snapshot_replays_the_same(char *(*make)(void), void (*breakit)(const char *root))
{
    char *root = make();
    if (breakit)
        breakit(root);
    char *before = listing(root);
    char *out = gw_strdup_printf("%s.snap", root);
    size_t nf = 0, ns = 9;
    assert_int_equal(gw_host_snapshot(root, out, &nf, &ns), 0);
    char *after = listing(root);
    assert_string_equal(before, after);       /* the source was only read */
    char *a = json_of(root), *b = json_of(out);
    assert_string_equal(a, b);
    free(a);
    free(b);
    free(before);
    free(after);
    char *cmd = gw_strdup_printf("rm -rf '%s'", out);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(out);
    ht_rmroot(root);
}

static void break_many(const char *root)
{
    char *p = path_of(root, "0000:03:00.0", "vendor");
    assert_int_equal(unlink(p), 0);
    free(p);
    p = path_of(root, "0000:04:00.0", "");
    ht_write(p, "numa_node", "banana\n", 7);
    uint8_t ones[4096];
    memset(ones, 0xff, sizeof ones);
    ht_write(p, "config", ones, sizeof ones);
    free(p);
    p = gw_strdup_printf("%s/sys/bus/pci/devices/garbage", root);
    assert_int_equal(mkdir(p, 0755), 0);
    free(p);
    p = gw_strdup_printf("%s/sys/bus/pci/devices/0000:09:00.0", root);
    assert_int_equal(symlink("../../../devices/pci0000:00/0000:09:00.0", p), 0);
    free(p);
    p = gw_strdup_printf("rm -rf '%s/sys/kernel/iommu_groups/20'", root);
    assert_int_equal(system(p), 0);
    free(p);
}

static void snapshot_of_test_trees(void **state)
{
    snapshot_replays_the_same(workstation, NULL);
    snapshot_replays_the_same(switched, NULL);
    snapshot_replays_the_same(switched, break_many);
}

static void snapshot_placeholders_and_refusals(void **state)
{
    char *root = workstation();
    char *dir = path_of(root, "0000:01:00.0", "");
    ht_write(dir, "resource0", "mmio", 4);
    ht_write(dir, "rom", "firmware", 8);
    free(dir);
    char *out = gw_strdup_printf("%s.snap", root);
    size_t nf = 0, ns = 9;
    assert_int_equal(gw_host_snapshot(root, out, &nf, &ns), 0);
    assert_int_equal(nf, 3);
    assert_int_equal(ns, 0);
    struct stat st;
    const char *gpu = "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0";
    char *p = gw_strdup_printf("%s/%s/reset", out, gpu);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0200);
    assert_int_equal(st.st_size, 0);
    free(p);
    p = gw_strdup_printf("%s/%s/resource0", out, gpu);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 0);
    free(p);
    p = gw_strdup_printf("%s/%s/rom", out, gpu);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 0);
    free(p);
    p = gw_strdup_printf("%s/%s/config", out, gpu);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 4096);
    free(p);
    p = gw_strdup_printf("%s/sys/kernel/iommu_groups/7/devices/0000:01:00.1", out);
    char *real = realpath(p, NULL);
    char *want = gw_strdup_printf("%s/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.1", out);
    assert_non_null(real);
    assert_string_equal(real, want);
    free(real);
    free(want);
    free(p);

    /* a second snapshot into the same (now non-empty) directory */
    assert_int_equal(gw_host_snapshot(root, out, NULL, NULL), -EEXIST);
    /* never into the source tree, sysfs or procfs */
    char *before = listing(root);
    char *inside = gw_strdup_printf("%s/sys/bus/pci/snap", root);
    assert_int_equal(gw_host_snapshot(root, inside, NULL, NULL), -EINVAL);
    assert_non_null(strstr(gw_error_message(), "refusing to write into"));
    free(inside);
    assert_int_equal(gw_host_snapshot(root, "/sys/gpuwarden-snap", NULL, NULL), -EINVAL);
    assert_int_equal(gw_host_snapshot(root, "/proc/gpuwarden-snap", NULL, NULL), -EINVAL);
    char *after = listing(root);
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(gw_host_snapshot("/nonexistent-root", "/tmp/gw-never", NULL, NULL), -ENOENT);
    assert_int_equal(access("/tmp/gw-never", F_OK), -1);
    char *cmd = gw_strdup_printf("rm -rf '%s'", out);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(out);
    ht_rmroot(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_field_of_one_gpu),
        cmocka_unit_test(json_schema),
        cmocka_unit_test(switch_acs_cliques_groups),
        cmocka_unit_test(seventeen_cliques),
        cmocka_unit_test(broken_attributes),
        cmocka_unit_test(config_truncated_or_all_ones),
        cmocka_unit_test(dangling_group_and_junk_entries),
        cmocka_unit_test(flat_layout_has_no_path),
        cmocka_unit_test(scan_fails_without_a_pci_tree),
        cmocka_unit_test(libpci_errors_per_thread),
        cmocka_unit_test(attribute_formats),
        cmocka_unit_test(snapshot_of_test_trees),
        cmocka_unit_test(snapshot_placeholders_and_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
