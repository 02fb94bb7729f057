"""discover() over a real ZeroMQ ipc socket: a ROUTER server that answers
like gpuwardend, or wrongly, or not at all."""

import os

import msgpack
import pytest

from gpuwarden_cyborg import driver as gw_driver
from gpuwarden_cyborg import errors

import test_shim_support as S


class NoPlacement:
    """Placement that is down: every call fails (never fatal to discover)."""

    def get(self, *a, **kw):
        raise ConnectionError('placement is down')

    put = get


@pytest.fixture
def daemon(tmp_path):
    started = []

    def start(handler, **gw):
        d = S.FakeDaemon(str(tmp_path / 'read.sock'), handler)
        started.append(d)
        S.configure_cyborg(str(tmp_path), endpoint=d.endpoint,
                           request_timeout=gw.pop('request_timeout', 0.5),
                           **gw)
        return d
    yield start
    for d in started:
        d.close()


def drv():
    return gw_driver.GPUWardenDriver(placement_client=NoPlacement())


def inventory_handler(inv):
    def handle(req):
        op = msgpack.unpackb(req, raw=False)['op']
        if op == 'inventory':
            return S.reply(req, inv)
        return S.reply(req, {})
    return handle


def test_discover_returns_the_daemons_inventory(daemon):
    d = daemon(inventory_handler(S.sample_inventory()))
    devs = drv().discover()
    assert [dv.controlpath_id.cpid_info for dv in devs] == \
        [S.pci_json(a) for a in S.SM4029_GPUS]
    assert [dv.deployable_list[0].name for dv in devs] == \
        [f'compute0_{a}' for a in S.SM4029_GPUS]
    # One request, exactly as the spec's envelope; Placement is down, so
    # the generation is not marked published.
    [req] = d.decoded_requests()
    assert req == {'v': [1, 0], 'id': req['id'], 'op': 'inventory',
                   'args': {}}
    assert isinstance(req['id'], int)
    # DEALER framing: [empty][body] after the routing id.
    assert d.frames == [[b'', d.requests[0]]]


def test_daemon_down_raises(tmp_path):
    S.configure_cyborg(str(tmp_path),
                       endpoint='ipc://' + str(tmp_path / 'nobody.sock'),
                       request_timeout=0.2, retries=1)
    with pytest.raises(errors.DaemonUnreachable, match='does not exist'):
        drv().discover()


def test_daemon_stopped_after_a_good_cycle_raises(daemon):
    d = daemon(inventory_handler(S.sample_inventory()), retries=0)
    driver = drv()
    assert len(driver.discover()) == 8
    d.close()
    os.unlink(d.endpoint[len('ipc://'):])
    with pytest.raises(errors.DaemonUnreachable):
        driver.discover()


def test_stale_socket_file_of_a_dead_daemon_raises(tmp_path):
    import socket
    path = str(tmp_path / 'read.sock')
    with socket.socket(socket.AF_UNIX) as s:     # bound, never listening
        s.bind(path)
    S.configure_cyborg(str(tmp_path), endpoint='ipc://' + path,
                       request_timeout=0.2, retries=1)
    with pytest.raises(errors.DaemonUnreachable, match='cannot connect'):
        drv().discover()


def test_silent_daemon_times_out_after_retries(daemon):
    d = daemon(lambda req: None, request_timeout=0.2, retries=2)
    with pytest.raises(errors.DaemonTimeout, match='did not answer'):
        drv().discover()
    # Three attempts, three distinct ids, each on a fresh socket.
    ids = [r['id'] for r in d.decoded_requests()]
    assert len(ids) == 3 and len(set(ids)) == 3


@pytest.mark.parametrize('garbage', [
    b'', b'\xc1', b'not msgpack at all', b'\x92\x01',
    msgpack.packb([1, 2, 3]), msgpack.packb({'v': 1}) + b'\x00',
    msgpack.packb({1: 2}),
])
def test_garbage_reply_raises(daemon, garbage):
    daemon(lambda req: garbage, retries=2)
    with pytest.raises(errors.ProtocolError):
        drv().discover()


@pytest.mark.parametrize('mangle,exc,message', [
    (dict(v=[99, 0]), errors.UnsupportedVersion, 'protocol 99.0'),
    (dict(v=[2, 1]), errors.UnsupportedVersion, 'protocol 2.1'),
    (dict(v=1), errors.ProtocolError, "'v' is 1, expected"),
    (dict(v=[1]), errors.ProtocolError, "'v' is \\[1\\], expected"),
    (dict(v='1.0'), errors.ProtocolError, "'v' is '1.0'"),
    (dict(id=-5), errors.ProtocolError, "reply 'id' is -5"),
    (dict(id='1'), errors.ProtocolError, "reply 'id' is '1'"),
    (dict(ok=1), errors.ProtocolError, "'ok' is 1"),
    (dict(ok=False), errors.ProtocolError, 'without an error'),
])
def test_bad_envelope_raises(daemon, mangle, exc, message):
    def handle(req):
        m = msgpack.unpackb(S.reply(req, S.sample_inventory()), raw=False)
        m.update(mangle)
        return msgpack.packb(m)
    daemon(handle)
    with pytest.raises(exc, match=message):
        drv().discover()


def test_a_minor_version_above_ours_is_accepted(daemon):
    daemon(lambda req: S.reply(req, S.sample_inventory(), v=(1, 7),
                               future_key='x'))
    assert len(drv().discover()) == 8


@pytest.mark.parametrize('frames', [
    [b'no delimiter'], [b'', b'a', b'b'], [b'x', b'body']])
def test_wrong_frames_raise(daemon, frames):
    daemon(lambda req: frames)
    with pytest.raises(errors.ProtocolError, match='expected \\[empty\\]'):
        drv().discover()


def test_late_reply_with_another_id_is_dropped(daemon):
    def handle(req):
        good = msgpack.unpackb(S.reply(req, S.sample_inventory()), raw=False)
        late = dict(good, id=good['id'] + 1000, result={'bogus': True})
        return (msgpack.packb(late), msgpack.packb(good))
    daemon(handle)
    assert len(drv().discover()) == 8


def test_error_reply_raises_with_its_code(daemon):
    daemon(lambda req: S.reply(req, error=('internal', 'inventory failed')))
    with pytest.raises(errors.DaemonError) as exc:
        drv().discover()
    assert exc.value.code == 'internal'
    assert exc.value.message == 'inventory failed'
    assert exc.value.op == 'inventory'


def test_nil_id_error_is_the_answer(daemon):
    data, _ = S.vector('err_malformed')
    daemon(lambda req: data)
    with pytest.raises(errors.DaemonError) as exc:
        drv().discover()
    assert exc.value.code == 'malformed'
    assert exc.value.message == \
        'not msgpack: byte 0xc1 at offset 0 is not a valid type'


def test_unknown_error_code_counts_as_internal(daemon):
    daemon(lambda req: S.reply(req, error=('on_fire', 'smoke')))
    with pytest.raises(errors.DaemonError) as exc:
        drv().discover()
    assert (exc.value.code, exc.value.message) == ('internal',
                                                   'on_fire: smoke')


def test_unsupported_version_error_raises(daemon):
    daemon(lambda req: S.reply(req, error=('unsupported_version', 'v1 only')))
    with pytest.raises(errors.UnsupportedVersion, match='v1 only'):
        drv().discover()


def test_invalid_inventory_raises_not_partial(daemon):
    inv = S.sample_inventory()
    inv['deployables'][5]['reserved'] = 9
    daemon(inventory_handler(inv))
    with pytest.raises(errors.InventoryError, match='reserved 9'):
        drv().discover()


def test_every_error_is_a_gpuwarden_error():
    for cls in (errors.DaemonUnreachable, errors.DaemonTimeout,
                errors.ProtocolError, errors.UnsupportedVersion,
                errors.InventoryError):
        assert issubclass(cls, errors.GPUWardenError)
    assert issubclass(errors.DaemonError, errors.GPUWardenError)
