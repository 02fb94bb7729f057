/* gpuwarden audit: the lifecycle audit log, read straight from the state
 * directory (the daemon need not run; its `audit` request serves the same
 * records through gw_audit_read()). */
#include <ctype.h>
#include <getopt.h>
#include <gpuwarden/audit.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"

static void audit_usage(FILE *f)
{
    fprintf(f,
        "usage: gpuwarden audit [--state-dir DIR] [--device ADDR] [--since-seq N] [--last N]\n"
        "                       [-f table|json]\n"
        "\n"
        "Print the lifecycle audit log, oldest first: one record per transition of a GPU\n"
        "(sequence number, time, device, event, state before and after, who, why, and with\n"
        "which evidence). It reads DIR/audit.log itself, so it works whether or not the\n"
        "daemon runs; reading it needs the rights on DIR (root by default).\n"
        "\n"
        "  --state-dir DIR    the daemon's state directory (default " GW_DEFAULT_STATE_DIR ")\n"
        "  --device ADDR      only this GPU (dddd:bb:dd.f or bb:dd.f)\n"
        "  --since-seq N      only records after sequence number N\n"
        "  --last N           only the last N records (after the other filters)\n"
        "  -f, --format F     table (default) or json: an array of audit records as in\n"
        "                     docs/lifecycle.md (with evidence and the full identity)\n"
        "\n"
        "exit codes: 0 printed (possibly nothing), 1 the log is missing, unreadable or\n"
        "            corrupt (the message names the file and line), 2 usage\n");
}

/* "dddd:bb:dd.f" or "bb:dd.f", any case -> canonical; false if malformed. */
static bool canonical_address(const char *in, char out[GW_ADDR_LEN])
{
    static const char shape[] = "xxxx:xx:xx.x";
    char buf[GW_ADDR_LEN];
    size_t len = strlen(in);
    if (len == 7)
        snprintf(buf, sizeof buf, "0000:%s", in);
    else if (len == 12)
        memcpy(buf, in, sizeof buf);
    else
        return false;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'x' ? !isxdigit((unsigned char)buf[i]) : buf[i] != shape[i])
            return false;
        buf[i] = (char)tolower((unsigned char)buf[i]);
    }
    if (strtoul(buf + 8, NULL, 16) > 0x1f || buf[11] > '7')
        return false;
    memcpy(out, buf, sizeof buf);
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
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

int cmd_audit(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "state-dir", required_argument, NULL, 's' },
        { "device", required_argument, NULL, 'd' },
        { "since-seq", required_argument, NULL, 'S' },
        { "last", required_argument, NULL, 'l' },
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = GW_DEFAULT_STATE_DIR, *format = "table";
    char address[GW_ADDR_LEN];
    gw_audit_filter filter = GW_AUDIT_FILTER_INIT;
    uint64_t last = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            dir = optarg;
            break;
        case 'd':
            if (!canonical_address(optarg, address)) {
                fprintf(stderr, "gpuwarden audit: '%s' is not a PCI address (dddd:bb:dd.f)\n",
                        optarg);
                return GW_EXIT_USAGE;
            }
            filter.address = address;
            break;
        case 'S':
            if (!parse_u64(optarg, &filter.since_seq)) {
                fprintf(stderr, "gpuwarden audit: --since-seq wants a number, not '%s'\n", optarg);
                return GW_EXIT_USAGE;
            }
            break;
        case 'l':
            if (!parse_u64(optarg, &last) || last == 0) {
                fprintf(stderr, "gpuwarden audit: --last wants a number >= 1, not '%s'\n", optarg);
                return GW_EXIT_USAGE;
            }
            filter.last = (size_t)last;
            break;
        case 'f':
            format = optarg;
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
    bool json = !strcmp(format, "json");
    if (!json && strcmp(format, "table")) {
        fprintf(stderr, "gpuwarden audit: unknown format '%s' (table or json)\n", format);
        return GW_EXIT_USAGE;
    }

    gw_audit *log = NULL;
    if (gw_audit_read(&log, dir, &filter) < 0) {
        fprintf(stderr, "gpuwarden audit: %s\n", gw_error_message());
        return GW_EXIT_FAILURE;
    }
    if (json) {
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
