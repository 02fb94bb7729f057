"""Helpers for the Nova-side tests (no tests here).

Nova's own code (the ``nova`` package from PyPI, installed by
scripts/bootstrap) runs in a child process, :class:`NovaProcess`: Nova and
Cyborg both register their options on oslo.config's global CONF, and some
collide (``[DEFAULT] host``, ``[DEFAULT] num_retries``: DuplicateOptError),
so the two cannot be imported into one interpreter, and the rest of the
suite imports Cyborg. The child is nova-compute's resource tracker and PCI
tracker, nova-scheduler's request building and Placement calls, and the
libvirt driver's hostdev XML, each Nova's real code; what it stands in for
is said at each operation below. Nothing here imports nova in the test
process itself.

The child speaks JSON lines on stdin/stdout: ``{"op": ..., "args": {...}}``
-> ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ...,
"traceback": ...}``. Its log (Nova's own logging) goes to a file.
"""

import json
import os
import pathlib
import subprocess
import sys
import threading

ROOT = pathlib.Path(__file__).resolve().parents[2]
HOSTS = ROOT / 'tests' / 'fixtures' / 'hosts'


def build_dir():
    d = os.environ.get('GW_BUILD_DIR')
    if not d:
        raise RuntimeError('GW_BUILD_DIR is not set: run the suite through '
                           'scripts/test')
    return pathlib.Path(d)


def cli(*args, check=True, timeout=60):
    p = subprocess.run([str(build_dir() / 'gpuwarden'), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f'gpuwarden {" ".join(map(str, args))}: '
                             f'{p.returncode}\n{p.stderr}')
    return p


def nova_config(tree, *args):
    """``gpuwarden nova-config -f json`` on a test host tree."""
    return json.loads(cli('nova-config', '--host-root', tree, '-f', 'json',
                          *args).stdout)


def nova_config_conf(tree, *args):
    """The oslo.config form: ({section: {key: [values]}}, text)."""
    text = cli('nova-config', '--host-root', tree, *args).stdout
    return parse_conf(text), text


def parse_conf(text):
    """The ini text as oslo.config reads it: MultiStrOpt values collected
    in order (oslo.config's own parser, in the test process)."""
    from oslo_config import iniparser

    class P(iniparser.BaseParser):
        def __init__(self):
            super().__init__()
            self.sections = {}
            self.cur = None

        def new_section(self, section):
            self.cur = self.sections.setdefault(section, {})

        def assignment(self, key, value):
            self.cur.setdefault(key, []).extend(value)

        def parse_exc(self, msg, lineno, line=None):
            return ValueError(f'{msg} at line {lineno}: {line}')

    p = P()
    p.parse(text.splitlines(True))
    return p.sections


def hypervisor_devices(tree):
    """The GPUs of a host tree as nova-compute's libvirt driver reports them
    to the PCI tracker (nova/virt/libvirt/host.py ``_get_pcidev_info``:
    dev_id, address, product_id, vendor_id, numa_node, label, dev_type),
    from the same sysfs facts libvirt's node-device driver reads."""
    scan = json.loads(cli('discover', '--host-root', tree, '--json',
                          check=False).stdout)
    devs = []
    for g in scan['gpus']:
        a = g['address']
        devs.append({
            'dev_id': 'pci_' + a.replace(':', '_').replace('.', '_'),
            'address': a,
            'product_id': g['device_id'],
            'vendor_id': g['vendor_id'],
            'numa_node': g['numa_node'] if g['numa_node'] >= 0 else None,
            'label': f"label_{g['vendor_id']}_{g['device_id']}",
            'dev_type': 'type-PCI',
        })
    return devs


class NovaError(Exception):
    pass


class NovaProcess:
    """Nova's code in a child process (see the module's docstring)."""

    def __init__(self, log_path):
        import importlib.util
        if importlib.util.find_spec('nova') is None:
            raise RuntimeError(f'nova is not installed in {sys.prefix}: run '
                               'scripts/bootstrap (scripts/requirements.txt)')
        self.log_path = str(log_path)
        self._log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(
            [sys.executable, __file__, '--child'], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1)
        self.lock = threading.Lock()

    def call(self, op, **args):
        with self.lock:
            self.proc.stdin.write(json.dumps({'op': op, 'args': args}) + '\n')
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise NovaError(f'nova child died ({self.proc.poll()}):\n'
                            + pathlib.Path(self.log_path).read_text()[-4000:])
        rep = json.loads(line)
        if not rep['ok']:
            raise NovaError(f"{op}: {rep['error']}\n{rep['traceback']}")
        return rep['result']

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class PlacementAPI:
    """Placement over HTTP, as any client sees it (noauth2: token admin)."""

    def __init__(self, url):
        import requests
        self.url = url
        self.http = requests.Session()
        self.http.headers.update({'X-Auth-Token': 'admin',
                                  'Accept': 'application/json'})

    def call(self, method, path, version, body=None):
        return self.http.request(
            method, self.url + path, json=body,
            headers={'OpenStack-API-Version': f'placement {version}'})

    def ok(self, method, path, version, body=None, status=200):
        r = self.call(method, path, version, body)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json() if r.content else None


def reconciler_conf(tmp, placement_url, daemon, hostname, **opts):
    """A nova-reconciler.conf for the test's daemon and Placement (keystone
    auth plugin admin_token, as Placement runs noauth2)."""
    lines = ['[gpuwarden]', f'endpoint = {daemon.read}',
             f'admin_endpoint = {daemon.admin}',
             f'events_endpoint = {daemon.events}', 'request_timeout = 10',
             'retries = 0', '[reconciler]',
             f'hypervisor_hostname = {hostname}']
    lines += [f'{k} = {v}' for k, v in opts.items()]
    lines += ['[placement]', 'auth_type = admin_token',
              f'endpoint = {placement_url}', 'token = admin',
              f'endpoint_override = {placement_url}']
    path = pathlib.Path(tmp) / 'nova-reconciler.conf'
    path.write_text('\n'.join(lines) + '\n')
    return path


class NovaHost:
    """One compute host of a Nova-only cloud: gpuwardend on a test tree
    (simulated backend), nova-compute (NovaProcess, the device_spec and
    aliases of `gpuwarden nova-config`), and gpuwarden-nova-reconciler
    (in this process, built from its config file as the service builds
    itself, with its event listener)."""

    def __init__(self, tmp, placement, nova, tree, extra=(),
                 check_interval=3600.0, hooks=None):
        import uuid
        from gwdaemon import Daemon
        self.tmp = pathlib.Path(tmp)
        self.tree = HOSTS / tree
        self.name = f'nova-{uuid.uuid4().hex[:8]}'
        self.api = PlacementAPI(placement.url)
        self.placement = placement
        self.nova = nova
        hooks_dir = self.tmp / 'hooks.d'
        hooks_dir.mkdir(exist_ok=True)
        for name, text in (hooks or {}).items():
            (hooks_dir / name).write_text(text)
            (hooks_dir / name).chmod(0o755)
        self.daemon = Daemon(self.tmp, host=tree, extra=list(extra)).start()
        self.config = nova_config(self.tree, *self._manage(extra))
        self.gpus = [s['address'] for s in self.config['device_spec']]
        self.conf_path = reconciler_conf(self.tmp, placement.url, self.daemon,
                                         self.name,
                                         check_interval=check_interval)
        self.check_interval = check_interval
        self.service = None
        self.rp = {}

    @staticmethod
    def _manage(extra):
        """The daemon's [manage] options, for nova-config."""
        out = []
        for i, a in enumerate(extra):
            if a in ('--manage-vendors', '--manage-addresses'):
                out += [a, extra[i + 1]]
        return out

    # --- the reconciler --------------------------------------------------

    def start_reconciler(self):
        from gpuwarden_nova import cmd
        from gpuwarden_nova import reconciler
        conf = cmd.make_conf(['--config-file', str(self.conf_path)])
        self.reconciler = cmd.build(conf)
        self.service = reconciler.Service(
            self.reconciler, conf.reconciler.check_interval,
            conf.gpuwarden.events_endpoint,
            held_recheck_interval=conf.reconciler.held_recheck_interval
        ).start()
        return self.reconciler

    def stop_reconciler(self):
        if self.service:
            self.service.stop()
            self.reconciler.daemon.close()
            self.service = None

    # --- nova-compute ------------------------------------------------------

    def start_nova(self, restart=False):
        """nova-compute starts (a restart keeps its compute node, as its
        database does, and starts from an empty provider cache)."""
        out = self.nova.call(
            'init', placement_url=self.placement.url, nodename=self.name,
            device_spec=[json.dumps(s) for s in self.config['device_spec']],
            alias=[json.dumps(a) for a in self.config['alias']],
            devices=hypervisor_devices(self.tree),
            compute_node=self.compute_node if restart else None)
        self.compute_node = out['compute_node']
        return self.report(startup=True)

    def report(self, startup=False):
        """nova-compute's update_available_resource, as far as Placement
        goes."""
        rps = self.nova.call('report', startup=startup)
        self.rp.update({a: u for a, u in rps.items() if u})
        return rps

    # --- what Placement holds ------------------------------------------------

    def inventory(self, gpu):
        """(PGPU inventory record, generation, used) of a GPU's provider."""
        rp = self.rp[gpu]
        inv = self.api.ok('GET', f'/resource_providers/{rp}/inventories',
                          '1.26')
        use = self.api.ok('GET', f'/resource_providers/{rp}/usages', '1.26')
        return (inv['inventories']['PGPU'], inv['resource_provider_generation'],
                use['usages'].get('PGPU', 0))

    def reserved(self, gpu):
        return self.inventory(gpu)[0]['reserved']

    def snapshot(self):
        """{gpu: (reserved, generation, used)} of every provider."""
        return {g: (i['reserved'], gen, used) for g in self.rp
                for i, gen, used in [self.inventory(g)]}

    def traits(self, gpu):
        return self.api.ok('GET', f'/resource_providers/{self.rp[gpu]}'
                           '/traits', '1.26')['traits']

    def candidates(self, alias, instance=None):
        """nova-scheduler's GET /allocation_candidates for a flavor with
        pci_passthrough:alias=<alias>: per candidate on this host, its
        allocation request and the GPUs it would get."""
        import uuid
        instance = instance or str(uuid.uuid4())
        out = self.nova.call('candidates', instance=instance, alias=alias)
        by_rp = {u: g for g, u in self.rp.items()}
        cands = []
        for req in out['allocation_requests']:
            gpus = sorted(by_rp[rp] for rp in req['allocations']
                          if rp in by_rp)
            if gpus or any(rp in by_rp for rp in req['allocations']):
                cands.append((req, gpus))
            # candidates on other hosts of the shared Placement are not ours
        return instance, cands, out

    def offered(self, alias='gpu-nvidia-1eb0:1'):
        """The GPUs of this host some candidate would give."""
        _, cands, _ = self.candidates(alias)
        return sorted({g for _, gpus in cands for g in gpus})

    def states(self):
        return {d['address']: d['state'] for d in self.daemon.devices()}

    def cli(self, *args):
        return cli(*args, '--endpoint', self.daemon.admin)

    def hook(self, vm, op, subop, xml):
        """The libvirt qemu hook as libvirtd runs it, the domain XML on
        stdin."""
        p = subprocess.run(
            [str(build_dir() / 'gpuwarden'), 'hook', '--endpoint',
             self.daemon.admin, '--timeout-ms', '5000', '--host-root',
             str(self.tree), 'qemu', vm, op, subop, '-'],
            input=xml, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stderr

    def domain_xml(self, vm, gpus):
        """The domain nova-compute's libvirt driver defines for ``gpus``:
        its <hostdev> elements as LibvirtDriver._get_guest_pci_device
        writes them (managed per the device_spec)."""
        devs = ''.join(self.nova.call('hostdev_xml', address=g) for g in gpus)
        return (f"<domain type='kvm'><name>{vm}</name><devices>{devs}"
                "</devices></domain>")

    def close(self):
        self.stop_reconciler()
        # Nova disables a compute service with this trait; its query
        # forbids it, so later hosts of the module never see this one.
        root = self.api.ok('GET', f'/resource_providers?name={self.name}',
                           '1.14')['resource_providers']
        if root:
            uuid = root[0]['uuid']
            t = self.api.ok('GET', f'/resource_providers/{uuid}/traits',
                            '1.6')
            self.api.ok('PUT', f'/resource_providers/{uuid}/traits', '1.6',
                        {'resource_provider_generation':
                         t['resource_provider_generation'],
                         'traits': t['traits'] + ['COMPUTE_STATUS_DISABLED']})
        if self.daemon is not None and self.daemon.alive():
            assert self.daemon.stop() == 0, self.daemon.log.read_text()


def Checker(host, alias='gpu-nvidia-1eb0:1'):
    """nova-scheduler's query for one GPU of the host, polled all along
    (offer_checker.py)."""
    import offer_checker
    _, _, out = host.candidates(alias)
    return offer_checker.OfferChecker(
        host.placement.url, '/allocation_candidates?' + out['query'],
        out['version'], host.daemon.read,
        lambda: {u: g for g, u in host.rp.items()})


# ---------------------------------------------------------------------------
# The child: everything below runs only in the process NovaProcess starts.

def _child():   # noqa: C901 - one place for every op
    import traceback
    import types
    import uuid

    out = os.fdopen(os.dup(1), 'w', buffering=1)
    os.dup2(2, 1)       # anything Nova prints goes to the log, not the pipe

    import nova.conf
    from nova import context as nova_context
    from nova import exception
    from nova import objects
    objects.register_all()
    from oslo_log import log as logging

    CONF = nova.conf.CONF
    try:
        logging.register_options(CONF)
    except Exception:   # noqa: BLE001 - already registered
        pass
    CONF([], project='nova', default_config_files=[])
    logging.setup(CONF, 'nova')

    st = types.SimpleNamespace(ctx=nova_context.get_admin_context(),
                               specs={}, instances={}, rt=None)

    def configure(device_spec, alias):
        CONF.set_override('report_in_placement', True, group='pci')
        CONF.set_override('pci_in_placement', True, group='filter_scheduler')
        CONF.set_override('device_spec', device_spec, group='pci')
        CONF.set_override('alias', alias, group='pci')
        CONF.set_override('virt_type', 'kvm', group='libvirt')
        from nova.pci import request as pci_request
        pci_request.get_alias_from_config.cache_clear()

    # --- nova.conf checks (gpuwarden nova-config's output) -------------------

    def op_validate(device_spec, alias, devices, report_in_placement=True):
        """Parse [pci] device_spec and alias as nova-compute and nova-api
        do, match the hypervisor's devices, and build the Placement PCI view
        (pci_placement_translator.PlacementView) of the matched ones."""
        configure(device_spec, alias)
        CONF.set_override('report_in_placement', report_in_placement,
                          group='pci')
        from nova.compute import pci_placement_translator as ppt
        from nova.pci import request as pci_request
        from nova.pci import whitelist
        wl = whitelist.Whitelist(CONF.pci.device_spec)
        matched = {}
        pv = ppt.PlacementView('cmp', [])
        for d in devices:
            spec = wl.device_assignable(dict(d))
            if spec is None:
                continue
            d = dict(d)
            spec.enhanced_pci_device_with_spec_tags(d)
            pv.process_dev(objects.PciDevice.create(st.ctx, d), spec)
            matched[d['address']] = dict(spec.get_tags())
        rps = {}
        for name, rp in pv.rps.items():
            rps[name] = {'rc': rp.resource_class,
                         'traits': sorted(rp.traits or ()),
                         'one_time_use': rp.is_otu,
                         'inventory': rp._get_inventories()}
        aliases = {name: [numa, specs] for name, (numa, specs)
                   in pci_request.get_alias_from_config().items()}
        return {'matched': matched, 'rps': rps, 'aliases': aliases}

    def op_normalise(traits, resource_class):
        """How Nova reads the device_spec's traits and resource_class tags
        (pci_placement_translator.get_traits, get_resource_class)."""
        from nova.compute import pci_placement_translator as ppt
        return {'traits': sorted(ppt.get_traits(traits)),
                'resource_class': ppt.get_resource_class(
                    resource_class, '10de', '1eb0')}

    def op_child_provider(parent, children, device_spec):
        """PlacementView with an SR-IOV PF and its VFs matched by
        ``device_spec``: what Nova says about them (its error, or the
        providers)."""
        configure(device_spec, [])
        from nova.compute import pci_placement_translator as ppt
        from nova.pci import whitelist
        wl = whitelist.Whitelist(CONF.pci.device_spec)
        pv = ppt.PlacementView('cmp', [])
        try:
            for d in [parent] + children:
                spec = wl.device_assignable(dict(d))
                if spec is not None:
                    pv.process_dev(objects.PciDevice.create(st.ctx, dict(d)),
                                   spec)
        except exception.NovaException as e:
            return {'error': f'{type(e).__name__}: {e}'}
        return {'rps': {n: sorted(rp.traits or ()) for n, rp in
                        pv.rps.items()}}

    # --- nova-compute ----------------------------------------------------------

    def op_init(placement_url, nodename, device_spec, alias, devices,
                compute_node=None):
        """nova-compute on a fresh host: the report client (keystoneauth
        Adapter to Placement, noauth2 token), the resource tracker with a
        libvirt-like driver for the compute node's own inventory, and the
        PCI tracker fed with the hypervisor's devices. Nova's database is
        not there: the PCI tracker starts from an empty device list, as on
        a new compute node, and never saves. ``compute_node``: the uuid of
        a compute node that already exists (nova-compute restarting)."""
        configure(device_spec, alias)
        from keystoneauth1 import adapter as ks_adapter
        from keystoneauth1 import session as ks_session
        from keystoneauth1 import token_endpoint
        from nova.compute import resource_tracker
        from nova.pci import manager as pci_manager
        from nova.scheduler.client import report
        sess = ks_session.Session(
            auth=token_endpoint.Token(placement_url, 'admin'))
        adap = ks_adapter.Adapter(sess, service_type='placement',
                                  endpoint_override=placement_url,
                                  raise_exc=False)
        st.report = report.SchedulerReportClient(adapter=adap)
        st.nodename = nodename

        class Driver:
            """The libvirt driver's part of _update_to_placement: the
            compute node's VCPU/MEMORY_MB/DISK_GB and its capability
            traits."""

            def update_provider_tree(self, tree, nodename, allocations=None):
                inv = {rc: {'total': n, 'min_unit': 1, 'max_unit': n,
                            'step_size': 1, 'allocation_ratio': 1.0,
                            'reserved': 0}
                       for rc, n in (('VCPU', 128), ('MEMORY_MB', 1048576),
                                     ('DISK_GB', 4096))}
                tree.update_inventory(nodename, inv)

            def capabilities_as_traits(self):
                return {}

        rt = resource_tracker.ResourceTracker('cmp', Driver(),
                                              reportclient=st.report)
        # The compute service's disabled flag lives in Nova's database.
        rt._sync_compute_service_disabled_trait = lambda ctx, traits: None
        st.cn = objects.ComputeNode(id=1, uuid=compute_node or
                                    str(uuid.uuid4()),
                                    hypervisor_hostname=nodename,
                                    numa_topology=None)
        objects.PciDeviceList.get_by_compute_node = classmethod(
            lambda cls, ctx, node_id: cls(objects=[]))
        objects.PciDevice.save = lambda self: None
        rt.pci_tracker = pci_manager.PciDevTracker(st.ctx, st.cn)
        rt.pci_tracker.update_devices_from_hypervisor_resources(
            json.dumps(devices))
        # The ids the database would give the new rows.
        for i, dev in enumerate(rt.pci_tracker.pci_devs, 1):
            dev.id = i
        rt.compute_nodes[nodename] = st.cn
        st.rt = rt
        return {'compute_node': st.cn.uuid}

    def op_report(startup=False):
        """ResourceTracker._update_to_placement (retried on generation
        conflicts by its own @retrying decorator): the provider tree, the
        PCI placement view, update_from_provider_tree."""
        st.rt._update_to_placement(st.ctx, st.cn, startup)
        return {d.address: d.extra_info.get('rp_uuid')
                for d in st.rt.pci_tracker.pci_devs}

    def op_devices():
        return [{'address': d.address, 'status': d.status,
                 'instance_uuid': d.instance_uuid,
                 'rp_uuid': d.extra_info.get('rp_uuid'),
                 'managed': d.extra_info.get('managed')}
                for d in st.rt.pci_tracker.pci_devs]

    # --- nova-scheduler --------------------------------------------------------

    def _request_spec(instance, alias):
        from nova.pci import request as pci_request
        flavor = objects.Flavor(
            flavorid='gpu', name='gpu', vcpus=8, memory_mb=16384,
            root_gb=40, ephemeral_gb=0, swap=0,
            extra_specs={'pci_passthrough:alias': alias})
        reqs = pci_request.get_pci_requests_from_flavor(flavor)
        reqs.instance_uuid = instance
        spec = objects.RequestSpec(
            instance_uuid=instance, flavor=flavor, num_instances=1,
            project_id='p', user_id='u', image=objects.ImageMeta(
                properties=objects.ImageMetaProps()),
            pci_requests=reqs, is_bfv=False, scheduler_hints={},
            requested_destination=None, force_hosts=None, force_nodes=None,
            ignore_hosts=None, requested_resources=[])
        return spec

    def op_candidates(instance, alias):
        """What nova-scheduler asks Placement for a flavor with
        pci_passthrough:alias=<alias>: the RequestSpec's PCI request groups
        (RequestSpec.generate_request_groups_from_pci_requests, one group
        per device), the compute_status_filter request filter,
        utils.resources_from_request_spec, and the report client's
        get_allocation_candidates."""
        from nova.scheduler import request_filter
        from nova.scheduler import utils as sched_utils
        spec = _request_spec(instance, alias)
        spec.generate_request_groups_from_pci_requests()
        request_filter.compute_status_filter(st.ctx, spec)
        res_req = sched_utils.resources_from_request_spec(
            st.ctx, spec, host_manager=None)
        res = st.report.get_allocation_candidates(st.ctx, res_req)
        alloc_reqs, summaries, version = res
        st.specs[instance] = (spec, version)
        return {'allocation_requests': alloc_reqs or [],
                'provider_summaries': summaries or {},
                'version': version,
                'query': res_req.to_querystring()}

    def op_claim(instance, allocation_request):
        """The scheduler's claim: SchedulerReportClient.claim_resources."""
        spec, version = st.specs[instance]
        return st.report.claim_resources(
            st.ctx, instance, allocation_request, 'p', 'u', version,
            consumer_generation=None)

    # --- nova-compute: the instance ------------------------------------------

    def op_compute_claim(instance, mappings):
        """The PCI claim of ResourceTracker.instance_claim: the PCI requests
        get the providers Placement allocated
        (compute.utils.update_pci_request_with_placement_allocations), the
        PCI tracker claims and allocates those devices, and the resource
        tracker reports (_update: one-time-use providers get reserved =
        total). The instance's other resources stay as they are."""
        from nova.compute import utils as compute_utils
        spec, _ = st.specs[instance]
        reqs = spec.pci_requests
        compute_utils.update_pci_request_with_placement_allocations(
            st.ctx, st.report, reqs.requests, mappings)
        tracker = st.rt.pci_tracker
        devs = tracker.claim_instance(st.ctx, reqs, None)
        inst = objects.Instance(uuid=instance, pci_requests=reqs,
                                pci_devices=objects.PciDeviceList(objects=[]))
        tracker.allocate_instance(inst)
        st.instances[instance] = inst
        st.rt._update_to_placement(st.ctx, st.cn, False)
        return sorted(d.address for d in devs)

    def op_hostdev_xml(address):
        """The <hostdev> the libvirt driver writes into the domain for this
        PCI device (LibvirtDriver._get_guest_pci_device, with its managed
        mode from the device_spec tag)."""
        from nova.virt.libvirt import driver as lv_driver
        dev = next(d for d in st.rt.pci_tracker.pci_devs
                   if d.address == address)
        fake = types.SimpleNamespace()
        fake._set_managed_mode = types.MethodType(
            lv_driver.LibvirtDriver._set_managed_mode, fake)
        cfg = lv_driver.LibvirtDriver._get_guest_pci_device(fake, dev)
        return cfg.to_xml()

    def op_delete(instance):
        """ComputeManager._complete_deletion after the domain was destroyed
        (driver.destroy, where libvirt runs the hook's release end):
        _update_resource_tracker (the PCI tracker frees the devices,
        _update), then the report client's delete_allocation_for_instance
        (force=True, reclaim_instance_interval 0)."""
        tracker = st.rt.pci_tracker
        st.specs.pop(instance)
        inst = st.instances.pop(instance)
        tracker.update_pci_for_instance(st.ctx, inst, sign=-1)
        st.rt._update_to_placement(st.ctx, st.cn, False)
        return st.report.delete_allocation_for_instance(
            st.ctx, instance, force=True)

    def op_set_traits(address, traits):
        """nova-compute's set_traits_for_provider on a device's provider (as
        update_from_provider_tree does when the device_spec's traits
        change), after refreshing the provider from Placement as the report
        client does after a conflict (_refresh_associations): a
        generation-checked write of Nova's own that lands."""
        dev = next(d for d in st.rt.pci_tracker.pci_devs
                   if d.address == address)
        rp = dev.extra_info['rp_uuid']
        st.report._refresh_associations(st.ctx, rp, force=True)
        st.report.set_traits_for_provider(st.ctx, rp, traits)
        return None

    ops = {k[3:]: v for k, v in locals().items() if k.startswith('op_')}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            rep = {'ok': True, 'result': ops[req['op']](**req['args'])}
        except Exception as e:  # noqa: BLE001 - reported to the parent
            rep = {'ok': False, 'error': f'{type(e).__name__}: {e}',
                   'traceback': traceback.format_exc()}
        out.write(json.dumps(rep, default=str) + '\n')


if __name__ == '__main__' and sys.argv[1:] == ['--child']:
    _child()
