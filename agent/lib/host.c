/* SPDX-License-Identifier: Apache-2.0 */
/* gw_host_scan(): enumerate <root>/sys/bus/pci/devices, read every function
 * (pcifunc.c), place it in the tree (topology.c) and build the GPU records
 * with their sysfs attributes (sysfs_attrs.c) and isolation verdict
 * (isolation.c). */
#include <gpuwarden/host.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_internal.h"
#include "isolation.h"
#include "pciaccess.h"
#include "sysfs_attrs.h"
#include "topology.h"
#include "util.h"

GW_EXTERN const char *gw_port_type_name(int port_type)
{
    switch (port_type) {
    case GW_PORT_NONE: return "none";
    case GW_PORT_ENDPOINT: return "endpoint";
    case GW_PORT_LEGACY_ENDPOINT: return "legacy_endpoint";
    case GW_PORT_ROOT_PORT: return "root_port";
    case GW_PORT_UPSTREAM: return "upstream";
    case GW_PORT_DOWNSTREAM: return "downstream";
    case GW_PORT_PCIE_TO_PCI: return "pcie_to_pci";
    case GW_PORT_PCI_TO_PCIE: return "pci_to_pcie";
    case GW_PORT_RC_ENDPOINT: return "rc_endpoint";
    case GW_PORT_RC_EVENT_COLLECTOR: return "rc_event_collector";
    default: return "unknown";
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

long gw_scan_find(const gw_scan *s, const char *address)
{
    size_t lo = 0, hi = s->n_funcs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->funcs[mid].address, address);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static char *join_root(const char *root, const char *rel)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n == 1 && root[0] == '/')
        n = 0;
    return gw_strdup_printf("%.*s/%s", (int)n, root, rel);
}

/* The addresses in devices/, sorted. Entries that are not addresses are
 * host errors: libpci's own scan would die on them, so it is not used. */
static int list_devices(gw_scan *s, gw_strv *addrs)
{
    _cleanup_free_ char *dir = gw_strdup_printf("%s/devices", s->sysfs_pci);
    int fd = gw_openat_root(s->host.fd, "sys/bus/pci/devices", O_RDONLY | O_DIRECTORY);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        int e = fd < 0 ? -fd : errno;
        if (fd >= 0)
            close(fd);
        return gw_error_set(-e, "cannot read %s: %s", dir, gw_root_strerror(e));
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (!gw_is_bdf(de->d_name)) {
            gw_strv_pushf(&s->errors, "%s/%s: not a PCI address (dddd:bb:dd.f); skipped", dir,
                          de->d_name);
            continue;
        }
        gw_strv_push(addrs, gw_xstrdup(de->d_name));
    }
    closedir(d);
    if (addrs->n)
        qsort(addrs->v, addrs->n, sizeof *addrs->v, cmp_str);
    return 0;
}

static double speed_of_code(unsigned code)
{
    static const double gts[] = { 0, 2.5, 5.0, 8.0, 16.0, 32.0, 64.0 };
    return code < sizeof gts / sizeof *gts ? gts[code] : 0;
}

/* The kernel's pcie_get_speed_cap(): the highest speed of the Link
 * Capabilities 2 vector when there is one, else LnkCap's. */
static double max_speed(const gw_func *f)
{
    for (unsigned bit = 6; bit >= 1; bit--)
        if (f->lnkcap2 & (1u << bit))
            return speed_of_code(bit);
    return speed_of_code(f->lnkcap & PCI_EXP_LNKCAP_SPEED);
}

/* Port types with link registers (the kernel's pcie_cap_has_lnkctl()). */
static bool has_link(int port_type)
{
    switch (port_type) {
    case GW_PORT_ENDPOINT:
    case GW_PORT_LEGACY_ENDPOINT:
    case GW_PORT_ROOT_PORT:
    case GW_PORT_UPSTREAM:
    case GW_PORT_DOWNSTREAM:
    case GW_PORT_PCIE_TO_PCI:
    case GW_PORT_PCI_TO_PCIE:
        return true;
    default:
        return false;
    }
}

static void gpu_link(const gw_root *r, gw_gpu *g, const gw_func *f, gw_strv *errors)
{
    if (gw_attr_link(r, f->rel, &g->link) < 0) {
        gw_strv_pushf(errors, "link: %s", gw_error_message());
        return;
    }
    if (g->link.present || !f->pcie || !has_link(f->port_type))
        return;
    /* Kernels before 4.13 lack the link files for some devices: LnkCap/LnkSta. */
    g->link.present = true;
    g->link.speed_gts = speed_of_code(f->lnksta & PCI_EXP_LNKSTA_SPEED);
    g->link.width = (f->lnksta & PCI_EXP_LNKSTA_WIDTH) >> 4;
    g->link.max_speed_gts = max_speed(f);
    g->link.max_width = (int)((f->lnkcap & PCI_EXP_LNKCAP_WIDTH) >> 4);
}

static void gpu_attrs(const gw_root *r, gw_gpu *g, const gw_func *f, gw_strv *errors)
{
    char *cpus = NULL;
    gw_strv methods = { 0 };
    if (gw_attr_numa_node(r, f->rel, &g->numa_node) < 0)
        gw_strv_pushf(errors, "numa_node: %s", gw_error_message());
    if (gw_attr_local_cpulist(r, f->rel, &cpus) < 0)
        gw_strv_pushf(errors, "local_cpulist: %s", gw_error_message());
    g->local_cpulist = cpus;
    if (gw_attr_reset_methods(r, f->rel, &methods) < 0)
        gw_strv_pushf(errors, "reset_method: %s", gw_error_message());
    g->reset_methods = (const char *const *)gw_strv_steal(&methods, &g->n_reset_methods);
    gpu_link(r, g, f, errors);
    if (gw_attr_aer(r, f->rel, &g->aer) < 0)
        gw_strv_pushf(errors, "aer: %s", gw_error_message());
    if (gw_attr_bar_sizes(r, f->rel, g->bar_sizes) < 0)
        gw_strv_pushf(errors, "resource: %s", gw_error_message());
    g->rom_present = gw_attr_rom_present(r, f->rel);
    g->config_all_ones = f->all_ones;
}

/* The other functions of the GPU's slot; their problems are the GPU's too
 * (an HDA function that fell off the bus went with its GPU). */
static void gpu_functions(gw_gpu *g, const gw_scan *s, const gw_func *f, gw_strv *errors,
                          bool *reported)
{
    char (*fns)[GW_ADDR_LEN] = NULL;
    size_t n = 0;
    for (size_t i = 0; i < s->n_funcs; i++) {
        const gw_func *o = &s->funcs[i];
        if (o == f || strncmp(o->address, f->address, 10))
            continue;
        fns = gw_xrealloc(fns, n + 1, sizeof *fns);
        memcpy(fns[n++], o->address, GW_ADDR_LEN);
        if (gw_func_is_gpu(o))
            continue;   /* reports its own */
        reported[i] = true;
        for (size_t e = 0; e < o->errors.n; e++)
            gw_strv_pushf(errors, "function %s: %s", o->address, o->errors.v[e]);
    }
    g->functions = (const char(*)[GW_ADDR_LEN])fns;
    g->n_functions = n;
}

/* The GPU's ATS as the isolation view has it: unknown unless the whole
 * config space (256 bytes, 4096 with the extended capabilities of a PCIe
 * function) was read, as through the host backend. */
static void iso_ats(const gw_func *f, gw_iso_view *v)
{
    if (!f->config_usable || f->config_len < 256)
        v->ats = GW_ISO_ATS_NO_CONFIG;
    else if (!f->pcie)
        v->ats = GW_ISO_ATS_ABSENT;
    else if (!f->ext_known)
        v->ats = GW_ISO_ATS_NO_EXT;
    else if (f->ats_present)
        v->ats = GW_ISO_ATS_PRESENT;
    else
        v->ats = GW_ISO_ATS_ABSENT;
    v->ats_ctrl = f->ats_ctrl;
}

/* The isolation verdict on the scan's view (isolation.c decides). */
static void gpu_verdict(gw_gpu *g, const gw_iso_view *view)
{
    gw_iso_verdict v;
    gw_iso_judge(view, &v);
    g->group_viable = v.group_ok;
    g->group_evidence = GW_TAKE(v.group_evidence);
    g->acs_path_ok = v.acs_ok;
    g->acs_evidence = GW_TAKE(v.acs_evidence);
    g->ats_ok = v.ats_ok;
    g->ats_evidence = GW_TAKE(v.ats_evidence);
    g->isolation_viable = v.viable;
    g->isolation_evidence = GW_TAKE(v.evidence);
    g->isolation_reasons = GW_TAKE(v.reasons);
    g->n_isolation_reasons = v.n_reasons;
    v.n_reasons = 0;
    gw_iso_verdict_clear(&v);
}

static void build_gpu(gw_gpu *g, gw_scan *s, size_t idx, gw_pci *pci, bool *reported)
{
    const gw_func *f = &s->funcs[idx];
    gw_strv errors = { 0 };
    for (size_t i = 0; i < f->errors.n; i++)
        gw_strv_push(&errors, gw_xstrdup(f->errors.v[i]));

    memcpy(g->address, f->address, GW_ADDR_LEN);
    g->vendor_id = f->vendor_id;
    g->device_id = f->device_id;
    g->subsystem_vendor_id = f->subsystem_vendor_id;
    g->subsystem_device_id = f->subsystem_device_id;
    g->revision = f->revision;
    g->class_code = f->class_code;
    if (f->ids_known) {
        g->vendor_name = gw_pci_vendor_name(pci, f->vendor_id);
        g->device_name = gw_pci_device_name(pci, f->vendor_id, f->device_id);
    }
    g->driver = gw_xstrdup(f->driver);
    g->iommu_group = gw_xstrdup(f->iommu_group);
    gpu_attrs(&s->host, g, f, &errors);
    g->flr = f->pcie && (f->devcap & PCI_EXP_DEVCAP_FLRESET);
    g->ats_present = f->ats_present;
    g->ats_enabled = f->ats_enabled;
    g->aer_present = f->aer_present;
    g->dsn_present = f->dsn_present;
    g->dsn = f->dsn;
    gpu_functions(g, s, f, &errors, reported);

    gw_iso_view view;
    gw_iso_view_init(&view, f->address);
    gw_bridge *path;
    view.path_complete = gw_topo_upstream(s, idx, &path, &g->n_upstream, &errors);
    g->upstream = path;
    for (size_t i = 0; i < g->n_upstream; i++)
        reported[gw_scan_find(s, path[i].address)] = true;
    view.path = gw_xcalloc(g->n_upstream ? g->n_upstream : 1, sizeof *view.path);
    if (g->n_upstream)
        memcpy(view.path, path, g->n_upstream * sizeof *path);
    view.n_path = g->n_upstream;

    gw_group_member *members;
    gw_topo_group(s, idx, &members, &g->n_group_members, &view, &errors);
    g->group_members = members;
    iso_ats(f, &view);
    gpu_verdict(g, &view);
    gw_iso_view_clear(&view);
    g->clique = -1;
    g->errors = (const char *const *)gw_strv_steal(&errors, &g->n_errors);
}

static void free_gpu(gw_gpu *g)
{
    free((char *)g->vendor_name);
    free((char *)g->device_name);
    free((char *)g->local_cpulist);
    free((char *)g->driver);
    free((char *)g->iommu_group);
    for (size_t i = 0; i < g->n_group_members; i++)
        free(g->group_members[i].driver);
    free((void *)g->group_members);
    for (size_t i = 0; i < g->n_reset_methods; i++)
        free((char *)g->reset_methods[i]);
    free((void *)g->reset_methods);
    free((void *)g->functions);
    free((void *)g->upstream);
    free((char *)g->acs_evidence);
    free((char *)g->group_evidence);
    free((char *)g->ats_evidence);
    free((char *)g->isolation_evidence);
    for (size_t i = 0; i < g->n_isolation_reasons; i++) {
        free((char *)g->isolation_reasons[i].text);
        free((void *)g->isolation_reasons[i].devices);
    }
    free((void *)g->isolation_reasons);
    for (size_t i = 0; i < g->n_errors; i++)
        free((char *)g->errors[i]);
    free((void *)g->errors);
}

static void build_host(gw_host *h, gw_scan *s, gw_pci *pci)
{
    bool *reported = gw_xcalloc(s->n_funcs ? s->n_funcs : 1, sizeof *reported);
    for (size_t i = 0; i < s->n_funcs; i++)
        if (gw_func_is_gpu(&s->funcs[i]))
            h->n_gpus++;
    h->gpus = gw_xcalloc(h->n_gpus ? h->n_gpus : 1, sizeof *h->gpus);
    size_t g = 0;
    for (size_t i = 0; i < s->n_funcs; i++)
        if (gw_func_is_gpu(&s->funcs[i]))
            build_gpu(&h->gpus[g++], s, i, pci, reported);

    /* Problems of other functions: those on a GPU's path or in its slot are
     * in that GPU's errors; a function whose class is unknown may be a GPU. */
    for (size_t i = 0; i < s->n_funcs; i++) {
        const gw_func *f = &s->funcs[i];
        if (gw_func_is_gpu(f) || reported[i])
            continue;
        if (!f->class_known)
            gw_strv_pushf(&s->errors, "%s: class unknown: cannot tell whether it is a GPU",
                          f->address);
        for (size_t e = 0; e < f->errors.n; e++)
            gw_strv_pushf(&s->errors, "%s: %s", f->address, f->errors.v[e]);
    }
    free(reported);
    h->errors = s->errors;
    memset(&s->errors, 0, sizeof s->errors);
    gw_topo_cliques(h);
}

static void scan_clear(gw_scan *s)
{
    for (size_t i = 0; i < s->n_funcs; i++) {
        gw_func_clear(&s->funcs[i]);
        if (s->parent_problem)
            free(s->parent_problem[i]);
    }
    free(s->funcs);
    free(s->parent);
    free(s->parent_problem);
    free(s->sysfs_pci);
    free(s->iommu_groups);
    free(s->real_root);
    gw_root_clear(&s->host);
    gw_strv_free(&s->errors);
}

GW_EXTERN int gw_host_scan(gw_host **out, const gw_host_options *opts)
{
    static const gw_host_options defaults = GW_HOST_OPTIONS_INIT;
    if (!out)
        return gw_error_set(-EINVAL, "gw_host_scan: out is NULL");
    *out = NULL;
    if (!opts)
        opts = &defaults;
    if (opts->version != GW_HOST_OPTIONS_VERSION)
        return gw_error_set(-EINVAL, "gw_host_scan: options version %u, expected %u",
                            opts->version, GW_HOST_OPTIONS_VERSION);
    gw_scan s = { .root = opts->root && *opts->root ? opts->root : "/", .host = { -1, NULL } };
    s.sysfs_pci = join_root(s.root, "sys/bus/pci");
    s.iommu_groups = join_root(s.root, "sys/kernel/iommu_groups");

    gw_strv addrs = { 0 };
    int r = gw_root_init(&s.host, s.root);
    if (r < 0)      /* worded as before the root had a descriptor: what could not be read */
        r = gw_error_set(r, "cannot read %s/devices: %s", s.sysfs_pci, strerror(-r));
    else
        s.real_root = realpath(s.root, NULL);
    if (r == 0)
        r = list_devices(&s, &addrs);
    gw_pci *pci = NULL;
    if (r == 0)
        r = gw_pci_open(&pci, s.sysfs_pci, opts->pci_ids);
    if (r < 0) {
        gw_strv_free(&addrs);
        scan_clear(&s);
        return r;
    }
    s.n_funcs = addrs.n;
    s.funcs = gw_xcalloc(s.n_funcs ? s.n_funcs : 1, sizeof *s.funcs);
    for (size_t i = 0; i < s.n_funcs; i++) {
        gw_func *f = &s.funcs[i];
        memcpy(f->address, addrs.v[i], GW_ADDR_LEN);
        f->pdev = gw_pci_add_device(pci, f->address);
    }
    gw_strv_free(&addrs);
    for (size_t i = 0; i < s.n_funcs; i++)
        gw_func_read(&s.host, &s.funcs[i]);
    gw_topo_link_parents(&s);

    gw_host *h = gw_xcalloc(1, sizeof *h);
    h->root = gw_xstrdup(s.root);
    build_host(h, &s, pci);
    gw_pci_close(pci);
    scan_clear(&s);
    gw_error_clear();
    *out = h;
    return 0;
}

GW_EXTERN void gw_host_free(gw_host *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n_gpus; i++)
        free_gpu(&h->gpus[i]);
    free(h->gpus);
    for (size_t i = 0; i < h->n_cliques; i++)
        gw_strv_free(&h->cliques[i].members);
    free(h->cliques);
    gw_strv_free(&h->errors);
    free(h->root);
    free(h);
}

GW_EXTERN const char *gw_host_root(const gw_host *h) { return h ? h->root : NULL; }
GW_EXTERN size_t gw_host_gpu_count(const gw_host *h) { return h ? h->n_gpus : 0; }

GW_EXTERN const gw_gpu *gw_host_gpu(const gw_host *h, size_t index)
{
    return h && index < h->n_gpus ? &h->gpus[index] : NULL;
}

GW_EXTERN const gw_gpu *gw_host_find_gpu(const gw_host *h, const char *address)
{
    if (!h || !address)
        return NULL;
    size_t lo = 0, hi = h->n_gpus;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(h->gpus[mid].address, address);
        if (c == 0)
            return &h->gpus[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

GW_EXTERN size_t gw_host_clique_count(const gw_host *h) { return h ? h->n_cliques : 0; }

GW_EXTERN size_t gw_host_clique_size(const gw_host *h, size_t clique)
{
    return h && clique < h->n_cliques ? h->cliques[clique].members.n : 0;
}

GW_EXTERN const char *gw_host_clique_member(const gw_host *h, size_t clique, size_t index)
{
    if (!h || clique >= h->n_cliques || index >= h->cliques[clique].members.n)
        return NULL;
    return h->cliques[clique].members.v[index];
}

GW_EXTERN size_t gw_host_error_count(const gw_host *h) { return h ? h->errors.n : 0; }

GW_EXTERN const char *gw_host_error(const gw_host *h, size_t index)
{
    return h && index < h->errors.n ? h->errors.v[index] : NULL;
}
