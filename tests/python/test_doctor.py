"""gpuwarden doctor: each check's answer on every bundled test host, and on
copies of one made ready, or broken one way at a time (hook, libvirtd,
AppArmor after a snapshot, NVSwitch without Fabric Manager, no IOMMU)."""

import json
import os
import pathlib
import shutil
import subprocess
import time

import pytest

from gwdaemon import HOSTS, Daemon, build_dir

CHECKS = ["iommu", "vfio-pci", "gpu-drivers", "libvirt-hook", "libvirt-hook-loaded", "vfio-access",
          "fabric-manager", "daemon", "state-dir"]
HOST_NAMES = sorted(p.name for p in HOSTS.iterdir() if p.is_dir())


def doctor(*args, root=None, endpoint=None):
    argv = [str(build_dir() / "gpuwarden"), "doctor", "-f", "json", "--timeout", "0.3"]
    if root is not None:
        argv += ["--host-root", str(root)]
    argv += ["--endpoint", endpoint or "ipc:///nonexistent/gpuwarden-doctor-test.sock"]
    r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), (r.returncode, r.stderr)
    out = json.loads(r.stdout)
    assert [c["name"] for c in out["checks"]] == CHECKS
    assert out["ready"] == (r.returncode == 0) == all(c["status"] != "fail" for c in out["checks"])
    for c in out["checks"]:
        assert c["detail"]
        if c["status"] == "fail":
            assert c.get("fix"), c
    return {c["name"]: c for c in out["checks"]}, r.returncode


@pytest.mark.parametrize("name", HOST_NAMES)
def test_each_check_on_each_bundled_host(name):
    """The expectations come from the host's facts file (hosts/NAME.json),
    not from the doctor: groups, drivers, NVSwitches (hgx16 has them, and no
    Fabric Manager runs). No host carries a libvirt hook, a running libvirtd,
    AppArmor, a daemon or a state directory."""
    facts = json.loads((HOSTS / f"{name}.json").read_text())
    checks, rc = doctor(root=HOSTS / name)
    nvswitches = [d for d in facts["devices"] if d["vendor_id"] == "10de" and d["class"].startswith("0680")]
    want = {
        "iommu": "ok" if facts["groups"] else "fail",
        "vfio-pci": "ok",
        "gpu-drivers": "fail" if any(g["driver"] not in (None, "vfio-pci") for g in facts["gpus"]) else "ok",
        "libvirt-hook": "fail", "libvirt-hook-loaded": "skip", "vfio-access": "ok",
        "fabric-manager": "fail" if nvswitches else "skip",
        "daemon": "fail", "state-dir": "fail",
    }
    assert {k: c["status"] for k, c in checks.items()} == want
    assert rc == 1
    assert f"{len(facts['gpus'])} managed GPUs" in checks["gpu-drivers"]["detail"]
    assert "the daemon could not be asked" in checks["gpu-drivers"]["detail"]
    if nvswitches:
        assert checks["fabric-manager"]["detail"].startswith("%d NVSwitches and no Fabric Manager" % len(nvswitches))
    if want["gpu-drivers"] == "fail":
        held = [g for g in facts["gpus"] if g["driver"] not in (None, "vfio-pci")]
        for g in held:
            assert f"{g['address']} on {g['driver']}" in checks["gpu-drivers"]["detail"]
        assert "vfio-pci" in checks["gpu-drivers"]["fix"]


def _host(tmp_path, name="x299-3xa6000"):
    root = tmp_path / "host"
    shutil.copytree(HOSTS / name, root, symlinks=True)
    return root


def _hook(root, mode=0o755):
    hook = root / "etc/libvirt/hooks/qemu.d/gpuwarden"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text('#!/bin/sh\nexec /usr/bin/gpuwarden hook qemu "$@"\n')
    hook.chmod(mode)
    return hook


def _process(root, pid, comm, btime, start_ticks=0):
    """A process in root/proc as the kernel shows it: comm, and stat whose
    field 22 is its start in clock ticks after boot (proc/stat's btime)."""
    (root / "proc" / str(pid)).mkdir(parents=True, exist_ok=True)
    (root / "proc" / str(pid) / "comm").write_text(comm + "\n")
    fields = ["S", "1"] + ["0"] * 17 + [str(start_ticks)] + ["0"] * 30
    (root / "proc" / str(pid) / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
    (root / "proc" / "stat").write_text(f"cpu  1 2 3 4\nbtime {int(btime)}\nprocesses 9\n")


def test_a_ready_host_passes_every_check_and_exits_0(tmp_path):
    root = _host(tmp_path)
    _hook(root)
    _process(root, 4242, "libvirtd", time.time() + 5)   # started after the hook appeared
    (root / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on iommu=pt\n")
    state = root / "var/lib/gpuwarden"
    state.mkdir(parents=True)
    d = Daemon(tmp_path / "d", host=str(root))
    (tmp_path / "d").mkdir()
    d.start()
    try:
        checks, rc = doctor(root=root, endpoint=d.read)
    finally:
        d.stop()
    assert rc == 0, checks
    assert {k: c["status"] for k, c in checks.items()} == {
        "iommu": "ok", "vfio-pci": "ok", "gpu-drivers": "ok", "libvirt-hook": "ok", "libvirt-hook-loaded": "ok",
        "vfio-access": "ok", "fabric-manager": "skip", "daemon": "ok", "state-dir": "ok"}
    assert "intel_iommu=on iommu=pt" in checks["iommu"]["detail"]
    assert "3 managed GPUs (the daemon's GPUs)" in checks["gpu-drivers"]["detail"]
    assert "libvirtd (pid 4242) started" in checks["libvirt-hook-loaded"]["detail"]
    assert list(state.iterdir()) == []      # the write test left nothing


def test_table_output_names_each_check_and_its_fix(tmp_path):
    r = subprocess.run([str(build_dir() / "gpuwarden"), "doctor", "--host-root", str(HOSTS / "ats-on"),
                        "--endpoint", "ipc:///nonexistent/x.sock", "--timeout", "0.3"], capture_output=True, text=True)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines if line and not line.startswith(" ")][:len(CHECKS)] == CHECKS
    assert any(line.split()[:2] == ["gpu-drivers", "fail"] for line in lines)
    assert any(line.strip().startswith("fix:") and "driverctl" in line for line in lines)
    assert lines[-1].startswith("NOT READY")


def test_hook_not_executable_fails(tmp_path):
    root = _host(tmp_path)
    _hook(root, mode=0o644)
    checks, _ = doctor(root=root)
    assert checks["libvirt-hook"]["status"] == "fail" and "chmod 0755" in checks["libvirt-hook"]["fix"]


def test_libvirtd_started_before_the_hook_has_not_loaded_it(tmp_path):
    root = _host(tmp_path)
    _hook(root)
    _process(root, 99, "libvirtd", btime=1_000_000_000, start_ticks=100)
    checks, rc = doctor(root=root)
    c = checks["libvirt-hook-loaded"]
    assert c["status"] == "fail" and "before the hook appeared" in c["detail"] and "pid 99" in c["detail"]
    assert c["fix"].startswith("systemctl restart libvirtd") and rc == 1


def test_libvirtd_that_found_the_operators_own_qemu_hook_runs_qemu_d(tmp_path):
    """libvirtd lists qemu.d on every call once it found a qemu hook at start."""
    root = _host(tmp_path)
    own = root / "etc/libvirt/hooks/qemu"
    own.parent.mkdir(parents=True)
    own.write_text("#!/bin/sh\nexit 0\n")
    own.chmod(0o755)
    started = int(os.stat(own).st_ctime) + 1
    while time.time() < started + 1:
        time.sleep(0.1)
    _hook(root)
    _process(root, 7, "virtqemud", btime=started)
    c = doctor(root=root)[0]["libvirt-hook-loaded"]
    assert c["status"] == "ok" and "/etc/libvirt/hooks/qemu existed then" in c["detail"], c


def test_no_libvirtd_is_a_warning(tmp_path):
    root = _host(tmp_path)
    _hook(root)
    c = doctor(root=root)[0]["libvirt-hook-loaded"]
    assert c["status"] == "warn" and "neither libvirtd nor virtqemud" in c["detail"]


UUID = "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
STATUS_XML = f"""<domstatus state='running' reason='booted' pid='3100'>
  <domain type='kvm' id='1'>
    <name>vm1</name>
    <uuid>{UUID}</uuid>
    <devices>
      <hostdev mode='subsystem' type='pci' managed='yes'>
        <source><address domain='0x0000' bus='0x1a' slot='0x00' function='0x0'/></source>
        <address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
      </hostdev>
    </devices>
  </domain>
</domstatus>
"""


def test_apparmor_profile_without_the_gpus_vfio_group_fails_then_warns_then_passes(tmp_path):
    """The snapshot trap: a running domain's per-domain profile (written by
    virt-aa-helper) no longer lists /dev/vfio/N of its GPU, so re-attaching
    it fails. 0000:1a:00.0 is in IOMMU group 45 on x299-3xa6000."""
    root = _host(tmp_path)
    facts = json.loads((HOSTS / "x299-3xa6000.json").read_text())
    group = next(g["iommu_group"] for g in facts["gpus"] if g["address"] == "0000:1a:00.0")
    (root / "sys/module/apparmor/parameters").mkdir(parents=True)
    (root / "sys/module/apparmor/parameters/enabled").write_text("Y\n")
    (root / "run/libvirt/qemu").mkdir(parents=True)
    (root / "run/libvirt/qemu/vm1.xml").write_text(STATUS_XML)
    profiles = root / "etc/apparmor.d/libvirt"
    profiles.mkdir(parents=True)
    files = profiles / f"libvirt-{UUID}.files"
    files.write_text('  "/var/log/libvirt/**/vm1.log" w,\n  "/dev/vfio/vfio" rw,\n')
    c = doctor(root=root)[0]["vfio-access"]
    assert c["status"] == "fail", c
    assert f"vm1 (0000:1a:00.0): /dev/vfio/{group}" in c["detail"] and "snapshot" in c["detail"]
    assert "/dev/vfio/* rw," in c["fix"]

    files.write_text(files.read_text() + f'  "/dev/vfio/{group}" rw,\n')
    c = doctor(root=root)[0]["vfio-access"]
    assert c["status"] == "warn" and "1 running domains" in c["detail"], c

    local = root / "etc/apparmor.d/local/abstractions/libvirt-qemu"
    local.parent.mkdir(parents=True)
    local.write_text("/dev/vfio/* rw,\n")
    c = doctor(root=root)[0]["vfio-access"]
    assert c["status"] == "ok", c


def test_selinux_enforcing_is_reported(tmp_path):
    root = _host(tmp_path)
    (root / "sys/fs/selinux").mkdir(parents=True)
    (root / "sys/fs/selinux/enforce").write_text("1")
    c = doctor(root=root)[0]["vfio-access"]
    assert c["status"] == "ok" and "SELinux enforcing" in c["detail"]


def test_nvswitch_needs_fabric_manager(tmp_path):
    """An NVSwitch is an NVIDIA function of class 0x0680 (bridge, other);
    none of the bundled hosts has one, so one is added."""
    root = _host(tmp_path, "sm4029-8xrtx5000")
    sw = root / "sys/bus/pci/devices/0000:c1:00.0"
    sw.mkdir()
    (sw / "vendor").write_text("0x10de\n")
    (sw / "class").write_text("0x068000\n")
    c = doctor(root=root)[0]["fabric-manager"]
    assert c["status"] == "fail" and c["detail"].startswith("1 NVSwitches") and "nvidia-fabricmanager" in c["fix"]
    _process(root, 555, "nv-fabricmanage", time.time())    # comm is cut to 15 characters
    c = doctor(root=root)[0]["fabric-manager"]
    assert c["status"] == "ok" and "pid 555" in c["detail"]


def test_no_iommu_and_no_vfio_pci_fail_with_the_kernel_command_line(tmp_path):
    root = _host(tmp_path, "omen-3060")
    shutil.rmtree(root / "sys/kernel/iommu_groups")
    (root / "sys/kernel/iommu_groups").mkdir()
    (root / "proc").mkdir()
    (root / "proc/cmdline").write_text("root=/dev/nvme0n1p2 intel_iommu=off quiet\n")
    shutil.rmtree(root / "sys/bus/pci/drivers/vfio-pci")
    checks, rc = doctor(root=root)
    assert checks["iommu"]["status"] == "fail" and "turns the IOMMU off" in checks["iommu"]["detail"]
    assert "intel_iommu=on" in checks["iommu"]["fix"]
    assert checks["vfio-pci"]["status"] == "fail" and "modprobe vfio-pci" in checks["vfio-pci"]["fix"]
    assert rc == 1


def test_address_option_names_the_managed_gpus(tmp_path):
    checks, _ = doctor("--address", "0000:00:02.0", root=HOSTS / "ats-on")
    assert checks["gpu-drivers"]["status"] == "fail" and "0000:00:02.0 on i915" in checks["gpu-drivers"]["detail"]
    facts = json.loads((HOSTS / "ats-on.json").read_text())
    vfio = next(g["address"] for g in facts["gpus"] if g["driver"] == "vfio-pci")
    checks, _ = doctor("--address", vfio, root=HOSTS / "ats-on")
    assert checks["gpu-drivers"]["status"] == "ok" and "1 managed GPUs (--address)" in checks["gpu-drivers"]["detail"]
    checks, _ = doctor("--address", "0000:7f:00.0", root=HOSTS / "ats-on")
    assert checks["gpu-drivers"]["status"] == "fail" and "not found" in checks["gpu-drivers"]["detail"]


def test_state_dir_option_and_a_read_only_one(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    checks, _ = doctor("--state-dir", str(state), root=HOSTS / "x299-3xa6000")
    assert checks["state-dir"]["status"] == "ok" and str(state) in checks["state-dir"]["detail"]
    checks, _ = doctor("--state-dir", str(tmp_path / "nope"), root=HOSTS / "x299-3xa6000")
    assert checks["state-dir"]["status"] == "fail"


@pytest.mark.parametrize("args", [["-f", "xml"], ["extra"], ["--timeout", "x"], ["--bogus"]])
def test_usage_errors_exit_2(args):
    r = subprocess.run([str(build_dir() / "gpuwarden"), "doctor", "--host-root", str(HOSTS / "omen-3060")] + args,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)


def test_value_format_and_columns_act_on_the_checks():
    r = subprocess.run([str(build_dir() / "gpuwarden"), "--endpoint", "ipc:///nonexistent/x.sock", "doctor",
                        "--host-root", str(HOSTS / "ats-on"), "--timeout", "0.3", "-f", "value", "-c", "name",
                        "-c", "status"], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines() == ["iommu ok", "vfio-pci ok", "gpu-drivers fail", "libvirt-hook fail",
                                     "libvirt-hook-loaded skip", "vfio-access ok", "fabric-manager skip",
                                     "daemon fail", "state-dir fail"]


def test_help_documents_the_exit_codes():
    r = subprocess.run([str(build_dir() / "gpuwarden"), "doctor", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "exit codes: 0 no check failed, 1 a check failed, 2 usage or internal error" in r.stdout
