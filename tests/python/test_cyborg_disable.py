"""Cyborg's own `device disable` and `enable` (issue 14 item 3), through
Cyborg's real API (cyborg_api.py: its WSGI app, its controllers, its
PlacementClient), the same Cyborg database and Placement as the agent's
cycle, the real gpuwardend, and the driver following Cyborg's statuses.

- disable: the device's GPUs become a gpuwarden quarantine whose actor is
  Cyborg (`quarantined_by: cyborg`), and the driver never lowers the
  provider while Cyborg says `maintaining`;
- enable: Cyborg itself writes reserved 0 at once (it knows nothing of the
  GPU's state). In that window Placement may offer the GPU; Cyborg's bind
  then finds no attach handle (the daemon lists none for a quarantined or
  dirty GPU) and the libvirt hook's gate refuses the domain, so the VM
  build fails rather than getting the GPU. The next agent cycle releases
  the hold through a clean-up, and the GPU comes back clean.

Run against the installed Cyborg 17.0.0 (its disable/enable act on the
deployable whose id equals the device's id, which is usually another
GPU's, or fail with HTTP 500 after setting the status) and, by
test_cyborg_patches.py, against Cyborg with packaging/cyborg/ applied.
"""

import json
import subprocess
import time

import pytest

from cyborg.common import exception as cyborg_exception

from gpuwarden_cyborg import cyborg_status
from gpuwarden_cyborg import driver as gw_driver
from gpuwarden_cyborg import reservations

import cyborg_api
import cyborg_db
import cyborg_patched
import test_e2e_placement as E
import test_shim_support as S
from gwdaemon import build_dir
from test_hook_daemon import hostdev

WARN = E.WARN + ['--cleanup-workers', '1']
PATCHED = cyborg_patched.running_patched()

make_host = E.make_host
placement = E.placement


class ApiHttp:
    """The driver's view of Cyborg's API (a keystoneauth Adapter's get),
    through the test server's admin headers."""

    def __init__(self, api):
        self.api = api

    def get(self, path, headers=None, raise_exc=False):
        return self.api.call('GET', path)


@pytest.fixture
def world(make_host, tmp_path, tmp_path_factory):
    h = make_host('sm4029-8xrtx5000', WARN)
    conf = S.configure_cyborg(str(tmp_path / 'h0'), placement_url=h.api.url,
                              endpoint=h.daemon.read,
                              admin_endpoint=h.daemon.admin,
                              events_endpoint=h.daemon.events,
                              follow_cyborg_disable=True,
                              cyborg_status_interval=1,
                              request_timeout=10, retries=0)
    cyborg_db.use(conf, tmp_path_factory)
    api = cyborg_api.CyborgAPI(tmp_path).start()
    h.driver.close()
    h.driver = gw_driver.GPUWardenDriver(
        cyborg_api=cyborg_status.CyborgAPI(conf, http=ApiHttp(api)))
    yield h, api
    h.driver.close()
    api.close()


def device_uuid(api, h, gpu):
    r = api.call('GET', f'/v2/devices?hostname={h.name}')
    assert r.status_code == 200, r.text
    for d in r.json()['devices']:
        if cyborg_status.address_of(d) == gpu:
            return d['uuid'], d['status']
    raise AssertionError(f'no Cyborg device for {gpu}: {r.text}')


def device(h, gpu):
    return h.daemon.result('device', {'address': gpu})


def gate(h, vm, gpu):
    p = subprocess.run(
        [str(build_dir() / 'gpuwarden'), 'hook', '--endpoint', h.daemon.admin,
         '--host-root', str(h.daemon.host), 'qemu', vm, 'prepare', 'begin',
         '-'],
        input=(f"<domain type='kvm'><name>{vm}</name><devices>"
               f"{hostdev(gpu)}</devices></domain>").encode(),
        capture_output=True, timeout=60)
    return p.returncode, p.stderr.decode()


def cycle_after_interval(h):
    time.sleep(1.1)         # [gpuwarden] cyborg_status_interval = 1
    h.cycle()


def test_disable_quarantines_and_enable_releases_through_a_cleanup(world):
    h, api = world
    every = E.one_gpu()
    for _ in range(3):
        h.cycle()
    assert len(h.offered(every)) == 8
    x = h.gpus()[2]
    dep = h.dep(x)
    uuid_, status = device_uuid(api, h, x)
    assert status == 'enabled'

    # `openstack accelerator device disable <uuid>`.
    r = api.call('POST', f'/v2/devices/{uuid_}/disable')
    if PATCHED:
        assert r.status_code == 204, r.text
    assert device_uuid(api, h, x)[1] == 'maintaining'
    cycle_after_interval(h)
    dev = device(h, x)
    assert (dev['state'], dev['quarantined_by']) == ('quarantined', 'cyborg')
    assert uuid_ in dev['reason'] and 'maintaining' in dev['reason']
    inv, _ = h.pgpu(dep)
    assert (inv['reserved'], inv['max_unit']) == (1, 1)
    assert (dep,) not in h.offered(every)
    # Whatever else Cyborg's disable wrote (before its fix: another GPU's
    # provider reserved, max_unit reset) the driver puts right.
    h.cycle(2)
    assert {n: r for n, r in h.reserved().items() if r} == {dep: 1}
    assert all(h.pgpu(h.dep(g))[0]['max_unit'] == 1 for g in h.gpus())
    # The operator's release (or gpuwarden's own maintenance off) cannot
    # end Cyborg's hold behind its back: the driver puts it back.
    h.cli('release', x)
    cycle_after_interval(h)
    assert device(h, x)['quarantined_by'] == 'cyborg'
    assert h.pgpu(dep)[0]['reserved'] == 1

    # `openstack accelerator device enable <uuid>`.
    r = api.call('POST', f'/v2/devices/{uuid_}/enable')
    if PATCHED:
        assert r.status_code == 204, r.text
    assert device_uuid(api, h, x)[1] == 'enabled'
    window = (dep,) in h.offered(every)
    # Patched Cyborg writes reserved 0 on this GPU's provider at once; the
    # unpatched one writes to the deployable whose id is the device's.
    assert window == (h.pgpu(dep)[0]['reserved'] == 0)
    if PATCHED:
        assert window
    if window:
        # Nova claims it; Cyborg's bind finds no handle; the gate refuses.
        req = [c for c, o in h.candidates(every) if o == (dep,)][0]
        vm, r = h.claim(req)
        assert r.status_code == 204, r.text
        with pytest.raises(cyborg_exception.ResourceNotFound):
            h.bind(dep, 1)
        rc, err = gate(h, vm, x)
        assert rc != 0 and 'quarantined' in err, (rc, err)
        # Nova's reschedule drops the claim.
        r = h.api.call('DELETE', f'/allocations/{vm}', E.NOVA_AC_VERSION)
        assert r.status_code == 204, r.text
    # The next cycle ends the hold: released by Cyborg, through a clean-up.
    cycle_after_interval(h)
    h.daemon.wait(lambda ds: {d['address']: d['state'] for d in ds}[x]
                  in ('sanitized', 'allocatable'))
    audit = h.daemon.result('audit', {'device': x})['records']
    assert [(a['event'], a['actor']) for a in audit[-4:-2]] == [
        ('release', 'cyborg'), ('cleanup_started', 'system')]
    assert (dep,) not in h.offered(every) or \
        device(h, x)['state'] == 'allocatable'
    for _ in range(3):
        h.cycle()
    assert (dep,) in h.offered(every)
    assert device(h, x)['quarantined_by'] is None
    assert json.dumps(h.reserved()).count(': 0') == 8
    assert reservations.provider_uuid(dep)
