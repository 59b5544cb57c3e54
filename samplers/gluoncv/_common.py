"""Pieces every GluonCV integration shares: the hard column, the flags of the label in flight."""
from __future__ import annotations

import threading

import numpy as np

from ..backend import to_numpy
from ..checks import check_int, hard_flags as read_hard_flags

#: Label column read as the hard flag by default (VOC ``difficult`` in GluonCV's datasets).
HARD_COLUMN = 5

# Flags of the label a transform is working on, for the duration of that call and in that
# thread only: GluonCV's transforms call their target generators with the boxes alone.
PENDING = threading.local()


class _Installed:  # process-wide (not thread-local): every thread sees install()'s settings
    hard_column = HARD_COLUMN
    rpn_options = {}   # keyword arguments for our RPN target generator
    rcnn_options = {}  # hard options for our second-stage sampler

    def reset(self):
        self.hard_column, self.rpn_options, self.rcnn_options = HARD_COLUMN, {}, {}


INSTALLED = _Installed()


def check_hard_column(hard_column):
    if hard_column is None:
        return None
    return check_int('hard_column', hard_column, minimum=5)


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


def pickle_state(transform):
    """A transform's instance dict to pickle: without our caches (rebuilt on use)."""
    state = dict(transform.__dict__)
    state.pop(CACHE, None)
    state.pop('_samplers_anchors', None)  # numpy anchors per image size (rcnn.py), rebuilt on use
    return state
