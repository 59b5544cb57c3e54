"""How many second-stage rows train per image, and how many are positive, per arm.

``python -m tools.detector.rows [steps] [arm ...]`` trains each arm (default ``ours``, ``ohem``,
``ohem-balanced``) on the voc-like set of seed 0 (150 training, 60 validation images) for
``steps`` (default 150) and prints its mAP@0.5 and the mean (positive, background, ignored)
rows of the second-stage classification loss in the first and last third of training, read
from the targets GluonCV's ``ForwardBackwardTask`` hands to its loss.
"""
import sys

import numpy as np
import mxnet as mx
from mxnet import gluon

from . import arms as arms_mod
from . import run as run_mod


def count_rows(names, steps=150, train_images=150, val_images=60,
               out='/tmp/samplers-detector-rows'):
    """``{arm: (mAP@0.5, rows)}``: each arm of ``names`` trained ``steps`` on seed 0's voc-like
    set, and ``rows`` (calls, 3) the (positive, background, ignored) rows of each call of the
    second-stage classification loss (its targets: > 0, 0, < 0)."""
    counts = []
    original = gluon.loss.SoftmaxCrossEntropyLoss.__call__

    def counting(self, pred, label, *args, **kwargs):
        lab = label.asnumpy()
        counts.append(((lab > 0).sum(), (lab == 0).sum(), (lab < 0).sum()))
        return original(self, pred, label, *args, **kwargs)

    settings = run_mod.Settings(seeds=[0], detectors=('rcnn',), train_images=train_images,
                                val_images=val_images, rcnn_steps=steps, regime='voc-like')
    train_set, val_set = run_mod.datasets(settings, 0, out)
    init = run_mod.train.initial_weights(out + '/w.params', 'rcnn', train_set.classes, 0,
                                         width=settings.width)
    results = {}
    gluon.loss.SoftmaxCrossEntropyLoss.__call__ = counting  # the R-CNN head's loss only
    try:
        for name in names:
            arm, = arms_mod.select('rcnn', [name])
            counts.clear()
            mx.random.seed(0)
            np.random.seed(0)
            result = run_mod.run_arm(settings, arm, 0, train_set, val_set, init)
            results[name] = (result['map50'], np.asarray(counts, float).reshape((-1, 3)))
    finally:
        gluon.loss.SoftmaxCrossEntropyLoss.__call__ = original
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    steps = int(argv[0]) if argv else 150
    names = argv[1:] or ['ours', 'ohem', 'ohem-balanced']
    for name, (map50, c) in count_rows(names, steps).items():
        third = max(1, len(c) // 3)
        print('{:14s} mAP@0.5 {:.3f}  rows per image (positive, background, ignored): '
              'first third {}  last third {}'.format(
                  name, map50, np.round(c[:third].mean(0), 1), np.round(c[-third:].mean(0), 1)),
              flush=True)


if __name__ == '__main__':
    main()
