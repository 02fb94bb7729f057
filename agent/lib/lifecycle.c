/* SPDX-License-Identifier: Apache-2.0 */
/* The lifecycle transition table: the only place that decides what an event
 * does to a device. Pure; the registry applies it to records. */
#include <gpuwarden/lifecycle.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static const char *const state_names[GW_STATE_COUNT] = {
    [GW_STATE_DISCOVERED] = "discovered",
    [GW_STATE_SANITIZED] = "sanitized",
    [GW_STATE_ALLOCATABLE] = "allocatable",
    [GW_STATE_ATTACHED] = "attached",
    [GW_STATE_QUARANTINED] = "quarantined",
};

static const char *const event_names[GW_EVENT_COUNT] = {
    [GW_EVENT_FOUND] = "found",
    [GW_EVENT_CLEANUP_STARTED] = "cleanup_started",
    [GW_EVENT_CLEANUP_PASSED] = "cleanup_passed",
    [GW_EVENT_CLEANUP_FAILED] = "cleanup_failed",
    [GW_EVENT_CLEANUP_ABORTED] = "cleanup_aborted",
    [GW_EVENT_PUBLISHED] = "published",
    [GW_EVENT_ATTACH_SEEN] = "attach_seen",
    [GW_EVENT_DETACH_SEEN] = "detach_seen",
    [GW_EVENT_FAULT] = "fault",
    [GW_EVENT_QUARANTINE] = "quarantine",
    [GW_EVENT_RELEASE] = "release",
    [GW_EVENT_SANITIZE] = "sanitize",
    [GW_EVENT_GONE] = "gone",
    [GW_EVENT_BACK] = "back",
};

GW_EXTERN const char *gw_state_name(gw_state state)
{
    if (state == GW_STATE_NONE)
        return "none";
    if ((unsigned)state >= GW_STATE_COUNT)
        return "invalid";
    return state_names[state];
}

GW_EXTERN int gw_state_from_name(const char *name, gw_state *out)
{
    if (name && !strcmp(name, "none")) {
        *out = GW_STATE_NONE;
        return 0;
    }
    for (int s = 0; name && s < GW_STATE_COUNT; s++) {
        if (!strcmp(name, state_names[s])) {
            *out = (gw_state)s;
            return 0;
        }
    }
    return gw_error_set(-EINVAL, "unknown state '%s'", name ? name : "(null)");
}

GW_EXTERN const char *gw_event_name(gw_event event)
{
    if ((unsigned)event >= GW_EVENT_COUNT)
        return "invalid";
    return event_names[event];
}

GW_EXTERN int gw_event_from_name(const char *name, gw_event *out)
{
    for (int e = 0; name && e < GW_EVENT_COUNT; e++) {
        if (!strcmp(name, event_names[e])) {
            *out = (gw_event)e;
            return 0;
        }
    }
    return gw_error_set(-EINVAL, "unknown event '%s'", name ? name : "(null)");
}

GW_EXTERN const char *gw_flag_name(unsigned flag)
{
    switch (flag) {
    case GW_FLAG_DIRTY: return "dirty";
    case GW_FLAG_CLEANING: return "cleaning";
    case GW_FLAG_MISSING: return "missing";
    default: return NULL;
    }
}

GW_EXTERN const char *gw_condition_format(gw_state state, unsigned flags, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s", gw_state_name(state));
    for (unsigned f = 1; f <= GW_FLAG_MISSING; f <<= 1)
        if ((flags & f) && n >= 0 && (size_t)n < len)
            n += snprintf(buf + n, len - (size_t)n, "+%s", gw_flag_name(f));
    return buf;
}

/*
 * One cell per (state, event): either a move (next state, flags to set,
 * flags to clear) or a rejection with its reason. The per-event guards on
 * the flags (below) are checked first.
 */
typedef struct cell {
    int err;                /* 0, -EPERM, -EALREADY or -EBUSY */
    gw_state to;
    unsigned set, clear;
    const char *why;
} cell;

enum { D = GW_FLAG_DIRTY, C = GW_FLAG_CLEANING, M = GW_FLAG_MISSING };

#define GO(state, set_, clear_) { 0, GW_STATE_##state, (set_), (clear_), NULL }
#define NO(why_) { -EPERM, GW_STATE_NONE, 0, 0, (why_) }
#define HAS(why_) { -EALREADY, GW_STATE_NONE, 0, 0, (why_) }

#define KNOWN HAS("the device is already known")
#define NOT_ATTACHED HAS("the device is not attached")
#define NOT_QUARANTINED NO("only a quarantined device can be released")
#define NOT_SANITIZED NO("only a sanitized device can be published")
#define NO_CLEANUP NO("no clean-up is running")
#define IN_USE NO("a VM references the device; it is cleaned up after detach")
#define STICKY NO("quarantined: only an operator release leaves quarantine")
#define ON_BUS HAS("the device is on the bus")

static const cell table[GW_STATE_COUNT][GW_EVENT_COUNT] = {
    [GW_STATE_DISCOVERED] = {
        [GW_EVENT_FOUND] = KNOWN,
        [GW_EVENT_CLEANUP_STARTED] = GO(DISCOVERED, C, 0),
        [GW_EVENT_CLEANUP_PASSED] = GO(SANITIZED, 0, D | C),
        [GW_EVENT_CLEANUP_FAILED] = GO(QUARANTINED, 0, C),
        [GW_EVENT_CLEANUP_ABORTED] = GO(DISCOVERED, D, C),
        [GW_EVENT_PUBLISHED] = NOT_SANITIZED,
        [GW_EVENT_ATTACH_SEEN] = GO(ATTACHED, D, C),     /* a running clean-up is void */
        [GW_EVENT_DETACH_SEEN] = NOT_ATTACHED,
        [GW_EVENT_FAULT] = GO(QUARANTINED, 0, C),
        [GW_EVENT_QUARANTINE] = GO(QUARANTINED, 0, C),
        [GW_EVENT_RELEASE] = NOT_QUARANTINED,
        [GW_EVENT_SANITIZE] = GO(DISCOVERED, D, 0),       /* the request is recorded */
        /* Off the bus unasked: a fault (the kernel lab's device_del; a GPU
         * "fallen off the bus"). What comes back is checked after a release. */
        [GW_EVENT_GONE] = GO(QUARANTINED, D | M, C),
        [GW_EVENT_BACK] = GO(DISCOVERED, 0, M),
    },
    [GW_STATE_SANITIZED] = {
        [GW_EVENT_FOUND] = KNOWN,
        [GW_EVENT_CLEANUP_STARTED] = NO("already sanitized: request a new clean-up with sanitize"),
        [GW_EVENT_CLEANUP_PASSED] = NO_CLEANUP,
        [GW_EVENT_CLEANUP_FAILED] = NO_CLEANUP,
        [GW_EVENT_CLEANUP_ABORTED] = NO_CLEANUP,
        [GW_EVENT_PUBLISHED] = GO(ALLOCATABLE, 0, 0),
        [GW_EVENT_ATTACH_SEEN] = GO(ATTACHED, D, 0),
        [GW_EVENT_DETACH_SEEN] = NOT_ATTACHED,
        [GW_EVENT_FAULT] = GO(QUARANTINED, 0, 0),
        [GW_EVENT_QUARANTINE] = GO(QUARANTINED, 0, 0),
        [GW_EVENT_RELEASE] = NOT_QUARANTINED,
        [GW_EVENT_SANITIZE] = GO(DISCOVERED, D, 0),
        [GW_EVENT_GONE] = GO(QUARANTINED, D | M, 0),
        [GW_EVENT_BACK] = ON_BUS,
    },
    [GW_STATE_ALLOCATABLE] = {
        [GW_EVENT_FOUND] = KNOWN,
        [GW_EVENT_CLEANUP_STARTED] = NO("already allocatable: request a new clean-up with sanitize"),
        [GW_EVENT_CLEANUP_PASSED] = NO_CLEANUP,
        [GW_EVENT_CLEANUP_FAILED] = NO_CLEANUP,
        [GW_EVENT_CLEANUP_ABORTED] = NO_CLEANUP,
        [GW_EVENT_PUBLISHED] = HAS("already allocatable"),
        [GW_EVENT_ATTACH_SEEN] = GO(ATTACHED, D, 0),
        [GW_EVENT_DETACH_SEEN] = NOT_ATTACHED,
        [GW_EVENT_FAULT] = GO(QUARANTINED, 0, 0),
        [GW_EVENT_QUARANTINE] = GO(QUARANTINED, 0, 0),
        [GW_EVENT_RELEASE] = NOT_QUARANTINED,
        [GW_EVENT_SANITIZE] = GO(DISCOVERED, D, 0),
        [GW_EVENT_GONE] = GO(QUARANTINED, D | M, 0),
        [GW_EVENT_BACK] = ON_BUS,
    },
    [GW_STATE_ATTACHED] = {
        [GW_EVENT_FOUND] = KNOWN,
        [GW_EVENT_CLEANUP_STARTED] = IN_USE,
        [GW_EVENT_CLEANUP_PASSED] = NO_CLEANUP,
        [GW_EVENT_CLEANUP_FAILED] = NO_CLEANUP,
        [GW_EVENT_CLEANUP_ABORTED] = NO_CLEANUP,
        [GW_EVENT_PUBLISHED] = NOT_SANITIZED,
        [GW_EVENT_ATTACH_SEEN] = HAS("already attached"),
        [GW_EVENT_DETACH_SEEN] = GO(DISCOVERED, D, 0),
        [GW_EVENT_FAULT] = GO(QUARANTINED, 0, 0),
        [GW_EVENT_QUARANTINE] = GO(QUARANTINED, 0, 0),
        [GW_EVENT_RELEASE] = NOT_QUARANTINED,
        [GW_EVENT_SANITIZE] = IN_USE,
        [GW_EVENT_GONE] = GO(ATTACHED, M, 0),    /* still referenced: still reported */
        [GW_EVENT_BACK] = GO(ATTACHED, 0, M),
    },
    [GW_STATE_QUARANTINED] = {
        [GW_EVENT_FOUND] = KNOWN,
        [GW_EVENT_CLEANUP_STARTED] = STICKY,
        [GW_EVENT_CLEANUP_PASSED] = NO_CLEANUP,
        [GW_EVENT_CLEANUP_FAILED] = NO_CLEANUP,
        [GW_EVENT_CLEANUP_ABORTED] = NO_CLEANUP,
        [GW_EVENT_PUBLISHED] = STICKY,
        [GW_EVENT_ATTACH_SEEN] = STICKY,
        [GW_EVENT_DETACH_SEEN] = STICKY,
        [GW_EVENT_FAULT] = HAS("already quarantined"),
        [GW_EVENT_QUARANTINE] = HAS("already quarantined"),
        [GW_EVENT_RELEASE] = GO(DISCOVERED, D, 0),
        [GW_EVENT_SANITIZE] = NO("quarantined: release it first"),
        [GW_EVENT_GONE] = GO(QUARANTINED, D | M, 0),
        [GW_EVENT_BACK] = GO(QUARANTINED, 0, M),
    },
};

/* Flag guards that hold whatever the state: checked before the cell. */
static const cell *guard(unsigned flags, gw_event event)
{
    static const cell running = { -EBUSY, GW_STATE_NONE, 0, 0, "a clean-up is already running" };
    static const cell off_bus = NO("the device is not on the bus");
    static const cell no_cleanup = NO_CLEANUP;
    static const cell missing = HAS("already missing from the bus");
    static const cell on_bus = ON_BUS;

    switch (event) {
    case GW_EVENT_CLEANUP_STARTED:
    case GW_EVENT_SANITIZE:
        if (flags & C)
            return &running;
        if (flags & M)
            return &off_bus;
        return NULL;
    case GW_EVENT_CLEANUP_PASSED:
    case GW_EVENT_CLEANUP_FAILED:
    case GW_EVENT_CLEANUP_ABORTED:
        return (flags & C) ? NULL : &no_cleanup;
    case GW_EVENT_GONE:
        return (flags & M) ? &missing : NULL;
    case GW_EVENT_BACK:
        return (flags & M) ? NULL : &on_bus;
    default:
        return NULL;
    }
}

/* The conditions the table can produce; anything else is a caller's bug. */
static bool condition_valid(gw_state state, unsigned flags)
{
    if (flags & ~GW_FLAG_ALL)
        return false;
    switch (state) {
    case GW_STATE_DISCOVERED:
        return (flags & D) && (flags & (C | M)) != (C | M);
    case GW_STATE_SANITIZED:
    case GW_STATE_ALLOCATABLE:
        return flags == 0;
    case GW_STATE_ATTACHED:
        return (flags & (D | C)) == D;
    case GW_STATE_QUARANTINED:
        return !(flags & C) && (!(flags & M) || (flags & D));
    default:
        return false;
    }
}

GW_EXTERN int gw_lifecycle_next(gw_state state, unsigned flags, gw_event event,
                                gw_state *next_state, unsigned *next_flags)
{
    char cond[64];
    if ((unsigned)event >= GW_EVENT_COUNT)
        return gw_error_set(-EINVAL, "unknown event %d", (int)event);
    if (!condition_valid(state, flags))
        return gw_error_set(-EINVAL, "%s: inconsistent condition %s (flags 0x%x)",
                            gw_event_name(event), gw_condition_format(state, flags, cond, sizeof cond),
                            flags);
    const cell *c = guard(flags, event);
    if (!c || c->err == 0)
        c = &table[state][event];
    if (c->err)
        return gw_error_set(c->err, "%s rejected in state %s: %s", gw_event_name(event),
                            gw_condition_format(state, flags, cond, sizeof cond), c->why);
    if (next_state)
        *next_state = c->to;
    if (next_flags)
        *next_flags = (flags | c->set) & ~c->clear;
    return 0;
}
