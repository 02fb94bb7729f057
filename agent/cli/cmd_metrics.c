/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden metrics: the daemon's counters and histograms in Prometheus'
 * text format, as JSON, or written for node_exporter's textfile collector
 * (docs/metrics.md). */
#include <gpuwarden/client.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "format.h"
#include "options.h"
#include "prometheus.h"
#include "remote.h"

enum { OPT_TEXTFILE = 1 };

static const cli_opt metrics_options[] = {
    { "textfile", 0, "PATH", OPT_TEXTFILE,
      "write the Prometheus text to PATH for node_exporter's\n"
      "textfile collector, atomically (a temporary file in its\n"
      "directory, renamed over PATH), nothing on stdout; e.g.\n"
      "/var/lib/prometheus/node-exporter/gpuwarden.prom. When the\n"
      "daemon does not answer, PATH gets gpuwarden_up 0 and the\n"
      "exit code says why",
      "@file", 0 },
    { 0 },
};

const cli_spec cmd_metrics_spec = {
    .name = "metrics",
    .description =
        "Print gpuwardend's metrics in the Prometheus text exposition format\n"
        "(version 0.0.4): GPUs per state, clean-up durations per step, failures by\n"
        "step, quarantines by cause, request latency by op, events published and the\n"
        "libvirt watcher's state (docs/metrics.md lists them all). -f json or yaml\n"
        "print the daemon's `metrics` result as it came. With --textfile, a systemd\n"
        "timer (gpuwarden-metrics.timer) keeps a file for node_exporter up to date.",
    .globals = CLI_G_ENDPOINT | CLI_G_TIMEOUT | CLI_G_FORMAT,
    .formats = "prometheus json yaml",
    .format_help = "prometheus (the default): the text exposition format;\njson or yaml: the daemon's result",
    .options = metrics_options,
};

static int metrics_option(void *ctx, int id, const char *arg)
{
    const char **textfile = ctx;
    if (id != OPT_TEXTFILE || !*arg) {
        fprintf(stderr, "gpuwarden metrics: --textfile wants a path\n");
        return GW_EXIT_USAGE;
    }
    *textfile = arg;
    return GW_EXIT_OK;
}

/* The daemon's result, or NULL with the exit code that says why not. */
static json_t *fetch(cli_remote *r, int *code)
{
    gw_client *client = NULL;
    if ((*code = cli_remote_connect(r, &client)) != GW_EXIT_OK)
        return NULL;
    json_t *res = NULL;
    if (gw_client_metrics(client, &res) < 0) {
        *code = cli_remote_fail(r, client);
        res = NULL;
    }
    gw_client_free(client);
    return res;
}

int cmd_metrics(int argc, char **argv)
{
    cli_remote r;
    const char *textfile = NULL;
    int code = cli_parse(&cmd_metrics_spec, argc, argv, &r, metrics_option, &textfile);
    if (code >= 0)
        return code;
    if ((code = cli_no_operands(&cmd_metrics_spec, argc, argv)) != GW_EXIT_OK)
        return code;
    if (textfile && !cli_own_table(&r)) {
        fprintf(stderr, "gpuwarden metrics: --textfile writes the Prometheus format only (no -f)\n");
        return GW_EXIT_USAGE;
    }

    json_t *res = fetch(&r, &code);
    if (textfile) {
        /* Unreachable too: gpuwarden_up 0 replaces numbers that would
         * otherwise go on looking current to the collector. */
        if (cli_prometheus_textfile(r.cmd, textfile, res) < 0 && code == GW_EXIT_OK)
            code = GW_EXIT_FAILURE;
    } else if (res) {
        code = cli_own_table(&r) ? (cli_prometheus_write(res, stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE)
                                 : cli_emit(&r, res, NULL);
    }
    json_decref(res);
    return code;
}
