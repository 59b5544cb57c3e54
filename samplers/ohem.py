"""OHEMSampler: online hard negative mining (Shrivastava et al., CVPR 2016).

Every matched anchor is kept as a positive; among the unmatched anchors that
overlap no ground truth much, the ones the classifier finds hardest (largest
background loss) are taken as negatives, ``ratio`` of them per positive.
Labels follow the package convention (see :mod:`samplers`).

The selection is written once, for numpy arrays, NDArrays and symbols alike
(against the array protocol of :mod:`samplers.backend`):
:func:`ohem_quota` (how many negatives per image) and :func:`hard_negatives`
(which ones). :mod:`samplers.ssd` mines its loss with the same two.

Also here, because mining needs it: :func:`background_loss_F` /
:func:`background_loss`, ``-log softmax(logits)[..., 0]`` computed without
overflow for any finite logits, and :func:`greedy_nms_first` (the numpy
de-duplication).
"""
from __future__ import annotations

import functools
import threading

import numpy as np
import mxnet as mx
from mxnet import gluon

from . import backend
from .backend import (Array, Backend, check_boxes, finite_F, neg_inf_like_F, check_int, check_ratio,
                      host_view, is_ndarray, like, to_numpy, use_numpy, warn_once)
from .boxes import box_iou, finite_rows, row_max

__all__ = ['OHEMSampler', 'background_loss', 'background_loss_F', 'greedy_nms_first',
           'hard_negatives', 'ohem_quota']

_INF = float('inf')
_FLOAT32S = ('float32',) * 3
# The float widths of (logits, ious, scores) while this thread builds a graph: a graph fixes
# its casts when traced. Thread-local, so no call leaves its dtypes on a shared block.
_TRACE = threading.local()
# Gluon keeps one cached graph per block: threads that share a hybridized sampler take turns.
_GRAPH_LOCK = threading.RLock()
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
    finite = F.min(finite_F(F, logits), axis=-1)
    return loss, finite


def background_loss(logits, block_rows=8192):
    """numpy twin of :func:`background_loss_F`: ``(loss, finite)`` of shape (...).

    ``finite`` is boolean. The same loss (to a few ulps) by a cheaper road,
    ``block_rows`` anchors at a time so the exponentials stay in cache:
    ``log1p(S / exp(l_0))`` with ``S = sum_{c>=1} exp(l_c)``: one ``exp`` of
    the block, row sums by ``einsum`` (no shifted copy, no BLAS threads).
    That road is taken for a block whose logits all lie within
    ``+-(log(max float) - log(C) - 1)`` (about +-85 in float32), where every
    exponential is a normal float: checked by the block's minimum and by
    ``S`` and ``exp(l_0)`` staying below ``exp`` of that bound (a NaN or an
    infinity fails the check). Any other block is redone with
    ``log1p(sum_{c>=1} exp(l_c - l_0))`` and row checks, its overflowing
    rows max-shifted. Computed in float32 (float64 for float64 input).
    """
    logits = np.asarray(logits)
    dtype = np.result_type(logits.dtype, np.float32)
    shape, num_class = logits.shape[:-1], logits.shape[-1]
    flat = logits.reshape(-1, num_class)
    limit = np.log(np.finfo(dtype).max) - np.log(num_class) - 1
    high = np.exp(np.array(limit, dtype))  # exp(l) < high for every l < limit
    total = flat.shape[0]
    tail = np.empty(total, dtype)
    finite = np.ones(total, bool)
    buf = np.empty((min(block_rows, total), num_class), dtype)
    with np.errstate(over='ignore', invalid='ignore', divide='ignore'):
        for start in range(0, total, block_rows):
            block = flat[start:start + block_rows].astype(dtype, copy=False)
            part = slice(start, start + block.shape[0])
            exp = buf[:block.shape[0]]
            fast = -limit < block.min()  # False on NaN
            if fast:
                np.exp(block, out=exp)
                fg_sum, bg_exp = np.einsum('ij->i', exp[:, 1:]), exp[:, 0]
                fast = (fg_sum < high).all() and (bg_exp < high).all()  # every l_c < limit
            if fast:
                np.divide(fg_sum, bg_exp, out=tail[part])
            else:
                np.subtract(block, block[:, :1], out=exp)
                np.exp(exp, out=exp)
                np.einsum('ij->i', exp[:, 1:], out=tail[part])
                finite[part] = np.isfinite(block).all(axis=1)
        loss = np.log1p(tail)
        overflow = np.flatnonzero(finite & ~(tail < np.inf))
        if overflow.size:
            rows = flat[overflow].astype(dtype)
            top = rows.max(axis=1, keepdims=True)
            loss[overflow] = (np.log(np.exp(rows - top).sum(axis=1))
                              + (top[:, 0] - rows[:, 0]))
    return loss.reshape(shape), finite.reshape(shape)


# --------------------------------------------------------------------------- the selection
def ohem_quota(be: Backend, num_pos: Array, ratio: float, min_samples: int) -> Array:
    """Negatives wanted per image: ``max(min_samples, floor(ratio * num_pos))``.

    ``be`` the arrays' backend (:mod:`samplers.backend`); ``num_pos`` (B, 1)
    float64 positive counts (``be.count``); ``ratio`` > 0; ``min_samples`` >= 0.
    Returns (B, 1) float64. The product is taken in float64, so a huge ``ratio``
    gives a huge (or infinite) quota, never NaN; :func:`hard_negatives` caps it
    at the candidates.
    """
    # min_samples capped where float32 counts stay exact (no image has 2**24 anchors).
    return be.maximum(be.floor(num_pos * ratio), float(min(min_samples, 2 ** 24)))


def hard_negatives(be: Backend, loss: Array, candidate: Array, quota: Array) -> Array:
    """The hardest candidates of each image: the OHEM selection, on any backend.

    ``be`` the arrays' backend (``NUMPY``, ``ND`` or ``SYM`` of
    :mod:`samplers.backend`); ``loss`` (B, N) float, larger is harder;
    ``candidate`` (B, N) 0/1 mask of the anchors that may be chosen (their
    ``loss`` must be finite); ``quota`` (B, 1) counts wanted (any
    non-negative float).

    Rule: per image the ``min(quota, num_candidates)`` candidates with the
    largest ``loss`` are chosen, ties going to the lower anchor index
    (keep-top, :mod:`samplers.draws`); no other anchor is ever chosen.
    Returns a (B, N) float32 0/1 mask.
    """
    return be.keep_top(loss, candidate, be.minimum(quota, be.count(candidate)))


# --------------------------------------------------------------------------- de-duplication
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
def _widths(*arrays):
    """'float64' for each float64 array, 'float32' for anything else (None too)."""
    return tuple('float64' if a is not None and np.dtype(a.dtype) == np.float64 else 'float32'
                 for a in arrays)


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

    Backends: numpy for numpy input and CPU NDArrays, ``F`` operators elsewhere (``mx.nd``
    on the input's context, or a graph after ``hybridize()``), with no host copy; one rule
    body (``_labels``) for all three. No gradient flows through the sampler. Picklable. The
    README's OHEMSampler section has the notes on threads, graphs and de-duplication cost.
    """

    def __init__(self, ratio, min_samples=0, thresh=0.5, nms_thresh=None, **kwargs):
        super(OHEMSampler, self).__init__(**kwargs)
        self._ratio = check_ratio('ratio', ratio, 0.0, _INF, low_open=True, high_open=True)
        self._min_samples = check_int('min_samples', min_samples, minimum=0)
        self._thresh = check_ratio('thresh', thresh, 0.0, 1.0, low_open=True)
        self._nms_thresh = (None if nms_thresh is None
                            else check_ratio('nms_thresh', nms_thresh, 0.0, 1.0))
        self._graph_inputs = None  # which inputs the cached graph was built without

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
            return super(OHEMSampler, self).forward(*args)
        self._check_inputs(*args)
        if np.prod(x.shape) == 0:
            return like(np.zeros(x.shape, np.float32), x)
        if ious.ndim == 3 and ious.shape[-1] == 0:  # no ground truth: best IoU 0
            ious = like(np.zeros(x.shape, np.dtype(ious.dtype)), ious)
            args = (x, logits, ious, scores, boxes)
        if not use_numpy(x):
            return self._forward_F(*args)
        with np.errstate(invalid='ignore'):  # a NaN match compares false both ways: ignored
            return like(self._labels(backend.NUMPY, *self._inputs_np(*args),
                                     dedup=self._dedup_np), x)

    def _forward_F(self, *args):
        """NDArray inputs through the cached graph (hybridized) or mx.nd operators."""
        if self._active:
            # Gluon caches one graph per pattern of None inputs and float widths; rebuild
            # when it changes.
            widths = _widths(*args[1:4])
            pattern = tuple(a is None for a in args) + widths
            with _GRAPH_LOCK:
                if pattern != self._graph_inputs:
                    self._clear_cached_op()
                    self._graph_inputs = pattern
                _TRACE.widths = widths
                try:
                    return super(OHEMSampler, self).forward(*args)
                finally:
                    del _TRACE.widths
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

    # ----------------------------------------------------------------------- the rule
    def _labels(self, be, x, best, ious_ok, loss, finite, boxes, dedup=None):
        """The labels from per-anchor inputs, written once for every backend ``be``.

        ``x`` (B, N) matches; ``best`` (B, N) best IoU; ``ious_ok``,
        ``finite`` (B, N) 0/1: the IoUs and the ranking loss are finite;
        ``loss`` (B, N); ``boxes`` (B, N, 4) or None; ``dedup(loss, candidate,
        quota, boxes)`` the de-duplicated choice, needed with ``boxes``. See the
        class docstring.
        """
        positive = be.mask(x >= 0)
        candidate = be.mask(x < 0) * be.mask(best < self._thresh) * ious_ok * finite
        quota = ohem_quota(be, be.count(positive), self._ratio, self._min_samples)
        if boxes is None:
            negative = hard_negatives(be, loss, candidate, quota)
        else:
            negative = dedup(loss, candidate * be.finite_rows(boxes), quota, boxes)
        return be.labels(positive, negative)

    # ----------------------------------------------------------------------- numpy inputs
    def _inputs_np(self, x, logits, ious, scores, boxes):
        """The inputs of :meth:`_labels` as numpy arrays, by numpy's fastest roads."""
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
            loss, finite = background_loss(host_view(logits))
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
        if not ious_ok.all():
            best = np.where(ious_ok, best, 0)  # the anchor is out through ious_ok
        if not finite.all():
            loss = np.where(finite, loss, 0)
        if boxes is not None:
            boxes = to_numpy(boxes).astype(np.float64)
        return (x, best, ious_ok.astype(np.float32), loss, finite.astype(np.float32), boxes)

    def _dedup_np(self, loss, candidate, quota, boxes):
        """Greedy NMS walked hardest first, first ``quota`` survivors (:func:`greedy_nms_first`)."""
        candidate = (candidate > 0) & np.isfinite(boxes).all(axis=-1)
        negative = np.zeros(candidate.shape, np.float32)
        quota = np.minimum(quota[:, 0], candidate.shape[1]).astype(np.int64)
        for i, (row_loss, row_cand, row_boxes) in enumerate(zip(loss, candidate, boxes)):
            idx = np.flatnonzero(row_cand)
            idx = idx[np.argsort(-row_loss[idx], kind='stable')]  # hardest first
            negative[i, idx[greedy_nms_first(row_boxes[idx], quota[i], self._nms_thresh)]] = 1
        return negative

    # ----------------------------------------------------------------------- F inputs
    def hybrid_forward(self, F, x, logits, ious, scores=None, boxes=None):
        """Labels from F operators only; see the class docstring for the rule."""
        dedup = functools.partial(self._dedup_F_quota, F)
        return self._labels(backend.for_F(F), *self._inputs_F(F, x, logits, ious, scores, boxes),
                            dedup=dedup)

    def _dedup_F_quota(self, F, loss, candidate, quota, boxes):
        """:meth:`_dedup_F` with a float64 quota."""
        return self._dedup_F(F, loss, candidate, F.cast(quota, 'float32'), boxes)

    def _inputs_F(self, F, x, logits, ious, scores, boxes):
        """The inputs of :meth:`_labels` as F arrays.

        Each float input is computed in float32, or in float64 if it is
        float64: read from the NDArrays themselves, or, while a graph is
        traced, from this thread's call (float32 when a hybridized parent
        traces us and the dtypes are unknown).
        """
        if F is mx.nd:
            widths = _widths(logits, ious, scores)
        else:
            widths = getattr(_TRACE, 'widths', _FLOAT32S)
        width = dict(zip(('logits', 'ious', 'scores'), widths))

        def widened(a, name):
            return F.cast(F.stop_gradient(a), width[name])

        ious = F.reshape(widened(ious, 'ious'), shape=(0, 0, -1))
        ious_ok = F.cast(F.min(finite_F(F, ious), axis=2), 'float32')
        best = F.max(ious, axis=2)
        best = F.where(ious_ok > 0, best, F.zeros_like(best))
        if scores is None:
            loss, finite = background_loss_F(F, widened(logits, 'logits'))
        else:
            loss = widened(scores, 'scores')
            finite = finite_F(F, loss)
        finite = F.cast(finite, 'float32')
        loss = F.where(F.cast(finite, width['scores' if scores is not None else 'logits']) > 0,
                       loss, F.zeros_like(loss))
        if boxes is not None:
            boxes = F.stop_gradient(boxes)
        return x, best, ious_ok, loss, finite, boxes

    def _dedup_F(self, F, loss, candidate, quota, boxes):
        """Greedy NMS over candidates in order of hardness, then the first ``quota`` survivors.

        ``box_nms`` sorts by score, so each candidate gets a unique score that
        falls with (hardness, then index). MXNet's argsort is not stable, so
        the hardness first becomes a dense rank (sort, cumsum of changes,
        gathered back to each anchor), packed with the column into one exact
        float64 key. ``box_nms`` returns the survivors in that order with
        their flat anchor index, which ``index_copy`` scatters back.
        """
        key = F.where(candidate > 0, loss, neg_inf_like_F(F, loss))
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
