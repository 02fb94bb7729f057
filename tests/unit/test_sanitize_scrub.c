/* SPDX-License-Identifier: Apache-2.0 */
/* Issue 13 on the simulated backend: the scrub step (a BAR zeroed through
 * VFIO and read back, the verdict from the read-back), the reset step's
 * escalation to a secondary bus reset through VFIO hot reset and its refusal
 * when the bus holds a function that is not ours, the per-model policy, and
 * the simulated kernel's VFIO model itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sanitize_world.h"

#define MIB ((size_t)1 << 20)

/* The shared world, and a GPU model (10de:2230) the scrub tests configure. */
static int setup(void **state)
{
    world_setup1(state);
    W.model = (gw_model_policy)GW_MODEL_POLICY_INIT;
    W.model.id = "10de:2230";
    return 0;
}

/* The GPU model scrubs BAR `bar` of function `fn` (-1: the GPU's own). */
static void scrub_model(int fn, unsigned bar, double fraction)
{
    W.model.scrub = GW_SCRUB_BAR;
    W.model.scrub_function = fn;
    W.model.scrub_bar = bar;
    W.model.scrub_verify_fraction = fraction;
    W.pol.models = &W.model;
    W.pol.n_models = 1;
}

#define assert_lacks(hay, needle)                                                          \
    do {                                                                                   \
        const char *h_ = (hay);                                                            \
        if (h_ && strstr(h_, (needle)))                                                    \
            fail_msg("'%s' unexpectedly in '%s'", (needle), h_);                           \
    } while (0)

static void assert_fails_at(gw_step_id id, const char *text)
{
    if (gw_sanitize_result_verdict(W.res) != GW_VERDICT_PASS) {
        assert_int_equal(gw_sanitize_result_failed_step(W.res), id);
        assert_contains(gw_sanitize_result_reason(W.res), text);
        return;
    }
    fail_msg("expected a failure at %s, but the clean-up passed", gw_step_name(id));
}

static void assert_passes(void)
{
    if (gw_sanitize_result_verdict(W.res) != GW_VERDICT_PASS)
        fail_msg("expected a pass: %s", gw_sanitize_result_reason(W.res));
}

/* Every byte of the BAR is `v`. */
static void assert_bar_all(const char *addr, unsigned bar, uint8_t v)
{
    size_t size = 0;
    const uint8_t *p = gw_sim_bar_data(W.sim, addr, bar, &size);
    assert_non_null(p);
    for (size_t i = 0; i < size; i++)
        if (p[i] != v)
            fail_msg("BAR %u of %s: byte 0x%zx is 0x%02x, not 0x%02x", bar, addr, i, p[i], v);
}

/* ---- scrub ------------------------------------------------------------------ */

static void scrub_zeroes_the_bar_and_reads_it_back(void **state)
{
    (void)state;
    world_open();
    scrub_model(-1, 1, 0);
    gw_sim_bar_set(W.sim, GPU, 1, MIB, 0xa5);
    run();
    assert_passes();
    assert_bar_all(GPU, 1, 0);
    const char *ev = step(GW_STEP_SCRUB)->evidence;
    assert_contains(ev, "model 10de:2230: scrub bar: BAR 1 of 0000:03:00.0, verify fraction 1");
    assert_contains(ev, "/dev/vfio/10 held since the bind step: no VM can take the group during the scrub");
    assert_contains(ev, "zeroed BAR 1 of 0000:03:00.0 (1048576 bytes, mmap) in ");
    assert_contains(ev, "read back 1048576 bytes (every byte, mmap) in ");
    assert_contains(ev, "MB/s: all zero");
    /* Zeroed through one mapping, verified through a fresh one (the second
     * open is health's BAR0 read). */
    assert_int_equal(gw_sim_vfio_count(W.sim, "open " GPU), 2);
    assert_int_equal(gw_sim_vfio_count(W.sim, "map " GPU " 1"), 2);
    assert_int_equal(gw_sim_vfio_count(W.sim, "unmap " GPU " 1"), 2);
    assert_int_equal(gw_sim_vfio_count(W.sim, "close " GPU), 2);
    /* It ran after reset and before health. */
    assert_int_equal(gw_sanitize_result_step(W.res, 2)->step, GW_STEP_RESET);
    assert_int_equal(gw_sanitize_result_step(W.res, 3)->step, GW_STEP_SCRUB);
    assert_int_equal(gw_sanitize_result_step(W.res, 4)->step, GW_STEP_HEALTH);
}

/* Without the scrub the tenant's bytes are still there after a passing
 * clean-up: neither the reset nor anything else clears them. This is what
 * makes the scrub step necessary, and the test above fails without it. */
static void without_a_scrub_the_memory_survives_the_cleanup(void **state)
{
    (void)state;
    world_open();
    gw_sim_bar_set(W.sim, GPU, 1, MIB, 0xa5);
    run();
    assert_passes();
    assert_string_equal(step(GW_STEP_SCRUB)->evidence, "no scrub configured for 10de:2230");
    assert_int_equal(step(GW_STEP_SCRUB)->verdict, GW_VERDICT_SKIP);
    assert_bar_all(GPU, 1, 0xa5);
    /* Nothing mapped or written: only health's BAR0 read opened it. */
    assert_int_equal(gw_sim_vfio_count(W.sim, "map "), 0);
    assert_int_equal(gw_sim_vfio_count(W.sim, "write "), 0);
    assert_int_equal(gw_sim_vfio_count(W.sim, "open " GPU), 1);
}

static void nonzero_byte_behind_the_scrub_fails_with_its_offset(void **state)
{
    (void)state;
    world_open();
    scrub_model(-1, 1, 0);
    gw_sim_bar_set(W.sim, GPU, 1, MIB, 0xa5);
    gw_sim_bar_inject(W.sim, GPU, 1, 0x12345, 0x5a);
    run();
    assert_fails_at(GW_STEP_SCRUB, "byte at offset 0x12345 of BAR 1 of 0000:03:00.0 is not zero after the scrub "
                                   "(reads 0x5a): memory not cleared");
    /* The step failed on what it read, after the writes had all returned. */
    assert_contains(step(GW_STEP_SCRUB)->evidence, "zeroed BAR 1 of 0000:03:00.0");
    assert_int_equal(gw_sim_vfio_count(W.sim, "close " GPU), 1);
}

static void scrub_of_another_function_through_pwrite_and_pread(void **state)
{
    (void)state;
    world_open();
    scrub_model(1, 2, 0);
    gw_sim_bar_set(W.sim, HDA, 2, 3 * MIB + 4096, 0x11);
    gw_sim_bar_flags(W.sim, HDA, 2, GW_VFIO_REGION_READ | GW_VFIO_REGION_WRITE);
    run();
    assert_passes();
    assert_bar_all(HDA, 2, 0);
    const char *ev = step(GW_STEP_SCRUB)->evidence;
    assert_contains(ev, "zeroed BAR 2 of 0000:03:00.1 (3149824 bytes, pwrite)");
    assert_contains(ev, "read back 3149824 bytes (every byte, pread)");
    assert_int_equal(gw_sim_vfio_count(W.sim, "open " HDA), 1);
    assert_int_equal(gw_sim_vfio_count(W.sim, "map "), 0);
}

static void injected_byte_is_found_through_pwrite_too(void **state)
{
    (void)state;
    world_open();
    scrub_model(1, 2, 0);
    gw_sim_bar_set(W.sim, HDA, 2, MIB, 0x11);
    gw_sim_bar_flags(W.sim, HDA, 2, GW_VFIO_REGION_READ | GW_VFIO_REGION_WRITE);
    gw_sim_bar_inject(W.sim, HDA, 2, MIB - 1, 0x01);
    run();
    assert_fails_at(GW_STEP_SCRUB, "byte at offset 0xfffff of BAR 2 of 0000:03:00.1 is not zero after the scrub "
                                   "(reads 0x01)");
}

static void a_fraction_reads_an_even_spread_of_pages(void **state)
{
    (void)state;
    world_open();
    scrub_model(-1, 1, 0.25);
    gw_sim_bar_set(W.sim, GPU, 1, MIB, 0xa5);
    /* Page 1 is not among the 64 of 256 read back (0, 4, 8, ... 255): a
     * fraction proves less, and the evidence says how much was read. */
    gw_sim_bar_inject(W.sim, GPU, 1, 4096 + 7, 0x77);
    run();
    assert_passes();
    assert_contains(step(GW_STEP_SCRUB)->evidence, "read back 262144 bytes (an even spread of pages, mmap)");

    /* The last page is always read. */
    gw_sim_bar_set(W.sim, GPU, 1, MIB, 0xa5);
    gw_sim_bar_inject(W.sim, GPU, 1, MIB - 4096, 0x42);
    run();
    assert_fails_at(GW_STEP_SCRUB, "byte at offset 0xff000 of BAR 1 of 0000:03:00.0 is not zero");
}

static void bar_that_cannot_be_read_back_fails(void **state)
{
    (void)state;
    world_open();
    scrub_model(-1, 1, 0);
    gw_sim_bar_set(W.sim, GPU, 1, MIB, 0xa5);
    gw_sim_bar_flags(W.sim, GPU, 1, GW_VFIO_REGION_WRITE);
    run();
    /* The zeros were written; without reading them back nothing is proved. */
    assert_fails_at(GW_STEP_SCRUB, "cannot read BAR 1 of 0000:03:00.0 back (BAR 1 of 0000:03:00.0 can be neither "
                                   "mapped nor read): the scrub is not verified");
    assert_bar_all(GPU, 1, 0);
}

static void scrub_without_vfio_or_memory_fails(void **state)
{
    (void)state;
    world_open();
    scrub_model(-1, 1, 0);
    /* No BAR memory where the model says: the region has size 0. */
    run();
    assert_fails_at(GW_STEP_SCRUB, "BAR 1 of 0000:03:00.0 is not implemented (size 0)");

    gw_sim_bar_set(W.sim, GPU, 1, MIB, 0xa5);
    gw_sim_vfio_fail_open(W.sim, -ENOENT);
    run();
    assert_fails_at(GW_STEP_SCRUB, "cannot open 0000:03:00.0 through VFIO: VFIO open 0000:03:00.0: No such file or "
                                   "directory (injected): not scrubbed");
    assert_bar_all(GPU, 1, 0xa5);
}

static void scrub_function_missing_or_not_managed_fails(void **state)
{
    (void)state;
    world_open();
    scrub_model(2, 0, 0);
    run();
    assert_fails_at(GW_STEP_SCRUB, "model 10de:2230: scrub function 0000:03:00.2 does not exist: not scrubbed");

    /* Only the GPU's address is managed: its HDA function stays as it is
     * (already on vfio-pci), and its memory is not written. */
    static const char *const only[] = { GPU };
    W.pol.manage_vendors = NULL;
    W.pol.n_manage_vendors = 0;
    W.pol.manage_addresses = only;
    W.pol.n_manage_addresses = 1;
    scrub_model(1, 2, 0);
    gw_sim_bar_set(W.sim, HDA, 2, MIB, 0x11);
    run();
    assert_fails_at(GW_STEP_SCRUB, "the scrub writes only to managed functions: not scrubbed");
    assert_bar_all(HDA, 2, 0x11);
}

static void scrub_keeps_a_hot_plug_out_of_its_group(void **state)
{
    (void)state;
    world_open();
    scrub_model(-1, 1, 0);
    gw_sim_bar_set(W.sim, GPU, 1, MIB, 0xa5);
    /* A QEMU tries to open the group right after the reset: the run holds
     * it from bind on, so the kernel refuses QEMU and the scrub maps a BAR
     * no one else can. */
    gw_sim_after_write_hold(W.sim, DEV(GPU, "reset"), "10", 555, "qemu-system-x86");
    run();
    assert_passes();
    assert_int_equal(gw_sim_refused_opens(W.sim, "10"), 1);
    assert_false(gw_sanitize_result_in_use(W.res));
    assert_bar_all(GPU, 1, 0);
}

/* ---- reset escalation ------------------------------------------------------- */

static void no_flr(void)
{
    fx_dev *g = fx_find(&W.host, GPU);
    g->flr = false;
    snprintf(g->reset_method, sizeof g->reset_method, "pm bus");
}

static void bus_reset_when_there_is_no_flr(void **state)
{
    (void)state;
    no_flr();
    world_open();
    run();
    assert_passes();
    const char *ev = step(GW_STEP_RESET)->evidence;
    assert_contains(ev, "reset_method 'pm bus': no FLR offered, kernel uses pm");
    assert_contains(ev, "no FLR: a secondary bus reset instead");
    assert_contains(ev, "reset by a secondary bus reset through VFIO (hot reset of the bus below 0000:02:00.0, "
                        "IOMMU groups 10): 0000:03:00.0, 0000:03:00.1");
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset " GPU " groups 10"), 1);
    assert_int_equal(gw_sim_vfio_count(W.sim, "close " GPU), 2);     /* the reset's, health's BAR0 read's */
}

/* A device alone on its bus whose first method is `bus`: the kernel's own
 * reset is already a secondary bus reset, and no VFIO is needed. */
static void kernel_bus_method_is_used_as_it_is(void **state)
{
    (void)state;
    no_flr();
    snprintf(fx_find(&W.host, GPU)->reset_method, sizeof W.host.dev[0].reset_method, "bus");
    world_open();
    run();
    assert_passes();
    assert_contains(step(GW_STEP_RESET)->evidence, "reset by a secondary bus reset (the kernel's reset, method bus)");
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 1);
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset "), 0);
}

static void flr_bus_does_both(void **state)
{
    (void)state;
    world_open();
    W.model.reset = GW_RESET_FLR_BUS;
    W.pol.models = &W.model;
    W.pol.n_models = 1;
    run();
    assert_passes();
    const char *ev = step(GW_STEP_RESET)->evidence;
    assert_contains(ev, "model 10de:2230: reset flr+bus");
    assert_contains(ev, "reset by FLR (the kernel's reset)");
    assert_contains(ev, "reset by a secondary bus reset through VFIO");
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 1);
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset " GPU), 1);
    /* FLR first, then the bus reset: the log of writes has the FLR before. */
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset " GPU " groups 10 refused"), 0);
}

static void model_bus_skips_the_flr_and_model_flr_needs_one(void **state)
{
    (void)state;
    world_open();
    W.model.reset = GW_RESET_BUS;
    W.pol.models = &W.model;
    W.pol.n_models = 1;
    run();
    assert_passes();
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset "), 1);
    gw_hostops_unref(W.ops);
    fx_remove(&W.host);

    no_flr();
    world_open();
    W.model.reset = GW_RESET_FLR;
    run();
    assert_fails_at(GW_STEP_RESET, "model 10de:2230 asks for flr but reset_method 'pm bus' offers none: not reset");
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
}

/* A function that is not ours on the GPU's bus: the bus reset would reset it
 * too, so it is refused, naming it, and nothing is reset. */
static void bus_reset_refused_for_a_function_not_ours(void **state)
{
    (void)state;
    no_flr();
    fx_dev *snd = fx_add(&W.host, "0000:03:01.0", "0000:02:00.0");
    snd->vendor = 0x8086;
    snd->device = 0x293e;
    snd->class_base = 0x04;
    snd->class_sub = 0x03;
    snprintf(snd->driver, sizeof snd->driver, "snd_hda_intel");
    snprintf(snd->group, sizeof snd->group, "30");
    world_open();
    run();
    assert_fails_at(GW_STEP_RESET, "bus reset would also reset 0000:03:01.0 (bound to snd_hda_intel, not "
                                   "managed): refused");
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset "), 0);
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 0);
    assert_false(gw_sanitize_result_in_use(W.res));
}

/* The lab's gpu1 + hda1: the operator put the unmanaged function on
 * vfio-pci, so bind leaves it be; a bus reset would still reset it. */
static void bus_reset_refused_for_an_unmanaged_slot_function_on_vfio(void **state)
{
    (void)state;
    no_flr();
    fx_dev *hda = fx_find(&W.host, HDA);
    hda->vendor = 0x8086;
    world_open();
    run();
    assert_fails_at(GW_STEP_RESET, "bus reset would also reset 0000:03:00.1 (bound to vfio-pci, not managed): "
                                   "refused");
    assert_contains(step(GW_STEP_BIND)->evidence, "0000:03:00.1");
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset "), 0);
}

/* Another managed slot on the same bus: checked for use, its group held and
 * passed to the kernel with the GPU's. */
static void bus_reset_holds_the_other_slots_groups(void **state)
{
    (void)state;
    no_flr();
    fx_dev *other = fx_add(&W.host, "0000:03:01.0", "0000:02:00.0");
    *other = *fx_find(&W.host, GPU);
    snprintf(other->bdf, sizeof other->bdf, "0000:03:01.0");
    other->multifunction = false;
    snprintf(other->group, sizeof other->group, "30");
    world_open();
    run();
    assert_passes();
    assert_contains(step(GW_STEP_RESET)->evidence, "holding /dev/vfio/30 open across the bus reset");
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset " GPU " groups 10,30"), 1);

    /* A VM on that other slot: no bus reset. */
    gw_sim_hold_group(W.sim, "30", 999, "qemu-system-x86");
    run();
    assert_fails_at(GW_STEP_RESET, "0000:03:01.0: IOMMU group 30 (/dev/vfio/30) is open by pid 999");
    assert_true(gw_sanitize_result_in_use(W.res));
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset "), 1);
    gw_sim_release_group(W.sim, "30", 999);

    /* The other slot's own clean-up holds its group (this process, as in
     * the daemon, where clean-ups of two groups run side by side): the
     * bus reset would reset a device in the middle of its clean-up. In use,
     * and the evidence says who rather than naming the daemon as a VM. */
    gw_sim_race_hold(W.sim, "30", (int)getpid(), "gpuwardend");
    run();
    assert_fails_at(GW_STEP_RESET, "0000:03:01.0: IOMMU group 30 (/dev/vfio/30) is open by pid ");
    assert_contains(step(GW_STEP_RESET)->evidence, "(gpuwardend): in use (the kernel refused our open: EBUSY; that "
                                                   "is this process: the clean-up of another device in its reach, "
                                                   "or a fence, holds it)");
    assert_true(gw_sanitize_result_in_use(W.res));
    assert_int_equal(gw_sim_vfio_count(W.sim, "hot_reset "), 1);
}

/* On the root bus there is no bridge to reset: without FLR the kernel's own
 * reset is used (said); a model that insists on bus fails. */
static void no_bus_reset_on_the_root_bus(void **state)
{
    (void)state;
    memset(&W.host, 0, sizeof W.host);
    fx_dev *g = fx_add(&W.host, "0000:00:05.0", NULL);
    *g = *(fx_dev[]){ { .vendor = 0x10de, .device = 0x2230, .class_base = 0x03, .port_type = 0, .acs_ctrl = -1,
                        .ats_ctrl = -1, .aer_fatal = -1, .aer_nonfatal = -1, .reset_attr = true } };
    snprintf(g->bdf, sizeof g->bdf, "0000:00:05.0");
    snprintf(g->driver, sizeof g->driver, "vfio-pci");
    snprintf(g->group, sizeof g->group, "40");
    snprintf(g->reset_method, sizeof g->reset_method, "pm");
    world_open();
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = "0000:00:05.0";
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), 0);
    const char *ev = step(GW_STEP_RESET)->evidence;
    assert_int_equal(step(GW_STEP_RESET)->verdict, GW_VERDICT_PASS);
    assert_contains(ev, "no bus reset possible (VFIO hot reset info of 0000:00:05.0: No such device (on the root "
                        "bus: no bus reset)): the kernel's reset instead");
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 1);

    W.model.reset = GW_RESET_BUS;
    W.pol.models = &W.model;
    W.pol.n_models = 1;
    gw_sanitize_result_free(W.res);
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), 0);
    assert_fails_at(GW_STEP_RESET, "no bus reset possible: VFIO hot reset info of 0000:00:05.0");
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 1);
}

/* ---- the simulated kernel's VFIO --------------------------------------------- */

static void sim_vfio_follows_the_kernel(void **state)
{
    (void)state;
    fx_dev *other = fx_add(&W.host, "0000:03:01.0", "0000:02:00.0");
    *other = *fx_find(&W.host, GPU);
    snprintf(other->bdf, sizeof other->bdf, "0000:03:01.0");
    snprintf(other->group, sizeof other->group, "30");
    world_open();
    void *g10 = NULL, *g30 = NULL, *dev = NULL, *busy = NULL;
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/10", &g10), 0);
    /* One open of a group at a time. */
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/10", &busy), -EBUSY);
    /* Not in this group. */
    assert_int_equal(gw_hostops_vfio_open(W.ops, g10, "0000:03:01.0", &dev), -ENODEV);
    assert_int_equal(gw_hostops_vfio_open(W.ops, g10, GPU, &dev), 0);

    gw_vfio_reset_dep *deps = NULL;
    size_t n = 0;
    assert_int_equal(gw_hostops_vfio_hot_reset_info(W.ops, dev, &deps, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(deps[0].address, GPU);
    assert_int_equal(deps[0].group, 10);
    assert_string_equal(deps[2].address, "0000:03:01.0");
    assert_int_equal(deps[2].group, 30);
    free(deps);
    /* Every affected group must come with the reset. */
    void *only10[] = { g10 };
    assert_int_equal(gw_hostops_vfio_hot_reset(W.ops, dev, only10, 1), -EINVAL);
    assert_contains(gw_error_message(), "IOMMU group 30 of 0000:03:01.0 not passed");
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/30", &g30), 0);
    void *both[] = { g10, g30 };
    assert_int_equal(gw_hostops_vfio_hot_reset(W.ops, dev, both, 2), 0);
    /* A function on the bus off vfio-pci makes it impossible. */
    gw_sim_after_write_bind(W.sim, DEV("0000:03:01.0", "reset"), NULL, "0000:03:01.0", "nouveau");
    assert_int_equal(gw_hostops_write(W.ops, DEV("0000:03:01.0", "reset"), "1", 1), 0);
    assert_int_equal(gw_hostops_vfio_hot_reset(W.ops, dev, both, 2), -EINVAL);
    assert_contains(gw_error_message(), "0000:03:01.0 on the bus is not on vfio-pci");
    gw_hostops_vfio_close(W.ops, dev);
    /* ... and its group not viable: no device of it for userspace. */
    assert_int_equal(gw_hostops_vfio_open(W.ops, g30, "0000:03:01.0", &dev), -EPERM);
    assert_contains(gw_error_message(), "IOMMU group 30 not viable: 0000:03:01.0 is bound to nouveau");
    gw_hostops_release(W.ops, g30);
    gw_hostops_release(W.ops, g10);

    /* Regions: the BAR a test gave, size 0 for the others. */
    gw_sim_bar_set(W.sim, GPU, 1, 8192, 0x33);
    assert_int_equal(gw_hostops_hold(W.ops, "dev/vfio/10", &g10), 0);
    assert_int_equal(gw_hostops_vfio_open(W.ops, g10, GPU, &dev), 0);
    gw_vfio_region r;
    assert_int_equal(gw_hostops_vfio_region(W.ops, dev, 1, &r), 0);
    assert_int_equal(r.size, 8192);
    assert_int_equal(r.flags, GW_VFIO_REGION_READ | GW_VFIO_REGION_WRITE | GW_VFIO_REGION_MMAP);
    assert_int_equal(gw_hostops_vfio_region(W.ops, dev, 0, &r), 0);
    assert_int_equal(r.size, 0);
    uint8_t buf[4];
    assert_int_equal(gw_hostops_vfio_read(W.ops, dev, 1, 8190, buf, 2), 0);
    assert_int_equal(buf[0], 0x33);
    assert_int_equal(gw_hostops_vfio_read(W.ops, dev, 1, 8190, buf, 4), -EINVAL);
    gw_hostops_vfio_close(W.ops, dev);
    gw_hostops_release(W.ops, g10);
}

/* ---- policy -------------------------------------------------------------------- */

static void model_settings_parse_and_refuse(void **state)
{
    (void)state;
    gw_model_policy m = GW_MODEL_POLICY_INIT;
    assert_int_equal(gw_model_policy_set(&m, "reset", "flr+bus"), 0);
    assert_int_equal(m.reset, GW_RESET_FLR_BUS);
    assert_int_equal(gw_model_policy_set(&m, "scrub", "bar"), 0);
    assert_int_equal(gw_model_policy_set(&m, "scrub_function", "1"), 0);
    assert_int_equal(gw_model_policy_set(&m, "scrub_bar", "2"), 0);
    assert_int_equal(gw_model_policy_set(&m, "scrub_verify_fraction", "0.5"), 0);
    assert_int_equal(m.scrub, GW_SCRUB_BAR);
    assert_int_equal(m.scrub_function, 1);
    assert_int_equal(m.scrub_bar, 2);
    assert_true(m.scrub_verify_fraction == 0.5);

    static const struct { const char *key, *value, *why; int err; } bad[] = {
        { "reset", "pm", "reset: 'pm' is not auto, flr, bus or flr+bus", -EINVAL },
        { "scrub", "memset", "scrub: 'memset' is not none, bar or driver", -EINVAL },
        { "scrub_driver", "../x", "scrub_driver: '../x' is not a kernel driver name", -EINVAL },
        { "scrub_driver", "", "scrub_driver: '' is not a kernel driver name", -EINVAL },
        { "scrub_driver_ready", "/sys/x", "scrub_driver_ready: '/sys/x' is not a relative path", -EINVAL },
        { "scrub_driver_ready", "a/../../b", "scrub_driver_ready: 'a/../../b' is not a relative path", -EINVAL },
        { "scrub_driver_ready_timeout_s", "0", "scrub_driver_ready_timeout_s: '0' is not a number of seconds", -EINVAL },
        { "scrub_command_timeout_s", "5s", "scrub_command_timeout_s: '5s' is not a number of seconds", -EINVAL },
        { "scrub_commands", "", "scrub_commands: command 1 is empty", -EINVAL },
        { "scrub_commands", "/bin/a && && /bin/b", "scrub_commands: command 2 is empty", -EINVAL },
        { "scrub_commands", "/bin/a &&", "scrub_commands: command 2 is empty", -EINVAL },
        { "scrub_commands", "/bin/a && b x", "scrub_commands: command 2: 'b' is not an absolute path", -EINVAL },
        { "scrub_commands", "/bin/a\n", "scrub_commands: control character 0x0a", -EINVAL },
        { "scrub_function", "8", "scrub_function: '8' is not a number from 0 to 7", -EINVAL },
        { "scrub_function", "-1", "scrub_function: '-1' is not a number from 0 to 7", -EINVAL },
        { "scrub_bar", "6", "scrub_bar: '6' is not a number from 0 to 5", -EINVAL },
        { "scrub_bar", "2x", "scrub_bar: '2x' is not a number", -EINVAL },
        { "scrub_verify_fraction", "0", "'0' is not a number with 0 < f <= 1", -EINVAL },
        { "scrub_verify_fraction", "1.5", "'1.5' is not a number with 0 < f <= 1", -EINVAL },
        { "scrub_verify_fraction", "nan", "'nan' is not a number with 0 < f <= 1", -EINVAL },
        { "scrub_size", "1", "unknown model setting 'scrub_size'", -EINVAL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_model_policy before = m;
        assert_int_equal(gw_model_policy_set(&m, bad[i].key, bad[i].value), bad[i].err);
        assert_contains(gw_error_message(), bad[i].why);
        assert_memory_equal(&m, &before, sizeof m);
    }
}

static void policy_models_are_checked(void **state)
{
    (void)state;
    world_open();
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    gw_model_policy two[2] = { GW_MODEL_POLICY_INIT, GW_MODEL_POLICY_INIT };
    two[0].id = two[1].id = "10de:2230";
    W.pol.models = two;
    W.pol.n_models = 2;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    assert_contains(gw_error_message(), "model 10de:2230 is listed twice");
    two[1].id = "10DE:2231";
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    assert_contains(gw_error_message(), "model 1: id '10DE:2231' is not vvvv:dddd in lower-case hex");
    two[1].id = "10de:2231";
    two[1].scrub = GW_SCRUB_DRIVER;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    assert_contains(gw_error_message(), "model 10de:2231: scrub_driver: required with scrub = driver");
    two[1].scrub_driver = "nvidia";
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    assert_contains(gw_error_message(), "model 10de:2231: scrub_commands: required with scrub = driver");
    two[1].scrub_driver = "vfio-pci";
    two[1].scrub_commands = "/bin/true";
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    assert_contains(gw_error_message(), "scrub_driver: vfio-pci is where the device already is");
    /* Five commands at the default 120 s do not fit in the 600 s step. */
    two[1].scrub_driver = "nvidia";
    two[1].scrub_commands = "/bin/a && /bin/b && /bin/c && /bin/d && /bin/e";
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    assert_contains(gw_error_message(), "the driver scrub may take 690 s (ready timeout 30 s + 5 commands x 120 s "
                                        "+ 60 s for the binds), more than the scrub step's timeout of 600 s");
    assert_int_equal(gw_model_policy_check(&two[1], 0), -EINVAL);
    assert_int_equal(gw_model_policy_check(&two[1], 700000), 0);
    two[1].scrub_command_timeout_ms = 100000;
    assert_int_equal(gw_model_policy_check(&two[1], 0), 0);
    two[1].scrub = GW_SCRUB_BAR;
    two[1].scrub_verify_fraction = 2;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    two[1].scrub_verify_fraction = 0;
    two[1].scrub_function = 9;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), -EINVAL);
    two[1].scrub_function = -1;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &W.pol, &req), 0);
    assert_non_null(W.res);
}

/* The policy struct as version-1 callers were compiled: it ends at
 * n_manage_addresses, so nothing after it may be read. */
static void version_1_policy_still_works(void **state)
{
    (void)state;
    world_open();
    gw_sim_bar_set(W.sim, GPU, 1, 4096, 0xa5);
    size_t v1 = offsetof(gw_sanitize_policy, scrub_timeout_ms);
    gw_sanitize_policy tmp = W.pol;
    tmp.version = 1;
    tmp.timeout_ms[GW_STEP_RESET] = 5000;
    unsigned char *old = malloc(v1);     /* exactly the old size: reading past it is caught */
    memcpy(old, &tmp, v1);
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, (const gw_sanitize_policy *)(void *)old, &req), 0);
    free(old);
    assert_passes();
    assert_string_equal(step(GW_STEP_SCRUB)->evidence, "no scrub configured for 10de:2230");
    assert_int_equal(gw_step_timeout_ms(&W.pol, GW_STEP_SCRUB), 600000);
    W.pol.scrub_timeout_ms = 1234;
    assert_int_equal(gw_step_timeout_ms(&W.pol, GW_STEP_SCRUB), 1234);
    gw_sanitize_policy bad = W.pol;
    bad.version = GW_SANITIZE_POLICY_VERSION + 1;
    gw_sanitize_result_free(W.res);
    W.res = NULL;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &bad, &req), -EINVAL);
    assert_contains(gw_error_message(), "version 5, expected 1 to 4");
}

/* ---- scrub driver ----------------------------------------------------------- */

static char drv_dir[64];

/* A loaded host driver in the simulated kernel: its directory in
 * /sys/bus/pci/drivers (the simulation binds any driver that has one). */
static void host_driver(const char *name)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/sys/bus/pci/drivers/%s", W.host.root, name);
    fx_mkdirs(p);
    fx_write_text(p, "bind", "");
    fx_write_text(p, "unbind", "");
}

static void script(const char *name, const char *body)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", drv_dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(p, 0755);
}

static char cmds_text[512];

/* The GPU model scrubs through `driver` with these commands ('@' stands for
 * the scripts' directory). */
static void driver_model(const char *driver, const char *ready, const char *cmds)
{
    snprintf(drv_dir, sizeof drv_dir, "%s", W.hooks);   /* an empty directory of the test's own */
    size_t o = 0;
    for (const char *c = cmds; *c && o + sizeof drv_dir < sizeof cmds_text; c++) {
        if (*c == '@')
            o += (size_t)snprintf(cmds_text + o, sizeof cmds_text - o, "%s", drv_dir);
        else
            cmds_text[o++] = *c;
    }
    cmds_text[o] = '\0';
    W.model.scrub = GW_SCRUB_DRIVER;
    W.model.scrub_driver = driver;
    W.model.scrub_driver_ready = ready;
    W.model.scrub_driver_ready_timeout_ms = 300;
    W.model.scrub_command_timeout_ms = 5000;
    W.model.scrub_commands = cmds_text;
    W.pol.models = &W.model;
    W.pol.n_models = 1;
    /* Not hooks: the hooks step must find no executables here. */
    W.pol.hooks_dir = "/nonexistent/gw-hooks";
    script("ok", "echo \"scrubbed $2 via $GW_SCRUB_DRIVER ($1)\"; exit 0");
    script("fail", "echo \"ECC error on $1\"; exit 3");
    script("slow", "sleep 30");
}

static void remove_scripts(void)
{
    const char *names[] = { "ok", "fail", "slow" };
    for (size_t i = 0; i < 3; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", drv_dir, names[i]);
        unlink(p);
    }
}

/* Where the GPU is now, through the simulated kernel. */
static void assert_on(const char *driver)
{
    _cleanup_free_ char *now = NULL;
    assert_int_equal(gw_dev_driver(W.ops, GPU, &now), 0);
    assert_non_null(now);
    assert_string_equal(now, driver);
    _cleanup_free_ char *ovr = NULL;
    assert_int_equal(gw_dev_read_text(W.ops, GPU, "driver_override", &ovr), 0);
    assert_string_equal(ovr, driver);
}

static void ready_file(void)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/sys/bus/pci/devices/" GPU, W.host.root);
    fx_write_text(p, "virtio_ready", "1\n");
}

static void driver_scrub_round_trip_ends_on_vfio(void **state)
{
    (void)state;
    world_open();
    host_driver("virtio-pci");
    ready_file();
    driver_model("virtio-pci", "virtio_ready", "@/ok first && @/ok second");
    run();
    remove_scripts();
    assert_passes();
    const char *ev = step(GW_STEP_SCRUB)->evidence;
    assert_contains(ev, "model 10de:2230: scrub driver: " GPU " through virtio-pci, ready when virtio_ready");
    assert_contains(ev, "wrote 'virtio-pci' to " DEV(GPU, "driver_override"));
    assert_contains(ev, "sys/bus/pci/drivers/vfio-pci/unbind");
    assert_contains(ev, "virtio-pci ready after ");
    assert_contains(ev, "exited 0 in ");
    assert_contains(ev, "/ok first " GPU ") exited 0 in ");
    assert_contains(ev, "output: scrubbed " GPU " via virtio-pci (first)");
    assert_contains(ev, "/ok second " GPU ") exited 0 in ");
    assert_contains(ev, "output: scrubbed " GPU " via virtio-pci (second)");
    assert_contains(ev, "sys/bus/pci/drivers/virtio-pci/unbind");
    assert_contains(ev, GPU " back on vfio-pci");
    assert_on("vfio-pci");
}

static void failing_command_quarantines_and_returns_to_vfio(void **state)
{
    (void)state;
    world_open();
    host_driver("virtio-pci");
    driver_model("virtio-pci", NULL, "@/fail && @/ok never");
    run();
    remove_scripts();
    assert_fails_at(GW_STEP_SCRUB, "/fail " GPU ") exited 3, output: ECC error on " GPU);
    const char *ev = step(GW_STEP_SCRUB)->evidence;
    assert_lacks(ev, "never");
    assert_contains(ev, GPU " back on vfio-pci");
    assert_on("vfio-pci");
}

static void command_timeout_quarantines_and_returns_to_vfio(void **state)
{
    (void)state;
    world_open();
    host_driver("virtio-pci");
    driver_model("virtio-pci", NULL, "@/slow");
    W.model.scrub_command_timeout_ms = 300;
    run();
    remove_scripts();
    assert_fails_at(GW_STEP_SCRUB, "/slow " GPU ") timed out after 300 ms: killed its process group");
    assert_contains(step(GW_STEP_SCRUB)->evidence, GPU " back on vfio-pci");
    assert_on("vfio-pci");
}

static void driver_that_never_binds_or_gets_ready(void **state)
{
    (void)state;
    world_open();
    /* Not loaded: the device never leaves vfio-pci. */
    driver_model("nvidia", NULL, "@/ok");
    run();
    assert_fails_at(GW_STEP_SCRUB, "host driver nvidia is not loaded (no sys/bus/pci/drivers/nvidia): not "
                                   "scrubbed, " GPU " left on vfio-pci");
    assert_lacks(step(GW_STEP_SCRUB)->evidence, "driver_override");
    /* Loaded, but its probe refuses the device: the kernel's answer to the
     * bind write is in the evidence, and the device goes back. */
    host_driver("nvidia");
    gw_sim_fail_write(W.sim, "sys/bus/pci/drivers/nvidia/bind", -ENODEV);
    gw_sim_after_write_bind(W.sim, "sys/bus/pci/drivers_probe", GPU, GPU, NULL);
    run();
    assert_fails_at(GW_STEP_SCRUB, "binding nvidia failed");
    assert_contains(step(GW_STEP_SCRUB)->evidence, GPU " back on vfio-pci");
    assert_lacks(step(GW_STEP_SCRUB)->evidence, "exited");
    assert_on("vfio-pci");
    /* Bound, but what the model waits for never appears. */
    host_driver("virtio-pci");
    driver_model("virtio-pci", "virtio_ready", "@/ok");
    run();
    remove_scripts();
    assert_fails_at(GW_STEP_SCRUB, "virtio-pci did not become ready within 300 ms: virtio_ready does not exist");
    assert_lacks(step(GW_STEP_SCRUB)->evidence, "exited");
    assert_contains(step(GW_STEP_SCRUB)->evidence, GPU " back on vfio-pci");
    assert_on("vfio-pci");
}

/* Passing commands do not make a pass when the way back fails: the device
 * is on the host driver, and the evidence says so. */
static void failed_return_to_vfio_fails_the_step(void **state)
{
    (void)state;
    world_open();
    host_driver("virtio-pci");
    driver_model("virtio-pci", NULL, "@/ok");
    gw_sim_fail_write(W.sim, "sys/bus/pci/drivers/virtio-pci/unbind", -EBUSY);
    run();
    remove_scripts();
    assert_fails_at(GW_STEP_SCRUB, GPU " left on virtio-pci");
    assert_contains(step(GW_STEP_SCRUB)->evidence, "/ok " GPU ") exited 0");
}

/* A version-2 caller's models are the shorter gw_model_policy_v2: read as
 * such, never past their end. */
static void version_2_model_array_still_works(void **state)
{
    (void)state;
    world_open();
    gw_sim_bar_set(W.sim, GPU, 1, 4096, 0xa5);
    gw_model_policy_v2 *old = malloc(2 * sizeof *old);   /* exactly the old size */
    old[0] = (gw_model_policy_v2){ "10de:1111", GW_RESET_AUTO, GW_SCRUB_NONE, -1, 0, 0.0 };
    old[1] = (gw_model_policy_v2){ "10de:2230", GW_RESET_AUTO, GW_SCRUB_BAR, -1, 1, 0.0 };
    gw_sanitize_policy pol = W.pol;
    pol.version = 2;
    pol.models = (const gw_model_policy *)(const void *)old;
    pol.n_models = 2;
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &pol, &req), 0);
    assert_passes();
    assert_contains(step(GW_STEP_SCRUB)->evidence, "model 10de:2230: scrub bar: BAR 1 of " GPU);
    assert_bar_all(GPU, 1, 0);
    /* Version 2 had no driver settings. */
    old[1].scrub = GW_SCRUB_DRIVER;
    gw_sanitize_result_free(W.res);
    W.res = NULL;
    assert_int_equal(gw_sanitize_run(&W.res, W.ops, &W.att.base, &pol, &req), -EOPNOTSUPP);
    assert_contains(gw_error_message(), "scrub method 'driver' needs policy version 3");
    free(old);
}

static void names_round_trip(void **state)
{
    (void)state;
    assert_string_equal(gw_step_name(GW_STEP_SCRUB), "scrub");
    gw_step_id id;
    assert_int_equal(gw_step_from_name("scrub", &id), 0);
    assert_int_equal(id, GW_STEP_SCRUB);
    for (int c = GW_RESET_AUTO; c <= GW_RESET_FLR_BUS; c++) {
        gw_reset_choice back;
        assert_int_equal(gw_reset_choice_from_name(gw_reset_choice_name((gw_reset_choice)c), &back), 0);
        assert_int_equal(back, c);
    }
    gw_scrub_method m;
    assert_int_equal(gw_scrub_method_from_name("driver", &m), 0);
    assert_int_equal(m, GW_SCRUB_DRIVER);
    assert_int_equal(gw_scrub_method_from_name("dma", &m), -EINVAL);
    assert_string_equal(gw_scrub_method_name(GW_SCRUB_BAR), "bar");
}

/* ---- backends without VFIO ----------------------------------------------------- */

static int stub_read(void *d, const char *p, size_t m, char **o, size_t *l) { return gw_hostops_read(d, p, m, o, l); }
static int stub_write(void *d, const char *p, const void *b, size_t l) { return gw_hostops_write(d, p, b, l); }
static int stub_readlink(void *d, const char *p, char **o) { return gw_hostops_readlink(d, p, o); }
static int stub_list(void *d, const char *p, char ***o, size_t *n) { return gw_hostops_list(d, p, o, n); }
static int stub_exists(void *d, const char *p) { return gw_hostops_exists(d, p); }
static int stub_config(void *d, const char *a, unsigned int o, void *b, size_t l)
{
    return gw_hostops_read_config(d, a, o, b, l);
}
static void stub_destroy(void *d) { gw_hostops_unref(d); }
static int stub_hold(void *d, const char *p, void **h) { return gw_hostops_hold(d, p, h); }
static void stub_release(void *d, void *h) { gw_hostops_release(d, h); }
static int stub_vfio_open(void *d, void *g, const char *a, void **dev) { return gw_hostops_vfio_open(d, g, a, dev); }
static int stub_held_fd(void *d, void *h) { return gw_hostops_held_fd(d, h); }

/* The vtable as version-2 backends were compiled: it ends at release. */
typedef struct backend_v2 {
    unsigned int version;
    const char *name;
    int (*read)(void *, const char *, size_t, char **, size_t *);
    int (*write)(void *, const char *, const void *, size_t);
    int (*readlink)(void *, const char *, char **);
    int (*list)(void *, const char *, char ***, size_t *);
    int (*exists)(void *, const char *);
    int (*read_config)(void *, const char *, unsigned int, void *, size_t);
    void (*destroy)(void *);
    int (*hold)(void *, const char *, void **);
    void (*release)(void *, void *);
} backend_v2;

static void version_2_backend_has_no_vfio(void **state)
{
    (void)state;
    no_flr();
    world_open();
    backend_v2 *v2 = malloc(sizeof *v2);
    *v2 = (backend_v2){ 2, "v2", stub_read, stub_write, stub_readlink, stub_list, stub_exists, stub_config,
                        stub_destroy, stub_hold, stub_release };
    gw_hostops *ops = NULL;
    assert_int_equal(gw_hostops_new(&ops, (const gw_hostops_backend *)v2, gw_hostops_ref(W.ops)), 0);
    free(v2);
    void *dev = &dev;
    assert_int_equal(gw_hostops_vfio_open(ops, &dev, GPU, &dev), -EOPNOTSUPP);
    assert_null(dev);

    /* No FLR and no VFIO: the kernel's reset, as before version 3. */
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    assert_int_equal(gw_sanitize_run(&W.res, ops, &W.att.base, &W.pol, &req), 0);
    assert_passes();
    assert_contains(step(GW_STEP_RESET)->evidence, "no bus reset possible (v2: backend has no VFIO device access "
                                                   "(vtable version < 3)): the kernel's reset instead");
    assert_int_equal(gw_sim_count_writes(W.sim, "/reset"), 1);
    /* And a scrub cannot be done, so it fails. */
    scrub_model(-1, 1, 0);
    gw_sim_bar_set(W.sim, GPU, 1, 4096, 0xa5);
    gw_sanitize_result_free(W.res);
    assert_int_equal(gw_sanitize_run(&W.res, ops, &W.att.base, &W.pol, &req), 0);
    assert_fails_at(GW_STEP_SCRUB, "backend has no VFIO device access");
    gw_hostops_unref(ops);

    /* Some vfio_* without the others are refused. */
    gw_hostops_backend be = { .version = 3, .name = "half", .read = stub_read, .write = stub_write,
                              .readlink = stub_readlink, .list = stub_list, .exists = stub_exists,
                              .read_config = stub_config, .destroy = stub_destroy, .hold = stub_hold,
                              .release = stub_release, .vfio_open = stub_vfio_open };
    assert_int_equal(gw_hostops_new(&ops, &be, gw_hostops_ref(W.ops)), -EINVAL);
    assert_contains(gw_error_message(), "the vfio_* operations come together");

    /* Version 4's held_fd and adopt come as a pair, and need hold. */
    be = (gw_hostops_backend){ .version = 4, .name = "half4", .read = stub_read, .write = stub_write,
                               .readlink = stub_readlink, .list = stub_list, .exists = stub_exists,
                               .read_config = stub_config, .destroy = stub_destroy, .hold = stub_hold,
                               .release = stub_release, .held_fd = stub_held_fd };
    assert_int_equal(gw_hostops_new(&ops, &be, gw_hostops_ref(W.ops)), -EINVAL);
    assert_contains(gw_error_message(), "held_fd and adopt come together");
    /* A version-3 vtable is read up to write_config: what lies after it (here
     * held_fd without adopt) is never looked at, and holds have no
     * descriptor to keep. */
    be.version = 3;
    assert_int_equal(gw_hostops_new(&ops, &be, gw_hostops_ref(W.ops)), 0);
    void *h = NULL;
    assert_int_equal(gw_hostops_hold(ops, "dev/vfio/10", &h), 0);
    assert_int_equal(gw_hostops_held_fd(ops, h), -EOPNOTSUPP);
    assert_int_equal(gw_hostops_adopt(ops, "dev/vfio/10", 3, &(void *){ NULL }), -EOPNOTSUPP);
    gw_hostops_release(ops, h);
    gw_hostops_unref(ops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(scrub_zeroes_the_bar_and_reads_it_back, setup, world_teardown),
        cmocka_unit_test_setup_teardown(without_a_scrub_the_memory_survives_the_cleanup, setup, world_teardown),
        cmocka_unit_test_setup_teardown(nonzero_byte_behind_the_scrub_fails_with_its_offset, setup, world_teardown),
        cmocka_unit_test_setup_teardown(scrub_of_another_function_through_pwrite_and_pread, setup, world_teardown),
        cmocka_unit_test_setup_teardown(injected_byte_is_found_through_pwrite_too, setup, world_teardown),
        cmocka_unit_test_setup_teardown(a_fraction_reads_an_even_spread_of_pages, setup, world_teardown),
        cmocka_unit_test_setup_teardown(bar_that_cannot_be_read_back_fails, setup, world_teardown),
        cmocka_unit_test_setup_teardown(scrub_without_vfio_or_memory_fails, setup, world_teardown),
        cmocka_unit_test_setup_teardown(scrub_function_missing_or_not_managed_fails, setup, world_teardown),
        cmocka_unit_test_setup_teardown(scrub_keeps_a_hot_plug_out_of_its_group, setup, world_teardown),
        cmocka_unit_test_setup_teardown(bus_reset_when_there_is_no_flr, setup, world_teardown),
        cmocka_unit_test_setup_teardown(kernel_bus_method_is_used_as_it_is, setup, world_teardown),
        cmocka_unit_test_setup_teardown(flr_bus_does_both, setup, world_teardown),
        cmocka_unit_test_setup_teardown(model_bus_skips_the_flr_and_model_flr_needs_one, setup, world_teardown),
        cmocka_unit_test_setup_teardown(bus_reset_refused_for_a_function_not_ours, setup, world_teardown),
        cmocka_unit_test_setup_teardown(bus_reset_refused_for_an_unmanaged_slot_function_on_vfio, setup, world_teardown),
        cmocka_unit_test_setup_teardown(bus_reset_holds_the_other_slots_groups, setup, world_teardown),
        cmocka_unit_test_setup_teardown(no_bus_reset_on_the_root_bus, setup, world_teardown),
        cmocka_unit_test_setup_teardown(sim_vfio_follows_the_kernel, setup, world_teardown),
        cmocka_unit_test_setup_teardown(model_settings_parse_and_refuse, setup, world_teardown),
        cmocka_unit_test_setup_teardown(policy_models_are_checked, setup, world_teardown),
        cmocka_unit_test_setup_teardown(version_1_policy_still_works, setup, world_teardown),
        cmocka_unit_test_setup_teardown(driver_scrub_round_trip_ends_on_vfio, setup, world_teardown),
        cmocka_unit_test_setup_teardown(failing_command_quarantines_and_returns_to_vfio, setup, world_teardown),
        cmocka_unit_test_setup_teardown(command_timeout_quarantines_and_returns_to_vfio, setup, world_teardown),
        cmocka_unit_test_setup_teardown(driver_that_never_binds_or_gets_ready, setup, world_teardown),
        cmocka_unit_test_setup_teardown(failed_return_to_vfio_fails_the_step, setup, world_teardown),
        cmocka_unit_test_setup_teardown(version_2_model_array_still_works, setup, world_teardown),
        cmocka_unit_test_setup_teardown(names_round_trip, setup, world_teardown),
        cmocka_unit_test_setup_teardown(version_2_backend_has_no_vfio, setup, world_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
