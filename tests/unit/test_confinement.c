/* SPDX-License-Identifier: Apache-2.0 */
/* Confinement to the host root (issue 15 item 8): paths under --host-root
 * resolve inside it (util.h, openat2 RESOLVE_IN_ROOT, and the by-hand walk
 * that stands in for it on kernels without openat2), and a malicious copy of
 * a test host, whose attributes and links point out of the tree (at files of
 * the test's own outside it, at the real /sys), is neither read by discovery
 * (error or absent, with a message that says why) nor written by a
 * clean-up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include <gpuwarden/host.h>

#include "sanitize_fixture.h"
#include "sanitize_internal.h"

static char tmp[64];     /* holds root/ (the host root) and out/ (outside it) */
static char root[96], out[96];

static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path)
{
    char *s = NULL;
    assert_int_equal(gw_read_file(path, &s), 0);
    return s;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/gw-confine-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    snprintf(root, sizeof root, "%s/root", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    return mkdir(root, 0755) || mkdir(out, 0755) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- resolution ------------------------------------------------------------ */

/* The same answers from openat2 (gw_openat_root, gw_root_beneath) and from
 * the walk used without it (gw_root_walk_open). */
static int open_in(int rootfd, const char *rel, bool walk)
{
    return walk ? gw_root_walk_open(rootfd, rel, O_RDONLY, false) : gw_openat_root(rootfd, rel, O_RDONLY);
}

static int beneath(int rootfd, const char *rel, bool walk)
{
    if (!walk)
        return gw_root_beneath(rootfd, rel);
    int fd = gw_root_walk_open(rootfd, rel, O_PATH, true);
    if (fd >= 0)
        close(fd);
    return fd < 0 ? fd : 0;
}

static void read_fd_is(int fd, const char *want)
{
    assert_true(fd >= 0);
    char buf[64] = "";
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void links_resolve_inside_the_root(void **state)
{
    (void)state;
    sh("mkdir -p '%s/a' '%s/b' '%s/etc'", root, root, root);
    put(root, "a/file", "inside");
    put(root, "etc/passwd", "tree's own");
    put(out, "secret", "outside");
    sh("ln -s ../a/file '%s/b/rel'", root);                                  /* stays inside */
    sh("ln -s '%s/secret' '%s/b/abs_out'", out, root);                       /* absolute, outside */
    sh("ln -s ../../../../../../../../../../%s/secret '%s/b/up_out'", out + 1, root); /* climbs out */
    sh("ln -s /etc/passwd '%s/b/abs_in'", root);                              /* absolute: the tree's */
    sh("ln -s '%s' '%s/b/outdir'", out, root);                                /* a directory outside */
    gw_root r;
    assert_int_equal(gw_root_init(&r, root), 0);

    for (int walk = 0; walk <= 1; walk++) {
        read_fd_is(open_in(r.fd, "b/rel", walk), "inside");
        assert_int_equal(beneath(r.fd, "b/rel", walk), 0);
        /* Out of the root: never the file outside. */
        assert_int_equal(open_in(r.fd, "b/abs_out", walk), walk ? -ENOENT : -EXDEV);
        assert_int_equal(open_in(r.fd, "b/up_out", walk), walk ? -ENOENT : -EXDEV);
        assert_int_equal(open_in(r.fd, "b/outdir/secret", walk), walk ? -ENOENT : -EXDEV);
        assert_int_equal(beneath(r.fd, "b/abs_out", walk), -EXDEV);
        assert_int_equal(beneath(r.fd, "b/up_out", walk), -EXDEV);
        /* ".." of the root is the root, as in a chroot. */
        read_fd_is(open_in(r.fd, "../../a/file", walk), "inside");
        assert_int_equal(beneath(r.fd, "../a/file", walk), -EXDEV);
        /* An absolute link reads the tree's own file (RESOLVE_IN_ROOT)... */
        read_fd_is(open_in(r.fd, "b/abs_in", walk), "tree's own");
        /* ...which libpci, opening "<root>/b/abs_in" itself, would not. */
        assert_int_equal(beneath(r.fd, "b/abs_in", walk), -EXDEV);
    }

    char *s = NULL;
    assert_int_equal(gw_root_read_file(&r, "b/abs_out", &s), -EXDEV);
    assert_null(s);
    _cleanup_free_ char *want = gw_strdup_printf("%s/b/abs_out: a symbolic link on the way leads outside the host "
                                                 "root (not followed)", root);
    assert_string_equal(gw_error_message(), want);
    assert_int_equal(gw_root_readlink(r.fd, "b/abs_out", &s), 0);
    _cleanup_free_ char *target = gw_strdup_printf("%s/secret", out);
    assert_string_equal(s, target);
    free(s);
    assert_int_equal(gw_root_realpath(r.fd, "b/rel", &s), 0);
    assert_string_equal(s, "a/file");
    free(s);
    assert_int_equal(gw_root_realpath(r.fd, "b/outdir", &s), -ENOENT);  /* <root>/<out> is not there */
    struct stat st;
    assert_int_equal(gw_root_stat(r.fd, "b/abs_out", &st), -EXDEV);
    /* Writes: no O_CREAT anywhere, and nothing outside is opened for writing. */
    assert_int_equal(gw_openat_root(r.fd, "b/abs_out", O_WRONLY), -EXDEV);
    _cleanup_free_ char *sec = slurp(target);
    assert_string_equal(sec, "outside");
    gw_root_clear(&r);
}

/* ---- a malicious test host --------------------------------------------------- */

#define GPU "0000:1a:00.0"
#define GPU_DIR "sys/devices/pci0000:16/0000:16:00.0/0000:17:00.0/0000:18:10.0/0000:1a:00.0"

/* x299-3xa6000 copied to root/, the first GPU's files turned into links out
 * of the tree: to the test's own files in out/ (absolute, and by climbing
 * with ".."), and to the real /sys. Each outside file holds a value that
 * would be taken if it were read. */
static void malicious_copy(void)
{
    sh("cp -a '%s/tests/fixtures/hosts/x299-3xa6000/.' '%s/'", GW_SOURCE_DIR, root);
    put(out, "numa_node", "7\n");
    put(out, "vendor", "0x1234\n");
    put(out, "driver_override", "untouched\n");
    put(out, "reset_method", "bus\n");
    sh("mkdir -p '%s/drivers/evil'", out);
    const char *d = GPU_DIR;
    sh("cd '%s/%s' && rm -f numa_node vendor driver driver_override iommu_group reset_method && "
       "ln -s '%s/numa_node' numa_node && "
       "ln -s ../../../../../../../../../../../../..%s/vendor vendor && "
       "ln -s '%s/drivers/evil' driver && "
       "ln -s '%s/driver_override' driver_override && "
       "ln -s /sys/kernel/iommu_groups/1 iommu_group && "
       "ln -s '%s/reset_method' reset_method",
       root, d, out, out, out, out, out);
}

static bool has_error(const gw_gpu *g, const char *a, const char *b)
{
    for (size_t i = 0; i < g->n_errors; i++)
        if (strstr(g->errors[i], a) && strstr(g->errors[i], b))
            return true;
    return false;
}

static void discovery_reads_nothing_outside_the_root(void **state)
{
    (void)state;
    malicious_copy();
    gw_host_options o = GW_HOST_OPTIONS_INIT;
    o.root = root;
    gw_host *h = NULL;
    assert_int_equal(gw_host_scan(&h, &o), 0);
    const gw_gpu *g = gw_host_find_gpu(h, GPU);
    assert_non_null(g);
    const char *out_msg = "leads outside the host root";
    for (size_t i = 0; i < g->n_errors; i++)
        print_message("  %s\n", g->errors[i]);
    /* numa_node: an error, and not the 7 outside. */
    assert_int_equal(g->numa_node, -1);
    assert_true(has_error(g, "numa_node:", out_msg));
    /* vendor: libpci was not let read it; the ids are the config space's. */
    assert_int_equal(g->vendor_id, 0x10de);
    assert_true(has_error(g, "vendor/device:", out_msg));
    assert_true(has_error(g, "ids taken from config space", out_msg));
    /* driver: not "evil"; iommu_group into the real /sys: not followed. */
    assert_null(g->driver);
    assert_true(has_error(g, "driver: link to", out_msg));
    assert_null(g->iommu_group);
    assert_true(has_error(g, "iommu_group: link to '/sys/kernel/iommu_groups/1'", out_msg));
    assert_false(g->isolation_viable);
    /* reset_method: not "bus". */
    assert_true(has_error(g, "reset_method:", out_msg));
    assert_int_equal(g->n_reset_methods, 0);
    /* The other GPUs are read as ever. */
    const gw_gpu *other = gw_host_find_gpu(h, "0000:67:00.0");
    assert_non_null(other);
    assert_string_equal(other->driver, "vfio-pci");
    gw_host_free(h);
}

static void cleanup_writes_nothing_outside_the_root(void **state)
{
    (void)state;
    malicious_copy();
    gw_hostops *ops;
    assert_int_equal(gw_hostops_sysfs_new(&ops, root), 0);
    const char *ovr = "sys/bus/pci/devices/" GPU "/driver_override";
    assert_int_equal(gw_hostops_write(ops, ovr, "vfio-pci", 8), -EXDEV);
    assert_non_null(strstr(gw_error_message(), "leads outside the host root"));
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(gw_hostops_read(ops, "sys/bus/pci/devices/" GPU "/numa_node", 64, &text, &len), -EXDEV);

    /* A whole clean-up of that GPU, the policy managing it by address: bind
     * is refused its write, and the file outside keeps its bytes. */
    fx_attach att;
    fx_attach_init(&att);
    gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
    const char *addrs[] = { GPU };
    pol.manage_addresses = addrs;
    pol.n_manage_addresses = 1;
    pol.hooks_dir = "/nonexistent/gpuwarden-test-hooks";
    gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
    req.address = GPU;
    gw_sanitize_result *res = NULL;
    assert_int_equal(gw_sanitize_run(&res, ops, &att.base, &pol, &req), 0);
    assert_int_not_equal(gw_sanitize_result_verdict(res), GW_VERDICT_PASS);
    print_message("  %s\n", gw_sanitize_result_reason(res));
    gw_sanitize_result_free(res);
    gw_hostops_unref(ops);
    _cleanup_free_ char *p = gw_strdup_printf("%s/driver_override", out);
    _cleanup_free_ char *after = slurp(p);
    assert_string_equal(after, "untouched");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(links_resolve_inside_the_root, setup, teardown),
        cmocka_unit_test_setup_teardown(discovery_reads_nothing_outside_the_root, setup, teardown),
        cmocka_unit_test_setup_teardown(cleanup_writes_nothing_outside_the_root, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
