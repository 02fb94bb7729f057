/* SPDX-License-Identifier: Apache-2.0 */
/* The simulated backend's VFIO (vtable version 3), modelled on what the lab
 * measured on Linux 6.1 and what drivers/vfio/pci/vfio_pci_core.c does:
 *   - a device opens through a group the clean-up holds; a function outside
 *     that group, or not on vfio-pci, is -ENODEV; a group with a member on a
 *     host driver is not viable, -EPERM (pcieport claims no DMA: it does not
 *     count);
 *   - BAR memory is a buffer a test provides (gw_sim_bar_set), reached by
 *     pread/pwrite or by a mapping of the buffer itself; a test can make a
 *     byte turn non-zero behind the scrub (gw_sim_bar_inject);
 *   - hot reset info: every function on the bus below the device's parent
 *     bridge, with its group (vfio_pci_fill_devs: -EPERM for one without a
 *     group; -ENODEV on the root bus: no bus to reset);
 *   - hot reset: -EINVAL unless every function on that bus is on vfio-pci
 *     (vfio_pci_dev_set_resettable) and each one's group is among the groups
 *     passed (vfio_dev_in_groups), the count between 1 and the functions;
 *   - neither reset clears BAR memory (a GPU's VRAM survives FLR and SBR).
 * Every operation is logged for the tests. */
#include <stdarg.h>
#include <string.h>

#include "hostops_sim_internal.h"
#include "isolation.h"

#define VFIO "vfio-pci"

typedef struct sim_inject {
    uint64_t offset;
    uint8_t value;
    bool done;
} sim_inject;

typedef struct sim_bar {
    char address[GW_ADDR_LEN];
    unsigned int index;
    uint8_t *data;
    size_t size;
    unsigned int flags;
    sim_inject *inj;
    size_t n_inj;
} sim_bar;

typedef struct sim_vdev {
    char address[GW_ADDR_LEN];
} sim_vdev;

struct sim_vfio {
    sim_bar *bars;
    size_t n_bars;
    char **log;
    size_t n_log;
    int fail_open;
};

/* The model's state, made on first use. Lock held. */
static struct sim_vfio *state(gw_sim *s)
{
    if (!s->vfio)
        s->vfio = gw_xcalloc(1, sizeof *s->vfio);
    return s->vfio;
}

static void vlog(gw_sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vlog(gw_sim *s, const char *fmt, ...)
{
    struct sim_vfio *v = state(s);
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    if (vasprintf(&line, fmt, ap) < 0)
        abort();
    va_end(ap);
    v->log = gw_xrealloc(v->log, v->n_log + 1, sizeof *v->log);
    v->log[v->n_log++] = line;
}

static sim_bar *bar_find(gw_sim *s, const char *address, unsigned int index)
{
    struct sim_vfio *v = state(s);
    for (size_t i = 0; i < v->n_bars; i++)
        if (v->bars[i].index == index && !strcmp(v->bars[i].address, address))
            return &v->bars[i];
    return NULL;
}

/* ---- the tree: groups, drivers, buses ---------------------------------- */

/* Basename of a link of the tree (malloc'd), NULL when absent. */
static char *link_base(gw_sim *s, const char *path)
{
    _cleanup_free_ char *t = NULL;
    if (gw_hostops_readlink(s->base, path, &t) < 0)
        return NULL;
    const char *slash = strrchr(t, '/');
    return gw_xstrdup(slash ? slash + 1 : t);
}

static char *group_of(gw_sim *s, const char *address)
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s/iommu_group", address);
    return link_base(s, p);
}

/* The parent bridge's address from the device's sysfs path; "" on a root bus. */
static int parent_of(gw_sim *s, const char *address, char out[GW_ADDR_LEN])
{
    _cleanup_free_ char *p = gw_strdup_printf("sys/bus/pci/devices/%s", address);
    _cleanup_free_ char *t = NULL;
    int r = gw_hostops_readlink(s->base, p, &t);
    if (r < 0)
        return r;
    char *last = strrchr(t, '/');
    out[0] = '\0';
    if (!last)
        return 0;
    *last = '\0';
    const char *prev = strrchr(t, '/');
    prev = prev ? prev + 1 : t;
    if (gw_is_bdf(prev))
        snprintf(out, GW_ADDR_LEN, "%s", prev);
    return 0;
}

static bool on_vfio(gw_sim *s, const char *address)
{
    _cleanup_free_ char *drv = gw_sim_driver_of(s, address);
    return drv && !strcmp(drv, VFIO);
}

/* 6.1 claims DMA ownership of the whole group for userspace: a member bound
 * to a driver that uses the DMA API makes that fail. pcieport does not, nor
 * do the drivers the isolation verdict accepts (gw_iso_driver_ok: vfio-pci
 * and its variants, pci-stub). */
static bool not_viable(gw_sim *s, const char *group, char bad[GW_ADDR_LEN], char **driver)
{
    _cleanup_free_ char *dir = gw_strdup_printf("sys/kernel/iommu_groups/%s/devices", group);
    char **names = NULL;
    size_t n = 0;
    bool found = false;
    if (gw_hostops_list(s->base, dir, &names, &n) < 0)
        return false;
    for (size_t i = 0; i < n && !found; i++) {
        char *drv = gw_is_bdf(names[i]) ? gw_sim_driver_of(s, names[i]) : NULL;
        found = drv && strcmp(drv, "pcieport") && !gw_iso_driver_ok(drv);
        if (found) {
            snprintf(bad, GW_ADDR_LEN, "%s", names[i]);
            *driver = drv;
        } else {
            free(drv);
        }
    }
    gw_hostops_list_free(names, n);
    return found;
}

/* Every function on the bus below `address`'s parent bridge. */
static int bus_functions(gw_sim *s, const char *address, gw_vfio_reset_dep **deps, size_t *count)
{
    char parent[GW_ADDR_LEN];
    int r = parent_of(s, address, parent);
    if (r < 0)
        return r;
    if (!parent[0])
        return gw_error_set(-ENODEV, "VFIO hot reset info of %s: No such device (on the root bus: no bus reset)",
                            address);
    char **names = NULL;
    size_t n = 0;
    if ((r = gw_hostops_list(s->base, "sys/bus/pci/devices", &names, &n)) < 0)
        return r;
    gw_vfio_reset_dep *v = gw_xcalloc(n ? n : 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        char up[GW_ADDR_LEN];
        if (!gw_is_bdf(names[i]) || parent_of(s, names[i], up) < 0 || strcmp(up, parent))
            continue;
        _cleanup_free_ char *g = group_of(s, names[i]);
        if (!g) {
            r = gw_error_set(-EPERM, "VFIO hot reset info of %s: %s on the same bus has no IOMMU group", address,
                             names[i]);
            break;
        }
        snprintf(v[k].address, sizeof v[k].address, "%s", names[i]);
        v[k++].group = (unsigned)strtoul(g, NULL, 10);
    }
    gw_hostops_list_free(names, n);
    if (r < 0) {
        free(v);
        return r;
    }
    *deps = v;
    *count = k;
    return 0;
}

/* ---- the vtable ---------------------------------------------------------- */

int gw_sim_vfio_open(void *data, void *group, const char *address, void **device)
{
    gw_sim *s = data;
    const char *g = group;     /* the sim's hold handle is the group's name */
    pthread_mutex_lock(&s->lock);
    int r = state(s)->fail_open;
    _cleanup_free_ char *mine = group_of(s, address);
    char *drv = NULL;
    char bad[GW_ADDR_LEN];
    if (r)
        r = gw_error_set(r, "VFIO open %s: %s (injected)", address, strerror(-r));
    else if (!mine || strcmp(mine, g))
        r = gw_error_set(-ENODEV, "VFIO open %s: No such device (not in IOMMU group %s)", address, g);
    else if (not_viable(s, g, bad, &drv))
        r = gw_error_set(-EPERM, "VFIO open %s: Operation not permitted (IOMMU group %s not viable: %s is bound "
                         "to %s)", address, g, bad, drv);
    else if (!on_vfio(s, address))
        r = gw_error_set(-ENODEV, "VFIO open %s: No such device (not on " VFIO ")", address);
    free(drv);
    if (r == 0) {
        sim_vdev *d = gw_xcalloc(1, sizeof *d);
        snprintf(d->address, sizeof d->address, "%s", address);
        *device = d;
        vlog(s, "open %s", address);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

int gw_sim_vfio_region(void *data, void *device, unsigned int index, gw_vfio_region *out)
{
    gw_sim *s = data;
    sim_vdev *d = device;
    if (index > 6)      /* BARs 0-5 and the ROM */
        return gw_error_set(-EINVAL, "VFIO region %u info of %s: Invalid argument", index, d->address);
    pthread_mutex_lock(&s->lock);
    sim_bar *b = bar_find(s, d->address, index);
    *out = (gw_vfio_region){ b ? b->size : 0, b ? b->flags : 0 };
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* The injections of `b` that a write of [from, from+len) lands on. */
static void apply_injections(sim_bar *b, uint64_t from, uint64_t len)
{
    for (size_t i = 0; i < b->n_inj; i++) {
        sim_inject *in = &b->inj[i];
        if (!in->done && in->offset >= from && in->offset - from < len && in->offset < b->size) {
            b->data[in->offset] = in->value;
            in->done = true;
        }
    }
}

int gw_sim_vfio_map(void *data, void *device, unsigned int index, void **addr)
{
    gw_sim *s = data;
    sim_vdev *d = device;
    pthread_mutex_lock(&s->lock);
    sim_bar *b = bar_find(s, d->address, index);
    int r = 0;
    if (!b || !(b->flags & GW_VFIO_REGION_MMAP) || !b->size)
        r = gw_error_set(-EOPNOTSUPP, "VFIO %s region %u: the kernel does not allow mmap", d->address, index);
    else
        *addr = b->data;
    vlog(s, "map %s %u%s", d->address, index, r ? " refused" : "");
    pthread_mutex_unlock(&s->lock);
    return r;
}

void gw_sim_vfio_unmap(void *data, void *device, unsigned int index, void *addr)
{
    gw_sim *s = data;
    sim_vdev *d = device;
    pthread_mutex_lock(&s->lock);
    sim_bar *b = bar_find(s, d->address, index);
    /* Whatever was written through the mapping has landed by now. */
    if (b && addr == b->data)
        apply_injections(b, 0, b->size);
    vlog(s, "unmap %s %u", d->address, index);
    pthread_mutex_unlock(&s->lock);
}

static int bar_io(gw_sim *s, sim_vdev *d, unsigned int index, uint64_t offset, void *buf, size_t len, bool write)
{
    sim_bar *b = bar_find(s, d->address, index);
    unsigned need = write ? GW_VFIO_REGION_WRITE : GW_VFIO_REGION_READ;
    if (!b || !(b->flags & need))
        return gw_error_set(-EINVAL, "VFIO %s %s region %u: Invalid argument (not %s)", write ? "write to" : "read of",
                            d->address, index, write ? "writable" : "readable");
    if (offset > b->size || len > b->size - offset)
        return gw_error_set(-EINVAL, "VFIO %s region %u: %zu bytes at 0x%llx are past its %zu bytes", d->address,
                            index, len, (unsigned long long)offset, b->size);
    if (write) {
        memcpy(b->data + offset, buf, len);
        apply_injections(b, offset, len);
    } else {
        memcpy(buf, b->data + offset, len);
    }
    return 0;
}

int gw_sim_vfio_read(void *data, void *device, unsigned int index, uint64_t offset, void *buf, size_t len)
{
    gw_sim *s = data;
    pthread_mutex_lock(&s->lock);
    int r = bar_io(s, device, index, offset, buf, len, false);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int gw_sim_vfio_write(void *data, void *device, unsigned int index, uint64_t offset, const void *buf, size_t len)
{
    gw_sim *s = data;
    pthread_mutex_lock(&s->lock);
    int r = bar_io(s, device, index, offset, (void *)buf, len, true);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int gw_sim_vfio_reset_info(void *data, void *device, gw_vfio_reset_dep **deps, size_t *n)
{
    gw_sim *s = data;
    sim_vdev *d = device;
    pthread_mutex_lock(&s->lock);
    int r = bus_functions(s, d->address, deps, n);
    vlog(s, "hot_reset_info %s", d->address);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static bool passed(void *const *groups, size_t n, unsigned int group)
{
    char name[16];
    snprintf(name, sizeof name, "%u", group);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(groups[i], name))
            return true;
    return false;
}

/* vfio_pci_ioctl_pci_hot_reset() and vfio_pci_dev_set_hot_reset(). Lock held. */
static int hot_reset(gw_sim *s, sim_vdev *d, void *const *groups, size_t n_groups)
{
    gw_vfio_reset_dep *deps = NULL;
    size_t n = 0;
    int r = bus_functions(s, d->address, &deps, &n);
    if (r < 0)
        return r;
    if (!n_groups || n_groups > n)
        r = gw_error_set(-EINVAL, "VFIO hot reset through %s: Invalid argument (%zu groups for %zu functions)",
                         d->address, n_groups, n);
    for (size_t i = 0; i < n && r == 0; i++) {
        if (!on_vfio(s, deps[i].address))
            r = gw_error_set(-EINVAL, "VFIO hot reset through %s: Invalid argument (%s on the bus is not on "
                             VFIO ")", d->address, deps[i].address);
        else if (!passed(groups, n_groups, deps[i].group))
            r = gw_error_set(-EINVAL, "VFIO hot reset through %s: Invalid argument (IOMMU group %u of %s not "
                             "passed)", d->address, deps[i].group, deps[i].address);
    }
    free(deps);
    return r;
}

int gw_sim_vfio_hot_reset(void *data, void *device, void *const *groups, size_t n_groups)
{
    gw_sim *s = data;
    sim_vdev *d = device;
    pthread_mutex_lock(&s->lock);
    int r = hot_reset(s, d, groups, n_groups);
    char list[256] = "";
    for (size_t i = 0; i < n_groups; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? "," : "", (const char *)groups[i]);
    vlog(s, "hot_reset %s groups %s%s", d->address, list, r ? " refused" : "");
    pthread_mutex_unlock(&s->lock);
    return r;
}

void gw_sim_vfio_close(void *data, void *device)
{
    gw_sim *s = data;
    sim_vdev *d = device;
    pthread_mutex_lock(&s->lock);
    vlog(s, "close %s", d->address);
    pthread_mutex_unlock(&s->lock);
    free(d);
}

void gw_sim_vfio_free(gw_sim *s)
{
    struct sim_vfio *v = s->vfio;
    if (!v)
        return;
    for (size_t i = 0; i < v->n_bars; i++) {
        free(v->bars[i].data);
        free(v->bars[i].inj);
    }
    free(v->bars);
    for (size_t i = 0; i < v->n_log; i++)
        free(v->log[i]);
    free(v->log);
    free(v);
    s->vfio = NULL;
}

/* ---- the tests' side ----------------------------------------------------- */

void gw_sim_bar_set(gw_sim *s, const char *address, unsigned int bar, size_t size, uint8_t fill)
{
    pthread_mutex_lock(&s->lock);
    sim_bar *b = bar_find(s, address, bar);
    if (!b) {
        struct sim_vfio *v = state(s);
        v->bars = gw_xrealloc(v->bars, v->n_bars + 1, sizeof *v->bars);
        b = &v->bars[v->n_bars++];
        memset(b, 0, sizeof *b);
        snprintf(b->address, sizeof b->address, "%s", address);
        b->index = bar;
    }
    free(b->data);
    b->data = gw_xcalloc(size ? size : 1, 1);
    memset(b->data, fill, size);
    b->size = size;
    b->flags = GW_VFIO_REGION_READ | GW_VFIO_REGION_WRITE | GW_VFIO_REGION_MMAP;
    pthread_mutex_unlock(&s->lock);
}

void gw_sim_bar_flags(gw_sim *s, const char *address, unsigned int bar, unsigned int flags)
{
    pthread_mutex_lock(&s->lock);
    sim_bar *b = bar_find(s, address, bar);
    if (b)
        b->flags = flags;
    pthread_mutex_unlock(&s->lock);
}

const uint8_t *gw_sim_bar_data(gw_sim *s, const char *address, unsigned int bar, size_t *size)
{
    pthread_mutex_lock(&s->lock);
    sim_bar *b = bar_find(s, address, bar);
    const uint8_t *p = b ? b->data : NULL;
    *size = b ? b->size : 0;
    pthread_mutex_unlock(&s->lock);
    return p;
}

void gw_sim_bar_inject(gw_sim *s, const char *address, unsigned int bar, uint64_t offset, uint8_t value)
{
    pthread_mutex_lock(&s->lock);
    sim_bar *b = bar_find(s, address, bar);
    if (b) {
        b->inj = gw_xrealloc(b->inj, b->n_inj + 1, sizeof *b->inj);
        b->inj[b->n_inj++] = (sim_inject){ offset, value, false };
    }
    pthread_mutex_unlock(&s->lock);
}

void gw_sim_vfio_fail_open(gw_sim *s, int err)
{
    pthread_mutex_lock(&s->lock);
    state(s)->fail_open = err;
    pthread_mutex_unlock(&s->lock);
}

size_t gw_sim_vfio_count(gw_sim *s, const char *prefix)
{
    pthread_mutex_lock(&s->lock);
    struct sim_vfio *v = state(s);
    size_t n = 0;
    for (size_t i = 0; i < v->n_log; i++)
        n += !strncmp(v->log[i], prefix, strlen(prefix));
    pthread_mutex_unlock(&s->lock);
    return n;
}
