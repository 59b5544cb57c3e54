"""The backend floor: label constants, numpy-or-NDArray dispatch, conversion.

Argument and array checks live in :mod:`samplers.checks`.

Labels follow the package convention stated in :mod:`samplers`: ``POSITIVE`` (1),
``NEGATIVE`` (-1), ``IGNORE`` (0).

Two backends do the work:

* numpy, for numpy input and for NDArrays on a CPU context (PyPI's mxnet is a
  CPU build without AVX, so numpy is the faster CPU engine; measured in
  ``python -m samplers.bench``);
* ``mx.nd`` operators on the input's context, for every other context (GPU).
  This path never copies to the host. Tests exercise it on CPU with
  :func:`force_ndarray_backend`.

Rules are written once, in one of two styles:

* over 0/1 float masks with the operators numpy arrays and NDArrays share
  (``*``, ``+``, ``1 - m``, comparisons) plus the helpers of an ops namespace:
  :func:`ops` (by backend), :func:`kind_ops` (by kind) or :func:`ops_F` (by
  Gluon's ``F``) return :data:`NUMPY_OPS`, :data:`ND_OPS` or :data:`SYM_OPS`;
* Gluon-style ``rule_F(F, ...)`` bodies calling ``mx.nd`` operators by name;
  :data:`NUMPY_F` gives numpy those names and signatures, so ``F`` may be
  ``mx.nd``, ``mx.sym`` or ``NUMPY_F``.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import types

import numpy as np
import mxnet as mx
from mxnet.base import _LIB, check_call

__all__ = [
    'POSITIVE', 'NEGATIVE', 'IGNORE',
    'is_ndarray', 'use_numpy', 'force_ndarray_backend', 'ndarray_backend_forced', 'to_numpy',
    'like', 'host_view',
    'finite_F', 'neg_inf_like_F',
    'warn_once',
    'NUMPY_OPS', 'ND_OPS', 'SYM_OPS', 'ops', 'ops_F', 'kind_ops', 'NUMPY_F', 'labels_from_masks',
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
    pointer = ctypes.c_void_p()
    check_call(_LIB.MXNDArrayGetData(x.handle, ctypes.byref(pointer)))
    dtype = np.dtype(x.dtype)
    buf = (ctypes.c_char * (x.size * dtype.itemsize)).from_address(pointer.value)
    buf.owner = x  # the buffer (the view's base) holds the NDArray
    view = np.frombuffer(buf, dtype=dtype).reshape(x.shape)
    view.flags.writeable = False
    return view


# --------------------------------------------------------------------------- warn once
_LOG = logging.getLogger('samplers')


def warn_once(owner, key, message):
    """Log ``message`` as a warning the first time ``owner`` reports ``key``."""
    seen = owner.__dict__.setdefault('_samplers_warned', set())
    if key not in seen:
        seen.add(key)
        _LOG.warning(message)


# --------------------------------------------------------------------------- ops namespaces
# Each namespace lists the same helpers (SYM_OPS the subset rules inside hybrid_forward use).
# Shapes: B images, N rows (anchors), M columns (boxes); a "mask" is 0/1 float32.

def _np_max(a, axis, keepdims=False):
    """``a.max(axis)``; over the last axis one argmax and a gather, 3x faster than max."""
    if axis not in (-1, a.ndim - 1) or a.dtype.kind != 'f' or a.shape[-1] == 0:
        return a.max(axis=axis, keepdims=keepdims)
    out = np.take_along_axis(a, a.argmax(axis=-1)[..., None], axis=-1)  # NaN wins, as in max
    return out if keepdims else out[..., 0]


def _np_take_rows(a, idx):
    """``out[b, n] = a[b, idx[b, n]]`` for (B, M) ``a`` and (B, N) integer-valued ``idx``."""
    return np.take_along_axis(a, np.asarray(idx).astype(np.int64), axis=1)


def _nd_take_rows(a, idx):
    """NDArray :func:`_np_take_rows`, one ``gather_nd`` on the inputs' context."""
    batch = a.shape[0]
    rows = mx.nd.broadcast_like(mx.nd.arange(batch, ctx=a.context).reshape((batch, 1)),
                                idx, lhs_axes=(1,), rhs_axes=(1,))
    return mx.nd.gather_nd(a, mx.nd.stack(rows, idx.astype(rows.dtype)))


def _nd_where(cond, x, y):
    """``mx.nd.where`` with broadcasting of scalars and shapes, like ``np.where``."""
    nd = mx.nd
    ref = next((a for a in (cond, x, y) if is_ndarray(a)), None)
    shape = np.broadcast_shapes(*(tuple(a.shape) for a in (cond, x, y) if is_ndarray(a)))

    def full(a):
        if not is_ndarray(a):
            return nd.full(shape, a, ctx=ref.context, dtype=_nd_dtype(x, y))
        return a if tuple(a.shape) == shape else nd.broadcast_to(a, shape=shape)
    return nd.where(full(cond), full(x), full(y))


def _nd_dtype(x, y):
    """The dtype of the first NDArray among ``x``, ``y`` (float32 if none)."""
    for a in (x, y):
        if is_ndarray(a):
            return a.dtype
    return 'float32'


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


#: The helpers a rule needs beyond operators, for numpy arrays.
NUMPY_OPS = types.SimpleNamespace(
    name='numpy',
    # elementwise
    where=np.where,                             # where(cond, x, y), scalars broadcast
    maximum=np.maximum,
    minimum=np.minimum,
    floor=np.floor,
    log=np.log,
    divide_where=lambda a, b, cond: np.divide(  # a / b where cond, else 0 (nothing computed there)
        a, b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b)),
        where=cond),
    # reductions and picks
    max=_np_max,                                # max(a, axis, keepdims=False)
    sum=lambda a, axis, keepdims=False: a.sum(axis=axis, keepdims=keepdims),
    argmax=lambda a, axis: a.argmax(axis=axis),
    count=_np_count,                            # per-row count of a 0/1 mask: (..., 1) float64
    pick=lambda a, idx, axis: np.take_along_axis(  # a[..., idx[...], ...] along axis
        a, np.expand_dims(np.asarray(idx).astype(np.int64), axis), axis).squeeze(axis),
    take_rows=_np_take_rows,                    # out[b, n] = a[b, idx[b, n]]
    hits=lambda cond, flags: np.logical_and(    # (B, N, M), (B, M) -> (B, N) mask: some m has
        cond, (flags > 0)[:, None, :]).any(axis=-1).astype(np.float32),  # cond and flags > 0
    # masks and constants
    mask=lambda m: np.asarray(m, dtype=np.float32),   # bool/0-1 -> float32 0/1
    compact_mask=_np_compact_mask,              # bool/0-1 -> smallest 0/1 type (uint8)
    zeros_like=lambda a: np.zeros(a.shape, np.float32),    # float32 zeros of a's shape
    ones_like=lambda a: np.ones(np.shape(a), np.float32),  # float32 ones of a's shape
    # shapes
    expand=_np_expand,                                          # expand(a, axis)
    columns=lambda a: [a[..., i:i + 1] for i in range(a.shape[-1])],  # (..., K) -> K x (..., 1)
    unstack=lambda a: [a[..., i] for i in range(a.shape[-1])],  # (..., K) -> K x (...)
    concat=lambda parts: np.concatenate(parts, axis=-1),        # along the last axis
)

#: The same helpers for NDArrays, as ``mx.nd`` operators on the input's context.
ND_OPS = types.SimpleNamespace(
    name='ndarray',
    # elementwise
    where=_nd_where,
    maximum=lambda a, b: mx.nd.maximum(a, b) if is_ndarray(a) or is_ndarray(b) else max(a, b),
    minimum=lambda a, b: mx.nd.minimum(a, b) if is_ndarray(a) or is_ndarray(b) else min(a, b),
    floor=mx.nd.floor,
    log=mx.nd.log,
    divide_where=lambda a, b, cond: _nd_where(cond, a / _nd_where(cond, b, 1.0), 0.0),
    # reductions and picks
    max=lambda a, axis, keepdims=False: mx.nd.max(a, axis=axis, keepdims=keepdims),
    sum=lambda a, axis, keepdims=False: mx.nd.sum(a, axis=axis, keepdims=keepdims),
    argmax=lambda a, axis: mx.nd.argmax(a, axis=axis),
    count=lambda m: mx.nd.sum(m.astype('float64'), axis=-1, keepdims=True),
    pick=lambda a, idx, axis: mx.nd.pick(a, idx, axis=axis),
    take_rows=_nd_take_rows,
    hits=lambda cond, flags: (mx.nd.batch_dot(   # one batch_dot
        cond.astype('float32'), (flags > 0).astype('float32').expand_dims(2)).squeeze(2) > 0
    ).astype('float32'),
    # masks and constants
    mask=lambda m: m.astype('float32'),
    compact_mask=lambda m: m.astype('float32'),
    zeros_like=lambda a: mx.nd.zeros(a.shape, ctx=a.context, dtype='float32'),
    ones_like=lambda a: mx.nd.ones(a.shape, ctx=a.context, dtype='float32'),
    # shapes
    expand=lambda a, axis: a.expand_dims(axis),
    columns=lambda a: mx.nd.split(a, a.shape[-1], axis=-1, squeeze_axis=False)
    if a.shape[-1] > 1 else [a],
    unstack=lambda a: list(mx.nd.split(a, a.shape[-1], axis=-1, squeeze_axis=True))
    if a.shape[-1] > 1 else [a.reshape(a.shape[:-1])],
    concat=lambda parts: mx.nd.concat(*parts, dim=-1),
)

#: The subset for symbols (``mx.sym``), for rules run inside ``hybrid_forward``.
#: ``where`` needs arguments of one shape here.
SYM_OPS = types.SimpleNamespace(
    name='symbol',
    # elementwise
    where=lambda c, x, y: mx.sym.where(c, x, y),
    maximum=mx.sym.maximum,   # numbers or symbols
    minimum=mx.sym.minimum,
    floor=mx.sym.floor,
    log=mx.sym.log,
    # reductions and picks
    max=lambda a, axis, keepdims=False: mx.sym.max(a, axis=axis, keepdims=keepdims),
    sum=lambda a, axis, keepdims=False: mx.sym.sum(a, axis=axis, keepdims=keepdims),
    argmax=lambda a, axis: mx.sym.argmax(a, axis=axis),
    count=lambda m: mx.sym.sum(mx.sym.cast(m, 'float64'), axis=-1, keepdims=True),
    pick=lambda a, idx, axis: mx.sym.pick(a, idx, axis=axis),
    # masks and constants
    mask=lambda m: mx.sym.cast(m, 'float32'),
    zeros_like=lambda a: mx.sym.zeros_like(mx.sym.cast(a, 'float32')),
)


def labels_from_masks(o, pos, neg):
    """Labels from disjoint 0/1 masks of one backend ``o`` (an ops namespace): float32,
    :data:`POSITIVE` where ``pos``, :data:`NEGATIVE` where ``neg``, :data:`IGNORE` elsewhere.

    With the convention's 1 / -1 / 0 that is ``pos - neg`` (numpy: one float32 pass, no
    temporaries; large fresh temporaries cost page faults that show in the benchmark).
    """
    if o is NUMPY_OPS:
        return np.subtract(pos, neg, dtype=np.float32)
    return o.mask(pos) - o.mask(neg)


# The arithmetic above is the convention's: check it where the constants live.
assert (POSITIVE, NEGATIVE, IGNORE) == (1, -1, 0), 'labels_from_masks assumes 1 / -1 / 0'


def ops(x):
    """:data:`NUMPY_OPS` when ``x`` takes the numpy backend (:func:`use_numpy`), else
    :data:`ND_OPS`."""
    return NUMPY_OPS if use_numpy(x) else ND_OPS


def ops_F(F):
    """The ops namespace for Gluon's ``F``: :data:`ND_OPS` or :data:`SYM_OPS` (``mx.sym``)."""
    return ND_OPS if F is mx.nd else SYM_OPS


def kind_ops(x):
    """:data:`ND_OPS` for any NDArray, else :data:`NUMPY_OPS`: for helpers whose result keeps
    the input's kind whatever its context (box formats, encodings)."""
    return ND_OPS if is_ndarray(x) else NUMPY_OPS


# --------------------------------------------------------------------------- numpy as ``F``
def _np_pick(data, index, axis=-1, keepdims=False):
    """``mx.nd.pick`` (mode 'clip') for numpy: one entry per row of ``data`` along ``axis``."""
    idx = np.clip(np.asarray(index).astype(np.int64), 0, data.shape[axis] - 1)
    out = np.take_along_axis(data, np.expand_dims(idx, axis), axis)
    return out if keepdims else np.squeeze(out, axis)


def _np_sort(data, axis=-1, is_ascend=True):
    """``mx.nd.sort`` for numpy (sorted values: stability cannot show, so numpy's quicksort)."""
    out = np.sort(data, axis=axis)
    return out if is_ascend else np.flip(out, axis)


def _np_log(a):
    """``mx.nd.log`` for numpy: ``log(0)`` is -inf without a warning, as in MXNet."""
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.log(a)


def _np_compare(fn):
    """An ``mx.nd.broadcast_*`` comparison for numpy: 0/1 as booleans, which multiply and
    add as 0/1 and cast to float32 once where the rule asks (``F.cast``)."""
    return fn


#: The subset of ``mx.nd``'s operators the ``_F`` rules of :mod:`samplers.balanced` and
#: :func:`samplers.boxes.keep_top_F` use, on numpy arrays with ``mx.nd``'s signatures, so one
#: rule body serves ``F = mx.nd``, ``mx.sym`` and numpy (``balanced`` counts groups with its
#: own numpy sort, so the one-hot and argsort of its ``F`` branch are not needed here).
NUMPY_F = types.SimpleNamespace(
    cast=lambda x, dtype: np.asarray(x).astype(dtype, copy=False),
    where=lambda cond, x, y: np.where(cond if getattr(cond, 'dtype', None) == np.bool_
                                      else np.asarray(cond) != 0, x, y),
    minimum=np.minimum, maximum=np.maximum,
    sum=lambda a, axis=None, keepdims=False: np.sum(a, axis=axis, keepdims=keepdims),
    max=lambda a, axis=None, keepdims=False: np.max(a, axis=axis, keepdims=keepdims),
    sort=_np_sort, pick=_np_pick,
    cumsum=lambda a, axis=None: np.cumsum(a, axis=axis, dtype=np.float32),
    reshape=lambda a, shape: np.reshape(a, shape),
    relu=lambda a: np.maximum(a, 0), floor=np.floor, log=_np_log,
    clip=lambda a, a_min, a_max: np.clip(a, a_min, a_max),
    ones_like=np.ones_like, zeros_like=np.zeros_like, broadcast_div=np.divide,
    broadcast_greater=_np_compare(np.greater), broadcast_equal=_np_compare(np.equal),
    broadcast_lesser_equal=_np_compare(np.less_equal),
)


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
