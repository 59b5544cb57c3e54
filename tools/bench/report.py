"""The benchmark's report: the table (markdown that also reads in a terminal), the block
written into docs/bench.md, the ``--baseline`` table and the plot.
"""
import textwrap

import numpy as np

from .harness import GOALS, mb, ms

__all__ = ['TABLE_START', 'TABLE_END', 'DEFAULT_TABLE', 'ratio_text', 'machine_line',
           'format_table', 'table_block', 'check_markers', 'write_table',
           'format_baseline_table', 'plot']

TABLE_START = '<!-- bench:start -->'
TABLE_END = '<!-- bench:end -->'
#: Where ``--write-table`` writes by default, relative to the checkout.
DEFAULT_TABLE = 'docs/bench.md'
#: Notes and explanations are wrapped to this many columns.
WIDTH = 100
MET = {True: 'yes', False: '**no**', None: 'n/a'}
SAME = {True: 'yes', False: '**no**', None: '-'}


def goal_text(goal, short=False):
    """'>= 4x faster', '<= 2x floor', '< 3x IoU matrix'; ``short`` drops the unit."""
    kind, value = goal['kind'], goal['value']
    text = {'faster': '>= {:g}x faster', 'floor': '<= {:g}x floor',
            'memory': '< {:g}x IoU matrix'}[kind].format(value)
    return text.split(' ', 2)[0] + ' ' + text.split(' ', 2)[1] if short else text


def ratio_text(row):
    """The row's ratio in words: '9.1x faster', '2.0x slower', '1.36x floor', '0.88x matrix'."""
    ratio = row['ratio']
    if ratio is None:
        return 'n/a'
    kind = row['goal']['kind']
    if kind == 'faster':
        return '{:.1f}x faster'.format(ratio) if ratio >= 1 else \
            '{:.1f}x slower'.format(1 / ratio)
    return {'floor': '{:.2f}x floor', 'memory': '{:.2f}x matrix'}[kind].format(ratio)


def _cell(text):
    return str(text).replace('|', '\\|').replace('\n', ' ')


def _wrap(text, indent=''):
    return textwrap.fill(text, WIDTH, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def _aligned(header, rows, right=()):
    """A markdown table whose columns are padded to one width, so it also reads as text."""
    cells = [[_cell(c) for c in row] for row in [header] + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return '| ' + ' | '.join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(row, widths))) + ' |'
    rule = '|' + '|'.join('-' * (w + 1) + ':' if i in right else '-' * (w + 2)
                          for i, w in enumerate(widths)) + '|'
    return [line(cells[0]), rule] + [line(row) for row in cells[1:]]


def machine_line(report):
    """One paragraph naming the CPU, libraries and timing settings of ``report``."""
    m, s = report['machine'], report['settings']
    feats = m['mxnet_features']
    yes = {True: 'yes', False: 'no'}
    return _wrap(
        'Machine: {cpu}, {cores} cores ({usable} usable), load {load}; Python {py}, numpy '
        '{np}, mxnet {mx} (AVX {avx}, CUDA {cuda}, MKLDNN {mkl}), gluoncv {gcv}. Median of '
        '{rep} runs after {wu} warm-up, ours and reference alternating; scale {scale:g}; '
        '{date}.'.format(
            cpu=m['cpu'], cores=m['cores'], usable=m['usable_cores'],
            load=' '.join(str(x) for x in m['load_avg'] or []) or 'n/a', py=m['python'],
            np=m['numpy'], mx=m['mxnet'], avx=yes[feats['CPU_AVX']],
            cuda=yes[feats['CUDA']], mkl=yes[feats['MKLDNN']], gcv=m['gluoncv'] or 'n/a',
            rep=s['repeat'], wu=s['warmup'], scale=s['scale'], date=m['date']))


def _cells(row):
    if row['goal']['kind'] == 'memory':
        ours = mb(row['ours_peak_bytes']) if 'ours_peak_bytes' in row else 'n/a'
        ref = mb(row['matrix_bytes']) if 'matrix_bytes' in row else 'n/a'
    else:
        ours, ref = ms(row['ours_ms']), ms(row['ref_ms'])
    met = MET[row['met']] if row.get('goal_applies', True) else 'not judged'
    same = SAME[row.get('same_as_uniform', row.get('same_as_gluoncv'))]
    path = row['path'][:-3] if (row['path'] or '').endswith(' in') else row['path'] or 'n/a'
    return [row['case'], ours, ref, ratio_text(row), goal_text(row['goal'], short=True), met,
            same, path]


def format_table(report):
    """The report as an aligned markdown table, a note per case, a legend and the machine.

    Each case's note says what was timed (sizes), our other paths and the other
    timings with their multiple of ours, and any error.
    """
    rows = report['cases']
    lines = _aligned(['case', 'ours', 'reference', 'ratio', 'goal', 'met?', 'same?',
                      'input'], [_cells(row) for row in rows], right=(1, 2, 3))
    lines += ['', 'Notes:', '']
    lines += [_wrap('- {}: {}'.format(row['case'], '; '.join([row['what']] + row['notes'])),
                    '  ') for row in rows]
    legend = ['ours: our time on the input GluonCV gets (NDArray: the drop-in path); '
              'reference: GluonCV, or the floor of a "floor" goal; the memory case compares '
              'peak bytes with the IoU matrix. same?: the same results as '
              'GluonCV (the balanced cases: as the uniform sampler) with subsampling off; -: not '
              'checked (--no-check, or nothing to compare).']
    if not all(row.get('goal_applies', True) for row in rows):
        legend.append('met?: not judged at scale {:g}: the goals are stated for the full '
                      'sizes (scale 1), and on tiny inputs fixed per-call costs dominate the '
                      'times. Run without --quick to judge them.'.format(
                          report['settings']['scale']))
    for text in legend:
        lines += ['', _wrap(text)]
    lines += ['', machine_line(report)]
    return '\n'.join(lines) + '\n'


def table_block(report, command):
    """The text between the markers: where it comes from (command and CPU), then the table."""
    return _wrap('Produced by `{}` on {} (not typed by hand); figures from another CPU '
                 'differ.'.format(command, report['machine']['cpu'])) + '\n\n' + \
        format_table(report)


def check_markers(text, path):
    """The span between the markers in ``text``; ``ValueError`` naming ``path`` without them."""
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError('{} must contain {!r} followed by {!r}'.format(
            path, TABLE_START, TABLE_END))
    return start + len(TABLE_START), end


def write_table(path, block):
    """Replace the text between the bench markers of file ``path`` by ``block``.

    Everything outside the markers, and the markers themselves, is kept.
    ``ValueError`` naming the file if the markers are missing or out of order.
    """
    with open(path, encoding='utf-8') as f:
        text = f.read()
    begin, end = check_markers(text, path)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text[:begin] + '\n' + block.strip('\n') + '\n' + text[end:])


def format_baseline_table(report):
    """The ``--baseline`` report as a markdown table and a paragraph on how it was measured."""
    rows = []
    for row in report['cases']:
        interval = ('n/a' if row['low'] is None else
                    '[{:.3f}, {:.3f}]'.format(row['low'], row['high']))
        ratio = 'n/a' if row['ratio'] is None else '{:.3f}'.format(row['ratio'])
        rows.append([row['case'], row['path'] or 'n/a', ms(row['base_ms']), ms(row['now_ms']),
                     ratio, interval, '; '.join(row['notes'])])
    lines = _aligned(['case', 'path', 'baseline', 'now', 'now / baseline', '95% interval',
                      'notes'], rows, right=(2, 3, 4))
    s, m = report['settings'], report['machine']
    return '\n'.join(lines) + '\n\n' + _wrap(
        'Baseline {} ({}) against the working tree, in one process: median of {} rounds '
        'after {} warm-up, alternating; ratio = median of per-round now / baseline (> 1: '
        'slower now), 95% bootstrap interval; GluonCV not timed; scale {:g}. {}, load {}; '
        'mxnet {}; {}.'.format(
            s['baseline'], s['baseline_commit'][:10], s['repeat'], s['warmup'], s['scale'],
            m['cpu'], ' '.join(str(x) for x in m['load_avg'] or []) or 'n/a', m['mxnet'],
            m['date'])) + '\n'


def plot(report, path):
    """Bar chart of ``report`` to ``path``: times (log scale) and the memory multiple."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    timed = [r for r in report['cases'] if r['goal']['kind'] != 'memory']
    memory = [r for r in report['cases'] if r['goal']['kind'] == 'memory']
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={'width_ratios': [5, 1]})
    x = np.arange(len(timed))
    ours = [r['ours_ms'] or 0 for r in timed]
    ref = [r['ref_ms'] or 0 for r in timed]
    axes[0].bar(x - 0.2, ours, 0.4, label='ours')
    axes[0].bar(x + 0.2, ref, 0.4, label='GluonCV (rpn-sampler: the floor)')
    axes[0].set_xticks(x)
    axes[0].set_xticklabels([r['case'] for r in timed])
    if any(v > 0 for v in ours + ref):
        axes[0].set_yscale('log')
    axes[0].set_ylabel('median ms (lower is better)')
    axes[0].legend(loc='upper center', bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    for r, xi in zip(timed, x):
        label = ratio_text(r) + {True: '', False: ' (goal missed)', None: ''}[r['met']]
        axes[0].annotate(label, (xi, max(r['ours_ms'] or 0, r['ref_ms'] or 0) or 1),
                         ha='center', va='bottom', fontsize=8)
    mult = [r['ratio'] or 0 for r in memory]
    axes[1].bar(np.arange(len(memory)), mult, 0.5, color='C2')
    axes[1].set_xticks(np.arange(len(memory)))
    axes[1].set_xticklabels(['rpn-sampler\nmemory'] * len(memory))
    goal = GOALS['rpn-sampler-memory'][1]
    axes[1].axhline(goal, color='k', ls='--', lw=1, label='goal')
    axes[1].set_ylim(0, max([goal * 1.3] + [v * 1.1 for v in mult]))
    axes[1].set_ylabel('peak / IoU matrix bytes')
    axes[1].legend(loc='upper right', fontsize=8)
    m = report['machine']
    fig.suptitle('samplers vs GluonCV {} - {}, {} cores, mxnet {} (AVX {}) - {}'.format(
        m['gluoncv'] or 'n/a', m['cpu'], m['cores'], m['mxnet'],
        'yes' if m['mxnet_features']['CPU_AVX'] else 'no', m['date']), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


