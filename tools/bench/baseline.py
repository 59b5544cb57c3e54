"""``--baseline REV``: time our code now against an earlier git revision, in one process.

REV's ``samplers`` package is extracted with ``git archive`` and imported next to ours
as ``samplers_baseline_<commit>``, its CustomOps renamed so the two do not collide
(:func:`load_baseline`). Every case is built twice on the same seeded inputs, once with
our classes and once with REV's (the names in :data:`PIECES`, rebound in the case's
globals), and each path is timed on both, alternating. Only the ``samplers`` package of
REV is imported, so REV may be from before or after the benchmark moved to ``tools/``.
"""
import atexit
import importlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types

import numpy as np
import mxnet as mx

import samplers
from samplers import QuotaSampler

from .harness import (CASES, Bench, Sizes, check_cases, check_int, check_scale, machine_info,
                      sync, time_alternating)

__all__ = ['PIECES', 'repo_root', 'rename_ops', 'load_baseline', 'ratio_interval',
           'run_baseline']

#: The classes a case builds from module globals; ``--baseline`` rebinds them to REV's.
PIECES = ('RPNTargetGenerator', 'RPNTargetSampler', 'QuotaSampler', 'OHEMSampler',
          'RCNNTargetSampler', 'SSDMultiBoxLoss')
_BASELINES = {}  # commit -> imported baseline package (each extracted once per process)


def _git(root, *args):
    """stdout of ``git -C root args``; ``ValueError`` with git's message when it fails."""
    try:
        done = subprocess.run(['git', '-C', root] + list(args), capture_output=True,
                              check=False)
    except OSError as err:
        raise ValueError('--baseline needs git: {}'.format(err)) from None
    if done.returncode:
        message = done.stderr.decode(errors='replace').strip().splitlines()
        raise ValueError('git {}: {}'.format(args[0], message[-1] if message else 'failed'))
    return done.stdout


def package_parent():
    """The folder holding the ``samplers`` package we import (the checkout, when editable)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(samplers.__file__)))


def repo_root():
    """The git checkout our ``samplers`` package is imported from; ``ValueError`` if none."""
    here = package_parent()
    try:
        top = _git(here, 'rev-parse', '--show-toplevel').decode().strip()
    except ValueError as err:
        raise ValueError('--baseline needs samplers imported from a git checkout, not {} '
                         '({})'.format(here, err)) from None
    if os.path.realpath(top) != os.path.realpath(here):
        raise ValueError('--baseline needs samplers at the top of a git checkout; {} is '
                         'inside {}'.format(here, top))
    return top


def rename_ops(folder, suffix):
    """Suffix the CustomOp names registered by the package in ``folder``; returns the old names.

    Names come from lines starting ``OP_TYPE = '...'`` or ``mx.operator.register('...')``;
    every quoted occurrence in the package is rewritten, so the copy registers
    and calls ``name + suffix`` and leaves our ops alone. Absolute
    ``samplers`` imports are pointed at the copy too.
    """
    paths = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
             if f.endswith('.py')]
    texts = {}
    for path in paths:
        with open(path, encoding='utf-8') as f:
            texts[path] = f.read()
    names = sorted({n for text in texts.values() for n in re.findall(
        r'''^\s*(?:OP_TYPE\s*=\s*|@?(?:mx\.)?operator\.register\(\s*)['"]([^'"]+)['"]''',
        text, flags=re.M)})
    package = os.path.basename(folder)
    for path, text in texts.items():
        for name in names:
            text = re.sub(r'''(['"]){}\1'''.format(re.escape(name)), r'\g<1>{}{}\1'.format(
                name, suffix), text)
        text = re.sub(r'^(\s*(?:from|import)\s+)samplers\b', r'\g<1>' + package, text,
                      flags=re.M)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
    return names


def _quota_op_modules():
    """Modules of the CustomOpProp classes MXNet builds when our QuotaSampler labels NDArrays."""
    seen, original = [], mx.operator.CustomOpProp.__init__

    def spy(self, *args, **kwargs):
        seen.append(type(self).__module__)
        original(self, *args, **kwargs)
    mx.operator.CustomOpProp.__init__ = spy
    try:
        sync(QuotaSampler(2, 0.5, 0.5)(mx.nd.zeros((1, 4)), mx.nd.zeros((1, 4, 1))))
        mx.nd.waitall()
    finally:
        mx.operator.CustomOpProp.__init__ = original
    return seen


def load_baseline(rev):
    """Import revision ``rev``'s ``samplers`` as ``samplers_baseline_<commit>``.

    ``git archive`` extracts REV's package into a temporary folder (removed at
    exit), its CustomOps are renamed (:func:`rename_ops`) and it is imported.
    Returns ``(package, commit, renamed op names)``. ``ValueError`` when there
    is no checkout or REV is unknown; ``RuntimeError`` if our QuotaSampler's op
    is not ours afterwards.
    """
    root = repo_root()
    try:
        commit = _git(root, 'rev-parse', '--verify', '--quiet', '--end-of-options',
                      '{}^{{commit}}'.format(rev)).decode().strip()
    except ValueError:
        commit = ''
    if not commit:
        raise ValueError('--baseline: unknown revision {!r} in {}'.format(rev, root))
    if commit not in _BASELINES:
        archive = _git(root, 'archive', '--format=tar', commit, 'samplers')
        folder = tempfile.mkdtemp(prefix='samplers-baseline-')
        atexit.register(shutil.rmtree, folder, True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, **({'filter': 'data'} if hasattr(tarfile, 'data_filter')
                                      else {}))
        name = 'samplers_baseline_' + commit[:10]
        os.rename(os.path.join(folder, 'samplers'), os.path.join(folder, name))
        ops = rename_ops(os.path.join(folder, name), '_baseline_' + commit[:10])
        sys.path.insert(0, folder)
        try:
            package = importlib.import_module(name)
        finally:
            sys.path.remove(folder)
        _BASELINES[commit] = package, ops
    package, ops = _BASELINES[commit]
    owners = _quota_op_modules()
    if not owners or any(m != QuotaSampler.__module__ for m in owners):
        raise RuntimeError('our QuotaSampler runs the CustomOp of {} after importing the '
                           'baseline'.format(owners))
    return package, commit, ops


def _names_used(code):
    """Global names ``code`` and the functions nested in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def _rebound(fn, names):
    """``fn`` with the module globals in ``names`` replaced (closure and defaults kept)."""
    return types.FunctionType(fn.__code__, dict(fn.__globals__, **names), fn.__name__,
                              fn.__defaults__, fn.__closure__)


def ratio_interval(ratios, level=0.95, rounds=2000, seed=0):
    """Median of ``ratios`` and a bootstrap ``level`` interval for it: ``(median, low, high)``.

    ``rounds`` resamples with replacement from a ``RandomState(seed)``; the
    interval is the central ``level`` of their medians.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    picks = np.random.RandomState(seed).randint(0, len(ratios), (rounds, len(ratios)))
    low, high = np.percentile(np.median(ratios[picks], axis=1),
                              [50 * (1 - level), 50 * (1 + level)])
    return float(np.median(ratios)), float(low), float(high)


def _baseline_row(case_name, path, timings=None, note=None):
    """One ``--baseline`` row: times in ms and the now / baseline ratio, or just a note."""
    row = {'case': case_name, 'path': path, 'base_ms': None, 'now_ms': None, 'ratio': None,
           'low': None, 'high': None, 'rounds': 0, 'notes': [note] if note else []}
    if timings is None:
        return row
    now, base = timings['now:' + path], timings['base:' + path]
    for side, t in (('now', now), ('base', base)):
        if 'error' in t:
            row['notes'].append('{}: {}'.format(side, t['error']))
        else:
            row[side + '_ms'] = t['median'] * 1e3
    if 'seconds' in now and 'seconds' in base:
        ratios = [a / b for a, b in zip(now['seconds'], base['seconds'])]
        row['ratio'], row['low'], row['high'] = ratio_interval(ratios)
        row['rounds'] = len(ratios)
    return row


def _skip_reason(spec, package):
    """Why case ``spec`` cannot be compared with ``package``, or None."""
    if spec.goal[0] == 'memory':
        return 'skipped: memory case (not timed)'
    used = [p for p in PIECES if p in _names_used(spec.build.__code__)]
    if not used:
        return 'skipped: times none of the classes the baseline replaces'
    missing = [p for p in used if not hasattr(package, p)]
    if missing:
        return 'not in baseline (no {})'.format(', '.join(missing))
    return None


def _baseline_case(spec, index, package, settings):
    """Rows of one case: our paths built now and with the baseline's classes, timed together."""
    reason = _skip_reason(spec, package)
    if reason:
        return [_baseline_row(spec.name, None, note=reason)]
    sizes = spec.sizes(Sizes(settings['scale']))
    built = {}
    for side, build in (('now', spec.build),
                        ('base', _rebound(spec.build, {p: getattr(package, p) for p in PIECES
                                                       if hasattr(package, p)}))):
        bench = Bench(spec.name, settings['repeat'], settings['warmup'], settings['scale'],
                      settings['seed'], False, False, collect=True)
        try:
            built[side] = build(bench, sizes, np.random.RandomState(settings['seed'] + index))
        except Exception as err:
            return [_baseline_row(spec.name, None, note='{} side failed to build: {}: {}'.format(
                side, type(err).__name__, err))]
    paths = [p for p in built['now'] if p in built['base'] and callable(built['now'][p])]
    runners = {'{}:{}'.format(side, p): built[side][p] for p in paths for side in ('now', 'base')}
    timings = time_alternating(runners, settings['repeat'], settings['warmup'], keep=True)
    return [_baseline_row(spec.name, p, timings) for p in paths]


def run_baseline(rev, cases=None, repeat=7, warmup=1, scale=1.0, seed=0):
    """Time our paths now against revision ``rev`` in one process; the ``--baseline`` report.

    Each case's build runs twice on the same seeded inputs, once with our
    classes and once with ``rev``'s (:func:`load_baseline`), and every path is
    timed on both, alternating. A row per case and path gives both medians and
    the median of the per-round ratios now / baseline with a bootstrap 95%
    interval. Memory cases and cases using none of :data:`PIECES` are skipped,
    cases whose classes ``rev`` lacks say so; GluonCV is not timed.
    ``ValueError`` on a bad argument, no checkout or an unknown ``rev``.
    """
    cases = check_cases(cases)
    settings = {'repeat': check_int('repeat', repeat, 1), 'warmup': check_int('warmup', warmup, 0),
                'scale': check_scale(scale),
                'seed': check_int('seed', seed, 0)}
    package, commit, ops = load_baseline(rev)
    np.random.seed(settings['seed'])
    mx.random.seed(settings['seed'])
    rows = []
    for index, (name, spec) in enumerate(CASES.items()):
        if name in cases:
            rows.extend(_baseline_case(spec, index, package, settings))
    return {'machine': machine_info(),
            'settings': dict(settings, baseline=rev, baseline_commit=commit, renamed_ops=ops),
            'cases': rows}
