"""RPN OHEM's selection (samplers.rpn_ohem) and the RPN rule without its random subsample."""
import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from samplers._arrays import IGNORE, NEGATIVE, POSITIVE, force_ndarray_backend
from samplers.rpn import RPNTargetGenerator, RPNTargetSampler
from samplers.rpn_ohem import hardest_anchors
from helpers import grid_anchors


def reference_chosen(loss, labels, num_sample):
    """The rule written plainly: per image, sort the labelled finite anchors by loss (largest
    first, lower index first among equals) and take the first ``num_sample``."""
    loss, labels = np.atleast_2d(loss), np.atleast_2d(labels)
    out = np.zeros(loss.shape, np.float32)
    for b in range(loss.shape[0]):
        candidates = [i for i in range(loss.shape[1])
                      if labels[b, i] != IGNORE and np.isfinite(loss[b, i])]
        ranked = sorted(candidates, key=lambda i: (-loss[b, i], i))
        out[b, ranked[:num_sample]] = 1
    return out


def images(max_anchors=40):
    """(loss, labels): float32 (B, N) losses with NaN and inf and coarse values (ties), labels."""
    def make(shape):
        losses = hnp.arrays(np.float32, shape, elements=st.one_of(
            st.sampled_from([0.0, 0.5, 1.0, np.nan, np.inf, -np.inf]),
            st.floats(0, 10, width=32)))
        labels = hnp.arrays(np.float32, shape,
                            elements=st.sampled_from([POSITIVE, NEGATIVE, IGNORE]))
        return st.tuples(losses, labels)
    return st.tuples(st.integers(1, 3), st.integers(1, max_anchors)).flatmap(make)


@settings(max_examples=60, deadline=None)
@given(images(), st.integers(1, 12))
def test_the_chosen_anchors_are_the_reference_ones(image, num_sample):
    loss, labels = image
    np.testing.assert_array_equal(hardest_anchors(loss, labels, num_sample),
                                  reference_chosen(loss, labels, num_sample))


@settings(max_examples=30, deadline=None)
@given(images(), st.integers(1, 12))
def test_the_device_path_chooses_the_reference_anchors(image, num_sample):
    loss, labels = image
    with force_ndarray_backend():
        got = hardest_anchors(mx.nd.array(loss), mx.nd.array(labels), num_sample)
    assert isinstance(got, mx.nd.NDArray) and got.dtype == np.float32
    np.testing.assert_array_equal(got.asnumpy(), reference_chosen(loss, labels, num_sample))


@settings(max_examples=60, deadline=None)
@given(images(), st.integers(1, 12))
def test_ignored_and_non_finite_anchors_are_never_chosen(image, num_sample):
    loss, labels = image
    chosen = hardest_anchors(loss, labels, num_sample) > 0
    assert not chosen[labels == IGNORE].any()
    assert not chosen[~np.isfinite(loss)].any()


@settings(max_examples=60, deadline=None)
@given(images(), st.integers(1, 12))
def test_each_image_gets_min_of_num_sample_and_its_candidates(image, num_sample):
    loss, labels = image
    candidates = ((labels != IGNORE) & np.isfinite(loss)).sum(axis=1)
    chosen = hardest_anchors(loss, labels, num_sample)
    np.testing.assert_array_equal(chosen.sum(axis=1), np.minimum(num_sample, candidates))


def test_ties_at_the_cut_go_to_the_lower_index():
    loss = np.array([1, 2, 1, 1, 2], np.float32)
    labels = np.full(5, NEGATIVE, np.float32)
    np.testing.assert_array_equal(hardest_anchors(loss, labels, 3), [1, 1, 0, 0, 1])


def test_positives_and_negatives_are_ranked_together():
    loss = np.array([0.1, 0.2, 3.0, 4.0], np.float32)
    labels = np.array([POSITIVE, POSITIVE, NEGATIVE, NEGATIVE], np.float32)
    np.testing.assert_array_equal(hardest_anchors(loss, labels, 2), [0, 0, 1, 1])


def test_a_nan_loss_is_not_chosen_even_when_there_is_room():
    loss = np.array([np.nan, 1.0], np.float32)
    labels = np.array([POSITIVE, NEGATIVE], np.float32)
    np.testing.assert_array_equal(hardest_anchors(loss, labels, 256), [0, 1])


def test_the_result_has_the_input_shape_kind_and_context():
    loss = mx.nd.array([[1, 2, 3]], ctx=mx.cpu(1))
    got = hardest_anchors(loss, mx.nd.array([[1, -1, 0]], ctx=mx.cpu(1)), 1)
    assert got.shape == (1, 3) and got.context == mx.cpu(1) and got.dtype == np.float32


def test_the_device_path_reads_nothing_back(no_host_copies):
    loss = mx.nd.random.uniform(shape=(2, 500))
    labels = mx.nd.round(mx.nd.random.uniform(-1, 1, shape=(2, 500)))
    with force_ndarray_backend():
        hardest_anchors(loss, labels, 256)
        mx.nd.waitall()


@pytest.mark.parametrize('num_sample', [0, 1.5, None])
def test_num_sample_must_be_a_positive_int(num_sample):
    with pytest.raises(ValueError, match='num_sample'):
        hardest_anchors(np.ones(3, np.float32), np.ones(3, np.float32), num_sample)


def test_loss_and_labels_must_agree_in_shape():
    with pytest.raises(ValueError, match='loss and labels'):
        hardest_anchors(np.ones(3, np.float32), np.ones(4, np.float32), 1)


# ---------------------------------------------------------------- the rule, every anchor
def every_candidate(sampler_or_generator_cls, **options):
    """The rule's labels with a quota no image reaches: every candidate kept."""
    return sampler_or_generator_cls(num_sample=10 ** 9, pos_ratio=1.0, **options)


@pytest.mark.parametrize('forced', [False, True], ids=['numpy', 'nd'])
def test_without_subsample_the_sampler_labels_every_candidate(forced):
    rng = np.random.RandomState(0)
    ious = rng.uniform(0, 1, (3, 300, 4)).astype(np.float32) ** 3
    hard = np.array([0, 1, 0, 0], np.float32)
    rule = dict(pos_iou_thresh=0.5, neg_iou_thresh=0.3)
    x = mx.nd.array(ious)
    with force_ndarray_backend() if forced else _nothing():
        got, _ = RPNTargetSampler(4, pos_ratio=0.5, subsample=False, **rule)(x, mx.nd.array(hard))
        want, _ = every_candidate(RPNTargetSampler, **rule)(x, mx.nd.array(hard))
    np.testing.assert_array_equal(got.asnumpy(), want.asnumpy())
    assert (got.asnumpy() != IGNORE).sum() > 3 * 4


@pytest.mark.parametrize('forced', [False, True], ids=['numpy', 'nd'])
def test_without_subsample_the_generator_labels_every_candidate_hard_flags_included(forced):
    anchors = grid_anchors(128, 2, (8, 16))  # 8,192 anchors: the anchor grid's path on numpy
    bbox = np.array([[8, 8, 60, 60], [68, 60, 120, 120], [0, 80, 40, 124]], np.float32)
    flags = dict(hard=np.array([0, 1, 0], np.float32), crowd=np.array([0, 0, 1], np.float32))
    anc = mx.nd.array(anchors)
    with force_ndarray_backend() if forced else _nothing():
        got = RPNTargetGenerator(num_sample=8, subsample=False)(bbox, anc, 128, 128, **flags)
        want = every_candidate(RPNTargetGenerator)(bbox, anc, 128, 128, **flags)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.asnumpy(), w.asnumpy())
    assert (got[0].asnumpy() >= 0).sum() > 8


def test_without_subsample_no_random_number_is_drawn():
    ious = np.random.RandomState(0).uniform(0, 1, (500, 3)).astype(np.float32)
    state = np.random.get_state()[1].copy()
    RPNTargetSampler(8, 0.5, 0.3, 0.5, subsample=False)(ious)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_subsample_takes_only_a_bool():
    with pytest.raises(ValueError, match='subsample'):
        RPNTargetGenerator(subsample=0)


def test_the_repr_shows_subsample_only_when_off():
    assert 'subsample' not in repr(RPNTargetSampler(8, 0.7, 0.3, 0.5))
    assert 'subsample=False' in repr(RPNTargetSampler(8, 0.7, 0.3, 0.5, subsample=False))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
