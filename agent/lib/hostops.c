/* SPDX-License-Identifier: Apache-2.0 */
/* The gw_hostops object: a reference-counted backend vtable with checked
 * entry points, so that no backend ever sees a path that leaves its root. */
#include <gpuwarden/hostops.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "util.h"

struct gw_hostops {
    atomic_int refs;
    gw_hostops_backend be;
    void *data;
    char *name;
};

/* How much of the caller's vtable its version says it has: a version-1
 * backend was compiled against the struct that ended at `destroy`, a
 * version-2 one against the struct that ended at `release`, so nothing after
 * that may be read. */
static size_t backend_size(unsigned int version)
{
    switch (version) {
    case 1: return offsetof(gw_hostops_backend, hold);
    case 2: return offsetof(gw_hostops_backend, vfio_open);
    case 3: return offsetof(gw_hostops_backend, held_fd);
    default: return sizeof(gw_hostops_backend);
    }
}

/* The VFIO operations come as a set: a backend with some of them would fail
 * half-way through a reset or a scrub. */
static bool vfio_complete(const gw_hostops_backend *be, bool *any)
{
    int set = !!be->vfio_open + !!be->vfio_region + !!be->vfio_map + !!be->vfio_unmap + !!be->vfio_read +
              !!be->vfio_write + !!be->vfio_hot_reset_info + !!be->vfio_hot_reset + !!be->vfio_close;
    *any = set > 0;
    return set == 0 || set == 9;
}

/* A refused vtable still hands over `data`: release it. */
static void drop_backend(const gw_hostops_backend *backend, void *data)
{
    if (backend && backend->destroy)
        backend->destroy(data);
}

GW_EXTERN int gw_hostops_new(gw_hostops **out, const gw_hostops_backend *backend, void *data)
{
    if (!out || !backend || !backend->read || !backend->write || !backend->readlink ||
        !backend->list || !backend->exists || !backend->read_config) {
        drop_backend(backend, data);
        return gw_error_set(-EINVAL, "gw_hostops_new: incomplete backend vtable");
    }
    unsigned int version = backend->version;
    if (version < GW_HOSTOPS_BACKEND_VERSION_MIN || version > GW_HOSTOPS_BACKEND_VERSION) {
        drop_backend(backend, data);
        return gw_error_set(-EINVAL, "gw_hostops_new: backend version %u, expected %u to %u", version,
                            GW_HOSTOPS_BACKEND_VERSION_MIN, GW_HOSTOPS_BACKEND_VERSION);
    }
    gw_hostops_backend be = { 0 };
    memcpy(&be, backend, backend_size(version));
    if (!be.hold != !be.release) {
        drop_backend(backend, data);
        return gw_error_set(-EINVAL, "gw_hostops_new: hold and release come together (one is NULL)");
    }
    if (!be.held_fd != !be.adopt || (be.held_fd && !be.hold)) {
        drop_backend(backend, data);
        return gw_error_set(-EINVAL, "gw_hostops_new: held_fd and adopt come together, and with hold/release");
    }
    bool vfio;
    if (!vfio_complete(&be, &vfio)) {
        drop_backend(backend, data);
        return gw_error_set(-EINVAL, "gw_hostops_new: the vfio_* operations come together (some are NULL)");
    }
    if (vfio && !be.hold) {
        drop_backend(backend, data);
        return gw_error_set(-EINVAL, "gw_hostops_new: vfio_* operations need hold/release (a device is opened "
                            "through a held group)");
    }
    gw_hostops *ops = gw_xcalloc(1, sizeof *ops);
    atomic_init(&ops->refs, 1);
    ops->be = be;
    ops->data = data;
    ops->name = gw_xstrdup(backend->name ? backend->name : "custom");
    *out = ops;
    return 0;
}

GW_EXTERN gw_hostops *gw_hostops_ref(gw_hostops *ops)
{
    if (ops)
        atomic_fetch_add(&ops->refs, 1);
    return ops;
}

GW_EXTERN void gw_hostops_unref(gw_hostops *ops)
{
    if (!ops || atomic_fetch_sub(&ops->refs, 1) != 1)
        return;
    if (ops->be.destroy)
        ops->be.destroy(ops->data);
    free(ops->name);
    free(ops);
}

GW_EXTERN const char *gw_hostops_name(const gw_hostops *ops) { return ops ? ops->name : "(none)"; }

/* Relative, no "..", no empty components: the backend appends it to its root. */
static int check_path(const char *path)
{
    if (!path || !*path)
        return gw_error_set(-EINVAL, "host path is empty");
    if (path[0] == '/')
        return gw_error_set(-EINVAL, "host path '%s' is absolute: paths are relative to the host root", path);
    for (const char *p = path; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.'))
            return gw_error_set(-EINVAL, "host path '%s' has an empty or '..' component", path);
        p += n + (slash ? 1 : 0);
    }
    return 0;
}

GW_EXTERN int gw_hostops_read(gw_hostops *ops, const char *path, size_t max, char **out, size_t *len)
{
    int r = check_path(path);
    if (r < 0)
        return r;
    size_t dummy;
    return ops->be.read(ops->data, path, max, out, len ? len : &dummy);
}

GW_EXTERN int gw_hostops_write(gw_hostops *ops, const char *path, const void *buf, size_t len)
{
    int r = check_path(path);
    if (r < 0)
        return r;
    return ops->be.write(ops->data, path, buf, len);
}

GW_EXTERN int gw_hostops_readlink(gw_hostops *ops, const char *path, char **out)
{
    int r = check_path(path);
    return r < 0 ? r : ops->be.readlink(ops->data, path, out);
}

GW_EXTERN int gw_hostops_list(gw_hostops *ops, const char *path, char ***names, size_t *n)
{
    int r = check_path(path);
    return r < 0 ? r : ops->be.list(ops->data, path, names, n);
}

GW_EXTERN int gw_hostops_exists(gw_hostops *ops, const char *path)
{
    int r = check_path(path);
    return r < 0 ? r : ops->be.exists(ops->data, path);
}

GW_EXTERN int gw_hostops_read_config(gw_hostops *ops, const char *address, unsigned int offset,
                                     void *buf, size_t len)
{
    if (!address || !gw_is_bdf(address))
        return gw_error_set(-EINVAL, "read_config: '%s' is not a PCI address", address ? address : "(null)");
    if (offset > 4096 || len > 4096 - offset)
        return gw_error_set(-EINVAL, "read_config %s: range %u+%zu beyond 4096 bytes", address, offset, len);
    return ops->be.read_config(ops->data, address, offset, buf, len);
}

GW_EXTERN int gw_hostops_write_config(gw_hostops *ops, const char *address, unsigned int offset,
                                      const void *buf, size_t len)
{
    if (!address || !gw_is_bdf(address))
        return gw_error_set(-EINVAL, "write_config: '%s' is not a PCI address", address ? address : "(null)");
    /* An empty write would be a no-op on sysfs but still "succeed": refuse
     * it, the caller meant to write something. */
    if (!buf || len == 0 || offset > 4096 || len > 4096 - offset)
        return gw_error_set(-EINVAL, "write_config %s: range %u+%zu empty or beyond 4096 bytes", address, offset,
                            len);
    if (!ops->be.write_config)
        return gw_error_set(-EOPNOTSUPP, "%s: backend cannot write config space (no write_config)", ops->name);
    return ops->be.write_config(ops->data, address, offset, buf, len);
}

GW_EXTERN int gw_hostops_hold(gw_hostops *ops, const char *path, void **handle)
{
    if (!ops || !handle)
        return gw_error_set(-EINVAL, "gw_hostops_hold: NULL argument");
    *handle = NULL;
    int r = check_path(path);
    if (r < 0)
        return r;
    if (!ops->be.hold)
        return gw_error_set(-EOPNOTSUPP, "%s: backend cannot hold device nodes (%s)", ops->name,
                            ops->be.version < 2 ? "vtable version 1" : "no hold operation");
    return ops->be.hold(ops->data, path, handle);
}

GW_EXTERN void gw_hostops_release(gw_hostops *ops, void *handle)
{
    if (ops && handle && ops->be.release)
        ops->be.release(ops->data, handle);
}

GW_EXTERN int gw_hostops_held_fd(gw_hostops *ops, void *handle)
{
    if (!ops || !handle)
        return gw_error_set(-EINVAL, "gw_hostops_held_fd: NULL argument");
    if (!ops->be.held_fd)
        return gw_error_set(-EOPNOTSUPP, "%s: backend's holds have no descriptor to keep across a restart",
                            ops->name);
    return ops->be.held_fd(ops->data, handle);
}

GW_EXTERN int gw_hostops_adopt(gw_hostops *ops, const char *path, int fd, void **handle)
{
    if (!ops || !handle || fd < 0)
        return gw_error_set(-EINVAL, "gw_hostops_adopt: NULL argument or no descriptor");
    *handle = NULL;
    int r = check_path(path);
    if (r < 0)
        return r;
    if (!ops->be.adopt)
        return gw_error_set(-EOPNOTSUPP, "%s: backend cannot adopt a hold's descriptor", ops->name);
    return ops->be.adopt(ops->data, path, fd, handle);
}

/* ---- VFIO device access ------------------------------------------------ */

static int vfio_missing(gw_hostops *ops)
{
    return gw_error_set(-EOPNOTSUPP, "%s: backend has no VFIO device access (vtable version < 3)", ops->name);
}

GW_EXTERN int gw_hostops_vfio_open(gw_hostops *ops, void *group, const char *address, void **device)
{
    if (!ops || !device)
        return gw_error_set(-EINVAL, "vfio_open: NULL argument");
    *device = NULL;
    if (!address || !gw_is_bdf(address))
        return gw_error_set(-EINVAL, "vfio_open: '%s' is not a PCI address", address ? address : "(null)");
    if (!ops->be.vfio_open)
        return vfio_missing(ops);
    if (!group)
        return gw_error_set(-EINVAL, "vfio_open %s: no held group node to open it through", address);
    return ops->be.vfio_open(ops->data, group, address, device);
}

GW_EXTERN int gw_hostops_vfio_region(gw_hostops *ops, void *device, unsigned int index, gw_vfio_region *out)
{
    if (!ops || !device || !out)
        return gw_error_set(-EINVAL, "vfio_region: NULL argument");
    if (!ops->be.vfio_region)
        return vfio_missing(ops);
    return ops->be.vfio_region(ops->data, device, index, out);
}

GW_EXTERN int gw_hostops_vfio_map(gw_hostops *ops, void *device, unsigned int index, void **addr)
{
    if (!ops || !device || !addr)
        return gw_error_set(-EINVAL, "vfio_map: NULL argument");
    *addr = NULL;
    if (!ops->be.vfio_map)
        return vfio_missing(ops);
    return ops->be.vfio_map(ops->data, device, index, addr);
}

GW_EXTERN void gw_hostops_vfio_unmap(gw_hostops *ops, void *device, unsigned int index, void *addr)
{
    if (ops && device && addr && ops->be.vfio_unmap)
        ops->be.vfio_unmap(ops->data, device, index, addr);
}

GW_EXTERN int gw_hostops_vfio_read(gw_hostops *ops, void *device, unsigned int index, uint64_t offset, void *buf,
                                   size_t len)
{
    if (!ops || !device || (!buf && len))
        return gw_error_set(-EINVAL, "vfio_read: NULL argument");
    if (!ops->be.vfio_read)
        return vfio_missing(ops);
    return ops->be.vfio_read(ops->data, device, index, offset, buf, len);
}

GW_EXTERN int gw_hostops_vfio_write(gw_hostops *ops, void *device, unsigned int index, uint64_t offset,
                                    const void *buf, size_t len)
{
    if (!ops || !device || (!buf && len))
        return gw_error_set(-EINVAL, "vfio_write: NULL argument");
    if (!ops->be.vfio_write)
        return vfio_missing(ops);
    return ops->be.vfio_write(ops->data, device, index, offset, buf, len);
}

GW_EXTERN int gw_hostops_vfio_hot_reset_info(gw_hostops *ops, void *device, gw_vfio_reset_dep **deps, size_t *n)
{
    if (!ops || !device || !deps || !n)
        return gw_error_set(-EINVAL, "vfio_hot_reset_info: NULL argument");
    *deps = NULL;
    *n = 0;
    if (!ops->be.vfio_hot_reset_info)
        return vfio_missing(ops);
    return ops->be.vfio_hot_reset_info(ops->data, device, deps, n);
}

GW_EXTERN int gw_hostops_vfio_hot_reset(gw_hostops *ops, void *device, void *const *groups, size_t n_groups)
{
    if (!ops || !device || (!groups && n_groups))
        return gw_error_set(-EINVAL, "vfio_hot_reset: NULL argument");
    if (!ops->be.vfio_hot_reset)
        return vfio_missing(ops);
    return ops->be.vfio_hot_reset(ops->data, device, groups, n_groups);
}

GW_EXTERN void gw_hostops_vfio_close(gw_hostops *ops, void *device)
{
    if (ops && device && ops->be.vfio_close)
        ops->be.vfio_close(ops->data, device);
}

GW_EXTERN void gw_hostops_list_free(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
