"""Placement at fleet scale: N hosts of 8 GPUs in openstack-placement on a
real PostgreSQL server, in both inventory models (docs/placement.md),
measured as Nova uses it. Prints a Markdown section (docs/BENCHMARKS.md).

    placement_fleet.py --hosts N [--models per_clique,per_gpu]
        [--configs=-1,1000,100,100:bf] [--reps 5] [--timeout 60]
        [--clients 16] [--claim-max 1000] [--claim-cap 600]

Everything is real and started here, and stopped at the end whatever
happens:

* PostgreSQL (Debian's, /usr/lib/postgresql/*/bin): ``initdb`` into a
  temporary directory and ``pg_ctl start`` listening only on a Unix socket
  in that directory, as the ``postgres`` user when run as root (initdb
  refuses root). One database per inventory model.
* openstack-placement (tests/bench/placement_server.py, the placement-api
  WSGI app, noauth2) in a process of its own, on a thread-per-connection
  HTTP server; restarted for every ``[placement] max_allocation_candidates``
  value measured, and killed when a request ran past the client timeout
  (Placement would go on computing the answer nobody waits for).

Hosts. Each host is an 8-GPU machine with two 4-GPU P2P cliques, clique c
on NUMA node c: the inventory gpuwardend reports for it (PROTOCOL.md §8,
shaped as test_shim_support.sample_inventory) goes through the shim's own
inventory check and Cyborg object builder (gpuwarden_cyborg.inventory,
.objects), and each DriverDeployable is registered with the requests
Cyborg's ConductorManager.provider_report makes (cyborg/conductor/
manager.py, cyborg/common/placement_client.py), in order, under the compute
node provider nova-compute makes (test_e2e_placement.Host). Hosts are
registered concurrently (``--register-clients``).

Flavors: Nova's query (nova_query.py) for the device profiles
docs/placement.md gives for each model; ``limit`` is Nova's default (1000).
"""

import argparse
import collections
import concurrent.futures
import contextlib
import copy
import glob
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(TOP, 'shim'), os.path.join(TOP, 'tests', 'python'),
                os.path.join(TOP, 'tests', 'bench')]

import requests  # noqa: E402

import placement_server  # noqa: E402
from nova_query import (FLAVOR, NOVA_AC_VERSION,  # noqa: E402
                        NOVA_CONSUMER_VERSION, NOVA_LIMIT, nova_query)

MODELS = ('per_clique', 'per_gpu')
GPUS = 8
CLIQUE = 4
PROJECT, USER = str(uuid.uuid4()), str(uuid.uuid4())


# --- PostgreSQL ---------------------------------------------------------------

def pg_bindir():
    """Debian's PostgreSQL server binaries, newest version first; None when
    not installed."""
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'),
                   key=lambda p: int(p.split('/')[4]), reverse=True)
    return os.path.dirname(found[0]) if found else None


class Postgres:
    """A private PostgreSQL server in a temporary directory, on a Unix
    socket there only (no TCP), trust authentication, superuser
    ``placement``. Production settings otherwise (fsync on)."""

    def __init__(self):
        self.bindir = pg_bindir()
        if not self.bindir:
            raise RuntimeError('PostgreSQL is not installed (Debian package '
                               'postgresql; scripts/bootstrap installs it)')
        self.dir = tempfile.mkdtemp(prefix='gw-fleet-pg-')
        self.user = None
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            import pwd
            for name in ('postgres', 'nobody'):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    continue
                self.user = name
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
                break
        self.data = os.path.join(self.dir, 'data')
        self.log = os.path.join(self.dir, 'postgres.log')
        self.started = False
        try:
            self._run('initdb', '-D', self.data, '-U', 'placement',
                      '--auth=trust', '-E', 'UTF8', '--no-sync')
            self._run('pg_ctl', '-D', self.data, '-l', self.log, '-w',
                      '-o', f"-k {self.dir} -c listen_addresses='' "
                      f"-c max_connections=200 " + os.environ.get("GW_FLEET_PG_OPTS", ""), 'start')
            self.started = True
        except BaseException:
            self.close()
            raise

    def _run(self, prog, *args):
        cmd = [os.path.join(self.bindir, prog), *args]
        if self.user:
            cmd = ['runuser', '-u', self.user, '--'] + cmd
        # Output to a file, not a pipe: the server pg_ctl starts inherits
        # it and would hold a pipe open for ever.
        with tempfile.TemporaryFile('w+') as o:
            r = subprocess.run(cmd, cwd=self.dir, stdin=subprocess.DEVNULL,
                               stdout=o, stderr=subprocess.STDOUT, text=True)
            o.seek(0)
            r.stdout = r.stderr = o.read()
        if r.returncode:
            log = ''
            if os.path.exists(self.log):
                with open(self.log) as f:
                    log = f.read()[-2000:]
            raise RuntimeError(f'{prog} failed ({r.returncode}): '
                               f'{r.stderr.strip()} {log}')
        return r.stdout

    def createdb(self, name):
        self._run('createdb', '-h', self.dir, '-U', 'placement', name)
        return f'postgresql+psycopg2://placement@/{name}?host={self.dir}'

    def version(self):
        return self._run('postgres', '--version').strip()

    def close(self):
        if self.started:
            self.started = False
            with contextlib.suppress(RuntimeError):
                self._run('pg_ctl', '-D', self.data, '-m', 'immediate', '-w',
                          'stop')
        shutil.rmtree(self.dir, ignore_errors=True)


# --- Placement in a process of its own ------------------------------------------

class Placement:
    """placement_server.py (threaded) on ``connection``, with
    ``[placement] max_allocation_candidates`` and
    ``allocation_candidates_generation_strategy`` from ``config`` (``N`` or
    ``N:bf``: breadth-first), ``allocation_conflict_retry_count`` =
    ``retries`` (None: default)."""

    def __init__(self, workdir, connection, config='-1', retries=None,
                 randomize=False):
        self.workdir, self.connection = workdir, connection
        self.randomize = randomize
        mx, _, strategy = str(config).partition(':')
        self.max_candidates = int(mx)
        self.strategy = {'': None, 'bf': 'breadth-first',
                         'df': 'depth-first'}[strategy]
        self.retries = retries
        self.restarts = 0
        self._start()

    def _start(self):
        # A pool for 2 connections per concurrent allocation write: a
        # write that meets a provider generation conflict re-reads the
        # providers on a second, independent connection while it holds
        # the first (placement.objects.allocation.replace_all). oslo.db's
        # default (5 + 10 overflow) runs dry at 16 schedulers and answers
        # 500 after a 30 s wait.
        args = ['--connection', self.connection,
                '--set', 'placement_database.max_pool_size=40',
                '--set', 'placement_database.max_overflow=40',
                '--set',
                f'placement.max_allocation_candidates={self.max_candidates}']
        if self.strategy:
            args += ['--set', 'placement.allocation_candidates_generation_'
                     f'strategy={self.strategy}']
        if self.randomize:
            args += ['--set', 'placement.randomize_allocation_candidates=true']
        if self.retries is not None:
            args += ['--set', f'placement.allocation_conflict_retry_count='
                     f'{self.retries}']
        self.child = placement_server.Child(self.workdir, server='threaded',
                                            args=args)
        self.url = self.child.url

    def restart(self):
        """After a request ran past the client's timeout: the server may
        still be computing it, burning the CPU the next requests need."""
        self.child.kill()
        self.restarts += 1
        self._start()

    def close(self):
        self.child.close()


class API:
    """One client's HTTP session (noauth2: token ``admin``)."""

    def __init__(self, url, timeout=60):
        self.url, self.timeout = url, timeout
        self.http = requests.Session()
        self.http.headers.update({'X-Auth-Token': 'admin',
                                  'Accept': 'application/json'})

    def call(self, method, path, version=None, body=None):
        headers = {}
        if version:
            headers['OpenStack-API-Version'] = f'placement {version}'
        return self.http.request(method, self.url + path, json=body,
                                 headers=headers, timeout=(10, self.timeout))

    def ok(self, method, path, version=None, body=None, status=(200,)):
        r = self.call(method, path, version, body)
        if r.status_code not in status:
            raise RuntimeError(f'{method} {path}: {r.status_code} {r.text}')
        return r.json() if r.content else None


# --- the fleet ------------------------------------------------------------------

def host_inventory(host, model):
    """gpuwardend's ``inventory`` result (PROTOCOL.md §8) for an 8-GPU host
    with two 4-GPU cliques, clique c on NUMA node c, all GPUs allocatable
    (reserved 0): product trait, clique trait, NUMA trait, as
    docs/placement.md's Traits section orders them."""
    import test_shim_support as S
    gpus = [f'0000:{b:02x}:00.0' for b in
            (0x1a, 0x1c, 0x1d, 0x1e, 0x9d, 0x9f, 0xa0, 0xa1)]

    def dep(name, members, clique):
        return {'name': name, 'rc': 'PGPU',
                'num_accelerators': len(members), 'reserved': 0,
                'traits': ['OWNER_CYBORG', 'CUSTOM_NVIDIA_1EB0',
                           f'CUSTOM_GPU_CLIQUE_{clique}',
                           f'CUSTOM_NUMA_NODE_{clique}'],
                'attach_handles': [{'type': 'PCI', 'info': S.pci_json(a)}
                                   for a in members],
                'gpus': list(members), 'driver_name': 'NVIDIA',
                'device': S.sample_device(members[0])}
    if model == 'per_gpu':
        deps = [dep(f'{host}_{a}', [a], i // CLIQUE)
                for i, a in enumerate(gpus)]
    else:
        deps = [dep(f'{host}_clique{c}', gpus[CLIQUE * c:CLIQUE * (c + 1)], c)
                for c in range(GPUS // CLIQUE)]
    return {'generation': 1, 'host': host, 'model': model,
            'deployables': deps}


def conductor_providers(host, model):
    """What Cyborg's conductor puts in Placement for the host: per
    DriverDeployable the shim builds, (name, resource class, traits, total)
    exactly as ConductorManager.get_placement_needed_info_and_report reads
    them from the object."""
    from gpuwarden_cyborg import inventory, objects
    out = []
    for dev in objects.build(inventory.parse(host_inventory(host, model))):
        for d in dev.deployable_list:
            attrs = d.attribute_list
            rc = [a.value for a in attrs if a.key == 'rc'][0]
            traits = [a.value for a in attrs if str(a.key).startswith('trait')]
            out.append((d.name, rc, traits, d.num_accelerators))
    return out


def provider_uuid(name):
    return str(uuid.uuid3(uuid.NAMESPACE_DNS, name))


def register_host(api, name, providers):
    """nova-compute's compute node provider, then Cyborg's conductor's
    provider_report for every deployable, request by request."""
    root = str(uuid.uuid4())
    api.ok('POST', '/resource_providers', '1.20',
           {'name': name, 'uuid': root})
    inv = {rc: {'total': n * 16, 'reserved': 0, 'min_unit': 1,
                'max_unit': n * 16, 'step_size': 1, 'allocation_ratio': 1.0}
           for rc, n in FLAVOR.items()}
    api.ok('PUT', f'/resource_providers/{root}/inventories', '1.26',
           {'resource_provider_generation': 0, 'inventories': inv})
    api.ok('PUT', f'/resource_providers/{root}/traits', '1.6',
           {'resource_provider_generation': 1,
            'traits': ['COMPUTE_ACCELERATORS']})
    # report_data: _get_root_provider.
    api.ok('GET', f'/resource_providers?name={name}')
    for dep, rc, traits, total in providers:
        rp = provider_uuid(dep)
        # ensure_resource_classes: PGPU is standard, no request.
        # _get_sub_provider -> ensure_resource_provider.
        if api.call('GET', f'/resource_providers/{rp}', '1.6').status_code \
                != 200:
            api.ok('POST', '/resource_providers', '1.20',
                   {'uuid': rp, 'name': dep, 'parent_provider_uuid': root})
        # update_inventory.
        gen = api.ok('GET', f'/resource_providers/{rp}')['generation']
        api.ok('PUT', f'/resource_providers/{rp}/inventories', None,
               {'resource_provider_generation': gen,
                'inventories': {rc: {'total': total, 'max_unit': total}}})
        # add_traits_to_rp: _ensure_traits, _get_rp_traits, _put_rp_traits.
        for t in traits:
            if api.call('GET', f'/traits/{t}', '1.6').status_code != 204:
                api.ok('PUT', f'/traits/{t}', '1.6', status=(201, 204))
        have = api.ok('GET', f'/resource_providers/{rp}/traits', '1.6')
        gen = api.ok('GET', f'/resource_providers/{rp}')['generation']
        api.ok('PUT', f'/resource_providers/{rp}/traits', '1.6',
               {'resource_provider_generation': gen,
                'traits': list(set(have['traits'] + traits))})
    return root


def host_names(model, hosts, first=0):
    return [f'fleet-{model.replace("_", "")}-{i:05d}'
            for i in range(first, first + hosts)]


def check_host(url, name, model):
    """The host's tree in Placement is what Cyborg's conductor would have
    left: every deployable a child of the compute node, PGPU total and
    max_unit the deployable's size, reserved 0, the deployable's traits."""
    api = API(url)
    root = api.ok('GET', f'/resource_providers?name={name}', '1.14')[
        'resource_providers'][0]['uuid']
    tree = {rp['uuid']: rp for rp in api.ok(
        'GET', f'/resource_providers?in_tree={root}', '1.14')[
        'resource_providers']}
    want = conductor_providers(name, model)
    if len(tree) != len(want) + 1:
        raise AssertionError(f'{name}: {len(tree)} providers, expected '
                             f'{len(want) + 1}')
    for dep, rc, traits, total in want:
        rp = tree[provider_uuid(dep)]
        inv = api.ok('GET', f'/resource_providers/{rp["uuid"]}/inventories')[
            'inventories']
        got = {k: (v['total'], v['max_unit'], v['reserved'])
               for k, v in inv.items()}
        have = api.ok('GET', f'/resource_providers/{rp["uuid"]}/traits',
                      '1.6')['traits']
        if (rp['name'], rp['parent_provider_uuid'], got, sorted(have)) != (
                dep, root, {rc: (total, total, 0)}, sorted(traits)):
            raise AssertionError(f'{dep}: {rp} {got} {have}')


def register(url, model, hosts, clients, first=0):
    """Hosts ``first`` .. ``first + hosts - 1`` of ``model``, ``clients``
    at a time. Returns (seconds, requests made)."""
    names = host_names(model, hosts, first)
    # Built here, not in the threads: importing Cyborg's objects from
    # several threads at once deadlocks.
    todo = [(n, conductor_providers(n, model)) for n in names]
    local = threading.local()

    def one(name, providers):
        if not hasattr(local, 'api'):
            local.api = API(url, timeout=120)
        register_host(local.api, name, providers)

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(one, *t) for t in todo]:
            f.result()
    return time.perf_counter() - t0


# --- flavors --------------------------------------------------------------------

def g(n=1, *traits):
    return dict({'resources:PGPU': str(n)},
                **{f'trait:{t}': 'required' for t in traits})


# (label, {model: (device profile groups, group_policy)}), as
# docs/placement.md writes each flavor for each model.
FLAVORS = [
    ('1 GPU', {'per_gpu': ([g()], None),
               'per_clique': ([g()], None)}),
    ('1 GPU on NUMA node 1', {'per_gpu': ([g(1, 'CUSTOM_NUMA_NODE_1')], None),
                              'per_clique': ([g(1, 'CUSTOM_NUMA_NODE_1')],
                                             None)}),
    ('2 P2P GPUs', {'per_gpu': ([g(1, 'CUSTOM_GPU_CLIQUE_0')] * 2, 'none'),
                    'per_clique': ([g(2)], None)}),
    ('4 P2P GPUs', {'per_gpu': ([g(1, 'CUSTOM_GPU_CLIQUE_0')] * 4, 'none'),
                    'per_clique': ([g(4)], None)}),
    ('8 GPUs', {'per_gpu': ([g()] * 8, 'none'),
                'per_clique': ([g(4)] * 2, 'none')}),
]


def describe(model, label):
    groups, policy = dict(FLAVORS)[label][model]
    if model == 'per_gpu' and len(groups) > 1:
        text = f'{len(groups)} x `{json.dumps(groups[0])}`'
    else:
        text = ' + '.join(f'`{json.dumps(x)}`' for x in groups)
    return text + (f', group_policy={policy}' if policy else '')


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(placement, model, label, reps, timeout, slow=10.0):
    """``reps`` GET /allocation_candidates for the flavor, one at a time.
    Returns {times, candidates, hosts, timeout}; a request past ``timeout``
    ends the series (the server is restarted), as does one slower than
    ``slow`` seconds after the second."""
    groups, policy = dict(FLAVORS)[label][model]
    path = '/allocation_candidates?' + nova_query(groups, policy)
    api = API(placement.url, timeout)
    out = {'times': [], 'candidates': None, 'hosts': None, 'timeout': False}
    for i in range(reps):
        t0 = time.perf_counter()
        try:
            r = api.call('GET', path, NOVA_AC_VERSION)
        except requests.exceptions.Timeout:
            out['timeout'] = True
            placement.restart()
            break
        dt = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f'GET {path}: {r.status_code} {r.text[:500]}')
        body = r.json()
        out['times'].append(dt)
        out['candidates'] = len(body['allocation_requests'])
        out['hosts'] = len({m[''][0] for m in
                            (a['mappings'] for a in
                             body['allocation_requests'])})
        if dt > slow and i >= 1:
            break
    return out


# --- claims ---------------------------------------------------------------------

class Claims:
    """``clients`` schedulers at once, each as Nova's: GET candidates for
    the flavor; take the first (identical hosts weigh the same and Nova
    keeps Placement's order); claim_resources(): GET /allocations/{new
    instance} at 1.28, PUT the allocation request with consumer_generation
    None at 1.35; a 409 ``placement.concurrent_update`` is retried as
    Nova's @retries does (4 tries, sleeping uniform(0, 2*try) s); any other
    409 (the capacity is gone) fails the claim and the scheduler tries the
    next candidate (an alternate), then asks Placement again. Until no
    candidate is left or ``cap`` seconds have passed."""

    def __init__(self, url, model, label, clients, cap, timeout):
        self.url, self.clients, self.cap = url, clients, cap
        self.timeout = timeout
        groups, policy = dict(FLAVORS)[label][model]
        self.path = '/allocation_candidates?' + nova_query(groups, policy)
        self.lock = threading.Lock()
        self.count = collections.Counter()
        self.get_t, self.put_t = [], []
        self.done = threading.Event()

    def add(self, **kw):
        with self.lock:
            self.count.update(kw)

    def put(self, api, consumer, alloc):
        """Nova's claim_resources with its @retries: True, False."""
        for attempt in range(4):
            time.sleep(random.uniform(0, attempt * 2))
            api.ok('GET', f'/allocations/{consumer}', NOVA_CONSUMER_VERSION)
            payload = copy.deepcopy(alloc)
            payload.update(project_id=PROJECT, user_id=USER,
                           consumer_generation=None)
            t0 = time.perf_counter()
            r = api.call('PUT', f'/allocations/{consumer}', NOVA_AC_VERSION,
                         payload)
            with self.lock:
                self.put_t.append(time.perf_counter() - t0)
            if r.status_code == 204:
                return True
            if r.status_code != 409:
                # Counted; Nova fails this claim and tries an alternate.
                self.add(errors=1)
                return False
            err = r.json()['errors'][0]
            if err.get('code') == 'placement.concurrent_update' and \
                    'consumer generation conflict' not in err['detail']:
                self.add(generation_conflicts=1)
                continue
            self.add(capacity_conflicts=1)
            return False
        self.add(out_of_retries=1)
        return False

    def client(self, deadline):
        api = API(self.url, self.timeout)
        while time.monotonic() < deadline and not self.done.is_set():
            try:
                self.schedule(api, deadline)
            except requests.exceptions.Timeout:
                # Counted, and this scheduler goes on with a new request
                # (the server is not restarted: the others still run).
                self.add(timeouts=1)

    def schedule(self, api, deadline):
        """One instance: candidates, then claims until one sticks."""
        t0 = time.perf_counter()
        body = api.ok('GET', self.path, NOVA_AC_VERSION)
        with self.lock:
            self.get_t.append(time.perf_counter() - t0)
        self.add(gets=1)
        cands = body['allocation_requests']
        if not cands:
            self.done.set()
            return
        for alloc in cands:
            if self.put(api, str(uuid.uuid4()), alloc):
                self.add(claims=1)
                return
            self.add(alternates=1)
            if time.monotonic() >= deadline:
                return
        self.add(regets=1)

    def run(self):
        deadline = time.monotonic() + self.cap
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(self.clients) as pool:
            for f in [pool.submit(self.client, deadline)
                      for _ in range(self.clients)]:
                f.result()
        self.wall = time.perf_counter() - t0
        self.full = self.done.is_set()
        return self


def usages(url):
    """PGPU in use by the benchmark's project, Placement's own count."""
    u = API(url).ok('GET', f'/usages?project_id={PROJECT}', '1.9')
    return u['usages'].get('PGPU', 0)


def over_capacity(url, clients=8):
    """(providers whose PGPU usage exceeds total - reserved, the GPUs
    allocated beyond capacity), read provider by provider."""
    rps = [rp['uuid'] for rp in API(url).ok(
        'GET', '/resource_providers', '1.14')['resource_providers']
        if rp['parent_provider_uuid']]
    local = threading.local()

    def one(rp):
        if not hasattr(local, 'api'):
            local.api = API(url)
        inv = local.api.ok('GET', f'/resource_providers/{rp}/inventories')[
            'inventories']['PGPU']
        used = local.api.ok('GET', f'/resource_providers/{rp}/usages')[
            'usages'].get('PGPU', 0)
        return max(0, used - (inv['total'] - inv['reserved']))

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        over = list(pool.map(one, rps))
    return sum(1 for x in over if x), sum(over)


def unclaim(url):
    """Delete every allocation the benchmark made (between claim runs)."""
    api = API(url)
    for rp in api.ok('GET', '/resource_providers', '1.14')[
            'resource_providers']:
        if rp['parent_provider_uuid']:
            continue
        allocs = api.ok('GET', f'/resource_providers/{rp["uuid"]}/'
                        'allocations')['allocations']
        for consumer in allocs:
            api.ok('DELETE', f'/allocations/{consumer}', status=(204, 404))


# --- the run --------------------------------------------------------------------

def ms(s):
    return f'{s * 1000:.0f} ms' if s < 10 else f'{s:.1f} s'


def fleet(args, pg, workdir, model, out):
    """One model: register, measure every config, then the claims."""
    conn = pg.createdb(f'fleet_{model}')
    res = {'model': model, 'configs': {}}
    p = Placement(os.path.join(workdir, model), conn, args.configs[0])
    try:
        res['register_s'] = register(p.url, model, args.hosts,
                                     args.register_clients)
        check_host(p.url, host_names(model, 1)[0], model)
        res['providers'] = len(API(p.url).ok(
            'GET', '/resource_providers', '1.14')['resource_providers'])
        out(f'{model}: registered {args.hosts} hosts, {res["providers"]} '
            f'providers in {res["register_s"]:.1f} s')
        for i, mx in enumerate(args.configs):
            if i:
                p.close()
                p = Placement(os.path.join(workdir, model), conn, mx)
            for label, _ in FLAVORS:
                m = measure(p, model, label, args.reps, args.timeout)
                res['configs'].setdefault(mx, {})[label] = m
                out(f'{model} max={mx} {label}: ' + (
                    'timeout' if m['timeout'] and not m['times'] else
                    f'{ms(statistics.median(m["times"]))} '
                    f'{m["candidates"]} candidates'))
        res['claims'] = {}
        for run in args.claim_retries if args.clients else ():
            retries, _, random_ = run.partition(':')
            retries = None if retries == 'default' else int(retries)
            p.close()
            p = Placement(os.path.join(workdir, model), conn, args.claim_max,
                          retries, randomize=random_ == 'random')
            unclaim(p.url)
            c = Claims(p.url, model, args.claim_flavor, args.clients,
                       args.claim_cap, args.timeout).run()
            c.used = usages(p.url)
            c.over = over_capacity(p.url)
            res['claims'][run] = c
            out(f'{model} retries={run}: {c.count["claims"]} claims in '
                f'{c.wall:.1f} s, {dict(c.count)}, over capacity {c.over}')
        res['restarts'] = p.restarts
    finally:
        p.close()
    return res


def config_name(config):
    mx, _, strategy = config.partition(':')
    return f'max_allocation_candidates={mx}' + (
        ', breadth-first' if strategy == 'bf' else '')


def table(args, results, machine):
    lines = []
    w = lines.append
    w(f'### {args.hosts} hosts x {GPUS} GPUs '
      f'({args.hosts * GPUS} GPUs)\n')
    w(f'Command: `scripts/bench placement-fleet {" ".join(args.argv)}`. '
      f'Machine: {machine}.\n')
    w('| model | providers | registration (conductor-shaped, '
      f'{args.register_clients} clients) |')
    w('|---|---|---|')
    for r in results:
        w(f'| {r["model"]} | {r["providers"]} | {r["register_s"]:.1f} s |')
    w('')
    w(f'GET /allocation_candidates, Nova\'s query with limit={NOVA_LIMIT}: '
      f'p50 / p95 of the requests made (n), candidates returned (hosts '
      f'they span). "no answer" = nothing within the {args.timeout:.0f} s '
      f'client timeout (the server is then killed and restarted).\n')
    head = '| flavor | model | device profile |' + ''.join(
        f' {config_name(mx)} |' for mx in args.configs)
    w(head)
    w('|---|---|---|' + '---|' * len(args.configs))
    for label, _ in FLAVORS:
        for r in results:
            row = f'| {label} | {r["model"]} | {describe(r["model"], label)} |'
            for mx in args.configs:
                m = r['configs'][mx][label]
                if not m['times']:
                    row += f' no answer within {args.timeout:.0f} s |'
                    continue
                t = m['times']
                row += (f' {ms(statistics.median(t))} / {ms(pct(t, 95))} '
                        f'({len(t)}), {m["candidates"]} ({m["hosts"]}) |')
            w(row)
    w('')
    if any(r['claims'] for r in results):
        w(f'Claims: {args.clients} concurrent Nova-style schedulers, flavor '
          f'"{args.claim_flavor}", max_allocation_candidates='
          f'{args.claim_max}, until no candidate is left (or '
          f'{args.claim_cap:.0f} s). "over capacity": providers whose PGPU '
          f'usage exceeds their total after the run (GPUs given twice).\n')
        w('| model | allocation_conflict_retry_count (:random = '
          'randomize_allocation_candidates) | claims accepted | '
          'PGPU used | over capacity: providers (GPUs) | wall | claims/s | '
          'capacity 409s (alternate tried) | generation 409s (Nova retry) | '
          'out of retries | re-asked Placement | client timeouts, 5xx | '
          'GET p50 / p95 | PUT p50 / p95 |')
        w('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
        for r in results:
            for run, c in r['claims'].items():
                n = c.count
                w(f'| {r["model"]} | {run.replace("default", "10 (default)")} | '
                  f'{n["claims"]} | {c.used} of {args.hosts * GPUS} GPUs'
                  f'{"" if c.full else " (time cap)"} | {c.over[0]} '
                  f'({c.over[1]}) | {c.wall:.1f} s | '
                  f'{n["claims"] / c.wall:.1f} | {n["capacity_conflicts"]} | '
                  f'{n["generation_conflicts"]} | {n["out_of_retries"]} | '
                  f'{n["regets"]} | {n["timeouts"]}, {n["errors"]} | '
                  f'{ms(statistics.median(c.get_t))} / '
                  f'{ms(pct(c.get_t, 95))} | '
                  f'{ms(statistics.median(c.put_t))} / '
                  f'{ms(pct(c.put_t, 95))} |')
        w('')
    return '\n'.join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--hosts', type=int, default=50)
    ap.add_argument('--models', default=','.join(MODELS))
    ap.add_argument('--configs', default='-1,1000,100,100:bf',
                    help='[placement] max_allocation_candidates values; '
                    'N:bf with allocation_candidates_generation_strategy '
                    'breadth-first')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--timeout', type=float, default=60.0)
    ap.add_argument('--register-clients', type=int, default=8)
    ap.add_argument('--clients', type=int, default=16,
                    help='concurrent claimers (0: no claim run)')
    ap.add_argument('--claim-flavor', default='1 GPU',
                    choices=[f for f, _ in FLAVORS])
    ap.add_argument('--claim-max', type=int, default=1000,
                    help='max_allocation_candidates during the claims')
    ap.add_argument('--claim-cap', type=float, default=600.0,
                    help='seconds the claim run may take at most')
    ap.add_argument('--claim-retries', default='default,1',
                    help='[placement] allocation_conflict_retry_count '
                    'values, one claim run each ("default": unset, 10; '
                    '"N:random": also randomize_allocation_candidates)')
    ap.add_argument('--json', help='also write the raw results here')
    a = ap.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    a.models = [m for m in a.models.split(',') if m]
    assert all(m in MODELS for m in a.models), a.models
    a.configs = [x for x in a.configs.split(',') if x]
    for x in a.configs:
        int(x.partition(':')[0])
    a.claim_retries = [x for x in a.claim_retries.split(',') if x]
    return a


def run(args, out=lambda s: print(s, file=sys.stderr, flush=True)):
    """The whole benchmark; returns (results, Markdown)."""
    machine = os.environ.get('GW_BENCH_MACHINE') or \
        f'{os.cpu_count()} vCPU VM'
    pg = Postgres()
    try:
        version = pg.version()
        with tempfile.TemporaryDirectory(prefix='gw-fleet-') as workdir:
            results = [fleet(args, pg, workdir, m, out) for m in args.models]
    finally:
        pg.close()
    from importlib import metadata
    md = table(args, results, f'{machine}, {version}, openstack-placement '
               f'{metadata.version("openstack-placement")}')
    return results, md


def main():
    # SIGTERM (timeout(1), a CI runner) tears down like Ctrl-C: the
    # finally clauses stop PostgreSQL and Placement.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args()
    results, md = run(args)
    print(md)
    if args.json:
        raw = [{k: v for k, v in r.items() if k != 'claims'} |
               {'claims': {str(k): dict(c.count, wall=c.wall, used=c.used,
                                        over=c.over)
                           for k, c in r['claims'].items()}}
               for r in results]
        with open(args.json, 'w') as f:
            json.dump(raw, f, indent=1, default=str)


if __name__ == '__main__':
    main()
