"""Pieces every GluonCV integration shares: the hard column, the flags of the call in flight."""
from __future__ import annotations

import contextlib
import copy
import threading

import numpy as np

from .._arrays import to_numpy
from ..checks import check_int, hard_flags as read_hard_flags

#: Label column read as the hard flag by default (VOC ``difficult`` in GluonCV's datasets).
HARD_COLUMN = 5
#: Values of the hard column: a hard box (VOC ``difficult``; the IoU rule) and a crowd region
#: (COCO ``iscrowd``; the IoF rule). 0 is a normal box, -1 a padding row.
HARD, CROWD = 1, 2
#: Default IoF with a crowd region from which an anchor or proposal is ignored (Detectron's).
CROWD_IOF_THRESH = 0.7

# Flags of the label a transform is working on, for the duration of that call and in that
# thread only: GluonCV's transforms call their target generators with the boxes alone.
PENDING = threading.local()

# Hard flags of the R-CNN network call in flight, for that call and that thread only: ``task``
# (B, M, 1) NDArray from a ForwardBackwardTask, ``hard`` (B, M) NDArray or Symbol for the sampler.
NETWORK = threading.local()


@contextlib.contextmanager
def bound(local, name, value):
    """``local.<name>`` is ``value`` inside the ``with`` block, then its previous value again.

    ``local`` is a ``threading.local``, so the value is seen only by this thread; nested
    blocks restore the outer block's value.
    """
    outer = getattr(local, name, None)
    setattr(local, name, value)
    try:
        yield
    finally:
        setattr(local, name, outer)


class _Installed:  # process-wide (not thread-local): every thread sees install()'s settings
    hard_column = HARD_COLUMN
    rpn_options = {}   # keyword arguments for our RPN target generator
    rcnn_options = {}  # hard options for our second-stage sampler
    hard_min_size = None  # boxes smaller than this (after the resize) are hard; SSD reads it here
    coco_crowd = True  # COCO training datasets give crowd regions as hard-column value 2
    rpn_ohem = False  # the tasks train the hardest labelled anchors (patches_rpn_ohem)
    rcnn_ohem = None  # second-stage OHEM: None (off) or its options (patches_ohem)

    def reset(self):
        self.hard_column, self.rpn_options, self.rcnn_options = HARD_COLUMN, {}, {}
        self.hard_min_size = None
        self.coco_crowd = True
        self.rpn_ohem = False
        self.rcnn_ohem = None


INSTALLED = _Installed()

#: Instance attribute where an object built under install() keeps that install()'s settings
#: (a copy of :data:`INSTALLED`; install() replaces its values, never changes them in place).
SETTINGS = '_samplers_settings'


def keep_settings(obj):
    """``obj`` keeps install()'s current settings, whatever a later install() sets."""
    obj.__dict__[SETTINGS] = copy.copy(INSTALLED)


def settings_of(obj):
    """install()'s settings for ``obj``: those it kept when it was built under install()
    (:func:`keep_settings`), else, for an object built before install(), the current ones."""
    return obj.__dict__.get(SETTINGS, INSTALLED)


def keeping_settings(gluoncv_init):
    """GluonCV's ``__init__`` after which the new object keeps install()'s settings."""
    def __init__(self, *args, **kwargs):
        """GluonCV's set-up; the object keeps the settings of the install() in effect."""
        gluoncv_init(self, *args, **kwargs)
        keep_settings(self)
    return __init__


def check_hard_column(hard_column):
    if hard_column is None:
        return None
    return check_int('hard_column', hard_column, minimum=5)


def hard_column_of(transform):
    """Ours carry their own ``hard_column``; patched GluonCV transforms use install()'s
    (:func:`settings_of`)."""
    return transform.__dict__.get('_hard_column', settings_of(transform).hard_column)


def _hard_column(label, hard_column):
    """Column ``hard_column`` of ``label`` (M,), checked to hold -1/0/1/2; None without it."""
    if hard_column is None:
        return None
    label = to_numpy(label)
    if label.ndim != 2 or label.shape[1] <= hard_column:
        return None
    column = label[:, hard_column]
    name = 'label column {} (hard_column)'.format(hard_column)
    check_hard_values(name, column, '. If that column means something else (a mixup weight on '
                                    'a dataset without flags), use hard_column=None')
    read_hard_flags(column > 0, label.shape[0], against='label {}'.format(label.shape),
                    name=name)
    return column


def check_hard_values(name, values, hint=''):
    """Raise ``ValueError`` naming ``name`` unless numpy ``values`` hold only hard-column values:
    0 normal, :data:`HARD` 1, :data:`CROWD` 2, -1 a padding row (NaN is none of them)."""
    allowed = np.isin(values, (-1, 0, HARD, CROWD))
    if not allowed.all():
        raise ValueError(
            '{} must hold 0/1 flags ({} marks a crowd region, -1 a padding row), got values {}; '
            'hard flags are 0/1 such as VOC difficult{}'
            .format(name, CROWD, np.unique(values[~allowed])[:8].tolist(), hint))


def hard_column_flags(label, hard_column):
    """Column ``hard_column`` of ``label`` as (M,) float32 0/1 flags, crowd regions included
    (for targets with one hard rule, such as SSD's); None if there is no such column.

    Values: 0 normal, 1 hard, 2 crowd region (hard too), -1 a padding row (not hard); any
    other value raises ``ValueError``.
    """
    column = _hard_column(label, hard_column)
    return None if column is None else (column > 0).astype(np.float32)


def label_flags(label, hard_column):
    """``(hard, crowd)``: column ``hard_column`` of ``label`` as two (M,) float32 0/1 flags,
    value 1 (hard: the IoU rule) and value 2 (crowd region: the IoF rule); ``(None, None)``
    if there is no such column; ``crowd`` is None when no row is a crowd region. Other values
    as :func:`hard_column_flags`."""
    column = _hard_column(label, hard_column)
    if column is None:
        return None, None
    crowd = column == CROWD
    return (column == HARD).astype(np.float32), crowd.astype(np.float32) if crowd.any() else None


#: Instance attribute where our transforms cache their target generator (GluonCV's own
#: cache attribute is left alone, so uninstall() brings GluonCV's generator back).
CACHE = '_samplers_target_generator'
#: Instance attribute where the R-CNN transforms cache numpy anchors per image size.
ANCHOR_CACHE = '_samplers_anchors'


def pickle_state(transform):
    """A transform's instance dict to pickle: without our caches (rebuilt on use) and kept
    settings (the caller writes what the copy needs into ``_hard_column`` / ``_kwargs``)."""
    state = dict(transform.__dict__)
    state.pop(CACHE, None)
    state.pop(ANCHOR_CACHE, None)
    state.pop(SETTINGS, None)
    return state


def rebuild(cls, state):
    """Unpickle a transform of class ``cls`` from ``state`` without running its constructor."""
    transform = cls.__new__(cls)
    transform.__dict__.update(state)
    return transform
