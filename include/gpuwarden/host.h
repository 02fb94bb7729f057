/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/host.h - discovery: every GPU on a host with its PCIe topology,
 * NUMA placement, isolation verdicts and P2P clique.
 *
 * A host is read from a root directory (default "/"): the library reads
 * <root>/sys/bus/pci through libpci (method linux-sysfs, parameter
 * sysfs.path) and the sysfs attributes beside it (<root>/sys/kernel/iommu_groups,
 * numa_node, reset_method, link files, ...). A test tree shaped like sysfs is
 * read exactly as a live host is. Discovery never writes.
 *
 *     gw_host_options opts = GW_HOST_OPTIONS_INIT;
 *     opts.root = "/srv/hosts/hgx";
 *     gw_host *host;
 *     if (gw_host_scan(&host, &opts) < 0)
 *         errx(1, "%s", gw_error_message());
 *     for (size_t i = 0; i < gw_host_gpu_count(host); i++)
 *         puts(gw_host_gpu(host, i)->address);
 *     gw_host_free(host);
 *
 * A device whose sysfs entry is broken (missing files, all-ones config,
 * dangling links) is still listed, with its problems in `errors`; a scan fails
 * as a whole only when the PCI tree itself cannot be read.
 */
#ifndef GPUWARDEN_HOST_H
#define GPUWARDEN_HOST_H

#include <gpuwarden/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* PCIe port type (PCIe capability, Flags[7:4]); GW_PORT_NONE when the
 * function has no PCIe capability (conventional PCI or unreadable). */
typedef enum gw_port_type {
    GW_PORT_NONE = -1,
    GW_PORT_ENDPOINT = 0,
    GW_PORT_LEGACY_ENDPOINT = 1,
    GW_PORT_ROOT_PORT = 4,
    GW_PORT_UPSTREAM = 5,
    GW_PORT_DOWNSTREAM = 6,
    GW_PORT_PCIE_TO_PCI = 7,
    GW_PORT_PCI_TO_PCIE = 8,
    GW_PORT_RC_ENDPOINT = 9,
    GW_PORT_RC_EVENT_COLLECTOR = 10,
} gw_port_type;

/* Short name of a port type: "endpoint", "root_port", "upstream",
 * "downstream", "pcie_to_pci", ... ("none" for GW_PORT_NONE). */
GW_EXTERN const char *gw_port_type_name(int port_type);

/* ACS capability and control of one port, as read from config space. */
typedef struct gw_acs {
    bool present;       /* ACS extended capability found */
    bool known;         /* false when the extended config space was not readable */
    uint16_t cap;       /* ACS Capability register */
    uint16_t ctrl;      /* ACS Control register */
    /* SV, RR, CR, UF effectively enabled: set in ctrl, or not implemented in
     * cap (the kernel's pci_acs_flags_enabled counts those as enabled). */
    bool sv, rr, cr, uf;
} gw_acs;

/* One bridge on a GPU's path to its root port. */
typedef struct gw_bridge {
    char address[GW_ADDR_LEN];
    uint16_t vendor_id, device_id;
    int port_type;      /* gw_port_type */
    gw_acs acs;
} gw_bridge;

/* The kernel's view: sysfs current_link_speed/width and max_link_speed/width
 * (max speed follows the Link Capabilities 2 vector when the device has one,
 * as pcie_get_speed_cap() does, so it can exceed lspci's LnkCap speed); from
 * LnkSta/LnkCap/LnkCap2 in config space when the files are absent. */
typedef struct gw_link {
    bool present;           /* link attributes exist (PCIe function with a link) */
    double speed_gts;       /* current speed, GT/s; 0 when unknown */
    int width;              /* current width (lanes); 0 when unknown */
    double max_speed_gts;
    int max_width;
} gw_link;

/* A member of a GPU's IOMMU group. */
typedef struct gw_group_member {
    char address[GW_ADDR_LEN];
    char *driver;           /* bound driver, NULL when none */
    bool is_bridge;         /* header type 1 (PCI-to-PCI bridge) */
    bool same_slot;         /* same domain:bus:device as the GPU */
} gw_group_member;

/* What keeps a GPU from being isolated: the kind of one reason of its
 * isolation verdict (gw_gpu.isolation_reasons). The clean-up's isolation
 * step reaches its verdict with the same code (docs/sanitize.md). */
typedef enum gw_iso_kind {
    GW_ISO_NO_GROUP = 0,        /* no IOMMU group, a dangling group link, or its members unreadable */
    GW_ISO_FOREIGN_DEVICE = 1,  /* the group holds a device that is neither a function of the GPU's
                                 * slot nor a bridge: a VM given the GPU would get it too */
    GW_ISO_HOST_DRIVER = 2,     /* a function of the GPU's own slot (the GPU included) is bound to a
                                 * host driver: VFIO refuses the group until it is on vfio-pci */
    GW_ISO_MEMBER_UNKNOWN = 3,  /* a group member that cannot be identified */
    GW_ISO_ACS = 4,             /* a root or downstream port on the path without ACS SV RR CR UF, or
                                 * a bridge that cannot have ACS (conventional PCI, PCIe-to-PCI) */
    GW_ISO_ACS_UNKNOWN = 5,     /* a port's ACS unreadable, or the path not followed to a root bus */
    GW_ISO_ATS = 6,             /* ATS enabled on the GPU: translated requests bypass the IOMMU */
    GW_ISO_ATS_UNKNOWN = 7,     /* the GPU's ATS Control register unreadable */
} gw_iso_kind;

/* "no_group", "foreign_device", "host_driver", "member_unknown", "acs",
 * "acs_unknown", "ats", "ats_unknown"; "unknown" for anything else. */
GW_EXTERN const char *gw_iso_kind_name(int kind);

/* One reason why a GPU cannot be isolated, naming the devices it is about
 * (the conflicting group members, the port, or the GPU). */
typedef struct gw_iso_reason {
    int kind;                           /* gw_iso_kind */
    const char *text;                   /* in words, the devices named */
    const char (*devices)[GW_ADDR_LEN];
    size_t n_devices;
} gw_iso_reason;

/* Cumulative AER counters (the TOTAL_ERR_* line of aer_dev_*); -1 when the
 * attribute is absent. */
typedef struct gw_aer_counts {
    long correctable, fatal, nonfatal;
} gw_aer_counts;

typedef struct gw_gpu {
    char address[GW_ADDR_LEN];          /* "0000:3b:00.0" */
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_device_id;
    uint8_t revision;
    uint16_t class_code;                /* base class << 8 | subclass: 0x0300, 0x0302 */
    const char *vendor_name;            /* from pci.ids; NULL when unknown */
    const char *device_name;

    int numa_node;                      /* -1 = unknown */
    const char *local_cpulist;          /* "0-27,56-83"; NULL when absent */
    const char *driver;                 /* bound driver; NULL when unbound */
    const char *iommu_group;            /* group number as a string; NULL when none */
    const gw_group_member *group_members;   /* every member, the GPU included */
    size_t n_group_members;

    const char *const *reset_methods;   /* from reset_method, in priority order */
    size_t n_reset_methods;
    bool flr;                           /* PCIe DevCap bit 28 (FLReset+) */
    gw_link link;
    bool ats_present, ats_enabled;      /* ATS ext cap; Control bit 15 */
    bool aer_present;                   /* AER ext cap */
    gw_aer_counts aer;
    bool dsn_present;
    uint64_t dsn;                       /* Device Serial Number */
    bool rom_present;                   /* sysfs `rom` attribute exists */
    /* Config space reads all-ones (vendor ffff): the device fell off the bus
     * or is powered off; the ids above are the kernel's cached ones. */
    bool config_all_ones;
    uint64_t bar_sizes[6];              /* from sysfs `resource`; 0 = unused */

    /* Other functions of the same slot (domain:bus:device), e.g. the HDA
     * function at .1; the GPU itself is not listed. */
    const char (*functions)[GW_ADDR_LEN];
    size_t n_functions;

    /* Bridges from the GPU's parent up to and including the root port. */
    const gw_bridge *upstream;
    size_t n_upstream;

    bool acs_path_ok;                   /* every root/downstream port on the path has SV RR CR UF */
    const char *acs_evidence;           /* why, in words */
    /* Every group member is a bridge, or a function of this slot that VFIO
     * can take (on vfio-pci, pci-stub or unbound); see gw_iso_kind. */
    bool group_viable;
    const char *group_evidence;
    int clique;                         /* P2P clique id; -1 when in none. Ids of 16 and more
                                         * exist only with a host error saying QEMU cannot
                                         * express them (its clique id has 4 bits). */

    /* Problems reading this device, the other functions of its slot
     * ("function 0000:3b:00.1: ...") and the bridges above it ("upstream
     * 0000:3a:00.0: ..."); empty when fine. */
    const char *const *errors;
    size_t n_errors;

    /* ---- added later; gw_gpu is only ever allocated by the library ---- */

    /* The isolation verdict as a whole (agent/lib/isolation.c; the clean-up's
     * isolation step judges the same facts with the same code): the group
     * (group_viable), the ACS path (acs_path_ok) and ATS (ats_ok: the GPU's
     * ATS Control known and Enable clear) all fine. */
    bool isolation_viable;
    /* Not viable: the reasons' texts, "; "-joined (what the clean-up's
     * isolation step says when it fails). Viable: group_evidence,
     * acs_evidence and ats_evidence. */
    const char *isolation_evidence;
    const gw_iso_reason *isolation_reasons;   /* empty when viable */
    size_t n_isolation_reasons;
    bool ats_ok;
    const char *ats_evidence;
} gw_gpu;

typedef struct gw_host gw_host;

typedef struct gw_host_options {
    unsigned int version;
    const char *root;           /* host root; NULL or "/" = the live host */
    const char *pci_ids;        /* pci.ids path; NULL = /usr/share/misc/pci.ids (udev's hwdb is
                                 * never used, so names do not depend on the reading machine) */
} gw_host_options;

#define GW_HOST_OPTIONS_VERSION 1
#define GW_HOST_OPTIONS_INIT { GW_HOST_OPTIONS_VERSION, NULL, NULL }

/* Scan the host. Fails (-ENOENT, -EIO, -EINVAL for a bad options version)
 * only when the PCI tree cannot be read at all; per-device problems land in
 * gw_gpu.errors and host errors. Safe to call from several threads at once
 * (each scan has its own libpci handle; libpci's fatal errors are caught per
 * thread). The result is self-contained and immutable. */
GW_EXTERN int gw_host_scan(gw_host **out, const gw_host_options *opts);
GW_EXTERN void gw_host_free(gw_host *host);

GW_EXTERN const char *gw_host_root(const gw_host *host);
GW_EXTERN size_t gw_host_gpu_count(const gw_host *host);
GW_EXTERN const gw_gpu *gw_host_gpu(const gw_host *host, size_t index);   /* sorted by address */
GW_EXTERN const gw_gpu *gw_host_find_gpu(const gw_host *host, const char *address);

/* P2P cliques: GPUs below the same nearest switch upstream port, two or more,
 * numbered 0.. in ascending order of their lowest address. */
GW_EXTERN size_t gw_host_clique_count(const gw_host *host);
GW_EXTERN size_t gw_host_clique_size(const gw_host *host, size_t clique);
GW_EXTERN const char *gw_host_clique_member(const gw_host *host, size_t clique, size_t index);

/* Host-level problems: entries in devices/ that are not addresses, more than
 * 16 cliques, problems of functions that are neither GPUs, nor in a GPU's
 * slot, nor on a GPU's upstream path ("0000:02:00.0: ..."). Empty when fine. */
GW_EXTERN size_t gw_host_error_count(const gw_host *host);
GW_EXTERN const char *gw_host_error(const gw_host *host, size_t index);

/* The whole scan as JSON (the schema of `gpuwarden discover --json`, see
 * docs/discover-json.md). The caller frees the string with free(). */
GW_EXTERN int gw_host_to_json(const gw_host *host, char **out);

/* Copy the PCI-relevant sysfs of the host at `root` (NULL = "/") into a new
 * host tree under `out_dir` (created; must be new or empty, and not inside a
 * sysfs or procfs): bus/pci/devices links, the nested sys/devices directory of
 * every PCI function with its attribute files and driver/iommu_group links,
 * bus/pci/drivers, bus/pci/slots, kernel/iommu_groups and the NUMA nodes'
 * cpulists. gw_host_scan() on the copy gives what it gives on the original.
 * The source is only read: BAR resourceN files, rom and vpd (reads with side
 * effects or meaningless as data) and write-only files (reset, remove,
 * rescan, bind, ...) are created empty with the same mode; attributes that
 * refuse to be read are created empty and counted in *n_skipped (logged).
 * Run as root: the kernel shows only 64 bytes of config space otherwise.
 * *n_functions (optional) receives the number of functions copied. */
GW_EXTERN int gw_host_snapshot(const char *root, const char *out_dir, size_t *n_functions,
                               size_t *n_skipped);

#ifdef __cplusplus
}
#endif
#endif
