"""The gpuwarden Cyborg driver's discover() beside Cyborg's in-tree
nvidia_gpu_driver discover(), on the same test hosts, in one run
(scripts/bench.d/shim-vs-intree prints this script's Markdown).

Every host runs in a process of its own (this script re-runs itself with
``--host NAME``), so each gets fresh Cyborg and Placement databases and
its own Cyborg configuration.

gpuwarden: the real gpuwardend (release build, simulated host backend,
``--isolation-policy warn --manage-vendors 10de``) on
tests/fixtures/hosts/<host>, its read endpoint over ipc; the shim's
GPUWardenDriver().discover() as cyborg-agent calls it, with the agent's
``[placement]`` credentials (Cyborg's PlacementClient, keystoneauth).

Placement: openstack-placement's WSGI app in ANOTHER PROCESS
(tests/bench/placement_server.py: eventlet.wsgi with keep-alive, sqlite in
a temporary directory, noauth2), started and stopped here. The compute
node's provider is created as nova-compute creates it; the deployables'
providers are created by Cyborg's own ConductorManager.report_data in the
warm-up agent cycles (discover() then report_data, Cyborg's database on
sqlite), until a cycle changes nothing: the measured calls are steady
state.

Counted per measured call, outside the timed window:
- daemon requests: the daemon's own ``metrics`` op (``requests``, per op)
  read before and after the call (the ``metrics`` reads themselves left
  out);
- Placement requests: server side, by the Placement process's counting
  middleware (method, path with UUIDs as ``{uuid}``, query parameter
  names), with the server-side time each took.
Neither depends on how discover() is written.

Something changed: after the steady calls, GW_BENCH_CHANGES times, one more
GPU is quarantined (admin endpoint); the benchmark waits until neither the
daemon nor Placement has served a request for 0.5 s (what a driver that
follows the daemon's events did by itself is reported on its own row),
then measures the next discover(), the conductor's report_data of that
cycle, and the discover() after it.

In-tree: cyborg.accelerator.drivers.gpu.nvidia.driver.NVIDIAGPUDriver().
discover(). Its `lspci -nn -D` runs through privsep in production
(cyborg.accelerator.common.utils.lspci_privileged, a sys_admin_pctxt
entrypoint); here the context is put in client mode off, which runs the
entrypoint in this process, and `lspci` on PATH is a wrapper that adds
`-A linux-sysfs -O sysfs.path=<host>/sys/bus/pci`. So both read the same
tree; the in-tree time includes one lspci process per call, which it has in
production too (plus privsep's own round trip there, not counted here).

Environment: GW_BENCH_HOSTS (default "sm4029-8xrtx5000 synth64"),
GW_BENCH_ROUNDS (calls of each series, default 50), GW_BENCH_CHANGES
(quarantines measured, default 5), GW_BENCH_PLACEMENT_SERVER (eventlet or
wsgiref), GW_SHIM_DIR (the shim/ directory to measure, default the tree's),
GW_BENCH_LOG (a logging level name, default CRITICAL: the in-tree driver
warns once per GPU and call).
"""

import collections
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

TOP = os.environ.get('GW_SOURCE_DIR') or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(TOP, 'tests', 'bench')
# GW_SHIM_DIR: another copy of shim/ to measure (e.g. a commit's, exported).
SHIM_DIR = os.environ.get('GW_SHIM_DIR') or os.path.join(TOP, 'shim')
sys.path[:0] = [SHIM_DIR, os.path.join(TOP, 'tests', 'python')]

HOSTS = os.environ.get('GW_BENCH_HOSTS',
                       'sm4029-8xrtx5000 synth64').split()
RUNS = int(os.environ.get('GW_BENCH_ROUNDS', '50'))
CHANGES = int(os.environ.get('GW_BENCH_CHANGES', '5'))
SERVER = os.environ.get('GW_BENCH_PLACEMENT_SERVER', 'eventlet')
NAME = 'cmp1'     # gwdaemon's --host-name; Cyborg's [DEFAULT] host below
WARN = ['--isolation-policy', 'warn', '--manage-vendors', '10de',
        '--cleanup-workers', '1']
MAX_WARMUP = 12
WRITES = ('PUT', 'POST', 'PATCH', 'DELETE')

SHIM = 'shim discover()'
OBJECTS = 'shim inventory + objects only'
INTREE = 'in-tree discover()'


# --- Placement in another process -------------------------------------------

class Placement:
    """tests/bench/placement_server.py as a child process."""

    def __init__(self, dbdir):
        os.makedirs(dbdir, exist_ok=True)
        self.err = open(os.path.join(dbdir, 'stderr'), 'w+')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, 'placement_server.py'),
             dbdir, '--server', SERVER],
            stdout=subprocess.PIPE, stderr=self.err, text=True,
            env=dict(os.environ, PYTHONWARNINGS='ignore'))
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != 'READY':
            self.err.seek(0)
            raise RuntimeError('Placement did not start: ' + self.err.read())
        self.url = f'http://127.0.0.1:{line[1]}'
        import requests
        self.http = requests.Session()
        self.http.headers.update({'X-Auth-Token': 'admin',
                                  'Accept': 'application/json'})
        self.seen = 0

    def call(self, method, path, version, body=None, status=200):
        r = self.http.request(method, self.url + path, json=body, headers={
            'OpenStack-API-Version': f'placement {version}'})
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    def since(self):
        """The requests served since the last call: [(method, path,
        status, µs)]."""
        got = self.http.get(f'{self.url}/__bench__/log',
                            params={'since': self.seen}).json()
        self.seen = got['total']
        return [tuple(e) for e in got['entries']]

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


# --- what one call cost -----------------------------------------------------

class Meter:
    """Daemon requests (its ``metrics`` op) and Placement requests (the
    Placement process's log) around one call; the reads happen before and
    after the timed window."""

    def __init__(self, daemon, placement):
        self.d, self.p = daemon, placement

    def _requests(self):
        return self.d.result('metrics')['requests']

    def run(self, f):
        before = self._requests()
        self.p.since()
        t0 = time.perf_counter()
        out = f()
        ms = (time.perf_counter() - t0) * 1e3
        after = self._requests()
        daemon = {op: after[op] - before.get(op, 0) for op in after
                  if op != 'metrics' and after[op] != before.get(op, 0)}
        return out, Cost(ms, daemon, self.p.since())

    def background(self, action, own, quiet_s=0.5, limit_s=10.0):
        """Run ``action`` (untimed), then wait until neither the daemon
        nor Placement has served a request for ``quiet_s``: what the
        driver's own threads (an event listener) did in reaction. ``own``:
        the daemon requests ``action`` itself makes, left out."""
        before = self._requests()
        self.p.since()
        action()
        entries, last = [], None
        quiet_since = time.monotonic()
        deadline = quiet_since + limit_s
        while time.monotonic() < deadline:
            time.sleep(0.1)
            new = self.p.since()
            cur = self._requests()
            cur.pop('metrics', None)
            entries += new
            if new or cur != last:
                quiet_since, last = time.monotonic(), cur
            elif time.monotonic() - quiet_since >= quiet_s:
                break
        daemon = {op: last[op] - before.get(op, 0) - own.get(op, 0)
                  for op in last}
        return Cost(0.0, {k: v for k, v in daemon.items() if v}, entries)


class Cost:
    def __init__(self, ms, daemon, placement):
        self.ms = ms
        self.daemon = daemon                  # op -> count
        self.placement = placement            # [(method, path, status, µs)]

    @property
    def n_daemon(self):
        return sum(self.daemon.values())

    @property
    def n_placement(self):
        return len(self.placement)

    @property
    def placement_ms(self):
        return sum(e[3] for e in self.placement) / 1e3

    def writes(self):
        return [e for e in self.placement if e[0] in WRITES]

    def daemon_text(self):
        return breakdown(self.daemon)

    def placement_text(self):
        c = collections.Counter(f'{m} {p}' + ('' if s < 300 else f' ({s})')
                                for m, p, s, _ in self.placement)
        return breakdown(c)


def breakdown(counts):
    n = sum(counts.values())
    if not n:
        return '0'
    parts = ', '.join(f'`{k}`' + (f' x{v}' if v > 1 else '')
                      for k, v in sorted(counts.items()))
    return f'{n}: {parts}'


def counts_cell(costs, text):
    """One call's breakdown when every call made the same requests, else
    the range and the most common one."""
    texts = collections.Counter(text(c) for c in costs)
    if len(texts) == 1:
        return next(iter(texts))
    common, k = texts.most_common(1)[0]
    return (f'varies ({len(texts)} kinds); {k} of {len(costs)} calls: '
            f'{common}')


def p90(v):
    return sorted(v)[int(0.9 * (len(v) - 1))]


# --- what each driver reports -------------------------------------------------

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


# --- one host -------------------------------------------------------------------

def run_host(host):
    logging.basicConfig(level=getattr(logging, os.environ.get(
        'GW_BENCH_LOG', 'CRITICAL')))
    import test_shim_support as S
    from gwdaemon import Daemon

    tmp = tempfile.mkdtemp(prefix='gw-bench-')
    tree = os.path.join(TOP, 'tests', 'fixtures', 'hosts', host)
    bindir = os.path.join(tmp, 'bin')
    os.mkdir(bindir)
    with open(os.path.join(bindir, 'lspci'), 'w') as f:
        f.write('#!/bin/sh\nexec /usr/bin/lspci -A linux-sysfs '
                f'-O sysfs.path={tree}/sys/bus/pci "$@"\n')
    os.chmod(os.path.join(bindir, 'lspci'), 0o755)
    os.environ['PATH'] = bindir + os.pathsep + os.environ['PATH']

    d = Daemon(os.path.join(tmp, 'warn'), host=host, extra=WARN)
    os.mkdir(d.tmp)
    d.start()
    placement = Placement(os.path.join(tmp, 'placement'))
    d0 = shim = None
    try:
        conf = S.configure_cyborg(tmp, placement_url=placement.url,
                                  endpoint=d.read, request_timeout=5,
                                  retries=0, host=NAME,
                                  # for a shim that follows the daemon's
                                  # events (ignored by one that does not)
                                  events_endpoint=d.events)
        conf.set_override('host', NAME)

        from cyborg import context as cy_context
        from cyborg import objects as cyborg_objects
        cyborg_objects.register_all()
        from cyborg.accelerator.drivers.gpu.nvidia import driver as nv
        from cyborg.conductor import manager as cond_manager
        from cyborg.db import migration
        import cyborg.privsep
        from gpuwarden_cyborg import driver as gw_driver

        conf.set_override('connection', 'sqlite:///' +
                          os.path.join(tmp, 'cyborg.db'), group='database')
        migration.create_schema()
        cyborg.privsep.sys_admin_pctxt.set_client_mode(False)

        # nova-compute's resource tracker: the compute node provider, named
        # after the host, with its own inventory and COMPUTE_ACCELERATORS.
        root = str(uuid.uuid4())
        placement.call('POST', '/resource_providers', '1.20',
                       {'name': NAME, 'uuid': root})
        placement.call('PUT', f'/resource_providers/{root}/inventories',
                       '1.26', {'resource_provider_generation': 0,
                                'inventories': {
                                    rc: {'total': n, 'max_unit': n}
                                    for rc, n in (('VCPU', 128),
                                                  ('MEMORY_MB', 1 << 20),
                                                  ('DISK_GB', 4096))}})
        placement.call('PUT', f'/resource_providers/{root}/traits', '1.6',
                       {'resource_provider_generation': 1,
                        'traits': ['COMPUTE_ACCELERATORS']})
        placement.since()

        ctx = cy_context.get_admin_context()
        cond = cond_manager.ConductorManager('cyborg-conductor', 'c')
        shim = gw_driver.GPUWardenDriver()
        intree = nv.NVIDIAGPUDriver()
        meter = Meter(d, placement)

        # Warm-up: agent cycles (discover(), then the conductor's
        # report_data) until one changes nothing anywhere.
        warm = []
        while True:
            gen = d.result('inventory')['generation']
            devs, c = meter.run(shim.discover)
            _, r = meter.run(lambda: cond.report_data(ctx, NAME, devs))
            quiet = (not c.writes() and not r.writes() and
                     d.result('inventory')['generation'] == gen)
            warm.append((c, r, quiet))
            if len(warm) >= 2 and warm[-1][2] and warm[-2][2]:
                break
            if len(warm) >= MAX_WARMUP:
                raise RuntimeError(f'{host}: not steady after {MAX_WARMUP} '
                                   'agent cycles')
        inv = d.result('inventory')
        states = collections.Counter(x['state'] for x in d.devices())
        n_gpus = sum(states.values())
        pl_reserved = {}
        for x in placement.call(
                'GET', f'/resource_providers?in_tree={root}',
                '1.14')['resource_providers']:
            if x['uuid'] != root:
                pl_reserved[x['name']] = placement.call(
                    'GET', f"/resource_providers/{x['uuid']}/inventories",
                    '1.26')['inventories']['PGPU']['reserved']
        placement.since()
        in_sync = pl_reserved == {x['name']: x['reserved']
                                  for x in inv['deployables']}
        if not in_sync or set(states) != {'allocatable'}:
            raise RuntimeError(
                f'{host}: after {len(warm)} agent cycles the GPUs are '
                f'{dict(states)} and Placement\'s reserved is {pl_reserved}, '
                f'the daemon\'s {[(x["name"], x["reserved"]) for x in inv["deployables"]]}: '
                'not the steady state to measure (GW_BENCH_LOG=WARNING '
                'shows why)')

        intree.discover()                                   # warm-up

        def objects_only():
            from gpuwarden_cyborg import objects
            return objects.build(shim.fetch_inventory())

        series = {SHIM: shim.discover, INTREE: intree.discover}
        try:
            objects_only()
            series[OBJECTS] = objects_only
        except (AttributeError, ImportError, TypeError):
            pass                      # not in this version of the shim
        order = [k for k in (SHIM, OBJECTS, INTREE) if k in series]
        last = {}
        costs = {k: [] for k in order}
        for i in range(RUNS):
            for k in order[i % len(order):] + order[:i % len(order)]:
                last[k], c = meter.run(series[k])
                costs[k].append(c)
        steady_gen = d.result('inventory')['generation']

        # Something changed: one GPU quarantined between two agent cycles.
        change = {'between': [], 'first': [], 'conductor': [], 'next': []}
        gpus = [x['address'] for x in d.devices()]
        for addr in gpus[:CHANGES]:
            change['between'].append(meter.background(
                lambda: d.result('quarantine', {'address': addr,
                                                'reason': 'benchmark'}),
                own={'quarantine': 1}))
            devs, c = meter.run(shim.discover)
            change['first'].append(c)
            _, r = meter.run(lambda: cond.report_data(ctx, NAME, devs))
            change['conductor'].append(r)
            devs, c = meter.run(shim.discover)
            change['next'].append(c)
            cond.report_data(ctx, NAME, devs)
        quarantined = sum(x['reserved'] for x in
                          d.result('inventory')['deployables'])

        # The same host with the default policy: what the shim reports.
        default = None
        if host == HOSTS[0]:
            d0 = Daemon(os.path.join(tmp, 'default'), host=host,
                        extra=['--cleanup-workers', '1'])
            os.mkdir(d0.tmp)
            d0.start()
            inv0 = d0.result('inventory')
            default = {
                'states': sorted({x['state'] for x in d0.devices()}),
                'deployables': len(inv0['deployables']),
                'handles': sum(len(x['attach_handles'])
                               for x in inv0['deployables']),
                'reserved': sum(x['reserved'] for x in inv0['deployables']),
            }
    finally:
        if getattr(shim, 'close', None):
            shim.close()          # a shim with threads stops them
        if d0 is not None:
            d0.stop()
        placement.close()
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    # --- the report -------------------------------------------------------
    times = {k: [c.ms for c in v] for k, v in costs.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med[INTREE]
    n_dep = len(inv['deployables'])
    print(f'### Host `{host}`: {n_gpus} GPUs, {n_dep} deployables '
          f'(model {inv["model"]})')
    print()
    print(f'Warm-up: {len(warm)} agent cycles (discover(), then '
          'report_data) until two in a row wrote nothing to Placement and '
          'left the generation alone; GPU states then: '
          + ', '.join(f'{n} {s}' for s, n in sorted(states.items()))
          + '; Placement\'s `reserved` equals the daemon\'s on every '
          'provider. '
          f'The conductor\'s report_data in the last warm-up cycle: '
          f'{warm[-1][1].ms:.0f} ms, Placement '
          f'{warm[-1][1].placement_text()}.')
    print()
    print(f'{RUNS} calls of each, interleaved (the order rotates every '
          'round), after the warm-up; wall time per call in ms. '
          f'{os.cpu_count()} CPUs, shared with other work and with the '
          'Placement process. Requests: per call, daemon requests by op '
          '(its `metrics` op before and after), Placement requests by '
          'method and path (counted in the Placement process); '
          '"Placement server" is the median server-side time of those '
          'requests per call.')
    print()
    print('| call | median (ms) | p90 (ms) | median / in-tree median | '
          'daemon requests per call | Placement requests per call | '
          'Placement server (ms) |')
    print('|---|---|---|---|---|---|---|')
    for k in order:
        v = costs[k]
        print(f'| {k} | {med[k]:.2f} | {p90(times[k]):.2f} | '
              f'{med[k] / base:.2f}x | '
              f'{counts_cell(v, Cost.daemon_text)} | '
              f'{counts_cell(v, Cost.placement_text)} | '
              f'{statistics.median(c.placement_ms for c in v):.2f} |')
    print()
    sd = costs[SHIM]
    nd, npl = max(c.n_daemon for c in sd), max(c.n_placement for c in sd)
    ratio = med[SHIM] / base
    unmet = [x for x, ok in (('daemon requests', nd <= 1),
                             ('Placement requests', npl <= 1),
                             ('time ratio', ratio <= 0.5)) if not ok]
    print(f'Steady state (issue 14 item 4 asks at most 1 daemon request, '
          f'at most 1 Placement request, and at most 0.5x the in-tree '
          f'median): at most {nd} daemon and {npl} Placement requests per '
          f'call, {ratio:.2f}x: '
          + ('**met**.' if not unmet else
             f'**not met** ({", ".join(unmet)}).')
          + (' The inventory generation did not move during the measured '
             'calls.' if steady_gen == inv['generation'] else
             ' **The inventory generation moved during the measured '
             'calls.**'))
    print()
    nq = len(change['first'])
    print(f'**Something changed.** {nq} times: `quarantine` one more GPU '
          '(admin endpoint), then one agent cycle (discover(), '
          'report_data), then the next discover(). Times over the '
          f'{nq} repetitions; ratio to the steady in-tree median. After '
          f'them the inventory reserves {quarantined} GPUs.')
    print()
    print('| call | median (ms) | max (ms) | / in-tree median | daemon '
          'requests per call | Placement requests per call | Placement '
          'server (ms) |')
    print('|---|---|---|---|---|---|---|')
    v = change['between']
    print(f'| between the quarantine and the next cycle: what the driver '
          f'did by itself (an event listener, if it has one; waited until '
          f'0.5 s without requests) | - | - | - | '
          f'{counts_cell(v, Cost.daemon_text)} | '
          f'{counts_cell(v, Cost.placement_text)} | '
          f'{statistics.median(c.placement_ms for c in v):.2f} |')
    for label, key in (('first discover() after the quarantine', 'first'),
                       ('conductor report_data() of that cycle (not '
                        'discover(); for scale)', 'conductor'),
                       ('next discover() (the cycle after)', 'next')):
        v = change[key]
        ms = [c.ms for c in v]
        print(f'| {label} | {statistics.median(ms):.2f} | {max(ms):.2f} | '
              f'{statistics.median(ms) / base:.2f}x | '
              f'{counts_cell(v, Cost.daemon_text)} | '
              f'{counts_cell(v, Cost.placement_text)} | '
              f'{statistics.median(c.placement_ms for c in v):.2f} |')
    print()

    shim_f = fields(last[SHIM])
    tree_f = fields(last[INTREE])
    same_names = all(shim_f.get(b, {}).get('name') == t['name']
                     for b, t in tree_f.items())
    if default is None:
        print(f'What each reports: {len(shim_f)} devices from the shim, '
              f'{len(tree_f)} from the in-tree driver; deployable names '
              + ('the same' if same_names and set(shim_f) == set(tree_f)
                 else '**not the same**') +
              f' (`{NAME}_<BDF>`); '
              f'{sum(len(x["handles"]) for x in shim_f.values())} attach '
              'handles from the shim (every GPU allocatable), '
              f'{sum(len(x["handles"]) for x in tree_f.values())} from the '
              'in-tree driver.')
        print()
        return
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
    print(f'With the default policy on the same host (a second daemon; GPU '
          f'states after its clean-up: {", ".join(default["states"])}), the '
          f'daemon\'s inventory has the same {default["deployables"]} '
          f'deployables with {default["handles"]} attach handles and '
          f'reserved {default["reserved"]} in all: nothing is allocatable'
          + (' (quarantined GPUs stay so until an operator releases them). '
             if default['states'] == ['quarantined'] else '. ')
          + 'The in-tree driver reads only lspci, so it reports the table '
          f'above unchanged: {sum(len(x["handles"]) for x in tree_f.values())} '
          'handles, any of which Nova may get.')
    print()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--host':
        run_host(sys.argv[2])
        return
    for host in HOSTS:
        sys.stdout.flush()
        subprocess.run([sys.executable, os.path.abspath(__file__),
                        '--host', host], check=True,
                       env=dict(os.environ, GW_BENCH_HOSTS=' '.join(HOSTS)))


if __name__ == '__main__':
    main()
