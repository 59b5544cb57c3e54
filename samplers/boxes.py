"""Boxes, matching, quotas and "keep k at random": the geometry floor every sampler stands on.

Labels follow the package convention (see :mod:`samplers`). Backend dispatch,
conversion and argument checks live in :mod:`samplers.backend`.

Functions whose name ends in ``_F`` take the Gluon ``F`` namespace first and
work on both ``mx.nd`` and ``mx.sym``, for use inside ``hybrid_forward``.
"""
from __future__ import annotations

import numpy as np
import mxnet as mx

# Re-exported while callers move to samplers.backend (issue 11).
from .backend import (POSITIVE, NEGATIVE, IGNORE, is_ndarray, use_numpy,  # noqa: F401
                      force_ndarray_backend, ndarray_backend_forced, to_numpy, like,
                      check_int, check_ratio, check_thresh, check_boxes, check_flags,
                      warn_once)

__all__ = [
    'POSITIVE', 'NEGATIVE', 'IGNORE',
    'box_iou', 'box_iof', 'corner_to_center', 'center_to_corner',
    'best_match', 'best_anchor_mask', 'col_max', 'EPS',
    'keep_random', 'keep_random_F', 'keep_top', 'keep_top_F', 'row_max', 'finite_rows',
    'positive_quota', 'negative_quota', 'negative_quota_F',
    'is_ndarray', 'use_numpy', 'force_ndarray_backend', 'ndarray_backend_forced', 'to_numpy',
    'like',
    'check_int', 'check_ratio', 'check_thresh', 'check_boxes', 'check_flags', 'warn_once',
]

_FMTS = ('corner', 'center')


# --------------------------------------------------------------------------- box formats
def corner_to_center(boxes):
    """(x1, y1, x2, y2) -> (cx, cy, w, h) along the last axis (numpy or NDArray)."""
    if is_ndarray(boxes):
        x1, y1, x2, y2 = mx.nd.split(boxes, 4, axis=-1)
        w, h = x2 - x1, y2 - y1
        return mx.nd.concat(x1 + 0.5 * w, y1 + 0.5 * h, w, h, dim=-1)
    x1, y1, x2, y2 = np.split(boxes, 4, axis=-1)
    w, h = x2 - x1, y2 - y1
    return np.concatenate((x1 + 0.5 * w, y1 + 0.5 * h, w, h), axis=-1)


def center_to_corner(boxes):
    """(cx, cy, w, h) -> (x1, y1, x2, y2) along the last axis (numpy or NDArray)."""
    if is_ndarray(boxes):
        cx, cy, w, h = mx.nd.split(boxes, 4, axis=-1)
        return mx.nd.concat(cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h, dim=-1)
    cx, cy, w, h = np.split(boxes, 4, axis=-1)
    return np.concatenate((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


# --------------------------------------------------------------------------- IoU / IoF
def _overlap_np(a, b, over):
    """Intersection over union ('iou') or over a's area ('iof'), numpy corner boxes.

    a (..., N, 4), b (..., M, 4) -> (..., N, M). Same operations in the same
    float32 order as ``mx.nd.contrib.box_iou``, so results agree bit for bit.
    """
    ax1, ay1, ax2, ay2 = (a[..., :, None, i] for i in range(4))
    bx1, by1, bx2, by2 = (b[..., None, :, i] for i in range(4))
    iw = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    ih = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area_a = np.maximum(ax2 - ax1, 0) * np.maximum(ay2 - ay1, 0)
    if over == 'iou':
        area_b = np.maximum(bx2 - bx1, 0) * np.maximum(by2 - by1, 0)
        denom = area_a + area_b - inter
    else:
        denom = np.broadcast_to(area_a, inter.shape)
    out = np.zeros_like(inter)
    pos = inter > 0
    np.divide(inter, denom, out=out, where=pos)
    # Non-finite coordinates give NaN, not a silent 0 (comparisons above drop NaN).
    bad = ~np.isfinite(a).all(axis=-1)[..., :, None] | ~np.isfinite(b).all(axis=-1)[..., None, :]
    if bad.any():
        out = np.where(bad, np.nan, out).astype(out.dtype)
    return out


def _overlap_nd(a, b, over):
    """NDArray version of :func:`_overlap_np` on the inputs' context, no host copy."""
    nd = mx.nd
    ax1, ay1, ax2, ay2 = nd.split(a.expand_dims(-2), 4, axis=-1)  # (..., N, 1, 1)
    bx1, by1, bx2, by2 = nd.split(b.expand_dims(-3), 4, axis=-1)  # (..., 1, M, 1)
    iw = nd.broadcast_minimum(ax2, bx2) - nd.broadcast_maximum(ax1, bx1)
    ih = nd.broadcast_minimum(ay2, by2) - nd.broadcast_maximum(ay1, by1)
    inter = (nd.relu(iw) * nd.relu(ih)).squeeze(-1)  # (..., N, M)
    area_a = (nd.relu(ax2 - ax1) * nd.relu(ay2 - ay1)).squeeze(-1)
    if over == 'iou':
        area_b = (nd.relu(bx2 - bx1) * nd.relu(by2 - by1)).squeeze(-1)
        denom = nd.broadcast_sub(nd.broadcast_add(area_a, area_b), inter)
    else:
        denom = nd.broadcast_like(area_a, inter)
    pos = inter > 0
    out = nd.where(pos, inter / nd.where(pos, denom, nd.ones_like(denom)), nd.zeros_like(inter))
    # Non-finite coordinates: relu maps NaN to 0 on some builds; mark those pairs NaN explicitly.
    bad_a = (nd.sum((a != a) + (nd.abs(a) == np.inf), axis=-1) > 0).expand_dims(-1)
    bad_b = (nd.sum((b != b) + (nd.abs(b) == np.inf), axis=-1) > 0).expand_dims(-2)
    bad = nd.broadcast_logical_or(bad_a, bad_b)
    return nd.where(bad, nd.full(out.shape, np.nan, ctx=out.context, dtype=out.dtype), out)


def _overlap(a, b, fmt, over, a_name, b_name):
    if fmt not in _FMTS:
        raise ValueError('fmt must be one of {}, got {!r}'.format(_FMTS, fmt))
    ra = check_boxes(a_name, a)
    rb = check_boxes(b_name, b)
    if ra != rb or (ra == 3 and a.shape[0] != b.shape[0]):
        raise ValueError('{} and {} must both be (N, 4)/(M, 4) or (B, N, 4)/(B, M, 4) with the '
                         'same B, got {} and {}'.format(a_name, b_name, tuple(a.shape),
                                                        tuple(b.shape)))
    if is_ndarray(a) != is_ndarray(b):
        raise ValueError('{} and {} must both be numpy arrays or both NDArrays'.format(
            a_name, b_name))
    if fmt == 'center':
        a, b = center_to_corner(a), center_to_corner(b)
    if use_numpy(a):
        an, bn = to_numpy(a), to_numpy(b)
        dtype = np.float64 if np.float64 in (an.dtype, bn.dtype) else np.float32
        return like(_overlap_np(an.astype(dtype, copy=False), bn.astype(dtype, copy=False),
                                over), a)
    dtype = 'float64' if np.float64 in (a.dtype, b.dtype) else 'float32'
    return _overlap_nd(a.astype(dtype, copy=False), b.astype(dtype, copy=False), over)


def box_iou(a, b, fmt='corner'):
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Parameters
    ----------
    a : (N, 4) or (B, N, 4) numpy array or NDArray
    b : (M, 4) or (B, M, 4), same kind and rank as ``a`` (and same B)
    fmt : 'corner' (x1, y1, x2, y2, the default) or 'center' (cx, cy, w, h)

    Returns
    -------
    (N, M) or (B, N, M), float32 (float64 if either input is float64), same
    kind and context as ``a``. For 2-D corner boxes it equals
    ``mx.nd.contrib.box_iou``; the batched form pairs image b of ``a`` with
    image b of ``b`` only. Pairs that do not intersect, including zero-area
    and inverted boxes, give 0; a box with a non-finite coordinate gives NaN,
    never a silent number. N or M may be 0 (numpy input).
    """
    return _overlap(a, b, fmt, 'iou', 'a', 'b')


def box_iof(a, b, fmt='corner'):
    """Intersection over the area of the first box: ``|a & b| / |a|``.

    Same shapes, kinds and edge rules as :func:`box_iou`; a zero-area ``a``
    box gives 0. Use it to test how much of an anchor (``a``) lies inside an
    ignore region or hard box (``b``).
    """
    return _overlap(a, b, fmt, 'iof', 'a', 'b')


# --------------------------------------------------------------------------- matching
def best_match(ious):
    """Best ground truth per anchor: ``(max_iou, argmax)`` over the last axis.

    ``ious`` (..., N, M) numpy array or NDArray. One pass for the argmax, one
    gather for the value. With M = 0 the anchor overlaps nothing: max 0, index
    0. A row holding NaN gives NaN (numpy backend), so callers can ignore it.
    Returns arrays of shape (..., N) of the input's kind; the index is int64
    for numpy and float32 (MXNet's index type) for NDArrays.
    """
    if use_numpy(ious):
        arr = to_numpy(ious)
        if arr.shape[-1] == 0:
            zero = np.zeros(arr.shape[:-1], dtype=arr.dtype)
            return like(zero, ious), like(zero.astype(np.int64), ious)
        idx = np.argmax(arr, axis=-1)
        best = np.take_along_axis(arr, idx[..., None], axis=-1)[..., 0]
        return like(best, ious), like(idx, ious)
    idx = mx.nd.argmax(ious, axis=-1)
    best = mx.nd.max(ious, axis=-1)
    nan_row = mx.nd.sum(ious != ious, axis=-1) > 0
    best = mx.nd.where(nan_row, best * np.nan, best)
    return best, idx


#: Tie tolerance of the best-anchor rule: GluonCV 0.10.5's ``np.spacing(np.float32(1))``.
EPS = float(np.spacing(np.float32(1.0)))


def col_max(a):
    """``a.max(axis=0)`` for a C-contiguous (N, M) numpy array, fast when M is small.

    numpy reduces axis 0 row by row; folding k rows into one long row first
    makes its inner loop long (about 10x faster for M around 10).
    """
    n, m = a.shape
    out = np.full(m, -np.inf, dtype=a.dtype)
    k = max(1, 4096 // max(m, 1))
    r = n // k * k
    if r:
        np.maximum(out, a[:r].reshape(-1, k * m).max(axis=0).reshape(k, m).max(axis=0), out=out)
    if r < n:
        np.maximum(out, a[r:].max(axis=0), out=out)
    return out


def best_anchor_mask(ious, eps=EPS, valid_gt=None, valid_anchor=None, cols_max=None,
                     row_best=None):
    """Anchors that are (within ``eps`` of) the best anchor of some ground truth.

    Parameters
    ----------
    ious : (N, M) numpy array, or (..., N, M) NDArray
    eps : tie tolerance (default :data:`EPS`, GluonCV's)
    valid_gt : (M,) / (..., M) 0/1, optional: only these boxes take part (e.g. non-hard)
    valid_anchor : (N,) / (..., N) 0/1, optional: only these anchors can be a box's best
    cols_max, row_best : numpy only, optional: ``ious`` column maxima over the valid
        anchors and each row's max over the valid boxes, when the caller has them

    Returns
    -------
    (N,) boolean (numpy) or (..., N) 0/1 (NDArray). Anchor i is marked when
    ``0 < ious[i, j]`` and ``ious[i, j] + eps > max_k ious[k, j]`` for some
    valid j: GluonCV 0.10.5's tie rule (all tied anchors marked), except that
    a box no valid anchor overlaps marks nothing (GluonCV then marks every
    zero-IoU anchor). The numpy path looks only at rows whose max comes
    within eps of the smallest column max, so it costs about one pass.
    """
    if not use_numpy(ious):
        overlap, source = ious > 0, ious
        if valid_anchor is not None:
            vmask = (valid_anchor > 0).expand_dims(-1).astype(ious.dtype)
            source = mx.nd.where(mx.nd.broadcast_like(vmask, ious), ious,
                                 mx.nd.ones_like(ious) * -2)
            overlap = mx.nd.broadcast_mul(overlap, vmask)
        cmax = mx.nd.max(source, axis=-2, keepdims=True)
        hit = overlap * mx.nd.broadcast_greater(ious + eps, cmax)
        if valid_gt is not None:
            hit = mx.nd.broadcast_mul(hit, (valid_gt > 0).expand_dims(-2).astype(hit.dtype))
        return mx.nd.max(hit, axis=-1)
    arr = to_numpy(ious)
    n, m = arr.shape
    best = np.zeros(n, dtype=bool)
    if n == 0 or m == 0:
        return like(best, ious)
    if valid_anchor is not None:
        valid_anchor = to_numpy(valid_anchor).astype(bool)
        if not valid_anchor.all():
            arr = np.where(valid_anchor[:, None], arr, arr.dtype.type(-1))
            cols_max = row_best = None
    cols = (np.arange(m) if valid_gt is None
            else np.flatnonzero(to_numpy(valid_gt).astype(bool)))
    if cols_max is None:
        cols_max = col_max(arr)
    if row_best is None:
        row_best = row_max(arr[:, cols]) if cols.size else np.zeros(n, arr.dtype)
    bar = np.full(m, np.inf, dtype=arr.dtype)  # boxes outside cols never hit
    live = cols[cols_max[cols] > 0]
    if live.size == 0:
        return like(best, ious)
    bar[live] = cols_max[live]
    cand = np.flatnonzero(row_best + arr.dtype.type(eps) > bar[live].min())
    tiny = bool((bar < eps).any())  # there "+ eps > bar" alone would let IoU 0 through
    for start in range(0, cand.size, 65536):  # bounded temporaries
        rows = cand[start:start + 65536]
        sub = arr[rows]
        hit = sub > 0 if tiny else None
        sub += arr.dtype.type(eps)
        hit = (sub > bar) if hit is None else (hit & (sub > bar))
        best[rows[np.flatnonzero(hit) // m]] = True
    return like(best, ious)


# --------------------------------------------------------------------------- quotas
def positive_quota(num_sample, pos_ratio):
    """Most positives kept per image: ``round(pos_ratio * num_sample)`` (Python rounding)."""
    return int(round(pos_ratio * num_sample))


def negative_quota(num_sample, num_pos_kept, neg_ratio, fill_negative=True):
    """Most negatives kept per image.

    ``int(neg_ratio * num_sample)``; with ``fill_negative`` negatives may also
    take the slots positives left free: ``max(num_sample - num_pos_kept,
    int(neg_ratio * num_sample))``. ``num_pos_kept`` may be an int or an array
    (one entry per image); the result has the same form.
    """
    fixed = int(neg_ratio * num_sample)
    if not fill_negative:
        return fixed if np.isscalar(num_pos_kept) else np.full_like(num_pos_kept, fixed)
    return np.maximum(num_sample - num_pos_kept, fixed)


# --------------------------------------------------------------------------- keep k at random
def keep_random(mask, k):
    """Keep at most ``k`` of the True entries of each row of ``mask``, uniformly at random.

    Parameters
    ----------
    mask : (N,) or (B, N) boolean numpy array, or 0/1 NDArray
    k : int, or (B,) array of per-row limits (negative counts as 0)

    Returns
    -------
    Mask of the same shape and kind: a subset of ``mask`` with
    ``min(k, count)`` entries per row, every subset of that size equally likely.
    Rows with at most ``k`` candidates are returned unchanged. numpy draws
    from ``np.random``; NDArrays draw from MXNet's RNG on their own context
    (:func:`keep_random_F`), so no data visits the host.
    """
    if is_ndarray(mask) and not use_numpy(mask):
        squeeze = mask.ndim == 1
        m = mask.expand_dims(0) if squeeze else mask
        kk = k if is_ndarray(k) else mx.nd.array(np.reshape(np.asarray(k, 'float32'), (-1,)),
                                                 ctx=mask.context)
        kk = kk.astype('float32').reshape((-1, 1))
        if kk.shape[0] != m.shape[0]:
            kk = mx.nd.broadcast_to(kk, shape=(m.shape[0], 1))
        out = keep_random_F(mx.nd, m, kk)
        return out[0] if squeeze else out
    arr = to_numpy(mask).astype(bool)
    if arr.ndim == 1:
        return like(_keep_random_row(arr, int(np.asarray(to_numpy(k)).reshape(-1)[0])
                                     if not np.isscalar(k) else int(k)), mask)
    ks = np.broadcast_to(np.asarray(to_numpy(k) if is_ndarray(k) else k).reshape(-1),
                         (arr.shape[0],))
    out = np.stack([_keep_random_row(row, int(kr)) for row, kr in zip(arr, ks)]) \
        if arr.shape[0] else arr.copy()
    return like(out, mask)


def _keep_random_row(row, k):
    idx = np.flatnonzero(row)
    if idx.size <= k:
        return row.copy()
    out = np.zeros_like(row)
    if k > 0:
        # k smallest of uniform keys: a uniform k-subset, O(count) instead of a shuffle.
        keys = np.random.random(idx.size)
        out[idx[np.argpartition(keys, k - 1)[:k]]] = True
    return out


def keep_top_F(F, scores, mask, k):
    """Per row, the ``k`` highest ``scores`` among ``mask``, for ``hybrid_forward``.

    ``scores`` (B, N) float, ``mask`` (B, N) 0/1, ``k`` (B, 1) per-row counts
    (a k above the row's number of candidates keeps them all). Rank once, compare with
    each row's count: one sort finds each row's k-th largest score ``t``;
    everything above ``t`` is kept, and entries equal to ``t`` are kept from
    the lowest index up until the row holds ``k``. Masked-out entries must
    not be +inf. Returns a (B, N) float32 0/1 array.
    """
    mask = F.cast(mask, 'float32')
    # k above the row's count would index past the row (and wrap past 2**31 in pick).
    k = F.minimum(F.cast(k, 'float32'), F.sum(mask, axis=1, keepdims=True))
    key = F.where(mask > 0, scores, F.ones_like(scores) * -np.inf)
    ranked = F.sort(key, axis=1, is_ascend=False)
    kth = F.pick(ranked, F.reshape(F.relu(k - 1), shape=(-1,)), axis=1, keepdims=True)
    above = F.cast(F.broadcast_greater(key, kth), 'float32') * mask
    tied = F.cast(F.broadcast_equal(key, kth), 'float32') * mask
    room = k - F.sum(above, axis=1, keepdims=True)
    return above + tied * F.broadcast_lesser_equal(F.cumsum(tied, axis=1), room)


def keep_top(scores, mask, k):
    """numpy twin of :func:`keep_top_F`: boolean (B, N); ``k`` (B,) ints."""
    key = np.where(mask, scores, -np.inf)
    num_rows, num = key.shape
    if num == 0:
        return np.zeros(key.shape, dtype=bool)
    k = np.asarray(k).reshape(-1)
    ranked = np.sort(key, axis=1)
    kth = ranked[np.arange(num_rows), np.clip(num - k, 0, num - 1)][:, None]
    above = mask & (key > kth)
    tied = mask & (key == kth)
    room = k - above.sum(axis=1)
    crowded = np.flatnonzero(tied.sum(axis=1) > room)  # usually none: ties are rare
    tied[crowded] &= np.cumsum(tied[crowded], axis=1) <= room[crowded, None]
    return above | tied


def finite_rows(a):
    """Whether each row (last axis) of numpy ``a`` is all finite; boolean, shape ``a.shape[:-1]``.

    One BLAS sum per row finds the rows that may hold NaN/inf (a non-finite
    sum); only those are checked element by element, since a sum of finite
    values can overflow too. Much faster than ``np.isfinite(a).all(-1)`` for a
    short last axis.
    """
    a = np.asarray(a)
    if a.shape[-1] == 0:
        return np.ones(a.shape[:-1], dtype=bool)
    rows = a.reshape(-1, a.shape[-1])
    with np.errstate(over='ignore', invalid='ignore'):
        ok = np.isfinite(rows @ np.ones(rows.shape[1], rows.dtype))
    maybe_bad = np.flatnonzero(~ok)
    ok[maybe_bad] = np.isfinite(rows[maybe_bad]).all(axis=1)
    return ok.reshape(a.shape[:-1])


def row_max(a):
    """Max over the last axis; a loop over a short last axis beats ``a.max(-1)`` 5x."""
    if a.shape[-1] > 64:
        return a.max(axis=-1)
    out = a[..., 0].copy()
    for j in range(1, a.shape[-1]):
        np.maximum(out, a[..., j], out=out)
    return out


def keep_random_F(F, mask, k, keys=None):
    """Symbolic-friendly :func:`keep_random` for ``hybrid_forward``.

    ``mask`` (B, N) 0/1 and ``k`` (B, 1) per-row limits, both ``F`` arrays.
    Each candidate gets a uniform random key on the input's context;
    the ``k`` lowest keys of each row are kept (:func:`keep_top_F` on the
    negated keys). Returns a (B, N) 0/1 float32 array.

    ``keys`` (B, N), optional: the uniform keys to use instead of drawing them.
    Pass keys drawn in the graph when this runs inside a CustomOp: its forward
    runs in MXNet's worker thread, whose generator ``mx.random.seed`` does not
    reset (MXNet 1.9), so keys drawn there would not reproduce under a seed.
    """
    mask = (mask > 0).astype('float32')
    if keys is None:
        keys = F.random.uniform_like(mask)
    # The k lowest uniform keys are a uniform k-subset: keep the top k of -key.
    return keep_top_F(F, -keys.astype('float32'), mask, k.astype('float32'))


def negative_quota_F(F, num_sample, num_pos_kept, neg_ratio, fill_negative=True):
    """:func:`negative_quota` for an ``F`` array of kept positives (B, 1), on its context."""
    fixed = int(neg_ratio * num_sample)
    if not fill_negative:
        return F.ones_like(num_pos_kept) * fixed
    return F.maximum(num_sample - num_pos_kept, fixed)


# --------------------------------------------------------------------------- branch i9a
def finite_rows_mask(a):
    """float32 0/1 (shape ``a.shape[:-1]``): each row of ``a`` is all finite.

    numpy: :func:`finite_rows`; NDArray: ``mx.nd`` ops on ``a``'s context, no host copy.
    """
    if is_ndarray(a):
        return mx.nd.min((a == a) * (mx.nd.abs(a) != np.inf), axis=-1).astype('float32')
    return finite_rows(a).astype(np.float32)


def keep_lowest_keys(mask, k, keys=None):
    """Per row, the ``k`` candidates of ``mask`` with the lowest ``keys``: float32 0/1.

    ``mask`` (B, N) 0/1, ``k`` (B, 1) counts no larger than each row's candidates, ``keys``
    (B, N) uniform numbers. Lowest uniform keys make a uniformly random k-subset. numpy
    input without ``keys`` draws from ``np.random`` (:func:`keep_random`); NDArrays need
    ``keys`` and stay on their context (:func:`keep_random_F`).
    """
    if is_ndarray(mask):
        return keep_random_F(mx.nd, mask, k, keys)
    cand = np.asarray(mask) > 0
    k = np.asarray(k).reshape(-1).astype(np.int64)
    kept = keep_random(cand, k) if keys is None else keep_top(-np.asarray(keys), cand, k)
    return kept.astype(np.float32)


def box_iof_F(F, a, b):
    """:func:`box_iof` for ``hybrid_forward``: ``|a & b| / |a|``.

    ``a`` (B, K, 4), ``b`` (B, M, 4) corner boxes -> (B, K, M); an ``a`` box of zero area gives 0. Works on ``mx.nd`` and ``mx.sym``.
    """
    ax1, ay1, ax2, ay2 = F.split(F.expand_dims(a, axis=2), num_outputs=4, axis=-1)
    bx1, by1, bx2, by2 = F.split(F.expand_dims(b, axis=1), num_outputs=4, axis=-1)
    iw = F.relu(F.broadcast_minimum(ax2, bx2) - F.broadcast_maximum(ax1, bx1))
    ih = F.relu(F.broadcast_minimum(ay2, by2) - F.broadcast_maximum(ay1, by1))
    inter = F.squeeze(iw * ih, axis=-1)                                  # (B, K, M)
    area = F.squeeze(F.relu(ax2 - ax1) * F.relu(ay2 - ay1), axis=-1)     # (B, K, 1)
    return F.broadcast_div(inter, F.broadcast_maximum(area, F.ones_like(area) * 1e-12))

# ------------------------------------------------------------- i10: keep the top k, any backend
def keep_top_mask(o, scores, mask, k):
    """Per row, the ``k`` highest ``scores`` among a 0/1 ``mask``, on the backend of ``o``.

    ``o`` is a namespace of :mod:`samplers.backend` (``NUMPY_OPS``, ``ND_OPS``
    or ``SYM_OPS``); ``scores`` and ``mask`` (B, N), ``k`` (B, 1) counts (floats
    allowed, capped at the row's number of candidates). Returns a (B, N)
    float32 0/1 mask: :func:`keep_top` on numpy, :func:`keep_top_F` otherwise
    (same rule: ties go to the lower index).
    """
    if o.name == 'numpy':
        mask = np.asarray(mask) > 0
        k = np.minimum(np.asarray(k, np.float64).reshape(-1), mask.shape[1])
        return keep_top(scores, mask, k.astype(np.int64)).astype(np.float32)
    return keep_top_F(mx.nd if o.name == 'ndarray' else mx.sym, scores, mask, k)
