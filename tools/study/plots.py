"""The study's pictures: training losses per arm and paired differences with their intervals.

Drawn with matplotlib's Agg canvas (the ``viz`` extra), independent of pyplot's backend.
"""
import numpy as np

from .model import METRICS
from .stats import summarize


def figure(width, height):
    """A matplotlib Figure drawn with Agg, independent of pyplot's backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _smooth(values, width):
    """Moving average over ``width`` steps (the whole run when it is shorter)."""
    values = np.asarray(values, dtype=np.float64)
    width = max(1, min(width, len(values)))
    return np.convolve(values, np.ones(width) / width, mode='valid')


#: Line style per arm, in the order the arms were run: colour, dashes, marker, width. Arms
#: on the same targets draw the same curve, so the first ones are wider and the later ones
#: dashed on top of them, and every curve stays visible where they coincide.
LINE_STYLES = (
    dict(color='#1f77b4', linestyle='-', marker='o', linewidth=4.0, alpha=0.55),
    dict(color='#ff7f0e', linestyle=(0, (4, 2)), marker='s', linewidth=2.2),
    dict(color='#2ca02c', linestyle='-', marker='^', linewidth=3.4, alpha=0.6),
    dict(color='#d62728', linestyle=(0, (4, 2)), marker='v', linewidth=2.0),
    dict(color='#9467bd', linestyle=(0, (1, 1.5)), marker='D', linewidth=2.0),
    dict(color='#8c564b', linestyle='-.', marker='P', linewidth=1.6),
    dict(color='#e377c2', linestyle=(0, (6, 2, 1, 2)), marker='X', linewidth=1.6),
    dict(color='#7f7f7f', linestyle=(0, (2, 3)), marker='*', linewidth=1.6),
)


def _coincides(curve, other, rtol=0.02):
    """True when two curves agree within ``rtol`` of their level at every step."""
    return len(curve) == len(other) and bool(np.all(np.abs(curve - other) <= rtol * np.abs(
        other).max()))


def save_loss_png(path, histories, window=25):
    """Training losses per arm (mean over seeds), a panel per loss, smoothed over ``window``.

    Runs shorter than ``4 * window`` steps are smoothed over a quarter of
    their length instead; the axis label gives the window used. Each arm has
    its own colour, dashes and marker (:data:`LINE_STYLES`), and a curve that
    coincides with an earlier arm's (within 2 %) says so in the legend.
    Returns the figure.
    """
    fig = figure(12, 5.0)
    titles = {'cls': 'RPN classification loss (BCE over the anchors that count)',
              'box': 'RPN box regression loss (Huber on the positives, per sampled anchor)'}
    steps = min((len(h['cls']) for runs in histories.values() for h in runs), default=0)
    window = max(1, min(window, steps // 4))
    for i, key in enumerate(('cls', 'box')):
        ax = fig.add_subplot(1, 2, i + 1)
        drawn = {}
        for j, (name, runs) in enumerate(histories.items()):
            if not runs:
                continue
            curve = _smooth(np.mean([h[key][:steps] for h in runs], axis=0), window)
            same = [other for other, c in drawn.items() if _coincides(curve, c)]
            drawn[name] = curve
            style = dict(LINE_STYLES[j % len(LINE_STYLES)])
            ax.plot(np.arange(len(curve)) + window, curve, markevery=(j, max(1, len(curve) // 8)),
                    markersize=6, label='{} ({} seed{}){}'.format(
                        name, len(runs), 's' * (len(runs) > 1),
                        ', same curve as ' + same[0] if same else ''), **style)
        ax.set_title(titles[key], fontsize=9)
        ax.set_xlabel('training step (end of the averaging window)')
        ax.set_ylabel('loss on the arm\'s own targets: mean over seeds,\nmoving average over {} '
                      'step{}'.format(window, 's' * (window > 1)), fontsize=8)
        ax.legend(fontsize='x-small')
    fig.suptitle('Each arm\'s loss is taken on its own targets, so levels are not comparable '
                 'across arms: hard-flag arms leave out the anchors on hard objects (the hardest '
                 'to fit),\nOHEM arms add the hardest negatives. The curves show that every arm '
                 'trains; which arm proposes better is in differences.png, not here.',
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path)
    return fig


def _signed(value, _=None):
    """A tick label with its sign and no trailing zeros: ``+0.05``, ``0``, ``-0.1``."""
    if abs(value) < 1e-12:
        return '0'
    return '{:+.3f}'.format(value).rstrip('0').rstrip('.')


def save_differences_png(path, results, baseline=None, confidence=0.95):
    """Per arm and metric, the paired difference against the baseline with its t-interval.

    Few short signed ticks per axis (+0.1, 0, -0.05), so tick labels never overlap.
    Returns the figure.
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    seeds, arms, stats = summarize(results, baseline, confidence)
    baseline = arms[0] if baseline is None else baseline
    others = [arm for arm in arms if arm != baseline]
    fig = figure(3.2 * len(METRICS), 0.5 * len(others) + 2.2)
    for i, (key, title) in enumerate(METRICS.items()):
        ax = fig.add_subplot(1, len(METRICS), i + 1)
        ax.axvline(0, color='0.4', linewidth=1)
        for y, arm in enumerate(others):
            e = stats[arm][key]
            base = stats[baseline][key]['values']
            ax.plot(np.subtract(e['values'], base), [y] * len(seeds), 'o', color='0.6',
                    markersize=3, zorder=2)
            err = [[e['diff'] - e['low']], [e['high'] - e['diff']]] if len(seeds) > 1 else None
            ax.errorbar([e['diff']], [y], xerr=err, fmt='D', color='#0b5cad', capsize=4,
                        markersize=5, zorder=3)
        ax.set_yticks(range(len(others)))
        ax.set_yticklabels(others if i == 0 else [''] * len(others), fontsize=8)
        ax.set_ylim(len(others) - 0.5, -0.5)
        ax.set_title(title + ('\n(lower is better)' if key == 'hard_fa10' else
                              '\n(higher is better)'), fontsize=8)
        ax.set_xlabel('{} minus {}'.format('arm', baseline), fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        ax.xaxis.set_major_formatter(FuncFormatter(_signed))
        ax.tick_params(labelsize=7)
    fig.suptitle('Paired difference against {} over {} seeds: diamond = mean, bar = {:.0f} % '
                 't-interval, grey dots = single seeds'.format(baseline, len(seeds),
                                                              100 * confidence), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return fig
