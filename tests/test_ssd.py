"""SSD pieces: the specification, as tests.

Rules under test (see samplers/ssd.py and samplers/gluoncv/ssd.py):

* targets: hard boxes never match (bipartite or threshold); an unmatched
  anchor with IoU >= neg_thresh with a hard box is ignored (-1); all-zero
  flags give GluonCV's targets;
* loss: per image, the min(max(min_hard_negatives, ceil(ratio * num_pos)),
  candidates) background anchors with the largest loss are mined; ignored
  anchors (-1) are never mined and carry no loss; rows with non-finite logits
  are never mined; no ignored anchor and finite logits give GluonCV's losses.

Rule tests run on both backends (the ``backend`` fixture): numpy, and mx.nd as
on a GPU (``force_ndarray_backend``).
"""
import contextlib
import pickle
import random

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

gluoncv = pytest.importorskip('gluoncv')
from gluoncv import loss as gluoncv_loss  # noqa: E402
from gluoncv.data.transforms.presets import ssd as ssd_presets  # noqa: E402
from gluoncv.model_zoo import get_model  # noqa: E402
from gluoncv.model_zoo.ssd import target as ssd_target  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402
from samplers._arrays import force_ndarray_backend  # noqa: E402
from samplers.ssd import SSDMultiBoxLoss, SSDTargetGenerator  # noqa: E402
from helpers import reference_background_loss  # noqa: E402

pytestmark = [pytest.mark.filterwarnings('ignore:Cannot decide type:UserWarning'),
              pytest.mark.usefixtures('uninstall_gluoncv')]
GLUONCV_LOSS = gluoncv_loss.SSDMultiBoxLoss
GLUONCV_GENERATOR = ssd_target.SSDTargetGenerator
GluonCVTransform = ssd_presets.SSDDefaultTrainTransform
SIZE = 256  # small images keep the network tests quick


@pytest.fixture(params=['numpy', 'mx.nd'])
def backend(request):
    """A context in which CPU NDArrays take the numpy path, or the mx.nd (GPU) path."""
    return contextlib.nullcontext if request.param == 'numpy' else force_ndarray_backend


@pytest.fixture(scope='module')
def anchors():
    """SSD anchors of the smallest model-zoo SSD at SIZE x SIZE: (1, N, 4), center format."""
    net = get_model('ssd_512_mobilenet1.0_voc', pretrained_base=False)
    net.initialize()
    with mx.autograd.train_mode():
        _, _, anc = net(mx.nd.zeros((1, 3, SIZE, SIZE)))
    return anc


# --------------------------------------------------------------------------- loss helpers
def loss_inputs(rng, batch=3, num=400, num_class=5, ignored=0.0, positives=(0, 5, 12)):
    cls_pred = mx.nd.array(rng.randn(batch, num, num_class) * 3)
    box_pred = mx.nd.array(rng.randn(batch, num * 4))
    box_target = mx.nd.array(rng.randn(batch, num, 4))
    target = np.zeros((batch, num), np.float32)
    for b in range(batch):
        target[b, rng.choice(num, positives[b % len(positives)], replace=False)] = \
            rng.randint(1, num_class, positives[b % len(positives)])
    target[(target == 0) & (rng.uniform(size=target.shape) < ignored)] = -1
    return cls_pred, box_pred, mx.nd.array(target), box_target


def as_numpy(losses):
    return [[x.asnumpy() for x in part] for part in losses]


def cls_loss_mask(loss, cls_pred, cls_target):
    return loss.cls_loss_mask(cls_target, mx.nd.array(reference_background_loss(cls_pred)),
                              mx.nd.ones(cls_target.shape)).asnumpy()


# --------------------------------------------------------------------------- loss: GluonCV's
@pytest.mark.parametrize('ratio, min_hard', [(3, 0), (2.5, 0), (3, 7)])
def test_loss_equals_gluoncv_without_ignored_anchors(ratio, min_hard, backend):
    args = loss_inputs(np.random.RandomState(0))
    want = as_numpy(GLUONCV_LOSS(ratio, min_hard_negatives=min_hard)(*args))
    with backend():
        got = as_numpy(SSDMultiBoxLoss(ratio, min_hard_negatives=min_hard)(*args))
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_loss_and_gradients_equal_gluoncv_with_other_rho_and_lambd(backend):
    # The CPU path sums cls, box and their lambd-weighted total in one product: same numbers.
    args = loss_inputs(np.random.RandomState(5))
    grads = []
    for make, scope in ((GLUONCV_LOSS, contextlib.nullcontext), (SSDMultiBoxLoss, backend)):
        cls_pred, box_pred = args[0].copy(), args[1].copy()
        cls_pred.attach_grad()
        box_pred.attach_grad()
        with scope(), mx.autograd.record():
            out = make(3, rho=0.5, lambd=0.3)(cls_pred, box_pred, args[2], args[3])
        mx.autograd.backward(out[0])
        grads.append((as_numpy(out), cls_pred.grad.asnumpy(), box_pred.grad.asnumpy()))
    (want, want_cls, want_box), (got, got_cls, got_box) = grads
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_cls, want_cls, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_box, want_box, rtol=1e-4, atol=1e-6)


def test_loss_equals_gluoncv_across_devices():
    rng = np.random.RandomState(1)
    parts = [loss_inputs(rng, batch=2), loss_inputs(rng, batch=2, positives=(3, 0))]
    args = [[p[i].as_in_context(mx.cpu(d)) for d, p in enumerate(parts)] for i in range(4)]
    want = as_numpy(GLUONCV_LOSS()(*args))
    got = SSDMultiBoxLoss()(*args)
    assert [x.context for x in got[0]] == [mx.cpu(0), mx.cpu(1)]
    for w, g in zip(want, as_numpy(got)):
        for wd, gd in zip(w, g):
            np.testing.assert_allclose(gd, wd, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- loss: the mining rule
def test_counts_are_per_image_ceil_of_ratio_times_positives(backend):
    cls_pred, _, target, _ = loss_inputs(np.random.RandomState(2), positives=(0, 1, 4))
    with backend():
        got = cls_loss_mask(SSDMultiBoxLoss(2.5), cls_pred, target)
    negatives = (got > 0).sum(1) - (target.asnumpy() > 0).sum(1)
    np.testing.assert_array_equal(negatives, [0, 3, 10])


def test_min_hard_negatives_is_a_per_image_floor(backend):
    cls_pred, _, target, _ = loss_inputs(np.random.RandomState(2), positives=(0, 1, 4))
    with backend():
        got = cls_loss_mask(SSDMultiBoxLoss(3, min_hard_negatives=5), cls_pred, target)
    np.testing.assert_array_equal((got > 0).sum(1) - (target.asnumpy() > 0).sum(1), [5, 5, 12])


def test_mined_negatives_are_the_hardest_background_anchors(backend):
    cls_pred, _, target, _ = loss_inputs(np.random.RandomState(3), ignored=0.3)
    with backend():
        got = cls_loss_mask(SSDMultiBoxLoss(3), cls_pred, target)
    tgt, loss = target.asnumpy(), reference_background_loss(cls_pred)
    for b in range(tgt.shape[0]):
        background = np.flatnonzero(tgt[b] == 0)
        want = background[np.argsort(-loss[b, background])[:3 * int((tgt[b] > 0).sum())]]
        np.testing.assert_array_equal(np.flatnonzero((got[b] > 0) & (tgt[b] == 0)),
                                      np.sort(want))


def test_ignored_anchors_are_never_mined_and_carry_no_classification_loss(backend):
    cls_pred, box_pred, target, box_target = loss_inputs(np.random.RandomState(4))
    tgt = target.asnumpy()
    loss = reference_background_loss(cls_pred)
    hardest = np.argsort(-np.where(tgt == 0, loss, -np.inf), axis=1)[:, :20]
    np.put_along_axis(tgt, hardest, -1, axis=1)  # the hardest background anchors: ignored
    target = mx.nd.array(tgt)
    cls_pred.attach_grad()
    with backend(), mx.autograd.record():
        total, cls_loss, _ = SSDMultiBoxLoss(3)(cls_pred, box_pred, target, box_target)
    mx.autograd.backward(total)
    assert not cls_pred.grad.asnumpy()[tgt < 0].any()
    with backend():
        mask = cls_loss_mask(SSDMultiBoxLoss(3), cls_pred, target)
    assert not mask[tgt < 0].any()
    np.testing.assert_array_equal((mask * (tgt == 0)).sum(1), 3 * (tgt > 0).sum(1))


def test_differs_from_gluoncv_ignored_anchors_are_mined_there():
    cls_pred, box_pred, target, box_target = loss_inputs(np.random.RandomState(4))
    tgt = target.asnumpy()
    loss = np.where(tgt == 0, reference_background_loss(cls_pred), -np.inf)
    hardest = np.argsort(-loss, axis=1)[:, :20]
    np.put_along_axis(tgt, hardest, -1, axis=1)
    args = (cls_pred, box_pred, mx.nd.array(tgt), box_target)
    theirs = GLUONCV_LOSS()(*args)[1][0].asnumpy()
    ours = SSDMultiBoxLoss()(*args)[1][0].asnumpy()
    assert (theirs[1:] > ours[1:]).all()  # GluonCV trains the ignored anchors as background


def test_positives_are_always_counted_and_never_displaced(backend):
    cls_pred, _, target, _ = loss_inputs(np.random.RandomState(5), num=20,
                                         positives=(0, 5, 18))
    with backend():
        got = cls_loss_mask(SSDMultiBoxLoss(3), cls_pred, target)
    tgt = target.asnumpy()
    assert (got[tgt > 0] == 1).all()
    np.testing.assert_array_equal(got.sum(1), [0, 20, 20])  # all 2 candidates of image 2


def test_large_logits_give_finite_losses_and_the_right_choice(backend):
    cls_pred, box_pred, target, box_target = loss_inputs(np.random.RandomState(6))
    big = cls_pred * 3000
    with backend():
        losses = SSDMultiBoxLoss(3)(big, box_pred, target, box_target)
        got = SSDMultiBoxLoss(3).cls_loss_mask(
            target, mx.nd.array(reference_background_loss(big)), mx.nd.ones(target.shape)).asnumpy()
    assert all(np.isfinite(x.asnumpy()).all() for part in losses for x in part)
    np.testing.assert_array_equal(got, cls_loss_mask(SSDMultiBoxLoss(3), big, target))


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_a_row_with_a_non_finite_logit_is_never_mined(bad, backend):
    cls_pred, box_pred, target, box_target = loss_inputs(np.random.RandomState(7))
    tgt = target.asnumpy()
    pred = cls_pred.asnumpy()
    loss = np.where(tgt == 0, reference_background_loss(cls_pred), -np.inf)
    rows = np.argsort(-loss, axis=1)[:, :3]
    for b in range(pred.shape[0]):
        pred[b, rows[b], 2] = bad  # the hardest background rows turn non-finite
    cls_pred = mx.nd.array(pred)
    with backend():
        losses = SSDMultiBoxLoss(3)(cls_pred, box_pred, target, box_target)
    assert all(np.isfinite(x.asnumpy()).all() for part in losses for x in part)
    cls_pred.attach_grad()
    with backend(), mx.autograd.record():
        total = SSDMultiBoxLoss(3)(cls_pred, box_pred, target, box_target)[0]
    mx.autograd.backward(total)
    grad = cls_pred.grad.asnumpy()
    for b in range(pred.shape[0]):
        assert not grad[b, rows[b]].any()  # never mined: no loss, no gradient


def padded_case(num_pos, first_anchor):
    """One image of 400 anchors x 5 classes with ``num_pos`` positives (anchor 0 never one),
    anchor 0's logits and box prediction set by ``first_anchor(cls_pred, box_pred)``: the
    loss's four inputs as NDArrays."""
    rng = np.random.RandomState(num_pos)
    num, classes = 400, 5
    target = np.zeros((1, num), np.float32)
    target[0, 1 + rng.choice(num - 1, num_pos, replace=False)] = rng.randint(1, classes,
                                                                             num_pos)
    cls_pred = rng.normal(0, 1, (1, num, classes)).astype(np.float32)
    box_pred = rng.normal(0, 1, (1, num * 4)).astype(np.float32)
    first_anchor(cls_pred, box_pred)
    return [mx.nd.array(a) for a in (cls_pred, box_pred, target, rng.normal(0, 1, (1, num, 4)))]


def loss_and_gradients(inputs, path):
    """The first image's total loss and the gradients of the logits and box predictions."""
    cp, bp = inputs[0].copy(), inputs[1].copy()
    cp.attach_grad()
    bp.attach_grad()
    with path(), mx.autograd.record():
        total = SSDMultiBoxLoss(3)(cp, bp, inputs[2], inputs[3])[0][0]
    total.backward()
    return total.asnumpy(), cp.grad.asnumpy(), bp.grad.asnumpy()


def nan_first_anchor(cls_pred, box_pred):
    cls_pred[0, 0], box_pred[0, :4] = np.nan, np.nan


def confident_first_anchor(cls_pred, _):
    cls_pred[0, 0, 0] = 30  # a confident background: never mined


@pytest.mark.parametrize('num_pos', [17, 21, 37])
def test_a_non_finite_first_anchor_spoils_no_gradient_through_the_padding(num_pos, backend):
    # The CPU path gathers a bucketed number of rows, padded with anchor 0: NaN logits and
    # box predictions there (not positive, so never chosen) must leave every gradient finite.
    total, cls_grad, box_grad = loss_and_gradients(padded_case(num_pos, nan_first_anchor),
                                                   backend)
    assert np.isfinite(total).all()
    assert np.isfinite(cls_grad).all() and np.isfinite(box_grad).all()
    assert not cls_grad[0, 0].any() and not box_grad[0, :4].any()


@pytest.mark.parametrize('num_pos', [17, 21, 37])
def test_padding_with_a_finite_first_anchor_changes_no_gradient(num_pos):
    # The padding repeats anchor 0 (finite, never chosen): the losses and every gradient are
    # the device path's, which computes every row and pads nothing.
    inputs = padded_case(num_pos, confident_first_anchor)
    host = loss_and_gradients(inputs, contextlib.nullcontext)
    device = loss_and_gradients(inputs, force_ndarray_backend)
    assert not host[1][0, 0].any() and not host[2][0, :4].any()
    for got, want in zip(host, device):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_gathered_lengths_are_bucketed_to_few_shapes():
    from samplers.ssd import _bucket
    sizes = [_bucket(n) for n in range(0, 5001)]
    assert sizes[:17] == [1] + list(range(1, 17))
    assert all(n <= b <= max(1, 1.125 * n) for n, b in enumerate(sizes))
    assert sizes == sorted(sizes) and len(set(sizes)) <= 16 + 8 * 9


def test_differs_from_gluoncv_no_positive_gives_per_image_zeros_without_a_host_read(
        monkeypatch):
    cls_pred, box_pred, target, box_target = loss_inputs(np.random.RandomState(8),
                                                         positives=(0,))
    theirs = GLUONCV_LOSS()(cls_pred, box_pred, target, box_target)
    assert theirs[0][0].shape == (1,)

    def refuse(*_args, **_kwargs):
        raise AssertionError('host copy of an NDArray on the device path')
    for name in ('asnumpy', 'asscalar', '__array__', '__bool__', '__float__', 'tolist'):
        monkeypatch.setattr(mx.nd.NDArray, name, refuse, raising=False)
    with force_ndarray_backend():
        ours = SSDMultiBoxLoss()(cls_pred, box_pred, target, box_target)
        mx.nd.waitall()
    monkeypatch.undo()
    assert ours[0][0].shape == (3,) and not ours[0][0].asnumpy().any()


@pytest.mark.parametrize('kwargs, name', [
    ({'negative_mining_ratio': float('nan')}, 'negative_mining_ratio'),
    ({'rho': 0}, 'rho'), ({'min_hard_negatives': -2}, 'min_hard_negatives'),
    ({'min_hard_negatives': 1.5}, 'min_hard_negatives')])
def test_bad_loss_settings_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SSDMultiBoxLoss(**kwargs)


def test_loss_inputs_of_the_wrong_shape_raise_value_error():
    cls_pred, box_pred, target, box_target = loss_inputs(np.random.RandomState(9))
    with pytest.raises(ValueError, match='cls_target'):
        SSDMultiBoxLoss()(cls_pred, box_pred, target[:, :10], box_target)


@pytest.mark.parametrize('ratio', [-1, -0.5, -np.inf])
def test_a_negative_mining_ratio_counts_as_zero_as_in_gluoncv(ratio, backend):
    args = loss_inputs(np.random.RandomState(10))
    want = as_numpy(GLUONCV_LOSS(ratio)(*args))
    with backend():
        got = as_numpy(SSDMultiBoxLoss(ratio)(*args))
        zero = as_numpy(SSDMultiBoxLoss(0)(*args))
    for w, g, z in zip(want, got, zero):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(g, z)


def _nan_on_a_positive_of_image_0():
    cls_pred, box_pred, target, box_target = loss_inputs(np.random.RandomState(11),
                                                         positives=(5, 12, 3))
    pred = cls_pred.asnumpy()
    pred[0, np.flatnonzero(target.asnumpy()[0] > 0)[0], 1] = np.nan
    return mx.nd.array(pred), box_pred, target, box_target


def test_a_nan_logit_on_a_positive_makes_only_its_own_image_loss_nan(backend):
    args = _nan_on_a_positive_of_image_0()
    want = as_numpy(GLUONCV_LOSS()(*args))
    with backend():
        got = as_numpy(SSDMultiBoxLoss()(*args))
    for w, g in zip(want[:2], got[:2]):  # sum and classification losses
        assert np.isnan(g[0][0]) and np.isnan(w[0][0])
        np.testing.assert_allclose(g[0][1:], w[0][1:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2][0], want[2][0], rtol=1e-5, atol=1e-6)  # box: all finite


def test_a_nan_box_prediction_on_a_positive_makes_only_its_own_image_loss_nan(backend):
    cls_pred, box_pred, target, box_target = loss_inputs(np.random.RandomState(12),
                                                         positives=(5, 12, 3))
    pred = box_pred.asnumpy().reshape(target.shape + (4,))
    pred[1, np.flatnonzero(target.asnumpy()[1] > 0)[0], 2] = np.nan
    args = (cls_pred, mx.nd.array(pred.reshape(box_pred.shape)), target, box_target)
    want = as_numpy(GLUONCV_LOSS()(*args))
    with backend():
        got = as_numpy(SSDMultiBoxLoss()(*args))
    for part in (0, 2):  # sum and box losses
        assert np.isnan(got[part][0][1])
        np.testing.assert_allclose(got[part][0][[0, 2]], want[part][0][[0, 2]], rtol=1e-5,
                                   atol=1e-6)
    np.testing.assert_allclose(got[1][0], want[1][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('targets', ['no positive', 'every anchor ignored'])
@pytest.mark.parametrize('bad', [np.inf, -np.inf, np.nan])
def test_nothing_chosen_gives_zero_losses_and_no_gradient_whatever_the_predictions(
        targets, bad, backend):
    cls_pred, box_pred, target, box_target = loss_inputs(np.random.RandomState(13))
    target = mx.nd.zeros(target.shape) - (targets == 'every anchor ignored')
    pred = cls_pred.asnumpy()
    pred[:, 0, 1] = bad  # anchor 0, the row the CPU path gathers first
    boxes = box_pred.asnumpy()
    boxes[:, :4] = bad
    cls_pred, box_pred = mx.nd.array(pred), mx.nd.array(boxes)
    cls_pred.attach_grad()
    box_pred.attach_grad()
    with backend(), mx.autograd.record():
        losses = SSDMultiBoxLoss()(cls_pred, box_pred, target, box_target)
    mx.autograd.backward(losses[0])
    for part in as_numpy(losses):
        assert part[0].shape == (3,) and not part[0].any() and not np.isnan(part[0]).any()
    assert not cls_pred.grad.asnumpy().any() and not np.isnan(cls_pred.grad.asnumpy()).any()
    assert not box_pred.grad.asnumpy().any() and not np.isnan(box_pred.grad.asnumpy()).any()


def _gluoncv_mined_counts(ratio, num_pos, num):
    """Negatives GluonCV's loss mines per image: the background rows that get a gradient."""
    batch = len(num_pos)
    pred = np.zeros((batch, num, 2), np.float32)
    pred[:, :, 1] = np.linspace(-2, 2, num, dtype=np.float32)  # distinct background losses
    target = np.zeros((batch, num), np.float32)
    for b, p in enumerate(num_pos):
        target[b, :p] = 1
    cls_pred = mx.nd.array(pred)
    cls_pred.attach_grad()
    box = mx.nd.zeros((batch, num, 4))
    with mx.autograd.record():
        total = GLUONCV_LOSS(ratio)(cls_pred, box, mx.nd.array(target), box)[0]
    mx.autograd.backward(total)
    touched = np.abs(cls_pred.grad.asnumpy()).sum(-1) > 0
    return (touched & (target == 0)).sum(1), target, pred


# Ratios on a 0.01 grid and a few others; positives 1..100 per image.
MINING_RATIOS = [round(0.01 * i, 2) for i in range(1, 301, 3)] + [0.07, 0.29, 1 / 3, 2 / 3, 1.1]


def test_negative_counts_equal_gluoncv_for_fractional_ratios(backend):
    num_pos, num = np.arange(1, 101), 420
    disagreed_in_double = 0
    for ratio in MINING_RATIOS:
        want, target, pred = _gluoncv_mined_counts(ratio, num_pos, num)
        loss = SSDMultiBoxLoss(ratio)
        with backend():
            got = loss.cls_loss_mask(mx.nd.array(target), mx.nd.array(reference_background_loss(
                mx.nd.array(pred))), mx.nd.ones(target.shape)).asnumpy()
        np.testing.assert_array_equal(((got > 0) & (target == 0)).sum(1), want,
                                      err_msg='ratio {}'.format(ratio))
        disagreed_in_double += int((np.ceil(ratio * num_pos) != want).sum())
    assert disagreed_in_double > 0  # the grid holds pairs where double precision differs


def test_ratio_007_with_100_positives_mines_7_negatives_as_gluoncv(backend):
    want, target, pred = _gluoncv_mined_counts(0.07, [100], 200)
    assert want.tolist() == [7]
    with backend():
        got = cls_loss_mask(SSDMultiBoxLoss(0.07), mx.nd.array(pred), mx.nd.array(target))
    assert ((got > 0) & (target == 0)).sum() == 7


@pytest.mark.parametrize('where', ['numpy', 'mx.nd'])
def test_float64_predictions_with_float32_targets_work_and_equal_float32(where):
    args = loss_inputs(np.random.RandomState(14))
    wide = [a.astype('float64') for a in args[:2]] + list(args[2:])
    scope = contextlib.nullcontext if where == 'numpy' else force_ndarray_backend
    cls_pred = wide[0].copy()
    cls_pred.attach_grad()
    with scope(), mx.autograd.record():
        got = SSDMultiBoxLoss()(cls_pred, *wide[1:])
    mx.autograd.backward(got[0])
    with scope():
        want = as_numpy(SSDMultiBoxLoss()(*args))
    assert all(x.dtype == np.float64 for part in got for x in part)
    for w, g in zip(want, as_numpy(got)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    assert cls_pred.grad.dtype == np.float64 and np.isfinite(cls_pred.grad.asnumpy()).all()


def test_float16_predictions_give_the_cpu_path_losses_and_choice_on_the_device_path():
    # The device path mines with MXNet's sort, which takes no float16: it ranks float32 losses.
    cls_pred, box_pred, cls_target, box_target = loss_inputs(np.random.RandomState(8),
                                                             ignored=0.2)
    args = (cls_pred.astype('float16'), box_pred.astype('float16'), cls_target, box_target)
    want = as_numpy(SSDMultiBoxLoss(3)(*args))
    with force_ndarray_backend():
        got = SSDMultiBoxLoss(3)(*args)
    assert all(x.dtype == np.float16 for part in got for x in part)
    for w, g in zip(want, as_numpy(got)):
        np.testing.assert_allclose(g[0], w[0], rtol=2e-3)
    loss = SSDMultiBoxLoss(3)
    background = mx.nd.array(reference_background_loss(args[0].astype('float32')),
                             dtype='float16')
    with force_ndarray_backend():
        on_device = loss.cls_loss_mask(cls_target, background, mx.nd.ones(cls_target.shape))
    np.testing.assert_array_equal(on_device.asnumpy(),
                                  loss.cls_loss_mask(cls_target, background,
                                                     mx.nd.ones(cls_target.shape)).asnumpy())


@pytest.mark.parametrize('shapes', [[(2, 0)], [(0, 400)], [(2, 0), (3, 400)]], ids=str)
def test_no_anchors_or_no_images_give_zero_losses_on_both_paths(shapes, backend):
    rng = np.random.RandomState(2)
    parts = [loss_inputs(rng, batch=b, num=n) if b * n else
             tuple(mx.nd.array(np.zeros(s, np.float32)) for s in
                   ((b, n, 5), (b, n * 4), (b, n), (b, n, 4))) for b, n in shapes]
    args = [[p[i].as_in_context(mx.cpu(d)) for d, p in enumerate(parts)] for i in range(4)]
    with backend():
        got = SSDMultiBoxLoss()(*args)
    for part in got:
        assert [x.shape for x in part] == [(b,) for b, _ in shapes]
        assert [x.context for x in part] == [mx.cpu(d) for d in range(len(shapes))]
        for x, (b, n) in zip(part, shapes):
            if not b * n:
                assert not x.asnumpy().any()
    if len(shapes) == 2:  # the other device's losses as without the empty one
        want = as_numpy(SSDMultiBoxLoss()(*[[a[1]] for a in args]))
        for w, g in zip(want, as_numpy(got)):
            np.testing.assert_allclose(g[1], w[0], rtol=1e-6)


@pytest.mark.parametrize('moved', range(4), ids=['cls_pred', 'box_pred', 'cls_target',
                                                 'box_target'])
def test_loss_inputs_on_two_contexts_raise_value_error_on_both_paths(moved, backend):
    args = list(loss_inputs(np.random.RandomState(3), batch=1, positives=(2,)))
    args[moved] = args[moved].as_in_context(mx.cpu(1))
    with backend(), pytest.raises(ValueError, match='must be on one context'):
        SSDMultiBoxLoss()(*args)


@pytest.mark.parametrize('seed', range(3))
def test_cpu_fast_path_equals_the_dense_rule_with_ignored_and_nonfinite_rows(seed):
    # The CPU path gathers the chosen rows only (a fast path); the dense path computes every
    # anchor (the plain rule, the device's). Losses and gradients agree, edges included.
    rng = np.random.RandomState(40 + seed)
    args = list(loss_inputs(rng, ignored=0.3))
    logits = args[0].asnumpy()
    target = args[2].asnumpy()
    background = np.argwhere(target == 0)
    logits[tuple(background[rng.randint(len(background))])] = np.nan  # never mined
    args[0] = mx.nd.array(logits)
    results = []
    for scope in (contextlib.nullcontext, force_ndarray_backend):
        cls_pred, box_pred = args[0].copy(), args[1].copy()
        cls_pred.attach_grad()
        box_pred.attach_grad()
        with scope(), mx.autograd.record():
            out = SSDMultiBoxLoss(3, rho=0.5, lambd=0.3, min_hard_negatives=2)(
                cls_pred, box_pred, args[2], args[3])
        mx.autograd.backward(out[0])
        results.append((as_numpy(out), cls_pred.grad.asnumpy(), box_pred.grad.asnumpy()))
    (fast, fast_cls, fast_box), (dense, dense_cls, dense_box) = results
    for f, d in zip(fast, dense):
        np.testing.assert_allclose(f, d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_cls, dense_cls, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast_box, dense_box, rtol=1e-4, atol=1e-6)


def test_the_loss_takes_what_the_target_generator_emits_for_float64_predictions():
    anc, preds, gt, ids = target_inputs(15)
    cls_t, box_t, _ = sg.SSDTargetGenerator()(anc, preds, gt, ids)
    assert cls_t.dtype == box_t.dtype == np.float32
    box_pred = mx.nd.array(np.random.RandomState(15).randn(*box_t.shape), dtype='float64')
    for scope in (contextlib.nullcontext, force_ndarray_backend):
        with scope():
            losses = SSDMultiBoxLoss()(preds.astype('float64'), box_pred, cls_t, box_t)
        assert np.isfinite(losses[0][0].asnumpy()).all()


# --------------------------------------------------------------------------- targets
def boxes(rng, batch, num):
    xy = rng.uniform(0, 0.7, (batch, num, 2))
    wh = rng.uniform(0.05, 0.3, (batch, num, 2))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def grid_anchors(rng, num=600):
    """(1, N, 4) random center-format anchors in the unit square."""
    return mx.nd.array(np.concatenate([rng.uniform(0, 1, (1, num, 2)),
                                       rng.uniform(0.02, 0.4, (1, num, 2))], -1))


def target_inputs(seed, batch=2, num_box=6):
    rng = np.random.RandomState(seed)
    anc = grid_anchors(rng)
    return (anc, mx.nd.array(rng.randn(batch, anc.shape[1], 5)),
            mx.nd.array(boxes(rng, batch, num_box)),
            mx.nd.array(rng.randint(0, 4, (batch, num_box, 1))))


@pytest.mark.parametrize('ratio', [-1, 3])
@pytest.mark.parametrize('seed', [0, 1])
def test_targets_with_zero_flags_equal_gluoncv(ratio, seed, backend):
    args = target_inputs(seed)
    want = GLUONCV_GENERATOR(negative_mining_ratio=ratio)(*args)
    with backend():
        plain = sg.SSDTargetGenerator(negative_mining_ratio=ratio)(*args)
        flagged = sg.SSDTargetGenerator(negative_mining_ratio=ratio)(
            *args, hard=np.zeros((2, 6)))
    for got in (plain, flagged):
        for w, g in zip(want, got):
            assert isinstance(g, mx.nd.NDArray) and g.dtype == np.float32
            np.testing.assert_allclose(g.asnumpy(), w.asnumpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got[0].asnumpy(), want[0].asnumpy())


def hard_case():
    """Anchor 0 sits on box 0 (hard), anchor 1 on box 1 (normal); anchor 2 half on box 0."""
    anc = mx.nd.array([[[0.2, 0.2, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.25, 0.2, 0.2, 0.2],
                        [0.5, 0.2, 0.1, 0.1], [0.9, 0.1, 0.1, 0.1]]])
    gt = mx.nd.array([[[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.8, 0.8]]])
    ids = mx.nd.array([[[2], [5]]])
    return anc, gt, ids


def test_a_hard_box_makes_no_positive_and_its_anchors_are_ignored(backend):
    anc, gt, ids = hard_case()
    with backend():
        cls_t, box_t, mask = SSDTargetGenerator(negative_mining_ratio=-1)(
            anc, None, gt, ids, hard=np.array([1, 0]))
    np.testing.assert_array_equal(cls_t.asnumpy()[0], [-1, 6, -1, 0, 0])
    np.testing.assert_array_equal(mask.asnumpy()[0].sum(-1), [0, 4, 0, 0, 0])
    assert not box_t.asnumpy()[0, [0, 2, 3, 4]].any()


def test_differs_from_gluoncv_a_hard_box_is_matched_there():
    anc, gt, ids = hard_case()
    theirs = GLUONCV_GENERATOR(negative_mining_ratio=-1)(anc, None, gt, ids)[0].asnumpy()
    np.testing.assert_array_equal(theirs[0], [3, 6, 3, 0, 0])


def test_an_anchor_below_neg_thresh_with_a_hard_box_stays_negative(backend):
    anc, gt, ids = hard_case()
    with backend():
        cls_t = SSDTargetGenerator(negative_mining_ratio=-1, neg_thresh=0.7)(
            anc, None, gt, ids, hard=np.array([1, 0]))[0]
    np.testing.assert_array_equal(cls_t.asnumpy()[0], [-1, 6, 0, 0, 0])  # anchor 2: IoU 0.6


def test_a_hard_box_does_not_take_a_normal_box_best_anchor(backend):
    # Box 1 (normal) overlaps only anchor 0, which is the hard box 0's exact match.
    anc = mx.nd.array([[[0.2, 0.2, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]])
    gt = mx.nd.array([[[0.1, 0.1, 0.3, 0.3], [0.15, 0.15, 0.3, 0.3]]])
    with backend():
        cls_t = SSDTargetGenerator(negative_mining_ratio=-1)(
            anc, None, gt, mx.nd.array([[[0], [1]]]), hard=np.array([1, 0]))[0]
    np.testing.assert_array_equal(cls_t.asnumpy()[0], [2, 0])


def test_mining_targets_never_mine_anchors_on_a_hard_box(backend):
    anc, gt, ids = hard_case()
    preds = mx.nd.array(np.tile([[[-5.0, 5.0]]], (1, 5, 1)))  # every anchor equally hard
    with backend():
        cls_t = SSDTargetGenerator(negative_mining_ratio=10)(
            anc, preds, gt, ids, hard=np.array([1, 0]))[0]
    np.testing.assert_array_equal(cls_t.asnumpy()[0], [-1, 6, -1, 0, 0])


@pytest.mark.parametrize('ratio', [-1, 3])
def test_no_ground_truth_makes_every_anchor_negative(ratio):
    # numpy input: MXNet 1.x has no NDArray with a zero-length axis.
    anc = hard_case()[0].asnumpy()
    preds = np.zeros((1, 5, 3), np.float32)
    cls_t, box_t, mask = SSDTargetGenerator(negative_mining_ratio=ratio, )(
        anc, preds, np.zeros((1, 0, 4)), np.zeros((1, 0, 1)))
    np.testing.assert_array_equal(cls_t, np.zeros((1, 5)) if ratio < 0 else -np.ones((1, 5)))
    assert box_t.shape == mask.shape == (1, 5, 4) and not mask.any()


@pytest.mark.parametrize('ratio', [-1, 3])
def test_no_ground_truth_in_ndarrays_gives_the_numpy_targets(ratio, backend):
    anc = hard_case()[0]
    preds = mx.nd.zeros((1, 5, 3))
    empty = [mx.nd.array(np.zeros(shape, np.float32)) for shape in ((1, 0, 4), (1, 0, 1))]
    want = SSDTargetGenerator(negative_mining_ratio=ratio)(
        anc.asnumpy(), preds.asnumpy(), np.zeros((1, 0, 4)), np.zeros((1, 0, 1)))
    with backend():
        got = SSDTargetGenerator(negative_mining_ratio=ratio)(anc, preds, *empty)
    for g, w in zip(got, want):
        assert isinstance(g, mx.nd.NDArray)
        np.testing.assert_array_equal(g.asnumpy(), w)


@pytest.mark.parametrize('ratio', [-1, 3])
def test_numpy_ground_truth_with_ndarray_anchors_equals_ndarray_ground_truth(ratio, backend):
    args = target_inputs(0)
    with backend():
        want = SSDTargetGenerator(negative_mining_ratio=ratio)(*args)
        got = SSDTargetGenerator(negative_mining_ratio=ratio)(
            args[0], args[1], args[2].asnumpy(), args[3].asnumpy())
    for g, w in zip(got, want):
        assert isinstance(g, mx.nd.NDArray)
        np.testing.assert_array_equal(g.asnumpy(), w.asnumpy())


_NO_ANCHORS = """
import samplers  # first: it restores the numpy aliases mxnet needs on numpy >= 1.24
import contextlib, numpy as np, mxnet as mx
from samplers.ssd import SSDTargetGenerator, ssd_matches
print(ssd_matches(np.zeros((2, 0, 3)), np.zeros((2, 1, 3)), 0.5).shape == (2, 0))
for forced in (False, True):
    for kind in ('numpy', 'nd'):
        for ratio in (-1, 3):
            for m in (0, 2):
                conv = mx.nd.array if kind == 'nd' else np.asarray
                anc, logits = conv(np.zeros((1, 0, 4))), conv(np.zeros((2, 0, 3)))
                gt = conv(np.tile(np.array([[[0, 0, 1, 1]]], np.float32), (2, m, 1)))
                ids = conv(np.zeros((2, m, 1)))
                with samplers.force_ndarray_backend() if forced else contextlib.nullcontext():
                    out = SSDTargetGenerator(negative_mining_ratio=ratio)(anc, logits, gt, ids)
                print([tuple(o.shape) for o in out] == [(2, 0), (2, 0, 4), (2, 0, 4)])
"""


def test_no_anchors_give_empty_targets_on_every_path():
    # In a subprocess: MXNet's bipartite matcher divides by zero without anchors (SIGFPE),
    # which would kill pytest itself.
    import subprocess
    import sys
    done = subprocess.run([sys.executable, '-c', _NO_ANCHORS], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ['True'] * 17


@pytest.mark.parametrize('kwargs, name', [
    ({'iou_thresh': 0}, 'iou_thresh'), ({'neg_thresh': 1.5}, 'neg_thresh'),
    ({'stds': (0.1, 0.1, 0.2)}, 'stds'), ({'stds': (0.1, 0.1, 0.2, 0)}, 'stds'),
    ({'stds': 0.1}, 'stds')])
def test_bad_target_settings_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SSDTargetGenerator(**kwargs)


@pytest.mark.parametrize('shape', [(2, 600, 1), (2, 599, 5), (1, 600, 5), (2, 600)])
def test_cls_preds_of_the_wrong_shape_raise_value_error_naming_cls_preds(shape, backend):
    anc, _, gt, ids = target_inputs(16)
    with backend(), pytest.raises(ValueError, match=r'^cls_preds must have shape'):
        SSDTargetGenerator(negative_mining_ratio=3)(anc, mx.nd.zeros(shape), gt, ids)


def test_integer_cls_preds_raise_value_error_naming_cls_preds(backend):
    anc, preds, gt, ids = target_inputs(16)
    with backend(), pytest.raises(ValueError, match=r'^cls_preds must have a float dtype'):
        SSDTargetGenerator(negative_mining_ratio=3)(anc, preds.astype('int32'), gt, ids)


def test_differs_from_gluoncv_target_mining_counts_in_double_precision():
    # 100 anchors sit on 100 boxes (the positives); 40 more overlap none (the candidates).
    rng = np.random.RandomState(17)
    corners = np.concatenate([np.stack([np.arange(100) * 0.005] * 2, -1),
                              np.stack([np.arange(100) * 0.005 + 0.004] * 2, -1)], -1) * 0.5
    far = np.tile([[0.8, 0.8, 0.9, 0.9]], (40, 1))
    boxes_ = np.concatenate([corners, far])
    centers = np.concatenate([(boxes_[:, :2] + boxes_[:, 2:]) / 2, boxes_[:, 2:] - boxes_[:, :2]],
                             -1)
    anc = mx.nd.array(centers[None])
    args = (anc, mx.nd.array(rng.randn(1, 140, 3)), mx.nd.array(corners[None]),
            mx.nd.zeros((1, 100, 1)))
    theirs = GLUONCV_GENERATOR(negative_mining_ratio=0.29)(*args)[0].asnumpy()
    ours = sg.SSDTargetGenerator(negative_mining_ratio=0.29)(*args)[0].asnumpy()
    assert (theirs > 0).sum() == (ours > 0).sum() == 100
    assert (theirs == 0).sum() == 29  # float32: 0.29 * 100 rounds to 29.0
    assert (ours == 0).sum() == int(0.29 * 100) == 28  # OHEMSampler's double precision


@pytest.mark.parametrize('hard', [np.array([1, 0, 0]), np.array([2, 0])])
def test_bad_hard_flags_raise_value_error(hard):
    anc, gt, ids = hard_case()
    with pytest.raises(ValueError, match='hard'):
        SSDTargetGenerator(negative_mining_ratio=-1)(anc, None, gt, ids, hard=hard)


def test_target_generator_pickles():
    args = target_inputs(3)
    gen = sg.SSDTargetGenerator(negative_mining_ratio=3)
    copy = pickle.loads(pickle.dumps(gen))
    for a, b in zip(gen(*args), copy(*args)):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())


# --------------------------------------------------------------------------- the transform
IMAGE = mx.nd.array(np.random.RandomState(0).randint(0, 255, (200, 300, 3)), dtype='uint8')
LABEL = np.array([[10, 20, 100, 150, 3, 0], [120, 30, 280, 190, 7, 0], [50, 50, 90, 120, 1, 0]],
                 np.float32)


def apply(transform, lab, seed=3):
    np.random.seed(seed)
    mx.random.seed(seed)
    random.seed(seed)  # GluonCV's random crop draws from Python's generator
    return transform(IMAGE, lab)


def same(a, b, ulp=False):
    """Equal outputs; ``ulp``: box targets (last output) only to float32 rounding."""
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert type(x) is type(y) and x.dtype == y.dtype and x.shape == y.shape
        x, y = (v.asnumpy() if isinstance(v, mx.nd.NDArray) else v for v in (x, y))
        if ulp and i == len(a) - 1:
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize('columns', [5, 6])
def test_transform_with_zero_flags_equals_gluoncv(anchors, columns):
    for seed in (3, 4):
        same(apply(sg.SSDTrainTransform(SIZE, SIZE, anchors), LABEL[:, :columns], seed),
             apply(GluonCVTransform(SIZE, SIZE, anchors), LABEL[:, :columns], seed), ulp=True)


def test_transform_without_anchors_is_gluoncv(anchors):
    same(apply(sg.SSDTrainTransform(SIZE, SIZE), LABEL), apply(GluonCVTransform(SIZE, SIZE),
                                                               LABEL))


def test_transform_hard_box_gives_no_positive_and_ignored_anchors(anchors):
    hard = LABEL.copy()
    hard[:, 5] = 1
    cls_t = apply(sg.SSDTrainTransform(SIZE, SIZE, anchors), hard)[1].asnumpy()
    plain = apply(sg.SSDTrainTransform(SIZE, SIZE, anchors), LABEL)[1].asnumpy()
    assert (plain > 0).sum() > 0 and (cls_t > 0).sum() == 0
    np.testing.assert_array_equal(cls_t < 0, plain > 0)  # positives became ignored


def test_transform_hard_column_none_reads_no_flags(anchors):
    hard = LABEL.copy()
    hard[:, 5] = 1
    same(apply(sg.SSDTrainTransform(SIZE, SIZE, anchors, hard_column=None), hard),
         apply(GluonCVTransform(SIZE, SIZE, anchors), hard), ulp=True)


def test_transform_rejects_a_hard_column_that_is_not_0_1(anchors):
    bad = LABEL.copy()
    bad[0, 5] = 0.3
    with pytest.raises(ValueError, match='hard_column'):
        apply(sg.SSDTrainTransform(SIZE, SIZE, anchors), bad)


def test_transform_pickles_with_its_hard_column(anchors):
    hard = LABEL.copy()
    hard[1, 5] = 1
    transform = sg.SSDTrainTransform(SIZE, SIZE, anchors, hard_column=5)
    copy = pickle.loads(pickle.dumps(transform))
    assert type(copy) is sg.SSDTrainTransform
    same(apply(copy, hard), apply(transform, hard))


# --------------------------------------------------------------------------- install()
def test_install_patches_the_ssd_transform_loss_and_generator(anchors):
    built_before = GluonCVTransform(SIZE, SIZE, anchors)
    hard = LABEL.copy()
    hard[1, 5] = 1
    sg.install()
    assert gluoncv.loss.SSDMultiBoxLoss is sg.SSDMultiBoxLoss
    assert ssd_target.SSDTargetGenerator is sg.SSDTargetGenerator
    want = apply(sg.SSDTrainTransform(SIZE, SIZE, anchors), hard)
    same(apply(built_before, hard), want)
    same(apply(GluonCVTransform(SIZE, SIZE, anchors), hard), want)
    copy = pickle.loads(pickle.dumps(built_before))
    assert type(copy) is sg.SSDTrainTransform  # a spawned worker keeps the hard flags
    same(apply(copy, hard), want)


def test_second_install_leaves_the_hard_column_of_transforms_built_before_it(anchors):
    hard = LABEL.copy()
    hard[:, 5] = 1
    sg.install()
    used, unused = GluonCVTransform(SIZE, SIZE, anchors), GluonCVTransform(SIZE, SIZE, anchors)
    assert not (apply(used, hard)[1].asnumpy() > 0).any()
    sg.install(hard_column=None)
    for transform in (used, unused):
        assert not (apply(transform, hard)[1].asnumpy() > 0).any()
        copy_ = pickle.loads(pickle.dumps(transform))  # as a worker process gets it
        assert not (apply(copy_, hard)[1].asnumpy() > 0).any()
    assert (apply(GluonCVTransform(SIZE, SIZE, anchors), hard)[1].asnumpy() > 0).any()


def test_uninstall_restores_gluoncv_ssd_objects(anchors):
    transform = GluonCVTransform(SIZE, SIZE, anchors)
    hard = LABEL.copy()
    hard[1, 5] = 1
    want = apply(transform, hard)
    sg.install()
    apply(transform, hard)
    sg.uninstall()
    assert gluoncv.loss.SSDMultiBoxLoss is GLUONCV_LOSS
    assert ssd_target.SSDTargetGenerator is GLUONCV_GENERATOR
    original_call = sg.transforms._GLUONCV_SSD_CALL
    assert vars(GluonCVTransform)['__call__'] is original_call
    same(apply(transform, hard), want)


# ------------------------------------------------------------------ properties
@settings(max_examples=25)
@given(seed=st.integers(0, 2 ** 31 - 1), ratio=st.sampled_from([0, 1, 2.5, 3]),
       min_hard=st.integers(0, 6), ignored=st.sampled_from([0.0, 0.3, 0.9]))
def test_property_mining_invariants_on_both_backends(seed, ratio, min_hard, ignored):
    rng = np.random.RandomState(seed)
    target = rng.choice([0, 0, 0, 1, 2], size=(3, 40)).astype(np.float32)
    target[(target == 0) & (rng.uniform(size=target.shape) < ignored)] = -1
    loss = rng.uniform(0, 5, target.shape).astype(np.float32)
    finite = (rng.uniform(size=target.shape) > 0.1).astype(np.float32)
    rule = SSDMultiBoxLoss(ratio, min_hard_negatives=min_hard)
    got = rule.cls_loss_mask(target, loss, finite)
    with force_ndarray_backend():
        on_device = rule.cls_loss_mask(*(mx.nd.array(a) for a in (target, loss, finite))).asnumpy()
    np.testing.assert_array_equal(got, on_device)
    assert (got[target > 0] == 1).all()                         # positives always count
    assert not got[target < 0].any()                            # ignored: never mined
    assert not got[(target == 0) & (finite == 0)].any()         # non-finite: never mined
    candidates = (target == 0) & (finite > 0)
    mined = (got > 0) & candidates
    quota = np.maximum(min_hard, np.ceil(ratio * (target > 0).sum(1)))
    np.testing.assert_array_equal(mined.sum(1), np.minimum(quota, candidates.sum(1)))
    for b in range(3):                                          # the hardest are mined
        if mined[b].any() and (candidates[b] & ~mined[b]).any():
            assert loss[b][mined[b]].min() >= loss[b][candidates[b] & ~mined[b]].max()


def test_ndarray_hard_flags_stay_on_the_device_and_equal_numpy_flags():
    # The device path reads NDArray flags with mx.nd ops (no host copy); -1 marks padding.
    anc, gt, ids = hard_case()
    flags = np.array([[1, -1]], np.float32)
    want = SSDTargetGenerator(negative_mining_ratio=-1)(anc, None, gt, ids, hard=flags)
    with force_ndarray_backend():
        got = SSDTargetGenerator(negative_mining_ratio=-1)(anc, None, gt, ids,
                                                            hard=mx.nd.array(flags))
    np.testing.assert_array_equal(got[0].asnumpy(), want[0].asnumpy())  # classes
    np.testing.assert_allclose(got[1].asnumpy(), want[1].asnumpy(), atol=1e-6)  # mx.nd's log
    np.testing.assert_array_equal(got[2].asnumpy(), want[2].asnumpy())  # masks
    with force_ndarray_backend(), pytest.raises(ValueError, match='hard must have shape'):
        SSDTargetGenerator(negative_mining_ratio=-1)(anc, None, gt, ids, hard=mx.nd.ones((3,)))
