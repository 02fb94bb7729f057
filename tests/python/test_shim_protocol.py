"""The shim's protocol code against the golden vectors (proto/vectors/)."""

import glob
import json
import os

import msgpack
import pytest

from gpuwarden_cyborg import errors
from gpuwarden_cyborg import protocol

import test_shim_support as S


def twin(name):
    with open(os.path.join(S.VECTORS, name + '.json')) as f:
        return json.load(f)


@pytest.mark.parametrize('name,req_id,op,args', [
    ('req_inventory', 3, 'inventory', {}),
    ('req_published', 4, 'published', {'generation': 42}),
])
def test_requests_are_the_golden_bytes(name, req_id, op, args):
    data, _ = S.vector(name)
    assert protocol.encode_request(req_id, op, args) == data


def test_published_reply():
    data, _ = S.vector('rep_published')
    assert protocol.decode_reply(data, 4, 'published') == {
        'generation': 43, 'promoted': ['0000:3c:00.0']}


@pytest.mark.parametrize('name', ['rep_inventory', 'rep_inventory_per_clique'])
def test_inventory_replies_decode_and_reencode(name):
    data, value = S.vector(name)
    result = protocol.decode_reply(data, 3, 'inventory')
    assert result == value['result']
    assert protocol.pack(value) == data


ERRORS = sorted(os.path.basename(p)[:-5] for p in
                glob.glob(os.path.join(S.VECTORS, 'err_*.json')))


def test_every_error_code_has_a_vector():
    assert {twin(n)['value']['error']['code'] for n in ERRORS} == \
        set(protocol.ERROR_CODES)


@pytest.mark.parametrize('name', ERRORS)
def test_error_vectors_raise_their_code(name):
    data, value = S.vector(name)
    err = value['error']
    req_id = value['id'] if value['id'] is not None else 12345
    if err['code'] == 'unsupported_version':
        with pytest.raises(errors.UnsupportedVersion,
                           match='refused protocol 1.0'):
            protocol.decode_reply(data, req_id, 'x')
        return
    with pytest.raises(errors.DaemonError) as exc:
        protocol.decode_reply(data, req_id, 'x')
    assert (exc.value.code, exc.value.message, exc.value.field) == \
        (err['code'], err['message'], err['field'])


def test_reply_with_another_id_is_refused_by_decode_reply():
    data, _ = S.vector('rep_published')
    with pytest.raises(errors.ProtocolError, match='carries id 4, expected 5'):
        protocol.decode_reply(data, 5, 'published')


@pytest.mark.parametrize('data,message', [
    (b'', 'not a valid msgpack'),
    (b'\xc1', 'not a valid msgpack'),
    (msgpack.packb({'v': [1, 0]}) + b'\x00', 'not a valid msgpack'),
    (msgpack.packb({1: 2}), 'not a valid msgpack'),
    (msgpack.packb(msgpack.ExtType(1, b'x')), 'not a valid msgpack'),
    (b'\xdd\xff\xff\xff\xff', 'not a valid msgpack'),           # array 2^32-1
    (b'\xde\x01\x01' + b'\xa1a\x00' * 257, 'not a valid msgpack'),  # map 257
    (msgpack.packb([[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]), 'deeper than 16'),
    (msgpack.packb([1, 2]), 'not a map'),
    (msgpack.packb({'v': [1, 0], 'ok': True, 'result': 1}), "no 'id'"),
    (b'\x00' * (8 * 1024 * 1024 + 1), 'exceeds'),
])
def test_reply_limits_and_shapes(data, message):
    with pytest.raises(errors.ProtocolError, match=message):
        protocol.decode_reply(data, 1, 'inventory')


def test_fake_daemon_answers_from_vectors(tmp_path):
    """The in-test ROUTER answers with the golden inventory reply (its id
    replaced by the request's), and discover() builds from it."""
    from gpuwarden_cyborg import driver as gw_driver
    import test_shim_wire as W
    _, value = S.vector('rep_inventory')
    _, pub = S.vector('rep_published')

    def handle(req):
        r = msgpack.unpackb(req, raw=False)
        v = dict(value if r['op'] == 'inventory' else pub, id=r['id'])
        return protocol.pack(v)
    d = S.FakeDaemon(str(tmp_path / 'read.sock'), handle)
    try:
        S.configure_cyborg(str(tmp_path), endpoint=d.endpoint,
                           request_timeout=1, retries=0)
        devs = gw_driver.GPUWardenDriver(
            placement_client=W.NoPlacement()).discover()
        assert [x.deployable_list[0].name for x in devs] == [
            'compute-1_0000:3b:00.0', 'compute-1_0000:3c:00.0',
            'compute-1_0000:86:00.0']
    finally:
        d.close()
