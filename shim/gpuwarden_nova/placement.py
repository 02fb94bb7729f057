# SPDX-License-Identifier: Apache-2.0
"""The few Placement calls the reconciler makes, over a keystoneauth
Adapter (as every OpenStack service talks to Placement).

Every write is generation-checked: a provider's inventory is replaced only
at the generation it was read at, and Placement answers 409
``placement.concurrent_update`` when anyone (nova-compute, the scheduler's
claim, an operator) changed the provider meanwhile.
"""

import dataclasses

from keystoneauth1 import loading as ks_loading

from gpuwarden_nova import conf as nova_conf

#: GET /resource_providers?in_tree= (1.14), usages with the provider's
#: generation (1.9), reserved == total (1.26).
LIST_VERSION = '1.14'
READ_VERSION = '1.26'
WRITE_VERSION = '1.26'


class PlacementError(Exception):
    """Placement answered something other than success or a conflict."""

    def __init__(self, method, url, status, text):
        super().__init__(f'Placement {method} {url}: {status} {text[:300]}')
        self.status = status


class Conflict(Exception):
    """The provider's generation moved since it was read."""


@dataclasses.dataclass
class ProviderView:
    """One provider as read at one generation."""
    uuid: str
    name: str
    generation: int
    inventories: dict
    used: dict
    traits: frozenset = frozenset()


def adapter_from_conf(conf):
    """The keystoneauth Adapter of the ``[placement]`` options."""
    group = nova_conf.PLACEMENT_GROUP
    auth = ks_loading.load_auth_from_conf_options(conf, group)
    sess = ks_loading.load_session_from_conf_options(conf, group, auth=auth)
    return ks_loading.load_adapter_from_conf_options(
        conf, group, session=sess, auth=auth, raise_exc=False)


class Placement:
    def __init__(self, adapter):
        self._a = adapter
        self.requests = 0

    def _call(self, method, url, version, body=None, ok=(200,)):
        kw = {'microversion': version, 'raise_exc': False,
              'headers': {'Accept': 'application/json'}}
        if body is not None:
            kw['json'] = body
        self.requests += 1
        r = self._a.request(url, method, **kw)
        if r.status_code in ok:
            return r.json() if r.content else None
        if r.status_code == 409 and method == 'PUT':
            raise Conflict(r.text)
        raise PlacementError(method, url, r.status_code, r.text)

    def provider_by_name(self, name):
        body = self._call('GET', '/resource_providers?name=' + _quote(name),
                          LIST_VERSION)
        rps = body['resource_providers']
        return rps[0] if rps else None

    def providers_in_tree(self, root_uuid):
        body = self._call('GET', f'/resource_providers?in_tree={root_uuid}',
                          LIST_VERSION)
        return body['resource_providers']

    def traits(self, uuid):
        return self._call('GET', f'/resource_providers/{uuid}/traits',
                          READ_VERSION)['traits']

    def view(self, uuid, name):
        """Inventories and usages at one generation (read again while the
        two answers disagree)."""
        for _ in range(5):
            inv = self._call('GET', f'/resource_providers/{uuid}/inventories',
                             READ_VERSION)
            use = self._call('GET', f'/resource_providers/{uuid}/usages',
                             READ_VERSION)
            if (inv['resource_provider_generation'] ==
                    use['resource_provider_generation']):
                return ProviderView(uuid, name,
                                    inv['resource_provider_generation'],
                                    inv['inventories'], use['usages'])
        raise Conflict(f'{name}: generation kept moving while read')

    def set_reserved(self, view, rc, reserved):
        """PUT the inventory of ``rc`` as read, with ``reserved``, at the
        generation it was read at. Returns the new generation; raises
        Conflict when the provider moved."""
        rec = dict(view.inventories[rc])
        rec['reserved'] = reserved
        rec['resource_provider_generation'] = view.generation
        body = self._call(
            'PUT', f'/resource_providers/{view.uuid}/inventories/{rc}',
            WRITE_VERSION, rec)
        return body['resource_provider_generation'], body


def _quote(s):
    from urllib.parse import quote
    return quote(s, safe='')
