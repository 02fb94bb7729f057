/* SPDX-License-Identifier: Apache-2.0 */
/* The reset step's secondary bus reset, through VFIO's hot reset (the
 * backend's vtable version 3). Why VFIO and not the kernel's `reset` with its
 * `bus` method: the kernel offers `bus` only for a device alone on its bus,
 * never for a GPU with an audio or memory function beside it, and on a GPU
 * without FLR the kernel's `reset` tries `pm` first, which returns success
 * without resetting anything on some devices (QEMU 7.2, measured in the lab).
 *
 * A bus reset resets every function below the bridge, so before it the
 * kernel is asked which (VFIO_DEVICE_GET_PCI_HOT_RESET_INFO), and each one
 * must be ours: managed by the policy and on vfio-pci. One that is not is
 * named and the reset refused: resetting a host's sound card, or a device
 * another VM uses, is never a side effect of cleaning a GPU. Functions on
 * the bus outside this clean-up's own are checked for use and their groups
 * held like the GPU's; the kernel wants every affected group's open
 * descriptor anyway, as proof that the caller owns them. */
#include <string.h>

#include "sanitize_internal.h"

typedef enum { BUS_DONE, BUS_IMPOSSIBLE, BUS_FAILED } bus_outcome;

/* The refusal for a function that is not ours; NULL when it is ours. */
static char *not_ours(gw_sctx *c, const char *addr)
{
    _cleanup_free_ char *drv = NULL;
    if (gw_dev_driver(c->ops, addr, &drv) < 0)
        return gw_strdup_printf("bus reset would also reset %s (driver unreadable: %s): refused", addr,
                                gw_error_message());
    int m = gw_dev_managed(c->ops, &c->policy->pol, addr, NULL);
    bool vfio = drv && !strcmp(drv, "vfio-pci");
    if (m > 0 && vfio)
        return NULL;
    return gw_strdup_printf("bus reset would also reset %s (bound to %s, %s): refused", addr,
                            drv ? drv : "no driver", m <= 0 ? "not managed" : "managed but not on vfio-pci");
}

/* Every affected function must be ours; those outside the clean-up's own
 * functions are checked for use and their groups held (into *extra). */
static gw_verdict check_affected(gw_sctx *c, const gw_vfio_reset_dep *deps, size_t n, const gw_addrlist *fns,
                                 gw_group_holds *extra)
{
    gw_addrlist others = { 0 };
    gw_verdict v = GW_VERDICT_PASS;
    for (size_t i = 0; i < n && v == GW_VERDICT_PASS; i++) {
        _cleanup_free_ char *why = not_ours(c, deps[i].address);
        if (why)
            v = gw_fail(c, "%s", why);
        else if (!gw_addrlist_has(fns, deps[i].address))
            gw_addrlist_add(&others, deps[i].address);
    }
    if (v == GW_VERDICT_PASS && others.n) {
        if (gw_check_not_in_use(c, &others) != GW_VERDICT_PASS ||
            gw_hold_groups(c, &others, "the bus reset", extra) != GW_VERDICT_PASS)
            v = gw_fail(c, "another slot on the bus is in use or cannot be held: no bus reset");
    }
    gw_addrlist_clear(&others);
    return v;
}

/* The held handle of each affected group, once each. */
static gw_verdict group_handles(gw_sctx *c, const gw_vfio_reset_dep *deps, size_t n, const gw_group_holds *holds,
                                const gw_group_holds *extra, void ***out, size_t *n_out, gw_strbuf *names)
{
    void **v = gw_xcalloc(n ? n : 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char g[16];
        snprintf(g, sizeof g, "%u", deps[i].group);
        void *h = gw_group_held(holds, g);
        h = h ? h : gw_group_held(extra, g);
        if (!h) {
            free(v);
            return gw_fail(c, "IOMMU group %s of %s is not held (no /dev/vfio/%s?): the kernel resets a bus only "
                           "with every affected group's node: no bus reset", g, deps[i].address, g);
        }
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++)
            seen = v[j] == h;
        if (!seen) {
            v[k++] = h;
            gw_strbuf_append(names, "%s%s", names->len ? ", " : "", g);
        }
    }
    *out = v;
    *n_out = k;
    return GW_VERDICT_PASS;
}

static void note_done(gw_sctx *c, const gw_vfio_reset_dep *deps, size_t n, const char *groups)
{
    gw_addrlist up = { 0 };
    gw_strbuf fns = { 0 };
    for (size_t i = 0; i < n; i++)
        gw_strbuf_append(&fns, "%s%s", i ? ", " : "", deps[i].address);
    bool bridge = gw_dev_upstream(c->ops, c->address, &up) == 0 && up.n;
    gw_note(c, "reset by a secondary bus reset through VFIO (hot reset of the bus below %s, IOMMU groups %s): %s",
            bridge ? up.v[0] : "the parent bridge", groups, gw_strbuf_str(&fns));
    gw_addrlist_clear(&up);
    gw_strbuf_clear(&fns);
}

/* With the GPU open through VFIO: ask, check, hold, reset. */
static bus_outcome reset_through(gw_sctx *c, void *dev, const gw_addrlist *fns, const gw_group_holds *holds,
                                 char **impossible)
{
    gw_vfio_reset_dep *deps = NULL;
    size_t n = 0;
    int r = gw_hostops_vfio_hot_reset_info(c->ops, dev, &deps, &n);
    if (r == -ENODEV) {
        *impossible = gw_xstrdup(gw_error_message());
        return BUS_IMPOSSIBLE;
    }
    if (r < 0) {
        gw_fail(c, "cannot ask which functions a bus reset would reset: %s: no bus reset", gw_error_message());
        return BUS_FAILED;
    }
    gw_group_holds extra = { 0 };
    void **handles = NULL;
    size_t n_handles = 0;
    gw_strbuf groups = { 0 };
    bus_outcome out = BUS_FAILED;
    if (check_affected(c, deps, n, fns, &extra) == GW_VERDICT_PASS &&
        group_handles(c, deps, n, holds, &extra, &handles, &n_handles, &groups) == GW_VERDICT_PASS) {
        if (gw_hostops_vfio_hot_reset(c->ops, dev, handles, n_handles) < 0) {
            gw_fail(c, "bus reset failed: %s", gw_error_message());
        } else {
            note_done(c, deps, n, gw_strbuf_str(&groups));
            out = BUS_DONE;
        }
    }
    free(handles);
    gw_strbuf_clear(&groups);
    gw_release_groups(c, &extra);
    free(deps);
    return out;
}

static bus_outcome try_bus_reset(gw_sctx *c, const gw_addrlist *fns, const gw_group_holds *holds, char **impossible)
{
    _cleanup_free_ char *group = NULL;
    void *held;
    int r = gw_group_held_for(c, holds, c->address, &group, &held);
    if (r < 0) {
        *impossible = gw_strdup_printf("no IOMMU group, so no VFIO access (%s)", gw_error_message());
        return BUS_IMPOSSIBLE;
    }
    if (!held) {
        *impossible = gw_strdup_printf("/dev/vfio/%s is not held, so no VFIO access", group);
        return BUS_IMPOSSIBLE;
    }
    void *dev = NULL;
    r = gw_hostops_vfio_open(c->ops, held, c->address, &dev);
    if (r == -EOPNOTSUPP) {
        *impossible = gw_xstrdup(gw_error_message());
        return BUS_IMPOSSIBLE;
    }
    if (r < 0) {
        gw_fail(c, "cannot open %s through VFIO for a bus reset: %s", c->address, gw_error_message());
        return BUS_FAILED;
    }
    bus_outcome out = reset_through(c, dev, fns, holds, impossible);
    gw_hostops_vfio_close(c->ops, dev);
    return out;
}

gw_verdict gw_bus_reset(gw_sctx *c, const gw_addrlist *fns, const gw_group_holds *holds, const char *fallback)
{
    _cleanup_free_ char *impossible = NULL;
    switch (try_bus_reset(c, fns, holds, &impossible)) {
    case BUS_DONE:
        return GW_VERDICT_PASS;
    case BUS_FAILED:
        return GW_VERDICT_FAIL;
    case BUS_IMPOSSIBLE:
        break;
    }
    if (!fallback)
        return gw_fail(c, "no bus reset possible: %s", impossible);
    gw_note(c, "no bus reset possible (%s): the kernel's reset instead", impossible);
    if (gw_host_write(c, c->address, fallback, "1", 1) < 0)
        return gw_fail(c, "reset failed");
    return GW_VERDICT_PASS;
}
