/* The operator CLI: one file per command (cmd_<name>.c), each exporting one
 * entry point registered in main.c's table. */
#ifndef GW_CLI_COMMANDS_H
#define GW_CLI_COMMANDS_H

/* Documented exit codes of `gpuwarden` (docs/cli.md). */
enum {
    GW_EXIT_OK = 0,
    GW_EXIT_FAILURE = 1,        /* the operation failed (message on stderr) */
    GW_EXIT_USAGE = 2,          /* bad command line */
    GW_EXIT_DEVICE_ERRORS = 3,  /* discover: finished, but some devices had errors */
    GW_EXIT_UNREACHABLE = 4,    /* the daemon could not be reached */
    GW_EXIT_REFUSED = 5,        /* the daemon refused (state, permission, gate) */
};

typedef struct gw_cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);   /* argv[0] is the command name */
} gw_cli_command;

int cmd_audit(int argc, char **argv);
int cmd_discover(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_inventory(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_nova_config(int argc, char **argv);
int cmd_quarantine(int argc, char **argv);
int cmd_release(int argc, char **argv);
int cmd_sanitize(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_xml(int argc, char **argv);
int cmd_hook(int argc, char **argv);

#endif
