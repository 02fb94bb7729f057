/* SPDX-License-Identifier: Apache-2.0 */
/* The CLI's option tables and the one parser every command uses.
 *
 * A command declares only its own options (a cli_opt table) and which of the
 * global options it takes (cli_spec.globals); cli_parse() builds getopt's
 * table from both, handles the global ones, and hands the command its own.
 * The same tables print `--help`, the gpuwarden(1) man page and the bash
 * completion (`gpuwarden complete`), so none of them can drift from what the
 * parser accepts. main.c moves global options given before the command name
 * (`gpuwarden --endpoint EP list`) after it, so both orders parse the same. */
#ifndef GW_CLI_OPTIONS_H
#define GW_CLI_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "remote.h"

/* One option. `arg` is the metavariable (NULL: a flag without argument).
 * `help` may hold '\n' for more lines. `complete` says what bash completes
 * for its argument: space-separated words, or "@file", "@dir", "@addr"
 * (NULL: nothing). */
typedef struct cli_opt {
    const char *name;           /* long name, without "--" */
    int short_name;             /* 0: none */
    const char *arg;
    int id;                     /* handed to the command's on_option */
    const char *help;
    const char *complete;
    unsigned group;             /* globals only: the CLI_G_* that enables it */
} cli_opt;

/* Which global options a command takes. */
enum {
    CLI_G_ENDPOINT = 1u << 0,   /* --endpoint EP */
    CLI_G_TIMEOUT = 1u << 1,    /* --timeout SEC */
    CLI_G_FORMAT = 1u << 2,     /* -f/--format, --json */
    CLI_G_COLUMNS = 1u << 3,    /* -c/--column */
    CLI_G_OUTPUT = CLI_G_FORMAT | CLI_G_COLUMNS,
    CLI_G_REMOTE = CLI_G_ENDPOINT | CLI_G_TIMEOUT | CLI_G_OUTPUT,
};

/* The ids of the global options the parser handles itself (the remote ones,
 * CLI_OPT_ENDPOINT and CLI_OPT_TIMEOUT, go to cli_remote_option()). */
enum { CLI_OPT_JSON = 0x180, CLI_OPT_COLUMN, CLI_OPT_HELP };

/* A number macro as a string literal, for help texts. */
#define CLI_STR_(x) #x
#define CLI_XSTR(x) CLI_STR_(x)

/* Parser flags. */
enum {
    CLI_STOP_AT_OPERAND = 1u << 0,  /* options end at the first operand (hook) */
};

typedef struct cli_spec {
    const char *name;
    const char *synopsis;       /* after "gpuwarden NAME"; '\n' starts another usage line */
    const char *description;    /* paragraphs, lines broken with '\n' */
    unsigned globals;           /* CLI_G_* */
    unsigned flags;             /* CLI_STOP_AT_OPERAND */
    const char *formats;        /* -f values, the default first ("table json value yaml") */
    const char *format_help;    /* what -f prints; NULL: the generic text */
    const char *endpoint_help;  /* --endpoint's text; NULL: the read or admin default */
    const char *timeout_help;   /* --timeout's text; NULL: the generic text */
    bool admin;                 /* the default endpoint is the admin one */
    const cli_opt *options;     /* own options, ended by { 0 } */
    const char *exit_codes;     /* "exit codes: ..." text; NULL: the daemon commands' */
    const char *operands;       /* completion of operands: as cli_opt.complete */
} cli_spec;

/* A command's own option: GW_EXIT_OK to go on, or an exit code to stop with
 * (message printed). */
typedef int (*cli_on_option)(void *ctx, int id, const char *arg);

/* Parse argv (argv[0] the command name) for `spec`: the global options into
 * *r (initialised here for spec->name), the command's own through on_option.
 * Returns -1 to go on, optind at the first operand; or the exit code to
 * return now: GW_EXIT_OK after --help (printed on stdout), GW_EXIT_USAGE
 * after a bad option (message and usage on stderr). */
int cli_parse(const cli_spec *spec, int argc, char **argv, cli_remote *r, cli_on_option on_option, void *ctx);
/* No operands allowed: GW_EXIT_OK, or GW_EXIT_USAGE (message printed). */
int cli_no_operands(const cli_spec *spec, int argc, char **argv);

/* --help text of a command. */
void cli_usage(const cli_spec *spec, FILE *f);

/* Whether a command takes a global option. */
bool cli_spec_takes(const cli_spec *spec, const cli_opt *g);
/* One option's --help lines. */
void cli_usage_option(FILE *f, const cli_opt *o, const char *help);

/* The global options, { 0 } ended (for main.c, the man page, completion). */
extern const cli_opt cli_global_options[];
/* The global option of a command-line word ("--endpoint", "--endpoint=x",
 * "-fjson"), or NULL. *inline_arg: the argument given in the same word. */
const cli_opt *cli_global_lookup(const char *word, const char **inline_arg);

/* The help text of a global option for this command (buf: n >= 256). */
const char *cli_global_help(const cli_spec *spec, const cli_opt *g, char *buf, size_t n);

/* The exit codes of the commands that talk to the daemon. */
#define CLI_REMOTE_EXIT_CODES                                                               \
    "exit codes: 0 done, 1 failed, 2 usage, 4 daemon unreachable (or not ready),\n"        \
    "            5 refused by the daemon (forbidden, not_found, illegal_transition,\n"     \
    "            conflict, busy)"

/* What the output formats mean, for help and the man page. */
extern const char cli_formats_text[];

#endif
