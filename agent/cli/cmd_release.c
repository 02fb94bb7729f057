/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden release ADDR [--reason TEXT]: return a quarantined GPU to service. */
#include <gpuwarden/client.h>
#include <stdio.h>

#include "commands.h"
#include "device_command.h"

static const cli_opt release_options[] = {
    { "reason", 0, "TEXT", CLI_DEV_OPT_REASON, "why, for the audit log (optional)", NULL, 0 },
    { 0 },
};

const cli_spec cmd_release_spec = {
    .name = "release",
    .synopsis = "ADDR [--reason TEXT] [OPTIONS]",
    .description =
        "Release the quarantined GPU at ADDR (dddd:bb:dd.f or bb:dd.f): it becomes\n"
        "`discovered` and dirty, and a full clean-up runs before it is offered again.\n"
        "A GPU that is not quarantined is refused (exit 5). Prints the device afterwards.\n"
        "Needs the admin endpoint (root).",
    .globals = CLI_G_REMOTE,
    .formats = "table json value yaml",
    .admin = true,
    .options = release_options,
    .operands = "@addr",
};

int cmd_release(int argc, char **argv)
{
    /* No wait for Placement: a quarantined GPU is reserved already, and the
     * release keeps it so (discovered + dirty) until a clean-up and a
     * `published` make it allocatable. */
    static const cli_device_command dc = { &cmd_release_spec, CLI_REASON_OPTIONAL, gw_client_release, NULL };
    return cli_run_device_command(&dc, argc, argv);
}
