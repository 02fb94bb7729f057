/* SPDX-License-Identifier: Apache-2.0 */
/* The client's event path (agent/lib/client_events.c, proto_reply.c):
 * gw_events_next() subscribed to a fake daemon's PUB socket (an XPUB, to
 * know when the subscription is in) over a real ZeroMQ ipc socket. The frame
 * count check, the event decoder, the topic-against-body check, the JSON
 * form and the seq/boot bookkeeping are all static behind that call.
 *
 * Input: records of [flags][length, 2 bytes little-endian][body]:
 *   flags & 1: frame 0 is the body's own topic "<kind>/<address>" (else a
 *              topic that matches no body);
 *   flags & 2: an extra empty frame after the body;
 *   flags & 4: the topic frame alone.
 * Each record is published and received before the next, so a sequence
 * drives the seq gap and daemon restart logic.
 *
 * The subscriber lives as long as the process (a new one per input costs a
 * ZeroMQ context and a handshake): its seq state is reset before each input
 * by two events from two sentinel daemon runs, so that an input behaves the
 * same whatever ran before it. */
#include <gpuwarden/client.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "fuzz_common.h"
#include "proto_codec.h"
#include "util.h"

#define MAX_RECORDS 64

static void *zctx, *pub;
static gw_events *events;

static void publish(const char *topic, const void *body, size_t len, unsigned flags)
{
    if (flags & 4) {
        zmq_send(pub, topic, strlen(topic), 0);
        return;
    }
    zmq_send(pub, topic, strlen(topic), ZMQ_SNDMORE);
    zmq_send(pub, body, len, (flags & 2) ? ZMQ_SNDMORE : 0);
    if (flags & 2)
        zmq_send(pub, "", 0, 0);
}

/* Receive what was just published: anything but a timeout is an answer. */
static void receive(const char *want_topic, bool expect_ok)
{
    gw_event_msg *msg = NULL;
    int r;
    /* libFuzzer's -timeout watchdog is a SIGALRM, which interrupts the
     * wait (-EINTR) with the event still queued: wait again, or the next
     * receive would get this event. */
    while ((r = gw_events_next(events, 10000, &msg)) == -EINTR)
        ;
    if (r == -ETIMEDOUT)
        gw_fuzz_fail("no event within 10 s of publishing one");
    if (r == 0) {
        if (!msg || strcmp(msg->topic, want_topic) || !json_is_object(msg->body))
            gw_fuzz_fail("event accepted with topic '%s', published as '%s'", msg ? msg->topic : "", want_topic);
        (void)strlen(msg->kind), (void)strlen(msg->address);
        free(json_dumps(msg->body, JSON_COMPACT));
    } else if (msg) {
        gw_fuzz_fail("an event handed out with an error");
    } else if (expect_ok) {
        gw_fuzz_fail("a sentinel event was refused: %s", gw_error_message());
    }
    gw_event_msg_free(msg);
}

static void sentinel(uint64_t boot)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    gw_proto_pack_event_head(&pk, 1, boot, 1, "transition", "0000:00:00.0", 0);
    char *topic = gw_proto_event_topic("transition", "0000:00:00.0");
    publish(topic, sb.data, sb.size, 1);
    /* The first of the two may be refused (its seq went back, when the last
     * input ended in the same sentinel run); the second never is. */
    receive(topic, boot == UINT64_MAX);
    free(topic);
    msgpack_sbuffer_destroy(&sb);
}

static void setup(void)
{
    gw_fuzz_quiet();
    char path[512], endpoint[600];
    snprintf(endpoint, sizeof endpoint, "ipc://%s", gw_fuzz_path(path, sizeof path, "events.sock"));
    zctx = zmq_ctx_new();
    pub = zmq_socket(zctx, ZMQ_XPUB);
    int hwm = 0;    /* never drop: every record is waited for */
    zmq_setsockopt(pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (!pub || zmq_bind(pub, endpoint) != 0)
        gw_fuzz_fail("%s: %s", endpoint, zmq_strerror(errno));
    gw_events_options o = GW_EVENTS_OPTIONS_INIT;
    o.endpoint = endpoint;
    if (gw_events_new(&events, &o) < 0)
        gw_fuzz_fail("gw_events_new: %s", gw_error_message());
    /* PUB drops everything sent before the subscription arrives. */
    char sub[8];
    int timeout = 10000;
    zmq_setsockopt(pub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_recv(pub, sub, sizeof sub, 0) < 1 || sub[0] != 1)
        gw_fuzz_fail("the subscriber did not subscribe");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sentinel(UINT64_MAX - 1);
    sentinel(UINT64_MAX);
    for (int n = 0; n < MAX_RECORDS && size >= 3; n++) {
        unsigned flags = data[0];
        size_t len = (size_t)data[1] | (size_t)data[2] << 8;
        data += 3, size -= 3;
        if (len > size)
            len = size;
        const uint8_t *body = data;
        data += len, size -= len;

        char *topic = NULL;
        if (flags & 1) {
            gw_proto_event pe;
            gw_proto_error err;
            if (gw_proto_event_decode(&pe, body, len, &err) == 0)
                topic = gw_proto_event_topic(pe.kind, pe.address);
            gw_proto_event_done(&pe);
        }
        if (!topic)
            topic = gw_xstrdup("fuzz/no-such-topic");
        publish(topic, body, len, flags);
        receive(topic, false);
        free(topic);
    }
    return 0;
}
