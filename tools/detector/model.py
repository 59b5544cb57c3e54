"""The study's two detectors: GluonCV's own ``FasterRCNN`` and ``SSD`` classes, small backbones.

Both are GluonCV's model-zoo classes, unchanged; only the backbone is ours, five
convolutions small enough to train on a 2-core CPU in a minute or two at about
256 x 320 pixels. Everything else (RPN, RoI pooling, second-stage sampler and
target generator, SSD anchors, decoders, NMS) is GluonCV's.
"""
from __future__ import annotations

import mxnet as mx
from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN
from gluoncv.model_zoo.ssd.ssd import SSD
from mxnet.gluon import nn

#: (height, width) of the synthetic images; the R-CNN keeps every image at its own size.
IMAGE_SHAPE = (256, 320)
STRIDE = 16  # the R-CNN backbone's output stride (four stride-2 convolutions)


def _conv(channels, stride, batch_norm=False):
    block = nn.HybridSequential()
    block.add(nn.Conv2D(channels, 3, strides=stride, padding=1, use_bias=not batch_norm))
    if batch_norm:
        block.add(nn.BatchNorm())
    block.add(nn.Activation('relu'))
    return block


def rcnn_backbone(width=32):
    """Five 3x3 convolutions, stride 16: ``width``, 2w, 2w, 4w, 4w channels, ReLU, no batch norm.

    No batch norm: GluonCV's R-CNN trains one image per device.
    """
    features = nn.HybridSequential()
    for channels, stride in ((width, 2), (2 * width, 2), (2 * width, 1), (4 * width, 2),
                             (4 * width, 2)):
        features.add(_conv(channels, stride))
    return features


def rcnn_top(width=32):
    """The second stage's per-RoI features: one 3x3 convolution on the pooled 7x7 RoI."""
    top = nn.HybridSequential()
    top.add(_conv(2 * width, 1))
    return top


def rcnn_box_head(units=256):
    """Per-RoI vector for the class and box predictors: one fully connected layer, ReLU."""
    head = nn.HybridSequential()
    head.add(nn.Dense(units, activation='relu'))
    return head


def faster_rcnn(classes, short=256, max_size=320, width=32, num_sample=64, post_nms=256,
                max_num_gt=32):
    """GluonCV's ``FasterRCNN`` (C4 style, one feature level) on a small five-conv backbone.

    Anchors 16-128 px (base 16, scales 1-8, ratios 0.5/1/2); RPN with 2000/``post_nms``
    proposals in training and 1000/100 in testing; ``num_sample`` second-stage samples
    per image (a quarter positive at most). Not initialised.
    """
    return FasterRCNN(
        rcnn_backbone(width), rcnn_top(width), list(classes), box_features=rcnn_box_head(),
        short=short, max_size=max_size,
        strides=STRIDE, base_size=16, scales=(1, 2, 4, 8), ratios=(0.5, 1, 2),
        alloc_size=(64, 64), rpn_channel=4 * width, roi_mode='align', roi_size=(7, 7),
        rpn_train_pre_nms=2000, rpn_train_post_nms=post_nms, rpn_test_pre_nms=1000,
        rpn_test_post_nms=100, rpn_min_size=4, num_sample=num_sample, pos_ratio=0.25,
        max_num_gt=max_num_gt, nms_thresh=0.45, nms_topk=200, post_nms=50)


class SSDBase(nn.HybridBlock):
    """Five 3x3 convolutions with batch norm; returns the stride-8, 16 and 32 feature maps."""

    def __init__(self, width=32, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.stem = nn.HybridSequential()
            for channels in (width, 2 * width, 2 * width):  # stride 8 after these three
                self.stem.add(_conv(channels, 2, batch_norm=True))
            self.mid = _conv(4 * width, 2, batch_norm=True)    # stride 16
            self.top = _conv(4 * width, 2, batch_norm=True)    # stride 32

    def hybrid_forward(self, F, x):  # pylint: disable=arguments-differ
        s8 = self.stem(x)
        s16 = self.mid(s8)
        return [s8, s16, self.top(s16)]


def ssd(classes, width=32):
    """GluonCV's ``SSD`` on :class:`SSDBase`: three feature levels, anchors 16 to 160 px.

    ``network=None`` makes GluonCV call ``features`` to build the base network
    (its way of taking a custom multi-level backbone). Not initialised.
    """
    def features(**_):
        return SSDBase(width)

    return SSD(None, base_size=IMAGE_SHAPE[1], features=features, num_filters=None,
               sizes=[16, 40, 96, 160], ratios=[[1, 2, 0.5]] * 3, steps=[8, 16, 32],
               classes=list(classes), nms_thresh=0.45, nms_topk=200, post_nms=50,
               anchor_alloc_size=64)


def build(detector, classes, ctx=None, **options):
    """``detector`` ('rcnn' or 'ssd') built, initialised on ``ctx`` and hybridized."""
    makers = {'rcnn': faster_rcnn, 'ssd': ssd}
    if detector not in makers:
        raise ValueError('detector must be one of {}, got {!r}'.format(sorted(makers), detector))
    net = makers[detector](classes, **options)
    net.initialize(mx.init.Xavier(magnitude=2), ctx=ctx or [mx.cpu()])
    return net
