"""Training: one run of an arm (:func:`train`) and the whole paired study (:func:`run_study`)."""
import json
import os
import sys
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon

from .arms import ARMS, DEFAULT_ARMS, _batch_targets, _best_ious, ohem_weights
from .data import make_anchors, make_dataset, _to_tensor
from .model import TinyRPN, evaluate, probe


class _Progress:
    """Progress of one training run on stderr.

    On a terminal: tqdm when installed, else a counter rewritten in place.
    Elsewhere (a log file, CI): one plain line when the run ends.
    """

    def __init__(self, total, desc, stream=None):
        self._stream = sys.stderr if stream is None else stream
        self._tty = hasattr(self._stream, 'isatty') and self._stream.isatty()
        self._bar = None
        if self._tty:
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=total, desc=desc, leave=False, file=self._stream,
                                 dynamic_ncols=True, mininterval=0.5)
            except ImportError:
                pass
        self._total, self._desc, self._done, self._start = total, desc, 0, time.time()

    def update(self, loss):
        self._done += 1
        if self._bar is not None:
            self._bar.set_postfix(loss='{:.3f}'.format(loss), refresh=False)
            self._bar.update(1)
        elif self._tty and (self._done % max(1, self._total // 20) == 0
                            or self._done == self._total):
            self._stream.write('\r{}: {}/{} loss {:.3f}'.format(self._desc, self._done,
                                                              self._total, loss))
            self._stream.flush()
        if self._done == self._total:
            self._loss = loss

    def close(self):
        if self._bar is not None:
            self._bar.close()
        elif self._tty:
            self._stream.write('\n')
        if not self._tty or self._bar is not None:
            self._stream.write('{}: {}/{} steps, loss {:.3f}, {:.0f} s\n'.format(
                self._desc, self._done, self._total, getattr(self, '_loss', float('nan')),
                time.time() - self._start))
            self._stream.flush()


def train(arm, train_set, anchors, steps, seed, batch_size=8, desc=None, sampling_offset=0):
    """Train a fresh TinyRPN under ``arm`` (a name or an :class:`Arm`): (net, history, seconds).

    Every arm starts from the same weights and sees the same batches, both
    from ``seed``; the targets' random subsampling draws from ``np.random``
    (GluonCV's and ours), seeded here with ``seed + sampling_offset``: a
    nonzero offset changes only which anchors are subsampled, which measures
    the run-to-run noise of the training itself. ``history`` holds the per-step
    ``cls`` and ``box`` losses. Losses are normalised like GluonCV's RPN
    losses: summed over the anchors that count, divided by how many count.
    """
    arm = ARMS[arm] if isinstance(arm, str) else arm
    targets = arm.targets()
    if targets is None:
        raise ValueError('arm {!r} needs gluoncv, which is not installed'.format(arm.name))
    mining = ohem_weights(*arm.mining) if arm.mining else None
    mx.random.seed(seed)
    np.random.seed(seed + sampling_offset)
    net = TinyRPN()
    net.initialize(mx.init.Xavier(magnitude=2))
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 2e-3})
    bce = gluon.loss.SigmoidBinaryCrossEntropyLoss()
    huber = gluon.loss.HuberLoss(rho=1 / 9.)
    order = np.random.RandomState(seed)
    history = {'cls': [], 'box': []}
    pending = None  # losses of the previous step, read once the next one is queued
    bar = _Progress(steps, desc or arm.name)
    start = time.time()
    for _ in range(steps):
        pick = order.randint(0, len(train_set), batch_size)
        labels = [train_set[i][1] for i in pick]
        cls_t, box_t, box_m = _batch_targets(targets, labels, anchors)
        x = _to_tensor([train_set[i][0] for i in pick])
        best_ious = _best_ious(labels, anchors) if mining is not None else None
        with autograd.record():
            scores, deltas = net(x)
            weight = cls_t >= 0 if mining is None else mining(scores.detach(), cls_t, best_ious)
            num_cls = mx.nd.maximum(weight.sum(), 1)
            num_box = mx.nd.maximum((cls_t >= 0).sum(), 1)
            cls_loss = (bce(scores, mx.nd.relu(cls_t), weight) * cls_t.shape[1]).sum() / num_cls
            box_loss = (huber(deltas, box_t, box_m) * box_t.shape[1] * 4).sum() / num_box
            loss = cls_loss + box_loss
        loss.backward()
        trainer.step(1)
        if pending is not None:
            _record(history, bar, *pending)
        pending = (cls_loss, box_loss)
    _record(history, bar, *pending)
    bar.close()
    return net, history, time.time() - start


def _record(history, bar, cls_loss, box_loss):
    history['cls'].append(float(cls_loss.asscalar()))
    history['box'].append(float(box_loss.asscalar()))
    bar.update(history['cls'][-1] + history['box'][-1])


def run_study(seeds, arms=DEFAULT_ARMS, steps=500, train_images=512, val_images=128,
              json_path=None, keep=None, with_probe=False, sampling_offset=0):
    """Train and score every arm on every seed; returns (results, histories).

    ``results``: one dict per (seed, arm) run with ``arm``, ``seed``, the
    :data:`METRICS`, ``seconds`` (training, targets included), ``cls`` and
    ``box`` (mean loss over the last 10 % of steps). ``histories``:
    ``{arm: [history per seed]}``. Seeds run one after the other, all arms
    of a seed together, so an interrupted study leaves paired seeds; with
    ``json_path`` the results so far are rewritten there after every run.
    ``keep(seed, arm, net, val_set)`` is called after every run (the demo
    keeps one net per arm for its pictures). ``with_probe`` adds the
    :func:`probe` numbers (on the first 32 validation images) to each row.
    ``sampling_offset`` is passed to :func:`train`.
    """
    anchors = make_anchors()
    results, histories = [], {arm: [] for arm in arms}
    for seed in seeds:
        train_set = make_dataset(train_images, seed=seed)
        val_set = make_dataset(val_images, seed=seed + 1)
        for name in arms:
            net, hist, seconds = train(name, train_set, anchors, steps, seed,
                                       desc='seed {} {}'.format(seed, name),
                                       sampling_offset=sampling_offset)
            tail = max(1, len(hist['cls']) // 10)
            row = dict(arm=name, seed=seed, steps=steps, seconds=seconds,
                       cls=float(np.mean(hist['cls'][-tail:])),
                       box=float(np.mean(hist['box'][-tail:])))
            row.update(evaluate(net, val_set, anchors))
            if with_probe:
                row.update(probe(net, val_set[:32], anchors))
            results.append(row)
            histories[name].append(hist)
            if keep is not None:
                keep(seed, name, net, val_set)
            if json_path:
                _save(json_path, results, histories)
    return results, histories


def _save(path, results, histories):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(dict(results=results, histories=histories), f)
    os.replace(tmp, path)


def load(path):
    """(results, histories) saved by :func:`run_study` (``json_path``)."""
    with open(path) as f:
        data = json.load(f)
    return data['results'], data['histories']
