/* SPDX-License-Identifier: Apache-2.0 */
/* Step not_in_use: nothing uses the GPU, the other functions of its slot or
 * the rest of its IOMMU group. Two views, both needed: the attachment source
 * (libvirt, gpuwarden/attach.h) knows which domains reference the device,
 * including ones not running; the processes holding the VFIO group node open
 * (sanitize_holders.c) are what actually uses it, including a QEMU libvirt
 * does not know about. A source that cannot answer counts as "in use". */
#include <string.h>

#include "sanitize_internal.h"

static gw_verdict check_domains(gw_sctx *c, const gw_addrlist *targets)
{
    if (!c->attach)
        return gw_fail(c, "no attachment source: cannot tell whether a VM uses the device");
    for (size_t i = 0; i < targets->n; i++) {
        /* A source answers for a whole slot: ask once per slot. */
        bool asked = false;
        for (size_t j = 0; j < i && !asked; j++)
            asked = !strncmp(targets->v[j], targets->v[i], 10);
        if (asked)
            continue;
        char **doms = NULL;
        int r = gw_attach_query(c->attach, targets->v[i], &doms);
        if (r < 0) {
            gw_attach_list_free(doms);
            return gw_fail(c, "%s: %s cannot tell whether a VM uses it (%s); counted as in use", targets->v[i],
                           gw_attach_source_name(c->attach), gw_error_message());
        }
        if (doms && doms[0]) {
            gw_strbuf who = { 0 };
            for (size_t k = 0; doms[k]; k++)
                gw_strbuf_append(&who, "%s'%s'", k ? ", " : "", doms[k]);
            gw_note(c, "%s is in use by domain %s", targets->v[i], gw_strbuf_str(&who));
            gw_strbuf_clear(&who);
            gw_attach_list_free(doms);
            return GW_VERDICT_FAIL;
        }
        gw_attach_list_free(doms);
    }
    return GW_VERDICT_PASS;
}

gw_verdict gw_check_not_in_use(gw_sctx *c, const gw_addrlist *targets)
{
    gw_verdict v = check_domains(c, targets);
    if (v == GW_VERDICT_PASS)
        v = gw_check_holders(c, targets);
    if (v != GW_VERDICT_PASS) {
        /* Nothing is known to be wrong with the device: whoever records the
         * result must not quarantine it (gw_sanitize_result_in_use). */
        pthread_mutex_lock(&c->lock);
        c->in_use = true;
        pthread_mutex_unlock(&c->lock);
    }
    return v;
}

static gw_verdict run(gw_sctx *c)
{
    gw_addrlist fns = { 0 }, bridges = { 0 };
    _cleanup_free_ char *group = NULL;
    int r = gw_dev_targets(c->ops, c->address, &fns, &bridges, &group);
    if (r < 0) {
        gw_verdict v = gw_fail(c, "cannot list the device's functions: %s", gw_error_message());
        gw_addrlist_clear(&fns);
        gw_addrlist_clear(&bridges);
        return v;
    }
    gw_verdict v = gw_check_not_in_use(c, &fns);
    if (v == GW_VERDICT_PASS) {
        gw_strbuf list = { 0 };
        for (size_t i = 0; i < fns.n; i++)
            gw_strbuf_append(&list, "%s%s", i ? ", " : "", fns.v[i]);
        gw_note(c, "no VM references %s", gw_strbuf_str(&list));
        gw_strbuf_clear(&list);
    }
    gw_addrlist_clear(&fns);
    gw_addrlist_clear(&bridges);
    return v;
}

const gw_step_def gw_step_not_in_use = { GW_STEP_NOT_IN_USE, "not_in_use", run };
