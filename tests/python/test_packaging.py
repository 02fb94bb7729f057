"""The files shipped in packaging/ agree with the code."""

import pathlib
import subprocess

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


def test_unknown_config_key_is_refused_with_its_location(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[daemon]\nhost_roots = /x\n")
    r = subprocess.run([str(build_dir() / "gpuwardend"), "--config", str(conf)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "unknown option [daemon] host_roots" in r.stderr and str(conf) in r.stderr


def test_libvirt_hook_execs_the_cli():
    hook = (ROOT / "packaging" / "libvirt" / "hooks" / "qemu").read_text()
    assert 'exec /usr/bin/gpuwarden hook qemu "$@"' in hook
