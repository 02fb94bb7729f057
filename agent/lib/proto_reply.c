/* SPDX-License-Identifier: Apache-2.0 */
/* Replies and events: canonical encoders (the daemon's side) and validating
 * decoders (the clients' side). */
#include <string.h>

#include "proto_codec.h"
#include "util.h"

char *gw_proto_zone_strndup(msgpack_zone *zone, const char *s, size_t n)
{
    char *d = msgpack_zone_malloc(zone, n + 1);
    if (!d)
        abort();    /* as gw_x*(): a bounded allocation failing */
    if (n)      /* msgpack-c leaves an empty string's pointer NULL */
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    gw_proto_pack_cstr(pk, k);
}

static void pack_id(msgpack_packer *pk, bool has_id, uint64_t id)
{
    pack_key(pk, "id");
    if (has_id)
        msgpack_pack_uint64(pk, id);
    else
        msgpack_pack_nil(pk);
}

int gw_proto_pack_request(msgpack_packer *pk, uint64_t id, const char *op, const json_t *args, const char *actor,
                          gw_proto_error *err)
{
    if (args && !json_is_object(args))
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, "args", "args: expected a JSON object");
    msgpack_pack_map(pk, actor ? 5 : 4);
    pack_key(pk, "v");
    gw_proto_pack_version(pk);
    pack_id(pk, true, id);
    pack_key(pk, "op");
    gw_proto_pack_cstr(pk, op);
    pack_key(pk, "args");
    if (args) {
        if (gw_proto_pack_json(pk, args, err) < 0)
            return -1;
    } else {
        msgpack_pack_map(pk, 0);
    }
    if (actor) {
        pack_key(pk, "actor");
        gw_proto_pack_cstr(pk, actor);
    }
    return 0;
}

void gw_proto_pack_reply_ok(msgpack_packer *pk, bool has_id, uint64_t id)
{
    msgpack_pack_map(pk, 4);
    pack_key(pk, "v");
    gw_proto_pack_version(pk);
    pack_id(pk, has_id, id);
    pack_key(pk, "ok");
    msgpack_pack_true(pk);
    pack_key(pk, "result");
}

void gw_proto_pack_reply_error(msgpack_packer *pk, bool has_id, uint64_t id, const gw_proto_error *err)
{
    msgpack_pack_map(pk, 4);
    pack_key(pk, "v");
    gw_proto_pack_version(pk);
    pack_id(pk, has_id, id);
    pack_key(pk, "ok");
    msgpack_pack_false(pk);
    pack_key(pk, "error");
    msgpack_pack_map(pk, 3);
    pack_key(pk, "code");
    gw_proto_pack_cstr(pk, gw_proto_code_name(err->code));
    pack_key(pk, "message");
    gw_proto_pack_cstr(pk, err->message);
    pack_key(pk, "field");
    gw_proto_pack_cstr(pk, err->field[0] ? err->field : NULL);
}

void gw_proto_pack_event_head(msgpack_packer *pk, uint64_t seq, uint64_t boot, uint64_t time, const char *kind,
                              const char *address, size_t n_more)
{
    msgpack_pack_map(pk, 6 + n_more);
    pack_key(pk, "v");
    gw_proto_pack_version(pk);
    pack_key(pk, "seq");
    msgpack_pack_uint64(pk, seq);
    pack_key(pk, "boot");
    msgpack_pack_uint64(pk, boot);
    pack_key(pk, "time");
    msgpack_pack_uint64(pk, time);
    pack_key(pk, "kind");
    gw_proto_pack_cstr(pk, kind);
    pack_key(pk, "address");
    gw_proto_pack_cstr(pk, address);
}

char *gw_proto_event_topic(const char *kind, const char *address)
{
    return gw_strdup_printf("%s/%s", kind, address);
}

/* ---- decoding ---- */

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
    size_t kn = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kn && !memcmp(k->via.str.ptr, key, kn))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* Scan, unpack, require a map with a version of our major. */
static int open_message(msgpack_unpacked *msg, const void *buf, size_t len, const gw_proto_limits *lim,
                        const char *what, unsigned *major, unsigned *minor, gw_proto_error *err)
{
    if (gw_proto_scan(buf, len, lim, err) < 0)
        return -1;
    size_t off = 0;
    if (msgpack_unpack_next(msg, buf, len, &off) != MSGPACK_UNPACK_SUCCESS)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "msgpack-c could not unpack the %s", what);
    const msgpack_object *root = &msg->data;
    if (root->type != MSGPACK_OBJECT_MAP)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "%s: expected a map at the top level, got %s", what,
                               gw_proto_type_name(root));
    const msgpack_object *v = get(root, "v");
    if (!v || v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 2 ||
        v->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        v->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        v->via.array.ptr[0].via.u64 > 65535 || v->via.array.ptr[1].via.u64 > 65535)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, "v", "%s: v: expected [major, minor]", what);
    *major = (unsigned)v->via.array.ptr[0].via.u64;
    *minor = (unsigned)v->via.array.ptr[1].via.u64;
    if (*major != GW_PROTO_VERSION_MAJOR)
        return gw_proto_errorf(err, GW_PROTO_UNSUPPORTED_VERSION, "v",
                               "%s: protocol version %u.%u; this library speaks %d", what, *major, *minor,
                               GW_PROTO_VERSION_MAJOR);
    return 0;
}

static int want_str(msgpack_zone *zone, const msgpack_object *map, const char *key, bool nil_ok, const char *what,
                    const char **out, gw_proto_error *err)
{
    const msgpack_object *o = get(map, key);
    if (nil_ok && (!o || o->type == MSGPACK_OBJECT_NIL)) {
        *out = NULL;
        return 0;
    }
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, key, "%s: %s: expected a string, got %s", what, key,
                               o ? gw_proto_type_name(o) : "nothing");
    if (!gw_proto_utf8_valid(o->via.str.ptr, o->via.str.size))
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, key, "%s: %s: not valid UTF-8", what, key);
    *out = gw_proto_zone_strndup(zone, o->via.str.ptr, o->via.str.size);
    return 0;
}

static int want_uint(const msgpack_object *map, const char *key, const char *what, uint64_t *out, gw_proto_error *err)
{
    const msgpack_object *o = get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, key, "%s: %s: expected an unsigned integer, got %s", what, key,
                               o ? gw_proto_type_name(o) : "nothing");
    *out = o->via.u64;
    return 0;
}

int gw_proto_reply_decode(gw_proto_reply *rep, const void *buf, size_t len, gw_proto_error *err)
{
    memset(rep, 0, sizeof *rep);
    msgpack_unpacked_init(&rep->msg);
    if (open_message(&rep->msg, buf, len, &gw_proto_reply_limits, "reply", &rep->major, &rep->minor, err) < 0)
        return -1;
    const msgpack_object *root = &rep->msg.data;
    const msgpack_object *id = get(root, "id"), *ok = get(root, "ok");
    if (!id || (id->type != MSGPACK_OBJECT_NIL && id->type != MSGPACK_OBJECT_POSITIVE_INTEGER))
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, "id", "reply: id: expected an unsigned integer or nil, got %s",
                               id ? gw_proto_type_name(id) : "nothing");
    rep->has_id = id->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    rep->id = rep->has_id ? id->via.u64 : 0;
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, "ok", "reply: ok: expected a boolean, got %s",
                               ok ? gw_proto_type_name(ok) : "nothing");
    rep->ok = ok->via.boolean;
    if (rep->ok) {
        rep->result = get(root, "result");
        if (!rep->result || rep->result->type != MSGPACK_OBJECT_MAP)
            return gw_proto_errorf(err, GW_PROTO_MALFORMED, "result", "reply: result: expected a map, got %s",
                                   rep->result ? gw_proto_type_name(rep->result) : "nothing");
        return 0;
    }
    const msgpack_object *e = get(root, "error");
    if (!e || e->type != MSGPACK_OBJECT_MAP)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, "error", "reply: error: expected a map, got %s",
                               e ? gw_proto_type_name(e) : "nothing");
    if (want_str(rep->msg.zone, e, "code", false, "reply error", &rep->code_name, err) < 0 ||
        want_str(rep->msg.zone, e, "message", false, "reply error", &rep->message, err) < 0 ||
        want_str(rep->msg.zone, e, "field", true, "reply error", &rep->field, err) < 0)
        return -1;
    if (gw_proto_code_from_name(rep->code_name, &rep->code) < 0)
        rep->code = GW_PROTO_INTERNAL;  /* a newer daemon's code (PROTOCOL.md §5) */
    gw_error_clear();
    return 0;
}

void gw_proto_reply_done(gw_proto_reply *rep)
{
    msgpack_unpacked_destroy(&rep->msg);
}

int gw_proto_event_decode(gw_proto_event *ev, const void *buf, size_t len, gw_proto_error *err)
{
    memset(ev, 0, sizeof *ev);
    msgpack_unpacked_init(&ev->msg);
    if (open_message(&ev->msg, buf, len, &gw_proto_event_limits, "event", &ev->major, &ev->minor, err) < 0)
        return -1;
    const msgpack_object *root = &ev->msg.data;
    ev->body = root;
    if (want_uint(root, "seq", "event", &ev->seq, err) < 0 || want_uint(root, "boot", "event", &ev->boot, err) < 0 ||
        want_uint(root, "time", "event", &ev->time, err) < 0 ||
        want_str(ev->msg.zone, root, "kind", false, "event", &ev->kind, err) < 0 ||
        want_str(ev->msg.zone, root, "address", false, "event", &ev->address, err) < 0)
        return -1;
    return 0;
}

void gw_proto_event_done(gw_proto_event *ev)
{
    msgpack_unpacked_destroy(&ev->msg);
}
