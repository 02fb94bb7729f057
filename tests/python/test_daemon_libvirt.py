"""gpuwardend with libvirt's test driver (test:///ABS/node.xml): which domains
hold which GPU, what a restart learns by reconciling, and the gate.

The test driver lives inside the process that opens it, so a test cannot
change what the daemon's own connection sees while it runs; changes made
while the daemon is down are what the reconcile after a restart must catch
(the event path is covered in-process by tests/unit/test_attach*.c). The
hook's hints reach the daemon directly, ahead of libvirt, as they do inside
a real start or destroy."""

import json
import pathlib
import re
import time

import msgpack
import pytest
import zmq

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


# ---- a domain that does not run keeps its GPU, reserved (issue 14) ----
#
# A shut-off persistent domain references its GPU until it is undefined: no
# clean-up, the handle stays (Cyborg has bound it), but the GPU is reserved,
# because Nova deletes the stopped instance's allocation after undefining it,
# with no hook in between. The hook's `release end` says "stopped" first (it
# runs inside the destroy), `started` says "runs".

GPU_1A, GPU_68 = "0000:1a:00.0", "0000:68:00.0"


def dep_of(inv, addr):
    return next(x for x in inv["deployables"] if addr in x["gpus"])


def handles_of(inv, addr):
    return [json.loads(h["info"]) for h in dep_of(inv, addr)["attach_handles"]]


class Events:
    """The daemon's `attachment` events, subscribed before anything happens."""

    def __init__(self, d):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"attachment/")
        self.sock.connect(d.events)
        for _ in range(50):     # let the subscription land (a slow joiner misses the start)
            d.result("hello")

    def next(self, address, stopped, timeout=5.0):
        """The next event for `address` saying `stopped`; the start-up's own events may
        still be on their way (the loop publishes them a moment after start() returned),
        and are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0 and self.sock.poll(int(left * 1000)), f"no attachment event {address} {stopped}"
            topic, body = self.sock.recv_multipart()
            ev = msgpack.unpackb(body)
            assert topic.decode() == f"attachment/{ev['address']}" and ev["kind"] == "attachment"
            assert list(ev)[6:] == ["domain", "stopped"]
            if (ev["address"], ev["stopped"]) == (address, stopped):
                return ev

    def close(self):
        self.sock.close(linger=0)


def test_shut_off_domain_keeps_its_gpu_reserved_with_its_handle(tmp_path):
    d = daemon_on(tmp_path, NODE).start()
    inv = d.result("inventory")
    # vm-shutoff holds 68: attached, no clean-up, the handle kept, and reserved
    assert states(d)[GPU_68] == ("attached", "vm-shutoff")
    assert dep_of(inv, GPU_68)["reserved"] == 1
    assert handles_of(inv, GPU_68) == [{"bus": "68", "device": "00", "domain": "0000", "function": "0"}]
    # vm-a6000 runs on 1a: its allocation takes the unit, not reserved
    assert dep_of(inv, GPU_1A)["reserved"] == 0 and len(handles_of(inv, GPU_1A)) == 1
    # the hook says vm-shutoff starts: no longer reserved, at once
    ev = Events(d)
    d.result("attached", {"domain": "vm-shutoff", "addresses": [GPU_68]})
    assert ev.next(GPU_68, False)["domain"] == "vm-shutoff"
    assert dep_of(d.result("inventory"), GPU_68)["reserved"] == 0
    # and stops again (release end): reserved, before libvirt is even asked
    rel = d.result("released", {"domain": "vm-shutoff", "addresses": [GPU_68]})
    assert ev.next(GPU_68, True)["domain"] == "vm-shutoff"
    now = d.result("inventory")
    assert rel["generation"] == now["generation"] == inv["generation"]     # the same content as at start
    assert dep_of(now, GPU_68)["reserved"] == 1 and len(handles_of(now, GPU_68)) == 1
    assert states(d)[GPU_68] == ("attached", "vm-shutoff")
    ev.close()
    assert d.stop() == 0, d.log.read_text()

    # a restart: reserved from the start (the checkpoint says attached, and whether its domain
    # runs is not known before the watcher's first report), then because libvirt says so
    d2 = daemon_on(tmp_path, NODE, state_dir=d.state_dir).start()
    early = d2.result("inventory")
    assert dep_of(early, GPU_68)["reserved"] == 1 and len(handles_of(early, GPU_68)) == 1
    d2.wait(lambda ds: ds[2]["domain"] == "vm-shutoff" and ds[0]["domain"] == "vm-a6000")
    inv2 = d2.result("inventory")
    assert dep_of(inv2, GPU_68)["reserved"] == 1 and len(handles_of(inv2, GPU_68)) == 1
    assert inv2["generation"] == inv["generation"]
    assert d2.stop() == 0, d2.log.read_text()


def test_release_end_reserves_a_running_domains_gpu_at_once_and_started_lifts_it(tmp_path):
    """vm-a6000 runs on 1a (and libvirt's test driver keeps it running: the
    hook is ahead of libvirt here, as it is inside a real destroy)."""
    d = daemon_on(tmp_path, NODE).start()
    ev = Events(d)
    before = d.result("inventory")
    rel = d.result("released", {"domain": "vm-a6000", "addresses": [GPU_1A, "0000:1a:00.1"]})
    assert rel["devices"] == [GPU_1A]
    # the reply's content already shows it reserved: the hook waits for that revision
    assert rel["revision"] == before["revision"] + 1
    inv = d.result("inventory")
    assert (inv["generation"], inv["revision"]) == (rel["generation"], rel["revision"])
    assert dep_of(inv, GPU_1A)["reserved"] == 1 and len(handles_of(inv, GPU_1A)) == 1
    assert ev.next(GPU_1A, True)["domain"] == "vm-a6000"
    # the reconcile it asked for still sees vm-a6000 running (a read that may predate the
    # destroy): the hook's word stands, and nothing is cleaned while the domain is defined
    time.sleep(0.5)
    assert dep_of(d.result("inventory"), GPU_1A)["reserved"] == 1
    assert states(d)[GPU_1A] == ("attached", "vm-a6000")
    # started: runs again, not reserved
    d.result("attached", {"domain": "vm-a6000", "addresses": [GPU_1A, "0000:1a:00.1"]})
    assert ev.next(GPU_1A, False)["domain"] == "vm-a6000"
    after = d.result("inventory")
    assert dep_of(after, GPU_1A)["reserved"] == 0 and after["generation"] == before["generation"]
    # a hint for a domain libvirt does not show on the GPU changes nothing
    d.result("released", {"domain": "vm-other", "addresses": [GPU_1A]})
    assert dep_of(d.result("inventory"), GPU_1A)["reserved"] == 0
    ev.close()
    assert d.stop() == 0, d.log.read_text()


# ---- every managed GPU is watched, whenever it became managed; attachment unknown (issue 15 item 2) ----
#
# The watcher used to copy the managed list once at start: a GPU managed later (hot-plugged, bound to
# vfio-pci after start) was never reported, so a VM holding it never made it attached; its clean-ups
# found the VM and aborted, over and over. And while the watcher is not connected (libvirtd away, the
# reconnect backoff) nothing is known of any GPU: none may become allocatable, the gate refuses them.

GPU_67 = "0000:67:00.0"

VM_LATE = """  <domain type='test'>
    <name>vm-late</name>
    <uuid>7a0c1b6e-5d1f-4c39-9a51-0000000000a7</uuid>
    <memory>1048576</memory>
    <os><type>hvm</type></os>
    <devices>
      <hostdev mode='subsystem' type='pci' managed='yes'>
        <source><address domain='0x0000' bus='0x67' slot='0x00' function='0x0'/></source>
      </hostdev>
    </devices>
  </domain>
</node>"""


def host_copy(tmp_path):
    """A private copy of the test host, to rebind or unplug a GPU in."""
    import shutil
    from gwdaemon import HOSTS
    root = tmp_path / "host"
    shutil.copytree(HOSTS / "x299-3xa6000", root, symlinks=True)
    return root


def audit_events(d, addr):
    return [r["event"] for r in d.result("audit", {"device": addr})["records"]]


@pytest.fixture
def stopped_after():
    """keep(d): d is killed after the test if it still runs (a failed assertion)."""
    kept = []
    yield kept.append
    for d in kept:
        if d.proc and d.alive():
            d.proc.kill()
            d.proc.wait()


def test_gpu_managed_after_start_is_watched(tmp_path, stopped_after):
    """0000:67:00.0 is not managed at start (unbound from vfio-pci, or not on the bus at all), and a
    domain (vm-late, running) holds it. Once a rescan finds it managed (bound to vfio-pci, or
    hot-plugged) the watcher reports it: attached to vm-late, no clean-up tried while the VM has it,
    and the gate refuses it for another domain because vm-late holds it."""
    for how in ("rebind", "hotplug"):
        root = host_copy(tmp_path / how)
        dev_link = root / "sys/bus/pci/devices" / GPU_67
        if how == "rebind":
            driver = (root / "sys/devices").glob(f"**/{GPU_67}/driver")
            driver = next(driver)
            target = driver.readlink()
            driver.unlink()
        else:
            links = {n: (root / "sys/bus/pci/devices" / n).readlink() for n in (GPU_67, "0000:67:00.1")}
            for n in links:
                (root / "sys/bus/pci/devices" / n).unlink()
        node = tmp_path / how / "node.xml"
        node.write_text(NODE.read_text().replace("</node>", VM_LATE))
        d = Daemon(tmp_path / how, extra=["--libvirt-uri", f"test://{node}", "--rescan-interval", "1"])
        d.host = root
        stopped_after(d)
        d.start()
        assert GPU_67 not in states(d)
        if how == "rebind":
            driver.symlink_to(target)
        else:
            for n, t in links.items():
                (root / "sys/bus/pci/devices" / n).symlink_to(t)
        d.wait(lambda ds: any(x["address"] == GPU_67 for x in ds), timeout=10)
        d.wait(lambda ds: {x["address"]: (x["state"], x["domain"]) for x in ds}[GPU_67] == ("attached", "vm-late"),
               timeout=10)
        events = audit_events(d, GPU_67)
        assert "attach_seen" in events and "cleanup_started" not in events, (how, events)
        gate = d.result("gate", {"domain": "vm-other", "addresses": [GPU_67]})
        assert gate["reasons"] == [{"address": GPU_67, "reason": "attached to domain 'vm-late'"}], gate
        assert "watching" in d.log.read_text()
        assert d.stop() == 0, d.log.read_text()


def test_attachment_unknown_until_libvirt_is_read_and_a_vm_that_came_and_went_meanwhile(tmp_path, stopped_after):
    """A restart while libvirtd is away (its URI does not resolve yet): until the watcher has read
    libvirt, no GPU is promoted to allocatable and the gate refuses every managed GPU, saying the
    attachment is unknown. A VM that started and stopped on a clean GPU meanwhile (only the hook's
    `attached` and `released` tell of it) makes that GPU dirty: once libvirt is read it is cleaned."""
    d = daemon_on(tmp_path, NODE)
    stopped_after(d)
    d.start()
    assert states(d)[GPU_67] == ("sanitized", None)
    assert d.stop() == 0

    node = tmp_path / "later" / "node.xml"
    d2 = daemon_on(tmp_path, node, state_dir=d.state_dir)
    stopped_after(d2)
    d2.start(wait_clean=False)
    gen = d2.result("inventory")["generation"]
    assert d2.result("published", {"generation": gen})["promoted"] == []
    assert states(d2)[GPU_67] == ("sanitized", None)
    gate = d2.result("gate", {"domain": "vm-new", "addresses": [GPU_67]})
    assert gate["allowed"] is False
    assert gate["reasons"][0]["reason"].startswith("attachment unknown: "), gate
    assert "not connected" in gate["reasons"][0]["reason"], gate

    # vm-x starts and stops on 67 while the watcher is away: the hook says so
    d2.result("attached", {"domain": "vm-x", "addresses": [GPU_67]})
    d2.result("released", {"domain": "vm-x", "addresses": [GPU_67]})
    assert states(d2)[GPU_67] == ("attached", "vm-x")
    assert d2.result("published", {"generation": d2.result("inventory")["generation"]})["promoted"] == []

    # libvirtd is back, without vm-x: 67 is detached and cleaned; the gate answers again
    node.parent.mkdir()
    node.write_text(NODE.read_text())
    d2.wait(lambda ds: {x["address"]: x["state"] for x in ds}[GPU_67] == "sanitized", timeout=40)
    events = audit_events(d2, GPU_67)
    assert events[-4:] == ["attach_seen", "detach_seen", "cleanup_started", "cleanup_passed"], events
    assert d2.result("gate", {"domain": "vm-new", "addresses": [GPU_67]})["allowed"] is True
    assert states(d2)[GPU_1A] == ("attached", "vm-a6000")
    assert d2.stop() == 0, d2.log.read_text()
