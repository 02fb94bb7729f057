/* SPDX-License-Identifier: Apache-2.0 */
/* The gate endpoint: the libvirt hook's `gate`, asked before every VM start
 * that has a managed GPU, served on a thread and a ZeroMQ context of its own.
 *
 * Why not on the main loop: there a gate waits behind whatever that loop is
 * doing, and some of it is slow by nature: a host rescan (50-70 ms on a
 * 558-function host, every rescan_interval_s), an inventory rebuilt after a
 * change, a burst of other clients' requests. Measured with a rescan every
 * second on hgx16, the worst gate on the read endpoint was 53-128 ms, on
 * this endpoint 10-19 ms (docs/BENCHMARKS.md, the gate run). Here nothing
 * but gates reaches the thread or its libzmq I/O thread, and the scan runs
 * outside the daemon's lock, so a gate waits for no other request and no
 * rescan. The price, measured: with a compiler on both CPUs, the p50 is
 * 14-28 µs above the main loop's (which the other requests keep awake),
 * both within 2x a bare echo.
 *
 * What it shares: the op itself (ops.c, op_gate: d->lock, the registry, the
 * attachment view; the same code as a gate on the other endpoints) and the
 * counters. Its reply cache is its own (replies.c: a cache belongs to one
 * thread). It serves `hello` and `gate` only; the decoder refuses anything
 * else as `forbidden` (PROTOCOL.md §2), so no slow op and no state change
 * ever runs here.
 *
 * Exposure: ipc:// only (the hook runs in libvirtd on this host), mode 0660
 * and read_group, as the read endpoint, which serves `gate` too. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon.h"
#include "endpoint.h"
#include "util.h"

struct gwd_gate {
    pthread_t thread;
    void *zctx;                 /* its own: its own libzmq I/O thread */
    void *sock;
    int stop_fd;                /* eventfd: written once, to stop */
    struct gwd_replies *cache;
};

static void *gate_main(void *arg)
{
    gwd *d = arg;
    struct gwd_gate *g = d->gate;
    for (;;) {
        zmq_pollitem_t items[] = {
            { g->sock, 0, ZMQ_POLLIN, 0 },
            { NULL, g->stop_fd, ZMQ_POLLIN, 0 },
        };
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            gw_log(GW_LOG_ERR, "gate endpoint: zmq_poll: %s; gates go unanswered until a restart",
                   zmq_strerror(zmq_errno()));
            break;
        }
        if (items[1].revents)
            break;
        if (items[0].revents)
            gwd_serve(d, g->cache, g->sock, GW_ENDPOINT_GATE);
    }
    return NULL;
}

static void gate_free(struct gwd_gate *g)
{
    if (g->sock)
        zmq_close(g->sock);
    if (g->zctx)
        zmq_ctx_term(g->zctx);
    if (g->stop_fd >= 0)
        close(g->stop_fd);
    gwd_replies_free(g->cache);
    free(g);
}

int gwd_gate_start(gwd *d, long max_connections)
{
    const char *ep = d->cfg.gate_endpoint;
    if (!ep[0])
        return 0;
    struct gwd_gate *g = gw_xcalloc(1, sizeof *g);
    g->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    g->zctx = zmq_ctx_new();
    if (g->stop_fd < 0 || !g->zctx) {
        gw_log(GW_LOG_ERR, "gate endpoint %s: %s", ep, strerror(errno));
        gate_free(g);
        return -EIO;
    }
    g->sock = gwd_endpoint_bind(g->zctx, ZMQ_ROUTER, "gate", ep, 0660, d->cfg.read_group, false, NULL,
                                d->cfg.max_message_bytes, max_connections);
    if (!g->sock) {
        gate_free(g);
        return -EIO;
    }
    g->cache = gwd_replies_new();
    d->gate = g;
    int e = pthread_create(&g->thread, NULL, gate_main, d);
    if (e) {
        gw_log(GW_LOG_ERR, "gate endpoint: thread: %s", strerror(e));
        d->gate = NULL;
        gate_free(g);
        return -e;
    }
    return 0;
}

void gwd_gate_stop(gwd *d)
{
    struct gwd_gate *g = d->gate;
    if (!g)
        return;
    uint64_t one = 1;
    if (write(g->stop_fd, &one, sizeof one) < 0)
        gw_log(GW_LOG_WARNING, "gate endpoint: stop: %s", strerror(errno));
    /* A gate in progress finishes (it only reads); what waits is dropped:
     * the hook's client times out, as for any request at shutdown. */
    pthread_join(g->thread, NULL);
    uint64_t hits, misses;
    gwd_replies_stats(g->cache, &hits, &misses);
    gw_log(GW_LOG_INFO, "gate endpoint: %llu gate(s) answered from its reply cache, %llu encoded",
           (unsigned long long)hits, (unsigned long long)misses);
    d->gate = NULL;
    gate_free(g);
}
