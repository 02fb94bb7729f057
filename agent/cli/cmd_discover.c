/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden discover: every GPU of a host with topology, NUMA node,
 * isolation verdicts and P2P clique, as a table or as JSON. */
#include <gpuwarden/host.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "format.h"
#include "options.h"

enum { OPT_HOST_ROOT = 1, OPT_PCI_IDS };

static const cli_opt discover_options[] = {
    { "host-root", 0, "DIR", OPT_HOST_ROOT, "read a host tree (e.g. from `gpuwarden snapshot`) instead of /", "@dir",
      0 },
    { "pci-ids", 0, "FILE", OPT_PCI_IDS, "names from FILE instead of the system pci.ids", "@file", 0 },
    { 0 },
};

const cli_spec cmd_discover_spec = {
    .name = "discover",
    .description =
        "List every GPU (PCI class 03xx) of the host with its NUMA node, IOMMU group,\n"
        "driver, reset methods, link, ATS, upstream ACS path, group viability and P2P\n"
        "clique. Reads DIR/sys (default /) and never writes. -f json and yaml print one\n"
        "object {host_root, gpus, cliques, errors} (schema: docs/discover-json.md);\n"
        "-f value and -c act on its gpus.",
    .globals = CLI_G_OUTPUT,
    .formats = "table json value yaml",
    .options = discover_options,
    .exit_codes =
        "exit codes: 0 fine, 3 finished but some devices (or the host) had errors,\n"
        "            1 the scan failed, 2 usage",
};

static void link_text(char *buf, size_t n, const gw_link *l)
{
    if (!l->present)
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%gx%d/%gx%d", l->speed_gts, l->width, l->max_speed_gts, l->max_width);
}

static void methods_text(char *buf, size_t n, const gw_gpu *g)
{
    buf[0] = '\0';
    if (!g->n_reset_methods)
        snprintf(buf, n, "-");
    for (size_t i = 0; i < g->n_reset_methods; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s%s", i ? "," : "", g->reset_methods[i]);
    }
}

static void print_table(const gw_host *h)
{
    printf("%-12s  %-9s  %-4s  %4s  %-5s  %-13s  %-3s  %-14s  %-19s  %-3s  %-3s  %-5s  %s\n",
           "ADDRESS", "ID", "CLS", "NUMA", "GROUP", "DRIVER", "FLR", "RESET", "LINK(NOW/MAX)",
           "ATS", "ACS", "GROUP", "CLIQUE");
    for (size_t i = 0; i < gw_host_gpu_count(h); i++) {
        const gw_gpu *g = gw_host_gpu(h, i);
        char id[16], link[48], methods[64], clique[8];
        snprintf(id, sizeof id, "%04x:%04x", g->vendor_id, g->device_id);
        link_text(link, sizeof link, &g->link);
        methods_text(methods, sizeof methods, g);
        snprintf(clique, sizeof clique, "%d", g->clique);
        printf("%-12s  %-9s  %04x  %4d  %-5s  %-13s  %-3s  %-14s  %-19s  %-3s  %-3s  %-5s  %s\n",
               g->address, id, g->class_code, g->numa_node, g->iommu_group ? g->iommu_group : "-",
               g->driver ? g->driver : "-", g->flr ? "yes" : "no", methods, link,
               !g->ats_present ? "-" : g->ats_enabled ? "ON" : "off", g->acs_path_ok ? "ok" : "NO",
               g->group_viable ? "ok" : "NO", g->clique < 0 ? "-" : clique);
        if (g->vendor_name || g->device_name)
            printf("    %s%s%s\n", g->vendor_name ? g->vendor_name : "",
                   g->vendor_name && g->device_name ? " " : "",
                   g->device_name ? g->device_name : "");
        printf("    acs: %s\n    group: %s\n", g->acs_evidence, g->group_evidence);
        for (size_t e = 0; e < g->n_errors; e++)
            printf("    error: %s\n", g->errors[e]);
    }
    if (gw_host_gpu_count(h) == 0)
        printf("(no GPU found under %s)\n", gw_host_root(h));
    for (size_t c = 0; c < gw_host_clique_count(h); c++) {
        printf("clique %zu:", c);
        for (size_t m = 0; m < gw_host_clique_size(h, c); m++)
            printf(" %s", gw_host_clique_member(h, c, m));
        printf("\n");
    }
    for (size_t e = 0; e < gw_host_error_count(h); e++)
        printf("host error: %s\n", gw_host_error(h, e));
}

static bool has_errors(const gw_host *h)
{
    if (gw_host_error_count(h))
        return true;
    for (size_t i = 0; i < gw_host_gpu_count(h); i++)
        if (gw_host_gpu(h, i)->n_errors)
            return true;
    return false;
}

static int discover_option(void *ctx, int id, const char *arg)
{
    gw_host_options *opts = ctx;
    if (id == OPT_HOST_ROOT)
        opts->root = arg;
    else
        opts->pci_ids = arg;
    return GW_EXIT_OK;
}

/* The library's JSON: printed as it is for -f json, else the data of the
 * other formats (rows: its gpus). */
static int print_data(const cli_remote *r, const gw_host *h)
{
    char *s;
    if (gw_host_to_json(h, &s) < 0) {
        fprintf(stderr, "gpuwarden discover: %s\n", gw_error_message());
        return GW_EXIT_FAILURE;
    }
    int code;
    if (r->format == CLI_FORMAT_JSON && !r->n_columns) {
        code = puts(s) >= 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
    } else {
        json_error_t err;
        json_t *v = json_loads(s, 0, &err);
        code = v ? cli_emit(r, v, json_object_get(v, "gpus")) : GW_EXIT_FAILURE;
        json_decref(v);
    }
    free(s);
    return code;
}

int cmd_discover(int argc, char **argv)
{
    gw_host_options opts = GW_HOST_OPTIONS_INIT;
    cli_remote r;
    int code = cli_parse(&cmd_discover_spec, argc, argv, &r, discover_option, &opts);
    if (code >= 0)
        return code;
    if (optind < argc) {
        fprintf(stderr, "gpuwarden discover: unexpected argument '%s'\n", argv[optind]);
        cli_usage(&cmd_discover_spec, stderr);
        return GW_EXIT_USAGE;
    }
    gw_host *h;
    if (gw_host_scan(&h, &opts) < 0) {
        fprintf(stderr, "gpuwarden discover: %s\n", gw_error_message());
        return GW_EXIT_FAILURE;
    }
    int rc = GW_EXIT_OK;
    if (cli_own_table(&r))
        print_table(h);
    else
        rc = print_data(&r, h);
    if (rc == GW_EXIT_OK && has_errors(h))
        rc = GW_EXIT_DEVICE_ERRORS;
    gw_host_free(h);
    return rc;
}
