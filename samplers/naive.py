"""NaiveSampler: every matched anchor is positive, every other one negative."""
from __future__ import annotations

import numpy as np
from mxnet import gluon

from ._blocks import SamplerBlock
from ._arrays import NEGATIVE, POSITIVE, is_ndarray, like

__all__ = ['NaiveSampler']


class NaiveSampler(SamplerBlock, gluon.HybridBlock):
    """Take every matching result; nothing is ignored.

    Called as ``sampler(matches)`` with ``matches`` of any shape, typically
    (B, N): the index of the matched ground truth (>= 0) or a negative value
    for "no match". Returns an array of the same shape, dtype and context:
    ``POSITIVE`` (1) where ``matches >= 0``, ``NEGATIVE`` (-1) elsewhere
    (labels as in :mod:`samplers`). A NaN entry (float input) compares false
    and is negative, as in GluonCV. Hybridizes and exports like any
    HybridBlock. A zero-size ``matches`` (B or N = 0) gives an empty result.
    """

    def forward(self, x):
        if is_ndarray(x) and x.size == 0:  # MXNet's operators reject zero-size arrays
            return like(np.zeros(x.shape, np.dtype(x.dtype)), x)
        return super(NaiveSampler, self).forward(x)

    def hybrid_forward(self, F, x):
        ones = F.ones_like(x)
        return F.where(x >= 0, ones * POSITIVE, ones * NEGATIVE)
