"""The QEMU kernel lab: Debian's own kernel in qemu-system-x86_64 (TCG), machine
q35 with an emulated Intel IOMMU, a PCIe topology of QEMU devices, and the
project's binaries inside, so that the real kernel judges the host-facing code.

A scenario is a Topology (devices, plus the host-side files they need) and a
few assertions on a booted Guest:

    topo = Topology()
    topo.root_port("rp1").gpu("gpu0", romfile=valid_rom(tmp / "v.rom"))
    with Guest.boot(topo, tmp) as g:
        g.sh("ls /sys/kernel/iommu_groups")
        g.hmp("pcie_aer_inject_error gpu0 POISON_TLP")

The guest runs from an initramfs built here from the host's own files:
busybox-static, the kernel's vfio (and virtio) modules, the project's binaries
with the shared libraries they need, lspci/setpci and pci.ids, and lab-mmio.
The host drives the guest over a second serial port (a command channel, see
init.sh) and QEMU over QMP. Nothing here touches the host's own /sys.
"""

import base64
import glob
import json
import os
import pathlib
import re
import shutil
import socket
import stat
import subprocess
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
QEMU = "qemu-system-x86_64"
GUEST_GW = "/opt/gpuwarden"          # where the project's binaries sit in the guest

# Load order: each module after what it needs (modules.dep gives the rest).
# vfio_iommu_type1 backs the container gpuwardend opens for a VFIO device (bus
# reset, scrub); vfio asks for it with request_module(), which finds no
# modprobe in this guest.
VFIO_MODULES = ["vfio-pci", "vfio_iommu_type1"]
VIRTIO_MODULES = ["virtio_pci"]


STATS = {}


def record_stat(key, value):
    STATS[key] = value


class LabUnavailable(Exception):
    """qemu, the kernel or busybox is missing: the lab cannot run here."""


# ---- what the host provides -------------------------------------------------

def kernel():
    """(vmlinuz, release) of the newest Debian cloud kernel installed."""
    imgs = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"))
    if not imgs:
        raise LabUnavailable("no /boot/vmlinuz-*-cloud-amd64 (Debian package linux-image-cloud-amd64)")
    img = imgs[-1]
    release = os.path.basename(img)[len("vmlinuz-"):]
    if not os.path.isdir(f"/lib/modules/{release}"):
        raise LabUnavailable(f"/lib/modules/{release} missing")
    if not os.access(img, os.R_OK):
        raise LabUnavailable(f"{img} is not readable by this user")
    return img, release


def check_available():
    if not shutil.which(QEMU):
        raise LabUnavailable(f"{QEMU} not found (Debian package qemu-system-x86)")
    if not os.path.exists("/bin/busybox") or not _busybox_is_static():
        raise LabUnavailable("/bin/busybox is not busybox-static (Debian package busybox-static)")
    kernel()


def _busybox_is_static():
    try:
        p = subprocess.run(["ldd", "/bin/busybox"], capture_output=True, text=True)
        out = p.stdout + p.stderr
    except OSError:
        return False
    return "not a dynamic executable" in out


def module_closure(release, names):
    """Module files for `names` and their dependencies, in load order."""
    base = pathlib.Path(f"/lib/modules/{release}")
    deps = {}
    for line in (base / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {}
    for mod in deps:
        stem = os.path.basename(mod).split(".ko")[0]
        by_name[stem] = mod
        by_name[stem.replace("-", "_")] = mod
    order = []

    def visit(mod):
        if mod in order:
            return
        for d in reversed(deps[mod]):
            visit(d)
        order.append(mod)

    for n in names:
        if n not in by_name:
            raise LabUnavailable(f"module {n} not in {base}/modules.dep")
        visit(by_name[n])
    return [base / m for m in order]


def ldd_closure(binaries):
    """Absolute paths of the shared libraries the binaries need (and the loader)."""
    libs = set()
    for b in binaries:
        out = subprocess.run(["ldd", str(b)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            m = re.search(r"(/\S+)\s+\(0x", line)
            if m:
                libs.add(m.group(1))
    return sorted(libs)


# ---- the initramfs ------------------------------------------------------------

class Cpio:
    """A newc cpio archive, written by hand so the image does not depend on
    the host's cpio flavour and is the same from run to run."""

    def __init__(self):
        self.entries = {}   # path -> (mode, data)

    def dir(self, path):
        parts = pathlib.PurePosixPath(path).parts
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i]).lstrip("/")
            if p and p not in self.entries:
                self.entries[p] = (stat.S_IFDIR | 0o755, b"")

    def file(self, path, data, mode=0o644):
        path = path.lstrip("/")
        self.dir(os.path.dirname(path))
        self.entries[path] = (stat.S_IFREG | mode, data)

    def copy(self, src, dst=None, mode=None):
        src = pathlib.Path(src)
        real = src.resolve()
        data = real.read_bytes()
        self.file(str(dst or src), data, mode if mode is not None else (real.stat().st_mode & 0o777))

    def symlink(self, path, target):
        path = path.lstrip("/")
        self.dir(os.path.dirname(path))
        self.entries[path] = (stat.S_IFLNK | 0o777, target.encode())

    def write(self, out):
        with open(out, "wb") as f:
            ino = 1
            for path in sorted(self.entries):
                mode, data = self.entries[path]
                self._entry(f, ino, path, mode, data)
                ino += 1
            self._entry(f, 0, "TRAILER!!!", 0, b"")

    @staticmethod
    def _entry(f, ino, name, mode, data):
        nameb = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nameb), 0))
        f.write(hdr.encode() + nameb)
        f.write(b"\0" * ((4 - (110 + len(nameb)) % 4) % 4))
        f.write(data)
        f.write(b"\0" * ((4 - len(data) % 4) % 4))


def build_initramfs(out, build_dir, release, workdir):
    """The guest's root file system. Returns its path."""
    workdir = pathlib.Path(workdir)
    img = Cpio()
    img.copy("/bin/busybox", "bin/busybox", 0o755)
    applets = subprocess.run(["/bin/busybox", "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "bin/busybox":
            img.symlink(a, "/bin/busybox")
    img.copy(HERE / "init.sh", "init", 0o755)

    mods = module_closure(release, VFIO_MODULES + VIRTIO_MODULES)
    listed = []
    for m in mods:
        data = m.read_bytes()
        name = m.name
        if name.endswith(".xz"):
            import lzma
            data, name = lzma.decompress(data), name[:-3]
        img.file(f"lab/modules/{name}", data)
        listed.append(f"/lab/modules/{name}")
    # Loaded at boot: vfio only. virtio-pci waits for a scenario that wants a
    # host driver (it binds every virtio device it sees).
    vfio_only = [p for p in listed if "virtio" not in os.path.basename(p)]
    img.file("lab/modules.txt", ("\n".join(vfio_only) + "\n").encode())
    img.file("lab/virtio-modules.txt",
             ("\n".join(p for p in listed if "virtio" in os.path.basename(p)) + "\n").encode())

    mmio = workdir / "lab-mmio"
    subprocess.run(["cc", "-std=c17", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(mmio),
                    str(HERE / "lab_mmio.c")], check=True)
    bins = [pathlib.Path(build_dir) / "gpuwardend", pathlib.Path(build_dir) / "gpuwarden", mmio,
            pathlib.Path(shutil.which("lspci")), pathlib.Path(shutil.which("setpci"))]
    for b in bins:
        img.copy(b, f"{GUEST_GW}/{b.name}" if b.parent != pathlib.Path("/usr/bin") else str(b), 0o755)
    for lib in ldd_closure(bins):
        img.copy(lib, lib)
    # The build tree's libgpuwarden, where the binaries' RUNPATH looks first.
    for so in sorted(pathlib.Path(build_dir).glob("libgpuwarden.so*")):
        img.copy(so, str(so.resolve().parent / so.name))
    for ids in ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"):
        if os.path.exists(ids):
            img.copy(ids, ids)
    img.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    img.file("etc/group", b"root:x:0:\n")
    img.write(out)
    return out


# ---- ROM images -------------------------------------------------------------------

def valid_rom(path, size=65536, fill=b"gpuwarden lab rom "):
    """An option ROM the kernel accepts: 0x55AA, a pointer at 0x18 to a PCIR
    structure with the image length (512-byte units) and the last-image flag."""
    data = bytearray((fill * (size // len(fill) + 1))[:size])
    data[0:2] = b"\x55\xaa"
    data[2] = size // 512 if size // 512 < 256 else 0
    data[0x18:0x1a] = (0x40).to_bytes(2, "little")
    pcir = bytearray(0x18)
    pcir[0:4] = b"PCIR"
    pcir[0x0a:0x0c] = (0x18).to_bytes(2, "little")
    pcir[0x10:0x12] = (size // 512).to_bytes(2, "little")
    pcir[0x14] = 0            # code type: x86
    pcir[0x15] = 0x80         # last image
    data[0x40:0x40 + len(pcir)] = pcir
    pathlib.Path(path).write_bytes(bytes(data))
    return pathlib.Path(path)


def invalid_rom(path, size=65536):
    """Bytes without the 0x55AA signature: the kernel refuses to read them (EIO)."""
    data = bytes((i * 37 + 11) & 0xff for i in range(size))
    assert data[:2] != b"\x55\xaa"
    pathlib.Path(path).write_bytes(data)
    return pathlib.Path(path)


# ---- topologies ---------------------------------------------------------------------

class Port:
    def __init__(self, topo, bus):
        self.topo, self.bus = topo, bus

    def gpu(self, id, addr="0.0", model="virtio-gpu-pci", **props):
        """A display-class endpoint on this port (virtio-gpu-pci: 1af4:1050,
        class 0380; bochs-display: 1234:1111, hot-unpluggable)."""
        self.topo.device(model, id=id, bus=self.bus, addr=addr, **props)
        return self

    def device(self, model, **props):
        self.topo.device(model, bus=self.bus, **props)
        return self


class Topology:
    """QEMU -device lines and -object lines, with helpers for the shapes a GPU
    server has. Slots are numbered as they are added."""

    def __init__(self, memory_mb=768):
        self.args = []
        self.memory_mb = memory_mb
        self._chassis = 0
        self._slot = 1

    def device(self, model, **props):
        self.args += ["-device", model + _props(props)]

    def object(self, kind, **props):
        self.args += ["-object", kind + _props(props)]

    def _next_slot(self):
        self._slot += 1
        self._chassis += 1
        return self._slot, self._chassis

    def root_port(self, id, **props):
        slot, chassis = self._next_slot()
        self.device("pcie-root-port", id=id, bus="pcie.0", chassis=chassis, slot=chassis,
                    addr=f"{slot:x}.0", **props)
        return Port(self, id)

    def switch(self, id, n_ports, under):
        """x3130 upstream port under root port `under`, with n xio3130
        downstream ports (no ACS capability: their devices share a group)."""
        self.device("x3130-upstream", id=id, bus=under)
        ports = []
        for i in range(n_ports):
            _, chassis = self._next_slot()
            pid = f"{id}d{i}"
            self.device("xio3130-downstream", id=pid, bus=id, chassis=chassis, slot=chassis)
            ports.append(Port(self, pid))
        return ports

    def numa_nodes(self, n):
        """n NUMA nodes with the memory split evenly (expanders name theirs)."""
        each = self.memory_mb // n
        for i in range(n):
            self.object("memory-backend-ram", id=f"numa-mem{i}", size=f"{each}M")
            self.args += ["-numa", f"node,nodeid={i},memdev=numa-mem{i}"]

    def expander(self, id, numa_node, bus_nr):
        """A PCIe expander bridge (pxb-pcie: another host bridge, as a second
        socket's root complex) on `numa_node`, with one root port below it."""
        slot, chassis = self._next_slot()
        self.device("pxb-pcie", id=id, bus_nr=bus_nr, numa_node=numa_node, bus="pcie.0", addr=f"{slot:x}.0")
        _, chassis = self._next_slot()
        self.device("pcie-root-port", id=f"{id}rp", bus=id, chassis=chassis, slot=chassis, addr="0.0")
        return Port(self, f"{id}rp")

    def root_bus(self, addr):
        """A device straight on pcie.0 (no bridge of its own)."""
        return _RootBus(self, addr)

    def ivshmem(self, id, bus, addr, mem_path, size_mb=1):
        """ivshmem-plain whose BAR2 is `mem_path` on the host: the host sees
        what the guest writes into the device's memory."""
        self.object("memory-backend-file", id=f"{id}-mem", share="on", mem_path=str(mem_path),
                    size=f"{size_mb}M")
        self.device("ivshmem-plain", id=id, bus=bus, addr=addr, memdev=f"{id}-mem")


class _RootBus(Port):
    def __init__(self, topo, addr):
        super().__init__(topo, "pcie.0")
        self.addr = addr

    def gpu(self, id, addr=None, model="virtio-gpu-pci", **props):
        self.topo.device(model, id=id, bus="pcie.0", addr=addr or self.addr, **props)
        return self


# QEMU properties spelled with an underscore; every other keyword's "_" is "-".
_UNDERSCORE_PROPS = {"bus_nr", "numa_node"}


def _props(props):
    return "".join(f",{k if k in _UNDERSCORE_PROPS else k.replace('_', '-')}={_prop(v)}"
                   for k, v in props.items())


def _prop(v):
    if v is True:
        return "on"
    if v is False:
        return "off"
    return str(v).replace(",", ",,")


# ---- the guest ----------------------------------------------------------------------------

class GuestError(Exception):
    pass


class Guest:
    """A booted lab guest. Use Guest.boot() as a context manager."""

    BOOTS = []   # (name, seconds to the command channel) of every boot in this process

    def __init__(self, tmp):
        self.tmp = pathlib.Path(tmp)
        self.proc = None
        self.cmd = None
        self.buf = b""
        self.seq = 0
        self.qmp_sock = None
        self.qmp_buf = b""
        self.console = self.tmp / "console.log"

    @classmethod
    def boot(cls, topo, tmp, initramfs, name="guest", iommu=True, timeout=120, extra_cmdline="", disk=None,
             smp=1, init="/lab/init"):
        """Boot from `initramfs`, or, with `disk` (a raw ext4 image holding
        /lab/init, tests/lab/rootfs.py), from that disk on an NVMe
        controller: the kernel has NVMe and ext4 built in. `init=None` boots
        the disk's own /sbin/init (systemd, whose lab-cmd.service serves the
        command channel)."""
        g = cls(tmp)
        g._start(topo, initramfs, iommu, extra_cmdline, disk, smp, init)
        t0 = time.monotonic()
        try:
            g._wait_ready(timeout)
        except Exception:
            g.close()
            raise
        cls.BOOTS.append((name, time.monotonic() - t0))
        return g

    def _start(self, topo, initramfs, iommu, extra_cmdline, disk=None, smp=1, init="/lab/init"):
        vmlinuz, _ = kernel()
        self.cmd_path = self.tmp / "cmd.sock"
        self.qmp_path = self.tmp / "qmp.sock"
        for p in (self.cmd_path, self.qmp_path):
            if p.exists():
                p.unlink()
        # no_timer_check: on a loaded host TCG's timer can miss the kernel's
        # early IO-APIC check, which then panics ("timer doesn't work
        # through Interrupt-remapped IO-APIC"); seen with a load of 18 on 2 CPUs.
        cmdline = "console=ttyS0 panic=-1 quiet loglevel=4 pci=pcie_bus_perf no_timer_check"
        machine = "q35"
        dev = []
        if iommu:
            machine += ",kernel-irqchip=split"
            dev = ["-device", "intel-iommu,intremap=on"]
            cmdline += " intel_iommu=on"
        if disk:
            boot = ["-drive", f"file={disk},format=raw,if=none,id=labroot,cache=unsafe",
                    "-device", "nvme,drive=labroot,serial=labroot"]
            cmdline += " root=/dev/nvme0n1 rootfstype=ext4 rw" + (f" init={init}" if init else "")
        else:
            boot = ["-initrd", str(initramfs)]
        cmdline += (" " + extra_cmdline) if extra_cmdline else ""
        argv = [QEMU, "-machine", machine, "-accel", "tcg", "-m", str(topo.memory_mb), "-smp", str(smp),
                "-nodefaults", "-vga", "none", "-display", "none", "-no-reboot",
                "-kernel", vmlinuz] + boot + ["-append", cmdline,
                "-serial", f"file:{self.console}",
                "-chardev", f"socket,id=labcmd,path={self.cmd_path},server=on,wait=off",
                "-serial", "chardev:labcmd",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"] + dev + topo.args
        self.qemu_log = open(self.tmp / "qemu.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=self.qemu_log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (self.cmd_path.exists() and self.qmp_path.exists()):
            if self.proc.poll() is not None:
                raise GuestError(f"qemu exited {self.proc.returncode}: {(self.tmp / 'qemu.log').read_text()}\n"
                                 f"argv: {' '.join(argv)}")
            if time.monotonic() > deadline:
                raise GuestError("qemu did not create its sockets")
            time.sleep(0.05)
        if self.proc.poll() is not None:
            raise GuestError(f"qemu exited {self.proc.returncode}: {(self.tmp / 'qemu.log').read_text()}")
        self.cmd = socket.socket(socket.AF_UNIX)
        self.cmd.connect(str(self.cmd_path))
        self.qmp_sock = socket.socket(socket.AF_UNIX)
        self.qmp_sock.connect(str(self.qmp_path))
        self._qmp_read()                         # greeting
        self.qmp("qmp_capabilities")

    def _wait_ready(self, timeout):
        self._read_until(b"@@READY\n", timeout)

    def _read_until(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None):
                raise GuestError(f"guest: no {marker!r} within {timeout}s; console:\n{self.console_text()[-3000:]}")
            self.cmd.settimeout(min(left, 1.0))
            try:
                chunk = self.cmd.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise GuestError("guest command channel closed; console:\n" + self.console_text()[-3000:])
            self.buf += chunk
        i = self.buf.index(marker) + len(marker)
        head, self.buf = self.buf[:i], self.buf[i:]
        return head

    def console_text(self):
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return ""

    # -- commands in the guest --

    def run(self, script, timeout=60):
        """Run a shell script in the guest: (rc, output)."""
        self.seq += 1
        sid = str(self.seq)
        self.cmd.sendall(f"{sid} ".encode() + base64.b64encode(script.encode()) + b"\n")
        self._read_until(f"@@BEGIN {sid}\n".encode(), timeout)
        tail = self._read_until(f"@@END {sid} ".encode(), timeout)
        rest = self._read_until(b"\n", timeout)
        rc = int(rest.strip())
        body = tail[: -len(f"@@END {sid} ")]
        out = base64.b64decode(b"".join(body.split())).decode(errors="replace")
        return rc, out

    def sh(self, script, timeout=60):
        """run() that fails unless the script exits 0; returns the output."""
        rc, out = self.run(script, timeout)
        if rc != 0:
            raise GuestError(f"guest command failed ({rc}): {script}\n{out}")
        return out

    def read(self, path):
        return self.sh(f"cat {path}")

    # -- QEMU's monitor --

    def _qmp_read(self):
        while b"\n" not in self.qmp_buf:
            self.qmp_sock.settimeout(30)
            chunk = self.qmp_sock.recv(65536)
            if not chunk:
                raise GuestError("QMP closed")
            self.qmp_buf += chunk
        line, _, self.qmp_buf = self.qmp_buf.partition(b"\n")
        return json.loads(line)

    def qmp(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = {k.replace("_", "-") if k != "id" else k: v for k, v in arguments.items()}
        self.qmp_sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._qmp_read()
            if "event" in r:
                continue
            if "error" in r:
                raise GuestError(f"QMP {command}: {r['error']}")
            return r.get("return")

    def pci_addresses(self):
        """{QEMU id: guest PCI address} from QMP query-pci (firmware numbers
        the buses, so tests never hard-code them)."""
        out = {}

        def walk(devices):
            for d in devices:
                if d.get("qdev_id"):
                    out[d["qdev_id"]] = f"0000:{d['bus']:02x}:{d['slot']:02x}.{d['function']:x}"
                br = d.get("pci_bridge")
                if br and br.get("devices"):
                    walk(br["devices"])
        for bus in self.qmp("query-pci"):
            walk(bus["devices"])
        return out

    def hmp(self, line):
        """A human monitor command (e.g. pcie_aer_inject_error); its text."""
        return self.qmp("human-monitor-command", command_line=line)

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.cmd.sendall(b"0 " + base64.b64encode(b"echo o > /proc/sysrq-trigger") + b"\n")
                self.proc.wait(timeout=10)
            except Exception:
                pass
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for s in (self.cmd, self.qmp_sock):
            if s:
                s.close()
        if self.proc:
            self.qemu_log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
