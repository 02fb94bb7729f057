/* SPDX-License-Identifier: Apache-2.0 */
/* VFIO device access for the sysfs backend (hostops_vfio.c): the vtable's
 * version-3 operations on a real kernel, through <linux/vfio.h>. The group
 * node is the one the backend's hold() opened, never a second open: Linux 6.1
 * allows one open of /dev/vfio/<group> at a time. */
#ifndef GW_HOSTOPS_VFIO_H
#define GW_HOSTOPS_VFIO_H

#include <gpuwarden/hostops.h>

/* What the sysfs backend's hold() hands out: the open node, and once a device
 * is opened through it, the container the group is attached to. A handle is
 * used by one thread at a time (the step that holds it). */
typedef struct gw_vfio_group {
    int fd;                     /* the held node, e.g. /dev/vfio/45 */
    int container;              /* /dev/vfio/vfio while devices are open, else -1 */
    unsigned int devices;       /* devices open through this group */
} gw_vfio_group;

/* The version-3 operations. `rootfd`/`root` are the backend's host root:
 * the container node is <root>/dev/vfio/vfio. */
int gw_vfio_sys_open(int rootfd, const char *root, gw_vfio_group *group, const char *address, void **device);
/* Whether the kernel still serves group descriptor `fd`: 0, or -errno of
 * VFIO_GROUP_GET_STATUS (ENODEV once the group went away, its last device
 * off vfio-pci, even when a new group has the node's number now). */
int gw_vfio_sys_group_alive(int fd);
int gw_vfio_sys_region(void *device, unsigned int index, gw_vfio_region *out);
int gw_vfio_sys_map(void *device, unsigned int index, void **addr);
void gw_vfio_sys_unmap(void *device, unsigned int index, void *addr);
int gw_vfio_sys_read(void *device, unsigned int index, uint64_t offset, void *buf, size_t len);
int gw_vfio_sys_write(void *device, unsigned int index, uint64_t offset, const void *buf, size_t len);
int gw_vfio_sys_hot_reset_info(void *device, gw_vfio_reset_dep **deps, size_t *n);
int gw_vfio_sys_hot_reset(void *device, void *const *groups, size_t n_groups);
void gw_vfio_sys_close(void *device);

#endif
