# SPDX-License-Identifier: Apache-2.0
"""Known defects of the Cyborg this driver runs in, and what the driver
refuses because of them.

Cyborg 17.0.0's ``attach_handle_get_by_filters`` drops its
``attach_info`` filter, so ``AttachHandle.get_ah_by_depid_attachinfo``
returns the deployable's newest handle whatever address it is asked for,
and the conductor (``drv_ah_make_diff``) destroys that one when a handle
disappears from a report. A per-GPU deployable has one handle, so nothing
goes wrong; a per-clique deployable has one per allocatable GPU, so a GPU
that goes dirty or is quarantined keeps its handle (Cyborg can bind it to a
VM) while a healthy one, possibly in use, is deleted. gpuwarden ships the
fix as packaging/cyborg/0001-*.patch (docs/cyborg.md).

The check runs Cyborg's own query function, the code under its DB
decorator, on a private in-memory sqlite database with two handles of one
deployable, and asks for one by ``attach_info``: the fix is there when only
that one comes back. It sees the Cyborg importable in this process (the
agent's); the defect runs in cyborg-conductor, which must be patched too.
"""

import inspect
import threading
import types
import uuid

from oslo_log import log as logging

from gpuwarden_cyborg import errors

LOG = logging.getLogger(__name__)

PATCH_0001 = '0001-db-attach_handle_get_by_filters-honours-attach_info.patch'
# Where the sources keep the patches, and where the Debian package installs
# them.
SOURCE_DIR = 'packaging/cyborg'
INSTALLED_DIR = '/usr/share/gpuwarden/cyborg'

_lock = threading.Lock()
_probe = None       # (fixed, ran, detail) once checked in this process
_logged = False


def _run_probe():
    """(fixed, True, detail): run Cyborg's attach_handle_get_by_filters on
    an in-memory database; detail says what it returned."""
    import sqlalchemy
    from sqlalchemy import orm

    from cyborg.db.sqlalchemy import api as db_api
    from cyborg.db.sqlalchemy import models

    engine = sqlalchemy.create_engine('sqlite://')
    try:
        models.AttachHandle.__table__.create(engine)
        with orm.Session(engine) as session:
            for n, info in enumerate(('probe-a', 'probe-b')):
                session.add(models.AttachHandle(
                    uuid=str(uuid.UUID(int=n + 1)), deployable_id=1,
                    cpid_id=1, attach_type='PCI', attach_info=info,
                    in_use=False))
            session.commit()
            # What the DB decorator would hand it: a context with a session.
            context = types.SimpleNamespace(session=session, project_id=None)
            query = inspect.unwrap(
                db_api.Connection.attach_handle_get_by_filters)
            got = [h.attach_info for h in query(
                db_api.Connection(), context,
                {'deployable_id': 1, 'attach_info': 'probe-a'})]
    finally:
        engine.dispose()
    return got == ['probe-a'], True, (
        f"asked for attach_info 'probe-a' of a deployable with handles "
        f"'probe-a' and 'probe-b', Cyborg's attach_handle_get_by_filters "
        f"returned {got}")


def probe():
    """(fixed, ran, detail), checked once per process. A check that cannot
    run (Cyborg's internals changed) counts as not fixed (ran False, detail
    the reason)."""
    global _probe
    with _lock:
        if _probe is None:
            try:
                _probe = _run_probe()
            except Exception as exc:    # any failure: cannot vouch for it
                _probe = (False, False, f'the check could not run: '
                                 f'{type(exc).__name__}: {exc}')
        return _probe


def attach_handle_lookup_fixed():
    """True when the Cyborg importable here looks attach handles up by
    ``attach_info`` (Cyborg 17.0.0 with gpuwarden's patch 0001, or a Cyborg
    that fixed it)."""
    return probe()[0]


def defect_message():
    """What CyborgDefect says: the defect, the patch, the way out."""
    _, ran, detail = probe()
    head = ("Cyborg defect: its attach-handle lookup ignores attach_info"
            if ran else "Cannot confirm that Cyborg's attach-handle lookup "
            "honours attach_info")
    return (
        f"{head} (cyborg/db/sqlalchemy/api.py attach_handle_get_by_filters; "
        f"{detail}). Without it cyborg-conductor destroys the wrong attach "
        "handle when a GPU leaves a deployable that has several: with the "
        "per-clique model a dirty or quarantined GPU would stay bindable "
        "and a healthy one, even one in use, would be deleted. gpuwarden "
        "refuses to report the per-clique model on this Cyborg. Apply "
        f"{SOURCE_DIR}/{PATCH_0001} (the Debian package installs it as "
        f"{INSTALLED_DIR}/{PATCH_0001}) with 'patch -p1' in the directory "
        "that holds the cyborg package, to the Cyborg of cyborg-conductor "
        "and of cyborg-agent, and restart both (docs/cyborg.md, "
        f"{INSTALLED_DIR}/README.md). The per-GPU model "
        "([inventory] model = per_gpu) is unaffected by this defect.")


def check_model(inv):
    """Raise :class:`~gpuwarden_cyborg.errors.CyborgDefect` when the
    inventory uses the per-clique model and this Cyborg lacks the
    attach-handle fix; otherwise return None."""
    if inv.model == 'per_clique' and not attach_handle_lookup_fixed():
        raise errors.CyborgDefect(defect_message())


def log_status():
    """Log, once per process, whether this Cyborg has the fix and so
    whether the per-clique model will be reported. For the driver's
    load."""
    global _logged
    with _lock:
        if _logged:
            return
        _logged = True
    fixed = probe()[0]
    if fixed:
        LOG.info('gpuwarden: Cyborg looks attach handles up by attach_info '
                 '(patch %s or a fixed Cyborg): both inventory models can be '
                 'reported; cyborg-conductor must have the fix too',
                 PATCH_0001)
    else:
        LOG.warning('gpuwarden: the per-clique inventory model will be '
                    'refused. %s', defect_message())
