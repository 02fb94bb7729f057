"""The real Placement service (openstack-placement's WSGI app, noauth2) in
a process of its own, for the benchmarks (tests/bench/shim_vs_intree.py and
tests/bench/placement_fleet.py start and stop it). It counts every request
it serves. ``load_app`` is also how tests/python/test_shim_support's
in-process PlacementServer configures the app: one config for both.

    python placement_server.py DBDIR [--server eventlet|wsgiref|threaded]
        [--connection URL] [--set SECTION.OPTION=VALUE ...]

The database is sqlite in DBDIR unless ``--connection`` names another
(tests/bench/placement_fleet.py: PostgreSQL). ``--set`` adds options to
placement.conf, e.g. ``--set placement.max_allocation_candidates=100``.

Prints ``READY <port>`` on stdout once it listens on 127.0.0.1, then serves
until SIGTERM or SIGINT.

Servers: ``eventlet`` (default): eventlet.wsgi, which Cyborg's own
dependencies bring into the venv; HTTP/1.1 with keep-alive, as Placement
behind Apache mod_wsgi or uwsgi serves it, so a client's session reuses
its connection. One request at a time (no monkey patching: the app's
database calls block the hub), which is all one cyborg-agent needs.
``wsgiref``: the standard library's server, one connection per request
(HTTP/1.0, the server closes), as PlacementServer in the test suite.
``threaded``: the same with a thread per connection, so concurrent clients
are served concurrently (as mod_wsgi or uwsgi threads serve Placement; the
database calls release the GIL).

Counting. A WSGI middleware in front of the app records, for every request
it passes on: the method, the path with every UUID replaced by ``{uuid}``
and the query reduced to its parameter names (``GET
/resource_providers?in_tree``), the status, and the server-side time (from
the request reaching the middleware to the end of the response body: the
app's own work, without HTTP parsing or the network). The record is
exposed, not counted, on one extra path::

    GET /__bench__/log?since=N   ->  {"total": T, "entries": [[method,
                                      path, status, microseconds], ...]}

(entries N..T-1). The benchmark reads it between the calls it measures, so
the reading is never inside a timed call.
"""

import json
import os
import re
import signal
import sys
import time
import urllib.parse

UUID = re.compile(r'[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?'
                  r'[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}')
LOG_PATH = '/__bench__/log'


def shape(environ):
    path = UUID.sub('{uuid}', environ.get('PATH_INFO', ''))
    query = environ.get('QUERY_STRING', '')
    if query:
        names = [k for k, _ in urllib.parse.parse_qsl(
            query, keep_blank_values=True)]
        path += '?' + '&'.join(dict.fromkeys(names))
    return path


class Counter:
    """Records every request but its own."""

    def __init__(self, app):
        self.app = app
        self.log = []

    def __call__(self, environ, start_response):
        if environ.get('PATH_INFO') == LOG_PATH:
            q = urllib.parse.parse_qs(environ.get('QUERY_STRING', ''))
            since = int(q.get('since', ['0'])[0])
            body = json.dumps({'total': len(self.log),
                               'entries': self.log[since:]}).encode()
            start_response('200 OK', [('Content-Type', 'application/json'),
                                      ('Content-Length', str(len(body)))])
            return [body]
        t0 = time.perf_counter()
        status = []

        def sr(st, headers, exc_info=None):
            status.append(int(st.split()[0]))
            return start_response(st, headers, exc_info)

        # The body is materialised here so that its cost is inside the
        # recorded time (Placement's responses are small JSON documents).
        body = b''.join(self.app(environ, sr))
        self.log.append([environ['REQUEST_METHOD'], shape(environ),
                         status[0] if status else 0,
                         int((time.perf_counter() - t0) * 1e6)])
        return [body]


def write_conf(dbdir, connection=None, options=()):
    """placement.conf in ``dbdir``: noauth2 (token ``admin``), the schema
    made at start, sqlite in ``dbdir`` unless ``connection`` is given;
    ``options``: extra ``(section, name, value)``."""
    sections = {'api': {'auth_strategy': 'noauth2'},
                'placement_database': {
                    'sync_on_startup': 'true',
                    'connection': connection or 'sqlite:///%s'
                    % os.path.join(dbdir, 'placement.db')}}
    for section, name, value in options:
        sections.setdefault(section, {})[name] = value
    path = os.path.join(dbdir, 'placement.conf')
    with open(path, 'w') as f:
        for section, opts in sections.items():
            f.write(f'[{section}]\n')
            f.writelines(f'{k} = {v}\n' for k, v in opts.items())
    return path


def load_app(dbdir, connection=None, options=()):
    """openstack-placement's WSGI app as placement-api deploys it, with
    the config of :func:`write_conf`."""
    from oslo_config import cfg
    from placement import conf as pconf
    from placement import db_api
    from placement import deploy

    path = write_conf(dbdir, connection, options)
    conf = cfg.ConfigOpts()
    pconf.register_opts(conf)
    conf([], project='placement', default_config_files=[path])
    db_api.configure(conf)
    return deploy.loadapp(conf)


def parse_set(text):
    """``SECTION.OPTION=VALUE`` -> (section, option, value)."""
    key, _, value = text.partition('=')
    section, _, name = key.partition('.')
    if not section or not name or not _:
        raise ValueError(f'--set {text!r}: expected SECTION.OPTION=VALUE')
    return section, name, value


class Child:
    """This module as a child process: ``url`` once it listens. ``args``:
    extra command-line arguments (``--connection``, ``--set``)."""

    def __init__(self, dbdir, server='eventlet', args=()):
        import subprocess
        os.makedirs(dbdir, exist_ok=True)
        self.err = open(os.path.join(dbdir, 'stderr'), 'a+')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), dbdir,
             '--server', server, *args],
            stdout=subprocess.PIPE, stderr=self.err, text=True,
            env=dict(os.environ, PYTHONWARNINGS='ignore'))
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != 'READY':
            self.kill()
            self.err.seek(0)
            raise RuntimeError('Placement did not start: ' + self.err.read())
        self.url = f'http://127.0.0.1:{line[1]}'

    def kill(self):
        """SIGKILL: also for a server still computing an answer nobody
        waits for any more."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.err.close()

    def close(self):
        import subprocess
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


def main():
    import argparse
    import logging
    ap = argparse.ArgumentParser()
    ap.add_argument('dbdir')
    ap.add_argument('--server', choices=('eventlet', 'wsgiref', 'threaded'),
                    default='eventlet')
    ap.add_argument('--connection')
    ap.add_argument('--set', action='append', default=[], type=parse_set)
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    app = Counter(load_app(a.dbdir, a.connection, a.set))

    def stop(*_):
        sys.stdout.flush()
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if a.server == 'eventlet':
        import eventlet
        import eventlet.wsgi
        sock = eventlet.listen(('127.0.0.1', 0))
        print('READY', sock.getsockname()[1], flush=True)
        eventlet.wsgi.server(sock, app, log=open(os.devnull, 'w'),
                             log_output=False, keepalive=True,
                             max_size=16, debug=False)
    else:
        import wsgiref.simple_server

        class Quiet(wsgiref.simple_server.WSGIRequestHandler):
            def log_message(self, *args):
                pass
        server = wsgiref.simple_server.WSGIServer
        if a.server == 'threaded':
            import socketserver

            class Threaded(socketserver.ThreadingMixIn, server):
                daemon_threads = True
                request_queue_size = 128
            server = Threaded
        httpd = wsgiref.simple_server.make_server(
            '127.0.0.1', 0, app, server_class=server, handler_class=Quiet)
        print('READY', httpd.server_port, flush=True)
        httpd.serve_forever()


if __name__ == '__main__':
    main()
