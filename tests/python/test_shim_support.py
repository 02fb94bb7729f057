"""Helpers for the shim's tests (no tests here): a ZeroMQ ROUTER server on a
real ipc socket that answers like gpuwardend, a real Placement service
(openstack-placement's WSGI app, sqlite, noauth2) on 127.0.0.1, and Cyborg's
global CONF pointed at both."""

import json
import os
import socket
import sys
import threading
import wsgiref.simple_server

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
VECTORS = os.path.join(TOP, 'proto', 'vectors')
sys.path.append(os.path.join(TOP, 'tests', 'bench'))
import placement_server  # noqa: E402


def pci_json(addr):
    dom, bus, rest = addr.split(':')
    dev, fn = rest.split('.')
    return json.dumps({'bus': bus, 'device': dev, 'domain': dom,
                       'function': fn}, sort_keys=True)


class FakeDaemon:
    """A ROUTER socket bound to ``ipc://<path>`` in a thread. ``handler``
    gets the raw request bytes and returns the raw reply bytes (or None to
    stay silent). Every request is recorded in ``requests``."""

    def __init__(self, path, handler):
        self.endpoint = 'ipc://' + path
        self.handler = handler
        self.requests = []
        self.frames = []
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(self.endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if not self._sock.poll(50):
                continue
            frames = self._sock.recv_multipart()
            # [routing id][empty][body], as the daemon's ROUTER sees it.
            ident, body = frames[0], frames[-1]
            self.frames.append(frames[1:])
            self.requests.append(body)
            reply = self.handler(body)
            # bytes: one reply body; a list: the raw frames of one message
            # after the routing id; a tuple: several reply bodies, in turn.
            for one in reply if isinstance(reply, tuple) else (
                    () if reply is None else (reply,)):
                self._sock.send_multipart(
                    [ident] + (one if isinstance(one, list) else [b'', one]))

    def decoded_requests(self):
        return [msgpack.unpackb(r, raw=False) for r in self.requests]

    def close(self):
        self._stop.set()
        self._thread.join()
        self._sock.close(0)
        self._ctx.term()


def reply(req_bytes, result=None, error=None, v=(1, 0), **extra):
    req = msgpack.unpackb(req_bytes, raw=False)
    msg = {'v': list(v), 'id': req['id']}
    if error is None:
        msg.update(ok=True, result=result)
    else:
        msg.update(ok=False, error={'code': error[0], 'message': error[1],
                                    'field': None})
    msg.update(extra)
    return msgpack.packb(msg, use_bin_type=True)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


class PlacementServer:
    """The real Placement API (openstack-placement) on 127.0.0.1 with a
    sqlite database in ``dbdir`` and noauth2 (token ``admin``)."""

    def __init__(self, dbdir):
        # The benchmarks' out-of-process server configures it the same way.
        self.app = placement_server.load_app(dbdir)
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self._httpd = wsgiref.simple_server.make_server(
            '127.0.0.1', self.port, self.app, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        daemon=True)
        self._thread.start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def configure_cyborg(tmpdir, placement_url=None, endpoint=None, **gw):
    """Load Cyborg's global CONF from a cyborg.conf written to ``tmpdir``
    (the way cyborg-agent reads its file), with the gpuwarden driver
    enabled."""
    from cyborg.conf import CONF
    from gpuwarden_cyborg import conf as gw_conf
    gw_conf.register_opts(CONF)
    lines = ['[DEFAULT]', 'host = compute0',
             '[agent]', 'enabled_drivers = gpuwarden', '[gpuwarden]']
    if endpoint:
        lines.append(f'endpoint = {endpoint}')
        # A fake daemon serves every op on its one endpoint; a test of the
        # real one names its admin endpoint (published, maintenance).
        gw.setdefault('admin_endpoint', endpoint)
    # Cyborg's API is served only where a test starts it (cyborg_api.py).
    gw.setdefault('follow_cyborg_disable', False)
    lines += [f'{k} = {v}' for k, v in gw.items()]
    if placement_url:
        lines += ['[placement]', 'auth_type = admin_token',
                  f'endpoint = {placement_url}', 'token = admin',
                  f'endpoint_override = {placement_url}']
    path = os.path.join(tmpdir, 'cyborg.conf')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    CONF.reset()
    CONF([], project='cyborg', default_config_files=[path])
    return CONF


# An inventory shaped like the daemon's (PROTOCOL.md §8 inventory) for the
# 8 x Quadro RTX 5000 host (tests/fixtures/hosts/sm4029-8xrtx5000): two
# PEX9797 switches of four GPUs each (cliques 0 and 1), NUMA node 0.
SM4029_GPUS = ['0000:1a:00.0', '0000:1c:00.0', '0000:1d:00.0', '0000:1e:00.0',
               '0000:3d:00.0', '0000:3f:00.0', '0000:40:00.0', '0000:41:00.0']
BOARD = '{"controller": "VGA compatible controller", "product_id": "1eb0"}'


def sample_device(first):
    return {'vendor': '10de', 'model': 'TU104GL [Quadro RTX 5000]',
            'type': 'GPU', 'std_board_info': BOARD,
            'controlpath': {'type': 'PCI', 'info': pci_json(first)}}


def sample_inventory(model='per_gpu', host='compute0', generation=7,
                     dirty=()):
    """``dirty``: addresses neither allocatable nor attached (reserved,
    no attach handle)."""
    def dep(name, members, clique):
        return {'name': name, 'rc': 'PGPU',
                'num_accelerators': len(members),
                'reserved': sum(a in dirty for a in members),
                'traits': ['OWNER_CYBORG', 'CUSTOM_NVIDIA_1EB0',
                           f'CUSTOM_GPU_CLIQUE_{clique}',
                           'CUSTOM_NUMA_NODE_0'],
                'attach_handles': [{'type': 'PCI', 'info': pci_json(a)}
                                   for a in members if a not in dirty],
                'gpus': list(members),
                'driver_name': 'NVIDIA',
                'device': sample_device(members[0])}
    if model == 'per_gpu':
        deps = [dep(f'{host}_{a}', [a], i // 4)
                for i, a in enumerate(SM4029_GPUS)]
    else:
        deps = [dep(f'{host}_clique{c}', SM4029_GPUS[4 * c:4 * c + 4], c)
                for c in (0, 1)]
    return {'generation': generation, 'host': host, 'model': model,
            'deployables': deps}


def vector(name):
    """A golden vector's bytes and its decoded value."""
    with open(os.path.join(VECTORS, name + '.msgpack'), 'rb') as f:
        data = f.read()
    return data, msgpack.unpackb(data, raw=False)
