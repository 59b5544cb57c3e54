"""The arms of the study: the rules that choose which anchors train the RPN, and as what."""
import numpy as np
import mxnet as mx

from samplers import Draw, HardRule, OHEMSampler, RPNTargetGenerator, box_iou

from .data import IMAGE_SIZE, _inside

HARD_IOF = 0.5  # the hard_iof_thresh of the 'hard+iof' arm (mmdetection's ignore_iof_thr)


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
    """The samplers library's RPN target generator, given the hard flags (label column 5) or not.

    ``draw``: the generator's balanced-draw options (``pos_sampler``, ``neg_sampler``: the
    fields of :class:`samplers.Draw`).
    """
    generator = RPNTargetGenerator(hard=HardRule(iof_thresh=hard_iof_thresh), draw=Draw(**draw))

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
