"""Cross-cutting reliability: no host copies on the device path, workers, pickling.

The per-sampler rules live in their own test files; these tests hold every
public sampler to the same standards at once.
"""
import pickle

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from samplers import (NaiveSampler, OHEMSampler, QuotaSampler, RPNTargetGenerator,
                      RPNTargetSampler, box_iou, force_ndarray_backend)
from conftest import CPU_CONTEXTS


def _boxes(rng, n, size=64.0):
    xy = rng.uniform(0, size * 0.7, (n, 2))
    wh = rng.uniform(4, size * 0.3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def _grid_anchors(size=64, stride=8, scales=(8, 16, 32)):
    centres = np.arange(stride / 2, size, stride, dtype=np.float32)
    cy, cx = np.meshgrid(centres, centres, indexing='ij')
    out = [np.stack([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2], axis=-1).reshape(-1, 4)
           for s in scales]
    return np.concatenate(out).astype(np.float32)


def _inputs(ctx, seed=0, batch=2, n=60, m=5, classes=4):
    """One set of NDArray inputs for every sampler, on ``ctx``."""
    rng = np.random.RandomState(seed)
    anchors = _grid_anchors()
    gt = _boxes(rng, m)
    ious = np.stack([box_iou(anchors[:n], gt)] * batch)
    matches = np.where(ious.max(-1) >= 0.5, ious.argmax(-1), -1).astype(np.float32)
    logits = rng.normal(size=(batch, n, classes)).astype(np.float32)
    hard = np.zeros((batch, m), np.float32)
    hard[:, 0] = 1
    nd = lambda a: mx.nd.array(a, ctx=ctx)  # noqa: E731
    return dict(anchors=nd(anchors), gt=nd(gt), ious=nd(ious), matches=nd(matches),
                logits=nd(logits), hard=nd(hard))


def _run_all(inp):
    """Every public sampler once on the inputs; returns {name: NDArray result}."""
    return {
        'box_iou': box_iou(inp['anchors'], inp['gt']),
        'naive': NaiveSampler()(inp['matches']),
        'quota': QuotaSampler(32, 0.5, 0.3, pos_ratio=0.25)(inp['matches'], inp['ious'],
                                                            inp['hard']),
        'ohem': OHEMSampler(3)(inp['matches'], inp['logits'], inp['ious']),
        'rpn_sampler': RPNTargetSampler(32, 0.7, 0.3, 0.5)(inp['ious'], inp['hard'])[0],
        'rpn_generator': RPNTargetGenerator(num_sample=32)(inp['gt'], inp['anchors'], 64, 64,
                                                           inp['hard'][0])[0],
    }


@pytest.fixture
def no_host_copies(monkeypatch):
    """Make every device-to-host read of an NDArray fail loudly while the test runs."""
    def refuse(*_args, **_kwargs):
        raise AssertionError('host copy of an NDArray on the device path')
    for name in ('asnumpy', 'asscalar', '__array__', '__bool__', '__int__', '__float__',
                 'tolist'):
        monkeypatch.setattr(mx.nd.NDArray, name, refuse, raising=False)


def test_device_path_reads_nothing_back_to_the_host(no_host_copies):
    # This is how we know the GPU path makes no host round trip: force_ndarray_backend runs
    # exactly the code a GPU context runs, here on CPU, with every NDArray->host read disabled.
    inp = _inputs(mx.cpu(0))
    with force_ndarray_backend():
        results = _run_all(inp)
    mx.nd.waitall()
    assert all(isinstance(r, mx.nd.NDArray) for r in results.values())


def test_the_host_read_guard_catches_a_host_copy(no_host_copies):
    with pytest.raises(AssertionError, match='host copy'):
        mx.nd.ones((2,)).asnumpy()


@pytest.mark.parametrize('ctx', CPU_CONTEXTS)
@pytest.mark.parametrize('forced', [False, True])
def test_every_sampler_returns_on_the_input_context(ctx, forced):
    inp = _inputs(ctx)
    if forced:
        with force_ndarray_backend():
            results = _run_all(inp)
    else:
        results = _run_all(inp)
    for name, result in results.items():
        assert result.context == ctx, name


def test_every_sampler_survives_pickling_with_its_settings():
    inp = _inputs(mx.cpu())
    mx.random.seed(3)
    np.random.seed(3)
    before = {k: v.asnumpy() for k, v in _run_all(inp).items()}
    samplers = [NaiveSampler(), QuotaSampler(32, 0.5, 0.3, pos_ratio=0.25), OHEMSampler(3),
                RPNTargetSampler(32, 0.7, 0.3, 0.5), RPNTargetGenerator(num_sample=32)]
    for sampler in samplers:
        clone = pickle.loads(pickle.dumps(sampler))
        assert type(clone) is type(sampler)
        assert repr(clone) == repr(sampler)
    mx.random.seed(3)
    np.random.seed(3)
    after = {k: v.asnumpy() for k, v in _run_all(inp).items()}
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


class _SampledDataset(gluon.data.Dataset):
    """Each item runs the per-image samplers on a seeded input (no subsampling: deterministic)."""

    def __init__(self):
        self.quota = QuotaSampler(10 ** 4, 0.5, 0.3)
        self.ohem = OHEMSampler(3)
        self.rpn = RPNTargetSampler(10 ** 4, 0.7, 0.3, 0.5)

    def __len__(self):
        return 6

    def __getitem__(self, idx):
        inp = _inputs(mx.cpu(), seed=idx, batch=1)
        quota = self.quota(inp['matches'], inp['ious'], inp['hard']).asnumpy()
        ohem = self.ohem(inp['matches'], inp['logits'], inp['ious']).asnumpy()
        rpn = self.rpn(inp['ious'].asnumpy()[0], inp['hard'].asnumpy()[0])[0]
        return np.concatenate([quota[0], ohem[0], rpn]).astype(np.float32)


@pytest.mark.parametrize('loader_kwargs', [dict(num_workers=2), dict(num_workers=2,
                                                                     thread_pool=True)])
def test_samplers_give_the_same_results_in_dataloader_workers(loader_kwargs):
    dataset = _SampledDataset()
    expected = np.stack([dataset[i] for i in range(len(dataset))])
    loader = gluon.data.DataLoader(dataset, batch_size=2, **loader_kwargs)
    got = np.concatenate([batch.asnumpy() for batch in loader])
    np.testing.assert_array_equal(got, expected)
