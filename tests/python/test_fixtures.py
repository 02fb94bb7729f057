"""The test host trees (tests/fixtures/hosts) are what the builder says, and
libpci reads them as it reads a real host.

Run: /work/main/.venv/bin/python -m pytest -q tests/python/test_fixtures.py
"""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HOSTS = FIXTURES / "hosts"
sys.path.insert(0, str(FIXTURES))
import build_hosts  # noqa: E402

ALL = sorted(build_hosts.SPECS)
GOOD = [h for h in ALL if not build_hosts.SPECS[h].get("broken")]
BROKEN = [h for h in ALL if build_hosts.SPECS[h].get("broken")]
KMOD_NOISE = "lspci: Unable to load libkmod resources: error -2"


def manifest(host):
    return json.loads((HOSTS / (host + ".json")).read_text())


def lspci(host, *args):
    return subprocess.run(
        ["lspci", "-A", "linux-sysfs", "-O", "sysfs.path=%s" % (HOSTS / host / "sys/bus/pci")] + list(args),
        capture_output=True, text=True, timeout=120)


def stderr_lines(res):
    return [l for l in res.stderr.splitlines() if l and l != KMOD_NOISE]


def test_builder_check_reproduces_committed_trees():
    res = subprocess.run([sys.executable, str(FIXTURES / "build_hosts.py"), "--check"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "hosts up to date"


def test_check_notices_a_changed_tree(tmp_path):
    """--check must fail when a single byte or link differs."""
    out = tmp_path / "hosts"
    build_hosts.main(["--out", str(out), "--host", "omen-3060"])
    a = tmp_path / "a"
    build_hosts.main(["--out", str(a), "--host", "omen-3060"])
    assert build_hosts.compare_trees(out, a) == []
    dev = a / "omen-3060/sys/bus/pci/devices/0000:01:00.0"
    (dev / "numa_node").write_text("0\n")
    link = a / "omen-3060/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/iommu_group"
    link.unlink()
    link.symlink_to("../../../../kernel/iommu_groups/2")
    dev = "omen-3060/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/"
    assert build_hosts.compare_trees(out, a) == [
        dev + "iommu_group: link ../../../../kernel/iommu_groups/1 vs ../../../../kernel/iommu_groups/2",
        dev + "numa_node: contents differ"]


@functools.lru_cache(maxsize=None)
def dump(name):
    return build_hosts.parse_dump(build_hosts.DUMPS / name)


def expected_config(dev):
    """The dump's bytes with the declared patches applied (each patch's old
    bytes must be what the dump holds there), or all-ones after enumeration."""
    src = dev["source"]
    dumped = dump(src["dump"])[src["bdf"]].config
    cfg = bytearray(dumped)
    for p in dev["patches"]:
        old, new = bytes.fromhex(p["old"]), bytes.fromhex(p["new"])
        assert bytes(cfg[p["offset"]:p["offset"] + len(old)]) == old, (dev["address"], p)
        cfg[p["offset"]:p["offset"] + len(new)] = new
    if dev["config_all_ones"]:
        return b"\xff" * len(cfg)
    return bytes(cfg)


@pytest.mark.parametrize("host", GOOD)
def test_lspci_reads_dump_config_bytes(host, tmp_path):
    m = manifest(host)
    res = lspci(host, "-D", "-xxxx")
    assert res.returncode == 0, res.stderr
    assert stderr_lines(res) == []
    out = tmp_path / "xxxx.txt"
    out.write_text(res.stdout)
    seen = build_hosts.parse_dump(out)
    assert sorted(seen) == sorted(d["address"] for d in m["devices"])
    checked = 0
    for dev in m["devices"]:
        if dev["source"] is None:       # synthesized from -nn/-t or -vvv facts only: no dump bytes
            assert dev["synthesized"]
            assert len(seen[dev["address"]].config) == dev["config_size"] == 256
            continue
        assert bytes(seen[dev["address"]].config) == expected_config(dev), dev["address"]
        checked += 1
    # sm4029: two root ports; hgx16: 20 ConnectX-7 and 12 NVSwitch functions
    assert len(m["devices"]) - checked == {"sm4029-8xrtx5000": 2, "hgx16": 32}.get(host, 0)


def test_patches_are_only_acs_and_declared_variants():
    """Only the boot-time ACS enable, a variant's change and synth64's and
    hgx16's bus renumbering touch config bytes; the untouched hosts equal the dump."""
    for host in GOOD:
        for dev in manifest(host)["devices"]:
            for p in dev["patches"]:
                assert p["why"].startswith(("boot: ", "variant: ", "synth64: ", "hgx: ")), (host, p)
    for host in ("omen-3060", "ats-on", "sm4029-8xrtx5000"):
        assert all(d["patches"] == [] for d in manifest(host)["devices"]), host
    x299 = {d["address"]: d["patches"] for d in manifest("x299-3xa6000")["devices"] if d["patches"]}
    assert sorted(x299) == ["0000:00:1b.4", "0000:00:1c.2", "0000:00:1d.0", "0000:00:1d.2",
                            "0000:16:00.0", "0000:18:08.0", "0000:18:10.0", "0000:64:00.0",
                            "0000:66:08.0", "0000:66:10.0"]
    assert x299["0000:66:08.0"] == [{"offset": 0xF2A, "old": "0000", "new": "1d00",
                                     "why": "boot: pci_std_enable_acs (SV|RR|CR|UF present in ACS Cap)"}]
    assert x299["0000:00:1c.2"][0]["offset"] == 0x148       # SPT/UPT quirk: dword at ACS+8


@pytest.mark.parametrize("host", GOOD)
def test_lspci_vvv_reads_whole_tree(host):
    res = lspci(host, "-vvv")
    assert res.returncode == 0, res.stderr
    assert stderr_lines(res) == []
    m = manifest(host)
    assert res.stdout.count("\n\n") == len(m["devices"])


def resolve(link):
    return os.path.realpath(link)


@pytest.mark.parametrize("host", GOOD)
def test_bus_links_resolve_into_devices(host):
    root = HOSTS / host
    devdir = root / "sys/bus/pci/devices"
    names = sorted(os.listdir(devdir))
    assert names == sorted(d["address"] for d in manifest(host)["devices"])
    for n in names:
        link = devdir / n
        assert link.is_symlink()
        assert os.readlink(link).startswith("../../../devices/pci")
        target = Path(resolve(link))
        assert target.is_dir(), n
        assert target.name == n
        assert str(target).startswith(str((root / "sys/devices").resolve()))
        assert (target / "config").is_file()


@pytest.mark.parametrize("host", GOOD)
def test_nesting_follows_bus_ranges(host):
    """A function's parent directory is the bridge whose secondary bus it sits on."""
    root = HOSTS / host
    for dev in manifest(host)["devices"]:
        target = Path(resolve(root / "sys/bus/pci/devices" / dev["address"]))
        parent = target.parent.name
        if dev["parent"] is None:
            assert parent == "pci" + dev["address"][:7]
        else:
            assert parent == dev["parent"]
            sec = int((target.parent / "secondary_bus_number").read_text())
            assert sec == int(dev["address"][5:7], 16)


@pytest.mark.parametrize("host", GOOD)
def test_iommu_groups_symmetric(host):
    root = HOSTS / host
    groups = root / "sys/kernel/iommu_groups"
    by_link = {}
    for dev in sorted(os.listdir(root / "sys/bus/pci/devices")):
        d = Path(resolve(root / "sys/bus/pci/devices" / dev))
        g = Path(resolve(d / "iommu_group"))
        assert g.parent == groups.resolve(), dev
        assert Path(resolve(g / "devices" / dev)) == d
        by_link.setdefault(g.name, set()).add(dev)
    listed = {}
    for g in os.listdir(groups):
        assert (groups / g / "type").read_text() == "DMA-FQ\n"
        for dev in os.listdir(groups / g / "devices"):
            target = Path(resolve(groups / g / "devices" / dev))
            assert Path(resolve(target / "iommu_group")).name == g
            listed.setdefault(g, set()).add(dev)
    assert listed == by_link
    m = manifest(host)
    assert {str(i): set(v) for i, v in enumerate(m["groups"])} == listed


@pytest.mark.parametrize("host", GOOD)
def test_driver_links_symmetric(host):
    root = HOSTS / host
    drivers = root / "sys/bus/pci/drivers"
    m = {d["address"]: d["driver"] for d in manifest(host)["devices"]}
    for dev, drv in m.items():
        d = Path(resolve(root / "sys/bus/pci/devices" / dev))
        if drv is None:
            assert not (d / "driver").exists()
            continue
        assert Path(resolve(d / "driver")) == (drivers / drv).resolve()
        assert Path(resolve(drivers / drv / dev)) == d
        for f in ("bind", "unbind", "new_id"):
            assert (drivers / drv / f).is_file()
    assert (drivers / "vfio-pci/bind").is_file()
    assert (root / "sys/bus/pci/drivers_probe").is_file()
    assert (root / "sys/bus/pci/rescan").is_file()


def read(host, bdf, name):
    return (HOSTS / host / "sys/bus/pci/devices" / bdf / name).read_text()


def test_x299_gpu_attributes():
    h, g = "x299-3xa6000", "0000:67:00.0"
    assert read(h, g, "vendor") == "0x10de\n"
    assert read(h, g, "device") == "0x2230\n"
    assert read(h, g, "subsystem_vendor") == "0x10de\n"
    assert read(h, g, "subsystem_device") == "0x1459\n"
    assert read(h, g, "class") == "0x030000\n"
    assert read(h, g, "revision") == "0xa1\n"
    assert read(h, g, "numa_node") == "0\n"
    assert read(h, g, "local_cpulist") == "0-35\n"
    assert read(h, g, "local_cpus") == "f,ffffffff\n"
    assert read(h, g, "driver_override") == "(null)\n"
    assert read(h, g, "reset_method") == "flr\n"
    assert read(h, g, "current_link_speed") == "2.5 GT/s PCIe\n"
    assert read(h, g, "current_link_width") == "16\n"
    assert read(h, g, "max_link_speed") == "16.0 GT/s PCIe\n"   # LnkCap2 vector, not LnkCap
    assert read(h, g, "max_link_width") == "16\n"
    assert read(h, g, "modalias") == "pci:v000010DEd00002230sv000010DEsd00001459bc03sc00i00\n"
    assert read(h, g, "enable") == "0\n"
    res = read(h, g, "resource").splitlines()
    assert len(res) == 13
    # dump: Region 1 c0000000 64-bit pref 256M, Region 5 I/O b000 128, ROM d8000000 512K
    assert res[0] == "0x00000000d7000000 0x00000000d7ffffff 0x0000000000040200"
    assert res[1] == "0x00000000c0000000 0x00000000cfffffff 0x000000000014220c"
    assert res[2] == "0x0000000000000000 0x0000000000000000 0x0000000000000000"
    assert res[5] == "0x000000000000b000 0x000000000000b07f 0x0000000000040101"
    assert res[6] == "0x00000000d8000000 0x00000000d807ffff 0x0000000000046200"
    rom = (HOSTS / h / "sys/bus/pci/devices" / g / "rom").read_bytes()
    assert rom[:2] == b"\x55\xaa" and len(rom) == 128 * 1024 and rom[0x40:0x44] == b"PCIR"
    assert sum(rom[:0x10000]) % 256 == 0
    assert read(h, g, "aer_dev_correctable").splitlines()[-1] == "TOTAL_ERR_COR 0"
    assert read(h, g, "aer_dev_fatal").splitlines()[0] == "Undefined 0"
    assert read(h, "0000:68:00.0", "boot_vga") == "1\n"          # shadow ROM at c0000
    assert read(h, g, "boot_vga") == "0\n"
    sw = read(h, "0000:66:08.0", "resource").splitlines()
    assert len(sw) == 17
    assert not (HOSTS / h / "sys/bus/pci/devices/0000:67:00.1/boot_vga").exists()


def test_cliques_groups_and_verdicts():
    m = {h: manifest(h) for h in GOOD}
    assert m["x299-3xa6000"]["cliques"] == [["0000:67:00.0", "0000:68:00.0"]]
    assert m["sm4029-8xrtx5000"]["cliques"] == [
        ["0000:1a:00.0", "0000:1c:00.0", "0000:1d:00.0", "0000:1e:00.0"],
        ["0000:3d:00.0", "0000:3f:00.0", "0000:40:00.0", "0000:41:00.0"]]
    assert len(m["synth64"]["cliques"]) == 16
    assert all(len(c) == 4 for c in m["synth64"]["cliques"])
    assert len(m["synth64"]["gpus"]) == 64
    assert sorted({g["numa_node"] for g in m["synth64"]["gpus"]}) == [0, 1]
    omen = m["omen-3060"]["gpus"][0]
    assert [x["address"] for x in omen["group_members"]] == ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"]
    assert omen["group_members"][2]["driver"] == "snd_hda_intel"
    # the HDA function on snd_hda_intel: VFIO refuses the group until it is on vfio-pci
    assert (omen["acs_path_ok"], omen["group_viable"]) == (False, False)
    g67 = {g["address"]: g for g in m["acs-off"]["gpus"]}["0000:67:00.0"]
    assert [x["address"] for x in g67["group_members"]] == ["0000:66:08.0", "0000:67:00.0", "0000:67:00.1"]
    assert g67["acs_path_ok"] is False
    root = {g["address"]: g for g in m["acs-off-root"]["gpus"]}
    assert root["0000:67:00.0"]["iommu_group"] == root["0000:68:00.0"]["iommu_group"]
    assert root["0000:67:00.0"]["group_viable"] is False
    ats = {g["address"]: g for g in m["ats-on"]["gpus"]}
    assert ats["0000:00:02.0"]["ats"] == {"present": True, "enabled": True}
    assert ats["0000:00:02.0"]["group_viable"] is False      # the host's display, on i915
    assert ats["0000:02:00.0"]["group_viable"] is True
    assert ats["0000:02:00.0"]["ats"] == {"present": False, "enabled": False}
    sm = m["sm4029-8xrtx5000"]["gpus"]
    assert all(not g["acs_path_ok"] and not g["group_viable"] for g in sm)


def test_hgx16_shape_and_verdicts():
    """The 16-GPU HGX host: per socket s four stacks (root port R = 0x80*s +
    0x10 + 0x18*k, switch R+1, GPUs R+3 and R+4 with NICs R+5, R+6 and NVMe
    R+7, R+8 behind the same switch), an NVSwitch tray at 0x80*s + 0x70;
    expected verdicts from that layout, checked against the tree's files."""
    m = manifest("hgx16")
    root = HOSTS / "hgx16"
    devs = {d["address"]: d for d in m["devices"]}
    assert 550 <= len(devs) <= 650
    assert len(m["gpus"]) == 16
    stacks = [(s, 0x80 * s + 0x10 + 0x18 * k) for s in (0, 1) for k in range(4)]
    assert m["cliques"] == [["0000:%02x:00.0" % (r + 3), "0000:%02x:00.0" % (r + 4)] for s, r in stacks]
    for s, r in stacks:
        usp = "0000:%02x:00.0" % (r + 1)
        below = {b: devs[b]["class"][:4] for b in devs if devs[b]["parent"] and devs[devs[b]["parent"]]["parent"] == usp}
        assert sorted(below.values()) == ["0108", "0108", "0200", "0200", "0300", "0300", "0403", "0403"], usp
        for i in (0, 1):
            g = "0000:%02x:00.0" % (r + 3 + i)
            gpu = {x["address"]: x for x in m["gpus"]}[g]
            assert (gpu["numa_node"], gpu["acs_path_ok"], gpu["group_viable"]) == (s, True, True)
            assert [x["address"] for x in gpu["group_members"]] == [g, g[:-1] + "1"]
            # the tree says the same: NUMA by root bus, the group's members
            assert read("hgx16", g, "numa_node") == "%d\n" % s
            group = os.path.basename(os.readlink(root / "sys/bus/pci/devices" / g / "iommu_group"))
            assert sorted(os.listdir(root / "sys/kernel/iommu_groups" / group / "devices")) == [g, g[:-1] + "1"]
    nvswitch = [d for d in devs.values() if d["class"] == "068000" and d["vendor_id"] == "10de"]
    cx7 = [d for d in devs.values() if (d["vendor_id"], d["device_id"]) == ("15b3", "1021")]
    assert (len(nvswitch), len(cx7)) == (12, 20)
    for d in devs.values():     # NUMA by root bus everywhere
        assert d["numa_node"] == (0 if int(d["address"][5:7], 16) < 0x80 else 1), d["address"]
    assert read("hgx16", nvswitch[0]["address"], "class") == "0x068000\n"
    assert read("hgx16", cx7[0]["address"], "max_link_speed") == "32.0 GT/s PCIe\n"


def test_allones_keeps_cached_attributes():
    h, g = "allones", "0000:68:00.0"
    cfg = (HOSTS / h / "sys/bus/pci/devices" / g / "config").read_bytes()
    assert cfg == b"\xff" * 4096
    assert read(h, g, "vendor") == "0x10de\n"
    assert read(h, g, "device") == "0x2230\n"
    assert read(h, g, "class") == "0x030000\n"
    assert read(h, g, "current_link_speed") == "Unknown\n"
    assert read(h, g, "current_link_width") == "63\n"


def test_sm4029_synthesized_root_ports():
    for bdf, sec, sub in (("0000:17:00.0", 0x18, 0x1e), ("0000:3a:00.0", 0x3b, 0x41)):
        cfg = (HOSTS / "sm4029-8xrtx5000/sys/bus/pci/devices" / bdf / "config").read_bytes()
        assert len(cfg) == 256
        assert cfg[0:4] == bytes.fromhex("86803020")
        assert cfg[0x19:0x1b] == bytes([sec, sub])
        assert cfg[0x40] == 0x10 and cfg[0x42] == 0x42      # PCIe v2, root port
        assert read("sm4029-8xrtx5000", bdf, "max_link_width") == "255\n"


# libpci 3.9's reaction to each broken tree (what the discovery module must survive)

def test_broken_vendor_is_fatal_in_libpci():
    res = lspci("broken-vendor", "-vvv")
    assert res.returncode == 1
    assert stderr_lines(res) == ["lspci: Cannot open %s/sys/bus/pci/devices/0000:01:00.0/vendor: "
                                 "No such file or directory" % (HOSTS / "broken-vendor")]


@pytest.mark.parametrize("host,name", [("broken-entry", "README"), ("broken-bdf", "0000:zz:00.0")])
def test_broken_entry_is_fatal_in_libpci(host, name):
    res = lspci(host, "-vvv")
    assert res.returncode == 1
    assert res.stdout == ""
    assert stderr_lines(res) == ["lspci: sysfs_scan: Couldn't parse entry name " + name]


def test_broken_numa_is_silently_zero_in_libpci():
    assert read("broken-numa", "0000:01:00.0", "numa_node") == "banana\n"
    res = lspci("broken-numa", "-vvv", "-s", "01:00.0")
    assert res.returncode == 0
    assert "\tNUMA node: 0\n" in res.stdout       # strtol("banana") == 0: libpci does not notice


def test_broken_config_reads_without_config_in_libpci():
    cfg = (HOSTS / "broken-config/sys/bus/pci/devices/0000:01:00.0/config").read_bytes()
    assert len(cfg) == 10
    res = lspci("broken-config", "-xxx", "-s", "01:00.0")
    assert res.returncode == 0
    assert "WARNING: Cannot show hex-dump of the config space" in res.stdout
    res = lspci("broken-config", "-vvv", "-s", "01:00.0")
    assert res.returncode == 0
    assert "Capabilities" not in res.stdout


def test_broken_group_link_is_silently_absent_in_libpci():
    link = HOSTS / "broken-group/sys/bus/pci/devices/0000:01:00.0/iommu_group"
    assert os.readlink(link) == "../../../../kernel/iommu_groups/99"
    assert not link.exists()
    res = lspci("broken-group", "-vvv", "-s", "01:00.0")
    assert res.returncode == 0
    assert "IOMMU group" not in res.stdout        # realpath() fails: no group, no error
    res = lspci("broken-group", "-vvv", "-s", "01:00.1")
    assert "\tIOMMU group: 1\n" in res.stdout


def test_fixture_size():
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file() and not p.is_symlink())
    assert total < 15 * 1024 * 1024, total
