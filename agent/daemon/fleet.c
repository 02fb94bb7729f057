/* SPDX-License-Identifier: Apache-2.0 */
/* The fleet: which GPUs this daemon manages, from a host scan, kept in step
 * with the registry. A GPU is managed when the clean-up policy lets the daemon
 * write to it (gw_sanitize_is_managed): gpuwarden never offers a GPU it could
 * not clean. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "util.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void identity_of(const gw_gpu *g, gw_identity *id)
{
    memset(id, 0, sizeof *id);
    memcpy(id->address, g->address, GW_ADDR_LEN);
    id->vendor_id = g->vendor_id;
    id->device_id = g->device_id;
    id->subsystem_vendor_id = g->subsystem_vendor_id;
    id->subsystem_device_id = g->subsystem_device_id;
    id->dsn_present = g->dsn_present;
    id->dsn = g->dsn;
}

/* PCI facts the device object shows even while the device is missing, for
 * every managed GPU of the scan, in one checkpoint write (the registry skips
 * the unchanged ones, and writes nothing when none changed): four writes
 * per GPU made a first start on 64 GPUs 256 checkpoint writes. */
static void pin_pci_facts(gwd *d, gw_host *host, char *const *managed, size_t n)
{
    gw_fact_pin *pins = gw_xcalloc(4 * n + 1, sizeof *pins);
    char (*bufs)[2][8] = gw_xcalloc(n + 1, sizeof *bufs);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const gw_gpu *g = gw_host_find_gpu(host, managed[i]);
        snprintf(bufs[i][0], sizeof bufs[i][0], "%04x", g->class_code);
        snprintf(bufs[i][1], sizeof bufs[i][1], "%u", g->revision);
        const struct { const char *key, *value; } facts[] = {
            { "pci.class", bufs[i][0] },
            { "pci.revision", bufs[i][1] },
            { "pci.vendor_name", g->vendor_name },
            { "pci.device_name", g->device_name },
        };
        for (size_t f = 0; f < sizeof facts / sizeof facts[0]; f++)
            if (facts[f].value)
                pins[k++] = (gw_fact_pin){ g->address, facts[f].key, facts[f].value };
    }
    if (gw_registry_set_facts(d->reg, pins, k) < 0)
        gw_log(GW_LOG_WARNING, "cannot pin the PCI facts of %zu GPU(s): %s", n, gw_error_message());
    free(bufs);
    free(pins);
}

/* A scan that finds a managed GPU dead quarantines it at once, whatever it was
 * doing: it must not stay offered. (-EALREADY/-EPERM: already quarantined or
 * otherwise out of service.) */
static void health_fault(gwd *d, const char *address, const char *why)
{
    gw_apply_options o = GW_APPLY_OPTIONS_INIT;
    o.reason = why;
    int r = gw_registry_apply(d->reg, address, GW_EVENT_FAULT, &o, NULL);
    if (r == 0)
        gw_log(GW_LOG_ERR, "%s: %s: quarantined", address, why);
    else if (r != -EALREADY && r != -EPERM)
        gw_log(GW_LOG_ERR, "%s: health fault not recorded: %s", address, gw_error_message());
}

int gwd_fleet_scan(gwd *d)
{
    gw_host_options o = GW_HOST_OPTIONS_INIT;
    o.root = d->cfg.host_root;
    gw_host *host = NULL;
    int r = gw_host_scan(&host, &o);
    if (r < 0) {
        gw_log(GW_LOG_ERR, "host scan of %s failed: %s", d->cfg.host_root, gw_error_message());
        return r;
    }
    for (size_t i = 0; i < gw_host_error_count(host); i++)
        gw_log(GW_LOG_WARNING, "host: %s", gw_host_error(host, i));

    size_t n = gw_host_gpu_count(host), n_managed = 0;
    gw_identity *ids = gw_xcalloc(n, sizeof *ids);
    char **managed = gw_xcalloc(n + 1, sizeof *managed);
    for (size_t i = 0; i < n; i++) {
        const gw_gpu *g = gw_host_gpu(host, i);
        char *why = NULL;
        int m = gw_sanitize_is_managed(d->ops, &d->policy, g->address, &why);
        if (m == 1) {
            identity_of(g, &ids[n_managed]);
            managed[n_managed++] = gw_xstrdup(g->address);
        } else {
            gw_log(GW_LOG_INFO, "%s: not managed: %s", g->address, why ? why : gw_error_message());
        }
        free(why);
        for (size_t e = 0; e < g->n_errors; e++)
            gw_log(GW_LOG_WARNING, "%s: %s", g->address, g->errors[e]);
    }
    qsort(managed, n_managed, sizeof *managed, cmp_str);

    r = gw_registry_sync(d->reg, ids, n_managed, "system");
    free(ids);
    if (r < 0) {
        gw_log(GW_LOG_ERR, "registry sync after scan: %s", gw_error_message());
        gwd_strv_free(managed);
        gw_host_free(host);
        return r;
    }
    pin_pci_facts(d, host, managed, n_managed);
    for (size_t i = 0; i < n_managed; i++) {
        const gw_gpu *g = gw_host_find_gpu(host, managed[i]);
        if (g->config_all_ones)
            health_fault(d, g->address, "config space reads all-ones: the GPU fell off the bus");
    }

    pthread_mutex_lock(&d->lock);
    gw_host *old = d->host;
    char **old_managed = d->managed;
    d->host = host;
    d->managed = managed;
    gwd_view_changed(d);
    pthread_mutex_unlock(&d->lock);
    gw_host_free(old);
    gwd_strv_free(old_managed);
    gw_log(GW_LOG_INFO, "scan of %s: %zu GPUs, %zu managed, %d transitions", d->cfg.host_root, n, n_managed, r);
    return 0;
}

bool gwd_fleet_is_managed(gwd *d, const char *address)
{
    if (!d->managed)
        return false;
    for (char **m = d->managed; *m; m++)
        if (!strcmp(*m, address))
            return true;
    return false;
}

const gw_gpu *gwd_fleet_gpu(gwd *d, const char *address)
{
    return d->host ? gw_host_find_gpu(d->host, address) : NULL;
}
