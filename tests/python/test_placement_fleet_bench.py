"""The Placement fleet benchmark's own code path, at N=2 (the benchmark
itself, scripts/bench placement-fleet, runs N=50..1000 and is not part of
the suite): a private PostgreSQL server started and stopped by it, real
openstack-placement on it, both inventory models registered as Cyborg's
conductor does, every flavor's candidates counted exactly, and a claim run
that fills the fleet without giving any GPU twice."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(os.path.dirname(HERE), 'bench'))
import placement_fleet as F  # noqa: E402


def _have_postgres():
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return False
    return F.pg_bindir() is not None


# scripts/bootstrap installs both; in CI a missing one is a failure.
pytestmark = pytest.mark.skipif(
    not _have_postgres() and os.environ.get('CI') != 'true',
    reason='PostgreSQL server or psycopg2 not installed (scripts/bootstrap)')

# Candidates Placement must return with 2 hosts (8 GPUs: cliques 0 and 1 of
# four, on NUMA nodes 0 and 1), all GPUs free.
EXPECTED = {
    'per_clique': {'1 GPU': 4, '1 GPU on NUMA node 1': 2, '2 P2P GPUs': 4,
                   '4 P2P GPUs': 4,
                   # (clique0, clique1) and (clique1, clique0) per host
                   '8 GPUs': 4},
    'per_gpu': {'1 GPU': 16, '1 GPU on NUMA node 1': 8,
                # ordered pairs / 4-tuples of distinct GPUs of clique 0
                '2 P2P GPUs': 2 * 4 * 3, '4 P2P GPUs': 2 * 4 * 3 * 2 * 1},
}


def test_fleet_bench_two_hosts(tmp_path):
    args = F.parse_args(['--hosts', '2', '--reps', '1', '--timeout', '3',
                         '--configs=100:bf', '--clients', '4',
                         '--claim-retries', '1', '--claim-cap', '60',
                         '--register-clients', '2'])
    results, md = F.run(args, out=lambda s: None)
    by = {r['model']: r for r in results}
    assert by['per_clique']['providers'] == 2 + 2 * 2
    assert by['per_gpu']['providers'] == 2 + 2 * 8
    for model, want in EXPECTED.items():
        got = by[model]['configs']['100:bf']
        for label, n in want.items():
            assert got[label]['candidates'] == n, (model, label, got[label])
            assert got[label]['hosts'] == 2, (model, label, got[label])
    # 8 GPUs as 8 per-GPU groups: 8! = 40320 candidates per host, capped
    # at 100 by max_allocation_candidates, or no answer within the timeout.
    eight = by['per_gpu']['configs']['100:bf']['8 GPUs']
    assert eight['timeout'] or eight['candidates'] == 100, eight
    for model in EXPECTED:
        c = by[model]['claims']['1']
        # allocation_conflict_retry_count = 1: every GPU once, no more.
        assert c.full and c.count['claims'] == 16, (model, c.count)
        assert c.used == 16 and c.over == (0, 0), (model, c.used, c.over)
    assert '| 4 P2P GPUs | per_gpu |' in md and 'claims/s' in md
