# SPDX-License-Identifier: Apache-2.0
"""Cyborg's own view of this host's devices: which ones an operator
disabled.

``openstack accelerator device disable <uuid>`` (Cyborg's API, microversion
2.3) sets the device's status to ``maintaining`` and its provider's
``reserved`` to the total; ``enable`` sets ``enabled`` and ``reserved`` 0.
cyborg-agent's drivers are never told, and the agent has no access to
Cyborg's database, so the driver asks Cyborg's API (``GET
/v2/devices?hostname=<host>``) with the agent's own service credentials
(the ``[placement]`` section, which every cyborg-agent has) and turns the
answer into gpuwarden maintenance holds (driver.py).

Which device is which: Cyborg's device API shows neither the control path
nor any id the driver reported, so the driver puts the device's PCI
address into ``vendor_board_info`` (objects.py), which the API returns.
"""

import json

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import loading as ks_loading
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

#: Cyborg's API microversion with device disable/enable.
API_VERSION = '2.3'

#: The key of vendor_board_info that carries the device's PCI address.
ADDRESS_KEY = 'pci_address'


def vendor_board_info(address):
    """The vendor_board_info JSON text the driver reports for a device."""
    return json.dumps({ADDRESS_KEY: address}, sort_keys=True)


def address_of(device):
    """The PCI address a Cyborg API device object carries, or None."""
    try:
        info = json.loads(device.get('vendor_board_info') or '')
        addr = info.get(ADDRESS_KEY)
    except (ValueError, AttributeError):
        return None
    return addr if isinstance(addr, str) else None


class CyborgAPI:
    """``devices(host)`` over Cyborg's REST API.

    :param http: a keystoneauth ``Adapter`` (or anything with its ``get``)
        whose base is Cyborg's endpoint; built from cyborg.conf when None.
    """

    def __init__(self, conf, http=None):
        self._conf = conf
        self._http = http

    def _adapter(self):
        if self._http is None:
            group = 'placement'     # the agent's own service credentials
            auth = ks_loading.load_auth_from_conf_options(self._conf, group)
            sess = ks_loading.load_session_from_conf_options(
                self._conf, group, auth=auth)
            g = self._conf.gpuwarden
            self._http = ks_adapter.Adapter(
                sess, service_type='accelerator',
                interface=g.cyborg_interface,
                region_name=getattr(self._conf[group], 'region_name', None),
                endpoint_override=g.cyborg_endpoint)
        return self._http

    def devices(self, host):
        """Cyborg's device objects for ``host`` (its ``hostname``)."""
        resp = self._adapter().get(
            f'/v2/devices?hostname={host}',
            headers={'OpenStack-API-Version': f'accelerator {API_VERSION}',
                     'Accept': 'application/json'},
            raise_exc=False)
        if resp.status_code != 200:
            raise RuntimeError(f'GET /v2/devices?hostname={host}: HTTP '
                               f'{resp.status_code} {resp.text[:200]}')
        return resp.json()['devices']

    def maintaining(self, host):
        """``{PCI address: device uuid}`` of this host's devices whose
        status is ``maintaining``, and the same of every device Cyborg
        knows (by the address the driver put in vendor_board_info)."""
        out, known = {}, {}
        for dev in self.devices(host):
            addr = address_of(dev)
            if addr is None:
                continue
            known[addr] = dev.get('uuid')
            if dev.get('status') == 'maintaining':
                out[addr] = dev.get('uuid')
        return out, known
