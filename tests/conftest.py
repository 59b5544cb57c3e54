"""Shared test set-up: seeded RNGs, contexts, the GPU marker, and the shared fixtures."""
import os

# First, before mxnet: on Python 3.12 (numpy 1.26) mxnet needs the numpy aliases that
# samplers/_compat.py restores, and test modules import mxnet and gluoncv before samplers.
import samplers  # noqa: F401

import mxnet as mx
import numpy as np
import pytest
from hypothesis import settings

from helpers import refuse_host_copies, zoo_net

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


@pytest.fixture
def no_host_copies(monkeypatch):
    """Every device-to-host read of an NDArray fails loudly while the test runs."""
    refuse_host_copies(monkeypatch)


@pytest.fixture
def uninstall_gluoncv():
    """After the test, :func:`samplers.gluoncv.uninstall` (GluonCV unpatched for the next test).

    Modules that patch GluonCV use it for every test:
    ``pytestmark = [..., pytest.mark.usefixtures('uninstall_gluoncv')]``.
    """
    yield
    import samplers.gluoncv
    samplers.gluoncv.uninstall()


def zoo_fixture(name, model, num_sample=None, installed=False, **sampler_options):
    """A module-scoped fixture called ``name``: ``helpers.zoo_net(model, ...)``, built once
    per test file (the network tests of test_gluoncv, test_coco_crowd, test_e2e_rcnn and
    test_lst share it). Assign it in the test module: ``c4_net = zoo_fixture('c4_net', ...)``.
    """
    @pytest.fixture(scope='module', name=name)
    def network():
        return zoo_net(model, num_sample, installed, **sampler_options)
    return network
