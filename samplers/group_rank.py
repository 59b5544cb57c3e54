"""Per-group ranking for the balanced draws: each group's share of lowest keys, group sizes.

:func:`lowest_per_group` and :func:`group_sizes` are functions of the array protocol
(:mod:`samplers.backend`), used by :mod:`samplers.balanced`. On ``mx.nd`` / ``mx.sym`` a
one-hot over the groups counts them and one sort by (group, key) ranks each candidate inside
its group. numpy takes a fenced fast path, :func:`_group_share_numpy`, which packs each
(image, group) id and a key's leading bits into one integer and partially sorts those; the
tests hold it to the plain full sort, :func:`_group_share_exact`.
"""
from __future__ import annotations

import numpy as np

from .backend import NUMPY

__all__ = ['lowest_per_group', 'group_sizes']


def lowest_per_group(be, mask, group, depth, share, keys):
    """Each group's guaranteed share of lowest keys: ``(picked, rest_keys)``, both (B, N).

    ``mask`` (B, N) 0/1 candidates; ``group`` (B, N) each candidate's
    group, an integer in [0, ``depth``); ``share(present)`` gives every
    group's quota (B, 1) from the number of groups with candidates in each
    row (B, 1); ``keys`` (B, N) uniform in [0, 1).

    ``picked`` (float32 0/1): in each row and group, the ``min(count,
    quota)`` candidates of lowest key. ``rest_keys``: fresh uniform keys
    for the others: given a group's highest picked key ``t``, its other
    keys are uniform on (t, 1), so ``(key - t) / (1 - t)`` is uniform on
    [0, 1) again and the lowest ``rest_keys`` draw uniformly from all
    groups' leftovers.
    """
    if be is NUMPY:
        return _group_share_numpy(mask, group, depth, share, keys)
    F = be.F
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


def group_sizes(be, mask, group, depth):
    """float32 (B, N): the number of candidates of ``mask`` in each candidate's group, 0 off
    ``mask``. ``mask`` (B, N) 0/1; ``group`` (B, N) integers in [0, ``depth``)."""
    if be is NUMPY:  # one bincount over the candidates' (row, group) ids
        rows, cols = np.nonzero(np.asarray(mask) > 0)
        out = np.zeros(np.shape(mask), np.float32)
        ids = rows * depth + np.asarray(group)[rows, cols].astype(np.int64)
        out[rows, cols] = np.bincount(ids, minlength=np.shape(mask)[0] * depth)[ids]
        return out
    F = be.F
    g = F.where(mask, group, F.ones_like(group) * depth)  # non-candidates: past every group
    onehot = F.one_hot(g, depth=depth)  # (B, N, depth); zero rows off the mask
    counts = F.sum(onehot, axis=1)  # (B, depth)
    return F.cast(F.sum(F.broadcast_mul(onehot, F.expand_dims(counts, axis=1)), axis=2),
                  'float32')


def _group_share_numpy(mask, group, depth, share, keys):
    """numpy :func:`lowest_per_group` over the candidates only (the fast path).

    Each (image, group) id and the key's leading bits pack into one uint32; a
    partial sort of those (``np.partition`` at the ranks wanted, no argsort)
    gives every group's q-th lowest value, and a candidate below it is picked.
    Candidates equal to it (keys that agree in their leading bits) are taken in
    column order until the group holds its quota, so the counts stay exact.
    Falls back to :func:`_group_share_exact` when ids leave too few bits for the
    keys, or keys lie outside [0, 1).
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
        return _group_share_exact(mask, group, depth, share, keys)
    # int32 ids (fewer bytes to touch): num_ids < 2**31 since it fits the packed bits.
    if num_rows == 1:
        ids = np.asarray(group)[cand].astype(np.int32)
    else:
        ids = np.repeat(np.arange(num_rows, dtype=np.int32) * np.int32(depth),
                        np.count_nonzero(cand, axis=1)) + np.asarray(group)[cand].astype(np.int32)
    at = ids.astype(np.intp)  # for look-ups per id: indexing by intp beats np.take
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
    own = limit[at]
    chosen = packed < own
    # The highest picked key of each group: a group that keeps all has it anywhere, a cut
    # group among its picks equal to its q-th value (they beat every other pick's leading bits).
    whole = (quota > 0) & ~cut
    top = np.zeros(num_ids, np.float32)
    if whole.any():
        keep_all = np.flatnonzero(whole[at])
        top = _group_max(kc[keep_all], ids[keep_all], num_ids)
    if cut.any():
        tied = np.flatnonzero(packed == own)  # in row-major (column) order
        tied = tied[cut.take(ids[tied])]
        if tied.size:
            room = quota - np.bincount(ids[chosen], minlength=num_ids)
            tied = _first_of_each_id(tied, ids[tied], room)
            chosen[tied] = True
            np.maximum(top, _group_max(kc[tied], ids[tied], num_ids), out=top)
    picked[flat] = chosen
    t = top[at]
    rest = np.zeros(cand.size, np.float32)
    rest[flat] = (kc - t) / (1 - t)
    return picked.reshape(cand.shape), rest.reshape(cand.shape)


def _first_of_each_id(tied, tied_ids, room):
    """The tie rule of :mod:`samplers.draws` (``_first_tied``) applied per group: of the
    ``tied`` positions (in column order), the first ``room[id]`` of each id."""
    order = np.argsort(tied_ids, kind='stable')
    run_first = np.ones(tied.size, bool)
    run_first[1:] = tied_ids[order][1:] != tied_ids[order][:-1]
    pos = np.arange(tied.size)
    rank = pos - np.maximum.accumulate(np.where(run_first, pos, 0))
    return tied[order[rank < room[tied_ids[order]]]]


def _group_max(values, ids, num_ids):
    """Per id in [0, ``num_ids``), the largest of the non-negative ``values`` with that id;
    0 for an id with none. A stable sort of small integers is a radix sort in numpy, after
    which ``np.maximum.reduceat`` reads each id's run, much cheaper than ``np.maximum.at``.
    """
    out = np.zeros(num_ids, values.dtype)
    if values.size == 0:
        return out
    counts = np.bincount(ids, minlength=num_ids)
    has = counts > 0
    order = np.argsort(ids.astype(np.int16) if num_ids <= 2 ** 15 else ids, kind='stable')
    out[has] = np.maximum.reduceat(values[order], (np.cumsum(counts) - counts)[has])
    return out


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


def _sort_by_id_then_key(ids, keys, cols, num_cols):
    """``ids``, ``keys``, ``cols`` (1-D) sorted by (id, key, col).

    A float32 in [0, 1) orders as its bit pattern does, so the three pack into
    one uint64 whose plain sort is cheaper than an argsort or a lexsort; a
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

