"""gpuwardend stopped (SIGTERM) while clean-up steps block (issue 15 item 8).
First an operator hook that sleeps holds every GPU's hooks step when the
signal comes: the daemon waits for the clean-ups, exits 0, and the hooks'
process groups are gone. Then a step abandoned after its timeout (bind,
blocked opening a driver_override that is a FIFO of the test's, as a sysfs
write can block in the kernel) outlives its clean-up: the daemon waits for it
before it frees what it may use (the attachment source, the hint view, the
wake-up descriptor), and when it never returns, exits without freeing those.
Run on the release build and, where there is one (GW_ASAN_BUILD_DIR, else
build-asan/ next to build/), on the ASan+UBSan build: there no sanitizer may
report anything, leaks included."""

import os
import pathlib
import shutil
import signal
import time

import pytest

from gwdaemon import HOSTS, ROOT, Daemon, build_dir


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


SANITIZERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "ThreadSanitizer")


@pytest.fixture
def sanitizer_env(monkeypatch):
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
    monkeypatch.setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")


def _running(pid):
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("build", _builds())
def test_sigterm_while_hooks_block_exits_cleanly(tmp_path, build, sanitizer_env):
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
    for bad in SANITIZERS:
        assert bad not in log, log
    assert "signal 15: shutting down" in log
    assert took < 20, log       # the hooks' 4 s, not their timeout or the steps'
    # The steps ended before the daemon did, and with them every hook's group.
    for f in pids.iterdir():
        hook_pid, child = (int(x) for x in f.read_text().split())
        assert not _running(hook_pid) and not _running(child), (f.name, log)


GPU = "0000:1a:00.0"


def _blocked_bind(tmp_path, build):
    """x299 with 1a:00.0's driver_override a FIFO nobody writes: its bind
    step blocks opening it, is abandoned after the 2 s step timeout (the GPU
    quarantined), and stays blocked."""
    host = tmp_path / "host"
    shutil.copytree(HOSTS / "x299-3xa6000", host, symlinks=True)
    devdir = (host / "sys" / "bus" / "pci" / "devices" / GPU).resolve()
    fifo = devdir / "driver_override"
    fifo.unlink()
    os.mkfifo(fifo)
    d = BuiltDaemon(tmp_path, build, host=str(host), extra=["--step-timeout", "2"]).start(wait_clean=False)
    try:
        devs = d.wait(lambda ds: next(x for x in ds if x["address"] == GPU)["state"] == "quarantined", timeout=60)
    except BaseException:
        d.stop()
        raise
    assert "bind: timed out after 2000 ms, step abandoned" in d.log.read_text()
    return d, fifo


def _writer(fifo):
    """Open the FIFO for writing without blocking: only while a reader (the
    abandoned step) waits on it."""
    return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)


@pytest.mark.parametrize("build", _builds())
def test_sigterm_waits_for_an_abandoned_step_before_freeing_what_it_uses(tmp_path, build, sanitizer_env):
    d, fifo = _blocked_bind(tmp_path, build)
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    # Still there: waiting for the abandoned step, whose thread still reads.
    assert d.alive(), d.log.read_text()
    fd = _writer(fifo)          # ENXIO unless the abandoned step still waits to read it
    os.write(fd, b"\n")
    os.close(fd)
    rc = d.proc.wait(timeout=30)
    d._logf.close()
    log = d.log.read_text()
    assert rc == 0, log
    for bad in SANITIZERS:
        assert bad not in log, log
    assert "still running after" not in log, log


@pytest.mark.parametrize("build", _builds())
def test_sigterm_with_a_step_that_never_returns_exits_leaving_what_it_uses(tmp_path, build, sanitizer_env):
    d, fifo = _blocked_bind(tmp_path, build)
    t0 = time.time()
    rc = d.stop(signal.SIGTERM)
    took = time.time() - t0
    log = d.log.read_text()
    assert rc == 0, log
    for bad in SANITIZERS:
        assert bad not in log, log
    assert ("shutdown: 1 clean-up step(s) abandoned after a timeout still running after 10 s; exiting with them, "
            "the attachment source they may use left in place") in log, log
    assert 10 <= took < 25, log
