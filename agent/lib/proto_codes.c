/* SPDX-License-Identifier: Apache-2.0 */
/* Protocol error codes: wire names and errno values (PROTOCOL.md §6). */
#include <gpuwarden/proto.h>
#include <string.h>

#include "util.h"

static const struct {
    const char *name;
    int err;
} codes[GW_PROTO_CODE_COUNT] = {
    [GW_PROTO_OK] = { "ok", 0 },
    [GW_PROTO_MALFORMED] = { "malformed", -EPROTO },
    [GW_PROTO_TOO_LARGE] = { "too_large", -EMSGSIZE },
    [GW_PROTO_UNSUPPORTED_VERSION] = { "unsupported_version", -EPROTONOSUPPORT },
    [GW_PROTO_UNKNOWN_OP] = { "unknown_op", -EOPNOTSUPP },
    [GW_PROTO_INVALID_ARGUMENT] = { "invalid_argument", -EINVAL },
    [GW_PROTO_MISSING_FIELD] = { "missing_field", -EINVAL },
    [GW_PROTO_FORBIDDEN] = { "forbidden", -EACCES },
    [GW_PROTO_NOT_FOUND] = { "not_found", -ENOENT },
    [GW_PROTO_CONFLICT] = { "conflict", -EEXIST },
    [GW_PROTO_ILLEGAL_TRANSITION] = { "illegal_transition", -EPERM },
    [GW_PROTO_BUSY] = { "busy", -EBUSY },
    [GW_PROTO_INTERNAL] = { "internal", -EIO },
    [GW_PROTO_UNAVAILABLE] = { "unavailable", -EAGAIN },
};

GW_EXTERN const char *gw_proto_code_name(gw_proto_code code)
{
    if ((unsigned)code >= GW_PROTO_CODE_COUNT)
        return "invalid";
    return codes[code].name;
}

GW_EXTERN int gw_proto_code_from_name(const char *name, gw_proto_code *out)
{
    /* "ok" is not a wire code: an error reply never carries it. */
    for (int c = GW_PROTO_MALFORMED; c < GW_PROTO_CODE_COUNT; c++) {
        if (!strcmp(name, codes[c].name)) {
            *out = (gw_proto_code)c;
            return 0;
        }
    }
    return gw_error_set(-EINVAL, "unknown protocol error code '%.64s'", name);
}

GW_EXTERN int gw_proto_code_errno(gw_proto_code code)
{
    if ((unsigned)code >= GW_PROTO_CODE_COUNT)
        return -EIO;
    return codes[code].err;
}
