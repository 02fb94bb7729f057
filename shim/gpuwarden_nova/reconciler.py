# SPDX-License-Identifier: Apache-2.0
"""Keep Nova's GPU providers reserved until gpuwardend calls the GPU clean.

Nova (2025.2 and later) reports each PCI device of ``[pci] device_spec`` as a
Placement provider ``<hypervisor_hostname>_<ADDRESS>`` under the compute
node. For a device tagged ``one_time_use`` it sets ``reserved = total``
when the device is allocated and never lowers it again
(nova/compute/pci_placement_translator.py, ``_handle_one_time_use``:
"they may be unreserved by an external entity, but never nova"). This is
that external entity, and the reservation's owner in general:

- a GPU gpuwardend does not call ``allocatable`` (dirty, being cleaned,
  quarantined, attached, held by a stopped domain, gone) is kept at
  ``reserved = total``: raised at once, whatever else holds the provider
  (Placement accepts reserved on top of an allocation);
- ``reserved`` is lowered to 0 only when the daemon says ``allocatable``
  (asked again right before the write) *and* the provider holds no
  allocation: after an instance's deletion Nova frees the allocation, the
  clean-up passes, and only then is the GPU offered again. A provider an
  allocation still holds (an instance being built on a GPU the daemon has
  not seen attached yet) keeps Nova's reservation;
- every write carries the generation the provider was read at; a
  conflict (Nova's own update, a claim) means read again and decide again,
  up to ``conflict_retries`` times, never a forced write;
- a GPU whose provider Nova has not made yet is left alone (logged once)
  until it appears;
- after a pass in which every provider shows at least the reservation of
  the daemon's current inventory, the reconciler tells the daemon so
  (``published {generation}``, proto/PROTOCOL.md §8): it is the Placement
  writer of a Nova-only host, the daemon promotes GPUs whose clean-up
  passed to ``allocatable`` on it, and the libvirt hook's ``release end``
  waits for it before Nova may free an instance's allocation.

A pass reads the daemon's ``inventory`` and ``devices``, the compute
node's providers (one GET), and each provider whose generation moved since
it was last read. Passes run at start, on every daemon event, every
``check_interval``, and every ``held_recheck_interval`` while a clean GPU
waits under an allocation (Nova freeing one is no daemon event).
"""

import dataclasses
import logging as std_logging
import threading
import time

from oslo_log import log as logging

from gpuwarden_nova import placement as pl

LOG = logging.getLogger(__name__)

#: Nova marks its PCI device providers with this trait
#: (pci_placement_translator._get_traits_for_dev).
PCI_PROVIDER_TRAIT = 'COMPUTE_MANAGED_PCI_DEVICE'
#: ... and one-time-use ones with this one (PciResourceProvider.add_parent).
OTU_TRAIT = 'HW_PCI_ONE_TIME_USE'


def provider_name(hypervisor_hostname, address):
    """Nova's name for the provider of the PCI device at ``address``
    (PlacementView._get_rp_name_for_address)."""
    return f'{hypervisor_hostname}_{address.upper()}'


@dataclasses.dataclass
class PassResult:
    generation: int = 0
    raised: list = dataclasses.field(default_factory=list)
    lowered: list = dataclasses.field(default_factory=list)
    held: list = dataclasses.field(default_factory=list)      # allocated
    missing: list = dataclasses.field(default_factory=list)   # no provider
    # Of ``missing``, the GPUs that are not allocatable: Nova's first report
    # of one writes reserved 0, so the next pass should follow soon.
    awaited: list = dataclasses.field(default_factory=list)
    conflicts: int = 0
    failed: list = dataclasses.field(default_factory=list)
    covered: bool = False
    published: bool = False
    promoted: list = dataclasses.field(default_factory=list)


class Reconciler:
    """One host's reconciler. ``daemon``: a gpuwarden_cyborg.client.Client
    on the daemon's read endpoint; ``admin``: one on its admin endpoint, for
    ``published`` (an admin op; None: ``daemon`` serves it, as a test's fake
    does); ``placement``: a placement.Placement."""

    def __init__(self, daemon, placement, hypervisor_hostname,
                 conflict_retries=8, publish=True, admin=None):
        self.daemon = daemon
        self.admin = admin if admin is not None else daemon
        self.placement = placement
        self.hypervisor_hostname = hypervisor_hostname
        self.conflict_retries = conflict_retries
        self.publish = publish
        self._lock = threading.Lock()
        self._cn_uuid = None
        self._views = {}            # provider uuid -> ProviderView
        self._logged = set()        # (kind, key) said once
        self.passes = 0
        self.writes = []            # (address, reserved, generation) in order
        self.conflicts = 0

    # --- logging once ----------------------------------------------------

    def _once(self, kind, key, level, msg, *args):
        if (kind, key) in self._logged:
            return
        self._logged.add((kind, key))
        LOG.log(level, msg, *args)

    def _forget(self, kind, key):
        self._logged.discard((kind, key))

    # --- Placement ---------------------------------------------------------

    def _providers(self):
        """{name: provider} of the compute node's tree; {} when Nova has
        not made the compute node yet."""
        if self._cn_uuid is None:
            cn = self.placement.provider_by_name(self.hypervisor_hostname)
            if cn is None:
                self._once('cn', None, std_logging.WARNING,
                           'gpuwarden: no compute node provider named %r in '
                           'Placement yet: its GPUs are left alone until '
                           'nova-compute reports it (is [reconciler] '
                           'hypervisor_hostname the hypervisor_hostname of '
                           '`openstack hypervisor list`?)',
                           self.hypervisor_hostname)
                return {}
            self._forget('cn', None)
            self._cn_uuid = cn['uuid']
        try:
            rps = self.placement.providers_in_tree(self._cn_uuid)
        except pl.PlacementError as exc:
            if exc.status not in (400, 404):
                raise
            rps = []
        if not rps:     # the compute node was deleted (and maybe made anew)
            self._cn_uuid = None
            self._views.clear()
            return {}
        return {rp['name']: rp for rp in rps}

    def _view(self, rp, fresh=False):
        """The provider as last read, or read again when its generation
        moved (inventory and trait changes and new allocations move it; a
        deleted allocation does not, see _reconcile)."""
        uuid = rp['uuid']
        cached = self._views.get(uuid)
        if not fresh and cached and cached.generation == rp['generation']:
            return cached
        view = self.placement.view(uuid, rp['name'])
        view.traits = frozenset(self.placement.traits(uuid))
        self._views[uuid] = view
        return view

    # --- one pass ----------------------------------------------------------

    def sync(self):
        """One pass, and another while ``published`` promoted GPUs (their
        reservation comes off in the next). Returns the PassResults."""
        with self._lock:
            results = []
            for _ in range(4):
                r = self._pass()
                results.append(r)
                if not r.promoted:
                    break
            return results

    def _pass(self):
        self.passes += 1
        res = PassResult()
        inv = self.daemon.call('inventory')
        devs = self.daemon.call('devices')['devices']
        res.generation = inv['generation']
        providers = self._providers()
        shown = {}          # address -> True when Placement reserves it all
        for dev in devs:
            addr = dev['address']
            name = provider_name(self.hypervisor_hostname, addr)
            rp = providers.get(name)
            if rp is None:
                res.missing.append(addr)
                if dev['state'] != 'allocatable':
                    res.awaited.append(addr)
                self._once('missing', addr, std_logging.INFO,
                           'gpuwarden: %s: Nova has no provider %s yet '
                           '(device_spec, report_in_placement): left alone '
                           'until it has', addr, name)
                continue
            if ('missing', addr) in self._logged:
                self._forget('missing', addr)
                LOG.info('gpuwarden: %s: Nova reported provider %s', addr,
                         name)
            try:
                ok, reserved_all = self._reconcile(dev, rp, res)
            except pl.PlacementError as exc:
                if exc.status != 404:
                    raise
                # Deleted since the listing: as good as not made yet.
                self._views.pop(rp['uuid'], None)
                res.missing.append(addr)
                continue
            if ok is None:      # not a provider of ours
                continue
            shown[addr] = reserved_all
        res.covered = not res.failed and self._covers(inv, shown)
        if res.covered and self.publish and self._needs_publish(inv):
            out = self.admin.call('published',
                                   {'generation': inv['generation']})
            res.published = True
            res.promoted = list(out.get('promoted') or ())
            if res.promoted:
                LOG.info('gpuwarden: Placement covers inventory generation '
                         '%s: promoted %s', inv['generation'],
                         ', '.join(res.promoted))
        return res

    @staticmethod
    def _needs_publish(inv):
        rev, pub = inv.get('revision'), inv.get('published_revision')
        return rev is None or pub is None or pub < rev

    @staticmethod
    def _covers(inv, shown):
        """Placement offers nothing the inventory does not allow: for each
        deployable, at least its ``reserved`` GPUs are fully reserved in
        Placement or have no provider (not offered at all)."""
        for d in inv['deployables']:
            if not d.get('reserved'):
                continue
            held = sum(1 for g in d['gpus'] if shown.get(g, True))
            if held < d['reserved']:
                return False
        return True

    def _reconcile(self, dev, rp, res):
        """Bring one provider where the daemon says it belongs. Returns
        (ok, reserved_all): ok None for a provider that is not Nova's PCI
        provider with one resource class (left alone)."""
        addr = dev['address']
        fresh = False
        for _ in range(self.conflict_retries + 1):
            view = self._view(rp, fresh=fresh)
            if PCI_PROVIDER_TRAIT not in view.traits or \
                    len(view.inventories) != 1:
                self._once('foreign', view.uuid, std_logging.WARNING,
                           'gpuwarden: %s: provider %s is not a Nova PCI '
                           'device provider with one resource class '
                           '(traits %s, inventory %s): left alone', addr,
                           view.name, sorted(view.traits),
                           sorted(view.inventories))
                return None, False
            if OTU_TRAIT not in view.traits:
                self._once('otu', view.uuid, std_logging.WARNING,
                           'gpuwarden: %s: provider %s is not one-time-use '
                           '(device_spec without one_time_use): gpuwarden '
                           'still reserves it while the GPU is not clean',
                           addr, view.name)
            rc, rec = next(iter(view.inventories.items()))
            total, reserved = rec['total'], rec['reserved']
            used = view.used.get(rc, 0)
            if dev['state'] != 'allocatable':
                want = total
                if reserved >= total:
                    return True, True
            else:
                if reserved == 0:
                    return True, False
                if used and not fresh:
                    # Placement moves a provider's generation when an
                    # allocation lands on it, not when one is deleted: a
                    # usage read at the same generation may be gone.
                    fresh = True
                    continue
                if used:
                    # Held by an allocation: Nova's own reservation of a
                    # one-time-use device stays until the allocation is
                    # gone (an instance being built, or deleted but not
                    # yet freed by Nova).
                    res.held.append(addr)
                    return True, reserved >= total
                # Lowering is the one dangerous write: ask the daemon
                # again right before it.
                now = self.daemon.call('device', {'address': addr})
                if now['state'] != 'allocatable':
                    dev = now
                    continue
                want = 0
            try:
                gen, _ = self.placement.set_reserved(view, rc, want)
            except pl.Conflict:
                self.conflicts += 1
                res.conflicts += 1
                LOG.debug('gpuwarden: %s: provider %s changed meanwhile '
                          '(generation %s): read it again', addr, view.name,
                          view.generation)
                fresh = True
                rp = dict(rp, generation=None)
                continue
            self.writes.append((addr, want, gen))
            view.generation = gen
            view.inventories[rc] = dict(rec, reserved=want)
            (res.raised if want else res.lowered).append(addr)
            LOG.info('gpuwarden: %s: %s reserved on %s (%s/%s, %s, '
                     'generation %s)', addr,
                     'raised' if want else 'lowered', view.name, want,
                     total, dev['state'], gen)
            return True, want >= total
        res.failed.append(addr)
        LOG.warning('gpuwarden: %s: provider %s kept changing: %d '
                    'conflicting writes in a row, trying again next pass',
                    addr, rp['name'], self.conflict_retries + 1)
        return True, False


class Service:
    """The reconciler's loop: a pass at start, on every daemon event and
    every ``check_interval`` seconds; errors are logged and the next pass
    tries again."""

    #: How long a GPU that is not allocatable and has no provider yet is
    #: watched at ``held_recheck_interval`` (Nova creates the provider with
    #: reserved 0 at its next resource update, every 60 s by default); after
    #: that, every ``check_interval`` (Nova may never be configured for it).
    AWAIT_FAST_S = 180.0

    def __init__(self, reconciler, check_interval, events_endpoint=None,
                 context=None, held_recheck_interval=1.0):
        self.reconciler = reconciler
        self.check_interval = check_interval
        self.held_recheck_interval = held_recheck_interval
        self._awaited_since = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.listener = None
        if events_endpoint:
            from gpuwarden_cyborg import events
            self.listener = events.Listener(events_endpoint, self.wake,
                                            name='gpuwarden-nova-events',
                                            context=context)
        self._thread = None
        self.errors = 0
        self.last_error = None

    def wake(self):
        self._wake.set()

    def _await(self, awaited):
        """True while a GPU that is not allocatable has had no provider for
        less than AWAIT_FAST_S: Placement would offer it from Nova's first
        report (reserved 0) until the next pass, so the pass comes soon."""
        now = time.monotonic()
        self._awaited_since = {a: self._awaited_since.get(a, now)
                               for a in awaited}
        return any(now - t < self.AWAIT_FAST_S
                   for t in self._awaited_since.values())

    def start(self):
        if self.listener:
            self.listener.start()
        self._thread = threading.Thread(target=self.run, name='gpuwarden-nova',
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._wake.set()
        if self.listener:
            self.listener.close()
        if self._thread:
            self._thread.join(timeout=30)

    def run(self):
        next_check = 0.0
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_check - time.monotonic()))
            if self._stop.is_set():
                break
            self._wake.clear()
            next_check = time.monotonic() + self.check_interval
            try:
                results = self.reconciler.sync()
                if results[-1].held or self._await(results[-1].awaited):
                    next_check = time.monotonic() + min(
                        self.check_interval, self.held_recheck_interval)
                if self.last_error:
                    LOG.info('gpuwarden: passes work again')
                self.last_error = None
            except Exception as exc:   # the loop must live on
                self.errors += 1
                text = f'{type(exc).__name__}: {exc}'
                if text != self.last_error:
                    LOG.warning('gpuwarden: pass failed, trying again in '
                                '%.0f s or on the next event: %s',
                                self.check_interval, text)
                self.last_error = text
                next_check = time.monotonic() + min(self.check_interval, 2.0)
