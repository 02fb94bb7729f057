"""Who may do what (issue 15 item 1), against the real daemon:

- a tcp:// admin endpoint serves only the CURVE keys of [daemon]
  curve_allowlist (a ZAP handler): a throwaway key pair cannot even say
  hello, a listed key can, and the audit log names it; the list is re-read at
  SIGHUP, in full or not at all (a bad line names FILE:LINE);
- a tcp:// admin endpoint without an allow-list refuses to start;
- `published` and `maintenance` are admin ops: `forbidden` on the read
  endpoint;
- the audit actor is what the kernel says (SO_PEERCRED uid and pid on ipc),
  whatever the client claims; the claim is kept beside it, in the evidence;
- the ipc admin socket is 0660 root:<admin_group>, and a peer that is
  neither root nor in that group is closed at accept (SO_PEERCRED), even when
  the socket file lets it connect.
"""

import grp
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import msgpack
import pytest
import zmq

from gwdaemon import Daemon, build_dir

GPUS = ["0000:1a:00.0", "0000:67:00.0", "0000:68:00.0"]   # x299-3xa6000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curve_call(endpoint, server_public, keys, op, args=None, actor=None, timeout=2000):
    """One request over CURVE with the client key pair `keys`; the reply, or None when none came
    (a refused handshake answers nothing)."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.curve_serverkey = server_public
    s.curve_publickey, s.curve_secretkey = keys
    s.connect(endpoint)
    try:
        req = {"v": [1, 0], "id": 7, "op": op, "args": args or {}}
        if actor:
            req["actor"] = actor
        s.send_multipart([b"", msgpack.packb(req)])
        if not s.poll(timeout):
            return None
        frames = s.recv_multipart()
        return msgpack.unpackb(frames[1])
    finally:
        s.close()


class TcpAdminDaemon(Daemon):
    """The daemon with its admin endpoint on tcp:// (CURVE); reads go to its ipc read endpoint."""

    def __init__(self, tmp, allowlist, extra=()):
        super().__init__(tmp)
        self.server_public, self.server_secret = zmq.curve_keypair()
        self.admin = f"tcp://127.0.0.1:{free_port()}"
        self.allowlist = allowlist
        self.extra = ["--curve-secret-key", self.server_secret.decode(),
                      "--curve-allowlist", str(allowlist)] + list(extra)

    def devices(self):
        """On the read endpoint: the admin one needs a key."""
        return self.result("devices", endpoint=self.read)["devices"]

    def admin_call(self, keys, op, args=None, **kw):
        return curve_call(self.admin, self.server_public, keys, op, args, **kw)

    def sighup(self, marker=("configuration reloaded", "configuration reload failed")):
        before = len(self.log.read_text())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline:
            new = self.log.read_text()[before:]
            if any(m in new for m in marker) and ("CURVE allow-list" in new or "reload failed" in new):
                return new
            time.sleep(0.05)
        raise AssertionError("no reload logged:\n" + self.log.read_text())


@pytest.fixture
def keys():
    return {name: zmq.curve_keypair() for name in ("alice", "bob", "dave", "stranger")}


@pytest.fixture
def tcp_daemon(tmp_path, keys):
    allow = tmp_path / "curve-clients"
    allow.write_text(f"# CURVE clients of the admin endpoint\n\nalice {keys['alice'][0].decode()}\n")
    d = TcpAdminDaemon(tmp_path, allow).start()
    yield d
    assert d.stop() == 0, d.log.read_text()


def state(d, address):
    return d.result("device", {"address": address}, endpoint=d.read)


def audit(d, address):
    return d.result("audit", {"device": address}, endpoint=d.read)["records"]


def test_unlisted_key_cannot_even_say_hello_on_the_tcp_admin_endpoint(tcp_daemon, keys):
    d = tcp_daemon
    before = state(d, GPUS[0])
    assert d.admin_call(keys["stranger"], "hello") is None
    assert d.admin_call(keys["stranger"], "quarantine", {"address": GPUS[0], "reason": "mine now"},
                        actor="uid=0(root)") is None
    assert state(d, GPUS[0]) == before
    assert all(r["event"] != "quarantine" for r in audit(d, GPUS[0]))
    log = d.log.read_text()
    assert f"public key {keys['stranger'][0].decode()} is not in the CURVE allow-list" in log, log


def test_listed_key_is_served_and_named_in_the_audit(tcp_daemon, keys):
    d = tcp_daemon
    hello = d.admin_call(keys["alice"], "hello")
    assert hello["ok"] and hello["result"]["endpoint"] == "admin", hello
    assert "curve" in hello["result"]["capabilities"]
    rep = d.admin_call(keys["alice"], "quarantine", {"address": GPUS[0], "reason": "fan noise"},
                       actor="uid=0(root) sudo=mallory")
    assert rep["ok"], rep
    assert rep["result"]["quarantined_by"] == "operator:key=alice(admin endpoint)"
    rec = audit(d, GPUS[0])[-1]
    assert rec["event"] == "quarantine" and rec["actor"] == "operator:key=alice(admin endpoint)", rec
    # what the client claimed is kept beside the actor, never as it
    assert rec["evidence"] == "client actor 'uid=0(root) sudo=mallory'", rec


def test_allowlist_reload_applies_in_full_or_not_at_all(tcp_daemon, keys):
    d = tcp_daemon
    allow = d.allowlist
    pub = {k: v[0].decode() for k, v in keys.items()}
    assert d.admin_call(keys["bob"], "hello") is None
    allow.write_text(f"alice {pub['alice']}\nbob {pub['bob']}\n")
    new = d.sighup()
    assert "CURVE allow-list " + str(allow) + ": 2 key(s)" in new, new
    assert d.admin_call(keys["bob"], "hello")["ok"]

    # a bad line: the whole reload is refused with FILE:LINE, and the running list stays (dave,
    # listed in the same file, gets nothing; bob keeps his access)
    allow.write_text(f"alice {pub['alice']}\nbob {pub['bob']}\ndave {pub['dave']}\ncarol not-a-z85-key\n")
    new = d.sighup()
    assert f"curve_allowlist: {allow}:4: carol: the public key is not 40 Z85 characters" in new, new
    assert "configuration reload failed (nothing changed)" in new, new
    assert d.admin_call(keys["dave"], "hello") is None
    assert d.admin_call(keys["bob"], "hello")["ok"]
    for text, why in ((f"bob {pub['bob']}\nbob {pub['dave']}\n", f"{allow}:2: the name 'bob' is listed twice"),
                      (f"bob {pub['bob']}\nrob {pub['bob']}\n", f"{allow}:2: rob: the key is listed already, as 'bob'"),
                      (f"bob {pub['bob']} extra\n", f"{allow}:1: expected '<name> <Z85 public key>', one a line"),
                      (f"b/b {pub['bob']}\n", f"{allow}:1: 'b/b' is not a key name")):
        allow.write_text(text)
        new = d.sighup()
        assert why in new and "configuration reload failed" in new, new

    # a key taken out: refused from then on
    allow.write_text(f"alice {pub['alice']}\n")
    assert ": 1 key(s)" in d.sighup()
    assert d.admin_call(keys["bob"], "hello") is None
    assert d.admin_call(keys["alice"], "hello")["ok"]


def test_tcp_admin_endpoint_without_allowlist_refuses_to_start(tmp_path):
    server_public, server_secret = zmq.curve_keypair()
    d = Daemon(tmp_path, extra=["--curve-secret-key", server_secret.decode()])
    d.admin = f"tcp://127.0.0.1:{free_port()}"
    for check in ([], ["--check-config"]):
        p = subprocess.run(d.argv() + check, capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
        assert (f"admin_endpoint {d.admin} is tcp:// but [daemon] curve_allowlist is not set" in p.stderr), p.stderr
    # a list that does not read refuses the start the same way, naming the line
    bad = tmp_path / "curve-clients"
    bad.write_text("alice tooshort\n")
    p = subprocess.run(d.argv() + ["--curve-allowlist", str(bad)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and f"{bad}:1: alice: the public key is not 40 Z85 characters" in p.stderr, p.stderr


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path).start()
    yield d
    assert d.stop() == 0, d.log.read_text()


@pytest.mark.parametrize("op,args", [
    ("published", None),
    ("maintenance", {"address": GPUS[0], "on": True, "reason": "disabled in Cyborg"}),
    ("maintenance", {"address": GPUS[0], "on": False, "reason": "enabled in Cyborg"}),
])
def test_published_and_maintenance_are_forbidden_on_the_read_endpoint(daemon, op, args):
    if op == "published":
        args = {"generation": daemon.result("inventory")["generation"]}
    before = daemon.devices()
    rep = daemon.call(op, args, endpoint=daemon.read)
    assert not rep["ok"] and rep["error"] == {
        "code": "forbidden", "field": "op", "message": f"op: '{op}' is not served on the read endpoint"}, rep
    assert daemon.devices() == before
    assert op not in daemon.result("hello", endpoint=daemon.read)["ops"]
    assert op in daemon.result("hello")["ops"]


def test_audit_actor_is_the_peers_uid_and_pid_whatever_the_client_claims(daemon):
    me = f"uid={os.getuid()}(root) pid={os.getpid()}"
    dev = daemon.result("quarantine", {"address": GPUS[1], "reason": "fan noise"}, actor="alice")
    assert dev["quarantined_by"] == f"operator:{me}(admin endpoint)", dev
    rec = daemon.result("audit", {"device": GPUS[1]})["records"][-1]
    assert rec["actor"] == f"operator:{me}(admin endpoint)" and rec["evidence"] == "client actor 'alice'", rec
    # no claim at all: the same actor, nothing beside it
    rec = daemon.result("release", {"address": GPUS[1]})
    rec = daemon.result("audit", {"device": GPUS[1]})["records"]
    release = [r for r in rec if r["event"] == "release"][-1]
    assert release["actor"] == f"operator:{me}(admin endpoint)" and release["evidence"] is None, release
    # maintenance keeps its fixed actor; who connected goes into its evidence
    daemon.result("maintenance", {"address": GPUS[2], "on": True, "reason": "x"}, actor="cyborg-agent cmp1")
    rec = daemon.result("audit", {"device": GPUS[2]})["records"][-1]
    assert rec["actor"] == "cyborg", rec
    assert rec["evidence"] == f"maintenance on the admin endpoint by {me}, client actor 'cyborg-agent cmp1'", rec


# ---- the ipc admin socket: file mode, group and SO_PEERCRED ----

def as_user(argv, group, extra_groups=()):
    """Run argv as nobody with primary group `group` and only `extra_groups` besides."""
    return subprocess.Popen(argv, user="nobody", group=group, extra_groups=list(extra_groups),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def shared_dir():
    # pytest's tmp_path is root's alone (0700 parents): nobody could not even reach a socket there.
    d = pathlib.Path(tempfile.mkdtemp(prefix="gw-auth-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_admin_socket_refuses_peers_neither_root_nor_in_admin_group(tmp_path, shared_dir):
    d = Daemon(tmp_path, extra=["--admin-group", "nogroup"])
    d.admin = f"ipc://{shared_dir}/admin.sock"
    d.start()
    try:
        path = d.admin[len("ipc://"):]
        st = os.stat(path)
        assert oct(st.st_mode & 0o777) == oct(0o660) and st.st_gid == grp.getgrnam("nogroup").gr_gid
        cli = [str(build_dir() / "gpuwarden"), "list", "--endpoint", d.admin, "--timeout", "2", "-f", "json"]
        # a member of the admin group, by its primary group or a supplementary one: served
        for group, extra in (("nogroup", ()), ("daemon", ("nogroup",))):
            p = as_user(cli, group, extra)
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, (group, extra, out, err)
        # the socket file opened to all by mistake: the kernel lets nobody connect, the daemon
        # closes the connection at once and logs who it was
        os.chmod(path, 0o666)
        p = as_user(cli, "daemon")
        out, err = p.communicate(timeout=30)
        assert p.returncode == 4, (out, err)
        log = d.log.read_text()
        assert (f"admin endpoint: connection refused: uid 65534 (pid {p.pid}, gid 1) is neither root nor in "
                f"group 'nogroup'") in log, log
        # root is served as ever
        assert d.result("hello")["endpoint"] == "admin"
    finally:
        assert d.stop() == 0, d.log.read_text()


def test_cli_over_tcp_with_its_key_files(tcp_daemon, keys, tmp_path):
    d = tcp_daemon
    files = {}
    for name, (public, secret) in keys.items():
        files[name] = (tmp_path / f"{name}.key", tmp_path / f"{name}.key_secret")
        files[name][0].write_text(f"# {name}'s public key\n{public.decode()}\n")
        files[name][1].write_text(secret.decode() + "\n")
    server = tmp_path / "server.key"
    server.write_text(d.server_public.decode() + "\n")

    def cli(*args, key=None, env=None):
        argv = [str(build_dir() / "gpuwarden"), *args, "--endpoint", d.admin, "--timeout", "2",
                "--server-key", str(server)]
        if key:
            argv += ["--public-key", str(files[key][0]), "--secret-key", str(files[key][1])]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                               env={**os.environ, **(env or {})})

    p = cli("quarantine", GPUS[2], "--reason", "bad fan", "--publish-wait", "0", key="alice")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert state(d, GPUS[2])["quarantined_by"] == "operator:key=alice(admin endpoint)"
    # the key files from the environment, as from the options
    p = cli("release", GPUS[2], env={"GPUWARDEN_PUBLIC_KEY": str(files["alice"][0]),
                                     "GPUWARDEN_SECRET_KEY": str(files["alice"][1])})
    assert p.returncode == 0, (p.stdout, p.stderr)
    # an unlisted key pair, or none (a throwaway pair): no answer at all
    for key in ("stranger", None):
        p = cli("sanitize", GPUS[1], key=key)
        assert p.returncode == 4, (key, p.stdout, p.stderr)
    # every key from the environment
    argv = [str(build_dir() / "gpuwarden"), "list", "--endpoint", d.admin, "--timeout", "2", "-f", "json"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={
        **os.environ, "GPUWARDEN_SERVER_KEY": str(server), "GPUWARDEN_PUBLIC_KEY": str(files["alice"][0]),
        "GPUWARDEN_SECRET_KEY": str(files["alice"][1])})
    assert p.returncode == 0 and len(json.loads(p.stdout)) == 3, (p.stdout, p.stderr)
    # a key file that holds no key: a usage error, said as such
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    argv = [str(build_dir() / "gpuwarden"), "list", "--endpoint", d.admin, "--server-key", str(bad)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and f"server key {bad}: expected one CURVE key, 40 Z85 characters" in p.stderr, p.stderr


def test_doctor_asks_a_tcp_daemon_with_the_same_key_files(tcp_daemon, keys, tmp_path):
    """`doctor` reaches the daemon as every other command does: over CURVE with --server-key,
    --public-key and --secret-key; an unlisted key pair gets no answer, said in its daemon check."""
    d = tcp_daemon
    server = tmp_path / "server.key"
    server.write_text(d.server_public.decode() + "\n")
    for name in ("alice", "stranger"):
        (tmp_path / f"{name}.key").write_text(keys[name][0].decode() + "\n")
        (tmp_path / f"{name}.key_secret").write_text(keys[name][1].decode() + "\n")

    def daemon_check(name):
        argv = [str(build_dir() / "gpuwarden"), "doctor", "-f", "json", "--timeout", "1",
                "--host-root", str(d.host), "--endpoint", d.admin, "--server-key", str(server),
                "--public-key", str(tmp_path / f"{name}.key"), "--secret-key", str(tmp_path / f"{name}.key_secret")]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert p.returncode in (0, 1), (p.returncode, p.stderr)
        return {c["name"]: c for c in json.loads(p.stdout)["checks"]}["daemon"]

    ok = daemon_check("alice")
    assert ok["status"] == "ok" and f"answers at {d.admin} (3 GPUs)" in ok["detail"], ok
    refused = daemon_check("stranger")
    assert refused["status"] == "fail" and f"does not answer at {d.admin}" in refused["detail"], refused


def test_shim_client_over_tcp_with_key_files(tcp_daemon, keys, tmp_path):
    """The Cyborg driver's and the Nova reconciler's client: CURVE key files from [gpuwarden]."""
    from gpuwarden_cyborg import client as gw_client
    from gpuwarden_cyborg import errors

    d = tcp_daemon
    for name, text in (("server", d.server_public), ("pub", keys["alice"][0]), ("sec", keys["alice"][1])):
        (tmp_path / name).write_text(f"# {name}\n{text.decode()}\n")

    class Group:
        curve_server_key_file = str(tmp_path / "server")
        curve_public_key_file = str(tmp_path / "pub")
        curve_secret_key_file = str(tmp_path / "sec")
    c = gw_client.Client(d.admin, timeout=2, retries=0, curve=gw_client.curve_from_conf(Group))
    try:
        assert c.call("hello")["endpoint"] == "admin"
        inv = d.result("inventory", endpoint=d.read)
        assert "promoted" in c.call("published", {"generation": inv["generation"]})
    finally:
        c.close()
    # a throwaway pair: no connection to the admin endpoint at all (the handshake is refused)
    Group.curve_public_key_file = Group.curve_secret_key_file = None
    c = gw_client.Client(d.admin, timeout=1, retries=0, curve=gw_client.curve_from_conf(Group))
    with pytest.raises(errors.DaemonUnreachable, match="cannot connect"):
        c.call("hello")
    c.close()
    # no server key: said at once
    with pytest.raises(errors.DaemonUnreachable, match="needs CURVE"):
        gw_client.Client(d.admin, timeout=1, retries=0).call("hello")
