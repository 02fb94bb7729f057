"""The files shipped in packaging/ agree with the code."""

import os
import pathlib
import subprocess

import pytest

from gwdaemon import build_dir

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_sample_config_is_what_the_daemon_prints():
    out = subprocess.run([str(build_dir() / "gpuwardend"), "--print-config"], check=True,
                         capture_output=True, text=True).stdout
    assert (ROOT / "packaging" / "gpuwarden.conf").read_text() == out


def test_sample_config_is_accepted_as_is(tmp_path):
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--config", str(ROOT / "packaging" / "gpuwarden.conf"),
                        "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("configuration ok"), r.stderr


def test_check_config_reports_a_bad_allowlist(tmp_path):
    allow = tmp_path / "allow"
    allow.write_text("10de:2230 nothex\n")
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--rom-allowlist", str(allow), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and f"{allow}:1" in r.stderr, r.stderr


@pytest.mark.parametrize("root", ["/", "//", "/etc/.."])
def test_simulated_backend_on_the_live_root_is_refused(root):
    """The simulator writes nothing: on the real host it would mark GPUs
    sanitized without a single write. A one-key mistake must not start."""
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--config", "/dev/null", "--host-backend", "simulated",
                        "--host-root", root, "--check-config"], capture_output=True, text=True)
    assert r.returncode == 2, r.stdout
    assert f"host_backend = simulated with host_root = {root} (the live host)" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["0", "601"])
def test_in_use_retry_out_of_range_is_refused(value):
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--config", "/dev/null", "--in-use-retry", value,
                        "--check-config"], capture_output=True, text=True)
    assert r.returncode == 2
    assert f"[cleanup] in_use_retry_s must be 1..600 (the longest wait), not {value}" in r.stderr, r.stderr


def test_simulated_backend_on_a_test_tree_is_accepted():
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--config", "/dev/null", "--host-backend", "simulated",
                        "--host-root", str(ROOT / "tests" / "fixtures" / "hosts" / "x299-3xa6000"),
                        "--check-config"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unknown_config_key_is_refused_with_its_location(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[daemon]\nhost_roots = /x\n")
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--config", str(conf)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "unknown option [daemon] host_roots" in r.stderr and str(conf) in r.stderr


def test_model_sections_are_read_and_checked(tmp_path):
    conf = tmp_path / "models.conf"
    conf.write_text("[model 10DE:2330]\nreset = flr+bus\nscrub = bar\nscrub_function = 0\nscrub_bar = 1\n"
                    "scrub_verify_fraction = 0.25\n\n[model 1af4:1050]\nreset = bus\n")
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--config", str(conf), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("configuration ok"), r.stderr


@pytest.mark.parametrize("section,line,why", [
    ("model 10de:2330", "reset = pm", "[model 10de:2330] reset: 'pm' is not auto, flr, bus or flr+bus"),
    ("model 10de:2330", "scrub = driver", "[model 10de:2330] sanitize policy: model 10de:2330: scrub_driver: "
     "required with scrub = driver"),
    ("model 10de:2330", "scrub = driver\nscrub_driver = nvidia",
     "[model 10de:2330] sanitize policy: model 10de:2330: scrub_commands: required with scrub = driver"),
    ("model 10de:2330", "scrub_driver = ../x", "[model 10de:2330] scrub_driver: '../x' is not a kernel driver name"),
    ("model 10de:2330", "scrub_commands = /bin/a && b",
     "[model 10de:2330] scrub_commands: command 2: 'b' is not an absolute path"),
    ("model 10de:2330", "scrub_command_timeout_s = 0",
     "[model 10de:2330] scrub_command_timeout_s: '0' is not a number of seconds"),
    ("model 10de:2330", "scrub = driver\nscrub_driver = nvidia\nscrub_command_timeout_s = 600\n"
     "scrub_commands = /bin/a", "scrub_command_timeout_s: the driver scrub may take 690 s"),
    ("model 10de:2330", "scrub_commands = /bin/a && && /bin/b",
     "[model 10de:2330] scrub_commands: command 2 is empty"),
    ("model 10de:2330", "scrub = zero", "[model 10de:2330] scrub: 'zero' is not none, bar or driver"),
    ("model 10de:2330", "scrub_function = 8", "[model 10de:2330] scrub_function: '8' is not a number from 0 to 7"),
    ("model 10de:2330", "scrub_bar = two", "[model 10de:2330] scrub_bar: 'two' is not a number from 0 to 5"),
    ("model 10de:2330", "scrub_verify_fraction = 1.5",
     "[model 10de:2330] scrub_verify_fraction: '1.5' is not a number with 0 < f <= 1"),
    ("model 10de:2330", "scrub_size = 4", "[model 10de:2330] unknown model setting 'scrub_size'"),
    ("model 10de", "scrub = bar", "[model 10de]: '10de' is not a GPU model"),
])
def test_check_config_names_a_bad_model_setting(tmp_path, section, line, why):
    conf = tmp_path / "bad.conf"
    conf.write_text(f"[{section}]\n{line}\n")
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--config", str(conf), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and why in r.stderr and str(conf) in r.stderr, r.stderr


def test_libvirt_hook_execs_the_cli():
    hook = (ROOT / "packaging" / "libvirt" / "hooks" / "qemu.d" / "gpuwarden").read_text()
    assert 'exec /usr/bin/gpuwarden hook qemu "$@"' in hook


def test_libvirt_hook_installs_into_qemu_d_executable_leaving_the_operators_qemu_hook(tmp_path):
    """libvirt >= 6.5 runs every executable in /etc/libvirt/hooks/qemu.d; the
    operator's own /etc/libvirt/hooks/qemu is never written."""
    dest = tmp_path / "dest"
    subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", "/usr"], check=True, capture_output=True,
                   env=dict(os.environ, DESTDIR=str(dest)))
    hook = dest / "etc/libvirt/hooks/qemu.d/gpuwarden"
    assert hook.is_file() and os.access(hook, os.X_OK)
    assert sorted(p.name for p in (dest / "etc/libvirt/hooks").iterdir()) == ["qemu.d"]
    assert "etc/libvirt/hooks/qemu.d/gpuwarden" in (DEBIAN / "gpuwarden.install").read_text().split()


def test_installed_library_builds_a_program_from_every_public_header(tmp_path):
    """What a C library user does: install, pkg-config, include every header
    together, link, run. Catches name clashes between headers, a header that
    does not stand alone, a missing Requires, and a wrong SONAME link."""
    # DESTDIR: the unit, the config and the libvirt hook install to absolute
    # paths (/lib/systemd, /etc), which --prefix alone would write on this
    # machine. pkg-config's sysroot maps the .pc file's /usr into the stage.
    stage = tmp_path / "stage"
    subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", "/usr"], check=True, capture_output=True,
                   env=dict(os.environ, DESTDIR=str(stage)))
    prefix = stage / "usr"
    headers = sorted(p.name for p in (prefix / "include" / "gpuwarden").glob("*.h"))
    assert {"common.h", "host.h", "client.h", "registry.h", "inventory.h", "sanitize.h"} <= set(headers)
    src = tmp_path / "user.c"
    src.write_text("".join(f"#include <gpuwarden/{h}>\n" for h in headers) + """
#include <stdio.h>
int main(void)
{
    gw_host_options o = GW_HOST_OPTIONS_INIT;
    o.root = "/nonexistent";
    gw_host *h = NULL;
    int r = gw_host_scan(&h, &o);
    printf("%s %d %s\\n", gw_version(), r, gw_error_message());
    return r < 0 ? 0 : 1;
}
""")
    libdir = next(p.parent for p in prefix.rglob("gpuwarden.pc"))
    env = dict(os.environ, PKG_CONFIG_PATH=str(libdir), PKG_CONFIG_SYSROOT_DIR=str(stage))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "gpuwarden"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    exe = tmp_path / "user"
    cc = subprocess.run(["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe)] + flags,
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], env=dict(env, LD_LIBRARY_PATH=str(libdir.parent)), capture_output=True,
                         text=True)
    assert run.returncode == 0 and "/nonexistent" in run.stdout, (run.stdout, run.stderr)


# ---- Debian source package (debian/, scripts/package, docs/packaging.md) ----

DEBIAN = ROOT / "debian"
PACKAGES = ["libgpuwarden0", "libgpuwarden-dev", "gpuwarden", "python3-gpuwarden-cyborg"]


def _need(*tools):
    """A missing Debian tool skips these tests loudly on a developer's machine
    and fails them under CI=true (scripts/bootstrap installs them all)."""
    import shutil
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        why = f"DEBIAN PACKAGING NOT CHECKED: {', '.join(missing)} missing (scripts/bootstrap installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def _control():
    paras = [p for p in (DEBIAN / "control").read_text().split("\n\n") if p.strip()]
    out = []
    for p in paras:
        fields, key = {}, None
        for line in p.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, v = line.partition(":")
                fields[key] = v.strip()
        out.append(fields)
    return out[0], out[1:]


def _rules_env(*names):
    """What debian/rules exports to the build (dh_auto_configure passes it to CMake)."""
    _need("make", "dpkg-buildflags", "dpkg-architecture")
    target = "gw-print-env:\n" + "".join(f"\t@echo '{n}='\"$${n}\"\n" for n in names)
    r = subprocess.run(["make", "-s", "-f", "debian/rules", "--eval", target, "gw-print-env"], cwd=ROOT,
                       capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                            if k not in ("CFLAGS", "LDFLAGS", "CPPFLAGS",
                                                                         "DEB_BUILD_OPTIONS")})
    assert r.returncode == 0, r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def test_debian_control_lists_the_policy_packages_each_with_an_install_file():
    source, binaries = _control()
    assert source["Source"] == "gpuwarden"
    assert "debhelper-compat (= 13)" in source["Build-Depends"]
    assert "@" in source["Maintainer"] and "localhost" not in source["Maintainer"]
    assert [b["Package"] for b in binaries] == PACKAGES
    for b in binaries:
        assert (DEBIAN / f"{b['Package']}.install").is_file(), b["Package"]
        assert b.get("Description", "").split("\n")[0], f"{b['Package']}: empty description"
    lib = binaries[0]
    assert lib["Section"] == "libs" and lib["Multi-Arch"] == "same"
    assert (DEBIAN / "libgpuwarden0.symbols").read_text().startswith("libgpuwarden.so.0 libgpuwarden0 ")
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    copyright = (DEBIAN / "copyright").read_text()
    assert copyright.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    assert "License: Apache-2.0" in copyright


def test_debian_dev_package_depends_on_every_dev_package_its_pc_file_requires():
    """pkg-config --cflags gpuwarden fails on a clean host unless every module
    of Requires and Requires.private is there: each -dev package that ships
    one of those .pc files is a dependency of libgpuwarden-dev."""
    _need("pkg-config", "dpkg-query")
    pc = (ROOT / "packaging" / "gpuwarden.pc.in").read_text()
    modules = []
    for line in pc.splitlines():
        if line.startswith(("Requires:", "Requires.private:")):
            modules += line.split(":", 1)[1].replace(",", " ").split()
    assert "jansson" in modules
    _, binaries = _control()
    depends = {d.strip().split()[0] for d in binaries[1]["Depends"].replace("\n", " ").split(",") if d.strip()}
    for m in modules:
        pcdir = subprocess.run(["pkg-config", "--variable=pcfiledir", m], capture_output=True, text=True,
                               check=True).stdout.strip()
        owner = subprocess.run(["dpkg-query", "-S", os.path.realpath(f"{pcdir}/{m}.pc")], capture_output=True,
                               text=True)
        if owner.returncode != 0:   # /lib vs /usr/lib on a merged-/usr host
            owner = subprocess.run(["dpkg-query", "-S", f"{pcdir}/{m}.pc"], capture_output=True, text=True,
                                   check=True)
        pkg = owner.stdout.split(":")[0]
        assert pkg in depends, f"{m}.pc comes from {pkg}, which libgpuwarden-dev does not depend on"


def _dlopen_notes(path):
    """The .note.dlopen metadata of an ELF file (https://systemd.io/ELF_DLOPEN_METADATA/):
    every FDO note of type 0x407c0c0a, its JSON descriptor decoded."""
    import json
    import struct
    import tempfile
    _need("objcopy")
    with tempfile.NamedTemporaryFile() as f:
        subprocess.run(["objcopy", "-O", "binary", "--only-section=.note.dlopen", str(path), f.name], check=True)
        data = pathlib.Path(f.name).read_bytes()
    out, at = [], 0
    while at + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from("<III", data, at)
        at += 12
        name = data[at:at + namesz]
        at += (namesz + 3) & ~3
        desc = data[at:at + descsz]
        at += (descsz + 3) & ~3
        assert name == b"FDO\0" and kind == 0x407C0C0A, (name, hex(kind))
        assert desc.endswith(b"\0"), desc
        out += json.loads(desc[:-1])
    return out


def test_debian_packages_depend_on_what_the_library_dlopens():
    """dh_shlibdeps sees only DT_NEEDED. libvirt is dlopen()ed on first use
    (agent/lib/libvirt_dl.h), named in the library's .note.dlopen instead:
    the package of each such soname is a dependency of gpuwarden (whose
    daemon watches libvirt) and a recommendation of libgpuwarden0, with a
    version, and the library does not link it."""
    _need("readelf", "dpkg-query")
    lib = build_dir() / "libgpuwarden.so"
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    notes = _dlopen_notes(lib)
    assert [n["feature"] for n in notes] == ["libvirt"], notes
    _, binaries = _control()
    fields = {b["Package"]: b for b in binaries}

    def names(field):
        return {d.strip().split()[0]: d.strip() for d in field.replace("\n", " ").split(",") if d.strip()}
    for note in notes:
        assert note["priority"] == "recommended" and note["description"], note
        for soname in note["soname"]:
            assert f"[{soname}]" not in needed, f"{lib} links {soname}"
            owner = subprocess.run(["dpkg-query", "-S", f"*/{soname}"], capture_output=True, text=True,
                                   check=True).stdout
            pkg = owner.split(":")[0]
            assert "(>= " in names(fields["gpuwarden"]["Depends"]).get(pkg, ""), f"gpuwarden: no versioned {pkg}"
            assert "(>= " in names(fields["libgpuwarden0"]["Recommends"]).get(pkg, ""), \
                f"libgpuwarden0: no versioned {pkg} in Recommends"


def test_debian_rules_hands_dpkg_buildflags_hardening_to_the_build():
    env = _rules_env("CFLAGS", "CPPFLAGS", "LDFLAGS", "DEB_BUILD_MAINT_OPTIONS")
    assert env["DEB_BUILD_MAINT_OPTIONS"] == "hardening=+all"
    assert "-fstack-protector-strong" in env["CFLAGS"] and "-fstack-clash-protection" in env["CFLAGS"]
    assert "-D_FORTIFY_SOURCE=2" in env["CPPFLAGS"]
    assert "-Wl,-z,relro" in env["LDFLAGS"] and "-Wl,-z,now" in env["LDFLAGS"]


def test_debian_install_files_claim_everything_cmake_installs(tmp_path):
    """What dh_missing would fail the package build on, found in a second:
    every file `cmake --install` writes belongs to one binary package, and
    every line of a debian/*.install file matches something."""
    import fnmatch
    dest = tmp_path / "dest"
    subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", "/usr"], check=True, capture_output=True,
                   env=dict(os.environ, DESTDIR=str(dest)))
    installed = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() or p.is_symlink())
    # The build directory is not configured by dh: its libdir is lib, not lib/<multiarch triplet>.
    patterns = []
    for pkg in PACKAGES:
        for line in (DEBIAN / f"{pkg}.install").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                patterns.append((pkg, line.split()[0].replace("/${DEB_HOST_MULTIARCH}", "")))
    unclaimed = [f for f in installed
                 if not any(fnmatch.fnmatch(f, p) or f.startswith(p + "/") for _, p in patterns)]
    assert not unclaimed, f"installed by CMake but in no debian/*.install: {unclaimed}"
    for pkg, p in patterns:
        assert any(fnmatch.fnmatch(f, p) or f.startswith(p + "/") for f in installed), f"{pkg}: {p} matches nothing"


def test_debian_maintainer_scripts_purge_the_state_directory():
    postrm = (DEBIAN / "gpuwarden.postrm").read_text()
    assert "#DEBHELPER#" in postrm and 'if [ "$1" = "purge" ]' in postrm and "rm -rf /var/lib/gpuwarden" in postrm
    rules = (DEBIAN / "rules").read_text()
    assert "dh_installsystemd -pgpuwarden gpuwardend.service" in rules


@pytest.mark.skipif(os.environ.get("GW_TEST_PACKAGE") != "1",
                    reason="opt-in (about 1 minute): GW_TEST_PACKAGE=1 builds the .debs with scripts/package")
def test_scripts_package_builds_lintian_clean_debs_that_unpack_where_expected(tmp_path):
    _need("dpkg-buildpackage", "dh", "lintian", "dpkg-deb")
    out = tmp_path / "debs"
    r = subprocess.run([str(ROOT / "scripts" / "package"), str(out)], capture_output=True, text=True,
                       env=dict(os.environ, GW_PACKAGE_NOCHECK="1"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "lintian: 0 errors" in r.stdout
    debs = {p.name.split("_")[0]: p for p in out.glob("*.deb")}
    assert set(PACKAGES) <= set(debs), sorted(debs)
    root = tmp_path / "root"
    for name in PACKAGES:
        subprocess.run(["dpkg-deb", "-x", str(debs[name]), str(root)], check=True)
    multiarch = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], capture_output=True, text=True,
                               check=True).stdout.strip()
    for f in ["usr/sbin/gpuwardend", "usr/bin/gpuwarden", "etc/gpuwarden/gpuwarden.conf",
              "lib/systemd/system/gpuwardend.service", f"usr/lib/{multiarch}/libgpuwarden.so.0",
              f"usr/lib/{multiarch}/pkgconfig/gpuwarden.pc", "usr/include/gpuwarden/common.h",
              "usr/lib/python3/dist-packages/gpuwarden_cyborg/driver.py", "usr/bin/gpuwarden-nova-reconciler"]:
        assert (root / f).exists(), f
    conffiles = subprocess.run(["dpkg-deb", "-I", str(debs["gpuwarden"]), "conffiles"], capture_output=True,
                               text=True, check=True).stdout
    assert "/etc/gpuwarden/gpuwarden.conf" in conffiles
    assert "/etc/libvirt/hooks/qemu.d/gpuwarden" in conffiles
    for d in ("tcp-endpoint.conf", "operator-hooks.conf"):
        assert (root / "usr/share/doc/gpuwarden/examples" / d).is_file(), d
    assert os.access(root / "etc/libvirt/hooks/qemu.d/gpuwarden", os.X_OK)
    unit = (root / "lib/systemd/system/gpuwarden-nova-reconciler.service").read_text()
    assert "/usr/local/bin" not in unit


# ---- gpuwardend.service's sandbox (docs/packaging.md, "The unit's sandbox") ----

UNIT = ROOT / "packaging" / "systemd" / "gpuwardend.service"
DROP_INS = ROOT / "packaging" / "systemd" / "examples"


def _security(tmp_path, *drop_ins):
    """systemd-analyze security --offline on the unit as installed (with the
    given drop-ins in gpuwardend.service.d): the overall exposure and each
    check's line."""
    import re
    import shutil
    _need("systemd-analyze")
    root = tmp_path / "root"
    unitdir = root / "etc" / "systemd" / "system"
    (unitdir / "gpuwardend.service.d").mkdir(parents=True)
    shutil.copy(UNIT, unitdir)
    for d in drop_ins:
        shutil.copy(DROP_INS / d, unitdir / "gpuwardend.service.d")
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}", "gpuwardend.service"],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for gpuwardend\.service: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    checks = {line[2:].split()[0]: line[0] for line in r.stdout.splitlines() if line[:1] and line[0] in "✓✗"}
    return float(m.group(1)), checks


def test_unit_exposure_is_at_most_4(tmp_path):
    exposure, checks = _security(tmp_path)
    assert exposure <= 4.0, exposure
    for name in ["ProtectSystem=", "CapabilityBoundingSet=~CAP_SYS_MODULE", "SystemCallArchitectures=",
                 "RestrictAddressFamilies=~AF_(INET|INET6)", "RestrictAddressFamilies=~AF_NETLINK",
                 "RestrictNamespaces=~user", "LockPersonality=", "MemoryDenyWriteExecute=", "UMask=",
                 "PrivateNetwork=", "ProtectKernelModules="]:
        assert checks.get(name) == "✓", (name, checks.get(name))


def test_unit_writes_only_where_the_daemon_does_and_explains_each_capability():
    import configparser
    text = UNIT.read_text()
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    cp.optionxform = str
    cp.read_string(text)
    svc = cp["Service"]
    assert svc["ProtectSystem"] == "strict"
    assert svc["ReadWritePaths"].split() == ["/sys/bus/pci", "/sys/devices", "/run/gpuwarden", "/var/lib/gpuwarden"]
    assert svc["LimitNOFILE"] == "65536"
    caps = svc["CapabilityBoundingSet"].split()
    assert caps and "CAP_SYS_ADMIN" in caps
    for cap in caps:
        assert f"#   {cap} " in text, f"{cap} has no comment saying why the daemon needs it"
    assert "/dev/vfio/vfio rw" in text and "char-vfio rw" in text


def test_unit_drop_ins_loosen_only_what_they_are_for(tmp_path):
    base, base_checks = _security(tmp_path / "base")
    tcp, tcp_checks = _security(tmp_path / "tcp", "tcp-endpoint.conf")
    assert tcp_checks["RestrictAddressFamilies=~AF_(INET|INET6)"] == "✗"
    assert tcp_checks["PrivateNetwork="] == "✗"
    assert tcp_checks["CapabilityBoundingSet=~CAP_SYS_MODULE"] == "✓"
    hooks, hook_checks = _security(tmp_path / "hooks", "operator-hooks.conf")
    assert hook_checks["MemoryDenyWriteExecute="] == "✗" and hook_checks["ProtectKernelModules="] == "✗"
    assert hook_checks["RestrictAddressFamilies=~AF_(INET|INET6)"] == "✓"
    assert base < tcp <= 4.0 and base < hooks <= 4.0, (base, tcp, hooks)
