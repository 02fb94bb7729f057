"""The operator's host in the kernel lab: the whole chain with systemd as PID
1, libvirtd confined by its AppArmor profile with libvirt's default security
driver (apparmor) and cgroups, and gpuwardend inside the packaged unit's
sandbox (issue 19).

One boot of Debian's kernel (TCG, q35, emulated Intel IOMMU) from a variant of
the lab's bookworm root file system (tests/lab/rootfs.py, OPERATOR_PACKAGES:
systemd-sysv, dbus, apparmor, libvirt-daemon-system with its units and
profiles, qemu-utils, libpam-systemd, udev), the project installed as packaging installs it and the
unit enabled as deb-systemd-helper enables it (the multi-user.target.wants
link). The lab's command channel is served by a unit of the lab's own
(lab-cmd.service, running tests/lab/init.sh), ordered after libvirtd and
gpuwardend. The operator's edits: [manage] vendors = 1af4.

The tests run in sequence in that one guest; each leaves its GPUs clean for
the next. Where the lab cannot run they are skipped with "KERNEL LAB NOT RUN"
in the summary; under CI=true the module fails instead.
"""
import os
import pathlib
import re
import shutil
import sys
import time

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "lab"))
import lab  # noqa: E402
import rootfs  # noqa: E402
from gwdaemon import build_dir  # noqa: E402
from labvirt import (Host, cleaned_only_by_a_cleanup, events, hostdev_xml, operator_conf, settle,  # noqa: E402
                     slow_hook, topology, unavailable)

WHY_NOT = unavailable() or (None if shutil.which("depmod") or os.path.exists("/usr/sbin/depmod")
                            else "depmod not found (Debian package kmod)")
if WHY_NOT and os.environ.get("CI") == "true":
    raise RuntimeError(f"the kernel lab (operator guest) must run in CI, but cannot: {WHY_NOT}")
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"KERNEL LAB NOT RUN: {WHY_NOT}")

# The lab's own unit: the command channel, as root and unconfined (the host's
# hand in the guest), once the services are up (or have failed: After=
# without Requires=, so that a test can see the failure).
LAB_CMD_UNIT = """[Unit]
Description=gpuwarden kernel lab: command channel on ttyS1 (tests/lab/init.sh)
After=libvirtd.service gpuwardend.service apparmor.service

[Service]
ExecStart=/lab/init

[Install]
WantedBy=multi-user.target
"""

# What TCG inside TCG needs from libvirt's qemu driver here: nothing beyond
# Debian's defaults (user libvirt-qemu, the apparmor and DAC drivers, cgroups
# through systemd, a mount namespace, virtlogd).
QEMU_CONF = """# the kernel lab's operator guest: Debian's defaults (tests/python/test_lab_operator.py)
"""

# Waits in the guest: TCG inside TCG on 2 shared CPUs (a load of 18 seen).
SLOW = 180

CAPS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21}


def operator_disk(tmp, bd):
    """The root disk of the operator's host; returns (disk, installed tree)."""
    base = rootfs.base_rootfs(bd, extra=rootfs.OPERATOR_PACKAGES)
    _, release = lab.kernel()
    installed = rootfs.stage_installed(bd, tmp)
    conf = operator_conf(installed)
    wants = "etc/systemd/system/multi-user.target.wants"
    disk = rootfs.build_disk(tmp / "root.img", base, bd, release, tmp, systemd=True, size="4G", files={
        "etc/gpuwarden/gpuwarden.conf": (conf, 0o644),
        "etc/gpuwarden/sanitize.d/50-lab-slow": (slow_hook(OperatorHost.slow_dir), 0o755),
        "etc/libvirt/qemu.conf": (QEMU_CONF, 0o600),
        "etc/systemd/system/lab-cmd.service": (LAB_CMD_UNIT, 0o644),
    }, links={
        # deb-systemd-helper enable gpuwardend.service ([Install] WantedBy=multi-user.target)
        f"{wants}/gpuwardend.service": "/lib/systemd/system/gpuwardend.service",
        f"{wants}/lab-cmd.service": "/etc/systemd/system/lab-cmd.service",
        # timers and scrubs that have nothing to do with the lab
        "etc/systemd/system/apt-daily.timer": "/dev/null",
        "etc/systemd/system/apt-daily-upgrade.timer": "/dev/null",
        "etc/systemd/system/e2scrub_reap.service": "/dev/null",
        "etc/systemd/system/e2scrub_all.timer": "/dev/null",
        "etc/systemd/system/fstrim.timer": "/dev/null",
        "etc/systemd/system/logrotate.timer": "/dev/null",
        "etc/systemd/system/man-db.timer": "/dev/null",
        "etc/systemd/system/libvirt-guests.service": "/dev/null",
        "etc/systemd/system/cron.service": "/dev/null",
    })
    return disk, installed


class OperatorHost(Host):
    gwd_log = "journalctl -q -o cat --no-pager -u gpuwardend"
    slow_dir = "/run/gpuwarden"

    def unit_pid(self, unit):
        return int(self.sh(f"systemctl show -p MainPID --value {unit}").strip())

    def label(self, pid):
        return self.sh(f"cat /proc/{pid}/attr/current").strip().rstrip("\0")

    def denials(self):
        """AppArmor's refusals in the kernel log (no auditd: printk)."""
        return [x for x in self.sh("dmesg").splitlines() if 'apparmor="DENIED"' in x]

    def hostdev_file(self, qid):
        path = f"/tmp/hostdev-{qid}.xml"
        self.sh(f"cat > {path} <<'EOF'\n{hostdev_xml(self.addr[qid])}\nEOF")
        return path

    def vfio_held(self, pid):
        """The /dev/vfio/N group nodes process `pid` holds. A descriptor
        opened in another mount namespace whose /dev this one cannot reach
        reads as "/vfio/N", the path inside its devtmpfs: PID 1's copies of
        the daemon's fences (the unit's PrivateMounts=)."""
        out = self.sh(f"ls -l /proc/{pid}/fd")
        return sorted(set(re.findall(r"-> (?:/dev)?/vfio/(\d+)$", out, re.M)), key=int)

    def group(self, qid):
        return str(self.show(qid)["iommu_group"])


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab-operator")
    t0 = time.monotonic()
    bd = build_dir()
    disk, installed = operator_disk(tmp, bd)
    lab.record_stat("operator_disk_seconds", time.monotonic() - t0)
    with lab.Guest.boot(topology(tmp, memory_mb=2048), tmp, None, disk=disk, init=None, smp=1, timeout=900,
                        name="operator") as g:
        h = OperatorHost(g, tmp)
        h.installed = installed
        yield h
    lab.record_stat("operator_lab_seconds", time.monotonic() - t0)


@pytest.fixture(scope="module")
def settled(host):
    return settle(host, timeout=300)


def step(show, name):
    for s in show["steps"]:
        if s["name"] == name:
            return s
    raise AssertionError(f"no step {name}: {show['steps']}")


def proc_status(h, pid):
    return dict(line.split(":\t", 1) for line in h.sh(f"cat /proc/{pid}/status").splitlines() if ":\t" in line)


def mounts(h, pid):
    """{mount point: per-mount options} of a process (/proc/PID/mountinfo)."""
    out = {}
    for line in h.sh(f"cat /proc/{pid}/mountinfo").splitlines():
        f = line.split()
        out[f[4]] = f[5].split(",")
    return out


# ---------------------------------------------------------------- the host as installed

def test_units_run_confined(settled):
    """gpuwardend runs from the packaged unit with its whole sandbox, as the
    kernel sees it; libvirtd from its own unit, confined by its AppArmor
    profile, with libvirt's apparmor security driver."""
    h = settled
    assert h.sh("cat /proc/1/comm").strip() == "systemd"
    assert h.sh("systemctl is-enabled gpuwardend.service").strip() == "enabled"
    assert h.sh("systemctl is-active gpuwardend.service libvirtd.service apparmor.service").split() == \
        ["active"] * 3
    assert h.sh("cat /sys/module/apparmor/parameters/enabled").strip() == "Y"
    pid = h.unit_pid("gpuwardend.service")
    st = proc_status(h, pid)
    assert st["Seccomp"].strip() == "2", st                    # SystemCallFilter=: a seccomp filter
    assert st["NoNewPrivs"].strip() == "1", st
    want = sum(1 << b for b in CAPS.values())
    assert int(st["CapBnd"], 16) == want, st                  # CapabilityBoundingSet=
    assert int(st["CapEff"], 16) == want, st
    assert h.sh(f"cat /proc/{pid}/cgroup").strip() == "0::/system.slice/gpuwardend.service"
    assert h.label(pid) == "unconfined"                        # no AppArmor profile of its own
    # ProtectSystem=strict + ReadWritePaths=, ProtectKernelTunables=, PrivateTmp=
    m = mounts(h, pid)
    assert "ro" in m["/"], m["/"]
    for rw in ("/sys/bus/pci", "/sys/devices", "/run/gpuwarden", "/var/lib/gpuwarden"):
        assert "rw" in m.get(rw, []), (rw, m)
    for ro in ("/sys", "/proc/sys", "/usr", "/etc"):
        assert ro not in m or "ro" in m[ro], (ro, m)
    assert "/tmp" in m and "/var/tmp" in m
    # /run too (ReadOnlyPaths=/run: ProtectSystem=strict leaves it writable),
    # but for the unit's RuntimeDirectory: tried in the unit's mount namespace.
    assert "ro" in m["/run"], m["/run"]
    out = h.sh(f"nsenter -t {pid} -m sh -c 'for d in /run /run/libvirt /etc /usr/lib; do touch $d/lab-probe 2>&1; done; "
               f"touch /run/gpuwarden/lab-probe && rm /run/gpuwarden/lab-probe && echo rw-ok'")
    assert out.count("Read-only file system") == 4 and out.strip().endswith("rw-ok"), out
    # PrivateNetwork=: a network namespace of its own, only lo in it
    assert h.sh(f"readlink /proc/{pid}/ns/net") != h.sh("readlink /proc/1/ns/net")
    assert h.sh(f"nsenter -t {pid} -n cat /proc/net/dev | sed -n '3,$p' | cut -d: -f1").split() == ["lo"]
    # DevicePolicy=closed + DeviceAllow=: the unit's device program, tried
    # by a shell moved into the unit's cgroup: /dev/vfio yes, the disk no.
    out = h.sh("sh -c 'echo $$ > /sys/fs/cgroup/system.slice/gpuwardend.service/cgroup.procs; "
               "exec 3</dev/vfio/vfio && echo vfio-ok; head -c1 /dev/nvme0n1 >/dev/null 2>&1 || echo disk-refused'")
    assert out.split() == ["vfio-ok", "disk-refused"], out
    # libvirtd: its own unit, its AppArmor profile, the apparmor driver.
    lpid = h.unit_pid("libvirtd.service")
    assert h.label(lpid) == "libvirtd (enforce)"
    assert h.sh(f"cat /proc/{lpid}/cgroup").strip() == "0::/system.slice/libvirtd.service"
    caps = h.virsh("capabilities")[1]
    assert "<model>apparmor</model>" in caps, caps
    # The unit came up on its own: no restart, no sandbox denial in its log.
    assert h.sh("systemctl show -p NRestarts --value gpuwardend").strip() == "0"
    log = h.sh(h.gwd_log)
    assert "libvirt qemu:///system: every domain read" in log, log[-3000:]
    for bad in ("Operation not permitted", "Read-only file system", "Permission denied"):
        assert bad not in log, log[-3000:]


# ---------------------------------------------------------------- the chain, confined

def test_the_chain_under_the_sandbox_and_apparmor(settled):
    """virsh create on a sanitized GPU: QEMU confined by its own libvirt-<uuid>
    profile, as libvirt-qemu, in machine.slice, holding /dev/vfio/N; a
    quarantined GPU refused through the confined libvirtd with the daemon's
    reason; virsh destroy: the clean-up runs inside the unit's sandbox (the
    sysfs writes, the /dev/vfio opens, /proc/PID/fd) and passes, and only
    then is the GPU clean."""
    h = settled
    a, q = h.addr["gpu0"], h.addr["gpu2"]
    gpid = h.unit_pid("gpuwardend.service")
    since = h.last_seq("gpu0")
    h.virsh(f"create {h.define('vm-a', 'gpu0')}")
    pid = h.qemu_pid("vm-a")
    assert h.sh("systemctl is-active virtlogd.service").strip() == "active"     # QEMU's stdio
    uuid = h.virsh("domuuid vm-a")[1].strip()
    assert h.label(pid) == f"libvirt-{uuid} (enforce)"
    assert re.match(r"0::/machine\.slice/machine-qemu.*vm.*a\.scope/", h.sh(f"cat /proc/{pid}/cgroup")), \
        h.sh(f"cat /proc/{pid}/cgroup")
    assert proc_status(h, pid)["Uid"].split()[0] == h.sh("id -u libvirt-qemu").strip()
    assert h.vfio_held(pid) == [h.group("gpu0")]
    assert h.driver("gpu0") == "vfio-pci"
    d = h.wait(lambda: (x := h.devices()[a])["state"] == "attached" and x, "gpu0 attached", timeout=SLOW)
    assert d["domain"] == "vm-a", d

    # The quarantined GPU: refused by the hook, run by the confined libvirtd.
    since_q = h.last_seq("gpu2")
    rc, out = h.virsh(f"create {h.define('vm-q', 'gpu2')}", check=False)
    assert rc != 0 and "Hook script execution failed" in out, out
    assert f"gpuwarden: refusing to start domain 'vm-q': {q} quarantined: firmware:" in out, out
    assert h.audit("gpu2", since_q) == []
    assert "vm-q" not in h.virsh("list --all --name")[1].split()

    h.virsh("destroy vm-a")
    h.wait_state("gpu0", "sanitized", timeout=SLOW)
    recs = h.audit("gpu0", since)
    assert events(recs) == ["attach_seen", "detach_seen", "cleanup_started", "cleanup_passed"], recs
    cleaned_only_by_a_cleanup(recs)
    s = h.show("gpu0")
    for name in ("not_in_use", "bind", "reset", "health", "isolation", "firmware"):
        assert step(s, name)["verdict"] == "pass", step(s, name)
    # what the sandbox had to allow, step by step
    assert "processes looked at" in step(s, "not_in_use")["evidence"]              # /proc/PID/fd
    g0 = h.group('gpu0')
    assert f"holding /dev/vfio/{g0} open across the rest of the clean-up" in step(s, "bind")["evidence"]
    assert f"/dev/vfio/{g0} held since the bind step" in step(s, "reset")["evidence"]
    assert "reset by FLR" in step(s, "reset")["evidence"]                           # sysfs reset
    assert "matches the pin" in step(s, "firmware")["evidence"]                     # sysfs rom
    assert "power/control" in step(s, "bind")["evidence"]                           # sysfs power
    # the same daemon, never restarted, nothing refused by the sandbox
    assert h.unit_pid("gpuwardend.service") == gpid
    assert h.sh("systemctl show -p NRestarts --value gpuwardend").strip() == "0"
    log = h.sh(h.gwd_log)
    for bad in ("Operation not permitted", "Read-only file system", "Permission denied"):
        assert bad not in log, log[-3000:]
    assert h.denials() == []


def test_the_confined_hook_asks_the_gate_endpoint(settled):
    """The packaged daemon serves the gate endpoint (docs/daemon.md), and the
    hook, run with no options by the confined libvirtd, asks it there: with
    the admin socket moved aside, so that no gate could be answered on it, a
    start on a sanitized GPU still passes and a quarantined one is refused
    with the daemon's reason. (The `started` hint, which goes to the admin
    endpoint, is not delivered meanwhile; the libvirt watcher reports the
    attachment anyway.)"""
    h = settled
    a, q = h.addr["gpu0"], h.addr["gpu2"]
    assert h.sh("stat -c '%a %U:%G %F' /run/gpuwarden/gate.sock").strip() == "660 root:root socket"
    h.sh("mv /run/gpuwarden/admin.sock /run/gpuwarden/admin.sock.aside")
    try:
        h.virsh(f"create {h.define('vm-g', 'gpu0')}")
        assert h.vfio_held(h.qemu_pid("vm-g")) == [h.group("gpu0")]
        rc, out = h.virsh(f"create {h.define('vm-gq', 'gpu2')}", check=False)
        assert rc != 0 and f"gpuwarden: refusing to start domain 'vm-gq': {q} quarantined: firmware:" in out, out
    finally:
        h.sh("mv /run/gpuwarden/admin.sock.aside /run/gpuwarden/admin.sock")
    d = h.wait(lambda: (x := h.devices()[a])["state"] == "attached" and x, "gpu0 attached", timeout=SLOW)
    assert d["domain"] == "vm-g", d
    h.virsh("destroy vm-g")
    h.wait_state("gpu0", "sanitized", timeout=SLOW)
    assert h.denials() == []


# ---------------------------------------------------------------- snapshots, then the GPU again

def disk_domain_xml(name, disk, hostdevs=(), native_hotplug=False):
    """A q35 domain with a qcow2 disk (what a snapshot needs), spare PCIe
    root ports for hot-plugged hostdevs and the given <hostdev>s. With
    native_hotplug, QEMU's ACPI hot-plug of the q35 root ports is off (PCIe
    native hot-plug): an empty port is powered off, and a device hot-plugged
    into it is unplugged at once, with no round trip to a guest OS, which
    these domains do not have."""
    ns = " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'" if native_hotplug else ""
    cmdline = ("<qemu:commandline><qemu:arg value='-global'/>"
               "<qemu:arg value='ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off'/></qemu:commandline>"
               if native_hotplug else "")
    ports = "\n    ".join(["<controller type='pci' model='pcie-root-port'/>"] * 4)
    return f"""<domain type='qemu'{ns}>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><tcg><tb-cache unit='MiB'>8</tb-cache></tcg></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <controller type='usb' model='none'/>
    <controller type='pci' index='0' model='pcie-root'/>
    {ports}
    {"".join(hostdevs)}
    <memballoon model='none'/>
  </devices>
  {cmdline}
</domain>
"""


def make_domain(h, name, hostdevs=(), native_hotplug=False):
    disk = f"/var/lib/libvirt/images/{name}.qcow2"
    h.sh(f"qemu-img create -q -f qcow2 {disk} 16M")
    xml = disk_domain_xml(name, disk, [hostdev_xml(h.addr[q]) for q in hostdevs], native_hotplug)
    h.sh(f"cat > /tmp/{name}.xml <<'EOF'\n{xml}EOF")
    return f"/tmp/{name}.xml"


def profile_files(h, domain):
    uuid = h.virsh(f"domuuid {domain}")[1].strip()
    return h.sh(f"cat /etc/apparmor.d/libvirt/libvirt-{uuid}.files")


def test_snapshot_then_start_again_under_apparmor(settled):
    """The seed's trap, cold: a persistent domain with a qcow2 disk and the
    GPU. An internal snapshot of the shut-off domain is taken (qemu-img, no
    QEMU running); one of the running domain is refused by QEMU (a VFIO
    device blocks migration, which savevm is), and so is an external one
    with the memory state; an external disk-only snapshot of the running
    domain is taken (QEMU switches to the overlay,
    libvirt adds it to the domain's AppArmor profile). The domain then stops
    and starts again on its GPU: QEMU, confined by the regenerated profile,
    holds /dev/vfio/N again. No AppArmor denial. The daemon: the GPU stays
    attached to the defined domain throughout (no clean-up, as for every
    stopped persistent domain), and undefine cleans it."""
    h = settled
    a = h.addr["gpu1"]
    since = h.last_seq("gpu1")
    h.virsh(f"define {make_domain(h, 'vm-s', ['gpu1'])}")
    h.virsh("snapshot-create-as vm-s int-off")
    h.virsh("start vm-s")
    pid = h.qemu_pid("vm-s")
    uuid = h.virsh("domuuid vm-s")[1].strip()
    assert h.label(pid) == f"libvirt-{uuid} (enforce)"
    assert h.vfio_held(pid) == [h.group("gpu1")]
    rc, out = h.virsh("snapshot-create-as vm-s int-run", check=False)
    assert rc != 0 and "cannot migrate domain: VFIO device doesn't support migration" in out, out
    h.virsh("snapshot-create-as vm-s ext1 --disk-only --atomic")
    # an external snapshot with the memory state saves it as a migration does
    rc, out = h.virsh("snapshot-create-as vm-s ext-mem --memspec file=/var/lib/libvirt/images/vm-s.mem "
                      "--diskspec sda,file=/var/lib/libvirt/images/vm-s.ext-mem", check=False)
    assert rc != 0 and "VFIO device doesn't support migration" in out, out
    assert h.virsh("domstate vm-s")[1].strip() == "running"
    assert h.virsh("domblklist vm-s")[1].split() == ["sda", "/var/lib/libvirt/images/vm-s.ext1"]
    files = profile_files(h, "vm-s")
    # libvirt 9.0's virt-aa-helper grants every group node, not the one of
    # this GPU: a profile written again keeps it.
    assert '"/var/lib/libvirt/images/vm-s.ext1" rwk' in files and '"/dev/vfio/[0-9]*" rw' in files, files
    assert h.vfio_held(pid) == [h.group("gpu1")]
    assert "/var/lib/libvirt/images/vm-s.ext1" in h.sh(f"ls -l /proc/{pid}/fd")

    h.virsh("destroy vm-s")
    assert h.devices()[a]["state"] == "attached"
    h.virsh("start vm-s")
    pid = h.qemu_pid("vm-s")
    assert h.label(pid) == f"libvirt-{uuid} (enforce)"
    assert h.vfio_held(pid) == [h.group("gpu1")]
    assert "/var/lib/libvirt/images/vm-s.ext1" in h.sh(f"ls -l /proc/{pid}/fd")
    assert sorted(h.virsh("snapshot-list vm-s --name")[1].split()) == ["ext1", "int-off"]
    assert h.denials() == []
    d = h.devices()[a]
    assert d["state"] == "attached" and d["domain"] == "vm-s", d
    assert events(h.audit("gpu1", since)) == ["attach_seen"], h.audit("gpu1", since)

    h.virsh("destroy vm-s")
    h.virsh("undefine vm-s --snapshots-metadata")
    h.wait_state("gpu1", "sanitized", timeout=SLOW)
    recs = h.audit("gpu1", since)
    assert events(recs) == ["attach_seen", "detach_seen", "cleanup_started", "cleanup_passed"], recs
    cleaned_only_by_a_cleanup(recs)


def test_hot_plug_after_a_snapshot_and_again(settled):
    """The seed's trap, hot: a running domain with a disk and no GPU takes an
    external snapshot, then the GPU is hot-plugged (attach-device: libvirt
    writes /dev/vfio/N into the profile it already rewrote for the overlay),
    hot-unplugged and hot-plugged again. QEMU, confined, holds the group
    after each plug and lets it go after the unplug. A hot-plug runs no qemu
    hook: the daemon learns it from the watcher (libvirt's device-added
    event: attach_seen); the unplug is a release seen by the watcher
    (device-removed: detach_seen) and a clean-up runs and passes."""
    h = settled
    a = h.addr["gpu0"]
    since = h.last_seq("gpu0")
    h.virsh(f"create {make_domain(h, 'vm-h', native_hotplug=True)}")
    pid = h.qemu_pid("vm-h")
    h.virsh("snapshot-create-as vm-h ext1 --disk-only --atomic --no-metadata")
    assert h.vfio_held(pid) == []
    hd = h.hostdev_file("gpu0")
    for i in range(2):
        h.virsh(f"attach-device vm-h {hd} --live")
        assert h.vfio_held(pid) == [h.group("gpu0")]
        assert h.label(pid).startswith("libvirt-")
        d = h.wait(lambda: (x := h.devices()[a])["state"] == "attached" and x, "gpu0 attached by the hot-plug", timeout=SLOW)
        assert d["domain"] == "vm-h", d
        h.virsh(f"detach-device vm-h {hd} --live")
        h.wait(lambda: h.vfio_held(pid) == [], "QEMU letting go of the group", timeout=SLOW)
        assert "<hostdev" not in h.virsh("dumpxml vm-h")[1]
        h.wait_state("gpu0", "sanitized", timeout=SLOW)
    assert h.denials() == []
    recs = h.audit("gpu0", since)
    assert events(recs) == ["attach_seen", "detach_seen", "cleanup_started", "cleanup_passed"] * 2, recs
    cleaned_only_by_a_cleanup(recs)
    assert all("vm-h" in r["reason"] for r in recs if r["event"] == "attach_seen"), recs
    h.virsh("destroy vm-h")


def test_a_quarantined_gpu_is_fenced_against_hot_plug(settled):
    """libvirt runs no qemu hook for attach-device, so the gate never sees a
    hot-plug. For a quarantined GPU the kernel refuses it instead: the daemon
    holds the GPU's /dev/vfio/N open (agent/daemon/fence.c), and Linux allows
    one open of a group node at a time. Any other open of the node gets
    EBUSY; libvirt's attach-device fails with QEMU's "Device or resource
    busy", QEMU holds nothing, and the GPU stays quarantined, fenced, on
    vfio-pci, with no domain named and no transition."""
    h = settled
    aq = h.addr["gpu2"]
    group = h.group("gpu2")
    d = h.show("gpu2")
    assert d["state"] == "quarantined" and d["fenced"] is True, d
    assert group in h.vfio_held(h.unit_pid("gpuwardend"))
    log = h.sh(h.gwd_log)
    assert f"{aq}: fenced: gpuwardend holds IOMMU group {group} (/dev/vfio/{group}) open" in log, log[-3000:]
    rc, out = h.g.run(f"exec 3<>/dev/vfio/{group}")
    assert rc != 0 and "Device or resource busy" in out, out

    h.virsh(f"create {make_domain(h, 'vm-f', native_hotplug=True)}")
    pid = h.qemu_pid("vm-f")
    since_q = h.last_seq("gpu2")
    rc, out = h.virsh(f"attach-device vm-f {h.hostdev_file('gpu2')} --live", check=False)
    assert rc != 0 and "Device or resource busy" in out, out
    assert h.vfio_held(pid) == []
    assert "<hostdev" not in h.virsh("dumpxml vm-f")[1]
    time.sleep(2)   # what the watcher would have reported by now
    d = h.devices()[aq]
    assert d["state"] == "quarantined" and d["fenced"] is True and d["domain"] in (None, "", "-"), d
    assert h.audit("gpu2", since_q) == []
    assert h.driver("gpu2") == "vfio-pci"
    assert group in h.vfio_held(h.unit_pid("gpuwardend"))
    h.virsh("destroy vm-f")
    assert h.denials() == []


# A restart slow enough to look at the gap (a drop-in, then back).
SLOW_RESTART = ("mkdir -p /run/systemd/system/gpuwardend.service.d; printf '[Service]\\nRestartSec=20s\\n' > "
                "/run/systemd/system/gpuwardend.service.d/lab-slow.conf; systemctl daemon-reload")
FAST_RESTART = "rm -f /run/systemd/system/gpuwardend.service.d/lab-slow.conf; systemctl daemon-reload"


def test_a_fence_outlives_a_restart_of_the_daemon(settled):
    """The fence's descriptor is also in systemd's file descriptor store
    (agent/daemon/fence_store.c; the unit's FileDescriptorStoreMax=). When
    the daemon dies (SIGKILL here, as a crash), PID 1 still holds the
    quarantined GPU's group: a shell's open and libvirt's attach-device fail
    with "Device or resource busy" until the unit's restart, which adopts
    the same open as its fence. A systemctl restart keeps it the same way.
    A kept descriptor whose group went away and came back while the daemon
    was down is not adopted (it holds nothing): the fence is taken anew.
    A release takes it out of the store before the clean-up, which then
    reaches its verdict (the invalid ROM: quarantined again), not "in use"
    by PID 1."""
    h = settled
    aq = h.addr["gpu2"]
    group = h.group("gpu2")
    assert h.show("gpu2")["fenced"] is True
    assert h.sh("systemctl show -p NFileDescriptorStore --value gpuwardend").strip() == "1"
    assert group in h.vfio_held(1)
    # A restart slow enough to look at the gap (drop-in, then back).
    h.sh(SLOW_RESTART)
    try:
        h.virsh(f"create {make_domain(h, 'vm-r', native_hotplug=True)}")
        pid = h.qemu_pid("vm-r")
        old = h.unit_pid("gpuwardend")
        h.sh("systemctl kill -s KILL gpuwardend")
        h.wait(lambda: h.sh("systemctl show -p ActiveState --value gpuwardend").strip() != "active",
               "the daemon gone", timeout=10)
        rc, out = h.g.run(f"exec 3<>/dev/vfio/{group}")
        assert rc != 0 and "Device or resource busy" in out, out
        rc, out = h.virsh(f"attach-device vm-r {h.hostdev_file('gpu2')} --live", check=False)
        assert rc != 0 and "Device or resource busy" in out, out
        assert h.vfio_held(pid) == []
        diag = h.sh("ls -l /proc/1/fd | grep vfio; systemctl status --no-pager gpuwardend | head -8; "
                    "journalctl -q -o cat --no-pager -u gpuwardend | tail -20")
        assert group in h.vfio_held(1), diag
        assert h.sh("systemctl show -p ActiveState --value gpuwardend").strip() != "active", diag
        h.virsh("destroy vm-r")
    finally:
        h.sh(FAST_RESTART)
    h.wait(lambda: h.sh("systemctl show -p ActiveState --value gpuwardend").strip() == "active",
           "the restart", timeout=SLOW)
    new = h.unit_pid("gpuwardend")
    assert new != old
    h.wait(lambda: h.show("gpu2")["fenced"] is True, "the fence after the restart", timeout=SLOW)
    assert group in h.vfio_held(new)
    log = h.sh(f"journalctl -q -o cat --no-pager _PID={new}")
    assert "1 fence descriptor(s) kept by systemd across the restart" in log, log[-3000:]
    assert f"{aq}: fenced: gpuwardend holds IOMMU group {group}" in log and \
        "the same open systemd kept across the restart" in log, log[-3000:]

    h.sh("systemctl restart gpuwardend")
    newer = h.unit_pid("gpuwardend")
    h.wait(lambda: h.show("gpu2")["fenced"] is True, "the fence after systemctl restart", timeout=SLOW)
    assert "the same open systemd kept across the restart" in h.sh(f"journalctl -q -o cat --no-pager _PID={newer}")
    assert h.sh("systemctl show -p NFileDescriptorStore --value gpuwardend").strip() == "1"

    # A kept descriptor that is no longer the group's open is not adopted:
    # while the daemon is down, gpu2 leaves vfio-pci and comes back, so its
    # group goes away and a new one gets the node. PID 1's copy holds the
    # old group, which holds nothing: the new node opens.
    h.sh(SLOW_RESTART)
    try:
        h.sh("systemctl kill -s KILL gpuwardend")
        h.wait(lambda: h.sh("systemctl show -p ActiveState --value gpuwardend").strip() != "active",
               "the daemon gone", timeout=10)
        h.sh(f"echo {aq} > /sys/bus/pci/drivers/vfio-pci/unbind; echo {aq} > /sys/bus/pci/drivers_probe")
        assert h.driver("gpu2") == "vfio-pci"
        rc, out = h.g.run(f"exec 3<>/dev/vfio/{group}")
        assert rc == 0, out
        assert h.sh("systemctl show -p ActiveState --value gpuwardend").strip() != "active"
    finally:
        h.sh(FAST_RESTART)
    h.wait(lambda: h.sh("systemctl show -p ActiveState --value gpuwardend").strip() == "active",
           "the restart", timeout=SLOW)
    stale = h.unit_pid("gpuwardend")
    h.wait(lambda: h.show("gpu2")["fenced"] is True, "the fence taken anew", timeout=SLOW)
    log = h.sh(f"journalctl -q -o cat --no-pager _PID={stale}")
    assert f"IOMMU group {group}: the fence kept across the restart is not the node's open now" in log, log[-3000:]
    assert "held anew" in log and "the same open systemd kept" not in log, log[-3000:]
    assert group in h.vfio_held(stale)
    rc, out = h.g.run(f"exec 3<>/dev/vfio/{group}")
    assert rc != 0 and "Device or resource busy" in out, out
    assert h.sh("systemctl show -p NFileDescriptorStore --value gpuwardend").strip() == "1"

    since = h.last_seq("gpu2")
    h.sh(f"gpuwarden release {aq}")
    h.wait(lambda: any(r["event"] in ("cleanup_failed", "cleanup_aborted") for r in h.audit("gpu2", since)),
           "the clean-up after the release", timeout=SLOW)
    ev = events(h.audit("gpu2", since))
    assert "cleanup_failed" in ev and "cleanup_aborted" not in ev, h.audit("gpu2", since)
    assert (h.show("gpu2")["reason"] or "").startswith("firmware"), h.show("gpu2")
    h.wait(lambda: h.show("gpu2")["fenced"] is True, "the fence again", timeout=SLOW)
    assert h.sh("systemctl show -p NFileDescriptorStore --value gpuwardend").strip() == "1"
    assert h.denials() == []


def test_hot_plug_during_a_cleanup_is_refused(settled):
    """A GPU whose clean-up is running cannot be hot-plugged: the clean-up
    holds the GPU's /dev/vfio/N open from the end of its bind step to the
    end of the run (sanitize_step_bind.c, gw_hold_for_run), so the kernel
    refuses QEMU's open as it refuses it for a fenced GPU. attach-device
    fails with "Device or resource busy", QEMU holds nothing, the clean-up
    is not disturbed and counts (cleanup_passed), and no transition names
    the domain (docs/libvirt.md, "Hot-plug")."""
    h = settled
    a3 = h.addr["gpu3"]
    group = h.group("gpu3")
    h.virsh(f"create {make_domain(h, 'vm-g', native_hotplug=True)}")
    pid = h.qemu_pid("vm-g")
    since3 = h.last_seq("gpu3")

    # A GPU in the middle of its clean-up (held in the operator's hook,
    # after the reset and the checks).
    h3 = h.hostdev_file("gpu3")
    h.virsh(f"attach-device vm-g {h3} --live")
    h.wait(lambda: h.devices()[a3]["state"] == "attached", "gpu3 attached", timeout=SLOW)
    h.slow("gpu3", True)
    try:
        h.virsh(f"detach-device vm-g {h3} --live")
        h.wait_hook_running("gpu3", timeout=SLOW)
        assert h.devices()[a3]["cleaning"]
        assert group in h.vfio_held(h.unit_pid("gpuwardend"))
        rc, out = h.virsh(f"attach-device vm-g {h3} --live", check=False)
        assert rc != 0 and "Device or resource busy" in out, out
        assert h.vfio_held(pid) == []
        assert "<hostdev" not in h.virsh("dumpxml vm-g")[1]
    finally:
        h.slow("gpu3", False)
    h.wait_state("gpu3", "sanitized", timeout=SLOW)
    d = h.devices()[a3]
    assert not d["dirty"] and d["domain"] in (None, "", "-"), d
    recs = h.audit("gpu3", since3)
    assert events(recs) == ["attach_seen", "detach_seen", "cleanup_started", "cleanup_passed"], recs
    cleaned_only_by_a_cleanup(recs)
    # Let go with the run's end: the group is free for the next tenant.
    h.wait(lambda: group not in h.vfio_held(h.unit_pid("gpuwardend")), "the clean-up letting go of the group",
           timeout=SLOW)
    h.virsh("destroy vm-g")
    assert h.denials() == []
