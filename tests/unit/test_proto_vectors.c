/* SPDX-License-Identifier: Apache-2.0 */
/* Every golden vector (proto/vectors) through msgpack-c and the codec: bytes
 * round-trip byte for byte, the JSON twin encodes to the same bytes through
 * the JSON bridge, the codec's own encoders reproduce requests, replies and
 * events, and every bad_* request gets exactly its expected code and field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "proto_codec.h"
#include "util.h"

#define VECTORS GW_SOURCE_DIR "/proto/vectors"

typedef struct vec {
    char *name;
    json_t *twin;
    uint8_t *bytes;
    size_t len;
} vec;

static vec *vecs;
static size_t n_vecs;

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap)
            buf = gw_xrealloc(buf, cap = cap ? 2 * cap : 4096, 1);
        size_t n = fread(buf + *len, 1, cap - *len, f);
        if (n == 0)
            break;
        *len += n;
    }
    fclose(f);
    return buf;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const vec *)a)->name, ((const vec *)b)->name);
}

static int load_all(void **state)
{
    DIR *d = opendir(VECTORS);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json"))
            continue;
        vecs = gw_xrealloc(vecs, n_vecs + 1, sizeof *vecs);
        vec *v = &vecs[n_vecs++];
        v->name = gw_strdup_printf("%.*s", (int)(n - 5), e->d_name);
        char *p = gw_strdup_printf("%s/%s.json", VECTORS, v->name);
        json_error_t jerr;
        v->twin = json_load_file(p, JSON_ALLOW_NUL, &jerr);
        if (!v->twin)
            fail_msg("%s: %s", p, jerr.text);
        free(p);
        p = gw_strdup_printf("%s/%s.msgpack", VECTORS, v->name);
        v->bytes = read_all(p, &v->len);
        free(p);
    }
    closedir(d);
    qsort(vecs, n_vecs, sizeof *vecs, by_name);
    return 0;
}

static int free_all(void **state)
{
    for (size_t i = 0; i < n_vecs; i++) {
        free(vecs[i].name);
        json_decref(vecs[i].twin);
        free(vecs[i].bytes);
    }
    free(vecs);
    return 0;
}

static const vec *find(const char *name)
{
    for (size_t i = 0; i < n_vecs; i++)
        if (!strcmp(vecs[i].name, name))
            return &vecs[i];
    fail_msg("no vector %s", name);
    return NULL;
}

static const char *type_of(const vec *v)
{
    return json_string_value(json_object_get(v->twin, "type"));
}

static void assert_bytes(const vec *v, const msgpack_sbuffer *sb, const char *how)
{
    if (sb->size != v->len || memcmp(sb->data, v->bytes, v->len)) {
        fprintf(stderr, "%s: %s gives %zu bytes, the vector has %zu:\n", v->name, how, sb->size, v->len);
        for (size_t i = 0; i < sb->size && i < 256; i++)
            fprintf(stderr, "%02x%s", (uint8_t)sb->data[i], i + 1 < v->len && i < v->len && (uint8_t)sb->data[i] != v->bytes[i] ? "*" : " ");
        fprintf(stderr, "\n");
        fail_msg("%s: %s differs from the vector", v->name, how);
    }
}

static void there_are_enough_vectors(void **state)
{
    assert_true(n_vecs >= 80);
    size_t kinds[4] = { 0 };
    static const char *const names[4] = { "request", "reply", "event", "bad_request" };
    for (size_t i = 0; i < n_vecs; i++)
        for (int k = 0; k < 4; k++)
            if (!strcmp(type_of(&vecs[i]), names[k]))
                kinds[k]++;
    assert_int_equal(kinds[0] + kinds[1] + kinds[2] + kinds[3], n_vecs);
    assert_true(kinds[0] >= 13 && kinds[1] >= 26 && kinds[2] >= 3 && kinds[3] >= 30);
}

/* The twin's JSON form, through the codec's JSON bridge, gives the bytes. */
static void twin_encodes_to_the_bytes(void **state)
{
    for (size_t i = 0; i < n_vecs; i++) {
        const vec *v = &vecs[i];
        const json_t *value = json_object_get(v->twin, "value");
        if (!value)
            continue;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        gw_proto_error err;
        if (gw_proto_pack_json(&pk, value, &err) < 0)
            fail_msg("%s: %s", v->name, err.message);
        assert_bytes(v, &sb, "the JSON twin");
        msgpack_sbuffer_destroy(&sb);
    }
}

static void hex_twins_match(void **state)
{
    for (size_t i = 0; i < n_vecs; i++) {
        const vec *v = &vecs[i];
        const char *hex = json_string_value(json_object_get(v->twin, "hex"));
        if (!hex)
            continue;
        assert_int_equal(strlen(hex), 2 * v->len);
        for (size_t k = 0; k < v->len; k++) {
            unsigned b;
            assert_int_equal(sscanf(hex + 2 * k, "%2x", &b), 1);
            assert_int_equal(b, v->bytes[k]);
        }
    }
}

static const gw_proto_limits *limits_for(const vec *v)
{
    const char *t = type_of(v);
    if (!strcmp(t, "reply"))
        return &gw_proto_reply_limits;
    if (!strcmp(t, "event"))
        return &gw_proto_event_limits;
    return &gw_proto_request_limits;
}

/* bytes -> msgpack-c objects -> bytes, and objects -> JSON form == twin. */
static void bytes_round_trip(void **state)
{
    for (size_t i = 0; i < n_vecs; i++) {
        const vec *v = &vecs[i];
        const json_t *value = json_object_get(v->twin, "value");
        if (!value)
            continue;
        gw_proto_error err;
        if (gw_proto_scan(v->bytes, v->len, limits_for(v), &err) < 0) {
            /* only bad_* vectors may fail the structural scan */
            assert_string_equal(type_of(v), "bad_request");
            continue;
        }
        msgpack_unpacked msg;
        msgpack_unpacked_init(&msg);
        size_t off = 0;
        assert_int_equal(msgpack_unpack_next(&msg, (const char *)v->bytes, v->len, &off), MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(off, v->len);

        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        assert_int_equal(msgpack_pack_object(&pk, msg.data), 0);
        assert_bytes(v, &sb, "unpack + msgpack_pack_object");
        msgpack_sbuffer_destroy(&sb);

        json_t *j;
        if (gw_proto_to_json(&msg.data, &j, &err) < 0)
            fail_msg("%s: %s", v->name, err.message);
        char *a = json_dumps(j, JSON_COMPACT), *b = json_dumps(value, JSON_COMPACT);
        if (strcmp(a, b))
            fail_msg("%s: JSON form differs:\n%s\n%s", v->name, a, b);
        free(a);
        free(b);
        json_decref(j);
        msgpack_unpacked_destroy(&msg);
    }
}

static void requests_decode_and_re_encode(void **state)
{
    for (size_t i = 0; i < n_vecs; i++) {
        const vec *v = &vecs[i];
        if (strcmp(type_of(v), "request"))
            continue;
        const json_t *value = json_object_get(v->twin, "value");
        gw_proto_request req;
        gw_proto_error err;
        if (gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_ADMIN, &err) < 0)
            fail_msg("%s: %s: %s", v->name, gw_proto_code_name(err.code), err.message);
        assert_string_equal(gw_proto_op_name(req.op), json_string_value(json_object_get(v->twin, "op")));
        assert_true(req.has_id);

        /* The client's encoder gives the same bytes for a 1.0 request with args and no unknown keys. */
        const json_t *args = json_object_get(value, "args");
        const json_t *actor = json_object_get(value, "actor");
        size_t known = 3 + (args != NULL) + (actor != NULL);
        if (args && json_object_size(value) == known && req.minor == 0) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            assert_int_equal(gw_proto_pack_request(&pk, req.id, gw_proto_op_name(req.op), args,
                                                   actor ? json_string_value(actor) : NULL, &err), 0);
            assert_bytes(v, &sb, "gw_proto_pack_request");
            msgpack_sbuffer_destroy(&sb);
        }
        gw_proto_request_done(&req);
    }
    /* Spot checks of typed arguments. */
    gw_proto_request req;
    gw_proto_error err;
    const vec *v = find("req_audit");
    assert_int_equal(gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_READ, &err), 0);
    assert_string_equal(req.args.device, "0000:3b:00.0");
    assert_true(req.args.has_since);
    assert_int_equal(req.args.since, 1767225600000ULL);
    assert_int_equal(req.args.limit, 20);
    gw_proto_request_done(&req);
    v = find("req_audit_all");
    assert_int_equal(gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_READ, &err), 0);
    assert_null(req.args.device);
    assert_false(req.args.has_since);
    assert_int_equal(req.args.limit, GW_PROTO_AUDIT_LIMIT_DEFAULT);
    gw_proto_request_done(&req);
    v = find("req_attached");
    assert_int_equal(gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_ADMIN, &err), 0);
    assert_string_equal(req.args.domain, "instance-0000002a");
    assert_int_equal(req.args.n_addresses, 3);
    assert_string_equal(req.args.addresses[2], "0000:af:00.1");
    gw_proto_request_done(&req);
    v = find("req_quarantine");
    assert_int_equal(gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_ADMIN, &err), 0);
    assert_string_equal(req.actor, "uid=0(root) sudo=alice");
    assert_string_equal(req.args.reason, "fan noise reported by the tenant; checking the board");
    gw_proto_request_done(&req);
    v = find("req_maintenance");    /* an admin op (PROTOCOL.md §2) */
    assert_int_equal(gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_ADMIN, &err), 0);
    assert_int_equal(req.op, GW_OP_MAINTENANCE);
    assert_string_equal(req.args.address, "0000:3c:00.0");
    assert_true(req.args.on);
    assert_string_equal(req.args.reason, "disabled in Cyborg: board swap");
    gw_proto_request_done(&req);
    v = find("req_maintenance_off");
    assert_int_equal(gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_ADMIN, &err), 0);
    assert_false(req.args.on);
    gw_proto_request_done(&req);
    v = find("req_devices_state");
    assert_int_equal(gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_READ, &err), 0);
    assert_true(req.args.has_state);
    assert_int_equal(req.args.state, GW_STATE_QUARANTINED);
    gw_proto_request_done(&req);
    v = find("req_id_max");
    assert_int_equal(gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_READ, &err), 0);
    assert_true(req.id == UINT64_MAX);
    gw_proto_request_done(&req);
    v = find("req_future_minor");
    assert_int_equal(gw_proto_request_decode(&req, v->bytes, v->len, GW_ENDPOINT_READ, &err), 0);
    assert_int_equal(req.minor, 7);
    assert_string_equal(req.args.address, "0000:3b:00.0");
    gw_proto_request_done(&req);
}

static void replies_decode_and_re_encode(void **state)
{
    for (size_t i = 0; i < n_vecs; i++) {
        const vec *v = &vecs[i];
        if (strcmp(type_of(v), "reply"))
            continue;
        const json_t *value = json_object_get(v->twin, "value");
        gw_proto_reply rep;
        gw_proto_error err;
        if (gw_proto_reply_decode(&rep, v->bytes, v->len, &err) < 0)
            fail_msg("%s: %s", v->name, err.message);
        assert_int_equal(rep.ok, json_is_true(json_object_get(value, "ok")));
        assert_int_equal(rep.has_id, !json_is_null(json_object_get(value, "id")));

        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (rep.ok) {
            gw_proto_pack_reply_ok(&pk, rep.has_id, rep.id);
            assert_int_equal(gw_proto_pack_json(&pk, json_object_get(value, "result"), &err), 0);
        } else {
            const json_t *e = json_object_get(value, "error");
            gw_proto_error out = { .code = rep.code };
            assert_string_equal(rep.code_name, json_string_value(json_object_get(e, "code")));
            assert_string_equal(rep.code_name, gw_proto_code_name(rep.code));
            snprintf(out.message, sizeof out.message, "%s", rep.message);
            snprintf(out.field, sizeof out.field, "%s", rep.field ? rep.field : "");
            gw_proto_pack_reply_error(&pk, rep.has_id, rep.id, &out);
        }
        assert_bytes(v, &sb, rep.ok ? "gw_proto_pack_reply_ok" : "gw_proto_pack_reply_error");
        msgpack_sbuffer_destroy(&sb);
        gw_proto_reply_done(&rep);
    }
}

static void events_decode_and_re_encode(void **state)
{
    static const char *const head[] = { "v", "seq", "boot", "time", "kind", "address" };
    for (size_t i = 0; i < n_vecs; i++) {
        const vec *v = &vecs[i];
        if (strcmp(type_of(v), "event"))
            continue;
        const json_t *value = json_object_get(v->twin, "value");
        gw_proto_event ev;
        gw_proto_error err;
        if (gw_proto_event_decode(&ev, v->bytes, v->len, &err) < 0)
            fail_msg("%s: %s", v->name, err.message);
        char *topic = gw_proto_event_topic(ev.kind, ev.address);
        assert_string_equal(topic, json_string_value(json_object_get(v->twin, "topic")));
        free(topic);

        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        size_t n = json_object_size(value);
        gw_proto_pack_event_head(&pk, ev.seq, ev.boot, ev.time, ev.kind, ev.address, n - 6);
        const char *k;
        json_t *x;
        size_t at = 0;
        json_object_foreach((json_t *)value, k, x) {
            if (at < 6) {
                assert_string_equal(k, head[at++]);
                continue;
            }
            gw_proto_pack_cstr(&pk, k);
            assert_int_equal(gw_proto_pack_json(&pk, x, &err), 0);
        }
        assert_bytes(v, &sb, "gw_proto_pack_event_head + fields");
        msgpack_sbuffer_destroy(&sb);
        gw_proto_event_done(&ev);
    }
}

/* A bad_request twin's "endpoint". */
static gw_proto_endpoint endpoint_of(const char *name)
{
    if (!strcmp(name, "read"))
        return GW_ENDPOINT_READ;
    if (!strcmp(name, "gate"))
        return GW_ENDPOINT_GATE;
    assert_string_equal(name, "admin");
    return GW_ENDPOINT_ADMIN;
}

static void bad_requests_get_their_code_and_field(void **state)
{
    size_t checked = 0;
    for (size_t i = 0; i < n_vecs; i++) {
        const vec *v = &vecs[i];
        if (strcmp(type_of(v), "bad_request"))
            continue;
        const json_t *expect = json_object_get(v->twin, "expect");
        const char *endpoint = json_string_value(json_object_get(v->twin, "endpoint"));
        const char *field = json_string_value(json_object_get(expect, "field"));
        gw_proto_request req;
        gw_proto_error err;
        int r = gw_proto_request_decode(&req, v->bytes, v->len,
                                        endpoint_of(endpoint), &err);
        if (r == 0)
            fail_msg("%s: accepted", v->name);
        if (strcmp(gw_proto_code_name(err.code), json_string_value(json_object_get(expect, "code"))) ||
            strcmp(err.field, field ? field : ""))
            fail_msg("%s: got %s field '%s' (%s), want %s field '%s'", v->name, gw_proto_code_name(err.code),
                     err.field, err.message, json_string_value(json_object_get(expect, "code")), field ? field : "");
        /* The message names the field it is about. */
        if (field)
            assert_non_null(strstr(err.message, field));
        gw_proto_request_done(&req);
        checked++;
    }
    assert_true(checked >= 30);
}

/* err_X "answer to bad_Y" is byte for byte what the codec answers to bad_Y. */
static void error_replies_are_the_codec_answers(void **state)
{
    size_t checked = 0;
    for (size_t i = 0; i < n_vecs; i++) {
        const vec *v = &vecs[i];
        const char *desc = json_string_value(json_object_get(v->twin, "description"));
        char bad[64];
        if (strncmp(v->name, "err_", 4) || sscanf(desc, "answer to %63[a-z0-9_]", bad) != 1)
            continue;
        const vec *b = find(bad);
        const char *endpoint = json_string_value(json_object_get(b->twin, "endpoint"));
        gw_proto_request req;
        gw_proto_error err;
        assert_int_equal(gw_proto_request_decode(&req, b->bytes, b->len,
                                                 endpoint_of(endpoint),
                                                 &err), -1);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        gw_proto_pack_reply_error(&pk, req.has_id, req.id, &err);
        assert_bytes(v, &sb, bad);
        msgpack_sbuffer_destroy(&sb);
        gw_proto_request_done(&req);
        checked++;
    }
    assert_int_equal(checked, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(there_are_enough_vectors),
        cmocka_unit_test(twin_encodes_to_the_bytes),
        cmocka_unit_test(hex_twins_match),
        cmocka_unit_test(bytes_round_trip),
        cmocka_unit_test(requests_decode_and_re_encode),
        cmocka_unit_test(replies_decode_and_re_encode),
        cmocka_unit_test(events_decode_and_re_encode),
        cmocka_unit_test(bad_requests_get_their_code_and_field),
        cmocka_unit_test(error_replies_are_the_codec_answers),
    };
    return cmocka_run_group_tests(tests, load_all, free_all);
}
