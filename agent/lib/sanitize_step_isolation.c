/* SPDX-License-Identifier: Apache-2.0 */
/* Step isolation: the isolation verdict (isolation.c) on a live re-read of
 * the GPU's IOMMU group, upstream path and ATS through the host backend
 * (isolation_read.c): the same judgement `gpuwarden discover` makes on its
 * scan, so the two never disagree about one host state. It runs after bind,
 * so the GPU's own functions are on vfio-pci by now unless something
 * rebound them. Policy decides whether a problem fails or only warns. */
#include "isolation.h"
#include "sanitize_internal.h"

static gw_verdict run(gw_sctx *c)
{
    gw_iso_view view;
    gw_iso_verdict d;
    gw_iso_view_read(c->ops, c->address, &view);
    gw_iso_judge(&view, &d);
    gw_verdict v = GW_VERDICT_PASS;
    if (d.viable)
        gw_note(c, "%s", d.evidence);
    else if (c->policy->pol.isolation == GW_ISOLATION_WARN)
        gw_note(c, "WARNING (isolation policy warn): %s", d.evidence);
    else
        v = gw_fail(c, "%s", d.evidence);
    gw_iso_verdict_clear(&d);
    gw_iso_view_clear(&view);
    return v;
}

const gw_step_def gw_step_isolation = { GW_STEP_ISOLATION, "isolation", run };
