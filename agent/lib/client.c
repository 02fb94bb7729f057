/* SPDX-License-Identifier: Apache-2.0 */
/* The request client: one DEALER socket, one request in flight, a deadline
 * per call, a fresh socket after a timeout (so a late reply can never be
 * taken for the next call's), replies matched by id. */
#include <inttypes.h>
#include <pwd.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "client_internal.h"
#include "proto_codec.h"
#include "util.h"

struct gw_client {
    void *ctx, *sock;
    char *endpoint;
    int timeout_ms;
    char *actor;
    gw_zmq_keys keys;
    uint64_t next_id;
    gw_client_error err;
    char code_name[64], message[512], field[128];
};

int64_t gw_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- options and sockets (shared with the event subscriber) ---- */

static bool z85_key(const char *k)
{
    static const char alphabet[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if (strlen(k) != 40)
        return false;
    for (const char *p = k; *p; p++)
        if (!strchr(alphabet, *p))
            return false;
    return true;
}

int gw_zmq_check(const char *endpoint, const char *server_key, const char *public_key, const char *secret_key,
                 gw_zmq_keys *keys)
{
    memset(keys, 0, sizeof *keys);
    bool tcp = !strncmp(endpoint, "tcp://", 6) && endpoint[6];
    if (!tcp && !(!strncmp(endpoint, "ipc://", 6) && endpoint[6]))
        return gw_error_set(-EINVAL, "endpoint '%.200s': expected ipc://PATH or tcp://HOST:PORT", endpoint);
    if (!server_key && !public_key && !secret_key) {
        if (tcp)
            return gw_error_set(-EINVAL, "endpoint '%.200s': tcp:// needs CURVE (the daemon's public key)", endpoint);
        return 0;
    }
    if (!zmq_has("curve"))
        return gw_error_set(-ENOTSUP, "this libzmq has no CURVE support");
    if (!server_key)
        return gw_error_set(-EINVAL, "CURVE: a client key pair needs the daemon's public key too");
    if (!public_key != !secret_key)
        return gw_error_set(-EINVAL, "CURVE: give both halves of the client key pair, or neither");
    const char *named[3][2] = { { "server", server_key }, { "public", public_key }, { "secret", secret_key } };
    for (int i = 0; i < 3; i++)
        if (named[i][1] && !z85_key(named[i][1]))
            return gw_error_set(-EINVAL, "CURVE %s key: expected 40 Z85 characters", named[i][0]);
    memcpy(keys->server, server_key, 41);
    if (public_key) {
        memcpy(keys->public_, public_key, 41);
        memcpy(keys->secret, secret_key, 41);
    } else if (zmq_curve_keypair(keys->public_, keys->secret) != 0) {
        return gw_error_set(-errno, "CURVE: making a key pair: %s", zmq_strerror(errno));
    }
    keys->curve = true;
    return 0;
}

int gw_zmq_open(void *ctx, int type, const char *endpoint, const gw_zmq_keys *keys, int64_t max_msg, void **out)
{
    void *s = zmq_socket(ctx, type);
    if (!s)
        return gw_error_set(-errno, "zmq_socket: %s", zmq_strerror(errno));
    int zero = 0, one = 1;
    int r = zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (!r)
        r = zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
    if (!r && type == ZMQ_DEALER)   /* no queueing towards a daemon that is not there */
        r = zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof one);
    if (!r && keys->curve) {
        r = zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, keys->server, 40);
        if (!r)
            r = zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, keys->public_, 40);
        if (!r)
            r = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, keys->secret, 40);
    }
    if (!r)
        r = zmq_connect(s, endpoint);
    if (r) {
        int e = errno;
        zmq_close(s);
        return gw_error_set(-e, "%.200s: %s", endpoint, zmq_strerror(e));
    }
    *out = s;
    return 0;
}

/* ---- errors ---- */

static void clear_error(gw_client *c)
{
    c->err = (gw_client_error){ .code = GW_PROTO_OK, .code_name = "ok", .message = "" };
    c->message[0] = '\0';
    gw_error_clear();
}

/* Record a failure; returns `err`. `what` prefixes gw_error_message(). */
static int fail(gw_client *c, int err, gw_proto_code code, bool remote, const char *code_name, const char *field,
                const char *what, const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static int fail(gw_client *c, int err, gw_proto_code code, bool remote, const char *code_name, const char *field,
                const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof c->message, fmt, ap);
    va_end(ap);
    snprintf(c->code_name, sizeof c->code_name, "%s", code_name ? code_name : gw_proto_code_name(code));
    snprintf(c->field, sizeof c->field, "%s", field ? field : "");
    c->err = (gw_client_error){ .code = code, .code_name = c->code_name, .message = c->message,
                                .field = field ? c->field : NULL, .remote = remote };
    return gw_error_set(err, "%s: %s: %s", what, c->code_name, c->message);
}

/* ---- the client ---- */

static char *default_actor(void)
{
    uid_t uid = getuid();
    struct passwd pw, *found = NULL;
    char buf[2048];
    getpwuid_r(uid, &pw, buf, sizeof buf, &found);
    const char *sudo = getenv("SUDO_USER");
    char *a = gw_strdup_printf("uid=%u(%.64s)%s%.64s", (unsigned)uid, found ? found->pw_name : "?",
                               sudo ? " sudo=" : "", sudo ? sudo : "");
    /* The daemon takes printable text only. */
    for (char *p = a; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    return a;
}

static int reopen(gw_client *c)
{
    if (c->sock)
        zmq_close(c->sock);
    c->sock = NULL;
    return gw_zmq_open(c->ctx, ZMQ_DEALER, c->endpoint, &c->keys, GW_PROTO_MAX_REPLY, &c->sock);
}

GW_EXTERN int gw_client_new(gw_client **out, const gw_client_options *opts)
{
    static const gw_client_options defaults = GW_CLIENT_OPTIONS_INIT;
    if (!out)
        return gw_error_set(-EINVAL, "gw_client_new: out is NULL");
    *out = NULL;
    if (!opts)
        opts = &defaults;
    if (opts->version != GW_CLIENT_OPTIONS_VERSION)
        return gw_error_set(-EINVAL, "gw_client_options: version %u, this library knows %d", opts->version,
                            GW_CLIENT_OPTIONS_VERSION);
    if (opts->timeout_ms < 0)
        return gw_error_set(-EINVAL, "gw_client_options: timeout_ms %d is negative", opts->timeout_ms);
    if (opts->actor && (!opts->actor[0] || strlen(opts->actor) > GW_PROTO_MAX_ACTOR ||
                        !gw_proto_utf8_valid(opts->actor, strlen(opts->actor))))
        return gw_error_set(-EINVAL, "gw_client_options: actor must be 1..%d bytes of UTF-8", GW_PROTO_MAX_ACTOR);
    const char *endpoint = opts->endpoint ? opts->endpoint : GW_PROTO_READ_ENDPOINT;
    gw_zmq_keys keys;
    int r = gw_zmq_check(endpoint, opts->curve_server_key, opts->curve_public_key, opts->curve_secret_key, &keys);
    if (r < 0)
        return r;

    gw_client *c = gw_xcalloc(1, sizeof *c);
    c->keys = keys;
    c->endpoint = gw_xstrdup(endpoint);
    c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : GW_CLIENT_DEFAULT_TIMEOUT_MS;
    c->actor = opts->actor ? gw_xstrdup(opts->actor) : default_actor();
    /* Ids only have to differ between calls on this socket; starting from the
     * clock makes a restarted client's ids differ from its last life's. */
    c->next_id = (uint64_t)time(NULL) << 20;
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        r = gw_error_set(-errno, "zmq_ctx_new: %s", zmq_strerror(errno));
        gw_client_free(c);
        return r;
    }
    if ((r = reopen(c)) < 0) {
        gw_client_free(c);
        return r;
    }
    clear_error(c);
    *out = c;
    return 0;
}

GW_EXTERN void gw_client_free(gw_client *c)
{
    if (!c)
        return;
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    free(c->endpoint);
    free(c->actor);
    free(c);
}

GW_EXTERN const char *gw_client_endpoint(const gw_client *c)
{
    return c->endpoint;
}

GW_EXTERN const gw_client_error *gw_client_last_error(const gw_client *c)
{
    return &c->err;
}

/* Wait for `events` on the socket until the deadline: 1 ready, 0 timed out. */
static int wait_for(gw_client *c, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - gw_monotonic_ms();
        if (left <= 0)
            return 0;
        zmq_pollitem_t it = { c->sock, 0, events, 0 };
        int r = zmq_poll(&it, 1, (long)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static int timed_out(gw_client *c, const char *op, const char *while_)
{
    int r = fail(c, -ETIMEDOUT, GW_PROTO_UNAVAILABLE, false, NULL, NULL, op,
                 "%s: no %s within %d ms (is gpuwardend running?)", c->endpoint, while_, c->timeout_ms);
    /* Drop anything queued or in flight: a late reply must not answer the next call. */
    char keep[sizeof c->message];
    snprintf(keep, sizeof keep, "%s", gw_error_message());
    if (reopen(c) < 0)
        gw_log(GW_LOG_WARNING, "%s: reconnecting after a timeout: %s", c->endpoint, gw_error_message());
    gw_error_set(r, "%s", keep);
    return r;
}

/* Receive one message; 0 with the body in *body when it is [empty][body]. */
static int receive(gw_client *c, const char *op, int64_t deadline, zmq_msg_t *body)
{
    int w = wait_for(c, ZMQ_POLLIN, deadline);
    if (w == 0)
        return timed_out(c, op, "reply");
    if (w < 0)
        return fail(c, w, GW_PROTO_UNAVAILABLE, false, NULL, NULL, op, "zmq_poll: %s", zmq_strerror(-w));
    size_t frames = 0, first_len = 0;
    for (bool more = true; more; frames++) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, c->sock, ZMQ_DONTWAIT) < 0) {
            int e = errno;
            zmq_msg_close(&part);
            return fail(c, -e, GW_PROTO_UNAVAILABLE, false, NULL, NULL, op, "receiving: %s", zmq_strerror(e));
        }
        more = zmq_msg_more(&part);
        if (frames == 0)
            first_len = zmq_msg_size(&part);
        if (frames == 1)
            zmq_msg_move(body, &part);
        zmq_msg_close(&part);
    }
    if (frames != 2 || first_len != 0) {
        reopen(c);
        return fail(c, -EPROTO, GW_PROTO_MALFORMED, false, NULL, NULL, op,
                    "reply frames: expected [empty][body], got %zu frame(s)", frames);
    }
    return 0;
}

/* Top-level fields every 1.0 result of `op` has: "name:t", t = a(rray),
 * s(tring), i(nteger), b(oolean), o(bject). */
static const char *result_shape(const char *op)
{
#define DEVICE "address:s state:s dirty:b cleaning:b since:i present:b identity:o"
    static const char *const shapes[][2] = {
        { "hello", "versions:a daemon:s host:s endpoint:s capabilities:a ops:a" },
        { "inventory", "generation:i host:s model:s deployables:a" },
        { "published", "generation:i promoted:a" },
        { "devices", "devices:a" },
        { "device", DEVICE " steps:a" },
        { "quarantine", DEVICE }, { "release", DEVICE }, { "sanitize", DEVICE },
        { "audit", "records:a truncated:b" },
        { "attached", "devices:a" }, { "released", "devices:a" },
        { "gate", "allowed:b reasons:a" },
        { "metrics", "uptime_ms:i devices:o requests:o errors:o" },
        { "maintenance", DEVICE },
    };
#undef DEVICE
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i][0], op))
            return shapes[i][1];
    return NULL;
}

static int check_shape(gw_client *c, const char *op, const json_t *result)
{
    static const struct {
        char t;
        json_type type;
        const char *name;
    } types[] = { { 'a', JSON_ARRAY, "an array" }, { 's', JSON_STRING, "a string" }, { 'i', JSON_INTEGER, "an integer" },
                  { 'o', JSON_OBJECT, "an object" }, { 'b', JSON_TRUE, "a boolean" } };
    const char *shape = result_shape(op);
    while (shape && *shape) {
        const char *colon = strchr(shape, ':');
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)(colon - shape), shape);
        char t = colon[1];
        shape = colon[2] ? colon + 3 : colon + 2;
        const json_t *v = json_object_get(result, key);
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            if (types[i].t != t)
                continue;
            bool ok = v && (t == 'b' ? json_is_boolean(v) : json_typeof(v) == types[i].type);
            if (!ok)
                return fail(c, -EPROTO, GW_PROTO_MALFORMED, false, NULL, NULL, op,
                            "the daemon's result: result.%s: expected %s, got %s", key, types[i].name,
                            !v ? "nothing" : json_is_null(v) ? "null" : "another type");
        }
    }
    return 0;
}

GW_EXTERN int gw_client_call(gw_client *c, const char *op, const json_t *args, json_t **result)
{
    if (result)
        *result = NULL;
    if (!c || !op)
        return gw_error_set(-EINVAL, "gw_client_call: %s is NULL", c ? "op" : "client");
    clear_error(c);
    if (!c->sock && reopen(c) < 0)
        return fail(c, -ECONNREFUSED, GW_PROTO_UNAVAILABLE, false, NULL, NULL, op, "%s", gw_error_message());

    uint64_t id = ++c->next_id;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    gw_proto_error perr;
    if (gw_proto_pack_request(&pk, id, op, args, c->actor, &perr) < 0) {
        msgpack_sbuffer_destroy(&sb);
        return fail(c, -EINVAL, GW_PROTO_INVALID_ARGUMENT, false, NULL, perr.field[0] ? perr.field : NULL, op,
                    "%s", perr.message);
    }

    int64_t deadline = gw_monotonic_ms() + c->timeout_ms;
    int w = wait_for(c, ZMQ_POLLOUT, deadline);
    if (w <= 0) {
        msgpack_sbuffer_destroy(&sb);
        return w == 0 ? timed_out(c, op, "connection")
                      : fail(c, w, GW_PROTO_UNAVAILABLE, false, NULL, NULL, op, "zmq_poll: %s", zmq_strerror(-w));
    }
    int r = zmq_send(c->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (r >= 0)
        r = zmq_send(c->sock, sb.data, sb.size, ZMQ_DONTWAIT);
    msgpack_sbuffer_destroy(&sb);
    if (r < 0) {
        if (errno == EAGAIN)
            return timed_out(c, op, "connection");
        return fail(c, -errno, GW_PROTO_UNAVAILABLE, false, NULL, NULL, op, "sending: %s", zmq_strerror(errno));
    }

    for (;;) {
        zmq_msg_t body;
        zmq_msg_init(&body);
        if ((r = receive(c, op, deadline, &body)) < 0) {
            zmq_msg_close(&body);
            return r;
        }
        gw_proto_reply rep;
        if (gw_proto_reply_decode(&rep, zmq_msg_data(&body), zmq_msg_size(&body), &perr) < 0) {
            gw_proto_reply_done(&rep);
            zmq_msg_close(&body);
            return fail(c, gw_proto_code_errno(perr.code), perr.code, false, NULL, perr.field[0] ? perr.field : NULL,
                        op, "the daemon's reply: %s", perr.message);
        }
        /* One request in flight: a nil id is ours (the daemon could not read
         * it), another id is a stray reply to drop. */
        if (rep.has_id && rep.id != id) {
            gw_log(GW_LOG_DEBUG, "%s: dropping a reply to request %" PRIu64 " (waiting for %" PRIu64 ")",
                   c->endpoint, rep.id, id);
            gw_proto_reply_done(&rep);
            zmq_msg_close(&body);
            continue;
        }
        if (!rep.ok) {
            r = fail(c, gw_proto_code_errno(rep.code), rep.code, true, rep.code_name, rep.field, op, "%s", rep.message);
        } else {
            json_t *j = NULL;
            if (gw_proto_to_json(rep.result, &j, &perr) < 0)
                r = fail(c, -EPROTO, GW_PROTO_MALFORMED, false, NULL, NULL, op, "the daemon's result: %s",
                         perr.message);
            else if ((r = check_shape(c, op, j)) == 0 && result)
                *result = GW_TAKE(j);
            json_decref(j);
        }
        gw_proto_reply_done(&rep);
        zmq_msg_close(&body);
        return r;
    }
}

/* ---- typed calls ---- */

/* Add a string argument; text that jansson refuses (not UTF-8) is -EINVAL. */
static int put_str(gw_client *c, const char *op, json_t *args, const char *key, const char *value, bool required)
{
    if (!value) {
        if (required)
            return fail(c, -EINVAL, GW_PROTO_INVALID_ARGUMENT, false, NULL, NULL, op, "%s is NULL", key);
        return 0;
    }
    json_t *s = json_string(value);
    if (!s)
        return fail(c, -EINVAL, GW_PROTO_INVALID_ARGUMENT, false, NULL, NULL, op, "%s is not valid UTF-8", key);
    json_object_set_new(args, key, s);
    return 0;
}

static int put_uint(gw_client *c, const char *op, json_t *args, const char *key, uint64_t value)
{
    if (value > INT64_MAX)
        return fail(c, -EINVAL, GW_PROTO_INVALID_ARGUMENT, false, NULL, NULL, op, "%s %" PRIu64 " is above 2^63-1",
                    key, value);
    json_object_set_new(args, key, json_integer((json_int_t)value));
    return 0;
}

static int call_with(gw_client *c, const char *op, json_t *args, json_t **result)
{
    int r = gw_client_call(c, op, args, result);
    json_decref(args);
    return r;
}

#define CHECK_CLIENT(c, result)                                                                                        \
    do {                                                                                                               \
        if (result)                                                                                                    \
            *(result) = NULL;                                                                                          \
        if (!(c))                                                                                                      \
            return gw_error_set(-EINVAL, "%s: client is NULL", __func__);                                              \
        clear_error(c);                                                                                                \
    } while (0)

GW_EXTERN int gw_client_hello(gw_client *c, json_t **result)
{
    CHECK_CLIENT(c, result);
    return call_with(c, "hello", json_pack("{s:s+}", "client", "libgpuwarden ", gw_version()), result);
}

GW_EXTERN int gw_client_inventory(gw_client *c, json_t **result)
{
    return gw_client_call(c, "inventory", NULL, result);
}

GW_EXTERN int gw_client_metrics(gw_client *c, json_t **result)
{
    return gw_client_call(c, "metrics", NULL, result);
}

GW_EXTERN int gw_client_published(gw_client *c, uint64_t generation, json_t **result)
{
    CHECK_CLIENT(c, result);
    json_t *args = json_object();
    int r = put_uint(c, "published", args, "generation", generation);
    if (r < 0) {
        json_decref(args);
        return r;
    }
    return call_with(c, "published", args, result);
}

GW_EXTERN int gw_client_devices(gw_client *c, const char *state, json_t **result)
{
    CHECK_CLIENT(c, result);
    json_t *args = json_object();
    int r = put_str(c, "devices", args, "state", state, false);
    if (r < 0) {
        json_decref(args);
        return r;
    }
    return call_with(c, "devices", args, result);
}

/* Ops whose arguments are an address and, maybe, a reason. */
static int address_op(gw_client *c, const char *op, const char *address, const char *reason, bool need_reason,
                      json_t **result)
{
    CHECK_CLIENT(c, result);
    json_t *args = json_object();
    int r = put_str(c, op, args, "address", address, true);
    if (r == 0)
        r = put_str(c, op, args, "reason", reason, need_reason);
    if (r < 0) {
        json_decref(args);
        return r;
    }
    return call_with(c, op, args, result);
}

GW_EXTERN int gw_client_device(gw_client *c, const char *address, json_t **result)
{
    return address_op(c, "device", address, NULL, false, result);
}

GW_EXTERN int gw_client_quarantine(gw_client *c, const char *address, const char *reason, json_t **result)
{
    return address_op(c, "quarantine", address, reason, true, result);
}

GW_EXTERN int gw_client_release(gw_client *c, const char *address, const char *reason, json_t **result)
{
    return address_op(c, "release", address, reason, false, result);
}

GW_EXTERN int gw_client_sanitize(gw_client *c, const char *address, json_t **result)
{
    return address_op(c, "sanitize", address, NULL, false, result);
}

GW_EXTERN int gw_client_maintenance(gw_client *c, const char *address, bool on, const char *reason,
                                    json_t **result)
{
    CHECK_CLIENT(c, result);
    json_t *args = json_object();
    int r = put_str(c, "maintenance", args, "address", address, true);
    if (r == 0) {
        json_object_set_new(args, "on", json_boolean(on));
        r = put_str(c, "maintenance", args, "reason", reason, true);
    }
    if (r < 0) {
        json_decref(args);
        return r;
    }
    return call_with(c, "maintenance", args, result);
}

GW_EXTERN int gw_client_audit(gw_client *c, const gw_client_audit_filter *filter, json_t **result)
{
    CHECK_CLIENT(c, result);
    json_t *args = json_object();
    int r = 0;
    if (filter) {
        if (filter->version != GW_CLIENT_AUDIT_FILTER_VERSION)
            r = fail(c, -EINVAL, GW_PROTO_INVALID_ARGUMENT, false, NULL, NULL, "audit",
                     "gw_client_audit_filter: version %u, this library knows %d", filter->version, GW_CLIENT_AUDIT_FILTER_VERSION);
        if (r == 0)
            r = put_str(c, "audit", args, "device", filter->device, false);
        if (r == 0 && filter->has_since)
            r = put_uint(c, "audit", args, "since", filter->since);
        if (r == 0 && filter->limit)
            r = put_uint(c, "audit", args, "limit", filter->limit);
    }
    if (r < 0) {
        json_decref(args);
        return r;
    }
    return call_with(c, "audit", args, result);
}

static int domain_op(gw_client *c, const char *op, const char *domain, const char *const *addresses, size_t n,
                     json_t **result)
{
    CHECK_CLIENT(c, result);
    json_t *args = json_object();
    int r = put_str(c, op, args, "domain", domain, true);
    if (r == 0 && n && !addresses)
        r = fail(c, -EINVAL, GW_PROTO_INVALID_ARGUMENT, false, NULL, NULL, op, "addresses is NULL");
    json_t *list = json_array();
    for (size_t i = 0; r == 0 && i < n; i++) {
        json_t *s = addresses[i] ? json_string(addresses[i]) : NULL;
        if (!s)
            r = fail(c, -EINVAL, GW_PROTO_INVALID_ARGUMENT, false, NULL, NULL, op,
                     "addresses[%zu] is NULL or not UTF-8", i);
        else
            json_array_append_new(list, s);
    }
    json_object_set_new(args, "addresses", list);
    if (r < 0) {
        json_decref(args);
        return r;
    }
    return call_with(c, op, args, result);
}

GW_EXTERN int gw_client_attached(gw_client *c, const char *domain, const char *const *addresses, size_t n,
                                 json_t **result)
{
    return domain_op(c, "attached", domain, addresses, n, result);
}

GW_EXTERN int gw_client_released(gw_client *c, const char *domain, const char *const *addresses, size_t n,
                                 json_t **result)
{
    return domain_op(c, "released", domain, addresses, n, result);
}

GW_EXTERN int gw_client_gate(gw_client *c, const char *domain, const char *const *addresses, size_t n,
                             json_t **result)
{
    return domain_op(c, "gate", domain, addresses, n, result);
}
