"""The array protocol rules are written against: numpy, ``mx.nd`` and ``mx.sym`` behind one face.

Labels follow the package convention stated in :mod:`samplers`; the constants, array kinds,
host views and conversion are infrastructure, in :mod:`samplers._arrays`. Argument and array
checks live in :mod:`samplers.checks`.

Two engines do the work:

* numpy, for numpy input and for NDArrays on a CPU context (PyPI's mxnet is a
  CPU build without AVX, so numpy is the faster CPU engine; see docs/bench.md);
* ``mx.nd`` operators on the input's context, for every other context (GPU).
  This path never copies to the host. Tests exercise it on CPU with
  :func:`~samplers._arrays.force_ndarray_backend`.

Rules are written once, against one array protocol (:class:`Backend`) with
one implementation per backend: :data:`NUMPY`, :data:`ND` (``mx.nd``) and
:data:`SYM` (``mx.sym``, inside ``hybrid_forward``). The protocol holds only the
operations that differ between the three; algorithms built from them live beside the rule
that owns them (keep-k in :mod:`samplers.draws`, the per-group ranking in
:mod:`samplers.group_rank`). A call picks a backend where it enters (:func:`of` or
:func:`of_kind`) and passes it down.
"""
from __future__ import annotations

import numpy as np
import mxnet as mx

from ._arrays import (IGNORE, NEGATIVE, POSITIVE, finite_rows_F, finite_rows_numpy, is_ndarray,
                      use_numpy)

__all__ = ['Backend', 'NUMPY', 'ND', 'SYM', 'of', 'of_kind']


# Shapes: B images, N rows (anchors), M columns (boxes). A "mask" is 0/1: ``mask`` gives it as
# float32 and ``compact_mask`` as uint8, on every backend.

class Backend:
    """The array protocol a rule is written against; one instance per backend.

    :data:`NUMPY` works on numpy arrays, :data:`ND` on NDArrays with ``mx.nd``
    operators on their context (no host copy), :data:`SYM` on ``mx.sym``
    symbols inside ``hybrid_forward``. A call picks one where it enters
    (:func:`of`, :func:`of_kind`) and passes it down; rules
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
    * :meth:`labels`, the only place 1 / -1 / 0 are written;
    * :meth:`known_empty`, so a rule may skip work a backend can see is not needed.
    """

    def known_empty(self, mask):
        """True when the 0/1 ``mask`` is known to hold no 1: numpy looks; a graph backend
        cannot without a host read, and says False (the rule then computes the branch)."""
        return False

    def labels(self, pos, neg):
        """float32 labels from disjoint 0/1 masks ``pos`` and ``neg`` (any shape, one each).

        :data:`POSITIVE` where ``pos``, :data:`NEGATIVE` where ``neg``,
        :data:`IGNORE` elsewhere: with the convention's 1 / -1 / 0 that is
        ``pos - neg``. The only place the label values are written.
        """
        return self._difference32(pos, neg)



# The arithmetic of Backend.labels is the convention's: check it where the constants live.
assert (POSITIVE, NEGATIVE, IGNORE) == (1, -1, 0), 'Backend.labels assumes 1 / -1 / 0'


# ..................................................................... numpy
def _np_max(a, axis, keepdims=False):
    """``a.max(axis)``; over the last axis one argmax and a gather, which beats ``max`` there
    (docs/bench.md, micro)."""
    a = np.asarray(a)
    if axis not in (-1, a.ndim - 1) or a.dtype.kind != 'f' or a.shape[-1] == 0:
        return a.max(axis=axis, keepdims=keepdims)
    out = np.take_along_axis(a, a.argmax(axis=-1)[..., None], axis=-1)  # NaN wins, as in max
    return out if keepdims else out[..., 0]



def _np_take_rows(a, idx):
    """``out[b, n] = a[b, idx[b, n]]`` for (B, M) ``a`` and (B, N) integer-valued ``idx``."""
    return np.take_along_axis(np.asarray(a), np.asarray(idx).astype(np.int64), axis=1)


def _np_count(m):
    """Count of a 0/1 mask over the last axis, kept as (..., 1) float64: exact past 2**24 and
    safe times a huge ratio. One row is counted by ``count_nonzero``, cheaper than a row sum."""
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
        return finite_rows_numpy(a).astype(np.float32)

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

    def known_empty(self, mask):
        """:meth:`Backend.known_empty`: whether no entry of ``mask`` is nonzero."""
        return not np.any(mask)


# ..................................................................... mx.nd and mx.sym
def _is_array(x):
    return isinstance(x, (mx.nd.NDArray, mx.sym.Symbol))


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
        return self.F.cast(finite_rows_F(self.F, a), 'float32')

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
    """The engine for data ``x``: :data:`NUMPY` for numpy and CPU NDArrays, else :data:`ND`.

    For rules whose inputs the caller turns into numpy (:func:`~samplers._arrays.host_view`)
    and back (:func:`~samplers._arrays.like`) on CPU.
    """
    return NUMPY if use_numpy(x) else ND


def of_kind(x) -> Backend:
    """The backend of ``x``'s own kind: :data:`SYM` for a symbol, :data:`ND` for any NDArray
    (any context), else :data:`NUMPY`: for helpers whose result keeps the input's kind."""
    if isinstance(x, mx.sym.Symbol):
        return SYM
    return ND if is_ndarray(x) else NUMPY
