"""Shared test set-up: seeded RNGs, contexts, and the GPU marker."""
import os

# First, before mxnet: on Python 3.12 (numpy 1.26) mxnet needs the numpy aliases that
# samplers/_compat.py restores, and test modules import mxnet and gluoncv before samplers.
import samplers  # noqa: F401  pylint: disable=unused-import

import mxnet as mx
import numpy as np
import pytest
from hypothesis import settings

settings.register_profile('default', deadline=None, print_blob=True)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'default'))

HAS_GPU = mx.context.num_gpus() > 0
requires_gpu = pytest.mark.skipif(not HAS_GPU, reason='no GPU on this machine')

#: Contexts every context-aware test runs on.
CPU_CONTEXTS = [mx.cpu(0), mx.cpu(1)]


@pytest.fixture(autouse=True)
def _seed_rngs():
    """Every test starts from the same RNG state (MXNet's and numpy's)."""
    mx.random.seed(1234)
    np.random.seed(1234)
    yield
