/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden list: every GPU the daemon manages, with its lifecycle state. */
#include <gpuwarden/client.h>
#include <gpuwarden/lifecycle.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "format.h"
#include "options.h"
#include "output.h"
#include "remote.h"

enum { OPT_STATE = 1 };

static const cli_opt list_options[] = {
    { "state", 0, "STATE", OPT_STATE,
      "only GPUs in STATE: discovered, sanitized, allocatable,\nattached or quarantined",
      "discovered sanitized allocatable attached quarantined", 0 },
    { 0 },
};

const cli_spec cmd_list_spec = {
    .name = "list",
    .description =
        "List every GPU gpuwardend manages (missing ones included), by address: its\n"
        "lifecycle state, whether it is dirty (used since its last passing clean-up),\n"
        "whether a clean-up runs, NUMA node, P2P clique, the libvirt domain using it,\n"
        "since when it is in this state, who quarantined it (BY: system, the operator,\n"
        "or cyborg) and why (cut to " CLI_XSTR(CLI_REASON_WIDTH) " characters; `show` and -f json give them whole).\n"
        "-f json and yaml print the protocol's device objects (an array of {address,\n"
        "state, dirty, cleaning, reason, since, domain, present, numa_node, clique,\n"
        "iommu_group, driver, identity, quarantined_by}); -f value one line per GPU.",
    .globals = CLI_G_REMOTE,
    .formats = "table json value yaml",
    .options = list_options,
};

static int list_option(void *ctx, int id, const char *arg)
{
    const char **state = ctx;
    gw_state st;
    if (id != OPT_STATE)
        return GW_EXIT_USAGE;
    if (gw_state_from_name(arg, &st) < 0 || st == GW_STATE_NONE) {
        fprintf(stderr, "gpuwarden list: unknown state '%s' (discovered, sanitized, allocatable, "
                        "attached, quarantined)\n", arg);
        return GW_EXIT_USAGE;
    }
    *state = arg;
    return GW_EXIT_OK;
}

int cmd_list(int argc, char **argv)
{
    cli_remote r;
    const char *state = NULL;
    int code = cli_parse(&cmd_list_spec, argc, argv, &r, list_option, &state);
    if (code >= 0)
        return code;
    if ((code = cli_no_operands(&cmd_list_spec, argc, argv)) != GW_EXIT_OK)
        return code;

    gw_client *client = NULL;
    if ((code = cli_remote_connect(&r, &client)) != GW_EXIT_OK)
        return code;
    json_t *res = NULL;
    if (gw_client_devices(client, state, &res) < 0) {
        code = cli_remote_fail(&r, client);
        gw_client_free(client);
        return code;
    }
    gw_client_free(client);
    const json_t *devices = json_object_get(res, "devices");
    if (cli_own_table(&r))
        code = cli_print_devices(devices) == 0 && fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
    else
        code = cli_emit(&r, devices, NULL);
    json_decref(res);
    return code;
}
