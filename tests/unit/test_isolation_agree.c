/* SPDX-License-Identifier: Apache-2.0 */
/* Discovery and the clean-up give one isolation verdict: on every fixture
 * host (tests/fixtures/hosts, built from real lspci dumps, broken ones
 * included), each GPU's "isolation" object of `gpuwarden discover --json`
 * (gw_host_to_json on gw_host_scan's libpci scan) equals what the clean-up's
 * isolation step says when it runs on the same host through the simulated
 * backend: the same viable/not, the same evidence to the character. The
 * RTX 3060 host (its HDA function on snd_hda_intel, in the GPU's group) is
 * checked in detail, before and after its HDA function is moved to vfio-pci. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include <gpuwarden/host.h>

#include "hostops_sim.h"
#include "sanitize_internal.h"

static char *host_path(const char *name)
{
    return gw_strdup_printf("%s/tests/fixtures/hosts/%s", GW_SOURCE_DIR, name);
}

/* The discover JSON of the host at `root`, parsed. */
static json_t *discover_json(const char *root)
{
    gw_host_options o = GW_HOST_OPTIONS_INIT;
    o.root = root;
    gw_host *h;
    assert_int_equal(gw_host_scan(&h, &o), 0);
    char *s;
    assert_int_equal(gw_host_to_json(h, &s), 0);
    gw_host_free(h);
    json_error_t err;
    json_t *j = json_loads(s, 0, &err);
    free(s);
    assert_non_null(j);
    return j;
}

typedef struct step_outcome {
    gw_verdict verdict;
    char *evidence;
} step_outcome;

/* The clean-up's isolation step alone on `addr`, with the policy's
 * isolation setting. */
static step_outcome isolation_step(gw_hostops *ops, const char *addr, gw_isolation_policy iso)
{
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
    pol.isolation = iso;
    gw_spolicy *p;
    assert_int_equal(gw_spolicy_new(&p, &pol), 0);
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = addr;
    gw_sctx *c = gw_sctx_new(ops, NULL, p, &req);
    gw_spolicy_unref(p);
    step_outcome o;
    o.verdict = gw_step_isolation.run(c);
    o.evidence = gw_xstrdup(gw_strbuf_str(&c->evidence));
    gw_sctx_unref(c);
    return o;
}

static const char *json_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* The builder's own verdicts (hosts/<name>.json, computed from the dumps by
 * tests/fixtures/build_hosts.py, not by this library) for an intact host:
 * discovery's group_viable and acs_path_ok must be those. */
static void matches_manifest(const char *root, json_t *j)
{
    _cleanup_free_ char *path = gw_strdup_printf("%s.json", root);
    json_error_t err;
    json_t *m = json_load_file(path, 0, &err);
    if (!m)
        return;     /* a copy made by a test */
    if (!json_is_true(json_object_get(m, "broken"))) {
        size_t i, k;
        json_t *want, *g;
        json_array_foreach(json_object_get(m, "gpus"), i, want) {
            const char *addr = json_str(want, "address");
            json_array_foreach(json_object_get(j, "gpus"), k, g) {
                if (strcmp(json_str(g, "address"), addr))
                    continue;
                if (json_equal(json_object_get(g, "group_viable"), json_object_get(want, "group_viable")) != 1 ||
                    json_equal(json_object_get(g, "acs_path_ok"), json_object_get(want, "acs_path_ok")) != 1)
                    fail_msg("%s %s: discover and the fixture builder disagree", root, addr);
            }
        }
    }
    json_decref(m);
}

/* Every GPU of the host at `root`: discovery's verdict == the step's.
 * Returns how many GPUs were compared; *viable counts the viable ones. */
static size_t agree(const char *root, size_t *viable)
{
    json_t *j = discover_json(root);
    matches_manifest(root, j);
    gw_hostops *ops;
    gw_sim *sim;
    assert_int_equal(gw_hostops_sim_new(&ops, &sim, root), 0);
    json_t *gpus = json_object_get(j, "gpus");
    size_t i;
    json_t *g;
    json_array_foreach(gpus, i, g) {
        const char *addr = json_str(g, "address");
        json_t *iso = json_object_get(g, "isolation");
        assert_non_null(iso);
        bool ok = json_is_true(json_object_get(iso, "viable"));
        const char *evidence = json_str(iso, "evidence");
        /* The verdict's parts are the JSON's top-level verdicts. */
        assert_int_equal(ok, json_is_true(json_object_get(g, "group_viable")) &&
                                 json_is_true(json_object_get(g, "acs_path_ok")) &&
                                 json_is_true(json_object_get(iso, "ats_ok")));
        assert_int_equal(ok, json_array_size(json_object_get(iso, "reasons")) == 0);

        step_outcome o = isolation_step(ops, addr, GW_ISOLATION_FAIL);
        if ((o.verdict == GW_VERDICT_PASS) != ok || strcmp(o.evidence, evidence))
            fail_msg("%s %s:\n  discover: %s: %s\n  clean-up: %s: %s", root, addr, ok ? "viable" : "not viable",
                     evidence, gw_verdict_name(o.verdict), o.evidence);
        free(o.evidence);

        /* Under policy warn the same words, marked as a warning. */
        o = isolation_step(ops, addr, GW_ISOLATION_WARN);
        assert_int_equal(o.verdict, GW_VERDICT_PASS);
        if (!ok) {
            char *want = gw_strdup_printf("WARNING (isolation policy warn): %s", evidence);
            assert_string_equal(o.evidence, want);
            free(want);
        }
        free(o.evidence);
        *viable += ok;
    }
    size_t n = json_array_size(gpus);
    gw_hostops_unref(ops);
    json_decref(j);
    return n;
}

static void every_fixture_host_agrees(void **state)
{
    (void)state;
    _cleanup_free_ char *dir = gw_strdup_printf("%s/tests/fixtures/hosts", GW_SOURCE_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    size_t hosts = 0, gpus = 0, viable = 0;
    while ((de = readdir(d))) {
        _cleanup_free_ char *pci = gw_strdup_printf("%s/%s/sys/bus/pci", dir, de->d_name);
        struct stat st;
        if (de->d_name[0] == '.' || stat(pci, &st) < 0 || !S_ISDIR(st.st_mode))
            continue;
        _cleanup_free_ char *root = host_path(de->d_name);
        gpus += agree(root, &viable);
        hosts++;
    }
    closedir(d);
    /* 15 hosts, the 6 broken ones included: 4 x 3 + 2 + 8 + 64 + 16 + 7 x 1 GPUs. */
    assert_int_equal(hosts, 15);
    assert_int_equal(gpus, 109);
    assert_int_equal(viable, 89);   /* synth64 64, hgx16 16, x299 3, acs-off 2, acs-off-root 1, allones 2, ats-on 1 */
}

static json_t *gpu_of(json_t *j, const char *addr)
{
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(j, "gpus"), i, g)
        if (!strcmp(json_str(g, "address"), addr))
            return g;
    fail_msg("no GPU %s", addr);
    return NULL;
}

static void assert_reason(json_t *iso, size_t i, const char *kind, const char *device, const char *text)
{
    json_t *r = json_array_get(json_object_get(iso, "reasons"), i);
    assert_non_null(r);
    assert_string_equal(json_str(r, "kind"), kind);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "devices"), 0)), device);
    assert_string_equal(json_str(r, "text"), text);
}

#define OMEN_HDA_TEXT                                                                                        \
    "group 1 not viable: 0000:01:00.1 bound to snd_hda_intel (10de:228e, class 0403): VFIO gives a VM the "   \
    "group only when each of its functions is on vfio-pci or unbound; the clean-up's bind step moves the "    \
    "GPU's own functions there when the policy manages them"
#define OMEN_ACS_TEXT "0000:00:01.0 root_port: no ACS capability"

/* The RTX 3060 host: GPU, its HDA function (on snd_hda_intel) and the CPU's
 * PEG root port (no ACS) in group 1. Both places: not viable, for the HDA
 * function's host driver and the root port's missing ACS. */
static void rtx3060_one_answer(void **state)
{
    (void)state;
    _cleanup_free_ char *root = host_path("omen-3060");
    json_t *j = discover_json(root);
    json_t *g = gpu_of(j, "0000:01:00.0");
    json_t *iso = json_object_get(g, "isolation");
    assert_true(json_is_false(json_object_get(iso, "viable")));
    assert_true(json_is_false(json_object_get(g, "group_viable")));
    assert_true(json_is_false(json_object_get(g, "acs_path_ok")));
    assert_true(json_is_true(json_object_get(iso, "ats_ok")));
    assert_int_equal(json_array_size(json_object_get(iso, "reasons")), 2);
    assert_reason(iso, 0, "host_driver", "0000:01:00.1", OMEN_HDA_TEXT);
    assert_reason(iso, 1, "acs", "0000:00:01.0", OMEN_ACS_TEXT);
    assert_string_equal(json_str(iso, "evidence"), OMEN_HDA_TEXT "; " OMEN_ACS_TEXT);
    json_decref(j);

    gw_hostops *ops;
    gw_sim *sim;
    assert_int_equal(gw_hostops_sim_new(&ops, &sim, root), 0);
    step_outcome o = isolation_step(ops, "0000:01:00.0", GW_ISOLATION_FAIL);
    assert_int_equal(o.verdict, GW_VERDICT_FAIL);
    assert_string_equal(o.evidence, OMEN_HDA_TEXT "; " OMEN_ACS_TEXT);
    free(o.evidence);
    gw_hostops_unref(ops);
}

static char copy_root[64];

static int remove_copy(void **state)
{
    (void)state;
    if (copy_root[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", copy_root);
        if (system(cmd) != 0)
            return -1;
        copy_root[0] = '\0';
    }
    return 0;
}

/* The state the clean-up's bind step leaves when the policy manages the HDA
 * function: it is on vfio-pci. Both places now find the group viable and the
 * 3060 fails on the root port's ACS alone. */
static void rtx3060_hda_on_vfio(void **state)
{
    (void)state;
    _cleanup_free_ char *src = host_path("omen-3060");
    snprintf(copy_root, sizeof copy_root, "/tmp/gw-iso-omen-XXXXXX");
    assert_non_null(mkdtemp(copy_root));
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "cp -a '%s/.' '%s/' && cd '%s/sys/bus/pci/devices/0000:01:00.1/' && rm driver && "
             "ln -s ../../../../bus/pci/drivers/vfio-pci driver && test -d driver/",
             src, copy_root, copy_root);
    assert_int_equal(system(cmd), 0);
    size_t viable = 0;
    assert_int_equal(agree(copy_root, &viable), 1);
    json_t *j = discover_json(copy_root);
    json_t *g = gpu_of(j, "0000:01:00.0");
    json_t *iso = json_object_get(g, "isolation");
    assert_true(json_is_true(json_object_get(g, "group_viable")));
    assert_string_equal(json_str(g, "group_evidence"),
                        "group 1: 0000:01:00.0 [vfio-pci], 0000:01:00.1 [vfio-pci] (functions of slot "
                        "0000:01:00) and bridges 0000:00:01.0 [pcieport]");
    assert_int_equal(json_array_size(json_object_get(iso, "reasons")), 1);
    assert_reason(iso, 0, "acs", "0000:00:01.0", OMEN_ACS_TEXT);
    json_decref(j);
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_fixture_host_agrees),
        cmocka_unit_test(rtx3060_one_answer),
        cmocka_unit_test_teardown(rtx3060_hda_on_vfio, remove_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
