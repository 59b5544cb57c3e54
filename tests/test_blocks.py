"""samplers._blocks: every sampler takes its inputs by keyword, pickles and shows its settings."""
import inspect
import pickle

import mxnet as mx
import numpy as np
import pytest

import samplers as S


def _quota():
    matches = np.array([[-1, 0, -1, -1]], np.float32)
    ious = np.array([[[0.1, 0.0], [0.7, 0.0], [0.6, 0.2], [0.0, 0.6]]], np.float32)
    return S.QuotaSampler(2, 0.5, 0.3), (matches, ious), np.array([[0, 1]], np.float32)


def _rcnn():
    rois = mx.nd.array([[[0, 0, 10, 10], [0, 0, 9, 10], [20, 20, 30, 30], [50, 50, 60, 60]]])
    gt = mx.nd.array([[[0, 0, 10, 10], [20, 20, 30, 30]]])
    return (S.RCNNTargetSampler(1, 4, 4), (rois, mx.nd.ones((1, 4, 1)), gt),
            mx.nd.array([[0, 1]]))


def _rpn_sampler():
    ious = np.array([[0.8, 0.0], [0.1, 0.0], [0.0, 0.75], [0.2, 0.4]], np.float32)
    return S.RPNTargetSampler(3, 0.7, 0.3, 0.5), (ious,), np.array([0, 1], np.float32)


def _rpn_generator():
    anchors = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]], np.float32)
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    return S.RPNTargetGenerator(num_sample=3), (gt, anchors, 40, 40), np.array([0, 1], np.float32)


def _ssd():
    anchors = np.array([[[5, 5, 10, 10], [25, 25, 10, 10], [3, 3, 5, 5]]], np.float32)
    gt = np.array([[[0, 0, 10, 10], [20, 20, 30, 30]]], np.float32)
    ids = np.array([[[1], [2]]], np.float32)
    return (S.SSDTargetGenerator(negative_mining_ratio=-1), (anchors, None, gt, ids),
            np.array([0, 1], np.float32))


HARD_AWARE = [_quota, _rcnn, _rpn_sampler, _rpn_generator, _ssd]


def _numpy(out):
    """The outputs (an array, or nested tuples and lists of them) as a flat list of numpy."""
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _numpy(o)]
    return [out.asnumpy() if isinstance(out, mx.nd.NDArray) else np.asarray(out)]


def _seeded(fn):
    mx.random.seed(3)
    np.random.seed(3)
    return _numpy(fn())


@pytest.mark.parametrize('make', HARD_AWARE, ids=lambda f: f.__name__[1:])
def test_hard_by_keyword_equals_hard_by_position(make):
    sampler, args, hard = make()
    by_position = _seeded(lambda: sampler(*args, hard))
    by_keyword = _seeded(lambda: sampler(*args, hard=hard))
    without = _seeded(lambda: sampler(*args))
    for a, b in zip(by_position, by_keyword):
        np.testing.assert_array_equal(a, b)
    assert any((a != b).any() for a, b in zip(by_position, without))  # the flags were used


@pytest.mark.parametrize('make', HARD_AWARE, ids=lambda f: f.__name__[1:])
def test_every_input_by_keyword(make):
    sampler, args, hard = make()
    names = list(inspect.signature(sampler.forward).parameters)
    kwargs = dict(zip(names, args), hard=hard)
    for a, b in zip(_seeded(lambda: sampler(*args, hard)), _seeded(lambda: sampler(**kwargs))):
        np.testing.assert_array_equal(a, b)


def test_ohem_and_ssd_loss_and_naive_take_keywords():
    x = np.array([[0, -1, -1, -1]], np.float32)
    logits = np.array([[[0, 1], [0, 2], [0, 0], [0, 3]]], np.float32)
    ious = np.zeros((1, 4), np.float32)
    scores = np.array([[0, 1, 5, 2]], np.float32)
    ohem = S.OHEMSampler(1)
    np.testing.assert_array_equal(ohem(x, logits, ious, scores=scores),
                                  ohem(x=x, logits=None, ious=ious, scores=scores))
    np.testing.assert_array_equal(ohem(x, logits, ious, scores=scores), [[1, 0, -1, 0]])
    naive = S.NaiveSampler()
    np.testing.assert_array_equal(naive(x=mx.nd.array(x)).asnumpy(), [[1, -1, -1, -1]])
    loss = S.SSDMultiBoxLoss()
    args = (mx.nd.array(logits), mx.nd.zeros((1, 4, 4)), mx.nd.array([[1, 0, 0, 0]]),
            mx.nd.zeros((1, 4, 4)))
    names = ('cls_pred', 'box_pred', 'cls_target', 'box_target')
    for a, b in zip(_numpy(loss(*args)), _numpy(loss(**dict(zip(names, args))))):
        np.testing.assert_array_equal(a, b)


def test_a_keyword_the_call_does_not_take_raises_type_error():
    with pytest.raises(TypeError):
        S.QuotaSampler(2, 0.5, 0.3)(np.zeros((1, 1)), np.zeros((1, 1, 1)), flags=None)


@pytest.mark.parametrize('make', HARD_AWARE, ids=lambda f: f.__name__[1:])
def test_every_sampler_pickles_to_the_same_repr(make):
    sampler = make()[0]
    assert repr(pickle.loads(pickle.dumps(sampler))) == repr(sampler)
    assert repr(sampler).startswith(type(sampler).__name__ + '(')


def test_repr_shows_balanced_options_only_when_not_uniform():
    for default in (S.QuotaSampler(2, 0.5, 0.3), S.QuotaSampler(2, 0.5, 0.3, draw=S.Draw())):
        assert 'pos_sampler' not in repr(default) and 'draw=' not in repr(default)
    shown = repr(S.QuotaSampler(2, 0.5, 0.3, draw=S.Draw(neg_sampler='iou_balanced')))
    assert "draw=Draw(" in shown and "neg_sampler='iou_balanced'" in shown


def test_a_hybridized_sampler_pickles_without_its_graph_and_rebuilds_it():
    x = mx.nd.array([[0, -1, -1]])
    logits = mx.nd.array([[[0, 1], [0, 2], [0, 0]]])
    ious = mx.nd.zeros((1, 3))
    ohem = S.OHEMSampler(1)
    ohem.hybridize()
    want = ohem(x, logits, ious).asnumpy()
    clone = pickle.loads(pickle.dumps(ohem))
    assert clone._cached_op is None and clone._graph_key is None
    np.testing.assert_array_equal(clone(x, logits, ious).asnumpy(), want)
    # A new dtype pattern rebuilds the graph: float64 logits give the same labels.
    np.testing.assert_array_equal(ohem(x, logits.astype('float64'), ious).asnumpy(), want)


@pytest.mark.parametrize('make', HARD_AWARE, ids=lambda f: f.__name__[1:])
def test_minus_one_padding_flags_read_as_not_hard_on_every_sampler(make):
    sampler, args, hard = make()
    padded = hard * 2 - 1  # every 0 becomes -1
    want = _seeded(lambda: sampler(*args, hard))
    for a, b in zip(want, _seeded(lambda: sampler(*args, padded))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('make', HARD_AWARE, ids=lambda f: f.__name__[1:])
def test_flags_other_than_minus_one_zero_one_raise_on_every_sampler(make):
    sampler, args, hard = make()
    with pytest.raises(ValueError, match='hard'):
        sampler(*args, hard * 0.5)
