"""install(rpn_ohem=True): GluonCV's transforms label every anchor, its ForwardBackwardTask
trains the hardest ones (samplers.gluoncv.patches_rpn_ohem)."""
import pickle

import mxnet as mx
import numpy as np
import pytest

gluoncv = pytest.importorskip('gluoncv')
from gluoncv.data.batchify import FasterRCNNTrainBatchify, MaskRCNNTrainBatchify  # noqa: E402
from gluoncv.data.transforms import mask as tmask  # noqa: E402
from gluoncv.data.transforms.presets import rcnn as presets  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402
from samplers import force_ndarray_backend  # noqa: E402
from samplers.gluoncv import patches_rpn_ohem  # noqa: E402
from tools.soak import tiny_faster_rcnn  # noqa: E402
from helpers import rectangle_mask, refuse_host_copies, training_task, zoo_net  # noqa: E402

pytestmark = [pytest.mark.filterwarnings('ignore::UserWarning'),
              pytest.mark.usefixtures('uninstall_gluoncv')]
HEIGHT, WIDTH = 192, 256
# (x1, y1, x2, y2, class, hard) per object: a normal box, a hard one.
LABEL = np.array([[20, 30, 120, 150, 0, 0], [130, 40, 250, 180, 1, 1]], np.float32)


def image(seed=0):
    pixels = np.random.RandomState(seed).randint(0, 255, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    return mx.nd.array(pixels, dtype='uint8')


def faster_net():
    mx.random.seed(0)
    net = tiny_faster_rcnn(HEIGHT, WIDTH)
    net.initialize(mx.init.Xavier())
    return net


def faster_batch(net, label=LABEL, transform_class=None, **options):
    transform_class = transform_class or presets.FasterRCNNDefaultTrainTransform
    transform = transform_class(HEIGHT, WIDTH, net, ashape=net.ashape, flip_p=0.0, **options)
    parts = FasterRCNNTrainBatchify(net, 1)([transform(image(), label)])
    return [(p[0] if isinstance(p, (list, tuple)) else p).as_in_context(mx.cpu()) for p in parts]


class Probed:
    """A network whose RPN score and box outputs pass through zero probes with gradients:
    after a step, ``probe.grad`` is the gradient that reached each anchor's score and box."""

    def __init__(self, net, score_at, box_at):
        self._net, self._at = net, (score_at, box_at)
        self.score = self.box = None

    def __call__(self, *args):
        outputs = list(self._net(*args))
        for name, at in zip(('score', 'box'), self._at):
            probe = mx.nd.zeros_like(outputs[at])
            probe.attach_grad()
            setattr(self, name, probe)
            outputs[at] = outputs[at] + probe
        self.outputs = outputs
        return tuple(outputs)

    def __getattr__(self, name):
        return getattr(self._net, name)


def reference_chosen(score, cls_targets, num_sample):
    """Per image the num_sample labelled anchors of largest sigmoid cross-entropy, plainly."""
    x, z = score.astype(np.float64), cls_targets
    loss = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
    out = np.zeros(z.shape, bool)
    for b in range(z.shape[0]):
        idx = np.flatnonzero(z[b] >= 0)
        out[b, idx[np.argsort(-loss[b, idx], kind='stable')[:num_sample]]] = True
    return out, loss


# ----------------------------------------------------------------------------- install()
@pytest.mark.parametrize('value', [1, 'True', None])
def test_rpn_ohem_takes_only_a_bool_and_patches_nothing_otherwise(value):
    with pytest.raises(ValueError, match='rpn_ohem'):
        sg.install(rpn_ohem=value)
    assert not sg.is_installed()


def test_rpn_ohem_combines_with_the_other_options():
    sg.install(hard_min_size=4, allow_low_quality_matches=True, hard_iof_thresh=0.5,
               rcnn_hard_iou_thresh=0.5, crowd_iof_thresh=0.6, coco_crowd=False, rpn_ohem=True)
    net = faster_net()
    transform = presets.FasterRCNNDefaultTrainTransform(HEIGHT, WIDTH, net, ashape=net.ashape)
    assert 'subsample=False' in repr(transform._target_generator._sampler)


def test_the_transform_labels_every_anchor_by_the_rule():
    net = faster_net()
    sg.install(rpn_ohem=True)
    got = faster_batch(net)
    sg.uninstall()
    want = faster_batch(net, transform_class=sg.FasterRCNNTrainTransform, num_sample=10 ** 9,
                        pos_ratio=1.0)  # hard-flag-aware, with a quota no image reaches
    for g, w in zip(got[2:], want[2:]):
        np.testing.assert_array_equal(g.asnumpy(), w.asnumpy())
    assert (got[2].asnumpy() >= 0).sum() > 256


def test_a_pickled_transform_keeps_labelling_every_anchor():
    net = faster_net()
    sg.install(rpn_ohem=True)
    transform = presets.FasterRCNNDefaultTrainTransform(HEIGHT, WIDTH, net, ashape=net.ashape,
                                                        flip_p=0.0)
    want = transform(image(), LABEL)[2]
    copy = pickle.loads(pickle.dumps(transform))
    sg.uninstall()  # a spawned worker's GluonCV is not patched
    np.testing.assert_array_equal(copy(image(), LABEL)[2], want)


def test_with_rpn_ohem_false_the_step_is_install_s():
    results = []
    for options in ({}, {'rpn_ohem': False}):
        sg.install(**options)
        np.random.seed(3)
        net = faster_net()
        task, _ = training_task(net)
        net.hybridize()
        batch = faster_batch(net)
        assert not isinstance(task.rpn_cls_loss, patches_rpn_ohem.HardAnchorClassLoss)
        results.append([o.asnumpy() for o in task.forward_backward(batch)[:4]])
        sg.uninstall()
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- the step
def ohem_step(net, batch, mask=False):
    """One step of GluonCV's task under install(rpn_ohem=True), with probes on the RPN outputs;
    returns (probed network, the step's outputs)."""
    task, _ = training_task(net, mask)
    net.hybridize()
    # Faster R-CNN's outputs: rpn_score 5, rpn_box 6; Mask R-CNN's: 6 and 7.
    probed = Probed(net, *((6, 7) if mask else (5, 6)))
    task.net = probed
    return probed, task.forward_backward(batch)


def chosen_of(probed, batch, num_sample=None):
    """The anchors whose score got gradient in the step: the ones it trained."""
    trained = probed.score.grad.asnumpy()[..., 0] != 0
    if num_sample is not None:
        check_gradient_only_at_chosen(probed, batch, num_sample)
    return trained


def check_gradient_only_at_chosen(probed, batch, num_sample):
    cls_targets, box_masks = batch[-3].asnumpy(), batch[-1].asnumpy()
    score = probed.outputs[5 if len(probed.outputs) == 12 else 6].asnumpy()[..., 0]
    chosen, _ = reference_chosen(score, cls_targets, num_sample)
    score_grad = probed.score.grad.asnumpy()[..., 0]
    box_grad = np.abs(probed.box.grad.asnumpy()).sum(axis=-1)
    np.testing.assert_array_equal(score_grad != 0, chosen)
    assert not box_grad[~chosen].any()
    trained_pos = chosen & (box_masks.sum(axis=-1) > 0)
    assert (box_grad[trained_pos] != 0).any() or not trained_pos.any()


def test_gradient_reaches_exactly_the_chosen_anchors_faster():
    sg.install(rpn_ohem=True)
    net = faster_net()
    batch = faster_batch(net, num_sample=40)  # the transform's num_sample: the task's too
    probed, _ = ohem_step(net, batch)
    check_gradient_only_at_chosen(probed, batch, 40)


def test_the_chosen_anchors_include_positives_when_they_are_hardest():
    sg.install(rpn_ohem=True)
    net = faster_net()
    labelled = int((faster_batch(net)[-3].asnumpy() >= 0).sum())
    batch = faster_batch(net, num_sample=labelled - 1)
    probed, outputs = ohem_step(net, batch)
    check_gradient_only_at_chosen(probed, batch, labelled - 1)
    assert (batch[-1].asnumpy().sum(axis=-1)[chosen_of(probed, batch, labelled - 1)] > 0).any()


def test_the_losses_keep_gluoncv_s_scale_when_every_labelled_anchor_is_chosen():
    sg.install(rpn_ohem=True)
    net = faster_net()
    batch = faster_batch(net, num_sample=10 ** 6)
    sg.install()
    task, _ = training_task(net)
    net.hybridize()
    plain = [o.asnumpy() for o in task.forward_backward(batch)[:2]]  # GluonCV's losses
    sg.install(rpn_ohem=True)  # a task built now does OHEM
    task, _ = training_task(net)
    hard = [o.asnumpy() for o in task.forward_backward(batch)[:2]]
    np.testing.assert_allclose(hard, plain, rtol=1e-6)


def test_the_class_loss_is_the_mean_loss_of_the_chosen_anchors():
    sg.install(rpn_ohem=True)
    net = faster_net()
    batch = faster_batch(net, num_sample=50)
    probed, outputs = ohem_step(net, batch)
    chosen, loss = reference_chosen(probed.outputs[5].asnumpy()[..., 0], batch[-3].asnumpy(), 50)
    np.testing.assert_allclose(outputs[0].asscalar(), loss[chosen].mean(), rtol=1e-5)
    assert chosen.sum() == 50


def test_the_metrics_see_every_labelled_anchor():
    sg.install(rpn_ohem=True)
    net = faster_net()
    batch = faster_batch(net, num_sample=50)
    _, outputs = ohem_step(net, batch)
    assert outputs[4][0][1].asnumpy().sum() == (batch[-3].asnumpy() >= 0).sum() > 50


def test_the_step_reads_nothing_back_on_the_device_path(monkeypatch):
    sg.install(rpn_ohem=True)
    net = faster_net()
    batch = faster_batch(net)
    task, _ = training_task(net)
    net.hybridize()
    with force_ndarray_backend():
        task.forward_backward(batch)  # graphs built, shapes known
        mx.nd.waitall()
        refuse_host_copies(monkeypatch)
        task.forward_backward(batch)
        mx.nd.waitall()


def test_a_network_without_a_recorded_transform_trains_num_sample_anchors():
    sg.install()
    net = faster_net()
    batch = faster_batch(net, transform_class=sg.FasterRCNNTrainTransform, subsample=False)
    sg.install(rpn_ohem=True)
    probed, _ = ohem_step(net, batch)
    assert chosen_of(probed, batch).sum() == patches_rpn_ohem.NUM_SAMPLE


def test_seeds_reproduce_a_step():
    sg.install(rpn_ohem=True)
    runs = []
    for _ in range(2):
        net = faster_net()
        mx.random.seed(5)
        np.random.seed(5)
        batch = faster_batch(net)
        task, _ = training_task(net)
        net.hybridize()
        runs.append([o.asnumpy() for o in task.forward_backward(batch)[:4]])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_every_object_hard_trains_no_positive_anchor():
    sg.install(rpn_ohem=True)
    net = faster_net()
    label = LABEL.copy()
    label[:, 5] = 1
    batch = faster_batch(net, label)
    assert (batch[-3].asnumpy() >= 0).sum() > 256
    assert not (batch[-3].asnumpy() > 0).any()
    _, outputs = ohem_step(net, batch)
    assert outputs[1].asscalar() == 0


# ----------------------------------------------------------------------------- Mask R-CNN
def test_gradient_reaches_exactly_the_chosen_anchors_mask(monkeypatch):
    monkeypatch.setattr(tmask, 'to_mask', rectangle_mask)
    sg.install(rpn_ohem=True)
    net = zoo_net('mask_rcnn_resnet18_v1b_coco', 16)
    transform = presets.MaskRCNNDefaultTrainTransform(HEIGHT, WIDTH, net, ashape=net.ashape,
                                                      num_sample=64)
    label = LABEL[:, :5]
    segm = [[np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)]
            for x1, y1, x2, y2 in label[:, :4]]
    parts = MaskRCNNTrainBatchify(net, 1)([transform(image(), label, segm)])
    batch = [(p[0] if isinstance(p, (list, tuple)) else p).as_in_context(mx.cpu()) for p in parts]
    probed, _ = ohem_step(net, batch, mask=True)
    check_gradient_only_at_chosen(probed, batch, 64)
    assert chosen_of(probed, batch).sum() == 64


# ----------------------------------------------------------------------------- own loops
def test_rpn_hard_targets_keep_only_the_chosen_anchors():
    rng = np.random.RandomState(0)
    score = mx.nd.array(rng.normal(size=(2, 300)))
    cls_targets = mx.nd.array(rng.choice([-1, 0, 1], size=(2, 300)).astype(np.float32))
    box_masks = mx.nd.broadcast_to((cls_targets > 0).expand_dims(-1), shape=(2, 300, 4))
    targets, masks = patches_rpn_ohem.rpn_hard_targets(score, cls_targets, box_masks, 50)
    chosen, _ = reference_chosen(score.asnumpy(), cls_targets.asnumpy(), 50)
    np.testing.assert_array_equal(targets.asnumpy() >= 0, chosen)
    np.testing.assert_array_equal(targets.asnumpy()[chosen], cls_targets.asnumpy()[chosen])
    np.testing.assert_array_equal(masks.asnumpy().sum(-1) > 0, chosen & (cls_targets.asnumpy() > 0))


# ----------------------------------------------------------------------------- the launcher
def test_the_launcher_adds_only_the_install_lines(tmp_path):
    from tools.gluoncv_script import script_source
    script = tmp_path / 'train.py'
    script.write_text('import os\nfrom x.data_parallel import ForwardBackwardTask\nmain()\n')
    assert script_source(str(script), 'rpn_ohem=True') == (
        'import os\nfrom x.data_parallel import ForwardBackwardTask\n'
        'import samplers.gluoncv\nsamplers.gluoncv.install(rpn_ohem=True)\nmain()\n')
    assert script_source(str(script), None) == script.read_text()


# ----------------------------------------------------------------------------- both OHEMs
def test_rpn_ohem_and_rcnn_ohem_train_together():
    """install(rpn_ohem=True, rcnn_ohem=True): the transform labels every anchor, the network
    mines its second stage, and one hybridized step of GluonCV's task trains the chosen
    anchors only, with finite losses."""
    sg.install(rpn_ohem=True, rcnn_ohem=True)
    net = faster_net()
    assert isinstance(net.sampler, sg.OHEMTargetSampler)
    batch = faster_batch(net)
    probed, outputs = ohem_step(net, batch)
    assert all(np.isfinite(o.asnumpy()).all() for o in outputs[:4])
    trained = probed.score.grad.asnumpy()[..., 0] != 0
    assert 0 < trained.sum() <= 256
    assert not trained[batch[-3].asnumpy() < 0].any()  # an ignored anchor never trains
