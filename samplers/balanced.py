"""Balanced "keep k": IoU-balanced negatives and instance-balanced positives.

Two replacements for the uniform draw (keep-random, :mod:`samplers.draws`).
Each keeps exactly as many candidates per image as the uniform draw,
``min(k, #candidates)``, but spreads them differently:

* :func:`iou_balanced_draw` (Libra R-CNN, Pang et al., CVPR 2019): negatives drawn
  evenly from equal-width IoU bins, so the few hard negatives near the
  threshold are not drowned by easy background;
* :func:`instance_balanced_draw`: positives drawn evenly per ground-truth box, so one
  large object does not take the whole positive quota.

Both are per-row (per-image) rules over 0/1 masks taking uniform random keys
(B, N), like keep-random: a candidate that must be drawn "at random" is one
with a low key. Each is written once against the array protocol of
:mod:`samplers.backend` (``be``: ``NUMPY``, ``ND`` or ``SYM``), so one body
serves numpy, the device path and graphs; everything stays on the input's
context. :func:`iou_balanced` and :func:`instance_balanced` pick the backend
and draw the keys for callers outside a graph.
"""
from __future__ import annotations

import numpy as np
import mxnet as mx

from . import backend
from ._arrays import Array, is_ndarray, like, to_numpy, use_numpy
from .backend import Backend
from .checks import check_int
from .options import Draw, check_iou_balanced
from .draws import keep_lowest
from .group_rank import group_sizes, lowest_per_group

__all__ = ['iou_balanced_draw', 'instance_balanced_draw', 'iou_balanced', 'instance_balanced',
           'draw_positives', 'draw_negatives', 'check_iou_balanced']

# Added before a floor so that products which are integers in exact arithmetic
# (10 * 0.7) are not rounded down by float32.
_ROUNDING = 1e-4


# --------------------------------------------------------------------------- the shared piece
def _fill(be, picked, mask, take, keys):
    """``picked`` plus the lowest-key others of ``mask`` until each row holds ``take`` (B, 1)."""
    room = take - be.sum(picked, 1, keepdims=True)
    return picked + keep_lowest(be, keys, mask - picked, room)


# --------------------------------------------------------------------------- the two rules
def iou_balanced_draw(be: Backend, mask: Array, iou: Array, k: Array, keys: Array,
                      num_bins: int = 3,
                      floor_thr: float = -1.0, floor_fraction: float = 0.0, low: float = 0.0,
                      high: float | None = None) -> Array:
    """Keep ``min(k, #candidates)`` negatives per row, drawn evenly across IoU bins.

    Parameters
    ----------
    be : the backend of the arrays (:data:`samplers.backend.NUMPY`, ``ND`` or ``SYM``)
    mask : (B, N) 0/1, the negative candidates
    iou : (B, N) float, each candidate's best IoU with the ground truth
    k : (B, 1) per-row counts (the negative quota)
    keys : (B, N) uniform random keys in [0, 1) (lower key: drawn first)
    num_bins : int >= 1, default 3 (the paper's)
    floor_thr : -1 (default, no floor) or a number in [0, 1]
    floor_fraction : float in [0, 1], default 0
    low, high : the IoU range the bins split: from ``max(low, floor_thr, 0)`` to
        ``high`` (float, e.g. the negative threshold); ``high=None`` takes each row's
        highest candidate IoU

    Returns
    -------
    (B, N) float32 0/1, a subset of ``mask``.

    Rule: candidates with IoU below ``floor_thr`` form the floor set (with
    ``floor_thr = 0``: IoU <= 0; with -1 there is none); the others (U) fall in
    ``num_bins`` bins of width ``w = (high - lo) / num_bins`` from
    ``lo = max(low, floor_thr, 0)``: bin ``clip(floor((iou - lo) / w), 0, num_bins - 1)``
    (so the last bin is closed above). Per row, with ``n_b`` candidates in bin b::

        k_u     = floor(k * (1 - floor_fraction))     # the share of U
        q       = floor(k_u / num_bins)               # every bin's share
        from bin b: the min(n_b, q) lowest keys, guaranteed
        kept_u  = min(|U|, k_u)                       # bin picks + others of U at random
        kept_fl = min(|floor|, k - kept_u)            # lowest keys of the floor set
        then k - kept_u - kept_fl more from the rest of U at random

    for ``min(k, n)`` in all. One bin (and no floor) keeps the ``k`` lowest keys,
    exactly keep-random's picks (:mod:`samplers.draws`). Edges: fewer
    candidates than ``k`` keeps them all; ``high <= lo`` (or a row whose
    candidates all share one IoU) puts every candidate in bin 0; an IoU on a bin
    edge goes where float32 rounding puts it.

    mmdetection's ``IoUBalancedNegSampler`` has the same counts, but its bins
    span ``[lo, max IoU of all proposals)``, positives included.
    """
    num_bins, floor_thr, floor_fraction = check_iou_balanced(num_bins, floor_thr,
                                                             floor_fraction)
    mask = be.mask(mask > 0)
    keys = be.float32(keys)
    k = be.float32(k)
    iou = be.where(mask, be.float32(iou), 0.0)  # NaN-free off the mask
    if floor_thr < 0:
        floor = be.zeros_like(mask)
    elif floor_thr == 0:
        floor = mask * be.mask(iou <= 0)
    else:
        floor = mask * be.mask(iou < floor_thr)
    upper = mask - floor
    lo = max(low, floor_thr, 0.0)
    if high is None:
        hi = be.max(be.where(upper, iou, 0.0), 1, keepdims=True)
    else:
        hi = be.zeros_like(k) + float(high)
    width = (hi - lo) / num_bins
    width = be.where(width > 0, width, 1.0)
    bins = be.clip(be.floor(be.divide(iou - lo, width)), 0, num_bins - 1)

    k_upper = be.floor(k * (1.0 - floor_fraction) + _ROUNDING)
    quota = be.floor(k_upper / num_bins)
    picked, rest_keys = lowest_per_group(
be, upper, bins, num_bins, lambda _: quota, keys)
    kept = _fill(be, picked, upper, be.minimum(be.sum(upper, 1, keepdims=True), k_upper),
                 rest_keys)
    if floor_thr < 0 and floor_fraction == 0:
        return kept  # k_upper = k: nothing is left to fill
    take = be.minimum(be.sum(mask, 1, keepdims=True), k)
    kept = kept + keep_lowest(be, keys, floor, take - be.sum(kept, 1, keepdims=True))
    # U's leftovers all sit above one threshold of rest_keys: still a uniform draw.
    return _fill(be, kept, upper + kept * floor, take, rest_keys)


def instance_balanced_draw(be: Backend, mask: Array, group: Array, k: Array, keys: Array,
                           num_groups: int) -> Array:
    """Keep ``min(k, #candidates)`` positives per row, drawn evenly per ground-truth box.

    Parameters
    ----------
    be : the backend of the arrays (:data:`samplers.backend.NUMPY`, ``ND`` or ``SYM``)
    mask : (B, N) 0/1, the positive candidates
    group : (B, N) each candidate's ground-truth box (its match index)
    k : (B, 1) per-row counts (the positive quota)
    keys : (B, N) uniform random keys in [0, 1) (lower key: drawn first)
    num_groups : int, the number of boxes M per image; an index outside [0, M)
        (or NaN) puts the candidate in one shared extra group

    Returns
    -------
    (B, N) float32 0/1, a subset of ``mask``.

    Rule: per row, with G the number of boxes that have candidates and ``n_j``
    the candidates of box j. With G <= k::

        q = floor(k / G)                          # every box's share
        from box j: the min(n_j, q) lowest keys, guaranteed
        then others at random (uniformly over all boxes' leftovers) until min(k, n) are kept

    With G > k (more boxes than slots): k of the G boxes, drawn uniformly at
    random, keep one candidate each, drawn uniformly inside the box; every box
    is kept with chance k / G, whatever its size. The candidate is the box's
    lowest key ``u_j``, and the boxes are drawn by the lowest ``-n_j * log(1 -
    u_j)``: the lowest of n_j uniform keys makes that an exponential variable
    with mean 1 for every box, independent of which candidate holds it.

    One box keeps the ``k`` lowest keys, exactly
    keep-random's picks. Fewer candidates than ``k``
    keeps them all. mmdetection's ``InstanceBalancedPosSampler`` gives each box
    ``round(k / G) + 1`` and then trims at random; ours never exceeds ``k`` on
    the guaranteed shares.
    """
    num_groups = check_int('num_groups', num_groups, minimum=0)
    mask = be.mask(mask > 0)
    keys = be.float32(keys)
    k = be.float32(k)
    group = be.float32(group)
    valid = be.mask(group >= 0) * be.mask(group < num_groups)  # NaN fails both
    g = be.where(valid, be.floor(be.where(valid, group, 0.0)), float(num_groups))
    # A share of at least 1: with more boxes than k it picks each box's lowest key, G in all.
    picked, rest_keys = lowest_per_group(
        be, mask, g, num_groups + 1,
        lambda present: be.maximum(be.floor(k / be.maximum(present, 1)), 1.0), keys)
    shares = _fill(be, picked, mask, be.minimum(be.sum(mask, 1, keepdims=True), k), rest_keys)
    crowded = be.sum(picked, 1, keepdims=True) > k
    if be.known_empty(crowded):
        return shares
    # More boxes than k: k of those lowest keys, by an exponential key of mean 1 per box.
    box_key = group_sizes(be, mask, g, num_groups + 1) * -be.log(1 - keys)
    one_each = keep_lowest(be, box_key, picked, k)
    return be.where(crowded, one_each, shares)


# --------------------------------------------------------------------------- outside a graph
def _on_input_kind(rule, mask, others, k, keys, **options):
    """Run ``rule`` on the input's backend; returns a mask of ``mask``'s kind and shape."""
    squeeze = len(mask.shape) == 1
    if is_ndarray(mask):
        if mask.size == 0:  # MXNet cannot even make a zero-size NDArray: return the input
            return mask
        if keys is None:  # mx.random for NDArrays: mx.random.seed reproduces the call
            keys = mx.nd.random.uniform_like(mask.astype('float32'))
        if not use_numpy(mask):
            shape2 = (1, -1) if squeeze else mask.shape
            kk = k if is_ndarray(k) else mx.nd.array(
                np.broadcast_to(np.asarray(k, np.float32).reshape(-1, 1),
                                (1 if squeeze else mask.shape[0], 1)), ctx=mask.context)
            out = rule(backend.ND, mask.reshape(shape2), *[o.reshape(shape2) for o in others],
                       kk.reshape((-1, 1)), keys.reshape(shape2), **options)
            return out.reshape(mask.shape)
    arr = to_numpy(mask)
    arrs = [to_numpy(o) for o in others]
    if keys is None:
        keys = np.random.random_sample(arr.shape).astype(np.float32)
    keys = to_numpy(keys)
    if arr.size == 0:
        return np.zeros(arr.shape, bool)
    if squeeze:
        arr, keys, arrs = arr[None], keys[None], [a[None] for a in arrs]
    kk = np.broadcast_to(np.asarray(to_numpy(k) if is_ndarray(k) else k,
                                    np.float32).reshape(-1, 1), (arr.shape[0], 1))
    out = rule(backend.NUMPY, arr, *arrs, kk, keys, **options) > 0
    return like(out[0] if squeeze else out, mask)


def iou_balanced(mask, iou, k, keys=None, **options):
    """:func:`iou_balanced_draw` on numpy arrays or NDArrays, per row of ``mask`` (N,) or (B, N).

    ``k`` an int or (B,) counts; ``keys`` default: ``np.random`` for numpy input,
    ``mx.random`` on the input's context for NDArrays. ``options``: ``num_bins``,
    ``floor_thr``, ``floor_fraction``, ``low``, ``high``. Returns a boolean numpy
    mask or a 0/1 NDArray on the input's context.
    """
    return _on_input_kind(iou_balanced_draw, mask, [iou], k, keys, **options)


def instance_balanced(mask, group, k, num_groups, keys=None):
    """:func:`instance_balanced_draw` on numpy arrays or NDArrays; see :func:`iou_balanced`."""
    return _on_input_kind(instance_balanced_draw, mask, [group], k, keys, num_groups=num_groups)


# --------------------------------------------------------------------------- a Draw's rules
def draw_positives(draw: Draw, be: Backend, mask, k, keys, group, num_groups: int):
    """Positives kept by ``draw.pos_sampler='instance_balanced'``: (B, N) float32 0/1.

    ``be`` the arrays' backend; ``mask`` (B, N) 0/1 candidates; ``k`` (B, 1) counts;
    ``keys`` (B, N) uniform, or None to draw them (``be.uniform_like``); ``group`` (B, N)
    each candidate's ground-truth box, ``num_groups`` = M. A uniform draw is keep-random,
    which callers run themselves.
    """
    keys = be.uniform_like(mask) if keys is None else keys
    return instance_balanced_draw(be, mask, group, k, keys, num_groups=num_groups)


def draw_negatives(draw: Draw, be: Backend, mask, k, keys, iou, low: float = 0.0,
                   high: float | None = None):
    """Negatives kept by ``draw.neg_sampler='iou_balanced'``: (B, N) float32 0/1.

    As :func:`draw_positives`, with ``iou`` (B, N) each candidate's best IoU; the bins
    split [``low``, ``high``) by ``draw``'s ``num_bins``, ``floor_thr`` and
    ``floor_fraction``.
    """
    keys = be.uniform_like(mask) if keys is None else keys
    return iou_balanced_draw(be, mask, iou, k, keys, low=low, high=high, **draw.iou_options())
