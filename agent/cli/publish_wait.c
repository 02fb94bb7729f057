/* SPDX-License-Identifier: Apache-2.0 */
/* Waiting until Placement shows an inventory revision (publish_wait.h). */
#include "publish_wait.h"

#include <errno.h>
#include <gpuwarden/client.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static uint64_t uint_of(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

cli_publish_outcome cli_wait_published(cli_publish_wait *w)
{
    int64_t deadline = monotonic_ms() + w->wait_ms;
    w->published = 0;
    w->error[0] = '\0';
    gw_client_options co = GW_CLIENT_OPTIONS_INIT;
    co.endpoint = w->endpoint;
    co.timeout_ms = (int)(w->wait_ms < w->timeout_ms ? w->wait_ms : w->timeout_ms);
    co.actor = w->actor;
    gw_client *c;
    if (gw_client_new(&c, &co) < 0) {
        snprintf(w->error, sizeof w->error, "%s", gw_error_message());
        return CLI_PUBLISH_ERROR;
    }
    int64_t uptime = -1;
    cli_publish_outcome out;
    for (bool first = true;; first = false) {
        json_t *res = NULL;
        if (gw_client_metrics(c, &res) < 0) {
            snprintf(w->error, sizeof w->error, "%s", gw_error_message());
            out = CLI_PUBLISH_ERROR;
            break;
        }
        const json_t *pub = json_object_get(res, "published");
        const json_t *rev = json_object_get(res, "published_revision");
        const json_t *up = json_object_get(res, "uptime_ms");
        /* A writer is active once anything was confirmed in this daemon run;
         * a daemon without the fields has none to wait for. */
        bool writer = uint_of(pub) > 0 && json_is_integer(rev);
        w->published = writer ? uint_of(rev) : 0;
        /* A restart numbers revisions afresh: ours means nothing to the new run. */
        bool restarted = json_is_integer(up) && uptime >= 0 && json_integer_value(up) < uptime;
        uptime = json_is_integer(up) ? json_integer_value(up) : -1;
        if (first && !w->revision)
            w->revision = uint_of(json_object_get(res, "revision"));
        json_decref(res);
        if (first && (!writer || !w->revision)) {
            out = CLI_PUBLISH_NO_WRITER;    /* no Placement writer on this host (yet), or an older daemon */
            break;
        }
        if (restarted || !writer) {
            out = CLI_PUBLISH_RESTARTED;
            break;
        }
        if (w->published >= w->revision) {
            out = CLI_PUBLISH_REACHED;
            break;
        }
        int64_t left = deadline - monotonic_ms();
        if (left <= 0) {
            out = CLI_PUBLISH_TIMEOUT;
            break;
        }
        sleep_ms(left < CLI_PUBLISH_POLL_MS ? left : CLI_PUBLISH_POLL_MS);
    }
    gw_client_free(c);
    return out;
}

int cli_parse_publish_wait(const char *s, unsigned int *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= 0 && v <= CLI_PUBLISH_WAIT_MAX_S))    /* NaN fails both */
        return -1;
    *ms = (unsigned int)(v * 1000 + 0.5);
    return 0;
}
