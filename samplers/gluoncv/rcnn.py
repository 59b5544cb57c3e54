"""GluonCV drop-in: hard flags end to end in GluonCV's Faster R-CNN and Mask R-CNN training.

Needs the ``gluoncv`` extra. What a hard box (label column 5, VOC
``difficult``, or any 0/1 flag) does in each stage:

* RPN targets (in the training transform, often in a DataLoader worker):
  :class:`samplers.rpn.RPNTargetGenerator`; no positive anchor, and the
  anchors on it are ignored instead of taught as background.
* Second stage (inside the network): :class:`RCNNTargetSampler`
  (:class:`samplers.rcnn.RCNNTargetSampler`); no positive proposal, the
  proposals on it are ignored, its appended ground-truth row is ignored.
  GluonCV's ``RCNNTargetGenerator`` turns those 0 samples into class target
  -1: no classification, box or mask loss.

Two ways in, both giving GluonCV's types:

* explicit classes: :class:`FasterRCNNTrainTransform`,
  :class:`MaskRCNNTrainTransform`, :class:`RPNTargetGenerator`,
  :class:`RPNTargetSampler`, :class:`RCNNTargetSampler`, constructed where
  GluonCV's would be;
* :func:`samplers.gluoncv.install`: patches GluonCV with what
  :func:`patches` lists, so an unchanged training script gets the same.

How the flags travel, since GluonCV's code passes boxes only: the
transform's ``__call__`` leaves the label's flags, for that call and that
thread only, where its RPN target generator picks them up; the patched
``ForwardBackwardTask.forward_backward`` does the same for the network,
whose patched ``forward`` then passes them as a fourth input
``gt_hard`` (B, M, 1) to ``hybrid_forward``, which hands them to the
network's sampler the same way (a graph input: hybridized networks work).
"""
from __future__ import annotations

import random
import threading

import mxnet as mx
import numpy as np
from gluoncv.data.transforms import bbox as _tbbox
from gluoncv.data.transforms import image as _timage
from gluoncv.data.transforms import mask as _tmask
from gluoncv.data.transforms.presets import rcnn as _presets
from gluoncv.model_zoo.rcnn.faster_rcnn import data_parallel as _faster_task
from gluoncv.model_zoo.rcnn.faster_rcnn import faster_rcnn as _faster
from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import \
    RCNNTargetSampler as _GluonCVRCNNTargetSampler
from gluoncv.model_zoo.rcnn.mask_rcnn import data_parallel as _mask_task
from gluoncv.model_zoo.rcnn.mask_rcnn import mask_rcnn as _mask
from gluoncv.model_zoo.rcnn.mask_rcnn import rcnn_target as _mask_target
from gluoncv.model_zoo.rcnn.rpn import rpn_target as _rpn_target
from gluoncv.utils.metrics import rcnn as _metrics
from mxnet import autograd, gluon

try:  # optional: OpenCV's table look-up makes the image tensor ~5x faster than numpy's
    import cv2 as _cv2
except ImportError:  # pragma: no cover - numpy does the same look-up
    _cv2 = None

from .. import rcnn as _second_stage
from ..backend import to_numpy
from ..rpn import RPNTargetGenerator as _RPNTargetGenerator
from ..rpn import RPNTargetSampler as _RPNTargetSampler
from ._common import (CACHE, HARD_COLUMN, INSTALLED, PENDING, check_hard_column, hard_flags,
                      pickle_state)

__all__ = ['FasterRCNNTrainTransform', 'MaskRCNNTrainTransform', 'RPNTargetGenerator',
           'RPNTargetSampler', 'RCNNTargetSampler', 'use_hard_sampler']

_FasterTransform = _presets.FasterRCNNDefaultTrainTransform
_MaskTransform = _presets.MaskRCNNDefaultTrainTransform
_FasterRCNN = _faster.FasterRCNN
_MaskRCNN = _mask.MaskRCNN
_MaskTargetGenerator = _mask_target.MaskTargetGenerator
# Taken at import, before any install(): the GluonCV bodies every patched call runs.
_GLUONCV = {
    'faster_call': _FasterTransform.__call__, 'mask_call': _MaskTransform.__call__,
    'faster_forward': _FasterRCNN.hybrid_forward, 'mask_forward': _MaskRCNN.hybrid_forward,
    'faster_task': _faster_task.ForwardBackwardTask.forward_backward,
    'mask_task': _mask_task.ForwardBackwardTask.forward_backward,
    'faster_task_init': _faster_task.ForwardBackwardTask.__init__,
    'mask_task_init': _mask_task.ForwardBackwardTask.__init__,
    'mask_targets': _MaskTargetGenerator.hybrid_forward,
}
# Hard flags of the network call in flight, for that call and that thread only: ``task``
# (B, M, 1) NDArray from a ForwardBackwardTask, ``hard`` (B, M) NDArray or Symbol for the sampler.
_NET = threading.local()


# --------------------------------------------------------------------------- GluonCV-typed parts
class RPNTargetGenerator(_RPNTargetGenerator):
    """:class:`samplers.rpn.RPNTargetGenerator` with GluonCV's call and return types.

    Same constructor as :class:`samplers.rpn.RPNTargetGenerator` (GluonCV's
    plus ``allow_low_quality_matches`` and ``hard_iof_thresh``). Called as
    ``generator(bbox, anchor, width, height, hard=None)`` with numpy arrays or
    NDArrays on any context, like GluonCV's, and returns numpy arrays with
    GluonCV's dtypes: ``cls_target`` (N,) float32 (1 positive, 0 negative,
    -1 ignored), ``box_target`` (N, 4) float32, ``box_mask`` (N, 4) float64,
    which GluonCV's ``batchify.Append`` expects. ``hard`` defaults to the
    flags of the label the calling transform is working on (none outside a
    transform).
    """

    def forward(self, bbox, anchor, width, height, hard=None):  # pylint: disable=arguments-differ
        if hard is None:
            hard = getattr(PENDING, 'hard', None)
        cls_target, box_target, box_mask = super().forward(
            to_numpy(bbox), to_numpy(anchor), width, height, hard=hard)
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
    pos_ratio=0.25, max_num_gt=300`` plus the hard thresholds). A subclass of
    GluonCV's class with its attributes (``_max_pos``, ...), so
    ``net.sampler = RCNNTargetSampler(...)`` works on any GluonCV R-CNN; the
    sampling is ours, done by the child block ``sampler``. Called as
    ``sampler(rois, scores, gt_boxes, hard=None)``, it returns GluonCV's
    ``(rois, samples, matches)``. ``hard`` (B, M) defaults to the flags given
    to the network's training forward when :func:`samplers.gluoncv.install`
    is in effect; with none, the result is unflagged (GluonCV's candidates).
    """

    def __init__(self, num_image, num_proposal, num_sample, pos_iou_thresh=0.5, pos_ratio=0.25,
                 max_num_gt=300, **hard_options):
        sampler = _second_stage.RCNNTargetSampler(
            num_image, num_proposal, num_sample, pos_iou_thresh=pos_iou_thresh,
            pos_ratio=pos_ratio, max_num_gt=max_num_gt, **hard_options)
        super().__init__(num_image, num_proposal, num_sample, pos_iou_thresh, pos_ratio,
                         max_num_gt)
        self.sampler = sampler

    def forward(self, rois, scores, gt_boxes, hard=None):  # pylint: disable=arguments-differ
        if hard is None:
            hard = getattr(_NET, 'hard', None)
        return super().forward(rois, scores, gt_boxes, hard)

    # pylint: disable=arguments-differ
    def hybrid_forward(self, F, rois, scores, gt_boxes, hard=None):
        return self.sampler(rois, scores, gt_boxes, hard)


def use_hard_sampler(net, **hard_options):
    """Give ``net`` (a GluonCV Faster/Mask R-CNN) our :class:`RCNNTargetSampler`, same settings.

    For networks built before :func:`samplers.gluoncv.install` (built after,
    they have it already); ``hard_options`` default to install()'s. Returns ``net``.
    """
    old = net.sampler
    if not isinstance(old, RCNNTargetSampler):
        # pylint: disable=protected-access
        net.sampler = RCNNTargetSampler(
            num_image=old._num_image, num_proposal=old._num_proposal,
            num_sample=old._num_sample, pos_iou_thresh=old._pos_iou_thresh,
            pos_ratio=old._max_pos / old._num_sample, max_num_gt=old._max_num_gt,
            **dict(INSTALLED.rcnn_options, **hard_options))
    return net


def _installed_rcnn_sampler(**kwargs):
    """What a network built under install() gets as ``sampler``: install()'s options added."""
    return RCNNTargetSampler(**dict(INSTALLED.rcnn_options, **kwargs))


# --------------------------------------------------------------------------- transform methods
def _hard_column_of(transform):
    """Ours carry their own ``hard_column``; patched GluonCV transforms use install()'s."""
    return transform.__dict__.get('_hard_column', INSTALLED.hard_column)


def _with_hard_flags(gluoncv_call):
    def __call__(self, src, label, *segm):
        """Apply GluonCV's training transform; the label's hard column becomes the RPN's hard flags.

        Without a network no targets are made, and the column is not read.
        """
        if self._anchors is None:
            return gluoncv_call(self, src, label, *segm)
        _cache_feature_shapes(self)
        outer = getattr(PENDING, 'hard', None)
        PENDING.hard = hard_flags(label, _hard_column_of(self))
        try:
            return gluoncv_call(self, src, label, *segm)
        finally:
            PENDING.hard = outer
    return __call__


_gluoncv_faster_call = _with_hard_flags(_GLUONCV['faster_call'])
_gluoncv_mask_call = _with_hard_flags(_GLUONCV['mask_call'])

# (mean, std) -> (3, 256) float32: what to_tensor + normalize make of each uint8 value.
_PIXEL_TABLES = {}


def _pixel_table(mean, std):
    """Per channel, the normalised float32 value of every uint8 pixel value.

    Computed by MXNet's own ``image.to_tensor`` and ``image.normalize`` (both
    elementwise), so looking pixels up in it gives their values bit for bit.
    """
    key = (tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()))
    table = _PIXEL_TABLES.get(key)
    if table is None:
        values = mx.nd.array(np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2),
                             dtype='uint8')
        tensor = mx.nd.image.normalize(mx.nd.image.to_tensor(values), mean=mean, std=std)
        table = _PIXEL_TABLES[key] = np.ascontiguousarray(tensor.asnumpy()[:, 0, :])
    return table


def _image_tensor(pixels, table, flip_x):
    """(H, W, 3) uint8 numpy, flipped left-right if ``flip_x`` -> (3, H, W) float32 NDArray.

    Each pixel value is looked up in ``table`` (3, 256): with OpenCV (``cv2``,
    if importable) one ``LUT`` pass per channel plane, else numpy indexing.
    """
    out = np.empty((3,) + pixels.shape[:2], np.float32)
    if _cv2 is not None:
        planes = _cv2.split(_cv2.flip(pixels, 1) if flip_x else pixels)
        for channel in range(3):
            _cv2.LUT(planes[channel], table[channel].reshape(1, 256), dst=out[channel])
    else:
        if flip_x:
            pixels = pixels[:, ::-1]
        for channel in range(3):
            out[channel] = table[channel][pixels[:, :, channel]]
    return mx.nd.from_numpy(out, zero_copy=True)


def _level_anchors(transform, image_height, image_width):
    """Per feature level (shape, (N, 4) numpy anchors) for one image size, cached on the transform.

    GluonCV slices its anchor NDArray to the level's feature map and copies it for each image.
    """
    cache = transform.__dict__.setdefault('_samplers_anchors', {})
    found = cache.get((image_height, image_width))
    if found is None:
        # pylint: disable=protected-access
        pairs = (zip(transform._anchors, transform._feat_sym) if transform._multi_stage
                 else [(transform._anchors, transform._feat_sym)])
        found = []
        for anchor, feat in pairs:
            oshape = feat.infer_shape(data=(1, 3, image_height, image_width))[1][0]
            anchor = anchor[:, :, :oshape[2], :oshape[3], :]
            found.append((anchor.shape, anchor.reshape((-1, 4)).asnumpy()))
        cache[(image_height, image_width)] = found
    return found


def _fast_path(transform, src):
    # pylint: disable=protected-access
    return (transform._anchors is not None and isinstance(src, mx.nd.NDArray)
            and src.dtype == np.uint8 and src.ndim == 3 and src.shape[2] == 3)


def _train_outputs(transform, src, label, flip_p, segm=None):
    """GluonCV's training steps with faster primitives and the same outputs, RNG draws included.

    Resize (GluonCV's; a random short side from python's ``random`` as
    GluonCV's), the flip drawn as GluonCV's ``random_flip`` draws it (numpy's
    RNG: vertical, never, then horizontal), the image normalised through a
    per-channel table of ``to_tensor`` + ``normalize`` values, the anchors
    cached as numpy per image size. With ``segm`` (Mask R-CNN polygons) the
    masks come last, rasterised by GluonCV's ``to_mask``.
    """
    # pylint: disable=protected-access
    _cache_feature_shapes(transform)
    hard = hard_flags(label, _hard_column_of(transform))
    short = transform._short
    if transform._random_resize:
        short = random.randint(short[0], short[1])
    height, width, _ = src.shape
    img = _timage.resize_short_within(src, short, transform._max_size, interp=1)
    size, new_size = (width, height), (img.shape[1], img.shape[0])
    bbox = _tbbox.resize(label, size, new_size)
    if segm is not None:
        segm = [_tmask.resize(polys, size, new_size) for polys in segm]
    height, width, _ = img.shape
    np.random.choice([False, True], p=[1, 0])
    flip_x = np.random.choice([False, True], p=[1 - flip_p, flip_p])
    bbox = _tbbox.flip(bbox, (width, height), flip_x=flip_x)
    if segm is not None:
        segm = [_tmask.flip(polys, (width, height), flip_x=flip_x) for polys in segm]
        masks = mx.nd.stack(*[mx.nd.array(_tmask.to_mask(polys, (width, height)))
                              for polys in segm], axis=0)
    img = _image_tensor(img.asnumpy(), _pixel_table(transform._mean, transform._std), flip_x)
    levels = _level_anchors(transform, height, width)
    anchors = levels[0][1] if len(levels) == 1 else np.concatenate([a for _, a in levels])
    outer = getattr(PENDING, 'hard', None)
    PENDING.hard = hard
    try:
        cls_target, box_target, box_mask = transform._target_generator(
            bbox[:, :4].astype(np.float32), anchors, width, height)
    finally:
        PENDING.hard = outer
    cls_targets, box_targets, box_masks = [], [], []
    start = 0
    for oshape, _ in levels:
        size = oshape[2] * oshape[3] * (oshape[4] // 4)
        for out, target in ((cls_targets, cls_target), (box_targets, box_target),
                            (box_masks, box_mask)):
            out.append(target[start:start + size].reshape(oshape[2], oshape[3], -1))
        start += size
    outputs = (img, bbox.astype(np.float32), cls_targets, box_targets, box_masks)
    return outputs if segm is None else outputs + (masks,)


def _faster_call(self, src, label):
    """GluonCV's Faster R-CNN training transform, faster, same outputs (:func:`_train_outputs`).

    Anything but a uint8 (H, W, 3) NDArray image, or no network, runs GluonCV's body.
    """
    if not _fast_path(self, src):
        return _gluoncv_faster_call(self, src, label)
    return _train_outputs(self, src, label, self._flip_p)


def _mask_call(self, src, label, segm):
    """GluonCV's Mask R-CNN training transform (flip probability 0.5), faster, same outputs."""
    if not _fast_path(self, src):
        return _gluoncv_mask_call(self, src, label, segm)
    return _train_outputs(self, src, label, 0.5, segm)


class _FeatureShapes:
    """A features symbol whose ``infer_shape`` remembers its answer per input shape.

    GluonCV's transforms infer the feature map shape of every image from the
    symbol (a graph pass each time); it depends on the image size only.
    """

    def __init__(self, symbol):
        self.symbol = symbol
        self.shapes = {}

    def infer_shape(self, **shapes):
        key = tuple(sorted(shapes.items()))
        found = self.shapes.get(key)
        if found is None:
            found = self.shapes[key] = self.symbol.infer_shape(**shapes)
        return found

    def __getstate__(self):
        return {'symbol': self.symbol, 'shapes': {}}


def _cache_feature_shapes(transform):
    feat = transform._feat_sym  # pylint: disable=protected-access
    if isinstance(feat, (_FeatureShapes, list)):
        return
    # One feature level (C4) is one symbol; FPN's is a group of several, one per level.
    outputs = feat.list_outputs()
    transform._feat_sym = (  # pylint: disable=protected-access
        [_FeatureShapes(feat[i]) for i in range(len(outputs))] if transform._multi_stage
        else _FeatureShapes(feat))


def _build_target_generator(self):
    """Our generator, built on first use from the transform's settings; None without a net.

    A patched GluonCV transform adds install()'s RPN options under its own ``**kwargs``.
    """
    if self._net_none:
        return None
    generator = self.__dict__.get(CACHE)
    if generator is None:
        options = {} if '_hard_column' in self.__dict__ else dict(INSTALLED.rpn_options)
        options.update(self._kwargs)
        generator = RPNTargetGenerator(
            num_sample=self._num_sample, pos_iou_thresh=self._pos_iou_thresh,
            neg_iou_thresh=self._neg_iou_thresh, pos_ratio=self._pos_ratio,
            stds=self._box_norm, **options)
        setattr(self, CACHE, generator)
    return generator


def _reduce_gluoncv_transform(self, protocol):
    """Pickle a patched GluonCV transform as our explicit class, with install()'s settings.

    A spawned DataLoader worker imports an unpatched GluonCV; the object it
    unpickles must bring the hard-flag-aware targets itself, without
    patching anything in that process. Subclasses (ours, or a user's) pickle
    as themselves, the default way.
    """
    ours = {_FasterTransform: FasterRCNNTrainTransform,
            _MaskTransform: MaskRCNNTrainTransform}.get(type(self))
    if ours is None:
        return object.__reduce_ex__(self, protocol)
    state = pickle_state(self)
    state['_kwargs'] = dict(INSTALLED.rpn_options, **state['_kwargs'])
    state['_hard_column'] = _hard_column_of(self)
    return _rebuild, (ours, state)


def _rebuild(cls, state):
    transform = cls.__new__(cls)
    transform.__dict__.update(state)
    return transform


class _HardFlagsTransform:
    """What our explicit transforms add to GluonCV's: hard column, our generator, shape cache."""

    def _set_up(self, hard_column, generator_options):
        hard_column = check_hard_column(hard_column)
        # Build the generator once now so bad settings fail here, not in a worker.
        generator = RPNTargetGenerator(**generator_options)
        self._hard_column = hard_column
        if not self._net_none:
            setattr(self, CACHE, generator)
            _cache_feature_shapes(self)

    _target_generator = property(_build_target_generator)

    def __getstate__(self):
        return pickle_state(self)


def _generator_options(num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio, box_norm, kwargs):
    return dict(num_sample=num_sample, pos_iou_thresh=pos_iou_thresh,
                neg_iou_thresh=neg_iou_thresh, pos_ratio=pos_ratio, stds=box_norm, **kwargs)


class FasterRCNNTrainTransform(_HardFlagsTransform, _FasterTransform):
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
    The feature map shape is inferred once per image size, not per image.
    """

    def __init__(self, short=600, max_size=1000, net=None, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), box_norm=(1., 1., 1., 1.), num_sample=256,
                 pos_iou_thresh=0.7, neg_iou_thresh=0.3, pos_ratio=0.5, flip_p=0.5, ashape=128,
                 multi_stage=False, hard_column=HARD_COLUMN, **kwargs):
        options = _generator_options(num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio,
                                     box_norm, kwargs)
        check_hard_column(hard_column)
        RPNTargetGenerator(**options)  # bad settings fail before GluonCV's set-up runs
        super().__init__(short=short, max_size=max_size, net=net, mean=mean, std=std,
                         box_norm=box_norm, num_sample=num_sample,
                         pos_iou_thresh=pos_iou_thresh, neg_iou_thresh=neg_iou_thresh,
                         pos_ratio=pos_ratio, flip_p=flip_p, ashape=ashape,
                         multi_stage=multi_stage, **kwargs)
        self._set_up(hard_column, options)

    __call__ = _faster_call


class MaskRCNNTrainTransform(_HardFlagsTransform, _MaskTransform):
    """GluonCV's Mask R-CNN training transform with hard-flag-aware RPN targets.

    Parameters are those of GluonCV's ``MaskRCNNDefaultTrainTransform``
    (``short=600, max_size=1000, net=None, mean, std, box_norm=(1, 1, 1, 1),
    num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3, pos_ratio=0.5,
    ashape=128, multi_stage=False, **kwargs``) plus ``hard_column`` (default
    5), as :class:`FasterRCNNTrainTransform`. Called as
    ``transform(src, label, segm)``, it returns GluonCV's six outputs (image,
    label, RPN targets per level, masks), the RPN targets hard-flag-aware.
    COCO labels have five columns (no hard box) unless the dataset adds one.
    """

    def __init__(self, short=600, max_size=1000, net=None, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), box_norm=(1., 1., 1., 1.), num_sample=256,
                 pos_iou_thresh=0.7, neg_iou_thresh=0.3, pos_ratio=0.5, ashape=128,
                 multi_stage=False, hard_column=HARD_COLUMN, **kwargs):
        options = _generator_options(num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio,
                                     box_norm, kwargs)
        check_hard_column(hard_column)
        RPNTargetGenerator(**options)
        super().__init__(short=short, max_size=max_size, net=net, mean=mean, std=std,
                         box_norm=box_norm, num_sample=num_sample,
                         pos_iou_thresh=pos_iou_thresh, neg_iou_thresh=neg_iou_thresh,
                         pos_ratio=pos_ratio, ashape=ashape, multi_stage=multi_stage, **kwargs)
        self._set_up(hard_column, options)

    __call__ = _mask_call


# --------------------------------------------------------------------------- network methods
def _network_forward(self, x, *args):
    """``net(x, gt_box, gt_label, gt_hard=None)``: GluonCV's forward with an optional 4th input.

    ``gt_hard`` (B, M, 1) or (B, M): 1 marks a hard box (anything else, such
    as the -1 of padding rows, is not hard). In a training forward with
    ``gt_box`` and ``gt_label`` and our sampler, missing flags are the ones a
    patched ``ForwardBackwardTask`` is passing, or zeros (GluonCV's result):
    the graph then always has the same four inputs, hybridized or not.
    """
    if autograd.is_training() and len(args) in (2, 3) and isinstance(args[1], mx.nd.NDArray):
        hard = args[2] if len(args) == 3 else getattr(_NET, 'task', None)
        if not isinstance(self.sampler, RCNNTargetSampler):
            if hard is not None:
                raise ValueError(
                    "hard flags given, but this network's sampler is {} and cannot take them "
                    "(network built before samplers.gluoncv.install()?): build it after install(), "
                    "or call samplers.gluoncv.use_hard_sampler(net) first"
                    .format(type(self.sampler).__name__))
        else:
            args = args[:2] + (mx.nd.zeros_like(args[1]) if hard is None else hard,)
    return gluon.HybridBlock.forward(self, x, *args)


def _with_hard_input(gluoncv_forward):
    def hybrid_forward(self, F, x, gt_box=None, gt_label=None, gt_hard=None, **params):
        """GluonCV's ``hybrid_forward``; ``gt_hard`` reaches the network's sampler."""
        if gt_hard is None:
            return gluoncv_forward(self, F, x, gt_box, gt_label, **params)
        outer = getattr(_NET, 'hard', None)
        _NET.hard = F.reshape(gt_hard, shape=(0, -1)) == 1
        try:
            return gluoncv_forward(self, F, x, gt_box, gt_label, **params)
        finally:
            _NET.hard = outer
    return hybrid_forward


_faster_hybrid_forward = _with_hard_input(_GLUONCV['faster_forward'])
_mask_hybrid_forward = _with_hard_input(_GLUONCV['mask_forward'])


def _with_task_flags(gluoncv_forward_backward):
    def forward_backward(self, x):
        """GluonCV's step; label column ``hard_column`` goes to the network as its hard flags."""
        label, column = x[1], INSTALLED.hard_column
        hard = None
        if column is not None and label.shape[-1] > column:
            hard = label.slice_axis(axis=-1, begin=column, end=column + 1)
        outer = getattr(_NET, 'task', None)
        _NET.task = hard
        try:
            return gluoncv_forward_backward(self, x)
        finally:
            _NET.task = outer
    return forward_backward


def _with_our_sampler(gluoncv_init):
    def __init__(self, net, *args, **kwargs):
        """GluonCV's set-up; a network built before install() gets our sampler here."""
        gluoncv_init(self, net, *args, **kwargs)
        use_hard_sampler(net)
    return __init__


# Mask R-CNN: GluonCV's task divides the mask loss by the sum of the mask weights, which is 0
# when no RoI of the batch is positive (every box hard): 0/0 would make loss and gradients NaN.
_PHANTOM = 0.5  # weight of the one element added to mask weights that are all 0 (real ones: 0/1)


def _with_phantom_weight(gluoncv_forward):
    def hybrid_forward(self, F, rois, gt_masks, matches, cls_targets):
        """GluonCV's mask targets; all-zero mask weights get one element of weight 0.5.

        The patched task's mask loss drops that element again: the loss is 0 for such a batch
        (not NaN) and unchanged for every other batch.
        """
        targets, masks = gluoncv_forward(self, F, rois, gt_masks, matches, cls_targets)
        flat = F.reshape(masks, shape=(-1,))
        first = F.concat(F.ones_like(F.slice_axis(flat, axis=0, begin=0, end=1)),
                         F.zeros_like(F.slice_axis(flat, axis=0, begin=1, end=None)), dim=0)
        empty = F.sum(flat) == 0
        return targets, masks + F.reshape_like(F.broadcast_mul(first, empty) * _PHANTOM, masks)
    return hybrid_forward


class _WithoutPhantom:
    """A mask loss that ignores the element :func:`_with_phantom_weight` adds."""

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, pred, label, sample_weight, *args, **kwargs):
        return self.loss(pred, label, sample_weight * (sample_weight != _PHANTOM),
                         *args, **kwargs)


def _with_our_mask_loss(gluoncv_init):
    init = _with_our_sampler(gluoncv_init)

    def __init__(self, net, *args, **kwargs):
        """GluonCV's set-up, our sampler, and a mask loss that is 0 without positive RoIs."""
        init(self, net, *args, **kwargs)
        if not isinstance(self.rcnn_mask_loss, _WithoutPhantom):
            self.rcnn_mask_loss = _WithoutPhantom(self.rcnn_mask_loss)
    return __init__


def _metric_get(self):
    """GluonCV's value; 0.0 instead of NaN (0/0) over an interval without positive boxes."""
    if self.num_inst == 0:
        return self.name, 0.0
    return mx.metric.EvalMetric.get(self)


# --------------------------------------------------------------------------- what install() patches
_PATCHES = (
    (_FasterTransform, '__call__', _faster_call),
    (_FasterTransform, '_target_generator', property(_build_target_generator)),
    (_FasterTransform, '__reduce_ex__', _reduce_gluoncv_transform),
    (_MaskTransform, '__call__', _mask_call),
    (_MaskTransform, '_target_generator', property(_build_target_generator)),
    (_MaskTransform, '__reduce_ex__', _reduce_gluoncv_transform),
    (_rpn_target, 'RPNTargetGenerator', RPNTargetGenerator),
    (_rpn_target, 'RPNTargetSampler', RPNTargetSampler),
    (_faster, 'RCNNTargetSampler', _installed_rcnn_sampler),
    (_FasterRCNN, 'forward', _network_forward),
    (_FasterRCNN, 'hybrid_forward', _faster_hybrid_forward),
    (_MaskRCNN, 'hybrid_forward', _mask_hybrid_forward),
    (_faster_task.ForwardBackwardTask, '__init__',
     _with_our_sampler(_GLUONCV['faster_task_init'])),
    (_faster_task.ForwardBackwardTask, 'forward_backward',
     _with_task_flags(_GLUONCV['faster_task'])),
    (_mask_task.ForwardBackwardTask, '__init__', _with_our_mask_loss(_GLUONCV['mask_task_init'])),
    (_MaskTargetGenerator, 'hybrid_forward', _with_phantom_weight(_GLUONCV['mask_targets'])),
    (_mask_task.ForwardBackwardTask, 'forward_backward',
     _with_task_flags(_GLUONCV['mask_task'])),
    (_metrics.RPNL1LossMetric, 'get', _metric_get),
    (_metrics.RCNNL1LossMetric, 'get', _metric_get),
)


def patches():
    """(owner, attribute, replacement) triples that install() applies for Faster/Mask R-CNN."""
    return _PATCHES
