"""NaiveSampler: matched -> 1, everything else -> -1."""
import contextlib

import mxnet as mx
import numpy as np
import pytest
from gluoncv.nn.sampler import NaiveSampler as GluonNaiveSampler
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from samplers import force_ndarray_backend
from samplers.naive import NaiveSampler


def test_naive_labels_matched_positive_and_rest_negative():
    out = NaiveSampler()(mx.nd.array([[0, 3, -1, -2]]))
    np.testing.assert_array_equal(out.asnumpy(), [[1, 1, -1, -1]])


def test_naive_equals_gluoncv():
    x = mx.nd.array(np.random.randint(-3, 5, size=(4, 50)))
    np.testing.assert_array_equal(NaiveSampler()(x).asnumpy(), GluonNaiveSampler()(x).asnumpy())


def test_naive_hybridized_equals_imperative_and_exports(tmp_path):
    x = mx.nd.array(np.random.randint(-2, 3, size=(2, 10)))
    net = NaiveSampler()
    expected = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_array_equal(net(x).asnumpy(), expected)
    net.export(str(tmp_path / 'naive'))
    loaded = mx.gluon.SymbolBlock.imports(str(tmp_path / 'naive-symbol.json'), ['data'])
    np.testing.assert_array_equal(loaded(x).asnumpy(), expected)


@pytest.mark.parametrize('dtype', ['float16', 'float32', 'float64', 'int32'])
def test_naive_keeps_input_dtype(dtype):
    out = NaiveSampler()(mx.nd.array([[2, -1]], dtype=dtype))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out.asnumpy(), [[1, -1]])


# Two lines of rule: a few dozen small examples (negative, zero and positive indices) suffice.
@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
                  elements=st.integers(-5, 30).map(float)))
def test_naive_property_matched_positive_rest_negative_like_gluoncv(matches):
    out = NaiveSampler()(mx.nd.array(matches)).asnumpy()
    assert set(np.unique(out)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(out > 0, matches >= 0)  # positives are exactly the matched
    np.testing.assert_array_equal(out, GluonNaiveSampler()(mx.nd.array(matches)).asnumpy())


@pytest.mark.parametrize('hybridize', [False, True], ids=['imperative', 'hybridized'])
@pytest.mark.parametrize('forced', [False, True], ids=['default', 'forced-nd'])
@pytest.mark.parametrize('shape', [(2, 0), (0, 5), (0,)], ids=str)
def test_zero_size_matches_give_empty_labels_on_both_paths(shape, forced, hybridize):
    sampler = NaiveSampler()
    if hybridize:
        sampler.hybridize()
    x = mx.nd.array(np.zeros(shape, np.float32), ctx=mx.cpu(1))
    with force_ndarray_backend() if forced else contextlib.nullcontext():
        out = sampler(x)
    assert out.shape == shape and out.context == mx.cpu(1) and out.dtype == np.float32
