/* SPDX-License-Identifier: Apache-2.0 */
/* Step reset: FLR through the kernel's sysfs `reset` when `reset_method`
 * offers it, a secondary bus reset through VFIO hot reset when it does not
 * (sanitize_bus_reset.c), or what the GPU's model asks for (flr, bus, or
 * both). Why escalate at all: without FLR the kernel's `reset` tries `pm`
 * (D3hot -> D0) first, and on a device that does not reset on that
 * transition (QEMU 7.2, measured in the lab) it returns success and resets
 * nothing. We do not rewrite reset_method, which is host-wide configuration.
 * Never while a VM uses the device: right before the reset the attachment
 * source and the VFIO holders are checked again, and then the group node is
 * held open across it, so that no QEMU can open the group between that check
 * and the reset (the kernel allows one open at a time); the bus reset opens
 * the device through that same held node. */
#include <string.h>

#include "sanitize_internal.h"

/* What this run does: the kernel's reset, a bus reset, or both. */
typedef struct reset_plan {
    bool flr;           /* the kernel's reset: FLR, or its bus method */
    bool bus;           /* a bus reset through VFIO */
    bool fallback;      /* no bus reset possible: the kernel's reset instead */
    char first[32];     /* the method the kernel's reset tries first; "" = unknown */
} reset_plan;

static gw_verdict no_method(gw_sctx *c, const char *what)
{
    if (c->policy->pol.allow_no_reset)
        return gw_skip(c, "%s; policy allow_no_reset: not reset", what);
    return gw_fail(c, "%s; policy requires a reset", what);
}

static bool offers(const char *methods, const char *method)
{
    _cleanup_free_ char *copy = gw_xstrdup(methods);
    char *save = NULL;
    for (char *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
        if (!strcmp(w, method))
            return true;
    return false;
}

/* The model's choice against what the kernel offers. `methods` is NULL when
 * reset_method could not be read (then FLR is assumed possible: the kernel
 * picks). */
static gw_verdict plan_reset(gw_sctx *c, const char *methods, reset_plan *p)
{
    const gw_model_policy *m = c->id_known ? gw_policy_model(&c->policy->pol, c->id_before & 0xffff,
                                                             c->id_before >> 16)
                                           : NULL;
    gw_reset_choice choice = m ? m->reset : GW_RESET_AUTO;
    bool flr = !methods || offers(methods, "flr");
    *p = (reset_plan){ 0 };
    if (methods)
        sscanf(methods, "%31s", p->first);
    if (choice == GW_RESET_AUTO) {
        /* The kernel's own reset when it is an FLR or already a bus reset
         * (it offers `bus` first only for a device alone on its bus); else,
         * without FLR, a bus reset through VFIO. */
        p->flr = flr || !strcmp(p->first, "bus");
        p->bus = p->fallback = !p->flr;
        if (p->bus)
            gw_note(c, "no FLR: a secondary bus reset instead (the kernel's pm reset may leave the device as it "
                       "was)");
        return GW_VERDICT_PASS;
    }
    gw_note(c, "model %s: reset %s", m->id, gw_reset_choice_name(choice));
    p->flr = choice == GW_RESET_FLR || choice == GW_RESET_FLR_BUS;
    p->bus = choice == GW_RESET_BUS || choice == GW_RESET_FLR_BUS;
    if (p->flr && !flr)
        return gw_fail(c, "model %s asks for flr but reset_method '%s' offers none: not reset", m->id, methods);
    return GW_VERDICT_PASS;
}

static gw_verdict do_reset(gw_sctx *c, const gw_addrlist *fns, const gw_group_holds *holds, const char *reset,
                           const reset_plan *p)
{
    if (p->flr) {
        if (gw_host_write(c, c->address, reset, "1", 1) < 0)
            return gw_fail(c, "reset failed");
        if (!strcmp(p->first, "flr"))
            gw_note(c, "reset by FLR (the kernel's reset)");
        else if (!strcmp(p->first, "bus"))
            gw_note(c, "reset by a secondary bus reset (the kernel's reset, method bus)");
        else
            gw_note(c, "reset by the kernel's reset (its first method: %s)", p->first[0] ? p->first : "unknown");
    }
    if (p->bus && gw_bus_reset(c, fns, holds, p->fallback ? reset : NULL) != GW_VERDICT_PASS)
        return GW_VERDICT_FAIL;
    return GW_VERDICT_PASS;
}

/* Check again that nothing uses the device, hold its group nodes, reset. */
static gw_verdict reset_unused(gw_sctx *c, const gw_addrlist *fns, const char *reset, const reset_plan *p)
{
    if (gw_check_not_in_use(c, fns) != GW_VERDICT_PASS)
        return gw_fail(c, "not reset");
    gw_group_holds holds;
    gw_verdict v = gw_hold_groups(c, fns, "the reset", &holds);
    if (v != GW_VERDICT_PASS)
        v = gw_fail(c, "not reset");
    else if ((v = do_reset(c, fns, &holds, reset, p)) == GW_VERDICT_PASS)
        gw_power_note(c, c->address, "after the reset");
    /* Only after the reset returned: a reset that blocks keeps the group. */
    gw_release_groups(c, &holds);
    return v;
}

/* Which method the kernel's own reset would use. */
static void note_methods(gw_sctx *c, const char *methods)
{
    if (!methods) {
        gw_note(c, "reset_method unreadable (%s): kernel picks the method", gw_error_message());
        return;
    }
    char first[32] = "";
    sscanf(methods, "%31s", first);
    if (!strcmp(first, "flr"))
        gw_note(c, "reset_method '%s': kernel tries flr first", methods);
    else if (offers(methods, "flr"))
        gw_note(c, "reset_method '%s': kernel tries %s before flr", methods, first);
    else
        gw_note(c, "reset_method '%s': no FLR offered, kernel uses %s", methods, first);
}

static gw_verdict run(gw_sctx *c)
{
    const char *a = c->address;
    _cleanup_free_ char *reset = gw_dev_path(a, "reset");
    _cleanup_free_ char *methods = NULL;
    int rm = gw_dev_read_text(c->ops, a, "reset_method", &methods);
    bool has_reset = gw_hostops_exists(c->ops, reset) == 0;
    if (rm == 0 && !*methods)
        return no_method(c, "reset_method is empty (reset disabled)");
    if (!has_reset)
        return no_method(c, rm == 0 ? "reset_method lists methods but there is no reset attribute"
                                    : "no reset method offered (no reset attribute)");
    note_methods(c, rm == 0 ? methods : NULL);

    reset_plan plan;
    if (plan_reset(c, rm == 0 ? methods : NULL, &plan) != GW_VERDICT_PASS)
        return GW_VERDICT_FAIL;

    _cleanup_free_ char *why = NULL;
    if (gw_dev_managed(c->ops, &c->policy->pol, a, &why) <= 0)
        return gw_fail(c, "%s: not reset", why ? why : gw_error_message());

    gw_addrlist fns = { 0 }, bridges = { 0 };
    _cleanup_free_ char *group = NULL;
    gw_verdict v;
    if (gw_dev_targets(c->ops, a, &fns, &bridges, &group) < 0)
        v = gw_fail(c, "cannot list the device's functions: %s: not reset", gw_error_message());
    else
        v = reset_unused(c, &fns, reset, &plan);
    gw_addrlist_clear(&fns);
    gw_addrlist_clear(&bridges);
    return v;
}

const gw_step_def gw_step_reset = { GW_STEP_RESET, "reset", run };
