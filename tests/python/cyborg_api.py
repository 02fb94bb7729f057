"""Cyborg's real REST API (cyborg-api's WSGI app) served in-process on
127.0.0.1, for tests (no tests here).

It runs against whatever Cyborg's global CONF points at when start() is
called: the process's Cyborg database (cyborg_db.use) and the [placement]
section test_shim_support.configure_cyborg writes. Call start() after
those.

Cyborg 17.0.0 has no ``[api] auth_strategy``: its paste pipeline always
runs keystonemiddleware's ``authtoken``. start() writes a copy of the
installed api-paste.ini without ``authtoken`` in the pipeline and loads it
through ``cyborg.api.app.load_app()`` (``[api] api_paste_config``), as
cyborg-api does. Requests then carry what authtoken would have set:
``X-Roles`` (``admin`` by default; Cyborg's ContextHook turns it into
is_admin, which its admin_api policy checks), a project and a user. The
API's ConductorAPIHook needs an RPC transport; none is configured, so an
oslo.messaging ``fake:`` one is set (nothing here calls the conductor over
RPC: device disable/enable write the DB and Placement themselves).
"""

import os
import re
import sys
import threading
import uuid
import wsgiref.simple_server

import requests

import test_shim_support as S

# The pipeline of Cyborg 17.0.0's etc/cyborg/api-paste.ini, for an
# installation that does not ship the file where we look.
_FALLBACK_PASTE = """\
[pipeline:main]
pipeline = cors http_proxy_to_wsgi request_id authtoken api_v2

[app:api_v2]
paste.app_factory = cyborg.api.app:app_factory

[filter:authtoken]
acl_public_routes = /, /v2
paste.filter_factory = cyborg.api.middleware.auth_token:AuthTokenMiddleware.factory

[filter:request_id]
paste.filter_factory = oslo_middleware:RequestId.factory

[filter:cors]
paste.filter_factory =  oslo_middleware.cors:filter_factory
oslo_config_project = cyborg

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory
"""

# The newest microversion Cyborg 17.0.0 serves.
MICROVERSION = '2.3'


def installed_paste_ini():
    """The api-paste.ini the installed Cyborg ships: the wheel puts it in
    <prefix>/etc/cyborg, distributions in /etc/cyborg."""
    for d in (os.path.join(sys.prefix, 'etc', 'cyborg'), '/etc/cyborg'):
        path = os.path.join(d, 'api-paste.ini')
        if os.path.exists(path):
            return path
    return None


def paste_without_authtoken(text):
    """``text`` with ``authtoken`` removed from [pipeline:main]."""
    out, n = re.subn(r'(?m)^(pipeline\s*=.*?)\s+authtoken\b', r'\1', text)
    if n != 1:
        raise RuntimeError('api-paste.ini: no authtoken in the main pipeline '
                           'to remove:\n' + text)
    return out


class CyborgAPI:
    """``start()`` serves the API on 127.0.0.1 (``url``); ``call()`` sends
    one request as an admin; ``close()`` stops it."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.url = None
        self.app = None
        self._httpd = None
        self._thread = None
        self.project = uuid.uuid4().hex
        self.user = uuid.uuid4().hex
        self.http = requests.Session()

    def start(self):
        from cyborg import objects
        from cyborg.api import app as cyborg_app
        from cyborg.common import rpc
        from cyborg.conf import CONF

        objects.register_all()
        if rpc.TRANSPORT is None:
            import oslo_messaging
            rpc.TRANSPORT = oslo_messaging.get_rpc_transport(CONF,
                                                             url='fake:/')
        src = installed_paste_ini()
        text = open(src).read() if src else _FALLBACK_PASTE
        ini = os.path.join(self.workdir, 'api-paste.ini')
        with open(ini, 'w') as f:
            f.write(paste_without_authtoken(text))
        CONF.set_override('api_paste_config', ini, group='api')
        self.app = cyborg_app.load_app()
        port = S.free_port()
        self.url = f'http://127.0.0.1:{port}'
        self._httpd = wsgiref.simple_server.make_server(
            '127.0.0.1', port, self.app, handler_class=S._QuietHandler)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        daemon=True)
        self._thread.start()
        return self

    def call(self, method, path, body=None, roles='admin',
             version=MICROVERSION):
        """One request (``path`` from the root, e.g. ``/v2/devices``);
        returns the requests.Response."""
        headers = {'X-Roles': roles, 'X-Project-Id': self.project,
                   'X-User-Id': self.user, 'Accept': 'application/json'}
        if version:
            headers['OpenStack-API-Version'] = f'accelerator {version}'
        return self.http.request(method, self.url + path, json=body,
                                 headers=headers, timeout=60)

    def close(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None
        self.http.close()
