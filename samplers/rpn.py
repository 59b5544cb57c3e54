"""RPN targets: which anchors train the region proposal network, and toward what.

:class:`RPNTargetSampler` labels anchors from an IoU matrix (labels as in
:mod:`samplers`); :class:`RPNTargetGenerator` goes from ground-truth boxes and
anchors to the three targets a Faster R-CNN RPN head trains on. Both follow
GluonCV 0.10.5's rule, so the same input gives the same candidates:

* an anchor is **positive** when its best IoU with a box is >=
  ``pos_iou_thresh``, or when it is (within ``eps`` = ``np.spacing(
  np.float32(1))``) the best anchor of some box: ``ious[i, j] + eps > max_k
  ious[k, j]``, every tied anchor counting;
* it is **negative** when its best IoU is in [0, ``neg_iou_thresh``), and
  this overrides the best-anchor rule (not with ``allow_low_quality_matches``,
  the Faster R-CNN paper's and detectron2's choice);
* anything else is ignored, and so is an invalid anchor: one whose IoU row
  is negative (GluonCV writes -1 for anchors crossing the image border).

At most ``round(pos_ratio * num_sample)`` positives are kept per image,
uniformly at random, then at most ``num_sample - kept positives`` negatives.

Hard boxes (VOC ``difficult``; flags 1) never make a positive, by threshold or
as a best anchor, and positives never match them: positives are exactly those
of the normal boxes alone. An anchor that is not positive but has IoU >=
``neg_iou_thresh`` with a hard box is ignored, neither pushed toward the hard
object nor taught that it is background. With every flag 0 the result is the
unflagged one, random draws included.

Deliberate differences from GluonCV (each has a ``test_differs_from_gluoncv_``
test): the best-anchor rule needs ``ious[i, j] > 0``, so a box that overlaps
no valid anchor (degenerate, or outside the image) makes no positive where
GluonCV marks every zero-IoU anchor as its best; invalid anchors are never
positive; a row holding NaN/inf is ignored (logged once) instead of spoiling
its boxes' best anchors; no ground truth (M = 0) works; ``pos_iou_thresh``
must be > 0. The generator also uses ``allowed_border``, returns NDArrays for
NDArray input and a float32 box mask.
"""
from __future__ import annotations

import collections
import numbers
import threading

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon

from .boxes import (EPS, best_anchor_mask, best_match, box_iou, box_iof, check_boxes,
                    check_flags, check_int, check_ratio, check_thresh, col_max, is_ndarray,
                    keep_random, keep_random_F, like, negative_quota, positive_quota, to_numpy,
                    use_numpy, warn_once)

__all__ = ['RPNTargetSampler', 'RPNTargetGenerator']

# Anchor-grid search: a box whose best IoU found is this close to the pruning
# threshold is searched again, so that every anchor within EPS of its best one
# is found (> EPS plus float32 rounding; see _grid_facts).
_PRUNE_MARGIN = 1e-6
# Relative slack on IoU/IoF upper bounds, far above float32 rounding.
_BOUND_SLACK = 1e-4


# =========================================================================== argument checks
def _check_rule(num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio):
    num_sample = check_int('num_sample', num_sample, minimum=1)
    pos_t = check_thresh('pos_iou_thresh', pos_iou_thresh)
    neg_t = check_thresh('neg_iou_thresh', neg_iou_thresh)
    if not pos_t > 0:
        raise ValueError('pos_iou_thresh must be > 0 (an anchor overlapping nothing is never '
                         'an object), got {}'.format(pos_t))
    if pos_t < neg_t:
        raise ValueError('pos_iou_thresh must be >= neg_iou_thresh, got pos_iou_thresh={} and '
                         'neg_iou_thresh={}'.format(pos_t, neg_t))
    pos_ratio = check_ratio('pos_ratio', pos_ratio)
    return num_sample, pos_t, neg_t, pos_ratio


def _check_hard_shape(hard, ious_shape):
    """ValueError unless ``hard`` is (M,) (or (B, M) for batched ``ious``)."""
    shape = tuple(hard.shape) if hasattr(hard, 'shape') else np.shape(hard)
    allowed = [tuple(ious_shape[-1:])]
    if len(ious_shape) == 3:
        allowed.append((ious_shape[0], ious_shape[-1]))
    if shape not in allowed:
        raise ValueError('hard must have shape {} to match ious of shape {}, got {}'.format(
            ' or '.join(str(a) for a in allowed), tuple(ious_shape), shape))


# =========================================================================== the rule
def _label(facts, allow_low_quality):
    """Positive and negative candidate masks (N,) from per-anchor :class:`_Facts`."""
    keep_best = facts.best if allow_low_quality else facts.best & ~facts.weak
    pos = facts.valid & (facts.thr | keep_best)
    neg = facts.valid & facts.low & ~pos
    if facts.ignore is not None:
        neg &= ~facts.ignore
    return pos, neg


def _subsample(pos, neg, num_sample, max_pos):
    """Keep at most ``max_pos`` positives, then fill ``num_sample`` with negatives."""
    pos = keep_random(pos, max_pos)
    neg = keep_random(neg, negative_quota(num_sample, int(np.count_nonzero(pos)), 0.0))
    return pos, neg


class _Facts:
    """Per-anchor (N,) boolean facts the rule needs.

    ``valid``: may be labelled at all; ``thr``: best IoU with a normal box >=
    pos_iou_thresh; ``best``: a best anchor of some normal box; ``weak``: best
    IoU with a normal box < neg_iou_thresh; ``low``: best IoU with any box,
    hard ones included, < neg_iou_thresh; ``ignore``: never negative (or
    None). ``match`` (N,) int64 or None (then found for positives only).
    """
    __slots__ = ('valid', 'thr', 'best', 'weak', 'low', 'ignore', 'match', 'num_bad')

    def __init__(self, valid, thr, best, weak, low, ignore=None, match=None, num_bad=0):
        self.valid, self.thr, self.best, self.weak, self.low = valid, thr, best, weak, low
        self.ignore, self.match, self.num_bad = ignore, match, num_bad


def _dense_facts(ious, hard, pos_t, neg_t, valid=None):
    """Facts from a dense, C-contiguous (N, M) IoU matrix of one image (numpy).

    ``hard`` (M,) bool or None. A row holding a non-finite value is ignored
    (counted in ``num_bad``). A row whose max is negative is invalid (GluonCV
    writes -1 for anchors outside the image); ``valid`` (N,) may exclude more.
    """
    n, m = ious.shape
    dt = ious.dtype.type
    num_bad = 0
    cols_max = col_max(ious)
    # NaN and +inf show in the column maxima; -inf needs the minimum.
    if n and m and not (np.isfinite(cols_max).all() and np.isfinite(ious.min())):
        bad = ~np.isfinite(ious).all(axis=1)
        num_bad = int(bad.sum())
        ious = np.where(bad[:, None], dt(-1), ious)
        valid = ~bad if valid is None else valid & ~bad
        cols_max = col_max(ious)
    if hard is None or not hard.any():
        normal = np.arange(m)
        sub = ious
    else:
        normal = np.flatnonzero(~hard)
        sub = ious[:, normal]
    if normal.size:
        max_n, j = best_match(sub)
        match = normal[j]
        thr = max_n >= dt(pos_t)
    else:
        max_n = np.zeros(n, dtype=ious.dtype)
        match = np.zeros(n, dtype=np.int64)
        thr = np.zeros(n, dtype=bool)
    max_all = max_n
    if normal.size < m:
        max_all = max_n.copy() if normal.size else np.full(n, -np.inf, dtype=ious.dtype)
        for col in np.flatnonzero(hard):
            np.maximum(max_all, ious[:, col], out=max_all)
    if m:
        valid = max_all >= 0 if valid is None else valid & (max_all >= 0)
        low = max_all < dt(neg_t)
    else:
        valid = np.ones(n, dtype=bool) if valid is None else valid
        low = np.full(n, 0 < neg_t)
    best = best_anchor_mask(ious, EPS, valid_gt=None if normal.size == m else ~hard,
                            cols_max=cols_max, row_best=max_n)
    return _Facts(valid, thr, best, max_n < dt(neg_t), low,
                  match=match.astype(np.int64, copy=False), num_bad=num_bad)


# =========================================================================== the mx.nd rule
def _rule_nd(ious, normal, valid, ignore, pos_t, neg_t, allow_low_quality, num_sample, max_pos):
    """The whole rule with ``mx.nd`` ops on ious' context (no host copy).

    ``ious`` (B, N, M) finite, M >= 1; ``normal`` (B, M) 0/1 (non-hard,
    present boxes); ``valid``/``ignore`` (B, N) 0/1 or None. Returns
    ``(samples, matches)``, (B, N) float32.
    """
    nd = mx.nd
    dt = ious.dtype
    if valid is None:
        valid = nd.max(ious, axis=-1) >= 0
    vmask = nd.broadcast_like(valid.expand_dims(-1), ious)
    nmask = nd.broadcast_like(normal.expand_dims(-2), ious)
    low_fill = nd.full((1, 1, 1), -2, ctx=ious.context, dtype=dt)
    max_n, matches = best_match(nd.where(nmask, ious, nd.broadcast_like(low_fill, ious)))
    max_all = nd.max(ious, axis=-1)
    best = best_anchor_mask(ious, EPS, valid_gt=normal, valid_anchor=valid)
    thr = max_n >= pos_t
    low = max_all < neg_t
    keep_best = best if allow_low_quality else best * (max_n >= neg_t)
    pos = valid * ((thr + keep_best) > 0)
    neg = valid * low * (1 - pos)
    if ignore is not None:
        neg = neg * (1 - ignore)
    return _subsample_nd(pos, neg, num_sample, max_pos), matches.astype('float32')


def _subsample_nd(pos, neg, num_sample, max_pos):
    nd = mx.nd
    batch = pos.shape[0]
    k_pos = nd.full((batch, 1), max_pos, ctx=pos.context, dtype='float32')
    pos = keep_random_F(nd, pos.astype('float32'), k_pos)
    k_neg = num_sample - nd.sum(pos, axis=-1, keepdims=True)
    neg = keep_random_F(nd, neg.astype('float32'), k_neg)
    return pos - neg


# =========================================================================== RPNTargetSampler
class RPNTargetSampler(gluon.Block):
    """Label RPN anchors positive / negative / ignored from their IoUs with ground truth.

    A ``gluon.Block`` (GluonCV's is a plain object with the same call), picklable
    for data-loader workers.

    Parameters
    ----------
    num_sample : int
        Anchors trained per image (positives plus negatives), >= 1.
    pos_iou_thresh : float
        Best IoU >= this makes an anchor positive (> 0).
    neg_iou_thresh : float
        Best IoU in [0, this) makes an anchor negative (<= ``pos_iou_thresh``).
    pos_ratio : float
        At most ``round(pos_ratio * num_sample)`` positives per image, in [0, 1].
    allow_low_quality_matches : bool, default False
        Keep each box's best anchor(s) positive even below ``neg_iou_thresh``
        (Faster R-CNN paper, detectron2). False is GluonCV's rule.

    Called as ``sampler(ious, hard=None)``:

    * ``ious``: (N, M) or (B, N, M) IoUs of N anchors with M boxes, numpy or
      NDArray, float16/32/64 (float16 is computed in float32). A row whose
      max is negative marks an invalid anchor (ignored); a row with NaN/inf is
      ignored and logged once per sampler (numpy backend; the mx.nd backend
      ignores it silently, as checking would copy to the host).
    * ``hard``: optional (M,) or (B, M) 0/1 flags, 1 = hard box.

    Returns ``(samples, matches)`` of shape (N,) or (B, N), in the input's
    kind and context. ``samples`` is float32 in {1, -1, 0} (see
    :mod:`samplers`). ``matches`` is the index of each anchor's best non-hard
    box (first on ties; 0 when there is none): int64 for numpy input, float32
    (MXNet's index type) for NDArrays.

    Rule: an anchor is positive when its best IoU is >= ``pos_iou_thresh``
    or it is (within eps, IoU > 0) the best anchor of a box, negative when its
    best IoU is < ``neg_iou_thresh`` (which wins over the best-anchor rule
    unless ``allow_low_quality_matches``); per image at most ``round(pos_ratio
    * num_sample)`` positives are kept at random, then at most ``num_sample -
    kept positives`` negatives. Details and the differences from GluonCV are
    in :mod:`samplers.rpn`.

    Edges: with no ground truth every valid anchor is a negative candidate;
    with fewer candidates than the quota all are kept; hard boxes make no
    positive and turn the anchors overlapping them (IoU >=
    ``neg_iou_thresh``, not positive) to ignored. Randomness comes from
    ``np.random`` (numpy backend) or MXNet's RNG (mx.nd backend).
    """

    def __init__(self, num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio,
                 allow_low_quality_matches=False):
        super().__init__()
        self._num_sample, self._pos_t, self._neg_t, self._pos_ratio = _check_rule(
            num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio)
        self._max_pos = positive_quota(self._num_sample, self._pos_ratio)
        self._allow_low_quality = bool(allow_low_quality_matches)

    def __repr__(self):
        return ('{}(num_sample={}, pos_iou_thresh={}, neg_iou_thresh={}, pos_ratio={}, '
                'allow_low_quality_matches={})'.format(
                    type(self).__name__, self._num_sample, self._pos_t, self._neg_t,
                    self._pos_ratio, self._allow_low_quality))

    def __call__(self, ious, hard=None):  # pylint: disable=arguments-differ
        # gluon.Block.__call__ takes positional inputs only; this keeps ``hard=`` working.
        return super().__call__(ious, hard)

    def forward(self, ious, hard=None):  # pylint: disable=arguments-differ
        """Label the anchors; see the class docstring."""
        if not is_ndarray(ious):
            ious = np.asarray(ious)
        shape = tuple(ious.shape)
        if len(shape) not in (2, 3):
            raise ValueError('ious must have shape (N, M) or (B, N, M), got {}'.format(shape))
        if hard is not None:
            _check_hard_shape(hard, shape)
            if not is_ndarray(hard) or use_numpy(ious):
                hard = check_flags('hard', hard)
        if use_numpy(ious):
            return self._call_numpy(ious, hard)
        return self._call_nd(ious, hard)

    # ----------------------------------------------------------------------- numpy backend
    def _call_numpy(self, ious, hard):
        arr = to_numpy(ious)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)
        batch = arr[None] if arr.ndim == 2 else arr
        flags = None
        if hard is not None:
            flags = np.broadcast_to(hard, batch.shape[:1] + batch.shape[-1:])
        samples, matches = [], []
        for b, img in enumerate(batch):
            s, mt = self._sample_image(img, None if flags is None else flags[b])
            samples.append(s)
            matches.append(mt)
        samples = np.stack(samples) if samples else np.zeros(batch.shape[:2], np.float32)
        matches = np.stack(matches) if matches else np.zeros(batch.shape[:2], np.int64)
        if arr.ndim == 2:
            samples, matches = samples[0], matches[0]
        if is_ndarray(ious):
            return like(samples, ious), like(matches, ious, dtype=np.float32)
        return samples, matches

    def _sample_image(self, ious, hard):
        """One (N, M) image on the numpy backend: ``(samples, matches)``; ``hard`` (M,) bool."""
        facts = _dense_facts(np.ascontiguousarray(ious), hard, self._pos_t, self._neg_t)
        if facts.num_bad:
            warn_once(self, 'nonfinite', '{}: {} anchor(s) with a NaN/inf IoU were ignored '
                      '(logged once)'.format(type(self).__name__, facts.num_bad))
        return self._sample_facts(facts), facts.match

    def _sample_facts(self, facts):
        """Apply the rule and the quotas to precomputed facts: float32 samples (N,)."""
        pos, neg = _label(facts, self._allow_low_quality)
        pos, neg = _subsample(pos, neg, self._num_sample, self._max_pos)
        samples = pos.astype(np.float32)
        samples[neg] = -1
        return samples

    # ----------------------------------------------------------------------- mx.nd backend
    def _call_nd(self, ious, hard):
        shape = tuple(ious.shape)
        batch, n, m = (1,) + shape if len(shape) == 2 else shape
        ctx = ious.context
        with autograd.pause():
            if batch == 0 or n == 0:  # MXNet's operators reject zero-size arrays
                # (NDArray.copy() fails too); built from host zeros, nothing is read back
                empty = np.zeros(shape[:-1], np.float32)
                return like(empty, ious), like(empty, ious)
            if m == 0:
                samples = _subsample_nd(
                    mx.nd.zeros((batch, n), ctx=ctx),
                    mx.nd.full((batch, n), float(0 < self._neg_t), ctx=ctx),
                    self._num_sample, self._max_pos)
                matches = mx.nd.zeros((batch, n), ctx=ctx)
            else:
                x = ious.reshape((batch, n, m))
                if x.dtype not in (np.float32, np.float64):
                    x = x.astype('float32')
                if hard is None:
                    normal = mx.nd.ones((batch, m), ctx=ctx, dtype=x.dtype)
                else:
                    flags = hard.as_in_context(ctx) if is_ndarray(hard) else mx.nd.array(
                        hard.astype(np.float32), ctx=ctx)
                    normal = mx.nd.broadcast_to((flags <= 0).reshape((-1, m)),
                                                shape=(batch, m)).astype(x.dtype)
                bad = mx.nd.sum((x - x) != 0, axis=-1, keepdims=True) > 0
                x = mx.nd.where(mx.nd.broadcast_like(bad, x), -mx.nd.ones_like(x), x)
                samples, matches = _rule_nd(x, normal, None, None, self._pos_t, self._neg_t,
                                            self._allow_low_quality, self._num_sample,
                                            self._max_pos)
        if len(shape) == 2:
            samples, matches = samples[0], matches[0]
        return samples, matches


# =========================================================================== anchor grids
def _ranges(starts, counts):
    """Concatenation of ``arange(s, s + c)`` for each (s, c), vectorised."""
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total)


class _Group:
    """One anchor type of one block: a grid of columns x rows.

    Anchor (r, c) is ``base + r * row_step + c * col_step``; its x extent is
    (x1[c], x2[c]) and its y extent (y1[r], y2[r]), all non-decreasing.
    """
    __slots__ = ('x1', 'x2', 'y1', 'y2', 'base', 'col_step', 'row_step', 'block')

    def __init__(self, x1, x2, y1, y2, base, col_step, row_step, block):
        self.x1, self.x2, self.y1, self.y2 = x1, x2, y1, y2
        self.base, self.col_step, self.row_step, self.block = base, col_step, row_step, block


class _AnchorGrid:
    """Anchors laid out as GluonCV's and mmdetection's generators make them.

    The anchors are cut into consecutive blocks of (rows, cols, types): inside
    a block, anchor (r, c, a) has x1/x2 depending only on (c, a) and y1/y2
    only on (r, a). So the anchors of one type that overlap a box form a
    rectangle of columns x rows, found by binary search, and most anchor/box
    pairs (which do not overlap) are never looked at. :meth:`build` returns
    None for anchors without this layout; callers then use the dense path.
    """
    MAX_GROUPS = 64
    MIN_ANCHORS = 4096

    def __init__(self, anchors, groups):
        self.num = len(anchors)
        self.groups = groups
        g64 = lambda v: np.array(v, dtype=np.float64)  # noqa: E731
        widths = [np.maximum(g64(g.x2) - g64(g.x1), 0) for g in groups]
        heights = [np.maximum(g64(g.y2) - g64(g.y1), 0) for g in groups]
        self.w_lo = np.array([w.min() for w in widths])
        self.w_hi = np.array([w.max() for w in widths])
        self.h_lo = np.array([h.min() for h in heights])
        self.h_hi = np.array([h.max() for h in heights])
        # Per-column / per-row tables over all groups, for the pair expansion.
        self.col_off = np.cumsum([0] + [len(g.x1) for g in groups])[:-1]
        self.row_off = np.cumsum([0] + [len(g.y1) for g in groups])[:-1]
        self.cx1 = np.concatenate([g.x1 for g in groups])
        self.cx2 = np.concatenate([g.x2 for g in groups])
        self.ry1 = np.concatenate([g.y1 for g in groups])
        self.ry2 = np.concatenate([g.y2 for g in groups])
        self.col_w = np.maximum(self.cx2 - self.cx1, np.float32(0))
        self.row_h = np.maximum(self.ry2 - self.ry1, np.float32(0))
        self.col_idx = np.concatenate([g.base + np.arange(len(g.x1)) * g.col_step
                                       for g in groups])
        self.row_idx = np.concatenate([np.arange(len(g.y1)) * g.row_step for g in groups])
        self._ranges = collections.OrderedDict()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------- layout detection
    @classmethod
    def build(cls, anchors):
        """The grid view of float32 (N, 4) ``anchors``, or None if they have no such layout."""
        n = len(anchors)
        if n < cls.MIN_ANCHORS or not np.isfinite(anchors).all():
            return None
        coords = np.ascontiguousarray(anchors.T)  # x1, y1, x2, y2 rows: fast comparisons
        groups, start = [], 0
        while start < n:
            rows, cols, types = cls._find_block(coords[:, start:])
            blk = anchors[start:start + rows * cols * types].reshape(rows, cols, types, 4)
            for a in range(types):
                groups.append(_Group(blk[0, :, a, 0].copy(), blk[0, :, a, 2].copy(),
                                     blk[:, 0, a, 1].copy(), blk[:, 0, a, 3].copy(),
                                     start + a, types, cols * types,
                                     (start, rows, cols, types, a)))
            if len(groups) > cls.MAX_GROUPS:
                return None
            start += rows * cols * types
        return cls(anchors, groups)

    @classmethod
    def _find_block(cls, coords):
        """(rows, cols, types) of the block at the start of (4, n) ``coords``.

        Candidate numbers of types per cell are where anchor 0 reappears
        shifted; the first one giving a grid of at least 2 x 2 cells wins, else
        the one with the most cells. Every check is exact.
        """
        x1, y1, x2, y2 = coords
        n = len(x1)
        h = min(n, cls.MAX_GROUPS + 1)
        # The next cell starts where anchor 0 reappears shifted along x or along y,
        # with the same size up to rounding.
        w, ht = x2[:h] - x1[:h], y2[:h] - y1[:h]
        tol = 1e-3 * max(abs(w[0]), abs(ht[0]), 1)
        same_size = (np.abs(w[1:] - w[0]) <= tol) & (np.abs(ht[1:] - ht[0]) <= tol)
        shifted_x = (y1[1:h] == y1[0]) & (y2[1:h] == y2[0]) & (x1[1:h] > x1[0])
        shifted_y = (x1[1:h] == x1[0]) & (x2[1:h] == x2[0]) & (y1[1:h] > y1[0])
        cands = list(np.flatnonzero(same_size & (shifted_x | shifted_y))[:3] + 1)
        if n <= cls.MAX_GROUPS:
            cands.append(n)
        found = (1, 1, 1)  # a lone anchor is a grid too; many of them exceed MAX_GROUPS
        for types in cands:
            # Row 0: the leading cells repeating cell 0's y extents, x extents rising.
            cols = _run(((y1[types:] == y1[:-types]) & (y2[types:] == y2[:-types])), types)
            cols = min(cols + 1, n // types)
            span = cols * types
            if not ((x1[types:span] >= x1[:span - types]).all()
                    and (x2[types:span] >= x2[:span - types]).all()):
                continue
            # Rows: repeating row 0's x extents, each repeating its cell 0's y
            # extents, y extents rising.
            length = n // span * span
            bx1, by1, bx2, by2 = (v[:length].reshape(-1, span) for v in (x1, y1, x2, y2))
            same_x = ((bx1[1:] == bx1[:-1]) & (bx2[1:] == bx2[:-1])).all(axis=1)
            same_y = ((by1[:, types:] == by1[:, :-types])
                      & (by2[:, types:] == by2[:, :-types])).all(axis=1)
            rising = ((by1[1:, :types] >= by1[:-1, :types])
                      & (by2[1:, :types] >= by2[:-1, :types])).all(axis=1)
            rows = 1 + _run(same_x & same_y[1:] & rising, 1)
            if rows > 1 and cols > 1:  # a true grid: the shortest period wins
                return rows, cols, types
            if (rows * cols, types) > (found[0] * found[1], found[2]):
                found = (rows, cols, types)
        return found

    # ----------------------------------------------------------------------- image borders
    def inside(self, width, height, border):
        """``(valid, col_lo, col_hi, row_lo, row_hi)`` for an image size (cached).

        ``valid`` (N,) marks anchors within ``border`` pixels of the image;
        per group, the valid ones are columns [col_lo, col_hi) x rows
        [row_lo, row_hi).
        """
        key = (width, height, border)
        with self._lock:
            hit = self._ranges.get(key)
            if hit is not None:
                self._ranges.move_to_end(key)
                return hit
        lo, hi_x, hi_y = _border_limits(width, height, border)
        valid = np.zeros(self.num, dtype=bool)
        bounds = np.zeros((4, len(self.groups)), dtype=np.int64)
        for k, g in enumerate(self.groups):
            c0, c1 = np.searchsorted(g.x1, lo, 'left'), np.searchsorted(g.x2, hi_x, 'left')
            r0, r1 = np.searchsorted(g.y1, lo, 'left'), np.searchsorted(g.y2, hi_y, 'left')
            bounds[:, k] = c0, max(c0, c1), r0, max(r0, r1)
            start, rows, cols, types, a = g.block
            view = valid[start:start + rows * cols * types].reshape(rows, cols, types)
            view[r0:r1, c0:c1, a] = True
        hit = (valid,) + tuple(bounds)
        with self._lock:
            self._ranges[key] = hit
            if len(self._ranges) > 16:
                self._ranges.popitem(last=False)
        return hit

    # ----------------------------------------------------------------------- overlapping pairs
    def pairs(self, boxes, inside, keep=None, want_iof=False):
        """Every (valid anchor, box) pair that may overlap, with IoU (and IoF).

        ``boxes`` float32 (K, 4); ``inside`` from :meth:`inside`; ``keep``
        optional (K, G) bool: only these (box, group) pairs are searched.
        Returns ``(anchor, box, iou, iof)`` 1-D arrays ordered by box (iof None
        unless ``want_iof``), float32 values bit-identical to :func:`box_iou`
        and :func:`box_iof`.
        """
        _, col_lo, col_hi, row_lo, row_hi = inside
        k, ng = len(boxes), len(self.groups)
        bx1, by1, bx2, by2 = (np.ascontiguousarray(boxes[:, i]) for i in range(4))
        # Binary search of every group at once: columns are sorted within a group, so
        # the first column with x2 > bx1 is the count of columns with x2 <= bx1.
        c0 = _count_per_group(self.cx2 <= bx1[:, None], self.col_off)
        c1 = _count_per_group(self.cx1 < bx2[:, None], self.col_off)   # first x1 >= bx2
        r0 = _count_per_group(self.ry2 <= by1[:, None], self.row_off)
        r1 = _count_per_group(self.ry1 < by2[:, None], self.row_off)
        np.maximum(c0, col_lo, out=c0)
        np.minimum(c1, col_hi, out=c1)
        np.maximum(r0, row_lo, out=r0)
        np.minimum(r1, row_hi, out=r1)
        nc = np.maximum(c1 - c0, 0)
        nr = np.maximum(r1 - r0, 0)
        if keep is not None:
            nc[~keep] = 0
        cnt = (nc * nr).ravel()
        win = np.flatnonzero(cnt)
        box_of = win // ng
        grp_of = win % ng
        c0, nc, r0, nr, cnt = (v.ravel()[win] for v in (c0, nc, r0, nr, cnt))
        # Per window column / row: the separable parts of the IoU.
        cols = _ranges(self.col_off[grp_of] + c0, nc)
        rows = _ranges(self.row_off[grp_of] + r0, nr)
        cbox, rbox = np.repeat(box_of, nc), np.repeat(box_of, nr)
        iw = np.minimum(self.cx2[cols], bx2[cbox]) - np.maximum(self.cx1[cols], bx1[cbox])
        ih = np.minimum(self.ry2[rows], by2[rbox]) - np.maximum(self.ry1[rows], by1[rbox])
        np.maximum(iw, 0, out=iw)
        np.maximum(ih, 0, out=ih)
        aw, ah = self.col_w[cols], self.row_h[rows]
        cidx, ridx = self.col_idx[cols], self.row_idx[rows]
        area_b = (np.maximum(bx2 - bx1, np.float32(0)) * np.maximum(by2 - by1, np.float32(0)))
        # Expand windows to pairs, rows outer and columns inner.
        pw = np.repeat(np.arange(win.size), cnt)
        local = _ranges(np.zeros(win.size, np.int64), cnt)
        ncp = nc[pw]
        lr = local // ncp
        lc = local - lr * ncp
        ci = (np.cumsum(nc) - nc)[pw] + lc
        ri = (np.cumsum(nr) - nr)[pw] + lr
        inter = iw[ci] * ih[ri]
        area_a = aw[ci] * ah[ri]
        box = box_of[pw]
        iou = np.zeros_like(inter)
        has = inter > 0
        np.divide(inter, area_a + area_b[box] - inter, out=iou, where=has)
        iof = None
        if want_iof:
            iof = np.zeros_like(inter)
            np.divide(inter, area_a, out=iof, where=has)
        return cidx[ci] + ridx[ri], box, iou, iof

    def bounds(self, boxes):
        """(K, G) upper bounds of the IoU and of the IoF any anchor of group g has with box k.

        From sizes alone: the intersection is at most min(widths) x
        min(heights). Inflated by a relative slack far above float32 rounding,
        so ``bound < t`` proves no pair of that group reaches ``t``.
        """
        b = boxes.astype(np.float64)
        bw = np.maximum(b[:, 2] - b[:, 0], 0)[:, None]
        bh = np.maximum(b[:, 3] - b[:, 1], 0)[:, None]
        inter = np.minimum(self.w_hi, bw) * np.minimum(self.h_hi, bh)
        area_lo = self.w_lo * self.h_lo
        denom = area_lo + bw * bh - inter
        with np.errstate(divide='ignore', invalid='ignore'):
            iou = np.where(denom > 0, inter / denom, np.inf)
            iof = np.where(area_lo > 0, inter / area_lo, np.inf)
        return iou * (1 + _BOUND_SLACK), iof * (1 + _BOUND_SLACK)


def _run(ok, unit):
    """Number of whole ``unit``-long runs of True at the start of 1-D ``ok``."""
    first_bad = int(np.argmin(ok)) if ok.size else 0
    length = first_bad if ok.size and not ok[first_bad] else ok.size
    return length // unit


def _count_per_group(hits, offsets):
    """(K, G) counts of True in each group of columns of the (K, total) ``hits``."""
    return np.add.reduceat(hits.view(np.int8), offsets, axis=1, dtype=np.int64)


def _border_limits(width, height, border):
    """float32 limits of the valid-anchor test x1 >= lo, y1 >= lo, x2 < hi_x, y2 < hi_y."""
    return (np.float32(-border), np.float32(width + border), np.float32(height + border))


def _grid_facts(grid, inside, gt, hard, pos_t, neg_t, hard_iof):
    """Rule facts from the anchor grid, looking only at pairs that can matter.

    Thresholds need only pairs that can reach the lowest threshold tested
    (``prune``). A box's best anchors need its best IoU: when that is above
    ``prune`` the same pairs hold it; otherwise (tiny or odd-shaped boxes) the
    box's most promising anchor type gives a lower bound ``m`` on its best
    IoU, and every type that can reach ``m`` is searched.
    """
    n = grid.num
    valid = inside[0]
    thr = np.zeros(n, dtype=bool)
    best = np.zeros(n, dtype=bool)
    high_normal = np.zeros(n, dtype=bool)   # IoU >= neg_iou_thresh with a normal box
    ignore = None
    eps, margin = np.float32(EPS), np.float32(_PRUNE_MARGIN)
    prune = neg_t if neg_t > 0 else pos_t
    normal = np.flatnonzero(~hard)
    if normal.size:
        boxes = gt[normal]
        bound, _ = grid.bounds(boxes)
        anc, box, iou, _ = grid.pairs(boxes, inside, bound >= prune)
        box_max = _segment_max(iou, box, len(boxes))
        redo = np.flatnonzero(box_max < np.float32(prune) + margin)
        if redo.size:
            bound = bound[redo]
            top = bound == bound.max(axis=1, keepdims=True)
            _, box2, iou2, _ = grid.pairs(boxes[redo], inside, top)
            floor = _segment_max(iou2, box2, redo.size) - margin
            anc2, box2, iou2, _ = grid.pairs(boxes[redo], inside, bound >= floor[:, None])
            box_max[redo] = _segment_max(iou2, box2, redo.size)
            anc, box, iou = (np.concatenate(v) for v in ((anc, anc2), (box, redo[box2]),
                                                         (iou, iou2)))
        thr[anc[iou >= np.float32(pos_t)]] = True
        if neg_t > 0:
            high_normal[anc[iou >= np.float32(neg_t)]] = True
        best[anc[(iou > 0) & (iou + eps > box_max[box])]] = True
    high = high_normal.copy()  # ... with any box
    if normal.size < len(gt) and (neg_t > 0 or hard_iof is not None):
        iou_bound, iof_bound = grid.bounds(gt[hard])
        keep = (iou_bound >= neg_t) if neg_t > 0 else np.zeros(iou_bound.shape, bool)
        if hard_iof is not None:
            keep |= iof_bound >= hard_iof
        anc, _, iou, iof = grid.pairs(gt[hard], inside, keep, want_iof=hard_iof is not None)
        if neg_t > 0:
            high[anc[iou >= np.float32(neg_t)]] = True
        if hard_iof is not None:
            ignore = np.zeros(n, dtype=bool)
            ignore[anc[iof >= np.float32(hard_iof)]] = True
    if neg_t > 0:
        weak, low = ~high_normal, ~high
    else:  # a valid anchor's best IoU is >= 0
        weak = low = np.zeros(n, dtype=bool)
    return _Facts(valid, thr & valid, best & valid, weak, low, ignore)


def _segment_max(values, segment, num):
    """Max of ``values`` per segment id in [0, num) (ids sorted); 0 for empty segments."""
    out = np.zeros(num, dtype=np.float32)
    if values.size:
        starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
        out[segment[starts]] = np.maximum.reduceat(values, starts)
    return np.maximum(out, 0, out=out)


def _like_fresh(result, reference):
    """:func:`like` for a fresh numpy ``result`` nobody else holds: no copy on cpu(0).

    MXNet then owns the buffer (numpy's copy is made read-only).
    """
    if is_ndarray(reference) and reference.context == mx.cpu(0) and result.size \
            and result.flags['C_CONTIGUOUS']:
        return mx.nd.from_numpy(result, zero_copy=True)
    return like(result, reference)


# =========================================================================== box encoding
def _encode(anchors, gts, stds):
    """GluonCV's normalized center offsets of ``gts`` from ``anchors`` (float32, (K, 4))."""
    ax1, ay1, ax2, ay2 = (anchors[:, i] for i in range(4))
    gx1, gy1, gx2, gy2 = (gts[:, i] for i in range(4))
    aw, ah, gw, gh = ax2 - ax1, ay2 - ay1, gx2 - gx1, gy2 - gy1
    ax, ay = ax1 + aw * np.float32(0.5), ay1 + ah * np.float32(0.5)
    gx, gy = gx1 + gw * np.float32(0.5), gy1 + gh * np.float32(0.5)
    s = [np.float32(v) for v in stds]
    return np.stack(((gx - ax) / aw / s[0], (gy - ay) / ah / s[1],
                     np.log(gw / aw) / s[2], np.log(gh / ah) / s[3]), axis=1)


# =========================================================================== RPNTargetGenerator
class RPNTargetGenerator(gluon.Block):
    """RPN training targets for one image: classes, box offsets and box masks.

    Parameters
    ----------
    num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio, allow_low_quality_matches
        As :class:`RPNTargetSampler` (defaults 256, 0.7, 0.3, 0.5, False).
    stds : 4 positive numbers, default (1., 1., 1., 1.)
        Box offsets are divided by these.
    allowed_border : float >= 0, default 0
        An anchor is valid when it crosses the image border by at most this
        many pixels: ``x1 >= -b, y1 >= -b, x2 < width + b, y2 < height + b``.
        0 is GluonCV's test (GluonCV accepts the argument and ignores it);
        ``float('inf')`` keeps every anchor.
    hard_iof_thresh : float in (0, 1] or None, default None
        Also ignore (never make negative) an anchor whose intersection with a
        hard box covers at least this fraction of the anchor's own area
        (mmdetection-style ignore regions).

    Called as ``generator(bbox, anchor, width, height, hard=None)``: ``bbox``
    (M, 4) ground-truth corners, ``anchor`` (N, 4) anchor corners, the image
    ``width`` and ``height`` (> 0), ``hard`` optional (M,) 0/1 flags. Rows of
    ``bbox`` that are padding (all -1) are dropped, and so are non-finite rows
    (logged once); a degenerate box just overlaps nothing. Anchors with a
    non-finite coordinate are ignored (logged once).

    Returns ``(cls_target (N,), box_target (N, 4), box_mask (N, 4))``, all
    float32, numpy for numpy ``anchor``, NDArrays on ``anchor``'s context for
    NDArrays (GluonCV returns numpy, with a float64 mask). ``cls_target`` is
    GluonCV's encoding: 1 positive, 0 negative, -1 ignored. Positives get
    ``((gx - ax) / aw / std0, (gy - ay) / ah / std1, log(gw / aw) / std2,
    log(gh / ah) / std3)`` of their matched box (centers and sizes, no +1)
    and a mask of ones; everything else is 0. Labels follow
    :class:`RPNTargetSampler` on the IoUs of valid anchors (invalid ones
    ignored); with no ground truth every valid anchor is a negative candidate.

    Boxes and anchors are compared in float32 (GluonCV's
    ``mx.nd.contrib.box_iou``, bit for bit) whatever their dtype. On the
    numpy backend anchors laid out as GluonCV/mmdetection generate them (per
    level: rows x columns x anchor types) are recognised and cached (keyed by
    an exact copy), and only anchor/box pairs that can matter are computed;
    other layouts take the dense path, with the same results. The mx.nd
    backend (GPU) is dense, logs nothing (that would read data on the host)
    and may differ from numpy in the last bit of ``log``.
    """

    def __init__(self, num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3, pos_ratio=0.5,
                 stds=(1., 1., 1., 1.), allowed_border=0, allow_low_quality_matches=False,
                 hard_iof_thresh=None):
        super().__init__()
        self._sampler = RPNTargetSampler(num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio,
                                         allow_low_quality_matches)
        try:
            stds = tuple(float(v) for v in stds)
        except (TypeError, ValueError):
            raise ValueError('stds must be 4 positive numbers, got {!r}'.format(stds)) from None
        if len(stds) != 4 or not all(np.isfinite(v) and v > 0 for v in stds):
            raise ValueError('stds must be 4 positive numbers, got {!r}'.format(stds))
        self._stds = stds
        if isinstance(allowed_border, bool) or not isinstance(allowed_border, numbers.Real) \
                or not allowed_border >= 0:
            raise ValueError('allowed_border must be a number >= 0, got {!r}'.format(
                allowed_border))
        self._border = float(allowed_border)
        if hard_iof_thresh is not None:
            hard_iof_thresh = check_ratio('hard_iof_thresh', hard_iof_thresh, low_open=True)
        self._hard_iof = hard_iof_thresh
        self._grids = []
        self._grid_lock = threading.Lock()

    def __call__(self, bbox, anchor, width, height, hard=None):  # pylint: disable=arguments-differ
        return super().__call__(bbox, anchor, width, height, hard)

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_grids'], state['_grid_lock'] = [], None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._grid_lock = threading.Lock()

    def forward(self, bbox, anchor, width, height, hard=None):  # pylint: disable=arguments-differ
        """``(cls_target, box_target, box_mask)``; see the class docstring."""
        if not is_ndarray(bbox):
            bbox = np.asarray(bbox)
        if not is_ndarray(anchor):
            anchor = np.asarray(anchor)
        check_boxes('bbox', bbox, batched=False)
        check_boxes('anchor', anchor, batched=False)
        for name, value in (('width', width), ('height', height)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not 0 < value < np.inf:
                raise ValueError('{} must be a number > 0, got {!r}'.format(name, value))
        if hard is not None:
            shape = tuple(hard.shape) if hasattr(hard, 'shape') else np.shape(hard)
            if shape != tuple(bbox.shape[:1]):
                raise ValueError('hard must have shape {} (one flag per row of bbox, shape {}), '
                                 'got {}'.format(tuple(bbox.shape[:1]), tuple(bbox.shape), shape))
            if not is_ndarray(hard) or use_numpy(anchor):
                flags = to_numpy(hard)
                padding = (to_numpy(bbox) == -1).all(axis=1)  # GluonCV pads labels with -1
                hard = check_flags('hard', np.where(padding, 0, flags) if padding.any()
                                   else flags)
        if use_numpy(anchor):
            return self._forward_numpy(bbox, anchor, width, height, hard)
        return self._forward_nd(bbox, anchor, width, height, hard)

    # ----------------------------------------------------------------------- numpy backend
    def _forward_numpy(self, bbox, anchor, width, height, hard):
        sampler = self._sampler
        anc = np.ascontiguousarray(to_numpy(anchor, np.float32))
        gt = to_numpy(bbox, np.float32)
        hard = np.zeros(len(gt), bool) if hard is None else to_numpy(hard).astype(bool)
        finite = np.isfinite(gt).all(axis=1)
        keep = finite & ~(gt == -1).all(axis=1)
        if not finite.all():
            warn_once(self, 'gt', '{}: {} ground-truth box(es) with non-finite coordinates '
                      'were dropped (logged once)'.format(type(self).__name__,
                                                          int((~finite).sum())))
        if not keep.all():
            gt, hard = gt[keep], hard[keep]
        n = len(anc)
        grid = self._grid(anc)
        if grid is not None:
            inside = grid.inside(width, height, self._border)
            facts = _grid_facts(grid, inside, gt, hard, sampler._pos_t, sampler._neg_t,
                                self._hard_iof)
        else:
            facts = self._dense_facts(anc, gt, hard, width, height)
        samples = sampler._sample_facts(facts)
        cls_target = samples.copy()
        cls_target[samples == 0] = -1
        cls_target[samples < 0] = 0
        box_target = np.zeros((n, 4), np.float32)
        box_mask = np.zeros((n, 4), np.float32)
        pos = np.flatnonzero(samples > 0)
        if pos.size:
            if facts.match is not None:
                match = facts.match[pos]
            else:
                normal = np.flatnonzero(~hard)
                match = normal[box_iou(anc[pos], gt[normal]).argmax(axis=1)]
            box_target[pos] = _encode(anc[pos], gt[match], self._stds)
            box_mask[pos] = 1
        return tuple(_like_fresh(v, anchor) for v in (cls_target, box_target, box_mask))

    def _dense_facts(self, anc, gt, hard, width, height):
        """Facts the GluonCV way: full IoU matrix, invalid anchors' rows set to -1."""
        sampler = self._sampler
        lo, hi_x, hi_y = _border_limits(width, height, self._border)
        finite = np.isfinite(anc).all(axis=1)
        if not finite.all():
            warn_once(self, 'anchor', '{}: {} anchor(s) with non-finite coordinates are '
                      'ignored (logged once)'.format(type(self).__name__, int((~finite).sum())))
        with np.errstate(invalid='ignore'):
            valid = finite & (anc[:, 0] >= lo) & (anc[:, 1] >= lo) \
                & (anc[:, 2] < hi_x) & (anc[:, 3] < hi_y)
        ious = box_iou(anc, gt) if len(gt) else np.zeros((len(anc), 0), np.float32)
        ious[~valid] = -1
        facts = _dense_facts(ious, hard, sampler._pos_t, sampler._neg_t, valid)
        if self._hard_iof is not None and hard.any():
            iof = box_iof(anc, gt[hard])
            with np.errstate(invalid='ignore'):
                facts.ignore = (iof >= np.float32(self._hard_iof)).any(axis=1)
        return facts

    def _grid(self, anc):
        """The cached grid view of ``anc`` (None if it has no grid layout)."""
        with self._grid_lock:
            for i, (copy, grid) in enumerate(self._grids):
                if copy.shape == anc.shape and np.array_equal(copy, anc):
                    self._grids.append(self._grids.pop(i))
                    return grid
        grid = _AnchorGrid.build(anc)
        with self._grid_lock:
            self._grids.append((anc.copy(), grid))
            del self._grids[:-4]
        return grid

    # ----------------------------------------------------------------------- mx.nd backend
    def _forward_nd(self, bbox, anchor, width, height, hard):
        """The same targets with mx.nd ops on ``anchor``'s context, densely, no host copy.

        Padding and non-finite boxes cannot be dropped without reading them on
        the host, so their IoU columns are zeroed instead (same result).
        """
        nd = mx.nd
        sampler = self._sampler
        ctx = anchor.context
        n, m = anchor.shape[0], bbox.shape[0]
        if n == 0:  # MXNet's operators reject zero-size arrays
            return tuple(like(np.zeros(shape, np.float32), anchor)
                         for shape in ((0,), (0, 4), (0, 4)))
        with autograd.pause():
            anc = anchor.astype('float32')
            x1, y1, x2, y2 = nd.split(anc, 4, axis=-1, squeeze_axis=True)
            lo, hi_x, hi_y = (float(v) for v in _border_limits(width, height, self._border))
            finite = nd.sum((anc - anc) != 0, axis=-1) == 0
            valid = (x1 >= lo) * (y1 >= lo) * (x2 < hi_x) * (y2 < hi_y) * finite
            zeros4 = nd.zeros((n, 4), ctx=ctx)
            if m == 0:
                neg = valid * (0 < sampler._neg_t)
                samples = _subsample_nd(neg.expand_dims(0) * 0, neg.expand_dims(0),
                                        sampler._num_sample, sampler._max_pos)[0]
                return _cls_target_nd(samples), zeros4, zeros4.copy()
            gt = bbox.as_in_context(ctx) if is_ndarray(bbox) else nd.array(bbox, ctx=ctx)
            gt = gt.astype('float32')
            present = (nd.sum(gt == -1, axis=-1) < 4) * (nd.sum((gt - gt) != 0, axis=-1) == 0)
            if hard is None:
                flags = nd.zeros((m,), ctx=ctx)
            elif is_ndarray(hard):
                flags = (hard.as_in_context(ctx) > 0).astype('float32')
            else:
                flags = nd.array(hard.astype(np.float32), ctx=ctx)
            ious = box_iou(anc, gt)
            ious = nd.where(nd.broadcast_like(present.expand_dims(0), ious), ious,
                            nd.zeros_like(ious))
            ious = nd.where(nd.broadcast_like(valid.expand_dims(1), ious), ious,
                            -nd.ones_like(ious))
            ignore = None
            if self._hard_iof is not None:
                iof = box_iof(anc, gt)
                hard_cols = nd.broadcast_like((flags * present).expand_dims(0), iof)
                ignore = nd.max((iof >= self._hard_iof) * hard_cols, axis=-1).expand_dims(0)
            samples, matches = _rule_nd(ious.expand_dims(0), (present * (1 - flags)).expand_dims(0),
                                        valid.expand_dims(0), ignore, sampler._pos_t,
                                        sampler._neg_t, sampler._allow_low_quality,
                                        sampler._num_sample, sampler._max_pos)
            samples, matches = samples[0], matches[0]
            codes = _encode_nd(anc, nd.take(gt, matches), self._stds)
            pos4 = nd.broadcast_like((samples > 0).expand_dims(1), codes)
            return _cls_target_nd(samples), nd.where(pos4, codes, zeros4), pos4.astype('float32')


def _cls_target_nd(samples):
    """Samples (1 / -1 / 0) to GluonCV's class targets (1 / 0 / -1)."""
    return mx.nd.where(samples == 0, -mx.nd.ones_like(samples), (samples + 1) / 2)


def _encode_nd(anchors, gts, stds):
    """:func:`_encode` with mx.nd ops."""
    nd = mx.nd
    ax1, ay1, ax2, ay2 = nd.split(anchors, 4, axis=-1, squeeze_axis=True)
    gx1, gy1, gx2, gy2 = nd.split(gts, 4, axis=-1, squeeze_axis=True)
    aw, ah, gw, gh = ax2 - ax1, ay2 - ay1, gx2 - gx1, gy2 - gy1
    ax, ay = ax1 + aw * 0.5, ay1 + ah * 0.5
    gx, gy = gx1 + gw * 0.5, gy1 + gh * 0.5
    return nd.stack((gx - ax) / aw / stds[0], (gy - ay) / ah / stds[1],
                    nd.log(gw / aw) / stds[2], nd.log(gh / ah) / stds[3], axis=1)
