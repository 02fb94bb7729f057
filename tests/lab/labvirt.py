"""What the libvirt lab guests share (tests/python/test_lab_libvirt.py, the
lab's own init; tests/python/test_lab_operator.py, systemd as PID 1): the
topology, the inner domains' XML, and Host, the booted guest seen as a
libvirt host with gpuwarden installed."""
import json
import re
import time

import lab
import rootfs

VIRSH = "virsh -q -c qemu:///system"


def unavailable():
    try:
        rootfs.check_available()
    except lab.LabUnavailable as e:
        return str(e)
    return None


def hostdev_xml(address):
    """The GPU as a vfio <hostdev>, libvirt's managed='yes' handling. rom bar
    off: the lab's ROM image is not code SeaBIOS could run."""
    dom, bus, rest = address.split(":")
    slot, fn = rest.split(".")
    return f"""<hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/></source>
      <rom bar='off'/>
    </hostdev>"""


def domain_xml(name, address):
    """A domain without an OS or a disk: QEMU (TCG) with the GPU as a vfio
    hostdev."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><tcg><tb-cache unit='MiB'>8</tb-cache></tcg></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    {hostdev_xml(address)}
    <memballoon model='none'/>
  </devices>
</domain>
"""


def slow_hook(d):
    """An operator's clean-up hook that holds the clean-up while
    <d>/lab-slow-<address> exists, and says when it is running (how a test
    makes a clean-up last long enough to race it, as a slow hook would)."""
    return f"""#!/bin/sh
touch {d}/lab-hook-$GW_DEVICE
while [ -e {d}/lab-slow-$GW_DEVICE ]; do sleep 0.2; done
exit 0
"""


def operator_conf(installed):
    """The packaged gpuwarden.conf with the operator's edit: manage the
    virtio-gpus (vendor 1af4)."""
    conf = (installed / "etc/gpuwarden/gpuwarden.conf").read_text()
    conf, n = re.subn(r"(?m)^vendors = .*$", "vendors = 1af4", conf)
    assert n == 1, "the packaged gpuwarden.conf has no [manage] vendors line"
    return conf


def settle(host, timeout):
    """The first clean-ups of the topology's GPUs done: three sanitized, gpu2
    (the ROM the kernel refuses) quarantined."""
    for q in ("gpu0", "gpu1", "gpu3"):
        host.wait_state(q, "sanitized", timeout=timeout)
    host.wait_state("gpu2", "quarantined", timeout=timeout)
    return host


def topology(tmp, memory_mb=1536):
    t = lab.Topology(memory_mb=memory_mb)
    rom = lab.valid_rom(tmp / "valid.rom")
    t.root_port("rp1").gpu("gpu0", romfile=rom)
    t.root_port("rp2").gpu("gpu1", romfile=rom)
    t.root_port("rp3").gpu("gpu2", romfile=lab.invalid_rom(tmp / "invalid.rom"))
    t.root_port("rp4").gpu("gpu3", romfile=rom)
    return t


class Host:
    """The booted guest: a libvirt host with gpuwarden installed."""

    def __init__(self, guest, tmp):
        self.g, self.tmp = guest, tmp
        self.addr = guest.pci_addresses()

    def sh(self, script, timeout=120):
        return self.g.sh(script, timeout)

    def virsh(self, args, check=True, timeout=180):
        rc, out = self.g.run(f"{VIRSH} {args}", timeout)
        if check and rc != 0:
            raise AssertionError(f"virsh {args}: exit {rc}\n{out}\n{self.logs()}")
        return rc, out

    # The daemon's log: the lab's service script writes it to /run/gwd.log;
    # under systemd it is in the journal (Host.gwd_log is replaced).
    gwd_log = "cat /run/gwd.log"
    # Where slow_hook()'s marks are (a hook writes there: inside the unit's
    # sandbox, /run/gpuwarden is the only writable place under /run).
    slow_dir = "/run"

    def logs(self):
        return self.g.run(f"{self.gwd_log} | tail -25; tail -10 /var/log/libvirt/libvirtd.log")[1]

    def define(self, name, qid):
        self.sh(f"cat > /tmp/{name}.xml <<'EOF'\n{domain_xml(name, self.addr[qid])}EOF")
        return f"/tmp/{name}.xml"

    def devices(self):
        rc, out = self.g.run("gpuwarden list -f json")
        assert rc == 0, out
        return {d["address"]: d for d in json.loads(out)}

    def show(self, qid):
        return json.loads(self.sh(f"gpuwarden show {self.addr[qid]} -f json"))

    def gate(self, qid, domain):
        """The daemon's answer to the hook's question, asked as the hook asks."""
        xml = domain_xml(domain, self.addr[qid])
        return self.g.run(f"cat <<'EOF' | gpuwarden hook qemu {domain} prepare begin -\n{xml}EOF")

    def wait(self, pred, what, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{json.dumps(self.devices(), indent=1)}\n"
                                     f"{self.logs()}")
            time.sleep(0.3)

    def wait_state(self, qid, state, timeout=60):
        a = self.addr[qid]

        def ok():
            d = self.devices().get(a)
            return d if d and d["state"] == state and not d["cleaning"] else None
        return self.wait(ok, f"{qid} ({a}) {state}", timeout)

    def audit(self, qid, since=0):
        recs = json.loads(self.sh(f"gpuwarden audit --device {self.addr[qid]} -f json"))
        return [r for r in recs if r["seq"] > since]

    def last_seq(self, qid):
        recs = self.audit(qid)
        return recs[-1]["seq"] if recs else 0

    def qemu_pid(self, domain):
        return int(self.sh(f"cat /run/libvirt/qemu/{domain}.pid"))

    def qemu_processes(self):
        return self.sh("for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null | grep qemu-system || true").split()

    def holds_group(self, pid, qid):
        group = self.show(qid)["iommu_group"]
        rc, _ = self.g.run(f"ls -l /proc/{pid}/fd | grep -q ' /dev/vfio/{group}$'")
        return rc == 0

    def driver(self, qid):
        return self.sh(f"basename $(readlink /sys/bus/pci/devices/{self.addr[qid]}/driver)").strip()

    def slow(self, qid, on):
        a, d = self.addr[qid], self.slow_dir
        self.sh(f"touch {d}/lab-slow-{a}; rm -f {d}/lab-hook-{a}" if on else f"rm -f {d}/lab-slow-{a}")

    def wait_hook_running(self, qid, timeout=60):
        a, d = self.addr[qid], self.slow_dir
        self.wait(lambda: self.g.run(f"test -e {d}/lab-hook-{a}")[0] == 0, f"the clean-up of {qid} in its hook",
                  timeout)


def cleaned_only_by_a_cleanup(records):
    """Every move to sanitized is a passing clean-up, every move to
    allocatable comes from sanitized: never clean without one."""
    for r in records:
        if r["to"] == "sanitized":
            assert r["event"] == "cleanup_passed", r
        if r["to"] == "allocatable":
            assert r["event"] == "published" and r["from"] == "sanitized", r


def events(records):
    return [r["event"] for r in records]
