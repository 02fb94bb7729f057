/* SPDX-License-Identifier: Apache-2.0 */
/* The clean-up pipeline on the simulated backend: one test for each step's
 * pass and fail (issue 4's acceptance list), each checking the verdict, the
 * failing step, the evidence and what was written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "sanitize_world.h"

#define DSP "0000:02:00.0"

/* The result fails at `id`, the reason names that step and contains `text`. */
static void assert_fails_at(gw_step_id id, const char *text)
{
    if (gw_sanitize_result_verdict(W.res) != GW_VERDICT_FAIL)
        fail_msg("expected a failure at %s, but the clean-up passed", gw_step_name(id));
    assert_int_equal(gw_sanitize_result_failed_step(W.res), id);
    const char *reason = gw_sanitize_result_reason(W.res);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s: ", gw_step_name(id));
    assert_int_equal(strncmp(reason, prefix, strlen(prefix)), 0);
    assert_contains(reason, text);
    /* The pipeline stops at the failure. */
    const gw_step_result *last = gw_sanitize_result_step(W.res, gw_sanitize_result_step_count(W.res) - 1);
    assert_int_equal(last->step, id);
    assert_int_equal(last->verdict, GW_VERDICT_FAIL);
}

static void assert_passes(void)
{
    if (gw_sanitize_result_verdict(W.res) != GW_VERDICT_PASS)
        fail_msg("expected a pass: %s", gw_sanitize_result_reason(W.res));
    assert_int_equal(gw_sanitize_result_failed_step(W.res), -1);
    assert_null(gw_sanitize_result_reason(W.res));
    assert_int_equal(gw_sanitize_result_step_count(W.res), GW_STEP_COUNT);
}

/* Write i of the log is `path` with exactly `data`. */
static void assert_write(size_t i, const char *path, const char *data, size_t len, int result)
{
    const char *p;
    const void *d;
    size_t l;
    int r;
    assert_int_equal(gw_sim_write_at(W.sim, i, &p, &d, &l, &r), 0);
    assert_string_equal(p, path);
    assert_int_equal(l, len);
    assert_memory_equal(d, data, len);
    assert_int_equal(r, result);
}

static void rom_hash(const char *bdf, char out[65])
{
    fx_dev *g = fx_find(&W.host, bdf);
    unsigned char *rom = malloc(g->rom_size);
    fx_rom_bytes(g, rom, g->rom_size);
    fx_sha256_hex(rom, g->rom_size, out);
    free(rom);
}

static void write_hook(const char *name, const char *body)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", W.hooks, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(p, 0755);
}

/* ---- passing ------------------------------------------------------------- */

static void passing_cleanup_writes_exactly_the_expected_sequence(void **state)
{
    (void)state;
    world_open();
    run();
    assert_passes();
    /* Run order: scrub (the last id) right after reset; no model, no scrub. */
    static const gw_step_id order[GW_STEP_COUNT] = { GW_STEP_NOT_IN_USE, GW_STEP_BIND,      GW_STEP_RESET,
                                                     GW_STEP_SCRUB,      GW_STEP_HEALTH,    GW_STEP_ISOLATION,
                                                     GW_STEP_FIRMWARE,   GW_STEP_HOOKS };
    static const gw_verdict expect[GW_STEP_COUNT] = { GW_VERDICT_PASS, GW_VERDICT_PASS, GW_VERDICT_PASS,
                                                      GW_VERDICT_SKIP, GW_VERDICT_PASS, GW_VERDICT_PASS,
                                                      GW_VERDICT_PASS, GW_VERDICT_SKIP };
    for (int i = 0; i < GW_STEP_COUNT; i++) {
        const gw_step_result *s = gw_sanitize_result_step(W.res, (size_t)i);
        assert_int_equal(s->step, order[i]);
        assert_string_equal(s->name, gw_step_name(order[i]));
        assert_int_equal(s->verdict, expect[i]);
    }
    assert_string_equal(step(GW_STEP_SCRUB)->evidence, "no scrub configured for 10de:2230");
    assert_contains(step(GW_STEP_NOT_IN_USE)->evidence, "no VM references 0000:03:00.0, 0000:03:00.1");
    assert_contains(step(GW_STEP_RESET)->evidence, "reset_method 'flr': kernel tries flr first");
    assert_contains(step(GW_STEP_HEALTH)->evidence, "config readable (10de:2230)");
    assert_contains(step(GW_STEP_HEALTH)->evidence,
                    "BAR registers hold the addresses the kernel assigned (BAR0 0xf0000000, BAR1 0x38000000000)");
    assert_contains(step(GW_STEP_HEALTH)->evidence, "0000:03:00.0: PCI Status 0x0010: no error bits");
    assert_contains(step(GW_STEP_HEALTH)->evidence, "0000:03:00.0: AER status clear");
    assert_contains(step(GW_STEP_HEALTH)->evidence, "link x16 (can reach x16), from LnkSta/LnkCap");
    assert_contains(step(GW_STEP_ISOLATION)->evidence,
                    "group 10: 0000:03:00.0 [vfio-pci], 0000:03:00.1 [vfio-pci] (functions of slot 0000:03:00); "
                    "0000:02:00.0 downstream: SV+ RR+ CR+ UF+ (ACS cap 001f ctrl 001d); "
                    "0000:00:01.0 root_port: SV+ RR+ CR+ UF+ (ACS cap 001f ctrl 001d); ATS disabled (control 0x0000)");
    assert_contains(step(GW_STEP_HOOKS)->evidence, "no hooks in");
    assert_true(gw_sanitize_result_end_ms(W.res) >= gw_sanitize_result_start_ms(W.res));

    /* driver_override of both functions, both held in D0, reset, ROM
     * on/off, power/control back (last set, first restored): nothing else. */
    assert_int_equal(gw_sim_write_count(W.sim), 9);
    assert_write(0, DEV(GPU, "driver_override"), "vfio-pci", 8, 0);
    assert_write(1, DEV(HDA, "driver_override"), "vfio-pci", 8, 0);
    assert_write(2, DEV(GPU, "power/control"), "on", 2, 0);
    assert_write(3, DEV(HDA, "power/control"), "on", 2, 0);
    assert_write(4, DEV(GPU, "reset"), "1", 1, 0);
    assert_write(5, DEV(GPU, "rom"), "1", 1, 0);
    assert_write(6, DEV(GPU, "rom"), "0\n", 2, 0);
    assert_write(7, DEV(HDA, "power/control"), "auto", 4, 0);
    assert_write(8, DEV(GPU, "power/control"), "auto", 4, 0);

    /* Pins out: first link width, ROM hash, AER baselines of GPU and port. */
    char h[65];
    rom_hash(GPU, h);
    assert_string_equal(gw_sanitize_result_pin_get(W.res, "sanitize.rom_sha256"), h);
    assert_string_equal(gw_sanitize_result_pin_get(W.res, "sanitize.link_width"), "16");
    assert_string_equal(gw_sanitize_result_pin_get(W.res, "sanitize.aer_fatal.gpu"), "0");
    assert_string_equal(gw_sanitize_result_pin_get(W.res, "sanitize.aer_nonfatal.upstream"), "0");
    assert_int_equal(gw_sanitize_result_pin_count(W.res), 6);

    /* Second clean-up with those pins: passes, overrides already set. */
    gw_fact pins[6];
    for (size_t i = 0; i < 6; i++)
        pins[i] = *gw_sanitize_result_pin(W.res, i);
    gw_sanitize_result *first = W.res;
    W.res = NULL;
    memcpy(W.pins, pins, sizeof pins);
    W.n_pins = 6;
    run();
    assert_passes();
    assert_contains(step(GW_STEP_FIRMWARE)->evidence, "matches the pin");
    assert_contains(step(GW_STEP_BIND)->evidence, "0000:03:00.0: already on vfio-pci");
    assert_int_equal(gw_sim_write_count(W.sim), 9 + 7);    /* power on x2, reset, rom on, rom off, power back x2 */
    gw_sanitize_result_free(first);
}

/* ---- not_in_use ----------------------------------------------------------- */

static void in_use_fails_and_writes_nothing(void **state)
{
    (void)state;
    W.att.busy = HDA;
    W.att.user = "tenant-a";
    world_open();
    run();
    /* The HDA function's domain holds the whole slot. */
    assert_fails_at(GW_STEP_NOT_IN_USE, "0000:03:00.0 is in use by domain 'tenant-a'");
    assert_true(gw_sanitize_result_in_use(W.res));
    assert_int_equal(gw_sim_write_count(W.sim), 0);
}

static void attachment_error_counts_as_in_use(void **state)
{
    (void)state;
    W.att.err = -ECONNREFUSED;
    world_open();
    run();
    assert_fails_at(GW_STEP_NOT_IN_USE, "0000:03:00.0: memory cannot tell whether a VM uses it (memory source: "
                                        "Connection refused); counted as in use");
    assert_int_equal(gw_sim_write_count(W.sim), 0);
}

/* ---- VFIO holders: a process (a running QEMU) with the group node open ---- */

static void vfio_holder_is_named_and_nothing_is_written(void **state)
{
    (void)state;
    world_open();
    /* libvirt knows nothing of it (the attachment source says free). */
    gw_sim_hold_group(W.sim, "10", 4242, "qemu-system-x86");
    run();
    assert_fails_at(GW_STEP_NOT_IN_USE, "0000:03:00.0: IOMMU group 10 (/dev/vfio/10) is open by pid 4242 "
                                        "(qemu-system-x86): in use");
    assert_true(gw_sanitize_result_in_use(W.res));
    assert_int_equal(gw_sim_write_count(W.sim), 0);

    /* The JSON form keeps the verdict "in use". */
    char *json = NULL;
    assert_int_equal(gw_sanitize_result_to_json(W.res, &json), 0);
    assert_contains(json, "\"in_use\":true");
    gw_sanitize_result *back = NULL;
    assert_int_equal(gw_sanitize_result_from_json(&back, json), 0);
    assert_true(gw_sanitize_result_in_use(back));
    gw_sanitize_result_free(back);
    free(json);

    /* Once QEMU is gone, the same GPU is cleaned; a holder of another
     * group is no reason to stop. */
    gw_sim_release_group(W.sim, "10", 4242);
    gw_sim_hold_group(W.sim, "11", 4300, "qemu-system-x86");
    run();
    assert_passes();
    assert_false(gw_sanitize_result_in_use(W.res));
    assert_contains(step(GW_STEP_NOT_IN_USE)->evidence, "no process has /dev/vfio/10 open (1 processes looked at)");
}

static void vfio_holder_appearing_during_bind_stops_the_reset(void **state)
{
    (void)state;
    world_open();
    /* not_in_use saw nobody; QEMU opens the group while bind runs, before
     * the run's own hold: that hold is refused (EBUSY) as bind ends, before
     * the reset writes anything. */
    gw_sim_after_write_hold(W.sim, DEV(HDA, "driver_override"), "10", 777, "qemu-kvm");
    run();
    assert_fails_at(GW_STEP_BIND, "0000:03:00.0: IOMMU group 10 (/dev/vfio/10) is open by pid 777 (qemu-kvm): in "
                                  "use (the kernel refused our open: EBUSY)");
    assert_true(gw_sanitize_result_in_use(W.res));
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
    /* What the clean-up changed for itself went back all the same. */
    assert_write(gw_sim_write_count(W.sim) - 1, DEV(GPU, "power/control"), "auto", 4, 0);
}

static void hot_plug_after_health_is_refused_by_the_kernel(void **state)
{
    (void)state;
    world_open();
    /* A hot-plug (no libvirt hook runs for one) tries to take the GPU while
     * the firmware step reads its ROM, after reset, scrub and health: the
     * run holds /dev/vfio/10 from bind to its end, so QEMU's open is
     * refused and the clean-up stands. */
    gw_sim_after_write_hold(W.sim, DEV(GPU, "rom"), "10", 888, "qemu-system-x86");
    run();
    assert_passes();
    assert_contains(step(GW_STEP_BIND)->evidence, "holding /dev/vfio/10 open across the rest of the clean-up");
    assert_true(gw_sim_refused_opens(W.sim, "10") >= 1);      /* at each write to rom */
    assert_false(gw_sanitize_result_in_use(W.res));
    /* Let go at the end: a VM can open it now. */
    assert_int_equal(gw_sim_hold_group(W.sim, "10", 888, "qemu-system-x86"), 0);
}

static void vfio_holder_racing_the_bind_is_stopped_by_the_kernel(void **state)
{
    (void)state;
    world_open();
    /* QEMU opens the group after not_in_use's scan and before the run's
     * hold at the end of bind: no scan can see it in time, the kernel's
     * single open can. */
    gw_sim_race_hold(W.sim, "10", 4243, "qemu-system-x86");
    run();
    assert_fails_at(GW_STEP_BIND, "0000:03:00.0: IOMMU group 10 (/dev/vfio/10) is open by pid 4243 "
                                  "(qemu-system-x86): in use (the kernel refused our open: EBUSY)");
    assert_true(gw_sanitize_result_in_use(W.res));
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
}

static void the_group_is_held_from_bind_to_the_end_of_the_run(void **state)
{
    (void)state;
    world_open();
    run();
    assert_passes();
    assert_contains(step(GW_STEP_RESET)->evidence,
                    "/dev/vfio/10 held since the bind step: no VM can take the group during the reset");
    /* Bind's own writes come before the hold (the group node appears with
     * vfio-pci); every write after them, the reset and the end of the run's
     * power/control included, is made with the group held. */
    size_t resets = 0, held_writes = 0;
    bool holding = false;
    for (size_t i = 0; i < gw_sim_write_count(W.sim); i++) {
        const char *p, *held;
        const void *d;
        size_t l;
        int r;
        assert_int_equal(gw_sim_write_at(W.sim, i, &p, &d, &l, &r), 0);
        assert_int_equal(gw_sim_write_held(W.sim, i, &held), 0);
        holding = holding || !strcmp(held, "10");
        if (holding)
            assert_string_equal(held, "10");
        held_writes += holding;
        resets += !strcmp(p, DEV(GPU, "reset"));
        if (!strcmp(p, DEV(GPU, "reset")))
            assert_string_equal(held, "10");
    }
    assert_int_equal(resets, 1);
    assert_true(held_writes >= 3);      /* the reset, both functions' power/control back */
    /* Let go after: a VM can open it now. */
    void *h = NULL;
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/10", &h), 0);
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/10", &(void *){ NULL }), -EBUSY);
    gw_hostops_release(W.ops, h);
}

/* ---- runtime power ---------------------------------------------------------- */

static void bind_suspends_and_the_cleanup_holds_d0_then_restores(void **state)
{
    (void)state;
    snprintf(fx_find(&W.host, GPU)->driver, 32, "nvidia");
    snprintf(fx_find(&W.host, HDA)->driver, 32, "snd_hda_intel");
    world_open();
    run();
    assert_passes();
    /* vfio-pci suspended both at bind (Linux 6.1: D3hot at once). */
    assert_contains(step(GW_STEP_BIND)->evidence, "0000:03:00.0: D3hot, runtime suspended -> D0, runtime active "
                                                  "(power/control 'on', was 'auto')");
    assert_contains(step(GW_STEP_BIND)->evidence, "0000:03:00.1: D3hot, runtime suspended -> D0, runtime active");
    assert_contains(step(GW_STEP_RESET)->evidence, "0000:03:00.0 after the reset: D0, runtime active");
    assert_contains(step(GW_STEP_HOOKS)->evidence, "end of the run: wrote 'auto' to sys/bus/pci/devices/0000:03:00.1/"
                                                   "power/control; 0000:03:00.1 now: D3hot, runtime suspended");
    /* D0 from after bind to the end: on before the reset and the ROM read,
     * back to auto after them. */
    assert_write(6, DEV(GPU, "power/control"), "on", 2, 0);
    assert_write(7, DEV(HDA, "power/control"), "on", 2, 0);
    assert_write(8, DEV(GPU, "reset"), "1", 1, 0);
    assert_write(10, DEV(GPU, "rom"), "0\n", 2, 0);
    assert_write(11, DEV(HDA, "power/control"), "auto", 4, 0);
    assert_write(12, DEV(GPU, "power/control"), "auto", 4, 0);
    /* Left as bind made it: suspended under vfio-pci, runtime PM allowed. */
    char *s = NULL;
    size_t n;
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "power_state"), 64, &s, &n), 0);
    assert_string_equal(s, "D3hot\n");
    free(s);
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "power/control"), 64, &s, &n), 0);
    assert_string_equal(s, "auto\n");
    free(s);
}

static void power_control_already_on_is_left_alone(void **state)
{
    (void)state;
    world_open();
    gw_sim_set(W.sim, DEV(GPU, "power/control"), "on\n", 3);
    run();
    assert_passes();
    assert_contains(step(GW_STEP_BIND)->evidence, "0000:03:00.0: D0, runtime active, power/control already 'on'");
    /* Only the HDA function's was changed, and only it goes back. */
    assert_int_equal(gw_sim_count_writes(W.sim, "0000:03:00.0/power/control"), 0);
    assert_int_equal(gw_sim_count_writes(W.sim, "0000:03:00.1/power/control"), 2);
}

/* ---- bind ------------------------------------------------------------------ */

static void bind_rebinds_host_drivers_through_driver_override(void **state)
{
    (void)state;
    snprintf(fx_find(&W.host, GPU)->driver, 32, "nvidia");
    snprintf(fx_find(&W.host, HDA)->driver, 32, "snd_hda_intel");
    world_open();
    run();
    assert_passes();
    assert_int_equal(gw_sim_write_count(W.sim), 6 + 2 + 3 + 2);    /* bind, power on, reset + rom, power back */
    assert_write(0, DEV(GPU, "driver_override"), "vfio-pci", 8, 0);
    assert_write(1, "sys/bus/pci/drivers/nvidia/unbind", GPU, 12, 0);
    assert_write(2, "sys/bus/pci/drivers_probe", GPU, 12, 0);
    assert_write(3, DEV(HDA, "driver_override"), "vfio-pci", 8, 0);
    assert_write(4, "sys/bus/pci/drivers/snd_hda_intel/unbind", HDA, 12, 0);
    assert_write(5, "sys/bus/pci/drivers_probe", HDA, 12, 0);
    assert_contains(step(GW_STEP_BIND)->evidence, "wrote '0000:03:00.0' to sys/bus/pci/drivers/nvidia/unbind");
    assert_contains(step(GW_STEP_BIND)->evidence, "2 functions on vfio-pci, IOMMU group 10");
}

static void group_member_on_host_driver_not_managed_fails_bind(void **state)
{
    (void)state;
    /* Default management: the HDA function on snd_hda_intel is not ours. */
    W.pol.manage_vendors = NULL;
    W.pol.n_manage_vendors = 0;
    snprintf(fx_find(&W.host, HDA)->driver, 32, "snd_hda_intel");
    world_open();
    run();
    assert_fails_at(GW_STEP_BIND, "0000:03:00.1 bound to snd_hda_intel and not managed");
    assert_contains(gw_sanitize_result_reason(W.res), "wrote nothing");
    assert_int_equal(gw_sim_write_count(W.sim), 0);
}

static void foreign_device_in_group_fails_bind(void **state)
{
    (void)state;
    /* A NIC in the GPU's group (no ACS below it): never rebound. */
    fx_dev *nic = fx_add(&W.host, "0000:20:00.0", DSP);
    nic->vendor = 0x8086;
    nic->device = 0x1533;
    nic->class_base = 0x02;
    nic->port_type = 0;
    snprintf(nic->driver, 32, "igb");
    snprintf(nic->group, 8, "10");
    world_open();
    run();
    assert_fails_at(GW_STEP_BIND, "0000:20:00.0 bound to igb and not managed");
    assert_int_equal(gw_sim_write_count(W.sim), 0);
}

static void probe_binding_a_host_driver_fails_bind(void **state)
{
    (void)state;
    snprintf(fx_find(&W.host, HDA)->driver, 32, "snd_hda_intel");
    world_open();
    /* The kernel bound the host driver anyway (a stale override elsewhere). */
    gw_sim_after_write_bind(W.sim, "sys/bus/pci/drivers_probe", HDA, HDA, "snd_hda_intel");
    run();
    assert_fails_at(GW_STEP_BIND, "0000:03:00.1: after drivers_probe bound to snd_hda_intel, not vfio-pci");
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
}

static void device_off_the_bus_before_cleanup_fails_bind(void **state)
{
    (void)state;
    world_open();
    uint8_t ff[4096];
    memset(ff, 0xff, sizeof ff);
    gw_sim_set(W.sim, DEV(HDA, "config"), ff, sizeof ff);
    run();
    assert_fails_at(GW_STEP_BIND, "0000:03:00.1: config space reads all-ones: device off the bus; wrote nothing");
    assert_int_equal(gw_sim_write_count(W.sim), 0);
}

static void unmanaged_gpu_is_never_written(void **state)
{
    (void)state;
    W.pol.manage_vendors = NULL;
    W.pol.n_manage_vendors = 0;
    snprintf(fx_find(&W.host, GPU)->driver, 32, "nvidia");
    world_open();
    run();
    assert_fails_at(GW_STEP_BIND, "0000:03:00.0 bound to nvidia and not managed");
    assert_contains(gw_sanitize_result_reason(W.res), "default rule");
    assert_int_equal(gw_sim_write_count(W.sim), 0);
    char *why = NULL;
    assert_int_equal(gw_sanitize_is_managed(W.ops, &W.pol, GPU, &why), 0);
    free(why);
}

static void default_rule_manages_vfio_bound_gpu_only(void **state)
{
    (void)state;
    W.pol.manage_vendors = NULL;
    W.pol.n_manage_vendors = 0;
    world_open();
    run();
    assert_passes();
    /* The HDA function (class 0403) is not managed by default: left alone. */
    assert_contains(step(GW_STEP_BIND)->evidence, "0000:03:00.1: on vfio-pci, not managed: driver_override left");
    assert_int_equal(gw_sim_write_count(W.sim), 6);
    assert_write(0, DEV(GPU, "driver_override"), "vfio-pci", 8, 0);
    assert_write(1, DEV(GPU, "power/control"), "on", 2, 0);
    assert_write(2, DEV(GPU, "reset"), "1", 1, 0);
    assert_write(5, DEV(GPU, "power/control"), "auto", 4, 0);
    assert_contains(step(GW_STEP_BIND)->evidence, "0000:03:00.1: D0, runtime active, power/control 'auto' left as "
                                                  "it is (not managed)");
}

/* ---- reset ----------------------------------------------------------------- */

static void reset_write_fails(void **state)
{
    (void)state;
    world_open();
    gw_sim_fail_write(W.sim, DEV(GPU, "reset"), -EIO);
    run();
    assert_fails_at(GW_STEP_RESET, "write '1' to sys/bus/pci/devices/0000:03:00.0/reset failed: Input/output error");
    assert_contains(gw_sanitize_result_reason(W.res), "reset failed");
    assert_false(gw_sanitize_result_in_use(W.res));
    assert_int_equal(gw_sim_count_writes(W.sim, "/rom"), 0);
    /* A failed run still gives power/control back. */
    assert_contains(gw_sanitize_result_reason(W.res), "end of the run: wrote 'auto'");
    assert_write(gw_sim_write_count(W.sim) - 1, DEV(GPU, "power/control"), "auto", 4, 0);
}

static void no_reset_method_fails_unless_policy_allows(void **state)
{
    (void)state;
    fx_dev *g = fx_find(&W.host, GPU);
    snprintf(g->reset_method, sizeof g->reset_method, "-");
    g->reset_attr = false;
    world_open();
    run();
    assert_fails_at(GW_STEP_RESET, "no reset method offered (no reset attribute); policy requires a reset");

    W.pol.allow_no_reset = true;
    run();
    assert_passes();
    assert_int_equal(step(GW_STEP_RESET)->verdict, GW_VERDICT_SKIP);
    assert_contains(step(GW_STEP_RESET)->evidence, "policy allow_no_reset: not reset");
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
}

static void reset_method_without_flr_is_said(void **state)
{
    (void)state;
    snprintf(fx_find(&W.host, GPU)->reset_method, 32, "pm bus");
    world_open();
    run();
    assert_passes();
    assert_contains(step(GW_STEP_RESET)->evidence, "reset_method 'pm bus': no FLR offered, kernel uses pm");
}

static void reset_refused_when_a_vm_appears_meanwhile(void **state)
{
    (void)state;
    world_open();
    /* Free for not_in_use's query (one per slot), then a VM takes the GPU
     * before the reset's own check. */
    W.att.busy = GPU;
    W.att.user = "late";
    W.att.busy_from_call = 2;
    run();
    assert_fails_at(GW_STEP_RESET, "0000:03:00.0 is in use by domain 'late'; not reset");
    assert_true(gw_sanitize_result_in_use(W.res));
    assert_int_equal(W.att.calls, 2);
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
}

/* ---- health ---------------------------------------------------------------- */

/* After the reset, `d`'s config space reads as fx_config() of `changed` (a
 * copy of its fixture entry with the test's change): the live registers. */
static void config_after_reset(const fx_dev *changed)
{
    uint8_t cfg[4096];
    fx_config(changed, cfg);
    char path[128];
    snprintf(path, sizeof path, "sys/bus/pci/devices/%s/config", changed->bdf);
    gw_sim_after_write_set(W.sim, DEV(GPU, "reset"), path, cfg, sizeof cfg);
}

static void all_ones_after_reset_fails_health(void **state)
{
    (void)state;
    world_open();
    uint8_t ff[4096];
    memset(ff, 0xff, sizeof ff);
    gw_sim_after_write_set(W.sim, DEV(GPU, "reset"), DEV(GPU, "config"), ff, sizeof ff);
    run();
    assert_fails_at(GW_STEP_HEALTH, "config space reads all-ones after reset");
}

static void narrower_link_after_reset_fails_health(void **state)
{
    (void)state;
    world_open();
    fx_dev g = *fx_find(&W.host, GPU);
    g.link_width = 8;       /* LnkSta: retrained narrower */
    config_after_reset(&g);
    run();
    assert_fails_at(GW_STEP_HEALTH, "link width x8 below x16, the smaller of both ends' maximum (GPU x16, "
                                    "0000:02:00.0 x16)");
}

static void idle_slower_link_passes(void **state)
{
    (void)state;
    world_open();
    fx_dev g = *fx_find(&W.host, GPU);
    snprintf(g.link_speed, sizeof g.link_speed, "2.5 GT/s PCIe");     /* LnkSta: idle */
    config_after_reset(&g);
    run();
    assert_passes();
    assert_contains(step(GW_STEP_HEALTH)->evidence,
                    "link at 2.5 GT/s of 16.0 GT/s: a lower speed is normal for an idle GPU, not a fault");
}

static void link_capped_by_partner_passes_but_not_below_first_pin(void **state)
{
    (void)state;
    /* An x16 GPU in an x8 slot: x8 is all the link can reach. */
    fx_dev *g = fx_find(&W.host, GPU);
    g->link_width = 8;
    fx_find(&W.host, DSP)->link_max_width = 8;
    world_open();
    run();
    assert_passes();
    assert_contains(step(GW_STEP_HEALTH)->evidence, "link x8 (can reach x8)");
    assert_string_equal(gw_sanitize_result_pin_get(W.res, "sanitize.link_width"), "8");

    /* The same device was x16 at its first clean-up: now degraded. */
    W.pins[0] = (gw_fact){ "sanitize.link_width", "16" };
    W.n_pins = 1;
    run();
    assert_fails_at(GW_STEP_HEALTH, "link width x8 below x16 recorded at the first clean-up");
}

static void aer_fatal_increase_fails_health(void **state)
{
    (void)state;
    world_open();
    char *t = fx_aer_text("fatal", 1);
    gw_sim_after_write_set(W.sim, DEV(GPU, "reset"), DEV(GPU, "aer_dev_fatal"), t, strlen(t));
    free(t);
    W.pins[0] = (gw_fact){ "sanitize.aer_fatal.gpu", "0" };
    W.n_pins = 1;
    run();
    assert_fails_at(GW_STEP_HEALTH, "0000:03:00.0: aer_dev_fatal TOTAL rose from 0 to 1 since the last clean-up");
    /* The new baseline goes out, so a released device is judged from here. */
    assert_string_equal(gw_sanitize_result_pin_get(W.res, "sanitize.aer_fatal.gpu"), "1");
}

static void aer_nonfatal_increase_on_upstream_port_fails_health(void **state)
{
    (void)state;
    fx_find(&W.host, DSP)->aer_nonfatal = 7;
    world_open();
    W.pins[0] = (gw_fact){ "sanitize.aer_nonfatal.upstream", "3" };
    W.n_pins = 1;
    run();
    assert_fails_at(GW_STEP_HEALTH, "0000:02:00.0: aer_dev_nonfatal TOTAL rose from 3 to 7");
}

static void aer_counter_below_baseline_is_a_new_baseline(void **state)
{
    (void)state;
    world_open();
    W.pins[0] = (gw_fact){ "sanitize.aer_fatal.gpu", "4" };
    W.n_pins = 1;
    run();
    assert_passes();
    assert_contains(step(GW_STEP_HEALTH)->evidence, "below the baseline 4 (host rebooted?)");
    assert_string_equal(gw_sanitize_result_pin_get(W.res, "sanitize.aer_fatal.gpu"), "0");
}

/* A function that came back from the reset without its BARs restored (the
 * reset clears them; the kernel writes them back): sysfs `resource` still
 * shows the assignment, only the live register tells. */
static void bar_register_that_lost_its_address_fails_health(void **state)
{
    (void)state;
    world_open();
    fx_dev g = *fx_find(&W.host, GPU);
    g.bar1_size = 0;        /* the registers as fx_config() leaves an unassigned BAR1: 0 */
    config_after_reset(&g);
    run();
    assert_fails_at(GW_STEP_HEALTH, "BAR1 lost its address: the register reads 0x00000000, the kernel assigned "
                                    "0x38000000000");
}

/* ---- isolation ------------------------------------------------------------- */

static void ats_enabled_fails_isolation(void **state)
{
    (void)state;
    fx_find(&W.host, GPU)->ats_ctrl = 0x8000;
    world_open();
    run();
    assert_fails_at(GW_STEP_ISOLATION, "ATS enabled on 0000:03:00.0 (control 0x8000)");
    /* ... unless the operator chose warn. */
    W.pol.isolation = GW_ISOLATION_WARN;
    run();
    assert_passes();
    assert_contains(step(GW_STEP_ISOLATION)->evidence, "WARNING (isolation policy warn): ATS enabled");
}

static void switch_port_lacking_acs_fails_isolation(void **state)
{
    (void)state;
    fx_find(&W.host, DSP)->acs_ctrl = -1;
    world_open();
    run();
    assert_fails_at(GW_STEP_ISOLATION, "0000:02:00.0 downstream: no ACS capability");
}

static void acs_redirect_disabled_fails_isolation(void **state)
{
    (void)state;
    fx_find(&W.host, DSP)->acs_ctrl = 0x0011;   /* SV UF only: pci=disable_acs_redir */
    world_open();
    run();
    assert_fails_at(GW_STEP_ISOLATION, "0000:02:00.0 downstream: ACS RR CR not enabled (ACS cap 001f ctrl 0011)");
}

static void acs_flag_not_implemented_counts_as_enabled(void **state)
{
    (void)state;
    fx_dev *d = fx_find(&W.host, DSP);
    d->acs_cap = 0x0007;    /* SV TB RR: CR and UF hard-wired */
    d->acs_ctrl = 0x0005;   /* SV RR */
    world_open();
    run();
    assert_passes();
}

static void group_member_rebound_to_host_driver_fails_isolation(void **state)
{
    (void)state;
    world_open();
    gw_sim_after_write_bind(W.sim, DEV(GPU, "reset"), NULL, HDA, "snd_hda_intel");
    run();
    assert_fails_at(GW_STEP_ISOLATION, "group 10 not viable: 0000:03:00.1 bound to snd_hda_intel (10de:1aef, "
                                       "class 0403): VFIO gives a VM the group only when");
}

static void no_iommu_group_fails_isolation(void **state)
{
    (void)state;
    fx_find(&W.host, GPU)->group[0] = '\0';
    fx_find(&W.host, HDA)->group[0] = '\0';
    world_open();
    run();
    assert_fails_at(GW_STEP_ISOLATION, "no IOMMU group: the IOMMU is off or absent, so the GPU cannot be isolated");
}

/* ---- firmware -------------------------------------------------------------- */

static void rom_hash_changed_vs_pin_fails_firmware(void **state)
{
    (void)state;
    world_open();
    char h[65];
    rom_hash(GPU, h);
    W.pins[0] = (gw_fact){ "sanitize.rom_sha256", "0000000000000000000000000000000000000000000000000000000000000000" };
    W.n_pins = 1;
    run();
    char want[200];
    snprintf(want, sizeof want, "sha256 %s changed vs the pin 0000", h);
    assert_fails_at(GW_STEP_FIRMWARE, want);
    /* The ROM was disabled again after the read (then power/control went back). */
    assert_write(gw_sim_write_count(W.sim) - 3, DEV(GPU, "rom"), "0\n", 2, 0);
    /* The pin is not overwritten by a mismatch. */
    assert_string_equal(gw_sanitize_result_pin_get(W.res, "sanitize.rom_sha256"), W.pins[0].value);
}

static void rom_not_in_allowlist_fails_firmware(void **state)
{
    (void)state;
    world_open();
    gw_rom_allow allow[] = {
        { "10de:2230:10de:1459", "1111111111111111111111111111111111111111111111111111111111111111" },
        { "10de:2230:10de:1459", "2222222222222222222222222222222222222222222222222222222222222222" },
    };
    W.pol.rom_allowlist = allow;
    W.pol.n_rom_allowlist = 2;
    run();
    assert_fails_at(GW_STEP_FIRMWARE, "is not in the allowlist for 10de:2230:10de:1459 (2 allowed hashes)");

    /* The allowlist wins over a pin, and a vendor:device entry covers every subsystem. */
    char h[65];
    rom_hash(GPU, h);
    gw_rom_allow ok[] = { { "10de:2230", h } };
    W.pol.rom_allowlist = ok;
    W.pol.n_rom_allowlist = 1;
    W.pins[0] = (gw_fact){ "sanitize.rom_sha256", "3333333333333333333333333333333333333333333333333333333333333333" };
    W.n_pins = 1;
    run();
    assert_passes();
    assert_contains(step(GW_STEP_FIRMWARE)->evidence, "allowed for 10de:2230 by the allowlist");
}

static void allowlist_file_loads_and_reports_bad_lines(void **state)
{
    (void)state;
    char h[65];
    world_open();
    rom_hash(GPU, h);
    char path[128];
    snprintf(path, sizeof path, "%s/allow", W.hooks);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (char *p = h; *p; p++)      /* upper-case in the file is fine */
        *p = (char)toupper((unsigned char)*p);
    fprintf(f, "# RTX A6000 VBIOS 94.02.5C.00.02\n\n10DE:2230:10de:1459  %s  # board A\n"
               "10de:2230 1111111111111111111111111111111111111111111111111111111111111111\n", h);
    fclose(f);
    chmod(path, 0644);     /* not executable: the hooks step ignores it, and says so */
    gw_rom_allow *allow = NULL;
    size_t n = 0;
    assert_int_equal(gw_rom_allowlist_load(path, &allow, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(allow[0].id, "10de:2230:10de:1459");
    rom_hash(GPU, h);
    assert_string_equal(allow[0].sha256, h);
    assert_string_equal(allow[1].id, "10de:2230");
    W.pol.rom_allowlist = allow;
    W.pol.n_rom_allowlist = n;
    run();
    assert_passes();
    assert_contains(step(GW_STEP_FIRMWARE)->evidence, "allowed for 10de:2230:10de:1459 by the allowlist");
    assert_contains(step(GW_STEP_HOOKS)->evidence, "allow ignored: not executable");
    gw_rom_allowlist_free(allow, n);

    f = fopen(path, "w");
    fprintf(f, "10de:2230 %s\n\n10de:22 %s\n", h, h);
    fclose(f);
    allow = NULL;
    assert_int_equal(gw_rom_allowlist_load(path, &allow, &n), -EINVAL);
    assert_null(allow);
    char want[200];
    snprintf(want, sizeof want, "%s:3: ID is not vvvv:dddd or vvvv:dddd:ssss:ssss", path);
    assert_string_equal(gw_error_message(), want);
    f = fopen(path, "w");
    fprintf(f, "10de:2230 abc\n");
    fclose(f);
    assert_int_equal(gw_rom_allowlist_load(path, &allow, &n), -EINVAL);
    assert_contains(gw_error_message(), ":1: SHA256 is not 64 hex digits");
    unlink(path);
    assert_int_equal(gw_rom_allowlist_load(path, &allow, &n), -ENOENT);
}

static void no_rom_skips_firmware(void **state)
{
    (void)state;
    fx_find(&W.host, GPU)->rom_size = 0;
    world_open();
    run();
    assert_passes();
    assert_int_equal(step(GW_STEP_FIRMWARE)->verdict, GW_VERDICT_SKIP);
    assert_contains(step(GW_STEP_FIRMWARE)->evidence, "no ROM BAR");
    assert_int_equal(gw_sim_count_writes(W.sim, "/rom"), 0);
}

static void rom_without_a_valid_image_fails_firmware_with_eio(void **state)
{
    (void)state;
    world_open();
    /* Erased or garbage flash: the kernel finds no 55 AA image and refuses
     * the read, so there is nothing to verify. */
    unsigned char junk[4096];
    memset(junk, 0xff, sizeof junk);
    gw_sim_set(W.sim, DEV(GPU, "rom"), junk, sizeof junk);
    run();
    assert_fails_at(GW_STEP_FIRMWARE, "ROM read failed with EIO (read sys/bus/pci/devices/0000:03:00.0/rom: invalid "
                                      "ROM header signature: expecting 0xaa55, got 0xffff (kernel: EIO)): the kernel "
                                      "found no valid ROM image (55 AA header and PCIR structure), so the firmware "
                                      "cannot be verified");
    assert_false(gw_sanitize_result_in_use(W.res));
    assert_null(gw_sanitize_result_pin_get(W.res, "sanitize.rom_sha256"));
    /* Disabled again after the failed read. */
    assert_write(gw_sim_write_count(W.sim) - 3, DEV(GPU, "rom"), "0\n", 2, 0);
}

static void rom_read_error_fails_and_still_disables(void **state)
{
    (void)state;
    world_open();
    /* Enabling "works" but the ROM cannot be mapped: the sim keeps it
     * disabled when the enabling write is refused. */
    gw_sim_fail_write(W.sim, DEV(GPU, "rom"), -EIO);
    run();
    assert_fails_at(GW_STEP_FIRMWARE, "cannot enable ROM reads");
}

/* ---- hooks ----------------------------------------------------------------- */

static void hooks_run_in_order_with_device_and_evidence(void **state)
{
    (void)state;
    world_open();
    char out[128];
    snprintf(out, sizeof out, "%s/out", W.hooks);
    char body[512];
    snprintf(body, sizeof body, "echo \"$(basename $0) $1 $GW_DEVICE\" >> %s\nprintf '%%s\\n' \"$GW_EVIDENCE\" | cut -d: -f1-2 >> %s",
             out, out);
    write_hook("20-second", body);
    write_hook("10-first", body);
    write_hook("30-skipped.dpkg-old", "exit 1");     /* not a run-parts name */
    run();
    assert_passes();
    assert_contains(step(GW_STEP_HOOKS)->evidence, "hook 10-first exited 0");
    assert_contains(step(GW_STEP_HOOKS)->evidence, "hook 20-second exited 0");
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char got[2048] = "";
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    fclose(f);
    const char *once = "not_in_use: pass\nbind: pass\nreset: pass\nscrub: skip\nhealth: pass\nisolation: pass\n"
                       "firmware: pass\n";
    char expect[2048];
    snprintf(expect, sizeof expect, "10-first " GPU " " GPU "\n%s20-second " GPU " " GPU "\n%s", once, once);
    assert_string_equal(got, expect);
}

static void hook_exit_1_fails_hooks(void **state)
{
    (void)state;
    world_open();
    write_hook("10-ok", "exit 0");
    write_hook("50-vbios-check", "echo 'checking'; echo 'mismatch' >&2; exit 1");
    write_hook("90-never", "exit 0");
    run();
    assert_fails_at(GW_STEP_HOOKS, "hook 50-vbios-check exited 1, output: checking | mismatch");
    assert_null(strstr(step(GW_STEP_HOOKS)->evidence, "90-never"));
}

static int pid_gone(pid_t pid)
{
    /* Gone, or a zombie waiting for its reaper: either way not running. */
    char p[64], st[512];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return 1;
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = '\0';
    const char *paren = strrchr(st, ')');
    return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

static void hook_hanging_past_timeout_is_killed_with_its_group(void **state)
{
    (void)state;
    world_open();
    char pidfile[128], body[512];
    snprintf(pidfile, sizeof pidfile, "%s/pids", W.hooks);
    snprintf(body, sizeof body, "sleep 60 & echo $! > %s.tmp; mv %s.tmp %s; echo started; wait", pidfile, pidfile,
             pidfile);
    write_hook("10-hang", body);
    W.pol.hook_timeout_ms = 300;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_fails_at(GW_STEP_HOOKS, "hook 10-hang timed out after 300 ms: killed its process group");
    assert_contains(gw_sanitize_result_reason(W.res), "output: started");
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(took < 20.0);   /* generous: far below the hook's 60 s sleep */
    FILE *f = fopen(pidfile, "r");
    assert_non_null(f);
    int child = 0;
    assert_int_equal(fscanf(f, "%d", &child), 1);
    fclose(f);
    /* The background sleep was in the hook's group: killed too. */
    int tries = 0;
    while (!pid_gone(child) && tries++ < 100)
        usleep(20000);
    assert_true(pid_gone(child));
}

/* ---- timeouts and the result's JSON ----------------------------------------- */

static void step_timeout_abandons_a_blocked_write(void **state)
{
    (void)state;
    world_open();
    gw_sim_delay_write(W.sim, DEV(GPU, "reset"), 1500);
    W.pol.timeout_ms[GW_STEP_RESET] = 200;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_fails_at(GW_STEP_RESET, "timed out after 200 ms, step abandoned; before that: reset_method 'flr'");
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(took < 1.4);    /* returned before the blocked write did */
    /* Wait for the abandoned write to come back; nothing follows it. */
    for (int i = 0; i < 300 && gw_sim_count_writes(W.sim, "/reset") == 0; i++)
        usleep(10000);
    usleep(100000);
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 1);
    assert_int_equal(gw_sim_count_writes(W.sim, "/rom"), 0);
    /* An abandoned run writes nothing more, power/control included, and says so. */
    assert_int_equal(gw_sim_count_writes(W.sim, "/power/control"), 2);
    assert_contains(gw_sanitize_result_reason(W.res), "power/control of 0000:03:00.0 (was 'auto'), 0000:03:00.1 (was "
                                                      "'auto') left 'on': the run was abandoned");
}

static void result_json_round_trip(void **state)
{
    (void)state;
    world_open();
    gw_sim_fail_write(W.sim, DEV(GPU, "reset"), -EIO);
    run();
    char *json = NULL;
    assert_int_equal(gw_sanitize_result_to_json(W.res, &json), 0);
    assert_contains(json, "\"verdict\":\"fail\"");
    assert_contains(json, "\"failed_step\":\"reset\"");
    gw_sanitize_result *back = NULL;
    assert_int_equal(gw_sanitize_result_from_json(&back, json), 0);
    assert_string_equal(gw_sanitize_result_address(back), GPU);
    assert_int_equal(gw_sanitize_result_failed_step(back), GW_STEP_RESET);
    assert_string_equal(gw_sanitize_result_reason(back), gw_sanitize_result_reason(W.res));
    assert_int_equal(gw_sanitize_result_step_count(back), 3);
    assert_int_equal(gw_sanitize_result_start_ms(back), gw_sanitize_result_start_ms(W.res));
    assert_int_equal(gw_sanitize_result_step(back, 2)->duration_us, gw_sanitize_result_step(W.res, 2)->duration_us);
    char *json2 = NULL;
    assert_int_equal(gw_sanitize_result_to_json(back, &json2), 0);
    assert_string_equal(json, json2);
    free(json2);
    gw_sanitize_result_free(back);

    /* Damaged input is refused with a reason, never half-read. */
    json[strlen(json) / 2] = '\0';
    assert_int_equal(gw_sanitize_result_from_json(&back, json), -EINVAL);
    assert_contains(gw_error_message(), "clean-up result JSON");
    assert_int_equal(gw_sanitize_result_from_json(&back, "{\"version\":1,\"address\":\"0000:03:00.0\",\"start_ms\":1,"
                                                        "\"end_ms\":2,\"verdict\":\"pass\",\"steps\":[{\"step\":\"reset\","
                                                        "\"verdict\":\"fail\",\"evidence\":\"x\",\"duration_us\":1}],"
                                                        "\"pins\":{}}"), -EINVAL);
    assert_contains(gw_error_message(), "disagrees with its steps");
    free(json);
}

static void bad_arguments_are_refused(void **state)
{
    (void)state;
    world_open();
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = "03:00.0";
    gw_sanitize_result *r = NULL;
    assert_int_equal(gw_sanitize_run(&r, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    assert_contains(gw_error_message(), "'03:00.0' is not a PCI address");
    req.address = GPU;
    gw_rom_allow bad[] = { { "10DE:2230", "00" } };
    W.pol.rom_allowlist = bad;
    W.pol.n_rom_allowlist = 1;
    assert_int_equal(gw_sanitize_run(&r, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    assert_contains(gw_error_message(), "ROM allowlist entry 0");
    assert_null(r);
    /* Paths leaving the root never reach a backend. */
    char *s = NULL;
    size_t n;
    assert_int_equal(gw_hostops_read(W.ops, "sys/../../etc/passwd", 100, &s, &n), -EINVAL);
    assert_int_equal(gw_hostops_write(W.ops, "/etc/passwd", "x", 1), -EINVAL);
    assert_int_equal(gw_sim_write_count(W.sim), 0);
}

static void sim_models_the_kernel_attributes(void **state)
{
    (void)state;
    world_open();
    char *s = NULL;
    size_t n;
    /* rom: reads need enabling; "0" alone enables, only "0\n" disables. */
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "rom"), 1 << 20, &s, &n), -EINVAL);
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "rom"), "0", 1), 0);
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "rom"), 1 << 20, &s, &n), 0);
    assert_int_equal(n, FX_ROM_SIZE);
    free(s);
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "rom"), "0\n", 2), 0);
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "rom"), 1 << 20, &s, &n), -EINVAL);
    /* reset takes only 1. */
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "reset"), "2", 1), -EINVAL);
    /* unbind needs the right driver; override + probe binds. */
    assert_int_equal(gw_hostops_write(W.ops, "sys/bus/pci/drivers/nvidia/unbind", GPU, 12), -ENOENT);
    assert_int_equal(gw_hostops_write(W.ops, "sys/bus/pci/drivers/vfio-pci/unbind", GPU, 12), 0);
    assert_int_equal(gw_hostops_readlink(W.ops, DEV(GPU, "driver"), &s), -ENOENT);
    assert_int_equal(gw_hostops_write(W.ops, "sys/bus/pci/drivers_probe", GPU, 12), 0);
    assert_int_equal(gw_hostops_readlink(W.ops, DEV(GPU, "driver"), &s), -ENOENT);   /* no override: stays unbound */
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "driver_override"), "vfio-pci\n", 9), 0);
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "driver_override"), 100, &s, &n), 0);
    assert_string_equal(s, "vfio-pci\n");
    free(s);
    assert_int_equal(gw_hostops_write(W.ops, "sys/bus/pci/drivers_probe", GPU, 12), 0);
    assert_int_equal(gw_hostops_readlink(W.ops, DEV(GPU, "driver"), &s), 0);
    assert_string_equal(s, "../../../bus/pci/drivers/vfio-pci");
    free(s);
    /* Read-only attributes stay read-only. */
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "vendor"), "0x1234", 6), -EACCES);
    /* Nothing reached the tree. */
    fx_snap a;
    fx_snapshot(W.host.root, &a);
    const fx_entry *e = fx_snap_get(&a, "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:00.0/0000:03:00.0/driver_override");
    assert_non_null(e);
    assert_int_equal(e->len, 7);
    assert_memory_equal(e->data, "(null)\n", 7);
    fx_snap_free(&a);
}

static void assert_reads(const char *path, const char *want)
{
    char *s = NULL;
    size_t n;
    assert_int_equal(gw_hostops_read(W.ops, path, 4096, &s, &n), 0);
    assert_string_equal(s, want);
    free(s);
}

static void assert_power(const char *state, const char *status, const char *control)
{
    assert_reads(DEV(GPU, "power_state"), state);
    assert_reads(DEV(GPU, "power/runtime_status"), status);
    assert_reads(DEV(GPU, "power/control"), control);
}

static void sim_models_runtime_power_like_linux_6_1(void **state)
{
    (void)state;
    world_open();
    const char *unbind = "sys/bus/pci/drivers/vfio-pci/unbind", *bind = "sys/bus/pci/drivers/vfio-pci/bind";
    /* The tree has no power files: the kernel's defaults, as the tree left it. */
    assert_power("D0\n", "active\n", "auto\n");
    assert_int_equal(gw_hostops_exists(W.ops, DEV(GPU, "power/control")), 0);
    /* Unbound: D0. Bound to vfio-pci: suspended at once. */
    assert_int_equal(gw_hostops_write(W.ops, unbind, GPU, 12), 0);
    assert_power("D0\n", "active\n", "auto\n");
    assert_int_equal(gw_hostops_write(W.ops, bind, GPU, 12), 0);
    assert_power("D3hot\n", "suspended\n", "auto\n");
    /* "on" resumes and keeps it in D0; "auto" lets it suspend again. */
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "power/control"), "on\n", 3), 0);
    assert_power("D0\n", "active\n", "on\n");
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "power/control"), "auto", 4), 0);
    assert_power("D3hot\n", "suspended\n", "auto\n");
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "power/control"), "off", 3), -EINVAL);
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "power_state"), "D0", 2), -EACCES);
    /* A reset and a ROM read work in D3hot and leave it there. */
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "reset"), "1", 1), 0);
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "rom"), "1", 1), 0);
    char *s = NULL;
    size_t n;
    assert_int_equal(gw_hostops_read(W.ops, DEV(GPU, "rom"), 1 << 20, &s, &n), 0);
    free(s);
    assert_power("D3hot\n", "suspended\n", "auto\n");
    /* Unbinding from vfio-pci resumes it; with "on", binding does not suspend. */
    assert_int_equal(gw_hostops_write(W.ops, unbind, GPU, 12), 0);
    assert_power("D0\n", "active\n", "auto\n");
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "power/control"), "on", 2), 0);
    assert_int_equal(gw_hostops_write(W.ops, bind, GPU, 12), 0);
    assert_power("D0\n", "active\n", "on\n");
    /* Only devices of the tree have them. */
    assert_true(gw_hostops_exists(W.ops, DEV("0000:0f:00.0", "power/control")) < 0);
    /* Nothing reached the tree. */
    char p[256];
    snprintf(p, sizeof p, "%s/sys/bus/pci/devices/" GPU "/power", W.host.root);
    assert_int_equal(access(p, F_OK), -1);
}

/* A ROM of `n` bytes: images of the given lengths (512-byte units), the
 * last flagged when `flag_last`; zeros after. */
static unsigned char *rom_of(size_t n, const unsigned *units, size_t k, bool flag_last)
{
    unsigned char *r = calloc(1, n);
    size_t at = 0;
    for (size_t i = 0; i < k; i++) {
        r[at] = 0x55;
        r[at + 1] = 0xaa;
        r[at + 0x18] = 0x1c;
        memcpy(r + at + 0x1c, "PCIR", 4);
        r[at + 0x1c + 0x10] = (unsigned char)units[i];
        r[at + 0x1c + 0x11] = (unsigned char)(units[i] >> 8);
        r[at + 0x1c + 0x15] = flag_last && i == k - 1 ? 0x80 : 0;
        at += units[i] * 512u;
    }
    return r;
}

static size_t rom_read_len(const unsigned char *rom, size_t n, int *err)
{
    gw_sim_set(W.sim, DEV(GPU, "rom"), rom, n);
    char *s = NULL;
    size_t len = 0;
    *err = gw_hostops_read(W.ops, DEV(GPU, "rom"), 1 << 20, &s, &len);
    free(s);
    return *err ? 0 : len;
}

static void sim_rom_reads_follow_pci_get_rom_size(void **state)
{
    (void)state;
    world_open();
    assert_int_equal(gw_hostops_write(W.ops, DEV(GPU, "rom"), "1", 1), 0);
    int err;
    /* Two images (x86 + EFI), the second flagged last: their length, not
     * the window's. */
    unsigned two[] = { 2, 3 };
    unsigned char *r = rom_of(65536, two, 2, true);
    assert_int_equal(rom_read_len(r, 65536, &err), 5 * 512);
    free(r);
    /* The first not flagged last and no image after it: the first only. */
    r = rom_of(65536, two, 1, false);
    assert_int_equal(rom_read_len(r, 65536, &err), 2 * 512);
    free(r);
    /* An image longer than the window: the window. */
    unsigned big[] = { 256 };
    r = rom_of(65536, big, 1, true);
    assert_int_equal(rom_read_len(r, 65536, &err), 65536);
    free(r);
    /* No 55 AA, or no PCIR structure: EIO, as pci_read_rom() gives it. */
    r = calloc(1, 4096);
    assert_int_equal(rom_read_len(r, 4096, &err), 0);
    assert_int_equal(err, -EIO);
    assert_contains(gw_error_message(), "invalid ROM header signature: expecting 0xaa55, got 0x0000 (kernel: EIO)");
    r[0] = 0x55;
    r[1] = 0xaa;
    assert_int_equal(rom_read_len(r, 4096, &err), 0);
    assert_int_equal(err, -EIO);
    assert_contains(gw_error_message(), "invalid ROM data signature");
    free(r);
}

static void sim_proc_shows_holders_like_the_kernel(void **state)
{
    (void)state;
    world_open();
    char **names = NULL;
    size_t n = 0;
    /* No holder, no proc in the tree: no proc at all. */
    assert_int_equal(gw_hostops_list(W.ops, "proc", &names, &n), -ENOENT);
    gw_sim_hold_group(W.sim, "10", 4242, "qemu-system-x86");
    gw_sim_hold_group(W.sim, "11", 4242, "qemu-system-x86");
    assert_int_equal(gw_hostops_list(W.ops, "proc", &names, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "4242");
    gw_hostops_list_free(names, n);
    assert_int_equal(gw_hostops_list(W.ops, "proc/4242/fd", &names, &n), 0);
    assert_int_equal(n, 2);
    char *t = NULL;
    char p[64];
    snprintf(p, sizeof p, "proc/4242/fd/%s", names[1]);
    assert_int_equal(gw_hostops_readlink(W.ops, p, &t), 0);
    assert_string_equal(t, "/dev/vfio/11");
    free(t);
    gw_hostops_list_free(names, n);
    assert_reads("proc/4242/comm", "qemu-system-x86\n");
    /* The group node: one open at a time. */
    void *h = NULL;
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/10", &h), -EBUSY);
    gw_sim_release_group(W.sim, "10", 4242);
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/10", &h), 0);
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/10", &(void *){ NULL }), -EBUSY);
    gw_hostops_release(W.ops, h);
    /* No such group, or none of its functions on vfio-pci: no node. */
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/99", &h), -ENOENT);
    assert_int_equal(gw_hostops_write(W.ops, "sys/bus/pci/drivers/vfio-pci/unbind", GPU, 12), 0);
    assert_int_equal(gw_hostops_write(W.ops, "sys/bus/pci/drivers/vfio-pci/unbind", HDA, 12), 0);
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/10", &h), -ENOENT);
}

#define T(f) cmocka_unit_test_setup_teardown(f, world_setup1, world_teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    gw_log_set_level(GW_LOG_ERR);
    const struct CMUnitTest tests[] = {
        T(passing_cleanup_writes_exactly_the_expected_sequence),
        T(in_use_fails_and_writes_nothing),
        T(attachment_error_counts_as_in_use),
        T(vfio_holder_is_named_and_nothing_is_written),
        T(vfio_holder_appearing_during_bind_stops_the_reset),
        T(hot_plug_after_health_is_refused_by_the_kernel),
        T(vfio_holder_racing_the_bind_is_stopped_by_the_kernel),
        T(the_group_is_held_from_bind_to_the_end_of_the_run),
        T(bind_suspends_and_the_cleanup_holds_d0_then_restores),
        T(power_control_already_on_is_left_alone),
        T(bind_rebinds_host_drivers_through_driver_override),
        T(group_member_on_host_driver_not_managed_fails_bind),
        T(foreign_device_in_group_fails_bind),
        T(probe_binding_a_host_driver_fails_bind),
        T(device_off_the_bus_before_cleanup_fails_bind),
        T(unmanaged_gpu_is_never_written),
        T(default_rule_manages_vfio_bound_gpu_only),
        T(reset_write_fails),
        T(no_reset_method_fails_unless_policy_allows),
        T(reset_method_without_flr_is_said),
        T(reset_refused_when_a_vm_appears_meanwhile),
        T(all_ones_after_reset_fails_health),
        T(narrower_link_after_reset_fails_health),
        T(idle_slower_link_passes),
        T(link_capped_by_partner_passes_but_not_below_first_pin),
        T(aer_fatal_increase_fails_health),
        T(aer_nonfatal_increase_on_upstream_port_fails_health),
        T(aer_counter_below_baseline_is_a_new_baseline),
        T(bar_register_that_lost_its_address_fails_health),
        T(ats_enabled_fails_isolation),
        T(switch_port_lacking_acs_fails_isolation),
        T(acs_redirect_disabled_fails_isolation),
        T(acs_flag_not_implemented_counts_as_enabled),
        T(group_member_rebound_to_host_driver_fails_isolation),
        T(no_iommu_group_fails_isolation),
        T(rom_hash_changed_vs_pin_fails_firmware),
        T(rom_not_in_allowlist_fails_firmware),
        T(allowlist_file_loads_and_reports_bad_lines),
        T(no_rom_skips_firmware),
        T(rom_without_a_valid_image_fails_firmware_with_eio),
        T(rom_read_error_fails_and_still_disables),
        T(hooks_run_in_order_with_device_and_evidence),
        T(hook_exit_1_fails_hooks),
        T(hook_hanging_past_timeout_is_killed_with_its_group),
        T(step_timeout_abandons_a_blocked_write),
        T(result_json_round_trip),
        T(bad_arguments_are_refused),
        T(sim_models_the_kernel_attributes),
        T(sim_models_runtime_power_like_linux_6_1),
        T(sim_rom_reads_follow_pci_get_rom_size),
        T(sim_proc_shows_holders_like_the_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
