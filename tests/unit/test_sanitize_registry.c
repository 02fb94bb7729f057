/* SPDX-License-Identifier: Apache-2.0 */
/* A clean-up's result recorded with the device in the lifecycle registry:
 * pins become facts, the steps become the device's last clean-up, and the
 * verdict moves the device (passed -> sanitized, failed -> quarantined with
 * the failing step and its evidence as reason). The next clean-up reads the
 * pins back from the device's facts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hostops_sim.h"
#include "sanitize_fixture.h"
#include "sanitize_internal.h"

#define GPU "0000:03:00.0"

static fx_host H;

static int teardown(void **state)
{
    (void)state;
    fx_remove(&H);
    return 0;
}

static gw_sanitize_result *clean(gw_hostops *ops, gw_registry *reg, fx_attach *att, const gw_sanitize_policy *pol)
{
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, GPU, &dev), 0);
    assert_int_equal(gw_registry_apply(reg, GPU, GW_EVENT_CLEANUP_STARTED, NULL, NULL), 0);
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    req.pins = dev->facts;
    req.n_pins = dev->n_facts;
    gw_sanitize_result *res = NULL;
    assert_int_equal(gw_sanitize_run(&res, ops, &att->base, pol, &req), 0);
    gw_device_free(dev);
    int r = gw_sanitize_result_apply(res, reg, NULL);
    if (r != 0)
        fail_msg("apply: %d %s", r, gw_error_message());
    return res;
}

static void results_move_the_device_and_pins_persist(void **state)
{
    (void)state;
    fx_std(&H, 1);
    fx_write(&H);
    gw_hostops *ops;
    gw_sim *sim;
    assert_int_equal(gw_hostops_sim_new(&ops, &sim, H.root), 0);
    fx_attach att;
    fx_attach_init(&att);
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
    pol.hooks_dir = "/nonexistent/gpuwarden-test-hooks";

    gw_registry *reg;
    gw_registry_options ro = GW_REGISTRY_OPTIONS_INIT;     /* in memory */
    assert_int_equal(gw_registry_open(&reg, &ro), 0);
    gw_identity id = { .address = GPU, .vendor_id = 0x10de, .device_id = 0x2230, .subsystem_vendor_id = 0x10de,
                       .subsystem_device_id = 0x1459 };
    assert_int_equal(gw_registry_observe(reg, &id, NULL), 1);

    /* First clean-up passes: sanitized, pins stored as facts. */
    gw_sanitize_result *res = clean(ops, reg, &att, &pol);
    assert_int_equal(gw_sanitize_result_verdict(res), GW_VERDICT_PASS);
    gw_device *dev = NULL;
    assert_int_equal(gw_registry_get(reg, GPU, &dev), 0);
    assert_int_equal(dev->state, GW_STATE_SANITIZED);
    assert_true(dev->cleanup.passed);
    assert_int_equal(dev->cleanup.n_steps, GW_STEP_COUNT);
    assert_string_equal(dev->cleanup.steps[2].name, "reset");
    assert_string_equal(dev->cleanup.steps[3].name, "scrub");     /* no scrub configured */
    assert_string_equal(dev->cleanup.steps[3].verdict, "skip");
    assert_string_equal(dev->cleanup.steps[7].name, "hooks");
    assert_string_equal(dev->cleanup.steps[7].verdict, "skip");
    assert_int_equal(dev->cleanup.start_ms, gw_sanitize_result_start_ms(res));
    assert_string_equal(gw_device_fact(dev, "sanitize.rom_sha256"), gw_sanitize_result_pin_get(res, "sanitize.rom_sha256"));
    assert_string_equal(gw_device_fact(dev, "sanitize.link_width"), "16");
    gw_device_free(dev);
    gw_sanitize_result_free(res);

    /* Operator asks for another; the link is now x8: quarantined, the
     * reason is the step and its evidence (ending with the end of the run:
     * power/control set back to what bind found), the first pin stays. */
    assert_int_equal(gw_registry_apply(reg, GPU, GW_EVENT_SANITIZE, NULL, NULL), 0);
    static const char *const x8[] = { GPU, "0000:02:00.0" };
    for (size_t i = 0; i < 2; i++) {
        fx_dev d = *fx_find(&H, x8[i]);     /* LnkCap and LnkSta of both ends: x8 */
        d.link_width = d.link_max_width = 8;
        uint8_t cfg[4096];
        fx_config(&d, cfg);
        char path[96];
        snprintf(path, sizeof path, "sys/bus/pci/devices/%s/config", x8[i]);
        gw_sim_set(sim, path, cfg, sizeof cfg);
    }
    res = clean(ops, reg, &att, &pol);
    assert_int_equal(gw_sanitize_result_failed_step(res), GW_STEP_HEALTH);
    assert_int_equal(gw_registry_get(reg, GPU, &dev), 0);
    assert_int_equal(dev->state, GW_STATE_QUARANTINED);
    assert_string_equal(dev->quarantine_reason,
                        "health: config readable (10de:2230); 0000:03:00.0: PCI Status 0x0010: no error bits; "
                        "0000:03:00.0: Device Status 0x0000: no error bits; 0000:03:00.0: AER status clear "
                        "(uncorrectable 0x00000000, correctable 0x00000000); upstream port 0000:02:00.0: no error "
                        "status bits (Device Status, AER); root port 0000:00:01.0: no error status bits (Device "
                        "Status, AER, Root Error Status); 0000:03:00.0: aer_dev_fatal TOTAL 0 unchanged; "
                        "0000:03:00.0: aer_dev_nonfatal TOTAL 0 unchanged; 0000:02:00.0: aer_dev_fatal TOTAL 0 "
                        "unchanged; 0000:02:00.0: aer_dev_nonfatal TOTAL 0 unchanged; link width x8 below x16 "
                        "recorded at the first clean-up; link at 16.0 GT/s; BAR registers hold the addresses the "
                        "kernel assigned (BAR0 0xf0000000, BAR1 0x38000000000); /dev/vfio/10 held since the bind "
                        "step: no VM can take the group during the BAR0 read; no BAR0 (VFIO region 0 "
                        "is empty): nothing to read; end of the run: wrote 'auto' to "
                        "sys/bus/pci/devices/0000:03:00.0/power/control; 0000:03:00.0 now: D3hot, runtime "
                        "suspended");
    assert_false(dev->cleanup.passed);
    assert_int_equal(dev->cleanup.n_steps, 5);     /* not_in_use, bind, reset, scrub, health */
    assert_string_equal(gw_device_fact(dev, "sanitize.link_width"), "16");
    gw_device_free(dev);
    gw_sanitize_result_free(res);

    /* A result for a device with no clean-up running is refused. */
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    assert_int_equal(gw_sanitize_run(&res, ops, &att.base, &pol, &req), 0);
    assert_int_equal(gw_sanitize_result_apply(res, reg, NULL), -EPERM);
    gw_sanitize_result_free(res);

    gw_registry_free(reg);
    gw_hostops_unref(ops);
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(results_move_the_device_and_pins_persist, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
