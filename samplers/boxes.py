"""Boxes, matching and encoding: the floor every sampler stands on.

Labels follow the package convention (see :mod:`samplers`). The array
protocol lives in :mod:`samplers.backend`, conversion in :mod:`samplers._arrays`, argument
checks in :mod:`samplers.checks`; quotas and keep-k in :mod:`samplers.draws`.

What each function takes is in its docstring; in short:

* box formats, IoU/IoF, encodings, :func:`best_match` and
  :func:`match_anchors` take numpy arrays or NDArrays (on any context) and
  return the input's kind;
* :func:`col_max`, :func:`row_max` and :func:`scan_rows` are numpy-only speed helpers;
  :func:`finite_rows` takes either kind;
* :func:`box_iof_F` takes Gluon's ``F`` (``mx.nd`` or ``mx.sym``), for use
  inside ``hybrid_forward``.
"""
from __future__ import annotations

import numpy as np
import mxnet as mx

from . import backend
from ._arrays import (POSITIVE, NEGATIVE, IGNORE, Array, finite_rows_F, finite_rows_numpy,
                      is_ndarray, like, neg_inf_like_F, to_numpy, use_numpy)
from .checks import check_boxes, check_one_context

__all__ = [
    'box_iou', 'box_iof', 'corner_to_center', 'center_to_corner',
    'best_match', 'match_anchors', 'INVALID_IOU', 'best_anchor_mask', 'near_best', 'col_max', 'EPS',
    'encode_boxes', 'cls_target_from_labels', 'labels_from_cls_target',
    'CLS_POSITIVE', 'CLS_NEGATIVE', 'CLS_IGNORE', 'row_max', 'finite_rows', 'too_small',
    'scan_rows', 'RowScan',
]

_FMTS = ('corner', 'center')

#: The IoU written for an anchor that may not be labelled (GluonCV's -1 for anchors crossing the
#: image border): below every real IoU, so such a row is never best and sets no bar.
INVALID_IOU = -1.0
#: Stands for the IoU of a box that does not take part (not in ``valid_gt``): below INVALID_IOU.
_LEFT_OUT = -2.0


# --------------------------------------------------------------------------- box formats
def _center_columns(be, boxes):
    """``(cx, cy, w, h)`` columns, each (..., 1), of (..., 4) corner boxes."""
    x1, y1, x2, y2 = be.columns(boxes)
    w, h = x2 - x1, y2 - y1
    return x1 + 0.5 * w, y1 + 0.5 * h, w, h


def corner_to_center(boxes: Array) -> Array:
    """(x1, y1, x2, y2) -> (cx, cy, w, h) along the last axis (numpy or NDArray, kind kept)."""
    be = backend.of_kind(boxes)
    return be.concat(list(_center_columns(be, boxes)))


def center_to_corner(boxes: Array) -> Array:
    """(cx, cy, w, h) -> (x1, y1, x2, y2) along the last axis (numpy or NDArray, kind kept)."""
    be = backend.of_kind(boxes)
    cx, cy, w, h = be.columns(boxes)
    return be.concat([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h])


def too_small(boxes: Array, min_size: float) -> Array:
    """(..., 4) corner boxes -> (...) whether the shorter side ``min(x2 - x1, y2 - y1)`` is
    below ``min_size``: numpy bool, or float32 0/1 NDArray on the boxes' context (nothing is
    read on the host). A box with a NaN side is not too small. ``min_size`` is a
    :func:`samplers.checks.check_min_size` value.
    """
    be = backend.of_kind(boxes)
    x1, y1, x2, y2 = be.unstack(boxes)
    with np.errstate(invalid='ignore'):
        return be.minimum(x2 - x1, y2 - y1) < min_size


# --------------------------------------------------------------------------- IoU / IoF
def _overlap_pairs(a, b, over):
    """Intersection over union ('iou') or over a's area ('iof') of corner boxes.

    a (..., N, 4), b (..., M, 4), both of one backend -> (..., N, M). The
    operations and their float order are those of ``mx.nd.contrib.box_iou``,
    so the numpy backend agrees with it bit for bit.
    """
    be = backend.of(a)
    ax1, ay1, ax2, ay2 = (be.expand(c, -1) for c in be.unstack(a))   # (..., N, 1)
    bx1, by1, bx2, by2 = (be.expand(c, -2) for c in be.unstack(b))   # (..., 1, M)
    iw = be.minimum(ax2, bx2) - be.maximum(ax1, bx1)
    ih = be.minimum(ay2, by2) - be.maximum(ay1, by1)
    inter = be.maximum(iw, 0) * be.maximum(ih, 0)
    area_a = be.maximum(ax2 - ax1, 0) * be.maximum(ay2 - ay1, 0)
    denom = area_a
    if over == 'iou':
        denom = area_a + be.maximum(bx2 - bx1, 0) * be.maximum(by2 - by1, 0) - inter
    out = be.divide_where(inter, denom, inter > 0)
    # Non-finite coordinates give NaN, never a silent number (the comparisons drop NaN).
    return be.nan_where(out, be.expand(1 - be.mask(finite_rows(a)), -1),
                        be.expand(1 - be.mask(finite_rows(b)), -2))


def _overlap(a, b, fmt, over, a_name, b_name):
    """Checked :func:`_overlap_pairs` for :func:`box_iou` / :func:`box_iof`."""
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
    check_one_context([(a_name, a), (b_name, b)])
    dtype = np.float64 if np.float64 in (np.dtype(a.dtype), np.dtype(b.dtype)) else np.float32
    if not use_numpy(a) and (a.size == 0 or b.size == 0):  # MXNet rejects zero-size arrays
        return like(np.zeros(tuple(a.shape[:-1]) + (b.shape[-2],), dtype), a)
    corner = center_to_corner if fmt == 'center' else (lambda boxes: boxes)
    if use_numpy(a):
        return like(_overlap_pairs(corner(to_numpy(a, dtype)), corner(to_numpy(b, dtype)),
                                   over), a)
    a, b = corner(a), corner(b)
    return _overlap_pairs(a.astype(dtype, copy=False), b.astype(dtype, copy=False), over)


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
    never a silent number. N or M may be 0, on every path. NDArrays on two
    contexts raise ``ValueError``, on every path (MXNet refuses them on a GPU).
    """
    return _overlap(a, b, fmt, 'iou', 'a', 'b')


def box_iof(a, b, fmt='corner'):
    """Intersection over the area of the first box: ``|a & b| / |a|``.

    Same shapes, kinds and edge rules as :func:`box_iou`; a zero-area ``a``
    box gives 0. Use it to test how much of an anchor (``a``) lies inside an
    ignore region or hard box (``b``).
    """
    return _overlap(a, b, fmt, 'iof', 'a', 'b')


def box_iof_F(F, a, b):
    """:func:`box_iof` for ``hybrid_forward``: ``|a & b| / |a|``.

    ``a`` (B, K, 4), ``b`` (B, M, 4) corner boxes -> (B, K, M); an ``a`` box of zero area
    gives 0. Works on ``mx.nd`` and ``mx.sym``: symbols do not broadcast through ``-`` and
    ``*``, so :func:`_overlap_pairs` cannot serve graphs.
    """
    ax1, ay1, ax2, ay2 = F.split(F.expand_dims(a, axis=2), num_outputs=4, axis=-1)
    bx1, by1, bx2, by2 = F.split(F.expand_dims(b, axis=1), num_outputs=4, axis=-1)
    iw = F.relu(F.broadcast_minimum(ax2, bx2) - F.broadcast_maximum(ax1, bx1))
    ih = F.relu(F.broadcast_minimum(ay2, by2) - F.broadcast_maximum(ay1, by1))
    inter = F.squeeze(iw * ih, axis=-1)                                  # (B, K, M)
    area = F.squeeze(F.relu(ax2 - ax1) * F.relu(ay2 - ay1), axis=-1)     # (B, K, 1)
    return F.broadcast_div(inter, F.broadcast_maximum(area, F.ones_like(area) * 1e-12))


# --------------------------------------------------------------------------- matching
def best_match(ious, valid_gt=None):
    """Best ground truth per anchor: ``(max_iou, argmax)`` over the last axis.

    ``ious`` (..., N, M) numpy array or NDArray; ``valid_gt`` (M,) / (..., M)
    0/1, optional: only these boxes take part. One pass for the argmax, one
    gather for the value. With M = 0 the anchor overlaps nothing: max 0,
    index 0; with no valid box the max is -inf (numpy) or -2 (NDArray), index
    0. A row holding NaN gives NaN, so callers can ignore it. Returns arrays
    of shape (..., N) of the input's kind; the index is int64 for numpy and
    float32 (MXNet's index type) for NDArrays.
    """
    if use_numpy(ious):
        arr = to_numpy(ious)
        cols = None if valid_gt is None else np.flatnonzero(to_numpy(valid_gt).astype(bool))
        if cols is not None and cols.size < arr.shape[-1]:
            if cols.size == 0:
                return (like(np.full(arr.shape[:-1], -np.inf, arr.dtype), ious),
                        like(np.zeros(arr.shape[:-1], np.int64), ious))
            best, idx = best_match(arr[..., cols])
            return like(best, ious), like(cols[idx], ious)
        if arr.shape[-1] == 0:
            zero = np.zeros(arr.shape[:-1], dtype=arr.dtype)
            return like(zero, ious), like(zero.astype(np.int64), ious)
        idx = np.argmax(arr, axis=-1)
        best = np.take_along_axis(arr, idx[..., None], axis=-1)[..., 0]
        return like(best, ious), like(idx, ious)
    if valid_gt is not None:
        ious = backend.ND.where(backend.ND.expand(valid_gt > 0, -2), ious, _LEFT_OUT)
    idx = mx.nd.argmax(ious, axis=-1)
    best = mx.nd.max(ious, axis=-1)
    nan_row = mx.nd.sum(ious != ious, axis=-1) > 0
    best = mx.nd.where(nan_row, best * np.nan, best)
    return best, idx


#: Tie tolerance of the best-anchor rule: GluonCV 0.10.5's ``np.spacing(np.float32(1))``.
EPS = float(np.spacing(np.float32(1.0)))


def near_best(ious, bar, eps=EPS):
    """The best-anchor test: ``(ious > 0) * (ious + eps > bar)``, numpy or NDArray.

    ``bar`` is the best IoU of each box (broadcast against ``ious``); +inf
    marks a box that makes no best anchor. Boolean for numpy, 0/1 for NDArrays.
    """
    if isinstance(ious, np.ndarray) and ious.size and np.min(bar) >= eps:
        # Every bar >= eps: then ``ious + eps > bar`` alone implies ``ious > 0`` (rounding is
        # monotone and 0 + eps == eps), so numpy skips one comparison and one temporary.
        return ious + ious.dtype.type(eps) > bar
    return (ious > 0) * (ious + eps > bar)


def match_anchors(ious, valid_gt=None, eps=EPS, scan=None):
    """Each anchor's best box, and whether the anchor is the best one of some box.

    Parameters
    ----------
    ious : (N, M) numpy array, or (..., N, M) NDArray, finite
    valid_gt : (M,) / (..., M) 0/1, optional: only these boxes take part (e.g. non-hard)
    eps : tie tolerance (default :data:`EPS`, GluonCV's)
    scan : numpy only, optional: :func:`scan_rows` of ``ious`` if the caller has it

    Returns
    -------
    ``(max_iou, match, best)``, each (..., N): the best IoU with a valid box
    and its index (as :func:`best_match`; -inf or -2 and index 0 without a
    valid box), and the best-anchor mask, boolean (numpy) or 0/1 (NDArray).
    Anchor i is a best anchor when ``near_best(ious[i, j], max_k ious[k, j])``
    for some valid j: GluonCV 0.10.5's tie rule (every anchor within ``eps``
    of a box's best counts), except that a box no anchor overlaps marks
    nothing (GluonCV then marks every zero-IoU anchor). A row of negative IoUs
    (an invalid anchor) is never best and sets no bar.
    """
    if not use_numpy(ious):
        max_iou, match = best_match(ious, valid_gt)
        bar = mx.nd.max(ious, axis=-2, keepdims=True)
        if valid_gt is not None:
            bar = backend.ND.where(backend.ND.expand(valid_gt > 0, -2), bar,
                                   -neg_inf_like_F(mx.nd, bar))
        return max_iou, match, mx.nd.max(near_best(ious, bar, eps), axis=-1)
    # numpy: only rows whose best comes within eps of the lowest bar can hold a best anchor.
    arr = to_numpy(ious)
    n, m = arr.shape
    valid = None if valid_gt is None else to_numpy(valid_gt).astype(bool)
    if scan is None and n and m and arr.dtype.kind == 'f' and arr.flags['C_CONTIGUOUS']:
        scan = scan_rows(arr)
    if scan is not None and (valid is None or valid.all()):
        max_iou, match = like(scan.row_max, ious), like(scan.row_arg, ious)
    else:
        max_iou, match = best_match(ious, valid_gt)
    best = np.zeros(n, dtype=bool)
    if n == 0 or m == 0:
        return max_iou, match, best
    bar = col_max(arr) if scan is None else scan.col_max
    live = bar > 0
    if valid is not None:
        live &= valid
    if not live.any():
        return max_iou, match, best
    bar = np.where(live, bar, np.inf).astype(arr.dtype)
    cand = np.flatnonzero(to_numpy(max_iou) + arr.dtype.type(eps) > bar.min())
    step = max(1, 2 ** 17 // m)  # temporaries of ~0.5 MB: reused, not page-faulted in anew
    for start in range(0, cand.size, step):
        rows = cand[start:start + step]
        best[rows[np.flatnonzero(near_best(arr[rows], bar, eps)) // m]] = True
    return max_iou, match, best


def best_anchor_mask(ious, eps=EPS, valid_gt=None, valid_anchor=None):
    """The best-anchor mask of :func:`match_anchors`, (N,) boolean or (..., N) 0/1 NDArray.

    ``valid_anchor`` (N,) / (..., N) 0/1, optional: only these anchors can be
    a box's best (the others are treated as invalid rows).
    """
    if valid_anchor is not None:
        be = backend.of(ious)
        ious = be.where(be.expand(valid_anchor > 0, -1), ious, INVALID_IOU)
    return match_anchors(ious, valid_gt, eps)[2]


# ------------------------------------------------------------------------ encoding and class codes
def encode_boxes(anchors: Array, gts: Array, stds=(1., 1., 1., 1.)) -> Array:
    """Normalized center offsets of ``gts`` from ``anchors``: the RPN and SSD box target.

    ``anchors`` and ``gts`` (..., 4) corners of one shape, both numpy or both
    NDArrays; ``stds`` 4 numbers (default ones). Returns (..., 4) of the
    inputs' kind and dtype: ``((gx - ax) / aw / std0, (gy - ay) / ah / std1,
    log(gw / aw) / std2, log(gh / ah) / std3)`` of centers and sizes (no +1),
    GluonCV's encoding. A zero-width anchor or box gives inf or NaN (numpy
    without a warning).
    """
    be = backend.of_kind(anchors)
    ax, ay, aw, ah = _center_columns(be, anchors)
    gx, gy, gw, gh = _center_columns(be, gts)
    return be.concat([(gx - ax) / aw / stds[0], (gy - ay) / ah / stds[1],
                      be.log(gw / aw) / stds[2], be.log(gh / ah) / stds[3]])


#: GluonCV's RPN class-target codes (``cls_target``) for our labels.
CLS_POSITIVE, CLS_NEGATIVE, CLS_IGNORE = 1, 0, -1
_CLS_CODES = ((POSITIVE, CLS_POSITIVE), (NEGATIVE, CLS_NEGATIVE), (IGNORE, CLS_IGNORE))


def _recode(values, table):
    """float32 ``sum(to * (values == frm))`` over the (frm, to) pairs, numpy or NDArray."""
    if not is_ndarray(values):  # the same sum, written into one array: no float temporaries
        values = np.asarray(values)
        out = np.zeros(values.shape, np.float32)
        for frm, to in table:
            if to:
                np.copyto(out, np.float32(to), where=values == frm)
        return out
    return sum(to * backend.ND.mask(values == frm) for frm, to in table if to)


def cls_target_from_labels(labels):
    """Labels (1 / -1 / 0) -> RPN ``cls_target`` codes (1 / 0 / -1), float32, same kind."""
    return _recode(labels, _CLS_CODES)


def labels_from_cls_target(cls_target):
    """RPN ``cls_target`` codes (1 / 0 / -1) -> labels (1 / -1 / 0), float32, same kind.

    The inverse of :func:`cls_target_from_labels`; any other code becomes IGNORE.
    """
    return _recode(cls_target, [(code, label) for label, code in _CLS_CODES])


# ------------------------------------------------------------- finite rows and numpy speed helpers
def finite_rows(a):
    """Whether each row (last axis) of ``a`` is all finite, shape ``a.shape[:-1]``: numpy
    boolean on the numpy backend (:func:`~samplers._arrays.finite_rows_numpy`), else 0/1 on
    the NDArray's context (:func:`~samplers._arrays.finite_rows_F`)."""
    if not use_numpy(a):
        return finite_rows_F(mx.nd, a)
    return finite_rows_numpy(to_numpy(a))


def finite_rows_mask(a):
    """:func:`finite_rows` as float32 0/1, by the input's kind: an NDArray stays on its context.

    For rules that run in MXNet's worker threads, where :func:`samplers.force_ndarray_backend` of
    the caller's thread is not seen.
    """
    return backend.of_kind(a).finite_rows(a)


def col_max(a):
    """``a.max(axis=0)`` for a C-contiguous (N, M) numpy array, fast when M is small.

    numpy reduces axis 0 row by row; folding k rows into one long row first
    makes its inner loop long (docs/bench.md, micro).
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


#: Elements per block of :func:`scan_rows`: about 1 MB of float32, which stays in cache while
#: every statistic is read from it (the matrix itself is read from memory once).
_SCAN_BLOCK = 2 ** 18


class RowScan:
    """What :func:`scan_rows` reads from an (N, M) matrix: ``row_max`` (N,), ``row_arg`` (N,)
    int64 (first index of the maximum), ``col_max`` (M,) and ``low`` (the smallest entry).
    NaN wins every maximum and the minimum, as in numpy's reductions."""
    __slots__ = ('row_max', 'row_arg', 'col_max', 'low')

    def __init__(self, row_max, row_arg, col_max, low):
        self.row_max, self.row_arg, self.col_max, self.low = row_max, row_arg, col_max, low

    def finite(self):
        """Whether every entry of the matrix is finite (no NaN, no +-inf)."""
        return bool(np.isfinite(self.low) and np.isfinite(self.col_max).all())


def scan_rows(a):
    """:class:`RowScan` of a C-contiguous (N, M) float numpy array (N, M >= 1) in one pass.

    The same values as ``a.max(1)``, ``a.argmax(1)``, ``a.max(0)`` and ``a.min()``. Each
    block of rows is read from memory once, and all four are taken while it is in cache:
    on a matrix larger than the cache, four separate passes cost about twice as much.
    """
    n, m = a.shape
    fold = max(1, 4096 // m)  # col_max's folding, within each block
    rows = max(fold, _SCAN_BLOCK // m // fold * fold)
    row_max = np.empty(n, a.dtype)
    row_arg = np.empty(n, np.int64)
    col = np.full(m, -np.inf, a.dtype)
    low = a.dtype.type(np.inf)
    offsets = np.arange(0, min(rows, n) * m, m, dtype=np.int64)  # each row's start in a block
    flat_at = np.empty(min(rows, n), np.int64)
    for start in range(0, n, rows):
        block = a[start:start + rows]
        r = block.shape[0]
        arg = block.argmax(axis=1)
        row_arg[start:start + r] = arg
        np.add(arg, offsets[:r], out=flat_at[:r])
        row_max[start:start + r] = block.reshape(-1)[flat_at[:r]]  # indexing beats np.take
        if r % fold == 0:
            np.maximum(col, block.reshape(-1, fold * m).max(axis=0).reshape(fold, m).max(axis=0),
                       out=col)
        else:
            np.maximum(col, block.max(axis=0), out=col)
        low = np.minimum(low, block.min())  # NaN wins, as in a.min()
    return RowScan(row_max, row_arg, col, a.dtype.type(low))


def row_max(a):
    """Max over the last axis; a loop over a short last axis beats ``a.max(-1)`` 5x."""
    if a.shape[-1] > 64:
        return a.max(axis=-1)
    out = a[..., 0].copy()
    for j in range(1, a.shape[-1]):
        np.maximum(out, a[..., j], out=out)
    return out
