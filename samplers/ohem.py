"""OHEMSampler: online hard negative mining (Shrivastava et al., CVPR 2016).

Every matched anchor is kept as a positive; among the unmatched anchors that
overlap no ground truth much, the ones the classifier finds hardest (largest
background loss) are taken as negatives, ``ratio`` of them per positive.
Labels follow the package convention (see :mod:`samplers`).

Also here, because the sampler needs it and no other sampler does:
:func:`background_loss_F` / :func:`background_loss`, ``-log softmax(logits)[..., 0]``
computed without overflow for any finite logits. The per-row top-k selection
is :func:`samplers.boxes.keep_top_F` / :func:`samplers.boxes.keep_top`.
"""
from __future__ import annotations

import numpy as np
import mxnet as mx
from mxnet import gluon

from .boxes import (box_iou, check_boxes, check_int, check_ratio, finite_rows, is_ndarray,
                    keep_top, keep_top_F, like, row_max, to_numpy, use_numpy, warn_once)

__all__ = ['OHEMSampler', 'background_loss', 'background_loss_F', 'greedy_nms_first']

_INF = float('inf')
#: Dense hardness ranks are packed as ``rank * _PACK + column`` in float64
#: (exact while both stay below 2**26 = 67M anchors).
_PACK = float(2 ** 26)


# --------------------------------------------------------------------------- background loss
def background_loss_F(F, logits):
    """Background cross-entropy ``-log softmax(logits)[..., 0]`` and a finiteness flag.

    ``logits`` (..., C) with C >= 2, class 0 background, an ``F`` array.
    With ``m`` the row's largest logit and ``S = sum_{c>=1} exp(l_c - m)``,
    the loss is ``(m - l_0) + log1p(expm1(l_0 - m) + S)``: every exponent is
    <= 0, so any finite logits (even +-1e4) give a finite, correctly ordered
    loss, and a confident background (``m = l_0``) keeps the precision of
    ``log1p(S)``. Returns ``(loss, finite)``, both (...): ``finite`` is 1
    where every logit of the row is finite, 0 elsewhere (``loss`` is
    meaningless there).
    """
    l0 = F.slice_axis(logits, axis=-1, begin=0, end=1)
    top = F.max(logits, axis=-1, keepdims=True)
    fg = F.slice_axis(logits, axis=-1, begin=1, end=None)
    tail = F.sum(F.exp(F.broadcast_sub(fg, top)), axis=-1)
    gap = F.squeeze(top - l0, axis=-1)
    loss = gap + F.log1p(F.expm1(-gap) + tail)
    finite = F.min(F.abs(logits) < _INF, axis=-1)
    return loss, finite


def background_loss(logits, block_rows=8192):
    """numpy twin of :func:`background_loss_F`: ``(loss, finite)`` of shape (...).

    ``finite`` is boolean. The same loss (to a few ulps) by a cheaper road:
    ``log1p(sum_{c>=1} exp(l_c - l_0))`` needs no row maximum, and the rows
    where that sum overflows are redone max-shifted. Computed in float32
    (float64 for float64 input), ``block_rows`` anchors at a time so the
    exponentials stay in cache, the per-class sums through BLAS.
    """
    logits = np.asarray(logits)
    dtype = np.result_type(logits.dtype, np.float32)
    shape, num_class = logits.shape[:-1], logits.shape[-1]
    flat = logits.reshape(-1, num_class)
    ones = np.ones(num_class, dtype)
    skip_background = ones.copy()
    skip_background[0] = 0
    total = flat.shape[0]
    tail = np.empty(total, dtype)
    finite = np.empty(total, bool)
    buf = np.empty((min(block_rows, total), num_class), dtype)
    with np.errstate(over='ignore', invalid='ignore'):
        for start in range(0, total, block_rows):
            block = flat[start:start + block_rows].astype(dtype, copy=False)
            part = slice(start, start + block.shape[0])
            diff = buf[:block.shape[0]]
            np.subtract(block, block[:, :1], out=diff)
            np.isfinite(block @ ones, out=finite[part])
            np.exp(diff, out=diff)
            np.matmul(diff, skip_background, out=tail[part])
        maybe_bad = np.flatnonzero(~finite)  # a sum of finite logits can still overflow
        finite[maybe_bad] = np.isfinite(flat[maybe_bad]).all(axis=1)
        loss = np.log1p(tail)
        overflow = np.flatnonzero(finite & ~(tail < np.inf))
        if overflow.size:
            rows = flat[overflow].astype(dtype)
            top = rows.max(axis=1, keepdims=True)
            loss[overflow] = (np.log(np.exp(rows - top).sum(axis=1))
                              + (top[:, 0] - rows[:, 0]))
    return loss.reshape(shape), finite.reshape(shape)


# --------------------------------------------------------------------------- keep the top k
def greedy_nms_first(boxes, k, thresh):
    """Positions of the first ``k`` boxes that survive greedy NMS walked in the given order.

    ``boxes`` (n, 4) corner boxes, hardest first. A box is skipped when its
    IoU (:func:`samplers.boxes.box_iou`) with an earlier kept box is above
    ``thresh``: ``box_nms`` stopped after ``k`` survivors. Works in blocks of
    the next few boxes: drop those overlapping a box kept before, then run
    the greedy pass on the block's own IoU matrix. The cost is about ``k``
    IoUs per box walked, not ``n`` per box.
    """
    num = boxes.shape[0]
    kept = []
    start = 0
    while len(kept) < k and start < num:
        block = np.arange(start, min(num, start + max(64, 2 * (k - len(kept)))))
        start = block[-1] + 1
        if kept:
            block = block[~(box_iou(boxes[kept], boxes[block]) > thresh).any(axis=0)]
        overlaps = box_iou(boxes[block], boxes[block]) > thresh
        live = np.ones(block.size, bool)
        for j in range(block.size):
            if live[j]:
                kept.append(block[j])
                if len(kept) == k:
                    break
                live[j + 1:] &= ~overlaps[j, j + 1:]
    return np.asarray(kept, dtype=np.int64)


# --------------------------------------------------------------------------- the sampler
class OHEMSampler(gluon.HybridBlock):
    """Online hard example mining: every positive, and the hardest negatives.

    Parameters
    ----------
    ratio : float
        Negatives wanted per positive, > 0 and finite (SSD uses 3).
    min_samples : int, default 0
        Negatives wanted even in an image with few or no positives.
    thresh : float, default 0.5
        In (0, 1]. An unmatched anchor whose best IoU reaches ``thresh`` is
        never a negative (it is ignored).
    nms_thresh : float or None, default None
        In [0, 1]. When set, the mined negatives are de-duplicated as in the
        paper (which uses 0.7): a candidate whose box overlaps a harder chosen
        negative with IoU > ``nms_thresh`` is skipped. Needs ``boxes=``.

    Called as ``sampler(x, logits, ious, scores=None, boxes=None)``:

    * ``x`` (B, N): matched ground truth index (>= 0), or -1 for unmatched;
    * ``logits`` (B, N, C), C >= 2, class 0 background; may be None when
      ``scores`` is given;
    * ``ious`` (B, N) best IoU, or (B, N, M) IoU with every ground truth;
    * ``scores`` (B, N), optional: a per-anchor loss to rank by instead of
      the background loss of ``logits`` (e.g. classification + box loss);
    * ``boxes`` (B, N, 4) corner anchors/predictions, only with ``nms_thresh``.

    All numpy arrays or all NDArrays on one context; floats of any width.

    Returns (B, N) float32 labels in ``x``'s kind and context.

    Rule: ``x >= 0`` is positive (1), always. Candidates are the anchors with
    ``x < 0``, max IoU < ``thresh`` and finite logits (scores) and IoUs. Per
    image ``num_neg = min(max(min_samples, floor(ratio * num_pos)),
    num_candidates)`` candidates with the largest background loss
    ``-log softmax(logits)[0]`` (or ``scores``) become negatives (-1), ties
    going to the lower anchor index; everything else is ignored (0).

    Edges: an image without ground truth (M = 0, or no positive) gets
    ``min_samples`` negatives. With fewer candidates than wanted, all of them
    are taken and no positive or high-IoU anchor is ever used to fill up.
    A NaN in ``x`` makes that anchor ignored. Anchors over hard (VOC
    ``difficult``) boxes: include those boxes in ``ious`` and leave their
    anchors unmatched; an IoU >= ``thresh`` keeps them from being mined.
    Non-finite logits, scores or IoUs make an anchor ignored; the numpy/CPU
    path logs it once per sampler (the mx.nd path and hybridized graphs
    cannot look without a copy to the host, and stay silent).

    De-duplication (``nms_thresh``): candidates are walked hardest first and
    one whose box has IoU > ``nms_thresh`` with an already chosen negative is
    skipped, until ``num_neg`` are chosen or the candidates run out (then
    fewer are taken). Candidates with a non-finite box are ignored.

    Backends (see :mod:`samplers.boxes`): numpy for numpy input and CPU
    NDArrays, hybridized or not (measured several times faster than MXNet's
    CPU operators); otherwise one body of F operators, run by ``mx.nd`` on
    the input's context or, after ``hybridize()`` or inside a hybridized
    network, as a graph: no host copy, the per-image counts handled by
    ranking once. A graph reads ``ious`` of either rank as (B, N, -1), and is
    rebuilt when the set of None inputs changes. For de-duplication the
    numpy path stops its greedy walk after ``num_neg`` survivors (about
    ``num_neg * N`` IoUs), while the F path runs ``mx.nd.contrib.box_nms``
    over all candidates (about N**2: fine on a GPU, seconds on MXNet's CPU
    for SSD-sized N). No gradient flows through the sampler. Picklable.
    """

    def __init__(self, ratio, min_samples=0, thresh=0.5, nms_thresh=None, **kwargs):
        super(OHEMSampler, self).__init__(**kwargs)
        self._ratio = check_ratio('ratio', ratio, 0.0, _INF, low_open=True, high_open=True)
        self._min_samples = check_int('min_samples', min_samples, minimum=0)
        self._thresh = check_ratio('thresh', thresh, 0.0, 1.0, low_open=True)
        self._nms_thresh = (None if nms_thresh is None
                            else check_ratio('nms_thresh', nms_thresh, 0.0, 1.0))
        self._graph_inputs = None
        self._widths = ('float32',) * 3  # logits, ious, scores: see _forward_F

    def __getstate__(self):
        # A built graph holds a C handle; drop it (it is rebuilt on the next call).
        state = self.__dict__.copy()
        state.update(_cached_graph=(), _cached_op=None, _cached_op_args=[], _graph_inputs=None)
        return state

    def __repr__(self):
        return '{}(ratio={}, min_samples={}, thresh={}, nms_thresh={})'.format(
            type(self).__name__, self._ratio, self._min_samples, self._thresh,
            self._nms_thresh)

    # ----------------------------------------------------------------------- dispatch
    # pylint: disable=arguments-differ
    def __call__(self, x, logits, ious, scores=None, boxes=None):
        # Gluon's Block.__call__ takes positional inputs only; let scores=/boxes= be keywords.
        return super(OHEMSampler, self).__call__(x, logits, ious, scores, boxes)

    def forward(self, x, logits, ious, scores=None, boxes=None):
        args = (x, logits, ious, scores, boxes)
        if any(isinstance(a, mx.sym.Symbol) for a in args):  # traced by a hybridized parent
            self._check_config(logits, scores, boxes)
            self._widths = ('float32',) * 3  # dtypes are unknown while tracing
            return super(OHEMSampler, self).forward(*args)
        self._check_inputs(*args)
        if np.prod(x.shape) == 0:
            return like(np.zeros(x.shape, np.float32), x)
        if ious.ndim == 3 and ious.shape[-1] == 0:  # no ground truth: best IoU 0
            ious = like(np.zeros(x.shape, np.dtype(ious.dtype)), ious)
            args = (x, logits, ious, scores, boxes)
        if not use_numpy(x):
            return self._forward_F(*args)
        return like(self._forward_np(x, logits, ious, scores, boxes), x)

    def _forward_F(self, *args):
        """NDArray inputs through the cached graph (hybridized) or mx.nd operators."""
        self._widths = tuple('float64' if a is not None and np.dtype(a.dtype) == np.float64
                             else 'float32' for a in args[1:4])
        if self._active:
            # Gluon caches one graph per pattern of None inputs; rebuild when it
            # (or the float width) changes.
            pattern = tuple(a is None for a in args) + self._widths
            if pattern != self._graph_inputs:
                self._clear_cached_op()
                self._graph_inputs = pattern
            return super(OHEMSampler, self).forward(*args)
        with args[0].context:
            return self.hybrid_forward(mx.nd, *args)

    # ----------------------------------------------------------------------- checks
    def _check_config(self, logits, scores, boxes):
        if logits is None and scores is None:
            raise ValueError('logits may only be None when scores is given')
        if (boxes is None) != (self._nms_thresh is None):
            raise ValueError('boxes and nms_thresh go together: got boxes {} and nms_thresh {}'
                             .format('None' if boxes is None else 'given', self._nms_thresh))

    def _check_inputs(self, x, logits, ious, scores, boxes):
        self._check_config(logits, scores, boxes)
        named = [(n, a) for n, a in (('x', x), ('logits', logits), ('ious', ious),
                                     ('scores', scores), ('boxes', boxes)) if a is not None]
        kinds = {n: is_ndarray(a) for n, a in named}
        if len(set(kinds.values())) > 1:
            raise ValueError('inputs must be all numpy arrays or all NDArrays, got NDArrays {} '
                             'and numpy {}'.format([n for n in kinds if kinds[n]],
                                                   [n for n in kinds if not kinds[n]]))
        if kinds['x']:
            ctxs = {n: a.context for n, a in named}
            if len(set(ctxs.values())) > 1:
                raise ValueError('inputs must share one context, got {}'.format(ctxs))
        for n, a in named:
            kind = np.dtype(a.dtype).kind
            if kind not in ('fiu' if n == 'x' else 'f'):
                raise ValueError('{} must hold {}, got dtype {}'.format(
                    n, 'numbers' if n == 'x' else 'floats', np.dtype(a.dtype)))
        shapes = {n: tuple(a.shape) for n, a in named}
        if len(shapes['x']) != 2:
            raise ValueError('x must have shape (B, N), got {}'.format(shapes['x']))
        bn = shapes['x']

        def fail(name, want):
            raise ValueError('{} must have shape {} to match x {}, got {}'.format(
                name, want, bn, shapes[name]))

        if logits is not None and (len(shapes['logits']) != 3 or shapes['logits'][:2] != bn
                                   or shapes['logits'][2] < 2):
            fail('logits', '(B, N, C) with C >= 2')
        if shapes['ious'][:2] != bn or len(shapes['ious']) not in (2, 3):
            fail('ious', '(B, N) or (B, N, M)')
        if scores is not None and shapes['scores'] != bn:
            fail('scores', '(B, N)')
        if boxes is not None:
            check_boxes('boxes', boxes, batched=True)
            if shapes['boxes'][:2] != bn:
                fail('boxes', '(B, N, 4)')

    def _warn(self, name):
        warn_once(self, name, 'OHEMSampler: non-finite values in {}; those anchors are '
                  'ignored (label 0)'.format(name))

    # ----------------------------------------------------------------------- numpy backend
    def _candidates_np(self, x, logits, ious, scores):
        """Positives, negative candidates (boolean (B, N)) and the loss to rank them by."""
        x = to_numpy(x)
        ious = to_numpy(ious)
        if ious.dtype == np.float16:
            ious = ious.astype(np.float32)
        if ious.ndim == 3:
            ious_ok = finite_rows(ious)
            best = row_max(ious)
        else:
            ious_ok, best = np.isfinite(ious), ious
        if scores is None:
            loss, finite = background_loss(to_numpy(logits))
            name = 'logits'
        else:
            loss = to_numpy(scores)
            finite = np.isfinite(loss)
            name = 'scores'
        if not finite.all():
            self._warn(name)
        if not ious_ok.all():
            self._warn('ious')
        if x.dtype.kind == 'f' and np.isnan(x).any():
            self._warn('x')
        with np.errstate(invalid='ignore'):
            candidate = (x < 0) & ious_ok & (best < self._thresh) & finite
        return x >= 0, candidate, loss

    def _forward_np(self, x, logits, ious, scores, boxes):
        positive, candidate, loss = self._candidates_np(x, logits, ious, scores)
        # In float64 and capped at N before the cast: ratio * num_pos may pass int64's range.
        num = x.shape[1]
        wanted = np.minimum(np.floor(self._ratio * positive.sum(axis=1)), num)
        quota = np.maximum(min(self._min_samples, num), wanted).astype(np.int64)
        if boxes is None:
            negative = keep_top(loss, candidate, np.minimum(quota, candidate.sum(axis=1)))
        else:
            boxes = to_numpy(boxes).astype(np.float64)
            candidate &= np.isfinite(boxes).all(axis=-1)
            negative = np.zeros_like(candidate)
            for i, (row_loss, row_cand, row_boxes) in enumerate(zip(loss, candidate, boxes)):
                idx = np.flatnonzero(row_cand)
                idx = idx[np.argsort(-row_loss[idx], kind='stable')]  # hardest first
                kept = greedy_nms_first(row_boxes[idx], quota[i], self._nms_thresh)
                negative[i, idx[kept]] = True
        return positive.astype(np.float32) - negative.astype(np.float32)

    # ----------------------------------------------------------------------- F backend
    def hybrid_forward(self, F, x, logits, ious, scores=None, boxes=None):
        """Labels from F operators only; see the class docstring for the rule."""
        # Each float input is computed in float32, or float64 if it is (set per call).
        logits_dtype, ious_dtype, scores_dtype = self._widths
        positive = F.cast(x >= 0, 'float32')
        unmatched = F.cast(x < 0, 'float32')
        ious = F.reshape(F.cast(F.stop_gradient(ious), ious_dtype), shape=(0, 0, -1))
        ious_ok = (F.cast(F.max(ious, axis=2) < self._thresh, 'float32')
                   * F.cast(F.min(F.abs(ious) < _INF, axis=2), 'float32'))
        if scores is None:
            loss, finite = background_loss_F(F, F.cast(F.stop_gradient(logits), logits_dtype))
        else:
            loss = F.cast(F.stop_gradient(scores), scores_dtype)
            finite = F.abs(loss) < _INF
        candidate = unmatched * ious_ok * F.cast(finite, 'float32')
        if boxes is not None:
            boxes = F.stop_gradient(boxes)
            candidate = candidate * F.cast(F.min(F.abs(boxes) < _INF, axis=2), 'float32')
        num_pos = F.sum(F.cast(positive, 'float64'), axis=1, keepdims=True)
        # min_samples capped where float32 counts stay exact (no image has 2**24 anchors).
        quota = F.maximum(F.floor(num_pos * self._ratio), float(min(self._min_samples, 2 ** 24)))
        quota = F.cast(quota, 'float32')
        if boxes is None:
            num_cand = F.sum(candidate, axis=1, keepdims=True)
            negative = keep_top_F(F, loss, candidate, F.minimum(quota, num_cand))
        else:
            negative = self._dedup_F(F, loss, candidate, quota, boxes)
        return positive - negative

    def _dedup_F(self, F, loss, candidate, quota, boxes):
        """Greedy NMS over candidates in order of hardness, then the first ``quota`` survivors.

        ``box_nms`` sorts by score, so each candidate gets a unique score that
        falls with (hardness, then index). MXNet's argsort is not stable, so
        the hardness first becomes a dense rank (sort, cumsum of changes,
        gathered back to each anchor), packed with the column into one exact
        float64 key. ``box_nms`` returns the survivors in that order with
        their flat anchor index, which ``index_copy`` scatters back.
        """
        key = F.where(candidate > 0, loss, F.ones_like(loss) * -_INF)
        order = F.argsort(key, axis=1, is_ascend=False)  # ties in arbitrary order
        where_in_order = F.argsort(order, axis=1)
        ranked = F.sort(key, axis=1, is_ascend=False)
        previous = F.slice_axis(F.concat(F.slice_axis(ranked, axis=1, begin=0, end=1), ranked,
                                         dim=1), axis=1, begin=0, end=-1)
        dense = F.cumsum(F.cast(ranked != previous, 'float64'), axis=1)  # 0: the hardest value
        row = F.broadcast_like(F.reshape(F.contrib.arange_like(key, axis=0), shape=(-1, 1)), key)
        dense = F.gather_nd(dense, F.stack(F.cast(row, 'float64'),
                                           F.cast(where_in_order, 'float64'), axis=0))
        column = F.cast(F.broadcast_like(F.reshape(F.contrib.arange_like(key, axis=1),
                                                   shape=(1, -1)), key), 'float64')
        order_key = dense * _PACK + column  # unique, smaller = chosen first
        nms_score = F.where(candidate > 0, (_PACK * _PACK) - order_key, F.zeros_like(order_key))
        flat = F.cast(F.contrib.arange_like(key), 'float64')
        data = F.concat(F.expand_dims(nms_score, axis=2), F.cast(boxes, 'float64'),
                        F.expand_dims(flat, axis=2), dim=2)
        kept = F.contrib.box_nms(data, overlap_thresh=self._nms_thresh, valid_thresh=0.5,
                                 topk=-1, coord_start=1, score_index=0, id_index=-1,
                                 force_suppress=True, in_format='corner', out_format='corner')
        alive = F.cast(F.slice_axis(kept, axis=2, begin=0, end=1) > 0, 'float32')
        alive = F.reshape(alive, shape=(0, -1))
        num_neg = F.minimum(quota, F.sum(alive, axis=1, keepdims=True))
        slot = F.reshape(F.contrib.arange_like(alive, axis=1), shape=(1, -1))
        take = alive * F.broadcast_lesser(slot, num_neg)
        dummy = F.max(flat) + 1  # one past the last anchor: where the rest is written
        target = F.where(take > 0, F.reshape(F.slice_axis(kept, axis=2, begin=5, end=6),
                                             shape=(0, -1)),
                         F.broadcast_like(F.reshape(dummy, shape=(1, 1)), take))
        blank = F.zeros_like(F.reshape(take, shape=(-1,)))
        chosen = F.contrib.index_copy(F.concat(blank, F.slice_axis(blank, axis=0, begin=0, end=1),
                                               dim=0),
                                      F.reshape(target, shape=(-1,)), F.reshape(take, shape=(-1,)))
        chosen = F.slice_axis(chosen, axis=0, begin=0, end=-1)
        return F.reshape_like(chosen, take)
