/* SPDX-License-Identifier: Apache-2.0 */
/* Placement trait names: validation and the names gpuwarden generates. */
#include <gpuwarden/inventory.h>
#include <stdio.h>
#include <string.h>

#include "inventory_internal.h"
#include "util.h"

/* Placement's own rule (placement/schemas/trait.py + common.py): custom
 * traits match ^CUSTOM_[A-Z0-9_]+$ and are 1-255 characters long. */
GW_EXTERN int gw_trait_check(const char *name)
{
    if (!name || !*name)
        return gw_error_set(-EINVAL, "trait name is empty");
    size_t len = strlen(name);
    if (len > GW_TRAIT_MAX_LEN)
        return gw_error_set(-EINVAL, "trait '%.40s...': %zu characters, Placement allows at most %d",
                            name, len, GW_TRAIT_MAX_LEN);
    if (strncmp(name, "CUSTOM_", 7) != 0)
        return gw_error_set(-EINVAL, "trait '%s': must start with CUSTOM_ "
                            "(Cyborg device profiles accept only custom traits)", name);
    if (len == 7)
        return gw_error_set(-EINVAL, "trait '%s': nothing after CUSTOM_", name);
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return gw_error_set(-EINVAL, "trait '%s': character '%c' at %zu; only A-Z, 0-9 and _ are allowed",
                                name, *p, (size_t)(p - name));
    }
    return 0;
}

bool gw_trait_valid_generated(const char *name)
{
    /* OWNER_CYBORG is the one standard trait we publish; Placement knows it
     * from os-traits. Everything else we make is custom. */
    if (!strcmp(name, GW_TRAIT_OWNER_CYBORG))
        return true;
    return gw_trait_check(name) == 0;
}

/* Vendor tokens: NVIDIA keeps Cyborg's in-tree CUSTOM_NVIDIA_<PID> so existing
 * device profiles match; MATROX is the only other entry of Cyborg's
 * VENDOR_MAPS; AMD and INTEL are the other GPU vendors. Anything else is
 * named by its id, which is unambiguous and needs no table upkeep. */
static const struct {
    uint16_t id;
    const char *token;
} vendor_tokens[] = {
    { 0x10de, "NVIDIA" },
    { 0x1002, "AMD" },
    { 0x8086, "INTEL" },
    { 0x102b, "MATROX" },
};

const char *gw_vendor_token(uint16_t vendor_id, char buf[static 5])
{
    for (size_t i = 0; i < sizeof vendor_tokens / sizeof vendor_tokens[0]; i++)
        if (vendor_tokens[i].id == vendor_id)
            return vendor_tokens[i].token;
    snprintf(buf, 5, "%04X", vendor_id);
    return buf;
}

GW_EXTERN char *gw_trait_product(uint16_t vendor_id, uint16_t device_id, char *buf, size_t len)
{
    char hex[5];
    snprintf(buf, len, "CUSTOM_%s_%04X", gw_vendor_token(vendor_id, hex), device_id);
    return buf;
}

char *gw_trait_clique(int clique)
{
    return gw_strdup_printf("%s%d", GW_TRAIT_CLIQUE_PREFIX, clique);
}

char *gw_trait_numa(int node)
{
    return gw_strdup_printf("%s%d", GW_TRAIT_NUMA_PREFIX, node);
}
