/* gpuwarden quarantine ADDR --reason TEXT: take a GPU out of service. */
#include <gpuwarden/client.h>
#include <stdio.h>

#include "commands.h"
#include "remote.h"

static void quarantine_usage(FILE *f)
{
    fprintf(f, "usage: gpuwarden quarantine ADDR --reason TEXT [-f table|json] [--endpoint EP]\n"
               "                            [--timeout SEC]\n"
               "\n"
               "Quarantine the GPU at ADDR (dddd:bb:dd.f or bb:dd.f) from any state: it leaves\n"
               "the Placement inventory's allocatable handles until `gpuwarden release`. A GPU\n"
               "attached to a VM stays with that VM, but is not offered again. The reason (1 to\n"
               "1024 bytes) and who asked go to the audit log. Prints the device afterwards.\n"
               "Needs the admin endpoint (root).\n"
               "\n"
               "  --reason TEXT      why (required)\n");
    fprintf(f, CLI_REMOTE_HELP, GW_PROTO_ADMIN_ENDPOINT);
}

int cmd_quarantine(int argc, char **argv)
{
    static const cli_device_command spec = { "quarantine", CLI_REASON_REQUIRED, quarantine_usage,
                                             gw_client_quarantine };
    return cli_run_device_command(&spec, argc, argv);
}
