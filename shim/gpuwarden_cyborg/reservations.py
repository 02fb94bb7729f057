"""Placement ``reserved`` for each deployable's provider, from the daemon.

Cyborg's conductor never sets ``reserved`` (it PUTs ``{total, max_unit}``
when it creates a provider or when num_accelerators or the resource class
changes, which resets ``reserved`` to 0). So every cycle reads the
provider's inventory back and writes ``reserved`` only where Placement's
value differs from the daemon's: a reset by the conductor is repaired on
the next cycle, and an unchanged host costs one GET per provider.

The write is one resource class's inventory
(``PUT /resource_providers/{uuid}/inventories/{rc}``) with every other
field as Placement has it and the provider generation it was read at, so
a concurrent change by the conductor makes the write fail (409, logged,
retried next cycle) instead of overwriting it.

Ordering. cyborg-agent calls discover() and only then hands the list to the
conductor, which creates providers and attach handles. So discover() runs
before this cycle's list is in Cyborg:

* Raising ``reserved`` (a GPU became dirty or was quarantined) is written at
  once: it only takes capacity away.
* Lowering it (a GPU was promoted to allocatable, which also adds its attach
  handle) waits until the deployable's attach handles were already in the
  list of the previous cycle, i.e. until Cyborg has had the chance to create
  them. Lowering at once would let Placement offer a GPU for a few seconds
  while Cyborg has no handle to bind it to, and the VM would fail to build.
* A provider that does not exist yet (created by the conductor after this
  discover()) or whose total is about to change is left for the next cycle;
  the conductor's PUT resets ``reserved`` to 0 there and this module puts it
  back one cycle later (see docs/cyborg.md for that window).
"""

import uuid

from keystoneauth1 import exceptions as ks_exc
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: reserved == total is allowed from 1.26 on.
PLACEMENT_VERSION = '1.26'

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
        self.pending = {}       # name -> why it is not (yet) in effect

    @property
    def complete(self):
        """True when Placement shows every deployable's reserved value."""
        return not self.pending


def _get(pc, url):
    try:
        return pc.get(url, version=PLACEMENT_VERSION)
    except ks_exc.NotFound:
        return None


def sync_one(pc, dep, out, may_lower):
    rp = provider_uuid(dep.name)
    url = f'/resource_providers/{rp}/inventories'
    resp = _get(pc, url)
    if resp is None or resp.status_code == 404:
        # The conductor creates it when it processes this report.
        out.pending[dep.name] = 'no provider yet'
        return
    if resp.status_code != 200:
        out.pending[dep.name] = f'GET {url}: HTTP {resp.status_code}'
        LOG.warning('gpuwarden: cannot read inventory of %s (%s): HTTP %s',
                    dep.name, rp, resp.status_code)
        return
    body = resp.json()
    cur = body['inventories'].get(dep.rc)
    if cur is None:
        out.pending[dep.name] = f'no {dep.rc} inventory yet'
        return
    if cur['reserved'] == dep.reserved:
        out.unchanged.append(dep.name)
        return
    if cur['total'] != dep.num_accelerators or dep.reserved > cur['total']:
        # The conductor is about to PUT the new total (which resets
        # reserved): write after it, next cycle.
        out.pending[dep.name] = (f"total is {cur['total']} in Placement, "
                                 f"{dep.num_accelerators} in the inventory")
        return
    if dep.reserved < cur['reserved'] and not may_lower(dep):
        out.pending[dep.name] = ('lowering once its attach handles are in '
                                 'Cyborg (next cycle)')
        return
    payload = {f: cur[f] for f in _INVENTORY_FIELDS if f in cur}
    payload['reserved'] = dep.reserved
    payload['resource_provider_generation'] = \
        body['resource_provider_generation']
    put = pc.put(f'{url}/{dep.rc}', payload, version=PLACEMENT_VERSION)
    if put.status_code != 200:
        out.pending[dep.name] = f'PUT {url}/{dep.rc}: HTTP {put.status_code}'
        LOG.warning('gpuwarden: setting reserved=%d on %s (%s) failed: '
                    'HTTP %s %s', dep.reserved, dep.name, rp,
                    put.status_code, getattr(put, 'text', ''))
        return
    out.updated[dep.name] = (cur['reserved'], dep.reserved)
    LOG.info('gpuwarden: %s reserved %d -> %d', dep.name, cur['reserved'],
             dep.reserved)


def sync(pc, inv, reported=None):
    """Bring Placement's ``reserved`` in line with ``inv``. Never raises:
    every failure is logged and left for the next cycle.

    :param reported: ``{deployable name: set of attach_info}`` handed to
        Cyborg by the previous cycle; ``reserved`` is lowered only for a
        deployable whose handles are all in it. None: lower freely.
    """
    def may_lower(dep):
        if reported is None:
            return True
        return {h.info for h in dep.attach_handles} <= \
            reported.get(dep.name, set())

    out = Outcome()
    for dep in inv.deployables:
        try:
            sync_one(pc, dep, out, may_lower)
        except Exception as exc:  # never fatal to discover()
            out.pending[dep.name] = f'{type(exc).__name__}: {exc}'
            LOG.warning('gpuwarden: reserved sync of %s failed: %s',
                        dep.name, exc)
    return out
