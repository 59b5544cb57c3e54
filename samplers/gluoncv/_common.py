"""Pieces every GluonCV integration shares: the hard column, the flags of the call in flight."""
from __future__ import annotations

import contextlib
import copy
import threading

import numpy as np

from ..backend import to_numpy
from ..checks import check_int, hard_flags as read_hard_flags

#: Label column read as the hard flag by default (VOC ``difficult`` in GluonCV's datasets).
HARD_COLUMN = 5

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

    def reset(self):
        self.hard_column, self.rpn_options, self.rcnn_options = HARD_COLUMN, {}, {}
        self.hard_min_size = None


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


def hard_flags(label, hard_column):
    """Column ``hard_column`` of ``label`` as (M,) float32 0/1 flags; None if there is no such
    column. Read by :func:`samplers.checks.hard_flags` (-1, a padding row's value, is not hard)."""
    if hard_column is None:
        return None
    label = to_numpy(label)
    if label.ndim != 2 or label.shape[1] <= hard_column:
        return None
    flags = read_hard_flags(
        label[:, hard_column], label.shape[0], against='label {}'.format(label.shape),
        name='label column {} (hard_column)'.format(hard_column),
        hint='; hard flags are 0/1 such as VOC difficult. If that column means something else '
             '(COCO with --mixup puts the mixup weight there), use hard_column=None')
    return flags.astype(np.float32)


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
