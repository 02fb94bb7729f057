/* SPDX-License-Identifier: Apache-2.0 */
/* The JSON form of protocol values (proto/vectors/README.md) and the small
 * canonical packing helpers. The client hands results out in this form, and
 * the vector tests rebuild every golden message from its JSON twin with it. */
#include <inttypes.h>
#include <string.h>

#include "proto_codec.h"
#include "util.h"

#define JSON_MAX_DEPTH 32

const char *gw_proto_type_name(const msgpack_object *obj)
{
    switch (obj->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "integer";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "negative integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "string";
    case MSGPACK_OBJECT_BIN: return "binary";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    default: return "ext";
    }
}

bool gw_proto_utf8_valid(const char *str, size_t len)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

void gw_proto_pack_cstr(msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void gw_proto_pack_version(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint64(pk, GW_PROTO_VERSION_MAJOR);
    msgpack_pack_uint64(pk, GW_PROTO_VERSION_MINOR);
}

/* ---- msgpack -> JSON ---- */

static int to_json(const msgpack_object *o, json_t **out, gw_proto_error *err, unsigned depth)
{
    json_t *j = NULL;
    if (depth > JSON_MAX_DEPTH)
        return gw_proto_errorf(err, GW_PROTO_TOO_LARGE, NULL, "nesting deeper than %d", JSON_MAX_DEPTH);
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        j = json_null();
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        j = json_boolean(o->via.boolean);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX) {
            char dec[24];
            snprintf(dec, sizeof dec, "%" PRIu64, o->via.u64);
            j = json_pack("{s:s}", "$u64", dec);
        } else {
            j = json_integer((json_int_t)o->via.u64);
        }
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        j = json_integer((json_int_t)o->via.i64);
        break;
    case MSGPACK_OBJECT_STR:
        if (!gw_proto_utf8_valid(o->via.str.ptr, o->via.str.size))
            return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "a string is not valid UTF-8");
        j = json_stringn_nocheck(o->via.str.size ? o->via.str.ptr : "", o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN: {
        _cleanup_free_ char *hex = gw_xcalloc(2 * (size_t)o->via.bin.size + 1, 1);
        for (uint32_t i = 0; i < o->via.bin.size; i++)
            snprintf(hex + 2 * i, 3, "%02x", (unsigned char)o->via.bin.ptr[i]);
        j = json_pack("{s:s}", "$bin", hex);
        break;
    }
    case MSGPACK_OBJECT_ARRAY:
        j = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            json_t *e;
            if (to_json(&o->via.array.ptr[i], &e, err, depth + 1) < 0) {
                json_decref(j);
                return -1;
            }
            json_array_append_new(j, e);
        }
        break;
    case MSGPACK_OBJECT_MAP:
        j = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            json_t *e;
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                json_decref(j);
                return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "map key must be a string, got %s",
                                       gw_proto_type_name(&kv->key));
            }
            /* msgpack-c leaves ptr NULL for an empty string. */
            const char *k = kv->key.via.str.size ? kv->key.via.str.ptr : "";
            size_t kn = kv->key.via.str.size;
            if (!gw_proto_utf8_valid(k, kn) || memchr(k, '\0', kn)) {
                json_decref(j);
                return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "a map key is not valid UTF-8 text");
            }
            if (json_object_getn(j, k, kn)) {
                json_decref(j);
                return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "duplicate key '%.*s'",
                                       (int)(kn > 64 ? 64 : kn), k);
            }
            if (to_json(&kv->val, &e, err, depth + 1) < 0) {
                json_decref(j);
                return -1;
            }
            json_object_setn_new_nocheck(j, k, kn, e);
        }
        break;
    default:
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "%s values are not used by the protocol",
                               gw_proto_type_name(o));
    }
    if (!j)
        return gw_proto_errorf(err, GW_PROTO_INTERNAL, NULL, "out of memory");
    *out = j;
    return 0;
}

int gw_proto_to_json(const msgpack_object *obj, json_t **out, gw_proto_error *err)
{
    return to_json(obj, out, err, 0);
}

/* ---- JSON -> msgpack ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* {"$u64": "decimal"} or {"$bin": "hex"}: 1 when packed, 0 when `v` is not
 * such an object, -1 when it is one but malformed. */
static int pack_tagged(msgpack_packer *pk, const json_t *v, gw_proto_error *err)
{
    if (json_object_size(v) != 1)
        return 0;
    const json_t *u = json_object_get(v, "$u64"), *b = json_object_get(v, "$bin");
    if (u) {
        const char *s = json_string_value(u);
        char *end = NULL;
        unsigned long long n = 0;
        errno = 0;
        if (s && s[0] >= '1' && s[0] <= '9')
            n = strtoull(s, &end, 10);
        if (!end || errno || *end || n <= INT64_MAX)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, NULL,
                                   "{\"$u64\": ...} must hold the decimal form of 2^63..2^64-1");
        msgpack_pack_uint64(pk, n);
        return 1;
    }
    if (b) {
        const char *s = json_string_value(b);
        size_t n = s ? strlen(s) : 1;
        if (n % 2)
            return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, NULL, "{\"$bin\": ...} must hold lower-case hex");
        _cleanup_free_ char *bytes = gw_xcalloc(n / 2 + 1, 1);
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, NULL,
                                       "{\"$bin\": ...} must hold lower-case hex");
            bytes[i] = (char)(hi << 4 | lo);
        }
        msgpack_pack_bin(pk, n / 2);
        msgpack_pack_bin_body(pk, bytes, n / 2);
        return 1;
    }
    return 0;
}

static int pack_json(msgpack_packer *pk, const json_t *v, gw_proto_error *err, unsigned depth)
{
    if (depth > JSON_MAX_DEPTH)
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, NULL, "nesting deeper than %d", JSON_MAX_DEPTH);
    switch (json_typeof(v)) {
    case JSON_NULL:
        msgpack_pack_nil(pk);
        return 0;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        return 0;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        return 0;
    case JSON_INTEGER: {
        json_int_t n = json_integer_value(v);
        if (n >= 0)
            msgpack_pack_uint64(pk, (uint64_t)n);
        else
            msgpack_pack_int64(pk, (int64_t)n);
        return 0;
    }
    case JSON_REAL:
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, NULL,
                               "%g: floats are not used by the protocol", json_real_value(v));
    case JSON_STRING: {
        size_t n = json_string_length(v);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, json_string_value(v), n);
        return 0;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, e)
            if (pack_json(pk, e, err, depth + 1) < 0)
                return -1;
        return 0;
    }
    case JSON_OBJECT: {
        int r = pack_tagged(pk, v, err);
        if (r)
            return r < 0 ? -1 : 0;
        const char *k;
        size_t kn;
        json_t *e;
        msgpack_pack_map(pk, json_object_size(v));
        /* jansson keeps insertion order, which is the canonical key order. */
        json_object_keylen_foreach((json_t *)v, k, kn, e) {
            msgpack_pack_str(pk, kn);
            msgpack_pack_str_body(pk, k, kn);
            if (pack_json(pk, e, err, depth + 1) < 0)
                return -1;
        }
        return 0;
    }
    }
    return gw_proto_errorf(err, GW_PROTO_INTERNAL, NULL, "unknown JSON type");
}

int gw_proto_pack_json(msgpack_packer *pk, const json_t *value, gw_proto_error *err)
{
    return pack_json(pk, value, err, 0);
}
