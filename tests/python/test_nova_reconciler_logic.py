"""gpuwarden-nova-reconciler's decisions against a scripted daemon and
Placement (the real ones: test_nova_reconciler.py): what it writes, what it
leaves alone, when it publishes."""

import logging

import pytest

from gpuwarden_nova import placement as pl
from gpuwarden_nova import reconciler as R

HOST = 'cmp'
A, B = '0000:1a:00.0', '0000:1c:00.0'


class Daemon:
    def __init__(self, states, reserved=None, model_gpus=None):
        self.states = dict(states)
        self.reserved = reserved
        self.generation = 11
        self.revision, self.published_revision = 3, 2
        self.calls = []
        self.model_gpus = model_gpus        # per-clique grouping, or None
        self.on_device = None

    def call(self, op, args=None):
        self.calls.append((op, args))
        if op == 'inventory':
            groups = self.model_gpus or [[g] for g in sorted(self.states)]
            deps = [{'gpus': g, 'reserved': sum(
                self.states[x] not in ('allocatable', 'attached') for x in g)}
                for g in groups]
            return {'generation': self.generation, 'deployables': deps,
                    'revision': self.revision,
                    'published_revision': self.published_revision}
        if op == 'devices':
            return {'devices': [{'address': a, 'state': s}
                                for a, s in sorted(self.states.items())]}
        if op == 'device':
            if self.on_device:
                self.on_device(args['address'])
            return {'address': args['address'],
                    'state': self.states[args['address']]}
        if op == 'published':
            self.published_revision = self.revision
            return {'generation': self.generation, 'promoted': []}
        raise AssertionError(op)


class Placement:
    """Providers {name: dict(uuid, generation, total, reserved, used,
    traits)} under compute node HOST."""

    def __init__(self, rps, conflicts=0):
        self.rps = {n: dict(uuid=f'u-{n}', generation=1, **rp)
                    for n, rp in rps.items()}
        self.conflicts = conflicts
        self.writes = []
        self.reads = 0

    def _by_uuid(self, uuid):
        return next(r for r in self.rps.values() if r['uuid'] == uuid)

    def provider_by_name(self, name):
        return {'uuid': 'cn', 'name': name} if name == HOST else None

    def providers_in_tree(self, root):
        return [{'uuid': 'cn', 'name': HOST, 'generation': 1}] + [
            {'uuid': r['uuid'], 'name': n, 'generation': r['generation']}
            for n, r in self.rps.items()]

    def traits(self, uuid):
        return self._by_uuid(uuid)['traits']

    def view(self, uuid, name):
        self.reads += 1
        r = self._by_uuid(uuid)
        return pl.ProviderView(uuid, name, r['generation'], {'PGPU': {
            'total': r['total'], 'reserved': r['reserved'], 'min_unit': 1,
            'max_unit': r['total'], 'step_size': 1,
            'allocation_ratio': 1.0}}, {'PGPU': r['used']})

    def set_reserved(self, view, rc, reserved):
        r = self._by_uuid(view.uuid)
        if self.conflicts:
            self.conflicts -= 1
            r['generation'] += 1            # someone else wrote
            raise pl.Conflict('moved')
        if view.generation != r['generation']:
            raise pl.Conflict('stale')
        r['reserved'] = reserved
        r['generation'] += 1
        self.writes.append((view.name, reserved))
        return r['generation'], {}


NOVA = ['COMPUTE_MANAGED_PCI_DEVICE', 'HW_PCI_ONE_TIME_USE', 'OWNER_NOVA']


def rp(reserved=0, used=0, total=1, traits=NOVA):
    return dict(total=total, reserved=reserved, used=used, traits=traits)


def name(a):
    return R.provider_name(HOST, a)


def make(states, rps, **kw):
    d = Daemon(states)
    p = Placement({name(a): v for a, v in rps.items()},
                  **{k: v for k, v in kw.items() if k == 'conflicts'})
    return d, p, R.Reconciler(d, p, HOST, conflict_retries=3)


def test_provider_names_are_novas():
    assert R.provider_name('cmp-1', '0000:3b:00.0') == 'cmp-1_0000:3B:00.0'


def test_raise_lower_and_publish():
    d, p, rec = make({A: 'quarantined', B: 'allocatable'},
                     {A: rp(0), B: rp(1)})
    r = rec.sync()[-1]
    assert sorted(p.writes) == [(name(A), 1), (name(B), 0)]
    assert r.raised == [A] and r.lowered == [B] and r.published
    assert ('device', {'address': B}) in d.calls    # asked again first
    # nothing more to do: no write, no publish (revision confirmed)
    r = rec.sync()[-1]
    assert len(p.writes) == 2 and not r.published


def test_never_lowers_under_an_allocation():
    d, p, rec = make({A: 'allocatable'}, {A: rp(1, used=1)})
    r = rec.sync()[-1]
    assert p.writes == [] and r.held == [A]
    # the usage is read again even at the same generation (Placement does
    # not move a generation when an allocation is deleted)
    p.rps[name(A)]['used'] = 0
    r = rec.sync()[-1]
    assert p.writes == [(name(A), 0)] and r.lowered == [A]


def test_the_daemon_is_asked_right_before_lowering():
    d, p, rec = make({A: 'allocatable'}, {A: rp(1)})

    def quarantine(addr):
        d.states[addr] = 'quarantined'
    d.on_device = quarantine
    r = rec.sync()[-1]
    assert p.writes == [] and r.lowered == []


def test_conflicts_are_retried_never_forced():
    d, p, rec = make({A: 'quarantined'}, {A: rp(0)}, conflicts=2)
    r = rec.sync()[-1]
    assert p.writes == [(name(A), 1)] and r.conflicts == 2
    d, p, rec = make({A: 'quarantined'}, {A: rp(0)}, conflicts=99)
    r = rec.sync()[-1]
    assert p.writes == [] and r.failed == [A] and r.conflicts == 4
    assert not r.covered and not r.published
    assert ('published', {'generation': 11}) not in d.calls


def test_missing_and_foreign_providers_are_left_alone(caplog):
    caplog.set_level(logging.INFO)
    d, p, rec = make({A: 'quarantined', B: 'quarantined'},
                     {B: rp(0, traits=['CUSTOM_SOMETHING_ELSE'])})
    for _ in range(3):
        r = rec.sync()[-1]
    assert p.writes == [] and r.missing == [A]
    said = [m for m in caplog.messages if 'has no provider' in m]
    assert len(said) == 1 and A in said[0]
    assert len([m for m in caplog.messages if 'left alone' in m and
                name(B) in m]) == 1
    # Not offered by a provider of Nova's: covered, published.
    assert r.covered and ('published', {'generation': 11}) in d.calls
    # Nova reports it: raised at the next pass.
    p.rps[name(A)] = dict(uuid='u-a', generation=1, **rp(0))
    r = rec.sync()[-1]
    assert p.writes == [(name(A), 1)]


def test_coverage_of_a_clique_deployable():
    """A per-clique inventory reserving 1 of 2 GPUs is covered by one fully
    reserved provider of the two."""
    d, p, rec = make({A: 'quarantined', B: 'allocatable'},
                     {A: rp(1), B: rp(0)})
    d.model_gpus = [[A, B]]
    assert rec.sync()[-1].covered
    assert R.Reconciler._covers({'deployables': [
        {'gpus': [A, B], 'reserved': 2}]}, {A: True, B: False}) is False


@pytest.mark.parametrize('state', ['discovered', 'sanitized', 'attached',
                                   'quarantined'])
def test_every_state_but_allocatable_is_reserved(state):
    d, p, rec = make({A: state}, {A: rp(0)})
    rec.sync()
    assert p.writes == [(name(A), 1)]


def test_a_gpu_awaiting_its_provider_is_looked_at_every_second_for_a_while(
        monkeypatch):
    """A GPU that is not allocatable and that Nova has not reported yet:
    Nova's first report writes reserved 0, so passes come every
    held_recheck_interval for AWAIT_FAST_S, then every check_interval."""
    from gpuwarden_nova import reconciler as R
    now = [1000.0]
    monkeypatch.setattr(R.time, 'monotonic', lambda: now[0])
    svc = R.Service(reconciler=None, check_interval=15)
    assert svc._await([]) is False
    assert svc._await(['0000:1a:00.0']) is True
    now[0] += R.Service.AWAIT_FAST_S - 1
    assert svc._await(['0000:1a:00.0']) is True
    now[0] += 2
    assert svc._await(['0000:1a:00.0']) is False
    # A GPU that appears later gets its own fast period.
    assert svc._await(['0000:1a:00.0', '0000:1c:00.0']) is True
    # Once reported (no longer awaited) it is forgotten.
    assert svc._await([]) is False
