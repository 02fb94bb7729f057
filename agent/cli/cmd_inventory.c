/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden inventory: the Placement inventory the Cyborg shim reports. */
#include <errno.h>
#include <gpuwarden/client.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "format.h"
#include "options.h"
#include "output.h"
#include "remote.h"

const cli_spec cmd_inventory_spec = {
    .name = "inventory",
    .description =
        "The Placement inventory gpuwardend hands the Cyborg driver: its generation, then\n"
        "one deployable (resource provider) per GPU or per P2P clique with its resource\n"
        "class, GPU count, how many are reserved (neither allocatable nor attached), the\n"
        "attach handles Cyborg may bind (allocatable or attached GPUs only) and the\n"
        "traits. -f json and yaml print {\"generation\", \"deployables\": [{\"name\", \"rc\",\n"
        "\"num_accelerators\", \"reserved\", \"traits\", \"attach_handles\": [{\"type\",\n"
        "\"info\"}], \"gpus\"}]}; -f value one line per deployable; `python -m\n"
        "gpuwarden_cyborg.show` shows the Cyborg objects built from it. The table's first\n"
        "line also says the content's revision in this daemon run and the highest\n"
        "revision the driver confirmed is in Placement (equal: Placement shows this\n"
        "content).",
    .globals = CLI_G_REMOTE,
    .formats = "table json value yaml",
};

/* The inventory's Placement view: the keys of issue 6 item 6, in that order. */
static json_t *placement_view(const json_t *inv)
{
    static const char *const keys[] = { "name", "rc", "num_accelerators", "reserved", "traits",
                                        "attach_handles", "gpus" };
    json_t *deps = json_array();
    json_t *out = json_pack("{s:O,s:o}", "generation", json_object_get(inv, "generation"), "deployables", deps);
    if (!out)
        return NULL;
    size_t i;
    const json_t *d;
    json_array_foreach(json_object_get(inv, "deployables"), i, d) {
        json_t *o = json_object();
        if (!o || json_array_append_new(deps, o) < 0) {
            json_decref(out);
            return NULL;
        }
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            json_t *v = json_object_get(d, keys[k]);
            if (v && json_object_set(o, keys[k], v) < 0) {
                json_decref(out);
                return NULL;
            }
        }
    }
    return out;
}

static int print_table(const json_t *inv)
{
    char b[4][32];
    const json_t *deps = json_object_get(inv, "deployables");
    printf("generation %s, host %s, model %s: %zu deployable%s", cli_field(inv, "generation", b[0], 32),
           cli_field(inv, "host", b[1], 32), cli_field(inv, "model", b[2], 32), json_array_size(deps),
           json_array_size(deps) == 1 ? "" : "s");
    /* Whether Placement is known to show this content (an older daemon does not say). */
    if (json_is_integer(json_object_get(inv, "revision")))
        printf("; revision %s, published revision %s", cli_field(inv, "revision", b[0], 32),
               cli_field(inv, "published_revision", b[1], 32));
    printf("\n");
    cli_table t;
    cli_table_init(&t, 7, "NAME", "RC", "GPUS", "TOTAL", "RESERVED", "HANDLES", "TRAITS");
    size_t i;
    const json_t *d;
    json_array_foreach(deps, i, d) {
        char gpus[256], traits[1024], handles[32];
        snprintf(handles, sizeof handles, "%zu", json_array_size(json_object_get(d, "attach_handles")));
        cli_table_row(&t, cli_field(d, "name", b[0], 32), cli_field(d, "rc", b[1], 32),
                      cli_join(json_object_get(d, "gpus"), ",", gpus, sizeof gpus),
                      cli_field(d, "num_accelerators", b[2], 32), cli_field(d, "reserved", b[3], 32), handles,
                      cli_join(json_object_get(d, "traits"), ",", traits, sizeof traits));
    }
    int r = cli_table_print(&t, stdout);
    cli_table_done(&t);
    return r;
}

int cmd_inventory(int argc, char **argv)
{
    cli_remote r;
    int code = cli_parse(&cmd_inventory_spec, argc, argv, &r, NULL, NULL);
    if (code >= 0)
        return code;
    if ((code = cli_no_operands(&cmd_inventory_spec, argc, argv)) != GW_EXIT_OK)
        return code;

    gw_client *client = NULL;
    if ((code = cli_remote_connect(&r, &client)) != GW_EXIT_OK)
        return code;
    json_t *inv = NULL;
    if (gw_client_inventory(client, &inv) < 0) {
        code = cli_remote_fail(&r, client);
        gw_client_free(client);
        return code;
    }
    gw_client_free(client);
    if (cli_own_table(&r)) {
        code = print_table(inv) == 0 && fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
    } else {
        json_t *view = placement_view(inv);
        code = view ? cli_emit(&r, view, json_object_get(view, "deployables")) : GW_EXIT_FAILURE;
        json_decref(view);
    }
    json_decref(inv);
    return code;
}
