"""The shim inside Cyborg's own agent code: loaded by stevedore as the
ResourceTracker loads drivers, and its list handed to the conductor RPC
boundary by ResourceTracker.update_usage()."""

import os
import subprocess
import sys

import pytest
from stevedore import driver as sv_driver
from stevedore.extension import ExtensionManager

from cyborg import context as cy_context
from cyborg.agent import resource_tracker
from cyborg.common import exception as cy_exc

from gpuwarden_cyborg import driver as gw_driver
from gpuwarden_cyborg import errors

import test_shim_support as S
import test_shim_wire as W


class RecordingConductorAPI:
    """Stands in for cyborg.conductor.rpcapi.ConductorAPI only: records
    what would be sent over RPC (as the RPC serializer would send it)."""

    def __init__(self):
        self.calls = []

    def report_data(self, context, hostname, driver_device_list):
        self.calls.append((hostname, [d.obj_to_primitive()
                                      for d in driver_device_list]))


@pytest.fixture
def gw_daemon(tmp_path):
    d = S.FakeDaemon(str(tmp_path / 'read.sock'),
                     W.inventory_handler(S.sample_inventory()))
    S.configure_cyborg(str(tmp_path), endpoint=d.endpoint,
                       request_timeout=0.5, retries=0)
    yield d
    d.close()


def test_entry_point_is_listed_and_loads_like_resource_tracker():
    assert 'gpuwarden' in ExtensionManager(
        namespace='cyborg.accelerator.driver').names()
    drv = sv_driver.DriverManager(namespace='cyborg.accelerator.driver',
                                  name='gpuwarden',
                                  invoke_on_load=True).driver
    assert type(drv) is gw_driver.GPUWardenDriver
    from cyborg.accelerator.drivers.driver import GenericDriver
    assert isinstance(drv, GenericDriver)
    assert drv.update('cp', '/img') is False
    assert drv.get_stats() == {}


def test_update_usage_hands_the_list_to_the_conductor(gw_daemon,
                                                      monkeypatch):
    # No Placement in this test: the sync fails, logged, never fatal.
    monkeypatch.setattr(gw_driver.GPUWardenDriver, 'placement',
                        lambda self: W.NoPlacement())
    cond = RecordingConductorAPI()
    rt = resource_tracker.ResourceTracker('compute0', cond)
    assert [type(d) for d in rt.acc_drivers] == [gw_driver.GPUWardenDriver]
    rt.update_usage(cy_context.get_admin_context())
    [(host, prims)] = cond.calls
    assert host == 'compute0'
    want = [d.obj_to_primitive() for d in
            gw_driver.GPUWardenDriver(placement_client=W.NoPlacement())
            .discover()]
    assert prims == want
    assert len(prims) == 8
    data = prims[0]['cyborg_object.data']
    assert prims[0]['cyborg_object.name'] == 'DriverDevice'
    assert data['deployable_list'][0]['cyborg_object.data']['name'] == \
        'compute0_0000:1a:00.0'


def test_update_usage_reports_nothing_when_the_daemon_is_down(tmp_path):
    S.configure_cyborg(str(tmp_path),
                       endpoint='ipc://' + str(tmp_path / 'none.sock'),
                       request_timeout=0.2, retries=0)
    cond = RecordingConductorAPI()
    rt = resource_tracker.ResourceTracker('compute0', cond)
    with pytest.raises(errors.DaemonUnreachable):
        rt.update_usage(cy_context.get_admin_context())
    assert cond.calls == []


def test_unknown_driver_name_is_refused_by_cyborg(tmp_path):
    from cyborg.conf import CONF
    S.configure_cyborg(str(tmp_path))
    CONF.set_override('enabled_drivers', ['gpuwardn'], group='agent')
    try:
        with pytest.raises(cy_exc.InvalidDriver):
            resource_tracker.ResourceTracker('compute0',
                                             RecordingConductorAPI())
    finally:
        CONF.clear_override('enabled_drivers', group='agent')


def test_oslo_config_generator_prints_the_options():
    gen = os.path.join(os.path.dirname(sys.executable),
                       'oslo-config-generator')
    out = subprocess.run([gen, '--namespace', 'gpuwarden'], check=True,
                         capture_output=True, text=True).stdout
    assert '[gpuwarden]' in out
    for line in ('#endpoint = ipc:///run/gpuwarden/read.sock',
                 '#request_timeout = 5.0', '#retries = 2', '#host = <None>'):
        assert line in out.splitlines()


def test_options_are_registered_in_cyborgs_conf(tmp_path):
    conf = S.configure_cyborg(str(tmp_path))
    assert conf.gpuwarden.endpoint == 'ipc:///run/gpuwarden/read.sock'
    assert conf.gpuwarden.request_timeout == 5.0
    assert conf.gpuwarden.retries == 2
    assert conf.gpuwarden.host is None


def test_show_prints_every_object(gw_daemon, capsys):
    from gpuwarden_cyborg import show
    assert show.main(['--endpoint', gw_daemon.endpoint, '--retries', '0']) \
        == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'inventory generation 7: 8 DriverDevice objects'
    assert out[1:9] == [
        "DriverDevice[0] vendor=10de type=GPU model='TU104GL [Quadro RTX "
        "5000]' stub=False",
        '  controlpath_id: PCI {"bus": "1a", "device": "00", "domain": '
        '"0000", "function": "0"}',
        '  std_board_info: {"controller": "VGA compatible controller", '
        '"product_id": "1eb0"}',
        '  vendor_board_info: {"pci_address": "0000:1a:00.0"}',
        '  DriverDeployable compute0_0000:1a:00.0 num_accelerators=1 '
        'driver_name=NVIDIA',
        '    DriverAttribute rc = PGPU',
        '    DriverAttribute trait0 = OWNER_CYBORG',
        '    DriverAttribute trait1 = CUSTOM_NVIDIA_1EB0']
    assert out[11] == ('    DriverAttachHandle PCI {"bus": "1a", "device": '
                       '"00", "domain": "0000", "function": "0"} in_use=False')
    # Read-only: it asked for the inventory and nothing else.
    assert [r['op'] for r in gw_daemon.decoded_requests()] == ['inventory']


def test_show_fails_cleanly_when_the_daemon_is_down(tmp_path, capsys):
    from gpuwarden_cyborg import show
    assert show.main(['--endpoint', 'ipc://' + str(tmp_path / 'x.sock'),
                      '--retries', '0']) == 1
    assert 'DaemonUnreachable' in capsys.readouterr().err
