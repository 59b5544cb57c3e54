"""RCNNTargetSampler: the second-stage rule on the quota op, hard boxes, GluonCV parity."""
from collections import Counter

import mxnet as mx
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from mxnet import gluon

from samplers import HardRule, boxes, force_ndarray_backend
from samplers.rcnn import RCNNTargetSampler
from helpers import refuse_host_copies

gluoncv_target = pytest.importorskip('gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target')


# ----------------------------------------------------------------------------- helpers
def make_case(seed, batch=2, num=40, num_box=4, pad_box=True):
    """(rois, scores, gt_boxes) numpy: proposals around the boxes and elsewhere, some padding.

    Proposals 0-2 are NMS padding (all -1, score -1); proposal 3 is a real box with score -1;
    with ``pad_box`` the last box of image 1 is a padding row (all -1).
    """
    rng = np.random.RandomState(seed)
    xy = rng.uniform(0, 60, (batch, num_box, 2))
    gt = np.concatenate([xy, xy + rng.uniform(10, 40, (batch, num_box, 2))], -1)
    near = np.stack([g[rng.randint(0, num_box, num // 2)] for g in gt])
    near = near + rng.normal(0, 4, near.shape)
    xy = rng.uniform(0, 80, (batch, num - num // 2, 2))
    far = np.concatenate([xy, xy + rng.uniform(2, 30, xy.shape)], -1)
    rois = np.concatenate([near, far], 1)
    rois[..., 2:] = np.maximum(rois[..., 2:], rois[..., :2] + 1)
    scores = rng.uniform(0, 1, (batch, num, 1))
    rois[:, :3], scores[:, :4] = -1, -1
    if pad_box:
        gt[1, -1] = -1
    return rois.astype(np.float32), scores.astype(np.float32), gt.astype(np.float32)


def nd(*arrays):
    return [None if a is None else mx.nd.array(a) for a in arrays]


def call(sampler, *inputs):
    """The sampler's three outputs as numpy."""
    return [o.asnumpy() for o in sampler(*nd(*inputs))]


def expected_labels(rois, scores, gt, hard=None, pos_t=0.5, hard_iou=0.3, hard_iof=None):
    """The documented rule restated one candidate row at a time: (B, N + M) in 1 / -1 / 0.

    A 1 or -1 here marks a candidate; the sampler keeps a quota of them.
    """
    batch, num_box = gt.shape[:2]
    out = []
    for b in range(batch):
        cands = np.concatenate([rois[b], gt[b]])
        score = np.concatenate([scores[b, :, 0], np.sign(gt[b].sum(-1) + 1)])
        iou = boxes.box_iou(cands, gt[b])
        iof = boxes.box_iof(cands, gt[b])
        row = []
        for k in range(len(cands)):
            is_hard = [hard is not None and hard[b, j] > 0 for j in range(num_box)]
            if any(iou[k, j] >= pos_t and not is_hard[j] for j in range(num_box)):
                row.append(1)
                continue
            near_hard = any(is_hard[j] and (iou[k, j] >= hard_iou or (
                hard_iof is not None and iof[k, j] >= hard_iof)) for j in range(num_box))
            row.append(-1 if iou[k].max() < pos_t and score[k] >= 0 and not near_hard else 0)
        out.append(row)
    return np.array(out)


def candidate_rows(rois, gt):
    """(B, N + M, 4): the rows an output may be drawn from."""
    return np.concatenate([rois, gt], 1)


def row_ids(out_rois, cands):
    """Index of each output row among the candidate rows (first exact match)."""
    ids = []
    for b in range(len(out_rois)):
        eq = (out_rois[b][:, None, :] == cands[b][None, :, :]).all(-1)
        assert eq.any(1).all(), 'an output row that is no candidate'
        ids.append(eq.argmax(1))
    return np.array(ids)


# ----------------------------------------------------------------------------- interface
def test_outputs_have_gluoncv_shapes_dtypes_and_max_pos():
    rois, scores, gt = make_case(0)
    sampler = RCNNTargetSampler(2, 40, 16, pos_iou_thresh=0.5, pos_ratio=0.25, max_num_gt=4)
    theirs = gluoncv_target.RCNNTargetSampler(2, 40, 16, 0.5, 0.25, 4)
    assert sampler._max_pos == theirs._max_pos == 4
    ours = sampler(*nd(rois, scores, gt))
    want = theirs(*nd(rois, scores, gt))
    assert [o.shape for o in ours] == [w.shape for w in want] == [(2, 16, 4), (2, 16), (2, 16)]
    assert [o.dtype for o in ours] == [w.dtype for w in want]


@pytest.mark.parametrize('seed', range(3))
def test_rows_are_distinct_candidates_positives_first_within_quota(seed):
    rois, scores, gt = make_case(seed)
    sampler = RCNNTargetSampler(2, 40, 16, pos_ratio=0.25)
    out_rois, samples, matches = call(sampler, rois, scores, gt)
    want = expected_labels(rois, scores, gt)
    ids = row_ids(out_rois, candidate_rows(rois, gt))
    for b in range(2):
        labelled = samples[b] != 0
        assert len(set(ids[b][labelled])) == labelled.sum(), 'a candidate taken twice'
        assert (want[b][ids[b][labelled]] == samples[b][labelled]).all()
        n_pos = min((want[b] == 1).sum(), sampler._max_pos)
        n_neg = min((want[b] == -1).sum(), 16 - n_pos)
        assert samples[b].tolist() == [1] * n_pos + [-1] * n_neg + [0] * (16 - n_pos - n_neg)


def test_positive_matches_its_best_box():
    rois, scores, gt = make_case(1)
    out_rois, samples, matches = call(RCNNTargetSampler(2, 40, 44, pos_ratio=1.0), rois,
                                      scores, gt)
    for b in range(2):
        pos = samples[b] == 1
        iou = boxes.box_iou(out_rois[b][pos], gt[b])
        np.testing.assert_array_equal(matches[b][pos], iou.argmax(1))


# ----------------------------------------------------------------------------- GluonCV
def label_sets(out_rois, samples, matches):
    """Per image: {label: set of (roi, match)} over the distinct rows."""
    out = []
    for b in range(len(samples)):
        rows = {}
        for roi, lab, m in zip(map(tuple, out_rois[b]), samples[b], matches[b]):
            rows.setdefault(int(lab), set()).add(roi + (float(m),))
        out.append(rows)
    return out


@pytest.mark.parametrize('seed', range(4))
def test_same_candidates_as_gluoncv_without_subsampling(seed):
    # num_sample = N + M and room for every positive: all candidates are kept by both.
    # GluonCV may draw a row twice and skip some negatives (see the differs test below), so
    # its positives must equal ours and its negatives be a subset of ours.
    rois, scores, gt = make_case(seed)
    k = rois.shape[1] + gt.shape[1]
    theirs = label_sets(*call(gluoncv_target.RCNNTargetSampler(2, 40, k, 0.5, 0.5, 4),
                              rois, scores, gt))
    ours = label_sets(*call(RCNNTargetSampler(2, 40, k, 0.5, 0.5, 4), rois, scores, gt))
    for b in range(2):
        assert theirs[b].get(1, set()) == ours[b].get(1, set())
        assert theirs[b].get(-1, set()) <= ours[b].get(-1, set())
        labelled = set().union(*[ours[b].get(v, set()) for v in (1, -1)])
        assert not (theirs[b].get(0, set()) & labelled), 'GluonCV ignores a row we label'


def test_differs_from_gluoncv_rows_are_never_repeated():
    # GluonCV draws its negative part from the shuffled rows after position _max_pos, not
    # from those its positive part left, so a candidate can fill two rows.
    rois, scores, gt = make_case(0)
    k = rois.shape[1] + gt.shape[1]
    theirs = call(gluoncv_target.RCNNTargetSampler(2, 40, k, 0.5, 0.5, 4), rois, scores, gt)
    ours = call(RCNNTargetSampler(2, 40, k, 0.5, 0.5, 4), rois, scores, gt)

    def most_repeats(out_rois, samples):  # over the labelled rows (padding rows are alike)
        return max(max(Counter(map(tuple, out_rois[b][samples[b] != 0])).values())
                   for b in range(2))
    assert most_repeats(*theirs[:2]) > 1
    assert most_repeats(*ours[:2]) == 1


def test_differs_from_gluoncv_overflow_positives_become_ignored_rows():
    # Every candidate is positive: GluonCV fills its negative part with more positives.
    gt = np.array([[[0, 0, 10, 10]]], np.float32)
    rois = np.tile(gt, (1, 7, 1))
    scores = np.ones((1, 7, 1), np.float32)
    theirs = call(gluoncv_target.RCNNTargetSampler(1, 7, 8, 0.5, 0.25, 1), rois, scores, gt)
    ours = call(RCNNTargetSampler(1, 7, 8, 0.5, 0.25, 1), rois, scores, gt)
    assert (theirs[1] == 1).sum() == 8
    assert ours[1][0].tolist() == [1, 1] + [0] * 6


@pytest.mark.parametrize('pos_iou_thresh', [1.5, 0.0])
def test_differs_from_gluoncv_bad_arguments_raise_value_error(pos_iou_thresh):
    gluoncv_target.RCNNTargetSampler(1, 10, 8, pos_iou_thresh, -0.25, 0)  # accepted silently
    with pytest.raises(ValueError, match='pos_iou_thresh'):
        RCNNTargetSampler(1, 10, 8, pos_iou_thresh, 0.25, 1)


def test_differs_from_gluoncv_hard_flags_are_a_fourth_input():
    rois, scores, gt, hard = hard_case()
    with pytest.raises(TypeError):
        gluoncv_target.RCNNTargetSampler(1, 5, 7, 0.5, 0.5, 2)(*nd(rois, scores, gt, hard))
    samples = call(RCNNTargetSampler(1, 5, 7, pos_ratio=0.5), rois, scores, gt, hard)[1]
    assert (samples == 1).sum() == 2  # only the normal box's proposal and its own row


# ----------------------------------------------------------------------------- hard boxes
def hard_case():
    """One image, boxes 0 (hard) and 1 (normal); proposals at known overlaps with them."""
    gt = np.array([[[0, 0, 10, 10], [50, 50, 60, 60]]], np.float32)
    rois = np.array([[[0, 0, 10, 9],       # on the hard box: IoU 0.9
                      [0, 0, 10, 4],       # IoU 0.4 with the hard box
                      [0, 0, 10, 2],       # IoU 0.2 with it, IoF 1
                      [50, 50, 60, 59],    # on the normal box
                      [30, 30, 40, 40]]],  # on nothing
                    np.float32)
    return rois, np.ones((1, 5, 1), np.float32), gt, np.array([[1, 0]], np.float32)


def labels_by_row(sampler, rois, scores, gt, hard=None):
    """Label of each candidate row (proposals, then boxes) as the sampler returns it."""
    out_rois, samples, matches = call(sampler, rois, scores, gt, *([] if hard is None
                                                                   else [hard]))
    ids = row_ids(out_rois, candidate_rows(rois, gt))
    labels = {}
    for i, lab, m in zip(ids[0], samples[0], matches[0]):
        labels.setdefault(int(i), (int(lab), int(m)))
    return labels


def test_hard_box_makes_no_positive_and_its_surroundings_are_ignored():
    rois, scores, gt, hard = hard_case()
    labels = labels_by_row(RCNNTargetSampler(1, 5, 7, pos_ratio=0.5), rois, scores, gt, hard)
    # proposals 0-4, then the hard box's own row (5) and the normal box's row (6)
    assert {i: lab for i, (lab, _) in labels.items()} == {0: 0, 1: 0, 2: -1, 3: 1, 4: -1,
                                                          5: 0, 6: 1}


def test_without_flags_the_same_rows_are_positive_and_negative():
    rois, scores, gt, _ = hard_case()
    labels = labels_by_row(RCNNTargetSampler(1, 5, 7, pos_ratio=0.5), rois, scores, gt)
    assert {i: lab for i, (lab, _) in labels.items()} == {0: 1, 1: -1, 2: -1, 3: 1, 4: -1,
                                                          5: 1, 6: 1}


def test_hard_iof_thresh_also_ignores_proposals_inside_a_hard_box():
    rois, scores, gt, hard = hard_case()
    sampler = RCNNTargetSampler(1, 5, 7, pos_ratio=0.5, hard=HardRule(iof_thresh=0.7))
    assert labels_by_row(sampler, rois, scores, gt, hard)[2][0] == 0


def test_hard_iou_thresh_sets_the_ignore_bound():
    rois, scores, gt, hard = hard_case()
    sampler = RCNNTargetSampler(1, 5, 7, pos_ratio=0.5, hard=HardRule(iou_thresh=0.5))
    assert labels_by_row(sampler, rois, scores, gt, hard)[1][0] == -1


def test_positive_matches_point_at_a_normal_box():
    # A proposal overlapping the hard box more than the normal one it is positive for; the
    # hard box's own row overlaps the normal box at 0.8, so it is a positive for it too.
    gt = np.array([[[0, 0, 10, 10], [0, 0, 10, 8]]], np.float32)
    rois = np.array([[[0, 0, 10, 9.5]]], np.float32)
    out_rois, samples, matches = call(RCNNTargetSampler(1, 1, 3, pos_ratio=1.0), rois,
                                      np.ones((1, 1, 1), np.float32), gt,
                                      np.array([[1, 0]], np.float32))
    pos = samples[0] == 1
    assert pos.sum() == 3 and (matches[0][pos] == 1).all()


@pytest.mark.parametrize('seed', range(3))
def test_all_zero_flags_give_exactly_the_unflagged_result(seed):
    rois, scores, gt = make_case(seed)
    sampler = RCNNTargetSampler(2, 40, 16, pos_ratio=0.25)
    mx.random.seed(seed)
    plain = call(sampler, rois, scores, gt)
    mx.random.seed(seed)
    flagged = call(sampler, rois, scores, gt, np.zeros(gt.shape[:2], np.float32))
    for a, b in zip(plain, flagged):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('seed', range(3))
def test_hard_flags_follow_the_rule(seed):
    rois, scores, gt = make_case(seed)
    hard = np.zeros(gt.shape[:2], np.float32)
    hard[:, 0] = 1
    k = rois.shape[1] + gt.shape[1]
    out_rois, samples, _ = call(RCNNTargetSampler(2, 40, k, pos_ratio=0.5,
                                                  hard=HardRule(iof_thresh=0.8)),
                                rois, scores, gt, hard)
    want = expected_labels(rois, scores, gt, hard, hard_iof=0.8)
    ids = row_ids(out_rois, candidate_rows(rois, gt))
    for b in range(2):
        got = np.zeros(k)
        got[ids[b]] = samples[b]
        np.testing.assert_array_equal(got, want[b])


@st.composite
def rcnn_cases(draw):
    """Small images on an integer grid: distinct candidate rows, random flags and settings."""
    batch = draw(st.integers(1, 2))
    num, num_box = draw(st.integers(1, 8)), draw(st.integers(1, 3))

    def corner_boxes(count):
        xy = draw(hnp.arrays(np.float32, (batch, count, 2), elements=st.integers(0, 12)))
        wh = draw(hnp.arrays(np.float32, (batch, count, 2), elements=st.integers(1, 8)))
        return np.concatenate([xy, xy + wh], -1)
    rois, gt = corner_boxes(num), corner_boxes(num_box)
    assume(all(len({tuple(r) for r in np.concatenate([rois[b], gt[b]])}) == num + num_box
               for b in range(batch)))
    scores = draw(hnp.arrays(np.float32, (batch, num, 1), elements=st.sampled_from((-1.0, 0.5))))
    hard = draw(hnp.arrays(np.float32, (batch, num_box), elements=st.sampled_from((0.0, 1.0))))
    kwargs = dict(num_sample=draw(st.integers(1, num + num_box)),
                  pos_iou_thresh=draw(st.sampled_from((0.25, 0.5, 0.75))),
                  pos_ratio=draw(st.sampled_from((0.0, 0.25, 0.5, 1.0))),
                  hard=HardRule(iou_thresh=draw(st.sampled_from((0.125, 0.3, 1.0))),
                                iof_thresh=draw(st.sampled_from((None, 0.5)))))
    return kwargs, rois, scores, gt, hard


@settings(max_examples=40, deadline=None)
@given(rcnn_cases())
def test_property_rows_follow_the_rule(case):
    kwargs, rois, scores, gt, hard = case
    batch, num = rois.shape[:2]
    sampler = RCNNTargetSampler(batch, num, max_num_gt=gt.shape[1], **kwargs)
    out_rois, samples, matches = call(sampler, rois, scores, gt, hard)
    want = expected_labels(rois, scores, gt, hard, kwargs['pos_iou_thresh'],
                           kwargs['hard'].iou_thresh, kwargs['hard'].iof_thresh)
    cands = candidate_rows(rois, gt)
    ids = row_ids(out_rois, cands)
    size = kwargs['num_sample']
    for b in range(batch):
        assert len(set(ids[b])) == size
        labelled = samples[b] != 0
        assert (want[b][ids[b][labelled]] == samples[b][labelled]).all()
        n_pos = min((want[b] == 1).sum(), sampler._max_pos)
        n_neg = min((want[b] == -1).sum(), size - n_pos)
        assert samples[b].tolist() == [1] * n_pos + [-1] * n_neg + [0] * (size - n_pos - n_neg)
        iou = boxes.box_iou(out_rois[b][:n_pos], gt[b])
        np.testing.assert_array_equal(matches[b][:n_pos], np.argmax(iou - 2 * hard[b], axis=1))


# ----------------------------------------------------------------------------- randomness, graphs
def test_mx_random_seed_reproduces_a_call():
    rois, scores, gt = make_case(0, num=200)
    sampler = RCNNTargetSampler(2, 200, 16, pos_ratio=0.25)
    runs = []
    for _ in range(2):
        mx.random.seed(7)
        runs.append(call(sampler, rois, scores, gt))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    mx.random.seed(8)
    assert not np.array_equal(call(sampler, rois, scores, gt)[0], runs[0][0])


@pytest.mark.parametrize('with_hard', [False, True])
def test_hybridized_equals_imperative_under_same_seed(with_hard):
    rois, scores, gt = make_case(2, num=100)
    inputs = [rois, scores, gt] + ([np.eye(2, 4, dtype=np.float32)] if with_hard else [])
    sampler = RCNNTargetSampler(2, 100, 32, pos_ratio=0.25)
    mx.random.seed(3)
    want = call(sampler, *inputs)
    sampler.hybridize()
    mx.random.seed(3)
    got = call(sampler, *inputs)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_works_inside_a_hybridized_parent():
    class Head(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            self.sampler = RCNNTargetSampler(2, 40, 16)

        def hybrid_forward(self, F, rois, scores, gt, hard):
            out_rois, samples, matches = self.sampler(rois * 1, scores, gt, hard)
            return F.sum(out_rois, axis=-1), samples, matches

    rois, scores, gt = make_case(0)
    net = Head()
    net.hybridize()
    hard = np.zeros(gt.shape[:2], np.float32)
    mx.random.seed(1)
    area, samples, matches = call(net, rois, scores, gt, hard)
    mx.random.seed(1)
    out_rois, want, _ = call(RCNNTargetSampler(2, 40, 16), rois, scores, gt, hard)
    np.testing.assert_array_equal(samples, want)
    np.testing.assert_allclose(area, out_rois.sum(-1), rtol=1e-6)


def test_hybridized_device_path_reads_nothing_back_to_the_host_and_equals_the_cpu_path(
        monkeypatch):
    # The imperative sampler is one case of tests/test_reliability.py; this is its graph.
    rois, scores, gt = make_case(0)
    inputs = nd(rois, scores, gt, np.eye(2, 4, dtype=np.float32))
    sampler = RCNNTargetSampler(2, 40, 16, hard=HardRule(iof_thresh=0.5))
    sampler.hybridize()
    mx.random.seed(5)
    want = [o.asnumpy() for o in sampler(*inputs)]  # numpy backend in the op, same keys
    refuse_host_copies(monkeypatch)
    mx.random.seed(5)
    with force_ndarray_backend():
        out = sampler(*inputs)
    mx.nd.waitall()
    monkeypatch.undo()
    for a, b in zip(want, out):
        np.testing.assert_array_equal(a, b.asnumpy())


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('kwargs, name', [
    (dict(num_image=0), 'num_image'),
    (dict(num_proposal=1.5), 'num_proposal'),
    (dict(num_sample=0), 'num_sample'),
    (dict(pos_iou_thresh=1.5), 'pos_iou_thresh'),
    (dict(pos_iou_thresh=0.0), 'pos_iou_thresh'),
    (dict(pos_ratio=-0.25), 'pos_ratio'),
    (dict(max_num_gt=0), 'max_num_gt'),
    # The hard-box options: HardRule's fields, checked as the HardRule is built.
    (dict(hard=dict(iou_thresh=0.0)), 'iou_thresh'),
    (dict(hard=dict(iof_thresh=1.5)), 'iof_thresh'),
    (dict(hard=dict(crowd_iof_thresh=0.0)), 'crowd_iof_thresh'),
    # A field the second stage does not use (its hard flags come from the transforms).
    (dict(hard=dict(min_size=4.0)), 'min_size'),
])
def test_bad_argument_raises_value_error_naming_it(kwargs, name):
    args = dict(num_image=1, num_proposal=10, num_sample=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=r'\b' + name):
        if 'hard' in args:
            args['hard'] = HardRule(**args['hard'])
        RCNNTargetSampler(**args)


@pytest.mark.parametrize('change, match', [
    (lambda r, s, g, h: (r[:1], s[:1], g[:1], h[:1]), 'num_image'),
    (lambda r, s, g, h: (r[..., :3], s, g, h), 'rois'),
    (lambda r, s, g, h: (r, s[:, :5], g, h), 'scores'),
    (lambda r, s, g, h: (r, s, g[:, :0], h[:, :0]), 'gt_boxes'),
    (lambda r, s, g, h: (r, s, g, h[:, :2]), 'hard'),
    (lambda r, s, g, h: (r[:, :5], s[:, :5], g, h), 'num_sample'),
])
def test_bad_shapes_raise_value_error_naming_the_argument(change, match):
    rois, scores, gt = make_case(0)
    inputs = change(rois, scores, gt, np.zeros(gt.shape[:2], np.float32))
    with pytest.raises(ValueError, match=match):
        RCNNTargetSampler(2, 40, 16)(*nd(*inputs))


def test_differs_from_gluoncv_rows_come_positives_first_not_by_area():
    rois, scores, gt = make_case(3)
    theirs = call(gluoncv_target.RCNNTargetSampler(2, 40, 16, 0.5, 0.25, 4), rois, scores, gt)
    ours = call(RCNNTargetSampler(2, 40, 16, 0.5, 0.25, 4), rois, scores, gt)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    assert (np.diff(area(theirs[0]), axis=1) >= 0).all()
    rank = {1: 0, -1: 1, 0: 2}  # positives, negatives, ignored filler
    for samples in ours[1]:
        assert samples.tolist() == sorted(samples.tolist(), key=lambda v: rank[int(v)])
        assert (samples == 1).any() and (samples == -1).any()


def test_drops_into_a_hybridized_model_zoo_faster_rcnn_training_forward():
    from mxnet import autograd
    from gluoncv import model_zoo
    net = model_zoo.get_model('faster_rcnn_resnet50_v1b_voc', pretrained=False,
                              pretrained_base=False)
    net.initialize()
    theirs = net.sampler
    with pytest.raises(TypeError, match='Changing attribute type'):
        net.sampler = RCNNTargetSampler(1, 10, 8)
    del net.sampler  # Gluon refuses a change of the attribute's type
    net.sampler = RCNNTargetSampler(theirs._num_image, theirs._num_proposal,
                                    theirs._num_sample, theirs._pos_iou_thresh,
                                    theirs._max_pos / theirs._num_sample, theirs._max_num_gt)
    assert net.sampler._max_pos == theirs._max_pos
    net.hybridize()
    image = mx.nd.random.uniform(shape=(1, 3, 256, 256))
    gt = mx.nd.array([[[10, 10, 100, 120], [120, 40, 250, 200]]])
    with autograd.record():
        out = net(image, gt, mx.nd.array([[[3], [7]]]))
    samples = out[3].asnumpy()
    assert samples.shape == (1, theirs._num_sample)
    assert 0 < (samples == 1).sum() <= theirs._max_pos and (samples == -1).any()
    assert all(np.isfinite(o.asnumpy()).all() for o in out)


def test_hard_flags_other_than_zero_or_one_raise_value_error():
    rois, scores, gt = make_case(0)
    hard = np.zeros(gt.shape[:2], np.float32)
    hard[0, 0] = 0.5
    with pytest.raises(ValueError, match='hard'):
        RCNNTargetSampler(2, 40, 16)(*nd(rois, scores, gt, hard))


# ----------------------------------------------------------------------------- dtypes, odd input
def run(sampler, inputs, dtype, force_nd):
    """The sampler's outputs for ``inputs`` (numpy) as NDArrays of ``dtype``."""
    arrays = [None if a is None else mx.nd.array(a, dtype=dtype) for a in inputs]
    if not force_nd:
        return sampler(*arrays)
    with force_ndarray_backend():
        out = sampler(*arrays)
        mx.nd.waitall()
    return out


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('force_nd', [False, True])
@pytest.mark.parametrize('with_hard', [False, True])
@pytest.mark.parametrize('dtype', ['float16', 'float32', 'float64'])
def test_every_float_dtype_works_with_and_without_hard_flags(dtype, with_hard, force_nd,
                                                             hybridize):
    rois, scores, gt, hard = hard_case()
    sampler = RCNNTargetSampler(1, 5, 7, pos_ratio=0.5)
    if hybridize:
        sampler.hybridize()
    out = run(sampler, [rois, scores, gt, hard if with_hard else None], dtype, force_nd)
    assert [o.dtype for o in out] == [np.dtype(dtype)] * 3
    out_rois, samples, _ = (o.asnumpy().astype(np.float32) for o in out)
    ids = row_ids(out_rois, candidate_rows(rois, gt))
    got = dict(zip(ids[0].tolist(), samples[0].tolist()))
    want = {0: 0, 1: 0, 2: -1, 3: 1, 4: -1, 5: 0, 6: 1} if with_hard else \
        {0: 1, 1: -1, 2: -1, 3: 1, 4: -1, 5: 1, 6: 1}
    assert got == want


@pytest.mark.parametrize('force_nd', [False, True])
def test_a_proposal_with_any_non_finite_coordinate_is_ignored(force_nd):
    nan, inf = np.nan, np.inf
    rois = np.array([[[nan, 10, 20, 30], [inf, 5, 20, 20], [nan, 0, 10, 10],
                      [0, 0, -inf, 10], [50, 50, 60, 60]]], np.float32)
    gt = np.array([[[0, 0, 10, 10], [20, 20, 30, 30]]], np.float32)
    out_rois, samples, _ = (o.asnumpy() for o in run(
        RCNNTargetSampler(1, 5, 7), [rois, np.ones((1, 5, 1)), gt], 'float32', force_nd))
    finite = np.isfinite(out_rois[0]).all(-1)
    assert finite.sum() == 3 and (samples[0][~finite] == 0).all()
    assert samples[0][finite].tolist() == [1, 1, -1]


def test_hybridized_device_path_ignores_non_finite_proposals_without_host_copies(
        monkeypatch):
    rois, scores, gt = make_case(0)
    rois[0, 10, 0], rois[1, 20, 3] = np.nan, np.inf
    sampler = RCNNTargetSampler(2, 40, 40 + 4)
    sampler.hybridize()
    inputs = nd(rois, scores, gt, np.eye(2, 4, dtype=np.float32))
    refuse_host_copies(monkeypatch)
    with force_ndarray_backend():
        out_rois, samples, _ = sampler(*inputs)
        mx.nd.waitall()
    monkeypatch.undo()
    bad = ~np.isfinite(out_rois.asnumpy()).all(-1)
    assert bad.sum() == 2 and (samples.asnumpy()[bad] == 0).all()


@pytest.mark.parametrize('kind', ['numpy', 'list'])
def test_hard_flags_from_the_host_equal_ndarray_flags(kind):
    rois, scores, gt, hard = hard_case()
    sampler = RCNNTargetSampler(1, 5, 7, pos_ratio=0.5)
    mx.random.seed(2)
    want = call(sampler, rois, scores, gt, hard)
    host = hard.astype(np.int64) if kind == 'numpy' else hard.tolist()
    mx.random.seed(2)
    got = [o.asnumpy() for o in sampler(*nd(rois, scores, gt), host)]
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_hard_flags_of_another_type_raise_value_error_naming_hard():
    rois, scores, gt, _ = hard_case()
    with pytest.raises(ValueError, match='hard'):
        RCNNTargetSampler(1, 5, 7)(*nd(rois, scores, gt), 'difficult')


@pytest.mark.parametrize('which, dtype', [('scores', 'int32'), ('gt_boxes', 'float64'),
                                          ('gt_boxes', 'int32'), ('scores', 'float16')])
def test_scores_and_gt_boxes_are_cast_to_the_dtype_of_rois(which, dtype):
    rois, scores, gt, hard = hard_case()
    sampler = RCNNTargetSampler(1, 5, 7, pos_ratio=0.5)
    mx.random.seed(4)
    want = call(sampler, rois, scores, gt, hard)
    inputs = dict(zip(['rois', 'scores', 'gt_boxes', 'hard'], nd(rois, scores, gt, hard)))
    inputs[which] = inputs[which].astype(dtype)
    mx.random.seed(4)
    got = sampler(**inputs)
    assert [o.dtype for o in got] == [np.float32] * 3
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b.asnumpy())


@pytest.mark.parametrize('which, value, name', [
    ('rois', lambda x: x.astype('int32'), 'rois'),
    ('scores', lambda x: x.asnumpy(), 'scores'),
    ('gt_boxes', lambda x: x.asnumpy().tolist(), 'gt_boxes'),
])
def test_inputs_of_the_wrong_kind_or_dtype_raise_value_error_naming_them(which, value, name):
    rois, scores, gt, _ = hard_case()
    inputs = dict(zip(['rois', 'scores', 'gt_boxes'], nd(rois, scores, gt)))
    inputs[which] = value(inputs[which])
    with pytest.raises(ValueError, match=name):
        RCNNTargetSampler(1, 5, 7)(**inputs)
