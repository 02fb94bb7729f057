/* SPDX-License-Identifier: Apache-2.0 */
/* Runtime power during a clean-up. vfio-pci lets an idle device suspend at
 * once (Linux 6.1: D3hot, runtime "suspended", as soon as it binds), so
 * without care the clean-up would reset and check a device in D3hot, while
 * the VM that gets it next uses it in D0. Resets, config and ROM reads do
 * work in D3hot (the kernel resumes around them), but a device that goes back
 * to sleep between two reads is not the device a tenant sees. So after bind
 * the clean-up writes "on" to power/control of every managed target (which
 * resumes it and keeps it in D0), and at the end of the run writes back what
 * was there, also when a step failed. Only an abandoned run (a step past its
 * timeout, maybe still writing) leaves "on" in place: nothing more may be
 * written then, and the evidence says so. */
#include <string.h>

#include "sanitize_internal.h"

char *gw_power_state(gw_hostops *ops, const char *addr)
{
    _cleanup_free_ char *state = NULL, *status = NULL;
    bool has_state = gw_dev_read_text(ops, addr, "power_state", &state) == 0;
    bool has_status = gw_dev_read_text(ops, addr, "power/runtime_status", &status) == 0;
    if (!has_state && !has_status)
        return NULL;
    return gw_strdup_printf("%s, runtime %s", has_state ? state : "?", has_status ? status : "?");
}

static void save(gw_sctx *c, const char *addr, const char *control)
{
    pthread_mutex_lock(&c->lock);
    gw_kvlist_set(&c->power_saved, addr, control);
    pthread_mutex_unlock(&c->lock);
}

static void hold_one(gw_sctx *c, const char *addr)
{
    _cleanup_free_ char *before = gw_power_state(c->ops, addr);
    const char *was = before ? before : "power state unknown";
    _cleanup_free_ char *control = NULL;
    if (gw_dev_read_text(c->ops, addr, "power/control", &control) < 0) {
        gw_note(c, "%s: %s; no power/control: runtime power not held", addr, was);
        return;
    }
    if (!strcmp(control, "on")) {
        gw_note(c, "%s: %s, power/control already 'on'", addr, was);
        return;
    }
    if (gw_dev_managed(c->ops, &c->policy->pol, addr, NULL) <= 0) {
        gw_note(c, "%s: %s, power/control '%s' left as it is (not managed)", addr, was, control);
        return;
    }
    _cleanup_free_ char *path = gw_dev_path(addr, "power/control");
    if (gw_host_write(c, addr, path, "on", 2) < 0) {
        gw_note(c, "%s: stays %s (the clean-up goes on: reset and reads work in D3hot)", addr, was);
        return;
    }
    save(c, addr, control);
    _cleanup_free_ char *after = gw_power_state(c->ops, addr);
    gw_note(c, "%s: %s -> %s (power/control 'on', was '%s')", addr, was, after ? after : "power state unknown",
            control);
}

void gw_power_hold_on(gw_sctx *c, const gw_addrlist *fns)
{
    pthread_mutex_lock(&c->lock);
    c->power_seen = true;
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < fns->n; i++)
        hold_one(c, fns->v[i]);
}

void gw_power_note(gw_sctx *c, const char *addr, const char *when)
{
    _cleanup_free_ char *state = gw_power_state(c->ops, addr);
    if (state)
        gw_note(c, "%s %s: %s", addr, when, state);
}

bool gw_power_pending(gw_sctx *c)
{
    pthread_mutex_lock(&c->lock);
    bool pending = c->power_seen || c->power_saved.n;
    pthread_mutex_unlock(&c->lock);
    return pending;
}

static gw_verdict restore(gw_sctx *c)
{
    gw_kvlist saved = { 0 };
    pthread_mutex_lock(&c->lock);
    gw_kvlist_copy(&saved, c->power_saved.v, c->power_saved.n);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = saved.n; i-- > 0;) {
        const char *addr = saved.v[i].key, *control = saved.v[i].value;
        _cleanup_free_ char *path = gw_dev_path(addr, "power/control");
        if (gw_host_write(c, addr, path, control, strlen(control)) < 0) {
            gw_note(c, "%s: power/control not set back to '%s'", addr, control);
            continue;
        }
        gw_power_note(c, addr, "now");
    }
    if (!saved.n)
        gw_power_note(c, c->address, "at the end");
    gw_kvlist_clear(&saved);
    return GW_VERDICT_PASS;
}

/* Not one of the pipeline's steps: the pipeline runs it after the last one. */
const gw_step_def gw_step_power_restore = { (gw_step_id)-1, "power", restore };

char *gw_power_abandoned(gw_sctx *c)
{
    gw_strbuf b = { 0 };
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->power_saved.n; i++)
        gw_strbuf_append(&b, "%s%s (was '%s')", i ? ", " : "", c->power_saved.v[i].key, c->power_saved.v[i].value);
    pthread_mutex_unlock(&c->lock);
    if (!b.len)
        return NULL;
    char *text = gw_strdup_printf("power/control of %s left 'on': the run was abandoned after a timeout and a "
                                  "step may still be writing, so nothing more is written", gw_strbuf_str(&b));
    gw_strbuf_clear(&b);
    return text;
}
