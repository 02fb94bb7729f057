/* Which VMs hold which GPU. The libvirt watcher reports the set of domains
 * referencing each managed GPU; this module keeps that view and turns changes
 * into lifecycle events: referenced -> attach seen; no longer referenced ->
 * detach seen, which makes the GPU dirty and wakes the main loop to start its
 * clean-up. Without libvirt the hook's hints feed the same function.
 *
 * The gate needs to know whether a VM got the GPU clean: attach seen always
 * marks a GPU dirty, whatever it was before. So the attach also pins
 * "attach.domain" and "attach.clean": "1" when the GPU was clean
 * (allocatable or sanitized), "pending" when a domain was defined on it while
 * its clean-up ran (cleanup.c settles it with the verdict), else "0". The
 * gate reads them back, also after a restart. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "util.h"

void gwd_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

char **gwd_strv_copy(const char *const *v, size_t n)
{
    char **c = gw_xcalloc(n + 1, sizeof *c);
    for (size_t i = 0; i < n; i++)
        c[i] = gw_xstrdup(v[i]);
    return c;
}

char **gwd_strv_without(char *const *v, const char *drop, size_t *n)
{
    size_t len = 0;
    while (v && v[len])
        len++;
    char **out = gw_xcalloc(len + 1, sizeof *out);
    *n = 0;
    for (size_t i = 0; i < len; i++)
        if (strcmp(v[i], drop))
            out[(*n)++] = gw_xstrdup(v[i]);
    return out;
}

static gwd_attachment *find(gwd *d, const char *address)
{
    for (size_t i = 0; i < d->n_attachments; i++)
        if (!strcmp(d->attachments[i].address, address))
            return &d->attachments[i];
    return NULL;
}

char *const *gwd_attachment_domains(gwd *d, const char *address)
{
    gwd_attachment *a = find(d, address);
    return a && a->domains && a->domains[0] ? a->domains : NULL;
}

bool gwd_attachment_ready(gwd *d)
{
    return !d->attach || d->n_attachments >= d->n_watched;
}

static void set_view(gwd *d, const char *address, const char *const *domains, size_t n)
{
    gwd_attachment *a = find(d, address);
    if (!a) {
        d->attachments = gw_xrealloc(d->attachments, d->n_attachments + 1, sizeof *d->attachments);
        a = &d->attachments[d->n_attachments++];
        memset(a, 0, sizeof *a);
        snprintf(a->address, sizeof a->address, "%s", address);
    }
    gwd_strv_free(a->domains);
    a->domains = gwd_strv_copy(domains, n);
}

/* Attach seen, remembering whether the VM got the GPU clean. Reads the record
 * and applies against its sequence number, so nothing slips in between. */
static void attach_seen(gwd *d, const char *address, const char *domain)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        gw_device *dev = NULL;
        if (gw_registry_get(d->reg, address, &dev) < 0)
            return;
        /* "pending": defined while its clean-up runs; the verdict settles it. */
        const char *clean = dev->state == GW_STATE_ALLOCATABLE || dev->state == GW_STATE_SANITIZED ? "1"
                            : (dev->flags & GW_FLAG_CLEANING)                                        ? "pending"
                                                                                                     : "0";
        gw_apply_options o = GW_APPLY_OPTIONS_INIT;
        o.actor = "libvirt";
        char reason[320];
        snprintf(reason, sizeof reason, "referenced by domain '%s'", domain);
        o.reason = reason;
        o.if_seq = dev->seq;
        gw_device_free(dev);
        int r = gw_registry_apply(d->reg, address, GW_EVENT_ATTACH_SEEN, &o, NULL);
        if (r == -ESTALE)
            continue;
        if (r == 0 || r == -EALREADY || r == -EPERM) {
            /* -EPERM: quarantined (or missing); the VM holds it all the same,
             * so the gate and the view still need the domain. */
            if (r == 0) {
                gw_registry_set_fact(d->reg, address, "attach.domain", domain);
                gw_registry_set_fact(d->reg, address, "attach.clean", clean);
            }
            return;
        }
        gw_log(GW_LOG_ERR, "%s: attach seen (domain '%s'): %s", address, domain, gw_error_message());
        return;
    }
}

static void detach_seen(gwd *d, const char *address)
{
    gw_apply_options o = GW_APPLY_OPTIONS_INIT;
    o.actor = "libvirt";
    o.reason = "no domain references it";
    int r = gw_registry_apply(d->reg, address, GW_EVENT_DETACH_SEEN, &o, NULL);
    if (r < 0) {
        /* -EPERM: it was not attached (the watcher's first full report names
         * every GPU) or is quarantined, which only a release ends. */
        if (r != -EPERM && r != -EALREADY)
            gw_log(GW_LOG_ERR, "%s: detach seen: %s", address, gw_error_message());
        return;
    }
    gw_registry_set_fact(d->reg, address, "attach.domain", NULL);
    gw_registry_set_fact(d->reg, address, "attach.clean", NULL);
}

void gwd_attachment_update(gwd *d, const char *address, const char *const *domains, size_t n)
{
    pthread_mutex_lock(&d->lock);
    bool managed = gwd_fleet_is_managed(d, address);
    if (managed)
        set_view(d, address, domains, n);
    pthread_mutex_unlock(&d->lock);
    if (!managed)
        return;
    if (n > 0)
        attach_seen(d, address, domains[0]);
    else
        detach_seen(d, address);
    gwd_wake(d);
}

static void on_changed(const char *address, const char *const *domains, size_t n, void *userdata)
{
    gwd_attachment_update(userdata, address, domains, n);
}

int gwd_attachment_start(gwd *d)
{
    if (!d->cfg.libvirt_uri[0]) {
        gw_log(GW_LOG_NOTICE, "libvirt disabled: attachment comes from the hook's hints only");
        return 0;
    }
    pthread_mutex_lock(&d->lock);
    size_t n = 0;
    for (char **m = d->managed; m && *m; m++)
        n++;
    char **watch = gwd_strv_copy((const char *const *)d->managed, n);
    pthread_mutex_unlock(&d->lock);

    gw_attach_libvirt_options o = GW_ATTACH_LIBVIRT_OPTIONS_INIT;
    o.uri = d->cfg.libvirt_uri;
    o.watch = (const char *const *)watch;
    o.n_watch = n;
    o.changed = on_changed;
    o.userdata = d;
    o.reconcile_interval_ms = (unsigned)(d->cfg.reconcile_interval_s * 1000);
    d->n_watched = n;
    int r = gw_attach_libvirt_new(&d->attach, &o);
    gwd_strv_free(watch);
    if (r < 0)
        gw_log(GW_LOG_ERR, "libvirt watcher on %s: %s", d->cfg.libvirt_uri, gw_error_message());
    else
        gw_log(GW_LOG_INFO, "watching libvirt at %s for %zu GPUs", d->cfg.libvirt_uri, n);
    return r;
}

void gwd_attachment_stop(gwd *d)
{
    gw_attach_source_free(d->attach);
    d->attach = NULL;
    for (size_t i = 0; i < d->n_attachments; i++)
        gwd_strv_free(d->attachments[i].domains);
    free(d->attachments);
    d->attachments = NULL;
    d->n_attachments = 0;
}
