# SPDX-License-Identifier: Apache-2.0
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

import dataclasses
import threading
import time

from oslo_log import log as logging

from cyborg.accelerator.drivers.driver import GenericDriver
from cyborg.conf import CONF

from gpuwarden_cyborg import client as gw_client
from gpuwarden_cyborg import conf as gw_conf
from gpuwarden_cyborg import cyborg_compat
from gpuwarden_cyborg import cyborg_status
from gpuwarden_cyborg import errors
from gpuwarden_cyborg import events
from gpuwarden_cyborg import inventory
from gpuwarden_cyborg import objects
from gpuwarden_cyborg import reservations

LOG = logging.getLogger(__name__)

#: Keys of the inventory result that move without its content changing.
_VOLATILE = ('revision', 'published_revision')

gw_conf.register_opts(CONF)


class GPUWardenDriver(GenericDriver):
    """Reports the GPUs that gpuwardend manages."""

    def __init__(self, placement_client=None, cyborg_api=None):
        # Cyborg builds drivers with no arguments (stevedore
        # invoke_on_load); tests may pass a PlacementClient and a
        # cyborg_status.CyborgAPI.
        cyborg_compat.log_status()
        self._placement = placement_client
        self._cyborg = cyborg_api
        # PCI addresses of the devices Cyborg last said are maintaining,
        # and when it was asked (monotonic; None: never).
        self._maintaining = set()
        self._cyborg_asked = None
        self._client = None
        self._admin = None          # on the admin endpoint: published, maintenance
        self._admin_key = None
        self._mirror = None
        self._listener = None
        # discover() and the event listener both read the daemon and write
        # Placement: one at a time.
        self._lock = threading.Lock()
        # Attach handles per deployable in the list the previous discover()
        # returned: what Cyborg has had the chance to create.
        self._reported = {}
        # The last inventory parsed, and Cyborg's objects built for it.
        self._parsed = None
        self._built = None

    # --- what Cyborg calls -------------------------------------------------

    def discover(self):
        """Return the DriverDevice list for this host, whole, or raise a
        :class:`~gpuwarden_cyborg.errors.GPUWardenError`."""
        self._follow_events()
        with self._lock:
            inv = self.fetch_inventory()
            cyborg_compat.check_model(inv)
            tree = self._read_tree(inv)
            inv, maintaining = self._follow_cyborg(inv, tree)
            devices = self._devices(inv)
            self._publish(inv, self._reported, may_show=True,
                          maintaining=maintaining, tree=tree)
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
        if self._admin is not None:
            self._admin.close()
            self._admin = None

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
        """One client (one DEALER socket) on the read endpoint for the
        driver's life, rebuilt when the options change."""
        g = CONF.gpuwarden
        key = (g.endpoint, g.request_timeout, g.retries,
               g.curve_server_key_file, g.curve_public_key_file,
               g.curve_secret_key_file)
        if self._client is None or self._client_key != key:
            if self._client is not None:
                self._client.close()
            self._client = gw_client.Client(g.endpoint,
                                            timeout=g.request_timeout,
                                            retries=g.retries,
                                            curve=gw_client.curve_from_conf(g))
            self._client_key = key
        return self._client

    def admin_client(self):
        """The client on the admin endpoint, for ``published`` and
        ``maintenance``: admin ops (PROTOCOL.md §2). Made when first needed,
        so a driver that never changes anything never connects there."""
        g = CONF.gpuwarden
        key = (g.admin_endpoint, g.request_timeout, g.retries,
               g.curve_server_key_file, g.curve_public_key_file,
               g.curve_secret_key_file)
        if self._admin is None or self._admin_key != key:
            if self._admin is not None:
                self._admin.close()
            self._admin = gw_client.Client(g.admin_endpoint,
                                           timeout=g.request_timeout,
                                           retries=g.retries,
                                           curve=gw_client.curve_from_conf(g))
            self._admin_key = key
        return self._admin

    def fetch_inventory(self):
        """The daemon's inventory, checked whole (inventory.parse). An
        inventory whose content is the one parsed last time is not parsed
        again: a steady host answers the same content every cycle."""
        result = self.client().call('inventory', {})
        content = {k: v for k, v in result.items() if k not in _VOLATILE}
        host = CONF.gpuwarden.host
        last = self._parsed
        if last is not None and last[0] == (content, host):
            return dataclasses.replace(last[1], **{
                k: result.get(k) for k in _VOLATILE})
        inv = inventory.parse(result, host=host)
        self._parsed = ((content, host), inv)
        return inv

    def _devices(self, inv):
        """Cyborg's objects for ``inv``, built once per content (building
        them is most of a steady discover(): oslo.versionedobjects coerces
        every field). Neither cyborg-agent nor the conductor changes the
        objects it is given (the agent serialises them for its RPC call)."""
        key = dataclasses.replace(inv, revision=None,
                                  published_revision=None)
        if self._built is None or self._built[0] != key:
            self._built = (key, objects.build(inv))
        return list(self._built[1])

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
            self._publish(inv, None, may_show=False,
                          maintaining=self._maintaining_names(inv))

    def placement(self):
        if self._placement is None:
            # Imported here: it pulls in openstacksdk, and needs the
            # agent's [placement] credentials only when used.
            from cyborg.common import placement_client
            self._placement = placement_client.PlacementClient()
        return self._placement

    def _read_tree(self, inv):
        try:
            return self.mirror().read_tree(inv)
        except Exception as exc:
            LOG.warning('gpuwarden: cannot read the compute node tree from '
                        'Placement: %s', exc)
            return None

    # --- Cyborg's own device disable / enable -------------------------------

    def cyborg_api(self):
        if self._cyborg is None:
            self._cyborg = cyborg_status.CyborgAPI(CONF)
        return self._cyborg

    def _maintaining_names(self, inv):
        return frozenset(
            d.name for d in inv.deployables
            if objects.address(d.device.cpid_info) in self._maintaining)

    def _cyborg_due(self, inv, tree):
        """Ask Cyborg when Placement shows a change this driver did not
        make (Cyborg's disable/enable write reserved), and at least every
        cyborg_status_interval seconds."""
        if self._cyborg_asked is None:
            return True
        if time.monotonic() - self._cyborg_asked >= \
                CONF.gpuwarden.cyborg_status_interval:
            return True
        return tree is not None and bool(self.mirror().moved(inv, tree))

    def _follow_cyborg(self, inv, tree):
        """Turn Cyborg's device statuses into gpuwarden maintenance holds.
        Returns the inventory to report (read again if a hold changed) and
        the names of the deployables whose device Cyborg says is
        maintaining (kept fully reserved)."""
        if not CONF.gpuwarden.follow_cyborg_disable:
            return inv, frozenset()
        if not self._cyborg_due(inv, tree):
            return inv, self._maintaining_names(inv)
        host = self.mirror().root_name or inv.host
        self._cyborg_asked = time.monotonic()
        try:
            maintaining, known = self.cyborg_api().maintaining(host)
        except Exception as exc:
            LOG.warning('gpuwarden: cannot read device statuses from '
                        'Cyborg\'s API: %s (keeping the last known: %s)',
                        exc, sorted(self._maintaining) or 'none')
            return inv, self._maintaining_names(inv)
        self._maintaining = set(maintaining)
        if self._hold(inv, maintaining, known):
            inv = self.fetch_inventory()
        return inv, self._maintaining_names(inv)

    def _hold(self, inv, maintaining, known):
        """Quarantine (``maintenance on``) the GPUs of the devices Cyborg
        says are maintaining; release (``maintenance off``, a clean-up
        follows) the GPUs Cyborg put on hold whose device it enabled
        again. True when a hold changed."""
        states = {d['address']: d for d in
                  self.client().call('devices', {})['devices']}
        changed = False
        for dep in inv.deployables:
            addr = objects.address(dep.device.cpid_info)
            if addr not in known:
                continue
            for gpu in dep.gpus:
                cur = states.get(gpu, {})
                if addr in maintaining:
                    if cur.get('state') == 'quarantined':
                        continue
                    on, reason = True, (f'Cyborg device {maintaining[addr]} '
                                        f'disabled (status maintaining)')
                elif cur.get('quarantined_by') == 'cyborg':
                    on, reason = False, (f'Cyborg device {known[addr]} '
                                         f'enabled')
                else:
                    continue
                try:
                    self.admin_client().call('maintenance', {
                        'address': gpu, 'on': on, 'reason': reason})
                    changed = True
                    LOG.info('gpuwarden: %s: maintenance %s (%s)', gpu,
                             'on' if on else 'off', reason)
                except errors.GPUWardenError as exc:
                    LOG.warning('gpuwarden: %s: maintenance %s failed: %s',
                                gpu, 'on' if on else 'off', exc)
        return changed

    # --- Placement ------------------------------------------------------------

    def _publish(self, inv, reported, may_show, maintaining=frozenset(),
                 tree=None):
        """Mirror reserved into Placement, then tell the daemon which
        generation Placement now covers. Failures are logged, never raised:
        the list is still reported, and the next cycle tries again."""
        try:
            outcome = self.mirror().sync(inv, reported, may_show=may_show,
                                         maintaining=maintaining, tree=tree)
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
            res = self.admin_client().call('published',
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
