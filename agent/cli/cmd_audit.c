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
#include "output.h"
#include "remote.h"

static void audit_usage(FILE *f)
{
    fprintf(f,
        "usage: gpuwarden audit [--state-dir DIR] [--device ADDR] [--since-seq N] [--last N]\n"
        "                       [-f table|json]\n"
        "       gpuwarden audit --endpoint EP | --daemon [--device ADDR] [--since TIME]\n"
        "                       [--last N] [--timeout SEC] [-f table|json]\n"
        "\n"
        "Print the lifecycle audit log, oldest first: one record per transition of a GPU\n"
        "(sequence number, time, device, event, state before and after, who, why, and with\n"
        "which evidence). It reads DIR/audit.log itself, so it works whether or not the\n"
        "daemon runs; reading it needs the rights on DIR (root by default). With\n"
        "--endpoint or --daemon it asks gpuwardend instead (op `audit`: the newest --last\n"
        "records, at most 1000, default 100; the read endpoint is enough).\n"
        "\n"
        "  --state-dir DIR    the daemon's state directory (default " GW_DEFAULT_STATE_DIR ")\n"
        "  --device ADDR      only this GPU (dddd:bb:dd.f or bb:dd.f)\n"
        "  --since-seq N      only records after sequence number N (log file only)\n"
        "  --since TIME       only records at or after TIME: milliseconds since the epoch,\n"
        "                     or YYYY-mm-ddTHH:MM:SS in UTC (daemon only)\n"
        "  --last N           only the last N records (after the other filters)\n"
        "  --endpoint EP      ask the daemon at EP (ipc://PATH or tcp://HOST:PORT)\n"
        "  --daemon           ask the daemon at $" CLI_ENDPOINT_ENV ", else\n"
        "                     " GW_PROTO_READ_ENDPOINT "\n"
        "  --timeout SEC      give up on the daemon after SEC seconds (default 5)\n"
        "  -f, --format F     table (default) or json: from the log file an array of audit\n"
        "                     records as in docs/lifecycle.md (with evidence and the full\n"
        "                     identity); from the daemon its result, {\"records\": [{time,\n"
        "                     address, event, from, to, dirty, actor, reason, evidence}],\n"
        "                     \"truncated\"} (PROTOCOL.md section 8)\n"
        "\n"
        "exit codes: 0 printed (possibly nothing), 1 the log is missing, unreadable or\n"
        "            corrupt (the message names the file and line), or the daemon failed,\n"
        "            2 usage, 4 daemon unreachable, 5 refused by the daemon\n");
}

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
    if (r->json) {
        code = cli_print_json(res, false) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
    } else {
        print_daemon_table(json_object_get(res, "records"));
        if (json_is_true(json_object_get(res, "truncated")))
            fprintf(stderr, "gpuwarden audit: older records left out (--last, at most 1000)\n");
    }
    json_decref(res);
    return code == GW_EXIT_OK && fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
}

int cmd_audit(int argc, char **argv)
{
    enum { OPT_SINCE = CLI_OPT_FIRST_FREE, OPT_DAEMON };
    static const struct option longopts[] = {
        CLI_REMOTE_LONGOPTS,
        { "state-dir", required_argument, NULL, 's' },
        { "device", required_argument, NULL, 'd' },
        { "since-seq", required_argument, NULL, 'S' },
        { "since", required_argument, NULL, OPT_SINCE },
        { "last", required_argument, NULL, 'l' },
        { "daemon", no_argument, NULL, OPT_DAEMON },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = GW_DEFAULT_STATE_DIR;
    char address[GW_ADDR_LEN];
    gw_audit_filter filter = GW_AUDIT_FILTER_INIT;
    gw_client_audit_filter dfilter = GW_CLIENT_AUDIT_FILTER_INIT;
    cli_remote r;
    cli_remote_init(&r, "audit", false);
    bool daemon = false, file_only = false;
    uint64_t last = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
        int done = cli_remote_option(&r, c, optarg);
        if (done < 0)
            return GW_EXIT_USAGE;
        if (done) {
            daemon |= c == CLI_OPT_ENDPOINT;
            continue;
        }
        switch (c) {
        case 's':
            dir = optarg;
            file_only = true;
            break;
        case 'd':
            if (!cli_canonical_address(optarg, address)) {
                fprintf(stderr, "gpuwarden audit: '%s' is not a PCI address (dddd:bb:dd.f)\n",
                        optarg);
                return GW_EXIT_USAGE;
            }
            filter.address = address;
            dfilter.device = address;
            break;
        case 'S':
            if (!cli_parse_u64(optarg, &filter.since_seq)) {
                fprintf(stderr, "gpuwarden audit: --since-seq wants a number, not '%s'\n", optarg);
                return GW_EXIT_USAGE;
            }
            file_only = true;
            break;
        case OPT_SINCE:
            if (!parse_since(optarg, &dfilter.since)) {
                fprintf(stderr, "gpuwarden audit: --since wants milliseconds since the epoch or "
                                "YYYY-mm-ddTHH:MM:SS (UTC), not '%s'\n", optarg);
                return GW_EXIT_USAGE;
            }
            dfilter.has_since = true;
            break;
        case 'l':
            if (!cli_parse_u64(optarg, &last) || last == 0) {
                fprintf(stderr, "gpuwarden audit: --last wants a number >= 1, not '%s'\n", optarg);
                return GW_EXIT_USAGE;
            }
            filter.last = (size_t)last;
            break;
        case OPT_DAEMON:
            daemon = true;
            break;
        case 'h':
            audit_usage(stdout);
            return GW_EXIT_OK;
        default:
            audit_usage(stderr);
            return GW_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gpuwarden audit: unexpected argument '%s'\n", argv[optind]);
        audit_usage(stderr);
        return GW_EXIT_USAGE;
    }
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
    if (gw_audit_read(&log, dir, &filter) < 0) {
        fprintf(stderr, "gpuwarden audit: %s\n", gw_error_message());
        return GW_EXIT_FAILURE;
    }
    if (r.json) {
        char *out = NULL;
        if (gw_audit_to_json(log, &out) < 0) {
            fprintf(stderr, "gpuwarden audit: %s\n", gw_error_message());
            gw_audit_free(log);
            return GW_EXIT_FAILURE;
        }
        puts(out);
        free(out);
    } else {
        print_table(log);
    }
    gw_audit_free(log);
    return fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
}
