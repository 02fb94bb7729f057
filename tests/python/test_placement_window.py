"""No window (issue 14): a GPU that gpuwardend does not call allocatable is
never among the allocation candidates Placement gives Nova.

All real, on 127.0.0.1: gpuwardend (simulated host backend) on the 8-GPU
sm4029 host; the shim's driver with its event listener, as cyborg-agent
runs it; Cyborg's ConductorManager.report_data on its sqlite database;
openstack-placement; the libvirt hook (`gpuwarden hook qemu ...`) and the
operator CLI. A checker thread polls Nova's GET /allocation_candidates for
one GPU all along, reading the daemon's states just before and just after
each poll. A GPU-poll counts as a violation when the poll offered a GPU
whose state was not `allocatable` both before and after it, outside the
call that changes it (an operator command or a hook, which return once
Placement shows the change).

Scenarios, in one run: bring-up from a fresh host, an operator quarantine
and release, a VM's whole life (Nova's claim, Cyborg's bind, the hook's
gate, started, release end, then Nova deleting the allocation), a
quarantine between discover() and report_data, cyborg-agent restarting,
gpuwardend restarting, a provider deleted in Placement behind Cyborg's
back, and one whose Cyborg device and provider were both deleted (the
conductor re-creates it).
"""

import json
import subprocess
import time

import pytest

from cyborg.objects.driver_objects import driver_device

from gpuwarden_cyborg import driver as gw_driver
from gpuwarden_cyborg import reservations

import test_e2e_placement as E
import cyborg_db
import offer_checker
import test_shim_support as S
from gwdaemon import build_dir
from test_hook_daemon import hostdev

WARN = E.WARN + ['--cleanup-workers', '1']


def Checker(host):
    """Nova's query for one GPU, polled all along (offer_checker.py)."""
    by_rp = {reservations.provider_uuid(host.dep(g)): g for g in host.gpus()}
    return offer_checker.OfferChecker(
        host.api.url, '/allocation_candidates?' + E.nova_query(E.one_gpu()),
        E.NOVA_AC_VERSION, host.daemon.read, lambda: by_rp)


def hook(h, name, op, subop, *addrs):
    p = subprocess.run(
        [str(build_dir() / 'gpuwarden'), 'hook', '--endpoint', h.daemon.admin,
         '--timeout-ms', '5000', '--host-root', str(h.daemon.host),
         'qemu', name, op, subop, '-'],
        input=''.join(['<domain type="kvm"><name>', name,
                       '</name><devices>',
                       *(hostdev(a) for a in addrs),
                       '</devices></domain>']).encode(),
        capture_output=True, timeout=60)
    return p.returncode, p.stderr.decode()


def wait_clean(h, gpu, timeout=30):
    """Until ``gpu`` passed its clean-up (sanitized, or already promoted by
    a `published` the event listener sent)."""
    h.daemon.wait(lambda ds: {d['address']: d['state'] for d in ds}[gpu]
                  in ('sanitized', 'allocatable'), timeout=timeout)


def until_offered(h, gpus, limit=6):
    """Agent cycles until every GPU in ``gpus`` is offered; returns the
    number of cycles."""
    want = {(h.dep(g),) for g in gpus}
    for n in range(1, limit + 1):
        h.cycle()
        if want <= set(h.offered(E.one_gpu())):
            return n
    raise AssertionError(f'{gpus} not offered after {limit} cycles: '
                         f'{h.states()}')


@pytest.fixture
def host(make_host, tmp_path, tmp_path_factory):
    h = make_host('sm4029-8xrtx5000', WARN)
    conf = S.configure_cyborg(str(tmp_path / 'h0'), placement_url=h.api.url,
                       endpoint=h.daemon.read,
                       admin_endpoint=h.daemon.admin,
                       events_endpoint=h.daemon.events,
                       request_timeout=10, retries=0)
    cyborg_db.use(conf, tmp_path_factory)
    h.driver.close()
    h.driver = gw_driver.GPUWardenDriver()
    yield h
    h.driver.close()


make_host = E.make_host
placement = E.placement


def test_no_unclean_gpu_is_ever_a_candidate(host, capsys):
    h = host
    chk = Checker(h).start()
    try:
        _scenarios(h, chk)
    finally:
        chk.stop()
    with capsys.disabled():
        print(f'\n[no window] {chk.polls} polls of allocation_candidates, '
              f'{chk.gpu_polls} GPU-polls; offered a GPU that was not '
              f'allocatable: {len(chk.violations)}')
    assert chk.polls > 20, chk.polls
    assert chk.violations == [], chk.violations


def _scenarios(h, chk):
    gpus = h.gpus()
    every = E.one_gpu()

    # Bring-up: every GPU sanitized by its first clean-up, nothing in
    # Placement yet.
    assert until_offered(h, gpus) == 3

    # An operator quarantines an allocatable GPU, and releases it.
    x = gpus[1]
    with chk.changing(x):
        h.cli('quarantine', x, '--reason', 'window test')
    time.sleep(0.5)
    assert (h.dep(x),) not in h.offered(every)
    h.cycle(2)
    with chk.changing(x):
        h.cli('release', x)
    wait_clean(h, x)
    assert (h.dep(x),) not in h.offered(every)
    until_offered(h, [x])

    # A VM's life, as Nova, Cyborg and libvirt run it.
    req, (name,) = h.candidates(every)[0]
    vm, r = h.claim(req)
    assert r.status_code == 204, r.text
    y, = h.bind(name, 1)
    assert hook(h, vm, 'prepare', 'begin', y) == (0, '')
    with chk.changing(y):
        assert hook(h, vm, 'started', 'begin', y) == (0, '')
    h.cycle()
    with chk.changing(y):
        rc, err = hook(h, vm, 'release', 'end', y)
    assert rc == 0, err
    # Nova frees the allocation only after destroy returned.
    r = h.api.call('DELETE', f'/allocations/{vm}', E.NOVA_AC_VERSION)
    assert r.status_code == 204, r.text
    assert (name,) not in h.offered(every)
    wait_clean(h, y)
    until_offered(h, [y])

    # A quarantine lands between discover() and report_data.
    z = gpus[2]
    devs = h.driver.discover()
    with chk.changing(z):
        h.cli('quarantine', z, '--reason', 'between')
    h.conductor.report_data(h.ctx, h.name, devs)
    h.cycle(2)
    assert (h.dep(z),) not in h.offered(every)

    # cyborg-agent restarts: a new driver with nothing in memory.
    h.driver.close()
    h.driver = gw_driver.GPUWardenDriver()
    h.cycle(2)
    assert (h.dep(z),) not in h.offered(every)

    # gpuwardend restarts (SIGTERM, same state directory).
    assert h.daemon.stop() == 0, h.daemon.log.read_text()
    h.daemon.start(wait_clean=False)
    h.cycle(2)
    assert (h.dep(z),) not in h.offered(every)
    with chk.changing(z):
        h.cli('release', z)
    wait_clean(h, z)
    until_offered(h, [z])

    # A provider deleted in Placement behind Cyborg's back, its GPU dirty:
    # the shim makes it again, out of the tree, and writes what the
    # conductor (which still has the deployable) never will.
    w = gpus[3]
    with chk.changing(w):
        h.cli('quarantine', w, '--reason', 'deleted provider')
    rp = reservations.provider_uuid(h.dep(w))
    r = h.api.call('DELETE', f'/resource_providers/{rp}', '1.14')
    assert r.status_code == 204, r.text
    h.cycle(3)
    assert h.pgpu(h.dep(w))[0]['reserved'] == 1
    assert h.dep(w) in h.providers()

    # A device deleted from Cyborg's database and its provider from
    # Placement: the conductor re-creates both.
    v = gpus[4]
    with chk.changing(v):
        h.cli('quarantine', v, '--reason', 're-created')
    for d in driver_device.DriverDevice.list(h.ctx, h.name):
        if d.controlpath_id.cpid_info == S.pci_json(v):
            d.destroy(h.ctx, h.name)
    rp = reservations.provider_uuid(h.dep(v))
    r = h.api.call('DELETE', f'/resource_providers/{rp}', '1.14')
    assert r.status_code == 204, r.text
    h.cycle(3)
    assert h.pgpu(h.dep(v))[0]['reserved'] == 1
    assert h.dep(v) in h.providers()
    for g in (w, v):
        with chk.changing(g):
            h.cli('release', g)
        wait_clean(h, g)
    until_offered(h, [w, v])
    time.sleep(0.3)
    assert h.settled()
    assert json.dumps(h.states()).count('allocatable') == 8
