/* SPDX-License-Identifier: Apache-2.0 */
#ifndef GWD_OPS_H
#define GWD_OPS_H

#include <jansson.h>

#include "daemon.h"
#include "proto_codec.h"

/* Run a decoded, validated request. 0 with *result (a new reference), or -1
 * with *err filled. */
int gwd_op_run(gwd *d, const gw_proto_request *req, gw_proto_endpoint ep, json_t **result, gw_proto_error *err);

#endif
