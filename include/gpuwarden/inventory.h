/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/inventory.h - the Placement inventory that Cyborg publishes.
 *
 * Cyborg makes one resource provider (RP) per deployable, flat under the
 * compute node's RP, named after the deployable (uuid3(NAMESPACE_DNS, name)).
 * Its inventory is {rc: {total: num_accelerators, max_unit: total}}; the shim
 * sets `reserved` on it; its traits come from the deployable's attributes.
 * This module decides all of that from the host's GPUs and their lifecycle
 * states, so that the shim carries no policy (docs/placement.md).
 *
 * Two models:
 *   GW_INVENTORY_PER_GPU (default) - one deployable per GPU, "<host>_<BDF>",
 *     exactly as Cyborg's in-tree nvidia_gpu_driver names it, so existing
 *     device profiles keep working.
 *   GW_INVENTORY_PER_CLIQUE - one deployable per P2P clique, "<host>_clique<n>",
 *     num_accelerators = the clique's size and one attach handle per GPU, so
 *     `resources:PGPU=N` in one device-profile group gets N P2P-capable GPUs
 *     with stock Nova. GPUs in no clique stay per-GPU.
 *
 * Every deployable has resource class "PGPU", a "PCI" control path and "PCI"
 * attach handles whose info is Cyborg's pci_str_to_json() text, byte for byte:
 *     {"bus": "3b", "device": "00", "domain": "0000", "function": "0"}
 *
 * Traits, in this order:
 *   OWNER_CYBORG
 *   CUSTOM_<VENDOR>_<PID>  product, upper-case hex device id; VENDOR is NVIDIA
 *                          (10de, Cyborg's in-tree name), AMD (1002), INTEL
 *                          (8086), MATROX (102b, as Cyborg's VENDOR_MAPS), else
 *                          the vendor id in upper-case hex: CUSTOM_1AF4_1050.
 *                          Per clique: only when all its GPUs are the same product.
 *   CUSTOM_GPU_CLIQUE_<n>  when in clique n (0-15)
 *   CUSTOM_NUMA_NODE_<n>   when the NUMA node is known; per clique only when all
 *                          its GPUs are on the same node
 *   the operator's extra traits, in the order given.
 *
 * Reservation: reserved = the deployable's GPUs that are neither allocatable
 * nor attached to a running VM (attached: state GW_STATE_ATTACHED, or the
 * `attached` flag: a VM still holds it; gw_inventory_options.stopped: no VM
 * holding it runs).
 * Attach handles are listed only for allocatable or attached GPUs, stopped
 * or not: Cyborg binds the first free handle of a deployable, so the handle
 * of a GPU that is not clean must not exist, and a handle Cyborg has bound
 * must not disappear (it would destroy it under the VM's accelerator
 * request). A GPU attached to a running VM is not reserved: its allocation
 * already takes its capacity. One held by stopped VMs only is reserved
 * (with its handle): a shut-off persistent domain keeps its GPU until it is
 * undefined, and Nova deletes the instance's allocation after undefining it,
 * before anyone can tell the GPU is free; reserved on top of the allocation
 * closes that window (Placement accepts reserved + used > total).
 * Every GPU of the input is in exactly one deployable (an attached GPU is
 * always present), and a deployable of the previous inventory is kept as it
 * was - same name, same GPUs, same traits - while any of its GPUs is attached
 * (see gw_inventory_options.previous).
 *
 *     gw_inventory_gpu gpus[] = {
 *         { "0000:3b:00.0", 0x10de, 0x1eb0, 0, 0, GW_STATE_ALLOCATABLE, false, 0x0300, "TU104GL [Quadro RTX 5000]" },
 *         { "0000:3c:00.0", 0x10de, 0x1eb0, 0, 0, GW_STATE_QUARANTINED, false, 0x0300, "TU104GL [Quadro RTX 5000]" },
 *     };
 *     gw_inventory_options opts = GW_INVENTORY_OPTIONS_INIT;
 *     opts.model = GW_INVENTORY_PER_CLIQUE;
 *     gw_inventory *inv;
 *     if (gw_inventory_new(&inv, gpus, 2, &opts) < 0)
 *         errx(1, "%s", gw_error_message());
 *     char *json;
 *     gw_inventory_to_json(inv, &json);   // "reserved": 1, one attach handle
 *     ...
 *     free(json);
 *     gw_inventory_free(inv);
 */
#ifndef GPUWARDEN_INVENTORY_H
#define GPUWARDEN_INVENTORY_H

#include <gpuwarden/common.h>
#include <gpuwarden/host.h>
#include <gpuwarden/lifecycle.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Trait names ---------------------------------------------------------- */

/* Longest trait name Placement accepts. */
#define GW_TRAIT_MAX_LEN 255

/* 0 when `name` is a custom trait Placement accepts (^CUSTOM_[A-Z0-9_]+$, at
 * most 255 characters); -EINVAL with the reason otherwise. Operator traits
 * must be custom: Cyborg's device profiles accept only CUSTOM_ traits, and a
 * standard trait unknown to Placement's os-traits would fail the whole PUT. */
GW_EXTERN int gw_trait_check(const char *name);

/* The product trait of a GPU, "CUSTOM_NVIDIA_1EB0", into buf (at least 32
 * bytes). Returns buf. */
GW_EXTERN char *gw_trait_product(uint16_t vendor_id, uint16_t device_id, char *buf, size_t len);

/* ---- Clique override ------------------------------------------------------ */

/* An operator's grouping of GPUs into P2P cliques (NVLink partitions), read
 * from a file such as /etc/gpuwarden/cliques.conf:
 *
 *     # <clique id 0-15> = <BDF> <BDF> ...   (spaces and/or commas)
 *     0 = 0000:1a:00.0 0000:1c:00.0
 *     1 = 0000:3d:00.0, 0000:3f:00.0
 *
 * '#' starts a comment; blank lines are ignored. When an override is in
 * force it replaces the topology-derived cliques entirely: a GPU it does not
 * list is in no clique. An override with no lines means "no cliques". */
typedef struct gw_clique_override gw_clique_override;

#define GW_MAX_CLIQUES 16

/* Read and validate an override file. Errors name the file and line:
 * -ENOENT/-EACCES when unreadable; -EINVAL for a malformed line, a clique id
 * that is not 0-15 or given twice, a malformed address, an address listed
 * twice (overlap), a clique of fewer than two GPUs, more than 16 cliques. */
GW_EXTERN int gw_clique_override_load(gw_clique_override **out, const char *path);
/* The same from text; `origin` names it in messages (NULL = "cliques"). */
GW_EXTERN int gw_clique_override_parse(gw_clique_override **out, const char *text, const char *origin);
GW_EXTERN void gw_clique_override_free(gw_clique_override *ov);

/* Cliques in ascending id order. */
GW_EXTERN size_t gw_clique_override_count(const gw_clique_override *ov);
GW_EXTERN int gw_clique_override_id(const gw_clique_override *ov, size_t index);
GW_EXTERN size_t gw_clique_override_size(const gw_clique_override *ov, size_t index);
GW_EXTERN const char *gw_clique_override_member(const gw_clique_override *ov, size_t index, size_t member);
/* The clique id of a GPU under the override; -1 when it lists it nowhere. */
GW_EXTERN int gw_clique_override_lookup(const gw_clique_override *ov, const char *address);

/* ---- The inventory -------------------------------------------------------- */

/* One GPU as the inventory needs it: independent of how it was discovered. */
typedef struct gw_inventory_gpu {
    const char *address;        /* canonical BDF, "0000:3b:00.0" */
    uint16_t vendor_id, device_id;
    int numa_node;              /* -1 = unknown */
    int clique;                 /* topology clique 0..15; -1 = none */
    gw_state state;
    /* Referenced by a VM, whatever the state: e.g. quarantined by the operator
     * while the VM keeps it (the protocol's device object has a domain).
     * Counts as attached below. */
    bool attached;
    /* For Cyborg's DriverDevice only (not for placement decisions): */
    uint16_t class_code;        /* 0x0302 -> controller "3D controller"; 0 = unknown */
    const char *model;          /* pci.ids device name; NULL -> "Device 2330" */
} gw_inventory_gpu;

/* Check an override against the host's GPUs: -ENOENT when it names an address
 * that is not one of `gpus`, -EINVAL when it names a GPU that is not NVIDIA
 * (QEMU's x-nv-gpudirect-clique hint exists for vendor 10de only). */
GW_EXTERN int gw_clique_override_check(const gw_clique_override *ov,
                                       const gw_inventory_gpu *gpus, size_t n_gpus);

typedef enum gw_inventory_model {
    GW_INVENTORY_PER_GPU = 0,
    GW_INVENTORY_PER_CLIQUE = 1,
} gw_inventory_model;

/* "per_gpu", "per_clique" (the protocol's spelling); and back, also
 * accepting "per-gpu"/"per-clique" (-EINVAL for anything else). */
GW_EXTERN const char *gw_inventory_model_name(gw_inventory_model model);
GW_EXTERN int gw_inventory_model_from_name(const char *name, gw_inventory_model *out);

typedef struct gw_inventory gw_inventory;

typedef struct gw_inventory_options {
    unsigned int version;
    /* Deployable name prefix; NULL = gethostname(), which is the default of
     * Cyborg's CONF.host that its own driver uses. Printable ASCII, no
     * spaces; the longest name it makes must fit Placement's 200 characters. */
    const char *host;
    gw_inventory_model model;
    /* Custom traits added to every deployable, after gpuwarden's own. They
     * must pass gw_trait_check(), be distinct, and stay out of gpuwarden's
     * namespaces CUSTOM_GPU_CLIQUE_ and CUSTOM_NUMA_NODE_ (-EINVAL). */
    const char *const *extra_traits;
    size_t n_extra_traits;
    /* Replaces the GPUs' topology cliques; NULL = use them. An override that
     * fails gw_clique_override_check() against the GPUs is not applied: the
     * topology cliques are kept, the inventory is still built and
     * gw_inventory_clique_error() says why. */
    const gw_clique_override *clique_override;
    /* The inventory published before, or NULL. Each of its deployables that
     * holds a GPU that is now attached is carried over unchanged (name, GPUs,
     * traits; reserved and handles follow the current states): Cyborg would
     * delete a provider whose deployable disappears, which Placement refuses
     * while it has allocations, wedging every later report. Its GPUs that are
     * no longer in the input count as reserved. */
    const gw_inventory *previous;
    /* Version 2. The attached GPUs that no VM holding them runs (a shut-off
     * persistent domain keeps its GPU until it is undefined): each keeps its
     * handle and is reserved too (see Reservation above). An address that is
     * not an attached GPU of the input changes nothing. NULL: none. A list,
     * not a gw_inventory_gpu field, so that arrays built against version 1
     * keep their layout. */
    const char *const *stopped;
    size_t n_stopped;
} gw_inventory_options;

#define GW_INVENTORY_OPTIONS_VERSION 2
#define GW_INVENTORY_OPTIONS_INIT \
    { GW_INVENTORY_OPTIONS_VERSION, NULL, GW_INVENTORY_PER_GPU, NULL, 0, NULL, NULL, NULL, 0 }

/* Build the inventory. -EINVAL for a malformed address (in the GPUs or in
 * `stopped`), a duplicate GPU, a clique outside -1..15, an invalid state, a
 * bad host name or extra trait. Options of version 1 (without `stopped`) are
 * accepted. */
GW_EXTERN int gw_inventory_new(gw_inventory **out, const gw_inventory_gpu *gpus, size_t n_gpus,
                               const gw_inventory_options *opts);

/* The lifecycle state of a GPU, for gw_inventory_new_from_host(): store it in
 * *state, and in *attached whether a VM references it (see
 * gw_inventory_gpu.attached; preset to false), and return 0, or return a
 * negative errno to abort the build. */
typedef int (*gw_inventory_state_fn)(const char *address, gw_state *state, bool *attached, void *userdata);

/* Build from a scanned host: address, ids, class, pci.ids name, NUMA node and
 * clique of each of its GPUs, the state from `state_fn`. A clique id of 16 or
 * more (the host reports that QEMU cannot express it) counts as no clique. A
 * GPU the scan no longer sees is not in the result: a caller that must keep a
 * vanished attached GPU uses gw_inventory_new() with its own list. */
GW_EXTERN int gw_inventory_new_from_host(gw_inventory **out, const gw_host *host,
                                         gw_inventory_state_fn state_fn, void *userdata,
                                         const gw_inventory_options *opts);

GW_EXTERN void gw_inventory_free(gw_inventory *inv);

/* A number that changes if and only if the content (host, model and every
 * deployable field) changes: the first 53 bits of the SHA-256 of a canonical
 * serialization, never 0. The same content gives the same number in every process, so a
 * generation that the shim reported before a daemon restart is recognised
 * after it. Fits a JSON number exactly. */
GW_EXTERN uint64_t gw_inventory_generation(const gw_inventory *inv);

/* The host name in deployable names. */
GW_EXTERN const char *gw_inventory_host(const gw_inventory *inv);
GW_EXTERN gw_inventory_model gw_inventory_model_of(const gw_inventory *inv);

/* Why the clique override was not applied; NULL when it was or there was none. */
GW_EXTERN const char *gw_inventory_clique_error(const gw_inventory *inv);

typedef struct gw_attach_handle {
    const char *type;           /* "PCI" */
    const char *info;           /* pci_str_to_json(address) */
    const char *address;        /* the GPU's BDF */
} gw_attach_handle;

typedef struct gw_deployable {
    const char *name;           /* "<host>_<BDF>" or "<host>_clique<n>" */
    const char *rc;             /* "PGPU" */
    unsigned int num_accelerators;  /* number of GPUs */
    unsigned int reserved;      /* GPUs neither allocatable nor attached to a running VM */
    const char *const *traits;
    size_t n_traits;
    const gw_attach_handle *attach_handles;  /* allocatable/attached GPUs, by address */
    size_t n_attach_handles;
    const char *const *gpus;    /* every GPU, sorted by address */
    size_t n_gpus;
    int clique;                 /* the clique of a per-clique deployable; -1 otherwise */
    /* Cyborg's control path id: type "PCI", info pci_str_to_json(gpus[0]) -
     * the deployable's lowest address. Cyborg identifies a device by it, so
     * one Cyborg device per deployable. */
    const char *cpid_type;
    const char *cpid_info;
    bool carried;               /* kept from `previous` because a GPU is attached */
    /* Cyborg's DriverDeployable.driver_name: the vendor token of the product
     * trait ("NVIDIA", "AMD", "INTEL", "MATROX", else "1AF4"). */
    const char *driver_name;
    /* Cyborg's DriverDevice, described by gpus[0]: vendor "10de", model (the
     * pci.ids name), type "GPU", std_board_info
     * '{"controller": "3D controller", "product_id": "2330"}' (json.dumps
     * format, sorted keys). */
    const char *vendor;
    const char *model;
    const char *type;
    const char *std_board_info;
} gw_deployable;

/* Deployables sorted by their lowest GPU address. */
GW_EXTERN size_t gw_inventory_deployable_count(const gw_inventory *inv);
GW_EXTERN const gw_deployable *gw_inventory_deployable(const gw_inventory *inv, size_t index);
GW_EXTERN const gw_deployable *gw_inventory_find(const gw_inventory *inv, const char *name);
/* The deployable that holds the GPU at `address`; NULL when none. */
GW_EXTERN const gw_deployable *gw_inventory_find_gpu(const gw_inventory *inv, const char *address);

/* The inventory as JSON: the result of the protocol's `inventory` op
 * (proto/PROTOCOL.md) and what `gpuwarden inventory -f json` prints; 2-space
 * indent, keys in this order:
 *   {"generation": N, "host": str, "model": "per_gpu"|"per_clique",
 *    "deployables": [{"name", "rc", "num_accelerators", "reserved",
 *      "traits": [...], "attach_handles": [{"type", "info"}], "gpus": [BDF],
 *      "driver_name", "device": {"vendor", "model", "type", "std_board_info",
 *      "controlpath": {"type", "info"}}}]}
 * The caller frees the string with free(). */
GW_EXTERN int gw_inventory_to_json(const gw_inventory *inv, char **out);

/* Read back what gw_inventory_to_json() wrote (e.g. the daemon's persisted
 * last published inventory, to pass as `previous` after a restart). Every
 * field is checked for consistency (counts, handles of its own GPUs, the
 * control path) and the generation is recomputed and must equal the one in
 * the text (-EINVAL otherwise). */
GW_EXTERN int gw_inventory_from_json(gw_inventory **out, const char *json);

#ifdef __cplusplus
}
#endif
#endif
