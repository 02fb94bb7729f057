/* SPDX-License-Identifier: Apache-2.0 */
/* The ops of PROTOCOL.md §8. Each builds its result as an ordered JSON value
 * (jansson keeps insertion order, which is the spec's key order) that
 * server.c packs canonically. Nothing here waits for a clean-up or for
 * libvirt: the attachment view is the watcher's last report, and clean-ups
 * are only queued. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <gpuwarden/audit.h>

#include "audit_internal.h"
#include "daemon.h"
#include "ops.h"
#include "proto_codec.h"
#include "util.h"

/* ---- mapping library errors to protocol errors ---- */

static int fail_from_errno(gw_proto_error *err, int r, const char *field)
{
    gw_proto_code code;
    switch (r) {
    case -ENOENT: code = GW_PROTO_NOT_FOUND; break;
    case -EPERM:
    case -EALREADY: code = GW_PROTO_ILLEGAL_TRANSITION; break;
    case -EBUSY: code = GW_PROTO_BUSY; break;
    case -EINVAL: code = GW_PROTO_INVALID_ARGUMENT; break;
    case -EEXIST: code = GW_PROTO_CONFLICT; break;
    case -EAGAIN:
    case -ENOTCONN: code = GW_PROTO_UNAVAILABLE; break;
    default: code = GW_PROTO_INTERNAL; break;
    }
    return gw_proto_errorf(err, code, field, "%s", gw_error_message());
}

/* ---- shared objects (§10) ---- */

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *hex4(uint16_t v)
{
    char buf[8];
    snprintf(buf, sizeof buf, "%04x", v);
    return json_string(buf);
}

static int device_clique(gwd *d, const gw_gpu *g)
{
    if (!g)
        return -1;
    if (d->clique_override) {
        int id = gw_clique_override_lookup(d->clique_override, g->address);
        if (id >= 0)
            return id;
    }
    return g->clique >= 0 && g->clique < 16 ? g->clique : -1;
}

static const char *device_reason(const gw_device *dev)
{
    if (dev->state == GW_STATE_QUARANTINED)
        return dev->quarantine_reason;
    return dev->reason;
}

/* Who put a quarantined GPU there: the actor of the transition into
 * quarantine, kept with the record (and in the checkpoint) until it leaves.
 * A record that somehow has none (a hand-edited checkpoint) says "unknown"
 * rather than nil, which would read as "not quarantined". */
static json_t *quarantined_by(const gw_device *dev)
{
    if (dev->state != GW_STATE_QUARANTINED)
        return json_null();
    return json_string(dev->quarantine_actor && *dev->quarantine_actor ? dev->quarantine_actor : "unknown");
}

/* The device object. Caller holds d->lock. */
static json_t *device_object(gwd *d, const gw_device *dev)
{
    const char *address = dev->identity.address;
    bool present = !(dev->flags & GW_FLAG_MISSING);
    const gw_gpu *g = present ? gwd_fleet_gpu(d, address) : NULL;
    char *const *domains = gwd_attachment_domains(d, address);

    json_t *id = json_object();
    json_object_set_new(id, "vendor_id", hex4(dev->identity.vendor_id));
    json_object_set_new(id, "device_id", hex4(dev->identity.device_id));
    json_object_set_new(id, "subsystem_vendor_id", hex4(dev->identity.subsystem_vendor_id));
    json_object_set_new(id, "subsystem_device_id", hex4(dev->identity.subsystem_device_id));
    const char *rev = gw_device_fact(dev, "pci.revision");
    json_object_set_new(id, "revision", json_integer(g ? g->revision : rev ? atoi(rev) : 0));
    const char *cls = gw_device_fact(dev, "pci.class");
    char cls_buf[8];
    if (g)
        snprintf(cls_buf, sizeof cls_buf, "%04x", g->class_code);
    json_object_set_new(id, "class", json_string(g ? cls_buf : cls ? cls : "0000"));
    json_object_set_new(id, "vendor_name", str_or_null(g ? g->vendor_name : gw_device_fact(dev, "pci.vendor_name")));
    json_object_set_new(id, "device_name", str_or_null(g ? g->device_name : gw_device_fact(dev, "pci.device_name")));
    if (dev->identity.dsn_present) {
        char dsn[20];
        snprintf(dsn, sizeof dsn, "%016llx", (unsigned long long)dev->identity.dsn);
        json_object_set_new(id, "serial", json_string(dsn));
    } else {
        json_object_set_new(id, "serial", json_null());
    }

    json_t *o = json_object();
    json_object_set_new(o, "address", json_string(address));
    json_object_set_new(o, "state", json_string(gw_state_name(dev->state)));
    json_object_set_new(o, "dirty", json_boolean(dev->flags & GW_FLAG_DIRTY));
    json_object_set_new(o, "cleaning", json_boolean(dev->flags & GW_FLAG_CLEANING));
    json_object_set_new(o, "reason", str_or_null(device_reason(dev)));
    json_object_set_new(o, "since", json_integer(dev->since_ms));
    json_object_set_new(o, "domain", domains ? json_string(domains[0]) : json_null());
    json_object_set_new(o, "present", json_boolean(present));
    json_object_set_new(o, "numa_node", json_integer(g ? g->numa_node : -1));
    json_object_set_new(o, "clique", json_integer(device_clique(d, g)));
    json_object_set_new(o, "iommu_group", str_or_null(g ? g->iommu_group : NULL));
    json_object_set_new(o, "driver", str_or_null(g ? g->driver : NULL));
    json_object_set_new(o, "identity", id);
    json_object_set_new(o, "quarantined_by", quarantined_by(dev));
    json_object_set_new(o, "fenced", json_boolean(g && gwd_fence_held(d, g->iommu_group) &&
                                                  dev->state == GW_STATE_QUARANTINED));
    return o;
}

/* "sysfs" or "simulated": the host backend this daemon runs with (a restart
 * option: host_backend never changes under a running daemon). Named in
 * `hello`, in a device's clean-up and on every line of its evidence, so that
 * evidence the simulator made ("wrote ... to .../reset": it writes nothing)
 * is never read as something done to a real GPU. */
static const char *backend_name(const gwd *d)
{
    return strcmp(d->cfg.host_backend, "simulated") ? "sysfs" : "simulated";
}

static json_t *step_objects(gwd *d, const gw_cleanup_result *c)
{
    json_t *a = json_array();
    for (size_t i = 0; i < c->n_steps; i++) {
        json_t *s = json_object();
        json_object_set_new(s, "name", json_string(c->steps[i].name));
        json_object_set_new(s, "verdict", json_string(c->steps[i].verdict));
        char *evidence = gw_strdup_printf("[%s] %s", backend_name(d), c->steps[i].evidence);
        json_object_set_new(s, "evidence", json_string(evidence));
        free(evidence);
        json_object_set_new(s, "duration_ms", json_integer((json_int_t)c->steps[i].duration_ms));
        json_array_append_new(a, s);
    }
    return a;
}

/* ---- the inventory ---- */

int gwd_inventory_build(gwd *d, gw_inventory **out)
{
    gw_device **list = NULL;
    size_t n = 0;
    int r = gw_registry_list(d->reg, &list, &n);
    if (r < 0)
        return r;
    gw_inventory_gpu *gpus = gw_xcalloc(n, sizeof *gpus);
    const char **stopped = gw_xcalloc(n, sizeof *stopped);
    size_t k = 0, n_stopped = 0;
    for (size_t i = 0; i < n; i++) {
        const gw_device *dev = list[i];
        if (dev->flags & GW_FLAG_MISSING)
            continue;   /* an attached one is carried from the previous inventory */
        const gw_gpu *g = gwd_fleet_gpu(d, dev->identity.address);
        if (!g || !gwd_fleet_is_managed(d, dev->identity.address))
            continue;
        gpus[k++] = (gw_inventory_gpu){
            .address = dev->identity.address,
            .vendor_id = g->vendor_id,
            .device_id = g->device_id,
            .numa_node = g->numa_node,
            .clique = g->clique >= 0 && g->clique < 16 ? g->clique : -1,
            .state = dev->state,
            .attached = gwd_attachment_domains(d, dev->identity.address) != NULL,
            .class_code = g->class_code,
            .model = g->device_name,
        };
        /* Held by a domain that does not run: reserved, handle kept
         * (attachment.c, "Stopped domains"). Until the watcher's first report
         * after a restart, whether the domain of a GPU the checkpoint calls
         * attached runs is not known: reserving it is the safe side. */
        if (gwd_attachment_stopped(d, dev->identity.address) ||
            (!gwd_attachment_ready(d) && dev->state == GW_STATE_ATTACHED))
            stopped[n_stopped++] = dev->identity.address;
    }
    gw_inventory_options o = GW_INVENTORY_OPTIONS_INIT;
    o.host = d->host_name;
    gw_inventory_model_from_name(d->cfg.inventory_model, &o.model);
    size_t n_extra = 0;
    for (char **t = d->extra_traits; t && *t; t++)
        n_extra++;
    o.extra_traits = (const char *const *)d->extra_traits;
    o.n_extra_traits = n_extra;
    o.clique_override = d->clique_override;
    o.previous = d->inventory;
    o.stopped = stopped;
    o.n_stopped = n_stopped;
    r = gw_inventory_new(out, gpus, k, &o);
    free(stopped);
    free(gpus);
    gw_device_list_free(list, n);
    return r;
}

/* A generation seen again (the content went back to what it was) takes
 * the new revision: Placement showing that content now shows this revision. */
static void remember_generation(gwd *d, uint64_t generation, uint64_t revision)
{
    for (size_t i = 0; i < d->n_issued && i < GWD_ISSUED_MAX; i++) {
        if (d->issued[i] == generation) {
            d->issued_rev[i] = revision;
            return;
        }
    }
    d->issued[d->n_issued % GWD_ISSUED_MAX] = generation;
    d->issued_rev[d->n_issued % GWD_ISSUED_MAX] = revision;
    d->n_issued++;
}

/* The revision of an issued generation; 0 when this run never issued it. */
static uint64_t issued_revision(gwd *d, uint64_t generation)
{
    for (size_t i = 0; i < d->n_issued && i < GWD_ISSUED_MAX; i++)
        if (d->issued[i] == generation)
            return d->issued_rev[i];
    return 0;
}

/* Build the inventory, keep it as the previous one (for carrying attached
 * deployables over) and remember its generation. Caller holds d->lock. */
static int current_inventory(gwd *d, gw_inventory **out)
{
    gw_inventory *inv = NULL;
    int r = gwd_inventory_build(d, &inv);
    if (r < 0)
        return r;
    const char *why = gw_inventory_clique_error(inv);
    if (why)
        gw_log(GW_LOG_WARNING, "clique override not applied: %s", why);
    uint64_t generation = gw_inventory_generation(inv);
    if (!d->inventory || gw_inventory_generation(d->inventory) != generation)
        d->revision++;
    gw_inventory_free(d->inventory);
    d->inventory = inv;
    remember_generation(d, generation, d->revision);
    *out = inv;
    return 0;
}

static json_t *deployable_object(const gw_deployable *dp)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(dp->name));
    json_object_set_new(o, "rc", json_string(dp->rc));
    json_object_set_new(o, "num_accelerators", json_integer(dp->num_accelerators));
    json_object_set_new(o, "reserved", json_integer(dp->reserved));
    json_t *traits = json_array();
    for (size_t i = 0; i < dp->n_traits; i++)
        json_array_append_new(traits, json_string(dp->traits[i]));
    json_object_set_new(o, "traits", traits);
    json_t *handles = json_array();
    for (size_t i = 0; i < dp->n_attach_handles; i++) {
        json_t *h = json_object();
        json_object_set_new(h, "type", json_string(dp->attach_handles[i].type));
        json_object_set_new(h, "info", json_string(dp->attach_handles[i].info));
        json_array_append_new(handles, h);
    }
    json_object_set_new(o, "attach_handles", handles);
    json_t *gpus = json_array();
    for (size_t i = 0; i < dp->n_gpus; i++)
        json_array_append_new(gpus, json_string(dp->gpus[i]));
    json_object_set_new(o, "gpus", gpus);
    json_object_set_new(o, "driver_name", json_string(dp->driver_name));
    json_t *dev = json_object();
    json_object_set_new(dev, "vendor", json_string(dp->vendor));
    json_object_set_new(dev, "model", json_string(dp->model));
    json_object_set_new(dev, "type", json_string(dp->type));
    json_object_set_new(dev, "std_board_info", json_string(dp->std_board_info));
    json_t *cp = json_object();
    json_object_set_new(cp, "type", json_string(dp->cpid_type));
    json_object_set_new(cp, "info", json_string(dp->cpid_info));
    json_object_set_new(dev, "controlpath", cp);
    json_object_set_new(o, "device", dev);
    return o;
}

/* The `inventory` result. `revision` and `published_revision` come last:
 * they are this daemon run's bookkeeping, not content (the generation does
 * not cover them), and decoders read keys by name. With them the shim sees
 * whether Placement is already known to show this content, and skips a
 * `published` that would change nothing (PROTOCOL.md §8). Caller holds
 * d->lock; `inv` is the current inventory. */
static json_t *inventory_object(gwd *d, const gw_inventory *inv)
{
    json_t *o = json_object();
    json_object_set_new(o, "generation", json_integer((json_int_t)gw_inventory_generation(inv)));
    json_object_set_new(o, "host", json_string(gw_inventory_host(inv)));
    json_object_set_new(o, "model", json_string(gw_inventory_model_name(gw_inventory_model_of(inv))));
    json_t *deps = json_array();
    for (size_t i = 0; i < gw_inventory_deployable_count(inv); i++)
        json_array_append_new(deps, deployable_object(gw_inventory_deployable(inv, i)));
    json_object_set_new(o, "deployables", deps);
    json_object_set_new(o, "revision", json_integer((json_int_t)d->revision));
    json_object_set_new(o, "published_revision", json_integer((json_int_t)d->published_rev));
    return o;
}

/* ---- ops ---- */

static int op_hello(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    json_t *o = json_object();
    json_t *versions = json_array();
    json_array_append_new(versions, json_pack("[ii]", GW_PROTO_VERSION_MAJOR, GW_PROTO_VERSION_MINOR));
    json_object_set_new(o, "versions", versions);
    json_object_set_new(o, "daemon", json_string(gw_version()));
    json_object_set_new(o, "host", json_string(d->host_name));
    json_object_set_new(o, "endpoint", json_string(gw_proto_endpoint_name(ep)));
    json_t *caps = json_array();
    json_array_append_new(caps, json_string("events"));
    if (d->attach)
        json_array_append_new(caps, json_string("libvirt"));
    gw_inventory_model model = GW_INVENTORY_PER_GPU;
    gw_inventory_model_from_name(d->cfg.inventory_model, &model);
    if (model == GW_INVENTORY_PER_CLIQUE)
        json_array_append_new(caps, json_string("per_clique"));
    if (!strncmp(d->cfg.admin_endpoint, "tcp://", 6) || !strncmp(d->cfg.read_endpoint, "tcp://", 6))
        json_array_append_new(caps, json_string("curve"));
    json_object_set_new(o, "capabilities", caps);
    json_t *ops = json_array();
    for (int op = 0; op < GW_OP_COUNT; op++)
        if (gw_proto_op_served((gw_proto_op)op, ep))
            json_array_append_new(ops, json_string(gw_proto_op_name((gw_proto_op)op)));
    json_object_set_new(o, "ops", ops);
    /* Last: added after the rest, and read by name. */
    json_object_set_new(o, "backend", json_string(backend_name(d)));
    *out = o;
    return 0;
}

static int op_inventory(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    pthread_mutex_lock(&d->lock);
    gw_inventory *inv = NULL;
    int r = current_inventory(d, &inv);
    if (r == 0)
        *out = inventory_object(d, inv);
    pthread_mutex_unlock(&d->lock);
    return r < 0 ? fail_from_errno(err, r, NULL) : 0;
}

/* Promote every sanitized GPU of `inv`, the current inventory, to
 * allocatable: Placement is known to show exactly this content, in which
 * they are reserved, so they may now be offered (their handles and the lower
 * `reserved` go out in the next generation). Each is applied against the
 * record's seq, so a GPU that changed meanwhile is left alone. Rebuilds the
 * inventory when any was promoted. Caller holds d->lock. Returns the
 * addresses promoted. */
static json_t *promote_sanitized(gwd *d, gw_inventory **inv, const char *reason)
{
    json_t *promoted = json_array();
    gw_device **list = NULL;
    size_t n = 0;
    if (gw_registry_list(d->reg, &list, &n) < 0)
        return promoted;
    for (size_t i = 0; i < n; i++) {
        const gw_device *dev = list[i];
        /* Not while its attachment is unknown (the libvirt watcher away): a
         * VM may have had it meanwhile (attachment.c, "Unknown attachment"). */
        if (dev->state != GW_STATE_SANITIZED || (dev->flags & GW_FLAG_MISSING) ||
            !gw_inventory_find_gpu(*inv, dev->identity.address) || gwd_attachment_unknown(d, dev->identity.address))
            continue;
        gw_apply_options o = GW_APPLY_OPTIONS_INIT;
        o.actor = "placement";
        o.reason = reason;
        o.if_seq = dev->seq;
        if (gw_registry_apply(d->reg, dev->identity.address, GW_EVENT_PUBLISHED, &o, NULL) == 0)
            json_array_append_new(promoted, json_string(dev->identity.address));
    }
    gw_device_list_free(list, n);
    if (json_array_size(promoted) > 0)
        current_inventory(d, inv);
    return promoted;
}

/* Promote the sanitized GPUs of `generation` when it is still the current
 * one: the shim has just pushed exactly this content to Placement, so those
 * GPUs exist there (reserved) and may now be offered. */
static int op_published(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    uint64_t g = req->args.generation;
    pthread_mutex_lock(&d->lock);
    gw_inventory *inv = NULL;
    int r = current_inventory(d, &inv);
    if (r < 0) {
        pthread_mutex_unlock(&d->lock);
        return fail_from_errno(err, r, NULL);
    }
    bool current = gw_inventory_generation(inv) == g;
    uint64_t revision = issued_revision(d, g);
    if (!current && !revision) {
        pthread_mutex_unlock(&d->lock);
        /* Generations are content hashes, so one that fell out of the ring
         * cannot be told from one never issued: say both. */
        return gw_proto_errorf(err, GW_PROTO_INVALID_ARGUMENT, "args.generation",
                               "args.generation: %llu is not among the last %d generations this daemon issued",
                               (unsigned long long)g, GWD_ISSUED_MAX);
    }
    /* Placement shows g's content now: whatever was reserved at its
     * revision is reserved there (the hook's wait after `released` reads it). */
    if (revision > d->published_rev) {
        d->published_rev = revision;
        d->published_gen = g;
    }
    json_t *promoted;
    if (current) {
        char reason[64];
        snprintf(reason, sizeof reason, "inventory generation %llu reported", (unsigned long long)g);
        promoted = promote_sanitized(d, &inv, reason);
    } else {
        promoted = json_array();
    }
    json_t *o = json_object();
    json_object_set_new(o, "generation", json_integer((json_int_t)gw_inventory_generation(inv)));
    json_object_set_new(o, "promoted", promoted);
    pthread_mutex_unlock(&d->lock);
    *out = o;
    return 0;
}

/*
 * A clean-up passed: promote the sanitized GPUs at once when Placement is
 * already known to show the current content, without waiting for another
 * `published`.
 *
 * A GPU going dirty -> sanitized does not change the inventory (both are
 * reserved and without a handle), so the generation and revision stay the
 * same; the shim sees revision == published_revision and, in steady state,
 * sends no `published` (it would change nothing in Placement). Without this
 * the GPU would stay sanitized until some other change made a new revision.
 *
 * Exactly as safe as the `published` the shim skipped: `published {g}` for
 * the current g promotes the sanitized GPUs of g because the shim said
 * Placement covers g's content, in which they are reserved. Here that same
 * statement was made for this same content: published_rev == revision means
 * a `published` confirmed a generation whose revision is the current one,
 * and every change of content since would have made a new revision (the
 * inventory is rebuilt just now, so a change not yet served counts too).
 * So Placement reserves these GPUs, as it would have had the shim sent
 * `published {g}` again; the promotion makes a new revision (lower
 * `reserved`, the handles), which the shim publishes as usual. Main thread.
 */
void gwd_promote_confirmed(gwd *d)
{
    pthread_mutex_lock(&d->lock);
    gw_inventory *inv = NULL;
    if (current_inventory(d, &inv) == 0 && d->published_rev && d->revision == d->published_rev) {
        uint64_t g = gw_inventory_generation(inv), rev = d->revision;
        char reason[128];
        snprintf(reason, sizeof reason, "inventory generation %llu (revision %llu) already in Placement",
                 (unsigned long long)g, (unsigned long long)rev);
        json_t *promoted = promote_sanitized(d, &inv, reason);
        if (json_array_size(promoted) > 0)
            gw_log(GW_LOG_INFO, "%zu GPU(s) promoted to allocatable: %s", json_array_size(promoted), reason);
        json_decref(promoted);
    }
    pthread_mutex_unlock(&d->lock);
}

static int op_devices(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    gw_device **list = NULL;
    size_t n = 0;
    int r = gw_registry_list(d->reg, &list, &n);
    if (r < 0)
        return fail_from_errno(err, r, NULL);
    json_t *a = json_array();
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < n; i++)
        if (!req->args.has_state || list[i]->state == req->args.state)
            json_array_append_new(a, device_object(d, list[i]));
    pthread_mutex_unlock(&d->lock);
    gw_device_list_free(list, n);
    *out = json_pack("{s:o}", "devices", a);
    return 0;
}

static json_t *device_with_cleanup(gwd *d, const gw_device *dev)
{
    pthread_mutex_lock(&d->lock);
    json_t *o = device_object(d, dev);
    pthread_mutex_unlock(&d->lock);
    const gw_cleanup_result *c = &dev->cleanup;
    if (dev->flags & GW_FLAG_CLEANING) {
        json_object_set_new(o, "cleanup", json_pack("{s:s,s:I,s:n,s:I,s:s}", "result", "running", "started",
                                                     (json_int_t)dev->since_ms, "finished", "duration_ms",
                                                     (json_int_t)(gwd_now_ms() - dev->since_ms), "backend",
                                                     backend_name(d)));
        json_object_set_new(o, "steps", json_array());
    } else if (c->start_ms) {
        json_object_set_new(o, "cleanup", json_pack("{s:s,s:I,s:I,s:I,s:s}", "result", c->passed ? "passed" : "failed",
                                                     "started", (json_int_t)c->start_ms, "finished",
                                                     (json_int_t)c->end_ms, "duration_ms",
                                                     (json_int_t)(c->end_ms - c->start_ms), "backend",
                                                     backend_name(d)));
        json_object_set_new(o, "steps", step_objects(d, c));
    } else {
        json_object_set_new(o, "cleanup", json_null());
        json_object_set_new(o, "steps", json_array());
    }
    return o;
}

static int op_device(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    gw_device *dev = NULL;
    int r = gw_registry_get(d->reg, req->args.address, &dev);
    if (r < 0)
        return gw_proto_errorf(err, GW_PROTO_NOT_FOUND, "args.address", "no GPU %s is managed by this daemon",
                               req->args.address);
    *out = device_with_cleanup(d, dev);
    gw_device_free(dev);
    return 0;
}

/* The audit actor of an operator's change: who connected, as the kernel
 * (ipc: SO_PEERCRED) or the CURVE allow-list (tcp: the key's name) says
 * (server.c), never the request's `actor`, which the client writes itself:
 * "operator:uid=0(root) pid=42(admin endpoint)". */
static char *operator_actor(const gw_proto_request *req, gw_proto_endpoint ep)
{
    return gw_strdup_printf("operator:%s(%s endpoint)", req->peer[0] ? req->peer : "unknown",
                            gw_proto_endpoint_name(ep));
}

/* What the client said about itself (the request's `actor`), recorded beside
 * the actor in the evidence; NULL when it said nothing. */
static char *claimed_actor(const gw_proto_request *req)
{
    return req->actor ? gw_strdup_printf("client actor '%s'", req->actor) : NULL;
}

/* Start any clean-up a change called for, and answer with the device as it
 * now stands. */
static int device_after(gwd *d, const char *address, json_t **out, gw_proto_error *err)
{
    gwd_cleanup_kick(d);
    gw_device *dev = NULL;
    int r = gw_registry_get(d->reg, address, &dev);
    if (r < 0)
        return fail_from_errno(err, r, NULL);
    pthread_mutex_lock(&d->lock);
    *out = device_object(d, dev);
    pthread_mutex_unlock(&d->lock);
    gw_device_free(dev);
    return 0;
}

/* Apply an operator event and answer with the device. */
static int operator_event(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, gw_event event, const char *reason,
                          json_t **out, gw_proto_error *err)
{
    _cleanup_free_ char *actor = operator_actor(req, ep);
    _cleanup_free_ char *claimed = claimed_actor(req);
    gw_apply_options o = GW_APPLY_OPTIONS_INIT;
    o.actor = actor;
    o.reason = reason;
    o.evidence = claimed;
    int r = gw_registry_apply(d->reg, req->args.address, event, &o, NULL);
    if (r < 0)
        return fail_from_errno(err, r, r == -ENOENT ? "args.address" : NULL);
    return device_after(d, req->args.address, out, err);
}

static int op_quarantine(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    return operator_event(d, req, ep, GW_EVENT_QUARANTINE, req->args.reason, out, err);
}

static int op_release(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    return operator_event(d, req, ep, GW_EVENT_RELEASE,
                          req->args.reason ? req->args.reason : "released by the operator", out, err);
}

static int op_sanitize(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    if (gw_cleanup_pool_busy(d->pool, req->args.address))
        return gw_proto_errorf(err, GW_PROTO_BUSY, "args.address", "%s: a clean-up is running", req->args.address);
    return operator_event(d, req, ep, GW_EVENT_SANITIZE, "clean-up requested by the operator", out, err);
}

/* The actor of every maintenance transition, whoever connects: a fixed
 * name is what lets `on: false` end only a hold that `on: true` set. An
 * operator's actor is always "operator:..." and the daemon's "system", so
 * neither can be taken for it. */
#define CYBORG_ACTOR "cyborg"

/* Cyborg's disable/enable (PROTOCOL.md §8 maintenance), an admin op: `on`
 * takes a GPU out of service, and `off` only ends a cyborg hold through
 * release, i.e. discovered + dirty and a clean-up. */
static int op_maintenance(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    const char *address = req->args.address;
    /* Who connected (the kernel's word) goes into the evidence, with what
     * the client claims beside it: the audit actor stays "cyborg". */
    const char *peer = req->peer[0] ? req->peer : "unknown";
    _cleanup_free_ char *evidence =
        req->actor ? gw_strdup_printf("maintenance on the %s endpoint by %s, client actor '%s'",
                                      gw_proto_endpoint_name(ep), peer, req->actor)
                   : gw_strdup_printf("maintenance on the %s endpoint by %s", gw_proto_endpoint_name(ep), peer);
    gw_apply_options o = GW_APPLY_OPTIONS_INIT;
    o.actor = CYBORG_ACTOR;
    o.reason = req->args.reason;
    o.evidence = evidence;
    int r;
    if (req->args.on) {
        r = gw_registry_apply(d->reg, address, GW_EVENT_QUARANTINE, &o, NULL);
        if (r == -EALREADY)
            r = 0;      /* already out of service, whoever put it there: that is all `on` asks */
    } else {
        /* Decide on a snapshot, apply against its seq: a transition in
         * between (an operator's quarantine cannot be one, but gone/back
         * can) means look again. */
        r = -ESTALE;
        for (int attempt = 0; attempt < 5 && r == -ESTALE; attempt++) {
            gw_device *dev = NULL;
            if ((r = gw_registry_get(d->reg, address, &dev)) < 0)
                break;
            if (dev->state != GW_STATE_QUARANTINED) {
                gw_device_free(dev);
                r = 0;  /* in service already: nothing to end */
                break;
            }
            if (strcmp(dev->quarantine_actor, CYBORG_ACTOR)) {
                gw_proto_errorf(err, GW_PROTO_ILLEGAL_TRANSITION, NULL,
                                "%s is quarantined by %s, not by cyborg: the operator releases it with "
                                "`gpuwarden release %s` (reason: %s)",
                                address, *dev->quarantine_actor ? dev->quarantine_actor : "unknown", address,
                                dev->quarantine_reason);
                gw_device_free(dev);
                return -1;
            }
            o.if_seq = dev->seq;
            gw_device_free(dev);
            r = gw_registry_apply(d->reg, address, GW_EVENT_RELEASE, &o, NULL);
        }
    }
    if (r == -ENOENT)
        return gw_proto_errorf(err, GW_PROTO_NOT_FOUND, "args.address", "no GPU %s is managed by this daemon",
                               address);
    if (r < 0)
        return fail_from_errno(err, r, NULL);
    return device_after(d, address, out, err);
}

/* An audit reply holds records of at most about this many bytes of text;
 * older ones are left out (`truncated`). Records carry up to 16 KiB of
 * reason and evidence each, so 1,000 of them could pass a client's 8 MiB
 * reply limit (PROTOCOL.md §7), and a reply waits whole in the daemon's
 * memory until the client reads it. */
#define AUDIT_REPLY_BYTES (1u << 20)

/* The text a record takes in a reply, about (field names, time, address,
 * states included in the constant). */
static size_t audit_record_bytes(const gw_transition *t)
{
    return 160 + strlen(t->actor ? t->actor : "") + strlen(t->reason ? t->reason : "") +
           strlen(t->evidence ? t->evidence : "");
}

/* Runs on the request worker (server.c), not the request thread. For one
 * device it reads that device's lines only, through the index of the log
 * the worker keeps (agent/lib/audit_index.c): nothing for a device with no
 * record. Without a device it reads the newest `limit` records backwards.
 * It touches only the registry's state directory (the registry's own copy:
 * a reload replaces d->cfg under it) and the files there. */
static int op_audit(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    gw_audit_filter f = GW_AUDIT_FILTER_INIT;
    f.address = req->args.device;
    f.since_ms = req->args.has_since ? (int64_t)req->args.since : 0;
    f.last = (size_t)req->args.limit;
    gw_audit *log = NULL;
    json_t *records = json_array();
    const char *dir = gw_registry_state_dir(d->reg);
    int r = d->audit_index ? gw_audit_index_read(d->audit_index, &log, dir, &f) : gw_audit_read(&log, dir, &f);
    if (r == -ENOENT) {
        *out = json_pack("{s:o,s:b}", "records", records, "truncated", 0);
        return 0;
    }
    if (r < 0) {
        json_decref(records);
        return fail_from_errno(err, -EIO, NULL);
    }
    size_t n = gw_audit_count(log), first = n, bytes = 0;
    while (first > 0) {
        size_t b = audit_record_bytes(gw_audit_get(log, first - 1));
        if (first < n && bytes + b > AUDIT_REPLY_BYTES)
            break;      /* the newest always goes, however large */
        bytes += b;
        first--;
    }
    for (size_t i = first; i < n; i++) {
        const gw_transition *t = gw_audit_get(log, i);
        json_t *rec = json_object();
        json_object_set_new(rec, "time", json_integer(t->time_ms));
        json_object_set_new(rec, "address", json_string(t->device.address));
        json_object_set_new(rec, "event", json_string(gw_event_name(t->event)));
        json_object_set_new(rec, "from", t->event == GW_EVENT_FOUND ? json_null() : json_string(gw_state_name(t->from)));
        json_object_set_new(rec, "to", json_string(gw_state_name(t->to)));
        json_object_set_new(rec, "dirty", json_boolean(t->to_flags & GW_FLAG_DIRTY));
        json_object_set_new(rec, "actor", json_string(t->actor));
        json_object_set_new(rec, "reason", str_or_null(t->reason));
        json_object_set_new(rec, "evidence", str_or_null(t->evidence));
        json_array_append_new(records, rec);
    }
    *out = json_pack("{s:o,s:b}", "records", records, "truncated", gw_audit_truncated(log) || first > 0);
    gw_audit_free(log);
    return 0;
}

/* The managed GPUs among a request's addresses, ascending, deduplicated.
 * Caller holds d->lock. */
static json_t *managed_among(gwd *d, const gw_proto_request *req)
{
    json_t *a = json_array();
    for (size_t i = 0; i < req->args.n_addresses; i++) {
        const char *addr = req->args.addresses[i];
        if (!gwd_fleet_is_managed(d, addr))
            continue;
        size_t j = 0;
        while (j < json_array_size(a) && strcmp(json_string_value(json_array_get(a, j)), addr) < 0)
            j++;
        if (j == json_array_size(a) || strcmp(json_string_value(json_array_get(a, j)), addr))
            json_array_insert_new(a, j, json_string(addr));
    }
    return a;
}

static int op_attached(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    pthread_mutex_lock(&d->lock);
    json_t *gpus = managed_among(d, req);
    for (size_t i = 0; i < json_array_size(gpus); i++) {
        const char *addr = json_string_value(json_array_get(gpus, i));
        char *const *domains = gwd_attachment_domains(d, addr);
        for (char *const *dm = domains; dm && *dm; dm++) {
            if (strcmp(*dm, req->args.domain)) {
                gw_proto_errorf(err, GW_PROTO_CONFLICT, "args.addresses", "%s is attached to domain '%s', not '%s'",
                                addr, *dm, req->args.domain);
                pthread_mutex_unlock(&d->lock);
                json_decref(gpus);
                return -1;
            }
        }
    }
    pthread_mutex_unlock(&d->lock);
    if (d->attach) {
        /* libvirt is the truth: ask the watcher to look now. Meanwhile the
         * domain counts as running on the GPUs it already holds (a start of
         * a stopped domain: no longer reserved). */
        for (size_t i = 0; i < json_array_size(gpus); i++)
            gwd_attachment_hint(d, json_string_value(json_array_get(gpus, i)), req->args.domain, true);
        gw_attach_reconcile(d->attach);
    } else {
        const char *dom[] = { req->args.domain };
        for (size_t i = 0; i < json_array_size(gpus); i++)
            gwd_attachment_update(d, json_string_value(json_array_get(gpus, i)), dom, 1);
    }
    *out = json_pack("{s:o}", "devices", gpus);
    return 0;
}

/* "release end": the domain let go of its GPUs. libvirt may still be tearing
 * the domain down, so nothing here calls libvirt (the hook waits for this
 * reply and libvirtd waits for the hook): the watcher is asked to reconcile
 * on its own thread, and its report makes the GPUs dirty and starts their
 * clean-ups, or, for a persistent domain that is only shut off, leaves them
 * attached to it. Either way the domain no longer runs, so its GPUs are
 * reserved from now on (attachment.c, "Stopped domains"), before the
 * revision below is taken. Without libvirt the hint itself is the report. */
static int op_released(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    pthread_mutex_lock(&d->lock);
    json_t *gpus = managed_among(d, req);
    pthread_mutex_unlock(&d->lock);
    if (d->attach) {
        for (size_t i = 0; i < json_array_size(gpus); i++)
            gwd_attachment_hint(d, json_string_value(json_array_get(gpus, i)), req->args.domain, false);
        gw_attach_reconcile(d->attach);
    } else {
        for (size_t i = 0; i < json_array_size(gpus); i++) {
            const char *addr = json_string_value(json_array_get(gpus, i));
            pthread_mutex_lock(&d->lock);
            size_t n = 0;
            char **keep = gwd_strv_without(gwd_attachment_domains(d, addr), req->args.domain, &n);
            pthread_mutex_unlock(&d->lock);
            /* Wakes the main loop, which starts the clean-up. */
            gwd_attachment_update(d, addr, (const char *const *)keep, n);
            gwd_strv_free(keep);
        }
    }
    /* The generation (and its revision) that shows the hint's effect: the
     * hook waits until `published` reaches that revision, so that Placement
     * shows the GPUs reserved before Nova deletes the allocation. With
     * libvirt the GPUs are reserved as held by a stopped domain (above); the
     * watcher's detach, if the domain goes away, keeps them so. 0 when no
     * inventory can be built (then `inventory` fails too, and nothing will
     * be published to wait for). */
    pthread_mutex_lock(&d->lock);
    gw_inventory *inv = NULL;
    bool built = current_inventory(d, &inv) == 0;
    json_int_t generation = built ? (json_int_t)gw_inventory_generation(inv) : 0;
    json_int_t revision = built ? (json_int_t)d->revision : 0;
    pthread_mutex_unlock(&d->lock);
    *out = json_pack("{s:o,s:I,s:I}", "devices", gpus, "generation", generation, "revision", revision);
    return 0;
}

/* Why `domain` may not start on the GPU `dev`; NULL when it may. Caller holds d->lock. */
static char *gate_refusal(gwd *d, const gw_device *dev, const char *domain)
{
    const char *addr = dev->identity.address;
    /* First: every answer below rests on the attachment view. */
    const char *unknown = gwd_attachment_unknown(d, addr);
    if (unknown)
        return gw_strdup_printf("attachment unknown: %s; no domain may start on it until libvirt has been read",
                                unknown);
    char *const *domains = gwd_attachment_domains(d, addr);
    for (char *const *dm = domains; dm && *dm; dm++)
        if (strcmp(*dm, domain))
            return gw_strdup_printf("attached to domain '%s'", *dm);
    if (dev->flags & GW_FLAG_MISSING)
        return gw_xstrdup("not on the bus");
    switch (dev->state) {
    case GW_STATE_ALLOCATABLE:
    case GW_STATE_SANITIZED:
        return NULL;
    case GW_STATE_ATTACHED: {
        const char *owner = gw_device_fact(dev, "attach.domain");
        const char *clean = gw_device_fact(dev, "attach.clean");
        if (owner && strcmp(owner, domain))
            return gw_strdup_printf("attached to domain '%s'", owner);
        if (clean && !strcmp(clean, "1"))
            return NULL;
        if (clean && !strcmp(clean, "pending"))
            return gw_xstrdup("dirty: clean-up running");
        return gw_xstrdup("dirty: it was attached before a clean-up made it allocatable");
    }
    case GW_STATE_QUARANTINED:
        return gw_strdup_printf("quarantined: %s", dev->quarantine_reason);
    case GW_STATE_DISCOVERED:
        return gw_xstrdup(dev->flags & GW_FLAG_CLEANING ? "dirty: clean-up running"
                                                        : "dirty: waiting for its clean-up");
    default:
        break;
    }
    return gw_xstrdup("unknown state");
}

static int op_gate(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    pthread_mutex_lock(&d->lock);
    json_t *gpus = managed_among(d, req);
    json_t *reasons = json_array();
    bool unknown = false;
    for (size_t i = 0; i < json_array_size(gpus); i++) {
        const char *addr = json_string_value(json_array_get(gpus, i));
        gw_device *dev = NULL;
        unknown |= gwd_attachment_unknown(d, addr) != NULL;
        char *why = gw_registry_get(d->reg, addr, &dev) < 0 ? gw_xstrdup("unknown to the daemon")
                                                             : gate_refusal(d, dev, req->args.domain);
        gw_device_free(dev);
        if (why) {
            json_array_append_new(reasons, json_pack("{s:s,s:s}", "address", addr, "reason", why));
            free(why);
        }
    }
    pthread_mutex_unlock(&d->lock);
    json_decref(gpus);
    /* The hook runs inside libvirtd, so libvirt is up: a watcher waiting to
     * reconnect tries now, and a start retried shortly after may pass. */
    if (unknown)
        gw_attach_reconcile(d->attach);
    *out = json_pack("{s:b,s:o}", "allowed", json_array_size(reasons) == 0, "reasons", reasons);
    return 0;
}

static int op_metrics(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **out, gw_proto_error *err)
{
    gw_device **list = NULL;
    size_t n = 0;
    uint64_t per_state[GW_STATE_COUNT] = { 0 }, dirty = 0, cleaning = 0;
    if (gw_registry_list(d->reg, &list, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            if ((unsigned)list[i]->state < GW_STATE_COUNT)
                per_state[list[i]->state]++;
            dirty += !!(list[i]->flags & GW_FLAG_DIRTY);
            cleaning += !!(list[i]->flags & GW_FLAG_CLEANING);
        }
        gw_device_list_free(list, n);
    }
    json_t *o = json_object();
    json_object_set_new(o, "uptime_ms", json_integer(gwd_now_ms() - d->boot_ms));
    json_t *states = json_object();
    for (int s = 0; s < GW_STATE_COUNT; s++)
        json_object_set_new(states, gw_state_name((gw_state)s), json_integer((json_int_t)per_state[s]));
    json_object_set_new(o, "devices", states);
    json_object_set_new(o, "dirty", json_integer((json_int_t)dirty));
    json_object_set_new(o, "cleaning", json_integer((json_int_t)cleaning));
    json_t *cleanups = json_pack("{s:I,s:I}", "passed", (json_int_t)atomic_load(&d->cleanups_passed), "failed",
                                 (json_int_t)atomic_load(&d->cleanups_failed));
    json_object_set_new(o, "cleanups", cleanups);
    json_t *reqs = json_object();
    for (int op = 0; op < GW_OP_COUNT; op++)
        json_object_set_new(reqs, gw_proto_op_name((gw_proto_op)op), json_integer((json_int_t)d->requests[op]));
    json_object_set_new(o, "requests", reqs);
    json_t *errs = json_object();
    for (int c = 1; c < GW_PROTO_CODE_COUNT; c++)
        json_object_set_new(errs, gw_proto_code_name((gw_proto_code)c), json_integer((json_int_t)d->errors[c]));
    json_object_set_new(o, "errors", errs);
    pthread_mutex_lock(&d->event_lock);
    json_object_set_new(o, "events", json_integer((json_int_t)d->event_seq));
    pthread_mutex_unlock(&d->event_lock);
    pthread_mutex_lock(&d->lock);
    gw_inventory *inv = NULL;
    bool built = current_inventory(d, &inv) == 0;
    json_object_set_new(o, "generation", json_integer(built ? (json_int_t)gw_inventory_generation(inv) : 0));
    json_object_set_new(o, "published", json_integer((json_int_t)d->published_gen));
    json_object_set_new(o, "published_revision", json_integer((json_int_t)d->published_rev));
    /* The current content's revision: after a change (an operator's
     * quarantine), Placement shows it once published_revision reaches this
     * (`gpuwarden quarantine` waits for that). Last: added after the rest. */
    json_object_set_new(o, "revision", json_integer(built ? (json_int_t)d->revision : 0));
    gwd_watcher_state w = { .enabled = d->attach != NULL,
                            .connected = d->attach && gw_attach_libvirt_connected(d->attach),
                            .current = d->attach && d->attach_current };
    size_t fenced = gwd_fence_count(d);
    pthread_mutex_unlock(&d->lock);
    /* Histograms, failures by step, quarantines by cause, events by kind,
     * the watcher: added after the rest (PROTOCOL.md §8). */
    gwd_metrics_to_json(&d->metrics, &w, o, cleanups);
    /* Quarantined GPUs whose group is held (fence.c); after the rest. */
    json_object_set_new(o, "fenced", json_integer((json_int_t)fenced));
    *out = o;
    return 0;
}

typedef int (*op_fn)(gwd *, const gw_proto_request *, gw_proto_endpoint, json_t **, gw_proto_error *);

static const op_fn ops[GW_OP_COUNT] = {
    [GW_OP_HELLO] = op_hello,           [GW_OP_INVENTORY] = op_inventory, [GW_OP_PUBLISHED] = op_published,
    [GW_OP_DEVICES] = op_devices,       [GW_OP_DEVICE] = op_device,       [GW_OP_QUARANTINE] = op_quarantine,
    [GW_OP_RELEASE] = op_release,       [GW_OP_SANITIZE] = op_sanitize,   [GW_OP_AUDIT] = op_audit,
    [GW_OP_ATTACHED] = op_attached,     [GW_OP_RELEASED] = op_released,   [GW_OP_GATE] = op_gate,
    [GW_OP_METRICS] = op_metrics,       [GW_OP_MAINTENANCE] = op_maintenance,
};

int gwd_op_run(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **result, gw_proto_error *err)
{
    *result = NULL;
    return ops[req->op](d, req, ep, result, err);
}
