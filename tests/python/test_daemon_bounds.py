"""gpuwardend's bounds (issue 15, items 3 and 7): no clean-up storms on shared
IOMMU groups, a bounded audit log, `audit` off the request thread, and
bounded connections and message memory per client. Each test says what it
measured on the code before the fix in its docstring.

Latency checks compare `gate` on the admin endpoint under load with `gate`
on the same daemon idle: the p99 of the loaded run must stay within twice
the idle p99. Both are measured in the same test, so a slow machine slows
both; a floor of 2 ms on the idle figure keeps a sub-millisecond idle p99
from making scheduler noise on a 2-CPU runner a failure."""

import os
import shutil
import socket
import threading
import time

import msgpack
import zmq

from gwdaemon import HOSTS, Daemon

SM4029 = "sm4029-8xrtx5000"
# Its GPUs pass clean-up only with these (test_e2e_placement.WARN).
SM4029_ARGS = ["--isolation-policy", "warn", "--manage-vendors", "10de"]
GROUP0 = ["0000:1a:00.0", "0000:1c:00.0", "0000:1d:00.0", "0000:1e:00.0"]   # IOMMU group 0
X299_GPU = "0000:1a:00.0"                                                  # x299-3xa6000


def audit_lines(d):
    """Records in every audit segment (the log rotates)."""
    return sum(sum(1 for _ in open(p)) for p in d.state_dir.glob("audit.log*"))


def audit_of(d, address, limit=1000):
    return d.result("audit", {"device": address, "limit": limit})["records"]


def stopped(d):
    """Stop the daemon; its exit status must be 0."""
    rc = d.stop()
    assert rc == 0, d.log.read_text()[-4000:]


# ---- no storms on shared IOMMU groups ----------------------------------------

def test_sibling_waits_for_the_vm_in_its_iommu_group_then_cleans_once(tmp_path):
    """A VM holds 1a:00.0; its group sibling 1c:00.0 comes back dirty. Before:
    1c's clean-up started at once and aborted at not_in_use ("0000:1a:00.0 is
    in use by domain 'vm1'"), then again after each in_use_retry wait (3
    starts in 4 s with --in-use-retry 1; with retries lifted by any transition
    this was the 590 records/s loop of the issue). Now it does not start while
    the group has a held member, and starts once when the VM lets go."""
    d = Daemon(tmp_path, host=SM4029, extra=SM4029_ARGS + ["--in-use-retry", "1"]).start()
    try:
        assert all(x["state"] == "sanitized" for x in d.devices())
        d.result("attached", {"domain": "vm1", "addresses": [GROUP0[0]]})
        d.result("attached", {"domain": "vm2", "addresses": [GROUP0[1]]})
        d.result("released", {"domain": "vm2", "addresses": [GROUP0[1]]})
        lines = audit_lines(d)
        time.sleep(4)
        names = [r["event"] for r in audit_of(d, GROUP0[1])]
        after = names[names.index("detach_seen") + 1:]
        assert after == [], after
        assert audit_lines(d) == lines
        assert "clean-up waits until 0000:1a:00.0, in the same IOMMU group 0, is released" in d.log.read_text()
        dev = d.result("device", {"address": GROUP0[1]})
        assert (dev["state"], dev["dirty"], dev["cleaning"]) == ("discovered", True, False)

        d.result("released", {"domain": "vm1", "addresses": [GROUP0[0]]})
        d.wait(lambda ds: all(x["state"] in ("sanitized", "allocatable") for x in ds), timeout=10)
        names = [r["event"] for r in audit_of(d, GROUP0[1])]
        after = names[names.index("detach_seen") + 1:]
        assert after == ["cleanup_started", "cleanup_passed"], after
    finally:
        stopped(d)


def test_group_held_by_a_process_backs_off_per_gpu(tmp_path):
    """A process libvirt does not know has group 0's /dev/vfio/0 open: every
    GPU of the group aborts at not_in_use. Each GPU's next attempt waits
    in_use_retry_s, doubling (1 s, 2 s, 4 s...): at most one attempt per
    backoff period, so the audit log grows by a bounded number of records."""
    host = tmp_path / "host"
    shutil.copytree(HOSTS / SM4029, host, symlinks=True)
    proc = host / "proc" / "4242"
    (proc / "fd").mkdir(parents=True)
    (proc / "fd" / "31").symlink_to("/dev/vfio/0")
    (proc / "comm").write_text("qemu-system-x86\n")
    d = Daemon(tmp_path, host=str(host), extra=SM4029_ARGS + ["--in-use-retry", "1"])
    d.start(wait_clean=False)
    try:
        t0 = time.time()
        time.sleep(6.5)
        span = time.time() - t0
        for gpu in GROUP0:
            recs = audit_of(d, gpu)
            starts = [r["time"] for r in recs if r["event"] == "cleanup_started"]
            assert all(r["reason"].endswith("(qemu-system-x86): in use")
                       for r in recs if r["event"] == "cleanup_aborted"), recs
            assert "cleanup_failed" not in [r["event"] for r in recs]
            # 0, 1, 3 (+4 = 7 > 6.5): three attempts, never two within a wait
            assert 1 <= len(starts) <= 3, (gpu, starts)
            gaps = [(b - a) / 1000 for a, b in zip(starts, starts[1:])]
            for i, gap in enumerate(gaps):
                assert gap >= 0.9 * 2 ** i, (gpu, gaps)
        # group 1 cleaned: 4 x (found, started, passed); group 0: 4 x found
        # and at most 3 x (started, aborted) each
        assert audit_lines(d) <= 4 * 3 + 4 * (1 + 3 * 2), (audit_lines(d), span)
        shutil.rmtree(proc)
        d.wait(lambda ds: all(x["state"] == "sanitized" for x in ds), timeout=30)
    finally:
        stopped(d)


# ---- helpers: latency, memory, raw ZMTP peers ---------------------------------

GATE_FLOOR = 0.002      # seconds: the idle p99 used is at least this (see the module docstring)


class Gate:
    """`gate` on the admin endpoint over one DEALER, timed request by request."""

    def __init__(self, d):
        self.d = d
        self.s = d.ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(d.admin)
        self.n = 0

    def once(self):
        self.n += 1
        body = msgpack.packb({"v": [1, 0], "id": self.n, "op": "gate",
                              "args": {"domain": "vm-p99", "addresses": [X299_GPU]}})
        t = time.perf_counter()
        self.s.send_multipart([b"", body])
        assert self.s.poll(60000), "gate: no reply in 60 s"
        rep = msgpack.unpackb(self.s.recv_multipart()[1])
        dt = time.perf_counter() - t
        assert rep["id"] == self.n and rep["ok"], rep
        return dt

    def p99(self, n=300):
        lat = sorted(self.once() for _ in range(n))
        return lat[int(0.99 * n) - 1]

    def close(self):
        self.s.close()


def asan_build():
    """An ASan build keeps freed memory in quarantine: RSS bounds get room."""
    import subprocess
    from gwdaemon import build_dir
    out = subprocess.run(["ldd", str(build_dir() / "gpuwardend")], capture_output=True, text=True).stdout
    return "libasan" in out


def status_kb(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# A ZMTP 3.0 peer with the NULL mechanism, as a DEALER: the 64-byte greeting
# and the READY command. Written by hand so the tests hold thousands of
# connections, or send frames, without a ZeroMQ context in between.
GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
READY_BODY = b"\x05READY" + b"\x0bSocket-Type" + (6).to_bytes(4, "big") + b"DEALER"
READY = bytes([0x04, len(READY_BODY)]) + READY_BODY
assert len(GREETING) == 64


def raw_peer(path, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    deadline = time.time() + timeout
    while True:
        try:
            s.connect(path)
            break
        except BlockingIOError:
            # the listen queue is full until the daemon accepts (or refuses)
            assert time.time() < deadline, "connect: the daemon accepts nothing"
            time.sleep(0.001)
    s.settimeout(timeout)
    try:
        s.sendall(GREETING + READY)
    except OSError:
        pass    # refused: closed by the daemon at once
    return s


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("closed by the daemon")
        buf += chunk
    return buf


def handshake(s):
    """Read the daemon's greeting and READY: a peer sends messages only
    after them (libzmq takes a message frame before its READY is sent for a
    protocol error)."""
    assert recv_exactly(s, 64)[:1] == b"\xff"
    flags, size = recv_exactly(s, 2)
    assert flags == 0x04, flags
    assert recv_exactly(s, size).startswith(b"\x05READY")


def kept(s):
    """Whether the daemon kept this connection: it greeted it and did not
    close it."""
    s.setblocking(False)
    try:
        return len(s.recv(4096)) > 0
    except BlockingIOError:
        return True
    except OSError:
        return False


def frame(body, more):
    flags = (0x01 if more else 0) | (0x02 if len(body) > 255 else 0)
    size = len(body).to_bytes(8, "big") if len(body) > 255 else bytes([len(body)])
    return bytes([flags]) + size + body


def raise_own_fd_limit(need):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need and hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def with_fd_limit(soft, hard):
    import resource

    def pre():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return pre


def start_with_limit(d, soft, hard):
    """Daemon.start with the open-file limit a unit without LimitNOFILE gives."""
    import subprocess
    real = subprocess.Popen

    def popen(*a, **kw):
        kw["preexec_fn"] = with_fd_limit(soft, hard)
        return real(*a, **kw)
    subprocess.Popen = popen
    try:
        return d.start()
    finally:
        subprocess.Popen = real


# ---- the audit log is bounded; `audit` never runs in front of `gate` -----------

def test_audit_log_rotates_and_audit_reads_every_segment(tmp_path):
    """--audit-segment-bytes 4096 --audit-segments 2: audit.log rotates to
    audit.log.1 and .2, nothing older is kept, and `audit` (like the files)
    holds one contiguous run of the newest records across the segments.
    Before: one file growing without bound, no option."""
    d = Daemon(tmp_path, extra=["--audit-segment-bytes", "4096", "--audit-segments", "2"]).start()
    try:
        for i in range(40):
            d.result("quarantine", {"address": X299_GPU, "reason": f"rotation {i}"})
            d.result("release", {"address": X299_GPU})
        d.wait(lambda ds: all(x["state"] == "sanitized" for x in ds))
        names = sorted(p.name for p in d.state_dir.glob("audit.log*"))
        assert names == ["audit.log", "audit.log.1", "audit.log.2"], names
        assert all(p.stat().st_size >= 4096 for p in d.state_dir.glob("audit.log.*"))
        seqs = []
        for name in ("audit.log.2", "audit.log.1", "audit.log"):
            seqs += [int(line.split(b",", 1)[0][len(b'{"seq":'):]) for line in (d.state_dir / name).open("rb")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] > 1, seqs
        rep = d.result("audit", {"limit": 1000})
        assert len(rep["records"]) == len(seqs) and rep["truncated"] is False
        last = d.result("audit", {"device": X299_GPU, "limit": 3})
        assert last["truncated"] is True
        assert [r["event"] for r in last["records"]] == ["release", "cleanup_started", "cleanup_passed"], last
    finally:
        stopped(d)


def synthetic_audit_log(path, n):
    """n records as the registry writes them (compact JSON, this key order),
    spread over eight addresses no host here has."""
    import json
    t0 = 1_700_000_000_000
    with open(path, "w") as f:
        for seq in range(1, n + 1):
            ms = t0 + seq * 1000
            rec = {"seq": seq, "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".000Z",
                   "time_ms": ms,
                   "device": {"address": f"0000:f{seq % 8}:00.0", "vendor_id": "10de", "device_id": "2230",
                              "subsystem_vendor_id": "10de", "subsystem_device_id": "1459", "dsn": None},
                   "event": "quarantine", "from": "allocatable", "from_flags": [], "to": "quarantined",
                   "to_flags": [], "actor": "operator:load(0)", "reason": "synthetic record " + "x" * 200,
                   "evidence": ""}
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")


def test_queued_audit_requests_do_not_hold_gate(tmp_path):
    """100 `audit` requests pipelined by one read client over a 20,000-record
    log (a third of them for a device with no record, which reads the whole
    log), and `gate`s on the admin endpoint one after another until the last
    audit is answered: the p99 of those gates stays within 2x of idle, and
    every audit is answered. Before: each audit re-read the log on the
    request thread, so a gate waited for up to 64 of them (one loop turn)."""
    state = tmp_path / "state"
    state.mkdir()
    synthetic_audit_log(state / "audit.log", 20000)
    d = Daemon(tmp_path).start()
    gate = Gate(d)
    try:
        idle = gate.p99()
        s = d.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(d.read)
        asks = [{"limit": 1000}, {"device": "0000:f3:00.0", "limit": 1000}, {"device": "0000:99:00.0"}]
        for i in range(100):
            s.send_multipart([b"", msgpack.packb({"v": [1, 0], "id": 1000 + i, "op": "audit",
                                                  "args": asks[i % 3]})])
        time.sleep(0.05)        # on the daemon's side of the socket
        replies = {}

        def drain(timeout=0):
            while s.poll(timeout):
                rep = msgpack.unpackb(s.recv_multipart()[1])
                replies[rep["id"]] = rep
                timeout = 0
        # gates one after another until every audit is answered: each gate
        # counts, for all of them were asked while audits were queued
        lat = []
        deadline = time.time() + 120
        while (len(replies) < 100 or len(lat) < 100) and time.time() < deadline:
            lat.append(gate.once())
            drain()
        s.close()
        lat.sort()
        loaded = lat[max(0, int(0.99 * len(lat)) - 1)]
        assert sorted(replies) == list(range(1000, 1100))
        for i, rep in replies.items():
            assert rep["ok"], rep
            n = len(rep["result"]["records"])
            assert n == {0: 1000, 1: 1000, 2: 0}[(i - 1000) % 3], (i, n)
        print(f"gate p99 idle {idle * 1e3:.2f} ms, while 100 audits were queued {loaded * 1e3:.2f} ms "
              f"({len(lat)} gates, the slowest {lat[-1] * 1e3:.1f} ms)")
        assert loaded <= 2 * max(idle, GATE_FLOOR), (idle, loaded)
    finally:
        gate.close()
        stopped(d)


# ---- resource bounds for every client ------------------------------------------

def test_thousands_of_connections_are_refused_not_a_crash(tmp_path):
    """2000 connections to read.sock, the daemon started with the open-file
    limit a unit without LimitNOFILE gets (soft 1024; hard 4096 here): it
    raises its soft limit, keeps max_connections (256) of them, closes the
    rest at once, and serves `gate` within 2x of idle, RSS under the bound
    docs/daemon.md states. Before: libzmq aborted at ~1000 connections
    ("Too many open files (ipc_listener.cpp)", exit -6)."""
    n = min(2000, raise_own_fd_limit(2200) - 100)
    d = Daemon(tmp_path)
    start_with_limit(d, 1024, 4096)
    gate = Gate(d)
    peers = []
    try:
        limits = open(f"/proc/{d.proc.pid}/limits").read()
        assert [ln for ln in limits.splitlines() if ln.startswith("Max open files")][0].split()[3:5] == \
            ["4096", "4096"], limits
        idle = gate.p99()
        rss0 = status_kb(d.proc.pid, "VmRSS")
        path = d.read[len("ipc://"):]
        for _ in range(n):
            peers.append(raw_peer(path))
        time.sleep(1)
        alive = sum(kept(p) for p in peers)
        assert alive == 256, alive
        assert d.alive()
        loaded = gate.p99()
        rss = status_kb(d.proc.pid, "VmRSS")
        print(f"{n} connections, {alive} kept; gate p99 idle {idle * 1e3:.2f} ms, loaded {loaded * 1e3:.2f} ms; "
              f"RSS {rss0} -> {rss} kB, {open_fds(d.proc.pid)} fds")
        assert loaded <= 2 * max(idle, GATE_FLOOR), (idle, loaded)
        slack = 2 if asan_build() else 1
        assert rss - rss0 < 256 * 256 * slack, (rss0, rss)  # docs/daemon.md: < 256 KiB a connection
        assert "read endpoint: connection refused: too many open" in d.log.read_text()
        for p in peers:
            p.close()
        peers = []
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                assert d.result("hello", endpoint=d.read, timeout=1000)["endpoint"] == "read"
                break
            except TimeoutError:
                pass
        else:
            raise AssertionError("read endpoint not served again after the connections closed")
    finally:
        for p in peers:
            p.close()
        gate.close()
        stopped(d)


def test_clients_sending_huge_multipart_messages_are_dropped(tmp_path):
    """Ten read clients each send one message of 1000 frames of 1 MiB. Each
    is dropped when its message passes max_message_bytes (the second
    frame), before libzmq buffers the rest; `gate` stays within 2x of idle and
    the RSS under the bound docs/daemon.md states. Before: libzmq buffered
    every frame of a message (three such clients: 2.9 GB peak, 2.4 GB held);
    here the test stops at 1 GiB."""
    raise_own_fd_limit(100)
    d = Daemon(tmp_path).start()
    gate = Gate(d)
    pid = d.proc.pid
    try:
        idle = gate.p99()
        rss0 = status_kb(pid, "VmRSS")
        path = d.read[len("ipc://"):]
        mib = b"\x00" * (1 << 20)
        stop = threading.Event()
        sent = [0] * 10
        peak = [rss0]

        def send(i):
            p = raw_peer(path)
            p.settimeout(30)
            try:
                handshake(p)
                p.sendall(frame(b"", True))
                for k in range(1000):
                    if stop.is_set():
                        return
                    p.sendall(frame(mib, k < 999))
                    sent[i] += 1
            except OSError:
                pass        # dropped
            finally:
                p.close()

        def watch():
            while not stop.is_set():
                rss = status_kb(pid, "VmRSS")
                peak[0] = max(peak[0], rss)
                if rss > (1 << 20):      # 1 GiB: the bound is broken; spare the machine
                    stop.set()
                time.sleep(0.01)

        w = threading.Thread(target=watch)
        w.start()
        senders = [threading.Thread(target=send, args=(i,)) for i in range(10)]
        for t in senders:
            t.start()
        loaded = gate.p99()
        for t in senders:
            t.join(120)
        stop.set()
        w.join()
        hwm = status_kb(pid, "VmHWM")
        rss = status_kb(pid, "VmRSS")
        print(f"frames sent before the drop: {sent}; gate p99 idle {idle * 1e3:.2f} ms, loaded "
              f"{loaded * 1e3:.2f} ms; RSS {rss0} kB -> peak {peak[0]} kB (VmHWM {hwm}), after {rss} kB")
        assert d.alive()
        assert max(sent) <= 2, sent
        # docs/daemon.md: unfinished messages together <= 16 x max_message_bytes (16 MiB), and
        # libzmq's buffers; an ASan build also keeps what was freed
        slack = 3 if asan_build() else 1
        assert peak[0] - rss0 < (16 * 1024 + 8 * 1024) * slack, (rss0, peak)
        assert loaded <= 2 * max(idle, GATE_FLOOR), (idle, loaded)
        assert "read endpoint: client dropped: a message larger than max_message_bytes" in d.log.read_text()
        assert d.result("hello", endpoint=d.read)["endpoint"] == "read"
    finally:
        gate.close()
        stopped(d)
