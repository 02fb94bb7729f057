"""Cyborg's database on sqlite for tests that run Cyborg's own conductor
code (no tests here).

Cyborg's DB API (oslo.db enginefacade: cyborg.db.sqlalchemy.api's context
manager and the global one create_schema() uses) starts its engines once per
process, on the first [database] connection it sees, and ignores later
changes. So every test module in one pytest run shares one sqlite file,
whose schema is created once; each caller re-applies the override because
configure_cyborg() resets CONF. Tests keep apart by host and deployable
names, never by database. (Placement's does the same: every
test_shim_support.PlacementServer in a process serves the first one's
database.)
"""

_DB = {}


def use(conf, tmp_path_factory):
    """Point ``conf`` ([database] connection) at the process's Cyborg
    database, creating it and its schema on the first call."""
    if 'path' not in _DB:
        _DB['path'] = str(tmp_path_factory.mktemp('cyborgdb') / 'cyborg.db')
    conf.set_override('connection', 'sqlite:///' + _DB['path'],
                      group='database')
    if not _DB.get('schema'):
        from cyborg.db import migration
        migration.create_schema()
        _DB['schema'] = True
