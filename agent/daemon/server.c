/* The request path, top to bottom: receive [routing id][empty][body] from a
 * ROUTER socket; decode and validate the body (proto codec: size, structure,
 * limits, version, op, access, arguments - the first failure is the answer);
 * run the op; pack the reply canonically; send it back. Every failure is an
 * error reply; nothing a client sends can stop the loop. */
#include <errno.h>
#include <msgpack.h>
#include <string.h>
#include <zmq.h>

#include "daemon.h"
#include "ops.h"
#include "proto_codec.h"
#include "util.h"

/* At most this many requests per socket per loop turn, so one busy client
 * cannot starve the other endpoint, signals or events. */
#define BATCH 64

static void send_reply(void *sock, zmq_msg_t *routing, const msgpack_sbuffer *body)
{
    zmq_msg_send(routing, sock, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, body->data, body->size, ZMQ_DONTWAIT);
}

static void pack_error(gwd *d, msgpack_sbuffer *sb, bool has_id, uint64_t id, const gw_proto_error *err)
{
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    gw_proto_pack_reply_error(&pk, has_id, id, err);
    if ((unsigned)err->code < 16)
        d->errors[err->code]++;
}

static void answer(gwd *d, bool admin, const void *body, size_t len, msgpack_sbuffer *sb)
{
    gw_proto_request req;
    gw_proto_error err;
    memset(&err, 0, sizeof err);
    if (gw_proto_request_decode(&req, body, len, admin ? GW_ENDPOINT_ADMIN : GW_ENDPOINT_READ, &err) < 0) {
        pack_error(d, sb, req.has_id, req.id, &err);
        gw_proto_request_done(&req);
        return;
    }
    d->requests[req.op]++;
    json_t *result = NULL;
    gw_error_clear();
    if (gwd_op_run(d, &req, admin, &result, &err) < 0) {
        gw_log(GW_LOG_INFO, "%s: %s: %s", gw_proto_op_name(req.op), gw_proto_code_name(err.code), err.message);
        pack_error(d, sb, req.has_id, req.id, &err);
        gw_proto_request_done(&req);
        return;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    gw_proto_pack_reply_ok(&pk, req.has_id, req.id);
    if (gw_proto_pack_json(&pk, result, &err) < 0) {
        gw_log(GW_LOG_ERR, "%s: result not encodable: %s", gw_proto_op_name(req.op), err.message);
        gw_proto_errorf(&err, GW_PROTO_INTERNAL, NULL, "result could not be encoded");
        pack_error(d, sb, req.has_id, req.id, &err);
    }
    json_decref(result);
    gw_proto_request_done(&req);
}

/* One message off the socket. Returns false when there was none. A request
 * must be exactly [routing id][empty][body]; any other shape is answered
 * `malformed` after every frame of it has been read off. */
static bool serve_one(gwd *d, void *sock, bool admin)
{
    zmq_msg_t f[3];
    size_t kept = 0, frames = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, frames ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        frames++;
        more = zmq_msg_more(&m);
        if (kept < 3) {
            zmq_msg_init(&f[kept]);
            zmq_msg_move(&f[kept++], &m);
        }
        zmq_msg_close(&m);
    }
    if (frames == 0)
        return false;

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (frames != 3 || zmq_msg_size(&f[1]) != 0) {
        gw_proto_error err;
        memset(&err, 0, sizeof err);
        gw_proto_errorf(&err, GW_PROTO_MALFORMED, NULL, "a request is two frames, [empty][body]; got %zu frame(s)%s",
                        frames - 1, frames >= 2 && zmq_msg_size(&f[1]) ? " with a non-empty delimiter" : "");
        pack_error(d, &sb, false, 0, &err);
    } else {
        answer(d, admin, zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), &sb);
    }
    send_reply(sock, &f[0], &sb);
    msgpack_sbuffer_destroy(&sb);
    for (size_t i = 0; i < kept; i++)
        zmq_msg_close(&f[i]);
    return true;
}

void gwd_serve(gwd *d, void *sock, bool admin)
{
    for (int i = 0; i < BATCH && serve_one(d, sock, admin); i++)
        ;
}
