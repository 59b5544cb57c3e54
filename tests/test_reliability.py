"""Cross-cutting reliability of every public sampler: contexts, no host copies, pickling, workers.

Each sampler is one entry of ``CASES``: how to make it and how to call it on
the shared inputs of :func:`make_inputs`. Every test below runs over the whole
registry, so adding a sampler is adding one entry. The per-sampler rules live
in their own test files.
"""
import collections
import contextlib
import ctypes
import functools
import pickle

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from samplers import (Draw, HardRule, NaiveSampler, OHEMSampler, QuotaSampler,
                      RCNNTargetSampler, RPNTargetGenerator, RPNTargetSampler, SSDMultiBoxLoss,
                      SSDTargetGenerator, box_iou, force_ndarray_backend)
from samplers.boxes import corner_to_center
from samplers.draws import keep_random
from conftest import CPU_CONTEXTS, requires_gpu
from helpers import grid_anchors

ALL = 10 ** 6  # a num_sample above every input here: no subsampling, no randomness


def _boxes(rng, n, size=64.0):
    xy = rng.uniform(0, size * 0.7, (n, 2))
    wh = rng.uniform(4, size * 0.3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def make_inputs(ctx, seed=0, batch=2, n=60, m=5, classes=4):
    """One set of NDArray inputs for every case, on ``ctx``; the first box is hard."""
    rng = np.random.RandomState(seed)
    anchors = grid_anchors()
    gt = _boxes(rng, m)
    ious = np.stack([box_iou(anchors[:n], gt)] * batch)
    matches = np.where(ious.max(-1) >= 0.5, ious.argmax(-1), -1).astype(np.float32)
    logits = rng.normal(size=(batch, n, classes)).astype(np.float32)
    hard = np.zeros((batch, m), np.float32)
    hard[:, 0] = 1
    nd = lambda a: mx.nd.array(a, ctx=ctx)  # noqa: E731
    big_gt = _boxes(rng, m, 256.0)
    # Second-stage and SSD inputs, made from the ones above (no further random draws).
    cls_target = np.where(matches >= 0, matches % (classes - 1) + 1, 0)
    cls_target[:, ::7] = -1  # some ignored anchors
    return dict(anchors=nd(anchors), gt=nd(gt), ious=nd(ious), matches=nd(matches),
                logits=nd(logits), hard=nd(hard), mask=nd(ious.max(-1) < 0.3),
                big_anchors=nd(grid_anchors(256, 4)), big_gt=nd(big_gt),
                rois=nd(np.stack([anchors[:n]] * batch)), scores=nd(abs(logits[..., :1])),
                gts=nd(np.stack([gt] * batch)), gt_ids=nd(np.arange(batch * m).reshape(
                    batch, m, 1) % (classes - 1)),
                center_anchors=nd(corner_to_center(anchors[:n])[None]),
                cls_target=nd(cls_target), box_target=nd(logits * 0.5))


#: A draw for the quota samplers that replaces their uniform ones (samplers.Draw).
BALANCED = Draw(pos_sampler='instance_balanced', neg_sampler='iou_balanced')

#: ``make(num_sample)`` builds the sampler (``num_sample=ALL``: no random choice; samplers
#: without a quota ignore it),
#: ``call(sampler, inputs)`` runs it and returns one NDArray or a tuple of them.
Case = collections.namedtuple('Case', 'make call')

CASES = {
    'box_iou': Case(lambda k: box_iou, lambda f, i: f(i['anchors'], i['gt'])),
    'keep_random': Case(lambda k: functools.partial(keep_random, k=k),
                        lambda f, i: f(i['mask'])),
    'naive': Case(lambda k: NaiveSampler(), lambda s, i: s(i['matches'])),
    'quota': Case(lambda k: QuotaSampler(k, 0.5, 0.3, pos_ratio=0.25),
                  lambda s, i: s(i['matches'], i['ious'], i['hard'])),
    'ohem': Case(lambda k: OHEMSampler(3), lambda s, i: s(i['matches'], i['logits'], i['ious'])),
    'ohem_nms': Case(lambda k: OHEMSampler(2.5, min_samples=3, thresh=0.4, nms_thresh=0.7),
                     lambda s, i: s(i['matches'], i['logits'], i['ious'], boxes=i['rois'])),
    'rpn_sampler': Case(lambda k: RPNTargetSampler(k, 0.7, 0.3, 0.5),
                        lambda s, i: s(i['ious'], i['hard'])),
    # The balanced draws, as options of the quota samplers.
    'quota_balanced': Case(lambda k: QuotaSampler(k, 0.5, 0.3, pos_ratio=0.25, draw=BALANCED),
                           lambda s, i: s(i['matches'], i['ious'], i['hard'])),
    'rpn_sampler_balanced': Case(lambda k: RPNTargetSampler(k, 0.7, 0.3, 0.5, draw=BALANCED),
                                 lambda s, i: s(i['ious'], i['hard'])),
    'rpn_generator': Case(lambda k: RPNTargetGenerator(num_sample=k),
                          lambda s, i: s(i['gt'], i['anchors'], 64, 64, i['hard'][0])),
    'rpn_generator_grid': Case(lambda k: RPNTargetGenerator(num_sample=k),
                               lambda s, i: s(i['big_gt'], i['big_anchors'], 256, 256,
                                              i['hard'][0])),
    # COCO crowd regions: the IoF rule, on the dense and the grid path.
    'rpn_generator_crowd': Case(lambda k: RPNTargetGenerator(num_sample=k),
                                lambda s, i: s(i['gt'], i['anchors'], 64, 64, None,
                                               i['hard'][0])),
    'rpn_generator_grid_crowd': Case(lambda k: RPNTargetGenerator(num_sample=k),
                                     lambda s, i: s(i['big_gt'], i['big_anchors'], 256, 256,
                                                    i['hard'][0], 1 - i['hard'][0])),
    'rcnn_crowd': Case(lambda k: RCNNTargetSampler(2, 60, min(k, 65), pos_ratio=1.0 if k == ALL
                                                   else 0.25),
                       lambda s, i: s(i['rois'], i['scores'], i['gts'], None, i['hard'])),
    # A HybridBlock over NDArrays only; num_sample at most its N + M = 65 candidate rows, and
    # pos_ratio 1 so that ALL keeps every candidate.
    'rcnn': Case(lambda k: RCNNTargetSampler(2, 60, min(k, 65), pos_ratio=1.0 if k == ALL else
                                             0.25, hard=HardRule(iof_thresh=0.5)),
                 lambda s, i: s(i['rois'], i['scores'], i['gts'], i['hard'])),
    # SSD targets (hard flags as an NDArray: read on the device) and loss.
    'ssd_targets': Case(lambda k: SSDTargetGenerator(negative_mining_ratio=3),
                        lambda s, i: s(i['center_anchors'], i['logits'], i['gts'], i['gt_ids'],
                                       i['hard'])),
    'ssd_loss': Case(lambda k: SSDMultiBoxLoss(negative_mining_ratio=3),
                     lambda s, i: tuple(part[0] for part in s(
                         i['logits'], i['logits'], i['cls_target'], i['box_target']))),
}


def run(name, sampler, inputs, seed=None):
    """The case's results as a tuple of NDArrays (after seeding both RNGs, if ``seed``)."""
    if seed is not None:
        mx.random.seed(seed)
        np.random.seed(seed)
    out = CASES[name].call(sampler, inputs)
    return out if isinstance(out, tuple) else (out,)


def host(results):
    return [r.asnumpy() for r in results]


@pytest.mark.parametrize('name', CASES)
def test_device_path_reads_nothing_back_to_the_host(name, no_host_copies):
    # This is how we know the GPU path makes no host round trip: force_ndarray_backend runs
    # exactly the code a GPU context runs, here on CPU, with every NDArray->host read disabled.
    inputs = make_inputs(mx.cpu(0))
    with force_ndarray_backend():
        results = run(name, CASES[name].make(ALL), inputs)
        mx.nd.waitall()
    assert all(isinstance(r, mx.nd.NDArray) for r in results)


def test_the_host_read_guard_catches_a_host_copy(no_host_copies):
    with pytest.raises(AssertionError, match='host copy'):
        mx.nd.ones((2,)).asnumpy()


@pytest.mark.parametrize('name', CASES)
@pytest.mark.parametrize('forced', [False, True], ids=['default', 'forced-nd'])
@pytest.mark.parametrize('ctx', CPU_CONTEXTS, ids=str)
def test_results_come_back_on_the_input_context(name, forced, ctx):
    inputs = make_inputs(ctx)
    if forced:
        with force_ndarray_backend():
            results = run(name, CASES[name].make(ALL), inputs)
    else:
        results = run(name, CASES[name].make(ALL), inputs)
    assert all(isinstance(r, mx.nd.NDArray) and r.context == ctx for r in results)


@pytest.mark.parametrize('name', CASES)
def test_the_device_path_gives_the_numpy_path_results(name):
    inputs = make_inputs(mx.cpu(0))
    expected = host(run(name, CASES[name].make(ALL), inputs))
    with force_ndarray_backend():
        got = host(run(name, CASES[name].make(ALL), inputs))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6, err_msg=name)


@requires_gpu
@pytest.mark.parametrize('name', CASES)
def test_results_stay_on_the_gpu_and_equal_the_cpu_results(name):
    expected = host(run(name, CASES[name].make(ALL), make_inputs(mx.cpu())))
    results = run(name, CASES[name].make(ALL), make_inputs(mx.gpu(0)))
    assert all(r.context == mx.gpu(0) for r in results)
    for g, e in zip(host(results), expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize('name', CASES)
def test_an_unpickled_copy_runs_and_gives_the_same_results(name):
    inputs = make_inputs(mx.cpu())
    sampler = CASES[name].make(32)
    run(name, sampler, inputs)  # used first: caches and warn-once state must pickle too
    if isinstance(sampler, RPNTargetSampler):
        sampler(np.array([[np.nan]], np.float32))
    clone = pickle.loads(pickle.dumps(sampler))
    assert type(clone) is type(sampler) and repr(clone) == repr(sampler)
    for seed in (3, 4):
        expected = host(run(name, sampler, inputs, seed))
        for g, e in zip(host(run(name, clone, inputs, seed)), expected):
            np.testing.assert_array_equal(g, e, err_msg=name)


class _EveryCase(gluon.data.Dataset):
    """Item ``idx`` runs every case (no random choice) on the inputs of seed ``idx``."""

    def __init__(self):
        self.samplers = {name: case.make(ALL) for name, case in CASES.items()}

    def __len__(self):
        return 4

    def __getitem__(self, idx):
        inputs = make_inputs(mx.cpu(), seed=idx)  # batch 2: RCNNTargetSampler's num_image
        return np.concatenate([r.reshape(-1) for name, s in self.samplers.items()
                               for r in host(run(name, s, inputs))]).astype(np.float32)


@pytest.mark.parametrize('loader_kwargs', [dict(num_workers=2),
                                           dict(num_workers=2, thread_pool=True)],
                         ids=['processes', 'threads'])
def test_dataloader_workers_give_the_same_results(loader_kwargs):
    dataset = _EveryCase()
    expected = np.stack([dataset[i] for i in range(len(dataset))])
    loader = gluon.data.DataLoader(dataset, batch_size=2, **loader_kwargs)
    got = np.concatenate([batch.asnumpy() for batch in loader])
    np.testing.assert_array_equal(got, expected)


def leave_stale_erange():
    """Leave ``errno`` at ERANGE in this thread, as any overflowing numpy or libc call does."""
    libc = ctypes.CDLL(None)
    libc.strtod.restype = ctypes.c_double
    libc.strtod.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    libc.strtod(b'1e999', None)


def test_a_stale_errno_breaks_mxnet_on_an_infinite_scalar():
    # The defect every test below guards against: MXNet parses scalars with strtod and reads
    # errno, so after an overflow elsewhere in the thread it rejects +inf and subnormals.
    ones, inf = mx.nd.ones((2,)), float('inf')  # float('inf') itself would clear errno
    with pytest.raises(mx.base.MXNetError, match='Out of range'):
        leave_stale_erange()
        (ones < inf).wait_to_read()


@pytest.mark.parametrize('name', CASES)
@pytest.mark.parametrize('forced', [False, True], ids=['default', 'forced-nd'])
def test_every_case_runs_after_a_stale_errno(name, forced):
    inputs = make_inputs(mx.cpu(0))
    expected = host(run(name, CASES[name].make(ALL), inputs))
    with contextlib.ExitStack() as stack:
        if forced:
            stack.enter_context(force_ndarray_backend())
        sampler = CASES[name].make(ALL)
        leave_stale_erange()
        got = host(run(name, sampler, inputs))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6, err_msg=name)


def test_background_loss_after_an_overflowing_numpy_call():
    # The probe's sequence: the numpy twin overflows on +-max/4 logits, then the mx.nd form runs
    # on float64 input in the same thread.
    from samplers.background import background_loss, background_loss_F
    big = np.finfo(np.float64).max / 4
    logits = np.array([[big, 0.0, -big], [0.5, 1.0, 2.0]])
    background_loss(logits)
    leave_stale_erange()
    loss, finite = background_loss_F(mx.nd, mx.nd.array(logits, dtype='float64'))
    assert finite.asnumpy().tolist() == [1, 1]
    assert np.isfinite(loss.asnumpy()).all()


@pytest.mark.parametrize('make', [
    lambda: QuotaSampler(ALL, 0.5, float('inf'), neg_thresh_low=-float('inf')),
    lambda: QuotaSampler(ALL, 1e-310, 0.3),
], ids=['quota-infinite-thresholds', 'quota-subnormal-threshold'])
def test_infinite_and_subnormal_options_survive_a_stale_errno_on_the_device_path(make):
    inputs = make_inputs(mx.cpu(0))
    sampler = make()
    args = (inputs['ious'], inputs['hard']) if isinstance(sampler, RPNTargetSampler) \
        else (inputs['matches'], inputs['ious'], inputs['hard'])
    expected = sampler(*args)
    with force_ndarray_backend():
        leave_stale_erange()
        got = sampler(*args)
    expected, got = (r if isinstance(r, tuple) else (r,) for r in (expected, got))
    for g, e in zip(host(got), host(expected)):
        np.testing.assert_array_equal(g, e)


def _empty(shape, ctx):
    return mx.nd.array(np.zeros(shape, np.float32), ctx=ctx)


#: Zero sizes (no anchor or proposal, N = 0): ``call(ctx)`` runs the sampler on empty
#: NDArrays on ``ctx`` (MXNet's own operators reject them) and ``shapes`` are the results'.
#: Adding a sampler is adding an entry.
EMPTY = {
    'box_iou': (lambda c: box_iou(_empty((0, 4), c), _empty((3, 4), c)), [(0, 3)]),
    'naive': (lambda c: NaiveSampler()(_empty((2, 0), c)), [(2, 0)]),
    'quota': (lambda c: QuotaSampler(8, 0.5, 0.3)(_empty((2, 0), c), _empty((2, 0, 3), c)),
              [(2, 0)]),
    'ohem': (lambda c: OHEMSampler(3)(_empty((2, 0), c), _empty((2, 0, 4), c),
                                      _empty((2, 0), c)), [(2, 0)]),
    'rpn_sampler': (lambda c: RPNTargetSampler(8, 0.7, 0.3, 0.5)(_empty((2, 0, 3), c)),
                    [(2, 0), (2, 0)]),
    'rpn_generator': (lambda c: RPNTargetGenerator(num_sample=8)(
        _empty((3, 4), c), _empty((0, 4), c), 64, 64), [(0,), (0, 4), (0, 4)]),
    # No box either: with boxes, a regression would meet MXNet's matcher, whose SIGFPE
    # kills the process (tests/test_ssd.py checks that in a subprocess).
    'ssd_targets': (lambda c: SSDTargetGenerator()(
        _empty((1, 0, 4), c), _empty((2, 0, 4), c), _empty((2, 0, 4), c),
        _empty((2, 0, 1), c)), [(2, 0), (2, 0, 4), (2, 0, 4)]),
    'ssd_loss': (lambda c: tuple(part[0] for part in SSDMultiBoxLoss()(
        _empty((2, 0, 4), c), _empty((2, 0), c), _empty((2, 0), c), _empty((2, 0, 4), c))),
        [(2,), (2,), (2,)]),
}


@pytest.mark.parametrize('name', EMPTY)
@pytest.mark.parametrize('forced', [False, True], ids=['default', 'forced-nd'])
def test_no_anchors_give_empty_results_on_the_input_context(name, forced):
    call, shapes = EMPTY[name]
    with force_ndarray_backend() if forced else contextlib.nullcontext():
        out = call(mx.cpu(1))
    out = out if isinstance(out, tuple) else (out,)
    assert [r.shape for r in out] == shapes
    assert all(isinstance(r, mx.nd.NDArray) and r.context == mx.cpu(1) for r in out)
