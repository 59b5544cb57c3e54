"""The study's command line: ``python -m tools.study [options]`` (``--help`` lists them).

The demo (:mod:`tools.demo`) uses the same parser with a smaller budget.
"""
import argparse
import os
import sys

import numpy as np

from . import arms
from .data import MAX_SEED
from .model import NMS_THRESH
from .plots import save_differences_png, save_loss_png
from .stats import format_tables, summarize
from .train import load, run_study

DESCRIPTION = ('A seeded study of the RPN sampling rules: several seeds, spread, paired '
               'intervals.')


def parser(prog='python -m tools.study', seeds=10, steps=500):
    """The command-line parser; the demo uses it with a smaller budget."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    p.add_argument('--seeds', type=int, default=seeds,
                   help='number of seeds (default: {})'.format(seeds))
    p.add_argument('--first-seed', type=int, default=0,
                   help='seeds run from this one up (default: 0)')
    p.add_argument('--steps', type=int, default=steps,
                   help='training steps per run (default: {})'.format(steps))
    p.add_argument('--arms', default=','.join(arms.DEFAULT_ARMS),
                   help='comma-separated arms, the first is the baseline; known: {} '
                   '(default: %(default)s)'.format(', '.join(arms.ARMS)))
    p.add_argument('--train-images', type=int, default=512,
                   help='synthetic training images per seed (default: 512)')
    p.add_argument('--val-images', type=int, default=128,
                   help='synthetic validation images per seed (default: 128)')
    p.add_argument('--out', default='samplers-demo',
                   help='folder for study.json and the PNGs (default: samplers-demo)')
    p.add_argument('--sampling-offset', type=int, default=0,
                   help='seed the targets\' random subsampling with seed + this, leaving data, '
                   'weights and batches as they are: the noise of training itself (default: 0)')
    p.add_argument('--probe', action='store_true',
                   help='also print, per run, the live ReLU units and the score spread of the '
                   'trained net (signs of a collapse)')
    p.add_argument('--baseline', default=None,
                   help='the arm the others are compared with (default: the first arm run)')
    p.add_argument('--report', action='store_true',
                   help='train nothing: print the tables and draw the pictures from '
                   'OUT/study.json')
    return p


def check_args(p, args):
    """Argument errors as ``parser.error`` (exit status 2, message naming the option)."""
    for name in ('seeds', 'steps', 'train_images', 'val_images'):
        if getattr(args, name) < 1:
            p.error('--{} must be >= 1, got {}'.format(name.replace('_', '-'),
                                                      getattr(args, name)))
    last = args.first_seed + args.seeds - 1 + max(0, args.sampling_offset)
    if args.first_seed < 0 or last > MAX_SEED or args.first_seed + args.sampling_offset < 0:
        p.error('seeds must lie in [0, {}], got --first-seed {} --seeds {} --sampling-offset {}'
                .format(MAX_SEED, args.first_seed, args.seeds, args.sampling_offset))
    args.arms = [a.strip() for a in args.arms.split(',') if a.strip()]
    unknown = [a for a in args.arms if a not in arms.ARMS]
    if unknown or not args.arms:
        p.error('--arms must name known arms ({}), got {!r}'.format(', '.join(arms.ARMS),
                                                                   ','.join(args.arms)))
    if len(set(args.arms)) != len(args.arms):
        p.error('--arms names an arm twice: {!r}'.format(','.join(args.arms)))
    if args.arms[0] == 'gluoncv' and arms.gluoncv_targets() is None:
        sys.stderr.write('gluoncv is not installed: the baseline is ours without hard flags\n')
        args.arms = [a for a in args.arms if a != 'gluoncv'] or ['ours']
        if args.arms[0] != 'ours':
            args.arms = ['ours'] + [a for a in args.arms if a != 'ours']
    if args.baseline is not None and not args.report and args.baseline not in args.arms:
        p.error('--baseline must be one of the arms run ({}), got {!r}'.format(
            ','.join(args.arms), args.baseline))
    return args


def report(results, histories, out, window=25, baseline=None):
    """Print the tables and draw ``loss_curves.png`` and ``differences.png`` into ``out``."""
    print(format_tables(results, baseline))
    print()
    print('recall@K IoU.T: share of normal val boxes hit at IoU >= T by one of the top-K '
          'proposals of their image (NMS {}); hard FA@10: top-10 proposals on a hard box (IoU '
          '>= 0.5) per hard box. Seeds pair the arms: same data, initial weights and batches.'
          .format(NMS_THRESH))
    seconds = [r['seconds'] for r in results]
    if seconds:
        print('training time per run: {:.0f} s median ({} runs)'.format(
            float(np.median(seconds)), len(seconds)))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print('matplotlib is not installed: no pictures (pip install "gluon-samplers[viz]")')
        return []
    save_loss_png(os.path.join(out, 'loss_curves.png'), histories, window)
    names = ['loss_curves.png']
    if len(summarize(results)[1]) > 1:
        save_differences_png(os.path.join(out, 'differences.png'), results, baseline)
        names.append('differences.png')
    return names


def print_probes(results):
    """One line per run with the :func:`probe` numbers (runs made with ``--probe``)."""
    print()
    print('seed  arm  recall@10 IoU.5  live body/head units (of 64)  score sd within an image'
          '  mean score')
    for r in results:
        if 'score_sd' in r:
            print('{}  {}  {:.3f}  {}/{}  {:.3f}  {:.2f}'.format(
                r['seed'], r['arm'], r['r10_50'], r['body_alive'], r['head_alive'],
                r['score_sd'], r.get('score_mean', float('nan'))))


def main(argv=None):
    """Run the study (or ``--report`` a saved one); returns the list of result dicts."""
    p = parser()
    args = check_args(p, p.parse_args(argv))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, 'study.json')
    if args.report:
        results, histories = load(path)
        if args.baseline is not None and args.baseline not in {r['arm'] for r in results}:
            p.error('--baseline must be one of the arms in {} ({}), got {!r}'.format(
                path, ','.join(dict.fromkeys(r['arm'] for r in results)), args.baseline))
    else:
        results, histories = run_study(
            range(args.first_seed, args.first_seed + args.seeds), args.arms, args.steps,
            args.train_images, args.val_images, json_path=path, with_probe=args.probe,
            sampling_offset=args.sampling_offset)
    names = report(results, histories, args.out, baseline=args.baseline)
    if any('score_sd' in r for r in results):
        print_probes(results)
    print('wrote {} to {}'.format(', '.join(['study.json'] + names), args.out))
    return results


if __name__ == '__main__':
    main()
