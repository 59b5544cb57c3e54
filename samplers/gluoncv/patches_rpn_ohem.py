"""RPN OHEM in GluonCV's ``ForwardBackwardTask``: :func:`samplers.gluoncv.install` with
``rpn_ohem=True``.

* **Labelling:** the training transforms label every anchor by the RPN rule, hard flags
  included, without the random subsample (:class:`samplers.rpn.RPNTargetGenerator` with
  ``subsample=False``): positives 1, negatives 0, the rest -1 (GluonCV's code).
* **Selection:** each step ranks the labelled anchors of each image by the task's own RPN
  classification loss, computed without gradient from the network's RPN score, and keeps
  the ``num_sample`` hardest (:func:`samplers.rpn_ohem.hardest_anchors`): the
  ``num_sample`` of the network's training transform (256 by default,
  :func:`recording_num_sample`).
* **Training:** the classification loss is on the chosen anchors, the box loss on the
  positives among them. GluonCV's step scales each RPN loss by ``size / #labelled``; the
  wrapped losses multiply by ``#labelled / #chosen``, so the factor is GluonCV's with the
  chosen anchors as the labelled ones (the scale of GluonCV's task with ``num_sample``
  labelled anchors per image).
* **Metrics:** the step's RPN accuracy and L1 metrics stay GluonCV's, over its targets: every
  labelled anchor (the accuracy of the hardest anchors alone would be near 0 by
  construction).

How: :func:`with_rpn_ohem` wraps the patched ``forward_backward``; during a step of a task
built under ``install(rpn_ohem=True)`` it gives the task's ``rpn_cls_loss`` and
``rpn_box_loss`` (wrapped once, :class:`HardAnchorClassLoss` and
:class:`HardAnchorBoxLoss`) that step's selection, for that thread only (GluonCV's
``Parallel`` runs one task in several threads). Every array stays on the step's context.
Own training loops use :func:`rpn_hard_targets`.
"""
from __future__ import annotations

import threading

import mxnet as mx
from mxnet import autograd, gluon

from .. import backend
from ..rpn_ohem import hardest_anchors
from ._common import bound, settings_of

__all__ = ['NUM_SAMPLE', 'rpn_hard_targets', 'with_rpn_ohem', 'recording_num_sample',
           'HardAnchorClassLoss', 'HardAnchorBoxLoss']

#: Anchors trained per image when the network's training transform did not say: the
#: ``num_sample`` default of GluonCV's transforms and of :class:`samplers.rpn.RPNTargetGenerator`.
NUM_SAMPLE = 256
# On a network: the num_sample of the last training transform built for it under rpn_ohem.
_NUM_SAMPLE_OF_NET = '_samplers_rpn_num_sample'
_IGNORED = -1.0  # GluonCV's RPN class target of an ignored anchor

# The selection of the step in flight, for that step and that thread only.
_STEP = threading.local()


def anchor_losses(loss, score, cls_targets):
    """(B, N) per-anchor values of the Gluon loss ``loss`` for RPN ``score`` (B, N) and GluonCV's
    class targets (B, N), without gradient: one row per anchor, so the loss's mean over the
    non-batch axes is the anchor's own value."""
    with autograd.pause():
        flat = loss(score.detach().reshape((-1, 1)), cls_targets.reshape((-1, 1)))
        return flat.reshape(cls_targets.shape)


def chosen_anchors(loss, score, cls_targets, num_sample=NUM_SAMPLE):
    """(B, N) float32 0/1: the ``num_sample`` hardest labelled anchors per image, ranked by
    :func:`anchor_losses` (GluonCV's code: 1 positive, 0 negative, -1 ignored)."""
    with autograd.pause():
        labels = backend.ND.labels(cls_targets > 0, cls_targets == 0)
        return hardest_anchors(anchor_losses(loss, score, cls_targets), labels, num_sample)


def rpn_hard_targets(score, cls_targets, box_masks, num_sample=NUM_SAMPLE, loss=None):
    """RPN OHEM for an own training loop: GluonCV's targets with the unchosen anchors ignored.

    Parameters
    ----------
    score : (B, N) NDArray, the network's RPN score (``rpn_score.squeeze(axis=-1)``)
    cls_targets : (B, N) NDArray, GluonCV's RPN class targets of every labelled anchor
        (a transform built with ``subsample=False``)
    box_masks : (B, N, 4) NDArray, GluonCV's RPN box masks
    num_sample : int, anchors trained per image (default 256)
    loss : Gluon loss ranking the anchors; default GluonCV's RPN classification loss,
        ``SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)``

    Returns ``(cls_targets, box_masks)`` of the inputs' shapes and context: -1 and zero
    masks except at the chosen anchors (:func:`chosen_anchors`). GluonCV's loss
    expressions (normalised by ``(cls_targets >= 0).sum()``) then train exactly those.
    """
    if loss is None:
        loss = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
    with autograd.pause():
        chosen = chosen_anchors(loss, score, cls_targets, num_sample)
        return (mx.nd.where(chosen > 0, cls_targets, mx.nd.ones_like(cls_targets) * _IGNORED),
                box_masks * chosen.expand_dims(-1))


class _Step:
    __slots__ = ('num_sample', 'chosen', 'scale')

    def __init__(self, num_sample):
        self.num_sample = num_sample
        self.chosen = None  # (B, N) float32 0/1, set by the classification loss
        self.scale = None  # (1,) #labelled / #chosen over the batch


class HardAnchorClassLoss:
    """The task's RPN classification loss, on the hardest labelled anchors during a
    :func:`with_rpn_ohem` step (and unchanged outside one)."""

    def __init__(self, loss):
        self.loss = loss.loss if isinstance(loss, HardAnchorClassLoss) else loss

    def __call__(self, pred, label, sample_weight=None, *args, **kwargs):
        step = getattr(_STEP, 'step', None)
        if step is None:
            return self.loss(pred, label, sample_weight, *args, **kwargs)
        with autograd.pause():
            step.chosen = chosen_anchors(self.loss, pred, label, step.num_sample)
            weight = step.chosen if sample_weight is None else sample_weight * step.chosen
            step.scale = (label >= 0).sum() / step.chosen.sum()
        return self.loss(pred, label, weight, *args, **kwargs) * step.scale


class HardAnchorBoxLoss:
    """The task's RPN box loss, on the positives among the step's chosen anchors during a
    :func:`with_rpn_ohem` step (and unchanged outside one)."""

    def __init__(self, loss):
        self.loss = loss.loss if isinstance(loss, HardAnchorBoxLoss) else loss

    def __call__(self, pred, label, sample_weight=None, *args, **kwargs):
        step = getattr(_STEP, 'step', None)
        if step is None or step.chosen is None:
            return self.loss(pred, label, sample_weight, *args, **kwargs)
        with autograd.pause():
            weight = sample_weight * step.chosen.expand_dims(-1)
        return self.loss(pred, label, weight, *args, **kwargs) * step.scale


def _wrap_losses(task):
    if not isinstance(task.rpn_cls_loss, HardAnchorClassLoss):
        task.rpn_cls_loss = HardAnchorClassLoss(task.rpn_cls_loss)
    if not isinstance(task.rpn_box_loss, HardAnchorBoxLoss):
        task.rpn_box_loss = HardAnchorBoxLoss(task.rpn_box_loss)


def recording_num_sample(transform_init):
    """A patched GluonCV R-CNN transform's ``__init__`` that, under ``install(rpn_ohem=True)``,
    leaves its ``num_sample`` on its network: the task trains that many anchors per image."""
    def __init__(self, *args, **kwargs):
        """GluonCV's set-up; under rpn_ohem its ``num_sample`` is recorded on ``net``."""
        transform_init(self, *args, **kwargs)
        # GluonCV's R-CNN training transforms take (short, max_size, net, ...).
        net = kwargs['net'] if 'net' in kwargs else args[2] if len(args) > 2 else None
        if net is not None and getattr(settings_of(self), 'rpn_ohem', False):
            net.__dict__[_NUM_SAMPLE_OF_NET] = int(self._num_sample)
    return __init__


def num_sample_of(net):
    """Anchors a task over ``net`` trains per image under rpn_ohem: its training transform's
    ``num_sample`` (:func:`recording_num_sample`), else :data:`NUM_SAMPLE`."""
    return getattr(net, _NUM_SAMPLE_OF_NET, None) or NUM_SAMPLE


def with_rpn_ohem(forward_backward):
    """``forward_backward`` (a task's step) training the hardest anchors when the task was built
    under ``install(rpn_ohem=True)``; GluonCV's step otherwise."""
    def step(self, x):
        """The step; under ``install(rpn_ohem=True)``, RPN OHEM (:mod:`.patches_rpn_ohem`)."""
        if not getattr(settings_of(self), 'rpn_ohem', False):
            return forward_backward(self, x)
        _wrap_losses(self)
        with bound(_STEP, 'step', _Step(num_sample_of(self.net))):
            return forward_backward(self, x)
    return step
