"""RCNNTargetSampler: the second-stage (R-CNN head) sampler, hard-aware, on the quota op.

A drop-in for GluonCV 0.10.5's ``RCNNTargetSampler`` (``FasterRCNN.sampler``): same
constructor, call and outputs, with optional hard flags. The labelling is the
:class:`~samplers.quota.QuotaSampler` rule, run by its registered CustomOp
:data:`samplers.quota.OP_TYPE` inside the graph; this module only prepares the op's
inputs and gathers the fixed-size output. Labels follow the package convention
(see :mod:`samplers`).
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from . import boxes
from ._blocks import SamplerBlock, option_settings
from ._arrays import Array, finite_rows_F, is_ndarray
from .checks import (check_boxes, check_dtype, check_int, check_one_context, check_ratio,
                     hard_flags, hard_on_device)
from .options import Draw, HardRule, resolve
from .quota import OP_TYPE, QuotaRule

__all__ = ['RCNNTargetSampler', 'HARD_IOU_THRESH']

#: The IoU with a hard box at which a non-positive proposal is ignored (``HardRule().iou_thresh``
#: None means this).
HARD_IOU_THRESH = 0.3


class RCNNTargetSampler(SamplerBlock, gluon.HybridBlock):
    """Pick ``num_sample`` labelled rows per image from the proposals plus the ground truth.

    Parameters
    ----------
    num_image : int
        Images per call (B), >= 1.
    num_proposal : int
        Proposals per image (N) the network produces, >= 1.
    num_sample : int
        Rows returned per image (S), >= 1; needs ``N + M >= S``.
    pos_iou_thresh : float in (0, 1], default 0.5
        IoU with a normal box that makes a positive; anything below it is negative.
    pos_ratio : float in [0, 1], default 0.25
        Positive quota ``_max_pos = round(pos_ratio * num_sample)`` (GluonCV's attribute).
    max_num_gt : int, default 300
        Kept for GluonCV's signature (an upper bound on M); not needed here.
    hard : :class:`samplers.HardRule` or None (default ``HardRule()``)
        Which non-positive proposals near a hard box or crowd region are ignored:
        ``iou_thresh`` (None: 0.3) with a hard box, ``iof_thresh`` (default None: off) of
        the proposal inside a hard box, ``crowd_iof_thresh`` (0.7) inside a crowd region
        (Detectron's crowd filter). ``min_size`` is not read here (small boxes reach this
        stage as hard flags); set, it raises ``ValueError``.
    draw : :class:`samplers.Draw` or None (default: uniform draws)
        The balanced draws; the negatives' IoU bins span [0, ``pos_iou_thresh``).

    The fields of ``hard`` and ``draw`` as flat keywords (``hard_iou_thresh=``,
    ``hard_iof_thresh=``, ``crowd_iof_thresh=``, ``pos_sampler=``, ...) are deprecated
    (:func:`samplers.options.resolve`).

    Called as ``sampler(rois, scores, gt_boxes, hard=None, crowd=None)`` with NDArrays or
    Symbols: ``rois`` (B, N, 4) corner proposals, float16, float32 or float64; ``scores``
    (B, N, 1), < 0 for padding proposals; ``gt_boxes`` (B, M, 4) corner boxes, padding rows
    all -1; ``hard`` and ``crowd`` (B, M) flags (:mod:`samplers.checks`; ``crowd`` marks crowd
    regions such as COCO ``iscrowd``), NDArrays of any dtype, or numpy or lists (checked on
    the host, then copied to ``rois``' context). Returns ``(rois (B, S, 4), samples (B, S),
    matches (B, S))`` in ``rois``' dtype: rows drawn from the N proposals and the M boxes
    appended to them, positives first (at most ``_max_pos``), then negatives, then ignored
    filler rows; ``matches`` the index of each row's best box (for a positive, its best
    *normal* box).

    Dtypes: NDArray ``scores`` and ``gt_boxes`` of another numeric dtype are cast to ``rois``'
    (the network's) dtype; float16 is computed in float32 and the outputs cast back. In a
    hybridized parent's graph ``rois``, ``scores`` and ``gt_boxes`` share one dtype.

    Rule, per image, over the N + M candidate rows: ``pos = max over normal j of iou_j >=
    pos_iou_thresh``; ``neg = not pos and max_j iou_j < pos_iou_thresh and score >= 0 and
    not near a hard box`` (``iou_j >= hard_iou_thresh`` or ``iof_j >= hard_iof_thresh``
    for a hard j, ``iof_j >= crowd_iof_thresh`` for a crowd j; the normal boxes are those
    neither hard nor crowd); a random ``min(#pos, _max_pos)`` positives and ``min(#neg, S - kept
    positives)`` negatives are kept, by the quota op.

    Edges: a padding box (score -1) makes no candidate row. A candidate row with a NaN or
    infinite coordinate is ignored. A hard box's (or crowd region's) own row is ignored
    unless it overlaps a normal box at >= ``pos_iou_thresh``. All-zero ``hard`` (and
    ``crowd``) gives the result without it. Too few candidates: the rest of the S rows are
    ignored.
    """

    def __init__(self, num_image: int, num_proposal: int, num_sample: int,
                 pos_iou_thresh: float = 0.5, pos_ratio: float = 0.25, max_num_gt: int = 300,
                 hard: HardRule | None = None, draw: Draw | None = None, **flat):
        super().__init__()
        draw, hard = resolve(type(self).__name__, flat, draw, hard)
        self._hard = hard.only(type(self).__name__, ('iou_thresh', 'iof_thresh',
                                                     'crowd_iof_thresh'))
        self._num_image = check_int('num_image', num_image, minimum=1)
        self._num_proposal = check_int('num_proposal', num_proposal, minimum=1)
        self._num_sample = check_int('num_sample', num_sample, minimum=1)
        self._pos_iou_thresh = check_ratio('pos_iou_thresh', pos_iou_thresh, low_open=True)
        self._max_num_gt = check_int('max_num_gt', max_num_gt, minimum=1)
        self._hard_iou_thresh = HARD_IOU_THRESH if hard.iou_thresh is None else hard.iou_thresh
        self._hard_iof_thresh = hard.iof_thresh
        self._crowd_iof_thresh = hard.crowd_iof_thresh
        # Negatives fill every slot positives leave: neg_ratio 0 with fill_negative.
        self._rule = QuotaRule(self._num_sample, self._pos_iou_thresh, self._pos_iou_thresh,
                                pos_ratio=check_ratio('pos_ratio', pos_ratio), neg_ratio=0.0,
                                fill_negative=True, draw_options=draw)
        self._max_pos = self._rule.max_pos

    def _settings(self):
        return dict(num_image=self._num_image, num_proposal=self._num_proposal,
                    num_sample=self._num_sample, pos_iou_thresh=self._pos_iou_thresh,
                    pos_ratio=self._rule.pos_ratio, max_num_gt=self._max_num_gt,
                    **option_settings(draw=self._rule.draw_options, hard=self._hard))

    def forward(self, rois: Array, scores: Array, gt_boxes: Array, hard: Array | None = None,
                crowd: Array | None = None) -> tuple[Array, Array, Array]:
        """Check NDArray inputs and bring them to one dtype (Symbols pass), then run
        :meth:`hybrid_forward`."""
        if not is_ndarray(rois):
            if crowd is None:
                return super().forward(rois, scores, gt_boxes, hard)
            return super().forward(rois, scores, gt_boxes, crowd * 0 if hard is None else hard,
                                   crowd)
        hard, crowd = self._check_inputs(rois, scores, gt_boxes, hard, crowd)
        work = 'float64' if rois.dtype == np.float64 else 'float32'
        scores, gt_boxes = (x if x.dtype == np.dtype(work) else x.astype(work)
                            for x in (scores, gt_boxes))
        args = (rois if rois.dtype == np.dtype(work) else rois.astype(work), scores, gt_boxes)
        if crowd is None:
            out = super().forward(*args, hard)
        else:
            out = super().forward(*args, mx.nd.zeros_like(crowd) if hard is None else hard, crowd)
        if rois.dtype == np.dtype(work):
            return out
        return tuple(o.astype(rois.dtype) for o in out)

    def hybrid_forward(self, F, rois, scores, gt_boxes, hard=None, crowd=None):
        with autograd.pause():
            all_rois, ious, not_negative, hard = self._candidate_inputs(
                F, rois, scores, gt_boxes, hard, crowd)
            inputs = [F.ones_like(not_negative) * -1, ious]  # matches: none, IoU decides
            attrs = dict(has_hard='False', has_not_negative='True')
            if hard is not None:
                inputs.append(hard)
                attrs['has_hard'] = 'True'
            keys = F.random.uniform_like(not_negative)
            labels = F.Custom(*inputs, not_negative, keys, op_type=OP_TYPE, **attrs,
                              **self._rule.attrs())                              # (B, K)
            return self._kept_rows(F, all_rois, labels, ious, hard)

    def _candidate_inputs(self, F, rois, scores, gt_boxes, hard=None, crowd=None):
        """What the rule needs of the N + M candidate rows: ``(all_rois (B, K, 4), ious
        (B, K, M), not_negative (B, K) 0/1, hard (B, M) 0/1 or None)``.

        ``not_negative``: padding (score < 0), a non-finite coordinate, or near a hard box or
        inside a crowd region; ``hard``: the columns of boxes that are not normal (hard or
        crowd), never a positive's box.
        """
        # GluonCV's rule for padding rows of gt_boxes (all -1): score sign(sum + 1) = -1.
        gt_score = F.sign(F.sum(gt_boxes, axis=-1) + 1)                         # (B, M)
        all_rois = F.concat(rois, gt_boxes, dim=1)                              # (B, K, 4)
        all_scores = F.concat(F.reshape(scores, (0, -1)), gt_score, dim=1)      # (B, K)
        ious = F.stack(*[F.contrib.box_iou(self._image(F, all_rois, i),
                                           self._image(F, gt_boxes, i), format='corner')
                         for i in range(self._num_image)], axis=0)              # (B, K, M)
        # box_iou gives some rows with a NaN or inf coordinate 0, not NaN (never a positive's
        # IoU): such a row is never a negative either (x - x is 0 exactly at finite x).
        finite_row = finite_rows_F(F, all_rois)                                 # (B, K)
        not_negative = F.maximum(all_scores < 0, 1 - finite_row)
        if hard is None:
            return all_rois, ious, not_negative, None
        # 1 in the columns of hard boxes, in the IoUs' dtype whatever the flags' dtype.
        column = F.broadcast_like(F.expand_dims(hard, axis=1) > 0, ious)
        is_hard = F.where(column, F.ones_like(ious), F.zeros_like(ious))        # (B, K, M)
        near = ious >= self._hard_iou_thresh
        if self._hard_iof_thresh is not None or crowd is not None:
            iof = boxes.box_iof_F(F, all_rois, gt_boxes)
        if self._hard_iof_thresh is not None:
            near = F.maximum(near, iof >= self._hard_iof_thresh)
        near_hard = F.max(near * is_hard, axis=-1)
        hard = F.slice_axis(is_hard, axis=1, begin=0, end=1)                    # (B, 1, M)
        if crowd is not None:
            column = F.broadcast_like(F.expand_dims(crowd, axis=1) > 0, ious)
            is_crowd = F.where(column, F.ones_like(ious), F.zeros_like(ious))
            in_crowd = (iof >= self._crowd_iof_thresh) * is_crowd
            near_hard = F.maximum(near_hard, F.max(in_crowd, axis=-1))
            # not normal: never a positive's box
            hard = F.maximum(hard, F.slice_axis(is_crowd, axis=1, begin=0, end=1))
        return all_rois, ious, F.maximum(not_negative, near_hard), F.reshape(hard, (0, -1))

    def _kept_rows(self, F, all_rois, labels, ious, hard):
        """GluonCV's ``(rois, samples, matches)``, (B, S): of the K rows labelled ``labels``,
        positives first, then negatives, then ignored rows; the first S. ``matches``: each
        row's best box, a normal one (``hard`` (B, M) 0 or None) first."""
        rank = F.cast(labels > 0, 'float32') * 2 + F.cast(labels < 0, 'float32')
        order = F.slice_axis(F.argsort(rank, axis=1, is_ascend=False), axis=1, begin=0,
                             end=self._num_sample)                               # (B, S)
        image = F.broadcast_like(F.reshape(F.arange(self._num_image), (-1, 1)), order)
        where = F.stack(image, order)                                            # (2, B, S)
        # Each row's best box (a normal one first), found for the S rows kept only.
        kept_ious = F.gather_nd(ious, where)                                     # (B, S, M)
        if hard is not None:
            kept_ious = F.broadcast_sub(kept_ious, 2 * F.expand_dims(hard, axis=1))
        return (F.gather_nd(all_rois, where), F.gather_nd(labels, where),
                F.argmax(kept_ious, axis=-1))

    @staticmethod
    def _image(F, x, i):
        """Image ``i`` of the batch ``x``, without the batch axis."""
        return F.squeeze(F.slice_axis(x, axis=0, begin=i, end=i + 1), axis=0)

    def _check_inputs(self, rois, scores, gt_boxes, hard, crowd=None):
        """The flags to pass on (NDArrays or None), or ``ValueError`` naming the argument
        unless the NDArray inputs fit together."""
        for name, x in (('scores', scores), ('gt_boxes', gt_boxes)):
            if not is_ndarray(x):
                raise ValueError('{} must be an NDArray like rois, got {}'.format(
                    name, type(x).__name__))
        check_boxes('rois', rois, batched=True)
        check_boxes('gt_boxes', gt_boxes, batched=True)
        check_dtype('rois', rois)
        check_dtype('scores', scores, 'iuf')
        check_dtype('gt_boxes', gt_boxes, 'iuf')
        batch, num, _ = rois.shape
        num_box = gt_boxes.shape[1]
        if batch != self._num_image:
            raise ValueError('rois must hold num_image = {} images, got shape {}'.format(
                self._num_image, tuple(rois.shape)))
        if tuple(scores.shape) not in ((batch, num, 1), (batch, num)):
            raise ValueError('scores must have shape (B, N, 1) = {} to go with rois {}, got {}'
                             .format((batch, num, 1), tuple(rois.shape), tuple(scores.shape)))
        if gt_boxes.shape[0] != batch or num_box == 0:
            raise ValueError('gt_boxes must have shape (B, M, 4) with B = {} and M >= 1 (pad '
                             'with rows of -1), got {}'.format(batch, tuple(gt_boxes.shape)))
        if num + num_box < self._num_sample:
            raise ValueError('num_sample = {} needs at least that many proposals plus boxes '
                             'per image, got N + M = {} + {}'.format(self._num_sample, num,
                                                                     num_box))
        check_one_context([('rois', rois), ('scores', scores), ('gt_boxes', gt_boxes),
                           ('hard', hard), ('crowd', crowd)])
        return tuple(self._checked_flags(name, flags, num_box, batch, gt_boxes.shape,
                                         rois.context)
                     for name, flags in (('hard', hard), ('crowd', crowd)))

    @staticmethod
    def _checked_flags(name, flags, num_box, batch, gt_shape, ctx):
        """Checked ``flags``: an NDArray as given, host flags (numpy, list) checked and copied
        to ``ctx``, or None."""
        if flags is not None and not is_ndarray(flags):
            if isinstance(flags, (list, tuple)):
                flags = np.asarray(flags)
            if not isinstance(flags, np.ndarray) or flags.dtype.kind not in 'biuf':
                raise ValueError('{} must be an NDArray, a numpy array or a list of 0/1 '
                                 'flags, got {}'.format(name, type(flags).__name__))
        checked = hard_flags(flags, num_box, batch, per_image=False, name=name,
                             against='gt_boxes {}'.format(tuple(gt_shape)))
        if flags is None or is_ndarray(flags):
            return flags
        return hard_on_device(checked, num_box, ctx)  # host flags, checked above
