"""The golden protocol vectors (proto/vectors) against msgpack from PyPI.

Every vector's bytes decode and re-encode byte for byte; its JSON twin encodes to the same bytes and
equals the decoded value; the spec (proto/PROTOCOL.md) and the vectors cover each other: every op has
a request and a reply vector, every error code an error reply; maps list their keys in the spec's order.
"""
import json
import pathlib
import re
import sys

import msgpack
import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
VECTORS = TOP / "proto" / "vectors"
SPEC = (TOP / "proto" / "PROTOCOL.md").read_text()
sys.path.insert(0, str(VECTORS))
import regen  # noqa: E402  (the twin <-> value mapping, shared with the regeneration tool)

TWINS = sorted(VECTORS.glob("*.json"))
NAMES = [p.stem for p in TWINS]
BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$")


def load(name):
    twin = json.loads((VECTORS / f"{name}.json").read_text())
    return twin, (VECTORS / f"{name}.msgpack").read_bytes()


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


def test_there_are_vectors():
    assert len(NAMES) >= 80
    assert {p.stem for p in VECTORS.glob("*.msgpack")} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_twin_encodes_to_the_bytes(name):
    twin, data = load(name)
    assert regen.encode(twin) == data


@pytest.mark.parametrize("name", [n for n in NAMES if "value" in load(n)[0]])
def test_bytes_round_trip(name):
    twin, data = load(name)
    value = unpack(data)
    assert msgpack.packb(value, use_bin_type=True) == data
    # Same value and the same key order as the twin.
    assert json.dumps(regen.to_json(value)) == json.dumps(twin["value"])


@pytest.mark.parametrize("name", [n for n in NAMES if "hex" in load(n)[0]])
def test_hex_vectors_have_no_json_form(name):
    """A vector is written as hex only when its JSON form cannot express it: msgpack refuses it,
    or it holds a float/ext/non-string key, or it does not re-encode to itself (duplicate key)."""
    twin, data = load(name)
    assert twin["type"] == "bad_request"
    try:
        value = unpack(data)
        regen.to_json(value)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return
    assert msgpack.packb(value, use_bin_type=True) != data


# ---- the spec and the vectors cover each other

def spec_ops():
    section = SPEC.split("## 8. Ops")[1].split("### hello")[0]
    return [(m.group(1), m.group(2) == "yes")
            for m in re.finditer(r"^\| `([a-z_]+)` \| (yes|no) \|", section, re.M)]


def spec_codes():
    section = SPEC.split("## 6. Errors")[1].split("## 7.")[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, re.M)


def test_spec_lists_the_expected_ops_and_codes():
    assert [o for o, _ in spec_ops()] == [
        "hello", "inventory", "published", "devices", "device", "quarantine", "release", "sanitize",
        "audit", "attached", "released", "gate", "metrics", "maintenance"]
    assert [o for o, r in spec_ops() if not r] == [
        "published", "quarantine", "release", "sanitize", "attached", "released", "maintenance"]
    assert spec_codes() == [
        "malformed", "too_large", "unsupported_version", "unknown_op", "invalid_argument",
        "missing_field", "forbidden", "not_found", "conflict", "illegal_transition", "busy",
        "internal", "unavailable"]


def test_every_op_has_a_request_and_a_reply():
    for op, _ in spec_ops():
        kinds = {load(n)[0]["type"] for n in NAMES if load(n)[0].get("op") == op and "value" in load(n)[0]
                 and load(n)[0]["type"] in ("request", "reply") and load(n)[0]["value"].get("ok", True)}
        assert kinds == {"request", "reply"}, op


def test_every_error_code_has_a_reply():
    for code in spec_codes():
        twin, data = load(f"err_{code}")
        value = unpack(data)
        assert value["ok"] is False and value["error"]["code"] == code
        assert list(value["error"]) == ["code", "message", "field"]


def test_error_replies_match_their_bad_request():
    """err_X answers the bad_* vector its description names: same id (nil when unreadable), and the
    code and field that bad_* expects."""
    for name in NAMES:
        if not name.startswith("err_"):
            continue
        twin, data = load(name)
        m = re.match(r"answer to (bad_[a-z0-9_]+)", twin["description"])
        if not m:
            continue
        bad, _ = load(m.group(1))
        err = unpack(data)
        assert bad["expect"] == {"code": err["error"]["code"], "field": err["error"]["field"]}, name
        want_id = bad["value"].get("id") if "value" in bad and bad["expect"]["field"] != "id" else None
        if "hex" in bad:
            want_id = err["id"]   # checked byte for byte by the C codec test
        assert err["id"] == want_id, name


# ---- key order and shapes (PROTOCOL.md §4, §8-§10)

ENVELOPE_REQ = ["v", "id", "op", "args", "actor"]
DEVICE = ["address", "state", "dirty", "cleaning", "reason", "since", "domain", "present",
          "numa_node", "clique", "iommu_group", "driver", "identity", "quarantined_by", "fenced"]
IDENTITY = ["vendor_id", "device_id", "subsystem_vendor_id", "subsystem_device_id", "revision",
            "class", "vendor_name", "device_name", "serial"]
STEP = ["name", "verdict", "evidence", "duration_ms"]
DEPLOYABLE = ["name", "rc", "num_accelerators", "reserved", "traits", "attach_handles", "gpus",
              "driver_name", "device"]
AUDIT = ["time", "address", "event", "from", "to", "dirty", "actor", "reason", "evidence"]
RESULT = {
    "hello": ["versions", "daemon", "host", "endpoint", "capabilities", "ops", "backend"],
    "inventory": ["generation", "host", "model", "deployables", "revision", "published_revision"],
    "published": ["generation", "promoted"],
    "devices": ["devices"],
    "device": DEVICE + ["cleanup", "steps"],
    "quarantine": DEVICE, "release": DEVICE, "sanitize": DEVICE,
    "audit": ["records", "truncated"],
    "attached": ["devices"], "released": ["devices", "generation", "revision"],
    "gate": ["allowed", "reasons"],
    "metrics": ["uptime_ms", "devices", "dirty", "cleaning", "cleanups", "requests", "errors",
                "events", "generation", "published", "published_revision", "revision",
                "cleanup_duration", "cleanup_steps", "quarantines", "request_duration", "events_published",
                "libvirt", "fenced"],
    "maintenance": DEVICE,
}
STATES = ["discovered", "sanitized", "allocatable", "attached", "quarantined"]
EVENT = ["v", "seq", "boot", "time", "kind", "address"]
EVENT_KIND = {"transition": ["event", "from", "to", "dirty", "actor", "reason"],
              "cleanup": ["result", "duration_ms", "steps"],
              "attachment": ["domain", "stopped"]}


STEPS_RUN_ORDER = ["not_in_use", "bind", "reset", "scrub", "health", "isolation", "firmware", "hooks"]


def check_histogram(h):
    assert list(h) == ["bounds_us", "counts", "count", "sum_us"]
    b, c = h["bounds_us"], h["counts"]
    assert len(b) == len(c) >= 1 and b == sorted(set(b)) and b[0] > 0
    assert c == sorted(c) and c[-1] <= h["count"], "counts are cumulative, the +Inf bucket is count"
    assert h["count"] or h["sum_us"] == 0


def check_metrics(result):
    assert list(result["cleanups"]) == ["passed", "failed", "aborted"]
    assert result["cleanups"]["aborted"] <= result["cleanups"]["failed"]
    check_histogram(result["cleanup_duration"])
    assert result["cleanup_duration"]["count"] == result["cleanups"]["passed"] + result["cleanups"]["failed"]
    assert list(result["cleanup_steps"]) == STEPS_RUN_ORDER
    for step in result["cleanup_steps"].values():
        assert list(step) == ["failed", "duration"]
        check_histogram(step["duration"])
        assert step["failed"] <= step["duration"]["count"]
    assert list(result["quarantines"]) == ["cleanup", "fault", "gone", "operator", "cyborg", "other"]
    assert list(result["request_duration"]) == [o for o, _ in spec_ops()]
    for op, h in result["request_duration"].items():
        check_histogram(h)
        assert h["count"] <= result["requests"][op]
    assert list(result["events_published"]) == ["transition", "cleanup", "attachment"]
    assert sum(result["events_published"].values()) == result["events"]
    assert list(result["libvirt"]) == ["enabled", "connected", "current", "disconnects"]


def check_device(d):
    assert list(d)[:len(DEVICE)] == DEVICE
    assert BDF.match(d["address"]) and d["state"] in STATES
    assert list(d["identity"]) == IDENTITY
    # nil exactly when not quarantined
    assert (d["quarantined_by"] is None) == (d["state"] != "quarantined")
    # only a quarantined GPU's group is held
    assert isinstance(d["fenced"], bool) and (not d["fenced"] or d["state"] == "quarantined")


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith(("req_", "rep_", "ev_"))])
def test_key_order(name):
    twin, data = load(name)
    value = unpack(data)
    if twin["type"] == "request":
        known = [k for k in value if k in ENVELOPE_REQ]
        assert known == [k for k in ENVELOPE_REQ if k in value]
        assert known[:3] == ["v", "id", "op"]
        return
    if twin["type"] == "event":
        assert list(value) == EVENT + EVENT_KIND[value["kind"]]
        assert twin["topic"] == f"{value['kind']}/{value['address']}"
        for step in value.get("steps", []):
            assert list(step) == STEP
        return
    assert list(value) == ["v", "id", "ok", "result"] and value["v"] == [1, 0]
    op, result = twin["op"], value["result"]
    assert list(result) == RESULT[op], op
    if op in ("device", "quarantine", "release", "sanitize", "maintenance"):
        check_device(result)
    for d in result.get("devices", []) if op == "devices" else []:
        check_device(d)
    for step in result.get("steps", []) if op == "device" else []:
        assert list(step) == STEP
    for dep in result.get("deployables", []):
        assert list(dep) == DEPLOYABLE
        assert dep["num_accelerators"] == len(dep["gpus"]) and 0 <= dep["reserved"] <= len(dep["gpus"])
        for h in dep["attach_handles"]:
            assert list(h) == ["type", "info"]
            assert list(json.loads(h["info"])) == ["bus", "device", "domain", "function"]
        assert list(dep["device"]) == ["vendor", "model", "type", "std_board_info", "controlpath"]
    for rec in result.get("records", []):
        assert list(rec) == AUDIT
    if op == "metrics":
        assert list(result["devices"]) == STATES
        assert list(result["requests"]) == [o for o, _ in spec_ops()]
        assert list(result["errors"]) == spec_codes()
        check_metrics(result)
    if op == "hello":
        read_ops = [o for o, r in spec_ops() if r]
        assert result["ops"] == (read_ops if result["endpoint"] == "read" else [o for o, _ in spec_ops()])


def test_inventory_vectors_name_their_revisions():
    """revision is at least 1 (the first inventory of a run) and published_revision never passes it:
    only revisions already served can be confirmed."""
    for name in ("rep_inventory", "rep_inventory_per_clique"):
        result = unpack(load(name)[1])["result"]
        assert list(result)[-2:] == ["revision", "published_revision"]
        assert 1 <= result["revision"] and 0 <= result["published_revision"] <= result["revision"], name


def test_maintenance_vectors():
    """maintenance is an admin op (it takes GPUs out of service): its bad_* vectors are sent to the
    admin endpoint and get an argument error, and on the read endpoint it is forbidden; a
    maintenance reply is quarantined by cyborg; the refusal of an operator's hold names the actor,
    the reason and the operator's command."""
    assert ("maintenance", False) in spec_ops() and ("published", False) in spec_ops()
    for name in NAMES:
        twin = load(name)[0]
        if name.startswith("bad_maintenance_"):
            assert twin["endpoint"] == "admin" and twin["expect"]["code"] in ("missing_field", "invalid_argument")
    for op in ("published", "maintenance"):
        twin = load(f"bad_forbidden_{op}_read")[0]
        assert twin["endpoint"] == "read" and twin["expect"] == {"code": "forbidden", "field": "op"}
    on = unpack(load("req_maintenance")[1])["args"]
    off = unpack(load("req_maintenance_off")[1])["args"]
    assert list(on) == list(off) == ["address", "on", "reason"] and on["on"] is True and off["on"] is False
    assert unpack(load("rep_maintenance")[1])["result"]["quarantined_by"] == "cyborg"
    err = unpack(load("err_maintenance_not_cyborg")[1])["error"]
    assert err["code"] == "illegal_transition" and err["field"] is None
    assert "operator:uid=0(root) pid=4242(admin endpoint)" in err["message"]
    assert "gpuwarden release 0000:3c:00.0" in err["message"] and "fan noise" in err["message"]
