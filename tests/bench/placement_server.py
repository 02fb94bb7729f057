"""The real Placement service (openstack-placement's WSGI app, sqlite,
noauth2 as tests/python/test_shim_support.PlacementServer configures it) in
a process of its own, for the benchmarks (tests/bench/shim_vs_intree.py
starts and stops it). It counts every request it serves.

    python placement_server.py DBDIR [--server eventlet|wsgiref]

Prints ``READY <port>`` on stdout once it listens on 127.0.0.1, then serves
until SIGTERM or SIGINT.

Servers: ``eventlet`` (default): eventlet.wsgi, which Cyborg's own
dependencies bring into the venv; HTTP/1.1 with keep-alive, as Placement
behind Apache mod_wsgi or uwsgi serves it, so a client's session reuses
its connection. One request at a time (no monkey patching: the app's
database calls block the hub), which is all one cyborg-agent needs.
``wsgiref``: the standard library's server, one connection per request
(HTTP/1.0, the server closes), as PlacementServer in the test suite.

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


def load_app(dbdir):
    from oslo_config import cfg
    from placement import conf as pconf
    from placement import db_api
    from placement import deploy

    path = os.path.join(dbdir, 'placement.conf')
    with open(path, 'w') as f:
        f.write('[api]\nauth_strategy = noauth2\n'
                '[placement_database]\nsync_on_startup = true\n'
                'connection = sqlite:///%s\n'
                % os.path.join(dbdir, 'placement.db'))
    conf = cfg.ConfigOpts()
    pconf.register_opts(conf)
    conf([], project='placement', default_config_files=[path])
    db_api.configure(conf)
    return deploy.loadapp(conf)


def main():
    import argparse
    import logging
    ap = argparse.ArgumentParser()
    ap.add_argument('dbdir')
    ap.add_argument('--server', choices=('eventlet', 'wsgiref'),
                    default='eventlet')
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    app = Counter(load_app(a.dbdir))

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
        httpd = wsgiref.simple_server.make_server('127.0.0.1', 0, app,
                                                  handler_class=Quiet)
        print('READY', httpd.server_port, flush=True)
        httpd.serve_forever()


if __name__ == '__main__':
    main()
