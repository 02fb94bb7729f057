/* gpuwarden snapshot: copy a host's PCI-relevant sysfs into a host tree, for
 * bug reports and for replaying with `gpuwarden discover --host-root`. */
#include <getopt.h>
#include <gpuwarden/host.h>
#include <stdio.h>
#include <unistd.h>

#include "commands.h"

static void snapshot_usage(FILE *f)
{
    fprintf(f, "usage: gpuwarden snapshot --out DIR [--host-root ROOT]\n"
               "\n"
               "Copy the PCI-relevant sysfs of ROOT (default /) into a host tree at DIR (new or\n"
               "empty): every PCI function's attributes and links, drivers, IOMMU groups, slots\n"
               "and NUMA node CPU lists. Only reads ROOT. `gpuwarden discover --host-root DIR`\n"
               "then shows what it shows on the host. Run as root: without it the kernel shows\n"
               "only 64 bytes of each config space.\n"
               "\n"
               "exit codes: 0 copied, 1 failed, 2 usage\n");
}

int cmd_snapshot(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "out", required_argument, NULL, 'o' },
        { "host-root", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *out = NULL, *root = "/";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:r:", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'r': root = optarg; break;
        case 'h': snapshot_usage(stdout); return GW_EXIT_OK;
        default: snapshot_usage(stderr); return GW_EXIT_USAGE;
        }
    }
    if (!out || optind < argc) {
        snapshot_usage(stderr);
        return GW_EXIT_USAGE;
    }
    if (geteuid() != 0)
        fprintf(stderr, "gpuwarden snapshot: warning: not root: config spaces will be cut to "
                        "64 bytes\n");
    size_t functions = 0, skipped = 0;
    if (gw_host_snapshot(root, out, &functions, &skipped) < 0) {
        fprintf(stderr, "gpuwarden snapshot: %s\n", gw_error_message());
        return GW_EXIT_FAILURE;
    }
    printf("copied %zu PCI functions from %s to %s", functions, root, out);
    if (skipped)
        printf(" (%zu unreadable attributes created empty)", skipped);
    printf("\n");
    return GW_EXIT_OK;
}
