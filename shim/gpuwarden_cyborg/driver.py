"""gpuwarden's Cyborg accelerator driver.

Enable with ``[agent] enabled_drivers = gpuwarden`` in cyborg.conf. The
agent calls :meth:`GPUWardenDriver.discover` at start and every
``[DEFAULT] periodic_interval`` seconds, then hands the returned list to the
conductor (``report_data``), which turns it into Placement providers.

The driver holds no policy: which GPUs exist, how they are grouped, their
traits and how many are reserved all come from gpuwardend. The driver
translates, refuses anything it cannot translate whole, and mirrors the
daemon's ``reserved`` into Placement (reservations.py): from discover(), and
from a thread that follows the daemon's events, so that a GPU leaves
Placement's offer when it leaves ``allocatable``, not a cycle later.
"""

import threading

from oslo_log import log as logging

from cyborg.accelerator.drivers.driver import GenericDriver
from cyborg.conf import CONF

from gpuwarden_cyborg import client as gw_client
from gpuwarden_cyborg import conf as gw_conf
from gpuwarden_cyborg import cyborg_compat
from gpuwarden_cyborg import errors
from gpuwarden_cyborg import events
from gpuwarden_cyborg import inventory
from gpuwarden_cyborg import objects
from gpuwarden_cyborg import reservations

LOG = logging.getLogger(__name__)

gw_conf.register_opts(CONF)


class GPUWardenDriver(GenericDriver):
    """Reports the GPUs that gpuwardend manages."""

    def __init__(self, placement_client=None):
        # Cyborg builds drivers with no arguments (stevedore
        # invoke_on_load); tests may pass a PlacementClient.
        self._placement = placement_client
        self._client = None
        self._mirror = None
        self._listener = None
        # discover() and the event listener both read the daemon and write
        # Placement: one at a time.
        self._lock = threading.Lock()
        # Attach handles per deployable in the list the previous discover()
        # returned: what Cyborg has had the chance to create.
        self._reported = {}

    # --- what Cyborg calls -------------------------------------------------

    def discover(self):
        """Return the DriverDevice list for this host, whole, or raise a
        :class:`~gpuwarden_cyborg.errors.GPUWardenError`."""
        self._follow_events()
        with self._lock:
            inv = self.fetch_inventory()
            cyborg_compat.check_model(inv)
            devices = objects.build(inv)
            self._publish(inv, self._reported, may_show=True)
            self._reported = {d.name: {h.info for h in d.attach_handles}
                              for d in inv.deployables}
        return devices

    def close(self):
        """Stop following events and close the daemon socket (cyborg-agent
        never calls it; tests and the printer do)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def update(self, control_path, image_path):
        """Firmware update: not offered. gpuwarden never writes GPU
        firmware (it only hashes the VBIOS to detect tampering), and Cyborg
        never calls this for GPUs. Returns False ("not updated")."""
        return False

    def get_stats(self):
        """Device stats: none. Cyborg never calls this; health, state and
        clean-up evidence are in ``gpuwarden list`` / ``show``. Returns an
        empty dict."""
        return {}

    # --- the parts, public for the printer and the tests -------------------

    def client(self):
        """One client (one DEALER socket) for the driver's life, rebuilt
        when the options change."""
        g = CONF.gpuwarden
        key = (g.endpoint, g.request_timeout, g.retries)
        if self._client is None or self._client_key != key:
            if self._client is not None:
                self._client.close()
            self._client = gw_client.Client(g.endpoint,
                                            timeout=g.request_timeout,
                                            retries=g.retries)
            self._client_key = key
        return self._client

    def fetch_inventory(self):
        result = self.client().call('inventory', {})
        return inventory.parse(result, host=CONF.gpuwarden.host)

    def mirror(self):
        if self._mirror is None:
            self._mirror = reservations.PlacementMirror(
                self.placement(), _compute_node_names)
        return self._mirror

    def _follow_events(self):
        endpoint = CONF.gpuwarden.events_endpoint
        if self._listener is None and endpoint:
            self._listener = events.Listener(endpoint,
                                             self.on_daemon_change).start()

    def on_daemon_change(self):
        """A transition happened in the daemon: raise what it raised, now.
        Nothing is lowered or shown here (see reservations.py)."""
        with self._lock:
            try:
                inv = self.fetch_inventory()
            except errors.GPUWardenError as exc:
                LOG.warning('gpuwarden: reading the inventory after a '
                            'daemon event failed: %s', exc)
                return
            self._publish(inv, None, may_show=False)

    def placement(self):
        if self._placement is None:
            # Imported here: it pulls in openstacksdk, and needs the
            # agent's [placement] credentials only when used.
            from cyborg.common import placement_client
            self._placement = placement_client.PlacementClient()
        return self._placement

    def _publish(self, inv, reported, may_show):
        """Mirror reserved into Placement, then tell the daemon which
        generation Placement now covers. Failures are logged, never raised:
        the list is still reported, and the next cycle tries again."""
        try:
            outcome = self.mirror().sync(inv, reported, may_show=may_show)
        except Exception as exc:
            LOG.warning('gpuwarden: no Placement client, reserved not '
                        'synced: %s', exc)
            return None
        if outcome.pending:
            LOG.info('gpuwarden: generation %d: waiting in Placement: %s',
                     inv.generation, outcome.pending)
        if not outcome.covered:
            LOG.warning('gpuwarden: generation %d not covered in Placement '
                        '(%s); not marking it published', inv.generation,
                        outcome.exposed_short)
            return outcome
        if inv.confirmed:
            return outcome      # the daemon knows already: no request
        try:
            res = self.client().call('published',
                                     {'generation': inv.generation})
            LOG.info('gpuwarden: generation %d published; gpuwardend is at '
                     '%s, promoted to allocatable: %s', inv.generation,
                     res.get('generation') if isinstance(res, dict) else res,
                     res.get('promoted') if isinstance(res, dict) else None)
        except errors.GPUWardenError as exc:
            LOG.warning('gpuwarden: telling gpuwardend that generation %d '
                        'was published failed: %s', inv.generation, exc)
        return outcome


def _compute_node_names():
    """The names cyborg-agent tries for its compute node provider, in its
    order (AgentManager._get_resource_provider_name)."""
    agent = getattr(CONF, 'agent', None)
    return [getattr(agent, 'resource_provider_name', None), CONF.host]
