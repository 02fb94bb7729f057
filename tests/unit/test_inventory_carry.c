/* SPDX-License-Identifier: Apache-2.0 */
/* A deployable that holds an attached GPU is never dropped or regrouped:
 * Cyborg would delete its provider, which Placement refuses while the VM's
 * allocation is on it, and every later report would fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "inventory_hosts.h"
#include "util.h"

#define OWN "OWNER_CYBORG"

static gw_inventory *build(const gw_inventory_gpu *g, size_t n, const char *host, gw_inventory_model m,
                           const gw_clique_override *ov, const gw_inventory *prev)
{
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = host;
    o.model = m;
    o.clique_override = ov;
    o.previous = prev;
    gw_inventory *inv = NULL;
    if (gw_inventory_new(&inv, g, n, &o) < 0)
        fail_msg("gw_inventory_new: %s", gw_error_message());
    return inv;
}

static gw_clique_override *parse(const char *text)
{
    gw_clique_override *ov = NULL;
    if (gw_clique_override_parse(&ov, text, NULL) < 0)
        fail_msg("parse: %s", gw_error_message());
    return ov;
}

static const exp_dep X1A = { "x_0000:1a:00.0", 1, 0, -1, false, PCIJ("1a", "00", "0"),
                             { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_NUMA_NODE_0" }, { PCIJ("1a", "00", "0") },
                             { "0000:1a:00.0" }, DEV_A6000 };

/* The operator removes the X299's clique while 67:00.0 is in a VM. */
static void override_change_while_attached(void **state)
{
    gw_inventory_gpu *g = copy_gpus(X299, N(X299));
    set_state(g, N(X299), "0000:67:00.0", GW_STATE_ATTACHED);
    gw_inventory *prev = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, NULL, NULL);
    gw_clique_override *none = parse("# no P2P\n");

    /* Without the previous inventory the clique would vanish. */
    gw_inventory *blind = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, none, NULL);
    assert_null(gw_inventory_find(blind, "x_clique0"));
    gw_inventory_free(blind);

    gw_inventory *inv = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, none, prev);
    const exp_dep e[] = {
        X1A,
        { "x_clique0", 2, 0, 0, true, PCIJ("67", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("67", "00", "0"), PCIJ("68", "00", "0") }, { "0000:67:00.0", "0000:68:00.0" }, DEV_A6000 },
    };
    assert_inventory(inv, e, N(e), g, N(X299));
    /* Carried with the same content: nothing new to publish. */
    assert_int_equal(gw_inventory_generation(inv), gw_inventory_generation(prev));

    /* Its other GPU goes dirty meanwhile: reserved, handle gone, still kept. */
    set_state(g, N(X299), "0000:68:00.0", GW_STATE_DISCOVERED);
    gw_inventory *inv2 = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, none, inv);
    const gw_deployable *c = gw_inventory_find(inv2, "x_clique0");
    assert_true(c->carried);
    assert_int_equal(c->reserved, 1);
    assert_int_equal(c->n_attach_handles, 1);
    assert_string_equal(c->attach_handles[0].address, "0000:67:00.0");

    /* The VM is gone: the override takes effect. */
    set_state(g, N(X299), "0000:67:00.0", GW_STATE_DISCOVERED);
    gw_inventory *inv3 = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, none, inv2);
    const exp_dep after[] = {
        X1A,
        { "x_0000:67:00.0", 1, 1, -1, false, PCIJ("67", "00", "0"), { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_NUMA_NODE_0" },
          { NULL }, { "0000:67:00.0" }, DEV_A6000 },
        { "x_0000:68:00.0", 1, 1, -1, false, PCIJ("68", "00", "0"), { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_NUMA_NODE_0" },
          { NULL }, { "0000:68:00.0" }, DEV_A6000 },
    };
    assert_inventory(inv3, after, N(after), g, N(X299));

    gw_inventory_free(inv3);
    gw_inventory_free(inv2);
    gw_inventory_free(inv);
    gw_inventory_free(prev);
    gw_clique_override_free(none);
    free(g);
}

/* A GPU quarantined while its VM keeps it holds its deployable just the same. */
static void quarantined_in_vm_is_carried(void **state)
{
    gw_inventory_gpu *g = copy_gpus(X299, N(X299));
    gw_inventory *prev = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, NULL, NULL);
    set_state(g, N(X299), "0000:67:00.0", GW_STATE_QUARANTINED);
    g[1].attached = true;
    gw_clique_override *none = parse("");
    gw_inventory *inv = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, none, prev);
    const gw_deployable *c = gw_inventory_find(inv, "x_clique0");
    assert_non_null(c);
    assert_true(c->carried);
    assert_int_equal(c->reserved, 0);
    assert_int_equal(c->n_attach_handles, 2);
    g[1].attached = false;
    gw_inventory *inv2 = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, none, inv);
    assert_null(gw_inventory_find(inv2, "x_clique0"));
    assert_int_equal(gw_inventory_find(inv2, "x_0000:67:00.0")->reserved, 1);
    gw_inventory_free(inv2);
    gw_inventory_free(inv);
    gw_inventory_free(prev);
    gw_clique_override_free(none);
    free(g);
}

/* Same grouping as before: nothing is carried, traits follow the config. */
static void unchanged_grouping_is_fresh(void **state)
{
    gw_inventory_gpu *g = copy_gpus(SM8, N(SM8));
    set_state(g, N(SM8), "0000:1c:00.0", GW_STATE_ATTACHED);
    gw_inventory *prev = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE, NULL, NULL);
    g[0].numa_node = 1;         /* content may change; the grouping does not */
    g[1].numa_node = 1;
    g[2].numa_node = 1;
    g[3].numa_node = 1;
    gw_inventory *inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE, NULL, prev);
    for (size_t i = 0; i < gw_inventory_deployable_count(inv); i++)
        assert_false(gw_inventory_deployable(inv, i)->carried);
    assert_string_equal(gw_inventory_deployable(inv, 0)->traits[3], "CUSTOM_NUMA_NODE_1");
    assert_int_not_equal(gw_inventory_generation(inv), gw_inventory_generation(prev));
    gw_inventory_free(inv);
    gw_inventory_free(prev);
    free(g);
}

/* Switching per-GPU -> per-clique while 1c:00.0 is attached: its per-GPU
 * deployable stays, the rest of its clique becomes the clique deployable. */
static void model_switch_while_attached(void **state)
{
    gw_inventory_gpu *g = copy_gpus(SM8, N(SM8));
    set_state(g, N(SM8), "0000:1c:00.0", GW_STATE_ATTACHED);
    gw_inventory *prev = build(g, N(SM8), "sm", GW_INVENTORY_PER_GPU, NULL, NULL);
    gw_inventory *inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE, NULL, prev);
    const exp_dep e[] = {
        { "sm_clique0", 3, 0, 0, false, PCIJ("1a", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("1a", "00", "0"), PCIJ("1d", "00", "0"), PCIJ("1e", "00", "0") },
          { "0000:1a:00.0", "0000:1d:00.0", "0000:1e:00.0" }, DEV_RTX5000 },
        { "sm_0000:1c:00.0", 1, 0, -1, true, PCIJ("1c", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("1c", "00", "0") }, { "0000:1c:00.0" }, DEV_RTX5000 },
        { "sm_clique1", 4, 0, 1, false, PCIJ("3d", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_1", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("3d", "00", "0"), PCIJ("3f", "00", "0"), PCIJ("40", "00", "0"), PCIJ("41", "00", "0") },
          { "0000:3d:00.0", "0000:3f:00.0", "0000:40:00.0", "0000:41:00.0" }, DEV_RTX5000 },
    };
    assert_inventory(inv, e, N(e), g, N(SM8));
    gw_inventory_free(inv);
    gw_inventory_free(prev);
    free(g);
}

/* A new clique that would take the name of a carried one stays per-GPU
 * until the carried one is released. */
static void name_collision(void **state)
{
    gw_inventory_gpu *g = copy_gpus(SM8, N(SM8));
    set_state(g, N(SM8), "0000:1a:00.0", GW_STATE_ATTACHED);
    gw_inventory *prev = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE, NULL, NULL);
    gw_clique_override *ov = parse("0 = 0000:3d:00.0 0000:3f:00.0\n1 = 0000:40:00.0 0000:41:00.0\n");
    gw_inventory *inv = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE, ov, prev);
    const exp_dep e[] = {
        { "sm_clique0", 4, 0, 0, true, PCIJ("1a", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("1a", "00", "0"), PCIJ("1c", "00", "0"), PCIJ("1d", "00", "0"), PCIJ("1e", "00", "0") },
          { "0000:1a:00.0", "0000:1c:00.0", "0000:1d:00.0", "0000:1e:00.0" }, DEV_RTX5000 },
        { "sm_0000:3d:00.0", 1, 0, -1, false, PCIJ("3d", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("3d", "00", "0") }, { "0000:3d:00.0" }, DEV_RTX5000 },
        { "sm_0000:3f:00.0", 1, 0, -1, false, PCIJ("3f", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("3f", "00", "0") }, { "0000:3f:00.0" }, DEV_RTX5000 },
        { "sm_clique1", 2, 0, 1, false, PCIJ("40", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_1EB0", "CUSTOM_GPU_CLIQUE_1", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("40", "00", "0"), PCIJ("41", "00", "0") }, { "0000:40:00.0", "0000:41:00.0" }, DEV_RTX5000 },
    };
    assert_inventory(inv, e, N(e), g, N(SM8));

    /* Released: the override's grouping in full. */
    set_state(g, N(SM8), "0000:1a:00.0", GW_STATE_ALLOCATABLE);
    gw_inventory *inv2 = build(g, N(SM8), "sm", GW_INVENTORY_PER_CLIQUE, ov, inv);
    const char *names[] = { "sm_0000:1a:00.0", "sm_0000:1c:00.0", "sm_0000:1d:00.0", "sm_0000:1e:00.0",
                            "sm_clique0", "sm_clique1" };
    assert_int_equal(gw_inventory_deployable_count(inv2), N(names));
    for (size_t i = 0; i < N(names); i++) {
        assert_string_equal(gw_inventory_deployable(inv2, i)->name, names[i]);
        assert_false(gw_inventory_deployable(inv2, i)->carried);
    }
    gw_inventory_free(inv2);
    gw_inventory_free(inv);
    gw_inventory_free(prev);
    gw_clique_override_free(ov);
    free(g);
}

/* 68:00.0 fell off the bus while 67:00.0 (same clique) is in a VM: the
 * clique deployable keeps both, the missing one reserved. */
static void attached_partner_vanished(void **state)
{
    gw_inventory_gpu *g = copy_gpus(X299, N(X299));
    set_state(g, N(X299), "0000:67:00.0", GW_STATE_ATTACHED);
    gw_inventory *prev = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, NULL, NULL);
    g[1].clique = -1;           /* the scan no longer sees a clique */
    gw_inventory *inv = build(g, 2, "x", GW_INVENTORY_PER_CLIQUE, NULL, prev);
    const exp_dep e[] = {
        X1A,
        { "x_clique0", 2, 1, 0, true, PCIJ("67", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("67", "00", "0") }, { "0000:67:00.0", "0000:68:00.0" }, DEV_A6000 },
    };
    assert_inventory(inv, e, N(e), g, 2);
    gw_inventory_free(inv);
    gw_inventory_free(prev);
    free(g);
}

/* After a daemon restart the previous inventory comes back from its JSON. */
static void previous_from_json(void **state)
{
    gw_inventory_gpu *g = copy_gpus(X299, N(X299));
    set_state(g, N(X299), "0000:68:00.0", GW_STATE_ATTACHED);
    gw_inventory *prev = build(g, N(X299), "x", GW_INVENTORY_PER_CLIQUE, NULL, NULL);
    char *json = NULL;
    assert_int_equal(gw_inventory_to_json(prev, &json), 0);
    gw_inventory *restored = NULL;
    assert_int_equal(gw_inventory_from_json(&restored, json), 0);

    /* Restarted with the per-GPU model: the clique holding 68:00.0 stays. */
    gw_inventory *inv = build(g, N(X299), "x", GW_INVENTORY_PER_GPU, NULL, restored);
    const exp_dep e[] = {
        X1A,
        { "x_clique0", 2, 0, 0, true, PCIJ("67", "00", "0"),
          { OWN, "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("67", "00", "0"), PCIJ("68", "00", "0") }, { "0000:67:00.0", "0000:68:00.0" }, DEV_A6000 },
    };
    assert_inventory(inv, e, N(e), g, N(X299));
    assert_int_equal(gw_inventory_model_of(inv), GW_INVENTORY_PER_GPU);
    gw_inventory_free(inv);
    gw_inventory_free(restored);
    gw_inventory_free(prev);
    free(json);
    free(g);
}

int main(void)
{
    gw_log_set_level(GW_LOG_WARNING);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(override_change_while_attached),
        cmocka_unit_test(quarantined_in_vm_is_carried),
        cmocka_unit_test(unchanged_grouping_is_fresh),
        cmocka_unit_test(model_switch_while_attached),
        cmocka_unit_test(name_collision),
        cmocka_unit_test(attached_partner_vanished),
        cmocka_unit_test(previous_from_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
