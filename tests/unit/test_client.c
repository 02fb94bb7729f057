/* SPDX-License-Identifier: Apache-2.0 */
/* The client API against a small in-test server: ROUTER sockets on real ipc
 * socket files (a read and an admin endpoint) and a CURVE tcp endpoint, run
 * by a thread that decodes requests with the codec and answers with the
 * golden reply vectors, or misbehaves on purpose for special addresses. The
 * event subscriber is fed by an XPUB socket. Not the daemon: the protocol. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include <gpuwarden/client.h>

#include "client_internal.h"
#include "proto_codec.h"
#include "util.h"

/* ---- the server ---- */

static const char *const ops[] = { "hello", "inventory", "published", "devices", "device", "quarantine", "release",
                                   "sanitize", "audit", "attached", "released", "gate", "metrics", "maintenance" };
#define N_OPS (sizeof ops / sizeof ops[0])

typedef struct server {
    char dir[64];
    char read_ep[128], admin_ep[128], tcp_ep[128];
    char public_key[41], secret_key[41];
    pthread_t thread;
    atomic_bool stop;
    atomic_bool ready;
    json_t *results[N_OPS];         /* the result of rep_<op>.json */
    pthread_mutex_t mu;
    char *last_request;             /* the last decodable request, JSON, compact */
    int served;
} server;

static server srv;

static json_t *vector_result(const char *name)
{
    char *p = gw_strdup_printf("%s/proto/vectors/%s.json", GW_SOURCE_DIR, name);
    json_t *twin = json_load_file(p, 0, NULL);
    assert_non_null(twin);
    free(p);
    json_t *r = json_incref(json_object_get(json_object_get(twin, "value"), "result"));
    json_decref(twin);
    return r;
}

static void send_frames(void *s, zmq_msg_t *identity, const void *body, size_t n, bool extra)
{
    zmq_msg_send(identity, s, ZMQ_SNDMORE);
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, body, n, extra ? ZMQ_SNDMORE : 0);
    if (extra)
        zmq_send(s, "x", 1, 0);
}

static void send_reply(void *s, zmq_msg_t *identity, bool has_id, uint64_t id, const json_t *result,
                       const gw_proto_error *err, int version_major)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    gw_proto_error perr;
    if (err) {
        gw_proto_pack_reply_error(&pk, has_id, id, err);
    } else {
        gw_proto_pack_reply_ok(&pk, has_id, id);
        assert_int_equal(gw_proto_pack_json(&pk, result, &perr), 0);
    }
    if (version_major != 1)
        sb.data[4] = (char)version_major;   /* {"v": [1, 0] -> the major's byte */
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, identity);
    send_frames(s, &copy, sb.data, sb.size, false);
    zmq_msg_close(&copy);
    msgpack_sbuffer_destroy(&sb);
}

static void record(const void *body, size_t n)
{
    msgpack_unpacked m;
    msgpack_unpacked_init(&m);
    size_t off = 0;
    json_t *j = NULL;
    gw_proto_error err;
    if (msgpack_unpack_next(&m, body, n, &off) == MSGPACK_UNPACK_SUCCESS && gw_proto_to_json(&m.data, &j, &err) == 0) {
        pthread_mutex_lock(&srv.mu);
        free(srv.last_request);
        srv.last_request = json_dumps(j, JSON_COMPACT);
        srv.served++;
        pthread_mutex_unlock(&srv.mu);
        json_decref(j);
    }
    msgpack_unpacked_destroy(&m);
}

static void serve_one(void *s, gw_proto_endpoint ep)
{
    zmq_msg_t identity, delim, body;
    zmq_msg_init(&identity);
    zmq_msg_init(&delim);
    zmq_msg_init(&body);
    zmq_msg_recv(&identity, s, 0);
    zmq_msg_recv(&delim, s, 0);
    zmq_msg_recv(&body, s, 0);
    assert_int_equal(zmq_msg_more(&body), 0);
    assert_int_equal(zmq_msg_size(&delim), 0);

    const void *data = zmq_msg_data(&body);
    size_t n = zmq_msg_size(&body);
    record(data, n);
    gw_proto_request req;
    gw_proto_error err;
    if (gw_proto_request_decode(&req, data, n, ep, &err) < 0) {
        send_reply(s, &identity, req.has_id, req.id, NULL, &err, 1);
        gw_proto_request_done(&req);
        goto done;
    }
    const char *addr = req.args.address;
    int special = addr && !strncmp(addr, "0000:ff:1f.", 11) ? addr[11] - '0' : -1;
    json_t *result = srv.results[req.op];
    switch (special) {
    case 7:     /* never answer */
        break;
    case 6: {   /* a stray reply first, then the real one */
        json_t *stray = json_object();
        send_reply(s, &identity, true, req.id + 1000, stray, NULL, 1);
        json_decref(stray);
        send_reply(s, &identity, true, req.id, result, NULL, 1);
        break;
    }
    case 5:     /* garbage */
        send_frames(s, &identity, "\xc1", 1, false);
        break;
    case 4:     /* a major version from the future */
        send_reply(s, &identity, true, req.id, result, NULL, 2);
        break;
    case 3:     /* three frames */
        send_frames(s, &identity, "\x80", 1, true);
        break;
    case 2: {   /* a result without the fields a device has */
        json_t *empty = json_object();
        send_reply(s, &identity, true, req.id, empty, NULL, 1);
        json_decref(empty);
        break;
    }
    case 1:     /* an error code this library does not know */
        err = (gw_proto_error){ .code = GW_PROTO_INTERNAL };
        snprintf(err.message, sizeof err.message, "fish elsewhere");
        {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            json_t *j = json_pack("{s:[i,i],s:I,s:b,s:{s:s,s:s,s:n}}", "v", 1, 0, "id", (json_int_t)req.id, "ok", 0,
                                  "error", "code", "gone_fishing", "message", "fish elsewhere", "field");
            gw_proto_pack_json(&pk, j, &err);
            json_decref(j);
            send_frames(s, &identity, sb.data, sb.size, false);
            msgpack_sbuffer_destroy(&sb);
        }
        break;
    case 0:     /* slow: 1 s */
        usleep(1000 * 1000);
        send_reply(s, &identity, true, req.id, result, NULL, 1);
        break;
    default:
        if (addr && !strcmp(addr, "0000:00:00.0")) {
            gw_proto_errorf(&err, GW_PROTO_NOT_FOUND, NULL, "no device %s", addr);
            send_reply(s, &identity, true, req.id, NULL, &err, 1);
        } else {
            send_reply(s, &identity, true, req.id, result, NULL, 1);
        }
    }
    gw_proto_request_done(&req);
done:
    zmq_msg_close(&identity);
    zmq_msg_close(&delim);
    zmq_msg_close(&body);
}

static void *server_main(void *arg)
{
    void *ctx = zmq_ctx_new();
    void *rd = zmq_socket(ctx, ZMQ_ROUTER), *ad = zmq_socket(ctx, ZMQ_ROUTER), *tc = zmq_socket(ctx, ZMQ_ROUTER);
    int64_t max = GW_PROTO_REQUEST_MAXMSGSIZE;
    int zero = 0, one = 1;
    void *socks[3] = { rd, ad, tc };
    for (int i = 0; i < 3; i++) {
        zmq_setsockopt(socks[i], ZMQ_MAXMSGSIZE, &max, sizeof max);
        zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero);
    }
    zmq_setsockopt(tc, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(tc, ZMQ_CURVE_SECRETKEY, srv.secret_key, 40);
    assert_int_equal(zmq_bind(rd, srv.read_ep), 0);
    assert_int_equal(zmq_bind(ad, srv.admin_ep), 0);
    assert_int_equal(zmq_bind(tc, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof srv.tcp_ep;
    zmq_getsockopt(tc, ZMQ_LAST_ENDPOINT, srv.tcp_ep, &len);
    atomic_store(&srv.ready, true);
    while (!atomic_load(&srv.stop)) {
        zmq_pollitem_t items[3] = { { rd, 0, ZMQ_POLLIN, 0 }, { ad, 0, ZMQ_POLLIN, 0 }, { tc, 0, ZMQ_POLLIN, 0 } };
        if (zmq_poll(items, 3, 20) <= 0)
            continue;
        if (items[0].revents)
            serve_one(rd, GW_ENDPOINT_READ);
        if (items[1].revents)
            serve_one(ad, GW_ENDPOINT_ADMIN);
        if (items[2].revents)
            serve_one(tc, GW_ENDPOINT_READ);
    }
    for (int i = 0; i < 3; i++)
        zmq_close(socks[i]);
    zmq_ctx_term(ctx);
    return NULL;
}

static int server_start(void **state)
{
    snprintf(srv.dir, sizeof srv.dir, "/tmp/gw-client-XXXXXX");
    assert_non_null(mkdtemp(srv.dir));
    snprintf(srv.read_ep, sizeof srv.read_ep, "ipc://%s/read.sock", srv.dir);
    snprintf(srv.admin_ep, sizeof srv.admin_ep, "ipc://%s/admin.sock", srv.dir);
    assert_int_equal(zmq_curve_keypair(srv.public_key, srv.secret_key), 0);
    for (size_t i = 0; i < N_OPS; i++) {
        const char *name = !strcmp(ops[i], "gate") ? "rep_gate_refused" : NULL;
        char buf[64];
        snprintf(buf, sizeof buf, "rep_%s", ops[i]);
        srv.results[i] = vector_result(name ? name : buf);
    }
    pthread_mutex_init(&srv.mu, NULL);
    assert_int_equal(pthread_create(&srv.thread, NULL, server_main, NULL), 0);
    while (!atomic_load(&srv.ready))
        usleep(1000);
    return 0;
}

static int server_stop(void **state)
{
    atomic_store(&srv.stop, true);
    pthread_join(srv.thread, NULL);
    for (size_t i = 0; i < N_OPS; i++)
        json_decref(srv.results[i]);
    free(srv.last_request);
    char *p = gw_strdup_printf("%s/read.sock", srv.dir);
    unlink(p);
    free(p);
    p = gw_strdup_printf("%s/admin.sock", srv.dir);
    unlink(p);
    free(p);
    rmdir(srv.dir);
    return 0;
}

static char *last_request(void)
{
    pthread_mutex_lock(&srv.mu);
    char *r = gw_xstrdup(srv.last_request);
    pthread_mutex_unlock(&srv.mu);
    return r;
}

/* The last request without its id (which the client chooses). */
static void assert_last_request(const char *want_after_id)
{
    char *got = last_request();
    const char *after = strstr(got, ",\"op\"");
    assert_non_null(after);
    if (strcmp(after, want_after_id))
        fail_msg("request:\n  got  %s\n  want %s", after, want_after_id);
    assert_int_equal(strncmp(got, "{\"v\":[1,0],\"id\":", 16), 0);
    free(got);
}

static gw_client *client_on(const char *endpoint, int timeout_ms)
{
    gw_client_options o = GW_CLIENT_OPTIONS_INIT;
    o.endpoint = endpoint;
    o.timeout_ms = timeout_ms;
    o.actor = "tester";
    gw_client *c;
    if (gw_client_new(&c, &o) < 0)
        fail_msg("%s", gw_error_message());
    return c;
}

static void assert_result_is(json_t *got, const char *op)
{
    for (size_t i = 0; i < N_OPS; i++) {
        if (strcmp(ops[i], op))
            continue;
        if (!json_equal(got, srv.results[i])) {
            char *a = json_dumps(got, JSON_COMPACT);
            fail_msg("%s: unexpected result %s", op, a);
        }
        /* key order kept */
        char *a = json_dumps(got, JSON_COMPACT), *b = json_dumps(srv.results[i], JSON_COMPACT);
        assert_string_equal(a, b);
        free(a);
        free(b);
        return;
    }
    fail_msg("no op %s", op);
}

/* ---- tests ---- */

static void options(void **state)
{
    gw_client *c = (gw_client *)0x1;
    gw_client_options o = GW_CLIENT_OPTIONS_INIT;
    o.version = 0;
    assert_int_equal(gw_client_new(&c, &o), -EINVAL);
    assert_null(c);
    assert_string_equal(gw_error_message(), "gw_client_options: version 0, this library knows 1");
    static const struct {
        const char *endpoint, *server_key, *message;
        int timeout, err;
    } bad[] = {
        { "http://x", NULL, "endpoint 'http://x': expected ipc://PATH or tcp://HOST:PORT", 0, -EINVAL },
        { "ipc://", NULL, "endpoint 'ipc://': expected ipc://PATH or tcp://HOST:PORT", 0, -EINVAL },
        { "tcp://127.0.0.1:5555", NULL, "endpoint 'tcp://127.0.0.1:5555': tcp:// needs CURVE (the daemon's public key)",
          0, -EINVAL },
        { "tcp://127.0.0.1:5555", "short", "CURVE server key: expected 40 Z85 characters", 0, -EINVAL },
        { "ipc:///x", NULL, "gw_client_options: timeout_ms -1 is negative", -1, -EINVAL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = (gw_client_options)GW_CLIENT_OPTIONS_INIT;
        o.endpoint = bad[i].endpoint;
        o.curve_server_key = bad[i].server_key;
        o.timeout_ms = bad[i].timeout;
        assert_int_equal(gw_client_new(&c, &o), bad[i].err);
        assert_string_equal(gw_error_message(), bad[i].message);
    }
    o = (gw_client_options)GW_CLIENT_OPTIONS_INIT;
    o.actor = "";
    assert_int_equal(gw_client_new(&c, &o), -EINVAL);
    o.actor = NULL;
    o.curve_public_key = srv.public_key;    /* a pair needs both halves and the server key */
    o.curve_server_key = srv.public_key;
    assert_int_equal(gw_client_new(&c, &o), -EINVAL);
    assert_string_equal(gw_error_message(), "CURVE: give both halves of the client key pair, or neither");

    assert_int_equal(gw_client_new(&c, NULL), 0);
    assert_string_equal(gw_client_endpoint(c), GW_PROTO_READ_ENDPOINT);
    assert_int_equal(gw_client_last_error(c)->code, GW_PROTO_OK);
    gw_client_free(c);
    gw_client_free(NULL);
}

/* Each typed call sends exactly the request PROTOCOL.md describes and hands
 * out the reply's result unchanged. */
static void typed_calls(void **state)
{
    gw_client *c = client_on(srv.admin_ep, 5000);
    json_t *r;
    const char *const two[] = { "0000:3b:00.0", "0000:3c:00.0" };

    assert_int_equal(gw_client_hello(c, &r), 0);
    assert_result_is(r, "hello");
    json_decref(r);
    char *want = gw_strdup_printf(",\"op\":\"hello\",\"args\":{\"client\":\"libgpuwarden %s\"},\"actor\":\"tester\"}",
                                  gw_version());
    assert_last_request(want);
    free(want);

    assert_int_equal(gw_client_inventory(c, &r), 0);
    assert_result_is(r, "inventory");
    json_decref(r);
    assert_last_request(",\"op\":\"inventory\",\"args\":{},\"actor\":\"tester\"}");

    assert_int_equal(gw_client_published(c, 42, &r), 0);
    assert_result_is(r, "published");
    json_decref(r);
    assert_last_request(",\"op\":\"published\",\"args\":{\"generation\":42},\"actor\":\"tester\"}");

    assert_int_equal(gw_client_devices(c, NULL, &r), 0);
    assert_result_is(r, "devices");
    assert_int_equal(json_array_size(json_object_get(r, "devices")), 3);
    json_decref(r);
    assert_last_request(",\"op\":\"devices\",\"args\":{},\"actor\":\"tester\"}");
    assert_int_equal(gw_client_devices(c, "quarantined", &r), 0);
    json_decref(r);
    assert_last_request(",\"op\":\"devices\",\"args\":{\"state\":\"quarantined\"},\"actor\":\"tester\"}");

    assert_int_equal(gw_client_device(c, "0000:3b:00.0", &r), 0);
    assert_result_is(r, "device");
    assert_int_equal(json_array_size(json_object_get(r, "steps")), 7);
    json_decref(r);
    assert_last_request(",\"op\":\"device\",\"args\":{\"address\":\"0000:3b:00.0\"},\"actor\":\"tester\"}");

    assert_int_equal(gw_client_quarantine(c, "0000:86:00.0", "fan noise", &r), 0);
    assert_result_is(r, "quarantine");
    json_decref(r);
    assert_last_request(",\"op\":\"quarantine\",\"args\":{\"address\":\"0000:86:00.0\",\"reason\":\"fan noise\"},"
                        "\"actor\":\"tester\"}");

    assert_int_equal(gw_client_release(c, "0000:86:00.0", NULL, &r), 0);
    assert_result_is(r, "release");
    json_decref(r);
    assert_last_request(",\"op\":\"release\",\"args\":{\"address\":\"0000:86:00.0\"},\"actor\":\"tester\"}");

    assert_int_equal(gw_client_sanitize(c, "0000:3c:00.0", &r), 0);
    assert_result_is(r, "sanitize");
    json_decref(r);
    assert_last_request(",\"op\":\"sanitize\",\"args\":{\"address\":\"0000:3c:00.0\"},\"actor\":\"tester\"}");

    assert_int_equal(gw_client_maintenance(c, "0000:86:00.0", true, "cyborg: device disabled", &r), 0);
    assert_result_is(r, "maintenance");
    json_decref(r);
    assert_last_request(",\"op\":\"maintenance\",\"args\":{\"address\":\"0000:86:00.0\",\"on\":true,"
                        "\"reason\":\"cyborg: device disabled\"},\"actor\":\"tester\"}");
    assert_int_equal(gw_client_maintenance(c, "0000:86:00.0", false, "enabled", &r), 0);
    json_decref(r);
    assert_last_request(",\"op\":\"maintenance\",\"args\":{\"address\":\"0000:86:00.0\",\"on\":false,"
                        "\"reason\":\"enabled\"},\"actor\":\"tester\"}");
    assert_int_equal(gw_client_maintenance(c, "0000:86:00.0", true, NULL, &r), -EINVAL);
    assert_null(r);

    gw_client_audit_filter f = GW_CLIENT_AUDIT_FILTER_INIT;
    f.device = "0000:3b:00.0";
    f.has_since = true;
    f.since = 1767225600000ULL;
    f.limit = 20;
    assert_int_equal(gw_client_audit(c, &f, &r), 0);
    assert_result_is(r, "audit");
    json_decref(r);
    assert_last_request(",\"op\":\"audit\",\"args\":{\"device\":\"0000:3b:00.0\",\"since\":1767225600000,"
                        "\"limit\":20},\"actor\":\"tester\"}");
    assert_int_equal(gw_client_audit(c, NULL, &r), 0);
    json_decref(r);
    assert_last_request(",\"op\":\"audit\",\"args\":{},\"actor\":\"tester\"}");

    assert_int_equal(gw_client_attached(c, "instance-0000002a", two, 2, &r), 0);
    assert_result_is(r, "attached");
    json_decref(r);
    assert_last_request(",\"op\":\"attached\",\"args\":{\"domain\":\"instance-0000002a\",\"addresses\":"
                        "[\"0000:3b:00.0\",\"0000:3c:00.0\"]},\"actor\":\"tester\"}");
    assert_int_equal(gw_client_released(c, "instance-0000002a", two, 2, &r), 0);
    assert_result_is(r, "released");
    json_decref(r);
    assert_last_request(",\"op\":\"released\",\"args\":{\"domain\":\"instance-0000002a\",\"addresses\":"
                        "[\"0000:3b:00.0\",\"0000:3c:00.0\"]},\"actor\":\"tester\"}");
    assert_int_equal(gw_client_gate(c, "instance-0000002b", two, 1, &r), 0);
    assert_result_is(r, "gate");
    assert_false(json_is_true(json_object_get(r, "allowed")));
    json_decref(r);
    assert_last_request(",\"op\":\"gate\",\"args\":{\"domain\":\"instance-0000002b\",\"addresses\":"
                        "[\"0000:3b:00.0\"]},\"actor\":\"tester\"}");

    assert_int_equal(gw_client_metrics(c, &r), 0);
    assert_result_is(r, "metrics");
    json_decref(r);

    /* the generic call, and a NULL result pointer */
    json_t *args = json_pack("{s:s}", "address", "0000:3b:00.0");
    assert_int_equal(gw_client_call(c, "device", args, NULL), 0);
    json_decref(args);
    assert_int_equal(gw_client_last_error(c)->code, GW_PROTO_OK);
    gw_client_free(c);
}

static void daemon_errors(void **state)
{
    gw_client *c = client_on(srv.admin_ep, 5000);
    json_t *r = (json_t *)0x1;
    const gw_client_error *e = gw_client_last_error(c);

    assert_int_equal(gw_client_device(c, "0000:00:00.0", &r), -ENOENT);
    assert_null(r);
    assert_int_equal(e->code, GW_PROTO_NOT_FOUND);
    assert_true(e->remote);
    assert_string_equal(e->code_name, "not_found");
    assert_string_equal(e->message, "no device 0000:00:00.0");
    assert_null(e->field);
    assert_string_equal(gw_error_message(), "device: not_found: no device 0000:00:00.0");

    /* the server's codec refuses an upper-case address */
    assert_int_equal(gw_client_device(c, "0000:3B:00.0", &r), -EINVAL);
    assert_int_equal(e->code, GW_PROTO_INVALID_ARGUMENT);
    assert_true(e->remote);
    assert_string_equal(e->field, "args.address");
    assert_string_equal(e->message,
                        "args.address: '0000:3B:00.0' is not a canonical PCI address (dddd:bb:dd.f, lower-case hex)");

    assert_int_equal(gw_client_call(c, "frobnicate", NULL, &r), -EOPNOTSUPP);
    assert_int_equal(e->code, GW_PROTO_UNKNOWN_OP);
    assert_string_equal(e->message, "op: unknown op 'frobnicate'");

    assert_int_equal(gw_client_quarantine(c, "0000:3b:00.0", "", &r), -EINVAL);
    assert_string_equal(e->field, "args.reason");

    /* over the request limit: the reply's id is nil, and still answers this call */
    char *big = gw_xcalloc(GW_PROTO_MAX_REQUEST + 10, 1);
    memset(big, 'b', GW_PROTO_MAX_REQUEST + 9);
    json_t *args = json_pack("{s:s}", "note", big);
    assert_int_equal(gw_client_call(c, "devices", args, &r), -EMSGSIZE);
    assert_int_equal(e->code, GW_PROTO_TOO_LARGE);
    assert_true(e->remote);
    json_decref(args);
    free(big);

    /* a float never leaves the client */
    args = json_pack("{s:f}", "generation", 1.5);
    assert_int_equal(gw_client_call(c, "published", args, &r), -EINVAL);
    assert_int_equal(e->code, GW_PROTO_INVALID_ARGUMENT);
    assert_false(e->remote);
    assert_string_equal(gw_error_message(), "published: invalid_argument: 1.5: floats are not used by the protocol");
    json_decref(args);

    /* arguments the C API itself refuses */
    assert_int_equal(gw_client_device(c, NULL, &r), -EINVAL);
    assert_string_equal(gw_error_message(), "device: invalid_argument: address is NULL");
    const char *const with_null[] = { "0000:3b:00.0", NULL };
    assert_int_equal(gw_client_gate(c, "d", with_null, 2, &r), -EINVAL);
    assert_int_equal(gw_client_quarantine(c, "0000:3b:00.0", NULL, &r), -EINVAL);
    assert_int_equal(gw_client_published(c, (uint64_t)INT64_MAX + 1, &r), -EINVAL);
    assert_null(r);

    /* and after all that, the client still works */
    assert_int_equal(gw_client_hello(c, &r), 0);
    json_decref(r);
    assert_int_equal(e->code, GW_PROTO_OK);
    gw_client_free(c);

    /* a mutating op on the read endpoint */
    c = client_on(srv.read_ep, 5000);
    e = gw_client_last_error(c);
    assert_int_equal(gw_client_quarantine(c, "0000:3b:00.0", "x", &r), -EACCES);
    assert_int_equal(e->code, GW_PROTO_FORBIDDEN);
    assert_string_equal(e->message, "op: 'quarantine' is not served on the read endpoint");
    assert_int_equal(gw_client_devices(c, NULL, &r), 0);
    json_decref(r);
    gw_client_free(c);
}

static void broken_replies(void **state)
{
    gw_client *c = client_on(srv.admin_ep, 5000);
    const gw_client_error *e = gw_client_last_error(c);
    json_t *r;

    assert_int_equal(gw_client_device(c, "0000:ff:1f.6", &r), 0);      /* a stray reply is dropped */
    assert_result_is(r, "device");
    json_decref(r);

    assert_int_equal(gw_client_device(c, "0000:ff:1f.5", &r), -EPROTO);
    assert_int_equal(e->code, GW_PROTO_MALFORMED);
    assert_false(e->remote);
    assert_string_equal(e->message, "the daemon's reply: not msgpack: byte 0xc1 at offset 0 is not a valid type");

    assert_int_equal(gw_client_device(c, "0000:ff:1f.4", &r), -EPROTONOSUPPORT);
    assert_int_equal(e->code, GW_PROTO_UNSUPPORTED_VERSION);
    assert_false(e->remote);
    assert_string_equal(e->message, "the daemon's reply: reply: protocol version 2.0; this library speaks 1");

    assert_int_equal(gw_client_device(c, "0000:ff:1f.3", &r), -EPROTO);
    assert_string_equal(e->message, "reply frames: expected [empty][body], got 3 frame(s)");

    assert_int_equal(gw_client_device(c, "0000:ff:1f.2", &r), -EPROTO);
    assert_string_equal(e->message, "the daemon's result: result.address: expected a string, got nothing");

    assert_int_equal(gw_client_device(c, "0000:ff:1f.1", &r), -EIO);
    assert_int_equal(e->code, GW_PROTO_INTERNAL);
    assert_true(e->remote);
    assert_string_equal(e->code_name, "gone_fishing");
    assert_string_equal(gw_error_message(), "device: gone_fishing: fish elsewhere");

    assert_int_equal(gw_client_hello(c, &r), 0);
    json_decref(r);
    gw_client_free(c);
}

static void timeouts(void **state)
{
    json_t *r;
    /* a daemon that never answers */
    gw_client *c = client_on(srv.admin_ep, 200);
    const gw_client_error *e = gw_client_last_error(c);
    int64_t t0 = gw_monotonic_ms();
    assert_int_equal(gw_client_device(c, "0000:ff:1f.7", &r), -ETIMEDOUT);
    int64_t took = gw_monotonic_ms() - t0;
    assert_true(took >= 200 && took < 2200);
    assert_int_equal(e->code, GW_PROTO_UNAVAILABLE);
    assert_false(e->remote);
    char want[256];
    snprintf(want, sizeof want, "device: unavailable: %s: no reply within 200 ms (is gpuwardend running?)",
             srv.admin_ep);
    assert_string_equal(gw_error_message(), want);

    /* slow but in time */
    gw_client_free(c);
    c = client_on(srv.admin_ep, 4000);
    assert_int_equal(gw_client_device(c, "0000:ff:1f.0", &r), 0);
    assert_result_is(r, "device");
    json_decref(r);
    gw_client_free(c);

    /* A late reply (1 s, after this client's 300 ms) never answers a later
     * call of the same client: it went to the socket dropped at the timeout. */
    c = client_on(srv.admin_ep, 300);
    assert_int_equal(gw_client_device(c, "0000:ff:1f.0", &r), -ETIMEDOUT);
    assert_int_equal(gw_client_metrics(c, &r), -ETIMEDOUT);            /* the server is still sleeping */
    usleep(1200 * 1000);                                                /* both late replies are sent by now */
    assert_int_equal(gw_client_hello(c, &r), 0);
    assert_result_is(r, "hello");                                       /* not the late device or metrics reply */
    json_decref(r);
    gw_client_free(c);

    /* nothing listening at all */
    char *none = gw_strdup_printf("ipc://%s/nobody.sock", srv.dir);
    c = client_on(none, 200);
    t0 = gw_monotonic_ms();
    assert_int_equal(gw_client_hello(c, &r), -ETIMEDOUT);
    took = gw_monotonic_ms() - t0;
    assert_true(took >= 200 && took < 2200);
    snprintf(want, sizeof want, "hello: unavailable: %s: no connection within 200 ms (is gpuwardend running?)", none);
    assert_string_equal(gw_error_message(), want);
    assert_int_equal(gw_client_hello(c, &r), -ETIMEDOUT);               /* and again, without hanging */
    gw_client_free(c);
    free(none);
}

struct worker {
    int id, ok;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    gw_client_options o = GW_CLIENT_OPTIONS_INIT;
    o.endpoint = w->id % 2 ? srv.read_ep : srv.admin_ep;
    gw_client *c;
    if (gw_client_new(&c, &o) < 0)
        return NULL;
    for (int i = 0; i < 50; i++) {
        json_t *r = NULL;
        int rc;
        switch (i % 3) {
        case 0:
            rc = gw_client_hello(c, &r);
            if (rc == 0 && json_equal(r, srv.results[0]))
                w->ok++;
            break;
        case 1:
            rc = gw_client_devices(c, NULL, &r);
            if (rc == 0 && json_equal(r, srv.results[3]))
                w->ok++;
            break;
        default:
            rc = gw_client_device(c, "0000:00:00.0", &r);
            if (rc == -ENOENT && gw_client_last_error(c)->code == GW_PROTO_NOT_FOUND)
                w->ok++;
        }
        json_decref(r);
    }
    gw_client_free(c);
    return NULL;
}

static void many_clients_at_once(void **state)
{
    enum { N = 6 };
    pthread_t t[N];
    struct worker w[N] = { { 0 } };
    for (int i = 0; i < N; i++) {
        w[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].ok, 50);
    }
}

static void curve_over_tcp(void **state)
{
    gw_client_options o = GW_CLIENT_OPTIONS_INIT;
    o.endpoint = srv.tcp_ep;
    o.curve_server_key = srv.public_key;
    o.timeout_ms = 5000;
    gw_client *c;
    assert_int_equal(gw_client_new(&c, &o), 0);
    json_t *r;
    assert_int_equal(gw_client_hello(c, &r), 0);
    assert_result_is(r, "hello");
    json_decref(r);
    gw_client_free(c);

    /* with our own key pair */
    char pub[41], sec[41];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    o.curve_public_key = pub;
    o.curve_secret_key = sec;
    assert_int_equal(gw_client_new(&c, &o), 0);
    assert_int_equal(gw_client_devices(c, NULL, &r), 0);
    json_decref(r);
    gw_client_free(c);

    /* the wrong server key: the handshake fails, the call times out */
    char other_pub[41], other_sec[41];
    assert_int_equal(zmq_curve_keypair(other_pub, other_sec), 0);
    o = (gw_client_options)GW_CLIENT_OPTIONS_INIT;
    o.endpoint = srv.tcp_ep;
    o.curve_server_key = other_pub;
    o.timeout_ms = 300;
    assert_int_equal(gw_client_new(&c, &o), 0);
    assert_int_equal(gw_client_hello(c, &r), -ETIMEDOUT);
    gw_client_free(c);
}

/* ---- events ---- */

static void publish(void *pub, const char *topic, const void *body, size_t n)
{
    zmq_send(pub, topic, strlen(topic), ZMQ_SNDMORE);
    zmq_send(pub, body, n, 0);
}

static void publish_vector(void *pub, const char *name)
{
    char *p = gw_strdup_printf("%s/proto/vectors/%s.json", GW_SOURCE_DIR, name);
    json_t *twin = json_load_file(p, 0, NULL);
    free(p);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    gw_proto_error err;
    assert_int_equal(gw_proto_pack_json(&pk, json_object_get(twin, "value"), &err), 0);
    publish(pub, json_string_value(json_object_get(twin, "topic")), sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    json_decref(twin);
}

static void publish_made(void *pub, uint64_t seq, uint64_t boot, const char *topic)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    gw_proto_pack_event_head(&pk, seq, boot, 1767225600000ULL, "transition", "0000:3b:00.0", 1);
    gw_proto_pack_cstr(&pk, "to");
    gw_proto_pack_cstr(&pk, "discovered");
    publish(pub, topic ? topic : "transition/0000:3b:00.0", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static gw_event_msg *next_ok(gw_events *ev)
{
    gw_event_msg *m;
    int r = gw_events_next(ev, 5000, &m);
    if (r < 0)
        fail_msg("gw_events_next: %d %s", r, gw_error_message());
    return m;
}

static void events(void **state)
{
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/events.sock", srv.dir);
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_XPUB);
    int zero = 0;
    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(pub, ep), 0);

    gw_events_options o = GW_EVENTS_OPTIONS_INIT;
    o.endpoint = ep;
    gw_events *ev;
    assert_int_equal(gw_events_new(&ev, &o), 0);
    /* XPUB hands us the subscription, so nothing is published before it exists */
    char sub[8];
    int rcvtimeo = 5000;
    zmq_setsockopt(pub, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
    assert_int_equal(zmq_recv(pub, sub, sizeof sub, 0), 1);
    assert_int_equal(sub[0], 1);    /* subscribe to "" */

    gw_event_msg *m;
    assert_int_equal(gw_events_next(ev, 50, &m), -ETIMEDOUT);
    assert_null(m);

    publish_vector(pub, "ev_transition");               /* seq 41 */
    m = next_ok(ev);
    assert_string_equal(m->topic, "transition/0000:3b:00.0");
    assert_string_equal(m->kind, "transition");
    assert_string_equal(m->address, "0000:3b:00.0");
    assert_int_equal(m->seq, 41);
    assert_int_equal(m->boot, 1767139200000ULL);
    assert_int_equal(m->time, 1767225660000ULL);
    assert_int_equal(m->missed, 0);
    assert_false(m->restarted);
    assert_string_equal(json_string_value(json_object_get(m->body, "event")), "detach_seen");
    assert_true(json_is_null(json_object_get(m->body, "from")) == false);
    gw_event_msg_free(m);

    publish_vector(pub, "ev_cleanup_passed");           /* 42 */
    m = next_ok(ev);
    assert_int_equal(m->seq, 42);
    assert_int_equal(m->missed, 0);
    assert_int_equal(json_array_size(json_object_get(m->body, "steps")), 7);
    gw_event_msg_free(m);

    publish_vector(pub, "ev_cleanup_failed");           /* 44: 43 was lost */
    m = next_ok(ev);
    assert_int_equal(m->seq, 44);
    assert_int_equal(m->missed, 1);
    gw_event_msg_free(m);

    publish_vector(pub, "ev_transition_quarantine");    /* 57: 45..56 lost */
    m = next_ok(ev);
    assert_int_equal(m->missed, 12);
    gw_event_msg_free(m);

    publish_made(pub, 3, 1767300000000ULL, NULL);       /* a new daemon run; its 1 and 2 were missed */
    m = next_ok(ev);
    assert_true(m->restarted);
    assert_int_equal(m->missed, 2);
    assert_int_equal(m->seq, 3);
    gw_event_msg_free(m);

    /* refused, each dropped: garbage, a topic that does not match, seq going back, three frames */
    publish(pub, "transition/0000:3b:00.0", "\xc1", 1);
    assert_int_equal(gw_events_next(ev, 5000, &m), -EPROTO);
    assert_string_equal(gw_error_message(), "events: not msgpack: byte 0xc1 at offset 0 is not a valid type");
    publish_made(pub, 4, 1767300000000ULL, "cleanup/0000:3b:00.0");
    assert_int_equal(gw_events_next(ev, 5000, &m), -EPROTO);
    assert_string_equal(gw_error_message(),
                        "events: topic frame 'cleanup/0000:3b:00.0' does not match the body's 'transition/0000:3b:00.0'");
    publish_made(pub, 2, 1767300000000ULL, NULL);
    assert_int_equal(gw_events_next(ev, 5000, &m), -EPROTO);
    assert_string_equal(gw_error_message(), "events: seq 2 after 3 in the same daemon run");
    zmq_send(pub, "a", 1, ZMQ_SNDMORE);
    zmq_send(pub, "b", 1, ZMQ_SNDMORE);
    zmq_send(pub, "c", 1, 0);
    assert_int_equal(gw_events_next(ev, 5000, &m), -EPROTO);
    assert_string_equal(gw_error_message(), "events: expected [topic][body], got 3 frame(s)");

    publish_made(pub, 4, 1767300000000ULL, NULL);       /* and the stream goes on */
    m = next_ok(ev);
    assert_int_equal(m->seq, 4);
    assert_int_equal(m->missed, 0);
    gw_event_msg_free(m);
    assert_int_equal(gw_events_missed(ev), 1 + 12 + 2);

    gw_events_free(ev);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    char *p = gw_strdup_printf("%s/events.sock", srv.dir);
    unlink(p);
    free(p);

    gw_events_options bad = GW_EVENTS_OPTIONS_INIT;
    bad.endpoint = "udp://x";
    assert_int_equal(gw_events_new(&ev, &bad), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options),
        cmocka_unit_test(typed_calls),
        cmocka_unit_test(daemon_errors),
        cmocka_unit_test(broken_replies),
        cmocka_unit_test(timeouts),
        cmocka_unit_test(many_clients_at_once),
        cmocka_unit_test(curve_over_tcp),
        cmocka_unit_test(events),
    };
    return cmocka_run_group_tests(tests, server_start, server_stop);
}
