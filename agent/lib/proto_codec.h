/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The protocol codec (proto/PROTOCOL.md): validating decoders for requests,
 * replies and events, canonical encoders, typed argument extraction, and the
 * bridge between msgpack values and their JSON form (proto/vectors/README.md).
 *
 * Untrusted bytes always go through gw_proto_scan() first: it walks the
 * msgpack structure without allocating, enforces every limit, and rejects a
 * container header that announces more elements than the limit or than the
 * remaining bytes, so that msgpack-c's unpacker (which allocates per announced
 * element) only ever sees bounded input.
 *
 * Decoded objects point into the caller's buffer (msgpack-c does not copy
 * strings): the buffer must outlive the decoded request/reply/event. Argument
 * strings are NUL-terminated copies in the message's zone.
 */
#ifndef GW_PROTO_CODEC_H
#define GW_PROTO_CODEC_H

#include <gpuwarden/lifecycle.h>
#include <gpuwarden/proto.h>
#include <jansson.h>
#include <msgpack.h>

typedef struct gw_proto_limits {
    size_t max_size;        /* body bytes */
    size_t max_str;         /* bytes of one str or bin */
    size_t max_array;       /* elements */
    size_t max_map;         /* entries */
    unsigned max_depth;     /* nesting, the body being depth 1 */
    bool reject_dup_keys;   /* check every map for a repeated key */
} gw_proto_limits;

extern const gw_proto_limits gw_proto_request_limits;
extern const gw_proto_limits gw_proto_reply_limits;
extern const gw_proto_limits gw_proto_event_limits;

/* An error as it goes on the wire. `field` is "" when there is none (nil). */
typedef struct gw_proto_error {
    gw_proto_code code;
    char field[128];
    char message[384];
} gw_proto_error;

/* Fill *err and return -1. `field` may be NULL. */
int gw_proto_errorf(gw_proto_error *err, gw_proto_code code, const char *field,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Check the structure and limits of one msgpack value filling buf[0..len).
 * 0, or -1 with err: malformed (not msgpack, truncated, trailing bytes, ext,
 * non-string map key, duplicate key) or too_large, with the field path. */
int gw_proto_scan(const void *buf, size_t len, const gw_proto_limits *lim, gw_proto_error *err);

/* ---- requests (the daemon's side) ---- */

typedef enum gw_proto_op {
    GW_OP_HELLO,
    GW_OP_INVENTORY,
    GW_OP_PUBLISHED,
    GW_OP_DEVICES,
    GW_OP_DEVICE,
    GW_OP_QUARANTINE,
    GW_OP_RELEASE,
    GW_OP_SANITIZE,
    GW_OP_AUDIT,
    GW_OP_ATTACHED,
    GW_OP_RELEASED,
    GW_OP_GATE,
    GW_OP_METRICS,
    GW_OP_MAINTENANCE,      /* appended: the numbers above stay what they were */
} gw_proto_op;

#define GW_OP_COUNT 14

typedef enum gw_proto_endpoint {
    GW_ENDPOINT_READ,
    GW_ENDPOINT_ADMIN,
    /* The libvirt hook's: `hello` and `gate` only (PROTOCOL.md §2). */
    GW_ENDPOINT_GATE,
} gw_proto_endpoint;

/* "read", "admin", "gate". */
const char *gw_proto_endpoint_name(gw_proto_endpoint ep);
/* Whether endpoint `ep` serves `op` (PROTOCOL.md §2); one source for the
 * decoder's `forbidden` and the ops `hello` lists. */
bool gw_proto_op_served(gw_proto_op op, gw_proto_endpoint ep);

const char *gw_proto_op_name(gw_proto_op op);
/* -1 when unknown. */
int gw_proto_op_from_name(const char *name, size_t len);
/* Served on the read endpoint (PROTOCOL.md §2). */
bool gw_proto_op_is_read(gw_proto_op op);

/* Per-argument limits of PROTOCOL.md §8. */
#define GW_PROTO_MAX_REASON 1024
#define GW_PROTO_MAX_DOMAIN 256
#define GW_PROTO_MAX_ADDRESSES 64
#define GW_PROTO_MAX_ACTOR 256
#define GW_PROTO_AUDIT_LIMIT_DEFAULT 100
#define GW_PROTO_AUDIT_LIMIT_MAX 1000

/* Every argument of every op, typed and checked. Absent optional strings are
 * NULL; which fields an op uses is in PROTOCOL.md §8. */
typedef struct gw_proto_args {
    const char *client;             /* hello */
    const char *address;            /* device, quarantine, release, sanitize, maintenance */
    const char *reason;             /* quarantine, maintenance (required), release */
    bool on;                        /* maintenance */
    const char *device;             /* audit filter */
    const char *domain;             /* attached, released, gate */
    const char *const *addresses;   /* attached, released, gate */
    size_t n_addresses;
    bool has_state;                 /* devices filter */
    gw_state state;
    uint64_t generation;            /* published */
    bool has_since;                 /* audit */
    uint64_t since;
    uint64_t limit;                 /* audit; GW_PROTO_AUDIT_LIMIT_DEFAULT when absent */
} gw_proto_args;

typedef struct gw_proto_request {
    msgpack_unpacked msg;           /* owns every object and copy below */
    bool has_id;                    /* false: answer with id nil */
    uint64_t id;
    unsigned major, minor;
    gw_proto_op op;
    const char *actor;              /* NULL when absent: what the client claims */
    gw_proto_args args;
    /* Who sent it, as the kernel or the CURVE handshake says (never the
     * request's own words): "uid=0(root) pid=42", "key=alice"; filled by
     * the daemon after decoding, for the ops that record an actor. */
    char peer[160];
} gw_proto_request;

/* Decode and validate a request received on endpoint `ep`, in the order of
 * PROTOCOL.md §4. 0 on success; -1 with *err filled, and req->has_id/id set
 * when the id could be read (so the error reply can echo it). Call
 * gw_proto_request_done() in both cases. */
int gw_proto_request_decode(gw_proto_request *req, const void *buf, size_t len,
                            gw_proto_endpoint ep, gw_proto_error *err);
void gw_proto_request_done(gw_proto_request *req);

/* ---- replies and events (the clients' side) ---- */

typedef struct gw_proto_reply {
    msgpack_unpacked msg;
    unsigned major, minor;
    bool has_id;
    uint64_t id;
    bool ok;
    const msgpack_object *result;   /* ok: the result map */
    gw_proto_code code;             /* !ok: GW_PROTO_INTERNAL for a code this library does not know */
    const char *code_name;          /* !ok: the code as sent */
    const char *message;            /* !ok */
    const char *field;              /* !ok: NULL when nil */
} gw_proto_reply;

/* Decode a reply (reply limits; major must be 1). 0, or -1 with err
 * (malformed, too_large, unsupported_version). Call gw_proto_reply_done(). */
int gw_proto_reply_decode(gw_proto_reply *rep, const void *buf, size_t len, gw_proto_error *err);
void gw_proto_reply_done(gw_proto_reply *rep);

typedef struct gw_proto_event {
    msgpack_unpacked msg;
    unsigned major, minor;
    uint64_t seq, boot, time;
    const char *kind;               /* NUL-terminated copies */
    const char *address;
    const msgpack_object *body;     /* the whole body map */
} gw_proto_event;

int gw_proto_event_decode(gw_proto_event *ev, const void *buf, size_t len, gw_proto_error *err);
void gw_proto_event_done(gw_proto_event *ev);

/* ---- canonical encoders (PROTOCOL.md §3) ---- */

/* A NUL-terminated string, or nil for NULL. */
void gw_proto_pack_cstr(msgpack_packer *pk, const char *s);
void gw_proto_pack_version(msgpack_packer *pk);

/* {v, id, op, args, actor?}: args is a JSON object in JSON form (NULL = {}).
 * 0, or -1 with err (invalid_argument: args not an object, a float, ...). */
int gw_proto_pack_request(msgpack_packer *pk, uint64_t id, const char *op, const json_t *args,
                          const char *actor, gw_proto_error *err);
/* {v, id, ok: true, result: — the caller packs exactly one value next. */
void gw_proto_pack_reply_ok(msgpack_packer *pk, bool has_id, uint64_t id);
/* {v, id, ok: false, error: {code, message, field}}. */
void gw_proto_pack_reply_error(msgpack_packer *pk, bool has_id, uint64_t id, const gw_proto_error *err);
/* The event body's first keys {v, seq, boot, time, kind, address, — the
 * caller packs `n_more` more key/value pairs next (the kind's fields). */
void gw_proto_pack_event_head(msgpack_packer *pk, uint64_t seq, uint64_t boot, uint64_t time,
                              const char *kind, const char *address, size_t n_more);
/* Frame 0 of an event: "<kind>/<address>". The caller frees it. */
char *gw_proto_event_topic(const char *kind, const char *address);

/* ---- the JSON form (proto/vectors/README.md) ---- */

/* msgpack value -> JSON form. 0, or -1 with err (malformed: float, ext,
 * invalid UTF-8, duplicate key, non-string key). *out is a new reference. */
int gw_proto_to_json(const msgpack_object *obj, json_t **out, gw_proto_error *err);
/* JSON form -> canonical msgpack. 0, or -1 with err (invalid_argument: a
 * real, a malformed {"$u64"}/{"$bin"}, nesting deeper than 32). */
int gw_proto_pack_json(msgpack_packer *pk, const json_t *value, gw_proto_error *err);

/* A NUL-terminated copy of s[0..n) in a message's zone (freed with it). */
char *gw_proto_zone_strndup(msgpack_zone *zone, const char *s, size_t n);

/* "nil", "boolean", "integer", "negative integer", "float", "string",
 * "binary", "array", "map", "ext". */
const char *gw_proto_type_name(const msgpack_object *obj);
/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
bool gw_proto_utf8_valid(const char *s, size_t len);

#endif
