"""The cost of RPN OHEM: a GluonCV Faster R-CNN training step with and without ``rpn_ohem``.

Run from the checkout::

    python -m tools.bench.rpn_ohem_step [--network tiny|resnet50] [--repeat 7]
    python -m tools.bench.rpn_ohem_step --selection     # the selection alone

Both arms run GluonCV's ``ForwardBackwardTask.forward_backward`` (hybridized network, random
weights, CPU) on the same image, alternating, after one warm-up each: ``install()`` with
GluonCV's 256 sampled anchors, and ``install(rpn_ohem=True)`` with every anchor labelled and
the 256 hardest trained. The transform is not timed. Prints each arm's median step time
and the median of the per-round ratios OHEM / plain. ``--selection`` times only what OHEM adds
to a step, the per-anchor loss and the choice (``mx.nd``), for the anchors of one C4 (600 x
1000) and one FPN (800 x 1333) image.
"""
from __future__ import annotations

import argparse
import statistics
import time

import mxnet as mx
import numpy as np

NETWORKS = {'tiny': (192, 256), 'resnet50': (320, 480)}


def _network(name, height, width):
    if name == 'tiny':
        from tools.soak import tiny_faster_rcnn
        net = tiny_faster_rcnn(height, width)
        net.initialize(mx.init.Xavier())
        return net
    from gluoncv.model_zoo import get_model
    net = get_model('faster_rcnn_resnet50_v1b_voc', pretrained=False, pretrained_base=False)
    net.initialize()
    return net


def _arm(name, rpn_ohem, height, width):
    """A step function of one arm: its own network, task and batch, built under its install()."""
    import samplers.gluoncv as sg
    from gluoncv.data.batchify import FasterRCNNTrainBatchify
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform
    from mxnet import gluon
    from gluoncv.model_zoo.rcnn.faster_rcnn.data_parallel import ForwardBackwardTask
    sg.install(rpn_ohem=rpn_ohem)
    mx.random.seed(0)
    np.random.seed(0)
    net = _network(name, height, width)
    net.collect_params().setattr('grad_req', 'null')
    net.collect_train_params().setattr('grad_req', 'write')
    trainer = gluon.Trainer(net.collect_train_params(), 'sgd', {'learning_rate': 1e-4})
    task = ForwardBackwardTask(
        net, trainer, gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False),
        gluon.loss.HuberLoss(rho=1 / 9.), gluon.loss.SoftmaxCrossEntropyLoss(),
        gluon.loss.HuberLoss(), mix_ratio=1.0, amp_enabled=False)
    net.hybridize(static_alloc=True)
    transform = FasterRCNNDefaultTrainTransform(height, width, net, ashape=net.ashape,
                                                flip_p=0.0)
    pixels = np.random.RandomState(0).randint(0, 255, (height, width, 3)).astype(np.uint8)
    label = np.array([[20, 30, 120, 150, 0, 0], [130, 40, 250, 180, 1, 1]], np.float32)
    parts = FasterRCNNTrainBatchify(net, 1)([transform(mx.nd.array(pixels, dtype='uint8'),
                                                       label)])
    batch = [(p[0] if isinstance(p, (list, tuple)) else p).as_in_context(mx.cpu())
             for p in parts]
    labelled = int((batch[2] >= 0).sum().asscalar())

    def step():
        start = time.perf_counter()
        task.forward_backward(batch)
        mx.nd.waitall()
        return time.perf_counter() - start
    return step, labelled


def selection(repeat):
    """Median time of :func:`samplers.gluoncv.patches_rpn_ohem.chosen_anchors` per size."""
    from mxnet import gluon
    from samplers.gluoncv.patches_rpn_ohem import chosen_anchors
    loss = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
    for name, n in (('C4 600x1000', 34410), ('FPN 800x1333', 265845)):
        score = mx.nd.random.normal(shape=(1, n))
        targets = mx.nd.round(mx.nd.random.uniform(-1, 1, shape=(1, n)))
        chosen_anchors(loss, score, targets).wait_to_read()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            chosen_anchors(loss, score, targets).wait_to_read()
            times.append(time.perf_counter() - start)
        print('{} ({} anchors): selection median {:.1f} ms'.format(
            name, n, 1000 * statistics.median(times)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--network', choices=sorted(NETWORKS), default='tiny')
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--selection', action='store_true', help='time the selection alone')
    args = parser.parse_args(argv)
    if args.selection:
        selection(args.repeat)
        return
    height, width = NETWORKS[args.network]
    arms = {}
    for rpn_ohem in (False, True):
        arms[rpn_ohem] = _arm(args.network, rpn_ohem, height, width)
        arms[rpn_ohem][0]()  # warm-up: graphs built
    times = {False: [], True: []}
    for r in range(args.repeat):
        for rpn_ohem in ((False, True) if r % 2 == 0 else (True, False)):
            times[rpn_ohem].append(arms[rpn_ohem][0]())
    ratios = [o / p for o, p in zip(times[True], times[False])]
    print('network {} {}x{}: labelled anchors plain {} / rpn_ohem {}'.format(
        args.network, height, width, arms[False][1], arms[True][1]))
    print('step median: plain {:.4f} s, rpn_ohem {:.4f} s; ratio rpn_ohem / plain {:.3f} '
          '(min {:.3f}, max {:.3f}, {} rounds)'.format(
              statistics.median(times[False]), statistics.median(times[True]),
              statistics.median(ratios), min(ratios), max(ratios), args.repeat))


if __name__ == '__main__':
    main()
