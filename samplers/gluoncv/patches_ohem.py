"""Second-stage OHEM in GluonCV's Faster and Mask R-CNN: ``install(rcnn_ohem=True)``.

A network built under it gets :class:`OHEMTargetSampler` as ``sampler``. GluonCV's training
forward calls the sampler after ``feat = self.features(x)`` and before the head; the patched
``hybrid_forward`` (:func:`with_ohem_call`) makes the network's own head the sampler's scorer
for that call: a forward hook on ``net.features`` keeps the features of the call in flight
(this thread only), ``gt_label`` and ``gt_box`` come from the call, and the head (ROI pooling
or align, FPN levels included, ``top_features``, ``box_features``, the two predictors) scores
every candidate in a pass without gradient (:func:`samplers.rcnn_ohem.head_loss`). The sampler
returns GluonCV's ``(rois, samples, matches)``, so GluonCV's target generator, losses and mask
head train the selected rows only. The rule: :mod:`samplers.rcnn_ohem`.
"""
from __future__ import annotations

import contextlib
from typing import Any

import mxnet as mx

from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN
from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import \
    RCNNTargetSampler as _GluonCVRCNNTargetSampler
from mxnet import autograd, gluon

from .. import rcnn_ohem
from ..checks import check_bool, check_int, check_ratio
from ..options import fold
from ._common import INSTALLED, NETWORK, bound
from .wrappers import RCNNTargetSampler

__all__ = ['OHEMTargetSampler', 'use_ohem_sampler', 'with_ohem_call', 'OHEM_DEFAULTS']

#: install()'s OHEM options by default: the paper's NMS and rule, the 512 best proposals.
OHEM_DEFAULTS = dict(nms_thresh=0.7, mode='paper', top_n=512)
#: Instance attribute where a network keeps the handle of its feature hook.
_HOOK = '_samplers_ohem_hook'


class OHEMTargetSampler(RCNNTargetSampler):
    """:class:`samplers.rcnn_ohem.OHEMTargetSampler` as a GluonCV ``RCNNTargetSampler``.

    GluonCV's parameters, the hard options of :class:`samplers.rcnn.RCNNTargetSampler`, and
    ``nms_thresh`` (0.7), ``mode`` ('paper'), ``top_n`` (None: every proposal; raised to
    ``num_sample`` if below it). Needs a scorer (:func:`samplers.rcnn_ohem.scored_by`); a
    network's patched forward gives its own head (:func:`with_ohem_call`).
    """

    def __init__(self, num_image: int, num_proposal: int, num_sample: int,
                 pos_iou_thresh: float = 0.5, pos_ratio: float = 0.25, max_num_gt: int = 300,
                 nms_thresh: float | None = 0.7, mode: str = 'paper', top_n: int | None = None,
                 **hard_options: Any) -> None:
        sampler = rcnn_ohem.OHEMTargetSampler(
            num_image, num_proposal, num_sample, pos_iou_thresh=pos_iou_thresh,
            pos_ratio=pos_ratio, max_num_gt=max_num_gt, nms_thresh=nms_thresh, mode=mode,
            top_n=None if top_n is None else max(top_n, num_sample), **hard_options)
        _GluonCVRCNNTargetSampler.__init__(self, num_image, num_proposal, num_sample,
                                           pos_iou_thresh, pos_ratio, max_num_gt)
        self.sampler = sampler


def _check_scorable(net):
    """``ValueError`` unless ``net`` is a GluonCV Faster/Mask R-CNN whose head can score rows."""
    if not isinstance(net, FasterRCNN):
        raise ValueError('OHEM needs a GluonCV FasterRCNN or MaskRCNN, got {}'.format(
            type(net).__name__))
    if getattr(net, '_target_generator', None) is None:
        raise ValueError('this network was built with minimal_opset=True and has no training '
                         'head to score rows with: build it without minimal_opset')


def use_ohem_sampler(net: gluon.HybridBlock, **options: Any) -> gluon.HybridBlock:
    """Give ``net`` (a GluonCV Faster/Mask R-CNN) our :class:`OHEMTargetSampler`, same settings.

    For networks built before ``install(rcnn_ohem=True)``; ``options`` (``nms_thresh``,
    ``mode``, ``top_n``, hard options) default to install()'s. The network's forward must be
    the patched one (:func:`samplers.gluoncv.install`) for the head to score. Returns ``net``.
    """
    _check_scorable(net)
    old = net.sampler
    if isinstance(old, OHEMTargetSampler) and not options:
        return net
    settings = dict(INSTALLED.rcnn_ohem or OHEM_DEFAULTS, **INSTALLED.rcnn_options)
    net.sampler = OHEMTargetSampler(
        num_image=old._num_image, num_proposal=old._num_proposal, num_sample=old._num_sample,
        pos_iou_thresh=old._pos_iou_thresh, pos_ratio=old._max_pos / old._num_sample,
        max_num_gt=old._max_num_gt, **fold('use_ohem_sampler', options, base=settings))
    return net


# --------------------------------------------------------------------------- the head as scorer
class _HeadScorer:
    """The network's own head on the candidate rows, then their loss (see module docstring)."""

    def __init__(self, net, gt_label, gt_box):
        self.net, self.gt_label, self.gt_box = net, gt_label, gt_box
        self.features = None  # set by the feature hook during the call

    def __call__(self, F, rois, labels, matches):
        with _frozen(F, [self.net.top_features, self.net.box_features,
                         self.net.class_predictor, self.net.box_predictor]):
            return self._loss(F, rois, labels, matches)

    def _loss(self, F, rois, labels, matches):
        net = self.net
        features = [F.BlockGrad(f) for f in self.features]
        image = F.broadcast_like(F.reshape(F.contrib.arange_like(rois, axis=0), (-1, 1)),
                                 labels)
        roi = F.concat(F.reshape(image, (-1, 1)), F.reshape(rois, (-1, 4)), dim=-1)
        if net.num_stages > 1:
            pooled = net._pyramid_roi_feats(F, features, roi, net._roi_size,
                                            net._strides, roi_mode=net._roi_mode)
        elif net._roi_mode == 'pool':
            pooled = F.ROIPooling(features[0], roi, net._roi_size, 1. / net._strides)
        else:
            pooled = F.contrib.ROIAlign(features[0], roi, net._roi_size,
                                        1. / net._strides, sample_ratio=2)
        top = pooled if net.top_features is None else net.top_features(pooled)
        box_feat = F.contrib.AdaptiveAvgPooling2D(top, output_size=1) \
            if net.box_features is None else net.box_features(top)
        num_class = net.num_class
        cls_pred = F.reshape(net.class_predictor(box_feat), (net._batch_size, -1, num_class + 1))
        box_pred = F.reshape(net.box_predictor(box_feat), (net._batch_size, -1, num_class, 4))
        return rcnn_ohem.head_loss(F, cls_pred, box_pred, rois, labels, matches,
                                   F.reshape(self.gt_label, (0, -1)), self.gt_box, num_class)


@contextlib.contextmanager
def _frozen(F, blocks):
    """In a traced graph (``F`` is ``mx.sym``), the trained parameters of ``blocks`` enter
    through ``BlockGrad`` inside the ``with`` block, so the graph's backward pass skips the
    scoring branch (MXNet computes it otherwise, only to add zeros). Gluon's block reads a
    parameter's symbol from ``Parameter._var``, which is swapped for the duration."""
    if F is not mx.sym:
        yield  # imperatively the pass runs under autograd.pause(): nothing is recorded
        return
    params = [p for block in blocks if block is not None
              for p in block.collect_params().values() if p.grad_req != 'null']
    real = [p.var() for p in params]
    try:
        for p, var in zip(params, real):
            p._var = F.BlockGrad(var)
        yield
    finally:
        for p, var in zip(params, real):
            p._var = var


def _keep_features(block, _args, out):
    """Forward hook on ``net.features``: the features of the OHEM call in flight."""
    scorer = getattr(NETWORK, 'ohem', None)
    if scorer is not None and scorer.features is None and scorer.net.features is block:
        scorer.features = list(out) if isinstance(out, (list, tuple)) else [out]


def with_ohem_call(hybrid_forward):
    """A network's ``hybrid_forward`` whose training call gives an OHEM sampler its head."""
    def ohem_hybrid_forward(self, F, x, gt_box=None, gt_label=None, *args, **params):
        """GluonCV's ``hybrid_forward``; in training, an OHEM sampler scores with this head."""
        if gt_box is None or gt_label is None or not autograd.is_training():
            return hybrid_forward(self, F, x, gt_box, gt_label, *args, **params)
        if not isinstance(self.sampler, OHEMTargetSampler):
            if INSTALLED.rcnn_ohem is not None and \
                    not isinstance(self.sampler, RCNNTargetSampler):
                raise ValueError(
                    "install(rcnn_ohem=True) is in effect, but this network's sampler is "
                    "GluonCV's {} and draws at random (network built before install()?): "
                    "build it after install(), or call samplers.gluoncv.use_ohem_sampler(net) "
                    "first".format(type(self.sampler).__name__))
            return hybrid_forward(self, F, x, gt_box, gt_label, *args, **params)
        if _HOOK not in self.__dict__:
            self.__dict__[_HOOK] = self.features.register_forward_hook(_keep_features)
        scorer = _HeadScorer(self, gt_label, gt_box)
        with bound(NETWORK, 'ohem', scorer), rcnn_ohem.scored_by(scorer):
            return hybrid_forward(self, F, x, gt_box, gt_label, *args, **params)
    return ohem_hybrid_forward


def check_ohem(enabled, nms_thresh, mode, top_n):
    """install()'s OHEM options, checked: None when ``enabled`` (``rcnn_ohem``) is False,
    else the sampler's keyword arguments; ``ValueError`` naming install()'s argument."""
    enabled = check_bool('rcnn_ohem', enabled)
    if nms_thresh is not None:
        check_ratio('ohem_nms_thresh', nms_thresh, low_open=True)
    if mode not in rcnn_ohem.OHEM_MODES:
        raise ValueError('ohem_mode must be one of {}, got {!r}'.format(
            rcnn_ohem.OHEM_MODES, mode))
    if top_n is not None:
        check_int('ohem_top_n', top_n, minimum=1)
    return dict(nms_thresh=nms_thresh, mode=mode, top_n=top_n) if enabled else None
