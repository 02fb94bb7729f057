/* gpuwarden events: the daemon's event stream (transitions and clean-ups). */
#include <errno.h>
#include <gpuwarden/client.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "output.h"
#include "remote.h"

static void events_usage(FILE *f)
{
    fprintf(f,
        "usage: gpuwarden events [--follow] [--count N] [-f table|json] [--endpoint EP]\n"
        "                        [--timeout SEC]\n"
        "\n"
        "Print gpuwardend's events as they happen: every lifecycle transition (event,\n"
        "states before and after, who, why), every finished clean-up (result, time,\n"
        "the failing step), and a GPU's domain stopping or running again (attachment:\n"
        "reserved while it does not run). The daemon keeps no history: only events\n"
        "published after this command subscribed are seen (`gpuwarden audit` has the\n"
        "past). Lost events (a gap in the sequence numbers) and a daemon restart are\n"
        "reported on stderr; resynchronise with `gpuwarden list` then.\n"
        "\n"
        "  --follow           wait for events until interrupted (SIGINT, SIGTERM: exit 0)\n"
        "  --count N          stop after N events\n"
        "  --endpoint EP      the events endpoint; default $" CLI_EVENTS_ENDPOINT_ENV ",\n"
        "                     else " GW_PROTO_EVENTS_ENDPOINT "\n"
        "  --timeout SEC      without --follow: stop when no event came for SEC seconds\n"
        "                     (default 5)\n"
        "  -f, --format F     table (default), or json: one event body per line (JSON\n"
        "                     Lines) as PROTOCOL.md section 9 describes it\n"
        "  -h, --help         this text\n"
        "\n"
        "exit codes: 0 done (interrupted, --count reached, or quiet for --timeout without\n"
        "            --count), 1 failed, or --count not reached within --timeout, 2 usage,\n"
        "            4 the events endpoint is not there\n");
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Without SA_RESTART, so that the wait in gw_events_next() ends with EINTR. */
static void catch_signals(void)
{
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void transition_text(const json_t *b, char *out, size_t n)
{
    char e[64], from[64], to[64], actor[300];
    const char *reason = json_string_value(json_object_get(b, "reason"));
    snprintf(from, sizeof from, "%s", cli_field(b, "from", e, sizeof e));
    snprintf(to, sizeof to, "%s%s", cli_field(b, "to", e, sizeof e),
             json_is_true(json_object_get(b, "dirty")) ? " (dirty)" : "");
    snprintf(actor, sizeof actor, "%s", cli_field(b, "actor", e, sizeof e));
    snprintf(out, n, "%s: %s -> %s by %s%s%s", cli_field(b, "event", e, sizeof e), from, to, actor,
             reason ? ": " : "", reason ? reason : "");
}

static void cleanup_text(const json_t *b, char *out, size_t n)
{
    char r[32], ms[32];
    const json_t *steps = json_object_get(b, "steps"), *s, *failed = NULL;
    size_t i;
    json_array_foreach(steps, i, s) {
        if (!failed && !strcmp(cli_field(s, "verdict", r, sizeof r), "fail"))
            failed = s;
    }
    int w = snprintf(out, n, "%s in %s ms (%zu steps)", cli_field(b, "result", r, sizeof r),
                     cli_field(b, "duration_ms", ms, sizeof ms), json_array_size(steps));
    if (failed && w > 0 && (size_t)w < n)
        snprintf(out + w, n - (size_t)w, ": %s: %s", json_string_value(json_object_get(failed, "name")),
                 json_string_value(json_object_get(failed, "evidence")));
}

static void attachment_text(const json_t *b, char *out, size_t n)
{
    const char *domain = json_string_value(json_object_get(b, "domain"));
    if (json_is_true(json_object_get(b, "stopped")))
        snprintf(out, n, "domain '%s' does not run: reserved until it runs again or is undefined",
                 domain ? domain : "?");
    else if (domain)
        snprintf(out, n, "domain '%s' runs", domain);
    else
        snprintf(out, n, "no domain references it");
}

static int print_event(const gw_event_msg *m, bool json)
{
    if (json)
        return cli_print_json(m->body, true);
    char when[32], what[2048];
    json_t *t = json_integer((json_int_t)m->time);
    cli_time(t, true, when, sizeof when);
    json_decref(t);
    if (!strcmp(m->kind, "transition"))
        transition_text(m->body, what, sizeof what);
    else if (!strcmp(m->kind, "cleanup"))
        cleanup_text(m->body, what, sizeof what);
    else if (!strcmp(m->kind, "attachment"))
        attachment_text(m->body, what, sizeof what);
    else
        snprintf(what, sizeof what, "(an event kind newer than this gpuwarden)");
    for (char *p = what; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    printf("%-6" PRIu64 "  %-23s  %-10s  %-12s  %s\n", m->seq, when, m->kind, m->address ? m->address : "-", what);
    return 0;
}

int cmd_events(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_REMOTE_LONGOPTS,
        { "follow", no_argument, NULL, 'F' },
        { "count", required_argument, NULL, 'n' },
        { NULL, 0, NULL, 0 },
    };
    cli_remote r;
    cli_remote_init(&r, "events", false);
    r.default_endpoint = GW_PROTO_EVENTS_ENDPOINT;
    bool follow = false;
    uint64_t count = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:h", longopts, NULL)) != -1) {
        int done = cli_remote_option(&r, c, optarg);
        if (done < 0)
            return GW_EXIT_USAGE;
        if (done)
            continue;
        if (c == 'F') {
            follow = true;
        } else if (c == 'n') {
            if (!cli_parse_u64(optarg, &count) || count == 0) {
                fprintf(stderr, "gpuwarden events: --count wants a number >= 1, not '%s'\n", optarg);
                return GW_EXIT_USAGE;
            }
        } else if (c == 'h') {
            events_usage(stdout);
            return GW_EXIT_OK;
        } else {
            events_usage(stderr);
            return GW_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gpuwarden events: unexpected argument '%s'\n", argv[optind]);
        return GW_EXIT_USAGE;
    }

    gw_events_options opts = GW_EVENTS_OPTIONS_INIT;
    const char *env = getenv(CLI_EVENTS_ENDPOINT_ENV);
    opts.endpoint = r.endpoint ? r.endpoint : env && *env ? env : r.default_endpoint;
    int code = cli_remote_probe(&r, opts.endpoint);
    if (code != GW_EXIT_OK)
        return code;
    gw_events *ev = NULL;
    if (gw_events_new(&ev, &opts) < 0) {
        fprintf(stderr, "gpuwarden events: %s\n", gw_error_message());
        return GW_EXIT_USAGE;
    }
    catch_signals();
    if (!r.json) {
        printf("%-6s  %-23s  %-10s  %-12s  %s\n", "SEQ", "TIME (UTC)", "KIND", "ADDRESS", "WHAT");
        fflush(stdout);
    }
    uint64_t seen = 0;
    code = GW_EXIT_OK;
    while (!stop_requested && (count == 0 || seen < count)) {
        gw_event_msg *m = NULL;
        int e = gw_events_next(ev, follow ? -1 : r.timeout_ms, &m);
        if (e == -EINTR)
            continue;
        if (e == -ETIMEDOUT) {
            if (count) {
                fprintf(stderr, "gpuwarden events: %" PRIu64 " of %" PRIu64 " events within %d ms\n", seen, count,
                        r.timeout_ms);
                code = GW_EXIT_FAILURE;
            }
            break;
        }
        if (e == -EPROTO) {
            fprintf(stderr, "gpuwarden events: skipped: %s\n", gw_error_message());
            continue;
        }
        if (e < 0) {
            fprintf(stderr, "gpuwarden events: %s\n", gw_error_message());
            code = GW_EXIT_FAILURE;
            break;
        }
        if (m->restarted)
            fprintf(stderr, "gpuwarden events: the daemon restarted (boot %" PRIu64 "); resynchronise with "
                            "`gpuwarden list`\n", m->boot);
        if (m->missed)
            fprintf(stderr, "gpuwarden events: %" PRIu64 " event(s) missed before seq %" PRIu64 "\n", m->missed,
                    m->seq);
        int w = print_event(m, r.json);
        gw_event_msg_free(m);
        if (w < 0 || fflush(stdout) != 0) {
            code = GW_EXIT_FAILURE;
            break;
        }
        seen++;
    }
    gw_events_free(ev);
    return code;
}
