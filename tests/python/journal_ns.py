"""Run inside `unshare --mount` by test_daemon_journal.py: a tmpfs over /run
(this mount namespace only, the host's /run is untouched) with a journal
socket of ours at /run/systemd/journal/socket, where libsystemd's
sd_journal_sendv() sends; gpuwardend started with $JOURNAL_STREAM naming its
stderr, a GPU cleaned up; prints the entries received as JSON, and the
daemon's stderr."""

import json
import os
import socket
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from gwdaemon import Daemon  # noqa: E402


def parse(dgram):
    """The journal's native protocol: KEY=VALUE lines, or KEY, a newline, a
    little-endian 64-bit length and the value (for values with newlines)."""
    entry, i = {}, 0
    while i < len(dgram):
        nl = dgram.index(b"\n", i)
        line = dgram[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            k = line
            (n,) = struct.unpack_from("<Q", dgram, nl + 1)
            v = dgram[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        entry[k.decode()] = v.decode()
    return entry


def main(tmp):
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    os.makedirs("/run/systemd/journal")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/run/systemd/journal/socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    # Read as journald does, all along: a unix datagram socket queues only a
    # few datagrams (net.unix.max_dgram_qlen) before the sender blocks.
    entries = []
    stop = threading.Event()

    def reader():
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                entries.append(parse(sock.recv(1 << 20)))
            except socket.timeout:
                pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    d = Daemon(tmp, extra=["--log-level", "debug"])
    d.log.touch()
    st = os.stat(d.log)
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    d.start()
    d.result("sanitize", {"address": "0000:67:00.0"})
    d.wait(lambda ds: all(not x["cleaning"] for x in ds))
    rc = d.stop()
    stop.set()
    t.join()
    print(json.dumps({"rc": rc, "entries": entries, "stderr": d.log.read_text()}))


if __name__ == "__main__":
    main(sys.argv[1])
