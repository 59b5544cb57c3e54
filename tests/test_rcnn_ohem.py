"""Second-stage OHEM: the selection (hardest_rows) and the sampler block, as tests.

Rule under test (samplers/rcnn_ohem.py): candidates are the rows labelled 1 / -1 with a
finite loss and box; NMS walks them hardest first (ties: lower row first) and drops a box
with IoU > thresh with one kept before; 'paper' keeps the S hardest survivors with at most
P positives, 'balanced' the P hardest positives, then the hardest negatives for the rest.
"""
import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from samplers import backend
from samplers.boxes import box_iou
from samplers.rcnn import RCNNTargetSampler
from samplers.rcnn_ohem import OHEMTargetSampler, hardest_rows, head_loss, scored_by


# --------------------------------------------------------------------------- the oracle
def oracle(loss, labels, boxes, num_sample, max_pos, thresh, mode):
    """The rule, written plainly: (B, K) 0/1 of the rows chosen."""
    chosen = np.zeros(labels.shape, np.float32)
    for b in range(labels.shape[0]):
        cand = [i for i in range(labels.shape[1]) if labels[b, i] != 0
                and np.isfinite(loss[b, i]) and np.isfinite(boxes[b, i]).all()]
        order = sorted(cand, key=lambda i: (-loss[b, i], i))
        alive = []
        for i in order:
            if thresh is None or all(box_iou(boxes[b, i:i + 1], boxes[b, j:j + 1])[0, 0]
                                     <= thresh for j in alive):
                alive.append(i)
        if mode == 'balanced':
            pos = [i for i in alive if labels[b, i] > 0][:max_pos]
            neg = [i for i in alive if labels[b, i] < 0][:num_sample - len(pos)]
            keep = pos + neg
        else:
            keep, num_pos = [], 0
            for i in alive:
                if len(keep) == num_sample:
                    break
                if labels[b, i] > 0:
                    if num_pos == max_pos:
                        continue
                    num_pos += 1
                keep.append(i)
        chosen[b, keep] = 1
    return chosen


def select(kind, loss, labels, boxes, *args):
    """hardest_rows on numpy, mx.nd or an mx.sym graph, as numpy."""
    if kind == 'numpy':
        return np.asarray(hardest_rows(backend.NUMPY, loss, labels, boxes, *args))
    if kind == 'mx.nd':
        return hardest_rows(backend.ND, *map(mx.nd.array, (loss, labels, boxes)),
                            *args).asnumpy()
    names = ('loss', 'labels', 'boxes')
    out = hardest_rows(backend.SYM, *map(mx.sym.var, names), *args)
    arrays = dict(zip(names, map(mx.nd.array, (loss, labels, boxes))))
    return out.bind(mx.cpu(), arrays).forward()[0].asnumpy()


KINDS = ['numpy', 'mx.nd', 'mx.sym']


def random_boxes(rng, shape, size=40.0):
    corner = rng.uniform(0, 60, shape + (2,))
    return np.concatenate([corner, corner + rng.uniform(4, size, shape + (2,))],
                          axis=-1).astype(np.float32)


# --------------------------------------------------------------------------- selection
@pytest.mark.parametrize('kind', KINDS)
def test_no_nms_keeps_the_hardest_rows(kind):
    loss = np.array([[0.1, 0.9, 0.5, 0.7, 0.3]], np.float32)
    labels = np.array([[-1, -1, -1, -1, -1]], np.float32)
    boxes = random_boxes(np.random.RandomState(0), (1, 5))
    got = select(kind, loss, labels, boxes, 2, 1, None, 'paper')
    assert got.tolist() == [[0, 1, 0, 1, 0]]


@pytest.mark.parametrize('kind', KINDS)
def test_ties_go_to_the_lower_row(kind):
    loss = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
    labels = -np.ones((1, 4), np.float32)
    boxes = random_boxes(np.random.RandomState(1), (1, 4), size=5)
    got = select(kind, loss, labels, boxes, 2, 0, None, 'paper')
    assert got.tolist() == [[1, 1, 0, 0]]


@pytest.mark.parametrize('kind', KINDS)
def test_nms_drops_a_near_duplicate_of_a_harder_row(kind):
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]]], np.float32)
    loss = np.array([[0.9, 0.8, 0.1]], np.float32)
    labels = -np.ones((1, 3), np.float32)
    assert select(kind, loss, labels, boxes, 2, 0, 0.7, 'paper').tolist() == [[1, 0, 1]]
    assert select(kind, loss, labels, boxes, 2, 0, None, 'paper').tolist() == [[1, 1, 0]]


@pytest.mark.parametrize('kind', KINDS)
def test_ignored_and_nan_rows_are_never_chosen(kind):
    loss = np.array([[9.0, np.nan, 0.2, 0.1, 7.0]], np.float32)
    labels = np.array([[0, 1, -1, 1, -1]], np.float32)
    boxes = random_boxes(np.random.RandomState(2), (1, 5))
    boxes[0, 4, 0] = np.nan
    got = select(kind, loss, labels, boxes, 5, 5, 0.7, 'paper')
    assert got.tolist() == [[0, 0, 1, 1, 0]]


@pytest.mark.parametrize('kind', KINDS)
def test_paper_caps_positives_and_fills_with_the_next_hardest(kind):
    loss = np.array([[0.9, 0.8, 0.7, 0.1]], np.float32)
    labels = np.array([[1, 1, 1, -1]], np.float32)
    boxes = random_boxes(np.random.RandomState(3), (1, 4), size=5)
    assert select(kind, loss, labels, boxes, 3, 1, None, 'paper').tolist() == [[1, 0, 0, 1]]


@pytest.mark.parametrize('kind', KINDS)
def test_paper_and_balanced_differ_when_negatives_are_harder(kind):
    loss = np.array([[0.9, 0.8, 0.2, 0.1]], np.float32)
    labels = np.array([[-1, -1, 1, 1]], np.float32)
    boxes = random_boxes(np.random.RandomState(4), (1, 4), size=5)
    assert select(kind, loss, labels, boxes, 2, 1, None, 'paper').tolist() == [[1, 1, 0, 0]]
    assert select(kind, loss, labels, boxes, 2, 1, None, 'balanced').tolist() == \
        [[1, 0, 1, 0]]


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match='mode'):
        hardest_rows(backend.NUMPY, np.zeros((1, 1)), np.ones((1, 1)), np.zeros((1, 1, 4)),
                     1, 1, None, 'hardest')


@st.composite
def cases(draw):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.RandomState(seed)
    batch, num = draw(st.integers(1, 2)), draw(st.integers(1, 12))
    loss = rng.choice([0.1, 0.5, 1.0, 2.0, np.nan], (batch, num)).astype(np.float32)
    labels = rng.choice([-1, 0, 1], (batch, num)).astype(np.float32)
    boxes = random_boxes(rng, (batch, num))
    num_sample = draw(st.integers(1, num + 2))
    return (loss, labels, boxes, num_sample, draw(st.integers(0, num_sample)),
            draw(st.sampled_from([None, 0.3, 0.7, 1.0])),
            draw(st.sampled_from(['paper', 'balanced'])))


@pytest.mark.parametrize('kind', KINDS)
@settings(max_examples=60, deadline=None)
@given(case=cases())
def test_selection_matches_the_oracle(kind, case):
    np.testing.assert_array_equal(select(kind, *case), oracle(*case))


@settings(max_examples=60, deadline=None)
@given(case=cases())
def test_only_candidates_are_chosen_and_quotas_hold(case):
    loss, labels, boxes, num_sample, max_pos, _, _ = case
    got = select('numpy', *case)
    assert not (got * ((labels == 0) | np.isnan(loss))).any()
    assert (got.sum(axis=1) <= num_sample).all()
    assert ((got * (labels > 0)).sum(axis=1) <= max_pos).all()


# --------------------------------------------------------------------------- the sampler block
def proposals(seed=0, batch=2, num=10, num_box=3):
    rng = np.random.RandomState(seed)
    gt = random_boxes(rng, (batch, num_box))
    near = gt[:, rng.randint(0, num_box, num)] + rng.uniform(-6, 6, (batch, num, 4))
    rois = np.concatenate([near[:, :num // 2], random_boxes(rng, (batch, num - num // 2))],
                          axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, (batch, num, 1)).astype(np.float32)
    hard = (rng.uniform(size=(batch, num_box)) < 0.4).astype(np.float32)
    return rois, scores, gt, hard


def rows(rois, samples):
    """The (box, label) pairs of the non-ignored rows, sorted: an order-free comparison."""
    return sorted((tuple(np.round(r, 3)), s) for r, s in zip(rois.reshape(-1, 4).tolist(),
                                                             samples.reshape(-1).tolist())
                  if s != 0)


def constant_loss(F, rois, labels, matches):
    return F.zeros_like(labels)


@pytest.mark.parametrize('seed', range(4))
def test_candidates_are_the_second_stage_rule_without_a_draw(seed):
    rois, scores, gt, hard = proposals(seed)
    num = rois.shape[1] + gt.shape[1]
    plain = RCNNTargetSampler(2, rois.shape[1], num, pos_ratio=1.0)
    ohem = OHEMTargetSampler(2, rois.shape[1], num, pos_ratio=1.0, nms_thresh=None)
    args = [mx.nd.array(a) for a in (rois, scores, gt, hard)]
    want = plain(*args)
    with scored_by(constant_loss):
        got = ohem(*args)
    assert rows(got[0].asnumpy(), got[1].asnumpy()) == rows(want[0].asnumpy(),
                                                            want[1].asnumpy())


def x1_loss(F, rois, labels, matches):
    """Harder the further left: a loss the test can predict."""
    return -F.reshape(F.slice_axis(rois, axis=-1, begin=0, end=1), (0, -1))


@pytest.mark.parametrize('hybridize', [False, True])
def test_the_scorer_decides_which_rows_are_kept(hybridize):
    rois, scores, gt, _ = proposals(5)
    ohem = OHEMTargetSampler(2, rois.shape[1], 4, pos_ratio=0.5, nms_thresh=None)
    if hybridize:
        ohem.hybridize()
    with scored_by(x1_loss):
        out, samples, matches = ohem(*[mx.nd.array(a) for a in (rois, scores, gt)])
    plain = RCNNTargetSampler(2, rois.shape[1], 13, pos_ratio=1.0)
    every, labels, _ = (a.asnumpy() for a in plain(*[mx.nd.array(a) for a in (rois, scores, gt)]))
    expected = oracle(-every[..., 0], labels, every, 4, 2, None, 'paper')
    assert rows(out.asnumpy(), samples.asnumpy()) == rows(every, labels * expected)
    assert out.shape == (2, 4, 4) and samples.shape == matches.shape == (2, 4)


def test_without_a_scorer_the_sampler_says_what_to_do():
    rois, scores, gt, _ = proposals(6)
    with pytest.raises(ValueError, match='scored_by'):
        OHEMTargetSampler(2, rois.shape[1], 4)(*[mx.nd.array(a) for a in (rois, scores, gt)])


@pytest.mark.parametrize('name, value', [('nms_thresh', 0.0), ('nms_thresh', 1.5),
                                         ('mode', 'hard'), ('top_n', 3)])
def test_bad_settings_are_refused(name, value):
    with pytest.raises(ValueError, match=name):
        OHEMTargetSampler(2, 10, 4, **{name: value})


def test_top_n_scores_only_the_best_proposals():
    rois, scores, gt, _ = proposals(7)
    seen = []

    def spy(F, rois, labels, matches):
        seen.append(rois.shape)
        return F.zeros_like(labels)
    with scored_by(spy):
        OHEMTargetSampler(2, rois.shape[1], 4, top_n=5)(
            *[mx.nd.array(a) for a in (rois, scores, gt)])
    assert seen == [(2, 5 + gt.shape[1], 4)]


def test_head_loss_is_cross_entropy_plus_box_loss_for_positives():
    rois = mx.nd.array([[[0, 0, 10, 10], [0, 0, 10, 10]]])
    gt = mx.nd.array([[[0, 0, 10, 10]]])
    cls_pred = mx.nd.array([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])
    box_pred = mx.nd.zeros((1, 2, 2, 4))
    box_pred[0, 0, 0, 0] = 0.5  # class 0's x offset of row 0, a positive of class 0
    loss = head_loss(mx.nd, cls_pred, box_pred, rois, mx.nd.array([[1, -1]]),
                     mx.nd.array([[0, 0]]), mx.nd.array([[0]]), gt, 2).asnumpy()
    log_p = np.log(np.exp([0.0, 1.0, 0.0]) / np.exp([0.0, 1.0, 0.0]).sum())
    np.testing.assert_allclose(loss, [[-log_p[1] + 0.5 * 0.5 ** 2, -log_p[0]]], rtol=1e-5)
