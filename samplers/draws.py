"""Quotas and "keep k of each row": how many samples an image keeps, and which.

Labels follow the package convention (see :mod:`samplers`).

Keep-k has one rule, stated here once and written as functions of the array protocol
(:mod:`samplers.backend`): :func:`keep_top`, :func:`keep_lowest`, :func:`keep_uniform`.

* **keep-top**: per row, the ``k`` highest scores among the candidates. ``k`` is floored and
  capped at the row's candidates; ``k <= 0`` keeps none. **The tie rule**: everything above
  the k-th highest candidate score ``t`` is kept, then candidates scoring ``t`` from the
  lowest index up until the row holds ``k``.
* **keep-lowest**: keep-top of ``-keys`` (so ties, too, go to the lower index).
* **keep-random**: keep-lowest of uniform random keys. The k lowest uniform
  keys are a uniform k-subset, so every subset of that size is equally likely.
  :func:`keep_uniform` is it on a backend; :func:`keep_random` is its public form for any
  numpy array or NDArray.

``mx.nd`` and ``mx.sym`` sort each row on the device (:func:`_keep_top_sorted`, the plain
statement of the rule). numpy takes a fenced fast path, :func:`_np_keep`: it ranks only the
rows that must drop candidates, by a partial selection (``np.partition``); the tests hold it
to a stable sort.
"""
from __future__ import annotations

import numbers

import numpy as np
import mxnet as mx

from . import backend
from ._arrays import Array, is_ndarray, like, neg_inf_like_F, to_numpy, use_numpy
from .backend import NUMPY, Backend

__all__ = ['positive_quota', 'negative_quota', 'keep_top', 'keep_lowest', 'keep_uniform',
           'keep_random']


# --------------------------------------------------------------------------- quotas
def positive_quota(num_sample: int, pos_ratio: float) -> int:
    """Most positives kept per image: ``round(pos_ratio * num_sample)`` (Python rounding)."""
    return int(round(pos_ratio * num_sample))


def negative_quota(num_sample: float, num_pos_kept, neg_ratio: float,
                   fill_negative: bool = True):
    """Most negatives kept per image.

    Parameters
    ----------
    num_sample : samples wanted per image (a number)
    num_pos_kept : positives kept: a number, or an array with one entry per image
        (numpy, NDArray or symbol, e.g. (B, 1))
    neg_ratio : the negatives' fixed share
    fill_negative : bool, default True

    Returns ``int(neg_ratio * num_sample)``; with ``fill_negative`` negatives may
    also take the slots positives left free: ``max(num_sample - num_pos_kept,
    int(neg_ratio * num_sample))``. The result has the form of ``num_pos_kept``
    (an int for an int without ``fill_negative``).
    """
    fixed = int(neg_ratio * num_sample)
    if isinstance(num_pos_kept, numbers.Number):
        return max(num_sample - num_pos_kept, fixed) if fill_negative else fixed
    be = backend.SYM if isinstance(num_pos_kept, mx.sym.Symbol) else backend.of_kind(num_pos_kept)
    if not fill_negative:
        return num_pos_kept * 0 + fixed
    return be.maximum(num_sample - num_pos_kept, fixed)


# --------------------------------------------------------------------------- keep k
def keep_top(be: Backend, scores: Array, mask: Array, k) -> Array:
    """Per row, the ``k`` highest ``scores`` among ``mask``: float32 0/1 (B, N), on ``be``.

    ``scores`` (B, N) float (not NaN at candidates; masked-out entries not
    +inf); ``mask`` (B, N) 0/1; ``k`` (B, 1) counts (numpy: also a number),
    floored and capped at the row's candidates (``k <= 0`` keeps none). Ties
    as the module's tie rule says.
    """
    if be is NUMPY:
        scores = np.asarray(scores)
        return _np_keep(mask, k, lambda r, idx: -scores[r, idx],
                        full_keys=lambda rows, cand: np.where(cand, -scores[rows], np.inf))
    return _keep_top_sorted(be.F, scores, mask, k)


def keep_lowest(be: Backend, keys: Array, mask: Array, k) -> Array:
    """Per row, the ``k`` candidates of ``mask`` with the lowest ``keys``: float32 0/1 (B, N).

    :func:`keep_top` of ``-keys`` (numpy ranks the keys themselves, no negated copy). With
    uniform ``keys`` that is a uniformly random k-subset of each row's candidates.
    """
    if be is NUMPY:
        keys = np.asarray(keys)
        return _np_keep(mask, k, lambda r, idx: keys[r, idx], spread=True)
    return keep_top(be, -be.float32(keys), mask, k)


def keep_uniform(be: Backend, mask: Array, k, keys: Array | None = None) -> Array:
    """Per row, ``min(k, count)`` candidates of ``mask`` uniformly at random: float32 0/1.

    ``mask`` (B, N) 0/1; ``k`` (B, 1) counts (floats floored, negative
    keeps none); ``keys`` (B, N) uniform numbers in [0, 1) to use, or None
    to draw them (``be.uniform_like``; numpy draws keys only for the
    candidates of the rows that must drop some). :func:`keep_lowest` of the keys.
    """
    if keys is None and be is NUMPY:
        return _np_keep(mask, k, lambda r, idx: np.random.random(idx.size), spread=True)
    return keep_lowest(be, be.uniform_like(mask) if keys is None else keys, mask, k)


def _keep_top_sorted(F, scores, mask, k):
    """:func:`keep_top` with ``F`` operators: one sort per row finds the k-th highest score,
    a cumulative sum takes the tied entries from the lowest index up (the tie rule)."""
    mask = F.cast(mask > 0, 'float32')
    # k above the row's count would index past the row (and wrap past 2**31 in pick).
    k = F.minimum(F.cast(k, 'float32'), F.sum(mask, axis=1, keepdims=True))
    key = F.where(mask > 0, scores, neg_inf_like_F(F, scores))
    ranked = F.sort(key, axis=1, is_ascend=False)
    kth = F.pick(ranked, F.reshape(F.relu(k - 1), shape=(-1,)), axis=1, keepdims=True)
    above = F.cast(F.broadcast_greater(key, kth), 'float32') * mask
    tied = F.cast(F.broadcast_equal(key, kth), 'float32') * mask
    return above + _first_tied(F, tied, k - F.sum(above, axis=1, keepdims=True))


def _first_tied(xp, tied, room):
    """The tie rule, once: of each row's 0/1 ``tied`` entries, the first ``room`` from the
    lowest index up. ``xp`` is numpy (``tied`` a boolean row) or ``mx.nd`` / ``mx.sym``
    (``tied`` (B, N), ``room`` (B, 1)); MXNet's cumsum takes no negative axis."""
    if xp is np:
        return tied & (np.cumsum(tied, axis=-1) <= room)
    return tied * xp.broadcast_lesser_equal(xp.cumsum(tied, axis=1), room)


def _np_lowest_positions(keys, take, spread=False):
    """Positions in 1-D ``keys`` of the ``take`` (1 <= take < size) lowest, ties to the lower
    position. A partial selection (``np.argpartition``) places the take-th and the next
    lowest keys; when they differ (the usual case) the first ``take`` are the answer whatever
    the tie rule, otherwise every key below the take-th lowest ``t`` is kept, then keys equal
    to ``t`` in order.

    When ``take`` is small beside the size, the ``take`` lowest lie among the few keys below
    a cut-off that about ``2 * take + 64`` of them pass, and the selection runs on those.
    ``spread``: the keys are about uniform on [0, 1) (random keys), and the cut-off is that
    fraction of 1; otherwise it is taken from every 8th key. Whenever at least ``take`` pass,
    every key up to the take-th lowest is among them (in order), so the answer is the same
    for any keys; when fewer pass, the whole row is searched."""
    if keys.size > 8 * take + 256:
        if spread:
            cut = (2 * take + 64) / keys.size
        else:
            sample = keys[::8]
            rank = min((2 * take + 64) // 8, sample.size - 1)
            cut = np.partition(sample, rank)[rank]  # NaN (no key passes) if the rank is NaN
        few = np.flatnonzero(keys < cut)
        if few.size == take:
            return few
        if take < few.size < keys.size // 2:
            return few[_np_lowest_positions(keys[few], take)]
    part = np.argpartition(keys, (take - 1, take))
    t = keys[part[take - 1]]
    if keys[part[take]] != t:
        return part[:take]
    below = keys < t
    return np.flatnonzero(below | _first_tied(np, keys == t, take - np.count_nonzero(below)))


def _np_keep(mask, k, row_keys, spread=False, full_keys=None):
    """float32 0/1 (B, N): per row of ``mask`` the ``floor(min(k, count))`` candidates of
    lowest ``row_keys(r, idx)`` (the keys of row ``r``'s candidates ``idx``), ties to the
    lower index. ``row_keys`` is called only for rows that must drop candidates and keep at
    least one, in row order; ``spread`` as in :func:`_np_lowest_positions`.

    ``full_keys(rows, cand)``, if given, returns the keys of whole rows at once (``cand``
    their boolean candidates), +inf off the candidates: rows mostly made of candidates are
    ranked on those, without gathering each row's candidates first. A row whose pick holds
    an infinite key (a candidate's key may be +inf too) is ranked again on its candidates."""
    cand = np.asarray(mask) > 0
    out = np.zeros(cand.shape, np.float32)
    if cand.size == 0:
        return out
    # per row: count_nonzero row by row beats the axis form for a few long rows (docs/bench.md)
    counts = np.array([np.count_nonzero(row) for row in cand])
    with np.errstate(invalid='ignore'):
        take = np.floor(np.minimum(np.broadcast_to(
            np.asarray(k, np.float64).reshape(-1), counts.shape), counts))
    crowded = take < counts
    if not crowded.all():  # rows with room keep every candidate
        rows = np.flatnonzero(~crowded)
        out[rows] = cand[rows]
    rows = np.flatnonzero(crowded & (take >= 1))
    if full_keys and rows.size:
        whole = rows[2 * counts[rows] >= cand.shape[-1]]
        done = []
        for r, keys in zip(whole.tolist(), full_keys(whole, cand[whole]) if whole.size else ()):
            picked = _np_lowest_positions(keys, int(take[r]), spread)
            if keys[picked].max() < np.inf:
                out[r, picked] = 1
                done.append(r)
        rows = np.setdiff1d(rows, done, assume_unique=True)
    for r in rows.tolist():
        idx = np.flatnonzero(cand[r])
        out[r, idx[_np_lowest_positions(row_keys(r, idx), int(take[r]), spread)]] = 1
    return out



# --------------------------------------------------------------------------- keep random, any kind
def keep_random(mask: Array, k, keys: Array | None = None) -> Array:
    """Keep at most ``k`` of the candidates of each row of ``mask``, uniformly at random.

    Parameters
    ----------
    mask : (N,) or (B, N) 0/1 (or boolean) numpy array or NDArray
    k : int, or (B,) / (B, 1) per-row limits (numpy or NDArray; negative counts as 0)
    keys : optional, ``mask``'s shape: uniform numbers in [0, 1) to rank by
        instead of drawing them (see :func:`keep_uniform`)

    Returns
    -------
    Mask of ``mask``'s shape and kind: boolean numpy, or 0/1 float32 NDArray
    on ``mask``'s context. A subset of ``mask`` with ``min(k, count)`` entries
    per row (the keep-random rule above); rows with at most ``k`` candidates
    are returned unchanged. numpy input and CPU NDArrays draw from
    ``np.random``; other NDArrays from MXNet's RNG on their own context, so no
    data visits the host.
    """
    squeeze = len(mask.shape) == 1
    if not use_numpy(mask):
        m = mask.expand_dims(0) if squeeze else mask
        kk = k if is_ndarray(k) else mx.nd.array(np.reshape(np.asarray(k, 'float32'), (-1,)),
                                                 ctx=mask.context)
        kk = kk.astype('float32').reshape((-1, 1))
        if kk.shape[0] != m.shape[0]:
            kk = mx.nd.broadcast_to(kk, shape=(m.shape[0], 1))
        if keys is not None:
            keys = keys.reshape(m.shape)
        out = keep_uniform(backend.ND, m, kk, keys)
        return out[0] if squeeze else out
    arr = to_numpy(mask)
    arr = arr[None] if squeeze else arr
    kk = np.asarray(to_numpy(k) if is_ndarray(k) else k, np.float64).reshape(-1, 1)
    if keys is not None:
        keys = to_numpy(keys).reshape(arr.shape)
    out = keep_uniform(NUMPY, arr, kk, keys) > 0
    return like(out[0] if squeeze else out, mask)
