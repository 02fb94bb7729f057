/* SPDX-License-Identifier: Apache-2.0 */
/* The protocol codec against bad input: every argument of every op with every
 * wrong type, every limit at and just past its boundary, garbage, truncation,
 * hostile keys, replies and events a broken daemon could send, the JSON
 * bridge, and a mutation loop over the golden vectors that must never crash
 * (run it under ASan: the sanitizer build does). */
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

/* ---- building requests by hand (msgpack-c), so any type can go anywhere ---- */

typedef struct buf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} buf;

static void buf_init(buf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void buf_done(buf *b)
{
    msgpack_sbuffer_destroy(&b->sb);
}

static void str(msgpack_packer *pk, const char *s)
{
    gw_proto_pack_cstr(pk, s);
}

/* {v: [1, 0], id: 9, op: OP, args: {<n_args entries follow>} */
static void head(msgpack_packer *pk, const char *op, size_t n_args)
{
    msgpack_pack_map(pk, 4);
    str(pk, "v");
    gw_proto_pack_version(pk);
    str(pk, "id");
    msgpack_pack_uint64(pk, 9);
    str(pk, "op");
    str(pk, op);
    str(pk, "args");
    msgpack_pack_map(pk, n_args);
}

static int decode(const buf *b, gw_proto_endpoint ep, gw_proto_request *req, gw_proto_error *err)
{
    return gw_proto_request_decode(req, b->sb.data, b->sb.size, ep, err);
}

static void expect_error(const void *data, size_t len, gw_proto_endpoint ep, gw_proto_code code, const char *field,
                         const char *message)
{
    gw_proto_request req;
    gw_proto_error err;
    int r = gw_proto_request_decode(&req, data, len, ep, &err);
    if (r == 0)
        fail_msg("accepted, expected %s '%s'", gw_proto_code_name(code), message);
    if (err.code != code || strcmp(err.field, field) || (message && strcmp(err.message, message)))
        fail_msg("got %s field '%s' '%s'\n  want %s field '%s' '%s'", gw_proto_code_name(err.code), err.field,
                 err.message, gw_proto_code_name(code), field, message ? message : "*");
    gw_proto_request_done(&req);
}

static void expect_ok(const void *data, size_t len, gw_proto_endpoint ep)
{
    gw_proto_request req;
    gw_proto_error err;
    if (gw_proto_request_decode(&req, data, len, ep, &err) < 0)
        fail_msg("refused: %s field '%s': %s", gw_proto_code_name(err.code), err.field, err.message);
    gw_proto_request_done(&req);
}

/* ---- error codes ---- */

static void error_codes_names_and_errnos(void **state)
{
    static const struct {
        gw_proto_code code;
        const char *name;
        int err;
    } want[] = {
        { GW_PROTO_MALFORMED, "malformed", -EPROTO },
        { GW_PROTO_TOO_LARGE, "too_large", -EMSGSIZE },
        { GW_PROTO_UNSUPPORTED_VERSION, "unsupported_version", -EPROTONOSUPPORT },
        { GW_PROTO_UNKNOWN_OP, "unknown_op", -EOPNOTSUPP },
        { GW_PROTO_INVALID_ARGUMENT, "invalid_argument", -EINVAL },
        { GW_PROTO_MISSING_FIELD, "missing_field", -EINVAL },
        { GW_PROTO_FORBIDDEN, "forbidden", -EACCES },
        { GW_PROTO_NOT_FOUND, "not_found", -ENOENT },
        { GW_PROTO_CONFLICT, "conflict", -EEXIST },
        { GW_PROTO_ILLEGAL_TRANSITION, "illegal_transition", -EPERM },
        { GW_PROTO_BUSY, "busy", -EBUSY },
        { GW_PROTO_INTERNAL, "internal", -EIO },
        { GW_PROTO_UNAVAILABLE, "unavailable", -EAGAIN },
    };
    assert_int_equal(sizeof want / sizeof want[0], GW_PROTO_CODE_COUNT - 1);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(want[i].code, (int)i + 1);
        assert_string_equal(gw_proto_code_name(want[i].code), want[i].name);
        assert_int_equal(gw_proto_code_errno(want[i].code), want[i].err);
        gw_proto_code c;
        assert_int_equal(gw_proto_code_from_name(want[i].name, &c), 0);
        assert_int_equal(c, want[i].code);
    }
    gw_proto_code c;
    assert_int_equal(gw_proto_code_from_name("ok", &c), -EINVAL);
    assert_int_equal(gw_proto_code_from_name("gone_fishing", &c), -EINVAL);
    assert_string_equal(gw_proto_code_name(GW_PROTO_OK), "ok");
    assert_string_equal(gw_proto_code_name((gw_proto_code)99), "invalid");
    assert_int_equal(gw_proto_code_errno(GW_PROTO_OK), 0);
}

/* An error message cut to its buffer never ends inside a UTF-8 character:
 * both clients reject a reply with invalid UTF-8 as malformed. A domain
 * name of 2-, 3- and 4-byte characters, at every alignment. */
static void error_message_cut_stays_utf8(void **state)
{
    (void)state;
    const char *chars[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x90\xb3" };
    for (size_t c = 0; c < 3; c++) {
        for (size_t shift = 0; shift < 4; shift++) {
            char name[1200] = "";
            for (size_t i = 0; i < shift; i++)
                strcat(name, "x");
            while (strlen(name) + 4 < sizeof name - 1)
                strcat(name, chars[c]);
            gw_proto_error e;
            gw_proto_errorf(&e, GW_PROTO_CONFLICT, name, "in use by domain '%s'", name);
            assert_true(strlen(e.message) < sizeof e.message);
            assert_true(strlen(e.message) >= sizeof e.message - 4);
            assert_true(gw_proto_utf8_valid(e.message, strlen(e.message)));
            assert_true(gw_proto_utf8_valid(e.field, strlen(e.field)));
        }
    }
}

static void op_table(void **state)
{
    static const char *const names[GW_OP_COUNT] = { "hello", "inventory", "published", "devices", "device",
        "quarantine", "release", "sanitize", "audit", "attached", "released", "gate", "metrics", "maintenance" };
    static const bool read[GW_OP_COUNT] = { 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 0 };
    for (int i = 0; i < GW_OP_COUNT; i++) {
        assert_string_equal(gw_proto_op_name((gw_proto_op)i), names[i]);
        assert_int_equal(gw_proto_op_from_name(names[i], strlen(names[i])), i);
        assert_int_equal(gw_proto_op_is_read((gw_proto_op)i), read[i]);
    }
    assert_int_equal(gw_proto_op_from_name("devicesx", 8), -1);
    assert_int_equal(gw_proto_op_from_name("device", 5), -1);
}

/* ---- every argument of every op ---- */

typedef enum kind { K_BDF, K_TEXT, K_STATE, K_UINT, K_BOOL, K_LIST } kind;

typedef struct arg {
    const char *name;
    kind kind;
    uint64_t ok_uint;
} arg;

static const struct {
    const char *op;
    arg args[3];
    size_t n;
} op_args[] = {
    { "hello", { { "client", K_TEXT, 0 } }, 1 },
    { "published", { { "generation", K_UINT, 1 } }, 1 },
    { "devices", { { "state", K_STATE, 0 } }, 1 },
    { "device", { { "address", K_BDF, 0 } }, 1 },
    { "quarantine", { { "address", K_BDF, 0 }, { "reason", K_TEXT, 0 } }, 2 },
    { "release", { { "address", K_BDF, 0 }, { "reason", K_TEXT, 0 } }, 2 },
    { "sanitize", { { "address", K_BDF, 0 } }, 1 },
    { "audit", { { "device", K_BDF, 0 }, { "since", K_UINT, 0 }, { "limit", K_UINT, 1 } }, 3 },
    { "attached", { { "domain", K_TEXT, 0 }, { "addresses", K_LIST, 0 } }, 2 },
    { "released", { { "domain", K_TEXT, 0 }, { "addresses", K_LIST, 0 } }, 2 },
    { "gate", { { "domain", K_TEXT, 0 }, { "addresses", K_LIST, 0 } }, 2 },
    { "maintenance", { { "address", K_BDF, 0 }, { "on", K_BOOL, 0 }, { "reason", K_TEXT, 0 } }, 3 },
};

static const char *const expected_what[] = {
    [K_BDF] = "a PCI address string", [K_TEXT] = "a string", [K_STATE] = "a state name string",
    [K_UINT] = "an unsigned integer", [K_BOOL] = "a boolean", [K_LIST] = "an array of PCI address strings",
};

static void pack_valid(msgpack_packer *pk, const arg *a)
{
    switch (a->kind) {
    case K_BDF: str(pk, "0000:3b:00.0"); break;
    case K_TEXT: str(pk, "x"); break;
    case K_STATE: str(pk, "allocatable"); break;
    case K_UINT: msgpack_pack_uint64(pk, a->ok_uint); break;
    case K_BOOL: msgpack_pack_false(pk); break;
    case K_LIST: msgpack_pack_array(pk, 1); str(pk, "0000:3b:00.0"); break;
    }
}

enum { W_NIL, W_BOOL, W_INT, W_NEG, W_FLOAT, W_STR, W_BIN, W_ARRAY, W_MAP, W_COUNT };
static const char *const wrong_name[W_COUNT] = { "nil", "boolean", "integer", "negative integer", "float",
                                                 "string", "binary", "array", "map" };

static void pack_wrong(msgpack_packer *pk, int w)
{
    switch (w) {
    case W_NIL: msgpack_pack_nil(pk); break;
    case W_BOOL: msgpack_pack_true(pk); break;
    case W_INT: msgpack_pack_uint64(pk, 5); break;
    case W_NEG: msgpack_pack_int64(pk, -5); break;
    case W_FLOAT: msgpack_pack_double(pk, 1.5); break;
    case W_STR: str(pk, "text"); break;
    case W_BIN: msgpack_pack_bin(pk, 1); msgpack_pack_bin_body(pk, "\x01", 1); break;
    case W_ARRAY: msgpack_pack_array(pk, 1); msgpack_pack_uint64(pk, 1); break;
    case W_MAP: msgpack_pack_map(pk, 0); break;
    }
}

static bool right_type(kind k, int w)
{
    return (w == W_STR && (k == K_BDF || k == K_TEXT || k == K_STATE)) || (w == W_INT && k == K_UINT) ||
           (w == W_BOOL && k == K_BOOL) || (w == W_ARRAY && k == K_LIST);
}

static void every_argument_with_every_wrong_type(void **state)
{
    size_t cases = 0, ops_seen = 0;
    for (size_t o = 0; o < sizeof op_args / sizeof op_args[0]; o++, ops_seen++) {
        for (size_t t = 0; t < op_args[o].n; t++) {
            const arg *target = &op_args[o].args[t];
            for (int w = 0; w < W_COUNT; w++) {
                if (right_type(target->kind, w))
                    continue;
                buf b;
                buf_init(&b);
                head(&b.pk, op_args[o].op, op_args[o].n);
                for (size_t i = 0; i < op_args[o].n; i++) {
                    str(&b.pk, op_args[o].args[i].name);
                    if (i == t)
                        pack_wrong(&b.pk, w);
                    else
                        pack_valid(&b.pk, &op_args[o].args[i]);
                }
                char field[64], msg[160];
                snprintf(field, sizeof field, "args.%s", target->name);
                snprintf(msg, sizeof msg, "%s: expected %s, got %s", field, expected_what[target->kind],
                         wrong_name[w]);
                expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_INVALID_ARGUMENT, field, msg);
                buf_done(&b);
                cases++;
            }
            /* and the valid request passes */
            buf b;
            buf_init(&b);
            head(&b.pk, op_args[o].op, op_args[o].n);
            for (size_t i = 0; i < op_args[o].n; i++) {
                str(&b.pk, op_args[o].args[i].name);
                pack_valid(&b.pk, &op_args[o].args[i]);
            }
            expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN);
            buf_done(&b);
        }
    }
    assert_int_equal(ops_seen, 12);     /* every op with arguments; inventory and metrics take none */
    assert_int_equal(cases, 21 * 8);    /* 21 arguments, 8 wrong types each */
}

static void list_items_with_every_wrong_type(void **state)
{
    for (int w = 0; w < W_COUNT; w++) {
        if (w == W_STR)
            continue;
        buf b;
        buf_init(&b);
        head(&b.pk, "gate", 2);
        str(&b.pk, "domain");
        str(&b.pk, "d");
        str(&b.pk, "addresses");
        msgpack_pack_array(&b.pk, 2);
        str(&b.pk, "0000:3b:00.0");
        pack_wrong(&b.pk, w);
        char msg[160];
        snprintf(msg, sizeof msg, "args.addresses[1]: expected a PCI address string, got %s", wrong_name[w]);
        expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_INVALID_ARGUMENT, "args.addresses[1]", msg);
        buf_done(&b);
    }
}

static void every_required_argument_missing(void **state)
{
    static const struct {
        const char *op;
        const char *present[2];
        const char *missing;
    } cases[] = {
        { "published", { NULL }, "generation" },
        { "device", { NULL }, "address" },
        { "quarantine", { "reason" }, "address" },
        { "quarantine", { "address" }, "reason" },
        { "release", { NULL }, "address" },
        { "sanitize", { NULL }, "address" },
        { "attached", { "addresses" }, "domain" },
        { "attached", { "domain" }, "addresses" },
        { "released", { "addresses" }, "domain" },
        { "released", { "domain" }, "addresses" },
        { "gate", { "addresses" }, "domain" },
        { "gate", { "domain" }, "addresses" },
        { "maintenance", { NULL }, "address" },
        { "maintenance", { "address" }, "on" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b;
        buf_init(&b);
        size_t n = cases[i].present[0] ? 1 : 0;
        head(&b.pk, cases[i].op, n);
        if (n) {
            str(&b.pk, cases[i].present[0]);
            const char *p = cases[i].present[0];
            if (!strcmp(p, "addresses")) {
                msgpack_pack_array(&b.pk, 1);
                str(&b.pk, "0000:3b:00.0");
            } else {
                str(&b.pk, !strcmp(p, "address") ? "0000:3b:00.0" : "x");
            }
        }
        char field[64], msg[128];
        snprintf(field, sizeof field, "args.%s", cases[i].missing);
        snprintf(msg, sizeof msg, "%s: required but missing", field);
        expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_MISSING_FIELD, field, msg);
        buf_done(&b);
    }
}

/* Values of the right type that are still wrong, with their exact messages. */
static void argument_values(void **state)
{
    static const struct {
        const char *op, *name, *value;
        const char *msg;
    } texts[] = {
        { "device", "address", "0000:3B:00.0",
          "args.address: '0000:3B:00.0' is not a canonical PCI address (dddd:bb:dd.f, lower-case hex)" },
        { "device", "address", "3b:00.0",
          "args.address: '3b:00.0' is not a canonical PCI address (dddd:bb:dd.f, lower-case hex)" },
        { "device", "address", "0000:3b:20.0",
          "args.address: '0000:3b:20.0' is not a canonical PCI address (dddd:bb:dd.f, lower-case hex)" },
        { "device", "address", "0000:3b:00.0\n",
          "args.address: '0000:3b:00.0?' is not a canonical PCI address (dddd:bb:dd.f, lower-case hex)" },
        { "devices", "state", "broken",
          "args.state: 'broken' is not a state (discovered, sanitized, allocatable, attached, quarantined)" },
        { "hello", "client", "", "args.client: must not be empty" },
        { "release", "reason", "", "args.reason: must not be empty" },
        { "release", "reason", "bad \xc3\x28 utf8", "args.reason: not valid UTF-8" },
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        buf b;
        buf_init(&b);
        bool addr = strcmp(texts[i].name, "address") && !strcmp(texts[i].op, "release");
        head(&b.pk, texts[i].op, addr ? 2 : 1);
        if (addr) {
            str(&b.pk, "address");
            str(&b.pk, "0000:3b:00.0");
        }
        str(&b.pk, texts[i].name);
        str(&b.pk, texts[i].value);
        char field[64];
        snprintf(field, sizeof field, "args.%s", texts[i].name);
        expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_INVALID_ARGUMENT, field, texts[i].msg);
        buf_done(&b);
    }
    static const struct {
        const char *op, *name;
        uint64_t value;
        const char *msg;
    } uints[] = {
        { "published", "generation", 0, "args.generation: 0 is out of range 1..9223372036854775807" },
        { "published", "generation", 1ULL << 63,
          "args.generation: 9223372036854775808 is out of range 1..9223372036854775807" },
        { "audit", "limit", 0, "args.limit: 0 is out of range 1..1000" },
        { "audit", "limit", 1001, "args.limit: 1001 is out of range 1..1000" },
        { "audit", "since", UINT64_MAX, "args.since: 18446744073709551615 is out of range 0..9223372036854775807" },
    };
    for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++) {
        buf b;
        buf_init(&b);
        head(&b.pk, uints[i].op, 1);
        str(&b.pk, uints[i].name);
        msgpack_pack_uint64(&b.pk, uints[i].value);
        char field[64];
        snprintf(field, sizeof field, "args.%s", uints[i].name);
        expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_INVALID_ARGUMENT, field, uints[i].msg);
        buf_done(&b);
    }
    /* reason: 1024 bytes pass, 1025 fail; a NUL inside fails */
    char reason[1026];
    memset(reason, 'r', sizeof reason);
    for (size_t n = 1024; n <= 1025; n++) {
        buf b;
        buf_init(&b);
        head(&b.pk, "quarantine", 2);
        str(&b.pk, "address");
        str(&b.pk, "0000:3b:00.0");
        str(&b.pk, "reason");
        msgpack_pack_str(&b.pk, n);
        msgpack_pack_str_body(&b.pk, reason, n);
        if (n == 1024)
            expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN);
        else
            expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_INVALID_ARGUMENT, "args.reason",
                         "args.reason: 1025 bytes, at most 1024");
        buf_done(&b);
    }
    /* maintenance: the same reason bounds (an admin op, PROTOCOL.md §2),
     * after a boolean `on`; an empty reason is refused too */
    for (size_t n = 0; n <= 1025; n += n == 0 ? 1024 : 1) {
        buf b;
        buf_init(&b);
        head(&b.pk, "maintenance", 3);
        str(&b.pk, "address");
        str(&b.pk, "0000:3b:00.0");
        str(&b.pk, "on");
        msgpack_pack_true(&b.pk);
        str(&b.pk, "reason");
        msgpack_pack_str(&b.pk, n);
        msgpack_pack_str_body(&b.pk, reason, n);
        if (n == 1024)
            expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN);
        else
            expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_INVALID_ARGUMENT, "args.reason",
                         n ? "args.reason: 1025 bytes, at most 1024" : "args.reason: must not be empty");
        buf_done(&b);
    }
    buf b;
    buf_init(&b);
    head(&b.pk, "quarantine", 2);
    str(&b.pk, "address");
    str(&b.pk, "0000:3b:00.0");
    str(&b.pk, "reason");
    msgpack_pack_str(&b.pk, 3);
    msgpack_pack_str_body(&b.pk, "a\0b", 3);
    expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_INVALID_ARGUMENT, "args.reason",
                 "args.reason: contains a NUL byte");
    buf_done(&b);
}

static void address_lists(void **state)
{
    for (size_t n = 64; n <= 65; n++) {
        buf b;
        buf_init(&b);
        head(&b.pk, "gate", 2);
        str(&b.pk, "domain");
        str(&b.pk, "d");
        str(&b.pk, "addresses");
        msgpack_pack_array(&b.pk, n);
        for (size_t i = 0; i < n; i++) {
            char a[GW_ADDR_LEN];
            snprintf(a, sizeof a, "0000:%02zx:00.0", i);
            str(&b.pk, a);
        }
        if (n == 64) {
            gw_proto_request req;
            gw_proto_error err;
            assert_int_equal(decode(&b, GW_ENDPOINT_READ, &req, &err), 0);
            assert_int_equal(req.args.n_addresses, 64);
            assert_string_equal(req.args.addresses[63], "0000:3f:00.0");
            gw_proto_request_done(&req);
        } else {
            expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_READ, GW_PROTO_INVALID_ARGUMENT, "args.addresses",
                         "args.addresses: 65 addresses, at most 64");
        }
        buf_done(&b);
    }
    buf b;
    buf_init(&b);
    head(&b.pk, "released", 2);
    str(&b.pk, "domain");
    str(&b.pk, "d");
    str(&b.pk, "addresses");
    msgpack_pack_array(&b.pk, 3);
    str(&b.pk, "0000:3b:00.0");
    str(&b.pk, "0000:3c:00.0");
    str(&b.pk, "0000:3b:00.0");
    expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_INVALID_ARGUMENT, "args.addresses[2]",
                 "args.addresses[2]: duplicate address '0000:3b:00.0'");
    buf_done(&b);
}

/* ---- envelope ---- */

static void envelope(void **state)
{
    buf b;
    /* version 99 wins over a missing id; the id is echoed when it was readable */
    buf_init(&b);
    msgpack_pack_map(&b.pk, 2);
    str(&b.pk, "v");
    msgpack_pack_array(&b.pk, 2);
    msgpack_pack_uint64(&b.pk, 99);
    msgpack_pack_uint64(&b.pk, 3);
    str(&b.pk, "op");
    str(&b.pk, "hello");
    expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_UNSUPPORTED_VERSION, "v",
                 "v: protocol version 99.3 is not supported; this daemon speaks 1");
    buf_done(&b);

    /* a 1.9 request is served; args may be left out */
    buf_init(&b);
    msgpack_pack_map(&b.pk, 3);
    str(&b.pk, "v");
    msgpack_pack_array(&b.pk, 2);
    msgpack_pack_uint64(&b.pk, 1);
    msgpack_pack_uint64(&b.pk, 9);
    str(&b.pk, "id");
    msgpack_pack_uint64(&b.pk, 0);
    str(&b.pk, "op");
    str(&b.pk, "metrics");
    gw_proto_request req;
    gw_proto_error err;
    assert_int_equal(decode(&b, GW_ENDPOINT_READ, &req, &err), 0);
    assert_int_equal(req.op, GW_OP_METRICS);
    assert_true(req.has_id);
    assert_int_equal(req.id, 0);
    assert_int_equal(req.minor, 9);
    gw_proto_request_done(&req);
    buf_done(&b);

    /* v [1, 65536], v [1, -1], id float, unknown op with a hostile name, actor too long */
    static const char *const vs[] = { "v: expected [major, minor], two unsigned integers up to 65535" };
    buf_init(&b);
    msgpack_pack_map(&b.pk, 3);
    str(&b.pk, "v");
    msgpack_pack_array(&b.pk, 2);
    msgpack_pack_uint64(&b.pk, 1);
    msgpack_pack_uint64(&b.pk, 65536);
    str(&b.pk, "id");
    msgpack_pack_uint64(&b.pk, 1);
    str(&b.pk, "op");
    str(&b.pk, "hello");
    expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_MALFORMED, "v", vs[0]);
    buf_done(&b);

    buf_init(&b);
    msgpack_pack_map(&b.pk, 3);
    str(&b.pk, "v");
    gw_proto_pack_version(&b.pk);
    str(&b.pk, "id");
    msgpack_pack_double(&b.pk, 1.0);
    str(&b.pk, "op");
    str(&b.pk, "hello");
    expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_MALFORMED, "id",
                 "id: expected an unsigned integer, got float");
    gw_proto_request_decode(&req, b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, &err);
    assert_false(req.has_id);
    gw_proto_request_done(&req);
    buf_done(&b);

    buf_init(&b);
    head(&b.pk, "drop\ttables; \x01", 0);
    expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_UNKNOWN_OP, "op", "op: unknown op 'drop?tables; ?'");
    gw_proto_request_decode(&req, b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, &err);
    assert_true(req.has_id);
    assert_int_equal(req.id, 9);
    gw_proto_request_done(&req);
    buf_done(&b);

    char actor[258];
    memset(actor, 'a', sizeof actor - 1);
    actor[257] = '\0';
    buf_init(&b);
    msgpack_pack_map(&b.pk, 5);
    str(&b.pk, "v");
    gw_proto_pack_version(&b.pk);
    str(&b.pk, "id");
    msgpack_pack_uint64(&b.pk, 1);
    str(&b.pk, "op");
    str(&b.pk, "hello");
    str(&b.pk, "args");
    msgpack_pack_map(&b.pk, 0);
    str(&b.pk, "actor");
    str(&b.pk, actor);
    expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN, GW_PROTO_MALFORMED, "actor",
                 "actor: 257 bytes, at most 256");
    buf_done(&b);
}

/* Every op on the read endpoint: read ops pass, the others are forbidden
 * before their arguments are looked at. */
static void read_endpoint_access(void **state)
{
    for (int o = 0; o < GW_OP_COUNT; o++) {
        buf b;
        buf_init(&b);
        head(&b.pk, gw_proto_op_name((gw_proto_op)o), 0);   /* no args: required ones are missing */
        gw_proto_request req;
        gw_proto_error err;
        int r = decode(&b, GW_ENDPOINT_READ, &req, &err);
        if (gw_proto_op_is_read((gw_proto_op)o)) {
            assert_true(r == 0 || err.code == GW_PROTO_MISSING_FIELD);
        } else {
            assert_int_equal(r, -1);
            assert_int_equal(err.code, GW_PROTO_FORBIDDEN);
            char msg[96];
            snprintf(msg, sizeof msg, "op: '%s' is not served on the read endpoint", gw_proto_op_name((gw_proto_op)o));
            assert_string_equal(err.message, msg);
        }
        gw_proto_request_done(&req);
        /* the admin endpoint serves all: only the arguments can be missing */
        r = decode(&b, GW_ENDPOINT_ADMIN, &req, &err);
        assert_true(r == 0 || err.code == GW_PROTO_MISSING_FIELD);
        gw_proto_request_done(&req);
        buf_done(&b);
    }
}

/* ---- limits, at and past each boundary ---- */

/* A devices request padded with an unknown argument to exactly `size` bytes. */
static void padded(buf *b, size_t size)
{
    static char filler[GW_PROTO_MAX_REQUEST_STR];
    memset(filler, 'p', sizeof filler);
    for (size_t last = 0;;) {
        buf_init(b);
        head(&b->pk, "devices", 1);
        str(&b->pk, "pad");
        size_t full = size / (GW_PROTO_MAX_REQUEST_STR + 3);
        msgpack_pack_array(&b->pk, full + 1);
        for (size_t i = 0; i < full; i++) {
            msgpack_pack_str(&b->pk, GW_PROTO_MAX_REQUEST_STR);
            msgpack_pack_str_body(&b->pk, filler, GW_PROTO_MAX_REQUEST_STR);
        }
        msgpack_pack_str(&b->pk, last);
        msgpack_pack_str_body(&b->pk, filler, last);
        if (b->sb.size == size)
            return;
        long diff = (long)size - (long)b->sb.size;
        buf_done(b);
        last = (size_t)((long)last + diff);     /* the str header may grow: converges in 3 rounds */
        assert_true(last <= GW_PROTO_MAX_REQUEST_STR);
    }
}

static void size_limit(void **state)
{
    buf b;
    padded(&b, GW_PROTO_MAX_REQUEST);
    expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_READ);
    buf_done(&b);
    padded(&b, GW_PROTO_MAX_REQUEST + 1);
    expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_READ, GW_PROTO_TOO_LARGE, "",
                 "message of 65537 bytes, limit 65536");
    buf_done(&b);
}

static void string_array_map_depth_limits(void **state)
{
    static char s[GW_PROTO_MAX_REQUEST_STR + 1];
    memset(s, 's', sizeof s);
    for (size_t n = GW_PROTO_MAX_REQUEST_STR; n <= GW_PROTO_MAX_REQUEST_STR + 1; n++) {
        buf b;
        buf_init(&b);
        head(&b.pk, "devices", 1);
        str(&b.pk, "note");
        msgpack_pack_str(&b.pk, n);
        msgpack_pack_str_body(&b.pk, s, n);
        if (n == GW_PROTO_MAX_REQUEST_STR)
            expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_READ);
        else
            expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_READ, GW_PROTO_TOO_LARGE, "args.note",
                         "args.note: string of 4097 bytes, limit 4096");
        buf_done(&b);
        /* bin counts the same */
        buf_init(&b);
        head(&b.pk, "devices", 1);
        str(&b.pk, "blob");
        msgpack_pack_bin(&b.pk, n);
        msgpack_pack_bin_body(&b.pk, s, n);
        if (n == GW_PROTO_MAX_REQUEST_STR)
            expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_READ);
        else
            expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_READ, GW_PROTO_TOO_LARGE, "args.blob",
                         "args.blob: binary of 4097 bytes, limit 4096");
        buf_done(&b);
    }
    for (size_t n = GW_PROTO_MAX_REQUEST_ARRAY; n <= GW_PROTO_MAX_REQUEST_ARRAY + 1; n++) {
        buf b;
        buf_init(&b);
        head(&b.pk, "devices", 1);
        str(&b.pk, "list");
        msgpack_pack_array(&b.pk, n);
        for (size_t i = 0; i < n; i++)
            msgpack_pack_nil(&b.pk);
        if (n == GW_PROTO_MAX_REQUEST_ARRAY)
            expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_READ);
        else
            expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_READ, GW_PROTO_TOO_LARGE, "args.list",
                         "args.list: array of 257 elements, limit 256");
        buf_done(&b);
    }
    for (size_t n = GW_PROTO_MAX_REQUEST_MAP; n <= GW_PROTO_MAX_REQUEST_MAP + 1; n++) {
        buf b;
        buf_init(&b);
        head(&b.pk, "devices", n);
        for (size_t i = 0; i < n; i++) {
            char k[16];
            snprintf(k, sizeof k, "k%zu", i);
            str(&b.pk, k);
            msgpack_pack_true(&b.pk);
        }
        if (n == GW_PROTO_MAX_REQUEST_MAP)
            expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_READ);
        else
            expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_READ, GW_PROTO_TOO_LARGE, "args",
                         "args: map of 65 entries, limit 64");
        buf_done(&b);
    }
    /* body = depth 1, args = 2, x = 3: 6 more arrays reach depth 8; 7 more go past */
    for (unsigned extra = 5; extra <= 6; extra++) {
        buf b;
        buf_init(&b);
        head(&b.pk, "devices", 1);
        str(&b.pk, "x");
        for (unsigned i = 0; i <= extra; i++)
            msgpack_pack_array(&b.pk, 1);
        msgpack_pack_uint64(&b.pk, 1);
        if (extra == 5)
            expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_READ);
        else
            expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_READ, GW_PROTO_TOO_LARGE, "args.x[0][0][0][0][0][0]",
                         "args.x[0][0][0][0][0][0]: nesting deeper than 8");
        buf_done(&b);
    }
    /* a map header announcing more entries than there are bytes left: truncated, nothing allocated */
    static const uint8_t lying[] = { 0x81, 0xa1, 'v', 0xdd, 0x00, 0x00, 0x00, 0xff };
    expect_error(lying, sizeof lying, GW_ENDPOINT_ADMIN, GW_PROTO_MALFORMED, "v",
                 "v: truncated: the value at offset 3 runs past the end (8 bytes)");
}

/* A hostile key in a path is printed as printable ASCII, 48 bytes at most. */
static void hostile_keys_in_paths(void **state)
{
    char key[100];
    memset(key, 'k', sizeof key);
    key[0] = '\n';
    key[1] = (char)0xff;
    buf b;
    buf_init(&b);
    head(&b.pk, "devices", 1);
    msgpack_pack_str(&b.pk, sizeof key);
    msgpack_pack_str_body(&b.pk, key, sizeof key);
    msgpack_pack_str(&b.pk, GW_PROTO_MAX_REQUEST_STR + 1);
    static char s[GW_PROTO_MAX_REQUEST_STR + 1];
    msgpack_pack_str_body(&b.pk, s, sizeof s);
    char want[128];
    snprintf(want, sizeof want, "args.??%.46s...", key + 2);
    gw_proto_request req;
    gw_proto_error err;
    assert_int_equal(decode(&b, GW_ENDPOINT_READ, &req, &err), -1);
    assert_int_equal(err.code, GW_PROTO_TOO_LARGE);
    assert_string_equal(err.field, want);
    gw_proto_request_done(&req);
    buf_done(&b);

    /* a duplicate key inside args */
    buf_init(&b);
    head(&b.pk, "device", 2);
    str(&b.pk, "address");
    str(&b.pk, "0000:3b:00.0");
    str(&b.pk, "address");
    str(&b.pk, "0000:3c:00.0");
    expect_error(b.sb.data, b.sb.size, GW_ENDPOINT_READ, GW_PROTO_MALFORMED, "args.address",
                 "args.address: duplicate key");
    buf_done(&b);
}

/* ---- garbage and truncation ---- */

static void every_single_byte(void **state)
{
    for (int c = 0; c < 256; c++) {
        uint8_t one = (uint8_t)c;
        gw_proto_request req;
        gw_proto_error err;
        assert_int_equal(gw_proto_request_decode(&req, &one, 1, GW_ENDPOINT_ADMIN, &err), -1);
        if (c == 0x80)          /* {} */
            assert_int_equal(err.code, GW_PROTO_MISSING_FIELD);
        else
            assert_int_equal(err.code, GW_PROTO_MALFORMED);
        assert_true(err.message[0] != '\0');
        gw_proto_request_done(&req);
    }
    expect_error("\xc1", 1, GW_ENDPOINT_ADMIN, GW_PROTO_MALFORMED, "",
                 "not msgpack: byte 0xc1 at offset 0 is not a valid type");
    expect_error("\x01", 1, GW_ENDPOINT_ADMIN, GW_PROTO_MALFORMED, "", "expected a map at the top level, got integer");
    expect_error("\xd4\x01\x00", 3, GW_ENDPOINT_ADMIN, GW_PROTO_MALFORMED, "",
                 "ext type 0xd4 at offset 0 is not used by the protocol");
    expect_error("", 0, GW_ENDPOINT_ADMIN, GW_PROTO_MALFORMED, "", "empty message");
    expect_error("\x80\x80", 2, GW_ENDPOINT_ADMIN, GW_PROTO_MALFORMED, "", "1 trailing bytes after the message at offset 1");
}

static void every_prefix_is_truncated(void **state)
{
    buf b;
    buf_init(&b);
    head(&b.pk, "gate", 2);
    str(&b.pk, "domain");
    str(&b.pk, "instance-0000002a");
    str(&b.pk, "addresses");
    msgpack_pack_array(&b.pk, 2);
    str(&b.pk, "0000:3b:00.0");
    str(&b.pk, "0000:3c:00.0");
    expect_ok(b.sb.data, b.sb.size, GW_ENDPOINT_ADMIN);
    for (size_t n = 1; n < b.sb.size; n++) {
        gw_proto_request req;
        gw_proto_error err;
        assert_int_equal(gw_proto_request_decode(&req, b.sb.data, n, GW_ENDPOINT_ADMIN, &err), -1);
        assert_int_equal(err.code, GW_PROTO_MALFORMED);
        assert_non_null(strstr(err.message, "truncated: the value at offset"));
        gw_proto_request_done(&req);
    }
    buf_done(&b);
}

/* ---- replies and events a broken or newer daemon could send ---- */

static int reply_of(const char *json, gw_proto_reply *rep, gw_proto_error *err)
{
    json_error_t jerr;
    json_t *j = json_loads(json, 0, &jerr);
    assert_non_null(j);
    buf b;
    buf_init(&b);
    assert_int_equal(gw_proto_pack_json(&b.pk, j, err), 0);
    json_decref(j);
    /* the reply points into the buffer: keep it in a static for the caller's checks */
    static char keep[4096];
    assert_true(b.sb.size <= sizeof keep);
    memcpy(keep, b.sb.data, b.sb.size);
    size_t n = b.sb.size;
    buf_done(&b);
    return gw_proto_reply_decode(rep, keep, n, err);
}

static void replies_from_a_broken_daemon(void **state)
{
    gw_proto_reply rep;
    gw_proto_error err;
    assert_int_equal(reply_of("{\"v\":[1,3],\"id\":5,\"ok\":false,\"error\":{\"code\":\"gone_fishing\","
                              "\"message\":\"m\",\"field\":null},\"extra\":1}", &rep, &err), 0);
    assert_int_equal(rep.code, GW_PROTO_INTERNAL);
    assert_string_equal(rep.code_name, "gone_fishing");
    assert_string_equal(rep.message, "m");
    assert_null(rep.field);
    assert_int_equal(rep.minor, 3);
    gw_proto_reply_done(&rep);

    static const struct {
        const char *json;
        gw_proto_code code;
        const char *field, *message;
    } bad[] = {
        { "{\"v\":[2,0],\"id\":1,\"ok\":true,\"result\":{}}", GW_PROTO_UNSUPPORTED_VERSION, "v",
          "reply: protocol version 2.0; this library speaks 1" },
        { "{\"v\":1,\"id\":1,\"ok\":true,\"result\":{}}", GW_PROTO_MALFORMED, "v", "reply: v: expected [major, minor]" },
        { "{\"v\":[1,0],\"id\":\"1\",\"ok\":true,\"result\":{}}", GW_PROTO_MALFORMED, "id",
          "reply: id: expected an unsigned integer or nil, got string" },
        { "{\"v\":[1,0],\"id\":1,\"result\":{}}", GW_PROTO_MALFORMED, "ok", "reply: ok: expected a boolean, got nothing" },
        { "{\"v\":[1,0],\"id\":1,\"ok\":true,\"result\":[]}", GW_PROTO_MALFORMED, "result",
          "reply: result: expected a map, got array" },
        { "{\"v\":[1,0],\"id\":1,\"ok\":false}", GW_PROTO_MALFORMED, "error", "reply: error: expected a map, got nothing" },
        { "{\"v\":[1,0],\"id\":1,\"ok\":false,\"error\":{\"code\":3,\"message\":\"m\"}}", GW_PROTO_MALFORMED, "code",
          "reply error: code: expected a string, got integer" },
        { "[1]", GW_PROTO_MALFORMED, "", "reply: expected a map at the top level, got array" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(reply_of(bad[i].json, &rep, &err), -1);
        if (err.code != bad[i].code || strcmp(err.field, bad[i].field) || strcmp(err.message, bad[i].message))
            fail_msg("%s: got %s '%s' '%s'", bad[i].json, gw_proto_code_name(err.code), err.field, err.message);
        gw_proto_reply_done(&rep);
    }

    /* over the reply size limit */
    size_t big = GW_PROTO_MAX_REPLY + 1;
    char *huge = gw_xcalloc(big, 1);
    huge[0] = (char)0x80;
    assert_int_equal(gw_proto_reply_decode(&rep, huge, big, &err), -1);
    assert_int_equal(err.code, GW_PROTO_TOO_LARGE);
    assert_string_equal(err.message, "message of 8388609 bytes, limit 8388608");
    gw_proto_reply_done(&rep);
    free(huge);
}

static void events_from_a_broken_daemon(void **state)
{
    static const struct {
        const char *json, *message;
    } bad[] = {
        { "{\"v\":[1,0],\"boot\":1,\"time\":2,\"kind\":\"transition\",\"address\":\"0000:3b:00.0\"}",
          "event: seq: expected an unsigned integer, got nothing" },
        { "{\"v\":[1,0],\"seq\":-1,\"boot\":1,\"time\":2,\"kind\":\"transition\",\"address\":\"0000:3b:00.0\"}",
          "event: seq: expected an unsigned integer, got negative integer" },
        { "{\"v\":[1,0],\"seq\":1,\"boot\":1,\"time\":2,\"kind\":null,\"address\":\"0000:3b:00.0\"}",
          "event: kind: expected a string, got nil" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i].json, 0, NULL);
        buf b;
        buf_init(&b);
        gw_proto_error err;
        assert_int_equal(gw_proto_pack_json(&b.pk, j, &err), 0);
        gw_proto_event ev;
        assert_int_equal(gw_proto_event_decode(&ev, b.sb.data, b.sb.size, &err), -1);
        assert_int_equal(err.code, GW_PROTO_MALFORMED);
        assert_string_equal(err.message, bad[i].message);
        gw_proto_event_done(&ev);
        buf_done(&b);
        json_decref(j);
    }
}

/* ---- the JSON bridge ---- */

static void json_bridge(void **state)
{
    static const struct {
        const char *json, *message;
    } refused[] = {
        { "[1.5]", "1.5: floats are not used by the protocol" },
        { "{\"$u64\":\"123\"}", "{\"$u64\": ...} must hold the decimal form of 2^63..2^64-1" },
        { "{\"$u64\":\"18446744073709551616\"}", "{\"$u64\": ...} must hold the decimal form of 2^63..2^64-1" },
        { "{\"$u64\":\"0x8000000000000000\"}", "{\"$u64\": ...} must hold the decimal form of 2^63..2^64-1" },
        { "{\"$u64\":9}", "{\"$u64\": ...} must hold the decimal form of 2^63..2^64-1" },
        { "{\"$bin\":\"abc\"}", "{\"$bin\": ...} must hold lower-case hex" },
        { "{\"$bin\":\"zz\"}", "{\"$bin\": ...} must hold lower-case hex" },
        { "{\"$bin\":\"AB\"}", "{\"$bin\": ...} must hold lower-case hex" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        json_t *j = json_loads(refused[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        buf b;
        buf_init(&b);
        gw_proto_error err;
        assert_int_equal(gw_proto_pack_json(&b.pk, j, &err), -1);
        assert_int_equal(err.code, GW_PROTO_INVALID_ARGUMENT);
        assert_string_equal(err.message, refused[i].message);
        buf_done(&b);
        json_decref(j);
    }
    /* 2^63 and 2^64-1 as $u64; a two-key object with "$u64" is a plain map */
    json_t *j = json_loads("[{\"$u64\":\"9223372036854775808\"},{\"$u64\":\"18446744073709551615\"},"
                           "{\"$u64\":\"1\",\"x\":2},-9223372036854775808,{\"$bin\":\"00ff\"}]", 0, NULL);
    buf b;
    buf_init(&b);
    gw_proto_error err;
    assert_int_equal(gw_proto_pack_json(&b.pk, j, &err), 0);
    static const uint8_t want[] = { 0x95, 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x82, 0xa4, '$', 'u', '6', '4', 0xa1, '1', 0xa1, 'x', 0x02, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0,
        0xc4, 0x02, 0x00, 0xff };
    assert_int_equal(b.sb.size, sizeof want);
    assert_memory_equal(b.sb.data, want, sizeof want);
    /* and back */
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&msg, b.sb.data, b.sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    json_t *back;
    assert_int_equal(gw_proto_to_json(&msg.data, &back, &err), 0);
    assert_true(json_equal(j, back));
    json_decref(back);
    msgpack_unpacked_destroy(&msg);
    buf_done(&b);
    json_decref(j);

    /* msgpack that has no JSON form */
    static const struct {
        const char *bytes;
        size_t n;
        const char *message;
    } no_json[] = {
        { "\x91\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 10, "float values are not used by the protocol" },
        { "\x91\xd4\x01\x00", 4, "ext values are not used by the protocol" },
        { "\x91\xa2\xc3\x28", 4, "a string is not valid UTF-8" },
        { "\x82\xa1k\x01\xa1k\x02", 7, "duplicate key 'k'" },
        { "\x81\x01\x02", 3, "map key must be a string, got integer" },
        { "\x81\xa2k\x00\x01", 5, "a map key is not valid UTF-8 text" },
    };
    for (size_t i = 0; i < sizeof no_json / sizeof no_json[0]; i++) {
        msgpack_unpacked_init(&msg);
        off = 0;
        assert_int_equal(msgpack_unpack_next(&msg, no_json[i].bytes, no_json[i].n, &off), MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(gw_proto_to_json(&msg.data, &back, &err), -1);
        assert_int_equal(err.code, GW_PROTO_MALFORMED);
        assert_string_equal(err.message, no_json[i].message);
        msgpack_unpacked_destroy(&msg);
    }
    /* JSON nested deeper than 32 */
    char deep[80] = { 0 };
    memset(deep, '[', 34);
    memset(deep + 34, ']', 34);
    j = json_loads(deep, 0, NULL);
    assert_non_null(j);
    buf_init(&b);
    assert_int_equal(gw_proto_pack_json(&b.pk, j, &err), -1);
    assert_string_equal(err.message, "nesting deeper than 32");
    buf_done(&b);
    json_decref(j);
}

static void utf8(void **state)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        { "", true }, { "abc", true }, { "\xc3\xa9", true }, { "\xe2\x82\xac", true }, { "\xf0\x9f\x98\x80", true },
        { "\xf4\x8f\xbf\xbf", true }, { "\xc0\x80", false }, { "\xc1\xbf", false }, { "\xe0\x80\x80", false },
        { "\xed\xa0\x80", false }, { "\xf4\x90\x80\x80", false }, { "\xf5\x80\x80\x80", false }, { "\x80", false },
        { "\xe2\x82", false }, { "\xff", false }, { "a\xc3", false }, { "\xf0\x8f\xbf\xbf", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (gw_proto_utf8_valid(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("case %zu", i);
}

/* ---- mutations of the golden vectors: never a crash, always a sane answer ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void check_sane(int r, const gw_proto_error *err)
{
    assert_true(r == 0 || r == -1);
    if (r < 0) {
        assert_true(err->code > GW_PROTO_OK && err->code < GW_PROTO_CODE_COUNT);
        assert_true(err->message[0] != '\0');
        assert_true(strlen(err->field) < sizeof err->field);
    }
}

static void mutate_and_decode(const uint8_t *orig, size_t len, unsigned rounds)
{
    static const uint8_t interesting[] = { 0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xc0, 0xc1, 0xc4, 0xca, 0xcb,
                                           0xcf, 0xd3, 0xd4, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff };
    uint8_t *m = gw_xcalloc(len + 16, 1);
    for (unsigned r = 0; r < rounds; r++) {
        size_t n = len;
        memcpy(m, orig, len);
        unsigned edits = 1 + next() % 4;
        for (unsigned e = 0; e < edits && n > 0; e++) {
            size_t at = next() % n;
            switch (next() % 6) {
            case 0: m[at] ^= (uint8_t)(1u << (next() % 8)); break;
            case 1: m[at] = interesting[next() % sizeof interesting]; break;
            case 2: m[at] = (uint8_t)next(); break;
            case 3: n = at; break;                                          /* truncate */
            case 4: memmove(m + at, m + at + 1, n - at - 1); n--; break;    /* delete a byte */
            case 5:                                                         /* insert a byte */
                if (n < len + 16) {
                    memmove(m + at + 1, m + at, n - at);
                    m[at] = interesting[next() % sizeof interesting];
                    n++;
                }
                break;
            }
        }
        gw_proto_error err;
        gw_proto_request req;
        check_sane(gw_proto_request_decode(&req, m, n, GW_ENDPOINT_READ, &err), &err);
        gw_proto_request_done(&req);
        check_sane(gw_proto_request_decode(&req, m, n, GW_ENDPOINT_ADMIN, &err), &err);
        gw_proto_request_done(&req);
        gw_proto_reply rep;
        int rr = gw_proto_reply_decode(&rep, m, n, &err);
        check_sane(rr, &err);
        if (rr == 0 && rep.ok) {
            json_t *j = NULL;
            if (gw_proto_to_json(rep.result, &j, &err) == 0)
                json_decref(j);
        }
        gw_proto_reply_done(&rep);
        gw_proto_event ev;
        check_sane(gw_proto_event_decode(&ev, m, n, &err), &err);
        gw_proto_event_done(&ev);
    }
    free(m);
}

static void mutations_never_crash(void **state)
{
    const char *env = getenv("GW_FUZZ_ROUNDS");
    unsigned rounds = env ? (unsigned)strtoul(env, NULL, 10) : 1000;
    DIR *d = opendir(GW_SOURCE_DIR "/proto/vectors");
    assert_non_null(d);
    struct dirent *e;
    size_t files = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 9 || strcmp(e->d_name + n - 8, ".msgpack"))
            continue;
        char *p = gw_strdup_printf("%s/proto/vectors/%s", GW_SOURCE_DIR, e->d_name);
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        uint8_t data[GW_PROTO_MAX_REQUEST];
        size_t len = fread(data, 1, sizeof data, f);
        fclose(f);
        free(p);
        if (len > 0)
            mutate_and_decode(data, len, rounds);
        files++;
    }
    closedir(d);
    assert_true(files >= 80);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(error_codes_names_and_errnos),
        cmocka_unit_test(error_message_cut_stays_utf8),
        cmocka_unit_test(op_table),
        cmocka_unit_test(every_argument_with_every_wrong_type),
        cmocka_unit_test(list_items_with_every_wrong_type),
        cmocka_unit_test(every_required_argument_missing),
        cmocka_unit_test(argument_values),
        cmocka_unit_test(address_lists),
        cmocka_unit_test(envelope),
        cmocka_unit_test(read_endpoint_access),
        cmocka_unit_test(size_limit),
        cmocka_unit_test(string_array_map_depth_limits),
        cmocka_unit_test(hostile_keys_in_paths),
        cmocka_unit_test(every_single_byte),
        cmocka_unit_test(every_prefix_is_truncated),
        cmocka_unit_test(replies_from_a_broken_daemon),
        cmocka_unit_test(events_from_a_broken_daemon),
        cmocka_unit_test(json_bridge),
        cmocka_unit_test(utf8),
        cmocka_unit_test(mutations_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
