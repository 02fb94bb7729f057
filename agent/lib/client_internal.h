/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the request client and the event subscriber: endpoint and CURVE
 * option checks, and opening a configured ZeroMQ socket. */
#ifndef GW_CLIENT_INTERNAL_H
#define GW_CLIENT_INTERNAL_H

#include <gpuwarden/client.h>

typedef struct gw_zmq_keys {
    char server[41], public_[41], secret[41];
    bool curve;
} gw_zmq_keys;

/* Check an endpoint and the CURVE keys that go with it (tcp:// needs a
 * server key). 0 or -EINVAL / -ENOTSUP with the message set. */
int gw_zmq_check(const char *endpoint, const char *server_key, const char *public_key, const char *secret_key,
                 gw_zmq_keys *keys);
/* A socket of `type` on `ctx` with linger 0, the max message size, CURVE when
 * configured, connected to `endpoint`. */
int gw_zmq_open(void *ctx, int type, const char *endpoint, const gw_zmq_keys *keys, int64_t max_msg, void **out);
/* Milliseconds on the monotonic clock. */
int64_t gw_monotonic_ms(void);

#endif
