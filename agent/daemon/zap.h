/* SPDX-License-Identifier: Apache-2.0 */
/* The ZAP handler that decides which CURVE clients a tcp:// endpoint serves
 * (zap.c): the admin endpoint only the keys of [daemon] curve_allowlist, the
 * read and events endpoints any key; each accepted key's name comes back on
 * its messages as "User-Id". */
#ifndef GWD_ZAP_H
#define GWD_ZAP_H

#include "daemon.h"

/* ZMQ_ZAP_DOMAIN of each endpoint's socket: what the handler decides on. */
#define GWD_ZAP_DOMAIN_ADMIN "admin"

/* Load the allow-list, bind the handler in d->zctx and start its thread:
 * before any tcp:// endpoint is bound (libzmq lets every key in while no
 * handler is there). 0, or <0 (logged). */
int gwd_zap_start(gwd *d);
/* SIGHUP: re-read [daemon] curve_allowlist; a file that does not read keeps
 * the running list (logged). No-op without a handler. */
void gwd_zap_reload(gwd *d);
/* Stop the thread and close its socket: before zmq_ctx_term(). */
void gwd_zap_stop(gwd *d);

#endif
