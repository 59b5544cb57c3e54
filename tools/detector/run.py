"""One study run: every seed, detector and arm, trained, scored and saved as it finishes."""
from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass, field

import mxnet as mx

from . import arms as arms_mod
from . import data, evaluate, model, train


@dataclass
class Settings:
    """What a run trains: sizes, steps, and where the data comes from.

    ``voc_root`` None writes the synthetic set per seed under ``out/data``;
    otherwise that VOCdevkit-style root is read (``train_split`` /
    ``val_split`` of ``VOC<year>``) with ``classes``, the same for every seed.
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

    def context(self):
        return [mx.gpu(int(g)) for g in self.gpus] if self.gpus else [mx.cpu()]


def datasets(settings, seed, out):
    """(train, val) GluonCV datasets for ``seed``; training keeps images with a normal box."""
    if settings.voc_root is None:
        root = data.write_synthetic_voc(os.path.join(out, 'data', 'seed-{}'.format(seed)), seed,
                                        settings.train_images, settings.val_images,
                                        model.IMAGE_SHAPE)
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


def run_arm(settings, arm, seed, train_set, val_set, init_path):
    """Train ``arm`` from the seed's initial weights and score it; one result dict."""
    ctx = settings.context()
    with arm.context():
        net = model.build(arm.detector, train_set.classes, ctx=ctx, width=settings.width)
        net.load_parameters(init_path, ctx=ctx)
        checksum = train.weights_checksum(net)
        net.hybridize(static_alloc=True)
        if arm.detector == 'rcnn':
            order = train.item_order(len(train_set), settings.rcnn_steps * len(ctx), seed)
            fit = train.train_rcnn(net, arm, train_set, order, seed, ctx,
                                   workers=settings.workers)
        else:
            order = train.item_order(len(train_set), settings.ssd_steps * settings.ssd_batch,
                                     seed)
            fit = train.train_ssd(net, arm, train_set, order, seed, ctx,
                                  batch_size=settings.ssd_batch, workers=settings.workers)
    net.hybridize(static_alloc=True)  # a new graph for inference (training's has more inputs)
    start = time.time()
    scores = evaluate.evaluate(net, arm.detector, val_set, ctx,
                               keep_image=example_index(settings, val_set))
    return dict(detector=arm.detector, arm=arm.name, seed=seed, init_checksum=checksum,
                order_checksum=zlib.crc32(order.astype('int64').tobytes()),
                train_images=len(train_set), val_images=len(val_set),
                eval_seconds=time.time() - start, **fit, **scores)


def run(settings, out, results=None, log=print):
    """Run each (seed, detector, arm) not yet in ``results``; save ``out/results.json`` after each.

    Returns the list of result dicts (``results`` plus the new ones).
    """
    os.makedirs(out, exist_ok=True)
    results = list(results or [])
    done = {(r['seed'], r['detector'], r['arm']) for r in results}
    for seed in settings.seeds:
        train_set, val_set = datasets(settings, seed, out)
        for detector in settings.detectors:
            init_path = train.initial_weights(
                os.path.join(out, 'weights', 'seed-{}-{}.params'.format(seed, detector)),
                detector, train_set.classes, seed, width=settings.width)
            for arm in arms_mod.select(detector, settings.arms.get(detector)):
                if (seed, detector, arm.name) in done:
                    continue
                result = run_arm(settings, arm, seed, train_set, val_set, init_path)
                results.append(result)
                save(os.path.join(out, 'results.json'), settings, results)
                log('seed {} {:4s} {:18s} mAP@0.5 {:.3f}  mAP@0.75 {:.3f}  hard FA {:.3f}  '
                    'train {:.0f} s'.format(seed, detector, arm.name, result['map50'],
                                            result['map75'], result['hard_fa'],
                                            result['seconds']))
    return results


def save(path, settings, results, timing=None):
    """Write ``results.json``: the settings, every run, and the whole run's timing if known."""
    body = dict(settings={k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in vars(settings).items()}, results=results)
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
