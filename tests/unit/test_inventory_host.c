/* gw_inventory_new_from_host(): a real libpci scan of a test tree shaped like
 * the ASUS WS X299 SAGE with 3x RTX A6000 (two PEX 8747 switches, one GPU
 * alone, two sharing one: clique 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   /* helpers this test does not need */
#include "hosttree.h"
#pragma GCC diagnostic pop
#include "inventory_hosts.h"

static ht_dev *dev(const char *addr)
{
    ht_dev *d = calloc(1, sizeof *d);
    snprintf(d->addr, sizeof d->addr, "%s", addr);
    return d;
}

static void bridge(const char *root, ht_dev *d, const ht_dev *parent, uint16_t vid, uint16_t did, int type)
{
    ht_config(d, vid, did, 0x060400, 1, type, 0, 3, 16, 3, 16);
    ht_acs(d, 0x005f, 0x001d);
    ht_place(root, d, parent);
    ht_driver(root, d, "pcieport");
}

static void gpu(const char *root, ht_dev *d, const ht_dev *parent, const char *group)
{
    ht_config(d, 0x10de, 0x2230, 0x030000, 0, 0, 0x10008000u, 4, 16, 4, 16);
    ht_place(root, d, parent);
    ht_printf(d->path, "numa_node", "0\n");
    ht_driver(root, d, "vfio-pci");
    ht_group(root, d, group);
}

static char *x299_tree(ht_dev **devs)
{
    char *root = ht_mkroot();
    const char *addrs[] = { "0000:16:00.0", "0000:17:00.0", "0000:18:10.0", "0000:1a:00.0",
                            "0000:64:00.0", "0000:65:00.0", "0000:66:08.0", "0000:66:10.0",
                            "0000:67:00.0", "0000:68:00.0" };
    for (size_t i = 0; i < 10; i++)
        devs[i] = dev(addrs[i]);
    bridge(root, devs[0], NULL, 0x8086, 0x2030, 4);
    bridge(root, devs[1], devs[0], 0x10b5, 0x8747, 5);
    bridge(root, devs[2], devs[1], 0x10b5, 0x8747, 6);
    gpu(root, devs[3], devs[2], "30");
    bridge(root, devs[4], NULL, 0x8086, 0x2030, 4);
    bridge(root, devs[5], devs[4], 0x10b5, 0x8747, 5);
    bridge(root, devs[6], devs[5], 0x10b5, 0x8747, 6);
    bridge(root, devs[7], devs[5], 0x10b5, 0x8747, 6);
    gpu(root, devs[8], devs[6], "40");
    gpu(root, devs[9], devs[7], "41");
    return root;
}

/* 68:00.0 quarantined while its VM keeps it; 1a:00.0 quarantined and free. */
static int states(const char *address, gw_state *state, bool *attached, void *userdata)
{
    assert_false(*attached);
    *state = GW_STATE_ALLOCATABLE;
    if (!strcmp(address, "0000:68:00.0")) {
        *state = GW_STATE_QUARANTINED;
        *attached = true;
    } else if (!strcmp(address, "0000:1a:00.0")) {
        *state = GW_STATE_QUARANTINED;
    }
    return 0;
}

static int no_state(const char *address, gw_state *state, bool *attached, void *userdata) { return -ESRCH; }

static void from_scanned_host(void **state)
{
    ht_dev *devs[10];
    char *root = x299_tree(devs);
    gw_host_options ho = GW_HOST_OPTIONS_INIT;
    ho.root = root;
    gw_host *host = NULL;
    if (gw_host_scan(&host, &ho) < 0)
        fail_msg("scan: %s", gw_error_message());
    assert_int_equal(gw_host_gpu_count(host), 3);

    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "x";
    o.model = GW_INVENTORY_PER_CLIQUE;
    gw_inventory *inv = NULL;
    assert_int_equal(gw_inventory_new_from_host(&inv, host, states, NULL, &o), 0);
    const exp_dep e[] = {
        { "x_0000:1a:00.0", 1, 1, -1, false, PCIJ("1a", "00", "0"),
          { "OWNER_CYBORG", "CUSTOM_NVIDIA_2230", "CUSTOM_NUMA_NODE_0" }, { NULL },
          { "0000:1a:00.0" }, DEV_A6000 },
        { "x_clique0", 2, 0, 0, false, PCIJ("67", "00", "0"),
          { "OWNER_CYBORG", "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("67", "00", "0"), PCIJ("68", "00", "0") }, { "0000:67:00.0", "0000:68:00.0" }, DEV_A6000 },
    };
    assert_inventory(inv, e, N(e), X299, N(X299));

    /* The same as the hand-built input mirroring this host. */
    gw_inventory_gpu *g = copy_gpus(X299, N(X299));
    set_state(g, N(X299), "0000:1a:00.0", GW_STATE_QUARANTINED);
    set_state(g, N(X299), "0000:68:00.0", GW_STATE_QUARANTINED);
    g[2].attached = true;
    gw_inventory *ref = NULL;
    assert_int_equal(gw_inventory_new(&ref, g, N(X299), &o), 0);
    assert_int_equal(gw_inventory_generation(inv), gw_inventory_generation(ref));
    gw_inventory_free(ref);
    free(g);
    gw_inventory_free(inv);

    inv = (gw_inventory *)0x1;
    assert_int_equal(gw_inventory_new_from_host(&inv, host, no_state, NULL, &o), -ESRCH);
    assert_string_equal(gw_error_message(), "inventory: no state for 0000:1a:00.0");
    assert_ptr_equal(inv, (gw_inventory *)0x1);
    assert_int_equal(gw_inventory_new_from_host(&inv, host, NULL, NULL, &o), -EINVAL);

    gw_host_free(host);
    for (size_t i = 0; i < 10; i++)
        free(devs[i]);
    ht_rmroot(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(from_scanned_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
