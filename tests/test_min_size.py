"""Objects too small to see: ``HardRule(min_size=)`` on the generators, ``hard_min_size`` on the
transforms and install()."""
import pickle
import random

import mxnet as mx
import numpy as np
import pytest

from samplers import HardRule, RPNTargetGenerator, SSDTargetGenerator, force_ndarray_backend
from samplers.boxes import too_small
from helpers import grid_anchors, refuse_host_copies

gluoncv = pytest.importorskip('gluoncv')
from gluoncv.data.transforms.presets import rcnn as rcnn_presets  # noqa: E402
from gluoncv.data.transforms.presets import ssd as ssd_presets  # noqa: E402
from gluoncv.model_zoo import get_model  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402

# GluonCV's networks warn while tracing their features symbol; not ours to fix.
pytestmark = [pytest.mark.filterwarnings('ignore:Cannot decide type:UserWarning'),
              pytest.mark.usefixtures('uninstall_gluoncv')]
ALL = 10 ** 7  # num_sample above any anchor count: no subsampling, no randomness
BAD_SIZES = [0, -1, float('inf'), float('nan'), True, '6', [6]]


# ----------------------------------------------------------------------------- the rule
@pytest.mark.parametrize('side, small', [(5.9, True), (6.0, False), (6.1, False)])
def test_too_small_is_the_shorter_side_strictly_below(side, small):
    boxes = np.array([[10, 10, 10 + side, 40], [10, 10, 40, 10 + side]], np.float32)
    assert too_small(boxes, 6.0).tolist() == [small, small]
    assert too_small(mx.nd.array(boxes), 6.0).asnumpy().tolist() == [float(small)] * 2


def test_too_small_is_false_for_nan_sides():
    assert not too_small(np.array([[0, 0, np.nan, 5]], np.float32), 6.0).any()


# ----------------------------------------------------------------------------- RPN generator
BIG = [8., 8., 40., 40.]    # 32 x 32: on the 32-pixel anchors
SMALL = [40., 16., 48., 32.]  # 8 x 16: its shorter side is 8


def rpn(gt, hard=None, nd=False, min_size=None, **kwargs):
    """The RPN targets of ``gt`` on the grid anchors; ``hard`` the flags, ``min_size`` the
    generator's HardRule.min_size."""
    gen = RPNTargetGenerator(num_sample=ALL, neg_iou_thresh=0.1,
                             hard=HardRule(min_size=min_size), **kwargs)
    anchors = grid_anchors()
    gt = np.array(gt, np.float32)
    if nd:
        anchors, gt = mx.nd.array(anchors), mx.nd.array(gt)
        hard = None if hard is None else mx.nd.array(hard)
    out = gen(gt, anchors, 64, 64, hard)
    return [o.asnumpy() if isinstance(o, mx.nd.NDArray) else o for o in out]


def host(x):
    return x.asnumpy() if isinstance(x, mx.nd.NDArray) else x


def assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(host(x), host(y))


@pytest.mark.parametrize('size, hard', [(8.5, True), (8.0, False), (7.5, False)])
def test_rpn_box_below_the_size_is_hard_at_or_above_it_is_not(size, hard):
    got = rpn([BIG, SMALL], min_size=size)
    assert_same(got, rpn([BIG, SMALL], [0, int(hard)]))
    assert (got[0] > 0).any()  # the big box keeps its positives


def test_rpn_small_box_changes_the_targets():
    # Not a vacuous rule: flagged, the small box's anchors are ignored instead of negative.
    assert not np.array_equal(rpn([BIG, SMALL])[0], rpn([BIG, SMALL], [0, 1])[0])


def test_rpn_size_rule_or_the_hard_column():
    want = rpn([BIG, SMALL], [1, 1])
    assert_same(rpn([BIG, SMALL], [1, 0], min_size=10), want)
    assert_same(rpn([BIG, SMALL], [1, 1], min_size=10), want)
    assert_same(rpn([BIG, SMALL], [1, 0], min_size=5), rpn([BIG, SMALL], [1, 0]))


def test_rpn_off_by_default_and_a_size_below_every_box_change_nothing_draws_included():
    anchors = grid_anchors()
    gt = np.array([BIG, SMALL, [20., 30., 60., 62.]], np.float32)
    outs = []
    for kwargs in ({}, dict(hard=HardRule(min_size=None)), dict(hard=HardRule(min_size=2))):
        mx.random.seed(3)
        np.random.seed(3)
        outs.append(RPNTargetGenerator(num_sample=16, **kwargs)(gt, anchors, 64, 64))
    assert_same(outs[0], outs[1])
    assert_same(outs[0], outs[2])


def test_rpn_device_path_applies_the_rule_without_host_copies(monkeypatch):
    want = rpn([BIG, SMALL, [-1, -1, -1, -1]], [0, 0, -1], min_size=10)
    gen = RPNTargetGenerator(num_sample=ALL, neg_iou_thresh=0.1, hard=HardRule(min_size=10))
    anchors = mx.nd.array(grid_anchors())
    gt = mx.nd.array([BIG, SMALL, [-1, -1, -1, -1]])
    hard = mx.nd.array([0, 0, -1])
    refuse_host_copies(monkeypatch)
    with force_ndarray_backend():
        out = gen(gt, anchors, 64, 64, hard)
        mx.nd.waitall()
    monkeypatch.undo()
    assert all(o.context == anchors.context for o in out)
    assert_same([o.asnumpy() for o in out], want)
    assert_same(want, rpn([BIG, SMALL], [0, 1]))


def test_rpn_device_path_with_no_flags_given(no_host_copies):
    gen = RPNTargetGenerator(num_sample=ALL, hard=HardRule(min_size=10))
    with force_ndarray_backend():
        out = gen(mx.nd.array([BIG, SMALL]), mx.nd.array(grid_anchors()), 64, 64)
        mx.nd.waitall()
    assert out[0].shape == (len(grid_anchors()),)


@pytest.mark.parametrize('bad', BAD_SIZES)
def test_bad_sizes_raise_value_error_naming_hard_min_size(bad):
    # The generators take the size in their HardRule, which names its field.
    for make in (lambda: RPNTargetGenerator(hard=HardRule(min_size=bad)),
                 lambda: SSDTargetGenerator(hard=HardRule(min_size=bad))):
        with pytest.raises(ValueError, match='^min_size must be a positive finite number '
                                             'or None'):
            make()
    for make in (lambda: sg.FasterRCNNTrainTransform(hard_min_size=bad),
                 lambda: sg.MaskRCNNTrainTransform(hard_min_size=bad),
                 lambda: sg.SSDTrainTransform(64, 64, hard_min_size=bad)):
        with pytest.raises(ValueError, match='hard_min_size must be a positive finite number '
                                             'or None'):
            make()


@pytest.mark.parametrize('bad', BAD_SIZES)
def test_install_rejects_a_bad_size_and_patches_nothing(bad):
    with pytest.raises(ValueError, match='hard_min_size'):
        sg.install(hard_min_size=bad)
    assert not sg.is_installed()


# ----------------------------------------------------------------------------- SSD generator
def ssd_case():
    """Center anchors (pixels) on a 40 x 40 box and on a 6 x 30 box; ids 2 and 5."""
    anc = np.array([[[30, 30, 40, 40], [83, 45, 6, 30], [150, 150, 20, 20]]], np.float32)
    gt = np.array([[[10, 10, 50, 50], [80, 30, 86, 60]]], np.float32)
    ids = np.array([[[2], [5]]], np.float32)
    return anc, gt, ids


@pytest.mark.parametrize('nd', [False, True])
@pytest.mark.parametrize('size, hard', [(6.5, True), (6.0, False), (5.5, False)])
def test_ssd_box_below_the_size_is_hard(size, hard, nd):
    anc, gt, ids = ssd_case()
    if nd:
        anc, gt, ids = (mx.nd.array(a) for a in (anc, gt, ids))

    got = SSDTargetGenerator(negative_mining_ratio=-1, hard=HardRule(min_size=size))
    flagged = SSDTargetGenerator(negative_mining_ratio=-1)
    with force_ndarray_backend():
        a = got(anc, None, gt, ids)
        b = flagged(anc, None, gt, ids, hard=np.array([0, int(hard)]))
    assert_same(a, b)
    assert host(a[0])[0, 1] == (-1 if hard else 6)


def test_ssd_size_rule_or_the_flags_and_off_by_default():
    anc, gt, ids = ssd_case()
    gen = SSDTargetGenerator(negative_mining_ratio=-1)
    both = gen(anc, None, gt, ids, hard=np.array([1, 1]))
    ored = SSDTargetGenerator(negative_mining_ratio=-1, hard=HardRule(min_size=10))(
        anc, None, gt, ids, hard=np.array([1, 0]))
    assert_same(ored, both)
    default = SSDTargetGenerator(negative_mining_ratio=-1, hard=HardRule(min_size=None))(
        anc, None, gt, ids)
    assert_same(default, gen(anc, None, gt, ids))


def test_ssd_device_path_without_host_copies(monkeypatch):
    anc, gt, ids = (mx.nd.array(a) for a in ssd_case())
    refuse_host_copies(monkeypatch)
    with force_ndarray_backend():
        cls_t, _, _ = SSDTargetGenerator(negative_mining_ratio=-1,
                                         hard=HardRule(min_size=6.5))(
            anc, None, gt, ids, hard=mx.nd.array([0, 0]))
        mx.nd.waitall()
    monkeypatch.undo()
    assert cls_t.context == anc.context
    np.testing.assert_array_equal(cls_t.asnumpy(), [[3, -1, 0]])


def test_ssd_generator_pickles_and_shows_its_size():
    gen = SSDTargetGenerator(hard=HardRule(min_size=6))
    assert ('hard=HardRule(iou_thresh=None, iof_thresh=None, crowd_iof_thresh=0.7, '
            'min_size=6.0)') in repr(gen)
    copy = pickle.loads(pickle.dumps(gen))
    assert copy.hard_min_size == 6.0 and copy.hard == HardRule(min_size=6.0)
    assert repr(copy) == repr(gen)


# ----------------------------------------------------------------------------- R-CNN transforms
SHORT = 256
# A 512 x 640 image resized to short side 256: every box is scaled by 0.5.
IMAGE = mx.nd.array(np.random.RandomState(0).randint(0, 255, (512, 640, 3)), dtype='uint8')
# 256 x 300 before the resize, 128 x 150 after: its shorter side is 128.
OBJECT = [128., 128., 428., 384.]


@pytest.fixture(scope='module')
def c4_net():
    net = get_model('faster_rcnn_resnet50_v1b_voc', pretrained=False, pretrained_base=False)
    net.initialize()
    return net


def faster(cls, net, **kwargs):
    return cls(SHORT, net.max_size, net, ashape=net.ashape, flip_p=0.0, num_sample=ALL,
               **kwargs)


def apply(transform, lab, seed=0):
    np.random.seed(seed)
    mx.random.seed(seed)
    return transform(IMAGE, lab)


def targets(outputs):
    return np.concatenate([c.ravel() for c in outputs[2]])


@pytest.mark.parametrize('size, hard', [(128.5, True), (128, False), (127.5, False)])
def test_faster_rcnn_size_is_read_after_the_resize(c4_net, size, hard):
    lab = np.array([OBJECT + [3, 0]], np.float32)
    out = apply(faster(sg.FasterRCNNTrainTransform, c4_net, hard_min_size=size), lab)
    flagged = apply(faster(sg.FasterRCNNTrainTransform, c4_net),
                    np.array([OBJECT + [3, int(hard)]], np.float32))
    np.testing.assert_array_equal(targets(out), targets(flagged))
    assert (targets(out) > 0).any() != hard
    assert out[1][0, 5] == int(hard)  # the label the second stage reads


def test_faster_rcnn_ten_pixel_box_halved_is_hard_at_six(c4_net):
    lab = np.array([OBJECT + [3, 0], [20., 20., 30., 40., 1, 0]], np.float32)
    out = apply(faster(sg.FasterRCNNTrainTransform, c4_net, hard_min_size=6), lab)
    np.testing.assert_array_equal(out[1][:, 5], [0, 1])
    np.testing.assert_array_equal(out[1][1, :4], [10, 10, 15, 20])


def test_faster_rcnn_appends_the_hard_column_to_five_column_labels(c4_net):
    lab = np.array([OBJECT + [3], [20., 20., 30., 40., 1]], np.float32)
    out = apply(faster(sg.FasterRCNNTrainTransform, c4_net, hard_min_size=6), lab)
    assert out[1].shape == (2, 6) and out[1].dtype == np.float32
    np.testing.assert_array_equal(out[1][:, 5], [0, 1])


def test_faster_rcnn_size_or_the_column_keeps_other_flag_values(c4_net):
    lab = np.array([OBJECT + [3, 1], [20., 20., 30., 40., 1, 0]], np.float32)
    out = apply(faster(sg.FasterRCNNTrainTransform, c4_net, hard_min_size=6), lab)
    np.testing.assert_array_equal(out[1][:, 5], [1, 1])
    assert not (targets(out) > 0).any()


def test_faster_rcnn_hard_column_none_marks_nothing_in_the_label(c4_net):
    lab = np.array([OBJECT + [3]], np.float32)
    out = apply(faster(sg.FasterRCNNTrainTransform, c4_net, hard_min_size=200,
                       hard_column=None), lab)
    assert out[1].shape == (1, 5)
    assert not (targets(out) > 0).any()  # the RPN targets still see the size rule


def test_faster_rcnn_off_by_default_gives_identical_outputs(c4_net):
    lab = np.array([OBJECT + [3, 0], [20., 20., 30., 40., 1, 0]], np.float32)
    a = apply(faster(sg.FasterRCNNTrainTransform, c4_net), lab)
    b = apply(faster(sg.FasterRCNNTrainTransform, c4_net, hard_min_size=None), lab)
    c = apply(faster(rcnn_presets.FasterRCNNDefaultTrainTransform, c4_net), lab[:, :5])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(targets(a), targets(b))
    np.testing.assert_array_equal(targets(a), targets(c))


def test_differs_from_gluoncv_small_boxes_are_taught_there(c4_net):
    # GluonCV has no size rule: the object, 128 pixels after the resize, makes positives.
    lab = np.array([OBJECT + [3, 0]], np.float32)
    theirs = apply(faster(rcnn_presets.FasterRCNNDefaultTrainTransform, c4_net), lab)
    ours = apply(faster(sg.FasterRCNNTrainTransform, c4_net, hard_min_size=128.5), lab)
    assert (targets(theirs) > 0).any() and not (targets(ours) > 0).any()


def test_gluoncv_body_path_applies_the_rule_too(c4_net):
    # A float image takes GluonCV's own body; the generator and the label still see the rule.
    lab = np.array([OBJECT + [3, 0]], np.float32)
    img = IMAGE.astype('float32')
    transform = faster(sg.FasterRCNNTrainTransform, c4_net, hard_min_size=128.5)
    np.random.seed(0)
    out = transform(img, lab)
    assert out[1][0, 5] == 1 and not (targets(out) > 0).any()


def test_install_gives_gluoncv_transforms_the_size_and_pickles_it(c4_net):
    lab = np.array([OBJECT + [3, 0]], np.float32)
    want = apply(faster(sg.FasterRCNNTrainTransform, c4_net, hard_min_size=128.5), lab)
    sg.install(hard_min_size=128.5)
    transform = faster(rcnn_presets.FasterRCNNDefaultTrainTransform, c4_net)
    got = apply(transform, lab)
    copy = pickle.loads(pickle.dumps(transform))
    sg.uninstall()
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(targets(got), targets(want))
    assert type(copy) is sg.FasterRCNNTrainTransform  # what a spawned worker gets
    np.testing.assert_array_equal(targets(apply(copy, lab)), targets(want))


def test_mask_rcnn_transform_applies_the_rule():
    from helpers import rectangle_mask
    from gluoncv.data.transforms import mask as tmask
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tmask, 'to_mask', rectangle_mask)
        net = get_model('mask_rcnn_resnet18_v1b_coco', pretrained=False, pretrained_base=False)
        net.initialize()
        lab = np.array([OBJECT + [3]], np.float32)
        segm = [[np.array([[128, 128], [428, 128], [428, 384], [128, 384]], np.float64)]]
        outs = []
        for size in (None, 128.5):
            transform = sg.MaskRCNNTrainTransform(SHORT, net.max_size, net, ashape=net.ashape,
                                                  num_sample=ALL, hard_min_size=size)
            np.random.seed(0)
            outs.append(transform(IMAGE, lab, segm))
    plain, small = outs
    assert (targets(plain) > 0).any() and not (targets(small) > 0).any()
    assert plain[1].shape == (1, 5) and small[1][0, 5] == 1
    assert len(small) == 6


# ----------------------------------------------------------------------------- SSD transform
SSD_SIZE = 256
SSD_IMAGE = mx.nd.array(np.random.RandomState(1).randint(0, 255, (200, 300, 3)), dtype='uint8')
# Column 5 the hard flag, column 6 the row's index (kept by GluonCV's augmentation).
SSD_LABEL = np.array([[10, 20, 100, 150, 3, 0, 0], [120, 30, 280, 190, 7, 0, 1],
                      [50, 50, 90, 120, 1, 0, 2]], np.float32)


@pytest.fixture(scope='module')
def ssd_anchors():
    net = get_model('ssd_512_mobilenet1.0_voc', pretrained_base=False)
    net.initialize()
    with mx.autograd.train_mode():
        _, _, anc = net(mx.nd.zeros((1, 3, SSD_SIZE, SSD_SIZE)))
    return anc


def ssd_apply(transform, lab, seed):
    np.random.seed(seed)
    mx.random.seed(seed)
    random.seed(seed)
    return transform(SSD_IMAGE, lab)


@pytest.mark.parametrize('seed', [3, 4])
def test_ssd_transform_reads_the_size_after_augmentation_and_resize(ssd_anchors, seed):
    _, augmented = ssd_apply(sg.SSDTrainTransform(SSD_SIZE, SSD_SIZE), SSD_LABEL, seed)
    sides = np.minimum(augmented[:, 2] - augmented[:, 0], augmented[:, 3] - augmented[:, 1])
    size = float(np.median(sides)) + 0.25  # some rows below, some above
    flagged = SSD_LABEL.copy()
    flagged[augmented[sides < size, 6].astype(int), 5] = 1
    assert 0 < flagged[:, 5].sum() < len(augmented)
    got = ssd_apply(sg.SSDTrainTransform(SSD_SIZE, SSD_SIZE, ssd_anchors, hard_min_size=size),
                    SSD_LABEL, seed)
    want = ssd_apply(sg.SSDTrainTransform(SSD_SIZE, SSD_SIZE, ssd_anchors), flagged, seed)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.asnumpy(), w.asnumpy())


def test_install_gives_gluoncv_ssd_transforms_the_size_and_pickles_it(ssd_anchors):
    want = ssd_apply(sg.SSDTrainTransform(SSD_SIZE, SSD_SIZE, ssd_anchors, hard_min_size=60),
                     SSD_LABEL, 3)
    sg.install(hard_min_size=60)
    transform = ssd_presets.SSDDefaultTrainTransform(SSD_SIZE, SSD_SIZE, ssd_anchors)
    got = ssd_apply(transform, SSD_LABEL, 3)
    copy = pickle.loads(pickle.dumps(transform))
    sg.uninstall()
    assert type(copy) is sg.SSDTrainTransform
    for out in (got, ssd_apply(copy, SSD_LABEL, 3)):
        for g, w in zip(out, want):
            np.testing.assert_array_equal(g.asnumpy(), w.asnumpy())
    plain = ssd_apply(sg.SSDTrainTransform(SSD_SIZE, SSD_SIZE, ssd_anchors), SSD_LABEL, 3)
    assert not np.array_equal(plain[1].asnumpy(), want[1].asnumpy())
