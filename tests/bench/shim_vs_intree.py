"""The gpuwarden Cyborg driver's discover() beside Cyborg's in-tree
nvidia_gpu_driver discover(), on the same test host, in one run
(scripts/bench.d/shim-vs-intree prints this script's Markdown).

gpuwarden: the real gpuwardend (release build, simulated host backend) on
tests/fixtures/hosts/<host>, its read endpoint over ipc; the shim's
GPUWardenDriver.discover() as cyborg-agent calls it, with Cyborg's own
PlacementClient against the real Placement service (openstack-placement's
WSGI app on 127.0.0.1, sqlite), whose providers Cyborg's conductor created
(ConductorManager.provider_report), so each discover() does what a steady
cycle does: one `inventory` request, one GET per provider, no PUT, one
`published` request.

In-tree: cyborg.accelerator.drivers.gpu.nvidia.driver.NVIDIAGPUDriver().
discover(). Its `lspci -nn -D` runs through privsep in production
(cyborg.accelerator.common.utils.lspci_privileged, a sys_admin_pctxt
entrypoint); here the context is put in client mode off, which runs the
entrypoint in this process, and `lspci` on PATH is a wrapper that adds
`-A linux-sysfs -O sysfs.path=<host>/sys/bus/pci`. So both read the same
tree; the in-tree time includes one lspci process per call, which it has in
production too (plus privsep's own round trip there, not counted here).
"""

import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

TOP = os.environ.get('GW_SOURCE_DIR') or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(TOP, 'shim'), os.path.join(TOP, 'tests', 'python')]

HOST = os.environ.get('GW_BENCH_HOST', 'sm4029-8xrtx5000')
RUNS = int(os.environ.get('GW_BENCH_ROUNDS', '50'))
NAME = 'cmp1'     # gwdaemon's --host-name; Cyborg's [DEFAULT] host below
WARN = ['--isolation-policy', 'warn', '--manage-vendors', '10de',
        '--cleanup-workers', '1']


def fields(devs):
    """Per GPU (control path address): what each driver reports."""
    out = {}
    for d in devs:
        cp = json.loads(d.controlpath_id.cpid_info)
        bdf = f"{cp['domain']}:{cp['bus']}:{cp['device']}.{cp['function']}"
        for dep in d.deployable_list:
            out[bdf] = {
                'name': dep.name,
                'n': dep.num_accelerators,
                'traits': [a.value for a in dep.attribute_list
                           if a.key.startswith('trait')],
                'rc': [a.value for a in dep.attribute_list if a.key == 'rc'],
                'handles': [h.attach_info for h in dep.attach_handle_list],
                'driver_name': dep.driver_name,
                'model': d.model, 'vendor': d.vendor,
                'std_board_info': d.std_board_info,
                'vendor_board_info': d.vendor_board_info,
            }
    return out


def handle_bdf(info):
    j = json.loads(info)
    return f"{j['bus']}:{j['device']}.{j['function']}"


def main():
    logging.basicConfig(level=logging.ERROR)
    import test_shim_support as S
    from gwdaemon import Daemon

    tmp = tempfile.mkdtemp(prefix='gw-bench-')
    tree = os.path.join(TOP, 'tests', 'fixtures', 'hosts', HOST)
    bindir = os.path.join(tmp, 'bin')
    os.mkdir(bindir)
    with open(os.path.join(bindir, 'lspci'), 'w') as f:
        f.write('#!/bin/sh\nexec /usr/bin/lspci -A linux-sysfs '
                f'-O sysfs.path={tree}/sys/bus/pci "$@"\n')
    os.chmod(os.path.join(bindir, 'lspci'), 0o755)
    os.environ['PATH'] = bindir + os.pathsep + os.environ['PATH']

    d = Daemon(os.path.join(tmp, 'warn'), host=HOST, extra=WARN)
    os.mkdir(d.tmp)
    d.start()
    placement = S.PlacementServer(tmp)
    try:
        conf = S.configure_cyborg(tmp, placement_url=placement.url,
                                  endpoint=d.read, request_timeout=5,
                                  retries=0, host=NAME)
        conf.set_override('host', NAME)

        from cyborg import context as cy_context
        from cyborg.accelerator.drivers.gpu.nvidia import driver as nv
        from cyborg.conductor import manager as cond_manager
        import cyborg.privsep
        from gpuwarden_cyborg import driver as gw_driver
        from gpuwarden_cyborg import objects

        cyborg.privsep.sys_admin_pctxt.set_client_mode(False)

        # Every GPU cleaned; the daemon promotes them when told their
        # generation is published, then Cyborg's conductor creates the
        # providers, as after the agent's first cycles.
        inv = d.result('inventory')
        d.result('published', {'generation': inv['generation']})
        ctx = cy_context.get_admin_context()
        cond = cond_manager.ConductorManager('cyborg-conductor', 'c')
        root = cond.placement_client.ensure_resource_provider(
            ctx, str(uuid.uuid4()), name=NAME)
        shim = gw_driver.GPUWardenDriver()
        for dep in shim.fetch_inventory().deployables:
            cond.provider_report(ctx, dep.name, dep.rc, list(dep.traits),
                                 dep.num_accelerators, root)
        intree = nv.NVIDIAGPUDriver()

        def shim_discover():
            return shim.discover()

        def shim_objects():
            return objects.build(shim.fetch_inventory())

        def intree_discover():
            return intree.discover()

        series = {'shim discover()': shim_discover,
                  'shim inventory + objects only': shim_objects,
                  'in-tree discover()': intree_discover}
        last = {k: f() for k, f in series.items()}      # warm-up
        times = {k: [] for k in series}
        for _ in range(RUNS):
            for k, f in series.items():
                t0 = time.perf_counter()
                last[k] = f()
                times[k].append((time.perf_counter() - t0) * 1e3)

        # The same host with the default policy: what each reports then.
        d0 = Daemon(os.path.join(tmp, 'default'), host=HOST,
                    extra=['--cleanup-workers', '1'])
        os.mkdir(d0.tmp)
        d0.start()
        conf.set_override('endpoint', d0.read, group='gpuwarden')
        inv0 = gw_driver.GPUWardenDriver().fetch_inventory()
        quarantined = fields(objects.build(inv0))
        reserved0 = sum(x.reserved for x in inv0.deployables)
        states = sorted({x['state'] for x in d0.devices()})
        d0.stop()
    finally:
        placement.close()
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    p90 = {k: sorted(v)[int(0.9 * (len(v) - 1))] for k, v in times.items()}
    base = med['in-tree discover()']
    print(f'Host `{HOST}`, {RUNS} calls of each, interleaved, after one '
          f'warm-up call; wall time per call in ms. {os.cpu_count()} CPUs, '
          'shared with other work.')
    print()
    print('| call | median (ms) | p90 (ms) | median / in-tree median |')
    print('|---|---|---|---|')
    for k in series:
        print(f'| {k} | {med[k]:.2f} | {p90[k]:.2f} | {med[k] / base:.2f}x |')
    print()
    shim_f = fields(last['shim discover()'])
    tree_f = fields(last['in-tree discover()'])
    print(f'What each reports ({len(shim_f)} devices from the shim, '
          f'{len(tree_f)} from the in-tree driver; every GPU promoted to '
          'allocatable by the daemon). Deployable names are '
          f'`{NAME}_<BDF>` in both. Traits after `OWNER_CYBORG`:')
    print()
    print('| GPU | shim deployable | shim traits | shim handle | '
          'in-tree deployable | in-tree traits | in-tree handle |')
    print('|---|---|---|---|---|---|---|')
    for bdf in sorted(set(shim_f) | set(tree_f)):
        s, t = shim_f.get(bdf), tree_f.get(bdf)

        def cells(x):
            if not x:
                return ['-', '-', '-']
            tr = [v for v in x['traits'] if v != 'OWNER_CYBORG']
            return [f"`{x['name']}`", ', '.join(tr),
                    ', '.join(handle_bdf(h) for h in x['handles']) or 'none']
        print('| ' + ' | '.join([bdf] + cells(s) + cells(t)) + ' |')
    print()
    one = sorted(shim_f)[0]
    s, t = shim_f[one], tree_f.get(one, {})
    print(f'Device fields (GPU {one}): shim vendor `{s["vendor"]}`, model '
          f'`{s["model"]}`, std_board_info `{s["std_board_info"]}`, '
          f'vendor_board_info `{s["vendor_board_info"]}`, driver_name '
          f'`{s["driver_name"]}`, rc `{s["rc"][0]}`; in-tree vendor '
          f'`{t.get("vendor")}`, model `{t.get("model")}`, std_board_info '
          f'`{t.get("std_board_info")}`, vendor_board_info '
          f'`{t.get("vendor_board_info")}`, driver_name '
          f'`{t.get("driver_name")}`, rc `{(t.get("rc") or ["-"])[0]}`. '
          'Attach handle info is the same pci_str_to_json() text in both.')
    print()
    n_h = sum(len(x['handles']) for x in quarantined.values())
    print(f'With the default policy on the same host (a second daemon; GPU '
          f'states after its clean-up: {", ".join(states)}), the shim '
          f'reports the same {len(quarantined)} deployables with {n_h} attach '
          f'handles and reserved {reserved0} in all: nothing is allocatable. '
          'The in-tree driver reads only lspci, so it reports the table '
          f'above unchanged: {sum(len(x["handles"]) for x in tree_f.values())} '
          'handles, any of which Nova may get.')


if __name__ == '__main__':
    main()
