"""Our target generators, samplers and loss with GluonCV's call and return types.

Each is constructed where a GluonCV training script constructs GluonCV's, and
swaps into GluonCV's own transforms and networks. Outside a call that passes
them (a transform's, or a network's training forward under
:func:`samplers.gluoncv.install`), they see no hard box and give GluonCV's
results up to the differences listed in their base classes' modules.
"""
from __future__ import annotations

from typing import Any

import mxnet as mx
import numpy as np
from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import \
    RCNNTargetSampler as _GluonCVRCNNTargetSampler
from mxnet import gluon

from .. import rcnn as _second_stage
from .. import ssd as _ssd
from .._arrays import is_ndarray, to_numpy
from ..options import fold
from ..rpn import RPNTargetGenerator as _RPNTargetGenerator
from ..rpn import RPNTargetSampler as _RPNTargetSampler
from ._common import INSTALLED, NETWORK, PENDING

__all__ = ['RPNTargetGenerator', 'RPNTargetSampler', 'RCNNTargetSampler', 'use_hard_sampler',
           'SSDTargetGenerator', 'SSDMultiBoxLoss']


class RPNTargetGenerator(_RPNTargetGenerator):
    """:class:`samplers.rpn.RPNTargetGenerator` with GluonCV's call and return types.

    Same constructor as :class:`samplers.rpn.RPNTargetGenerator` (GluonCV's
    plus ``allow_low_quality_matches`` and ``hard_iof_thresh``). Called as
    ``generator(bbox, anchor, width, height, hard=None)`` with numpy arrays or
    NDArrays on any context, like GluonCV's, and returns numpy arrays with
    GluonCV's dtypes: ``cls_target`` (N,) float32 (1 positive, 0 negative,
    -1 ignored), ``box_target`` (N, 4) float32, ``box_mask`` (N, 4) float64,
    which GluonCV's ``batchify.Append`` expects. ``hard`` and ``crowd`` default
    to the flags of the label the calling transform is working on (none outside
    a transform).
    """

    def forward(self, bbox, anchor, width, height, hard=None, crowd=None):
        if hard is None:
            hard = getattr(PENDING, 'hard', None)
        if crowd is None:
            crowd = getattr(PENDING, 'crowd', None)
        cls_target, box_target, box_mask = super().forward(
            to_numpy(bbox), to_numpy(anchor), width, height, hard=hard, crowd=crowd)
        return (to_numpy(cls_target, np.float32), to_numpy(box_target, np.float32),
                to_numpy(box_mask, np.float64))


class RPNTargetSampler(_RPNTargetSampler):
    """:class:`samplers.rpn.RPNTargetSampler` with GluonCV's call: numpy in, numpy out.

    ``sampler(ious, hard=None)`` with ``ious`` (N, M) (numpy, or an NDArray
    that is copied to the host as GluonCV would need) returns numpy
    ``(samples, matches)``: samples in the IoU's float dtype (float32 for
    anything else), matches int64, as GluonCV's sampler does.
    """

    def __call__(self, ious, hard=None):
        ious = to_numpy(ious)
        samples, matches = super().__call__(ious, hard)
        dtype = ious.dtype if np.issubdtype(ious.dtype, np.floating) else np.float32
        return to_numpy(samples, dtype), to_numpy(matches, np.int64)


class RCNNTargetSampler(_GluonCVRCNNTargetSampler):
    """:class:`samplers.rcnn.RCNNTargetSampler` as a GluonCV ``RCNNTargetSampler``.

    Parameters are those of :class:`samplers.rcnn.RCNNTargetSampler`
    (GluonCV's ``num_image, num_proposal, num_sample, pos_iou_thresh=0.5,
    pos_ratio=0.25, max_num_gt=300`` plus its ``hard=`` and ``draw=``). A subclass of
    GluonCV's class with its attributes (``_max_pos``, ...), so
    ``net.sampler = RCNNTargetSampler(...)`` works on any GluonCV R-CNN; the
    sampling is ours, done by the child block ``sampler``. Called as
    ``sampler(rois, scores, gt_boxes, hard=None, crowd=None)``, it returns GluonCV's
    ``(rois, samples, matches)``. ``hard`` and ``crowd`` (B, M) default to the
    flags given to the network's training forward when
    :func:`samplers.gluoncv.install` is in effect; with none, the result is
    unflagged (GluonCV's candidates).
    """

    def __init__(self, num_image: int, num_proposal: int, num_sample: int,
                 pos_iou_thresh: float = 0.5, pos_ratio: float = 0.25, max_num_gt: int = 300,
                 **hard_options: Any) -> None:
        sampler = _second_stage.RCNNTargetSampler(
            num_image, num_proposal, num_sample, pos_iou_thresh=pos_iou_thresh,
            pos_ratio=pos_ratio, max_num_gt=max_num_gt, **hard_options)
        super().__init__(num_image, num_proposal, num_sample, pos_iou_thresh, pos_ratio,
                         max_num_gt)
        self.sampler = sampler

    def forward(self, rois, scores, gt_boxes, hard=None, crowd=None):
        if hard is None:
            hard = getattr(NETWORK, 'hard', None)
        if crowd is None:
            crowd = getattr(NETWORK, 'crowd', None)
        if crowd is None:
            return super().forward(rois, scores, gt_boxes, hard)
        if hard is None:
            hard = crowd * 0 if isinstance(crowd, mx.sym.Symbol) else mx.nd.zeros_like(crowd)
        return super().forward(rois, scores, gt_boxes, hard, crowd)

    def hybrid_forward(self, F, rois, scores, gt_boxes, hard=None, crowd=None):
        return self.sampler(rois, scores, gt_boxes, hard, crowd)


def use_hard_sampler(net: gluon.HybridBlock, **hard_options: Any) -> gluon.HybridBlock:
    """Give ``net`` (a GluonCV Faster/Mask R-CNN) our :class:`RCNNTargetSampler`, same settings.

    For networks built before :func:`samplers.gluoncv.install` (built after,
    they have it already); ``hard_options`` (``hard=``, ``draw=``) default to install()'s
    (:func:`samplers.options.fold`: an object replaces install()'s, a deprecated flat keyword
    changes one field of it). Under
    ``install(rcnn_ohem=True)`` that is the OHEM sampler
    (:func:`samplers.gluoncv.use_ohem_sampler`). Returns ``net``.
    """
    if INSTALLED.rcnn_ohem is not None:
        from .patches_ohem import use_ohem_sampler  # it builds on this module
        return use_ohem_sampler(net, **hard_options)
    old = net.sampler
    if not isinstance(old, RCNNTargetSampler):
        net.sampler = RCNNTargetSampler(
            num_image=old._num_image, num_proposal=old._num_proposal,
            num_sample=old._num_sample, pos_iou_thresh=old._pos_iou_thresh,
            pos_ratio=old._max_pos / old._num_sample, max_num_gt=old._max_num_gt,
            **fold('use_hard_sampler', hard_options, base=INSTALLED.rcnn_options))
    return net


class SSDTargetGenerator(_ssd.SSDTargetGenerator):
    """:class:`samplers.ssd.SSDTargetGenerator` with GluonCV's return types.

    Same constructor (GluonCV's: ``iou_thresh=0.5, neg_thresh=0.5,
    negative_mining_ratio=3, stds=(0.1, 0.1, 0.2, 0.2)``); with
    ``negative_mining_ratio > 0`` negatives are mined by
    :class:`samplers.OHEMSampler`. Called as ``generator(anchors, cls_preds,
    gt_boxes, gt_ids, hard=None)``; returns NDArrays (float32, on the anchors'
    context; CPU for numpy input) as GluonCV's does. ``hard`` defaults to the
    flags of the label the calling transform is working on (none outside one).
    """

    def forward(self, anchors, cls_preds, gt_boxes, gt_ids, hard=None):
        if hard is None:
            hard = getattr(PENDING, 'hard', None)
        out = super().forward(anchors, cls_preds, gt_boxes, gt_ids, hard=hard)
        ctx = anchors.context if is_ndarray(anchors) else mx.cpu()
        return tuple(a.astype('float32') if is_ndarray(a)
                     else mx.nd.array(a, ctx=ctx, dtype='float32') for a in out)


class SSDMultiBoxLoss(_ssd.SSDMultiBoxLoss):
    """:class:`samplers.ssd.SSDMultiBoxLoss`, under the name GluonCV's training script uses.

    GluonCV's constructor (``negative_mining_ratio=3, rho=1.0, lambd=1.0,
    min_hard_negatives=0``), call and lists of per-image losses.
    """
