/* gpuwarden quarantine ADDR --reason TEXT: take a GPU out of service. */
#include <gpuwarden/client.h>
#include <stdio.h>

#include "commands.h"
#include "remote.h"

static void quarantine_usage(FILE *f)
{
    fprintf(f, "usage: gpuwarden quarantine ADDR --reason TEXT [--publish-wait SECONDS] [-f table|json]\n"
               "                            [--endpoint EP] [--timeout SEC]\n"
               "\n"
               "Quarantine the GPU at ADDR (dddd:bb:dd.f or bb:dd.f) from any state: it leaves\n"
               "the Placement inventory's allocatable handles until `gpuwarden release`. A GPU\n"
               "attached to a VM stays with that VM, but is not offered again. The reason (1 to\n"
               "1024 bytes) and who asked go to the audit log. Prints the device afterwards,\n"
               "then, when a Placement writer (the Cyborg driver) is active, waits until it has\n"
               "published the inventory that shows the GPU reserved (a warning on stderr if\n"
               "not in time; the exit status is the quarantine's). Needs the admin endpoint\n"
               "(root).\n"
               "\n"
               "  --reason TEXT      why (required)\n"
               "  --publish-wait S   wait at most S seconds for Placement (polling the daemon's\n"
               "                     `metrics` every 50 ms); 0 does not wait; at most 600;\n"
               "                     default $GPUWARDEN_QUARANTINE_PUBLISH_WAIT, else 10\n");
    fprintf(f, CLI_REMOTE_HELP, GW_PROTO_ADMIN_ENDPOINT);
}

int cmd_quarantine(int argc, char **argv)
{
    static const cli_device_command spec = { "quarantine", CLI_REASON_REQUIRED, quarantine_usage,
                                             gw_client_quarantine, "GPUWARDEN_QUARANTINE_PUBLISH_WAIT" };
    return cli_run_device_command(&spec, argc, argv);
}
