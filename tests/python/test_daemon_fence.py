"""Fences (agent/daemon/fence.c) through the daemon as it runs: a
quarantined GPU's IOMMU group node is held open by gpuwardend, so that the
kernel refuses every other open of it (a hot-plug, which no libvirt hook
gates, included). On the simulated backend, whose group nodes open once at
a time as bookworm's kernel does (tests/python/test_lab_operator.py checks
the kernel itself): devices say `fenced`, metrics count them, `gpuwarden
show` prints it, a restart takes the fences again, and a process of the
tree holding the group (a QEMU that had it first) keeps the fence off, with
the daemon's log naming it."""
import os
import shutil
import subprocess

from gwdaemon import HOSTS, Daemon, build_dir

GPUS = ["0000:1a:00.0", "0000:67:00.0", "0000:68:00.0"]   # x299-3xa6000


def cli(*args):
    e = dict(os.environ)
    e.pop("GPUWARDEN_ENDPOINT", None)
    return subprocess.run([str(build_dir() / "gpuwarden"), *args], capture_output=True, text=True, env=e,
                          timeout=60)


def test_quarantine_fences_release_lifts(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        assert [x["fenced"] for x in d.devices()] == [False, False, False]
        assert d.result("metrics")["fenced"] == 0
        q = d.result("quarantine", {"address": GPUS[1], "reason": "fan noise"})
        # The reply shows the fence already: it is taken before the op answers.
        assert q["state"] == "quarantined" and q["fenced"] is True, q
        assert d.result("metrics")["fenced"] == 1
        show = cli("show", GPUS[1], "--endpoint", d.read)
        assert show.returncode == 0, show.stderr
        assert "fenced" in show.stdout and "gpuwardend holds its IOMMU group open" in show.stdout, show.stdout
        log = d.log.read_text()
        assert f"{GPUS[1]}: fenced: gpuwardend holds IOMMU group 79 (/dev/vfio/79) open" in log, log

        # A restart takes it again before it serves.
        assert d.stop() == 0, d.log.read_text()
        d.start(wait_clean=False)
        assert d.result("device", {"address": GPUS[1]})["fenced"] is True
        assert d.result("metrics")["fenced"] == 1

        r = d.result("release", {"address": GPUS[1], "reason": "fan replaced"})
        assert r["fenced"] is False
        # Lifted before the clean-up, which holds the group itself for its
        # reset: it passes.
        d.wait(lambda ds: [x["state"] for x in ds] == ["sanitized"] * 3 and not any(x["cleaning"] for x in ds))
        assert d.result("metrics")["fenced"] == 0
        assert f"{GPUS[1]}: fence on IOMMU group 79 lifted" in d.log.read_text()
    finally:
        assert d.stop() == 0, d.log.read_text()


def test_a_failed_cleanup_is_fenced(tmp_path):
    """The daemon's own quarantine (allones: BAR0 reads all-ones) is fenced
    once its clean-up has let go of the group."""
    d = Daemon(tmp_path, host="allones").start(wait_clean=False)
    try:
        devs = d.wait(lambda ds: any(x["state"] == "quarantined" and x["fenced"] for x in ds))
        q = next(x for x in devs if x["state"] == "quarantined")
        assert q["quarantined_by"] == "system"
        assert d.result("metrics")["fenced"] == 1
    finally:
        assert d.stop() == 0, d.log.read_text()


def test_a_process_holding_the_group_keeps_the_fence_off(tmp_path):
    """A process (the tree's proc: pid 4242 has /dev/vfio/79 open) holds the
    group when the GPU is quarantined: no fence, metrics say 0 of 1, and
    the log names the process, once."""
    host = tmp_path / "host"
    shutil.copytree(HOSTS / "x299-3xa6000", host, symlinks=True)
    proc = host / "proc" / "4242"
    (proc / "fd").mkdir(parents=True)
    (proc / "comm").write_text("qemu-system-x86\n")
    (proc / "fd" / "31").symlink_to("/dev/vfio/79")
    d = Daemon(tmp_path, host=str(host)).start(wait_clean=False)
    try:
        q = d.result("quarantine", {"address": GPUS[1], "reason": "fan noise"})
        assert q["state"] == "quarantined" and q["fenced"] is False, q
        m = d.result("metrics")
        assert (m["devices"]["quarantined"], m["fenced"]) == (1, 0)
        d.result("devices")     # another kick: said once
        line = f"{GPUS[1]}: quarantined, and not fenced: /dev/vfio/79 is open already, by pid 4242 (qemu-system-x86)"
        assert d.log.read_text().count(line) == 1, d.log.read_text()
    finally:
        assert d.stop() == 0, d.log.read_text()
