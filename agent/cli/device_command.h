/* SPDX-License-Identifier: Apache-2.0 */
/* The commands acting on one device (quarantine, release, sanitize): one
 * parser, one request, the device printed afterwards. */
#ifndef GW_CLI_DEVICE_COMMAND_H
#define GW_CLI_DEVICE_COMMAND_H

#include <gpuwarden/client.h>

#include "options.h"

typedef enum { CLI_REASON_NONE, CLI_REASON_OPTIONAL, CLI_REASON_REQUIRED } cli_reason_use;

/* The option ids a device command's table may use (device_command.c handles
 * them): --reason TEXT, --publish-wait S. */
enum { CLI_DEV_OPT_REASON = 1, CLI_DEV_OPT_PUBLISH_WAIT };

typedef struct cli_device_command {
    const cli_spec *spec;       /* its options: CLI_DEV_OPT_* only */
    cli_reason_use reason;
    int (*call)(gw_client *c, const char *address, const char *reason, json_t **result);
    /* A command that takes a GPU out of Placement's offer (quarantine) waits
     * afterwards until Placement shows it reserved: --publish-wait SECONDS,
     * default from this environment variable, else 10. NULL: no wait, and no
     * such option. */
    const char *publish_wait_env;
} cli_device_command;

/* Parse `NAME ADDR [--reason TEXT] [--publish-wait S] [global options]`,
 * send it to the admin endpoint, print the device after the change, then
 * wait for Placement when the command does. */
int cli_run_device_command(const cli_device_command *dc, int argc, char **argv);

#endif
