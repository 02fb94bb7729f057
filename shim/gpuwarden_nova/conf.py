# SPDX-License-Identifier: Apache-2.0
"""Options of gpuwarden-nova-reconciler (/etc/gpuwarden/nova-reconciler.conf).

Registered on the service's own ConfigOpts, never on oslo.config's global
CONF (whatever else the process imports keeps its options to itself).
``[placement]`` holds keystoneauth's session, auth and adapter options,
registered as Nova registers its own ``[placement]`` (nova/conf/placement.py),
so nova-compute's nova.conf can be given as a further ``--config-file``
and its Placement credentials are used as they are; options the service
does not know are ignored. The ``oslo.config.opts`` entry point
``gpuwarden.nova`` points at :func:`list_opts`.
"""

import socket

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from gpuwarden_cyborg import conf as cyborg_conf

DEFAULT_ENDPOINT = 'ipc:///run/gpuwarden/read.sock'
DEFAULT_ADMIN_ENDPOINT = 'ipc:///run/gpuwarden/admin.sock'
DEFAULT_EVENTS_ENDPOINT = 'ipc:///run/gpuwarden/events.sock'
PLACEMENT_GROUP = 'placement'

gpuwarden_group = cfg.OptGroup(
    name='gpuwarden', title='gpuwardend',
    help='How the reconciler reaches gpuwardend, the per-host daemon that '
         'owns each GPU\'s state.')

reconciler_group = cfg.OptGroup(
    name='reconciler', title='Nova provider reconciler',
    help='The Placement providers Nova makes for the GPUs of this host '
         '([pci] report_in_placement; gpuwarden nova-config prints the '
         'device_spec) and how the reconciler keeps them reserved until '
         'gpuwardend calls a GPU allocatable.')

gpuwarden_opts = [
    cfg.StrOpt(
        'endpoint', default=DEFAULT_ENDPOINT,
        help='gpuwardend\'s read endpoint (its read_endpoint). The service\'s '
             'user must be in the socket\'s group (gpuwarden.conf '
             'read_group).'),
    cfg.StrOpt(
        'admin_endpoint', default=DEFAULT_ADMIN_ENDPOINT,
        help='gpuwardend\'s admin endpoint (its admin_endpoint), for '
             '"published" only ([reconciler] publish): it makes cleaned GPUs '
             'allocatable, so the daemon serves it only there. The '
             'service\'s user must be in the admin socket\'s group '
             '(gpuwarden.conf admin_group), which the daemon checks on '
             'every connection (SO_PEERCRED).'),
    cfg.StrOpt(
        'events_endpoint', default=DEFAULT_EVENTS_ENDPOINT,
        help='gpuwardend\'s event stream (its events_endpoint). Every event '
             '(a transition, a finished clean-up, a domain stopping or '
             'starting) starts a pass at once: a quarantine or a release is '
             'in Placement within milliseconds. Empty: passes only every '
             'check_interval.'),
    cfg.FloatOpt(
        'request_timeout', default=5.0, min=0.05,
        help='Seconds to wait for one reply from gpuwardend.'),
    cfg.IntOpt(
        'retries', default=2, min=0,
        help='Further attempts after a timed-out or unreachable request.'),
]

# The same CURVE key file options as the Cyborg driver's [gpuwarden].
gpuwarden_opts += cyborg_conf.CURVE_OPTS

reconciler_opts = [
    cfg.StrOpt(
        'hypervisor_hostname', default=socket.gethostname(),
        sample_default='<the host name>',
        help='The compute node\'s hypervisor_hostname (`openstack hypervisor '
             'list`): Nova names the provider of the PCI device at ADDRESS '
             '"<hypervisor_hostname>_<ADDRESS in upper case>", a child of '
             'the compute node\'s provider of that name. For the libvirt '
             'driver it is the host name libvirt reports.'),
    cfg.FloatOpt(
        'check_interval', default=15.0, min=0.5,
        help='Seconds between full checks of the host\'s providers, besides '
             'the passes events start. This bounds how long Placement can '
             'show a GPU free that gpuwardend does not call allocatable '
             'after a change the daemon does not announce: Nova reporting '
             'a GPU\'s provider for the first time (with reserved 0) while '
             'the GPU is dirty, or a write of Nova\'s that reset reserved '
             '(an inventory whose total or resource class changed). The '
             'libvirt hook refuses to start a VM on such a GPU meanwhile.'),
    cfg.FloatOpt(
        'held_recheck_interval', default=1.0, min=0.1,
        help='Seconds between checks while a GPU the daemon calls '
             'allocatable is still reserved under an allocation (an '
             'instance being built before libvirt defines its domain, or a '
             'deleted one whose allocation Nova has not freed yet). Nova '
             'freeing an allocation is no daemon event; this is how soon '
             'after it the GPU is offered again.'),
    cfg.IntOpt(
        'conflict_retries', default=8, min=1,
        help='How often one write is tried again after Placement refused it '
             'because the provider changed meanwhile (generation conflict: '
             'Nova wrote to it, or an allocation landed). Each retry reads '
             'the provider again and decides again; a write is never '
             'forced.'),
    cfg.BoolOpt(
        'publish', default=True,
        help='Tell gpuwardend (op published) which inventory generation '
             'Placement covers, once every provider shows at least the '
             'reservation that generation asks for. The daemon promotes '
             'GPUs whose clean-up passed to allocatable only on that (or '
             'by itself when the current content was already confirmed), '
             'and the libvirt hook\'s release end waits for it. On a Nova-'
             'only host this service is the Placement writer; turn it off '
             'only where another writer (the Cyborg driver) publishes.'),
]


def register_opts(conf):
    conf.register_group(gpuwarden_group)
    conf.register_opts(gpuwarden_opts, group=gpuwarden_group)
    conf.register_group(reconciler_group)
    conf.register_opts(reconciler_opts, group=reconciler_group)
    ks_loading.register_session_conf_options(conf, PLACEMENT_GROUP)
    ks_loading.register_auth_conf_options(conf, PLACEMENT_GROUP)
    ks_loading.register_adapter_conf_options(conf, PLACEMENT_GROUP,
                                             include_deprecated=False)
    conf.set_default('service_type', 'placement', group=PLACEMENT_GROUP)
    conf.set_default('valid_interfaces', ['internal', 'public'],
                     group=PLACEMENT_GROUP)


def list_opts():
    """The oslo.config.opts entry point."""
    placement = (ks_loading.get_session_conf_options() +
                 ks_loading.get_auth_common_conf_options() +
                 ks_loading.get_adapter_conf_options(include_deprecated=False))
    return [(gpuwarden_group, gpuwarden_opts),
            (reconciler_group, reconciler_opts),
            (PLACEMENT_GROUP, placement)]
