"""Second-stage OHEM in GluonCV's Faster and Mask R-CNN training: ``install(rcnn_ohem=True)``.

Small networks (tools.soak's five-convolution Faster R-CNN; the zoo's Mask R-CNN ResNet-18
with few samples) on one synthetic image, through GluonCV's ForwardBackwardTask or a direct
training forward.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

gluoncv = pytest.importorskip('gluoncv')
from gluoncv.data.batchify import FasterRCNNTrainBatchify, MaskRCNNTrainBatchify  # noqa: E402
from gluoncv.data.transforms import mask as tmask  # noqa: E402
from gluoncv.data.transforms.presets import rcnn as presets  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402
from samplers import force_ndarray_backend  # noqa: E402
from tools.soak import tiny_faster_rcnn  # noqa: E402
from helpers import refuse_host_copies, rectangle_mask, training_task, zoo_net  # noqa: E402

pytestmark = [pytest.mark.filterwarnings('ignore::UserWarning'),
              pytest.mark.usefixtures('uninstall_gluoncv')]
HEIGHT, WIDTH = 96, 128
# (x1, y1, x2, y2, class, difficult)
MIXED = np.array([[10, 10, 60, 60, 0, 0], [70, 20, 120, 90, 1, 1], [20, 50, 80, 94, 2, 0]],
                 np.float32)
ALL_HARD = MIXED.copy()
ALL_HARD[:, 5] = 1


def tiny(ohem=True, **options):
    """The tiny Faster R-CNN, built under install(rcnn_ohem=ohem, ...), initialized: the same
    weights each time."""
    sg.install(rcnn_ohem=ohem, **options)
    mx.random.seed(7)
    net = tiny_faster_rcnn(HEIGHT, WIDTH)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, HEIGHT, WIDTH)))  # an inference call: every parameter is set up
    return net


def batch(net, label, mask=False, seed=0, scale=1):
    """One image (``scale`` times HEIGHT x WIDTH, ``label`` scaled with it) through GluonCV's
    training transform and batchify, on the CPU."""
    height, width = HEIGHT * scale, WIDTH * scale
    label = label * np.array([scale] * 4 + [1, 1], np.float32)
    image = mx.nd.array(np.random.RandomState(seed).randint(0, 255, (height, width, 3)),
                        dtype='uint8')
    if mask:
        transform = presets.MaskRCNNDefaultTrainTransform(height, width, net, ashape=net.ashape)
        segm = [[np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)]
                for x1, y1, x2, y2 in label[:, :4]]
        parts = MaskRCNNTrainBatchify(net, 1)([transform(image, label, segm)])
    else:
        transform = presets.FasterRCNNDefaultTrainTransform(
            height, width, net, flip_p=0.0, ashape=net.ashape, multi_stage=net.num_stages > 1)
        parts = FasterRCNNTrainBatchify(net, 1)([transform(image, label)])
    return [(p[0] if isinstance(p, (list, tuple)) else p).as_in_context(mx.cpu())
            for p in parts]


def sampled(net, step):
    """A training forward as the task makes it: ``(rois, samples, matches, cls_pred,
    cls_targets)`` as numpy."""
    label = step[1]
    with autograd.record():
        out = net(step[0], label[:, :, :4], label[:, :, 4:5], label[:, :, 5:6])
    cls_pred, _, rois, samples, matches = out[:5]
    return [o.asnumpy() for o in (rois, samples, matches, cls_pred, out[8])]


def row_loss(cls_pred, cls_target):
    """Each trained row's softmax cross-entropy."""
    logp = cls_pred - np.log(np.exp(cls_pred).sum(-1, keepdims=True))
    keep = cls_target >= 0
    return -np.take_along_axis(logp, np.maximum(cls_target, 0)[..., None].astype(int),
                               -1)[..., 0][keep]


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize('hybridize', [False, True])
def test_faster_rcnn_trains_under_gluoncvs_task(hybridize):
    net = tiny()
    task, trainer = training_task(net)
    if hybridize:
        net.hybridize(static_alloc=True)
    step = batch(net, MIXED)
    for _ in range(2):
        losses = [x.asnumpy() for x in task.forward_backward(step)[:4]]
        trainer.step(1)
        assert all(np.isfinite(x).all() for x in losses)
    rois, samples, matches, _, _ = sampled(net, step)
    assert rois.shape == (1, 16, 4) and samples.shape == matches.shape == (1, 16)
    assert (samples != 0).sum() == 16
    assert not (matches[samples > 0] == 1).any()  # never a positive on the difficult box


@pytest.mark.parametrize('hybridize', [False, True])
def test_on_an_all_hard_image_no_positive_is_trained(hybridize):
    net = tiny()
    task, trainer = training_task(net)
    if hybridize:
        net.hybridize()
    step = batch(net, ALL_HARD)
    losses = [x.asnumpy() for x in task.forward_backward(step)[:4]]
    assert all(np.isfinite(x).all() for x in losses)
    _, samples, _, _, cls_targets = sampled(net, step)
    assert not (samples > 0).any() and not (cls_targets > 0).any()


@pytest.mark.parametrize('hybridize', [False, True])
def test_the_trained_rows_are_harder_than_the_random_draw(hybridize):
    # Hybridized too. Gluon warns that a hybridized child's forward hooks "will not take
    # effect"; the feature hook does fire while the graph is traced, which is when the head
    # is wired in as the scorer, so the cached graph still ranks by loss.
    net = tiny()
    net.hybridize(hybridize)
    ohem = sampled(net, batch(net, MIXED))
    net = tiny(False)  # the same weights and seed, install()'s random draw of as many rows
    net.hybridize(hybridize)
    plain = sampled(net, batch(net, MIXED))
    assert (ohem[4] >= 0).sum() == (plain[4] >= 0).sum() == 16
    assert row_loss(ohem[3], ohem[4]).mean() > row_loss(plain[3], plain[4]).mean()


class Replay(sg.OHEMTargetSampler):
    """A sampler that gives back recorded rows: the network trains exactly those."""

    def __init__(self, like, rows):
        super().__init__(like._num_image, like._num_proposal, like._num_sample)
        self.rows = [mx.nd.array(r) for r in rows]

    def forward(self, *args, **kwargs):
        return tuple(self.rows)


def head_gradients(net, step):
    """Gradients of the second-stage losses for one training forward, per head parameter."""
    label = step[1]
    with autograd.record():
        out = net(step[0], label[:, :, :4], label[:, :, 4:5], label[:, :, 5:6])
        cls_pred, box_pred, cls_targets, box_targets, box_masks = (out[i] for i in
                                                                    (0, 1, 8, 9, 10))
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(cls_pred, cls_targets,
                                                    cls_targets >= 0).sum() + \
            gluon.loss.HuberLoss()(box_pred, box_targets, box_masks).sum()
    loss.backward()
    params = list(net.top_features.collect_params().values()) + \
        list(net.class_predictor.collect_params().values())
    return out, [p.grad().asnumpy().copy() for p in params]


@pytest.mark.parametrize('hybridize', [False, True])
def test_no_gradient_reaches_an_unselected_row(hybridize):
    # The scoring pass runs the head on every candidate; if any of it carried gradient, the
    # head's gradients would differ from those of a network that trains the same rows only.
    net = tiny()
    net.collect_params().setattr('grad_req', 'write')
    if hybridize:
        net.hybridize()
    step = batch(net, MIXED)
    out, ohem = head_gradients(net, step)
    net.hybridize(False)
    net.sampler = Replay(net.sampler, [o.asnumpy() for o in out[2:5]])
    _, replay = head_gradients(net, step)
    for a, b in zip(ohem, replay):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_no_host_read_in_the_networks_path(monkeypatch):
    net = tiny()
    step = batch(net, MIXED)  # the data path reads the host, the network's must not
    label = step[1]
    refuse_host_copies(monkeypatch)  # the no_host_copies fixture, from here on
    with force_ndarray_backend(), autograd.record():
        net(step[0], label[:, :, :4], label[:, :, 4:5], label[:, :, 5:6])


def test_seeds_reproduce_a_run():
    runs = [sampled(tiny(), batch(tiny(), MIXED)) for _ in range(2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- Mask R-CNN
@pytest.fixture(scope='module')
def mask_net():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tmask, 'to_mask', rectangle_mask)
        yield zoo_net('mask_rcnn_resnet18_v1b_coco', 16)


@pytest.mark.parametrize('hybridize', [False, True])
def test_mask_rcnn_trains_the_selected_positives(mask_net, hybridize):
    sg.install(rcnn_ohem=True)
    task, trainer = training_task(mask_net, mask=True)  # gives the network the OHEM sampler
    assert isinstance(mask_net.sampler, sg.OHEMTargetSampler)
    # The zoo RPN's 2000 proposals need the larger image; the transform copies the network's
    # anchor generator, which a hybridized network's cannot be.
    steps = [batch(mask_net, label, mask=True, scale=2) for label in (MIXED, ALL_HARD)]
    mask_net.hybridize(hybridize)
    for step in steps:
        losses = [x.asnumpy() for x in task.forward_backward(step)[:5]]
        trainer.step(1)
        assert all(np.isfinite(x).all() for x in losses)
    assert float(losses[4].sum()) == 0.0  # all hard: no positive, no mask loss
    mask_net.hybridize(False)


# --------------------------------------------------------------------------- install()
@pytest.mark.parametrize('options, name', [
    (dict(rcnn_ohem=1), 'rcnn_ohem'), (dict(rcnn_ohem='True'), 'rcnn_ohem'),
    (dict(rcnn_ohem=True, ohem_nms_thresh=0.0), 'ohem_nms_thresh'),
    (dict(rcnn_ohem=True, ohem_nms_thresh=1.5), 'ohem_nms_thresh'),
    (dict(rcnn_ohem=True, ohem_nms_thresh='0.7'), 'ohem_nms_thresh'),
    (dict(rcnn_ohem=True, ohem_mode='hardest'), 'ohem_mode'),
    (dict(rcnn_ohem=True, ohem_top_n=0), 'ohem_top_n')])
def test_bad_ohem_settings_raise_before_anything_is_patched(options, name):
    with pytest.raises(ValueError, match=name):
        sg.install(**options)
    assert not sg.is_installed()


def test_ohem_combines_with_the_other_options():
    sg.install(rcnn_ohem=True, ohem_nms_thresh=None, ohem_mode='balanced', ohem_top_n=20,
               rcnn_hard_iou_thresh=0.5, hard_min_size=4.0, coco_crowd=False)
    net = tiny_faster_rcnn(HEIGHT, WIDTH)
    inner = net.sampler.sampler
    assert (inner._nms_thresh, inner._mode, inner._top_n, inner._hard_iou_thresh) == \
        (None, 'balanced', 20, 0.5)


def test_a_network_built_before_install_is_told_what_to_do():
    net = tiny_faster_rcnn(HEIGHT, WIDTH)  # GluonCV's sampler
    net.initialize(mx.init.Xavier())
    sg.install(rcnn_ohem=True)
    step = batch(net, MIXED)
    label = step[1]
    with pytest.raises(ValueError, match='use_ohem_sampler'), autograd.record():
        net(step[0], label[:, :, :4], label[:, :, 4:5])
    sg.use_hard_sampler(net)  # what the hard-flag path's message says: OHEM's sampler here
    assert isinstance(net.sampler, sg.OHEMTargetSampler)
    assert (sampled(net, step)[1] != 0).sum() == 16


def test_a_network_without_a_training_head_cannot_do_ohem():
    from gluoncv.model_zoo.rcnn.faster_rcnn import FasterRCNN
    net = tiny_faster_rcnn(HEIGHT, WIDTH)
    net._target_generator = None  # as minimal_opset=True builds it
    assert isinstance(net, FasterRCNN)
    with pytest.raises(ValueError, match='minimal_opset'):
        sg.use_ohem_sampler(net)


def test_uninstall_restores_gluoncvs_forward_and_sampler():
    from gluoncv.model_zoo.rcnn.faster_rcnn import faster_rcnn
    forward, sampler = faster_rcnn.FasterRCNN.hybrid_forward, faster_rcnn.RCNNTargetSampler
    sg.install(rcnn_ohem=True)
    assert faster_rcnn.FasterRCNN.hybrid_forward is not forward
    sg.uninstall()
    assert faster_rcnn.FasterRCNN.hybrid_forward is forward
    assert faster_rcnn.RCNNTargetSampler is sampler
    assert type(tiny_faster_rcnn(HEIGHT, WIDTH).sampler) is sampler


@pytest.mark.parametrize('hybridize', [False, True])
def test_fpn_networks_score_with_their_levels(hybridize):
    # FPN: ROI align on the level each candidate's size picks, as GluonCV's head does.
    net = zoo_net('faster_rcnn_fpn_resnet50_v1b_coco', 16)
    sg.install(rcnn_ohem=True)
    sg.use_ohem_sampler(net)
    step = batch(net, MIXED, scale=2)
    net.hybridize(hybridize)
    rois, samples, matches, cls_pred, _ = sampled(net, step)
    assert samples.shape == (1, 16) and (samples != 0).sum() == 16
    assert not (matches[samples > 0] == 1).any()
    net.hybridize(False)
