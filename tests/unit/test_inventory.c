/* SPDX-License-Identifier: Apache-2.0 */
/* The inventory on inputs no test host has: vendors other than NVIDIA and
 * Intel (AMD, Matrox), an HGX without PCIe cliques, cliques mixing products
 * and nodes, odd addresses and names, no GPUs. The real hosts, both models
 * and every lifecycle state are in test_inventory_fixtures.c. */
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
        cmocka_unit_test(proart_vendors),
        cmocka_unit_test(hgx_no_cliques),
        cmocka_unit_test(mixed_clique_traits),
        cmocka_unit_test(order_and_address_fields),
        cmocka_unit_test(empty_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
