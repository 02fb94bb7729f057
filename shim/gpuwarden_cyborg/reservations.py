# SPDX-License-Identifier: Apache-2.0
"""What Placement may offer of each deployable's provider, from the daemon.

The promise: **Placement never offers a GPU that gpuwardend does not call
allocatable.** A deployable's provider offers ``total - reserved - used``
units; ``reserved`` is how many of its GPUs are neither allocatable nor
attached (the daemon's ``reserved``; all of them while Cyborg says the
device is ``maintaining``). Two things stand in the way, and this module
deals with both (docs/placement.md, "No window", has the reasoning):

* **Cyborg's conductor resets reserved.** It PUTs ``{total, max_unit}``
  when it creates a provider, and again when a deployable's
  ``num_accelerators`` or resource class changes; both leave reserved 0.
  So a provider is kept **out of the compute node's tree** whenever the
  conductor is about to write its inventory: a new provider is created
  here, before the conductor sees the report, as a root provider with no
  inventory; a provider whose total is about to change is un-parented
  (microversion 1.37). Nova asks for its flavor's VCPU and memory and for
  ``root_required=COMPUTE_ACCELERATORS`` in the same tree, so a provider
  outside every compute node's tree is in no allocation candidate. It is
  put back under the compute node only by a later discover() (which
  cyborg-agent calls after the conductor has processed the previous
  report), once Placement shows what the conductor writes (the total, and
  for a new provider the traits, the conductor's last step) and reserved
  has been written on top of it.
* **The daemon moves between cycles.** Raising reserved only takes
  capacity away, so it is written at once, from discover() and from the
  event listener (driver.py), which follows the daemon's transitions.
  Lowering waits until the deployable's attach handles were in a list that
  cyborg-agent already handed to the conductor (the previous discover()'s),
  so that a GPU is never offered before Cyborg has a handle to bind it to;
  only discover() lowers.

Every write is one resource class's inventory with every other field as
Placement has it, at the generation it was read at: a concurrent write by
the conductor makes ours fail (409, retried next time) instead of
overwriting it. ``max_unit`` is put back to ``total`` when something
(Cyborg's own disable/enable) reset it.

Cost. A cycle in which neither the daemon's inventory nor any provider
changed is one ``GET /resource_providers?in_tree=<compute node>``: the
providers' generations are compared with those this mirror last saw or
wrote (Placement moves a provider's generation on every inventory, trait,
parent or allocation change).
"""

import dataclasses
import uuid

from keystoneauth1 import exceptions as ks_exc
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: 1.37: re-parenting and un-parenting (also gives reserved == total, 1.26,
#: and ``in_tree``, 1.14).
PLACEMENT_VERSION = '1.37'

_INVENTORY_FIELDS = ('total', 'reserved', 'min_unit', 'max_unit',
                     'step_size', 'allocation_ratio')


def provider_uuid(name):
    """The provider UUID Cyborg's conductor gives a deployable."""
    return str(uuid.uuid3(uuid.NAMESPACE_DNS, str(name)))


class Outcome:
    """What one sync did, per deployable name (for logs and tests)."""

    def __init__(self):
        self.updated = {}       # name -> (old reserved, new reserved)
        self.unchanged = []
        self.hidden = []        # taken out of (or kept out of) the tree
        self.shown = []         # put under the compute node
        self.pending = {}       # name -> why Placement does not show it yet
        self.exposed_short = {}  # name -> why Placement offers too much

    @property
    def covered(self):
        """True when Placement offers nothing the daemon does not call
        allocatable: every provider under the compute node has at least the
        daemon's reserved. A lowering that waits, or a provider that is not
        shown yet, offers less than it could, which is safe."""
        return not self.exposed_short

    @property
    def complete(self):
        """True when Placement shows exactly the daemon's inventory."""
        return not self.pending and not self.exposed_short


@dataclasses.dataclass
class _Seen:
    """What the mirror knows of one provider: the generation it last read
    or wrote, and the (total, reserved) it found right at that generation."""
    generation: int
    want: tuple


class PlacementMirror:
    """Mirrors the daemon's inventory into Placement, cycle after cycle.

    :param pc: Cyborg's ``PlacementClient`` (or anything with its
        ``get``/``put``/``post``).
    :param root_names: callable returning the names to try, in order, for
        the compute node's provider (cyborg-agent's own order: ``[agent]
        resource_provider_name``, then ``[DEFAULT] host``).
    """

    def __init__(self, pc, root_names):
        self.pc = pc
        self._root_names = root_names
        self._root = None
        self.root_name = None
        self._seen = {}

    # --- Placement access ---------------------------------------------------

    def _get(self, url):
        try:
            resp = self.pc.get(url, version=PLACEMENT_VERSION)
        except ks_exc.NotFound:
            return None
        if resp is None or resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise RuntimeError(f'GET {url}: HTTP {resp.status_code}')
        return resp.json()

    def _write(self, method, url, body):
        call = self.pc.put if method == 'PUT' else self.pc.post
        resp = call(url, body, version=PLACEMENT_VERSION)
        if resp.status_code not in (200, 201, 204):
            raise RuntimeError(f'{method} {url}: HTTP {resp.status_code} '
                               f'{getattr(resp, "text", "")}')
        return resp.json() if resp.content else {}

    def root(self, inv):
        """The compute node's provider UUID: found as cyborg-agent finds
        it, by name; the daemon's host name is the last resort (the names
        agree unless configured apart)."""
        if self._root is None:
            for name in [*self._root_names(), inv.host]:
                if not name:
                    continue
                body = self._get(f'/resource_providers?name={name}')
                rps = (body or {}).get('resource_providers') or []
                if rps:
                    self._root = rps[0]['uuid']
                    self.root_name = name
                    break
            else:
                raise RuntimeError(
                    f'no compute node provider named '
                    f'{[n for n in self._root_names() if n] + [inv.host]} '
                    f'in Placement')
        return self._root

    # --- one cycle ------------------------------------------------------------

    def read_tree(self, inv):
        """(compute node UUID, {uuid: provider} of its tree): the one
        request of a steady-state cycle."""
        root = self.root(inv)
        body = self._get(f'/resource_providers?in_tree={root}')
        return root, {rp['uuid']: rp for rp in body['resource_providers']}

    def moved(self, inv, tree):
        """Names of deployables whose provider changed since this mirror
        last read or wrote it (someone else wrote it: Cyborg's conductor or
        API, Nova's claims), or that it has never seen."""
        _, providers = tree
        out = []
        for dep in inv.deployables:
            rp = provider_uuid(dep.name)
            seen, listed = self._seen.get(rp), providers.get(rp)
            if seen is None or listed is None or \
                    seen.generation != listed['generation']:
                out.append(dep.name)
        return out

    def sync(self, inv, reported=None, maintaining=frozenset(),
             may_show=False, tree=None):
        """Bring Placement in line with ``inv``. Never raises: every
        failure is logged, left in the outcome (``exposed_short`` when
        Placement may offer too much, else ``pending``) and retried next
        time.

        :param reported: ``{deployable name: set of attach_info}`` of the
            list cyborg-agent has already handed to the conductor; reserved
            is lowered only for a deployable whose handles are all in it.
            None: never lower (the event listener).
        :param maintaining: names of deployables whose Cyborg device is
            ``maintaining`` (Cyborg's ``device disable``): all their units
            stay reserved.
        :param may_show: True only from discover(): a provider is put under
            the compute node only when the conductor is known not to be
            processing a report (cyborg-agent calls discover() after
            report_data returned).
        :param tree: what :meth:`read_tree` returned, when the caller has
            just read it.
        """
        out = Outcome()
        try:
            root, tree = tree if tree is not None else self.read_tree(inv)
        except Exception as exc:
            LOG.warning('gpuwarden: cannot read the compute node tree from '
                        'Placement: %s', exc)
            for dep in inv.deployables:
                out.exposed_short[dep.name] = f'{type(exc).__name__}: {exc}'
            return out
        for dep in inv.deployables:
            want_reserved = (dep.num_accelerators if dep.name in maintaining
                             else dep.reserved)
            try:
                self._sync_one(out, root, tree, dep, want_reserved,
                               reported, may_show)
            except Exception as exc:  # never fatal to discover()
                # Placement's state is unknown: do not call it covered.
                out.exposed_short[dep.name] = f'{type(exc).__name__}: {exc}'
                self._seen.pop(provider_uuid(dep.name), None)
                LOG.warning('gpuwarden: Placement sync of %s failed: %s',
                            dep.name, exc)
        return out

    def _sync_one(self, out, root, tree, dep, want_reserved, reported,
                  may_show):
        rp = provider_uuid(dep.name)
        want = (dep.num_accelerators, want_reserved)
        listed = tree.get(rp)
        seen = self._seen.get(rp)
        if listed is not None and seen is not None and \
                seen.generation == listed['generation'] and seen.want == want:
            out.unchanged.append(dep.name)      # the steady state: no request
            return
        # Lowering is safe once the conductor has processed a list that had
        # the deployable with all its handles: cyborg-agent calls
        # discover() only after report_data returned.
        handed_over = (reported is not None and dep.name in reported and
                       {h.info for h in dep.attach_handles} <=
                       reported[dep.name])
        if listed is None:
            self._outside_tree(out, root, rp, dep, want_reserved,
                               may_show and handed_over)
            return
        inv = self._get(f'/resource_providers/{rp}/inventories')
        cur = (inv or {}).get('inventories', {}).get(dep.rc)
        if cur is None or cur['total'] != dep.num_accelerators:
            # The conductor PUTs {total, max_unit} for this report (a new
            # total or resource class), which resets reserved: out of the
            # tree until it has.
            self._reparent(rp, dep.name, None)
            out.hidden.append(dep.name)
            out.pending[dep.name] = (
                f"out of the compute node's tree until Cyborg's conductor "
                f"writes total {dep.num_accelerators} (Placement has "
                f"{cur['total'] if cur else 'no ' + dep.rc + ' inventory'})")
            LOG.info('gpuwarden: %s taken out of the compute node\'s tree '
                     'while Cyborg\'s conductor rewrites its inventory',
                     dep.name)
            return
        self._cover(out, rp, dep, inv, cur, want_reserved, handed_over)

    def _outside_tree(self, out, root, rp, dep, want_reserved, may_show):
        """A provider that is not under the compute node: new (made here,
        before the conductor sees it), or hidden here while the conductor
        rewrites its inventory."""
        body = self._get(f'/resource_providers/{rp}')
        if body is None:
            self._write('POST', '/resource_providers',
                        {'uuid': rp, 'name': dep.name})
            out.hidden.append(dep.name)
            out.pending[dep.name] = ("created out of the compute node's "
                                     "tree; shown once Cyborg's conductor "
                                     "has processed it")
            LOG.info('gpuwarden: %s created out of the compute node\'s '
                     'tree, ahead of Cyborg\'s conductor', dep.name)
            return
        if body.get('parent_provider_uuid') not in (None, root):
            raise RuntimeError(
                f"provider {dep.name} ({rp}) is under "
                f"{body['parent_provider_uuid']}, not this compute node "
                f"({root}): left alone")
        if not may_show:
            out.hidden.append(dep.name)
            out.pending[dep.name] = (
                "out of the compute node's tree until Cyborg's conductor "
                "has processed a report with it and its handles")
            return
        inv = self._get(f'/resource_providers/{rp}/inventories')
        cur = (inv or {}).get('inventories', {}).get(dep.rc)
        if cur is None or cur['total'] != dep.num_accelerators:
            # The conductor processed a report with this deployable and
            # wrote no such inventory: it already knew the deployable (the
            # provider was deleted in Placement behind Cyborg's back). It
            # never will: write what it would have, while out of the tree.
            inv = self._recreate(rp, dep, inv, want_reserved)
            cur = inv['inventories'][dep.rc]
        # The conductor has written all it writes for this deployable: put
        # reserved on top of it, and only then show the provider.
        if self._cover(out, rp, dep, inv, cur, want_reserved, True,
                       record=False) is None:
            out.hidden.append(dep.name)
            return
        gen = self._reparent(rp, dep.name, root)
        self._seen[rp] = _Seen(gen, (dep.num_accelerators, want_reserved))
        out.shown.append(dep.name)
        LOG.info('gpuwarden: %s shown under the compute node (reserved '
                 '%d of %d)', dep.name, want_reserved, dep.num_accelerators)

    def _cover(self, out, rp, dep, inv, cur, want_reserved, may_lower,
               record=True):
        """Write reserved (and max_unit) on a provider whose total is
        right. Returns the provider generation Placement then has, or None
        when reserved is not in place."""
        gen = inv['resource_provider_generation']
        if want_reserved < cur['reserved'] and not may_lower:
            out.pending[dep.name] = ('lowering once its attach handles are '
                                     'in Cyborg (next discover)')
            self._seen.pop(rp, None)
            return None
        if cur['reserved'] == want_reserved and \
                cur.get('max_unit') == dep.num_accelerators:
            out.unchanged.append(dep.name)
        else:
            payload = {f: cur[f] for f in _INVENTORY_FIELDS if f in cur}
            payload['reserved'] = want_reserved
            payload['max_unit'] = dep.num_accelerators
            payload['resource_provider_generation'] = gen
            try:
                body = self._write(
                    'PUT', f'/resource_providers/{rp}/inventories/{dep.rc}',
                    payload)
            except RuntimeError as exc:
                if want_reserved > cur['reserved']:
                    out.exposed_short[dep.name] = str(exc)
                else:
                    out.pending[dep.name] = str(exc)
                self._seen.pop(rp, None)
                LOG.warning('gpuwarden: setting reserved=%d on %s (%s) '
                            'failed: %s', want_reserved, dep.name, rp, exc)
                return None
            gen = body['resource_provider_generation']
            out.updated[dep.name] = (cur['reserved'], want_reserved)
            LOG.info('gpuwarden: %s reserved %d -> %d', dep.name,
                     cur['reserved'], want_reserved)
        if record:
            self._seen[rp] = _Seen(gen, (dep.num_accelerators,
                                         want_reserved))
        return gen

    def _recreate(self, rp, dep, inv, want_reserved):
        """The inventory and traits Cyborg's conductor gives a new
        deployable (provider_report), with reserved on: for a provider
        deleted in Placement while Cyborg still has its deployable."""
        LOG.warning('gpuwarden: provider %s (%s) has no %s inventory of %d '
                    'although Cyborg has the deployable: writing it (and '
                    'its traits) as Cyborg\'s conductor would',
                    dep.name, rp, dep.rc, dep.num_accelerators)
        gen = inv['resource_provider_generation'] if inv else 0
        body = self._write('PUT', f'/resource_providers/{rp}/inventories', {
            'resource_provider_generation': gen,
            'inventories': {dep.rc: {'total': dep.num_accelerators,
                                     'reserved': want_reserved,
                                     'max_unit': dep.num_accelerators}}})
        for t in dep.traits:
            if t.startswith('CUSTOM_'):
                self._write('PUT', f'/traits/{t}', None)
        traits = self._get(f'/resource_providers/{rp}/traits')
        self._write('PUT', f'/resource_providers/{rp}/traits', {
            'resource_provider_generation':
                traits['resource_provider_generation'],
            'traits': sorted(set(traits['traits']) | set(dep.traits))})
        return self._get(f'/resource_providers/{rp}/inventories') or body

    def _reparent(self, rp, name, parent):
        """Put a provider under ``parent`` (None: make it a root). Returns
        its new generation."""
        body = self._write('PUT', f'/resource_providers/{rp}',
                           {'name': name, 'parent_provider_uuid': parent})
        self._seen.pop(rp, None)
        return body['generation']
