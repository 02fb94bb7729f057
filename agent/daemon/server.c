/* SPDX-License-Identifier: Apache-2.0 */
/* The request path, top to bottom: receive [routing id][empty][body] from a
 * ROUTER socket; decode and validate the body (proto codec: size, structure,
 * limits, version, op, access, arguments - the first failure is the answer);
 * run the op; pack the reply canonically; send it back. Every failure is an
 * error reply; nothing a client sends can stop the loop.
 *
 * Slow ops off the request thread. `audit` reads the log from disk (up to
 * its whole size, when a filter matches little), which on this thread made
 * every request behind it wait: 100 pipelined `audit`s from one read client
 * held an admin `hello` for 37.6 s, and the hook's `gate` waits the same
 * way. Such an op is decoded and checked here, then handed to one worker
 * thread with the routing id of its sender; the worker runs it and packs the
 * reply, and this thread sends it (ZeroMQ sockets are not thread-safe) when
 * the worker wakes the loop. The worker keeps an index of the log
 * (agent/lib/audit_index.c: which lines are whose), so an `audit` for one
 * device reads only its lines, and the index follows the files (the CLI
 * reads them too, and they rotate under the registry) instead of holding a
 * second copy of the records. It still reads and parses what it returns,
 * which is why it stays off this thread. The worker runs at a lower
 * priority, so on a busy host the request thread wins the CPU. Replies are matched by id (PROTOCOL.md §1), so a reply
 * overtaken by a faster one is in order. */
#include <errno.h>
#include <msgpack.h>
#include <pthread.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#include "audit_internal.h"
#include "daemon.h"
#include "ops.h"
#include "proto_codec.h"
#include "util.h"

/* At most this many requests per socket per loop turn, so one busy client
 * cannot starve the other endpoint, signals or events. */
#define BATCH 64
/* Slow requests waiting for the worker or for their reply to be sent; one
 * more is answered `busy` at once. */
#define SLOW_QUEUE_MAX 128
/* The worker's nice value relative to the daemon. */
#define SLOW_NICE 10

typedef struct slow_job {
    struct slow_job *next;
    void *sock;                         /* where the reply goes (only the main thread sends) */
    unsigned char rid[256];             /* the sender's routing id (ZeroMQ: at most 255 bytes) */
    size_t rid_len;
    gw_proto_endpoint ep;
    gw_proto_op op;                     /* req's, kept after the worker is done with req */
    uint64_t t0_us;                     /* when it was received (gwd_mono_us), for its latency */
    gw_proto_request req;               /* moved here, owned */
    msgpack_sbuffer reply;
    int code;                           /* the error code the reply carries; 0 = ok */
} slow_job;

struct gwd_slow {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work;
    slow_job *todo, *todo_tail;         /* FIFO */
    slow_job *done, *done_tail;         /* FIFO: replies in the order they were made */
    size_t n;                           /* jobs in both queues */
    bool stop;
};

/* [routing id][empty], the frames before a reply's body. */
static void send_envelope(void *sock, const void *rid, size_t rid_len)
{
    zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
}

static void send_reply(void *sock, const void *rid, size_t rid_len, const msgpack_sbuffer *body)
{
    send_envelope(sock, rid, rid_len);
    zmq_send(sock, body->data, body->size, ZMQ_DONTWAIT);
}

static void free_body(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* send_reply() for a body this thread is done with (a worker's reply): its
 * buffer goes to libzmq as it is instead of being copied, and is freed
 * where libzmq is done with it (on its I/O thread). An `audit` reply is up to
 * ~1 MiB: the copy, and freeing what the worker allocated, cost the request
 * thread more than the `gate`s it serves meanwhile. */
static void send_reply_owned(void *sock, const void *rid, size_t rid_len, msgpack_sbuffer *body)
{
    zmq_msg_t m;
    size_t size = body->size;
    char *data = msgpack_sbuffer_release(body);
    if (!data || zmq_msg_init_data(&m, data, size, free_body, NULL) < 0) {
        free(data);
        return;
    }
    send_envelope(sock, rid, rid_len);
    if (zmq_msg_send(&m, sock, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&m);
}

static void pack_error(msgpack_sbuffer *sb, bool has_id, uint64_t id, const gw_proto_error *err)
{
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    gw_proto_pack_reply_error(&pk, has_id, id, err);
}

static void count_error(gwd *d, int code)
{
    if ((unsigned)code < 16)
        d->errors[code]++;
}

/* Run a decoded request and pack its reply into sb; returns the error code
 * of the reply (0 = ok). Any serving thread, with its own reply cache (NULL:
 * none); counts nothing. */
static int run(gwd *d, struct gwd_replies *cache, const gw_proto_request *req, gw_proto_endpoint ep,
               msgpack_sbuffer *sb)
{
    /* A read whose state has not changed since its last reply: that reply's
     * result again, under this request's id (replies.c). */
    gwd_reply_key key;      /* set by the lookup (not zeroed: 1 KiB on every request) */
    if (gwd_replies_lookup(d, cache, req, &key, sb))
        return 0;
    json_t *result = NULL;
    gw_proto_error err;
    memset(&err, 0, sizeof err);
    gw_error_clear();
    if (gwd_op_run(d, req, ep, &result, &err) < 0) {
        gw_log(GW_LOG_INFO, "%s: %s: %s", gw_proto_op_name(req->op), gw_proto_code_name(err.code), err.message);
        pack_error(sb, req->has_id, req->id, &err);
        return err.code;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    gw_proto_pack_reply_ok(&pk, req->has_id, req->id);
    size_t head = sb->size;
    int code = 0;
    if (gw_proto_pack_json(&pk, result, &err) < 0) {
        gw_log(GW_LOG_ERR, "%s: result not encodable: %s", gw_proto_op_name(req->op), err.message);
        gw_proto_errorf(&err, GW_PROTO_INTERNAL, NULL, "result could not be encoded");
        pack_error(sb, req->has_id, req->id, &err);
        code = err.code;
    } else {
        gwd_replies_store(d, cache, req, &key, result, sb->data + head, sb->size - head);
    }
    json_decref(result);
    return code;
}

/* ---- the worker ---------------------------------------------------------- */

/* The worker runs at nice 10: a busy host gives the request thread the CPU
 * first, yet the worker is never far from it. Not SCHED_IDLE, measured
 * worse (docs/BENCHMARKS.md, the gate run): the `gate` p50 was 3.0-4.1x the
 * echo with the worker at SCHED_IDLE against 0.8-1.8x at nice 10, in
 * alternating runs on a loaded 2-CPU host. The worker shares the malloc
 * arena (main.c: one arena) and its queue's lock with the request thread,
 * and at SCHED_IDLE's weight (3, against 1024) a worker preempted while it
 * holds either keeps the request thread waiting until a CPU is idle.
 * Linux: a thread's nice value is its own. Failing leaves it at the
 * daemon's, which is no worse than before. */
static void background_priority(void)
{
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), SLOW_NICE) < 0)
        gw_log(GW_LOG_WARNING, "request worker: nice %d: %s; it runs at the request thread's priority", SLOW_NICE,
               strerror(errno));
}

/* The audit log's index, built before the first request (a log of ~144 MiB,
 * eight full segments, is read once here rather than by the first `audit`). A
 * failure leaves the index to the first read, which reports it. */
static void index_audit_log(gwd *d)
{
    uint64_t t0 = gwd_mono_us(), bytes = 0;
    if (gw_audit_index_update(d->audit_index, gw_registry_state_dir(d->reg)) < 0) {
        gw_log(GW_LOG_WARNING, "audit index: %s (the first `audit` tries again)", gw_error_message());
        return;
    }
    gw_audit_index_stats(d->audit_index, &bytes, NULL);
    gw_log(GW_LOG_INFO, "audit index: %llu byte(s) of the audit log indexed in %llu ms", (unsigned long long)bytes,
           (unsigned long long)((gwd_mono_us() - t0) / 1000));
}

static void *slow_main(void *arg)
{
    gwd *d = arg;
    struct gwd_slow *s = d->slow;
    background_priority();
    index_audit_log(d);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->todo && !s->stop)
            pthread_cond_wait(&s->work, &s->lock);
        if (s->stop)
            break;
        slow_job *j = s->todo;
        s->todo = j->next;
        if (!s->todo)
            s->todo_tail = NULL;
        pthread_mutex_unlock(&s->lock);

        j->code = run(d, NULL, &j->req, j->ep, &j->reply);
        gw_proto_request_done(&j->req);
        j->next = NULL;

        pthread_mutex_lock(&s->lock);
        if (s->done_tail)
            s->done_tail->next = j;
        else
            s->done = j;
        s->done_tail = j;
        /* The wake-up with the lock released: the loop it wakes takes the
         * lock at once, and this thread, which yields to it (and to any
         * other), would hold it meanwhile. */
        pthread_mutex_unlock(&s->lock);
        gwd_wake_replies(d);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int gwd_server_start(gwd *d)
{
    struct gwd_slow *s = gw_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    d->slow = s;
    d->audit_index = gw_audit_index_new();
    int e = pthread_create(&s->thread, NULL, slow_main, d);
    if (e) {
        gw_log(GW_LOG_ERR, "request worker: %s", strerror(e));
        pthread_cond_destroy(&s->work);
        pthread_mutex_destroy(&s->lock);
        free(s);
        d->slow = NULL;
        gw_audit_index_free(d->audit_index);
        d->audit_index = NULL;
        return -e;
    }
    return 0;
}

static void jobs_free(slow_job *j, bool started)
{
    while (j) {
        slow_job *next = j->next;
        if (!started)
            gw_proto_request_done(&j->req);
        msgpack_sbuffer_destroy(&j->reply);
        free(j);
        j = next;
    }
}

void gwd_server_stop(gwd *d)
{
    struct gwd_slow *s = d->slow;
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    /* The op in progress finishes (a bounded read); what waits is dropped:
     * its clients time out, as for any request at shutdown. */
    pthread_join(s->thread, NULL);
    jobs_free(s->todo, false);
    jobs_free(s->done, true);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->lock);
    free(s);
    d->slow = NULL;
    gw_audit_index_free(d->audit_index);
    d->audit_index = NULL;
}

void gwd_serve_deferred(gwd *d)
{
    struct gwd_slow *s = d->slow;
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    slow_job *j = s->done;
    size_t n = 0;
    for (slow_job *k = j; k; k = k->next)
        n++;
    s->done = s->done_tail = NULL;
    s->n -= n;
    pthread_mutex_unlock(&s->lock);
    while (j) {
        slow_job *next = j->next;
        if (j->code)
            count_error(d, j->code);
        /* Its latency includes the wait for the worker: what the client saw. */
        gwd_metrics_request(&d->metrics, j->op, gwd_mono_us() - j->t0_us);
        send_reply_owned(j->sock, j->rid, j->rid_len, &j->reply);
        msgpack_sbuffer_destroy(&j->reply);
        free(j);
        j = next;
    }
}

/* Hand a decoded request to the worker; *req is moved (its owner is the job)
 * on success. -EBUSY when the queue is full. */
static int defer(gwd *d, void *sock, zmq_msg_t *routing, gw_proto_endpoint ep, gw_proto_request *req,
                 uint64_t t0_us)
{
    struct gwd_slow *s = d->slow;
    size_t rid_len = zmq_msg_size(routing);
    if (rid_len > sizeof ((slow_job *)NULL)->rid)
        return -EINVAL;     /* not a ZeroMQ routing id */
    pthread_mutex_lock(&s->lock);
    bool full = s->n >= SLOW_QUEUE_MAX;
    if (!full)
        s->n++;
    pthread_mutex_unlock(&s->lock);
    if (full)
        return -EBUSY;
    slow_job *j = gw_xcalloc(1, sizeof *j);
    j->sock = sock;
    memcpy(j->rid, zmq_msg_data(routing), rid_len);
    j->rid_len = rid_len;
    j->ep = ep;
    j->op = req->op;
    j->t0_us = t0_us;
    j->req = *req;
    msgpack_sbuffer_init(&j->reply);
    pthread_mutex_lock(&s->lock);
    if (s->todo_tail)
        s->todo_tail->next = j;
    else
        s->todo = j;
    s->todo_tail = j;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Ops that may take long (disk reads growing with the log): never run on
 * this thread, in front of `gate`. */
static bool slow_op(gw_proto_op op)
{
    return op == GW_OP_AUDIT;
}

/*
 * Who sent a message, as the kernel or the CURVE handshake established it,
 * into req->peer: "uid=0(root) pid=42" on ipc, "key=<name>" on tcp (the
 * allow-list name the ZAP handler gave the key, zap.c), "unknown" when
 * neither is known. The request's own `actor` is only what the client
 * claims, and is never used for this.
 *
 * Why from the message's metadata: libzmq reads SO_PEERCRED of an ipc
 * connection when it sets it up and keeps it, with the ZAP User-Id, in the
 * metadata of that connection, which every message received on it carries
 * ("Peer-Address" is "<address>:<uid>:<gid>:<pid>" for AF_UNIX peers). That
 * record belongs to the connection itself. The other way, the message's
 * descriptor (ZMQ_SRCFD, deprecated) looked up in a table filled at accept
 * time, names a descriptor number, which the kernel hands to the next
 * connection as soon as this one closes: a request still queued from a
 * client that has gone would then be recorded as the next client's.
 */
static void peer_of(gwd *d, gw_proto_endpoint ep, zmq_msg_t *m, gw_proto_request *req)
{
    const char *endpoint = ep == GW_ENDPOINT_ADMIN ? d->cfg.admin_endpoint
                         : ep == GW_ENDPOINT_READ  ? d->cfg.read_endpoint
                                                   : d->cfg.gate_endpoint;
    snprintf(req->peer, sizeof req->peer, "unknown");
    if (!strncmp(endpoint, "tcp://", 6)) {
        const char *user = zmq_msg_gets(m, "User-Id");
        if (user && *user)
            snprintf(req->peer, sizeof req->peer, "key=%.120s", user);
        return;
    }
    const char *addr = strncmp(endpoint, "ipc://", 6) ? NULL : zmq_msg_gets(m, "Peer-Address");
    /* Its last three fields: uid, gid, pid. */
    const char *f[3] = { NULL, NULL, NULL };
    const char *p = addr ? addr + strlen(addr) : NULL;
    for (int i = 2; p && i >= 0; i--) {
        const char *c = p;
        while (c > addr && c[-1] != ':')
            c--;
        if (c == addr)
            return;
        f[i] = c;
        p = c - 1;
    }
    if (!f[0])
        return;
    char *end;
    errno = 0;
    unsigned long uid = strtoul(f[0], &end, 10);
    if (errno || end == f[0] || *end != ':')
        return;
    long pid = strtol(f[2], &end, 10);
    if (errno || end == f[2] || *end)
        return;
    struct passwd pw, *found = NULL;
    char buf[1024];
    if (getpwuid_r((uid_t)uid, &pw, buf, sizeof buf, &found) != 0)
        found = NULL;
    if (found)
        snprintf(req->peer, sizeof req->peer, "uid=%lu(%.64s) pid=%ld", uid, found->pw_name, pid);
    else
        snprintf(req->peer, sizeof req->peer, "uid=%lu pid=%ld", uid, pid);
}

/* Decode and answer one body (the message `msg`, whose metadata names its
 * sender) into sb. Returns false when the request went to the worker (which
 * answers later). */
static bool answer(gwd *d, struct gwd_replies *cache, void *sock, zmq_msg_t *routing, gw_proto_endpoint ep,
                   zmq_msg_t *msg, msgpack_sbuffer *sb)
{
    uint64_t t0 = gwd_mono_us();
    gw_proto_request req;
    gw_proto_error err;
    memset(&err, 0, sizeof err);
    if (gw_proto_request_decode(&req, zmq_msg_data(msg), zmq_msg_size(msg), ep, &err) < 0) {
        pack_error(sb, req.has_id, req.id, &err);
        count_error(d, err.code);
        gw_proto_request_done(&req);
        return true;
    }
    d->requests[req.op]++;
    /* Only the ops that record who asked: a user name look-up is not free. */
    if (!gw_proto_op_is_read(req.op))
        peer_of(d, ep, msg, &req);
    /* Only the main loop's endpoints serve a slow op (the gate endpoint
     * refuses it in the decoder), and only that loop sends the worker's
     * replies. */
    if (slow_op(req.op) && d->slow) {
        int r = defer(d, sock, routing, ep, &req, t0);
        if (r == 0)
            return false;
        gw_proto_errorf(&err, GW_PROTO_BUSY, NULL, "%d slow requests (audit) are waiting already; try again",
                        SLOW_QUEUE_MAX);
        pack_error(sb, req.has_id, req.id, &err);
        count_error(d, err.code);
        gwd_metrics_request(&d->metrics, req.op, gwd_mono_us() - t0);
        gw_proto_request_done(&req);
        return true;
    }
    int code = run(d, cache, &req, ep, sb);
    if (code)
        count_error(d, code);
    /* Requests that never decoded have no op: they count in `errors` only. */
    gwd_metrics_request(&d->metrics, req.op, gwd_mono_us() - t0);
    gw_proto_request_done(&req);
    return true;
}

/* One message off the socket. Returns false when there was none. A request
 * must be exactly [routing id][empty][body]; any other shape is answered
 * `malformed` after every frame of it has been read off. */
static bool serve_one(gwd *d, struct gwd_replies *cache, void *sock, gw_proto_endpoint ep)
{
    zmq_msg_t f[3];
    size_t kept = 0, frames = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, frames ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        frames++;
        more = zmq_msg_more(&m);
        if (kept < 3) {
            zmq_msg_init(&f[kept]);
            zmq_msg_move(&f[kept++], &m);
        }
        zmq_msg_close(&m);
    }
    if (frames == 0)
        return false;

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    bool reply = true;
    if (frames != 3 || zmq_msg_size(&f[1]) != 0) {
        gw_proto_error err;
        memset(&err, 0, sizeof err);
        gw_proto_errorf(&err, GW_PROTO_MALFORMED, NULL, "a request is two frames, [empty][body]; got %zu frame(s)%s",
                        frames - 1, frames >= 2 && zmq_msg_size(&f[1]) ? " with a non-empty delimiter" : "");
        pack_error(&sb, false, 0, &err);
        count_error(d, err.code);
    } else {
        reply = answer(d, cache, sock, &f[0], ep, &f[2], &sb);
    }
    if (reply)
        send_reply(sock, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), &sb);
    msgpack_sbuffer_destroy(&sb);
    for (size_t i = 0; i < kept; i++)
        zmq_msg_close(&f[i]);
    return true;
}

void gwd_serve(gwd *d, struct gwd_replies *cache, void *sock, gw_proto_endpoint ep)
{
    for (int i = 0; i < BATCH && serve_one(d, cache, sock, ep); i++)
        ;
}
