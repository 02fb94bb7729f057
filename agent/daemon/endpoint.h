/* SPDX-License-Identifier: Apache-2.0 */
/* Binding the daemon's ZeroMQ endpoints with the right exposure (ipc socket
 * files get their mode and group, tcp endpoints require CURVE), and the
 * bounds on what a client can make the daemon hold (endpoint.c, "the
 * guard"; docs/daemon.md, "Limits"). */
#ifndef GWD_ENDPOINT_H
#define GWD_ENDPOINT_H

#include <stdbool.h>
#include <sys/types.h>

/* Finished messages one peer may have waiting to be read (ZMQ_RCVHWM). */
#define GWD_RCVHWM 4
/* A connection that has not finished the ZMTP handshake in this time is
 * closed (ZMQ_HANDSHAKE_IVL). */
#define GWD_HANDSHAKE_MS 5000

/* Raise the soft open-file limit to the hard one (at most 2^20) and start
 * watching the endpoints' connections. Returns the connections each endpoint
 * keeps: max_connections, or less when that many do not fit in the limit
 * (logged); <0 when the limit cannot be read. Once, before binding. */
long gwd_endpoint_limits(long max_connections, long max_message_bytes);

/* Create a socket of `type`, set ZMQ_MAXMSGSIZE, the HWMs and the handshake
 * time, and bind it to `endpoint`; `name` ("admin", "read", "events") names
 * it in the log and is its ZAP domain. For ipc://PATH: the parent directory
 * is created (0755) and the socket file gets `mode` and, when `group` is
 * non-empty, that group; with `admins_only`, a connection whose peer
 * (SO_PEERCRED) is neither root nor in `group` ("" = root) is closed at
 * accept, logged with its uid and pid. For tcp:// a CURVE secret key (Z85)
 * is required, and the ZAP handler (zap.c) must run already. After
 * gwd_endpoint_limits(): at most `max_connections` connections are kept open,
 * and a message of more than 8 frames or max_message_bytes in all drops its
 * peer. Returns the socket or NULL (message logged). */
void *gwd_endpoint_bind(void *zctx, int type, const char *name, const char *endpoint, mode_t mode, const char *group,
                        bool admins_only, const char *curve_secret_key, long max_message_bytes, long max_connections);

#endif
