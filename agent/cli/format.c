/* SPDX-License-Identifier: Apache-2.0 */
/* json, yaml and value output, and -c columns (format.h). */
#include "format.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "commands.h"
#include "output.h"

int cli_format_from_name(const char *name)
{
    static const char *const names[] = { "table", "json", "value", "yaml" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name, names[i]))
            return (int)i;
    return -1;
}

bool cli_own_table(const cli_remote *r)
{
    return r->format == CLI_FORMAT_TABLE && r->n_columns == 0;
}

/*
 * A string YAML 1.1 (PyYAML) reads back as that string when written plain:
 * it starts with a letter (so never a number, a sexagesimal "00:02.0", an
 * indicator or ".inf"), holds only characters without meaning in a plain
 * scalar (no ':', '#', quotes, brackets), has no blank at either end, and is
 * none of 1.1's booleans and nulls. Anything else is double-quoted.
 */
static bool yaml_plain_ok(const char *s)
{
    static const char *const reserved[] = { "y", "n", "yes", "no", "true", "false", "on", "off", "null" };
    if (!isalpha((unsigned char)s[0]))
        return false;
    size_t len = strlen(s);
    if (s[len - 1] == ' ')
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_-./+ ", *p))
            return false;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (!strcasecmp(s, reserved[i]))
            return false;
    return true;
}

/* A scalar (or an empty container) as YAML: a JSON string literal is a valid
 * YAML double-quoted scalar (jansson escapes control characters as \uXXXX
 * and never writes "\/" unless asked). */
static int yaml_scalar(const json_t *v, FILE *f)
{
    if (json_is_string(v) && yaml_plain_ok(json_string_value(v)))
        return fputs(json_string_value(v), f) < 0 ? -EIO : 0;
    if (json_is_null(v))
        return fputs("null", f) < 0 ? -EIO : 0;
    return json_dumpf(v, f, JSON_ENCODE_ANY | JSON_COMPACT) == 0 ? 0 : -EIO;
}

static bool yaml_nested(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v)) || (json_is_array(v) && json_array_size(v));
}

static void indent_to(FILE *f, int n)
{
    fprintf(f, "%*s", n, "");
}

/* A non-empty container at `indent`; its first line's indent is already
 * written when `inline_first` (a sequence entry's "- "). */
static void yaml_block(const json_t *v, int indent, bool inline_first, FILE *f)
{
    bool first = true;
    if (json_is_object(v)) {
        const char *key;
        const json_t *m;
        json_object_foreach((json_t *)v, key, m) {
            if (!(first && inline_first))
                indent_to(f, indent);
            first = false;
            json_t *k = json_string(key);
            yaml_scalar(k, f);
            json_decref(k);
            if (yaml_nested(m)) {
                fputs(":\n", f);
                yaml_block(m, indent + 2, false, f);
            } else {
                fputs(": ", f);
                yaml_scalar(m, f);
                fputc('\n', f);
            }
        }
        return;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
        if (!(first && inline_first))
            indent_to(f, indent);
        first = false;
        fputs("- ", f);
        if (yaml_nested(e)) {
            yaml_block(e, indent + 2, true, f);
        } else {
            yaml_scalar(e, f);
            fputc('\n', f);
        }
    }
}

int cli_print_yaml(const json_t *v, bool document, FILE *f)
{
    if (document)
        fputs("---\n", f);
    if (yaml_nested(v)) {
        yaml_block(v, 0, false, f);
    } else {
        yaml_scalar(v, f);
        fputc('\n', f);
    }
    return ferror(f) ? -EIO : 0;
}

/* One member for -f value: scalars bare (null "-", booleans true/false), an
 * array of scalars comma-joined, anything else compact JSON. */
static void value_text(const json_t *v, FILE *f)
{
    if (json_is_string(v)) {
        fputs(json_string_value(v), f);
    } else if (json_is_null(v) || !v) {
        fputc('-', f);
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            if (json_is_array(e) || json_is_object(e)) {
                json_dumpf(v, f, JSON_COMPACT | JSON_PRESERVE_ORDER);
                return;
            }
        }
        json_array_foreach(v, i, e) {
            if (i)
                fputc(',', f);
            value_text(e, f);
        }
    } else {
        json_dumpf(v, f, JSON_ENCODE_ANY | JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
}

static void value_line(const json_t *row, FILE *f)
{
    if (!json_is_object(row)) {
        value_text(row, f);
        fputc('\n', f);
        return;
    }
    const char *key;
    const json_t *m;
    bool first = true;
    json_object_foreach((json_t *)row, key, m) {
        if (!first)
            fputc(' ', f);
        first = false;
        value_text(m, f);
    }
    fputc('\n', f);
}

int cli_print_value(const json_t *rows, FILE *f)
{
    if (json_is_array(rows)) {
        size_t i;
        const json_t *row;
        json_array_foreach(rows, i, row)
            value_line(row, f);
    } else if (json_is_object(rows)) {
        const char *key;
        const json_t *m;
        json_object_foreach((json_t *)rows, key, m) {
            value_text(m, f);
            fputc('\n', f);
        }
    } else {
        value_line(rows, f);
    }
    return ferror(f) ? -EIO : 0;
}

/* A row cut to the columns, in their order; a column the row lacks is null. */
static json_t *pick(const cli_remote *r, const json_t *row)
{
    json_t *out = json_object();
    for (size_t c = 0; out && c < r->n_columns; c++) {
        json_t *v = json_object_get(row, r->columns[c]);
        if (json_object_set_new(out, r->columns[c], v ? json_incref(v) : json_null()) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* A -c column that no row has is a typo: say which ones there are. */
static int check_columns(const cli_remote *r, const json_t *rows)
{
    const json_t *sample = json_is_array(rows) ? json_array_get(rows, 0) : rows;
    if (!json_is_object(sample)) {
        if (json_is_array(rows) && json_array_size(rows) == 0)
            return GW_EXIT_OK;   /* nothing to check against; prints nothing */
        fprintf(stderr, "gpuwarden %s: -c: this output has no columns\n", r->cmd);
        return GW_EXIT_USAGE;
    }
    for (size_t c = 0; c < r->n_columns; c++) {
        if (json_object_get(sample, r->columns[c]))
            continue;
        fprintf(stderr, "gpuwarden %s: no column '%s' (", r->cmd, r->columns[c]);
        const char *key;
        const json_t *m;
        bool first = true;
        json_object_foreach((json_t *)sample, key, m) {
            fprintf(stderr, "%s%s", first ? "" : ", ", key);
            first = false;
        }
        fprintf(stderr, ")\n");
        return GW_EXIT_USAGE;
    }
    return GW_EXIT_OK;
}

static json_t *pick_rows(const cli_remote *r, const json_t *rows)
{
    if (!json_is_array(rows))
        return pick(r, rows);
    json_t *out = json_array();
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row) {
        if (!out || json_array_append_new(out, pick(r, row)) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* A member as -f value writes it, as a table cell (control characters as
 * spaces, so that a daemon-supplied string cannot move the cursor). */
static char *cell(const json_t *v)
{
    char *s = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&s, &n);
    if (!m)
        return NULL;
    value_text(v, m);
    if (fclose(m) != 0) {
        free(s);
        return NULL;
    }
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return s;
}

/* -f table with -c: the columns as headers, one line per row; for one
 * object FIELD and VALUE lines, as the openstack CLI's `show`. The picked
 * rows all have the same keys, in the columns' order. */
static int columns_table(const cli_remote *r, const json_t *rows, FILE *f)
{
    bool one = json_is_object(rows);
    size_t nrows = one ? r->n_columns : json_array_size(rows), ncols = one ? 2 : r->n_columns;
    char **cells = calloc((nrows + 1) * ncols, sizeof *cells);
    size_t *w = calloc(ncols, sizeof *w);
    int rc = cells && w ? 0 : -ENOMEM;
    for (size_t c = 0; !rc && c < ncols; c++)
        cells[c] = strdup(one ? (c ? "VALUE" : "FIELD") : r->columns[c]);
    for (size_t i = 0; !rc && i < nrows; i++)
        for (size_t c = 0; c < ncols; c++) {
            const json_t *row = one ? rows : json_array_get(rows, i);
            const char *key = one ? r->columns[i] : r->columns[c];
            cells[(i + 1) * ncols + c] = one && c == 0 ? strdup(key) : cell(json_object_get(row, key));
        }
    for (size_t i = 0; !rc && i < (nrows + 1) * ncols; i++) {
        if (!cells[i])
            rc = -ENOMEM;
        else if (strlen(cells[i]) > w[i % ncols])
            w[i % ncols] = strlen(cells[i]);
    }
    for (size_t i = 0; !rc && i < nrows + 1; i++)
        for (size_t c = 0; c < ncols; c++) {
            const char *s = cells[i * ncols + c];
            fputs(s, f);
            if (c + 1 < ncols)
                fprintf(f, "%*s", (int)(w[c] - strlen(s) + 2), "");
            else
                fputc('\n', f);
        }
    for (size_t i = 0; cells && i < (nrows + 1) * ncols; i++)
        free(cells[i]);
    free(cells);
    free(w);
    return rc ? rc : ferror(f) ? -EIO : 0;
}

int cli_emit(const cli_remote *r, const json_t *whole, const json_t *rows)
{
    if (!rows)
        rows = whole;
    json_t *picked = NULL;
    if (r->n_columns) {
        int code = check_columns(r, rows);
        if (code != GW_EXIT_OK)
            return code;
        if (!(picked = pick_rows(r, rows))) {
            fprintf(stderr, "gpuwarden %s: out of memory\n", r->cmd);
            return GW_EXIT_FAILURE;
        }
        whole = rows = picked;
    }
    int rc;
    switch (r->format) {
    case CLI_FORMAT_JSON: rc = cli_print_json(whole, false); break;
    case CLI_FORMAT_YAML: rc = cli_print_yaml(whole, false, stdout); break;
    case CLI_FORMAT_VALUE: rc = cli_print_value(rows, stdout); break;
    default: rc = columns_table(r, rows, stdout); break;
    }
    json_decref(picked);
    return rc == 0 && fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
}
