"""Scoring a trained detector on the validation split, with GluonCV's ``VOC07MApMetric``.

Metrics (per run):

* ``map50``: VOC07 11-point mAP at IoU 0.5; difficult objects are neither hits
  nor misses (GluonCV's metric ignores detections matched to them);
* ``map75``: the same at IoU 0.75;
* ``map50_all``: mAP@0.5 with the hard boxes counted as normal ones (every
  hard box missed is a miss): what an arm gives up on the hard objects themselves;
* ``map50_small``: mAP@0.5 on the small normal objects only (area below
  :data:`SMALL_AREA` pixels in the scoring frame, COCO's "small"): the other
  boxes are ignored, and so is a detection at least that large that overlaps
  no small normal box (IoU < 0.5), as COCO ignores unmatched detections outside
  its area range; nan when the split has no small normal box;
* ``ap50``: per-class AP@0.5 (difficult ignored), a dict class -> AP;
* ``hard_fa``: false alarms on hard objects: detections with score >= 0.3
  whose best-overlapping ground-truth box (IoU >= 0.5) is a hard one, per
  hard box in the validation split (any class; lower means the detector fires
  less on what the annotator could not be sure of);
* ``hard_hit``: the share of hard boxes with at least one such detection;
* ``hard_score``: per hard box, the highest score of any detection whose
  best-overlapping ground-truth box (IoU >= 0.5) it is (0 if none), averaged
  over hard boxes: how strongly the detector claims hard objects, below the
  0.3 threshold too.
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
from gluoncv.data.batchify import Append, Stack, Tuple
from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultValTransform
from gluoncv.data.transforms.presets.ssd import SSDDefaultValTransform
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric
from mxnet import gluon

from . import model

SCORE_THRESH = 0.3  # a detection at or above it counts as a claim that an object is there
HARD_IOU = 0.5
SMALL_AREA = 32 ** 2  # COCO's "small": area below 32 x 32 pixels

METRICS = {'map50': 'mAP@0.5', 'map75': 'mAP@0.75', 'map50_all': 'mAP@0.5 hard as normal',
           'map50_small': 'mAP@0.5 small normal', 'hard_fa': 'false alarms / hard box',
           'hard_hit': 'hard boxes hit', 'hard_score': 'top score on hard box',
           'seconds': 'train s'}


def _iou(a, b):
    """(N, 4) x (M, 4) corner boxes -> (N, M) IoU."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def _claimed(boxes, gt):
    """Per detection, the row of ``gt`` it overlaps most if that IoU is >= 0.5, else -1."""
    if not len(boxes) or not len(gt):
        return -np.ones(len(boxes), np.int64)
    ious = _iou(boxes, gt[:, :4])
    best = ious.argmax(axis=1)
    return np.where(ious[np.arange(len(best)), best] >= HARD_IOU, best, -1)


def hard_claims(boxes, scores, gt):
    """Per hard box of ``gt`` (M, 6), how many detections (score >= SCORE_THRESH) claim it.

    A detection claims the ground-truth box it overlaps most, if that IoU is >= 0.5.
    """
    hard = gt[:, 5] == 1
    keep = scores >= SCORE_THRESH
    claims = _claimed(boxes[keep], gt)
    counts = np.zeros(len(gt), np.int64)
    np.add.at(counts, claims[claims >= 0], 1)
    return counts[hard]


def hard_top_scores(boxes, scores, gt):
    """Per hard box of ``gt`` (M, 6), the highest score of a detection claiming it (0 if none)."""
    claims = _claimed(boxes, gt)
    top = np.zeros(len(gt))
    np.maximum.at(top, claims[claims >= 0], scores[claims >= 0])
    return top[gt[:, 5] == 1]


def predictions(net, detector, dataset, ctx, short=256, max_size=320):
    """Yield ``(image_index, boxes (K, 4), ids (K,), scores (K,), gt (M, 6))`` per image.

    Boxes and ground truth are in the same pixel frame. R-CNN: GluonCV's
    validation transform resizes the image *and* its ground truth and returns
    ``im_scale`` (original height / resized height); the network predicts in
    the resized frame, so both sides are clipped to / taken in that frame and
    multiplied by ``im_scale`` into the original image's frame (GluonCV's
    ``validate()`` does the same). SSD: GluonCV's SSD validation transform
    resizes image and ground truth to the network's input; both stay there.
    """
    if detector == 'rcnn':
        transform = FasterRCNNDefaultValTransform(short, max_size)
        batchify = Tuple(*[Append() for _ in range(3)])
    else:
        transform = SSDDefaultValTransform(model.IMAGE_SHAPE[1], model.IMAGE_SHAPE[0])
        batchify = Tuple(Stack(), Stack())
    loader = gluon.data.DataLoader(dataset.transform(transform), batch_size=1, shuffle=False,
                                   batchify_fn=batchify, num_workers=0)
    device = ctx[0]
    for index, batch in enumerate(loader):
        if detector == 'rcnn':
            img, gt, scale = (part[0].as_in_context(device) for part in batch)
            ids, scores, boxes = net(img)
            scale = float(scale.asnumpy().reshape(-1)[0])
            height, width = img.shape[-2:]
        else:
            img, gt = (part.as_in_context(device) for part in batch)
            ids, scores, boxes = net(img)
            scale = 1.0
        ids, scores, boxes = (x[0].asnumpy() for x in (ids, scores, boxes))
        valid = ids[:, 0] >= 0
        gt = gt.asnumpy().reshape(-1, gt.shape[-1]).copy()
        boxes = boxes[valid]
        if detector == 'rcnn':
            boxes = np.clip(boxes, 0, [width, height, width, height])
        gt[:, :4] *= scale
        yield index, boxes * scale, ids[valid, 0], scores[valid, 0], gt


def _voc_map(records, classes, iou, difficult):
    """GluonCV's VOC07 mAP over ``records`` [(boxes, ids, scores, gt)] with per-image
    ``difficult`` flags (a function of the record); ``(mean, {class: AP})``."""
    metric = VOC07MApMetric(iou_thresh=iou, class_names=list(classes))
    for boxes, ids, scores, gt in records:
        metric.update(mx.nd.array(boxes[None].reshape(1, -1, 4)), mx.nd.array(ids[None]),
                      mx.nd.array(scores[None]), mx.nd.array(gt[None, :, :4]),
                      mx.nd.array(gt[None, :, 4:5]),
                      mx.nd.array(difficult(boxes, gt)[None, :, None]))
    names, values = metric.get()
    return float(values[-1]), {n: _finite(v) for n, v in zip(names[:-1], values[:-1])}


def _area(boxes):
    return np.prod(np.clip(boxes[:, 2:4] - boxes[:, :2], 0, None), axis=-1)


def _small_normal(gt):
    return (gt[:, 5] == 0) & (_area(gt) < SMALL_AREA)


def _small_records(records):
    """The records for ``map50_small``: detections at least SMALL_AREA large that overlap no
    small normal box (IoU < 0.5) dropped; the flags are 'not a small normal box'."""
    out = []
    for boxes, ids, scores, gt in records:
        target = gt[_small_normal(gt)]
        near = (_iou(boxes, target[:, :4]).max(axis=1) >= HARD_IOU if len(target) and len(boxes)
                else np.zeros(len(boxes), bool))
        keep = near | (_area(boxes) < SMALL_AREA)
        out.append((boxes[keep], ids[keep], scores[keep], gt))
    return out


def score(records, classes):
    """The mAP metrics of ``records``: a list of ``(boxes, ids, scores, gt)`` per image, all in
    one frame (``gt`` (M, 6) with the hard flag in column 5)."""
    records = [(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(i, np.float32).reshape(-1),
                np.asarray(s, np.float32).reshape(-1), np.asarray(g, np.float32).reshape(-1, 6))
               for b, i, s, g in records]
    flags = lambda boxes, gt: gt[:, 5]  # noqa: E731
    out = {}
    out['map50'], out['ap50'] = _voc_map(records, classes, 0.5, flags)
    out['map50'] = _finite(out['map50'])
    out['map75'] = _finite(_voc_map(records, classes, 0.75, flags)[0])
    out['map50_all'] = _finite(
        _voc_map(records, classes, 0.5, lambda boxes, gt: np.zeros(len(gt)))[0])
    if any(_small_normal(gt).any() for *_, gt in records):
        small, _ = _voc_map(_small_records(records), classes, 0.5,
                            lambda boxes, gt: (~_small_normal(gt)).astype(np.float32))
        out['map50_small'] = _finite(small)
    else:
        out['map50_small'] = float('nan')
    return out


def evaluate(net, detector, dataset, ctx, keep_image=None):
    """Score ``net`` on ``dataset``: the :data:`METRICS` (but ``seconds``) and kept detections.

    ``keep_image``: index of an image whose detections (score >= SCORE_THRESH) and
    ground truth are returned under ``'example'`` for the pictures.
    """
    records, claims, tops, example = [], [], [], None
    for index, boxes, ids, scores, gt in predictions(net, detector, dataset, ctx):
        records.append((boxes, ids, scores, gt))
        claims.append(hard_claims(boxes, scores, gt))
        tops.append(hard_top_scores(boxes, scores, gt))
        if index == keep_image:
            shown = scores >= SCORE_THRESH
            example = dict(index=index, boxes=boxes[shown].tolist(), ids=ids[shown].tolist(),
                           scores=scores[shown].tolist(), gt=gt.tolist())
    out = score(records, dataset.classes)
    claims = np.concatenate(claims) if claims else np.zeros(0)
    out['hard_boxes'] = int(claims.size)
    out['hard_fa'] = float(claims.mean()) if claims.size else 0.0
    out['hard_hit'] = float((claims > 0).mean()) if claims.size else 0.0
    tops = np.concatenate(tops) if tops else np.zeros(0)
    out['hard_score'] = float(tops.mean()) if tops.size else 0.0
    out['example'] = example
    return out


def _finite(value):
    """A class without positives gives GluonCV's metric NaN; the study counts it as 0."""
    value = float(value)
    return value if np.isfinite(value) else 0.0
