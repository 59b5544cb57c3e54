"""COCO crowd regions as hard boxes: GluonCV's COCO datasets under install(), the IoF rule in
both stages, Mask R-CNN's crowd rows, mixup, and end-to-end training steps.

The tiny COCO-format set is :func:`tools.crowd_check.write_coco` (4 training images of
256 x 256 with crowd regions, RLE and polygon; 2 validation images).
"""
import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

gluoncv = pytest.importorskip('gluoncv')
pytest.importorskip('pycocotools')
from gluoncv.data import COCODetection, COCOInstance  # noqa: E402
from gluoncv.data.batchify import FasterRCNNTrainBatchify, MaskRCNNTrainBatchify  # noqa: E402
from gluoncv.data.mixup.detection import MixupDetection  # noqa: E402
from gluoncv.data.transforms.presets import rcnn as presets  # noqa: E402
from gluoncv.model_zoo import get_model  # noqa: E402
from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import \
    RCNNTargetSampler as GluonCVRCNNTargetSampler  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402
from samplers import RCNNTargetSampler, RPNTargetGenerator, box_iof  # noqa: E402
from samplers.gluoncv import _common, patches_datasets  # noqa: E402
from samplers.gluoncv import transforms as sg_transforms  # noqa: E402
from conftest import zoo_fixture  # noqa: E402
from helpers import gluon_anchors, training_task  # noqa: E402
from tools.crowd_check import (TRAIN, count_inside, crowd_boxes,  # noqa: E402
                               regions_in_network_coordinates, write_coco)

pytestmark = [pytest.mark.filterwarnings('ignore::UserWarning'),
              pytest.mark.usefixtures('uninstall_gluoncv')]
SHORT = 256          # the images' size: the transforms keep it
NUM_SAMPLE = 32      # second-stage samples per image (the zoo's 512 make the heads slow)
IOF = 0.7


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return write_coco(str(tmp_path_factory.mktemp('coco')))


def detection(root, **kwargs):
    return COCODetection(root=root, splits='instances_train2017', use_crowd=False, **kwargs)


def instance(root, **kwargs):
    return COCOInstance(root=root, splits='instances_train2017', **kwargs)


# ----------------------------------------------------------------------------- the datasets
def test_install_gives_crowd_regions_as_hard_column_2_and_other_boxes_0(root):
    stock = detection(root)
    sg.install()
    ours = detection(root)
    assert ours._items == stock._items  # the same images, in the same order
    for i, objects in enumerate(TRAIN):
        label = ours[i][1]
        assert label.shape[1] == 6
        normal, crowd = label[label[:, 5] == 0], label[label[:, 5] == 2]
        np.testing.assert_array_equal(normal[:, :5], stock[i][1])
        assert set(label[:, 5]) <= {0, 2}
        # COCODetection's corners: x + w - 1, y + h - 1
        np.testing.assert_allclose(crowd[:, :4], crowd_boxes(objects) - [0, 0, 1, 1])


def test_string_image_ids_give_each_image_its_own_crowd_regions(tmp_path):
    # pycocotools iterates a bare string id's characters: image "12" would get the crowd
    # regions of images "1" and "2" and lose its own.
    root = write_coco(str(tmp_path))
    path = os.path.join(root, 'annotations', 'instances_train2017.json')
    with open(path) as f:
        data = json.load(f)
    ids = {1: '1', 2: '2', 3: '12', 4: '4'}
    for entry in data['images']:
        entry['id'] = ids[entry['id']]
    for ann in data['annotations']:
        ann['image_id'] = ids[ann['image_id']]
    with open(path, 'w') as f:
        json.dump(data, f)
    sg.install()
    dataset = detection(root)
    assert len(dataset) == len(TRAIN)
    for item, (_, label) in zip(dataset._items, dataset):
        objects = TRAIN[int(os.path.basename(item).split('.')[0]) - 1]
        crowd = label[label[:, 5] == 2, :4]
        np.testing.assert_allclose(crowd, crowd_boxes(objects) - [0, 0, 1, 1])


def test_use_crowd_true_training_set_gives_crowd_regions_as_hard_not_positive(root):
    sg.install()
    label = COCODetection(root=root, splits='instances_train2017')[0][1]
    assert (label[:, 5] == 2).sum() == len(crowd_boxes(TRAIN[0]))
    assert len(label) == len(TRAIN[0])


def test_coco_instance_crowd_rows_have_no_polygon(root):
    stock = instance(root)
    sg.install()
    ours = instance(root)
    for i, objects in enumerate(TRAIN):
        _, label, segm = ours[i]
        crowd = label[:, 5] == 2
        assert crowd.sum() == len(crowd_boxes(objects)) > 0
        np.testing.assert_array_equal(label[~crowd, :5], stock[i][1])
        assert [len(s) for s in segm] == [len(s) for s in stock[i][2]] + [0] * crowd.sum()


@pytest.mark.parametrize('make', [COCODetection, COCOInstance])
def test_validation_datasets_are_unchanged(root, make):
    stock = make(root=root, splits='instances_val2017', skip_empty=False)
    sg.install()
    ours = make(root=root, splits='instances_val2017', skip_empty=False)
    assert len(ours) == len(stock)
    for i in range(len(stock)):
        for got, want in zip(ours[i][1:], stock[i][1:]):
            if isinstance(want, list):
                assert [len(p) for p in got] == [len(p) for p in want]
            else:
                np.testing.assert_array_equal(got, want)


def test_install_coco_crowd_false_and_uninstall_leave_gluoncv_datasets(root):
    stock = detection(root)[0][1]
    sg.install(coco_crowd=False)
    np.testing.assert_array_equal(detection(root)[0][1], stock)
    sg.install()
    assert detection(root)[0][1].shape[1] == 6
    sg.uninstall()
    np.testing.assert_array_equal(detection(root)[0][1], stock)
    for owner, name, _ in patches_datasets.patches():
        assert vars(owner)[name] is patches_datasets._GLUONCV[
            'detection' if owner is COCODetection else 'instance']


def test_install_rejects_bad_crowd_options_and_patches_nothing():
    with pytest.raises(ValueError, match='coco_crowd'):
        sg.install(coco_crowd='yes')
    with pytest.raises(ValueError, match='crowd_iof_thresh'):
        sg.install(crowd_iof_thresh=0)
    assert not sg.is_installed()


# ----------------------------------------------------------------------------- the label column
def test_label_column_reads_1_as_hard_and_2_as_crowd():
    label = np.array([[0, 0, 9, 9, 1, 0], [0, 0, 9, 9, 1, 1], [0, 0, 9, 9, 1, 2],
                      [-1, -1, -1, -1, -1, -1]], np.float32)
    hard, crowd = _common.label_flags(label, 5)
    np.testing.assert_array_equal(hard, [0, 1, 0, 0])
    np.testing.assert_array_equal(crowd, [0, 0, 1, 0])
    # One hard rule (SSD): a crowd region is a hard box.
    np.testing.assert_array_equal(_common.hard_column_flags(label, 5), [0, 1, 1, 0])
    with pytest.raises(ValueError, match=r'label column 5 .* got values \[3\.0\]'):
        _common.label_flags(np.array([[0, 0, 9, 9, 1, 3.0]]), 5)


# ----------------------------------------------------------------------------- the rules
CROWD = np.array([[0, 0, 256, 128]], np.float32)
OBJECT = np.array([[150, 150, 250, 250]], np.float32)


@pytest.mark.parametrize('nd', [False, True])
def test_rpn_anchors_inside_a_crowd_region_are_never_negative(nd):
    anchors = gluon_anchors(256, 256)
    gt = np.concatenate([OBJECT, CROWD])
    gen = RPNTargetGenerator(num_sample=10 ** 6)
    as_input = mx.nd.array if nd else np.asarray
    cls, _, _ = gen(as_input(gt), as_input(anchors), 256, 256, crowd=as_input([0, 1]))
    cls = cls.asnumpy() if nd else cls
    inside = (box_iof(anchors, CROWD) >= IOF).ravel()
    assert inside.any() and not (cls[inside] == 0).any()
    # The crowd region is matched to nothing: no positive on it, and an anchor that only
    # partly covers it (IoF < 0.7) stays a negative whatever its IoU.
    assert not (cls[(box_iof(anchors, OBJECT) == 0).ravel()] > 0).any()
    stock, _, _ = gen(OBJECT, anchors, 256, 256)
    np.testing.assert_array_equal(cls[~inside] == 0, stock[~inside] == 0)


def test_rpn_crowd_rule_is_iof_and_the_difficult_rule_iou():
    anchors = gluon_anchors(256, 256)
    region = np.array([[48, 32, 112, 96]], np.float32)  # the size of some anchors
    gt = np.concatenate([OBJECT, region])
    gen = RPNTargetGenerator(num_sample=10 ** 6)
    as_crowd = gen(gt, anchors, 256, 256, crowd=np.array([0, 1]))[0]
    as_hard = gen(gt, anchors, 256, 256, hard=np.array([0, 1]))[0]
    # An anchor less than 0.7 inside the region with IoU >= 0.3: ignored by the IoU rule,
    # negative by the IoF rule.
    from samplers import box_iou
    wide = ((box_iou(anchors, region) >= 0.3) & (box_iof(anchors, region) < IOF)).ravel()
    wide &= (box_iou(anchors, OBJECT) < 0.3).ravel()
    wide &= (anchors[:, :2] >= 0).all(axis=1) & (anchors[:, 2:] < 256).all(axis=1)  # valid
    assert wide.any()
    assert (as_crowd[wide] == 0).all() and (as_hard[wide] == -1).all()


def second_stage_inputs():
    ys, xs = np.meshgrid(np.arange(0, 224, 16), np.arange(0, 224, 16), indexing='ij')
    rois = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 32, ys.ravel() + 32], 1)
    rois = rois.astype(np.float32)[None]
    scores = np.ones(rois.shape[:2] + (1,), np.float32)
    gt = np.concatenate([OBJECT, CROWD])[None]
    return rois, scores, gt


def test_second_stage_proposals_inside_a_crowd_region_are_never_negative():
    rois, scores, gt = second_stage_inputs()
    num = rois.shape[1] + 2
    sampler = RCNNTargetSampler(1, rois.shape[1], num, max_num_gt=2, pos_ratio=1.0)
    out_rois, samples, matches = (o.asnumpy()[0] for o in sampler(
        mx.nd.array(rois), mx.nd.array(scores), mx.nd.array(gt), None, mx.nd.array([[0, 1]])))
    inside = (box_iof(out_rois, CROWD) >= IOF).ravel()
    assert inside.any() and not (samples[inside] < 0).any()
    assert not (matches[samples > 0] == 1).any()  # no positive from the crowd region
    # GluonCV's training set has no crowd row, and its sampler makes those proposals negative.
    gluoncv_sampler = GluonCVRCNNTargetSampler(1, rois.shape[1], 64, 0.5, 0.25, 1)
    g_rois, g_samples, _ = (o.asnumpy()[0] for o in gluoncv_sampler(
        mx.nd.array(rois), mx.nd.array(scores), mx.nd.array(gt[:, :1])))
    assert count_inside(g_rois[g_samples < 0], CROWD) > 0


def test_differs_from_gluoncv_rpn_negatives_inside_crowd_regions(root):
    # Stock GluonCV (use_crowd=False drops the crowd) teaches anchors inside crowds as
    # background; the patched dataset and transform never do.
    net = get_model('faster_rcnn_resnet50_v1b_coco', pretrained=False, pretrained_base=False)
    net.initialize()
    counts = {}
    for arm in ('stock', 'ours'):
        if arm == 'ours':
            sg.install()
        transform = presets.FasterRCNNDefaultTrainTransform(SHORT, SHORT, net, flip_p=0.0)
        total = 0
        for img, label in detection(root):
            out = transform(img, label)
            height, width = out[0].shape[1:]
            anchors = np.concatenate(
                [a for _, a in sg_transforms._level_anchors(transform, height, width)])
            regions = regions_in_network_coordinates(out[1], height, width)
            cls = np.asarray(out[2]).reshape(-1)
            total += count_inside(anchors[cls == 0], regions)
        counts[arm] = total
    assert counts['stock'] > 0 and counts['ours'] == 0, counts


# ----------------------------------------------------------------------------- end to end
# Model-zoo networks, untrained, drawing NUM_SAMPLE second-stage samples per image.
c4_net = zoo_fixture('c4_net', 'faster_rcnn_resnet50_v1b_coco', NUM_SAMPLE)
mask_net = zoo_fixture('mask_net', 'mask_rcnn_resnet18_v1b_coco', NUM_SAMPLE)


def loader(net, dataset, mask, num_workers):
    if mask:
        transform = presets.MaskRCNNDefaultTrainTransform(SHORT, SHORT, net, ashape=net.ashape)
        batchify = MaskRCNNTrainBatchify(net, 1)
    else:
        transform = presets.FasterRCNNDefaultTrainTransform(SHORT, SHORT, net, ashape=net.ashape)
        batchify = FasterRCNNTrainBatchify(net, 1)
    return gluon.data.DataLoader(dataset.transform(transform), batch_size=1, shuffle=False,
                                 batchify_fn=batchify, num_workers=num_workers)


def one_device(part):
    return (part[0] if isinstance(part, (list, tuple)) else part).as_in_context(mx.cpu())


def train_and_count(net, data, mask):
    """GluonCV's ForwardBackwardTask steps on hybridized ``net``; per step the negatives
    (RPN anchors, second-stage proposals) at least 0.7 inside a crowd region, their totals,
    and the losses."""
    task, trainer = training_task(net, mask)
    seen = []

    def watch(*args):  # the network's training outputs, hybridized or not
        out = type(net).forward(net, *args)
        if autograd.is_training():
            seen.append(out)
        return out
    net.hybridize(static_alloc=True)
    net.forward = watch
    rois_at, samples_at, anchors_at = (3, 4, 8) if mask else (2, 3, 7)
    counts = dict(rpn=0, rpn_in_crowd=0, rcnn=0, rcnn_in_crowd=0, regions=0)
    results = []
    try:
        for batch in data:
            step = [one_device(part) for part in batch]
            del seen[:]
            results.append([r.asnumpy() for r in task.forward_backward(step)[:5 if mask else 4]])
            trainer.step(1)
            label = step[1].asnumpy()[0]
            regions = label[label[:, 5] == 2, :4]
            out = seen[0]
            anchors = out[anchors_at].asnumpy().reshape(-1, 4)
            rpn_neg = anchors[step[2 + mask].asnumpy().reshape(-1) == 0]
            samples = out[samples_at].asnumpy().reshape(-1)
            rcnn_neg = out[rois_at].asnumpy().reshape(-1, 4)[samples < 0]
            counts['regions'] += len(regions)
            counts['rpn'] += len(rpn_neg)
            counts['rpn_in_crowd'] += count_inside(rpn_neg, regions)
            counts['rcnn'] += len(rcnn_neg)
            counts['rcnn_in_crowd'] += count_inside(rcnn_neg, regions)
    finally:
        del net.forward
        net.hybridize(False)
    return counts, results


def batches(net, dataset, mask, num_workers, count):
    out = []
    for i, batch in enumerate(loader(net, dataset, mask, num_workers)):
        if i == count:
            break
        out.append(batch)
    return out


@pytest.mark.parametrize('num_workers', [0, 2])
@pytest.mark.parametrize('network, mask', [('c4_net', False), ('mask_net', True)])
def test_training_never_teaches_crowd_regions_as_background(network, mask, num_workers, root,
                                                           request):
    net = request.getfixturevalue(network)
    sg.install()
    dataset = instance(root) if mask else detection(root)
    data = batches(net, dataset, mask, num_workers, count=2)
    counts, results = train_and_count(net, data, mask)
    assert counts['regions'] > 0 and counts['rpn'] > 0 and counts['rcnn'] > 0, counts
    assert counts['rpn_in_crowd'] == 0 and counts['rcnn_in_crowd'] == 0, counts
    for losses in results:
        assert np.isfinite(np.concatenate([np.ravel(x) for x in losses])).all()


def test_mask_transform_gives_crowd_rows_an_empty_mask(root, mask_net):
    sg.install()
    img, label, segm = instance(root)[0]
    crowd = label[:, 5] == 2
    out = presets.MaskRCNNDefaultTrainTransform(SHORT, SHORT, mask_net)(img, label, segm)
    masks = out[-1].asnumpy()
    assert masks.shape[0] == len(label)
    assert masks[crowd].sum() == 0 and (masks[~crowd].sum(axis=(1, 2)) > 0).all()
    # GluonCV's own body (a float image) rasterises the placeholder to zeros as well.
    out = presets.MaskRCNNDefaultTrainTransform(SHORT, SHORT, mask_net)(
        img.astype('float32'), label, segm)
    assert out[-1].asnumpy()[crowd].sum() == 0


def test_mixup_and_crowd_flags_work_together(root, c4_net):
    # GluonCV's MixupDetection appends its weight after the hard column: column 5 stays the
    # flags (default hard_column), column 6 is the weight.
    sg.install()
    dataset = MixupDetection(detection(root))
    dataset.set_mixup(np.random.uniform, 0.5, 0.5)
    img, label = dataset[0]
    assert label.shape[1] == 7 and set(label[:, 5]) <= {0, 2}
    assert ((label[:, 6] > 0) & (label[:, 6] < 1)).all()
    data = batches(c4_net, dataset, False, 0, count=2)
    counts, results = train_and_count(c4_net, data, False)
    assert counts['regions'] > 0 and counts['rpn_in_crowd'] == 0 and \
        counts['rcnn_in_crowd'] == 0, counts
    for losses in results:
        assert np.isfinite(np.concatenate([np.ravel(x) for x in losses])).all()


def test_rpn_crowd_filter_equals_box_iof_at_the_threshold():
    # The generator's per-region IoF pass (samplers.rpn._inside_regions) against box_iof,
    # with regions partly outside the image, zero-area anchors and a non-finite one.
    from samplers.rpn import _inside_regions
    rng = np.random.RandomState(0)
    anchors = gluon_anchors(256, 256).astype(np.float32)
    anchors[:3] = [[5, 5, 5, 40], [0, 0, 0, 0], [np.nan, 0, 9, 9]]
    for _ in range(20):
        xy = rng.uniform(-40, 200, (3, 2))
        regions = np.concatenate([xy, xy + rng.uniform(1, 200, (3, 2))], 1).astype(np.float32)
        for thresh in (0.5, 0.7, 1.0):
            np.testing.assert_array_equal(
                _inside_regions(anchors, regions, thresh),
                (box_iof(anchors, regions) >= np.float32(thresh)).any(axis=1))
