"""RPN targets: which anchors train the region proposal network, and toward what.

:class:`RPNTargetSampler` labels anchors from an IoU matrix (labels as in
:mod:`samplers`); :class:`RPNTargetGenerator` goes from ground-truth boxes and
anchors to the three targets a Faster R-CNN RPN head trains on. The rule is
GluonCV 0.10.5's. For anchor i with IoUs ``x[i, j]`` against the boxes, hard
boxes (VOC ``difficult``) flagged:

* ``valid``: the row is finite and ``max_j x[i, j] >= 0`` (GluonCV writes -1
  for anchors crossing the image border); an invalid anchor is ignored;
* ``normal_over_pos``:  ``max over normal j of x[i, j] >= pos_iou_thresh``;
* ``best``:  some normal box j has ``x[i, j] > 0`` and ``x[i, j] + eps > max_k
  x[k, j]`` (``eps = np.spacing(np.float32(1))``; tied anchors all count);
* ``normal_under_neg``:  ``max over normal j of x[i, j] < neg_iou_thresh``;
* ``all_under_neg``:  ``max over all j of x[i, j] < neg_iou_thresh`` (hard boxes too);

then, in :func:`_label`, over 0/1 masks::

    positive = valid * max(normal_over_pos, best * (1 - normal_under_neg))
    negative = valid * all_under_neg * (1 - positive) * (1 - ignore)

(``best`` alone, without ``1 - normal_under_neg``, with ``allow_low_quality_matches``)

and per image at most ``round(pos_ratio * num_sample)`` positives are kept,
uniformly at random, then at most ``num_sample - kept positives`` negatives
(:func:`_subsample`). ``ignore`` marks anchors covered by a hard box
(``hard_iof_thresh``) and, in :class:`RPNTargetGenerator`, anchors at least
``crowd_iof_thresh`` inside a crowd region (a crowd region is matched to nothing).
So a hard box never makes a positive, positives never
match it, and an anchor overlapping it (IoU >= ``neg_iou_thresh``) is ignored;
with every flag 0 the result is the unflagged one, random draws included.

The rule is written once over 0/1 masks (the array protocol of
:mod:`samplers.backend`) and runs on numpy or ``mx.nd``. Its inputs ("facts") come from the
dense IoU matrix (:func:`_dense_facts`, both backends) or, for anchors in a
grid layout on the numpy backend, from :mod:`samplers.anchor_grid`, which
looks only at the pairs that can matter. The differences from GluonCV
(each has a ``test_differs_from_gluoncv_`` test) are listed in docs/gluoncv.md.
"""
from __future__ import annotations

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon

from ._blocks import SamplerBlock, option_settings
from .anchor_grid import GridCache, border_limits, grid_facts
from .balanced import instance_balanced, iou_balanced
from .options import Draw, HardRule, resolve
from . import backend
from ._arrays import (POSITIVE, Array, host_view, is_ndarray, like, to_numpy, use_numpy,
                      warn_once)
from .checks import (check_bool, check_boxes, check_dtype, check_count, check_positive,
                     check_ratio, check_stds, check_thresh, hard_flags, hard_on_device)
from .boxes import (INVALID_IOU, best_match, box_iof, box_iou, cls_target_from_labels,
                    encode_boxes, finite_rows, match_anchors, scan_rows, too_small)
from .draws import keep_random, negative_quota, positive_quota

__all__ = ['RPNTargetSampler', 'RPNTargetGenerator']

_PADDING = -1  # GluonCV pads label arrays with rows of -1


# =========================================================================== argument checks
def _check_rule(num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio):
    """The checked settings ``(num_sample, pos_t, neg_t, pos_ratio)``, or ValueError naming one."""
    num_sample = check_count('num_sample', num_sample, minimum=1)
    pos_t = check_thresh('pos_iou_thresh', pos_iou_thresh)
    neg_t = check_thresh('neg_iou_thresh', neg_iou_thresh)
    if not pos_t > 0:
        raise ValueError('pos_iou_thresh must be > 0 (an anchor overlapping nothing is never '
                         'an object), got {}'.format(pos_t))
    if neg_t < 0:
        raise ValueError('neg_iou_thresh must be >= 0 (IoUs below 0 mark invalid anchors), '
                         'got {}'.format(neg_t))
    if pos_t < neg_t:
        raise ValueError('pos_iou_thresh must be >= neg_iou_thresh, got pos_iou_thresh={} and '
                         'neg_iou_thresh={}'.format(pos_t, neg_t))
    pos_ratio = check_ratio('pos_ratio', pos_ratio)
    return num_sample, pos_t, neg_t, pos_ratio


def _check_ious(ious):
    """ValueError unless ``ious`` is a float (N, M) or (B, N, M) array."""
    shape = tuple(ious.shape)
    if len(shape) not in (2, 3):
        raise ValueError('ious must have shape (N, M) or (B, N, M), got {}'.format(shape))
    check_dtype('ious', ious)


# =========================================================================== the rule
class _Facts:
    """The rule's per-anchor inputs, (..., N) uint8 0/1 masks of one backend (``compact_mask``).

    ``valid``, ``normal_over_pos``, ``best``, ``normal_under_neg``, ``all_under_neg`` as
    in the module docstring; ``ignore`` never negative (or None); ``match`` each
    anchor's best normal box (or None: then found for the positives only); ``iou`` the
    best IoU with any box (or None: only the IoU-balanced negatives need it).
    """
    __slots__ = ('be', 'valid', 'normal_over_pos', 'best', 'normal_under_neg', 'all_under_neg',
                 'ignore', 'match', 'iou')

    def __init__(self, valid, normal_over_pos, best, normal_under_neg, all_under_neg,
                 ignore=None, match=None, iou=None):
        #: The masks' backend (:mod:`samplers.backend`).
        self.be = backend.of(valid)
        mask = self.be.compact_mask
        self.valid, self.normal_over_pos, self.best, self.normal_under_neg, \
            self.all_under_neg = (mask(m) for m in (valid, normal_over_pos, best,
                                                    normal_under_neg, all_under_neg))
        self.ignore = None if ignore is None else mask(ignore)
        self.match = match
        self.iou = iou


def _label(f, allow_low_quality):
    """``(positive, negative)`` candidate masks from :class:`_Facts`: the RPN rule."""
    best = f.best if allow_low_quality else f.best * (1 - f.normal_under_neg)
    pos = f.valid * f.be.maximum(f.normal_over_pos, best)
    neg = f.valid * f.all_under_neg * (1 - pos)
    if f.ignore is not None:
        neg = neg * (1 - f.ignore)
    return pos, neg


def _subsample(pos, neg, num_sample, max_pos, draw=None, facts=None, num_box=None,
               neg_high=None):
    """Labels (..., N): at most ``max_pos`` positives per image at random, then negatives
    up to ``num_sample`` in all (:func:`negative_quota` with no fixed share).

    ``draw`` (:class:`samplers.options.Draw`, optional) may draw the positives
    per box (``facts.match``, ``num_box`` boxes) and the negatives across IoU bins of
    [0, ``neg_high``) (``facts.iou``); ``facts.iou`` must then be set."""
    be = backend.of(pos)
    if draw is None or draw.pos_sampler == 'uniform':
        pos = be.compact_mask(keep_random(pos, max_pos))
    else:
        pos = be.compact_mask(instance_balanced(pos, facts.match, max_pos, num_box))
    kept = be.count(pos)
    max_neg = negative_quota(num_sample, kept, 0.0)
    if draw is None or draw.neg_sampler == 'uniform':
        neg = be.compact_mask(keep_random(neg, max_neg))
    else:
        neg = be.compact_mask(iou_balanced(neg, facts.iou, max_neg, high=neg_high,
                                           **draw.iou_options()))
    return be.labels(pos, neg)


# =========================================================================== facts, densely
def _ignore_nonfinite_rows(ious):
    """``(ious, num_bad)``: rows holding NaN/inf set to ``INVALID_IOU`` (invalid anchors).

    ``num_bad`` is their count on the numpy backend and None on mx.nd (counting
    would read the device). The numpy sampler calls this only once it has seen a
    non-finite value (:meth:`RPNTargetSampler._sample_image`).
    """
    if use_numpy(ious):
        bad = ~finite_rows(ious)
        return np.where(bad[..., None], ious.dtype.type(INVALID_IOU), ious), int(bad.sum())
    be = backend.ND
    bad = 1 - finite_rows(ious)
    return be.where(be.expand(bad, -1), INVALID_IOU, ious), None


def _dense_facts(ious, normal, valid, pos_t, neg_t, scan=None):
    """:class:`_Facts` from a dense IoU matrix, numpy (N, M) or NDArray (..., N, M).

    ``ious`` finite, rows of invalid anchors negative (numpy: C-contiguous);
    ``normal`` (..., M) 0/1 non-hard boxes, or None for all; ``valid``
    (..., N) 0/1 or None: anchors that may be labelled at all; ``scan``
    (numpy, optional) :func:`samplers.boxes.scan_rows` of ``ious``.
    """
    be = backend.of(ious)
    max_n, match, best = match_anchors(ious, normal, scan=scan)
    max_all = max_n
    if normal is not None:
        max_all = scan.row_max if scan is not None else \
            be.maximum(max_n, best_match(ious, 1 - normal)[0])
    present = max_all >= 0
    valid = present if valid is None else valid * present
    return _Facts(valid, max_n >= pos_t, best, max_n < neg_t, max_all < neg_t, match=match,
                  iou=max_all)


# =========================================================================== RPNTargetSampler
class RPNTargetSampler(SamplerBlock, gluon.Block):
    """Label RPN anchors positive / negative / ignored from their IoUs with ground truth.

    Parameters
    ----------
    num_sample : int
        Anchors trained per image (positives plus negatives), >= 1.
    pos_iou_thresh : float
        Best IoU >= this makes an anchor positive (> 0).
    neg_iou_thresh : float
        Best IoU in [0, this) makes an anchor negative (>= 0, <= ``pos_iou_thresh``).
    pos_ratio : float
        At most ``round(pos_ratio * num_sample)`` positives per image, in [0, 1].
    allow_low_quality_matches : bool, default False
        Keep each box's best anchor(s) positive even below ``neg_iou_thresh``
        (Faster R-CNN paper, detectron2). False is GluonCV's rule.
    draw : :class:`samplers.Draw` or None (default: uniform draws)
        How the quotas are drawn: ``instance_balanced`` positives evenly per box (each
        anchor's best normal box), ``iou_balanced`` negatives evenly across ``num_bins`` IoU
        bins of [0, ``neg_iou_thresh``). Its fields as flat keywords (``pos_sampler=``, ...)
        are deprecated (:func:`samplers.options.resolve`).
    subsample : bool, default True
        False labels every candidate (no quota, no random draw): for OHEM, which chooses the
        anchors to train by their loss (:mod:`samplers.rpn_ohem`).

    Called as ``sampler(ious, hard=None)``: ``ious`` (N, M) or (B, N, M) float IoUs of N
    anchors with M boxes, numpy or NDArray; ``hard`` (M,) or (B, M) flags
    (:mod:`samplers.checks`). Returns ``(samples, matches)`` of shape (N,) or (B, N) in the
    input's kind and context: float32 labels, and each anchor's best non-hard box (first on
    ties; 0 without one), int64 for numpy and float32 for NDArrays.

    Rule (:mod:`samplers.rpn`): positive when the best IoU is >= ``pos_iou_thresh`` or the
    anchor is (within eps, IoU > 0) a box's best; negative when the best IoU is <
    ``neg_iou_thresh``, which wins over the best-anchor rule unless
    ``allow_low_quality_matches``; then per image at most ``round(pos_ratio * num_sample)``
    positives at random and at most ``num_sample - kept positives`` negatives.

    Edges: a row whose max is negative (an invalid anchor) or holds NaN/inf is ignored; with
    no ground truth every valid anchor is a negative candidate; with fewer candidates than
    the quota all are kept; hard boxes make no positive and turn the anchors overlapping
    them (IoU >= ``neg_iou_thresh``) to ignored.
    """

    def __init__(self, num_sample: int, pos_iou_thresh: float, neg_iou_thresh: float,
                 pos_ratio: float, allow_low_quality_matches: bool = False,
                 draw: Draw | None = None, subsample: bool = True, **flat):
        super().__init__()
        self._subsample = check_bool('subsample', subsample)
        self._num_sample, self._pos_t, self._neg_t, self._pos_ratio = _check_rule(
            num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio)
        self._max_pos = positive_quota(self._num_sample, self._pos_ratio)
        self._allow_low_quality = check_bool('allow_low_quality_matches',
                                             allow_low_quality_matches)
        self._draw, _ = resolve(type(self).__name__, flat, draw, accepts=('draw',))

    def _settings(self):
        return dict(num_sample=self._num_sample, pos_iou_thresh=self._pos_t,
                    neg_iou_thresh=self._neg_t, pos_ratio=self._pos_ratio,
                    allow_low_quality_matches=self._allow_low_quality,
                    **option_settings(draw=self._draw),
                    **({} if self._subsample else dict(subsample=False)))

    def forward(self, ious: Array, hard: Array | None = None) -> tuple[Array, Array]:
        """Label the anchors; see the class docstring."""
        if not is_ndarray(ious):
            ious = np.asarray(ious)
        _check_ious(ious)
        hard = hard_flags(hard, ious.shape[-1], ious.shape[0] if ious.ndim == 3 else None,
                          against='ious {}'.format(tuple(ious.shape)),
                          numpy_path=use_numpy(ious))
        if use_numpy(ious):
            return self._call_numpy(ious, hard)
        return self._call_nd(ious, hard)

    @property
    def pos_iou_thresh(self) -> float:
        """Best IoU >= this makes an anchor positive."""
        return self._pos_t

    @property
    def neg_iou_thresh(self) -> float:
        """Best IoU in [0, this) makes an anchor negative."""
        return self._neg_t

    @property
    def draw(self) -> Draw:
        """How the quotas are drawn (:class:`samplers.Draw`)."""
        return self._draw

    def label_facts(self, facts, num_box=None):
        """Labels (..., N) of the rule and the quotas for the per-anchor facts (a ``_Facts``
        of this module) of ``num_box`` boxes: how :class:`RPNTargetGenerator` labels (every
        candidate without ``subsample``)."""
        if not self._subsample:
            return facts.be.labels(*_label(facts, self._allow_low_quality))
        return _subsample(*_label(facts, self._allow_low_quality), self._num_sample,
                          self._max_pos, self._draw, facts, num_box, self._neg_t)

    # ----------------------------------------------------------------------- inputs arrive
    def _call_numpy(self, ious, hard):
        """numpy backend: one image at a time; ``hard`` a boolean numpy array or None."""
        arr = host_view(ious)  # a CPU NDArray is read in place; nothing here writes to it
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)
        batch = arr[None] if arr.ndim == 2 else arr
        flags = None if hard is None else np.broadcast_to(hard, batch.shape[:1] + arr.shape[-1:])
        images = [self._sample_image(img, None if flags is None else flags[b])
                  for b, img in enumerate(batch)]
        if arr.ndim == 2:
            samples, matches = images[0]
        elif images:
            samples, matches = (np.stack(v) for v in zip(*images))
        else:
            samples = np.zeros(arr.shape[:2], np.float32)
            matches = np.zeros(arr.shape[:2], np.int64)
        if is_ndarray(ious):
            return like(samples, ious), like(matches, ious, dtype=np.float32)
        return samples, matches

    def _sample_image(self, ious, hard):
        """``(samples, matches)`` of one (N, M) numpy image; ``hard`` (M,) bool or None."""
        ious = np.ascontiguousarray(ious)
        normal = None if hard is None or not hard.any() else ~hard
        # One pass gives the facts' maxima and the minimum, which with them shows NaN and inf.
        scan = scan_rows(ious) if ious.size else None
        if scan is not None and not scan.finite():
            ious, num_bad = _ignore_nonfinite_rows(ious)
            warn_once(self, 'nonfinite', '{}: {} anchor(s) with a NaN/inf IoU were ignored '
                      '(logged once)'.format(type(self).__name__, num_bad))
            scan = scan_rows(ious)
        facts = _dense_facts(ious, normal, None, self._pos_t, self._neg_t, scan)
        if self._draw.neg_sampler == 'uniform':
            facts.iou = None  # only the IoU-balanced draw reads it; the sampling peak is lower
        return self.label_facts(facts, ious.shape[1]).astype(np.float32, copy=False), facts.match

    def _call_nd(self, ious, hard):
        """mx.nd backend: the whole batch on ``ious``' context, no host copy."""
        shape = tuple(ious.shape)
        batch, n, m = (1,) + shape if len(shape) == 2 else shape
        ctx = ious.context
        if batch == 0 or n == 0:  # MXNet's operators reject zero-size arrays
            # (NDArray.copy() fails too); built from host zeros, nothing is read back
            empty = np.zeros(shape[:-1], np.float32)
            return like(empty, ious), like(empty, ious)
        with autograd.pause():
            if m == 0:  # one box that overlaps nothing and is not normal: the same facts
                x = mx.nd.zeros((batch, n, 1), ctx=ctx)
                normal = mx.nd.zeros((batch, 1), ctx=ctx)
            else:
                x = ious.reshape((batch, n, m))
                if x.dtype not in (np.float32, np.float64):
                    x = x.astype('float32')
                flags = hard_on_device(hard, m, ctx)
                normal = mx.nd.broadcast_to((flags <= 0).reshape((-1, m)),
                                            shape=(batch, m)).astype(x.dtype)
            x, _ = _ignore_nonfinite_rows(x)
            facts = _dense_facts(x, normal, None, self._pos_t, self._neg_t)
            samples, matches = self.label_facts(facts, max(m, 1)), facts.match.astype('float32')
        return samples.reshape(shape[:-1]), matches.reshape(shape[:-1])


# =========================================================================== RPNTargetGenerator
class RPNTargetGenerator(SamplerBlock, gluon.Block):
    """RPN training targets for one image: classes, box offsets and box masks.

    Parameters
    ----------
    num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio, allow_low_quality_matches
        As :class:`RPNTargetSampler` (defaults 256, 0.7, 0.3, 0.5, False).
    stds : 4 positive numbers, default (1., 1., 1., 1.)
        Box offsets are divided by these.
    allowed_border : float >= 0, default 0
        An anchor is valid when it crosses the image border by at most this many pixels:
        ``x1 >= -b, y1 >= -b, x2 < width + b, y2 < height + b`` (``inf`` keeps all).
    hard : :class:`samplers.HardRule` or None (default ``HardRule()``)
        ``iof_thresh`` (default None: off): also ignore an anchor whose intersection with a
        hard box covers at least this fraction of the anchor's area; ``crowd_iof_thresh``
        (0.7): ignore an anchor at least this much inside a crowd region (Detectron's crowd
        filter); ``min_size`` (default None): a box whose shorter side (``min(x2 - x1, y2 -
        y1)``, in ``bbox``'s units: pixels of the resized image in a training transform) is
        below it is hard too, whatever its flag. ``iou_thresh`` must stay None: anchors near
        a hard box are ignored at ``neg_iou_thresh``.
    draw, subsample
        The balanced draws, as :class:`RPNTargetSampler` (default: uniform), or none.

    The fields of ``hard`` and ``draw`` as flat keywords (``hard_iof_thresh=``,
    ``crowd_iof_thresh=``, ``hard_min_size=``, ``pos_sampler=``, ...) are deprecated
    (:func:`samplers.options.resolve`).

    Called as ``generator(bbox, anchor, width, height, hard=None, crowd=None)``: ``bbox``
    (M, 4) ground-truth corners (all -1 rows are padding), ``anchor`` (N, 4) corners, the
    image ``width`` and ``height`` (> 0), ``hard`` and ``crowd`` (M,) 0/1 flags
    (:mod:`samplers.checks`; a crowd region such as COCO ``iscrowd``). Returns
    ``(cls_target (N,), box_target (N, 4), box_mask (N, 4))``, float32, numpy for numpy
    ``anchor`` and NDArrays on ``anchor``'s context otherwise.

    Rule: ``cls_target`` is GluonCV's code (1 positive, 0 negative, -1 ignored) of the
    :class:`RPNTargetSampler` labels of the anchors' IoUs, invalid anchors ignored; a
    positive gets :func:`samplers.boxes.encode_boxes` of its matched box and a mask of ones,
    the rest zeros.

    Edges: padding and non-finite boxes are dropped (no ground truth: every valid anchor is
    a negative candidate); non-finite anchors are ignored; hard boxes as in
    :class:`RPNTargetSampler`, plus ``hard_iof_thresh``. A crowd region is not matched at
    all (no positive, its IoUs count for nothing); only its IoF rule applies: an anchor at
    least ``crowd_iof_thresh`` inside it is never negative.
    """

    def __init__(self, num_sample: int = 256, pos_iou_thresh: float = 0.7,
                 neg_iou_thresh: float = 0.3, pos_ratio: float = 0.5,
                 stds: tuple = (1., 1., 1., 1.), allowed_border: float = 0,
                 allow_low_quality_matches: bool = False, hard: HardRule | None = None,
                 draw: Draw | None = None, subsample: bool = True, **flat):
        super().__init__()
        draw, hard = resolve(type(self).__name__, flat, draw, hard)
        self._hard = hard.only(type(self).__name__, ('iof_thresh', 'crowd_iof_thresh',
                                                     'min_size'))
        self._sampler = RPNTargetSampler(num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio,
                                         allow_low_quality_matches, draw, subsample)
        self._stds = check_stds('stds', stds)
        self._border = check_positive('allowed_border', allowed_border, zero_ok=True,
                                      inf_ok=True)
        self._hard_iof = hard.iof_thresh
        self._hard_min_size = hard.min_size
        self._crowd_iof = hard.crowd_iof_thresh
        self._grids = GridCache()

    @property
    def hard(self) -> HardRule:
        """How hard boxes and crowd regions are treated (:class:`samplers.HardRule`)."""
        return self._hard

    @property
    def draw(self) -> Draw:
        """How the quotas are drawn (:class:`samplers.Draw`)."""
        return self._sampler.draw

    @property
    def hard_min_size(self) -> float | None:
        """Boxes with a shorter side below this are hard (None: no size rule)."""
        return self._hard_min_size

    def forward(self, bbox: Array, anchor: Array, width: float, height: float,
                hard: Array | None = None,
                crowd: Array | None = None) -> tuple[Array, Array, Array]:
        """``(cls_target, box_target, box_mask)``; see the class docstring."""
        if not is_ndarray(bbox):
            bbox = np.asarray(bbox)
        if not is_ndarray(anchor):
            anchor = np.asarray(anchor)
        check_boxes('bbox', bbox, batched=False)
        check_boxes('anchor', anchor, batched=False)
        check_positive('width', width)
        check_positive('height', height)
        against = 'bbox {}'.format(tuple(bbox.shape))
        hard = hard_flags(hard, bbox.shape[0], against=against, numpy_path=use_numpy(anchor))
        crowd = hard_flags(crowd, bbox.shape[0], against=against, numpy_path=use_numpy(anchor),
                           name='crowd')
        if use_numpy(anchor):
            return self._forward_numpy(bbox, anchor, width, height, hard, crowd)
        return self._forward_nd(bbox, anchor, width, height, hard, crowd)

    def _valid_anchors(self, anc, width, height):
        """(N,) mask of the finite anchors within ``allowed_border`` of the image."""
        lo, hi_x, hi_y = (float(v) for v in border_limits(width, height, self._border))
        x1, y1, x2, y2 = backend.of_kind(anc).columns(anc)
        with np.errstate(invalid='ignore'):
            inside = (x1 >= lo) * (y1 >= lo) * (x2 < hi_x) * (y2 < hi_y)
        return inside.reshape((-1,)) * finite_rows(anc)

    # ----------------------------------------------------------------------- numpy backend
    def _forward_numpy(self, bbox, anchor, width, height, hard, crowd):
        """numpy backend: the prepared boxes (:func:`_prepare_boxes`) that are present are
        kept, the rest dropped; the anchor grid when it fits, else the dense IoU matrix."""
        anc = host_view(anchor)  # read in place (CPU NDArray); nothing here writes to it
        anc = np.ascontiguousarray(anc if anc.dtype == np.float32 else anc.astype(np.float32))
        gt = to_numpy(bbox, np.float32)
        boxes = _prepare_boxes(backend.NUMPY, gt, hard, crowd, self._hard_min_size)
        if boxes.num_nonfinite:
            warn_once(self, 'gt', '{}: {} ground-truth box(es) with non-finite coordinates '
                      'were dropped (logged once)'.format(type(self).__name__,
                                                          boxes.num_nonfinite))
        crowd_boxes = gt[boxes.crowd > 0] if boxes.crowd.any() else gt[:0]
        keep = boxes.present > 0
        hard = boxes.hard > 0
        if not keep.all():
            gt, hard = gt[keep], hard[keep]
        sampler = self._sampler
        # The grid's facts carry no per-anchor IoU: balanced draws take the dense path.
        grid = self._grids.get(anc) if sampler.draw.uniform else None
        if grid is not None:
            facts = _Facts(**grid_facts(grid, grid.inside(width, height, self._border), gt, hard,
                                        sampler.pos_iou_thresh, sampler.neg_iou_thresh,
                                        self._hard_iof))
        else:
            facts = self._dense_facts_numpy(anc, gt, hard, width, height)
        if len(crowd_boxes):
            in_crowd = _covered(backend.NUMPY, anc, crowd_boxes, None, self._crowd_iof)
            facts.ignore = in_crowd if facts.ignore is None else \
                np.maximum(facts.ignore, in_crowd)
        samples = sampler.label_facts(facts, len(gt))
        box_target = np.zeros((len(anc), 4), np.float32)
        box_mask = np.zeros((len(anc), 4), np.float32)
        pos = np.flatnonzero(samples == POSITIVE)
        if pos.size:
            match = facts.match[pos] if facts.match is not None \
                else best_match(box_iou(anc[pos], gt), ~hard if hard.any() else None)[1]
            box_target[pos] = encode_boxes(anc[pos], gt[match], self._stds)
            box_mask[pos] = 1
        return tuple(_like_fresh(v, anchor)
                     for v in (cls_target_from_labels(samples), box_target, box_mask))

    def _dense_facts_numpy(self, anc, gt, hard, width, height):
        """Facts the GluonCV way: full IoU matrix, invalid anchors' rows set to -1."""
        valid = self._valid_anchors(anc, width, height)
        num_bad = int(len(anc) - np.count_nonzero(finite_rows(anc)))
        if num_bad:
            warn_once(self, 'anchor', '{}: {} anchor(s) with non-finite coordinates are '
                      'ignored (logged once)'.format(type(self).__name__, num_bad))
        ious = box_iou(anc, gt) if len(gt) else np.zeros((len(anc), 0), np.float32)
        ious[~valid] = INVALID_IOU
        facts = _dense_facts(ious, ~hard if hard.any() else None, valid,
                             self._sampler.pos_iou_thresh, self._sampler.neg_iou_thresh)
        if self._hard_iof is not None and hard.any():
            facts.ignore = _covered(backend.NUMPY, anc, gt[hard], None, self._hard_iof)
        return facts

    # ----------------------------------------------------------------------- mx.nd backend
    def _forward_nd(self, bbox, anchor, width, height, hard, crowd):
        """The same targets with mx.nd ops on ``anchor``'s context, densely, no host copy.

        Boxes that are not present (:func:`_prepare_boxes`) cannot be dropped without reading
        them on the host, so their IoU columns are zeroed and they count as not normal.
        """
        nd = mx.nd
        ctx = anchor.context
        n, m = anchor.shape[0], bbox.shape[0]
        if n == 0:  # MXNet's operators reject zero-size arrays
            return tuple(like(np.zeros(shape, np.float32), anchor)
                         for shape in ((0,), (0, 4), (0, 4)))
        be = backend.ND
        with autograd.pause():
            anc = anchor.astype('float32')
            valid = self._valid_anchors(anc, width, height)
            ignore = None
            if m == 0:  # one box that overlaps nothing and is not normal: the same facts
                ious, normal = nd.zeros((n, 1), ctx=ctx), nd.zeros((1,), ctx=ctx)
            else:
                gt = bbox.as_in_context(ctx) if is_ndarray(bbox) else nd.array(bbox, ctx=ctx)
                gt = gt.astype('float32')
                boxes = _prepare_boxes(be, gt, hard_on_device(hard, m, ctx),
                                       None if crowd is None else hard_on_device(crowd, m, ctx),
                                       self._hard_min_size)
                normal = boxes.present * (1 - boxes.hard)
                ious = be.where(be.expand(boxes.present, 0), box_iou(anc, gt), 0.0)
                if crowd is not None:
                    ignore = _covered(be, anc, gt, boxes.crowd, self._crowd_iof)
                if self._hard_iof is not None:
                    covered = _covered(be, anc, gt, boxes.hard * boxes.present, self._hard_iof)
                    ignore = covered if ignore is None else be.maximum(ignore, covered)
            ious = be.where(be.expand(valid, 1), ious, INVALID_IOU)
            facts = _dense_facts(ious, normal, valid, self._sampler.pos_iou_thresh,
                                 self._sampler.neg_iou_thresh)
            facts.ignore = None if ignore is None else be.compact_mask(ignore)
            samples = self._sampler.label_facts(facts, max(m, 1))
            pos = samples == POSITIVE
            box_mask = nd.broadcast_to(pos.expand_dims(1), shape=(n, 4)).astype('float32')
            box_target = nd.zeros((n, 4), ctx=ctx) if m == 0 else be.where(
                box_mask, encode_boxes(anc, nd.take(gt, facts.match), self._stds), 0.0)
            return cls_target_from_labels(samples), box_target, box_mask


# =========================================================================== boxes, once
class _Boxes:
    """The ground truth as both paths of :class:`RPNTargetGenerator` read it: (M,) masks."""
    __slots__ = ('present', 'hard', 'crowd', 'num_nonfinite')

    def __init__(self, present, hard, crowd, num_nonfinite):
        self.present, self.hard, self.crowd = present, hard, crowd
        self.num_nonfinite = num_nonfinite


def _prepare_boxes(be, gt, hard, crowd, min_size):
    """The one preparation of the boxes, on backend ``be``: a :class:`_Boxes`.

    ``gt`` (M, 4) float32; ``hard``, ``crowd`` (M,) flags (0/1 or boolean) or None;
    ``min_size`` as ``hard_min_size``. A box is real when finite and not padding (all -1);
    ``crowd`` marks the real crowd regions; ``present`` the real boxes that are not crowd
    regions (the only ones matched); ``hard`` the flagged boxes and, with ``min_size``,
    those whose shorter side is below it. ``num_nonfinite`` counts the non-finite boxes on
    numpy (None on a graph backend, where counting would read the device).
    """
    finite = be.finite_rows(gt)
    real = finite * be.mask(be.sum(be.mask(gt == _PADDING), -1) < 4)
    hard = be.zeros_like(real) if hard is None else be.mask(hard)
    if min_size is not None:
        hard = be.maximum(hard, be.mask(too_small(gt, min_size)))
    crowd = be.zeros_like(real) if crowd is None else be.mask(crowd) * real
    num_nonfinite = int(len(gt) - be.count(finite)[0]) if be is backend.NUMPY else None
    return _Boxes(real * (1 - crowd), hard, crowd, num_nonfinite)


def _covered(be, anc, gt, which, thresh):
    """(N,) 0/1 on ``be`` (numpy: uint8): anchors ``anc`` whose intersection with one of the
    boxes ``gt`` marked by ``which`` ((M,) 0/1; None: every box) covers at least ``thresh``
    of the anchor's area (an IoF rule). numpy takes :func:`_inside_regions`, box by box."""
    if be is backend.NUMPY:
        return be.compact_mask(_inside_regions(anc, gt if which is None else gt[which > 0],
                                               thresh))
    iof = box_iof(anc, gt) >= thresh
    return be.max(iof if which is None else iof * be.expand(which, 0), -1)


def _inside_regions(anc, regions, thresh):
    """(N,) bool: ``box_iof(anc, regions) >= thresh`` for some region, numpy float32.

    :func:`samplers.boxes.box_iof`'s float operations, one region at a time and the division
    only where the intersection is positive: a few regions (crowds) against every anchor
    cost a few passes over the anchors instead of an (N, K) matrix with its checks.
    """
    ax1, ay1, ax2, ay2 = (np.ascontiguousarray(c) for c in anc.T)
    area = np.maximum(ax2 - ax1, 0) * np.maximum(ay2 - ay1, 0)
    thresh = np.float32(thresh)
    inside = np.zeros(len(anc), bool)
    with np.errstate(invalid='ignore', divide='ignore'):
        for bx1, by1, bx2, by2 in regions:
            inter = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0) * \
                np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0)
            hit = np.flatnonzero(inter > 0)
            inside[hit[inter[hit] / area[hit] >= thresh]] = True
    return inside


def _like_fresh(result, reference):
    """:func:`like` for a fresh numpy ``result`` nobody else holds: no copy on cpu(0).

    MXNet then owns the buffer (numpy's copy is made read-only).
    """
    if is_ndarray(reference) and reference.context == mx.cpu(0) and result.size \
            and result.flags['C_CONTIGUOUS']:
        return mx.nd.from_numpy(result, zero_copy=True)
    return like(result, reference)
