/* SPDX-License-Identifier: Apache-2.0 */
/* Internals of the clean-up pipeline: the per-run context that steps work on,
 * the step interface, the policy copy, and device helpers that read and write
 * only through the host backend. */
#ifndef GW_SANITIZE_INTERNAL_H
#define GW_SANITIZE_INTERNAL_H

#include <gpuwarden/sanitize.h>
#include <pthread.h>
#include <sys/types.h>
#include <stdatomic.h>

#include "util.h"

/* ---- small owned containers ------------------------------------------- */

typedef struct gw_kvlist {
    gw_fact *v;       /* keys and values are owned (char *) */
    size_t n;
} gw_kvlist;

const char *gw_kvlist_get(const gw_kvlist *l, const char *key);
void gw_kvlist_set(gw_kvlist *l, const char *key, const char *value);
void gw_kvlist_copy(gw_kvlist *dst, const gw_fact *src, size_t n);
void gw_kvlist_clear(gw_kvlist *l);

typedef struct gw_addrlist {
    char (*v)[GW_ADDR_LEN];
    size_t n;
} gw_addrlist;

void gw_addrlist_add(gw_addrlist *l, const char *addr);     /* no duplicates */
bool gw_addrlist_has(const gw_addrlist *l, const char *addr);
void gw_addrlist_clear(gw_addrlist *l);

/* A growable string. */
typedef struct gw_strbuf {
    char *s;
    size_t len, cap;
} gw_strbuf;

void gw_strbuf_append(gw_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_strbuf_clear(gw_strbuf *b);
const char *gw_strbuf_str(const gw_strbuf *b);

/* Bytes as C-escaped text for evidence: "0\n" -> "0\\n". */
char *gw_escape_bytes(const void *buf, size_t len);

/* ---- policy ------------------------------------------------------------- */

/* A deep, reference-counted copy of a gw_sanitize_policy with defaults filled
 * in, so that clean-ups (even abandoned ones) never point into the caller's
 * memory. `pol` views the owned storage. */
typedef struct gw_spolicy {
    atomic_int refs;
    gw_sanitize_policy pol;
    char *hooks_dir;
    gw_rom_allow *allow;
    uint16_t *vendors;
    char **addresses;
    gw_model_policy *models;    /* ids owned; verify fraction 0 made 1 */
} gw_spolicy;

int gw_spolicy_new(gw_spolicy **out, const gw_sanitize_policy *policy);
gw_spolicy *gw_spolicy_ref(gw_spolicy *p);
void gw_spolicy_unref(gw_spolicy *p);

#define GW_DEFAULT_HOOKS_DIR "/etc/gpuwarden/sanitize.d"

/* Driver scrub defaults (gw_model_policy), and what the two binds around it
 * may take at most on top of the ready wait and the commands. */
#define GW_SCRUB_READY_DEFAULT_MS 30000u
#define GW_SCRUB_COMMAND_DEFAULT_MS 120000u
#define GW_SCRUB_REBIND_MARGIN_MS 60000u
#define GW_SCRUB_READY_MS(m) ((m)->scrub_driver_ready_timeout_ms ? (m)->scrub_driver_ready_timeout_ms \
                                                                 : GW_SCRUB_READY_DEFAULT_MS)
#define GW_SCRUB_COMMAND_MS(m) ((m)->scrub_command_timeout_ms ? (m)->scrub_command_timeout_ms \
                                                              : GW_SCRUB_COMMAND_DEFAULT_MS)

/* Split a model's scrub_commands text (syntax in gw_model_policy) into
 * NULL-terminated argument vectors; -EINVAL with the reason. Free with
 * gw_scrub_commands_free(). */
int gw_scrub_commands_split(const char *text, char ****out, size_t *n);
void gw_scrub_commands_free(char ***cmds, size_t n);

/* ---- the run context ---------------------------------------------------- */

/* Group nodes held open (gw_hold_groups). */
typedef struct gw_group_holds {
    void **handles;
    char **groups;              /* the group number of each handle */
    bool *borrowed;             /* the run's own hold (gw_hold_for_run): not released with these */
    size_t n;
} gw_group_holds;

typedef struct gw_sctx gw_sctx;
typedef void (*gw_sctx_release_fn)(void *data);

struct gw_sctx {
    atomic_int refs;
    pthread_mutex_t lock;       /* evidence, pins, abandoned */
    gw_hostops *ops;
    gw_attach_source *attach;   /* borrowed, may be NULL */
    gw_spolicy *policy;
    char address[GW_ADDR_LEN];

    gw_kvlist pins;             /* in from the request, out with the result */
    gw_strbuf evidence;         /* of the step now running */
    gw_strbuf history;          /* "step: verdict: evidence\n" of the finished steps */
    bool abandoned;             /* a step timed out: no more writes, evidence or pins */

    /* Shared between steps of one run. */
    bool id_known;
    uint32_t id_before;         /* config dword 0 when the run started (pipeline) */
    bool in_use;                /* (lock) a step stopped because the device is or may be in use */
    gw_kvlist power_saved;      /* (lock) address -> power/control before the clean-up set "on" */
    bool power_seen;            /* (lock) bind looked at the power state: report it at the end */
    gw_group_holds run_holds;   /* (lock) from bind to the end of the run: gw_hold_for_run() */

    gw_sctx_release_fn on_release;
    void *on_release_data;
};

gw_sctx *gw_sctx_new(gw_hostops *ops, gw_attach_source *attach, gw_spolicy *policy,
                     const gw_sanitize_request *request);
gw_sctx *gw_sctx_ref(gw_sctx *c);
/* Whether a step timed out and the run was abandoned: nothing more may be
 * written (not even zeros, not even the way back). */
bool gw_sctx_abandoned(gw_sctx *c);
void gw_sctx_unref(gw_sctx *c);

/* Append to the running step's evidence ("; "-separated). Ignored once the
 * run is abandoned. */
void gw_note(gw_sctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* gw_note() and return GW_VERDICT_FAIL / GW_VERDICT_SKIP. */
gw_verdict gw_fail(gw_sctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
gw_verdict gw_skip(gw_sctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *gw_pin_get(gw_sctx *c, const char *key);
void gw_pin_set(gw_sctx *c, const char *key, const char *value);

/* The one way a step writes to the host: refuses when the run was abandoned
 * or `target` (the device the write is about) is not managed, and records
 * every write, done or failed, in the evidence. */
int gw_host_write(gw_sctx *c, const char *target, const char *path, const void *buf, size_t len);
/* The same for config space: `len` bytes at `offset` of `target`'s config
 * (gw_hostops_write_config), refused and recorded alike; the evidence shows
 * a 1-, 2- or 4-byte write as the little-endian value it stores:
 * "wrote 0x00001000 to 0000:03:00.0 config 0x104". */
int gw_host_write_config(gw_sctx *c, const char *target, unsigned int offset, const void *buf, size_t len);

/* ---- steps -------------------------------------------------------------- */

typedef struct gw_step_def {
    gw_step_id id;
    const char *name;
    /* Runs on a thread of its own; writes evidence with gw_note(). */
    gw_verdict (*run)(gw_sctx *c);
} gw_step_def;

extern const gw_step_def gw_step_not_in_use;
extern const gw_step_def gw_step_bind;
extern const gw_step_def gw_step_reset;
extern const gw_step_def gw_step_health;
extern const gw_step_def gw_step_isolation;
extern const gw_step_def gw_step_firmware;
extern const gw_step_def gw_step_hooks;
extern const gw_step_def gw_step_scrub;

/* Timeout of a step under a policy (defaults applied), milliseconds. */
unsigned int gw_step_timeout_ms(const gw_sanitize_policy *pol, gw_step_id id);
/* The policy's entry for a GPU model, NULL when it has none. */
const gw_model_policy *gw_policy_model(const gw_sanitize_policy *pol, uint16_t vendor, uint16_t device);

/* Run the steps on `c` and build the result (pipeline.c). */
gw_sanitize_result *gw_pipeline_run(gw_sctx *c);

/* ---- device helpers (sanitize_dev.c): all through the host backend ---- */

/* "sys/bus/pci/devices/<addr>/<attr>" (attr NULL: the device directory). */
char *gw_dev_path(const char *addr, const char *attr);
int gw_dev_read_text(gw_hostops *ops, const char *addr, const char *attr, char **out);
int gw_dev_read_long(gw_hostops *ops, const char *addr, const char *attr, long *out);
int gw_dev_config(gw_hostops *ops, const char *addr, unsigned off, void *buf, size_t len);
int gw_dev_config16(gw_hostops *ops, const char *addr, unsigned off, uint16_t *out);
int gw_dev_config32(gw_hostops *ops, const char *addr, unsigned off, uint32_t *out);
/* Offset of a capability: > 0 found, 0 absent, < 0 unreadable. */
int gw_dev_find_cap(gw_hostops *ops, const char *addr, uint8_t id);
int gw_dev_find_ext_cap(gw_hostops *ops, const char *addr, uint16_t id);
/* Bound driver's name, NULL when none. */
int gw_dev_driver(gw_hostops *ops, const char *addr, char **out);
/* 1 for a PCI-to-PCI bridge (header type 1), 0 otherwise. */
int gw_dev_is_bridge(gw_hostops *ops, const char *addr);
/* Bridges from the parent up to the root port, from the device link. */
int gw_dev_upstream(gw_hostops *ops, const char *addr, gw_addrlist *out);
/* Functions of the same slot, the device included, sorted. */
int gw_dev_slot_functions(gw_hostops *ops, const char *addr, gw_addrlist *out);
/* IOMMU group number and members; -ENOENT when the device has no group. */
int gw_dev_group(gw_hostops *ops, const char *addr, char **group, gw_addrlist *members);
/* The TOTAL_ERR_<WHICH> count of aer_dev_<which> ("fatal", "nonfatal");
 * -ENOENT when the attribute is absent. */
int gw_dev_aer_total(gw_hostops *ops, const char *addr, const char *which, long *out);
/* The lines of `resource` for BAR 0-5 and the ROM BAR: what the kernel
 * assigned (CPU addresses; start 0 or flag GW_IORESOURCE_UNSET: none). */
typedef struct gw_dev_resource {
    uint64_t start, end, flags;
} gw_dev_resource;
#define GW_IORESOURCE_UNSET 0x20000000u
int gw_dev_resources(gw_hostops *ops, const char *addr, gw_dev_resource res[7]);
/* 1 managed, 0 not, < 0 unreadable; *why explains (may be NULL). */
int gw_dev_managed(gw_hostops *ops, const gw_sanitize_policy *pol, const char *addr, char **why);
/* What a clean-up of `addr` covers: the functions of its slot and the other
 * members of its IOMMU group, bridges apart (never rebound). *group is NULL
 * when the device has no IOMMU group. */
int gw_dev_targets(gw_hostops *ops, const char *addr, gw_addrlist *functions, gw_addrlist *bridges,
                   char **group);

/* Fails when any of `targets` is referenced by a VM or the attachment source
 * cannot tell, or when a process holds one of their VFIO nodes open
 * (gw_vfio_holders()), and marks the run in use (c->in_use): step
 * not_in_use, and the reset step again right before it writes. */
gw_verdict gw_check_not_in_use(gw_sctx *c, const gw_addrlist *targets);

/* ---- VFIO holders (sanitize_holders.c) --------------------------------- */

/* A node through which a process holds a function: its IOMMU group's
 * /dev/vfio/<group>, or (newer kernels, vfio-dev/vfioN in sysfs) its VFIO
 * device cdev /dev/vfio/devices/vfioN. */
typedef struct gw_vfio_node {
    char *path;                 /* as a /proc fd link shows it: "/dev/vfio/5" */
    char *what;                 /* "IOMMU group 5", "VFIO device vfio0" */
    char *group;                /* the group number; NULL for a device cdev */
    char address[GW_ADDR_LEN];  /* the first target function it belongs to */
} gw_vfio_node;

typedef struct gw_vfio_holder {
    long pid;
    char *comm;
    size_t node;                /* index into the nodes */
} gw_vfio_holder;

typedef struct gw_vfio_scan {
    gw_vfio_node *nodes;
    size_t n_nodes;
    gw_vfio_holder *holders;
    size_t n_holders;
    bool no_proc;               /* the host root has no proc: nothing scanned */
    size_t scanned;             /* processes looked at */
    size_t unreadable;          /* processes whose fds could not be read */
} gw_vfio_scan;

/* The nodes of `fns` and the processes holding any of them (proc/<pid>/fd/<n>
 * links, through the host backend). Processes that exit mid-scan are
 * skipped. < 0 when a function's group link or proc itself (when present)
 * cannot be read. */
int gw_vfio_holders(gw_hostops *ops, const gw_addrlist *fns, gw_vfio_scan *out);
void gw_vfio_scan_clear(gw_vfio_scan *s);
/* Part of gw_check_not_in_use(): notes what was looked at; FAIL names every
 * holder ("<addr>: IOMMU group 5 (/dev/vfio/5) is open by pid 123
 * (qemu-system-x86): in use"). */
gw_verdict gw_check_holders(gw_sctx *c, const gw_addrlist *targets);
/* "pid 123 (qemu-system-x86), pid 7 (x)" for node i; NULL when none. */
char *gw_vfio_holders_of(const gw_vfio_scan *s, size_t node);
/* The same without process `pid` (-1: none left out). */
char *gw_vfio_holders_but(const gw_vfio_scan *s, size_t node, long pid);

/* Open /dev/vfio/<group> of every group of `fns` and keep it open: while it
 * is, the kernel lets no one else open it (one open at a time). PASS when
 * every node is held or absent; FAIL when the kernel says someone has it
 * (EBUSY: the holder named from proc, c->in_use set) or the open fails
 * otherwise. What was held is in *out either way: release it. `across`
 * names what the hold is for in the evidence ("the reset"). */
gw_verdict gw_hold_groups(gw_sctx *c, const gw_addrlist *fns, const char *across, gw_group_holds *out);
void gw_release_groups(gw_sctx *c, gw_group_holds *h);
/* The run's own hold: the groups of `fns` held from the end of the bind step
 * to the end of the run (c->run_holds), so that no VM can hot-plug the device
 * while it is cleaned (libvirt runs no hook for attach-device; only the
 * kernel's one-open-at-a-time rule keeps QEMU out). gw_hold_groups() of a
 * group held this way hands out the same handle, borrowed. Same verdicts as
 * gw_hold_groups(). */
gw_verdict gw_hold_for_run(gw_sctx *c, const gw_addrlist *fns);
/* Let the run's hold go (the driver scrub, which must hand the device to a
 * host driver, and the end of the run); noted in the evidence when `why`. */
void gw_release_run_holds(gw_sctx *c, const char *why);
/* The handle holding group `group`, NULL when it is not held. */
void *gw_group_held(const gw_group_holds *h, const char *group);
/* The same for the group of function `addr`: 0 with *group (malloc'd) and
 * *held (NULL when not held), or < 0 when `addr` has no IOMMU group. */
int gw_group_held_for(gw_sctx *c, const gw_group_holds *h, const char *addr, char **group, void **held);

/* ---- bus reset (sanitize_bus_reset.c) ---------------------------------- */

/* A secondary bus reset of the GPU's bus through VFIO hot reset, the GPU
 * opened through its group's handle in `holds`: refused (FAIL, naming it)
 * when an affected function is not managed or not on vfio-pci; functions
 * outside `fns` are checked for use and their groups held for the reset.
 * When no bus reset is possible at all (no VFIO in the backend, the device on
 * the root bus), `fallback` (the GPU's `reset` attribute) is written instead
 * with a note, or, NULL, the step fails. */
gw_verdict gw_bus_reset(gw_sctx *c, const gw_addrlist *fns, const gw_group_holds *holds, const char *fallback);

/* ---- runtime power (sanitize_power.c) -------------------------------- */

/* "D0, runtime active" of a function, from power_state and
 * power/runtime_status ("?" for what cannot be read). */
char *gw_power_state(gw_hostops *ops, const char *addr);
/* Keep every managed function of `fns` in D0 for the rest of the clean-up:
 * power/control "on", the previous value saved for gw_power_restore().
 * Notes the state before and after. Never fails the step: the clean-up
 * works in D3hot too, only less closely to how a VM will see the device. */
void gw_power_hold_on(gw_sctx *c, const gw_addrlist *fns);
/* Note the power state of `addr` ("after reset"). */
void gw_power_note(gw_sctx *c, const char *addr, const char *when);
/* Whether the end of the run has power work to do or report. */
bool gw_power_pending(gw_sctx *c);
/* End of the run, on a thread of its own like a step: write back the saved
 * power/control values and note the final state. */
extern const gw_step_def gw_step_power_restore;
/* The end-of-run text when the run was abandoned and nothing may be written. */
char *gw_power_abandoned(gw_sctx *c);

/* ---- scrub method "driver" (sanitize_scrub_driver.c) ------------------ */

/* The scrub step for a GW_SCRUB_DRIVER model: the GPU function to the
 * model's host driver, its commands, and back to vfio-pci, always. */
gw_verdict gw_scrub_driver(gw_sctx *c, const gw_model_policy *m);

/* ---- programs (sanitize_exec.c) ---------------------------------------- */

#define GW_EXEC_OUTPUT_KEEP 1024

typedef struct gw_exec_outcome {
    bool timed_out;
    int status;                             /* waitpid status */
    char out[GW_EXEC_OUTPUT_KEEP + 1];      /* the last bytes of stdout+stderr */
    size_t out_len;
    int left_running;                       /* of its group, running when it exited (then killed) */
    int still_running;                      /* of its group, running GROUP_GONE_MS after SIGKILL */
} gw_exec_outcome;

/* Resource limits for a program; 0 leaves one as the daemon has it. */
typedef struct gw_exec_limits {
    unsigned long cpu_s;                    /* RLIMIT_CPU, seconds (SIGXCPU, the hard limit 1 s later) */
    unsigned long fsize_bytes;              /* RLIMIT_FSIZE (a larger write: SIGXFSZ) */
    unsigned long nproc;                    /* RLIMIT_NPROC (the kernel exempts root from it) */
} gw_exec_limits;

/* Run argv[0] (an absolute path) with exactly `envp`, stdin /dev/null,
 * stdout and stderr captured (the last GW_EXEC_OUTPUT_KEEP bytes), cwd /,
 * in a process group of its own. When it ends, or past `timeout_ms`
 * (o->timed_out), the whole group is SIGKILLed; returns once no process of
 * the group is left running (or GROUP_GONE_MS passed: o->still_running) and
 * the program is reaped. < 0 (an errno) when it could not start (execve's
 * errno), or could not be waited for (then it was killed and reaped). */
int gw_exec_run_limited(char *const argv[], char *const envp[], unsigned timeout_ms, const gw_exec_limits *lim,
                        gw_exec_outcome *o, pid_t *pid);
/* The same with no limits (the driver scrub's commands). */
int gw_exec_run(char *const argv[], char *const envp[], unsigned timeout_ms, gw_exec_outcome *o, pid_t *pid);
/* Processes of process group `pgid` still running (zombies not counted);
 * -1 when /proc cannot be read. */
int gw_exec_group_running(pid_t pgid);
/* ", output: <the last 200 characters, one line, newlines as ' | ', control
 * characters as '?'>" for the evidence; "" when there was none. Free it. */
char *gw_exec_output_tail(const gw_exec_outcome *o);

/* PCI constants the steps use. */
#define GW_PCI_CAP_EXP 0x10
#define GW_PCI_EXT_CAP_AER 0x0001
#define GW_PCI_EXT_CAP_ACS 0x000d
#define GW_PCI_EXT_CAP_ATS 0x000f
/* ACS and ATS register bits: isolation.h. */

#endif
