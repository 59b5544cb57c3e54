"""RPNTargetSampler and RPNTargetGenerator: the rule, its quotas, hard boxes, backends, speed paths.

``reference_labels`` below is the rule of :mod:`samplers.rpn` written as plainly
as possible (dense, one image, no quotas); the fast code is checked against it,
and against GluonCV 0.10.5 where the rules agree.
"""
import gc
import logging
import pickle
import resource

import mxnet as mx
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from gluoncv.model_zoo.rcnn.rpn.rpn_target import (RPNTargetGenerator as GluonGenerator,
                                                   RPNTargetSampler as GluonSampler)

from samplers import HardRule, anchor_grid
from samplers._arrays import force_ndarray_backend
from samplers.boxes import box_iou
from samplers.rpn import RPNTargetGenerator, RPNTargetSampler
from helpers import fpn_anchors, gluon_anchors

EPS = np.spacing(np.float32(1))
ALL = 10 ** 9  # a num_sample no test input reaches: no subsampling

# ============================================================================ helpers
def reference_labels(ious, hard=None, pos_t=0.7, neg_t=0.3, allow_low_quality=False):
    """(labels, matches) of one (N, M) image by the rule, before quotas."""
    ious = np.asarray(ious)
    n, m = ious.shape
    dt = ious.dtype.type
    hard = np.zeros(m, bool) if hard is None else np.asarray(hard, bool)
    normal = ~hard
    bad = ~np.isfinite(ious).all(axis=1)
    x = np.where(bad[:, None], dt(-1), ious)
    max_all = x.max(axis=1) if m else np.zeros(n, x.dtype)
    valid = ~bad & ((max_all >= 0) if m else True)
    only_normal = np.where(normal, x, -np.inf)
    max_n = only_normal.max(axis=1) if normal.any() else np.full(n, -np.inf)
    matches = only_normal.argmax(axis=1) if normal.any() else np.zeros(n, np.int64)
    col_max = np.where(valid[:, None], x, -np.inf).max(axis=0) if n else np.zeros(m)
    best = valid & (normal & (x > 0) & (x + dt(EPS) > col_max)).any(axis=1)
    thr = max_n >= dt(pos_t)
    low = max_all < dt(neg_t)
    weak = max_n < dt(neg_t)
    pos = valid & (thr | (best & (allow_low_quality | ~weak)))
    neg = valid & low & ~pos
    return np.where(pos, 1, np.where(neg, -1, 0)).astype(np.float32), matches

def random_gt(rng, m, width, height, min_size=4.0):
    cx, cy = rng.uniform(0, width, m), rng.uniform(0, height, m)
    bw = np.exp(rng.uniform(np.log(min_size), np.log(width), m))
    bh = np.exp(rng.uniform(np.log(min_size), np.log(height), m))
    b = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    b[:, 0::2] = b[:, 0::2].clip(0, width - 1)
    b[:, 1::2] = b[:, 1::2].clip(0, height - 1)
    return b.astype(np.float32)

def seeded(seed, call):
    """``call()`` right after seeding numpy's and MXNet's RNGs with ``seed``."""
    np.random.seed(seed)
    mx.random.seed(seed)
    return call()

def assert_same(ours, ref):
    for o, r in zip(ours, ref):
        np.testing.assert_array_equal(np.asarray(o), np.asarray(r))

@pytest.fixture
def dense_only(monkeypatch):
    """Make the generator take its dense path (no anchor grid)."""
    monkeypatch.setattr(anchor_grid.AnchorGrid, 'build', classmethod(lambda cls, anchors: None))

@pytest.fixture
def grid_always(monkeypatch):
    """Let the anchor-grid path take small anchor sets too."""
    monkeypatch.setattr(anchor_grid.AnchorGrid, 'MIN_ANCHORS', 0)

LEVELS = [float(np.float32(v)) for v in (0.0, 0.0, 0.0, 0.1, 0.25, 0.3, 0.5, 0.6, 0.7, 0.8, 1.0)]

@st.composite
def iou_images(draw, max_n=14, max_m=5, min_m=0):
    """(ious float32 (N, M), hard (M,)): few distinct values so ties are common."""
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(min_m, max_m))
    ious = draw(arrays(np.float32, (n, m), elements=st.sampled_from(LEVELS)))
    invalid = draw(arrays(bool, (n,), elements=st.booleans()))
    ious[invalid & (draw(st.integers(0, 3)) == 0)] = -1
    if m and draw(st.integers(0, 5)) == 0:
        ious[draw(st.integers(0, n - 1)), draw(st.integers(0, m - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf]))
    hard = draw(arrays(bool, (m,), elements=st.booleans()))
    return ious, hard

def sampler(num_sample=ALL, pos_t=0.7, neg_t=0.3, pos_ratio=0.5, **kw):
    return RPNTargetSampler(num_sample, pos_t, neg_t, pos_ratio, **kw)

# ============================================================================ sampler: the rule
def test_iou_at_pos_thresh_is_positive():
    samples, _ = sampler()(np.array([[0.7], [0.69], [0.0]], np.float32))
    assert samples[0] == 1 and samples[1] == 0

def test_iou_below_neg_thresh_is_negative_and_between_is_ignored():
    samples, _ = sampler()(np.array([[0.9], [0.29], [0.3], [0.5]], np.float32))
    np.testing.assert_array_equal(samples, [1, -1, 0, 0])

def test_best_anchor_of_a_box_is_positive_between_thresholds():
    samples, _ = sampler()(np.array([[0.5, 0.0], [0.4, 0.9], [0.0, 0.0]], np.float32))
    np.testing.assert_array_equal(samples, [1, 1, -1])

def test_all_tied_best_anchors_are_positive():
    samples, _ = sampler()(np.array([[0.5], [0.5], [0.4]], np.float32))
    np.testing.assert_array_equal(samples, [1, 1, 0])

def test_anchor_within_eps_of_best_counts_as_tied():
    best = np.float32(0.5)
    samples, _ = sampler()(np.array([[best], [best - EPS / 4]], np.float32))
    np.testing.assert_array_equal(samples, [1, 1])

def test_negative_overrides_best_anchor_like_gluoncv():
    samples, _ = sampler()(np.array([[0.2], [0.1]], np.float32))
    np.testing.assert_array_equal(samples, [-1, -1])

def test_allow_low_quality_matches_keeps_best_anchor_positive():
    samples, _ = sampler(allow_low_quality_matches=True)(np.array([[0.2], [0.1]], np.float32))
    np.testing.assert_array_equal(samples, [1, -1])

def test_invalid_anchor_row_is_ignored():
    samples, _ = sampler()(np.array([[-1, -1], [0.9, 0.0], [0.0, 0.8]], np.float32))
    assert samples[0] == 0

def test_matches_are_first_best_box_on_ties():
    _, matches = sampler()(np.array([[0.5, 0.5, 0.2], [0.0, 0.0, 0.0]], np.float32))
    np.testing.assert_array_equal(matches, [0, 0])
    assert matches.dtype == np.int64

def test_no_ground_truth_makes_every_valid_anchor_a_negative_candidate():
    samples, matches = sampler()(np.zeros((4, 0), np.float32))
    np.testing.assert_array_equal(samples, [-1] * 4)
    np.testing.assert_array_equal(matches, [0] * 4)

def test_nonfinite_iou_row_is_ignored_and_warned_once(caplog):
    s = sampler()
    ious = np.array([[0.9, np.nan], [np.inf, 0.0], [-np.inf, 0.8], [0.1, 0.0]], np.float32)
    with caplog.at_level(logging.WARNING, logger='samplers'):
        samples, _ = s(ious)
        s(ious)
    np.testing.assert_array_equal(samples, [0, 0, 0, -1])
    assert len([r for r in caplog.records if 'NaN/inf' in r.getMessage()]) == 1

def test_nonfinite_row_does_not_spoil_best_anchor_of_others():
    samples, _ = sampler()(np.array([[np.nan], [0.5], [0.2]], np.float32))
    np.testing.assert_array_equal(samples, [0, 1, -1])

@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_output_dtypes_for_each_input_dtype(dtype):
    samples, matches = sampler()(np.array([[0.9, 0.0], [0.0, 0.5]], dtype))
    assert samples.dtype == np.float32 and matches.dtype == np.int64
    np.testing.assert_array_equal(samples, [1, 1])

def test_float64_input_is_compared_in_float64():
    just_below = np.nextafter(0.7, 0)  # rounds to float32 0.7 but is below 0.7 in float64
    samples, _ = sampler()(np.array([[just_below], [0.9]], np.float64))
    assert samples[0] == 0

# ============================================================================ sampler: quotas
def test_positive_quota_is_round_of_pos_ratio_times_num_sample():
    ious = np.full((20, 1), 0.9, np.float32)
    samples, _ = sampler(num_sample=5, pos_ratio=0.5)(ious)
    assert (samples == 1).sum() == round(0.5 * 5)

def test_negatives_fill_slots_positives_left_free():
    ious = np.concatenate([np.full((1, 1), 0.9), np.zeros((30, 1))]).astype(np.float32)
    samples, _ = sampler(num_sample=8, pos_ratio=0.5)(ious)
    assert (samples == 1).sum() == 1 and (samples == -1).sum() == 7

def test_fewer_candidates_than_quota_keeps_them_all():
    ious = np.array([[0.9], [0.0], [0.5]], np.float32)
    samples, _ = sampler(num_sample=64)(ious)
    np.testing.assert_array_equal(samples, [1, -1, 0])

def test_subsampling_keeps_a_uniform_random_subset_of_candidates():
    ious = np.concatenate([np.full((10, 1), 0.9), np.zeros((10, 1))]).astype(np.float32)
    s = sampler(num_sample=4, pos_ratio=0.5)
    seen = np.zeros(20)
    for _ in range(400):
        seen += s(ious)[0] != 0
    # each of 10 positive (and negative) candidates is kept with probability 2/10
    assert np.all(np.abs(seen / 400 - 0.2) < 0.08)

def test_quotas_apply_per_image_in_a_batch():
    ious = np.stack([np.full((10, 1), 0.9), np.zeros((10, 1))]).astype(np.float32)
    samples, _ = sampler(num_sample=4, pos_ratio=0.5)(ious)
    assert (samples[0] == 1).sum() == 2 and (samples[0] == -1).sum() == 0
    assert (samples[1] == -1).sum() == 4

def test_seeded_runs_reproduce():
    ious = np.random.rand(200, 3).astype(np.float32)
    s = sampler(num_sample=16)
    assert_same(seeded(7, lambda: s(ious)), seeded(7, lambda: s(ious)))

# ============================================================================ sampler: hard boxes
def test_hard_box_makes_no_positive_by_threshold():
    samples, _ = sampler()(np.array([[0.0, 0.9], [0.8, 0.0]], np.float32), hard=[0, 1])
    assert samples[0] != 1

def test_hard_box_makes_no_best_anchor_positive():
    samples, _ = sampler()(np.array([[0.0, 0.5], [0.0, 0.2]], np.float32), hard=[0, 1])
    np.testing.assert_array_equal(samples, [0, -1])

def test_positive_never_matches_a_hard_box():
    _, matches = sampler()(np.array([[0.9, 0.95, 0.8]], np.float32), hard=[0, 1, 0])
    assert matches[0] == 0

def test_anchor_overlapping_hard_box_is_ignored_not_negative():
    samples, _ = sampler()(np.array([[0.1, 0.5], [0.1, 0.29]], np.float32), hard=[0, 1])
    np.testing.assert_array_equal(samples, [0, -1])

def test_positive_for_normal_box_stays_positive_next_to_hard_box():
    samples, _ = sampler()(np.array([[0.8, 0.9], [0.0, 0.0]], np.float32), hard=[0, 1])
    assert samples[0] == 1

def test_anchors_away_from_hard_boxes_are_labelled_as_without_flags():
    rng = np.random.RandomState(0)
    ious = rng.choice(LEVELS, (60, 4)).astype(np.float32)
    ious[:, 3] = 0
    ious[:6, 3] = 0.5  # the hard box overlaps the first six anchors only
    flagged, _ = sampler()(ious, hard=[0, 0, 0, 1])
    plain, _ = sampler()(ious[:, :3])
    np.testing.assert_array_equal(flagged[6:], plain[6:])

def test_all_zero_flags_equal_no_flags_under_the_same_seed():
    ious = np.random.rand(300, 4).astype(np.float32)
    s = sampler(num_sample=32)
    assert_same(seeded(3, lambda: s(ious)), seeded(3, lambda: s(ious, hard=np.zeros(4))))

def test_only_hard_boxes_gives_no_positive():
    samples, _ = sampler()(np.array([[0.9], [0.0]], np.float32), hard=[1])
    np.testing.assert_array_equal(samples, [0, -1])

def test_batched_hard_flags_apply_per_image():
    ious = np.stack([np.array([[0.9]]), np.array([[0.9]])]).astype(np.float32)
    samples, _ = sampler()(ious, hard=[[1], [0]])
    np.testing.assert_array_equal(samples, [[0], [1]])

# ============================================================================ sampler: vs GluonCV
@settings(max_examples=250, deadline=None)
@given(iou_images())
def test_same_as_reference_and_gluoncv_without_subsampling(image):
    ious, hard = image
    samples, matches = sampler()(ious, hard)
    ref, ref_matches = reference_labels(ious, hard)
    np.testing.assert_array_equal(samples, ref)
    np.testing.assert_array_equal(matches, ref_matches)
    # GluonCV's rule is ours when no box is left without a positive IoU on a valid anchor
    if ious.shape[1] and not hard.any() and np.isfinite(ious).all() \
            and (ious[ious.max(axis=1) >= 0] > 0).any(axis=0).all():
        g_samples, g_matches = GluonSampler(ALL, 0.7, 0.3, 0.5)(ious)
        np.testing.assert_array_equal(samples, g_samples)
        np.testing.assert_array_equal(matches, g_matches)

@settings(max_examples=100, deadline=None)
@given(iou_images(max_n=40, min_m=1), st.integers(1, 12), st.sampled_from([0.0, 0.25, 0.5, 1.0]))
def test_same_candidates_and_counts_as_gluoncv_with_subsampling(image, num_sample, pos_ratio):
    ious, _ = image
    valid = ious.max(axis=1) >= 0
    assume(np.isfinite(ious).all() and (ious[valid] > 0).any(axis=0).all())
    samples, _ = sampler(num_sample, pos_ratio=pos_ratio)(ious)
    g_samples, _ = GluonSampler(num_sample, 0.7, 0.3, pos_ratio)(ious)
    candidates, _ = GluonSampler(ALL, 0.7, 0.3, pos_ratio)(ious)
    for label in (1, -1):
        assert (samples == label).sum() == (g_samples == label).sum()
        assert np.all(candidates[samples == label] == label)

def test_differs_from_gluoncv_box_overlapping_no_anchor_makes_no_positive():
    # box 1 overlaps nothing (degenerate or outside the image): GluonCV marks every
    # zero-IoU anchor as its "best" one, turning the 0.5 anchor (ignored) positive.
    ious = np.array([[0.9, 0.0], [0.5, 0.0], [0.1, 0.0]], np.float32)
    samples, _ = sampler()(ious)
    g_samples, _ = GluonSampler(ALL, 0.7, 0.3, 0.5)(ious)
    assert samples[1] == 0 and g_samples[1] == 1

def test_differs_from_gluoncv_invalid_anchor_is_never_positive():
    ious = np.array([[-1.0], [-1.0]], np.float32)  # the box has no valid anchor at all
    samples, _ = sampler()(ious)
    g_samples, _ = GluonSampler(ALL, 0.7, 0.3, 0.5)(ious)
    np.testing.assert_array_equal(samples, [0, 0])
    np.testing.assert_array_equal(g_samples, [1, 1])

def test_differs_from_gluoncv_nan_row_is_ignored_not_spoiling_the_box():
    ious = np.array([[np.nan], [0.5], [0.1]], np.float32)
    samples, _ = sampler()(ious)
    g_samples, _ = GluonSampler(ALL, 0.7, 0.3, 0.5)(ious)
    np.testing.assert_array_equal(samples, [0, 1, -1])
    assert g_samples[1] == 0  # NaN column max: GluonCV loses the box's best anchor

def test_differs_from_gluoncv_pos_iou_thresh_must_be_positive():
    GluonSampler(ALL, 0.0, 0.0, 0.5)  # accepted: then every anchor overlapping nothing is positive
    with pytest.raises(ValueError, match='pos_iou_thresh'):
        sampler(pos_t=0.0, neg_t=0.0)

def test_differs_from_gluoncv_negative_neg_iou_thresh_is_rejected():
    # GluonCV accepts it; then no valid anchor (IoU >= 0) can ever be a negative.
    GluonSampler(ALL, 0.7, -0.1, 0.5)
    with pytest.raises(ValueError, match='neg_iou_thresh'):
        sampler(neg_t=-0.1)

def test_zero_neg_iou_thresh_is_accepted_and_makes_no_negative():
    samples, _ = sampler(neg_t=0.0)(np.array([[0.0], [0.8]], np.float32))
    np.testing.assert_array_equal(samples, [0, 1])

@pytest.mark.parametrize('dtype', [bool, np.int32, np.int64])
@pytest.mark.parametrize('kind', ['numpy', 'ndarray'])
def test_bool_or_integer_ious_raise_value_error_naming_ious(dtype, kind):
    ious = np.ones((3, 2), dtype)
    if kind == 'ndarray':
        ious = mx.nd.array(ious, dtype='int32' if dtype is bool else dtype)
    with pytest.raises(ValueError, match='ious.*float'):
        sampler()(ious)

def test_nan_against_a_hard_box_ignores_the_anchor_and_its_box_takes_the_next_best():
    # Row 0 is the best anchor of normal box 0 but has a NaN IoU with hard box 1: it is
    # ignored, so box 0's best valid anchor (row 1, IoU 0.4) is its positive.
    ious = np.array([[0.5, np.nan], [0.4, 0.0], [0.1, 0.0]], np.float32)
    samples, matches = sampler()(ious, np.array([0, 1]))
    np.testing.assert_array_equal(samples, [0, 1, -1])
    assert matches[1] == 0

@pytest.mark.parametrize('bad', [np.inf, -np.inf])
def test_inf_against_a_hard_box_ignores_the_anchor_like_nan(bad):
    # Each non-finite value is found wherever it sits: in a hard box's column, an anchor's
    # +inf is never its best normal IoU, and a -inf is never any row's maximum.
    ious = np.array([[0.5, bad], [0.4, 0.0], [0.1, 0.0]], np.float32)
    samples, _ = sampler()(ious, np.array([0, 1]))
    np.testing.assert_array_equal(samples, [0, 1, -1])

def test_differs_from_gluoncv_no_ground_truth_works():
    with pytest.raises(ValueError):
        GluonSampler(ALL, 0.7, 0.3, 0.5)(np.zeros((3, 0), np.float32))
    samples, _ = sampler()(np.zeros((3, 0), np.float32))
    np.testing.assert_array_equal(samples, [-1, -1, -1])

# ============================================================================ sampler: properties
@settings(max_examples=250, deadline=None)
@given(st.lists(iou_images(max_n=30), min_size=1, max_size=3), st.integers(1, 10),
       st.sampled_from([0.0, 0.3, 0.5, 1.0]), st.booleans(), st.integers(0, 2 ** 31 - 1))
def test_sampler_properties(images, num_sample, pos_ratio, low_quality, seed):
    n = min(i.shape[0] for i, _ in images)
    m = min(i.shape[1] for i, _ in images)
    ious = np.stack([i[:n, :m] for i, _ in images])
    hard = np.stack([h[:m] for _, h in images])
    s = sampler(num_sample, pos_ratio=pos_ratio, allow_low_quality_matches=low_quality)
    samples, matches = seeded(seed, lambda: s(ious, hard))
    assert_same((samples, matches), seeded(seed, lambda: s(ious, hard)))  # seeded runs reproduce
    assert set(np.unique(samples)) <= {-1.0, 0.0, 1.0}
    for img in range(len(ious)):
        cand, _ = reference_labels(ious[img], hard[img], allow_low_quality=low_quality)
        kept_pos = (samples[img] == 1).sum()
        assert kept_pos == min((cand == 1).sum(), round(pos_ratio * num_sample))
        assert (samples[img] == -1).sum() == min((cand == -1).sum(), num_sample - kept_pos)
        kept = samples[img] != 0
        assert np.all(samples[img][kept] == cand[kept])         # kept samples are candidates
        assert not np.any((cand == 1) & (samples[img] == -1))   # a positive never turns negative
        # hard boxes make no positive: the positives are those of the normal boxes alone
        # (an anchor with a NaN/inf IoU, even against a hard box, stays ignored there too)
        normal = ious[img][:, ~hard[img]].copy()
        normal[~np.isfinite(ious[img]).all(axis=1)] = np.nan
        alone, _ = reference_labels(normal, allow_low_quality=low_quality)
        assert np.all(alone[samples[img] == 1] == 1)
        assert not np.any(hard[img][matches[img][samples[img] == 1]])

# ============================================================================ sampler: backends
@settings(max_examples=60, deadline=None)
@given(iou_images(max_n=20), st.booleans())
def test_ndarray_backend_equals_numpy_backend_without_subsampling(image, use_hard):
    ious, hard = image
    hard = hard if use_hard else None
    ref = sampler()(ious, hard)
    with force_ndarray_backend():
        out = sampler()(mx.nd.array(ious), None if hard is None else mx.nd.array(hard))
    np.testing.assert_array_equal(out[0].asnumpy(), ref[0])
    np.testing.assert_array_equal(out[1].asnumpy(), ref[1])

def test_ndarray_backend_ignores_nonfinite_rows():
    ious = np.array([[np.nan, 0.9], [0.5, 0.0], [0.1, 0.8]], np.float32)
    with force_ndarray_backend():
        samples, _ = sampler()(mx.nd.array(ious))
    np.testing.assert_array_equal(samples.asnumpy(), sampler()(ious)[0])

def test_ndarray_backend_quotas_per_image():
    ious = np.stack([np.full((10, 1), 0.9), np.zeros((10, 1))]).astype(np.float32)
    with force_ndarray_backend():
        samples, _ = sampler(num_sample=4)(mx.nd.array(ious))
    samples = samples.asnumpy()
    assert (samples[0] == 1).sum() == 2 and (samples[1] == -1).sum() == 4

def test_ndarray_backend_seeded_runs_reproduce():
    ious = mx.nd.array(np.random.rand(100, 3))
    with force_ndarray_backend():
        a = seeded(5, lambda: sampler(num_sample=8)(ious)[0].asnumpy())
        b = seeded(5, lambda: sampler(num_sample=8)(ious)[0].asnumpy())
    np.testing.assert_array_equal(a, b)

def test_ndarray_backend_no_ground_truth():
    with force_ndarray_backend():
        samples, _ = sampler()(mx.nd.array(np.zeros((3, 0), np.float32)))
    np.testing.assert_array_equal(samples.asnumpy(), [-1, -1, -1])

@pytest.mark.parametrize('shape', [(0, 3), (0, 0), (2, 0, 3), (0, 4, 3), (0, 4, 0)])
def test_ndarray_backend_no_anchors_or_no_images_gives_empty_labels(shape):
    ious = mx.nd.array(np.zeros(shape, np.float32), ctx=mx.cpu(1))
    with force_ndarray_backend():
        samples, matches = sampler()(ious)
    for out in (samples, matches):
        assert out.shape == shape[:-1] and out.context == mx.cpu(1) and out.dtype == np.float32

def test_sampler_and_generator_are_picklable_gluon_blocks():
    # What the README promises, checked as behaviour: a pickled copy is a Block that labels
    # as the original does under the same seed.
    ious = np.random.RandomState(3).uniform(size=(40, 3)).astype(np.float32)
    anchors, boxes = fpn_anchors(64, 64)[:200], np.array([[4., 4., 40., 40.]], np.float32)
    for block, call in ((sampler(), lambda b: b(ious)[0]),
                        (RPNTargetGenerator(), lambda b: b(boxes, anchors, 64, 64)[0])):
        copy = pickle.loads(pickle.dumps(block))
        assert isinstance(block, mx.gluon.Block) and isinstance(copy, mx.gluon.Block)
        np.random.seed(0)
        want = call(block)
        np.random.seed(0)
        np.testing.assert_array_equal(call(copy), want)


# ============================================================================ sampler: bad input
@pytest.mark.parametrize('kwargs, name', [
    (dict(num_sample=0), 'num_sample'), (dict(num_sample=2.5), 'num_sample'),
    (dict(pos_ratio=1.5), 'pos_ratio'), (dict(pos_t=0.0, neg_t=0.0), 'pos_iou_thresh'),
    (dict(pos_t=0.3, neg_t=0.7), 'pos_iou_thresh'), (dict(neg_t=float('nan')), 'neg_iou_thresh'),
])
def test_bad_sampler_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sampler(**kwargs)


RPN_BLOCKS = {'RPNTargetSampler': lambda **kw: RPNTargetSampler(256, 0.7, 0.3, 0.5, **kw),
              'RPNTargetGenerator': lambda **kw: RPNTargetGenerator(**kw)}


@pytest.mark.parametrize('block', sorted(RPN_BLOCKS))
@pytest.mark.parametrize('value', ['no', 'False', '', 2, 1, 0, 1.0, None, [True]])
def test_allow_low_quality_matches_refuses_anything_but_a_bool(block, value):
    with pytest.raises(ValueError, match='allow_low_quality_matches must be True or False'):
        RPN_BLOCKS[block](allow_low_quality_matches=value)


@pytest.mark.parametrize('block', sorted(RPN_BLOCKS))
@pytest.mark.parametrize('value', [True, False, np.bool_(True), np.bool_(False)])
def test_allow_low_quality_matches_takes_a_bool_or_numpy_bool(block, value):
    built = RPN_BLOCKS[block](allow_low_quality_matches=value)
    rule = built if block == 'RPNTargetSampler' else built._sampler
    assert rule._allow_low_quality is bool(value)

@pytest.mark.parametrize('ious, hard, match', [
    (np.zeros(3), None, r'ious.*\(3,\)'),
    (np.zeros((2, 3, 4, 5)), None, 'ious'),
    (np.zeros((4, 3)), np.zeros(2), r'hard.*\(3,\).*\(2,\)'),
    (np.zeros((2, 4, 3)), np.zeros((3, 3)), r'hard.*\(2, 3\)'),
    (np.zeros((4, 3)), np.array([0, 2, 1]), 'hard.*0/1'),
])
def test_bad_sampler_inputs_raise_value_error(ious, hard, match):
    with pytest.raises(ValueError, match=match):
        sampler()(ious, hard)

# ============================================================================ generator
def gluoncv_targets(gt, anchors, width, height, num_sample=ALL):
    out = GluonGenerator(num_sample=num_sample)(mx.nd.array(gt), mx.nd.array(anchors),
                                                width, height)
    return tuple(np.asarray(o) for o in out)

@pytest.mark.parametrize('seed', range(4))
def test_generator_same_as_gluoncv_on_c4_anchors(seed):
    rng = np.random.RandomState(seed)
    height, width = 240, 400
    anchors = gluon_anchors(height, width)  # 15 x 25 cells x 15 anchors: the grid path
    gt = random_gt(rng, 8, width, height)
    assert_same(RPNTargetGenerator(ALL)(gt, anchors, width, height),
                gluoncv_targets(gt, anchors, width, height))

def test_generator_same_as_gluoncv_on_fpn_anchors():
    rng = np.random.RandomState(4)
    height, width = 256, 320
    anchors = fpn_anchors(height, width)
    gt = random_gt(rng, 12, width, height)
    assert_same(RPNTargetGenerator(ALL)(gt, anchors, width, height),
                gluoncv_targets(gt, anchors, width, height))

def test_generator_same_as_gluoncv_on_unstructured_anchors():
    rng = np.random.RandomState(5)
    anchors = random_gt(rng, 5000, 300, 200, min_size=8)
    gt = random_gt(rng, 6, 300, 200)
    assert anchor_grid.AnchorGrid.build(anchors) is None
    assert_same(RPNTargetGenerator(ALL)(gt, anchors, 300, 200),
                gluoncv_targets(gt, anchors, 300, 200))

def test_generator_same_counts_as_gluoncv_with_subsampling():
    rng = np.random.RandomState(6)
    anchors = gluon_anchors(240, 400)
    gt = random_gt(rng, 8, 400, 240)
    ours = RPNTargetGenerator()(gt, anchors, 400, 240)
    ref = gluoncv_targets(gt, anchors, 400, 240, num_sample=256)
    cand = RPNTargetGenerator(ALL)(gt, anchors, 400, 240)[0]
    for label in (1, 0):
        assert (ours[0] == label).sum() == (ref[0] == label).sum()
        assert np.all(cand[ours[0] == label] == label)

def test_generator_box_target_is_normalized_center_offset_of_matched_box():
    anchor = np.array([[10, 20, 30, 60]], np.float32)       # center (20, 40), size 20 x 40
    gt = np.array([[12, 24, 36, 56]], np.float32)           # center (24, 40), size 24 x 32
    stds = (0.1, 0.2, 0.5, 0.25)
    cls, target, mask = RPNTargetGenerator(stds=stds)(gt, anchor, 100, 100)
    expect = [(24 - 20) / 20 / 0.1, (40 - 40) / 40 / 0.2, np.log(24 / 20) / 0.5,
              np.log(32 / 40) / 0.25]
    assert cls[0] == 1
    np.testing.assert_allclose(target[0], expect, rtol=1e-6)
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 1])

def test_generator_targets_are_zero_off_positives():
    anchors = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    cls, target, mask = RPNTargetGenerator()(np.array([[0, 0, 10, 10]], np.float32), anchors,
                                              100, 100)
    np.testing.assert_array_equal(cls, [1, 0])
    assert not target[1].any() and not mask[1].any()

def test_generator_anchor_crossing_the_border_is_ignored():
    anchors = np.array([[-1, 0, 10, 10], [0, 0, 10, 10], [90, 90, 100, 99]], np.float32)
    cls, _, _ = RPNTargetGenerator()(np.array([[50, 50, 60, 60]], np.float32), anchors, 100, 100)
    np.testing.assert_array_equal(cls, [-1, 0, -1])  # x1 < 0 and x2 >= width are invalid

def test_differs_from_gluoncv_allowed_border_is_used():
    anchors = np.array([[-4, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    gt = np.array([[50, 50, 60, 60]], np.float32)
    cls, _, _ = RPNTargetGenerator(allowed_border=5)(gt, anchors, 100, 100)
    g_cls = GluonGenerator(allowed_border=5)(mx.nd.array(gt), mx.nd.array(anchors), 100, 100)[0]
    np.testing.assert_array_equal(cls, [0, 0])
    np.testing.assert_array_equal(g_cls, [-1, 0])

def test_generator_padding_rows_are_dropped():
    rng = np.random.RandomState(7)
    anchors = gluon_anchors(160, 160)
    gt = random_gt(rng, 3, 160, 160)
    padded = np.concatenate([gt[:1], -np.ones((2, 4), np.float32), gt[1:]])
    assert_same(RPNTargetGenerator(ALL)(padded, anchors, 160, 160),
                RPNTargetGenerator(ALL)(gt, anchors, 160, 160))

def test_generator_nonfinite_boxes_are_dropped_and_warned_once(caplog):
    rng = np.random.RandomState(8)
    anchors = gluon_anchors(160, 160)
    gt = random_gt(rng, 3, 160, 160)
    bad = np.concatenate([gt, [[np.nan, 0, 5, 5], [0, 0, np.inf, 5]]]).astype(np.float32)
    gen = RPNTargetGenerator(ALL)
    with caplog.at_level(logging.WARNING, logger='samplers'):
        out = gen(bad, anchors, 160, 160)
        gen(bad, anchors, 160, 160)
    assert_same(out, RPNTargetGenerator(ALL)(gt, anchors, 160, 160))
    assert len([r for r in caplog.records if 'non-finite' in r.getMessage()]) == 1

def test_generator_nonfinite_anchor_is_ignored():
    anchors = np.array([[0, 0, 10, 10], [np.nan, 0, 10, 10]], np.float32)
    cls, target, _ = RPNTargetGenerator()(np.array([[0, 0, 10, 10]], np.float32), anchors,
                                          100, 100)
    np.testing.assert_array_equal(cls, [1, -1])
    assert np.isfinite(target).all()

def test_generator_degenerate_box_gives_no_nan_and_no_positive():
    anchors = gluon_anchors(160, 160)
    gt = np.array([[40, 40, 40, 80], [90, 90, 80, 100]], np.float32)  # zero width, inverted
    cls, target, mask = RPNTargetGenerator(ALL)(gt, anchors, 160, 160)
    assert np.isfinite(target).all() and not (cls == 1).any() and not mask.any()

def test_generator_no_ground_truth_gives_negatives_and_zero_masks():
    anchors = gluon_anchors(160, 160)
    cls, target, mask = RPNTargetGenerator(num_sample=32)(np.zeros((0, 4), np.float32),
                                                          anchors, 160, 160)
    assert (cls == 0).sum() == 32 and not (cls == 1).any()
    assert not target.any() and not mask.any()

def test_generator_hard_box_makes_no_positive_and_ignores_its_anchors():
    anchors = gluon_anchors(160, 160)
    gt = np.array([[20, 20, 80, 80], [100, 100, 150, 150]], np.float32)
    gen = RPNTargetGenerator(ALL)
    cls, _, _ = gen(gt, anchors, 160, 160, hard=[0, 1])
    plain, _, _ = gen(gt[:1], anchors, 160, 160)
    near_hard = (box_iou(anchors.astype(np.float32), gt[1:])[:, 0] >= 0.3)
    assert not (cls[near_hard] == 1).any() and not (cls[near_hard] == 0).any()
    np.testing.assert_array_equal(cls[~near_hard], plain[~near_hard])

def test_generator_all_zero_flags_equal_no_flags_under_the_same_seed():
    anchors = gluon_anchors(240, 400)
    gt = random_gt(np.random.RandomState(16), 6, 400, 240)
    gen = RPNTargetGenerator(num_sample=64)
    assert_same(seeded(2, lambda: gen(gt, anchors, 400, 240, np.zeros(6))),
                seeded(2, lambda: gen(gt, anchors, 400, 240)))

def test_generator_hard_iof_thresh_ignores_anchors_inside_hard_box():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 100, 100], [60, 60, 70, 70]], np.float32)
    gt = np.array([[60, 60, 70, 70], [0, 0, 20, 20]], np.float32)  # box 1 is a hard region
    cls, _, _ = RPNTargetGenerator(ALL)(gt, anchors, 200, 200, hard=[0, 1])
    np.testing.assert_array_equal(cls, [0, 0, 1])  # IoU 0.25 with the hard box: negative
    gen = RPNTargetGenerator(ALL, hard=HardRule(iof_thresh=0.5))
    cls, _, _ = gen(gt, anchors, 200, 200, hard=[0, 1])
    np.testing.assert_array_equal(cls, [-1, 0, 1])  # IoF 1: ignored

def test_differs_from_gluoncv_box_mask_is_float32():
    anchors = gluon_anchors(160, 160)
    gt = random_gt(np.random.RandomState(9), 3, 160, 160)
    ours = RPNTargetGenerator()(gt, anchors, 160, 160)
    ref = gluoncv_targets(gt, anchors, 160, 160)
    assert [o.dtype for o in ours] == [np.float32] * 3
    assert ref[2].dtype == np.float64

def test_differs_from_gluoncv_ndarray_in_gives_ndarray_out():
    ctx = mx.cpu(1)
    anchors = gluon_anchors(160, 160)
    gt = random_gt(np.random.RandomState(10), 3, 160, 160)
    ours = RPNTargetGenerator()(mx.nd.array(gt, ctx=ctx), mx.nd.array(anchors, ctx=ctx), 160, 160)
    for out in ours:
        assert isinstance(out, mx.nd.NDArray) and out.context == ctx and out.dtype == np.float32
    ref = GluonGenerator()(mx.nd.array(gt), mx.nd.array(anchors), 160, 160)
    assert isinstance(ref[0], np.ndarray)

def test_generator_ndarray_backend_equals_numpy_backend():
    ctx = mx.cpu(1)
    rng = np.random.RandomState(11)
    anchors = gluon_anchors(160, 240)
    gt = random_gt(rng, 5, 240, 160)
    gt = np.concatenate([gt, -np.ones((1, 4), np.float32)])  # with a padding row
    hard = np.array([0, 1, 0, 0, 0, 0])
    gen = RPNTargetGenerator(ALL, hard=HardRule(iof_thresh=0.6))
    ref = gen(gt, anchors, 240, 160, hard)
    with force_ndarray_backend():
        out = gen(mx.nd.array(gt, ctx=ctx), mx.nd.array(anchors, ctx=ctx), 240, 160,
                  mx.nd.array(hard, ctx=ctx))
    np.testing.assert_array_equal(out[0].asnumpy(), ref[0])
    np.testing.assert_allclose(out[1].asnumpy(), ref[1], rtol=1e-6, atol=1e-6)  # log() ulps
    np.testing.assert_array_equal(out[2].asnumpy(), ref[2])

def test_generator_ndarray_backend_no_ground_truth():
    anchors = gluon_anchors(160, 160)
    with force_ndarray_backend():
        cls, target, _ = RPNTargetGenerator(num_sample=16)(
            mx.nd.array(np.zeros((0, 4), np.float32)), mx.nd.array(anchors), 160, 160)
    assert (cls.asnumpy() == 0).sum() == 16 and not target.asnumpy().any()

# ============================================================================ generator: fast path
@st.composite
def grid_scenes(draw):
    """Anchors in one or two grid levels (rows x cols x types), boxes, flags, image size."""
    levels = []
    for _ in range(draw(st.integers(1, 2))):
        stride = draw(st.sampled_from([4.0, 8.0, 6.5]))
        rows, cols = draw(st.integers(2, 9)), draw(st.integers(2, 9))
        shapes = draw(st.lists(st.tuples(st.sampled_from([4.0, 8.0, 13.0, 16.0, 24.5]),
                                         st.sampled_from([4.0, 8.0, 16.0, 21.0])),
                               min_size=1, max_size=4))
        off = draw(st.sampled_from([0.0, 0.5, stride / 2]))
        cy, cx = np.meshgrid(np.arange(rows) * stride + off, np.arange(cols) * stride + off,
                             indexing='ij')
        wh = np.array(shapes)
        anchors = np.stack([cx[..., None] - wh[:, 0] / 2, cy[..., None] - wh[:, 1] / 2,
                            cx[..., None] + wh[:, 0] / 2, cy[..., None] + wh[:, 1] / 2], -1)
        levels.append(anchors.reshape(-1, 4))
    anchors = np.concatenate(levels).astype(np.float32)
    width = draw(st.sampled_from([20, 33, 48, 64]))
    height = draw(st.sampled_from([20, 40, 64]))
    m = draw(st.integers(0, 6))
    coords = st.sampled_from([-4.0, 0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.5, 24.0, 32.0, 48.0])
    gt = draw(arrays(np.float32, (m, 4), elements=coords))
    fix = draw(arrays(bool, (m,), elements=st.booleans()))  # most boxes well formed
    gt[fix] = np.concatenate([np.minimum(gt[fix, :2], gt[fix, 2:]),
                              np.maximum(gt[fix, :2], gt[fix, 2:])], axis=1)
    hard = draw(arrays(bool, (m,), elements=st.booleans()))
    border = draw(st.sampled_from([0, 0, 3.0, np.inf]))
    return anchors, gt, hard, width, height, border

@settings(max_examples=250, deadline=None)
@given(grid_scenes(), st.sampled_from([(0.7, 0.3), (0.5, 0.5), (0.6, 0.0), (0.4, 0.1)]),
       st.booleans(), st.sampled_from([None, 0.5]), st.sampled_from([ALL, 6]))
def test_grid_path_equals_dense_path(scene, thresholds, low_quality, hard_iof, num_sample):
    anchors, gt, hard, width, height, border = scene
    kw = dict(num_sample=num_sample, pos_iou_thresh=thresholds[0],
              neg_iou_thresh=thresholds[1], allow_low_quality_matches=low_quality,
              hard=HardRule(iof_thresh=hard_iof), allowed_border=border)
    gen = RPNTargetGenerator(**kw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(anchor_grid.AnchorGrid, 'MIN_ANCHORS', 0)
        assert anchor_grid.AnchorGrid.build(anchors) is not None
        fast = seeded(0, lambda: gen(gt, anchors, width, height, hard))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(anchor_grid.AnchorGrid, 'build', classmethod(lambda cls, a: None))
        dense = seeded(0, lambda: RPNTargetGenerator(**kw)(gt, anchors, width, height, hard))
    assert_same(fast, dense)

@settings(max_examples=40, deadline=None)
@given(grid_scenes(), st.booleans(), st.sampled_from([None, 0.5]))
def test_generator_ndarray_backend_equals_numpy_backend_on_random_scenes(scene, low_quality,
                                                                          hard_iof):
    anchors, gt, hard, width, height, border = scene
    gen = RPNTargetGenerator(ALL, allow_low_quality_matches=low_quality,
                             hard=HardRule(iof_thresh=hard_iof), allowed_border=border)
    ref = gen(gt, anchors, width, height, hard)
    with force_ndarray_backend():
        out = gen(mx.nd.array(gt), mx.nd.array(anchors), width, height, mx.nd.array(hard))
    np.testing.assert_array_equal(out[0].asnumpy(), ref[0])
    np.testing.assert_allclose(out[1].asnumpy(), ref[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out[2].asnumpy(), ref[2])

def test_grid_path_finds_best_anchor_of_tiny_box(grid_always):
    # a 2 x 2 box has IoU < neg_iou_thresh with every anchor: found by the full search
    anchors = gluon_anchors(160, 160)
    gt = np.array([[70, 70, 72, 72]], np.float32)
    cls, _, _ = RPNTargetGenerator(ALL, allow_low_quality_matches=True)(gt, anchors, 160, 160)
    ious = box_iou(anchors.astype(np.float32), gt)[:, 0]
    valid = (anchors[:, :2] >= 0).all(1) & (anchors[:, 2] < 160) & (anchors[:, 3] < 160)
    np.testing.assert_array_equal(cls == 1, valid & (ious + EPS > ious[valid].max()))

def test_grid_cache_is_keyed_by_anchor_values(grid_always):
    anchors = gluon_anchors(160, 160).astype(np.float32)
    gt = random_gt(np.random.RandomState(12), 4, 160, 160)
    gen = RPNTargetGenerator(ALL)
    gen(gt, anchors, 160, 160)
    anchors += 3  # same array, new values
    assert_same(gen(gt, anchors, 160, 160), gluoncv_targets(gt, anchors, 160, 160))

def test_shuffled_anchors_take_the_dense_path_with_the_same_labels():
    rng = np.random.RandomState(13)
    anchors = gluon_anchors(240, 400).astype(np.float32)
    gt = random_gt(rng, 6, 400, 240)
    order = rng.permutation(len(anchors))
    assert anchor_grid.AnchorGrid.build(anchors[order]) is None
    cls = RPNTargetGenerator(ALL)(gt, anchors[order], 400, 240)[0]
    np.testing.assert_array_equal(cls, RPNTargetGenerator(ALL)(gt, anchors, 400, 240)[0][order])

# ============================================================================ generator: plumbing
def test_many_generator_calls_keep_memory_flat():
    # Image sizes large enough for the anchor-grid fast path, and more of them than its cache
    # holds, so that cached layouts are built and evicted throughout.
    rng = np.random.RandomState(15)
    gen = RPNTargetGenerator()
    sizes = [(h, w) for h in (320, 384, 448) for w in (480, 576, 640, 704)]
    anchor_sets = {s: gluon_anchors(*s) for s in sizes}
    assert min(len(a) for a in anchor_sets.values()) >= anchor_grid.AnchorGrid.MIN_ANCHORS
    nd_sets = {s: mx.nd.array(a) for s, a in anchor_sets.items()}

    def run(calls):
        for i in range(calls):
            h, w = sizes[i % len(sizes)]
            gt, anchors = random_gt(rng, 1 + i % 7, w, h), anchor_sets[(h, w)]
            if i % 2:  # as GluonCV's transform calls it
                gt, anchors = mx.nd.array(gt), nd_sets[(h, w)]
            out = gen(gt, anchors, w, h)
        mx.nd.waitall()
        return out

    run(100)
    gc.collect()
    page = resource.getpagesize()
    before = int(open('/proc/self/statm').read().split()[1]) * page
    run(1500)
    gc.collect()
    after = int(open('/proc/self/statm').read().split()[1]) * page
    assert after - before < 40 * 2 ** 20

@pytest.mark.parametrize('kwargs, name', [
    (dict(stds=(1, 1, 1)), 'stds'), (dict(stds=(1, 1, 0, 1)), 'stds'),
    (dict(stds='abcd'), 'stds'), (dict(allowed_border=-1), 'allowed_border'),
    (dict(num_sample=-3), 'num_sample'), (dict(pos_iou_thresh=0.2), 'pos_iou_thresh'),
    # The hard-box options: HardRule's fields, checked as the HardRule is built ...
    (dict(hard=dict(iof_thresh=0)), 'iof_thresh'), (dict(hard=dict(iof_thresh=1.5)), 'iof_thresh'),
    (dict(hard=dict(crowd_iof_thresh=0)), 'crowd_iof_thresh'),
    (dict(hard=dict(min_size=-1)), 'min_size'),
    # ... and a field the generator does not use (it ignores at neg_iou_thresh).
    (dict(hard=dict(iou_thresh=0.5)), 'iou_thresh'),
])
def test_bad_generator_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=r'\b' + name):
        if 'hard' in kwargs:
            kwargs = dict(kwargs, hard=HardRule(**kwargs['hard']))
        RPNTargetGenerator(**kwargs)

@pytest.mark.parametrize('args, match', [
    ((np.zeros((2, 5)), np.zeros((3, 4)), 10, 10), r'bbox.*\(2, 5\)'),
    ((np.zeros((2, 4)), np.zeros(4), 10, 10), r'anchor.*\(4,\)'),
    ((np.zeros((2, 4)), np.zeros((3, 4)), 0, 10), 'width'),
    ((np.zeros((2, 4)), np.zeros((3, 4)), 10, -1), 'height'),
    ((np.zeros((2, 4)), np.zeros((3, 4)), 10, 10, np.zeros(3)), r'hard.*\(2,\).*\(3,\)'),
    ((np.zeros((2, 4)), np.zeros((3, 4)), 10, 10, np.array([0, 5])), 'hard.*0/1'),
])
def test_bad_generator_inputs_raise_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        RPNTargetGenerator()(*args)

def test_generator_padding_rows_may_carry_padding_hard_flags():
    # GluonCV pads whole label rows with -1, the difficult column included.
    anchors = gluon_anchors(128, 128)
    gt = np.array([[10, 10, 60, 60], [70, 20, 120, 90]], np.float32)
    padded = np.concatenate([gt, -np.ones((2, 4), np.float32)])
    gen = RPNTargetGenerator(num_sample=10 ** 6)
    want = gen(gt, anchors, 128, 128, hard=np.array([1, 0], np.float32))
    got = gen(padded, anchors, 128, 128, hard=np.array([1, 0, -1, -1], np.float32))
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)
    # One rule for every sampler (samplers.checks.hard_flags): -1 reads as not hard anywhere.
    got = gen(gt, anchors, 128, 128, hard=np.array([1, -1], np.float32))
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match='hard'):
        gen(gt, anchors, 128, 128, hard=np.array([1, 2], np.float32))


def test_generator_reads_ndarray_anchors_in_place_and_sees_them_rewritten(grid_always):
    # A CPU NDArray is read without a copy; the anchor cache keeps its own copy, so anchors
    # written in place between calls are seen as new anchors.
    anchors = gluon_anchors(96, 128)
    shifted = anchors + np.float32(8)
    gt = np.array([[10, 10, 60, 50], [40, 30, 120, 90]], np.float32)
    assert anchor_grid.AnchorGrid.build(anchors) is not None  # the cached grid path
    nd_anchors = mx.nd.array(anchors)
    gen = RPNTargetGenerator()
    np.random.seed(0)
    first = [v.asnumpy() for v in gen(mx.nd.array(gt), nd_anchors, 128, 96)]
    nd_anchors[:] = shifted
    np.random.seed(0)
    second = [v.asnumpy() for v in gen(mx.nd.array(gt), nd_anchors, 128, 96)]
    np.random.seed(0)
    fresh = [v.asnumpy() for v in RPNTargetGenerator()(mx.nd.array(gt), mx.nd.array(shifted),
                                                          128, 96)]
    for got, want in zip(second, fresh):
        np.testing.assert_array_equal(got, want)
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    np.testing.assert_array_equal(nd_anchors.asnumpy(), shifted)  # never written by us
