/* SPDX-License-Identifier: Apache-2.0 */
/* The commands acting on one device (device_command.h). */
#include "device_command.h"

#include <stdio.h>
#include <stdlib.h>

#include "commands.h"
#include "format.h"
#include "output.h"
#include "publish_wait.h"

/*
 * After a change that takes a GPU out of Placement's offer (an operator's
 * quarantine): wait until the Cyborg driver has confirmed (`published`) the
 * inventory revision that shows it reserved, as the libvirt hook does after
 * `release end`. Until then Placement may still offer the GPU (the driver's
 * event listener usually raises `reserved` within milliseconds, its agent
 * cycle within a minute). Only a warning when that does not happen in time:
 * the GPU is quarantined whatever Placement shows, and the gate refuses a
 * VM on it.
 */
static void wait_placement(const cli_remote *r, const char *address, unsigned int wait_ms)
{
    cli_publish_wait w = { .endpoint = cli_remote_endpoint(r), .actor = NULL, .timeout_ms = (unsigned)r->timeout_ms,
                           .wait_ms = wait_ms, .revision = 0 };
    switch (cli_wait_published(&w)) {
    case CLI_PUBLISH_REACHED:
    case CLI_PUBLISH_NO_WRITER:
        break;
    case CLI_PUBLISH_ERROR:
        fprintf(stderr, "gpuwarden %s: warning: %s is %sd; cannot ask the daemon whether Placement shows it "
                        "reserved (%s): Placement may offer it until the Cyborg agent's next cycle\n",
                r->cmd, address, r->cmd, w.error);
        break;
    case CLI_PUBLISH_RESTARTED:
        fprintf(stderr, "gpuwarden %s: warning: %s is %sd; the daemon restarted while waiting for Placement to "
                        "show it reserved: not waiting further\n", r->cmd, address, r->cmd);
        break;
    case CLI_PUBLISH_TIMEOUT:
        fprintf(stderr, "gpuwarden %s: warning: %s is %sd, but Placement does not show it reserved after %.1f s "
                        "(inventory revision %llu, published up to %llu): Placement may offer it until the "
                        "Cyborg agent's next cycle\n",
                r->cmd, address, r->cmd, wait_ms / 1000.0, (unsigned long long)w.revision,
                (unsigned long long)w.published);
        break;
    }
}

typedef struct device_args {
    const cli_device_command *dc;
    const char *reason;
    unsigned int wait_ms;
} device_args;

static int device_option(void *ctx, int id, const char *arg)
{
    device_args *a = ctx;
    if (id == CLI_DEV_OPT_REASON && a->dc->reason != CLI_REASON_NONE) {
        a->reason = arg;
        return GW_EXIT_OK;
    }
    if (id == CLI_DEV_OPT_PUBLISH_WAIT && a->dc->publish_wait_env) {
        if (cli_parse_publish_wait(arg, &a->wait_ms) == 0)
            return GW_EXIT_OK;
        fprintf(stderr, "gpuwarden %s: --publish-wait '%s': expected seconds, 0..%d\n", a->dc->spec->name, arg,
                CLI_PUBLISH_WAIT_MAX_S);
    }
    return GW_EXIT_USAGE;
}

int cli_run_device_command(const cli_device_command *dc, int argc, char **argv)
{
    const char *name = dc->spec->name;
    device_args a = { .dc = dc, .wait_ms = CLI_PUBLISH_WAIT_DEFAULT_MS };
    const char *env = dc->publish_wait_env ? getenv(dc->publish_wait_env) : NULL;
    if (env && cli_parse_publish_wait(env, &a.wait_ms) < 0) {
        fprintf(stderr, "gpuwarden %s: %s='%s': expected seconds, 0..%d\n", name, dc->publish_wait_env, env,
                CLI_PUBLISH_WAIT_MAX_S);
        return GW_EXIT_USAGE;
    }
    cli_remote r;
    char address[13];
    int code = cli_parse(dc->spec, argc, argv, &r, device_option, &a);
    if (code >= 0)
        return code;
    if ((code = cli_address_arg(name, argc, argv, address)) != GW_EXIT_OK)
        return code;
    if (dc->reason == CLI_REASON_REQUIRED && !a.reason) {
        fprintf(stderr, "gpuwarden %s: --reason TEXT is required (it is kept in the audit log)\n", name);
        return GW_EXIT_USAGE;
    }
    if (a.reason && !*a.reason) {
        fprintf(stderr, "gpuwarden %s: --reason must not be empty\n", name);
        return GW_EXIT_USAGE;
    }

    gw_client *client = NULL;
    if ((code = cli_remote_connect(&r, &client)) != GW_EXIT_OK)
        return code;
    json_t *dev = NULL;
    if (dc->call(client, address, a.reason, &dev) < 0) {
        code = cli_remote_fail(&r, client);
        gw_client_free(client);
        return code;
    }
    gw_client_free(client);
    if (cli_own_table(&r)) {
        json_t *one = json_pack("[O]", dev);
        code = one && cli_print_devices(one) == 0 && fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
        json_decref(one);
    } else {
        code = cli_emit(&r, dev, NULL);
    }
    json_decref(dev);
    /* The device is printed first: the change is done whatever the wait
     * finds, and the exit status stays the change's own. */
    if (dc->publish_wait_env && a.wait_ms > 0)
        wait_placement(&r, address, a.wait_ms);
    return code;
}
