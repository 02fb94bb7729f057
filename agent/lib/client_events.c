/* SPDX-License-Identifier: Apache-2.0 */
/* The event subscriber: a SUB socket on everything, with seq gap and daemon
 * restart detection (PROTOCOL.md §9). */
#include <inttypes.h>
#include <string.h>
#include <zmq.h>

#include "client_internal.h"
#include "proto_codec.h"
#include "util.h"

struct gw_events {
    void *ctx, *sock;
    bool have_last;
    uint64_t last_seq, last_boot;
    uint64_t missed;
};

/* The public event and the storage its strings point to. */
typedef struct event_box {
    gw_event_msg pub;
    char *topic, *kind, *address;
} event_box;

GW_EXTERN int gw_events_new(gw_events **out, const gw_events_options *opts)
{
    static const gw_events_options defaults = GW_EVENTS_OPTIONS_INIT;
    if (!out)
        return gw_error_set(-EINVAL, "gw_events_new: out is NULL");
    *out = NULL;
    if (!opts)
        opts = &defaults;
    if (opts->version != GW_EVENTS_OPTIONS_VERSION)
        return gw_error_set(-EINVAL, "gw_events_options: version %u, this library knows %d", opts->version,
                            GW_EVENTS_OPTIONS_VERSION);
    const char *endpoint = opts->endpoint ? opts->endpoint : GW_PROTO_EVENTS_ENDPOINT;
    gw_zmq_keys keys;
    int r = gw_zmq_check(endpoint, opts->curve_server_key, opts->curve_public_key, opts->curve_secret_key, &keys);
    if (r < 0)
        return r;
    gw_events *ev = gw_xcalloc(1, sizeof *ev);
    ev->ctx = zmq_ctx_new();
    if (!ev->ctx) {
        r = gw_error_set(-errno, "zmq_ctx_new: %s", zmq_strerror(errno));
        free(ev);
        return r;
    }
    r = gw_zmq_open(ev->ctx, ZMQ_SUB, endpoint, &keys, GW_PROTO_MAX_EVENT, &ev->sock);
    if (r == 0 && zmq_setsockopt(ev->sock, ZMQ_SUBSCRIBE, "", 0) != 0)
        r = gw_error_set(-errno, "%s: subscribing: %s", endpoint, zmq_strerror(errno));
    if (r < 0) {
        gw_events_free(ev);
        return r;
    }
    *out = ev;
    return 0;
}

GW_EXTERN void gw_events_free(gw_events *ev)
{
    if (!ev)
        return;
    if (ev->sock)
        zmq_close(ev->sock);
    if (ev->ctx)
        zmq_ctx_term(ev->ctx);
    free(ev);
}

GW_EXTERN uint64_t gw_events_missed(const gw_events *ev)
{
    return ev->missed;
}

GW_EXTERN void gw_event_msg_free(gw_event_msg *event)
{
    if (!event)
        return;
    event_box *b = (event_box *)event;
    json_decref(b->pub.body);
    free(b->topic);
    free(b->kind);
    free(b->address);
    free(b);
}

/* Receive one multipart message: its first two frames, and how many came. */
static int recv_frames(gw_events *ev, zmq_msg_t *topic, zmq_msg_t *body, size_t *frames)
{
    *frames = 0;
    for (bool more = true; more; (*frames)++) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, ev->sock, ZMQ_DONTWAIT) < 0) {
            int e = errno;
            zmq_msg_close(&part);
            return gw_error_set(-e, "events: receiving: %s", zmq_strerror(e));
        }
        more = zmq_msg_more(&part);
        if (*frames == 0)
            zmq_msg_move(topic, &part);
        else if (*frames == 1)
            zmq_msg_move(body, &part);
        zmq_msg_close(&part);
    }
    return 0;
}

/* Seq bookkeeping: fill missed/restarted, or refuse a seq that went back. */
static int track(gw_events *ev, gw_event_msg *e)
{
    e->missed = 0;
    e->restarted = false;
    if (ev->have_last && e->boot == ev->last_boot) {
        if (e->seq <= ev->last_seq)
            return gw_error_set(-EPROTO, "events: seq %" PRIu64 " after %" PRIu64 " in the same daemon run",
                                e->seq, ev->last_seq);
        e->missed = e->seq - ev->last_seq - 1;
    } else if (ev->have_last) {
        e->restarted = true;
        e->missed = e->seq > 0 ? e->seq - 1 : 0;
    }
    ev->have_last = true;
    ev->last_seq = e->seq;
    ev->last_boot = e->boot;
    ev->missed += e->missed;
    return 0;
}

static int decode(gw_events *ev, const zmq_msg_t *topic, const zmq_msg_t *body, gw_event_msg **out)
{
    gw_proto_event pe;
    gw_proto_error perr;
    if (gw_proto_event_decode(&pe, zmq_msg_data((zmq_msg_t *)body), zmq_msg_size((zmq_msg_t *)body), &perr) < 0) {
        gw_proto_event_done(&pe);
        return gw_error_set(-EPROTO, "events: %s", perr.message);
    }
    _cleanup_free_ char *want = gw_proto_event_topic(pe.kind, pe.address);
    size_t tn = zmq_msg_size((zmq_msg_t *)topic);
    if (tn != strlen(want) || memcmp(zmq_msg_data((zmq_msg_t *)topic), want, tn)) {
        gw_proto_event_done(&pe);
        return gw_error_set(-EPROTO, "events: topic frame '%.*s' does not match the body's '%s'",
                            (int)(tn > 96 ? 96 : tn), (const char *)zmq_msg_data((zmq_msg_t *)topic), want);
    }
    json_t *j;
    if (gw_proto_to_json(pe.body, &j, &perr) < 0) {
        gw_proto_event_done(&pe);
        return gw_error_set(-EPROTO, "events: %s", perr.message);
    }
    event_box *b = gw_xcalloc(1, sizeof *b);
    b->topic = GW_TAKE(want);
    b->kind = gw_xstrdup(pe.kind);
    b->address = gw_xstrdup(pe.address);
    b->pub = (gw_event_msg){ .topic = b->topic, .kind = b->kind, .address = b->address, .seq = pe.seq,
                         .boot = pe.boot, .time = pe.time, .body = j };
    gw_proto_event_done(&pe);
    int r = track(ev, &b->pub);
    if (r < 0) {
        gw_event_msg_free(&b->pub);
        return r;
    }
    *out = &b->pub;
    return 0;
}

GW_EXTERN int gw_events_next(gw_events *ev, int timeout_ms, gw_event_msg **out)
{
    if (!ev || !out)
        return gw_error_set(-EINVAL, "gw_events_next: %s is NULL", ev ? "out" : "events");
    *out = NULL;
    int64_t deadline = timeout_ms < 0 ? -1 : gw_monotonic_ms() + timeout_ms;
    zmq_pollitem_t it = { ev->sock, 0, ZMQ_POLLIN, 0 };
    for (;;) {
        long left = deadline < 0 ? -1 : (long)(deadline - gw_monotonic_ms());
        if (deadline >= 0 && left < 0)
            left = 0;
        int r = zmq_poll(&it, 1, left);
        if (r < 0)
            return errno == EINTR ? gw_error_set(-EINTR, "events: interrupted")
                                  : gw_error_set(-errno, "events: zmq_poll: %s", zmq_strerror(errno));
        if (r > 0)
            break;
        if (deadline >= 0 && gw_monotonic_ms() >= deadline)
            return gw_error_set(-ETIMEDOUT, "events: none within %d ms", timeout_ms);
    }
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    size_t frames;
    int r = recv_frames(ev, &topic, &body, &frames);
    if (r == 0 && frames != 2)
        r = gw_error_set(-EPROTO, "events: expected [topic][body], got %zu frame(s)", frames);
    if (r == 0)
        r = decode(ev, &topic, &body, out);
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    return r;
}
