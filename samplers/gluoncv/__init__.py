"""GluonCV drop-in: hard-flag-aware targets in GluonCV's detection training.

Needs the ``gluoncv`` extra. Two ways in, both giving GluonCV's outputs:

* explicit classes, constructed where a training script constructs GluonCV's
  (:class:`FasterRCNNTrainTransform`, ...);
* :func:`install` / :func:`uninstall`: patch GluonCV itself, so an unchanged
  training script gets the same behaviour; :func:`uninstall` puts back
  GluonCV's original objects. Importing :mod:`samplers` (or this package)
  patches nothing.

One module per detector family (:mod:`.rcnn`), each listing what
:func:`install` patches in its ``patches()``.
"""
from __future__ import annotations

import threading

from . import rcnn as _rcnn_part
from . import ssd as _ssd_part
from ._common import HARD_COLUMN, INSTALLED, check_hard_column
from .rcnn import (FasterRCNNTrainTransform, GluonCVRPNTargetGenerator,  # noqa: F401
                   GluonCVRPNTargetSampler)
from .ssd import SSDMultiBoxLoss, SSDTargetGenerator, SSDTrainTransform  # noqa: F401

__all__ = ['FasterRCNNTrainTransform', 'GluonCVRPNTargetGenerator', 'GluonCVRPNTargetSampler',
           'SSDTrainTransform', 'SSDMultiBoxLoss', 'SSDTargetGenerator',
           'install', 'uninstall', 'is_installed', 'HARD_COLUMN']

_PARTS = (_rcnn_part, _ssd_part)  # each has patches(): (owner, name, replacement) triples
_MISSING = object()
_LOCK = threading.Lock()
_SAVED = {}  # (owner, name) -> the owner's own attribute before install, or _MISSING


def _patches():
    return tuple(p for part in _PARTS for p in part.patches())


def install(hard_column=HARD_COLUMN):
    """Make GluonCV's own Faster R-CNN transform and RPN target classes use this package.

    Patches, in place:

    * ``gluoncv.data.transforms.presets.rcnn.FasterRCNNDefaultTrainTransform``:
      its ``__call__`` passes label column ``hard_column`` (default 5; None
      for none) as hard flags, its ``_target_generator`` is a
      :class:`GluonCVRPNTargetGenerator`, and it pickles as a
      :class:`FasterRCNNTrainTransform` (so spawned DataLoader workers, which
      import an unpatched GluonCV, still get these targets; subclasses pickle
      as themselves, so in a spawned worker only those of
      :class:`FasterRCNNTrainTransform` keep the hard flags);
    * ``gluoncv.model_zoo.rcnn.rpn.rpn_target.RPNTargetGenerator`` and
      ``.RPNTargetSampler``: replaced by :class:`GluonCVRPNTargetGenerator`
      and :class:`GluonCVRPNTargetSampler` (GluonCV's constructors and types).

    Transforms built before the call are patched too (the methods live on the
    class). Calling it again only changes ``hard_column``. Forked workers
    inherit the patch; thread pools share it.
    """
    hard_column = check_hard_column(hard_column)
    with _LOCK:
        if not _SAVED:
            for owner, name, new in _patches():
                _SAVED[(owner, name)] = vars(owner).get(name, _MISSING)
                setattr(owner, name, new)
        INSTALLED.hard_column = hard_column


def uninstall():
    """Put back every object :func:`install` replaced (the same objects); a no-op otherwise.

    Transforms keep working unchanged: ours cached its generator under its own
    attribute, so GluonCV's transform builds GluonCV's generator again.
    """
    with _LOCK:
        for (owner, name), original in _SAVED.items():
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        _SAVED.clear()
        INSTALLED.hard_column = HARD_COLUMN


def is_installed():
    """Whether :func:`install` is in effect."""
    return bool(_SAVED)
