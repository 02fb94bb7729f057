"""The inventory check: one bad entry rejects the whole inventory."""

import pytest

from gpuwarden_cyborg import errors
from gpuwarden_cyborg import inventory

import test_shim_support as S


def dep0(inv):
    return inv['deployables'][0]


def dev0(inv):
    return dep0(inv)['device']


CASES = {
    'generation missing': (lambda i: i.pop('generation'), "missing 'generation'"),
    'generation a string': (lambda i: i.update(generation='7'),
                            "'generation' is '7', expected uint"),
    'generation a bool': (lambda i: i.update(generation=True),
                          "'generation' is True, expected uint"),
    'generation 0': (lambda i: i.update(generation=0),
                     'generation 0 not in 1..2^63-1'),
    'model missing': (lambda i: i.pop('model'), "missing 'model'"),
    'deployables not a list': (lambda i: i.update(deployables={}),
                               "'deployables' is {}, expected list"),
    'deployable not a map': (lambda i: i['deployables'].append(3),
                             "deployable #8: is int, expected a map"),
    'name empty': (lambda i: dep0(i).update(name=''),
                   "name '' is empty or longer than 255"),
    'name too long': (lambda i: dep0(i).update(name='h' * 256),
                      'is empty or longer than 255'),
    'duplicate name': (lambda i: i['deployables'][1].update(
        name=dep0(i)['name']), 'duplicate deployable names'),
    'rc lower case': (lambda i: dep0(i).update(rc='pgpu'),
                      "'pgpu' is not a Placement name"),
    'trait with a dash': (lambda i: dep0(i)['traits'].append('CUSTOM_A-B'),
                          "'CUSTOM_A-B' is not a Placement name"),
    'trait too long': (lambda i: dep0(i)['traits'].append(
        'CUSTOM_' + 'A' * 250), 'at most 255'),
    'duplicate trait': (lambda i: dep0(i)['traits'].append('OWNER_CYBORG'),
                        'duplicate traits'),
    'num_accelerators 0': (lambda i: dep0(i).update(num_accelerators=0),
                           'num_accelerators 0 < 1'),
    'num_accelerators a float': (lambda i: dep0(i).update(
        num_accelerators=1.0), "'num_accelerators' is 1.0, expected uint"),
    'reserved above total': (lambda i: dep0(i).update(reserved=2),
                             'reserved 2 > num_accelerators 1'),
    'reserved negative': (lambda i: dep0(i).update(reserved=-1),
                          "'reserved' is -1, expected uint"),
    'no gpus': (lambda i: dep0(i).update(gpus=[]),
                '0 gpus but num_accelerators 1'),
    'gpus descending': (lambda i: i['deployables'].__setitem__(0, dict(
        dep0(i), gpus=['0000:1c:00.0', '0000:1a:00.0'], num_accelerators=2)),
        'are not ascending and distinct'),
    'member upper-case': (lambda i: dep0(i).update(gpus=['0000:1A:00.0']),
                          "gpu '0000:1A:00.0' is not a canonical"),
    'gpu count differs': (lambda i: dep0(i).update(num_accelerators=2),
                          '1 gpus but num_accelerators 2'),
    'gpu in two deployables': (lambda i: i['deployables'][1].update(
        gpus=dep0(i)['gpus'], attach_handles=[]),
        'GPU 0000:1a:00.0 is in compute0_0000:1a:00.0 and'),
    'handle type MDEV': (lambda i: dep0(i)['attach_handles'][0].update(
        type='MDEV'), "attach handle type 'MDEV' is not PCI"),
    'handle info not JSON': (lambda i: dep0(i)['attach_handles'][0].update(
        info='0000:1a:00.0'), "is not Cyborg's JSON PCI address"),
    'handle info not canonical': (lambda i: dep0(i)['attach_handles'][0]
                                  .update(info='{"bus":"1a","device":"00",'
                                          '"domain":"0000","function":"0"}'),
                                  'sorted keys, string values'),
    'handle info int values': (lambda i: dep0(i)['attach_handles'][0].update(
        info='{"bus": 26, "device": "00", "domain": "0000", "function": "0"}'),
        "is not Cyborg's JSON PCI address"),
    'handle info upper-case': (lambda i: dep0(i)['attach_handles'][0].update(
        info=S.pci_json('0000:1A:00.0')), "is not Cyborg's JSON PCI address"),
    'handle of another GPU': (lambda i: dep0(i)['attach_handles'][0].update(
        info=S.pci_json('0000:1c:00.0')), 'is not one of its gpus'),
    'two handles for one GPU': (lambda i: dep0(i)['attach_handles'].append(
        dep0(i)['attach_handles'][0]), 'two attach handles for one GPU'),
    'driver_name missing': (lambda i: dep0(i).pop('driver_name'),
                            "missing 'driver_name'"),
    'driver_name too long': (lambda i: dep0(i).update(driver_name='N' * 101),
                             'longer than 100'),
    'device missing': (lambda i: dep0(i).pop('device'), "missing 'device'"),
    'device type unknown': (lambda i: dev0(i).update(type='TPU'),
                            "type 'TPU' is not a Cyborg device type"),
    'device vendor upper-case': (lambda i: dev0(i).update(vendor='10DE'),
                                 "vendor '10DE' is not 4 lower-case hex"),
    'device model empty': (lambda i: dev0(i).update(model=''),
                           "model '' is empty"),
    'std_board_info not JSON': (lambda i: dev0(i).update(
        std_board_info='{controller'), 'std_board_info'),
    'controlpath type USB': (lambda i: dev0(i)['controlpath'].update(
        type='USB'), "controlpath type 'USB' is not one Cyborg"),
    'controlpath info too long': (lambda i: dev0(i)['controlpath'].update(
        info='"' + 'x' * 300 + '"'), 'longer than 255'),
    'controlpath info not JSON': (lambda i: dev0(i)['controlpath'].update(
        info='0000:1a:00.0'), 'controlpath info'),
    'one controlpath, two devices': (lambda i: i['deployables'][1].update(
        device=dict(dev0(i), model='other')),
        'with other device fields than an earlier deployable'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_inventory_is_refused_whole(case):
    mutate, message = CASES[case]
    inv = S.sample_inventory()
    mutate(inv)
    with pytest.raises(errors.InventoryError) as exc:
        inventory.parse(inv)
    assert message in str(exc.value)


def test_result_not_a_map():
    with pytest.raises(errors.InventoryError, match='is list, expected a map'):
        inventory.parse([])


def test_empty_inventory_is_refused():
    inv = S.sample_inventory()
    inv['deployables'] = []
    with pytest.raises(errors.InventoryError, match='refusing to report an '
                       'empty list'):
        inventory.parse(inv)


def test_host_option_checks_the_daemons_host():
    inv = S.sample_inventory(host='compute0')
    assert len(inventory.parse(inv, host='compute0').deployables) == 8
    with pytest.raises(errors.InventoryError,
                       match=r"for host 'compute0', \[gpuwarden\] host says "
                             r"'compute1'"):
        inventory.parse(inv, host='compute1')


def test_unknown_keys_are_ignored():
    inv = S.sample_inventory()
    inv['future'] = 1
    dep0(inv)['future'] = {'x': 1}
    dep0(inv)['device']['future'] = []
    dep0(inv)['attach_handles'][0]['future'] = True
    assert len(inventory.parse(inv).deployables) == 8


def test_good_inventory_parses_exactly():
    inv = inventory.parse(S.sample_inventory(model='per_clique',
                                             dirty=['0000:3f:00.0']))
    assert (inv.generation, inv.host, inv.model) == (7, 'compute0',
                                                     'per_clique')
    assert [(d.name, d.num_accelerators, d.reserved, d.driver_name,
             [h.address for h in d.attach_handles], d.device.cpid_info)
            for d in inv.deployables] == [
        ('compute0_clique0', 4, 0, 'NVIDIA', S.SM4029_GPUS[0:4],
         S.pci_json('0000:1a:00.0')),
        ('compute0_clique1', 4, 1, 'NVIDIA',
         ['0000:3d:00.0', '0000:40:00.0', '0000:41:00.0'],
         S.pci_json('0000:3d:00.0'))]
