/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden quarantine ADDR --reason TEXT: take a GPU out of service. */
#include <gpuwarden/client.h>
#include <stdio.h>

#include "commands.h"
#include "device_command.h"

static const cli_opt quarantine_options[] = {
    { "reason", 0, "TEXT", CLI_DEV_OPT_REASON, "why (required)", NULL, 0 },
    { "publish-wait", 0, "S", CLI_DEV_OPT_PUBLISH_WAIT,
      "wait at most S seconds for Placement (polling the daemon's\n`metrics` every 50 ms); 0 does not wait; at most 600;\n"
      "default $GPUWARDEN_QUARANTINE_PUBLISH_WAIT, else 10", NULL, 0 },
    { 0 },
};

const cli_spec cmd_quarantine_spec = {
    .name = "quarantine",
    .synopsis = "ADDR --reason TEXT [OPTIONS]",
    .description =
        "Quarantine the GPU at ADDR (dddd:bb:dd.f or bb:dd.f) from any state: it leaves\n"
        "the Placement inventory's allocatable handles until `gpuwarden release`. A GPU\n"
        "attached to a VM stays with that VM, but is not offered again. The reason (1 to\n"
        "1024 bytes) and who asked go to the audit log. Prints the device afterwards,\n"
        "then, when a Placement writer (the Cyborg driver) is active, waits until it has\n"
        "published the inventory that shows the GPU reserved (a warning on stderr if\n"
        "not in time; the exit status is the quarantine's). Needs the admin endpoint\n"
        "(root).",
    .globals = CLI_G_REMOTE,
    .formats = "table json value yaml",
    .admin = true,
    .options = quarantine_options,
    .operands = "@addr",
};

int cmd_quarantine(int argc, char **argv)
{
    static const cli_device_command dc = { &cmd_quarantine_spec, CLI_REASON_REQUIRED, gw_client_quarantine, "GPUWARDEN_QUARANTINE_PUBLISH_WAIT" };
    return cli_run_device_command(&dc, argc, argv);
}
