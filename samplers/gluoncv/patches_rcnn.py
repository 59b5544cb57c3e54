"""What :func:`samplers.gluoncv.install` patches in GluonCV's Faster R-CNN and Mask R-CNN.

What a hard box (label column ``hard_column``, VOC ``difficult``) does in each stage:

* RPN targets (in the training transform, often in a DataLoader worker):
  :class:`samplers.rpn.RPNTargetGenerator`; no positive anchor, and the
  anchors on it are ignored instead of taught as background.
* Second stage (inside the network): :class:`.wrappers.RCNNTargetSampler`
  (:class:`samplers.rcnn.RCNNTargetSampler`); no positive proposal, the
  proposals on it are ignored, its appended ground-truth row is ignored.
  GluonCV's ``RCNNTargetGenerator`` turns those 0 samples into class target
  -1: no classification, box or mask loss.

With ``install(rpn_ohem=True)`` both tasks' steps also train the hardest labelled anchors
(:mod:`.patches_rpn_ohem`).

A crowd region (hard column value 2, from :mod:`.patches_datasets`) goes the same way as
``crowd`` flags, with Detectron's IoF rule instead (``crowd_iof_thresh``).

How the flags reach the network, since GluonCV's code passes boxes only: the
patched ``ForwardBackwardTask.forward_backward`` leaves the label's hard
column, for that call and that thread only, where the network's patched
``forward`` picks it up and passes it as a fourth input ``gt_hard`` (B, M, 1)
to ``hybrid_forward``, which hands it to the network's sampler the same way
(a graph input: hybridized networks work). The transforms are in
:mod:`.transforms`. :func:`patches` lists every replacement.
"""
from __future__ import annotations

import threading
import weakref

import mxnet as mx
from gluoncv.model_zoo.rcnn.faster_rcnn import data_parallel as _faster_task
from gluoncv.model_zoo.rcnn.faster_rcnn import faster_rcnn as _faster
from gluoncv.model_zoo.rcnn.faster_rcnn import rcnn_target as _faster_target
from gluoncv.model_zoo.rcnn.mask_rcnn import data_parallel as _mask_task
from gluoncv.model_zoo.rcnn.mask_rcnn import mask_rcnn as _mask
from gluoncv.model_zoo.rcnn.mask_rcnn import rcnn_target as _mask_target
from gluoncv.model_zoo.rcnn.rpn import rpn_target as _rpn_target
from gluoncv.utils.metrics import rcnn as _metrics
from mxnet import autograd, gluon

from .._arrays import host_view, use_numpy
from ..options import fold
from ._common import (CROWD, HARD, INSTALLED, NETWORK, bound, check_hard_values, hard_column_of,
                      keep_settings, keeping_settings, pickle_state, rebuild, settings_of)
from .patches_rpn_ohem import recording_num_sample, with_rpn_ohem
from .transforms import (FasterRCNNTrainTransform, MaskRCNNTrainTransform, _FasterTransform,
                         _MaskTransform, faster_call, mask_call, rcnn_target_generator)
from .patches_ohem import OHEMTargetSampler, with_ohem_call
from .wrappers import RCNNTargetSampler, RPNTargetGenerator, RPNTargetSampler, use_hard_sampler

_FasterRCNN = _faster.FasterRCNN
_MaskRCNN = _mask.MaskRCNN
_MaskTargetGenerator = _mask_target.MaskTargetGenerator
_RCNNTargetGenerator = _faster_target.RCNNTargetGenerator
# Taken at import, before any install(): the GluonCV bodies every patched call runs.
_GLUONCV = {
    'faster_transform_init': _FasterTransform.__init__,
    'mask_transform_init': _MaskTransform.__init__,
    'faster_forward': _FasterRCNN.hybrid_forward, 'mask_forward': _MaskRCNN.hybrid_forward,
    'faster_task': _faster_task.ForwardBackwardTask.forward_backward,
    'mask_task': _mask_task.ForwardBackwardTask.forward_backward,
    'faster_task_init': _faster_task.ForwardBackwardTask.__init__,
    'mask_task_init': _mask_task.ForwardBackwardTask.__init__,
    'mask_targets': _MaskTargetGenerator.hybrid_forward,
    'rcnn_targets': _RCNNTargetGenerator.hybrid_forward,
}


# --------------------------------------------------------------------------- transforms
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
    state['_kwargs'] = fold(type(self).__name__, state['_kwargs'],
                            base=settings_of(self).rpn_options)
    state['_hard_column'] = hard_column_of(self)
    return rebuild, (ours, state)


# --------------------------------------------------------------------------- networks
def _installed_rcnn_sampler(**kwargs):
    """What a network built under install() gets as ``sampler``: install()'s options added
    (the OHEM sampler under ``install(rcnn_ohem=True)``)."""
    if INSTALLED.rcnn_ohem is not None:
        return OHEMTargetSampler(**dict(INSTALLED.rcnn_options, **INSTALLED.rcnn_ohem, **kwargs))
    return RCNNTargetSampler(**dict(INSTALLED.rcnn_options, **kwargs))


def _network_forward(self, x, *args):
    """``net(x, gt_box, gt_label, gt_hard=None)``: GluonCV's forward with an optional 4th input.

    ``gt_hard`` (B, M, 1) or (B, M): 1 marks a hard box (the IoU rule), 2 a
    crowd region (the IoF rule), 0 a normal box, -1 a padding row; another
    value raises ``ValueError`` where the flags are on a CPU context (read in
    place there), and is not read on other contexts (GPU). In a training forward with
    ``gt_box`` and ``gt_label`` and our sampler, missing flags are the ones a
    patched ``ForwardBackwardTask`` is passing, or zeros (GluonCV's result):
    the graph then always has the same four inputs, hybridized or not.
    """
    if autograd.is_training() and len(args) in (2, 3) and isinstance(args[1], mx.nd.NDArray):
        hard = args[2] if len(args) == 3 else getattr(NETWORK, 'task', None)
        if hard is not None and use_numpy(hard):  # on the host: reading it copies nothing
            check_hard_values('gt_hard', host_view(hard))
        if not isinstance(self.sampler, RCNNTargetSampler):
            if hard is not None:
                raise ValueError(
                    "hard flags given, but this network's sampler is {} and cannot take them "
                    "(network built before samplers.gluoncv.install()?): build it after install(), "
                    "or call samplers.gluoncv.use_hard_sampler(net) first"
                    .format(type(self.sampler).__name__))
        else:
            args = args[:2] + (mx.nd.zeros_like(args[1]) if hard is None else hard,)
            _four_input_graph(self)
    return gluon.HybridBlock.forward(self, x, *args)


# Hybridized networks whose cached graph takes gt_hard: uninstall() clears their graphs, since
# GluonCV's training forward passes three inputs (Gluon refuses a call that does not fit it).
_FOUR_INPUT_GRAPHS = weakref.WeakSet()
_GRAPHS_LOCK = threading.Lock()


def _four_input_graph(net):
    """Before a training call of ``net`` with ``gt_hard``: if hybridized, a cached graph of
    GluonCV's three inputs (built before install()) is cleared, and ``net`` is remembered for
    :func:`clear_four_input_graphs`. Gluon builds the graph again on the call."""
    if not net._active:
        return
    if net._cached_op is not None and len(net._in_format or ()) == 3:
        net._clear_cached_op()
    with _GRAPHS_LOCK:
        _FOUR_INPUT_GRAPHS.add(net)


def clear_four_input_graphs():
    """Clear the cached graph of every hybridized network a training call gave ``gt_hard``
    (uninstall() calls it); the next call builds GluonCV's graph again."""
    with _GRAPHS_LOCK:
        for net in list(_FOUR_INPUT_GRAPHS):
            net._clear_cached_op()
        _FOUR_INPUT_GRAPHS.clear()


def _with_hard_input(gluoncv_forward):
    def hybrid_forward(self, F, x, gt_box=None, gt_label=None, gt_hard=None, **params):
        """GluonCV's ``hybrid_forward``; ``gt_hard`` reaches the network's sampler."""
        if gt_hard is None:
            return gluoncv_forward(self, F, x, gt_box, gt_label, **params)
        flags = F.reshape(gt_hard, shape=(0, -1))
        with bound(NETWORK, 'hard', flags == HARD), bound(NETWORK, 'crowd', flags == CROWD):
            return gluoncv_forward(self, F, x, gt_box, gt_label, **params)
    return hybrid_forward


# --------------------------------------------------------------------------- training tasks
def _with_task_flags(gluoncv_forward_backward):
    def forward_backward(self, x):
        """GluonCV's step; label column ``hard_column`` goes to the network as its hard flags."""
        label, column = x[1], settings_of(self).hard_column
        hard = None
        if column is not None and label.shape[-1] > column:
            hard = label.slice_axis(axis=-1, begin=column, end=column + 1)
        with bound(NETWORK, 'task', hard):
            return gluoncv_forward_backward(self, x)
    return forward_backward


def _with_our_sampler(gluoncv_init):
    def __init__(self, net, *args, **kwargs):
        """GluonCV's set-up; a network built before install() gets our sampler here, and the
        task keeps install()'s hard column."""
        gluoncv_init(self, net, *args, **kwargs)
        use_hard_sampler(net)
        keep_settings(self)
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


# Both tasks divide the R-CNN losses by the number of class targets >= 0, which is 0 when every
# second-stage row of the batch is ignored (an image covered by hard boxes): 0/0 again. Such a
# batch gets one class target of 0.5 (counted, never a class), which the task's patched
# classification loss drops.
_PHANTOM_CLASS = 0.5
_IGNORED_CLASS = -1.0  # GluonCV's class target of an ignored row


def _with_phantom_target(gluoncv_forward):
    def hybrid_forward(self, F, roi, samples, matches, gt_label, gt_box):
        """GluonCV's R-CNN targets; when every class target is -1, the first becomes 0.5.

        The patched tasks' classification loss gives that element weight 0: the R-CNN losses are
        0 for such a batch (not NaN) and unchanged for every other batch.
        """
        cls_target, *rest = gluoncv_forward(self, F, roi, samples, matches, gt_label, gt_box)
        flat = F.reshape(cls_target, shape=(-1,))
        first = F.concat(F.ones_like(F.slice_axis(flat, axis=0, begin=0, end=1)),
                         F.zeros_like(F.slice_axis(flat, axis=0, begin=1, end=None)), dim=0)
        empty = F.sum(flat >= 0) == 0
        shift = F.broadcast_mul(first, empty) * (_PHANTOM_CLASS - _IGNORED_CLASS)
        return (cls_target + F.reshape_like(shift, cls_target), *rest)
    return hybrid_forward


class _WithoutPhantomClass:
    """A classification loss that gives the class target :func:`_with_phantom_target` adds
    weight 0."""

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, pred, label, sample_weight, *args, **kwargs):
        keep = label != _PHANTOM_CLASS
        if sample_weight.ndim > keep.ndim:  # the tasks pass (B, N, 1) weights for (B, N) labels
            keep = keep.reshape(keep.shape + (1,) * (sample_weight.ndim - keep.ndim))
        return self.loss(pred, label, sample_weight * keep, *args, **kwargs)


def _guard_cls_loss(task):
    if not isinstance(task.rcnn_cls_loss, _WithoutPhantomClass):
        task.rcnn_cls_loss = _WithoutPhantomClass(task.rcnn_cls_loss)


def _with_our_faster_losses(gluoncv_init):
    init = _with_our_sampler(gluoncv_init)

    def __init__(self, net, *args, **kwargs):
        """GluonCV's set-up, our sampler, and R-CNN losses that are 0 without a sampled row."""
        init(self, net, *args, **kwargs)
        _guard_cls_loss(self)
    return __init__


def _with_our_mask_loss(gluoncv_init):
    init = _with_our_sampler(gluoncv_init)

    def __init__(self, net, *args, **kwargs):
        """GluonCV's set-up, our sampler, and a mask loss that is 0 without positive RoIs
        (the R-CNN losses too without a sampled row)."""
        init(self, net, *args, **kwargs)
        if not isinstance(self.rcnn_mask_loss, _WithoutPhantom):
            self.rcnn_mask_loss = _WithoutPhantom(self.rcnn_mask_loss)
        _guard_cls_loss(self)
    return __init__


# --------------------------------------------------------------------------- metrics
def _metric_get(self):
    """GluonCV's value; 0.0 instead of NaN (0/0) over an interval without positive boxes."""
    if self.num_inst == 0:
        return self.name, 0.0
    return mx.metric.EvalMetric.get(self)


# --------------------------------------------------------------------------- what install() patches
_PATCHES = (
    (_FasterTransform, '__init__',
     recording_num_sample(keeping_settings(_GLUONCV['faster_transform_init']))),
    (_FasterTransform, '__call__', faster_call),
    (_FasterTransform, '_target_generator', property(rcnn_target_generator)),
    (_FasterTransform, '__reduce_ex__', _reduce_gluoncv_transform),
    (_MaskTransform, '__init__',
     recording_num_sample(keeping_settings(_GLUONCV['mask_transform_init']))),
    (_MaskTransform, '__call__', mask_call),
    (_MaskTransform, '_target_generator', property(rcnn_target_generator)),
    (_MaskTransform, '__reduce_ex__', _reduce_gluoncv_transform),
    (_rpn_target, 'RPNTargetGenerator', RPNTargetGenerator),
    (_rpn_target, 'RPNTargetSampler', RPNTargetSampler),
    (_faster, 'RCNNTargetSampler', _installed_rcnn_sampler),
    (_FasterRCNN, 'forward', _network_forward),
    (_FasterRCNN, 'hybrid_forward', with_ohem_call(_with_hard_input(_GLUONCV['faster_forward']))),
    (_MaskRCNN, 'hybrid_forward', _with_hard_input(_GLUONCV['mask_forward'])),
    (_faster_task.ForwardBackwardTask, '__init__',
     _with_our_faster_losses(_GLUONCV['faster_task_init'])),
    (_faster_task.ForwardBackwardTask, 'forward_backward',
     with_rpn_ohem(_with_task_flags(_GLUONCV['faster_task']))),
    (_mask_task.ForwardBackwardTask, '__init__', _with_our_mask_loss(_GLUONCV['mask_task_init'])),
    (_MaskTargetGenerator, 'hybrid_forward', _with_phantom_weight(_GLUONCV['mask_targets'])),
    (_RCNNTargetGenerator, 'hybrid_forward', _with_phantom_target(_GLUONCV['rcnn_targets'])),
    (_mask_task.ForwardBackwardTask, 'forward_backward',
     with_rpn_ohem(_with_task_flags(_GLUONCV['mask_task']))),
    (_metrics.RPNL1LossMetric, 'get', _metric_get),
    (_metrics.RCNNL1LossMetric, 'get', _metric_get),
)


def patches():
    """(owner, attribute, replacement) triples that install() applies for Faster/Mask R-CNN."""
    return _PATCHES
