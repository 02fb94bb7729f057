"""The shim's list through Cyborg's real conductor (ConductorManager.report_data
with Cyborg's database on sqlite) into the real Placement service: what the
agent's cycle (discover() then report_data) leaves in Placement and in
Cyborg's database, over several cycles and a model switch."""

import uuid

import msgpack
import pytest

from cyborg import context as cy_context
from cyborg.conductor import manager as cond_manager
from cyborg.objects.driver_objects import driver_device

from gpuwarden_cyborg import cyborg_compat
from gpuwarden_cyborg import driver as gw_driver
from gpuwarden_cyborg import reservations

import cyborg_db
import test_shim_support as S


@pytest.fixture(scope='module')
def placement(tmp_path_factory):
    p = S.PlacementServer(str(tmp_path_factory.mktemp('placement')))
    yield p
    p.close()


@pytest.fixture
def agent(tmp_path, tmp_path_factory, placement):
    state = {'inv': None}

    def handle(req):
        op = msgpack.unpackb(req, raw=False)['op']
        if op == 'inventory':
            return S.reply(req, state['inv'])
        return S.reply(req, {'generation': state['inv']['generation'],
                             'promoted': []})
    daemon = S.FakeDaemon(str(tmp_path / 'read.sock'), handle)
    conf = S.configure_cyborg(str(tmp_path), placement_url=placement.url,
                              endpoint=daemon.endpoint, request_timeout=1,
                              retries=0)
    cyborg_db.use(conf, tmp_path_factory)
    host = f'h{uuid.uuid4().hex[:8]}'

    class Agent:
        ctx = cy_context.get_admin_context()
        cond = cond_manager.ConductorManager('cyborg-conductor', 'c')
        pc = cond.placement_client
        root = pc.ensure_resource_provider(ctx, str(uuid.uuid4()), name=host)
        drv = gw_driver.GPUWardenDriver()

        def cycle(self, **kw):
            """One agent cycle: discover(), then report_data()."""
            state['inv'] = S.sample_inventory(host=host, **kw)
            self.cond.report_data(self.ctx, host, self.drv.discover())

        def providers(self):
            rps = self.pc.get(f'/resource_providers?in_tree={self.root}',
                              version='1.14').json()['resource_providers']
            return sorted(r['name'] for r in rps if r['uuid'] != self.root)

        def inventory(self, name):
            return self.pc.get('/resource_providers/%s/inventories'
                               % reservations.provider_uuid(name),
                               version='1.26').json()['inventories']['PGPU']

        def traits(self, name):
            return sorted(self.pc.get('/resource_providers/%s/traits'
                                      % reservations.provider_uuid(name),
                                      version='1.6').json()['traits'])

        def cyborg_db(self):
            return sorted(
                (d.controlpath_id.cpid_info, x.name,
                 sorted(h.attach_info for h in x.attach_handle_list))
                for d in driver_device.DriverDevice.list(self.ctx, host)
                for x in d.deployable_list)
    a = Agent()
    a.host = host
    yield a
    daemon.close()


def test_cycles_and_model_switch(agent, monkeypatch):
    # No handle leaves a deployable that has several here (the defect the
    # driver refuses per_clique for on unpatched Cyborg; tested in
    # test_cyborg_patches.py).
    monkeypatch.setattr(cyborg_compat, 'attach_handle_lookup_fixed',
                        lambda: True)
    a, h = agent, agent.host
    per_gpu = sorted(f'{h}_{g}' for g in S.SM4029_GPUS)
    # New providers are made outside the compute node's tree by discover()
    # and shown by the next one, once the conductor has written them.
    a.cycle(generation=1)
    assert a.providers() == []
    assert a.traits(f'{h}_0000:3d:00.0') == [
        'CUSTOM_GPU_CLIQUE_1', 'CUSTOM_NUMA_NODE_0', 'CUSTOM_NVIDIA_1EB0',
        'OWNER_CYBORG']
    assert a.cyborg_db() == sorted((S.pci_json(g), f'{h}_{g}',
                                    [S.pci_json(g)]) for g in S.SM4029_GPUS)
    a.cycle(generation=1)                      # nothing changed
    assert a.providers() == per_gpu

    # A GPU goes dirty: reserved at once, its handle gone from Cyborg.
    a.cycle(generation=2, dirty=['0000:1c:00.0'])
    assert a.inventory(f'{h}_0000:1c:00.0') == {
        'total': 1, 'reserved': 1, 'min_unit': 1, 'max_unit': 1,
        'step_size': 1, 'allocation_ratio': 1.0}
    assert (S.pci_json('0000:1c:00.0'), f'{h}_0000:1c:00.0', []) in \
        a.cyborg_db()

    # Switch to the per-clique model (no allocations on the host): the
    # conductor deletes the per-GPU providers; the clique providers are
    # new, so out of the tree for a cycle, and shown with reserved on.
    a.cycle(generation=3, model='per_clique', dirty=['0000:1c:00.0'])
    assert a.providers() == []
    assert a.inventory(f'{h}_clique0')['reserved'] == 0
    a.cycle(generation=3, model='per_clique', dirty=['0000:1c:00.0'])
    assert a.providers() == [f'{h}_clique0', f'{h}_clique1']
    assert a.inventory(f'{h}_clique0') == {
        'total': 4, 'reserved': 1, 'min_unit': 1, 'max_unit': 4,
        'step_size': 1, 'allocation_ratio': 1.0}
    assert a.cyborg_db() == [
        (S.pci_json('0000:1a:00.0'), f'{h}_clique0',
         [S.pci_json(g) for g in ('0000:1a:00.0', '0000:1d:00.0',
                                  '0000:1e:00.0')]),
        (S.pci_json('0000:3d:00.0'), f'{h}_clique1',
         [S.pci_json(g) for g in S.SM4029_GPUS[4:]])]

    # And back.
    a.cycle(generation=4)
    assert a.providers() == []
    a.cycle(generation=4)
    assert a.providers() == per_gpu
    assert a.inventory(f'{h}_0000:1c:00.0')['reserved'] == 0
