/* gpuwarden: the operator CLI. Dispatches to one command module per verb. */
#include <gpuwarden/common.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const gw_cli_command commands[] = {
    { "discover", "list GPUs with topology, NUMA, isolation and P2P cliques", cmd_discover },
    { "snapshot", "copy a host's PCI sysfs into a host tree for replay", cmd_snapshot },
    { "xml", "libvirt <hostdev> and <qemu:override> (P2P clique) XML for GPUs", cmd_xml },
    { "nova-config", "nova.conf [pci] device_spec and alias for Nova's own passthrough", cmd_nova_config },
    { "hook", "the libvirt qemu hook (gate on prepare, hints on started/release)", cmd_hook },
    { "audit", "the lifecycle audit log (from the state directory, or the daemon)", cmd_audit },
    { "list", "every managed GPU with its lifecycle state (daemon)", cmd_list },
    { "show", "one GPU in full, with its last clean-up's steps (daemon)", cmd_show },
    { "inventory", "the Placement inventory reported to Cyborg (daemon)", cmd_inventory },
    { "quarantine", "take a GPU out of service, with a reason (daemon, admin)", cmd_quarantine },
    { "release", "return a quarantined GPU to service after a clean-up (daemon, admin)", cmd_release },
    { "sanitize", "start a clean-up of a GPU now (daemon, admin)", cmd_sanitize },
    { "events", "the daemon's transitions and clean-ups as they happen", cmd_events },
    { "doctor", "is this host ready: IOMMU, vfio-pci, drivers, hook, AppArmor, daemon", cmd_doctor },
    { NULL, NULL, NULL },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: gpuwarden COMMAND [ARGS...]\n"
               "       gpuwarden COMMAND --help\n\ncommands:\n");
    for (size_t i = 0; commands[i].name; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit codes: 0 ok, 1 failure, 2 usage, 3 device errors (discover),\n"
               "            4 daemon unreachable, 5 refused by the daemon\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return GW_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return GW_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("gpuwarden %s\n", gw_version());
        return GW_EXIT_OK;
    }
    for (size_t i = 0; commands[i].name; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "gpuwarden: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return GW_EXIT_USAGE;
}
