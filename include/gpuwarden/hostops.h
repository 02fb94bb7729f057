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
 * holds the GPU's `dev/vfio/<group>` open across the reset (hold/release,
 * vtable version 2), so that no VM can open the group in the meantime:
 *
 *     void *held;
 *     int r = gw_hostops_hold(ops, "dev/vfio/45", &held);
 *     if (r == -EBUSY)
 *         ... a process (a running QEMU) has the group: do not reset ...
 *     else {
 *         ... reset (r == -ENOENT: no node to hold, go on) ...
 *         gw_hostops_release(ops, held);      // NULL is fine
 *     }
 *
 * A backend written against version 1 (no hold/release) keeps working: it
 * states `.version = 1` and is read only up to `destroy`.
 */
#ifndef GPUWARDEN_HOSTOPS_H
#define GPUWARDEN_HOSTOPS_H

#include <gpuwarden/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gw_hostops gw_hostops;

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
} gw_hostops_backend;

/* Version 1 is the vtable up to `destroy`; version 2 adds hold/release.
 * gw_hostops_new() accepts both: a version-1 backend's struct is read only up
 * to `destroy`, and gw_hostops_hold() on it is -EOPNOTSUPP. */
#define GW_HOSTOPS_BACKEND_VERSION 2
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

/* Hold a device node open (see gw_hostops_backend.hold): 0 and *handle, or
 * -EBUSY / -ENOENT / ... from the backend; -EOPNOTSUPP when the backend has
 * no hold (version 1). Paths are checked as for every entry point. Release
 * every handle with gw_hostops_release(), which accepts NULL. */
GW_EXTERN int gw_hostops_hold(gw_hostops *ops, const char *path, void **handle);
GW_EXTERN void gw_hostops_release(gw_hostops *ops, void *handle);

/* Free a name list from gw_hostops_list(). */
GW_EXTERN void gw_hostops_list_free(char **names, size_t n);

#ifdef __cplusplus
}
#endif
#endif
