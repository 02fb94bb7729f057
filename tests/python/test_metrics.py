"""`gpuwarden metrics` against the real gpuwardend (x299-3xa6000, simulated
host backend), its output read by a real Prometheus parser
(prometheus_client's text parser): the families, their types and label
sets, and counts that move as the daemon works: clean-ups add an
observation to each step's histogram, a failing hook counts a failure of
the hooks step and a quarantine caused by a clean-up, an operator's and
Cyborg's quarantines count under their causes, and every request issued
is counted and timed under its op. Also the node_exporter textfile mode
(atomic, readable, gpuwarden_up 0 when the daemon is gone) and, where
promtool is installed, `promtool check metrics`."""

import json
import math
import os
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gwdaemon import ROOT, Daemon, build_dir

GPUS = ["0000:1a:00.0", "0000:67:00.0", "0000:68:00.0"]   # x299-3xa6000
STATES = ["discovered", "sanitized", "allocatable", "attached", "quarantined"]
STEPS = ["not_in_use", "bind", "reset", "scrub", "health", "isolation", "firmware", "hooks"]
OPS = ["hello", "inventory", "published", "devices", "device", "quarantine", "release", "sanitize", "audit",
       "attached", "released", "gate", "metrics", "maintenance"]
CAUSES = ["cleanup", "fault", "gone", "operator", "cyborg", "other"]
KINDS = ["transition", "cleanup", "attachment"]
EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE = 0, 2, 4

# family name (as the parser names it) -> (type, the label names of its samples, without le)
FAMILIES = {
    "gpuwarden_up": ("gauge", set()),
    "gpuwarden_uptime_seconds": ("gauge", set()),
    "gpuwarden_gpus": ("gauge", {"state"}),
    "gpuwarden_gpus_dirty": ("gauge", set()),
    "gpuwarden_gpus_cleaning": ("gauge", set()),
    "gpuwarden_gpus_fenced": ("gauge", set()),
    "gpuwarden_cleanups": ("counter", {"result"}),
    "gpuwarden_cleanup_duration_seconds": ("histogram", set()),
    "gpuwarden_cleanup_step_duration_seconds": ("histogram", {"step"}),
    "gpuwarden_cleanup_step_failures": ("counter", {"step"}),
    "gpuwarden_quarantines": ("counter", {"cause"}),
    "gpuwarden_requests": ("counter", {"op"}),
    "gpuwarden_request_duration_seconds": ("histogram", {"op"}),
    "gpuwarden_request_errors": ("counter", {"code"}),
    "gpuwarden_events_published": ("counter", {"kind"}),
    "gpuwarden_events_last_seq": ("gauge", set()),
    "gpuwarden_inventory_revision": ("gauge", set()),
    "gpuwarden_inventory_published_revision": ("gauge", set()),
    "gpuwarden_libvirt_watcher_enabled": ("gauge", set()),
    "gpuwarden_libvirt_watcher_connected": ("gauge", set()),
    "gpuwarden_libvirt_watcher_synced": ("gauge", set()),
    "gpuwarden_libvirt_watcher_disconnects": ("counter", set()),
}


def cli(*args, timeout=30):
    e = dict(os.environ)
    e.pop("GPUWARDEN_ENDPOINT", None)
    return subprocess.run([str(build_dir() / "gpuwarden"), *args], capture_output=True, text=True, env=e,
                          timeout=timeout)


def parse(text):
    """{family: (type, {(sample name, frozenset(labels)): value})}, through prometheus_client."""
    out = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name not in out, f"family {fam.name} twice"
        assert fam.documentation, f"{fam.name} has no HELP"
        samples = {}
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"sample {key} twice"
            samples[key] = s.value
        out[fam.name] = (fam.type, samples)
    return out


def value(fams, family, sample=None, **labels):
    return fams[family][1][(sample or family, frozenset(labels.items()))]


def hist(fams, family, **labels):
    """(buckets {le: count}, count, sum) of one histogram; checks its shape."""
    samples = fams[family][1]
    buckets = {}
    for (name, lab), v in samples.items():
        lab = dict(lab)
        le = lab.pop("le", None)
        if name == family + "_bucket" and lab == labels:
            buckets[float(le)] = v
    les = sorted(buckets)
    assert les and les[-1] == math.inf, buckets
    assert all(buckets[a] <= buckets[b] for a, b in zip(les, les[1:])), f"not cumulative: {buckets}"
    count = value(fams, family, family + "_count", **labels)
    assert buckets[math.inf] == count
    return buckets, count, value(fams, family, family + "_sum", **labels)


def scrape(d, *extra):
    r = cli("metrics", "--endpoint", d.read, *extra)
    assert (r.returncode, r.stderr) == (EXIT_OK, ""), r
    return r.stdout


@pytest.fixture
def daemon(tmp_path):
    """The daemon with an operator clean-up hook that fails while the file
    `fail` exists: the first clean-ups pass."""
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    fail = tmp_path / "fail"
    script = hooks / "10-maybe-fail"
    script.write_text(f"#!/bin/sh\n[ -e '{fail}' ] && {{ echo 'told to fail' >&2; exit 1; }}\nexit 0\n")
    script.chmod(0o755)
    d = Daemon(tmp_path).start()
    d.fail = fail
    yield d
    assert d.stop() == 0, d.log.read_text()


def test_families_types_and_labels(daemon):
    text = scrape(daemon)
    fams = parse(text)
    assert {n: t for n, (t, _) in fams.items()} == {n: t for n, (t, _) in FAMILIES.items()}
    for name, (typ, labels) in FAMILIES.items():
        for (sample, lab), _ in fams[name][1].items():
            got = {k for k, _ in lab} - ({"le"} if typ == "histogram" else set())
            assert got == labels, (name, sample, lab)
    # every label value is listed, zeros included, in the protocol's order
    assert [dict(k[1])["state"] for k in fams["gpuwarden_gpus"][1]] == STATES
    assert [dict(k[1])["step"] for k in fams["gpuwarden_cleanup_step_failures"][1]] == STEPS
    assert [dict(k[1])["cause"] for k in fams["gpuwarden_quarantines"][1]] == CAUSES
    assert [dict(k[1])["op"] for k in fams["gpuwarden_requests"][1]] == OPS
    assert [dict(k[1])["kind"] for k in fams["gpuwarden_events_published"][1]] == KINDS
    assert [dict(k[1])["result"] for k in fams["gpuwarden_cleanups"][1]] == ["passed", "failed", "aborted"]
    # text format conventions the parser does not insist on
    lines = text.splitlines()
    for name, (typ, _) in FAMILIES.items():
        exposed = name + "_total" if typ == "counter" else name
        help_at = [i for i, l in enumerate(lines) if l.startswith(f"# HELP {exposed} ")]
        assert len(help_at) == 1 and lines[help_at[0] + 1] == f"# TYPE {exposed} {typ}", exposed
    assert text.endswith("\n") and all(l.startswith(("# HELP gpuwarden_", "# TYPE gpuwarden_", "gpuwarden_"))
                                       for l in lines)
    # the simulated host: three clean GPUs, no libvirt
    assert value(fams, "gpuwarden_up") == 1
    assert value(fams, "gpuwarden_gpus", state="sanitized") == 3
    assert value(fams, "gpuwarden_libvirt_watcher_enabled") == 0
    assert value(fams, "gpuwarden_libvirt_watcher_connected") == 0


def test_counts_move(daemon):
    d = daemon
    before = parse(scrape(d))
    assert value(before, "gpuwarden_cleanups", "gpuwarden_cleanups_total", result="passed") == 3
    for step in STEPS:
        _, n, s = hist(before, "gpuwarden_cleanup_step_duration_seconds", step=step)
        assert n == 3 and s >= 0, step
    assert hist(before, "gpuwarden_cleanup_duration_seconds")[1] == 3

    # a clean-up that fails at the hooks step: quarantined by the clean-up
    d.fail.write_text("")
    d.result("sanitize", {"address": GPUS[0]})
    d.wait(lambda devs: devs[0]["state"] == "quarantined" and not devs[0]["cleaning"])
    # an operator's quarantine and Cyborg's
    d.result("quarantine", {"address": GPUS[1], "reason": "fan noise"}, actor="alice")
    d.result("maintenance", {"address": GPUS[2], "on": True, "reason": "disabled"})
    for _ in range(3):
        d.result("device", {"address": GPUS[0]}, endpoint=d.read)
    assert not d.call("device", {"address": "0000:00:00.0"})["ok"]     # not_found
    after = parse(scrape(d))

    def delta(family, sample=None, **labels):
        return value(after, family, sample, **labels) - value(before, family, sample, **labels)

    assert delta("gpuwarden_quarantines", "gpuwarden_quarantines_total", cause="cleanup") == 1
    assert delta("gpuwarden_quarantines", "gpuwarden_quarantines_total", cause="operator") == 1
    assert delta("gpuwarden_quarantines", "gpuwarden_quarantines_total", cause="cyborg") == 1
    for cause in ("fault", "gone", "other"):
        assert delta("gpuwarden_quarantines", "gpuwarden_quarantines_total", cause=cause) == 0
    assert value(after, "gpuwarden_gpus", state="quarantined") == 3
    assert delta("gpuwarden_cleanups", "gpuwarden_cleanups_total", result="failed") == 1
    assert delta("gpuwarden_cleanups", "gpuwarden_cleanups_total", result="passed") == 0
    # the failing run ran every step (hooks is the last): one observation each, one failure at hooks
    for step in STEPS:
        b, n, s = hist(after, "gpuwarden_cleanup_step_duration_seconds", step=step)
        assert n == 4 and s >= hist(before, "gpuwarden_cleanup_step_duration_seconds", step=step)[2], step
        assert delta("gpuwarden_cleanup_step_failures", "gpuwarden_cleanup_step_failures_total", step=step) == \
            (step == "hooks"), step
    assert hist(after, "gpuwarden_cleanup_duration_seconds")[1] == 4
    # requests: counted and timed by op (the scrape's own metrics request is counted,
    # but timed only once answered, so the next scrape shows it)
    assert delta("gpuwarden_requests", "gpuwarden_requests_total", op="device") == 4
    assert delta("gpuwarden_requests", "gpuwarden_requests_total", op="sanitize") == 1
    assert delta("gpuwarden_requests", "gpuwarden_requests_total", op="maintenance") == 1
    assert delta("gpuwarden_requests", "gpuwarden_requests_total", op="metrics") == 1
    assert delta("gpuwarden_request_errors", "gpuwarden_request_errors_total", code="not_found") == 1
    for op, n in (("device", 4), ("sanitize", 1), ("quarantine", 1), ("maintenance", 1), ("metrics", 1)):
        assert hist(after, "gpuwarden_request_duration_seconds", op=op)[1] - \
            hist(before, "gpuwarden_request_duration_seconds", op=op)[1] == n, op
    assert hist(after, "gpuwarden_request_duration_seconds", op="gate")[1] == 0
    # events: a transition per change, one cleanup event per run; the last seq follows
    assert delta("gpuwarden_events_published", "gpuwarden_events_published_total", kind="cleanup") == 1
    transitions = delta("gpuwarden_events_published", "gpuwarden_events_published_total", kind="transition")
    assert transitions >= 4     # sanitize, started, failed, quarantine, maintenance
    assert delta("gpuwarden_events_last_seq") == transitions + 1


def test_json_is_the_op_result(daemon):
    r = cli("metrics", "-f", "json", "--endpoint", daemon.read)
    assert (r.returncode, r.stderr) == (EXIT_OK, "")
    m = json.loads(r.stdout)
    assert list(m)[:12] == ["uptime_ms", "devices", "dirty", "cleaning", "cleanups", "requests", "errors",
                            "events", "generation", "published", "published_revision", "revision"]
    assert list(m["cleanup_steps"]) == STEPS and list(m["request_duration"]) == OPS
    assert m["devices"]["sanitized"] == 3


def test_textfile_is_written_atomically_and_says_when_the_daemon_is_gone(daemon, tmp_path):
    out = tmp_path / "textfile"
    out.mkdir()
    path = out / "gpuwarden.prom"
    r = cli("metrics", "--textfile", str(path), "--endpoint", daemon.read)
    assert (r.returncode, r.stdout, r.stderr) == (EXIT_OK, "", "")
    assert os.listdir(out) == ["gpuwarden.prom"]            # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o644              # node_exporter runs as its own user
    fams = parse(path.read_text())
    assert value(fams, "gpuwarden_up") == 1 and value(fams, "gpuwarden_gpus", state="sanitized") == 3
    assert set(fams) == set(FAMILIES)

    assert cli("metrics", "--textfile", str(path), "-f", "json", "--endpoint", daemon.read).returncode == EXIT_USAGE
    assert cli("metrics", "--textfile", str(out / "no" / "x.prom"), "--endpoint", daemon.read).returncode != EXIT_OK

    daemon.stop()
    r = cli("metrics", "--textfile", str(path), "--endpoint", daemon.read)
    assert r.returncode == EXIT_UNREACHABLE and "gpuwardend" in r.stderr
    assert os.listdir(out) == ["gpuwarden.prom"]
    fams = parse(path.read_text())
    assert list(fams) == ["gpuwarden_up"] and value(fams, "gpuwarden_up") == 0


def test_unreachable_prints_nothing(tmp_path):
    r = cli("metrics", "--endpoint", f"ipc://{tmp_path}/none.sock")
    assert (r.returncode, r.stdout) == (EXIT_UNREACHABLE, "")


def test_promtool_check_metrics(daemon):
    """Prometheus' own linter, where it is installed (Debian's prometheus
    package, 96 MB with a server that starts on install: not in CI's
    bootstrap; GW_PROMTOOL may name an unpacked copy)."""
    promtool = os.environ.get("GW_PROMTOOL") or shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed")
    text = scrape(daemon)
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r


# ---- the node_exporter timer (packaging/systemd/gpuwarden-metrics.*) ----

UNITS = ROOT / "packaging" / "systemd"


def _unit(name):
    import configparser
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    cp.optionxform = str
    cp.read(UNITS / name)
    return cp


def test_the_services_command_line_writes_the_textfile(daemon, tmp_path):
    """ExecStart exactly as the unit says, with the binary and the path of this test."""
    svc = _unit("gpuwarden-metrics.service")["Service"]
    var, default = svc["Environment"].split("=", 1)
    assert default == "/var/lib/prometheus/node-exporter/gpuwarden.prom"
    argv = svc["ExecStart"].split()
    assert argv[0] == "/usr/bin/gpuwarden" and f"${{{var}}}" in argv
    path = tmp_path / "gpuwarden.prom"
    argv = [str(path) if a == f"${{{var}}}" else a for a in argv[1:]]
    r = cli(*argv, "--endpoint", daemon.read)
    assert (r.returncode, r.stdout, r.stderr) == (EXIT_OK, "", "")
    assert value(parse(path.read_text()), "gpuwarden_up") == 1
    # it may write where it writes, and nowhere else
    assert svc["ReadWritePaths"] == "-" + os.path.dirname(default) and svc["ProtectSystem"] == "strict"
    assert _unit("gpuwarden-metrics.timer")["Install"]["WantedBy"] == "timers.target"


def test_the_timer_is_installed_disabled_and_the_service_sandboxed(tmp_path):
    rules = (UNITS.parents[1] / "debian" / "rules").read_text()
    assert "--no-enable --no-start gpuwarden-metrics.timer gpuwarden-metrics.service" in rules
    install = (UNITS.parents[1] / "debian" / "gpuwarden.install").read_text().split()
    assert {"lib/systemd/system/gpuwarden-metrics.service", "lib/systemd/system/gpuwarden-metrics.timer"} <= set(install)
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    import re
    unitdir = tmp_path / "root" / "etc" / "systemd" / "system"
    unitdir.mkdir(parents=True)
    shutil.copy(UNITS / "gpuwarden-metrics.service", unitdir)
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={tmp_path / 'root'}",
                        "gpuwarden-metrics.service"], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for gpuwarden-metrics\.service: (\d+\.\d)", r.stdout)
    assert m and float(m.group(1)) <= 1.5, r.stdout + r.stderr
