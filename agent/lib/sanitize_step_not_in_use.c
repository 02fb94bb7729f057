/* Step not_in_use: no VM references the GPU, the other functions of its slot
 * or the rest of its IOMMU group, as the attachment source (libvirt) says. */
#include <string.h>

#include "sanitize_internal.h"

gw_verdict gw_check_not_in_use(gw_sctx *c, const gw_addrlist *targets)
{
    if (!c->has_attach)
        return gw_fail(c, "no attachment source: cannot tell whether a VM uses the device");
    for (size_t i = 0; i < targets->n; i++) {
        char *user = NULL;
        int r = c->attach.in_use(c->attach.data, targets->v[i], &user);
        if (r < 0) {
            free(user);
            return gw_fail(c, "%s: cannot tell whether a VM uses it (%s); counted as in use", targets->v[i],
                           strerror(-r));
        }
        if (user) {
            gw_note(c, "%s is in use by %s", targets->v[i], user);
            free(user);
            return GW_VERDICT_FAIL;
        }
    }
    return GW_VERDICT_PASS;
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
