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
    hook = (ROOT / "packaging" / "libvirt" / "hooks" / "qemu").read_text()
    assert 'exec /usr/bin/gpuwarden hook qemu "$@"' in hook


def test_installed_library_builds_a_program_from_every_public_header(tmp_path):
    """What a C library user does: install, pkg-config, include every header
    together, link, run. Catches name clashes between headers, a header that
    does not stand alone, a missing Requires, and a wrong SONAME link."""
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", str(prefix),
                    "--component", "Unspecified"], check=True, capture_output=True)
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
    env = dict(os.environ, PKG_CONFIG_PATH=str(libdir))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "gpuwarden"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    exe = tmp_path / "user"
    cc = subprocess.run(["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe)] + flags,
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], env=dict(env, LD_LIBRARY_PATH=str(libdir.parent)), capture_output=True,
                         text=True)
    assert run.returncode == 0 and "/nonexistent" in run.stdout, (run.stdout, run.stderr)
