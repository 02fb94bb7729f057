/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwardend's endpoint guard (agent/daemon/endpoint.c), compiled into this
 * test: the ZMTP reading that drops a peer whose message has too many frames
 * or bytes (fed byte by byte and in one piece alike), the bound on all
 * unfinished messages, and, on a real ROUTER socket, the connection cap and
 * an accept() that finds no descriptor left (libzmq would abort on EMFILE;
 * the guard refuses the connection). tests/python/test_daemon_bounds.py runs
 * the same against the daemon. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <poll.h>

#include "../../agent/daemon/endpoint.c"

#define MAX_MSG 1000

static const uint8_t GREETING_NULL[64] = { 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0, 'N', 'U', 'L', 'L' };

typedef struct wire {
    uint8_t b[64 * 1024];
    size_t n;
} wire;

static void put(wire *w, const void *p, size_t n)
{
    assert_true(w->n + n <= sizeof w->b);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void put_frame(wire *w, uint8_t flags, size_t size)
{
    uint8_t hdr[9];
    size_t h = 0;
    if (size > 255) {
        hdr[h++] = flags | 0x02;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)(size >> (8 * i));
    } else {
        hdr[h++] = flags;
        hdr[h++] = (uint8_t)size;
    }
    put(w, hdr, h);
    static const uint8_t zeros[4096];
    for (size_t left = size; left;) {
        size_t k = left < sizeof zeros ? left : sizeof zeros;
        put(w, zeros, k);
        left -= k;
    }
}

/* Greeting and READY, as a DEALER sends them. */
static void put_hello(wire *w)
{
    put(w, GREETING_NULL, 64);
    static const char ready[] = "\x05READY\x0bSocket-Type\x00\x00\x00\x06" "DEALER";
    uint8_t hdr[2] = { 0x04, (uint8_t)(sizeof ready - 1) };
    put(w, hdr, 2);
    put(w, ready, sizeof ready - 1);
}

static void setup_guard(void)
{
    g.on = true;
    g.nfds = 0;
    g.inflight_max = 16 * MAX_MSG;
    atomic_store(&g.inflight, 0);
    memset(&g.ep[0], 0, sizeof g.ep[0]);
    snprintf(g.ep[0].name, sizeof g.ep[0].name, "test");
    g.ep[0].max_msg = MAX_MSG;
    atomic_store(&g.n_ep, 1);
}

/* The verdict on a stream, fed whole and fed a byte at a time: the same. */
static const char *verdict(const wire *w)
{
    setup_guard();
    guard_conn whole = { 0 }, bytes = { 0 };
    const char *a = zmtp_feed(&whole, w->b, w->n);
    message_done(&whole);
    const char *b = NULL;
    for (size_t i = 0; i < w->n && !b; i++)
        b = zmtp_feed(&bytes, w->b + i, 1);
    message_done(&bytes);
    assert_true((a == NULL) == (b == NULL));
    if (a)
        assert_string_equal(a, b);
    return a;
}

static void good_streams_pass(void **state)
{
    (void)state;
    wire w = { .n = 0 };
    put_hello(&w);
    for (int i = 0; i < 3; i++) {
        put_frame(&w, 0x01, 0);             /* [empty] */
        put_frame(&w, 0x00, 300);           /* [body] */
    }
    put_frame(&w, 0x04, 10);                /* a heartbeat between messages */
    for (int i = 0; i < 7; i++)             /* 8 frames: malformed, but read */
        put_frame(&w, 0x01, 10);
    put_frame(&w, 0x00, MAX_MSG - 70);      /* exactly max_message_bytes */
    assert_null(verdict(&w));
    assert_int_equal(atomic_load(&g.inflight), 0);
}

static void bad_streams_drop(void **state)
{
    (void)state;
    wire w = { .n = 0 };
    put_hello(&w);
    for (int i = 0; i < 9; i++)
        put_frame(&w, 0x01, 0);
    assert_string_equal(verdict(&w), "a message of more frames than the protocol allows");

    w.n = 0;
    put_hello(&w);
    put_frame(&w, 0x01, 0);
    put_frame(&w, 0x01, 600);
    put_frame(&w, 0x00, 401);
    assert_string_equal(verdict(&w), "a message larger than max_message_bytes");

    w.n = 0;
    put_hello(&w);
    put_frame(&w, 0x01, 0);
    put_frame(&w, 0x04, 5);
    assert_string_equal(verdict(&w), "a command inside a message");

    static const uint8_t v1[] = { 0x05, 0x00, 'h', 'e', 'l', 'l' };
    w.n = 0;
    put(&w, v1, sizeof v1);
    assert_string_equal(verdict(&w), "a ZMTP 1.0 peer (the protocol needs ZMTP 3)");
    uint8_t v2[12] = { 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 1, 5 };
    w.n = 0;
    put(&w, v2, sizeof v2);
    assert_string_equal(verdict(&w), "a ZMTP 2.0 peer (the protocol needs ZMTP 3)");
    v2[9] = 0x7e;
    w.n = 0;
    put(&w, v2, sizeof v2);
    assert_string_equal(verdict(&w), "a ZMTP 1.0 peer (the protocol needs ZMTP 3)");
}

/* CURVE encrypts the frame flags: nothing after the greeting is judged. */
static void curve_is_opaque(void **state)
{
    (void)state;
    wire w = { .n = 0 };
    uint8_t greeting[64];
    memcpy(greeting, GREETING_NULL, 64);
    memcpy(greeting + 12, "CURVE", 5);
    put(&w, greeting, 64);
    for (int i = 0; i < 20; i++)
        put_frame(&w, 0x01, 900);
    assert_null(verdict(&w));
}

/* Unfinished messages of all peers together stay under 16 x max: the peer
 * whose frame would pass it is dropped; finished ones give their bytes back. */
static void unfinished_messages_share_a_bound(void **state)
{
    (void)state;
    setup_guard();
    guard_conn c[20];
    memset(c, 0, sizeof c);
    wire hello = { .n = 0 }, part = { .n = 0 }, end = { .n = 0 };
    put_hello(&hello);
    put_frame(&part, 0x01, 900);
    put_frame(&end, 0x00, 0);
    int dropped = -1;
    for (int i = 0; i < 20 && dropped < 0; i++) {
        assert_null(zmtp_feed(&c[i], hello.b, hello.n));
        if (zmtp_feed(&c[i], part.b, part.n))
            dropped = i;
    }
    assert_int_equal(dropped, 17);      /* 17 x 900 fit in 16,000; the 18th does not */
    assert_int_equal(atomic_load(&g.inflight), 17 * 900);
    for (int i = 0; i < 17; i++)
        assert_null(zmtp_feed(&c[i], end.b, end.n));
    assert_int_equal(atomic_load(&g.inflight), 0);
}

/* ---- on a real socket ------------------------------------------------------ */

static int raw_connect(const char *path)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    for (int tries = 0; connect(s, (struct sockaddr *)&a, sizeof a) < 0; tries++) {
        assert_true(errno == EAGAIN && tries < 1000);
        usleep(1000);
    }
    wire w = { .n = 0 };
    put_hello(&w);
    (void)!send(s, w.b, w.n, MSG_NOSIGNAL);    /* a refused one is closed already */
    return s;
}

/* Whether the far end closed the connection (within 1 s). */
static bool closed_by_peer(int s)
{
    struct pollfd p = { s, POLLIN, 0 };
    char buf[256];
    for (int i = 0; i < 10; i++) {
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return true;
    }
    return false;
}

static void connections_capped_and_emfile_refused(void **state)
{
    (void)state;
    memset(&g, 0, offsetof(__typeof__(g), reserve_lock));
    long cap = gwd_endpoint_limits(3, MAX_MSG);
    assert_int_equal(cap, 3);
    char dir[] = "/tmp/gw-guard-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *ep = gw_strdup_printf("ipc://%s/r.sock", dir);
    void *ctx = zmq_ctx_new();
    void *sock = gwd_endpoint_bind(ctx, ZMQ_ROUTER, "read", ep, 0600, NULL, false, NULL, MAX_MSG, cap);
    assert_non_null(sock);

    int s[6];
    for (int i = 0; i < 6; i++)
        s[i] = raw_connect(ep + 6);
    int open_ones = 0;
    for (int i = 0; i < 6; i++)
        open_ones += !closed_by_peer(s[i]);
    assert_int_equal(open_ones, 3);
    assert_true(atomic_load(&g.ep[0].refused) >= 3);
    for (int i = 0; i < 6; i++)
        close(s[i]);
    for (int i = 0; i < 100 && atomic_load(&g.ep[0].conns); i++)
        usleep(10000);
    assert_int_equal(atomic_load(&g.ep[0].conns), 0);

    /* Every descriptor of the process taken: the next accept() gets EMFILE. */
    struct rlimit was;
    getrlimit(RLIMIT_NOFILE, &was);
    struct rlimit low = { 128, was.rlim_max };
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int fill[128], nfill = 0;
    while (nfill < 128 && (fill[nfill] = dup(0)) >= 0)
        nfill++;
    assert_int_equal(errno, EMFILE);
    unsigned long refused = atomic_load(&g.ep[0].refused);
    /* one descriptor for the client's end; none left for the daemon's */
    close(fill[--nfill]);
    int late = raw_connect(ep + 6);
    assert_true(closed_by_peer(late));
    assert_int_equal(atomic_load(&g.ep[0].refused), refused + 1);
    assert_int_equal(atomic_load(&g.ep[0].conns), 0);
    while (nfill)
        close(fill[--nfill]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);
    close(late);
    /* and the endpoint takes connections again */
    int again = raw_connect(ep + 6);
    assert_false(closed_by_peer(again));
    close(again);

    zmq_close(sock);
    zmq_ctx_term(ctx);
    unlink(ep + 6);
    rmdir(dir);
    free(ep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_streams_pass),
        cmocka_unit_test(bad_streams_drop),
        cmocka_unit_test(curve_is_opaque),
        cmocka_unit_test(unfinished_messages_share_a_bound),
        cmocka_unit_test(connections_capped_and_emfile_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
