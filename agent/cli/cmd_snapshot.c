/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden snapshot: copy a host's PCI-relevant sysfs into a host tree, for
 * bug reports and for replaying with `gpuwarden discover --host-root`. */
#include <gpuwarden/host.h>
#include <stdio.h>
#include <unistd.h>

#include "commands.h"
#include "options.h"

enum { OPT_OUT = 1, OPT_HOST_ROOT };

static const cli_opt snapshot_options[] = {
    { "out", 0, "DIR", OPT_OUT, "the host tree to write (new or empty; required)", "@dir", 0 },
    { "host-root", 0, "ROOT", OPT_HOST_ROOT, "the root to copy from (default /)", "@dir", 0 },
    { 0 },
};

const cli_spec cmd_snapshot_spec = {
    .name = "snapshot",
    .synopsis = "--out DIR [--host-root ROOT]",
    .description =
        "Copy the PCI-relevant sysfs of ROOT (default /) into a host tree at DIR (new or\n"
        "empty): every PCI function's attributes and links, drivers, IOMMU groups, slots\n"
        "and NUMA node CPU lists. Only reads ROOT. `gpuwarden discover --host-root DIR`\n"
        "then shows what it shows on the host. Run as root: without it the kernel shows\n"
        "only 64 bytes of each config space.",
    .options = snapshot_options,
    .exit_codes = "exit codes: 0 copied, 1 failed, 2 usage",
};

typedef struct snapshot_args {
    const char *out, *root;
} snapshot_args;

static int snapshot_option(void *ctx, int id, const char *arg)
{
    snapshot_args *a = ctx;
    if (id == OPT_OUT)
        a->out = arg;
    else
        a->root = arg;
    return GW_EXIT_OK;
}

int cmd_snapshot(int argc, char **argv)
{
    snapshot_args a = { .root = "/" };
    cli_remote r;
    int code = cli_parse(&cmd_snapshot_spec, argc, argv, &r, snapshot_option, &a);
    if (code >= 0)
        return code;
    const char *out = a.out, *root = a.root;
    if (!out || optind < argc) {
        cli_usage(&cmd_snapshot_spec, stderr);
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
