"""OHEMSampler: the specification, as tests.

Rule under test (see samplers/ohem.py): positives (x >= 0) are 1; candidates
are unmatched anchors with max IoU < thresh and finite inputs; per image the
min(max(min_samples, floor(ratio * num_pos)), num_candidates) candidates with
the largest background loss are -1; the rest 0. Rule tests run on both
backends (the ``mine`` fixture): numpy, and mx.nd as on a GPU.
"""
import logging
import pickle
import sys
import threading

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from samplers._arrays import force_ndarray_backend, host_view
from samplers.boxes import box_iou
from samplers.nms import greedy_nms_first
from samplers.background import background_loss
from samplers.ohem import OHEMSampler

from helpers import reference_background_loss

gluoncv_sampler = pytest.importorskip('gluoncv.nn.sampler')


# --------------------------------------------------------------------------- helpers
CPU = mx.cpu()


def nd(*arrays, ctx=CPU):
    return [None if a is None else mx.nd.array(a, ctx=ctx, dtype=a.dtype) for a in arrays]


@pytest.fixture(params=['numpy', 'mx.nd'])
def mine(request):
    """Call a sampler on numpy input, or on NDArrays through the mx.nd (GPU) path."""
    def call(sampler, x, logits, ious, scores=None, boxes=None):
        if request.param == 'numpy':
            return sampler(x, logits, ious, scores=scores, boxes=boxes)
        with force_ndarray_backend():
            return sampler(*nd(x, logits, ious, scores, boxes)).asnumpy()
    return call


def gluoncv(ratio, x, logits, ious, min_samples=0, thresh=0.5):
    sampler = gluoncv_sampler.OHEMSampler(ratio, min_samples=min_samples, thresh=thresh)
    return sampler(*nd(x, logits, ious)).asnumpy()


def one_positive(num_anchors):
    """x for one image: anchor 0 matched, the rest unmatched."""
    x = np.full((1, num_anchors), -1.0, np.float32)
    x[0, 0] = 0
    return x


def hard_last(num_anchors, num_class=2):
    """Logits whose background loss grows with the anchor index."""
    logits = np.zeros((1, num_anchors, num_class), np.float32)
    logits[0, :, 1] = np.arange(num_anchors, dtype=np.float32)
    return logits


def no_overlap(num_anchors):
    return np.zeros((1, num_anchors), np.float32)


def well_posed(rng, batch, num, num_class, num_gt, ratio, min_samples=0, thresh=0.5, flat=False):
    """A batch where GluonCV's sampler is well posed: enough candidates, distinct losses."""
    x = np.full((batch, num), -1.0, np.float32)
    for b in range(batch):
        most = min(5, int(0.6 * num / (ratio + 1)))
        pos = rng.choice(num, rng.randint(0, most + 1), replace=False)
        x[b, pos] = rng.randint(0, num_gt, pos.size)
    ious = rng.uniform(0, thresh * 0.99, (batch, num, num_gt)).astype(np.float32)
    ignored = (x < 0) & (rng.uniform(size=x.shape) < 0.2)  # unmatched but overlapping
    ious[ignored, 0] = rng.uniform(thresh, 1, ignored.sum())
    ious[x >= 0, 0] = rng.uniform(thresh, 1, (x >= 0).sum())
    logits = (rng.randn(batch, num, num_class) * 3).astype(np.float32)
    loss = np.sort(reference_background_loss(logits), axis=1)
    assert (np.diff(loss, axis=1) > 2e-5).all(), 'regenerate: near-tied losses'
    quota = np.maximum(min_samples, np.floor(ratio * (x >= 0).sum(1)))
    assert (quota <= ((x < 0) & (ious.max(-1) < thresh)).sum(1)).all(), 'not enough candidates'
    return x, logits, (ious.max(-1) if flat else ious)


def corner_boxes(rng, shape):
    xy = rng.uniform(0, 10, shape + (2,))
    wh = rng.uniform(0.5, 4, shape + (2,))
    return np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------- the rule
def test_matched_anchors_are_positive(mine):
    x = np.array([[2, -1, 0, -1]], np.float32)
    out = mine(OHEMSampler(1), x, hard_last(4), no_overlap(4))
    assert out[0, 0] == 1 and out[0, 2] == 1


def test_negative_count_is_floor_of_ratio_times_positives(mine):
    x = np.full((1, 20), -1.0, np.float32)
    x[0, :3] = 0
    out = mine(OHEMSampler(1.7), x, hard_last(20), no_overlap(20))
    assert (out == -1).sum() == int(1.7 * 3)


def test_min_samples_gives_negatives_to_an_image_without_positives(mine):
    x = np.full((1, 10), -1.0, np.float32)
    out = mine(OHEMSampler(3, min_samples=4), x, hard_last(10), no_overlap(10))
    assert (out == -1).sum() == 4


def test_min_samples_is_a_floor_not_an_addition(mine):
    out = mine(OHEMSampler(3, min_samples=2), one_positive(10), hard_last(10), no_overlap(10))
    assert (out == -1).sum() == 3


@pytest.mark.parametrize('kwargs', [dict(ratio=1e19), dict(ratio=1e300),
                                    dict(ratio=1, min_samples=10 ** 19),
                                    dict(ratio=1, min_samples=10 ** 400)])
def test_quota_beyond_int64_takes_every_candidate(kwargs, mine):
    out = mine(OHEMSampler(**kwargs), one_positive(4), hard_last(4), no_overlap(4))
    np.testing.assert_array_equal(out[0], [1, -1, -1, -1])


@pytest.mark.parametrize('kwargs', [dict(ratio=1e19), dict(ratio=1, min_samples=10 ** 19)])
def test_quota_beyond_int64_takes_every_survivor_when_deduplicating(kwargs, mine):
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]]], np.float32)
    out = mine(OHEMSampler(nms_thresh=0.5, **kwargs), one_positive(4), hard_last(4),
               no_overlap(4), boxes=boxes)
    np.testing.assert_array_equal(out[0], [1, -1, -1, -1])


def test_the_hardest_candidates_are_chosen(mine):
    out = mine(OHEMSampler(2), one_positive(6), hard_last(6), no_overlap(6))
    np.testing.assert_array_equal(out[0], [1, 0, 0, 0, -1, -1])


def test_anchor_with_iou_at_thresh_is_never_negative(mine):
    ious = np.array([[0.0, 0.0, 0.4999, 0.5]], np.float32)
    out = mine(OHEMSampler(2, thresh=0.5), one_positive(4), hard_last(4), ious)
    np.testing.assert_array_equal(out[0], [1, -1, -1, 0])


def test_fewer_candidates_than_wanted_takes_all_candidates_only(mine):
    ious = np.array([[0.9, 0.1, 0.8, 0.7]], np.float32)
    out = mine(OHEMSampler(3), one_positive(4), hard_last(4), ious)
    np.testing.assert_array_equal(out[0], [1, -1, 0, 0])


def test_counts_are_per_image(mine):
    x = np.full((2, 12), -1.0, np.float32)
    x[0, :1] = 0
    x[1, :3] = 0
    logits = np.concatenate([hard_last(12)] * 2)
    out = mine(OHEMSampler(2), x, logits, np.zeros((2, 12), np.float32))
    assert list((out == -1).sum(1)) == [2, 6]


def test_ties_go_to_the_lower_anchor_index(mine):
    logits = np.zeros((1, 6, 2), np.float32)
    out = mine(OHEMSampler(2), one_positive(6), logits, no_overlap(6))
    np.testing.assert_array_equal(out[0], [1, -1, -1, 0, 0, 0])


def test_best_iou_and_all_ious_give_the_same_labels(mine):
    rng = np.random.RandomState(0)
    x, logits, ious = well_posed(rng, 2, 30, 3, 4, ratio=2)
    np.testing.assert_array_equal(mine(OHEMSampler(2), x, logits, ious),
                                  mine(OHEMSampler(2), x, logits, ious.max(-1)))


def test_no_ground_truth_gives_min_samples_negatives(mine):
    x = np.full((1, 8), -1.0, np.float32)
    out = mine(OHEMSampler(3, min_samples=2), x, hard_last(8), np.zeros((1, 8, 0), np.float32))
    np.testing.assert_array_equal(out[0], [0] * 6 + [-1, -1])


def test_empty_batch_gives_empty_labels(mine):
    out = mine(OHEMSampler(3), np.zeros((0, 5), np.float32), np.zeros((0, 5, 3), np.float32),
               np.zeros((0, 5), np.float32))
    assert out.shape == (0, 5) and out.dtype == np.float32


def test_scores_rank_instead_of_logits(mine):
    scores = np.array([[0, 5, 1, 4, 2]], np.float32)
    out = mine(OHEMSampler(2), one_positive(5), None, no_overlap(5), scores=scores)
    np.testing.assert_array_equal(out[0], [1, -1, 0, -1, 0])


def test_scores_take_precedence_over_logits(mine):
    scores = np.array([[0, 5, 1, 4, 2]], np.float32)
    out = mine(OHEMSampler(2), one_positive(5), hard_last(5), no_overlap(5), scores=scores)
    np.testing.assert_array_equal(out[0], [1, -1, 0, -1, 0])


def test_nan_match_is_ignored(mine):
    x = np.array([[0, np.nan, -1, -1]], np.float32)
    out = mine(OHEMSampler(3), x, hard_last(4), no_overlap(4))
    np.testing.assert_array_equal(out[0], [1, 0, -1, -1])


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_logits_are_never_chosen(bad, mine):
    for column in (0, 1):
        logits = hard_last(4)
        logits[0, 3, column] = bad
        out = mine(OHEMSampler(3), one_positive(4), logits, no_overlap(4))
        np.testing.assert_array_equal(out[0], [1, -1, -1, 0])


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_iou_makes_the_anchor_ignored(bad, mine):
    ious = np.zeros((1, 4, 2), np.float32)
    ious[0, 3, 1] = bad
    out = mine(OHEMSampler(3), one_positive(4), hard_last(4), ious)
    np.testing.assert_array_equal(out[0], [1, -1, -1, 0])


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_never_chosen(bad, mine):
    scores = np.array([[0, 1, 2, bad]], np.float32)
    out = mine(OHEMSampler(3), one_positive(4), None, no_overlap(4), scores=scores)
    np.testing.assert_array_equal(out[0], [1, -1, -1, 0])


def test_non_finite_input_is_logged_once_per_sampler(caplog):
    logits = hard_last(4)
    logits[0, 3, 1] = np.nan
    args = (one_positive(4), logits, no_overlap(4))
    sampler = OHEMSampler(3)
    with caplog.at_level(logging.WARNING, logger='samplers'):
        sampler(*args)
        sampler(*args)
        OHEMSampler(3)(*args)
    assert [r.getMessage().count('logits') for r in caplog.records] == [1, 1]


def test_large_logits_rank_correctly_and_give_no_nan(mine):
    logits = np.array([[[0, 0], [1000, 0], [-1000, 0], [0, 1], [0, -1000]]], np.float32)
    out = mine(OHEMSampler(2), one_positive(5), logits, no_overlap(5))
    np.testing.assert_array_equal(out[0], [1, 0, -1, -1, 0])


# --------------------------------------------------------------------------- host views
def test_background_loss_reads_a_cpu_ndarray_in_place():
    logits = mx.nd.array(np.random.RandomState(2).randn(2, 5, 3))
    view = host_view(logits)
    assert not view.flags.writeable and view.ctypes.data == host_view(logits).ctypes.data
    np.testing.assert_array_equal(view, logits.asnumpy())
    np.testing.assert_array_equal(host_view(logits[1]), logits.asnumpy()[1])  # offset view
    np.testing.assert_array_equal(background_loss(view)[0],
                                  background_loss(logits.asnumpy())[0])


def test_host_view_of_an_mkldnn_result_is_in_the_default_layout():
    rng = np.random.RandomState(3)
    data, weight = mx.nd.array(rng.randn(2, 8, 9, 9)), mx.nd.array(rng.randn(16, 8, 3, 3))
    out = mx.nd.Activation(mx.nd.Convolution(data, weight, kernel=(3, 3), num_filter=16,
                                             no_bias=True), act_type='relu')
    np.testing.assert_array_equal(host_view(out), out.asnumpy())


def test_host_view_keeps_its_ndarray_alive():
    view = host_view(mx.nd.array(np.arange(6.0).reshape(2, 3)) * 2)
    mx.nd.waitall()
    mx.nd.ones((100, 100)).wait_to_read()  # would reuse a freed buffer
    np.testing.assert_array_equal(view, np.arange(6.0).reshape(2, 3) * 2)


# --------------------------------------------------------------------------- dtypes, contexts
@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_every_float_width_works_and_returns_float32(dtype, mine):
    rng = np.random.RandomState(1)
    x, logits, ious = well_posed(rng, 2, 20, 3, 2, ratio=3)
    want = OHEMSampler(3)(x, logits, ious)
    got = mine(OHEMSampler(3), x.astype(dtype), logits.astype(dtype), ious.astype(dtype))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got == 1, want == 1)
    np.testing.assert_array_equal((got == -1).sum(1), (want == -1).sum(1))


def test_integer_matches_work(mine):
    x = one_positive(5).astype(np.int32)
    out = mine(OHEMSampler(2), x, hard_last(5), no_overlap(5))
    np.testing.assert_array_equal(out[0], [1, 0, 0, -1, -1])


def test_numpy_input_gives_numpy_output():
    out = OHEMSampler(1)(one_positive(3), hard_last(3), no_overlap(3))
    assert isinstance(out, np.ndarray)


# --------------------------------------------------------------------------- hybridization
def test_hybridized_graph_equals_numpy_path():
    rng = np.random.RandomState(5)
    args = well_posed(rng, 3, 30, 4, 3, ratio=2, min_samples=1)
    want = OHEMSampler(2, min_samples=1)(*args)
    sampler = OHEMSampler(2, min_samples=1)
    sampler.hybridize()
    with force_ndarray_backend():
        for _ in range(2):  # build, then reuse the cached graph
            np.testing.assert_array_equal(sampler(*nd(*args)).asnumpy(), want)


def test_hybridized_dedup_graph_equals_numpy_path():
    rng = np.random.RandomState(11)
    args = well_posed(rng, 3, 40, 4, 3, ratio=3, min_samples=10)
    boxes = corner_boxes(rng, (3, 40))
    want = OHEMSampler(3, 10, nms_thresh=0.3)(*args, boxes=boxes)
    assert (want != OHEMSampler(3, 10)(*args)).any()  # the case does de-duplicate
    sampler = OHEMSampler(3, 10, nms_thresh=0.3)
    sampler.hybridize()
    with force_ndarray_backend():
        np.testing.assert_array_equal(sampler(*nd(*args, None, boxes)).asnumpy(), want)


def test_hybridized_graph_is_rebuilt_when_optional_inputs_change():
    rng = np.random.RandomState(6)
    x, logits, ious = well_posed(rng, 2, 20, 3, 2, ratio=2)
    scores = rng.randn(2, 20).astype(np.float32)
    sampler = OHEMSampler(2)
    sampler.hybridize()
    with force_ndarray_backend():
        by_logits = sampler(*nd(x, logits, ious)).asnumpy()
        by_scores = sampler(*nd(x, None, ious, scores)).asnumpy()
    np.testing.assert_array_equal(by_logits, OHEMSampler(2)(x, logits, ious))
    np.testing.assert_array_equal(by_scores, OHEMSampler(2)(x, None, ious, scores))


class _Head(mx.gluon.HybridBlock):
    """A network that mines its own negatives: what users hybridize and export."""

    def __init__(self, **kwargs):
        super(_Head, self).__init__(**kwargs)
        with self.name_scope():
            self.sampler = OHEMSampler(3, min_samples=2)

    def hybrid_forward(self, F, x, logits, ious):
        return self.sampler(x, logits * 1, ious)


def test_works_inside_an_exported_hybridized_network(tmp_path):
    rng = np.random.RandomState(7)
    args = well_posed(rng, 2, 30, 3, 2, ratio=3, min_samples=2)
    want = OHEMSampler(3, min_samples=2)(*args)
    head = _Head()
    head.hybridize()
    np.testing.assert_array_equal(head(*nd(*args)).asnumpy(), want)
    head.export(str(tmp_path / 'head'))
    loaded = mx.gluon.SymbolBlock.imports(str(tmp_path / 'head-symbol.json'),
                                          ['data0', 'data1', 'data2'])
    np.testing.assert_array_equal(loaded(*nd(*args)).asnumpy(), want)


def test_no_gradient_flows_through_the_sampler():
    x, logits, ious = nd(one_positive(4), hard_last(4), no_overlap(4))
    logits.attach_grad()
    with mx.autograd.record(), force_ndarray_backend():
        out = OHEMSampler(3)(x, logits, ious)
        total = (out * out).sum() + logits.sum() * 0
    total.backward()
    assert not logits.grad.asnumpy().any()


def test_picklable_after_running_a_hybridized_graph():
    rng = np.random.RandomState(13)
    args = nd(*well_posed(rng, 2, 20, 3, 2, ratio=2))
    sampler = OHEMSampler(2)
    sampler.hybridize()
    with force_ndarray_backend():
        want = sampler(*args).asnumpy()
        copy = pickle.loads(pickle.dumps(sampler))
        np.testing.assert_array_equal(copy(*args).asnumpy(), want)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('kwargs, name', [
    (dict(ratio=0), 'ratio'), (dict(ratio=-1), 'ratio'), (dict(ratio=np.inf), 'ratio'),
    (dict(ratio=np.nan), 'ratio'), (dict(ratio=1, min_samples=-1), 'min_samples'),
    (dict(ratio=1, min_samples=1.5), 'min_samples'), (dict(ratio=1, thresh=0), 'thresh'),
    (dict(ratio=1, thresh=1.01), 'thresh'), (dict(ratio=1, nms_thresh=1.5), 'nms_thresh'),
])
def test_bad_settings_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        OHEMSampler(**kwargs)


def _good():
    return (one_positive(4), hard_last(4, 3), np.zeros((1, 4, 2), np.float32))


@pytest.mark.parametrize('change, name', [
    (lambda x, lg, i: (x[0], lg, i), 'x'),
    (lambda x, lg, i: (x, lg[:, :3], i), 'logits'),
    (lambda x, lg, i: (x, lg[..., :1], i), 'logits'),
    (lambda x, lg, i: (x, lg[..., 0], i), 'logits'),
    (lambda x, lg, i: (x, lg, i[:, :3]), 'ious'),
    (lambda x, lg, i: (x, lg, i[..., None]), 'ious'),
    (lambda x, lg, i: (x, lg.astype(np.int32), i), 'logits'),
    (lambda x, lg, i: (x, lg, i.astype(np.int64)), 'ious'),
    (lambda x, lg, i: (x, None, i), 'logits'),
    (lambda x, lg, i: (x, mx.nd.array(lg), i), 'NDArrays'),
])
def test_bad_inputs_raise_value_error_naming_them(change, name):
    with pytest.raises(ValueError, match=name):
        OHEMSampler(1)(*change(*_good()))


def test_scores_of_the_wrong_shape_raise_value_error():
    with pytest.raises(ValueError, match='scores'):
        OHEMSampler(1)(*_good(), scores=np.zeros((1, 3), np.float32))


def test_inputs_on_two_contexts_raise_value_error():
    x, logits, ious = _good()
    with pytest.raises(ValueError, match='context'):
        OHEMSampler(1)(*nd(x, logits), nd(ious, ctx=mx.cpu(1))[0])


@pytest.mark.parametrize('nms_thresh, boxes, name', [
    (None, np.zeros((1, 4, 4), np.float32), 'nms_thresh'),
    (0.7, None, 'boxes'),
    (0.7, np.zeros((1, 4, 3), np.float32), 'boxes'),
    (0.7, np.zeros((1, 5, 4), np.float32), 'boxes'),
])
def test_boxes_and_nms_thresh_must_come_together_and_fit(nms_thresh, boxes, name):
    with pytest.raises(ValueError, match=name):
        OHEMSampler(1, nms_thresh=nms_thresh)(*_good(), boxes=boxes)


# --------------------------------------------------------------------------- against GluonCV
@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('flat', [False, True])
def test_matches_gluoncv_when_well_posed(seed, flat, mine):
    rng = np.random.RandomState(seed)
    ratio, min_samples, thresh = [(3, 0, 0.5), (1.5, 2, 0.4), (0.5, 0, 0.7), (2, 5, 0.5)][seed]
    x, logits, ious = well_posed(rng, 4, 60, 5, 3, ratio, min_samples, thresh, flat=flat)
    want = gluoncv(ratio, x, logits, ious, min_samples, thresh)
    ours = OHEMSampler(ratio, min_samples=min_samples, thresh=thresh)
    np.testing.assert_array_equal(mine(ours, x, logits, ious), want)


def test_differs_from_gluoncv_positives_are_never_overwritten():
    x = np.array([[0, 1, -1, -1]], np.float32)
    ious = np.array([[0.9, 0.9, 0.8, 0.1]], np.float32)
    logits = np.zeros((1, 4, 2), np.float32)
    theirs = gluoncv(1, x, logits, ious)
    ours = OHEMSampler(1)(x, logits, ious)
    assert (theirs[x >= 0] == -1).any()  # GluonCV fills its quota with a positive
    np.testing.assert_array_equal(ours[0], [1, 1, 0, -1])


def test_differs_from_gluoncv_high_iou_anchors_are_never_negative():
    x = one_positive(4)
    ious = np.array([[0.9, 0.8, 0.1, 0.7]], np.float32)
    logits = hard_last(4)
    theirs = gluoncv(2, x, logits, ious)
    ours = OHEMSampler(2)(x, logits, ious)
    assert (theirs[0, [0, 1, 3]] == -1).any()  # GluonCV fills up with a non-candidate
    np.testing.assert_array_equal(ours[0], [1, 0, -1, 0])


def test_differs_from_gluoncv_large_logits_give_no_nan():
    logits = np.array([[[0, 0], [1000, 0], [-1000, 0], [0, 1]]], np.float32)
    x, ious = one_positive(4), no_overlap(4)
    theirs = gluoncv(2, x, logits, ious)
    ours = OHEMSampler(2)(x, logits, ious)
    assert not np.array_equal(theirs, ours)  # their background loss is NaN for anchor 1
    np.testing.assert_array_equal(ours[0], [1, 0, -1, -1])


def test_differs_from_gluoncv_non_finite_logits_are_never_chosen():
    logits = hard_last(4)
    logits[0, 1, 0] = -np.inf  # GluonCV: infinitely hard
    x, ious = one_positive(4), no_overlap(4)
    theirs = gluoncv(1, x, logits, ious)
    ours = OHEMSampler(1)(x, logits, ious)
    assert theirs[0, 1] == -1
    np.testing.assert_array_equal(ours[0], [1, 0, 0, -1])


def test_differs_from_gluoncv_quota_is_computed_in_double_precision():
    x = np.full((1, 140), -1.0, np.float32)
    x[0, :100] = 0
    logits = np.random.randn(1, 140, 2).astype(np.float32)
    ious = no_overlap(140)
    theirs = gluoncv(0.29, x, logits, ious)
    ours = OHEMSampler(0.29)(x, logits, ious)
    assert (theirs == -1).sum() == 29  # float32: 0.29 * 100 rounds up to 29.0
    assert (ours == -1).sum() == int(0.29 * 100) == 28


# --------------------------------------------------------------------------- de-duplication
def greedy_reference(loss, candidate, boxes, quota, thresh):
    """Full greedy NMS over one image's candidates, hardest first; then the first quota."""
    order = [i for i in np.argsort(-loss, kind='stable') if candidate[i]]
    overlap = box_iou(boxes.astype(np.float64), boxes.astype(np.float64)) > thresh
    kept = []
    for i in order:
        if not any(overlap[i, j] for j in kept):
            kept.append(i)
    chosen = np.zeros(loss.shape, bool)
    chosen[kept[:quota]] = True
    return chosen


def test_dedup_skips_a_candidate_overlapping_a_harder_chosen_one(mine):
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 0.9], [5, 5, 6, 6]]], np.float32)
    scores = np.array([[0, 3, 2, 1]], np.float32)  # anchor 0 is the positive
    out = mine(OHEMSampler(2, nms_thresh=0.7), one_positive(4), None, no_overlap(4),
               scores=scores, boxes=boxes)
    np.testing.assert_array_equal(out[0], [1, -1, 0, -1])


def test_dedup_at_iou_equal_to_nms_thresh_keeps_both(mine):
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 2, 1], [0, 0, 1, 1]]], np.float32)  # IoU 0.5
    out = mine(OHEMSampler(2, nms_thresh=0.5), one_positive(3), hard_last(3), no_overlap(3),
               boxes=boxes)
    np.testing.assert_array_equal(out[0], [1, -1, -1])


def test_dedup_with_nms_thresh_one_changes_nothing(mine):
    rng = np.random.RandomState(9)
    args = well_posed(rng, 2, 30, 3, 2, ratio=3)
    boxes = np.tile(np.array([0, 0, 1, 1], np.float32), (2, 30, 1))  # all identical
    np.testing.assert_array_equal(mine(OHEMSampler(3, nms_thresh=1), *args, boxes=boxes),
                                  OHEMSampler(3)(*args))


def test_dedup_takes_fewer_when_survivors_run_out(mine):
    boxes = np.tile(np.array([0, 0, 1, 1], np.float32), (1, 6, 1))
    out = mine(OHEMSampler(3, nms_thresh=0.7), one_positive(6), hard_last(6), no_overlap(6),
               boxes=boxes)
    np.testing.assert_array_equal(out[0], [1, 0, 0, 0, 0, -1])


def test_dedup_ignores_candidates_with_non_finite_boxes(mine):
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [3, 3, 4, 4], [5, 5, np.nan, 6]]], np.float32)
    out = mine(OHEMSampler(3, nms_thresh=0.5), one_positive(4), hard_last(4), no_overlap(4),
               boxes=boxes)
    np.testing.assert_array_equal(out[0], [1, -1, -1, 0])


def test_greedy_nms_first_stops_after_k_survivors_across_blocks():
    rng = np.random.RandomState(10)
    boxes = corner_boxes(rng, (400,))
    full = greedy_reference(-np.arange(400.0), np.ones(400, bool), boxes, 400, 0.3)
    for k in (1, 70, 150, 400):
        got = np.zeros(400, bool)
        got[greedy_nms_first(boxes.astype(np.float64), k, 0.3)] = True
        want = np.zeros(400, bool)
        want[np.flatnonzero(full)[:k]] = True
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- properties
quarter = st.integers(-32, 32).map(lambda v: v / 4.0)
iou_values = st.sampled_from([0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0])


@st.composite
def batches(draw, num_class=None, max_anchors=40):
    batch = draw(st.integers(1, 3))
    num = draw(st.integers(1, max_anchors))
    num_class = num_class or draw(st.integers(2, 4))
    num_gt = draw(st.integers(0, 3))
    x = draw(hnp.arrays(np.float32, (batch, num), elements=st.sampled_from([-1.0, 0.0, 1.0])))
    logits = draw(hnp.arrays(np.float32, (batch, num, num_class), elements=quarter))
    ious = draw(hnp.arrays(np.float32, (batch, num, num_gt), elements=iou_values))
    ratio = draw(st.sampled_from([0.5, 1, 2.5, 3]))
    min_samples = draw(st.integers(0, 5))
    thresh = draw(st.sampled_from([0.3, 0.5, 1.0]))
    return x, logits, ious, ratio, min_samples, thresh


def _run(case):
    x, logits, ious, ratio, min_samples, thresh = case
    return OHEMSampler(ratio, min_samples=min_samples, thresh=thresh)(x, logits, ious)


def _candidates(case):
    x, _, ious, _, _, thresh = case
    best = ious.max(-1) if ious.shape[-1] else np.zeros(x.shape, np.float32)
    return (x < 0) & (best < thresh)


@settings(max_examples=300, deadline=None)
@given(batches())
def test_property_positives_untouched_count_formula_thresh_and_hardest(case):
    """Four invariants of one run on each generated case (one sampler run checks them all)."""
    x, _, _, ratio, min_samples, _ = case
    out, candidates = _run(case), _candidates(case)
    # Positives untouched: every matched anchor is positive, nothing else is.
    np.testing.assert_array_equal(out == 1, x >= 0)
    # The count: min(max(min_samples, floor(ratio * positives)), candidates) per image.
    want = np.minimum(np.maximum(min_samples, np.floor(ratio * (x >= 0).sum(1))),
                      candidates.sum(1))
    np.testing.assert_array_equal((out == -1).sum(1), want)
    # Only candidates (unmatched, max IoU < thresh) are ever negative.
    assert not ((out == -1) & ~candidates).any()
    # The chosen are the hardest candidates.
    loss = reference_background_loss(case[1])
    for row_out, row_loss, row_cand in zip(out, loss, candidates):
        chosen, passed = row_loss[row_out == -1], row_loss[row_cand & (row_out != -1)]
        if chosen.size and passed.size:
            assert chosen.min() >= passed.max() - 1e-5


@settings(max_examples=150, deadline=None)
@given(batches(num_class=2, max_anchors=25))
def test_property_mx_path_equals_numpy_path(case):
    """Both backends give the same labels, ties included.

    Two classes and quarter-step logits make exact ties common (equal logit gaps). Both
    paths compute the loss from the gaps alone, so those ties are exact on both, and both
    break them to the lower index.
    """
    want = _run(case)
    x, logits, ious, ratio, min_samples, thresh = case
    with force_ndarray_backend():
        got = OHEMSampler(ratio, min_samples=min_samples, thresh=thresh)(
            *nd(x, logits, ious)).asnumpy()
    np.testing.assert_array_equal(got, want)


@settings(max_examples=150, deadline=None)
@given(batches(max_anchors=25), st.data())
def test_property_dedup_is_greedy_nms_then_quota_on_both_paths(case, data):
    x, _, ious, ratio, min_samples, thresh = case
    scores = data.draw(hnp.arrays(np.float32, x.shape, elements=quarter))
    corner = data.draw(hnp.arrays(np.float32, x.shape + (2,), elements=quarter))
    size = data.draw(hnp.arrays(np.float32, x.shape + (2,), elements=st.integers(0, 12)))
    boxes = np.concatenate([corner, corner + size / 4], axis=-1)  # some of zero area
    nms_thresh = data.draw(st.sampled_from([0.0, 0.3, 0.7]))
    sampler = OHEMSampler(ratio, min_samples=min_samples, thresh=thresh, nms_thresh=nms_thresh)
    got = sampler(x, None, ious, scores=scores, boxes=boxes)
    candidate = _candidates(case)
    quota = np.maximum(min_samples, np.floor(ratio * (x >= 0).sum(1))).astype(int)
    for b in range(x.shape[0]):
        want = greedy_reference(scores[b], candidate[b], boxes[b], quota[b], nms_thresh)
        np.testing.assert_array_equal(got[b] == -1, want)
    with force_ndarray_backend():
        on_mx = sampler(*nd(x, None, ious, scores, boxes))
    np.testing.assert_array_equal(on_mx.asnumpy(), got)


# --------------------------------------------------------------------------- no per-call state
def float64_only_case():
    """One positive, ratio 1: the harder of two candidates differs only beyond float32."""
    x = np.array([[0, -1, -1]], np.float64)
    logits = np.array([[[0, 0], [0, 1 + 1e-12], [0, 1 + 2e-12]]], np.float64)
    ious = np.zeros((1, 3), np.float64)
    return x, logits, ious


def test_float64_case_needs_float64():
    x, logits, ious = float64_only_case()
    np.testing.assert_array_equal(OHEMSampler(1)(x, logits, ious)[0], [1, 0, -1])
    as32 = OHEMSampler(1)(x, logits.astype(np.float32), ious)
    np.testing.assert_array_equal(as32[0], [1, -1, 0])  # tied in float32: lower index


def test_a_call_leaves_no_dtype_on_the_sampler():
    sampler = OHEMSampler(1)
    with force_ndarray_backend():
        sampler(*nd(*[a.astype(np.float32) for a in float64_only_case()]))
        before = {k: v for k, v in vars(sampler).items() if not k.startswith('_cached')}
        sampler(*nd(*float64_only_case()))
        after = {k: v for k, v in vars(sampler).items() if not k.startswith('_cached')}
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] or after[k] == before[k] for k in before)


@pytest.mark.parametrize('hybridize', [False, True])
def test_threads_sharing_a_sampler_each_compute_in_their_own_width(hybridize):
    sampler = OHEMSampler(1)
    if hybridize:
        sampler.hybridize()
    wide = nd(*float64_only_case())
    narrow = nd(*[a.astype(np.float32) for a in float64_only_case()])
    wrong = []
    start = threading.Barrier(2)

    def run(args, want):
        start.wait()
        with force_ndarray_backend():
            for _ in range(30):
                got = sampler(*args).asnumpy()[0].tolist()
                if got != want:
                    wrong.append(got)

    threads = [threading.Thread(target=run, args=(wide, [1, 0, -1])),
               threading.Thread(target=run, args=(narrow, [1, -1, 0]))]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, to meet any shared state
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong
