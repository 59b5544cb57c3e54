"""A seeded study of the RPN sampling rules: several seeds, spread, paired intervals.

Run it as ``python -m samplers.study [--seeds N] [--steps S] [--arms A,B,...]
[--out DIR]``; ``python -m samplers.demo`` (``make demo``) is the same study
with a small budget. For every seed it

1. draws a seeded synthetic detection set (:func:`make_dataset`): shapes of
   three classes on noisy backgrounds; tiny or faint shapes are flagged hard
   (label column 5, like VOC's ``difficult``);
2. trains the same small RPN (:class:`TinyRPN`) from the same initial weights
   on the same batches under every arm (see :data:`ARMS`), so the arms are
   *paired* by seed: they differ only in how anchors are labelled and
   weighted;
3. scores each net on the seed's validation set (:func:`evaluate`): recall of
   normal objects by the top 10 and top 100 proposals at IoU 0.5 and 0.7, and
   false alarms on hard objects (top-10 proposals that land on a hard box).

It prints per arm the mean and standard deviation over seeds, and for every
arm against the baseline (the first arm, GluonCV's generator by default, or
``--baseline``) the mean paired difference with a 95 % Student t interval
(:func:`paired_interval`, numpy only). Results go to ``study.json`` in
``--out`` after every run, so an interrupted study keeps its finished seeds
(``--report`` prints the tables from that file), and the pictures
``loss_curves.png`` and ``differences.png`` are drawn there. ``--probe``
adds signs of a collapsed net (:func:`probe`); ``--sampling-offset``
reseeds only the targets' subsampling, to measure the training's own noise.

Nothing here is tuned for one arm to win: the numbers are whatever comes out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn

from .boxes import box_iou

__all__ = ['ARMS', 'Arm', 'make_dataset', 'make_anchors', 'TinyRPN', 'train', 'evaluate',
           'top_proposals', 'probe', 'METRICS', 't_quantile', 'paired_interval', 'summarize',
           'format_tables', 'run_study', 'main']

IMAGE_SIZE = 128
STRIDE = 8
ANCHOR_SIZES = (16, 23, 32, 45, 64)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
NUM_CLASSES = 3  # rectangle, ellipse, triangle
NMS_THRESH = 0.7  # proposals are de-duplicated at this IoU, as in Faster R-CNN
MAX_SEED = 2 ** 32 - 2  # numpy takes seeds below 2**32, and the validation set uses seed + 1
HARD_IOF = 0.5  # the hard_iof_thresh of the 'hard+iof' arm (mmdetection's ignore_iof_thr)


# --------------------------------------------------------------------------- data
def _shape_mask(kind, x1, y1, x2, y2, yy, xx):
    """Boolean (H, W) mask of a rectangle (0), ellipse (1) or triangle (2) in the box."""
    inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
    if kind == 0:
        return inside
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    if kind == 1:
        return ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
    # Apex at the top centre, base along the bottom edge.
    half_width = rx * (yy + 0.5 - y1) / (y2 - y1)
    return inside & (np.abs(xx + 0.5 - cx) <= half_width)


def _draw_image(rng, size):
    """One (size, size, 3) uint8 image and its (M, 6) label [x1, y1, x2, y2, class, hard]."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-0.4, 0.4, (2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    img = img + rng.normal(0, 12, (size, size, 3))
    boxes = []
    count = rng.randint(1, 4) + rng.randint(0, 3)
    for _ in range(count):
        tiny = rng.uniform() < 0.15
        faint = not tiny and rng.uniform() < 0.2
        side = rng.uniform(4, 9) if tiny else rng.uniform(14, 56)
        w = side * rng.uniform(0.7, 1.4)
        h = side * rng.uniform(0.7, 1.4)
        x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        x2, y2 = x1 + w, y1 + h
        kind = rng.randint(NUM_CLASSES)
        mask = _shape_mask(kind, x1, y1, x2, y2, yy, xx)
        if not mask.any():
            continue
        under = img[mask].mean(axis=0)
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - under).max() < 80:  # make normal shapes stand out
            colour = np.where(under > 127, under - 110, under + 110)
        alpha = rng.uniform(0.08, 0.18) if faint else 1.0
        img[mask] = (1 - alpha) * img[mask] + alpha * colour
        boxes.append([x1, y1, x2, y2, kind, float(tiny or faint)])
    label = np.array(boxes, dtype=np.float32).reshape(-1, 6)
    return np.clip(img, 0, 255).astype(np.uint8), label


def make_dataset(num_images, seed, size=IMAGE_SIZE):
    """``num_images`` synthetic (image, label) pairs, the same for the same ``seed``.

    image: (size, size, 3) uint8; label: (M, 6) float32 rows
    [x1, y1, x2, y2, class, hard], M >= 0. Tiny shapes (a side of 4-9 px,
    each side then stretched by 0.7-1.4, so 2.8-12.6 px) and shapes drawn at
    8-18 % opacity are flagged hard (about a third of the objects).
    """
    rng = np.random.RandomState(seed)
    return [_draw_image(rng, size) for _ in range(num_images)]


def make_anchors(size=IMAGE_SIZE, stride=STRIDE, sizes=ANCHOR_SIZES, ratios=ANCHOR_RATIOS):
    """(H * W * A, 4) corner anchors, ordered (row, column, anchor) like the RPN output."""
    shapes = []
    for s in sizes:
        for r in ratios:  # r = height / width, area s * s
            w = s / np.sqrt(r)
            shapes.append((w, w * r))
    shapes = np.array(shapes)
    cells = size // stride
    centre = (np.arange(cells) + 0.5) * stride
    cy, cx = np.meshgrid(centre, centre, indexing='ij')
    c = np.stack([cx, cy], axis=-1)[:, :, None, :]  # (H, W, 1, 2)
    half = shapes[None, None] / 2                   # (1, 1, A, 2)
    return np.concatenate([c - half, c + half], axis=-1).reshape(-1, 4).astype(np.float32)


def _inside(anchors, size=IMAGE_SIZE):
    """(N,) bool: anchors inside the image, the only ones either target rule trains."""
    return ((anchors[:, :2] >= 0) & (anchors[:, 2:] < size)).all(axis=1)


def _to_tensor(images):
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in about [-1, 1]."""
    return mx.nd.array(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)


# --------------------------------------------------------------------------- model
class TinyRPN(gluon.HybridBlock):
    """Four stride-2/1 convolutions (stride 8 overall) and an RPN head.

    Returns ``(scores (B, N), deltas (B, N, 4))`` with N = H/8 * W/8 * A in
    the anchor order of :func:`make_anchors`.
    """

    def __init__(self, num_anchors=len(ANCHOR_SIZES) * len(ANCHOR_RATIOS), **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential()
            for channels, stride in ((16, 2), (32, 2), (48, 2), (64, 1)):
                self.body.add(nn.Conv2D(channels, 3, strides=stride, padding=1),
                              nn.Activation('relu'))
            self.head = nn.Conv2D(64, 3, padding=1, activation='relu')
            self.score = nn.Conv2D(num_anchors, 1)
            self.loc = nn.Conv2D(num_anchors * 4, 1, weight_initializer=mx.init.Normal(0.001))

    def hybrid_forward(self, F, x):  # pylint: disable=arguments-differ
        feat = self.head(self.body(x))
        scores = self.score(feat).transpose((0, 2, 3, 1)).reshape((0, -1))
        deltas = self.loc(feat).transpose((0, 2, 3, 1)).reshape((0, -1, 4))
        return scores, deltas


def _decode(anchors, deltas):
    """GluonCV's box-centre decoding with stds (1, 1, 1, 1), numpy."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    dx, dy, dw, dh = (deltas[..., i] for i in range(4))
    dw, dh = np.clip(dw, -4, 4), np.clip(dh, -4, 4)
    cx, cy, w, h = ax + dx * aw, ay + dy * ah, aw * np.exp(dw), ah * np.exp(dh)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def top_proposals(net, images, anchors, top_k=100):
    """Per image, the (<= top_k, 4) best proposals, best first, after clipping and NMS.

    Only anchors inside the image propose (the others are never trained by
    either target rule). Greedy NMS at IoU :data:`NMS_THRESH` walks the
    boxes in score order (:func:`samplers.nms.greedy_nms_first`), so the
    first 10 of the top 100 are the top 10.
    """
    from .nms import greedy_nms_first
    inside = _inside(anchors)
    out = []
    for start in range(0, len(images), 32):
        scores, deltas = net(_to_tensor(images[start:start + 32]))
        boxes = np.clip(_decode(anchors[inside], deltas.asnumpy()[:, inside]), 0, IMAGE_SIZE)
        for b, s in zip(boxes.astype(np.float32), scores.asnumpy()[:, inside]):
            ranked = b[np.argsort(-s, kind='stable')]
            out.append(ranked[greedy_nms_first(ranked, top_k, NMS_THRESH)])
    return out


#: The metrics :func:`evaluate` returns, in table order: key -> column title.
METRICS = {
    'r10_50': 'recall@10 IoU.5',
    'r100_50': 'recall@100 IoU.5',
    'r10_70': 'recall@10 IoU.7',
    'r100_70': 'recall@100 IoU.7',
    'hard_fa10': 'hard FA@10',
}


def evaluate(net, dataset, anchors):
    """Proposal recall on normal objects and false alarms on hard ones; a dict of :data:`METRICS`.

    ``r{K}_{T}``: the share of normal (not hard) validation boxes that one of
    their image's top-K proposals overlaps at IoU >= T/100, K in (10, 100),
    T in (50, 70). ``hard_fa10``: the top-10 proposals that overlap a hard
    box at IoU >= 0.5, counted over the set and divided by the number of hard
    boxes (0.2 = one false alarm per five hard objects; a hard-aware rule
    should lower it, since those objects are not to be proposed). Images
    without normal (hard) boxes add nothing to the denominators.
    """
    found = {key: 0 for key in METRICS if key != 'hard_fa10'}
    normal_total = hard_total = hard_hits = 0
    proposals = top_proposals(net, [img for img, _ in dataset], anchors)
    for props, (_, label) in zip(proposals, dataset):
        hard = label[:, 5] > 0
        normal_total += int((~hard).sum())
        hard_total += int(hard.sum())
        if len(props) == 0 or len(label) == 0:
            continue
        ious = box_iou(label[:, :4], props)  # (M, K), proposals best first
        for key in found:
            k, t = (int(v) for v in key[1:].split('_'))
            found[key] += int((ious[~hard, :k] >= t / 100).any(axis=1).sum())
        hard_hits += int((ious[hard, :10] >= 0.5).any(axis=0).sum())
    out = {key: value / max(normal_total, 1) for key, value in found.items()}
    out['hard_fa10'] = hard_hits / max(hard_total, 1)
    return out


def probe(net, dataset, anchors):
    """Signs of a collapsed RPN on ``dataset``: live ReLU units and the spread of the scores.

    Returns ``body_alive`` and ``head_alive``, the channels of the last body
    convolution and of the head that are > 0 somewhere on the images (of 64
    each), ``score_sd``, the standard deviation of the inside anchors'
    scores within an image, averaged over images, and ``score_mean``, their
    mean. A collapsed net scores every anchor alike: a ``score_sd`` near 0
    and few live units.
    """
    x = _to_tensor([img for img, _ in dataset])
    body = net.body(x)
    head = net.head(body).asnumpy()
    scores = net(x)[0].asnumpy()[:, _inside(anchors)]
    return dict(body_alive=int((body.asnumpy().max(axis=(0, 2, 3)) > 0).sum()),
                head_alive=int((head.max(axis=(0, 2, 3)) > 0).sum()),
                score_sd=float(scores.std(axis=1).mean()), score_mean=float(scores.mean()))


# --------------------------------------------------------------------------- arms
class Arm:
    """One way of choosing which anchors train the RPN's classifier, and as what.

    ``targets()`` builds a callable ``(label (M, 6), anchors (N, 4)) ->
    (cls_target, box_target, box_mask)`` (GluonCV's encoding), or returns
    None when it cannot be built (GluonCV missing). ``mining``, when set, is
    ``(ratio, min_samples, keep_random)`` of the OHEM step (see
    :func:`ohem_weights`).
    """

    def __init__(self, name, summary, targets, mining=None):
        self.name, self.summary, self.targets, self.mining = name, summary, targets, mining

    def __repr__(self):
        return 'Arm({!r})'.format(self.name)


def gluoncv_targets():
    """GluonCV's own RPN target generator (no hard flags), or None without gluoncv."""
    try:
        from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator
    except ImportError:
        return None
    generator = RPNTargetGenerator()

    def targets(label, anchors):
        return generator(mx.nd.array(label[:, :4]), mx.nd.array(anchors), IMAGE_SIZE, IMAGE_SIZE)
    return targets


def ours_targets(use_hard=True, hard_iof_thresh=None, **draw):
    """This package's RPN target generator, given the hard flags (label column 5) or not.

    ``draw``: the generator's balanced-draw options (``pos_sampler``, ``neg_sampler``).
    """
    from .rpn import RPNTargetGenerator
    generator = RPNTargetGenerator(hard_iof_thresh=hard_iof_thresh, **draw)

    def targets(label, anchors):
        hard = label[:, 5] if use_hard else None
        return generator(label[:, :4], anchors, IMAGE_SIZE, IMAGE_SIZE, hard=hard)
    return targets


#: The arms, by name. Every arm keeps GluonCV's defaults (256 anchors per
#: image, at most half positive, IoU >= 0.7 positive, < 0.3 negative).
ARMS = {arm.name: arm for arm in (
    # The baseline: what a GluonCV user trains with today. Hard objects are
    # taught as objects like any other.
    Arm('gluoncv', "GluonCV's RPNTargetGenerator, no hard flags", gluoncv_targets),
    # The same rule in our implementation. It isolates the implementation from
    # the hard flags: it should match the baseline within noise (the documented
    # differences only touch degenerate boxes and invalid anchors).
    Arm('ours', 'samplers RPNTargetGenerator, no hard flags',
        lambda: ours_targets(use_hard=False)),
    # Hard flags: a hard box gives no positive, anchors with IoU >= 0.3 on it
    # are ignored instead of sampled as background.
    Arm('hard', 'samplers RPNTargetGenerator + hard flags', ours_targets),
    # Also ignore anchors lying mostly inside a hard box (IoF >= 0.5: the
    # intersection covers half the anchor's own area). IoU misses them when the
    # anchor is much smaller than the box: a 16 px anchor inside a 40 px hard box
    # has IoU 0.16 and would be sampled as background on the hard object.
    Arm('hard+iof', 'samplers RPNTargetGenerator + hard flags, hard_iof_thresh={}'.format(
        HARD_IOF), lambda: ours_targets(hard_iof_thresh=HARD_IOF)),
    # OHEM as it is sound for an RPN: the random quota sample stays (so every
    # step still teaches ordinary background everywhere in the image) and the
    # hardest background anchors are added on top, 1 per positive and at least
    # 16 per image. With top-loss negatives only, pushing down exactly the
    # highest scores kills the ReLU units that fire there and the net collapses
    # to one score everywhere (see 'hard+ohem-only' and ``--probe``).
    Arm('hard+ohem', 'hard flags; random sample + OHEM negatives (1 per positive, >= 16)',
        ours_targets, mining=(1, 16, True)),
    # Balanced draws (Libra R-CNN, mmdetection), not in the default set: the same
    # candidates and quotas as 'hard', only which candidates fill the quota changes.
    # IoU-balanced negatives draw the background evenly over [0, 0.3) in 3 bins, so
    # the rarer near-miss anchors (IoU 0.1-0.3) are not drowned by empty background.
    Arm('hard+iou-balanced', 'hard flags; IoU-balanced negatives (3 bins)',
        lambda: ours_targets(neg_sampler='iou_balanced')),
    # Instance-balanced positives split the positive quota evenly over the boxes,
    # so one large object does not take most of it.
    Arm('hard+instance-balanced', 'hard flags; instance-balanced positives',
        lambda: ours_targets(pos_sampler='instance_balanced')),
    # An OHEM-only arm, a diagnostic (not in the default set):
    # only the top-loss negatives, 3 per positive and at least 32 per image
    # (with about 4 positives per image, the 32 decide: about 8 to 1).
    Arm('hard+ohem-only', 'hard flags; OHEM negatives only (3 per positive, >= 32)',
        ours_targets, mining=(3, 32, False)),
)}
DEFAULT_ARMS = ('gluoncv', 'ours', 'hard', 'hard+iof', 'hard+ohem')


def ohem_weights(ratio, min_samples, keep_random):
    """A callable ``(scores (B, N), cls_t (B, N), best_ious (B, N)) -> (B, N) 0/1 weights``.

    The classification loss counts the anchors whose weight is 1: every
    positive of the targets, the ``OHEMSampler`` negatives (per image
    ``max(min_samples, floor(ratio * num_pos))`` anchors whose best IoU with
    any box, hard ones included, is below 0.3, largest background loss
    ``log(1 + exp(score))`` first), and with ``keep_random`` also the
    targets' own randomly sampled negatives.
    """
    from .ohem import OHEMSampler
    sampler = OHEMSampler(ratio, min_samples=min_samples, thresh=0.3)

    def weights(scores, cls_t, best_ious):
        matched = mx.nd.where(cls_t > 0, mx.nd.zeros_like(cls_t), -mx.nd.ones_like(cls_t))
        logits = mx.nd.stack(mx.nd.zeros_like(scores), scores, axis=-1)  # sigmoid as 2-class
        mined = sampler(matched, logits, best_ious) != 0
        return mx.nd.maximum(mined, cls_t >= 0) if keep_random else mined
    return weights


def _batch_targets(targets, labels, anchors):
    """Stacked (B, N), (B, N, 4), (B, N, 4) float32 NDArrays for one batch."""
    per_image = zip(*(targets(label, anchors) for label in labels))
    return tuple(mx.nd.array(np.stack([np.asarray(p, np.float32) for p in parts]))
                 for parts in per_image)


def _best_ious(labels, anchors):
    """(B, N) best IoU of each anchor with any box, hard ones included; 1 outside the image.

    What OHEM is told, so that it never mines an anchor that lies on an
    object (hard or not) or that the RPN targets leave out (across the border).
    """
    inside = _inside(anchors)
    out = np.ones((len(labels), len(anchors)), np.float32)
    for row, label in zip(out, labels):
        best = box_iou(anchors, label[:, :4]).max(axis=1) if len(label) else 0
        row[inside] = np.broadcast_to(best, row.shape)[inside]
    return mx.nd.array(out)


# --------------------------------------------------------------------------- training
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


# --------------------------------------------------------------------------- statistics
def t_cdf_two_sided(t, df):
    """P(|T| <= t) for Student's T with integer ``df`` >= 1 degrees of freedom, t >= 0.

    The closed form for integer ``df`` (Abramowitz and Stegun 26.7.3-4) with
    ``theta = atan(t / sqrt(df))`` and ``c = cos(theta) ** 2``: odd ``df``:
    ``(2 / pi) * (theta + sin(theta) cos(theta) * (1 + 2/3 c + 2*4/(3*5) c**2 + ...))``
    with ``(df - 3) / 2`` terms after the 1 (none for df = 1, no product at all);
    even ``df``: ``sin(theta) * (1 + 1/2 c + 1*3/(2*4) c**2 + ...)`` with
    ``df / 2 - 1`` terms after the 1.
    """
    df = int(df)
    if df < 1:
        raise ValueError('df must be an integer >= 1, got {!r}'.format(df))
    theta = math.atan(t / math.sqrt(df))
    c = math.cos(theta) ** 2
    if df % 2:
        if df == 1:
            return 2 * theta / math.pi
        term = total = 1.0
        for j in range(1, (df - 3) // 2 + 1):
            term *= c * (2 * j) / (2 * j + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term = total = 1.0
    for j in range(1, df // 2):
        term *= c * (2 * j - 1) / (2 * j)
        total += term
    return math.sin(theta) * total


def t_quantile(confidence, df):
    """The t with ``P(|T| <= t) = confidence`` (e.g. 12.706 for 0.95 and df 1), by bisection."""
    if not 0 < confidence < 1:
        raise ValueError('confidence must be in (0, 1), got {!r}'.format(confidence))
    low, high = 0.0, 1.0
    while t_cdf_two_sided(high, df) < confidence:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf_two_sided(mid, df) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * high:
            break
    return (low + high) / 2


def paired_interval(a, b, confidence=0.95):
    """Mean paired difference ``a - b`` and its Student t interval: ``(mean, low, high)``.

    ``a``, ``b``: equal-length sequences, one value per seed (same seed same
    position). With ``d = a - b`` over n >= 2 pairs, the interval is
    ``mean(d) +- t_{(1 + confidence) / 2, n - 1} * std(d, ddof=1) / sqrt(n)``;
    one pair gives ``(d, nan, nan)`` (no spread to speak of).
    """
    if np.ndim(a) != 1 or np.shape(a) != np.shape(b) or np.size(a) == 0:
        raise ValueError('a and b must be equal-length 1-d sequences, got shapes {} and {}'
                         .format(np.shape(a), np.shape(b)))
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mean = float(d.mean())
    if d.size < 2:
        return mean, float('nan'), float('nan')
    half = t_quantile(confidence, d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return mean, mean - half, mean + half


def summarize(results, baseline=None, confidence=0.95):
    """Per-arm statistics of a study's results.

    ``results``: list of dicts with ``arm``, ``seed`` and the :data:`METRICS`
    keys (what :func:`run_study` returns). Only seeds every arm finished are
    used, so every comparison is paired. Returns ``(seeds, arms, stats)``:
    ``stats[arm][metric]`` is a dict with ``mean``, ``sd`` (ddof 1, nan for one
    seed), ``values`` in seed order, and for arms other than ``baseline``
    (default: the first arm) ``diff``, ``low``, ``high`` of
    :func:`paired_interval` against it.
    """
    arms = list(dict.fromkeys(r['arm'] for r in results))
    by = {(r['arm'], r['seed']): r for r in results}
    seeds = sorted({r['seed'] for r in results})
    seeds = [s for s in seeds if all((arm, s) in by for arm in arms)]
    baseline = arms[0] if baseline is None else baseline
    stats = {}
    for arm in arms:
        stats[arm] = {}
        for key in METRICS:
            values = [by[arm, s][key] for s in seeds]
            entry = dict(values=values, mean=float(np.mean(values)) if values else float('nan'),
                         sd=float(np.std(values, ddof=1)) if len(values) > 1 else float('nan'))
            if arm != baseline and values:
                base = [by[baseline, s][key] for s in seeds]
                entry['diff'], entry['low'], entry['high'] = paired_interval(values, base,
                                                                             confidence)
            stats[arm][key] = entry
    return seeds, arms, stats


def _table(header, rows):
    """A markdown table (pipes), so the output can be pasted into the README."""
    out = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    out += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(out)


def format_tables(results, baseline=None, confidence=0.95):
    """The headline tables: mean +- sd per arm, then paired differences against the baseline."""
    seeds, arms, stats = summarize(results, baseline, confidence)
    if not seeds:
        return 'no seed finished under every arm yet'
    baseline = arms[0] if baseline is None else baseline
    header = ['arm'] + list(METRICS.values())
    one = len(seeds) == 1  # no spread and no interval to show
    means = [[arm] + [('{:.3f}' if one else '{:.3f} ± {:.3f}').format(stats[arm][k]['mean'],
                                                                     stats[arm][k]['sd'])
                      for k in METRICS] for arm in arms]
    diffs = []
    for arm in arms:
        if arm == baseline:
            continue
        cells = []
        for key in METRICS:
            e = stats[arm][key]
            cells.append(('{:+.3f}' if one else '{:+.3f} [{:+.3f}, {:+.3f}]').format(
                e['diff'], e['low'], e['high']))
        diffs.append([arm] + cells)
    return '\n'.join([
        'Mean ± sd over {} seed(s) ({}):'.format(len(seeds), ', '.join(map(str, seeds))), '',
        _table(header, means), '',
        'Paired difference against {} (mean, {:.0f} % t-interval over seeds{}):'.format(
            baseline, 100 * confidence, '; one seed gives no interval' if one else ''), '',
        _table(header, diffs)])


# --------------------------------------------------------------------------- the study
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


# --------------------------------------------------------------------------- pictures
def _figure(width, height):
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
    fig = _figure(11, 4.2)
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
    fig = _figure(3.0 * len(METRICS), 0.5 * len(others) + 2.0)
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


# --------------------------------------------------------------------------- command line
def parser(prog='python -m samplers.study', seeds=10, steps=500):
    """The command-line parser; the demo uses it with a smaller budget."""
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, default=seeds,
                   help='number of seeds (default: {})'.format(seeds))
    p.add_argument('--first-seed', type=int, default=0,
                   help='seeds run from this one up (default: 0)')
    p.add_argument('--steps', type=int, default=steps,
                   help='training steps per run (default: {})'.format(steps))
    p.add_argument('--arms', default=','.join(DEFAULT_ARMS),
                   help='comma-separated arms, the first is the baseline; known: {} '
                   '(default: %(default)s)'.format(', '.join(ARMS)))
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
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown or not args.arms:
        p.error('--arms must name known arms ({}), got {!r}'.format(', '.join(ARMS),
                                                                   ','.join(args.arms)))
    if len(set(args.arms)) != len(args.arms):
        p.error('--arms names an arm twice: {!r}'.format(','.join(args.arms)))
    if args.arms[0] == 'gluoncv' and gluoncv_targets() is None:
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
