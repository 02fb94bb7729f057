# SPDX-License-Identifier: Apache-2.0
"""Print what the gpuwarden driver would hand to Cyborg, object by object.

    python -m gpuwarden_cyborg.show [--endpoint ipc:///run/gpuwarden/read.sock]
                                    [--config-file /etc/cyborg/cyborg.conf]
                                    [--json]

Read-only: it asks the daemon for the inventory and builds the same
DriverDevice list discover() returns, but writes nothing to Placement and
does not tell the daemon anything was published.
"""

import argparse
import json
import sys

from gpuwarden_cyborg import errors


def _load_conf(args):
    from cyborg.conf import CONF
    from gpuwarden_cyborg import conf as gw_conf
    gw_conf.register_opts(CONF)
    CONF([], project='cyborg',
         default_config_files=[args.config_file] if args.config_file else [])
    for opt in ('endpoint', 'request_timeout', 'retries', 'host'):
        val = getattr(args, opt)
        if val is not None:
            CONF.set_override(opt, val, group='gpuwarden')
    return CONF


def format_devices(devices, generation=None):
    """The DriverDevice list as indented text, every field Cyborg reads."""
    out = []
    if generation is not None:
        out.append(f'inventory generation {generation}: '
                   f'{len(devices)} DriverDevice objects')
    for i, dev in enumerate(devices):
        out.append(f'DriverDevice[{i}] vendor={dev.vendor} type={dev.type} '
                   f'model={dev.model!r} stub={dev.stub}')
        out.append(f'  controlpath_id: {dev.controlpath_id.cpid_type} '
                   f'{dev.controlpath_id.cpid_info}')
        out.append(f'  std_board_info: {dev.std_board_info}')
        out.append(f'  vendor_board_info: {dev.vendor_board_info}')
        for dep in dev.deployable_list:
            out.append(f'  DriverDeployable {dep.name} '
                       f'num_accelerators={dep.num_accelerators} '
                       f'driver_name={dep.driver_name}')
            for attr in dep.attribute_list:
                out.append(f'    DriverAttribute {attr.key} = {attr.value}')
            if not dep.attach_handle_list:
                out.append('    (no attach handle: nothing allocatable)')
            for ah in dep.attach_handle_list:
                out.append(f'    DriverAttachHandle {ah.attach_type} '
                           f'{ah.attach_info} in_use={ah.in_use}')
    return '\n'.join(out)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog='python -m gpuwarden_cyborg.show',
        description='Print the Cyborg objects the gpuwarden driver reports.')
    p.add_argument('--config-file', help='a cyborg.conf to read [gpuwarden] '
                   'from (default: none, built-in defaults)')
    p.add_argument('--endpoint', help='gpuwardend read endpoint')
    p.add_argument('--request-timeout', dest='request_timeout', type=float)
    p.add_argument('--retries', type=int)
    p.add_argument('--host', help='expected deployable-name prefix')
    p.add_argument('--json', action='store_true',
                   help='print obj_to_primitive() of each object instead')
    args = p.parse_args(argv)
    _load_conf(args)
    from gpuwarden_cyborg import driver
    from gpuwarden_cyborg import objects
    try:
        inv = driver.GPUWardenDriver().fetch_inventory()
    except errors.GPUWardenError as exc:
        print(f'gpuwarden driver: {type(exc).__name__}: {exc}',
              file=sys.stderr)
        return 1
    devices = objects.build(inv)
    if args.json:
        print(json.dumps([d.obj_to_primitive() for d in devices], indent=2))
    else:
        print(format_devices(devices, inv.generation))
    return 0


if __name__ == '__main__':
    sys.exit(main())
