/* SPDX-License-Identifier: Apache-2.0 */
/* Trait names, inventory options and the clique override file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "inventory_hosts.h"
#include "util.h"

static void expect_msg(const char *fragment)
{
    if (!strstr(gw_error_message(), fragment))
        fail_msg("'%s' does not contain '%s'", gw_error_message(), fragment);
}

/* ---- Traits ------------------------------------------------------------- */

static void trait_rule(void **state)
{
    assert_int_equal(gw_trait_check("CUSTOM_A"), 0);
    assert_int_equal(gw_trait_check("CUSTOM_GPU_CLIQUE_15"), 0);
    assert_int_equal(gw_trait_check("CUSTOM__"), 0);

    assert_int_equal(gw_trait_check(NULL), -EINVAL);
    assert_int_equal(gw_trait_check(""), -EINVAL);
    expect_msg("empty");
    assert_int_equal(gw_trait_check("OWNER_CYBORG"), -EINVAL);
    expect_msg("must start with CUSTOM_");
    assert_int_equal(gw_trait_check("CUSTOM_"), -EINVAL);
    expect_msg("nothing after CUSTOM_");
    assert_int_equal(gw_trait_check("CUSTOM_gpu"), -EINVAL);
    expect_msg("character 'g' at 7");
    assert_int_equal(gw_trait_check("CUSTOM_A-B"), -EINVAL);
    expect_msg("character '-' at 8");
    assert_int_equal(gw_trait_check("custom_A"), -EINVAL);
    assert_int_equal(gw_trait_check("CUSTOM_A B"), -EINVAL);

    char name[300];
    memset(name, 'X', sizeof name);
    memcpy(name, "CUSTOM_", 7);
    name[255] = '\0';
    assert_int_equal(gw_trait_check(name), 0);
    name[255] = 'X';
    name[256] = '\0';
    assert_int_equal(gw_trait_check(name), -EINVAL);
    expect_msg("256 characters, Placement allows at most 255");
}

static void product_traits(void **state)
{
    char buf[32];
    assert_string_equal(gw_trait_product(0x10de, 0x1eb8, buf, sizeof buf), "CUSTOM_NVIDIA_1EB8");
    assert_string_equal(gw_trait_product(0x10de, 0x15f7, buf, sizeof buf), "CUSTOM_NVIDIA_15F7");
    assert_string_equal(gw_trait_product(0x1002, 0x74a1, buf, sizeof buf), "CUSTOM_AMD_74A1");
    assert_string_equal(gw_trait_product(0x8086, 0x56c0, buf, sizeof buf), "CUSTOM_INTEL_56C0");
    assert_string_equal(gw_trait_product(0x102b, 0x0536, buf, sizeof buf), "CUSTOM_MATROX_0536");
    assert_string_equal(gw_trait_product(0x1af4, 0x1050, buf, sizeof buf), "CUSTOM_1AF4_1050");
    assert_int_equal(gw_trait_check(buf), 0);
}

/* ---- Options -------------------------------------------------------------- */

static int try_build(const gw_inventory_gpu *g, size_t n, const gw_inventory_options *o)
{
    gw_inventory *inv = (gw_inventory *)0x1;
    int r = gw_inventory_new(&inv, g, n, o);
    if (r == 0)
        gw_inventory_free(inv);
    else
        assert_ptr_equal(inv, (gw_inventory *)0x1);
    return r;
}

static void extra_traits(void **state)
{
    const char *extra[] = { "CUSTOM_RACK_7", "CUSTOM_NVIDIA_2230", "CUSTOM_A100_LOOKALIKE" };
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "x";
    o.extra_traits = extra;
    o.n_extra_traits = 3;
    gw_inventory *inv = NULL;
    assert_int_equal(gw_inventory_new(&inv, X299, N(X299), &o), 0);
    /* Appended in order; one equal to the product trait is not repeated. */
    const exp_dep e = { "x_0000:67:00.0", 1, 0, -1, false, PCIJ("67", "00", "0"),
                        { "OWNER_CYBORG", "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0",
                          "CUSTOM_RACK_7", "CUSTOM_A100_LOOKALIKE" },
                        { PCIJ("67", "00", "0") }, { "0000:67:00.0" }, DEV_A6000 };
    assert_dep(gw_inventory_find(inv, "x_0000:67:00.0"), &e);
    gw_inventory_free(inv);

    const char *bad[][2] = {
        { "CUSTOM_rack", "character 'r'" },
        { "HW_CPU_X86_AVX", "must start with CUSTOM_" },
        { "CUSTOM_GPU_CLIQUE_3", "gpuwarden's own namespace" },
        { "CUSTOM_NUMA_NODE_1", "gpuwarden's own namespace" },
    };
    for (size_t i = 0; i < N(bad); i++) {
        o.extra_traits = &bad[i][0];
        o.n_extra_traits = 1;
        assert_int_equal(try_build(X299, N(X299), &o), -EINVAL);
        expect_msg(bad[i][1]);
        expect_msg("inventory: extra");
    }
    const char *twice[] = { "CUSTOM_A", "CUSTOM_B", "CUSTOM_A" };
    o.extra_traits = twice;
    o.n_extra_traits = 3;
    assert_int_equal(try_build(X299, N(X299), &o), -EINVAL);
    expect_msg("'CUSTOM_A' is given twice");
    o.extra_traits = NULL;
    assert_int_equal(try_build(X299, N(X299), &o), -EINVAL);
}

static void host_names(void **state)
{
    /* Default: the host name, which is Cyborg's CONF.host default. */
    char name[HOST_NAME_MAX + 1];
    assert_int_equal(gethostname(name, sizeof name), 0);
    gw_inventory *inv = NULL;
    assert_int_equal(gw_inventory_new(&inv, X299, 1, NULL), 0);
    assert_string_equal(gw_inventory_host(inv), name);
    char *dep = gw_strdup_printf("%s_0000:1a:00.0", name);
    assert_string_equal(gw_inventory_deployable(inv, 0)->name, dep);
    free(dep);
    assert_int_equal(gw_inventory_model_of(inv), GW_INVENTORY_PER_GPU);
    gw_inventory_free(inv);

    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "";
    assert_int_equal(try_build(X299, N(X299), &o), -EINVAL);
    expect_msg("empty host name");
    o.host = "compute 1";
    assert_int_equal(try_build(X299, N(X299), &o), -EINVAL);
    expect_msg("space or non-printable");
    o.host = "compute\n1";
    assert_int_equal(try_build(X299, N(X299), &o), -EINVAL);

    /* "<host>_0000:00:00.0" must fit Placement's 200 characters. */
    char longest[200];
    memset(longest, 'h', sizeof longest);
    longest[187] = '\0';
    o.host = longest;
    assert_int_equal(try_build(X299, N(X299), &o), 0);
    longest[187] = 'h';
    longest[188] = '\0';
    assert_int_equal(try_build(X299, N(X299), &o), -EINVAL);
    expect_msg("exceed Placement's 200 characters");
}

static void bad_input(void **state)
{
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "x";
    gw_inventory_gpu g[2] = { X299[0], X299[1] };

    g[1].address = "0000:1A:00.0";
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    expect_msg("GPU 1: '0000:1A:00.0' is not a canonical PCI address");
    g[1].address = NULL;
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    g[1].address = "0000:1a:00.0";
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    expect_msg("GPU 0000:1a:00.0 is listed twice");
    g[1] = X299[1];
    g[1].clique = 16;
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    expect_msg("clique 16 is outside -1..15");
    g[1].clique = -2;
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    g[1] = X299[1];
    g[1].state = (gw_state)GW_STATE_COUNT;
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    expect_msg("invalid state 5");
    g[1] = X299[1];
    g[1].numa_node = -3;
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    g[1] = X299[1];
    assert_int_equal(try_build(NULL, 2, &o), -EINVAL);

    o.version = GW_INVENTORY_OPTIONS_VERSION + 1;
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    expect_msg("this library knows 1 to");
    o.version = 0;
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    expect_msg("options version 0");
    o.version = GW_INVENTORY_OPTIONS_VERSION;
    o.model = (gw_inventory_model)7;
    assert_int_equal(try_build(g, 2, &o), -EINVAL);
    expect_msg("unknown model 7");
    assert_int_equal(gw_inventory_new(NULL, g, 2, NULL), -EINVAL);
}

/* ---- GPUs held by stopped VMs (options version 2) ---------------------- */

static const gw_deployable *dep_of(const gw_inventory *inv, const char *address)
{
    const gw_deployable *d = gw_inventory_find_gpu(inv, address);
    assert_non_null(d);
    return d;
}

static bool has_handle(const gw_deployable *d, const char *address)
{
    for (size_t i = 0; i < d->n_attach_handles; i++)
        if (!strcmp(d->attach_handles[i].address, address))
            return true;
    return false;
}

/* An attached GPU whose VMs are all stopped keeps its handle (Cyborg has
 * bound it) and is reserved too (Nova may drop the allocation when it
 * deletes the instance, before the clean-up): handles + reserved may exceed
 * the GPUs. Listed but not attached changes nothing. */
static void stopped_gpus_are_reserved_and_keep_their_handles(void **state)
{
    gw_inventory_gpu *g = copy_gpus(X299, N(X299));
    set_state(g, N(X299), "0000:1a:00.0", GW_STATE_ATTACHED);
    set_state(g, N(X299), "0000:68:00.0", GW_STATE_QUARANTINED);
    g[2].attached = true;                       /* quarantined while a VM holds it */
    const char *stopped[] = { "0000:1a:00.0", "0000:68:00.0", "0000:67:00.0" };   /* 67: allocatable */
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "x";
    gw_inventory *running = NULL, *inv = NULL;
    assert_int_equal(gw_inventory_new(&running, g, N(X299), &o), 0);
    o.stopped = stopped;
    o.n_stopped = 3;
    assert_int_equal(gw_inventory_new(&inv, g, N(X299), &o), 0);
    for (size_t i = 0; i < N(X299); i++) {
        const char *a = X299[i].address;
        bool held = i != 1;
        const gw_deployable *r = dep_of(running, a), *d = dep_of(inv, a);
        assert_int_equal(r->reserved, 0);                   /* running VMs' allocations take them */
        assert_int_equal(d->reserved, held ? 1 : 0);
        assert_true(has_handle(r, a) && has_handle(d, a));
    }
    assert_int_not_equal(gw_inventory_generation(inv), gw_inventory_generation(running));

    /* Read back from JSON (a persisted `previous`): handles + reserved > GPUs is accepted. */
    char *json = NULL;
    assert_int_equal(gw_inventory_to_json(inv, &json), 0);
    gw_inventory *back = NULL;
    if (gw_inventory_from_json(&back, json) < 0)
        fail_msg("from_json: %s", gw_error_message());
    assert_int_equal(gw_inventory_generation(back), gw_inventory_generation(inv));
    free(json);
    gw_inventory_free(back);
    gw_inventory_free(running);
    gw_inventory_free(inv);

    /* Per clique: one deployable for 4 GPUs, one held by a stopped VM, one by
     * a running one, two allocatable: 4 handles, 1 reserved. */
    gw_inventory_gpu *c = copy_gpus(SM8, N(SM8));
    set_state(c, N(SM8), "0000:1a:00.0", GW_STATE_ATTACHED);
    set_state(c, N(SM8), "0000:1c:00.0", GW_STATE_ATTACHED);
    const char *one[] = { "0000:1c:00.0" };
    o = (gw_inventory_options)GW_INVENTORY_OPTIONS_INIT;
    o.host = "x";
    o.model = GW_INVENTORY_PER_CLIQUE;
    o.stopped = one;
    o.n_stopped = 1;
    assert_int_equal(gw_inventory_new(&inv, c, N(SM8), &o), 0);
    const gw_deployable *d = gw_inventory_find(inv, "x_clique0");
    assert_non_null(d);
    assert_int_equal(d->num_accelerators, 4);
    assert_int_equal(d->n_attach_handles, 4);
    assert_int_equal(d->reserved, 1);
    gw_inventory_free(inv);

    /* Bad input: a malformed address, a count without the array. */
    const char *bad[] = { "1c:00.0" };
    o.stopped = bad;
    assert_int_equal(try_build(c, N(SM8), &o), -EINVAL);
    expect_msg("stopped GPU 0: '1c:00.0' is not a canonical PCI address");
    o.stopped = NULL;
    assert_int_equal(try_build(c, N(SM8), &o), -EINVAL);
    expect_msg("1 stopped GPUs but no array");
    free(c);
    free(g);
}

/* A caller built against version 1: its options end before `stopped`. */
static void options_version_1_still_accepted(void **state)
{
    gw_inventory_options full = GW_INVENTORY_OPTIONS_INIT;
    full.version = 1;
    full.host = "x";
    full.model = GW_INVENTORY_PER_CLIQUE;
    /* Exactly as long as a version-1 struct: ASan sees a read past it. */
    void *o1 = malloc(offsetof(gw_inventory_options, stopped));
    assert_non_null(o1);
    memcpy(o1, &full, offsetof(gw_inventory_options, stopped));
    gw_inventory *inv = NULL;
    assert_int_equal(gw_inventory_new(&inv, SM8, N(SM8), o1), 0);
    assert_non_null(gw_inventory_find(inv, "x_clique1"));
    gw_inventory_free(inv);
    free(o1);
}

static void model_names(void **state)
{
    gw_inventory_model m;
    assert_string_equal(gw_inventory_model_name(GW_INVENTORY_PER_GPU), "per_gpu");
    assert_string_equal(gw_inventory_model_name(GW_INVENTORY_PER_CLIQUE), "per_clique");
    assert_string_equal(gw_inventory_model_name((gw_inventory_model)9), "invalid");
    assert_int_equal(gw_inventory_model_from_name("per_clique", &m), 0);
    assert_int_equal(m, GW_INVENTORY_PER_CLIQUE);
    assert_int_equal(gw_inventory_model_from_name("per_gpu", &m), 0);
    assert_int_equal(m, GW_INVENTORY_PER_GPU);
    assert_int_equal(gw_inventory_model_from_name("per-clique", &m), 0);
    assert_int_equal(m, GW_INVENTORY_PER_CLIQUE);
    assert_int_equal(gw_inventory_model_from_name("per-gpu", &m), 0);
    assert_int_equal(m, GW_INVENTORY_PER_GPU);
    assert_int_equal(gw_inventory_model_from_name(NULL, &m), -EINVAL);
    assert_int_equal(gw_inventory_model_from_name("clique", &m), -EINVAL);
    expect_msg("unknown inventory model 'clique'");
}

/* ---- Clique override file -------------------------------------------------- */

static const char HGX_OVERRIDE[] =
    "# NVLink partitions of the HGX board\n"
    "\n"
    "1 = 0000:9b:00.0 0000:bb:00.0, 0000:CB:00.0\t0000:db:00.0   # upper tray\n"
    "  0=0000:19:00.0,0000:3b:00.0,0000:4c:00.0,0000:5d:00.0\r\n";

static gw_clique_override *parse(const char *text)
{
    gw_clique_override *ov = NULL;
    if (gw_clique_override_parse(&ov, text, "cliques.conf") < 0)
        fail_msg("parse: %s", gw_error_message());
    return ov;
}

static void override_parse(void **state)
{
    gw_clique_override *ov = parse(HGX_OVERRIDE);
    assert_int_equal(gw_clique_override_count(ov), 2);
    assert_int_equal(gw_clique_override_id(ov, 0), 0);
    assert_int_equal(gw_clique_override_id(ov, 1), 1);
    assert_int_equal(gw_clique_override_id(ov, 2), -1);
    assert_int_equal(gw_clique_override_size(ov, 0), 4);
    assert_int_equal(gw_clique_override_size(ov, 1), 4);
    const char *c0[] = { "0000:19:00.0", "0000:3b:00.0", "0000:4c:00.0", "0000:5d:00.0" };
    const char *c1[] = { "0000:9b:00.0", "0000:bb:00.0", "0000:cb:00.0", "0000:db:00.0" };
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(gw_clique_override_member(ov, 0, i), c0[i]);
        assert_string_equal(gw_clique_override_member(ov, 1, i), c1[i]);
    }
    assert_null(gw_clique_override_member(ov, 0, 4));
    assert_int_equal(gw_clique_override_lookup(ov, "0000:cb:00.0"), 1);
    assert_int_equal(gw_clique_override_lookup(ov, "0000:03:00.0"), -1);
    assert_int_equal(gw_clique_override_check(ov, HGX, N(HGX)), 0);
    gw_clique_override_free(ov);

    /* Only comments: no cliques at all. */
    ov = parse("# nothing is P2P here\n\n");
    assert_int_equal(gw_clique_override_count(ov), 0);
    gw_clique_override_free(ov);
}

static void expect_parse_error(const char *text, const char *message)
{
    gw_clique_override *ov = (gw_clique_override *)0x1;
    assert_int_equal(gw_clique_override_parse(&ov, text, "cliques.conf"), -EINVAL);
    assert_ptr_equal(ov, (gw_clique_override *)0x1);
    if (strcmp(gw_error_message(), message))
        fail_msg("got '%s', expected '%s'", gw_error_message(), message);
}

static void override_errors(void **state)
{
    expect_parse_error("0 = 0000:19:00.0 0000:3b:00.0\n0000:4c:00.0 0000:5d:00.0\n",
                       "cliques.conf:2: expected '<clique id> = <PCI address> <PCI address> ...'");
    expect_parse_error("= 0000:19:00.0 0000:3b:00.0\n", "cliques.conf:1: missing clique id before '='");
    expect_parse_error("a = 0000:19:00.0 0000:3b:00.0\n", "cliques.conf:1: clique id 'a' is not a number 0-15");
    expect_parse_error("-1 = 0000:19:00.0 0000:3b:00.0\n", "cliques.conf:1: clique id '-1' is not a number 0-15");
    expect_parse_error("16 = 0000:19:00.0 0000:3b:00.0\n", "cliques.conf:1: clique id 16 is out of range 0-15");
    expect_parse_error("\n3 = 0000:19:00.0 0000:3b:00.0\n3 = 0000:4c:00.0 0000:5d:00.0\n",
                       "cliques.conf:3: clique 3 is given twice (first on line 2)");
    expect_parse_error("0 = 0000:19:00.0 19:00.1\n", "cliques.conf:1: '19:00.1' is not a PCI address like 0000:3b:00.0");
    expect_parse_error("0 = 0000:19:00.0 0000:3b:00.0\n# x\n1 = 0000:4c:00.0 0000:3B:00.0\n",
                       "cliques.conf:3: 0000:3b:00.0 is already in clique 0 (line 1); cliques must not overlap");
    expect_parse_error("0 = 0000:19:00.0 0000:19:00.0\n",
                       "cliques.conf:1: 0000:19:00.0 is already in clique 0 (line 1); cliques must not overlap");
    expect_parse_error("0 = 0000:19:00.0\n", "cliques.conf:1: clique 0 has one GPU (0000:19:00.0); a clique needs two or more");
    expect_parse_error("0 = # none yet\n", "cliques.conf:1: clique 0 lists no GPUs");

    /* 17 cliques: QEMU's clique id is 4 bits. */
    char text[17 * 48] = "";
    for (int i = 0; i < 17; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "%d = 0000:%02x:00.0 0000:%02x:00.0\n", i,
                 2 * i, 2 * i + 1);
    expect_parse_error(text, "cliques.conf:17: more than 16 cliques (QEMU's x-nv-gpudirect-clique id is 4 bits)");
    /* 16 are fine. */
    *strstr(text, "16 = ") = '\0';
    gw_clique_override *ov = parse(text);
    assert_int_equal(gw_clique_override_count(ov), 16);
    assert_int_equal(gw_clique_override_id(ov, 15), 15);
    gw_clique_override_free(ov);
}

static void override_check_errors(void **state)
{
    gw_clique_override *ov = parse("0 = 0000:19:00.0 0000:3b:00.0\n1 = 0000:9b:00.0 0000:9c:00.0\n");
    assert_int_equal(gw_clique_override_check(ov, HGX, N(HGX)), -ENOENT);
    assert_string_equal(gw_error_message(),
                        "clique override: 0000:9c:00.0 (clique 1, line 2) is not a GPU on this host");
    gw_clique_override_free(ov);

    ov = parse("\n0 = 0000:19:00.0 0000:03:00.0\n");
    assert_int_equal(gw_clique_override_check(ov, HGX, N(HGX)), -EINVAL);
    assert_string_equal(gw_error_message(),
                        "clique override: 0000:03:00.0 (clique 0, line 2) is not an NVIDIA GPU (vendor 102b); "
                        "QEMU's P2P clique hint applies to NVIDIA GPUs only");
    gw_clique_override_free(ov);
    assert_int_equal(gw_clique_override_check(NULL, HGX, N(HGX)), 0);
}

static void override_file(void **state)
{
    char dir[] = "/tmp/gw-cliques-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = gw_strdup_printf("%s/cliques.conf", dir);
    gw_clique_override *ov = NULL;
    assert_int_equal(gw_clique_override_load(&ov, path), -ENOENT);
    expect_msg(path);

    FILE *f = fopen(path, "w");
    fputs(HGX_OVERRIDE, f);
    fclose(f);
    assert_int_equal(gw_clique_override_load(&ov, path), 0);
    assert_int_equal(gw_clique_override_count(ov), 2);
    gw_clique_override_free(ov);

    f = fopen(path, "w");
    fputs("0 = 0000:19:00.0\n", f);
    fclose(f);
    assert_int_equal(gw_clique_override_load(&ov, path), -EINVAL);
    char *msg = gw_strdup_printf("%s:1: clique 0 has one GPU", path);
    expect_msg(msg);
    free(msg);
    unlink(path);
    rmdir(dir);
    free(path);
}

/* Applied: the HGX's NVLink partitions become clique deployables. */
static void override_applied(void **state)
{
    gw_clique_override *ov = parse(HGX_OVERRIDE);
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "hgx";
    o.model = GW_INVENTORY_PER_CLIQUE;
    o.clique_override = ov;
    gw_inventory *inv = NULL;
    assert_int_equal(gw_inventory_new(&inv, HGX, N(HGX), &o), 0);
    assert_null(gw_inventory_clique_error(inv));
    const exp_dep e[] = {
        { "hgx_0000:03:00.0", 1, 0, -1, false, PCIJ("03", "00", "0"),
          { "OWNER_CYBORG", "CUSTOM_MATROX_0536", "CUSTOM_NUMA_NODE_0" }, { PCIJ("03", "00", "0") },
          { "0000:03:00.0" }, DEV_MATROX },
        { "hgx_clique0", 4, 0, 0, false, PCIJ("19", "00", "0"),
          { "OWNER_CYBORG", "CUSTOM_NVIDIA_2330", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0" },
          { PCIJ("19", "00", "0"), PCIJ("3b", "00", "0"), PCIJ("4c", "00", "0"), PCIJ("5d", "00", "0") },
          { "0000:19:00.0", "0000:3b:00.0", "0000:4c:00.0", "0000:5d:00.0" }, DEV_H100 },
        { "hgx_clique1", 4, 0, 1, false, PCIJ("9b", "00", "0"),
          { "OWNER_CYBORG", "CUSTOM_NVIDIA_2330", "CUSTOM_GPU_CLIQUE_1", "CUSTOM_NUMA_NODE_1" },
          { PCIJ("9b", "00", "0"), PCIJ("bb", "00", "0"), PCIJ("cb", "00", "0"), PCIJ("db", "00", "0") },
          { "0000:9b:00.0", "0000:bb:00.0", "0000:cb:00.0", "0000:db:00.0" }, DEV_H100 },
    };
    assert_inventory(inv, e, N(e), HGX, N(HGX));
    gw_inventory_free(inv);

    /* Per GPU: the same cliques as traits. */
    o.model = GW_INVENTORY_PER_GPU;
    assert_int_equal(gw_inventory_new(&inv, HGX, N(HGX), &o), 0);
    const exp_dep g9b = { "hgx_0000:9b:00.0", 1, 0, -1, false, PCIJ("9b", "00", "0"),
                          { "OWNER_CYBORG", "CUSTOM_NVIDIA_2330", "CUSTOM_GPU_CLIQUE_1", "CUSTOM_NUMA_NODE_1" },
                          { PCIJ("9b", "00", "0") }, { "0000:9b:00.0" }, DEV_H100 };
    assert_dep(gw_inventory_deployable(inv, 5), &g9b);
    gw_inventory_free(inv);
    gw_clique_override_free(ov);

    /* An override replaces the topology: one that lists nothing removes the
     * X299's PCIe clique. */
    ov = parse("# no P2P\n");
    o.host = "x";
    o.model = GW_INVENTORY_PER_CLIQUE;
    o.clique_override = ov;
    assert_int_equal(gw_inventory_new(&inv, X299, N(X299), &o), 0);
    assert_int_equal(gw_inventory_deployable_count(inv), 3);
    assert_string_equal(gw_inventory_deployable(inv, 1)->name, "x_0000:67:00.0");
    assert_int_equal(gw_inventory_deployable(inv, 1)->n_traits, 3);
    gw_inventory_free(inv);
    gw_clique_override_free(ov);
}

/* Rejected against the host: the topology cliques are kept, the inventory
 * is exactly the one without an override, and the reason is recorded. */
static void override_rejected_keeps_topology(void **state)
{
    const char *bad[][2] = {
        { "0 = 0000:1a:00.0 0000:1c:00.0\n1 = 0000:3d:00.0 0000:99:00.0\n",
          "clique override: 0000:99:00.0 (clique 1, line 2) is not a GPU on this host" },
        { "0 = 0000:1a:00.0 0000:3d:00.0\n", NULL },
    };
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = "sm";
    o.model = GW_INVENTORY_PER_CLIQUE;
    gw_inventory *plain = NULL;
    assert_int_equal(gw_inventory_new(&plain, SM8, N(SM8), &o), 0);

    /* A non-NVIDIA GPU in an otherwise valid host. */
    gw_inventory_gpu *g = copy_gpus(SM8, N(SM8));
    g[4].vendor_id = 0x1002;
    gw_inventory *plain_amd = NULL;
    assert_int_equal(gw_inventory_new(&plain_amd, g, N(SM8), &o), 0);

    for (size_t i = 0; i < N(bad); i++) {
        gw_clique_override *ov = parse(bad[i][0]);
        o.clique_override = ov;
        const gw_inventory_gpu *in = bad[i][1] ? SM8 : g;
        gw_inventory *inv = NULL;
        assert_int_equal(gw_inventory_new(&inv, in, N(SM8), &o), 0);
        const char *why = gw_inventory_clique_error(inv);
        assert_non_null(why);
        if (bad[i][1])
            assert_string_equal(why, bad[i][1]);
        else
            assert_string_equal(why, "clique override: 0000:3d:00.0 (clique 0, line 1) is not an NVIDIA GPU "
                                     "(vendor 1002); QEMU's P2P clique hint applies to NVIDIA GPUs only");
        const gw_inventory *ref = bad[i][1] ? plain : plain_amd;
        assert_int_equal(gw_inventory_generation(inv), gw_inventory_generation(ref));
        assert_int_equal(gw_inventory_deployable_count(inv), 2);
        assert_string_equal(gw_inventory_deployable(inv, 0)->name, "sm_clique0");
        assert_int_equal(gw_inventory_deployable(inv, 0)->num_accelerators, 4);
        gw_inventory_free(inv);
        gw_clique_override_free(ov);
    }
    gw_inventory_free(plain);
    gw_inventory_free(plain_amd);
    free(g);
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERR);   /* the rejected-override warnings are expected */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trait_rule),
        cmocka_unit_test(product_traits),
        cmocka_unit_test(extra_traits),
        cmocka_unit_test(host_names),
        cmocka_unit_test(bad_input),
        cmocka_unit_test(stopped_gpus_are_reserved_and_keep_their_handles),
        cmocka_unit_test(options_version_1_still_accepted),
        cmocka_unit_test(model_names),
        cmocka_unit_test(override_parse),
        cmocka_unit_test(override_errors),
        cmocka_unit_test(override_check_errors),
        cmocka_unit_test(override_file),
        cmocka_unit_test(override_applied),
        cmocka_unit_test(override_rejected_keeps_topology),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
