/* SPDX-License-Identifier: Apache-2.0 */
/* The one isolation verdict: can a VM be given this GPU without it reaching
 * anything else? Discovery (host.c, from the libpci scan) and the clean-up's
 * isolation step (from a live re-read through the host backend) each fill a
 * gw_iso_view, and gw_iso_judge() alone decides, so both say the same thing
 * for the same host state (docs/sanitize.md, "One isolation verdict"). */
#ifndef GW_ISOLATION_H
#define GW_ISOLATION_H

#include <gpuwarden/host.h>
#include <gpuwarden/hostops.h>

/* ACS Capability/Control bits and ATS Control Enable (PCIe base spec;
 * offsets relative to their extended capability: ACS cap +4, ctrl +6; ATS
 * ctrl +6). */
#define GW_ACS_SV 0x0001
#define GW_ACS_TB 0x0002
#define GW_ACS_RR 0x0004
#define GW_ACS_CR 0x0008
#define GW_ACS_UF 0x0010
#define GW_ACS_EC 0x0020
#define GW_ACS_DT 0x0040
#define GW_ATS_ENABLE 0x8000

/* The kernel's pci_acs_flags_enabled() for one flag: set in ctrl, or not
 * implemented in cap (hard-wired). */
bool gw_acs_flag_enabled(uint16_t cap, uint16_t ctrl, uint16_t flag);

typedef enum gw_iso_group_state {
    GW_ISO_GROUP_OK = 0,        /* the group and its members were listed */
    GW_ISO_GROUP_NONE,          /* no iommu_group link: the IOMMU is off or does not cover the GPU */
    GW_ISO_GROUP_DANGLING,      /* the link leads nowhere */
    GW_ISO_GROUP_UNREADABLE,    /* the group's devices/ could not be listed */
} gw_iso_group_state;

/* One member of the GPU's IOMMU group (the GPU included). */
typedef struct gw_iso_member {
    char address[GW_ADDR_LEN];
    /* Identified: a readable header (its type), or else the kernel's cached
     * class. False for a member missing from bus/pci/devices. */
    bool known;
    bool is_bridge;             /* header type 1, or class 0604/0609 without a header */
    uint16_t vendor_id, device_id, class_code;  /* class: base << 8 | sub; 0 when unknown */
    char *driver;               /* bound driver; NULL when unbound */
} gw_iso_member;

typedef enum gw_iso_ats_state {
    GW_ISO_ATS_ABSENT = 0,      /* no ATS capability (or no PCIe capability at all) */
    GW_ISO_ATS_PRESENT,         /* ats_ctrl holds the ATS Control register */
    GW_ISO_ATS_NO_CONFIG,       /* config space unreadable, truncated or all-ones */
    GW_ISO_ATS_NO_EXT,          /* a PCIe function whose extended config space cannot be read */
} gw_iso_ats_state;

/* What the verdict is made from; owned (gw_iso_view_clear). */
typedef struct gw_iso_view {
    char address[GW_ADDR_LEN];  /* the GPU */
    gw_iso_group_state group_state;
    char *group;                /* the group number; NULL without a group */
    gw_iso_member *members;     /* ascending by address */
    size_t n_members;
    /* Bridges from the GPU's parent up to the root port, nearest first:
     * port_type (GW_PORT_NONE without a readable PCIe capability) and the
     * ACS capability's registers (acs.known false: extended config space
     * unreadable). The acs.sv..uf booleans are not used. */
    gw_bridge *path;
    size_t n_path;
    bool path_complete;         /* the path was followed to a root bus */
    gw_iso_ats_state ats;
    uint16_t ats_ctrl;
} gw_iso_view;

void gw_iso_view_init(gw_iso_view *v, const char *address);
void gw_iso_view_clear(gw_iso_view *v);
/* Append a member (strings copied). */
gw_iso_member *gw_iso_view_add_member(gw_iso_view *v, const char *address);
/* Sort the members by address (both readers list them in directory order). */
void gw_iso_view_sort(gw_iso_view *v);

/* The verdict; owned (gw_iso_verdict_clear). The reasons' texts and the
 * evidence strings are what discovery reports and what the isolation step
 * writes, character for character. */
typedef struct gw_iso_verdict {
    bool viable;                /* group_ok && acs_ok && ats_ok */
    bool group_ok, acs_ok, ats_ok;
    char *group_evidence;       /* the group's members, or its reasons */
    char *acs_evidence;         /* every judged port, "; "-joined */
    char *ats_evidence;
    char *evidence;             /* viable: the three above; else the reasons */
    gw_iso_reason *reasons;     /* text and devices owned */
    size_t n_reasons;
} gw_iso_verdict;

/* The verdict on `v`. Pure: reads nothing but `v`. */
void gw_iso_judge(const gw_iso_view *v, gw_iso_verdict *out);
void gw_iso_verdict_clear(gw_iso_verdict *d);

/* Whether VFIO can take a group with a non-bridge member on `driver`: unbound,
 * vfio-pci or one of its variant drivers (*_vfio_pci), or pci-stub, the
 * drivers that leave DMA to their user (Linux's driver_managed_dma). */
bool gw_iso_driver_ok(const char *driver);

/* The view of the GPU at `address` read live through a host backend (the
 * clean-up's isolation step): the iommu_group link and the group's devices,
 * each member's header, ids and driver link, the bridges named by the
 * device's sysfs link with their PCIe and ACS capabilities, and the GPU's
 * ATS capability. What cannot be read is recorded as unknown in the view,
 * never an error. */
void gw_iso_view_read(gw_hostops *ops, const char *address, gw_iso_view *out);

#endif
