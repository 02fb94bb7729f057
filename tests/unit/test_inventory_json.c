/* SPDX-License-Identifier: Apache-2.0 */
/* The inventory's JSON (protocol op `inventory`, `gpuwarden inventory -f
 * json`), its generation number, and reading it back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

#include "inventory_hosts.h"
#include "util.h"

static gw_inventory *build_o(const gw_inventory_gpu *g, size_t n, const gw_inventory_options *o)
{
    gw_inventory *inv = NULL;
    if (gw_inventory_new(&inv, g, n, o) < 0)
        fail_msg("gw_inventory_new: %s", gw_error_message());
    return inv;
}

static gw_inventory *build(const gw_inventory_gpu *g, size_t n, const char *host, gw_inventory_model m)
{
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = host;
    o.model = m;
    return build_o(g, n, &o);
}

static char *to_json(const gw_inventory *inv)
{
    char *s = NULL;
    assert_int_equal(gw_inventory_to_json(inv, &s), 0);
    return s;
}

static void json_exact_shape(void **state)
{
    gw_inventory_gpu *g = copy_gpus(X299, N(X299));
    set_state(g, N(X299), "0000:67:00.0", GW_STATE_QUARANTINED);
    set_state(g, N(X299), "0000:68:00.0", GW_STATE_ATTACHED);
    gw_inventory *inv = build(g, N(X299), "x299", GW_INVENTORY_PER_CLIQUE);
    char *json = to_json(inv);
    char *expect = gw_strdup_printf(
        "{\n"
        "  \"generation\": %llu,\n"
        "  \"host\": \"x299\",\n"
        "  \"model\": \"per_clique\",\n"
        "  \"deployables\": [\n"
        "    {\n"
        "      \"name\": \"x299_0000:1a:00.0\",\n"
        "      \"rc\": \"PGPU\",\n"
        "      \"num_accelerators\": 1,\n"
        "      \"reserved\": 0,\n"
        "      \"traits\": [\n"
        "        \"OWNER_CYBORG\",\n"
        "        \"CUSTOM_NVIDIA_2230\",\n"
        "        \"CUSTOM_NUMA_NODE_0\"\n"
        "      ],\n"
        "      \"attach_handles\": [\n"
        "        {\n"
        "          \"type\": \"PCI\",\n"
        "          \"info\": \"{\\\"bus\\\": \\\"1a\\\", \\\"device\\\": \\\"00\\\", \\\"domain\\\": \\\"0000\\\", \\\"function\\\": \\\"0\\\"}\"\n"
        "        }\n"
        "      ],\n"
        "      \"gpus\": [\n"
        "        \"0000:1a:00.0\"\n"
        "      ],\n"
        "      \"driver_name\": \"NVIDIA\",\n"
        "      \"device\": {\n"
        "        \"vendor\": \"10de\",\n"
        "        \"model\": \"GA102GL [RTX A6000]\",\n"
        "        \"type\": \"GPU\",\n"
        "        \"std_board_info\": \"{\\\"controller\\\": \\\"VGA compatible controller\\\", \\\"product_id\\\": \\\"2230\\\"}\",\n"
        "        \"controlpath\": {\n"
        "          \"type\": \"PCI\",\n"
        "          \"info\": \"{\\\"bus\\\": \\\"1a\\\", \\\"device\\\": \\\"00\\\", \\\"domain\\\": \\\"0000\\\", \\\"function\\\": \\\"0\\\"}\"\n"
        "        }\n"
        "      }\n"
        "    },\n"
        "    {\n"
        "      \"name\": \"x299_clique0\",\n"
        "      \"rc\": \"PGPU\",\n"
        "      \"num_accelerators\": 2,\n"
        "      \"reserved\": 1,\n"
        "      \"traits\": [\n"
        "        \"OWNER_CYBORG\",\n"
        "        \"CUSTOM_NVIDIA_2230\",\n"
        "        \"CUSTOM_GPU_CLIQUE_0\",\n"
        "        \"CUSTOM_NUMA_NODE_0\"\n"
        "      ],\n"
        "      \"attach_handles\": [\n"
        "        {\n"
        "          \"type\": \"PCI\",\n"
        "          \"info\": \"{\\\"bus\\\": \\\"68\\\", \\\"device\\\": \\\"00\\\", \\\"domain\\\": \\\"0000\\\", \\\"function\\\": \\\"0\\\"}\"\n"
        "        }\n"
        "      ],\n"
        "      \"gpus\": [\n"
        "        \"0000:67:00.0\",\n"
        "        \"0000:68:00.0\"\n"
        "      ],\n"
        "      \"driver_name\": \"NVIDIA\",\n"
        "      \"device\": {\n"
        "        \"vendor\": \"10de\",\n"
        "        \"model\": \"GA102GL [RTX A6000]\",\n"
        "        \"type\": \"GPU\",\n"
        "        \"std_board_info\": \"{\\\"controller\\\": \\\"VGA compatible controller\\\", \\\"product_id\\\": \\\"2230\\\"}\",\n"
        "        \"controlpath\": {\n"
        "          \"type\": \"PCI\",\n"
        "          \"info\": \"{\\\"bus\\\": \\\"67\\\", \\\"device\\\": \\\"00\\\", \\\"domain\\\": \\\"0000\\\", \\\"function\\\": \\\"0\\\"}\"\n"
        "        }\n"
        "      }\n"
        "    }\n"
        "  ]\n"
        "}",
        (unsigned long long)gw_inventory_generation(inv));
    assert_string_equal(json, expect);
    free(expect);
    free(json);
    gw_inventory_free(inv);
    free(g);
}

/* The documented algorithm, recomputed here from a hand-written canonical
 * text: SHA-256("gpuwarden-inventory-1\n" + compact JSON with sorted keys),
 * first 53 bits. */
static void generation_is_documented_hash(void **state)
{
    const gw_inventory_gpu g[] = { { "0000:3b:00.0", 0x10de, 0x1eb8, 1, -1, GW_STATE_ALLOCATABLE, false, 0x0302,
                                     "TU104GL [Tesla T4]" } };
    gw_inventory *inv = build(g, 1, "cn1", GW_INVENTORY_PER_GPU);
    const char canon[] =
        "gpuwarden-inventory-1\n"
        "{\"deployables\":[{\"attach_handles\":[{\"info\":\"{\\\"bus\\\": \\\"3b\\\", \\\"device\\\": \\\"00\\\", \\\"domain\\\": \\\"0000\\\", \\\"function\\\": \\\"0\\\"}\",\"type\":\"PCI\"}],"
        "\"device\":{\"controlpath\":{\"info\":\"{\\\"bus\\\": \\\"3b\\\", \\\"device\\\": \\\"00\\\", \\\"domain\\\": \\\"0000\\\", \\\"function\\\": \\\"0\\\"}\",\"type\":\"PCI\"},\"model\":\"TU104GL [Tesla T4]\","
        "\"std_board_info\":\"{\\\"controller\\\": \\\"3D controller\\\", \\\"product_id\\\": \\\"1eb8\\\"}\","
        "\"type\":\"GPU\",\"vendor\":\"10de\"},\"driver_name\":\"NVIDIA\","
        "\"gpus\":[\"0000:3b:00.0\"],\"name\":\"cn1_0000:3b:00.0\",\"num_accelerators\":1,\"rc\":\"PGPU\","
        "\"reserved\":0,\"traits\":[\"OWNER_CYBORG\",\"CUSTOM_NVIDIA_1EB8\",\"CUSTOM_NUMA_NODE_1\"]}],"
        "\"host\":\"cn1\",\"model\":\"per_gpu\"}";
    unsigned char md[32];
    unsigned int len = 0;
    assert_true(EVP_Digest(canon, sizeof canon - 1, md, &len, EVP_sha256(), NULL));
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | md[i];
    assert_int_equal(gw_inventory_generation(inv), v >> 11);
    assert_true(gw_inventory_generation(inv) < (1ull << 53));
    gw_inventory_free(inv);
}

static uint64_t gen_of(const gw_inventory_gpu *g, size_t n, const gw_inventory_options *o)
{
    gw_inventory *inv = build_o(g, n, o);
    uint64_t v = gw_inventory_generation(inv);
    gw_inventory_free(inv);
    assert_true(v > 0 && v < (1ull << 53));
    return v;
}

/* Equal content, equal generation; any change, a different one. */
static void generation_tracks_content(void **state)
{
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "sm";
    gw_inventory_gpu *g = copy_gpus(SM8, N(SM8));
    const uint64_t base = gen_of(g, N(SM8), &o);
    assert_int_equal(gen_of(g, N(SM8), &o), base);

    /* Same content from a shuffled input. */
    gw_inventory_gpu *rev = copy_gpus(SM8, N(SM8));
    for (size_t i = 0; i < N(SM8); i++)
        rev[i] = SM8[N(SM8) - 1 - i];
    assert_int_equal(gen_of(rev, N(SM8), &o), base);
    free(rev);

    /* Attached and allocatable publish the same content. */
    set_state(g, N(SM8), "0000:1c:00.0", GW_STATE_ATTACHED);
    assert_int_equal(gen_of(g, N(SM8), &o), base);

    uint64_t seen[16];
    size_t n_seen = 0;
    seen[n_seen++] = base;
#define CHANGED(expr)                                                                             \
    do {                                                                                          \
        uint64_t v_ = (expr);                                                                     \
        for (size_t k_ = 0; k_ < n_seen; k_++)                                                    \
            assert_true(v_ != seen[k_]);                                                          \
        seen[n_seen++] = v_;                                                                      \
    } while (0)

    set_state(g, N(SM8), "0000:1c:00.0", GW_STATE_QUARANTINED);       /* reserved, handle */
    CHANGED(gen_of(g, N(SM8), &o));
    set_state(g, N(SM8), "0000:1c:00.0", GW_STATE_SANITIZED);         /* same content as quarantined */
    assert_int_equal(gen_of(g, N(SM8), &o), seen[1]);
    set_state(g, N(SM8), "0000:1c:00.0", GW_STATE_ALLOCATABLE);
    assert_int_equal(gen_of(g, N(SM8), &o), base);

    o.host = "sm2";
    CHANGED(gen_of(g, N(SM8), &o));
    o.host = "sm";
    o.model = GW_INVENTORY_PER_CLIQUE;
    CHANGED(gen_of(g, N(SM8), &o));
    o.model = GW_INVENTORY_PER_GPU;
    const char *extra[] = { "CUSTOM_RACK_7" };
    o.extra_traits = extra;
    o.n_extra_traits = 1;
    CHANGED(gen_of(g, N(SM8), &o));
    o.n_extra_traits = 0;
    g[7].numa_node = 1;
    CHANGED(gen_of(g, N(SM8), &o));
    g[7].numa_node = 0;
    g[7].clique = -1;
    CHANGED(gen_of(g, N(SM8), &o));
    g[7].clique = 1;
    g[7].device_id = 0x1eb1;
    CHANGED(gen_of(g, N(SM8), &o));
    g[7].device_id = 0x1eb0;
    CHANGED(gen_of(g, N(SM8) - 1, &o));                                  /* a GPU gone */
    assert_int_equal(gen_of(g, N(SM8), &o), base);
#undef CHANGED
    free(g);
}

static void json_round_trip(void **state)
{
    gw_inventory_gpu *g = copy_gpus(SM8, N(SM8));
    set_state(g, N(SM8), "0000:1d:00.0", GW_STATE_QUARANTINED);
    set_state(g, N(SM8), "0000:3f:00.0", GW_STATE_ATTACHED);
    for (int m = GW_INVENTORY_PER_GPU; m <= GW_INVENTORY_PER_CLIQUE; m++) {
        gw_inventory *inv = build(g, N(SM8), "sm", (gw_inventory_model)m);
        char *json = to_json(inv);
        gw_inventory *back = NULL;
        assert_int_equal(gw_inventory_from_json(&back, json), 0);
        assert_int_equal(gw_inventory_generation(back), gw_inventory_generation(inv));
        assert_int_equal(gw_inventory_model_of(back), m);
        assert_string_equal(gw_inventory_host(back), "sm");
        assert_int_equal(gw_inventory_deployable_count(back), gw_inventory_deployable_count(inv));
        for (size_t i = 0; i < gw_inventory_deployable_count(inv); i++) {
            const gw_deployable *a = gw_inventory_deployable(inv, i), *b = gw_inventory_deployable(back, i);
            assert_string_equal(a->name, b->name);
            assert_int_equal(a->clique, b->clique);
            assert_string_equal(a->cpid_info, b->cpid_info);
            assert_int_equal(a->n_attach_handles, b->n_attach_handles);
            for (size_t h = 0; h < a->n_attach_handles; h++)
                assert_string_equal(a->attach_handles[h].address, b->attach_handles[h].address);
        }
        char *again = to_json(back);
        assert_string_equal(again, json);
        free(again);
        free(json);
        gw_inventory_free(back);
        gw_inventory_free(inv);
    }
    free(g);
}

static void expect_bad_json(const char *text, const char *message)
{
    gw_inventory *inv = (gw_inventory *)0x1;
    assert_int_equal(gw_inventory_from_json(&inv, text), -EINVAL);
    assert_ptr_equal(inv, (gw_inventory *)0x1);
    if (!strstr(gw_error_message(), message))
        fail_msg("'%s' does not contain '%s'", gw_error_message(), message);
}

#define CP3B "{\"type\": \"PCI\", \"info\": \"{\\\"bus\\\": \\\"3b\\\", \\\"device\\\": \\\"00\\\", " \
             "\\\"domain\\\": \\\"0000\\\", \\\"function\\\": \\\"0\\\"}\"}"
#define DEVJ(cp) ", \"driver_name\": \"NVIDIA\", \"device\": {\"vendor\": \"10de\", \"model\": \"T4\", " \
                 "\"type\": \"GPU\", \"std_board_info\": \"{}\", \"controlpath\": " cp "}"
#define DEPX(name, num, res, handles, gpus, tail)                                                  \
    "{\"name\": \"" name "\", \"rc\": \"PGPU\", \"num_accelerators\": " #num ", \"reserved\": " #res \
    ", \"traits\": [\"OWNER_CYBORG\"], \"attach_handles\": [" handles "], \"gpus\": [" gpus "]" tail "}"
#define DEP(name, num, res, handles, gpus) DEPX(name, num, res, handles, gpus, DEVJ(CP3B))
#define INV(deps) "{\"generation\": 1, \"host\": \"h\", \"model\": \"per_gpu\", \"deployables\": [" deps "]}"
#define H3B "{\"type\": \"PCI\", \"info\": \"{\\\"bus\\\": \\\"3b\\\", \\\"device\\\": \\\"00\\\", " \
            "\\\"domain\\\": \\\"0000\\\", \\\"function\\\": \\\"0\\\"}\"}"

static void json_rejects(void **state)
{
    expect_bad_json("{", "line 1");
    expect_bad_json("[]", "expected {\"generation\"");
    expect_bad_json("{\"generation\": 1, \"host\": \"h\", \"model\": \"per_gpu\"}", "expected {\"generation\"");
    expect_bad_json("{\"generation\": 1, \"host\": \"h\", \"model\": \"per_gpu\", \"deployables\": [], \"x\": 1}",
                    "expected {\"generation\"");
    expect_bad_json("{\"generation\": 1, \"host\": \"h\", \"model\": \"flat\", \"deployables\": []}",
                    "inventory JSON: unknown model 'flat'");
    expect_bad_json(INV("{\"name\": \"a\"}"), "deployables[0] does not have exactly");
    expect_bad_json(INV(DEPX("a", 1, 0, "", "\"0000:3b:00.0\"", "")), "deployables[0] does not have exactly");
    expect_bad_json(INV(DEP("a", 1, 0, "", "")), "a: no GPUs");
    expect_bad_json(INV(DEP("a", 1, 0, "", "\"3b:00.0\"")), "is not a canonical address");
    expect_bad_json(INV(DEP("a", 2, 0, "", "\"0000:3c:00.0\", \"0000:3b:00.0\"")), "ascending order");
    expect_bad_json(INV(DEP("a", 1, 0, H3B, "\"0000:3c:00.0\"")), "is none of its GPUs");
    /* Every GPU needs a handle or a reservation (one held by a stopped VM has both). */
    expect_bad_json(INV(DEP("a", 1, 0, "", "\"0000:3b:00.0\"")), "do not match");
    expect_bad_json(INV(DEP("a", 1, 2, H3B, "\"0000:3b:00.0\"")), "do not match");
    expect_bad_json(INV(DEPX("a", 1, 0, H3B, "\"0000:3b:00.0\"", ", \"driver_name\": \"NVIDIA\", \"device\": {}")),
                    "\"device\" is not {vendor");
    expect_bad_json(INV(DEPX("a", 1, 1, "", "\"0000:3c:00.0\"", DEVJ(CP3B))), "is not its first GPU's");
    expect_bad_json(INV(DEP("a", 1, 1, "", "\"0000:3b:00.0\"") ", " DEP("b", 1, 1, "", "\"0000:3b:00.0\"")),
                    "is in both a and b");
    /* Well formed, but the generation does not match the content. */
    expect_bad_json(INV(DEP("a", 1, 0, H3B, "\"0000:3b:00.0\"")), "does not match its content");
    /* ... which is the only thing wrong with it. */
    gw_inventory *inv = NULL;
    const gw_inventory_gpu g[] = { { "0000:3b:00.0", 0x10de, 0x1eb8, 0, -1, GW_STATE_ALLOCATABLE, false, 0x0302, "T4" } };
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "h";
    assert_int_equal(gw_inventory_new(&inv, g, 1, &o), 0);
    char *good = to_json(inv);
    gw_inventory *back = NULL;
    assert_int_equal(gw_inventory_from_json(&back, good), 0);
    gw_inventory_free(back);
    free(good);
    gw_inventory_free(inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_exact_shape),
        cmocka_unit_test(generation_is_documented_hash),
        cmocka_unit_test(generation_tracks_content),
        cmocka_unit_test(json_round_trip),
        cmocka_unit_test(json_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
