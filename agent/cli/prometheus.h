/* SPDX-License-Identifier: Apache-2.0 */
/* The `metrics` op's result in the Prometheus text exposition format,
 * version 0.0.4 (docs/metrics.md lists every metric). The only place that
 * names and renders gpuwarden's metrics: `gpuwarden metrics` prints it, and
 * --textfile writes it for node_exporter's textfile collector. */
#ifndef GW_CLI_PROMETHEUS_H
#define GW_CLI_PROMETHEUS_H

#include <jansson.h>
#include <stdio.h>

/* Render `metrics` (the op's result; NULL: the daemon did not answer, so
 * only gpuwarden_up 0). Families whose fields an older daemon does not
 * send are left out. 0, or -EIO on a write error. */
int cli_prometheus_write(const json_t *metrics, FILE *f);

/* Write the exposition to `path` atomically: a temporary file in the same
 * directory, made readable by all (node_exporter runs as its own user),
 * synced, then renamed over `path`, so the collector never reads half a
 * file. 0, or a negative errno (message printed, prefixed with `cmd`). */
int cli_prometheus_textfile(const char *cmd, const char *path, const json_t *metrics);

#endif
