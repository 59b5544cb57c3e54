"""Install anywhere the stack runs: supported Pythons, pins, the numpy aliases, set-up errors.

The wheel itself is built and installed into a fresh venv by ``make wheel`` (a CI step,
``.ci/run``); here the same metadata is checked through ``setup.py egg_info``, which is fast
and needs no network. pyproject.toml is the one place that names the supported Pythons.
"""
import email
import os
import re
import stat
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

import samplers
from samplers import _compat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(REPO, name), encoding='utf-8') as f:
        return f.read()


def classifier_pythons(text):
    """The X.Y of each "Programming Language :: Python :: X.Y" classifier in ``text``."""
    return re.findall(r'Programming Language :: Python :: (3\.\d+)\b', text)


#: The supported Pythons, from the one place that lists them.
SUPPORTED = classifier_pythons(read('pyproject.toml'))


def lines(text):
    """``text``'s lines without surrounding blanks and indentation (metadata may indent)."""
    return [line.strip() for line in text.strip().splitlines()]


def version(text):
    return tuple(int(part) for part in text.split('.'))


# --------------------------------------------------------------------------- numpy aliases
def test_missing_aliases_are_bound_to_the_builtins_they_named():
    module = types.ModuleType('fake_numpy')
    assert _compat.add_numpy_aliases(module) == _compat.REMOVED_ALIASES
    assert (module.bool, module.int, module.float) == (bool, int, float)
    assert (module.complex, module.object, module.str) == (complex, object, str)


def test_aliases_that_exist_are_left_alone_and_a_second_call_adds_nothing():
    module = types.ModuleType('fake_numpy')
    module.float = 'numpy own'
    assert 'float' not in _compat.add_numpy_aliases(module)
    assert module.float == 'numpy own'
    assert _compat.add_numpy_aliases(module) == ()


def test_importing_samplers_restores_exactly_the_aliases_this_numpy_lacks():
    removed = version(np.__version__.split('rc')[0])[:2] >= (1, 24)
    assert _compat.ADDED == (_compat.REMOVED_ALIASES if removed else ())
    assert samplers._compat is _compat


def test_numpy_aliases_work_after_import_as_gluoncv_uses_them():
    with warnings.catch_warnings():  # numpy < 1.24 still has them, with a DeprecationWarning
        warnings.simplefilter('ignore', DeprecationWarning)
        assert np.array([1.5], dtype=np.float).dtype == np.float64
        assert np.zeros(2, dtype=np.int).dtype.kind == 'i'


def test_mxnet_imported_after_the_compat_module_alone_works_in_a_fresh_process():
    # What a user script that imports mxnet first must do on Python 3.12 (README, Install).
    code = ('import runpy; runpy.run_path("samplers/_compat.py")\n'
            'import mxnet as mx\n'
            'print(int(mx.nd.contrib.box_iou(mx.nd.array([[0, 0, 2, 2]]),'
            ' mx.nd.array([[0, 0, 2, 2]])).asscalar()))\n')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONWARNINGS='ignore'), timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ['1'], out.stderr[-2000:]


# --------------------------------------------------------------------------- supported Pythons
def test_supported_pythons_are_consecutive_minor_versions():
    minors = [version(v)[1] for v in SUPPORTED]
    assert len(minors) >= 2 and minors == list(range(minors[0], minors[0] + len(minors)))


def test_make_supported_prints_the_pyproject_classifiers(tmp_path):
    out = make(tmp_path, '-s', 'supported')
    assert out.returncode == 0 and out.stdout.split() == SUPPORTED, out.stderr


def test_requires_python_spans_exactly_the_supported_pythons(egg_info):
    last = version(SUPPORTED[-1])
    spec = {'>=' + SUPPORTED[0], '<{}.{}'.format(last[0], last[1] + 1)}
    assert set(egg_info['PKG-INFO']['Requires-Python'].split(',')) == spec


def test_the_metadata_carries_the_same_classifiers(egg_info):
    classifiers = egg_info['PKG-INFO'].get_all('Classifier')
    assert classifier_pythons('\n'.join(classifiers)) == SUPPORTED


@pytest.mark.parametrize('reported', SUPPORTED)
def test_make_accepts_every_supported_python(tmp_path, reported):
    # The Pythons the README names are the ones the Makefile's gate lets through (a dry run:
    # the gate is checked, nothing is installed).
    out = make(tmp_path, '-n', 'test', 'PYTHON=' + fake_python(tmp_path, reported))
    assert out.returncode == 0, out.stderr


def fake_python(tmp_path, reported):
    """A "python" that answers the Makefile's version question with ``reported``."""
    path = tmp_path / 'python{}'.format(reported)
    path.write_text('#!/bin/sh\necho {}\n'.format(reported))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


#: Variables an outer ``make`` (``make test VENV=...``) passes down through the environment.
OUTER_MAKE = ('MAKEFLAGS', 'MAKELEVEL', 'MFLAGS', 'MAKEOVERRIDES', 'VENV', 'PYTHON')


def make(tmp_path, *args):
    """``make ARGS`` on a copy of the Makefile and its inputs in ``tmp_path`` (no venvs there).

    Hermetic: nothing the outer ``make`` that runs the suite was given reaches this one.
    """
    for name in ('Makefile', 'pyproject.toml', 'setup.py', 'constraints.txt'):
        (tmp_path / name).write_text(read(name))
    env = {k: v for k, v in os.environ.items() if k not in OUTER_MAKE}
    return subprocess.run(['make', '--no-print-directory'] + list(args), cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('reported', ['3.7', '3.13'])
def test_make_refuses_an_unsupported_python_in_one_line(tmp_path, reported):
    python = fake_python(tmp_path, reported)
    out = make(tmp_path, 'test', 'PYTHON=' + python)
    assert out.returncode != 0 and out.stdout == ''
    assert out.stderr.count('\n') == 1, out.stderr
    assert 'Python {} to {}'.format(SUPPORTED[0], SUPPORTED[-1]) in out.stderr
    assert python + ' is ' + reported in out.stderr
    assert 'make test PYTHON=python3.11' in out.stderr
    assert not (tmp_path / ('.venv-' + reported)).exists()


def test_a_python_that_is_not_there_is_refused_too(tmp_path):
    out = make(tmp_path, 'demo', 'PYTHON=' + str(tmp_path / 'python3.99'))
    assert out.returncode != 0 and out.stderr.count('\n') == 1
    assert 'python3.99 is not found' in out.stderr


def test_a_non_default_python_gets_its_own_venv(tmp_path, monkeypatch):
    # As under `make test VENV=.venv-x`: the outer make's variables must not leak in.
    monkeypatch.setenv('VENV', '.venv-outer')
    monkeypatch.setenv('MAKEFLAGS', ' -- VENV=.venv-outer')
    monkeypatch.setenv('MAKELEVEL', '1')
    python = fake_python(tmp_path, '3.12')
    out = make(tmp_path, '-n', 'test', 'PYTHON=' + python)
    assert out.returncode == 0, out.stderr
    assert '{} -m venv .venv-3.12'.format(python) in out.stdout
    assert '.venv-3.12/bin/python -m pytest' in out.stdout


# --------------------------------------------------------------------------- pins
def pins(text):
    """``(name, spec, marker)`` per requirement line of a constraints file."""
    out = []
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            req, _, marker = line.partition(';')
            name, spec = re.match(r'([A-Za-z0-9_.-]+)(.*)', req.strip()).groups()
            out.append((name.lower(), spec.strip(), marker.strip()))
    return out


def marker_holds(marker, python):
    """Evaluates the ``python_version OP "X.Y"`` markers used in constraints.txt."""
    if not marker:
        return True
    op, wanted = re.fullmatch(r'python_version\s*(<=|>=|<|>|==)\s*"([\d.]+)"', marker).groups()
    have, wanted = version(python), version(wanted)
    return {'<': have < wanted, '<=': have <= wanted, '>': have > wanted,
            '>=': have >= wanted, '==': have == wanted}[op]


@pytest.mark.parametrize('python', SUPPORTED)
def test_each_supported_python_gets_one_numpy_1_pin_and_distutils_where_it_is_gone(python):
    active = [(n, s) for n, s, m in pins(read('constraints.txt')) if marker_holds(m, python)]
    numpy_pins = [s for n, s in active if n == 'numpy']
    assert numpy_pins == (['==1.23.5'] if version(python) < (3, 12) else ['==1.26.4'])
    assert ('setuptools' in dict(active)) == (version(python) >= (3, 12))
    assert ('mxnet', '==1.9.1') in active and ('gluoncv', '==0.10.5.post0') in active


# --------------------------------------------------------------------------- metadata
@pytest.fixture(scope='module')
def egg_info(tmp_path_factory):
    """``setup.py egg_info`` output: the metadata a wheel of this tree would carry."""
    base = tmp_path_factory.mktemp('egg')
    subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base', str(base)],
                   cwd=REPO, check=True, capture_output=True, timeout=120,
                   env=dict(os.environ, PYTHONWARNINGS='ignore'))
    info = base / 'gluon_samplers.egg-info'
    with open(info / 'PKG-INFO', encoding='utf-8') as f:
        meta = email.message_from_file(f)
    return {'PKG-INFO': meta, 'SOURCES': (info / 'SOURCES.txt').read_text().split(),
            'requires': (info / 'requires.txt').read_text(),
            'top_level': (info / 'top_level.txt').read_text().split()}


def test_readme_is_the_long_description_and_license_is_a_license_file(egg_info):
    meta = egg_info['PKG-INFO']
    # New setuptools put it in the body; old ones (3.8's venv: 56) in an indented header.
    body = meta.get_payload() or meta['Description']
    assert lines(body) == lines(read('README.md'))
    assert meta['Description-Content-Type'] == 'text/markdown'
    import setuptools
    if version(setuptools.__version__.split('.post')[0])[:2] >= (58, 0):
        # setuptools 56 (Python 3.8's venv) does not write the field; `make wheel` builds with
        # a current one and checks the field in the wheel.
        assert 'LICENSE' in meta.get_all('License-File')
    assert {'LICENSE', 'README.md', 'samplers/_compat.py'} <= set(egg_info['SOURCES'])


def test_the_package_is_the_library_alone(egg_info):
    # tools/ (benchmark, study, demo) stays in the checkout. SOURCES is the sdist's list (newer
    # setuptools add tests/test*.py to it); `make wheel` checks the wheel's own file list.
    assert egg_info['top_level'] == ['samplers']
    assert not [f for f in egg_info['SOURCES'] if f.startswith('tools/')]


def test_install_requires_splits_numpy_at_python_3_12(egg_info):
    requires = egg_info['requires']
    assert 'numpy<1.24,>=1.16' in requires.replace(' ', '') or \
        'numpy>=1.16,<1.24' in requires.replace(' ', '')
    assert '[:python_version < "3.12"]' in requires and '[:python_version >= "3.12"]' in requires
    assert re.search(r'\[:python_version >= "3.12"\]\n(.+\n)*setuptools', requires)


# --------------------------------------------------------------------------- set-up errors
def test_failed_set_up_names_the_package_and_shows_pips_own_error(tmp_path):
    out = subprocess.run([os.path.join(REPO, '.ci', 'pip-install'), sys.executable,
                          '--no-index', 'samplers-no-such-package==1'],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, SAMPLERS_PIP_LOG=str(tmp_path / 'pip.log')))
    assert out.returncode == 1
    assert 'ERROR: No matching distribution found for samplers-no-such-package==1' in out.stderr
    assert out.stderr.splitlines()[-1].startswith(
        'set-up failed on No matching distribution found for samplers-no-such-package==1')


def test_successful_set_up_prints_one_line(tmp_path):
    out = subprocess.run([os.path.join(REPO, '.ci', 'pip-install'), sys.executable,
                          '--no-index', 'pip'],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, SAMPLERS_PIP_LOG=str(tmp_path / 'pip.log')))
    assert out.returncode == 0 and out.stderr == ''
    assert out.stdout.count('\n') == 1 and out.stdout.startswith('installing into ')
    assert 'Requirement already satisfied' in (tmp_path / 'pip.log').read_text()
