"""The gate endpoint (docs/daemon.md, "The gate endpoint"; PROTOCOL.md §2):
the libvirt hook's `gate` on a thread and socket of its own, against the real
gpuwardend on the x299-3xa6000 test host (simulated host backend). It gives
the same verdicts as the admin endpoint, serves nothing but `hello` and
`gate`, has the read endpoint's exposure, is ipc:// only, and is where the
hook asks."""

import os
import stat
import subprocess

import pytest

from gwdaemon import Daemon, build_dir
from test_hook_daemon import HOST, domain_xml

GPUS = ["0000:1a:00.0", "0000:67:00.0", "0000:68:00.0"]   # x299-3xa6000


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path).start()
    inv = d.result("inventory")
    d.result("published", {"generation": inv["generation"]})
    yield d
    assert d.stop() == 0, d.log.read_text()


def gate(d, endpoint, domain, *addrs):
    return d.result("gate", {"domain": domain, "addresses": list(addrs)}, endpoint=endpoint)


def test_same_verdicts_as_the_admin_endpoint(daemon):
    d = daemon
    assert gate(d, d.gate, "vm1", GPUS[0]) == {"allowed": True, "reasons": []}
    d.result("quarantine", {"address": GPUS[1], "reason": "bad HBM row"})
    on_gate = gate(d, d.gate, "vm1", GPUS[0], GPUS[1])
    assert on_gate == gate(d, d.admin, "vm1", GPUS[0], GPUS[1]) == gate(d, d.read, "vm1", GPUS[0], GPUS[1])
    assert on_gate == {"allowed": False, "reasons": [{"address": GPUS[1], "reason": "quarantined: bad HBM row"}]}
    # An allowing gate is kept in the endpoint's own reply cache: a change
    # made through another endpoint must not leave it answering the old
    # verdict.
    assert gate(d, d.gate, "vm2", GPUS[2])["allowed"]
    assert gate(d, d.gate, "vm2", GPUS[2])["allowed"]
    d.result("quarantine", {"address": GPUS[2], "reason": "Xid 79"})
    assert gate(d, d.gate, "vm2", GPUS[2]) == {
        "allowed": False, "reasons": [{"address": GPUS[2], "reason": "quarantined: Xid 79"}]}
    # The same counters as every endpoint.
    assert d.result("metrics")["requests"]["gate"] >= 7


def test_serves_hello_and_gate_only(daemon):
    d = daemon
    hello = d.result("hello", endpoint=d.gate)
    assert hello["endpoint"] == "gate" and hello["ops"] == ["hello", "gate"]
    before = d.devices()
    for op, args in [("inventory", {}), ("devices", {}), ("audit", {}), ("metrics", {}),
                     ("quarantine", {"address": GPUS[0], "reason": "x"}), ("sanitize", {"address": GPUS[0]}),
                     ("attached", {"domain": "vm1", "addresses": [GPUS[0]]})]:
        rep = d.call(op, args, endpoint=d.gate)
        assert not rep["ok"] and rep["error"]["code"] == "forbidden", rep
        assert rep["error"]["message"] == f"op: '{op}' is not served on the gate endpoint", rep
    assert d.devices() == before
    # Garbage gets the decoder's answer there too, and the thread serves on.
    frames = d.raw([b"", b"\xc1"], endpoint=d.gate)
    assert len(frames) == 2 and b"malformed" in frames[1]
    assert gate(d, d.gate, "vm1", GPUS[0])["allowed"]


def test_socket_file_has_the_read_endpoints_exposure_and_goes_at_exit(tmp_path):
    d = Daemon(tmp_path).start()
    path = d.gate[len("ipc://"):]
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert d.stop() == 0
    assert not os.path.exists(path)


def test_empty_gate_endpoint_binds_nothing(tmp_path):
    d = Daemon(tmp_path, extra=["--gate-endpoint", ""]).start()
    try:
        assert not os.path.exists(d.gate[len("ipc://"):])
        assert gate(d, d.admin, "vm1", GPUS[0])["allowed"]
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5599", "inproc://gate"])
def test_gate_endpoint_must_be_ipc(tmp_path, endpoint):
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--check-config", "--config", "/dev/null",
                        "--gate-endpoint", endpoint], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r
    assert f"gate_endpoint must be an ipc:// endpoint or empty, not '{endpoint}'" in r.stderr


def hook_prepare(endpoint_args, env, *addrs):
    e = {k: v for k, v in os.environ.items() if not k.startswith("GPUWARDEN_")}
    e.update(env)
    p = subprocess.run([str(build_dir() / "gpuwarden"), "hook", *endpoint_args, "--timeout-ms", "2000",
                        "--host-root", str(HOST), "qemu", "vm1", "prepare", "begin", "-"],
                       input=domain_xml("vm1", *addrs).encode(), capture_output=True, env=e, timeout=30)
    return p.returncode, p.stderr.decode()


def test_hook_asks_the_gate_endpoint(daemon, tmp_path):
    d = daemon
    nowhere = f"ipc://{tmp_path}/no-daemon-here.sock"
    d.result("quarantine", {"address": GPUS[1], "reason": "bad HBM row"})
    # The admin endpoint the hook is given answers nothing: a verdict can
    # only have come from the gate endpoint.
    for how in (["--gate-endpoint", d.gate], []):
        env = {} if how else {"GPUWARDEN_GATE_ENDPOINT": d.gate}
        assert hook_prepare(["--endpoint", nowhere, *how], env, GPUS[0]) == (0, "")
        rc, err = hook_prepare(["--endpoint", nowhere, *how], env, GPUS[1])
        assert rc == 1 and "0000:67:00.0 quarantined: bad HBM row" in err, err
    # Given an --endpoint and no gate endpoint, the hook asks that endpoint
    # (a daemon elsewhere, or one without a gate endpoint).
    rc, err = hook_prepare(["--endpoint", nowhere], {}, GPUS[0])
    assert rc == 1 and "daemon" in err, err
    assert hook_prepare(["--endpoint", d.admin], {}, GPUS[0]) == (0, "")
