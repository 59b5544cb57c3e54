"""End to end: hard flags through GluonCV's Faster R-CNN (C4, FPN) and Mask R-CNN training.

A training loop shaped like GluonCV's scripts (data loader with GluonCV's batchify, GluonCV's
ForwardBackwardTask, trainer step) on a tiny VOC-format set written to a temporary directory,
with ``samplers.gluoncv.install()`` in effect. Each network is built once per module; images are
192 x 256 (the smallest size giving the C4 RPN its 2000 proposals).
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

gluoncv = pytest.importorskip('gluoncv')
from gluoncv.data import VOCDetection  # noqa: E402
from gluoncv.data.batchify import FasterRCNNTrainBatchify, MaskRCNNTrainBatchify  # noqa: E402
from gluoncv.data.transforms import mask as tmask  # noqa: E402
from gluoncv.data.transforms.presets import rcnn as presets  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402
from samplers import HardRule  # noqa: E402
from conftest import zoo_fixture  # noqa: E402
from helpers import iou, rectangle_mask, training_task, write_voc, zoo_net  # noqa: E402

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')
HEIGHT, WIDTH = 192, 256
HARD_IOU = 0.5  # the second stage's hard-box IoU threshold (HardRule.iou_thresh) in these tests
# (xmin, ymin, xmax, ymax, VOC class index, difficult) per object, per image.
IMAGES = [
    [(16, 16, 112, 112, 11, 0), (128, 40, 240, 176, 14, 1)],   # a dog, a difficult person
    [(24, 32, 120, 160, 7, 1), (140, 20, 236, 110, 2, 1)],     # every object difficult
    [(60, 50, 200, 170, 6, 0)],                                # a car, nothing difficult
]


@pytest.fixture(scope='module', autouse=True)
def _installed():
    sg.install(rcnn_hard_iou_thresh=HARD_IOU)
    yield
    sg.uninstall()


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('voc'))
    # IMAGES as a VOC2007 'trainval' split (VOC's coordinates are 1-based).
    write_voc(root, [[(VOCDetection.CLASSES[cls], x1 + 1, y1 + 1, x2 + 1, y2 + 1, difficult)
                      for x1, y1, x2, y2, cls, difficult in objects] for objects in IMAGES],
              WIDTH, HEIGHT, split='trainval')
    return VOCDetection(root=root, splits=[(2007, 'trainval')])


class PolygonDataset(gluon.data.Dataset):
    """A VOC dataset as Mask R-CNN training needs it: each box also as a rectangle polygon."""

    def __init__(self, voc):
        self._voc = voc

    def __len__(self):
        return len(self._voc)

    def __getitem__(self, i):
        img, label = self._voc[i]
        segm = [[np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)]
                for x1, y1, x2, y2 in label[:, :4]]
        return img, label, segm


NUM_SAMPLE = 32  # second-stage samples per image (the zoo's 128 or 512 make the heads slow)


# Model-zoo networks, untrained, drawing NUM_SAMPLE second-stage samples per image.
c4_net = zoo_fixture('c4_net', 'faster_rcnn_resnet50_v1b_voc', NUM_SAMPLE,
                     hard=HardRule(iou_thresh=HARD_IOU))
fpn_net = zoo_fixture('fpn_net', 'faster_rcnn_fpn_resnet50_v1b_coco', NUM_SAMPLE,
                      hard=HardRule(iou_thresh=HARD_IOU))


@pytest.fixture(scope='module')
def mask_net():
    # GluonCV's Mask R-CNN transform rasterises polygons with pycocotools, not a dependency of
    # this project: our polygons are rectangles, so a rectangle fill stands in for it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tmask, 'to_mask', rectangle_mask)
        yield zoo_net('mask_rcnn_resnet18_v1b_coco', NUM_SAMPLE,
                      hard=HardRule(iou_thresh=HARD_IOU))


# ----------------------------------------------------------------------------- the loop
def loader(net, dataset, mask, num_workers):
    """GluonCV's training data pipeline: its own transform class (patched) and batchify."""
    if mask:
        transform = presets.MaskRCNNDefaultTrainTransform(
            HEIGHT, WIDTH, net, ashape=net.ashape, multi_stage=net.num_stages > 1)
        batchify = MaskRCNNTrainBatchify(net, 1)
    else:
        transform = presets.FasterRCNNDefaultTrainTransform(
            HEIGHT, WIDTH, net, ashape=net.ashape, multi_stage=net.num_stages > 1, flip_p=0.0)
        batchify = FasterRCNNTrainBatchify(net, 1)
    return gluon.data.DataLoader(dataset.transform(transform), batch_size=1, shuffle=False,
                                 batchify_fn=batchify, num_workers=num_workers)


def train(net, batches, mask, hybridize):
    """A few steps as GluonCV's scripts take them; what the sampler saw, per step, and losses."""
    task, trainer = training_task(net, mask)
    seen = []
    if hybridize:
        net.hybridize(static_alloc=True)
    else:
        net.hybridize(False)
        hook = net.sampler.register_forward_hook(
            lambda block, inputs, outputs: seen.append([o.asnumpy() for o in outputs]))
    results = []
    try:
        for batch in batches:
            step = [one_device(part) for part in batch]
            results.append([r.asnumpy() for r in task.forward_backward(step)[:5 if mask else 4]])
            trainer.step(1)
    finally:
        if not hybridize:
            hook.detach()
    return seen, results


def one_device(part):
    """What GluonCV's ``split_and_load`` gives the only device: shards come as a list or tuple."""
    return (part[0] if isinstance(part, (list, tuple)) else part).as_in_context(mx.cpu())


def check_second_stage(rois, samples, matches, label):
    """No positive on a hard box; no negative overlapping a hard box (IoU >= HARD_IOU)."""
    hard = label[:, 5] == 1
    positive, negative = samples > 0, samples < 0
    assert not hard[matches[positive].astype(int)].any()
    if hard.any():
        assert (iou(rois[negative], label[hard, :4]).max(axis=1, initial=0) < HARD_IOU).all()
    if not hard.all():
        assert positive.any()  # normal boxes still teach


def batches(net, dataset, mask, num_workers, count=2):
    out = []
    for i, batch in enumerate(loader(net, dataset, mask, num_workers)):
        if i == count:
            break
        out.append(batch)
    return out


# ----------------------------------------------------------------------------- the tests
CASES = [('c4_net', False), ('fpn_net', False), ('mask_net', True)]


@pytest.mark.parametrize('network, mask', CASES)
def test_training_steps_never_teach_hard_boxes(network, mask, voc, request):
    net = request.getfixturevalue(network)
    dataset = PolygonDataset(voc) if mask else voc
    data = batches(net, dataset, mask, num_workers=0)
    labels = [one_device(batch[1])[0].asnumpy() for batch in data]
    assert labels[1][:, 5].all()  # the second step's image has every object difficult
    seen, results = train(net, data, mask, hybridize=False)
    assert len(seen) == len(data)
    for (rois, samples, matches), label in zip(seen, labels):
        check_second_stage(rois[0], samples[0], matches[0], label)
    # RPN: the all-difficult image has no positive anchor.
    rpn_cls = one_device(data[1][2 + mask]).asnumpy()
    assert (rpn_cls >= 0).any() and not (rpn_cls > 0).any()
    for losses in results:
        assert np.isfinite(np.concatenate([np.ravel(x) for x in losses])).all()


@pytest.mark.parametrize('network, mask', CASES)
def test_hybridized_training_with_worker_processes(network, mask, voc, request):
    net = request.getfixturevalue(network)
    dataset = PolygonDataset(voc) if mask else voc
    data = batches(net, dataset, mask, num_workers=2)
    # One step, on the image whose every object is difficult (two would double the time).
    _, results = train(net, data[1:], mask, hybridize=True)
    for losses in results:
        assert np.isfinite(np.concatenate([np.ravel(x) for x in losses])).all()
    # The hybridized network takes the flags as a graph input: the same rule holds.
    img, label = one_device(data[0][0]), one_device(data[0][1])
    with autograd.record():
        out = net(img, label[:, :, :4], label[:, :, 4:5], label[:, :, 5:6])
    first = 3 if mask else 2
    rois, samples, matches = (o.asnumpy()[0] for o in out[first:first + 3])
    check_second_stage(rois, samples, matches, label[0].asnumpy())
    net.hybridize(False)
