"""The study's arms: what each does with the difficult (hard) boxes, in GluonCV's own pipeline.

Faster R-CNN (``rcnn``):

* ``include``: GluonCV stock. ``VOCDetection`` keeps difficult boxes and
  GluonCV's transform and network read only columns 0-4, so they are ordinary
  positives (label column 5 is carried along and never read).
* ``exclude``: the difficult rows are deleted from every training label before
  GluonCV's transform; those objects become background (what py-faster-rcnn
  and mmdetection's VOC configs effectively do). Stock GluonCV otherwise.
* ``ours``: ``install(hard_column=None)``: our samplers in both stages, no
  flags read. The control: ``flag - ours`` is the flags' own effect, without
  the fixes to GluonCV's second-stage sampler that ``install()`` also brings.
* ``flag``: ``samplers.gluoncv.install()`` in effect while the network,
  transform and training task are built and run: hard flags at the RPN
  targets (transform) and at the second-stage sampler (network), end to end.
* ``ohem``: ``install(hard_column=None, rcnn_ohem=True)``: our samplers with
  OHEM at the second stage, no flags. ``exclude+ohem``: the same on labels
  without the difficult rows. ``flag+ohem``: ``install(rcnn_ohem=True)``.
  ``flag+rpn-ohem``: ``install(rpn_ohem=True)``. ``ohem-balanced`` (secondary, added
  after ``ohem - ours`` came out negative): ``ohem`` with mmdetection's variant,
  ``ohem_mode='balanced'`` (positives and negatives ranked apart within ``pos_ratio``).
  These need install() options that the OHEM work adds; with an install() that lacks
  them, the arms refuse to run with an error naming the missing option (:meth:`Arm.check`).
* ``flag-rpn`` (secondary): flags at the RPN only: our explicit
  ``samplers.gluoncv.FasterRCNNTrainTransform`` (hard-flag RPN targets) with
  GluonCV's own network, second-stage sampler and task. ``ours-rpn`` (secondary, added to
  tell where ``include - ours`` comes from): the same transform reading no flags
  (``hard_column=None``), so the only change from ``include`` is our RPN target code.

SSD (``ssd``):

* ``include``: GluonCV's ``SSDDefaultTrainTransform`` and ``gluoncv.loss.SSDMultiBoxLoss``.
* ``exclude``: the same with difficult rows deleted from the training labels.
* ``ours``: ``install(hard_column=None)``: our targets and loss, no flags (the control).
* ``flag``: ``install()``: GluonCV's class names, our targets (anchors near a hard
  box ignored) and our loss (never mines ignored anchors).
* ``flag-gluoncv-loss`` (secondary): our explicit ``samplers.gluoncv.SSDTrainTransform``
  targets with GluonCV's original loss, whose hard-negative mining can pick the
  ignored anchors and teach them as background.

The primary comparisons (:data:`PRIMARY`) were fixed before the runs; every
other comparison is secondary.
"""
from __future__ import annotations

import contextlib
import inspect
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
    ``installed``: run under ``samplers.gluoncv.install(**options)``, with
    ``options`` a tuple of (name, value) pairs; ``transform``: 'gluoncv'
    (GluonCV's class, patched if installed) or 'ours' (the explicit
    hard-flag-aware class), built with ``transform_options`` ((name, value) pairs);
    ``loss`` (SSD): 'gluoncv' (GluonCV's original) or
    'installed' (whatever ``gluoncv.loss.SSDMultiBoxLoss`` is at the time);
    ``primary``: the arm is in a primary comparison (ten seeds planned, else five).
    """
    name: str
    detector: str
    labels: str = 'keep'
    installed: bool = False
    options: tuple = ()
    transform: str = 'gluoncv'
    transform_options: tuple = ()
    loss: str = 'gluoncv'
    primary: bool = False
    summary: str = ''

    def missing_options(self):
        """The install() options the arm needs that this ``samplers.gluoncv.install`` lacks."""
        known = inspect.signature(sg.install).parameters
        return [name for name, _ in self.options if name not in known]

    def check(self):
        """Raise ValueError naming the install() option the arm needs if it is missing."""
        missing = self.missing_options()
        if missing:
            raise ValueError(
                'arm {!r} needs samplers.gluoncv.install({}), and this install() takes no {} '
                'option (it comes with the OHEM work; merge it first)'.format(
                    self.name, ', '.join('{}={!r}'.format(k, v) for k, v in self.options),
                    ', '.join(repr(m) for m in missing)))

    @contextlib.contextmanager
    def context(self):
        """The arm's GluonCV: ``install(**options)`` for the duration when the arm asks for it."""
        if not self.installed:
            yield
            return
        self.check()
        sg.install(**dict(self.options))
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
            return cls(short, max_size, net, ashape=net.ashape, multi_stage=False,
                       **dict(self.transform_options))
        cls = sg.SSDTrainTransform if self.transform == 'ours' \
            else ssd_presets.SSDDefaultTrainTransform
        return cls(shape[1], shape[0], anchors, **dict(self.transform_options))

    def ssd_loss(self):
        """The arm's SSD loss (call inside :meth:`context`)."""
        return _GLUONCV_SSD_LOSS() if self.loss == 'gluoncv' else gluoncv.loss.SSDMultiBoxLoss()


NO_FLAGS = (('hard_column', None),)
RCNN_ARMS = (
    Arm('include', 'rcnn', summary='GluonCV stock: difficult boxes are positives'),
    Arm('exclude', 'rcnn', labels='drop', primary=True,
        summary='difficult boxes deleted: background'),
    Arm('ours', 'rcnn', installed=True, options=NO_FLAGS, primary=True,
        summary='install(hard_column=None): our samplers, no flags (the control)'),
    Arm('flag', 'rcnn', installed=True, primary=True,
        summary='install(): hard flags at the RPN and the second stage'),
    Arm('ohem', 'rcnn', installed=True, options=NO_FLAGS + (('rcnn_ohem', True),), primary=True,
        summary='install(hard_column=None, rcnn_ohem=True): OHEM, no flags'),
    Arm('exclude+ohem', 'rcnn', labels='drop', installed=True,
        options=NO_FLAGS + (('rcnn_ohem', True),),
        summary='difficult boxes deleted, OHEM at the second stage'),
    Arm('flag+ohem', 'rcnn', installed=True, options=(('rcnn_ohem', True),), primary=True,
        summary='install(rcnn_ohem=True): flags and OHEM'),
    Arm('flag+rpn-ohem', 'rcnn', installed=True, options=(('rpn_ohem', True),),
        summary='install(rpn_ohem=True): flags, OHEM at the RPN'),
    Arm('ohem-balanced', 'rcnn', installed=True,
        options=NO_FLAGS + (('rcnn_ohem', True), ('ohem_mode', 'balanced')),
        summary="install(hard_column=None, rcnn_ohem=True, ohem_mode='balanced'): "
                "mmdetection's OHEM, no flags"),
    Arm('flag-rpn', 'rcnn', transform='ours',
        summary="our RPN targets, GluonCV's second-stage sampler"),
    Arm('ours-rpn', 'rcnn', transform='ours', transform_options=NO_FLAGS,
        summary="our RPN targets without flags, GluonCV's second-stage sampler"),
)
SSD_ARMS = (
    Arm('include', 'ssd', summary="GluonCV stock targets and loss"),
    Arm('exclude', 'ssd', labels='drop', primary=True,
        summary='difficult boxes deleted: background'),
    Arm('ours', 'ssd', installed=True, options=NO_FLAGS, loss='installed', primary=True,
        summary='install(hard_column=None): our targets and loss, no flags (the control)'),
    Arm('flag', 'ssd', installed=True, loss='installed', primary=True,
        summary='install(): our targets and loss'),
    Arm('flag-gluoncv-loss', 'ssd', transform='ours',
        summary="our targets, GluonCV's loss (mines ignored anchors)"),
)
ARMS = {'rcnn': RCNN_ARMS, 'ssd': SSD_ARMS}

#: The primary comparisons, (arm, against), per detector, stated before the runs. Each
#: detector's list is one family for the multiple-comparison correction (per data regime).
PRIMARY = {
    'rcnn': (('flag', 'ours'),        # the flags' own effect
             ('ohem', 'ours'),        # OHEM's effect
             ('flag+ohem', 'ohem'),   # the flags under OHEM
             ('flag', 'exclude')),    # flags against deleting the difficult boxes
    'ssd': (('flag', 'ours'), ('flag', 'exclude')),
}
#: Seeds planned per arm: primary arms ten, secondary ones five.
PLANNED_SEEDS = {True: 10, False: 5}


def select(detector, names=None):
    """The arms of ``detector`` named in ``names`` (all by default), in the study's order."""
    if detector not in ARMS:
        raise ValueError('detector must be one of {}, got {!r}'.format(sorted(ARMS), detector))
    known = [arm.name for arm in ARMS[detector]]
    if names is None:
        return ARMS[detector]
    names = list(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError('arms {} unknown for {}; its arms are {}'.format(unknown, detector,
                                                                          known))
    return tuple(arm for arm in ARMS[detector] if arm.name in names)


def runnable(detector, names=None):
    """``(arms, skipped)``: the arms of :func:`select` that this install() can run, and the
    names of those it cannot (their install() option is missing)."""
    chosen = select(detector, names)
    return (tuple(a for a in chosen if not a.missing_options()),
            [a.name for a in chosen if a.missing_options()])


def has_normal_box(label):
    """Whether a (M, 6) label has a box that is not difficult (the images every arm trains on)."""
    label = np.asarray(label).reshape(-1, 6)
    return bool((label[:, HARD_COLUMN] == 0).any())
