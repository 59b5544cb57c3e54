"""The statistics of both studies (tools.study and tools.detector): Student t quantiles,
paired intervals and p-values, Holm's correction, markdown tables, and the RPN study's
per-arm summaries.

Numpy and the standard library only: the t distribution is computed in closed form.
"""
import math

import numpy as np

from .model import METRICS


def t_cdf_two_sided(t, df):
    """P(|T| <= t) for Student's T with integer ``df`` >= 1 degrees of freedom, t >= 0.

    The closed form for integer ``df`` (Abramowitz and Stegun 26.7.3-4) with
    ``theta = atan(t / sqrt(df))`` and ``c = cos(theta) ** 2``: odd ``df``:
    ``(2 / pi) * (theta + sin(theta) cos(theta) * (1 + 2/3 c + 2*4/(3*5) c**2 + ...))``
    with ``(df - 3) / 2`` terms after the 1 (none for df = 1, no product at all);
    even ``df``: ``sin(theta) * (1 + 1/2 c + 1*3/(2*4) c**2 + ...)`` with
    ``df / 2 - 1`` terms after the 1.
    """
    df = int(df)
    if df < 1:
        raise ValueError('df must be an integer >= 1, got {!r}'.format(df))
    theta = math.atan(t / math.sqrt(df))
    c = math.cos(theta) ** 2
    if df % 2:
        if df == 1:
            return 2 * theta / math.pi
        term = total = 1.0
        for j in range(1, (df - 3) // 2 + 1):
            term *= c * (2 * j) / (2 * j + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term = total = 1.0
    for j in range(1, df // 2):
        term *= c * (2 * j - 1) / (2 * j)
        total += term
    return math.sin(theta) * total


def t_quantile(confidence, df):
    """The t with ``P(|T| <= t) = confidence`` (e.g. 12.706 for 0.95 and df 1), by bisection."""
    if not 0 < confidence < 1:
        raise ValueError('confidence must be in (0, 1), got {!r}'.format(confidence))
    low, high = 0.0, 1.0
    while t_cdf_two_sided(high, df) < confidence:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf_two_sided(mid, df) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * high:
            break
    return (low + high) / 2


def paired_interval(a, b, confidence=0.95):
    """Mean paired difference ``a - b`` and its Student t interval: ``(mean, low, high)``.

    ``a``, ``b``: equal-length sequences, one value per seed (same seed same
    position). With ``d = a - b`` over n >= 2 pairs, the interval is
    ``mean(d) +- t_{(1 + confidence) / 2, n - 1} * std(d, ddof=1) / sqrt(n)``;
    one pair gives ``(d, nan, nan)`` (no spread to speak of).
    """
    if np.ndim(a) != 1 or np.shape(a) != np.shape(b) or np.size(a) == 0:
        raise ValueError('a and b must be equal-length 1-d sequences, got shapes {} and {}'
                         .format(np.shape(a), np.shape(b)))
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mean = float(d.mean())
    if d.size < 2:
        return mean, float('nan'), float('nan')
    half = t_quantile(confidence, d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return mean, mean - half, mean + half


def paired_p_value(a, b):
    """Two-sided p-value of the paired t test of ``mean(a - b) = 0`` (nan for fewer than 2 pairs;
    0 when every difference is the same non-zero value, 1 when all are 0)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.size < 2:
        return float('nan')
    sd = float(d.std(ddof=1))
    if sd == 0:
        return 1.0 if float(d.mean()) == 0 else 0.0
    t = abs(float(d.mean())) / (sd / math.sqrt(d.size))
    return max(0.0, 1.0 - t_cdf_two_sided(t, d.size - 1))


def holm(p_values, alpha=0.05):
    """Holm's step-down correction of a family: ``[(adjusted_p, level), ...]`` in input order.

    With the m p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, step j
    tests ``p_(j) < alpha / (m - j + 1)`` and the procedure stops at the first
    step that fails (that one and every later one are not rejected). The
    adjusted p-value is ``max_{i <= j} min(1, (m - i + 1) p_(i))`` (reject when
    it is below ``alpha``). ``level`` is the per-comparison alpha of the
    comparison's interval: ``alpha / (m - j + 1)`` up to and including the
    first step that fails, and that step's level after it, so an interval
    excludes 0 exactly when Holm rejects. nan p-values (one seed) get nan.
    """
    p = [float(x) for x in p_values]
    ranked = sorted((i for i in range(len(p)) if np.isfinite(p[i])), key=lambda i: p[i])
    m = len(ranked)
    out = [(float('nan'), float('nan'))] * len(p)
    running, stopped_level = 0.0, None
    for j, i in enumerate(ranked):
        step_level = alpha / (m - j)
        running = max(running, min(1.0, (m - j) * p[i]))
        level = step_level if stopped_level is None else stopped_level
        if stopped_level is None and not p[i] < step_level:
            stopped_level = step_level
        out[i] = (running, level)
    return out


def interval_at(a, b, alpha):
    """``(mean, low, high)`` of ``a - b``: the paired t interval at confidence ``1 - alpha``."""
    return paired_interval(a, b, 1 - alpha)


def markdown_table(header, rows):
    """A markdown table (pipes), so the output can be pasted into the README."""
    out = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    out += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(out)


def summarize(results, baseline=None, confidence=0.95):
    """Per-arm statistics of a study's results.

    ``results``: list of dicts with ``arm``, ``seed`` and the :data:`METRICS`
    keys (what :func:`run_study` returns). Only seeds every arm finished are
    used, so every comparison is paired. Returns ``(seeds, arms, stats)``:
    ``stats[arm][metric]`` is a dict with ``mean``, ``sd`` (ddof 1, nan for one
    seed), ``values`` in seed order, and for arms other than ``baseline``
    (default: the first arm) ``diff``, ``low``, ``high`` of
    :func:`paired_interval` against it.
    """
    arms = list(dict.fromkeys(r['arm'] for r in results))
    by = {(r['arm'], r['seed']): r for r in results}
    seeds = sorted({r['seed'] for r in results})
    seeds = [s for s in seeds if all((arm, s) in by for arm in arms)]
    baseline = arms[0] if baseline is None else baseline
    stats = {}
    for arm in arms:
        stats[arm] = {}
        for key in METRICS:
            values = [by[arm, s][key] for s in seeds]
            entry = dict(values=values, mean=float(np.mean(values)) if values else float('nan'),
                         sd=float(np.std(values, ddof=1)) if len(values) > 1 else float('nan'))
            if arm != baseline and values:
                base = [by[baseline, s][key] for s in seeds]
                entry['diff'], entry['low'], entry['high'] = paired_interval(values, base,
                                                                             confidence)
            stats[arm][key] = entry
    return seeds, arms, stats


def format_tables(results, baseline=None, confidence=0.95):
    """The headline tables: mean +- sd per arm, then paired differences against the baseline."""
    seeds, arms, stats = summarize(results, baseline, confidence)
    if not seeds:
        return 'no seed finished under every arm yet'
    baseline = arms[0] if baseline is None else baseline
    header = ['arm'] + list(METRICS.values())
    one = len(seeds) == 1  # no spread and no interval to show
    means = [[arm] + [('{:.3f}' if one else '{:.3f} ± {:.3f}').format(stats[arm][k]['mean'],
                                                                     stats[arm][k]['sd'])
                      for k in METRICS] for arm in arms]
    diffs = []
    for arm in arms:
        if arm == baseline:
            continue
        cells = []
        for key in METRICS:
            e = stats[arm][key]
            cells.append(('{:+.3f}' if one else '{:+.3f} [{:+.3f}, {:+.3f}]').format(
                e['diff'], e['low'], e['high']))
        diffs.append([arm] + cells)
    return '\n'.join([
        'Mean ± sd over {} seed(s) ({}):'.format(len(seeds), ', '.join(map(str, seeds))), '',
        markdown_table(header, means), '',
        'Paired difference against {} (mean, {:.0f} % t-interval over seeds{}):'.format(
            baseline, 100 * confidence, '; one seed gives no interval' if one else ''), '',
        markdown_table(header, diffs)])
