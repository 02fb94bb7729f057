"""The whole chain on a real kernel: a real libvirtd and QEMU inside the lab
guest start and stop VMs with the emulated GPUs, through the gate (the qemu
hook), the watcher and the clean-up.

One boot of Debian's kernel (TCG, q35, emulated Intel IOMMU) from a Debian
bookworm root file system made with debootstrap (tests/lab/rootfs.py, cached
in ~/.cache/gpuwarden-lab): libvirtd with the qemu driver at qemu:///system,
Debian's qemu-system-x86_64, and the project installed as packaging installs
it (daemon, CLI, library, unit, configuration, the hook in
/etc/libvirt/hooks/qemu.d/). gpuwardend runs the unit's ExecStart with the
packaged configuration, edited as an operator would: [manage] vendors = 1af4
(the virtio-gpus) and an operator clean-up hook that can be held open
(/etc/gpuwarden/sanitize.d/50-lab-slow) to make a clean-up last.

The inner VMs have no OS: QEMU (TCG inside TCG) with a vfio <hostdev> opens
/dev/vfio/N, holds the device and lets it go. The scenarios run in sequence
in that one guest; each leaves its GPUs clean for the next.

Where the lab cannot run the tests are skipped with "KERNEL LAB NOT RUN" in
the summary; under CI=true the module fails instead.
"""
import json
import os
import pathlib
import re
import sys
import time

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "lab"))
import lab  # noqa: E402
import rootfs  # noqa: E402
from gwdaemon import build_dir  # noqa: E402
from labvirt import (Host, cleaned_only_by_a_cleanup, events, operator_conf, settle, slow_hook, topology,  # noqa: E402
                     unavailable)



WHY_NOT = unavailable()
if WHY_NOT and os.environ.get("CI") == "true":
    raise RuntimeError(f"the kernel lab (libvirt guest) must run in CI, but cannot: {WHY_NOT}")
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"KERNEL LAB NOT RUN: {WHY_NOT}")


# ---------------------------------------------------------------- the guest

@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab-libvirt")
    t0 = time.monotonic()
    bd = build_dir()
    base = rootfs.base_rootfs(bd)
    lab.record_stat("libvirt_rootfs_seconds", time.monotonic() - t0)
    _, release = lab.kernel()
    installed = rootfs.stage_installed(bd, tmp)
    conf = operator_conf(installed)
    t1 = time.monotonic()
    disk = rootfs.build_disk(tmp / "root.img", base, bd, release, tmp, files={
        "etc/gpuwarden/gpuwarden.conf": (conf, 0o644),
        "etc/gpuwarden/sanitize.d/50-lab-slow": (slow_hook(Host.slow_dir), 0o755),
    })
    lab.record_stat("libvirt_disk_seconds", time.monotonic() - t1)
    with lab.Guest.boot(topology(tmp), tmp, None, disk=disk, smp=1, timeout=600, name="libvirt") as g:
        h = Host(g, tmp)
        h.installed = installed
        yield h
    lab.record_stat("libvirt_lab_seconds", time.monotonic() - t0)


@pytest.fixture(scope="module")
def settled(host):
    return settle(host, timeout=120)


# ---------------------------------------------------------------- the installed chain

def test_the_packaged_chain_is_what_runs(settled):
    h = settled
    # The hook libvirt runs is the packaged one, where packaging puts it.
    packaged = (TOP / "packaging/libvirt/hooks/qemu.d/gpuwarden").read_text()
    assert h.sh("cat /etc/libvirt/hooks/qemu.d/gpuwarden") == packaged
    assert h.sh("stat -c %a /etc/libvirt/hooks/qemu.d/gpuwarden").strip() == "755"
    # gpuwardend runs the unit's command line with the packaged configuration.
    unit = (h.installed / "lib/systemd/system/gpuwardend.service").read_text()
    exec_start = re.search(r"(?m)^ExecStart=(.*)$", unit).group(1).split()
    pid = h.sh("/lab/svc pid gpuwardend").strip()
    cmdline = h.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").split()
    assert cmdline[-len(exec_start):] == exec_start, cmdline
    # The watcher read qemu:///system.
    assert "libvirt qemu:///system: every domain read" in h.sh("cat /run/gwd.log")
    assert h.virsh("uri")[1].strip() == "qemu:///system"


# ---------------------------------------------------------------- start, stop, undefine

def test_transient_domain_starts_holds_and_is_cleaned_after_destroy(settled):
    h = settled
    a = h.addr["gpu0"]
    since = h.last_seq("gpu0")
    h.virsh(f"create {h.define('vm-a', 'gpu0')}")
    # libvirt's managed='yes' leaves the device on vfio-pci, QEMU holds its
    # group, the daemon says attached to the domain.
    assert h.driver("gpu0") == "vfio-pci"
    pid = h.qemu_pid("vm-a")
    assert h.holds_group(pid, "gpu0")
    d = h.wait(lambda: (x := h.devices()[a])["state"] == "attached" and x, "gpu0 attached")
    assert d["domain"] == "vm-a", d
    # While it runs, another domain on the GPU is refused.
    rc, out = h.gate("gpu0", "vm-other")
    assert rc == 1 and f"{a} attached to domain 'vm-a'" in out, out

    h.virsh("destroy vm-a")
    assert h.g.run(f"test -d /proc/{pid}")[0] != 0
    # The release reached the daemon: the hook first, then the watcher.
    log = h.sh("cat /run/gwd.log")
    assert f"{a}: domain 'vm-a' does not run" in log, log[-3000:]
    h.wait_state("gpu0", "sanitized")
    recs = h.audit("gpu0", since)
    ev = events(recs)
    assert ev[:1] == ["attach_seen"], recs
    assert ev[ev.index("detach_seen"):] == ["detach_seen", "cleanup_started", "cleanup_passed"], recs
    cleaned_only_by_a_cleanup(recs)
    assert h.driver("gpu0") == "vfio-pci"


def test_quarantined_gpu_is_refused_with_the_daemons_reason(settled):
    h = settled
    a = h.addr["gpu2"]
    before = h.show("gpu2")
    since = h.last_seq("gpu2")
    override = h.sh(f"cat /sys/bus/pci/devices/{a}/driver_override")
    rc, out = h.virsh(f"create {h.define('vm-q', 'gpu2')}", check=False)
    assert rc != 0
    # libvirt reports the hook's reason to the caller.
    assert "Hook script execution failed" in out, out
    assert f"gpuwarden: refusing to start domain 'vm-q': {a} quarantined: firmware:" in out, out
    assert "ROM read failed with EIO" in out, out
    # Untouched: no QEMU, same driver and override, no transition.
    assert h.qemu_processes() == []
    assert h.driver("gpu2") == "vfio-pci"
    assert h.sh(f"cat /sys/bus/pci/devices/{a}/driver_override") == override
    assert h.audit("gpu2", since) == []
    after = h.show("gpu2")
    assert after["state"] == "quarantined" and after["cleanup"] == before["cleanup"]
    assert h.virsh("list --all --name")[1].split() == []


def test_persistent_domain_keeps_its_gpu_until_undefine(settled):
    """A defined domain that is shut off still references its GPU: it stays
    attached (reserved, no clean-up), may start again on it, and every other
    domain is refused; the undefine releases it and the clean-up runs
    (docs/libvirt.md, "A stopped domain keeps its GPU, reserved")."""
    h = settled
    a = h.addr["gpu1"]
    since = h.last_seq("gpu1")
    cleanup0 = h.show("gpu1")["cleanup"]["started"]
    h.virsh(f"define {h.define('vm-p', 'gpu1')}")
    h.wait(lambda: h.devices()[a]["state"] == "attached", "gpu1 attached to the defined domain")
    h.virsh("start vm-p")
    pid = h.qemu_pid("vm-p")
    assert h.holds_group(pid, "gpu1")
    # A guest that powers itself off: the QEMU process ends without `destroy`
    # (there is no OS to answer ACPI, so `quit` on QEMU's monitor stands in
    # for the guest's poweroff).
    h.virsh("qemu-monitor-command vm-p --hmp quit", check=False)
    h.wait(lambda: h.virsh("domstate vm-p")[1].strip() == "shut off", "vm-p shut off")
    time.sleep(2)       # what the watcher would do, it has done by now
    d = h.devices()[a]
    assert d["state"] == "attached" and d["domain"] == "vm-p", d
    assert h.show("gpu1")["cleanup"]["started"] == cleanup0          # no clean-up
    inv = json.loads(h.sh("gpuwarden inventory -f json"))
    mine = [x for x in inv["deployables"] if a in x["name"]]
    assert mine and all(x.get("reserved") == 1 for x in mine), mine
    # Another domain on it is refused, with the owner named by libvirt.
    rc, out = h.virsh(f"create {h.define('vm-p2', 'gpu1')}", check=False)
    assert rc != 0 and f"{a} attached to domain 'vm-p'" in out, out
    # The same domain starts again on it, and is destroyed: still no clean-up.
    h.virsh("start vm-p")
    h.virsh("destroy vm-p")
    assert h.show("gpu1")["cleanup"]["started"] == cleanup0
    assert h.devices()[a]["state"] == "attached"
    # Undefine: the release, the clean-up, clean again.
    h.virsh("undefine vm-p")
    h.wait_state("gpu1", "sanitized")
    recs = h.audit("gpu1", since)
    ev = events(recs)
    assert ev == ["attach_seen", "detach_seen", "cleanup_started", "cleanup_passed"], recs
    cleaned_only_by_a_cleanup(recs)
    assert h.show("gpu1")["cleanup"]["started"] != cleanup0


def test_transient_domain_that_powers_off_is_cleaned(settled):
    h = settled
    since = h.last_seq("gpu1")
    h.virsh(f"create {h.define('vm-s', 'gpu1')}")
    h.virsh("qemu-monitor-command vm-s --hmp quit", check=False)
    h.wait(lambda: h.virsh("list --all --name")[1].split() == [], "vm-s gone")
    h.wait_state("gpu1", "sanitized")
    recs = h.audit("gpu1", since)
    assert events(recs)[-3:] == ["detach_seen", "cleanup_started", "cleanup_passed"], recs
    cleaned_only_by_a_cleanup(recs)


# ---------------------------------------------------------------- a start racing the clean-up

def test_start_during_the_cleanup_is_refused_then_allowed(settled):
    h = settled
    a = h.addr["gpu0"]
    since = h.last_seq("gpu0")
    h.virsh(f"create {h.define('vm-a', 'gpu0')}")
    h.wait(lambda: h.devices()[a]["state"] == "attached", "gpu0 attached")
    h.define("vm-b", "gpu0")
    h.slow("gpu0", True)
    try:
        h.virsh("destroy vm-a")
        # At once, whatever the daemon has heard by now: the hook's question
        # for a new domain is refused.
        rc, out = h.gate("gpu0", "vm-b")
        assert rc == 1 and f"gpuwarden: refusing to start domain 'vm-b': {a} " in out, out
        # While the clean-up runs (held in the operator's hook), libvirt's
        # start is refused, saying so.
        h.wait_hook_running("gpu0")
        assert h.devices()[a]["cleaning"]
        rc, out = h.virsh("create /tmp/vm-b.xml", check=False)
        assert rc != 0 and f"{a} dirty: clean-up running" in out, out + h.logs()
    finally:
        h.slow("gpu0", False)
    h.wait_state("gpu0", "sanitized", timeout=180)
    h.virsh("create /tmp/vm-b.xml")
    assert h.holds_group(h.qemu_pid("vm-b"), "gpu0")
    h.virsh("destroy vm-b")
    h.wait_state("gpu0", "sanitized", timeout=180)
    recs = h.audit("gpu0", since)
    cleaned_only_by_a_cleanup(recs)
    ev = events(recs)
    # vm-b attached only after a clean-up passed since vm-a let it go.
    first_pass = ev.index("cleanup_passed")
    vm_b = [i for i, r in enumerate(recs) if r["event"] == "attach_seen" and "vm-b" in (r.get("reason") or "")
            and "started" in (r.get("reason") or "")]
    assert all(i > first_pass for i in vm_b), recs
    assert ev[-3:] == ["detach_seen", "cleanup_started", "cleanup_passed"], recs
    # libvirt runs `release end` for the start the hook refused; the hook
    # sends nothing for it, so the refused domain never counts as having held
    # the GPU and the running clean-up is not voided (docs/libvirt.md).
    assert "the hook says domain 'vm-b' stopped on it" not in h.sh("cat /run/gwd.log")
    assert "cleanup_aborted" not in ev, recs


# ---------------------------------------------------------------- crashes and restarts

def test_daemon_killed_while_a_vm_runs(settled):
    """gpuwardend SIGKILLed while a VM holds its GPU; the VM is destroyed
    while it is down (the hook cannot deliver its hint); gpuwardend starts
    again: the GPU is dirty and cleaned, never clean without a clean-up."""
    h = settled
    a = h.addr["gpu3"]
    since = h.last_seq("gpu3")
    h.virsh(f"create {h.define('vm-k', 'gpu3')}")
    h.wait(lambda: h.devices()[a]["state"] == "attached", "gpu3 attached")
    h.sh("/lab/svc kill gpuwardend")
    # The daemon down: a domain with a GPU is refused (the hook's default policy).
    rc, out = h.virsh(f"create {h.define('vm-d', 'gpu1')}", check=False)
    assert rc != 0 and "the gpuwarden daemon cannot be asked whether GPU" in out, out
    rc, out = h.virsh("destroy vm-k", check=False)
    assert rc == 0, out           # a hook never fails a teardown
    h.slow("gpu3", True)
    try:
        h.sh("/lab/svc start gpuwardend")
        h.wait_hook_running("gpu3")
        d = h.devices()[a]
        assert d["state"] == "discovered" and d["dirty"] and d["cleaning"], d
        rc, out = h.gate("gpu3", "vm-k2")
        assert rc == 1 and f"{a} dirty: clean-up running" in out, out
    finally:
        h.slow("gpu3", False)
    h.wait_state("gpu3", "sanitized")
    recs = h.audit("gpu3", since)
    cleaned_only_by_a_cleanup(recs)
    ev = events(recs)
    assert ev[-3:] == ["detach_seen", "cleanup_started", "cleanup_passed"], recs
    assert "attach_seen" in ev[:ev.index("detach_seen")], recs


def test_libvirtd_restart_while_vms_run(settled):
    """libvirtd restarted under two running VMs (a transient and a persistent
    one): they keep running, the watcher reconnects and reads libvirt again,
    no GPU is released or cleaned meanwhile, and events work afterwards."""
    h = settled
    a0, a1 = h.addr["gpu0"], h.addr["gpu1"]
    since0, since1 = h.last_seq("gpu0"), h.last_seq("gpu1")
    h.virsh(f"create {h.define('vm-r1', 'gpu0')}")
    h.virsh(f"define {h.define('vm-r2', 'gpu1')}")
    h.virsh("start vm-r2")
    pids = (h.qemu_pid("vm-r1"), h.qemu_pid("vm-r2"))
    h.wait(lambda: all(h.devices()[x]["state"] == "attached" for x in (a0, a1)), "both attached")
    log_at = int(h.sh("wc -c < /run/gwd.log"))
    h.sh("/lab/svc restart libvirtd", timeout=240)
    # The watcher saw the connection go and read every domain again.
    h.wait(lambda: "every domain read" in h.sh(f"tail -c +{log_at + 1} /run/gwd.log"),
           "the watcher's reconcile after the restart", timeout=90)
    log = h.sh(f"tail -c +{log_at + 1} /run/gwd.log")
    assert re.search(r"libvirt qemu:///system: .*(closed|lost|reconnect)", log, re.I), log
    assert sorted(h.virsh("list --name")[1].split()) == ["vm-r1", "vm-r2"]
    assert (h.qemu_pid("vm-r1"), h.qemu_pid("vm-r2")) == pids
    assert all(h.holds_group(p, q) for p, q in zip(pids, ("gpu0", "gpu1")))
    for q, a, since in (("gpu0", a0, since0), ("gpu1", a1, since1)):
        d = h.devices()[a]
        assert d["state"] == "attached", d
        assert events(h.audit(q, since)) == ["attach_seen"], h.audit(q, since)
    # Nothing lost: the restarted libvirtd's events reach the watcher.
    h.virsh("destroy vm-r1")
    h.wait_state("gpu0", "sanitized")
    h.virsh("destroy vm-r2")
    h.virsh("undefine vm-r2")
    h.wait_state("gpu1", "sanitized")
    for q, since in (("gpu0", since0), ("gpu1", since1)):
        recs = h.audit(q, since)
        assert events(recs) == ["attach_seen", "detach_seen", "cleanup_started", "cleanup_passed"], recs
