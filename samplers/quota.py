"""QuotaSampler: label proposals by IoU, then keep at most a quota of each label per image.

The Gluon block is a thin shell around a CustomOp registered as
:data:`OP_TYPE` (``'samplers_quota'``), so the same rule runs imperatively,
inside hybridized networks and in exported ``mx.sym`` graphs. GluonCV's own
``'quota_sampler'`` op is left alone. Labels follow the package convention
(see :mod:`samplers`).
"""
from __future__ import annotations

import types
import uuid

import numpy as np
import mxnet as mx
from mxnet import gluon

from . import boxes

__all__ = ['QuotaSampler', 'OP_TYPE']

#: The ``op_type`` under which the sampler's CustomOp is registered.
OP_TYPE = 'samplers_quota'

_NONFINITE_WARNING = ('QuotaSampler: some proposals have a NaN or infinite IoU; they are '
                      'labelled 0 (ignored).')
_OWNERS = {}  # owner key -> object that remembers which warnings were logged (boxes.warn_once)


def _owner(key):
    """The warn-once record of the sampler whose op attributes carry ``key``."""
    return _OWNERS.setdefault(key, types.SimpleNamespace())


def _flag(value):
    """A bool from a Python value or from an op attribute string ('True', 'False', '1', '0')."""
    if isinstance(value, str):
        return value.strip().lower() in ('true', '1')
    return bool(value)


def _output_dtype(matches_dtype):
    """Labels take the float dtype of ``matches``, or float32 for integer matches."""
    dtype = np.dtype(matches_dtype)
    return dtype if dtype.kind == 'f' else np.dtype(np.float32)


class _QuotaRule:
    """The sampler's validated settings and its labelling rule, one copy for block and op."""

    def __init__(self, num_sample, pos_thresh, neg_thresh_high, neg_thresh_low=-np.inf,
                 pos_ratio=0.5, neg_ratio=None, fill_negative=True):
        self.num_sample = boxes.check_int('num_sample', num_sample, minimum=1)
        self.pos_ratio = boxes.check_ratio('pos_ratio', pos_ratio)
        self.neg_ratio = 1.0 - self.pos_ratio if neg_ratio is None else \
            boxes.check_ratio('neg_ratio', neg_ratio)
        if self.pos_ratio + self.neg_ratio > 1.0 + 1e-9:
            raise ValueError('pos_ratio + neg_ratio must be <= 1, got {} + {}'.format(
                self.pos_ratio, self.neg_ratio))
        pos_thresh = boxes.check_thresh('pos_thresh', pos_thresh)
        neg_thresh_high = boxes.check_thresh('neg_thresh_high', neg_thresh_high)
        self.neg_thresh_low = boxes.check_thresh('neg_thresh_low', neg_thresh_low)
        if self.neg_thresh_low > neg_thresh_high:
            raise ValueError('neg_thresh_low must be <= neg_thresh_high, got {} > {}'.format(
                self.neg_thresh_low, neg_thresh_high))
        # The op is rebuilt from attrs(): give it the unclamped value, which passed the check
        # above (clamped, neg_thresh_high may fall below neg_thresh_low).
        self._neg_thresh_high_arg = neg_thresh_high
        # IoUs live in [0, 1]; GluonCV clamps these two thresholds into it, and so do we.
        self.pos_thresh = min(1.0, max(0.0, pos_thresh))
        self.neg_thresh_high = min(1.0, max(0.0, neg_thresh_high))
        self.fill_negative = _flag(fill_negative)
        self.max_pos = boxes.positive_quota(self.num_sample, self.pos_ratio)

    def attrs(self):
        """The settings as CustomOp attributes (strings round-trip through symbol JSON)."""
        return {'num_sample': str(self.num_sample), 'pos_thresh': repr(self.pos_thresh),
                'neg_thresh_high': repr(self._neg_thresh_high_arg),
                'neg_thresh_low': repr(self.neg_thresh_low),
                'pos_ratio': repr(self.pos_ratio), 'neg_ratio': repr(self.neg_ratio),
                'fill_negative': str(self.fill_negative)}

    # ------------------------------------------------------------------ numpy backend
    def label_numpy(self, matches, ious, hard, owner, keys=None):
        """(B, N) float32 labels from numpy ``matches`` (B, N), ``ious`` (B, N, M), ``hard``.

        ``keys`` (B, N) uniform numbers, optional: keep the candidates with the lowest keys
        instead of drawing from ``np.random`` (the op passes keys drawn by ``mx.random`` in the
        caller's graph, since its forward runs in MXNet's worker thread, where ``np.random``
        draws would interleave with the caller's in no fixed order).
        """
        num_box = ious.shape[2]
        finite = boxes.finite_rows(ious)
        best, _ = boxes.best_match(ious)  # 0 when M = 0; NaN rows are dropped through `finite`
        matched = matches >= 0
        if not num_box:
            pos = matched.copy()
        elif hard is None:
            pos = matched | (best >= self.pos_thresh)
        else:
            hard = hard > 0  # 0/1 checked in _check_inputs
            normal_hit = (ious >= self.pos_thresh) & ~hard[:, None, :]
            pos = (matched & ~_matched_hard_numpy(matches, hard)) | normal_hit.any(axis=-1)
        neg = ~matched & ~pos & (best >= self.neg_thresh_low) & (best < self.neg_thresh_high)
        if not finite.all():
            boxes.warn_once(owner, 'non-finite', _NONFINITE_WARNING)
            pos &= finite
            neg &= finite
        # Quotas capped at N, so a num_sample past int64 (a "never subsample" setting) fits.
        num = matches.shape[1]
        max_pos = min(self.max_pos, num)
        if keys is None:
            keep_pos = boxes.keep_random(pos, max_pos)
        else:  # positive and negative candidates are disjoint: one set of keys serves both
            keep_pos = boxes.keep_top(-keys, pos, np.full(len(pos), max_pos))
        kept = keep_pos.sum(axis=1).astype(np.float64)  # float: int64 could overflow here
        max_neg = np.minimum(boxes.negative_quota(self.num_sample, kept, self.neg_ratio,
                                                  self.fill_negative), num).astype(np.int64)
        keep_neg = (boxes.keep_random(neg, max_neg) if keys is None
                    else boxes.keep_top(-keys, neg, max_neg))
        return keep_pos.astype(np.float32) - keep_neg

    # ------------------------------------------------------------------ mx.nd backend
    def label_nd(self, matches, ious, hard, keys):
        """:meth:`label_numpy` with ``mx.nd`` ops on the inputs' context: no host copy.

        ``keys`` (B, N) are uniform random keys drawn by ``mx.random`` (see
        :func:`boxes.keep_random_F` with keys). ``ious`` and ``hard`` are None when there
        are no boxes (MXNet ops reject zero-size arrays). Returns float32 labels.
        Non-finite rows are labelled 0 but not logged (knowing whether there
        were any would need a host sync).
        """
        nd = mx.nd
        batch, num_box = matches.shape[0], 0 if ious is None else ious.shape[2]
        matched = (matches >= 0).astype('float32')
        if num_box:
            finite = nd.min((ious == ious) * (nd.abs(ious) != np.inf), axis=-1).astype('float32')
            best = nd.max(ious, axis=-1)
        else:
            finite = nd.ones_like(matched)
            best = nd.zeros_like(matched)
        if not num_box:
            pos = matched
        elif hard is None:
            pos = nd.maximum(matched, (best >= self.pos_thresh).astype('float32'))
        else:
            normal = (hard <= 0).astype(ious.dtype)  # (B, M): 1 for a normal box
            normal_hit = nd.max(nd.broadcast_mul(ious >= self.pos_thresh, normal.expand_dims(1)),
                                axis=-1).astype('float32')
            by_match = matched * (1 - _matched_hard_nd(matches, hard > 0, num_box))
            pos = nd.maximum(by_match, normal_hit)
        in_range = ((best >= self.neg_thresh_low) * (best < self.neg_thresh_high)).astype('float32')
        neg = (1 - matched) * (1 - pos) * in_range * finite
        pos = pos * finite
        # Positive and negative candidates are disjoint, so one set of keys serves both.
        # keep_random_F wants k <= the candidates (a k past int32 would wrap in its pick).
        max_pos = nd.minimum(nd.full((batch, 1), self.max_pos, ctx=pos.context),
                             nd.sum(pos, axis=1, keepdims=True))
        keep_pos = boxes.keep_random_F(nd, pos, max_pos, keys)
        kept = nd.sum(keep_pos, axis=1, keepdims=True)
        max_neg = nd.minimum(boxes.negative_quota_F(nd, self.num_sample, kept, self.neg_ratio,
                                                    self.fill_negative),
                             nd.sum(neg, axis=1, keepdims=True))
        keep_neg = boxes.keep_random_F(nd, neg, max_neg, keys)
        return keep_pos - keep_neg


def _matched_hard_numpy(matches, hard):
    """(B, N) bool: the proposal's matched box is hard. An index outside [0, M) is not."""
    num_box = hard.shape[1]
    valid = (matches >= 0) & (matches < num_box)
    if not num_box:
        return valid
    idx = np.where(valid, matches, 0).astype(np.int64)
    return np.take_along_axis(hard, idx, axis=1) & valid


def _matched_hard_nd(matches, hard, num_box):
    """NDArray :func:`_matched_hard_numpy` (M >= 1): float32 0/1 (B, N), on the context."""
    nd = mx.nd
    batch = matches.shape[0]
    m = matches.astype('float32')
    ctx = m.context
    # Column M of the padded flags is 0 ("not hard"): every out-of-range index lands there.
    padded = nd.concat(hard.astype('float32'), nd.zeros((batch, 1), ctx=ctx), dim=1)
    idx = nd.where((m >= 0) * (m < num_box), nd.floor(m), nd.full(m.shape, num_box, ctx=ctx))
    rows = nd.broadcast_like(nd.arange(batch, ctx=ctx).reshape((batch, 1)), m)
    return nd.gather_nd(padded, nd.stack(rows, idx))


# ---------------------------------------------------------------------------- the CustomOp
class _QuotaOp(mx.operator.CustomOp):
    """Runs :class:`_QuotaRule` on the op's inputs; gradients are zero."""

    def __init__(self, rule, owner_key, use_numpy):
        super().__init__()
        self._rule = rule
        self._owner_key = owner_key
        self._use_numpy = use_numpy

    def forward(self, is_train, req, in_data, out_data, aux):
        out = out_data[0]
        matches, ious, keys = in_data[0], in_data[1], in_data[-1]
        hard = in_data[2] if len(in_data) > 3 else None
        if self._use_numpy:
            labels = self._rule.label_numpy(
                matches.asnumpy(), ious.asnumpy(), None if hard is None else hard.asnumpy(),
                _owner(self._owner_key), keys.asnumpy())
            labels = mx.nd.array(labels, ctx=out.context, dtype=out.dtype)
        else:
            labels = self._rule.label_nd(matches, ious, hard, keys).astype(out.dtype)
        self.assign(out, req[0], labels)

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for grad, how in zip(in_grad, req):
            self.assign(grad, how, 0)


@mx.operator.register(OP_TYPE)
class _QuotaOpProp(mx.operator.CustomOpProp):
    """The sampler's CustomOp: inputs ``matches, ious[, hard], keys``; output ``labels``.

    ``keys`` (B, N) are uniform random numbers in [0, 1)
    (``F.random.uniform_like(matches)``, drawn in the caller's graph); each image keeps the
    candidates with the lowest keys, on both paths.
    Attributes: :class:`QuotaSampler`'s arguments, plus ``has_hard`` (the
    ``hard`` input is present) and ``owner`` (whose warn-once record to use).
    """

    def __init__(self, num_sample, pos_thresh, neg_thresh_high, neg_thresh_low='-inf',
                 pos_ratio='0.5', neg_ratio='None', fill_negative='True', has_hard='False',
                 owner=''):
        super().__init__(need_top_grad=False)
        self._rule = _QuotaRule(float(num_sample), float(pos_thresh), float(neg_thresh_high),
                                float(neg_thresh_low), float(pos_ratio),
                                None if neg_ratio in (None, 'None') else float(neg_ratio),
                                _flag(fill_negative))
        self._has_hard = _flag(has_hard)
        self._owner_key = owner

    def list_arguments(self):
        return ['matches', 'ious'] + (['hard'] if self._has_hard else []) + ['keys']

    def list_outputs(self):
        return ['labels']

    def infer_shape(self, in_shape):
        return in_shape, [in_shape[0]], []

    def infer_type(self, in_type):
        labels = None if in_type[0] is None else _output_dtype(in_type[0]).type  # None: unknown
        return in_type, [labels], []

    def create_operator(self, ctx, in_shapes, in_dtypes):
        # Called in the caller's thread (forward runs in MXNet's worker thread), so this is
        # where the thread-local boxes.force_ndarray_backend() can still be seen.
        on_cpu = str(ctx).startswith('cpu')
        forced = boxes.ndarray_backend_forced()
        return _QuotaOp(self._rule, self._owner_key, on_cpu and not forced)


# ---------------------------------------------------------------------------- the block
class QuotaSampler(gluon.HybridBlock):
    """Label proposals positive/negative by IoU and keep at most a quota of each per image.

    Parameters
    ----------
    num_sample : int
        Samples (positives + negatives) wanted per image, >= 1.
    pos_thresh : float
        A proposal whose best IoU with a normal box is >= this is positive. Clamped to [0, 1].
    neg_thresh_high : float
        A proposal whose best IoU with any box is < this (and >= ``neg_thresh_low``) is a
        negative candidate. Clamped to [0, 1].
    neg_thresh_low : float, default -inf
        Lower end of the negative IoU range; must be <= ``neg_thresh_high``.
    pos_ratio : float, default 0.5
        At most ``round(pos_ratio * num_sample)`` positives per image, in [0, 1].
    neg_ratio : float or None, default None (meaning ``1 - pos_ratio``)
        At most ``int(neg_ratio * num_sample)`` negatives per image; ``pos_ratio + neg_ratio``
        must be <= 1.
    fill_negative : bool, default True
        Negatives may also take the slots positives left free: at most
        ``max(num_sample - kept positives, int(neg_ratio * num_sample))``.

    Called as ``sampler(matches, ious, hard=None)``:

    * ``matches`` (B, N), int or float: matched box index per proposal, < 0 for none;
    * ``ious`` (B, N, M), float16/32/64: IoU of each proposal with each box;
    * ``hard`` (B, M), optional: 1 marks a hard box, 0 a normal one (other values raise
      ``ValueError`` on the numpy path; the NDArray path on a GPU reads any value > 0 as 1).

    Returns (B, N) labels (1 / -1 / 0, see :mod:`samplers`) of the input's kind and context,
    in ``matches``' float dtype (float32 for integer matches). numpy input gives numpy output.

    Rule: a proposal matched to a normal box, or with IoU >= ``pos_thresh`` against a normal
    box, is a positive candidate; an unmatched non-positive one whose best IoU lies in
    [``neg_thresh_low``, ``neg_thresh_high``) is a negative candidate; each image then keeps a
    uniformly random subset of each within its own quota, and everything else is 0.

    Edges: with no boxes (M = 0) the best IoU is 0 and only ``matches`` can make positives.
    Fewer candidates than the quota: all are kept. A hard box never makes a positive: a
    proposal matched to one, or overlapping one at >= ``neg_thresh_high`` without being
    positive for a normal box, is ignored (0). A match index outside [0, M) counts as a
    normal box. A proposal with a NaN or infinite IoU is ignored and (numpy backend) a warning
    is logged once per sampler. A NaN match counts as "no match".

    Unlike GluonCV: ``neg_ratio`` works, each image has its own quota (GluonCV's negative quota
    leaks into the following images), a matched proposal is never negative (GluonCV's Block
    lets the negative rule win), ``hard`` is new, and bad input raises ``ValueError``.

    The work is done by the CustomOp :data:`OP_TYPE`: numpy on CPU contexts, ``mx.nd`` ops on
    other contexts (no host copy). Its random keys are drawn by ``mx.random`` in the graph
    and passed to the op, because the op's forward runs in MXNet's worker thread, whose
    generator ``mx.random.seed`` does not reset and where ``np.random`` draws would race the
    caller's; so ``mx.random.seed`` alone reproduces NDArray calls. numpy input is labelled
    without the op, drawing from ``np.random``. The backend
    is chosen when MXNet creates the op, in the calling thread, so
    :func:`boxes.force_ndarray_backend` around a call (or around ``bind``) selects the
    ``mx.nd`` path on CPU. Inputs with a zero-size axis, which MXNet's shape inference cannot
    take, are handled without the op. A hybridized sampler keeps the arity (with or without
    ``hard``) of its first call. Gradients are zero.
    """

    def __init__(self, num_sample, pos_thresh, neg_thresh_high, neg_thresh_low=-np.inf,
                 pos_ratio=0.5, neg_ratio=None, fill_negative=True):
        super().__init__()
        self._rule = _QuotaRule(num_sample, pos_thresh, neg_thresh_high, neg_thresh_low,
                                pos_ratio, neg_ratio, fill_negative)
        self._owner_key = uuid.uuid4().hex

    def __getstate__(self):
        # A built graph holds C handles; drop it (it is rebuilt on the next call).
        state = self.__dict__.copy()
        state.update(_cached_graph=(), _cached_op=None, _cached_op_args=[])
        return state

    def __setstate__(self, state):
        # An unpickled copy is a new sampler: it gets its own warn-once record.
        self.__dict__.update(state)
        self._owner_key = uuid.uuid4().hex

    def forward(self, matches, ious, hard=None):  # pylint: disable=arguments-differ
        """Check the inputs, then label: numpy directly, NDArray/Symbol through the op."""
        if isinstance(matches, mx.sym.Symbol):
            return super().forward(matches, ious, hard)
        _check_inputs(matches, ious, hard)
        if not boxes.is_ndarray(matches):
            labels = self._rule.label_numpy(np.asarray(matches), np.asarray(ious),
                                            None if hard is None else np.asarray(hard),
                                            _owner(self._owner_key))
            return labels.astype(_output_dtype(np.asarray(matches).dtype), copy=False)
        if 0 in ious.shape:
            return self._label_zero_size(matches, ious, hard)
        return super().forward(matches, ious, hard)

    def hybrid_forward(self, F, matches, ious, hard=None):  # pylint: disable=arguments-differ
        keys = F.random.uniform_like(F.zeros_like(matches).astype('float32'))
        inputs = (matches, ious, keys) if hard is None else (matches, ious, hard, keys)
        return F.Custom(*inputs, op_type=OP_TYPE, has_hard=str(hard is not None),
                        owner=self._owner_key, **self._rule.attrs())

    def _label_zero_size(self, matches, ious, hard):
        """NDArray inputs with B, N or M = 0, which MXNet ops reject: label on the host/device."""
        dtype = _output_dtype(matches.dtype)
        if matches.size == 0:
            return mx.nd.array(np.zeros(matches.shape, dtype), ctx=matches.context, dtype=dtype)
        # M = 0. Keys from mx.random, as the op's: mx.random.seed alone reproduces the call.
        keys = mx.nd.random.uniform_like(matches.astype('float32'))
        if boxes.use_numpy(matches):
            labels = self._rule.label_numpy(matches.asnumpy(), ious.asnumpy(),
                                            None if hard is None else hard.asnumpy(),
                                            _owner(self._owner_key), keys.asnumpy())
            return boxes.like(labels, matches, dtype=dtype)
        return self._rule.label_nd(matches, None, None, keys).astype(dtype)

    def __repr__(self):
        rule = self._rule
        return ('{}(num_sample={}, pos_thresh={}, neg_thresh_high={}, neg_thresh_low={}, '
                'pos_ratio={}, neg_ratio={}, fill_negative={})').format(
                    type(self).__name__, rule.num_sample, rule.pos_thresh, rule.neg_thresh_high,
                    rule.neg_thresh_low, rule.pos_ratio, rule.neg_ratio, rule.fill_negative)


def _check_inputs(matches, ious, hard):
    """``ValueError`` (naming the arguments and shapes) unless the call's inputs fit."""
    arrays = [('matches', matches), ('ious', ious)] + ([('hard', hard)] if hard is not None
                                                       else [])
    kinds = {name: boxes.is_ndarray(x) for name, x in arrays}
    if len(set(kinds.values())) > 1:
        raise ValueError('matches, ious and hard must all be NDArrays or all numpy arrays, got '
                         + ', '.join('{} {}'.format(n, type(x).__name__) for n, x in arrays))
    if kinds['matches']:
        ctxs = {name: x.context for name, x in arrays}
        if len(set(ctxs.values())) > 1:
            raise ValueError('matches, ious and hard must be on one context, got ' + ', '.join(
                '{} on {}'.format(n, c) for n, c in ctxs.items()))
    else:
        arrays = [(name, np.asarray(x)) for name, x in arrays]
    (_, matches), (_, ious) = arrays[:2]
    m_shape, i_shape = tuple(matches.shape), tuple(ious.shape)
    if len(m_shape) != 2 or len(i_shape) != 3 or i_shape[:2] != m_shape:
        raise ValueError('matches must have shape (B, N) and ious (B, N, M), got matches {} '
                         'and ious {}'.format(m_shape, i_shape))
    if hard is not None:
        h_shape = tuple(arrays[2][1].shape)
        if h_shape != (i_shape[0], i_shape[2]):
            raise ValueError('hard must have shape (B, M) = {} to go with ious {}, got hard {}'
                             .format((i_shape[0], i_shape[2]), i_shape, h_shape))
        if boxes.use_numpy(hard):  # values too, where reading them costs no device copy
            boxes.check_flags('hard', hard)
    for name, x, kinds_ok in (('matches', matches, 'iuf'), ('ious', ious, 'f')):
        if np.dtype(x.dtype).kind not in kinds_ok:
            raise ValueError('{} must have a {} dtype, got {}'.format(
                name, 'float' if kinds_ok == 'f' else 'numeric', np.dtype(x.dtype)))
