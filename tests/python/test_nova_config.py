"""`gpuwarden nova-config` (issue 17): the [pci] device_spec and alias
entries for Nova's own passthrough, checked against Nova's own parser and
translator (nova 34 from PyPI, in a child process: test_nova_support.py),
and the allocation candidates Nova's scheduler gets for the aliases from
providers Nova's resource tracker made, on the bundled test hosts."""

import itertools
import json
import os
import re
import shutil
import urllib.parse

import pytest

import test_nova_support as N
import test_shim_support as S

TREES = sorted(p.name for p in N.HOSTS.iterdir() if p.is_dir())
OTU = 'HW_PCI_ONE_TIME_USE'
NOVA_PCI = 'COMPUTE_MANAGED_PCI_DEVICE'


@pytest.fixture(scope='module')
def nova(tmp_path_factory):
    n = N.NovaProcess(tmp_path_factory.mktemp('nova') / 'nova.log')
    yield n
    n.close()


def discover(tree):
    return json.loads(N.cli('discover', '--host-root', tree, '--json',
                            check=False).stdout)


def expected_traits(g, cliques=None):
    """What the daemon's inventory gives a GPU (docs/placement.md,
    Traits), without OWNER_CYBORG."""
    vendor = {'10de': 'NVIDIA', '1002': 'AMD', '8086': 'INTEL',
              '102b': 'MATROX'}.get(g['vendor_id'], g['vendor_id'].upper())
    out = [f"CUSTOM_{vendor}_{g['device_id'].upper()}"]
    clique = g['clique'] if cliques is None else cliques.get(g['address'])
    if clique is not None and 0 <= clique <= 15:
        out.append(f'CUSTOM_GPU_CLIQUE_{clique}')
    if g['numa_node'] >= 0:
        out.append(f"CUSTOM_NUMA_NODE_{g['numa_node']}")
    return out


def daemon_managed(tmp_path, tree, *extra):
    """The GPUs gpuwardend manages on this host (its `devices`)."""
    from gwdaemon import Daemon
    d = Daemon(tmp_path, host=tree, extra=list(extra)).start(wait_clean=False)
    try:
        return [x['address'] for x in d.devices()]
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize('tree', TREES)
def test_every_managed_gpu_gets_one_spec_with_its_topology(tmp_path, tree):
    """One entry per GPU the daemon manages (its default rule here), with
    the traits the daemon's inventory gives it."""
    host = N.HOSTS / tree
    scan = discover(host)
    p = N.cli('nova-config', '--host-root', host, '-f', 'json', check=False)
    managed = daemon_managed(tmp_path, tree)
    want = [g for g in scan['gpus'] if g['address'] in managed]
    if not want:
        assert p.returncode == 1 and 'qualifies' in p.stderr
        return
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [s['address'] for s in out['device_spec']] == \
        [g['address'] for g in want]
    for s, g in zip(out['device_spec'], want):
        assert list(s) == ['address', 'vendor_id', 'product_id',
                           'resource_class', 'traits', 'one_time_use',
                           'managed']
        assert (s['vendor_id'], s['product_id']) == (g['vendor_id'],
                                                     g['device_id'])
        assert s['resource_class'] == 'PGPU'
        assert s['traits'].split(',') == expected_traits(g)
        assert s['one_time_use'] == 'true' and s['managed'] == 'no'
    skipped = {x['address']: x['why'] for x in out['skipped']}
    assert skipped == {g['address']: 'not_managed' for g in scan['gpus']
                       if g['address'] not in managed}
    # The oslo.config form carries the same entries, in the same order.
    conf, text = N.nova_config_conf(host)
    assert conf['pci']['report_in_placement'] == ['True']
    assert conf['filter_scheduler']['pci_in_placement'] == ['True']
    assert [json.loads(v) for v in conf['pci']['device_spec']] == \
        out['device_spec']
    assert [json.loads(v) for v in conf['pci']['alias']] == out['alias']


@pytest.mark.parametrize('tree', TREES)
def test_nova_parses_it_and_makes_one_time_use_providers(nova, tree):
    """nova.pci.whitelist/devspec parse every device_spec (one_time_use
    needs report_in_placement), each matches exactly its GPU as the libvirt
    driver reports it, and pci_placement_translator makes one
    one-time-use provider per GPU with the product, clique and NUMA traits
    (normalised by Nova: unchanged); nova.pci.request parses every
    alias."""
    host = N.HOSTS / tree
    p = N.cli('nova-config', '--host-root', host, '-f', 'json', check=False)
    if p.returncode == 1:       # no GPU the daemon manages (broken-vendor)
        assert 'qualifies' in p.stderr
        return
    out = json.loads(p.stdout)
    specs = [json.dumps(s) for s in out['device_spec']]
    aliases = [json.dumps(a) for a in out['alias']]
    devs = N.hypervisor_devices(host)
    r = nova.call('validate', device_spec=specs, alias=aliases, devices=devs)
    assert sorted(r['matched']) == [s['address'] for s in out['device_spec']]
    for s in out['device_spec']:
        tags = r['matched'][s['address']]
        assert tags['one_time_use'] == 'true' and tags['managed'] == 'false'
        rp = r['rps'][f"cmp_{s['address'].upper()}"]
        assert rp['rc'] == 'PGPU' and rp['one_time_use'] is True
        assert rp['traits'] == sorted(s['traits'].split(',') +
                                      [NOVA_PCI, OTU])
        assert rp['inventory'] == {'PGPU': {'total': 1, 'max_unit': 1}}
    assert sorted(r['aliases']) == sorted(a['name'] for a in out['alias'])
    for a in out['alias']:
        numa, (spec,) = r['aliases'][a['name']]
        assert numa == a.get('numa_policy', 'legacy')
        assert spec['resource_class'] == 'PGPU'
        assert spec['traits'] == a['traits']
    # one_time_use without report_in_placement: Nova refuses the spec.
    with pytest.raises(N.NovaError, match='one_time_use=true requires'):
        nova.call('validate', device_spec=specs[:1], alias=[], devices=devs,
                  report_in_placement=False)


def test_nova_keeps_the_names_as_written(nova):
    """Nova normalises each comma-separated trait on its own: a custom
    name in full (CUSTOM_...) and PGPU stay as they are, a bare name gets
    CUSTOM_, and a blank after a comma becomes part of the name (so
    nova-config writes full names, commas only)."""
    out = N.nova_config(N.HOSTS / 'synth64')
    for s in out['device_spec']:
        r = nova.call('normalise', traits=s['traits'],
                      resource_class=s['resource_class'])
        assert r == {'traits': sorted(s['traits'].split(',')),
                     'resource_class': 'PGPU'}
    r = nova.call('normalise', traits='gpu_clique_0, CUSTOM_NUMA_NODE_1',
                  resource_class='a6000')
    assert r == {'traits': ['CUSTOM_GPU_CLIQUE_0', 'CUSTOM__CUSTOM_NUMA_NODE_1'],
                 'resource_class': 'CUSTOM_A6000'}


def test_nova_refuses_one_time_use_and_mixed_traits_on_vfs(nova):
    """Nova's own rules that nova-config must respect: a child device (an
    SR-IOV VF, whose provider is its PF's) may not set one_time_use, and the
    children under one parent may not have different traits."""
    pf = {'dev_id': 'pci_0000_3b_00_0', 'address': '0000:3b:00.0',
          'vendor_id': '10de', 'product_id': '2330', 'numa_node': 0,
          'label': 'label_10de_2330', 'dev_type': 'type-PF'}

    def vf(fn):
        return dict(pf, dev_id=f'pci_0000_3b_00_{fn}',
                    address=f'0000:3b:00.{fn}', product_id='2331',
                    dev_type='type-VF', parent_addr='0000:3b:00.0')
    one = {'vendor_id': '10de', 'product_id': '2331',
           'resource_class': 'PGPU', 'one_time_use': 'true'}
    r = nova.call('child_provider', parent=pf, children=[vf(4)],
                  device_spec=[json.dumps(dict(one, address='0000:3b:00.4'))])
    assert 'one_time_use' in r['error'] and 'type-PCI and type-PF' in \
        r['error'], r
    two = [json.dumps({'address': f'0000:3b:00.{fn}', 'vendor_id': '10de',
                       'product_id': '2331', 'resource_class': 'PGPU',
                       'traits': f'CUSTOM_T{fn}'}) for fn in (4, 5)]
    r = nova.call('child_provider', parent=pf, children=[vf(4), vf(5)],
                  device_spec=two)
    assert 'PlacementPciMixedTraitsException' in r['error'], r
    # The whole PF, one-time-use, is fine.
    r = nova.call('child_provider', parent=pf, children=[], device_spec=[
        json.dumps(dict(one, address='0000:3b:00.0', product_id='2330'))])
    assert r['rps'] == {'cmp_0000:3B:00.0': [NOVA_PCI, OTU]}


def test_vfs_and_pfs_with_vfs_get_no_entry(tmp_path, nova):
    """A GPU function that is a VF (physfn) and a PF whose VFs are enabled
    get no device_spec, a PF without VFs is type-PF (and so are the aliases
    that can only match it)."""
    host = tmp_path / 'host'
    shutil.copytree(N.HOSTS / 'sm4029-8xrtx5000', host, symlinks=True)
    dev = host / 'sys' / 'bus' / 'pci' / 'devices'
    a, b, c = '0000:1a:00.0', '0000:1c:00.0', '0000:3d:00.0'
    os.symlink('../0000:19:00.0', dev / a / 'physfn')
    (dev / b / 'sriov_totalvfs').write_text('4\n')
    (dev / b / 'sriov_numvfs').write_text('2\n')
    for addr in (c, '0000:3f:00.0', '0000:40:00.0', '0000:41:00.0'):
        (dev / addr / 'sriov_totalvfs').write_text('4\n')
        (dev / addr / 'sriov_numvfs').write_text('0\n')
    out = N.nova_config(host)
    skipped = {x['address']: x['why'] for x in out['skipped']}
    assert skipped == {a: 'vf', b: 'vfs_enabled'}
    assert a not in [s['address'] for s in out['device_spec']]
    conf, text = N.nova_config_conf(host)
    assert f'# {a}: no entry: an SR-IOV virtual function' in text
    aliases = {x['name']: x for x in out['alias']}
    assert aliases['gpu-clique1']['device_type'] == 'type-PF'
    assert aliases['gpu-clique0']['device_type'] == 'type-PCI'
    assert 'device_type' not in aliases['gpu-numa0']     # mixed
    # Nova takes the PF as a one-time-use parent provider.
    devs = [dict(d, dev_type='type-PF') if d['address'] in
            (c, '0000:3f:00.0', '0000:40:00.0', '0000:41:00.0') else d
            for d in N.hypervisor_devices(host) if d['address'] != a]
    r = nova.call('validate',
                  device_spec=[json.dumps(s) for s in out['device_spec']],
                  alias=[json.dumps(x) for x in out['alias']], devices=devs)
    assert r['rps'][f'cmp_{c.upper()}']['one_time_use'] is True


def test_options(tmp_path, nova):
    host = N.HOSTS / 'x299-3xa6000'
    out = N.nova_config(host, '--resource-class', 'CUSTOM_A6000', '--trait',
                        'CUSTOM_LAB', '--managed', 'yes', '--alias-prefix',
                        'a6k')
    s = out['device_spec'][0]
    assert s['resource_class'] == 'CUSTOM_A6000' and s['managed'] == 'yes'
    assert s['traits'].split(',')[-1] == 'CUSTOM_LAB'
    assert {a['name'] for a in out['alias']} == {
        'a6k-nvidia-2230', 'a6k-numa0', 'a6k-clique0'}
    r = nova.call('validate',
                  device_spec=[json.dumps(x) for x in out['device_spec']],
                  alias=[json.dumps(x) for x in out['alias']],
                  devices=N.hypervisor_devices(host))
    rp = r['rps']['cmp_0000:67:00.0']
    assert rp['rc'] == 'CUSTOM_A6000' and 'CUSTOM_LAB' in rp['traits']
    assert r['matched']['0000:67:00.0']['managed'] == 'true'
    for bad in (['--resource-class', 'pgpu'], ['--trait', 'lab'],
                ['--trait', 'CUSTOM_GPU_CLIQUE_9'], ['--managed', 'maybe'],
                ['-f', 'xml'], ['--alias-prefix', 'a b'], ['extra']):
        p = N.cli('nova-config', '--host-root', host, *bad, check=False)
        assert p.returncode == 2, (bad, p.returncode, p.stderr)
    # The daemon's own config file: [manage] and [inventory].
    cliques = tmp_path / 'cliques.conf'
    cliques.write_text('3 = 0000:1a:00.0 0000:68:00.0\n')
    conf = tmp_path / 'gpuwarden.conf'
    conf.write_text('[daemon]\nhost_root = /\n[manage]\nvendors = 10de\n'
                    f'addresses = \n[inventory]\nclique_override = {cliques}\n'
                    'extra_traits = CUSTOM_RACK_7, CUSTOM_ROW_2\n')
    out = N.nova_config(host, '--config', conf)
    t = {s['address']: s['traits'].split(',') for s in out['device_spec']}
    assert t['0000:1a:00.0'] == ['CUSTOM_NVIDIA_2230', 'CUSTOM_GPU_CLIQUE_3',
                                 'CUSTOM_NUMA_NODE_0', 'CUSTOM_RACK_7',
                                 'CUSTOM_ROW_2']
    assert t['0000:67:00.0'] == ['CUSTOM_NVIDIA_2230', 'CUSTOM_NUMA_NODE_0',
                                 'CUSTOM_RACK_7', 'CUSTOM_ROW_2']
    # --manage-addresses narrows it like the daemon's option.
    out = N.nova_config(host, '--manage-addresses', '0000:68:00.0')
    assert [s['address'] for s in out['device_spec']] == ['0000:68:00.0'] \
        == daemon_managed(tmp_path, 'x299-3xa6000', '--manage-addresses',
                          '0000:68:00.0')


# --- what Nova's scheduler gets for the aliases ------------------------------

@pytest.fixture(scope='module')
def placement(tmp_path_factory):
    p = S.PlacementServer(str(tmp_path_factory.mktemp('placement')))
    yield p
    p.close()


def offered_sets(h, alias):
    _, cands, _ = h.candidates(alias)
    return [tuple(gpus) for _, gpus in cands]


@pytest.mark.parametrize('tree', ['synth64', 'sm4029-8xrtx5000',
                                  'x299-3xa6000'])
def test_clique_and_numa_aliases_get_only_their_gpus(tmp_path, placement,
                                                     nova, tree, capsys):
    """Providers made by Nova's resource tracker from nova-config's
    device_spec; the candidates nova-scheduler gets for each alias: a
    clique alias asking for N GPUs gets N different GPUs of that clique
    and nothing else, and every such N-set of it (N = 2 for every clique,
    and the clique's size for the first and last); a NUMA alias gets
    exactly the node's GPUs."""
    h = N.NovaHost.__new__(N.NovaHost)      # no daemon: Nova's side only
    h.tree = N.HOSTS / tree
    import uuid
    h.name = f'nova-{uuid.uuid4().hex[:8]}'
    h.api = N.PlacementAPI(placement.url)
    h.placement, h.nova, h.service, h.rp = placement, nova, None, {}
    h.config = N.nova_config(h.tree, '--manage-vendors', '10de')
    h.daemon = None
    h.start_nova()
    scan = discover(h.tree)
    gpus = {g['address']: g for g in scan['gpus']}
    assert sorted(h.rp) == sorted(gpus)
    lines = []
    try:
        last = len(scan['cliques']) - 1
        for n, members in enumerate(scan['cliques']):
            # every clique in pairs; the whole clique for the first and last
            whole = {len(members)} if n in (0, last) else set()
            for count in sorted({2} | whole):
                got = offered_sets(h, f'gpu-clique{n}:{count}')
                want = {c for c in itertools.permutations(members, count)}
                assert {tuple(sorted(c)) for c in got} == \
                    {tuple(sorted(c)) for c in want}
                assert len(got) == len(want)    # each ordered pick once
                lines.append(f'gpu-clique{n}:{count} -> {len(got)}')
        nodes = sorted({g['numa_node'] for g in gpus.values()})
        for node in nodes:
            got = offered_sets(h, f'gpu-numa{node}:1')
            assert sorted(g for (g,) in got) == sorted(
                a for a, g in gpus.items() if g['numa_node'] == node)
            lines.append(f'gpu-numa{node}:1 -> {len(got)}')
        if tree == 'synth64':
            # The doc's flavor: 2 GPUs of one P2P clique on NUMA node 1.
            _, cands, out = h.candidates('gpu-clique8:2')
            q = urllib.parse.unquote(out['query'])
            assert re.search(r'required[0-9a-f-]+-0=CUSTOM_GPU_CLIQUE_8,'
                             r'CUSTOM_NUMA_NODE_1', q), q
            assert 'group_policy=none' in q and out['version'] == '1.36'
            assert {gpus[g]['numa_node'] for _, c in cands for g in c} == {1}
            lines.append(f'query (microversion {out["version"]}): {q}')
        # Without a trait: any N GPUs of the host, across switches.
        got = offered_sets(h, 'gpu-nvidia-' + scan['gpus'][0]['device_id']
                           + ':2')
        # (Nova's [scheduler] max_placement_results: 1000)
        assert len(got) == min(len(gpus) * (len(gpus) - 1), 1000)
    finally:
        h.close()
    with capsys.disabled():
        print(f'\n[nova candidates {tree}] ' + '; '.join(lines))
