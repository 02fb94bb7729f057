/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/registry.h - every GPU's lifecycle record, persisted crash-safe
 * and audited.
 *
 * The registry holds one record per device identity (address + PCI ids +
 * Device Serial Number when the device has one). It applies lifecycle events
 * through the one transition table (gpuwarden/lifecycle.h) and, for every
 * transition, BEFORE the call returns and before the transition callback runs:
 *   1. writes the whole state as a new checkpoint (<state_dir>/checkpoint:
 *      temp file, fsync, rename, fsync of the directory), and
 *   2. appends the transition to the audit log (<state_dir>/audit.log, JSON
 *      lines, fsync'd for every move into or out of quarantine).
 * The checkpoint also carries the last transitions, so a crash between 1 and
 * 2 is repaired when the registry is next opened: the audit log then holds
 * exactly the persisted transitions, numbered 1, 2, 3, ... without a gap.
 *
 *     gw_registry_options o = GW_REGISTRY_OPTIONS_INIT;
 *     o.state_dir = "/var/lib/gpuwarden";
 *     gw_registry *reg;
 *     if (gw_registry_open(&reg, &o) < 0)      // refuses a corrupt checkpoint
 *         errx(1, "%s", gw_error_message());
 *     gw_apply_options a = GW_APPLY_OPTIONS_INIT;
 *     a.actor = "operator:alice(1000)";
 *     a.reason = "fan noise";
 *     if (gw_registry_apply(reg, "0000:3b:00.0", GW_EVENT_QUARANTINE, &a, NULL) < 0)
 *         warnx("%s", gw_error_message());
 *     gw_registry_free(reg);
 *
 * Thread safety: one registry may be used from any number of threads; every
 * call is serialised by the registry's lock (the daemon's request thread,
 * clean-up workers and libvirt thread share one). Two processes cannot open
 * the same state directory for writing (-EBUSY): a lock file guards it.
 *
 * Recovery at open: a record whose clean-up was running (GW_FLAG_CLEANING)
 * gets GW_EVENT_CLEANUP_ABORTED, so it needs a clean-up again
 * (gw_device_needs_cleanup()); attached stays attached until the VM check
 * says otherwise; quarantined stays quarantined; dirty stays dirty.
 */
#ifndef GPUWARDEN_REGISTRY_H
#define GPUWARDEN_REGISTRY_H

#include <gpuwarden/common.h>
#include <gpuwarden/lifecycle.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The default state directory of the daemon. The library never uses it on
 * its own: gw_registry_options.state_dir must name it. */
#define GW_DEFAULT_STATE_DIR "/var/lib/gpuwarden"

/* The checkpoint is corrupt (bad magic, checksum, length, JSON or content):
 * refused, never discarded; gw_registry_reset_state() moves it aside. */
#define GW_ESTATE_CORRUPT (-EBADMSG)
/* The checkpoint was written by a format version this build cannot read. */
#define GW_ESTATE_VERSION (-EPROTONOSUPPORT)

/* What makes a device this device. Two cards at one address with the same
 * ids and no serial number cannot be told apart and are one device; a card
 * moved to another address is a new device. */
typedef struct gw_identity {
    char address[GW_ADDR_LEN];          /* "0000:3b:00.0" */
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_device_id;
    bool dsn_present;
    uint64_t dsn;                       /* PCIe Device Serial Number */
} gw_identity;

/* True when both name the same device (every field above equal). */
GW_EXTERN bool gw_identity_equal(const gw_identity *a, const gw_identity *b);
/* "0000:3b:00.0 [10de:2330 10de:16c1 dsn 0123456789abcdef]" into buf (at
 * least 64 bytes); returns buf. */
GW_EXTERN const char *gw_identity_format(const gw_identity *id, char *buf, size_t len);

/* One step of a clean-up as it is kept with the device (the clean-up
 * module's own result converts to it). */
typedef struct gw_cleanup_step {
    const char *name;           /* "reset", "firmware", ... (1..64 bytes) */
    const char *verdict;        /* "pass", "fail" or "skip" */
    const char *evidence;       /* what was seen, in words; "" when none */
    uint64_t duration_ms;
} gw_cleanup_step;

/* The last clean-up of a device. start_ms == 0: none has finished yet. */
typedef struct gw_cleanup_result {
    int64_t start_ms, end_ms;   /* wall clock, ms since the epoch */
    bool passed;
    const gw_cleanup_step *steps;
    size_t n_steps;
} gw_cleanup_result;

/* A small persisted fact about a device, pinned by the clean-up module
 * ("rom_sha256", "link_width_first", "aer_fatal_baseline", ...). */
typedef struct gw_fact {
    const char *key;
    const char *value;
} gw_fact;

/* A snapshot of one device record. Every string belongs to the snapshot and
 * lives until gw_device_free(); none is NULL ("" when empty). */
typedef struct gw_device {
    gw_identity identity;
    gw_state state;
    unsigned flags;                 /* GW_FLAG_DIRTY | GW_FLAG_CLEANING | GW_FLAG_MISSING */
    uint64_t seq;                   /* sequence number of its last transition */
    int64_t since_ms;               /* time of its last transition */
    gw_event last_event;
    const char *actor;              /* who caused the last transition */
    const char *reason;             /* why ("" when none given) */
    const char *evidence;
    const char *quarantine_reason;  /* while quarantined: why it was quarantined */
    const char *quarantine_actor;
    int64_t quarantine_ms;          /* while quarantined: since when; else 0 */
    int64_t found_ms;               /* when the record was created */
    gw_cleanup_result cleanup;      /* the last finished clean-up */
    const gw_fact *facts;           /* sorted by key */
    size_t n_facts;
} gw_device;

GW_EXTERN void gw_device_free(gw_device *dev);
/* Free an array from gw_registry_list() and every snapshot in it. */
GW_EXTERN void gw_device_list_free(gw_device **list, size_t n);
/* A deep copy (for callers keeping the snapshot a callback was given). */
GW_EXTERN gw_device *gw_device_copy(const gw_device *dev);
/* The value of a pinned fact, or NULL. */
GW_EXTERN const char *gw_device_fact(const gw_device *dev, const char *key);
/* True when the device waits for a clean-up: discovered, present, none running. */
GW_EXTERN bool gw_device_needs_cleanup(const gw_device *dev);
/* The record as a JSON object (the checkpoint's device schema, see
 * docs/lifecycle.md); the caller frees the string with free(). */
GW_EXTERN int gw_device_to_json(const gw_device *dev, char **out);

/* One transition, as announced to the callback and written to the audit log.
 * For GW_EVENT_FOUND `from` is GW_STATE_NONE. */
typedef struct gw_transition {
    uint64_t seq;               /* 1, 2, 3, ... per state directory, never reused */
    int64_t time_ms;            /* wall clock, ms since the epoch */
    gw_identity device;
    gw_event event;
    gw_state from, to;
    unsigned from_flags, to_flags;
    const char *actor;          /* "system", "operator:<name>(<uid>)", ... */
    const char *reason;         /* "" when none */
    const char *evidence;       /* "" when none */
} gw_transition;

/* The transition as one JSON object (one audit log line, without the
 * newline); the caller frees the string with free(). */
GW_EXTERN int gw_transition_to_json(const gw_transition *t, char **out);

typedef struct gw_registry gw_registry;

typedef struct gw_registry_options {
    unsigned int version;
    /* Where the checkpoint, audit log and lock file live; created (0700) when
     * absent. NULL: in memory only, nothing persisted or audited. */
    const char *state_dir;
    /* Load and check only: no lock taken, no recovery, no audit repair;
     * every change fails with -EROFS. */
    bool read_only;
    /* Version 2: audit log rotation. When audit.log reaches
     * audit_segment_bytes it becomes audit.log.1 (audit.log.1 becomes .2,
     * ...) and a new audit.log is started; audit_segments (1..100000) rotated
     * segments are kept, older ones deleted. 0 bytes: never rotated (the log
     * grows without bound, as with version 1). gw_audit_read() reads every
     * segment kept (gpuwarden/audit.h). */
    uint64_t audit_segment_bytes;
    unsigned int audit_segments;
} gw_registry_options;

#define GW_REGISTRY_OPTIONS_VERSION 2
#define GW_REGISTRY_OPTIONS_INIT { GW_REGISTRY_OPTIONS_VERSION, NULL, false, 0, 0 }

/*
 * Open the registry: load <state_dir>/checkpoint (none = empty registry),
 * then, unless read-only, take the directory's lock, complete the audit log
 * from the checkpoint and recover interrupted clean-ups (see above).
 * Errors: GW_ESTATE_CORRUPT or GW_ESTATE_VERSION naming the checkpoint's
 * path (nothing is changed or moved); -EBUSY when another process holds the
 * directory; -errno for I/O errors.
 */
GW_EXTERN int gw_registry_open(gw_registry **out, const gw_registry_options *opts);
/* Close (every transition is already on disk). NULL is accepted. */
GW_EXTERN void gw_registry_free(gw_registry *reg);

/*
 * Move a checkpoint aside, to <state_dir>/checkpoint.corrupt-<UTC time>, so
 * that the next open starts empty (the daemon's --reset-state). The audit
 * log is kept and its numbering continues. *moved_to (may be NULL) gets the
 * new path (free() it), or NULL when there was no checkpoint. -EBUSY when a
 * registry holds the directory.
 */
GW_EXTERN int gw_registry_reset_state(const char *state_dir, char **moved_to);

/* Called after each transition is persisted and audited, on the thread that
 * caused it, in sequence order, with the registry's lock held: it must not
 * call the registry, and should be quick (queue the event and return). `after`
 * is the record after the transition. Both are valid during the call only. */
typedef void (*gw_transition_cb)(const gw_transition *t, const gw_device *after, void *userdata);
GW_EXTERN void gw_registry_set_callback(gw_registry *reg, gw_transition_cb cb, void *userdata);

typedef struct gw_apply_options {
    unsigned int version;
    const char *actor;      /* NULL = "system" */
    const char *reason;     /* required for QUARANTINE, FAULT and CLEANUP_FAILED */
    const char *evidence;   /* optional */
    /* Non-zero: apply only if the device's last transition is still this
     * one (its gw_device.seq), else -ESTALE. Lets the daemon publish an
     * inventory generation without racing a later transition. */
    uint64_t if_seq;
    /* With CLEANUP_PASSED / CLEANUP_FAILED: the result, stored with the
     * record in the same checkpoint as the transition (-EINVAL for a step
     * without a name or with a verdict other than pass/fail/skip). */
    const gw_cleanup_result *cleanup;
} gw_apply_options;

#define GW_APPLY_OPTIONS_VERSION 1
#define GW_APPLY_OPTIONS_INIT { GW_APPLY_OPTIONS_VERSION, NULL, NULL, NULL, 0, NULL }

/* Reason and evidence longer than this are cut (and say so). */
#define GW_TEXT_MAX 8192

/*
 * Apply `event` to the device at `address` (the record of the device on the
 * bus there, else the most recently changed missing one). Returns 0 once
 * the transition is persisted (and its audit line written: should that
 * write fail, the failure is logged and retried, the transition stands);
 * *seq (may be NULL) gets its
 * sequence number. Errors, with nothing changed: -ENOENT (no such device),
 * -EPERM / -EBUSY / -EALREADY (the table refuses; see gw_lifecycle_next()),
 * -EINVAL
 * (reason missing, GW_EVENT_FOUND or GW_EVENT_BACK, which only
 * gw_registry_observe() knows how to apply), -ESTALE (if_seq), -EROFS
 * (read-only), -errno when the checkpoint cannot be written.
 */
GW_EXTERN int gw_registry_apply(gw_registry *reg, const char *address, gw_event event,
                                const gw_apply_options *opts, uint64_t *seq);

/* One transition of gw_registry_apply_many(): in address, event, opts
 * (NULL: the defaults); out result (0 or -errno, as gw_registry_apply()
 * returns it) and seq (its sequence number when applied). */
typedef struct gw_apply_item {
    const char *address;
    gw_event event;
    const gw_apply_options *opts;
    int result;
    uint64_t seq;
} gw_apply_item;

/*
 * gw_registry_apply() for each of the n items, in order, persisted together:
 * one checkpoint write per 32 transitions (the checkpoint's journal holds
 * them until the audit log does), each announced only once written. An item
 * the table refuses is skipped with its error. Returns the number applied,
 * or -errno when a write failed (the items it held, and every one after it,
 * are not applied: their result says why).
 */
GW_EXTERN int gw_registry_apply_many(gw_registry *reg, gw_apply_item *items, size_t n);

/*
 * A scan saw `id` on the bus. Unknown identity: a new record (GW_EVENT_FOUND);
 * first, if another device is on the bus at that address in the records, it
 * gets GW_EVENT_GONE ("replaced by ..."), and the new record's reason names
 * it. Known and missing: GW_EVENT_BACK. Known and present: nothing.
 * Returns the number of transitions made (0, 1 or 2) or -errno.
 */
GW_EXTERN int gw_registry_observe(gw_registry *reg, const gw_identity *id, const char *actor);

/*
 * A whole scan: gw_registry_observe() for each of the n identities, then
 * GW_EVENT_GONE for every present record not among them. Returns the number
 * of transitions or -errno (-EINVAL when two identities share an address).
 */
GW_EXTERN int gw_registry_sync(gw_registry *reg, const gw_identity *present, size_t n,
                               const char *actor);

/* Pin (value non-NULL) or drop (NULL) a fact of the device at `address`;
 * persisted before returning, not a transition (no audit record). */
GW_EXTERN int gw_registry_set_fact(gw_registry *reg, const char *address, const char *key,
                                   const char *value);

/* One fact to pin (value non-NULL) or drop (NULL) at a device's address. */
typedef struct gw_fact_pin {
    const char *address;
    const char *key;
    const char *value;
} gw_fact_pin;

/* gw_registry_set_fact() for each of the n pins, persisted together in one
 * checkpoint write (none when nothing changes): either every change is on
 * disk and in memory, or none is. -ENOENT (a device unknown), -EINVAL,
 * -EROFS or -errno, with nothing changed. */
GW_EXTERN int gw_registry_set_facts(gw_registry *reg, const gw_fact_pin *pins, size_t n);

/* A snapshot of the device at `address` (as gw_registry_apply() picks it);
 * -ENOENT when none. Free with gw_device_free(). */
GW_EXTERN int gw_registry_get(gw_registry *reg, const char *address, gw_device **out);
/* Snapshots of every record, missing ones included, sorted by address, then
 * present before missing, then newest first. Free with gw_device_list_free(). */
GW_EXTERN int gw_registry_list(gw_registry *reg, gw_device ***out, size_t *n);
/* The sequence number of the last transition (0 when none). */
GW_EXTERN uint64_t gw_registry_seq(gw_registry *reg);
/* A number that grows with every change of the records in memory
 * (transitions and facts alike); read without waiting for the registry's
 * lock, so that a reader can tell at once whether what it built from the
 * records is still current. */
GW_EXTERN uint64_t gw_registry_version(gw_registry *reg);
/* How many times this registry has written its checkpoint since it was opened. */
GW_EXTERN uint64_t gw_registry_checkpoint_writes(gw_registry *reg);
/* The state directory (NULL for an in-memory registry). */
GW_EXTERN const char *gw_registry_state_dir(const gw_registry *reg);

#ifdef __cplusplus
}
#endif
#endif
