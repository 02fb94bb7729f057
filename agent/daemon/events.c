/* SPDX-License-Identifier: Apache-2.0 */
/* Events on the PUB socket (PROTOCOL.md §9): one per persisted transition
 * (from the registry's callback, which runs after the checkpoint and the
 * audit line are written) and one per finished clean-up (cleanup.c). */
#include <msgpack.h>
#include <string.h>

#include "daemon.h"
#include "proto_codec.h"
#include "util.h"

typedef struct transition_ctx {
    gwd *d;
    const gw_transition *t;
} transition_ctx;

static void pack_transition(void *pkv, uint64_t seq, void *userdata)
{
    msgpack_packer *pk = pkv;
    transition_ctx *c = userdata;
    const gw_transition *t = c->t;
    gw_proto_pack_event_head(pk, seq, (uint64_t)c->d->boot_ms, (uint64_t)t->time_ms, "transition",
                             t->device.address, 6);
    gw_proto_pack_cstr(pk, "event");
    gw_proto_pack_cstr(pk, gw_event_name(t->event));
    gw_proto_pack_cstr(pk, "from");
    gw_proto_pack_cstr(pk, t->event == GW_EVENT_FOUND ? NULL : gw_state_name(t->from));
    gw_proto_pack_cstr(pk, "to");
    gw_proto_pack_cstr(pk, gw_state_name(t->to));
    gw_proto_pack_cstr(pk, "dirty");
    if (t->to_flags & GW_FLAG_DIRTY)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    gw_proto_pack_cstr(pk, "actor");
    gw_proto_pack_cstr(pk, t->actor);
    gw_proto_pack_cstr(pk, "reason");
    gw_proto_pack_cstr(pk, t->reason && *t->reason ? t->reason : NULL);
}

void gwd_events_on_transition(const gw_transition *t, const gw_device *after, void *userdata)
{
    transition_ctx c = { userdata, t };
    gwd_metrics_transition(&((gwd *)userdata)->metrics, t);
    gwd_event_publish(userdata, "transition", t->device.address, pack_transition, &c);
}
