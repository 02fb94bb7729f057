"""gpuwardend under systemd logs to the journal with structured fields
(issue 16 item 7): GPU_ADDRESS= on every line about a GPU, STEP= on the
clean-up's step lines and on a failure's, PRIORITY= and SYSLOG_IDENTIFIER=.

There is no journald here, and libsystemd's socket path is fixed
(/run/systemd/journal/socket), so the daemon runs in a private mount
namespace (unshare, root only) whose /run is a tmpfs holding a journal
socket of the test's: the entries checked are the datagrams sd_journal_sendv()
really sent. Not covered: journald's own handling of them."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from gwdaemon import build_dir

STEPS = ["bind", "not_in_use", "reset", "health", "isolation", "scrub", "firmware", "hooks"]


def in_namespace(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    env = dict(os.environ, GW_BUILD_DIR=str(build_dir()))
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", sys.executable,
                        os.path.join(os.path.dirname(__file__), "journal_ns.py"), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_daemon_logs_structured_fields_to_the_journal(tmp_path):
    out = in_namespace(tmp_path)
    assert out["rc"] == 0
    entries = out["entries"]
    assert entries, "nothing reached the journal socket"
    assert all(e["SYSLOG_IDENTIFIER"] == "gpuwardend" and e["PRIORITY"].isdigit() for e in entries)
    # Every line went to the journal, none to stderr (journald would have it twice).
    assert not any(line.startswith("<") for line in out["stderr"].splitlines()), out["stderr"]
    gpu = [e for e in entries if e.get("GPU_ADDRESS") == "0000:67:00.0"]
    started = [e for e in gpu if e["MESSAGE"] == "0000:67:00.0: clean-up started"]
    assert started and started[-1]["PRIORITY"] == "6" and "STEP" not in started[-1]
    steps = [e["STEP"] for e in gpu if "STEP" in e]
    ran = [s for s in STEPS if s in steps]
    assert len(ran) >= 5, steps
    step = next(e for e in gpu if e.get("STEP") == "reset")
    assert step["PRIORITY"] == "7" and step["MESSAGE"].startswith("0000:67:00.0: clean-up step reset: pass in ")
    assert any(e["MESSAGE"] == "0000:67:00.0: clean-up passed" for e in gpu)
    # Lines about no one GPU carry no GPU_ADDRESS.
    assert any("GPU_ADDRESS" not in e for e in entries)


def test_daemon_without_journal_stream_logs_to_stderr(tmp_path):
    from gwdaemon import Daemon
    d = Daemon(tmp_path).start()
    d.result("sanitize", {"address": "0000:67:00.0"})
    d.wait(lambda ds: all(not x["cleaning"] for x in ds))
    assert d.stop() == 0
    assert "<6>0000:67:00.0: clean-up started\n" in d.log.read_text()
