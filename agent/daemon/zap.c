/* SPDX-License-Identifier: Apache-2.0 */
/* Who may use a tcp:// endpoint: the ZAP handler (ZeroMQ RFC 27).
 *
 * CURVE proves that a client holds the secret half of the public key it
 * shows; it says nothing about whether that key may do anything here. libzmq
 * asks that of a ZAP handler bound at inproc://zeromq.zap.01 in the socket's
 * context, during the handshake and before a single request is read; without
 * one it lets every key in (which is how a throwaway key pair quarantined a
 * GPU over the tcp admin endpoint). This is that handler, on its own thread:
 *
 *   - domain "admin" (the admin endpoint's ZMQ_ZAP_DOMAIN): only the keys of
 *     [daemon] curve_allowlist; any other is refused (status 400) and the
 *     handshake fails, so an unlisted key cannot even say hello;
 *   - domains "read" and "events": any key (PROTOCOL.md §1), named when it
 *     is listed;
 *   - every accepted key gets a User-Id, which libzmq hands back on each
 *     message of that connection (zmq_msg_gets(msg, "User-Id")): the key's
 *     name from the list ("alice"), or "unlisted:<Z85 key>". server.c makes
 *     the audit actor of it.
 *
 * The list is re-read at every SIGHUP (gwd_zap_reload), in full or not at
 * all: the reload has already checked the file (config.c), and a file that
 * fails here after all keeps the running list. A reload changes who may
 * connect from then on; a connection already made stays. */
#include "zap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "util.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
/* How often the thread looks at its stop flag while no request comes. */
#define ZAP_POLL_MS 200
/* Refusals are logged at most this often (with a count): a peer can try
 * handshakes as fast as it likes. */
#define ZAP_LOG_MS 10000

struct gwd_zap {
    pthread_t thread;
    void *sock;                 /* REP; the thread's alone once it runs */
    pthread_mutex_t lock;
    gwd_allowlist *list;        /* (lock) */
    char *path;                 /* (lock) */
    atomic_bool stop;
    unsigned long refused;
    int64_t last_log_ms;
};

/* Frames of one ZAP request: version, request id, domain, address, routing
 * id, mechanism, then the mechanism's credentials (CURVE: the 32-byte
 * public key). */
#define ZAP_FRAMES 7

typedef struct zap_request {
    zmq_msg_t f[ZAP_FRAMES];
    size_t n;                   /* frames kept (at most ZAP_FRAMES) */
} zap_request;

static bool frame_is(const zmq_msg_t *m, const char *s)
{
    return zmq_msg_size((zmq_msg_t *)m) == strlen(s) && !memcmp(zmq_msg_data((zmq_msg_t *)m), s, strlen(s));
}

static void frame_str(const zmq_msg_t *m, char *buf, size_t size)
{
    size_t n = zmq_msg_size((zmq_msg_t *)m);
    if (n >= size)
        n = size - 1;
    memcpy(buf, zmq_msg_data((zmq_msg_t *)m), n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f)
            buf[i] = '?';
}

static void reply(void *sock, const zmq_msg_t *request_id, const char *code, const char *text, const char *user)
{
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(sock, zmq_msg_data((zmq_msg_t *)request_id), zmq_msg_size((zmq_msg_t *)request_id), ZMQ_SNDMORE);
    zmq_send(sock, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(sock, "", 0, 0);
}

static void note_refusal(struct gwd_zap *z, const char *domain, const char *address, const char *why)
{
    z->refused++;
    int64_t now = gwd_mono_ms();
    if (z->last_log_ms && now - z->last_log_ms < ZAP_LOG_MS)
        return;
    z->last_log_ms = now;
    gw_log(GW_LOG_WARNING, "%s endpoint: client %s refused: %s (%lu refused since start)", domain, address, why,
           z->refused);
}

/* Decide one request and answer it. */
static void decide(struct gwd_zap *z, zap_request *q)
{
    if (q->n < 6 || !frame_is(&q->f[0], "1.0")) {
        if (q->n >= 2)
            reply(z->sock, &q->f[1], "500", "malformed ZAP request", "");
        return;
    }
    char domain[32], address[96], mechanism[16];
    frame_str(&q->f[2], domain, sizeof domain);
    frame_str(&q->f[3], address, sizeof address);
    frame_str(&q->f[5], mechanism, sizeof mechanism);
    if (!strcmp(mechanism, "NULL")) {
        /* ipc endpoints: the socket file and SO_PEERCRED decide (endpoint.c). */
        reply(z->sock, &q->f[1], "200", "OK", "");
        return;
    }
    if (strcmp(mechanism, "CURVE") || q->n < 7 || zmq_msg_size(&q->f[6]) != 32) {
        note_refusal(z, domain, address, "not a CURVE handshake");
        reply(z->sock, &q->f[1], "400", "CURVE only", "");
        return;
    }
    char key[41];
    zmq_z85_encode(key, zmq_msg_data(&q->f[6]), 32);
    char user[80];
    pthread_mutex_lock(&z->lock);
    const char *name = gwd_allowlist_name(z->list, key);
    if (name)
        snprintf(user, sizeof user, "%s", name);
    pthread_mutex_unlock(&z->lock);
    if (!name && !strcmp(domain, "admin")) {
        char why[96];
        snprintf(why, sizeof why, "public key %s is not in the CURVE allow-list", key);
        note_refusal(z, domain, address, why);
        reply(z->sock, &q->f[1], "400", "key not allowed", "");
        return;
    }
    if (!name)
        snprintf(user, sizeof user, "unlisted:%s", key);
    reply(z->sock, &q->f[1], "200", "OK", user);
}

static void *zap_main(void *arg)
{
    struct gwd_zap *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t item = { z->sock, 0, ZMQ_POLLIN, 0 };
        int r = zmq_poll(&item, 1, ZAP_POLL_MS);
        if (r < 0 && zmq_errno() == ETERM)
            break;
        if (r <= 0)
            continue;
        zap_request q = { .n = 0 };
        bool more = true;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, z->sock, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (q.n < ZAP_FRAMES) {
                zmq_msg_init(&q.f[q.n]);
                zmq_msg_move(&q.f[q.n++], &m);
            }
            zmq_msg_close(&m);
        }
        decide(z, &q);
        for (size_t i = 0; i < q.n; i++)
            zmq_msg_close(&q.f[i]);
    }
    zmq_close(z->sock);
    return NULL;
}

static int load(const char *path, gwd_allowlist **out)
{
    if (!path || !*path) {
        *out = gw_xcalloc(1, sizeof **out);     /* no list: no key is named, the admin domain serves none */
        return 0;
    }
    return gwd_allowlist_load(path, out);
}

int gwd_zap_start(gwd *d)
{
    gwd_allowlist *list = NULL;
    if (load(d->cfg.curve_allowlist, &list) < 0) {
        gw_log(GW_LOG_ERR, "CURVE allow-list: %s", gw_error_message());
        return -EINVAL;
    }
    struct gwd_zap *z = gw_xcalloc(1, sizeof *z);
    pthread_mutex_init(&z->lock, NULL);
    z->list = list;
    z->path = gw_xstrdup(d->cfg.curve_allowlist);
    z->sock = zmq_socket(d->zctx, ZMQ_REP);
    int linger = 0;
    if (z->sock)
        zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (!z->sock || zmq_bind(z->sock, ZAP_ENDPOINT) < 0) {
        gw_log(GW_LOG_ERR, "ZAP handler: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int e = pthread_create(&z->thread, NULL, zap_main, z);
    if (e) {
        gw_log(GW_LOG_ERR, "ZAP handler thread: %s", strerror(e));
        goto fail;
    }
    if (*z->path)
        gw_log(GW_LOG_INFO, "CURVE allow-list %s: %zu key(s)", z->path, list->n);
    d->zap = z;
    return 0;
fail:
    if (z->sock)
        zmq_close(z->sock);
    gwd_allowlist_free(z->list);
    free(z->path);
    pthread_mutex_destroy(&z->lock);
    free(z);
    return -EIO;
}

void gwd_zap_reload(gwd *d)
{
    struct gwd_zap *z = d->zap;
    if (!z)
        return;
    gwd_allowlist *list = NULL;
    if (load(d->cfg.curve_allowlist, &list) < 0) {
        gw_log(GW_LOG_ERR, "reload: CURVE allow-list not changed: %s", gw_error_message());
        return;
    }
    pthread_mutex_lock(&z->lock);
    gwd_allowlist *old = z->list;
    z->list = list;
    free(z->path);
    z->path = gw_xstrdup(d->cfg.curve_allowlist);
    pthread_mutex_unlock(&z->lock);
    gwd_allowlist_free(old);
    gw_log(GW_LOG_NOTICE, "reload: CURVE allow-list %s: %zu key(s); new connections are checked against it",
           *d->cfg.curve_allowlist ? d->cfg.curve_allowlist : "(none)", list->n);
}

void gwd_zap_stop(gwd *d)
{
    struct gwd_zap *z = d->zap;
    if (!z)
        return;
    atomic_store(&z->stop, true);
    pthread_join(z->thread, NULL);
    gwd_allowlist_free(z->list);
    free(z->path);
    pthread_mutex_destroy(&z->lock);
    free(z);
    d->zap = NULL;
}
