/*
 * gpuwarden/lifecycle.h - the GPU lifecycle.
 *
 *   discovered --(clean-up passed)--> sanitized --(published)--> allocatable
 *   allocatable --(attach seen)--> attached --(detach seen)--> discovered + dirty
 *   any --(failed check, health fault, operator)--> quarantined --(release)--> discovered
 *
 * Only `allocatable` devices are offered free; only a completed, passing
 * clean-up leads there.
 */
#ifndef GPUWARDEN_LIFECYCLE_H
#define GPUWARDEN_LIFECYCLE_H

#include <gpuwarden/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gw_state {
    GW_STATE_DISCOVERED = 0,
    GW_STATE_SANITIZED = 1,
    GW_STATE_ALLOCATABLE = 2,
    GW_STATE_ATTACHED = 3,
    GW_STATE_QUARANTINED = 4,
} gw_state;

#define GW_STATE_COUNT 5

/* "discovered", "sanitized", "allocatable", "attached", "quarantined". */
GW_EXTERN const char *gw_state_name(gw_state state);
/* Inverse of gw_state_name(); -EINVAL for an unknown name. */
GW_EXTERN int gw_state_from_name(const char *name, gw_state *out);

#ifdef __cplusplus
}
#endif
#endif
