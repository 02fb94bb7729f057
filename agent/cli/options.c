/* SPDX-License-Identifier: Apache-2.0 */
/* The one option parser of the CLI, and --help from the same tables
 * (options.h). */
#include "options.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "format.h"

const char cli_formats_text[] =
    "table (the default) is for people; json, value and yaml for scripts. json and\n"
    "yaml print the same data (the protocol's objects, see each command); value\n"
    "prints bare values as the openstack CLI's -f value does: one line per row,\n"
    "its members separated by a space (null as -, a list of plain values joined\n"
    "with commas, anything else as compact JSON), or one member per line for a\n"
    "single object. -c COLUMN (repeatable) keeps only those members of each row,\n"
    "in that order, in every format.";

/* The global options: accepted before the command name or after it, by every
 * command whose spec takes their group. --endpoint and --timeout are handled
 * by cli_remote_option() (remote.c), so a new remote option (e.g. a CURVE
 * key) needs an entry here and a case there. */
const cli_opt cli_global_options[] = {
    { "endpoint", 0, "EP", CLI_OPT_ENDPOINT, NULL, "ipc:// tcp://", CLI_G_ENDPOINT },
    { "timeout", 0, "SEC", CLI_OPT_TIMEOUT, "give up on the daemon after SEC seconds (default 5)", NULL,
      CLI_G_TIMEOUT },
    { "server-key", 0, "FILE", CLI_OPT_SERVER_KEY,
      "tcp:// (CURVE): the daemon's public key, Z85, in FILE\n(default $" CLI_SERVER_KEY_ENV ")", "@file",
      CLI_G_ENDPOINT },
    { "public-key", 0, "FILE", CLI_OPT_PUBLIC_KEY,
      "tcp:// (CURVE): this client's public key, listed in the daemon's\ncurve_allowlist for the admin endpoint "
      "(default $" CLI_PUBLIC_KEY_ENV ";\nnone: a throwaway key pair, which only a read endpoint serves)", "@file",
      CLI_G_ENDPOINT },
    { "secret-key", 0, "FILE", CLI_OPT_SECRET_KEY,
      "tcp:// (CURVE): this client's secret key (default $" CLI_SECRET_KEY_ENV ")", "@file", CLI_G_ENDPOINT },
    { "format", 'f', "F", 'f', NULL, "table json value yaml", CLI_G_FORMAT },
    { "json", 0, NULL, CLI_OPT_JSON, "the same as -f json", NULL, CLI_G_FORMAT },
    { "column", 'c', "COL", CLI_OPT_COLUMN, "print only this member (column) of each row; repeatable", NULL,
      CLI_G_COLUMNS },
    { "help", 'h', NULL, CLI_OPT_HELP, "this text", NULL, 0 },
    { 0 },
};

const cli_opt *cli_global_lookup(const char *word, const char **inline_arg)
{
    *inline_arg = NULL;
    for (const cli_opt *o = cli_global_options; o->name; o++) {
        if (word[0] == '-' && word[1] == '-') {
            size_t len = strlen(o->name);
            if (strncmp(word + 2, o->name, len))
                continue;
            if (word[2 + len] == '=' && o->arg)
                *inline_arg = word + 3 + len;
            else if (word[2 + len])
                continue;
            return o;
        }
        if (word[0] == '-' && o->short_name && word[1] == o->short_name) {
            if (word[2] && !o->arg)
                continue;
            *inline_arg = word[2] ? word + 2 : NULL;
            return o;
        }
    }
    return NULL;
}

bool cli_spec_takes(const cli_spec *spec, const cli_opt *g)
{
    if ((g->group & CLI_G_OUTPUT) && !spec->formats)
        return false;
    return !g->group || (spec->globals & g->group);
}

static size_t count(const cli_opt *o)
{
    size_t n = 0;
    while (o && o[n].name)
        n++;
    return n;
}

/* The options of a command, globals last, as getopt wants them. */
static int build_getopt(const cli_spec *spec, struct option *lo, char *shorts)
{
    size_t n = 0, s = 0;
    const cli_opt *tables[2] = { spec->options, cli_global_options };
    if (spec->flags & CLI_STOP_AT_OPERAND)
        shorts[s++] = '+';
    shorts[s++] = ':';   /* a missing argument is ':', told apart from an unknown '?' */
    for (size_t t = 0; t < 2; t++) {
        for (const cli_opt *o = tables[t]; o && o->name; o++) {
            if (t == 1 && !cli_spec_takes(spec, o))
                continue;
            lo[n++] = (struct option){ o->name, o->arg ? required_argument : no_argument, NULL, o->id };
            if (o->short_name) {
                shorts[s++] = (char)o->short_name;
                if (o->arg)
                    shorts[s++] = ':';
            }
        }
    }
    lo[n] = (struct option){ 0 };
    shorts[s] = '\0';
    return 0;
}

/* The short option's id: getopt returns the character itself. */
static const cli_opt *by_id(const cli_spec *spec, int id)
{
    for (const cli_opt *o = spec->options; o && o->name; o++)
        if (o->id == id || (o->short_name && o->short_name == id))
            return o;
    for (const cli_opt *o = cli_global_options; o->name; o++)
        if ((o->id == id || (o->short_name && o->short_name == id)) && cli_spec_takes(spec, o))
            return o;
    return NULL;
}

static int set_format(const cli_spec *spec, cli_remote *r, const char *name)
{
    /* The first of spec->formats is the command's own table, whatever its name. */
    size_t first = strcspn(spec->formats, " ");
    int f = strlen(name) == first && !strncmp(name, spec->formats, first) ? CLI_FORMAT_TABLE
                                                                          : cli_format_from_name(name);
    const char *p = spec->formats;
    bool listed = false;
    for (size_t len; *p; p += len + (p[len] == ' ')) {
        len = strcspn(p, " ");
        listed |= strlen(name) == len && !strncmp(p, name, len);
    }
    if (f < 0 || !listed) {
        fprintf(stderr, "gpuwarden %s: unknown format '%s' (%s)\n", spec->name, name, spec->formats);
        return GW_EXIT_USAGE;
    }
    r->format = f;
    r->json = f == CLI_FORMAT_JSON;
    return GW_EXIT_OK;
}

static int global_option(const cli_spec *spec, cli_remote *r, int id, const char *arg)
{
    switch (id) {
    case 'f':
        return set_format(spec, r, arg);
    case CLI_OPT_JSON:
        return set_format(spec, r, "json");
    case CLI_OPT_COLUMN:
        if (r->n_columns == CLI_MAX_COLUMNS) {
            fprintf(stderr, "gpuwarden %s: at most %d -c\n", spec->name, CLI_MAX_COLUMNS);
            return GW_EXIT_USAGE;
        }
        r->columns[r->n_columns++] = arg;
        return GW_EXIT_OK;
    default:
        return cli_remote_option(r, id, arg) < 0 ? GW_EXIT_USAGE : GW_EXIT_OK;
    }
}

static bool is_global(const cli_spec *spec, int id)
{
    const cli_opt *o = by_id(spec, id);
    for (const cli_opt *g = cli_global_options; o && g->name; g++)
        if (g == o)
            return true;
    return false;
}

int cli_parse(const cli_spec *spec, int argc, char **argv, cli_remote *r, cli_on_option on_option, void *ctx)
{
    cli_remote_init(r, spec->name, spec->admin);
    size_t n = count(spec->options) + count(cli_global_options);
    struct option *lo = calloc(n + 1, sizeof *lo);
    char *shorts = calloc(3 * n + 3, 1);
    if (!lo || !shorts) {
        free(lo);
        free(shorts);
        fprintf(stderr, "gpuwarden %s: out of memory\n", spec->name);
        return GW_EXIT_FAILURE;
    }
    build_getopt(spec, lo, shorts);
    int c, code = -1;
    opterr = 0;
    optind = 1;
    while (code < 0 && (c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        if (c == '?' || c == ':') {
            const char *word = argv[optind - 1];
            if (c == ':')
                fprintf(stderr, "gpuwarden %s: option '%s' needs an argument\n", spec->name, word);
            else
                fprintf(stderr, "gpuwarden %s: unknown option '%s'\n", spec->name, word);
            cli_usage(spec, stderr);
            code = GW_EXIT_USAGE;
        } else if (c == CLI_OPT_HELP || c == 'h') {
            cli_usage(spec, stdout);
            code = GW_EXIT_OK;
        } else if (is_global(spec, c)) {
            int e = global_option(spec, r, by_id(spec, c)->id, optarg);
            if (e != GW_EXIT_OK)
                code = e;
        } else {
            const cli_opt *o = by_id(spec, c);
            int e = on_option ? on_option(ctx, o ? o->id : c, optarg) : GW_EXIT_USAGE;
            if (e != GW_EXIT_OK)
                code = e;
        }
    }
    free(lo);
    free(shorts);
    return code;
}

int cli_no_operands(const cli_spec *spec, int argc, char **argv)
{
    if (optind >= argc)
        return GW_EXIT_OK;
    fprintf(stderr, "gpuwarden %s: unexpected argument '%s'\n", spec->name, argv[optind]);
    return GW_EXIT_USAGE;
}

/* "  -f, --format FORMAT" and its help, continuation lines aligned. */
void cli_usage_option(FILE *f, const cli_opt *o, const char *help)
{
    char head[64];
    snprintf(head, sizeof head, "%s%c%s--%s%s%s", o->short_name ? "-" : "", o->short_name ? o->short_name : ' ',
             o->short_name ? ", " : "", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    const char *h = head[0] == ' ' ? head + 1 : head;
    if (strlen(h) > 18)
        fprintf(f, "  %s\n%21s", h, "");
    else
        fprintf(f, "  %-18s ", h);
    for (const char *p = help; *p; p++) {
        fputc(*p, f);
        if (*p == '\n')
            fprintf(f, "%21s", "");
    }
    fputc('\n', f);
}

const char *cli_global_help(const cli_spec *spec, const cli_opt *g, char *buf, size_t n)
{
    switch (g->id) {
    case CLI_OPT_ENDPOINT:
        if (spec->endpoint_help)
            return spec->endpoint_help;
        snprintf(buf, n, "the daemon's endpoint (ipc://PATH or tcp://HOST:PORT);\n"
                         "default $" CLI_ENDPOINT_ENV ", else %s",
                 spec->admin ? GW_PROTO_ADMIN_ENDPOINT : GW_PROTO_READ_ENDPOINT);
        return buf;
    case CLI_OPT_TIMEOUT:
        return spec->timeout_help ? spec->timeout_help : g->help;
    case 'f': {
        if (spec->format_help)
            return spec->format_help;
        /* "table (default), json, value or yaml" */
        size_t len = 0;
        const char *p = spec->formats;
        for (int i = 0; *p && len < n; i++) {
            size_t w = strcspn(p, " ");
            const char *next = p + w + (p[w] == ' ');
            len += (size_t)snprintf(buf + len, n - len, "%s%.*s%s", i == 0 ? "" : *next ? ", " : " or ", (int)w, p,
                                    i == 0 ? " (default)" : "");
            p = next;
        }
        return buf;
    }
    default:
        return g->help;
    }
}

void cli_usage(const cli_spec *spec, FILE *f)
{
    const char *syn = spec->synopsis ? spec->synopsis : "[OPTIONS]";
    fprintf(f, "usage: gpuwarden %s ", spec->name);
    for (const char *p = syn; *p; p++) {
        fputc(*p, f);
        if (*p == '\n')
            fprintf(f, "       gpuwarden %s ", spec->name);
    }
    fprintf(f, "\n\n%s\n\noptions:\n", spec->description);
    for (const cli_opt *o = spec->options; o && o->name; o++)
        cli_usage_option(f, o, o->help);
    char buf[512];
    for (const cli_opt *g = cli_global_options; g->name; g++)
        if (cli_spec_takes(spec, g))
            cli_usage_option(f, g, cli_global_help(spec, g, buf, sizeof buf));
    fprintf(f, "\n%s\n", spec->exit_codes ? spec->exit_codes : CLI_REMOTE_EXIT_CODES);
}
