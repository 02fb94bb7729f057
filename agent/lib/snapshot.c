/* SPDX-License-Identifier: Apache-2.0 */
/* gw_host_snapshot(): copy the PCI-relevant part of a host's sysfs into a
 * host tree that gw_host_scan() reads exactly like the original.
 *
 * Only reads the source: files are opened O_RDONLY|O_NOFOLLOW, nothing is
 * written or enabled there. Files whose read has side effects or no meaning
 * (BAR resourceN files, which do port I/O for I/O BARs; vpd, which can stall
 * on some devices; rom, which needs an enabling write; write-only files such
 * as reset/remove/rescan) are created empty with the same mode, so the copy
 * has the same shape. */
#include <gpuwarden/host.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "strv.h"
#include "util.h"

#define MAX_ATTR (1u << 20)

typedef struct snap {
    char *src_sys;      /* realpath of <root>/sys */
    char *dst_sys;      /* <out>/sys */
    size_t functions;
    size_t skipped;
} snap;

static int mkdir_p(const char *path, mode_t mode)
{
    _cleanup_free_ char *p = gw_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return gw_error_set(-errno, "mkdir %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return gw_error_set(-errno, "mkdir %s: %s", p, strerror(errno));
    return 0;
}

static int write_new(const char *path, const void *data, size_t len, mode_t mode)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return gw_error_set(-errno, "create %s: %s", path, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)data + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return gw_error_set(-errno, "write %s: %s", path, strerror(errno));
        }
        done += (size_t)n;
    }
    if (fchmod(fd, mode) < 0)   /* the umask must not change the shape */
        return gw_error_set(-errno, "chmod %s: %s", path, strerror(errno));
    return 0;
}

/* Read a source attribute; sysfs files report a size of 4096 whatever they
 * hold, so read to EOF. */
static int read_src(const char *path, char **out, size_t *len)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, got = 0;
    _cleanup_free_ char *buf = gw_xcalloc(cap, 1);
    for (;;) {
        if (got == cap) {
            if (cap >= MAX_ATTR)
                return -EFBIG;
            cap *= 2;
            buf = gw_xrealloc(buf, cap, 1);
        }
        ssize_t n = pread(fd, buf + got, cap - got, (off_t)got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    *out = GW_TAKE(buf);
    *len = got;
    return 0;
}

static bool placeholder_only(const char *name, mode_t mode)
{
    if (!(mode & 0444))
        return true;   /* write-only: reset, remove, rescan, bind, ... */
    if (!strcmp(name, "rom") || !strcmp(name, "vpd"))
        return true;
    return !strncmp(name, "resource", 8) && name[8] >= '0' && name[8] <= '9';
}

static void copy_file(snap *s, const char *src, const char *dst, const char *name, mode_t mode)
{
    char *data = NULL;
    size_t len = 0;
    if (!placeholder_only(name, mode)) {
        int r = read_src(src, &data, &len);
        if (r < 0) {
            /* Some attributes refuse reads in some states (EIO, EINVAL):
             * keep the shape, note it. */
            gw_log(GW_LOG_WARNING, "snapshot: %s: %s; created empty", src, strerror(-r));
            s->skipped++;
        }
    }
    if (write_new(dst, data ? data : "", len, mode & 0777) < 0)
        gw_log(GW_LOG_WARNING, "snapshot: %s", gw_error_message());
    free(data);
}

/* Relative path from directory `from` to `to`, both absolute. */
static char *relpath(const char *from, const char *to)
{
    size_t i = 0, cut = 0;
    while (from[i] && to[i] && from[i] == to[i]) {
        if (from[i] == '/')
            cut = i;
        i++;
    }
    if ((!from[i] && (to[i] == '/' || !to[i])) || (!to[i] && from[i] == '/'))
        cut = i;
    size_t ups = 0;
    for (const char *p = from + cut; *p; p++)
        ups += *p == '/';
    const char *rest = to + cut + (to[cut] == '/');
    char *out = gw_xcalloc(ups * 3 + strlen(rest) + 2, 1);
    for (size_t k = 0; k < ups; k++)
        strcat(out, "../");
    strcat(out, rest);
    if (!*out)
        strcpy(out, ".");
    return out;
}

/* Recreate link `name` of source dir `src_dir` (a directory under src_sys,
 * whose copy is `dst_dir`). A link that resolves inside <root>/sys is
 * rewritten relative; a dangling one is copied verbatim so a broken tree
 * stays broken; others are dropped. */
static void copy_link(snap *s, const char *src_dir, const char *dst_dir, const char *name)
{
    _cleanup_free_ char *src = gw_strdup_printf("%s/%s", src_dir, name);
    _cleanup_free_ char *dst = gw_strdup_printf("%s/%s", dst_dir, name);
    _cleanup_free_ char *real = realpath(src, NULL);
    _cleanup_free_ char *target = NULL;
    size_t n = strlen(s->src_sys);
    if (real && !strncmp(real, s->src_sys, n) && (real[n] == '/' || !real[n])) {
        _cleanup_free_ char *src_real_dir = realpath(src_dir, NULL);
        if (!src_real_dir)
            return;
        target = relpath(src_real_dir, real);
    } else if (!real) {
        char buf[PATH_MAX];
        ssize_t len = readlink(src, buf, sizeof buf - 1);
        if (len < 0)
            return;
        buf[len] = '\0';
        target = gw_xstrdup(buf);
    } else {
        return;
    }
    if (symlink(target, dst) < 0 && errno != EEXIST)
        gw_log(GW_LOG_WARNING, "snapshot: symlink %s: %s", dst, strerror(errno));
}

static bool keep_link(const char *name)
{
    return !strcmp(name, "driver") || !strcmp(name, "iommu_group") || !strcmp(name, "physfn") ||
           !strncmp(name, "virtfn", 6) || !strcmp(name, "subsystem");
}

/* Attribute files and the links discovery needs, not subdirectories (child
 * functions are copied on their own; power/, msi_irqs/ are not needed). */
static void copy_function_dir(snap *s, const char *src_real, const char *dst)
{
    DIR *d = opendir(src_real);
    if (!d) {
        gw_log(GW_LOG_WARNING, "snapshot: %s: %s", src_real, strerror(errno));
        s->skipped++;
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *src = gw_strdup_printf("%s/%s", src_real, de->d_name);
        _cleanup_free_ char *out = gw_strdup_printf("%s/%s", dst, de->d_name);
        struct stat st;
        if (lstat(src, &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            if (keep_link(de->d_name))
                copy_link(s, src_real, dst, de->d_name);
        } else if (S_ISREG(st.st_mode)) {
            copy_file(s, src, out, de->d_name, st.st_mode);
        }
    }
    closedir(d);
}

/* One entry of bus/pci/devices: the function's directory at the same path
 * under <out>/sys/devices with its attributes, and the link to it. Broken
 * entries (dangling links, plain files, directories in a flat tree) are
 * reproduced as they are, so a replay shows the same problems. */
static int copy_function(snap *s, const char *name)
{
    _cleanup_free_ char *src_devs = gw_strdup_printf("%s/bus/pci/devices", s->src_sys);
    _cleanup_free_ char *dst_devs = gw_strdup_printf("%s/bus/pci/devices", s->dst_sys);
    _cleanup_free_ char *entry = gw_strdup_printf("%s/%s", src_devs, name);
    _cleanup_free_ char *dst_entry = gw_strdup_printf("%s/%s", dst_devs, name);
    struct stat st;
    if (lstat(entry, &st) < 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        int r = mkdir_p(dst_entry, st.st_mode & 0777);
        if (r < 0)
            return r;
        copy_function_dir(s, entry, dst_entry);
        s->functions++;
        return 0;
    }
    if (S_ISREG(st.st_mode)) {
        copy_file(s, entry, dst_entry, name, st.st_mode);
        return 0;
    }
    _cleanup_free_ char *real = realpath(entry, NULL);
    size_t n = strlen(s->src_sys);
    if (!real || strncmp(real, s->src_sys, n) || real[n] != '/' || stat(real, &st) < 0 ||
        !S_ISDIR(st.st_mode)) {
        copy_link(s, src_devs, dst_devs, name);
        return 0;
    }
    _cleanup_free_ char *dst = gw_strdup_printf("%s%s", s->dst_sys, real + n);
    int r = mkdir_p(dst, 0755);
    if (r < 0)
        return r;
    copy_function_dir(s, real, dst);
    _cleanup_free_ char *target = relpath(dst_devs, dst);
    if (symlink(target, dst_entry) < 0)
        return gw_error_set(-errno, "symlink %s: %s", dst_entry, strerror(errno));
    s->functions++;
    return 0;
}

typedef void (*entry_fn)(snap *s, const char *src_dir, const char *dst_dir, const char *name,
                         const struct stat *st);

/* Call fn for each entry of <src_sys>/<rel>, after creating <dst_sys>/<rel>. */
static int each_entry(snap *s, const char *rel, entry_fn fn)
{
    _cleanup_free_ char *src = gw_strdup_printf("%s/%s", s->src_sys, rel);
    _cleanup_free_ char *dst = gw_strdup_printf("%s/%s", s->dst_sys, rel);
    DIR *d = opendir(src);
    if (!d)
        return errno == ENOENT ? 0 : gw_error_set(-errno, "%s: %s", src, strerror(errno));
    int r = mkdir_p(dst, 0755);
    if (r < 0) {
        closedir(d);
        return r;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *p = gw_strdup_printf("%s/%s", src, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0)
            fn(s, src, dst, de->d_name, &st);
    }
    closedir(d);
    return 0;
}

/* Files only (bus/pci, nodes: no recursion). */
static void files_only(snap *s, const char *src_dir, const char *dst_dir, const char *name,
                       const struct stat *st)
{
    if (!S_ISREG(st->st_mode))
        return;
    _cleanup_free_ char *src = gw_strdup_printf("%s/%s", src_dir, name);
    _cleanup_free_ char *dst = gw_strdup_printf("%s/%s", dst_dir, name);
    copy_file(s, src, dst, name, st->st_mode);
}

/* Files, and links named like addresses (drivers/<drv>/<bdf>,
 * iommu_groups/<n>/devices/<bdf>). */
static void files_and_bdf_links(snap *s, const char *src_dir, const char *dst_dir,
                                const char *name, const struct stat *st)
{
    if (S_ISLNK(st->st_mode) && gw_is_bdf(name))
        copy_link(s, src_dir, dst_dir, name);
    else
        files_only(s, src_dir, dst_dir, name, st);
}

static void driver_dir(snap *s, const char *src_dir, const char *dst_dir, const char *name,
                       const struct stat *st)
{
    if (!S_ISDIR(st->st_mode))
        return;
    _cleanup_free_ char *rel = gw_strdup_printf("bus/pci/drivers/%s", name);
    if (each_entry(s, rel, files_and_bdf_links) < 0)
        gw_log(GW_LOG_WARNING, "snapshot: %s", gw_error_message());
}

static void group_dir(snap *s, const char *src_dir, const char *dst_dir, const char *name,
                      const struct stat *st)
{
    if (!S_ISDIR(st->st_mode))
        return;
    _cleanup_free_ char *rel = gw_strdup_printf("kernel/iommu_groups/%s", name);
    _cleanup_free_ char *devs = gw_strdup_printf("%s/devices", rel);
    if (each_entry(s, rel, files_only) < 0 || each_entry(s, devs, files_and_bdf_links) < 0)
        gw_log(GW_LOG_WARNING, "snapshot: %s", gw_error_message());
}

static void node_dir(snap *s, const char *src_dir, const char *dst_dir, const char *name,
                     const struct stat *st)
{
    if (S_ISREG(st->st_mode)) {
        files_only(s, src_dir, dst_dir, name, st);
        return;
    }
    if (!S_ISDIR(st->st_mode) || strncmp(name, "node", 4))
        return;
    static const char *const keep[] = { "cpulist", "cpumap", "distance" };
    _cleanup_free_ char *sd = gw_strdup_printf("%s/%s", src_dir, name);
    _cleanup_free_ char *dd = gw_strdup_printf("%s/%s", dst_dir, name);
    if (mkdir_p(dd, 0755) < 0)
        return;
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        _cleanup_free_ char *src = gw_strdup_printf("%s/%s", sd, keep[i]);
        _cleanup_free_ char *dst = gw_strdup_printf("%s/%s", dd, keep[i]);
        struct stat fst;
        if (lstat(src, &fst) == 0 && S_ISREG(fst.st_mode))
            copy_file(s, src, dst, keep[i], fst.st_mode);
    }
}

static void slot_dir(snap *s, const char *src_dir, const char *dst_dir, const char *name,
                     const struct stat *st)
{
    if (!S_ISDIR(st->st_mode))
        return;
    _cleanup_free_ char *rel = gw_strdup_printf("bus/pci/slots/%s", name);
    if (each_entry(s, rel, files_only) < 0)
        gw_log(GW_LOG_WARNING, "snapshot: %s", gw_error_message());
}

static bool under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && (path[n] == '/' || !path[n]);
}

static char *strndup_or_root(const char *s, size_t n)
{
    return n ? gw_strdup_printf("%.*s", (int)n, s) : gw_xstrdup("/");
}

/* The output must be a new or empty directory outside the source tree and
 * any sysfs/procfs; checked before anything is created. Its parent must
 * exist. Returns the output's real path in *real_out. */
static int prepare_out(const snap *s, const char *out_dir, char **real_out)
{
    _cleanup_free_ char *copy = gw_xstrdup(out_dir);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    char *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    _cleanup_free_ char *parent = slash ? strndup_or_root(copy, (size_t)(slash - copy))
                                        : gw_xstrdup(".");
    _cleanup_free_ char *rparent = realpath(parent, NULL);
    if (!rparent)
        return gw_error_set(-errno, "snapshot: %s: %s", parent, strerror(errno));
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return gw_error_set(-EINVAL, "snapshot: %s: give a directory name", out_dir);
    _cleanup_free_ char *real = gw_strdup_printf("%s/%s", strcmp(rparent, "/") ? rparent : "", base);
    if (under(real, s->src_sys) || under(real, "/sys") || under(real, "/proc") ||
        under(s->src_sys, real))
        return gw_error_set(-EINVAL, "snapshot: refusing to write into %s", real);
    if (mkdir(real, 0755) < 0) {
        if (errno != EEXIST)
            return gw_error_set(-errno, "snapshot: mkdir %s: %s", real, strerror(errno));
        DIR *d = opendir(real);
        if (!d)
            return gw_error_set(-errno, "snapshot: %s: %s", real, strerror(errno));
        struct dirent *de;
        bool empty = true;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                empty = false;
        closedir(d);
        if (!empty)
            return gw_error_set(-EEXIST, "snapshot: %s is not empty", real);
    }
    *real_out = GW_TAKE(real);
    return 0;
}

static int copy_tree(snap *s)
{
    _cleanup_free_ char *devs = gw_strdup_printf("%s/bus/pci/devices", s->src_sys);
    DIR *d = opendir(devs);
    if (!d)
        return gw_error_set(-errno, "snapshot: cannot read %s: %s", devs, strerror(errno));
    gw_strv names = { 0 };
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            gw_strv_push(&names, gw_xstrdup(de->d_name));
    closedir(d);
    _cleanup_free_ char *dst_devs = gw_strdup_printf("%s/bus/pci/devices", s->dst_sys);
    int r = mkdir_p(dst_devs, 0755);
    for (size_t i = 0; r == 0 && i < names.n; i++)
        r = copy_function(s, names.v[i]);
    gw_strv_free(&names);
    if (r == 0)
        r = each_entry(s, "bus/pci", files_only);
    if (r == 0)
        r = each_entry(s, "bus/pci/drivers", driver_dir);
    if (r == 0)
        r = each_entry(s, "bus/pci/slots", slot_dir);
    if (r == 0)
        r = each_entry(s, "kernel/iommu_groups", group_dir);
    if (r == 0)
        r = each_entry(s, "devices/system/node", node_dir);
    return r;
}

GW_EXTERN int gw_host_snapshot(const char *root, const char *out_dir, size_t *n_functions,
                               size_t *n_skipped)
{
    if (!out_dir || !*out_dir)
        return gw_error_set(-EINVAL, "snapshot: no output directory");
    if (!root || !*root)
        root = "/";
    _cleanup_free_ char *sys = gw_strdup_printf("%s/sys", strcmp(root, "/") ? root : "");
    snap s = { 0 };
    s.src_sys = realpath(sys, NULL);
    if (!s.src_sys)
        return gw_error_set(-errno, "snapshot: %s: %s", sys, strerror(errno));
    _cleanup_free_ char *out_real = NULL;
    int r = prepare_out(&s, out_dir, &out_real);
    if (r < 0) {
        free(s.src_sys);
        return r;
    }
    s.dst_sys = gw_strdup_printf("%s/sys", out_real);

    r = copy_tree(&s);
    if (r == 0) {
        if (n_functions)
            *n_functions = s.functions;
        if (n_skipped)
            *n_skipped = s.skipped;
    }
    free(s.src_sys);
    free(s.dst_sys);
    return r;
}
