/* SPDX-License-Identifier: Apache-2.0 */
/* Output helpers shared by the CLI commands: aligned tables, JSON, and the
 * text forms of protocol values (times, flags, device rows). */
#ifndef GW_CLI_OUTPUT_H
#define GW_CLI_OUTPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How wide a table's reason column may get before it is cut with "...";
 * `show` and -f json always give the whole text. */
#define CLI_REASON_WIDTH 48

/* A table collected row by row and printed with each column as wide as its
 * widest cell (counted in UTF-8 characters), two spaces apart; the last
 * column is not padded. Cells are copied; control characters become spaces
 * so that a daemon-supplied string cannot move the terminal's cursor. An
 * allocation failure is remembered and reported by cli_table_print(). */
typedef struct cli_table {
    size_t ncols, nrows, cap;
    char **cells;       /* nrows * ncols, row 0 the headers */
    size_t *max;        /* per column: 0 = no limit, else cut to this width */
    bool oom;
} cli_table;

/* ncols headers follow. */
void cli_table_init(cli_table *t, size_t ncols, ...);
/* Cells of this column longer than `width` characters are cut to width - 3
 * plus "...". */
void cli_table_limit(cli_table *t, size_t col, size_t width);
/* ncols cells follow (const char *; NULL prints "-"). */
void cli_table_row(cli_table *t, ...);
/* 0, or -ENOMEM when a row could not be stored (nothing printed then). */
int cli_table_print(const cli_table *t, FILE *f);
void cli_table_done(cli_table *t);

/* JSON to stdout: indented with keys in the daemon's order, or one compact
 * line (event streams). 0 or -EIO. */
int cli_print_json(const json_t *v, bool compact);

/* The text of a scalar member of `obj` for a table: strings as they are,
 * null or absent "-", true "yes", false "no", integers in decimal. Returns
 * buf (n >= 32), or the string member itself. */
const char *cli_field(const json_t *obj, const char *key, char *buf, size_t n);
/* Strings of an array joined with `sep` into buf (cut with "..." if needed). */
const char *cli_join(const json_t *array, const char *sep, char *buf, size_t n);
/* Milliseconds since the epoch as "YYYY-mm-dd HH:MM:SS" UTC (with ".mmm"
 * when `millis`); buf >= 32. A missing or non-integer value gives "-". */
const char *cli_time(const json_t *ms, bool millis, char *buf, size_t n);

/* The device table of `list` (and of the commands that change one device):
 * one row per device object of `devices`. Exit-code style: 0 or -ENOMEM. */
int cli_print_devices(const json_t *devices);

#endif
