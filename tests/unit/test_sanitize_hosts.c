/* SPDX-License-Identifier: Apache-2.0 */
/* The clean-up on the test hosts built from real lspci dumps
 * (tests/fixtures/hosts, see its README.md for every device's facts): the
 * real backend on a copy of x299-3xa6000 writes exactly the expected bytes;
 * on the simulated backend each variant host fails at the step its defect
 * belongs to, and the healthy GPUs pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>

#include "hostops_sim.h"
#include "sanitize_fixture.h"
#include "sanitize_internal.h"

static char copy_root[64];
static fx_attach att;

static char *host_path(const char *name)
{
    return gw_strdup_printf("%s/tests/fixtures/hosts/%s", GW_SOURCE_DIR, name);
}

static int teardown(void **state)
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

static gw_sanitize_policy policy(void)
{
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;     /* default management */
    pol.hooks_dir = "/nonexistent/gpuwarden-test-hooks";
    return pol;
}

static gw_sanitize_result *clean(gw_hostops *ops, const gw_sanitize_policy *pol, const char *addr)
{
    fx_attach_init(&att);
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = addr;
    gw_sanitize_result *res = NULL;
    assert_int_equal(gw_sanitize_run(&res, ops, &att.base, pol, &req), 0);
    return res;
}

static gw_sanitize_result *clean_sim(const char *host, const gw_sanitize_policy *pol, const char *addr)
{
    _cleanup_free_ char *root = host_path(host);
    gw_hostops *ops;
    gw_sim *sim;
    assert_int_equal(gw_hostops_sim_new(&ops, &sim, root), 0);
    gw_sanitize_result *res = clean(ops, pol, addr);
    gw_hostops_unref(ops);
    return res;
}

static void assert_pass(gw_sanitize_result *r)
{
    if (gw_sanitize_result_verdict(r) != GW_VERDICT_PASS)
        fail_msg("%s: expected a pass: %s", gw_sanitize_result_address(r), gw_sanitize_result_reason(r));
}

static void assert_reason(gw_sanitize_result *r, gw_step_id step, const char *text)
{
    if (gw_sanitize_result_failed_step(r) != (int)step || !strstr(gw_sanitize_result_reason(r), text))
        fail_msg("%s: expected %s failing with '%s', got: %s", gw_sanitize_result_address(r), gw_step_name(step),
                 text, gw_sanitize_result_reason(r) ? gw_sanitize_result_reason(r) : "a pass");
}

static const gw_step_result *step_of(gw_sanitize_result *r, gw_step_id id)
{
    for (size_t i = 0; i < gw_sanitize_result_step_count(r); i++)
        if (gw_sanitize_result_step(r, i)->step == id)
            return gw_sanitize_result_step(r, i);
    fail_msg("no step %s", gw_step_name(id));
    return NULL;
}

static void x299_real_backend_writes_exactly_the_expected_bytes(void **state)
{
    (void)state;
    _cleanup_free_ char *src = host_path("x299-3xa6000");
    snprintf(copy_root, sizeof copy_root, "/tmp/gw-sanitize-x299-XXXXXX");
    assert_non_null(mkdtemp(copy_root));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp -a '%s/.' '%s/'", src, copy_root);
    assert_int_equal(system(cmd), 0);

    fx_snap before, after;
    fx_snapshot(copy_root, &before);
    gw_hostops *ops;
    assert_int_equal(gw_hostops_sysfs_new(&ops, copy_root), 0);
    gw_sanitize_policy pol = policy();
    gw_sanitize_result *res = clean(ops, &pol, "0000:1a:00.0");
    gw_hostops_unref(ops);
    assert_pass(res);
    fx_snapshot(copy_root, &after);

    /* The device directory of 1a:00.0 in this tree (behind 16:00.0, 17:00.0, 18:10.0). */
    const char *dir = "/sys/devices/pci0000:16/0000:16:00.0/0000:17:00.0/0000:18:10.0/0000:1a:00.0";
    char p_ovr[256], p_reset[256], p_rom[256];
    snprintf(p_ovr, sizeof p_ovr, "%s/driver_override", dir);
    snprintf(p_reset, sizeof p_reset, "%s/reset", dir);
    snprintf(p_rom, sizeof p_rom, "%s/rom", dir);
    const fx_entry *rom0 = fx_snap_get(&before, p_rom);
    assert_non_null(rom0);
    assert_true(rom0->len > 2);
    unsigned char *img = malloc(rom0->len);
    memcpy(img, rom0->data, rom0->len);
    img[0] = '1';           /* what the read saw: "1" written at offset 0 */
    char h[65];
    fx_sha256_hex(img, rom0->len, h);
    assert_string_equal(gw_sanitize_result_pin_get(res, "sanitize.rom_sha256"), h);
    img[0] = '0';
    img[1] = '\n';          /* then "0\n" */

    /* Default management: the GPU (10de, class 0300, on vfio-pci) is
     * managed, its HDA function (class 0403) is not: only the GPU's
     * driver_override is set. */
    assert_int_equal(before.n, after.n);
    size_t changed = 0;
    for (size_t i = 0; i < before.n; i++) {
        const fx_entry *b = &before.e[i], *a = &after.e[i];
        assert_string_equal(b->rel, a->rel);
        bool same = a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
        if (same)
            continue;
        changed++;
        if (!strcmp(b->rel, p_ovr)) {
            assert_int_equal(a->len, 8);
            assert_memory_equal(a->data, "vfio-pci", 8);
        } else if (!strcmp(b->rel, p_reset)) {
            assert_int_equal(a->len, 1);
            assert_memory_equal(a->data, "1", 1);
        } else if (!strcmp(b->rel, p_rom)) {
            assert_int_equal(a->len, rom0->len);
            assert_memory_equal(a->data, img, rom0->len);
        } else {
            fail_msg("%s changed but should not have", b->rel);
        }
    }
    assert_int_equal(changed, 3);
    assert_non_null(strstr(step_of(res, GW_STEP_BIND)->evidence,
                           "0000:1a:00.1: on vfio-pci, not managed: driver_override left as '(null)'"));
    assert_non_null(strstr(step_of(res, GW_STEP_HEALTH)->evidence,
                           "link at 2.5 GT/s of 16.0 GT/s: a lower speed is normal for an idle GPU"));
    free(img);
    fx_snap_free(&before);
    fx_snap_free(&after);
    gw_sanitize_result_free(res);
}

static void x299_every_gpu_passes_twice(void **state)
{
    (void)state;
    const char *gpus[] = { "0000:1a:00.0", "0000:67:00.0", "0000:68:00.0" };
    _cleanup_free_ char *root = host_path("x299-3xa6000");
    gw_hostops *ops;
    gw_sim *sim;
    assert_int_equal(gw_hostops_sim_new(&ops, &sim, root), 0);
    gw_sanitize_policy pol = policy();
    for (size_t i = 0; i < 3; i++) {
        gw_sanitize_result *first = clean(ops, &pol, gpus[i]);
        assert_pass(first);
        assert_non_null(strstr(step_of(first, GW_STEP_ISOLATION)->evidence, "root_port: SV+ RR+ CR+ UF+"));
        assert_non_null(strstr(step_of(first, GW_STEP_ISOLATION)->evidence, "downstream: SV+ RR+ CR+ UF+"));
        /* The second clean-up with the first's pins: still clean. */
        gw_fact pins[16];
        size_t n = gw_sanitize_result_pin_count(first);
        assert_true(n >= 4 && n <= 16);
        for (size_t k = 0; k < n; k++)
            pins[k] = *gw_sanitize_result_pin(first, k);
        gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
        req.address = gpus[i];
        req.pins = pins;
        req.n_pins = n;
        gw_sanitize_result *second = NULL;
        assert_int_equal(gw_sanitize_run(&second, ops, &att.base, &pol, &req), 0);
        assert_pass(second);
        assert_non_null(strstr(step_of(second, GW_STEP_FIRMWARE)->evidence, "matches the pin"));
        gw_sanitize_result_free(second);
        gw_sanitize_result_free(first);
    }
    gw_hostops_unref(ops);
}

static void acs_off_port_fails_isolation(void **state)
{
    (void)state;
    gw_sanitize_policy pol = policy();
    gw_sanitize_result *r = clean_sim("acs-off", &pol, "0000:67:00.0");
    /* 66:08.0 is in the GPU's group (a bridge: never rebound, allowed). */
    assert_non_null(strstr(step_of(r, GW_STEP_BIND)->evidence, "0000:66:08.0: bridge, never rebound"));
    assert_reason(r, GW_STEP_ISOLATION,
                  "0000:66:08.0 downstream: ACS SV RR CR UF not enabled (ACS cap 187f ctrl 0000)");
    gw_sanitize_result_free(r);
    r = clean_sim("acs-off", &pol, "0000:1a:00.0");
    assert_pass(r);
    gw_sanitize_result_free(r);
}

static void acs_off_root_two_gpus_in_one_group_fail_isolation(void **state)
{
    (void)state;
    gw_sanitize_policy pol = policy();
    gw_sanitize_result *r = clean_sim("acs-off-root", &pol, "0000:67:00.0");
    assert_reason(r, GW_STEP_ISOLATION, "group 46 also holds 0000:68:00.0 [vfio-pci], 0000:68:00.1 [vfio-pci]: "
                                        "neither functions of slot 0000:67:00 nor bridges");
    assert_reason(r, GW_STEP_ISOLATION,
                  "0000:64:00.0 root_port: ACS SV RR CR UF not enabled (ACS cap 001f ctrl 0000)");
    gw_sanitize_result_free(r);
}

static void allones_gpu_fails_before_any_write(void **state)
{
    (void)state;
    gw_sanitize_policy pol = policy();
    gw_sanitize_result *r = clean_sim("allones", &pol, "0000:68:00.0");
    assert_reason(r, GW_STEP_BIND, "0000:68:00.0: config space reads all-ones: device off the bus; wrote nothing");
    gw_sanitize_result_free(r);
}

static void ats_on_igpu_fails_isolation_and_rtx_passes(void **state)
{
    (void)state;
    gw_sanitize_policy pol = policy();
    gw_sanitize_result *r = clean_sim("ats-on", &pol, "0000:02:00.0");
    assert_pass(r);
    gw_sanitize_result_free(r);

    /* The iGPU is the host's display on i915: by default it is not ours. */
    r = clean_sim("ats-on", &pol, "0000:00:02.0");
    assert_reason(r, GW_STEP_BIND, "0000:00:02.0 bound to i915 and not managed");
    gw_sanitize_result_free(r);

    /* Managed by address (the simulated kernel moves it to vfio-pci): its
     * ATS Enable bit fails isolation; it has no link (an integrated endpoint), not a degraded one. */
    const char *addrs[] = { "0000:00:02.0" };
    pol.manage_addresses = addrs;
    pol.n_manage_addresses = 1;
    r = clean_sim("ats-on", &pol, "0000:00:02.0");
    assert_non_null(strstr(step_of(r, GW_STEP_HEALTH)->evidence,
                           "no PCIe link (root complex integrated): link not checked"));
    assert_reason(r, GW_STEP_ISOLATION, "ATS enabled on 0000:00:02.0 (control 0x8");
    gw_sanitize_result_free(r);
}

static void sm4029_shared_group_is_refused_without_a_write(void **state)
{
    (void)state;
    _cleanup_free_ char *root = host_path("sm4029-8xrtx5000");
    gw_hostops *ops;
    gw_sim *sim;
    assert_int_equal(gw_hostops_sim_new(&ops, &sim, root), 0);
    gw_sanitize_policy pol = policy();
    gw_sanitize_result *r = clean(ops, &pol, "0000:1a:00.0");
    /* One group for a whole switch: the GPU's USB function and the other
     * GPUs' are on host drivers. */
    assert_reason(r, GW_STEP_BIND, "0000:1a:00.2 bound to xhci_hcd and not managed");
    assert_int_equal(gw_sim_write_count(sim), 0);
    gw_sanitize_result_free(r);
    gw_hostops_unref(ops);
}

/* The RTX 3060 host: its HDA function on snd_hda_intel in the GPU's group,
 * the CPU's root port without ACS. By default the HDA function is not the
 * clean-up's to move: bind refuses and writes nothing. Managed (vendor
 * 10de), bind moves it to vfio-pci, and isolation then fails on the root
 * port alone, as discovery says of that state (test_isolation_agree.c). */
static void omen_3060_hda_function_moved_only_when_managed(void **state)
{
    (void)state;
    gw_sanitize_policy pol = policy();
    gw_sanitize_result *r = clean_sim("omen-3060", &pol, "0000:01:00.0");
    assert_reason(r, GW_STEP_BIND, "0000:01:00.1 bound to snd_hda_intel and not managed");
    assert_non_null(strstr(gw_sanitize_result_reason(r), "wrote nothing"));
    gw_sanitize_result_free(r);

    const uint16_t nvidia[] = { 0x10de };
    pol.manage_vendors = nvidia;
    pol.n_manage_vendors = 1;
    r = clean_sim("omen-3060", &pol, "0000:01:00.0");
    assert_non_null(strstr(step_of(r, GW_STEP_BIND)->evidence,
                           "wrote '0000:01:00.1' to sys/bus/pci/drivers/snd_hda_intel/unbind"));
    assert_reason(r, GW_STEP_ISOLATION, "isolation: 0000:00:01.0 root_port: no ACS capability; end of the run");
    assert_null(strstr(step_of(r, GW_STEP_ISOLATION)->evidence, "snd_hda_intel"));
    gw_sanitize_result_free(r);
}

typedef struct tally {
    pthread_mutex_t lock;
    int done, passed;
    double last_other_ms, hung_ms;
} tally;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double t_start;

static void on_done(gw_sanitize_result *r, void *u)
{
    tally *t = u;
    double at = now_ms() - t_start;
    pthread_mutex_lock(&t->lock);
    t->done++;
    t->passed += gw_sanitize_result_verdict(r) == GW_VERDICT_PASS;
    if (!strcmp(gw_sanitize_result_address(r), "0000:0b:00.0"))
        t->hung_ms = at;
    else if (at > t->last_other_ms)
        t->last_other_ms = at;
    pthread_mutex_unlock(&t->lock);
    gw_sanitize_result_free(r);
}

static void synth64_all_gpus_at_once_with_one_hung(void **state)
{
    (void)state;
    _cleanup_free_ char *root = host_path("synth64");
    gw_hostops *ops;
    gw_sim *sim;
    assert_int_equal(gw_hostops_sim_new(&ops, &sim, root), 0);
    gw_sim_delay_write(sim, "sys/bus/pci/devices/0000:0b:00.0/reset", 2000);
    fx_attach_init(&att);
    gw_sanitize_policy pol = policy();
    tally t = { .lock = PTHREAD_MUTEX_INITIALIZER };
    gw_cleanup_pool_options o = GW_CLEANUP_POOL_OPTIONS_INIT;
    o.workers = 8;
    o.ops = ops;
    o.attach = &att.base;
    o.policy = &pol;
    o.done = on_done;
    o.userdata = &t;
    gw_cleanup_pool *pool;
    assert_int_equal(gw_cleanup_pool_new(&pool, &o), 0);
    gw_hostops_unref(ops);

    /* Every GPU of the host: display-class NVIDIA functions in devices/. */
    char **names = NULL;
    size_t n = 0;
    gw_hostops *probe;
    assert_int_equal(gw_hostops_sysfs_new(&probe, root), 0);
    assert_int_equal(gw_hostops_list(probe, "sys/bus/pci/devices", &names, &n), 0);
    int gpus = 0;
    t_start = now_ms();
    for (size_t i = 0; i < n; i++) {
        uint8_t cfg[12];
        if (gw_hostops_read_config(probe, names[i], 0, cfg, sizeof cfg) < 0)
            continue;
        if ((cfg[0] | cfg[1] << 8) != 0x10de || cfg[11] != 0x03)
            continue;
        gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
        req.address = names[i];
        assert_int_equal(gw_cleanup_pool_submit(pool, &req), 0);
        gpus++;
    }
    gw_hostops_list_free(names, n);
    gw_hostops_unref(probe);
    assert_int_equal(gpus, 64);
    assert_int_equal(gw_cleanup_pool_wait_idle(pool, 60000), 0);
    gw_cleanup_pool_free(pool);
    assert_int_equal(t.done, 64);
    assert_int_equal(t.passed, 64);
    assert_true(t.hung_ms >= 2000);
    /* The 63 others never waited for the hung one (generous bound). */
    assert_true(t.last_other_ms < t.hung_ms);
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(x299_real_backend_writes_exactly_the_expected_bytes, teardown),
        cmocka_unit_test(x299_every_gpu_passes_twice),
        cmocka_unit_test(acs_off_port_fails_isolation),
        cmocka_unit_test(acs_off_root_two_gpus_in_one_group_fail_isolation),
        cmocka_unit_test(allones_gpu_fails_before_any_write),
        cmocka_unit_test(ats_on_igpu_fails_isolation_and_rtx_passes),
        cmocka_unit_test(sm4029_shared_group_is_refused_without_a_write),
        cmocka_unit_test(omen_3060_hda_function_moved_only_when_managed),
        cmocka_unit_test(synth64_all_gpus_at_once_with_one_hung),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
