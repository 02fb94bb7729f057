"""Following gpuwardend's event stream (PROTOCOL.md §9) in a thread.

cyborg-agent calls discover() once per ``periodic_interval`` (60 s by
default). A GPU that a VM released, or that an operator quarantined, must
leave Placement's offer at once, not up to a minute later; and the libvirt
hook waits, at ``release end``, for Placement to show the release before
Nova frees the instance's allocation (docs/libvirt.md). So the driver also
subscribes to the daemon's transitions and raises ``reserved`` as soon as
one arrives.

The listener only says *that* something changed: the driver reads the
whole inventory again (one request) rather than applying events one by
one, so a missed event (PUB drops at its high-water mark, a daemon
restart) costs nothing but the latency to the next event or cycle. Events
that arrive while a sync runs are coalesced into one more sync.
"""

import threading

import zmq
from oslo_log import log as logging

from gpuwarden_cyborg import protocol

LOG = logging.getLogger(__name__)

#: Topic prefixes (frame 0) that can change the inventory: lifecycle
#: transitions, and attachment changes (a domain that stops keeps its GPU
#: but no longer uses it: the daemon reserves it, PROTOCOL.md §9).
TOPICS = (b'transition/', b'attachment/')


class Listener:
    """Calls ``on_change()`` in a thread after each batch of transition or
    attachment events from ``endpoint`` (a ZeroMQ PUB endpoint).

    :param on_change: called with no arguments; exceptions are logged and
        the listener carries on.
    """

    def __init__(self, endpoint, on_change, context=None):
        self.endpoint = endpoint
        self._on_change = on_change
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name='gpuwarden-events', daemon=True)
        self.batches = 0

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
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_REPLY_BYTES)
        # Clean-up results come with a transition of their own.
        for topic in TOPICS:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        sock.connect(self.endpoint)
        return sock

    def _drain(self, sock):
        """Read every message already queued; True when one can change
        the inventory."""
        seen = False
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return seen
            seen = seen or (len(frames) == 2 and
                            frames[0].startswith(TOPICS))

    def _run(self):
        try:
            sock = self._socket()
        except zmq.ZMQError as exc:
            LOG.warning('gpuwarden: cannot subscribe to gpuwardend events '
                        'at %s (%s): Placement follows the daemon once per '
                        'agent cycle only', self.endpoint, exc)
            return
        LOG.info('gpuwarden: following gpuwardend events at %s',
                 self.endpoint)
        try:
            while not self._stop.is_set():
                if not sock.poll(200):
                    continue
                if not self._drain(sock):
                    continue
                self.batches += 1
                try:
                    self._on_change()
                except Exception as exc:  # the thread must live on
                    LOG.warning('gpuwarden: syncing Placement after a '
                                'daemon event failed: %s', exc)
        finally:
            sock.close(linger=0)
