"""The timing harness: alternating runs, result rows, goals, the case registry and :func:`run`.

A case is registered with :func:`case` (see :mod:`tools.bench.cases`) and builds its row
through :meth:`Bench.compare`, which times our paths and the reference alternating
(:func:`time_alternating`) and fills the row (:func:`make_row`).
"""
import datetime
import importlib
import math
import numbers
import os
import platform
import shutil
import statistics
import subprocess
import time
import warnings

import numpy as np
import mxnet as mx

__all__ = ['QUICK_SCALE', 'NO_SUBSAMPLING', 'CASES', 'GOALS', 'Case', 'case', 'Sizes', 'Bench',
           'sync', 'time_alternating', 'goal_met', 'goal_applies', 'make_row', 'empty_row', 'judge',
           'gluoncv', 'host', 'count_differences', 'machine_info', 'run', 'ms', 'mb']

#: ``--quick`` multiplies every size by this.
QUICK_SCALE = 0.01
#: num_sample large enough that no quota ever bites, so results are deterministic.
NO_SUBSAMPLING = 10 ** 6


# --------------------------------------------------------------------------- argument checks
def check_int(name, value, minimum):
    """``int(value)``, or ``ValueError`` naming ``name`` if not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not float(value).is_integer():
        raise ValueError('{} must be an integer, got {!r}'.format(name, value))
    if value < minimum:
        raise ValueError('{} must be >= {}, got {}'.format(name, minimum, value))
    return int(value)


def check_scale(value):
    """``float(value)``, or ``ValueError`` naming ``scale`` unless 0 < value <= 100."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not 0 < float(value) <= 100:
        raise ValueError('scale must be in (0, 100], got {!r}'.format(value))
    return float(value)


# --------------------------------------------------------------------------- units
def mb(nbytes):
    return '{:.3g} MB'.format(nbytes / 2 ** 20)


def ms(value):
    if value is None:
        return 'n/a'
    return '{:.3g} ms'.format(value) if value < 1000 else '{:,.0f} ms'.format(value)


def times(value):
    """A multiple in two significant digits (26x, 1.2x, 0.011x); whole above 100."""
    return '{:.2g}x'.format(value) if value < 100 else '{:,.0f}x'.format(value)


# --------------------------------------------------------------------------- comparing
def gluoncv(module, name):
    """GluonCV's ``gluoncv.<module>.<name>`` (imported on first use, its warnings silenced).

    ``ImportError`` when gluoncv is not installed: the case then shows n/a with that reason.
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return getattr(importlib.import_module('gluoncv.' + module), name)


def host(x):
    return x.asnumpy() if isinstance(x, mx.nd.NDArray) else np.asarray(x)


def count_differences(ours, theirs):
    """How many entries of our outputs differ from GluonCV's (exact, or 1e-5 for floats).

    -1 when a pair of outputs differs in shape.
    """
    ours = ours if isinstance(ours, (tuple, list)) else (ours,)
    theirs = theirs if isinstance(theirs, (tuple, list)) else (theirs,)
    total = 0
    for a, b in zip(ours, theirs):
        a, b = host(a).astype(np.float64), host(b).astype(np.float64)
        if a.shape != b.shape:
            return -1
        total += int((~np.isclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)).sum())
    return total


def check_agreement(row, ours_fn, theirs_fn, compare=count_differences):
    """Run both sides once with subsampling off; record whether their results agree.

    Sets ``row['same_as_gluoncv']`` (True, False, or None when a side fails);
    a failure or a difference adds a note. Speed must not come from a different answer.
    """
    try:
        diff = compare(ours_fn(), theirs_fn())
    except Exception as err:
        row['notes'].append('agreement check failed: {}: {}'.format(type(err).__name__, err))
        return
    row['same_as_gluoncv'] = diff == 0
    if diff:
        row['notes'].append('**differs from GluonCV** with subsampling off ({})'.format(
            'shapes' if diff < 0 else '{} entries'.format(diff)))


# --------------------------------------------------------------------------- timing
def sync(out):
    """Wait for every NDArray in ``out`` (nested tuples/lists) so async work is counted."""
    if isinstance(out, (tuple, list)):
        for item in out:
            sync(item)
    elif isinstance(out, mx.nd.NDArray):
        out.wait_to_read()


def time_alternating(runners, repeat, warmup=1, clock=time.perf_counter, keep=False):
    """Time several callables on the same inputs, alternating between them.

    ``runners`` maps a label to ``fn(i)``, where ``i`` is the run index
    (0 .. warmup + repeat - 1) so each run may take its own inputs. Every run
    calls each runner once, in the given order on even runs and reversed on
    odd ones. The first ``warmup`` runs are not recorded. A runner that raises
    is dropped from later runs. Returns label -> ``{'median', 'min', 'runs'}``
    in seconds, or ``{'error': 'Type: message'}``; ``keep`` adds ``'seconds'``,
    the timed runs in order (run ``k`` of every label is the same round).
    """
    repeat, warmup = check_int('repeat', repeat, 1), check_int('warmup', warmup, 0)
    labels = list(runners)
    seconds = {label: [] for label in labels}
    errors = {}
    mx.nd.waitall()
    for i in range(warmup + repeat):
        for label in (labels if i % 2 == 0 else labels[::-1]):
            if label in errors:
                continue
            try:
                start = clock()
                sync(runners[label](i))
                mx.nd.waitall()
                took = clock() - start
            except Exception as err:
                errors[label] = '{}: {}'.format(type(err).__name__, err)
                continue
            if i >= warmup:
                seconds[label].append(took)
    out = {}
    for label in labels:
        if label in errors:
            out[label] = {'error': errors[label]}
        else:
            out[label] = {'median': statistics.median(seconds[label]),
                          'min': min(seconds[label]), 'runs': len(seconds[label])}
            if keep:
                out[label]['seconds'] = seconds[label]
    return out


# --------------------------------------------------------------------------- goals and rows
def goal_met(kind, value, ratio):
    """Whether ``ratio`` meets the goal ``(kind, value)``; None if ratio is unknown."""
    if ratio is None:
        return None
    if kind == 'faster':
        return ratio >= value
    if kind == 'floor':
        return ratio <= value
    if kind == 'memory':
        return ratio < value
    raise ValueError('goal kind must be faster, floor or memory, got {!r}'.format(kind))


def goal_applies(scale):
    """Whether a goal is judged at ``scale``: goals are stated for the sizes at scale 1.

    Below that (``--quick`` is scale 0.01) fixed per-call costs dominate, so
    the goals are not judged and the ratio is only a smoke-test number.
    """
    return scale >= 1


def empty_row(case_name, what, reference, *notes):
    """A result row with nothing measured yet (every measurement None, shown as n/a)."""
    kind, value = GOALS[case_name]
    return {'case': case_name, 'what': what, 'reference': reference, 'ours_ms': None,
            'ref_ms': None, 'ratio': None, 'goal': {'kind': kind, 'value': value}, 'met': None,
            'goal_applies': True, 'path': None, 'timings_ms': {}, 'same_as_gluoncv': None,
            'notes': [n for n in notes if n]}


def judge(row, applies=True):
    """Fill ``row['met']`` from its ratio, or leave it None when the goal does not apply."""
    row['goal_applies'] = bool(applies)
    row['met'] = goal_met(row['goal']['kind'], row['goal']['value'], row['ratio']) \
        if applies else None


def _label(label):
    return label.split(':', 1)[-1]


def make_row(case_name, what, reference, timings, ours_labels, ref_label, extra_labels=(),
             applies=True):
    """One result row from ``time_alternating`` output: our first working path vs the reference.

    The ratio is reference / ours for a 'faster' goal and ours / reference otherwise. Our
    other paths and the ``extra_labels`` go into the notes with their multiple of ours.
    """
    kind = GOALS[case_name][0]
    row = empty_row(case_name, what, reference)
    for label, t in timings.items():
        row['timings_ms'][label] = round(t['median'] * 1e3, 4) if 'median' in t else None
        if 'error' in t:
            row['notes'].append('{}: {}'.format(_label(label), t['error']))
    ok = [lab for lab in ours_labels if 'median' in timings.get(lab, {})]
    if ok:
        best = ok[0]  # the first path listed is the one GluonCV's own inputs take
        row['ours_ms'] = timings[best]['median'] * 1e3
        row['path'] = _label(best)
    if 'median' in timings.get(ref_label, {}):
        row['ref_ms'] = timings[ref_label]['median'] * 1e3
    if row['ours_ms'] is not None and row['ref_ms'] is not None:
        row['ratio'] = (row['ref_ms'] / row['ours_ms'] if kind == 'faster'
                        else row['ours_ms'] / row['ref_ms'])
    judge(row, applies)
    for label in ok[1:] + [lab for lab in extra_labels if 'median' in timings.get(lab, {})]:
        took = timings[label]['median'] * 1e3
        row['notes'].append('{} {}{}'.format(_label(label), ms(took), '' if row['ours_ms'] is None
                                             else ' ({} ours)'.format(times(took /
                                                                            row['ours_ms']))))
    return row


# --------------------------------------------------------------------------- the registry
class Case:
    """A registered case: its name, goal, sizes and the function that builds its row.

    ``goal`` is ``(kind, value)``: 'faster' (reference / ours >= value), 'floor'
    (ours / floor <= value) or 'memory' (peak / IoU matrix bytes < value).
    ``sizes(s)`` returns the case's sizes from a :class:`Sizes` ``s``.
    """

    def __init__(self, name, goal, sizes, build):
        self.name, self.goal, self.sizes, self.build = name, goal, sizes, build


#: name -> :class:`Case`, in the order the table lists them (filled by tools.bench.cases).
CASES = {}
#: Case name -> (goal kind, goal value); filled by :func:`case`.
GOALS = {}


def case(name, goal, sizes):
    """Register the decorated ``build(bench, sizes, rng)`` as case ``name`` (see :class:`Case`)."""
    kind, _ = goal
    if kind not in ('faster', 'floor', 'memory'):
        raise ValueError('goal kind must be faster, floor or memory, got {!r}'.format(kind))

    def register(build):
        CASES[name] = Case(name, goal, sizes, build)
        GOALS[name] = goal
        return build
    return register


class Sizes:
    """Scale-aware sizes: image sides scale by sqrt(scale), counts by scale (with a floor)."""

    def __init__(self, scale):
        self.scale = scale

    def image(self, height, width):
        side = math.sqrt(self.scale)  # so anchor counts scale by `scale`
        return max(64, int(round(height * side))), max(64, int(round(width * side)))

    def count(self, n, low):
        return max(low, int(round(n * self.scale)))


class Bench:
    """What a case's build function gets: the run's settings and :meth:`compare`.

    With ``collect`` (``--baseline``), :meth:`compare` times nothing and returns ``ours``.
    """

    def __init__(self, name, repeat, warmup, scale, seed, check, rss, collect=False):
        self.name, self.repeat, self.warmup, self.scale = name, repeat, warmup, scale
        self.seed, self.check, self.rss, self.collect = seed, check, rss, collect

    def compare(self, what, ours, reference, reference_name='GluonCV', others=None,
                agree=None, notes=(), paired=()):
        """Time ``ours`` against ``reference`` and return the case's row.

        ``ours`` maps a path label (such as ``'NDArray in'``) to ``fn(i)``; the
        first path is the one the ratio uses (the inputs GluonCV gets).
        ``reference`` is ``fn(i)``, named ``reference_name`` in the table.
        ``others`` (label -> ``fn(i)``) are timed too and reported in the notes.
        ``i`` is the run index, for cases with inputs per run. ``agree``, when
        given, is ``(ours(), theirs())`` or ``(ours(), theirs(), compare)``:
        zero-argument calls with subsampling off whose results must match
        (skipped by ``--no-check``). ``notes`` are added as they are. For each
        label of ``others`` in ``paired``, ``row['paired'][label]`` is the
        median over rounds of our first path's time / that label's time in the
        same round (the two run back to back, so drift of the machine's speed
        between rounds cancels).
        """
        if self.collect:
            return dict(ours)
        runners = {'ours:' + label: fn for label, fn in ours.items()}
        runners[reference_name] = reference
        runners.update(others or {})
        timings = time_alternating(runners, self.repeat, self.warmup, keep=bool(paired))
        row = make_row(self.name, what, reference_name, timings, list(runners)[:len(ours)],
                       reference_name, list(others or ()), goal_applies(self.scale))
        first = timings[list(runners)[0]]
        row['paired'] = {label: statistics.median(a / b for a, b in zip(
            first['seconds'], timings[label]['seconds']))
            for label in paired if 'seconds' in first and 'seconds' in timings[label]}
        row['notes'].extend(notes)
        if agree is not None and self.check:
            check_agreement(row, *agree)
        return row


# --------------------------------------------------------------------------- machine
def _version(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:
        return None


def cpu_model():
    """The CPU's model name: ``lscpu``'s "Model name", else /proc/cpuinfo's, else platform's.

    Figures differ between CPUs (an Intel Xeon and an AMD EPYC of the same class differ by
    tens of percent on some cases), so every table names the one it was measured on.
    """
    if shutil.which('lscpu'):
        try:
            out = subprocess.run(['lscpu'], capture_output=True, text=True, timeout=10,
                                 env=dict(os.environ, LC_ALL='C'), check=False).stdout
            for line in out.splitlines():
                if line.startswith('Model name:'):
                    return line.split(':', 1)[1].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown CPU'


def machine_info():
    """Where the numbers come from: CPU, cores, load, library versions and mxnet build."""
    features = mx.runtime.Features()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None
    return {
        'cpu': cpu_model(), 'cores': os.cpu_count(), 'usable_cores': usable,
        'load_avg': [round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None,
        'python': platform.python_version(), 'platform': platform.platform(),
        'numpy': np.__version__, 'mxnet': mx.__version__,
        'mxnet_features': {k: features.is_enabled(k) for k in
                           ('CPU_AVX', 'CPU_AVX2', 'CUDA', 'MKLDNN', 'OPENMP')},
        'gluoncv': _version('gluoncv'),
        'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
        'date': datetime.datetime.now().strftime('%Y-%m-%d %H:%M'),
    }


# --------------------------------------------------------------------------- run
def check_cases(cases):
    """``cases`` as a list of registered names (all by default); ``ValueError`` otherwise."""
    cases = list(CASES) if cases is None else list(cases)
    if not cases or any(c not in CASES for c in cases):
        raise ValueError('cases must be a non-empty subset of {}, got {}'.format(
            list(CASES), cases))
    return cases


def run(cases=None, repeat=7, warmup=1, scale=1.0, seed=0, rss=True, check=True):
    """Run the named cases; returns the report dict that ``--json`` prints.

    ``cases`` names from :data:`CASES` (default all); ``repeat`` (>= 1) timed
    runs after ``warmup`` runs; ``scale`` (> 0) multiplies every size (goals
    are judged only at scale >= 1, see :func:`goal_applies`); ``seed`` seeds
    the inputs and the samplers' RNGs; ``rss`` adds the subprocess peak-RSS
    check to the memory case; ``check`` runs ours and GluonCV once more with
    subsampling off and records whether the results agree
    (``same_as_gluoncv``). ``ValueError`` on a bad argument, before any work.
    A case that fails to build shows n/a with the error; the run goes on.
    """
    cases = check_cases(cases)
    repeat = check_int('repeat', repeat, 1)
    warmup = check_int('warmup', warmup, 0)
    scale = check_scale(scale)
    seed = check_int('seed', seed, 0)
    np.random.seed(seed)
    mx.random.seed(seed)
    rows, sizes = [], {}
    for index, (name, spec) in enumerate(CASES.items()):
        if name not in cases:
            continue
        sizes[name] = spec.sizes(Sizes(scale))
        bench = Bench(name, repeat, warmup, scale, seed, check, rss)
        try:
            rows.append(spec.build(bench, sizes[name], np.random.RandomState(seed + index)))
        except Exception as err:
            rows.append(empty_row(name, name, 'n/a', 'case failed: {}: {}'.format(
                type(err).__name__, err)))
    return {'machine': machine_info(),
            'settings': {'repeat': repeat, 'warmup': warmup, 'scale': scale, 'seed': seed,
                         'check': bool(check), 'sizes': sizes},
            'cases': rows}
