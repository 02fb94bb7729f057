/* SPDX-License-Identifier: Apache-2.0 */
#include "topology.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Deeper than any real PCIe hierarchy; stops a cyclic tree. */
#define MAX_DEPTH 64

/* The parent of a function is the directory above its real sysfs directory
 * (/sys/devices/pci0000:64/0000:64:00.0/0000:65:00.0/...): a bridge's
 * address, or pciDDDD:BB for a root bus. This is what libpci's
 * PCI_FILL_PARENT does. Returns the parent's index or -1 with *problem set
 * when the parent cannot be placed (NULL problem: on a root bus). */
/* realpath(3) of a function's directory, resolved inside the root and shown
 * under the root's own real path (what realpath of the whole path gave). */
static char *real_dir(const gw_scan *s, const gw_func *f, int *err)
{
    _cleanup_free_ char *rel = NULL;
    int r = gw_root_realpath(s->host.fd, f->rel, &rel);
    if (r < 0) {
        *err = r;
        return NULL;
    }
    const char *top = s->real_root ? s->real_root : s->host.shown;
    return gw_strdup_printf("%s/%s", strcmp(top, "/") ? top : "", rel);
}

static long find_parent(const gw_scan *s, const gw_func *f, char **problem)
{
    *problem = NULL;
    int err = 0;
    _cleanup_free_ char *real = real_dir(s, f, &err);
    if (!real) {
        *problem = gw_strdup_printf("cannot resolve %s: %s", f->dir, gw_root_strerror(err));
        return -1;
    }
    char *slash = strrchr(real, '/');
    if (!slash || slash == real) {
        *problem = gw_strdup_printf("%s: no parent directory", real);
        return -1;
    }
    *slash = '\0';
    const char *base = strrchr(real, '/') + 1;
    unsigned dom, bus;
    char tail;
    if (sscanf(base, "pci%x:%x%c", &dom, &bus, &tail) == 2)
        return -1;
    if (!gw_is_bdf(base)) {
        *problem = gw_strdup_printf("cannot place in the PCI tree: the parent directory %s is "
                                    "neither a PCI function nor a root bus (pciDDDD:BB); flat "
                                    "sysfs layout?", real);
        return -1;
    }
    long p = gw_scan_find(s, base);
    if (p < 0) {
        *problem = gw_strdup_printf("parent bridge %s (%s) is not listed in bus/pci/devices",
                                    base, real);
        return -1;
    }
    /* The parent's devices/ entry must lead to the same directory. */
    _cleanup_free_ char *preal = real_dir(s, &s->funcs[p], &err);
    if (!preal || strcmp(preal, real) != 0) {
        *problem = gw_strdup_printf("parent bridge %s: its bus/pci/devices entry does not lead "
                                    "to %s", base, real);
        return -1;
    }
    return p;
}

void gw_topo_link_parents(gw_scan *s)
{
    s->parent = gw_xcalloc(s->n_funcs ? s->n_funcs : 1, sizeof *s->parent);
    s->parent_problem = gw_xcalloc(s->n_funcs ? s->n_funcs : 1, sizeof *s->parent_problem);
    for (size_t i = 0; i < s->n_funcs; i++) {
        long p = find_parent(s, &s->funcs[i], &s->parent_problem[i]);
        s->parent[i] = p == (long)i ? -1 : (int)p;
    }
}

bool gw_topo_upstream(const gw_scan *s, size_t i, gw_bridge **out, size_t *n, gw_strv *errors)
{
    gw_bridge *path = NULL;
    size_t len = 0;
    bool complete = true;
    size_t cur = i;
    for (;;) {
        if (s->parent_problem[cur]) {
            if (cur == i)
                gw_strv_pushf(errors, "upstream path: %s", s->parent_problem[cur]);
            else
                gw_strv_pushf(errors, "upstream path: above %s: %s", s->funcs[cur].address,
                              s->parent_problem[cur]);
            complete = false;
            break;
        }
        int p = s->parent[cur];
        if (p < 0)
            break;
        if (len >= MAX_DEPTH) {
            gw_strv_pushf(errors, "upstream path: deeper than %d bridges (a cycle?)", MAX_DEPTH);
            complete = false;
            break;
        }
        const gw_func *b = &s->funcs[p];
        for (size_t e = 0; e < b->errors.n; e++)
            gw_strv_pushf(errors, "upstream %s: %s", b->address, b->errors.v[e]);
        path = gw_xrealloc(path, len + 1, sizeof *path);
        gw_bridge *g = &path[len++];
        memset(g, 0, sizeof *g);
        memcpy(g->address, b->address, GW_ADDR_LEN);
        g->vendor_id = b->vendor_id;
        g->device_id = b->device_id;
        g->port_type = b->port_type;
        g->acs = b->acs;
        cur = (size_t)p;
    }
    *out = path;
    *n = len;
    return complete;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool same_slot(const char *a, const char *b)
{
    return strncmp(a, b, 10) == 0;   /* "dddd:bb:dd" */
}

void gw_topo_group(const gw_scan *s, size_t gpu, gw_group_member **members, size_t *n,
                   gw_iso_view *view, gw_strv *errors)
{
    const gw_func *f = &s->funcs[gpu];
    *members = NULL;
    *n = 0;
    if (!f->iommu_group) {
        view->group_state = f->iommu_group_dangling ? GW_ISO_GROUP_DANGLING : GW_ISO_GROUP_NONE;
        return;
    }
    view->group = gw_xstrdup(f->iommu_group);
    _cleanup_free_ char *dir = gw_strdup_printf("%s/%s/devices", s->iommu_groups, f->iommu_group);
    _cleanup_free_ char *rel = gw_strdup_printf("sys/kernel/iommu_groups/%s/devices", f->iommu_group);
    int fd = gw_openat_root(s->host.fd, rel, O_RDONLY | O_DIRECTORY);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        int e = fd < 0 ? -fd : errno;
        if (fd >= 0)
            close(fd);
        gw_strv_pushf(errors, "iommu group %s: cannot list %s: %s", f->iommu_group, dir, gw_root_strerror(e));
        view->group_state = GW_ISO_GROUP_UNREADABLE;
        return;
    }
    gw_strv names = { 0 };
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (!gw_is_bdf(de->d_name)) {
            gw_strv_pushf(errors, "iommu group %s: entry '%s' is not a PCI address", f->iommu_group,
                          de->d_name);
            continue;
        }
        gw_strv_push(&names, gw_xstrdup(de->d_name));
    }
    closedir(d);
    if (names.n)
        qsort(names.v, names.n, sizeof *names.v, cmp_str);

    bool self = false;
    gw_group_member *m = gw_xcalloc(names.n ? names.n : 1, sizeof *m);
    for (size_t i = 0; i < names.n; i++) {
        memcpy(m[i].address, names.v[i], GW_ADDR_LEN);
        m[i].same_slot = same_slot(names.v[i], f->address);
        self |= !strcmp(names.v[i], f->address);
        gw_iso_member *im = gw_iso_view_add_member(view, names.v[i]);
        long idx = gw_scan_find(s, names.v[i]);
        if (idx < 0) {
            gw_strv_pushf(errors, "iommu group %s: member %s is not listed in bus/pci/devices",
                          f->iommu_group, names.v[i]);
            continue;
        }
        /* The header type from config space, else from the kernel's class
         * (pcifunc.c): what the clean-up's reader does too. */
        const gw_func *o = &s->funcs[idx];
        m[i].driver = gw_xstrdup(o->driver);
        m[i].is_bridge = gw_func_is_bridge(o);
        im->known = o->hdrtype >= 0;
        im->is_bridge = m[i].is_bridge;
        im->vendor_id = o->ids_known ? o->vendor_id : 0;
        im->device_id = o->ids_known ? o->device_id : 0;
        im->class_code = o->class_known ? o->class_code : 0;
        im->driver = gw_xstrdup(o->driver);
    }
    if (!self)
        gw_strv_pushf(errors, "iommu group %s does not list the GPU itself", f->iommu_group);
    *members = m;
    *n = names.n;
    gw_strv_free(&names);
}

void gw_topo_cliques(gw_host *host)
{
    /* Nearest switch upstream port of each GPU; GPUs come sorted, so the
     * first GPU seen under a port is that clique's lowest address. */
    gw_strv ports = { 0 };
    gw_strv *members = NULL;
    for (size_t g = 0; g < host->n_gpus; g++) {
        gw_gpu *gpu = &host->gpus[g];
        gpu->clique = -1;
        const char *port = NULL;
        for (size_t b = 0; b < gpu->n_upstream && !port; b++)
            if (gpu->upstream[b].port_type == GW_PORT_UPSTREAM)
                port = gpu->upstream[b].address;
        if (!port)
            continue;
        long k = gw_strv_find(&ports, port);
        if (k < 0) {
            gw_strv_push(&ports, gw_xstrdup(port));
            members = gw_xrealloc(members, ports.n, sizeof *members);
            memset(&members[ports.n - 1], 0, sizeof *members);
            k = (long)ports.n - 1;
        }
        gw_strv_push(&members[k], gw_xstrdup(gpu->address));
    }
    for (size_t k = 0; k < ports.n; k++) {
        if (members[k].n < 2) {
            gw_strv_free(&members[k]);
            continue;
        }
        size_t id = host->n_cliques++;
        host->cliques = gw_xrealloc(host->cliques, host->n_cliques, sizeof *host->cliques);
        host->cliques[id].members = members[k];
        for (size_t i = 0; i < members[k].n; i++) {
            gw_gpu *gpu = (gw_gpu *)gw_host_find_gpu(host, members[k].v[i]);
            if (gpu)
                gpu->clique = (int)id;
        }
    }
    if (host->n_cliques > 16)
        gw_strv_pushf(&host->errors, "%zu P2P cliques: QEMU's clique id has 4 bits (0-15), so "
                                     "cliques 16 and above cannot be expressed", host->n_cliques);
    free(members);
    gw_strv_free(&ports);
}
