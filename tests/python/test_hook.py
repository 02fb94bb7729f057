"""`gpuwarden hook qemu NAME OP SUBOP`: the libvirt qemu hook, run as libvirt
runs it (domain XML on stdin), against a ZeroMQ ROUTER on a real ipc socket
that answers like gpuwardend (the gate decision itself is the daemon's and is
tested with the daemon)."""

import os
import subprocess
import time

import msgpack
import pytest

from test_shim_support import FakeDaemon, reply

BUILD = os.environ.get('GW_BUILD_DIR') or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'build')
CLI = os.path.join(BUILD, 'gpuwarden')


def hostdev(addr, guest=None):
    dom, bus, rest = addr.split(':')
    slot, fn = rest.split('.')
    g = ''
    if guest:
        gd, gb, gr = guest.split(':')
        gs, gf = gr.split('.')
        g = (f"<address type='pci' domain='0x{gd}' bus='0x{gb}' slot='0x{gs}' "
             f"function='0x{gf}'/>")
    return (f"<hostdev mode='subsystem' type='pci' managed='yes'><source>"
            f"<address domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/>"
            f"</source>{g}</hostdev>")


def domain(name, *devs):
    return (f"<domain type='kvm'><name>{name}</name><memory>1048576</memory>"
            f"<os><type>hvm</type></os><devices>{''.join(devs)}</devices></domain>")


@pytest.fixture
def host(tmp_path):
    """A sysfs tree with just the class files the hook reads when the daemon
    is down: GPU 1a:00.0 + HDA 1a:00.1, GPU 67:00.0, a NIC at 3b:00.0."""
    root = tmp_path / 'host'
    for addr, cls in (('0000:1a:00.0', '0x030000'), ('0000:1a:00.1', '0x040300'),
                      ('0000:67:00.0', '0x030200'), ('0000:3b:00.0', '0x020000')):
        d = root / 'sys' / 'bus' / 'pci' / 'devices' / addr
        d.mkdir(parents=True)
        (d / 'class').write_text(cls + '\n')
    return str(root)


class Gate:
    """A fake daemon whose answers a test sets per op."""

    def __init__(self, path):
        self.answers = {}
        self.daemon = FakeDaemon(path, self._answer)

    def _answer(self, body):
        req = msgpack.unpackb(body, raw=False)
        a = self.answers.get(req['op'])
        if a is None:
            return None                     # silent: the client times out
        if isinstance(a, tuple):
            return reply(body, error=a)
        return reply(body, result=a)

    def requests(self):
        return self.daemon.decoded_requests()


@pytest.fixture
def gate(tmp_path):
    g = Gate(str(tmp_path / 'admin.sock'))
    yield g
    g.daemon.close()


def run_hook(args, xml='', endpoint=None, env=None, host_root=None, publish_wait=None):
    e = dict(os.environ)
    e.pop('GPUWARDEN_ENDPOINT', None)
    e.pop('GPUWARDEN_HOOK_ON_DAEMON_DOWN', None)
    e.pop('GPUWARDEN_HOOK_PUBLISH_WAIT', None)
    e.update(env or {})
    opts = ['--timeout-ms', '1000']
    if publish_wait is not None:
        opts += ['--publish-wait', str(publish_wait)]
    if endpoint:
        opts += ['--endpoint', endpoint]
    if host_root:
        opts += ['--host-root', host_root]
    t0 = time.monotonic()
    p = subprocess.run([CLI, 'hook'] + opts + ['qemu'] + args, input=xml.encode(),
                       capture_output=True, env=e, timeout=30)
    return p.returncode, p.stderr.decode(), time.monotonic() - t0


GPU_VM = domain('vm1', hostdev('0000:67:00.0'), hostdev('0000:1a:00.0'), hostdev('0000:1a:00.1'))


def test_prepare_allowed_asks_gate_with_source_addresses(gate):
    gate.answers['gate'] = {'allowed': True, 'reasons': []}
    rc, err, _ = run_hook(['vm1', 'prepare', 'begin', '-'], GPU_VM, gate.daemon.endpoint)
    assert (rc, err) == (0, '')
    [req] = gate.requests()
    assert req['v'] == [1, 0]
    assert req['op'] == 'gate'
    assert req['args'] == {'domain': 'vm1',
                           'addresses': ['0000:1a:00.0', '0000:1a:00.1', '0000:67:00.0']}


def test_prepare_refused_names_each_gpu_and_why(gate):
    gate.answers['gate'] = {'allowed': False, 'reasons': [
        {'address': '0000:1a:00.0', 'reason': 'dirty: clean-up running'},
        {'address': '0000:67:00.0', 'reason': "attached to domain 'vm-2'"}]}
    rc, err, _ = run_hook(['vm1', 'prepare', 'begin', '-'], GPU_VM, gate.daemon.endpoint)
    assert rc == 1
    assert err == ("gpuwarden: refusing to start domain 'vm1': 0000:1a:00.0 dirty: clean-up "
                   "running; 0000:67:00.0 attached to domain 'vm-2'\n")


def test_guest_address_is_not_sent(gate):
    # The guest sees the NIC at 0000:67:00.0, a GPU's host address: only the
    # source address goes to the daemon.
    gate.answers['gate'] = {'allowed': True, 'reasons': []}
    xml = domain('vm1', hostdev('0000:3b:00.0', guest='0000:67:00.0'))
    rc, _, _ = run_hook(['vm1', 'prepare', 'begin', '-'], xml, gate.daemon.endpoint)
    assert rc == 0
    assert gate.requests()[0]['args']['addresses'] == ['0000:3b:00.0']


def test_no_pci_hostdev_starts_without_asking(gate):
    rc, err, _ = run_hook(['vm1', 'prepare', 'begin', '-'], domain('vm1'), gate.daemon.endpoint)
    assert (rc, err) == (0, '')
    assert gate.requests() == []


def test_daemon_error_reply_refuses(gate):
    gate.answers['gate'] = ('invalid_argument', 'args.addresses[0]: not managed')
    rc, err, _ = run_hook(['vm1', 'prepare', 'begin', '-'], GPU_VM, gate.daemon.endpoint)
    assert rc == 1
    assert "refusing to start domain 'vm1'" in err
    assert 'args.addresses[0]: not managed' in err


def test_unreadable_xml_refuses(gate):
    rc, err, _ = run_hook(['vm1', 'prepare', 'begin', '-'], '<domain><name>vm1',
                          gate.daemon.endpoint)
    assert rc == 1
    assert "domain 'vm1': cannot read its XML" in err
    assert gate.requests() == []


@pytest.mark.parametrize('how', ['no socket', 'silent', 'unavailable'])
def test_daemon_down_refuses_by_default(tmp_path, gate, host, how):
    endpoint = 'ipc://' + str(tmp_path / 'nobody.sock')
    if how == 'silent':
        endpoint = gate.daemon.endpoint         # no answer set: it never replies
    elif how == 'unavailable':
        endpoint = gate.daemon.endpoint
        gate.answers['gate'] = ('unavailable', 'starting up')
    rc, err, took = run_hook(['vm1', 'prepare', 'begin', '-'], GPU_VM, endpoint, host_root=host)
    assert rc == 1
    assert err.startswith("gpuwarden: refusing to start domain 'vm1': the gpuwarden daemon "
                          "cannot be asked whether GPU 0000:1a:00.0 is clean")
    assert 'GPUWARDEN_HOOK_ON_DAEMON_DOWN=allow' in err
    assert took < 10        # bounded by the 1 s timeout, not hanging libvirt


def test_daemon_down_policy_allow(tmp_path, host):
    endpoint = 'ipc://' + str(tmp_path / 'nobody.sock')
    rc, err, _ = run_hook(['vm1', 'prepare', 'begin', '-'], GPU_VM, endpoint,
                          env={'GPUWARDEN_HOOK_ON_DAEMON_DOWN': 'allow'}, host_root=host)
    assert rc == 0
    assert "warning: domain 'vm1' starts with GPU 0000:1a:00.0 unchecked" in err


def test_daemon_down_does_not_block_a_vm_without_gpu(tmp_path, host):
    endpoint = 'ipc://' + str(tmp_path / 'nobody.sock')
    rc, err, _ = run_hook(['vm1', 'prepare', 'begin', '-'],
                          domain('vm1', hostdev('0000:3b:00.0')), endpoint, host_root=host)
    assert (rc, err) == (0, '')


def test_hda_function_alone_counts_as_gpu_when_daemon_down(tmp_path, host):
    endpoint = 'ipc://' + str(tmp_path / 'nobody.sock')
    rc, err, _ = run_hook(['vm1', 'prepare', 'begin', '-'],
                          domain('vm1', hostdev('0000:1a:00.1')), endpoint, host_root=host)
    assert rc == 1
    assert 'GPU 0000:1a:00.1' in err


def test_release_end_sends_released(gate):
    gate.answers['released'] = {'devices': ['0000:1a:00.0', '0000:67:00.0']}
    rc, err, _ = run_hook(['vm1', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint)
    assert (rc, err) == (0, '')
    [req] = gate.requests()
    assert req['op'] == 'released'
    assert req['args'] == {'domain': 'vm1',
                           'addresses': ['0000:1a:00.0', '0000:1a:00.1', '0000:67:00.0']}



def test_release_end_of_a_start_refused_sends_nothing(gate, tmp_path):
    """libvirt runs `release end` also for a start the hook refused (seen
    with libvirt 9.0 in the kernel lab): QEMU never ran, and a `released`
    hint would make the daemon count the refused domain as having held the
    GPU, voiding its running clean-up. The refusal's mark, next to the
    daemon's socket, is taken instead; once a start is let through, release
    end sends the hint again."""
    gate.answers['gate'] = {'allowed': False, 'reasons': [
        {'address': '0000:1a:00.0', 'reason': 'dirty: clean-up running'}]}
    gate.answers['released'] = {'devices': ['0000:1a:00.0', '0000:67:00.0']}
    assert run_hook(['vm1', 'prepare', 'begin', '-'], GPU_VM, gate.daemon.endpoint)[0] == 1
    assert (tmp_path / 'hook-refused.vm1').exists()
    rc, err, _ = run_hook(['vm1', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint)
    assert (rc, err) == (0, '')
    assert [r['op'] for r in gate.requests()] == ['gate']
    assert not (tmp_path / 'hook-refused.vm1').exists()
    # Another domain's refusal says nothing about vm1.
    assert run_hook(['vm2', 'prepare', 'begin', '-'], GPU_VM, gate.daemon.endpoint)[0] == 1
    gate.answers['gate'] = {'allowed': True, 'reasons': []}
    assert run_hook(['vm1', 'prepare', 'begin', '-'], GPU_VM, gate.daemon.endpoint)[0] == 0
    assert run_hook(['vm1', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint)[0] == 0
    assert [r['op'] for r in gate.requests()] == ['gate', 'gate', 'gate', 'released']
    # A refusal, then a start let through: the release is a real one.
    gate.answers['gate'] = {'allowed': False, 'reasons': []}
    assert run_hook(['vm3', 'prepare', 'begin', '-'], GPU_VM, gate.daemon.endpoint)[0] == 1
    gate.answers['gate'] = {'allowed': True, 'reasons': []}
    assert run_hook(['vm3', 'prepare', 'begin', '-'], GPU_VM, gate.daemon.endpoint)[0] == 0
    assert run_hook(['vm3', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint)[0] == 0
    assert [r['op'] for r in gate.requests()][-1] == 'released'


# ---- release end: waiting until Placement shows the release (metrics.published_revision)

def metrics(published, revision):
    return {'uptime_ms': 1000, 'devices': {}, 'requests': {}, 'errors': {}, 'generation': 77,
            'published': published, 'published_revision': revision}


def test_release_end_waits_for_nothing_when_the_revision_is_published(gate):
    gate.answers['released'] = {'devices': ['0000:1a:00.0'], 'generation': 77, 'revision': 5}
    gate.answers['metrics'] = metrics(77, 5)
    rc, err, took = run_hook(['vm1', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint)
    assert (rc, err) == (0, '')
    assert [r['op'] for r in gate.requests()] == ['released', 'metrics']
    assert took < 5


def test_release_end_without_a_placement_writer_does_not_wait(gate):
    gate.answers['released'] = {'devices': ['0000:1a:00.0'], 'generation': 77, 'revision': 5}
    gate.answers['metrics'] = metrics(0, 0)        # nothing published since the daemon started
    rc, err, took = run_hook(['vm1', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint)
    assert (rc, err) == (0, '')
    assert [r['op'] for r in gate.requests()] == ['released', 'metrics']
    assert took < 5


@pytest.mark.parametrize('answer', [
    {'devices': ['0000:1a:00.0']},                                   # a daemon without `revision`
    {'devices': [], 'generation': 77, 'revision': 5},                # no managed GPU among them
    {'devices': ['0000:1a:00.0'], 'generation': 0, 'revision': 0},   # no inventory to publish
])
def test_release_end_without_a_revision_to_wait_for_asks_nothing_more(gate, answer):
    gate.answers['released'] = answer
    rc, err, _ = run_hook(['vm1', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint)
    assert (rc, err) == (0, '')
    assert [r['op'] for r in gate.requests()] == ['released']


def test_release_end_wait_times_out_with_a_message_and_exits_0(gate):
    gate.answers['released'] = {'devices': ['0000:1a:00.0', '0000:67:00.0'], 'generation': 77,
                                'revision': 5}
    gate.answers['metrics'] = metrics(76, 4)
    rc, err, took = run_hook(['vm1', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint,
                             publish_wait=0.4)
    assert rc == 0
    assert 0.4 <= took < 5
    assert err == ("gpuwarden: warning: domain 'vm1': Placement does not show GPU 0000:1a:00.0 (and 1 "
                   "more) reserved after 0.4 s (inventory revision 5 of the release, "
                   "published up to 4): Placement may offer it for up to one Cyborg agent cycle; a VM "
                   "placed on it then is refused by this hook until its clean-up has passed\n")
    ops = [r['op'] for r in gate.requests()]
    assert ops[0] == 'released' and set(ops[1:]) == {'metrics'} and len(ops) >= 4   # polled


def test_release_end_publish_wait_0_disables_the_wait(gate):
    gate.answers['released'] = {'devices': ['0000:1a:00.0'], 'generation': 77, 'revision': 5}
    gate.answers['metrics'] = metrics(76, 4)
    rc, err, _ = run_hook(['vm1', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint,
                          env={'GPUWARDEN_HOOK_PUBLISH_WAIT': '0'})
    assert (rc, err) == (0, '')
    assert [r['op'] for r in gate.requests()] == ['released']


def test_release_end_metrics_unanswered_is_a_warning(gate):
    gate.answers['released'] = {'devices': ['0000:1a:00.0'], 'generation': 77, 'revision': 5}
    rc, err, _ = run_hook(['vm1', 'release', 'end', '-'], GPU_VM, gate.daemon.endpoint,
                          publish_wait=0.5)
    assert rc == 0
    assert err.startswith("gpuwarden: warning: domain 'vm1': cannot ask the daemon whether Placement "
                          "shows GPU 0000:1a:00.0 reserved")


def test_started_begin_sends_attached_and_never_fails(gate):
    gate.answers['attached'] = ('conflict', "0000:1a:00.0 is attached to domain 'vm-2'")
    rc, err, _ = run_hook(['vm1', 'started', 'begin', '-'], GPU_VM, gate.daemon.endpoint)
    assert rc == 0
    assert "warning: domain 'vm1': `attached` hint not delivered" in err
    assert gate.requests()[0]['op'] == 'attached'


def test_release_with_daemon_down_still_exits_0(tmp_path):
    rc, err, _ = run_hook(['vm1', 'release', 'end', '-'], GPU_VM,
                          'ipc://' + str(tmp_path / 'nobody.sock'))
    assert rc == 0
    assert '`released` hint not delivered' in err


@pytest.mark.parametrize('op', [['start', 'begin', '-'], ['stopped', 'end', '-'],
                                ['prepare', 'end', '-'], ['release', 'begin', '-'],
                                ['migrate', 'begin', '-'], ['restore', 'begin', '-'],
                                ['reconnect', 'begin', '-'], ['attach', 'begin', '-']])
def test_other_ops_exit_0_without_asking(gate, op):
    rc, err, took = run_hook(['vm1'] + op, GPU_VM, gate.daemon.endpoint)
    assert (rc, err) == (0, '')
    assert gate.requests() == []


def test_many_hostdevs_are_batched(gate):
    # 65 functions: more than the protocol's 64 addresses per request.
    addrs = [f'0000:{b:02x}:00.{f}' for b in range(0x20, 0x29) for f in range(8)][:65]
    gate.answers['gate'] = {'allowed': True, 'reasons': []}
    rc, _, _ = run_hook(['vm1', 'prepare', 'begin', '-'],
                        domain('vm1', *(hostdev(a) for a in addrs)), gate.daemon.endpoint)
    assert rc == 0
    reqs = gate.requests()
    assert [len(r['args']['addresses']) for r in reqs] == [64, 1]
    assert reqs[0]['args']['addresses'] + reqs[1]['args']['addresses'] == sorted(addrs)


@pytest.mark.parametrize('args', [[], ['vm1', 'prepare'], ['vm1', 'prepare', 'begin', '-', 'x']])
def test_usage_errors_exit_2(args):
    p = subprocess.run([CLI, 'hook', 'qemu'] + args, capture_output=True, input=b'')
    assert p.returncode == 2
    p = subprocess.run([CLI, 'hook', 'lxc', 'vm1', 'prepare', 'begin', '-'],
                       capture_output=True, input=b'')
    assert p.returncode == 2


@pytest.mark.parametrize('value', ['x', '-1', '601', 'nan', '', '1e9'])
def test_bad_publish_wait_exits_2(value):
    p = subprocess.run([CLI, 'hook', '--publish-wait', value, 'qemu', 'vm1', 'release', 'end', '-'],
                       capture_output=True, input=b'')
    assert p.returncode == 2
    assert f"--publish-wait '{value}': expected seconds, 0..600" in p.stderr.decode()
    p = subprocess.run([CLI, 'hook', 'qemu', 'vm1', 'release', 'end', '-'], capture_output=True,
                       input=b'', env=dict(os.environ, GPUWARDEN_HOOK_PUBLISH_WAIT=value))
    assert p.returncode == 2
    assert 'GPUWARDEN_HOOK_PUBLISH_WAIT' in p.stderr.decode()


def test_bad_policy_exits_2():
    p = subprocess.run([CLI, 'hook', 'qemu', 'vm1', 'prepare', 'begin', '-'], input=b'',
                       capture_output=True,
                       env=dict(os.environ, GPUWARDEN_HOOK_ON_DAEMON_DOWN='maybe'))
    assert p.returncode == 2
    assert 'expected refuse or allow' in p.stderr.decode()
