# SPDX-License-Identifier: Apache-2.0
"""Following gpuwardend's event stream (proto/PROTOCOL.md §9) in a thread,
for the two Placement writers: the Cyborg driver (driver.py) and the Nova
reconciler (gpuwarden_nova).

A GPU that a VM released, or that an operator quarantined, must leave
Placement's offer at once, not at the next periodic pass (cyborg-agent's
``periodic_interval`` is 60 s); and the libvirt hook waits, at ``release
end``, for Placement to show the release before Nova frees the instance's
allocation (docs/libvirt.md). So both writers subscribe to every event: a
transition (a clean-up passed or failed, a quarantine, a release, an attach
or detach), a finished clean-up, a domain stopping or starting
(``attachment``). The listener only says *that* something happened; the
writer reads the daemon's whole state again, so a lost event (PUB drops at
its high-water mark, a slow joiner misses the start, the daemon restarts)
costs nothing but the wait for the next event or pass. Events that arrive
while a pass runs are coalesced into one more pass. A gap in ``seq`` or a
new ``boot`` (the daemon restarted) is logged and also starts a pass.
"""

import threading

import msgpack
import zmq
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: What a client accepts from the events endpoint (PROTOCOL.md §7).
MAX_EVENT_BYTES = 1024 * 1024


class Listener:
    """Calls ``on_event()`` in a thread after each batch of events from
    ``endpoint`` (a ZeroMQ PUB endpoint); exceptions it raises are logged
    and the listener carries on."""

    def __init__(self, endpoint, on_event, context=None,
                 name='gpuwarden-events'):
        self.endpoint = endpoint
        self._on_event = on_event
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name,
                                        daemon=True)
        self.batches = 0
        self.events = 0
        self.missed = 0
        self.restarts = 0
        self._boot = self._seq = None

    def start(self):
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _socket(self):
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_EVENT_BYTES)
        sock.setsockopt(zmq.SUBSCRIBE, b'')
        sock.connect(self.endpoint)
        return sock

    def _note(self, frames):
        """Count one message; keep track of seq and boot."""
        self.events += 1
        if len(frames) != 2:
            return
        try:
            body = msgpack.unpackb(frames[1], raw=False, max_map_len=256,
                                   max_array_len=65536, max_str_len=65536,
                                   max_bin_len=0, max_ext_len=0)
            seq, boot = int(body['seq']), int(body['boot'])
        except Exception:   # noqa: BLE001 - still an event: a pass follows
            return
        if self._boot is not None and boot != self._boot:
            self.restarts += 1
            LOG.info('gpuwarden: gpuwardend restarted (events boot %s)', boot)
        elif self._seq is not None and seq > self._seq + 1:
            self.missed += seq - self._seq - 1
            LOG.info('gpuwarden: missed %d gpuwardend events',
                     seq - self._seq - 1)
        self._boot, self._seq = boot, seq

    def _run(self):
        try:
            sock = self._socket()
        except zmq.ZMQError as exc:
            LOG.warning('gpuwarden: cannot subscribe to gpuwardend events at '
                        '%s (%s): Placement follows the daemon at each '
                        'periodic pass only', self.endpoint, exc)
            return
        LOG.info('gpuwarden: following gpuwardend events at %s',
                 self.endpoint)
        try:
            while not self._stop.is_set():
                if not sock.poll(200):
                    continue
                seen = False
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._note(frames)
                    seen = True
                if not seen:
                    continue
                self.batches += 1
                try:
                    self._on_event()
                except Exception as exc:  # the thread must live on
                    LOG.warning('gpuwarden: handling a gpuwardend event '
                                'failed: %s', exc)
        finally:
            sock.close(linger=0)
