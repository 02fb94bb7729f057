"""The operator CLI (`gpuwarden list | show | inventory | quarantine | release |
sanitize | events | audit`) run as a program against the real gpuwardend on
a test host (x299-3xa6000, simulated host backend): exact table and JSON
output, every error path's exit code and message, and the end-to-end
acceptance (quarantine, show, events, restart)."""

import datetime
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import zmq

from gwdaemon import Daemon, build_dir

GPUS = ["0000:1a:00.0", "0000:67:00.0", "0000:68:00.0"]   # x299-3xa6000
CLIQUE = {"0000:1a:00.0": "-", "0000:67:00.0": "0", "0000:68:00.0": "0"}
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 4, 5
LIST_HEADER = ["ADDRESS", "STATE", "DIRTY", "CLEANING", "PRESENT", "NUMA", "CLIQUE", "DOMAIN",
               "SINCE (UTC)", "BY", "REASON"]


def cli(*args, env=None, timeout=60):
    e = dict(os.environ)
    e.pop("GPUWARDEN_ENDPOINT", None)
    e.pop("GPUWARDEN_EVENTS_ENDPOINT", None)
    e.update(env or {})
    return subprocess.run([str(build_dir() / "gpuwarden"), *args], capture_output=True, text=True,
                          env=e, timeout=timeout)


def utc(ms, millis=False):
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    s = t.strftime("%Y-%m-%d %H:%M:%S")
    return s + f".{ms % 1000:03d}" if millis else s


def cut(text, width):
    """A table cell limited to `width` characters, as the CLI cuts it."""
    return text if len(text) <= width else text[:width - 3] + "..."


def table(text):
    """Rows of an aligned table as dicts, cut at the header's column starts
    (so a cell must start exactly under its header)."""
    lines = text.rstrip("\n").split("\n")
    header = lines[0]
    names = re.split(r"  +", header.strip())
    starts = [header.index(n) for n in names]
    rows = []
    for line in lines[1:]:
        for s in starts[1:]:
            assert line[s - 2:s] == "  " or line[s - 1] == " ", (line, s)
            assert line[s] != " ", f"cell not aligned under its header at {s}: {line!r}"
        cells = [line[a:b].rstrip() for a, b in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(names, cells)))
    return names, rows


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path).start()
    yield d
    assert d.stop() == 0, d.log.read_text()


class Subscriber:
    """`gpuwarden events ...` running, its stdout lines collected."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([str(build_dir() / "gpuwarden"), "events", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.cv = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def wait(self, pred, timeout=20.0):
        with self.cv:
            return self.cv.wait_for(lambda: pred(self.lines), timeout)

    def sync(self, d, gpu=GPUS[2]):
        """Make sure the subscription reached the daemon (a slow joiner
        misses what is published before): clean `gpu` until an event of it
        arrives, then let it settle."""
        deadline = time.time() + 30
        while not self.wait(lambda ls: any(gpu in l for l in ls), 0.2):
            assert time.time() < deadline, "the subscriber never saw an event"
            d.call("sanitize", {"address": gpu})   # busy while it runs: fine
        d.wait(lambda ds: all(not x["cleaning"] and x["state"] == "sanitized" for x in ds if x["address"] == gpu))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=20)
        self.thread.join(timeout=20)
        return rc, self.proc.stderr.read()


# ---- list ----

def test_list_table(daemon):
    devs = daemon.devices()
    r = cli("list", "--endpoint", daemon.read)
    assert r.returncode == EXIT_OK, r.stderr
    assert r.stderr == ""
    names, rows = table(r.stdout)
    assert names == LIST_HEADER
    assert rows == [{"ADDRESS": d["address"], "STATE": "sanitized", "DIRTY": "no", "CLEANING": "no",
                     "PRESENT": "yes", "NUMA": "0", "CLIQUE": CLIQUE[d["address"]], "DOMAIN": "-",
                     "SINCE (UTC)": utc(d["since"]), "BY": "-", "REASON": "-"} for d in devs]
    assert [row["ADDRESS"] for row in rows] == GPUS


def test_list_json_is_the_daemons_device_objects(daemon):
    r = cli("list", "--endpoint", daemon.read, "-f", "json")
    assert r.returncode == EXIT_OK, r.stderr
    got = json.loads(r.stdout)
    assert got == daemon.devices()
    assert [d["address"] for d in got] == GPUS
    first = got[0]
    assert list(first)[:4] == ["address", "state", "dirty", "cleaning"]
    assert (first["state"], first["dirty"], first["reason"]) == ("sanitized", False, None)
    assert first["identity"]["device_name"] == "GA102GL [RTX A6000]"


def test_list_state_filter_and_env_endpoint(daemon):
    daemon.result("quarantine", {"address": GPUS[1], "reason": "fan"})
    r = cli("list", "--state", "quarantined", "-f", "json", env={"GPUWARDEN_ENDPOINT": daemon.read})
    assert r.returncode == EXIT_OK, r.stderr
    assert [(d["address"], d["state"], d["reason"]) for d in json.loads(r.stdout)] == [
        (GPUS[1], "quarantined", "fan")]
    r = cli("list", "--state", "allocatable", env={"GPUWARDEN_ENDPOINT": daemon.read})
    assert r.returncode == EXIT_OK and r.stdout == "  ".join(LIST_HEADER) + "\n"


def test_list_cuts_long_reason_show_and_json_keep_it(daemon):
    reason = "fan noise above 60 dB, ticket OPS-1234, replace the blower before reuse"
    assert cli("quarantine", GPUS[0], "--reason", reason, "--endpoint", daemon.admin).returncode == 0
    _, rows = table(cli("list", "--endpoint", daemon.read).stdout)
    assert rows[0]["REASON"] == reason[:45] + "..."
    assert rows[1]["REASON"] == "-"
    assert json.loads(cli("list", "-f", "json", "--endpoint", daemon.read).stdout)[0]["reason"] == reason
    show = cli("show", GPUS[0], "--endpoint", daemon.read).stdout
    by = daemon.result("device", {"address": GPUS[0]})["quarantined_by"]
    assert f"reason        {reason}\nby            {by}\n" in show


# ---- show ----

def test_show_table(daemon):
    dev = daemon.result("device", {"address": GPUS[1]})
    r = cli("show", "67:00.0", "--endpoint", daemon.read)      # short form, canonicalised
    assert r.returncode == EXIT_OK, r.stderr
    head, _, rest = r.stdout.partition("\n\n")
    assert head.split("\n") == [
        "address       0000:67:00.0",
        "state         sanitized",
        "dirty         no",
        "cleaning      no",
        "reason        -",
        f"since         {utc(dev['since'], True)} UTC",
        "domain        -",
        "present       yes",
        "numa_node     0",
        "clique        0",
        f"iommu_group   {dev['iommu_group']}",
        "driver        vfio-pci",
        "identity      10de:2230 (subsystem 10de:1459, revision a1, class 0300)",
        "name          NVIDIA Corporation GA102GL [RTX A6000]",
        "serial        -",
    ]
    cu = dev["cleanup"]
    first, _, steps = rest.partition("\n")
    assert first == (f"last clean-up: passed, started {utc(cu['started'], True)} UTC, {cu['duration_ms']} ms, "
                     "simulated backend")
    names, rows = table(steps)
    assert names == ["STEP", "VERDICT", "MS", "EVIDENCE"]
    assert rows == [{"STEP": s["name"], "VERDICT": s["verdict"], "MS": str(s["duration_ms"]),
                     "EVIDENCE": s["evidence"].replace("\n", " ")} for s in dev["steps"]]
    assert [row["STEP"] for row in rows] == ["not_in_use", "bind", "reset", "scrub", "health", "isolation",
                                             "firmware", "hooks"]


def test_show_json_has_the_cleanup_and_steps(daemon):
    r = cli("show", GPUS[0], "-f", "json", "--endpoint", daemon.read)
    assert r.returncode == EXIT_OK, r.stderr
    got = json.loads(r.stdout)
    assert got == daemon.result("device", {"address": GPUS[0]})
    assert list(got)[-2:] == ["cleanup", "steps"]
    assert (got["address"], got["state"], got["dirty"], got["reason"]) == (GPUS[0], "sanitized", False, None)
    assert got["cleanup"]["result"] == "passed"
    assert [list(s) for s in got["steps"]] == [["name", "verdict", "evidence", "duration_ms"]] * 8
    assert [(s["name"], s["verdict"]) for s in got["steps"]] == [
        ("not_in_use", "pass"), ("bind", "pass"), ("reset", "pass"), ("scrub", "skip"), ("health", "pass"),
        ("isolation", "pass"), ("firmware", "pass"), ("hooks", "skip")]


# ---- inventory ----

def _handle(bdf):
    dom, bus, rest = bdf.split(":")
    dev, fn = rest.split(".")
    return {"type": "PCI", "info": json.dumps({"bus": bus, "device": dev, "domain": dom, "function": fn},
                                              sort_keys=True)}


TRAITS = {"0000:1a:00.0": ["OWNER_CYBORG", "CUSTOM_NVIDIA_2230", "CUSTOM_NUMA_NODE_0"],
          "0000:67:00.0": ["OWNER_CYBORG", "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0"],
          "0000:68:00.0": ["OWNER_CYBORG", "CUSTOM_NVIDIA_2230", "CUSTOM_GPU_CLIQUE_0", "CUSTOM_NUMA_NODE_0"]}


def test_inventory_json_shape_before_and_after_published(daemon):
    r = cli("inventory", "-f", "json", "--endpoint", daemon.read)
    assert r.returncode == EXIT_OK, r.stderr
    got = json.loads(r.stdout)
    gen = daemon.result("inventory")["generation"]
    # sanitized, not yet reported to Placement: reserved, no handle to bind
    assert got == {"generation": gen, "deployables": [
        {"name": f"cmp1_{g}", "rc": "PGPU", "num_accelerators": 1, "reserved": 1, "traits": TRAITS[g],
         "attach_handles": [], "gpus": [g]} for g in GPUS]}
    assert list(got["deployables"][0]) == ["name", "rc", "num_accelerators", "reserved", "traits",
                                           "attach_handles", "gpus"]
    daemon.result("published", {"generation": gen})
    got = json.loads(cli("inventory", "-f", "json", "--endpoint", daemon.read).stdout)
    assert got["generation"] != gen
    assert got["deployables"] == [
        {"name": f"cmp1_{g}", "rc": "PGPU", "num_accelerators": 1, "reserved": 0, "traits": TRAITS[g],
         "attach_handles": [_handle(g)], "gpus": [g]} for g in GPUS]


def test_inventory_table(daemon):
    gen = daemon.result("inventory")["generation"]
    daemon.result("published", {"generation": gen})
    daemon.result("quarantine", {"address": GPUS[2], "reason": "x"})
    inv = daemon.result("inventory")
    gen = inv["generation"]
    r = cli("inventory", "--endpoint", daemon.read)
    assert r.returncode == EXIT_OK, r.stderr
    first, _, rest = r.stdout.partition("\n")
    # published the first revision; the promotion and the quarantine made two more
    assert (inv["revision"], inv["published_revision"]) == (3, 1)
    assert first == f"generation {gen}, host cmp1, model per_gpu: 3 deployables; revision 3, published revision 1"
    names, rows = table(rest)
    assert names == ["NAME", "RC", "GPUS", "TOTAL", "RESERVED", "HANDLES", "TRAITS"]
    assert rows == [{"NAME": f"cmp1_{g}", "RC": "PGPU", "GPUS": g, "TOTAL": "1",
                     "RESERVED": "1" if g == GPUS[2] else "0", "HANDLES": "0" if g == GPUS[2] else "1",
                     "TRAITS": ",".join(TRAITS[g])} for g in GPUS]


# ---- quarantine, release, sanitize ----

def test_quarantine_table_and_json(daemon):
    r = cli("quarantine", GPUS[0], "--reason", "fan noise", "--endpoint", daemon.admin)
    assert r.returncode == EXIT_OK, r.stderr
    names, rows = table(r.stdout)
    dev = daemon.result("device", {"address": GPUS[0]})
    assert names == LIST_HEADER
    assert rows == [{"ADDRESS": GPUS[0], "STATE": "quarantined", "DIRTY": "no", "CLEANING": "no",
                     "PRESENT": "yes", "NUMA": "0", "CLIQUE": "-", "DOMAIN": "-",
                     "SINCE (UTC)": utc(dev["since"]), "BY": cut(dev["quarantined_by"], 24),
                     "REASON": "fan noise"}]
    assert dev["quarantined_by"].startswith("operator:uid=")
    r = cli("quarantine", "68:00.0", "--reason", "ecc errors", "-f", "json", "--endpoint", daemon.admin)
    assert r.returncode == EXIT_OK, r.stderr
    got = json.loads(r.stdout)
    assert got == daemon.devices()[2]
    assert (got["address"], got["state"], got["dirty"], got["reason"]) == (
        GPUS[2], "quarantined", False, "ecc errors")
    rec = daemon.result("audit", {"device": GPUS[2]})["records"][-1]
    assert (rec["event"], rec["reason"]) == ("quarantine", "ecc errors")
    assert rec["actor"].startswith("operator:uid=")


# ---- quarantine waits until Placement shows the GPU reserved (issue 14) ----
#
# A thread plays the Cyborg driver: it confirms (`published`) the inventory
# after a delay, as its event listener or agent cycle would.

@pytest.fixture
def placed(tmp_path):
    """The daemon with a Placement writer active: every GPU allocatable, the
    current revision confirmed."""
    d = Daemon(tmp_path).start()
    d.result("published", {"generation": d.result("inventory")["generation"]})
    d.result("published", {"generation": d.result("inventory")["generation"]})
    inv = d.result("inventory")
    assert inv["revision"] == inv["published_revision"] and d.devices()[0]["state"] == "allocatable"
    yield d
    assert d.stop() == 0, d.log.read_text()


def _reserved(inv, addr):
    return next(x["reserved"] for x in inv["deployables"] if addr in x["gpus"])


def test_quarantine_returns_once_placement_shows_it_reserved(placed):
    d = placed
    seen = {}

    def driver():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and d.result("device", {"address": GPUS[0]})["state"] != "quarantined":
            time.sleep(0.02)
        time.sleep(1.0)
        inv = d.result("inventory", endpoint=d.read)
        seen["reserved"] = _reserved(inv, GPUS[0])
        seen["at"] = time.monotonic()
        d.result("published", {"generation": inv["generation"]})

    t = threading.Thread(target=driver)
    t0 = time.monotonic()
    t.start()
    r = cli("quarantine", GPUS[0], "--reason", "fan noise", "-f", "json", "--endpoint", d.admin)  # default 10 s
    t1 = time.monotonic()
    t.join()
    assert (r.returncode, r.stderr) == (EXIT_OK, "")
    assert json.loads(r.stdout)["state"] == "quarantined"
    assert seen.get("reserved") == 1                 # what the driver confirmed shows it reserved
    assert seen["at"] <= t1 and 1.0 <= t1 - t0 < 8, t1 - t0
    m = d.result("metrics")
    assert m["published_revision"] == m["revision"] == d.result("inventory")["revision"]


def test_quarantine_without_a_placement_writer_returns_at_once(daemon):
    assert daemon.result("metrics")["published"] == 0
    t0 = time.monotonic()
    r = cli("quarantine", GPUS[0], "--reason", "x", "--publish-wait", "10", "--endpoint", daemon.admin)
    assert (r.returncode, r.stderr) == (EXIT_OK, "")
    assert time.monotonic() - t0 < 3


def test_quarantine_wait_times_out_with_a_warning_and_exit_0(placed):
    d = placed
    t0 = time.monotonic()
    r = cli("quarantine", GPUS[1], "--reason", "x", "--publish-wait", "1", "--endpoint", d.admin)
    took = time.monotonic() - t0
    assert r.returncode == EXIT_OK and 1.0 <= took < 6, (took, r.stderr)
    assert table(r.stdout)[1][0]["STATE"] == "quarantined"
    m = d.result("metrics")
    assert r.stderr == (f"gpuwarden quarantine: warning: {GPUS[1]} is quarantined, but Placement does not show it "
                        f"reserved after 1.0 s (inventory revision {m['revision']}, published up to "
                        f"{m['published_revision']}): Placement may offer it until the Cyborg agent's next cycle\n")
    assert m["revision"] > m["published_revision"]


def test_quarantine_with_nothing_to_show_or_wait_0_returns_at_once(placed):
    d = placed
    # a GPU a VM holds keeps its handle and is not reserved, quarantined or not: the quarantine
    # changes no content, Placement already shows it, nothing to wait for
    d.result("attached", {"domain": "vm1", "addresses": [GPUS[2]]})
    before = d.result("inventory")
    assert before["revision"] == before["published_revision"]
    # 0 disables the wait: by option (which wins over the environment), or by the environment
    for gpu, args, env in [(GPUS[2], ["--publish-wait", "10"], None),
                           (GPUS[0], ["--publish-wait", "0"], {"GPUWARDEN_QUARANTINE_PUBLISH_WAIT": "30"}),
                           (GPUS[1], [], {"GPUWARDEN_QUARANTINE_PUBLISH_WAIT": "0"})]:
        t0 = time.monotonic()
        r = cli("quarantine", gpu, "--reason", "x", *args, "--endpoint", d.admin, env=env)
        assert (r.returncode, r.stderr) == (EXIT_OK, ""), (gpu, args, env)
        assert time.monotonic() - t0 < 3, (gpu, args, env)
        if gpu == GPUS[2]:
            assert d.result("inventory")["generation"] == before["generation"]
    inv = d.result("inventory")
    assert inv["revision"] > inv["published_revision"]          # the other two did change it


def test_quarantine_bad_publish_wait_environment_exits_2(placed):
    r = cli("quarantine", GPUS[0], "--reason", "x", "--endpoint", placed.admin,
            env={"GPUWARDEN_QUARANTINE_PUBLISH_WAIT": "soon"})
    assert (r.returncode, r.stdout) == (EXIT_USAGE, "")
    assert r.stderr == "gpuwarden quarantine: GPUWARDEN_QUARANTINE_PUBLISH_WAIT='soon': expected seconds, 0..600\n"
    assert placed.devices()[0]["state"] == "allocatable"


def test_release_table_and_json_then_clean_again(daemon):
    daemon.result("quarantine", {"address": GPUS[0], "reason": "a"})
    daemon.result("quarantine", {"address": GPUS[1], "reason": "b"})
    r = cli("release", GPUS[0], "--endpoint", daemon.admin)
    assert r.returncode == EXIT_OK, r.stderr
    _, rows = table(r.stdout)
    assert [(x["ADDRESS"], x["STATE"], x["DIRTY"], x["REASON"]) for x in rows] == [
        (GPUS[0], "discovered", "yes", "-")]
    r = cli("release", GPUS[1], "--reason", "blower replaced", "-f", "json", "--endpoint", daemon.admin)
    assert r.returncode == EXIT_OK, r.stderr
    got = json.loads(r.stdout)
    assert (got["address"], got["state"], got["dirty"]) == (GPUS[1], "discovered", True)
    devs = daemon.wait(lambda ds: all(d["state"] == "sanitized" for d in ds))
    assert all(not d["dirty"] for d in devs)
    rels = [x for x in daemon.result("audit")["records"] if x["event"] == "release"]
    assert [(x["address"], x["reason"]) for x in rels] == [(GPUS[0], "released by the operator"),
                                                         (GPUS[1], "blower replaced")]


def test_sanitize_table_and_json(daemon):
    r = cli("sanitize", GPUS[1], "--endpoint", daemon.admin)
    assert r.returncode == EXIT_OK, r.stderr
    names, rows = table(r.stdout)
    assert names == LIST_HEADER
    assert [(x["ADDRESS"], x["STATE"], x["DIRTY"], x["CLEANING"]) for x in rows] == [
        (GPUS[1], "discovered", "yes", "yes")]
    daemon.wait(lambda ds: ds[1]["state"] == "sanitized" and not ds[1]["cleaning"])
    r = cli("sanitize", GPUS[1], "-f", "json", "--endpoint", daemon.admin)
    assert r.returncode == EXIT_OK, r.stderr
    got = json.loads(r.stdout)
    assert (got["address"], got["state"], got["dirty"], got["cleaning"]) == (GPUS[1], "discovered", True, True)
    daemon.wait(lambda ds: ds[1]["state"] == "sanitized" and not ds[1]["cleaning"])
    passed = [x for x in daemon.result("audit", {"device": GPUS[1]})["records"] if x["event"] == "cleanup_passed"]
    assert len(passed) == 3   # the first scan's and the two asked for


def test_attached_gpu_shows_its_domain_and_refuses_sanitize(daemon):
    daemon.result("published", {"generation": daemon.result("inventory")["generation"]})
    daemon.result("attached", {"domain": "vm-7", "addresses": [GPUS[0]]})
    _, rows = table(cli("list", "--endpoint", daemon.read).stdout)
    assert (rows[0]["STATE"], rows[0]["DIRTY"], rows[0]["DOMAIN"]) == ("attached", "yes", "vm-7")
    r = cli("sanitize", GPUS[0], "--endpoint", daemon.admin)
    assert r.returncode == EXIT_REFUSED
    assert r.stdout == ""
    assert r.stderr.startswith(f"gpuwarden sanitize: {GPUS[0]}: ")
    assert r.stderr.endswith(" (illegal_transition)\n")


# ---- refusals and errors ----

def test_refusals_exit_5_with_the_daemons_message(daemon):
    r = cli("show", "0000:99:00.0", "--endpoint", daemon.read)
    assert (r.returncode, r.stdout) == (EXIT_REFUSED, "")
    assert r.stderr == "gpuwarden show: no GPU 0000:99:00.0 is managed by this daemon (not_found)\n"
    r = cli("quarantine", "0000:99:00.0", "--reason", "x", "--endpoint", daemon.admin)
    assert r.returncode == EXIT_REFUSED and r.stderr.endswith("(not_found)\n"), r.stderr
    r = cli("release", GPUS[0], "--endpoint", daemon.admin)
    assert r.returncode == EXIT_REFUSED
    assert r.stderr == (f"gpuwarden release: {GPUS[0]}: release rejected in state sanitized: "
                        "only a quarantined device can be released (illegal_transition)\n")
    assert cli("quarantine", GPUS[0], "--reason", "a", "--endpoint", daemon.admin).returncode == EXIT_OK
    r = cli("quarantine", GPUS[0], "--reason", "b", "--endpoint", daemon.admin)
    assert r.returncode == EXIT_REFUSED and r.stderr.endswith("(illegal_transition)\n"), r.stderr
    assert daemon.devices()[0]["reason"] == "a"


@pytest.mark.parametrize("args", [
    ["quarantine", GPUS[0], "--reason", "x"], ["release", GPUS[0]], ["sanitize", GPUS[0]]])
def test_mutating_command_on_read_endpoint_is_forbidden(daemon, args):
    before = daemon.devices()
    r = cli(*args, "--endpoint", daemon.read)
    assert (r.returncode, r.stdout) == (EXIT_REFUSED, "")
    lines = r.stderr.split("\n")
    assert lines[0] == f"gpuwarden {args[0]}: op: '{args[0]}' is not served on the read endpoint (forbidden)"
    assert lines[1] == (f"gpuwarden {args[0]}: {daemon.read} serves read requests only; this command needs "
                        "the admin endpoint (ipc:///run/gpuwarden/admin.sock)")
    assert daemon.devices() == before


@pytest.mark.parametrize("args", [["list"], ["show", GPUS[0]], ["inventory"], ["audit", "--daemon"],
                                  ["quarantine", GPUS[0], "--reason", "x"], ["release", GPUS[0]],
                                  ["sanitize", GPUS[0]], ["events"]])
def test_daemon_not_running_exits_4(tmp_path, args):
    ep = f"ipc://{tmp_path}/none.sock"
    r = cli(*args, "--endpoint", ep)
    assert (r.returncode, r.stdout) == (EXIT_UNREACHABLE, "")
    assert r.stderr == f"gpuwarden {args[0]}: {ep}: No such file or directory (is gpuwardend running?)\n"


def test_stopped_daemon_exits_4(tmp_path):
    d = Daemon(tmp_path).start()
    assert d.stop() == 0           # a clean exit removes the socket files
    r = cli("list", "--endpoint", d.read)
    assert r.returncode == EXIT_UNREACHABLE
    assert r.stderr == f"gpuwarden list: {d.read}: No such file or directory (is gpuwardend running?)\n"


def test_killed_daemons_stale_socket_exits_4(tmp_path):
    d = Daemon(tmp_path).start()
    d.stop(signal.SIGKILL)         # no chance to remove its socket files
    assert os.path.exists(d.read[len("ipc://"):])
    r = cli("list", "--endpoint", d.read)
    assert r.returncode == EXIT_UNREACHABLE
    assert r.stderr == (f"gpuwarden list: {d.read}: connection refused (a stale socket: gpuwardend is "
                        "not running)\n")


def test_daemon_that_does_not_answer_times_out_exits_4(tmp_path):
    ep = f"ipc://{tmp_path}/mute.sock"
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(ep)
    try:
        t0 = time.monotonic()
        r = cli("list", "--endpoint", ep, "--timeout", "0.3")
        took = time.monotonic() - t0
    finally:
        sock.close()
    assert (r.returncode, r.stdout) == (EXIT_UNREACHABLE, "")
    assert r.stderr == f"gpuwarden list: {ep}: no reply within 300 ms (is gpuwardend running?)\n"
    assert took < 20   # generous: the point is that --timeout, not the default, applied


def test_default_endpoints(tmp_path):
    """No --endpoint, no environment: mutating commands go to the admin
    endpoint, read commands to the read endpoint."""
    for sock in ("/run/gpuwarden/admin.sock", "/run/gpuwarden/read.sock", "/run/gpuwarden/events.sock"):
        if os.path.exists(sock):
            pytest.skip(f"a gpuwardend runs on this machine ({sock})")
    cases = [(["quarantine", "0000:99:00.0", "--reason", "x"], "admin"), (["release", "0000:99:00.0"], "admin"),
             (["sanitize", "0000:99:00.0"], "admin"), (["list"], "read"), (["show", "0000:99:00.0"], "read"),
             (["inventory"], "read"), (["audit", "--daemon"], "read"), (["events"], "events")]
    for args, which in cases:
        r = cli(*args)
        assert r.returncode == EXIT_UNREACHABLE, (args, r.stderr)
        assert r.stderr.startswith(f"gpuwarden {args[0]}: ipc:///run/gpuwarden/{which}.sock: "), r.stderr


USAGE = [
    (["show"], "gpuwarden show: which GPU? give its PCI address (dddd:bb:dd.f)"),
    (["show", "0000:1A:00.0:1"], "gpuwarden show: '0000:1A:00.0:1' is not a PCI address (dddd:bb:dd.f or bb:dd.f)"),
    (["show", "0000:1a:20.0"], "gpuwarden show: '0000:1a:20.0' is not a PCI address (dddd:bb:dd.f or bb:dd.f)"),
    (["show", GPUS[0], GPUS[1]], f"gpuwarden show: unexpected argument '{GPUS[1]}'"),
    (["quarantine", GPUS[0]], "gpuwarden quarantine: --reason TEXT is required (it is kept in the audit log)"),
    (["quarantine", GPUS[0], "--reason", ""], "gpuwarden quarantine: --reason must not be empty"),
    (["sanitize", GPUS[0], "--reason", "x"], None),
    (["quarantine", GPUS[0], "--reason", "x", "--publish-wait", "soon"],
     "gpuwarden quarantine: --publish-wait 'soon': expected seconds, 0..600"),
    (["quarantine", GPUS[0], "--reason", "x", "--publish-wait", "601"],
     "gpuwarden quarantine: --publish-wait '601': expected seconds, 0..600"),
    (["release", GPUS[0], "--publish-wait", "1"], None),
    (["sanitize", GPUS[0], "--publish-wait", "1"], None),
    (["list", "--state", "happy"],
     "gpuwarden list: unknown state 'happy' (discovered, sanitized, allocatable, attached, quarantined)"),
    (["list", "extra"], "gpuwarden list: unexpected argument 'extra'"),
    (["list", "-f", "xml"], "gpuwarden list: unknown format 'xml' (table json value yaml)"),
    (["inventory", "--timeout", "0"], "gpuwarden inventory: --timeout wants seconds > 0 (at most 86400), not '0'"),
    (["inventory", "--timeout", "soon"],
     "gpuwarden inventory: --timeout wants seconds > 0 (at most 86400), not 'soon'"),
    (["list", "--endpoint", "http://x"], "gpuwarden list: endpoint 'http://x': expected ipc://PATH or tcp://HOST:PORT"),
    (["events", "--count", "0"], "gpuwarden events: --count wants a number >= 1, not '0'"),
    (["audit", "--since", "1000"],
     "gpuwarden audit: --since asks the daemon (add --daemon or --endpoint); the log file takes --since-seq"),
    (["audit", "--daemon", "--since-seq", "3"],
     "gpuwarden audit: --state-dir and --since-seq read the log file; they do not go with --endpoint or --daemon"),
    (["audit", "--daemon", "--last", "1001"], "gpuwarden audit: --last: the daemon serves at most 1000 records"),
    (["audit", "--daemon", "--since", "yesterday"],
     "gpuwarden audit: --since wants milliseconds since the epoch or YYYY-mm-ddTHH:MM:SS (UTC), not 'yesterday'"),
    (["frobnicate"], "gpuwarden: unknown command 'frobnicate'"),
    (["list", "--bogus"], None),
]


@pytest.mark.parametrize("args,message", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_bad_usage_exits_2(args, message):
    r = cli(*args)
    assert (r.returncode, r.stdout) == (EXIT_USAGE, ""), r.stderr
    if message:
        assert r.stderr.split("\n")[0] == message
    else:
        assert "usage: gpuwarden " in r.stderr


@pytest.mark.parametrize("cmd", ["list", "show", "inventory", "quarantine", "release", "sanitize", "events",
                                 "audit"])
def test_help_for_each_command(cmd):
    r = cli(cmd, "--help")
    assert (r.returncode, r.stderr) == (EXIT_OK, "")
    assert r.stdout.startswith(f"usage: gpuwarden {cmd}")
    assert "exit codes:" in r.stdout
    assert cli(cmd, "-h").stdout == r.stdout
    top = cli("--help")
    assert re.search(rf"^  {cmd} +\S", top.stdout, re.M), top.stdout


# ---- events ----

EVENT_LINE = re.compile(r"^(\d+) +(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})  (\S+) +(\S+)  (.*)$")


def test_events_table(daemon):
    sub = Subscriber("--follow", "--endpoint", daemon.events)
    try:
        sub.sync(daemon)
        mark = len(sub.lines)
        daemon.result("quarantine", {"address": GPUS[0], "reason": "fan noise"})
        daemon.result("release", {"address": GPUS[0]})
        assert sub.wait(lambda ls: any(f"cleanup     {GPUS[0]}" in l for l in ls[mark:]))
    finally:
        rc, err = sub.stop()
    assert (rc, err) == (EXIT_OK, "")
    assert re.match(r"^SEQ +TIME \(UTC\) +KIND +ADDRESS +WHAT$", sub.lines[0])
    mine = [EVENT_LINE.match(l).groups() for l in sub.lines[mark:] if GPUS[0] in l]
    recs = daemon.result("audit", {"device": GPUS[0]})["records"][-4:]
    assert [r["event"] for r in recs] == ["quarantine", "release", "cleanup_started", "cleanup_passed"]
    actor = recs[0]["actor"]
    assert [(k, a, w) for _, _, k, a, w in mine[:4]] == [
        ("transition", GPUS[0], f"quarantine: sanitized -> quarantined by {actor}: fan noise"),
        ("transition", GPUS[0], f"release: quarantined -> discovered (dirty) by {actor}: released by the operator"),
        ("transition", GPUS[0], "cleanup_started: discovered -> discovered (dirty) by system"),
        ("transition", GPUS[0], "cleanup_passed: discovered -> sanitized by system"),
    ]
    assert [m[1] for m in mine[:4]] == [utc(r["time"], True) for r in recs]
    kind, addr, what = mine[4][2:]
    assert (kind, addr) == ("cleanup", GPUS[0])
    assert re.fullmatch(r"passed in \d+ ms \(8 steps\)", what), what
    seqs = [int(EVENT_LINE.match(l).group(1)) for l in sub.lines[1:]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))   # no gap


def test_events_json_lines_and_count(daemon):
    sub = Subscriber("-f", "json", "--follow", "--endpoint", daemon.events)
    try:
        sub.sync(daemon)
        mark = len(sub.lines)
        counted = Subscriber("-f", "json", "--count", "1", "--timeout", "60", "--endpoint", daemon.events)
        counted.sync(daemon, gpu=GPUS[1])   # it exits after its first event
        rc, err = counted.stop()
        assert (rc, err) == (EXIT_OK, "")
        assert len(counted.lines) == 1 and GPUS[1] in counted.lines[0]
        daemon.result("quarantine", {"address": GPUS[0], "reason": "x"})
        assert sub.wait(lambda ls: any('"quarantine"' in l for l in ls[mark:]))
    finally:
        rc, err = sub.stop()
    assert (rc, err) == (EXIT_OK, "")
    evs = [json.loads(l) for l in sub.lines]
    assert all("\n" not in l for l in sub.lines)
    q = next(e for e in evs if e.get("event") == "quarantine")
    assert list(q) == ["v", "seq", "boot", "time", "kind", "address", "event", "from", "to", "dirty", "actor",
                       "reason"]
    assert (q["v"], q["kind"], q["address"], q["from"], q["to"], q["dirty"], q["reason"]) == (
        [1, 0], "transition", GPUS[0], "sanitized", "quarantined", False, "x")
    c = next(e for e in evs if e["kind"] == "cleanup")
    assert list(c) == ["v", "seq", "boot", "time", "kind", "address", "result", "duration_ms", "steps"]
    assert c["result"] == "passed" and len(c["steps"]) == 8
    assert [e["seq"] for e in evs] == list(range(evs[0]["seq"], evs[0]["seq"] + len(evs)))


def test_events_without_follow_stop_when_quiet(daemon):
    r = cli("events", "--timeout", "0.3", "--endpoint", daemon.events)
    assert (r.returncode, r.stderr) == (EXIT_OK, "")
    assert r.stdout.split("\n")[1:] == [""]      # the header only
    r = cli("events", "--count", "2", "--timeout", "0.3", "--endpoint", daemon.events)
    assert r.returncode == EXIT_FAILURE
    assert r.stderr == "gpuwarden events: 0 of 2 events within 300 ms\n"


def test_events_report_a_daemon_restart(tmp_path):
    d = Daemon(tmp_path).start()
    sub = Subscriber("-f", "json", "--follow", "--endpoint", d.events)
    try:
        sub.sync(d)
        assert d.stop() == 0
        d = Daemon(tmp_path, state_dir=d.state_dir).start()
        n = len(sub.lines)
        sub.sync(d, gpu=GPUS[1])
        assert len(sub.lines) > n
    finally:
        rc, err = sub.stop()
        d.stop()
    assert rc == EXIT_OK
    assert "gpuwarden events: the daemon restarted (boot " in err


# ---- audit through the daemon ----

def test_audit_daemon_json_and_filters(daemon):
    daemon.result("quarantine", {"address": GPUS[1], "reason": "fan"})
    r = cli("audit", "--endpoint", daemon.read, "-f", "json")
    assert r.returncode == EXIT_OK, r.stderr
    got = json.loads(r.stdout)
    assert got == daemon.result("audit")
    assert list(got) == ["records", "truncated"]
    last = got["records"][-1]
    assert (last["address"], last["event"], last["from"], last["to"], last["reason"]) == (
        GPUS[1], "quarantine", "sanitized", "quarantined", "fan")
    r = cli("audit", "--daemon", "--device", "67:00.0", "--last", "2", "-f", "json",
            env={"GPUWARDEN_ENDPOINT": daemon.read})
    assert r.returncode == EXIT_OK, r.stderr
    got = json.loads(r.stdout)
    assert got["truncated"] is True
    assert [(x["address"], x["event"]) for x in got["records"]] == [(GPUS[1], "cleanup_passed"),
                                                                    (GPUS[1], "quarantine")]
    since = last["time"]
    got = json.loads(cli("audit", "--endpoint", daemon.read, "--since", str(since), "-f", "json").stdout)
    assert all(x["time"] >= since for x in got["records"]) and got["records"][-1] == last
    iso = utc(since - since % 1000).replace(" ", "T")
    got2 = json.loads(cli("audit", "--endpoint", daemon.read, "--since", iso, "-f", "json").stdout)
    assert got2["records"][-1] == last and all(x["time"] >= since - since % 1000 for x in got2["records"])


def test_audit_daemon_table_and_file_mode_still_there(daemon):
    daemon.result("quarantine", {"address": GPUS[0], "reason": "fan noise"})
    recs = daemon.result("audit")["records"]
    r = cli("audit", "--endpoint", daemon.read)
    assert r.returncode == EXIT_OK, r.stderr
    names, rows = table(r.stdout)
    assert names == ["TIME (UTC)", "DEVICE", "EVENT", "FROM", "TO", "ACTOR", "REASON"]
    assert rows == [{"TIME (UTC)": utc(x["time"]), "DEVICE": x["address"], "EVENT": x["event"],
                     "FROM": x["from"] or "-", "TO": x["to"] + ("+dirty" if x["dirty"] else ""),
                     "ACTOR": x["actor"], "REASON": x["reason"] or "-"} for x in recs]
    assert rows[-1]["TO"] == "quarantined" and rows[0]["FROM"] == "-" and rows[0]["TO"] == "discovered+dirty"
    # the log file itself, read directly (no daemon involved), has the same transitions
    f = cli("audit", "--state-dir", str(daemon.state_dir), "-f", "json")
    assert f.returncode == EXIT_OK, f.stderr
    assert [(x["device"]["address"], x["event"]) for x in json.loads(f.stdout)] == [
        (x["address"], x["event"]) for x in recs]


# ---- the end-to-end acceptance ----

def test_end_to_end_quarantine_show_events_restart(tmp_path):
    d = Daemon(tmp_path).start()
    sub = Subscriber("--follow", "-f", "json", "--endpoint", d.events)
    try:
        sub.sync(d)
        r = cli("quarantine", GPUS[1], "--reason", "x", "--endpoint", d.admin)
        assert r.returncode == EXIT_OK, r.stderr
        r = cli("show", GPUS[1], "--endpoint", d.read)
        assert r.returncode == EXIT_OK, r.stderr
        assert "state         quarantined\n" in r.stdout and "reason        x\n" in r.stdout
        assert sub.wait(lambda ls: any('"event":"quarantine"' in l for l in ls))
    finally:
        rc, err = sub.stop()
    assert (rc, err) == (EXIT_OK, "")
    q = [e for e in map(json.loads, sub.lines) if e.get("event") == "quarantine"]
    assert [(e["address"], e["from"], e["to"], e["reason"]) for e in q] == [(GPUS[1], "sanitized", "quarantined", "x")]
    assert d.stop() == 0

    d2 = Daemon(tmp_path, state_dir=d.state_dir).start()
    try:
        r = cli("show", GPUS[1], "-f", "json", "--endpoint", d2.read)
        assert r.returncode == EXIT_OK, r.stderr
        got = json.loads(r.stdout)
        assert (got["state"], got["reason"]) == ("quarantined", "x")
        _, rows = table(cli("list", "--endpoint", d2.read).stdout)
        assert [(x["ADDRESS"], x["STATE"], x["REASON"]) for x in rows] == [
            (GPUS[0], "sanitized", "-"), (GPUS[1], "quarantined", "x"), (GPUS[2], "sanitized", "-")]
    finally:
        assert d2.stop() == 0
