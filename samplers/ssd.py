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
:mod:`samplers`). Longer notes (rules worked through, differences from
GluonCV) are in the README's SSD section.
"""
from __future__ import annotations

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon

from .backend import (check_flags, check_int, check_ratio, finite_F, host_view, is_ndarray, like, ops,
                      to_numpy, use_numpy)
from .boxes import center_to_corner, corner_to_center, box_iou
from .ohem import OHEMSampler, background_loss, hard_negatives

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


def ssd_matches(ious, hard, iou_thresh):
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
    o = ops(ious)
    normal = o.where(hard > 0, -1.0, ious)
    bipartite = _bipartite(normal)
    best_box = o.argmax(normal, axis=2) * 1.0  # (B, N), float indices on both backends
    best = o.max(normal, axis=2)
    best_of_box = _take_rows(o, o.max(normal, axis=1), best_box)
    tied = o.mask(best + _EPS >= best_of_box) * o.mask(best > 0)
    over = o.mask(best >= iou_thresh)
    first = o.where(bipartite >= 0, bipartite, o.where(tied > 0, best_box, -1.0))
    return o.where(first >= 0, first, o.where(over > 0, best_box, -1.0))


def _take_rows(o, table, idx):
    """``table[b, idx[b, n]]``: ``table`` (B, M), ``idx`` (B, N) integer-valued -> (B, N)."""
    if o.name == 'numpy':
        return np.take_along_axis(table, idx.astype(np.int64), axis=1)
    full = mx.nd.broadcast_axis(table.expand_dims(1), axis=1, size=idx.shape[1])
    return mx.nd.pick(full, idx, axis=2)


def _check_hard_shape(shape, batch, num_box):
    """``ValueError`` unless hard flags of ``shape`` are (M,) or (B, M)."""
    if tuple(shape) not in ((num_box,), (batch, num_box)):
        raise ValueError('hard must have shape (M,) or (B, M) = ({0},) or ({1}, {0}) to match '
                         'gt_boxes, got {2}'.format(num_box, batch, tuple(shape)))


def _check_hard(hard, batch, num_box):
    """Hard flags (M,) or (B, M) of {-1, 0, 1} as a (B, 1, M) float32 numpy 0/1 array.

    -1 (a padding row of a batched label) counts as not hard.
    """
    arr = to_numpy(hard).astype(np.float32)
    _check_hard_shape(arr.shape, batch, num_box)
    check_flags('hard', np.maximum(arr, 0), hint=' (-1 marks a padding row)')
    return np.broadcast_to(np.maximum(arr, 0).reshape(arr.shape[:-1] + (1, num_box)),
                           (batch, 1, num_box))


def _hard_on_device(hard, batch, num_box, ctx):
    """NDArray flags (M,) or (B, M) as (B, 1, M) float32 0/1 on ``ctx``, read on the device.

    Only the shape is checked (values would need a host copy): a value > 0 is hard,
    anything else (0, or -1 on a padding row) is not, as the numpy path reads 0/1/-1.
    """
    _check_hard_shape(hard.shape, batch, num_box)
    flags = (hard.as_in_context(ctx) > 0).astype('float32').reshape((-1, 1, num_box))
    return mx.nd.broadcast_to(flags, shape=(batch, 1, num_box))


# --------------------------------------------------------------------------- targets
class SSDTargetGenerator(gluon.Block):
    """SSD's training targets from anchors and ground truth, hard boxes ignored.

    Parameters (GluonCV's)
    ----------------------
    iou_thresh : float in (0, 1], default 0.5
        An anchor whose best IoU with a normal box reaches it matches that box.
    neg_thresh : float in (0, 1], default 0.5
        An unmatched anchor with IoU >= ``neg_thresh`` with a hard box is
        ignored; with mining, an unmatched anchor with IoU >= ``neg_thresh``
        with any box is never mined (as in GluonCV).
    negative_mining_ratio : float, default 3
        > 0: negatives are mined from ``cls_preds`` by
        :class:`samplers.ohem.OHEMSampler` (``ratio`` per positive); <= 0:
        every other anchor is a negative (GluonCV's ``NaiveSampler``).
    stds : 4 floats, default (0.1, 0.1, 0.2, 0.2)
        Box targets are divided by these.

    Called as ``generator(anchors, cls_preds, gt_boxes, gt_ids, hard=None)``:
    ``anchors`` (1, N, 4) or (N, 4) center-format (cx, cy, w, h) boxes;
    ``cls_preds`` (B, N, C) logits (class 0 background), used only when
    mining (may be None otherwise); ``gt_boxes`` (B, M, 4) corner boxes;
    ``gt_ids`` (B, M, 1) or (B, M) class ids; ``hard`` (M,) or (B, M) 0/1
    flags (-1 allowed on padding rows), None for none. numpy arrays or
    NDArrays; NDArrays on a CPU context are computed with numpy. On the device
    path NDArray flags stay on the device (any value > 0 is hard; numpy flags
    are checked to be 0/1/-1).

    Returns ``(cls_targets, box_targets, box_masks)`` in the anchors' kind:
    (B, N) float32 class targets (``id + 1`` positive, 0 negative, -1
    ignored), (B, N, 4) float32 encoded boxes ``((g_xy - a_xy) / a_wh / std,
    log(g_wh / a_wh) / std)`` (0 off positives), (B, N, 4) float32 0/1 masks.

    Rule: positives are the anchors :func:`ssd_matches` matches (hard boxes
    never match, neither as a best anchor nor over ``iou_thresh``);
    ignored are the unmatched anchors with IoU >= ``neg_thresh`` with a hard
    box; everything else is a negative, or, when mining, a candidate for
    OHEM. With no hard box the targets are GluonCV's (except the zero-IoU edge
    of :func:`ssd_matches`). No ground truth (M = 0): every anchor negative
    (or mined).
    """

    def __init__(self, iou_thresh=0.5, neg_thresh=0.5, negative_mining_ratio=3,
                 stds=(0.1, 0.1, 0.2, 0.2), **kwargs):
        super(SSDTargetGenerator, self).__init__(**kwargs)
        self._iou_thresh = check_ratio('iou_thresh', iou_thresh, 0.0, 1.0, low_open=True)
        self._neg_thresh = check_ratio('neg_thresh', neg_thresh, 0.0, 1.0, low_open=True)
        ratio = check_ratio('negative_mining_ratio', negative_mining_ratio, -_INF, _INF,
                            high_open=True)
        self._sampler = OHEMSampler(ratio, thresh=self._neg_thresh) if ratio > 0 else None
        stds = tuple(check_ratio('stds', s, 0.0, _INF, low_open=True, high_open=True)
                     for s in stds)
        if len(stds) != 4:
            raise ValueError('stds must hold 4 numbers, got {}'.format(stds))
        self._stds = stds

    def __repr__(self):
        return '{}(iou_thresh={}, neg_thresh={}, negative_mining_ratio={}, stds={})'.format(
            type(self).__name__, self._iou_thresh, self._neg_thresh,
            self._sampler._ratio if self._sampler else -1, self._stds)

    # pylint: disable=arguments-differ
    def __call__(self, anchors, cls_preds, gt_boxes, gt_ids, hard=None):
        # Gluon's Block.__call__ takes positional inputs only; let hard= be a keyword.
        return super(SSDTargetGenerator, self).__call__(anchors, cls_preds, gt_boxes, gt_ids,
                                                        hard)

    def forward(self, anchors, cls_preds, gt_boxes, gt_ids, hard=None):
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
        if hard is None:
            flags = np.zeros((batch, 1, num_box), np.float32)
        elif is_ndarray(hard) and not numpy_path and num_box:
            flags = _hard_on_device(hard, batch, num_box, anchors.context)
        else:
            flags = _check_hard(hard, batch, num_box)
        conv = (lambda a: to_numpy(a, np.float32)) if numpy_path else \
            (lambda a: a.astype('float32').as_in_context(anchors.context))
        anc = center_to_corner(conv(anchors).reshape((-1, 4)))
        gt = conv(gt_boxes)
        ids = conv(gt_ids).reshape((batch, num_box))
        if not numpy_path and not is_ndarray(flags):
            flags = mx.nd.array(flags, ctx=anchors.context)
        with np.errstate(divide='ignore', invalid='ignore'):
            out = self._targets(anc, cls_preds, gt, ids, flags)
        if numpy_path:
            return tuple(like(a, anchors, np.float32) for a in out)
        return out

    def _targets(self, anc, cls_preds, gt, ids, flags):
        o = ops(anc)
        batch, num_box = gt.shape[:2]
        num = anc.shape[0]
        if o.name == 'numpy':
            anchors_b = np.broadcast_to(anc, (batch, num, 4))
        else:
            anchors_b = mx.nd.broadcast_axis(anc.expand_dims(0), axis=0, size=batch)
        if num_box == 0:
            ious = o.zeros_like(anchors_b)[:, :, :0] if o.name == 'numpy' else None
            match = o.zeros_like(anchors_b[:, :, 0]) - 1.0
        else:
            ious = box_iou(anchors_b, gt)
            match = ssd_matches(ious, flags, self._iou_thresh)
        positive = o.mask(match >= 0)
        if self._sampler is not None:
            if ious is None:  # no ground truth on the NDArray path
                ious = mx.nd.zeros((batch, num, 0), ctx=anc.context)
            preds = to_numpy(cls_preds) if o.name == 'numpy' else cls_preds
            samples = self._sampler(match, preds, ious)
        elif num_box == 0:
            samples = positive * 2 - 1
        else:
            hard_iou = o.max(o.where(flags > 0, ious, -1.0), axis=2)
            ignored = o.mask(hard_iou >= self._neg_thresh) * (1 - positive)
            samples = positive - (1 - positive) * (1 - ignored)
        if num_box == 0:
            return (o.where(samples < 0, 0.0, -1.0) * 1.0, o.zeros_like(anchors_b) * 1.0,
                    o.zeros_like(anchors_b) * 1.0)
        box = o.maximum(match, 0) * 1.0
        cls_targets = o.where(samples > 0, _take_rows(o, ids, box) + 1,
                              o.where(samples < 0, 0.0, -1.0))
        matched = [_take_rows(o, gt[:, :, c], box) for c in range(4)]
        g = corner_to_center(_stack(o, matched))
        a = corner_to_center(anchors_b)
        sx, sy, sw, sh = self._stds
        codes = [(g[:, :, 0] - a[:, :, 0]) / a[:, :, 2] / sx,
                 (g[:, :, 1] - a[:, :, 1]) / a[:, :, 3] / sy,
                 o.log(g[:, :, 2] / a[:, :, 2]) / sw,
                 o.log(g[:, :, 3] / a[:, :, 3]) / sh]
        mask = _stack(o, [positive] * 4)
        box_targets = o.where(mask > 0, _stack(o, codes), 0.0)
        return cls_targets, box_targets, mask


def _stack(o, planes):
    """(B, N) planes -> (B, N, len(planes))."""
    if o.name == 'numpy':
        return np.stack(planes, axis=-1).astype(np.float32, copy=False)
    return mx.nd.stack(*planes, axis=-1)


# --------------------------------------------------------------------------- the loss
class SSDMultiBoxLoss(gluon.Block):
    """SSD's loss: classification on positives and mined negatives, smooth L1 on positives.

    Parameters (GluonCV's)
    ----------------------
    negative_mining_ratio : float >= 0, default 3
        Negatives mined per positive.
    rho : float > 0, default 1.0
        Smooth-L1 knee: ``|d| - rho / 2`` above ``rho``, ``d**2 / (2 rho)`` below.
    lambd : float, default 1.0
        Weight of the box loss: ``sum_loss = cls_loss + lambd * box_loss``.
    min_hard_negatives : int >= 0, default 0
        Negatives mined per image even with few or no positives.

    Called as ``loss(cls_pred, box_pred, cls_target, box_target)``, each an
    NDArray or a list of NDArrays (one per device): ``cls_pred`` (B, N, C)
    logits, class 0 background; ``box_pred`` (B, N * 4) or (B, N, 4);
    ``cls_target`` (B, N): ``k + 1`` positive, 0 background, -1 ignored (as
    :class:`SSDTargetGenerator` writes them); ``box_target`` (B, N, 4).

    Returns three lists (one entry per device) of (B,) NDArrays:
    ``sum_losses``, ``cls_losses``, ``box_losses``, each image's sum divided
    by ``max(1, positives in the whole batch over every device)``.

    Rule: the classification loss is ``-log softmax(cls_pred)[target]``
    (MXNet's stable ``log_softmax``) summed over the positives and the mined
    negatives. Mining is :func:`samplers.ohem.hard_negatives`, per image:
    the ``min(max(min_hard_negatives, ceil(ratio * num_pos)), num_candidates)``
    background anchors (target 0, finite logits) with the largest loss,
    ties to the lower index. GluonCV's per-image count (``rank < max(min_hard,
    ratio * num_pos)`` is that ceiling). Ignored anchors (-1) are never
    mined and carry no classification loss; positives are never displaced; a
    row with a non-finite logit is never mined. No gradient flows through the
    choice, nor into a row that is not chosen. With no ignored anchor and
    finite logits the losses are GluonCV's (to float32 rounding).

    Backends: the losses are ``mx.nd`` on each input's context, recorded by
    autograd. When every input is on a CPU context the choice is made in
    numpy from a view of the logits in place
    (:func:`samplers.backend.host_view`,
    :func:`samplers.ohem.background_loss`: about one pass over them), and
    only the chosen rows go through ``log_softmax`` (the positive rows
    through the box loss). Otherwise (GPU, or a list mixing CPU and GPU
    contexts) every row is computed with ``mx.nd`` and nothing
    is read on the host: unlike GluonCV the batch's positive count is never
    read either, so with no positive at all the losses are (B,) zeros where
    GluonCV returns (1,) zeros.
    """

    def __init__(self, negative_mining_ratio=3, rho=1.0, lambd=1.0, min_hard_negatives=0,
                 **kwargs):
        super(SSDMultiBoxLoss, self).__init__(**kwargs)
        self._ratio = check_ratio('negative_mining_ratio', negative_mining_ratio, 0.0, _INF,
                                  high_open=True)
        self._rho = check_ratio('rho', rho, 0.0, _INF, low_open=True, high_open=True)
        self._lambd = check_ratio('lambd', lambd, -_INF, _INF, low_open=True, high_open=True)
        self._min_hard = check_int('min_hard_negatives', min_hard_negatives, minimum=0)

    def __repr__(self):
        return '{}(negative_mining_ratio={}, rho={}, lambd={}, min_hard_negatives={})'.format(
            type(self).__name__, self._ratio, self._rho, self._lambd, self._min_hard)

    # pylint: disable=arguments-differ
    def forward(self, cls_pred, box_pred, cls_target, box_target):
        """``(sum_losses, cls_losses, box_losses)``; see the class docstring."""
        parts = [x if isinstance(x, (list, tuple)) else [x]
                 for x in (cls_pred, box_pred, cls_target, box_target)]
        if len({len(p) for p in parts}) != 1:
            raise ValueError('cls_pred, box_pred, cls_target and box_target must be lists of '
                             'one length, got lengths {}'.format([len(p) for p in parts]))
        for cp, bp, ct, bt in zip(*parts):
            self._check(cp, bp, ct, bt)
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
                scale = 1.0 / mx.nd.maximum(total, 1.0)
            cls_loss, box_loss = self._losses_dense(cp, bp, ct, bt)
            cls_losses.append(mx.nd.broadcast_mul(cls_loss, scale))
            box_losses.append(mx.nd.broadcast_mul(box_loss, scale))
            sums.append(cls_losses[-1] + self._lambd * box_losses[-1])
        return sums, cls_losses, box_losses

    def _gathered(self, parts, targets, scale):
        """The three lists, from :meth:`_losses_gathered` on each device."""
        outs = [self._losses_gathered(cp, bp, target, bt, scale)
                for (cp, bp, _, bt), target in zip(zip(*parts), targets)]
        return tuple([out[i] for out in outs] for i in range(3))

    def chosen(self, cls_target, loss, finite):
        """The anchors that carry classification loss: 0/1 (B, N) float32 (the mining rule).

        ``cls_target`` (B, N) as in the call; ``loss`` (B, N) each anchor's
        background loss (at least where the target is 0); ``finite`` (B, N) 0/1,
        1 where the anchor's logits are all finite. numpy arrays, or NDArrays
        (those on a CPU context are computed with numpy); the result has the
        kind of ``cls_target``.
        """
        if use_numpy(cls_target):
            o = ops(np.zeros(0))
            target, loss, finite = (to_numpy(a) for a in (cls_target, loss, finite))
        else:
            o, target = ops(cls_target), cls_target
        finite = o.mask(finite > 0)
        positive = o.mask(target > 0)
        candidate = o.mask(target == 0) * finite
        loss = o.where(finite > 0, loss, 0.0)
        wanted = -o.floor(-(o.count(positive) * self._ratio))  # ceil: GluonCV's rank < q
        quota = o.maximum(wanted, float(self._min_hard))
        chosen = positive + hard_negatives(o, loss, candidate, quota)
        return like(chosen, cls_target) if o.name == 'numpy' else chosen

    def _smooth_l1(self, diff):
        diff = mx.nd.abs(diff)
        return mx.nd.where(diff > self._rho, diff - 0.5 * self._rho,
                           (0.5 / self._rho) * mx.nd.square(diff))

    def _losses_dense(self, cp, bp, ct, bt):
        """Per-image (B,) sums, every anchor computed: the device path (no host copy).

        Rows with a non-finite logit that are not positive are zeroed before
        ``log_softmax``, so that they pass no NaN back through its gradient
        (a positive's NaN is the network's, and stays visible).
        """
        with autograd.pause():
            finite = mx.nd.min(finite_F(mx.nd, cp.detach()), axis=-1)
            keep = mx.nd.maximum(finite, ct > 0).expand_dims(-1)
        cp = mx.nd.where(mx.nd.broadcast_like(keep, cp) > 0, cp, mx.nd.zeros_like(cp))
        log_p = mx.nd.log_softmax(cp, axis=-1)
        cls_loss = -mx.nd.pick(log_p, mx.nd.maximum(ct, 0), axis=-1)
        with autograd.pause():
            chosen = self.chosen(ct, cls_loss.detach(), finite)
        cls_loss = mx.nd.where(chosen > 0, cls_loss, mx.nd.zeros_like(cls_loss))
        box_loss = self._smooth_l1(mx.nd.reshape_like(bp, bt) - bt) * (ct > 0).expand_dims(-1)
        return (mx.nd.sum(cls_loss, axis=0, exclude=True),
                mx.nd.sum(box_loss, axis=0, exclude=True))

    def _losses_gathered(self, cp, bp, target, bt, scale):
        """``(sum_loss, cls_loss, box_loss)``, (B,) each, times ``scale``: the CPU path.

        ``target`` is the class target as a numpy array. The choice is made on
        the host from numpy's background loss of a view of the logits
        (:func:`samplers.backend.host_view`, no copy;
        :func:`samplers.ohem.background_loss`); only the chosen rows (a few per
        positive) go through ``log_softmax``, and only the positive rows
        through the box loss, gathered with ``take`` so autograd sees them.
        One matrix product then sums both per image, and their weighted sum:
        a handful of MXNet operators whatever the batch.
        """
        batch, num, num_class = cp.shape
        with autograd.pause():
            loss, finite = background_loss(host_view(cp))
            chosen = self.chosen(target, loss, finite)
        flat_target = target.reshape(-1)
        rows = np.flatnonzero(chosen.reshape(-1) > 0)
        pos = np.flatnonzero(flat_target > 0)
        # With no row (no positive), row 0 stands in, weighted 0.
        some_rows, some_pos = (rows if rows.size else [0]), (pos if pos.size else [0])
        k, p = len(some_rows), len(some_pos)
        index = mx.nd.array(np.concatenate([some_rows, np.maximum(flat_target[some_rows], 0),
                                            some_pos]), ctx=cp.context, dtype='int64')
        logits = mx.nd.take(cp.reshape((-1, num_class)), index[:k], axis=0)
        log_p = mx.nd.pick(mx.nd.log_softmax(logits, axis=-1), index[k:2 * k], axis=-1)
        diff = (mx.nd.take(bp.reshape((-1, 4)), index[2 * k:], axis=0)
                - mx.nd.take(bt.reshape((-1, 4)), index[2 * k:], axis=0))
        box = self._smooth_l1(diff).reshape((-1,)).astype(log_p.dtype, copy=False)
        # (3B, k + 4p) weights: rows of [sum, cls, box] per image over [-log_p, box values].
        weights = np.zeros((3, batch, k + 4 * p), np.float32)
        weights[1, rows // num, np.arange(rows.size)] = -scale
        weights[2, np.repeat(pos // num, 4), k + np.arange(4 * pos.size)] = scale
        weights[0] = weights[1] + self._lambd * weights[2]
        out = mx.nd.dot(mx.nd.array(weights.reshape(3 * batch, -1), ctx=cp.context,
                                    dtype=log_p.dtype), mx.nd.concat(log_p, box, dim=0))
        return out[:batch], out[batch:2 * batch], out[2 * batch:]

    @staticmethod
    def _check(cp, bp, ct, bt):
        if not all(is_ndarray(a) for a in (cp, bp, ct, bt)):
            raise ValueError('cls_pred, box_pred, cls_target and box_target must be NDArrays')
        if cp.ndim != 3 or tuple(ct.shape) != tuple(cp.shape[:2]):
            raise ValueError('cls_pred must be (B, N, C) and cls_target (B, N), got {} and {}'
                             .format(cp.shape, ct.shape))
        if tuple(bt.shape) != tuple(cp.shape[:2]) + (4,) or bp.size != bt.size:
            raise ValueError('box_target must be (B, N, 4) and box_pred hold B * N * 4 values, '
                             'got {} and {}'.format(bt.shape, bp.shape))
