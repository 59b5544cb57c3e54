"""QuotaSampler: the labelling rule, per-image quotas, hard boxes, its CustomOp, and GluonCV."""
import logging
import os
import pickle
import subprocess
import sys
import types

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from samplers import quota
from samplers._arrays import force_ndarray_backend
from samplers.quota import OP_TYPE, QuotaSampler, _QuotaOpProp, QuotaRule

gluoncv_sampler = pytest.importorskip('gluoncv.nn.sampler')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: IoU values exact in binary, so threshold comparisons mean the same in every dtype.
EXACT = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
BACKENDS = ('numpy input', 'ndarray, numpy backend', 'ndarray, nd backend')


# ----------------------------------------------------------------------------- helpers
def one_image(ious, matches=None, hard=None):
    """Batch of one image from per-proposal IoU rows (N, M); unmatched unless ``matches``."""
    ious = np.asarray(ious, dtype=np.float32)[None]
    matches = np.full(ious.shape[:2], -1.0, np.float32) if matches is None else \
        np.asarray(matches, dtype=np.float32)[None]
    return (matches, ious) if hard is None else (matches, ious, np.asarray(hard)[None])


CPU = mx.cpu()


def run(sampler, backend, *inputs, ctx=CPU):
    """The sampler's labels as numpy, through one of BACKENDS."""
    if backend == 'numpy input':
        return sampler(*inputs)
    nds = [mx.nd.array(x, ctx=ctx, dtype=x.dtype) for x in inputs]
    if backend == 'ndarray, nd backend':
        with force_ndarray_backend():
            return sampler(*nds).asnumpy()
    return sampler(*nds).asnumpy()


def counts(labels):
    """Per-image (positives, negatives)."""
    return (labels == 1).sum(axis=1), (labels == -1).sum(axis=1)


def clamp(value):
    return min(1.0, max(0.0, value))


def expected_candidates(matches, ious, hard, pos_thresh, neg_high, neg_low):
    """The documented rule restated one proposal at a time: (pos, neg) boolean (B, N)."""
    batch, num, num_box = ious.shape
    pos = np.zeros((batch, num), bool)
    neg = np.zeros((batch, num), bool)
    for b in range(batch):
        is_hard = [hard is not None and hard[b, j] > 0 for j in range(num_box)]
        for n in range(num):
            row, match = ious[b, n], matches[b, n]
            if not np.isfinite(row).all():
                continue
            matched = bool(match >= 0)
            matched_hard = matched and match < num_box and is_hard[int(match)]
            pos[b, n] = (matched and not matched_hard) or (not matched and any(
                row[j] >= clamp(pos_thresh) and not is_hard[j] for j in range(num_box)))
            best = row.max() if num_box else 0.0
            neg[b, n] = not matched and not pos[b, n] and neg_low <= best < clamp(neg_high)
    return pos, neg


def gluoncv_op(matches, ious, **kwargs):
    return mx.nd.Custom(mx.nd.array(matches), mx.nd.array(ious), op_type='quota_sampler',
                        **kwargs).asnumpy()


# ----------------------------------------------------------------------------- the rule
@pytest.mark.parametrize('backend', BACKENDS)
def test_matched_proposal_is_positive(backend):
    inputs = one_image([[0.1], [0.1]], matches=[0, -1])
    labels = run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)
    assert labels[0, 0] == 1 and labels[0, 1] == -1


@pytest.mark.parametrize('backend', BACKENDS)
def test_iou_at_pos_thresh_is_positive(backend):
    labels = run(QuotaSampler(10, 0.5, 0.25), backend, *one_image([[0.5], [0.375]]))
    assert labels[0].tolist() == [1, 0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_negative_range_includes_low_and_excludes_high(backend):
    sampler = QuotaSampler(10, 0.75, 0.5, neg_thresh_low=0.125)
    labels = run(sampler, backend, *one_image([[0.0], [0.125], [0.375], [0.5]]))
    assert labels[0].tolist() == [0, -1, -1, 0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_iou_between_neg_thresh_high_and_pos_thresh_is_ignored(backend):
    labels = run(QuotaSampler(10, 0.75, 0.25), backend, *one_image([[0.5]]))
    assert labels[0].tolist() == [0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_matched_proposal_in_negative_range_is_positive(backend):
    labels = run(QuotaSampler(10, 0.5, 0.5), backend, *one_image([[0.25]], matches=[0]))
    assert labels[0].tolist() == [1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_best_iou_over_all_boxes_decides(backend):
    labels = run(QuotaSampler(10, 0.5, 0.5), backend, *one_image([[0.0, 0.75], [0.25, 0.0]]))
    assert labels[0].tolist() == [1, -1]


def test_thresholds_are_clamped_into_unit_interval():
    # pos_thresh 1.5 acts as 1.0; neg_thresh_high -1 acts as 0, so IoU 0 is not negative.
    labels = QuotaSampler(10, 1.5, -1.0)(*one_image([[1.0], [0.0]]))
    assert labels[0].tolist() == [1, 0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_neg_thresh_low_above_one_gives_no_negatives_on_every_backend(backend):
    # neg_thresh_high 2 is clamped to 1, below neg_thresh_low; the op must still be built.
    labels = run(QuotaSampler(10, 0.5, 2.0, neg_thresh_low=1.5), backend,
                 *one_image([[0.25], [0.75]]))
    assert labels[0].tolist() == [0, 1]


@pytest.mark.parametrize('kwargs', [
    dict(neg_thresh_high=2.0, neg_thresh_low=1.5),
    dict(neg_thresh_high=np.inf, neg_thresh_low=np.inf),
    dict(pos_thresh=-1.0, neg_thresh_high=-0.5, neg_thresh_low=-0.75, pos_ratio=0.3),
    dict(pos_ratio=0.25, neg_ratio=0.5, fill_negative=False),
])
def test_op_attributes_rebuild_the_same_rule(kwargs):
    args = dict(num_sample=10, pos_thresh=0.5, neg_thresh_high=0.5)
    args.update(kwargs)
    rule = QuotaRule(**args)
    prop = _QuotaOpProp(**rule.attrs())
    assert vars(prop._rule) == vars(rule)


def test_nan_match_counts_as_no_match():
    labels = QuotaSampler(10, 0.5, 0.5)(*one_image([[0.25]], matches=[np.nan]))
    assert labels[0].tolist() == [-1]


# ----------------------------------------------------------------------------- quotas
@pytest.mark.parametrize('backend', BACKENDS)
def test_positives_are_capped_at_round_pos_ratio_times_num_sample(backend):
    labels = run(QuotaSampler(10, 0.5, 0.5, pos_ratio=0.3), backend, *one_image([[0.75]] * 8))
    assert counts(labels)[0].tolist() == [round(0.3 * 10)]


@pytest.mark.parametrize('backend', BACKENDS)
def test_negatives_without_fill_are_capped_at_int_neg_ratio_times_num_sample(backend):
    sampler = QuotaSampler(10, 0.5, 0.5, pos_ratio=0.3, neg_ratio=0.45, fill_negative=False)
    labels = run(sampler, backend, *one_image([[0.0]] * 12))
    assert counts(labels)[1].tolist() == [int(0.45 * 10)]


@pytest.mark.parametrize('backend', BACKENDS)
def test_fill_negative_takes_the_slots_positives_left(backend):
    sampler = QuotaSampler(10, 0.5, 0.5, pos_ratio=0.5, neg_ratio=0.2)
    labels = run(sampler, backend, *one_image([[0.75]] * 2 + [[0.0]] * 12))
    assert counts(labels)[0].tolist() == [2]
    assert counts(labels)[1].tolist() == [max(10 - 2, int(0.2 * 10))]


@pytest.mark.parametrize('fill_negative', [True, False])
@pytest.mark.parametrize('num_sample', [3 * 10 ** 9, 10 ** 20])
@pytest.mark.parametrize('backend', BACKENDS)
def test_num_sample_beyond_int32_keeps_every_candidate(backend, num_sample, fill_negative):
    sampler = QuotaSampler(num_sample, 0.5, 0.5, fill_negative=fill_negative)
    labels = run(sampler, backend, *one_image([[0.75], [0.0], [0.25]]))
    assert labels[0].tolist() == [1, -1, -1]


def test_neg_ratio_none_means_one_minus_pos_ratio():
    inputs = one_image([[0.0]] * 12)
    default = QuotaSampler(10, 0.5, 0.5, pos_ratio=0.3, fill_negative=False)(*inputs)
    explicit = QuotaSampler(10, 0.5, 0.5, pos_ratio=0.3, neg_ratio=0.7,
                            fill_negative=False)(*inputs)
    assert counts(default)[1].tolist() == counts(explicit)[1].tolist() == [int(0.7 * 10)]


@pytest.mark.parametrize('backend', BACKENDS)
def test_fewer_candidates_than_quota_are_all_kept(backend):
    inputs = one_image([[0.75], [0.0], [0.5], [0.25]])
    labels = run(QuotaSampler(100, 0.5, 0.5), backend, *inputs)
    assert labels[0].tolist() == [1, -1, 1, -1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_positive_over_quota_is_ignored_not_negative(backend):
    labels = run(QuotaSampler(2, 0.5, 0.5, pos_ratio=0.5), backend, *one_image([[0.75]] * 5))
    assert sorted(labels[0].tolist()) == [0, 0, 0, 0, 1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_each_image_has_its_own_quota(backend):
    # Image 0 has no positives, so it may fill 4 negatives; image 1 keeps 2 + 2.
    matches = np.array([[-1] * 6, [0, 0, -1, -1, -1, -1]], np.float32)
    ious = np.array([[[0.125]] * 6, [[0.875]] * 2 + [[0.125]] * 4], np.float32)
    labels = run(QuotaSampler(4, 0.5, 0.5, pos_ratio=0.5), backend, matches, ious)
    assert counts(labels)[0].tolist() == [0, 2]
    assert counts(labels)[1].tolist() == [4, 2]


@pytest.mark.parametrize('backend', BACKENDS)
def test_kept_subset_is_uniform(backend):
    sampler = QuotaSampler(4, 0.5, 0.5, pos_ratio=0.5, neg_ratio=0.0, fill_negative=False)
    # 400 images in one call (each its own quota and draw), and a second call for fresh keys.
    inputs = [np.repeat(x, 400, axis=0) for x in one_image([[0.75]] * 4)]
    first, second = (run(sampler, backend, *inputs) == 1 for _ in range(2))
    assert (first.sum(axis=1) == 2).all()
    hits = first.sum(axis=0)
    # Each of the 4 candidates is kept with probability 1/2: 200 +- 5 sigma (sigma = 10).
    assert np.all(np.abs(hits - 200) < 50), hits
    assert (first != second).any()


# ----------------------------------------------------------------------------- no boxes
@pytest.mark.parametrize('backend', BACKENDS)
def test_no_boxes_gives_negatives_and_matched_positives(backend):
    matches = np.array([[0, -1, -1]], np.float32)
    ious = np.zeros((1, 3, 0), np.float32)
    labels = run(QuotaSampler(10, 0.5, 0.5), backend, matches, ious)
    assert labels[0].tolist() == [1, -1, -1]


def test_no_boxes_means_best_iou_zero_for_the_negative_range():
    ious = np.zeros((1, 2, 0), np.float32)
    labels = QuotaSampler(10, 0.5, 0.5, neg_thresh_low=0.125)(np.full((1, 2), -1.0), ious)
    assert labels[0].tolist() == [0, 0]


@pytest.mark.parametrize('nd_backend', [False, True])
def test_mx_random_seed_alone_reproduces_an_ndarray_call_without_boxes(nd_backend):
    matches = mx.nd.array(np.full((2, 30), -1.0, np.float32))
    ious = mx.nd.array(np.zeros((2, 30, 0), np.float32))
    runs = []
    for numpy_seed in (1, 2):  # the docstring: mx.random.seed alone reproduces NDArray calls
        mx.random.seed(5)
        np.random.seed(numpy_seed)
        if nd_backend:
            with force_ndarray_backend():
                runs.append(QuotaSampler(4, 0.5, 0.5)(matches, ious).asnumpy())
        else:
            runs.append(QuotaSampler(4, 0.5, 0.5)(matches, ious).asnumpy())
    assert counts(runs[0])[1].tolist() == [4, 4]
    np.testing.assert_array_equal(*runs)


@pytest.mark.parametrize('shape', [(0, 3, 2), (2, 0, 2)])
@pytest.mark.parametrize('backend', BACKENDS)
def test_empty_batch_or_no_proposals_give_empty_labels(backend, shape):
    ious = np.zeros(shape, np.float32)
    labels = run(QuotaSampler(10, 0.5, 0.5), backend, np.zeros(shape[:2], np.float32), ious)
    assert labels.shape == shape[:2]


# ----------------------------------------------------------------------------- non-finite
@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize('backend', BACKENDS)
def test_non_finite_iou_row_is_ignored(backend, bad):
    inputs = one_image([[0.75, bad], [0.0, bad], [0.75, 0.0]], matches=[0, -1, -1])
    labels = run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)
    assert labels[0].tolist() == [0, 0, 1]


@pytest.fixture
def fresh_warnings(monkeypatch):
    """The process has not warned yet (as at start-up)."""
    monkeypatch.setattr(quota, '_WARNED', types.SimpleNamespace())


def nonfinite_warnings(caplog):
    return [r for r in caplog.records if 'NaN or infinite' in r.message]


def test_non_finite_iou_warns_once_per_process(fresh_warnings, caplog):
    inputs = one_image([[np.nan]])
    with caplog.at_level(logging.WARNING, logger='samplers'):
        for sampler in (QuotaSampler(10, 0.5, 0.5), QuotaSampler(4, 0.5, 0.5)):
            for backend in ('numpy input', 'ndarray, numpy backend'):
                run(sampler, backend, *inputs)
        pickle.loads(pickle.dumps(QuotaSampler(10, 0.5, 0.5)))(*inputs)
    assert len(nonfinite_warnings(caplog)) == 1


def test_finite_input_does_not_use_up_the_warning(fresh_warnings, caplog):
    with caplog.at_level(logging.WARNING, logger='samplers'):
        QuotaSampler(10, 0.5, 0.5)(*one_image([[0.5]]))
        QuotaSampler(10, 0.5, 0.5)(*one_image([[np.inf]]))
    assert len(nonfinite_warnings(caplog)) == 1


def test_op_attributes_carry_no_per_sampler_state():
    out = QuotaSampler(10, 0.5, 0.5)(mx.sym.var('m'), mx.sym.var('i'))
    twin = QuotaSampler(10, 0.5, 0.5)(mx.sym.var('m'), mx.sym.var('i'))
    attrs = out.attr_dict()[out.name]
    assert 'owner' not in attrs
    assert attrs == twin.attr_dict()[twin.name]


# ----------------------------------------------------------------------------- hard boxes
@pytest.mark.parametrize('backend', BACKENDS)
def test_hard_box_iou_never_makes_a_positive(backend):
    inputs = one_image([[0.875, 0.0]], hard=[1, 0])
    assert run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)[0].tolist() == [0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_match_to_a_hard_box_is_ignored(backend):
    inputs = one_image([[0.25, 0.0]], matches=[0], hard=[1, 0])
    assert run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)[0].tolist() == [0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_match_to_a_hard_box_is_ignored_even_when_a_normal_box_overlaps_at_pos_thresh(backend):
    inputs = one_image([[0.875, 0.625]], matches=[0], hard=[1, 0])
    assert run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)[0].tolist() == [0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_overlap_with_hard_box_above_neg_thresh_high_is_ignored_not_negative(backend):
    inputs = one_image([[0.625, 0.0]], hard=[1, 0])
    assert run(QuotaSampler(10, 0.75, 0.5), backend, *inputs)[0].tolist() == [0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_hard_box_does_not_block_a_positive_for_a_normal_box(backend):
    inputs = one_image([[0.875, 0.5], [0.875, 0.25]], matches=[-1, 1], hard=[1, 0])
    assert run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)[0].tolist() == [1, 1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_low_overlap_with_hard_box_can_still_be_negative(backend):
    inputs = one_image([[0.25, 0.0]], hard=[1, 0])
    assert run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)[0].tolist() == [-1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_match_index_past_the_last_box_counts_as_a_normal_box(backend):
    inputs = one_image([[0.0]], matches=[3], hard=[1])
    assert run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)[0].tolist() == [1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_all_normal_hard_flags_equal_no_flags(backend):
    rng = np.random.RandomState(0)
    ious = rng.choice(EXACT, (2, 30, 4)).astype(np.float32)
    matches = np.where(ious.max(-1) >= 0.75, ious.argmax(-1), -1).astype(np.float32)
    sampler = QuotaSampler(100, 0.625, 0.375)
    np.testing.assert_array_equal(run(sampler, backend, matches, ious),
                                  run(sampler, backend, matches, ious, np.zeros((2, 4))))


# ----------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize('dtype', ['float16', 'float32', 'float64'])
@pytest.mark.parametrize('backend', BACKENDS)
def test_float_inputs_work_and_labels_take_matches_dtype(backend, dtype):
    matches, ious = one_image([[0.75], [0.25], [0.5]], matches=[-1, -1, 0])
    matches, ious = matches.astype(dtype), ious.astype(dtype)
    labels = run(QuotaSampler(10, 0.625, 0.375), backend, matches, ious)
    assert labels.dtype == np.dtype(dtype)
    assert labels[0].tolist() == [1, -1, 1]


@pytest.mark.parametrize('dtype', ['int32', 'int64'])
@pytest.mark.parametrize('backend', BACKENDS)
def test_integer_matches_give_float32_labels(backend, dtype):
    matches, ious = one_image([[0.25], [0.25]], matches=[0, -1])
    labels = run(QuotaSampler(10, 0.5, 0.5), backend, matches.astype(dtype), ious)
    assert labels.dtype == np.float32
    assert labels[0].tolist() == [1, -1]


def test_symbol_output_type_follows_matches():
    out = QuotaSampler(10, 0.5, 0.5)(mx.sym.var('m'), mx.sym.var('i'))
    for m_type, want in ((np.float16, np.float16), (np.int32, np.float32)):
        _, (got,), _ = out.infer_type(m=m_type, i=np.float32)
        assert got == want


# ----------------------------------------------------------------------------- properties
@st.composite
def sampler_cases(draw, max_batch=3, max_num=12, max_box=4):
    """(sampler kwargs, matches, ious, hard or None) on exact IoU values, with NaN rows."""
    batch = draw(st.integers(1, max_batch))
    num = draw(st.integers(1, max_num))
    num_box = draw(st.integers(0, max_box))
    ious = draw(hnp.arrays(np.float32, (batch, num, num_box),
                           elements=st.sampled_from(EXACT + (np.nan,) if draw(st.booleans())
                                                    else EXACT)))
    matches = draw(hnp.arrays(np.float32, (batch, num),
                              elements=st.integers(-1, max(num_box - 1, 0)).map(float)))
    hard = draw(st.none() | hnp.arrays(np.float32, (batch, num_box),
                                       elements=st.sampled_from((0.0, 1.0))))
    pos_ratio = draw(st.sampled_from((0.0, 0.25, 0.5, 0.75, 1.0)))
    neg_ratio = draw(st.none() | st.sampled_from([r for r in (0.0, 0.25, 0.5, 0.75, 1.0)
                                                  if r + pos_ratio <= 1]))
    neg_high = draw(st.sampled_from(EXACT + (-0.5, 1.5)))
    kwargs = dict(num_sample=draw(st.integers(1, 16)),
                  pos_thresh=draw(st.sampled_from(EXACT + (-0.5, 1.5))),
                  neg_thresh_high=neg_high,
                  neg_thresh_low=draw(st.sampled_from([v for v in (-np.inf,) + EXACT
                                                       if v <= neg_high])),
                  pos_ratio=pos_ratio, neg_ratio=neg_ratio, fill_negative=draw(st.booleans()))
    return kwargs, matches, ious, hard


def check_labels_follow_the_rule(kwargs, matches, ious, hard, labels):
    """Labels in {-1, 0, 1}, kept from the right candidates, as many as the quota allows."""
    assert set(np.unique(labels)) <= {-1, 0, 1}
    pos, neg = expected_candidates(matches, ious, hard, kwargs['pos_thresh'],
                                   kwargs['neg_thresh_high'], kwargs['neg_thresh_low'])
    assert not np.any((labels == 1) & ~pos), 'a positive label on a non-candidate'
    assert not np.any((labels == -1) & ~neg), 'a negative label on a non-candidate'
    num_sample, neg_ratio = kwargs['num_sample'], kwargs['neg_ratio']
    neg_ratio = 1 - kwargs['pos_ratio'] if neg_ratio is None else neg_ratio
    n_pos, n_neg = counts(labels)
    want_pos = np.minimum(pos.sum(1), round(kwargs['pos_ratio'] * num_sample))
    neg_quota = int(neg_ratio * num_sample)
    if kwargs['fill_negative']:
        neg_quota = np.maximum(num_sample - want_pos, neg_quota)
    np.testing.assert_array_equal(n_pos, want_pos)
    np.testing.assert_array_equal(n_neg, np.minimum(neg.sum(1), neg_quota))


@settings(max_examples=300, deadline=None)
@given(sampler_cases())
def test_property_numpy_input_follows_the_rule(case):
    kwargs, matches, ious, hard = case
    labels = QuotaSampler(**kwargs)(matches, ious, hard)
    check_labels_follow_the_rule(kwargs, matches, ious, hard, labels)


@settings(max_examples=150, deadline=None)
@given(sampler_cases())
def test_property_ndarray_op_follows_the_rule(case):
    kwargs, matches, ious, hard = case
    inputs = [x for x in (matches, ious, hard) if x is not None]
    labels = run(QuotaSampler(**kwargs), 'ndarray, numpy backend', *inputs)
    check_labels_follow_the_rule(kwargs, matches, ious, hard, labels)


@settings(max_examples=150, deadline=None)
@given(sampler_cases())
def test_property_nd_backend_follows_the_rule(case):
    kwargs, matches, ious, hard = case
    inputs = [x for x in (matches, ious, hard) if x is not None]
    labels = run(QuotaSampler(**kwargs), 'ndarray, nd backend', *inputs)
    check_labels_follow_the_rule(kwargs, matches, ious, hard, labels)


@settings(max_examples=150, deadline=None)
@given(sampler_cases(), st.sampled_from(BACKENDS))
def test_property_no_positive_is_matched_to_a_hard_box(case, backend):
    kwargs, matches, ious, hard = case
    if not ious.shape[2]:
        return  # no box to be hard
    if hard is None:
        hard = np.ones(ious.shape[::2], np.float32)
    labels = run(QuotaSampler(**kwargs), backend, matches, ious, hard)
    index = matches.astype(int)
    hard_match = np.zeros(matches.shape, bool)
    inside = (index >= 0) & (index < ious.shape[2])
    rows, cols = np.nonzero(inside)
    hard_match[rows, cols] = hard[rows, index[rows, cols]] > 0
    assert not ((labels == 1) & hard_match).any()


@settings(max_examples=100, deadline=None)
@given(sampler_cases(), st.integers(0, 2**31 - 1))
def test_property_seeded_runs_reproduce(case, seed):
    kwargs, matches, ious, hard = case
    inputs = [x for x in (matches, ious, hard) if x is not None]
    sampler = QuotaSampler(**kwargs)
    for backend in BACKENDS:
        runs = []
        for _ in range(2):
            mx.random.seed(seed)
            np.random.seed(seed)
            runs.append(run(sampler, backend, *inputs))
        np.testing.assert_array_equal(*runs)


@settings(max_examples=100, deadline=None)
@given(sampler_cases())
def test_property_nd_backend_equals_numpy_backend_without_subsampling(case):
    kwargs, matches, ious, hard = case
    kwargs['num_sample'] = 2 * matches.shape[1]
    kwargs['pos_ratio'], kwargs['neg_ratio'] = 0.5, 0.5
    inputs = [x for x in (matches, ious, hard) if x is not None]
    sampler = QuotaSampler(**kwargs)
    np.testing.assert_array_equal(run(sampler, 'ndarray, nd backend', *inputs),
                                  run(sampler, 'ndarray, numpy backend', *inputs))


# ----------------------------------------------------------------------------- GluonCV
def gluoncv_case(seed, batch=2, num=40, num_box=5):
    """Random exact IoUs; matched (argmax) wherever the best IoU is >= 0.75."""
    rng = np.random.RandomState(seed)
    ious = rng.choice(EXACT, (batch, num, num_box)).astype(np.float32)
    matches = np.where(ious.max(-1) >= 0.75, ious.argmax(-1), -1).astype(np.float32)
    return matches, ious


# (pos_thresh, neg_thresh_high, neg_thresh_low): plain, ignore band, lower bound
GLUONCV_THRESHOLDS = [(0.5, 0.5, 0.0), (0.625, 0.25, 0.0), (0.5, 0.5, 0.25)]
#: pos_thresh below neg_thresh_high: the positive and negative ranges overlap.
OVERLAPPING_THRESHOLDS = [(0.25, 0.75, 0.0)]


@pytest.mark.parametrize('thresholds', GLUONCV_THRESHOLDS)
@pytest.mark.parametrize('seed', range(3))
def test_same_labels_as_gluoncv_block_without_subsampling(seed, thresholds):
    # Matched proposals (best IoU >= 0.75) and positives lie outside every negative range
    # here, so the Block's negative-first order does not show.
    matches, ious = gluoncv_case(seed)
    pos_t, neg_h, neg_l = thresholds
    theirs = gluoncv_sampler.QuotaSampler(1000, pos_t, neg_h, neg_l)(
        mx.nd.array(matches), mx.nd.array(ious)).asnumpy()
    ours = QuotaSampler(1000, pos_t, neg_h, neg_l)(mx.nd.array(matches), mx.nd.array(ious))
    np.testing.assert_array_equal(ours.asnumpy(), theirs)


@pytest.mark.parametrize('thresholds', GLUONCV_THRESHOLDS + OVERLAPPING_THRESHOLDS)
@pytest.mark.parametrize('seed', range(3))
def test_same_labels_as_gluoncv_op_without_subsampling(seed, thresholds):
    # The op's order (positive first) is ours, so matched proposals may lie in the range.
    matches, ious = gluoncv_case(seed)
    matches[:, ::3] = 0
    pos_t, neg_h, neg_l = thresholds
    theirs = gluoncv_op(matches, ious, num_sample=1000, pos_thresh=pos_t, neg_thresh_high=neg_h,
                        neg_thresh_low=neg_l)
    ours = QuotaSampler(1000, pos_t, neg_h, neg_l)(matches, ious)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize('seed', range(3))
def test_same_counts_as_gluoncv_when_subsampling_one_image(seed):
    matches, ious = gluoncv_case(seed, batch=1, num=200)
    theirs = gluoncv_sampler.QuotaSampler(32, 0.5, 0.5, pos_ratio=0.25)(
        mx.nd.array(matches), mx.nd.array(ious)).asnumpy()
    ours = QuotaSampler(32, 0.5, 0.5, pos_ratio=0.25)(matches, ious)
    assert [c.tolist() for c in counts(ours)] == [c.tolist() for c in counts(theirs)]


def test_differs_from_gluoncv_neg_ratio_works():
    with pytest.raises(AttributeError):
        gluoncv_sampler.QuotaSampler(10, 0.5, 0.5, pos_ratio=0.2, neg_ratio=0.3)
    labels = QuotaSampler(10, 0.5, 0.5, pos_ratio=0.2, neg_ratio=0.3, fill_negative=False)(
        *one_image([[0.0]] * 12))
    assert counts(labels)[1].tolist() == [int(0.3 * 10)]


def test_differs_from_gluoncv_quota_does_not_leak_to_the_next_image():
    # GluonCV raises image 0's filled negative quota (4) into image 1's (2).
    matches = np.array([[-1] * 6, [0, 0, -1, -1, -1, -1]], np.float32)
    ious = np.array([[[0.125]] * 6, [[0.875]] * 2 + [[0.125]] * 4], np.float32)
    kwargs = dict(num_sample=4, pos_thresh=0.5, neg_thresh_high=0.5, pos_ratio=0.5)
    theirs = gluoncv_sampler.QuotaSampler(**kwargs)(mx.nd.array(matches), mx.nd.array(ious))
    assert counts(theirs.asnumpy())[1].tolist() == [4, 4]
    assert counts(gluoncv_op(matches, ious, **kwargs))[1].tolist() == [4, 4]
    assert counts(QuotaSampler(**kwargs)(matches, ious))[1].tolist() == [4, 2]


def test_differs_from_gluoncv_block_matched_proposal_is_never_negative():
    matches, ious = one_image([[0.25]], matches=[0])
    theirs = gluoncv_sampler.QuotaSampler(10, 0.5, 0.5)(mx.nd.array(matches), mx.nd.array(ious))
    assert theirs.asnumpy()[0].tolist() == [-1]
    assert gluoncv_op(matches, ious, num_sample=10, pos_thresh=0.5,
                      neg_thresh_high=0.5)[0].tolist() == [1]
    assert QuotaSampler(10, 0.5, 0.5)(matches, ious)[0].tolist() == [1]


def test_differs_from_gluoncv_hard_boxes_make_no_positives():
    matches, ious, hard = one_image([[0.875], [0.25]], matches=[-1, 0], hard=[1])
    theirs = gluoncv_op(matches, ious, num_sample=10, pos_thresh=0.5, neg_thresh_high=0.5)
    assert theirs[0].tolist() == [1, 1]
    assert QuotaSampler(10, 0.5, 0.5)(matches, ious, hard)[0].tolist() == [0, 0]


def gluoncv_both(matches, ious):
    """GluonCV's Block and CustomOp labels (num_sample 10, thresholds 0.5) as lists."""
    block = gluoncv_sampler.QuotaSampler(10, 0.5, 0.5)(mx.nd.array(matches), mx.nd.array(ious))
    op = gluoncv_op(matches, ious, num_sample=10, pos_thresh=0.5, neg_thresh_high=0.5)
    return block.asnumpy()[0].tolist(), op[0].tolist()


@pytest.mark.parametrize('backend', BACKENDS)
def test_differs_from_gluoncv_infinite_iou_is_ignored_not_positive(backend):
    inputs = one_image([[np.inf, 0.125], [0.125, 0.125]])
    assert gluoncv_both(*inputs) == ([1, -1], [1, -1])
    assert run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)[0].tolist() == [0, -1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_differs_from_gluoncv_minus_infinite_iou_is_ignored_not_negative(backend):
    inputs = one_image([[-np.inf, 0.125], [0.125, 0.125]])
    assert gluoncv_both(*inputs) == ([-1, -1], [-1, -1])
    assert run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)[0].tolist() == [0, -1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_differs_from_gluoncv_nan_iou_of_a_matched_proposal_is_ignored_not_positive(backend):
    inputs = one_image([[np.nan, 0.125], [0.125, 0.125]], matches=[0, -1])
    assert gluoncv_both(*inputs) == ([1, -1], [1, -1])
    assert run(QuotaSampler(10, 0.5, 0.5), backend, *inputs)[0].tolist() == [0, -1]


def test_differs_from_gluoncv_fill_negative_string_raises_value_error():
    # GluonCV reads any non-empty string as True: 'no' still fills 4 slots, not int(0.5 * 4).
    matches, ious = one_image([[0.125]] * 6)
    theirs = gluoncv_sampler.QuotaSampler(4, 0.5, 0.5, pos_ratio=0.5, fill_negative='no')(
        mx.nd.array(matches), mx.nd.array(ious)).asnumpy()
    assert counts(theirs)[1].tolist() == [4]
    with pytest.raises(ValueError, match='fill_negative'):
        QuotaSampler(4, 0.5, 0.5, pos_ratio=0.5, fill_negative='no')


def test_differs_from_gluoncv_pos_ratio_above_one_raises_value_error():
    # GluonCV takes it silently (neg_ratio becomes -0.5, the sum passes its assert).
    gluoncv_sampler.QuotaSampler(10, 0.5, 0.5, pos_ratio=1.5)(
        *[mx.nd.array(x) for x in one_image([[0.0]])])
    with pytest.raises(ValueError, match='pos_ratio'):
        QuotaSampler(10, 0.5, 0.5, pos_ratio=1.5)


@pytest.mark.parametrize('order', ['gluoncv.nn.sampler,samplers.quota',
                                   'samplers.quota,gluoncv.nn.sampler'])
def test_import_order_changes_neither_op(order):
    # On Python 3.12 mxnet needs the numpy aliases of samplers/_compat.py; run from the file,
    # it adds them without importing samplers, so the import order stays the test's.
    script = '''
import runpy; runpy.run_path('samplers/_compat.py')
import importlib, sys
import mxnet as mx
for name in sys.argv[1].split(','):
    importlib.import_module(name)
m = mx.nd.array([[-1] * 6, [0, 0, -1, -1, -1, -1]])
i = mx.nd.array([[[0.125]] * 6, [[0.875]] * 2 + [[0.125]] * 4])
keys = mx.nd.random.uniform_like(m)
for op, inputs in (('quota_sampler', (m, i)), ('samplers_quota', (m, i, keys))):
    y = mx.nd.Custom(*inputs, op_type=op, num_sample=4, pos_thresh=0.5, neg_thresh_high=0.5,
                     pos_ratio=0.5).asnumpy()
    print(op, int((y[1] == -1).sum()))
'''
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    out = subprocess.run([sys.executable, '-c', script, order], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    # GluonCV's op keeps its leaking quota (4 negatives in image 1); ours keeps its own (2).
    assert out.split('\n')[-3:-1] == ['quota_sampler 4', OP_TYPE + ' 2']


# ----------------------------------------------------------------------------- graphs
def subsampling_case(seed=0):
    matches, ious = gluoncv_case(seed, batch=3, num=60)
    hard = (np.random.RandomState(seed).uniform(size=(3, 5)) < 0.3).astype(np.float32)
    return matches, ious, hard


@pytest.mark.parametrize('with_hard', [False, True])
@pytest.mark.parametrize('nd_backend', [False, True])
def test_hybridized_equals_imperative_under_same_seed(with_hard, nd_backend):
    inputs = [mx.nd.array(x) for x in subsampling_case()[:3 if with_hard else 2]]
    sampler = QuotaSampler(16, 0.5, 0.5, pos_ratio=0.25)
    results = []
    for hybridize in (False, True, True):  # the second hybridized call reuses the graph
        sampler.hybridize(hybridize)
        mx.random.seed(7)
        np.random.seed(7)
        if nd_backend:
            with force_ndarray_backend():
                results.append(sampler(*inputs).asnumpy())
        else:
            results.append(sampler(*inputs).asnumpy())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_works_inside_a_hybridized_network():
    class Net(mx.gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.sampler = QuotaSampler(16, 0.5, 0.5, pos_ratio=0.25)

        def hybrid_forward(self, F, matches, ious):
            return self.sampler(matches, ious) * 2

    inputs = [mx.nd.array(x) for x in subsampling_case()[:2]]
    net = Net()
    results = []
    for hybridize in (False, True, True):
        net.hybridize(hybridize)
        mx.random.seed(3)
        np.random.seed(3)
        results.append(net(*inputs).asnumpy())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def seed_both(value):
    """The documented way to reproduce a run: seed MXNet's RNG and numpy's."""
    mx.random.seed(value)
    np.random.seed(value)


@pytest.mark.parametrize('with_hard', [False, True])
def test_symbol_graph_bind_and_forward(with_hard):
    data = subsampling_case()[:3 if with_hard else 2]
    names = ['matches', 'ious', 'hard'][:len(data)]
    sampler = QuotaSampler(16, 0.5, 0.5, pos_ratio=0.25)
    out = sampler(*[mx.sym.var(n) for n in names])
    assert out.list_arguments() == names
    exe = out.bind(mx.cpu(), {n: mx.nd.array(x) for n, x in zip(names, data)})
    seed_both(5)
    graph = exe.forward()[0].asnumpy()
    seed_both(5)
    np.testing.assert_array_equal(graph, sampler(*[mx.nd.array(x) for x in data]).asnumpy())


def test_simple_bind_with_forced_nd_backend_follows_the_rule(monkeypatch):
    calls = []
    real = QuotaRule.label_nd
    monkeypatch.setattr(QuotaRule, 'label_nd', lambda *a: calls.append(1) or real(*a))
    matches, ious = subsampling_case()[:2]
    out = QuotaSampler(16, 0.5, 0.5, pos_ratio=0.25)(mx.sym.var('m'), mx.sym.var('i'))
    with force_ndarray_backend():  # the backend is chosen when the op is created
        exe = out.simple_bind(mx.cpu(), m=matches.shape, i=ious.shape)
    labels = exe.forward(m=matches, i=ious)[0].asnumpy()
    assert calls
    kwargs = dict(num_sample=16, pos_thresh=0.5, neg_thresh_high=0.5, neg_thresh_low=-np.inf,
                  pos_ratio=0.25, neg_ratio=None, fill_negative=True)
    check_labels_follow_the_rule(kwargs, matches, ious, None, labels)


def test_cpu_ndarrays_take_the_numpy_backend_unless_forced(monkeypatch):
    calls = []
    for name in ('label_numpy', 'label_nd'):
        real = getattr(QuotaRule, name)
        monkeypatch.setattr(QuotaRule, name,
                            lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    inputs = [mx.nd.array(x) for x in one_image([[0.5]])]
    QuotaSampler(10, 0.5, 0.5)(*inputs).wait_to_read()
    with force_ndarray_backend():
        QuotaSampler(10, 0.5, 0.5)(*inputs).wait_to_read()
    assert calls == ['label_numpy', 'label_nd']


@pytest.mark.filterwarnings('ignore:Cannot decide type')  # SymbolBlock.imports, no params
@pytest.mark.parametrize('with_hard', [False, True])
def test_export_import_round_trip(tmp_path, with_hard):
    inputs = [mx.nd.array(x) for x in subsampling_case()[:3 if with_hard else 2]]
    sampler = QuotaSampler(16, 0.5, 0.5, pos_ratio=0.25)
    sampler.hybridize()
    seed_both(9)
    before = sampler(*inputs).asnumpy()
    sampler.export(str(tmp_path / 'quota'))
    names = ['data{}'.format(i) for i in range(len(inputs))]
    loaded = mx.gluon.SymbolBlock.imports(str(tmp_path / 'quota-symbol.json'), names,
                                          str(tmp_path / 'quota-0000.params'))
    seed_both(9)
    np.testing.assert_array_equal(loaded(*inputs).asnumpy(), before)


def test_gradients_are_zero():
    matches, ious = [mx.nd.array(x) for x in subsampling_case()[:2]]
    ious.attach_grad()
    with mx.autograd.record():
        labels = QuotaSampler(16, 0.5, 0.5)(matches, ious)
    labels.backward()
    assert not ious.grad.asnumpy().any()


def test_picklable_after_running_a_hybridized_graph():
    inputs = [mx.nd.array(x) for x in subsampling_case()]
    sampler = QuotaSampler(16, 0.5, 0.5, pos_ratio=0.25)
    sampler.hybridize()
    seed_both(4)
    want = sampler(*inputs).asnumpy()
    copy = pickle.loads(pickle.dumps(sampler))
    seed_both(4)
    np.testing.assert_array_equal(copy(*inputs).asnumpy(), want)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('kwargs, name', [
    (dict(num_sample=0), 'num_sample'),
    (dict(num_sample=2.5), 'num_sample'),
    (dict(pos_ratio=-0.1), 'pos_ratio'),
    (dict(pos_ratio=1.1), 'pos_ratio'),
    (dict(neg_ratio=1.2), 'neg_ratio'),
    (dict(pos_ratio=0.6, neg_ratio=0.5), 'pos_ratio \\+ neg_ratio'),
    (dict(neg_thresh_low=0.6, neg_thresh_high=0.4), 'neg_thresh_low'),
    (dict(pos_thresh=float('nan')), 'pos_thresh'),
    (dict(neg_thresh_high='0.5'), 'neg_thresh_high'),
    (dict(fill_negative='yes'), 'fill_negative'),
    (dict(fill_negative='False'), 'fill_negative'),
    (dict(fill_negative=None), 'fill_negative'),
    (dict(fill_negative=2), 'fill_negative'),
    (dict(fill_negative=1), 'fill_negative'),
    (dict(fill_negative=0), 'fill_negative'),
    (dict(fill_negative='no'), 'fill_negative'),
])
def test_bad_argument_raises_value_error_naming_it(kwargs, name):
    args = dict(num_sample=10, pos_thresh=0.5, neg_thresh_high=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        QuotaSampler(**args)


@pytest.mark.parametrize('value, want', [(True, True), (False, False), (np.bool_(True), True),
                                         (np.bool_(False), False)])
def test_fill_negative_takes_a_bool_or_numpy_bool(value, want):
    assert QuotaSampler(10, 0.5, 0.5, fill_negative=value)._rule.fill_negative is want


@pytest.mark.parametrize('text', ['yes', 'no', '', 'None'])
def test_op_attribute_fill_negative_is_parsed_strictly(text):
    with pytest.raises(ValueError, match='fill_negative'):
        _QuotaOpProp(num_sample='10', pos_thresh='0.5', neg_thresh_high='0.5',
                     fill_negative=text)


@pytest.mark.parametrize('shapes, match', [
    (((2, 3), (2, 4, 5), None), r'matches \(2, 3\) and ious \(2, 4, 5\)'),
    (((3,), (3, 5), None), r'matches \(3,\) and ious \(3, 5\)'),
    (((2, 3), (2, 3, 5), (2, 4)), r'hard.*\(2, 5\).*\(2, 3, 5\).*\(2, 4\)'),
])
@pytest.mark.parametrize('kind', ['numpy', 'ndarray', 'hybridized'])
def test_bad_shapes_raise_value_error_naming_both_before_any_work(shapes, match, kind):
    arrays = [None if s is None else np.zeros(s, np.float32) for s in shapes]
    sampler = QuotaSampler(10, 0.5, 0.5)
    if kind != 'numpy':
        arrays = [None if a is None else mx.nd.array(a) for a in arrays]
        sampler.hybridize(kind == 'hybridized')
    state = np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match=match):
        sampler(*arrays)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_integer_ious_raise_value_error():
    matches, ious = one_image([[0.5]])
    with pytest.raises(ValueError, match='ious must have a float dtype'):
        QuotaSampler(10, 0.5, 0.5)(matches, ious.astype(np.int32))


def test_mixed_numpy_and_ndarray_inputs_raise_value_error():
    matches, ious = one_image([[0.5]])
    with pytest.raises(ValueError, match='all be NDArrays or all numpy'):
        QuotaSampler(10, 0.5, 0.5)(matches, mx.nd.array(ious))


def test_inputs_on_different_contexts_raise_value_error():
    matches, ious = one_image([[0.5]])
    with pytest.raises(ValueError, match='one context'):
        QuotaSampler(10, 0.5, 0.5)(mx.nd.array(matches, ctx=mx.cpu(0)),
                                   mx.nd.array(ious, ctx=mx.cpu(1)))


def test_hard_flags_other_than_zero_or_one_raise_value_error_before_the_op():
    matches = np.array([[-1, 0]], np.float32)
    ious = np.array([[[0.1, 0.2], [0.6, 0.0]]], np.float32)
    with pytest.raises(ValueError, match='hard'):
        QuotaSampler(4, 0.5, 0.3)(matches, ious, np.array([[0.5, 0]], np.float32))
    with pytest.raises(ValueError, match='hard'):
        QuotaSampler(4, 0.5, 0.3)(mx.nd.array(matches), mx.nd.array(ious),
                                  mx.nd.array([[2, 0]]))
