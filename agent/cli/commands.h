/* SPDX-License-Identifier: Apache-2.0 */
/* The operator CLI: one file per command (cmd_<name>.c), each exporting one
 * entry point registered in main.c's table. */
#ifndef GW_CLI_COMMANDS_H
#define GW_CLI_COMMANDS_H

#include <stdio.h>

/* Documented exit codes of `gpuwarden` (docs/cli.md). */
enum {
    GW_EXIT_OK = 0,
    GW_EXIT_FAILURE = 1,        /* the operation failed (message on stderr) */
    GW_EXIT_USAGE = 2,          /* bad command line */
    GW_EXIT_DEVICE_ERRORS = 3,  /* discover: finished, but some devices had errors */
    GW_EXIT_UNREACHABLE = 4,    /* the daemon could not be reached */
    GW_EXIT_REFUSED = 5,        /* the daemon refused (state, permission, gate) */
};

struct cli_spec;

/* A command of main.c's table. `spec` (options.h) is its option table and
 * help: give one, so that its --help, the man page and the completion come
 * from what its parser accepts (NULL: the man page has only the summary). */
typedef struct gw_cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);   /* argv[0] is the command name */
    const struct cli_spec *spec;
} gw_cli_command;

/* The command table (main.c), { NULL } ended. */
extern const gw_cli_command gw_cli_commands[];
const gw_cli_command *gw_cli_command_find(const char *name);
/* `gpuwarden --help` (cmd_help.c). */
void cli_main_usage(FILE *f);

int cmd_audit(int argc, char **argv);
int cmd_discover(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_inventory(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_nova_config(int argc, char **argv);
int cmd_quarantine(int argc, char **argv);
int cmd_release(int argc, char **argv);
int cmd_sanitize(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_xml(int argc, char **argv);
int cmd_hook(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_complete(int argc, char **argv);

extern const struct cli_spec cmd_audit_spec, cmd_discover_spec, cmd_events_spec, cmd_inventory_spec, cmd_list_spec,
    cmd_nova_config_spec, cmd_quarantine_spec, cmd_release_spec, cmd_sanitize_spec, cmd_show_spec, cmd_snapshot_spec,
    cmd_xml_spec, cmd_hook_spec, cmd_help_spec, cmd_complete_spec, cmd_metrics_spec;

extern const struct cli_spec cmd_doctor_spec;

#endif
