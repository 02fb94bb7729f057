/* SPDX-License-Identifier: Apache-2.0 */
/* The inventory as JSON (the protocol's `inventory` op, `gpuwarden inventory
 * -f json`), its generation number, and reading it back. */
#include <gpuwarden/inventory.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <string.h>

#include "inventory_internal.h"
#include "util.h"

#define _cleanup_json_ _cleanup_(json_decrefp)   /* jansson's own */

/* Bumped if the serialization below ever changes, so that an old generation
 * can never be mistaken for a new one. */
#define GENERATION_DOMAIN "gpuwarden-inventory-1\n"

static json_t *strv_json(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *deployable_json(const gw_deployable *d)
{
    json_t *handles = json_array();
    for (size_t i = 0; i < d->n_attach_handles; i++)
        json_array_append_new(handles, json_pack("{s:s, s:s}", "type", d->attach_handles[i].type,
                                                 "info", d->attach_handles[i].info));
    json_t *device = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "vendor", d->vendor, "model", d->model,
                               "type", d->type, "std_board_info", d->std_board_info, "controlpath",
                               "type", d->cpid_type, "info", d->cpid_info);
    /* json_pack keeps this key order in the output. */
    return json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:s, s:o}", "name", d->name, "rc", d->rc,
                     "num_accelerators", (json_int_t)d->num_accelerators, "reserved", (json_int_t)d->reserved,
                     "traits", strv_json(d->traits, d->n_traits), "attach_handles", handles,
                     "gpus", strv_json(d->gpus, d->n_gpus), "driver_name", d->driver_name, "device", device);
}

static json_t *deployables_json(const gw_inventory *inv)
{
    json_t *a = json_array();
    for (size_t i = 0; i < inv->n_deps; i++)
        json_array_append_new(a, deployable_json(&inv->deps[i]));
    return a;
}

/* Everything but the generation, in the published key order. */
static json_t *content_json(const gw_inventory *inv)
{
    return json_pack("{s:s, s:s, s:o}", "host", inv->host, "model", gw_inventory_model_name(inv->model),
                     "deployables", deployables_json(inv));
}

/* SHA-256 over a canonical text of the content (compact JSON, sorted keys,
 * deployables in their published order), first 53 bits. */
static int compute_generation(const gw_inventory *inv, uint64_t *out)
{
    _cleanup_json_ json_t *content = content_json(inv);
    _cleanup_free_ char *text = content ? json_dumps(content, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)
                                        : NULL;
    if (!text)
        return gw_error_set(-ENOMEM, "inventory: cannot serialize");
    _cleanup_free_ char *canon = gw_strdup_printf("%s%s", GENERATION_DOMAIN, text);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(canon, strlen(canon), md, &md_len, EVP_sha256(), NULL) || md_len < 8)
        return gw_error_set(-EIO, "inventory: SHA-256 failed");
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | md[i];
    v >>= 11;                   /* 53 bits: exact in a JSON/IEEE double */
    *out = v ? v : 1;           /* 0 stays free to mean "nothing published" */
    return 0;
}

static int cmp_dep(const void *a, const void *b)
{
    return strcmp(((const gw_deployable *)a)->gpus[0], ((const gw_deployable *)b)->gpus[0]);
}

int gw_inventory_finish(gw_inventory *inv)
{
    qsort(inv->deps, inv->n_deps, sizeof *inv->deps, cmp_dep);
    for (size_t i = 0; i < inv->n_deps; i++)
        for (size_t t = 0; t < inv->deps[i].n_traits; t++)
            if (!gw_trait_valid_generated(inv->deps[i].traits[t]))
                return gw_error_set(-EINVAL, "inventory: %s: trait '%s' is not valid for Placement",
                                    inv->deps[i].name, inv->deps[i].traits[t]);
    return compute_generation(inv, &inv->generation);
}

GW_EXTERN int gw_inventory_to_json(const gw_inventory *inv, char **out)
{
    if (!inv || !out)
        return gw_error_set(-EINVAL, "inventory: to_json: no inventory");
    _cleanup_json_ json_t *root = json_pack("{s:I, s:s, s:s, s:o}", "generation", (json_int_t)inv->generation,
                                            "host", inv->host, "model", gw_inventory_model_name(inv->model),
                                            "deployables", deployables_json(inv));
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    if (!text)
        return gw_error_set(-ENOMEM, "inventory: cannot serialize");
    *out = text;
    return 0;
}

/* ---- Reading back --------------------------------------------------------- */

static int read_strv(const json_t *a, const char *what, const char *name, char ***out, size_t *n)
{
    if (!json_is_array(a))
        return gw_error_set(-EINVAL, "inventory JSON: %s: \"%s\" is not an array", name, what);
    char **v = gw_xcalloc(json_array_size(a), sizeof *v);
    *out = v;
    *n = 0;
    size_t i;
    const json_t *s;
    json_array_foreach(a, i, s) {
        if (!json_is_string(s))
            return gw_error_set(-EINVAL, "inventory JSON: %s: %s[%zu] is not a string", name, what, i);
        v[(*n)++] = gw_xstrdup(json_string_value(s));
    }
    return 0;
}

static int read_handles(const json_t *a, gw_deployable *d)
{
    if (!json_is_array(a))
        return gw_error_set(-EINVAL, "inventory JSON: %s: \"attach_handles\" is not an array", d->name);
    gw_attach_handle *ah = gw_xcalloc(json_array_size(a), sizeof *ah);
    d->attach_handles = ah;
    size_t i;
    const json_t *h;
    json_array_foreach(a, i, h) {
        const char *type, *info;
        if (json_unpack((json_t *)h, "{s:s, s:s !}", "type", &type, "info", &info) < 0)
            return gw_error_set(-EINVAL, "inventory JSON: %s: attach_handles[%zu] is not {type, info}", d->name, i);
        const char *address = NULL;
        for (size_t g = 0; g < d->n_gpus && !address; g++) {
            _cleanup_free_ char *expect = gw_pci_json(d->gpus[g]);
            if (!strcmp(expect, info))
                address = d->gpus[g];
        }
        if (!address)
            return gw_error_set(-EINVAL, "inventory JSON: %s: attach handle %s is none of its GPUs", d->name, info);
        ah[d->n_attach_handles++] = (gw_attach_handle){ gw_xstrdup(type), gw_xstrdup(info), gw_xstrdup(address) };
    }
    return 0;
}

static int clique_from_name(const char *name)
{
    const char *u = strrchr(name, '_');
    if (!u || strncmp(u, "_clique", 7) || !u[7])
        return -1;
    char *end;
    long c = strtol(u + 7, &end, 10);
    return (*end || c < 0 || c >= GW_MAX_CLIQUES) ? -1 : (int)c;
}

static int read_device(const json_t *j, gw_deployable *d)
{
    const char *vendor, *model, *type, *board, *cp_type, *cp_info;
    if (json_unpack((json_t *)j, "{s:s, s:s, s:s, s:s, s:{s:s, s:s !} !}", "vendor", &vendor, "model", &model,
                    "type", &type, "std_board_info", &board, "controlpath", "type", &cp_type, "info", &cp_info) < 0)
        return gw_error_set(-EINVAL, "inventory JSON: %s: \"device\" is not {vendor, model, type, std_board_info, "
                            "controlpath: {type, info}}", d->name);
    d->vendor = gw_xstrdup(vendor);
    d->model = gw_xstrdup(model);
    d->type = gw_xstrdup(type);
    d->std_board_info = gw_xstrdup(board);
    d->cpid_type = gw_xstrdup(GW_AH_TYPE_PCI);
    d->cpid_info = gw_pci_json(d->gpus[0]);
    if (strcmp(cp_type, d->cpid_type) || strcmp(cp_info, d->cpid_info))
        return gw_error_set(-EINVAL, "inventory JSON: %s: control path %s %s is not its first GPU's", d->name,
                            cp_type, cp_info);
    return 0;
}

static int read_deployable(const json_t *j, size_t index, gw_deployable *d)
{
    const char *name, *rc, *driver_name;
    json_int_t num, reserved;
    json_t *traits, *handles, *gpus, *device;
    if (json_unpack((json_t *)j, "{s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:s, s:o !}", "name", &name, "rc", &rc,
                    "num_accelerators", &num, "reserved", &reserved, "traits", &traits,
                    "attach_handles", &handles, "gpus", &gpus, "driver_name", &driver_name, "device", &device) < 0)
        return gw_error_set(-EINVAL, "inventory JSON: deployables[%zu] does not have exactly name, rc, "
                            "num_accelerators, reserved, traits, attach_handles, gpus, driver_name, device", index);
    d->name = gw_xstrdup(name);
    d->rc = gw_xstrdup(rc);
    d->driver_name = gw_xstrdup(driver_name);
    d->clique = clique_from_name(name);
    int r = read_strv(gpus, "gpus", name, (char ***)&d->gpus, &d->n_gpus);
    if (r < 0 || (r = read_strv(traits, "traits", name, (char ***)&d->traits, &d->n_traits)) < 0)
        return r;
    if (!d->n_gpus)
        return gw_error_set(-EINVAL, "inventory JSON: %s: no GPUs", name);
    for (size_t g = 0; g < d->n_gpus; g++)
        if (!gw_is_bdf(d->gpus[g]) || (g && strcmp(d->gpus[g - 1], d->gpus[g]) >= 0))
            return gw_error_set(-EINVAL, "inventory JSON: %s: GPU '%s' is not a canonical address in ascending order",
                                name, d->gpus[g]);
    if ((r = read_handles(handles, d)) < 0)
        return r;
    /* Every GPU has a handle or is reserved; one held by a stopped VM has
     * both (inventory.c, fill_states). */
    if (num != (json_int_t)d->n_gpus || reserved < (json_int_t)(d->n_gpus - d->n_attach_handles) ||
        reserved > num)
        return gw_error_set(-EINVAL, "inventory JSON: %s: num_accelerators %lld / reserved %lld do not match "
                            "%zu GPUs with %zu handles", name, (long long)num, (long long)reserved, d->n_gpus,
                            d->n_attach_handles);
    d->num_accelerators = (unsigned)num;
    d->reserved = (unsigned)reserved;
    return read_device(device, d);
}

static void inventory_freep(gw_inventory **p) { gw_inventory_free(*p); }

static int check_disjoint(const gw_inventory *inv)
{
    for (size_t a = 0; a < inv->n_deps; a++)
        for (size_t g = 0; g < inv->deps[a].n_gpus; g++)
            for (size_t b = a + 1; b < inv->n_deps; b++)
                for (size_t h = 0; h < inv->deps[b].n_gpus; h++)
                    if (!strcmp(inv->deps[a].gpus[g], inv->deps[b].gpus[h]))
                        return gw_error_set(-EINVAL, "inventory JSON: %s is in both %s and %s",
                                            inv->deps[a].gpus[g], inv->deps[a].name, inv->deps[b].name);
    return 0;
}

GW_EXTERN int gw_inventory_from_json(gw_inventory **out, const char *text)
{
    if (!out || !text)
        return gw_error_set(-EINVAL, "inventory JSON: no text");
    json_error_t err;
    _cleanup_json_ json_t *root = json_loads(text, 0, &err);
    if (!root)
        return gw_error_set(-EINVAL, "inventory JSON: line %d: %s", err.line, err.text);
    json_int_t generation;
    const char *host, *model;
    json_t *deps;
    if (json_unpack(root, "{s:I, s:s, s:s, s:o !}", "generation", &generation, "host", &host, "model", &model,
                    "deployables", &deps) < 0 || !json_is_array(deps))
        return gw_error_set(-EINVAL, "inventory JSON: expected {\"generation\": N, \"host\": str, "
                            "\"model\": str, \"deployables\": [...]}");

    _cleanup_(inventory_freep) gw_inventory *inv = gw_xcalloc(1, sizeof *inv);
    int r = gw_inventory_model_from_name(model, &inv->model);
    if (r < 0)
        return gw_error_set(r, "inventory JSON: unknown model '%s'", model);
    inv->host = gw_xstrdup(host);
    inv->deps = gw_xcalloc(json_array_size(deps), sizeof *inv->deps);
    size_t i;
    const json_t *d;
    json_array_foreach(deps, i, d) {
        if ((r = read_deployable(d, i, &inv->deps[inv->n_deps++])) < 0)
            return r;
    }
    r = check_disjoint(inv);
    if (r < 0 || (r = gw_inventory_finish(inv)) < 0)
        return r;
    if ((json_int_t)inv->generation != generation)
        return gw_error_set(-EINVAL, "inventory JSON: generation %lld does not match its content (%llu)",
                            (long long)generation, (unsigned long long)inv->generation);
    *out = GW_TAKE(inv);
    return 0;
}
