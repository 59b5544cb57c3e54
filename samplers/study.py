"""What hard flags change: train a small RPN under each sampling rule and compare.

Run it as ``python -m samplers.demo [--out DIR] [--steps N] [--seed S]``
(``make demo``). It

1. draws a seeded synthetic detection set: shapes of three classes on noisy
   backgrounds; tiny or faint shapes are flagged hard (label column 5, like
   VOC's ``difficult``);
2. trains the same small RPN (a few convolutions and an RPN head, plain Gluon)
   from the same initial weights with each sampling rule in turn:

   * ``gluoncv``: GluonCV's own ``RPNTargetGenerator``, which has no notion of
     hard objects, so they are taught as objects like any other;
   * ``hard-aware``: this package's ``RPNTargetGenerator`` given the hard flags,
     so hard objects give no positive and the anchors on them are ignored;
   * ``hard-aware + OHEM`` (unless ``--no-ohem``): the same targets, with the
     classification loss taken on the hardest anchors (``OHEMSampler``);

3. prints one table row per run: proposal recall on normal objects, how many
   top proposals land on hard objects, final losses and time;
4. writes ``samples.png`` (an image with its anchors coloured by label under
   both rules), ``loss_curves.png`` and ``proposals.png`` to ``--out``.

The numbers are whatever comes out of this budget: nothing here is tuned for
one side to win. The defaults finish in well under three minutes on two CPU
cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn

from .boxes import box_iou

__all__ = ['make_dataset', 'make_anchors', 'TinyRPN', 'train', 'evaluate', 'main']

IMAGE_SIZE = 128
STRIDE = 8
ANCHOR_SIZES = (16, 23, 32, 45, 64)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
NUM_CLASSES = 3  # rectangle, ellipse, triangle
TOP_K = 10       # proposals kept per image for the recall / hard-hit numbers
MATCH_IOU = 0.5  # a proposal "finds" a box at this IoU
MAX_SEED = 2 ** 32 - 2  # numpy takes seeds below 2**32, and the validation set uses seed + 1


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


def _nms(boxes, scores, top_k, thresh=0.7, pre=300):
    """Indices of the ``top_k`` best boxes left by greedy NMS at IoU ``thresh``."""
    order = np.argsort(-scores)[:pre]
    ious = box_iou(boxes[order], boxes[order])
    keep = []
    dropped = np.zeros(len(order), dtype=bool)
    for i in range(len(order)):
        if dropped[i]:
            continue
        keep.append(order[i])
        if len(keep) == top_k:
            break
        dropped |= ious[i] > thresh
    return np.array(keep, dtype=np.int64)


def top_proposals(net, images, anchors, top_k=TOP_K):
    """Per image, the (top_k, 4) best proposals after clipping and NMS.

    Only anchors inside the image propose: the others are ignored by both
    target rules (GluonCV drops anchors that cross the border), so their
    scores are never trained.
    """
    inside = ((anchors[:, :2] >= 0) & (anchors[:, 2:] < IMAGE_SIZE)).all(axis=1)
    out = []
    for start in range(0, len(images), 32):
        scores, deltas = net(_to_tensor(images[start:start + 32]))
        boxes = np.clip(_decode(anchors[inside], deltas.asnumpy()[:, inside]), 0, IMAGE_SIZE)
        for b, s in zip(boxes, scores.asnumpy()[:, inside]):
            out.append(b[_nms(b, s, top_k)])
    return out


def evaluate(net, dataset, anchors, top_k=TOP_K):
    """Recall of normal objects and hits on hard objects by the top proposals.

    Returns ``(recall, hard_hits, hard_total)``: the share of normal boxes
    that some top-``top_k`` proposal overlaps at IoU >= 0.5, and how many of
    all the top proposals overlap a hard box at IoU >= 0.5 (out of how many
    hard boxes there are).
    """
    images = [img for img, _ in dataset]
    found = total = hard_hits = hard_total = 0
    for props, (_, label) in zip(top_proposals(net, images, anchors, top_k), dataset):
        hard = label[:, 5] > 0
        if len(props) == 0 or len(label) == 0:
            total += int((~hard).sum())
            hard_total += int(hard.sum())
            continue
        ious = box_iou(label[:, :4], props.astype(np.float32))  # (M, K)
        found += int((ious[~hard] >= MATCH_IOU).any(axis=1).sum())
        total += int((~hard).sum())
        hard_hits += int((ious[hard] >= MATCH_IOU).any(axis=0).sum())
        hard_total += int(hard.sum())
    return found / max(total, 1), hard_hits, hard_total


# --------------------------------------------------------------------------- targets
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


def hard_aware_targets(use_hard=True):
    """This package's RPN target generator, given the hard flags (label column 5)."""
    from .rpn import RPNTargetGenerator
    generator = RPNTargetGenerator()

    def targets(label, anchors):
        hard = label[:, 5] if use_hard else None
        return generator(label[:, :4], anchors, IMAGE_SIZE, IMAGE_SIZE, hard=hard)
    return targets


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
    inside = ((anchors[:, :2] >= 0) & (anchors[:, 2:] < IMAGE_SIZE)).all(axis=1)
    out = np.ones((len(labels), len(anchors)), np.float32)
    for row, label in zip(out, labels):
        best = box_iou(anchors, label[:, :4]).max(axis=1) if len(label) else 0
        row[inside] = np.broadcast_to(best, row.shape)[inside]
    return mx.nd.array(out)


def ohem_weights(ratio=3, min_samples=32):
    """Per-anchor 0/1 classification weights from OHEM instead of the random quotas.

    Every positive of the hard-aware targets is kept, and ``ratio`` times as
    many negatives (at least ``min_samples``) are taken among the anchors
    whose best IoU with any box is below the RPN's negative threshold 0.3,
    hardest (largest background loss under the current scores) first.
    """
    from .ohem import OHEMSampler
    sampler = OHEMSampler(ratio, min_samples=min_samples, thresh=0.3)

    def weights(scores, cls_t, best_ious):
        matched = mx.nd.where(cls_t > 0, mx.nd.zeros_like(cls_t), -mx.nd.ones_like(cls_t))
        logits = mx.nd.stack(mx.nd.zeros_like(scores), scores, axis=-1)  # sigmoid as 2-class
        return sampler(matched, logits, best_ious) != 0
    return weights


# --------------------------------------------------------------------------- training
class _Progress:
    """tqdm when it is installed, else a plain one-line counter on stderr."""

    def __init__(self, total, desc):
        try:
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=desc, leave=True, file=sys.stderr,
                             dynamic_ncols=True, mininterval=0.5)
        except ImportError:
            self._bar = None
        self._total, self._desc, self._done = total, desc, 0

    def update(self, loss):
        self._done += 1
        if self._bar is not None:
            self._bar.set_postfix(loss='{:.3f}'.format(loss), refresh=False)
            self._bar.update(1)
        elif self._done % max(1, self._total // 20) == 0 or self._done == self._total:
            sys.stderr.write('\r{}: {}/{} loss {:.3f}'.format(self._desc, self._done,
                                                            self._total, loss))
            if self._done == self._total:
                sys.stderr.write('\n')
            sys.stderr.flush()

    def close(self):
        if self._bar is not None:
            self._bar.close()


def train(name, targets, train_set, anchors, steps, seed, batch_size=8, ohem=None):
    """Train a fresh TinyRPN with one target rule; return (net, history, seconds).

    ``history`` holds the per-step ``cls`` and ``box`` losses. Every run
    starts from the same weights and sees the same batches (both from
    ``seed``). With ``ohem`` (see :func:`ohem_weights`) the classification
    loss is taken on the anchors OHEM picks instead of the sampled ones.
    Losses are normalised like GluonCV's RPN losses: summed over the
    anchors that count, divided by how many count.
    """
    mx.random.seed(seed)
    np.random.seed(seed)
    net = TinyRPN()
    net.initialize(mx.init.Xavier(magnitude=2))
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 2e-3})
    bce = gluon.loss.SigmoidBinaryCrossEntropyLoss()
    huber = gluon.loss.HuberLoss(rho=1 / 9.)
    order = np.random.RandomState(seed)
    history = {'cls': [], 'box': []}
    pending = None  # losses of the previous step, read once the next one is queued
    bar = _Progress(steps, name)
    start = time.time()
    for _ in range(steps):
        pick = order.randint(0, len(train_set), batch_size)
        labels = [train_set[i][1] for i in pick]
        cls_t, box_t, box_m = _batch_targets(targets, labels, anchors)
        x = _to_tensor([train_set[i][0] for i in pick])
        best_ious = _best_ious(labels, anchors) if ohem is not None else None
        with autograd.record():
            scores, deltas = net(x)
            weight = cls_t >= 0 if ohem is None else ohem(scores.detach(), cls_t, best_ious)
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
    history['cls'].append(cls_loss.asscalar())
    history['box'].append(box_loss.asscalar())
    bar.update(history['cls'][-1] + history['box'][-1])


# --------------------------------------------------------------------------- report
def _smooth(values, width=25):
    """Moving average over ``width`` steps (fewer for short runs), for the loss curves."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return values
    width = max(1, min(width, len(values) // 4 or 1))
    kernel = np.ones(width) / width
    return np.convolve(values, kernel, mode='valid')


def format_table(rows):
    """Fixed-width text table of the runs (list of dicts)."""
    cols = [('run', '{}'), ('targets from', '{}'), ('recall@{} normal'.format(TOP_K), '{:.3f}'),
            ('top-{} on hard'.format(TOP_K), '{}'), ('cls loss', '{:.4f}'),
            ('box loss', '{:.4f}'), ('time s', '{:.1f}')]
    keys = ['run', 'source', 'recall', 'hard', 'cls', 'box', 'time']
    cells = [[fmt.format(row[k]) for (_, fmt), k in zip(cols, keys)] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(cols)]

    def line(parts):
        return '  '.join(p.ljust(w) for p, w in zip(parts, widths)).rstrip()
    out = [line([h for h, _ in cols]), line(['-' * w for w in widths])]
    out += [line(c) for c in cells]
    return '\n'.join(out)


def _figure(width, height):
    """A matplotlib Figure drawn with Agg, independent of pyplot's backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def save_samples_png(path, image, label, anchors, labelled):
    """One panel per rule: the image's anchors coloured by the label that rule gave."""
    from .viz import plot_samples
    fig = _figure(5.2 * len(labelled), 5.6)
    for i, (title, samples) in enumerate(labelled):
        ax = fig.add_subplot(1, len(labelled), i + 1)
        plot_samples(image, anchors, samples, gt_boxes=label[:, :4], hard=label[:, 5], ax=ax)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)


def save_loss_png(path, histories):
    fig = _figure(10, 4)
    for i, key in enumerate(('cls', 'box')):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, hist in histories:
            ax.plot(_smooth(hist[key]), label=name)
        ax.set_title('RPN {} loss (moving average)'.format('classification' if key == 'cls'
                                                          else 'box regression'), fontsize=10)
        ax.set_xlabel('step')
        ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path)


def save_proposals_png(path, image, label, proposals):
    """The top proposals of each run on one validation image."""
    from matplotlib import patches
    fig = _figure(4.2 * len(proposals), 4.6)
    for i, (name, boxes) in enumerate(proposals):
        ax = fig.add_subplot(1, len(proposals), i + 1)
        ax.imshow(image)
        for (x1, y1, x2, y2, _, hard) in label:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2,
                                           color='#ff00ff' if hard else '#00e5ff',
                                           linestyle='--' if hard else '-'))
        for x1, y1, x2, y2 in boxes:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                           linewidth=1, color='#ffdd00'))
        ax.set_title('{}: top-{} proposals'.format(name, len(boxes)), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle('yellow: proposals; cyan: ground truth; dashed magenta: hard ground truth',
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


# --------------------------------------------------------------------------- main
def _runs(use_ohem):
    """(name, target source description, targets, ohem) for each run."""
    runs = []
    baseline = gluoncv_targets()
    if baseline is not None:
        runs.append(('gluoncv', 'GluonCV RPNTargetGenerator, no hard flags', baseline, None))
    else:
        runs.append(('no hard flags', 'samplers RPNTargetGenerator, no hard flags '
                     '(gluoncv not installed)', hard_aware_targets(use_hard=False), None))
    runs.append(('hard-aware', 'samplers RPNTargetGenerator + hard flags',
                 hard_aware_targets(), None))
    if use_ohem:
        runs.append(('hard-aware+OHEM', 'samplers RPNTargetGenerator + hard flags, '
                     'OHEM cls loss', hard_aware_targets(), ohem_weights()))
    return runs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='python -m samplers.demo', description=__doc__.split(
        '\n')[0])
    parser.add_argument('--out', default='samplers-demo', help='folder for the PNGs '
                        '(default: samplers-demo)')
    parser.add_argument('--steps', type=int, default=500,
                        help='training steps per run (default: 500)')
    parser.add_argument('--seed', type=int, default=0, help='seed of data, weights and '
                        'sampling, 0 to {} (default: 0)'.format(MAX_SEED))
    parser.add_argument('--train-images', type=int, default=512,
                        help='synthetic training images (default: 512)')
    parser.add_argument('--val-images', type=int, default=128,
                        help='synthetic validation images (default: 128)')
    parser.add_argument('--no-ohem', action='store_true', help='skip the OHEM run')
    args = parser.parse_args(argv)
    for name in ('steps', 'train_images', 'val_images'):
        if getattr(args, name) < 1:
            parser.error('--{} must be >= 1, got {}'.format(name.replace('_', '-'),
                                                            getattr(args, name)))
    if not 0 <= args.seed <= MAX_SEED:
        parser.error('--seed must be in [0, {}], got {}'.format(MAX_SEED, args.seed))
    return args


def main(argv=None):
    """Run the demo; returns the list of table rows (dicts)."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    train_set = make_dataset(args.train_images, seed=args.seed)
    val_set = make_dataset(args.val_images, seed=args.seed + 1)
    anchors = make_anchors()
    num_hard = sum(int(lab[:, 5].sum()) for _, lab in val_set)
    num_boxes = sum(len(lab) for _, lab in val_set)
    print('synthetic set: {} train / {} val images of {}x{} px; val has {} boxes, {} hard; '
          '{} anchors per image'.format(len(train_set), len(val_set), IMAGE_SIZE, IMAGE_SIZE,
                                        num_boxes, num_hard, len(anchors)))
    rows, histories, proposals = [], [], []
    example = _example_index(val_set)
    for name, source, targets, ohem in _runs(not args.no_ohem):
        net, hist, seconds = train(name, targets, train_set, anchors, args.steps, args.seed,
                                   ohem=ohem)
        recall, hits, hard_total = evaluate(net, val_set, anchors)
        tail = max(1, len(hist['cls']) // 10)
        rows.append(dict(run=name, source=source, recall=recall,
                         hard='{} (of {} hard objects)'.format(hits, hard_total),
                         cls=float(np.mean(hist['cls'][-tail:])),
                         box=float(np.mean(hist['box'][-tail:])), time=seconds))
        histories.append((name, hist))
        proposals.append((name, top_proposals(net, [val_set[example][0]], anchors)[0]))
    print()
    print(format_table(rows))
    print('recall: share of normal val boxes hit (IoU >= {}) by one of the top-{} proposals of '
          'their image; on hard: how many top proposals hit a hard box; losses: mean of the last '
          '10% of steps (each run is scored against its own targets, and OHEM\'s cls loss only on '
          'the hardest anchors); time: training, targets included'.format(MATCH_IOU, TOP_K))

    image, label = val_set[example]
    from .viz import samples_from_cls_target
    labelled = [(name + ' labels', samples_from_cls_target(targets(label, anchors)[0]))
                for name, _, targets, _ in _runs(False)]
    save_samples_png(os.path.join(args.out, 'samples.png'), image, label, anchors, labelled)
    save_loss_png(os.path.join(args.out, 'loss_curves.png'), histories)
    save_proposals_png(os.path.join(args.out, 'proposals.png'), image, label, proposals)
    print('wrote samples.png, loss_curves.png, proposals.png to {} ({:.0f} s in all)'.format(
        args.out, time.time() - started))
    return rows


def _example_index(dataset):
    """A validation image with normal objects and a faint (not tiny) hard one, for the pictures.

    Tiny hard objects overlap no anchor enough to change any label; faint
    ones are where the two rules differ.
    """
    for i, (_, label) in enumerate(dataset):
        hard, normal = label[label[:, 5] > 0], label[label[:, 5] == 0]
        side = np.minimum(hard[:, 2] - hard[:, 0], hard[:, 3] - hard[:, 1])
        apart = box_iou(hard[:, :4], normal[:, :4]).max(axis=1, initial=0) == 0
        if len(normal) >= 2 and ((side >= 14) & apart).any():
            return i
    return 0


if __name__ == '__main__':
    main()
