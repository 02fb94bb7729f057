"""The shim against the real gpuwardend (simulated host backend) on the
8-GPU test host sm4029-8xrtx5000, through Cyborg's real conductor
(ConductorManager.report_data, Cyborg's database on sqlite) into the real
Placement service: the DriverDevice list field by field, what the agent's
cycles leave in Placement, the daemon promoting its GPUs once the shim says
their generation is published, and a daemon that is gone.

The host's facts (tests/fixtures/hosts/README.md): 8 x Quadro RTX 5000
(10de:1eb0, class 0300, lspci's "TU104GL [Quadro RTX 5000]"), NUMA node 0,
PEX 9797 switches over 1a 1c 1d 1e (clique 0) and 3d 3f 40 41 (clique 1).
Its dumps are 256 bytes each, so no ACS is visible and each root port's
subtree is one IOMMU group that also holds the GPUs' USB and UCSI functions:
with the default policy every GPU fails the clean-up and is quarantined.
"""

import signal
import uuid

import pytest

from cyborg import context as cy_context
from cyborg.conductor import manager as cond_manager
from cyborg.objects.driver_objects import driver_device

from gpuwarden_cyborg import cyborg_compat
from gpuwarden_cyborg import driver as gw_driver
from gpuwarden_cyborg import errors
from gpuwarden_cyborg import reservations

import cyborg_db
import test_shim_support as S
from gwdaemon import Daemon

GPUS = ['0000:1a:00.0', '0000:1c:00.0', '0000:1d:00.0', '0000:1e:00.0',
        '0000:3d:00.0', '0000:3f:00.0', '0000:40:00.0', '0000:41:00.0']
CLIQUE = {a: 0 if i < 4 else 1 for i, a in enumerate(GPUS)}
MODEL = 'TU104GL [Quadro RTX 5000]'
BOARD = '{"controller": "VGA compatible controller", "product_id": "1eb0"}'
# One clean-up worker: the four GPUs of a switch share one IOMMU group, and
# two workers cleaning two of them at once both unbind the group's USB
# function; the second write fails (ENODEV) and quarantines its GPU (seen
# in about 1 start in 4 with the default 4 workers; a daemon matter, not
# the shim's).
WARN = ['--isolation-policy', 'warn', '--manage-vendors', '10de',
        '--cleanup-workers', '1']


@pytest.fixture(scope='module')
def placement(tmp_path_factory):
    p = S.PlacementServer(str(tmp_path_factory.mktemp('placement')))
    yield p
    p.close()


class Agent:
    """cyborg-agent's cycle with the gpuwarden driver, and cyborg-conductor
    processing its report, for one host name."""

    def __init__(self, daemon, host):
        self.daemon = daemon
        self.host = host
        self.ctx = cy_context.get_admin_context()
        self.cond = cond_manager.ConductorManager('cyborg-conductor', 'c')
        self.pc = self.cond.placement_client
        self.root = self.pc.ensure_resource_provider(
            self.ctx, str(uuid.uuid4()), name=host)
        self.drv = gw_driver.GPUWardenDriver()

    def cycle(self):
        devs = self.drv.discover()
        self.cond.report_data(self.ctx, self.host, devs)
        return devs

    def reserved(self):
        out = {}
        for d in self.drv.fetch_inventory().deployables:
            r = self.pc.get('/resource_providers/%s/inventories'
                            % reservations.provider_uuid(d.name),
                            version='1.26')
            out[d.name] = (r.json()['inventories']['PGPU']['reserved']
                           if r.status_code == 200 else None)
        return out

    def shown(self):
        """The providers under the compute node (what Nova can get)."""
        rps = self.pc.get(f'/resource_providers?in_tree={self.root}',
                          version='1.14').json()['resource_providers']
        return sorted(r['name'] for r in rps if r['uuid'] != self.root)

    def cyborg_db(self):
        return sorted(
            (d.controlpath_id.cpid_info, x.name,
             sorted(h.attach_info for h in x.attach_handle_list))
            for d in driver_device.DriverDevice.list(self.ctx, self.host)
            for x in d.deployable_list)

    def states(self):
        return {d['address']: d['state'] for d in self.daemon.devices()}


@pytest.fixture
def agent(tmp_path, tmp_path_factory, placement):
    started = []

    def start(extra=()):
        host = f'h{uuid.uuid4().hex[:8]}'
        daemon = Daemon(tmp_path, host='sm4029-8xrtx5000',
                        extra=list(extra) + ['--host-name', host]).start()
        started.append(daemon)
        conf = S.configure_cyborg(str(tmp_path), placement_url=placement.url,
                                  endpoint=daemon.read, admin_endpoint=daemon.admin, request_timeout=5,
                                  retries=0, host=host)
        cyborg_db.use(conf, tmp_path_factory)
        return Agent(daemon, host)
    yield start
    for d in started:
        assert d.stop() in (0, None, -signal.SIGKILL), d.log.read_text()


def pci(a):
    return S.pci_json(a)


# --- the expected objects, written out ---------------------------------------

def fields(dev):
    """Every field of a DriverDevice tree that Cyborg reads, as plain data."""
    return {
        'vendor': dev.vendor, 'model': dev.model, 'type': dev.type,
        'std_board_info': dev.std_board_info,
        'vendor_board_info': dev.vendor_board_info, 'stub': dev.stub,
        'controlpath': (dev.controlpath_id.cpid_type,
                        dev.controlpath_id.cpid_info),
        'deployables': [{
            'name': dep.name, 'num_accelerators': dep.num_accelerators,
            'driver_name': dep.driver_name,
            'attributes': [(a.key, a.value) for a in dep.attribute_list],
            'attach_handles': [(h.attach_type, h.attach_info, h.in_use)
                               for h in dep.attach_handle_list],
        } for dep in dev.deployable_list],
    }


def traits(clique):
    return [('rc', 'PGPU'), ('trait0', 'OWNER_CYBORG'),
            ('trait1', 'CUSTOM_NVIDIA_1EB0'),
            ('trait2', f'CUSTOM_GPU_CLIQUE_{clique}'),
            ('trait3', 'CUSTOM_NUMA_NODE_0')]


def device(first, deployable):
    return {'vendor': '10de', 'model': MODEL, 'type': 'GPU',
            'std_board_info': BOARD,
            'vendor_board_info': '{"pci_address": "%s"}' % first,
            'stub': False, 'controlpath': ('PCI', pci(first)),
            'deployables': [deployable]}


def per_gpu(host, clean):
    """One DriverDevice per GPU, "<host>_<BDF>"; a handle only when clean."""
    return [device(a, {
        'name': f'{host}_{a}', 'num_accelerators': 1, 'driver_name': 'NVIDIA',
        'attributes': traits(CLIQUE[a]),
        'attach_handles': [('PCI', pci(a), False)] if clean else []})
        for a in GPUS]


def per_clique(host, clean):
    """One DriverDevice per clique, under its lowest GPU, 4 handles."""
    return [device(members[0], {
        'name': f'{host}_clique{c}', 'num_accelerators': 4,
        'driver_name': 'NVIDIA', 'attributes': traits(c),
        'attach_handles': [('PCI', pci(a), False) for a in members]
        if clean else []})
        for c, members in ((0, GPUS[:4]), (1, GPUS[4:]))]


def test_default_policy_quarantines_every_gpu_and_reports_them_reserved(
        agent):
    a = agent()
    assert set(a.states().values()) == {'quarantined'}
    devs = a.cycle()
    assert [fields(d) for d in devs] == per_gpu(a.host, clean=False)
    # The conductor created the providers after discover(): the next cycle
    # writes the daemon's reserved, and tells the daemon it is published,
    # which promotes nothing.
    assert set(a.reserved().values()) == {0}
    devs = a.cycle()
    assert [fields(d) for d in devs] == per_gpu(a.host, clean=False)
    assert a.reserved() == {f'{a.host}_{g}': 1 for g in GPUS}
    assert set(a.states().values()) == {'quarantined'}
    # Cyborg holds the devices and deployables, and no attach handle.
    assert a.cyborg_db() == sorted((pci(g), f'{a.host}_{g}', [])
                                   for g in GPUS)


# The driver refuses per_clique on a Cyborg without the attach-handle fix;
# test_cyborg_patches.py runs this case again under patched Cyborg.
PATCHED_ONLY = pytest.mark.skipif(
    not cyborg_compat.attach_handle_lookup_fixed(),
    reason='per_clique needs packaging/cyborg/0001 (run under patched Cyborg '
           'by test_cyborg_patches.py::test_under_patched_cyborg)')


@pytest.mark.parametrize('model', ['per_gpu', pytest.param(
    'per_clique', marks=PATCHED_ONLY)])
def test_clean_gpus_are_promoted_once_published(agent, model):
    a = agent(WARN + ['--inventory-model', model])
    expected = per_gpu if model == 'per_gpu' else per_clique
    names = ([f'{a.host}_{g}' for g in GPUS] if model == 'per_gpu'
             else [f'{a.host}_clique0', f'{a.host}_clique1'])
    # Cleaned but not yet allocatable: listed, reserved, no handle.
    assert set(a.states().values()) == {'sanitized'}
    assert [fields(d) for d in a.cycle()] == expected(a.host, clean=False)
    # discover() made the providers outside the compute node's tree, where
    # no Nova request can land: Placement offers none of these GPUs, so
    # the shim said "published" and the daemon promoted every GPU.
    assert a.shown() == []
    assert set(a.states().values()) == {'allocatable'}
    # The handles go to Cyborg with this cycle's list; the providers stay
    # out of the tree until the conductor has them.
    assert [fields(d) for d in a.cycle()] == expected(a.host, clean=True)
    assert a.shown() == []
    assert [fields(d) for d in a.cycle()] == expected(a.host, clean=True)
    assert a.shown() == sorted(names)
    assert a.reserved() == {n: 0 for n in names}
    handles = {d['deployables'][0]['name']:
               sorted(h[1] for h in d['deployables'][0]['attach_handles'])
               for d in expected(a.host, clean=True)}
    assert a.cyborg_db() == sorted(
        (d['controlpath'][1], d['deployables'][0]['name'],
         handles[d['deployables'][0]['name']])
        for d in expected(a.host, clean=True))
    # And the shim's list is what the daemon serves, nothing added.
    assert [fields(d) for d in a.drv.discover()] == \
        expected(a.host, clean=True)


def test_quarantine_on_the_admin_socket_takes_the_handle_away(agent):
    a = agent(WARN)
    a.cycle()
    a.cycle()
    a.cycle()
    assert set(a.states().values()) == {'allocatable'}
    a.daemon.result('quarantine', {'address': GPUS[1], 'reason': 'ecc'})
    want = per_gpu(a.host, clean=True)
    want[1]['deployables'][0]['attach_handles'] = []
    assert [fields(d) for d in a.cycle()] == want
    assert a.reserved()[f'{a.host}_{GPUS[1]}'] == 1


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])
def test_daemon_stopped_raises(agent, sig):
    a = agent(WARN)
    assert len(a.drv.discover()) == 8
    a.daemon.stop(sig)
    # Its socket file may stay behind: the client then waits the request
    # timeout for a connection (ZMQ_IMMEDIATE) before it says so.
    from cyborg.conf import CONF
    CONF.set_override('request_timeout', 0.5, group='gpuwarden')
    with pytest.raises(errors.DaemonUnreachable):
        a.drv.discover()
    # A fresh driver (a restarted cyborg-agent) raises too: never [].
    with pytest.raises(errors.DaemonUnreachable):
        gw_driver.GPUWardenDriver().discover()
