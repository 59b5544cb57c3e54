"""The study's arms: what each does with the difficult (hard) boxes, in GluonCV's own pipeline.

Faster R-CNN (``rcnn``):

* ``include``: GluonCV stock. ``VOCDetection`` keeps difficult boxes and
  GluonCV's transform and network read only columns 0-4, so they are ordinary
  positives (label column 5 is carried along and never read).
* ``exclude``: the difficult rows are deleted from every training label before
  GluonCV's transform; those objects become background (what py-faster-rcnn
  and mmdetection's VOC configs effectively do). Stock GluonCV otherwise.
* ``flag``: ``samplers.gluoncv.install()`` in effect while the network,
  transform and training task are built and run: hard flags at the RPN
  targets (transform) and at the second-stage sampler (network), end to end.
* ``flag-rpn``: flags at the RPN only. ``install()`` has no RPN-only option
  (it always gives networks built under it our second-stage sampler), so this
  arm uses our explicit ``samplers.gluoncv.FasterRCNNTrainTransform`` (hard-flag
  RPN targets) with GluonCV's own network, second-stage sampler and task.

SSD (``ssd``):

* ``include``: GluonCV's ``SSDDefaultTrainTransform`` and ``gluoncv.loss.SSDMultiBoxLoss``.
* ``exclude``: the same with difficult rows deleted from the training labels.
* ``flag``: ``install()``: GluonCV's class names, our targets (anchors near a hard
  box ignored) and our loss (never mines ignored anchors).
* ``flag-gluoncv-loss``: our explicit ``samplers.gluoncv.SSDTrainTransform``
  targets with GluonCV's original loss, whose hard-negative mining can pick the
  ignored anchors and teach them as background.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import gluoncv
import numpy as np
from gluoncv.data.transforms.presets import rcnn as rcnn_presets
from gluoncv.data.transforms.presets import ssd as ssd_presets

import samplers.gluoncv as sg

HARD_COLUMN = 5  # VOCDetection's label column for ``difficult``
# GluonCV's own classes, taken before any install() can patch them.
_GLUONCV_SSD_LOSS = gluoncv.loss.SSDMultiBoxLoss


@dataclass(frozen=True)
class Arm:
    """One way of training a detector on data with hard boxes.

    ``labels``: 'keep' or 'drop' (delete difficult rows from training labels);
    ``installed``: run under ``samplers.gluoncv.install()``; ``transform``:
    'gluoncv' (GluonCV's class, patched if installed) or 'ours' (the explicit
    hard-flag-aware class); ``loss`` (SSD): 'gluoncv' (GluonCV's original) or
    'installed' (whatever ``gluoncv.loss.SSDMultiBoxLoss`` is at the time).
    """
    name: str
    detector: str
    labels: str = 'keep'
    installed: bool = False
    transform: str = 'gluoncv'
    loss: str = 'gluoncv'
    summary: str = ''

    @contextlib.contextmanager
    def context(self):
        """The arm's GluonCV: ``install()`` for the duration when the arm asks for it."""
        if not self.installed:
            yield
            return
        sg.install()
        try:
            yield
        finally:
            sg.uninstall()

    def training_label(self, img, label):
        """The label the arm trains on (a dataset transform applied before GluonCV's)."""
        if self.labels == 'drop':
            label = label[label[:, HARD_COLUMN] == 0]
        return img, label

    def train_transform(self, net, anchors=None, shape=(256, 320), short=256, max_size=320):
        """The arm's GluonCV training transform for ``net`` (call inside :meth:`context`)."""
        if self.detector == 'rcnn':
            cls = (sg.FasterRCNNTrainTransform if self.transform == 'ours'
                   else rcnn_presets.FasterRCNNDefaultTrainTransform)
            return cls(short, max_size, net, ashape=net.ashape, multi_stage=False)
        cls = sg.SSDTrainTransform if self.transform == 'ours' \
            else ssd_presets.SSDDefaultTrainTransform
        return cls(shape[1], shape[0], anchors)

    def ssd_loss(self):
        """The arm's SSD loss (call inside :meth:`context`)."""
        return _GLUONCV_SSD_LOSS() if self.loss == 'gluoncv' else gluoncv.loss.SSDMultiBoxLoss()


RCNN_ARMS = (
    Arm('include', 'rcnn', summary='GluonCV stock: difficult boxes are positives'),
    Arm('exclude', 'rcnn', labels='drop', summary='difficult boxes deleted: background'),
    Arm('flag', 'rcnn', installed=True,
        summary='install(): hard flags at the RPN and the second stage'),
    Arm('flag-rpn', 'rcnn', transform='ours',
        summary="our RPN targets, GluonCV's second-stage sampler"),
)
SSD_ARMS = (
    Arm('include', 'ssd', summary="GluonCV stock targets and loss"),
    Arm('exclude', 'ssd', labels='drop', summary='difficult boxes deleted: background'),
    Arm('flag', 'ssd', installed=True, loss='installed',
        summary='install(): our targets and loss'),
    Arm('flag-gluoncv-loss', 'ssd', transform='ours',
        summary="our targets, GluonCV's loss (mines ignored anchors)"),
)
ARMS = {'rcnn': RCNN_ARMS, 'ssd': SSD_ARMS}


def select(detector, names=None):
    """The arms of ``detector`` named in ``names`` (all by default), in the study's order."""
    if detector not in ARMS:
        raise ValueError('detector must be one of {}, got {!r}'.format(sorted(ARMS), detector))
    known = [arm.name for arm in ARMS[detector]]
    if names is None:
        return ARMS[detector]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError('arms {} unknown for {}; its arms are {}'.format(unknown, detector,
                                                                          known))
    return tuple(arm for arm in ARMS[detector] if arm.name in names)


def has_normal_box(label):
    """Whether a (M, 6) label has a box that is not difficult (the images every arm trains on)."""
    label = np.asarray(label).reshape(-1, 6)
    return bool((label[:, HARD_COLUMN] == 0).any())
