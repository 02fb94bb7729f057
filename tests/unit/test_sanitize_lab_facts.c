/* SPDX-License-Identifier: Apache-2.0 */
/* What the QEMU kernel lab taught (docs/kernel-lab.md), on the simulated
 * backend: the fast tests must see the same kernel the lab sees.
 *  - vfio-pci refuses a device without an IOMMU group: drivers_probe says
 *    nothing, the bind attribute returns -EINVAL, and the clean-up puts the
 *    kernel's answer in the evidence;
 *  - a device removed during a step fails that step ("device gone from the
 *    bus during this step"), not a later one, and is never passed;
 *  - a ROM read with the Command register's Memory Space bit off reads zeros:
 *    EIO. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sanitize_world.h"

static void open_and_run(void)
{
    world_open();
    run();
}

static const gw_step_result *failed(void)
{
    assert_int_equal(gw_sanitize_result_verdict(W.res), GW_VERDICT_FAIL);
    size_t n = gw_sanitize_result_step_count(W.res);
    const gw_step_result *last = gw_sanitize_result_step(W.res, n - 1);
    assert_int_equal(last->verdict, GW_VERDICT_FAIL);
    return last;
}

/* No IOMMU: both functions unbound, no group. drivers_probe "succeeds" and
 * binds nothing; the clean-up asks drivers/vfio-pci/bind and quotes it. */
static void bind_without_iommu_group_quotes_the_kernel(void **state)
{
    (void)state;
    for (size_t i = 0; i < W.host.n; i++) {
        W.host.dev[i].group[0] = '\0';
        if (!W.host.dev[i].bridge)
            W.host.dev[i].driver[0] = '\0';
    }
    open_and_run();
    const gw_step_result *f = failed();
    assert_int_equal(f->step, GW_STEP_BIND);
    assert_contains(f->evidence, "sys/bus/pci/drivers/vfio-pci/bind");
    assert_contains(f->evidence, "Invalid argument");
    assert_contains(f->evidence, "the device has no IOMMU group");
    /* The device stayed unbound: nothing pretended. */
    char *drv = NULL;
    assert_int_equal(gw_dev_driver(W.ops, GPU, &drv), 0);
    assert_null(drv);
    /* No reset was ever written. */
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
}

/* The same tree with the group: drivers_probe binds, no bind write needed. */
static void bind_with_iommu_group_needs_no_second_ask(void **state)
{
    (void)state;
    for (size_t i = 0; i < W.host.n; i++)
        if (!W.host.dev[i].bridge)
            W.host.dev[i].driver[0] = '\0';
    open_and_run();
    const gw_step_result *b = gw_sanitize_result_step(W.res, 1);
    assert_int_equal(b->step, GW_STEP_BIND);
    assert_int_equal(b->verdict, GW_VERDICT_PASS);
    assert_int_equal(gw_sim_count_writes(W.sim, "drivers/vfio-pci/bind"), 0);
}

/* Pulled out while the firmware step ran (at its first ROM write): firmware
 * fails on what it reads next; the clean-up does not pass. */
static void device_removed_during_a_step_fails_that_step(void **state)
{
    (void)state;
    world_open();
    gw_sim_after_write_remove(W.sim, DEV(GPU, "rom"), GPU);
    run();
    const gw_step_result *f = failed();
    assert_int_equal(f->step, GW_STEP_FIRMWARE);
    assert_contains(f->evidence, "(device removed)");
    assert_int_equal(gw_hostops_exists(W.ops, "sys/bus/pci/devices/" GPU), -ENOENT);
}

/* Removed after the reset write: the reset step is the one that fails. */
static void device_removed_by_the_reset_fails_reset(void **state)
{
    (void)state;
    world_open();
    gw_sim_after_write_remove(W.sim, DEV(GPU, "reset"), GPU);
    run();
    const gw_step_result *f = failed();
    assert_int_equal(f->step, GW_STEP_RESET);
    assert_contains(f->evidence, "no longer exists");
}

/* Memory Space decoding off (no firmware or driver enabled the device):
 * the kernel's ROM read sees zeros and refuses with EIO. */
static void rom_read_with_decoding_off_is_eio(void **state)
{
    (void)state;
    world_open();
    uint8_t cfg[4096];
    assert_int_equal(gw_hostops_read_config(W.ops, GPU, 0, cfg, sizeof cfg), 0);
    cfg[4] &= (uint8_t)~0x02;
    gw_sim_set(W.sim, DEV(GPU, "config"), cfg, sizeof cfg);
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "rom"), "1", 1), 0);
    char *img = NULL;
    size_t len = 0;
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "rom"), 1 << 20, &img, &len), -EIO);
    assert_contains(gw_error_message(), "Memory Space decoding is off");
    /* Decoding on: the same ROM reads. */
    cfg[4] |= 0x02;
    gw_sim_set(W.sim, DEV(GPU, "config"), cfg, sizeof cfg);
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "rom"), 1 << 20, &img, &len), 0);
    assert_true(len > 2 && (uint8_t)img[0] == 0x55 && (uint8_t)img[1] == 0xaa);
    free(img);
}

/* The clean-up turns decoding on for the ROM read and back off: the ROM is
 * hashed and the Command register ends as it was. */
static void firmware_turns_decoding_on_for_the_read(void **state)
{
    (void)state;
    world_open();
    uint8_t cfg[4096];
    assert_int_equal(gw_hostops_read_config(W.ops, GPU, 0, cfg, sizeof cfg), 0);
    cfg[4] &= (uint8_t)~0x02;
    uint16_t before = (uint16_t)(cfg[4] | cfg[5] << 8);
    gw_sim_set(W.sim, DEV(GPU, "config"), cfg, sizeof cfg);
    run();
    if (gw_sanitize_result_verdict(W.res) != GW_VERDICT_PASS)
        fail_msg("expected a pass: %s", gw_sanitize_result_reason(W.res));
    const gw_step_result *fw = NULL;
    for (size_t i = 0; i < gw_sanitize_result_step_count(W.res); i++)
        if (gw_sanitize_result_step(W.res, i)->step == GW_STEP_FIRMWARE)
            fw = gw_sanitize_result_step(W.res, i);
    assert_non_null(fw);
    assert_contains(fw->evidence, "Memory Space decoding was off: on for the ROM read");
    assert_contains(fw->evidence, "pinned at the first clean-up");
    uint16_t after;
    assert_int_equal(gw_hostops_read_config(W.ops, GPU, 4, &after, 2), 0);
    assert_int_equal(after, before);
}

/* Hot-plugged under a window too small: BAR 0 implemented (prefetchable
 * type bit) but never given an address; sysfs shows zeros. Health fails. */
static void unassigned_bar_fails_health(void **state)
{
    (void)state;
    world_open();
    uint8_t cfg[4096];
    assert_int_equal(gw_hostops_read_config(W.ops, GPU, 0, cfg, sizeof cfg), 0);
    memset(cfg + 0x10, 0, 8);               /* BAR 0 (and its upper half if 64-bit) */
    cfg[0x10] = 0x08;                       /* 32-bit prefetchable memory, no address */
    gw_sim_set(W.sim, DEV(GPU, "config"), cfg, sizeof cfg);
    char *res = NULL;
    size_t len = 0;
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "resource"), 1 << 16, &res, &len), 0);
    char *nl = strchr(res, '\n');
    assert_non_null(nl);
    char *nl2 = strchr(nl + 1, '\n');
    assert_non_null(nl2);
    gw_strbuf b = { 0 };
    gw_strbuf_append(&b, "0x%016x 0x%016x 0x%016x\n0x%016x 0x%016x 0x%016x%s", 0, 0, 0, 0, 0, 0, nl2);
    gw_sim_set(W.sim, DEV(GPU, "resource"), b.s, b.len);
    gw_strbuf_clear(&b);
    free(res);
    run();
    const gw_step_result *f = failed();
    assert_int_equal(f->step, GW_STEP_HEALTH);
    assert_contains(f->evidence, "BAR0 is implemented (register 0x00000008: prefetchable memory) but the kernel "
                                 "assigned it no address");
}

/* Config space answers, memory reads do not: BAR0 through VFIO reads
 * all-ones. Health fails on the live read. */
static void bar0_all_ones_fails_health(void **state)
{
    (void)state;
    world_open();
    gw_sim_bar_set(W.sim, GPU, 0, 4096, 0xff);
    run();
    const gw_step_result *f = failed();
    assert_int_equal(f->step, GW_STEP_HEALTH);
    assert_contains(f->evidence, "BAR0 reads all-ones through VFIO: the device does not answer memory reads");
}

/* NVIDIA: BAR0's first dword (NV_PMC_BOOT_0) is pinned at the first
 * clean-up; another chip id at the next one fails health. */
static void nvidia_boot_id_is_pinned_and_compared(void **state)
{
    (void)state;
    world_open();
    gw_sim_bar_set(W.sim, GPU, 0, 4096, 0xa1);        /* boot id 0xa1a1a1a1 */
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), 0);
    if (gw_sanitize_result_verdict(W.res) != GW_VERDICT_PASS)
        fail_msg("expected a pass: %s", gw_sanitize_result_reason(W.res));
    assert_contains(step(GW_STEP_HEALTH)->evidence, "BAR0 boot id (NV_PMC_BOOT_0) 0xa1a1a1a1 pinned");
    gw_fact pins[16];
    size_t n = gw_sanitize_result_pin_count(W.res);
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++)
        pins[i] = *gw_sanitize_result_pin(W.res, i);
    /* Same chip: passes again. */
    req.pins = pins;
    req.n_pins = n;
    gw_sanitize_result *again = NULL;
    assert_int_equal(gw_sanitize_run(&again, W.ops, &W.att.base, &W.pol, &req), 0);
    assert_int_equal(gw_sanitize_result_verdict(again), GW_VERDICT_PASS);
    gw_sanitize_result_free(again);
    /* Another chip id behind the same config space: fails. */
    gw_sim_bar_set(W.sim, GPU, 0, 4096, 0xb2);
    assert_int_equal(gw_sanitize_run(&again, W.ops, &W.att.base, &W.pol, &req), 0);
    assert_int_equal(gw_sanitize_result_verdict(again), GW_VERDICT_FAIL);
    assert_int_equal(gw_sanitize_result_failed_step(again), GW_STEP_HEALTH);
    assert_non_null(strstr(gw_sanitize_result_reason(again),
                           "BAR0 boot id (NV_PMC_BOOT_0) 0xb2b2b2b2 differs from 0xa1a1a1a1 at the first clean-up"));
    gw_sanitize_result_free(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bind_without_iommu_group_quotes_the_kernel, world_setup1, world_teardown),
        cmocka_unit_test_setup_teardown(bind_with_iommu_group_needs_no_second_ask, world_setup1, world_teardown),
        cmocka_unit_test_setup_teardown(device_removed_during_a_step_fails_that_step, world_setup1, world_teardown),
        cmocka_unit_test_setup_teardown(device_removed_by_the_reset_fails_reset, world_setup1, world_teardown),
        cmocka_unit_test_setup_teardown(rom_read_with_decoding_off_is_eio, world_setup1, world_teardown),
        cmocka_unit_test_setup_teardown(firmware_turns_decoding_on_for_the_read, world_setup1, world_teardown),
        cmocka_unit_test_setup_teardown(unassigned_bar_fails_health, world_setup1, world_teardown),
        cmocka_unit_test_setup_teardown(bar0_all_ones_fails_health, world_setup1, world_teardown),
        cmocka_unit_test_setup_teardown(nvidia_boot_id_is_pinned_and_compared, world_setup1, world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
