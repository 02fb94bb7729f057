"""Reservation sync against the real Placement service, through Cyborg's own
PlacementClient configured from cyborg.conf, with providers created by
Cyborg's own conductor code (ConductorManager.provider_report)."""

import uuid

import msgpack
import pytest

from cyborg import context as cy_context
from cyborg.conductor import manager as cond_manager

from gpuwarden_cyborg import driver as gw_driver
from gpuwarden_cyborg import reservations

import test_shim_support as S

DIRTY = '0000:1c:00.0'


@pytest.fixture(scope='module')
def placement(tmp_path_factory):
    p = S.PlacementServer(str(tmp_path_factory.mktemp('placement')))
    yield p
    p.close()


class World:
    def __init__(self, tmp_path, placement):
        self.inv = S.sample_inventory(host=f'h{uuid.uuid4().hex[:8]}')
        self.host = self.inv['host']
        self.daemon = S.FakeDaemon(str(tmp_path / 'read.sock'), self.handle)
        S.configure_cyborg(str(tmp_path), placement_url=placement.url,
                           endpoint=self.daemon.endpoint,
                           request_timeout=1, retries=0)
        self.ctx = cy_context.get_admin_context()
        self.cond = cond_manager.ConductorManager('cyborg-conductor', 'c')
        self.pc = self.cond.placement_client
        self.root = self.pc.ensure_resource_provider(
            self.ctx, str(uuid.uuid4()), name=self.host)

    def handle(self, req):
        op = msgpack.unpackb(req, raw=False)['op']
        return S.reply(req, self.inv if op == 'inventory' else {})

    def ops(self):
        return [(r['op'], r['args']) for r in self.daemon.decoded_requests()]

    def conductor_reports(self, names=None):
        """Create the providers as the conductor does for an added device."""
        for d in self.inv['deployables']:
            if names is None or d['name'] in names:
                self.cond.provider_report(self.ctx, d['name'], d['rc'],
                                          d['traits'], d['num_accelerators'],
                                          self.root)

    def placement_inv(self, name):
        r = self.pc.get('/resource_providers/%s/inventories'
                        % reservations.provider_uuid(name), version='1.26')
        body = r.json()
        return body['resource_provider_generation'], body['inventories']

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
    drv = gw_driver.GPUWardenDriver()
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


def test_unchanged_reserved_is_not_written(world):
    w = world
    w.conductor_reports()
    w.set_dirty([DIRTY])
    drv = gw_driver.GPUWardenDriver()
    drv.discover()
    before = {a: w.placement_inv(name(w, a))[0] for a in S.SM4029_GPUS}
    out = reservations.sync(drv.placement(), drv.fetch_inventory())
    assert out.updated == {} and out.complete
    drv.discover()
    # A PUT bumps the provider generation: none happened.
    assert {a: w.placement_inv(name(w, a))[0] for a in S.SM4029_GPUS} == \
        before


def test_conductor_reset_is_repaired_next_cycle(world):
    w = world
    w.conductor_reports()
    w.set_dirty([DIRTY])
    drv = gw_driver.GPUWardenDriver()
    drv.discover()
    # What the conductor does when num_accelerators or rc changes:
    rp = reservations.provider_uuid(name(w, DIRTY))
    w.pc.update_inventory(rp, cond_manager._gen_resource_inventory('PGPU', 1))
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU']['reserved'] == 0
    drv.discover()
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU']['reserved'] == 1


def test_clean_again_lowers_reserved_one_cycle_after_its_handle(world):
    w = world
    w.conductor_reports()
    w.set_dirty([DIRTY])
    drv = gw_driver.GPUWardenDriver()
    drv.discover()
    assert w.ops()[-1] == ('published', {'generation': 8})
    w.set_dirty([])                       # promoted: handle back, reserved 0
    devs = drv.discover()
    dev = [d for d in devs if d.controlpath_id.cpid_info == S.pci_json(DIRTY)]
    assert len(dev[0].deployable_list[0].attach_handle_list) == 1
    # This cycle's list brings the handle to Cyborg (after discover());
    # Placement keeps the GPU reserved until the next cycle, and
    # generation 9 is not yet published.
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU']['reserved'] == 1
    assert w.ops()[-1] == ('inventory', {})
    drv.discover()
    assert w.placement_inv(name(w, DIRTY))[1]['PGPU']['reserved'] == 0
    assert w.ops()[-1] == ('published', {'generation': 9})


def test_raising_is_immediate_even_on_the_first_cycle(world):
    w = world
    w.conductor_reports()
    w.set_dirty(S.SM4029_GPUS[:3])
    gw_driver.GPUWardenDriver().discover()
    assert [w.placement_inv(name(w, a))[1]['PGPU']['reserved']
            for a in S.SM4029_GPUS] == [1, 1, 1, 0, 0, 0, 0, 0]


def test_missing_provider_is_not_published(world):
    w = world
    # The conductor has not created this one yet (it does so after
    # discover() returns, when it processes the report).
    w.conductor_reports(names=[name(w, a) for a in S.SM4029_GPUS[1:]])
    w.set_dirty([DIRTY])
    drv = gw_driver.GPUWardenDriver()
    assert len(drv.discover()) == 8
    assert w.ops() == [('inventory', {})]
    out = reservations.sync(drv.placement(), drv.fetch_inventory())
    assert out.pending == {name(w, S.SM4029_GPUS[0]): 'no provider yet'}


def test_placement_failure_is_not_fatal(world, caplog):
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
