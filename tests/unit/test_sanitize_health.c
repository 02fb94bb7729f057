/* SPDX-License-Identifier: Apache-2.0 */
/* Health from live config space (issue 13, "health that can fail on real
 * hardware"), on the simulated backend: each test sets a register the way a
 * device keeps it and fails if the step stops reading it live.
 *  - an AER Uncorrectable Error Status bit fails health, its value is in the
 *    evidence, and the step clears it (write-1-to-clear) so the next
 *    clean-up passes; also where firmware handles AER first and the
 *    kernel's aer_dev_* counters stay 0;
 *  - a PCI Status error bit fails, a Device Status Non-Fatal bit fails,
 *    correctable-only status is noted, each cleared after it is recorded;
 *  - the ports above are recorded, never judged, and cleared only when
 *    managed;
 *  - a BAR register that lost its address fails (test_sanitize_steps.c);
 *  - the simulated config write: write-1-to-clear exactly where the specs
 *    say, plain elsewhere, logged with its offset; the checked entry point. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sanitize_world.h"

#define DSP "0000:02:00.0"
#define ROOT "0000:00:01.0"
#define CONFIG(a) "sys/bus/pci/devices/" a "/config"

/* The fixture's layout: PCIe capability at 0x78, AER at 0x100. */
#define DEVSTA 0x82
#define UESTA 0x104
#define UEMSK 0x108
#define UESEV 0x10c
#define CESTA 0x110
#define ROOTSTA 0x130
#define ERRSRC 0x134

/* Every test starts on the written tree. */
static int setup(void **state)
{
    world_setup1(state);
    world_open();
    return 0;
}

/* The next clean-up gets this one's pins, as the registry would hand them. */
static void keep_pins(void)
{
    static char keys[8][64], values[8][80];
    W.n_pins = gw_sanitize_result_pin_count(W.res);
    assert_true(W.n_pins <= 8);
    for (size_t i = 0; i < W.n_pins; i++) {
        const gw_fact *f = gw_sanitize_result_pin(W.res, i);
        snprintf(keys[i], sizeof keys[i], "%s", f->key);
        snprintf(values[i], sizeof values[i], "%s", f->value);
        W.pins[i] = (gw_fact){ keys[i], values[i] };
    }
}

static const gw_step_result *health(void) { return step(GW_STEP_HEALTH); }

static void assert_health(gw_verdict v)
{
    if (health()->verdict != v)
        fail_msg("health %s, expected %s: %s", gw_verdict_name(health()->verdict), gw_verdict_name(v),
                 health()->evidence);
    if (v == GW_VERDICT_FAIL)
        assert_int_equal(gw_sanitize_result_failed_step(W.res), GW_STEP_HEALTH);
}

/* ---- registers ---------------------------------------------------------- */

static uint8_t CFG[4096];

/* Start a change of `bdf`'s config from what the tree has. */
static uint8_t *cfg_of(const char *bdf)
{
    fx_config(fx_find(&W.host, bdf), CFG);
    return CFG;
}

static void cfg_commit(const char *bdf)
{
    char path[96];
    snprintf(path, sizeof path, "sys/bus/pci/devices/%s/config", bdf);
    gw_sim_set(W.sim, path, CFG, sizeof CFG);
}

static uint32_t live32(const char *bdf, unsigned off)
{
    uint8_t b[4];
    assert_int_equal(gw_hostops_read_config(W.ops, bdf, off, b, 4), 0);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static unsigned live16(const char *bdf, unsigned off)
{
    return live32(bdf, off) & 0xffff;
}

/* The config writes of the log to `bdf`, as "off=bytes" lines. */
static void config_writes(const char *bdf, char *out, size_t n)
{
    char path[96];
    snprintf(path, sizeof path, "sys/bus/pci/devices/%s/config", bdf);
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < gw_sim_write_count(W.sim); i++) {
        const char *p;
        const void *d;
        size_t l;
        int r;
        long off;
        assert_int_equal(gw_sim_write_at(W.sim, i, &p, &d, &l, &r), 0);
        assert_int_equal(gw_sim_write_offset(W.sim, i, &off), 0);
        if (strcmp(p, path))
            continue;
        assert_true(off >= 0);
        len += (size_t)snprintf(out + len, n - len, "%s0x%lx=", len ? " " : "", off);
        for (size_t k = 0; k < l; k++)
            len += (size_t)snprintf(out + len, n - len, "%02x", ((const uint8_t *)d)[k]);
    }
}

/* ---- the GPU's AER status ---------------------------------------------- */

/* Sticky: it survives the reset (as the lab shows where the OS does not own
 * AER), so it is set before the run, not after the reset write. */
static void aer_uncorrectable_status_fails_health_and_is_cleared(void **state)
{
    (void)state;
    fx_put32(cfg_of(GPU), UESTA, 0x00001000);     /* Poisoned TLP */
    cfg_commit(GPU);
    run();
    assert_health(GW_VERDICT_FAIL);
    assert_contains(gw_sanitize_result_reason(W.res),
                    "0000:03:00.0: AER Uncorrectable Error Status 0x00001000: Poisoned TLP (non-fatal)");
    assert_contains(health()->evidence, "wrote 0x00001000 to 0000:03:00.0 config 0x104");
    char w[256];
    config_writes(GPU, w, sizeof w);
    assert_string_equal(w, "0x104=00100000");
    assert_int_equal(live32(GPU, UESTA), 0);

    /* Released by the operator: the next clean-up starts from zero. */
    keep_pins();
    run();
    assert_int_equal(gw_sanitize_result_verdict(W.res), GW_VERDICT_PASS);
    assert_contains(health()->evidence, "0000:03:00.0: AER status clear");
    config_writes(GPU, w, sizeof w);
    assert_string_equal(w, "0x104=00100000");       /* nothing more written */
}

/* Firmware-first: firmware handles AER, the kernel never counts the error
 * (aer_dev_* TOTAL stays 0): only the live register tells. Severity and
 * mask come from the device's own registers. */
static void firmware_first_error_fails_although_the_counters_stay_zero(void **state)
{
    (void)state;
    W.pins[0] = (gw_fact){ "sanitize.aer_fatal.gpu", "0" };
    W.pins[1] = (gw_fact){ "sanitize.aer_nonfatal.gpu", "0" };
    W.n_pins = 2;
    uint8_t *c = cfg_of(GPU);
    fx_put32(c, UESTA, 0x00044010);     /* DLP, Completion Timeout, Malformed TLP */
    fx_put32(c, UEMSK, 0x00040000);     /* Malformed TLP masked: still recorded */
    fx_put32(c, UESEV, 0x00000010);     /* DLP fatal */
    cfg_commit(GPU);
    run();
    assert_health(GW_VERDICT_FAIL);
    const char *ev = health()->evidence;
    assert_contains(ev, "0000:03:00.0: aer_dev_fatal TOTAL 0 unchanged");
    assert_contains(ev, "0000:03:00.0: aer_dev_nonfatal TOTAL 0 unchanged");
    assert_contains(ev, "AER Uncorrectable Error Status 0x00044010: Data Link Protocol Error (fatal), Completion "
                        "Timeout (non-fatal), Malformed TLP (non-fatal, masked)");
    assert_int_equal(live32(GPU, UESTA), 0);
    assert_int_equal(live32(GPU, UEMSK), 0x00040000);   /* only the status is written */
    keep_pins();
    run();
    assert_int_equal(gw_sanitize_result_verdict(W.res), GW_VERDICT_PASS);
}

static void correctable_only_is_noted_and_cleared(void **state)
{
    (void)state;
    fx_put32(cfg_of(GPU), CESTA, 0x00002001);
    cfg_commit(GPU);
    run();
    assert_int_equal(gw_sanitize_result_verdict(W.res), GW_VERDICT_PASS);
    assert_contains(health()->evidence, "0000:03:00.0: AER Correctable Error Status 0x00002001: Receiver Error, "
                                        "Advisory Non-Fatal Error: corrected by the link, not a failure");
    assert_contains(health()->evidence, "wrote 0x00002001 to 0000:03:00.0 config 0x110");
    assert_int_equal(live32(GPU, CESTA), 0);
}

/* A clear the kernel refuses (lockdown: EPERM) is said and does not fail a
 * healthy device; the bit stays for the next clean-up to see. */
static void refused_clear_is_said(void **state)
{
    (void)state;
    fx_put32(cfg_of(GPU), CESTA, 0x00000040);
    cfg_commit(GPU);
    gw_sim_fail_write(W.sim, CONFIG(GPU), -EPERM);
    run();
    assert_int_equal(gw_sanitize_result_verdict(W.res), GW_VERDICT_PASS);
    assert_contains(health()->evidence, "write 0x00000040 to 0000:03:00.0 config 0x110 failed: Operation not "
                                        "permitted");
    assert_int_equal(live32(GPU, CESTA), 0x40);
}

/* ---- PCI Status and Device Status ---------------------------------------- */

static void pci_status_error_bit_fails_health_and_is_cleared(void **state)
{
    (void)state;
    /* Appears with the reset (the reset clears Status; what is set after it
     * happened during or since). */
    uint8_t *c = cfg_of(GPU);
    fx_put16(c, 0x06, 0x2010);          /* Received Master Abort, capability list */
    gw_sim_after_write_set(W.sim, "sys/bus/pci/devices/" GPU "/reset", CONFIG(GPU), c, 4096);
    run();
    assert_health(GW_VERDICT_FAIL);
    assert_contains(gw_sanitize_result_reason(W.res), "0000:03:00.0: PCI Status 0x2010: Received Master Abort");
    char w[256];
    config_writes(GPU, w, sizeof w);
    assert_string_equal(w, "0x6=0020");         /* the error bit only, one word */
    assert_int_equal(live16(GPU, 0x06), 0x0010);    /* the read-only bit stays */
    assert_int_equal(live16(GPU, 0x04), 0x0406);    /* the Command word untouched */
}

static void device_status_non_fatal_fails_correctable_and_ur_are_noted(void **state)
{
    (void)state;
    fx_put16(cfg_of(GPU), DEVSTA, 0x0019);      /* CED, URD, AuxPwr (read-only) */
    cfg_commit(GPU);
    run();
    assert_int_equal(gw_sanitize_result_verdict(W.res), GW_VERDICT_PASS);
    assert_contains(health()->evidence, "0000:03:00.0: Device Status 0x0019: Correctable Error Detected, "
                                        "Unsupported Request Detected: not a failure");
    assert_int_equal(live16(GPU, DEVSTA), 0x0010);

    fx_put16(cfg_of(GPU), DEVSTA, 0x0002);
    cfg_commit(GPU);
    run();
    assert_health(GW_VERDICT_FAIL);
    assert_contains(gw_sanitize_result_reason(W.res), "0000:03:00.0: Device Status 0x0002: Non-Fatal Error Detected");
    assert_int_equal(live16(GPU, DEVSTA), 0);
}

/* ---- the ports above ------------------------------------------------------- */

static void port_errors_are_recorded_not_judged(void **state)
{
    (void)state;
    uint8_t *c = cfg_of(DSP);
    fx_put16(c, DEVSTA, 0x0009);
    fx_put32(c, CESTA, 0x00002000);
    fx_put32(c, UESTA, 0x00100000);
    cfg_commit(DSP);
    c = cfg_of(ROOT);
    fx_put32(c, ROOTSTA, 0x00000005);
    fx_put32(c, ERRSRC, 0x03000300);
    cfg_commit(ROOT);
    run();
    assert_int_equal(gw_sanitize_result_verdict(W.res), GW_VERDICT_PASS);
    const char *ev = health()->evidence;
    assert_contains(ev, "upstream port 0000:02:00.0: Device Status 0x0009 (Correctable Error Detected, Unsupported "
                        "Request Detected), AER uncorrectable 0x00100000 (Unsupported Request), correctable "
                        "0x00002000 (Advisory Non-Fatal Error): recorded, not judged, not cleared (not managed)");
    assert_contains(ev, "root port 0000:00:01.0: Device Status 0x0000, AER uncorrectable 0x00000000, correctable "
                        "0x00000000, Root Error Status 0x00000005 (ERR_COR received, ERR_FATAL/NONFATAL "
                        "received), ERR_COR from 03:00.0, ERR_FATAL/NONFATAL from 03:00.0: recorded, not judged, "
                        "not cleared (not managed)");
    char w[256];
    config_writes(DSP, w, sizeof w);
    assert_string_equal(w, "");
    config_writes(ROOT, w, sizeof w);
    assert_string_equal(w, "");

    /* A port the operator manages is cleared after the record. */
    const char *addrs[1] = { DSP };
    W.pol.manage_addresses = addrs;
    W.pol.n_manage_addresses = 1;
    run();
    assert_int_equal(gw_sanitize_result_verdict(W.res), GW_VERDICT_PASS);
    assert_contains(health()->evidence, "(Advisory Non-Fatal Error): recorded, not judged; wrote 0x0009 to "
                                        "0000:02:00.0 config 0x82");
    config_writes(DSP, w, sizeof w);
    assert_string_equal(w, "0x82=0900 0x104=00001000 0x110=00200000");
    assert_int_equal(live16(DSP, DEVSTA), 0);
    assert_int_equal(live32(DSP, UESTA), 0);
    assert_int_equal(live32(DSP, CESTA), 0);
}

/* ---- the simulated config write and the entry point -------------------- */

static void sim_config_write_is_rw1c_where_the_specs_say(void **state)
{
    (void)state;
    uint8_t *c = cfg_of(ROOT);
    fx_put16(c, 0x06, 0xf910);
    fx_put16(c, DEVSTA, 0x001f);
    fx_put32(c, UESTA, 0x00001010);
    fx_put32(c, ROOTSTA, 0x0800007f);    /* message number 1 (read-only) */
    cfg_commit(ROOT);
    const uint8_t all[4] = { 0xff, 0xff, 0xff, 0xff }, cmd[2] = { 0x07, 0x00 }, ue[4] = { 0x10, 0, 0, 0 };
    assert_int_equal(gw_hostops_write_config(W.ops, ROOT, 0x06, all, 2), 0);
    assert_int_equal(live16(ROOT, 0x06), 0x0010);
    assert_int_equal(gw_hostops_write_config(W.ops, ROOT, 0x04, cmd, 2), 0);
    assert_int_equal(live16(ROOT, 0x04), 0x0007);          /* plain */
    assert_int_equal(gw_hostops_write_config(W.ops, ROOT, DEVSTA, cmd, 2), 0);
    assert_int_equal(live16(ROOT, DEVSTA), 0x0018);        /* bits 0-2 cleared, AuxPwr and bit 3 as they were */
    assert_int_equal(gw_hostops_write_config(W.ops, ROOT, UESTA, ue, 4), 0);
    assert_int_equal(live32(ROOT, UESTA), 0x00001000);     /* only the bit written as 1 */
    assert_int_equal(gw_hostops_write_config(W.ops, ROOT, ROOTSTA, all, 4), 0);
    assert_int_equal(live32(ROOT, ROOTSTA), 0x08000000);
    /* An endpoint has no Root Error Status: plain bytes there. */
    assert_int_equal(gw_hostops_write_config(W.ops, GPU, ROOTSTA, all, 4), 0);
    assert_int_equal(live32(GPU, ROOTSTA), 0xffffffff);
    /* Logged with the offset; attribute writes have none. */
    char w[256];
    config_writes(ROOT, w, sizeof w);
    assert_string_equal(w, "0x6=ffff 0x4=0700 0x82=0700 0x104=10000000 0x130=ffffffff");
    assert_int_equal(gw_hostops_write(W.ops, "sys/bus/pci/devices/" GPU "/reset", "1", 1), 0);
    long off;
    assert_int_equal(gw_sim_write_offset(W.sim, gw_sim_write_count(W.sim) - 1, &off), 0);
    assert_int_equal(off, -1);
}

static int stub_read(void *d, const char *p, size_t m, char **o, size_t *l) { return -ENOSYS; }
static int stub_write(void *d, const char *p, const void *b, size_t l) { return -ENOSYS; }
static int stub_readlink(void *d, const char *p, char **o) { return -ENOSYS; }
static int stub_list(void *d, const char *p, char ***n, size_t *c) { return -ENOSYS; }
static int stub_exists(void *d, const char *p) { return -ENOSYS; }
static int stub_config(void *d, const char *a, unsigned o, void *b, size_t l) { return -ENOSYS; }

static void write_config_entry_point_checks(void **state)
{
    (void)state;
    const uint8_t b[4] = { 0 };
    assert_int_equal(gw_hostops_write_config(W.ops, "03:00.0", 0x06, b, 2), -EINVAL);
    assert_int_equal(gw_hostops_write_config(W.ops, GPU, 4094, b, 4), -EINVAL);
    assert_int_equal(gw_hostops_write_config(W.ops, GPU, 0x06, b, 0), -EINVAL);
    assert_int_equal(gw_hostops_write_config(W.ops, GPU, 0x06, NULL, 2), -EINVAL);
    /* A version-2 backend has no write_config. */
    gw_hostops_backend be = { .version = 2, .name = "v2", .read = stub_read, .write = stub_write,
                              .readlink = stub_readlink, .list = stub_list, .exists = stub_exists,
                              .read_config = stub_config };
    gw_hostops *v2;
    assert_int_equal(gw_hostops_new(&v2, &be, NULL), 0);
    assert_int_equal(gw_hostops_write_config(v2, GPU, 0x06, b, 2), -EOPNOTSUPP);
    assert_non_null(strstr(gw_error_message(), "no write_config"));
    gw_hostops_unref(v2);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, world_teardown)
    const struct CMUnitTest tests[] = {
        T(aer_uncorrectable_status_fails_health_and_is_cleared),
        T(firmware_first_error_fails_although_the_counters_stay_zero),
        T(correctable_only_is_noted_and_cleared),
        T(refused_clear_is_said),
        T(pci_status_error_bit_fails_health_and_is_cleared),
        T(device_status_non_fatal_fails_correctable_and_ur_are_noted),
        T(port_errors_are_recorded_not_judged),
        T(sim_config_write_is_rw1c_where_the_specs_say),
        T(write_config_entry_point_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
