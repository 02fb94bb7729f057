"""The no-window checker shared by the Cyborg and Nova tests (no tests
here): polls one GET /allocation_candidates all along in a thread, reading
the daemon's states just before and just after each poll on its own
socket. A GPU-poll is a violation when it offered a GPU that was not
`allocatable` both before and after the poll, outside a call that is
changing that GPU right now (an operator command or a hook, which return
only once Placement shows the change)."""

import contextlib
import threading

import requests

from gpuwarden_cyborg import client as gw_client


class OfferChecker:
    """:param gpu_of: callable returning ``{provider uuid: GPU address}``
    (read at every poll: providers may appear during the test)."""

    def __init__(self, placement_url, query, version, daemon_read, gpu_of):
        self.url, self.query, self.version = placement_url, query, version
        self.gpu_of = gpu_of
        self.http = requests.Session()
        self.http.headers.update({'X-Auth-Token': 'admin',
                                  'Accept': 'application/json'})
        self.client = gw_client.Client(daemon_read, timeout=10)
        self.in_flight = set()
        self.lock = threading.Lock()
        self.polls = self.gpu_polls = 0
        self.violations = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def states(self):
        return {d['address']: d['state']
                for d in self.client.call('devices')['devices']}

    def _candidates(self):
        r = self.http.get(self.url + self.query, headers={
            'OpenStack-API-Version': f'placement {self.version}'})
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def _run(self):
        while not self._stop.is_set():
            with self.lock:
                busy = set(self.in_flight)
            before = self.states()
            body = self._candidates()
            after = self.states()
            with self.lock:
                busy |= self.in_flight
            by_rp = self.gpu_of()
            offered = {by_rp[rp] for req in body['allocation_requests']
                       for rp in req['allocations'] if rp in by_rp}
            self.polls += 1
            self.gpu_polls += len(offered)
            for g in sorted(offered - busy):
                if before[g] != 'allocatable' and after[g] != 'allocatable':
                    self.violations.append((self.polls, g, before[g],
                                            after[g]))

    @contextlib.contextmanager
    def changing(self, *gpus):
        """The GPUs a command or hook is changing right now."""
        with self.lock:
            self.in_flight |= set(gpus)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= set(gpus)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.client.close()
        self.http.close()
