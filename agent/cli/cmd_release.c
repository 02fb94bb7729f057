/* gpuwarden release ADDR [--reason TEXT]: return a quarantined GPU to service. */
#include <gpuwarden/client.h>
#include <stdio.h>

#include "commands.h"
#include "remote.h"

static void release_usage(FILE *f)
{
    fprintf(f, "usage: gpuwarden release ADDR [--reason TEXT] [-f table|json] [--endpoint EP]\n"
               "                         [--timeout SEC]\n"
               "\n"
               "Release the quarantined GPU at ADDR (dddd:bb:dd.f or bb:dd.f): it becomes\n"
               "`discovered` and dirty, and a full clean-up runs before it is offered again.\n"
               "A GPU that is not quarantined is refused (exit 5). Prints the device afterwards.\n"
               "Needs the admin endpoint (root).\n"
               "\n"
               "  --reason TEXT      why, for the audit log (optional)\n");
    fprintf(f, CLI_REMOTE_HELP, GW_PROTO_ADMIN_ENDPOINT);
}

int cmd_release(int argc, char **argv)
{
    /* No wait for Placement: a quarantined GPU is reserved already, and the
     * release keeps it so (discovered + dirty) until a clean-up and a
     * `published` make it allocatable. */
    static const cli_device_command spec = { "release", CLI_REASON_OPTIONAL, release_usage, gw_client_release,
                                             NULL };
    return cli_run_device_command(&spec, argc, argv);
}
