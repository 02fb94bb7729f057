/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/proto.h - constants of the wire protocol between gpuwardend and
 * its clients (proto/PROTOCOL.md is the full specification).
 *
 * Messages are msgpack maps over ZeroMQ. A request is {v, id, op, args}; a
 * reply is {v, id, ok: true, result} or {v, id, ok: false, error: {code,
 * message, field}}. This header names the protocol version, the default
 * endpoints, the limits and the error codes; include/gpuwarden/client.h is
 * the client API.
 */
#ifndef GPUWARDEN_PROTO_H
#define GPUWARDEN_PROTO_H

#include <gpuwarden/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol version this library speaks: `v` = [1, 0] on the wire. A
 * daemon answers any 1.x request; another major is `unsupported_version`. */
#define GW_PROTO_VERSION_MAJOR 1
#define GW_PROTO_VERSION_MINOR 0

/* Default endpoints of gpuwardend (PROTOCOL.md §1). */
#define GW_PROTO_READ_ENDPOINT "ipc:///run/gpuwarden/read.sock"
#define GW_PROTO_ADMIN_ENDPOINT "ipc:///run/gpuwarden/admin.sock"
/* The libvirt hook's `gate`, served on a thread of its own (PROTOCOL.md §2). */
#define GW_PROTO_GATE_ENDPOINT "ipc:///run/gpuwarden/gate.sock"
#define GW_PROTO_EVENTS_ENDPOINT "ipc:///run/gpuwarden/events.sock"

/* Limits (PROTOCOL.md §7). Requests, as the daemon decodes them: */
#define GW_PROTO_MAX_REQUEST 65536          /* body bytes; more is `too_large` */
#define GW_PROTO_REQUEST_MAXMSGSIZE 1048576 /* ZMQ_MAXMSGSIZE on the daemon's request sockets */
#define GW_PROTO_MAX_REQUEST_STR 4096
#define GW_PROTO_MAX_REQUEST_ARRAY 256
#define GW_PROTO_MAX_REQUEST_MAP 64
#define GW_PROTO_MAX_REQUEST_DEPTH 8
/* Replies and events, as clients decode them: */
#define GW_PROTO_MAX_REPLY 8388608          /* also the client's ZMQ_MAXMSGSIZE */
#define GW_PROTO_MAX_EVENT 1048576
#define GW_PROTO_MAX_REPLY_STR 65536
#define GW_PROTO_MAX_REPLY_ARRAY 65536
#define GW_PROTO_MAX_REPLY_MAP 256
#define GW_PROTO_MAX_REPLY_DEPTH 16

/* Error codes, in the order of PROTOCOL.md §6. On the wire they are the
 * strings gw_proto_code_name() returns. */
typedef enum gw_proto_code {
    GW_PROTO_OK = 0,
    GW_PROTO_MALFORMED,
    GW_PROTO_TOO_LARGE,
    GW_PROTO_UNSUPPORTED_VERSION,
    GW_PROTO_UNKNOWN_OP,
    GW_PROTO_INVALID_ARGUMENT,
    GW_PROTO_MISSING_FIELD,
    GW_PROTO_FORBIDDEN,
    GW_PROTO_NOT_FOUND,
    GW_PROTO_CONFLICT,
    GW_PROTO_ILLEGAL_TRANSITION,
    GW_PROTO_BUSY,
    GW_PROTO_INTERNAL,
    GW_PROTO_UNAVAILABLE,
} gw_proto_code;

#define GW_PROTO_CODE_COUNT 14

/* "malformed", "too_large", ... ("ok" for GW_PROTO_OK, "invalid" out of range). */
GW_EXTERN const char *gw_proto_code_name(gw_proto_code code);
/* Inverse of gw_proto_code_name() for the wire codes; -EINVAL when unknown
 * (a client then treats the code as GW_PROTO_INTERNAL, PROTOCOL.md §5). */
GW_EXTERN int gw_proto_code_from_name(const char *name, gw_proto_code *out);
/* The negative errno libgpuwarden returns for a code: -EPROTO for malformed,
 * -EMSGSIZE, -EPROTONOSUPPORT, -EOPNOTSUPP, -EINVAL (invalid_argument and
 * missing_field), -EACCES, -ENOENT, -EEXIST, -EPERM, -EBUSY, -EIO, -EAGAIN;
 * 0 for GW_PROTO_OK. */
GW_EXTERN int gw_proto_code_errno(gw_proto_code code);

#ifdef __cplusplus
}
#endif
#endif
