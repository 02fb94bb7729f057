/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/hostops.h - host backends: every operation the clean-up performs
 * on a host (reading an attribute, writing driver_override, reading config
 * space, following a link) goes through one of these.
 *
 * A backend is a struct of function pointers plus its data, wrapped in a
 * reference-counted gw_hostops object. Paths are relative to the host root
 * and use the kernel's sysfs layout: "sys/bus/pci/devices/0000:3b:00.0/reset".
 * Absolute paths and ".." components are refused before a backend sees them,
 * so no backend can be talked into touching anything outside its root.
 *
 * The real backend, gw_hostops_sysfs_new(), works on a host root: "/" on a
 * live host, a directory tree shaped like sysfs in tests (its writes then land
 * in the tree's files). The library also has a simulated backend (internal,
 * agent/lib/hostops_sim.h) that models what the kernel does after a write.
 *
 *     gw_hostops *ops;
 *     if (gw_hostops_sysfs_new(&ops, "/srv/hosts/hgx") < 0)
 *         errx(1, "%s", gw_error_message());
 *     char *text; size_t len;
 *     gw_hostops_read(ops, "sys/bus/pci/devices/0000:3b:00.0/reset_method", 4096, &text, &len);
 *     free(text);
 *     gw_hostops_unref(ops);
 *
 * Backends must be safe to call from several threads at once: the clean-up
 * runs one device per worker thread.
 *
 * Besides sysfs, the clean-up reads `proc/<pid>/fd/<n>` links and
 * `proc/<pid>/comm` through the same backend (who holds a VFIO node open), and
 * holds the GPU's `dev/vfio/<group>` open from the end of its bind step to
 * the end of the run (hold/release, vtable version 2), so that no VM can
 * open the group in the meantime, a hot-plug included:
 *
 *     void *held;
 *     int r = gw_hostops_hold(ops, "dev/vfio/45", &held);
 *     if (r == -EBUSY)
 *         ... a process (a running QEMU) has the group: do not clean ...
 *     else {
 *         ... reset, scrub, checks (r == -ENOENT: no node to hold, go on) ...
 *         gw_hostops_release(ops, held);      // NULL is fine
 *     }
 *
 * A backend written against version 1 (no hold/release) keeps working: it
 * states `.version = 1` and is read only up to `destroy`.
 *
 * Since vtable version 3 a backend may also give access to a device through
 * VFIO (the kernel's userspace device interface: what QEMU uses), for what
 * sysfs cannot do: a secondary bus reset of the slot (VFIO hot reset), and
 * reading and writing a BAR's memory (the scrub). The device is opened
 * through a group node the caller already holds (gw_hostops_hold()): Linux
 * 6.1 allows one open of /dev/vfio/<group>, so the hold that keeps VMs out is
 * also the open VFIO needs, never a second one.
 *
 *     void *group, *dev;
 *     gw_hostops_hold(ops, "dev/vfio/45", &group);
 *     if (gw_hostops_vfio_open(ops, group, "0000:3b:00.1", &dev) == 0) {
 *         gw_vfio_region bar;
 *         gw_hostops_vfio_region(ops, dev, 2, &bar);      // BAR 2: size, flags
 *         ... gw_hostops_vfio_map() / _write() / _read() ...
 *         gw_hostops_vfio_close(ops, dev);
 *     }
 *     gw_hostops_release(ops, group);                     // after the close
 */
#ifndef GPUWARDEN_HOSTOPS_H
#define GPUWARDEN_HOSTOPS_H

#include <gpuwarden/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gw_hostops gw_hostops;

/* A region of a device opened through VFIO (BAR 0-5 are regions 0-5, the ROM
 * BAR 6), as VFIO_DEVICE_GET_REGION_INFO describes it. */
typedef struct gw_vfio_region {
    uint64_t size;              /* bytes; 0 = not implemented (no such BAR) */
    unsigned int flags;         /* GW_VFIO_REGION_* */
} gw_vfio_region;

#define GW_VFIO_REGION_READ 0x1u    /* gw_hostops_vfio_read() works */
#define GW_VFIO_REGION_WRITE 0x2u   /* gw_hostops_vfio_write() works */
#define GW_VFIO_REGION_MMAP 0x4u    /* gw_hostops_vfio_map() may work (the kernel allows it) */

/* A function that a bus reset of a device resets as well (the device itself
 * included), with its IOMMU group: an entry of
 * VFIO_DEVICE_GET_PCI_HOT_RESET_INFO. */
typedef struct gw_vfio_reset_dep {
    char address[GW_ADDR_LEN];  /* "0000:3b:00.1" */
    unsigned int group;         /* IOMMU group number */
} gw_vfio_reset_dep;

/* The vtable a backend implements. Every function returns 0 or a negative
 * errno and sets the message (gw_error_message()) on failure. */
typedef struct gw_hostops_backend {
    unsigned int version;
    /* Short description for evidence and logs, e.g. "sysfs:/". */
    const char *name;
    /* Read a whole attribute (text or binary). At most `max` bytes, more is
     * -EFBIG. *out is malloc'd and NUL-terminated after its `len` bytes. */
    int (*read)(void *data, const char *path, size_t max, char **out, size_t *len);
    /* Write `len` bytes to an existing attribute in one write(2) at offset 0
     * (sysfs attributes take one write per open). Never creates a file. */
    int (*write)(void *data, const char *path, const void *buf, size_t len);
    /* Target of a symbolic link, exactly as stored; -ENOENT when absent. */
    int (*readlink)(void *data, const char *path, char **out);
    /* Entries of a directory (no "." or ".."), sorted by strcmp. The caller
     * frees each name and the array. */
    int (*list)(void *data, const char *path, char ***names, size_t *n);
    /* 0 when `path` exists (links followed), -ENOENT when not. */
    int (*exists)(void *data, const char *path);
    /* `len` bytes of config space of `address` ("0000:3b:00.0") from
     * `offset`; -EIO when that range cannot be read. */
    int (*read_config)(void *data, const char *address, unsigned int offset, void *buf, size_t len);
    /* Release `data` when the last reference goes. May be NULL. */
    void (*destroy)(void *data);

    /* ---- version 2 (optional: both NULL, or both set) ---- */

    /* Open the device node at `path` ("dev/vfio/5") and keep it open until
     * release(): an exclusive claim where the kernel makes it one (the VFIO
     * group node of Linux 6.1 allows one open at a time; a second open gets
     * -EBUSY, the kernel's own verdict that someone holds the group). *handle
     * is the backend's, passed back to release(). Returns -EBUSY when someone
     * else holds it, -ENOENT when there is no such node (a test tree, or no
     * function of the group on vfio-pci), other negative errnos as open(2)
     * gives them; the message says which. */
    int (*hold)(void *data, const char *path, void **handle);
    /* Let go of what hold() opened. */
    void (*release)(void *data, void *handle);

    /* ---- version 3: VFIO device access (optional: all NULL, or all set) ----
     * `device` is the backend's handle from vfio_open(). The calls are those
     * of gw_hostops_vfio_*() below, which check the arguments first. */
    int (*vfio_open)(void *data, void *group, const char *address, void **device);
    int (*vfio_region)(void *data, void *device, unsigned int index, gw_vfio_region *out);
    int (*vfio_map)(void *data, void *device, unsigned int index, void **addr);
    void (*vfio_unmap)(void *data, void *device, unsigned int index, void *addr);
    int (*vfio_read)(void *data, void *device, unsigned int index, uint64_t offset, void *buf, size_t len);
    int (*vfio_write)(void *data, void *device, unsigned int index, uint64_t offset, const void *buf,
                      size_t len);
    int (*vfio_hot_reset_info)(void *data, void *device, gw_vfio_reset_dep **deps, size_t *n);
    int (*vfio_hot_reset)(void *data, void *device, void *const *groups, size_t n_groups);
    void (*vfio_close)(void *data, void *device);

    /* ---- version 3, on its own (optional: NULL) ----
     * Write `len` bytes of config space of `address` at `offset` in one
     * write (the kernel splits it by alignment: 2 bytes at an even offset are
     * one word access, 4 at a multiple of 4 one dword access), as
     * gw_hostops_write_config() below describes; -EIO when the range cannot
     * be written. */
    int (*write_config)(void *data, const char *address, unsigned int offset, const void *buf, size_t len);

    /* ---- version 4: holds that outlive the process (optional: both NULL,
     * or both set) ----
     * A service manager can keep a descriptor open across a restart of the
     * process that made it (systemd's file descriptor store) and hand it
     * back. held_fd(): the descriptor behind a handle of hold(), still the
     * handle's (not to be closed). adopt(): a handle made of such a
     * descriptor handed back for `path`: 0 and *handle, the descriptor the
     * handle's from then on; -ESTALE when it is not the live open of the node
     * at `path` now (the node was made anew: the device was rebound, the
     * group went and came back), the descriptor left to the caller. */
    int (*held_fd)(void *data, void *handle);
    int (*adopt)(void *data, const char *path, int fd, void **handle);
} gw_hostops_backend;

/* Version 1 is the vtable up to `destroy`; version 2 adds hold/release;
 * version 3 adds the vfio_* operations and write_config; version 4
 * held_fd/adopt. gw_hostops_new() accepts all four: a backend's struct is
 * read only up to the end of its version's fields (a version-1 struct up to
 * `destroy`, a version-2 one up to `release`, a version-3 one up to
 * `write_config`), and what a version lacks is -EOPNOTSUPP
 * (gw_hostops_hold() on version 1, gw_hostops_vfio_*() and
 * gw_hostops_write_config() on versions 1 and 2, gw_hostops_held_fd() and
 * gw_hostops_adopt() before version 4). */
#define GW_HOSTOPS_BACKEND_VERSION 4
#define GW_HOSTOPS_BACKEND_VERSION_MIN 1

/* Wrap a backend. The vtable is copied; `data` belongs to the new object
 * from now on (backend->destroy releases it, also when this fails). */
GW_EXTERN int gw_hostops_new(gw_hostops **out, const gw_hostops_backend *backend, void *data);

/* The real sysfs backend on host root `root` (NULL or "/" = the live host).
 * Config space is read through libpci (method linux-sysfs, sysfs.path =
 * <root>/sys/bus/pci). -ENOENT when <root>/sys/bus/pci does not exist. */
GW_EXTERN int gw_hostops_sysfs_new(gw_hostops **out, const char *root);

/* Reference counting; both accept NULL. The object stays alive while any
 * clean-up that uses it runs, including one abandoned after a timeout. */
GW_EXTERN gw_hostops *gw_hostops_ref(gw_hostops *ops);
GW_EXTERN void gw_hostops_unref(gw_hostops *ops);

/* The backend's name ("sysfs:/srv/hosts/hgx"). */
GW_EXTERN const char *gw_hostops_name(const gw_hostops *ops);

/* Checked entry points: they refuse absolute paths and ".." with -EINVAL,
 * then call the backend. */
GW_EXTERN int gw_hostops_read(gw_hostops *ops, const char *path, size_t max, char **out, size_t *len);
GW_EXTERN int gw_hostops_write(gw_hostops *ops, const char *path, const void *buf, size_t len);
GW_EXTERN int gw_hostops_readlink(gw_hostops *ops, const char *path, char **out);
GW_EXTERN int gw_hostops_list(gw_hostops *ops, const char *path, char ***names, size_t *n);
GW_EXTERN int gw_hostops_exists(gw_hostops *ops, const char *path);
GW_EXTERN int gw_hostops_read_config(gw_hostops *ops, const char *address, unsigned int offset,
                                     void *buf, size_t len);
/* Write config space (vtable version 3, optional): what clearing an error
 * status takes. Those registers are write-1-to-clear: writing back the bits
 * read clears exactly them (PCI Status, PCIe Device Status, the AER status
 * registers). The sysfs backend makes one pwrite(2) to
 * <root>/sys/bus/pci/devices/<address>/config at `offset` (the kernel refuses
 * it with EPERM under lockdown); -EINVAL for a bad address or a range past
 * 4096 bytes or empty, -EOPNOTSUPP when the backend has no write_config. */
GW_EXTERN int gw_hostops_write_config(gw_hostops *ops, const char *address, unsigned int offset,
                                      const void *buf, size_t len);

/* Hold a device node open (see gw_hostops_backend.hold): 0 and *handle, or
 * -EBUSY / -ENOENT / ... from the backend; -EOPNOTSUPP when the backend has
 * no hold (version 1). Paths are checked as for every entry point. Release
 * every handle with gw_hostops_release(), which accepts NULL. */
GW_EXTERN int gw_hostops_hold(gw_hostops *ops, const char *path, void **handle);
GW_EXTERN void gw_hostops_release(gw_hostops *ops, void *handle);

/* ---- holds across a restart (vtable version 4) --------------------------
 * gpuwardend gives the descriptor of each fence to systemd's file
 * descriptor store, so that a quarantined GPU's group stays held while the
 * daemon restarts, and takes it back at its next start:
 *
 *     int fd = gw_hostops_held_fd(ops, held);            // >= 0: store it
 *     ...next start, fd handed back by systemd...
 *     if (gw_hostops_adopt(ops, "dev/vfio/45", fd, &held) < 0)
 *         close(fd);          // -ESTALE: not the group's open any more
 *
 * gw_hostops_held_fd(): the descriptor behind a handle of
 * gw_hostops_hold(), still the handle's (not to be closed; dup it to keep
 * it); -EOPNOTSUPP on a backend whose holds have none (the simulated one),
 * -EINVAL for NULL. gw_hostops_adopt(): a hold made of descriptor `fd` for
 * `path` (checked as for every entry point): 0 and *handle, released with
 * gw_hostops_release() like any hold, which then closes `fd`; -ESTALE when
 * `fd` is not the live open of the node at `path` now; on any error `fd` is
 * left open, the caller's. */
GW_EXTERN int gw_hostops_held_fd(gw_hostops *ops, void *handle);
GW_EXTERN int gw_hostops_adopt(gw_hostops *ops, const char *path, int fd, void **handle);

/* ---- VFIO device access (vtable version 3) ----------------------------
 * Every call is -EOPNOTSUPP on a backend without it (versions 1 and 2). */

/* Open PCI function `address` through VFIO, by way of the group node `group`
 * that the caller holds (a handle of gw_hostops_hold() on "dev/vfio/<N>", the
 * function's IOMMU group): the backend attaches the group to a container of
 * its own (/dev/vfio/vfio, IOMMU type1v2, else type1) and asks the group for
 * the device (VFIO_GROUP_GET_DEVICE_FD). *device is closed with
 * gw_hostops_vfio_close(), before the group is released. -EPERM when the
 * kernel finds the group not viable (a member bound to a host driver),
 * -ENODEV when the function is not in that group or not on vfio-pci. Opening
 * wakes the device (vfio-pci takes a runtime PM reference) and vfio-pci
 * resets it on open and close where it can. A device, and the group handle
 * it was opened through, belong to one thread at a time (a step's). */
GW_EXTERN int gw_hostops_vfio_open(gw_hostops *ops, void *group, const char *address, void **device);
/* Size and flags of region `index` (0-5: BARs, 6: ROM). */
GW_EXTERN int gw_hostops_vfio_region(gw_hostops *ops, void *device, unsigned int index, gw_vfio_region *out);
/* Map the whole region, read and write, shared (*addr for region.size
 * bytes): -EOPNOTSUPP (or the kernel's errno) when it cannot be mapped; use
 * read/write then. Unmap with gw_hostops_vfio_unmap() before closing. */
GW_EXTERN int gw_hostops_vfio_map(gw_hostops *ops, void *device, unsigned int index, void **addr);
GW_EXTERN void gw_hostops_vfio_unmap(gw_hostops *ops, void *device, unsigned int index, void *addr);
/* Read or write `len` bytes of region `index` at `offset` (pread/pwrite on
 * the device); a range past the region's end is -EINVAL. */
GW_EXTERN int gw_hostops_vfio_read(gw_hostops *ops, void *device, unsigned int index, uint64_t offset, void *buf,
                                   size_t len);
GW_EXTERN int gw_hostops_vfio_write(gw_hostops *ops, void *device, unsigned int index, uint64_t offset,
                                    const void *buf, size_t len);
/* The functions a bus reset of the device would reset (itself included),
 * each with its IOMMU group (VFIO_DEVICE_GET_PCI_HOT_RESET_INFO). *deps is
 * malloc'd: free() it. -ENODEV when the device can have no bus or slot reset
 * (on the root bus, or the bridge cannot reset its bus). */
GW_EXTERN int gw_hostops_vfio_hot_reset_info(gw_hostops *ops, void *device, gw_vfio_reset_dep **deps, size_t *n);
/* Secondary bus reset of the device's bus or slot (VFIO_DEVICE_PCI_HOT_RESET):
 * `groups` are held group handles (gw_hostops_hold()) and must cover every
 * group the info names, else the kernel refuses (-EINVAL on Linux 6.1); it
 * also refuses when a function on the bus is not on vfio-pci. */
GW_EXTERN int gw_hostops_vfio_hot_reset(gw_hostops *ops, void *device, void *const *groups, size_t n_groups);
/* Close a device from gw_hostops_vfio_open() (NULL is fine). */
GW_EXTERN void gw_hostops_vfio_close(gw_hostops *ops, void *device);

/* Free a name list from gw_hostops_list(). */
GW_EXTERN void gw_hostops_list_free(char **names, size_t n);

#ifdef __cplusplus
}
#endif
#endif
