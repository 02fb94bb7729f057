"""`gpuwarden discover --json` against lspci on every test host.

For each host tree under tests/fixtures/hosts/ (and the live host, read-only), the facts that
both tools show must agree: ids, class, NUMA node, IOMMU group, bound driver, LnkSta speed and
width, LnkCap width and the highest speed of LnkCap2's vector (else LnkCap's: the kernel's
max_link_speed rule), FLReset, ATS enable, the ACS capability and control bits of every bridge on the GPU's
upstream path, the port types, the Device Serial Number. lspci is pciutils' own reader
(`lspci -A linux-sysfs -O sysfs.path=<root>/sys/bus/pci -vvv -D -nn`), parsed from its text.

Broken hosts (their manifest says "broken"): lspci itself dies on most of them, so the test
asserts discover's exact error text and exit code instead, and runs the ASan build's CLI on
them when build-asan exists.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
HOSTS_DIR = TOP / "tests" / "fixtures" / "hosts"
BUILD = pathlib.Path(os.environ.get("GW_BUILD_DIR", TOP / "build"))
ASAN_BUILD = pathlib.Path(os.environ.get("GW_ASAN_BUILD_DIR", TOP / "build-asan"))
CLI = BUILD / "gpuwarden"


def host_names():
    if not HOSTS_DIR.is_dir():
        return []
    return sorted(p.name for p in HOSTS_DIR.iterdir() if (p / "sys" / "bus" / "pci").is_dir())


def manifest(name):
    p = HOSTS_DIR / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else {}


def is_broken(name):
    return bool(manifest(name).get("broken")) or name.startswith("broken-")


GOOD = [n for n in host_names() if not is_broken(n)]
BROKEN = [n for n in host_names() if is_broken(n)]


def discover(root, cli=CLI, env=None):
    p = subprocess.run([str(cli), "discover", "--json", "--host-root", str(root)],
                       capture_output=True, text=True, env=env)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


# ---------------------------------------------------------------- lspci text

HEADER = re.compile(r"^([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) .*? \[([0-9a-f]{4})\]: (.*)$")
IDS = re.compile(r"\[([0-9a-f]{4}):([0-9a-f]{4})\]")
LINK = re.compile(r"Speed ([0-9.]+)GT/s.*?, Width x(\d+)")
PORT_TYPES = {
    "Endpoint": "endpoint", "Legacy Endpoint": "legacy_endpoint", "Root Port": "root_port",
    "Upstream Port": "upstream", "Downstream Port": "downstream",
    "PCI-Express to PCI/PCI-X Bridge": "pcie_to_pci", "PCI/PCI-X to PCI-Express Bridge": "pci_to_pcie",
    "Root Complex Integrated Endpoint": "rc_endpoint", "Root Complex Event Collector": "rc_event_collector",
}
ACS_BITS = ["SrcValid", "TransBlk", "ReqRedir", "CmpltRedir", "UpstreamFwd", "EgressCtrl", "DirectTrans"]


def acs_bits(text):
    v = 0
    for i, name in enumerate(ACS_BITS):
        m = re.search(name + r"([+-])", text)
        assert m, f"ACS flag {name} missing in {text!r}"
        v |= (m.group(1) == "+") << i
    return v


def parse_lspci(text):
    """{bdf: facts} from `lspci -vvv -D -nn` text."""
    devs, cur, section, cap = {}, None, None, None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            rest = m.group(3).split(" (rev ")[0]
            ids = IDS.findall(rest)
            cur = devs.setdefault(m.group(1), {
                "class": m.group(2), "vendor": ids[-1][0], "device": ids[-1][1],
                "numa": None, "group": None, "driver": None, "caps_read": False,
                "port_type": None, "express": False, "lnkcap": None, "lnkcap2": None, "lnksta": None,
                "flr": None,
                "ats": None, "acs_cap": None, "acs_ctl": None, "dsn": None})
            section = cap = None
            continue
        if cur is None or not line.strip():
            continue
        s = line.strip()
        if line.startswith("\t") and not line.startswith("\t\t"):
            cap = None
            if s.startswith("NUMA node:"):
                cur["numa"] = int(s.split(":")[1])
            elif s.startswith("IOMMU group:"):
                cur["group"] = s.split(":")[1].strip()
            elif s.startswith("Kernel driver in use:"):
                cur["driver"] = s.split(":", 1)[1].strip()
            elif s.startswith("Capabilities: ["):
                cur["caps_read"] = True
                body = s.split("] ", 1)[1]
                if body.startswith("Express"):
                    cur["express"] = True
                    kind = re.sub(r"^Express \(v\d\) ", "", body).split(",")[0]
                    kind = re.sub(r" \(Slot[+-]\)$", "", kind)
                    cur["port_type"] = PORT_TYPES.get(kind, kind)
                    cap = "exp"
                elif body.startswith("Address Translation Service"):
                    cap = "ats"
                elif body.startswith("Access Control Services"):
                    cap = "acs"
                elif body.startswith("Device Serial Number"):
                    cur["dsn"] = body.split()[-1]
            continue
        if line.startswith("\t\t\t"):
            s = section + " " + s if section else s
        else:
            section = s.split(":")[0]
        if cap == "exp":
            if section == "DevCap" and "FLReset" in s:
                cur["flr"] = "FLReset+" in s
            elif section == "LnkCap" and cur["lnkcap"] is None:
                m = LINK.search(s)
                cur["lnkcap"] = (float(m.group(1)), int(m.group(2))) if m else None
            elif section == "LnkCap2" and cur["lnkcap2"] is None:
                m = re.search(r"Supported Link Speeds: (?:[0-9.]+-)?([0-9.]+)GT/s", s)
                cur["lnkcap2"] = float(m.group(1)) if m else None
            elif section == "LnkSta" and cur["lnksta"] is None:
                m = LINK.search(s)
                cur["lnksta"] = (float(m.group(1)), int(m.group(2))) if m else None
        elif cap == "ats" and section == "ATSCtl":
            cur["ats"] = "Enable+" in s
        elif cap == "acs" and section == "ACSCap":
            cur["acs_cap"] = acs_bits(s)
        elif cap == "acs" and section == "ACSCtl":
            cur["acs_ctl"] = acs_bits(s)
    return devs


def lspci(root):
    args = ["lspci", "-A", "linux-sysfs", "-vvv", "-D", "-nn"]
    if str(root) != "/":
        args[3:3] = ["-O", f"sysfs.path={root}/sys/bus/pci"]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return parse_lspci(p.stdout)


# ---------------------------------------------------------------- agreement

def check_agreement(root):
    rc, out, err = discover(root)
    assert rc in (0, 3), err
    ls = lspci(root)
    gpus = {g["address"]: g for g in out["gpus"]}
    assert sorted(gpus) == sorted(a for a, d in ls.items() if d["class"].startswith("03"))
    checked = 0
    for addr, g in gpus.items():
        d = ls[addr]
        assert (g["vendor_id"], g["device_id"], g["class"]) == (d["vendor"], d["device"], d["class"])
        assert g["numa_node"] == (d["numa"] if d["numa"] is not None else -1)
        assert g["iommu_group"] == d["group"]
        assert g["driver"] == d["driver"]
        if d["caps_read"]:
            assert g["flr"] == bool(d["flr"])
            if d["lnkcap"]:
                # the kernel's max_link_speed follows the LnkCap2 vector when there is one
                # (pcie_get_speed_cap), lspci's LnkCap line shows the LnkCap field
                want = (d["lnkcap2"] or d["lnkcap"][0], d["lnkcap"][1])
                assert (g["link"]["max_speed_gts"], g["link"]["max_width"]) == want, addr
            if d["lnksta"]:
                assert (g["link"]["speed_gts"], g["link"]["width"]) == d["lnksta"], addr
            if g["ats"]["present"] or d["ats"] is not None:
                assert g["ats"] == {"present": True, "enabled": d["ats"]}, addr
            assert g["dsn"] == d["dsn"], addr
            if d["ats"]:
                assert not g["isolation"]["ats_ok"], addr
        # group_viable from lspci's own facts: every member of the GPU's IOMMU group a
        # bridge, or a function of its slot that VFIO can take (unbound, vfio-pci, pci-stub)
        members = [a for a, x in ls.items() if d["group"] is not None and x["group"] == d["group"]]
        viable = d["group"] is not None and all(
            ls[m]["class"] in ("0604", "0609")
            or (m[:10] == addr[:10] and ls[m]["driver"] in (None, "vfio-pci", "pci-stub"))
            for m in members)
        assert g["group_viable"] == viable, addr
        iso = g["isolation"]
        assert iso["viable"] == (g["group_viable"] and g["acs_path_ok"] and iso["ats_ok"]), addr
        assert (iso["reasons"] == []) == iso["viable"], addr
        if not iso["viable"]:
            assert iso["evidence"] == "; ".join(r["text"] for r in iso["reasons"]), addr
            for r in iso["reasons"]:
                assert all(dev in ls for dev in r["devices"]), (addr, r)
                assert all(dev in r["text"] for dev in r["devices"]), (addr, r)
        for b in g["upstream"]:
            u = ls[b["address"]]
            assert b["vendor_id"] == u["vendor"] and b["device_id"] == u["device"]
            if u["caps_read"]:
                assert b["port_type"] == (u["port_type"] or "none"), b["address"]
            if b["acs"]["known"]:
                if u["acs_ctl"] is None:
                    assert not b["acs"]["present"], b["address"]
                else:
                    assert b["acs"]["present"], b["address"]
                    assert int(b["acs"]["cap"], 16) & 0x7f == u["acs_cap"], b["address"]
                    assert int(b["acs"]["ctrl"], 16) & 0x7f == u["acs_ctl"], b["address"]
                    checked += 1
    return out, checked


@pytest.mark.skipif(not shutil.which("lspci"), reason="pciutils not installed")
@pytest.mark.parametrize("name", GOOD)
def test_discover_agrees_with_lspci(name):
    out, _ = check_agreement(HOSTS_DIR / name)
    assert out["gpus"], f"{name}: no GPU found"


@pytest.mark.skipif(not shutil.which("lspci"), reason="pciutils not installed")
def test_live_host_read_only():
    """The live host: whatever it holds (no GPU on a CI VM), both tools agree."""
    if not pathlib.Path("/sys/bus/pci/devices").is_dir():
        pytest.skip("no /sys/bus/pci on this machine")
    out, _ = check_agreement("/")
    assert out["host_root"] == "/"


def test_there_are_test_hosts():
    assert len(GOOD) >= 7, f"expected the fixture hosts under {HOSTS_DIR}, found {GOOD}"
    assert len(BROKEN) >= 5, f"expected broken fixture hosts under {HOSTS_DIR}, found {BROKEN}"


def test_snapshot_of_a_host_replays(tmp_path):
    """snapshot a test host; discover on the copy equals discover on the original."""
    for name in GOOD[:3] + BROKEN[:2]:
        src = HOSTS_DIR / name
        out = tmp_path / name
        p = subprocess.run([str(CLI), "snapshot", "--host-root", str(src), "--out", str(out)],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        rc1, a, _ = discover(src)
        rc2, b, _ = discover(out)
        assert rc1 == rc2
        sa = json.dumps(a).replace(str(src), "ROOT")
        sb = json.dumps(b).replace(str(out), "ROOT")
        assert sa == sb


# What each broken host must say, "ROOT" standing for its path: (GPU errors of 0000:01:00.0,
# host errors). Every broken host is the omen-3060 host with one defect.
BROKEN_EXPECT = {
    "broken-vendor": (["vendor/device: Cannot open ROOT/sys/bus/pci/devices/0000:01:00.0/vendor: "
                       "No such file or directory; ids taken from config space"], []),
    "broken-numa": (["numa_node: ROOT/sys/bus/pci/devices/0000:01:00.0/numa_node: not an integer: "
                     "'banana'"], []),
    "broken-config": (["config: truncated: 10 bytes, less than the 64-byte header"], []),
    "broken-group": (["iommu_group: dangling link to '../../../../kernel/iommu_groups/99' "
                      "(target missing)"], []),
    "broken-entry": ([], ["ROOT/sys/bus/pci/devices/README: not a PCI address (dddd:bb:dd.f); skipped"]),
    "broken-bdf": ([], ["ROOT/sys/bus/pci/devices/0000:zz:00.0: not a PCI address (dddd:bb:dd.f); "
                        "skipped"]),
}
ATS_UNKNOWN = {"kind": "ats_unknown", "devices": ["0000:01:00.0"],
               "text": "ATS state of 0000:01:00.0 unknown: config space unreadable, truncated or all-ones"}
DANGLING = {"kind": "no_group", "devices": ["0000:01:00.0"],
            "text": "IOMMU group unknown: the iommu_group link is dangling"}


def isolation(intact, reasons, **parts):
    """The intact GPU's isolation verdict with other reasons."""
    return dict(intact["isolation"], reasons=reasons, evidence="; ".join(r["text"] for r in reasons), **parts)


# The facts the defect changes, from the intact GPU's; everything else equals the intact host's.
BROKEN_CHANGES = {
    "broken-vendor": lambda g: {}, "broken-numa": lambda g: {}, "broken-entry": lambda g: {},
    "broken-bdf": lambda g: {},
    # no capability can be read from 10 bytes (ATS unknown: not isolated); the kernel's cached
    # attributes still can
    "broken-config": lambda g: {
        "flr": False, "aer": {"present": False, "correctable": 0, "fatal": 0, "nonfatal": 0},
        "isolation": isolation(g, g["isolation"]["reasons"] + [ATS_UNKNOWN], ats_ok=False,
                               ats_evidence=ATS_UNKNOWN["text"])},
    "broken-group": lambda g: {
        "iommu_group": None, "iommu_group_members": [], "group_viable": False,
        "group_evidence": DANGLING["text"],
        "isolation": isolation(g, [DANGLING] + [r for r in g["isolation"]["reasons"] if r["kind"] == "acs"])},
}


def test_rtx3060_hda_function_on_a_host_driver_is_not_viable():
    """The RTX 3060 (omen-3060): its HDA function on snd_hda_intel shares the GPU's IOMMU
    group. A VM is given the whole group and VFIO refuses it while a function of it is on
    a host driver, so discover says not viable, naming the function (the clean-up's
    isolation step says the same words: tests/unit/test_isolation_agree.c), and the
    table's group column says NO."""
    rc, out, err = discover(HOSTS_DIR / "omen-3060")
    assert rc == 0, err
    g = out["gpus"][0]
    assert not g["group_viable"] and not g["acs_path_ok"]
    iso = g["isolation"]
    assert not iso["viable"] and iso["ats_ok"]
    assert [(r["kind"], r["devices"]) for r in iso["reasons"]] == [
        ("host_driver", ["0000:01:00.1"]), ("acs", ["0000:00:01.0"])]
    assert iso["reasons"][0]["text"].startswith(
        "group 1 not viable: 0000:01:00.1 bound to snd_hda_intel (10de:228e, class 0403): ")
    assert iso["reasons"][1]["text"] == "0000:00:01.0 root_port: no ACS capability"
    p = subprocess.run([str(CLI), "discover", "--host-root", str(HOSTS_DIR / "omen-3060")],
                       capture_output=True, text=True)
    assert p.returncode == 0
    assert "group: group 1 not viable: 0000:01:00.1 bound to snd_hda_intel" in p.stdout


def test_every_broken_host_is_expected():
    assert sorted(BROKEN) == sorted(BROKEN_EXPECT)


@pytest.mark.parametrize("name", sorted(BROKEN_EXPECT))
def test_broken_host_errors(name):
    root = HOSTS_DIR / name
    if not root.is_dir():
        pytest.skip(f"{name} not built")
    rc, out, err = discover(root)
    assert rc == 3, err
    gpu_errors, host_errors = BROKEN_EXPECT[name]
    assert [g["address"] for g in out["gpus"]] == ["0000:01:00.0"]
    g = out["gpus"][0]
    assert [e.replace(str(root), "ROOT") for e in g["errors"]] == gpu_errors
    assert [e.replace(str(root), "ROOT") for e in out["errors"]] == host_errors
    # apart from what the defect breaks, the GPU reads as on the intact host
    _, intact, _ = discover(HOSTS_DIR / "omen-3060")
    want = dict(intact["gpus"][0])
    want.update(BROKEN_CHANGES[name](intact["gpus"][0]))
    want["errors"] = g["errors"]
    assert g == want
    # the table says the same and exits the same
    p = subprocess.run([str(CLI), "discover", "--host-root", str(root)], capture_output=True, text=True)
    assert p.returncode == 3
    for e in gpu_errors:
        assert "    error: " + e.replace("ROOT", str(root)) + "\n" in p.stdout
    for e in host_errors:
        assert "host error: " + e.replace("ROOT", str(root)) + "\n" in p.stdout


@pytest.mark.skipif(not (ASAN_BUILD / "gpuwarden").exists(), reason="no ASan build")
@pytest.mark.parametrize("name", BROKEN + ["allones"])
def test_broken_hosts_under_asan(name):
    """The sanitizer build's CLI on every broken tree: same output, no ASan/UBSan/LSan report."""
    root = HOSTS_DIR / name
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:exitcode=99",
               UBSAN_OPTIONS="halt_on_error=1:exitcode=98")
    rc, out, err = discover(root, cli=ASAN_BUILD / "gpuwarden", env=env)
    assert rc == 3, err
    assert "Sanitizer" not in err and "runtime error" not in err, err
    assert out == discover(root)[1]


def test_usage_and_failure_exit_codes(tmp_path):
    assert subprocess.run([str(CLI), "discover", "--bogus"], capture_output=True).returncode == 2
    assert subprocess.run([str(CLI), "discover", "extra"], capture_output=True).returncode == 2
    p = subprocess.run([str(CLI), "discover", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "--host-root" in p.stdout
    p = subprocess.run([str(CLI), "discover", "--host-root", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr == f"gpuwarden discover: cannot read {tmp_path}/sys/bus/pci/devices: No such file or directory\n"
    assert subprocess.run([str(CLI), "snapshot"], capture_output=True).returncode == 2
