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
 * backend was compiled against the struct that ended at `destroy`, so
 * nothing after it may be read. */
static size_t backend_size(unsigned int version)
{
    return version == 1 ? offsetof(gw_hostops_backend, hold) : sizeof(gw_hostops_backend);
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

GW_EXTERN int gw_hostops_hold(gw_hostops *ops, const char *path, void **handle)
{
    int r = check_path(path);
    if (r < 0)
        return r;
    *handle = NULL;
    if (!ops->be.hold)
        return gw_error_set(-EOPNOTSUPP, "%s: backend cannot hold device nodes (vtable version 1)", ops->name);
    return ops->be.hold(ops->data, path, handle);
}

GW_EXTERN void gw_hostops_release(gw_hostops *ops, void *handle)
{
    if (ops && handle && ops->be.release)
        ops->be.release(ops->data, handle);
}

GW_EXTERN void gw_hostops_list_free(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
