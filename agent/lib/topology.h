/* SPDX-License-Identifier: Apache-2.0 */
/* The PCI tree around each GPU: the upstream path with port types and ACS,
 * the IOMMU group's members, and P2P cliques. The isolation verdict on
 * these facts is isolation.c's (gw_iso_judge). */
#ifndef GW_TOPOLOGY_H
#define GW_TOPOLOGY_H

#include "host_internal.h"
#include "isolation.h"

/* Resolve every function's parent bridge from the nested sysfs layout (as
 * libpci's PCI_FILL_PARENT does) into scan->parent / scan->parent_problem. */
void gw_topo_link_parents(gw_scan *s);

/* Bridges from funcs[i]'s parent up to the root port. Problems on the way
 * (an unresolvable parent, a broken bridge) are appended to `errors`.
 * Returns false when the path is incomplete. */
bool gw_topo_upstream(const gw_scan *s, size_t i, gw_bridge **out, size_t *n, gw_strv *errors);

/* Members of funcs[gpu]'s IOMMU group, ascending, for gw_gpu, and the group
 * part of its isolation view (state, number, each member's header type,
 * ids and driver). The verdict is isolation.c's. */
void gw_topo_group(const gw_scan *s, size_t gpu, gw_group_member **members, size_t *n,
                   gw_iso_view *view, gw_strv *errors);

/* Number the P2P cliques of host->gpus (upstream paths filled) and set each
 * GPU's clique; more than 16 is a host error. */
void gw_topo_cliques(gw_host *host);

#endif
