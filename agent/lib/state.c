#include <gpuwarden/lifecycle.h>
#include <string.h>

#include "util.h"

static const char *const state_names[GW_STATE_COUNT] = {
    [GW_STATE_DISCOVERED] = "discovered",
    [GW_STATE_SANITIZED] = "sanitized",
    [GW_STATE_ALLOCATABLE] = "allocatable",
    [GW_STATE_ATTACHED] = "attached",
    [GW_STATE_QUARANTINED] = "quarantined",
};

GW_EXTERN const char *gw_state_name(gw_state state)
{
    if ((unsigned)state >= GW_STATE_COUNT)
        return "invalid";
    return state_names[state];
}

GW_EXTERN int gw_state_from_name(const char *name, gw_state *out)
{
    for (int s = 0; s < GW_STATE_COUNT; s++) {
        if (!strcmp(name, state_names[s])) {
            *out = (gw_state)s;
            return 0;
        }
    }
    return gw_error_set(-EINVAL, "unknown state '%s'", name);
}
