"""Run the real gpuwardend for a test: a test host tree (never /), the
simulated host backend (it models the kernel's reactions and writes nothing
to the tree), a temporary state directory and ipc endpoints."""

import os
import pathlib
import signal
import subprocess
import time

import msgpack
import zmq

ROOT = pathlib.Path(__file__).resolve().parents[2]
HOSTS = ROOT / "tests" / "fixtures" / "hosts"


def build_dir():
    d = os.environ.get("GW_BUILD_DIR")
    if not d:
        raise RuntimeError("GW_BUILD_DIR is not set: run the suite through scripts/test")
    return pathlib.Path(d)


class Daemon:
    def __init__(self, tmp, host="x299-3xa6000", extra=(), state_dir=None):
        self.tmp = pathlib.Path(tmp)
        self.host = HOSTS / host
        assert self.host.is_dir(), self.host
        self.state_dir = pathlib.Path(state_dir) if state_dir else self.tmp / "state"
        self.admin = f"ipc://{self.tmp}/admin.sock"
        self.read = f"ipc://{self.tmp}/read.sock"
        self.events = f"ipc://{self.tmp}/events.sock"
        self.gate = f"ipc://{self.tmp}/gate.sock"
        self.extra = list(extra)
        self.proc = None
        self.log = self.tmp / "gpuwardend.log"
        self.ctx = zmq.Context.instance()
        self._id = 0

    def argv(self):
        # An explicit, empty config: the daemon must never read this
        # machine's /etc/gpuwarden/gpuwarden.conf in a test.
        conf = self.tmp / "gpuwarden-test.conf"
        if not conf.exists():
            conf.write_text("# tests: every setting comes from flags\n")
        return [str(build_dir() / "gpuwardend"), "--foreground", "--config", str(conf),
                "--host-root", str(self.host), "--host-backend", "simulated",
                "--state-dir", str(self.state_dir),
                "--admin-endpoint", self.admin, "--read-endpoint", self.read,
                "--events-endpoint", self.events, "--gate-endpoint", self.gate, "--libvirt-uri", "",
                "--hooks-dir", str(self.tmp / "hooks.d"), "--host-name", "cmp1",
                "--rescan-interval", "0"] + self.extra

    def start(self, wait_clean=True):
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self._logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gpuwardend exited {self.proc.returncode}:\n{self.log.read_text()}")
            # Up once its ipc endpoint answers: the admin one, unless that is tcp://
            # (CURVE: the probe would need a key), then the read one.
            probe = self.admin if self.admin.startswith("ipc://") else self.read
            if os.path.exists(probe[6:]):
                try:
                    self.call("hello", endpoint=probe, timeout=1000)
                    break
                except TimeoutError:
                    pass
            time.sleep(0.05)
        else:
            raise RuntimeError("gpuwardend did not come up:\n" + self.log.read_text())
        if wait_clean:
            self.wait(lambda devs: all(not d["cleaning"] and d["state"] != "discovered" for d in devs))
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            rc = self.proc.wait(timeout=30)
            self._logf.close()
            return rc
        return self.proc.returncode if self.proc else None

    def alive(self):
        return self.proc.poll() is None

    def raw(self, frames, endpoint=None, timeout=5000):
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint or self.admin)
        try:
            s.send_multipart(frames)
            if not s.poll(timeout):
                raise TimeoutError("no reply")
            return s.recv_multipart()
        finally:
            s.close()

    def request(self, body, endpoint=None, timeout=5000):
        frames = self.raw([b"", body], endpoint, timeout)
        assert frames[0] == b"" and len(frames) == 2, frames
        return msgpack.unpackb(frames[1])

    def call(self, op, args=None, endpoint=None, timeout=5000, actor=None):
        self._id += 1
        req = {"v": [1, 0], "id": self._id, "op": op, "args": args or {}}
        if actor:
            req["actor"] = actor
        rep = self.request(msgpack.packb(req), endpoint, timeout)
        assert rep["id"] == self._id, rep
        return rep

    def result(self, op, args=None, **kw):
        rep = self.call(op, args, **kw)
        assert rep["ok"], rep
        return rep["result"]

    def devices(self):
        return self.result("devices")["devices"]

    def wait(self, predicate, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            devs = self.devices()
            if predicate(devs):
                return devs
            time.sleep(0.05)
        raise AssertionError(f"condition not reached: {self.devices()}")
