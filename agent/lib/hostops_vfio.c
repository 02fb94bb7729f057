/* SPDX-License-Identifier: Apache-2.0 */
/* VFIO device access on a real kernel (the sysfs backend's vtable version 3):
 * what QEMU does to get at a device, reduced to what the clean-up needs -
 * a container, the held group attached to it, the device fd, its regions,
 * and the PCI hot reset (a secondary bus reset with every affected group
 * proved to be ours by its open descriptor).
 *
 * The group is never opened here: the caller holds /dev/vfio/<group> through
 * the backend's hold() (it keeps VMs out during the clean-up) and Linux 6.1
 * refuses a second open with EBUSY, so the hold's descriptor is the one VFIO
 * gets. The container lives as long as a device is open through the group. */
#include <fcntl.h>
#include <linux/vfio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "hostops_vfio.h"
#include "util.h"

#define N_REGIONS (VFIO_PCI_ROM_REGION_INDEX + 1)

typedef struct vfio_region_cache {
    bool known;
    struct vfio_region_info info;
} vfio_region_cache;

typedef struct vfio_dev {
    int fd;
    gw_vfio_group *group;       /* borrowed: the hold's */
    char address[GW_ADDR_LEN];
    vfio_region_cache regions[N_REGIONS];
} vfio_dev;

static int vfio_err(int e, const char *what, const char *address)
{
    return gw_error_set(-e, "VFIO %s %s: %s", what, address, strerror(e));
}

int gw_vfio_sys_group_alive(int fd)
{
    struct vfio_group_status st = { .argsz = sizeof st };
    return ioctl(fd, VFIO_GROUP_GET_STATUS, &st) < 0 ? -errno : 0;
}

/* Attach the held group to a container of its own, with an IOMMU model: the
 * kernel hands out device fds only then. Type1v2 is what every current
 * kernel has; type1 for older ones. */
static int attach_container(int rootfd, const char *root, gw_vfio_group *g, const char *address)
{
    /* Inside the root like every other path (util.h): dev/vfio/vfio of a
     * test tree that links out must not open the real container. */
    _cleanup_close_ int c = gw_openat_root(rootfd, "dev/vfio/vfio", O_RDWR);
    if (c < 0)
        return gw_error_set(c, "open %s/dev/vfio/vfio: %s (vfio not loaded?)", root, gw_root_strerror(c));
    if (ioctl(c, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
        return gw_error_set(-EINVAL, "%s/dev/vfio/vfio: unknown VFIO API version", root);
    struct vfio_group_status st = { .argsz = sizeof st };
    if (ioctl(g->fd, VFIO_GROUP_GET_STATUS, &st) < 0)
        return vfio_err(errno, "group status for", address);
    if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE))
        return gw_error_set(-EPERM, "VFIO open %s: IOMMU group not viable (a member is bound to a host "
                            "driver): the kernel gives no device of it to userspace", address);
    if (ioctl(g->fd, VFIO_GROUP_SET_CONTAINER, &c) < 0)
        return vfio_err(errno, "attach the group to a container for", address);
    int type = ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) > 0 ? VFIO_TYPE1v2_IOMMU : VFIO_TYPE1_IOMMU;
    if (ioctl(c, VFIO_SET_IOMMU, type) < 0) {
        int e = errno;
        ioctl(g->fd, VFIO_GROUP_UNSET_CONTAINER);
        return gw_error_set(-e, "VFIO set IOMMU type%s for %s: %s", type == VFIO_TYPE1v2_IOMMU ? "1v2" : "1",
                            address, strerror(e));
    }
    g->container = c;
    c = -1;     /* the group's now */
    return 0;
}

static void detach_container(gw_vfio_group *g)
{
    if (g->devices || g->container < 0)
        return;
    ioctl(g->fd, VFIO_GROUP_UNSET_CONTAINER);
    close(g->container);
    g->container = -1;
}

int gw_vfio_sys_open(int rootfd, const char *root, gw_vfio_group *g, const char *address, void **device)
{
    if (g->container < 0) {
        int r = attach_container(rootfd, root, g, address);
        if (r < 0)
            return r;
    }
    int fd = ioctl(g->fd, VFIO_GROUP_GET_DEVICE_FD, address);
    if (fd < 0) {
        int e = errno;
        detach_container(g);
        return gw_error_set(-e, "VFIO open %s: %s%s", address, strerror(e),
                            e == ENODEV ? " (not in this IOMMU group, or not on vfio-pci)" : "");
    }
    vfio_dev *d = gw_xcalloc(1, sizeof *d);
    d->fd = fd;
    d->group = g;
    snprintf(d->address, sizeof d->address, "%s", address);
    g->devices++;
    *device = d;
    return 0;
}

static int region_info(vfio_dev *d, unsigned int index, struct vfio_region_info **out)
{
    if (index >= N_REGIONS)
        return gw_error_set(-EINVAL, "VFIO %s: region %u is not a BAR or the ROM", d->address, index);
    vfio_region_cache *rc = &d->regions[index];
    if (!rc->known) {
        rc->info = (struct vfio_region_info){ .argsz = sizeof rc->info, .index = index };
        if (ioctl(d->fd, VFIO_DEVICE_GET_REGION_INFO, &rc->info) < 0)
            return gw_error_set(-errno, "VFIO region %u info of %s: %s", index, d->address, strerror(errno));
        rc->known = true;
    }
    *out = &rc->info;
    return 0;
}

int gw_vfio_sys_region(void *device, unsigned int index, gw_vfio_region *out)
{
    struct vfio_region_info *ri = NULL;   /* set on success; gcc 12 -O2 cannot tell */
    int r = region_info(device, index, &ri);
    if (r < 0)
        return r;
    out->size = ri->size;
    out->flags = (ri->flags & VFIO_REGION_INFO_FLAG_READ ? GW_VFIO_REGION_READ : 0) |
                 (ri->flags & VFIO_REGION_INFO_FLAG_WRITE ? GW_VFIO_REGION_WRITE : 0) |
                 (ri->flags & VFIO_REGION_INFO_FLAG_MMAP ? GW_VFIO_REGION_MMAP : 0);
    return 0;
}

int gw_vfio_sys_map(void *device, unsigned int index, void **addr)
{
    vfio_dev *d = device;
    struct vfio_region_info *ri = NULL;   /* set on success; gcc 12 -O2 cannot tell */
    int r = region_info(d, index, &ri);
    if (r < 0)
        return r;
    if (!(ri->flags & VFIO_REGION_INFO_FLAG_MMAP) || !ri->size)
        return gw_error_set(-EOPNOTSUPP, "VFIO %s region %u: the kernel does not allow mmap", d->address, index);
    void *p = mmap(NULL, ri->size, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, (off_t)ri->offset);
    if (p == MAP_FAILED)
        return gw_error_set(-errno, "VFIO mmap %s region %u (%llu bytes): %s", d->address, index,
                            (unsigned long long)ri->size, strerror(errno));
    *addr = p;
    return 0;
}

void gw_vfio_sys_unmap(void *device, unsigned int index, void *addr)
{
    vfio_dev *d = device;
    if (index < N_REGIONS && d->regions[index].known)
        munmap(addr, d->regions[index].info.size);
}

/* pread/pwrite on the device at the region's offset, to the last byte. */
static int region_io(vfio_dev *d, unsigned int index, uint64_t offset, void *buf, size_t len, bool write)
{
    struct vfio_region_info *ri = NULL;   /* set on success; gcc 12 -O2 cannot tell */
    int r = region_info(d, index, &ri);
    if (r < 0)
        return r;
    if (offset > ri->size || len > ri->size - offset)
        return gw_error_set(-EINVAL, "VFIO %s region %u: %zu bytes at 0x%llx are past its %llu bytes", d->address,
                            index, len, (unsigned long long)offset, (unsigned long long)ri->size);
    for (size_t done = 0; done < len;) {
        off_t at = (off_t)(ri->offset + offset + done);
        ssize_t n = write ? pwrite(d->fd, (const char *)buf + done, len - done, at)
                          : pread(d->fd, (char *)buf + done, len - done, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return gw_error_set(n < 0 ? -errno : -EIO, "VFIO %s %s region %u at 0x%llx: %s",
                                write ? "write to" : "read of", d->address, index,
                                (unsigned long long)(offset + done), n < 0 ? strerror(errno) : "short transfer");
        done += (size_t)n;
    }
    return 0;
}

int gw_vfio_sys_read(void *device, unsigned int index, uint64_t offset, void *buf, size_t len)
{
    return region_io(device, index, offset, buf, len, false);
}

int gw_vfio_sys_write(void *device, unsigned int index, uint64_t offset, const void *buf, size_t len)
{
    return region_io(device, index, offset, (void *)buf, len, true);
}

int gw_vfio_sys_hot_reset_info(void *device, gw_vfio_reset_dep **deps, size_t *n)
{
    vfio_dev *d = device;
    /* First with room for none: the kernel answers ENOSPC and the count. */
    _cleanup_free_ struct vfio_pci_hot_reset_info *info = gw_xcalloc(1, sizeof *info);
    info->argsz = sizeof *info;
    if (ioctl(d->fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info) < 0 && errno != ENOSPC)
        return gw_error_set(-errno, "VFIO hot reset info of %s: %s%s", d->address, strerror(errno),
                            errno == ENODEV ? " (no bus or slot reset possible: on the root bus, or its bridge "
                                              "cannot reset)" : "");
    size_t count = info->count;
    size_t size = sizeof *info + count * sizeof info->devices[0];
    free(info);
    info = gw_xcalloc(1, size);
    info->argsz = (uint32_t)size;
    if (ioctl(d->fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info) < 0)
        return gw_error_set(-errno, "VFIO hot reset info of %s: %s", d->address, strerror(errno));
    gw_vfio_reset_dep *v = gw_xcalloc(info->count ? info->count : 1, sizeof *v);
    for (uint32_t i = 0; i < info->count; i++) {
        const struct vfio_pci_dependent_device *dd = &info->devices[i];
        snprintf(v[i].address, sizeof v[i].address, "%04x:%02x:%02x.%x", dd->segment, dd->bus, dd->devfn >> 3,
                 dd->devfn & 7);
        v[i].group = dd->group_id;
    }
    *deps = v;
    *n = info->count;
    return 0;
}

int gw_vfio_sys_hot_reset(void *device, void *const *groups, size_t n_groups)
{
    vfio_dev *d = device;
    size_t size = sizeof(struct vfio_pci_hot_reset) + n_groups * sizeof(int32_t);
    _cleanup_free_ struct vfio_pci_hot_reset *rs = gw_xcalloc(1, size);
    rs->argsz = (uint32_t)size;
    rs->count = (uint32_t)n_groups;
    for (size_t i = 0; i < n_groups; i++)
        rs->group_fds[i] = ((const gw_vfio_group *)groups[i])->fd;
    if (ioctl(d->fd, VFIO_DEVICE_PCI_HOT_RESET, rs) < 0)
        return gw_error_set(-errno, "VFIO hot reset through %s: %s", d->address, strerror(errno));
    return 0;
}

void gw_vfio_sys_close(void *device)
{
    vfio_dev *d = device;
    close(d->fd);
    d->group->devices--;
    detach_container(d->group);
    free(d);
}
