/* Step reset: the kernel's function reset through sysfs `reset`, after
 * reading which methods `reset_method` offers. The kernel tries them in that
 * order (flr before pm and bus unless the operator reordered them); we do not
 * rewrite reset_method, which is host-wide configuration. Never while a VM
 * uses the device: right before the write the attachment source and the
 * VFIO holders are checked again, and then the group node is held open
 * across the write, so that no QEMU can open the group between that check
 * and the reset (the kernel allows one open at a time). */
#include <string.h>

#include "sanitize_internal.h"

static gw_verdict no_method(gw_sctx *c, const char *what)
{
    if (c->policy->pol.allow_no_reset)
        return gw_skip(c, "%s; policy allow_no_reset: not reset", what);
    return gw_fail(c, "%s; policy requires a reset", what);
}

/* Check again that nothing uses the device, hold its group nodes, write. */
static gw_verdict reset_unused(gw_sctx *c, const gw_addrlist *fns, const char *reset)
{
    if (gw_check_not_in_use(c, fns) != GW_VERDICT_PASS)
        return gw_fail(c, "not reset");
    gw_group_holds holds;
    gw_verdict v = gw_hold_groups(c, fns, &holds);
    if (v != GW_VERDICT_PASS)
        v = gw_fail(c, "not reset");
    else if (gw_host_write(c, c->address, reset, "1", 1) < 0)
        v = gw_fail(c, "reset failed");
    else
        gw_power_note(c, c->address, "after the reset");
    /* Only after the write returned: a reset that blocks keeps the group. */
    gw_release_groups(c, &holds);
    return v;
}

static gw_verdict run(gw_sctx *c)
{
    const char *a = c->address;
    /* Before anything else: what health compares with after the reset. */
    uint32_t id;
    if (gw_dev_config32(c->ops, a, 0, &id) == 0 && id != 0xffffffff) {
        c->id_before = id;
        c->id_known = true;
    }
    if (gw_dev_bar_sizes(c->ops, a, c->bars) == 0)
        c->bars_known = true;
    else
        gw_note(c, "BAR sizes before reset unknown: %s", gw_error_message());

    _cleanup_free_ char *reset = gw_dev_path(a, "reset");
    _cleanup_free_ char *methods = NULL;
    int rm = gw_dev_read_text(c->ops, a, "reset_method", &methods);
    bool has_reset = gw_hostops_exists(c->ops, reset) == 0;
    if (rm == 0 && !*methods)
        return no_method(c, "reset_method is empty (reset disabled)");
    if (!has_reset)
        return no_method(c, rm == 0 ? "reset_method lists methods but there is no reset attribute"
                                    : "no reset method offered (no reset attribute)");
    if (rm == 0) {
        char first[32] = "";
        sscanf(methods, "%31s", first);
        if (!strcmp(first, "flr"))
            gw_note(c, "reset_method '%s': kernel tries flr first", methods);
        else if (strstr(methods, "flr"))
            gw_note(c, "reset_method '%s': kernel tries %s before flr", methods, first);
        else
            gw_note(c, "reset_method '%s': no FLR offered, kernel uses %s", methods, first);
    } else {
        gw_note(c, "reset_method unreadable (%s): kernel picks the method", gw_error_message());
    }

    _cleanup_free_ char *why = NULL;
    if (gw_dev_managed(c->ops, &c->policy->pol, a, &why) <= 0)
        return gw_fail(c, "%s: not reset", why ? why : gw_error_message());

    gw_addrlist fns = { 0 }, bridges = { 0 };
    _cleanup_free_ char *group = NULL;
    gw_verdict v;
    if (gw_dev_targets(c->ops, a, &fns, &bridges, &group) < 0)
        v = gw_fail(c, "cannot list the device's functions: %s: not reset", gw_error_message());
    else
        v = reset_unused(c, &fns, reset);
    gw_addrlist_clear(&fns);
    gw_addrlist_clear(&bridges);
    return v;
}

const gw_step_def gw_step_reset = { GW_STEP_RESET, "reset", run };
