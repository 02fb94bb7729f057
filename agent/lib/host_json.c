/* SPDX-License-Identifier: Apache-2.0 */
/* gw_host_to_json(): the schema of `gpuwarden discover --json`
 * (docs/discover-json.md). Keys keep this order. */
#include <gpuwarden/host.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "host_internal.h"
#include "util.h"

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *hex4(unsigned v)
{
    char b[8];
    snprintf(b, sizeof b, "%04x", v & 0xffff);
    return json_string(b);
}

static json_t *strs(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *acs_json(const gw_acs *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "present", json_boolean(a->present));
    json_object_set_new(o, "known", json_boolean(a->known));
    json_object_set_new(o, "cap", a->present ? hex4(a->cap) : json_null());
    json_object_set_new(o, "ctrl", a->present ? hex4(a->ctrl) : json_null());
    json_object_set_new(o, "sv", json_boolean(a->sv));
    json_object_set_new(o, "rr", json_boolean(a->rr));
    json_object_set_new(o, "cr", json_boolean(a->cr));
    json_object_set_new(o, "uf", json_boolean(a->uf));
    return o;
}

static json_t *upstream_json(const gw_gpu *g)
{
    json_t *a = json_array();
    for (size_t i = 0; i < g->n_upstream; i++) {
        const gw_bridge *b = &g->upstream[i];
        json_t *o = json_object();
        json_object_set_new(o, "address", json_string(b->address));
        json_object_set_new(o, "vendor_id", hex4(b->vendor_id));
        json_object_set_new(o, "device_id", hex4(b->device_id));
        json_object_set_new(o, "port_type", json_string(gw_port_type_name(b->port_type)));
        json_object_set_new(o, "acs", acs_json(&b->acs));
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *members_json(const gw_gpu *g)
{
    json_t *a = json_array();
    for (size_t i = 0; i < g->n_group_members; i++) {
        const gw_group_member *m = &g->group_members[i];
        json_t *o = json_object();
        json_object_set_new(o, "address", json_string(m->address));
        json_object_set_new(o, "driver", str_or_null(m->driver));
        json_object_set_new(o, "is_bridge", json_boolean(m->is_bridge));
        json_object_set_new(o, "same_slot", json_boolean(m->same_slot));
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *link_json(const gw_link *l)
{
    json_t *o = json_object();
    json_object_set_new(o, "speed_gts", l->present ? json_real(l->speed_gts) : json_null());
    json_object_set_new(o, "width", l->present ? json_integer(l->width) : json_null());
    json_object_set_new(o, "max_speed_gts", l->present ? json_real(l->max_speed_gts) : json_null());
    json_object_set_new(o, "max_width", l->present ? json_integer(l->max_width) : json_null());
    return o;
}

/* The verdict as a whole: what the clean-up's isolation step says too. */
static json_t *isolation_json(const gw_gpu *g)
{
    json_t *o = json_object();
    json_object_set_new(o, "viable", json_boolean(g->isolation_viable));
    json_object_set_new(o, "evidence", str_or_null(g->isolation_evidence));
    json_object_set_new(o, "ats_ok", json_boolean(g->ats_ok));
    json_object_set_new(o, "ats_evidence", str_or_null(g->ats_evidence));
    json_t *a = json_array();
    for (size_t i = 0; i < g->n_isolation_reasons; i++) {
        const gw_iso_reason *r = &g->isolation_reasons[i];
        json_t *ro = json_object();
        json_object_set_new(ro, "kind", json_string(gw_iso_kind_name(r->kind)));
        json_t *devs = json_array();
        for (size_t k = 0; k < r->n_devices; k++)
            json_array_append_new(devs, json_string(r->devices[k]));
        json_object_set_new(ro, "devices", devs);
        json_object_set_new(ro, "text", json_string(r->text));
        json_array_append_new(a, ro);
    }
    json_object_set_new(o, "reasons", a);
    return o;
}

static json_t *count_or_null(long v) { return v < 0 ? json_null() : json_integer(v); }

static json_t *gpu_json(const gw_gpu *g)
{
    json_t *o = json_object();
    char b[32];
    json_object_set_new(o, "address", json_string(g->address));
    json_object_set_new(o, "vendor_id", hex4(g->vendor_id));
    json_object_set_new(o, "device_id", hex4(g->device_id));
    json_object_set_new(o, "subsystem_vendor_id", hex4(g->subsystem_vendor_id));
    json_object_set_new(o, "subsystem_device_id", hex4(g->subsystem_device_id));
    snprintf(b, sizeof b, "%02x", g->revision);
    json_object_set_new(o, "revision", json_string(b));
    json_object_set_new(o, "class", hex4(g->class_code));
    json_object_set_new(o, "vendor_name", str_or_null(g->vendor_name));
    json_object_set_new(o, "device_name", str_or_null(g->device_name));
    json_object_set_new(o, "numa_node", json_integer(g->numa_node));
    json_object_set_new(o, "local_cpulist", str_or_null(g->local_cpulist));
    json_object_set_new(o, "iommu_group", str_or_null(g->iommu_group));
    json_object_set_new(o, "iommu_group_members", members_json(g));
    json_object_set_new(o, "driver", str_or_null(g->driver));
    json_object_set_new(o, "flr", json_boolean(g->flr));
    json_object_set_new(o, "reset_methods", strs(g->reset_methods, g->n_reset_methods));
    json_object_set_new(o, "link", link_json(&g->link));

    json_t *ats = json_object();
    json_object_set_new(ats, "present", json_boolean(g->ats_present));
    json_object_set_new(ats, "enabled", json_boolean(g->ats_enabled));
    json_object_set_new(o, "ats", ats);
    json_t *aer = json_object();
    json_object_set_new(aer, "present", json_boolean(g->aer_present));
    json_object_set_new(aer, "correctable", count_or_null(g->aer.correctable));
    json_object_set_new(aer, "fatal", count_or_null(g->aer.fatal));
    json_object_set_new(aer, "nonfatal", count_or_null(g->aer.nonfatal));
    json_object_set_new(o, "aer", aer);
    if (g->dsn_present) {
        uint64_t d = g->dsn;
        snprintf(b, sizeof b, "%02x-%02x-%02x-%02x-%02x-%02x-%02x-%02x", (unsigned)(d >> 56) & 0xff,
                 (unsigned)(d >> 48) & 0xff, (unsigned)(d >> 40) & 0xff, (unsigned)(d >> 32) & 0xff,
                 (unsigned)(d >> 24) & 0xff, (unsigned)(d >> 16) & 0xff, (unsigned)(d >> 8) & 0xff,
                 (unsigned)d & 0xff);
        json_object_set_new(o, "dsn", json_string(b));
    } else {
        json_object_set_new(o, "dsn", json_null());
    }
    json_object_set_new(o, "rom_present", json_boolean(g->rom_present));
    json_object_set_new(o, "config_all_ones", json_boolean(g->config_all_ones));
    json_t *bars = json_array();
    for (int i = 0; i < 6; i++)
        json_array_append_new(bars, json_integer((json_int_t)g->bar_sizes[i]));
    json_object_set_new(o, "bar_sizes", bars);

    json_t *fns = json_array();
    for (size_t i = 0; i < g->n_functions; i++)
        json_array_append_new(fns, json_string(g->functions[i]));
    json_object_set_new(o, "functions", fns);
    json_object_set_new(o, "upstream", upstream_json(g));
    json_object_set_new(o, "acs_path_ok", json_boolean(g->acs_path_ok));
    json_object_set_new(o, "acs_evidence", str_or_null(g->acs_evidence));
    json_object_set_new(o, "group_viable", json_boolean(g->group_viable));
    json_object_set_new(o, "group_evidence", str_or_null(g->group_evidence));
    json_object_set_new(o, "isolation", isolation_json(g));
    json_object_set_new(o, "clique", g->clique < 0 ? json_null() : json_integer(g->clique));
    json_object_set_new(o, "errors", strs(g->errors, g->n_errors));
    return o;
}

GW_EXTERN int gw_host_to_json(const gw_host *h, char **out)
{
    if (!h || !out)
        return gw_error_set(-EINVAL, "gw_host_to_json: NULL argument");
    json_t *root = json_object();
    json_object_set_new(root, "host_root", json_string(h->root));
    json_t *gpus = json_array();
    for (size_t i = 0; i < h->n_gpus; i++)
        json_array_append_new(gpus, gpu_json(&h->gpus[i]));
    json_object_set_new(root, "gpus", gpus);
    json_t *cl = json_array();
    for (size_t i = 0; i < h->n_cliques; i++)
        json_array_append_new(cl, strs((const char *const *)h->cliques[i].members.v,
                                       h->cliques[i].members.n));
    json_object_set_new(root, "cliques", cl);
    json_object_set_new(root, "errors", strs((const char *const *)h->errors.v, h->errors.n));
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(root);
    if (!s)
        return gw_error_set(-ENOMEM, "gw_host_to_json: json_dumps failed");
    *out = s;
    return 0;
}
