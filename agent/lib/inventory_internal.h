/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by inventory.c, inventory_json.c, traits.c and
 * clique_override.c. */
#ifndef GW_INVENTORY_INTERNAL_H
#define GW_INVENTORY_INTERNAL_H

#include <gpuwarden/inventory.h>

#define GW_TRAIT_OWNER_CYBORG "OWNER_CYBORG"
#define GW_TRAIT_CLIQUE_PREFIX "CUSTOM_GPU_CLIQUE_"
#define GW_TRAIT_NUMA_PREFIX "CUSTOM_NUMA_NODE_"
#define GW_RC_PGPU "PGPU"
#define GW_AH_TYPE_PCI "PCI"
#define GW_DEVICE_TYPE_GPU "GPU"
/* Placement's resource provider names are at most 200 characters. */
#define GW_RP_NAME_MAX 200

struct gw_inventory {
    char *host;
    gw_inventory_model model;
    uint64_t generation;
    char *clique_error;
    gw_deployable *deps;        /* every string and array owned here */
    size_t n_deps;
};

/* Generated traits: OWNER_CYBORG or a valid custom trait. */
bool gw_trait_valid_generated(const char *name);
char *gw_trait_clique(int clique);
/* "NVIDIA", "AMD", "INTEL", "MATROX", or the id in upper-case hex (in buf). */
const char *gw_vendor_token(uint16_t vendor_id, char buf[static 5]);
char *gw_trait_numa(int node);

/* Cyborg's pci_str_to_json(): keys sorted, string values, json.dumps
 * separators. `address` must be a canonical BDF. Caller frees. */
char *gw_pci_json(const char *address);

/* Free one deployable's owned storage (not the struct itself). */
void gw_deployable_clear(gw_deployable *d);

/* Sort deployables by lowest address and compute the generation. */
int gw_inventory_finish(gw_inventory *inv);

#endif
