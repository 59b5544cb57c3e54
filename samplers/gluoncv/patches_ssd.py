"""What :func:`samplers.gluoncv.install` patches in GluonCV's SSD training.

GluonCV's ``SSDDefaultTrainTransform`` gets the methods of
:class:`.transforms.SSDTrainTransform` (hard-flag-aware targets) and pickles as
that class; ``SSDTargetGenerator`` of ``gluoncv.model_zoo.ssd.target`` and
``gluoncv.loss.SSDMultiBoxLoss`` become ours (:mod:`.wrappers`), which never
mine ignored anchors. The rules are those of :mod:`samplers.ssd`.
"""
from __future__ import annotations

from gluoncv import loss as _gluoncv_loss
from gluoncv.data.transforms.presets import ssd as _ssd_presets
from gluoncv.model_zoo.ssd import target as _ssd_target

from ..options import HardRule, fold
from ._common import hard_column_of, keeping_settings, pickle_state, rebuild, settings_of
from .transforms import SSDTrainTransform, ssd_call, ssd_target_generator
from .wrappers import SSDMultiBoxLoss, SSDTargetGenerator

_SSDTransform = _ssd_presets.SSDDefaultTrainTransform
_GLUONCV_SSD_INIT = _SSDTransform.__init__  # taken at import, before any install()


def _reduce_gluoncv_transform(self, protocol):
    """Pickle a patched GluonCV transform as an SSDTrainTransform with install()'s hard column
    and ``hard_min_size``.

    A spawned DataLoader worker imports an unpatched GluonCV; the object it
    unpickles brings the hard-flag-aware targets itself. Subclasses pickle as
    themselves, the default way.
    """
    if type(self) is not _SSDTransform:
        return object.__reduce_ex__(self, protocol)
    state = pickle_state(self)
    state['_hard_column'] = hard_column_of(self)
    size = settings_of(self).hard_min_size
    if size is not None:
        state['_kwargs'] = fold(type(self).__name__, state['_kwargs'],
                                base={'hard': HardRule(min_size=size)})
    return rebuild, (SSDTrainTransform, state)


_PATCHES = (
    (_SSDTransform, '__init__', keeping_settings(_GLUONCV_SSD_INIT)),
    (_SSDTransform, '__call__', ssd_call),
    (_SSDTransform, '_target_generator', property(ssd_target_generator)),
    (_SSDTransform, '__reduce_ex__', _reduce_gluoncv_transform),
    (_ssd_target, 'SSDTargetGenerator', SSDTargetGenerator),
    (_gluoncv_loss, 'SSDMultiBoxLoss', SSDMultiBoxLoss),
)


def patches():
    """(owner, attribute, replacement) triples that install() applies for SSD."""
    return _PATCHES
