/* SPDX-License-Identifier: Apache-2.0 */
/* gw_inventory_new_from_host(): the inventory input from a discovery scan. */
#include <gpuwarden/inventory.h>

#include "util.h"

GW_EXTERN int gw_inventory_new_from_host(gw_inventory **out, const gw_host *host,
                                         gw_inventory_state_fn state_fn, void *userdata,
                                         const gw_inventory_options *opts)
{
    if (!out || !host || !state_fn)
        return gw_error_set(-EINVAL, "inventory: no host or state function");
    size_t n = gw_host_gpu_count(host);
    _cleanup_free_ gw_inventory_gpu *gpus = gw_xcalloc(n, sizeof *gpus);
    for (size_t i = 0; i < n; i++) {
        const gw_gpu *g = gw_host_gpu(host, i);
        gw_state state = GW_STATE_DISCOVERED;
        bool attached = false;
        int r = state_fn(g->address, &state, &attached, userdata);
        if (r < 0)
            return gw_error_set(r, "inventory: no state for %s", g->address);
        /* Ids beyond 4 bits come with a host error already; they cannot be
         * given to QEMU, so they are not published either. */
        int clique = g->clique >= 0 && g->clique < GW_MAX_CLIQUES ? g->clique : -1;
        gpus[i] = (gw_inventory_gpu){ g->address, g->vendor_id, g->device_id, g->numa_node < 0 ? -1 : g->numa_node,
                                      clique, state, attached, g->class_code, g->device_name };
    }
    return gw_inventory_new(out, gpus, n, opts);
}
