"""The background loss and the ranking by it (samplers/background.py).

Rules under test: ``background_loss`` is ``-log softmax(logits)[..., 0]``
for any finite logits, each row's value depending on that row alone;
``BackgroundRanking.hardest`` chooses, per image, exactly the candidates a
full ranking by ``background_loss`` chooses (the ``k`` largest, ties to the
lower index), however few exact losses it computes.
"""
import contextlib

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import samplers.background as background
from samplers.backend import NUMPY
from samplers.draws import keep_top
from samplers.background import BackgroundRanking, background_loss, background_loss_F

from helpers import reference_background_loss


def full_ranking(logits, candidate, k):
    """The oracle: keep-top over every anchor's background loss, candidates finite."""
    loss, finite = background_loss(logits)
    cand = (candidate > 0) & finite
    take = np.minimum(np.asarray(k, np.float64).reshape(-1, 1), cand.sum(axis=1, keepdims=True))
    return keep_top(NUMPY, np.where(cand, loss, 0), cand.astype(np.float32), take)


def random_case(seed):
    """Logits of every kind the ranking meets: narrow ranges (near ties the estimate cannot
    order), whole-number logits (exact ties), wide ones, extremes, non-finite values."""
    rng = np.random.RandomState(seed)
    batch, num, classes = rng.randint(1, 5), rng.randint(1, 1500), rng.randint(2, 25)
    scale = rng.choice([0.01, 0.1, 1, 3, 10, 40, 100])
    logits = rng.randn(batch, num, classes) * scale
    if rng.rand() < 0.3:
        logits = np.round(logits)
    logits = logits.astype(rng.choice([np.float32, np.float16, np.float64]))
    for _ in range(rng.randint(0, 3)):
        logits[rng.randint(batch), rng.randint(num), rng.randint(classes)] = rng.choice(
            [np.nan, np.inf, -np.inf, 1e4, -100, 88, 88.72, 88.8, -87.4])
    candidate = (rng.rand(batch, num) < rng.rand()).astype(np.float32)
    k = rng.randint(0, num + 2, batch).astype(np.float64)
    if rng.rand() < 0.5:
        k = np.minimum(k, rng.randint(1, 40))
    return logits, candidate, k, dict(block_rows=int(rng.choice([3, 64, 8192])),
                                      threads=int(rng.randint(1, 4)))


# --------------------------------------------------------------------------- background loss
@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_background_loss_is_finite_and_exact_for_extreme_logits(dtype):
    big = float(np.finfo(dtype).max) / 4
    logits = np.array([[0, 1, 2], [big, 0, -big], [-big, big, 0], [-3, -3, -3]], dtype)
    loss, finite = background_loss(logits)
    want = reference_background_loss(logits.astype(np.float64))
    assert finite.all() and np.isfinite(loss).all()
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('dtype', ['float16', 'float32', 'float64'])
def test_background_loss_F_equals_numpy_twin(dtype):
    rng = np.random.RandomState(0)
    logits = (rng.randn(3, 7, 5) * 30).astype(dtype)
    logits[0, 0] = [np.finfo(dtype).max / 4, 0, 0, 0, -np.finfo(dtype).max / 4]
    logits[0, 1, 2] = np.nan
    want, want_finite = background_loss(logits)
    arr = mx.nd.array(logits, dtype=dtype).astype('float64' if dtype == 'float64' else 'float32')
    got, finite = background_loss_F(mx.nd, arr)
    np.testing.assert_array_equal(finite.asnumpy() > 0, want_finite)
    np.testing.assert_allclose(got.asnumpy()[want_finite], want[want_finite], rtol=1e-5)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_each_row_takes_its_own_road_and_its_value_is_the_same_alone(dtype):
    # Blocks of 2 rows: a row with an extreme, NaN or infinite logit takes the max-shifted
    # road, its block neighbour the plain one; every row's value is the one it has alone, bit
    # for bit, and close to float64's.
    rng = np.random.RandomState(1)
    logits = (rng.randn(12, 4) * 8).astype(dtype)
    logits[3] = [0, 1e4, 0, 0]     # overflows exp
    logits[5] = [-200, -201, -199, -200]  # underflows exp
    logits[7, 2] = -np.inf
    logits[9, 0] = np.nan
    logits[10, 1] = np.inf
    loss, finite = background_loss(logits, block_rows=2)
    np.testing.assert_array_equal(finite, np.isfinite(logits).all(axis=1))
    np.testing.assert_allclose(loss[finite], reference_background_loss(logits[finite]), rtol=1e-5)
    alone = np.concatenate([background_loss(row[None])[0] for row in logits[finite]])
    np.testing.assert_array_equal(loss[finite], alone)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_any_subset_of_rows_gives_the_same_values_bit_for_bit(seed):
    logits = random_case(seed)[0]
    flat = logits.reshape(-1, logits.shape[-1])
    rows = np.flatnonzero(np.random.RandomState(seed).rand(flat.shape[0]) < 0.3)
    loss, finite = background_loss(flat, block_rows=7)
    some, some_finite = background_loss(flat[rows])
    np.testing.assert_array_equal(some_finite, finite[rows])
    np.testing.assert_array_equal(some[some_finite], loss[rows][some_finite])


@pytest.mark.parametrize('threads', [2, 3, 7])
def test_background_loss_is_the_same_bit_for_bit_on_any_number_of_threads(threads):
    rng = np.random.RandomState(3)
    logits = (rng.randn(50, 6) * 10).astype(np.float32)
    logits[4] = [0, 1e4, 0, 0, 0, 0]
    logits[17, 3] = np.nan
    logits[33, 0] = -np.inf
    one = background_loss(logits, block_rows=4, threads=1)
    many = background_loss(logits, block_rows=4, threads=threads)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_small_losses_keep_their_order():
    logits = np.array([[0, -30], [0, -31], [0, -29]], np.float32)
    loss, _ = background_loss(logits)
    assert loss[2] > loss[0] > loss[1] > 0


# --------------------------------------------------------------------------- the ranking
@settings(max_examples=250, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_ranking_chooses_what_the_full_ranking_chooses(seed):
    logits, candidate, k, options = random_case(seed)
    ranking = BackgroundRanking(logits, **options)
    np.testing.assert_array_equal(ranking.finite, background_loss(logits)[1])
    np.testing.assert_array_equal(ranking.hardest(candidate, k),
                                  full_ranking(logits, candidate, k))


def test_near_ties_are_ranked_by_the_exact_loss():
    # Logits within 0.1 of each other: the estimate (exact to 6 %) often orders two
    # anchors the other way round from their exact losses; the choice is still exact.
    rng = np.random.RandomState(5)
    logits = (rng.rand(4, 3000, 21) * 0.1).astype(np.float32)
    loss = reference_background_loss(logits)
    rough = np.log(np.exp(logits[..., 1:] * 1.03).sum(-1)) - logits[..., 0]  # a 3 % error
    assert (np.argsort(-rough, axis=1)[:, :50] != np.argsort(-loss, axis=1)[:, :50]).any()
    candidate = np.ones((4, 3000), np.float32)
    k = np.array([1, 50, 200, 2999])
    chosen = BackgroundRanking(logits).hardest(candidate, k)
    np.testing.assert_array_equal(chosen, full_ranking(logits, candidate, k))
    np.testing.assert_array_equal(chosen.sum(axis=1), k)


def test_the_estimate_is_exact_to_its_slack():
    rng = np.random.RandomState(6)
    # Rows spread over the estimate's range (-87, 88), ratios below its 1e30 limit.
    logits = (rng.rand(1, 20000, 8) * 60 - 30 + rng.rand(1, 20000, 1) * 110 - 55)
    logits = logits.astype(np.float32)
    ranking = BackgroundRanking(logits)
    z = logits[0].astype(np.float64)
    exact = np.exp(z[:, 1:] - z[:, :1]).sum(axis=1)
    estimated = ~ranking._pinned
    assert estimated.mean() > 0.99
    ratio = ranking._estimate[estimated] / exact[estimated]
    assert 1 / background._SLACK < ratio.min() and ratio.max() < background._SLACK
    assert ratio.max() > 1.05 and ratio.min() < 1 / 1.05  # the slack is needed both ways


@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_anchors_beyond_the_estimate_are_ranked_exactly(dtype):
    # Logits past +-87 (and non-finite ones) have no estimate: their exact loss ranks them.
    logits = np.zeros((2, 6, 3), dtype)
    logits[0, 1] = [-1000, 0, 0]     # the hardest (huge loss)
    logits[0, 2] = [0, 90, 0]        # next
    logits[0, 3] = [np.nan, 0, 0]    # never chosen
    logits[1, 4] = [0, 0, 1e4]       # the hardest of image 1
    logits[1, 5] = [0, -np.inf, 0]
    if dtype == np.float16:
        logits[0, 1, 0], logits[1, 4, 2] = -1000, 1e4  # inf in float16: not finite
    ranking = BackgroundRanking(logits)
    chosen = ranking.hardest(np.ones((2, 6)), [2, 1])
    np.testing.assert_array_equal(chosen, full_ranking(logits, np.ones((2, 6)), [2, 1]))
    assert chosen[0, 3] == 0 and chosen[1, 5] == 0


@pytest.mark.parametrize('edge', [88.7, 88.72, 88.72283935546875, 88.8, 89.5, -87.3, -87.4])
def test_logits_at_the_edge_of_the_estimate_range(edge):
    # Past about 88.72 the estimate's bits would be an infinity (at 88.7228394) or a NaN,
    # below about -87.34 a subnormal: such rows get their exact loss. Here they are the
    # hardest rows, among confident backgrounds.
    rng = np.random.RandomState(4)
    logits = rng.randn(2, 500, 4).astype(np.float32)
    logits[:, :, 0] = 5
    logits[0, ::7, :2] = [edge, edge - 0.5]  # as the background logit, the denominator
    logits[1, ::7, :3] = [edge - 50, -50, edge]  # as a foreground one
    candidate = np.ones((2, 500))
    for k in (1, 30, 100):
        np.testing.assert_array_equal(BackgroundRanking(logits).hardest(candidate, [k, k]),
                                      full_ranking(logits, candidate, [k, k]))


def test_ranking_is_the_same_on_any_number_of_threads():
    logits, candidate, k, _ = random_case(11)
    logits = np.concatenate([logits] * 3, axis=1)
    candidate = np.concatenate([candidate] * 3, axis=1)
    one = BackgroundRanking(logits, block_rows=50, threads=1).hardest(candidate, k)
    for threads in (2, 3):
        np.testing.assert_array_equal(
            BackgroundRanking(logits, block_rows=50, threads=threads).hardest(candidate, k), one)


@pytest.mark.parametrize('k, want', [([0, 0], 0), ([-3, 0.9], 0), ([np.inf, 100], 2 * 7)])
def test_quota_edges(k, want):
    logits = np.random.RandomState(0).randn(2, 7, 4).astype(np.float32)
    assert BackgroundRanking(logits).hardest(np.ones((2, 7)), k).sum() == want


def test_ranking_refuses_logits_that_are_not_three_dimensional():
    with pytest.raises(ValueError, match='logits'):
        BackgroundRanking(np.zeros((5, 3), np.float32))


# --------------------------------------------------------------------------- ties
def shifted_rows(seed, num=64, classes=6):
    """(1, num, classes) float32 logits: one row plus exact multiples of 1/64, so every row's
    differences l_c - l_0 are the same and the background losses are equal."""
    rng = np.random.RandomState(seed)
    base = np.round(rng.randn(classes) * 16) / 16
    shifts = np.round(rng.uniform(-20, 20, (num, 1)) * 64) / 64
    return (base + shifts)[None].astype(np.float32)


@pytest.mark.parametrize('seed', range(4))
def test_rows_that_differ_by_a_constant_have_equal_losses_bit_for_bit(seed):
    logits = shifted_rows(seed)
    loss, finite = background_loss(logits)
    assert finite.all() and np.unique(loss).size == 1
    device, _ = background_loss_F(mx.nd, mx.nd.array(logits))
    assert np.unique(device.asnumpy()).size == 1


@pytest.mark.parametrize('seed', range(4))
def test_equal_losses_are_chosen_from_the_lowest_index_on_both_paths(seed):
    # The tie rule (samplers/draws.py) on the host as on the device: OHEM and the SSD loss
    # (the anchors its gradient reaches) choose the same negatives from rows whose logits
    # differ by a constant.
    from samplers import OHEMSampler, force_ndarray_backend
    from samplers.ssd import SSDMultiBoxLoss
    x = mx.nd.array(np.r_[0, 0, -np.ones(62)][None])
    target = mx.nd.array(np.r_[1, 1, np.zeros(62)][None])
    want = np.r_[0, 0, np.ones(6), np.zeros(56)]  # 3 per positive, from the lowest index
    for scope in (contextlib.nullcontext, force_ndarray_backend):
        logits = mx.nd.array(shifted_rows(seed))
        logits.attach_grad()
        with scope():
            labels = OHEMSampler(3)(x, logits, mx.nd.zeros(x.shape)).asnumpy()[0]
            with mx.autograd.record():
                total = SSDMultiBoxLoss(3)(logits, mx.nd.zeros((1, 256)), target,
                                           mx.nd.zeros((1, 64, 4)))[0][0]
            total.backward()
        np.testing.assert_array_equal(labels == -1, want)
        trained = (logits.grad.asnumpy()[0] != 0).any(axis=1)
        np.testing.assert_array_equal(trained, want + (target.asnumpy()[0] > 0))
