"""QuotaSampler: label proposals by IoU, then keep at most a quota of each label per image.

The Gluon block is a thin shell around a CustomOp registered as
:data:`OP_TYPE` (``'samplers_quota'``), so the same rule runs imperatively,
inside hybridized networks and in exported ``mx.sym`` graphs; the second-stage
:class:`samplers.rcnn.RCNNTargetSampler` builds on the same op. GluonCV's own
``'quota_sampler'`` op is left alone. Labels follow the package convention
(see :mod:`samplers`).
"""
from __future__ import annotations

import types

import numpy as np
import mxnet as mx
from mxnet import gluon

from . import backend, boxes, draws
from .balanced import draw_negatives, draw_positives
from ._blocks import SamplerBlock, option_settings
from ._arrays import (Array, host_view, is_ndarray, like, ndarray_backend_forced, use_numpy,
                      warn_once, write_in_place)
from .backend import Backend
from .options import Draw, resolve
from .checks import (check_bool, check_dtype, check_count, check_one_context, check_ratio,
                     check_same_kind, check_thresh, hard_flags)

__all__ = ['QuotaSampler', 'QuotaRule', 'OP_TYPE']

#: The ``op_type`` under which the sampler's CustomOp is registered.
OP_TYPE = 'samplers_quota'

_NONFINITE_WARNING = ('QuotaSampler: some proposals have a NaN or infinite IoU; they are '
                      'labelled 0 (ignored). (Logged once per process.)')
#: What this module has warned about; warnings are logged once per process.
_WARNED = types.SimpleNamespace()


def _attr_flag(name, text):
    """A bool from an op attribute string: 'True'/'False' (also '1'/'0'), nothing else."""
    words = {'true': True, '1': True, 'false': False, '0': False}
    key = str(text).strip().lower()
    if key not in words:
        raise ValueError('{} must be True or False, got {!r}'.format(name, text))
    return words[key]


def _output_dtype(matches_dtype):
    """Labels take the float dtype of ``matches``, or float32 for integer matches."""
    dtype = np.dtype(matches_dtype)
    return dtype if dtype.kind == 'f' else np.dtype(np.float32)


class QuotaRule:
    """The quota sampler's validated settings and its labelling rule: one copy shared by
    :class:`QuotaSampler`, its op, and :class:`samplers.rcnn.RCNNTargetSampler` (which
    builds on that op)."""

    def __init__(self, num_sample, pos_thresh, neg_thresh_high, neg_thresh_low=-np.inf,
                 pos_ratio=0.5, neg_ratio=None, fill_negative=True, draw_options=None):
        #: How each quota is drawn (:class:`samplers.options.Draw`; uniform by default).
        self.draw_options = Draw() if draw_options is None else draw_options
        self.num_sample = check_count('num_sample', num_sample, minimum=1)
        self.pos_ratio = check_ratio('pos_ratio', pos_ratio)
        self.neg_ratio = 1.0 - self.pos_ratio if neg_ratio is None else \
            check_ratio('neg_ratio', neg_ratio)
        if self.pos_ratio + self.neg_ratio > 1.0 + 1e-9:
            raise ValueError('pos_ratio + neg_ratio must be <= 1, got {} + {}'.format(
                self.pos_ratio, self.neg_ratio))
        pos_thresh = check_thresh('pos_thresh', pos_thresh)
        neg_thresh_high = check_thresh('neg_thresh_high', neg_thresh_high)
        self.neg_thresh_low = check_thresh('neg_thresh_low', neg_thresh_low)
        if self.neg_thresh_low > neg_thresh_high:
            raise ValueError('neg_thresh_low must be <= neg_thresh_high, got {} > {}'.format(
                self.neg_thresh_low, neg_thresh_high))
        # The op is rebuilt from attrs(): give it the unclamped value, which passed the check
        # above (clamped, neg_thresh_high may fall below neg_thresh_low).
        self._neg_thresh_high_arg = neg_thresh_high
        # IoUs live in [0, 1]; GluonCV clamps these two thresholds into it, and so do we.
        self.pos_thresh = min(1.0, max(0.0, pos_thresh))
        self.neg_thresh_high = min(1.0, max(0.0, neg_thresh_high))
        self.fill_negative = check_bool('fill_negative', fill_negative)
        self.max_pos = draws.positive_quota(self.num_sample, self.pos_ratio)

    def attrs(self):
        """The settings as CustomOp attributes (strings round-trip through symbol JSON)."""
        return {'num_sample': str(self.num_sample), 'pos_thresh': repr(self.pos_thresh),
                'neg_thresh_high': repr(self._neg_thresh_high_arg),
                'neg_thresh_low': repr(self.neg_thresh_low),
                'pos_ratio': repr(self.pos_ratio), 'neg_ratio': repr(self.neg_ratio),
                'fill_negative': str(self.fill_negative),
                # Uniform draws add no attributes.
                **({} if self.draw_options.uniform else self.draw_options.attrs())}

    def candidates(self, be: Backend, matches, ious, hard=None, not_negative=None):
        """The candidates: ``(pos, neg, best, finite, nearest)``, each (B, N).

        ``be`` the arrays' backend; ``matches`` (B, N); ``ious`` (B, N, M), or None
        when M = 0; ``hard`` (B, M) 0/1 or None; ``not_negative`` (B, N) 0/1 or None
        (1: never a negative). ``pos`` and ``neg`` are float32 0/1 masks, ``best``
        each proposal's best IoU (0 when M = 0), ``finite`` 0/1: the row of IoUs is
        finite, ``nearest`` the box of that IoU (None when M = 0 or when no balanced
        draw of positives needs it). See :class:`QuotaSampler` for the rule.
        """
        matched = be.mask(matches >= 0)  # a NaN match is no match
        nearest = None
        if ious is None or not ious.shape[2]:  # M = 0: the best IoU is 0, nothing is hard
            finite, best, pos = 1.0, 0.0 * matched, matched
        else:
            finite = boxes.finite_rows_mask(ious)
            # NaN rows are dropped through `finite`. A balanced draw of positives groups them
            # by box: the box of the best IoU comes with it (numpy: at no cost).
            if self.draw_options.pos_sampler != 'uniform' and hard is None:
                best, nearest = be.max_and_argmax(ious)
            else:
                best = be.max(ious, -1)
            if hard is None:
                pos = be.maximum(matched, be.mask(best >= self.pos_thresh))
            else:
                num_box = ious.shape[2]
                hard = be.mask(hard > 0)
                normal_hit = be.hits(ious >= self.pos_thresh, 1 - hard)
                # A match index outside [0, M) counts as a normal box.
                in_range = matched * be.mask(matches < num_box)
                matched_hard = be.take_rows(hard, be.where(in_range > 0, matches, 0.0))
                # Matched to a hard box: never positive (its targets would be the hard box's).
                pos = be.maximum(matched * (1 - in_range * matched_hard),
                                 (1 - matched) * normal_hit)
        neg = (1 - matched) * (1 - pos) * finite * be.mask(best >= self.neg_thresh_low) \
            * be.mask(best < self.neg_thresh_high)
        if not_negative is not None:
            neg = neg * (1 - be.mask(not_negative > 0))
        return pos * finite, neg, best, finite, nearest

    def draw(self, be: Backend, pos, neg, best, matches, ious, hard=None, keys=None,
             nearest=None):
        """(B, N) float32 labels 1 / -1 / 0: the quotas of :meth:`candidates`' ``pos``, ``neg``.

        ``keys`` (B, N) uniform numbers, or None to draw them (numpy only); each
        image keeps the candidates with the lowest keys. Positive and negative
        candidates are disjoint, so one set of keys serves both. ``nearest``:
        :meth:`candidates`' box of the best IoU, if known.
        """
        # Quotas as floats, capped at the candidate counts: a num_sample past int64 fits.
        max_pos = be.minimum(float(self.max_pos), be.sum(pos, 1, keepdims=True))
        how = self.draw_options
        if how.pos_sampler == 'uniform':
            keep_pos = draws.keep_uniform(be, pos, max_pos, keys)
        else:
            num_box = 0 if ious is None else ious.shape[2]
            group = _positive_box(be, matches, ious, hard, nearest) if num_box else matches
            keep_pos = draw_positives(how, be, pos, max_pos, keys, group, num_box)
        kept = be.sum(keep_pos, 1, keepdims=True)
        max_neg = be.minimum(draws.negative_quota(float(self.num_sample), kept, self.neg_ratio,
                                                  self.fill_negative),
                             be.sum(neg, 1, keepdims=True))
        if how.neg_sampler == 'uniform':
            keep_neg = draws.keep_uniform(be, neg, max_neg, keys)
        else:  # bins over the negative range [max(neg_thresh_low, 0), neg_thresh_high)
            keep_neg = draw_negatives(how, be, neg, max_neg, keys, best,
                                      max(self.neg_thresh_low, 0.0), self.neg_thresh_high)
        return be.labels(keep_pos, keep_neg)

    def label_numpy(self, matches, ious, hard=None, not_negative=None, keys=None):
        """The labels of numpy arrays (``ious`` (B, N, M) may have M = 0; ``keys`` None draws
        from ``np.random``); a NaN or infinite IoU is logged once per process."""
        be = backend.NUMPY
        pos, neg, best, finite, nearest = self.candidates(be, matches, ious, hard, not_negative)
        if np.min(finite, initial=1.0) < 1:
            warn_once(_WARNED, 'non-finite', _NONFINITE_WARNING)
        return self.draw(be, pos, neg, best, matches, ious, hard, keys, nearest)

    def label_nd(self, matches, ious, hard=None, not_negative=None, keys=None):
        """The labels with ``mx.nd`` operators on the inputs' context: no host copy.

        ``keys`` are required; ``ious`` and ``hard`` are None when M = 0 (MXNet ops reject
        zero-size arrays).
        """
        be = backend.ND
        pos, neg, best, _, nearest = self.candidates(be, matches, ious, hard, not_negative)
        return self.draw(be, pos, neg, best, matches, ious, hard, keys, nearest)


def _positive_box(be, matches, ious, hard, nearest=None):
    """(B, N): each positive's box, the matched one, else the normal box of highest IoU
    (``nearest``, the box of highest IoU, serves when no box is hard).

    Entries off the positives are arbitrary: a hard box scores 2 below any normal one.
    """
    if hard is not None:
        nearest = be.argmax(ious - 2 * be.expand(be.mask(hard > 0), 1), -1)
    elif nearest is None:
        nearest = be.argmax(ious, -1)
    return be.where(be.mask(matches >= 0) > 0, be.float32(matches), nearest)


# ---------------------------------------------------------------------------- the CustomOp
class _QuotaOp(mx.operator.CustomOp):
    """Runs :class:`QuotaRule` on the op's inputs; gradients are zero."""

    def __init__(self, rule, names, use_numpy_backend):
        super().__init__()
        self._rule = rule
        self._names = names
        self._use_numpy = use_numpy_backend

    def forward(self, is_train, req, in_data, out_data, aux):
        out = out_data[0]
        named = dict(zip(self._names, in_data))
        if self._use_numpy:  # read in place (CPU memory): no copy of the (B, N, M) IoUs
            named = {name: host_view(x) for name, x in named.items()}
        inputs = [named.get(name) for name in ('matches', 'ious', 'hard', 'not_negative', 'keys')]
        if self._use_numpy and req[0] in ('write', 'inplace') and out.stype == 'default':
            write_in_place(out, self._rule.label_numpy(*inputs))  # no NDArray in between
            return
        if self._use_numpy:
            labels = mx.nd.array(self._rule.label_numpy(*inputs), ctx=out.context,
                                 dtype=out.dtype)
        else:
            labels = self._rule.label_nd(*inputs).astype(out.dtype)
        self.assign(out, req[0], labels)

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for grad, how in zip(in_grad, req):
            self.assign(grad, how, 0)


@mx.operator.register(OP_TYPE)
class _QuotaOpProp(mx.operator.CustomOpProp):
    """The sampler's CustomOp: inputs ``matches, ious[, hard][, not_negative], keys``.

    Output ``labels`` (B, N). ``keys`` (B, N) are uniform numbers in [0, 1)
    (``F.random.uniform_like``, drawn in the caller's graph); each image keeps the
    candidates with the lowest keys, on both backends. ``not_negative`` (B, N) 0/1 marks
    proposals that may not be negatives (they stay positive if the rule says so).
    Attributes: :class:`QuotaSampler`'s arguments, plus ``has_hard`` and
    ``has_not_negative`` (whether those inputs are present).
    """

    def __init__(self, num_sample, pos_thresh, neg_thresh_high, neg_thresh_low='-inf',
                 pos_ratio='0.5', neg_ratio='None', fill_negative='True', has_hard='False',
                 has_not_negative='False', **strategies):
        super().__init__(need_top_grad=False)
        self._rule = QuotaRule(float(num_sample), float(pos_thresh), float(neg_thresh_high),
                                float(neg_thresh_low), float(pos_ratio),
                                None if neg_ratio in (None, 'None') else float(neg_ratio),
                                _attr_flag('fill_negative', fill_negative),
                                Draw.from_attrs(**strategies))
        self._names = (['matches', 'ious'] + (['hard'] if _attr_flag('has_hard', has_hard)
                                              else [])
                       + (['not_negative'] if _attr_flag('has_not_negative', has_not_negative)
                          else []) + ['keys'])

    def list_arguments(self):
        return list(self._names)

    def list_outputs(self):
        return ['labels']

    def infer_shape(self, in_shape):
        return in_shape, [in_shape[0]], []

    def infer_type(self, in_type):
        labels = None if in_type[0] is None else _output_dtype(in_type[0]).type  # None: unknown
        return in_type, [labels], []

    def create_operator(self, ctx, in_shapes, in_dtypes):
        # Called in the caller's thread (forward runs in MXNet's worker thread), so this is
        # where the thread-local force_ndarray_backend() can still be seen.
        on_cpu = str(ctx).startswith('cpu')
        return _QuotaOp(self._rule, self._names, on_cpu and not ndarray_backend_forced())


# ---------------------------------------------------------------------------- the block
class QuotaSampler(SamplerBlock, gluon.HybridBlock):
    """Label proposals positive/negative by IoU and keep at most a quota of each per image.

    Parameters
    ----------
    num_sample : int
        Samples (positives + negatives) wanted per image, >= 1.
    pos_thresh : float
        IoU with a normal box that makes a positive. Clamped to [0, 1].
    neg_thresh_high : float
        Upper end (excluded) of the negative range of the best IoU. Clamped to [0, 1].
    neg_thresh_low : float, default -inf
        Lower end (included) of the negative range; must be <= ``neg_thresh_high``.
    pos_ratio : float in [0, 1], default 0.5
        Positive quota: ``max_pos = round(pos_ratio * num_sample)``.
    neg_ratio : float or None, default None (``1 - pos_ratio``)
        Negative quota ``int(neg_ratio * num_sample)``; ``pos_ratio + neg_ratio <= 1``.
    fill_negative : bool, default True
        Negatives may take the slots positives left:
        ``max_neg = max(num_sample - kept_pos, int(neg_ratio * num_sample))``.
    draw : :class:`samplers.Draw` or None (default: uniform draws)
        How the quotas are drawn. ``instance_balanced`` positives are spread evenly per box
        (the matched box, else the normal box of highest IoU); ``iou_balanced`` negatives
        across ``num_bins`` IoU bins of [max(``neg_thresh_low``, 0), ``neg_thresh_high``).
        Its fields as flat keywords (``pos_sampler=``, ...) are deprecated
        (:func:`samplers.options.resolve`).

    Called as ``sampler(matches, ious, hard=None)``: ``matches`` (B, N) int or float, the
    matched box per proposal (< 0 for none); ``ious`` (B, N, M) float; ``hard`` (B, M)
    flags (:mod:`samplers.checks`). numpy arrays or NDArrays on one context. Returns (B, N)
    labels (1 / -1 / 0) of the input's kind and context, in ``matches``' float dtype
    (float32 for integer matches).

    Rule, per image: ``pos = (matched to a normal box) or (not matched and max_j(normal_j *
    iou_j) >= pos_thresh)``; ``neg = not matched and not pos and neg_thresh_low <= max_j
    iou_j < neg_thresh_high``. A uniformly random ``min(#pos, max_pos)`` positives and
    ``min(#neg, max_neg)`` negatives are kept (the samplers change which, never how many).

    Edges: M = 0 means best IoU 0, so only ``matches`` makes positives. Fewer candidates
    than a quota: all are kept. A hard box never makes a positive; a proposal matched to
    one is 0 even when it overlaps a normal box at >= ``pos_thresh`` (the caller reads its
    targets from ``matches``, which name the hard box), and one overlapping a hard box at
    >= ``neg_thresh_high`` without being positive is 0. A match
    index outside [0, M) counts as a normal box; a NaN match as no match; a NaN or infinite
    IoU makes the proposal 0.
    """

    def __init__(self, num_sample: int, pos_thresh: float, neg_thresh_high: float,
                 neg_thresh_low: float = -np.inf, pos_ratio: float = 0.5,
                 neg_ratio: float | None = None, fill_negative: bool = True,
                 draw: Draw | None = None, **flat):
        super().__init__()
        draw, _ = resolve(type(self).__name__, flat, draw, accepts=('draw',))
        self._rule = QuotaRule(num_sample, pos_thresh, neg_thresh_high, neg_thresh_low,
                                pos_ratio, neg_ratio, fill_negative, draw)

    def _settings(self):
        rule = self._rule
        return dict(num_sample=rule.num_sample, pos_thresh=rule.pos_thresh,
                    neg_thresh_high=rule.neg_thresh_high, neg_thresh_low=rule.neg_thresh_low,
                    pos_ratio=rule.pos_ratio, neg_ratio=rule.neg_ratio,
                    fill_negative=rule.fill_negative, **option_settings(draw=rule.draw_options))

    def forward(self, matches: Array, ious: Array, hard: Array | None = None) -> Array:
        """Check the inputs, then label: numpy directly, NDArray/Symbol through the op."""
        if isinstance(matches, mx.sym.Symbol):
            return super().forward(matches, ious, hard)
        flags = _check_inputs(matches, ious, hard)
        if not is_ndarray(matches):
            matches = np.asarray(matches)
            labels = self._rule.label_numpy(matches, np.asarray(ious), flags)
            return labels.astype(_output_dtype(matches.dtype), copy=False)
        if 0 in ious.shape:
            return self._label_zero_size(matches, ious)
        return super().forward(matches, ious, hard)

    def hybrid_forward(self, F, matches, ious, hard=None):
        keys = F.random.uniform_like(F.zeros_like(matches).astype('float32'))
        inputs = (matches, ious, keys) if hard is None else (matches, ious, hard, keys)
        return F.Custom(*inputs, op_type=OP_TYPE, has_hard=str(hard is not None),
                        **self._rule.attrs())

    def _label_zero_size(self, matches, ious):
        """NDArray inputs with B, N or M = 0, which MXNet ops reject: label without the op."""
        dtype = _output_dtype(matches.dtype)
        if matches.size == 0:
            return mx.nd.array(np.zeros(matches.shape, dtype), ctx=matches.context, dtype=dtype)
        # M = 0. Keys from mx.random, as the op's: mx.random.seed alone reproduces the call.
        keys = mx.nd.random.uniform_like(matches.astype('float32'))
        if use_numpy(matches):
            return like(self._rule.label_numpy(matches.asnumpy(), ious.asnumpy(),
                                               keys=keys.asnumpy()), matches, dtype=dtype)
        return self._rule.label_nd(matches, None, keys=keys).astype(dtype)


def _check_inputs(matches, ious, hard):
    """The checked hard flags (:func:`samplers.checks.hard_flags`), or ``ValueError`` naming
    the arguments and shapes unless the call's inputs fit."""
    named = [('matches', matches), ('ious', ious), ('hard', hard)]
    if check_same_kind(named):
        check_one_context(named)
    m_shape, i_shape = np.shape(matches), np.shape(ious)
    if len(m_shape) != 2 or len(i_shape) != 3 or i_shape[:2] != m_shape:
        raise ValueError('matches must have shape (B, N) and ious (B, N, M), got matches {} '
                         'and ious {}'.format(m_shape, i_shape))
    flags = hard_flags(hard, i_shape[2], i_shape[0], per_image=False,
                       against='ious {}'.format(i_shape))
    check_dtype('matches', np.asarray(matches) if not is_ndarray(matches) else matches, 'iuf')
    check_dtype('ious', np.asarray(ious) if not is_ndarray(ious) else ious)
    return flags
