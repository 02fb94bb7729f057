/* SPDX-License-Identifier: Apache-2.0 */
/* The output formats every command that prints data offers (-f): its own
 * table, or json, value (bare values, as the openstack CLI's -f value) and
 * yaml, all three made from the same JSON the daemon (or the library) gave;
 * -c COLUMN picks members of each row in any format. */
#ifndef GW_CLI_FORMAT_H
#define GW_CLI_FORMAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "remote.h"

typedef enum { CLI_FORMAT_TABLE, CLI_FORMAT_JSON, CLI_FORMAT_VALUE, CLI_FORMAT_YAML } cli_format;

/* "table", "json", "value", "yaml" (and a command's own name for its table,
 * e.g. nova-config's "conf") -> cli_format; -1 when unknown. */
int cli_format_from_name(const char *name);

/* The command prints its own table: -f table without -c. */
bool cli_own_table(const cli_remote *r);

/* Print `whole` in r's format (json, yaml; value prints `rows`), or `rows`
 * cut to r's columns (-c) in any format, table included. `rows` is an array
 * of objects (one line each with -f value) or one object (one value per
 * line); NULL means `whole`. Returns GW_EXIT_OK, GW_EXIT_USAGE (a -c column
 * that no row has; message printed) or GW_EXIT_FAILURE (out of memory, a
 * write error). */
int cli_emit(const cli_remote *r, const json_t *whole, const json_t *rows);

/* YAML block style: strings plain when YAML 1.1 reads them back as the same
 * string, else double-quoted. `document`: start with "---". 0 or -EIO. */
int cli_print_yaml(const json_t *v, bool document, FILE *f);
/* -f value of rows (as cli_emit). 0 or -EIO. */
int cli_print_value(const json_t *rows, FILE *f);

#endif
