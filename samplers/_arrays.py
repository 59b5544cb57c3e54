"""Infrastructure every module shares: label constants, array kinds, host views, conversion.

Labels follow the package convention stated in :mod:`samplers`: :data:`POSITIVE` (1),
:data:`NEGATIVE` (-1), :data:`IGNORE` (0). Which engine handles an array
(:func:`use_numpy`) is decided here; the array protocol the rules are written against is
:mod:`samplers.backend`.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from typing import Union

import numpy as np
import mxnet as mx
from mxnet.base import _LIB, check_call

__all__ = [
    'POSITIVE', 'NEGATIVE', 'IGNORE', 'Array',
    'is_ndarray', 'use_numpy', 'force_ndarray_backend', 'ndarray_backend_forced', 'to_numpy',
    'like', 'host_view', 'write_in_place', 'finite_F', 'finite_rows_F', 'finite_rows_numpy',
    'neg_inf_like_F', 'warn_once',
]


# --------------------------------------------------------------------------- label constants
#: Label of a positive sample.
POSITIVE = 1
#: Label of a negative sample.
NEGATIVE = -1
#: Label of an ignored sample (neither trained as object nor as background).
IGNORE = 0


#: What a rule's (and a sampler's) arrays may be: numpy arrays, NDArrays, or Symbols while
#: traced; one kind at a time.
Array = Union[np.ndarray, mx.nd.NDArray, mx.sym.Symbol]


# --------------------------------------------------------------------------- kinds
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


# --------------------------------------------------------------------------- warn once
_LOG = logging.getLogger('samplers')


def warn_once(owner, key, message):
    """Log ``message`` as a warning the first time ``owner`` reports ``key``."""
    seen = owner.__dict__.setdefault('_samplers_warned', set())
    if key not in seen:
        seen.add(key)
        _LOG.warning(message)


# --------------------------------------------------------------------------- no infinite scalars
# MXNet parses scalar arguments with ``strtod`` and a stale ``errno`` (see
# :func:`samplers.checks.parse_safe`): infinities inside ``mx.nd`` / ``mx.sym`` expressions are
# made from arrays, never passed as scalars.
def finite_F(F, x):
    """Where ``x`` is finite (not NaN, not +-inf): 1/0 in ``x``'s dtype (boolean on numpy).

    ``x - x`` is 0 exactly at finite entries and NaN elsewhere; no infinite scalar is parsed.
    """
    return (x - x) == 0


# --------------------------------------------------------------------------- finite rows
# "This row is finite", one helper per kind of array: finite_rows_F for mx.nd / mx.sym,
# finite_rows_numpy for numpy. Everything else (the protocol's ``finite_rows``,
# :func:`samplers.boxes.finite_rows`) calls one of them.
def finite_rows_F(F, a):
    """1 where the last axis of ``a`` holds finite values only, else 0: ``a.shape[:-1]`` in
    ``a``'s dtype. ``a - a`` is 0 exactly at finite entries and NaN elsewhere."""
    return F.sum(a - a, axis=-1) == 0


#: Up to this many elements :func:`finite_rows_numpy` tests every element directly.
_SMALL_FINITE = 4096


def finite_rows_numpy(a):
    """Whether each row (last axis) of numpy ``a`` is all finite: boolean, ``a.shape[:-1]``.

    One sum per row finds the rows that may hold NaN/inf (a non-finite sum); only those are
    checked element by element, since a sum of finite values can overflow too (cheaper than
    ``np.isfinite(a).all(-1)`` for a short last axis: see docs/bench.md). The sums are
    numpy's own (``einsum``), not BLAS: BLAS threads wait for each other on a busy machine.
    """
    a = np.asarray(a)
    if a.shape[-1] == 0:
        return np.ones(a.shape[:-1], dtype=bool)
    rows = a.reshape(-1, a.shape[-1])
    if rows.size <= _SMALL_FINITE:  # the element test is cheaper than the sum's setup
        return np.isfinite(rows).all(axis=1).reshape(a.shape[:-1])
    with np.errstate(over='ignore', invalid='ignore'):
        ok = np.isfinite(np.einsum('ij->i', rows))
    maybe_bad = np.flatnonzero(~ok)
    ok[maybe_bad] = np.isfinite(rows[maybe_bad]).all(axis=1)
    return ok.reshape(a.shape[:-1])


def neg_inf_like_F(F, x):
    """-inf of ``x``'s shape and dtype, as ``log(0)``: no infinite scalar is parsed."""
    return F.log(F.zeros_like(x))
