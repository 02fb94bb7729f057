"""gpuwarden's Cyborg accelerator driver.

Enable with ``[agent] enabled_drivers = gpuwarden`` in cyborg.conf. The
agent calls :meth:`GPUWardenDriver.discover` at start and every
``[DEFAULT] periodic_interval`` seconds, then hands the returned list to the
conductor (``report_data``), which turns it into Placement providers.

The driver holds no policy: which GPUs exist, how they are grouped, their
traits and how many are reserved all come from gpuwardend. The driver
translates, refuses anything it cannot translate whole, and mirrors the
daemon's ``reserved`` into Placement.
"""

from oslo_log import log as logging

from cyborg.accelerator.drivers.driver import GenericDriver
from cyborg.conf import CONF

from gpuwarden_cyborg import client as gw_client
from gpuwarden_cyborg import conf as gw_conf
from gpuwarden_cyborg import errors
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
        # Attach handles per deployable in the list the previous discover()
        # returned: what Cyborg has had the chance to create.
        self._reported = {}

    # --- what Cyborg calls -------------------------------------------------

    def discover(self):
        """Return the DriverDevice list for this host, whole, or raise a
        :class:`~gpuwarden_cyborg.errors.GPUWardenError`."""
        inv = self.fetch_inventory()
        devices = objects.build(inv)
        self._publish(inv)
        self._reported = {d.name: {h.info for h in d.attach_handles}
                          for d in inv.deployables}
        return devices

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

    def placement(self):
        if self._placement is None:
            # Imported here: it pulls in openstacksdk, and needs the
            # agent's [placement] credentials only when used.
            from cyborg.common import placement_client
            self._placement = placement_client.PlacementClient()
        return self._placement

    def _publish(self, inv):
        """Mirror reserved into Placement, then tell the daemon which
        generation Placement now shows. Failures are logged, never raised:
        the list is still reported, and the next cycle tries again."""
        try:
            outcome = reservations.sync(self.placement(), inv,
                                        self._reported)
        except Exception as exc:
            LOG.warning('gpuwarden: no Placement client, reserved not '
                        'synced: %s', exc)
            return
        if not outcome.complete:
            LOG.info('gpuwarden: generation %d not fully in Placement yet '
                     '(%s); not marking it published', inv.generation,
                     outcome.pending)
            return
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
