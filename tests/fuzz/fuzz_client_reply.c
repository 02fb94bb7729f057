/* SPDX-License-Identifier: Apache-2.0 */
/* The client's reply path (agent/lib/client.c, proto_reply.c, proto_json.c):
 * gw_client_call() against a fake daemon that answers whatever the fuzzer
 * wrote, over a real ZeroMQ ipc socket. That is the only way in to what the
 * client does with a reply (the frame check, the decoder, the stray-id rule,
 * the JSON form, the per-op result shape check): all of it is static behind
 * the public call.
 *
 * Input: "<op>\n<reply body>". The op picks the result shape the client
 * checks (an unknown op has none); the body is sent as frame 1 of the reply.
 *
 * A reply whose id is not the request's is dropped by the client, which then
 * waits for another: so the fake daemon follows every answer with a
 * well-formed error reply carrying the request's id (the "terminator"). When
 * the client took the fuzzer's reply, the terminator stays queued and the
 * next call drops it as a stray, which is a path worth running anyway. */
#include <gpuwarden/client.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "fuzz_common.h"
#include "proto_codec.h"
#include "util.h"

static void *zctx, *router;
static gw_client *client;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *answer;
static size_t answer_len;

static void send_reply(const void *rid, size_t rid_len, const void *body, size_t len)
{
    zmq_send(router, rid, rid_len, ZMQ_SNDMORE);
    zmq_send(router, "", 0, ZMQ_SNDMORE);
    zmq_send(router, body, len, 0);
}

/* The fake daemon: [routing id][empty][request] in, two replies out. */
static void *daemon_main(void *arg)
{
    (void)arg;
    for (;;) {
        uint8_t rid[256];
        int rn = zmq_recv(router, rid, sizeof rid, 0);
        if (rn < 0)
            break;      /* ETERM at exit */
        size_t frames = 1;
        uint64_t id = 0;
        bool has_id = false;
        for (;;) {
            int more = 0;
            size_t ml = sizeof more;
            if (zmq_getsockopt(router, ZMQ_RCVMORE, &more, &ml) != 0 || !more)
                break;
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, router, 0) < 0) {
                zmq_msg_close(&part);
                return NULL;
            }
            if (++frames == 3) {
                /* The request's id, for the terminator. */
                gw_proto_request req;
                gw_proto_error err;
                gw_proto_request_decode(&req, zmq_msg_data(&part), zmq_msg_size(&part), GW_ENDPOINT_ADMIN, &err);
                has_id = req.has_id;
                id = req.id;
                gw_proto_request_done(&req);
            }
            zmq_msg_close(&part);
        }
        pthread_mutex_lock(&lock);
        send_reply(rid, (size_t)rn, answer, answer_len);
        pthread_mutex_unlock(&lock);

        gw_proto_error term = { .code = GW_PROTO_INTERNAL };
        snprintf(term.message, sizeof term.message, "the fuzz daemon's terminator");
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        gw_proto_pack_reply_error(&pk, has_id, id, &term);
        send_reply(rid, (size_t)rn, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
    }
    return NULL;
}

static void setup(void)
{
    gw_fuzz_quiet();
    char path[512], endpoint[600];
    snprintf(endpoint, sizeof endpoint, "ipc://%s", gw_fuzz_path(path, sizeof path, "admin.sock"));
    zctx = zmq_ctx_new();
    router = zmq_socket(zctx, ZMQ_ROUTER);
    if (!router || zmq_bind(router, endpoint) != 0)
        gw_fuzz_fail("%s: %s", endpoint, zmq_strerror(errno));
    pthread_t t;
    if (pthread_create(&t, NULL, daemon_main, NULL) != 0)
        gw_fuzz_fail("pthread_create");
    pthread_detach(t);
    gw_client_options o = GW_CLIENT_OPTIONS_INIT;
    o.endpoint = endpoint;
    o.actor = "fuzz";
    /* Long enough never to fire on a loaded machine: a timeout here means
     * the client waited for a reply it had already been given. */
    o.timeout_ms = 10000;
    if (gw_client_new(&client, &o) < 0)
        gw_fuzz_fail("gw_client_new: %s", gw_error_message());
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The socket refuses larger messages (ZMQ_MAXMSGSIZE): the peer would
     * be disconnected and the call would wait for its timeout. */
    if (size > GW_PROTO_MAX_REPLY)
        return 0;
    const uint8_t *nl = memchr(data, '\n', size < 32 ? size : 32);
    char op[33] = "";
    const uint8_t *body = data;
    if (nl) {
        memcpy(op, data, (size_t)(nl - data));
        op[nl - data] = '\0';
        body = nl + 1;
    }
    if (!op[0])
        snprintf(op, sizeof op, "hello");

    pthread_mutex_lock(&lock);
    free(answer);
    answer_len = size - (size_t)(body - data);
    answer = gw_xcalloc(answer_len + 1, 1);
    if (answer_len)
        memcpy(answer, body, answer_len);
    pthread_mutex_unlock(&lock);

    json_t *result = NULL;
    int r = gw_client_call(client, op, NULL, &result);
    const gw_client_error *e = gw_client_last_error(client);
    if (r == 0) {
        if (!result || !json_is_object(result))
            gw_fuzz_fail("%s: success without a result object", op);
        /* What the CLI does with a result: print it. */
        free(json_dumps(result, JSON_COMPACT));
    } else {
        if (r == -ETIMEDOUT)
            gw_fuzz_fail("%s: timed out although the fake daemon answered", op);
        if (result)
            gw_fuzz_fail("%s: a result handed out with an error", op);
        if (!e || !e->message || !e->code_name)
            gw_fuzz_fail("%s: an error without its code or message", op);
        (void)strlen(e->message), (void)strlen(e->code_name), (void)(e->field && strlen(e->field));
    }
    json_decref(result);
    return 0;
}
