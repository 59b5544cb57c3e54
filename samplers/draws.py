"""Quotas and "keep k of each row": how many samples an image keeps, and which.

Labels follow the package convention (see :mod:`samplers`).

Keep-k has one rule, stated here once and implemented by each backend of
:mod:`samplers.backend` (:meth:`~samplers.backend.Backend.keep_top`,
``keep_lowest``, ``keep_random``):

* **keep-top**: per row, the ``k`` highest scores among the candidates; of
  entries tied at the cut, those of lower index are kept first. ``k`` is
  floored and capped at the row's candidates; ``k <= 0`` keeps none.
* **keep-lowest**: keep-top of ``-keys``.
* **keep-random**: keep-lowest of uniform random keys. The k lowest uniform
  keys are a uniform k-subset, so every subset of that size is equally likely.

numpy ranks only the rows that must drop candidates, by a partial selection
(``np.partition``); ``mx.nd`` and ``mx.sym`` sort each row on the device.
"""
from __future__ import annotations

import numbers

import numpy as np
import mxnet as mx

from . import backend
from .backend import Array, is_ndarray, like, to_numpy, use_numpy

__all__ = ['positive_quota', 'negative_quota', 'keep_random']


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
def keep_random(mask: Array, k, keys: Array | None = None) -> Array:
    """Keep at most ``k`` of the candidates of each row of ``mask``, uniformly at random.

    Parameters
    ----------
    mask : (N,) or (B, N) 0/1 (or boolean) numpy array or NDArray
    k : int, or (B,) / (B, 1) per-row limits (numpy or NDArray; negative counts as 0)
    keys : optional, ``mask``'s shape: uniform numbers in [0, 1) to rank by
        instead of drawing them (see :meth:`samplers.backend.Backend.keep_random`)

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
        out = backend.ND.keep_random(m, kk, keys)
        return out[0] if squeeze else out
    arr = to_numpy(mask)
    arr = arr[None] if squeeze else arr
    kk = np.asarray(to_numpy(k) if is_ndarray(k) else k, np.float64).reshape(-1, 1)
    if keys is not None:
        keys = to_numpy(keys).reshape(arr.shape)
    out = backend.NUMPY.keep_random(arr, kk, keys) > 0
    return like(out[0] if squeeze else out, mask)
