# SPDX-License-Identifier: Apache-2.0
"""Message encoding and envelope checks for gpuwardend's protocol 1.0
(proto/PROTOCOL.md).

Pure functions, no sockets: the golden vectors in proto/vectors/ go
through exactly these in the tests, byte for byte.
"""

import msgpack

from gpuwarden_cyborg import errors

#: The protocol version this driver speaks (PROTOCOL.md §5): [major, minor].
PROTOCOL_VERSION = (1, 0)

#: Reply limits (PROTOCOL.md §7, "replies and events (clients decode)").
MAX_REPLY_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 16

#: Error codes of PROTOCOL.md §6; any other is treated as ``internal``.
ERROR_CODES = ('malformed', 'too_large', 'unsupported_version', 'unknown_op',
               'invalid_argument', 'missing_field', 'forbidden', 'not_found',
               'conflict', 'illegal_transition', 'busy', 'internal',
               'unavailable')

#: msgpack limits for untrusted bytes: a container header announcing more
#: than these fails before anything is allocated for it. ``ext`` is not
#: used by the protocol and is refused anywhere.
UNPACK_LIMITS = dict(
    raw=False,
    strict_map_key=True,
    max_str_len=65536,
    max_bin_len=65536,
    max_array_len=65536,
    max_map_len=256,
    max_ext_len=0,
)


def pack(obj):
    """Canonical encoding (PROTOCOL.md §3): smallest formats, str as str,
    maps in insertion order (callers build them in the spec's key order)."""
    return msgpack.packb(obj, use_bin_type=True)


def _depth(obj):
    deepest, todo = 0, [(obj, 1)]
    while todo:
        cur, d = todo.pop()
        if isinstance(cur, dict):
            deepest = max(deepest, d)
            todo.extend((v, d + 1) for v in cur.values())
        elif isinstance(cur, list):
            deepest = max(deepest, d)
            todo.extend((v, d + 1) for v in cur)
    return deepest


def unpack(data):
    """Decode exactly one msgpack value within the reply limits."""
    if len(data) > MAX_REPLY_BYTES:
        raise errors.ProtocolError(
            f"reply of {len(data)} bytes exceeds {MAX_REPLY_BYTES}")
    try:
        value = msgpack.unpackb(data, **UNPACK_LIMITS)
    except (ValueError, TypeError) as exc:
        # Invalid bytes, truncation, trailing data, a non-str key, an ext,
        # a container over a limit: ValueError subclasses; an unhashable
        # key: TypeError.
        raise errors.ProtocolError(f"not a valid msgpack reply: {exc}") \
            from exc
    if _depth(value) > MAX_DEPTH:
        raise errors.ProtocolError(f"reply nested deeper than {MAX_DEPTH}")
    return value


def encode_request(req_id, op, args):
    """``{v, id, op, args}`` in the spec's key order."""
    return pack({'v': list(PROTOCOL_VERSION), 'id': req_id, 'op': op,
                 'args': args})


def is_uint(val):
    return isinstance(val, int) and not isinstance(val, bool) and val >= 0


def _version(msg, what):
    v = msg.get('v')
    if (not isinstance(v, list) or len(v) != 2
            or not all(is_uint(x) and x <= 65535 for x in v)):
        raise errors.ProtocolError(
            f"{what}: 'v' is {v!r}, expected [major, minor]")
    return v


def reply_id(msg):
    """The id a reply answers, or None (nil: the daemon could not read
    ours). Raises ProtocolError when the reply is not a map or its id is
    neither a uint nor nil."""
    if not isinstance(msg, dict):
        raise errors.ProtocolError(
            f"reply is a msgpack {type(msg).__name__}, not a map")
    if 'id' not in msg:
        raise errors.ProtocolError("reply has no 'id'")
    rid = msg['id']
    if rid is not None and not is_uint(rid):
        raise errors.ProtocolError(f"reply 'id' is {rid!r}")
    return rid


def check_reply(msg, op):
    """Check a decoded reply's envelope and return its ``result``.

    Raises UnsupportedVersion (another major, or refused ours),
    DaemonError (``ok: false``), ProtocolError (anything malformed).
    The id has been matched by the caller (see :func:`reply_id`).
    """
    what = f"reply to {op!r}"
    major, _minor = _version(msg, what)
    if major != PROTOCOL_VERSION[0]:
        raise errors.UnsupportedVersion(
            f"gpuwardend speaks protocol {major}.{_minor}, this driver "
            f"speaks {PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}")
    ok = msg.get('ok')
    if not isinstance(ok, bool):
        raise errors.ProtocolError(f"{what}: 'ok' is {ok!r}, expected bool")
    if ok:
        if 'result' not in msg:
            raise errors.ProtocolError(f"{what} has ok=true and no result")
        return msg['result']
    err = msg.get('error')
    if not isinstance(err, dict) or not isinstance(err.get('code'), str) \
            or not isinstance(err.get('message'), str):
        raise errors.ProtocolError(
            f"{what}: ok=false without an error {{code, message}}")
    code, message = err['code'], err['message']
    field = err.get('field')
    if code == 'unsupported_version':
        raise errors.UnsupportedVersion(
            f"gpuwardend refused protocol {PROTOCOL_VERSION[0]}."
            f"{PROTOCOL_VERSION[1]}: {message}")
    if code not in ERROR_CODES:
        # PROTOCOL.md §5: an unknown code counts as internal.
        message = f"{code}: {message}"
        code = 'internal'
    raise errors.DaemonError(op, code, message,
                             field if isinstance(field, str) else None)


def decode_reply(data, req_id, op):
    """Bytes of one reply body to its ``result`` (for one request in
    flight whose id is ``req_id``)."""
    msg = unpack(data)
    rid = reply_id(msg)
    if rid is not None and rid != req_id:
        raise errors.ProtocolError(
            f"reply to {op!r} carries id {rid}, expected {req_id}")
    return check_reply(msg, op)
