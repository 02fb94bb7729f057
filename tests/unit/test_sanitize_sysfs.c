/* The clean-up on the REAL sysfs backend over a test host: every file of the
 * tree is snapshotted before and after, and exactly the expected files differ,
 * with exactly the expected bytes. On a plain tree there is no kernel behind
 * the writes (a driver link does not change after drivers_probe, a ROM
 * "enable" is just a byte written at offset 0), so the expectations are those
 * of plain files receiving the kernel commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sanitize_fixture.h"
#include "sanitize_internal.h"

#define GPU "0000:03:00.0"
#define HDA "0000:03:00.1"
#define GPUDIR "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:00.0/0000:03:00.0"
#define HDADIR "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:00.0/0000:03:00.1"


static fx_host H;
static char hooks_dir[] = "/nonexistent/gpuwarden-test-hooks";

static int teardown(void **state)
{
    (void)state;
    fx_remove(&H);
    return 0;
}

typedef struct change {
    const char *rel;
    const void *data;
    size_t len;
} change;

/* Every entry of `after` equals `before`, except the listed files, whose
 * content is exactly the given bytes; no entry appeared or disappeared. */
static void assert_tree_changes(const fx_snap *before, const fx_snap *after, const change *ch, size_t n)
{
    assert_int_equal(before->n, after->n);
    size_t seen = 0;
    for (size_t i = 0; i < before->n; i++) {
        const fx_entry *b = &before->e[i], *a = &after->e[i];
        assert_string_equal(b->rel, a->rel);
        assert_int_equal(b->kind, a->kind);
        const change *c = NULL;
        for (size_t k = 0; k < n; k++)
            if (!strcmp(ch[k].rel, b->rel))
                c = &ch[k];
        if (c) {
            seen++;
            if (a->len != c->len || memcmp(a->data, c->data, c->len))
                fail_msg("%s: content differs from the expected %zu bytes (got %zu)", b->rel, c->len, a->len);
            continue;
        }
        if (b->len != a->len || (b->len && memcmp(b->data, a->data, b->len)))
            fail_msg("%s changed but should not have", b->rel);
    }
    assert_int_equal(seen, n);
}

static gw_sanitize_result *run_real(const gw_sanitize_policy *pol)
{
    gw_hostops *ops = NULL;
    assert_int_equal(gw_hostops_sysfs_new(&ops, H.root), 0);
    static fx_attach att;
    fx_attach_init(&att);
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    gw_sanitize_result *res = NULL;
    assert_int_equal(gw_sanitize_run(&res, ops, &att.base, pol, &req), 0);
    gw_hostops_unref(ops);
    return res;
}

static void passing_cleanup_writes_exactly_override_reset_rom(void **state)
{
    (void)state;
    fx_std(&H, 2);
    fx_write(&H);
    fx_snap before, after;
    fx_snapshot(H.root, &before);

    uint16_t vendors[] = { 0x10de };
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
    pol.manage_vendors = vendors;
    pol.n_manage_vendors = 1;
    pol.hooks_dir = hooks_dir;
    gw_sanitize_result *res = run_real(&pol);
    if (gw_sanitize_result_verdict(res) != GW_VERDICT_PASS)
        fail_msg("expected a pass: %s", gw_sanitize_result_reason(res));
    fx_snapshot(H.root, &after);

    /* rom got "1" then "0\n" at offset 0 of the image; the hash is of what
     * was read in between: the image with '1' as its first byte. */
    const fx_entry *rom0 = fx_snap_get(&before, GPUDIR "/rom");
    assert_non_null(rom0);
    unsigned char *read_img = malloc(rom0->len), *final_img = malloc(rom0->len);
    memcpy(read_img, rom0->data, rom0->len);
    read_img[0] = '1';
    memcpy(final_img, rom0->data, rom0->len);
    final_img[0] = '0';
    final_img[1] = '\n';
    char h[65];
    fx_sha256_hex(read_img, rom0->len, h);
    assert_string_equal(gw_sanitize_result_pin_get(res, "sanitize.rom_sha256"), h);

    change ch[] = {
        { GPUDIR "/driver_override", "vfio-pci", 8 },  /* "(null)\n" overwritten by 8 bytes */
        { HDADIR "/driver_override", "vfio-pci", 8 },
        { GPUDIR "/reset", "1", 1 },
        { GPUDIR "/rom", final_img, rom0->len },
    };
    assert_tree_changes(&before, &after, ch, 4);
    free(read_img);
    free(final_img);
    fx_snap_free(&before);
    fx_snap_free(&after);
    gw_sanitize_result_free(res);
}

static void rebind_writes_override_unbind_probe(void **state)
{
    (void)state;
    fx_std(&H, 1);
    snprintf(fx_find(&H, GPU)->driver, 32, "nvidia");
    fx_write(&H);
    fx_snap before, after;
    fx_snapshot(H.root, &before);

    uint16_t vendors[] = { 0x10de };
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
    pol.manage_vendors = vendors;
    pol.n_manage_vendors = 1;
    pol.hooks_dir = hooks_dir;
    gw_sanitize_result *res = run_real(&pol);
    fx_snapshot(H.root, &after);

    /* No kernel behind the tree: the driver link still says nvidia after the
     * probe, and the step says so and stops: nothing is reset. */
    assert_int_equal(gw_sanitize_result_failed_step(res), GW_STEP_BIND);
    assert_non_null(strstr(gw_sanitize_result_reason(res), "0000:03:00.0: after drivers_probe bound to nvidia"));
    change ch[] = {
        { GPUDIR "/driver_override", "vfio-pci", 8 },
        { "/sys/bus/pci/drivers/nvidia/unbind", GPU, 12 },
        { "/sys/bus/pci/drivers_probe", GPU, 12 },
    };
    assert_tree_changes(&before, &after, ch, 3);
    fx_snap_free(&before);
    fx_snap_free(&after);
    gw_sanitize_result_free(res);
}

static void unmanaged_device_tree_unchanged(void **state)
{
    (void)state;
    fx_std(&H, 1);
    snprintf(fx_find(&H, GPU)->driver, 32, "nvidia");
    fx_write(&H);
    fx_snap before, after;
    fx_snapshot(H.root, &before);
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;     /* default management */
    pol.hooks_dir = hooks_dir;
    gw_sanitize_result *res = run_real(&pol);
    fx_snapshot(H.root, &after);
    assert_int_equal(gw_sanitize_result_failed_step(res), GW_STEP_BIND);
    assert_non_null(strstr(gw_sanitize_result_reason(res), "not managed"));
    assert_non_null(strstr(gw_sanitize_result_reason(res), "wrote nothing"));
    assert_tree_changes(&before, &after, NULL, 0);
    fx_snap_free(&before);
    fx_snap_free(&after);
    gw_sanitize_result_free(res);
}

static void backend_reads_config_through_libpci_and_refuses_escapes(void **state)
{
    (void)state;
    fx_std(&H, 1);
    fx_write(&H);
    gw_hostops *ops = NULL;
    assert_int_equal(gw_hostops_sysfs_new(&ops, H.root), 0);
    uint8_t id[4];
    assert_int_equal(gw_hostops_read_config(ops, GPU, 0, id, 4), 0);
    assert_int_equal(id[0] | id[1] << 8, 0x10de);
    assert_int_equal(id[2] | id[3] << 8, 0x2230);
    assert_int_equal(gw_hostops_read_config(ops, "0000:77:00.0", 0, id, 4), -ENOENT);
    assert_int_equal(gw_hostops_read_config(ops, GPU, 4094, id, 4), -EINVAL);
    char *s = NULL;
    size_t n = 0;
    assert_int_equal(gw_hostops_read(ops, "sys/bus/pci/devices/" GPU "/reset_method", 100, &s, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(s, "flr\n");
    free(s);
    assert_int_equal(gw_hostops_read(ops, "sys/bus/pci/devices/" GPU "/rom", 100, &s, &n), -EFBIG);
    assert_int_equal(gw_hostops_write(ops, "sys/bus/pci/devices/" GPU "/no_such_attr", "1", 1), -ENOENT);
    assert_int_equal(gw_hostops_write(ops, "sys/bus/../../../etc/x", "1", 1), -EINVAL);
    assert_int_equal(gw_hostops_readlink(ops, "/sys", &s), -EINVAL);
    char **names = NULL;
    assert_int_equal(gw_hostops_list(ops, "sys/kernel/iommu_groups/10/devices", &names, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], GPU);
    assert_string_equal(names[1], HDA);
    gw_hostops_list_free(names, n);
    assert_string_equal(gw_hostops_name(ops) + 6, H.root);
    gw_hostops_unref(ops);

    gw_hostops *none = NULL;
    assert_int_equal(gw_hostops_sysfs_new(&none, "/nonexistent-host-root"), -ENOENT);
    assert_null(none);
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(passing_cleanup_writes_exactly_override_reset_rom, teardown),
        cmocka_unit_test_teardown(rebind_writes_override_unbind_probe, teardown),
        cmocka_unit_test_teardown(unmanaged_device_tree_unchanged, teardown),
        cmocka_unit_test_teardown(backend_reads_config_through_libpci_and_refuses_escapes, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
