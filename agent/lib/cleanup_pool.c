/* SPDX-License-Identifier: Apache-2.0 */
/* Clean-ups off the request path: a fixed set of worker threads takes
 * requests from a queue, one device at a time per worker. Submitting and
 * asking never wait for a clean-up: they only take the pool lock, which no
 * worker holds while a step runs. A step that timed out is abandoned (see
 * sanitize_pipeline.c); its device stays busy until that step returns, so no
 * second clean-up writes to a device the first may still be writing to. */
#include <string.h>
#include <time.h>

#include "sanitize_internal.h"

typedef struct queued {
    struct queued *next;
    gw_sanitize_request req;
    char address[GW_ADDR_LEN];
    gw_kvlist pins;
} queued;

typedef struct busy_dev {
    char address[GW_ADDR_LEN];
} busy_dev;

/* Shared by the pool handle, its workers and every run context, so that an
 * abandoned step can still mark its device free after the pool is gone. */
typedef struct pool_core {
    atomic_int refs;
    pthread_mutex_t lock;
    pthread_cond_t work;        /* a request was queued, or shutdown */
    pthread_cond_t idle;        /* a device became free */
    queued *head, *tail;
    busy_dev *busy;             /* queued, running or abandoned */
    size_t n_busy;
    size_t running;
    bool shutdown;
    unsigned int in_freed;      /* `freed` callbacks running now */
    gw_hostops *ops;
    gw_attach_source *attach;
    gw_spolicy *policy;
    gw_cleanup_done_fn done;
    void *userdata;
    gw_cleanup_freed_fn freed;
} pool_core;

struct gw_cleanup_pool {
    pool_core *core;
    pthread_t *threads;
    unsigned n_threads;
};

static void core_unref(pool_core *k)
{
    if (atomic_fetch_sub(&k->refs, 1) != 1)
        return;
    for (queued *q = k->head, *next; q; q = next) {
        next = q->next;
        gw_kvlist_clear(&q->pins);
        free(q);
    }
    free(k->busy);
    gw_hostops_unref(k->ops);
    gw_spolicy_unref(k->policy);
    pthread_cond_destroy(&k->work);
    pthread_cond_destroy(&k->idle);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static ssize_t busy_find(pool_core *k, const char *address)
{
    for (size_t i = 0; i < k->n_busy; i++)
        if (!strcmp(k->busy[i].address, address))
            return (ssize_t)i;
    return -1;
}

static void busy_remove_locked(pool_core *k, const char *address)
{
    ssize_t i = busy_find(k, address);
    if (i < 0)
        return;
    k->busy[i] = k->busy[--k->n_busy];
    pthread_cond_broadcast(&k->idle);
}

typedef struct release_ctx {
    pool_core *core;
    char address[GW_ADDR_LEN];
} release_ctx;

/* The run context's last reference is gone: no thread touches the device.
 * A step abandoned after its timeout gets here whenever the kernel lets it
 * return, possibly after the pool was freed: the callback still runs (the
 * caller counts on it to know when what the step may use can go), and
 * gw_cleanup_pool_wait_idle() waits for it, so that "idle" means the caller
 * has been told about every device. */
static void on_run_released(void *data)
{
    release_ctx *rc = data;
    pool_core *k = rc->core;
    pthread_mutex_lock(&k->lock);
    bool call = k->freed != NULL;
    k->in_freed += call;
    busy_remove_locked(k, rc->address);
    pthread_mutex_unlock(&k->lock);
    if (call) {
        k->freed(rc->address, k->userdata);
        pthread_mutex_lock(&k->lock);
        k->in_freed--;
        pthread_cond_broadcast(&k->idle);
        pthread_mutex_unlock(&k->lock);
    }
    core_unref(k);
    free(rc);
}

static void *worker_main(void *arg)
{
    pool_core *k = arg;
    pthread_mutex_lock(&k->lock);
    for (;;) {
        while (!k->head && !k->shutdown)
            pthread_cond_wait(&k->work, &k->lock);
        if (k->shutdown)
            break;
        queued *q = k->head;
        k->head = q->next;
        if (!k->head)
            k->tail = NULL;
        k->running++;
        pthread_mutex_unlock(&k->lock);

        q->req.pins = q->pins.v;
        q->req.n_pins = q->pins.n;
        gw_sctx *c = gw_sctx_new(k->ops, k->attach, k->policy, &q->req);
        release_ctx *rc = gw_xcalloc(1, sizeof *rc);
        atomic_fetch_add(&k->refs, 1);
        rc->core = k;
        snprintf(rc->address, sizeof rc->address, "%s", q->address);
        c->on_release = on_run_released;
        c->on_release_data = rc;
        gw_sanitize_result *res = gw_pipeline_run(c);
        gw_kvlist_clear(&q->pins);
        free(q);
        /* Report before the device is marked free: whoever reacts to the
         * result (the lifecycle) sees it before a new clean-up can start. */
        if (k->done)
            k->done(res, k->userdata);
        else
            gw_sanitize_result_free(res);
        gw_sctx_unref(c);

        pthread_mutex_lock(&k->lock);
        k->running--;
        pthread_cond_broadcast(&k->idle);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

GW_EXTERN int gw_cleanup_pool_new(gw_cleanup_pool **out, const gw_cleanup_pool_options *o)
{
    if (!out || !o || !o->ops)
        return gw_error_set(-EINVAL, "gw_cleanup_pool_new: NULL argument or no host ops");
    if (o->version < 1 || o->version > GW_CLEANUP_POOL_OPTIONS_VERSION)
        return gw_error_set(-EINVAL, "gw_cleanup_pool_new: options version %u, expected 1 to %u", o->version,
                            GW_CLEANUP_POOL_OPTIONS_VERSION);
    unsigned n = o->workers ? o->workers : 4;
    if (n > 256)
        return gw_error_set(-EINVAL, "gw_cleanup_pool_new: %u workers is more than 256", n);
    gw_spolicy *pol;
    int r = gw_spolicy_new(&pol, o->policy);
    if (r < 0)
        return r;

    pool_core *k = gw_xcalloc(1, sizeof *k);
    atomic_init(&k->refs, 1);
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->work, NULL);
    pthread_cond_init(&k->idle, NULL);
    k->ops = gw_hostops_ref(o->ops);
    k->attach = o->attach;
    k->policy = pol;
    k->done = o->done;
    k->userdata = o->userdata;
    k->freed = o->version >= 2 ? o->freed : NULL;    /* a version-1 struct ends before it */

    gw_cleanup_pool *p = gw_xcalloc(1, sizeof *p);
    p->core = k;
    p->threads = gw_xcalloc(n, sizeof *p->threads);
    for (unsigned i = 0; i < n; i++) {
        atomic_fetch_add(&k->refs, 1);
        int e = pthread_create(&p->threads[i], NULL, worker_main, k);
        if (e) {
            atomic_fetch_sub(&k->refs, 1);
            gw_cleanup_pool_free(p);
            return gw_error_set(-e, "gw_cleanup_pool_new: cannot start worker %u: %s", i, strerror(e));
        }
        p->n_threads++;
    }
    *out = p;
    return 0;
}

GW_EXTERN int gw_cleanup_pool_submit(gw_cleanup_pool *p, const gw_sanitize_request *req)
{
    if (!p || !req || req->version != GW_SANITIZE_REQUEST_VERSION || !req->address || !gw_is_bdf(req->address) ||
        (req->n_pins && !req->pins))
        return gw_error_set(-EINVAL, "gw_cleanup_pool_submit: bad request (version, address or pins)");
    pool_core *k = p->core;
    queued *q = gw_xcalloc(1, sizeof *q);
    snprintf(q->address, sizeof q->address, "%s", req->address);
    q->req = *req;
    q->req.address = q->address;
    gw_kvlist_copy(&q->pins, req->pins, req->n_pins);

    pthread_mutex_lock(&k->lock);
    int rc = 0;
    if (k->shutdown)
        rc = gw_error_set(-ESHUTDOWN, "clean-up pool is shutting down");
    else if (busy_find(k, q->address) >= 0)
        rc = gw_error_set(-EBUSY, "%s: a clean-up is already queued or running", q->address);
    if (rc == 0) {
        k->busy = gw_xrealloc(k->busy, k->n_busy + 1, sizeof *k->busy);
        snprintf(k->busy[k->n_busy++].address, GW_ADDR_LEN, "%s", q->address);
        if (k->tail)
            k->tail->next = q;
        else
            k->head = q;
        k->tail = q;
        pthread_cond_signal(&k->work);
    }
    pthread_mutex_unlock(&k->lock);
    if (rc < 0) {
        gw_kvlist_clear(&q->pins);
        free(q);
    }
    return rc;
}

GW_EXTERN bool gw_cleanup_pool_busy(gw_cleanup_pool *p, const char *address)
{
    if (!p || !address)
        return false;
    pthread_mutex_lock(&p->core->lock);
    bool b = busy_find(p->core, address) >= 0;
    pthread_mutex_unlock(&p->core->lock);
    return b;
}

GW_EXTERN size_t gw_cleanup_pool_pending(gw_cleanup_pool *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->core->lock);
    size_t n = p->core->running;
    for (queued *q = p->core->head; q; q = q->next)
        n++;
    pthread_mutex_unlock(&p->core->lock);
    return n;
}

GW_EXTERN int gw_cleanup_pool_wait_idle(gw_cleanup_pool *p, unsigned int timeout_ms)
{
    if (!p)
        return gw_error_set(-EINVAL, "gw_cleanup_pool_wait_idle: NULL pool");
    pool_core *k = p->core;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&k->lock);
    while (k->n_busy || k->running || k->in_freed) {
        if (!timeout_ms) {
            pthread_cond_wait(&k->idle, &k->lock);
        } else if (pthread_cond_timedwait(&k->idle, &k->lock, &dl) == ETIMEDOUT) {
            if (k->n_busy || k->running || k->in_freed)
                rc = gw_error_set(-ETIMEDOUT, "clean-up pool: %zu device(s) still busy after %u ms", k->n_busy,
                                  timeout_ms);
            break;
        }
    }
    pthread_mutex_unlock(&k->lock);
    return rc;
}

GW_EXTERN void gw_cleanup_pool_free(gw_cleanup_pool *p)
{
    if (!p)
        return;
    pool_core *k = p->core;
    pthread_mutex_lock(&k->lock);
    k->shutdown = true;
    for (queued *q = k->head, *next; q; q = next) {
        next = q->next;
        busy_remove_locked(k, q->address);
        gw_kvlist_clear(&q->pins);
        free(q);
    }
    k->head = k->tail = NULL;
    pthread_cond_broadcast(&k->work);
    pthread_mutex_unlock(&k->lock);
    for (unsigned i = 0; i < p->n_threads; i++) {
        pthread_join(p->threads[i], NULL);
        core_unref(k);
    }
    free(p->threads);
    core_unref(k);
    free(p);
}
