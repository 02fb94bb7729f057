"""gpuwardend stopped (SIGTERM) while clean-up steps block (issue 15 item 8):
an operator hook that sleeps holds every GPU's hooks step when the signal
comes. The daemon waits for the steps to return before it frees what they
use (the attachment source, the hint view, the wake-up descriptor), exits 0,
and the hooks' process groups are gone. Run on the release build and, where
there is one (GW_ASAN_BUILD_DIR, else build-asan/ next to build/), on the
ASan+UBSan build: there no sanitizer may report anything, leaks included."""

import os
import pathlib
import signal
import time

import pytest

from gwdaemon import ROOT, Daemon, build_dir


def _builds():
    found = [pytest.param(build_dir(), id="release")]
    asan = pathlib.Path(os.environ.get("GW_ASAN_BUILD_DIR") or ROOT / "build-asan")
    if (asan / "gpuwardend").exists():
        found.append(pytest.param(asan, id="asan"))
    return found


class BuiltDaemon(Daemon):
    def __init__(self, tmp, build, **kw):
        super().__init__(tmp, **kw)
        self.build = pathlib.Path(build)

    def argv(self):
        return [str(self.build / "gpuwardend")] + super().argv()[1:]


def _running(pid):
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("build", _builds())
def test_sigterm_while_hooks_block_exits_cleanly(tmp_path, build, monkeypatch):
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
    monkeypatch.setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    pids = tmp_path / "pids"
    pids.mkdir()
    hook = hooks / "10-block"
    # Each clean-up's hook notes its pid (its process group) and a child it
    # leaves in the background, then blocks for a while.
    hook.write_text(f"#!/bin/sh\nsleep 30 & echo \"$$ $!\" > \"{pids}/$1\"\nsleep 4\n")
    hook.chmod(0o755)
    d = BuiltDaemon(tmp_path, build).start(wait_clean=False)
    deadline = time.time() + 30
    while len(list(pids.iterdir())) < 3 and time.time() < deadline:
        assert d.alive(), d.log.read_text()
        time.sleep(0.05)
    assert len(list(pids.iterdir())) == 3, d.log.read_text()     # every GPU's hooks step is blocked now
    t0 = time.time()
    rc = d.stop(signal.SIGTERM)
    took = time.time() - t0
    log = d.log.read_text()
    assert rc == 0, log
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "ThreadSanitizer"):
        assert bad not in log, log
    assert "signal 15: shutting down" in log
    assert took < 20, log       # the hooks' 4 s, not their timeout or the steps'
    # The steps ended before the daemon did, and with them every hook's group.
    for f in pids.iterdir():
        hook_pid, child = (int(x) for x in f.read_text().split())
        assert not _running(hook_pid) and not _running(child), (f.name, log)
