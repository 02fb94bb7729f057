# SPDX-License-Identifier: Apache-2.0
"""The ``inventory`` op's result (PROTOCOL.md §8), checked field by field.

Everything is validated before a single Cyborg object is built: one bad
entry rejects the whole inventory (InventoryError), because reporting the
rest would make Cyborg delete the providers of what was left out. The
checks are the protocol's types and what Cyborg and Placement will accept
(name rules, column sizes, enums); they decide nothing about GPUs. Keys
the driver does not know are ignored (PROTOCOL.md §5).
"""

import dataclasses
import json
import re

from cyborg.accelerator.common import utils as cyborg_utils
from cyborg.common import constants

from gpuwarden_cyborg import errors
from gpuwarden_cyborg import protocol

_BDF = re.compile(r'^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$')
_HEX4 = re.compile(r'^[0-9a-f]{4}$')
# Placement's rule for trait and resource class names.
_PLACEMENT_NAME = re.compile(r'^[A-Z0-9_]+$')
# Column sizes of Cyborg's database (cyborg/db/sqlalchemy/models.py).
_STR255 = 255
_DRIVER_NAME_MAX = 100
_CPID_TYPES = ('PCI',)      # controlpath_ids.cpid_type enum
_GENERATION_MAX = 2 ** 63 - 1


@dataclasses.dataclass(frozen=True)
class Device:
    """The DriverDevice a deployable belongs to."""
    vendor: str
    model: str
    type: str
    std_board_info: str
    cpid_type: str
    cpid_info: str


@dataclasses.dataclass(frozen=True)
class AttachHandle:
    type: str
    info: str
    address: str


@dataclasses.dataclass(frozen=True)
class Deployable:
    name: str
    rc: str
    num_accelerators: int
    reserved: int
    traits: tuple
    attach_handles: tuple
    gpus: tuple
    driver_name: str
    device: Device


@dataclasses.dataclass(frozen=True)
class Inventory:
    generation: int
    host: str
    model: str
    deployables: tuple
    #: This content's revision in the daemon's run, and the highest revision
    #: the daemon has been told is in Placement (0: none yet). None from a
    #: daemon that does not say (then `published` is always sent).
    revision: int = None
    published_revision: int = None

    @property
    def confirmed(self):
        """True when the daemon already knows Placement covers this
        content: `published` would change nothing."""
        return self.revision is not None and \
            self.revision == self.published_revision


def _bad(where, msg):
    raise errors.InventoryError(f"inventory: {where}: {msg}")


def _get(obj, key, kind, where):
    """``obj[key]`` checked as ``kind``: 'str', 'uint', 'list', 'map'."""
    if not isinstance(obj, dict):
        _bad(where, f"is {type(obj).__name__}, expected a map")
    if key not in obj:
        _bad(where, f"missing {key!r}")
    val = obj[key]
    ok = {'str': lambda v: isinstance(v, str),
          'uint': protocol.is_uint,
          'list': lambda v: isinstance(v, list),
          'map': lambda v: isinstance(v, dict)}[kind](val)
    if not ok:
        _bad(where, f"{key!r} is {val!r}, expected {kind}")
    return val


def _text(val, where, what, limit=_STR255):
    if not val or len(val) > limit:
        _bad(where, f"{what} {val!r} is empty or longer than {limit}")
    return val


def _placement_name(val, where):
    if not isinstance(val, str) or not _PLACEMENT_NAME.match(val) \
            or len(val) > 255:
        _bad(where, f"{val!r} is not a Placement name ([A-Z0-9_], at most "
             f"255 characters)")
    return val


def _json_text(val, where, what):
    try:
        json.loads(val)
    except ValueError:
        _bad(where, f"{what} {val!r} is not JSON text")
    return val


def _handle(raw, where, members):
    htype = _get(raw, 'type', 'str', where)
    if htype != constants.AH_TYPE_PCI:
        # Nova composes only PCI attach handles (ignores the request
        # otherwise); PROTOCOL.md only defines PCI.
        _bad(where, f"attach handle type {htype!r} is not PCI")
    info = _get(raw, 'info', 'str', where)
    try:
        parsed = json.loads(info)
        addr = '{domain}:{bus}:{device}.{function}'.format(**parsed)
    except (ValueError, KeyError, TypeError, AttributeError):
        _bad(where, f"attach handle info {info!r} is not Cyborg's JSON PCI "
             f"address")
    if not _BDF.match(addr) or info != cyborg_utils.pci_str_to_json(addr):
        # Cyborg matches handles by this exact string and Nova reads its
        # keys: it must be what pci_str_to_json makes, byte for byte.
        _bad(where, f"attach handle info {info!r} is not Cyborg's JSON PCI "
             f"address (sorted keys, string values, lower-case hex)")
    if addr not in members:
        _bad(where, f"attach handle {addr} is not one of its gpus")
    return AttachHandle(htype, info, addr)


def _device(raw, where):
    where = where + ' device'
    dtype = _get(raw, 'type', 'str', where)
    if dtype not in constants.DEVICE_TYPE:
        _bad(where, f"type {dtype!r} is not a Cyborg device type")
    vendor = _get(raw, 'vendor', 'str', where)
    if not _HEX4.match(vendor):
        _bad(where, f"vendor {vendor!r} is not 4 lower-case hex digits")
    cp = _get(raw, 'controlpath', 'map', where)
    cpid_type = _get(cp, 'type', 'str', where + ' controlpath')
    if cpid_type not in _CPID_TYPES:
        _bad(where, f"controlpath type {cpid_type!r} is not one Cyborg's "
             f"database accepts {_CPID_TYPES}")
    cpid_info = _text(_get(cp, 'info', 'str', where + ' controlpath'),
                      where, 'controlpath info')
    return Device(
        vendor=vendor,
        model=_text(_get(raw, 'model', 'str', where), where, 'model'),
        type=dtype,
        std_board_info=_json_text(_get(raw, 'std_board_info', 'str', where),
                                  where, 'std_board_info'),
        cpid_type=cpid_type,
        cpid_info=_json_text(cpid_info, where, 'controlpath info'))


def _deployable(raw, index):
    where = f"deployable #{index}"
    name = _text(_get(raw, 'name', 'str', where), where, 'name')
    where = f"deployable {name}"
    rc = _placement_name(_get(raw, 'rc', 'str', where), where)
    num = _get(raw, 'num_accelerators', 'uint', where)
    reserved = _get(raw, 'reserved', 'uint', where)
    if num < 1:
        # Placement rejects an inventory total below 1.
        _bad(where, f"num_accelerators {num} < 1")
    if reserved > num:
        _bad(where, f"reserved {reserved} > num_accelerators {num}")
    traits = tuple(_placement_name(t, where)
                   for t in _get(raw, 'traits', 'list', where))
    if len(set(traits)) != len(traits):
        _bad(where, f"duplicate traits {list(traits)}")
    members = _get(raw, 'gpus', 'list', where)
    for a in members:
        if not isinstance(a, str) or not _BDF.match(a):
            _bad(where, f"gpu {a!r} is not a canonical PCI address")
    if members != sorted(set(members)):
        _bad(where, f"gpus {members} are not ascending and distinct")
    if len(members) != num:
        _bad(where, f"{len(members)} gpus but num_accelerators {num}")
    handles = tuple(_handle(h, where, members)
                    for h in _get(raw, 'attach_handles', 'list', where))
    if len({h.address for h in handles}) != len(handles):
        _bad(where, "two attach handles for one GPU")
    driver_name = _text(_get(raw, 'driver_name', 'str', where), where,
                        'driver_name', _DRIVER_NAME_MAX)
    return Deployable(name=name, rc=rc, num_accelerators=num,
                      reserved=reserved, traits=traits,
                      attach_handles=handles, gpus=tuple(members),
                      driver_name=driver_name,
                      device=_device(_get(raw, 'device', 'map', where),
                                     where))


def parse(result, host=None):
    """Validate an ``inventory`` result and return an :class:`Inventory`.

    :param host: when given ([gpuwarden] host), the inventory's ``host``
        must be exactly this.
    """
    where = 'result'
    generation = _get(result, 'generation', 'uint', where)
    if not 1 <= generation <= _GENERATION_MAX:
        _bad(where, f"generation {generation} not in 1..2^63-1")
    revision = published_revision = None
    if 'revision' in result and 'published_revision' in result:
        revision = _get(result, 'revision', 'uint', where)
        published_revision = _get(result, 'published_revision', 'uint',
                                  where)
    inv_host = _get(result, 'host', 'str', where)
    model = _get(result, 'model', 'str', where)
    raw_deps = _get(result, 'deployables', 'list', where)
    if not raw_deps:
        # Cyborg would delete every provider this driver reported.
        _bad(where, "no deployables: refusing to report an empty list "
             "(Cyborg would delete every gpuwarden provider on this host; "
             "remove gpuwarden from [agent] enabled_drivers on a host "
             "without GPUs)")
    deployables = tuple(_deployable(raw, i) for i, raw in enumerate(raw_deps))
    names = [d.name for d in deployables]
    if len(set(names)) != len(names):
        _bad(where, f"duplicate deployable names {names}")
    owner = {}
    for d in deployables:
        for a in d.gpus:
            if a in owner:
                _bad(where, f"GPU {a} is in {owner[a]} and {d.name}")
            owner[a] = d.name
    devices = {}
    for d in deployables:
        other = devices.setdefault(d.device.cpid_info, d.device)
        if other != d.device:
            _bad(where, f"deployable {d.name} names controlpath "
                 f"{d.device.cpid_info} with other device fields than an "
                 f"earlier deployable")
    if host is not None and inv_host != host:
        _bad(where, f"gpuwardend names its deployables for host "
             f"{inv_host!r}, [gpuwarden] host says {host!r}")
    return Inventory(generation=generation, host=inv_host, model=model,
                     deployables=deployables, revision=revision,
                     published_revision=published_revision)
