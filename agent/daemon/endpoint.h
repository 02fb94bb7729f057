/* Binding the daemon's ZeroMQ endpoints with the right exposure: ipc socket
 * files get their mode and group, tcp endpoints require CURVE. */
#ifndef GWD_ENDPOINT_H
#define GWD_ENDPOINT_H

#include <sys/types.h>

/* Create a socket of `type`, set ZMQ_MAXMSGSIZE and bind it to `endpoint`.
 * For ipc://PATH: the parent directory is created (0755) and the socket file
 * gets `mode` and, when `group` is non-empty, that group. For tcp:// a CURVE
 * secret key (Z85) is required. Returns the socket or NULL (message logged). */
void *gwd_endpoint_bind(void *zctx, int type, const char *endpoint, mode_t mode, const char *group,
                        const char *curve_secret_key, long max_message_bytes);

#endif
