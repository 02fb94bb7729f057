/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden sanitize ADDR: start a clean-up of one GPU now. */
#include <gpuwarden/client.h>
#include <stdio.h>

#include "commands.h"
#include "device_command.h"

const cli_spec cmd_sanitize_spec = {
    .name = "sanitize",
    .synopsis = "ADDR [OPTIONS]",
    .description =
        "Start a clean-up of the GPU at ADDR (dddd:bb:dd.f or bb:dd.f) now: reset, health,\n"
        "isolation, firmware hash, hooks. It runs in the daemon; this prints the device at\n"
        "once (cleaning: yes). Follow it with `gpuwarden events` or `gpuwarden show ADDR`.\n"
        "Refused (exit 5) for an attached GPU, or while a clean-up of it runs (busy).\n"
        "Needs the admin endpoint (root).",
    .globals = CLI_G_REMOTE,
    .formats = "table json value yaml",
    .admin = true,
    .operands = "@addr",
};

static int sanitize_call(gw_client *c, const char *address, const char *reason, json_t **result)
{
    (void)reason;
    return gw_client_sanitize(c, address, result);
}

int cmd_sanitize(int argc, char **argv)
{
    /* No wait for Placement (only quarantine waits): a sanitize never makes
     * a GPU allocatable. It does take an allocatable one out of the offer;
     * until the driver raises `reserved` (its event listener, milliseconds)
     * the gate refuses a VM on the dirty GPU. */
    static const cli_device_command dc = { &cmd_sanitize_spec, CLI_REASON_NONE, sanitize_call, NULL };
    return cli_run_device_command(&dc, argc, argv);
}
