"""gpuwardend with libvirt's test driver (test:///ABS/node.xml): which domains
hold which GPU, what a restart learns by reconciling, and the gate.

The test driver lives inside the process that opens it, so a test cannot
change what the daemon's own connection sees while it runs; changes made
while the daemon is down are what the reconcile after a restart must catch
(the event path is covered in-process by tests/unit/test_attach*.c)."""

import pathlib
import re

from gwdaemon import Daemon, ROOT

NODE = ROOT / "tests" / "fixtures" / "libvirt" / "x299-3xa6000.xml"


def daemon_on(tmp_path, node, state_dir=None):
    return Daemon(tmp_path, extra=["--libvirt-uri", f"test://{node}"], state_dir=state_dir)


def states(d):
    return {x["address"]: (x["state"], x["domain"]) for x in d.devices()}


def test_defined_domains_make_their_gpus_attached(tmp_path):
    d = daemon_on(tmp_path, NODE).start()
    assert d.result("hello")["capabilities"] == ["events", "libvirt"]
    # vm-a6000 holds 1a (running); vm-shutoff holds 68 (defined, not running);
    # vm-guest-addr has 67:00.0 only as a GUEST address, which does not count.
    assert states(d) == {
        "0000:1a:00.0": ("attached", "vm-a6000"),
        "0000:67:00.0": ("sanitized", None),
        "0000:68:00.0": ("attached", "vm-shutoff"),
    }
    # Held since before the daemon knew them: never cleaned, so a start of a
    # domain on them is refused until they are released and cleaned.
    gate = d.result("gate", {"domain": "vm-a6000", "addresses": ["0000:1a:00.0"]})
    assert gate["allowed"] is False
    assert gate["reasons"][0]["reason"].startswith("dirty")
    other = d.result("gate", {"domain": "vm-new", "addresses": ["0000:68:00.0"]})
    assert other["reasons"] == [{"address": "0000:68:00.0", "reason": "attached to domain 'vm-shutoff'"}]
    # an attached GPU is never dropped from the inventory, and keeps its handle
    inv = d.result("inventory")
    dep = next(x for x in inv["deployables"] if x["gpus"] == ["0000:1a:00.0"])
    assert dep["reserved"] == 0 and len(dep["attach_handles"]) == 1
    assert d.stop() == 0


def test_domain_undefined_while_down_is_reconciled_and_cleaned_after_restart(tmp_path):
    d = daemon_on(tmp_path, NODE).start()
    assert states(d)["0000:1a:00.0"] == ("attached", "vm-a6000")
    assert d.stop() == 0

    # vm-a6000 is undefined while the daemon is down
    text = NODE.read_text()
    without = re.sub(r"<domain type='test'>\s*<name>vm-a6000</name>.*?</domain>", "", text, count=1, flags=re.S)
    assert without != text
    node2 = tmp_path / "node-after.xml"
    node2.write_text(without)

    d2 = daemon_on(tmp_path, node2, state_dir=d.state_dir).start()
    d2.wait(lambda ds: {x["address"]: x["state"] for x in ds}["0000:1a:00.0"] == "sanitized")
    records = d2.result("audit", {"device": "0000:1a:00.0"})["records"]
    events = [r["event"] for r in records]
    assert events[-3:] == ["detach_seen", "cleanup_started", "cleanup_passed"], events
    assert records[-3]["actor"] == "libvirt"
    # the still-defined shut-off domain keeps its GPU
    assert states(d2)["0000:68:00.0"] == ("attached", "vm-shutoff")
    assert d2.stop() == 0


def test_no_gpu_is_cleaned_before_libvirt_has_answered(tmp_path):
    """A GPU held by a VM must not look free at start-up just because the
    watcher has not reported yet: its clean-up would fail not_in_use and
    quarantine a healthy GPU."""
    d = daemon_on(tmp_path, NODE).start()
    for addr in ("0000:1a:00.0", "0000:68:00.0"):
        events = [r["event"] for r in d.result("audit", {"device": addr})["records"]]
        assert "cleanup_started" not in events and "cleanup_failed" not in events, (addr, events)
    assert d.stop() == 0
