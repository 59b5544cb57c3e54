"""Summaries over seeds: mean ± sd per arm, paired differences, the primary family with Holm.

The statistics are the shared ones of :mod:`tools.study.stats`: with ``d = a - b``
over the n seeds both arms finished, the paired t interval
``mean(d) ± t_{1 - alpha/2, n-1} · sd(d) / sqrt(n)`` and the paired t test's p-value.

The primary comparisons (:data:`tools.detector.arms.PRIMARY`, fixed before the
runs) are one family per detector on one metric, mAP@0.5 (:data:`PRIMARY_METRIC`),
corrected with Holm's step-down method (:func:`tools.study.stats.holm`) over the
family's planned size, whether or not every comparison has run yet (a missing one
counts with p = 1). The corrected interval of a comparison is the paired t interval
at the per-comparison level Holm tests it at (``alpha / (m - j + 1)`` at step j, and
the level of the first step that fails for every step after it), so it excludes 0
exactly when Holm rejects. Every other comparison and metric is secondary: an
uncorrected 95 % interval, labelled so.
"""
from __future__ import annotations

import math

import numpy as np

from tools.study.stats import holm, markdown_table, paired_interval, paired_p_value, t_quantile

from .arms import PRIMARY
from .evaluate import METRICS

PRIMARY_METRIC = 'map50'
ALPHA = 0.05
SECONDARY_BASES = ('ours', 'include')
TABLE_METRICS = ('map50', 'map75', 'map50_all', 'map50_small', 'hard_score', 'seconds')


def _values(results, detector, arm, key):
    """seed -> value of ``key`` for ``arm`` (nan values kept)."""
    return {r['seed']: float(r[key]) if r.get(key) is not None else float('nan')
            for r in results if r['detector'] == detector and r['arm'] == arm}


def arms_of(results, detector):
    return list(dict.fromkeys(r['arm'] for r in results if r['detector'] == detector))


def per_arm(results, detector, key, confidence=0.95):
    """arm -> dict(seeds, values, mean, sd, half) over the seeds the arm finished."""
    out = {}
    for arm in arms_of(results, detector):
        by = _values(results, detector, arm, key)
        seeds = sorted(by)
        values = [by[s] for s in seeds]
        n = len(values)
        sd = float(np.std(values, ddof=1)) if n > 1 else float('nan')
        out[arm] = dict(seeds=seeds, values=values, mean=float(np.mean(values)), sd=sd,
                        half=t_quantile(confidence, n - 1) * sd / math.sqrt(n) if n > 1
                        else float('nan'))
    return out


def compare(results, detector, arm, base, key, alpha=ALPHA):
    """Paired ``arm - base`` on ``key`` over the seeds both finished: dict(seeds, diff, low,
    high, p) with the interval at confidence ``1 - alpha``; None if no seed is shared."""
    a, b = _values(results, detector, arm, key), _values(results, detector, base, key)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    x, y = [a[s] for s in seeds], [b[s] for s in seeds]
    diff, low, high = paired_interval(x, y, 1 - alpha)
    return dict(seeds=seeds, diff=diff, low=low, high=high, p=paired_p_value(x, y))


def primary(results, detector, key=PRIMARY_METRIC, alpha=ALPHA):
    """The primary family of ``detector``: one dict per planned comparison, in plan order.

    Each has ``arm``, ``base``, and if both ran: the uncorrected comparison
    (:func:`compare`), ``p_holm`` and ``level`` (:func:`tools.study.stats.holm`
    over the whole planned family) and the corrected interval ``low_holm``,
    ``high_holm``; ``resolved`` is whether Holm rejects at ``alpha``.
    """
    rows = [dict(arm=arm, base=base, comparison=compare(results, detector, arm, base, key))
            for arm, base in PRIMARY.get(detector, ())]
    ps = [r['comparison']['p'] if r['comparison'] and np.isfinite(r['comparison']['p'])
          else 1.0 for r in rows]
    for row, (p_holm, level) in zip(rows, holm(ps, alpha)):
        row.update(p_holm=p_holm, level=level, resolved=bool(p_holm < alpha))
        c = row['comparison']
        if c is not None and len(c['seeds']) > 1:
            a = _values(results, detector, row['arm'], key)
            b = _values(results, detector, row['base'], key)
            _, row['low_holm'], row['high_holm'] = paired_interval(
                [a[s] for s in c['seeds']], [b[s] for s in c['seeds']], 1 - level)
    return rows


def _number(key):
    return '{:.0f}' if key == 'seconds' else '{:.3f}'


def _signed(key):
    return '{:+.0f}' if key == 'seconds' else '{:+.3f}'


def _means_table(results, detector, metrics):
    stats = {k: per_arm(results, detector, k) for k in metrics}
    header = ['arm', 'seeds'] + [METRICS[k] for k in metrics]
    rows = []
    for arm in arms_of(results, detector):
        cells = [arm, str(len(stats[metrics[0]][arm]['seeds']))]
        for k in metrics:
            e = stats[k][arm]
            cells.append(_number(k).format(e['mean']) if not np.isfinite(e['sd']) else
                         (_number(k) + ' ± ' + _number(k)).format(e['mean'], e['sd']))
        rows.append(cells)
    return markdown_table(header, rows)


def _primary_table(results, detector):
    header = ['comparison', 'seeds', 'mean diff', 'Holm-corrected interval (level)',
              'p', 'p (Holm)', 'resolved']
    rows = []
    for r in primary(results, detector):
        c = r['comparison']
        name = '`{}` - `{}`'.format(r['arm'], r['base'])
        if c is None:
            rows.append([name, '0', 'not run', '', '', '', 'no'])
            continue
        interval = ('[{:+.3f}, {:+.3f}] ({:.4f})'.format(r['low_holm'], r['high_holm'],
                                                         1 - r['level'])
                    if 'low_holm' in r else 'one seed: none')
        rows.append([name, str(len(c['seeds'])), '{:+.3f}'.format(c['diff']), interval,
                     '{:.3f}'.format(c['p']), '{:.3f}'.format(r['p_holm']),
                     'yes' if r['resolved'] else 'no'])
    return markdown_table(header, rows)


def _secondary_table(results, detector, base, metrics):
    header = ['arm', 'seeds'] + [METRICS[k] for k in metrics]
    rows = []
    for arm in arms_of(results, detector):
        if arm == base:
            continue
        cells, seeds = [], 0
        for k in metrics:
            c = compare(results, detector, arm, base, k)
            seeds = len(c['seeds'])
            fmt = _signed(k)
            cells.append(fmt.format(c['diff']) if seeds < 2 else
                         (fmt + ' [' + fmt + ', ' + fmt + ']').format(c['diff'], c['low'],
                                                                      c['high']))
        rows.append([arm, str(seeds)] + cells)
    return markdown_table(header, rows)


def _per_class_table(results, detector):
    classes = list(dict.fromkeys(c for r in results if r['detector'] == detector
                                 for c in r.get('ap50', {})))
    header = ['arm'] + ['AP@0.5 {}'.format(c) for c in classes]
    rows = []
    for arm in arms_of(results, detector):
        runs = [r for r in results if r['detector'] == detector and r['arm'] == arm]
        rows.append([arm] + ['{:.3f}'.format(np.mean([r['ap50'][c] for r in runs]))
                             for c in classes])
    return markdown_table(header, rows)


def curve_table(results, detector, key=PRIMARY_METRIC):
    """Markdown: mean ``key`` per arm at each scored step count (runs with a curve only)."""
    runs = [r for r in results if r['detector'] == detector and r.get('curve')]
    if not runs:
        return ''
    steps = sorted({point['step'] for r in runs for point in r['curve']})
    rows = []
    for arm in arms_of(runs, detector):
        mine = [r for r in runs if r['arm'] == arm]
        cells = [arm, str(len(mine))]
        for step in steps:
            values = [p[key] for r in mine for p in r['curve'] if p['step'] == step]
            cells.append('{:.3f}'.format(np.mean(values)) if values else '')
        rows.append(cells)
    return markdown_table(['arm', 'seeds'] + ['step {}'.format(s) for s in steps], rows)


def tables(results, detector, names, metrics=TABLE_METRICS):
    """Markdown: mean ± sd per arm, the primary family (Holm), the secondary comparisons
    (uncorrected), per-class AP and the learning curves. ``names``: the detector's name."""
    if not arms_of(results, detector):
        return '### {}\n\nno run finished yet\n'.format(names)
    parts = ['### {}'.format(names), '', 'Mean ± sd over the seeds each arm finished:', '',
             _means_table(results, detector, metrics)]
    if PRIMARY.get(detector):
        parts += ['', 'Primary comparisons (stated before the runs; mAP@0.5; paired over the '
                      'seeds both arms finished; Holm over the {} planned comparisons, a '
                      'comparison not yet run counted with p = 1):'
                      .format(len(PRIMARY[detector])), '', _primary_table(results, detector)]
    arms = arms_of(results, detector)
    for base in SECONDARY_BASES:
        if base in arms and len(arms) > 1:
            parts += ['', 'Secondary: paired difference from `{}` (mean [95 % t interval, '
                          'uncorrected]):'.format(base), '',
                      _secondary_table(results, detector, base, metrics)]
    parts += ['', 'Secondary: per-class AP@0.5 (difficult ignored), mean over seeds:', '',
              _per_class_table(results, detector)]
    curve = curve_table(results, detector)
    if curve:
        parts += ['', 'Learning curves: mean mAP@0.5 at each scored step count:', '', curve]
    return '\n'.join(parts) + '\n'
