"""One study run: every seed, detector and arm, trained, scored and saved as it finishes."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np

from . import arms as arms_mod
from . import data, evaluate, model, train


@dataclass
class Settings:
    """What a run trains: sizes, steps, and where the data comes from.

    ``voc_root`` None writes the synthetic set per seed under ``out/data``;
    otherwise that VOCdevkit-style root is read (``train_split`` /
    ``val_split`` of ``VOC<year>``) with ``classes``, the same for every seed.
    ``regime``: the synthetic set's (:data:`tools.detector.data.REGIMES`).
    ``curve``: fractions of the training steps after which the run is also
    scored (the learning curve, saved under ``curve`` per run; the end of
    training is always scored).
    """
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    detectors: tuple = ('rcnn', 'ssd')
    arms: dict = field(default_factory=dict)  # detector -> arm names (missing: all)
    train_images: int = 200
    val_images: int = 100
    rcnn_steps: int = 400
    ssd_steps: int = 250
    ssd_batch: int = 4
    width: int = 32
    voc_root: str = None
    classes: tuple = data.CLASSES
    train_split: str = 'train'
    val_split: str = 'val'
    year: int = data.YEAR
    gpus: tuple = ()
    workers: int = 0
    example_image: int = None  # None: the first validation image with a hard box
    regime: str = 'clean'
    curve: tuple = ()

    def context(self):
        return [mx.gpu(int(g)) for g in self.gpus] if self.gpus else [mx.cpu()]


def datasets(settings, seed, out):
    """(train, val) GluonCV datasets for ``seed``; training keeps images with a normal box."""
    if settings.voc_root is None:
        root = data.write_synthetic_voc(
            os.path.join(out, 'data', settings.regime, 'seed-{}'.format(seed)), seed,
            settings.train_images, settings.val_images, model.IMAGE_SHAPE, settings.regime)
        classes, year = data.CLASSES, data.YEAR
    else:
        root, classes, year = settings.voc_root, settings.classes, settings.year
    train_set = data.voc_dataset(root, settings.train_split, classes, year)
    keep = [i for i in range(len(train_set))
            if arms_mod.has_normal_box(data.label_of(train_set, i))]
    if not keep:
        raise ValueError('no training image under {!r} has a box that is not difficult'
                         .format(root))
    if len(keep) < len(train_set):
        train_set = data.Subset(train_set, keep)
    return train_set, data.voc_dataset(root, settings.val_split, classes, year)


def example_index(settings, val_set):
    """The validation image the pictures show: ``settings.example_image``, or the first one
    with a hard box and a normal box (0 if there is none)."""
    if settings.example_image is not None:
        return settings.example_image
    for i in range(len(val_set)):
        label = data.label_of(val_set, i)
        if (label[:, 5] == 1).any() and (label[:, 5] == 0).any():
            return i
    return 0


def curve_steps(settings, detector):
    """The step counts (before the last) at which ``detector``'s runs are also scored."""
    steps = settings.rcnn_steps if detector == 'rcnn' else settings.ssd_steps
    return sorted({max(1, int(round(f * steps))) for f in settings.curve} - {steps})


def _scored(scores):
    """The curve's entry: the metrics without the example detections."""
    return {k: v for k, v in scores.items() if k != 'example'}


def run_arm(settings, arm, seed, train_set, val_set, init_path):
    """Train ``arm`` from the seed's initial weights and score it; one result dict."""
    ctx = settings.context()
    curve = []

    def score_now(steps_done):
        net.hybridize(static_alloc=True)  # an inference graph, then a training graph again
        curve.append(dict(step=steps_done, **_scored(evaluate.evaluate(
            net, arm.detector, val_set, ctx))))
        net.hybridize(static_alloc=True)

    checkpoint = (set(curve_steps(settings, arm.detector)), score_now)
    with arm.context():
        net = model.build(arm.detector, train_set.classes, ctx=ctx, width=settings.width)
        net.load_parameters(init_path, ctx=ctx)
        checksum = train.weights_checksum(net)
        net.hybridize(static_alloc=True)
        if arm.detector == 'rcnn':
            order = train.item_order(len(train_set), settings.rcnn_steps * len(ctx), seed)
            fit = train.train_rcnn(net, arm, train_set, order, seed, ctx,
                                   workers=settings.workers, checkpoint=checkpoint)
        else:
            order = train.item_order(len(train_set), settings.ssd_steps * settings.ssd_batch,
                                     seed)
            fit = train.train_ssd(net, arm, train_set, order, seed, ctx,
                                  batch_size=settings.ssd_batch, workers=settings.workers,
                                  checkpoint=checkpoint)
    net.hybridize(static_alloc=True)  # a new graph for inference (training's has more inputs)
    start = time.time()
    scores = evaluate.evaluate(net, arm.detector, val_set, ctx,
                               keep_image=example_index(settings, val_set))
    if curve:
        curve.append(dict(step=fit['steps'], **_scored(scores)))
    return dict(detector=arm.detector, arm=arm.name, seed=seed, init_checksum=checksum,
                order_checksum=zlib.crc32(order.astype('int64').tobytes()),
                train_images=len(train_set), val_images=len(val_set),
                eval_seconds=time.time() - start, curve=curve, **fit, **scores)


def run(settings, out, results=None, log=print, environments=None):
    """Run each (seed, detector, arm) not yet in ``results``; save ``out/results.json`` after each.

    Arms whose install() option is missing (the OHEM arms before that work is
    merged) are skipped with a logged line. ``environments``: saved with the
    results (see :func:`save`). Returns the list of result dicts (``results``
    plus the new ones).
    """
    os.makedirs(out, exist_ok=True)
    results = list(results or [])
    done = {(r['seed'], r['detector'], r['arm']) for r in results}
    chosen = {}
    for detector in settings.detectors:
        chosen[detector], skipped = arms_mod.runnable(detector, settings.arms.get(detector))
        if skipped:
            log('skipping {} arms {}: this samplers.gluoncv.install() lacks their option'
                .format(detector, ', '.join(skipped)))
    for seed in settings.seeds:
        train_set, val_set = datasets(settings, seed, out)
        for detector in settings.detectors:
            init_path = train.initial_weights(
                os.path.join(out, 'weights', 'seed-{}-{}.params'.format(seed, detector)),
                detector, train_set.classes, seed, width=settings.width)
            for arm in chosen[detector]:
                if (seed, detector, arm.name) in done:
                    continue
                result = run_arm(settings, arm, seed, train_set, val_set, init_path)
                results.append(result)
                save(os.path.join(out, 'results.json'), settings, results,
                     environments=environments)
                log('seed {} {:4s} {:18s} mAP@0.5 {:.3f}  mAP@0.75 {:.3f}  hard FA {:.3f}  '
                    'train {:.0f} s  eval {:.0f} s'.format(
                        seed, detector, arm.name, result['map50'], result['map75'],
                        result['hard_fa'], result['seconds'], result['eval_seconds']))
    return results


def environment(argv=None):
    """What produced a run: git commit (and whether the tree was dirty), package versions,
    python, CPU model and core count, and the command line."""
    import gluoncv
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def git(*args):
        try:
            return subprocess.run(('git',) + args, cwd=root, capture_output=True, text=True,
                                  timeout=20, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    cpu = platform.processor() or None
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    except OSError:  # pragma: no cover - not Linux
        pass
    status = git('status', '--porcelain', '--untracked-files=no')
    versions = {name: _distribution_version(name, module) for name, module in (
        ('mxnet', mx), ('gluoncv', gluoncv), ('numpy', np))}
    return dict(commit=git('rev-parse', 'HEAD'), dirty=bool(status) if status is not None
                else None, python=platform.python_version(), **versions,
                gluoncv_module_version=gluoncv.__version__, cpu=cpu,
                cpu_count=os.cpu_count(), argv=list(sys.argv[1:] if argv is None else argv))


def _distribution_version(name, module):
    """The installed distribution's version (gluoncv 0.10.5's module says '0.11.0' of itself)."""
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return getattr(module, '__version__', None)


def save(path, settings, results, timing=None, environments=None):
    """Write ``results.json``: the settings, every run, the whole run's timing if known, and
    ``environments`` (what produced each part: :func:`environment`; default: kept from the
    file already there, else the current one)."""
    body = dict(settings={k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in vars(settings).items()}, results=results)
    if environments is None:
        environments = load_environments(path) if os.path.exists(path) else None
        environments = environments or [environment()]
    body['environments'] = environments
    if timing is not None:
        body['timing'] = timing
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(body, f, indent=1)
    os.replace(tmp, path)


def load(path):
    """(settings dict, results list) from a saved ``results.json``."""
    with open(path) as f:
        body = json.load(f)
    return body['settings'], body['results']


def load_timing(path):
    """The ``timing`` of a saved ``results.json`` (wall time, load averages), or None."""
    with open(path) as f:
        return json.load(f).get('timing')


def load_environments(path):
    """The ``environments`` list of a saved ``results.json`` ([] for files from before it)."""
    with open(path) as f:
        return json.load(f).get('environments', [])
