/* SPDX-License-Identifier: Apache-2.0 */
/* What the commands that talk to gpuwardend share: the common options
 * (--endpoint, --timeout, -f, --help), connecting, PCI address arguments,
 * and turning a failed request into a message and an exit code. */
#ifndef GW_CLI_REMOTE_H
#define GW_CLI_REMOTE_H

#include <getopt.h>
#include <gpuwarden/client.h>
#include <stdbool.h>
#include <stdio.h>

/* getopt codes of the long-only common options. */
enum { CLI_OPT_ENDPOINT = 0x100, CLI_OPT_TIMEOUT, CLI_OPT_SERVER_KEY, CLI_OPT_PUBLIC_KEY, CLI_OPT_SECRET_KEY,
       CLI_OPT_FIRST_FREE };

#define CLI_REMOTE_LONGOPTS                                          \
    { "endpoint", required_argument, NULL, CLI_OPT_ENDPOINT },       \
    { "timeout", required_argument, NULL, CLI_OPT_TIMEOUT },         \
    { "format", required_argument, NULL, 'f' },                      \
    { "help", no_argument, NULL, 'h' }

/* The environment variable that replaces the default request endpoint. */
#define CLI_ENDPOINT_ENV "GPUWARDEN_ENDPOINT"
#define CLI_EVENTS_ENDPOINT_ENV "GPUWARDEN_EVENTS_ENDPOINT"
/* CURVE key files for tcp:// endpoints, when the options do not name them. */
#define CLI_SERVER_KEY_ENV "GPUWARDEN_SERVER_KEY"
#define CLI_PUBLIC_KEY_ENV "GPUWARDEN_PUBLIC_KEY"
#define CLI_SECRET_KEY_ENV "GPUWARDEN_SECRET_KEY"

/* The options text every daemon command's --help ends with. */
#define CLI_REMOTE_HELP                                                                     \
    "  --endpoint EP      the daemon's endpoint (ipc://PATH or tcp://HOST:PORT);\n"          \
    "                     default $" CLI_ENDPOINT_ENV ", else %s\n"                           \
    "  --timeout SEC      give up on the daemon after SEC seconds (default 5)\n"            \
    "  -f, --format F     table (default) or json\n"                                        \
    "  -h, --help         this text\n"                                                      \
    "\n"                                                                                    \
    "exit codes: 0 done, 1 failed, 2 usage, 4 daemon unreachable (or not ready),\n"         \
    "            5 refused by the daemon (forbidden, not_found, illegal_transition,\n"      \
    "            conflict, busy)\n"

#define CLI_MAX_COLUMNS 32

typedef struct cli_remote {
    const char *cmd;            /* "list", for messages */
    const char *endpoint;       /* --endpoint; NULL until parsed = the default */
    const char *default_endpoint;
    int timeout_ms;
    const char *key_files[3];   /* --server-key, --public-key, --secret-key; NULL = $GPUWARDEN_*_KEY */
    bool json;                  /* format == CLI_FORMAT_JSON */
    int format;                 /* cli_format (format.h): -f, --json */
    const char *columns[CLI_MAX_COLUMNS];   /* -c, in order */
    size_t n_columns;
} cli_remote;

/* admin: the command mutates, so its default endpoint is the admin one. */
void cli_remote_init(cli_remote *r, const char *cmd, bool admin);
/* Handle a common option from getopt (c, optarg): 1 handled, 0 not a common
 * option, -1 bad value (message printed: exit GW_EXIT_USAGE). 'h' is left
 * to the command (it prints its own help). */
int cli_remote_option(cli_remote *r, int c, const char *arg);
/* Parse argv for a command that takes only the common options: -1 to go on
 * (optind at the first operand), or the exit code to return now (0 after
 * --help, GW_EXIT_USAGE after a bad option; usage printed). */
int cli_remote_parse(cli_remote *r, int argc, char **argv, void (*usage)(FILE *));
/* The endpoint to use: --endpoint, else $GPUWARDEN_ENDPOINT, else the default. */
const char *cli_remote_endpoint(const cli_remote *r);
/* Check that an ipc:// endpoint has a listener we may connect to, so that a
 * daemon that is not running, or a socket we lack the rights for, is said at
 * once instead of after the timeout. 0, or an exit code (message printed). */
int cli_remote_probe(const cli_remote *r, const char *endpoint);
/* The client options of r: its endpoint, timeout and, for tcp://, the CURVE
 * keys (kept in `keys`, which must outlive opts). 0, or GW_EXIT_USAGE after a
 * bad key file (message printed). */
int cli_remote_client_options(const cli_remote *r, gw_client_options *opts, char keys[3][41]);
/* Create the client: 0 and *out, or an exit code (message printed). */
int cli_remote_connect(cli_remote *r, gw_client **out);
/* A call on c failed: print why and return the exit code. */
int cli_remote_fail(const cli_remote *r, gw_client *c);

/* "dddd:bb:dd.f" or "bb:dd.f", any case -> canonical lower case; false if
 * it is not a PCI address. */
bool cli_canonical_address(const char *in, char out[13]);
/* The one positional ADDR argument of argv[optind...]: 0 and canonical
 * `out`, or GW_EXIT_USAGE (message printed). */
int cli_address_arg(const char *cmd, int argc, char **argv, char out[13]);
/* "seconds" with an optional fraction, 0 < s <= 86400, as milliseconds. */
bool cli_parse_seconds(const char *s, int *ms);
/* A decimal unsigned integer. */
bool cli_parse_u64(const char *s, uint64_t *out);

#endif
