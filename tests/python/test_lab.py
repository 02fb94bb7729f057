"""The real kernel as referee: gpuwardend with the real sysfs backend at the
guest's `/`, inside Debian's own kernel booted in QEMU (TCG, q35, emulated
Intel IOMMU). See tests/lab/lab.py for the harness and docs/kernel-lab.md for
what the lab taught.

Two boots:
- "server": a GPU server as close as QEMU gets. Root ports, a PCIe switch
  (x3130 + 2x xio3130, no ACS), display-class endpoints (virtio-gpu-pci
  1af4:1050 class 0380, bochs-display 1234:1111), one with a valid ROM and AER,
  one with an image the kernel refuses, a GPU + ivshmem slot, a GPU + HDA slot
  (the HDA function is not managed), one without FLR, one with no reset method
  at all, a pxb-pcie expander on NUMA node 1, and an empty root port for
  hot-plug. The daemon manages vendors 1af4 and 1234 through the normal
  option, never a test-only path.
- "no-iommu": the same kind of device without an IOMMU, where vfio-pci's
  probe fails and the kernel refuses the bind.

Where the lab cannot run (no qemu, no kernel image) the tests are skipped with
a loud message counted in the summary; under CI=true they fail instead.
"""
import hashlib
import json
import mmap
import os
import pathlib
import re
import sys
import threading
import time

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "lab"))
import lab  # noqa: E402
from gwdaemon import build_dir  # noqa: E402
from test_discover_lspci import parse_lspci  # noqa: E402

G = lab.GUEST_GW
DAEMON_ARGS = ("--foreground --host-root / --manage-vendors 1af4,1234 --libvirt-uri '' "
               "--rescan-interval 2 --hooks-dir /lab/hooks --host-name lab")
# A hook that sleeps while /lab/run/slow-<address> exists: a window in which
# the test pulls the device out from under a running clean-up.
SLOW_HOOK = """#!/bin/sh
touch /lab/run/hook-$GW_DEVICE
while [ -e /lab/run/slow-$GW_DEVICE ]; do sleep 0.2; done
exit 0
"""


def unavailable():
    try:
        lab.check_available()
    except lab.LabUnavailable as e:
        return str(e)
    return None


WHY_NOT = unavailable()
if WHY_NOT and os.environ.get("CI") == "true":
    raise RuntimeError(f"the kernel lab must run in CI, but cannot: {WHY_NOT}")
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"KERNEL LAB NOT RUN: {WHY_NOT}")


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def lab_clock():
    """The lab's whole wall time (builds, boots, tests), for the summary."""
    t0 = time.monotonic()
    yield
    lab.record_stat("lab_seconds", time.monotonic() - t0)


@pytest.fixture(scope="session")
def initramfs(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab-initramfs")
    _, release = lab.kernel()
    t0 = time.monotonic()
    img = lab.build_initramfs(d / "initramfs.cpio", build_dir(), release, d)
    lab.record_stat("initramfs_seconds", time.monotonic() - t0)
    lab.record_stat("initramfs_bytes", img.stat().st_size)
    return img


def server_topology(tmp):
    t = lab.Topology()
    t.numa_nodes(2)
    # rp1 and rp5 are 5 GT/s ports: after a secondary bus reset Linux 6.1
    # waits for Data Link Layer Link Active on a faster port, which QEMU 7.2
    # never reports, and fails the reset (ENOTTY); at 5 GT/s it waits 100 ms.
    t.root_port("rp1", x_speed="5").gpu("gpu0", multifunction=True, romfile=lab.valid_rom(tmp / "valid.rom"),
                                       aer=True)
    t.ivshmem("shm0", bus="rp1", addr="0.1", mem_path=tmp / "shm0.bin")
    t.root_port("rp2").gpu("gpu1", multifunction=True).device("intel-hda", id="hda1", addr="0.1")
    t.root_port("rp3").gpu("gpu2", romfile=lab.invalid_rom(tmp / "invalid.rom"))
    sw = t.switch("sw0", 2, under=t.root_port("rp4").bus)
    sw[0].gpu("gpu3")
    sw[1].gpu("gpu4", ats=True)
    t.root_port("rp5", x_speed="5").gpu("gpu5", x_pcie_flr_init=False)
    t.root_bus("10.0").gpu("gpu6", x_pcie_flr_init=False, x_pcie_pm_init=False)
    t.root_port("rp6").gpu("bochs0", model="bochs-display")
    t.root_port("rp7").gpu("bochs1", model="bochs-display")
    # Empty: device_add goes here. SeaBIOS gives an empty port a 2 MB
    # prefetchable window unless told to reserve more; bochs-display's BAR 0
    # is 16 MB (see test_hotplug_into_a_port_too_small).
    t.root_port("rp8", pref32_reserve="32M")
    t.root_port("rp9")
    t.expander("pxb1", numa_node=1, bus_nr=64).gpu("gpu7")
    return t


class Server:
    """The booted "server" guest, QEMU ids mapped to guest PCI addresses."""

    def __init__(self, guest, tmp):
        self.g, self.tmp = guest, tmp
        self.addr = guest.pci_addresses()

    def cli(self, args, check=True):
        rc, out = self.g.run(f"{G}/gpuwarden {args}")
        if check and rc != 0:
            raise AssertionError(f"gpuwarden {args}: exit {rc}\n{out}")
        return rc, out

    def devices(self):
        return {d["address"]: d for d in json.loads(self.cli("list -f json")[1])}

    def show(self, qid):
        return json.loads(self.cli(f"show {self.addr[qid]} -f json")[1])

    def wait(self, pred, what, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            devs = self.devices()
            if pred(devs):
                return devs
            if time.monotonic() > deadline:
                log = self.g.run("tail -30 /run/gwd.log")[1]
                raise AssertionError(f"timed out waiting for {what}: {json.dumps(devs, indent=1)}\n{log}")
            time.sleep(0.5)

    def wait_settled(self, qid, timeout=60):
        a = self.addr[qid]
        self.wait(lambda d: a in d and not d[a]["cleaning"] and d[a]["state"] != "discovered",
                  f"{qid} ({a}) to settle", timeout)
        return self.show(qid)

    def sanitize(self, qid, timeout=60):
        """Request a clean-up and wait for a new one to finish."""
        before = (self.show(qid).get("cleanup") or {}).get("started")
        self.cli(f"sanitize {self.addr[qid]}")
        a = self.addr[qid]

        def done(_):
            s = self.show(qid)
            return (not s["cleaning"] and s.get("cleanup")
                    and s["cleanup"]["started"] != before and s["cleanup"].get("finished"))
        self.wait(done, f"a new clean-up of {qid} ({a})", timeout)
        return self.show(qid)

    def sysfs(self, qid, attr):
        return self.g.read(f"/sys/bus/pci/devices/{self.addr[qid]}/{attr}").strip()

    def mmio(self, qid, offset, width, value=None):
        v = "" if value is None else f" {value}"
        return int(self.g.sh(f"{G}/lab-mmio {self.addr[qid]} virtio-common {offset} {width}{v}"), 16)


def step(show, name):
    for s in show["steps"]:
        if s["name"] == name:
            return s
    raise AssertionError(f"no step {name}: {show['steps']}")


def failed_step(show):
    bad = [s for s in show["steps"] if s["verdict"] == "fail"]
    assert len(bad) == 1, show["steps"]
    return bad[0]


def start_daemon(g, extra=""):
    g.sh(f"{G}/gpuwardend {DAEMON_ARGS} {extra} >> /run/gwd.log 2>&1 &")
    deadline = time.monotonic() + 30
    while g.run(f"{G}/gpuwarden list")[0] != 0:
        if time.monotonic() > deadline:
            raise AssertionError("gpuwardend did not come up:\n" + g.run("cat /run/gwd.log")[1])
        time.sleep(0.3)


@pytest.fixture(scope="module")
def server(initramfs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab-server")
    topo = server_topology(tmp)
    (tmp / "shm0.bin").write_bytes(b"\0" * (1 << 20))
    with lab.Guest.boot(topo, tmp, initramfs, name="server") as g:
        yield Server(g, tmp)


@pytest.fixture(scope="module")
def daemon(server):
    """gpuwardend inside the guest, after the discovery tests looked at the
    untouched host. Waits for the first clean-ups to settle."""
    g = server.g
    g.sh("mkdir -p /var/lib/gpuwarden /run/gpuwarden /lab/hooks")
    g.sh(f"cat > /lab/hooks/50-slow <<'EOF'\n{SLOW_HOOK}EOF\nchmod 755 /lab/hooks/50-slow")
    start_daemon(g)
    managed = ["gpu0", "gpu1", "gpu2", "gpu3", "gpu4", "gpu5", "gpu6", "bochs0", "bochs1", "gpu7"]
    server.wait(lambda d: all(server.addr[q] in d and not d[server.addr[q]]["cleaning"]
                              and d[server.addr[q]]["state"] != "discovered" for q in managed),
                "the first clean-ups", timeout=90)
    return server


# ---------------------------------------------------------------- discovery

def test_discovery_agrees_with_the_guest_kernel(server):
    g, addr = server.g, server.addr
    out = json.loads(g.sh(f"{G}/gpuwarden discover --json --host-root /"))
    gpus = {x["address"]: x for x in out["gpus"]}
    display = g.sh("for d in /sys/bus/pci/devices/*; do case $(cat $d/class) in 0x03*) basename $d;; esac; done")
    assert sorted(gpus) == sorted(display.split())
    assert len(gpus) == 10
    ls = parse_lspci(g.sh("lspci -vvv -D -nn"))
    for a, x in gpus.items():
        d = f"/sys/bus/pci/devices/{a}"
        kernel_group = g.sh(f"basename $(readlink {d}/iommu_group)").strip()
        members = g.sh(f"ls /sys/kernel/iommu_groups/{kernel_group}/devices").split()
        assert x["iommu_group"] == kernel_group == ls[a]["group"], a
        assert sorted(m["address"] for m in x["iommu_group_members"]) == sorted(members), a
        rc, rm = g.run(f"cat {d}/reset_method")
        rm = rm.split() if rc == 0 else []        # no method: the kernel hides the attribute
        assert x["reset_methods"] == rm, a
        assert x["driver"] == ls[a]["driver"], a
        assert x["numa_node"] == int(g.read(f"{d}/numa_node")), a
        assert x["numa_node"] == (ls[a]["numa"] if ls[a]["numa"] is not None else -1), a
        assert x["flr"] == bool(ls[a]["flr"]), a
        assert x["ats"]["present"] == (ls[a]["ats"] is not None), a
        for b in x["upstream"]:
            u = ls[b["address"]]
            assert b["acs"]["present"] == (u["acs_ctl"] is not None), b["address"]
            if u["acs_ctl"] is not None:
                assert int(b["acs"]["ctrl"], 16) & 0x7f == u["acs_ctl"], b["address"]

    # What the kernel showed, in the facts the rest of the lab relies on.
    gpu = lambda q: gpus[addr[q]]   # noqa: E731
    assert gpu("gpu0")["reset_methods"] == ["flr", "pm", "bus"]
    assert gpu("gpu0")["rom_present"] and gpu("gpu0")["aer"]["present"]
    assert gpu("gpu0")["functions"] == [addr["shm0"]]
    assert gpu("gpu5")["reset_methods"] == ["pm", "bus"] and not gpu("gpu5")["flr"]
    assert gpu("gpu6")["reset_methods"] == []
    assert gpu("gpu7")["numa_node"] == 1 and gpu("gpu0")["numa_node"] == -1
    assert gpu("gpu4")["ats"] == {"present": True, "enabled": False}
    # One switch, one clique; root-port GPUs are in none.
    assert out["cliques"] == [sorted([addr["gpu3"], addr["gpu4"]])]
    assert gpu("gpu3")["clique"] == gpu("gpu4")["clique"] == 0
    assert gpu("gpu0")["clique"] is None
    # The switch's downstream ports have no ACS: the kernel puts each port and
    # its GPU in one group, and discovery's verdicts say why.
    assert not gpu("gpu3")["acs_path_ok"] and gpu("gpu0")["acs_path_ok"]
    assert gpu("gpu1")["group_viable"]        # the HDA function is of its slot
    assert gpu("gpu0")["group_viable"]


# ---------------------------------------------------------------- clean-up on the real kernel

def test_full_cleanup_with_flr_and_rom(daemon, server):
    s = server.show("gpu0")
    assert s["state"] == "sanitized", s
    assert server.g.sh(f"basename $(readlink /sys/bus/pci/devices/{server.addr['gpu0']}/driver)").strip() == "vfio-pci"
    assert server.g.sh(f"basename $(readlink /sys/bus/pci/devices/{server.addr['shm0']}/driver)").strip() == "vfio-pci"
    # vfio-pci's runtime PM is left as the kernel sets it: auto, the idle
    # device suspended in D3hot.
    assert server.sysfs("gpu0", "power/control") == "auto"
    assert server.sysfs("gpu0", "power/runtime_status") == "suspended"
    assert server.sysfs("gpu0", "power_state") == "D3hot"
    want = hashlib.sha256((server.tmp / "valid.rom").read_bytes()).hexdigest()
    assert want in step(s, "firmware")["evidence"]
    assert "kernel tries flr first" in step(s, "reset")["evidence"]

    # The reset really happens: state left in the device (the virtio queue
    # select register, which only a device reset clears) is gone after a
    # clean-up of a device already on vfio-pci.
    assert server.mmio("gpu0", 0x16, 2, 1) == 1
    s = server.sanitize("gpu0")
    assert s["state"] == "sanitized", s
    assert server.mmio("gpu0", 0x16, 2) == 0
    assert server.sysfs("gpu0", "power/control") == "auto"
    lab.record_stat("cleanup_steps_gpu0", [(x["name"], x["duration_ms"]) for x in s["steps"]])
    lab.record_stat("cleanup_ms_gpu0", s["cleanup"]["duration_ms"])


def test_doctor_in_the_guest(daemon, server):
    """gpuwarden doctor on the guest's own / (real sysfs, proc and daemon):
    each answer against what the guest's kernel shows."""
    g = server.g
    rc, out = g.run(f"{G}/gpuwarden doctor -f json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["iommu"]["status"] == "ok" and "intel_iommu=on" in checks["iommu"]["detail"]
    assert checks["vfio-pci"]["status"] == "ok"
    managed = [d["address"] for d in server.devices().values()]
    held = [a for a in managed
            if g.run(f"d=$(readlink /sys/bus/pci/devices/{a}/driver); echo ${{d##*/}}")[1].strip()
            not in ("vfio-pci", "")]
    assert checks["gpu-drivers"]["status"] == ("fail" if held else "ok"), (held, checks["gpu-drivers"])
    assert f"{len(managed)} managed GPUs (the daemon's GPUs)" in checks["gpu-drivers"]["detail"]
    assert checks["libvirt-hook"]["status"] == "fail"          # no libvirt in the guest
    assert checks["libvirt-hook-loaded"]["status"] == "skip"
    apparmor = g.run("cat /sys/module/apparmor/parameters/enabled")[1].strip() == "Y"
    assert checks["vfio-access"]["status"] == ("warn" if apparmor else "ok"), checks["vfio-access"]
    assert checks["fabric-manager"]["status"] == "skip"
    assert checks["daemon"]["status"] == "ok" and checks["state-dir"]["status"] == "ok"
    assert rc == 1


def test_no_reset_method_is_quarantined_at_reset(daemon, server):
    s = server.show("gpu6")
    assert s["state"] == "quarantined"
    f = failed_step(s)
    assert f["name"] == "reset"
    assert "no reset method" in f["evidence"]


def test_rom_the_kernel_refuses_is_quarantined_at_firmware(daemon, server):
    s = server.show("gpu2")
    assert s["state"] == "quarantined"
    f = failed_step(s)
    assert f["name"] == "firmware"
    assert "Input/output error" in f["evidence"], f
    # The kernel's own answer, outside the daemon too.
    rc, out = server.g.run(f"d=/sys/bus/pci/devices/{server.addr['gpu2']}; echo 1 > $d/rom; cat $d/rom > /dev/null;"
                           " r=$?; echo 0 > $d/rom; exit $r")
    assert rc != 0 and "Input/output error" in out


def test_group_shared_with_a_function_not_ours(daemon, server):
    s = server.show("gpu1")
    assert s["state"] == "quarantined"
    f = failed_step(s)
    assert f["name"] == "bind"
    hda = server.addr["hda1"]
    assert f"{hda} bound to no driver and not managed" in f["evidence"], f
    assert "wrote nothing" in f["evidence"]
    assert server.g.run(f"readlink /sys/bus/pci/devices/{hda}/driver")[0] != 0


def test_devices_behind_a_switch_without_acs(daemon, server):
    for q in ("gpu3", "gpu4"):
        s = server.show(q)
        assert s["state"] == "quarantined", s
        f = failed_step(s)
        assert f["name"] == "isolation"
        assert "no ACS" in f["evidence"], f


def test_no_flr_is_named_in_the_reset_evidence(daemon, server):
    s = server.show("gpu5")
    assert "no FLR offered, kernel uses pm" in step(s, "reset")["evidence"]


def test_in_use_by_a_vfio_group_holder(daemon, server):
    """As QEMU does: a process holds /dev/vfio/N open. No clean-up touches the
    device, and the evidence names the holder."""
    g, a = server.g, server.addr["gpu0"]
    assert server.show("gpu0")["state"] == "sanitized"
    group = server.show("gpu0")["iommu_group"]
    g.sh(f"(exec 7<>/dev/vfio/{group}; exec sleep 600) > /dev/null 2>&1 & echo $! > /lab/run/holder.pid")
    pid = g.read("/lab/run/holder.pid").strip()
    g.sh(f"for i in $(seq 50); do ls -l /proc/{pid}/fd 2>/dev/null | grep -q /dev/vfio/{group} && exit 0;"
         " sleep 0.1; done; exit 1")
    try:
        assert server.mmio("gpu0", 0x16, 2, 1) == 1
        server.cli(f"sanitize {a}")
        # An aborted clean-up keeps no steps; its evidence is the reason.
        server.wait(lambda d: not d[a]["cleaning"] and f"pid {pid}" in (d[a]["reason"] or ""),
                    "a clean-up that names the holder", timeout=30)
        s = server.show("gpu0")
        text = s["reason"]
        assert f"pid {pid}" in text and "sleep" in text, s
        assert f"/dev/vfio/{group}" in text
        # Nothing reset the device: the register still holds what we left.
        assert server.mmio("gpu0", 0x16, 2) == 1
        assert s["state"] != "quarantined"
    finally:
        g.run(f"kill {pid}")
    s = server.sanitize("gpu0")
    assert s["state"] == "sanitized"
    assert server.mmio("gpu0", 0x16, 2) == 0


def test_injected_aer_error_fails_health(daemon, server):
    assert server.show("gpu0")["state"] == "sanitized"
    out = server.g.hmp("pcie_aer_inject_error gpu0 POISON_TLP")
    assert "OK" in out or out == "", out
    a = server.addr["gpu0"]
    server.g.sh(f"for i in $(seq 50); do grep -q 'TOTAL_ERR_NONFATAL 1' /sys/bus/pci/devices/{a}/aer_dev_nonfatal"
                " && exit 0; sleep 0.1; done; exit 1")
    # The OS owns AER here: its recovery (vfio-pci has an error handler)
    # clears the device's status; the counter carries the error.
    server.g.sh(f"for i in $(seq 50); do [ $(setpci -s {a} ECAP_AER+4.L) = 00000000 ] && exit 0; sleep 0.1; done;"
                " exit 1")
    s = server.sanitize("gpu0")
    assert s["state"] == "quarantined", s
    f = failed_step(s)
    assert f["name"] == "health"
    assert "aer_dev_nonfatal" in f["evidence"], f
    assert f"{a}: AER status clear" in f["evidence"], f


def test_device_removed_outside_a_cleanup(daemon, server):
    g, a = server.g, server.addr["bochs0"]
    assert server.show("bochs0")["state"] == "sanitized"
    g.qmp("device_del", id="bochs0")
    g.sh(f"for i in $(seq 150); do [ -e /sys/bus/pci/devices/{a} ] || exit 0; sleep 0.1; done; exit 1", timeout=30)
    devs = server.wait(lambda d: not d[a]["present"], "bochs0 gone", timeout=30)
    # Off the bus unasked is a fault: quarantined by the scan, record kept.
    assert devs[a]["state"] == "quarantined", devs[a]
    assert devs[a]["reason"] == "not found on the bus by a scan", devs[a]
    inv = json.loads(server.cli("inventory -f json")[1])
    names = [d["name"] for d in inv["deployables"]]
    offered = [d for d in inv["deployables"] if a in d["name"] and d.get("reserved", 1) == 0]
    assert not offered, names


def test_device_removed_during_a_cleanup(daemon, server):
    g, a = server.g, server.addr["bochs1"]
    assert server.show("bochs1")["state"] == "sanitized"
    g.sh(f"touch /lab/run/slow-{a}; rm -f /lab/run/hook-{a}")
    server.cli(f"sanitize {a}")
    g.sh(f"for i in $(seq 300); do [ -e /lab/run/hook-{a} ] && exit 0; sleep 0.1; done; exit 1", timeout=40)
    g.qmp("device_del", id="bochs1")
    g.sh(f"for i in $(seq 150); do [ -e /sys/bus/pci/devices/{a} ] || exit 0; sleep 0.1; done; exit 1", timeout=30)
    g.sh(f"rm -f /lab/run/slow-{a}")
    devs = server.wait(lambda d: not d[a]["cleaning"], "the clean-up of bochs1 to end", timeout=30)
    s = server.show("bochs1")
    assert s["state"] == "quarantined", json.dumps(s, indent=1)
    f = failed_step(s)
    assert f["name"] == "hooks"
    assert f"device gone from the bus during this step: sys/bus/pci/devices/{a} no longer exists" in f["evidence"]
    devs = server.wait(lambda d: not d[a]["present"], "bochs1 gone", timeout=30)
    assert devs[a]["state"] == "quarantined"


def test_hotplug_is_found_cleaned_and_offered(daemon, server):
    g = server.g
    before = set(server.devices())
    g.qmp("device_add", driver="bochs-display", id="bochs2", bus="rp8")
    devs = server.wait(lambda d: len(set(d) - before) == 1, "the hot-plugged GPU", timeout=60)
    (new,) = set(devs) - before
    server.addr = g.pci_addresses()
    assert server.addr["bochs2"] == new
    s = server.wait_settled("bochs2")
    assert s["state"] == "sanitized", json.dumps(s, indent=1)
    assert [x["verdict"] for x in s["steps"]][:3] == ["pass", "pass", "pass"]
    inv = json.loads(server.cli("inventory -f json")[1])
    assert any(new in d["name"] for d in inv["deployables"])


def test_hotplug_into_a_port_too_small(daemon, server):
    """The kernel cannot place a 16 MB BAR in the 2 MB window firmware left an
    empty port ("BAR 0: can't assign; no space"): the device appears with BAR
    0 unassigned and its ROM reads as zeros, which the kernel refuses (EIO).
    It must not be offered."""
    g = server.g
    before = set(server.devices())
    g.qmp("device_add", driver="bochs-display", id="bochs3", bus="rp9")
    devs = server.wait(lambda d: len(set(d) - before) == 1, "the hot-plugged GPU", timeout=60)
    (new,) = set(devs) - before
    server.addr = g.pci_addresses()
    assert "can't assign; no space" in g.sh(f"dmesg | grep {new}")
    s = server.wait_settled("bochs3")
    assert s["state"] == "quarantined", json.dumps(s, indent=1)
    f = failed_step(s)
    assert f["name"] == "health"
    assert "BAR0 is implemented (register 0x00000008: prefetchable memory) but the kernel assigned it no address" \
        in f["evidence"], f


# ---------------------------------------------------------------- no IOMMU

def test_bind_the_kernel_refuses(initramfs, tmp_path):
    """Without an IOMMU vfio-pci's probe fails (-EINVAL): drivers_probe says
    nothing, the bind attribute returns the kernel's error."""
    topo = lab.Topology()
    topo.root_port("rp1").gpu("gpu0")
    with lab.Guest.boot(topo, tmp_path, initramfs, name="no-iommu", iommu=False) as g:
        a = g.pci_addresses()["gpu0"]
        assert g.run(f"ls /sys/bus/pci/devices/{a}/iommu_group")[0] != 0
        g.sh("mkdir -p /var/lib/gpuwarden /run/gpuwarden /lab/hooks")
        start_daemon(g)
        srv = Server(g, tmp_path)
        s = srv.wait_settled("gpu0")
        assert s["state"] == "quarantined", s
        f = failed_step(s)
        assert f["name"] == "bind"
        assert "to sys/bus/pci/drivers/vfio-pci/bind failed: Invalid argument" in f["evidence"], f
        assert "the device has no IOMMU group" in f["evidence"], f
        assert "probe of" in g.sh("dmesg | grep vfio-pci")


# ---------------------------------------------------------------- the OS does not own AER

def test_live_aer_register_fails_health_and_is_cleared(initramfs, tmp_path):
    """Health reads the device's own AER register, not only the kernel's
    counters. With pci=noaer the kernel does not ask firmware for AER control
    (_OSC), as on a firmware-first host: it neither counts an error
    (aer_dev_* stay 0) nor clears the status at resume and reset (where it
    owns AER, pci_restore_state() clears it; the server boot shows that
    path). The Poisoned TLP stays in UESta across the FLR (sticky), health
    fails on it with the register's value in the evidence, and clears it
    (write-1-to-clear through sysfs config): afterwards the guest kernel's
    own view of the register reads 0."""
    topo = lab.Topology()
    topo.root_port("rp1").gpu("gpu0", aer=True)
    with lab.Guest.boot(topo, tmp_path, initramfs, name="noaer", extra_cmdline="pci=noaer") as g:
        a = g.pci_addresses()["gpu0"]
        d = f"/sys/bus/pci/devices/{a}"
        g.sh("mkdir -p /var/lib/gpuwarden /run/gpuwarden /lab/hooks")
        start_daemon(g)
        srv = Server(g, tmp_path)
        s = srv.wait_settled("gpu0")
        assert s["state"] == "sanitized", json.dumps(s, indent=1)
        assert f"{a}: AER status clear" in step(s, "health")["evidence"]

        out = g.hmp("pcie_aer_inject_error gpu0 POISON_TLP")
        assert "OK" in out or out == "", out
        aer = int(re.search(r"Capabilities: \[([0-9a-f]+) v\d\] Advanced Error Reporting",
                            g.sh(f"lspci -s {a} -vvv 2>/dev/null")).group(1), 16)
        # The guest kernel's own reading of the register: Poisoned TLP.
        assert g.sh(f"setpci -s {a} ECAP_AER+4.L").strip() == "00001000"
        assert re.search(r"UESta:.*\bTLP\+", g.sh(f"lspci -s {a} -vvv 2>/dev/null"))
        assert "TOTAL_ERR_NONFATAL 0" in g.read(f"{d}/aer_dev_nonfatal")
        assert int(g.sh(f"setpci -s {a} STATUS"), 16) & 0x4000       # Signaled System Error

        s = srv.sanitize("gpu0")
        assert s["state"] == "quarantined", json.dumps(s, indent=1)
        f = failed_step(s)
        assert f["name"] == "health", f
        ev = f["evidence"]
        assert f"{a}: AER Uncorrectable Error Status 0x00001000: Poisoned TLP (non-fatal)" in ev, ev
        assert f"{a}: aer_dev_nonfatal TOTAL 0 unchanged" in ev, ev      # the counters never saw it
        assert f"wrote 0x00001000 to {a} config 0x{aer + 4:x}" in ev, ev
        # QEMU clears PCI Status on FLR but keeps Device Status (real hardware clears both).
        assert f"{a}: PCI Status 0x0010: no error bits" in ev, ev
        assert f"{a}: Device Status 0x0002: Non-Fatal Error Detected" in ev, ev
        assert "BAR registers hold the addresses the kernel assigned" in ev, ev
        # Cleared: the kernel reads 0, and the next clean-up starts from zero.
        assert g.sh(f"setpci -s {a} ECAP_AER+4.L").strip() == "00000000"
        assert re.search(r"UESta:.*\bTLP-", g.sh(f"lspci -s {a} -vvv 2>/dev/null"))
        started = s["cleanup"]["started"]
        srv.cli(f"release {a}")        # a clean-up follows at once
        srv.wait(lambda _: (srv.show("gpu0").get("cleanup") or {}).get("started") != started
                 and srv.show("gpu0")["state"] == "sanitized", "gpu0 released and clean again")
        s = srv.show("gpu0")
        assert f"{a}: AER status clear" in step(s, "health")["evidence"]


# ---------------------------------------------------------------- bus reset and scrub (issue 13)

# Every virtio-gpu of the server is 1af4:1050, so one [model] section speaks
# for all of them: gpu0's slot has its memory (ivshmem, BAR 2) at function 1.
MODEL_CONF = """[model 1af4:1050]
reset = flr+bus
scrub = bar
scrub_function = 1
scrub_bar = 2
"""


def restart_daemon(g, conf):
    """gpuwardend again, with `conf` as /etc/gpuwarden/gpuwarden.conf: the
    policy is read at a start (a SIGHUP does not change it)."""
    g.sh("kill $(pidof gpuwardend); for i in $(seq 100); do pidof gpuwardend > /dev/null || exit 0; sleep 0.1;"
         " done; exit 1")
    g.sh(f"mkdir -p /etc/gpuwarden; cat > /etc/gpuwarden/gpuwarden.conf <<'EOF'\n{conf}EOF")
    start_daemon(g, "--config /etc/gpuwarden/gpuwarden.conf")


def clean_again(server, qid, timeout=60):
    """A new clean-up of `qid`: `sanitize`, or `release` when an earlier test
    left it quarantined (a clean-up follows a release at once)."""
    s = server.show(qid)
    if s["state"] != "quarantined":
        return server.sanitize(qid, timeout)
    before = (s.get("cleanup") or {}).get("started")
    server.cli(f"release {server.addr[qid]}")

    def done(_):
        s = server.show(qid)
        return (not s["cleaning"] and s["state"] != "discovered" and s.get("cleanup")
                and s["cleanup"]["started"] != before and s["cleanup"].get("finished"))
    server.wait(done, f"a clean-up of {qid} after its release", timeout)
    return server.show(qid)


def test_bus_reset_clears_what_pm_leaves(daemon, server):
    """gpu5 has no FLR (reset_method "pm bus"): the kernel's own reset uses
    pm, which QEMU 7.2 answers without resetting anything. The clean-up
    resets the bus below gpu5's root port through VFIO instead, and the state
    left in the device is gone."""
    g, a = server.g, server.addr["gpu5"]
    s = server.show("gpu5")
    assert s["state"] == "sanitized", s
    rp = step(s, "reset")["evidence"]
    assert "reset_method 'pm bus': no FLR offered" in rp
    assert f"reset by a secondary bus reset through VFIO (hot reset of the bus below " in rp, rp
    assert f"): {a};" in rp or rp.endswith(f"): {a}"), rp
    assert server.mmio("gpu5", 0x16, 2, 1) == 1
    g.sh(f"echo 1 > /sys/bus/pci/devices/{a}/reset")       # the kernel's reset: pm
    assert server.mmio("gpu5", 0x16, 2) == 1
    s = server.sanitize("gpu5")
    assert s["state"] == "sanitized", s
    assert server.mmio("gpu5", 0x16, 2) == 0


@pytest.fixture(scope="module")
def model_daemon(daemon, server):
    restart_daemon(server.g, MODEL_CONF)
    return server


def test_scrub_zeroes_the_memory_the_host_sees(model_daemon, server):
    """The host fills the file behind shm0's BAR 2 (what a tenant left in the
    GPU's memory); a clean-up of gpu0 zeroes it through VFIO and reads it
    back, and the host finds only zeros. flr+bus: both resets, the bus one
    covering gpu0 and shm0, both ours."""
    shm = server.tmp / "shm0.bin"
    pattern = bytes(((i * 131) % 251) + 1 for i in range(1 << 20))     # no zero byte
    with open(shm, "r+b") as f:
        f.write(pattern)
    # The guest sees it in the device's BAR.
    got = int(server.g.sh(f"{G}/lab-mmio {server.addr['shm0']} 2 0 4"), 16)
    assert got == int.from_bytes(pattern[:4], "little")
    s = clean_again(server, "gpu0")
    assert s["state"] == "sanitized", json.dumps(s, indent=1)
    assert shm.read_bytes() == bytes(1 << 20)
    gpu, fn = server.addr["gpu0"], server.addr["shm0"]
    rs = step(s, "reset")["evidence"]
    assert "model 1af4:1050: reset flr+bus" in rs and "reset by FLR (the kernel's reset)" in rs, rs
    assert f"reset by a secondary bus reset through VFIO" in rs and f"{gpu}, {fn}" in rs, rs
    sc = step(s, "scrub")
    assert sc["verdict"] == "pass", sc
    assert f"zeroed BAR 2 of {fn} (1048576 bytes, mmap)" in sc["evidence"], sc
    assert "read back 1048576 bytes (every byte, mmap)" in sc["evidence"], sc
    # Held in D0 for the clean-up (bind wrote power/control "on"), handed back
    # to the kernel's runtime PM at the end: auto, suspended in D3hot again.
    assert f"wrote 'on' to sys/bus/pci/devices/{gpu}/power/control" in step(s, "bind")["evidence"]
    assert f"{gpu} after the reset: D0, runtime active" in rs, rs
    assert server.sysfs("gpu0", "power/control") == "auto"
    assert server.sysfs("gpu0", "power/runtime_status") == "suspended"
    assert server.sysfs("gpu0", "power_state") == "D3hot"
    rates = [float(x) for x in re.findall(r"([0-9.]+) MB/s", sc["evidence"])]
    lab.record_stat("scrub_zero_mb_s", rates[0])
    lab.record_stat("scrub_verify_mb_s", rates[1])
    print(f"scrub of a 1 MiB BAR (TCG): zero {rates[0]} MB/s, read back {rates[1]} MB/s")


def test_scrub_verification_finds_a_byte_written_behind_it(model_daemon, server):
    """While the clean-up runs, the host keeps writing a non-zero byte into
    the last byte of the memory behind shm0's BAR 2, as a device engine that
    is still writing would. The scrub zeroes it, its read-back finds the byte
    again, and the GPU is quarantined with the offset: the verdict comes from
    the verification, not from the zeroing having run."""
    shm = server.tmp / "shm0.bin"
    last = (1 << 20) - 1
    stop = threading.Event()

    def writer():
        with open(shm, "r+b") as f:
            m = mmap.mmap(f.fileno(), 1 << 20)
            try:
                while not stop.is_set():
                    m[last] = 0x5A
                    time.sleep(0.0002)
            finally:
                m.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        s = clean_again(server, "gpu0")
    finally:
        stop.set()
        t.join()
    assert s["state"] == "quarantined", json.dumps(s, indent=1)
    f = failed_step(s)
    assert f["name"] == "scrub", f
    fn = server.addr["shm0"]
    assert f"zeroed BAR 2 of {fn}" in f["evidence"], f
    assert (f"byte at offset 0x{last:x} of BAR 2 of {fn} is not zero after the scrub (reads 0x5a): "
            "memory not cleared") in f["evidence"], f


def test_bus_reset_refused_for_a_function_not_ours(model_daemon, server):
    """gpu1's slot has intel-hda at .1 (vendor 8086, not managed). The
    operator put it on vfio-pci, so bind leaves it be; but a bus reset would
    reset it too: refused, naming it."""
    g, gpu, hda = server.g, server.addr["gpu1"], server.addr["hda1"]
    g.sh(f"echo vfio-pci > /sys/bus/pci/devices/{hda}/driver_override; echo {hda} > /sys/bus/pci/drivers_probe")
    assert g.sh(f"basename $(readlink /sys/bus/pci/devices/{hda}/driver)").strip() == "vfio-pci"
    assert server.show("gpu1")["state"] == "quarantined"      # at bind, before hda1 was on vfio-pci
    s = clean_again(server, "gpu1")
    assert s["state"] == "quarantined", json.dumps(s, indent=1)
    f = failed_step(s)
    assert f["name"] == "reset", f
    assert f"bus reset would also reset {hda} (bound to vfio-pci, not managed): refused" in f["evidence"], f



# ---------------------------------------------------------------- scrub method driver (issue 13)

# Last in the file: virtio_pci binds every unbound virtio device once loaded,
# and the [model 1af4:1050] sections below apply to every virtio-gpu.
DRIVER_OK = """#!/bin/sh
d=$(basename "$(readlink /sys/bus/pci/devices/$2/driver)")
echo "$1: $2 is on $d"
[ "$d" = virtio-pci ] || exit 4
exit 0
"""
DRIVER_FAIL = """#!/bin/sh
echo "scrub failed on $1"
exit 3
"""


def driver_conf(commands):
    # driver/module: a path through the new driver's link, there only once
    # the driver is bound (a module-built driver), to exercise the ready path.
    return ("[model 1af4:1050]\nscrub = driver\nscrub_driver = virtio-pci\nscrub_driver_ready = driver/module\n"
            "scrub_driver_ready_timeout_s = 20\n"
            f"scrub_commands = {commands}\nscrub_command_timeout_s = 30\n")


def test_scrub_driver_round_trip_through_virtio_pci(model_daemon, server):
    """gpu5 goes from vfio-pci to the host driver virtio-pci, the commands
    run there (one checks the driver link names virtio-pci), and it comes
    back to vfio-pci; then a command that exits 3 quarantines it, and it is
    back on vfio-pci all the same."""
    g, a = server.g, server.addr["gpu5"]
    g.sh("mkdir -p /lab/run")
    g.sh(f"cat > /lab/run/drv-ok <<'EOF'\n{DRIVER_OK}EOF\nchmod 755 /lab/run/drv-ok")
    g.sh(f"cat > /lab/run/drv-fail <<'EOF'\n{DRIVER_FAIL}EOF\nchmod 755 /lab/run/drv-fail")
    server.wait_settled("gpu5")
    assert server.sysfs("gpu5", "driver_override") == "vfio-pci"
    # Every virtio device is on vfio-pci (or has its override) by now: loading
    # virtio_pci takes none of them.
    g.sh("while read m; do insmod $m || exit 1; done < /lab/virtio-modules.txt")
    assert g.run("test -d /sys/bus/pci/drivers/virtio-pci")[0] == 0
    assert g.sh(f"basename $(readlink /sys/bus/pci/devices/{a}/driver)").strip() == "vfio-pci"

    restart_daemon(g, driver_conf("/lab/run/drv-ok first && /lab/run/drv-ok second"))
    s = clean_again(server, "gpu5", timeout=120)
    sc = step(s, "scrub")
    assert s["state"] == "sanitized", json.dumps(s, indent=1)
    ev = sc["evidence"]
    assert f"model 1af4:1050: scrub driver: {a} through virtio-pci" in ev, ev
    assert f"wrote '{a}' to sys/bus/pci/drivers/vfio-pci/unbind" in ev, ev
    assert re.search(r"virtio-pci ready after \d+ ms \(driver link, driver/module\)", ev), ev
    assert f"command 1 (/lab/run/drv-ok first {a}) exited 0 in " in ev, ev
    assert f"output: first: {a} is on virtio-pci" in ev, ev
    assert f"command 2 (/lab/run/drv-ok second {a}) exited 0 in " in ev, ev
    assert f"wrote '{a}' to sys/bus/pci/drivers/virtio-pci/unbind" in ev, ev
    assert f"{a} back on vfio-pci" in ev, ev
    # The run's hold of the group (taken at bind) is let go for the round
    # trip and taken again on the node vfio-pci creates on the way back.
    grp = g.sh(f"basename $(readlink /sys/bus/pci/devices/{a}/iommu_group)").strip()
    assert f"let go of /dev/vfio/{grp}: the host driver must own the device" in ev, ev
    assert ev.index(f"{a} back on vfio-pci") < ev.index(
        f"holding /dev/vfio/{grp} open across the rest of the clean-up"), ev
    assert f"/dev/vfio/{grp} held since the bind step" in step(s, "health")["evidence"], s
    assert g.sh(f"basename $(readlink /sys/bus/pci/devices/{a}/driver)").strip() == "vfio-pci"
    assert server.sysfs("gpu5", "driver_override") == "vfio-pci"

    restart_daemon(g, driver_conf("/lab/run/drv-ok first && /lab/run/drv-fail"))
    s = clean_again(server, "gpu5", timeout=120)
    assert s["state"] == "quarantined", json.dumps(s, indent=1)
    f = failed_step(s)
    assert f["name"] == "scrub", f
    ev = f["evidence"]
    assert f"command 1 (/lab/run/drv-ok first {a}) exited 0" in ev, ev
    assert f"command 2 (/lab/run/drv-fail {a}) exited 3, output: scrub failed on {a}" in ev, ev
    assert f"{a} back on vfio-pci" in ev, ev
    assert g.sh(f"basename $(readlink /sys/bus/pci/devices/{a}/driver)").strip() == "vfio-pci"
