/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's request decoder (agent/lib/proto_request.c, proto_scan.c):
 * every request body the daemon reads off either endpoint goes through
 * gw_proto_request_decode() with its per-op argument checks, and its error
 * reply through gw_proto_pack_reply_error(). Also the JSON bridge
 * (proto_json.c) on whatever the scanner accepts.
 *
 * Invariants checked beyond "no crash, leak or UB":
 *   - a decoded request has a known op, and the endpoint allows it;
 *   - an error names a known code and fits its buffers;
 *   - the error reply the daemon would send decodes as a reply, with the
 *     same id and code (a client must always understand the daemon);
 *   - msgpack -> JSON -> msgpack -> JSON gives the same JSON. */
#include <string.h>

#include "fuzz_common.h"
#include "proto_codec.h"

static void check_request(const gw_proto_request *req, gw_proto_endpoint ep)
{
    if ((unsigned)req->op >= GW_OP_COUNT || !gw_proto_op_name(req->op))
        gw_fuzz_fail("decoded op %d is not an op", (int)req->op);
    if (ep == GW_ENDPOINT_READ && !gw_proto_op_is_read(req->op))
        gw_fuzz_fail("op %s decoded on the read endpoint", gw_proto_op_name(req->op));
    /* Touch every string: ASan sees a dangling or unterminated one. */
    const gw_proto_args *a = &req->args;
    const char *strs[] = { req->actor, a->client, a->address, a->reason, a->device, a->domain };
    size_t total = 0;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        total += strs[i] ? strlen(strs[i]) : 0;
    if (a->n_addresses > GW_PROTO_MAX_ADDRESSES)
        gw_fuzz_fail("%zu addresses accepted", a->n_addresses);
    for (size_t i = 0; i < a->n_addresses; i++)
        total += strlen(a->addresses[i]);
    if (total > 2 * GW_PROTO_MAX_REQUEST)
        gw_fuzz_fail("argument strings longer than the request");
}

static void check_error_reply(const gw_proto_request *req, const gw_proto_error *err)
{
    if (!gw_proto_code_name(err->code))
        gw_fuzz_fail("error code %d has no name", (int)err->code);
    if (!memchr(err->field, '\0', sizeof err->field) || !memchr(err->message, '\0', sizeof err->message))
        gw_fuzz_fail("error field or message not terminated");

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    gw_proto_pack_reply_error(&pk, req->has_id, req->id, err);
    gw_proto_reply rep;
    gw_proto_error rerr;
    if (gw_proto_reply_decode(&rep, sb.data, sb.size, &rerr) < 0)
        gw_fuzz_fail("the daemon's error reply does not decode: %s", rerr.message);
    if (rep.ok || rep.code != err->code || rep.has_id != req->has_id || (rep.has_id && rep.id != req->id))
        gw_fuzz_fail("the error reply decodes to something else");
    gw_proto_reply_done(&rep);
    msgpack_sbuffer_destroy(&sb);
}

static void check_json_bridge(const uint8_t *data, size_t size)
{
    gw_proto_error err;
    if (gw_proto_scan(data, size, &gw_proto_reply_limits, &err) < 0)
        return;
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    size_t off = 0;
    if (msgpack_unpack_next(&msg, (const char *)data, size, &off) != MSGPACK_UNPACK_SUCCESS)
        gw_fuzz_fail("gw_proto_scan() accepted what msgpack-c cannot unpack");
    json_t *j = NULL;
    if (gw_proto_to_json(&msg.data, &j, &err) == 0) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (gw_proto_pack_json(&pk, j, &err) == 0) {
            msgpack_unpacked again;
            msgpack_unpacked_init(&again);
            size_t off2 = 0;
            json_t *j2 = NULL;
            if (msgpack_unpack_next(&again, sb.data, sb.size, &off2) != MSGPACK_UNPACK_SUCCESS || off2 != sb.size)
                gw_fuzz_fail("gw_proto_pack_json() packed what msgpack-c cannot unpack");
            if (gw_proto_to_json(&again.data, &j2, &err) < 0)
                gw_fuzz_fail("the JSON form's own packing does not convert back: %s", err.message);
            if (!json_equal(j, j2))
                gw_fuzz_fail("msgpack -> JSON -> msgpack -> JSON changed the value");
            json_decref(j2);
            msgpack_unpacked_destroy(&again);
        }
        msgpack_sbuffer_destroy(&sb);
        json_decref(j);
    }
    msgpack_unpacked_destroy(&msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const gw_proto_endpoint eps[] = { GW_ENDPOINT_ADMIN, GW_ENDPOINT_READ };
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        gw_proto_request req;
        gw_proto_error err;
        memset(&err, 0, sizeof err);
        if (gw_proto_request_decode(&req, data, size, eps[i], &err) == 0)
            check_request(&req, eps[i]);
        else
            check_error_reply(&req, &err);
        gw_proto_request_done(&req);
    }
    check_json_bridge(data, size);
    return 0;
}
