"""SSD training pieces built on the OHEM selection: targets with hard flags, and the loss.

* :class:`SSDTargetGenerator`: anchors and ground truth to SSD's class and box
  targets, with hard (VOC ``difficult``) flags; optionally mines negatives
  with :class:`samplers.ohem.OHEMSampler` (``negative_mining_ratio > 0``).
* :class:`SSDMultiBoxLoss`: SSD's classification + smooth-L1 box loss, whose
  hard-negative mining is :func:`samplers.ohem.hard_negatives`, the selection
  :class:`~samplers.ohem.OHEMSampler` uses.

Both keep GluonCV 0.10.5's constructors, calls and outputs. Class targets use
GluonCV's SSD encoding: ``k + 1`` for a positive of class ``k``, 0 background
(negative), -1 ignored. Labels inside follow the package convention (see
:mod:`samplers`). Longer notes: the rules worked through in docs/rules.md
("SSDTargetGenerator and SSDMultiBoxLoss"), the differences from GluonCV in docs/gluoncv.md.
"""
from __future__ import annotations

import functools

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon

from . import backend
from ._blocks import SamplerBlock, option_settings
from ._arrays import Array, finite_rows_F, host_view, is_ndarray, like, to_numpy, use_numpy
from .backend import Backend
from .boxes import box_iou, center_to_corner, encode_boxes, too_small
from .checks import (check_dtype, check_int, check_one_context, check_ratio,
                     check_stds, hard_flags, hard_on_device)
from .background import BackgroundRanking
from .options import HardRule, resolve
from .ohem import OHEMSampler, hard_negatives

__all__ = ['SSDTargetGenerator', 'SSDMultiBoxLoss', 'ssd_matches']

_INF = float('inf')
#: GluonCV's bipartite threshold and tie tolerance (pairs need IoU > this).
_EPS = 1e-12


# --------------------------------------------------------------------------- matching
def _bipartite(ious):
    """Greedy one-to-one matching (``mx.nd.contrib.bipartite_matching``): (B, N) box index or -1.

    Pairs are taken by falling IoU, each anchor and each box at most once, and
    only pairs with IoU > 1e-12. MXNet's operator, on the input's context
    (numpy input goes through a CPU NDArray).
    """
    if use_numpy(ious):
        data = mx.nd.array(to_numpy(ious), dtype='float32')
        return mx.nd.contrib.bipartite_matching(data, threshold=_EPS)[0].asnumpy()
    return mx.nd.contrib.bipartite_matching(ious, threshold=_EPS)[0]


def ssd_matches(ious: Array, hard: Array, iou_thresh: float) -> Array:
    """SSD's matched box per anchor, hard boxes left out: (B, N), box index or -1.

    ``ious`` (B, N, M) IoU of every anchor with every box; ``hard`` (B, 1, M)
    0/1, 1 for a hard box (its column never matches); ``iou_thresh`` > 0.
    numpy arrays or NDArrays (the result has the same kind).

    Rule, over the normal boxes only (hard columns count as IoU -1):

    1. bipartite: pairs by falling IoU, one per anchor and per box (IoU > 0);
    2. an anchor left out there matches its best box ``j`` when its IoU is
       within 1e-12 of the best any anchor has with ``j``, and > 0;
    3. any anchor still unmatched matches its best box if that IoU >= ``iou_thresh``.

    Equals GluonCV's ``CompositeMatcher([BipartiteMatcher(share_max=False),
    MaximumMatcher(iou_thresh)])`` on the normal boxes, except that step 2
    needs IoU > 0 (GluonCV also matches a zero-IoU anchor to a box that
    overlaps no anchor at all).
    """
    if int(np.prod(ious.shape)) == 0:  # no anchor or no box matches nothing; MXNet's matcher
        # divides by zero (SIGFPE) without anchors, and its operators reject zero-size arrays
        return like(np.full(tuple(ious.shape[:2]), -1.0, np.float32), ious)
    be = backend.of(ious)
    normal = be.where(hard > 0, -1.0, ious)
    bipartite = _bipartite(normal)
    best_box = be.argmax(normal, 2)  # (B, N), float32 indices
    best = be.max(normal, 2)
    best_of_box = be.take_rows(be.max(normal, 1), best_box)
    tied = be.mask(best + _EPS >= best_of_box) * be.mask(best > 0)
    over = be.mask(best >= iou_thresh)
    first = be.where(bipartite >= 0, bipartite, be.where(tied > 0, best_box, -1.0))
    return be.where(first >= 0, first, be.where(over > 0, best_box, -1.0))


def _flags(hard, batch, num_box, gt_shape, numpy_path, ctx):
    """Hard flags (:func:`samplers.checks.hard_flags`) as (B, 1, M) float32 0/1: numpy on
    the numpy path, else an NDArray on ``ctx`` (NDArray flags read on the device)."""
    flags = hard_flags(hard, num_box, batch, against='gt_boxes {}'.format(gt_shape),
                       numpy_path=numpy_path or not num_box, ctx=ctx)
    if numpy_path or not num_box:  # MXNet's operators reject zero-size arrays
        flags = np.zeros((batch, 1, num_box), np.float32) if flags is None else \
            np.broadcast_to(flags.reshape(flags.shape[:-1] + (1, num_box)),
                            (batch, 1, num_box)).astype(np.float32)
        return flags if numpy_path else mx.nd.array(flags, ctx=ctx)
    flags = hard_on_device(flags, num_box, ctx).reshape((-1, 1, num_box))
    return mx.nd.broadcast_to(flags, shape=(batch, 1, num_box))


# --------------------------------------------------------------------------- targets
class SSDTargetGenerator(SamplerBlock, gluon.Block):
    """SSD's training targets from anchors and ground truth, hard boxes ignored.

    Parameters (GluonCV's)
    ----------------------
    iou_thresh : float in (0, 1], default 0.5
        An anchor whose best IoU with a normal box reaches it matches that box.
    neg_thresh : float in (0, 1], default 0.5
        An unmatched anchor with IoU >= ``neg_thresh`` with a hard box is ignored; with
        mining, one with IoU >= ``neg_thresh`` with any box is never mined.
    negative_mining_ratio : float, default 3
        > 0: negatives are mined from ``cls_preds`` by :class:`samplers.ohem.OHEMSampler`
        (``ratio`` per positive); <= 0: every other anchor is a negative.
    stds : 4 floats, default (0.1, 0.1, 0.2, 0.2)
        Box targets are divided by these.

    Parameter (this package's)
    --------------------------
    hard : :class:`samplers.HardRule` or None (default ``HardRule()``)
        ``min_size`` (default None): a box whose shorter side (``min(x2 - x1, y2 - y1)``,
        in ``gt_boxes``' units: pixels of the network input in GluonCV's SSD transform) is
        below it is hard too (flag OR too small). The other fields stay at their defaults
        (anchors near a hard box are ignored at ``neg_thresh``; SSD takes no crowd regions).
        ``hard_min_size=`` (flat) is deprecated (:func:`samplers.options.resolve`).

    Called as ``generator(anchors, cls_preds, gt_boxes, gt_ids, hard=None)``: ``anchors``
    (1, N, 4) or (N, 4) center-format (cx, cy, w, h); ``cls_preds`` (B, N, C) logits, class
    0 background, only read when mining (may be None otherwise); ``gt_boxes`` (B, M, 4)
    corners; ``gt_ids`` (B, M, 1) or (B, M); ``hard`` (M,) or (B, M) flags
    (:mod:`samplers.checks`). numpy arrays or NDArrays. Returns ``(cls_targets,
    box_targets, box_masks)`` in the anchors' kind: (B, N) float32 (``id + 1`` positive, 0
    negative, -1 ignored), (B, N, 4) float32 encoded boxes ``((g_xy - a_xy) / a_wh / std,
    log(g_wh / a_wh) / std)`` (0 off positives), (B, N, 4) float32 0/1 masks.

    Rule: positives are the anchors :func:`ssd_matches` matches (hard boxes never match);
    ignored are the unmatched anchors with IoU >= ``neg_thresh`` with a hard box; everything
    else is a negative, or, when mining, a candidate for OHEM.

    Edges: no ground truth (M = 0): every anchor negative (or mined), on every path. No
    anchor (N = 0) or no image (B = 0): empty targets, made before MXNet's matcher (which
    divides by zero without anchors). No hard box: the targets are GluonCV's (except the
    zero-IoU edge of :func:`ssd_matches`). numpy ``gt_boxes``, ``gt_ids`` or ``hard`` with
    NDArray anchors are copied to the anchors' context.
    """

    def __init__(self, iou_thresh: float = 0.5, neg_thresh: float = 0.5,
                 negative_mining_ratio: float = 3, stds: tuple = (0.1, 0.1, 0.2, 0.2),
                 hard: HardRule | None = None, **kwargs):
        block = {k: kwargs.pop(k) for k in ('prefix', 'params') if k in kwargs}
        super(SSDTargetGenerator, self).__init__(**block)
        _, hard = resolve(type(self).__name__, kwargs, hard=hard, accepts=('hard',))
        self._hard = hard.only(type(self).__name__, ('min_size',))
        self._hard_min_size = hard.min_size
        self._iou_thresh = check_ratio('iou_thresh', iou_thresh, 0.0, 1.0, low_open=True)
        self._neg_thresh = check_ratio('neg_thresh', neg_thresh, 0.0, 1.0, low_open=True)
        ratio = check_ratio('negative_mining_ratio', negative_mining_ratio, -_INF, _INF,
                            high_open=True)
        self._mining_ratio = ratio if ratio > 0 else -1
        self._sampler = OHEMSampler(ratio, thresh=self._neg_thresh) if ratio > 0 else None
        self._stds = check_stds('stds', stds)

    def _settings(self):
        settings = dict(iou_thresh=self._iou_thresh, neg_thresh=self._neg_thresh,
                        negative_mining_ratio=self._mining_ratio,
                        stds=self._stds)
        settings.update(option_settings(hard=self._hard))
        return settings

    @property
    def hard(self) -> HardRule:
        """How hard boxes are treated (:class:`samplers.HardRule`)."""
        return self._hard

    @property
    def hard_min_size(self) -> float | None:
        """Boxes with a shorter side below this are hard (None: no size rule)."""
        return self._hard_min_size

    def forward(self, anchors: Array, cls_preds: Array | None, gt_boxes: Array, gt_ids: Array,
                hard: Array | None = None) -> tuple[Array, Array, Array]:
        """``(cls_targets, box_targets, box_masks)``; see the class docstring."""
        if self._sampler is not None and cls_preds is None:
            raise ValueError('cls_preds is needed when negative_mining_ratio > 0')
        if gt_boxes.ndim != 3 or gt_boxes.shape[-1] != 4:
            raise ValueError('gt_boxes must have shape (B, M, 4), got {}'.format(gt_boxes.shape))
        if anchors.shape[-1] != 4 or int(np.prod(anchors.shape[:-1])) != anchors.shape[-2]:
            raise ValueError('anchors must have shape (1, N, 4) or (N, 4), got {}'
                             .format(anchors.shape))
        batch, num_box = gt_boxes.shape[:2]
        if tuple(gt_ids.shape[:2]) != (batch, num_box):
            raise ValueError('gt_ids must have shape (B, M, 1) or (B, M) to match gt_boxes {}, '
                             'got {}'.format(tuple(gt_boxes.shape), tuple(gt_ids.shape)))
        numpy_path = use_numpy(anchors)
        ctx = None if numpy_path else anchors.context
        num = anchors.shape[-2]
        if self._sampler is not None:
            cls_preds = _checked_cls_preds(cls_preds, batch, num, numpy_path, ctx)
        if batch == 0 or num == 0:  # nothing to label (MXNet's matcher divides by zero at N = 0)
            hard_flags(hard, num_box, batch, against='gt_boxes {}'.format(tuple(gt_boxes.shape)),
                       numpy_path=numpy_path or not num_box, ctx=ctx)  # checked all the same
            return tuple(like(np.zeros(shape, np.float32), anchors)
                         for shape in ((batch, num), (batch, num, 4), (batch, num, 4)))
        flags = _flags(hard, batch, num_box, tuple(gt_boxes.shape), numpy_path, ctx)
        conv = (lambda a: to_numpy(a, np.float32)) if numpy_path else \
            functools.partial(_float32_on, ctx=ctx)
        anc = center_to_corner(conv(anchors).reshape((-1, 4)))
        gt = conv(gt_boxes)
        if self._hard_min_size is not None and num_box:
            small = backend.of(flags).mask(too_small(gt, self._hard_min_size))
            flags = backend.of(flags).maximum(flags, small.reshape((batch, 1, num_box)))
        ids = conv(gt_ids).reshape((batch, num_box))
        with np.errstate(divide='ignore', invalid='ignore'):
            out = self._targets(backend.of(anchors), anc, cls_preds, gt, ids, flags)
        if numpy_path:
            return tuple(like(a, anchors, np.float32) for a in out)
        return out

    def _targets(self, be: Backend, anc, cls_preds, gt, ids, flags):
        """``(cls_targets, box_targets, box_masks)`` of corner anchors ``anc`` (N, 4), logits
        ``cls_preds`` (B, N, C) or None, boxes ``gt`` (B, M, 4), class ids ``ids`` (B, M) and
        hard ``flags`` (B, 1, M), all arrays of backend ``be``; see the class docstring."""
        batch, num_box = gt.shape[:2]
        num = anc.shape[0]
        anchors_b = be.broadcast_to(be.expand(anc, 0), (batch, num, 4))
        if num_box == 0:
            match = be.zeros_like(anchors_b[:, :, 0]) - 1.0
        else:
            ious = box_iou(anchors_b, gt)
            match = ssd_matches(ious, flags, self._iou_thresh)
        positive = be.mask(match >= 0)
        if self._sampler is not None:
            # No ground truth: every best IoU is 0.
            samples = self._sampler(match, cls_preds, ious if num_box else be.zeros_like(match))
        elif num_box == 0:
            samples = positive * 2 - 1
        else:
            hard_iou = be.max(be.where(flags > 0, ious, -1.0), 2)
            ignored = be.mask(hard_iou >= self._neg_thresh) * (1 - positive)
            samples = positive - (1 - positive) * (1 - ignored)
        if num_box == 0:
            return (be.where(samples < 0, 0.0, -1.0) * 1.0, be.zeros_like(anchors_b) * 1.0,
                    be.zeros_like(anchors_b) * 1.0)
        box = be.maximum(match, 0) * 1.0
        cls_targets = be.where(samples > 0, be.take_rows(ids, box) + 1,
                               be.where(samples < 0, 0.0, -1.0))
        matched = be.concat([be.expand(be.take_rows(c, box), -1) for c in be.unstack(gt)])
        mask = be.concat([be.expand(positive, -1)] * 4)
        box_targets = be.where(mask > 0, encode_boxes(anchors_b, matched, self._stds), 0.0)
        return cls_targets, box_targets, mask


def _float32_on(a, ctx):
    """``a`` (numpy or NDArray) as a float32 NDArray on ``ctx``; a zero-size one is made from
    host zeros (MXNet's operators, copies included, reject zero-size arrays)."""
    if not is_ndarray(a) or a.size == 0:
        return mx.nd.array(np.zeros(a.shape) if is_ndarray(a) else a, ctx=ctx, dtype='float32')
    return a.astype('float32').as_in_context(ctx)


def _checked_cls_preds(cls_preds, batch, num, numpy_path, ctx):
    """``cls_preds`` for mining: numpy on the numpy path, else an NDArray on ``ctx``;
    ``ValueError`` naming it unless it holds (B, N, C) float logits with C >= 2."""
    shape = tuple(cls_preds.shape) if hasattr(cls_preds, 'shape') else np.shape(cls_preds)
    if len(shape) != 3 or shape[:2] != (batch, num) or shape[2] < 2:
        raise ValueError('cls_preds must have shape (B, N, C) = ({}, {}, C) with C >= 2 to go '
                         'with gt_boxes and anchors, got {}'.format(batch, num, shape))
    if numpy_path:
        cls_preds = to_numpy(cls_preds)
    elif is_ndarray(cls_preds):
        cls_preds = cls_preds.as_in_context(ctx)
    else:
        cls_preds = mx.nd.array(cls_preds, ctx=ctx, dtype=np.asarray(cls_preds).dtype)
    check_dtype('cls_preds', cls_preds, 'f')
    return cls_preds


# --------------------------------------------------------------------------- the loss
class SSDMultiBoxLoss(SamplerBlock, gluon.Block):
    """SSD's loss: classification on positives and mined negatives, smooth L1 on positives.

    Parameters (GluonCV's)
    ----------------------
    negative_mining_ratio : float, default 3
        Negatives mined per positive; a negative ratio counts as 0 (GluonCV's ``max(0, ratio)``).
    rho : float > 0, default 1.0
        Smooth-L1 knee: ``|d| - rho / 2`` above ``rho``, ``d**2 / (2 rho)`` below.
    lambd : float, default 1.0
        Weight of the box loss: ``sum_loss = cls_loss + lambd * box_loss``.
    min_hard_negatives : int >= 0, default 0
        Negatives mined per image even with few or no positives.

    Called as ``loss(cls_pred, box_pred, cls_target, box_target)``, each an NDArray or a
    list of NDArrays (one per device): ``cls_pred`` (B, N, C) logits, class 0 background;
    ``box_pred`` (B, N * 4) or (B, N, 4); ``cls_target`` (B, N): ``k + 1`` positive, 0
    background, -1 ignored; ``box_target`` (B, N, 4). Returns three lists (one entry per
    device) of (B,) NDArrays: ``sum_losses``, ``cls_losses``, ``box_losses``, each image's
    sum divided by ``max(1, positives in the whole batch over every device)``.

    Rule: the classification loss ``-log softmax(cls_pred)[target]`` is summed over the
    positives and the mined negatives (:meth:`cls_loss_mask`): per image the
    ``min(max(min_hard_negatives, ceil(ratio * num_pos)), num_candidates)`` background
    anchors (target 0, finite logits) with the largest loss, ties to the lower index. The
    product ``ratio * num_pos`` is GluonCV's: both in float32, rounded to float32 (ratio 0.07
    with 100 positives mines 7, where double precision would give 8).

    Edges: ignored anchors (-1) are never mined and carry no classification loss; positives
    are never displaced; a row with a non-finite logit is never mined. No gradient flows
    through the choice. A non-finite value stays in its own image's losses (a NaN logit on
    a positive makes that image's loss NaN, no other); with nothing chosen in the batch (no
    positive, or every anchor ignored) the losses are zeros and no gradient reaches the
    predictions, whatever their values. float64 predictions work with float32 targets (the
    losses take ``cls_pred``'s dtype); float16 ones are ranked by their float32 loss on every
    path. A device with no anchor or no image (N or B = 0) gets (B,) zeros. Each device's four
    NDArrays must share one context (``ValueError`` otherwise, on every path). With no
    ignored anchor and finite logits the losses are GluonCV's (to float32 rounding).
    """

    def __init__(self, negative_mining_ratio: float = 3, rho: float = 1.0,
                 lambd: float = 1.0, min_hard_negatives: int = 0, **kwargs):
        super(SSDMultiBoxLoss, self).__init__(**kwargs)
        self._ratio = max(0.0, check_ratio('negative_mining_ratio', negative_mining_ratio,
                                           -_INF, _INF, high_open=True))
        # The ratio as the float32 GluonCV multiplies by (the largest float32 if it overflows).
        self._ratio32 = float(np.float32(min(self._ratio, float(np.finfo(np.float32).max))))
        self._rho = check_ratio('rho', rho, 0.0, _INF, low_open=True, high_open=True)
        self._lambd = check_ratio('lambd', lambd, -_INF, _INF, low_open=True, high_open=True)
        self._min_hard = check_int('min_hard_negatives', min_hard_negatives, minimum=0)

    def _settings(self):
        return dict(negative_mining_ratio=self._ratio, rho=self._rho, lambd=self._lambd,
                    min_hard_negatives=self._min_hard)

    def forward(self, cls_pred: Array | list, box_pred: Array | list, cls_target: Array | list,
                box_target: Array | list) -> tuple[list, list, list]:
        """``(sum_losses, cls_losses, box_losses)``; see the class docstring."""
        parts = [x if isinstance(x, (list, tuple)) else [x]
                 for x in (cls_pred, box_pred, cls_target, box_target)]
        if len({len(p) for p in parts}) != 1:
            raise ValueError('cls_pred, box_pred, cls_target and box_target must be lists of '
                             'one length, got lengths {}'.format([len(p) for p in parts]))
        for cp, bp, ct, bt in zip(*parts):
            _check_loss_inputs(cp, bp, ct, bt)
        empty = [cp.shape[0] * cp.shape[1] == 0 for cp in parts[0]]
        if any(empty):
            return self._around_empty(parts, empty)
        if all(use_numpy(ct) for ct in parts[2]):  # CPU: count on the host, no engine round
            targets = [host_view(ct) for ct in parts[2]]
            scale = 1.0 / max(1, sum(int(np.count_nonzero(t > 0)) for t in targets))
            return self._gathered(parts, targets, scale)
        with autograd.pause():
            num_pos = [mx.nd.sum(ct > 0) for ct in parts[2]]
        sums, cls_losses, box_losses = [], [], []
        for cp, bp, ct, bt in zip(*parts):
            with autograd.pause():
                total = mx.nd.add_n(*[p.as_in_context(cp.context) for p in num_pos])
                scale = (1.0 / mx.nd.maximum(total, 1.0)).astype(cp.dtype, copy=False)
            cls_loss, box_loss = self._losses_dense(cp, bp, ct, bt)
            cls_losses.append(mx.nd.broadcast_mul(cls_loss, scale))
            box_losses.append(mx.nd.broadcast_mul(box_loss, scale))
            sums.append(cls_losses[-1] + self._lambd * box_losses[-1])
        return sums, cls_losses, box_losses

    def _around_empty(self, parts, empty):
        """The three lists when the devices marked ``empty`` hold no anchor or no image
        (MXNet's operators reject zero-size arrays): theirs are (B,) zeros, in ``cls_pred``'s
        dtype, and the others' are computed without them (they hold no positive)."""
        full = [[x for x, e in zip(part, empty) if not e] for part in parts]
        outs = [iter(out) for out in (self.forward(*full) if full[0] else ([], [], []))]
        return tuple([like(np.zeros(cp.shape[:1], np.dtype(cp.dtype)), cp) if e else next(out)
                      for cp, e in zip(parts[0], empty)] for out in outs)

    def _gathered(self, parts, targets, scale):
        """The three lists, from :meth:`_losses_gathered` on each device."""
        outs = [self._losses_gathered(cp, bp, target, bt, scale)
                for (cp, bp, _, bt), target in zip(zip(*parts), targets)]
        return tuple([out[i] for out in outs] for i in range(3))

    def cls_loss_mask(self, cls_target, loss, finite):
        """The anchors that carry classification loss: 0/1 (B, N) float32 (the mining rule).

        ``cls_target`` (B, N) as in the call; ``loss`` (B, N) each anchor's
        background loss (at least where the target is 0); ``finite`` (B, N) 0/1,
        1 where the anchor's logits are all finite. numpy arrays, or NDArrays
        (those on a CPU context are computed with numpy); the result has the
        kind of ``cls_target``.
        """
        if use_numpy(cls_target):
            target, loss, finite = (to_numpy(a) for a in (cls_target, loss, finite))
            return like(self._chosen(backend.NUMPY, target, finite,
                                     _ranked_by(backend.NUMPY, loss, finite)), cls_target)
        if np.dtype(loss.dtype) == np.float16:  # MXNet's sort takes no float16
            loss = loss.astype('float32')
        return self._chosen(backend.ND, cls_target, finite,
                            _ranked_by(backend.ND, loss, finite))

    def _chosen(self, be, target, finite, mine):
        """:meth:`cls_loss_mask` on arrays of backend ``be``; ``mine(candidate, quota)``
        the hardest ``quota`` (B, 1) of each image's 0/1 ``candidate``."""
        positive = be.mask(target > 0)
        candidate = be.mask(target == 0) * be.mask(finite > 0)
        with np.errstate(over='ignore'):  # a huge ratio: an infinite quota, capped later
            return positive + mine(candidate, self._quota(be, positive))

    def _quota(self, be, positive):
        """Negatives wanted per image, (B, 1) float64, as GluonCV counts them.

        GluonCV mines the anchors whose rank is below ``max(min_hard_negatives, q)``, ``q``
        the float32 product of the float32 ratio and the positive count: that is
        ``ceil(q)`` anchors (``q`` itself when whole).
        """
        product = be.float32(be.count(positive)) * self._ratio32
        wanted = be.float64(-be.floor(-product))
        return be.maximum(wanted, float(self._min_hard))

    def _smooth_l1(self, diff):
        """``|d| - rho / 2`` where ``|d| > rho``, else ``d**2 / (2 rho)`` (MXNet's
        ``smooth_l1`` with ``sigma**2 = 1 / rho``)."""
        return mx.nd.smooth_l1(diff, scalar=self._rho ** -0.5)

    def _losses_dense(self, cp, bp, ct, bt):
        """Per-image (B,) sums, every anchor computed: the plain rule, and the device path
        (no host copy).

        Rows with a non-finite logit that are not positive are zeroed before
        ``log_softmax``, and box differences off the positives before the smooth
        L1, so that they pass no NaN back through the gradient (a positive's NaN
        is the network's, and stays visible). Both sums are in ``cp``'s dtype.
        """
        with autograd.pause():
            finite = finite_rows_F(mx.nd, cp.detach())
            positive = (ct > 0).astype(finite.dtype, copy=False)
            keep = mx.nd.maximum(finite, positive).expand_dims(-1)
        cp = mx.nd.where(mx.nd.broadcast_like(keep, cp) > 0, cp, mx.nd.zeros_like(cp))
        log_p = mx.nd.log_softmax(cp, axis=-1)
        cls_loss = -mx.nd.pick(log_p, mx.nd.maximum(ct, 0), axis=-1)
        with autograd.pause():  # float16 logits are ranked by their float32 loss, as on CPU
            ranked = cls_loss.detach() if cp.dtype != np.float16 else -mx.nd.pick(
                mx.nd.log_softmax(cp.detach().astype('float32'), axis=-1),
                mx.nd.maximum(ct, 0), axis=-1)
            chosen = self.cls_loss_mask(ct, ranked, finite)
        cls_loss = mx.nd.where((chosen > 0).astype(cls_loss.dtype, copy=False), cls_loss,
                               mx.nd.zeros_like(cls_loss))
        diff = mx.nd.reshape_like(bp, bt) - bt.astype(bp.dtype, copy=False)
        on_positive = mx.nd.broadcast_like((ct > 0).expand_dims(-1).astype(bp.dtype), diff)
        box_loss = self._smooth_l1(mx.nd.where(on_positive, diff, mx.nd.zeros_like(diff)))
        return (mx.nd.sum(cls_loss, axis=0, exclude=True),
                mx.nd.sum(box_loss, axis=0, exclude=True).astype(cp.dtype, copy=False))

    def _losses_gathered(self, cp, bp, target, bt, scale):
        """``(sum_loss, cls_loss, box_loss)``, (B,) each, times ``scale``: the CPU fast path.

        It exists because on CPU computing every anchor's ``log_softmax`` costs more than
        choosing on the host and gathering the few chosen rows (docs/bench.md, ``ssd-loss``);
        it gives :meth:`_losses_dense`'s values and gradients
        (``tests/test_ssd.py -k cpu_fast_path``), with the same choice (:meth:`_chosen`).

        ``target`` is the class target as a numpy array. The choice is made on
        the host from a view of the logits (:func:`samplers._arrays.host_view`,
        no copy) by :class:`samplers.background.BackgroundRanking`, which
        computes the background loss only of anchors that may be chosen; only
        the chosen rows (a few per positive) go through ``log_softmax``, and only the positive rows
        through the box loss, gathered with ``take`` so autograd sees them.
        Each image's values are then gathered into a row of its own (padded
        with a zero) and summed, so a non-finite value stays in its image: a
        handful of MXNet operators whatever the batch.
        """
        batch, num, num_class = cp.shape
        with autograd.pause():
            ranking = BackgroundRanking(host_view(cp))
            chosen = self._chosen(backend.NUMPY, target, ranking.finite, ranking.hardest)
        flat_target = target.reshape(-1)
        rows = np.flatnonzero(chosen.reshape(-1) > 0)
        pos = np.flatnonzero(flat_target > 0)
        # The gathered arrays have a bucketed length (_bucket): a few shapes recur, so MXNet's
        # per-shape MKLDNN primitives stop growing in number. The padding repeats anchor 0
        # and is in no image's sum; its gradient is 0 as long as anchor 0's logits and boxes
        # are finite, and otherwise the padded rows are zeroed (a selection, so no NaN of
        # anchor 0 reaches a gradient).
        k, p = _bucket(rows.size), _bucket(pos.size)
        zeroed = not _first_anchor_finite(cp, bp, bt)
        some_rows, some_pos = _padded(rows, k), _padded(pos, p)
        # (2, B, W) positions in the values below: image b's -log_p terms, then its box
        # terms; the padding points at the trailing zero.
        width = _bucket(max(1, _most_per_image(rows // num, batch),
                            4 * _most_per_image(pos // num, batch)))
        where = np.full((2, batch, width), k + 4 * p, np.int64)
        _fill_rows(where[0], rows // num, np.arange(rows.size))
        _fill_rows(where[1], np.repeat(pos // num, 4), k + np.arange(4 * pos.size))
        index = mx.nd.array(np.concatenate([some_rows, np.maximum(flat_target[some_rows], 0),
                                            some_pos, where.reshape(-1)]),
                            ctx=cp.context, dtype='int64')  # one copy; the parts are views
        logits = mx.nd.take(cp.reshape((-1, num_class)), index[:k], axis=0)
        if zeroed:
            logits = _real_rows(logits, rows.size)
        log_p = mx.nd.pick(mx.nd.log_softmax(logits, axis=-1), index[k:2 * k], axis=-1)
        diff = (mx.nd.take(bp.reshape((-1, 4)), index[2 * k:2 * k + p], axis=0)
                - mx.nd.take(bt.reshape((-1, 4)), index[2 * k:2 * k + p], axis=0).astype(
                    bp.dtype, copy=False))
        if zeroed:
            diff = _real_rows(diff, pos.size)
        box = self._smooth_l1(diff).reshape((-1,)).astype(log_p.dtype, copy=False)
        values = mx.nd.concat(log_p, box, mx.nd.zeros((1,), ctx=cp.context, dtype=log_p.dtype),
                              dim=0)
        sums = mx.nd.sum(mx.nd.take(values, index[2 * k + p:].reshape(where.shape)), axis=2)
        cls_loss, box_loss = sums[0] * -scale, sums[1] * scale
        return cls_loss + self._lambd * box_loss, cls_loss, box_loss


def _ranked_by(be, loss, finite):
    """``mine(candidate, quota)`` for :meth:`SSDMultiBoxLoss._chosen`: the selection by
    ``loss`` (where ``finite``)."""
    return functools.partial(hard_negatives, be, be.where(be.mask(finite > 0), loss, 0.0))


def _bucket(n):
    """``n`` rounded up to the next of 1..16, then 8 values per doubling (18, 20, ..., 30, 32,
    36, ...): at most 12.5 % more, and few distinct lengths however ``n`` varies."""
    shift = max(0, int(n).bit_length() - 4)
    return -(-int(n) >> shift) << shift if n > 0 else 1


def _real_rows(x, count):
    """(L, ...) NDArray ``x`` with the rows from ``count`` on replaced by zeros (``where``:
    their gradient is 0, whatever they hold)."""
    if count >= x.shape[0]:
        return x
    if count == 0:
        return mx.nd.zeros_like(x)
    real = mx.nd.array(np.arange(x.shape[0]) < count, ctx=x.context, dtype=x.dtype)
    return mx.nd.where(real, x, mx.nd.zeros_like(x))


def _first_anchor_finite(cp, bp, bt):
    """Whether anchor 0's logits, box prediction and box target are all finite (read in
    place on the host)."""
    return all(np.isfinite(host_view(x).reshape(-1)[:size]).all()
               for x, size in ((cp, cp.shape[-1]), (bp, 4), (bt, 4)))


def _padded(positions, length):
    """``positions`` (1-D int) followed by zeros up to ``length``."""
    out = np.zeros(length, np.int64)
    out[:positions.size] = positions
    return out


def _most_per_image(image, batch):
    """The largest number of entries one image has, from each entry's (sorted) image index."""
    return int(np.bincount(image, minlength=batch).max()) if image.size else 0


def _fill_rows(out, image, values):
    """``out[b]`` starts with the ``values`` whose ``image`` is b, in order (``image`` sorted)."""
    if image.size:
        first = np.searchsorted(image, image)  # each entry's image's first entry
        out[image, np.arange(image.size) - first] = values


def _check_loss_inputs(cp, bp, ct, bt):
    """``ValueError`` naming the argument unless one device's loss inputs fit together."""
    if not all(is_ndarray(a) for a in (cp, bp, ct, bt)):
        raise ValueError('cls_pred, box_pred, cls_target and box_target must be NDArrays')
    check_one_context([('cls_pred', cp), ('box_pred', bp), ('cls_target', ct),
                       ('box_target', bt)])
    if cp.ndim != 3 or tuple(ct.shape) != tuple(cp.shape[:2]):
        raise ValueError('cls_pred must be (B, N, C) and cls_target (B, N), got {} and {}'
                         .format(cp.shape, ct.shape))
    if tuple(bt.shape) != tuple(cp.shape[:2]) + (4,) or bp.size != bt.size:
        raise ValueError('box_target must be (B, N, 4) and box_pred hold B * N * 4 values, '
                         'got {} and {}'.format(bt.shape, bp.shape))
