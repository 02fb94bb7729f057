/* SPDX-License-Identifier: Apache-2.0 */
/* The reply cache: the encoded results of the read ops that clients poll
 * (inventory, devices, device) and of an allowing `gate`, reused while the state they show has not
 * changed, so that an unchanged state costs one encode, not one per request.
 *
 * Why: an `inventory` on 64 GPUs rebuilt the inventory from a copy of every
 * record, then its JSON, then its msgpack, about 20 µs per GPU, on the one
 * request thread, for a reply that only changes when a GPU does: 21x a bare
 * libzmq round trip of the same size (docs/BENCHMARKS.md).
 *
 * What a reply shows comes from two places, each versioned: the registry's
 * records (gw_registry_version(): every transition and every fact) and the
 * daemon's own view (d->view_version: the host scan, the attachment view and
 * whether it is known, the extra traits; bumped where they change). The key
 * of a reply is both versions, sampled before the op runs: a change made
 * while the op runs bumps one of them past the key, so the entry is never
 * reused, and the next request builds afresh. An entry is reused only while
 * both versions are exactly what they were when it was sampled, i.e. while
 * nothing it could show has changed. `inventory` also shows the revision
 * and the published revision (this run's bookkeeping, changed by other ops),
 * which the entry keeps and compares as well.
 *
 * Only the result is kept: the reply's envelope carries the request's id,
 * and the result comes last in it (PROTOCOL.md §5), so the reply is the
 * envelope packed for this request followed by the kept bytes, byte for
 * byte what packing it whole gives (proto/vectors). A `device` whose
 * clean-up runs is not kept: its duration grows with the clock. */
#include <jansson.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "proto_codec.h"
#include "util.h"

/* Entries kept: one inventory, the device list per filter, the device
 * views of a host's GPUs and its gates; the oldest goes when full. */
#define REPLIES_MAX 160

typedef struct entry {
    gw_proto_op op;
    int state;                  /* devices: the filter, -1 for none */
    char address[GW_ADDR_LEN];  /* device */
    uint64_t registry, view;
    uint64_t revision, published_rev;   /* inventory */
    char *gate;                 /* gate: its arguments (gate_args) */
    void *bytes;
    size_t len;
    uint64_t used;              /* for eviction */
} entry;

struct gwd_replies {
    entry e[REPLIES_MAX];
    size_t n;
    uint64_t tick;
    uint64_t hits, misses;
};

/* A gate's arguments as one string, "<address>,...<US><domain>" (addresses
 * are PCI addresses, so the separators cannot occur in them and the domain,
 * last, may hold anything); false when they do not fit, and then it is not
 * kept. */
static bool gate_args(const gw_proto_request *req, char *buf, size_t cap)
{
    size_t at = 0;
    for (size_t i = 0; i < req->args.n_addresses; i++) {
        int n = snprintf(buf + at, cap - at, "%s,", req->args.addresses[i]);
        if (n < 0 || (size_t)n >= cap - at)
            return false;
        at += (size_t)n;
    }
    int n = snprintf(buf + at, cap - at, "\x1f%s", req->args.domain ? req->args.domain : "");
    return n >= 0 && (size_t)n < cap - at;
}

/* `gate` too: the libvirt hook's question before every VM start, asked
 * while a host is busiest (VMs coming and going, clean-ups running); its
 * answer changes only with the records and the attachment view. */
static bool cacheable(gw_proto_op op)
{
    return op == GW_OP_INVENTORY || op == GW_OP_DEVICES || op == GW_OP_DEVICE || op == GW_OP_GATE;
}

/* gate: the request's arguments (gate_args), or NULL when they cannot be kept. */
static bool same_args(const entry *e, const gw_proto_request *req, const char *gate)
{
    if (e->op != req->op)
        return false;
    switch (req->op) {
    case GW_OP_DEVICES:
        return e->state == (req->args.has_state ? (int)req->args.state : -1);
    case GW_OP_DEVICE:
        return req->args.address && !strcmp(e->address, req->args.address);
    case GW_OP_GATE:
        return gate && e->gate && !strcmp(e->gate, gate);
    default:
        return true;
    }
}

static entry *find(struct gwd_replies *c, const gw_proto_request *req, const char *gate)
{
    for (size_t i = 0; i < c->n; i++)
        if (same_args(&c->e[i], req, gate))
            return &c->e[i];
    return NULL;
}

/* The inventory's bookkeeping, which its result carries. */
static void revisions(gwd *d, uint64_t *revision, uint64_t *published)
{
    pthread_mutex_lock(&d->lock);
    *revision = d->revision;
    *published = d->published_rev;
    pthread_mutex_unlock(&d->lock);
}

struct gwd_replies *gwd_replies_new(void)
{
    return gw_xcalloc(1, sizeof(struct gwd_replies));
}

bool gwd_replies_lookup(gwd *d, struct gwd_replies *c, const gw_proto_request *req, gwd_reply_key *key, void *sbv)
{
    msgpack_sbuffer *sb = sbv;
    key->gate[0] = '\0';
    key->registry = key->view = 0;
    key->cacheable = c && cacheable(req->op);
    if (!key->cacheable)
        return false;
    if (req->op == GW_OP_GATE && !gate_args(req, key->gate, sizeof key->gate)) {
        key->cacheable = false;
        return false;
    }
    key->registry = gw_registry_version(d->reg);
    key->view = atomic_load(&d->view_version);
    entry *e = find(c, req, key->gate);
    if (!e || e->registry != key->registry || e->view != key->view)
        goto miss;
    if (req->op == GW_OP_INVENTORY) {
        uint64_t rev, pub;
        revisions(d, &rev, &pub);
        if (rev != e->revision || pub != e->published_rev)
            goto miss;
    }
    e->used = ++c->tick;
    c->hits++;
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    gw_proto_pack_reply_ok(&pk, req->has_id, req->id);
    msgpack_sbuffer_write(sb, e->bytes, e->len);
    return true;
miss:
    c->misses++;
    return false;
}

/* Whether a result may be kept: not a device whose clean-up runs (its
 * duration is the clock's); a gate only when it allows (a refusal for an
 * unknown attachment also asks the watcher to reconnect, which a reply from
 * here would skip). */
static bool steady(const gw_proto_request *req, const json_t *result)
{
    if (req->op == GW_OP_GATE)
        return json_is_true(json_object_get(result, "allowed"));
    if (req->op != GW_OP_DEVICE)
        return true;
    const char *r = json_string_value(json_object_get(json_object_get(result, "cleanup"), "result"));
    return !r || strcmp(r, "running");
}

void gwd_replies_store(gwd *d, struct gwd_replies *c, const gw_proto_request *req, const gwd_reply_key *key,
                       const json_t *result, const void *bytes, size_t len)
{
    if (!c || !key->cacheable || !steady(req, result))
        return;
    entry *e = find(c, req, key->gate);
    if (!e && c->n < REPLIES_MAX) {
        e = &c->e[c->n++];
    } else if (!e) {
        e = &c->e[0];
        for (size_t i = 1; i < c->n; i++)
            if (c->e[i].used < e->used)
                e = &c->e[i];
    }
    free(e->bytes);
    free(e->gate);
    memset(e, 0, sizeof *e);
    e->op = req->op;
    if (req->op == GW_OP_GATE)
        e->gate = gw_xstrdup(key->gate);
    e->state = req->op == GW_OP_DEVICES && req->args.has_state ? (int)req->args.state : -1;
    if (req->op == GW_OP_DEVICE)
        snprintf(e->address, sizeof e->address, "%s", req->args.address);
    e->registry = key->registry;
    e->view = key->view;
    if (req->op == GW_OP_INVENTORY)
        revisions(d, &e->revision, &e->published_rev);
    e->bytes = gw_xcalloc(len ? len : 1, 1);
    memcpy(e->bytes, bytes, len);
    e->len = len;
    e->used = ++c->tick;
}

void gwd_replies_stats(const struct gwd_replies *c, uint64_t *hits, uint64_t *misses)
{
    *hits = c ? c->hits : 0;
    *misses = c ? c->misses : 0;
}

void gwd_replies_free(struct gwd_replies *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].bytes);
        free(c->e[i].gate);
    }
    free(c);
}
