#!/usr/bin/env python3
"""Rebuild every NAME.msgpack in this directory from its NAME.json twin.

    proto/vectors/regen.py            write the .msgpack files
    proto/vectors/regen.py --check    only verify; exit 1 and name the files that differ

The twin's "value" is the message in JSON form (README.md, "JSON form"); "hex" instead holds the
exact bytes of a vector that is not valid msgpack or not expressible in JSON (duplicate keys, ...).
Needs msgpack >= 1.0 from PyPI.
"""
import json
import pathlib
import sys

import msgpack

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def from_json(v):
    """JSON form -> Python value that msgpack.packb encodes canonically."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        if not INT64_MIN <= v <= INT64_MAX:
            raise ValueError(f"{v}: integers above 2^63-1 are written {{\"$u64\": \"{v}\"}}")
        return v
    if isinstance(v, float):
        raise ValueError(f"{v}: floats are not used by the protocol")
    if isinstance(v, list):
        return [from_json(x) for x in v]
    if isinstance(v, dict):
        if len(v) == 1:
            ((k, x),) = v.items()
            if k == "$u64":
                n = int(x)
                if not INT64_MAX < n <= UINT64_MAX or str(n) != x:
                    raise ValueError(f"$u64 {x!r}: must be the decimal form of 2^63..2^64-1")
                return n
            if k == "$bin":
                return bytes.fromhex(x)
        return {k: from_json(x) for k, x in v.items()}
    raise TypeError(f"unexpected JSON value {v!r}")


def to_json(v):
    """Decoded msgpack value -> JSON form (the inverse of from_json)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return {"$u64": str(v)} if v > INT64_MAX else v
    if isinstance(v, bytes):
        return {"$bin": v.hex()}
    if isinstance(v, float):
        raise ValueError(f"{v}: floats are not used by the protocol")
    if isinstance(v, list):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    raise TypeError(f"unexpected value {v!r}")


def encode(twin):
    if "hex" in twin:
        return bytes.fromhex(twin["hex"])
    return msgpack.packb(from_json(twin["value"]), use_bin_type=True)


def main(argv):
    check = "--check" in argv
    here = pathlib.Path(__file__).resolve().parent
    bad = []
    for twin_path in sorted(here.glob("*.json")):
        want = encode(json.loads(twin_path.read_text()))
        out = twin_path.with_suffix(".msgpack")
        if check:
            if not out.exists() or out.read_bytes() != want:
                bad.append(out.name)
        else:
            out.write_bytes(want)
    if bad:
        print("differ from their twin:", " ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
