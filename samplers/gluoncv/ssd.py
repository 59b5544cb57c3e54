"""GluonCV drop-in: hard-flag-aware SSD targets and an SSD loss that never mines ignored anchors.

Needs the ``gluoncv`` extra. Two ways in, both keeping GluonCV's types:

* explicit classes, constructed where ``train_ssd.py`` constructs GluonCV's:
  :class:`SSDTrainTransform` (for ``SSDDefaultTrainTransform``),
  :class:`SSDMultiBoxLoss` (for ``gluoncv.loss.SSDMultiBoxLoss``) and
  :class:`SSDTargetGenerator` (for ``gluoncv.model_zoo.ssd.target.SSDTargetGenerator``);
* :func:`samplers.gluoncv.install`: patches GluonCV itself with what
  :func:`patches` lists, so an unchanged ``train_ssd.py`` gets them.

The rules are those of :mod:`samplers.ssd`. How the hard flags reach the
targets: GluonCV's transform crops away boxes before it makes targets, so the
flags are read after its augmentation. Our ``__call__`` runs GluonCV's own
augmentation on a copy of the transform without anchors (which makes GluonCV
return the augmented label, every column kept), then makes the targets from
that label with column ``hard_column`` as the flags.
"""
from __future__ import annotations

import numpy as np
import mxnet as mx
from gluoncv import loss as _gluoncv_loss
from gluoncv.data.transforms.presets import ssd as _ssd_presets
from gluoncv.model_zoo.ssd import target as _ssd_target

from ..backend import is_ndarray
from .. import ssd as _ssd
from ._common import (CACHE, HARD_COLUMN, INSTALLED, PENDING, check_hard_column, hard_flags,
                      pickle_state)

__all__ = ['SSDTrainTransform', 'SSDMultiBoxLoss', 'SSDTargetGenerator']

_GluonCVTransform = _ssd_presets.SSDDefaultTrainTransform
# Taken at import, before any install(): the body every patched call runs.
_GLUONCV_CALL = _GluonCVTransform.__call__


# --------------------------------------------------------------------------- GluonCV-typed parts
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

    # pylint: disable=arguments-differ
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


# --------------------------------------------------------------------------- transform methods
def _hard_column_of(transform):
    """Ours carry their own ``hard_column``; patched GluonCV transforms use install()'s."""
    return transform.__dict__.get('_hard_column', INSTALLED.hard_column)


def _call_with_hard_flags(self, src, label):
    """GluonCV's SSD training augmentation, then targets with the label's hard column as flags.

    Returns GluonCV's outputs: ``(image, cls_targets, box_targets)``, or
    ``(image, label)`` when the transform has no anchors.
    """
    if self._anchors is None:
        return _GLUONCV_CALL(self, src, label)
    view = object.__new__(type(self))  # a copy without anchors: GluonCV returns the label
    view.__dict__.update(self.__dict__)
    view._anchors = None  # pylint: disable=protected-access
    img, bbox = _GLUONCV_CALL(view, src, label)
    gt_boxes = mx.nd.array(bbox[np.newaxis, :, :4])
    gt_ids = mx.nd.array(bbox[np.newaxis, :, 4:5])
    hard = hard_flags(bbox, _hard_column_of(self))
    outer = getattr(PENDING, 'hard', None)
    PENDING.hard = hard
    try:
        cls_targets, box_targets, _ = self._target_generator(
            self._anchors, None, gt_boxes, gt_ids)
    finally:
        PENDING.hard = outer
    return img, cls_targets[0], box_targets[0]


def _build_target_generator(self):
    """Our generator, built on first use from the transform's settings; None without anchors."""
    if self._anchors_none:
        return None
    generator = self.__dict__.get(CACHE)
    if generator is None:
        generator = SSDTargetGenerator(iou_thresh=self._iou_thresh, stds=self._box_norm,
                                       negative_mining_ratio=-1, **self._kwargs)
        setattr(self, CACHE, generator)
    return generator


def _reduce_gluoncv_transform(self, protocol):
    """Pickle a patched GluonCV transform as an SSDTrainTransform (see the rcnn module)."""
    if type(self) is not _GluonCVTransform:
        return object.__reduce_ex__(self, protocol)
    return _rebuild, (pickle_state(self), _hard_column_of(self))


def _rebuild(state, hard_column):
    transform = SSDTrainTransform.__new__(SSDTrainTransform)
    transform.__dict__.update(state)
    transform._hard_column = hard_column  # pylint: disable=protected-access
    return transform


class SSDTrainTransform(_GluonCVTransform):
    """GluonCV's SSD training transform with hard-flag-aware targets.

    Parameters are those of GluonCV's ``SSDDefaultTrainTransform`` (``width,
    height, anchors=None, mean, std, iou_thresh=0.5, box_norm=(0.1, 0.1, 0.2,
    0.2), **kwargs``; ``**kwargs`` go to :class:`SSDTargetGenerator`), plus

    hard_column : int or None, default 5
        Label column holding the 0/1 hard flags (VOC ``difficult`` in
        GluonCV's ``VOCDetection``); None reads no flags. Labels with no such
        column have no hard box.

    Called as ``transform(src, label)`` with an (H, W, 3) image and an
    (M, 5+) numpy label, it returns GluonCV's outputs and types: the image
    tensor, (N,) class targets (``id + 1``, 0 background, -1 ignored) and
    (N, 4) box targets, NDArrays. The augmentation is GluonCV's (same random
    draws); targets follow :class:`samplers.ssd.SSDTargetGenerator`: a hard
    box makes no positive, and unmatched anchors with IoU >= 0.5 with it are
    ignored (-1). With every flag 0 (or five-column labels) the targets are
    GluonCV's. ``anchors=None`` makes no targets and returns GluonCV's
    ``(image, label)``.
    """

    def __init__(self, width, height, anchors=None, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), iou_thresh=0.5, box_norm=(0.1, 0.1, 0.2, 0.2),
                 hard_column=HARD_COLUMN, **kwargs):
        hard_column = check_hard_column(hard_column)
        # Build the generator once now so bad settings fail here, not in a worker.
        generator = SSDTargetGenerator(iou_thresh=iou_thresh, stds=box_norm,
                                       negative_mining_ratio=-1, **kwargs)
        super().__init__(width, height, anchors=anchors, mean=mean, std=std,
                         iou_thresh=iou_thresh, box_norm=box_norm, **kwargs)
        self._hard_column = hard_column
        if anchors is not None:
            setattr(self, CACHE, generator)

    __call__ = _call_with_hard_flags
    _target_generator = property(_build_target_generator)

    def __getstate__(self):
        return pickle_state(self)


# --------------------------------------------------------------------------- what install() patches
def patches():
    """(owner, attribute, replacement) triples that install() applies for SSD."""
    return (
        (_GluonCVTransform, '__call__', _call_with_hard_flags),
        (_GluonCVTransform, '_target_generator', property(_build_target_generator)),
        (_GluonCVTransform, '__reduce_ex__', _reduce_gluoncv_transform),
        (_ssd_target, 'SSDTargetGenerator', SSDTargetGenerator),
        (_gluoncv_loss, 'SSDMultiBoxLoss', SSDMultiBoxLoss),
    )
