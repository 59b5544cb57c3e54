"""Training, shaped like GluonCV's own loops, with every arm of a seed paired.

Pairing: per seed, every arm starts from the same saved initial weights
(:func:`initial_weights`) and sees the same stream of training items
(:class:`PairedStream`): the same image at each position, and the same random
draws of GluonCV's augmentation (python's and numpy's RNG are seeded per
position), whatever the arm does between items. MXNet's RNG (our samplers
draw from it) is seeded at the start of each arm.

Faster R-CNN steps go through GluonCV's ``ForwardBackwardTask`` (from
``gluoncv.model_zoo``, the step GluonCV's training script schedules; under
``install()`` it is the patched one that passes the hard flags). SSD steps are
our loop around GluonCV's network and the arm's loss.
"""
from __future__ import annotations

import os
import random
import time
import zlib

import mxnet as mx
import numpy as np
from gluoncv.data.batchify import FasterRCNNTrainBatchify, Stack, Tuple
from gluoncv.model_zoo.rcnn.faster_rcnn.data_parallel import ForwardBackwardTask
from mxnet import autograd, gluon

from . import model


class _Progress:
    every = 0  # log the losses every this many steps (0: never)
    log = print


PROGRESS = _Progress()


class PairedStream(gluon.data.Dataset):
    """Item ``k`` is ``dataset[order[k]]``, transformed with RNGs seeded from ``(seed, k)``.

    ``dataset``: a GluonCV dataset (already carrying the arm's transforms);
    ``order``: the item indices of the whole run, epoch after epoch. Seeding per
    position makes GluonCV's random augmentation (flip, crop, colour) the same
    for every arm at every position, in worker processes too.
    """

    def __init__(self, dataset, order, seed):
        self._dataset, self._order, self._seed = dataset, np.asarray(order), int(seed)

    def __len__(self):
        return len(self._order)

    def __getitem__(self, k):
        key = zlib.crc32('{}:{}'.format(self._seed, k).encode())
        random.seed(key)
        np.random.seed(key)
        return self._dataset[int(self._order[k])]


def item_order(num_items, num_positions, seed):
    """``num_positions`` item indices: shuffled epochs of ``range(num_items)``, from ``seed``."""
    rng = np.random.RandomState(seed)
    epochs = -(-num_positions // num_items)
    return np.concatenate([rng.permutation(num_items) for _ in range(epochs)])[:num_positions]


def initial_weights(path, detector, classes, seed, **options):
    """Save (once) the initial weights of ``detector`` for ``seed``; returns ``path``."""
    if not os.path.exists(path):
        mx.random.seed(seed)
        net = model.build(detector, classes, **options)
        if detector == 'ssd':  # materialise deferred shapes before saving
            with autograd.train_mode():
                net(mx.nd.zeros((1, 3) + model.IMAGE_SHAPE))
        else:
            net(mx.nd.zeros((1, 3) + model.IMAGE_SHAPE))
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        net.save_parameters(path)
    return path


def weights_checksum(net):
    """A float that differs between networks with different weights (sum of |w| over params)."""
    return float(sum(float(p.data().abs().sum().asscalar()) for p in net.collect_params().values()
                     if p._data is not None))  # pylint: disable=protected-access


def _lr_at(step, steps, base_lr, warmup):
    """Linear warm-up over ``warmup`` steps, then ``base_lr``, x0.1 for the last quarter."""
    if step < warmup:
        return base_lr * (0.1 + 0.9 * step / warmup)
    return base_lr * (0.1 if step >= 0.75 * steps else 1.0)


def _shards(batch, ctx):
    """One loader batch as per-device inputs: a tuple ``(part0, part1, ...)`` per device."""
    parts = []
    for part in batch:
        if isinstance(part, (list, tuple)):  # GluonCV's R-CNN batchify: one entry per device
            parts.append([p.as_in_context(c) for p, c in zip(part, ctx)])
        else:
            parts.append(gluon.utils.split_and_load(part, ctx_list=ctx, even_split=False))
    return list(zip(*parts))


def _trainer(params, optimizer, lr, wd):
    options = {'learning_rate': lr, 'wd': wd, 'clip_gradient': 5.0}
    if optimizer == 'sgd':
        options['momentum'] = 0.9
    return gluon.Trainer(params, optimizer, options)


def train_rcnn(net, arm, dataset, order, seed, ctx, optimizer='adam', lr=1e-3, warmup=50,
               workers=0, checkpoint=None):
    """Train ``net`` (built and loaded in ``arm.context()``) for ``len(order) // len(ctx)`` steps.

    One image per device per step, as GluonCV's R-CNN training; the step is
    GluonCV's ``ForwardBackwardTask`` with GluonCV's four losses. Returns a dict
    with ``seconds`` (training only) and the mean losses over the last tenth
    of the steps. ``checkpoint``: None or ``(steps, fn)``: ``fn(steps_done)`` is
    called after each step count in ``steps`` (the learning curve's
    evaluations; their time is not counted as training).
    """
    transform = arm.train_transform(net)
    stream = PairedStream(dataset.transform(arm.training_label).transform(transform), order, seed)
    loader = gluon.data.DataLoader(stream, batch_size=len(ctx), shuffle=False,
                                   batchify_fn=FasterRCNNTrainBatchify(net, len(ctx)),
                                   num_workers=workers, last_batch='discard')
    params = net.collect_train_params()
    trainer = _trainer(params, optimizer, lr, 1e-4)
    losses = (gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False),
              gluon.loss.HuberLoss(rho=1 / 9.), gluon.loss.SoftmaxCrossEntropyLoss(),
              gluon.loss.HuberLoss())
    task = ForwardBackwardTask(net, trainer, *losses, mix_ratio=1.0, amp_enabled=False)
    steps = len(order) // len(ctx)
    history = []
    mx.random.seed(seed)
    start = time.time()
    for step, batch in enumerate(loader):
        trainer.set_learning_rate(_lr_at(step, steps, lr, warmup))
        outs = [task.forward_backward(shard) for shard in _shards(batch, ctx)]
        trainer.step(len(ctx))
        history.append([float(np.mean([o[i].asscalar() for o in outs])) for i in range(4)])
        if PROGRESS.every and (step + 1) % PROGRESS.every == 0:
            PROGRESS.log('rcnn step {} losses {}'.format(step + 1, np.round(history[-1], 3)))
        start += _checkpoint(checkpoint, step + 1)
    mx.nd.waitall()
    tail = np.asarray(history[-max(1, len(history) // 10):])
    return dict(seconds=time.time() - start, steps=len(history),
                losses=dict(zip(('rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box'),
                                tail.mean(axis=0).tolist())))


def _checkpoint(checkpoint, steps_done):
    """Call ``fn(steps_done)`` of ``checkpoint = (steps, fn)`` at those steps; the seconds it
    took (left out of training's)."""
    if checkpoint is None or steps_done not in checkpoint[0]:
        return 0.0
    mx.nd.waitall()
    began = time.time()
    checkpoint[1](steps_done)
    return time.time() - began


def ssd_anchors(net):
    """The anchors of ``net`` for the study's image shape (GluonCV's transform needs them)."""
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3) + model.IMAGE_SHAPE))
    return anchors


def train_ssd(net, arm, dataset, order, seed, ctx, batch_size=8, optimizer='adam', lr=1e-3,
              warmup=30, workers=0, checkpoint=None):
    """Train ``net`` on ``len(order) // batch_size`` steps of ``batch_size`` images (all devices).

    GluonCV's SSD loop: its transform makes the targets per image, ``Stack``
    batchify, the network under ``autograd.record``, the arm's multibox loss
    on per-device lists, one trainer step per batch. Returns ``seconds``,
    ``steps`` and the mean losses over the last tenth of the steps;
    ``checkpoint`` as in :func:`train_rcnn`.
    """
    transform = arm.train_transform(None, anchors=ssd_anchors(net), shape=model.IMAGE_SHAPE)
    stream = PairedStream(dataset.transform(arm.training_label).transform(transform), order, seed)
    loader = gluon.data.DataLoader(stream, batch_size=batch_size, shuffle=False,
                                   batchify_fn=Tuple(Stack(), Stack(), Stack()),
                                   num_workers=workers, last_batch='discard')
    loss_fn = arm.ssd_loss()
    trainer = _trainer(net.collect_params(), optimizer, lr, 1e-4)
    steps = len(order) // batch_size
    history = []
    mx.random.seed(seed)
    start = time.time()
    for step, batch in enumerate(loader):
        trainer.set_learning_rate(_lr_at(step, steps, lr, warmup))
        data, cls_targets, box_targets = (
            gluon.utils.split_and_load(part, ctx_list=ctx, even_split=False) for part in batch)
        with autograd.record():
            cls_preds, box_preds = [], []
            for x in data:
                cls_pred, box_pred, _ = net(x)
                cls_preds.append(cls_pred)
                box_preds.append(box_pred)
            total, cls_loss, box_loss = loss_fn(cls_preds, box_preds, cls_targets, box_targets)
            autograd.backward(total)
        trainer.step(1)
        history.append([float(sum(part.mean().asscalar() for part in cls_loss) / len(ctx)),
                        float(sum(part.mean().asscalar() for part in box_loss) / len(ctx))])
        if PROGRESS.every and (step + 1) % PROGRESS.every == 0:
            PROGRESS.log('ssd step {} losses {}'.format(step + 1, np.round(history[-1], 3)))
        start += _checkpoint(checkpoint, step + 1)
    mx.nd.waitall()
    tail = np.asarray(history[-max(1, len(history) // 10):])
    return dict(seconds=time.time() - start, steps=len(history),
                losses=dict(zip(('cls', 'box'), tail.mean(axis=0).tolist())))
