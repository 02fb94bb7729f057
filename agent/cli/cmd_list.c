/* gpuwarden list: every GPU the daemon manages, with its lifecycle state. */
#include <gpuwarden/client.h>
#include <gpuwarden/lifecycle.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "output.h"
#include "remote.h"

static void list_usage(FILE *f)
{
    fprintf(f, "usage: gpuwarden list [--state STATE] [-f table|json] [--endpoint EP] [--timeout SEC]\n"
               "\n"
               "List every GPU gpuwardend manages (missing ones included), by address: its\n"
               "lifecycle state, whether it is dirty (used since its last passing clean-up),\n"
               "whether a clean-up runs, NUMA node, P2P clique, the libvirt domain using it,\n"
               "since when it is in this state, who quarantined it (BY: system, the operator,\n"
               "or cyborg) and why (cut to %d characters; `show` and -f json give them whole).\n"
               "-f json prints the protocol's device objects (an array of {address, state,\n"
               "dirty, cleaning, reason, since, domain, present, numa_node, clique,\n"
               "iommu_group, driver, identity, quarantined_by}).\n"
               "\n"
               "  --state STATE      only GPUs in STATE: discovered, sanitized, allocatable,\n"
               "                     attached or quarantined\n",
            CLI_REASON_WIDTH);
    fprintf(f, CLI_REMOTE_HELP, GW_PROTO_READ_ENDPOINT);
}

int cmd_list(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_REMOTE_LONGOPTS,
        { "state", required_argument, NULL, 's' },
        { NULL, 0, NULL, 0 },
    };
    cli_remote r;
    cli_remote_init(&r, "list", false);
    const char *state = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
        int done = cli_remote_option(&r, c, optarg);
        if (done < 0)
            return GW_EXIT_USAGE;
        if (done)
            continue;
        if (c == 's') {
            gw_state st;
            if (gw_state_from_name(optarg, &st) < 0 || st == GW_STATE_NONE) {
                fprintf(stderr, "gpuwarden list: unknown state '%s' (discovered, sanitized, allocatable, "
                                "attached, quarantined)\n", optarg);
                return GW_EXIT_USAGE;
            }
            state = optarg;
        } else if (c == 'h') {
            list_usage(stdout);
            return GW_EXIT_OK;
        } else {
            list_usage(stderr);
            return GW_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gpuwarden list: unexpected argument '%s'\n", argv[optind]);
        return GW_EXIT_USAGE;
    }

    gw_client *client = NULL;
    int code = cli_remote_connect(&r, &client);
    if (code != GW_EXIT_OK)
        return code;
    json_t *res = NULL;
    if (gw_client_devices(client, state, &res) < 0) {
        code = cli_remote_fail(&r, client);
        gw_client_free(client);
        return code;
    }
    gw_client_free(client);
    const json_t *devices = json_object_get(res, "devices");
    int w = r.json ? cli_print_json(devices, false) : cli_print_devices(devices);
    json_decref(res);
    return w == 0 && fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
}
