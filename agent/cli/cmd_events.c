/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden events: the daemon's event stream (transitions and clean-ups). */
#include <errno.h>
#include <gpuwarden/client.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "format.h"
#include "options.h"
#include "output.h"
#include "remote.h"

enum { OPT_FOLLOW = 1, OPT_COUNT };

static const cli_opt events_options[] = {
    { "follow", 0, NULL, OPT_FOLLOW, "wait for events until interrupted (SIGINT, SIGTERM: exit 0)", NULL, 0 },
    { "count", 0, "N", OPT_COUNT, "stop after N events", NULL, 0 },
    { 0 },
};

const cli_spec cmd_events_spec = {
    .name = "events",
    .description =
        "Print gpuwardend's events as they happen: every lifecycle transition (event,\n"
        "states before and after, who, why), every finished clean-up (result, time,\n"
        "the failing step), and a GPU's domain stopping or running again (attachment:\n"
        "reserved while it does not run). The daemon keeps no history: only events\n"
        "published after this command subscribed are seen (`gpuwarden audit` has the\n"
        "past). Lost events (a gap in the sequence numbers) and a daemon restart are\n"
        "reported on stderr; resynchronise with `gpuwarden list` then.",
    .globals = CLI_G_ENDPOINT | CLI_G_TIMEOUT | CLI_G_FORMAT,
    .formats = "table json value yaml",
    .format_help = "table (default); json: one event body per line (JSON Lines)\n"
                   "as PROTOCOL.md section 9 describes it; yaml: one document\n"
                   "per event; value: one line per event",
    .endpoint_help = "the events endpoint; default $" CLI_EVENTS_ENDPOINT_ENV ",\nelse " GW_PROTO_EVENTS_ENDPOINT,
    .timeout_help = "without --follow: stop when no event came for SEC seconds\n(default 5)",
    .options = events_options,
    .exit_codes =
        "exit codes: 0 done (interrupted, --count reached, or quiet for --timeout without\n"
        "            --count), 1 failed, or --count not reached within --timeout, 2 usage,\n"
        "            4 the events endpoint is not there",
};

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

static int print_event(const gw_event_msg *m, int format)
{
    if (format == CLI_FORMAT_JSON)
        return cli_print_json(m->body, true);
    if (format == CLI_FORMAT_YAML)
        return cli_print_yaml(m->body, true, stdout);
    if (format == CLI_FORMAT_VALUE) {
        json_t *row = json_pack("[O]", m->body);
        int rc = row ? cli_print_value(row, stdout) : -ENOMEM;
        json_decref(row);
        return rc;
    }
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

typedef struct events_args {
    bool follow;
    uint64_t count;
} events_args;

static int events_option(void *ctx, int id, const char *arg)
{
    events_args *a = ctx;
    if (id == OPT_FOLLOW) {
        a->follow = true;
        return GW_EXIT_OK;
    }
    if (id == OPT_COUNT && cli_parse_u64(arg, &a->count) && a->count > 0)
        return GW_EXIT_OK;
    fprintf(stderr, "gpuwarden events: --count wants a number >= 1, not '%s'\n", arg);
    return GW_EXIT_USAGE;
}

int cmd_events(int argc, char **argv)
{
    cli_remote r;
    events_args a = { 0 };
    int code = cli_parse(&cmd_events_spec, argc, argv, &r, events_option, &a);
    if (code >= 0)
        return code;
    if ((code = cli_no_operands(&cmd_events_spec, argc, argv)) != GW_EXIT_OK)
        return code;
    r.default_endpoint = GW_PROTO_EVENTS_ENDPOINT;
    bool follow = a.follow;
    uint64_t count = a.count;

    gw_events_options opts = GW_EVENTS_OPTIONS_INIT;
    const char *env = getenv(CLI_EVENTS_ENDPOINT_ENV);
    opts.endpoint = r.endpoint ? r.endpoint : env && *env ? env : r.default_endpoint;
    code = cli_remote_probe(&r, opts.endpoint);
    if (code != GW_EXIT_OK)
        return code;
    gw_events *ev = NULL;
    if (gw_events_new(&ev, &opts) < 0) {
        fprintf(stderr, "gpuwarden events: %s\n", gw_error_message());
        return GW_EXIT_USAGE;
    }
    catch_signals();
    if (r.format == CLI_FORMAT_TABLE) {
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
        int w = print_event(m, r.format);
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
