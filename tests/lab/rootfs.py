"""A lab guest with a real userspace: a Debian root file system made with
debootstrap at test time, holding libvirtd with its qemu driver, Debian's
qemu-system-x86_64 and the project installed as packaging installs it
(`cmake --install` into a DESTDIR, the step dh_auto_install runs). The guest
boots Debian's kernel with that file system on an NVMe disk (the kernel has
NVMe and ext4 built in: no initramfs, no virtio driver in the guest's way).

    base = rootfs.base_rootfs(build_dir)            # cached: ~/.cache/gpuwarden-lab
    disk = rootfs.build_disk(tmp / "root.img", base, build_dir, release, tmp)
    with lab.Guest.boot(topo, tmp, None, disk=disk, name="libvirt") as g: ...

The base (debootstrap output plus the libvirt-qemu user) is cached under
~/.cache/gpuwarden-lab/rootfs-<hash of the package list and this recipe>, so
a second run reuses it; the per-run disk is a hard-linked copy of the base
with the project and the lab's files added, turned into an ext4 image by
`mkfs.ext4 -d` (no loop mount, no root needed for that part).
"""

import glob
import hashlib
import lzma
import os
import pathlib
import re
import shutil
import subprocess
import time

import lab

SUITE = "bookworm"
# What the guest runs. minbase has no kmod (modprobe), which libvirt runs to
# load vfio-pci when it is not loaded yet.
PACKAGES = ["libvirt-daemon", "libvirt-daemon-driver-qemu", "qemu-system-x86", "libvirt-clients", "kmod",
            "pci.ids"]
# Bump when the recipe below changes what a cached base holds.
RECIPE = "1"
CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "gpuwarden-lab"


def check_available():
    """Raises lab.LabUnavailable when a rootfs cannot be made here."""
    lab.check_available()
    for tool in ("debootstrap", "mkfs.ext4", "dpkg-query"):
        if not shutil.which(tool):
            raise lab.LabUnavailable(f"{tool} not found (Debian packages debootstrap, e2fsprogs)")
    if os.geteuid() != 0 and not _cached_bases():
        raise lab.LabUnavailable("debootstrap needs root and no rootfs is cached in " + str(CACHE))
    usage = subprocess.run(["mkfs.ext4", "-h"], capture_output=True, text=True).stderr
    if "[-d root-directory" not in usage:
        raise lab.LabUnavailable("mkfs.ext4 has no -d (e2fsprogs 1.43 or later)")


def _cached_bases():
    return glob.glob(str(CACHE / "rootfs-*" / ".complete"))


def debian_mirror():
    """The first Debian archive URI that apt on this machine uses for SUITE
    (deb822 .sources files or one-line .list files): the lab takes what the
    machine is configured with, never a hard-coded mirror."""
    found = []
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", pathlib.Path(f).read_text()):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            if SUITE in fields.get("suites", "").split() and "main" in fields.get("components", "").split():
                found += fields.get("uris", "").split()
    lists = sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    if os.path.exists("/etc/apt/sources.list"):
        lists.insert(0, "/etc/apt/sources.list")
    for f in lists:
        for line in pathlib.Path(f).read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
            if m and m.group(2) == SUITE and "main" in m.group(3).split():
                found.append(m.group(1))
    if not found:
        raise lab.LabUnavailable(f"no apt source for Debian {SUITE} main in /etc/apt (needed by debootstrap)")
    return found[0]


def runtime_packages(build_dir):
    """The Debian packages holding the shared libraries the project's binaries
    load (their `ldd` closure, less the project's own library): what the
    gpuwarden package's ${shlibs:Depends} names."""
    bins = [pathlib.Path(build_dir) / "gpuwardend", pathlib.Path(build_dir) / "gpuwarden"]
    libs = [lib for lib in lab.ldd_closure(bins) if "libgpuwarden" not in lib]
    # dpkg knows a file by the path its package ships (merged /usr: /lib/x
    # may be /usr/lib/x on disk): ask for every spelling at once.
    spellings = {}
    for lib in libs:
        real = os.path.realpath(lib)
        for path in (lib, real, re.sub(r"^/usr", "", real), "/usr" + real):
            spellings.setdefault(path, lib)
    p = subprocess.run(["dpkg-query", "-S"] + sorted(spellings), capture_output=True, text=True)
    pkgs, found = set(), set()
    for line in p.stdout.splitlines():
        pkg, _, path = line.partition(": ")
        if path.strip() in spellings:
            pkgs.update(x.strip().split(":")[0] for x in pkg.split(","))
            found.add(spellings[path.strip()])
    missing = sorted(set(libs) - found)
    if missing:
        raise lab.LabUnavailable(f"no Debian package holds {', '.join(missing)} (needed by the project's binaries)")
    return sorted(pkgs)


# The "operator host" variant (tests/python/test_lab_operator.py): systemd as
# PID 1, libvirt's units and AppArmor profiles (libvirt-daemon-system), the
# AppArmor tools that load them, and qemu-img for the domains' disks.
OPERATOR_PACKAGES = ["systemd-sysv", "dbus", "apparmor", "libvirt-daemon-system", "qemu-utils",
                     # polkitd (libvirt-daemon-system) depends on default-logind | logind: virtual
                     # packages, which debootstrap does not resolve; libpam-systemd provides both.
                     "libpam-systemd",
                     # Priority important, on every real host: its rules make /dev/vfio/vfio 0666.
                     # Without it the node is the kernel's 0600 and QEMU (libvirt-qemu) cannot
                     # open the container: "failed to open /dev/vfio/vfio: Permission denied".
                     "udev"]


def base_rootfs(build_dir, log=print, extra=()):
    """The cached base root file system (a directory), made when missing;
    `extra` packages (and what they depend on) on top of PACKAGES make a
    variant, cached under its own key."""
    pkgs = sorted(set(PACKAGES) | set(runtime_packages(build_dir)) | set(extra))
    key = hashlib.sha256(f"{RECIPE} {SUITE} {' '.join(pkgs)}".encode()).hexdigest()[:16]
    base = CACHE / f"rootfs-{key}"
    if (base / ".complete").exists():
        return base
    if os.geteuid() != 0:
        raise lab.LabUnavailable("debootstrap needs root")
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f"rootfs-{key}.tmp{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    mirror = debian_mirror()
    t0 = time.monotonic()
    log(f"lab rootfs: debootstrap {SUITE} from {mirror} with {', '.join(pkgs)}")
    p = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(pkgs)}", SUITE, str(work),
                        mirror], capture_output=True, text=True)
    if p.returncode != 0:
        _umount_below(work)
        raise RuntimeError(f"debootstrap failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    _umount_below(work)
    # libvirtd looks its built-in user up before it reads qemu.conf (which
    # makes it root here); Debian's libvirt-daemon-system creates it, where
    # the variant has that package.
    if subprocess.run(["chroot", str(work), "getent", "passwd", "libvirt-qemu"], capture_output=True).returncode:
        for argv in (["groupadd", "--system", "kvm"], ["groupadd", "--system", "libvirt-qemu"],
                     ["useradd", "--system", "--gid", "libvirt-qemu", "--groups", "kvm", "--home-dir",
                      "/var/lib/libvirt", "--shell", "/usr/sbin/nologin", "libvirt-qemu"]):
            subprocess.run(["chroot", str(work)] + argv, check=True, capture_output=True)
    for deb in (work / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    (work / ".packages").write_text("\n".join(pkgs) + "\n")
    (work / ".complete").write_text(f"{time.monotonic() - t0:.0f} s\n")
    os.rename(work, base)
    lab.record_stat("rootfs_debootstrap_seconds", time.monotonic() - t0)
    return base


def _umount_below(root):
    """debootstrap leaves /proc or /sys of the target mounted when it fails."""
    root = os.path.realpath(root)
    mounts = [line.split()[1] for line in pathlib.Path("/proc/self/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(root + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


# ---- the per-run disk ----------------------------------------------------------

class Stage:
    """A hard-linked copy of the base: every write unlinks first, so that the
    cached base is never written through a link."""

    def __init__(self, base, path):
        self.root = pathlib.Path(path)
        if self.root.exists():
            shutil.rmtree(self.root)
        # Hard links need one file system: a /tmp on tmpfs gets a full copy.
        if subprocess.run(["cp", "-al", str(base), str(self.root)], capture_output=True).returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            subprocess.run(["cp", "-a", str(base), str(self.root)], check=True)

    def write(self, p, data, mode=0o644):
        dst = self.resolve(pathlib.PurePosixPath(str(p)).parent) / pathlib.PurePosixPath(str(p)).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        dst.write_bytes(data if isinstance(data, bytes) else data.encode())
        os.chmod(dst, mode)

    def read(self, p):
        return self.resolve(p).read_text()

    def symlink(self, p, target):
        dst = self.resolve(pathlib.PurePosixPath(str(p)).parent) / pathlib.PurePosixPath(str(p)).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        os.symlink(target, dst)

    def resolve(self, p):
        """Path of guest path `p` in the stage, following the stage's own
        directory symlinks as the guest would (merged /usr: /lib is usr/lib)."""
        cur = self.root
        for part in pathlib.PurePosixPath(str(p).lstrip("/")).parts:
            nxt = cur / part
            hops = 0
            while nxt.is_symlink() and hops < 16:
                target = os.readlink(nxt)
                nxt = (self.root / target.lstrip("/")) if target.startswith("/") else (nxt.parent / target)
                hops += 1
            cur = pathlib.Path(os.path.normpath(nxt))
        return cur

    def overlay(self, tree):
        """Copy a directory tree over the stage, never into a linked file."""
        tree = pathlib.Path(tree)
        for src in sorted(tree.rglob("*")):
            rel = src.relative_to(tree)
            if src.is_dir() and not src.is_symlink():
                self.resolve(rel).mkdir(parents=True, exist_ok=True)
                continue
            dst = self.resolve(rel.parent) / rel.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists() or dst.is_symlink():
                dst.unlink()
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst)


QEMU_CONF = """# The lab's qemu driver settings (tests/lab/rootfs.py): no systemd, no
# cgroups, no namespaces, no virtlogd in this guest; QEMU runs as root.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""

LIBVIRTD_CONF = """log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def install_project(build_dir, dest):
    """`cmake --install` into DESTDIR=dest with prefix /usr: the files the
    debian/*.install lists pick from (dh_auto_install does the same)."""
    env = dict(os.environ, DESTDIR=str(dest))
    subprocess.run(["cmake", "--install", str(build_dir), "--prefix", "/usr"], env=env, check=True,
                   capture_output=True)


def build_disk(out, base, build_dir, release, workdir, files=None, size="3G", links=None, systemd=False):
    """The guest's root disk: the base, the project installed, the lab's init
    and vfio modules, `files` ({guest path: (bytes, mode)}) and `links`
    ({guest path: target}) on top. With `systemd` (a base with systemd-sysv,
    booted with init=None) the guest is set up as an operator's host: the
    vfio modules in /lib/modules with their modules.dep, loaded by
    systemd-modules-load; the services come from their units; no lab qemu.conf
    (the caller's `files` say what the guest needs)."""
    workdir = pathlib.Path(workdir)
    st = Stage(base, workdir / "stage")
    dest = workdir / "destdir"
    if dest.exists():
        shutil.rmtree(dest)
    install_project(build_dir, dest)
    st.overlay(dest)
    st.write("lab/init", (lab.HERE / "init.sh").read_bytes(), 0o755)
    if systemd:
        _install_modules(st, release, lab.VFIO_MODULES)
    else:
        st.write("lab/boot.sh", (lab.HERE / "boot-libvirt.sh").read_bytes(), 0o755)
        st.write("lab/svc", (lab.HERE / "lab-svc.sh").read_bytes(), 0o755)
        listed = []
        for m in lab.module_closure(release, lab.VFIO_MODULES):
            data, name = m.read_bytes(), m.name
            if name.endswith(".xz"):
                data, name = lzma.decompress(data), name[:-3]
            st.write(f"lab/modules/{name}", data)
            listed.append(f"/lab/modules/{name}")
        st.write("lab/modules.txt", "\n".join(listed) + "\n")
        st.write("lab/virtio-modules.txt", "")
        st.write("etc/libvirt/qemu.conf", QEMU_CONF)
    st.write("etc/libvirt/libvirtd.conf", LIBVIRTD_CONF)
    st.write("etc/hostname", "lab\n")
    for p, (data, mode) in (files or {}).items():
        st.write(p, data, mode)
    for p, target in (links or {}).items():
        st.symlink(p, target)
    out = pathlib.Path(out)
    if out.exists():
        out.unlink()
    subprocess.run(["truncate", "-s", size, str(out)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "gwlab", "-E", "root_owner=0:0", "-d", str(st.root),
                    str(out)], check=True, capture_output=True)
    shutil.rmtree(st.root)
    return out


def _install_modules(st, release, names):
    """The modules `names` need, at their own paths under /lib/modules, with
    a modules.dep made by the host's depmod for the stage (-b: it writes only
    there), and listed in /etc/modules-load.d as an operator lists vfio-pci."""
    src = pathlib.Path(f"/lib/modules/{release}")
    for m in lab.module_closure(release, names):
        st.write(f"lib/modules/{release}/{m.relative_to(src)}", m.read_bytes())
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src / f).exists():
            st.write(f"lib/modules/{release}/{f}", (src / f).read_bytes())
    depmod = shutil.which("depmod") or "/usr/sbin/depmod"
    subprocess.run([depmod, "-b", str(st.root), release], check=True, capture_output=True)
    st.write("etc/modules-load.d/gpuwarden-lab.conf", "\n".join(names) + "\n")


def stage_installed(build_dir, workdir):
    """The project's files as installed (DESTDIR), for tests that read what
    the package ships (the unit file)."""
    dest = pathlib.Path(workdir) / "installed"
    if dest.exists():
        shutil.rmtree(dest)
    install_project(build_dir, dest)
    return dest
