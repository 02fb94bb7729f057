/* SPDX-License-Identifier: Apache-2.0 */
/* Step bind: every function of the slot and every other member of the IOMMU
 * group on vfio-pci, the way libvirt does it: driver_override, unbind from
 * the current driver, drivers_probe. Bridges are never rebound, and nothing
 * is written unless every function that needs a write is managed. Then the
 * functions are kept in D0 for the rest of the clean-up (sanitize_power.c),
 * and the group node is held open until the run ends (gw_hold_for_run): a
 * hot-plug (`virsh attach-device`, which no libvirt hook gates) opens
 * /dev/vfio/<group> in QEMU, and while the clean-up has it open the kernel
 * refuses that open. Before this step there is no group node to hold (the
 * device was not on vfio-pci); not_in_use looked for holders then. */
#include <string.h>

#include "sanitize_internal.h"

#define VFIO "vfio-pci"

typedef struct fn_plan {
    const char *addr;
    char *driver;       /* NULL when unbound */
    char *override;     /* NULL when unset ("(null)") */
    bool write_override, rebind;
} fn_plan;

static int read_override(gw_sctx *c, const char *addr, char **out)
{
    _cleanup_free_ char *s = NULL;
    int r = gw_dev_read_text(c->ops, addr, "driver_override", &s);
    if (r < 0)
        return r;
    *out = (!*s || !strcmp(s, "(null)")) ? NULL : GW_TAKE(s);
    return 0;
}

/* drivers_probe answers 0 even when vfio-pci's probe fails (the kernel only
 * logs "probe of ... failed with error -22", e.g. for a device without an
 * IOMMU group). A write to drivers/vfio-pci/bind returns the probe's own
 * error, so ask once more that way to put the kernel's answer in the
 * evidence. */
static gw_verdict bind_refused(gw_sctx *c, const char *addr)
{
    if (gw_hostops_exists(c->ops, "sys/bus/pci/drivers/" VFIO) < 0)
        return gw_fail(c, "%s: after drivers_probe bound to no driver: " VFIO " is not loaded", addr);
    if (gw_host_write(c, addr, "sys/bus/pci/drivers/" VFIO "/bind", addr, strlen(addr)) < 0) {
        _cleanup_free_ char *link = gw_dev_path(addr, "iommu_group");
        _cleanup_free_ char *group = NULL;
        if (gw_hostops_readlink(c->ops, link, &group) < 0)
            return gw_fail(c, "%s: the kernel refused to bind " VFIO ": the device has no IOMMU group "
                              "(IOMMU off or not covering it), and " VFIO " refuses such devices", addr);
        return gw_fail(c, "%s: the kernel refused to bind " VFIO, addr);
    }
    _cleanup_free_ char *now = NULL;
    if (gw_dev_driver(c->ops, addr, &now) == 0 && now && !strcmp(now, VFIO)) {
        gw_note(c, "%s: bound by drivers/" VFIO "/bind after drivers_probe left it unbound", addr);
        return GW_VERDICT_PASS;
    }
    return gw_fail(c, "%s: after drivers_probe and bind, bound to %s, not " VFIO, addr, now ? now : "no driver");
}

static gw_verdict bind_one(gw_sctx *c, fn_plan *p)
{
    int r;
    if (p->write_override) {
        _cleanup_free_ char *path = gw_dev_path(p->addr, "driver_override");
        if ((r = gw_host_write(c, p->addr, path, VFIO, strlen(VFIO))) < 0)
            return GW_VERDICT_FAIL;
    }
    if (!p->rebind)
        return GW_VERDICT_PASS;
    if (p->driver) {
        _cleanup_free_ char *path = gw_strdup_printf("sys/bus/pci/drivers/%s/unbind", p->driver);
        if ((r = gw_host_write(c, p->addr, path, p->addr, strlen(p->addr))) < 0)
            return GW_VERDICT_FAIL;
    }
    if ((r = gw_host_write(c, p->addr, "sys/bus/pci/drivers_probe", p->addr, strlen(p->addr))) < 0)
        return GW_VERDICT_FAIL;
    _cleanup_free_ char *now = NULL;
    if ((r = gw_dev_driver(c->ops, p->addr, &now)) < 0)
        return gw_fail(c, "%s: driver unreadable after drivers_probe: %s", p->addr, gw_error_message());
    if (!now)
        return bind_refused(c, p->addr);
    if (strcmp(now, VFIO))
        return gw_fail(c, "%s: after drivers_probe bound to %s, not " VFIO, p->addr, now);
    return GW_VERDICT_PASS;
}

static gw_verdict run(gw_sctx *c)
{
    gw_addrlist fns = { 0 }, bridges = { 0 };
    _cleanup_free_ char *group = NULL;
    fn_plan *plan = NULL;
    gw_verdict v = GW_VERDICT_PASS;
    int r = gw_dev_targets(c->ops, c->address, &fns, &bridges, &group);
    if (r < 0) {
        v = gw_fail(c, "cannot list the device's functions: %s", gw_error_message());
        goto out;
    }
    for (size_t i = 0; i < bridges.n; i++)
        gw_note(c, "%s: bridge, never rebound", bridges.v[i]);

    /* Plan first, write after: a function we may not touch means no write at all. */
    plan = gw_xcalloc(fns.n, sizeof *plan);
    gw_strbuf refused = { 0 };
    for (size_t i = 0; i < fns.n; i++) {
        fn_plan *p = &plan[i];
        p->addr = fns.v[i];
        uint32_t id;
        if (gw_dev_config32(c->ops, p->addr, 0, &id) < 0 || id == 0xffffffff) {
            gw_strbuf_clear(&refused);
            v = gw_fail(c, "%s: config space %s: device off the bus; wrote nothing", p->addr,
                        id == 0xffffffff ? "reads all-ones" : "unreadable");
            goto out;
        }
        if ((r = gw_dev_driver(c->ops, p->addr, &p->driver)) < 0 ||
            (r = read_override(c, p->addr, &p->override)) < 0) {
            gw_strbuf_clear(&refused);
            v = gw_fail(c, "%s: %s", p->addr, gw_error_message());
            goto out;
        }
        bool on_vfio = p->driver && !strcmp(p->driver, VFIO);
        p->rebind = !on_vfio;
        p->write_override = !p->override || strcmp(p->override, VFIO);
        if (!p->rebind && !p->write_override)
            continue;
        _cleanup_free_ char *why = NULL;
        int m = gw_dev_managed(c->ops, &c->policy->pol, p->addr, &why);
        if (m < 0) {
            gw_strbuf_append(&refused, "%s%s", refused.len ? "; " : "", why ? why : gw_error_message());
        } else if (m == 0 && on_vfio) {
            /* Already isolated; the override only guards future probes, and
             * it is not ours to set. */
            p->write_override = false;
            gw_note(c, "%s: on " VFIO ", not managed: driver_override left as '%s'", p->addr,
                    p->override ? p->override : "(null)");
        } else if (m == 0) {
            gw_strbuf_append(&refused, "%s%s bound to %s and not managed (%s)", refused.len ? "; " : "", p->addr,
                             p->driver ? p->driver : "no driver", why);
        }
    }
    if (refused.len) {
        v = gw_fail(c, "%s: wrote nothing", gw_strbuf_str(&refused));
        gw_strbuf_clear(&refused);
        goto out;
    }
    for (size_t i = 0; i < fns.n; i++) {
        if (!plan[i].rebind && !plan[i].write_override) {
            gw_note(c, "%s: already on " VFIO, plan[i].addr);
            continue;
        }
        if ((v = bind_one(c, &plan[i])) != GW_VERDICT_PASS)
            goto out;
    }
    gw_note(c, "%zu function%s on " VFIO "%s%s", fns.n, fns.n == 1 ? "" : "s", group ? ", IOMMU group " : "",
            group ? group : " (no IOMMU group)");
    /* Now, not before: binding to vfio-pci is what suspends them. */
    gw_power_hold_on(c, &fns);
    v = gw_hold_for_run(c, &fns);      /* says why when it cannot */
out:
    for (size_t i = 0; plan && i < fns.n; i++) {
        free(plan[i].driver);
        free(plan[i].override);
    }
    free(plan);
    gw_addrlist_clear(&fns);
    gw_addrlist_clear(&bridges);
    return v;
}

const gw_step_def gw_step_bind = { GW_STEP_BIND, "bind", run };
