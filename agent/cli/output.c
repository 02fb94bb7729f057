/* SPDX-License-Identifier: Apache-2.0 */
/* Tables and JSON for the CLI (output.h). */
#include "output.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Characters, not bytes: UTF-8 continuation bytes do not count. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

/* A copy of s for a table cell: control characters as spaces, and cut to
 * `max` characters (0 = whole) with "..." at the end. */
static char *cell_text(const char *s, size_t max)
{
    if (!s)
        s = "-";
    size_t len = strlen(s), keep = len;
    if (max > 3 && text_width(s) > max) {
        size_t chars = 0;
        for (keep = 0; keep < len; keep++) {
            if (((unsigned char)s[keep] & 0xc0) != 0x80 && chars++ == max - 3)
                break;
        }
    }
    char *out = malloc(keep + 4);
    if (!out)
        return NULL;
    for (size_t i = 0; i < keep; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
    strcpy(out + keep, keep < len ? "..." : "");
    return out;
}

static void add_row(cli_table *t, va_list ap)
{
    if (t->oom)
        return;
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        char **cells = realloc(t->cells, cap * t->ncols * sizeof *cells);
        if (!cells) {
            t->oom = true;
            return;
        }
        t->cells = cells;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        row[i] = cell_text(s, t->nrows ? t->max[i] : 0);
        if (!row[i])
            t->oom = true;
    }
    t->nrows++;
}

void cli_table_init(cli_table *t, size_t ncols, ...)
{
    *t = (cli_table){ .ncols = ncols };
    t->max = calloc(ncols, sizeof *t->max);
    if (!t->max) {
        t->oom = true;
        return;
    }
    va_list ap;
    va_start(ap, ncols);
    add_row(t, ap);
    va_end(ap);
}

void cli_table_limit(cli_table *t, size_t col, size_t width)
{
    if (t->max && col < t->ncols)
        t->max[col] = width;
}

void cli_table_row(cli_table *t, ...)
{
    va_list ap;
    va_start(ap, t);
    add_row(t, ap);
    va_end(ap);
}

int cli_table_print(const cli_table *t, FILE *f)
{
    if (t->oom)
        return -ENOMEM;
    size_t *width = calloc(t->ncols, sizeof *width);
    if (!width)
        return -ENOMEM;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t w = text_width(t->cells[r * t->ncols + i]);
            if (w > width[i])
                width[i] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            bool last = i + 1 == t->ncols;
            fputs(s, f);
            if (!last)
                fprintf(f, "%*s", (int)(width[i] - text_width(s) + 2), "");
        }
        fputc('\n', f);
    }
    free(width);
    return 0;
}

void cli_table_done(cli_table *t)
{
    for (size_t i = 0; t->cells && i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->max);
    *t = (cli_table){ 0 };
}

int cli_print_json(const json_t *v, bool compact)
{
    size_t flags = JSON_PRESERVE_ORDER | (compact ? JSON_COMPACT : JSON_INDENT(2));
    if (json_dumpf(v, stdout, flags) != 0 || fputc('\n', stdout) == EOF)
        return -EIO;
    return 0;
}

const char *cli_field(const json_t *obj, const char *key, char *buf, size_t n)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_true(v))
        snprintf(buf, n, "yes");
    else if (json_is_false(v))
        snprintf(buf, n, "no");
    else if (json_is_integer(v))
        snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(buf, n, "-");
    return buf;
}

const char *cli_join(const json_t *array, const char *sep, char *buf, size_t n)
{
    size_t i, len = 0;
    const json_t *v;
    buf[0] = '\0';
    json_array_foreach(array, i, v) {
        const char *s = json_is_string(v) ? json_string_value(v) : "?";
        int w = snprintf(buf + len, n - len, "%s%s", i ? sep : "", s);
        if (w < 0 || (size_t)w >= n - len) {
            if (n > 4)
                strcpy(buf + n - 4, "...");
            break;
        }
        len += (size_t)w;
    }
    if (!buf[0])
        snprintf(buf, n, "-");
    return buf;
}

const char *cli_time(const json_t *ms, bool millis, char *buf, size_t n)
{
    if (!json_is_integer(ms) || json_integer_value(ms) < 0) {
        snprintf(buf, n, "-");
        return buf;
    }
    json_int_t v = json_integer_value(ms);
    time_t sec = (time_t)(v / 1000);
    struct tm tm;
    if (!gmtime_r(&sec, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm)) {
        snprintf(buf, n, "-");
        return buf;
    }
    if (millis) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, ".%03d", (int)(v % 1000));
    }
    return buf;
}

int cli_print_devices(const json_t *devices)
{
    cli_table t;
    /* BY: who quarantined it (`quarantined_by`), next to the reason it gave;
     * an operator's identity is long, `show` and -f json have it whole. */
    cli_table_init(&t, 11, "ADDRESS", "STATE", "DIRTY", "CLEANING", "PRESENT", "NUMA", "CLIQUE", "DOMAIN",
                   "SINCE (UTC)", "BY", "REASON");
    cli_table_limit(&t, 7, 24);
    cli_table_limit(&t, 9, 24);
    cli_table_limit(&t, 10, CLI_REASON_WIDTH);
    size_t i;
    const json_t *d;
    json_array_foreach(devices, i, d) {
        char b[7][32], since[32];
        const json_t *clique = json_object_get(d, "clique");
        const json_t *numa = json_object_get(d, "numa_node");
        cli_table_row(&t, cli_field(d, "address", b[0], 32), cli_field(d, "state", b[1], 32),
                      cli_field(d, "dirty", b[2], 32), cli_field(d, "cleaning", b[3], 32),
                      cli_field(d, "present", b[4], 32),
                      json_integer_value(numa) < 0 ? "-" : cli_field(d, "numa_node", b[5], 32),
                      json_integer_value(clique) < 0 ? "-" : cli_field(d, "clique", b[6], 32),
                      json_string_value(json_object_get(d, "domain")),
                      cli_time(json_object_get(d, "since"), false, since, sizeof since),
                      json_string_value(json_object_get(d, "quarantined_by")),
                      json_string_value(json_object_get(d, "reason")));
    }
    int r = cli_table_print(&t, stdout);
    cli_table_done(&t);
    return r;
}
