# SPDX-License-Identifier: Apache-2.0
"""The ``[gpuwarden]`` options of cyborg.conf.

Registered the way Cyborg registers its own groups (cyborg/conf/agent.py): an
OptGroup plus a list of opts, ``register_opts(conf)`` and ``list_opts()``
returning ``{group: opts}``. The ``oslo.config.opts`` entry point ``gpuwarden``
points at :func:`list_opts`, so
``oslo-config-generator --namespace gpuwarden`` prints them.
"""

from oslo_config import cfg

DEFAULT_ENDPOINT = 'ipc:///run/gpuwarden/read.sock'
DEFAULT_ADMIN_ENDPOINT = 'ipc:///run/gpuwarden/admin.sock'
DEFAULT_EVENTS_ENDPOINT = 'ipc:///run/gpuwarden/events.sock'

gpuwarden_group = cfg.OptGroup(
    name='gpuwarden',
    title='gpuwarden driver options',
    help='How the gpuwarden accelerator driver reaches gpuwardend, the '
         'per-host daemon that owns GPU state. Enable the driver with '
         '[agent] enabled_drivers = gpuwarden.')

opts = [
    cfg.StrOpt(
        'endpoint',
        default=DEFAULT_ENDPOINT,
        help='ZeroMQ endpoint of gpuwardend\'s read-only socket (the '
             'daemon\'s read_endpoint). The cyborg-agent user must be in the '
             'group that owns the socket file (gpuwarden.conf read_group).'),
    cfg.StrOpt(
        'admin_endpoint',
        default=DEFAULT_ADMIN_ENDPOINT,
        help='ZeroMQ endpoint of gpuwardend\'s admin socket (the daemon\'s '
             'admin_endpoint), for the two requests that change state: '
             '"published" (the generation now in Placement; it makes '
             'cleaned GPUs allocatable) and "maintenance" (Cyborg\'s device '
             'disable/enable). The daemon serves them only there. The '
             'cyborg-agent user must be in the admin socket\'s group '
             '(gpuwarden.conf admin_group), which the daemon checks on '
             'every connection (SO_PEERCRED). Reads and events stay on '
             'endpoint and events_endpoint.'),
    cfg.StrOpt(
        'events_endpoint',
        default=DEFAULT_EVENTS_ENDPOINT,
        help='ZeroMQ endpoint of gpuwardend\'s event stream (the daemon\'s '
             'events_endpoint). The driver follows the daemon\'s '
             'transitions in a thread and raises Placement reserved as soon '
             'as a GPU stops being allocatable (a release, a quarantine), '
             'instead of at the next agent cycle; the libvirt hook waits '
             'for that at "release end" before Nova frees the allocation. '
             'Empty: do not follow events (Placement then lags the daemon by '
             'up to one periodic_interval).'),
    cfg.FloatOpt(
        'request_timeout',
        default=5.0,
        min=0.05,
        help='Seconds to wait for one reply from gpuwardend before the '
             'attempt counts as timed out.'),
    cfg.IntOpt(
        'retries',
        default=2,
        min=0,
        help='Further attempts after a timed-out or unreachable request, '
             'each on a fresh socket. When all fail, discover() raises and '
             'Cyborg reports nothing this cycle (it never reports an empty '
             'or partial list).'),
    cfg.BoolOpt(
        'follow_cyborg_disable',
        default=True,
        help='Turn Cyborg\'s own "openstack accelerator device disable" '
             '(device status maintaining) into a gpuwarden maintenance '
             'quarantine of the device\'s GPUs (actor cyborg), keep its '
             'providers fully reserved while Cyborg says maintaining, and '
             'release them through a clean-up on "device enable". The '
             'driver reads Cyborg\'s API (GET /v2/devices) with the '
             'agent\'s [placement] credentials when Placement shows a '
             'change it did not make, and at least every '
             'cyborg_status_interval seconds.'),
    cfg.IntOpt(
        'cyborg_status_interval',
        default=300,
        min=1,
        help='Read Cyborg\'s device statuses at least this often (seconds), '
             'even when Placement shows no change (a "device disable" that '
             'failed after setting the status writes nothing to '
             'Placement).'),
    cfg.StrOpt(
        'cyborg_endpoint',
        help='Cyborg API endpoint (e.g. http://controller:6666). Unset: '
             'from the service catalog, service type "accelerator".'),
    cfg.StrOpt(
        'cyborg_interface',
        default='internal',
        help='Service catalog interface for Cyborg\'s API.'),
    cfg.StrOpt(
        'host',
        help='The host name gpuwardend must be naming deployables for '
             '(its host_name, "<host>_<BDF>"). When set, discover() refuses '
             'an inventory for another host, which catches an endpoint that '
             'reaches the wrong daemon. The names themselves are the '
             'daemon\'s: to change them (e.g. to match Cyborg\'s [DEFAULT] '
             'host, as the in-tree nvidia_gpu_driver names them), set '
             'host_name in gpuwarden.conf. Unset: not checked.'),
]


CURVE_OPTS = [
    cfg.StrOpt(
        'curve_server_key_file',
        help='For tcp:// endpoints (CURVE): a file holding gpuwardend\'s '
             'public key (Z85, 40 characters; the public half of its '
             'curve_secret_key).'),
    cfg.StrOpt(
        'curve_public_key_file',
        help='For tcp:// endpoints: this client\'s public key (Z85). On a '
             'tcp:// admin endpoint it must be listed in the daemon\'s '
             'curve_allowlist; unset (with curve_secret_key_file): a '
             'throwaway key pair, which only a read endpoint serves.'),
    cfg.StrOpt(
        'curve_secret_key_file',
        help='For tcp:// endpoints: this client\'s secret key (Z85); keep '
             'it readable by the service\'s user only.'),
]

opts += CURVE_OPTS
GPUWARDEN_OPTS = opts


def register_opts(conf):
    conf.register_group(gpuwarden_group)
    conf.register_opts(opts, group=gpuwarden_group)


def list_opts():
    """The oslo.config.opts entry point: a list of (group, opts) pairs."""
    return [(gpuwarden_group, GPUWARDEN_OPTS)]
