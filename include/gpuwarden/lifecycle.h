/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpuwarden/lifecycle.h - the GPU lifecycle: states, flags, events and the
 * one transition table (docs/lifecycle.md draws it in full).
 *
 *   discovered --(clean-up passed)--> sanitized --(published)--> allocatable
 *   allocatable --(attach seen)--> attached --(detach seen)--> discovered + dirty
 *   any --(failed clean-up, health fault, operator)--> quarantined --(release)--> discovered + dirty
 *
 * A device's condition is its state plus three flags:
 *   GW_FLAG_DIRTY     it may hold a previous tenant's data or an unchecked
 *                     configuration: set when the device is found, seen
 *                     attached, detached, released, asked to be sanitized or
 *                     lost from the bus; only a passing clean-up clears it.
 *   GW_FLAG_CLEANING  a clean-up is running (persisted: a restart in the
 *                     middle of one means clean-up again).
 *   GW_FLAG_MISSING   the device is not on the bus now; its record is kept
 *                     (a quarantine survives unplug and replug).
 *
 * Invariants the table guarantees (and the tests pin down):
 *   - allocatable is reached only from sanitized, and sanitized only by a
 *     passing clean-up, which is only accepted while one is running on a
 *     present, not quarantined device; every dirtying event leaves sanitized
 *     and allocatable. So a device is allocatable only after a passing
 *     clean-up since its last discovery, detach, release or loss.
 *   - quarantined is left only by GW_EVENT_RELEASE; nothing else, missing
 *     from the bus and coming back included, changes that.
 *
 * gw_lifecycle_next() is the table, pure (no I/O, no locks). The registry
 * (gpuwarden/registry.h) applies it to device records, persists and audits.
 */
#ifndef GPUWARDEN_LIFECYCLE_H
#define GPUWARDEN_LIFECYCLE_H

#include <gpuwarden/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gw_state {
    GW_STATE_NONE = -1,         /* no record yet: the `from` of GW_EVENT_FOUND */
    GW_STATE_DISCOVERED = 0,
    GW_STATE_SANITIZED = 1,
    GW_STATE_ALLOCATABLE = 2,
    GW_STATE_ATTACHED = 3,
    GW_STATE_QUARANTINED = 4,
} gw_state;

#define GW_STATE_COUNT 5

/* "discovered", "sanitized", "allocatable", "attached", "quarantined";
 * "none" for GW_STATE_NONE, "invalid" for anything else. */
GW_EXTERN const char *gw_state_name(gw_state state);
/* Inverse of gw_state_name() (the five states and "none"); -EINVAL for an
 * unknown name. */
GW_EXTERN int gw_state_from_name(const char *name, gw_state *out);

/* Flags of a device's condition (see above). */
#define GW_FLAG_DIRTY    (1u << 0)
#define GW_FLAG_CLEANING (1u << 1)
#define GW_FLAG_MISSING  (1u << 2)
#define GW_FLAG_ALL      (GW_FLAG_DIRTY | GW_FLAG_CLEANING | GW_FLAG_MISSING)

/* "dirty", "cleaning", "missing" for a single flag; NULL otherwise. */
GW_EXTERN const char *gw_flag_name(unsigned flag);

typedef enum gw_event {
    GW_EVENT_FOUND = 0,             /* a scan found a device with no record */
    GW_EVENT_CLEANUP_STARTED = 1,   /* the clean-up pipeline starts (sets CLEANING) */
    GW_EVENT_CLEANUP_PASSED = 2,    /* every step passed: -> sanitized, clean */
    GW_EVENT_CLEANUP_FAILED = 3,    /* a step failed: -> quarantined */
    GW_EVENT_CLEANUP_ABORTED = 4,   /* stopped without a verdict (restart, shutdown): clean up again */
    GW_EVENT_PUBLISHED = 5,         /* the inventory generation holding it reached Placement: -> allocatable */
    GW_EVENT_ATTACH_SEEN = 6,       /* a VM references it */
    GW_EVENT_DETACH_SEEN = 7,       /* no VM references it any more: -> discovered, dirty */
    GW_EVENT_FAULT = 8,             /* a health check failed: -> quarantined */
    GW_EVENT_QUARANTINE = 9,        /* operator: -> quarantined (reason required) */
    GW_EVENT_RELEASE = 10,          /* operator: quarantined -> discovered, dirty */
    GW_EVENT_SANITIZE = 11,         /* operator: request a clean-up (sanitized/allocatable -> discovered, dirty) */
    GW_EVENT_GONE = 12,             /* no longer on the bus (sets MISSING) */
    GW_EVENT_BACK = 13,             /* the same device is on the bus again (clears MISSING) */
} gw_event;

#define GW_EVENT_COUNT 14

/* "found", "cleanup_started", "cleanup_passed", "cleanup_failed",
 * "cleanup_aborted", "published", "attach_seen", "detach_seen", "fault",
 * "quarantine", "release", "sanitize", "gone", "back"; "invalid" otherwise. */
GW_EXTERN const char *gw_event_name(gw_event event);
/* Inverse of gw_event_name(); -EINVAL for an unknown name. */
GW_EXTERN int gw_event_from_name(const char *name, gw_event *out);

/* The condition of a newly found device: discovered + dirty. */
#define GW_LIFECYCLE_INITIAL_STATE GW_STATE_DISCOVERED
#define GW_LIFECYCLE_INITIAL_FLAGS GW_FLAG_DIRTY

/*
 * The transition table: what `event` does to a device in `state` with
 * `flags`. On success stores the next state and flags and returns 0 (the
 * next condition may equal the current one: GW_EVENT_SANITIZE on a dirty
 * discovered device records the request and changes nothing else).
 *
 * Errors (gw_error_message() says which event, which condition and why):
 *   -EPERM     the event is illegal in this condition (a clean-up result
 *              with no clean-up running, attach seen on a quarantined
 *              device, release of a device that is not quarantined, ...);
 *   -EBUSY     a clean-up is running (cleanup_started, sanitize);
 *   -EALREADY  the device is already where the event would take it (attach
 *              seen while attached, gone while missing, quarantine while
 *              quarantined, found for a known device): callers that only
 *              mirror reality may ignore it;
 *   -EINVAL    unknown state or event, or flags outside GW_FLAG_ALL.
 * Nothing is stored on error. next_state/next_flags may be NULL.
 */
GW_EXTERN int gw_lifecycle_next(gw_state state, unsigned flags, gw_event event,
                                gw_state *next_state, unsigned *next_flags);

/* Write "discovered+dirty+missing" style text for a condition into buf
 * (at least 48 bytes); returns buf. */
GW_EXTERN const char *gw_condition_format(gw_state state, unsigned flags, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
