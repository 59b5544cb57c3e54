"""Summaries over seeds: mean ± sd per arm, and paired differences with 95 % t intervals.

The t interval and the paired difference are the RPN study's
(:func:`tools.study.stats.paired_interval`): with ``d = a - b`` over n seeds,
``mean(d) ± t_{0.975, n-1} · sd(d) / sqrt(n)``.
"""
from __future__ import annotations

import math

import numpy as np

from tools.study.stats import paired_interval, t_quantile

from .evaluate import METRICS

BASELINES = ('include', 'exclude')


def summarize(results, detector, metrics=tuple(METRICS), baselines=BASELINES, confidence=0.95):
    """Per arm of ``detector``: mean, sd and paired differences against each baseline arm.

    Only seeds that every arm finished are used, so every comparison is
    paired. Returns ``(seeds, arms, stats)`` with ``stats[arm][metric]`` a dict
    of ``values`` (seed order), ``mean``, ``sd`` (nan for one seed), ``half``
    (the t half-width of the mean, nan for one seed) and, per baseline other
    than the arm itself, ``vs_<baseline>``: ``(diff, low, high)``.
    """
    rows = [r for r in results if r['detector'] == detector]
    arms = list(dict.fromkeys(r['arm'] for r in rows))
    by = {(r['arm'], r['seed']): r for r in rows}
    seeds = sorted(s for s in {r['seed'] for r in rows} if all((a, s) in by for a in arms))
    stats = {}
    for arm in arms:
        stats[arm] = {}
        for key in metrics:
            values = [float(by[arm, s][key]) for s in seeds]
            n = len(values)
            entry = dict(values=values, mean=float(np.mean(values)) if n else float('nan'),
                         sd=float(np.std(values, ddof=1)) if n > 1 else float('nan'))
            entry['half'] = (t_quantile(confidence, n - 1) * entry['sd'] / math.sqrt(n)
                             if n > 1 else float('nan'))
            for base in baselines:
                if base != arm and base in arms and n:
                    entry['vs_' + base] = paired_interval(
                        values, [float(by[base, s][key]) for s in seeds], confidence)
            stats[arm][key] = entry
    return seeds, arms, stats


def _table(header, rows):
    out = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    return '\n'.join(out + ['| ' + ' | '.join(row) + ' |' for row in rows])


def _number(key):
    return '{:.0f}' if key == 'seconds' else '{:.3f}'


def tables(results, detector, names, metrics=tuple(METRICS), baselines=BASELINES):
    """Markdown: mean ± sd per arm, then one table of paired differences per baseline.

    ``names``: detector name for the headings.
    """
    seeds, arms, stats = summarize(results, detector, metrics, baselines)
    if not seeds:
        return '### {}\n\nno seed finished under every arm yet\n'.format(names)
    one = len(seeds) == 1
    header = ['arm'] + [METRICS[k] for k in metrics]
    means = [[arm] + [(_number(k) if one else _number(k) + ' ± ' + _number(k)).format(
        stats[arm][k]['mean'], stats[arm][k]['sd']) for k in metrics] for arm in arms]
    parts = ['### {}'.format(names), '',
             'Mean ± sd over {} seed(s) ({}):'.format(len(seeds), ', '.join(map(str, seeds))),
             '', _table(header, means)]
    for base in baselines:
        if base not in arms:
            continue
        rows = []
        for arm in arms:
            if arm == base:
                continue
            cells = []
            for k in metrics:
                diff, low, high = stats[arm][k]['vs_' + base]
                fmt = '{:+.0f}' if k == 'seconds' else '{:+.3f}'
                cells.append(fmt.format(diff) if one else
                             (fmt + ' [' + fmt + ', ' + fmt + ']').format(diff, low, high))
            rows.append([arm] + cells)
        parts += ['', 'Paired difference from `{}` (mean [95 % t interval] over seeds{}):'
                  .format(base, '; one seed gives no interval' if one else ''), '',
                  _table(header, rows)]
    return '\n'.join(parts) + '\n'


def resolved(stats, arm, key, base):
    """'+' or '-' if the interval of ``arm - base`` on ``key`` excludes 0, else ''."""
    entry = stats[arm][key].get('vs_' + base)
    if entry is None or not np.isfinite(entry[1]):
        return ''
    return '+' if entry[1] > 0 else '-' if entry[2] < 0 else ''
