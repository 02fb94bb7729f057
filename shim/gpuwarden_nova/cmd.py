# SPDX-License-Identifier: Apache-2.0
"""gpuwarden-nova-reconciler: the service (packaging/systemd/
gpuwarden-nova-reconciler.service).

    gpuwarden-nova-reconciler --config-file /etc/nova/nova.conf \\
        --config-file /etc/gpuwarden/nova-reconciler.conf

Later files win. Options: gpuwarden_nova/conf.py (``oslo-config-generator
--namespace gpuwarden.nova`` prints them). ``--once`` runs one pass and
exits: 0 when Placement shows every GPU as the daemon says, 1 when a pass
failed or left a provider it could not bring in line.
"""

import signal
import sys
import threading

from oslo_config import cfg
from oslo_log import log as logging

from gpuwarden_cyborg import client as gw_client
from gpuwarden_nova import conf as nova_conf
from gpuwarden_nova import placement as pl
from gpuwarden_nova import reconciler

LOG = logging.getLogger(__name__)

DEFAULT_CONFIG = '/etc/gpuwarden/nova-reconciler.conf'


def make_conf(argv):
    conf = cfg.ConfigOpts()
    nova_conf.register_opts(conf)
    logging.register_options(conf)
    conf.register_cli_opt(cfg.BoolOpt(
        'once', default=False,
        help='Run one pass (and those its promotions start) and exit.'))
    import os
    defaults = [DEFAULT_CONFIG] if os.path.exists(DEFAULT_CONFIG) else []
    conf(argv, project='gpuwarden', prog='gpuwarden-nova-reconciler',
         default_config_files=defaults)
    return conf


def build(conf, context=None):
    curve = gw_client.curve_from_conf(conf.gpuwarden)
    daemon = gw_client.Client(conf.gpuwarden.endpoint,
                              timeout=conf.gpuwarden.request_timeout,
                              retries=conf.gpuwarden.retries,
                              context=context, curve=curve)
    admin = None
    if conf.reconciler.publish:
        admin = gw_client.Client(conf.gpuwarden.admin_endpoint,
                                 timeout=conf.gpuwarden.request_timeout,
                                 retries=conf.gpuwarden.retries,
                                 context=context, curve=curve)
    placement = pl.Placement(pl.adapter_from_conf(conf))
    rec = reconciler.Reconciler(
        daemon, placement, conf.reconciler.hypervisor_hostname,
        conflict_retries=conf.reconciler.conflict_retries,
        publish=conf.reconciler.publish, admin=admin)
    return rec


def main(argv=None):
    conf = make_conf(sys.argv[1:] if argv is None else argv)
    logging.setup(conf, 'gpuwarden-nova-reconciler')
    rec = build(conf)
    if conf.once:
        try:
            results = rec.sync()
        except Exception as exc:    # noqa: BLE001 - the exit code says it
            LOG.error('gpuwarden: pass failed: %s: %s', type(exc).__name__,
                      exc)
            return 1
        last = results[-1]
        for r in results:
            print(f'generation {r.generation}: raised {len(r.raised)}, '
                  f'lowered {len(r.lowered)}, held by an allocation '
                  f'{len(r.held)}, no provider yet {len(r.missing)}, '
                  f'conflicts {r.conflicts}, failed {len(r.failed)}, '
                  f'covered {"yes" if r.covered else "no"}, published '
                  f'{"yes" if r.published else "no"}'
                  + (f', promoted {" ".join(r.promoted)}'
                     if r.promoted else ''))
        return 0 if last.covered and not last.failed else 1
    svc = reconciler.Service(
        rec, conf.reconciler.check_interval,
        conf.gpuwarden.events_endpoint or None,
        held_recheck_interval=conf.reconciler.held_recheck_interval)
    done = threading.Event()

    def stop(signum, frame):
        done.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info('gpuwarden: reconciling Nova\'s providers of %s with '
             'gpuwardend at %s', conf.reconciler.hypervisor_hostname,
             conf.gpuwarden.endpoint)
    svc.start()
    while not done.wait(1.0):
        pass
    svc.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
