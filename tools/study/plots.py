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


def save_loss_png(path, histories, window=25):
    """Training losses per arm (mean over seeds), a panel per loss, smoothed over ``window``.

    Runs shorter than ``4 * window`` steps are smoothed over a quarter of
    their length instead; the axis label gives the window used.
    """
    fig = figure(11, 4.2)
    titles = {'cls': 'RPN classification loss (BCE over the anchors that count)',
              'box': 'RPN box regression loss (Huber on the positives, per sampled anchor)'}
    steps = min((len(h['cls']) for runs in histories.values() for h in runs), default=0)
    window = max(1, min(window, steps // 4))
    for i, key in enumerate(('cls', 'box')):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, runs in histories.items():
            if not runs:
                continue
            curve = _smooth(np.mean([h[key][:steps] for h in runs], axis=0), window)
            ax.plot(np.arange(len(curve)) + window, curve,
                    label='{} ({} seed{})'.format(name, len(runs), 's' * (len(runs) > 1)))
        ax.set_title(titles[key], fontsize=9)
        ax.set_xlabel('training step (end of the averaging window)')
        ax.set_ylabel('loss: mean over seeds, moving average\nover {} step{}'.format(
            window, 's' * (window > 1)), fontsize=8)
        ax.legend(fontsize='x-small')
    fig.suptitle('Each arm is scored on its own targets: OHEM arms weigh hard negatives, so '
                 'their classification loss is not comparable with the others', fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def save_differences_png(path, results, baseline=None, confidence=0.95):
    """Per arm and metric, the paired difference against the baseline with its t-interval."""
    seeds, arms, stats = summarize(results, baseline, confidence)
    baseline = arms[0] if baseline is None else baseline
    others = [arm for arm in arms if arm != baseline]
    fig = figure(3.0 * len(METRICS), 0.5 * len(others) + 2.0)
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
        ax.tick_params(labelsize=7)
    fig.suptitle('Paired difference against {} over {} seeds: diamond = mean, bar = {:.0f} % '
                 't-interval, grey dots = single seeds'.format(baseline, len(seeds),
                                                              100 * confidence), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
