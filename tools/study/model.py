"""The study's model and metrics: TinyRPN, its proposals, recall and hard false alarms."""
import numpy as np
import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from samplers import box_iou

from .data import ANCHOR_RATIOS, ANCHOR_SIZES, IMAGE_SIZE, _inside, _to_tensor

from samplers.nms import greedy_nms_first

NMS_THRESH = 0.7  # proposals are de-duplicated at this IoU, as in Faster R-CNN
NUM_ANCHORS = len(ANCHOR_SIZES) * len(ANCHOR_RATIOS)  # anchors per feature-map cell


class TinyRPN(gluon.HybridBlock):
    """Four stride-2/1 convolutions (stride 8 overall) and an RPN head.

    Returns ``(scores (B, N), deltas (B, N, 4))`` with N = H/8 * W/8 * A in
    the anchor order of :func:`make_anchors`.
    """

    def __init__(self, num_anchors=NUM_ANCHORS, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential()
            for channels, stride in ((16, 2), (32, 2), (48, 2), (64, 1)):
                self.body.add(nn.Conv2D(channels, 3, strides=stride, padding=1),
                              nn.Activation('relu'))
            self.head = nn.Conv2D(64, 3, padding=1, activation='relu')
            self.score = nn.Conv2D(num_anchors, 1)
            self.loc = nn.Conv2D(num_anchors * 4, 1, weight_initializer=mx.init.Normal(0.001))

    def hybrid_forward(self, F, x):
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
    boxes in score order (the library's ``greedy_nms_first``), so the
    first 10 of the top 100 are the top 10.
    """
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
