/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/attach.h - which virtual machines reference which GPU.
 *
 * A GPU is *attached* iff a defined domain, running or not (or a running
 * transient one), passes one of its functions through: a
 * <hostdev mode='subsystem' type='pci'> (or <interface type='hostdev'>) whose
 * *source* address is on the GPU's slot (same domain:bus:device; the HDA
 * function at .1 counts for the GPU at .0). The <address> that is a direct
 * child of <hostdev> is the guest-side address and never counts.
 *
 * Attachment sources are pluggable: a gw_attach_source is a small vtable, so
 * the clean-up pipeline's "not in use" step takes any source (the libvirt
 * watcher below, or a consumer's own implementation).
 *
 * The libvirt watcher:
 *
 *     static void changed(const char *gpu, const char *const *domains,
 *                         size_t n, void *userdata)
 *     {
 *         // n == 0: no domain references gpu any more (detach seen)
 *     }
 *
 *     const char *gpus[] = { "0000:1a:00.0", "0000:67:00.0" };
 *     gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
 *     o.uri = "qemu:///system";
 *     o.watch = gpus;
 *     o.n_watch = 2;
 *     o.changed = changed;
 *     gw_attach_source *src;
 *     if (gw_attach_libvirt_new(&src, &o) < 0)
 *         errx(1, "%s", gw_error_message());
 *     ...
 *     gw_attach_source_free(src);
 *
 * It keeps a map domain -> PCI source addresses (and whether the domain
 * runs, for `state_changed`), fed by libvirt lifecycle
 * events (defined, undefined, started, stopped, ...; device added/removed) and
 * by a periodic full reconcile over every domain, and reconnects with backoff
 * when libvirtd goes away. Libvirt's own errors are routed to gpuwarden's log
 * at debug level (the process-wide libvirt error handler is set once) instead
 * of libvirt's default print to stderr.
 */
#ifndef GPUWARDEN_ATTACH_H
#define GPUWARDEN_ATTACH_H

#include <gpuwarden/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gw_attach_source gw_attach_source;

/*
 * The attachment-source interface. An implementation embeds
 * `gw_attach_source` as its first member and points `ops` at a static table.
 */
typedef struct gw_attach_source_ops {
    unsigned int version;           /* GW_ATTACH_SOURCE_OPS_VERSION */
    const char *name;               /* "libvirt", ... */
    /*
     * Who references `address` (any function of its slot) *now*: a
     * NULL-terminated, sorted list of domain names, empty when nobody does,
     * freed with gw_attach_list_free(). Synchronous; may be called from any
     * thread. Must fail (never answer "nobody") when the answer is unknown.
     */
    int (*query)(gw_attach_source *src, const char *address, char ***domains);
    /* Ask for a full reconcile soon, without waiting for it. May be NULL. */
    int (*reconcile)(gw_attach_source *src);
    void (*free)(gw_attach_source *src);
} gw_attach_source_ops;

#define GW_ATTACH_SOURCE_OPS_VERSION 1

struct gw_attach_source {
    const gw_attach_source_ops *ops;
};

/*
 * Domains referencing the slot of `address` ("dddd:bb:dd.f"), as
 * gw_attach_source_ops.query. Returns 0, -EINVAL for a malformed address,
 * -ENOTCONN when the source cannot answer now (libvirt unreachable), -EIO
 * when reading the domains failed; on failure *domains is NULL.
 */
GW_EXTERN int gw_attach_query(gw_attach_source *src, const char *address, char ***domains);

/* Request a reconcile now (asynchronous). 0, or -EOPNOTSUPP when the source
 * has none. A libvirt hook's "released" hint is a good reason to call it.
 * A libvirt watcher waiting to reconnect tries again at once. */
GW_EXTERN int gw_attach_reconcile(gw_attach_source *src);

/* "libvirt", or whatever the implementation calls itself. */
GW_EXTERN const char *gw_attach_source_name(const gw_attach_source *src);

/* Stops the source (joins its threads) and frees it. Accepts NULL. */
GW_EXTERN void gw_attach_source_free(gw_attach_source *src);

/* Frees a NULL-terminated list returned by this module. Accepts NULL. */
GW_EXTERN void gw_attach_list_free(char **list);

/*
 * The PCI host addresses a libvirt domain XML passes through: the source
 * <address> of every <hostdev type='pci'> and <interface type='hostdev'>
 * under /domain/devices, canonical "dddd:bb:dd.f", sorted, without
 * duplicates, NULL-terminated (free with gw_attach_list_free()). Attribute
 * values are read as libvirt reads them (0x-hex, decimal or 0-octal);
 * a missing domain attribute means 0. The domain's <name> is returned in
 * *name when name is not NULL (free()). Guest-side addresses are ignored.
 * Returns -EINVAL (with the reason in gw_error_message()) for XML that is
 * not well-formed, not a <domain>, or has an unreadable/out-of-range source
 * address; nothing is returned then.
 */
GW_EXTERN int gw_domain_xml_pci_sources(const char *xml, size_t len, char ***addresses,
                                        char **name);

/*
 * Called when the set of domains referencing a watched GPU changed:
 * `domains` (sorted names, `n_domains` of them, NULL-terminated) is the new
 * set; n_domains == 0 means no domain references it any more. After the
 * first successful reconcile it is called once for EVERY watched GPU with its
 * current set (empty included), so a consumer can compare with what it
 * persisted before a restart; afterwards only on change.
 *
 * It runs on the watcher's own thread: it must not block (it delays every
 * later event) and must not free the source. It may call gw_attach_query().
 * The strings are valid during the call only. Nothing is reported while
 * libvirt is unreachable: a lost connection never looks like a detach.
 */
typedef void (*gw_attach_changed_fn)(const char *address, const char *const *domains,
                                     size_t n_domains, void *userdata);

/*
 * Like gw_attach_changed_fn, and also says which of those domains are
 * running: `running` (sorted, `n_running` of them, NULL-terminated) are the
 * domains of `domains` that are active now. A persistent domain that is shut
 * off still references its GPUs until it is undefined, so n_domains > 0 with
 * n_running == 0 means "held by stopped domains only". Called whenever either
 * set changed (a start or a stop alone included; `changed` is not called for
 * those), with the same first-reconcile and threading rules as `changed`.
 */
typedef void (*gw_attach_state_fn)(const char *address, const char *const *domains, size_t n_domains,
                                   const char *const *running, size_t n_running, void *userdata);

/*
 * Called when what the watcher knows becomes current, or stops being so.
 * `current` true: connected, and a full read of every domain has completed
 * since that connection was made (its reports have been made, on this same
 * thread, just before). false: the connection was lost; nothing that happens
 * in libvirt is seen until the next `true` (a domain may start and stop
 * meanwhile without a trace). Never false before a first true. Same
 * threading rules as `changed`.
 */
typedef void (*gw_attach_sync_fn)(bool current, void *userdata);

typedef struct gw_attach_libvirt_options {
    unsigned int version;
    const char *uri;                    /* NULL = "qemu:///system" */
    /* The GPUs to report on (canonical addresses). A hostdev on any function
     * of a GPU's slot references it. Copied. */
    const char *const *watch;
    size_t n_watch;
    gw_attach_changed_fn changed;       /* may be NULL (query only) */
    void *userdata;
    unsigned int reconcile_interval_ms; /* full reconcile period; 0 = 30000 */
    unsigned int reconnect_min_ms;      /* first retry delay; 0 = 500 */
    unsigned int reconnect_max_ms;      /* backoff cap; 0 = 30000 */
    bool no_events;                     /* reconcile only, no event callbacks */
    bool read_write;                    /* open read-write (default read-only) */
    /* Version 2: may be NULL; gets `userdata` too. Both it and `changed`
     * may be set: each is called on its own rule. */
    gw_attach_state_fn state_changed;
    /* Version 3: may be NULL; gets `userdata` too. */
    gw_attach_sync_fn sync_changed;
} gw_attach_libvirt_options;

#define GW_ATTACH_LIBVIRT_OPTIONS_VERSION 3
#define GW_ATTACH_LIBVIRT_OPTIONS_INIT \
    { GW_ATTACH_LIBVIRT_OPTIONS_VERSION, NULL, NULL, 0, NULL, NULL, 0, 0, 0, false, false, NULL, NULL }

/*
 * Start a libvirt watcher. It returns at once: connecting happens on the
 * watcher's thread, retried with backoff (reconnect_min_ms doubling up to
 * reconnect_max_ms) until it succeeds, so a daemon may start before
 * libvirtd. Options of version 1 (without `state_changed`) and 2 (without
 * `sync_changed`) are accepted.
 * Fails only for bad options (-EINVAL: unknown version, a watched
 * address that is not canonical, a URI that is empty), when libvirt cannot
 * be loaded (-EOPNOTSUPP: libvirt.so.0 is not installed; -ELIBBAD: it lacks
 * a function gpuwarden calls; libgpuwarden loads it here, on first use, not
 * at process start) or when the event loop or thread cannot be started
 * (-ENOMEM, -EAGAIN, -EIO).
 */
GW_EXTERN int gw_attach_libvirt_new(gw_attach_source **out, const gw_attach_libvirt_options *opts);

/*
 * Wait until the watcher has completed its first full reconcile (the
 * initial callbacks have run). 0, or -ETIMEDOUT after timeout_ms,
 * -EINVAL when `src` is not a libvirt watcher.
 */
GW_EXTERN int gw_attach_libvirt_wait_synced(gw_attach_source *src, unsigned int timeout_ms);

/* Whether the watcher holds a live libvirt connection now. */
GW_EXTERN bool gw_attach_libvirt_connected(gw_attach_source *src);

/* Whether what the watcher knows is current: connected, with a full read of
 * libvirt since the connection was made (see gw_attach_sync_fn). */
GW_EXTERN bool gw_attach_libvirt_current(gw_attach_source *src);

/*
 * Replace the GPUs the watcher reports on (canonical addresses; copied): a
 * consumer whose set of GPUs changes (hot-plug, a rebind) keeps the watcher
 * in step. A GPU newly watched is reported, with its set (empty included),
 * after the next full reconcile, which this requests at once (a reconnect
 * attempt too, when disconnected); a GPU no longer watched is not reported
 * any more. 0, or -EINVAL (not a libvirt watcher, an address that is not
 * dddd:bb:dd.f); nothing changes then.
 */
GW_EXTERN int gw_attach_libvirt_watch(gw_attach_source *src, const char *const *watch, size_t n_watch);

/*
 * Forget what was last reported and reconcile now: after that reconcile
 * every watched GPU is reported again, changed or not. For a consumer that
 * heard elsewhere (a libvirt hook) of a domain the watcher has not reported,
 * and wants libvirt's own word on every GPU. While libvirt is unreachable
 * it happens at the reconnection. 0, or -EINVAL (not a libvirt watcher).
 */
GW_EXTERN int gw_attach_libvirt_resync(gw_attach_source *src);

/* The period of the full reconcile, from now on (0 = 30000 ms). 0, or
 * -EINVAL (not a libvirt watcher). */
GW_EXTERN int gw_attach_libvirt_set_reconcile_interval(gw_attach_source *src, unsigned int interval_ms);

#ifdef __cplusplus
}
#endif
#endif
