/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden xml: libvirt <hostdev> elements for GPUs, with user aliases, and
 * the <qemu:override> block that gives QEMU each GPU's P2P clique. */
#include <ctype.h>
#include <gpuwarden/host.h>
#include <gpuwarden/inventory.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "options.h"
#include "remote.h"

#define QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"
#define MAX_ADDRS 64

enum { OPT_HOST_ROOT = 1, OPT_CLIQUES, OPT_ALIAS_PREFIX, OPT_ALL_FUNCTIONS, OPT_HOSTDEVS_ONLY, OPT_OVERRIDE_ONLY };

static const cli_opt xml_options[] = {
    { "host-root", 0, "DIR", OPT_HOST_ROOT, "read the host from DIR (a sysfs-shaped tree) instead of /", "@dir", 0 },
    { "cliques", 0, "FILE", OPT_CLIQUES,
      "clique ids from the operator's override file (NVLink\npartitions; the daemon's `cliques` option, format in\n"
      "gpuwarden/inventory.h) instead of the PCIe topology", "@file", 0 },
    { "alias-prefix", 0, "P", OPT_ALIAS_PREFIX, "alias prefix (default ua-gpu; libvirt wants 'ua-' first)", NULL, 0 },
    { "all-functions", 0, NULL, OPT_ALL_FUNCTIONS,
      "also pass the other functions of each GPU's slot (HDA, USB),\naliased PREFIXn-fnF", NULL, 0 },
    { "hostdevs-only", 0, NULL, OPT_HOSTDEVS_ONLY, "print only the <hostdev> elements", NULL, 0 },
    { "override-only", 0, NULL, OPT_OVERRIDE_ONLY, "print only the <qemu:override> block", NULL, 0 },
    { 0 },
};

const cli_spec cmd_xml_spec = {
    .name = "xml",
    .synopsis = "[OPTIONS] ADDR...",
    .description =
        "Print libvirt domain XML for passing the GPUs ADDR... (dddd:bb:dd.f or bb:dd.f)\n"
        "through to a guest:\n"
        "  - one <hostdev mode='subsystem' type='pci' managed='yes'> per GPU, for <devices>,\n"
        "    with a user alias PREFIX0, PREFIX1, ... in argument order;\n"
        "  - a <qemu:override> block, for <domain>, setting QEMU's x-nv-gpudirect-clique\n"
        "    property on every GPU that sits in a P2P clique (GPUs under one PCIe switch),\n"
        "    so the guest's NVIDIA driver enables P2P between them. QEMU accepts the\n"
        "    property only on NVIDIA (10de) display/3D controllers (class 03xx) and clique\n"
        "    ids 0-15; other GPUs get none. <qemu:override> needs libvirt >= 8.2 and\n"
        "    taints the domain; it applies at start, not to hotplug.\n"
        "The block declares xmlns:qemu itself, so it can be pasted as is.",
    .options = xml_options,
    .operands = "@addr",
    .exit_codes =
        "exit codes: 0 printed, 1 the host could not be read or ADDR is not a GPU on it,\n"
        "            2 usage",
};

typedef struct xml_args {
    gw_host_options opts;
    const char *prefix, *cliques_file;
    bool all_functions, hostdevs, override;
} xml_args;

static int xml_option(void *ctx, int id, const char *arg)
{
    xml_args *a = ctx;
    switch (id) {
    case OPT_HOST_ROOT: a->opts.root = arg; break;
    case OPT_CLIQUES: a->cliques_file = arg; break;
    case OPT_ALIAS_PREFIX: a->prefix = arg; break;
    case OPT_ALL_FUNCTIONS: a->all_functions = true; break;
    case OPT_HOSTDEVS_ONLY: a->override = false; break;
    case OPT_OVERRIDE_ONLY: a->hostdevs = false; break;
    default: return GW_EXIT_USAGE;
    }
    return GW_EXIT_OK;
}

static bool valid_alias_prefix(const char *p)
{
    if (strncmp(p, "ua-", 3) || strlen(p) > 64)
        return false;
    for (; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false;
    return true;
}

/* Each GPU's clique id: the topology's, or the operator override's. */
static int cliques[MAX_ADDRS];

static bool clique_applies(const gw_gpu *g, int clique)
{
    return g->vendor_id == 0x10de && (g->class_code >> 8) == 0x03 && clique >= 0 && clique <= 15;
}

static void print_hostdev(const char *address, const char *alias)
{
    unsigned dom, bus, dev, fn;
    sscanf(address, "%x:%x:%x.%x", &dom, &bus, &dev, &fn);
    printf("<hostdev mode='subsystem' type='pci' managed='yes'>\n"
           "  <source>\n"
           "    <address domain='0x%04x' bus='0x%02x' slot='0x%02x' function='0x%x'/>\n"
           "  </source>\n"
           "  <alias name='%s'/>\n"
           "</hostdev>\n",
           dom, bus, dev, fn, alias);
}

static void print_hostdevs(const gw_gpu *const *gpus, size_t n, const char *prefix, bool all_functions)
{
    for (size_t i = 0; i < n; i++) {
        char alias[96];
        snprintf(alias, sizeof alias, "%s%zu", prefix, i);
        print_hostdev(gpus[i]->address, alias);
        for (size_t f = 0; all_functions && f < gpus[i]->n_functions; f++) {
            const char *fa = gpus[i]->functions[f];
            snprintf(alias, sizeof alias, "%s%zu-fn%c", prefix, i, fa[11]);
            print_hostdev(fa, alias);
        }
    }
}

static void print_override(const gw_gpu *const *gpus, size_t n, const char *prefix)
{
    size_t tagged = 0;
    for (size_t i = 0; i < n; i++)
        tagged += clique_applies(gpus[i], cliques[i]);
    for (size_t i = 0; i < n; i++) {
        const gw_gpu *g = gpus[i];
        if (cliques[i] < 0 || clique_applies(g, cliques[i]))
            continue;
        printf("<!-- %s: in P2P clique %d, but QEMU takes the hint only for NVIDIA (10de) class 03xx "
               "and clique ids 0-15 (this is %04x, class %04x) -->\n",
               g->address, cliques[i], g->vendor_id, g->class_code);
    }
    if (!tagged) {
        printf("<!-- no <qemu:override>: none of these GPUs is in a P2P clique QEMU can express -->\n");
        return;
    }
    printf("<qemu:override xmlns:qemu='%s'>\n", QEMU_NS);
    for (size_t i = 0; i < n; i++) {
        if (!clique_applies(gpus[i], cliques[i]))
            continue;
        printf("  <qemu:device alias='%s%zu'>\n"
               "    <qemu:frontend>\n"
               "      <qemu:property name='x-nv-gpudirect-clique' type='unsigned' value='%d'/>\n"
               "    </qemu:frontend>\n"
               "  </qemu:device>\n",
               prefix, i, cliques[i]);
    }
    printf("</qemu:override>\n");
}

int cmd_xml(int argc, char **argv)
{
    xml_args xa = { .opts = GW_HOST_OPTIONS_INIT, .prefix = "ua-gpu", .hostdevs = true, .override = true };
    cli_remote r;
    int code = cli_parse(&cmd_xml_spec, argc, argv, &r, xml_option, &xa);
    if (code >= 0)
        return code;
    gw_host_options opts = xa.opts;
    const char *prefix = xa.prefix, *cliques_file = xa.cliques_file;
    bool all_functions = xa.all_functions, hostdevs = xa.hostdevs, override = xa.override;
    if (!hostdevs && !override) {
        fprintf(stderr, "gpuwarden xml: --hostdevs-only and --override-only exclude each other\n");
        return GW_EXIT_USAGE;
    }
    if (!valid_alias_prefix(prefix)) {
        fprintf(stderr, "gpuwarden xml: alias prefix '%s' must start with 'ua-' and hold only "
                        "letters, digits, '-' and '_' (64 at most)\n", prefix);
        return GW_EXIT_USAGE;
    }
    size_t n = (size_t)(argc - optind);
    if (n == 0 || n > MAX_ADDRS) {
        fprintf(stderr, "gpuwarden xml: give 1 to %d GPU addresses\n", MAX_ADDRS);
        cli_usage(&cmd_xml_spec, stderr);
        return GW_EXIT_USAGE;
    }
    char addrs[MAX_ADDRS][GW_ADDR_LEN];
    for (size_t i = 0; i < n; i++) {
        const char *a = argv[optind + (int)i];
        if (!cli_canonical_address(a, addrs[i])) {
            fprintf(stderr, "gpuwarden xml: '%s' is not a PCI address (dddd:bb:dd.f)\n", a);
            return GW_EXIT_USAGE;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(addrs[k], addrs[i])) {
                fprintf(stderr, "gpuwarden xml: %s given twice\n", addrs[i]);
                return GW_EXIT_USAGE;
            }
    }

    gw_clique_override *ov = NULL;
    if (cliques_file && gw_clique_override_load(&ov, cliques_file) < 0) {
        fprintf(stderr, "gpuwarden xml: %s\n", gw_error_message());
        return GW_EXIT_FAILURE;
    }
    gw_host *h;
    if (gw_host_scan(&h, &opts) < 0) {
        gw_clique_override_free(ov);
        fprintf(stderr, "gpuwarden xml: %s\n", gw_error_message());
        return GW_EXIT_FAILURE;
    }
    const gw_gpu *gpus[MAX_ADDRS];
    for (size_t i = 0; i < n; i++) {
        gpus[i] = gw_host_find_gpu(h, addrs[i]);
        if (!gpus[i]) {
            fprintf(stderr, "gpuwarden xml: %s is not a GPU on host %s\n", addrs[i],
                    gw_host_root(h));
            gw_host_free(h);
            gw_clique_override_free(ov);
            return GW_EXIT_FAILURE;
        }
        cliques[i] = ov ? gw_clique_override_lookup(ov, addrs[i]) : gpus[i]->clique;
    }
    if (hostdevs)
        print_hostdevs(gpus, n, prefix, all_functions);
    if (override)
        print_override(gpus, n, prefix);
    gw_host_free(h);
    gw_clique_override_free(ov);
    return GW_EXIT_OK;
}
