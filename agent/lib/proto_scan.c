/* SPDX-License-Identifier: Apache-2.0 */
/* A non-allocating walk over untrusted msgpack bytes that enforces the
 * protocol's limits (PROTOCOL.md §7) before anything is unpacked, and names
 * the offending field ("args.addresses[3]") when it refuses. */
#include <stdarg.h>
#include <string.h>

#include "proto_codec.h"
#include "util.h"

#define SCAN_MAX_DEPTH 16
#define SCAN_DUP_MAP 64

const gw_proto_limits gw_proto_request_limits = {
    GW_PROTO_MAX_REQUEST, GW_PROTO_MAX_REQUEST_STR, GW_PROTO_MAX_REQUEST_ARRAY,
    GW_PROTO_MAX_REQUEST_MAP, GW_PROTO_MAX_REQUEST_DEPTH, true,
};
const gw_proto_limits gw_proto_reply_limits = {
    GW_PROTO_MAX_REPLY, GW_PROTO_MAX_REPLY_STR, GW_PROTO_MAX_REPLY_ARRAY,
    GW_PROTO_MAX_REPLY_MAP, GW_PROTO_MAX_REPLY_DEPTH, false,
};
const gw_proto_limits gw_proto_event_limits = {
    GW_PROTO_MAX_EVENT, GW_PROTO_MAX_REPLY_STR, GW_PROTO_MAX_REPLY_ARRAY,
    GW_PROTO_MAX_REPLY_MAP, GW_PROTO_MAX_REPLY_DEPTH, false,
};

typedef struct key_ref {
    const uint8_t *p;
    size_t n;
} key_ref;

typedef struct frame {
    bool is_map;
    size_t items;       /* elements, or 2 x entries for a map (keys and values) */
    size_t i;           /* items consumed so far */
    key_ref key;        /* a map's current key */
    size_t nkeys;       /* keys seen, for the duplicate check */
} frame;

typedef struct scanner {
    const uint8_t *p;
    size_t len, pos;
    const gw_proto_limits *lim;
    gw_proto_error *err;
    frame st[SCAN_MAX_DEPTH];
    unsigned depth;
    key_ref (*keys)[SCAN_DUP_MAP];  /* per depth, when checking duplicates */
} scanner;

/* A string cut to its buffer can end inside a UTF-8 character (a conflict
 * message naming a domain with a long multibyte name did), and both clients
 * then reject the whole reply as malformed. Drop the partial character. */
static void utf8_cut_clean(char *s)
{
    size_t len = strlen(s), i = len;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead < 0x80 ? 1 : (lead & 0xe0) == 0xc0 ? 2 : (lead & 0xf0) == 0xe0 ? 3 : (lead & 0xf8) == 0xf0 ? 4 : 1;
    if (len - (i - 1) < want)
        s[i - 1] = '\0';
}

int gw_proto_errorf(gw_proto_error *err, gw_proto_code code, const char *field, const char *fmt, ...)
{
    err->code = code;
    if (snprintf(err->field, sizeof err->field, "%s", field ? field : "") >= (int)sizeof err->field)
        utf8_cut_clean(err->field);
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(err->message, sizeof err->message, fmt, ap) >= (int)sizeof err->message)
        utf8_cut_clean(err->message);
    va_end(ap);
    return -1;
}

/* Append a key to a path, printable ASCII only and at most 48 bytes, so a
 * hostile key cannot make the error reply unreadable. */
static void path_add_key(char *buf, size_t size, const uint8_t *k, size_t n, bool dot)
{
    size_t at = strlen(buf);
    if (dot && at + 1 < size)
        buf[at++] = '.';
    for (size_t i = 0; i < n && at + 1 < size; i++) {
        if (i == 48) {
            for (int d = 0; d < 3 && at + 1 < size; d++)
                buf[at++] = '.';
            break;
        }
        buf[at++] = (k[i] > 0x20 && k[i] < 0x7f) ? (char)k[i] : '?';
    }
    buf[at] = '\0';
}

/* The path of the value being read; a map at a key position contributes
 * nothing (the error is about the map itself). */
static void scan_path(const scanner *s, char *buf, size_t size)
{
    buf[0] = '\0';
    for (unsigned d = 0; d < s->depth; d++) {
        const frame *f = &s->st[d];
        if (f->is_map) {
            if (f->i % 2 == 1)
                path_add_key(buf, size, f->key.p, f->key.n, buf[0] != '\0');
        } else {
            size_t at = strlen(buf);
            snprintf(buf + at, size - at, "[%zu]", f->i);
        }
    }
}

static int scan_fail(scanner *s, gw_proto_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int scan_fail(scanner *s, gw_proto_code code, const char *fmt, ...)
{
    char path[sizeof s->err->field];
    scan_path(s, path, sizeof path);
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (path[0])
        return gw_proto_errorf(s->err, code, path, "%s: %s", path, msg);
    return gw_proto_errorf(s->err, code, NULL, "%s", msg);
}

static const char *byte_type_name(uint8_t b)
{
    if (b <= 0x7f || (b >= 0xcc && b <= 0xcf))
        return "integer";
    if (b >= 0xe0 || (b >= 0xd0 && b <= 0xd3))
        return "negative integer";
    if (b <= 0x8f || b == 0xde || b == 0xdf)
        return "map";
    if (b <= 0x9f || b == 0xdc || b == 0xdd)
        return "array";
    if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb))
        return "string";
    switch (b) {
    case 0xc0: return "nil";
    case 0xc2: case 0xc3: return "boolean";
    case 0xc4: case 0xc5: case 0xc6: return "binary";
    case 0xca: case 0xcb: return "float";
    case 0xc1: return "invalid byte";
    default: return "ext";
    }
}

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static int truncated(scanner *s, size_t at)
{
    return scan_fail(s, GW_PROTO_MALFORMED, "truncated: the value at offset %zu runs past the end (%zu bytes)",
                     at, s->len);
}

static bool need(const scanner *s, size_t n)
{
    return s->len - s->pos >= n;
}

/* The string just read is a map key: remember it, refuse a repeat. */
static int scan_key(scanner *s, const uint8_t *k, size_t n)
{
    frame *f = &s->st[s->depth - 1];
    f->key = (key_ref){ k, n };
    if (!s->keys)
        return 0;
    key_ref *seen = s->keys[s->depth - 1];
    for (size_t i = 0; i < f->nkeys; i++) {
        if (seen[i].n == n && !memcmp(seen[i].p, k, n)) {
            f->i++;     /* at the value position, so the path names the key */
            int r = scan_fail(s, GW_PROTO_MALFORMED, "duplicate key");
            f->i--;
            return r;
        }
    }
    if (f->nkeys < SCAN_DUP_MAP)
        seen[f->nkeys++] = f->key;
    return 0;
}

/* Read one value at s->pos. 1: a complete value; 0: a container was opened
 * (its elements follow); -1: refused. */
static int scan_one(scanner *s)
{
    size_t at = s->pos;
    if (!need(s, 1))
        return truncated(s, at);
    uint8_t b = s->p[at];
    bool key_pos = s->depth > 0 && s->st[s->depth - 1].is_map && s->st[s->depth - 1].i % 2 == 0;
    size_t hdr = 1, n = 0;
    enum { SCALAR, STR, ARRAY, MAP } kind = SCALAR;

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        hdr = 1;
    } else if (b <= 0x8f) {
        kind = MAP, n = b & 0x0f;
    } else if (b <= 0x9f) {
        kind = ARRAY, n = b & 0x0f;
    } else if (b <= 0xbf) {
        kind = STR, n = b & 0x1f;
    } else if (b == 0xc1) {
        return scan_fail(s, GW_PROTO_MALFORMED, "not msgpack: byte 0xc1 at offset %zu is not a valid type", at);
    } else if ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8)) {
        return scan_fail(s, GW_PROTO_MALFORMED, "ext type 0x%02x at offset %zu is not used by the protocol", b, at);
    } else if (b >= 0xc4 && b <= 0xc6) {
        kind = STR, hdr = 1 + (1u << (b - 0xc4));
    } else if (b >= 0xd9 && b <= 0xdb) {
        kind = STR, hdr = 1 + (1u << (b - 0xd9));
    } else if (b == 0xca || b == 0xcb) {
        hdr = b == 0xca ? 5 : 9;
    } else if (b >= 0xcc && b <= 0xd3) {
        hdr = 1 + (1u << ((b - 0xcc) & 3));
    } else if (b == 0xdc || b == 0xdd) {
        kind = ARRAY, hdr = b == 0xdc ? 3 : 5;
    } else { /* 0xde, 0xdf */
        kind = MAP, hdr = b == 0xde ? 3 : 5;
    }

    if (key_pos && !(b >= 0xa0 && b <= 0xbf) && !(b >= 0xd9 && b <= 0xdb))
        return scan_fail(s, GW_PROTO_MALFORMED, "map key must be a string, got %s", byte_type_name(b));
    if (!need(s, hdr))
        return truncated(s, at);
    if (hdr > 1 && kind != SCALAR)
        n = (size_t)be(s->p + at + 1, hdr - 1);
    s->pos += hdr;

    if (kind == SCALAR)
        return 1;
    if (kind == STR) {
        if (n > s->lim->max_str)
            return scan_fail(s, GW_PROTO_TOO_LARGE, "%s of %zu bytes, limit %zu",
                             byte_type_name(b), n, s->lim->max_str);
        if (!need(s, n))
            return truncated(s, at);
        s->pos += n;
        return key_pos ? (scan_key(s, s->p + at + hdr, n) < 0 ? -1 : 1) : 1;
    }
    size_t max = kind == MAP ? s->lim->max_map : s->lim->max_array;
    if (n > max)
        return scan_fail(s, GW_PROTO_TOO_LARGE, "%s of %zu %s, limit %zu", kind == MAP ? "map" : "array",
                         n, kind == MAP ? "entries" : "elements", max);
    if (s->depth + 1 > s->lim->max_depth)
        return scan_fail(s, GW_PROTO_TOO_LARGE, "nesting deeper than %u", s->lim->max_depth);
    size_t items = kind == MAP ? 2 * n : n;
    if (!need(s, items))    /* every element takes at least one byte */
        return truncated(s, at);
    if (items == 0)
        return 1;
    s->st[s->depth++] = (frame){ .is_map = kind == MAP, .items = items };
    return 0;
}

int gw_proto_scan(const void *buf, size_t len, const gw_proto_limits *lim, gw_proto_error *err)
{
    key_ref keys[SCAN_MAX_DEPTH][SCAN_DUP_MAP];
    scanner s = { .p = buf, .len = len, .lim = lim, .err = err };
    if (lim->max_depth > SCAN_MAX_DEPTH || (lim->reject_dup_keys && lim->max_map > SCAN_DUP_MAP))
        return gw_proto_errorf(err, GW_PROTO_INTERNAL, NULL, "scan limits beyond what the scanner supports");
    if (lim->reject_dup_keys)
        s.keys = keys;
    if (len == 0)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "empty message");
    if (len > lim->max_size)
        return gw_proto_errorf(err, GW_PROTO_TOO_LARGE, NULL, "message of %zu bytes, limit %zu",
                               len, lim->max_size);
    for (;;) {
        int r = scan_one(&s);
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        /* A value is complete: advance its container, closing finished ones. */
        for (;;) {
            if (s.depth == 0)
                goto done;
            frame *f = &s.st[s.depth - 1];
            if (++f->i < f->items)
                break;
            s.depth--;
        }
    }
done:
    if (s.pos != len)
        return gw_proto_errorf(err, GW_PROTO_MALFORMED, NULL, "%zu trailing bytes after the message at offset %zu",
                               len - s.pos, s.pos);
    return 0;
}
