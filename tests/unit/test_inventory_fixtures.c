/* SPDX-License-Identifier: Apache-2.0 */
/* The inventory of every real test host (tests/fixtures/hosts, built from
 * lspci dumps of real machines), read by gw_host_scan() through libpci and
 * built by gw_inventory_new_from_host(), in both models, asserted field by
 * field against expectations written out from the hosts' README facts (GPU
 * addresses, ids, NUMA nodes, cliques) and the dumps' lspci names - never
 * from this code's output. Also: one GPU of a clique quarantined, one
 * attached, generation stability, and what the broken hosts yield.
 *
 * Names come from a pci.ids written by this test with exactly the names the
 * dumps' lspci printed (10de:2c02 had none there, so "Device 2c02"), so the
 * result does not depend on the pci.ids version of the machine running it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "inventory_hosts.h"

#define OWN "OWNER_CYBORG"
#define HOSTS GW_SOURCE_DIR "/tests/fixtures/hosts/"

static char pci_ids_dir[] = "/tmp/gw-invfix-XXXXXX";
static char pci_ids[sizeof pci_ids_dir + 16];

/* The dumps' own names: "NVIDIA Corporation GA102GL [RTX A6000] [10de:2230]"
 * (x299), "TU104GL [Quadro RTX 5000] [10de:1eb0]" (sm4029), "GA106 [GeForce
 * RTX 3060 Lite Hash Rate] [10de:2504]" (omen), "Intel Corporation Arrow
 * Lake-U [Intel Graphics] [8086:7d67]" and "NVIDIA Corporation Device
 * [10de:2c02]" (z890). */
static const char PCI_IDS[] = "10de  NVIDIA Corporation\n"
                              "\t1eb0  TU104GL [Quadro RTX 5000]\n"
                              "\t2230  GA102GL [RTX A6000]\n"
                              "\t2504  GA106 [GeForce RTX 3060 Lite Hash Rate]\n"
                              "8086  Intel Corporation\n"
                              "\t7d67  Arrow Lake-U [Intel Graphics]\n";

static int setup(void **state)
{
    if (!mkdtemp(pci_ids_dir))
        return -1;
    snprintf(pci_ids, sizeof pci_ids, "%s/pci.ids", pci_ids_dir);
    FILE *f = fopen(pci_ids, "w");
    if (!f)
        return -1;
    fputs(PCI_IDS, f);
    return fclose(f) ? -1 : 0;
}

static int teardown(void **state)
{
    unlink(pci_ids);
    rmdir(pci_ids_dir);
    return 0;
}

static gw_host *scan(const char *name)
{
    char root[4096];
    snprintf(root, sizeof root, HOSTS "%s", name);
    gw_host_options ho = GW_HOST_OPTIONS_INIT;
    ho.root = root;
    ho.pci_ids = pci_ids;
    gw_host *host = NULL;
    if (gw_host_scan(&host, &ho) < 0)
        fail_msg("scan %s: %s", name, gw_error_message());
    return host;
}

/* States for the state function: every GPU allocatable except these. */
typedef struct st {
    const char *address;
    gw_state state;
    bool attached;
} st;

typedef struct st_list {
    const st *v;
    size_t n;
} st_list;

static int state_of(const char *address, gw_state *state, bool *attached, void *userdata)
{
    const st_list *l = userdata;
    assert_false(*attached);
    *state = GW_STATE_ALLOCATABLE;
    for (size_t i = 0; l && i < l->n; i++)
        if (!strcmp(l->v[i].address, address)) {
            *state = l->v[i].state;
            *attached = l->v[i].attached;
        }
    return 0;
}

static gw_inventory *build(const gw_host *host, gw_inventory_model model, const st_list *states)
{
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "cmp1";
    o.model = model;
    gw_inventory *inv = NULL;
    if (gw_inventory_new_from_host(&inv, host, state_of, (void *)states, &o) < 0)
        fail_msg("gw_inventory_new_from_host: %s", gw_error_message());
    assert_null(gw_inventory_clique_error(inv));
    assert_string_equal(gw_inventory_host(inv), "cmp1");
    assert_int_equal(gw_inventory_model_of(inv), model);
    return inv;
}

/* Every deployable as expected, in order, and every GPU the scan found in
 * exactly one of them. */
static void expect(const gw_inventory *inv, const gw_host *host, const exp_dep *e, size_t n)
{
    assert_int_equal(gw_inventory_deployable_count(inv), n);
    for (size_t i = 0; i < n; i++)
        assert_dep(gw_inventory_deployable(inv, i), &e[i]);
    assert_null(gw_inventory_deployable(inv, n));
    for (size_t g = 0; g < gw_host_gpu_count(host); g++) {
        const char *addr = gw_host_gpu(host, g)->address;
        size_t seen = 0;
        for (size_t i = 0; i < n; i++) {
            const gw_deployable *d = gw_inventory_deployable(inv, i);
            for (size_t k = 0; k < d->n_gpus; k++)
                seen += !strcmp(d->gpus[k], addr);
        }
        assert_int_equal(seen, 1);
        assert_non_null(gw_inventory_find_gpu(inv, addr));
    }
}

/* Build, check, build again from a fresh scan: the same generation. Returns
 * the generation. */
static uint64_t check(const char *name, gw_inventory_model model, const st_list *states, const exp_dep *e,
                      size_t n)
{
    gw_host *host = scan(name);
    gw_inventory *inv = build(host, model, states);
    expect(inv, host, e, n);
    uint64_t gen = gw_inventory_generation(inv);
    assert_true(gen != 0 && gen < (1ull << 53));
    gw_inventory_free(inv);
    gw_host_free(host);

    host = scan(name);
    inv = build(host, model, states);
    assert_int_equal(gw_inventory_generation(inv), gen);
    gw_inventory_free(inv);
    gw_host_free(host);
    return gen;
}

#define CHECK(name, model, states, e) check(name, model, states, e, N(e))
#define STATES(...) (&(st_list){ (const st[]){ __VA_ARGS__ }, sizeof((const st[]){ __VA_ARGS__ }) / sizeof(st) })

/* ---- The x299 family: x299-3xa6000, acs-off, acs-off-root, allones -------
 * 3x RTX A6000 10de:2230 class 0300, NUMA 0; 1a:00.0 alone below one PEX
 * 8747, 67:00.0 and 68:00.0 below the other: clique 0. The variants change
 * ACS, IOMMU groups or config readability, none of which the inventory
 * looks at: isolation is the clean-up's verdict, which arrives as a state. */

#define X_1A(res, ...)                                                                            \
    { "cmp1_0000:1a:00.0", 1, res, -1, false, PCIJ("1a", "00", "0"),                            \
      { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_NUMA_NODE_0" }, { __VA_ARGS__ }, { "0000:1a:00.0" }, DEV_A6000 }
#define X_C0(bus, res, ...)                                                                       \
    { "cmp1_0000:" bus ":00.0", 1, res, -1, false, PCIJ(bus, "00", "0"),                        \
      { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" }, { __VA_ARGS__ }, \
      { "0000:" bus ":00.0" }, DEV_A6000 }
#define X_CLIQUE0(res, ...)                                                                       \
    { "cmp1_clique0", 2, res, 0, false, PCIJ("67", "00", "0"),                                    \
      { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" }, { __VA_ARGS__ }, \
      { "0000:67:00.0", "0000:68:00.0" }, DEV_A6000 }
#define H1A PCIJ("1a", "00", "0")
#define H67 PCIJ("67", "00", "0")
#define H68 PCIJ("68", "00", "0")

static void x299_family(const char *name)
{
    const exp_dep per_gpu[] = { X_1A(0, H1A), X_C0("67", 0, H67), X_C0("68", 0, H68) };
    const exp_dep per_clique[] = { X_1A(0, H1A), X_CLIQUE0(0, H67, H68) };
    uint64_t g_gpu = CHECK(name, GW_INVENTORY_PER_GPU, NULL, per_gpu);
    uint64_t g_clq = CHECK(name, GW_INVENTORY_PER_CLIQUE, NULL, per_clique);
    assert_true(g_gpu != g_clq);

    gw_host *host = scan(name);
    gw_inventory *inv = build(host, GW_INVENTORY_PER_CLIQUE, NULL);
    assert_ptr_equal(gw_inventory_find(inv, "cmp1_clique0"), gw_inventory_deployable(inv, 1));
    assert_ptr_equal(gw_inventory_find_gpu(inv, "0000:68:00.0"), gw_inventory_deployable(inv, 1));
    assert_ptr_equal(gw_inventory_find_gpu(inv, "0000:1a:00.0"), gw_inventory_deployable(inv, 0));
    assert_null(gw_inventory_find(inv, "cmp1_clique1"));
    assert_null(gw_inventory_find(inv, "cmp1_0000:67:00.0"));
    assert_null(gw_inventory_find_gpu(inv, "0000:67:00.1"));     /* the HDA function */
    gw_inventory_free(inv);
    gw_host_free(host);

    /* 68:00.0 quarantined: reserved 1, its handle gone, still counted. */
    const st_list *q68 = STATES({ "0000:68:00.0", GW_STATE_QUARANTINED, false });
    const exp_dep q_gpu[] = { X_1A(0, H1A), X_C0("67", 0, H67), X_C0("68", 1, NULL) };
    const exp_dep q_clq[] = { X_1A(0, H1A), X_CLIQUE0(1, H67) };
    assert_true(CHECK(name, GW_INVENTORY_PER_GPU, q68, q_gpu) != g_gpu);
    assert_true(CHECK(name, GW_INVENTORY_PER_CLIQUE, q68, q_clq) != g_clq);

    /* 67:00.0 attached: not reserved, its handle stays; nothing else moves. */
    const st_list *a67 = STATES({ "0000:67:00.0", GW_STATE_ATTACHED, false });
    assert_int_equal(CHECK(name, GW_INVENTORY_PER_GPU, a67, per_gpu), g_gpu);
    assert_int_equal(CHECK(name, GW_INVENTORY_PER_CLIQUE, a67, per_clique), g_clq);

    /* Both: 67 in a VM, 68 quarantined; then 68 quarantined by the operator
     * while a VM still holds it (the attached flag): handle kept, not reserved. */
    const st_list *both = STATES({ "0000:67:00.0", GW_STATE_ATTACHED, false },
                                 { "0000:68:00.0", GW_STATE_QUARANTINED, false });
    CHECK(name, GW_INVENTORY_PER_GPU, both, q_gpu);
    CHECK(name, GW_INVENTORY_PER_CLIQUE, both, q_clq);
    const st_list *held = STATES({ "0000:68:00.0", GW_STATE_QUARANTINED, true });
    CHECK(name, GW_INVENTORY_PER_GPU, held, per_gpu);
    CHECK(name, GW_INVENTORY_PER_CLIQUE, held, per_clique);

    /* The lone GPU quarantined: its own deployable in both models. */
    const st_list *q1a = STATES({ "0000:1a:00.0", GW_STATE_QUARANTINED, false });
    const exp_dep l_gpu[] = { X_1A(1, NULL), X_C0("67", 0, H67), X_C0("68", 0, H68) };
    const exp_dep l_clq[] = { X_1A(1, NULL), X_CLIQUE0(0, H67, H68) };
    CHECK(name, GW_INVENTORY_PER_GPU, q1a, l_gpu);
    CHECK(name, GW_INVENTORY_PER_CLIQUE, q1a, l_clq);
}

static void x299_3xa6000(void **state) { x299_family("x299-3xa6000"); }
static void acs_off(void **state) { x299_family("acs-off"); }
static void acs_off_root(void **state) { x299_family("acs-off-root"); }

/* 68:00.0 and its HDA read all-ones; sysfs still has the ids, class and
 * NUMA node the kernel cached at enumeration, so the GPU is in the
 * inventory like the others (the clean-up is what quarantines it). */
static void allones(void **state)
{
    gw_host *host = scan("allones");
    const gw_gpu *g = gw_host_find_gpu(host, "0000:68:00.0");
    assert_non_null(g);
    assert_true(g->n_errors >= 1);
    assert_non_null(strstr(g->errors[0], "all-ones"));
    assert_int_equal(gw_host_find_gpu(host, "0000:67:00.0")->n_errors, 0);
    gw_host_free(host);
    x299_family("allones");
}

/* ---- sm4029-8xrtx5000 ------------------------------------------------------
 * 8x Quadro RTX 5000 10de:1eb0 class 0300, NUMA 0; PEX 9797 at 18:00.0 over
 * 1a 1c 1d 1e (clique 0), PEX 9797 at 3b:00.0 over 3d 3f 40 41 (clique 1). */

#define SM(bus, c, res, ...)                                                                      \
    { "cmp1_0000:" bus ":00.0", 1, res, -1, false, PCIJ(bus, "00", "0"),                        \
      { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_" #c, "CUSTOM_NUMA_NODE_0" }, { __VA_ARGS__ }, \
      { "0000:" bus ":00.0" }, DEV_RTX5000 }
#define SMH(bus) PCIJ(bus, "00", "0")
#define SM_CLIQUE(c, first, res, gpus, ...)                                                       \
    { "cmp1_clique" #c, 4, res, c, false, PCIJ(first, "00", "0"),                                 \
      { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_" #c, "CUSTOM_NUMA_NODE_0" }, { __VA_ARGS__ }, \
      gpus, DEV_RTX5000 }
#define SM_C0 { "0000:1a:00.0", "0000:1c:00.0", "0000:1d:00.0", "0000:1e:00.0" }
#define SM_C1 { "0000:3d:00.0", "0000:3f:00.0", "0000:40:00.0", "0000:41:00.0" }

static const exp_dep SM_PER_GPU[] = {
    SM("1a", 0, 0, SMH("1a")), SM("1c", 0, 0, SMH("1c")), SM("1d", 0, 0, SMH("1d")), SM("1e", 0, 0, SMH("1e")),
    SM("3d", 1, 0, SMH("3d")), SM("3f", 1, 0, SMH("3f")), SM("40", 1, 0, SMH("40")), SM("41", 1, 0, SMH("41")),
};
static const exp_dep SM_PER_CLIQUE[] = {
    SM_CLIQUE(0, "1a", 0, SM_C0, SMH("1a"), SMH("1c"), SMH("1d"), SMH("1e")),
    SM_CLIQUE(1, "3d", 0, SM_C1, SMH("3d"), SMH("3f"), SMH("40"), SMH("41")),
};

static void sm4029(void **state)
{
    uint64_t g_gpu = CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_GPU, NULL, SM_PER_GPU);
    uint64_t g_clq = CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_CLIQUE, NULL, SM_PER_CLIQUE);
    assert_true(g_gpu != g_clq);

    /* 1c:00.0 quarantined. */
    const st_list *q = STATES({ "0000:1c:00.0", GW_STATE_QUARANTINED, false });
    const exp_dep q_gpu[] = {
        SM("1a", 0, 0, SMH("1a")), SM("1c", 0, 1, NULL), SM("1d", 0, 0, SMH("1d")), SM("1e", 0, 0, SMH("1e")),
        SM("3d", 1, 0, SMH("3d")), SM("3f", 1, 0, SMH("3f")), SM("40", 1, 0, SMH("40")), SM("41", 1, 0, SMH("41")),
    };
    const exp_dep q_clq[] = {
        SM_CLIQUE(0, "1a", 1, SM_C0, SMH("1a"), SMH("1d"), SMH("1e")),
        SM_CLIQUE(1, "3d", 0, SM_C1, SMH("3d"), SMH("3f"), SMH("40"), SMH("41")),
    };
    CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_GPU, q, q_gpu);
    CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_CLIQUE, q, q_clq);

    /* 40:00.0 attached: the inventory of a clean host. */
    const st_list *a = STATES({ "0000:40:00.0", GW_STATE_ATTACHED, false });
    assert_int_equal(CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_GPU, a, SM_PER_GPU), g_gpu);
    assert_int_equal(CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_CLIQUE, a, SM_PER_CLIQUE), g_clq);
}

/* Every state at once: only allocatable and attached GPUs have handles;
 * attached ones are never reserved; a wholly reserved clique stays. */
static void sm4029_every_state(void **state)
{
    const st_list *s = STATES({ "0000:1a:00.0", GW_STATE_ATTACHED, false },
                              { "0000:1c:00.0", GW_STATE_QUARANTINED, false },
                              { "0000:1d:00.0", GW_STATE_SANITIZED, false },
                              { "0000:1e:00.0", GW_STATE_DISCOVERED, false },
                              { "0000:40:00.0", GW_STATE_ATTACHED, false });
    const exp_dep e_gpu[] = {
        SM("1a", 0, 0, SMH("1a")), SM("1c", 0, 1, NULL), SM("1d", 0, 1, NULL), SM("1e", 0, 1, NULL),
        SM("3d", 1, 0, SMH("3d")), SM("3f", 1, 0, SMH("3f")), SM("40", 1, 0, SMH("40")), SM("41", 1, 0, SMH("41")),
    };
    const exp_dep e_clq[] = {
        SM_CLIQUE(0, "1a", 3, SM_C0, SMH("1a")),
        SM_CLIQUE(1, "3d", 0, SM_C1, SMH("3d"), SMH("3f"), SMH("40"), SMH("41")),
    };
    CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_GPU, s, e_gpu);
    CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_CLIQUE, s, e_clq);

    const st_list *all = STATES({ "0000:3d:00.0", GW_STATE_QUARANTINED, false },
                                { "0000:3f:00.0", GW_STATE_QUARANTINED, false },
                                { "0000:40:00.0", GW_STATE_SANITIZED, false },
                                { "0000:41:00.0", GW_STATE_DISCOVERED, false });
    const exp_dep w_clq[] = {
        SM_CLIQUE(0, "1a", 0, SM_C0, SMH("1a"), SMH("1c"), SMH("1d"), SMH("1e")),
        SM_CLIQUE(1, "3d", 4, SM_C1, NULL),
    };
    CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_CLIQUE, all, w_clq);
}

/* Quarantined while its VM keeps it: not reserved (the allocation holds its
 * capacity) and its handle stays (Cyborg has bound it); quarantined and
 * free: reserved, no handle. When the VM lets go, it is reserved too. */
static void sm4029_quarantined_in_vm(void **state)
{
    const st_list *s = STATES({ "0000:1c:00.0", GW_STATE_QUARANTINED, true },
                              { "0000:1d:00.0", GW_STATE_QUARANTINED, false });
    const exp_dep e_gpu[] = {
        SM("1a", 0, 0, SMH("1a")), SM("1c", 0, 0, SMH("1c")), SM("1d", 0, 1, NULL), SM("1e", 0, 0, SMH("1e")),
        SM("3d", 1, 0, SMH("3d")), SM("3f", 1, 0, SMH("3f")), SM("40", 1, 0, SMH("40")), SM("41", 1, 0, SMH("41")),
    };
    const exp_dep e_clq[] = {
        SM_CLIQUE(0, "1a", 1, SM_C0, SMH("1a"), SMH("1c"), SMH("1e")),
        SM_CLIQUE(1, "3d", 0, SM_C1, SMH("3d"), SMH("3f"), SMH("40"), SMH("41")),
    };
    CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_GPU, s, e_gpu);
    CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_CLIQUE, s, e_clq);

    const st_list *gone = STATES({ "0000:1c:00.0", GW_STATE_QUARANTINED, false },
                                 { "0000:1d:00.0", GW_STATE_QUARANTINED, false });
    const exp_dep f_clq[] = {
        SM_CLIQUE(0, "1a", 2, SM_C0, SMH("1a"), SMH("1e")),
        SM_CLIQUE(1, "3d", 0, SM_C1, SMH("3d"), SMH("3f"), SMH("40"), SMH("41")),
    };
    CHECK("sm4029-8xrtx5000", GW_INVENTORY_PER_CLIQUE, gone, f_clq);
}

/* ---- Single-GPU desktops: no switch, NUMA unknown (no NUMA trait) -------- */

#define DEV_3060 { "NVIDIA", "10de", "GA106 [GeForce RTX 3060 Lite Hash Rate]", BOARD("VGA compatible controller", "2504") }
#define OMEN(res, ...)                                                                            \
    { "cmp1_0000:01:00.0", 1, res, -1, false, PCIJ("01", "00", "0"), { OWN, "CUSTOM_NVIDIA_2504" }, \
      { __VA_ARGS__ }, { "0000:01:00.0" }, DEV_3060 }

/* HP OMEN Obelisk 875, RTX 3060 10de:2504 class 0300 at 01:00.0. */
static void omen_3060(void **state)
{
    const exp_dep e[] = { OMEN(0, PCIJ("01", "00", "0")) };
    uint64_t g_gpu = CHECK("omen-3060", GW_INVENTORY_PER_GPU, NULL, e);
    uint64_t g_clq = CHECK("omen-3060", GW_INVENTORY_PER_CLIQUE, NULL, e);
    assert_true(g_gpu != g_clq);    /* the model is part of the content */

    const st_list *q = STATES({ "0000:01:00.0", GW_STATE_QUARANTINED, false });
    const exp_dep qe[] = { OMEN(1, NULL) };
    CHECK("omen-3060", GW_INVENTORY_PER_GPU, q, qe);
    CHECK("omen-3060", GW_INVENTORY_PER_CLIQUE, q, qe);
    const st_list *a = STATES({ "0000:01:00.0", GW_STATE_ATTACHED, false });
    assert_int_equal(CHECK("omen-3060", GW_INVENTORY_PER_GPU, a, e), g_gpu);
}

/* ASUS ROG STRIX Z890-A: the Arrow Lake iGPU 8086:7d67 at 00:02.0 (on i915:
 * that it is not managed is the daemon's business, the inventory lists what
 * it is given) and the RTX 5080 10de:2c02 at 02:00.0, which the dump's lspci
 * could not name. Both class 0300, NUMA unknown. */
static void ats_on(void **state)
{
    const exp_device arrow = { "INTEL", "8086", "Arrow Lake-U [Intel Graphics]",
                               BOARD("VGA compatible controller", "7d67") };
    const exp_device rtx5080 = { "NVIDIA", "10de", "Device 2c02", BOARD("VGA compatible controller", "2c02") };
    const exp_dep e[] = {
        { "cmp1_0000:00:02.0", 1, 0, -1, false, PCIJ("00", "02", "0"), { OWN, "CUSTOM_INTEL_7D67" },
          { PCIJ("00", "02", "0") }, { "0000:00:02.0" }, arrow },
        { "cmp1_0000:02:00.0", 1, 0, -1, false, PCIJ("02", "00", "0"), { OWN, "CUSTOM_NVIDIA_2C02" },
          { PCIJ("02", "00", "0") }, { "0000:02:00.0" }, rtx5080 },
    };
    CHECK("ats-on", GW_INVENTORY_PER_GPU, NULL, e);
    CHECK("ats-on", GW_INVENTORY_PER_CLIQUE, NULL, e);

    const st_list *q = STATES({ "0000:00:02.0", GW_STATE_QUARANTINED, false });
    const exp_dep qe[] = {
        { "cmp1_0000:00:02.0", 1, 1, -1, false, PCIJ("00", "02", "0"), { OWN, "CUSTOM_INTEL_7D67" }, { NULL },
          { "0000:00:02.0" }, arrow },
        e[1],
    };
    CHECK("ats-on", GW_INVENTORY_PER_CLIQUE, q, qe);
}

/* ---- synth64: 16 PEX 8747 x 4 RTX A6000; buses 08-40 on node 0, 88-c0 on
 * node 1; clique n = the n-th switch's four GPUs. ---------------------------- */

#define S(bus, c, node)                                                                           \
    { "cmp1_0000:" bus ":00.0", 1, 0, -1, false, PCIJ(bus, "00", "0"),                           \
      { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_" #c, "CUSTOM_NUMA_NODE_" #node },           \
      { PCIJ(bus, "00", "0") }, { "0000:" bus ":00.0" }, DEV_A6000 }
#define S4(a, b, c, d, q, node) S(a, q, node), S(b, q, node), S(c, q, node), S(d, q, node)
#define SC(q, a, b, c, d, node)                                                                   \
    { "cmp1_clique" #q, 4, 0, q, false, PCIJ(a, "00", "0"),                                       \
      { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_" #q, "CUSTOM_NUMA_NODE_" #node },           \
      { PCIJ(a, "00", "0"), PCIJ(b, "00", "0"), PCIJ(c, "00", "0"), PCIJ(d, "00", "0") },          \
      { "0000:" a ":00.0", "0000:" b ":00.0", "0000:" c ":00.0", "0000:" d ":00.0" }, DEV_A6000 }

static void synth64(void **state)
{
    exp_dep per_gpu[] = {
        S4("0b", "0c", "0d", "0e", 0, 0),  S4("13", "14", "15", "16", 1, 0),
        S4("1b", "1c", "1d", "1e", 2, 0),  S4("23", "24", "25", "26", 3, 0),
        S4("2b", "2c", "2d", "2e", 4, 0),  S4("33", "34", "35", "36", 5, 0),
        S4("3b", "3c", "3d", "3e", 6, 0),  S4("43", "44", "45", "46", 7, 0),
        S4("8b", "8c", "8d", "8e", 8, 1),  S4("93", "94", "95", "96", 9, 1),
        S4("9b", "9c", "9d", "9e", 10, 1), S4("a3", "a4", "a5", "a6", 11, 1),
        S4("ab", "ac", "ad", "ae", 12, 1), S4("b3", "b4", "b5", "b6", 13, 1),
        S4("bb", "bc", "bd", "be", 14, 1), S4("c3", "c4", "c5", "c6", 15, 1),
    };
    exp_dep per_clique[] = {
        SC(0, "0b", "0c", "0d", "0e", 0),  SC(1, "13", "14", "15", "16", 0),
        SC(2, "1b", "1c", "1d", "1e", 0),  SC(3, "23", "24", "25", "26", 0),
        SC(4, "2b", "2c", "2d", "2e", 0),  SC(5, "33", "34", "35", "36", 0),
        SC(6, "3b", "3c", "3d", "3e", 0),  SC(7, "43", "44", "45", "46", 0),
        SC(8, "8b", "8c", "8d", "8e", 1),  SC(9, "93", "94", "95", "96", 1),
        SC(10, "9b", "9c", "9d", "9e", 1), SC(11, "a3", "a4", "a5", "a6", 1),
        SC(12, "ab", "ac", "ad", "ae", 1), SC(13, "b3", "b4", "b5", "b6", 1),
        SC(14, "bb", "bc", "bd", "be", 1), SC(15, "c3", "c4", "c5", "c6", 1),
    };
    assert_int_equal(N(per_gpu), 64);
    uint64_t g_gpu = CHECK("synth64", GW_INVENTORY_PER_GPU, NULL, per_gpu);
    uint64_t g_clq = CHECK("synth64", GW_INVENTORY_PER_CLIQUE, NULL, per_clique);
    assert_true(g_gpu != g_clq);

    /* 95:00.0 (clique 9, node 1) quarantined; 3c:00.0 attached. */
    const st_list *s = STATES({ "0000:95:00.0", GW_STATE_QUARANTINED, false },
                              { "0000:3c:00.0", GW_STATE_ATTACHED, false });
    per_gpu[38].reserved = 1;
    assert_string_equal(per_gpu[38].name, "cmp1_0000:95:00.0");
    per_gpu[38].handles[0] = NULL;
    per_clique[9].reserved = 1;
    per_clique[9].handles[2] = per_clique[9].handles[3];
    per_clique[9].handles[3] = NULL;
    assert_true(CHECK("synth64", GW_INVENTORY_PER_GPU, s, per_gpu) != g_gpu);
    assert_true(CHECK("synth64", GW_INVENTORY_PER_CLIQUE, s, per_clique) != g_clq);
}

/* ---- Broken hosts: the HP OMEN tree with one defect each ------------------
 * The scan succeeds, reports the defect, and still lists the RTX 3060 with
 * the facts it could read; the inventory is the OMEN's. */

static void broken(const char *name, size_t host_errors, const char *gpu_error)
{
    gw_host *host = scan(name);
    assert_int_equal(gw_host_gpu_count(host), 1);
    const gw_gpu *g = gw_host_gpu(host, 0);
    assert_string_equal(g->address, "0000:01:00.0");
    assert_int_equal(g->vendor_id, 0x10de);
    assert_int_equal(g->device_id, 0x2504);
    assert_int_equal(g->class_code, 0x0300);
    assert_int_equal(g->numa_node, -1);
    assert_int_equal(gw_host_error_count(host), host_errors);
    if (gpu_error) {
        assert_int_equal(g->n_errors, 1);
        assert_true(!strncmp(g->errors[0], gpu_error, strlen(gpu_error)));
    } else {
        assert_int_equal(g->n_errors, 0);
    }
    gw_host_free(host);

    const exp_dep e[] = { OMEN(0, PCIJ("01", "00", "0")) };
    CHECK(name, GW_INVENTORY_PER_GPU, NULL, e);
    CHECK(name, GW_INVENTORY_PER_CLIQUE, NULL, e);
}

static void broken_hosts(void **state)
{
    broken("broken-bdf", 1, NULL);                  /* devices/0000:zz:00.0 skipped */
    broken("broken-entry", 1, NULL);                /* devices/README skipped */
    broken("broken-config", 0, "config: truncated");
    broken("broken-group", 0, "iommu_group: dangling link");
    broken("broken-numa", 0, "numa_node: ");        /* "banana": unknown node, no trait */
    broken("broken-vendor", 0, "vendor/device: ");  /* ids from config space */

    /* All of them build the same inventory as the healthy OMEN. */
    gw_host *ok = scan("omen-3060");
    gw_inventory *ref = build(ok, GW_INVENTORY_PER_GPU, NULL);
    const char *names[] = { "broken-bdf", "broken-entry", "broken-config",
                            "broken-group", "broken-numa", "broken-vendor" };
    for (size_t i = 0; i < N(names); i++) {
        gw_host *h = scan(names[i]);
        gw_inventory *inv = build(h, GW_INVENTORY_PER_GPU, NULL);
        assert_int_equal(gw_inventory_generation(inv), gw_inventory_generation(ref));
        gw_inventory_free(inv);
        gw_host_free(h);
    }
    gw_inventory_free(ref);
    gw_host_free(ok);
}

/* ---- The hand-built inputs of the other inventory tests are these hosts ---
 * inventory_hosts.h's X299 and SM8 give exactly what the scans give, so the
 * carry-over, JSON and configuration tests that use them run on real data. */

static void hand_built_inputs_match_the_hosts(void **state)
{
    struct {
        const char *host;
        const gw_inventory_gpu *gpus;
        size_t n;
    } pairs[] = { { "x299-3xa6000", X299, N(X299) }, { "sm4029-8xrtx5000", SM8, N(SM8) } };
    for (size_t p = 0; p < N(pairs); p++)
        for (int m = GW_INVENTORY_PER_GPU; m <= GW_INVENTORY_PER_CLIQUE; m++) {
            gw_host *host = scan(pairs[p].host);
            gw_inventory *scanned = build(host, (gw_inventory_model)m, NULL);
            gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
            o.host = "cmp1";
            o.model = (gw_inventory_model)m;
            gw_inventory *hand = NULL;
            assert_int_equal(gw_inventory_new(&hand, pairs[p].gpus, pairs[p].n, &o), 0);
            assert_int_equal(gw_inventory_generation(hand), gw_inventory_generation(scanned));
            gw_inventory_free(hand);
            gw_inventory_free(scanned);
            gw_host_free(host);
        }
}

/* ---- The state function's errors --------------------------------------- */

static int no_state(const char *address, gw_state *state, bool *attached, void *userdata) { return -ESRCH; }

static void state_function_errors(void **state)
{
    gw_host *host = scan("x299-3xa6000");
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "cmp1";
    gw_inventory *inv = (gw_inventory *)0x1;
    assert_int_equal(gw_inventory_new_from_host(&inv, host, no_state, NULL, &o), -ESRCH);
    assert_string_equal(gw_error_message(), "inventory: no state for 0000:1a:00.0");
    assert_ptr_equal(inv, (gw_inventory *)0x1);
    assert_int_equal(gw_inventory_new_from_host(&inv, host, NULL, NULL, &o), -EINVAL);
    assert_int_equal(gw_inventory_new_from_host(&inv, NULL, state_of, NULL, &o), -EINVAL);
    assert_ptr_equal(inv, (gw_inventory *)0x1);
    gw_host_free(host);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(x299_3xa6000),
        cmocka_unit_test(acs_off),
        cmocka_unit_test(acs_off_root),
        cmocka_unit_test(allones),
        cmocka_unit_test(sm4029),
        cmocka_unit_test(sm4029_every_state),
        cmocka_unit_test(sm4029_quarantined_in_vm),
        cmocka_unit_test(omen_3060),
        cmocka_unit_test(ats_on),
        cmocka_unit_test(synth64),
        cmocka_unit_test(broken_hosts),
        cmocka_unit_test(hand_built_inputs_match_the_hosts),
        cmocka_unit_test(state_function_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
