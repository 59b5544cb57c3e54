"""Quotas and keep-k (samplers.draws) and the array protocol they run on (samplers.backend)."""
import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import samplers
from samplers import backend, draws


# ----------------------------------------------------------------------------- quotas
@pytest.mark.parametrize('num_sample,ratio,expected', [(256, 0.5, 128), (512, 0.25, 128),
                                                       (5, 0.5, 2), (7, 0.5, 4), (10, 0.0, 0)])
def test_positive_quota_rounds_like_python(num_sample, ratio, expected):
    assert draws.positive_quota(num_sample, ratio) == expected

def test_negative_quota_fills_free_slots_only_with_fill_negative():
    assert draws.negative_quota(100, 10, 0.5, fill_negative=True) == 90
    assert draws.negative_quota(100, 10, 0.5, fill_negative=False) == 50
    np.testing.assert_array_equal(draws.negative_quota(100, np.array([0, 50]), 0.5), [100, 50])

# ----------------------------------------------------------------------------- keep k at random
def test_keep_random_keeps_min_of_k_and_count_per_row_within_candidates():
    mask = np.random.rand(4, 60) > 0.4
    ks = np.array([5, 1000, 0, 17])
    out = draws.keep_random(mask, ks)
    np.testing.assert_array_equal(out.sum(axis=1), np.minimum(ks, mask.sum(axis=1)))
    assert not (out & ~mask).any()

def test_keep_random_ndarray_path_keeps_min_of_k_and_count_per_row():
    mask = np.random.rand(3, 50) > 0.5
    with samplers.force_ndarray_backend():
        out = draws.keep_random(mx.nd.array(mask), np.array([4, 0, 100]))
    kept = out.asnumpy() > 0
    np.testing.assert_array_equal(kept.sum(axis=1), np.minimum([4, 0, 100], mask.sum(axis=1)))
    assert not (kept & ~mask).any()

def test_keep_random_is_uniform_over_candidates():
    mask = np.zeros(10, bool)
    mask[[1, 3, 5, 7]] = True
    hits = sum(draws.keep_random(mask, 1).astype(int) for _ in range(4000))
    assert set(np.flatnonzero(hits)) == {1, 3, 5, 7}
    assert hits[[1, 3, 5, 7]].min() > 850  # 1000 expected each; 850 is > 5 sigma away

def test_keep_random_ndarray_is_uniform_over_candidates():
    # 2000 rows, each its own draw (quotas are per row), and a second call for fresh keys.
    mask = mx.nd.array(np.tile([[0, 1, 0, 1, 0, 1, 0, 1]], (2000, 1)))
    with samplers.force_ndarray_backend():
        first, second = (draws.keep_random(mask, 1).asnumpy() for _ in range(2))
    hits = first.sum(axis=0)
    assert (first.sum(axis=1) == 1).all()
    assert hits[[1, 3, 5, 7]].min() > 400  # 500 expected each
    assert hits[[0, 2, 4, 6]].max() == 0
    assert (first != second).any()  # the RNG moves on between calls

def test_keep_random_reproduces_under_seed():
    mask = np.random.rand(200) > 0.5
    np.random.seed(7)
    first = draws.keep_random(mask, 10)
    np.random.seed(7)
    np.testing.assert_array_equal(draws.keep_random(mask, 10), first)
    with samplers.force_ndarray_backend():
        mx.random.seed(7)
        a = draws.keep_random(mx.nd.array(mask), 10).asnumpy()
        mx.random.seed(7)
        np.testing.assert_array_equal(draws.keep_random(mx.nd.array(mask), 10).asnumpy(), a)

def test_keep_random_works_in_symbol_graph():
    mask, k = mx.sym.var('mask'), mx.sym.var('k')
    out = draws.keep_uniform(backend.SYM, mask, k)
    m = (np.random.rand(2, 30) > 0.5).astype(np.float32)
    res = out.eval(mask=mx.nd.array(m), k=mx.nd.array([[3], [40]]))[0].asnumpy()
    np.testing.assert_array_equal(res.sum(axis=1), np.minimum([3, 40], m.sum(axis=1)))

@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.integers(0, 80), st.integers(0, 90), st.floats(0, 1))
def test_keep_random_property_subset_with_exact_count(rows, n, k, density):
    mask = np.random.rand(rows, n) < density
    out = draws.keep_random(mask, k)
    assert out.shape == mask.shape and not (out & ~mask).any()
    np.testing.assert_array_equal(out.sum(axis=1), np.minimum(k, mask.sum(axis=1)))

@pytest.mark.parametrize('kind', ['numpy', 'ndarray'])
def test_keep_top_with_k_beyond_int32_keeps_every_candidate(kind):
    be, wrap = (backend.NUMPY, np.array) if kind == 'numpy' else (backend.ND, mx.nd.array)
    out = draws.keep_top(be, wrap([[0.3, 0.9, 0.1, 0.2]]), wrap([[1, 0, 1, 1]]), wrap([[3e9]]))
    np.testing.assert_array_equal(out if kind == 'numpy' else out.asnumpy(), [[1, 0, 1, 1]])

@pytest.mark.parametrize('kind', ['numpy', 'ndarray', 'symbol'])
def test_labels_writes_the_package_constants(kind):
    pos = np.array([[1, 0, 0, 1]], np.float32)
    neg = np.array([[0, 1, 0, 0]], np.float32)
    expect = [[samplers.POSITIVE, samplers.NEGATIVE, samplers.IGNORE, samplers.POSITIVE]]
    if kind == 'numpy':
        out = backend.NUMPY.labels(pos > 0, neg)
    elif kind == 'ndarray':
        out = backend.ND.labels(mx.nd.array(pos), mx.nd.array(neg)).asnumpy()
    else:
        sym = backend.SYM.labels(mx.sym.var('p'), mx.sym.var('n'))
        out = sym.eval(p=mx.nd.array(pos), n=mx.nd.array(neg))[0].asnumpy()
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize('kind', ['numpy', 'ndarray', 'symbol'])
def test_keep_top_keeps_k_per_row_ties_to_lower_index(kind):
    # One tie rule for every backend: the k-th highest score's ties go to the lower index.
    scores = np.array([[3, 1, 3, 3, 0], [1, 2, 3, 4, 5]], np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], np.float32)
    k = np.array([[2], [3]], np.float32)
    got = _on(kind, 'keep_top', scores, mask, k)
    np.testing.assert_array_equal(got, [[1, 0, 1, 0, 0], [0, 1, 1, 1, 0]])


def _on(kind, method, *arrays):
    """``backend.<kind>.<method>(*arrays)``, or the keep-k function ``draws.<method>(backend.<kind>,
    *arrays)``, on numpy arrays, returned as numpy float32."""
    def call(be, *args):
        if method.startswith('keep_'):
            return getattr(draws, method)(be, *args)
        return getattr(be, method)(*args)
    if kind == 'numpy':
        return call(backend.NUMPY, *arrays)
    if kind == 'ndarray':
        return call(backend.ND, *[mx.nd.array(a) for a in arrays]).asnumpy()
    names = ['a{}'.format(i) for i in range(len(arrays))]
    sym = call(backend.SYM, *[mx.sym.var(n) for n in names])
    return sym.eval(**{n: mx.nd.array(a) for n, a in zip(names, arrays)})[0].asnumpy()


@pytest.mark.parametrize('kind', ['numpy', 'ndarray', 'symbol'])
@pytest.mark.parametrize('seed', range(5))
def test_keep_top_is_the_same_on_every_backend_with_many_ties(kind, seed):
    rng = np.random.RandomState(seed)
    scores = rng.randint(0, 4, (6, 50)).astype(np.float32)  # many ties at every cut
    mask = (rng.uniform(size=scores.shape) < 0.7).astype(np.float32)
    k = rng.randint(-1, 45, (6, 1)).astype(np.float32)
    # the rule, written plainly: a stable sort by falling score, the first k candidates
    want = np.zeros_like(mask)
    for r in range(len(mask)):
        idx = np.flatnonzero(mask[r])
        order = idx[np.argsort(-scores[r, idx], kind='stable')]
        want[r, order[:max(0, int(k[r, 0]))]] = 1
    np.testing.assert_array_equal(_on(kind, 'keep_top', scores, mask, k), want)


@pytest.mark.parametrize('kind', ['numpy', 'ndarray', 'symbol'])
def test_keep_lowest_is_keep_top_of_negated_keys(kind):
    keys = np.array([[0.5, 0.1, 0.1, 0.9, 0.2]], np.float32)
    mask = np.array([[1, 1, 1, 1, 0]], np.float32)
    got = _on(kind, 'keep_lowest', keys, mask, np.array([[2]], np.float32))
    np.testing.assert_array_equal(got, [[0, 1, 1, 0, 0]])


@pytest.mark.parametrize('kind', ['numpy', 'ndarray', 'symbol'])
def test_where_broadcasts_scalars_and_size_one_axes_alike(kind):
    cond = np.array([[1, 0, 1]], np.float32)
    x = np.array([[1], [2]], np.float32)
    y = np.array([[5, 6, 7], [8, 9, 10]], np.float32)
    np.testing.assert_array_equal(_on(kind, 'where', cond, x, y), [[1, 6, 1], [2, 9, 2]])


@pytest.mark.parametrize('kind', ['numpy', 'ndarray', 'symbol'])
def test_take_rows_and_compact_mask_mean_the_same_on_every_backend(kind):
    table = np.array([[10, 11, 12], [20, 21, 22]], np.float32)
    idx = np.array([[2, 0], [1, 1]], np.float32)
    np.testing.assert_array_equal(_on(kind, 'take_rows', table, idx), [[12, 10], [21, 21]])
    out = _on(kind, 'compact_mask', np.array([[0, 1, 1]], np.float32))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 1, 1]])


# ----------------------------------------------------------------------------- lowest positions
def stable_lowest(keys, take):
    """The oracle: a stable sort's first ``take`` positions (ties to the lower position)."""
    return np.sort(np.argsort(keys, kind='stable')[:take])


@settings(max_examples=150, deadline=None)
@given(st.integers(300, 4000), st.integers(1, 60), st.sampled_from(['normal', 'few_values',
                                                                    'sorted', 'uniform']),
       st.integers(0, 2 ** 31 - 1), st.booleans())
def test_lowest_positions_equal_a_stable_sort_whatever_the_cut_off(size, take, shape, seed,
                                                                   spread):
    # Rows large beside take go through the cut-off (from every 8th key, or a fraction of 1
    # when spread); ties, sorted rows and keys not uniform at all must not change the answer.
    rng = np.random.RandomState(seed)
    keys = {'normal': lambda: rng.randn(size),
            'few_values': lambda: rng.randint(0, 3, size).astype(float),
            'sorted': lambda: np.sort(rng.randn(size))[::rng.choice([1, -1])],
            'uniform': lambda: rng.uniform(0, 1, size)}[shape]().astype(np.float32)
    got = np.sort(draws._np_lowest_positions(keys, take, spread=spread))
    np.testing.assert_array_equal(got, stable_lowest(keys, take))


def test_lowest_positions_with_infinite_keys_equal_a_stable_sort():
    keys = np.random.RandomState(0).randn(2000).astype(np.float32)
    keys[::7] = -np.inf
    keys[3::11] = np.inf
    for take in (1, 5, 40, 286, 287, 300):
        np.testing.assert_array_equal(np.sort(draws._np_lowest_positions(keys, take)),
                                      stable_lowest(keys, take))


def keep_top_oracle(scores, mask, k):
    """Per row, the k highest scores among the candidates; ties to the lower index."""
    out = np.zeros(mask.shape, np.float32)
    for r in range(mask.shape[0]):
        idx = np.flatnonzero(mask[r])
        order = idx[np.argsort(-scores[r, idx], kind='stable')]
        out[r, order[:int(min(k[r], idx.size))]] = 1
    return out


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(300, 3000), st.floats(0.5, 1.0), st.integers(1, 80),
       st.sampled_from(['normal', 'ties', 'minus_inf']), st.integers(0, 2 ** 31 - 1))
def test_keep_top_of_mostly_candidate_rows_equals_a_stable_sort(rows, size, density, k, shape,
                                                                 seed):
    # Rows mostly made of candidates are ranked on whole rows (+inf off the candidates); a
    # candidate scoring -inf (key +inf) sends its row back to ranking its candidates alone.
    rng = np.random.RandomState(seed)
    mask = rng.uniform(size=(rows, size)) < density
    scores = {'normal': lambda: rng.randn(rows, size),
              'ties': lambda: rng.randint(0, 3, (rows, size)).astype(float),
              'minus_inf': lambda: np.where(rng.uniform(size=(rows, size)) < 0.97, -np.inf,
                                            rng.randn(rows, size))}[shape]().astype(np.float32)
    scores[~mask] = np.nan  # never read off the candidates
    ks = np.full((rows, 1), k)
    got = draws.keep_top(backend.NUMPY, scores, mask.astype(np.float32), ks)
    np.testing.assert_array_equal(got, keep_top_oracle(scores, mask, ks[:, 0]))
