"""Helpers the test modules share: anchor builders, the host-copy guard, tiny VOC sets.

Fixtures live in ``conftest.py``; this module holds what tests import and call. No
test module imports another test module.
"""
import os
import xml.etree.ElementTree as ET

import mxnet as mx
import numpy as np


# ----------------------------------------------------------------------------- anchors
def grid_anchors(size=64, stride=8, sides=(8, 16, 32)):
    """Square anchors in GluonCV's layout (rows x columns x sides, corner format), (N, 4) float32.

    One anchor per side length on every ``stride``-spaced cell centre of a
    ``size`` x ``size`` image; 4,096+ anchors take the anchor-grid path.
    """
    centres = np.arange(stride / 2, size, stride, dtype=np.float32)
    cy, cx = np.meshgrid(centres, centres, indexing='ij')
    cells = np.stack([np.stack([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2], axis=-1)
                      for s in sides], axis=2)  # (rows, cols, sides, 4)
    return cells.reshape(-1, 4).astype(np.float32)


def gluon_anchors(height, width, stride=16, sizes=(32, 64, 128, 256, 512), ratios=(0.5, 1, 2)):
    """GluonCV's RPN anchors for a feature grid of floor(height/stride) x floor(width/stride)."""
    from gluoncv.model_zoo.rcnn.rpn.anchor import RPNAnchorGenerator
    h, w = height // stride, width // stride
    gen = RPNAnchorGenerator(stride, 16, list(ratios), [s / 16 for s in sizes], (h, w))
    return gen._generate_anchors(stride, 16, list(ratios), [s / 16 for s in sizes],
                                 (h, w)).reshape(-1, 4)


def fpn_anchors(height, width, strides=(4, 8, 16, 32, 64), sizes=(32, 64, 128, 256, 512)):
    """GluonCV's FPN RPN anchors: one size per level, levels concatenated, float32."""
    return np.concatenate([gluon_anchors(height, width, st_, (sz,))
                           for st_, sz in zip(strides, sizes)]).astype(np.float32)


# ----------------------------------------------------------------------------- host copies
def refuse_host_copies(monkeypatch):
    """Make every device-to-host read of an NDArray fail loudly until ``monkeypatch.undo()``."""
    def refuse(*_args, **_kwargs):
        raise AssertionError('host copy of an NDArray on the device path')
    for name in ('asnumpy', 'asscalar', '__array__', '__bool__', '__int__', '__float__',
                 'tolist'):
        monkeypatch.setattr(mx.nd.NDArray, name, refuse, raising=False)


# ----------------------------------------------------------------------------- tiny VOC sets
#: The default set, for SSD end-to-end runs: (name, xmin, ymin, xmax, ymax, difficult) per
#: object, per image, in VOC's 1-based pixel coordinates. Every ``cat`` is difficult and no
#: other object is, so a positive target of class ``cat`` would be a positive on a hard box.
OBJECTS = [
    [('dog', 20, 30, 150, 180, 0), ('cat', 160, 40, 290, 200, 1)],
    [('cat', 30, 30, 260, 210, 1)],                       # only a hard object
    [('person', 100, 20, 200, 220, 0), ('cat', 10, 120, 90, 215, 1), ('dog', 210, 60, 295, 150, 0)],
    [('car', 40, 80, 280, 200, 0)],
]
WIDTH, HEIGHT = 300, 225
HARD_CLASS = 'cat'


def write_voc(root, images=OBJECTS, width=WIDTH, height=HEIGHT, split='train', seed=0):
    """Write a tiny VOC2007-format set under ``root``; returns the number of images.

    ``images``: per image, its objects as (class name, xmin, ymin, xmax, ymax,
    difficult) in VOC's 1-based pixel coordinates. Writes ``root/VOC2007``
    (Annotations, random-pixel JPEGImages of ``width`` x ``height``,
    ImageSets/Main/``split``.txt), readable by
    ``gluoncv.data.VOCDetection(root=root, splits=[(2007, split)])``.
    """
    from PIL import Image
    rng = np.random.RandomState(seed)
    base = os.path.join(str(root), 'VOC2007')
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    names = []
    for i, objects in enumerate(images):
        name = '{:06d}'.format(i)
        names.append(name)
        pixels = rng.randint(0, 255, (height, width, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(base, 'JPEGImages', name + '.jpg'))
        anno = ET.Element('annotation')
        ET.SubElement(anno, 'filename').text = name + '.jpg'
        size = ET.SubElement(anno, 'size')
        for tag, value in (('width', width), ('height', height), ('depth', 3)):
            ET.SubElement(size, tag).text = str(value)
        for cls, x1, y1, x2, y2, difficult in objects:
            obj = ET.SubElement(anno, 'object')
            ET.SubElement(obj, 'name').text = cls
            ET.SubElement(obj, 'difficult').text = str(difficult)
            box = ET.SubElement(obj, 'bndbox')
            for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), (x1, y1, x2, y2)):
                ET.SubElement(box, tag).text = str(value)
        ET.ElementTree(anno).write(os.path.join(base, 'Annotations', name + '.xml'))
    with open(os.path.join(base, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    return len(names)


def rectangle_mask(polys, size):
    """(height, width) 0/1 mask of one object's rectangle polygons, as GluonCV's ``to_mask``.

    GluonCV's needs pycocotools, which this project does not depend on; the tiny sets'
    polygons are rectangles, so a rectangle fill stands in for it.
    """
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    for poly in polys:
        (x1, y1), (x2, y2) = poly.min(axis=0).astype(int), np.ceil(poly.max(axis=0)).astype(int)
        mask[y1:y2, x1:x2] = 1
    return mask


def overlapping_tick_labels(fig):
    """Pairs of tick labels of one axis that overlap once ``fig`` is drawn, as text pairs.

    Measured with the figure's renderer (the drawn extents, in pixels).
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pairs = []
    for ax in fig.axes:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            shown = [t for t in labels if t.get_visible() and t.get_text()]
            boxes = [t.get_window_extent(renderer) for t in shown]
            pairs += [(shown[i].get_text(), shown[j].get_text())
                      for i in range(len(shown)) for j in range(i + 1, len(shown))
                      if boxes[i].overlaps(boxes[j])]
    return pairs


def training_task(net, mask=False):
    """``(task, trainer)``: GluonCV's ``ForwardBackwardTask`` (Faster or Mask R-CNN) over ``net``
    and its trainer, set up as GluonCV's scripts do: only the training parameters get gradients,
    SGD with gradient clipping (an untrained network blows up without it), GluonCV's four losses
    (five for Mask R-CNN)."""
    from mxnet import gluon
    from gluoncv.model_zoo.rcnn.faster_rcnn.data_parallel import ForwardBackwardTask as Faster
    from gluoncv.model_zoo.rcnn.mask_rcnn.data_parallel import ForwardBackwardTask as Mask
    net.collect_params().setattr('grad_req', 'null')
    net.collect_train_params().setattr('grad_req', 'write')
    trainer = gluon.Trainer(net.collect_train_params(), 'sgd',
                            {'learning_rate': 1e-4, 'momentum': 0.9, 'clip_gradient': 5})
    losses = [gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False),
              gluon.loss.HuberLoss(rho=1 / 9.), gluon.loss.SoftmaxCrossEntropyLoss(),
              gluon.loss.HuberLoss()]
    if mask:
        return Mask(net, trainer, *losses, gluon.loss.SigmoidBinaryCrossEntropyLoss(),
                    amp_enabled=False), trainer
    return Faster(net, trainer, *losses, mix_ratio=1.0, amp_enabled=False), trainer


def zoo_net(name, num_sample=None, installed=False, **sampler_options):
    """An untrained, initialized model-zoo R-CNN ``name``.

    ``installed``: built while ``samplers.gluoncv.install()`` is in effect (then undone), so
    it carries the sampler install() gives. ``num_sample``: the second stage draws that many
    samples per image (the zoo's 128 or 512 make the heads slow) through our
    ``RCNNTargetSampler`` (``sampler_options`` go to it), with the target generator agreeing
    on ``_max_pos`` as GluonCV's own ``reset_class()`` arranges.
    """
    import samplers.gluoncv as sg
    from gluoncv.model_zoo import get_model
    from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import RCNNTargetGenerator
    if installed:
        sg.install()
    try:
        net = get_model(name, pretrained=False, pretrained_base=False)
    finally:
        if installed:
            sg.uninstall()
    net.initialize()
    if num_sample is not None:
        net._num_sample = num_sample
        net.sampler = sg.RCNNTargetSampler(1, net.sampler._num_proposal, num_sample,
                                           max_num_gt=net.sampler._max_num_gt, **sampler_options)
        net._target_generator = lambda: RCNNTargetGenerator(net.num_class,
                                                            net.sampler._max_pos, 1)
    return net


def reference_background_loss(logits):
    """-log softmax(logits)[..., 0] in float64, the textbook way (numpy or NDArray logits)."""
    z = (logits.asnumpy() if isinstance(logits, mx.nd.NDArray) else np.asarray(logits))
    z = z.astype(np.float64)
    top = z.max(axis=-1, keepdims=True)
    return np.log(np.exp(z - top).sum(axis=-1)) + top[..., 0] - z[..., 0]


def iou(a, b):
    """(N, 4) x (M, 4) IoU of corner boxes, GluonCV's +1-free convention (a plain oracle)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)
