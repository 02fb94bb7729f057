/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden audit: the lifecycle audit log, read straight from the state
 * directory (the daemon need not run), or asked of the daemon (op `audit`,
 * which serves the same records through gw_audit_read()). */
#include <errno.h>
#include <getopt.h>
#include <gpuwarden/audit.h>
#include <gpuwarden/client.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "format.h"
#include "options.h"
#include "output.h"
#include "remote.h"

enum { OPT_STATE_DIR = 1, OPT_DEVICE, OPT_SINCE_SEQ, OPT_SINCE, OPT_LAST, OPT_DAEMON };

static const cli_opt audit_options[] = {
    { "state-dir", 0, "DIR", OPT_STATE_DIR, "the daemon's state directory (default " GW_DEFAULT_STATE_DIR ")", "@dir",
      0 },
    { "device", 0, "ADDR", OPT_DEVICE, "only this GPU (dddd:bb:dd.f or bb:dd.f)", "@addr", 0 },
    { "since-seq", 0, "N", OPT_SINCE_SEQ, "only records after sequence number N (log file only)", NULL, 0 },
    { "since", 0, "TIME", OPT_SINCE,
      "only records at or after TIME: milliseconds since the epoch,\nor YYYY-mm-ddTHH:MM:SS in UTC (daemon only)",
      NULL, 0 },
    { "last", 0, "N", OPT_LAST, "only the last N records (after the other filters)", NULL, 0 },
    { "daemon", 0, NULL, OPT_DAEMON, "ask the daemon at $" CLI_ENDPOINT_ENV ", else\n" GW_PROTO_READ_ENDPOINT, NULL, 0 },
    { 0 },
};

const cli_spec cmd_audit_spec = {
    .name = "audit",
    .synopsis = "[--state-dir DIR] [--device ADDR] [--since-seq N] [--last N] [-f FORMAT]\n"
                "--endpoint EP | --daemon [--device ADDR] [--since TIME] [--last N] [--timeout SEC] [-f FORMAT]",
    .description =
        "Print the lifecycle audit log, oldest first: one record per transition of a GPU\n"
        "(sequence number, time, device, event, state before and after, who, why, and with\n"
        "which evidence). It reads DIR/audit.log itself, so it works whether or not the\n"
        "daemon runs; reading it needs the rights on DIR (root by default). With\n"
        "--endpoint or --daemon it asks gpuwardend instead (op `audit`: the newest --last\n"
        "records, at most 1000, default 100; the read endpoint is enough).",
    .globals = CLI_G_REMOTE,
    .formats = "table json value yaml",
    .format_help = "table (default), json, value or yaml: from the log file an\n"
                   "array of audit records as in docs/lifecycle.md (with evidence\n"
                   "and the full identity); from the daemon its result,\n"
                   "{\"records\": [{time, address, event, from, to, dirty, actor,\n"
                   "reason, evidence}], \"truncated\"} (PROTOCOL.md section 8);\n"
                   "value: one line per record",
    .endpoint_help = "ask the daemon at EP (ipc://PATH or tcp://HOST:PORT)",
    .options = audit_options,
    .exit_codes =
        "exit codes: 0 printed (possibly nothing), 1 the log is missing, unreadable or\n"
        "            corrupt (the message names the file and line), or the daemon failed,\n"
        "            2 usage, 4 daemon unreachable, 5 refused by the daemon",
};

static void print_table(const gw_audit *log)
{
    printf("%-6s %-20s %-12s %-15s %-26s %-26s %-20s %s\n", "SEQ", "TIME (UTC)", "DEVICE", "EVENT",
           "FROM", "TO", "ACTOR", "REASON");
    for (size_t i = 0; i < gw_audit_count(log); i++) {
        const gw_transition *t = gw_audit_get(log, i);
        char when[32], from[64], to[64];
        time_t sec = (time_t)(t->time_ms / 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        if (t->from == GW_STATE_NONE)
            snprintf(from, sizeof from, "-");
        else
            gw_condition_format(t->from, t->from_flags, from, sizeof from);
        gw_condition_format(t->to, t->to_flags, to, sizeof to);
        printf("%-6" PRIu64 " %-20s %-12s %-15s %-26s %-26s %-20s %s\n", t->seq, when,
               t->device.address, gw_event_name(t->event), from, to, t->actor,
               t->reason[0] ? t->reason : "-");
    }
}

/* --since: milliseconds since the epoch, or an ISO 8601 UTC time. */
static bool parse_since(const char *s, uint64_t *ms)
{
    if (cli_parse_u64(s, ms))
        return true;
    struct tm tm = { 0 };
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!end || (*end && strcmp(end, "Z")))
        return false;
    time_t t = timegm(&tm);
    if (t < 0)
        return false;
    *ms = (uint64_t)t * 1000;
    return true;
}

static void print_daemon_table(const json_t *records)
{
    cli_table t;
    cli_table_init(&t, 7, "TIME (UTC)", "DEVICE", "EVENT", "FROM", "TO", "ACTOR", "REASON");
    cli_table_limit(&t, 6, CLI_REASON_WIDTH);
    size_t i;
    const json_t *rec;
    json_array_foreach(records, i, rec) {
        char when[32], b[4][32], to[64];
        snprintf(to, sizeof to, "%s%s", cli_field(rec, "to", b[0], 32),
                 json_is_true(json_object_get(rec, "dirty")) ? "+dirty" : "");
        cli_table_row(&t, cli_time(json_object_get(rec, "time"), false, when, sizeof when),
                      cli_field(rec, "address", b[1], 32), cli_field(rec, "event", b[2], 32),
                      cli_field(rec, "from", b[3], 32), to, json_string_value(json_object_get(rec, "actor")),
                      json_string_value(json_object_get(rec, "reason")));
    }
    if (cli_table_print(&t, stdout) < 0)
        fprintf(stderr, "gpuwarden audit: out of memory\n");
    cli_table_done(&t);
}

static int audit_daemon(cli_remote *r, const gw_client_audit_filter *filter)
{
    gw_client *client = NULL;
    int code = cli_remote_connect(r, &client);
    if (code != GW_EXIT_OK)
        return code;
    json_t *res = NULL;
    if (gw_client_audit(client, filter, &res) < 0) {
        code = cli_remote_fail(r, client);
        gw_client_free(client);
        return code;
    }
    gw_client_free(client);
    if (cli_own_table(r)) {
        print_daemon_table(json_object_get(res, "records"));
        if (json_is_true(json_object_get(res, "truncated")))
            fprintf(stderr, "gpuwarden audit: older records left out (--last, at most 1000)\n");
        code = fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
    } else {
        code = cli_emit(r, res, json_object_get(res, "records"));
    }
    json_decref(res);
    return code;
}

typedef struct audit_args {
    const char *dir;
    char address[GW_ADDR_LEN];
    gw_audit_filter filter;
    gw_client_audit_filter dfilter;
    bool daemon, file_only;
    uint64_t last;
} audit_args;

static int audit_option(void *ctx, int id, const char *arg)
{
    audit_args *a = ctx;
    switch (id) {
    case OPT_STATE_DIR:
        a->dir = arg;
        a->file_only = true;
        return GW_EXIT_OK;
    case OPT_DEVICE:
        if (!cli_canonical_address(arg, a->address)) {
            fprintf(stderr, "gpuwarden audit: '%s' is not a PCI address (dddd:bb:dd.f)\n", arg);
            return GW_EXIT_USAGE;
        }
        a->filter.address = a->address;
        a->dfilter.device = a->address;
        return GW_EXIT_OK;
    case OPT_SINCE_SEQ:
        if (!cli_parse_u64(arg, &a->filter.since_seq)) {
            fprintf(stderr, "gpuwarden audit: --since-seq wants a number, not '%s'\n", arg);
            return GW_EXIT_USAGE;
        }
        a->file_only = true;
        return GW_EXIT_OK;
    case OPT_SINCE:
        if (!parse_since(arg, &a->dfilter.since)) {
            fprintf(stderr, "gpuwarden audit: --since wants milliseconds since the epoch or "
                            "YYYY-mm-ddTHH:MM:SS (UTC), not '%s'\n", arg);
            return GW_EXIT_USAGE;
        }
        a->dfilter.has_since = true;
        return GW_EXIT_OK;
    case OPT_LAST:
        if (!cli_parse_u64(arg, &a->last) || a->last == 0) {
            fprintf(stderr, "gpuwarden audit: --last wants a number >= 1, not '%s'\n", arg);
            return GW_EXIT_USAGE;
        }
        a->filter.last = (size_t)a->last;
        return GW_EXIT_OK;
    case OPT_DAEMON:
        a->daemon = true;
        return GW_EXIT_OK;
    default:
        return GW_EXIT_USAGE;
    }
}

int cmd_audit(int argc, char **argv)
{
    audit_args a = { .dir = GW_DEFAULT_STATE_DIR, .filter = GW_AUDIT_FILTER_INIT,
                     .dfilter = GW_CLIENT_AUDIT_FILTER_INIT };
    cli_remote r;
    int code = cli_parse(&cmd_audit_spec, argc, argv, &r, audit_option, &a);
    if (code >= 0)
        return code;
    if (optind < argc) {
        fprintf(stderr, "gpuwarden audit: unexpected argument '%s'\n", argv[optind]);
        cli_usage(&cmd_audit_spec, stderr);
        return GW_EXIT_USAGE;
    }
    bool daemon = a.daemon || r.endpoint, file_only = a.file_only;
    gw_client_audit_filter dfilter = a.dfilter;
    uint64_t last = a.last;
    if (daemon && file_only) {
        fprintf(stderr, "gpuwarden audit: --state-dir and --since-seq read the log file; they do not go "
                        "with --endpoint or --daemon\n");
        return GW_EXIT_USAGE;
    }
    if (!daemon && dfilter.has_since) {
        fprintf(stderr, "gpuwarden audit: --since asks the daemon (add --daemon or --endpoint); the log "
                        "file takes --since-seq\n");
        return GW_EXIT_USAGE;
    }
    if (daemon) {
        if (last > 1000) {
            fprintf(stderr, "gpuwarden audit: --last: the daemon serves at most 1000 records\n");
            return GW_EXIT_USAGE;
        }
        dfilter.limit = (unsigned)last;
        return audit_daemon(&r, &dfilter);
    }

    gw_audit *log = NULL;
    if (gw_audit_read(&log, a.dir, &a.filter) < 0) {
        fprintf(stderr, "gpuwarden audit: %s\n", gw_error_message());
        return GW_EXIT_FAILURE;
    }
    char *out = NULL;
    if (cli_own_table(&r)) {
        print_table(log);
        code = fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
    } else if (gw_audit_to_json(log, &out) < 0) {
        fprintf(stderr, "gpuwarden audit: %s\n", gw_error_message());
        code = GW_EXIT_FAILURE;
    } else if (r.format == CLI_FORMAT_JSON && !r.n_columns) {
        /* The library's JSON as it is: its key order and number forms. */
        code = puts(out) >= 0 && fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
    } else {
        json_error_t err;
        json_t *records = json_loads(out, 0, &err);
        code = records ? cli_emit(&r, records, NULL) : GW_EXIT_FAILURE;
        json_decref(records);
    }
    free(out);
    gw_audit_free(log);
    return code;
}
