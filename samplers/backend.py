"""The backend floor: label constants, numpy-or-NDArray dispatch, conversion.

Argument and array checks live in :mod:`samplers.checks`.

Labels follow the package convention stated in :mod:`samplers`: ``POSITIVE`` (1),
``NEGATIVE`` (-1), ``IGNORE`` (0).

Two backends do the work:

* numpy, for numpy input and for NDArrays on a CPU context (PyPI's mxnet is a
  CPU build without AVX, so numpy is the faster CPU engine; measured in
  ``python -m tools.bench``);
* ``mx.nd`` operators on the input's context, for every other context (GPU).
  This path never copies to the host. Tests exercise it on CPU with
  :func:`force_ndarray_backend`.

Rules are written once, against one array protocol (:class:`Backend`) with
one implementation per backend: :data:`NUMPY`, :data:`ND` (``mx.nd``) and
:data:`SYM` (``mx.sym``, inside ``hybrid_forward``). A call picks one where it
enters (:func:`of`, :func:`of_kind`, :func:`for_F`) and passes it down.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Union

import numpy as np
import mxnet as mx
from mxnet.base import _LIB, check_call

__all__ = [
    'POSITIVE', 'NEGATIVE', 'IGNORE',
    'is_ndarray', 'use_numpy', 'force_ndarray_backend', 'ndarray_backend_forced', 'to_numpy',
    'like', 'host_view', 'write_in_place', 'host_threads', 'map_blocks',
    'finite_F', 'neg_inf_like_F',
    'warn_once',
    'Array', 'Backend', 'NUMPY', 'ND', 'SYM', 'of', 'of_kind', 'for_F',
]


# --------------------------------------------------------------------------- label constants
#: Label of a positive sample.
POSITIVE = 1
#: Label of a negative sample.
NEGATIVE = -1
#: Label of an ignored sample (neither trained as object nor as background).
IGNORE = 0


# --------------------------------------------------------------------------- kinds and backends
_BACKEND = threading.local()


_NDARRAY = mx.nd.NDArray  # looked up once: is_ndarray runs dozens of times per call


def is_ndarray(x):
    """True for an ``mx.nd.NDArray``."""
    return isinstance(x, _NDARRAY)


def use_numpy(x):
    """Whether ``x`` is handled by the numpy backend.

    True for numpy arrays and for NDArrays on a CPU context, unless
    :func:`force_ndarray_backend` is active.
    """
    if not is_ndarray(x):
        return True
    if ndarray_backend_forced():
        return False
    return x.context.device_type in ('cpu', 'cpu_pinned', 'cpu_shared')


def ndarray_backend_forced():
    """Whether :func:`force_ndarray_backend` is active in the calling thread."""
    return getattr(_BACKEND, 'force_nd', False)


@contextlib.contextmanager
def force_ndarray_backend():
    """Within this block, NDArray inputs take the ``mx.nd`` path on any context.

    This is the code path GPU contexts use; forcing it on CPU is how the tests
    check it without a GPU. Thread-local.
    """
    old = getattr(_BACKEND, 'force_nd', False)
    _BACKEND.force_nd = True
    try:
        yield
    finally:
        _BACKEND.force_nd = old


# --------------------------------------------------------------------------- conversion
def to_numpy(x, dtype=None):
    """``x`` as a numpy array (copying NDArrays to the host)."""
    arr = x.asnumpy() if is_ndarray(x) else np.asarray(x)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def like(result, reference, dtype=None):
    """Return numpy ``result`` in the kind of ``reference``.

    An NDArray reference gives an NDArray on its context; anything else gives
    numpy. ``dtype`` (optional) sets the result's dtype.
    """
    if dtype is not None:
        result = np.asarray(result).astype(dtype, copy=False)
    if is_ndarray(reference):
        return mx.nd.array(result, ctx=reference.context,
                           dtype=result.dtype if dtype is None else dtype)
    return result


def host_view(x):
    """A read-only numpy view of a CPU NDArray's memory, without copying; numpy input as is.

    ``x`` a numpy array or an NDArray. An NDArray on a CPU context with default
    storage is waited for (``wait_to_read``) and its buffer wrapped in place
    (MXNet first turns an MKLDNN layout into the default one): the view keeps
    ``x`` alive, and shows later writes to ``x``, so read it before handing
    ``x`` back to MXNet. Any other NDArray (GPU, sparse, empty) is copied
    with ``asnumpy``.
    """
    if not is_ndarray(x):
        return np.asarray(x)
    if x.context.device_type not in ('cpu', 'cpu_pinned', 'cpu_shared') \
            or x.stype != 'default' or x.size == 0:
        return x.asnumpy()
    x.wait_to_read()
    view = _memory_of(x)
    view.flags.writeable = False
    return view


def write_in_place(out, values):
    """Copy numpy ``values`` into the memory of CPU NDArray ``out`` (default storage) without
    waiting on it: for an operator's own output, which nothing else reads or writes while
    the operator runs (a wait there would never return)."""
    _memory_of(out)[...] = values


def _memory_of(x):
    """A numpy array over CPU NDArray ``x``'s memory (default storage), without waiting on
    ``x``; the array keeps ``x`` alive."""
    pointer = ctypes.c_void_p()
    check_call(_LIB.MXNDArrayGetData(x.handle, ctypes.byref(pointer)))
    dtype = np.dtype(x.dtype)
    buf = (ctypes.c_char * (x.size * dtype.itemsize)).from_address(pointer.value)
    buf.owner = x  # the buffer (the array's base) holds the NDArray
    return np.frombuffer(buf, dtype=dtype).reshape(x.shape)


# --------------------------------------------------------------------------- host threads
#: At most this many threads share a numpy pass (:func:`map_blocks`).
MAX_HOST_THREADS = 8
_POOL = {'pid': None, 'pool': None, 'size': 0}
_POOL_LOCK = threading.Lock()


def host_threads():
    """Threads for a numpy pass over a large array: ``OMP_NUM_THREADS`` if set
    (the variable that also caps MXNet's CPU operators), else the CPUs this
    process may run on; at most :data:`MAX_HOST_THREADS`, at least 1."""
    wanted = os.environ.get('OMP_NUM_THREADS', '').strip()
    try:
        count = int(wanted) if wanted else len(os.sched_getaffinity(0))
    except (ValueError, AttributeError):  # a malformed variable, or no sched_getaffinity
        count = os.cpu_count() or 1
    return max(1, min(count, MAX_HOST_THREADS))


def map_blocks(fn, parts, threads=None):
    """``fn(part)`` for every item of ``parts``, shared out over ``threads``
    threads (default :func:`host_threads`), every ``threads``-th part to the
    same thread, the calling thread taking one share; returns None.

    For numpy work that releases the GIL and writes disjoint outputs; ``fn``
    must not call :func:`map_blocks` itself. One thread, or one part, runs
    inline. The pool is made per process, so a forked DataLoader worker
    builds its own; an exception in ``fn`` is raised here.
    """
    threads = host_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError('threads must be >= 1, got {}'.format(threads))
    parts = list(parts)
    threads = min(threads, len(parts))
    if threads <= 1:
        for part in parts:
            fn(part)
        return
    runs = [parts[i::threads] for i in range(threads)]
    futures = [_pool(threads).submit(_each, fn, run) for run in runs[1:]]
    try:
        _each(fn, runs[0])  # this thread takes one share itself
    finally:
        for future in futures:
            future.result()


def _each(fn, parts):
    for part in parts:
        fn(part)


def _pool(size):
    """This process's thread pool with at least ``size - 1`` workers."""
    with _POOL_LOCK:
        if _POOL['pid'] != os.getpid():  # a forked child: the parent's threads are not here
            _POOL.update(pid=os.getpid(), size=0, pool=None)
        if _POOL['size'] < size - 1:
            # A smaller pool is dropped, not shut down: a call in another thread may still
            # be submitting to it (its idle threads end when it is collected).
            _POOL.update(size=size - 1, pool=ThreadPoolExecutor(
                size - 1, thread_name_prefix='samplers'))
        return _POOL['pool']


# --------------------------------------------------------------------------- warn once
_LOG = logging.getLogger('samplers')


def warn_once(owner, key, message):
    """Log ``message`` as a warning the first time ``owner`` reports ``key``."""
    seen = owner.__dict__.setdefault('_samplers_warned', set())
    if key not in seen:
        seen.add(key)
        _LOG.warning(message)


# --------------------------------------------------------------------------- the array protocol
#: What a rule's arrays may be: one backend's kind at a time.
Array = Union[np.ndarray, mx.nd.NDArray, mx.sym.Symbol]

# Shapes: B images, N rows (anchors), M columns (boxes). A "mask" is 0/1: ``mask`` gives it as
# float32 and ``compact_mask`` as uint8, on every backend.

class Backend:
    """The array protocol a rule is written against; one instance per backend.

    :data:`NUMPY` works on numpy arrays, :data:`ND` on NDArrays with ``mx.nd``
    operators on their context (no host copy), :data:`SYM` on ``mx.sym``
    symbols inside ``hybrid_forward``. A call picks one where it enters
    (:func:`of`, :func:`of_kind`, :func:`for_F`) and passes it down; rules
    combine its methods with the operators all three share (``*``, ``+``,
    ``-``, ``1 - m``, comparisons, on equal shapes). Every method means the
    same on each backend: arguments broadcast like numpy's (scalars, and
    size-1 axes of arrays of one rank), and results have the dtype each
    method states. The methods:

    * elementwise: ``where``, ``maximum``, ``minimum``, ``floor``, ``log``,
      ``clip``, ``divide``, ``divide_where``, ``nan_where``, ``float32``, ``float64``;
    * reductions and picks: ``max``, ``sum``, ``argmax`` (float32 indices), ``max_and_argmax``,
      ``count`` ((..., 1) float64), ``take_rows``, ``hits``, ``finite_rows``;
    * masks: ``mask`` (float32 0/1), ``compact_mask`` (uint8 0/1),
      ``zeros_like`` (float32), ``uniform_like`` (float32 in [0, 1));
    * shapes: ``expand``, ``concat``, ``broadcast_to``, and ``columns``,
      ``unstack`` (numpy and mx.nd: a symbol's last axis has no known length);
    * draws: :meth:`keep_top`, :meth:`keep_lowest`, :meth:`keep_random`,
      ``lowest_per_group``, ``group_sizes``, and :meth:`labels`;
    * :meth:`known_empty`, so a rule may skip work a backend can see is not needed.
    """

    def known_empty(self, mask):
        """True when the 0/1 ``mask`` is known to hold no 1: numpy looks; a graph backend
        cannot without a host read, and says False (the rule then computes the branch)."""
        return False

    def keep_top(self, scores, mask, k):
        """Per row, the ``k`` highest ``scores`` among ``mask``: float32 0/1 (B, N).

        ``scores`` (B, N) float (not NaN at candidates; masked-out entries not
        +inf); ``mask`` (B, N) 0/1; ``k`` (B, 1) counts, floored and capped at
        the row's candidates (``k <= 0`` keeps none). The tie rule: everything
        above the k-th highest candidate score ``t`` is kept, then candidates
        scoring ``t`` from the lowest index up until the row holds ``k``.
        """
        raise NotImplementedError

    def labels(self, pos, neg):
        """float32 labels from disjoint 0/1 masks ``pos`` and ``neg`` (any shape, one each).

        :data:`POSITIVE` where ``pos``, :data:`NEGATIVE` where ``neg``,
        :data:`IGNORE` elsewhere: with the convention's 1 / -1 / 0 that is
        ``pos - neg``. The only place the label values are written.
        """
        return self._difference32(pos, neg)

    def keep_lowest(self, keys, mask, k):
        """Per row, the ``k`` candidates of ``mask`` with the lowest ``keys``: float32 0/1 (B, N).

        :meth:`keep_top` of ``-keys``, so ties go to the lower index. With
        uniform ``keys`` that is a uniformly random k-subset of each row's
        candidates (the k lowest uniform keys are a uniform k-subset).
        """
        return self.keep_top(-self.float32(keys), mask, k)

    def keep_random(self, mask, k, keys=None):
        """Per row, ``min(k, count)`` candidates of ``mask`` uniformly at random: float32 0/1.

        ``mask`` (B, N) 0/1; ``k`` (B, 1) counts (floats floored, negative
        keeps none); ``keys`` (B, N) uniform numbers in [0, 1) to use, or None
        to draw them (:meth:`uniform_like`). :meth:`keep_lowest` of the keys.
        """
        if keys is None:
            keys = self.uniform_like(mask)
        return self.keep_lowest(keys, mask, k)


# The arithmetic of Backend.labels is the convention's: check it where the constants live.
assert (POSITIVE, NEGATIVE, IGNORE) == (1, -1, 0), 'Backend.labels assumes 1 / -1 / 0'


# ..................................................................... numpy
def _np_max(a, axis, keepdims=False):
    """``a.max(axis)``; over the last axis one argmax and a gather, 3x faster than max."""
    a = np.asarray(a)
    if axis not in (-1, a.ndim - 1) or a.dtype.kind != 'f' or a.shape[-1] == 0:
        return a.max(axis=axis, keepdims=keepdims)
    out = np.take_along_axis(a, a.argmax(axis=-1)[..., None], axis=-1)  # NaN wins, as in max
    return out if keepdims else out[..., 0]


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
    below = np.flatnonzero(keys < t)
    return np.concatenate([below, np.flatnonzero(keys == t)[:take - below.size]])


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
    counts = np.array([np.count_nonzero(row) for row in cand])  # per row: 5x the axis form
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


def _np_take_rows(a, idx):
    """``out[b, n] = a[b, idx[b, n]]`` for (B, M) ``a`` and (B, N) integer-valued ``idx``."""
    return np.take_along_axis(np.asarray(a), np.asarray(idx).astype(np.int64), axis=1)


def _np_count(m):
    """Count of a 0/1 mask over the last axis, kept as (..., 1) float64: exact past 2**24 and
    safe times a huge ratio. One row is counted by ``count_nonzero`` (10x a row sum)."""
    m = np.asarray(m)
    if m.ndim == 1:
        return np.full(1, np.count_nonzero(m), np.float64)
    return m.sum(axis=-1, keepdims=True, dtype=np.float64)


def _np_compact_mask(m):
    """A 0/1 uint8 mask: a boolean array is viewed as uint8 (no copy), anything else converted."""
    if isinstance(m, np.ndarray) and m.dtype == np.bool_:
        return m.view(np.uint8)
    return np.asarray(m, dtype=np.uint8)


def _np_expand(a, axis):
    """``np.expand_dims(a, axis)`` for one int axis, as a reshape (a view, less overhead)."""
    a = np.asarray(a)
    if axis < 0:
        axis += a.ndim + 1
    return a.reshape(a.shape[:axis] + (1,) + a.shape[axis:])


class _Numpy(Backend):
    """The protocol on numpy arrays (see :class:`Backend`)."""

    def __repr__(self):
        return 'samplers.backend.NUMPY'

    # elementwise
    def where(self, cond, x, y):
        """``x`` where ``cond`` is nonzero, else ``y``."""
        return np.where(cond, x, y)

    def maximum(self, a, b):
        """Elementwise maximum."""
        return np.maximum(a, b)

    def minimum(self, a, b):
        """Elementwise minimum."""
        return np.minimum(a, b)

    def floor(self, a):
        """Elementwise floor."""
        return np.floor(a)

    def log(self, a):
        """Natural log; ``log(0)`` is -inf without a warning, as in MXNet."""
        with np.errstate(divide='ignore', invalid='ignore'):
            return np.log(a)

    def clip(self, a, low, high):
        """``a`` clipped to [low, high]."""
        return np.clip(a, low, high)

    def divide(self, a, b):
        """``a / b``."""
        return np.divide(a, b)

    def divide_where(self, a, b, cond):
        """``a / b`` where ``cond``, else 0 (nothing is computed there)."""
        return np.divide(a, b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape),
                                            np.result_type(a, b)), where=cond)

    def nan_where(self, a, *bad):
        """``a`` with NaN wherever one of the 0/1 ``bad`` masks (broadcast against it) is 1."""
        if not any(np.any(b) for b in bad):
            return a
        hit = bad[0] > 0
        for b in bad[1:]:
            hit = hit | (b > 0)
        return np.where(hit, np.nan, a)

    def float32(self, a):
        """``a`` as float32."""
        return np.asarray(a, dtype=np.float32)

    def float64(self, a):
        """``a`` as float64."""
        return np.asarray(a, dtype=np.float64)

    # reductions and picks
    def max(self, a, axis, keepdims=False):
        """Maximum over ``axis``."""
        return _np_max(a, axis, keepdims)

    def sum(self, a, axis, keepdims=False):
        """Sum over ``axis``."""
        return np.asarray(a).sum(axis=axis, keepdims=keepdims)

    def argmax(self, a, axis):
        """Index of the (first) maximum over ``axis``, as float32 (MXNet's index type)."""
        return np.asarray(a).argmax(axis=axis).astype(np.float32)

    def max_and_argmax(self, a):
        """``(max(a, -1), argmax(a, -1))`` from one argmax and a gather."""
        a = np.asarray(a)
        index = a.argmax(axis=-1)
        return np.take_along_axis(a, index[..., None], axis=-1)[..., 0], index.astype(np.float32)

    def count(self, m):
        """Per-row count of a 0/1 mask over the last axis: (..., 1) float64."""
        return _np_count(m)

    def take_rows(self, a, idx):
        """``out[b, n] = a[b, idx[b, n]]``: (B, M) ``a``, (B, N) integer-valued ``idx``."""
        return _np_take_rows(a, idx)

    def hits(self, cond, flags):
        """(B, N) float32 0/1 from (B, N, M) ``cond`` and (B, M) ``flags``: some m has both."""
        return np.logical_and(cond, (flags > 0)[:, None, :]).any(axis=-1).astype(np.float32)

    def finite_rows(self, a):
        """float32 0/1 of ``a.shape[:-1]``: 1 where the last axis holds finite values only."""
        return np.isfinite(a).all(axis=-1).astype(np.float32)

    # masks and constants
    def mask(self, m):
        """A 0/1 (or boolean) mask as float32 0/1."""
        return np.asarray(m, dtype=np.float32)

    def compact_mask(self, m):
        """A 0/1 (or boolean) mask as uint8 0/1 (a boolean array is viewed, not copied)."""
        return _np_compact_mask(m)

    def zeros_like(self, a):
        """float32 zeros of ``a``'s shape."""
        return np.zeros(np.shape(a), np.float32)

    def uniform_like(self, a):
        """float32 uniform numbers in [0, 1) of ``a``'s shape, from ``np.random``."""
        return np.random.random_sample(np.shape(a)).astype(np.float32)

    def _difference32(self, a, b):
        return np.subtract(a, b, dtype=np.float32)  # one pass, no float temporaries

    # shapes
    def expand(self, a, axis):
        """``a`` with a new size-1 ``axis``."""
        return _np_expand(a, axis)

    def columns(self, a):
        """(..., K) -> K arrays (..., 1)."""
        return [a[..., i:i + 1] for i in range(a.shape[-1])]

    def unstack(self, a):
        """(..., K) -> K arrays (...)."""
        return [a[..., i] for i in range(a.shape[-1])]

    def concat(self, parts):
        """Join along the last axis."""
        return np.concatenate(parts, axis=-1)

    def broadcast_to(self, a, shape):
        """``a`` broadcast to ``shape`` (a read-only view)."""
        return np.broadcast_to(a, shape)

    # keep k
    def keep_top(self, scores, mask, k):
        """:meth:`Backend.keep_top` (``k`` may also be a number). Only rows with more
        candidates than ``k`` are ranked, by a partial selection."""
        scores = np.asarray(scores)
        return _np_keep(mask, k, lambda r, idx: -scores[r, idx],
                        full_keys=lambda rows, cand: np.where(cand, -scores[rows], np.inf))

    def keep_lowest(self, keys, mask, k):
        """:meth:`Backend.keep_lowest`, ranking the keys themselves (no negated copy)."""
        keys = np.asarray(keys)
        return _np_keep(mask, k, lambda r, idx: keys[r, idx], spread=True)

    def keep_random(self, mask, k, keys=None):
        """:meth:`Backend.keep_random`; without ``keys``, ``np.random`` draws keys for the
        candidates of the rows that must drop some (row by row), not for every entry."""
        if keys is not None:
            return self.keep_lowest(keys, mask, k)
        return _np_keep(mask, k, lambda r, idx: np.random.random(idx.size), spread=True)

    def lowest_per_group(self, mask, group, depth, share, keys):
        """See :meth:`_Graph.lowest_per_group`: the same statement, by a partial sort of the
        candidates' packed (group, key) values."""
        return _group_share_numpy(mask, group, depth, share, keys)

    def known_empty(self, mask):
        """:meth:`Backend.known_empty`: whether no entry of ``mask`` is nonzero."""
        return not np.any(mask)

    def group_sizes(self, mask, group, depth):
        """See :meth:`_Graph.group_sizes`: one ``bincount`` over the candidates' (row, group)
        ids."""
        rows, cols = np.nonzero(np.asarray(mask) > 0)
        out = np.zeros(np.shape(mask), np.float32)
        ids = rows * depth + np.asarray(group)[rows, cols].astype(np.int64)
        out[rows, cols] = np.bincount(ids, minlength=np.shape(mask)[0] * depth)[ids]
        return out


# ..................................................................... mx.nd and mx.sym
def _is_array(x):
    return isinstance(x, (_NDARRAY, mx.sym.Symbol))


class _Graph(Backend):
    """The protocol with MXNet operators ``F`` (``mx.nd`` or ``mx.sym``); see :class:`Backend`."""

    def __init__(self, F, name):
        self.F = F
        self._name = name

    def __repr__(self):
        return 'samplers.backend.' + self._name

    # elementwise
    def where(self, cond, x, y):
        """``x`` where ``cond`` is nonzero, else ``y``."""
        F = self.F
        arrays = [a for a in (cond, x, y) if _is_array(a)]
        shape = arrays[0]
        for a in arrays[1:]:  # the broadcast shape, as zeros
            shape = F.broadcast_add(F.zeros_like(F.cast(shape, 'float32')),
                                    F.zeros_like(F.cast(a, 'float32')))
        value = next((a for a in (x, y) if _is_array(a)), None)

        def full(a):
            if _is_array(a):
                return F.broadcast_like(a, shape)
            ref = shape if value is None else F.broadcast_like(value, shape)
            return F.zeros_like(ref) + a
        return F.where(full(cond), full(x), full(y))

    def _binary(self, name, a, b, scalar):
        if _is_array(a) and _is_array(b):
            return getattr(self.F, 'broadcast_' + name)(a, b)
        if _is_array(a) or _is_array(b):
            return getattr(self.F, name)(a, b)
        return scalar(a, b)

    def maximum(self, a, b):
        """Elementwise maximum."""
        return self._binary('maximum', a, b, max)

    def minimum(self, a, b):
        """Elementwise minimum."""
        return self._binary('minimum', a, b, min)

    def floor(self, a):
        """Elementwise floor."""
        return self.F.floor(a)

    def log(self, a):
        """Natural log (``log(0)`` is -inf)."""
        return self.F.log(a)

    def clip(self, a, low, high):
        """``a`` clipped to [low, high]."""
        return self.F.clip(a, low, high)

    def divide(self, a, b):
        """``a / b``."""
        if _is_array(a) and _is_array(b):
            return self.F.broadcast_div(a, b)
        return a / b

    def divide_where(self, a, b, cond):
        """``a / b`` where ``cond``, else 0."""
        return self.where(cond, self.divide(a, self.where(cond, b, 1.0)), 0.0)

    def nan_where(self, a, *bad):
        """``a`` with NaN wherever one of the 0/1 ``bad`` masks (broadcast against it) is 1."""
        hit = bad[0]
        for b in bad[1:]:
            hit = self.maximum(hit, b)
        return self.where(hit > 0, a * np.nan, a)

    def float32(self, a):
        """``a`` as float32."""
        return self.F.cast(a, 'float32')

    def float64(self, a):
        """``a`` as float64."""
        return self.F.cast(a, 'float64')

    # reductions and picks
    def max(self, a, axis, keepdims=False):
        """Maximum over ``axis``."""
        return self.F.max(a, axis=axis, keepdims=keepdims)

    def sum(self, a, axis, keepdims=False):
        """Sum over ``axis``."""
        return self.F.sum(a, axis=axis, keepdims=keepdims)

    def argmax(self, a, axis):
        """Index of the (first) maximum over ``axis``, as float32 (MXNet's index type)."""
        return self.F.cast(self.F.argmax(a, axis=axis), 'float32')

    def max_and_argmax(self, a):
        """``(max(a, -1), argmax(a, -1))``."""
        return self.max(a, -1), self.argmax(a, -1)

    def count(self, m):
        """Per-row count of a 0/1 mask over the last axis: (..., 1) float64."""
        return self.F.sum(self.F.cast(m, 'float64'), axis=-1, keepdims=True)

    def take_rows(self, a, idx):
        """``out[b, n] = a[b, idx[b, n]]``: (B, M) ``a``, (B, N) integer-valued ``idx``."""
        F = self.F
        full = F.broadcast_like(F.expand_dims(a, axis=1), F.expand_dims(idx, axis=2),
                                lhs_axes=(1,), rhs_axes=(1,))
        return F.pick(full, idx, axis=2)

    def hits(self, cond, flags):
        """(B, N) float32 0/1 from (B, N, M) ``cond`` and (B, M) ``flags``: some m has both."""
        F = self.F
        dot = F.batch_dot(F.cast(cond, 'float32'),
                          F.expand_dims(F.cast(flags > 0, 'float32'), axis=2))
        return F.cast(F.reshape(dot, shape=(0, 0)) > 0, 'float32')

    def finite_rows(self, a):
        """float32 0/1 of ``a.shape[:-1]``: 1 where the last axis holds finite values only."""
        return self.F.cast(self.F.min(finite_F(self.F, a), axis=-1), 'float32')

    # masks and constants
    def mask(self, m):
        """A 0/1 mask as float32 0/1."""
        return self.F.cast(m, 'float32')

    def compact_mask(self, m):
        """A 0/1 mask as uint8 0/1."""
        return self.F.cast(m, 'uint8')

    def zeros_like(self, a):
        """float32 zeros of ``a``'s shape."""
        return self.F.zeros_like(self.F.cast(a, 'float32'))

    def uniform_like(self, a):
        """float32 uniform numbers in [0, 1) of ``a``'s shape, from ``mx.random`` on its context."""
        return self.F.random.uniform_like(self.F.cast(a, 'float32'))

    def _difference32(self, a, b):
        return self.mask(a) - self.mask(b)

    # shapes
    def expand(self, a, axis):
        """``a`` with a new size-1 ``axis``."""
        return self.F.expand_dims(a, axis=axis)

    def concat(self, parts):
        """Join along the last axis."""
        return self.F.concat(*parts, dim=-1)

    def broadcast_to(self, a, shape):
        """``a`` broadcast to ``shape``."""
        return self.F.broadcast_to(a, shape=shape)

    # keep k
    def keep_top(self, scores, mask, k):
        """:meth:`Backend.keep_top`: one sort per row finds the k-th highest score, a cumulative
        sum takes the tied entries from the lowest index up."""
        F = self.F
        mask = F.cast(mask > 0, 'float32')
        # k above the row's count would index past the row (and wrap past 2**31 in pick).
        k = F.minimum(F.cast(k, 'float32'), F.sum(mask, axis=1, keepdims=True))
        key = F.where(mask > 0, scores, neg_inf_like_F(F, scores))
        ranked = F.sort(key, axis=1, is_ascend=False)
        kth = F.pick(ranked, F.reshape(F.relu(k - 1), shape=(-1,)), axis=1, keepdims=True)
        above = F.cast(F.broadcast_greater(key, kth), 'float32') * mask
        tied = F.cast(F.broadcast_equal(key, kth), 'float32') * mask
        room = k - F.sum(above, axis=1, keepdims=True)
        return above + tied * F.broadcast_lesser_equal(F.cumsum(tied, axis=1), room)

    def lowest_per_group(self, mask, group, depth, share, keys):
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
        groups' leftovers. Here a one-hot (B, N, depth) counts the groups and
        sorting by (group, key) ranks the candidates inside their group.
        """
        F = self.F
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

    def group_sizes(self, mask, group, depth):
        """float32 (B, N): the number of candidates of ``mask`` in each candidate's group, 0 off
        ``mask``. ``mask`` (B, N) 0/1; ``group`` (B, N) integers in [0, ``depth``)."""
        F = self.F
        g = F.where(mask, group, F.ones_like(group) * depth)  # non-candidates: past every group
        onehot = F.one_hot(g, depth=depth)  # (B, N, depth); zero rows off the mask
        counts = F.sum(onehot, axis=1)  # (B, depth)
        return F.cast(F.sum(F.broadcast_mul(onehot, F.expand_dims(counts, axis=1)), axis=2),
                      'float32')


def _nd_take_rows(a, idx):
    """NDArray ``take_rows``, one ``gather_nd`` on the inputs' context."""
    batch = a.shape[0]
    rows = mx.nd.broadcast_like(mx.nd.arange(batch, ctx=a.context).reshape((batch, 1)),
                                idx, lhs_axes=(1,), rhs_axes=(1,))
    return mx.nd.gather_nd(a, mx.nd.stack(rows, idx.astype(rows.dtype)))


class _ND(_Graph):
    """The protocol with ``mx.nd`` operators on the inputs' context (shapes known)."""

    def where(self, cond, x, y):
        """``x`` where ``cond`` is nonzero, else ``y``."""
        nd = mx.nd
        ref = next(a for a in (cond, x, y) if is_ndarray(a))
        shape = np.broadcast_shapes(*(tuple(a.shape) for a in (cond, x, y) if is_ndarray(a)))
        dtype = next((a.dtype for a in (x, y) if is_ndarray(a)), 'float32')

        def full(a):
            if not is_ndarray(a):
                return nd.full(shape, a, ctx=ref.context, dtype=dtype)
            return a if tuple(a.shape) == shape else nd.broadcast_to(a, shape=shape)
        return nd.where(full(cond), full(x), full(y))

    def take_rows(self, a, idx):
        """``out[b, n] = a[b, idx[b, n]]``: (B, M) ``a``, (B, N) integer-valued ``idx``."""
        return _nd_take_rows(a, idx)

    def zeros_like(self, a):
        """float32 zeros of ``a``'s shape."""
        return mx.nd.zeros(a.shape, ctx=a.context, dtype='float32')

    def columns(self, a):
        """(..., K) -> K arrays (..., 1)."""
        if a.shape[-1] == 1:
            return [a]
        return list(mx.nd.split(a, a.shape[-1], axis=-1, squeeze_axis=False))

    def unstack(self, a):
        """(..., K) -> K arrays (...)."""
        if a.shape[-1] == 1:
            return [a.reshape(a.shape[:-1])]
        return list(mx.nd.split(a, a.shape[-1], axis=-1, squeeze_axis=True))


class _Sym(_Graph):
    """The protocol with ``mx.sym`` operators, for graphs. A symbol's shape is unknown, so
    ``columns`` and ``unstack`` (which need the last axis' length) are numpy and mx.nd only."""


#: The protocol on numpy arrays.
NUMPY = _Numpy()
#: The protocol with ``mx.nd`` operators on the inputs' context.
ND = _ND(mx.nd, 'ND')
#: The protocol with ``mx.sym`` operators, inside ``hybrid_forward``.
SYM = _Sym(mx.sym, 'SYM')


def of(x) -> Backend:
    """The backend for ``x``: :data:`NUMPY` when :func:`use_numpy` (numpy input, CPU
    NDArrays), else :data:`ND`. Callers convert CPU NDArrays with :func:`host_view` /
    :func:`to_numpy` and back with :func:`like`."""
    return NUMPY if use_numpy(x) else ND


def of_kind(x) -> Backend:
    """:data:`ND` for any NDArray (any context), else :data:`NUMPY`: for helpers whose result
    keeps the input's kind (box formats, encodings)."""
    return ND if is_ndarray(x) else NUMPY


def for_F(F) -> Backend:
    """The backend of Gluon's ``F``: :data:`ND` for ``mx.nd``, :data:`SYM` for ``mx.sym``."""
    return ND if F is mx.nd else SYM


# ..................................................................... numpy group shares
def _group_share_numpy(mask, group, depth, share, keys):
    """numpy :meth:`_Graph.lowest_per_group` over the candidates only.

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
    at = ids.astype(np.intp)  # for look-ups per id: indexing by intp is 3x np.take's speed
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
            tied_ids = ids[tied]
            order = np.argsort(tied_ids, kind='stable')
            run_first = np.ones(tied.size, bool)
            run_first[1:] = tied_ids[order][1:] != tied_ids[order][:-1]
            pos = np.arange(tied.size)
            rank = pos - np.maximum.accumulate(np.where(run_first, pos, 0))
            tied = tied[order[rank < room[tied_ids[order]]]]
            chosen[tied] = True
            np.maximum(top, _group_max(kc[tied], ids[tied], num_ids), out=top)
    picked[flat] = chosen
    t = top[at]
    rest = np.zeros(cand.size, np.float32)
    rest[flat] = (kc - t) / (1 - t)
    return picked.reshape(cand.shape), rest.reshape(cand.shape)


def _group_max(values, ids, num_ids):
    """Per id in [0, ``num_ids``), the largest of the non-negative ``values`` with that id;
    0 for an id with none. A stable sort of small integers is a radix sort in numpy, after
    which ``np.maximum.reduceat`` reads each id's run: several times ``np.maximum.at``'s speed.
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


# --------------------------------------------------------------------------- no infinite scalars
# MXNet parses scalar arguments with ``strtod`` and a stale ``errno`` (see
# :func:`samplers.checks.parse_safe`): infinities inside ``mx.nd`` / ``mx.sym`` expressions are
# made from arrays, never passed as scalars.
def finite_F(F, x):
    """Where ``x`` is finite (not NaN, not +-inf): 1/0 in ``x``'s dtype (boolean on numpy).

    ``x - x`` is 0 exactly at finite entries and NaN elsewhere; no infinite scalar is parsed.
    """
    return (x - x) == 0


def neg_inf_like_F(F, x):
    """-inf of ``x``'s shape and dtype, as ``log(0)``: no infinite scalar is parsed."""
    return F.log(F.zeros_like(x))
