"""The libvirt qemu hook (`gpuwarden hook qemu ...`) against the real
gpuwardend on the x299-3xa6000 test host (simulated host backend): the gate
for clean, dirty, quarantined and attached-elsewhere GPUs, the daemon down,
the race from the design brief (a VM deleted, a new VM wanting its GPU while
the clean-up runs), and a missed undefine caught by the libvirt watcher's
reconcile after a daemon restart (libvirt's test driver)."""

import os
import pathlib
import re
import subprocess
import threading
import time

import pytest

from gwdaemon import Daemon, build_dir

GPUS = ["0000:1a:00.0", "0000:67:00.0", "0000:68:00.0"]   # x299-3xa6000
TOP = pathlib.Path(__file__).resolve().parents[2]
HOST = TOP / "tests" / "fixtures" / "hosts" / "x299-3xa6000"


def hostdev(addr):
    dom, bus, rest = addr.split(":")
    slot, fn = rest.split(".")
    return (f"<hostdev mode='subsystem' type='pci' managed='yes'><source>"
            f"<address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/>"
            f"</source></hostdev>")


def domain_xml(name, *addrs):
    return (f"<domain type='kvm'><name>{name}</name><memory>1048576</memory>"
            f"<os><type>hvm</type></os><devices>{''.join(hostdev(a) for a in addrs)}"
            f"</devices></domain>")


def hook(daemon, name, op, subop, *addrs, env=None, publish_wait="0"):
    """Run the hook. `release end` does not wait for Placement unless a test
    asks (publish_wait: seconds, or None for the hook's default): these tests
    are about the gate, and no Cyborg shim runs here."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("GPUWARDEN_")}
    e.update(env or {})
    wait = [] if publish_wait is None else ["--publish-wait", str(publish_wait)]
    p = subprocess.run([str(build_dir() / "gpuwarden"), "hook", "--endpoint", daemon.admin,
                        "--timeout-ms", "2000", "--host-root", str(HOST), *wait,
                        "qemu", name, op, subop, "-"],
                       input=domain_xml(name, *addrs).encode(), capture_output=True, env=e,
                       timeout=30)
    return p.returncode, p.stderr.decode()


def device(daemon, addr):
    return daemon.result("device", {"address": addr})


@pytest.fixture
def blockable(tmp_path):
    """The daemon with an operator clean-up hook that waits while the file
    `block` exists: a clean-up the test holds open as long as it wants."""
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    block = tmp_path / "block"
    script = hooks / "10-hold"
    script.write_text(f"#!/bin/sh\nwhile [ -e '{block}' ]; do sleep 0.02; done\nexit 0\n")
    script.chmod(0o755)
    d = Daemon(tmp_path).start()
    d.block = block
    inv = d.result("inventory")
    d.result("published", {"generation": inv["generation"]})
    assert [x["state"] for x in d.devices()] == ["allocatable"] * 3
    yield d
    block.unlink(missing_ok=True)
    assert d.stop() == 0, d.log.read_text()


def test_gate_clean_attached_elsewhere_quarantined(blockable):
    d = blockable
    # clean -> allowed
    assert hook(d, "vm1", "prepare", "begin", GPUS[1], "0000:67:00.1") == (0, "")
    assert hook(d, "vm1", "started", "begin", GPUS[1], "0000:67:00.1") == (0, "")
    assert device(d, GPUS[1])["state"] == "attached"
    assert device(d, GPUS[1])["domain"] == "vm1"
    # the same domain again (a restart of vm1) -> allowed
    assert hook(d, "vm1", "prepare", "begin", GPUS[1]) == (0, "")
    # attached to another domain -> refused, libvirt shows the line
    rc, err = hook(d, "vm2", "prepare", "begin", GPUS[1])
    assert rc == 1
    assert err == ("gpuwarden: refusing to start domain 'vm2': 0000:67:00.0 attached to "
                   "domain 'vm1'\n")
    # quarantined -> refused with the reason; the other, clean GPU is not named
    d.result("quarantine", {"address": GPUS[0], "reason": "fan noise"})
    rc, err = hook(d, "vm3", "prepare", "begin", GPUS[0], GPUS[2])
    assert rc == 1
    assert err == ("gpuwarden: refusing to start domain 'vm3': 0000:1a:00.0 quarantined: "
                   "fan noise\n")
    # a domain with no managed GPU among its devices -> allowed
    assert hook(d, "vm4", "prepare", "begin", "0000:00:1f.3") == (0, "")


def test_race_deleted_vm_then_new_vm_on_the_same_gpu(blockable):
    """A VM is deleted; a new VM wants the same GPU before its clean-up ends
    (Placement may already show it free): refused; after the clean-up:
    allowed."""
    d = blockable
    assert hook(d, "vm-old", "prepare", "begin", GPUS[2]) == (0, "")
    assert hook(d, "vm-old", "started", "begin", GPUS[2]) == (0, "")
    d.block.touch()
    t0 = time.time() * 1000
    assert hook(d, "vm-old", "release", "end", GPUS[2]) == (0, "")
    d.wait(lambda ds: ds[2]["cleaning"], timeout=10)
    rc, err = hook(d, "vm-new", "prepare", "begin", GPUS[2])
    assert rc == 1
    assert err == ("gpuwarden: refusing to start domain 'vm-new': 0000:68:00.0 dirty: "
                   "clean-up running\n")
    # the clean-up started at once after the hook's `released`
    recs = d.result("audit", {"device": GPUS[2]})["records"]
    started = [r for r in recs if r["event"] == "cleanup_started" and r["time"] >= t0 - 5]
    assert started, recs
    latency = started[0]["time"] - t0
    print(f"# release end -> cleanup_started: {latency:.0f} ms")
    assert latency < 1000
    d.block.unlink()
    d.wait(lambda ds: ds[2]["state"] in ("sanitized", "allocatable") and not ds[2]["cleaning"])
    assert hook(d, "vm-new", "prepare", "begin", GPUS[2]) == (0, "")


def test_daemon_down_policy(tmp_path):
    d = Daemon(tmp_path).start()
    assert d.stop() == 0
    rc, err = hook(d, "vm1", "prepare", "begin", GPUS[0])
    assert rc == 1
    assert err.startswith("gpuwarden: refusing to start domain 'vm1': the gpuwarden daemon "
                          "cannot be asked whether GPU 0000:1a:00.0 is clean")
    rc, err = hook(d, "vm1", "prepare", "begin", GPUS[0],
                   env={"GPUWARDEN_HOOK_ON_DAEMON_DOWN": "allow"})
    assert rc == 0
    assert "starts with GPU 0000:1a:00.0 unchecked" in err
    # the PCH audio (class 0403) is not a GPU: never blocked
    assert hook(d, "vm1", "prepare", "begin", "0000:00:1f.3") == (0, "")
    # release with the daemon down: nothing to refuse, a warning only
    rc, err = hook(d, "vm1", "release", "end", GPUS[0])
    assert rc == 0 and "not delivered" in err


def drop_domain(path, name):
    text = path.read_text()
    new = re.sub(r"<domain [^>]*>\s*<name>%s</name>.*?</domain>\s*" % re.escape(name), "", text,
                 flags=re.S)
    assert new != text
    path.write_text(new)


def test_missed_undefine_is_caught_after_a_daemon_restart(tmp_path):
    """libvirt's view changes while the daemon is down (vm-shutoff is
    undefined): the restarted daemon's watcher reports 68:00.0 unreferenced,
    which is a detach, and its clean-up starts at once.

    Run 1 has no domain on 68:00.0, so every GPU ends sanitized (a first run
    on a host whose GPUs are already in use is another story); run 2 finds
    vm-shutoff defined on it: attached; run 3 finds it gone."""
    fixture = (TOP / "tests" / "fixtures" / "libvirt" / "x299-3xa6000.xml").read_text()
    node = tmp_path / "node.xml"
    node.write_text(fixture)
    drop_domain(node, "vm-shutoff")
    extra = ["--libvirt-uri", f"test://{node}"]
    d = Daemon(tmp_path, extra=extra).start(wait_clean=False)
    d.wait(lambda ds: [x["state"] for x in ds][1:] == ["sanitized", "sanitized"]
           and ds[0]["domain"] == "vm-a6000" and not any(x["cleaning"] for x in ds))
    assert d.stop() == 0, d.log.read_text()

    node.write_text(fixture)
    d = Daemon(tmp_path, extra=extra, state_dir=d.state_dir).start(wait_clean=False)
    d.wait(lambda ds: ds[2]["state"] == "attached" and ds[2]["domain"] == "vm-shutoff")
    assert d.stop() == 0, d.log.read_text()

    drop_domain(node, "vm-shutoff")
    d = Daemon(tmp_path, extra=extra, state_dir=d.state_dir).start(wait_clean=False)
    devs = d.wait(lambda ds: ds[2]["state"] == "sanitized" and not ds[2]["cleaning"])
    assert devs[2]["domain"] is None
    assert devs[0]["state"] == "attached" and devs[0]["domain"] == "vm-a6000"
    recs = d.result("audit", {"device": GPUS[2]})["records"]
    events = [r["event"] for r in recs]
    i = len(events) - 1 - events[::-1].index("detach_seen")
    assert events[i:i + 3] == ["detach_seen", "cleanup_started", "cleanup_passed"], events
    latency = recs[i + 1]["time"] - recs[i]["time"]
    print(f"# detach seen at restart -> cleanup_started: {latency} ms")
    assert latency < 1000
    assert d.stop() == 0, d.log.read_text()


# ---- release end waits until Placement shows the release (issue 14) ----
#
# libvirt runs `release end` inside virDomainDestroy and Nova frees the GPU's
# Placement allocation only after destroy returns; the Cyborg shim confirms a
# generation with `published` only once Placement shows its `reserved`. These
# play the shim with a thread calling `published`.

def reserved_of(inv, addr):
    return next(x["reserved"] for x in inv["deployables"] if addr in x["gpus"])


@pytest.fixture
def placed(tmp_path):
    """The daemon with a Placement writer active (one `published`), and vm1
    running on GPUS[0]."""
    d = Daemon(tmp_path).start()
    d.result("published", {"generation": d.result("inventory")["generation"]})
    assert hook(d, "vm1", "prepare", "begin", GPUS[0]) == (0, "")
    assert hook(d, "vm1", "started", "begin", GPUS[0]) == (0, "")
    assert device(d, GPUS[0])["state"] == "attached"
    yield d
    assert d.stop() == 0, d.log.read_text()


def test_release_end_returns_only_after_placement_shows_it(placed):
    d = placed
    seen = {}

    def shim():
        # Wait until the release is applied, then take a while, as a Cyborg
        # agent cycle does, before confirming what Placement now shows.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and device(d, GPUS[0])["state"] == "attached":
            time.sleep(0.02)
        time.sleep(1.0)
        inv = d.result("inventory", endpoint=d.read)
        seen["reserved"] = reserved_of(inv, GPUS[0])
        seen["at"] = time.monotonic()
        seen["result"] = d.result("published", {"generation": inv["generation"]})

    t = threading.Thread(target=shim)
    t0 = time.monotonic()
    t.start()
    rc, err = hook(d, "vm1", "release", "end", GPUS[0], publish_wait=None)   # the default: 10 s
    t1 = time.monotonic()
    t.join()
    assert (rc, err) == (0, "")
    assert "at" in seen, "the shim thread did not publish"
    assert seen["reserved"] == 1                   # what the shim confirmed shows the GPU reserved
    assert seen["at"] <= t1                        # the hook returned only after that
    assert 1.0 <= t1 - t0 < 8, t1 - t0
    m = d.result("metrics")
    assert m["published_revision"] >= 2 and m["published"] != 0


def test_release_end_without_a_placement_writer_returns_at_once(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        assert d.result("metrics")["published"] == 0 and d.result("metrics")["published_revision"] == 0
        d.result("attached", {"domain": "vm1", "addresses": [GPUS[1]]})
        t0 = time.monotonic()
        assert hook(d, "vm1", "release", "end", GPUS[1], publish_wait=10) == (0, "")
        assert time.monotonic() - t0 < 3
        assert device(d, GPUS[1])["state"] != "attached"
    finally:
        assert d.stop() == 0, d.log.read_text()


def test_release_end_wait_times_out_and_still_exits_0(placed):
    d = placed
    t0 = time.monotonic()
    rc, err = hook(d, "vm1", "release", "end", GPUS[0], publish_wait=1)
    took = time.monotonic() - t0
    assert rc == 0 and 1.0 <= took < 6, took
    assert err.startswith(f"gpuwarden: warning: domain 'vm1': Placement does not show GPU {GPUS[0]} "
                          "reserved after 1.0 s")
    assert "Placement may offer it for up to one Cyborg agent cycle" in err
    # the release itself went through: reserved in the inventory, clean-up under way or done
    assert device(d, GPUS[0])["state"] in ("discovered", "sanitized")
    assert reserved_of(d.result("inventory"), GPUS[0]) == 1


def test_released_result_names_generation_and_revision(placed):
    d = placed
    before = d.result("metrics")
    rel = d.result("released", {"domain": "vm1", "addresses": [GPUS[0], "0000:00:1f.3"]})
    assert list(rel) == ["devices", "generation", "revision"]
    assert rel["devices"] == [GPUS[0]]
    inv = d.result("inventory")
    assert rel["generation"] == inv["generation"] and reserved_of(inv, GPUS[0]) == 1
    assert rel["revision"] > before["published_revision"]
    # confirming an older generation does not reach it; confirming this one does
    d.result("published", {"generation": before["generation"]})
    assert d.result("metrics")["published_revision"] < rel["revision"]
    d.result("published", {"generation": rel["generation"]})
    m = d.result("metrics")
    assert m["published_revision"] >= rel["revision"] and m["published"] == rel["generation"]


def test_release_end_with_the_libvirt_watcher_waits_for_the_reservation(tmp_path):
    """With libvirt, `release end` of a persistent domain detaches nothing (the
    domain stays defined until Nova undefines it, with no hook then): its GPU
    is reserved as held by a stopped domain, and the hook waits until
    Placement shows that, as it does for a detach."""
    node = TOP / "tests" / "fixtures" / "libvirt" / "x299-3xa6000.xml"
    d = Daemon(tmp_path, extra=["--libvirt-uri", f"test://{node}"]).start(wait_clean=False)
    try:
        d.wait(lambda ds: ds[1]["state"] == "sanitized" and not ds[1]["cleaning"]
               and ds[0]["domain"] == "vm-a6000" and ds[2]["domain"] == "vm-shutoff")
        d.result("published", {"generation": d.result("inventory")["generation"]})
        d.result("published", {"generation": d.result("inventory")["generation"]})
        inv = d.result("inventory")
        assert inv["revision"] == inv["published_revision"] and reserved_of(inv, GPUS[0]) == 0
        seen = {}

        def shim():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and reserved_of(d.result("inventory", endpoint=d.read), GPUS[0]) == 0:
                time.sleep(0.02)
            time.sleep(1.0)
            now = d.result("inventory", endpoint=d.read)
            seen["reserved"] = reserved_of(now, GPUS[0])
            seen["at"] = time.monotonic()
            d.result("published", {"generation": now["generation"]})

        t = threading.Thread(target=shim)
        t0 = time.monotonic()
        t.start()
        rc, err = hook(d, "vm-a6000", "release", "end", GPUS[0], "0000:1a:00.1", publish_wait=None)
        t1 = time.monotonic()
        t.join()
        assert (rc, err) == (0, "")
        assert seen.get("reserved") == 1 and seen["at"] <= t1 and 1.0 <= t1 - t0 < 8, t1 - t0
        # still attached to the defined domain (no clean-up until it is undefined), handle kept
        assert device(d, GPUS[0])["state"] == "attached" and device(d, GPUS[0])["domain"] == "vm-a6000"
        dep = next(x for x in d.result("inventory")["deployables"] if GPUS[0] in x["gpus"])
        assert dep["reserved"] == 1 and len(dep["attach_handles"]) == 1
    finally:
        assert d.stop() == 0, d.log.read_text()
