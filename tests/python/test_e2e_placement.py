"""End to end against a real Placement: Nova-style flavors pick the right
GPUs, and never an unclean one (issue 9).

The chain, all real, all on 127.0.0.1:

    gpuwardend (build dir, a test host tree, the simulated host backend)
      -> the shim's GPUWardenDriver.discover() as cyborg-agent calls it
         (reading the daemon's read endpoint, syncing `reserved` into
         Placement, sending `published`)
      -> Cyborg's own ConductorManager.report_data (Cyborg's DB on sqlite)
      -> openstack-placement's WSGI app (sqlite, noauth2)
      <- the GET /allocation_candidates Nova's scheduler sends for a flavor
         with accel:device_profile, and Nova's claim (PUT /allocations)
      <- Cyborg's bind (AttachHandle.allocate on the allocated provider's
         deployable), the libvirt hook's gate/attached/released hints, and
         the operator's `gpuwarden quarantine` / `release` (the CLI).

What is reproduced rather than run (Nova is not installed): the query
string and the claim, byte for byte as Nova builds them (see NOVA_* below),
and the compute node provider nova-compute's resource tracker creates.

Host choice (tests/fixtures/hosts/README.md):
- synth64: 16 switches x 4 RTX A6000 over NUMA nodes 0 and 1, ACS on every
  port: every GPU passes the default clean-up policy. The NUMA tests.
- sm4029-8xrtx5000: two PEX 9797 cliques of four, all on NUMA node 0, built
  from 256-byte dumps: no ACS is visible, so each switch's whole subtree is
  one IOMMU group that also holds the GPUs' USB (xhci_hcd) and UCSI
  (nvidia-gpu) functions on host drivers. With the default policy every
  clean-up fails and every GPU is quarantined (asserted below); the clique
  tests run it with `--isolation-policy warn --manage-vendors 10de`, which
  lets the GPUs pass, and say so.

Placement and Cyborg's database are shared by every test of the process
(their engines start once, see cyborg_db.py), so each host has its own
name, and a finished host's compute node is disabled the way Nova disables
one (trait COMPUTE_STATUS_DISABLED), which Nova's query excludes.
"""

import copy
import itertools
import json
import subprocess
import urllib.parse
import uuid
import warnings

import pytest
import requests

with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    from cyborg import context as cy_context
    from cyborg import objects as cyborg_objects
    cyborg_objects.register_all()
    from cyborg.api.controllers.v2.device_profiles import \
        DeviceProfilesController
    from cyborg.common import exception as cyborg_exception
    from cyborg.conductor import manager as cond_manager
    from cyborg.objects.driver_objects import driver_device

from gpuwarden_cyborg import cyborg_compat
from gpuwarden_cyborg import driver as gw_driver
from gpuwarden_cyborg import reservations

import cyborg_db
import test_shim_support as S
from nova_query import (FLAVOR, NOVA_AC_VERSION, NOVA_CONSUMER_VERSION,
                        nova_query)
from gwdaemon import HOSTS, Daemon, build_dir

# --- what Nova sends (nova_query.py) ---------------------------------------
PROJECT, USER = str(uuid.uuid4()), str(uuid.uuid4())

# sm4029 with GPUs that pass clean-up: isolation findings are warnings and
# the group's NVIDIA USB/UCSI functions may be rebound to vfio-pci.
WARN = ['--isolation-policy', 'warn', '--manage-vendors', '10de']


def profile(groups):
    """A device profile Cyborg's API accepts (its own POST validation)."""
    DeviceProfilesController()._validate_post_request(
        {'name': 'p', 'groups': groups})
    return groups


def one_gpu(*traits):
    return profile([dict({'resources:PGPU': '1'},
                         **{f'trait:{t}': 'required' for t in traits})])


def same_claim(a, b):
    """Two GET /allocations/{consumer} bodies hold the same claim: the
    same resources on the same providers, for the same project and user, at
    the same consumer generation (the providers' own generations, which
    the body also shows, move with every inventory change)."""
    def strip(x):
        return ({rp: v['resources'] for rp, v in x['allocations'].items()},
                x['consumer_generation'], x['project_id'], x['user_id'])
    return strip(a) == strip(b)


def bdf(attach_info):
    a = json.loads(attach_info)
    return f"{a['domain']}:{a['bus']}:{a['device']}.{a['function']}"


class PlacementAPI:
    """Placement over HTTP, as any client sees it (noauth2: token admin)."""

    def __init__(self, url):
        self.url = url
        self.http = requests.Session()
        self.http.headers.update({'X-Auth-Token': 'admin',
                                  'Accept': 'application/json'})

    def call(self, method, path, version, body=None):
        return self.http.request(
            method, self.url + path, json=body,
            headers={'OpenStack-API-Version': f'placement {version}'})

    def ok(self, method, path, version, body=None, status=200):
        r = self.call(method, path, version, body)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json() if r.content else None


class Host:
    """One compute host: gpuwardend on a test tree, its compute node
    provider as nova-compute makes it, and cyborg-agent's cycle."""

    def __init__(self, tmp_path, tmp_path_factory, placement, tree,
                 extra=()):
        self.name = f'e2e-{uuid.uuid4().hex[:8]}'
        self.facts = json.loads((HOSTS / f'{tree}.json').read_text())
        self.daemon = Daemon(tmp_path, host=tree,
                             extra=[*extra, '--host-name', self.name]).start()
        conf = S.configure_cyborg(str(tmp_path), placement_url=placement.url,
                                  endpoint=self.daemon.read,
                                  admin_endpoint=self.daemon.admin,
                                  request_timeout=10, retries=0)
        cyborg_db.use(conf, tmp_path_factory)
        self.api = PlacementAPI(placement.url)
        # nova-compute's resource tracker: the compute node provider, named
        # after the host, its inventory, and the libvirt driver's
        # capability trait COMPUTE_ACCELERATORS (Nova >= Ussuri).
        self.root = str(uuid.uuid4())
        self.api.ok('POST', '/resource_providers', '1.20',
                    {'name': self.name, 'uuid': self.root})
        inv = {rc: {'total': n * 16, 'reserved': 0, 'min_unit': 1,
                    'max_unit': n * 16, 'step_size': 1,
                    'allocation_ratio': 1.0} for rc, n in FLAVOR.items()}
        self.api.ok('PUT', f'/resource_providers/{self.root}/inventories',
                    '1.26', {'resource_provider_generation': 0,
                             'inventories': inv})
        self.api.ok('PUT', f'/resource_providers/{self.root}/traits', '1.6',
                    {'resource_provider_generation': 1,
                     'traits': ['COMPUTE_ACCELERATORS']})
        self.ctx = cy_context.get_admin_context()
        self.conductor = cond_manager.ConductorManager('cyborg-conductor',
                                                       'c')
        self.driver = gw_driver.GPUWardenDriver()
        self.cycles = 0

    def close(self):
        # Nova disables a compute service with this trait; its query
        # forbids it, so later tests of the process never see this host.
        traits = self.api.ok('GET', f'/resource_providers/{self.root}/traits',
                             '1.6')
        self.api.ok('PUT', f'/resource_providers/{self.root}/traits', '1.6',
                    {'resource_provider_generation':
                     traits['resource_provider_generation'],
                     'traits': traits['traits'] + ['COMPUTE_STATUS_DISABLED']})
        assert self.daemon.stop() == 0, self.daemon.log.read_text()

    # --- cyborg-agent -----------------------------------------------------

    def cycle(self, n=1):
        """n cyborg-agent cycles: the shim's discover() (which syncs
        reserved and sends published), then the conductor's report_data."""
        for _ in range(n):
            devices = self.driver.discover()
            self.conductor.report_data(self.ctx, self.name, devices)
            self.cycles += 1

    def inventory(self):
        return self.daemon.result('inventory', endpoint=self.daemon.read)

    def cli(self, *args):
        """The operator's `gpuwarden` CLI on the daemon's admin endpoint;
        its JSON output."""
        r = subprocess.run([str(build_dir() / 'gpuwarden'), *args, '-f',
                            'json', '--endpoint', self.daemon.admin],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return json.loads(r.stdout)

    def states(self):
        return {d['address']: d['state'] for d in self.daemon.devices()}

    # --- what Placement and Cyborg hold -----------------------------------

    def providers(self):
        """The names of this compute node's child providers."""
        rps = self.api.ok('GET', f'/resource_providers?in_tree={self.root}',
                          '1.14')['resource_providers']
        return sorted(rp['name'] for rp in rps if rp['uuid'] != self.root)

    def pgpu(self, name):
        """A deployable's provider: (its PGPU inventory, PGPU used)."""
        base = f'/resource_providers/{reservations.provider_uuid(name)}'
        inv = self.api.ok('GET', base + '/inventories', '1.26')
        use = self.api.ok('GET', base + '/usages', '1.9')
        return inv['inventories']['PGPU'], use['usages'].get('PGPU', 0)

    def reserved(self):
        """{provider name: PGPU reserved} under this compute node."""
        return {n: self.api.ok(
            'GET', f'/resource_providers/{reservations.provider_uuid(n)}'
            '/inventories', '1.26')['inventories']['PGPU']['reserved']
            for n in self.providers()}

    def cyborg_handles(self):
        """{deployable name: sorted GPU addresses of its attach handles}
        in Cyborg's database."""
        return {x.name: sorted(bdf(h.attach_info)
                               for h in x.attach_handle_list)
                for d in driver_device.DriverDevice.list(self.ctx, self.name)
                for x in d.deployable_list}

    def settled(self):
        """Placement's providers and reserved and Cyborg's attach handles
        are the daemon's inventory, and every GPU the daemon holds clean is
        allocatable."""
        inv = self.inventory()
        want = {d['name']: d['reserved'] for d in inv['deployables']}
        handles = {d['name']: sorted(bdf(h['info'])
                                     for h in d['attach_handles'])
                   for d in inv['deployables']}
        return (self.reserved() == want and self.cyborg_handles() == handles
                and 'sanitized' not in self.states().values())

    # --- Nova ---------------------------------------------------------------

    def candidates(self, groups, group_policy=None):
        """Nova's GET /allocation_candidates. Returns, per candidate, its
        allocation request and the deployable names that serve
        device_profile_0, _1, ... (Placement's ``mappings``, which Nova uses
        to map each ARQ to its provider); every candidate is on this host
        (the only enabled compute node) and takes the flavor's resources
        from its compute node."""
        body = self.api.ok('GET', '/allocation_candidates?' +
                           nova_query(groups, group_policy), NOVA_AC_VERSION)
        names = {reservations.provider_uuid(d['name']): d['name']
                 for d in self.inventory()['deployables']}
        out = []
        for req in body['allocation_requests']:
            allocs, maps = req['allocations'], req['mappings']
            assert allocs[self.root]['resources'] == FLAVOR, req
            assert maps[''] == [self.root], req
            order = tuple(names[rp] for i in range(len(groups))
                          for rp in maps[f'device_profile_{i}'])
            want = {}
            for i, name in enumerate(order):
                want[name] = want.get(name, 0) + sum(
                    int(v) for k, v in groups[i].items()
                    if k == 'resources:PGPU')
            assert {rp: a['resources'] for rp, a in allocs.items()
                    if rp != self.root} == {
                reservations.provider_uuid(n): {'PGPU': u}
                for n, u in want.items()}, req
            out.append((req, order))
        return out

    def offered(self, groups, group_policy=None):
        """The candidates as sorted tuples of deployable names, one per
        device-profile group."""
        return sorted(o for _, o in self.candidates(groups, group_policy))

    def claim(self, alloc_req, consumer=None):
        """Nova's claim_resources() for a new instance: read the consumer,
        then PUT the candidate's allocation request with project, user and
        consumer_generation None. Returns (consumer, HTTP response)."""
        consumer = consumer or str(uuid.uuid4())
        cur = self.api.ok('GET', f'/allocations/{consumer}',
                          NOVA_CONSUMER_VERSION)
        assert cur['allocations'] == {}, cur
        payload = copy.deepcopy(alloc_req)
        payload.update(project_id=PROJECT, user_id=USER,
                       consumer_generation=None)
        r = self.api.call('PUT', f'/allocations/{consumer}', NOVA_AC_VERSION,
                          payload)
        return consumer, r

    def bind(self, name, count):
        """Cyborg's bind for ``count`` ARQs on the provider Nova allocated
        from: the deployable by its provider, then its first free attach
        handle per ARQ (ExtARQ._allocate_attach_handle). Returns the GPU
        addresses Nova's libvirt driver would put in the domain."""
        dep = cyborg_objects.Deployable.get_by_device_rp_uuid(
            self.ctx, reservations.provider_uuid(name))
        return sorted(bdf(cyborg_objects.AttachHandle.allocate(
            self.ctx, dep.id).attach_info) for _ in range(count))

    # --- the host's facts (tests/fixtures/hosts/<tree>.json) ---------------

    def gpus(self, numa=None):
        return sorted(g['address'] for g in self.facts['gpus']
                      if numa is None or g['numa_node'] == numa)

    def clique(self, n):
        return self.facts['cliques'][n]

    def dep(self, gpu):
        return f'{self.name}_{gpu}'


@pytest.fixture(scope='module')
def placement(tmp_path_factory):
    p = S.PlacementServer(str(tmp_path_factory.mktemp('placement')))
    yield p
    p.close()


@pytest.fixture
def make_host(tmp_path, tmp_path_factory, placement):
    hosts = []

    def make(tree, extra=(), clean=True):
        d = tmp_path / f'h{len(hosts)}'
        d.mkdir()
        h = Host(d, tmp_path_factory, placement, tree, extra)
        hosts.append(h)
        if clean:   # every GPU passed its first clean-up
            devs = h.daemon.devices()
            assert {d['state'] for d in devs} == {'sanitized'}, [
                (d['address'], d['state'], d['reason']) for d in devs]
        return h
    yield make
    for h in hosts:
        h.close()


def settle(host, limit=8):
    """Run cycles until Placement and Cyborg show the daemon's inventory;
    returns how many it took."""
    for n in range(1, limit + 1):
        host.cycle()
        if host.settled():
            return n
    raise AssertionError(f'not settled after {limit} cycles: '
                         f'{host.states()} {host.reserved()}')


# --- the query itself ---------------------------------------------------------

def test_nova_query_string():
    q = urllib.parse.unquote(nova_query(one_gpu('CUSTOM_NUMA_NODE_1')))
    assert q == ('limit=1000&required' 'device_profile_0=CUSTOM_NUMA_NODE_1'
                 '&resources=DISK_GB:40,MEMORY_MB:16384,VCPU:8'
                 '&resourcesdevice_profile_0=PGPU:1'
                 '&root_required=COMPUTE_ACCELERATORS,!COMPUTE_STATUS_DISABLED')
    two = profile([{'resources:PGPU': '1',
                    'trait:CUSTOM_GPU_CLIQUE_0': 'required'}] * 2)
    q = urllib.parse.unquote(nova_query(two, 'none'))
    assert q == ('group_policy=none&limit=1000'
                 '&requireddevice_profile_0=CUSTOM_GPU_CLIQUE_0'
                 '&requireddevice_profile_1=CUSTOM_GPU_CLIQUE_0'
                 '&resources=DISK_GB:40,MEMORY_MB:16384,VCPU:8'
                 '&resourcesdevice_profile_0=PGPU:1'
                 '&resourcesdevice_profile_1=PGPU:1'
                 '&root_required=COMPUTE_ACCELERATORS,!COMPUTE_STATUS_DISABLED')


# --- bring-up: how many cycles until a fresh host's GPUs are offered -----------

def test_fresh_host_takes_three_cycles_and_offers_nothing_unclean(make_host):
    """sm4029 with --isolation-policy warn --manage-vendors 10de (its GPUs
    pass clean-up), per-GPU model: what each of the first agent cycles
    leaves in Placement and Cyborg, and when Nova first gets a GPU. No GPU
    is a candidate before the daemon calls it allocatable and Cyborg has
    its attach handle."""
    h = make_host('sm4029-8xrtx5000', WARN)
    every = one_gpu()
    deps = [h.dep(g) for g in h.gpus()]

    # Cycle 1: discover() makes each provider, before the conductor sees
    # the report, as a root outside the compute node's tree; the conductor
    # then writes {total, max_unit} (reserved 0) and the traits onto it.
    # Nothing is offered: Nova's query needs the flavor's VCPU and memory
    # in the same tree. Placement covers the daemon's generation (nothing
    # is offered at all), so `published` promotes every GPU.
    h.cycle()
    assert h.providers() == []
    assert h.offered(every) == []
    assert set(h.states().values()) == {'allocatable'}
    assert h.cyborg_handles() == {d: [] for d in deps}
    # Cycle 2: the new generation has the handles and reserved 0; the
    # providers stay out of the tree until Cyborg has had the handles (the
    # conductor creates them after this discover()).
    h.cycle()
    assert h.providers() == []
    assert h.offered(every) == []
    assert h.cyborg_handles() == {h.dep(g): [g] for g in h.gpus()}
    # Cycle 3: reserved (0) is in place, the providers are shown.
    h.cycle()
    assert h.providers() == deps
    assert h.settled()
    assert h.offered(every) == [(d,) for d in deps]


def test_default_policy_quarantines_every_sm4029_gpu(make_host):
    """Without ACS the GPUs share their IOMMU group with functions on host
    drivers (USB, UCSI): with the default policy every clean-up fails, every
    GPU is quarantined and reserved, and none is ever offered once the
    first cycle's new providers got their reserved."""
    h = make_host('sm4029-8xrtx5000', clean=False)
    assert set(h.states().values()) == {'quarantined'}
    assert settle(h) == 2
    assert set(h.reserved().values()) == {1}
    assert h.offered(one_gpu()) == []
    assert set(map(tuple, h.cyborg_handles().values())) == {()}
    h.cycle()
    assert h.offered(one_gpu()) == []
    assert set(h.states().values()) == {'quarantined'}


# --- "1 GPU on NUMA node 1" ----------------------------------------------------

def test_one_gpu_on_numa_node_1(make_host):
    """synth64 (GPUs on nodes 0 and 1, all passing the default policy),
    per-GPU model: the flavor's query offers exactly node 1's 32 GPUs, and
    the claim plus Cyborg's bind give one of them, which the libvirt hook's
    gate accepts."""
    h = make_host('synth64')
    assert settle(h) == 3
    node = {n: one_gpu(f'CUSTOM_NUMA_NODE_{n}') for n in (0, 1)}
    assert len(h.gpus(numa=1)) == len(h.gpus(numa=0)) == 32
    for n in (0, 1):
        assert h.offered(node[n]) == [(h.dep(g),) for g in h.gpus(numa=n)]

    req, (name,) = h.candidates(node[1])[0]
    vm, r = h.claim(req)
    assert r.status_code == 204, r.text
    got = h.bind(name, 1)
    assert got == [name[len(h.name) + 1:]] and got[0] in h.gpus(numa=1)
    assert h.daemon.result('gate', {'domain': vm,
                                    'addresses': got})['allowed'] is True
    assert h.offered(node[1]) == [(h.dep(g),) for g in h.gpus(numa=1)
                                  if g != got[0]]
    assert len(h.offered(node[0])) == 32


# --- "2 P2P GPUs" ----------------------------------------------------------------

def test_two_p2p_gpus_per_gpu_model(make_host):
    """Per-GPU model: two device-profile groups, each requiring the same
    CUSTOM_GPU_CLIQUE_<n>, group_policy none (from the flavor). Every
    candidate is two GPUs of clique n, each ordered pair once (Placement's
    mappings tell which group gets which)."""
    h = make_host('sm4029-8xrtx5000', WARN)
    assert settle(h) == 3
    two = {c: profile([{'resources:PGPU': '1',
                        f'trait:CUSTOM_GPU_CLIQUE_{c}': 'required'}] * 2)
           for c in (0, 1)}
    for c in (0, 1):
        assert h.offered(two[c], 'none') == sorted(
            itertools.permutations([h.dep(g) for g in h.clique(c)], 2))
    # Without the clique trait the same two groups take any two GPUs,
    # across the switches too: the trait is what keeps a pair P2P.
    assert len(h.offered(profile([{'resources:PGPU': '1'}] * 2),
                         'none')) == 8 * 7

    req, order = h.candidates(two[1], 'none')[0]
    vm, r = h.claim(req)
    assert r.status_code == 204, r.text
    got = sorted(g for name in order for g in h.bind(name, 1))
    assert len(got) == 2 and set(got) <= set(h.clique(1))
    assert h.daemon.result('gate', {'domain': vm,
                                    'addresses': got})['allowed'] is True
    rest = [h.dep(g) for g in h.clique(1) if g not in got]
    assert h.offered(two[1], 'none') == sorted(itertools.permutations(rest))
    assert len(h.offered(two[0], 'none')) == 4 * 3


@pytest.mark.skipif(
    not cyborg_compat.attach_handle_lookup_fixed(),
    reason='per_clique needs packaging/cyborg/0001 (run under patched Cyborg '
           'by test_cyborg_patches.py::test_under_patched_cyborg)')
def test_two_p2p_gpus_per_clique_model(make_host):
    """Per-clique model (--inventory-model per_clique): PGPU=2 in one group
    is served by one clique provider; Cyborg's bind takes two of its
    handles, both GPUs of that clique."""
    h = make_host('sm4029-8xrtx5000', WARN + ['--inventory-model',
                                              'per_clique'])
    assert settle(h) == 3
    clique = [f'{h.name}_clique{c}' for c in (0, 1)]
    assert h.providers() == clique
    two = profile([{'resources:PGPU': '2'}])
    assert h.offered(two) == [(clique[0],), (clique[1],)]
    assert h.offered(profile([{'resources:PGPU': '5'}])) == []

    held = []
    for _ in range(2):          # two 2-GPU VMs fill clique 0
        req = next(r for r, o in h.candidates(two) if o == (clique[0],))
        vm, r = h.claim(req)
        assert r.status_code == 204, r.text
        got = h.bind(clique[0], 2)
        assert set(got) <= set(h.clique(0))
        assert h.daemon.result('gate', {'domain': vm,
                                        'addresses': got})['allowed'] is True
        held += got
    assert sorted(held) == h.clique(0)
    assert h.pgpu(clique[0])[1] == 4
    assert h.offered(two) == [(clique[1],)]
    assert h.offered(profile([{'resources:PGPU': '4'}])) == [(clique[1],)]


@pytest.mark.skipif(
    not cyborg_compat.attach_handle_lookup_fixed(),
    reason='per_clique needs packaging/cyborg/0001 (run under patched Cyborg '
           'by test_cyborg_patches.py::test_under_patched_cyborg)')
def test_a_clique_that_shrinks_is_out_of_the_tree_while_the_conductor_resets_it(
        make_host, tmp_path):
    """Per-clique model: a clique loses a GPU (an operator's clique file
    regroups it) while another of its GPUs is quarantined. The conductor
    PUTs the new total, which resets reserved to 0; the provider is out of
    the compute node's tree from the discover() that reports the change
    until the one after the conductor's write, so Placement never offers
    the quarantined GPU's unit."""
    h = make_host('sm4029-8xrtx5000',
                  WARN + ['--inventory-model', 'per_clique',
                          '--cleanup-workers', '1'])
    assert settle(h) == 3
    c0 = f'{h.name}_clique0'
    one = profile([{'resources:PGPU': '1'}])
    three = profile([{'resources:PGPU': '3'}])
    x = h.clique(0)[1]
    h.cli('quarantine', x, '--reason', 'shrink test')
    h.cycle()
    assert h.pgpu(c0)[0]['reserved'] == 1
    assert (c0,) in h.offered(three) and (c0,) not in h.offered(
        profile([{'resources:PGPU': '4'}]))

    # The operator's clique file leaves the clique's last GPU out.
    override = tmp_path / 'cliques.conf'
    override.write_text('0 = ' + ' '.join(h.clique(0)[:3]) + '\n'
                        '1 = ' + ' '.join(h.clique(1)) + '\n')
    assert h.daemon.stop() == 0, h.daemon.log.read_text()
    h.daemon.extra += ['--clique-override', str(override)]
    h.daemon.start(wait_clean=False)
    dep = {d['name']: d for d in h.inventory()['deployables']}[c0]
    assert (dep['num_accelerators'], dep['reserved']) == (3, 1)

    devs = h.driver.discover()                  # reports total 3: hidden
    assert c0 not in h.providers()
    h.conductor.report_data(h.ctx, h.name, devs)
    inv, _ = h.pgpu(c0)
    assert (inv['total'], inv['reserved']) == (3, 0)    # the conductor's PUT
    assert c0 not in h.providers()
    assert all(c0 not in o for o in h.offered(one))
    h.cycle()                                   # reserved on, then shown
    inv, _ = h.pgpu(c0)
    assert (inv['total'], inv['reserved'], inv['max_unit']) == (3, 1, 3)
    assert c0 in h.providers()
    assert (c0,) in h.offered(profile([{'resources:PGPU': '2'}]))
    assert (c0,) not in h.offered(three)


# --- quarantine and release ----------------------------------------------------

def test_quarantine_then_release(make_host):
    h = make_host('sm4029-8xrtx5000', WARN)
    assert settle(h) == 3
    every = one_gpu()
    x = h.clique(0)[1]
    assert (h.dep(x),) in h.offered(every)

    got = h.cli('quarantine', x, '--reason', 'e2e')
    assert (got['address'], got['state']) == (x, 'quarantined')
    h.cycle()                   # raised at once; the conductor drops the handle
    assert h.pgpu(h.dep(x))[0]['reserved'] == 1
    assert h.cyborg_handles()[h.dep(x)] == []
    assert h.offered(every) == [(h.dep(g),) for g in h.gpus() if g != x]
    h.cycle()                   # and it stays so
    assert (h.dep(x),) not in h.offered(every)

    got = h.cli('release', x)
    assert (got['address'], got['state']) == (x, 'discovered')
    h.daemon.wait(lambda ds: {d['address']: d['state']
                              for d in ds}[x] == 'allocatable')
    # Placement already covered the content in which x was reserved, so
    # the daemon promoted it when its clean-up passed. 1: its handle is
    # reported and created, reserved kept; 2: reserved lowered.
    assert h.states()[x] == 'allocatable'
    offered = []
    for _ in range(2):
        h.cycle()
        offered.append((h.dep(x),) in h.offered(every))
    assert offered == [False, True]
    assert h.settled()
    assert len(h.offered(every)) == 8


# --- a GPU with an allocation goes dirty ---------------------------------------

def test_dirty_while_allocated(make_host):
    h = make_host('sm4029-8xrtx5000', WARN)
    assert settle(h) == 3
    every = one_gpu()
    req, (name,) = h.candidates(every)[0]
    vm, r = h.claim(req)
    assert r.status_code == 204, r.text
    x, = h.bind(name, 1)
    rp = reservations.provider_uuid(name)
    h.daemon.result('attached', {'domain': vm, 'addresses': [x]})
    before = h.api.ok('GET', f'/allocations/{vm}', NOVA_CONSUMER_VERSION)
    h.cycle()
    assert h.pgpu(name) == ({'total': 1, 'reserved': 0, 'min_unit': 1,
                             'max_unit': 1, 'step_size': 1,
                             'allocation_ratio': 1.0}, 1)

    # The VM stops (libvirt's release hook): the GPU is dirty, then cleaned
    # (sanitized, not yet allocatable), while Nova still holds the allocation.
    h.daemon.result('released', {'domain': vm, 'addresses': [x]})
    h.daemon.wait(lambda ds: {d['address']: d['state']
                              for d in ds}[x] == 'sanitized')
    h.cycle()
    inv, used = h.pgpu(name)
    # Placement accepted reserved 1 on top of used 1 with total 1: the
    # provider is over capacity ((total - reserved) * ratio = 0 < used 1).
    assert (inv['total'], inv['reserved'], used) == (1, 1, 1)
    after = h.api.ok('GET', f'/allocations/{vm}', NOVA_CONSUMER_VERSION)
    assert same_claim(after, before)        # the allocation is intact
    # (only the provider generation it shows moved: the inventory changed)
    assert after['allocations'][rp]['generation'] == \
        before['allocations'][rp]['generation'] + 1
    rp_allocs = h.api.ok('GET', f'/resource_providers/{rp}/allocations',
                         '1.9')['allocations']
    assert rp_allocs == {vm: {'resources': {'PGPU': 1}}}
    assert (name,) not in h.offered(every)
    assert len(h.offered(every)) == 7
    # The daemon lists no handle for a GPU that is neither allocatable nor
    # attached, so the conductor destroyed the one Cyborg bound for the VM
    # (the VM is gone; Nova deletes its ARQs with the instance).
    assert h.cyborg_handles()[name] == []
    # Nothing new can land on it ...
    _, r = h.claim(req)
    assert r.status_code == 409, r.text
    assert 'The requested amount would exceed the capacity.' in \
        r.json()['errors'][0]['detail']
    # ... but the instance itself may rewrite its claim (as Nova does on a
    # rebuild or heal_allocations): Placement lets a consumer keep what it
    # holds on an over-capacity provider as long as the overage does not
    # grow; the write bumps the consumer generation, nothing else changes.
    again = {'allocations': {p: {'resources': v['resources']}
                             for p, v in after['allocations'].items()},
             'consumer_generation': after['consumer_generation'],
             'project_id': PROJECT, 'user_id': USER}
    r = h.api.call('PUT', f'/allocations/{vm}', NOVA_AC_VERSION, again)
    assert r.status_code == 204, r.text
    now = h.api.ok('GET', f'/allocations/{vm}', NOVA_CONSUMER_VERSION)
    assert now['consumer_generation'] == after['consumer_generation'] + 1
    now['consumer_generation'] -= 1
    assert same_claim(now, before)
    assert h.pgpu(name) == (inv, 1)
    # Nova deletes the instance's allocation: allowed, and it frees it.
    r = h.api.call('DELETE', f'/allocations/{vm}', NOVA_AC_VERSION)
    assert r.status_code == 204, r.text
    assert h.pgpu(name)[1] == 0
    # It comes back only through the daemon (promoted by the `published`
    # of the cycle above; handle and lowered reserved follow).
    offered = []
    for _ in range(2):
        h.cycle()
        offered.append((name,) in h.offered(every))
    assert offered == [False, True]
    assert h.settled()


def test_quarantine_while_allocated(make_host):
    """The operator quarantines a GPU a VM is using: the daemon keeps it
    attached (reserved 0, its handle kept, so Cyborg does not destroy the
    VM's handle); the Nova allocation alone keeps it from being offered.
    When the VM stops, reserved goes to 1 under the still-present
    allocation, and the GPU is not offered again after Nova drops it."""
    h = make_host('sm4029-8xrtx5000', WARN)
    assert settle(h) == 3
    every = one_gpu()
    req, (name,) = h.candidates(every)[0]
    vm, r = h.claim(req)
    assert r.status_code == 204, r.text
    x, = h.bind(name, 1)
    h.daemon.result('attached', {'domain': vm, 'addresses': [x]})
    h.cycle()
    before = h.api.ok('GET', f'/allocations/{vm}', NOVA_CONSUMER_VERSION)

    got = h.cli('quarantine', x, '--reason', 'xid 79')
    assert (got['state'], got['domain']) == ('quarantined', vm)
    h.cycle()
    assert h.pgpu(name)[0]['reserved'] == 0 and h.pgpu(name)[1] == 1
    assert h.cyborg_handles()[name] == [x]
    assert (name,) not in h.offered(every)

    h.daemon.result('released', {'domain': vm, 'addresses': [x]})
    h.cycle()
    inv, used = h.pgpu(name)
    assert (inv['total'], inv['reserved'], used) == (1, 1, 1)
    assert same_claim(h.api.ok('GET', f'/allocations/{vm}',
                               NOVA_CONSUMER_VERSION), before)
    assert h.cyborg_handles()[name] == []
    r = h.api.call('DELETE', f'/allocations/{vm}', NOVA_AC_VERSION)
    assert r.status_code == 204, r.text
    h.cycle(2)
    assert h.pgpu(name) == ({'total': 1, 'reserved': 1, 'min_unit': 1,
                             'max_unit': 1, 'step_size': 1,
                             'allocation_ratio': 1.0}, 0)
    assert (name,) not in h.offered(every)
    assert len(h.offered(every)) == 7
    assert h.states()[x] == 'quarantined'
