"""The floors under the samplers: backend checks, warn-once; IoU/IoF, matching, encoding."""
import contextlib

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import samplers
from samplers import _arrays, boxes as B


def random_boxes(rng, n, size=100.0, max_wh=50.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(0, max_wh, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)

# ----------------------------------------------------------------------------- box_iou
def test_box_iou_is_exported_at_package_top():
    assert samplers.box_iou is B.box_iou

def test_box_iou_equals_mxnet_contrib_box_iou_bit_for_bit():
    rng = np.random.RandomState(0)
    a, b = random_boxes(rng, 300), random_boxes(rng, 40)
    ref = mx.nd.contrib.box_iou(mx.nd.array(a), mx.nd.array(b), format='corner').asnumpy()
    np.testing.assert_array_equal(B.box_iou(a, b), ref)

def test_box_iou_of_ndarrays_equals_mxnet_on_both_backends():
    rng = np.random.RandomState(1)
    a, b = random_boxes(rng, 200), random_boxes(rng, 30)
    ref = mx.nd.contrib.box_iou(mx.nd.array(a), mx.nd.array(b)).asnumpy()
    na, nb = mx.nd.array(a, ctx=mx.cpu(1)), mx.nd.array(b, ctx=mx.cpu(1))
    np.testing.assert_array_equal(B.box_iou(na, nb).asnumpy(), ref)
    with samplers.force_ndarray_backend():
        out = B.box_iou(na, nb)
    np.testing.assert_allclose(out.asnumpy(), ref, rtol=1e-6, atol=1e-7)

def test_box_iou_center_format_equals_corner_format():
    rng = np.random.RandomState(2)
    a, b = random_boxes(rng, 50), random_boxes(rng, 7)
    np.testing.assert_allclose(B.box_iou(B.corner_to_center(a), B.corner_to_center(b),
                                         fmt='center'), B.box_iou(a, b), atol=1e-6)

def test_box_iou_batched_pairs_each_image_with_its_own_boxes():
    rng = np.random.RandomState(3)
    a = np.stack([random_boxes(rng, 20), random_boxes(rng, 20)])
    b = np.stack([random_boxes(rng, 5), random_boxes(rng, 5)])
    out = B.box_iou(a, b)
    assert out.shape == (2, 20, 5)
    for i in range(2):
        np.testing.assert_array_equal(out[i], B.box_iou(a[i], b[i]))
    with samplers.force_ndarray_backend():
        nd_out = B.box_iou(mx.nd.array(a), mx.nd.array(b)).asnumpy()
    np.testing.assert_allclose(nd_out, out, rtol=1e-6, atol=1e-7)

@pytest.mark.parametrize('degenerate', [[5, 5, 5, 5], [5, 5, 5, 9], [9, 9, 1, 1], [9, 1, 1, 9]])
def test_box_iou_zero_area_and_inverted_boxes_give_zero_not_nan(degenerate):
    a = np.array([degenerate], np.float32)
    b = np.array([[0, 0, 10, 10], list(degenerate)], np.float32)
    out = B.box_iou(a, b)
    np.testing.assert_array_equal(out, np.zeros((1, 2), np.float32))
    with samplers.force_ndarray_backend():
        np.testing.assert_array_equal(B.box_iou(mx.nd.array(a), mx.nd.array(b)).asnumpy(), 0)

@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_box_iou_non_finite_coordinates_give_nan_for_that_box_only(bad):
    a = np.array([[0, 0, bad, 4], [0, 0, 4, 4]], np.float32)
    b = np.array([[0, 0, 4, 4]], np.float32)
    out = B.box_iou(a, b)
    assert np.isnan(out[0, 0]) and out[1, 0] == 1.0
    with samplers.force_ndarray_backend():
        nd_out = B.box_iou(mx.nd.array(a), mx.nd.array(b)).asnumpy()
    assert np.isnan(nd_out[0, 0]) and nd_out[1, 0] == 1.0

def test_box_iou_empty_sides_give_empty_matrices():
    b = np.ones((3, 4), np.float32)
    assert B.box_iou(np.zeros((0, 4), np.float32), b).shape == (0, 3)
    assert B.box_iou(b, np.zeros((0, 4), np.float32)).shape == (3, 0)

@pytest.mark.parametrize('fmt', ['corner', 'center'])
@pytest.mark.parametrize('shapes', [((3, 4), (0, 4)), ((0, 4), (3, 4)), ((2, 3, 4), (2, 0, 4)),
                                    ((0, 3, 4), (0, 2, 4))], ids=str)
@pytest.mark.parametrize('forced', [False, True], ids=['default', 'forced-nd'])
def test_box_iou_and_iof_of_empty_ndarrays_give_empty_matrices_on_both_paths(shapes, forced,
                                                                            fmt):
    a, b = (mx.nd.array(np.ones(s, np.float32), ctx=mx.cpu(1)) for s in shapes)
    want = shapes[0][:-1] + shapes[1][-2:-1]
    with samplers.force_ndarray_backend() if forced else contextlib.nullcontext():
        for f in (B.box_iou, B.box_iof):
            out = f(a, b, fmt=fmt)
            assert out.shape == want and out.context == mx.cpu(1) and out.dtype == np.float32


@pytest.mark.parametrize('forced', [False, True], ids=['default', 'forced-nd'])
@pytest.mark.parametrize('f', [B.box_iou, B.box_iof], ids=['iou', 'iof'])
def test_boxes_on_two_contexts_raise_value_error_on_both_paths(f, forced):
    a, b = mx.nd.ones((3, 4), ctx=mx.cpu(0)), mx.nd.ones((2, 4), ctx=mx.cpu(1))
    with samplers.force_ndarray_backend() if forced else contextlib.nullcontext():
        with pytest.raises(ValueError, match='a and b must be on one context'):
            f(a, b)


@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_box_iou_output_dtype_is_float32_or_float64(dtype):
    a = np.array([[0, 0, 2, 2]], dtype)
    out = B.box_iou(a, a)
    assert out.dtype == (np.float64 if dtype == np.float64 else np.float32)
    assert out[0, 0] == 1.0

@pytest.mark.parametrize('a_shape,b_shape,name', [
    ((3, 5), (2, 4), 'a'), ((3, 4), (2, 3), 'b'), ((2, 3, 4), (2, 4), 'a and b'),
    ((2, 3, 4), (3, 2, 4), 'a and b'), ((4,), (2, 4), 'a')])
def test_box_iou_bad_shapes_raise_value_error_naming_argument(a_shape, b_shape, name):
    with pytest.raises(ValueError, match=name):
        B.box_iou(np.zeros(a_shape, np.float32), np.zeros(b_shape, np.float32))

def test_box_iou_bad_fmt_raises_value_error():
    with pytest.raises(ValueError, match='fmt'):
        B.box_iou(np.zeros((1, 4)), np.zeros((1, 4)), fmt='xywh')

def test_box_iof_is_intersection_over_first_area():
    a = np.array([[0, 0, 2, 2], [0, 0, 0, 0]], np.float32)
    b = np.array([[1, 1, 5, 5], [-1, -1, 3, 3]], np.float32)
    np.testing.assert_allclose(B.box_iof(a, b), [[0.25, 1.0], [0.0, 0.0]])
    with samplers.force_ndarray_backend():
        np.testing.assert_allclose(B.box_iof(mx.nd.array(a), mx.nd.array(b)).asnumpy(),
                                   [[0.25, 1.0], [0.0, 0.0]])

@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_box_iou_is_symmetric_and_within_unit_interval(n, m, seed):
    rng = np.random.RandomState(seed)
    a, b = random_boxes(rng, n), random_boxes(rng, m)
    ab = B.box_iou(a, b)
    assert ab.shape == (n, m)
    assert np.all((ab >= 0) & (ab <= 1))
    np.testing.assert_allclose(ab, B.box_iou(b, a).T, rtol=1e-6)
    assert np.all(B.box_iof(a, b) >= ab - 1e-6)

# ----------------------------------------------------------------------------- matching
def test_best_match_gives_max_and_first_argmax():
    ious = np.array([[0.1, 0.5, 0.5], [0.0, 0.0, 0.0]], np.float32)
    best, idx = B.best_match(ious)
    np.testing.assert_array_equal(best, [0.5, 0.0])
    np.testing.assert_array_equal(idx, [1, 0])
    with samplers.force_ndarray_backend():
        nbest, nidx = B.best_match(mx.nd.array(ious))
    np.testing.assert_array_equal(nbest.asnumpy(), [0.5, 0.0])
    np.testing.assert_array_equal(nidx.asnumpy(), [1, 0])

def test_best_match_without_ground_truth_overlaps_nothing():
    best, idx = B.best_match(np.zeros((4, 0), np.float32))
    np.testing.assert_array_equal(best, np.zeros(4))
    np.testing.assert_array_equal(idx, np.zeros(4))

def test_best_match_nan_row_stays_nan():
    best, _ = B.best_match(np.array([[0.2, np.nan], [0.3, 0.1]], np.float32))
    assert np.isnan(best[0]) and best[1] == np.float32(0.3)

def test_best_anchor_mask_marks_all_tied_best_anchors():
    ious = np.array([[0.6, 0.0], [0.6, 0.1], [0.2, 0.3], [0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(B.best_anchor_mask(ious), [True, True, True, False])
    with samplers.force_ndarray_backend():
        np.testing.assert_array_equal(B.best_anchor_mask(mx.nd.array(ious)).asnumpy(),
                                      [1, 1, 1, 0])

def test_best_anchor_mask_skips_ground_truth_outside_valid_gt():
    ious = np.array([[0.6, 0.0], [0.1, 0.3]], np.float32)
    np.testing.assert_array_equal(B.best_anchor_mask(ious, valid_gt=np.array([1, 0])),
                                  [True, False])


def test_warn_once_logs_one_warning_per_owner_and_key(caplog):
    class Owner:
        pass
    first, second = Owner(), Owner()
    for _ in range(3):
        _arrays.warn_once(first, 'nan', 'non-finite IoU')
    _arrays.warn_once(second, 'nan', 'non-finite IoU')
    assert len([r for r in caplog.records if 'non-finite' in r.getMessage()]) == 2

def test_best_anchor_mask_box_overlapping_nothing_marks_nothing():
    # GluonCV would mark every zero-IoU anchor as that box's best anchor.
    ious = np.array([[0.4, 0.0], [0.1, 0.0], [0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(B.best_anchor_mask(ious), [True, False, False])
    with samplers.force_ndarray_backend():
        np.testing.assert_array_equal(B.best_anchor_mask(mx.nd.array(ious)).asnumpy(), [1, 0, 0])

def test_best_anchor_mask_invalid_anchor_is_never_best_and_does_not_set_the_bar():
    ious = np.array([[0.9, 0.0], [0.4, 0.2]], np.float32)
    valid = np.array([False, True])
    np.testing.assert_array_equal(B.best_anchor_mask(ious, valid_anchor=valid), [False, True])
    with samplers.force_ndarray_backend():
        out = B.best_anchor_mask(mx.nd.array(ious), valid_anchor=mx.nd.array(valid))
    np.testing.assert_array_equal(out.asnumpy(), [0, 1])

@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_best_anchor_mask_fast_numpy_equals_dense_rule(n, m, seed):
    rng = np.random.RandomState(seed)
    ious = np.round(rng.uniform(-0.2, 1, (n, m)), 1).clip(0, 1).astype(np.float32)  # ties
    dense = ((ious > 0) & (ious + np.float32(B.EPS) > ious.max(axis=0))).any(axis=1)
    np.testing.assert_array_equal(B.best_anchor_mask(ious), dense)
    with samplers.force_ndarray_backend():
        np.testing.assert_array_equal(B.best_anchor_mask(mx.nd.array(ious)).asnumpy() > 0, dense)

def test_col_max_and_row_max_equal_numpy_reductions():
    a = np.random.rand(10007, 7).astype(np.float32)
    np.testing.assert_array_equal(B.col_max(a), a.max(axis=0))
    np.testing.assert_array_equal(B.row_max(a), a.max(axis=1))


@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_finite_rows_flags_nan_inf_and_keeps_overflowing_finite_rows(dtype):
    big = np.finfo(dtype).max
    a = np.array([[1, 2, 3], [1, np.nan, 3], [np.inf, 0, 0], [-np.inf, 1, 1], [big, big, big]],
                 dtype)
    np.testing.assert_array_equal(B.finite_rows(a), [True, False, False, False, True])
    np.testing.assert_array_equal(B.finite_rows(a.reshape(1, 5, 3)),
                                  np.isfinite(a).all(axis=-1)[None])
    assert B.finite_rows(np.zeros((4, 0), dtype)).all()

# ---------------------------------------------------------------------------- encoding
def test_encode_boxes_is_normalized_center_offset_on_both_kinds():
    anchor = np.array([[10, 20, 30, 60]], np.float32)       # center (20, 40), size 20 x 40
    gt = np.array([[12, 24, 36, 56]], np.float32)           # center (24, 40), size 24 x 32
    stds = (0.1, 0.2, 0.5, 0.25)
    expect = [[(24 - 20) / 20 / 0.1, 0.0, np.log(24 / 20) / 0.5, np.log(32 / 40) / 0.25]]
    np.testing.assert_allclose(B.encode_boxes(anchor, gt, stds), expect, rtol=1e-6)
    with samplers.force_ndarray_backend():
        out = B.encode_boxes(mx.nd.array(anchor), mx.nd.array(gt), stds)
    assert isinstance(out, mx.nd.NDArray)
    np.testing.assert_allclose(out.asnumpy(), expect, rtol=1e-6)

@pytest.mark.parametrize('kind', ['numpy', 'ndarray'])
def test_cls_target_codes_and_labels_are_inverse_maps(kind):
    labels = np.array([1, -1, 0, 1], np.float32)
    wrap = (lambda a: a) if kind == 'numpy' else mx.nd.array
    unwrap = (lambda a: a) if kind == 'numpy' else (lambda a: a.asnumpy())
    codes = unwrap(B.cls_target_from_labels(wrap(labels)))
    np.testing.assert_array_equal(codes, [1, 0, -1, 1])
    assert codes.dtype == np.float32
    np.testing.assert_array_equal(unwrap(B.labels_from_cls_target(wrap(codes))), labels)

def test_match_anchors_gives_best_match_over_valid_boxes_and_the_best_anchor_mask():
    ious = np.array([[0.9, 0.1], [0.2, 0.3], [0.0, 0.95]], np.float32)
    valid = np.array([1, 0])
    max_iou, match, best = B.match_anchors(ious, valid)
    np.testing.assert_array_equal(max_iou, ious[:, 0])
    np.testing.assert_array_equal(match, [0, 0, 0])
    np.testing.assert_array_equal(best, [True, False, False])
    with samplers.force_ndarray_backend():
        nd_out = B.match_anchors(mx.nd.array(ious), mx.nd.array(valid))
    for ours, theirs in zip(nd_out, (max_iou, match, best)):
        np.testing.assert_array_equal(ours.asnumpy(), theirs)


_IOU_VALUES = st.sampled_from([0.0, -1.0, 1e-9, B.EPS / 2, B.EPS, 0.3, 0.7, 1.0])


@given(st.lists(st.lists(_IOU_VALUES, min_size=3, max_size=3), min_size=1, max_size=5),
       st.lists(st.sampled_from([B.EPS, 2 * B.EPS, 0.3, 0.7, 1.0, np.inf, 0.0, B.EPS / 2]),
                min_size=3, max_size=3))
@settings(max_examples=150, deadline=None)
def test_near_best_is_the_two_part_test_on_numpy_and_ndarray(rows, bars):
    # numpy drops the "> 0" half when every bar is >= eps; the answer must not change.
    ious = np.array(rows, np.float32)
    bar = np.array(bars, np.float32)
    expect = (ious > 0) & (ious + np.float32(B.EPS) > bar)
    np.testing.assert_array_equal(B.near_best(ious, bar), expect)
    nd = B.near_best(mx.nd.array(ious), mx.nd.array(bar).reshape((1, 3)))
    np.testing.assert_array_equal(nd.asnumpy().astype(bool), expect)


def test_match_anchors_with_many_candidate_rows_equals_the_plain_rule():
    # More candidate rows than one chunk of the numpy path, ties and zero columns included.
    rng = np.random.RandomState(3)
    ious = (rng.uniform(0, 1, (20000, 40)) * (rng.uniform(0, 1, (20000, 40)) < 0.3))
    ious = ious.astype(np.float32)
    ious[:, 7] = 0          # a box nothing overlaps marks nothing
    ious[100:5000, 3] = 1   # thousands of tied best anchors of box 3
    bar = ious.max(axis=0)
    expect = ((ious > 0) & (ious + np.float32(B.EPS) > bar)).any(axis=1)
    np.testing.assert_array_equal(B.match_anchors(ious)[2], expect)
