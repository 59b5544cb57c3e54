"""OHEMSampler: online hard negative mining (Shrivastava et al., CVPR 2016).

Every matched anchor is kept as a positive; among the unmatched anchors that
overlap no ground truth much, the ones the classifier finds hardest (largest
background loss) are taken as negatives, ``ratio`` of them per positive.
Labels follow the package convention (see :mod:`samplers`).

The selection is written once, for numpy arrays, NDArrays and symbols alike
(against the array protocol of :mod:`samplers.backend`):
:func:`ohem_quota` (how many negatives per image) and :func:`hard_negatives`
(which ones). :mod:`samplers.ssd` mines its loss with the same two.

The background loss it ranks by is :mod:`samplers.background`; the
de-duplication's NMS is :mod:`samplers.nms`.
"""
from __future__ import annotations

import functools

import numpy as np
import mxnet as mx
from mxnet import gluon

from . import backend, nms
from .background import BackgroundRanking, background_loss, background_loss_F
from ._blocks import SamplerBlock, traced
from ._arrays import Array, finite_F, finite_rows_F, host_view, like, to_numpy, use_numpy, warn_once
from .backend import Backend
from .boxes import finite_rows, row_max
from .draws import keep_top
from .checks import (check_boxes, check_dtype, check_int, check_one_context, check_ratio,
                     check_same_kind)

__all__ = ['OHEMSampler', 'hard_negatives', 'ohem_quota']

_INF = float('inf')
_FLOAT32S = ('float32',) * 3


# --------------------------------------------------------------------------- the selection
def ohem_quota(be: Backend, num_pos: Array, ratio: float, min_samples: int) -> Array:
    """Negatives wanted per image: ``max(min_samples, floor(ratio * num_pos))``.

    ``be`` the arrays' backend (:mod:`samplers.backend`); ``num_pos`` (B, 1)
    float64 positive counts (``be.count``); ``ratio`` > 0; ``min_samples`` >= 0.
    Returns (B, 1) float64. The product is taken in float64, so a huge ``ratio``
    gives a huge (or infinite) quota, never NaN; :func:`hard_negatives` caps it
    at the candidates.
    """
    # min_samples capped where float32 counts stay exact (no image has 2**24 anchors).
    return be.maximum(be.floor(num_pos * ratio), float(min(min_samples, 2 ** 24)))


def hard_negatives(be: Backend, loss: Array, candidate: Array, quota: Array) -> Array:
    """The hardest candidates of each image: the OHEM selection, on any backend.

    ``be`` the arrays' backend (``NUMPY``, ``ND`` or ``SYM`` of
    :mod:`samplers.backend`); ``loss`` (B, N) float, larger is harder;
    ``candidate`` (B, N) 0/1 mask of the anchors that may be chosen (their
    ``loss`` must be finite); ``quota`` (B, 1) counts wanted (any
    non-negative float).

    Rule: per image the ``min(quota, num_candidates)`` candidates with the
    largest ``loss`` are chosen, ties going to the lower anchor index
    (keep-top, :mod:`samplers.draws`); no other anchor is ever chosen.
    Returns a (B, N) float32 0/1 mask.
    """
    return keep_top(be, loss, candidate, be.minimum(quota, be.count(candidate)))


# --------------------------------------------------------------------------- the sampler
class OHEMSampler(SamplerBlock, gluon.HybridBlock):
    """Online hard example mining: every positive, and the hardest negatives.

    Parameters
    ----------
    ratio : float
        Negatives wanted per positive, > 0 and finite (SSD uses 3).
    min_samples : int, default 0
        Negatives wanted even in an image with few or no positives.
    thresh : float in (0, 1], default 0.5
        An unmatched anchor whose best IoU reaches ``thresh`` is never a negative.
    nms_thresh : float in [0, 1] or None, default None
        When set, a candidate whose box overlaps a harder chosen negative with IoU >
        ``nms_thresh`` is skipped (the paper uses 0.7). Needs ``boxes=``.

    Called as ``sampler(x, logits, ious, scores=None, boxes=None)``: ``x`` (B, N) matched
    box index (>= 0) or -1; ``logits`` (B, N, C), C >= 2, class 0 background (may be None
    with ``scores``); ``ious`` (B, N) best IoU or (B, N, M); ``scores`` (B, N), a loss to
    rank by instead of the background loss; ``boxes`` (B, N, 4) corners, only with
    ``nms_thresh``. All numpy or all NDArrays on one context. Returns (B, N) float32 labels
    in ``x``'s kind and context.

    Rule: ``x >= 0`` is positive. Candidates are the anchors with ``x < 0``, best IoU <
    ``thresh`` and finite inputs; per image the ``min(max(min_samples, floor(ratio *
    num_pos)), num_candidates)`` with the largest background loss ``-log
    softmax(logits)[0]`` (or ``scores``) are negatives, ties to the lower index (with
    ``nms_thresh``: walked hardest first, overlapping ones skipped). The rest is 0.

    Edges: no ground truth (M = 0, or no positive): ``min_samples`` negatives. Fewer
    candidates than wanted: all are taken, never a positive or a high-IoU anchor. Hard
    boxes: include them in ``ious`` and leave their anchors unmatched; an IoU >= ``thresh``
    keeps them from being mined. A NaN in ``x`` or a non-finite logit, score, IoU or box
    makes the anchor 0.
    """

    def __init__(self, ratio: float, min_samples: int = 0, thresh: float = 0.5,
                 nms_thresh: float | None = None, **kwargs):
        super(OHEMSampler, self).__init__(**kwargs)
        self._ratio = check_ratio('ratio', ratio, 0.0, _INF, low_open=True, high_open=True)
        self._min_samples = check_int('min_samples', min_samples, minimum=0)
        self._thresh = check_ratio('thresh', thresh, 0.0, 1.0, low_open=True)
        self._nms_thresh = (None if nms_thresh is None
                            else check_ratio('nms_thresh', nms_thresh, 0.0, 1.0))

    def _settings(self):
        return dict(ratio=self._ratio, min_samples=self._min_samples, thresh=self._thresh,
                    nms_thresh=self._nms_thresh)

    def forward(self, x: Array, logits: Array | None, ious: Array, scores: Array | None = None,
                boxes: Array | None = None) -> Array:
        args = (x, logits, ious, scores, boxes)
        if any(isinstance(a, mx.sym.Symbol) for a in args):  # traced by a hybridized parent
            _check_config(self._nms_thresh, logits, scores, boxes)
            return super(OHEMSampler, self).forward(*args)
        _check_inputs(self._nms_thresh, *args)
        if np.prod(x.shape) == 0:
            return like(np.zeros(x.shape, np.float32), x)
        if ious.ndim == 3 and ious.shape[-1] == 0:  # no ground truth: best IoU 0
            ious = like(np.zeros(x.shape, np.dtype(ious.dtype)), ious)
            args = (x, logits, ious, scores, boxes)
        if use_numpy(x):
            with np.errstate(invalid='ignore'):  # a NaN match compares false both ways: ignored
                x_, best, ious_ok, loss, finite, boxes = _inputs_np(self, *args)
                mine = _miner(backend.NUMPY, loss, boxes,
                              functools.partial(nms.dedup_np, thresh=self._nms_thresh))
                return like(self._labels(backend.NUMPY, x_, best, ious_ok, finite, mine), x)
        if self._active:  # one graph per pattern of None inputs and float widths
            widths = _widths(*args[1:4])
            return self._keyed_graph(tuple(a is None for a in args) + widths, args, widths)
        with x.context:
            return self.hybrid_forward(mx.nd, *args)

    # ----------------------------------------------------------------------- the rule
    def _labels(self, be, x, best, ious_ok, finite, mine):
        """The labels from per-anchor inputs, written once for every backend ``be``.

        ``x`` (B, N) matches; ``best`` (B, N) best IoU; ``ious_ok``,
        ``finite`` (B, N) 0/1: the IoUs and the ranking loss are finite;
        ``mine(candidate, quota)`` the negatives chosen among the 0/1
        ``candidate`` (B, N), ``quota`` (B, 1) per image (:func:`_miner`). See
        the class docstring.
        """
        positive = be.mask(x >= 0)
        candidate = be.mask(x < 0) * be.mask(best < self._thresh) * ious_ok * finite
        quota = ohem_quota(be, be.count(positive), self._ratio, self._min_samples)
        return be.labels(positive, mine(candidate, quota))

    def hybrid_forward(self, F, x, logits, ious, scores=None, boxes=None):
        """Labels from F operators only; see the class docstring for the rule."""
        be = backend.of_kind(x)
        x, best, ious_ok, loss, finite, boxes = _inputs_F(F, x, logits, ious, scores, boxes)
        mine = _miner(be, loss, boxes, functools.partial(_dedup_graph, F, self._nms_thresh))
        return self._labels(be, x, best, ious_ok, finite, mine)


def _miner(be, loss, boxes, dedup):
    """``mine(candidate, quota)`` for ``OHEMSampler._labels``: the hardest by ``loss`` (an
    array, or a :class:`~samplers.background.BackgroundRanking`), or with ``boxes`` the
    de-duplicated choice ``dedup(loss, candidate, quota, boxes)``."""
    if isinstance(loss, BackgroundRanking):
        return loss.hardest
    if boxes is None:
        return functools.partial(hard_negatives, be, loss)
    return lambda candidate, quota: dedup(loss, candidate * be.finite_rows(boxes), quota, boxes)


def _dedup_graph(F, thresh, loss, candidate, quota, boxes):
    """:func:`samplers.nms.dedup_F` with the rule's float64 quota."""
    return nms.dedup_F(F, loss, candidate, F.cast(quota, 'float32'), boxes, thresh)


# --------------------------------------------------------------------------- per-anchor inputs
def _inputs_np(sampler, x, logits, ious, scores, boxes):
    """``(x, best, ious_ok, loss, finite, boxes)`` as numpy arrays, by numpy's fastest
    roads: ``loss`` is a :class:`samplers.background.BackgroundRanking` of the logits when
    neither ``scores`` nor ``boxes`` is given. Non-finite values are logged once per
    ``sampler``.
    """
    x = to_numpy(x)
    ious = to_numpy(ious)
    if ious.dtype == np.float16:
        ious = ious.astype(np.float32)
    if ious.ndim == 3:
        ious_ok = finite_rows(ious)
        best = row_max(ious)
    else:
        ious_ok, best = np.isfinite(ious), ious
    if scores is not None:
        loss = to_numpy(scores)
        finite = np.isfinite(loss)
        name = 'scores'
    elif boxes is None:  # the plain selection: few losses are computed
        loss = BackgroundRanking(host_view(logits))
        finite = loss.finite
        name = 'logits'
    else:
        loss, finite = background_loss(host_view(logits))
        name = 'logits'
    for bad, what in ((not finite.all(), name), (not ious_ok.all(), 'ious'),
                      (x.dtype.kind == 'f' and np.isnan(x).any(), 'x')):
        if bad:
            warn_once(sampler, what, 'OHEMSampler: non-finite values in {}; those anchors are '
                      'ignored (label 0)'.format(what))
    if not ious_ok.all():
        best = np.where(ious_ok, best, 0)  # the anchor is out through ious_ok
    if not finite.all() and not isinstance(loss, BackgroundRanking):
        loss = np.where(finite, loss, 0)
    if boxes is not None:
        boxes = to_numpy(boxes).astype(np.float64)
    return (x, best, ious_ok.astype(np.float32), loss, finite.astype(np.float32), boxes)


def _inputs_F(F, x, logits, ious, scores, boxes):
    """``(x, best, ious_ok, loss, finite, boxes)`` as F arrays.

    Each float input is computed in float32, or in float64 if it is
    float64: read from the NDArrays themselves, or, while a graph is
    traced, from this thread's call (float32 when a hybridized parent
    traces us and the dtypes are unknown).
    """
    if F is mx.nd:
        widths = _widths(logits, ious, scores)
    else:
        widths = traced(_FLOAT32S)
    width = dict(zip(('logits', 'ious', 'scores'), widths))

    def widened(a, name):
        return F.cast(F.stop_gradient(a), width[name])

    ious = F.reshape(widened(ious, 'ious'), shape=(0, 0, -1))
    ious_ok = F.cast(finite_rows_F(F, ious), 'float32')
    best = F.max(ious, axis=2)
    best = F.where(ious_ok > 0, best, F.zeros_like(best))
    if scores is None:
        loss, finite = background_loss_F(F, widened(logits, 'logits'))
    else:
        loss = widened(scores, 'scores')
        finite = finite_F(F, loss)
    finite = F.cast(finite, 'float32')
    loss = F.where(F.cast(finite, width['scores' if scores is not None else 'logits']) > 0,
                   loss, F.zeros_like(loss))
    if boxes is not None:
        boxes = F.stop_gradient(boxes)
    return x, best, ious_ok, loss, finite, boxes


# --------------------------------------------------------------------------- input checks
def _check_config(nms_thresh, logits, scores, boxes):
    if logits is None and scores is None:
        raise ValueError('logits may only be None when scores is given')
    if (boxes is None) != (nms_thresh is None):
        raise ValueError('boxes and nms_thresh go together: got boxes {} and nms_thresh {}'
                         .format('None' if boxes is None else 'given', nms_thresh))


def _check_inputs(nms_thresh, x, logits, ious, scores, boxes):
    """``ValueError`` naming the argument unless the call's inputs fit together."""
    _check_config(nms_thresh, logits, scores, boxes)
    named = [(n, a) for n, a in (('x', x), ('logits', logits), ('ious', ious),
                                 ('scores', scores), ('boxes', boxes)) if a is not None]
    if check_same_kind(named):
        check_one_context(named)
    for n, a in named:
        check_dtype(n, a, 'fiu' if n == 'x' else 'f')
    shapes = {n: tuple(a.shape) for n, a in named}
    if len(shapes['x']) != 2:
        raise ValueError('x must have shape (B, N), got {}'.format(shapes['x']))
    bn = shapes['x']

    def fail(name, want):
        raise ValueError('{} must have shape {} to match x {}, got {}'.format(
            name, want, bn, shapes[name]))

    if logits is not None and (len(shapes['logits']) != 3 or shapes['logits'][:2] != bn
                               or shapes['logits'][2] < 2):
        fail('logits', '(B, N, C) with C >= 2')
    if shapes['ious'][:2] != bn or len(shapes['ious']) not in (2, 3):
        fail('ious', '(B, N) or (B, N, M)')
    if scores is not None and shapes['scores'] != bn:
        fail('scores', '(B, N)')
    if boxes is not None:
        check_boxes('boxes', boxes, batched=True)
        if shapes['boxes'][:2] != bn:
            fail('boxes', '(B, N, 4)')


def _widths(*arrays):
    """'float64' for each float64 array, 'float32' for anything else (None too)."""
    return tuple('float64' if a is not None and np.dtype(a.dtype) == np.float64 else 'float32'
                 for a in arrays)
