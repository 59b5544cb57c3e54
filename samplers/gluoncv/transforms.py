"""GluonCV's training transforms with hard-flag-aware targets: Faster/Mask R-CNN and SSD.

Needs the ``gluoncv`` extra. The explicit classes :class:`FasterRCNNTrainTransform`,
:class:`MaskRCNNTrainTransform` and :class:`SSDTrainTransform` subclass GluonCV's
and are constructed where GluonCV's are; :func:`samplers.gluoncv.install` puts
the same methods (:func:`faster_call`, :func:`mask_call`, :func:`ssd_call` and
the ``_target_generator`` properties) on GluonCV's own classes.

How the flags reach the targets: GluonCV's transforms call their target
generator with the boxes only, so a transform's ``__call__`` leaves the label's
hard column (``hard_column``; see :func:`._common.hard_column_flags`), for that call
and that thread only, where our generator picks it up.

R-CNN: for a uint8 (H, W, 3) NDArray image the transform runs its own steps
(:func:`_train_outputs`) instead of GluonCV's, with GluonCV's outputs bit for bit
and the same random draws: the image tensor through a per-channel look-up
table, numpy anchors and feature map shapes cached per image size. Any other
image runs GluonCV's body.

Objects too small to see (``hard_min_size``): the target generator makes a box
hard when its shorter side, after the transform's resize, is below that size.
The R-CNN transforms also write that flag into the label they return (column
``hard_column``, appended when the label has exactly that many columns), so the
network's second stage, which reads that column, sees the same hard boxes.

SSD: GluonCV's transform crops boxes away before it makes targets, so the
flags are read after its augmentation: GluonCV's own augmentation runs on a
copy of the transform without anchors (which makes GluonCV return the
augmented label, every column kept), then the targets are made from that label.

GluonCV attributes this module relies on (set by GluonCV's constructors; none is
public API, so a GluonCV release that renames one breaks this module):

* R-CNN transforms: ``_anchors`` (None without a network; a list per level with
  ``_multi_stage``), ``_feat_sym`` (the features symbol, which we replace with a
  shape-caching wrapper), ``_multi_stage``, ``_short``, ``_random_resize``,
  ``_max_size``, ``_mean``, ``_std``, ``_flip_p`` (Faster R-CNN; Mask R-CNN
  flips with probability 0.5), and the target generator's settings
  ``_net_none``, ``_num_sample``, ``_pos_iou_thresh``, ``_neg_iou_thresh``,
  ``_pos_ratio``, ``_box_norm``, ``_kwargs``;
* SSD transform: ``_anchors``, ``_anchors_none``, ``_iou_thresh``, ``_box_norm``,
  ``_kwargs``;
* both: the ``_target_generator`` property (ours replaces it), and the order of
  GluonCV's random draws (python's ``random`` for the short side, then numpy's
  for the flips as ``random_flip`` draws them), which :func:`_train_outputs` replays.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Sequence

import mxnet as mx
import numpy as np
from gluoncv.data.transforms import bbox as _tbbox
from gluoncv.data.transforms import image as _timage
from gluoncv.data.transforms import mask as _tmask
from gluoncv.data.transforms.presets import rcnn as _rcnn_presets
from gluoncv.data.transforms.presets import ssd as _ssd_presets
from mxnet import gluon

try:  # optional: OpenCV's table look-up is faster than numpy's (docs/bench.md, micro)
    import cv2 as _cv2
except ImportError:  # pragma: no cover - numpy does the same look-up
    _cv2 = None

from ..boxes import too_small
from ..checks import check_min_size, check_stds
from ..options import HardRule, fold
from ._common import (ANCHOR_CACHE, CACHE, HARD_COLUMN, PENDING, bound,
                      check_hard_column, hard_column_flags, hard_column_of, label_flags,
                      pickle_state, settings_of)
from .wrappers import RPNTargetGenerator, SSDTargetGenerator

__all__ = ['FasterRCNNTrainTransform', 'MaskRCNNTrainTransform', 'SSDTrainTransform']

_FasterTransform = _rcnn_presets.FasterRCNNDefaultTrainTransform
_MaskTransform = _rcnn_presets.MaskRCNNDefaultTrainTransform
_SSDTransform = _ssd_presets.SSDDefaultTrainTransform
# Taken at import, before any install(): the GluonCV bodies our transforms fall back to.
_GLUONCV_FASTER_CALL = _FasterTransform.__call__
_GLUONCV_MASK_CALL = _MaskTransform.__call__
_GLUONCV_SSD_CALL = _SSDTransform.__call__


# --------------------------------------------------------------------------- R-CNN: fast steps
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
    feat = transform._feat_sym
    if isinstance(feat, (_FeatureShapes, list)):
        return
    # One feature level (C4) is one symbol; FPN's is a group of several, one per level.
    outputs = feat.list_outputs()
    transform._feat_sym = (
        [_FeatureShapes(feat[i]) for i in range(len(outputs))] if transform._multi_stage
        else _FeatureShapes(feat))


def _level_anchors(transform, image_height, image_width):
    """Per feature level (shape, (N, 4) numpy anchors) for one image size, cached on the transform.

    GluonCV slices its anchor NDArray to the level's feature map and copies it for each image.
    """
    cache = transform.__dict__.setdefault(ANCHOR_CACHE, {})
    found = cache.get((image_height, image_width))
    if found is None:
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
    return (transform._anchors is not None and isinstance(src, mx.nd.NDArray)
            and src.dtype == np.uint8 and src.ndim == 3 and src.shape[2] == 3)


def _resize_and_flip(transform, src, label, flip_p, segm):
    """GluonCV's resize and random left-right flip, with GluonCV's random draws in its order.

    Returns the resized image (not flipped yet: the flip is done with the
    look-up), the resized and flipped label and polygons (None without), and the flip.
    """
    short = transform._short
    if transform._random_resize:
        short = random.randint(short[0], short[1])
    height, width, _ = src.shape
    img = _timage.resize_short_within(src, short, transform._max_size, interp=1)
    size, new_size = (width, height), (img.shape[1], img.shape[0])
    bbox = _tbbox.resize(label, size, new_size)
    if segm is not None:
        segm = [_tmask.resize(polys, size, new_size) for polys in segm]
    # GluonCV's random_flip draws a vertical flip first (probability 0: never taken), then the
    # horizontal one. This discarded draw keeps numpy's RNG where GluonCV's leaves it, so the
    # horizontal flip and every later draw (the RPN targets' subsampling) are GluonCV's.
    np.random.choice([False, True], p=[1, 0])
    flip_x = np.random.choice([False, True], p=[1 - flip_p, flip_p])
    bbox = _tbbox.flip(bbox, new_size, flip_x=flip_x)
    if segm is not None:
        segm = [_tmask.flip(polys, new_size, flip_x=flip_x) for polys in segm]
    return img, bbox, segm, flip_x


def _rpn_targets(transform, bbox, height, width):
    """RPN targets of ``bbox`` on a (height, width) image, per feature level as GluonCV's.

    Returns three lists (``cls_target``, ``box_target``, ``box_mask``), one
    (rows, columns, anchors per cell [x 4]) numpy array per level.
    """
    levels = _level_anchors(transform, height, width)
    anchors = levels[0][1] if len(levels) == 1 else np.concatenate([a for _, a in levels])
    targets = transform._target_generator(
        bbox[:, :4].astype(np.float32), anchors, width, height)
    per_level = ([], [], [])
    start = 0
    for oshape, _ in levels:
        size = oshape[2] * oshape[3] * (oshape[4] // 4)
        for out, target in zip(per_level, targets):
            out.append(target[start:start + size].reshape(oshape[2], oshape[3], -1))
        start += size
    return per_level


def _train_outputs(transform, src, label, flip_p, segm=None):
    """GluonCV's training steps with faster primitives and the same outputs, RNG draws included.

    Resize (a random short side from python's ``random`` as GluonCV's), the
    flip drawn as GluonCV's ``random_flip`` draws it (:func:`_resize_and_flip`),
    the image normalised through a per-channel table of ``to_tensor`` +
    ``normalize`` values, the anchors cached as numpy per image size. With
    ``segm`` (Mask R-CNN polygons) the masks come last, rasterised by GluonCV's
    ``to_mask``.
    """
    _cache_feature_shapes(transform)
    hard, crowd = label_flags(label, hard_column_of(transform))
    img, bbox, segm, flip_x = _resize_and_flip(transform, src, label, flip_p, segm)
    height, width, _ = img.shape
    if segm is not None:
        masks = mx.nd.stack(*[mx.nd.array(_tmask.to_mask(polys, (width, height)))
                              for polys in segm], axis=0)
    img = _image_tensor(img.asnumpy(), _pixel_table(transform._mean, transform._std), flip_x)
    with bound(PENDING, 'hard', hard), bound(PENDING, 'crowd', crowd):
        targets = _rpn_targets(transform, bbox, height, width)
    outputs = (img, bbox.astype(np.float32)) + targets
    return _mark_small(transform, outputs if segm is None else outputs + (masks,))


def _mark_small(transform, outputs):
    """``outputs`` with the returned label (``outputs[1]``) flagging the boxes that the
    transform's generator finds too small (``hard_min_size``) as hard.

    The flag goes into column ``hard_column`` (appended when the label has exactly that many
    columns; a label with fewer is left alone): 1 for a too-small box whose flag is 0, other
    values kept. Without a size rule or a hard column, ``outputs`` unchanged.
    """
    generator = transform._target_generator
    size = getattr(generator, 'hard_min_size', None)
    column = hard_column_of(transform)
    label = outputs[1]
    if size is None or column is None or label.ndim != 2 or label.shape[1] < column:
        return outputs
    small = too_small(np.asarray(label[:, :4]), size)
    if label.shape[1] == column:
        label = np.concatenate([label, np.zeros((len(label), 1), label.dtype)], axis=1)
    else:
        label = np.array(label)
    flags = label[:, column]
    label[:, column] = np.where(small & (flags <= 0), 1, flags)
    return (outputs[0], label) + tuple(outputs[2:])


# --------------------------------------------------------------------------- R-CNN: methods
def _with_hard_flags(gluoncv_call):
    def __call__(self, src, label, *segm):
        """Apply GluonCV's training transform; the label's hard column becomes the RPN's hard flags.

        Without a network no targets are made, and the column is not read.
        """
        if self._anchors is None:
            return gluoncv_call(self, src, label, *segm)
        _cache_feature_shapes(self)
        hard, crowd = label_flags(label, hard_column_of(self))
        with bound(PENDING, 'hard', hard), bound(PENDING, 'crowd', crowd):
            return _mark_small(self, gluoncv_call(self, src, label, *segm))
    return __call__


_gluoncv_faster_call = _with_hard_flags(_GLUONCV_FASTER_CALL)
_gluoncv_mask_call = _with_hard_flags(_GLUONCV_MASK_CALL)


def faster_call(self, src, label):
    """GluonCV's Faster R-CNN training transform, faster, same outputs (:func:`_train_outputs`).

    Anything but a uint8 (H, W, 3) NDArray image, or no network, runs GluonCV's body.
    """
    if not _fast_path(self, src):
        return _gluoncv_faster_call(self, src, label)
    return _train_outputs(self, src, label, self._flip_p)


def _no_mask_placeholders(segm, label):
    """``segm`` with each empty polygon list (a row without a mask, such as a COCO crowd
    region, whose mask is RLE) replaced by a zero-area polygon at its box's corner.

    GluonCV's ``to_mask`` rasterises that polygon to an all-zero mask; such a row is never
    a positive, so its mask is no target.
    """
    if all(len(polys) for polys in segm):
        return segm
    corners = np.asarray(label)[:, :2].astype(np.float32)
    return [polys if len(polys) else [np.tile(corners[i], (3, 1))]
            for i, polys in enumerate(segm)]


def mask_call(self, src, label, segm):
    """GluonCV's Mask R-CNN training transform (flip probability 0.5), faster, same outputs.

    A row with no polygon (a crowd region) gets an all-zero mask."""
    segm = _no_mask_placeholders(segm, label)
    if not _fast_path(self, src):
        return _gluoncv_mask_call(self, src, label, segm)
    return _train_outputs(self, src, label, 0.5, segm)


# On a generator of a patched GluonCV transform: the install() options it was built with.
_INSTALLED_OPTIONS = '_samplers_installed_options'


def rcnn_target_generator(self):
    """Our generator, built on first use from the transform's settings; None without a net.

    A patched GluonCV transform adds install()'s RPN options (:func:`._common.settings_of`:
    those it was built under, or the current ones for a transform built before install();
    ``hard_min_size`` among them) under its own ``**kwargs``; the generator is built again
    when they change.
    """
    if self._net_none:
        return None
    generator = self.__dict__.get(CACHE)
    if '_hard_column' in self.__dict__:  # ours: built with its options
        installed = None
    else:
        installed = settings_of(self).rpn_options
        if generator is not None and generator.__dict__.get(_INSTALLED_OPTIONS) is not installed:
            generator = None
    if generator is None:
        options = fold(type(self).__name__, self._kwargs, base=installed)
        generator = RPNTargetGenerator(
            num_sample=self._num_sample, pos_iou_thresh=self._pos_iou_thresh,
            neg_iou_thresh=self._neg_iou_thresh, pos_ratio=self._pos_ratio,
            stds=check_stds('box_norm', self._box_norm), **options)
        generator.__dict__[_INSTALLED_OPTIONS] = installed
        setattr(self, CACHE, generator)
    return generator


# --------------------------------------------------------------------------- R-CNN: classes
class _HardFlagsTransform:
    """What our explicit R-CNN transforms add to GluonCV's: hard column, our generator, caches."""

    def _set_up(self, hard_column, generator_options):
        hard_column = check_hard_column(hard_column)
        # Build the generator once now so bad settings fail here, not in a worker.
        generator = RPNTargetGenerator(**generator_options)
        self._hard_column = hard_column
        if not self._net_none:
            setattr(self, CACHE, generator)
            _cache_feature_shapes(self)

    _target_generator = property(rcnn_target_generator)

    def __getstate__(self):
        return pickle_state(self)


def _with_min_size(owner, kwargs, hard_min_size):
    """``kwargs`` for the target generator (deprecated flat options folded, :func:`fold`), with
    ``hard_min_size`` as its ``hard.min_size`` when it is set."""
    hard_min_size = check_min_size('hard_min_size', hard_min_size)
    kwargs = fold(owner, kwargs, stacklevel=4)
    if hard_min_size is None:
        return kwargs
    hard = kwargs.get('hard') or HardRule()
    if hard.min_size is not None:
        raise ValueError('{}: hard_min_size given both as an argument and in hard=; pass it '
                         'once'.format(owner))
    return dict(kwargs, hard=dataclasses.replace(hard, min_size=hard_min_size))


def _generator_options(num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio, box_norm, kwargs):
    return dict(num_sample=num_sample, pos_iou_thresh=pos_iou_thresh,
                neg_iou_thresh=neg_iou_thresh, pos_ratio=pos_ratio,
                stds=check_stds('box_norm', box_norm), **kwargs)


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
    hard_min_size : positive float or None, default None
        A box whose shorter side after the resize is below this many pixels
        is hard too (flag OR too small), in the RPN targets and in the
        returned label's column ``hard_column`` (appended to a label with
        exactly ``hard_column`` columns), which the network's second stage
        reads. None: the flags alone.

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

    def __init__(self, short: int | tuple[int, int] = 600, max_size: int = 1000,
                 net: gluon.HybridBlock | None = None,
                 mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225),
                 box_norm: Sequence[float] = (1., 1., 1., 1.), num_sample: int = 256,
                 pos_iou_thresh: float = 0.7, neg_iou_thresh: float = 0.3,
                 pos_ratio: float = 0.5, flip_p: float = 0.5, ashape: int = 128,
                 multi_stage: bool = False, hard_column: int | None = HARD_COLUMN,
                 hard_min_size: float | None = None, **kwargs: Any) -> None:
        kwargs = _with_min_size(type(self).__name__, kwargs, hard_min_size)
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

    __call__ = faster_call


class MaskRCNNTrainTransform(_HardFlagsTransform, _MaskTransform):
    """GluonCV's Mask R-CNN training transform with hard-flag-aware RPN targets.

    Parameters are those of GluonCV's ``MaskRCNNDefaultTrainTransform``
    (``short=600, max_size=1000, net=None, mean, std, box_norm=(1, 1, 1, 1),
    num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3, pos_ratio=0.5,
    ashape=128, multi_stage=False, **kwargs``) plus ``hard_column`` (default
    5) and ``hard_min_size`` (default None), as :class:`FasterRCNNTrainTransform`. Called as
    ``transform(src, label, segm)``, it returns GluonCV's six outputs (image,
    label, RPN targets per level, masks), the RPN targets hard-flag-aware.
    COCO labels have five columns (no hard box) unless the dataset adds one.
    """

    def __init__(self, short: int | tuple[int, int] = 600, max_size: int = 1000,
                 net: gluon.HybridBlock | None = None,
                 mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225),
                 box_norm: Sequence[float] = (1., 1., 1., 1.), num_sample: int = 256,
                 pos_iou_thresh: float = 0.7, neg_iou_thresh: float = 0.3,
                 pos_ratio: float = 0.5, ashape: int = 128, multi_stage: bool = False,
                 hard_column: int | None = HARD_COLUMN, hard_min_size: float | None = None,
                 **kwargs: Any) -> None:
        kwargs = _with_min_size(type(self).__name__, kwargs, hard_min_size)
        options = _generator_options(num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio,
                                     box_norm, kwargs)
        check_hard_column(hard_column)
        RPNTargetGenerator(**options)
        super().__init__(short=short, max_size=max_size, net=net, mean=mean, std=std,
                         box_norm=box_norm, num_sample=num_sample,
                         pos_iou_thresh=pos_iou_thresh, neg_iou_thresh=neg_iou_thresh,
                         pos_ratio=pos_ratio, ashape=ashape, multi_stage=multi_stage, **kwargs)
        self._set_up(hard_column, options)

    __call__ = mask_call


# --------------------------------------------------------------------------- SSD
def ssd_call(self, src, label):
    """GluonCV's SSD training augmentation, then targets with the label's hard column as flags.

    Returns GluonCV's outputs: ``(image, cls_targets, box_targets)``, or
    ``(image, label)`` when the transform has no anchors.
    """
    if self._anchors is None:
        return _GLUONCV_SSD_CALL(self, src, label)
    view = object.__new__(type(self))  # a copy without anchors: GluonCV returns the label
    view.__dict__.update(self.__dict__)
    view._anchors = None
    img, bbox = _GLUONCV_SSD_CALL(view, src, label)
    gt_boxes = mx.nd.array(bbox[np.newaxis, :, :4])
    gt_ids = mx.nd.array(bbox[np.newaxis, :, 4:5])
    with bound(PENDING, 'hard', hard_column_flags(bbox, hard_column_of(self))):
        cls_targets, box_targets, _ = self._target_generator(
            self._anchors, None, gt_boxes, gt_ids)
    return img, cls_targets[0], box_targets[0]


def ssd_target_generator(self):
    """Our generator, built on first use from the transform's settings; None without anchors.

    A patched GluonCV transform adds install()'s ``hard_min_size`` (:func:`._common.settings_of`)
    under its own ``**kwargs``.
    """
    if self._anchors_none:
        return None
    generator = self.__dict__.get(CACHE)
    if generator is None:
        size = None if '_hard_column' in self.__dict__ else settings_of(self).hard_min_size
        options = fold(type(self).__name__, self._kwargs,
                       base=None if size is None else {'hard': HardRule(min_size=size)})
        generator = SSDTargetGenerator(iou_thresh=self._iou_thresh,
                                       stds=check_stds('box_norm', self._box_norm),
                                       negative_mining_ratio=-1, **options)
        setattr(self, CACHE, generator)
    return generator


class SSDTrainTransform(_SSDTransform):
    """GluonCV's SSD training transform with hard-flag-aware targets.

    Parameters are those of GluonCV's ``SSDDefaultTrainTransform`` (``width,
    height, anchors=None, mean, std, iou_thresh=0.5, box_norm=(0.1, 0.1, 0.2,
    0.2), **kwargs``; ``**kwargs`` go to :class:`SSDTargetGenerator`), plus

    hard_column : int or None, default 5
        Label column holding the 0/1 hard flags (VOC ``difficult`` in
        GluonCV's ``VOCDetection``); None reads no flags. Labels with no such
        column have no hard box.
    hard_min_size : positive float or None, default None
        A box whose shorter side after the augmentation and the resize to
        ``width`` x ``height`` is below this many pixels is hard too (flag
        OR too small). None: the flags alone.

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

    def __init__(self, width: int, height: int, anchors: mx.nd.NDArray | None = None,
                 mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), iou_thresh: float = 0.5,
                 box_norm: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                 hard_column: int | None = HARD_COLUMN, hard_min_size: float | None = None,
                 **kwargs: Any) -> None:
        hard_column = check_hard_column(hard_column)
        kwargs = _with_min_size(type(self).__name__, kwargs, hard_min_size)
        # Build the generator once now so bad settings fail here, not in a worker.
        generator = SSDTargetGenerator(iou_thresh=iou_thresh, stds=check_stds('box_norm', box_norm),
                                       negative_mining_ratio=-1, **kwargs)
        super().__init__(width, height, anchors=anchors, mean=mean, std=std,
                         iou_thresh=iou_thresh, box_norm=box_norm, **kwargs)
        self._hard_column = hard_column
        if anchors is not None:
            setattr(self, CACHE, generator)

    __call__ = ssd_call
    _target_generator = property(ssd_target_generator)

    def __getstate__(self):
        return pickle_state(self)
