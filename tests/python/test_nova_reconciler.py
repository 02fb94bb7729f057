"""Nova's own PCI passthrough with one-time-use GPUs, gpuwarden cleaning
them between tenants (issue 17).

All real, on 127.0.0.1: gpuwardend (simulated host backend) on a bundled
test host; Nova 34's own code in a child process (test_nova_support.py):
the resource tracker's _update_to_placement with the PCI tracker and
pci_placement_translator (which make the providers and set reserved =
total on allocation), the scheduler's request for a
pci_passthrough:alias flavor (RequestSpec PCI groups, request filter,
resources_from_request_spec, get_allocation_candidates), the claim, the
compute-side PCI claim, the libvirt driver's <hostdev>, the deletion;
openstack-placement; gpuwarden-nova-reconciler (built from its config
file, following the daemon's events); the libvirt hook and the operator
CLI. The device_spec and aliases are what `gpuwarden nova-config` prints
for the host.

A checker thread polls Nova's GET /allocation_candidates for one GPU
through the whole life of the host and counts every offer of a GPU the
daemon did not call allocatable (test_nova_support.Checker).
"""

import time

import pytest

import test_nova_support as N
import test_shim_support as S

WARN = ['--isolation-policy', 'warn', '--manage-vendors', '10de',
        '--cleanup-workers', '1']
# An operator clean-up hook that fails for the GPUs listed in ../fail.
FAIL_HOOK = ('#!/bin/sh\n'
             'f="$(dirname "$0")/../fail"\n'
             'if [ -e "$f" ] && grep -qx "$1" "$f"; then\n'
             '    echo "refused by the test"; exit 1\n'
             'fi\n'
             'exit 0\n')


@pytest.fixture(scope='module')
def placement(tmp_path_factory):
    p = S.PlacementServer(str(tmp_path_factory.mktemp('placement')))
    yield p
    p.close()


@pytest.fixture(scope='module')
def nova(tmp_path_factory):
    n = N.NovaProcess(tmp_path_factory.mktemp('nova') / 'nova.log')
    yield n
    n.close()


@pytest.fixture
def make_host(tmp_path, placement, nova):
    hosts = []

    def make(tree, extra=(), **kw):
        d = tmp_path / f'h{len(hosts)}'
        d.mkdir()
        h = N.NovaHost(d, placement, nova, tree, extra, **kw)
        hosts.append(h)
        return h
    yield make
    for h in hosts:
        h.close()


def wait(pred, timeout=15, what='condition', host=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    more = ''
    if host is not None:
        more = (f': daemon {host.states()}, Placement (reserved, generation, '
                f'used) {host.snapshot()}; service error '
                f'{host.service and host.service.last_error}, passes '
                f'{host.reconciler.passes}, writes {host.reconciler.writes}')
    raise AssertionError(f'{what} not reached in {timeout} s{more}')


def test_one_time_use_gpus_through_nova_and_gpuwarden(make_host, capsys):
    h = make_host('sm4029-8xrtx5000', WARN, hooks={'50-fail': FAIL_HOOK})
    every = h.gpus
    assert len(every) == 8
    assert set(h.states().values()) == {'sanitized'}

    # --- bring-up: the reconciler is the host's Placement writer ----------
    rec = h.start_reconciler()
    # Nova has reported nothing: no provider offers anything, so Placement
    # covers the inventory, `published` promotes every clean GPU.
    h.daemon.wait(lambda ds: all(d['state'] == 'allocatable' for d in ds))
    m = h.daemon.result('metrics')
    assert m['published'] != 0 and m['published_revision'] >= 1
    h.start_nova()
    assert sorted(h.rp) == every
    for g in every:
        assert 'HW_PCI_ONE_TIME_USE' in h.traits(g)
        assert h.reserved(g) == 0
    writes = len(rec.writes)
    rec.sync()
    assert len(rec.writes) == writes == 0, rec.writes
    assert h.offered() == every

    chk = N.Checker(h).start()
    recs = [rec]
    try:
        _life(h, recs, chk, capsys)
    finally:
        chk.stop()
    with capsys.disabled():
        print(f'\n[nova no window] {chk.polls} polls of Nova\'s '
              f'allocation_candidates, {chk.gpu_polls} GPU-polls; offered a '
              f'GPU that was not allocatable: {len(chk.violations)}; '
              f'reconciler (2 runs): {sum(r.passes for r in recs)} passes, '
              f'{sum(len(r.writes) for r in recs)} writes, '
              f'{sum(r.conflicts for r in recs)} conflicts retried')
    assert chk.polls > 20, chk.polls
    assert chk.violations == [], chk.violations


def _vm_life(h, chk, gpus_alias):
    """Nova schedules, claims and builds an instance, libvirt starts it
    (the hook), and it is deleted (destroy -> hook release end -> Nova's
    _complete_deletion). Returns (vm, gpus, timeline facts)."""
    vm, cands, _ = h.candidates(gpus_alias)
    req, gpus = cands[0]
    assert h.nova.call('claim', instance=vm, allocation_request=req)
    claimed = h.nova.call('compute_claim', instance=vm,
                          mappings=req['mappings'])
    assert claimed == gpus
    # pci_placement_translator._handle_one_time_use: reserved = total on
    # allocation. (Also on a GPU's second use, when gpuwarden lowered it
    # behind Nova's cache: the scheduler's claim moved the provider's
    # generation, Nova's inventory write conflicts, it reads the provider
    # again and writes reserved = total.)
    facts = {'nova_reserved': [h.reserved(g) for g in gpus]}
    assert facts['nova_reserved'] == [1] * len(gpus)
    # The daemon has not seen the domain yet: the GPU is allocatable, and
    # the provider holds the allocation. The reconciler leaves Nova's
    # reservation alone.
    r = h.reconciler.sync()[-1]
    assert set(gpus) <= set(r.held), r
    assert r.lowered == []
    xml = h.domain_xml(vm, gpus)
    assert h.hook(vm, 'prepare', 'begin', xml) == (0, '')
    with chk.changing(*gpus):
        assert h.hook(vm, 'started', 'begin', xml) == (0, '')
    # attached: reserved whatever Nova did (see the second use below)
    wait(lambda: all(h.reserved(g) == 1 for g in gpus), what='attached '
         'GPUs reserved')
    with chk.changing(*gpus):
        rc, err = h.hook(vm, 'release', 'end', xml)
    assert rc == 0 and 'warning' not in err, err
    # release end returned: Placement already reserves the GPUs.
    assert all(h.reserved(g) == 1 for g in gpus)
    h.nova.call('delete', instance=vm)
    return vm, gpus, facts


def _life(h, recs, chk, capsys):
    rec = recs[0]
    every = h.gpus
    clique0 = every[:4]

    # --- a VM with 2 P2P GPUs of clique 0; released; cleaned; offered -----
    vm, gpus, facts = _vm_life(h, chk, 'gpu-clique0:2')
    assert set(gpus) <= set(clique0)
    # The allocation is gone and the clean-up passed: reserved comes off
    # (the event of the promotion, or the held recheck if the clean-up
    # passed before Nova freed the allocation).
    wait(lambda: all(h.reserved(g) == 0 for g in gpus), what='lowered',
         host=h)
    assert set(h.states()[g] for g in gpus) == {'allocatable'}
    assert h.offered() == every

    # --- the same GPUs again: Nova's cache still says reserved = 1 ----------
    vm2, gpus2, facts2 = _vm_life(h, chk, 'gpu-clique0:4')
    assert set(gpus) < set(gpus2)
    wait(lambda: all(h.reserved(g) == 0 for g in gpus2), what='lowered 2')

    # --- a failing clean-up keeps the GPU reserved ---------------------------
    (h.tmp / 'fail').write_text('\n'.join(every[4:]) + '\n')
    vm3, (x,), _ = _vm_life(h, chk, 'gpu-clique1:1')
    h.daemon.wait(lambda ds: {d['address']: d['state']
                              for d in ds}[x] == 'quarantined')
    time.sleep(0.3)
    rec.sync()
    assert h.reserved(x) == 1 and h.inventory(x)[2] == 0    # no allocation
    assert x not in h.offered()
    (h.tmp / 'fail').unlink()
    with chk.changing(x):
        h.cli('release', x)
    wait(lambda: h.reserved(x) == 0 and h.states()[x] == 'allocatable',
         what='released GPU offered again')

    # --- a quarantine while free: reserved within one event ------------------
    z = every[5] if x != every[5] else every[6]
    t0 = time.monotonic()
    passes = rec.passes
    with chk.changing(z):
        h.cli('quarantine', z, '--reason', 'nova test')
    took = time.monotonic() - t0
    assert h.reserved(z) == 1      # the CLI returned once Placement showed it
    assert z not in h.offered()
    assert rec.passes > passes     # an event did it: check_interval is 1 h
    with capsys.disabled():
        print(f'\n[nova] quarantine of a free GPU: `gpuwarden quarantine` '
              f'returned with reserved = 1 after {took * 1000:.0f} ms')

    # --- restarts change nothing ----------------------------------------------
    before = h.snapshot()
    assert h.daemon.stop() == 0
    h.daemon.start(wait_clean=False)
    time.sleep(0.5)
    rec.sync()
    assert h.snapshot() == before
    h.stop_reconciler()
    rec = h.start_reconciler()
    recs.append(rec)
    rec.sync()
    assert rec.writes == [] and h.snapshot() == before

    # --- a write that conflicts with Nova's own update is retried ------------
    orig = rec.placement.set_reserved
    injected = []

    def racing(view, rc, reserved):
        if not injected:
            # nova-compute changes the provider between the reconciler's
            # read and its write (a device_spec trait edit it reports).
            addr = next(g for g, u in h.rp.items() if u == view.uuid)
            traits = h.traits(addr)
            h.nova.call('set_traits', address=addr,
                        traits=traits + ['CUSTOM_RACE'])
            injected.append(addr)
        return orig(view, rc, reserved)
    rec.placement.set_reserved = racing
    with chk.changing(z):
        h.cli('release', z)
    wait(lambda: h.reserved(z) == 0 and h.states()[z] == 'allocatable',
         what='z offered again')
    assert injected == [z] and rec.conflicts >= 1
    assert 'CUSTOM_RACE' in h.traits(z)     # Nova's write stands
    rec.placement.set_reserved = orig

    # Nova reports again, and nova-compute restarts (an empty provider
    # cache, everything read from Placement): nothing of gpuwarden's is
    # undone, a quarantined GPU stays reserved, Nova writes nothing.
    h.report()
    assert [h.reserved(g) for g in every] == [0] * 8
    assert h.offered() == every
    with chk.changing(z):
        h.cli('quarantine', z, '--reason', 'before nova restarts')
    before = h.snapshot()
    h.start_nova(restart=True)
    assert h.snapshot() == before and before[z][0] == 1
    assert h.offered() == [g for g in every if g != z]


@pytest.mark.parametrize('managed', ['no', 'yes'])
def test_nova_reports_a_dirty_gpu_the_gate_refuses_it(make_host, managed,
                                                      capsys):
    """Nova reports a GPU's provider for the first time, with reserved 0,
    while gpuwardend has it quarantined: no daemon event says so, so
    Placement offers it until the reconciler's next check (here an hour
    away). The scheduler picks it, nova-compute claims it and defines the
    domain with its <hostdev> (managed as the device_spec says); the
    libvirt hook refuses to start it. The next pass reserves it, on top of
    the allocation."""
    h = make_host('sm4029-8xrtx5000', WARN)
    if managed == 'yes':
        h.config = N.nova_config(h.tree, '--manage-vendors', '10de',
                                 '--managed', 'yes')
    rec = h.start_reconciler()
    h.daemon.wait(lambda ds: all(d['state'] == 'allocatable' for d in ds))
    x = h.gpus[2]
    h.cli('quarantine', x, '--reason', 'before nova')
    h.start_nova()
    assert h.reserved(x) == 0 and x in h.offered()      # Nova's own write
    vm, cands, _ = h.candidates('gpu-nvidia-1eb0:1')
    req = next(r for r, gpus in cands if gpus == [x])
    assert h.nova.call('claim', instance=vm, allocation_request=req)
    assert h.nova.call('compute_claim', instance=vm,
                       mappings=req['mappings']) == [x]
    xml = h.domain_xml(vm, [x])
    assert f'managed="{managed}"' in xml
    rc, err = h.hook(vm, 'prepare', 'begin', xml)
    assert rc == 1 and x in err and 'quarantined' in err, (rc, err)
    # Another GPU, clean, in the same kind of domain: allowed.
    ok = h.gpus[3]
    assert h.hook('vm-ok', 'prepare', 'begin',
                  h.domain_xml('vm-ok', [ok])) == (0, '')
    # Nova deletes the instance that never started: the allocation goes,
    # Nova's own one-time-use reservation stays, and so does gpuwarden's
    # (x is quarantined).
    h.nova.call('delete', instance=vm)
    r = rec.sync()[-1]
    assert x not in r.lowered
    assert h.reserved(x) == 1 and x not in h.offered()


def test_first_report_window_is_one_check_interval(make_host, capsys):
    """The same first report, measured: with check_interval 1 s the
    reconciler reserves the quarantined GPU within about a second of
    Nova's report."""
    h = make_host('sm4029-8xrtx5000', WARN, check_interval=1.0)
    h.start_reconciler()
    h.daemon.wait(lambda ds: all(d['state'] == 'allocatable' for d in ds))
    x = h.gpus[5]
    h.cli('quarantine', x, '--reason', 'before nova')
    chk_from = time.monotonic()
    h.start_nova()
    reported = time.monotonic()
    wait(lambda: h.reserved(x) == 1, timeout=10, what='first report raised',
         host=h)
    window = time.monotonic() - reported
    with capsys.disabled():
        print(f'\n[nova] a quarantined GPU Nova reported for the first time '
              f'(report took {reported - chk_from:.2f} s) was reserved '
              f'{window * 1000:.0f} ms after the report (check_interval '
              f'1 s)')
    assert window < 2.5
    assert x not in h.offered()


def test_the_service_command_once(make_host):
    """gpuwarden-nova-reconciler as systemd runs it, with --once: its
    config file (keystoneauth's [placement], the daemon's endpoints), one
    pass, a summary, exit 0 when Placement shows what the daemon says."""
    import subprocess
    import sys
    h = make_host('x299-3xa6000', WARN)

    def once():
        p = subprocess.run([sys.executable, '-m', 'gpuwarden_nova.cmd',
                            '--config-file', str(h.conf_path), '--once'],
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout
    rc, out = once()
    # Nova has made no provider: nothing offered, Placement covers the
    # inventory, `published` promotes the clean GPUs.
    assert rc == 0, out
    assert 'no provider yet 3' in out and 'published yes' in out
    assert 'promoted 0000:1a:00.0 0000:67:00.0 0000:68:00.0' in out
    h.start_nova()
    x = h.gpus[0]
    h.daemon.result('quarantine', {'address': x, 'reason': 'once'})
    rc, out = once()
    assert rc == 0 and 'raised 1, lowered 0' in out, out
    assert h.reserved(x) == 1 and [h.reserved(g) for g in h.gpus[1:]] == \
        [0, 0]


def test_packaging_names_the_console_script():
    import tomllib
    pyproject = tomllib.loads((N.ROOT / 'shim' / 'pyproject.toml').read_text())
    scripts = pyproject['project']['scripts']
    assert scripts['gpuwarden-nova-reconciler'] == 'gpuwarden_nova.cmd:main'
    assert 'gpuwarden_nova' in pyproject['tool']['setuptools']['packages']
    eps = pyproject['project']['entry-points']['oslo.config.opts']
    assert eps['gpuwarden.nova'] == 'gpuwarden_nova.conf:list_opts'
    unit = (N.ROOT / 'packaging' / 'systemd' /
            'gpuwarden-nova-reconciler.service').read_text()
    exec_start = next(line for line in unit.splitlines()
                      if line.startswith('ExecStart='))
    assert exec_start.split()[0].endswith('/gpuwarden-nova-reconciler')
    from gpuwarden_nova import conf
    groups = {getattr(g, 'name', g) for g, _ in conf.list_opts()}
    assert groups == {'gpuwarden', 'reconciler', 'placement'}
