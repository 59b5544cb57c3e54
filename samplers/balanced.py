"""Balanced "keep k": IoU-balanced negatives and instance-balanced positives.

Two replacements for the uniform draw of :func:`samplers.boxes.keep_random_F`.
Each keeps exactly as many candidates per image as the uniform draw,
``min(k, #candidates)``, but spreads them differently:

* :func:`iou_balanced_F` (Libra R-CNN, Pang et al., CVPR 2019): negatives drawn
  evenly from equal-width IoU bins, so the few hard negatives near the
  threshold are not drowned by easy background;
* :func:`instance_balanced_F`: positives drawn evenly per ground-truth box, so one
  large object does not take the whole positive quota.

Both are per-row (per-image) rules over 0/1 masks taking uniform random keys
(B, N), like ``keep_random_F``: a candidate that must be drawn "at random"
is one with a low key. ``F`` is ``mx.nd``, ``mx.sym`` or
:data:`samplers.backend.NUMPY_F`, so one body serves the device path, graphs
and numpy. Everything stays on the input's context; no loop runs over images
or data. :func:`iou_balanced` and :func:`instance_balanced` pick the backend
and draw the keys for callers outside a graph.
"""
from __future__ import annotations

import numbers

import numpy as np
import mxnet as mx

from .backend import NUMPY_F, is_ndarray, like, to_numpy, use_numpy
from .checks import check_int, check_ratio
from .boxes import keep_top_F

__all__ = ['iou_balanced_F', 'instance_balanced_F', 'iou_balanced', 'instance_balanced',
           'check_iou_balanced', 'Strategies', 'POS_SAMPLERS', 'NEG_SAMPLERS']

# Added before a floor so that products which are integers in exact arithmetic
# (10 * 0.7) are not rounded down by float32.
_ROUNDING = 1e-4


def check_iou_balanced(num_bins=3, floor_thr=-1.0, floor_fraction=0.0):
    """Validated ``(num_bins, floor_thr, floor_fraction)``, or ``ValueError`` naming the argument.

    ``num_bins`` an integer >= 1; ``floor_thr`` -1 (no floor) or a number in [0, 1];
    ``floor_fraction`` in [0, 1].
    """
    num_bins = check_int('num_bins', num_bins, minimum=1)
    if isinstance(floor_thr, bool) or not isinstance(floor_thr, numbers.Real) or not (
            floor_thr == -1 or 0 <= floor_thr <= 1):
        raise ValueError('floor_thr must be -1 (no floor) or in [0, 1], got {!r}'.format(
            floor_thr))
    floor_fraction = check_ratio('floor_fraction', floor_fraction)
    return num_bins, float(floor_thr), floor_fraction


# --------------------------------------------------------------------------- the shared piece
def _group_share(F, mask, group, depth, share, keys):
    """Each group's guaranteed share: ``(picked, rest_keys)``, both (B, N).

    ``group`` (B, N) holds each candidate's group, an integer in [0, depth).
    ``share(present)`` gives every group's quota (B, 1) from the number of
    groups that have candidates in each row (B, 1).

    ``picked`` (0/1): in each row and group, the ``min(count, quota)`` candidates
    of lowest key. Sorting by (group, key) ranks the candidates; a candidate's
    rank minus the number of candidates in lower groups is its rank inside its
    group. Ranks are a permutation, so the counts are exact even when keys tie.

    ``rest_keys``: fresh uniform keys for the candidates left over. Given the
    highest picked key ``t`` of a group, its other keys are independent and
    uniform on (t, 1), so ``(key - t) / (1 - t)`` is uniform on [0, 1) again and a
    fill by lowest ``rest_keys`` is a uniform draw from all groups' leftovers
    (reusing the raw keys would favour groups with many leftovers).

    Two implementations of this one statement: numpy partially sorts the C
    candidates' packed (group, key) values (:func:`_group_share_numpy`; keys
    that agree in their leading 20-30 bits are ordered by column); ``F`` counts
    groups with a one-hot (B, N, depth), which a GPU does in parallel and which
    also runs in ``mx.sym`` graphs. With distinct keys both pick the same.
    """
    if F is NUMPY_F:
        return _group_share_numpy(mask, group, depth, share, keys)
    g = F.where(mask, group, F.ones_like(group) * depth)  # non-candidates: past every group
    onehot = F.one_hot(g, depth=depth)  # (B, N, depth); zero rows off the mask
    counts = F.sum(onehot, axis=1)  # (B, depth)
    quota = share(F.sum(counts > 0, axis=1, keepdims=True))
    starts = F.cumsum(counts, axis=1) - counts  # candidates in lower groups, (B, depth)
    start = F.sum(F.broadcast_mul(onehot, F.expand_dims(starts, axis=1)), axis=2)  # (B, N)
    # float64: g + key / 2 keeps every float32 key distinct and below the next group.
    order = F.argsort(F.cast(g, 'float64') + 0.5 * F.cast(keys, 'float64'), axis=1)
    rank = F.argsort(order, axis=1)
    picked = mask * F.broadcast_lesser(rank - start, quota)
    top = F.max(F.broadcast_mul(onehot, F.expand_dims(picked * keys, axis=2)), axis=1)
    t = F.sum(F.broadcast_mul(onehot, F.expand_dims(top, axis=1)), axis=2)  # (B, N)
    return picked, (keys - t) / (1 - t)


def _group_share_numpy(mask, group, depth, share, keys, want_rest=True):
    """numpy :func:`_group_share` over the candidates only.

    Each (image, group) id and the key's leading bits pack into one uint32; a
    partial sort of those (``np.partition`` at the ranks wanted, no argsort)
    gives every group's q-th lowest value, and a candidate below it is picked.
    Candidates equal to it (keys that agree in their leading bits) are taken in
    column order until the group holds its quota, so the counts stay exact.
    Falls back to :func:`_group_share_exact` when ids leave too few bits for the
    keys, or keys lie outside [0, 1). ``group`` None: one group per row.
    ``want_rest`` False skips the fresh keys (returned as None).
    """
    num_rows = mask.shape[0]
    cand = np.asarray(mask) > 0
    flat = np.flatnonzero(cand)  # the candidates, row-major
    picked = np.zeros(cand.size, np.float32)
    if flat.size == 0:
        share(np.zeros((num_rows, 1), np.float32))
        return picked.reshape(cand.shape), np.zeros(cand.shape, np.float32)
    num_ids = num_rows * depth
    # One spare bit: (id + 1) << key_bits still fits in 32 bits.
    key_bits = min(_KEY_BITS, 31 - max(1, int(num_ids - 1).bit_length()))
    kc = np.asarray(keys, np.float32)[cand]
    if key_bits < 20 or not ((kc >= 0) & (kc < 1)).all():
        group = np.zeros(cand.shape, np.int64) if group is None else group
        return _group_share_exact(mask, group, depth, share, keys)
    # int32 ids (fewer bytes to touch): num_ids < 2**31 since it fits the packed bits.
    if group is None:
        ids = np.repeat(np.arange(num_rows, dtype=np.int32), np.count_nonzero(cand, axis=1))
    elif num_rows == 1:
        ids = np.asarray(group)[cand].astype(np.int32)
    else:
        ids = np.repeat(np.arange(num_rows, dtype=np.int32) * np.int32(depth),
                        np.count_nonzero(cand, axis=1)) + np.asarray(group)[cand].astype(np.int32)
    counts = np.bincount(ids, minlength=num_ids)
    present = (counts.reshape(num_rows, depth) > 0).sum(axis=1).astype(np.float32)[:, None]
    quota = np.repeat(np.broadcast_to(share(present), (num_rows, 1))[:, 0], depth)  # per id
    cut = (quota > 0) & (counts > quota)  # groups that keep only part of their candidates
    packed = (ids.astype(np.uint32) << np.uint32(key_bits)) \
        | (kc.view(np.uint32) >> np.uint32(_KEY_BITS - key_bits))
    # Per id, everything below ``limit`` is picked: its q-th value for a cut group, the
    # next id's first value for a group that keeps all, its own first value for quota 0.
    first = np.arange(num_ids + 1, dtype=np.uint32) << np.uint32(key_bits)
    limit = np.where(quota > 0, first[1:], first[:-1])
    if cut.any():  # the q-th value of each cut group: a partial sort around those ranks
        limit[cut] = _kth_values(packed, kc, ids, counts, quota, cut)
    own = limit.take(ids)
    chosen = packed < own
    if cut.any():
        tied = np.flatnonzero(packed == own)  # in row-major (column) order
        tied = tied[cut.take(ids[tied])]
        if tied.size:
            room = quota - np.bincount(ids[chosen], minlength=num_ids)
            tied_ids = ids[tied]
            order = np.argsort(tied_ids, kind='stable')
            run_first = np.ones(tied.size, bool)
            run_first[1:] = tied_ids[order][1:] != tied_ids[order][:-1]
            pos = np.arange(tied.size)
            rank = pos - np.maximum.accumulate(np.where(run_first, pos, 0))
            chosen[tied[order[rank < room[tied_ids[order]]]]] = True
    picked[flat] = chosen
    if not want_rest:
        return picked.reshape(cand.shape), None
    top = np.zeros(num_ids, np.float32)  # the highest picked key of each group
    np.maximum.at(top, ids[chosen], kc[chosen])
    t = top.take(ids)
    rest = np.zeros(cand.size, np.float32)
    rest[flat] = (kc - t) / (1 - t)
    return picked.reshape(cand.shape), rest.reshape(cand.shape)


def _kth_values(packed, kc, ids, counts, quota, cut):
    """The ``quota``-th lowest ``packed`` value of each cut id (``packed`` sorts by id, then key).

    The q lowest of a large group lie among its lowest keys, so the partial sort runs on
    the values whose key is below a cut-off expected to hold about ``2q + 32`` of each cut
    group (uniform keys); when some group has fewer than its quota there, on all values.
    Either way the answer is the same.
    """
    cutoff = float(np.max((2 * quota[cut] + 32) / counts[cut]))
    if cutoff < 0.5:
        low = kc < np.float32(cutoff)
        sub = packed[low]
        sub_counts = np.bincount(ids[low], minlength=counts.size)
        if (sub_counts[cut] >= quota[cut]).all():
            kth = (np.cumsum(sub_counts) - sub_counts + quota - 1)[cut].astype(np.intp)
            return np.partition(sub, kth)[kth]
    kth = (np.cumsum(counts) - counts + quota - 1)[cut].astype(np.intp)
    return np.partition(packed, kth)[kth]


def _group_share_exact(mask, group, depth, share, keys):
    """:func:`_group_share_numpy` by a full sort on (id, key, column): for any ids and keys."""
    rows, cols = np.nonzero(mask > 0)
    picked = np.zeros(mask.shape, np.float32)
    rest = np.zeros(mask.shape, np.float32)
    if rows.size == 0:
        share(np.zeros((mask.shape[0], 1), np.float32))
        return picked, rest
    # One id per (image, group); sorting by (id, key, column) groups each image's groups.
    ids = rows * depth + group[rows, cols].astype(np.int64)
    ids, kc, cols = _sort_by_id_then_key(ids, np.asarray(keys, np.float32)[rows, cols], cols,
                                         mask.shape[1])
    rows = ids // depth
    pos = np.arange(ids.size)
    first = np.ones(ids.size, bool)
    first[1:] = ids[1:] != ids[:-1]
    start = np.maximum.accumulate(np.where(first, pos, 0))  # where each run begins
    present = np.bincount(rows[first], minlength=mask.shape[0]).astype(np.float32)[:, None]
    quota = np.broadcast_to(share(present), (mask.shape[0], 1))[rows, 0]
    last = np.clip(start + quota - 1, 0, ids.size - 1).astype(np.int64)
    t = np.where(quota > 0, kc[last], 0)
    picked[rows, cols] = pos - start < quota
    rest[rows, cols] = (kc - t) / (1 - t)
    return picked, rest


_KEY_BITS = 30  # a float32 in [0, 1) is below 0x3F800000 < 2**30 as an integer
_BELOW_ONE = np.nextafter(np.float32(1), np.float32(0))


def _sort_by_id_then_key(ids, keys, cols, num_cols):
    """``ids``, ``keys``, ``cols`` (1-D) sorted by (id, key, col).

    A float32 in [0, 1) orders as its bit pattern does, so the three pack into
    one uint64 whose plain sort is several times faster than an argsort; a
    lexsort does it when they do not fit.
    """
    col_bits = max(1, int(num_cols - 1).bit_length())
    if int(ids.max()).bit_length() + _KEY_BITS + col_bits > 64 or not (
            (keys >= 0) & (keys < 1)).all():
        order = np.lexsort((cols, keys, ids))
        return ids[order], keys[order], cols[order]
    packed = (ids.astype(np.uint64) << np.uint64(_KEY_BITS + col_bits)) \
        | (keys.view(np.uint32).astype(np.uint64) << np.uint64(col_bits)) \
        | cols.astype(np.uint64)
    packed.sort()
    keys = ((packed >> np.uint64(col_bits)) & np.uint64((1 << _KEY_BITS) - 1)) \
        .astype(np.uint32).view(np.float32)
    return ((packed >> np.uint64(_KEY_BITS + col_bits)).astype(np.int64), keys,
            (packed & np.uint64((1 << col_bits) - 1)).astype(np.int64))


def _keep_lowest(F, keys, mask, k):
    """0/1: per row the ``k`` (B, 1) lowest ``keys`` among ``mask``.

    numpy: each row is one group of :func:`_group_share_numpy` (a sort of the
    candidates only); ties in the keys' leading bits go in column order.
    """
    if F is NUMPY_F:
        mask = np.asarray(mask)
        keys = np.clip(keys, 0, _BELOW_ONE)  # fresh keys may round just outside [0, 1)
        return _group_share_numpy(mask, None, 1,
                                  lambda _: np.asarray(k, np.float32).reshape(-1, 1), keys,
                                  want_rest=False)[0]
    return keep_top_F(F, -keys, mask, k)


def _fill(F, picked, mask, take, keys):
    """``picked`` plus the lowest-key others of ``mask`` until each row holds ``take`` (B, 1)."""
    room = take - F.sum(picked, axis=1, keepdims=True)
    return picked + _keep_lowest(F, keys, mask - picked, room)


# --------------------------------------------------------------------------- the two rules
def iou_balanced_F(F, mask, iou, k, keys, num_bins=3, floor_thr=-1.0, floor_fraction=0.0,
                   low=0.0, high=None):
    """Keep ``min(k, #candidates)`` negatives per row, drawn evenly across IoU bins.

    Parameters
    ----------
    F : ``mx.nd``, ``mx.sym`` or :data:`samplers.backend.NUMPY_F`
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
    exactly :func:`samplers.boxes.keep_random_F`'s picks. Edges: fewer
    candidates than ``k`` keeps them all; ``high <= lo`` (or a row whose
    candidates all share one IoU) puts every candidate in bin 0; an IoU on a bin
    edge goes where float32 rounding puts it.

    mmdetection's ``IoUBalancedNegSampler`` has the same counts, but its bins
    span ``[lo, max IoU of all proposals)``, positives included.
    """
    num_bins, floor_thr, floor_fraction = check_iou_balanced(num_bins, floor_thr,
                                                             floor_fraction)
    mask = F.cast(mask > 0, 'float32')
    keys = F.cast(keys, 'float32')
    k = F.cast(k, 'float32')
    iou = F.where(mask, F.cast(iou, 'float32'), F.zeros_like(mask))  # NaN-free off the mask
    if floor_thr < 0:
        floor = F.zeros_like(mask)
    elif floor_thr == 0:
        floor = mask * (iou <= 0)
    else:
        floor = mask * (iou < floor_thr)
    upper = mask - floor
    lo = max(low, floor_thr, 0.0)
    if high is None:
        hi = F.max(F.where(upper, iou, F.zeros_like(iou)), axis=1, keepdims=True)
    else:
        hi = F.ones_like(k) * float(high)
    width = (hi - lo) / num_bins
    width = F.where(width > 0, width, F.ones_like(width))
    bins = F.clip(F.floor(F.broadcast_div(iou - lo, width)), 0, num_bins - 1)

    k_upper = F.floor(k * (1.0 - floor_fraction) + _ROUNDING)
    quota = F.floor(k_upper / num_bins)
    picked, rest_keys = _group_share(F, upper, bins, num_bins, lambda _: quota, keys)
    kept = _fill(F, picked, upper, F.minimum(F.sum(upper, axis=1, keepdims=True), k_upper),
                 rest_keys)
    if floor_thr < 0 and floor_fraction == 0:
        return kept  # k_upper = k: nothing is left to fill
    take = F.minimum(F.sum(mask, axis=1, keepdims=True), k)
    kept = kept + _keep_lowest(F, keys, floor, take - F.sum(kept, axis=1, keepdims=True))
    # U's leftovers all sit above one threshold of rest_keys: still a uniform draw.
    return _fill(F, kept, upper + kept * floor, take, rest_keys)


def instance_balanced_F(F, mask, group, k, keys, num_groups):
    """Keep ``min(k, #candidates)`` positives per row, drawn evenly per ground-truth box.

    Parameters
    ----------
    F : ``mx.nd``, ``mx.sym`` or :data:`samplers.backend.NUMPY_F`
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
    the candidates of box j::

        q = floor(k / G)                          # every box's share
        from box j: the min(n_j, q) lowest keys, guaranteed
        then others at random (uniformly over all boxes' leftovers) until min(k, n) are kept

    One box keeps the ``k`` lowest keys, exactly
    :func:`samplers.boxes.keep_random_F`'s picks. Fewer candidates than ``k``
    keeps them all. mmdetection's ``InstanceBalancedPosSampler`` gives each box
    ``round(k / G) + 1`` and then trims at random; ours never exceeds ``k`` on
    the guaranteed shares.
    """
    num_groups = check_int('num_groups', num_groups, minimum=0)
    mask = F.cast(mask > 0, 'float32')
    keys = F.cast(keys, 'float32')
    k = F.cast(k, 'float32')
    group = F.cast(group, 'float32')
    valid = (group >= 0) * (group < num_groups)  # NaN fails both
    g = F.where(valid, F.floor(F.where(valid, group, F.zeros_like(group))),
                F.ones_like(group) * num_groups)
    picked, rest_keys = _group_share(F, mask, g, num_groups + 1,
                                     lambda present: F.floor(k / F.maximum(present, 1)), keys)
    return _fill(F, picked, mask, F.minimum(F.sum(mask, axis=1, keepdims=True), k), rest_keys)


# --------------------------------------------------------------------------- outside a graph
def _run(rule, mask, others, k, keys, **options):
    """Run ``rule`` on the input's backend; returns a mask of ``mask``'s kind and shape."""
    squeeze = len(mask.shape) == 1
    if is_ndarray(mask):
        if mask.size == 0:  # MXNet cannot even make a zero-size NDArray: return the input
            return mask
        if keys is None:  # mx.random for NDArrays: mx.random.seed reproduces the call
            keys = mx.nd.random.uniform_like(mask.astype('float32'))
        if not use_numpy(mask):
            nd = mx.nd
            shape2 = (1, -1) if squeeze else mask.shape
            kk = k if is_ndarray(k) else nd.array(
                np.broadcast_to(np.asarray(k, np.float32).reshape(-1, 1),
                                (1 if squeeze else mask.shape[0], 1)), ctx=mask.context)
            out = rule(nd, mask.reshape(shape2), *[o.reshape(shape2) for o in others],
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
    out = rule(NUMPY_F, arr, *arrs, kk, keys, **options) > 0
    return like(out[0] if squeeze else out, mask)


def iou_balanced(mask, iou, k, keys=None, **options):
    """:func:`iou_balanced_F` on numpy arrays or NDArrays, per row of ``mask`` (N,) or (B, N).

    ``k`` an int or (B,) counts; ``keys`` default: ``np.random`` for numpy input,
    ``mx.random`` on the input's context for NDArrays. ``options``: ``num_bins``,
    ``floor_thr``, ``floor_fraction``, ``low``, ``high``. Returns a boolean numpy
    mask or a 0/1 NDArray on the input's context.
    """
    return _run(iou_balanced_F, mask, [iou], k, keys, **options)


def instance_balanced(mask, group, k, num_groups, keys=None):
    """:func:`instance_balanced_F` on numpy arrays or NDArrays; see :func:`iou_balanced`."""
    return _run(instance_balanced_F, mask, [group], k, keys, num_groups=num_groups)


# --------------------------------------------------------------------------- sampler options
POS_SAMPLERS = ('uniform', 'instance_balanced')
NEG_SAMPLERS = ('uniform', 'iou_balanced')


def _numpy_keys(F, mask, keys):
    if keys is None and F is NUMPY_F:
        return np.random.random_sample(np.shape(mask)).astype(np.float32)
    return keys


class Strategies:
    """The ``pos_sampler`` / ``neg_sampler`` options of a quota-based sampler, checked once.

    Parameters
    ----------
    pos_sampler : 'uniform' (default) or 'instance_balanced'
        How the positive quota is drawn: uniformly, or evenly per ground-truth box
        (:func:`instance_balanced_F`).
    neg_sampler : 'uniform' (default) or 'iou_balanced'
        How the negative quota is drawn: uniformly, or evenly across IoU bins
        (:func:`iou_balanced_F`).
    num_bins, floor_thr, floor_fraction : the IoU-balanced options (see
        :func:`iou_balanced_F`; defaults 3, -1, 0); ``ValueError`` when out of range.
    """

    def __init__(self, pos_sampler='uniform', neg_sampler='uniform', num_bins=3, floor_thr=-1,
                 floor_fraction=0.0):
        for name, value, allowed in (('pos_sampler', pos_sampler, POS_SAMPLERS),
                                     ('neg_sampler', neg_sampler, NEG_SAMPLERS)):
            if value not in allowed:
                raise ValueError('{} must be one of {}, got {!r}'.format(name, allowed, value))
        self.pos_sampler, self.neg_sampler = pos_sampler, neg_sampler
        self.num_bins, self.floor_thr, self.floor_fraction = check_iou_balanced(
            num_bins, floor_thr, floor_fraction)

    def __eq__(self, other):
        return isinstance(other, Strategies) and self.settings() == other.settings()

    __hash__ = None

    @property
    def uniform(self):
        """Whether both draws are uniform (the samplers' original behaviour)."""
        return self.pos_sampler == 'uniform' and self.neg_sampler == 'uniform'

    def settings(self):
        """The options as keyword arguments (for ``__repr__`` and rebuilding)."""
        return dict(pos_sampler=self.pos_sampler, neg_sampler=self.neg_sampler,
                    num_bins=self.num_bins, floor_thr=self.floor_thr,
                    floor_fraction=self.floor_fraction)

    def attrs(self):
        """The options as CustomOp attributes (strings)."""
        return {name: str(value) for name, value in self.settings().items()}

    @classmethod
    def from_attrs(cls, pos_sampler='uniform', neg_sampler='uniform', num_bins='3',
                   floor_thr='-1', floor_fraction='0'):
        """Rebuild from :meth:`attrs` (absent attributes: the uniform defaults)."""
        return cls(pos_sampler, neg_sampler, int(float(num_bins)), float(floor_thr),
                   float(floor_fraction))

    def keep_pos_F(self, F, mask, k, keys, group, num_groups):
        """Positives kept, (B, N) float32 0/1: ``k`` (B, 1) of ``mask`` by ``pos_sampler``.

        ``group`` (B, N): each candidate's ground-truth box, ``num_groups`` = M.
        ``keys`` (B, N) uniform; None draws them from ``np.random`` (numpy only).
        """
        keys = _numpy_keys(F, mask, keys)
        if self.pos_sampler == 'uniform':
            return _keep_lowest(F, keys, F.cast(mask > 0, 'float32'), k)
        return instance_balanced_F(F, mask, group, k, keys, num_groups=num_groups)

    def keep_neg_F(self, F, mask, k, keys, iou, low=0.0, high=None):
        """Negatives kept, (B, N) float32 0/1: ``k`` (B, 1) of ``mask`` by ``neg_sampler``.

        ``iou`` (B, N): each candidate's best IoU; the bins split [``low``, ``high``).
        """
        keys = _numpy_keys(F, mask, keys)
        if self.neg_sampler == 'uniform':
            return _keep_lowest(F, keys, F.cast(mask > 0, 'float32'), k)
        return iou_balanced_F(F, mask, iou, k, keys, num_bins=self.num_bins,
                              floor_thr=self.floor_thr, floor_fraction=self.floor_fraction,
                              low=low, high=high)

    def keep_pos(self, mask, k, group, num_groups, keys=None):
        """:meth:`keep_pos_F` on numpy arrays or NDArrays (instance-balanced only)."""
        return instance_balanced(mask, group, k, num_groups, keys)

    def keep_neg(self, mask, k, iou, low=0.0, high=None, keys=None):
        """:meth:`keep_neg_F` on numpy arrays or NDArrays (IoU-balanced only)."""
        return iou_balanced(mask, iou, k, keys, num_bins=self.num_bins, floor_thr=self.floor_thr,
                            floor_fraction=self.floor_fraction, low=low, high=high)
