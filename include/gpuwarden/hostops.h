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
} gw_hostops_backend;

#define GW_HOSTOPS_BACKEND_VERSION 1

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

/* Free a name list from gw_hostops_list(). */
GW_EXTERN void gw_hostops_list_free(char **names, size_t n);

#ifdef __cplusplus
}
#endif
#endif
