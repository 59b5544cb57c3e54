"""GluonCV drop-in: hard-flag-aware RPN targets in GluonCV's Faster R-CNN training.

Needs the ``gluoncv`` extra. Two ways in, both giving GluonCV's outputs with
the RPN targets computed by :class:`samplers.rpn.RPNTargetGenerator`, and
label column 5 (VOC ``difficult``, or any 0/1 hard flag) passed as the hard
flags:

* :class:`FasterRCNNTrainTransform`: construct it where a script constructs
  ``gluoncv.data.transforms.presets.rcnn.FasterRCNNDefaultTrainTransform``;
* :func:`samplers.gluoncv.install`: patches GluonCV itself with what
  :func:`patches` lists, so an unchanged training script gets the same targets.

Both work for the C4 and the FPN (``multi_stage=True``) networks of the model
zoo, in ``gluon.data.DataLoader`` worker processes (fork or spawn) and thread
pools. Five-column labels work as before (no box is hard).

How the flags reach the targets: GluonCV's transform calls its target
generator with the boxes only, so the transform's ``__call__`` reads the
flags from the label and leaves them, for the duration of that call and in
that thread only, where the generator picks them up.
"""
from __future__ import annotations

import numpy as np
from gluoncv.data.transforms.presets import rcnn as _rcnn
from gluoncv.model_zoo.rcnn.rpn import rpn_target as _rpn_target

from ..backend import to_numpy
from ..rpn import RPNTargetGenerator, RPNTargetSampler
from ._common import HARD_COLUMN, INSTALLED, PENDING, check_hard_column, hard_flags

__all__ = ['FasterRCNNTrainTransform', 'GluonCVRPNTargetGenerator', 'GluonCVRPNTargetSampler']

_GluonCVTransform = _rcnn.FasterRCNNDefaultTrainTransform
# Taken at import, before any install(): the body every patched call runs.
_GLUONCV_CALL = _GluonCVTransform.__call__
_CACHE = '_samplers_target_generator'  # instance attribute; GluonCV's own cache is left alone


# --------------------------------------------------------------------------- GluonCV-typed parts
class GluonCVRPNTargetGenerator(RPNTargetGenerator):
    """:class:`samplers.rpn.RPNTargetGenerator` with GluonCV's call and return types.

    Same constructor as :class:`samplers.rpn.RPNTargetGenerator` (GluonCV's
    plus ``allow_low_quality_matches`` and ``hard_iof_thresh``). Called as
    ``generator(bbox, anchor, width, height, hard=None)`` with numpy arrays or
    NDArrays on any context, like GluonCV's, and returns numpy arrays with
    GluonCV's dtypes: ``cls_target`` (N,) float32 (1 positive, 0 negative,
    -1 ignored), ``box_target`` (N, 4) float32, ``box_mask`` (N, 4) float64.
    ``hard`` defaults to the flags of the label the calling transform is
    working on (none outside a transform).
    """

    def forward(self, bbox, anchor, width, height, hard=None):  # pylint: disable=arguments-differ
        if hard is None:
            hard = getattr(PENDING, 'hard', None)
        cls_target, box_target, box_mask = super().forward(
            to_numpy(bbox), to_numpy(anchor), width, height, hard=hard)
        return (to_numpy(cls_target, np.float32), to_numpy(box_target, np.float32),
                to_numpy(box_mask, np.float64))


class GluonCVRPNTargetSampler(RPNTargetSampler):
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


# --------------------------------------------------------------------------- transform methods
def _hard_column_of(transform):
    """Ours carry their own ``hard_column``; patched GluonCV transforms use install()'s."""
    return transform.__dict__.get('_hard_column', INSTALLED.hard_column)


def _call_with_hard_flags(self, src, label):
    """Apply GluonCV's training transform; the label's hard column becomes the RPN's hard flags.

    Without a network no targets are made, and the column is not read.
    """
    hard = None if self._anchors is None else hard_flags(label, _hard_column_of(self))
    outer = getattr(PENDING, 'hard', None)
    PENDING.hard = hard
    try:
        return _GLUONCV_CALL(self, src, label)
    finally:
        PENDING.hard = outer


def _build_target_generator(self):
    """Our generator, built on first use from the transform's settings; None without a net."""
    if self._net_none:
        return None
    generator = self.__dict__.get(_CACHE)
    if generator is None:
        generator = GluonCVRPNTargetGenerator(
            num_sample=self._num_sample, pos_iou_thresh=self._pos_iou_thresh,
            neg_iou_thresh=self._neg_iou_thresh, pos_ratio=self._pos_ratio,
            stds=self._box_norm, **self._kwargs)
        setattr(self, _CACHE, generator)
    return generator


def _state(transform):
    """The instance dict to pickle: without our cached generator (rebuilt on first use)."""
    state = dict(transform.__dict__)
    state.pop(_CACHE, None)
    return state


def _reduce_gluoncv_transform(self, protocol):
    """Pickle a patched GluonCV transform as a FasterRCNNTrainTransform.

    A spawned DataLoader worker imports an unpatched GluonCV; the object it
    unpickles must bring the hard-flag-aware targets itself, without
    patching anything in that process. Subclasses (ours, or a user's) pickle
    as themselves, the default way.
    """
    if type(self) is not _GluonCVTransform:
        return object.__reduce_ex__(self, protocol)
    return _rebuild, (_state(self), _hard_column_of(self))


def _rebuild(state, hard_column):
    transform = FasterRCNNTrainTransform.__new__(FasterRCNNTrainTransform)
    transform.__dict__.update(state)
    transform._hard_column = hard_column  # pylint: disable=protected-access
    return transform


class FasterRCNNTrainTransform(_GluonCVTransform):
    """GluonCV's Faster R-CNN training transform with hard-flag-aware RPN targets.

    Parameters are those of GluonCV's ``FasterRCNNDefaultTrainTransform``
    (``short=600, max_size=1000, net=None, mean, std, box_norm=(1, 1, 1, 1),
    num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3, pos_ratio=0.5,
    flip_p=0.5, ashape=128, multi_stage=False, **kwargs``), plus

    hard_column : int or None, default 5
        Label column holding the 0/1 hard flags (VOC ``difficult`` in
        GluonCV's ``VOCDetection``); None reads no flags. Labels with no such
        column have no hard box.

    ``**kwargs`` go to :class:`samplers.rpn.RPNTargetGenerator`
    (``allowed_border``, ``allow_low_quality_matches``, ``hard_iof_thresh``).

    Called as ``transform(src, label)`` with an (H, W, 3) image and an
    (M, 5+) numpy label, it returns GluonCV's outputs, with GluonCV's types:
    the image tensor, the label, and per feature level lists of
    ``cls_target`` (1 positive, 0 negative, -1 ignored), ``box_target`` and
    ``box_mask`` numpy arrays. The targets follow :mod:`samplers.rpn`: a hard
    box makes no positive and the anchors on it are ignored; with every flag
    0 (or five-column labels) they are GluonCV's targets up to the random
    subsampling and the edge cases listed there. A hard column holding
    anything but 0/1 raises ``ValueError``. ``net=None`` makes no targets.
    """

    def __init__(self, short=600, max_size=1000, net=None, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), box_norm=(1., 1., 1., 1.), num_sample=256,
                 pos_iou_thresh=0.7, neg_iou_thresh=0.3, pos_ratio=0.5, flip_p=0.5, ashape=128,
                 multi_stage=False, hard_column=HARD_COLUMN, **kwargs):
        hard_column = check_hard_column(hard_column)
        # Build the generator once now so bad settings fail here, not in a worker.
        generator = GluonCVRPNTargetGenerator(
            num_sample=num_sample, pos_iou_thresh=pos_iou_thresh, neg_iou_thresh=neg_iou_thresh,
            pos_ratio=pos_ratio, stds=box_norm, **kwargs)
        super().__init__(short=short, max_size=max_size, net=net, mean=mean, std=std,
                         box_norm=box_norm, num_sample=num_sample,
                         pos_iou_thresh=pos_iou_thresh, neg_iou_thresh=neg_iou_thresh,
                         pos_ratio=pos_ratio, flip_p=flip_p, ashape=ashape,
                         multi_stage=multi_stage, **kwargs)
        self._hard_column = hard_column
        if not self._net_none:
            setattr(self, _CACHE, generator)

    __call__ = _call_with_hard_flags
    _target_generator = property(_build_target_generator)

    def __getstate__(self):
        return _state(self)


# --------------------------------------------------------------------------- what install() patches
def patches():
    """(owner, attribute, replacement) triples that install() applies for Faster R-CNN."""
    return (
        (_GluonCVTransform, '__call__', _call_with_hard_flags),
        (_GluonCVTransform, '_target_generator', property(_build_target_generator)),
        (_GluonCVTransform, '__reduce_ex__', _reduce_gluoncv_transform),
        (_rpn_target, 'RPNTargetGenerator', GluonCVRPNTargetGenerator),
        (_rpn_target, 'RPNTargetSampler', GluonCVRPNTargetSampler),
    )
