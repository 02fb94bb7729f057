/* SPDX-License-Identifier: Apache-2.0 */
/* The real host backend: files under a host root, config space through the
 * device's sysfs config file, device nodes (dev/vfio/<group>) held by an
 * open descriptor. On a live host the root is "/"; in tests it is a copied
 * test tree, and then writes land in that tree's files.
 *
 * Every path is resolved inside the root (gw_openat_root(): openat2 with
 * RESOLVE_IN_ROOT), so a symlink in the tree that points out of it (to
 * /etc/shadow, to the real /sys) is never followed there: a read fails, and
 * a clean-up never writes outside the tree it was given. libpci is not used
 * here for that reason: it opens "<root>/sys/..." paths itself, through
 * whatever symlinks they hold. */
#include <gpuwarden/hostops.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "hostops_vfio.h"
#include "util.h"

/* The root as joined to an absolute-looking path ("%s/sys/...") in messages:
 * "/" + "/" + "sys/..." would read "//sys/...". */
#define SHOWN_ROOT(h) ((h)->root.shown)

typedef struct sysfs_host {
    gw_root root;
} sysfs_host;

static int sysfs_read(void *data, const char *path, size_t max, char **out, size_t *len)
{
    sysfs_host *h = data;
    _cleanup_close_ int fd = gw_openat_root(h->root.fd, path, O_RDONLY);
    if (fd < 0)
        return gw_error_set(fd, "%s/%s: %s", SHOWN_ROOT(h), path, gw_root_strerror(fd));
    size_t cap = 4096, n = 0;
    _cleanup_free_ char *buf = gw_xcalloc(cap + 1, 1);
    for (;;) {
        if (n == cap) {
            if (cap >= max)
                return gw_error_set(-EFBIG, "%s/%s: larger than %zu bytes", SHOWN_ROOT(h), path, max);
            cap = cap * 2 > max ? max : cap * 2;
            buf = gw_xrealloc(buf, cap + 1, 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return gw_error_set(-errno, "read %s/%s: %s", SHOWN_ROOT(h), path, strerror(errno));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    *out = GW_TAKE(buf);
    return 0;
}

static int sysfs_write(void *data, const char *path, const void *buf, size_t len)
{
    sysfs_host *h = data;
    /* No O_CREAT: a missing attribute is an error, never a new file; no
     * O_TRUNC: sysfs attributes have no length, one write is the command. */
    _cleanup_close_ int fd = gw_openat_root(h->root.fd, path, O_WRONLY);
    if (fd < 0)
        return gw_error_set(fd, "open %s/%s: %s", SHOWN_ROOT(h), path, gw_root_strerror(fd));
    ssize_t n;
    do
        n = write(fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return gw_error_set(-errno, "write %s/%s: %s", SHOWN_ROOT(h), path, strerror(errno));
    if ((size_t)n != len)
        return gw_error_set(-EIO, "write %s/%s: short write (%zd of %zu bytes)", SHOWN_ROOT(h), path, n, len);
    return 0;
}

static int sysfs_readlink(void *data, const char *path, char **out)
{
    sysfs_host *h = data;
    int r = gw_root_readlink(h->root.fd, path, out);
    if (r < 0)
        return gw_error_set(r, "readlink %s/%s: %s", SHOWN_ROOT(h), path, gw_root_strerror(r));
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sysfs_list(void *data, const char *path, char ***names, size_t *count)
{
    sysfs_host *h = data;
    int fd = gw_openat_root(h->root.fd, path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return gw_error_set(fd, "%s/%s: %s", SHOWN_ROOT(h), path, gw_root_strerror(fd));
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return gw_error_set(-e, "%s/%s: %s", SHOWN_ROOT(h), path, strerror(e));
    }
    char **v = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        v = gw_xrealloc(v, n + 1, sizeof *v);
        v[n++] = gw_xstrdup(de->d_name);
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_names);
    *names = v;
    *count = n;
    return 0;
}

static int sysfs_exists(void *data, const char *path)
{
    sysfs_host *h = data;
    struct stat st;
    int r = gw_root_stat(h->root.fd, path, &st);
    if (r < 0)
        return gw_error_set(r, "%s/%s: %s", SHOWN_ROOT(h), path, gw_root_strerror(r));
    return 0;
}

/* The claim is the open file itself: for /dev/vfio/<group> the kernel
 * refuses a second open with EBUSY while this one lasts. O_RDWR because that
 * is how VFIO users open it; no O_CREAT, a missing node stays missing. */
static int sysfs_hold(void *data, const char *path, void **handle)
{
    sysfs_host *h = data;
    int fd = gw_openat_root(h->root.fd, path, O_RDWR | O_NOCTTY);
    if (fd < 0)
        return gw_error_set(fd, "open %s/%s: %s", SHOWN_ROOT(h), path, gw_root_strerror(fd));
    /* A group node held here is also what VFIO opens devices through. */
    gw_vfio_group *held = gw_xcalloc(1, sizeof *held);
    held->fd = fd;
    held->container = -1;
    *handle = held;
    return 0;
}

static void sysfs_release(void *data, void *handle)
{
    (void)data;
    gw_vfio_group *held = handle;
    if (held->container >= 0)
        close(held->container);
    close(held->fd);
    free(held);
}

/* Holds across a restart (vtable version 4). */
static int sysfs_held_fd(void *data, void *handle)
{
    (void)data;
    return ((gw_vfio_group *)handle)->fd;
}

/* Whether `fd` is the live open of the node at `path`, asked three ways,
 * because a group node's number alone proves little: when a group goes away
 * (its last device leaves vfio-pci) and comes back, the new node may get
 * the old number. So: the same node (character device number; on a test
 * tree, where nodes are plain files, the same file); a group the kernel
 * still serves (an old descriptor's VFIO_GROUP_GET_STATUS is ENODEV); and
 * the node's one open taken, which is this one if anyone's (a fresh open
 * that succeeds means `fd` holds nothing). */
static int sysfs_adopt(void *data, const char *path, int fd, void **handle)
{
    sysfs_host *h = data;
    struct stat now, kept;
    int r = gw_root_stat(h->root.fd, path, &now);
    if (r < 0)
        return gw_error_set(r == -ENOENT ? -ESTALE : r, "%s/%s: %s: the kept descriptor is not its open",
                            SHOWN_ROOT(h), path, gw_root_strerror(r));
    if (fstat(fd, &kept) < 0)
        return gw_error_set(-errno, "kept descriptor %d for %s/%s: %s", fd, SHOWN_ROOT(h), path, strerror(errno));
    bool chr = S_ISCHR(now.st_mode);
    if (chr ? !S_ISCHR(kept.st_mode) || kept.st_rdev != now.st_rdev
            : kept.st_dev != now.st_dev || kept.st_ino != now.st_ino)
        return gw_error_set(-ESTALE, "kept descriptor %d is not an open of %s/%s (another node)", fd,
                            SHOWN_ROOT(h), path);
    if (chr) {
        if ((r = gw_vfio_sys_group_alive(fd)) < 0)
            return gw_error_set(-ESTALE, "kept descriptor %d of %s/%s: the group it opened is gone (%s)", fd,
                                SHOWN_ROOT(h), path, strerror(-r));
        int probe = gw_openat_root(h->root.fd, path, O_RDWR | O_NOCTTY);
        if (probe >= 0) {
            close(probe);
            return gw_error_set(-ESTALE, "kept descriptor %d does not hold %s/%s: a new open of it succeeded",
                                fd, SHOWN_ROOT(h), path);
        }
    }
    gw_vfio_group *held = gw_xcalloc(1, sizeof *held);
    held->fd = fd;
    held->container = -1;
    *handle = held;
    return 0;
}

/* VFIO (vtable version 3): hostops_vfio.c, the container under the root. */
static int sysfs_vfio_open(void *data, void *group, const char *address, void **device)
{
    sysfs_host *h = data;
    return gw_vfio_sys_open(h->root.fd, SHOWN_ROOT(h), group, address, device);
}

static int sysfs_vfio_region(void *data, void *device, unsigned int index, gw_vfio_region *out)
{
    (void)data;
    return gw_vfio_sys_region(device, index, out);
}

static int sysfs_vfio_map(void *data, void *device, unsigned int index, void **addr)
{
    (void)data;
    return gw_vfio_sys_map(device, index, addr);
}

static void sysfs_vfio_unmap(void *data, void *device, unsigned int index, void *addr)
{
    (void)data;
    gw_vfio_sys_unmap(device, index, addr);
}

static int sysfs_vfio_read(void *data, void *device, unsigned int index, uint64_t offset, void *buf, size_t len)
{
    (void)data;
    return gw_vfio_sys_read(device, index, offset, buf, len);
}

static int sysfs_vfio_write(void *data, void *device, unsigned int index, uint64_t offset, const void *buf,
                            size_t len)
{
    (void)data;
    return gw_vfio_sys_write(device, index, offset, buf, len);
}

static int sysfs_vfio_reset_info(void *data, void *device, gw_vfio_reset_dep **deps, size_t *n)
{
    (void)data;
    return gw_vfio_sys_hot_reset_info(device, deps, n);
}

static int sysfs_vfio_hot_reset(void *data, void *device, void *const *groups, size_t n_groups)
{
    (void)data;
    return gw_vfio_sys_hot_reset(device, groups, n_groups);
}

static void sysfs_vfio_close(void *data, void *device)
{
    (void)data;
    gw_vfio_sys_close(device);
}

/* A fresh open of the config file each time, so a reset's effect is what we
 * read; one pread of the whole range, which the kernel's config read
 * (pci_read_config) splits by alignment. A short read (past the 256 or 4096
 * bytes the device has) fails the read. */
static int sysfs_read_config(void *data, const char *address, unsigned int offset, void *buf, size_t len)
{
    sysfs_host *h = data;
    if (!gw_is_bdf(address))
        return gw_error_set(-EINVAL, "config: bad address '%s'", address);
    _cleanup_free_ char *cfg = gw_strdup_printf("sys/bus/pci/devices/%s/config", address);
    _cleanup_close_ int fd = gw_openat_root(h->root.fd, cfg, O_RDONLY);
    if (fd < 0)
        return gw_error_set(fd, "%s/%s: %s", SHOWN_ROOT(h), cfg, gw_root_strerror(fd));
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)offset + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return gw_error_set(-errno, "config %s: cannot read %zu bytes at 0x%x: read failed: %s", address, len,
                                offset, strerror(errno));
        if (n == 0)
            return gw_error_set(-EIO, "config %s: cannot read %zu bytes at 0x%x", address, len, offset);
        got += (size_t)n;
    }
    return 0;
}

/* One pwrite(2) at the offset: the kernel's config write (pci_write_config)
 * splits it by alignment, so a word at an even offset is one word access and
 * never touches the neighbouring register (the Command word next to Status).
 * Not through libpci: it may split or cache writes its own way. */
static int sysfs_write_config(void *data, const char *address, unsigned int offset, const void *buf, size_t len)
{
    sysfs_host *h = data;
    _cleanup_free_ char *cfg = gw_strdup_printf("sys/bus/pci/devices/%s/config", address);
    _cleanup_close_ int fd = gw_openat_root(h->root.fd, cfg, O_WRONLY);
    if (fd < 0)
        return gw_error_set(fd, "open %s/%s: %s", SHOWN_ROOT(h), cfg, gw_root_strerror(fd));
    /* sysfs sizes the file to the config space the device has (256 or 4096
     * bytes); past it a plain file in a test tree would grow instead. */
    struct stat st;
    if (fstat(fd, &st) < 0)
        return gw_error_set(-errno, "%s/%s: %s", SHOWN_ROOT(h), cfg, strerror(errno));
    if ((off_t)offset + (off_t)len > st.st_size)
        return gw_error_set(-EIO, "write %s/%s: %zu bytes at 0x%x are past its %lld bytes", SHOWN_ROOT(h), cfg, len,
                            offset, (long long)st.st_size);
    ssize_t n;
    do
        n = pwrite(fd, buf, len, (off_t)offset);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return gw_error_set(-errno, "write %s/%s at 0x%x: %s", SHOWN_ROOT(h), cfg, offset, strerror(errno));
    if ((size_t)n != len)
        return gw_error_set(-EIO, "write %s/%s at 0x%x: short write (%zd of %zu bytes)", SHOWN_ROOT(h), cfg,
                            offset, n, len);
    return 0;
}

static void sysfs_destroy(void *data)
{
    sysfs_host *h = data;
    if (!h)
        return;
    gw_root_clear(&h->root);
    free(h);
}

GW_EXTERN int gw_hostops_sysfs_new(gw_hostops **out, const char *root)
{
    if (!out)
        return gw_error_set(-EINVAL, "gw_hostops_sysfs_new: out is NULL");
    if (!root || !*root)
        root = "/";
    sysfs_host *h = gw_xcalloc(1, sizeof *h);
    int r = gw_root_init(&h->root, root);
    if (r < 0) {
        free(h);
        return r;
    }
    struct stat st;
    if (gw_root_stat(h->root.fd, "sys/bus/pci", &st) < 0 || !S_ISDIR(st.st_mode)) {
        sysfs_destroy(h);
        return gw_error_set(-ENOENT, "host root %s: no sys/bus/pci directory", root);
    }

    static const char prefix[] = "sysfs:";
    _cleanup_free_ char *name = gw_strdup_printf("%s%s", prefix, *h->root.shown ? h->root.shown : "/");
    gw_hostops_backend be = {
        .version = GW_HOSTOPS_BACKEND_VERSION,
        .name = name,
        .read = sysfs_read,
        .write = sysfs_write,
        .readlink = sysfs_readlink,
        .list = sysfs_list,
        .exists = sysfs_exists,
        .read_config = sysfs_read_config,
        .destroy = sysfs_destroy,
        .hold = sysfs_hold,
        .release = sysfs_release,
        .vfio_open = sysfs_vfio_open,
        .vfio_region = sysfs_vfio_region,
        .vfio_map = sysfs_vfio_map,
        .vfio_unmap = sysfs_vfio_unmap,
        .vfio_read = sysfs_vfio_read,
        .vfio_write = sysfs_vfio_write,
        .vfio_hot_reset_info = sysfs_vfio_reset_info,
        .vfio_hot_reset = sysfs_vfio_hot_reset,
        .vfio_close = sysfs_vfio_close,
        .write_config = sysfs_write_config,
        .held_fd = sysfs_held_fd,
        .adopt = sysfs_adopt,
    };
    return gw_hostops_new(out, &be, h);
}
