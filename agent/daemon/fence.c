/* SPDX-License-Identifier: Apache-2.0 */
/* Fences: gpuwardend holds the VFIO group node (/dev/vfio/<group>) of every
 * quarantined GPU open, so that the kernel itself keeps VMs off it.
 *
 * Why: the gate refuses a quarantined GPU at a domain's start, but libvirt
 * runs no hook for a hot-plug (`virsh attach-device`), nor does a QEMU
 * started without libvirt ask anyone (docs/libvirt.md, "Hot-plug"). Linux
 * allows one open of a group node at a time (vfio_group_fops_open() answers
 * EBUSY while another file has it), and QEMU opens the node to take any
 * function of the group. So while the daemon holds it, that open fails and
 * the quarantined GPU reaches no VM.
 *
 * A group is fenced only when nothing in it may be used: every managed GPU
 * in it quarantined, no other GPU, and nothing but the functions of the
 * GPU's slot (its HDA, a USB controller on the board) and bridges. A fence
 * that would keep another device from VMs is not taken, and the log names
 * that device. A fence is lifted when its GPU leaves quarantine (before its
 * clean-up starts: the clean-up holds the group itself) and while a clean-up
 * runs under the same parent bridge: a bus reset resets every function below
 * that bridge and needs each group's node in hand (VFIO_DEVICE_PCI_HOT_RESET),
 * so the clean-up holds them itself for the reset.
 *
 * A fence outlives a restart of the daemon: its descriptor is also kept in
 * systemd's file descriptor store, and the next start adopts it
 * (fence_store.c). Without systemd, or once the unit is stopped for good,
 * it lasts as long as the process.
 *
 * Everything here runs on the main thread; the table is (L), read by the
 * device view under d->lock. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "sanitize_internal.h"
#include "util.h"

typedef struct gwd_fence {
    char group[32];
    char address[GW_ADDR_LEN];  /* the quarantined GPU it was taken for */
    void *handle;               /* gw_hostops_hold()'s; NULL: not held */
    char *why;                  /* not held: why, as last logged */
    int err;                    /* not held: the hold's errno (negative), 0 when refused by a rule */
    bool seen;                  /* wanted by this sync */
    bool stored;                /* its descriptor is in systemd's store too */
} gwd_fence;

static gwd_fence *fence_find(gwd *d, const char *group)
{
    for (size_t i = 0; i < d->n_fences; i++)
        if (!strcmp(d->fences[i].group, group))
            return &d->fences[i];
    return NULL;
}

static gwd_fence *fence_add(gwd *d, const char *group, const char *address)
{
    d->fences = gw_xrealloc(d->fences, d->n_fences + 1, sizeof *d->fences);
    gwd_fence *f = &d->fences[d->n_fences++];
    memset(f, 0, sizeof *f);
    snprintf(f->group, sizeof f->group, "%s", group);
    snprintf(f->address, sizeof f->address, "%s", address);
    return f;
}

static const gw_device *fence_device(gw_device *const *list, size_t n, const char *address)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i]->identity.address, address))
            return list[i];
    return NULL;
}

/* Whether the device wants its group fenced: quarantined, on the bus, and
 * no clean-up of its own running. */
static bool wants_fence(const gw_device *dev)
{
    return dev->state == GW_STATE_QUARANTINED && !(dev->flags & (GW_FLAG_CLEANING | GW_FLAG_MISSING));
}

/* Whether a bus reset in a clean-up of `other` could reset `g`: the
 * parent bridge of `other` is `g`'s parent bridge or above it. */
static bool reset_reaches(const gw_gpu *other, const gw_gpu *g)
{
    if (!other->n_upstream)
        return false;       /* on a root bus: no bus reset */
    const char *bridge = other->upstream[0].address;
    for (size_t i = 0; i < g->n_upstream; i++)
        if (!strcmp(g->upstream[i].address, bridge))
            return true;
    return false;
}

/* Whether function `fn` sits in the slot of a GPU of g's group that wants
 * the fence too (two quarantined GPUs in one group: each one's HDA). */
static bool slot_of_quarantined(gwd *d, const gw_gpu *g, const char *fn, gw_device *const *list, size_t n)
{
    const char *dot = strrchr(fn, '.');
    size_t slot = dot ? (size_t)(dot - fn) : strlen(fn);
    for (size_t i = 0; i < g->n_group_members; i++) {
        const char *a = g->group_members[i].address;
        if (strncmp(a, fn, slot) || a[slot] != '.' || !gw_host_find_gpu(d->host, a))
            continue;
        const gw_device *dev = fence_device(list, n, a);
        return dev && wants_fence(dev) && gwd_fleet_is_managed(d, a);
    }
    return false;
}

/* NULL when group `g->iommu_group` may be fenced for quarantined GPU `g`;
 * else why not (malloc'd), naming what is in the way. Caller holds d->lock. */
static char *fence_blocker(gwd *d, const gw_gpu *g, gw_device *const *list, size_t n)
{
    for (size_t i = 0; i < g->n_group_members; i++) {
        const gw_group_member *m = &g->group_members[i];
        if (!strcmp(m->address, g->address) || m->is_bridge)
            continue;
        const gw_gpu *other = gw_host_find_gpu(d->host, m->address);
        if (other && !gwd_fleet_is_managed(d, m->address))
            return gw_strdup_printf("GPU %s, which this daemon does not manage, is in the same IOMMU group %s: "
                                    "holding the group would keep it from VMs too",
                                    m->address, g->iommu_group);
        if (other) {
            const gw_device *dev = fence_device(list, n, m->address);
            if (!dev || !wants_fence(dev)) {
                char cond[64];
                return gw_strdup_printf("GPU %s is in the same IOMMU group %s and is %s: holding the group would "
                                        "keep it from VMs too",
                                        m->address, g->iommu_group,
                                        dev ? gw_condition_format(dev->state, dev->flags, cond, sizeof cond)
                                            : "not recorded");
            }
            continue;
        }
        if (!m->same_slot && !slot_of_quarantined(d, g, m->address, list, n))
            return gw_strdup_printf("%s, not a function of a quarantined GPU's slot, is in the same IOMMU group "
                                    "%s: holding the group would keep it from VMs too",
                                    m->address, g->iommu_group);
    }
    for (char **p = d->managed; p && *p; p++) {
        const gw_gpu *other = gw_host_find_gpu(d->host, *p);
        if (other && strcmp(*p, g->address) && gw_cleanup_pool_busy(d->pool, *p) && reset_reaches(other, g))
            return gw_strdup_printf("a clean-up of %s runs under the same bridge %s: its bus reset needs the "
                                    "group, and holds it itself",
                                    *p, other->upstream[0].address);
    }
    return NULL;
}

/* Why the node could not be held, for the log: who holds it when the
 * kernel said EBUSY. Caller holds d->lock. */
static char *hold_failure(gwd *d, const gw_gpu *g, int r)
{
    const char *msg = gw_error_message();
    if (r == -ENOENT)
        return gw_strdup_printf("no /dev/vfio/%s: no function of the group is bound to vfio-pci (%s)",
                                g->iommu_group, msg);
    if (r != -EBUSY)
        return gw_strdup_printf("%s", msg);
    gw_addrlist fns = { 0 };
    for (size_t i = 0; i < g->n_group_members; i++)
        gw_addrlist_add(&fns, g->group_members[i].address);
    gw_vfio_scan scan = { 0 };
    _cleanup_free_ char *who = NULL;
    if (gw_vfio_holders(d->ops, &fns, &scan) == 0)
        for (size_t i = 0; i < scan.n_nodes && !who; i++)
            if (scan.nodes[i].group && !strcmp(scan.nodes[i].group, g->iommu_group))
                who = gw_vfio_holders_of(&scan, i);
    gw_vfio_scan_clear(&scan);
    gw_addrlist_clear(&fns);
    char *const *domains = gwd_attachment_domains(d, g->address);
    return gw_strdup_printf("/dev/vfio/%s is open already, by %s%s%s%s", g->iommu_group,
                            who ? who : "a process not found in /proc", domains ? " (domain '" : "",
                            domains ? domains[0] : "", domains ? "' runs with it)" : "");
}

/* Not held, and why: logged when the reason changes. */
static void fence_set_why(gwd_fence *f, char *why)
{
    if (f->why && !strcmp(f->why, why)) {
        free(why);
        return;
    }
    gw_log(GW_LOG_WARNING, "%s: quarantined, and not fenced: %s", f->address, why);
    free(f->why);
    f->why = why;
}

static void fence_lift(gwd *d, gwd_fence *f, const char *why)
{
    if (!f->handle)
        return;
    if (f->stored)
        gwd_fence_store_drop(f->group);     /* systemd's copy first: the node is free after both */
    f->stored = false;
    gw_hostops_release(d->ops, f->handle);
    f->handle = NULL;
    gwd_view_changed(d);
    gw_log(GW_LOG_NOTICE, "%s: fence on IOMMU group %s lifted: %s", f->address, f->group, why);
}

/* Hold f's group node: through the descriptor systemd kept across a
 * restart when it is still the node's open (*kept), else anew; either way
 * in systemd's store after. Caller holds d->lock. */
static int fence_take(gwd *d, gwd_fence *f, bool *kept)
{
    char node[64];
    snprintf(node, sizeof node, "dev/vfio/%s", f->group);
    int fd = gwd_fence_store_take(d, f->group);
    if (fd >= 0) {
        if (gw_hostops_adopt(d->ops, node, fd, &f->handle) == 0) {
            f->stored = *kept = true;
            return 0;
        }
        gw_log(GW_LOG_NOTICE, "IOMMU group %s: the fence kept across the restart is not the node's open now (%s): "
                              "held anew", f->group, gw_error_message());
        gwd_fence_store_drop(f->group);
        close(fd);
    }
    int r = gw_hostops_hold(d->ops, node, &f->handle);
    if (r == 0)
        f->stored = gwd_fence_store_put(d, f->group, f->handle);
    return r;
}

/* One quarantined GPU: its group fenced, or the reason it is not. Caller
 * holds d->lock. */
static void fence_one(gwd *d, const gw_gpu *g, gw_device *const *list, size_t n)
{
    gwd_fence *f = fence_find(d, g->iommu_group);
    if (f && f->seen)
        return;         /* a group mate decided already */
    if (!f)
        f = fence_add(d, g->iommu_group, g->address);
    f->seen = true;
    char *why = fence_blocker(d, g, list, n);
    if (why) {
        fence_lift(d, f, why);
        f->err = 0;
        fence_set_why(f, why);
        return;
    }
    if (f->handle)
        return;
    bool kept = false;
    int r = fence_take(d, f, &kept);
    if (r < 0) {
        f->handle = NULL;
        /* Said already (the holder scan reads all of /proc: not on every
         * turn of the loop while a VM keeps the group). */
        if (f->why && f->err == r)
            return;
        f->err = r;
        fence_set_why(f, hold_failure(d, g, r));
        return;
    }
    free(f->why);
    f->why = NULL;
    f->err = 0;
    snprintf(f->address, sizeof f->address, "%s", g->address);
    gwd_view_changed(d);
    gw_log(GW_LOG_NOTICE, "%s: fenced: gpuwardend holds IOMMU group %s (/dev/vfio/%s) open while it is "
                          "quarantined, so no VM or process can open it (a hot-plug included)%s",
           g->address, g->iommu_group, g->iommu_group,
           kept ? "; the same open systemd kept across the restart" : "");
}

void gwd_fence_sync(gwd *d, gw_device *const *list, size_t n)
{
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_fences; i++)
        d->fences[i].seen = false;
    for (size_t i = 0; i < n; i++) {
        const gw_device *dev = list[i];
        const gw_gpu *g = gwd_fleet_gpu(d, dev->identity.address);
        if (wants_fence(dev) && g && g->iommu_group && gwd_fleet_is_managed(d, g->address))
            fence_one(d, g, list, n);
    }
    /* Groups no quarantined GPU asks for any more. */
    for (size_t i = 0; i < d->n_fences;) {
        gwd_fence *f = &d->fences[i];
        if (f->seen) {
            i++;
            continue;
        }
        fence_lift(d, f, "no GPU of the group is quarantined now");
        free(f->why);
        *f = d->fences[--d->n_fences];
    }
    if (d->n_kept)
        gwd_fence_store_settle(d);      /* the first sync adopted what it could */
    pthread_mutex_unlock(&d->lock);
}

void gwd_fence_yield(gwd *d, const char *address)
{
    pthread_mutex_lock(&d->lock);
    const gw_gpu *p = gwd_fleet_gpu(d, address);
    for (size_t i = 0; p && i < d->n_fences; i++) {
        gwd_fence *f = &d->fences[i];
        const gw_gpu *q = gwd_fleet_gpu(d, f->address);
        /* (Its own GPU's clean-up never starts here: leaving quarantine
         * lifted the fence at the sync before.) */
        if (f->handle && q && reset_reaches(p, q)) {
            _cleanup_free_ char *why = gw_strdup_printf("a clean-up of %s starts under the same bridge: its bus "
                                                        "reset needs the group, and holds it itself",
                                                        address);
            fence_lift(d, f, why);
        }
    }
    pthread_mutex_unlock(&d->lock);
}

bool gwd_fence_held(gwd *d, const char *group)
{
    const gwd_fence *f = group ? fence_find(d, group) : NULL;
    return f && f->handle;
}

size_t gwd_fence_count(gwd *d)
{
    size_t k = 0;
    for (size_t i = 0; i < d->n_fences; i++)
        k += d->fences[i].handle != NULL;
    return k;
}

void gwd_fence_fini(gwd *d)
{
    for (size_t i = 0; i < d->n_fences; i++) {
        gw_hostops_release(d->ops, d->fences[i].handle);
        free(d->fences[i].why);
    }
    free(d->fences);
    d->fences = NULL;
    d->n_fences = 0;
    gwd_fence_store_fini(d);
}
