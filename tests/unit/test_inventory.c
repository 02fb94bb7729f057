/* The inventory's two models on every test host, reservation and attach
 * handles per lifecycle state, asserted field by field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "inventory_hosts.h"

#define OWN "OWNER_CYBORG"

static gw_inventory *build(const gw_inventory_gpu *g, size_t n, const char *host, gw_inventory_model model)
{
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = host;
    o.model = model;
    gw_inventory *inv = NULL;
    int r = gw_inventory_new(&inv, g, n, &o);
    if (r < 0)
        fail_msg("gw_inventory_new: %s", gw_error_message());
    assert_null(gw_inventory_clique_error(inv));
    return inv;
}

static void x299_per_gpu(void **state)
{
    gw_inventory *inv = build(X299, N(X299), "x299", GW_INVENTORY_PER_GPU);
    const exp_dep e[] = {
        { "x299_0000:1a:00.0", 1, 0, -1, false, PCIJ("1a", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_NUMA_NODE_0" }, { PCIJ("1a", "00", "0") }, { "0000:1a:00.0" }, DEV_A6000 },
        { "x299_0000:67:00.0", 1, 0, -1, false, PCIJ("67", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("67", "00", "0") }, { "0000:67:00.0" }, DEV_A6000 },
        { "x299_0000:68:00.0", 1, 0, -1, false, PCIJ("68", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("68", "00", "0") }, { "0000:68:00.0" }, DEV_A6000 },
    };
    assert_inventory(inv, e, N(e), X299, N(X299));
    assert_string_equal(gw_inventory_host(inv), "x299");
    assert_int_equal(gw_inventory_model_of(inv), GW_INVENTORY_PER_GPU);
    gw_inventory_free(inv);
}

static void x299_per_clique(void **state)
{
    gw_inventory *inv = build(X299, N(X299), "x299", GW_INVENTORY_PER_CLIQUE);
    const exp_dep e[] = {
        { "x299_0000:1a:00.0", 1, 0, -1, false, PCIJ("1a", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_NUMA_NODE_0" }, { PCIJ("1a", "00", "0") }, { "0000:1a:00.0" }, DEV_A6000 },
        { "x299_clique0", 2, 0, 0, false, PCIJ("67", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("67", "00", "0"), PCIJ("68", "00", "0") }, { "0000:67:00.0", "0000:68:00.0" }, DEV_A6000 },
    };
    assert_inventory(inv, e, N(e), X299, N(X299));
    assert_ptr_equal(gw_inventory_find(inv, "x299_clique0"), gw_inventory_deployable(inv, 1));
    assert_ptr_equal(gw_inventory_find_gpu(inv, "0000:68:00.0"), gw_inventory_deployable(inv, 1));
    assert_ptr_equal(gw_inventory_find_gpu(inv, "0000:1a:00.0"), gw_inventory_deployable(inv, 0));
    assert_null(gw_inventory_find(inv, "x299_clique1"));
    assert_null(gw_inventory_find_gpu(inv, "0000:69:00.0"));
    gw_inventory_free(inv);
}

#define SM8_GPU(bus, c)                                                                           \
    { "sm_0000:" bus ":00.0", 1, 0, -1, false, PCIJ(bus, "00", "0"),                              \
      { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_" #c, "CUSTOM_NUMA_NODE_0" },               \
      { PCIJ(bus, "00", "0") }, { "0000:" bus ":00.0" }, DEV_RTX5000 }

static void sm8_per_gpu(void **state)
{
    gw_inventory *inv = build(SM8, N(SM8), "sm", GW_INVENTORY_PER_GPU);
    const exp_dep e[] = {
        SM8_GPU("1a", 0), SM8_GPU("1c", 0), SM8_GPU("1d", 0), SM8_GPU("1e", 0),
        SM8_GPU("3d", 1), SM8_GPU("3f", 1), SM8_GPU("40", 1), SM8_GPU("41", 1),
    };
    assert_inventory(inv, e, N(e), SM8, N(SM8));
    gw_inventory_free(inv);
}

static void sm8_per_clique(void **state)
{
    gw_inventory *inv = build(SM8, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE);
    const exp_dep e[] = {
        { "sm_clique0", 4, 0, 0, false, PCIJ("1a", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("1a", "00", "0"), PCIJ("1c", "00", "0"), PCIJ("1d", "00", "0"), PCIJ("1e", "00", "0") },
          { "0000:1a:00.0", "0000:1c:00.0", "0000:1d:00.0", "0000:1e:00.0" }, DEV_RTX5000 },
        { "sm_clique1", 4, 0, 1, false, PCIJ("3d", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_1", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("3d", "00", "0"), PCIJ("3f", "00", "0"), PCIJ("40", "00", "0"), PCIJ("41", "00", "0") },
          { "0000:3d:00.0", "0000:3f:00.0", "0000:40:00.0", "0000:41:00.0" }, DEV_RTX5000 },
    };
    assert_inventory(inv, e, N(e), SM8, N(SM8));
    gw_inventory_free(inv);
}

/* One GPU of a clique quarantined: its deployable keeps counting it but
 * reserves it, and its handle is gone so Cyborg cannot bind it. */
static void sm8_quarantined(void **state)
{
    gw_inventory_gpu *g = copy_gpus(SM8, N(SM8));
    set_state(g, N(SM8), "0000:1c:00.0", GW_STATE_QUARANTINED);

    gw_inventory *inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE);
    const exp_dep c[] = {
        { "sm_clique0", 4, 1, 0, false, PCIJ("1a", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("1a", "00", "0"), PCIJ("1d", "00", "0"), PCIJ("1e", "00", "0") },
          { "0000:1a:00.0", "0000:1c:00.0", "0000:1d:00.0", "0000:1e:00.0" }, DEV_RTX5000 },
        { "sm_clique1", 4, 0, 1, false, PCIJ("3d", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_1", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("3d", "00", "0"), PCIJ("3f", "00", "0"), PCIJ("40", "00", "0"), PCIJ("41", "00", "0") },
          { "0000:3d:00.0", "0000:3f:00.0", "0000:40:00.0", "0000:41:00.0" }, DEV_RTX5000 },
    };
    assert_inventory(inv, c, N(c), g, N(SM8));
    gw_inventory_free(inv);

    inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_GPU);
    exp_dep e[] = {
        SM8_GPU("1a", 0), SM8_GPU("1c", 0), SM8_GPU("1d", 0), SM8_GPU("1e", 0),
        SM8_GPU("3d", 1), SM8_GPU("3f", 1), SM8_GPU("40", 1), SM8_GPU("41", 1),
    };
    e[1].reserved = 1;
    e[1].handles[0] = NULL;
    assert_inventory(inv, e, N(e), g, N(SM8));
    gw_inventory_free(inv);
    free(g);
}

/* Every state: only allocatable and attached GPUs have handles; attached
 * ones are never reserved. */
static void sm8_every_state(void **state)
{
    gw_inventory_gpu *g = copy_gpus(SM8, N(SM8));
    set_state(g, N(SM8), "0000:1a:00.0", GW_STATE_ATTACHED);
    set_state(g, N(SM8), "0000:1c:00.0", GW_STATE_QUARANTINED);
    set_state(g, N(SM8), "0000:1d:00.0", GW_STATE_SANITIZED);
    set_state(g, N(SM8), "0000:1e:00.0", GW_STATE_DISCOVERED);
    set_state(g, N(SM8), "0000:40:00.0", GW_STATE_ATTACHED);

    gw_inventory *inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE);
    const exp_dep c[] = {
        { "sm_clique0", 4, 3, 0, false, PCIJ("1a", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("1a", "00", "0") }, { "0000:1a:00.0", "0000:1c:00.0", "0000:1d:00.0", "0000:1e:00.0" }, DEV_RTX5000 },
        { "sm_clique1", 4, 0, 1, false, PCIJ("3d", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_1", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("3d", "00", "0"), PCIJ("3f", "00", "0"), PCIJ("40", "00", "0"), PCIJ("41", "00", "0") },
          { "0000:3d:00.0", "0000:3f:00.0", "0000:40:00.0", "0000:41:00.0" }, DEV_RTX5000 },
    };
    assert_inventory(inv, c, N(c), g, N(SM8));
    gw_inventory_free(inv);

    inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_GPU);
    exp_dep e[] = {
        SM8_GPU("1a", 0), SM8_GPU("1c", 0), SM8_GPU("1d", 0), SM8_GPU("1e", 0),
        SM8_GPU("3d", 1), SM8_GPU("3f", 1), SM8_GPU("40", 1), SM8_GPU("41", 1),
    };
    for (int i = 1; i <= 3; i++) {
        e[i].reserved = 1;
        e[i].handles[0] = NULL;
    }
    assert_inventory(inv, e, N(e), g, N(SM8));
    gw_inventory_free(inv);

    /* A whole clique reserved: the deployable stays, with no handle. */
    for (size_t i = 0; i < 4; i++)
        g[i].state = GW_STATE_QUARANTINED;
    inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE);
    const gw_deployable *d = gw_inventory_find(inv, "sm_clique0");
    assert_int_equal(d->num_accelerators, 4);
    assert_int_equal(d->reserved, 4);
    assert_int_equal(d->n_attach_handles, 0);
    gw_inventory_free(inv);
    free(g);
}

/* Quarantined while its VM keeps it: not reserved (the allocation holds its
 * capacity) and its handle stays (Cyborg has bound it); quarantined and
 * free: reserved, no handle. */
static void quarantined_in_vm(void **state)
{
    gw_inventory_gpu *g = copy_gpus(SM8, N(SM8));
    set_state(g, N(SM8), "0000:1c:00.0", GW_STATE_QUARANTINED);
    g[1].attached = true;
    set_state(g, N(SM8), "0000:1d:00.0", GW_STATE_QUARANTINED);

    gw_inventory *inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE);
    const exp_dep c = { "sm_clique0", 4, 1, 0, false, PCIJ("1a", "00", "0"),
                        { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
                        { PCIJ("1a", "00", "0"), PCIJ("1c", "00", "0"), PCIJ("1e", "00", "0") },
                        { "0000:1a:00.0", "0000:1c:00.0", "0000:1d:00.0", "0000:1e:00.0" }, DEV_RTX5000 };
    assert_dep(gw_inventory_deployable(inv, 0), &c);
    gw_inventory_free(inv);

    inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_GPU);
    exp_dep e[] = {
        SM8_GPU("1a", 0), SM8_GPU("1c", 0), SM8_GPU("1d", 0), SM8_GPU("1e", 0),
        SM8_GPU("3d", 1), SM8_GPU("3f", 1), SM8_GPU("40", 1), SM8_GPU("41", 1),
    };
    e[2].reserved = 1;
    e[2].handles[0] = NULL;
    assert_inventory(inv, e, N(e), g, N(SM8));
    gw_inventory_free(inv);

    /* The VM lets go: now it is reserved and its handle goes. */
    g[1].attached = false;
    inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_GPU);
    const gw_deployable *d = gw_inventory_find(inv, "sm_0000:1c:00.0");
    assert_int_equal(d->reserved, 1);
    assert_int_equal(d->n_attach_handles, 0);
    gw_inventory_free(inv);
    free(g);
}

/* Other vendors get their own token; an unknown NUMA node gives no trait. */
static void proart_vendors(void **state)
{
    const exp_dep e[] = {
        { "pa_0000:01:00.0", 1, 0, -1, false, PCIJ("01", "00", "0"), { OWN, "CUSTOM_NVIDIA_26B1" },
          { PCIJ("01", "00", "0") }, { "0000:01:00.0" }, DEV_ADA },
        { "pa_0000:03:00.0", 1, 0, -1, false, PCIJ("03", "00", "0"), { OWN, "CUSTOM_NVIDIA_2803" },
          { PCIJ("03", "00", "0") }, { "0000:03:00.0" }, DEV_4060 },
        { "pa_0000:6c:00.0", 1, 0, -1, false, PCIJ("6c", "00", "0"), { OWN, "CUSTOM_AMD_164E" },
          { PCIJ("6c", "00", "0") }, { "0000:6c:00.0" }, DEV_RAPHAEL },
    };
    for (int m = GW_INVENTORY_PER_GPU; m <= GW_INVENTORY_PER_CLIQUE; m++) {
        gw_inventory *inv = build(PROART, N(PROART), "pa", (gw_inventory_model)m);
        assert_inventory(inv, e, N(e), PROART, N(PROART));
        gw_inventory_free(inv);
    }
}

#define HGX_GPU(bus, node)                                                                        \
    { "hgx_0000:" bus ":00.0", 1, 0, -1, false, PCIJ(bus, "00", "0"),                             \
      { OWN, "CUSTOM_NVIDIA_2330", "CUSTOM_NUMA_NODE_" #node }, { PCIJ(bus, "00", "0") },         \
      { "0000:" bus ":00.0" }, DEV_H100 }

static void hgx_no_cliques(void **state)
{
    const exp_dep e[] = {
        { "hgx_0000:03:00.0", 1, 0, -1, false, PCIJ("03", "00", "0"),
          { OWN, "CUSTOM_MATROX_0536", "CUSTOM_NUMA_NODE_0" }, { PCIJ("03", "00", "0") }, { "0000:03:00.0" }, DEV_MATROX },
        HGX_GPU("19", 0), HGX_GPU("3b", 0), HGX_GPU("4c", 0), HGX_GPU("5d", 0),
        HGX_GPU("9b", 1), HGX_GPU("bb", 1), HGX_GPU("cb", 1), HGX_GPU("db", 1),
    };
    for (int m = GW_INVENTORY_PER_GPU; m <= GW_INVENTORY_PER_CLIQUE; m++) {
        gw_inventory *inv = build(HGX, N(HGX), "hgx", (gw_inventory_model)m);
        assert_inventory(inv, e, N(e), HGX, N(HGX));
        gw_inventory_free(inv);
    }
}

/* A clique whose GPUs differ in product or node gets neither trait: the
 * provider cannot promise what only some of its GPUs are. */
static void mixed_clique_traits(void **state)
{
    const gw_inventory_gpu g[] = {
        { "0000:19:00.0", 0x10de, 0x2330, 0, 3, GW_STATE_ALLOCATABLE, false, H100 },
        { "0000:9b:00.0", 0x10de, 0x2330, 1, 3, GW_STATE_ALLOCATABLE, false, H100 },
        { "0000:a1:00.0", 0x10de, 0x2331, 1, 5, GW_STATE_ALLOCATABLE, false, 0x0302, "GH100 [H100 PCIe]" },
        { "0000:a2:00.0", 0x10de, 0x2330, 1, 5, GW_STATE_ALLOCATABLE, false, H100 },
    };
    /* The device is described by the first GPU. */
    const exp_device DEV_M_19 = DEV_H100;
    const exp_device DEV_M_a1 = { "NVIDIA", "10de", "GH100 [H100 PCIe]", BOARD("3D controller", "2331") };
    gw_inventory *inv = build(g, N(g), "m", GW_INVENTORY_PER_CLIQUE);
    const exp_dep e[] = {
        { "m_clique3", 2, 0, 3, false, PCIJ("19", "00", "0"), { OWN, "CUSTOM_NVIDIA_2330", "CUSTOM_GPU_CLIQUE_3" },
          { PCIJ("19", "00", "0"), PCIJ("9b", "00", "0") }, { "0000:19:00.0", "0000:9b:00.0" }, DEV_M_19 },
        { "m_clique5", 2, 0, 5, false, PCIJ("a1", "00", "0"), { OWN, "CUSTOM_GPU_CLIQUE_5", "CUSTOM_NUMA_NODE_1" },
          { PCIJ("a1", "00", "0"), PCIJ("a2", "00", "0") }, { "0000:a1:00.0", "0000:a2:00.0" }, DEV_M_a1 },
    };
    assert_inventory(inv, e, N(e), g, N(g));
    gw_inventory_free(inv);
}

/* Input order does not matter; function and domain digits go where Cyborg
 * puts them. */
static void order_and_address_fields(void **state)
{
    /* Unknown class and an invalid UTF-8 name: the generic fallbacks. */
    const gw_inventory_gpu g[] = {
        { "0001:b3:1f.7", 0x10de, 0x20b5, 2, -1, GW_STATE_ALLOCATABLE, false, 0, "A100 \xff" },
        { "0000:ff:00.1", 0x10de, 0x20b5, 2, -1, GW_STATE_ALLOCATABLE, false, 0x0380, "GA100 [A100 PCIe 80GB]" },
    };
    const exp_device DEV_O_ff = { "NVIDIA", "10de", "GA100 [A100 PCIe 80GB]", BOARD("Display controller", "20b5") };
    const exp_device DEV_O_b3 = { "NVIDIA", "10de", "Device 20b5", BOARD("Display controller", "20b5") };
    gw_inventory *inv = build(g, N(g), "o", GW_INVENTORY_PER_GPU);
    const exp_dep e[] = {
        { "o_0000:ff:00.1", 1, 0, -1, false, PCIJ("ff", "00", "1"),
          { OWN, "CUSTOM_NVIDIA_20B5", "CUSTOM_NUMA_NODE_2" }, { PCIJ("ff", "00", "1") }, { "0000:ff:00.1" }, DEV_O_ff },
        { "o_0001:b3:1f.7", 1, 0, -1, false,
          "{\"bus\": \"b3\", \"device\": \"1f\", \"domain\": \"0001\", \"function\": \"7\"}",
          { OWN, "CUSTOM_NVIDIA_20B5", "CUSTOM_NUMA_NODE_2" },
          { "{\"bus\": \"b3\", \"device\": \"1f\", \"domain\": \"0001\", \"function\": \"7\"}" },
          { "0001:b3:1f.7" }, DEV_O_b3 },
    };
    assert_inventory(inv, e, N(e), g, N(g));
    gw_inventory_free(inv);
}

static void empty_host(void **state)
{
    gw_inventory *inv = build(NULL, 0, "none", GW_INVENTORY_PER_CLIQUE);
    assert_int_equal(gw_inventory_deployable_count(inv), 0);
    char *json = NULL;
    assert_int_equal(gw_inventory_to_json(inv, &json), 0);
    assert_non_null(strstr(json, "\"deployables\": []"));
    free(json);
    gw_inventory_free(inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(x299_per_gpu),
        cmocka_unit_test(x299_per_clique),
        cmocka_unit_test(sm8_per_gpu),
        cmocka_unit_test(sm8_per_clique),
        cmocka_unit_test(sm8_quarantined),
        cmocka_unit_test(sm8_every_state),
        cmocka_unit_test(quarantined_in_vm),
        cmocka_unit_test(proart_vendors),
        cmocka_unit_test(hgx_no_cliques),
        cmocka_unit_test(mixed_clique_traits),
        cmocka_unit_test(order_and_address_fields),
        cmocka_unit_test(empty_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
