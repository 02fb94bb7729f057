/* SPDX-License-Identifier: Apache-2.0 */
/* The discovery scan's internal state, shared by host.c (the scan and the
 * public accessors), topology.c (paths, verdicts, cliques) and host_json.c. */
#ifndef GW_HOST_INTERNAL_H
#define GW_HOST_INTERNAL_H

#include <gpuwarden/host.h>

#include "pcifunc.h"
#include "strv.h"

/* Every PCI function of the host, sorted by address, while scanning. */
typedef struct gw_scan {
    const char *root;
    gw_root host;               /* the root's descriptor: every read resolves inside it (util.h) */
    char *real_root;            /* realpath of the root, for paths shown in topology messages */
    char *sysfs_pci;            /* <root>/sys/bus/pci */
    char *iommu_groups;         /* <root>/sys/kernel/iommu_groups */
    gw_func *funcs;
    size_t n_funcs;
    int *parent;                /* index of each function's parent bridge; -1 none */
    char **parent_problem;      /* why the parent is unknown; NULL when fine */
    gw_strv errors;             /* host errors */
} gw_scan;

/* Index of `address` in scan->funcs, or -1. */
long gw_scan_find(const gw_scan *s, const char *address);

typedef struct gw_clique {
    gw_strv members;            /* GPU addresses, ascending */
} gw_clique;

struct gw_host {
    char *root;
    gw_gpu *gpus;               /* sorted by address; strings owned, freed by gw_host_free */
    size_t n_gpus;
    gw_clique *cliques;
    size_t n_cliques;
    gw_strv errors;
};

#endif
