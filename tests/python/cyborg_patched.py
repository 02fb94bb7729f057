"""Cyborg with gpuwarden's patches (packaging/cyborg/*.patch), for tests
that run the same test code against patched Cyborg (no tests here).

site() copies the installed ``cyborg`` package (its directory only, without
its own unit tests) into a temporary directory once per pytest session and
applies every patch with the real ``patch -p1``, as an operator would in
dist-packages or site-packages; a patch that does not apply cleanly fails
loudly. run_pytest() runs test files or node ids in a child pytest with
that copy first on PYTHONPATH: the interpreter, the venv's other packages
(oslo, Placement, gpuwarden_cyborg) and Cyborg's installed entry points
stay the same, only ``import cyborg`` resolves to the patched copy. The
child sees ``GW_CYBORG_PATCHED`` set to the copy's directory.
"""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
PATCH_DIR = ROOT / 'packaging' / 'cyborg'
ENV_FLAG = 'GW_CYBORG_PATCHED'

_SITE = {}


def patches():
    """The patch files, in the order they apply."""
    found = sorted(PATCH_DIR.glob('[0-9][0-9][0-9][0-9]-*.patch'))
    if not found:
        raise RuntimeError(f'no patches in {PATCH_DIR}')
    return found


def installed_cyborg():
    """The directory of the cyborg package this interpreter imports."""
    spec = importlib.util.find_spec('cyborg')
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('Cyborg (openstack-cyborg) is not importable')
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def site(tmp_path_factory=None):
    """A directory holding a patched copy of the installed ``cyborg``
    package, built once per session (per process)."""
    if 'path' in _SITE:
        return _SITE['path']
    if running_patched():       # a child: the copy its parent built
        _SITE['path'] = pathlib.Path(os.environ[ENV_FLAG])
        return _SITE['path']
    if tmp_path_factory is not None:
        top = tmp_path_factory.mktemp('cyborg-patched')
    else:
        top = pathlib.Path(tempfile.mkdtemp(prefix='cyborg-patched-'))
    src = installed_cyborg()
    shutil.copytree(src, top / 'cyborg', ignore=_skip(src))
    for p in patches():
        r = subprocess.run(['patch', '-p1', '--batch', '--forward',
                            '--no-backup-if-mismatch', '-d', str(top),
                            '-i', str(p)],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(
                f'{p.name} does not apply to the Cyborg installed at {src} '
                f'(patch -p1 exited {r.returncode}):\n{r.stdout}{r.stderr}')
    _SITE['path'] = top
    return top


def _skip(src):
    def ignore(d, names):
        out = {n for n in names if n == '__pycache__' or n.endswith('.pyc')}
        if pathlib.Path(d) == src and 'tests' in names:
            out.add('tests')            # Cyborg's own unit tests
        return out
    return ignore


def env(tmp_path_factory=None):
    """The environment of a child process that imports patched Cyborg."""
    e = dict(os.environ)
    e['PYTHONPATH'] = os.pathsep.join(
        [str(site(tmp_path_factory))] +
        ([e['PYTHONPATH']] if e.get('PYTHONPATH') else []))
    e[ENV_FLAG] = str(site(tmp_path_factory))
    return e


def run_pytest(targets, tmp_path_factory, args=(), timeout=600):
    """Run pytest on ``targets`` (files or node ids, relative to the
    repository root or absolute) in a child process against patched Cyborg.
    Returns the CompletedProcess (stdout and stderr together in stdout)."""
    base = tmp_path_factory.mktemp('patched-run')
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
           '--basetemp', str(base / 'tmp'), *args, *map(str, targets)]
    return subprocess.run(cmd, cwd=ROOT, env=env(tmp_path_factory),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def running_patched():
    """True in a child started by run_pytest()."""
    return bool(os.environ.get(ENV_FLAG))
