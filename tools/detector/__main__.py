"""python -m tools.detector: train GluonCV's Faster R-CNN and SSD under every arm, per seed.

Writes into ``--out`` (default ``detector-study/``): ``results.json`` (every
run, saved as each finishes; ``--resume`` continues from it), ``tables.md``,
``metrics.png``, ``curves.png`` (with ``--curve``) and ``detections.png``. A study
runs in parts (``--first-seed``, ``--seeds``, ``--rcnn-arms``, ``--ssd-arms``), each
into its own ``--out``, combined with ``--merge``. See docs/detector-study.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

from . import arms as arms_mod
from . import data, model, plots, run, stats

QUICK = dict(seeds=1, train_images=24, val_images=12, rcnn_steps=20, ssd_steps=8, ssd_batch=4)


def parser():
    p = argparse.ArgumentParser(prog='python -m tools.detector',
                                description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, default=3, help='number of seeds (default 3)')
    p.add_argument('--first-seed', type=int, default=0)
    p.add_argument('--quick', action='store_true',
                   help='a smoke run, nothing more (its mAP is 0.000 in every arm: it checks '
                        'that the pipeline runs): {}'.format(
                       ', '.join('{}={}'.format(k, v) for k, v in QUICK.items())))
    p.add_argument('--detectors', default='rcnn,ssd', help='comma list of rcnn, ssd')
    p.add_argument('--rcnn-arms', default=None,
                   help='comma list of {} (default all)'.format(
                       ', '.join(a.name for a in arms_mod.RCNN_ARMS)))
    p.add_argument('--ssd-arms', default=None,
                   help='comma list of {} (default all)'.format(
                       ', '.join(a.name for a in arms_mod.SSD_ARMS)))
    p.add_argument('--train-images', type=int, default=run.Settings.train_images,
                   help='synthetic training images per seed')
    p.add_argument('--val-images', type=int, default=run.Settings.val_images,
                   help='synthetic validation images per seed')
    p.add_argument('--rcnn-steps', type=int, default=run.Settings.rcnn_steps,
                   help='Faster R-CNN steps (one image per device each)')
    p.add_argument('--ssd-steps', type=int, default=run.Settings.ssd_steps)
    p.add_argument('--ssd-batch', type=int, default=run.Settings.ssd_batch)
    p.add_argument('--width', type=int, default=run.Settings.width,
                   help='channels of the first backbone convolution')
    p.add_argument('--regime', default='clean', choices=data.REGIMES,
                   help='the synthetic set: clean (hard = small or faint, flags exact) or '
                        'voc-like (occluded, truncated, small normal objects, noisy flags)')
    p.add_argument('--curve', default='',
                   help='comma list of fractions of the training steps after which each run '
                        'is also scored (learning curves), e.g. 0.25,0.5,0.75')
    p.add_argument('--voc-root', default=None,
                   help='your own VOCdevkit-style root (holding VOC<year>/); default: the '
                        'synthetic set, written per seed under OUT/data')
    p.add_argument('--classes', default=None,
                   help='comma list of class names, in label order (needed with --voc-root)')
    p.add_argument('--year', type=int, default=data.YEAR,
                   help='VOC<year> folder (with --voc-root)')
    p.add_argument('--train-split', default='train')
    p.add_argument('--val-split', default='val')
    p.add_argument('--gpus', default='', help="comma list of GPU ids, e.g. '0,1' (default: CPU)")
    p.add_argument('--workers', type=int, default=0, help='DataLoader worker processes')
    p.add_argument('--out', default='detector-study', help='output directory')
    p.add_argument('--resume', action='store_true',
                   help='keep the runs already in OUT/results.json and do the rest')
    p.add_argument('--report-only', action='store_true',
                   help='only remake tables and pictures from OUT/results.json')
    p.add_argument('--merge', nargs='+', default=None, metavar='RESULTS_JSON',
                   help='combine the runs of these results.json files (e.g. one run per '
                        'detector, run side by side) into OUT, then report')
    return p


def _names(p, text, what):
    names = [n.strip() for n in text.split(',') if n.strip()]
    if not names:
        p.error('{} is empty'.format(what))
    return names


def settings_from(p, args):
    """Settings from parsed ``args``; bad values end with the parser's error naming the option."""
    values = {k: getattr(args, k) for k in ('train_images', 'val_images', 'rcnn_steps',
                                            'ssd_steps', 'ssd_batch')}
    seeds = args.seeds
    if args.quick:
        seeds = QUICK['seeds']
        values.update({k: v for k, v in QUICK.items() if k != 'seeds'})
    for key, minimum in (('train_images', 1), ('val_images', 1), ('rcnn_steps', 1),
                         ('ssd_steps', 1), ('ssd_batch', 1)):
        if values[key] < minimum:
            p.error('--{} must be >= {}, got {}'.format(key.replace('_', '-'), minimum,
                                                        values[key]))
    if seeds < 1:
        p.error('--seeds must be >= 1, got {}'.format(seeds))
    if args.width < 4:
        p.error('--width must be >= 4, got {}'.format(args.width))
    detectors = tuple(_names(p, args.detectors, '--detectors'))
    for d in detectors:
        if d not in arms_mod.ARMS:
            p.error('--detectors: unknown detector {!r} (rcnn, ssd)'.format(d))
    chosen = {}
    for detector, text in (('rcnn', args.rcnn_arms), ('ssd', args.ssd_arms)):
        if text is not None:
            chosen[detector] = _names(p, text, '--{}-arms'.format(detector))
            try:
                for arm in arms_mod.select(detector, chosen[detector]):
                    arm.check()
            except ValueError as err:
                p.error('--{}-arms: {}'.format(detector, err))
    classes = data.CLASSES
    if args.voc_root is not None:
        if not os.path.isdir(os.path.join(args.voc_root, 'VOC{}'.format(args.year))):
            p.error('--voc-root: no VOC{} folder under {!r}'.format(args.year, args.voc_root))
        if args.classes is None:
            p.error('--classes is needed with --voc-root (the class names, in label order)')
        classes = tuple(_names(p, args.classes, '--classes'))
    elif args.classes is not None:
        p.error('--classes only applies with --voc-root (the synthetic set has its own)')
    try:
        gpus = tuple(int(g) for g in args.gpus.split(',') if g.strip())
    except ValueError:
        p.error('--gpus must be a comma list of integers, got {!r}'.format(args.gpus))
    if args.workers < 0:
        p.error('--workers must be >= 0, got {}'.format(args.workers))
    try:
        curve = tuple(sorted({float(f) for f in args.curve.split(',') if f.strip()}))
    except ValueError:
        p.error('--curve must be a comma list of numbers, got {!r}'.format(args.curve))
    if any(not 0 < f < 1 for f in curve):
        p.error('--curve: fractions must lie in (0, 1), got {!r}'.format(args.curve))
    if args.regime != 'clean' and args.voc_root is not None:
        p.error('--regime only applies to the synthetic set, not with --voc-root')
    return run.Settings(seeds=list(range(args.first_seed, args.first_seed + seeds)),
                        detectors=detectors, arms=chosen, width=args.width,
                        voc_root=args.voc_root, classes=classes, train_split=args.train_split,
                        val_split=args.val_split, year=args.year, gpus=gpus,
                        workers=args.workers, regime=args.regime, curve=curve, **values)


def _load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return None


def example_images(settings, results, out):
    """detector -> the example validation image of the first seed, in its detections' frame."""
    from PIL import Image
    seeds = sorted({r['seed'] for r in results})
    if not seeds:
        return None, {}
    seed = seeds[0]
    _, val_set = run.datasets(settings, seed, out)
    runs = [r for r in results if r['seed'] == seed and r.get('example')]
    index = runs[0]['example']['index'] if runs else run.example_index(settings, val_set)
    img = val_set[index][0].asnumpy()
    images = {}
    for detector in {r['detector'] for r in results}:
        if detector == 'ssd':  # GluonCV's SSD validation transform resizes to the input shape
            images[detector] = np.asarray(Image.fromarray(img).resize(
                (model.IMAGE_SHAPE[1], model.IMAGE_SHAPE[0]), Image.BILINEAR))
        else:
            images[detector] = img
    return seed, images


def report(settings, results, out, timing=None):
    """Write ``tables.md``, ``metrics.png`` and ``detections.png``; returns the tables' text."""
    parts = ['# Detector study results', '',
             'Data: {}; {} training and {} validation images per seed; Faster R-CNN {} steps, '
             'SSD {} steps of {} images; width {}.'.format(
                 'your VOC root' if settings.voc_root else
                 'synthetic, regime `{}`'.format(settings.regime), settings.train_images,
                 settings.val_images, settings.rcnn_steps, settings.ssd_steps,
                 settings.ssd_batch, settings.width), '']
    if timing:
        parts += ['Wall time {:.0f} s; load average (1, 5, 15 min) at start {} and at end {}; '
                  'seeds {}.'.format(timing['wall_seconds'], timing['load_start'],
                                     timing['load_end'], settings.seeds), '']
    for detector in settings.detectors:
        parts.append(stats.tables(results, detector, plots.DETECTOR_NAMES[detector]))
    text = '\n'.join(parts)
    with open(os.path.join(out, 'tables.md'), 'w') as f:
        f.write(text)
    plots.save_metrics_png(os.path.join(out, 'metrics.png'), results)
    plots.save_curves_png(os.path.join(out, 'curves.png'), results)
    seed, images = example_images(settings, results, out)
    if images:
        plots.save_detections_png(os.path.join(out, 'detections.png'), results, seed, images,
                                  list(settings.classes))
    return text


def _saved_settings(saved):
    saved = dict(dict(regime='clean', curve=()), **saved)  # files from before these settings
    return run.Settings(**dict(saved, detectors=tuple(saved['detectors']),
                               classes=tuple(saved['classes']), gpus=tuple(saved['gpus']),
                               curve=tuple(saved['curve'])))


#: Settings that must agree between the parts of one study (resumed or merged).
SAME_DATA = ('train_images', 'val_images', 'rcnn_steps', 'ssd_steps', 'ssd_batch', 'width',
             'voc_root', 'classes', 'train_split', 'val_split', 'year', 'regime')


def _disagreement(a, b):
    """The :data:`SAME_DATA` settings on which two settings dicts differ."""
    a, b = vars(_saved_settings(a)), vars(_saved_settings(b))
    return [k for k in SAME_DATA if a[k] != b[k]]


def merge(p, paths, out):
    """Combine several results.json (same data settings) into ``out`` and report."""
    results, detectors, walls, loads, environments = [], [], [], [], []
    settings = None
    for path in paths:
        if not os.path.exists(path):
            p.error('--merge: no file {!r}'.format(path))
        saved, runs = run.load(path)
        if settings is not None and _disagreement(settings, saved):
            p.error('--merge: {!r} was run with other {} than {!r}'.format(
                path, ', '.join(_disagreement(settings, saved)), paths[0]))
        settings = settings or saved
        environments += run.load_environments(path)
        detectors += [d for d in saved['detectors'] if d not in detectors]
        seen = {(r['seed'], r['detector'], r['arm']) for r in results}
        results += [r for r in runs if (r['seed'], r['detector'], r['arm']) not in seen]
        timing = run.load_timing(path)
        if timing:
            walls.append(timing['wall_seconds'])
            loads.append((timing['load_start'], timing['load_end']))
    settings = _saved_settings(dict(settings, detectors=detectors,
                                    seeds=sorted({r['seed'] for r in results})))
    timing = None
    if walls:
        timing = dict(wall_seconds=max(walls), load_start=[ld[0] for ld in loads],
                      load_end=[ld[1] for ld in loads], parts=len(walls))
    run.save(os.path.join(out, 'results.json'), settings, results, timing, environments)
    print(report(settings, results, out, timing))
    return 0


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    settings = settings_from(p, args)
    warnings.filterwarnings('ignore', category=UserWarning)
    out = args.out
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, 'results.json')
    results, environments = [], []
    if args.merge:
        return merge(p, args.merge, out)
    if args.resume or args.report_only:
        if not os.path.exists(path):
            p.error('no {} to {}'.format(path, 'resume' if args.resume else 'report from'))
        saved, results = run.load(path)
        environments = run.load_environments(path)
        if args.report_only:
            settings = _saved_settings(saved)
        elif _disagreement(saved, vars(settings)):
            p.error('--resume: {} was run with other {}; use another --out and --merge'.format(
                path, ', '.join('--' + k.replace('_', '-')
                                for k in _disagreement(saved, vars(settings)))))
    elif os.path.exists(path):
        p.error('{} exists: pass --resume to add to it, or another --out'.format(path))
    timing = None
    if not args.report_only:
        load_start, start = _load_average(), time.time()
        environments = environments + [run.environment(argv)]
        results = run.run(settings, out, results, log=lambda line: print(line, flush=True),
                          environments=environments)
        timing = dict(wall_seconds=time.time() - start, load_start=load_start,
                      load_end=_load_average())
        run.save(path, settings, results, timing, environments)
    else:
        timing = run.load_timing(path)
    print(report(settings, results, out, timing))
    print('wrote {}'.format(', '.join(os.path.join(out, n) for n in (
        'results.json', 'tables.md', 'metrics.png', 'curves.png', 'detections.png'))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
