/* SPDX-License-Identifier: Apache-2.0 */
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
#include <fcntl.h>
#include <unistd.h>

#include "sanitize_fixture.h"
#include "hostops_sim.h"
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

static const gw_step_result *step_of(const gw_sanitize_result *r, gw_step_id id)
{
    for (size_t i = 0; i < gw_sanitize_result_step_count(r); i++)
        if (gw_sanitize_result_step(r, i)->step == id)
            return gw_sanitize_result_step(r, i);
    return NULL;
}

static void mkpath(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", H.root, rel);
    fx_mkdirs(p);
}

/* proc/<pid>/fd/<fd> -> target, as /proc shows an open file. */
static void proc_fd(const char *pid, const char *fd, const char *target, const char *comm)
{
    char rel[128], dir[512];
    snprintf(rel, sizeof rel, "proc/%s/fd", pid);
    mkpath(rel);
    snprintf(dir, sizeof dir, "%s/%s", H.root, rel);
    fx_symlink(target, dir, fd);
    if (comm) {
        snprintf(dir, sizeof dir, "%s/proc/%s", H.root, pid);
        fx_write_text(dir, "comm", comm);
    }
}

static void real_backend_finds_a_vfio_holder_in_proc_and_writes_nothing(void **state)
{
    (void)state;
    fx_std(&H, 1);
    fx_write(&H);
    proc_fd("4242", "0", "/dev/null", "qemu-system-x86\n");
    proc_fd("4242", "31", "/dev/vfio/10", NULL);
    proc_fd("4243", "5", "/dev/vfio/vfio", "libvirtd\n");     /* the container node: not a group */
    proc_fd("4300", "7", "/dev/vfio/10", NULL);                /* no comm: exited during the scan */
    proc_fd("1", "97", "/vfio/10", "systemd\n");               /* opened in a mount namespace out of reach */
    proc_fd("4301", "8", "/vfio", "x\n");                      /* no group */
    mkpath("proc/sys");                                         /* not a process */
    fx_snap before, after;
    fx_snapshot(H.root, &before);
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
    pol.hooks_dir = hooks_dir;
    gw_sanitize_result *res = run_real(&pol);
    fx_snapshot(H.root, &after);
    assert_int_equal(gw_sanitize_result_failed_step(res), GW_STEP_NOT_IN_USE);
    assert_string_equal(gw_sanitize_result_reason(res), "not_in_use: 0000:03:00.0: IOMMU group 10 (/dev/vfio/10) "
                                                        "is open by pid 1 (systemd), pid 4242 (qemu-system-x86): "
                                                        "in use");
    assert_true(gw_sanitize_result_in_use(res));
    assert_tree_changes(&before, &after, NULL, 0);
    fx_snap_free(&before);
    fx_snap_free(&after);
    gw_sanitize_result_free(res);
}

static void real_backend_holds_the_group_node_across_the_reset(void **state)
{
    (void)state;
    fx_std(&H, 1);
    fx_write(&H);
    /* A tree without the node: noted, and the reset goes on. */
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
    pol.hooks_dir = hooks_dir;
    gw_sanitize_result *res = run_real(&pol);
    assert_int_equal(gw_sanitize_result_verdict(res), GW_VERDICT_PASS);
    const char *ev = step_of(res, GW_STEP_RESET)->evidence;
    assert_non_null(strstr(ev, "/dev/vfio/10 not held: open "));
    assert_non_null(strstr(ev, "/dev/vfio/10: No such file or directory"));
    assert_non_null(strstr(step_of(res, GW_STEP_NOT_IN_USE)->evidence, "no proc directory under the host root"));
    gw_sanitize_result_free(res);

    /* With a node, the real backend opens it (and never writes it). */
    mkpath("dev/vfio");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/dev/vfio", H.root);
    fx_write_text(dir, "10", "");
    mkpath("proc/1/fd");
    fx_snap before, after;
    fx_snapshot(H.root, &before);
    res = run_real(&pol);
    fx_snapshot(H.root, &after);
    if (gw_sanitize_result_verdict(res) != GW_VERDICT_PASS)
        fail_msg("expected a pass: %s", gw_sanitize_result_reason(res));
    assert_non_null(strstr(step_of(res, GW_STEP_BIND)->evidence,
                           "holding /dev/vfio/10 open across the rest of the clean-up"));
    assert_non_null(strstr(step_of(res, GW_STEP_RESET)->evidence,
                           "/dev/vfio/10 held since the bind step: no VM can take the group during the reset"));
    assert_non_null(strstr(step_of(res, GW_STEP_NOT_IN_USE)->evidence,
                           "no process has /dev/vfio/10 open (1 processes looked at)"));
    const fx_entry *node0 = fx_snap_get(&before, "/dev/vfio/10"), *node1 = fx_snap_get(&after, "/dev/vfio/10");
    assert_non_null(node1);
    assert_int_equal(node0->len, node1->len);
    fx_snap_free(&before);
    fx_snap_free(&after);
    gw_sanitize_result_free(res);
}

/* The vtable as version-1 backends were compiled: it ends at destroy. */
typedef struct backend_v1 {
    unsigned int version;
    const char *name;
    int (*read)(void *, const char *, size_t, char **, size_t *);
    int (*write)(void *, const char *, const void *, size_t);
    int (*readlink)(void *, const char *, char **);
    int (*list)(void *, const char *, char ***, size_t *);
    int (*exists)(void *, const char *);
    int (*read_config)(void *, const char *, unsigned int, void *, size_t);
    void (*destroy)(void *);
} backend_v1;

static int v1_read(void *d, const char *p, size_t m, char **o, size_t *l) { return gw_hostops_read(d, p, m, o, l); }
static int v1_write(void *d, const char *p, const void *b, size_t l) { return gw_hostops_write(d, p, b, l); }
static int v1_readlink(void *d, const char *p, char **o) { return gw_hostops_readlink(d, p, o); }
static int v1_list(void *d, const char *p, char ***o, size_t *n) { return gw_hostops_list(d, p, o, n); }
static int v1_exists(void *d, const char *p) { return gw_hostops_exists(d, p); }
static int v1_config(void *d, const char *a, unsigned int o, void *b, size_t l)
{
    return gw_hostops_read_config(d, a, o, b, l);
}
static int v1_destroyed;
static void v1_destroy(void *d)
{
    __atomic_add_fetch(&v1_destroyed, 1, __ATOMIC_SEQ_CST);
    gw_hostops_unref(d);
}

/* The last reference can go on a step's thread just after the run returned
 * (the thread drops the run context after it signalled the end). */
static int v1_destroyed_soon(int want)
{
    for (int i = 0; i < 400 && __atomic_load_n(&v1_destroyed, __ATOMIC_SEQ_CST) < want; i++)
        usleep(5000);
    return __atomic_load_n(&v1_destroyed, __ATOMIC_SEQ_CST);
}

static int hold_stub(void *d, const char *p, void **h) { (void)d; (void)p; *h = NULL; return 0; }

/* write_config: one pwrite at the offset into <root>/sys/bus/pci/devices/
 * <addr>/config, nothing else touched, the file neither truncated nor grown
 * (on a live host the kernel then applies its register semantics). */
static void real_backend_writes_config_with_one_pwrite_at_the_offset(void **state)
{
    (void)state;
    fx_std(&H, 1);
    fx_write(&H);
    fx_snap before, after;
    fx_snapshot(H.root, &before);
    gw_hostops *ops = NULL;
    assert_int_equal(gw_hostops_sysfs_new(&ops, H.root), 0);
    const uint8_t v[4] = { 0xef, 0xbe, 0xad, 0xde };
    assert_int_equal(gw_hostops_write_config(ops, GPU, 0x104, v, 4), 0);
    uint8_t back[4];
    assert_int_equal(gw_hostops_read_config(ops, GPU, 0x104, back, 4), 0);
    assert_memory_equal(back, v, 4);
    assert_int_equal(gw_hostops_write_config(ops, "0000:09:00.0", 0x104, v, 4), -ENOENT);
    assert_int_equal(gw_hostops_write_config(ops, GPU, 4092, v, 4), 0);      /* the last dword */
    memcpy(back, v, 4);
    gw_hostops_unref(ops);
    fx_snapshot(H.root, &after);

    const fx_entry *cfg0 = fx_snap_get(&before, GPUDIR "/config");
    assert_non_null(cfg0);
    assert_int_equal(cfg0->len, 4096);
    uint8_t want[4096];
    memcpy(want, cfg0->data, sizeof want);
    memcpy(want + 0x104, v, 4);
    memcpy(want + 4092, back, 4);
    change ch[] = { { GPUDIR "/config", want, sizeof want } };
    assert_tree_changes(&before, &after, ch, 1);
    fx_snap_free(&before);
    fx_snap_free(&after);
}

/* A hold's descriptor, kept elsewhere across a restart (systemd's store in
 * gpuwardend) and adopted again: only while it is still an open of the
 * node at that path. On a tree the nodes are plain files, so "the same
 * node" is the same file; the kernel's checks (the group still served, the
 * node's one open taken) are the lab's (test_lab_operator.py). */
static void a_kept_hold_is_adopted_only_for_its_own_node(void **state)
{
    (void)state;
    fx_std(&H, 1);
    fx_write(&H);
    mkpath("dev/vfio");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/dev/vfio", H.root);
    fx_write_text(dir, "10", "");
    fx_write_text(dir, "11", "");
    gw_hostops *ops = NULL;
    assert_int_equal(gw_hostops_sysfs_new(&ops, H.root), 0);
    void *held = NULL, *again = NULL;
    assert_int_equal(gw_hostops_hold(ops, "dev/vfio/10", &held), 0);
    int fd = gw_hostops_held_fd(ops, held);
    assert_true(fd >= 0);
    int kept = dup(fd);         /* what the store hands back */
    gw_hostops_release(ops, held);

    /* Another node, a missing one, an escape: refused, the descriptor still
     * the caller's. */
    assert_int_equal(gw_hostops_adopt(ops, "dev/vfio/11", kept, &again), -ESTALE);
    assert_null(again);
    assert_non_null(strstr(gw_error_message(), "is not an open of"));
    assert_int_equal(gw_hostops_adopt(ops, "dev/vfio/12", kept, &again), -ESTALE);
    assert_int_equal(gw_hostops_adopt(ops, "../dev/vfio/10", kept, &again), -EINVAL);
    assert_int_equal(gw_hostops_adopt(ops, "dev/vfio/10", -1, &again), -EINVAL);
    assert_true(fcntl(kept, F_GETFD) >= 0);
    /* Its own node: a hold like any, released with the descriptor. */
    assert_int_equal(gw_hostops_adopt(ops, "dev/vfio/10", kept, &again), 0);
    assert_int_equal(gw_hostops_held_fd(ops, again), kept);
    gw_hostops_release(ops, again);
    assert_int_equal(fcntl(kept, F_GETFD), -1);
    gw_hostops_unref(ops);

    /* The simulator's holds have no descriptor. */
    gw_sim *sim = NULL;
    gw_hostops *simops = NULL;
    assert_int_equal(gw_hostops_sim_new(&simops, &sim, H.root), 0);
    assert_int_equal(gw_hostops_hold(simops, "dev/vfio/10", &held), 0);
    assert_int_equal(gw_hostops_held_fd(simops, held), -EOPNOTSUPP);
    assert_int_equal(gw_hostops_adopt(simops, "dev/vfio/10", 0, &again), -EOPNOTSUPP);
    gw_hostops_release(simops, held);
    gw_hostops_unref(simops);
}

static void version_1_backend_still_works(void **state)
{
    (void)state;
    fx_std(&H, 1);
    fx_write(&H);
    gw_hostops *inner = NULL;
    assert_int_equal(gw_hostops_sysfs_new(&inner, H.root), 0);
    /* Exactly the old size on the heap: reading past destroy is caught. */
    backend_v1 *v1 = malloc(sizeof *v1);
    *v1 = (backend_v1){ 1, "v1", v1_read, v1_write, v1_readlink, v1_list, v1_exists, v1_config, v1_destroy };
    gw_hostops *ops = NULL;
    assert_int_equal(gw_hostops_new(&ops, (const gw_hostops_backend *)v1, inner), 0);
    free(v1);
    void *h = &h;
    assert_int_equal(gw_hostops_hold(ops, "dev/vfio/10", &h), -EOPNOTSUPP);
    assert_null(h);
    gw_hostops_release(ops, NULL);

    static fx_attach att;
    fx_attach_init(&att);
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
    pol.hooks_dir = hooks_dir;
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    gw_sanitize_result *res = NULL;
    assert_int_equal(gw_sanitize_run(&res, ops, &att.base, &pol, &req), 0);
    assert_int_equal(gw_sanitize_result_verdict(res), GW_VERDICT_PASS);
    assert_non_null(strstr(step_of(res, GW_STEP_RESET)->evidence, "/dev/vfio/10 not held: v1: backend cannot hold "
                                                                   "device nodes (vtable version 1)"));
    gw_sanitize_result_free(res);
    gw_hostops_unref(ops);
    assert_int_equal(v1_destroyed_soon(1), 1);

    /* Unknown versions, and hold without release, are refused (data released). */
    gw_hostops_backend be = { .version = GW_HOSTOPS_BACKEND_VERSION + 1, .name = "next", .read = v1_read,
                              .write = v1_write, .readlink = v1_readlink, .list = v1_list, .exists = v1_exists,
                              .read_config = v1_config, .destroy = v1_destroy };
    assert_int_equal(gw_hostops_sysfs_new(&inner, H.root), 0);
    assert_int_equal(gw_hostops_new(&ops, &be, inner), -EINVAL);
    char want[64];
    snprintf(want, sizeof want, "backend version %d, expected 1 to %d", GW_HOSTOPS_BACKEND_VERSION + 1,
             GW_HOSTOPS_BACKEND_VERSION);
    assert_non_null(strstr(gw_error_message(), want));
    be.version = GW_HOSTOPS_BACKEND_VERSION;
    be.hold = hold_stub;
    assert_int_equal(gw_hostops_sysfs_new(&inner, H.root), 0);
    assert_int_equal(gw_hostops_new(&ops, &be, inner), -EINVAL);
    assert_int_equal(v1_destroyed_soon(3), 3);
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
        cmocka_unit_test_teardown(real_backend_finds_a_vfio_holder_in_proc_and_writes_nothing, teardown),
        cmocka_unit_test_teardown(real_backend_holds_the_group_node_across_the_reset, teardown),
        cmocka_unit_test_teardown(real_backend_writes_config_with_one_pwrite_at_the_offset, teardown),
        cmocka_unit_test_teardown(a_kept_hold_is_adopted_only_for_its_own_node, teardown),
        cmocka_unit_test_teardown(version_1_backend_still_works, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
