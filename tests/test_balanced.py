"""IoU-balanced negatives and instance-balanced positives (samplers.balanced): the rule.

Hand-built cases pin the per-bin and per-box counts; property tests the
invariants; a chi-square the shape of the draw; one bin / one box must be
the uniform draw (keep-random) itself.
"""
import math

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from samplers import Draw, RPNTargetSampler, box_iou, force_ndarray_backend
from samplers import backend, draws
from samplers.balanced import (check_iou_balanced, instance_balanced, instance_balanced_draw,
                               iou_balanced, iou_balanced_draw)
from helpers import grid_anchors

BACKENDS = ['numpy', 'ndarray']

# Twelve negatives: seven easy (IoU < 1/6), two middling, three hard (bins of [0, 0.5)).
IOU = np.array([0.01, 0.02, 0.03, 0.04, 0.2, 0.21, 0.35, 0.36, 0.45, 0.05, 0.06, 0.07],
               np.float32)
BIN_OF = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 0, 0, 0])


def _keys(shape, seed):
    """Distinct uniform keys (a shuffled grid), so no tie rule is involved."""
    rng = np.random.RandomState(seed)
    n = int(np.prod(shape))
    return ((rng.permutation(n) + 0.5) / n).astype(np.float32).reshape(shape)


def _call(fn, backend, *arrays, **kwargs):
    """Call a wrapper on numpy or on NDArrays through the mx.nd path; numpy boolean back."""
    if backend == 'numpy':
        return np.asarray(fn(*arrays, **kwargs), bool)
    nd = [mx.nd.array(a) for a in arrays]
    if 'keys' in kwargs:
        kwargs = dict(kwargs, keys=mx.nd.array(kwargs['keys']))
    with force_ndarray_backend():
        out = fn(*nd, **kwargs)
    return out.asnumpy() > 0


def _bin_counts(kept, bin_of, num_bins):
    return np.bincount(bin_of[kept], minlength=num_bins)


# ------------------------------------------------------------------ IoU-balanced: hand-built
@pytest.mark.parametrize('backend', BACKENDS)
def test_each_bin_gets_an_equal_share(backend):
    mask = np.ones((1, 12), np.float32)
    for seed in range(5):
        kept = _call(iou_balanced, backend, mask, IOU[None], 6, keys=_keys((1, 12), seed),
                     high=0.5)[0]
        assert _bin_counts(kept, BIN_OF, 3).tolist() == [2, 2, 2]


@pytest.mark.parametrize('backend', BACKENDS)
def test_short_bin_is_filled_from_the_others_at_random(backend):
    # k 9: share 3 per bin; bin 1 has only 2, so its third slot goes to bin 0 (bin 2 is spent).
    # k 8: share 2 per bin; the two left over go to any of the six others (5 in bin 0, 1 in 2).
    mask = np.ones((1, 12), np.float32)
    seen = set()
    for seed in range(30):
        keys = _keys((1, 12), seed)
        kept = _call(iou_balanced, backend, mask, IOU[None], 9, keys=keys, high=0.5)[0]
        assert _bin_counts(kept, BIN_OF, 3).tolist() == [4, 2, 3]
        kept = _call(iou_balanced, backend, mask, IOU[None], 8, keys=keys, high=0.5)[0]
        seen.add(tuple(_bin_counts(kept, BIN_OF, 3)))
    assert seen == {(4, 2, 2), (3, 2, 3)}


@pytest.mark.parametrize('backend', BACKENDS)
def test_floor_fraction_is_drawn_below_floor_thr(backend):
    # floor_thr 0.1: seven floor candidates; k 6, floor_fraction 0.5: k_u = 3 over the bins
    # [0.1, 0.233), [0.233, 0.367), [0.367, 0.5) holding 2, 2 and 1 candidates: one each.
    mask = np.ones((1, 12), np.float32)
    bins = np.array([-1, -1, -1, -1, 0, 0, 1, 1, 2, -1, -1, -1])
    for seed in range(5):
        kept = _call(iou_balanced, backend, mask, IOU[None], 6, keys=_keys((1, 12), seed),
                     high=0.5, floor_thr=0.1, floor_fraction=0.5)[0]
        assert (bins[kept] == -1).sum() == 3
        assert np.bincount(bins[kept][bins[kept] >= 0], minlength=3).tolist() == [1, 1, 1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_floor_thr_zero_floors_exactly_the_zero_ious(backend):
    iou = np.array([[0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4]], np.float32)
    mask = np.ones_like(iou)
    kept = _call(iou_balanced, backend, mask, iou, 4, keys=_keys(iou.shape, 0), high=0.5,
                 floor_thr=0.0, floor_fraction=0.5)[0]
    assert (iou[0][kept] == 0).sum() == 2 and (iou[0][kept] > 0).sum() == 2


@pytest.mark.parametrize('backend', BACKENDS)
def test_short_floor_set_gives_its_slots_back_to_the_bins(backend):
    iou = np.array([[0.01, 0.2, 0.21, 0.3, 0.31, 0.4, 0.41, 0.45]], np.float32)
    kept = _call(iou_balanced, backend, np.ones_like(iou), iou, 6, keys=_keys(iou.shape, 3),
                 high=0.5, floor_thr=0.1, floor_fraction=0.5)[0]
    assert kept.sum() == 6 and kept[0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_high_none_splits_each_rows_own_range(backend):
    # Row max 0.9: bins [0, 0.3), [0.3, 0.6), [0.6, 0.9]; the max itself is in the last bin.
    # Row 2's max 0.06: bins [0, 0.02), [0.02, 0.04), [0.04, 0.06], two candidates each.
    iou = np.array([[0.0, 0.1, 0.2, 0.25, 0.4, 0.9], [0.0, 0.01, 0.025, 0.03, 0.05, 0.06]],
                   np.float32)
    kept = _call(iou_balanced, backend, np.ones_like(iou), iou, 3, keys=_keys(iou.shape, 1))
    assert kept[0, 4] and kept[0, 5] and kept[0].sum() == 3  # 0.4 and 0.9 are their bins' only
    assert kept[1].reshape(3, 2).sum(1).tolist() == [1, 1, 1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_fewer_candidates_than_k_keeps_them_all(backend):
    mask = np.zeros((2, 12), np.float32)
    mask[0, [0, 4, 8]] = 1
    kept = _call(iou_balanced, backend, mask, np.stack([IOU, IOU]), 5, high=0.5)
    assert (kept == (mask > 0)).all()


@pytest.mark.parametrize('backend', BACKENDS)
def test_quota_is_per_row(backend):
    mask = np.ones((2, 12), np.float32)
    kept = _call(iou_balanced, backend, mask, np.stack([IOU, IOU]), np.array([6, 3]),
                 keys=_keys((2, 12), 0), high=0.5)
    assert kept.sum(axis=1).tolist() == [6, 3]
    assert _bin_counts(kept[1], BIN_OF, 3).tolist() == [1, 1, 1]


# ------------------------------------------------------------------ instance-balanced
GROUP = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2])


@pytest.mark.parametrize('backend', BACKENDS)
def test_each_box_gets_an_equal_share(backend):
    # Boxes with 10, 1 and 3 candidates, k 6: share 2; box 1 gives one slot back at random.
    mask = np.ones((1, 14), np.float32)
    seen = set()
    for seed in range(20):
        kept = _call(instance_balanced, backend, mask, GROUP[None], 6, num_groups=3,
                     keys=_keys((1, 14), seed))[0]
        counts = np.bincount(GROUP[kept], minlength=3)
        assert kept.sum() == 6 and counts[1] == 1 and counts[0] >= 2 and counts[2] >= 2
        seen.add(tuple(counts))
    assert seen == {(3, 1, 2), (2, 1, 3)}


@pytest.mark.parametrize('backend', BACKENDS)
def test_boxes_without_candidates_take_no_share(backend):
    # Box 1's candidate is not a candidate: two boxes share k 6, three each.
    mask = np.ones((1, 14), np.float32)
    mask[0, 10] = 0
    for seed in range(5):
        kept = _call(instance_balanced, backend, mask, GROUP[None], 6, num_groups=5,
                     keys=_keys((1, 14), seed))[0]
        assert np.bincount(GROUP[kept], minlength=3).tolist() == [3, 0, 3]


@pytest.mark.parametrize('backend', BACKENDS)
def test_unmatched_indices_share_one_extra_group(backend):
    group = np.array([[0, 0, 0, 0, 0, 0, -1, 7, -1, 7]], np.float32)
    kept = _call(instance_balanced, backend, np.ones_like(group), group, 4, num_groups=2,
                 keys=_keys(group.shape, 0))[0]
    assert kept.sum() == 4 and kept[:6].sum() == 2 and kept[6:].sum() == 2


# One box with 200 candidates beside eleven with 5 each; a quota of 8 (the numbers).
CROWD = np.repeat(np.arange(12), [200] + [5] * 11)


@pytest.mark.parametrize('backend', BACKENDS)
def test_more_boxes_than_k_keeps_one_candidate_from_each_of_k_boxes(backend):
    mask = np.ones((50, CROWD.size), np.float32)
    kept = _call(instance_balanced, backend, mask, np.tile(CROWD, (50, 1)), 8, num_groups=12,
                 keys=_keys(mask.shape, 3))
    per_box = np.stack([np.bincount(CROWD[row], minlength=12) for row in kept])
    assert (per_box.sum(1) == 8).all() and per_box.max() == 1


@pytest.mark.parametrize('backend', BACKENDS)
def test_more_boxes_than_k_gives_every_box_an_equal_chance(backend):
    rows = 3000
    mask = np.ones((rows, CROWD.size), np.float32)
    kept = _call(instance_balanced, backend, mask, np.tile(CROWD, (rows, 1)), 8, num_groups=12)
    per_box = np.array([kept[:, CROWD == j].sum() for j in range(12)])
    # Each box is kept with chance 8/12 (the uniform draw gave the big box 6.3 of 8).
    assert _chi2(per_box, np.full(12, rows * 8 / 12)) < _chi2_critical(11, z=SAFE_Z)
    # Inside the big box the one candidate is uniform: 3000 * 8/12 / 200 = 10 expected each.
    big = kept[:, CROWD == 0].sum(0)
    assert _chi2(big, np.full(200, big.sum() / 200)) < _chi2_critical(199, z=SAFE_Z)


@pytest.mark.parametrize('crowded_rows', [[], [3], [0, 1, 2, 3]])
def test_numpy_skips_the_one_each_draw_only_when_no_row_has_more_boxes_than_k(crowded_rows):
    # numpy sees that no row has more boxes than k and skips that branch (mx.nd computes
    # it); the picks are the same either way, and in batches mixing both kinds of rows.
    rows = 4
    group = np.tile(np.repeat(np.arange(4), 6), (rows, 1))   # 4 boxes of 6 candidates
    group[crowded_rows] = np.repeat(np.arange(12), 2)        # 12 boxes of 2: more than k
    mask = np.ones(group.shape, np.float32)
    keys = _keys(mask.shape, 7)
    picks = [_call(instance_balanced, b, mask, group, 8, num_groups=12, keys=keys)
             for b in BACKENDS]
    np.testing.assert_array_equal(*picks)
    assert (picks[0].sum(1) == 8).all()
    assert backend.NUMPY.known_empty(np.zeros((2, 1))) and not backend.NUMPY.known_empty([[0], [1]])
    assert not backend.ND.known_empty(mx.nd.zeros((2, 1)))  # no host read: it cannot tell


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=2, max_size=9), st.data())
def test_property_more_boxes_than_k_every_box_has_the_same_expected_share(sizes, data):
    k = data.draw(st.integers(1, len(sizes) - 1))
    backend_name = data.draw(st.sampled_from(BACKENDS))
    rows = 1500
    group = np.repeat(np.arange(len(sizes)), sizes).astype(np.float32)
    mask = np.ones((rows, group.size), np.float32)
    kept = _call(instance_balanced, backend_name, mask, np.tile(group, (rows, 1)), k,
                 num_groups=len(sizes))
    per_box = np.array([kept[:, group == j].sum() for j in range(len(sizes))])
    assert (kept.sum(1) == k).all()
    expected = np.full(len(sizes), rows * k / len(sizes))
    assert _chi2(per_box, expected) < _chi2_critical(len(sizes) - 1, z=SAFE_Z)


# ------------------------------------------------------------------ reduce to the uniform draw
@pytest.mark.parametrize('be', [backend.NUMPY, backend.ND], ids=['numpy', 'ndarray'])
def test_one_bin_and_one_box_are_the_uniform_draw(be):
    rng = np.random.RandomState(0)
    mask = (rng.uniform(size=(4, 40)) < 0.6).astype(np.float32)
    iou = rng.uniform(0, 0.5, size=(4, 40)).astype(np.float32)
    keys = _keys((4, 40), 1)
    k = np.array([[5], [10], [0], [40]], np.float32)
    arr = (lambda a: a) if be is backend.NUMPY else mx.nd.array
    val = (lambda a: a) if be is backend.NUMPY else (lambda a: a.asnumpy())
    uniform = val(draws.keep_uniform(be, arr(mask), arr(k), arr(keys)))
    one_bin = val(iou_balanced_draw(be, arr(mask), arr(iou), arr(k), arr(keys), num_bins=1))
    one_box = val(instance_balanced_draw(be, arr(mask), arr(np.zeros_like(mask)), arr(k),
                                         arr(keys), num_groups=1))
    np.testing.assert_array_equal(one_bin, uniform)
    np.testing.assert_array_equal(one_box, uniform)


# ------------------------------------------------------------------ invariants
@st.composite
def _cases(draw):
    b = draw(st.integers(1, 3))
    n = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.RandomState(seed)
    pos = rng.uniform(size=(b, n)) < draw(st.floats(0, 1))
    neg = ~pos & (rng.uniform(size=(b, n)) < draw(st.floats(0, 1)))
    iou = np.where(rng.uniform(size=(b, n)) < 0.2, 0,
                   rng.uniform(0, 0.5, (b, n))).astype(np.float32)
    m = draw(st.integers(1, 5))
    group = rng.randint(-1, m + 1, (b, n))
    k_pos = rng.randint(0, n + 2, b)
    k_neg = rng.randint(0, n + 2, b)
    opts = dict(num_bins=draw(st.integers(1, 4)),
                floor_thr=draw(st.sampled_from([-1.0, 0.0, 0.1, 0.3])),
                floor_fraction=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
                high=draw(st.sampled_from([None, 0.5])))
    return pos, neg, iou, group, m, k_pos, k_neg, opts, seed


@settings(max_examples=60)
@given(_cases())
def test_counts_exact_subsets_disjoint_positives_never_negative(case):
    pos, neg, iou, group, m, k_pos, k_neg, opts, seed = case
    keys = _keys(pos.shape, seed % 1000)
    kept_pos = instance_balanced(pos, group, k_pos, num_groups=m, keys=keys)
    kept_neg = iou_balanced(neg, iou, k_neg, keys=keys, **opts)
    np.testing.assert_array_equal(kept_pos.sum(1), np.minimum(k_pos, pos.sum(1)))
    np.testing.assert_array_equal(kept_neg.sum(1), np.minimum(k_neg, neg.sum(1)))
    assert not (kept_pos & ~pos).any() and not (kept_neg & ~neg).any()
    labels = kept_pos.astype(int) - kept_neg
    assert not (labels[pos] == -1).any()
    # The guaranteed shares: every box keeps min(n_j, floor(k / G)).
    grp = np.where((group >= 0) & (group < m), group, m)
    for row in range(pos.shape[0]):
        counts = np.bincount(grp[row][pos[row]], minlength=m + 1)
        share = k_pos[row] // max(1, (counts > 0).sum())
        got = np.bincount(grp[row][kept_pos[row]], minlength=m + 1)
        assert (got >= np.minimum(counts, share)).all()


@settings(max_examples=25)
@given(_cases())
def test_numpy_and_device_paths_pick_the_same(case):
    pos, neg, iou, group, m, k_pos, k_neg, opts, seed = case
    keys = _keys(pos.shape, seed % 1000)
    for kind in BACKENDS[1:]:
        np.testing.assert_array_equal(
            _call(iou_balanced, kind, neg, iou, k_neg, keys=keys, **opts),
            iou_balanced(neg, iou, k_neg, keys=keys, **opts))
        np.testing.assert_array_equal(
            _call(instance_balanced, kind, pos, group, k_pos, num_groups=m, keys=keys),
            instance_balanced(pos, group, k_pos, num_groups=m, keys=keys))


# ------------------------------------------------------------------ the shape of the draw
#: The normal quantile of a one-in-a-million false alarm, for tests over many draws.
SAFE_Z = 4.7534


def _chi2_critical(df, z=3.0902):
    """Upper point of chi-square(df) for the normal quantile ``z`` (default: 0.001),
    Wilson-Hilferty approximation."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def _expected_rate(sizes, share, k):
    """Chance that a candidate of each group is kept: its guaranteed share, then the fill."""
    sizes = np.asarray(sizes, float)
    guaranteed = np.minimum(sizes, share)
    fill = k - guaranteed.sum()
    return (guaranteed + fill * (sizes - guaranteed) / (sizes - guaranteed).sum()) / sizes


def _chi2(counts, expected):
    return float(((counts - expected) ** 2 / expected).sum())


def test_draw_matches_the_rule_in_distribution():
    # 4000 images of the twelve negatives, k 7: share 2 per bin, one more uniformly at random.
    rows = 4000
    mask = np.ones((rows, 12), np.float32)
    kept = iou_balanced(mask, np.tile(IOU, (rows, 1)), 7, high=0.5)
    rate = _expected_rate([7, 2, 3], 2, 7)[BIN_OF]
    per_bin = np.array([kept[:, BIN_OF == b].sum() for b in range(3)])
    expected_bin = np.array([rows * rate[BIN_OF == b].sum() for b in range(3)])
    # Bin totals (df 1: their sum is fixed) and every candidate (df 11: uniform inside a bin).
    assert _chi2(per_bin, expected_bin) < _chi2_critical(1)
    assert _chi2(kept.sum(0), rows * rate) < _chi2_critical(11)
    # The point of the rule: hard negatives are drawn more often than uniformly (7 / 12),
    # easy ones less (rates 0.72 and 0.40 here).
    assert kept[:, BIN_OF == 2].mean() > 7 / 12 + 0.1 > 7 / 12 - 0.1 > kept[:, BIN_OF == 0].mean()


def test_instance_draw_matches_the_rule_in_distribution():
    rows = 4000
    mask = np.ones((rows, 14), np.float32)
    kept = instance_balanced(mask, np.tile(GROUP, (rows, 1)), 6, num_groups=3)
    rate = _expected_rate([10, 1, 3], 2, 6)[GROUP]
    assert _chi2(kept.sum(0), rows * rate) < _chi2_critical(13)


# ------------------------------------------------------------------ device, seeds, graphs, errors
def test_device_path_reads_nothing_back_to_the_host(no_host_copies):
    ctx = mx.cpu(0)
    mask = mx.nd.ones((2, 12), ctx=ctx)
    iou = mx.nd.array(np.stack([IOU, IOU]), ctx=ctx)
    k = mx.nd.array([[6], [3]], ctx=ctx)
    with force_ndarray_backend():
        a = iou_balanced(mask, iou, k, high=0.5, floor_thr=0.1, floor_fraction=0.5)
        b = instance_balanced(mask, mx.nd.array(np.stack([GROUP[:12]] * 2), ctx=ctx), k,
                              num_groups=3)
    mx.nd.waitall()
    assert a.context == ctx and b.context == ctx


@pytest.mark.parametrize('backend', BACKENDS)
def test_seeds_reproduce_the_draw(backend):
    mask = np.ones((3, 12), np.float32)
    iou = np.tile(IOU, (3, 1))

    def draw():
        if backend == 'numpy':
            return iou_balanced(mask, iou, 5, high=0.5)
        with force_ndarray_backend():
            return iou_balanced(mx.nd.array(mask), mx.nd.array(iou), 5, high=0.5).asnumpy()
    mx.random.seed(7)
    np.random.seed(7)
    first = draw()
    mx.random.seed(7)
    np.random.seed(7)
    np.testing.assert_array_equal(draw(), first)


def test_symbolic_graph_gives_the_ndarray_result():
    mask = np.ones((2, 12), np.float32)
    iou = np.stack([IOU, IOU])
    group = np.stack([GROUP[:12]] * 2).astype(np.float32)
    keys = _keys((2, 12), 0)
    k = np.array([[6], [4]], np.float32)
    s = {n: mx.sym.var(n) for n in ('mask', 'iou', 'group', 'k', 'keys')}
    graph = mx.sym.Group([
        iou_balanced_draw(backend.SYM, s['mask'], s['iou'], s['k'], s['keys'], high=0.5,
                          floor_thr=0.1, floor_fraction=0.5),
        instance_balanced_draw(backend.SYM, s['mask'], s['group'], s['k'], s['keys'],
                               num_groups=3)])
    args = {n: mx.nd.array(v) for n, v in
            dict(mask=mask, iou=iou, group=group, k=k, keys=keys).items()}
    out = graph.bind(mx.cpu(), {n: args[n] for n in graph.list_arguments()}).forward()
    want = [iou_balanced_draw(backend.ND, args['mask'], args['iou'], args['k'], args['keys'],
                              high=0.5, floor_thr=0.1, floor_fraction=0.5),
            instance_balanced_draw(backend.ND, args['mask'], args['group'], args['k'],
                                   args['keys'], num_groups=3)]
    for got, ref in zip(out, want):
        np.testing.assert_array_equal(got.asnumpy(), ref.asnumpy())


@pytest.mark.parametrize('kwargs, name', [
    (dict(num_bins=0), 'num_bins'), (dict(num_bins=2.5), 'num_bins'),
    (dict(floor_thr=-0.5), 'floor_thr'), (dict(floor_thr=1.5), 'floor_thr'),
    (dict(floor_thr=True), 'floor_thr'), (dict(floor_fraction=1.5), 'floor_fraction'),
    (dict(floor_fraction=float('nan')), 'floor_fraction')])
def test_bad_options_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        check_iou_balanced(**kwargs)
    with pytest.raises(ValueError, match=name):
        iou_balanced(np.ones((1, 3), bool), np.zeros((1, 3)), 1, **kwargs)


def test_empty_input_keeps_nothing():
    assert iou_balanced(np.zeros((2, 0), bool), np.zeros((2, 0)), 3).shape == (2, 0)
    assert instance_balanced(np.zeros((0, 4)), np.zeros((0, 4)), 3, num_groups=2).shape == (0, 4)


# ------------------------------------------------------------------ the samplers' options
def _rpn_case():
    """3000 anchors around a large box (many positives), a small box (few) and background."""
    rng = np.random.RandomState(0)
    xy = rng.uniform(0, 200, (3000, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(10, 60, (3000, 2))], 1).astype(np.float32)
    anchors[:40] = [12, 12, 148, 148] + rng.uniform(-6, 6, (40, 4))  # around box 0
    anchors[40:43] = [161, 161, 179, 179] + rng.uniform(-1, 1, (3, 4))  # around box 1
    gt = np.array([[10, 10, 150, 150], [160, 160, 180, 180], [20, 150, 60, 190]], np.float32)
    return box_iou(anchors, gt)


@pytest.mark.parametrize('backend', BACKENDS)
def test_rpn_sampler_instance_balanced_positives(backend):
    ious = _rpn_case()
    every, match = RPNTargetSampler(10 ** 6, 0.5, 0.3, 0.5)(ious)  # all candidates
    cand = np.bincount(match[every == 1], minlength=3)
    assert cand[0] > 12 and 1 <= cand[1] < 6  # box 0 could fill the quota alone
    sampler = RPNTargetSampler(48, 0.5, 0.3, 0.25, draw=Draw(pos_sampler='instance_balanced'))
    for _ in range(5):
        labels, match = _rpn_call(sampler, backend, ious)
        per_box = np.bincount(match[labels == 1].astype(int), minlength=3)
        # 12 positives over the boxes with candidates: share 12 // G; box 1 keeps all of its.
        share = 12 // (cand > 0).sum()
        assert per_box.sum() == 12 and per_box[1] == min(cand[1], share) == cand[1]
        assert (per_box >= np.minimum(cand, share)).all() and (labels == -1).sum() == 36


@pytest.mark.parametrize('backend', BACKENDS)
def test_rpn_sampler_iou_balanced_negatives_and_hard_flags(backend):
    ious = _rpn_case()
    sampler = RPNTargetSampler(60, 0.5, 0.3, 0.25, draw=Draw(neg_sampler='iou_balanced'))
    hard = np.array([0, 0, 1], np.float32)
    labels, _ = _rpn_call(sampler, backend, ious, hard)
    best = ious.max(1)
    neg_bins = np.histogram(best[labels == -1], bins=[0, 0.1, 0.2, 0.3])[0]
    assert (labels == -1).sum() == 60 - (labels == 1).sum()
    assert neg_bins.tolist() == [15, 15, 15]  # 45 negatives, a third per bin
    # Hard box 2 makes no positive, and an anchor overlapping it (IoU >= 0.3) is no negative.
    assert (ious[:, 2] >= 0.3).any() and not ((labels == -1) & (ious[:, 2] >= 0.3)).any()
    assert not ((labels == 1) & (ious[:, :2].max(1) < 0.3)).any()


def _rpn_call(sampler, backend, ious, hard=None):
    if backend == 'numpy':
        return sampler(ious, hard)
    with force_ndarray_backend():
        out = sampler(mx.nd.array(ious), None if hard is None else mx.nd.array(hard))
    return tuple(o.asnumpy() for o in out)


def test_sampler_options_are_checked():
    with pytest.raises(ValueError, match='neg_sampler'):
        RPNTargetSampler(8, 0.7, 0.3, 0.5, draw=Draw(neg_sampler='hard'))
    with pytest.raises(ValueError, match='pos_sampler'):
        RPNTargetSampler(8, 0.7, 0.3, 0.5, draw=Draw(pos_sampler='iou_balanced'))
    with pytest.raises(ValueError, match='num_bins'):
        RPNTargetSampler(8, 0.7, 0.3, 0.5, draw=Draw(neg_sampler='iou_balanced', num_bins=0))


def _quota_case():
    """400 proposals: 60 around box 0, 5 around box 1, the rest scattered; 3 boxes."""
    rng = np.random.RandomState(0)
    xy = rng.uniform(0, 200, (400, 2))
    props = np.concatenate([xy, xy + rng.uniform(10, 80, (400, 2))], 1).astype(np.float32)
    props[:60] = [12, 12, 148, 148] + rng.uniform(-8, 8, (60, 4))
    props[60:65] = [161, 161, 179, 179] + rng.uniform(-1, 1, (5, 4))
    gt = np.array([[10, 10, 150, 150], [160, 160, 180, 180], [20, 150, 60, 190]], np.float32)
    ious = box_iou(props, gt)[None]
    matches = np.where(ious.max(-1) >= 0.5, ious.argmax(-1), -1).astype(np.float32)
    return props, gt, matches, ious


QUOTA_PATHS = ['numpy', 'op', 'op-device', 'hybridized']


def _quota_call(sampler, path, matches, ious, hard=None):
    if path == 'numpy':
        return sampler(matches, ious, hard)
    if path == 'hybridized':
        sampler.hybridize()
    args = [mx.nd.array(a) for a in (matches, ious) + (() if hard is None else (hard,))]
    if path == 'op-device':
        with force_ndarray_backend():
            return sampler(*args).asnumpy()
    return sampler(*args).asnumpy()


@pytest.mark.parametrize('path', QUOTA_PATHS)
def test_quota_sampler_balanced_options(path):
    from samplers import QuotaSampler
    _, _, matches, ious = _quota_case()
    best, box = ious.max(-1)[0], ious.argmax(-1)[0]
    neg_bins = np.digitize(best, [1 / 6, 2 / 6]) - (best >= 0.5) * 10  # -10.. for positives
    cand = np.bincount(neg_bins[best < 0.5], minlength=3)
    assert cand[2] < 16 < cand[1]
    sampler = QuotaSampler(64, 0.5, 0.5, 0.0, pos_ratio=0.25,
                           draw=Draw(pos_sampler='instance_balanced', neg_sampler='iou_balanced'))
    labels = _quota_call(sampler, path, matches, ious)[0]
    # 16 positives over boxes 0 (60) and 1 (5): share 8, box 1 keeps its 5.
    assert np.bincount(box[labels == 1], minlength=3).tolist() == [11, 5, 0]
    # 48 negatives: share 16 per bin of [0, 0.5); bin 2 is short, its slots go to bins 0, 1.
    got = np.bincount(neg_bins[labels == -1], minlength=3)
    assert got.sum() == 48 and got[2] == cand[2] and got[0] >= 16 and got[1] >= 16


@pytest.mark.parametrize('path', QUOTA_PATHS)
def test_differs_from_mmdetection_iou_bins_split_the_negative_range(path):
    # Bins of [0, neg_thresh_high) = [0, 0.5): 0.05 | 0.25 | 0.4, two slots each of 6. Over
    # mmdetection's [0, max IoU) = [0, 1) (the positive's 1.0 counts) 0.05 and 0.25 would
    # share a bin of 2 slots, 0.4 have the next and the top bin nothing.
    from samplers import QuotaSampler
    ious = np.array([[[1.0]] + [[0.05]] * 10 + [[0.25]] * 2 + [[0.4]] * 2], np.float32)
    matches = np.full(ious.shape[:2], -1.0, np.float32)
    sampler = QuotaSampler(6, 0.5, 0.5, 0.0, pos_ratio=0.0, draw=Draw(neg_sampler='iou_balanced'))
    for seed in range(10):
        mx.random.seed(seed)
        np.random.seed(seed)
        labels = _quota_call(sampler, path, matches, ious)[0]
        assert labels[0] == 0 and (labels == -1).sum() == 6
        assert (labels[11:] == -1).all()  # both 0.25 and both 0.4, every time


@pytest.mark.parametrize('path', ['op', 'op-device'])
def test_quota_sampler_one_bin_one_box_is_the_uniform_sampler(path):
    from samplers import QuotaSampler
    _, _, matches, ious = _quota_case()
    matches = np.where(matches == 1, 0, matches)  # one box for every positive
    ious = ious[:, :, :1]
    kw = dict(num_sample=64, pos_thresh=0.5, neg_thresh_high=0.5, neg_thresh_low=0.0,
              pos_ratio=0.125)
    mx.random.seed(3)
    uniform = _quota_call(QuotaSampler(**kw), path, matches, ious)
    mx.random.seed(3)
    balanced = _quota_call(QuotaSampler(draw=Draw(pos_sampler='instance_balanced',
                                                  neg_sampler='iou_balanced', num_bins=1), **kw),
                           path, matches, ious)
    np.testing.assert_array_equal(balanced, uniform)


@pytest.mark.parametrize('path', QUOTA_PATHS)
def test_quota_sampler_balanced_keeps_hard_flags(path):
    from samplers import QuotaSampler
    _, _, matches, ious = _quota_case()
    hard = np.array([[1, 0, 0]], np.float32)  # the big box is hard
    sampler = QuotaSampler(64, 0.5, 0.5, 0.0, pos_ratio=0.25,
                           draw=Draw(pos_sampler='instance_balanced', neg_sampler='iou_balanced'))
    labels = _quota_call(sampler, path, matches, ious, hard)[0]
    assert not (labels[ious[0, :, 0] >= 0.5] != 0).any()  # neither positive nor negative
    assert (labels == 1).sum() == 5


def test_quota_op_attributes_stay_backward_compatible():
    from samplers import QuotaSampler
    from samplers.quota import OP_TYPE
    _, _, matches, ious = _quota_case()
    attrs = QuotaSampler(64, 0.5, 0.5)._rule.attrs()
    assert not {'pos_sampler', 'neg_sampler', 'num_bins'} & set(attrs)  # defaults add nothing
    args = [mx.nd.array(matches), mx.nd.array(ious), mx.nd.random.uniform(shape=matches.shape)]
    old = mx.nd.Custom(*args, op_type=OP_TYPE, **attrs).asnumpy()
    assert (old == -1).sum() == 32
    new = mx.nd.Custom(*args, op_type=OP_TYPE, neg_sampler='iou_balanced', num_bins='1',
                       **attrs).asnumpy()
    np.testing.assert_array_equal(new, old)  # one bin: the same picks from the same keys


def test_rcnn_sampler_iou_balanced_negatives():
    from samplers.rcnn import RCNNTargetSampler
    props, gt, _, _ = _quota_case()
    sampler = RCNNTargetSampler(1, 400, 64, draw=Draw(neg_sampler='iou_balanced',
                                                      pos_sampler='instance_balanced'))
    rois, samples, match = (o.asnumpy()[0] for o in sampler(
        mx.nd.array(props[None]), mx.nd.ones((1, 400, 1)), mx.nd.array(gt[None])))
    best = box_iou(rois, gt).max(1)
    assert (samples == 1).sum() == 16 and (samples == -1).sum() == 48
    got = np.bincount(np.digitize(best[samples == -1], [1 / 6, 2 / 6]), minlength=3)
    assert got[0] >= 16 and got[1] >= 16


@settings(max_examples=30)
@given(_cases())
def test_fast_numpy_share_equals_the_full_sort(case):
    from samplers.group_rank import _group_share_exact, _group_share_numpy
    pos, _, _, group, m, k_pos, _, _, seed = case
    keys = _keys(pos.shape, seed % 1000)
    grp = np.where((group >= 0) & (group < m), group, m).astype(np.float32)
    share = lambda present: np.floor(k_pos[:, None] / np.maximum(present, 1))  # noqa: E731
    fast = _group_share_numpy(pos.astype(np.float32), grp, m + 1, share, keys)
    exact = _group_share_exact(pos.astype(np.float32), grp, m + 1, share, keys)
    np.testing.assert_array_equal(fast[0], exact[0])
    np.testing.assert_allclose(fast[1][fast[0] == 0], exact[1][fast[0] == 0], rtol=1e-6)


def test_samplers_with_balanced_options_read_nothing_back_on_the_device_path(
        no_host_copies):
    from samplers import QuotaSampler
    from samplers.rcnn import RCNNTargetSampler
    props, gt, matches, ious = _quota_case()
    opts = dict(draw=Draw(pos_sampler='instance_balanced', neg_sampler='iou_balanced'))
    nd = {name: mx.nd.array(a) for name, a in
          dict(props=props[None], gt=gt[None], matches=matches, ious=ious).items()}
    hard = mx.nd.array([[0, 0, 1]])
    with force_ndarray_backend():
        out = [QuotaSampler(64, 0.5, 0.5, 0.0, pos_ratio=0.25, **opts)(nd['matches'], nd['ious'],
                                                                      hard),
               RPNTargetSampler(64, 0.5, 0.3, 0.25, **opts)(nd['ious'][0], hard[0])[0],
               RCNNTargetSampler(1, 400, 64, **opts)(nd['props'], mx.nd.ones((1, 400, 1)),
                                                     nd['gt'], hard)[1]]
    mx.nd.waitall()
    assert all(isinstance(o, mx.nd.NDArray) for o in out)


@settings(max_examples=40)
@given(st.integers(0, 2 ** 31 - 1), st.integers(1, 3), st.integers(1, 60), st.integers(0, 4),
       st.integers(1, 40), st.sampled_from([0.0, 0.25, 0.5]), st.integers(1, 4),
       st.sampled_from([-1.0, 0.0, 0.2]), st.sampled_from([0.0, 0.5]))
def test_quota_sampler_options_change_which_never_how_many(seed, b, n, m, num_sample, pos_ratio,
                                                           num_bins, floor_thr, floor_fraction):
    from samplers import QuotaSampler
    rng = np.random.RandomState(seed)
    ious = np.where(rng.uniform(size=(b, n, m)) < 0.5, 0, rng.uniform(0, 1, (b, n, m))) \
        .astype(np.float32)
    matches = np.where(rng.uniform(size=(b, n)) < 0.2, rng.randint(0, max(m, 1), (b, n)), -1) \
        .astype(np.float32)
    hard = (rng.uniform(size=(b, m)) < 0.3).astype(np.float32)
    kw = dict(num_sample=num_sample, pos_thresh=0.5, neg_thresh_high=0.5, neg_thresh_low=0.0,
              pos_ratio=pos_ratio)
    uniform = QuotaSampler(**kw)(matches, ious, hard)
    balanced = QuotaSampler(draw=Draw(pos_sampler='instance_balanced', neg_sampler='iou_balanced',
                                      num_bins=num_bins, floor_thr=floor_thr,
                                      floor_fraction=floor_fraction), **kw)(matches, ious, hard)
    every = QuotaSampler(**dict(kw, num_sample=10 ** 6))(matches, ious, hard)  # the candidates
    for label in (1, -1):
        np.testing.assert_array_equal((balanced == label).sum(1), (uniform == label).sum(1))
        assert not ((balanced == label) & (every != label)).any()  # from its own candidates


@pytest.mark.parametrize('path', ['numpy', 'op-device'])
def test_quota_instance_groups_unmatched_positives_by_their_best_normal_box(path):
    from samplers import QuotaSampler
    # Proposals 0-4: IoU 0.6 with box 0 and 0.9 with box 1 (hard); 5-9: 0.7 with box 0;
    # 10-11: 0.7 with box 2. Nothing is matched. Boxes with positives: 0 and 2 (not 1, hard),
    # so k 4 gives each a share of 2 and box 2 keeps both of its.
    ious = np.zeros((1, 12, 3), np.float32)
    ious[0, :5, 0], ious[0, :5, 1], ious[0, 5:10, 0], ious[0, 10:, 2] = 0.6, 0.9, 0.7, 0.7
    matches = -np.ones((1, 12), np.float32)
    hard = np.array([[0, 1, 0]], np.float32)
    sampler = QuotaSampler(8, 0.5, 0.5, 0.0, pos_ratio=0.5,
                           draw=Draw(pos_sampler='instance_balanced'))
    for seed in range(8):
        mx.random.seed(seed)
        np.random.seed(seed)
        labels = _quota_call(sampler, path, matches, ious, hard)[0]
        assert (labels == 1).sum() == 4 and (labels[10:] == 1).all()


@pytest.mark.parametrize('backend', BACKENDS)
def test_rpn_generator_takes_the_balanced_options(backend):
    from samplers import RPNTargetGenerator
    rng = np.random.RandomState(0)
    xy = rng.uniform(0, 200, (3000, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(10, 60, (3000, 2))], 1).astype(np.float32)
    gt = np.array([[10, 10, 150, 150], [160, 160, 180, 180]], np.float32)
    best = box_iou(anchors, gt).max(1)
    kw = dict(num_sample=60, pos_iou_thresh=0.5, neg_iou_thresh=0.3, pos_ratio=0.25)
    gen = RPNTargetGenerator(draw=Draw(neg_sampler='iou_balanced', pos_sampler='instance_balanced'),
                             **kw)
    if backend == 'numpy':
        cls, _, mask = gen(gt, anchors, 250, 250)
    else:
        with force_ndarray_backend():
            cls, _, mask = (o.asnumpy() for o in gen(mx.nd.array(gt), mx.nd.array(anchors),
                                                      250, 250))
    uniform, _, _ = RPNTargetGenerator(**kw)(gt, anchors, 250, 250)
    assert (cls == 1).sum() == (uniform == 1).sum() and (cls == 0).sum() == (uniform == 0).sum()
    neg = np.histogram(best[cls == 0], bins=[0, 0.1, 0.2, 0.3])[0]
    assert neg.min() >= (cls == 0).sum() // 3 and (mask[cls == 1] == 1).all()


def test_rpn_generator_balanced_skips_the_anchor_grid():
    from samplers import RPNTargetGenerator
    anchors = grid_anchors(256, 4)  # a grid layout, large enough for the grid path
    gt = np.array([[10, 10, 60, 70], [70, 20, 120, 60]], np.float32)
    kw = dict(num_sample=64, pos_iou_thresh=0.5, neg_iou_thresh=0.3, pos_ratio=0.25)
    uniform = RPNTargetGenerator(**kw)
    assert uniform._grids.get(anchors) is not None  # the uniform generator takes the grid
    cls, _, _ = RPNTargetGenerator(draw=Draw(neg_sampler='iou_balanced'), **kw)(
        gt, anchors, 256, 256)
    ref, _, _ = uniform(gt, anchors, 256, 256)
    assert (cls == 1).sum() == (ref == 1).sum() and (cls == 0).sum() == (ref == 0).sum()


@pytest.mark.parametrize('skewed', [False, True])
def test_fast_numpy_share_of_large_groups_equals_the_full_sort(skewed):
    # Large groups take the partial sort over their lowest keys only; a group whose keys all
    # sit high (skewed) has too few there and takes the sort over every value. Same picks.
    from samplers.group_rank import _group_share_exact, _group_share_numpy
    rng = np.random.RandomState(7)
    mask = (rng.uniform(size=(2, 60000)) < 0.9).astype(np.float32)
    group = rng.randint(0, 3, mask.shape).astype(np.float32)
    keys = rng.uniform(size=mask.shape).astype(np.float32)
    if skewed:
        keys[group == 1] = 0.9 + 0.1 * keys[group == 1]
    share = lambda present: np.floor(np.float32(120) / np.maximum(present, 1))  # noqa: E731
    fast = _group_share_numpy(mask, group, 3, share, keys)
    exact = _group_share_exact(mask, group, 3, share, keys)
    np.testing.assert_array_equal(fast[0], exact[0])
    assert fast[0].sum() == 2 * 120
    np.testing.assert_allclose(fast[1][fast[0] == 0], exact[1][fast[0] == 0], rtol=1e-6)
