/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwardend's shared context.
 *
 * Threads: the main thread owns the admin, read and events sockets (ZeroMQ
 * sockets are not thread-safe) and serves requests; the gate endpoint's
 * thread owns its socket and context and answers `hello` and `gate` only
 * (gate.c); the request worker runs `audit` (server.c); clean-up workers
 * (gw_cleanup_pool) and the libvirt watcher thread report back through the registry (which
 * serialises itself) and the event queue, then wake the main loop through an
 * eventfd. `lock` guards the fields marked (L): the host scan, the attachment
 * view, the inventory and the generations issued. The registry's transition
 * callback runs under the registry's lock and only queues events, so the
 * lock order is: d->lock, then the registry's, then event_lock. */
#ifndef GWD_DAEMON_H
#define GWD_DAEMON_H

#include <gpuwarden/attach.h>
#include <gpuwarden/host.h>
#include <gpuwarden/inventory.h>
#include <gpuwarden/registry.h>
#include <gpuwarden/sanitize.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "proto_codec.h"

typedef struct gwd_event {
    struct gwd_event *next;
    char *topic;
    void *body;         /* encoded msgpack */
    size_t len;
} gwd_event;

/* Which domains reference a managed GPU, as the libvirt watcher (or, without
 * libvirt, the hook's hints) last said, and whether any of them runs. */
typedef struct gwd_attachment {
    char address[GW_ADDR_LEN];
    char **domains;     /* NULL-terminated, sorted */
    char **running;     /* those of them the watcher last saw running (without libvirt: all) */
    /* With libvirt: the hook's word on a domain, newer than the watcher's
     * report until the watcher agrees (attachment.c, "Stopped domains"). */
    char **said_running, **said_stopped;
    bool stopped;       /* announced: referenced, but by no running domain (reserved in the inventory) */
    bool reported;      /* the watcher has reported this GPU since it became managed */
    bool hold_checked;  /* since a domain runs on it: checked once whether it is quarantined */
} gwd_attachment;

/* A GPU whose last clean-up found it in use (or could not be started) waits
 * before the next one; a GPU whose IOMMU group has a member a VM holds waits
 * for that release. */
typedef struct gwd_retry {
    char address[GW_ADDR_LEN];
    uint64_t seq;               /* the device's seq after that abort: any later transition lifts the wait */
    int64_t not_before_ms;      /* monotonic */
    int64_t delay_ms;           /* the wait just set; doubles while the GPU stays in use */
    bool group_wait;            /* a group member is held: the release ends the wait, not the clock */
} gwd_retry;

#define GWD_ISSUED_MAX 32

typedef struct gwd {
    gwd_config cfg;
    int64_t boot_ms;
    char *host_name;

    void *zctx;
    void *admin_sock, *read_sock, *pub_sock;
    int signal_fd;
    int wake_fd;
    volatile bool stopping;

    pthread_mutex_t event_lock;
    gwd_event *event_head, *event_tail;
    uint64_t event_seq;                 /* last seq assigned (event_lock) */

    gw_registry *reg;
    gw_hostops *ops;
    gw_cleanup_pool *pool;
    gw_attach_source *attach;           /* NULL: libvirt disabled */
    gw_attach_source *hint_source;      /* without libvirt: the hook hints' view */
    struct gwd_slow *slow;              /* the worker for slow requests (server.c); NULL: none */
    /* The audit log's index (agent/lib/audit_index.c): `audit` for one
     * device reads only that device's lines. Built by the worker at its
     * start, used by it alone. NULL: read the files whole. */
    struct gw_audit_index *audit_index;
    struct gwd_zap *zap;                /* the CURVE clients' ZAP handler (zap.c); NULL: no tcp endpoint */
    /* Clean-up runs reported (done) whose last step has not yet returned
     * (freed): a step abandoned after its timeout may still ask the
     * attachment source and wake the loop, so shutdown waits for 0. */
    atomic_int runs_unreleased;
    gw_sanitize_policy policy;
    uint16_t *manage_vendors;
    char **manage_addresses;
    gw_model_policy *models;            /* the policy's, ids owned: outlive a reload of cfg */
    gw_clique_override *clique_override;
    char **extra_traits;

    pthread_mutex_t lock;
    gw_host *host;                      /* (L) the last scan */
    char **managed;                     /* (L) managed GPU addresses of that scan, sorted */
    gwd_attachment *attachments;        /* (L) */
    size_t n_attachments;
    gwd_retry *retries;                 /* (L) GPUs waiting after an in-use clean-up */
    size_t n_retries;
    int64_t retry_wake_ms;              /* (L) the earliest of their waits' ends (monotonic) */
    char **watched;                     /* (L) the GPUs the libvirt watcher was last told to watch */
    /* (L) The watcher is connected and has read every domain since: while
     * not, nothing is known of any GPU's attachment (attachment.c). */
    bool attach_current;
    struct gwd_fence *fences;           /* (L) quarantined GPUs' groups held open (fence.c) */
    size_t n_fences;
    struct gwd_kept *kept;              /* (L) fence descriptors systemd handed back at start (fence_store.c) */
    size_t n_kept;
    gw_inventory *inventory;            /* (L) the last inventory built */
    uint64_t issued[GWD_ISSUED_MAX];    /* (L) generations served, ring */
    uint64_t issued_rev[GWD_ISSUED_MAX];/* (L) the revision at which each was last the current one */
    size_t n_issued;
    /* (L) Generations are content hashes, so they have no order; revisions
     * do: 1 for the first inventory of this run, +1 whenever the content
     * changes (a content seen before gets a new revision). A generation
     * confirmed by `published` means Placement shows the content of its
     * revision, so "Placement has caught up with revision R" is
     * published_rev >= R. */
    uint64_t revision;
    uint64_t published_rev;             /* (L) highest revision confirmed by `published`; 0: none */
    uint64_t published_gen;             /* (L) the generation of that revision; 0: none */

    /* Bumped (under `lock`, after the change) with every change of what the
     * read replies show that the registry does not version itself: the
     * host scan, the attachment view and whether it is known, the extra
     * traits. With gw_registry_version() it keys the reply cache
     * (replies.c): a reply is reused only while neither has moved since it
     * was made. Read without the lock. */
    _Atomic uint64_t view_version;
    struct gwd_replies *replies;        /* the main loop's (replies.c) */
    struct gwd_gate *gate;              /* the gate endpoint's thread (gate.c); NULL: none */

    /* Something the clean-up kick looks at changed (a transition, a
     * finished clean-up, an attachment report): the loop kicks on its next
     * turn. A wake-up that only brings replies (gwd_wake_replies) does not
     * set it, so an `audit` answered costs the loop no registry listing. */
    atomic_bool kick_due;

    /* A clean-up passed since the main loop last looked: it checks whether
     * the new sanitized GPUs can be promoted at once (gwd_promote_confirmed). */
    atomic_bool promote_due;

    /* metrics: requests per op and error replies per code, counted by the
     * thread that answered (the main loop, the gate endpoint's) */
    atomic_uint_fast64_t requests[16];
    atomic_uint_fast64_t errors[16];
    atomic_uint_fast64_t cleanups_passed, cleanups_failed;
    gwd_metrics metrics;                /* any thread: its own lock (metrics.h) */
} gwd;

/* loop.c: the main loop and the services the rest of the daemon calls back
 * into. */
/* Queue an event for the PUB socket; callable from any thread. `seq` is
 * assigned here, so publication order is sequence order. The builder packs the
 * body given the seq. */
typedef void (*gwd_event_builder)(void *pk, uint64_t seq, void *userdata);
void gwd_event_publish(gwd *d, const char *kind, const char *address, gwd_event_builder build, void *userdata);
/* Send the queued events on the PUB socket (dropped when it is not bound);
 * main thread: every loop turn, and at start-up and shutdown. */
void gwd_events_flush(gwd *d);
/* Wake the main loop (which then starts pending clean-ups). Any thread. */
void gwd_wake(gwd *d);
/* Wake it only to send the replies the request worker finished. */
void gwd_wake_replies(gwd *d);
/* Serve until d->stopping (a SIGTERM or SIGINT on d->signal_fd) or a poll
 * error; SIGHUP reloads the configuration in between. Main thread. */
void gwd_loop_run(gwd *d);
/* Wall-clock milliseconds (the monotonic clocks are metrics.h's). */
int64_t gwd_now_ms(void);

/* Say that what the read replies show changed (see view_version); caller
 * holds d->lock and has made the change. */
static inline void gwd_view_changed(gwd *d)
{
    atomic_fetch_add(&d->view_version, 1);
}

/* replies.c: the encoded results of the read ops (inventory, devices,
 * device, an allowing gate), reused while the state they show is unchanged.
 * A cache belongs to the one thread that serves with it (the main loop's,
 * the gate endpoint's); none for the worker's ops, which are not kept. */
struct gwd_replies;
#define GWD_GATE_ARGS_MAX 1024
typedef struct gwd_reply_key {
    bool cacheable;
    uint64_t registry, view;            /* the versions sampled before the op ran */
    char gate[GWD_GATE_ARGS_MAX];       /* gate: its arguments as one string (replies.c) */
} gwd_reply_key;
struct gwd_replies *gwd_replies_new(void);
/* Sample the key of `req` and, on a hit in `cache` (NULL: none), pack the
 * whole reply (its envelope with req's id, then the cached result) into sb:
 * true. */
bool gwd_replies_lookup(gwd *d, struct gwd_replies *cache, const gw_proto_request *req, gwd_reply_key *key,
                        void *sb);
/* Keep the encoded result (`bytes`, the msgpack of `result`) of a reply
 * whose key lookup() sampled; a result that changes with the clock (a
 * running clean-up's duration) is not kept. */
void gwd_replies_store(gwd *d, struct gwd_replies *cache, const gw_proto_request *req,
                       const gwd_reply_key *key, const struct json_t *result, const void *bytes, size_t len);
/* Replies served from the cache, and read requests that were not. */
void gwd_replies_stats(const struct gwd_replies *cache, uint64_t *hits, uint64_t *misses);
void gwd_replies_free(struct gwd_replies *cache);

/* fleet.c: the host scan and the registry. */
int gwd_fleet_scan(gwd *d);                         /* scan + registry sync; main thread */
bool gwd_fleet_is_managed(gwd *d, const char *address);   /* caller holds d->lock */
const gw_gpu *gwd_fleet_gpu(gwd *d, const char *address); /* caller holds d->lock */

/* attachment.c: the attachment view and the libvirt watcher glue. */
int gwd_attachment_start(gwd *d);
void gwd_attachment_stop(gwd *d);
/* After a scan: the watcher watches exactly the managed GPUs (hot-plug, a
 * GPU bound to vfio-pci after the start, one unbound). Main thread; takes
 * d->lock itself. */
void gwd_attachment_follow(gwd *d);
/* After a configuration reload: the options the watcher takes live. */
void gwd_attachment_reconfigure(gwd *d);
/* Whether the attachment view is complete: without libvirt always; with it,
 * while the watcher is current (connected, and has read libvirt since) and
 * has reported every managed GPU. Until then no clean-up starts: a GPU a VM
 * holds must not look free. Caller holds d->lock. */
bool gwd_attachment_ready(gwd *d);
/* Why the attachment of a managed GPU is not known now (the watcher not
 * connected, not read since it connected, or not yet reporting a GPU that
 * became managed); NULL when it is known. Such a GPU is neither promoted nor
 * let through the gate. Caller holds d->lock. */
const char *gwd_attachment_unknown(gwd *d, const char *address);
/* Domains referencing `address` per the view (caller holds d->lock); NULL when none. */
char *const *gwd_attachment_domains(gwd *d, const char *address);
/* Apply a new set of referencing domains for a managed GPU: attach seen /
 * detach seen in the registry. All of them count as running (the hook's
 * hints without libvirt). Takes d->lock itself. */
void gwd_attachment_update(gwd *d, const char *address, const char *const *domains, size_t n);
/* Whether the GPU is referenced by domains none of which runs (a shut-off
 * persistent domain): the inventory reserves it. Caller holds d->lock. */
bool gwd_attachment_stopped(gwd *d, const char *address);
/* With libvirt: the hook says `domain` stopped (`release end`) or started
 * (`started`) on the GPU, ahead of the watcher. A domain the watcher never
 * reported on the GPU counts as attached to it (the GPU is dirty) until
 * libvirt's full report, which this asks for. Takes d->lock itself. */
void gwd_attachment_hint(gwd *d, const char *address, const char *domain, bool running);

/* cleanup.c: starting clean-ups and recording their results. */
int gwd_cleanup_init(gwd *d);
/* Stop the pool (queued clean-ups dropped, running ones waited for), then
 * wait a while for steps abandoned after a timeout to return. false when
 * some still run: then the attachment source, the hint view and the wake-up
 * descriptor, which they may still use, must be left as they are. */
bool gwd_cleanup_fini(gwd *d);
/* Sync the fences (fence.c), then start a clean-up for every device that
 * waits for one; main thread. */
void gwd_cleanup_kick(gwd *d);
/* Whether a GPU's wait after an in-use clean-up has ended since the last
 * call: the loop then kicks, even while requests keep it from idling. */
bool gwd_cleanup_retry_due(gwd *d);

/* fence.c: the VFIO group node of every quarantined GPU held open, so that
 * no VM can open the group (a hot-plug included). */
/* Take the fences the quarantined GPUs of `list` (the registry's, n
 * devices) want, lift those no longer wanted, and say why one cannot be
 * taken. Main thread: the first thing every clean-up kick does, on the
 * kick's own listing; takes d->lock itself. */
void gwd_fence_sync(gwd *d, gw_device *const *list, size_t n);
/* A clean-up of `address` is about to start: lift the fences its bus reset
 * could need. Main thread; takes d->lock itself. */
void gwd_fence_yield(gwd *d, const char *address);
/* Whether IOMMU group `group` is fenced; how many are. Caller holds d->lock. */
bool gwd_fence_held(gwd *d, const char *group);
size_t gwd_fence_count(gwd *d);
/* Release every fence (shutdown). systemd's copies stay in its store: a
 * restart keeps them, a stop closes them. */
void gwd_fence_fini(gwd *d);

/* fence_store.c: fences kept across a restart in systemd's file descriptor
 * store. Main thread. */
/* Take the fence descriptors systemd hands back at start (close others). */
void gwd_fence_store_init(gwd *d);
/* The descriptor kept for `group`, now the caller's; -1 when none. */
int gwd_fence_store_take(gwd *d, const char *group);
/* Give the descriptor of fence `handle` on `group` to the store: whether it
 * is there now (false without systemd, or a backend without descriptors). */
bool gwd_fence_store_put(gwd *d, const char *group, void *handle);
/* Take `group`'s descriptor out of the store and wait until systemd has
 * closed its copy. */
void gwd_fence_store_drop(const char *group);
/* After the first sync: let go of kept descriptors no fence adopted. */
void gwd_fence_store_settle(gwd *d);
/* Shutdown: close kept descriptors never synced (systemd keeps its own). */
void gwd_fence_store_fini(gwd *d);

/* events.c */
void gwd_events_on_transition(const gw_transition *t, const gw_device *after, void *userdata);

/* server.c */
/* Answer what waits on `sock` (at most a batch), which serves endpoint `ep`,
 * with the serving thread's reply cache. */
void gwd_serve(gwd *d, struct gwd_replies *cache, void *sock, gw_proto_endpoint ep);
/* The worker that runs slow requests (audit) off the request thread: started
 * once the endpoints are bound, stopped before they close. */
int gwd_server_start(gwd *d);
void gwd_server_stop(gwd *d);
/* Send the replies the worker has finished; main thread, every loop turn. */
void gwd_serve_deferred(gwd *d);

/* gate.c: the gate endpoint, served on a thread of its own. Started once
 * the other endpoints are bound (after gwd_endpoint_limits(), with the
 * connections it allows each endpoint); nothing when gate_endpoint is empty.
 * Stopped before the registry and the attachment view it reads go. */
int gwd_gate_start(gwd *d, long max_connections);
void gwd_gate_stop(gwd *d);

/* ops.c: the inventory (also used by server for metrics). Caller holds d->lock. */
int gwd_inventory_build(gwd *d, gw_inventory **out);
/* Promote the sanitized GPUs when Placement is known to show the current
 * inventory revision already (see ops.c). Main thread; takes d->lock. */
void gwd_promote_confirmed(gwd *d);

/* Free a NULL-terminated string array (NULL accepted). */
void gwd_strv_free(char **v);
char **gwd_strv_copy(const char *const *v, size_t n);
/* A copy of `v` (may be NULL) without the entries equal to `drop`; *n gets its length. */
char **gwd_strv_without(char *const *v, const char *drop, size_t *n);
/* Split "a, b,c" (commas, spaces, tabs) into a NULL-terminated list. */
char **gwd_split_list(const char *s);

#endif
