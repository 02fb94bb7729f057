# SPDX-License-Identifier: Apache-2.0
"""A strict client for gpuwardend's protocol (proto/PROTOCOL.md §1, §4).

As the spec asks of long-lived clients: a DEALER socket with ZMQ_LINGER 0,
ZMQ_IMMEDIATE 1 (a daemon that is not there is a prompt send timeout, not
a silent queue) and ZMQ_MAXMSGSIZE 8 MiB; one request in flight; frames
``[empty][body]``; replies matched by ``id`` (late ones dropped); a fresh
socket after a timeout or a bad reply.
"""

import itertools
import os
import time

import zmq

from gpuwarden_cyborg import errors
from gpuwarden_cyborg import protocol


class Client:
    """Talks to one gpuwardend endpoint.

    :param endpoint: ZeroMQ endpoint, e.g. ``ipc:///run/gpuwarden/read.sock``.
    :param timeout: seconds to wait for one reply.
    :param retries: further attempts after an unreachable or timed-out one.
    :param curve: for a ``tcp://`` endpoint (CURVE, PROTOCOL.md §1):
        ``(server_public, public, secret)``, Z85 keys; the client's pair may
        be ``None`` (a throwaway pair, which only a read endpoint serves: the
        admin endpoint serves the keys of the daemon's curve_allowlist).
    """

    def __init__(self, endpoint, timeout=5.0, retries=2, context=None,
                 curve=None):
        self.endpoint = endpoint
        self.curve = curve
        self.timeout = float(timeout)
        self.retries = int(retries)
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._sock = None

    def close(self):
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def call(self, op, args=None):
        """Send one request and return its ``result``.

        Retries (each on a fresh socket) only what another attempt can
        fix: an endpoint that is not there and a reply that did not come.
        A reply that came and is wrong (garbage, an error, another major
        version) is final: asking again would get the same answer.
        """
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.1 * 2 ** (attempt - 1), 1.0))
            try:
                return self._attempt(op, {} if args is None else args)
            except (errors.DaemonUnreachable, errors.DaemonTimeout) as exc:
                last = exc
        raise last

    def _check_reachable(self):
        # A missing ipc socket file is the daemon not running (or another
        # path configured): say that, rather than a bare timeout.
        if self.endpoint.startswith('ipc://'):
            path = self.endpoint[len('ipc://'):]
            if not path.startswith('@') and not os.path.exists(path):
                raise errors.DaemonUnreachable(
                    f"gpuwardend is not listening at {self.endpoint}: "
                    f"{path} does not exist (is gpuwardend running? does "
                    f"[gpuwarden] endpoint match its read_endpoint?)")

    def _socket(self):
        if self._sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_REPLY_BYTES)
            try:
                self._set_curve(sock)
                sock.connect(self.endpoint)
            except zmq.ZMQError as exc:
                sock.close(linger=0)
                raise errors.DaemonUnreachable(
                    f"cannot connect to gpuwardend at {self.endpoint}: "
                    f"{exc}") from exc
            self._sock = sock
        return self._sock

    def _set_curve(self, sock):
        if not self.endpoint.startswith('tcp://'):
            return
        server, public, secret = self.curve or (None, None, None)
        if not server:
            sock.close(linger=0)
            raise errors.DaemonUnreachable(
                f"{self.endpoint}: a tcp:// endpoint needs CURVE: the "
                f"daemon's public key ([gpuwarden] curve_server_key_file)")
        if not (public and secret):
            public, secret = zmq.curve_keypair()
        sock.curve_serverkey = _key(server)
        sock.curve_publickey = _key(public)
        sock.curve_secretkey = _key(secret)

    def _attempt(self, op, args):
        self._check_reachable()
        req_id = next(self._ids)
        body = protocol.encode_request(req_id, op, args)
        try:
            return self._exchange(op, req_id, body)
        except errors.GPUWardenError:
            # Whatever state the socket is in now (a reply may still be
            # on its way), the next call starts clean.
            self.close()
            raise

    def _exchange(self, op, req_id, body):
        sock = self._socket()
        deadline = time.monotonic() + self.timeout

        def remaining_ms():
            return max(0, int((deadline - time.monotonic()) * 1000))

        if not sock.poll(remaining_ms(), zmq.POLLOUT):
            # ZMQ_IMMEDIATE: no connection came up (a stale socket file
            # left by a daemon that died, a refused connection).
            raise errors.DaemonUnreachable(
                f"cannot connect to gpuwardend at {self.endpoint} within "
                f"{self.timeout:g} s (is gpuwardend running?)")
        sock.send_multipart([b'', body], zmq.NOBLOCK)
        while True:
            if not sock.poll(remaining_ms(), zmq.POLLIN):
                raise errors.DaemonTimeout(
                    f"gpuwardend at {self.endpoint} did not answer {op!r} "
                    f"within {self.timeout:g} s")
            frames = sock.recv_multipart(zmq.NOBLOCK)
            if len(frames) != 2 or frames[0] != b'':
                raise errors.ProtocolError(
                    f"reply to {op!r} is {len(frames)} frames, expected "
                    f"[empty][body]")
            msg = protocol.unpack(frames[1])
            rid = protocol.reply_id(msg)
            if rid is None or rid == req_id:
                return protocol.check_reply(msg, op)
            # A late reply to an earlier, timed-out request: drop it.


def _key(k):
    return k.encode() if isinstance(k, str) else k


def read_key_file(path):
    """A CURVE key (Z85) from a file: its first line that is neither blank
    nor a ``#`` comment, which must be 40 characters."""
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            if len(line) != 40:
                break
            return line
    raise errors.GPUWardenError(
        f'{path}: expected one CURVE key, 40 Z85 characters')


def curve_from_conf(group):
    """(server_public, public, secret) from the [gpuwarden] key file options,
    or None when no server key is configured."""
    if not group.curve_server_key_file:
        return None
    return (read_key_file(group.curve_server_key_file),
            read_key_file(group.curve_public_key_file)
            if group.curve_public_key_file else None,
            read_key_file(group.curve_secret_key_file)
            if group.curve_secret_key_file else None)
