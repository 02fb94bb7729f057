# SPDX-License-Identifier: Apache-2.0
"""Cyborg's own driver objects from a checked :class:`Inventory`.

Cyborg's tree is Device -> ControlPathID -> Deployables -> AttachHandles;
the conductor identifies a device by ``controlpath_id.cpid_info`` and a
deployable by ``name``. The daemon says, per deployable, which device it
belongs to (PROTOCOL.md §8 ``inventory``: ``device``, whose controlpath is
the deployable's first GPU): deployables naming the same controlpath become
one DriverDevice, in the daemon's order. Nothing is renamed, reordered or
reformatted: the daemon's strings go to Cyborg as they are.

* per-GPU model: one DriverDevice per GPU, carrying ``<host>_<BDF>``
  (where Cyborg's in-tree nvidia_gpu_driver puts it, with the same cpid_info
  and attach_info strings, so a host switching drivers keeps its providers).
* per-clique model: the clique's deployable (N attach handles) hangs under
  the DriverDevice of its lowest-addressed GPU; the other GPUs of the clique
  are not devices in Cyborg. See docs/cyborg.md for what a model switch or
  a clique change does to Cyborg's records.
"""

import json

from cyborg.objects.driver_objects import driver_attach_handle
from cyborg.objects.driver_objects import driver_attribute
from cyborg.objects.driver_objects import driver_controlpath_id
from cyborg.objects.driver_objects import driver_deployable
from cyborg.objects.driver_objects import driver_device

from gpuwarden_cyborg import cyborg_status


def attributes(dep):
    """``rc`` first, then ``trait0..N`` in the daemon's order (the keys
    Cyborg's own drivers use; the conductor diffs attributes by key)."""
    attrs = [driver_attribute.DriverAttribute(key='rc', value=dep.rc)]
    attrs += [driver_attribute.DriverAttribute(key=f'trait{i}', value=t)
              for i, t in enumerate(dep.traits)]
    return attrs


def deployable(dep):
    return driver_deployable.DriverDeployable(
        name=dep.name,
        num_accelerators=dep.num_accelerators,
        attribute_list=attributes(dep),
        attach_handle_list=[
            driver_attach_handle.DriverAttachHandle(
                attach_type=h.type, attach_info=h.info, in_use=False)
            for h in dep.attach_handles],
        driver_name=dep.driver_name)


def address(cpid_info):
    """The PCI address in a control path's JSON (Cyborg's
    pci_str_to_json, checked by inventory.py)."""
    a = json.loads(cpid_info)
    return f"{a['domain']}:{a['bus']}:{a['device']}.{a['function']}"


def device(dev, deps):
    return driver_device.DriverDevice(
        vendor=dev.vendor,
        model=dev.model,
        type=dev.type,
        std_board_info=dev.std_board_info,
        # The device's PCI address: Cyborg's device API shows no control
        # path, and the driver finds its devices there by this
        # (cyborg_status.py: Cyborg's own device disable/enable).
        vendor_board_info=cyborg_status.vendor_board_info(
            address(dev.cpid_info)),
        controlpath_id=driver_controlpath_id.DriverControlPathID(
            cpid_type=dev.cpid_type, cpid_info=dev.cpid_info),
        deployable_list=[deployable(d) for d in deps],
        stub=False)


def build(inv):
    """The full DriverDevice list for ``inv``."""
    groups = {}
    for dep in inv.deployables:
        groups.setdefault(dep.device.cpid_info, (dep.device, []))[1].append(
            dep)
    return [device(dev, deps) for dev, deps in groups.values()]
