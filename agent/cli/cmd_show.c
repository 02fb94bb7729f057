/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden show ADDR: one GPU in full, with its last clean-up step by step. */
#include <gpuwarden/client.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "format.h"
#include "options.h"
#include "output.h"
#include "remote.h"

const cli_spec cmd_show_spec = {
    .name = "show",
    .synopsis = "ADDR [OPTIONS]",
    .description =
        "Everything gpuwardend knows of one GPU (ADDR: dddd:bb:dd.f or bb:dd.f): state,\n"
        "flags, the whole reason (while quarantined, `by`: who quarantined it), domain,\n"
        "NUMA node, clique, IOMMU group, driver and identity, then its last clean-up:\n"
        "the result, the host backend it ran on (sysfs, or simulated: nothing was\n"
        "written to a device) and each step's verdict, time and evidence (each line\n"
        "starts with the backend). -f json and yaml print the protocol's device object\n"
        "plus `cleanup` ({result, started, finished, duration_ms, backend} or null) and\n"
        "`steps` ([{name, verdict, evidence, duration_ms}]); -f value one member a line.",
    .globals = CLI_G_REMOTE,
    .formats = "table json value yaml",
    .operands = "@addr",
};

/* "key  value", control characters in the value (a reason, evidence) as spaces. */
static void line(const char *key, const char *value)
{
    printf("%-14s", key);
    if (!value || !*value)
        value = "-";
    for (const char *p = value; *p; p++)
        putchar((unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p);
    putchar('\n');
}

static void print_identity(const json_t *id)
{
    char b[6][32], text[512];
    const json_t *rev = json_object_get(id, "revision");
    snprintf(b[4], 32, "%02llx", (unsigned long long)json_integer_value(rev));
    snprintf(text, sizeof text, "%s:%s (subsystem %s:%s, revision %s, class %s)",
             cli_field(id, "vendor_id", b[0], 32), cli_field(id, "device_id", b[1], 32),
             cli_field(id, "subsystem_vendor_id", b[2], 32), cli_field(id, "subsystem_device_id", b[3], 32),
             json_is_integer(rev) ? b[4] : "-", cli_field(id, "class", b[5], 32));
    line("identity", text);
    snprintf(text, sizeof text, "%s %s", cli_field(id, "vendor_name", b[0], 32),
             cli_field(id, "device_name", b[1], 32));
    line("name", text);
    line("serial", cli_field(id, "serial", b[0], 32));
}

static int print_device(const json_t *d)
{
    static const char *const keys[] = { "address", "state", "dirty", "cleaning", "reason", "since",
                                        "domain", "present", "numa_node", "clique", "iommu_group", "driver" };
    char buf[32];
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const json_t *v = json_object_get(d, keys[i]);
        if (!strcmp(keys[i], "since")) {
            char when[64];
            cli_time(v, true, buf, sizeof buf);
            snprintf(when, sizeof when, "%s UTC", buf);
            line("since", when);
        } else if (!strcmp(keys[i], "reason")) {
            line("reason", cli_field(d, "reason", buf, sizeof buf));
            /* who quarantined it, under the reason it gave; only while quarantined */
            const char *by = json_string_value(json_object_get(d, "quarantined_by"));
            if (by)
                line("by", by);
            /* Whether the kernel keeps VMs off it too (the daemon holds
             * its group node); absent from older daemons. */
            if (by && json_is_boolean(json_object_get(d, "fenced")))
                line("fenced", json_is_true(json_object_get(d, "fenced"))
                                   ? "yes: gpuwardend holds its IOMMU group open, no VM can open it"
                                   : "no: see the daemon's log for why");
        } else if (json_is_integer(v) && json_integer_value(v) < 0) {
            line(keys[i], "-");   /* numa_node, clique: -1 = unknown, none */
        } else {
            line(keys[i], cli_field(d, keys[i], buf, sizeof buf));
        }
    }
    print_identity(json_object_get(d, "identity"));

    const json_t *cu = json_object_get(d, "cleanup");
    if (!json_is_object(cu)) {
        printf("\nlast clean-up: none\n");
        return 0;
    }
    char started[32], ms[32], b[32];
    /* The host backend it ran on (daemons since issue 15): "simulated" means
     * nothing in the evidence was done to a real device. */
    const char *backend = json_string_value(json_object_get(cu, "backend"));
    printf("\nlast clean-up: %s, started %s UTC, %s ms%s%s%s\n", cli_field(cu, "result", b, sizeof b),
           cli_time(json_object_get(cu, "started"), true, started, sizeof started),
           cli_field(cu, "duration_ms", ms, sizeof ms), backend ? ", " : "", backend ? backend : "",
           backend ? " backend" : "");
    cli_table t;
    cli_table_init(&t, 4, "STEP", "VERDICT", "MS", "EVIDENCE");
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(d, "steps"), i, s) {
        char sb[3][32];
        cli_table_row(&t, cli_field(s, "name", sb[0], 32), cli_field(s, "verdict", sb[1], 32),
                      cli_field(s, "duration_ms", sb[2], 32), json_string_value(json_object_get(s, "evidence")));
    }
    int r = cli_table_print(&t, stdout);
    cli_table_done(&t);
    return r;
}

int cmd_show(int argc, char **argv)
{
    cli_remote r;
    char address[13];
    int code = cli_parse(&cmd_show_spec, argc, argv, &r, NULL, NULL);
    if (code >= 0)
        return code;
    if ((code = cli_address_arg("show", argc, argv, address)) != GW_EXIT_OK)
        return code;

    gw_client *client = NULL;
    if ((code = cli_remote_connect(&r, &client)) != GW_EXIT_OK)
        return code;
    json_t *dev = NULL;
    if (gw_client_device(client, address, &dev) < 0) {
        code = cli_remote_fail(&r, client);
        gw_client_free(client);
        return code;
    }
    gw_client_free(client);
    if (cli_own_table(&r))
        code = print_device(dev) == 0 && fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
    else
        code = cli_emit(&r, dev, NULL);
    json_decref(dev);
    return code;
}
