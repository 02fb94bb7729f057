/* SPDX-License-Identifier: Apache-2.0 */
/* Requests: the op table, the envelope checks in the order of PROTOCOL.md §4,
 * and typed argument extraction with precise invalid_argument messages. */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "proto_codec.h"
#include "util.h"

typedef enum arg_kind { A_TEXT, A_BDF, A_STATE, A_UINT, A_BOOL, A_BDF_LIST } arg_kind;

typedef struct arg_spec {
    const char *name;
    arg_kind kind;
    bool required;
    uint64_t min, max;      /* A_TEXT: bytes; A_UINT: value; A_BDF_LIST: entries */
    size_t off;             /* the field in gw_proto_args */
    size_t has_off;         /* its "given" flag, or NO_FLAG */
} arg_spec;

#define NO_FLAG SIZE_MAX
#define OFF(f) offsetof(gw_proto_args, f)
#define END { NULL, 0, false, 0, 0, 0, NO_FLAG }

static const arg_spec no_args[] = { END };
static const arg_spec hello_args[] = {
    { "client", A_TEXT, false, 1, 256, OFF(client), NO_FLAG }, END };
static const arg_spec published_args[] = {
    { "generation", A_UINT, true, 1, INT64_MAX, OFF(generation), NO_FLAG }, END };
static const arg_spec devices_args[] = {
    { "state", A_STATE, false, 0, 0, OFF(state), OFF(has_state) }, END };
static const arg_spec address_args[] = {
    { "address", A_BDF, true, 0, 0, OFF(address), NO_FLAG }, END };
static const arg_spec quarantine_args[] = {
    { "address", A_BDF, true, 0, 0, OFF(address), NO_FLAG },
    { "reason", A_TEXT, true, 1, GW_PROTO_MAX_REASON, OFF(reason), NO_FLAG }, END };
static const arg_spec release_args[] = {
    { "address", A_BDF, true, 0, 0, OFF(address), NO_FLAG },
    { "reason", A_TEXT, false, 1, GW_PROTO_MAX_REASON, OFF(reason), NO_FLAG }, END };
static const arg_spec maintenance_args[] = {
    { "address", A_BDF, true, 0, 0, OFF(address), NO_FLAG },
    { "on", A_BOOL, true, 0, 0, OFF(on), NO_FLAG },
    { "reason", A_TEXT, true, 1, GW_PROTO_MAX_REASON, OFF(reason), NO_FLAG }, END };
static const arg_spec audit_args[] = {
    { "device", A_BDF, false, 0, 0, OFF(device), NO_FLAG },
    { "since", A_UINT, false, 0, INT64_MAX, OFF(since), OFF(has_since) },
    { "limit", A_UINT, false, 1, GW_PROTO_AUDIT_LIMIT_MAX, OFF(limit), NO_FLAG }, END };
static const arg_spec domain_args[] = {
    { "domain", A_TEXT, true, 1, GW_PROTO_MAX_DOMAIN, OFF(domain), NO_FLAG },
    { "addresses", A_BDF_LIST, true, 1, GW_PROTO_MAX_ADDRESSES, OFF(addresses), OFF(n_addresses) }, END };

static const struct {
    const char *name;
    bool read;
    const arg_spec *args;
} ops[GW_OP_COUNT] = {
    [GW_OP_HELLO] = { "hello", true, hello_args },
    [GW_OP_INVENTORY] = { "inventory", true, no_args },
    /* Admin although the shim sends it: it promotes sanitized GPUs to
     * allocatable, so whoever may send it decides when a GPU is offered
     * (PROTOCOL.md §2). */
    [GW_OP_PUBLISHED] = { "published", false, published_args },
    [GW_OP_DEVICES] = { "devices", true, devices_args },
    [GW_OP_DEVICE] = { "device", true, address_args },
    [GW_OP_QUARANTINE] = { "quarantine", false, quarantine_args },
    [GW_OP_RELEASE] = { "release", false, release_args },
    [GW_OP_SANITIZE] = { "sanitize", false, address_args },
    [GW_OP_AUDIT] = { "audit", true, audit_args },
    [GW_OP_ATTACHED] = { "attached", false, domain_args },
    [GW_OP_RELEASED] = { "released", false, domain_args },
    [GW_OP_GATE] = { "gate", true, domain_args },
    [GW_OP_METRICS] = { "metrics", true, no_args },
    /* Admin: it takes GPUs out of service (PROTOCOL.md §2). */
    [GW_OP_MAINTENANCE] = { "maintenance", false, maintenance_args },
};

const char *gw_proto_op_name(gw_proto_op op)
{
    return (unsigned)op < GW_OP_COUNT ? ops[op].name : "invalid";
}

int gw_proto_op_from_name(const char *name, size_t len)
{
    for (int i = 0; i < GW_OP_COUNT; i++)
        if (strlen(ops[i].name) == len && !memcmp(ops[i].name, name, len))
            return i;
    return -1;
}

bool gw_proto_op_is_read(gw_proto_op op)
{
    return (unsigned)op < GW_OP_COUNT && ops[op].read;
}

const char *gw_proto_endpoint_name(gw_proto_endpoint ep)
{
    switch (ep) {
    case GW_ENDPOINT_READ:
        return "read";
    case GW_ENDPOINT_ADMIN:
        return "admin";
    case GW_ENDPOINT_GATE:
        return "gate";
    }
    return "invalid";
}

bool gw_proto_op_served(gw_proto_op op, gw_proto_endpoint ep)
{
    if ((unsigned)op >= GW_OP_COUNT)
        return false;
    switch (ep) {
    case GW_ENDPOINT_ADMIN:
        return true;
    case GW_ENDPOINT_READ:
        return ops[op].read;
    case GW_ENDPOINT_GATE:
        /* The VM-start question and the handshake: nothing that could
         * queue behind a slow op on the thread that serves it. */
        return op == GW_OP_HELLO || op == GW_OP_GATE;
    }
    return false;
}

/* User text inside an error message: printable ASCII, at most 64 bytes. */
static const char *quoted(char *buf, size_t size, const char *s, size_t n)
{
    size_t at = 0;
    for (size_t i = 0; i < n && at + 4 < size; i++) {
        if (i == 64) {
            memcpy(buf + at, "...", 3);
            at += 3;
            break;
        }
        buf[at++] = ((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f) ? s[i] : '?';
    }
    buf[at] = '\0';
    return buf;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
    size_t kn = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kn && !memcmp(k->via.str.ptr, key, kn))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* A text argument: string, valid UTF-8, no NUL, min..max bytes. */
static int get_text(msgpack_zone *zone, const msgpack_object *o, const char *field, uint64_t min, uint64_t max,
                    const char **out, gw_proto_error *err)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: expected a string, got %s", field,
                               gw_proto_type_name(o));
    size_t n = o->via.str.size;
    if (n < min)
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: must not be empty", field);
    if (n > max)
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: %zu bytes, at most %" PRIu64, field,
                               n, max);
    if (memchr(o->via.str.ptr, '\0', n))
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: contains a NUL byte", field);
    if (!gw_proto_utf8_valid(o->via.str.ptr, n))
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: not valid UTF-8", field);
    *out = gw_proto_zone_strndup(zone, o->via.str.ptr, n);
    return 0;
}

static int get_bdf(msgpack_zone *zone, const msgpack_object *o, const char *field, const char **out,
                   gw_proto_error *err)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: expected a PCI address string, got %s",
                               field, gw_proto_type_name(o));
    char addr[GW_ADDR_LEN], q[80];
    size_t n = o->via.str.size;
    if (n == GW_ADDR_LEN - 1) {
        memcpy(addr, o->via.str.ptr, n);
        addr[n] = '\0';
    }
    if (n != GW_ADDR_LEN - 1 || !gw_is_bdf(addr))
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field,
                               "%s: '%s' is not a canonical PCI address (dddd:bb:dd.f, lower-case hex)", field,
                               quoted(q, sizeof q, o->via.str.ptr, n));
    *out = gw_proto_zone_strndup(zone, addr, n);
    return 0;
}

static int get_arg(gw_proto_request *req, const arg_spec *a, const msgpack_object *o, gw_proto_error *err)
{
    char field[64], q[80];
    snprintf(field, sizeof field, "args.%s", a->name);
    char *base = (char *)&req->args;
    msgpack_zone *zone = req->msg.zone;

    switch (a->kind) {
    case A_TEXT:
        return get_text(zone, o, field, a->min, a->max, (const char **)(base + a->off), err);
    case A_BDF:
        return get_bdf(zone, o, field, (const char **)(base + a->off), err);
    case A_STATE: {
        if (o->type != MSGPACK_OBJECT_STR)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: expected a state name string, got %s",
                                   field, gw_proto_type_name(o));
        const char *name = gw_proto_zone_strndup(zone, o->via.str.ptr, o->via.str.size);
        if (strlen(name) != o->via.str.size || gw_state_from_name(name, (gw_state *)(base + a->off)) < 0)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field,
                                   "%s: '%s' is not a state (discovered, sanitized, allocatable, attached, quarantined)",
                                   field, quoted(q, sizeof q, o->via.str.ptr, o->via.str.size));
        break;
    }
    case A_UINT: {
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: expected an unsigned integer, got %s",
                                   field, gw_proto_type_name(o));
        uint64_t v = o->via.u64;
        if (v < a->min || v > a->max)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field,
                                   "%s: %" PRIu64 " is out of range %" PRIu64 "..%" PRIu64, field, v, a->min, a->max);
        *(uint64_t *)(base + a->off) = v;
        break;
    }
    case A_BOOL:
        /* Exactly true or false: 0/1 or "yes" would be a guess at what was meant. */
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: expected a boolean, got %s", field,
                                   gw_proto_type_name(o));
        *(bool *)(base + a->off) = o->via.boolean;
        break;
    case A_BDF_LIST: {
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field,
                                   "%s: expected an array of PCI address strings, got %s", field, gw_proto_type_name(o));
        size_t n = o->via.array.size;
        if (n < a->min)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: must not be empty", field);
        if (n > a->max)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, field, "%s: %zu addresses, at most %" PRIu64,
                                   field, n, a->max);
        const char **list = msgpack_zone_malloc(zone, n * sizeof *list);
        if (!list)
            abort();
        for (size_t i = 0; i < n; i++) {
            char item[80];
            snprintf(item, sizeof item, "%s[%zu]", field, i);
            if (get_bdf(zone, &o->via.array.ptr[i], item, &list[i], err) < 0)
                return -1;
            for (size_t j = 0; j < i; j++)
                if (!strcmp(list[j], list[i]))
                    return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, item, "%s: duplicate address '%s'",
                                           item, list[i]);
        }
        *(const char *const **)(base + a->off) = list;
        break;
    }
    }
    if (a->has_off != NO_FLAG) {
        if (a->kind == A_BDF_LIST)
            *(size_t *)(base + a->has_off) = o->via.array.size;
        else
            *(bool *)(base + a->has_off) = true;
    }
    return 0;
}

static int check_version(gw_proto_request *req, const msgpack_object *v, gw_proto_error *err)
{
    if (!v)
        return gw_proto_errorf(err, GW_PROTO_MISSING_FIELD, "v", "v: required but missing");
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, "v", "v: expected [major, minor], got %s",
                               gw_proto_type_name(v));
    const msgpack_object *p = v->via.array.ptr;
    if (v->via.array.size != 2 || p[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        p[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || p[0].via.u64 > 65535 || p[1].via.u64 > 65535)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, "v",
                               "v: expected [major, minor], two unsigned integers up to 65535");
    req->major = (unsigned)p[0].via.u64;
    req->minor = (unsigned)p[1].via.u64;
    if (req->major != GW_PROTO_VERSION_MAJOR)
        return gw_proto_errorf(err, GW_PROTO_UNSUPPORTED_VERSION, "v",
                               "v: protocol version %u.%u is not supported; this daemon speaks %d", req->major,
                               req->minor, GW_PROTO_VERSION_MAJOR);
    return 0;
}

static int check_op(gw_proto_request *req, const msgpack_object *op, gw_proto_endpoint ep, gw_proto_error *err)
{
    char q[80];
    if (!op)
        return gw_proto_errorf(err, GW_PROTO_MISSING_FIELD, "op", "op: required but missing");
    if (op->type != MSGPACK_OBJECT_STR)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, "op", "op: expected a string, got %s", gw_proto_type_name(op));
    int o = gw_proto_op_from_name(op->via.str.ptr, op->via.str.size);
    if (o < 0)
        return gw_proto_errorf(err, GW_PROTO_UNKNOWN_OP, "op", "op: unknown op '%s'",
                               quoted(q, sizeof q, op->via.str.ptr, op->via.str.size));
    req->op = (gw_proto_op)o;
    if (!gw_proto_op_served(req->op, ep))
        return gw_proto_errorf(err, GW_PROTO_FORBIDDEN, "op", "op: '%s' is not served on the %s endpoint",
                               ops[o].name, gw_proto_endpoint_name(ep));
    return 0;
}

int gw_proto_request_decode(gw_proto_request *req, const void *buf, size_t len, gw_proto_endpoint ep,
                            gw_proto_error *err)
{
    memset(req, 0, sizeof *req);
    msgpack_unpacked_init(&req->msg);
    req->args.limit = GW_PROTO_AUDIT_LIMIT_DEFAULT;
    if (gw_proto_scan(buf, len, &gw_proto_request_limits, err) < 0)
        return -1;
    size_t off = 0;
    if (msgpack_unpack_next(&req->msg, buf, len, &off) != MSGPACK_UNPACK_SUCCESS)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "msgpack-c could not unpack the message");
    const msgpack_object *root = &req->msg.data;
    if (root->type != MSGPACK_OBJECT_MAP)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "expected a map at the top level, got %s",
                               gw_proto_type_name(root));

    const msgpack_object *id = map_get(root, "id");
    if (id && id->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, "id", "id: expected an unsigned integer, got %s",
                               gw_proto_type_name(id));
    if (id) {
        req->has_id = true;
        req->id = id->via.u64;
    }
    if (check_version(req, map_get(root, "v"), err) < 0)
        return -1;
    if (!id)
        return gw_proto_errorf(err, GW_PROTO_MISSING_FIELD, "id", "id: required but missing");
    if (check_op(req, map_get(root, "op"), ep, err) < 0)
        return -1;

    const msgpack_object *args = map_get(root, "args");
    if (args && args->type != MSGPACK_OBJECT_MAP)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, "args", "args: expected a map, got %s",
                               gw_proto_type_name(args));
    const msgpack_object *actor = map_get(root, "actor");
    if (actor) {
        gw_proto_error e;
        if (get_text(req->msg.zone, actor, "actor", 1, GW_PROTO_MAX_ACTOR, &req->actor, &e) < 0)
            return gw_proto_errorf(err, GW_PROTO_MALFORMED, "actor", "%s", e.message);
    }
    for (const arg_spec *a = ops[req->op].args; a->name; a++) {
        const msgpack_object *o = args ? map_get(args, a->name) : NULL;
        if (!o) {
            if (a->required) {
                char field[64];
                snprintf(field, sizeof field, "args.%s", a->name);
                return gw_proto_errorf(err, GW_PROTO_MISSING_FIELD, field, "%s: required but missing", field);
            }
            continue;
        }
        if (get_arg(req, a, o, err) < 0)
            return -1;
    }
    return 0;
}

void gw_proto_request_done(gw_proto_request *req)
{
    msgpack_unpacked_destroy(&req->msg);
}
