/* The PCI tree above each GPU and the verdicts that depend on it: upstream
 * path with port types and ACS, the ACS path verdict (the kernel's
 * pci_acs_flags_enabled over every root and downstream port), IOMMU group
 * viability, and P2P cliques. */
#ifndef GW_TOPOLOGY_H
#define GW_TOPOLOGY_H

#include "host_internal.h"

/* Resolve every function's parent bridge from the nested sysfs layout (as
 * libpci's PCI_FILL_PARENT does) into scan->parent / scan->parent_problem. */
void gw_topo_link_parents(gw_scan *s);

/* Bridges from funcs[i]'s parent up to the root port. Problems on the way
 * (an unresolvable parent, a broken bridge) are appended to `errors`.
 * Returns false when the path is incomplete. */
bool gw_topo_upstream(const gw_scan *s, size_t i, gw_bridge **out, size_t *n, gw_strv *errors);

/* acs_path_ok with its evidence (newly allocated). `complete` is
 * gw_topo_upstream()'s result. */
bool gw_topo_acs_verdict(const gw_bridge *path, size_t n, bool complete, char **evidence);

/* Members of funcs[gpu]'s IOMMU group and group_viable with its evidence. */
bool gw_topo_group(const gw_scan *s, size_t gpu, gw_group_member **members, size_t *n,
                   char **evidence, gw_strv *errors);

/* Number the P2P cliques of host->gpus (upstream paths filled) and set each
 * GPU's clique; more than 16 is a host error. */
void gw_topo_cliques(gw_host *host);

#endif
