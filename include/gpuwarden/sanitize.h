/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/sanitize.h - the clean-up ("sanitize") pipeline that runs on a
 * GPU between tenants, with evidence, per-step timeouts and a verdict.
 *
 * The steps, in order (docs/sanitize.md has the details):
 *   not_in_use  no VM references the GPU, its slot functions or group members,
 *               and no process has their VFIO group node open (/proc)
 *   bind        every function of the slot and the rest of the IOMMU group on
 *               vfio-pci (driver_override, unbind, drivers_probe); bridges are
 *               never rebound; then held in D0 (power/control "on") until the
 *               end of the run, when the previous value is written back
 *   reset       with /dev/vfio/<group> held open and after checking for use
 *               again: FLR through the kernel's `reset` when `reset_method`
 *               offers it, else (or as the model asks) a secondary bus reset
 *               through VFIO's hot reset, refused when the bus holds a
 *               function that is not ours
 *   scrub       per model: zero a BAR of the device's memory through VFIO
 *               and read it back, or hand the device to the vendor's host
 *               driver, run the model's scrub commands and bind it back to
 *               vfio-pci (skipped when no scrub is configured)
 *   health      config readable, link width not degraded, no new AER fatal or
 *               non-fatal errors (GPU and upstream port), BAR sizes unchanged
 *   isolation   IOMMU group viable, ACS on the upstream path, ATS disabled
 *   firmware    VBIOS via sysfs `rom`, SHA-256 against an allowlist or a pin;
 *               a ROM the kernel refuses to read (EIO: no valid image) fails
 *   hooks       operator executables in a directory, each with a timeout
 * The pipeline stops at the first failing step. A failure makes the overall
 * verdict fail and its reason "<step>: <evidence>": the quarantine reason.
 *
 * Every host operation goes through a gw_hostops backend (hostops.h). The
 * clean-up writes to a device only when management is enabled for it (see
 * gw_sanitize_policy); otherwise it writes nothing and the evidence says so.
 *
 * Pins (the link width at the first clean-up, the ROM hash, AER baselines)
 * come in with the request and go out, updated, with the result, as the
 * registry's device facts (gw_fact, keys starting with "sanitize."): pass a
 * gw_device's facts in, and gw_sanitize_result_apply() stores the result and
 * the new pins with the device and moves it on in its lifecycle.
 *
 *     gw_sanitize_policy pol = GW_SANITIZE_POLICY_INIT;
 *     gw_sanitize_request req = GW_SANITIZE_REQUEST_INIT;
 *     req.address = "0000:3b:00.0";
 *     gw_sanitize_result *res;
 *     gw_sanitize_run(&res, ops, attach_source, &pol, &req);
 *     if (gw_sanitize_result_verdict(res) == GW_VERDICT_FAIL)
 *         quarantine(gw_sanitize_result_reason(res));
 *     gw_sanitize_result_free(res);
 *
 * Off the request path, gw_cleanup_pool runs clean-ups on worker threads.
 */
#ifndef GPUWARDEN_SANITIZE_H
#define GPUWARDEN_SANITIZE_H

#include <gpuwarden/attach.h>
#include <gpuwarden/common.h>
#include <gpuwarden/hostops.h>
#include <gpuwarden/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gw_verdict {
    GW_VERDICT_PASS = 0,
    GW_VERDICT_FAIL = 1,
    GW_VERDICT_SKIP = 2,
} gw_verdict;

/* "pass", "fail", "skip". */
GW_EXTERN const char *gw_verdict_name(gw_verdict v);

typedef enum gw_step_id {
    GW_STEP_NOT_IN_USE = 0,
    GW_STEP_BIND = 1,
    GW_STEP_RESET = 2,
    GW_STEP_HEALTH = 3,
    GW_STEP_ISOLATION = 4,
    GW_STEP_FIRMWARE = 5,
    GW_STEP_HOOKS = 6,
    /* Added later, so numbered last; it runs right after reset. Results name
     * their steps and list them in run order, never by number. */
    GW_STEP_SCRUB = 7,
} gw_step_id;

#define GW_STEP_COUNT 8

/* "not_in_use", "bind", "reset", "health", "isolation", "firmware", "hooks",
 * "scrub". The pipeline runs not_in_use, bind, reset, scrub, health,
 * isolation, firmware, hooks. */
GW_EXTERN const char *gw_step_name(gw_step_id step);
/* Inverse of gw_step_name(); -EINVAL for an unknown name. */
GW_EXTERN int gw_step_from_name(const char *name, gw_step_id *out);

/* ---- policy ------------------------------------------------------------ */

typedef enum gw_isolation_policy {
    GW_ISOLATION_FAIL = 0,      /* an isolation problem fails the clean-up */
    GW_ISOLATION_WARN = 1,      /* it passes with a warning in the evidence */
} gw_isolation_policy;

/* One allowlist entry: ROM images with this hash are accepted for `id`,
 * "vvvv:dddd:ssss:ssss" (vendor:device:subsystem vendor:subsystem device) or
 * "vvvv:dddd" for every subsystem; lower-case hex. `sha256` is 64 hex digits. */
typedef struct gw_rom_allow {
    const char *id;
    const char *sha256;
} gw_rom_allow;

/* Read an operator allowlist file: one entry per line, "ID SHA256" separated
 * by blanks, ID as in gw_rom_allow (hex digits of either case are accepted
 * and stored lower-case); '#' starts a comment, blank lines are ignored.
 * Several lines may name the same ID (several allowed images). On a bad line
 * returns -EINVAL with "PATH:LINE: what is wrong" and nothing in *out; a
 * missing file is -ENOENT. Free the list with gw_rom_allowlist_free(). */
GW_EXTERN int gw_rom_allowlist_load(const char *path, gw_rom_allow **out, size_t *n);
GW_EXTERN void gw_rom_allowlist_free(gw_rom_allow *list, size_t n);

/* How the reset step resets a model (gw_model_policy.reset). */
typedef enum gw_reset_choice {
    GW_RESET_AUTO = 0,      /* flr when reset_method offers it, else bus (the kernel's own
                             * reset when it lists bus first, else through VFIO) */
    GW_RESET_FLR = 1,       /* the kernel's `reset` only; fails when no FLR is offered */
    GW_RESET_BUS = 2,       /* a secondary bus reset through VFIO hot reset only */
    GW_RESET_FLR_BUS = 3,   /* FLR, then the bus reset */
} gw_reset_choice;

/* How the scrub step clears a model's memory (gw_model_policy.scrub). */
typedef enum gw_scrub_method {
    GW_SCRUB_NONE = 0,      /* no scrub: the step skips */
    GW_SCRUB_BAR = 1,       /* zero a BAR through VFIO, then read it back */
    GW_SCRUB_DRIVER = 2,    /* policy version 3: a round trip through the vendor's host driver,
                             * which runs the model's scrub commands (docs/sanitize.md) */
} gw_scrub_method;

/* "auto", "flr", "bus", "flr+bus" and back; -EINVAL for another name. */
GW_EXTERN const char *gw_reset_choice_name(gw_reset_choice c);
GW_EXTERN int gw_reset_choice_from_name(const char *name, gw_reset_choice *out);
/* "none", "bar", "driver" and back; -EINVAL for another name. */
GW_EXTERN const char *gw_scrub_method_name(gw_scrub_method m);
GW_EXTERN int gw_scrub_method_from_name(const char *name, gw_scrub_method *out);

/* Settings for one GPU model, found by the GPU function's vendor:device.
 * Initialise with GW_MODEL_POLICY_INIT. This is an array element, so its
 * size is part of the policy version: the fields up to scrub_verify_fraction
 * are policy version 2's (gw_model_policy_v2), the driver scrub fields came
 * with version 3. A version-2 policy's models are read as gw_model_policy_v2. */
typedef struct gw_model_policy {
    const char *id;                 /* "vvvv:dddd", lower-case hex */
    gw_reset_choice reset;          /* default GW_RESET_AUTO */
    gw_scrub_method scrub;          /* default GW_SCRUB_NONE */
    /* The function of the GPU's slot whose BAR holds the memory (0-7); -1 =
     * the GPU function itself. It must be managed and on vfio-pci. */
    int scrub_function;
    unsigned int scrub_bar;         /* BAR index 0-5 */
    /* Share of the BAR read back after zeroing, 0 < f <= 1; 1 = every byte,
     * less = that share of its 4 KiB pages, spread evenly over the whole BAR
     * (first and last page always); 0 = 1. */
    double scrub_verify_fraction;

    /* ---- version 3: scrub "driver" ---- */

    /* The kernel driver the GPU function is bound to for the scrub ("nvidia");
     * required for GW_SCRUB_DRIVER. A name of [A-Za-z0-9_-]. */
    const char *scrub_driver;
    /* Optional: a path relative to the device's sysfs directory that must
     * exist before the driver counts as ready ("virtio0", "nvidia/..."), on
     * top of the `driver` link naming it. NULL = the link alone. */
    const char *scrub_driver_ready;
    unsigned int scrub_driver_ready_timeout_ms;     /* 0 = 30 s */
    /* The commands run while the host driver has the device, in order:
     * "CMD ARG... && CMD ARG...". Commands are separated by "&&" (the next
     * runs only when the last exited 0), words by blanks; no quoting, so no
     * word holds a blank or "&&". CMD is an absolute path. Each gets the device's PCI address as
     * its last argument; a nonzero exit fails the scrub. At least one command
     * for GW_SCRUB_DRIVER, at most GW_SCRUB_COMMANDS_MAX. */
    const char *scrub_commands;
    unsigned int scrub_command_timeout_ms;          /* per command; 0 = 120 s */
} gw_model_policy;

#define GW_SCRUB_COMMANDS_MAX 16

#define GW_MODEL_POLICY_INIT { NULL, GW_RESET_AUTO, GW_SCRUB_NONE, -1, 0, 0.0, NULL, NULL, 0, NULL, 0 }

/* gw_model_policy as policy version 2 laid it out: what a version-2 caller's
 * `models` points to. */
typedef struct gw_model_policy_v2 {
    const char *id;
    gw_reset_choice reset;
    gw_scrub_method scrub;
    int scrub_function;
    unsigned int scrub_bar;
    double scrub_verify_fraction;
} gw_model_policy_v2;

/* Set one field of `m` from its text, as an operator writes it in a config
 * file: "reset" (auto, flr, bus, flr+bus), "scrub" (none, bar, driver),
 * "scrub_function" (0-7), "scrub_bar" (0-5), "scrub_verify_fraction"
 * (0 < f <= 1), "scrub_driver" (a driver name), "scrub_driver_ready" (a
 * relative path without "..", or empty for none), "scrub_driver_ready_timeout_s"
 * and "scrub_command_timeout_s" (1-86400 seconds), "scrub_commands" (see
 * gw_model_policy; checked here). -EINVAL with the reason for an unknown key
 * or a bad value; `m` is unchanged on failure; `id` is not set here. String
 * values are not copied: `m` points at `value`, which must outlive it. `m`
 * must be a whole (version 3) gw_model_policy. */
GW_EXTERN int gw_model_policy_set(gw_model_policy *m, const char *key, const char *value);

/* Check one (version 3) model entry the way gw_sanitize_run() checks a
 * policy's: 0, or -EINVAL with the reason naming the setting. A driver scrub
 * whose worst case (ready timeout + commands x command timeout + 60 s for the
 * binds) exceeds `scrub_timeout_ms` (0 = the default 600 s) is refused: the
 * step would be abandoned with the device on the host driver. */
GW_EXTERN int gw_model_policy_check(const gw_model_policy *m, unsigned int scrub_timeout_ms);

/* Entries of gw_sanitize_policy.timeout_ms: the steps policy version 1 knew
 * (not_in_use .. hooks). A step added later has a timeout field of its own. */
#define GW_SANITIZE_POLICY_TIMEOUTS 7

typedef struct gw_sanitize_policy {
    unsigned int version;
    /* Per-step timeouts in milliseconds, indexed by gw_step_id up to
     * GW_STEP_HOOKS (scrub: scrub_timeout_ms); 0 = default (not_in_use 10 s,
     * bind 30 s, reset 60 s, health 10 s, isolation 10 s, firmware 60 s,
     * hooks 600 s). A step past its timeout fails. */
    unsigned int timeout_ms[GW_SANITIZE_POLICY_TIMEOUTS];
    /* Directory of operator hooks; NULL = "/etc/gpuwarden/sanitize.d". It is
     * a path on this machine, not under the host root. */
    const char *hooks_dir;
    unsigned int hook_timeout_ms;           /* per hook; 0 = 60 s */
    gw_isolation_policy isolation;          /* default GW_ISOLATION_FAIL */
    bool allow_no_reset;                    /* no reset method: skip instead of fail */
    const gw_rom_allow *rom_allowlist;
    size_t n_rom_allowlist;
    /* Management: the clean-up writes to a function only when it is managed.
     * When both lists are empty, managed = vendor 0x10de, display class
     * (0x03xx) and already bound to vfio-pci. Otherwise managed = vendor in
     * manage_vendors or address in manage_addresses. */
    const uint16_t *manage_vendors;
    size_t n_manage_vendors;
    const char *const *manage_addresses;
    size_t n_manage_addresses;

    /* ---- version 2 ---- */

    unsigned int scrub_timeout_ms;          /* step scrub; 0 = 600 s */
    /* Per-model reset and scrub settings, at most one per id. A GPU whose
     * model has no entry gets GW_MODEL_POLICY_INIT's: reset auto, no scrub.
     * Bad entries (an id not "vvvv:dddd", a duplicate, a value out of range,
     * scrub driver without a driver or commands) are refused with -EINVAL
     * naming the entry. Version 2: an array of gw_model_policy_v2 (no
     * driver scrub: GW_SCRUB_DRIVER is refused with -EOPNOTSUPP there). */
    const gw_model_policy *models;
    size_t n_models;

    /* ---- version 4 ---- */

    /* The uid that must own the hooks directory and every hook in it; 0 =
     * root, the default and the only sensible value on a host (a hook runs
     * as root). Neither may be writable by group or others. A hook that is
     * not so, or a directory that is not, is refused and the hooks step
     * fails naming the path, the owner and the mode. Tests that run
     * unprivileged name their own uid here. */
    unsigned int hooks_owner_uid;
} gw_sanitize_policy;

/* Version 1 ends at n_manage_addresses; the library still accepts it (no
 * models, default scrub timeout). Version 2 has the same fields as 3, but
 * its models are gw_model_policy_v2. Versions 2 and 3 end at n_models
 * (hooks owned by root). */
#define GW_SANITIZE_POLICY_VERSION 4
#define GW_SANITIZE_POLICY_INIT { GW_SANITIZE_POLICY_VERSION, { 0 }, NULL, 0, GW_ISOLATION_FAIL, false, \
                                  NULL, 0, NULL, 0, NULL, 0, 0, NULL, 0, 0 }

/* ---- request and result ------------------------------------------------ */

typedef struct gw_sanitize_request {
    unsigned int version;
    const char *address;        /* the GPU function, "0000:3b:00.0" */
    const gw_fact *pins;        /* the device's facts (gw_device.facts); may be NULL */
    size_t n_pins;
} gw_sanitize_request;

#define GW_SANITIZE_REQUEST_VERSION 1
#define GW_SANITIZE_REQUEST_INIT { GW_SANITIZE_REQUEST_VERSION, NULL, NULL, 0 }

typedef struct gw_step_result {
    gw_step_id step;
    const char *name;
    gw_verdict verdict;
    const char *evidence;       /* never NULL */
    uint64_t duration_us;
} gw_step_result;

typedef struct gw_sanitize_result gw_sanitize_result;

/* Run the whole pipeline on the calling thread (each step on a thread of its
 * own, so its timeout holds even when a sysfs write blocks). Returns 0 with a
 * result whenever the pipeline ran, whatever the verdict; a negative errno
 * only for bad arguments. `attach` answers not_in_use (gpuwarden/attach.h);
 * NULL fails that step. It must stay alive until the run and any step it
 * abandoned after a timeout have returned. */
GW_EXTERN int gw_sanitize_run(gw_sanitize_result **out, gw_hostops *ops, gw_attach_source *attach,
                              const gw_sanitize_policy *policy, const gw_sanitize_request *request);

/* Whether the policy lets the clean-up write to `address` (see
 * gw_sanitize_policy). 1 = managed, 0 = not, negative errno when the device
 * cannot be read. *why (malloc'd, may be NULL) says why in words. */
GW_EXTERN int gw_sanitize_is_managed(gw_hostops *ops, const gw_sanitize_policy *policy, const char *address,
                                     char **why);

GW_EXTERN void gw_sanitize_result_free(gw_sanitize_result *r);
GW_EXTERN const char *gw_sanitize_result_address(const gw_sanitize_result *r);
/* Wall-clock start and end, milliseconds since the Unix epoch. */
GW_EXTERN int64_t gw_sanitize_result_start_ms(const gw_sanitize_result *r);
GW_EXTERN int64_t gw_sanitize_result_end_ms(const gw_sanitize_result *r);
/* PASS when no step failed (skips allowed), FAIL otherwise. */
GW_EXTERN gw_verdict gw_sanitize_result_verdict(const gw_sanitize_result *r);
/* The steps that ran, in order. */
GW_EXTERN size_t gw_sanitize_result_step_count(const gw_sanitize_result *r);
GW_EXTERN const gw_step_result *gw_sanitize_result_step(const gw_sanitize_result *r, size_t i);
/* The failing step (a gw_step_id), or -1 when the clean-up passed. */
GW_EXTERN int gw_sanitize_result_failed_step(const gw_sanitize_result *r);
/* "<step>: <evidence>" of the failing step; NULL when passed. */
GW_EXTERN const char *gw_sanitize_result_reason(const gw_sanitize_result *r);
/* True when the clean-up failed because the device is, or may be, in use:
 * a VM references it, the attachment source cannot tell, or a process holds
 * its VFIO group open (found in /proc by not_in_use or by the reset step's
 * check, or the kernel refusing the reset step's exclusive open with EBUSY).
 * Nothing is known to be wrong with the device then: do not quarantine it,
 * record the clean-up as aborted and try again later (gpuwardend does).
 * A failure at not_in_use for another reason (its functions unreadable) is
 * not flagged. In the JSON form: "in_use": true, present only when set. */
GW_EXTERN bool gw_sanitize_result_in_use(const gw_sanitize_result *r);
/* Pins after the clean-up: the request's, updated. */
GW_EXTERN size_t gw_sanitize_result_pin_count(const gw_sanitize_result *r);
GW_EXTERN const gw_fact *gw_sanitize_result_pin(const gw_sanitize_result *r, size_t i);
GW_EXTERN const char *gw_sanitize_result_pin_get(const gw_sanitize_result *r, const char *key);
/* The result as a JSON object (schema in docs/sanitize.md); free() it. */
GW_EXTERN int gw_sanitize_result_to_json(const gw_sanitize_result *r, char **out);
/* Parse what gw_sanitize_result_to_json() wrote; -EINVAL with the reason. */
GW_EXTERN int gw_sanitize_result_from_json(gw_sanitize_result **out, const char *json);

/* Record the result with the device in the registry: first every pin
 * ("sanitize.*" key) whose value differs from the device's fact
 * (gw_registry_set_fact), then GW_EVENT_CLEANUP_PASSED, or
 * GW_EVENT_CLEANUP_FAILED with the reason as quarantine reason, with the
 * steps as the device's last clean-up (gw_apply_options.cleanup). `actor`
 * NULL = "system". Returns what the registry returns (-EPERM when no
 * clean-up was started for the device: apply GW_EVENT_CLEANUP_STARTED
 * before running one). */
GW_EXTERN int gw_sanitize_result_apply(const gw_sanitize_result *r, gw_registry *reg, const char *actor);

/* ---- the worker pool ----------------------------------------------------- */

typedef struct gw_cleanup_pool gw_cleanup_pool;

/* Called on a worker thread when a clean-up ends; the callee owns `result`
 * (free it with gw_sanitize_result_free()). */
typedef void (*gw_cleanup_done_fn)(gw_sanitize_result *result, void *userdata);
/* Called when `address` is free for a new clean-up: its run dropped its last
 * reference to the device, after `done` (or later, when a timed-out step
 * finally returns). On whichever thread that was; no pool lock held, and the
 * pool may be asked anything from it. Until then gw_cleanup_pool_busy() is
 * true, so a caller that skipped a device because a sibling was busy learns
 * here when to look again. */
typedef void (*gw_cleanup_freed_fn)(const char *address, void *userdata);

typedef struct gw_cleanup_pool_options {
    unsigned int version;
    unsigned int workers;               /* 0 = 4 */
    gw_hostops *ops;                    /* referenced by the pool */
    /* Borrowed: must outlive the pool and every abandoned step (wait for
     * gw_cleanup_pool_wait_idle() before freeing it). */
    gw_attach_source *attach;
    const gw_sanitize_policy *policy;   /* deep-copied */
    gw_cleanup_done_fn done;
    void *userdata;
    /* Version 2: may be NULL; gets `userdata` too. */
    gw_cleanup_freed_fn freed;
} gw_cleanup_pool_options;

#define GW_CLEANUP_POOL_OPTIONS_VERSION 2
#define GW_CLEANUP_POOL_OPTIONS_INIT { GW_CLEANUP_POOL_OPTIONS_VERSION, 0, NULL, NULL, NULL, NULL, NULL, NULL }

GW_EXTERN int gw_cleanup_pool_new(gw_cleanup_pool **out, const gw_cleanup_pool_options *opts);
/* Queue a clean-up and return at once. -EBUSY when that device already has
 * one queued or running, or a timed-out step of its last one still runs;
 * -ESHUTDOWN while the pool is being freed. The request is copied. */
GW_EXTERN int gw_cleanup_pool_submit(gw_cleanup_pool *pool, const gw_sanitize_request *request);
/* Whether the device has a clean-up queued or running (or an abandoned step
 * still running). Never waits for a clean-up. */
GW_EXTERN bool gw_cleanup_pool_busy(gw_cleanup_pool *pool, const char *address);
/* Clean-ups queued or running. */
GW_EXTERN size_t gw_cleanup_pool_pending(gw_cleanup_pool *pool);
/* Wait until nothing is queued, running or abandoned, and every `freed`
 * callback for them has returned; -ETIMEDOUT after timeout_ms (0 = wait
 * forever). */
GW_EXTERN int gw_cleanup_pool_wait_idle(gw_cleanup_pool *pool, unsigned int timeout_ms);
/* Drop queued clean-ups (their callbacks are not called), wait for running
 * ones to end, free the pool. A step abandoned after its timeout keeps what
 * it needs alive by reference and releases it when it finally returns; its
 * `freed` callback then still runs, after this has returned: `userdata` must
 * outlive it (count done() against freed() to know when), and the callback
 * must not use the freed pool. */
GW_EXTERN void gw_cleanup_pool_free(gw_cleanup_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
