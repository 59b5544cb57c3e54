"""GluonCV drop-in: hard-flag-aware targets in GluonCV's detection training.

Needs the ``gluoncv`` extra. Two ways in, both giving GluonCV's outputs:

* explicit classes, constructed where a training script constructs GluonCV's
  (:class:`FasterRCNNTrainTransform`, :class:`RCNNTargetSampler`, ...), with
  GluonCV's types so they swap into GluonCV's own transforms and networks;
* :func:`install` / :func:`uninstall`: patch GluonCV itself, so an unchanged
  training script gets the same behaviour; :func:`uninstall` puts back
  GluonCV's original objects. Importing :mod:`samplers` (or this package)
  patches nothing.

Modules: :mod:`.wrappers` (target generators, samplers, loss), :mod:`.transforms`
(training transforms), one patch list per detector family,
:mod:`.patches_rcnn` and :mod:`.patches_ssd`, and one for the COCO datasets,
:mod:`.patches_datasets`, each giving what :func:`install` patches in its ``patches()``.
:mod:`.lst` writes im2rec ``.lst`` files with a hard column from VOC XML or COCO JSON
(``python -m samplers.gluoncv.lst``).
"""
from __future__ import annotations

import threading

from . import patches_datasets as _patches_datasets
from . import patches_rcnn as _patches_rcnn
from . import patches_ssd as _patches_ssd
from ..checks import check_bool, check_min_size, check_ratio
from ..options import HardRule
from ._common import CROWD_IOF_THRESH, HARD_COLUMN, INSTALLED, check_hard_column
from .patches_ohem import OHEM_DEFAULTS, OHEMTargetSampler, check_ohem, use_ohem_sampler
from .transforms import FasterRCNNTrainTransform, MaskRCNNTrainTransform, SSDTrainTransform
from .wrappers import (RCNNTargetSampler, RPNTargetGenerator, RPNTargetSampler,
                       SSDMultiBoxLoss, SSDTargetGenerator, use_hard_sampler)

__all__ = ['FasterRCNNTrainTransform', 'MaskRCNNTrainTransform', 'RPNTargetGenerator',
           'RPNTargetSampler', 'RCNNTargetSampler', 'use_hard_sampler', 'OHEMTargetSampler',
           'use_ohem_sampler',
           'SSDTrainTransform', 'SSDMultiBoxLoss', 'SSDTargetGenerator',
           'install', 'uninstall', 'is_installed', 'HARD_COLUMN']

# Each has patches(): (owner, name, replacement) triples.
_PARTS = (_patches_rcnn, _patches_ssd, _patches_datasets)
_MISSING = object()
_LOCK = threading.Lock()
_SAVED = {}  # (owner, name) -> the owner's own attribute before install, or _MISSING


def _patches():
    return tuple(p for part in _PARTS for p in part.patches())


def install(hard_column: int | None = HARD_COLUMN, allow_low_quality_matches: bool = False,
            hard_iof_thresh: float | None = None, rcnn_hard_iou_thresh: float | None = None,
            rcnn_hard_iof_thresh: float | None = None,
            hard_min_size: float | None = None, coco_crowd: bool = True,
            crowd_iof_thresh: float = CROWD_IOF_THRESH, rpn_ohem: bool = False,
            rcnn_ohem: bool = False,
            ohem_nms_thresh: float | None = 0.7, ohem_mode: str = 'paper',
            ohem_top_n: int | None = OHEM_DEFAULTS['top_n']) -> None:
    """Make GluonCV's R-CNN (both stages) and SSD training hard-flag-aware.

    Parameters
    ----------
    hard_column : int (>= 5) or None, default 5
        Label column read as the hard flags: 1 a hard box (VOC ``difficult``),
        2 a crowd region (COCO ``iscrowd``); None reads none (use it when
        column 5 is something else, such as ``--mixup``'s weight on a dataset
        without flags).
    allow_low_quality_matches, hard_iof_thresh : default False, None
        Options of the RPN target generator (:class:`samplers.rpn.RPNTargetGenerator`).
    rcnn_hard_iou_thresh, rcnn_hard_iof_thresh : float or None, default None
        The second-stage sampler's ``hard_iou_thresh`` / ``hard_iof_thresh``
        (:class:`samplers.rcnn.RCNNTargetSampler`); None keeps its default.
    hard_min_size : positive float or None, default None
        A box whose shorter side, after the training transform's resize, is
        below this many pixels is hard too (flag OR too small): in the RPN
        targets, in the second stage (the R-CNN transforms write the flag into
        the returned label's column ``hard_column``) and in SSD's targets.
        None: no size rule.
    coco_crowd : bool, default True
        GluonCV's COCO training datasets give their crowd regions as hard
        column value 2 (:mod:`samplers.gluoncv.patches_datasets`); False
        leaves GluonCV's datasets alone.
    crowd_iof_thresh : float in (0, 1], default 0.7
        An anchor (RPN) or proposal (second stage) at least this share
        inside a crowd region is ignored, never a negative.
    rpn_ohem : bool, default False
        RPN OHEM: the transforms label every anchor (no random subsample) and
        the tasks train, per image, the transform's ``num_sample`` (256)
        labelled anchors with the largest RPN classification loss
        (:mod:`samplers.gluoncv.patches_rpn_ohem`).
    rcnn_ohem : bool, default False
        Second-stage OHEM (:mod:`samplers.gluoncv.patches_ohem`): networks built from now on
        (and those a ``ForwardBackwardTask`` gets) train the hardest rows their own head
        finds, ``num_sample`` per image (:mod:`samplers.rcnn_ohem`).
    ohem_nms_thresh : float in (0, 1] or None, default 0.7
        Its NMS on the candidates in loss order; None: none.
    ohem_mode : 'paper' or 'balanced', default 'paper'
        The hardest rows (positives capped at ``pos_ratio``), or mmdetection's positives and
        negatives ranked apart within ``pos_ratio``.
    ohem_top_n : int >= 1 or None, default 512
        Score only this many proposals of highest RPN score per image (at least
        ``num_sample``), plus the ground truth; None: every proposal.

    Patches, in place, what ``patches()`` of each family module lists; for
    :mod:`samplers.gluoncv.patches_rcnn`:

    * GluonCV's ``FasterRCNNDefaultTrainTransform`` and
      ``MaskRCNNDefaultTrainTransform``: the label's hard column becomes the
      RPN targets' hard flags; they pickle as our explicit classes (spawned
      workers get the flags without patching);
    * ``RPNTargetGenerator`` / ``RPNTargetSampler`` of GluonCV's
      ``rpn_target``: ours with GluonCV's types;
    * ``FasterRCNN`` (and ``MaskRCNN``): networks built from now on get our
      :class:`RCNNTargetSampler`; the training forward takes an optional
      fourth input ``gt_hard`` (B, M, 1);
    * both ``ForwardBackwardTask``: they pass label column ``hard_column``
      as ``gt_hard``, and give a network built earlier our sampler;
    * GluonCV's ``RPNL1LossMetric`` / ``RCNNL1LossMetric``: 0.0 instead of
      NaN over a logging interval without a positive box; Mask R-CNN's mask
      loss: 0 instead of NaN for a batch without a positive RoI; both tasks'
      R-CNN losses: 0 instead of NaN for a batch whose every second-stage row
      is ignored (``RCNNTargetGenerator``'s class targets and the tasks'
      classification loss).

    For SSD see :mod:`samplers.gluoncv.patches_ssd` (a crowd region is a
    hard box there); for the COCO datasets :mod:`samplers.gluoncv.patches_datasets`.

    Objects built before the call use the patched methods too. Calling it
    again only changes the settings for what is built afterwards: a transform,
    ``ForwardBackwardTask`` or network built under install() keeps that call's
    settings (``hard_column`` and the RPN and second-stage options), used or
    not; one built before any install() follows the install() in effect. Bad
    settings raise ``ValueError`` and patch nothing.
    """
    hard_column = check_hard_column(hard_column)
    hard_min_size = check_min_size('hard_min_size', hard_min_size)
    coco_crowd = check_bool('coco_crowd', coco_crowd)
    rpn_ohem = check_bool('rpn_ohem', rpn_ohem)
    # Checked under install()'s own names first, so that an error names the argument given.
    for name, value in (('hard_iof_thresh', hard_iof_thresh),
                        ('rcnn_hard_iou_thresh', rcnn_hard_iou_thresh),
                        ('rcnn_hard_iof_thresh', rcnn_hard_iof_thresh),
                        ('crowd_iof_thresh', crowd_iof_thresh)):
        if value is not None:
            check_ratio(name, value, low_open=True)
    rpn_options = dict(allow_low_quality_matches=allow_low_quality_matches,
                       hard=HardRule(iof_thresh=hard_iof_thresh, crowd_iof_thresh=crowd_iof_thresh,
                                     min_size=hard_min_size))
    if rpn_ohem:
        rpn_options['subsample'] = False
    rcnn_options = dict(hard=HardRule(iou_thresh=rcnn_hard_iou_thresh,
                                      iof_thresh=rcnn_hard_iof_thresh,
                                      crowd_iof_thresh=crowd_iof_thresh))
    RPNTargetGenerator(**rpn_options)  # bad settings fail here, before anything is patched
    RCNNTargetSampler(1, 1, 1, **rcnn_options)
    rcnn_ohem = check_ohem(rcnn_ohem, ohem_nms_thresh, ohem_mode, ohem_top_n)
    with _LOCK:
        if not _SAVED:
            for owner, name, new in _patches():
                _SAVED[(owner, name)] = vars(owner).get(name, _MISSING)
                setattr(owner, name, new)
        INSTALLED.hard_column = hard_column
        INSTALLED.rpn_options = rpn_options
        INSTALLED.rcnn_options = rcnn_options
        INSTALLED.hard_min_size = hard_min_size
        INSTALLED.coco_crowd = coco_crowd
        INSTALLED.rpn_ohem = rpn_ohem
        INSTALLED.rcnn_ohem = rcnn_ohem


def uninstall() -> None:
    """Put back every object :func:`install` replaced (the same objects); a no-op otherwise.

    Transforms keep working unchanged: ours cached its generator under its own
    attribute, so GluonCV's transform builds GluonCV's generator again.
    Networks keep the sampler they were built with; a hybridized network whose graph took
    the fourth input ``gt_hard`` builds GluonCV's graph again on its next call.
    """
    with _LOCK:
        for (owner, name), original in _SAVED.items():
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        _SAVED.clear()
        INSTALLED.reset()
        _patches_rcnn.clear_four_input_graphs()


def is_installed() -> bool:
    """Whether :func:`install` is in effect."""
    return bool(_SAVED)
