"""Argument and array checks, and the one reading of hard flags.

Every check raises ``ValueError`` naming the argument (and the value or shape it got).

Hard flags
----------
:func:`hard_flags` is the one place hard flags are read. The rule:

* one flag per box, no padding by length: ``(M,)`` for every image, or ``(B, M)`` per image
  where the caller accepts a batch; a different length raises ``ValueError``;
* ``1`` (or ``True``) is hard, ``0`` (or ``False``) is normal, and ``-1`` is GluonCV's
  padding value (a batch's labels are padded with rows of -1): it reads as not hard;
* any other value raises ``ValueError`` where the flags are read on the host; on the device
  path the values are not read (that would copy them to the host) and any value > 0 is hard,
  which agrees with the host on every valid flag.
"""
from __future__ import annotations

import numbers

import numpy as np
import mxnet as mx

from ._arrays import is_ndarray, to_numpy, use_numpy

__all__ = ['check_int', 'check_count', 'check_ratio', 'check_thresh', 'parse_safe',
           'check_positive', 'check_stds', 'check_min_size', 'check_boxes',
           'check_flags', 'check_bool', 'check_same_kind', 'check_one_context', 'check_dtype',
           'hard_flags', 'hard_on_device']


# --------------------------------------------------------------------------- settings
def check_int(name, value, minimum=None):
    """``int(value)``, or ``ValueError`` naming ``name`` if not an integer >= minimum."""
    if isinstance(value, bool):
        raise ValueError('{} must be an integer, got {!r}'.format(name, value))
    if not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError('{} must be an integer, got {!r}'.format(name, value))
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError('{} must be >= {}, got {}'.format(name, minimum, value))
    return value


def check_count(name, value, minimum=None):
    """:func:`check_int` for a sample count, which the quotas compute with as a float: an
    integer beyond int64 is kept (``10**20`` takes every candidate), one beyond float64
    (``10**400``) raises ``ValueError`` naming ``name``, as the real checks do."""
    value = check_int(name, value, minimum)
    _real(name, value, 'an integer within float64')
    return value


def _real(name, value, want='a number'):
    """``float(value)`` for a real number (not a bool), else ``ValueError`` naming ``name``:
    "``name`` must be ``want``". An integer is read as the float it equals (``10**30`` as
    ``1e30``, which numpy's ``isnan`` would refuse as an integer); one beyond float64 raises."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError('{} must be {}, got {!r}'.format(name, want, value))
    try:
        return float(value)
    except OverflowError:
        raise ValueError('{} must be {}, got an integer of {} digits, beyond float64'.format(
            name, want, len(str(abs(int(value)))))) from None


def check_ratio(name, value, low=0.0, high=1.0, low_open=False, high_open=False):
    """``float(value)``, or ``ValueError`` naming ``name`` if outside [low, high].

    ``low_open`` / ``high_open`` exclude the ends. The result is :func:`parse_safe`.
    """
    value = _real(name, value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if np.isnan(value) or too_low or too_high:
        raise ValueError('{} must be in {}{}, {}{}, got {}'.format(
            name, '(' if low_open else '[', low, high, ')' if high_open else ']', value))
    return parse_safe(value)


def check_thresh(name, value):
    """An IoU threshold (any real but NaN; IoUs live in [0, 1]), as a :func:`parse_safe` float."""
    if np.isnan(_real(name, value)):
        raise ValueError('{} must be a number, got {!r}'.format(name, value))
    return parse_safe(value)


def check_positive(name, value, *, zero_ok=False, inf_ok=False):
    """``float(value)`` for a real > 0 (>= 0 with ``zero_ok``, +inf with ``inf_ok``), else
    ``ValueError`` naming ``name``."""
    bound = '>= 0' if zero_ok else '> 0'
    value = _real(name, value, 'a number ' + bound)
    if not (value >= 0 if zero_ok else value > 0) or (value == np.inf and not inf_ok):
        raise ValueError('{} must be a number {}, got {!r}'.format(name, bound, value))
    return value


def check_stds(name, stds):
    """A tuple of 4 positive finite floats (box-encoding divisors), else ``ValueError``."""
    try:
        values = tuple(float(v) for v in stds)
    except (TypeError, ValueError, OverflowError):
        raise ValueError('{} must be 4 positive numbers, got {!r}'.format(name, stds)) from None
    if len(values) != 4 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError('{} must be 4 positive numbers, got {!r}'.format(name, stds))
    return tuple(parse_safe(v) for v in values)


def check_min_size(name, value):
    """None, or a positive finite size in pixels as a :func:`parse_safe` float; else
    ``ValueError`` naming ``name``."""
    if value is None:
        return None
    want = 'a positive finite number or None'
    if not (np.isfinite(_real(name, value, want)) and value > 0):
        raise ValueError('{} must be {}, got {!r}'.format(name, want, value))
    return parse_safe(value)


_DOUBLE = np.finfo(np.float64)


def parse_safe(value):
    """``float(value)`` as a scalar MXNet's operators parse in any state of ``errno``.

    MXNet receives a scalar argument as text and parses it with ``strtod``, then
    reads ``errno``: after any earlier overflow in the same thread (a numpy
    ``exp``, say) it rejects ``inf`` and subnormal numbers with "Out of range
    value for scalar". So +-inf becomes +-(largest float64), which compares
    the same with every finite value, and a subnormal becomes the smallest
    normal float64 of its sign, which compares the same with every float32
    and every normal float64. Other values are returned unchanged.
    """
    value = float(value)
    if np.isinf(value):
        return float(np.copysign(_DOUBLE.max, value))
    if value != 0 and abs(value) < _DOUBLE.tiny:
        return float(np.copysign(_DOUBLE.tiny, value))
    return value


def check_bool(name, value):
    """``bool(value)`` for a bool or a numpy bool, else ``ValueError`` naming ``name`` (0, 1,
    'False' and the like are refused: ``bool('False')`` would be True)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError('{} must be True or False, got {!r}'.format(name, value))


# --------------------------------------------------------------------------- arrays
def check_boxes(name, boxes, batched=None):
    """``ValueError`` unless ``boxes`` is (N, 4) or (B, N, 4); returns its rank.

    ``batched`` True demands rank 3, False rank 2, None accepts both.
    """
    shape = tuple(boxes.shape)
    ranks = {None: (2, 3), True: (3,), False: (2,)}[batched]
    if len(shape) not in ranks or shape[-1] != 4:
        want = ' or '.join({2: '(N, 4)', 3: '(B, N, 4)'}[r] for r in ranks)
        raise ValueError('{} must have shape {}, got {}'.format(name, want, shape))
    return len(shape)


def _join(names):
    """'a', 'a and b', 'a, b and c'."""
    names = list(names)
    return names[0] if len(names) == 1 else ', '.join(names[:-1]) + ' and ' + names[-1]


def check_same_kind(named):
    """Whether the arrays are NDArrays; ``ValueError`` unless all are or none is.

    ``named`` is a list of ``(name, array)`` pairs; None arrays are skipped.
    """
    named = [(n, a) for n, a in named if a is not None]
    kinds = [is_ndarray(a) for _, a in named]
    if len(set(kinds)) > 1:
        raise ValueError('{} must all be NDArrays or all numpy arrays, got {}'.format(
            _join(n for n, _ in named),
            ', '.join('{} {}'.format(n, type(a).__name__) for n, a in named)))
    return bool(kinds) and kinds[0]


def check_one_context(named):
    """``ValueError`` unless the NDArrays among ``named`` ((name, array) pairs) share a context."""
    named = [(n, a) for n, a in named if is_ndarray(a)]
    if len({a.context for _, a in named}) > 1:
        raise ValueError('{} must be on one context, got {}'.format(
            _join(n for n, _ in named), ', '.join('{} on {}'.format(n, a.context)
                                                  for n, a in named)))


def check_dtype(name, x, kinds='f'):
    """``ValueError`` unless ``x`` is an array (numpy or NDArray, not a list) whose dtype kind
    is in ``kinds``: 'f' float, 'iuf' numeric."""
    if not hasattr(x, 'dtype'):
        raise ValueError('{} must be a numpy array or an NDArray, got {}'.format(
            name, type(x).__name__))
    dtype = np.dtype(x.dtype)
    if dtype.kind not in kinds:
        raise ValueError('{} must have a {} dtype, got {}'.format(
            name, 'float' if kinds == 'f' else 'numeric', dtype))


def check_flags(name, flags, hint=''):
    """Hard flags' values as a boolean numpy array (True: hard), or ``ValueError`` naming ``name``.

    1 / True is hard; 0 / False and -1 (padding, see the module docstring) are not. ``hint``
    is appended to the error message. The shape is :func:`hard_flags`' to check.
    """
    arr = to_numpy(flags)
    if arr.dtype == bool:
        return arr
    allowed = np.isin(arr, (-1, 0, 1))
    if not allowed.all():
        raise ValueError('{} must hold 0/1 flags (-1 marks a padding row), got values {}{}'
                         .format(name, np.unique(arr[~allowed])[:8].tolist(), hint))
    return arr > 0


def hard_flags(hard, num_box, batch=None, *, against, per_image=True, numpy_path=None,
               ctx=None, name='hard', hint=''):
    """Hard flags read by the one rule of the module docstring; None for None.

    ``num_box`` M; ``batch`` B when the call is batched (then ``(B, M)`` is accepted, and
    ``(M,)`` too unless ``per_image`` is False); ``against`` the shape text the error quotes
    (e.g. ``'ious (2, 4, 3)'``). On the numpy path (``numpy_path``, default
    :func:`~samplers._arrays.use_numpy` of ``hard``; always for non-NDArrays) the values are
    checked and a boolean numpy array of ``hard``'s shape is returned. Otherwise an NDArray
    ``hard > 0`` as float32 on ``ctx`` (default: ``hard``'s), nothing read on the host.
    """
    if hard is None:
        return None
    shape = tuple(hard.shape) if hasattr(hard, 'shape') else np.shape(hard)
    allowed = [] if batch is not None and not per_image else [('(M,)', (num_box,))]
    if batch is not None:
        allowed.append(('(B, M)', (batch, num_box)))
    if shape not in [s for _, s in allowed]:
        raise ValueError('{} must have shape {} to go with {}, got {}'.format(
            name, ' or '.join('{} = {}'.format(w, s) for w, s in allowed), against, shape))
    if numpy_path is None:
        numpy_path = use_numpy(hard)
    if is_ndarray(hard) and hard.size == 0:  # nothing to read (MXNet rejects zero-size ops)
        return np.zeros(shape, bool)
    if not is_ndarray(hard) or numpy_path:
        return check_flags(name, hard, hint)
    return hard_on_device(hard, num_box, ctx)


def hard_on_device(hard, num_box, ctx):
    """Flags as a float32 0/1 NDArray on ``ctx``: zeros (M,) for None, ``hard > 0`` otherwise
    (``hard`` an NDArray, read on the device, or flags :func:`hard_flags` checked on the host)."""
    if hard is None:
        return mx.nd.zeros((num_box,), ctx=ctx)
    if is_ndarray(hard):
        return (hard.as_in_context(hard.context if ctx is None else ctx) > 0).astype('float32')
    return mx.nd.array(np.asarray(hard) > 0, ctx=ctx, dtype='float32')
