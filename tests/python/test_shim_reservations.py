"""The shim's Placement mirror (shim/gpuwarden_cyborg/reservations.py) against
the real Placement service, through Cyborg's own PlacementClient configured
from cyborg.conf, with providers written by Cyborg's own conductor code
(ConductorManager.provider_report / update_inventory), and a daemon stand-in
on a real ipc socket."""

import uuid

import msgpack
import pytest

from cyborg import context as cy_context
from cyborg.conductor import manager as cond_manager

from gpuwarden_cyborg import cyborg_compat
from gpuwarden_cyborg import driver as gw_driver
from gpuwarden_cyborg import reservations

import test_shim_support as S

DIRTY = '0000:1c:00.0'


@pytest.fixture(scope='module')
def placement(tmp_path_factory):
    p = S.PlacementServer(str(tmp_path_factory.mktemp('placement')))
    yield p
    p.close()


class Counting:
    """Cyborg's PlacementClient, counting the requests the shim sends."""

    def __init__(self, pc):
        self.pc, self.calls = pc, []

    def __getattr__(self, name):
        fn = getattr(self.pc, name)
        if name in ('get', 'put', 'post', 'delete'):
            def counted(url, *a, **kw):
                self.calls.append((name.upper(), url))
                return fn(url, *a, **kw)
            return counted
        return fn


class World:
    def __init__(self, tmp_path, placement):
        self.inv = S.sample_inventory(host=f'h{uuid.uuid4().hex[:8]}')
        self.host = self.inv['host']
        self.published = 0      # the revision the driver confirmed
        self.daemon = S.FakeDaemon(str(tmp_path / 'read.sock'), self.handle)
        S.configure_cyborg(str(tmp_path), placement_url=placement.url,
                           endpoint=self.daemon.endpoint,
                           events_endpoint='', request_timeout=1, retries=0)
        self.ctx = cy_context.get_admin_context()
        self.cond = cond_manager.ConductorManager('cyborg-conductor', 'c')
        self.pc = self.cond.placement_client
        self.root = self.pc.ensure_resource_provider(
            self.ctx, str(uuid.uuid4()), name=self.host)

    def handle(self, req):
        msg = msgpack.unpackb(req, raw=False)
        if msg['op'] == 'inventory':
            # A revision per content, as the daemon numbers them.
            rev = self.inv['generation']
            return S.reply(req, dict(self.inv, revision=rev,
                                     published_revision=self.published))
        self.published = msg['args']['generation']
        return S.reply(req, {'generation': self.inv['generation'],
                             'promoted': []})

    def ops(self):
        return [(r['op'], r['args']) for r in self.daemon.decoded_requests()]

    def conductor_reports(self, names=None):
        """What the conductor does for an added device: the provider under
        the compute node, {total, max_unit}, the traits."""
        for d in self.inv['deployables']:
            if names is None or d['name'] in names:
                self.cond.provider_report(self.ctx, d['name'], d['rc'],
                                          d['traits'], d['num_accelerators'],
                                          self.root)

    def driver(self):
        drv = gw_driver.GPUWardenDriver(
            placement_client=Counting(self.cond.placement_client))
        return drv

    def placement_inv(self, name):
        r = self.pc.get('/resource_providers/%s/inventories'
                        % reservations.provider_uuid(name), version='1.26')
        body = r.json()
        return body['resource_provider_generation'], body['inventories']

    def parent(self, name):
        r = self.pc.get('/resource_providers/%s'
                        % reservations.provider_uuid(name), version='1.14')
        return r.json()['parent_provider_uuid'] if r.status_code == 200 \
            else 'missing'

    def set_dirty(self, addrs):
        gen = self.inv['generation'] + 1
        self.inv = S.sample_inventory(host=self.host, dirty=addrs,
                                      generation=gen)


@pytest.fixture
def world(tmp_path, placement):
    w = World(tmp_path, placement)
    yield w
    w.daemon.close()


def name(w, addr):
    return f'{w.host}_{addr}'


def test_reserved_is_set_and_published(world):
    w = world
    w.conductor_reports()
    w.set_dirty([DIRTY])
    drv = w.driver()
    devs = drv.discover()
    assert len(devs) == 8
    gen, inv = w.placement_inv(name(w, DIRTY))
    assert inv == {'PGPU': {'total': 1, 'reserved': 1, 'min_unit': 1,
                            'max_unit': 1, 'step_size': 1,
                            'allocation_ratio': 1.0}}
    for a in S.SM4029_GPUS:
        if a != DIRTY:
            assert w.placement_inv(name(w, a))[1]['PGPU']['reserved'] == 0
    assert w.ops() == [('inventory', {}),
                       ('published', {'generation': 8})]


def test_steady_state_is_one_daemon_and_one_placement_request(world):
    w = world
    w.conductor_reports()
    w.set_dirty([DIRTY])
    drv = w.driver()
    drv.discover()
    before = {a: w.placement_inv(name(w, a))[0] for a in S.SM4029_GPUS}
    n_ops, pc = len(w.ops()), drv.placement()
    pc.calls.clear()
    for _ in range(3):
        drv.discover()
    # The compute node's tree, nothing else; the daemon already knows
    # generation 8 is published.
    assert pc.calls == [('GET', f'/resource_providers?in_tree={w.root}')] * 3
    assert w.ops()[n_ops:] == [('inventory', {})] * 3
    assert {a: w.placement_inv(name(w, a))[0] for a in S.SM4029_GPUS} == \
        before


def test_a_provider_someone_else_changed_is_read_again(world):
    w = world
    w.conductor_reports()
    drv = w.driver()
    drv.discover()
    # Cyborg's own `device disable` (before its fix): reserved = total and
    # max_unit reset to Placement's default.
    rp = reservations.provider_uuid(name(w, DIRTY))
    w.pc.update_rp_inventory_reserved(rp, 'PGPU', 1, 1)
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU']['max_unit'] != 1
    drv.placement().calls.clear()
    drv.discover()
    calls = drv.placement().calls
    assert calls[0] == ('GET', f'/resource_providers?in_tree={w.root}')
    assert calls[1:] == [('GET', f'/resource_providers/{rp}/inventories'),
                         ('PUT', f'/resource_providers/{rp}/inventories/PGPU')]
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU'] == {
        'total': 1, 'reserved': 0, 'min_unit': 1, 'max_unit': 1,
        'step_size': 1, 'allocation_ratio': 1.0}


def test_a_new_provider_stays_out_of_the_tree_until_reserved_is_on(world):
    w = world
    first = name(w, S.SM4029_GPUS[0])
    w.conductor_reports(names=[name(w, a) for a in S.SM4029_GPUS[1:]])
    w.set_dirty([S.SM4029_GPUS[0]])
    drv = w.driver()
    drv.discover()
    # Made before the conductor sees the report: a root, no inventory.
    assert w.parent(first) is None
    assert w.placement_inv(first)[1] == {}
    # The conductor processes the report: {total, max_unit} (reserved 0)
    # and traits, under the compute node it names -- but the provider
    # exists, so it stays a root.
    w.conductor_reports(names=[first])
    assert w.parent(first) is None
    assert w.placement_inv(first)[1]['PGPU']['reserved'] == 0
    # The next discover() (cyborg-agent calls it after report_data
    # returned) puts reserved on, then shows it.
    drv.discover()
    assert w.placement_inv(first)[1]['PGPU']['reserved'] == 1
    assert w.parent(first) == w.root


def test_a_total_change_takes_the_provider_out_until_the_conductor_wrote_it(
        world, monkeypatch):
    w = world
    # Placement only here: no attach handle goes through Cyborg's
    # conductor, whose handle defect makes the driver refuse per_clique.
    monkeypatch.setattr(cyborg_compat, 'attach_handle_lookup_fixed',
                        lambda: True)
    w.inv = S.sample_inventory(host=w.host, model='per_clique',
                               dirty=[DIRTY])
    w.conductor_reports()
    drv = w.driver()
    drv.discover()
    clique0 = f'{w.host}_clique0'
    assert w.placement_inv(clique0)[1]['PGPU']['reserved'] == 1
    assert w.parent(clique0) == w.root
    # The clique loses a GPU (unplugged and forgotten): total 4 -> 3.
    dep = w.inv['deployables'][0]
    dep['gpus'].remove('0000:1e:00.0')
    dep['attach_handles'] = [h for h in dep['attach_handles']
                             if '"1e"' not in h['info']]
    dep['num_accelerators'] = 3
    w.inv['generation'] += 1
    drv.discover()
    assert w.parent(clique0) is None
    # The conductor's PUT for the new total resets reserved.
    w.cond.placement_client.update_inventory(
        reservations.provider_uuid(clique0),
        cond_manager._gen_resource_inventory('PGPU', 3))
    assert w.placement_inv(clique0)[1]['PGPU']['reserved'] == 0
    assert w.parent(clique0) is None
    drv.discover()
    assert w.placement_inv(clique0)[1]['PGPU'] == {
        'total': 3, 'reserved': 1, 'min_unit': 1, 'max_unit': 3,
        'step_size': 1, 'allocation_ratio': 1.0}
    assert w.parent(clique0) == w.root


def test_clean_again_lowers_reserved_one_cycle_after_its_handle(world):
    w = world
    w.conductor_reports()
    w.set_dirty([DIRTY])
    drv = w.driver()
    drv.discover()
    assert w.ops()[-1] == ('published', {'generation': 8})
    w.set_dirty([])                       # promoted: handle back, reserved 0
    devs = drv.discover()
    dev = [d for d in devs if d.controlpath_id.cpid_info == S.pci_json(DIRTY)]
    assert len(dev[0].deployable_list[0].attach_handle_list) == 1
    # This cycle's list brings the handle to Cyborg (after discover()):
    # Placement keeps the GPU reserved until the next cycle. Generation 9
    # is published: Placement offers nothing it does not allow.
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU']['reserved'] == 1
    assert w.ops()[-1] == ('published', {'generation': 9})
    drv.discover()
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU']['reserved'] == 0


def test_the_event_listener_raises_at_once_and_never_lowers(world):
    w = world
    w.conductor_reports()
    drv = w.driver()
    drv.discover()
    w.set_dirty([DIRTY])
    drv.on_daemon_change()
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU']['reserved'] == 1
    assert w.ops()[-1] == ('published', {'generation': 8})
    w.set_dirty([])
    drv.on_daemon_change()
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU']['reserved'] == 1


def test_raising_is_immediate_even_on_the_first_cycle(world):
    w = world
    w.conductor_reports()
    w.set_dirty(S.SM4029_GPUS[:3])
    w.driver().discover()
    assert [w.placement_inv(name(w, a))[1]['PGPU']['reserved']
            for a in S.SM4029_GPUS] == [1, 1, 1, 0, 0, 0, 0, 0]


def test_placement_failure_is_not_fatal_and_not_published(world, caplog):
    w = world
    w.conductor_reports()
    w.set_dirty([DIRTY])

    class Broken:
        def get(self, *a, **kw):
            raise RuntimeError('placement exploded')

    drv = gw_driver.GPUWardenDriver(placement_client=Broken())
    assert len(drv.discover()) == 8
    assert w.ops() == [('inventory', {})]
    assert 'placement exploded' in caplog.text
