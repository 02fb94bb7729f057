/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden: the operator CLI. Dispatches to one command module per verb. */
#include <gpuwarden/common.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "options.h"

/* A new command: its cmd_<name>.c with a cli_spec (options.h), declared in
 * commands.h, and one line here. */
const gw_cli_command gw_cli_commands[] = {
    { "discover", "list GPUs with topology, NUMA, isolation and P2P cliques", cmd_discover, &cmd_discover_spec },
    { "snapshot", "copy a host's PCI sysfs into a host tree for replay", cmd_snapshot, &cmd_snapshot_spec },
    { "xml", "libvirt <hostdev> and <qemu:override> (P2P clique) XML for GPUs", cmd_xml, &cmd_xml_spec },
    { "nova-config", "nova.conf [pci] device_spec and alias for Nova's own passthrough", cmd_nova_config,
      &cmd_nova_config_spec },
    { "hook", "the libvirt qemu hook (gate on prepare, hints on started/release)", cmd_hook, &cmd_hook_spec },
    { "audit", "the lifecycle audit log (from the state directory, or the daemon)", cmd_audit, &cmd_audit_spec },
    { "list", "every managed GPU with its lifecycle state (daemon)", cmd_list, &cmd_list_spec },
    { "show", "one GPU in full, with its last clean-up's steps (daemon)", cmd_show, &cmd_show_spec },
    { "inventory", "the Placement inventory reported to Cyborg (daemon)", cmd_inventory, &cmd_inventory_spec },
    { "quarantine", "take a GPU out of service, with a reason (daemon, admin)", cmd_quarantine,
      &cmd_quarantine_spec },
    { "release", "return a quarantined GPU to service after a clean-up (daemon, admin)", cmd_release,
      &cmd_release_spec },
    { "sanitize", "start a clean-up of a GPU now (daemon, admin)", cmd_sanitize, &cmd_sanitize_spec },
    { "events", "the daemon's transitions and clean-ups as they happen", cmd_events, &cmd_events_spec },
    { "doctor", "is this host ready: IOMMU, vfio-pci, drivers, hook, AppArmor, daemon", cmd_doctor,
      &cmd_doctor_spec },
    { "metrics", "the daemon's metrics in Prometheus' text format, or for node_exporter (daemon)", cmd_metrics,
      &cmd_metrics_spec },
    { "help", "this text, a command's (help COMMAND), or the gpuwarden(1) page (help --man)", cmd_help,
      &cmd_help_spec },
    { "complete", "print the bash completion script (as `openstack complete`)", cmd_complete, &cmd_complete_spec },
    { NULL, NULL, NULL, NULL },
};

const gw_cli_command *gw_cli_command_find(const char *name)
{
    for (const gw_cli_command *c = gw_cli_commands; c->name; c++)
        if (!strcmp(name, c->name))
            return c;
    return NULL;
}

/* Run `cmd` with the global options found before its name moved after it:
 * `gpuwarden -f json list --state x` runs as `list -f json --state x`, so
 * a command's own parser sees both orders alike (and the later one wins). */
static int run(const gw_cli_command *cmd, char **before, int n_before, int argc, char **argv)
{
    char **args = calloc((size_t)(n_before + argc + 1), sizeof *args);
    if (!args) {
        fprintf(stderr, "gpuwarden: out of memory\n");
        return GW_EXIT_FAILURE;
    }
    int n = 0;
    args[n++] = argv[0];
    for (int i = 0; i < n_before; i++)
        args[n++] = before[i];
    for (int i = 1; i < argc; i++)
        args[n++] = argv[i];
    int rc = cmd->run(n, args);
    free(args);
    return rc;
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *arg;
        const cli_opt *o = cli_global_lookup(argv[i], &arg);
        if (!strcmp(argv[i], "--version")) {
            printf("gpuwarden %s\n", gw_version());
            return GW_EXIT_OK;
        }
        if (o && o->id == CLI_OPT_HELP) {
            cli_main_usage(stdout);
            return GW_EXIT_OK;
        }
        if (!o) {
            fprintf(stderr, "gpuwarden: unknown global option '%s'\n", argv[i]);
            cli_main_usage(stderr);
            return GW_EXIT_USAGE;
        }
        if (o->arg && !arg && ++i == argc) {
            fprintf(stderr, "gpuwarden: option '%s' needs an argument\n", argv[i - 1]);
            return GW_EXIT_USAGE;
        }
    }
    if (i == argc) {
        cli_main_usage(stderr);
        return GW_EXIT_USAGE;
    }
    const gw_cli_command *cmd = gw_cli_command_find(argv[i]);
    if (!cmd) {
        fprintf(stderr, "gpuwarden: unknown command '%s'\n", argv[i]);
        cli_main_usage(stderr);
        return GW_EXIT_USAGE;
    }
    return run(cmd, argv + 1, i - 1, argc - i, argv + i);
}
