"""The daemon's replies from its cache are never stale, a first start writes
its scan in a constant number of checkpoint writes, and an idle daemon does
not wake up (issue 18; the figures are in docs/BENCHMARKS.md).

The real gpuwardend (simulated host backend) on the test hosts."""

import os
import re
import signal
import time

import msgpack
import zmq

from gwdaemon import Daemon

GPU = "0000:1a:00.0"    # x299-3xa6000


class Client:
    """One DEALER per endpoint, kept open: requests as fast as the daemon
    answers them."""

    def __init__(self, d, endpoint):
        self.s = d.ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(endpoint)
        self.id = 1000

    def raw(self, op, args=None, rid=None):
        if rid is None:
            self.id += 1
            rid = self.id
        self.s.send_multipart([b"", msgpack.packb({"v": [1, 0], "id": rid, "op": op, "args": args or {}})])
        assert self.s.poll(5000), f"no reply to {op}"
        frames = self.s.recv_multipart()
        return frames[1]

    def result(self, op, args=None):
        rep = msgpack.unpackb(self.raw(op, args))
        assert rep["ok"], rep
        return rep["result"]

    def close(self):
        self.s.close()


def gpu_in_inventory(inv, address):
    for dp in inv["deployables"]:
        if address in dp["gpus"]:
            return dp
    return None


def test_read_replies_follow_every_change_at_once(tmp_path):
    """Each change is followed at once (no sleep, the very next request) by
    `inventory`, `devices` and `device`, whose replies the daemon keeps
    between changes: an operator's quarantine and release, a clean-up's
    verdict, a hook's attach and release hints, `published`, and a reload
    that changes the extra traits. A repeated request gets the same bytes
    (same id: the cached reply is the one the encoder made), and repeated
    reads of an unchanged state are answered from the cache (its count,
    logged at the stop)."""
    conf = tmp_path / "gpuwarden-test.conf"
    conf.write_text("# tests\n")
    d = Daemon(tmp_path, extra=["--log-level", "info"]).start()
    admin, read = Client(d, d.admin), Client(d, d.read)
    try:
        def views():
            return read.result("inventory"), read.result("devices")["devices"], read.result("device", {"address": GPU})

        def state_of(devs):
            return next(x["state"] for x in devs if x["address"] == GPU)

        inv, devs, dev = views()
        admin.result("published", {"generation": inv["generation"]})
        inv, devs, dev = views()
        assert dev["state"] == "allocatable", dev
        assert inv["published_revision"] == inv["revision"] - 1     # the promotion made a new one
        admin.result("published", {"generation": inv["generation"]})
        inv, devs, dev = views()
        assert inv["published_revision"] == inv["revision"]
        assert gpu_in_inventory(inv, GPU)["attach_handles"], inv
        # The same request twice: the same bytes.
        assert read.raw("inventory", rid=7) == read.raw("inventory", rid=7)
        assert read.raw("devices", rid=8) == read.raw("devices", rid=8)

        for round_ in range(5):
            before = read.result("inventory")
            admin.result("quarantine", {"address": GPU, "reason": f"round {round_}"})
            inv, devs, dev = views()
            assert dev["state"] == "quarantined" and dev["reason"] == f"round {round_}", dev
            assert state_of(devs) == "quarantined"
            assert inv["generation"] != before["generation"]
            assert not gpu_in_inventory(inv, GPU)["attach_handles"], inv
            assert inv["revision"] == before["revision"] + 1

            admin.result("release", {"address": GPU})
            inv, devs, dev = views()
            assert dev["state"] in ("discovered", "sanitized"), dev
            # The clean-up's verdict: the very next read after it shows it.
            deadline = time.time() + 10
            while dev["state"] != "sanitized":
                assert time.time() < deadline, dev
                dev = read.result("device", {"address": GPU})
            assert state_of(read.result("devices")["devices"]) == "sanitized"
            inv = read.result("inventory")
            admin.result("published", {"generation": inv["generation"]})
            inv = read.result("inventory")
            dev = read.result("device", {"address": GPU})
            assert dev["state"] == "allocatable", dev
            assert gpu_in_inventory(inv, GPU)["attach_handles"], inv
            admin.result("published", {"generation": inv["generation"]})
            inv = read.result("inventory")
            assert inv["published_revision"] == inv["revision"], inv

        # The hook's hints (no libvirt): attached, then released.
        admin.result("attached", {"domain": "instance-1", "addresses": [GPU]})
        dev = read.result("device", {"address": GPU})
        assert dev["domain"] == "instance-1" and dev["state"] == "attached", dev
        assert next(x for x in read.result("devices")["devices"] if x["address"] == GPU)["domain"] == "instance-1"
        admin.result("released", {"domain": "instance-1", "addresses": [GPU]})
        dev = read.result("device", {"address": GPU})
        assert dev["domain"] is None, dev

        # A reload that changes the extra traits.
        inv = read.result("inventory")
        assert "CUSTOM_STEADY_TEST" not in gpu_in_inventory(inv, "0000:67:00.0")["traits"]
        conf.write_text("[inventory]\nextra_traits = CUSTOM_STEADY_TEST\n")
        log_before = d.log.read_text()
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while d.log.read_text().count("configuration reloaded") <= log_before.count("configuration reloaded"):
            assert time.time() < deadline, d.log.read_text()[-2000:]
            time.sleep(0.01)
        inv = read.result("inventory")
        assert "CUSTOM_STEADY_TEST" in gpu_in_inventory(inv, "0000:67:00.0")["traits"], inv

        # The released GPU's clean-up over, nothing changes any more.
        d.wait(lambda devs: all(not x["cleaning"] and x["state"] in ("sanitized", "allocatable") for x in devs))
        time.sleep(0.2)
        for _ in range(200):
            read.raw("inventory")
            read.raw("device", {"address": "0000:67:00.0"})
    finally:
        admin.close()
        read.close()
        d.stop()
    m = re.search(r"reply cache: (\d+) read\(s\) answered from it, (\d+) encoded", d.log.read_text())
    assert m, d.log.read_text()[-2000:]
    # The last 400 reads of an unchanged state all come from it (the misses
    # count the polls of a running clean-up, which is never kept).
    hits = int(m.group(1))
    assert hits >= 400, m.group(0)


def test_first_start_on_64_gpus_writes_its_scan_in_a_few_checkpoint_writes(tmp_path):
    """synth64, an empty state directory: the 64 `found` transitions and the
    256 PCI facts pinned go to disk in at most 4 checkpoint writes (before:
    320, one per transition and one per fact). The audit log has every
    transition all the same."""
    d = Daemon(tmp_path, host="synth64", extra=["--manage-vendors", "10de", "--isolation-policy", "warn"])
    d.start(wait_clean=False)
    try:
        log = d.log.read_text()
        m = re.search(r"start-up: first scan recorded in (\d+) checkpoint write", log)
        assert m, log[-2000:]
        assert int(m.group(1)) <= 4, m.group(0)
        found = [line for line in (d.state_dir / "audit.log").read_text().splitlines() if '"event":"found"' in line]
        assert len(found) == 64
        dev = d.result("device", {"address": "0000:0b:00.0"})
        assert dev["identity"]["class"] == "0300" and dev["identity"]["vendor_name"], dev
    finally:
        d.stop()


def ctxt_switches(pid):
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
        except FileNotFoundError:
            pass
    return n


def test_idle_daemon_does_not_wake_up(tmp_path):
    """No rescan, no libvirt: over 4 s of idleness every thread of the daemon
    sleeps (context switches of all its threads, from /proc). Before: the
    request loop woke every second to list the registry."""
    d = Daemon(tmp_path).start()
    try:
        time.sleep(0.5)
        before = ctxt_switches(d.proc.pid)
        time.sleep(4)
        woke = ctxt_switches(d.proc.pid) - before
        assert woke <= 2, f"{woke} wake-ups in 4 s idle"
    finally:
        d.stop()
