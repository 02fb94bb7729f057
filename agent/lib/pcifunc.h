/* SPDX-License-Identifier: Apache-2.0 */
/* One PCI function as read during a scan: identity from sysfs (libpci,
 * kernel's view), header and capabilities from config space (libpci's
 * capability walker over the bytes read once), and the driver / iommu_group /
 * parent links. Problems land in `errors` (without the address prefix);
 * nothing here fails the scan. */
#ifndef GW_PCIFUNC_H
#define GW_PCIFUNC_H

#include <gpuwarden/host.h>

#include "pciaccess.h"
#include "strv.h"
#include "util.h"

#define GW_CONFIG_MAX 4096

typedef struct gw_func {
    char address[GW_ADDR_LEN];
    unsigned domain, bus, dev, fn;
    struct pci_dev *pdev;           /* valid while the scan's gw_pci is open */
    char *rel;                      /* sys/bus/pci/devices/<address>, below the host root */
    char *dir;                      /* the same joined to the root, for messages and libpci */

    bool ids_known, class_known;
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_device_id;
    uint16_t class_code;            /* base << 8 | sub */
    uint8_t revision;

    uint8_t *config;                /* bytes of `config` as read */
    size_t config_len;
    bool config_usable;             /* a full header, not all-ones */
    bool all_ones;
    int hdrtype;                    /* header type & 0x7f; -1 unknown */

    bool pcie;                      /* PCIe capability found */
    int port_type;                  /* gw_port_type */
    uint32_t devcap, lnkcap;
    uint32_t lnkcap2;               /* 0 for a version-1 PCIe capability */
    uint16_t lnksta;
    bool ext_known;                 /* extended config space was readable */
    gw_acs acs;
    bool ats_present, ats_enabled;
    uint16_t ats_ctrl;              /* ATS Control register when present */
    bool aer_present;
    bool dsn_present;
    uint64_t dsn;

    char *driver;                   /* link basenames; NULL when absent or dangling */
    char *iommu_group;
    bool iommu_group_dangling;

    gw_strv errors;
} gw_func;

/* Fill `f` (address and pdev set by the caller) from the host root `r`:
 * nothing outside it is read (pcifunc.c says how libpci is kept inside). */
void gw_func_read(const gw_root *r, gw_func *f);
void gw_func_clear(gw_func *f);

bool gw_func_is_gpu(const gw_func *f);
bool gw_func_is_bridge(const gw_func *f);

#endif
