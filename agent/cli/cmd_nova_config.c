/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden nova-config: the [pci] device_spec and alias entries that make
 * Nova itself pass the managed GPUs through (report_in_placement, one-time
 * use), with the product, P2P clique and NUMA traits gpuwarden reports to
 * Cyborg. Reads the host like `gpuwarden discover`; never writes. */
#include <errno.h>
#include <gpuwarden/host.h>
#include <gpuwarden/hostops.h>
#include <gpuwarden/inventory.h>
#include <gpuwarden/sanitize.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "format.h"
#include "options.h"
#include "remote.h"

#define MAX_LIST 64

enum { O_HOST_ROOT = 1, O_PCI_IDS, O_CONFIG, O_VENDORS, O_ADDRESSES, O_CLIQUES, O_RC, O_TRAIT, O_MANAGED,
       O_PREFIX };

static const cli_opt nova_config_options[] = {
    { "host-root", 0, "DIR", O_HOST_ROOT, "read a host tree instead of /", "@dir", 0 },
    { "pci-ids", 0, "FILE", O_PCI_IDS, "names from FILE instead of the system pci.ids", "@file", 0 },
    { "config", 0, "FILE", O_CONFIG,
      "the daemon's gpuwarden.conf: [manage] vendors and\naddresses, [inventory] clique_override and\n"
      "extra_traits (the options below win)", "@file", 0 },
    { "manage-vendors", 0, "LIST", O_VENDORS, "hex vendor ids, as the daemon's option", NULL, 0 },
    { "manage-addresses", 0, "LIST", O_ADDRESSES, "PCI addresses, as the daemon's option", NULL, 0 },
    { "cliques", 0, "FILE", O_CLIQUES, "the NVLink clique override file (the daemon's\nclique_override)", "@file",
      0 },
    { "resource-class", 0, "RC", O_RC, "PGPU (default) or a CUSTOM_ resource class", "PGPU", 0 },
    { "trait", 0, "T", O_TRAIT, "an extra CUSTOM_ trait on every GPU (repeatable)", NULL, 0 },
    { "managed", 0, "yes|no", O_MANAGED,
      "libvirt's managed mode (device_spec tag `managed`);\ndefault no: gpuwarden keeps managed GPUs on\n"
      "vfio-pci, and a GPU libvirt hands back to a host\ndriver is no longer managed by the daemon's\n"
      "default rule", "yes no", 0 },
    { "alias-prefix", 0, "P", O_PREFIX, "alias names P-clique<n>, P-numa<n>, P-<vendor>-<id>\n(default gpu)", NULL,
      0 },
    { 0 },
};

const cli_spec cmd_nova_config_spec = {
    .name = "nova-config",
    .description =
        "Print the nova.conf entries that let Nova pass the GPUs gpuwarden manages\n"
        "through itself (no Cyborg): one [pci] device_spec per GPU, by address and\n"
        "ids, with resource_class, traits (product, CUSTOM_GPU_CLIQUE_<n> for its P2P\n"
        "clique, CUSTOM_NUMA_NODE_<n> for its NUMA node, the extra traits),\n"
        "one_time_use = true and managed; and [pci] alias examples (one per product,\n"
        "NUMA node and clique). Nova reserves a one-time-use GPU in Placement when it\n"
        "is allocated and never frees it; gpuwarden-nova-reconciler frees it once the\n"
        "GPU's clean-up passed (docs/nova.md). Reads DIR/sys (default /), never writes.\n"
        "\n"
        "GPUs are those the daemon manages: by default NVIDIA display functions bound\n"
        "to vfio-pci, else the [manage] lists (from --config, or the options). A GPU\n"
        "the daemon does not manage, an SR-IOV virtual function (Nova refuses\n"
        "one_time_use on VFs) and a GPU with VFs enabled get no entry; the output\n"
        "says why.",
    .globals = CLI_G_OUTPUT,
    .formats = "conf json value yaml",
    .format_help = "conf (default: nova.conf lines); json and yaml:\n{device_spec, alias, skipped}; "
                   "value: one line\nper device_spec",
    .options = nova_config_options,
    .exit_codes =
        "exit codes: 0 printed, 1 the host or a file could not be read, or no GPU\n"
        "            qualifies, 2 usage",
};

/* ---- the daemon's config file: the few keys that matter here ----------- */

typedef struct nova_settings {
    char *vendors, *addresses, *cliques, *extra_traits;
} nova_settings;

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int read_daemon_config(const char *path, nova_settings *out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "gpuwarden nova-config: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[4096], section[64] = "";
    while (fgets(line, sizeof line, f)) {
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (e) {
                *e = '\0';
                snprintf(section, sizeof section, "%s", trim(s + 1));
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        char **slot = NULL;
        if (!strcmp(section, "manage") && !strcmp(key, "vendors"))
            slot = &out->vendors;
        else if (!strcmp(section, "manage") && !strcmp(key, "addresses"))
            slot = &out->addresses;
        else if (!strcmp(section, "inventory") && !strcmp(key, "clique_override"))
            slot = &out->cliques;
        else if (!strcmp(section, "inventory") && !strcmp(key, "extra_traits"))
            slot = &out->extra_traits;
        if (slot && !*slot)   /* the command line, read first, wins */
            *slot = strdup(value);
    }
    fclose(f);
    return 0;
}

/* Split "a, b c" (commas and/or blanks, as the daemon's lists) into v; the
 * words point into `s`, which is modified. */
static int split_words(char *s, char **v, size_t max, size_t *n)
{
    char *save = NULL;
    for (char *tok = strtok_r(s, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        if (*n == max)
            return -1;
        v[(*n)++] = tok;
    }
    return 0;
}

/* ---- per GPU ------------------------------------------------------------- */

typedef struct nova_gpu {
    const gw_gpu *g;
    const gw_deployable *dep;   /* its per-GPU deployable: the traits */
    const char *skip;           /* why it gets no device_spec; NULL = it does */
    char *why;                  /* malloc'd text behind skip */
    const char *dev_type;       /* Nova's device type: type-PCI or type-PF */
} nova_gpu;

/* A link such as physfn or virtfn0 (dangling or not). */
static bool has_link(gw_hostops *ops, const char *addr, const char *leaf)
{
    char path[128], *target = NULL;
    snprintf(path, sizeof path, "sys/bus/pci/devices/%s/%s", addr, leaf);
    int r = gw_hostops_readlink(ops, path, &target);
    free(target);
    return r >= 0;
}

static long read_number(gw_hostops *ops, const char *addr, const char *leaf)
{
    char path[128], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "sys/bus/pci/devices/%s/%s", addr, leaf);
    if (gw_hostops_read(ops, path, 64, &text, &len) < 0)
        return -1;
    long v = strtol(text, NULL, 10);
    free(text);
    return v;
}

/* How Nova's libvirt driver types a PCI device: a VF (it has a physical
 * function), a PF (it can have VFs: libvirt's virt_functions capability, from
 * sriov_totalvfs), else type-PCI. Only type-PCI and type-PF providers may be
 * one-time-use (pci_placement_translator: PciResourceProvider.add_child). */
static void classify(gw_hostops *ops, nova_gpu *n)
{
    const char *a = n->g->address;
    n->dev_type = "type-PCI";
    if (has_link(ops, a, "physfn")) {
        n->skip = "vf";
        n->why = strdup("an SR-IOV virtual function: Nova refuses one_time_use on VFs "
                        "(only type-PCI and type-PF devices may set it)");
        return;
    }
    if (read_number(ops, a, "sriov_totalvfs") > 0) {
        n->dev_type = "type-PF";
        long vfs = read_number(ops, a, "sriov_numvfs");
        if (vfs > 0 || has_link(ops, a, "virtfn0")) {
            n->skip = "vfs_enabled";
            if (asprintf(&n->why, "%ld SR-IOV virtual functions are enabled: Nova's spec for the "
                                  "PF would match its VFs too (children under the PF's provider, "
                                  "which cannot be one-time-use); disable them to pass the whole GPU",
                         vfs > 0 ? vfs : 1) < 0)
                n->why = NULL;
        }
    }
}

/* ---- output ------------------------------------------------------------- */

static char *join_traits(const gw_deployable *d)
{
    size_t len = 1;
    for (size_t i = 0; i < d->n_traits; i++)
        len += strlen(d->traits[i]) + 1;
    char *s = calloc(1, len);
    if (!s)
        return NULL;
    for (size_t i = 0; i < d->n_traits; i++) {
        /* OWNER_CYBORG says who made a Cyborg provider; Nova marks its own
         * (OWNER_NOVA, COMPUTE_MANAGED_PCI_DEVICE) itself. */
        if (!strcmp(d->traits[i], "OWNER_CYBORG"))
            continue;
        if (*s)
            strcat(s, ",");
        strcat(s, d->traits[i]);
    }
    return s;
}

static json_t *device_spec(const nova_gpu *n, const char *rc, const char *managed)
{
    char vendor[8], product[8];
    snprintf(vendor, sizeof vendor, "%04x", n->g->vendor_id);
    snprintf(product, sizeof product, "%04x", n->g->device_id);
    char *traits = join_traits(n->dep);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s*, s:s, s:s}", "address", n->g->address, "vendor_id",
                          vendor, "product_id", product, "resource_class", rc, "traits",
                          traits && *traits ? traits : NULL, "one_time_use", "true", "managed", managed);
    free(traits);
    return o;
}

/* One alias per distinct trait set of the kind given, over the GPUs that
 * get a device_spec. */
typedef struct alias_acc {
    json_t *list;
    const char *prefix, *rc;
} alias_acc;

static const char *trait_with_prefix(const gw_deployable *d, const char *prefix)
{
    for (size_t i = 0; i < d->n_traits; i++)
        if (!strncmp(d->traits[i], prefix, strlen(prefix)))
            return d->traits[i];
    return NULL;
}

static bool has_alias(json_t *list, const char *name)
{
    size_t i;
    json_t *a;
    json_array_foreach(list, i, a)
        if (!strcmp(json_string_value(json_object_get(a, "name")), name))
            return true;
    return false;
}

/* The alias named `name` asking for `traits`; device_type only when every
 * GPU it can match has the same one; numa_policy when asked. */
static void add_alias(alias_acc *acc, const nova_gpu *gpus, size_t n, const char *name, const char *traits,
                      bool (*member)(const nova_gpu *, const char *key), const char *key, bool numa_required)
{
    if (has_alias(acc->list, name))
        return;
    const char *dev_type = NULL;
    bool mixed = false;
    for (size_t i = 0; i < n; i++) {
        if (gpus[i].skip || !member(&gpus[i], key))
            continue;
        if (!dev_type)
            dev_type = gpus[i].dev_type;
        else if (strcmp(dev_type, gpus[i].dev_type))
            mixed = true;
    }
    json_t *a = json_pack("{s:s, s:s*, s:s, s:s, s:s*}", "name", name, "device_type",
                          mixed ? NULL : dev_type, "resource_class", acc->rc, "traits", traits,
                          "numa_policy", numa_required ? "required" : NULL);
    json_array_append_new(acc->list, a);
}

static bool same_trait(const nova_gpu *n, const char *trait)
{
    for (size_t i = 0; i < n->dep->n_traits; i++)
        if (!strcmp(n->dep->traits[i], trait))
            return true;
    return false;
}

static json_t *aliases(const nova_gpu *gpus, size_t n, const char *prefix, const char *rc)
{
    alias_acc acc = { json_array(), prefix, rc };
    char name[300], traits[600];
    /* Per product: CUSTOM_NVIDIA_1EB0 -> gpu-nvidia-1eb0. */
    for (size_t i = 0; i < n; i++) {
        if (gpus[i].skip)
            continue;
        char product[40];
        gw_trait_product(gpus[i].g->vendor_id, gpus[i].g->device_id, product, sizeof product);
        snprintf(name, sizeof name, "%s-%s", prefix, product + strlen("CUSTOM_"));
        for (char *c = name; *c; c++)
            *c = *c == '_' ? '-' : (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
        add_alias(&acc, gpus, n, name, product, same_trait, product, false);
    }
    /* Per NUMA node. */
    for (size_t i = 0; i < n; i++) {
        const char *t = gpus[i].skip ? NULL : trait_with_prefix(gpus[i].dep, "CUSTOM_NUMA_NODE_");
        if (!t)
            continue;
        snprintf(name, sizeof name, "%s-numa%s", prefix, t + strlen("CUSTOM_NUMA_NODE_"));
        add_alias(&acc, gpus, n, name, t, same_trait, t, true);
    }
    /* Per clique: with the clique's NUMA node when all its GPUs share it, so
     * that "N P2P GPUs on node M" is one alias. */
    for (size_t i = 0; i < n; i++) {
        const char *t = gpus[i].skip ? NULL : trait_with_prefix(gpus[i].dep, "CUSTOM_GPU_CLIQUE_");
        if (!t)
            continue;
        const char *node = NULL;
        bool one_node = true;
        for (size_t k = 0; k < n; k++) {
            if (gpus[k].skip || !same_trait(&gpus[k], t))
                continue;
            const char *nk = trait_with_prefix(gpus[k].dep, "CUSTOM_NUMA_NODE_");
            if (!nk || (node && strcmp(node, nk)))
                one_node = false;
            node = nk;
        }
        snprintf(name, sizeof name, "%s-clique%s", prefix, t + strlen("CUSTOM_GPU_CLIQUE_"));
        if (one_node && node)
            snprintf(traits, sizeof traits, "%s,%s", t, node);
        else
            snprintf(traits, sizeof traits, "%s", t);
        add_alias(&acc, gpus, n, name, traits, same_trait, t, one_node && node);
    }
    return acc.list;
}

static void print_conf(const json_t *specs, const json_t *alias_list, const nova_gpu *gpus, size_t n)
{
    printf("# nova.conf of this compute host: gpuwarden-managed GPUs passed through by Nova\n"
           "# itself (gpuwarden nova-config; docs/nova.md). Each GPU is one Placement\n"
           "# provider <hypervisor hostname>_<ADDRESS> under the compute node; Nova sets\n"
           "# reserved = total when it allocates one (one_time_use), gpuwarden-nova-reconciler\n"
           "# lowers it once gpuwarden's clean-up passed.\n"
           "[pci]\n"
           "report_in_placement = True\n");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const gw_gpu *g = gpus[i].g;
        char clique[16] = "none", numa[16] = "unknown";
        const char *ct = trait_with_prefix(gpus[i].dep, "CUSTOM_GPU_CLIQUE_");
        if (ct)
            snprintf(clique, sizeof clique, "%s", ct + strlen("CUSTOM_GPU_CLIQUE_"));
        if (g->numa_node >= 0)
            snprintf(numa, sizeof numa, "%d", g->numa_node);
        if (gpus[i].skip) {
            printf("# %s: no entry: %s\n", g->address, gpus[i].why ? gpus[i].why : gpus[i].skip);
            continue;
        }
        char *line = json_dumps(json_array_get(specs, k++), JSON_PRESERVE_ORDER);
        printf("# %s %s%s%s, %s, P2P clique %s, NUMA node %s\n"
               "device_spec = %s\n", g->address, g->vendor_name ? g->vendor_name : "",
               g->vendor_name ? " " : "", g->device_name ? g->device_name : "device", gpus[i].dev_type,
               clique, numa, line ? line : "{}");
        free(line);
    }
    printf("# Aliases go into the nova.conf of nova-api (and of every nova-compute, for\n"
           "# move operations); a flavor asks for N GPUs with\n"
           "#   openstack flavor set --property \"pci_passthrough:alias\"=<name>:<N> FLAVOR\n"
           "# Clique and NUMA numbers are per host: <prefix>-clique0 is \"clique 0\" of\n"
           "# whichever host Placement picks. Needs [filter_scheduler] pci_in_placement.\n");
    size_t i;
    json_t *a;
    json_array_foreach(alias_list, i, a) {
        char *line = json_dumps(a, JSON_PRESERVE_ORDER);
        printf("alias = %s\n", line ? line : "{}");
        free(line);
    }
    printf("[filter_scheduler]\n"
           "pci_in_placement = True\n");
}

/* ---- the command ---------------------------------------------------------- */

static int state_allocatable(const char *address, gw_state *state, bool *attached, void *userdata)
{
    (void)address;
    (void)attached;
    (void)userdata;
    *state = GW_STATE_ALLOCATABLE;
    return 0;
}

static bool valid_rc(const char *rc)
{
    if (!strcmp(rc, "PGPU"))
        return true;
    if (strncmp(rc, "CUSTOM_", 7) || !rc[7] || strlen(rc) > 255)
        return false;
    for (const char *c = rc; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return false;
    return true;
}

static bool valid_prefix(const char *p)
{
    if (!*p || strlen(p) > 64)
        return false;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    return true;
}

typedef struct nova_args {
    gw_host_options hopts;
    nova_settings set;
    const char *config, *rc, *managed, *prefix;
    const char *cli_traits[MAX_LIST];
    size_t n_cli_traits;
} nova_args;

static int nova_config_option(void *ctx, int id, const char *arg)
{
    nova_args *a = ctx;
    switch (id) {
    case O_HOST_ROOT: a->hopts.root = arg; break;
    case O_PCI_IDS: a->hopts.pci_ids = arg; break;
    case O_CONFIG: a->config = arg; break;
    case O_VENDORS: free(a->set.vendors); a->set.vendors = strdup(arg); break;
    case O_ADDRESSES: free(a->set.addresses); a->set.addresses = strdup(arg); break;
    case O_CLIQUES: free(a->set.cliques); a->set.cliques = strdup(arg); break;
    case O_RC: a->rc = arg; break;
    case O_TRAIT:
        if (a->n_cli_traits == MAX_LIST) {
            fprintf(stderr, "gpuwarden nova-config: at most %d --trait\n", MAX_LIST);
            return GW_EXIT_USAGE;
        }
        a->cli_traits[a->n_cli_traits++] = arg;
        break;
    case O_MANAGED: a->managed = arg; break;
    case O_PREFIX: a->prefix = arg; break;
    default: return GW_EXIT_USAGE;
    }
    return GW_EXIT_OK;
}

int cmd_nova_config(int argc, char **argv)
{
    nova_args a = { .hopts = GW_HOST_OPTIONS_INIT, .rc = "PGPU", .managed = "no", .prefix = "gpu" };
    cli_remote r;
    int rcode = cli_parse(&cmd_nova_config_spec, argc, argv, &r, nova_config_option, &a);
    gw_host_options hopts = a.hopts;
    nova_settings set = a.set;
    const char *config = a.config, *rc = a.rc, *managed = a.managed, *prefix = a.prefix;
    const char *const *cli_traits = a.cli_traits;
    size_t n_cli_traits = a.n_cli_traits;
    if (rcode >= 0)
        goto out;
    rcode = GW_EXIT_USAGE;
    if (optind < argc) {
        fprintf(stderr, "gpuwarden nova-config: unexpected argument '%s'\n", argv[optind]);
        cli_usage(&cmd_nova_config_spec, stderr);
        goto out;
    }
    if (strcmp(managed, "yes") && strcmp(managed, "no")) {
        fprintf(stderr, "gpuwarden nova-config: --managed '%s': yes or no\n", managed);
        goto out;
    }
    if (!valid_rc(rc)) {
        fprintf(stderr, "gpuwarden nova-config: resource class '%s': PGPU or CUSTOM_ followed by "
                        "A-Z, 0-9, _ (Nova would rename anything else)\n", rc);
        goto out;
    }
    if (!valid_prefix(prefix)) {
        fprintf(stderr, "gpuwarden nova-config: alias prefix '%s': letters, digits, '-', '_'\n", prefix);
        goto out;
    }
    rcode = GW_EXIT_FAILURE;
    if (config && read_daemon_config(config, &set) < 0)
        goto out;

    /* The management rule, exactly as the daemon builds it. */
    char *words[MAX_LIST];
    size_t n_words = 0;
    uint16_t vendors[MAX_LIST];
    size_t n_vendors = 0;
    if (set.vendors && split_words(set.vendors, words, MAX_LIST, &n_words) < 0) {
        fprintf(stderr, "gpuwarden nova-config: too many manage vendors\n");
        goto out;
    }
    for (size_t i = 0; i < n_words; i++) {
        char *end;
        unsigned long id = strtoul(words[i], &end, 16);
        if (*end || id > 0xffff) {
            fprintf(stderr, "gpuwarden nova-config: manage vendor '%s' is not a hex vendor id\n", words[i]);
            rcode = GW_EXIT_USAGE;
            goto out;
        }
        vendors[n_vendors++] = (uint16_t)id;
    }
    char *addr_words[MAX_LIST];
    size_t n_addrs = 0;
    if (set.addresses && split_words(set.addresses, addr_words, MAX_LIST, &n_addrs) < 0) {
        fprintf(stderr, "gpuwarden nova-config: too many manage addresses\n");
        goto out;
    }
    char addrs[MAX_LIST][GW_ADDR_LEN];
    const char *addr_ptrs[MAX_LIST];
    for (size_t i = 0; i < n_addrs; i++) {
        if (!cli_canonical_address(addr_words[i], addrs[i])) {
            fprintf(stderr, "gpuwarden nova-config: manage address '%s' is not a PCI address\n",
                    addr_words[i]);
            rcode = GW_EXIT_USAGE;
            goto out;
        }
        addr_ptrs[i] = addrs[i];
    }
    gw_sanitize_policy policy = GW_SANITIZE_POLICY_INIT;
    policy.manage_vendors = vendors;
    policy.n_manage_vendors = n_vendors;
    policy.manage_addresses = addr_ptrs;
    policy.n_manage_addresses = n_addrs;

    /* Extra traits: the daemon's, then the command line's. */
    const char *extra[2 * MAX_LIST];
    size_t n_extra = 0;
    char *trait_words[MAX_LIST];
    size_t n_trait_words = 0;
    if (set.extra_traits && split_words(set.extra_traits, trait_words, MAX_LIST, &n_trait_words) < 0) {
        fprintf(stderr, "gpuwarden nova-config: too many extra traits\n");
        goto out;
    }
    for (size_t i = 0; i < n_trait_words; i++)
        extra[n_extra++] = trait_words[i];
    for (size_t i = 0; i < n_cli_traits; i++)
        extra[n_extra++] = cli_traits[i];

    gw_clique_override *ov = NULL;
    if (set.cliques && *set.cliques && gw_clique_override_load(&ov, set.cliques) < 0) {
        fprintf(stderr, "gpuwarden nova-config: %s\n", gw_error_message());
        goto out;
    }
    gw_host *h = NULL;
    gw_hostops *ops = NULL;
    gw_inventory *inv = NULL;
    nova_gpu *gpus = NULL;
    json_t *specs = NULL, *alias_list = NULL, *skipped = NULL;
    if (gw_host_scan(&h, &hopts) < 0 || gw_hostops_sysfs_new(&ops, hopts.root) < 0) {
        fprintf(stderr, "gpuwarden nova-config: %s\n", gw_error_message());
        goto done;
    }
    gw_inventory_options iopts = GW_INVENTORY_OPTIONS_INIT;
    iopts.host = "nova";
    iopts.extra_traits = extra;
    iopts.n_extra_traits = n_extra;
    iopts.clique_override = ov;
    if (gw_inventory_new_from_host(&inv, h, state_allocatable, NULL, &iopts) < 0) {
        fprintf(stderr, "gpuwarden nova-config: %s\n", gw_error_message());
        rcode = GW_EXIT_USAGE;   /* a bad extra trait */
        goto done;
    }
    if (gw_inventory_clique_error(inv))
        fprintf(stderr, "gpuwarden nova-config: warning: clique override not used, the topology's "
                        "cliques are: %s\n", gw_inventory_clique_error(inv));

    size_t n = gw_host_gpu_count(h), n_specs = 0;
    gpus = calloc(n ? n : 1, sizeof *gpus);
    specs = json_array();
    skipped = json_array();
    for (size_t i = 0; i < n; i++) {
        nova_gpu *ng = &gpus[i];
        ng->g = gw_host_gpu(h, i);
        ng->dep = gw_inventory_find_gpu(inv, ng->g->address);
        char *why = NULL;
        int m = gw_sanitize_is_managed(ops, &policy, ng->g->address, &why);
        if (m <= 0) {
            ng->skip = "not_managed";
            ng->why = why ? why : strdup(gw_error_message());
            why = NULL;
        } else {
            classify(ops, ng);
        }
        free(why);
        if (ng->skip) {
            json_array_append_new(skipped, json_pack("{s:s, s:s, s:s}", "address", ng->g->address, "why",
                                                     ng->skip, "reason", ng->why ? ng->why : ""));
            continue;
        }
        json_array_append_new(specs, device_spec(ng, rc, managed));
        n_specs++;
    }
    alias_list = aliases(gpus, n, prefix, rc);
    if (cli_own_table(&r)) {
        print_conf(specs, alias_list, gpus, n);
    } else {
        json_t *all = json_pack("{s:O, s:O, s:O}", "device_spec", specs, "alias", alias_list, "skipped", skipped);
        int code = all ? cli_emit(&r, all, specs) : GW_EXIT_FAILURE;
        json_decref(all);
        if (code != GW_EXIT_OK) {
            rcode = code;
            goto done;
        }
    }
    if (!n_specs) {
        fprintf(stderr, "gpuwarden nova-config: no GPU of %s qualifies (%zu GPUs found)\n", gw_host_root(h), n);
        goto done;
    }
    rcode = GW_EXIT_OK;
done:
    for (size_t i = 0; gpus && i < gw_host_gpu_count(h); i++)
        free(gpus[i].why);
    free(gpus);
    json_decref(specs);
    json_decref(alias_list);
    json_decref(skipped);
    gw_inventory_free(inv);
    gw_hostops_unref(ops);
    gw_host_free(h);
    gw_clique_override_free(ov);
out:
    free(set.vendors);
    free(set.addresses);
    free(set.cliques);
    free(set.extra_traits);
    return rcode;
}
