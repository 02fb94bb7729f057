"""The manual pages, the bash completion and the output formats of the CLI
and the daemon (issue 16 item 7).

The pages are what the build generated (gpuwarden help --man, gpuwardend
--print-man 8|5), rendered with `man -l` as an operator reads them; each
option that a program's --help lists must be in its page, and each option a
page names must be one the program accepts (probed with the program). The
completion is sourced into bash and asked as bash asks it. yaml output is
read back with PyYAML, json with json, and compared."""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from gwdaemon import Daemon, build_dir

HOST = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hosts", "x299-3xa6000")
GPUS = ["0000:1a:00.0", "0000:67:00.0", "0000:68:00.0"]
OPTION = re.compile(r"^\s+(?:-([a-zA-Z]), )?--([a-z][a-z0-9-]*)", re.M)


def run(*args, env=None, **kw):
    e = dict(os.environ)
    for k in ("GPUWARDEN_ENDPOINT", "GPUWARDEN_EVENTS_ENDPOINT"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=e, timeout=60, **kw)


def cli(*args, **kw):
    return run(build_dir() / "gpuwarden", *args, **kw)


def render(page):
    """The page as `man -l` shows it, wide enough that no option is broken;
    man's own warnings (groff -ww) must be none."""
    if not shutil.which("man"):
        pytest.fail("man is missing (scripts/bootstrap installs man-db)")
    env = {"MANWIDTH": "200", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    r = run("man", "--warnings", "-l", build_dir() / page, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", f"{page}: {r.stderr}"
    # No overstrike (bold/underline) sequences, plain hyphens.
    return re.sub(r".\x08", "", r.stdout).replace("\u2010", "-").replace("\u2212", "-")


def commands():
    top = cli("--help").stdout
    block = top.split("commands:\n")[1].split("\n\n")[0]
    return [line.split()[0] for line in block.splitlines()]


def help_options(cmd):
    r = cli(cmd, "--help")
    assert r.returncode == 0, r.stderr
    opts = r.stdout.split("\noptions:\n", 1)
    assert len(opts) == 2, f"{cmd} --help has no options section:\n{r.stdout}"
    return {m.group(2) for m in OPTION.finditer(opts[1].split("\n\nexit codes")[0])}


def man_sections(text):
    """COMMANDS subsections of gpuwarden(1): name -> text."""
    body = text.split("\nCOMMANDS\n", 1)[1].split("\nENVIRONMENT\n", 1)[0]
    parts = re.split(r"^   (\S+)\n", body, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


# ---- gpuwarden(1) ----

def test_cli_man_page_renders_and_names_every_command():
    text = render("gpuwarden.1")
    assert text.startswith("GPUWARDEN(1)")
    for head in ("NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS", "OUTPUT FORMATS", "COMMANDS", "EXIT STATUS",
                 "SEE ALSO"):
        assert f"\n{head}\n" in text, head
    assert sorted(man_sections(text)) == sorted(commands())


def test_cli_man_page_is_what_the_cli_prints():
    r = cli("help", "--man")
    assert r.returncode == 0 and (build_dir() / "gpuwarden.1").read_text() == r.stdout


@pytest.mark.parametrize("cmd", commands())
def test_cli_man_page_has_every_option_of_each_command(cmd):
    section = man_sections(render("gpuwarden.1"))[cmd]
    in_man = {m.group(2) for m in OPTION.finditer(section)}
    in_help = help_options(cmd)
    assert in_help - in_man == set(), f"{cmd}: in --help, missing from gpuwarden(1)"
    assert in_man - in_help == set(), f"{cmd}: in gpuwarden(1), not in --help"
    # And each is one the command's parser takes: an unknown option is
    # refused before --help is reached, a known one is not.
    for opt in in_man:
        r = cli(cmd, f"--{opt}=x" if re.search(rf"--{opt} [A-Z]", section) else f"--{opt}", "--help",
                stdin=subprocess.DEVNULL)
        assert "unknown option" not in r.stderr and "unrecognized option" not in r.stderr, (cmd, opt, r.stderr)
    assert "unknown option" in cli(cmd, "--no-such-option", stdin=subprocess.DEVNULL).stderr


def test_global_options_are_in_the_page_and_accepted_before_the_command():
    text = render("gpuwarden.1")
    glob = text.split("\nGLOBAL OPTIONS\n", 1)[1].split("\nOUTPUT FORMATS\n", 1)[0]
    names = {m.group(2) for m in OPTION.finditer(glob)}
    assert {"endpoint", "timeout", "format", "json", "column", "help", "version"} <= names
    top = cli("--help").stdout.split("global options")[1]
    assert {m.group(2) for m in OPTION.finditer(top)} == names


# ---- gpuwardend(8), gpuwarden.conf(5) ----

def daemon_flags():
    r = run(build_dir() / "gpuwardend", "--help")
    assert r.returncode == 0, r.stderr
    return {m.group(1) for m in re.finditer(r"^  --([a-z][a-z0-9-]*)", r.stdout, re.M)}


def test_daemon_man_page_has_every_flag_and_only_flags_it_takes():
    text = render("gpuwardend.8")
    assert text.startswith("GPUWARDEND(8)")
    opts = text.split("\nOPTIONS\n", 1)[1].split("\nSIGNALS\n", 1)[0]
    in_man = {m.group(1) for m in re.finditer(r"^       --([a-z][a-z0-9-]*)", opts, re.M)}
    flags = daemon_flags()
    assert len(flags) > 30
    assert flags - in_man == set(), "in gpuwardend --help, missing from gpuwardend(8)"
    assert in_man - flags == set(), "in gpuwardend(8), not in --help"
    for flag in in_man:   # getopt's own complaint for a flag it does not take
        arg = {"help": [], "version": [], "print-man": ["8"]}.get(flag, ["1"])
        r = run(build_dir() / "gpuwardend", f"--{flag}", *arg, "--help")
        assert "unrecognized option" not in r.stderr, (flag, r.stderr)
    assert "unrecognized option" in run(build_dir() / "gpuwardend", "--no-such-flag", "--help").stderr
    assert "GPU_ADDRESS=" in text and "STEP=" in text


def test_config_man_page_has_every_section_and_key_of_the_sample():
    text = render("gpuwarden.conf.5")
    assert text.startswith("GPUWARDEN.CONF(5)")
    sample = run(build_dir() / "gpuwardend", "--print-config").stdout
    keys = re.findall(r"^([a-z_]+) = ", sample, re.M)
    sections = re.findall(r"^\[([a-z]+)\]$", sample, re.M)
    assert len(keys) > 30 and sections
    opts = text.split("\nOPTIONS\n", 1)[1].split("\nEXAMPLE\n", 1)[0]
    assert re.findall(r"^   \[([a-z]+)\]$", opts, re.M) == sections
    # A short key shares its line with the text (roff's .TP).
    in_man = re.findall(r"^       ([a-z_]+)(?:$| +Flag --)", opts, re.M)
    assert in_man == keys, set(keys) ^ set(in_man)
    for key in keys:   # each with its flag
        flag = re.search(rf"^{key} = .*", sample, re.M) and re.search(
            rf"# .*\(flag --([a-z-]+)\)\n{key} = ", sample).group(1)
        assert f"Flag --{flag}:" in opts, key
    # The [model] keys, from the sample the page quotes whole.
    assert "scrub_verify_fraction" in text.split("\nEXAMPLE\n", 1)[1]


def test_print_man_refuses_other_sections():
    r = run(build_dir() / "gpuwardend", "--print-man", "3")
    assert r.returncode == 2 and "8 (gpuwardend) or 5 (gpuwarden.conf)" in r.stderr


# ---- bash completion ----

def complete(*words):
    """What bash completes for the last word after `words` (the last may be
    partial), with the generated script sourced."""
    script = build_dir() / "gpuwarden.bash-completion"
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in ("gpuwarden",) + words)
    prog = (f"source '{script}'\nCOMP_WORDS=({quoted})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
            "_gpuwarden\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (r.stderr) == ""
    return sorted(x for x in r.stdout.split("\n") if x)


def test_completion_is_what_the_cli_prints():
    assert (build_dir() / "gpuwarden.bash-completion").read_text() == cli("complete").stdout


def test_completion_of_commands_options_and_values(tmp_path):
    assert complete("") == sorted(commands())
    assert complete("qu") == ["quarantine"]
    assert complete("list", "--st") == ["--state"]
    assert complete("list", "--state", "a") == ["allocatable", "attached"]
    assert complete("show", "-f", "") == ["json", "table", "value", "yaml"]
    assert complete("discover", "--format", "y") == ["yaml"]
    assert complete("nova-config", "-f", "") == ["conf", "json", "value", "yaml"]
    # global options before the command: skipped with their argument
    assert complete("--endpoint", "ipc:///x", "-f", "json", "li") == ["list"]
    assert complete("-f", "") == ["json", "table", "value", "yaml"]
    assert "--version" in complete("--")
    (tmp_path / "tree").mkdir()
    assert complete("discover", "--host-root", str(tmp_path / "tr")) == [str(tmp_path / "tree")]
    assert complete("hook", "") == ["qemu"]
    assert complete("help", "rel") == ["release"]


@pytest.mark.parametrize("cmd", commands())
def test_completion_offers_every_option_of_each_command(cmd):
    assert {w[2:] for w in complete(cmd, "--")} == help_options(cmd)


# ---- output formats and global options ----

def test_discover_yaml_and_value_are_the_json():
    data = json.loads(cli("discover", "--host-root", HOST, "-f", "json").stdout)
    y = cli("discover", "--host-root", HOST, "-f", "yaml")
    assert y.returncode == 0, y.stderr
    assert yaml.safe_load(y.stdout) == data
    assert json.loads(cli("discover", "--host-root", HOST, "--json").stdout) == data
    v = cli("discover", "--host-root", HOST, "-f", "value", "-c", "address", "-c", "numa_node", "-c", "clique")
    assert v.stdout.splitlines() == [f"{g['address']} {g['numa_node']} {g['clique'] if g['clique'] is not None else '-'}"
                                     for g in data["gpus"]]
    c = json.loads(cli("discover", "--host-root", HOST, "-f", "json", "-c", "address", "-c", "reset_methods").stdout)
    assert c == [{"address": g["address"], "reset_methods": g["reset_methods"]} for g in data["gpus"]]
    bad = cli("discover", "--host-root", HOST, "-c", "adress")
    assert bad.returncode == 2 and bad.stderr.startswith("gpuwarden discover: no column 'adress' (address, ")


def test_yaml_strings_that_look_like_other_types_stay_strings():
    """A PCI address like 0000:00:02.0 is a sexagesimal number to YAML 1.1, and
    "yes", "0300" or "null" are a boolean, an integer and null: quoted."""
    data = json.loads(cli("nova-config", "--host-root", HOST, "-f", "json").stdout)
    y = cli("nova-config", "--host-root", HOST, "-f", "yaml")
    assert y.returncode == 0, y.stderr
    assert yaml.safe_load(y.stdout) == data


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path).start()
    yield d
    assert d.stop() == 0, d.log.read_text()


def test_global_options_before_or_after_the_command(daemon):
    after = cli("list", "--endpoint", daemon.read, "-f", "json")
    before = cli("--endpoint", daemon.read, "-f", "json", "list")
    mixed = cli("--endpoint", daemon.read, "list", "--json")
    eq = cli(f"--endpoint={daemon.read}", "--timeout", "10", "-fjson", "list")
    assert after.returncode == before.returncode == mixed.returncode == eq.returncode == 0, before.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout) == json.loads(mixed.stdout) == \
        json.loads(eq.stdout)
    # the later one wins
    assert cli("-f", "json", "list", "--endpoint", daemon.read, "-f", "table").stdout.startswith("ADDRESS ")
    # before a command that does not take it: that command's usage error
    r = cli("--endpoint", daemon.read, "discover", "--host-root", HOST)
    assert r.returncode == 2 and r.stderr.startswith("gpuwarden discover: unknown option '--endpoint'")
    r = cli("--bogus", "list")
    assert r.returncode == 2 and r.stderr.startswith("gpuwarden: unknown global option '--bogus'")
    assert cli("--endpoint").returncode == 2


def test_list_and_show_in_every_format(daemon):
    devs = json.loads(cli("list", "--endpoint", daemon.read, "-f", "json").stdout)
    assert [d["address"] for d in devs] == GPUS
    assert yaml.safe_load(cli("list", "--endpoint", daemon.read, "-f", "yaml").stdout) == devs
    value = cli("list", "--endpoint", daemon.read, "-f", "value", "-c", "address", "-c", "state", "-c", "dirty",
                "-c", "domain").stdout
    assert value.splitlines() == [f"{d['address']} {d['state']} {str(d['dirty']).lower()} -" for d in devs]
    table = cli("list", "--endpoint", daemon.read, "-c", "address", "-c", "state").stdout.splitlines()
    assert table[0].split() == ["address", "state"] and [l.split() for l in table[1:]] == \
        [[d["address"], d["state"]] for d in devs]
    one = json.loads(cli("show", GPUS[1], "--endpoint", daemon.read, "-f", "json").stdout)
    assert yaml.safe_load(cli("show", GPUS[1], "--endpoint", daemon.read, "-f", "yaml").stdout) == one
    lines = cli("show", GPUS[1], "--endpoint", daemon.read, "-f", "value", "-c", "address", "-c", "numa_node",
                "-c", "identity").stdout.splitlines()
    assert lines[:2] == [GPUS[1], str(one["numa_node"])]
    assert json.loads(lines[2]) == one["identity"]
    inv = json.loads(cli("inventory", "--endpoint", daemon.read, "--json").stdout)
    assert yaml.safe_load(cli("--endpoint", daemon.read, "inventory", "-f", "yaml").stdout) == inv
    rows = cli("inventory", "--endpoint", daemon.read, "-f", "value", "-c", "name", "-c", "gpus").stdout
    assert rows.splitlines() == [f"{d['name']} {','.join(d['gpus'])}" for d in inv["deployables"]]


def test_audit_and_device_commands_take_the_formats(daemon):
    q = cli("quarantine", GPUS[0], "--reason", "fan: noise # loud", "--publish-wait", "0", "-f", "yaml",
            "--endpoint", daemon.admin)
    assert q.returncode == 0, q.stderr
    dev = yaml.safe_load(q.stdout)
    assert dev["address"] == GPUS[0] and dev["state"] == "quarantined" and dev["reason"] == "fan: noise # loud"
    recs = json.loads(cli("audit", "--endpoint", daemon.read, "-f", "json").stdout)
    assert yaml.safe_load(cli("audit", "--daemon", "-f", "yaml", env={"GPUWARDEN_ENDPOINT": daemon.read}).stdout) \
        == recs
    last = cli("--endpoint", daemon.read, "audit", "--last", "1", "-f", "value", "-c", "address", "-c", "event")
    assert last.stdout == f"{GPUS[0]} quarantine\n", last.stderr
    f = cli("audit", "--state-dir", daemon.state_dir, "-f", "yaml")
    assert f.returncode == 0, f.stderr
    assert yaml.safe_load(f.stdout) == json.loads(cli("audit", "--state-dir", daemon.state_dir, "--json").stdout)
