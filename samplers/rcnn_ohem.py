"""Second-stage OHEM (Shrivastava, Gupta, Girshick, CVPR 2016): train the hardest R-CNN rows.

Three pieces, each usable alone. Labels follow the package convention (see :mod:`samplers`).

* :func:`hardest_rows`: the selection, a plain function of per-row losses, labels and boxes;
* :func:`head_loss`: each row's loss from a head's predictions (no gradient is wanted from it);
* :class:`OHEMTargetSampler`: the second-stage sampler that labels every candidate by
  :class:`samplers.rcnn.RCNNTargetSampler`'s rule without a draw, has a ``scorer`` (the
  network's own head, see :func:`scored_by`) give each its loss, and keeps the hardest
  ``num_sample`` rows per image, with GluonCV's outputs.

The rule with its edges is in docs/rules.md ("Second-stage OHEM").
"""
from __future__ import annotations

import contextlib
import threading

from mxnet import autograd

from . import backend, draws, nms
from ._arrays import Array, finite_rows_F
from .backend import Backend
from .checks import check_int, check_ratio
from .options import Draw
from .rcnn import RCNNTargetSampler

__all__ = ['hardest_rows', 'head_loss', 'OHEMTargetSampler', 'scored_by', 'OHEM_MODES']

#: ``'paper'``: the ``num_sample`` hardest rows, positives capped at ``max_pos`` (default);
#: ``'balanced'``: mmdetection's, the ``max_pos`` hardest positives and the hardest negatives
#: for the rest.
OHEM_MODES = ('paper', 'balanced')


# --------------------------------------------------------------------------- the selection
def hardest_rows(be: Backend, loss: Array, labels: Array, boxes: Array, num_sample: int,
                 max_pos: int, nms_thresh: float | None = 0.7, mode: str = 'paper') -> Array:
    """The rows of each image that OHEM trains: a (B, K) float32 0/1 mask.

    Parameters
    ----------
    be : the arrays' backend (``NUMPY``, ``ND`` or ``SYM`` of :mod:`samplers.backend`)
    loss : (B, K) float, each row's loss; larger is harder
    labels : (B, K) 1 / -1 / 0 (positive, negative, ignored)
    boxes : (B, K, 4) corner boxes of the rows
    num_sample : rows kept per image (S), >= 1
    max_pos : most positives kept per image, in [0, S]
    nms_thresh : float in (0, 1] or None, default 0.7
    mode : ``'paper'`` (default) or ``'balanced'`` (:data:`OHEM_MODES`)

    Rule, per image. Candidates are the rows labelled 1 or -1 whose loss and box are finite;
    no other row is ever chosen. Walking the candidates hardest first (ties: lower row
    first), NMS drops a candidate whose box has IoU > ``nms_thresh`` with a box kept before
    it (None: nothing is dropped). Of the survivors, ``paper`` keeps the ``S`` hardest with
    at most ``max_pos`` positives (a positive past that cap is passed over); ``balanced``
    keeps the ``min(max_pos, #pos)`` hardest positives, then the hardest negatives for the
    remaining ``S - kept positives``. Both keep-top steps use the tie rule of
    :mod:`samplers.draws` (lower index first). Fewer candidates than ``S``: all survivors.
    """
    if mode not in OHEM_MODES:
        raise ValueError('mode must be one of {}, got {!r}'.format(OHEM_MODES, mode))
    candidate = be.mask(labels != 0) * be.finite_rows(be.expand(loss, -1)) \
        * be.finite_rows(boxes)
    # NaN never reaches a sort: a candidate's loss is finite, every other row's becomes 0.
    loss = be.where(candidate > 0, be.float32(loss), be.zeros_like(candidate))
    if nms_thresh is not None:
        every = be.count(candidate) * 0 + 2.0 ** 24  # no quota: every survivor (B, 1)
        if be is backend.NUMPY:
            candidate = nms.dedup_np(loss, candidate, every, boxes, nms_thresh)
        else:
            candidate = nms.dedup_F(be.F, loss, candidate, be.float32(every), boxes,
                                    nms_thresh)
    pos = candidate * be.mask(labels > 0)
    neg = candidate * be.mask(labels < 0)
    kept_pos = draws.keep_top(be, loss, pos, be.minimum(be.count(pos), float(max_pos)))
    if mode == 'balanced':
        room = be.minimum(float(num_sample) - be.count(kept_pos), be.count(neg))
        return kept_pos + draws.keep_top(be, loss, neg, room)
    pool = kept_pos + neg
    return draws.keep_top(be, loss, pool, be.minimum(be.count(pool), float(num_sample)))


# --------------------------------------------------------------------------- the loss
def head_loss(F, cls_pred, box_pred, rois, labels, matches, gt_label, gt_boxes, num_class,
              stds=(.1, .1, .2, .2)):
    """Each row's R-CNN loss, (B, K): what :func:`hardest_rows` ranks by.

    ``F`` ``mx.nd`` or ``mx.sym``; ``cls_pred`` (B, K, C + 1) logits (class 0 background);
    ``box_pred`` (B, K, C, 4) per-class box offsets; ``rois`` (B, K, 4) corners; ``labels``
    (B, K) 1 / -1 / 0; ``matches`` (B, K) index of each positive's box in ``gt_boxes``
    (B, M, 4), whose class ``gt_label`` (B, M) is in [0, C); ``num_class`` C; ``stds`` the
    box encoding's (GluonCV's ``box_norm``).

    Loss: softmax cross-entropy against the class target (the matched box's class + 1 for a
    positive, 0 otherwise), plus, for a positive, the smooth L1 (sigma 1: GluonCV's
    ``HuberLoss``) of its class's offsets against its encoded box target, summed over the 4
    coordinates. Ignored rows get a loss too (the background one); :func:`hardest_rows`
    never picks them.
    """
    positive = labels > 0
    box_class = backend.of_kind(matches).take_rows(F.cast(gt_label, 'float32'), matches)  # (B, K)
    cls_target = F.where(positive, box_class + 1, F.zeros_like(box_class))
    cls_loss = -F.pick(F.log_softmax(cls_pred, axis=-1), cls_target, axis=-1)
    target = _encode(F, rois, F.gather_nd(gt_boxes, _rows_of(F, matches)), stds)
    own = F.expand_dims(F.one_hot(box_class, depth=num_class), axis=-1)         # (B, K, C, 1)
    offsets = F.sum(F.broadcast_mul(box_pred, own), axis=2)                      # (B, K, 4)
    box_loss = F.sum(F.smooth_l1(offsets - target, scalar=1.0), axis=-1)
    return cls_loss + F.where(positive, box_loss, F.zeros_like(box_loss))


def _rows_of(F, index):
    """gather_nd indices (2, B, K) of ``index`` (B, K): row ``index[b, k]`` of image ``b``."""
    image = F.broadcast_like(F.reshape(F.contrib.arange_like(index, axis=0), (-1, 1)), index)
    return F.stack(image, F.cast(index, 'float32'))


def _encode(F, anchors, gts, stds):
    """GluonCV's box target: center offsets over width / height and log size ratios, / stds."""
    def centers(b):
        x1, y1, x2, y2 = F.split(b, num_outputs=4, axis=-1)
        return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    ax, ay, aw, ah = centers(anchors)
    gx, gy, gw, gh = centers(gts)
    return F.concat((gx - ax) / aw / stds[0], (gy - ay) / ah / stds[1],
                    F.log(gw / aw) / stds[2], F.log(gh / ah) / stds[3], dim=-1)


# --------------------------------------------------------------------------- the sampler
_SCORER = threading.local()


@contextlib.contextmanager
def scored_by(scorer):
    """Calls of :class:`OHEMTargetSampler` inside the ``with`` block (this thread) rank by
    ``scorer(F, rois, labels, matches)``: (B, K, 4), (B, K), (B, K) in, (B, K) losses out
    (e.g. the network's head on ``rois``, then :func:`head_loss`). Gradient is stopped at
    its output."""
    outer = getattr(_SCORER, 'fn', None)
    _SCORER.fn = scorer
    try:
        yield
    finally:
        _SCORER.fn = outer


class OHEMTargetSampler(RCNNTargetSampler):
    """:class:`samplers.rcnn.RCNNTargetSampler`'s call and outputs, rows chosen by OHEM.

    Parameters
    ----------
    num_image, num_proposal, num_sample, pos_iou_thresh, pos_ratio, max_num_gt, hard
        As :class:`samplers.rcnn.RCNNTargetSampler` (``pos_ratio`` gives ``_max_pos``, the
        positives' cap). OHEM chooses by loss, not by a draw: a ``draw`` other than the
        default raises ``ValueError``.
    nms_thresh : float in (0, 1] or None, default 0.7
        :func:`hardest_rows`' de-duplication (the paper's 0.7; None: none).
    mode : ``'paper'`` (default) or ``'balanced'``, see :func:`hardest_rows`.
    top_n : int >= num_sample or None, default None
        Score only the ``top_n`` proposals of highest RPN score per image (and every ground
        truth row); None: all ``num_proposal``.

    Called as ``sampler(rois, scores, gt_boxes, hard=None, crowd=None)`` inside
    :func:`scored_by`. Rule, per image: every candidate row (proposals, or the ``top_n``
    best, plus the ground truth) is labelled by the second-stage rule with no draw (hard,
    crowd, padding and non-finite rows ignored); the scorer gives each its loss, without
    gradient; :func:`hardest_rows` keeps ``num_sample`` of them. Returns ``(rois (B, S, 4),
    samples (B, S), matches (B, S))``: the kept positives, then negatives, then ignored
    filler rows. Ties go to the lower candidate row (proposals in RPN order, then boxes).
    """

    def __init__(self, num_image: int, num_proposal: int, num_sample: int,
                 pos_iou_thresh: float = 0.5, pos_ratio: float = 0.25, max_num_gt: int = 300,
                 nms_thresh: float | None = 0.7, mode: str = 'paper',
                 top_n: int | None = None, **hard_options):
        super().__init__(num_image, num_proposal, num_sample, pos_iou_thresh, pos_ratio,
                         max_num_gt, **hard_options)
        if self._rule.draw_options != Draw():
            raise ValueError('draw: OHEMTargetSampler keeps the hardest rows and draws none; '
                             'got {!r}'.format(self._rule.draw_options))
        self._nms_thresh = None if nms_thresh is None else \
            check_ratio('nms_thresh', nms_thresh, low_open=True)
        if mode not in OHEM_MODES:
            raise ValueError('mode must be one of {}, got {!r}'.format(OHEM_MODES, mode))
        self._mode = mode
        self._top_n = None if top_n is None else \
            check_int('top_n', top_n, minimum=self._num_sample)

    def _settings(self):
        return dict(super()._settings(), nms_thresh=self._nms_thresh, mode=self._mode,
                    top_n=self._top_n)

    def hybrid_forward(self, F, rois, scores, gt_boxes, hard=None, crowd=None):
        scorer = getattr(_SCORER, 'fn', None)
        if scorer is None:
            raise ValueError('OHEMTargetSampler ranks rows by a scorer: call it inside '
                             'samplers.rcnn_ohem.scored_by(scorer)')
        with autograd.pause():
            if self._top_n is not None and self._top_n < self._num_proposal:
                rois, scores = _top_proposals(F, rois, scores, self._top_n)
            all_rois, ious, not_negative, hard = self._candidate_inputs(
                F, rois, scores, gt_boxes, hard, crowd)
            labels, matches = self._labels(F, ious, not_negative, hard)
        with autograd.pause(train_mode=True):  # the head as in the training pass (BatchNorm)
            loss = F.BlockGrad(scorer(F, all_rois, labels, matches))
        with autograd.pause():
            chosen = hardest_rows(backend.of_kind(loss), loss, labels, all_rois, self._num_sample,
                                  self._max_pos, self._nms_thresh, self._mode)
            return self._kept_rows(F, all_rois, labels * chosen, ious, hard)

    def _labels(self, F, ious, not_negative, hard):
        """(B, K) labels of every candidate (the quota op's rule without its draw) and each
        row's best normal box."""
        normal = ious if hard is None else F.broadcast_sub(ious, 2 * F.expand_dims(hard, 1))
        finite = finite_rows_F(F, ious)
        best_normal = F.max(normal, axis=-1)
        pos = (best_normal >= self._pos_iou_thresh) * finite
        neg = (1 - pos) * (F.max(ious, axis=-1) < self._pos_iou_thresh) * finite \
            * (1 - (not_negative > 0))
        return backend.of_kind(pos).labels(pos, neg), F.argmax(normal, axis=-1)


def _top_proposals(F, rois, scores, top_n):
    """The ``top_n`` proposals of highest score per image, in score order: (B, n, 4), (B, n)."""
    order = F.topk(F.reshape(scores, (0, -1)), axis=1, k=top_n, ret_typ='indices')
    where = _rows_of(F, order)
    return F.gather_nd(rois, where), F.gather_nd(F.reshape(scores, (0, -1)), where)
