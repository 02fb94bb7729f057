/* gpuwarden discover: every GPU of a host with topology, NUMA node,
 * isolation verdicts and P2P clique, as a table or as JSON. */
#include <getopt.h>
#include <gpuwarden/host.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static void discover_usage(FILE *f)
{
    fprintf(f, "usage: gpuwarden discover [--host-root DIR] [--json] [--pci-ids FILE]\n"
               "\n"
               "List every GPU (PCI class 03xx) of the host with its NUMA node, IOMMU group,\n"
               "driver, reset methods, link, ATS, upstream ACS path, group viability and P2P\n"
               "clique. Reads DIR/sys (default /) and never writes.\n"
               "\n"
               "  --host-root DIR  read a host tree (e.g. from `gpuwarden snapshot`) instead of /\n"
               "  --json           print JSON (schema: docs/discover-json.md)\n"
               "  --pci-ids FILE   names from FILE instead of the system pci.ids\n"
               "\n"
               "exit codes: 0 fine, 3 finished but some devices (or the host) had errors,\n"
               "            1 the scan failed, 2 usage\n");
}

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

int cmd_discover(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "host-root", required_argument, NULL, 'r' },
        { "json", no_argument, NULL, 'j' },
        { "pci-ids", required_argument, NULL, 'i' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    gw_host_options opts = GW_HOST_OPTIONS_INIT;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hr:ji:", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': opts.root = optarg; break;
        case 'j': json = true; break;
        case 'i': opts.pci_ids = optarg; break;
        case 'h': discover_usage(stdout); return GW_EXIT_OK;
        default: discover_usage(stderr); return GW_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gpuwarden discover: unexpected argument '%s'\n", argv[optind]);
        discover_usage(stderr);
        return GW_EXIT_USAGE;
    }
    gw_host *h;
    if (gw_host_scan(&h, &opts) < 0) {
        fprintf(stderr, "gpuwarden discover: %s\n", gw_error_message());
        return GW_EXIT_FAILURE;
    }
    int rc = GW_EXIT_OK;
    if (json) {
        char *s;
        if (gw_host_to_json(h, &s) < 0) {
            fprintf(stderr, "gpuwarden discover: %s\n", gw_error_message());
            rc = GW_EXIT_FAILURE;
        } else {
            puts(s);
            free(s);
        }
    } else {
        print_table(h);
    }
    if (rc == GW_EXIT_OK && has_errors(h))
        rc = GW_EXIT_DEVICE_ERRORS;
    gw_host_free(h);
    return rc;
}
