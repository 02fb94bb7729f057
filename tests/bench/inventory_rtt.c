/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inventory round trip against a running gpuwardend, beside a bare libzmq
 * ipc round trip of the same sizes (scripts/bench.d/inventory-rtt).
 *
 *   inventory_rtt N ECHO_DIR LABEL READ_EP ADMIN_EP [LABEL READ_EP ADMIN_EP ...]
 *   inventory_rtt --gate N SECONDS ECHO_DIR LABEL READ_EP ADMIN_EP
 *
 * (ADMIN_EP: for `published`, which only the admin endpoint serves.)
 *
 * For each daemon (its read endpoint), interleaved in blocks (GW_BENCH_BLOCK):
 *   client  gw_client_inventory(): libgpuwarden's client, request encode,
 *           reply decode into jansson, result checks (what a C caller pays)
 *   raw     a bare DEALER sending the same msgpack request and receiving the
 *           reply bytes, nothing decoded (the daemon's own cost + transport)
 *   echo    a bare DEALER to a minimal ROUTER echo server in another process
 *           on ipc, request and reply of exactly the daemon's sizes (the
 *           transport's floor)
 * N round trips each after 200 warm-up ones; p50 and p99 in microseconds,
 * and ratios to the echo. Prints Markdown table rows on stdout.
 *
 * --gate: the `gate` round trip (one GPU, as the libvirt hook sends it: on
 * the gate endpoint), the same gate on the read endpoint (the main loop's,
 * which the audits below load) and the echo of its sizes, interleaved, while another thread keeps a clean-up
 * of another GPU running (`sanitize` again as soon as one ends; the
 * daemon's hooks directory holds a hook that sleeps 2 s) and keeps an
 * `audit` request in flight on the read endpoint (the next one sent as each
 * is answered; alternately for a device with no record and for one with
 * 2,500). A gate is sent only while both are in flight.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <gpuwarden/client.h>
#include <jansson.h>
#include <msgpack.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* Round trips of one series before the next series takes its turn
 * (GW_BENCH_BLOCK; default 10). Small, so that the series see the same
 * moments of whatever else runs on the host: with blocks of 100 (5-10 ms
 * each), a burst of other work (a compiler starting) fell into one series'
 * block and not the other's, and moved one p99 alone. */
static size_t BLOCK = 10;
#define WARMUP 200

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
    fprintf(stderr, "inventory_rtt: %s\n", what);
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* The request body as the protocol's canonical msgpack: {"v": [1, 0],
 * "id": id, "op": "inventory", "args": {}}. Ids start at 65536, so the
 * canonical encoding is uint 32 in every request and every reply (which
 * echoes the id), and their sizes never change. */
static size_t request_op(char *buf, size_t cap, uint32_t id, const char *op, const char *gate_addr)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint32(&pk, id);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, "args", 4);
    if (gate_addr && !strcmp(op, "audit")) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "device", 6);
        msgpack_pack_str_with_body(&pk, gate_addr, strlen(gate_addr));
    } else if (gate_addr) {
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "addresses", 9);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_str_with_body(&pk, gate_addr, strlen(gate_addr));
        msgpack_pack_str_with_body(&pk, "domain", 6);
        msgpack_pack_str_with_body(&pk, "instance-0001", 13);
    } else {
        msgpack_pack_map(&pk, 0);
    }
    if (sb.size > cap)
        die("request too large");
    memcpy(buf, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static size_t request(char *buf, size_t cap, uint32_t id)
{
    return request_op(buf, cap, id, "inventory", NULL);
}

static void *dealer(void *ctx, const char *endpoint)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(s, endpoint) < 0)
        die("connect");
    return s;
}

/* One [empty][body] round trip on a DEALER; returns the reply size. */
static size_t roundtrip(void *s, const char *req, size_t n, char *reply, size_t cap)
{
    if (zmq_send(s, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(s, req, n, 0) < 0)
        die("send");
    char empty[1];
    if (zmq_recv(s, empty, sizeof empty, 0) != 0)
        die("reply delimiter");
    int r = zmq_recv(s, reply, cap, 0);
    if (r < 0 || (size_t)r > cap)
        die("reply body");
    return (size_t)r;
}

/* The echo server: a ROUTER that answers every [id][empty][body] with
 * [id][empty][reply_size bytes]. Runs until killed. */
static void echo_server(const char *endpoint, size_t reply_size)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    if (zmq_bind(s, endpoint) < 0)
        die("echo bind");
    char *reply = calloc(1, reply_size + 1);
    char id[256], body[65536];
    for (;;) {
        int idn = zmq_recv(s, id, sizeof id, 0);
        char empty[1];
        if (idn < 0 || zmq_recv(s, empty, sizeof empty, 0) != 0 || zmq_recv(s, body, sizeof body, 0) < 0)
            _exit(1);
        zmq_send(s, id, (size_t)idn, ZMQ_SNDMORE);
        zmq_send(s, "", 0, ZMQ_SNDMORE);
        zmq_send(s, reply, reply_size, 0);
    }
}

/* An echo server in a child process on ipc://<dir>/echo-<tag>.sock,
 * answering reply_size bytes, and a DEALER connected to it; *pid: the child. */
static void *start_echo(void *ctx, const char *dir, const char *tag, size_t reply_size, pid_t *pid)
{
    char ep[4096];
    snprintf(ep, sizeof ep, "ipc://%s/echo-%s.sock", dir, tag);
    *pid = fork();
    if (*pid < 0)
        die("fork");
    if (*pid == 0)
        echo_server(ep, reply_size);
    return dealer(ctx, ep);
}

/* Wait until every GPU's clean-up is over, so the inventory stops changing. */
static void wait_settled(gw_client *c)
{
    for (int tries = 0; tries < 600; tries++) {
        json_t *devs = NULL;
        if (gw_client_devices(c, NULL, &devs) == 0) {
            json_t *arr = json_object_get(devs, "devices"), *d;
            size_t i;
            bool busy = json_array_size(arr) == 0;
            json_array_foreach(arr, i, d) {
                const char *st = json_string_value(json_object_get(d, "state"));
                busy |= json_is_true(json_object_get(d, "cleaning")) || !st || !strcmp(st, "discovered");
            }
            json_decref(devs);
            if (!busy)
                return;
        }
        usleep(50000);
    }
    die("the daemon's clean-ups did not finish in 30 s");
}

static gw_client *client(const char *endpoint)
{
    gw_client_options o = GW_CLIENT_OPTIONS_INIT;
    o.endpoint = endpoint;
    gw_client *c = NULL;
    if (gw_client_new(&c, &o) < 0)
        die(gw_error_message());
    return c;
}

static void bench(size_t n, const char *echo_dir, const char *label, const char *endpoint, const char *admin_ep)
{
    gw_client *c = client(endpoint), *admin = client(admin_ep);
    wait_settled(c);

    /* Confirm the generation as the shim would: sanitized GPUs become
     * allocatable and the inventory lists their attach handles. */
    json_t *inv = NULL, *pub = NULL;
    if (gw_client_inventory(c, &inv) < 0)
        die(gw_error_message());
    uint64_t gen = (uint64_t)json_integer_value(json_object_get(inv, "generation"));
    json_decref(inv);
    if (gw_client_published(admin, gen, &pub) < 0)
        die(gw_error_message());
    json_decref(pub);
    gw_client_free(admin);
    if (gw_client_inventory(c, &inv) < 0)
        die(gw_error_message());
    size_t n_deps = json_array_size(json_object_get(inv, "deployables"));
    size_t n_handles = 0, n_gpus = 0;
    json_t *d;
    size_t i;
    json_array_foreach(json_object_get(inv, "deployables"), i, d) {
        n_handles += json_array_size(json_object_get(d, "attach_handles"));
        n_gpus += json_array_size(json_object_get(d, "gpus"));
    }
    json_decref(inv);

    void *ctx = zmq_ctx_new();
    void *raw = dealer(ctx, endpoint);
    char req[256], *reply = malloc(8 << 20);
    size_t req_n = request(req, sizeof req, 0x10000);
    size_t reply_n = roundtrip(raw, req, req_n, reply, 8 << 20);

    pid_t pid;
    void *echo = start_echo(ctx, echo_dir, label, reply_n, &pid);

    double *t_client = calloc(n, sizeof(double)), *t_raw = calloc(n, sizeof(double)),
           *t_echo = calloc(n, sizeof(double));
    uint32_t id = 0x10000;
    for (size_t w = 0; w < WARMUP; w++) {
        json_t *r = NULL;
        if (gw_client_inventory(c, &r) < 0)
            die(gw_error_message());
        json_decref(r);
        request(req, sizeof req, ++id);
        if (roundtrip(raw, req, req_n, reply, 8 << 20) != reply_n)
            die("the daemon's reply changed size (still cleaning?)");
        if (roundtrip(echo, req, req_n, reply, 8 << 20) != reply_n)
            die("echo size");
    }
    for (size_t done = 0; done < n; done += BLOCK) {
        size_t end = done + BLOCK < n ? done + BLOCK : n;
        for (size_t k = done; k < end; k++) {
            json_t *r = NULL;
            double t0 = now_us();
            int rc = gw_client_inventory(c, &r);
            t_client[k] = now_us() - t0;
            if (rc < 0)
                die(gw_error_message());
            json_decref(r);
        }
        for (size_t k = done; k < end; k++) {
            request(req, sizeof req, ++id);
            double t0 = now_us();
            size_t got = roundtrip(raw, req, req_n, reply, 8 << 20);
            t_raw[k] = now_us() - t0;
            if (got != reply_n)
                die("the daemon's reply changed size");
        }
        for (size_t k = done; k < end; k++) {
            double t0 = now_us();
            roundtrip(echo, req, req_n, reply, 8 << 20);
            t_echo[k] = now_us() - t0;
        }
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);

    double c50 = pct(t_client, n, 0.50), c99 = pct(t_client, n, 0.99);
    double r50 = pct(t_raw, n, 0.50), r99 = pct(t_raw, n, 0.99);
    double e50 = pct(t_echo, n, 0.50), e99 = pct(t_echo, n, 0.99);
    printf("| %s | %zu GPUs, %zu deployables, %zu handles | %zu B / %zu B | %.0f / %.0f | %.0f / %.0f | "
           "%.0f / %.0f | %.1fx / %.1fx | %.1fx / %.1fx |\n",
           label, n_gpus, n_deps, n_handles, req_n, reply_n, c50, c99, r50, r99, e50, e99, c50 / e50, c99 / e99,
           r50 / e50, r99 / e99);
    fflush(stdout);

    free(t_client);
    free(t_raw);
    free(t_echo);
    free(reply);
    zmq_close(raw);
    zmq_close(echo);
    zmq_ctx_term(ctx);
    gw_client_free(c);
}

/* ---- --gate ---- */

typedef struct load {
    const char *read_ep, *admin_ep, *target;
    atomic_bool stop;
    atomic_bool cleaning;               /* a clean-up of the target runs now */
    atomic_uint audits_out;             /* audit requests sent, not answered */
    atomic_ulong cleanups, audits;
} load;

static bool device_cleaning(gw_client *c, const char *address)
{
    json_t *dev = NULL;
    if (gw_client_device(c, address, &dev) < 0)
        return false;
    bool r = json_is_true(json_object_get(dev, "cleaning"));
    json_decref(dev);
    return r;
}

/* Keeps a clean-up of the target running and an audit in flight. */
static void *load_main(void *arg)
{
    load *l = arg;
    gw_client *admin = client(l->admin_ep);
    void *ctx = zmq_ctx_new();
    void *aud = dealer(ctx, l->read_ep);
    char req[2][256], *reply = malloc(8 << 20);
    uint32_t id = 0x20000;
    /* Alternately: for a device with no record (the whole log was read for
     * it before the daemon indexed the log; now nothing is), and for one of
     * the log's devices with 2,500 records (the newest 100 are read and sent
     * back, ~30 KB: the costliest `audit` now, at the default limit). */
    size_t n[2] = { request_op(req[0], sizeof req[0], id, "audit", "0000:ff:1f.7"),
                    request_op(req[1], sizeof req[1], id, "audit", "0000:f1:00.0") };
    unsigned next = 0;
    zmq_send(aud, "", 0, ZMQ_SNDMORE);
    zmq_send(aud, req[next], n[next], 0);
    next ^= 1;
    atomic_fetch_add(&l->audits_out, 1);
    double next_check = 0;
    while (!atomic_load(&l->stop)) {
        zmq_pollitem_t it = { aud, 0, ZMQ_POLLIN, 0 };
        zmq_poll(&it, 1, 20);
        while (it.revents && zmq_recv(aud, reply, 8 << 20, ZMQ_DONTWAIT) >= 0) {
            if (zmq_recv(aud, reply, 8 << 20, 0) < 0)
                die("audit reply");
            atomic_fetch_sub(&l->audits_out, 1);
            atomic_fetch_add(&l->audits, 1);
            zmq_send(aud, "", 0, ZMQ_SNDMORE);
            zmq_send(aud, req[next], n[next], 0);
            next ^= 1;
            atomic_fetch_add(&l->audits_out, 1);
        }
        if (now_us() >= next_check) {
            next_check = now_us() + 100000;
            bool running = device_cleaning(admin, l->target);
            if (!running) {
                json_t *r = NULL;
                if (gw_client_sanitize(admin, l->target, &r) == 0) {
                    atomic_fetch_add(&l->cleanups, 1);
                    running = true;
                }
                json_decref(r);
            }
            atomic_store(&l->cleaning, running);
        }
    }
    free(reply);
    zmq_close(aud);
    zmq_ctx_term(ctx);
    gw_client_free(admin);
    return NULL;
}

static bool under_load(load *l)
{
    return atomic_load(&l->cleaning) && atomic_load(&l->audits_out) > 0;
}

static void gate_bench(size_t n, double span, const char *echo_dir, const char *label, const char *read_ep,
                       const char *admin_ep, const char *gate_ep)
{
    gw_client *c = client(read_ep), *admin = client(admin_ep);
    wait_settled(c);
    json_t *inv = NULL, *pub = NULL, *devs = NULL;
    if (gw_client_inventory(c, &inv) < 0)
        die(gw_error_message());
    if (gw_client_published(admin, (uint64_t)json_integer_value(json_object_get(inv, "generation")), &pub) < 0)
        die(gw_error_message());
    json_decref(inv);
    json_decref(pub);
    if (gw_client_devices(c, NULL, &devs) < 0)
        die(gw_error_message());
    json_t *arr = json_object_get(devs, "devices");
    size_t nd = json_array_size(arr);
    if (nd < 2)
        die("--gate needs two GPUs");
    /* The gated GPU and the one kept cleaning: first and last, in different
     * IOMMU groups on every test host (a clean-up holds its whole group). */
    char gated[32], target[32];
    snprintf(gated, sizeof gated, "%s", json_string_value(json_object_get(json_array_get(arr, 0), "address")));
    snprintf(target, sizeof target, "%s",
             json_string_value(json_object_get(json_array_get(arr, nd - 1), "address")));
    json_decref(devs);

    void *ctx = zmq_ctx_new();
    /* The gate as the hook sends it (the gate endpoint), and the same gate
     * on the read endpoint, which the main loop serves with the audits. */
    void *raw = dealer(ctx, gate_ep), *on_read = dealer(ctx, read_ep);
    char req[512], *reply = malloc(1 << 20);
    uint32_t id = 0x10000;
    size_t req_n = request_op(req, sizeof req, id, "gate", gated);
    size_t reply_n = roundtrip(raw, req, req_n, reply, 1 << 20);
    if (roundtrip(on_read, req, req_n, reply, 1 << 20) != reply_n)
        die("the gate's reply differs in size between the endpoints");
    char tag[256];
    snprintf(tag, sizeof tag, "gate-%s", label);
    pid_t pid;
    void *echo = start_echo(ctx, echo_dir, tag, reply_n, &pid);

    load l = { .read_ep = read_ep, .admin_ep = admin_ep, .target = target };
    pthread_t th;
    pthread_create(&th, NULL, load_main, &l);
    while (!atomic_load(&l.cleaning))
        usleep(10000);
    double *t_gate = calloc(n, sizeof(double)), *t_read = calloc(n, sizeof(double)),
           *t_echo = calloc(n, sizeof(double));
    size_t loaded = 0;
    for (size_t w = 0; w < WARMUP; w++) {
        request_op(req, sizeof req, ++id, "gate", gated);
        roundtrip(raw, req, req_n, reply, 1 << 20);
        roundtrip(on_read, req, req_n, reply, 1 << 20);
        roundtrip(echo, req, req_n, reply, 1 << 20);
    }
    double t_start = now_us();
    for (size_t done = 0; done < n; done += BLOCK) {
        size_t end = done + BLOCK < n ? done + BLOCK : n;
        for (size_t k = done; k < end; k++) {
            request_op(req, sizeof req, ++id, "gate", gated);
            /* A sample is taken only under load: an audit answered in
             * microseconds leaves moments with none in flight (between its
             * reply and the next request), and a gate sent then would
             * measure an idle daemon. */
            for (int spin = 0; spin < 20000 && !under_load(&l); spin++)
                usleep(20);
            bool busy = under_load(&l);
            double t0 = now_us();
            size_t got = roundtrip(raw, req, req_n, reply, 1 << 20);
            t_gate[k] = now_us() - t0;
            loaded += busy;
            if (got != reply_n)
                die("the gate's reply changed size");
        }
        for (size_t k = done; k < end; k++) {
            request_op(req, sizeof req, ++id, "gate", gated);
            for (int spin = 0; spin < 20000 && !under_load(&l); spin++)
                usleep(20);
            double t0 = now_us();
            size_t got = roundtrip(on_read, req, req_n, reply, 1 << 20);
            t_read[k] = now_us() - t0;
            if (got != reply_n)
                die("the gate's reply changed size");
        }
        for (size_t k = done; k < end; k++) {
            double t0 = now_us();
            roundtrip(echo, req, req_n, reply, 1 << 20);
            t_echo[k] = now_us() - t0;
        }
        /* Blocks spread over `span` seconds: the samples cover several
         * clean-ups and audits, as a hook's gates come, one now and then. */
        double due = t_start + (double)end / (double)n * span * 1e6;
        while (now_us() < due)
            usleep(1000);
    }
    double secs = (now_us() - t_start) / 1e6;
    atomic_store(&l.stop, true);
    pthread_join(th, NULL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    /* The worst too: a gate that waited behind something on the main loop
     * (a rescan) is one slow VM start, rarer than 1 in 100. */
    double g50 = pct(t_gate, n, 0.50), g99 = pct(t_gate, n, 0.99), gmax = pct(t_gate, n, 1.0);
    double r50 = pct(t_read, n, 0.50), r99 = pct(t_read, n, 0.99), rmax = pct(t_read, n, 1.0);
    double e50 = pct(t_echo, n, 0.50), e99 = pct(t_echo, n, 0.99), emax = pct(t_echo, n, 1.0);
    printf("| %s | %s (cleaning %s) | %zu B / %zu B | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | "
           "%.1fx / %.1fx | %.1fx / %.1fx | %.0f%% | %lu / %lu in %.1f s |\n",
           label, gated, target, req_n, reply_n, g50, g99, gmax, r50, r99, rmax, e50, e99, emax, g50 / e50,
           g99 / e99, r50 / e50, r99 / e99, 100.0 * loaded / n, (unsigned long)atomic_load(&l.cleanups),
           (unsigned long)atomic_load(&l.audits), secs);
    fflush(stdout);
    free(t_gate);
    free(t_read);
    free(t_echo);
    free(reply);
    zmq_close(raw);
    zmq_close(on_read);
    zmq_close(echo);
    zmq_ctx_term(ctx);
    gw_client_free(admin);
    gw_client_free(c);
}

int main(int argc, char **argv)
{
    const char *b = getenv("GW_BENCH_BLOCK");
    if (b && (BLOCK = strtoul(b, NULL, 10)) < 1)
        die("GW_BENCH_BLOCK must be at least 1");
    if (argc == 9 && !strcmp(argv[1], "--gate")) {
        size_t n = strtoul(argv[2], NULL, 10);
        double span = strtod(argv[3], NULL);
        if (n < 100)
            die("N must be at least 100");
        printf("| host | gated GPU (GPU kept cleaning) | request / reply | gate p50 / p99 / max (µs) | "
               "gate on the read endpoint p50 / p99 / max (µs) | bare echo p50 / p99 / max (µs) | gate / echo | "
               "on read / echo | samples under load | clean-ups / audits answered |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|\n");
        gate_bench(n, span, argv[4], argv[5], argv[6], argv[7], argv[8]);
        return 0;
    }
    if (argc < 6 || (argc - 3) % 3)
        die("usage: inventory_rtt N ECHO_DIR LABEL READ_EP ADMIN_EP [...] | --gate N SECONDS ECHO_DIR LABEL READ_EP "
            "ADMIN_EP GATE_EP");
    size_t n = strtoul(argv[1], NULL, 10);
    if (n < 100)
        die("N must be at least 100");
    printf("| host | inventory | request / reply | gw_client_inventory p50 / p99 (µs) | raw DEALER p50 / p99 (µs) | "
           "bare echo p50 / p99 (µs) | client / echo | raw / echo |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int a = 3; a + 2 < argc; a += 3)
        bench(n, argv[2], argv[a], argv[a + 1], argv[a + 2]);
    return 0;
}
