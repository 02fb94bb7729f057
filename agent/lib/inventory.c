/* SPDX-License-Identifier: Apache-2.0 */
/* Building the inventory: grouping GPUs into deployables (per GPU or per
 * clique), their traits, reservation and attach handles, and carrying over
 * deployables that hold an attached GPU. */
#include <gpuwarden/inventory.h>
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "inventory_internal.h"
#include "util.h"

typedef struct gpu_rec {
    const char *address;
    uint16_t vendor_id, device_id;
    int numa_node;
    int clique;                 /* after the override */
    gw_state state;
    bool attached;
    uint16_t class_code;
    const char *model;
    bool carried;               /* claimed by a carried-over deployable */
    bool stopped;               /* attached, but no VM holding it runs */
} gpu_rec;

typedef struct group {
    int clique;                 /* a clique deployable's id; -1 = one GPU */
    size_t *recs;               /* indices into the sorted records */
    size_t n;
} group;

typedef struct build {
    const gw_inventory_options *opts;
    const char *host;
    gpu_rec *recs;
    size_t n_recs;
    group *groups;
    size_t n_groups;
    const gw_deployable **carried;  /* from opts->previous */
    size_t n_carried;
} build;

static void build_clear(build *b)
{
    for (size_t i = 0; i < b->n_groups; i++)
        free(b->groups[i].recs);
    free(b->groups);
    free(b->recs);
    free(b->carried);
}

GW_EXTERN const char *gw_inventory_model_name(gw_inventory_model model)
{
    switch (model) {
    case GW_INVENTORY_PER_GPU: return "per_gpu";
    case GW_INVENTORY_PER_CLIQUE: return "per_clique";
    }
    return "invalid";
}

GW_EXTERN int gw_inventory_model_from_name(const char *name, gw_inventory_model *out)
{
    if (name && (!strcmp(name, "per_gpu") || !strcmp(name, "per-gpu")))
        *out = GW_INVENTORY_PER_GPU;
    else if (name && (!strcmp(name, "per_clique") || !strcmp(name, "per-clique")))
        *out = GW_INVENTORY_PER_CLIQUE;
    else
        return gw_error_set(-EINVAL, "unknown inventory model '%s' (per_gpu or per_clique)", name ? name : "");
    return 0;
}

char *gw_pci_json(const char *address)
{
    /* "dddd:bb:dd.f" -> Cyborg's pci_str_to_json(): sorted keys, string
     * values, Python json.dumps separators ", " and ": ". */
    return gw_strdup_printf("{\"bus\": \"%.2s\", \"device\": \"%.2s\", \"domain\": \"%.4s\", \"function\": \"%.1s\"}",
                            address + 5, address + 8, address, address + 11);
}

/* ---- Input validation ----------------------------------------------------- */

static int check_host(const char *host)
{
    if (!*host)
        return gw_error_set(-EINVAL, "inventory: empty host name");
    for (const char *p = host; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return gw_error_set(-EINVAL, "inventory: host name '%s' has a space or non-printable character", host);
    /* The longest names: "<host>_0000:00:00.0" and "<host>_clique15". */
    size_t longest = strlen(host) + 1 + (GW_ADDR_LEN - 1);
    if (longest > GW_RP_NAME_MAX)
        return gw_error_set(-EINVAL, "inventory: host name '%.40s...' is too long: deployable names would exceed "
                            "Placement's %d characters", host, GW_RP_NAME_MAX);
    return 0;
}

static bool has_prefix(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static int check_extra_traits(const gw_inventory_options *o)
{
    if (o->n_extra_traits && !o->extra_traits)
        return gw_error_set(-EINVAL, "inventory: %zu extra traits but no array", o->n_extra_traits);
    for (size_t i = 0; i < o->n_extra_traits; i++) {
        const char *t = o->extra_traits[i];
        int r = gw_trait_check(t);
        if (r < 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", gw_error_message());
            return gw_error_set(r, "inventory: extra %s", why);
        }
        if (has_prefix(t, GW_TRAIT_CLIQUE_PREFIX) || has_prefix(t, GW_TRAIT_NUMA_PREFIX))
            return gw_error_set(-EINVAL, "inventory: extra trait '%s' is in gpuwarden's own namespace "
                                "(%s*, %s*), which describes the topology", t, GW_TRAIT_CLIQUE_PREFIX,
                                GW_TRAIT_NUMA_PREFIX);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t, o->extra_traits[j]))
                return gw_error_set(-EINVAL, "inventory: extra trait '%s' is given twice", t);
    }
    return 0;
}

static int cmp_rec(const void *a, const void *b)
{
    return strcmp(((const gpu_rec *)a)->address, ((const gpu_rec *)b)->address);
}

static int load_recs(build *b, const gw_inventory_gpu *gpus, size_t n)
{
    if (n && !gpus)
        return gw_error_set(-EINVAL, "inventory: %zu GPUs but no array", n);
    b->recs = gw_xcalloc(n, sizeof *b->recs);
    for (size_t i = 0; i < n; i++) {
        const gw_inventory_gpu *g = &gpus[i];
        if (!g->address || !gw_is_bdf(g->address))
            return gw_error_set(-EINVAL, "inventory: GPU %zu: '%s' is not a canonical PCI address", i,
                                g->address ? g->address : "(null)");
        if (g->clique < -1 || g->clique >= GW_MAX_CLIQUES)
            return gw_error_set(-EINVAL, "inventory: %s: clique %d is outside -1..15", g->address, g->clique);
        if ((unsigned)g->state >= GW_STATE_COUNT)
            return gw_error_set(-EINVAL, "inventory: %s: invalid state %d", g->address, (int)g->state);
        if (g->numa_node < -1)
            return gw_error_set(-EINVAL, "inventory: %s: NUMA node %d", g->address, g->numa_node);
        b->recs[i] = (gpu_rec){ g->address, g->vendor_id, g->device_id, g->numa_node, g->clique, g->state,
                                g->attached, g->class_code, g->model, false, false };
    }
    b->n_recs = n;
    qsort(b->recs, n, sizeof *b->recs, cmp_rec);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(b->recs[i].address, b->recs[i - 1].address))
            return gw_error_set(-EINVAL, "inventory: GPU %s is listed twice", b->recs[i].address);
    return 0;
}

/* In a VM: its allocation holds its capacity and Cyborg has bound its handle. */
static bool is_attached(const gpu_rec *r) { return r->state == GW_STATE_ATTACHED || r->attached; }

static gpu_rec *find_rec(const build *b, const char *address)
{
    gpu_rec key = { .address = address };
    return bsearch(&key, b->recs, b->n_recs, sizeof *b->recs, cmp_rec);
}

/* The GPUs of options.stopped: attached ones count as reserved (fill_states). */
static int mark_stopped(build *b)
{
    const gw_inventory_options *o = b->opts;
    if (o->n_stopped && !o->stopped)
        return gw_error_set(-EINVAL, "inventory: %zu stopped GPUs but no array", o->n_stopped);
    for (size_t i = 0; i < o->n_stopped; i++) {
        const char *a = o->stopped[i];
        if (!a || !gw_is_bdf(a))
            return gw_error_set(-EINVAL, "inventory: stopped GPU %zu: '%s' is not a canonical PCI address", i,
                                a ? a : "(null)");
        gpu_rec *r = find_rec(b, a);
        if (r)
            r->stopped = true;
    }
    return 0;
}

/* Apply the override, or keep the topology and say why not. */
static void apply_override(build *b, const gw_inventory_gpu *gpus, size_t n, char **error)
{
    const gw_clique_override *ov = b->opts->clique_override;
    if (!ov)
        return;
    if (gw_clique_override_check(ov, gpus, n) < 0) {
        *error = gw_xstrdup(gw_error_message());
        gw_log(GW_LOG_WARNING, "%s; keeping the topology cliques", *error);
        return;
    }
    for (size_t i = 0; i < b->n_recs; i++)
        b->recs[i].clique = gw_clique_override_lookup(ov, b->recs[i].address);
}

/* ---- Grouping ------------------------------------------------------------- */

static group *add_group(build *b, int clique)
{
    b->groups = gw_xrealloc(b->groups, b->n_groups + 1, sizeof *b->groups);
    group *g = &b->groups[b->n_groups++];
    *g = (group){ .clique = clique };
    return g;
}

static void group_add(group *g, size_t rec)
{
    g->recs = gw_xrealloc(g->recs, g->n + 1, sizeof *g->recs);
    g->recs[g->n++] = rec;
}

static char *group_name(const build *b, const group *g)
{
    if (g->clique >= 0)
        return gw_strdup_printf("%s_clique%d", b->host, g->clique);
    return gw_strdup_printf("%s_%s", b->host, b->recs[g->recs[0]].address);
}

static void make_groups(build *b)
{
    bool per_clique = b->opts->model == GW_INVENTORY_PER_CLIQUE;
    /* Indices, not pointers: add_group() may move the array. Records are
     * sorted, so every group's members come out sorted. */
    size_t clique_group[GW_MAX_CLIQUES];
    bool seen[GW_MAX_CLIQUES] = { false };
    for (size_t i = 0; i < b->n_recs; i++) {
        int c = b->recs[i].clique;
        if (!per_clique || c < 0) {
            group_add(add_group(b, -1), i);
            continue;
        }
        if (!seen[c]) {
            add_group(b, c);
            clique_group[c] = b->n_groups - 1;
            seen[c] = true;
        }
        group_add(&b->groups[clique_group[c]], i);
    }
}

static bool same_gpus(const build *b, const group *g, const gw_deployable *d)
{
    if (g->n != d->n_gpus)
        return false;
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(b->recs[g->recs[i]].address, d->gpus[i]))
            return false;
    return true;
}

static bool holds_attached(const build *b, const gw_deployable *d)
{
    for (size_t i = 0; i < d->n_gpus; i++) {
        const gpu_rec *r = find_rec(b, d->gpus[i]);
        if (r && is_attached(r))
            return true;
    }
    return false;
}

/* Would the fresh grouping publish `d` exactly as it is (name and GPUs)? */
static bool regrouped_unchanged(const build *b, const gw_deployable *d)
{
    for (size_t i = 0; i < b->n_groups; i++) {
        _cleanup_free_ char *name = group_name(b, &b->groups[i]);
        if (!strcmp(name, d->name))
            return same_gpus(b, &b->groups[i], d);
    }
    return false;
}

static bool is_carried_name(const build *b, const char *name)
{
    for (size_t i = 0; i < b->n_carried; i++)
        if (!strcmp(b->carried[i]->name, name))
            return true;
    return false;
}

/* Deployables of the previous inventory holding an attached GPU keep their
 * name and GPUs unless the fresh grouping already publishes them unchanged;
 * their GPUs leave the fresh groups. A fresh clique group that lost members
 * keeps its name unless a carried deployable holds that name, in which case
 * its remaining GPUs go per-GPU until the carried one is released. */
static void carry_over(build *b)
{
    const gw_inventory *prev = b->opts->previous;
    if (!prev)
        return;
    b->carried = gw_xcalloc(prev->n_deps, sizeof *b->carried);
    for (size_t i = 0; i < prev->n_deps; i++) {
        const gw_deployable *d = &prev->deps[i];
        if (!holds_attached(b, d) || regrouped_unchanged(b, d))
            continue;
        b->carried[b->n_carried++] = d;
        for (size_t k = 0; k < d->n_gpus; k++) {
            gpu_rec *r = find_rec(b, d->gpus[k]);
            if (r)
                r->carried = true;
        }
        gw_log(GW_LOG_NOTICE, "inventory: keeping %s as published: it holds an attached GPU", d->name);
    }
    if (!b->n_carried)
        return;

    size_t n_old = b->n_groups;
    for (size_t i = 0; i < n_old; i++) {
        group *g = &b->groups[i];
        size_t kept = 0;
        for (size_t k = 0; k < g->n; k++)
            if (!b->recs[g->recs[k]].carried)
                g->recs[kept++] = g->recs[k];
        g->n = kept;
        if (g->clique < 0 || !g->n)
            continue;
        _cleanup_free_ char *name = group_name(b, g);
        if (!is_carried_name(b, name))
            continue;
        /* Split: the first member stays in place as a single, the rest
         * become new singles (add_group may move b->groups). */
        size_t n = g->n;
        _cleanup_free_ size_t *members = GW_TAKE(b->groups[i].recs);
        b->groups[i] = (group){ .clique = -1 };
        group_add(&b->groups[i], members[0]);
        for (size_t k = 1; k < n; k++)
            group_add(add_group(b, -1), members[k]);
    }
}

/* ---- Deployables ---------------------------------------------------------- */

typedef struct strv {
    char **v;
    size_t n;
} strv;

static void strv_add(strv *s, char *owned)
{
    s->v = gw_xrealloc(s->v, s->n + 1, sizeof *s->v);
    s->v[s->n++] = owned;
}

static bool strv_has(const strv *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], x))
            return true;
    return false;
}

static void fresh_traits(const build *b, const group *g, strv *t)
{
    const gpu_rec *first = &b->recs[g->recs[0]];
    bool same_product = true, same_node = true;
    for (size_t k = 1; k < g->n; k++) {
        const gpu_rec *r = &b->recs[g->recs[k]];
        same_product &= r->vendor_id == first->vendor_id && r->device_id == first->device_id;
        same_node &= r->numa_node == first->numa_node;
    }
    strv_add(t, gw_xstrdup(GW_TRAIT_OWNER_CYBORG));
    if (same_product) {
        char buf[32];
        strv_add(t, gw_xstrdup(gw_trait_product(first->vendor_id, first->device_id, buf, sizeof buf)));
    }
    int clique = g->clique >= 0 ? g->clique : first->clique;
    if (clique >= 0)
        strv_add(t, gw_trait_clique(clique));
    if (same_node && first->numa_node >= 0)
        strv_add(t, gw_trait_numa(first->numa_node));
    for (size_t i = 0; i < b->opts->n_extra_traits; i++)
        if (!strv_has(t, b->opts->extra_traits[i]))
            strv_add(t, gw_xstrdup(b->opts->extra_traits[i]));
}

/* Reservation and handles from the GPUs' current states: a GPU that is not
 * in the input (only possible in a carried deployable) is reserved. A GPU
 * held by stopped VMs only has both: the handle because Cyborg has bound it
 * (the stopped instance keeps its accelerator request), the reservation
 * because the instance's allocation may go at any time (Nova deletes it
 * after undefining the domain) while the GPU still waits for its clean-up.
 * So a deployable's handles and reserved may add up to more than its GPUs. */
static void fill_states(const build *b, gw_deployable *d)
{
    gw_attach_handle *ah = gw_xcalloc(d->n_gpus, sizeof *ah);
    size_t n_ah = 0;
    for (size_t i = 0; i < d->n_gpus; i++) {
        const gpu_rec *r = find_rec(b, d->gpus[i]);
        bool attached = r && is_attached(r);
        if (r && (r->state == GW_STATE_ALLOCATABLE || attached))
            ah[n_ah++] = (gw_attach_handle){ gw_xstrdup(GW_AH_TYPE_PCI), gw_pci_json(d->gpus[i]),
                                             gw_xstrdup(d->gpus[i]) };
        bool in_use = attached && !r->stopped;      /* a running VM's allocation takes its unit */
        bool free_now = r && r->state == GW_STATE_ALLOCATABLE && !attached;
        if (!in_use && !free_now)
            d->reserved++;
    }
    d->attach_handles = ah;
    d->n_attach_handles = n_ah;
    d->num_accelerators = (unsigned)d->n_gpus;
}

static void fill_common(gw_deployable *d)
{
    d->rc = gw_xstrdup(GW_RC_PGPU);
    d->cpid_type = gw_xstrdup(GW_AH_TYPE_PCI);
    d->cpid_info = gw_pci_json(d->gpus[0]);
    d->type = gw_xstrdup(GW_DEVICE_TYPE_GPU);
}

/* lspci's names for the display classes (pci.ids class 03). */
static const char *controller_name(uint16_t class_code)
{
    switch (class_code) {
    case 0x0300: return "VGA compatible controller";
    case 0x0301: return "XGA compatible controller";
    case 0x0302: return "3D controller";
    default: return "Display controller";
    }
}

/* Cyborg's DriverDevice fields, from the deployable's first GPU. */
static void fill_device(gw_deployable *d, const gpu_rec *r)
{
    char hex[5];
    d->driver_name = gw_xstrdup(gw_vendor_token(r->vendor_id, hex));
    d->vendor = gw_strdup_printf("%04x", r->vendor_id);
    /* jansson refuses invalid UTF-8, and the JSON must always serialize. */
    json_t *probe = r->model ? json_string(r->model) : NULL;
    d->model = probe ? gw_xstrdup(r->model) : gw_strdup_printf("Device %04x", r->device_id);
    json_decref(probe);
    d->std_board_info = gw_strdup_printf("{\"controller\": \"%s\", \"product_id\": \"%04x\"}",
                                         controller_name(r->class_code), r->device_id);
}

static void make_fresh(const build *b, const group *g, gw_deployable *d)
{
    d->name = group_name(b, g);
    d->clique = g->clique;
    char **gpus = gw_xcalloc(g->n, sizeof *gpus);
    for (size_t k = 0; k < g->n; k++)
        gpus[k] = gw_xstrdup(b->recs[g->recs[k]].address);
    d->gpus = (const char *const *)gpus;
    d->n_gpus = g->n;
    strv t = { 0 };
    fresh_traits(b, g, &t);
    d->traits = (const char *const *)t.v;
    d->n_traits = t.n;
    fill_common(d);
    fill_device(d, &b->recs[g->recs[0]]);
    fill_states(b, d);
}

static char **strv_copy(const char *const *v, size_t n)
{
    char **c = gw_xcalloc(n, sizeof *c);
    for (size_t i = 0; i < n; i++)
        c[i] = gw_xstrdup(v[i]);
    return c;
}

static void make_carried(const build *b, const gw_deployable *prev, gw_deployable *d)
{
    d->name = gw_xstrdup(prev->name);
    d->clique = prev->clique;
    d->gpus = (const char *const *)strv_copy(prev->gpus, prev->n_gpus);
    d->n_gpus = prev->n_gpus;
    d->traits = (const char *const *)strv_copy(prev->traits, prev->n_traits);
    d->n_traits = prev->n_traits;
    d->carried = true;
    fill_common(d);
    d->driver_name = gw_xstrdup(prev->driver_name);
    d->vendor = gw_xstrdup(prev->vendor);
    d->model = gw_xstrdup(prev->model);
    d->std_board_info = gw_xstrdup(prev->std_board_info);
    fill_states(b, d);
}

void gw_deployable_clear(gw_deployable *d)
{
    free((char *)d->name);
    free((char *)d->rc);
    for (size_t i = 0; i < d->n_traits; i++)
        free((char *)d->traits[i]);
    free((char **)d->traits);
    for (size_t i = 0; i < d->n_attach_handles; i++) {
        free((char *)d->attach_handles[i].type);
        free((char *)d->attach_handles[i].info);
        free((char *)d->attach_handles[i].address);
    }
    free((gw_attach_handle *)d->attach_handles);
    for (size_t i = 0; i < d->n_gpus; i++)
        free((char *)d->gpus[i]);
    free((char **)d->gpus);
    free((char *)d->cpid_type);
    free((char *)d->cpid_info);
    free((char *)d->driver_name);
    free((char *)d->vendor);
    free((char *)d->model);
    free((char *)d->type);
    free((char *)d->std_board_info);
    *d = (gw_deployable){ 0 };
}

GW_EXTERN void gw_inventory_free(gw_inventory *inv)
{
    if (!inv)
        return;
    for (size_t i = 0; i < inv->n_deps; i++)
        gw_deployable_clear(&inv->deps[i]);
    free(inv->deps);
    free(inv->host);
    free(inv->clique_error);
    free(inv);
}

static void inventory_freep(gw_inventory **p) { gw_inventory_free(*p); }

static void emit(build *b, gw_inventory *inv)
{
    size_t n_fresh = 0;
    for (size_t i = 0; i < b->n_groups; i++)
        n_fresh += b->groups[i].n > 0;
    inv->deps = gw_xcalloc(n_fresh + b->n_carried, sizeof *inv->deps);
    for (size_t i = 0; i < b->n_carried; i++)
        make_carried(b, b->carried[i], &inv->deps[inv->n_deps++]);
    for (size_t i = 0; i < b->n_groups; i++)
        if (b->groups[i].n)
            make_fresh(b, &b->groups[i], &inv->deps[inv->n_deps++]);
}

static int resolve_host(const gw_inventory_options *o, char **out)
{
    if (o->host) {
        *out = gw_xstrdup(o->host);
        return 0;
    }
    char name[HOST_NAME_MAX + 1] = "";
    if (gethostname(name, sizeof name) < 0)
        return gw_error_set(-errno, "inventory: gethostname: %s", strerror(errno));
    name[HOST_NAME_MAX] = '\0';
    *out = gw_xstrdup(name);
    return 0;
}

GW_EXTERN int gw_inventory_new(gw_inventory **out, const gw_inventory_gpu *gpus, size_t n_gpus,
                               const gw_inventory_options *opts)
{
    static const gw_inventory_options defaults = GW_INVENTORY_OPTIONS_INIT;
    if (!out)
        return gw_error_set(-EINVAL, "inventory: no output pointer");
    if (!opts)
        opts = &defaults;
    if (opts->version < 1 || opts->version > GW_INVENTORY_OPTIONS_VERSION)
        return gw_error_set(-EINVAL, "inventory: options version %u, this library knows 1 to %d", opts->version,
                            GW_INVENTORY_OPTIONS_VERSION);
    gw_inventory_options v2 = GW_INVENTORY_OPTIONS_INIT;
    if (opts->version == 1) {
        memcpy(&v2, opts, offsetof(gw_inventory_options, stopped));    /* a version-1 struct ends there */
        v2.version = GW_INVENTORY_OPTIONS_VERSION;
        opts = &v2;
    }
    if (opts->model != GW_INVENTORY_PER_GPU && opts->model != GW_INVENTORY_PER_CLIQUE)
        return gw_error_set(-EINVAL, "inventory: unknown model %d", (int)opts->model);

    _cleanup_(inventory_freep) gw_inventory *inv = gw_xcalloc(1, sizeof *inv);
    inv->model = opts->model;
    int r = resolve_host(opts, &inv->host);
    if (r < 0 || (r = check_host(inv->host)) < 0 || (r = check_extra_traits(opts)) < 0)
        return r;

    build b = { .opts = opts, .host = inv->host };
    if ((r = load_recs(&b, gpus, n_gpus)) < 0 || (r = mark_stopped(&b)) < 0) {
        build_clear(&b);
        return r;
    }
    apply_override(&b, gpus, n_gpus, &inv->clique_error);
    make_groups(&b);
    carry_over(&b);
    emit(&b, inv);
    build_clear(&b);

    if ((r = gw_inventory_finish(inv)) < 0)
        return r;
    *out = GW_TAKE(inv);
    return 0;
}

/* ---- Accessors ------------------------------------------------------------ */

GW_EXTERN const char *gw_inventory_host(const gw_inventory *inv) { return inv ? inv->host : NULL; }
GW_EXTERN gw_inventory_model gw_inventory_model_of(const gw_inventory *inv)
{
    return inv ? inv->model : GW_INVENTORY_PER_GPU;
}
GW_EXTERN uint64_t gw_inventory_generation(const gw_inventory *inv) { return inv ? inv->generation : 0; }
GW_EXTERN const char *gw_inventory_clique_error(const gw_inventory *inv) { return inv ? inv->clique_error : NULL; }
GW_EXTERN size_t gw_inventory_deployable_count(const gw_inventory *inv) { return inv ? inv->n_deps : 0; }

GW_EXTERN const gw_deployable *gw_inventory_deployable(const gw_inventory *inv, size_t index)
{
    return inv && index < inv->n_deps ? &inv->deps[index] : NULL;
}

GW_EXTERN const gw_deployable *gw_inventory_find(const gw_inventory *inv, const char *name)
{
    for (size_t i = 0; inv && name && i < inv->n_deps; i++)
        if (!strcmp(inv->deps[i].name, name))
            return &inv->deps[i];
    return NULL;
}

GW_EXTERN const gw_deployable *gw_inventory_find_gpu(const gw_inventory *inv, const char *address)
{
    for (size_t i = 0; inv && address && i < inv->n_deps; i++)
        for (size_t k = 0; k < inv->deps[i].n_gpus; k++)
            if (!strcmp(inv->deps[i].gpus[k], address))
                return &inv->deps[i];
    return NULL;
}
