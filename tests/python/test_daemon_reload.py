"""SIGHUP reloads the configuration file, and each change is either applied in
full or refused with a log line saying so (issue 15 item 4): options that
apply live take effect at once (and an option taken out of the file goes back
to its default, as a start would have it); options that need a restart keep
their running value, each named with both values; a file with an invalid
value changes nothing at all."""

import signal
import time

import pytest

from gwdaemon import Daemon

GPUS = ["0000:1a:00.0", "0000:67:00.0", "0000:68:00.0"]   # x299-3xa6000


@pytest.fixture
def start(tmp_path):
    """start(text): the daemon on a config file holding `text`; stopped after the test whatever
    happened. The host root and backend and rescan_interval_s come from the file: the test harness
    otherwise sets them with flags, and flags win over the file at a reload as at a start."""
    started = []

    def run(text):
        d = launch(tmp_path, text)
        started.append(d)
        return d
    yield run
    for d in started:
        if d.proc and d.alive():
            d.proc.kill()
            d.proc.wait()


def launch(tmp_path, text):
    d = Daemon(tmp_path)
    d.conf = tmp_path / "gpuwarden.conf"
    d.head = f"[daemon]\nhost_root = {d.host}\nhost_backend = simulated\n"
    d.conf.write_text(d.head + text)
    argv = d.argv() + ["--config", str(d.conf)]
    for flag in ("--rescan-interval", "--host-root", "--host-backend"):
        i = argv.index(flag)
        del argv[i:i + 2]
    d.argv = lambda: argv
    return d.start()


def reload(d, text):
    """Write the file (after the host's lines), SIGHUP, and return the log lines of that reload."""
    before = d.log.read_text()
    d.conf.write_text(d.head + text)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline:
        new = d.log.read_text()[len(before):]
        if "configuration reloaded" in new or "configuration reload failed" in new:
            return new
        time.sleep(0.05)
    raise AssertionError("no reload logged:\n" + d.log.read_text())


def traits(d):
    return sorted({t for dep in d.result("inventory")["deployables"] for t in dep["traits"]})


def test_live_options_apply_at_once_and_fully(start):
    d = start("[daemon]\nlog_level = info\nrescan_interval_s = 0\n")
    assert "CUSTOM_RELOADED" not in traits(d)
    scans = d.log.read_text().count("scan of ")
    assert scans == 1

    new = reload(d, "[daemon]\nlog_level = debug\nrescan_interval_s = 1\nreconcile_interval_s = 5\n"
                    "[cleanup]\nin_use_retry_s = 3\n[inventory]\nextra_traits = CUSTOM_RELOADED\n")
    for line in ("[daemon] log_level = debug applied (was info)",
                 "[daemon] rescan_interval_s = 1 applied (was 0)",
                 "[daemon] reconcile_interval_s = 5 applied (was 30)",
                 "[cleanup] in_use_retry_s = 3 applied (was 10)",
                 "[inventory] extra_traits = CUSTOM_RELOADED applied (was '')"):
        assert line in new, new
    assert "configuration reloaded from " + str(d.conf) + ": 5 change(s) applied" in new, new
    # applied in full: the new traits are in the inventory, and rescans run (from 0 = never)
    assert "CUSTOM_RELOADED" in traits(d)
    deadline = time.time() + 5
    while d.log.read_text().count("scan of ") < scans + 2 and time.time() < deadline:
        time.sleep(0.1)
    assert d.log.read_text().count("scan of ") >= scans + 2, d.log.read_text()

    # an option taken out of the file goes back to its default, as at a start
    new = reload(d, "[daemon]\nrescan_interval_s = 0\n")
    assert "[inventory] extra_traits = '' applied (was CUSTOM_RELOADED)" in new, new
    assert "[daemon] log_level = info applied (was debug)" in new, new
    assert "CUSTOM_RELOADED" not in traits(d)
    # nothing changed: said so
    assert "configuration reloaded from " + str(d.conf) + ": no change" in reload(d, "[daemon]\nrescan_interval_s = 0\n")
    assert d.stop() == 0, d.log.read_text()


def test_options_that_need_a_restart_are_refused_and_keep_their_running_value(start):
    d = start("[daemon]\nrescan_interval_s = 0\n")
    inv = d.result("inventory")
    assert inv["model"] == "per_gpu"
    new = reload(d, "[daemon]\nrescan_interval_s = 0\nlog_level = debug\nmax_message_bytes = 65536\n"
                    "[cleanup]\nworkers = 8\n[inventory]\nmodel = per_clique\n"
                    "[model 10de:2230]\nreset = bus\n")
    for line in ("[inventory] model = per_clique needs a restart: the running value per_gpu stays",
                 "[cleanup] workers = 8 needs a restart: the running value 4 stays",
                 "[daemon] max_message_bytes = 65536 needs a restart: the running value 1048576 stays",
                 "[model ...] sections changed: they need a restart; the running ones stay"):
        assert line in new, new
    assert "[daemon] log_level = debug applied (was info)" in new, new
    assert ": 1 change(s) applied, 4 refused (need a restart)" in new, new
    # nothing of them changed: the inventory keeps its model, hello its capabilities
    assert d.result("inventory")["model"] == "per_gpu"
    assert d.result("inventory")["generation"] == inv["generation"]
    assert "per_clique" not in d.result("hello")["capabilities"]
    # said again at the next reload, as long as the file and the running value differ
    assert "[inventory] model = per_clique needs a restart" in reload(
        d, "[daemon]\nrescan_interval_s = 0\n[inventory]\nmodel = per_clique\n")
    assert d.alive() and d.stop() == 0, d.log.read_text()


def test_an_invalid_value_refuses_the_whole_reload(start):
    d = start("[daemon]\nrescan_interval_s = 0\n")
    before = d.result("inventory")
    # a live change next to an invalid value: nothing applies
    new = reload(d, "[daemon]\nrescan_interval_s = 0\nlog_level = loud\n[inventory]\nextra_traits = CUSTOM_NO\n")
    assert "log_level must be err|warning|notice|info|debug, not 'loud'" in new, new
    assert "configuration reload failed (nothing changed); the running configuration stays" in new, new
    assert "applied" not in new
    assert d.result("inventory")["generation"] == before["generation"]
    # the simulated backend on the live host is refused at a reload as at a start
    new = reload(d, "[daemon]\nrescan_interval_s = 0\nhost_backend = simulated\nhost_root = /\n")
    assert "host_backend = simulated with host_root = / (the live host)" in new, new
    assert "configuration reload failed" in new
    new = reload(d, "[daemon]\nrescan_interval_s = 0\n[manage]\nvendors = zz10\n")
    assert "[manage] vendors: 'zz10' is not a 4-digit hex vendor id" in new, new
    assert "configuration reload failed" in new
    # and a good file afterwards applies
    assert "[inventory] extra_traits = CUSTOM_YES applied" in reload(
        d, "[daemon]\nrescan_interval_s = 0\n[inventory]\nextra_traits = CUSTOM_YES\n")
    assert "CUSTOM_YES" in traits(d)
    assert d.alive() and d.stop() == 0, d.log.read_text()
