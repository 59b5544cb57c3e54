"""Several contexts in one process: GluonCV's data-parallel threads with our second-stage sampler.

GluonCV's scripts put one ``Parallelizable`` step per context into
``gluoncv.utils.parallel.Parallel``, which runs them in Python threads. Here two CPU contexts
(``mx.cpu(0)``, ``mx.cpu(1)``) stand in for two GPUs, with ``samplers.gluoncv.install()`` in
effect, and GluonCV's own ``FasterRCNN`` and ``MaskRCNN`` classes on a tiny backbone,
hybridized, on 128 x 160 images with hard boxes.

The first call of a hybridized Gluon block builds its graph (and finishes deferred parameter
initialisation). MXNet 1.9.1 does not guard that against threads: two first calls at once fail
with ``AttributeError: 'NoneType' object has no attribute '__exit__'`` in ``Block.name_scope``,
and ``Parallel.get`` then waits forever. Stock GluonCV (no ``install()``) fails the same way, so
the tests here use the workaround, one call per context in the calling thread before the threads
take over, and check the threaded steps after it. ``python tests/test_multi_context.py`` (add
``--install``, ``--mask``) runs the unguarded first calls and reports what happened (see
docs/distributed.md).
"""
import argparse
import sys
import threading

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

gluoncv = pytest.importorskip('gluoncv')
from gluoncv.data.batchify import FasterRCNNTrainBatchify  # noqa: E402
from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform  # noqa: E402
from gluoncv.model_zoo.rcnn.faster_rcnn import FasterRCNN  # noqa: E402
from gluoncv.model_zoo.rcnn.faster_rcnn.data_parallel import \
    ForwardBackwardTask as FasterTask  # noqa: E402
from gluoncv.model_zoo.rcnn.mask_rcnn import MaskRCNN  # noqa: E402
from gluoncv.utils.parallel import Parallel, Parallelizable  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')
CONTEXTS = [mx.cpu(0), mx.cpu(1)]
HEIGHT, WIDTH = 128, 160
CLASSES = ('dog', 'cat')
# (xmin, ymin, xmax, ymax, class, hard) per image: one image per context.
LABELS = [
    np.array([[10, 10, 80, 90, 0, 0], [90, 30, 150, 120, 1, 1]], np.float32),  # one hard box
    np.array([[20, 20, 100, 110, 1, 1], [5, 60, 60, 125, 0, 1]], np.float32),  # every box hard
]


@pytest.fixture(scope='module', autouse=True)
def _installed():
    sg.install()
    yield
    sg.uninstall()


def tiny_network(mask):
    """GluonCV's FasterRCNN / MaskRCNN on a five-convolution backbone (stride 16), both contexts."""
    def convs(*channels):
        block = gluon.nn.HybridSequential()
        for c in channels:
            block.add(gluon.nn.Conv2D(c, 3, strides=2, padding=1), gluon.nn.Activation('relu'))
        return block
    options = dict(short=HEIGHT, max_size=WIDTH, roi_size=(14, 14), strides=16, rpn_channel=16,
                   scales=(2, 4, 8), alloc_size=(32, 32), rpn_train_pre_nms=300,
                   rpn_train_post_nms=64, rpn_test_pre_nms=100, rpn_test_post_nms=32,
                   rpn_min_size=4, num_sample=16, max_num_gt=8, train_patterns='.*')
    features, top = convs(8, 16, 16, 32), convs(32)
    if mask:
        net = MaskRCNN(features, top, CLASSES, mask_channels=8, rcnn_max_dets=16, **options)
    else:
        net = FasterRCNN(features, top, CLASSES, **options)
    net.initialize(mx.init.Xavier())
    net.collect_params().reset_ctx(CONTEXTS)
    net.collect_params().setattr('grad_req', 'null')
    net.collect_train_params().setattr('grad_req', 'write')
    # The target generator is a block of its own, made on first use: put it on every context too.
    net.target_generator.collect_params().reset_ctx(CONTEXTS)
    return net


def batches(net):
    """One batch per context: image, label (hard column 5), RPN targets, and rectangle masks."""
    transform = FasterRCNNDefaultTrainTransform(HEIGHT, WIDTH, net, ashape=net.ashape,
                                                flip_p=0.0)
    batchify = FasterRCNNTrainBatchify(net, 1)
    rng = np.random.RandomState(0)
    out = []
    for label, ctx in zip(LABELS, CONTEXTS):
        image = mx.nd.array(rng.randint(0, 255, (HEIGHT, WIDTH, 3)), dtype='uint8')
        parts = [p[0] if isinstance(p, (list, tuple)) else p
                 for p in batchify([transform(image, label)])]
        masks = np.zeros((1, len(label), HEIGHT, WIDTH), np.float32)
        for j, (x1, y1, x2, y2) in enumerate(label[:, :4].astype(int)):
            masks[0, j, y1:y2, x1:x2] = 1
        out.append([p.as_in_context(ctx) for p in parts] + [mx.nd.array(masks, ctx=ctx)])
    return out


def masked_mean(loss, weight):
    """Sum of ``loss * weight`` over the sum of ``weight`` (at least 1: no 0/0)."""
    return (loss * weight).sum() / mx.nd.maximum(weight.sum(), 1)


class Step(Parallelizable):
    """Our forward/backward on one context: RPN, second-stage and (Mask R-CNN) mask losses.

    Hard flags go to the network as its fourth input. An exception is returned, not raised, so
    that ``Parallel.get`` never waits for a thread that died.
    """

    def __init__(self, net, mask):
        self.net, self.mask = net, mask
        self.bce = gluon.loss.SigmoidBinaryCrossEntropyLoss()
        self.ce = gluon.loss.SoftmaxCrossEntropyLoss()

    def forward_backward(self, x):
        try:
            return self._step(*x)
        except Exception as error:  # pylint: disable=broad-except
            return error

    def _step(self, data, label, rpn_cls, rpn_box_target, rpn_box_mask, gt_masks):
        with autograd.record():
            out = self.net(data, label[:, :, :4], label[:, :, 4:5], label[:, :, 5:6])
            if self.mask:
                (cls_pred, box_pred, mask_pred, roi, _, matches, rpn_score, rpn_box, _,
                 cls_target, box_target, box_mask, indices) = out
            else:
                (cls_pred, box_pred, roi, _, matches, rpn_score, rpn_box, _,
                 cls_target, box_target, box_mask, _) = out
            rpn_weight = rpn_cls >= 0
            losses = [
                masked_mean(self.bce(rpn_score.squeeze(axis=-1), rpn_cls), rpn_weight),
                masked_mean(mx.nd.abs(rpn_box - rpn_box_target), rpn_box_mask),
                masked_mean(self.ce(cls_pred, cls_target), cls_target >= 0),
                masked_mean(mx.nd.abs(box_pred - box_target), box_mask),
            ]
            if self.mask:
                chosen = indices[0]
                mask_target, mask_weight = self.net.mask_target(
                    roi[0].take(chosen).expand_dims(0), gt_masks,
                    matches[0].take(chosen).expand_dims(0),
                    cls_target[0].take(chosen).expand_dims(0))
                # install() marks a batch without positive RoIs with one weight of 0.5: drop it.
                losses.append(masked_mean(self.bce(mask_pred, mask_target), mask_weight == 1))
            total = mx.nd.add_n(*losses)
        total.backward()
        return mx.nd.stack(*losses)


def gradients(net):
    """{context: [gradient as numpy, per trainable parameter]}."""
    params = [p for p in net.collect_train_params().values() if p.grad_req != 'null']
    return {ctx: [p.grad(ctx).asnumpy() for p in params] for ctx in CONTEXTS}


def check_step(net, results):
    """Finite losses from every context, finite gradients on every context, some non-zero."""
    for result in results:
        assert not isinstance(result, Exception), repr(result)
        assert np.isfinite(result.asnumpy()).all(), result
    assert {r.context for r in results} == set(CONTEXTS)
    for ctx, grads in gradients(net).items():
        assert all(np.isfinite(g).all() for g in grads), ctx
        assert sum(float(np.abs(g).sum()) for g in grads) > 0, ctx


def warm_up(step, data):
    """The workaround: each context's first call in this thread, one after the other."""
    return [step.forward_backward(part) for part in data]


def train_threaded(net, step, data, iterations, serial_init):
    """``iterations`` steps, each context in its own ``Parallel`` thread; results per step."""
    trainer = gluon.Trainer(net.collect_train_params(), 'sgd',
                            {'learning_rate': 1e-3, 'momentum': 0.9, 'clip_gradient': 5})
    executor = Parallel(len(CONTEXTS), step, serial_init=serial_init)
    steps = []
    for _ in range(iterations):
        for part in data:
            executor.put(part)
        results = [executor.get() for _ in CONTEXTS]
        steps.append(results)
        if any(isinstance(r, Exception) for r in results):
            break
        check_step(net, results)
        trainer.step(len(CONTEXTS))
    return steps


@pytest.mark.parametrize('mask', [False, True], ids=['faster_rcnn', 'mask_rcnn'])
def test_threads_after_one_warm_up_call_per_context(mask):
    net = tiny_network(mask)
    net.hybridize()
    assert isinstance(net.sampler, sg.RCNNTargetSampler)
    step, data = Step(net, mask), batches(net)
    check_step(net, warm_up(step, data))
    steps = train_threaded(net, step, data, iterations=2, serial_init=False)
    assert len(steps) == 2
    for results in steps:
        check_step(net, results)


def test_parallel_serial_init_is_the_same_workaround():
    """GluonCV's ``Parallel(serial_init=True)`` with one thread per context: first calls serial."""
    net = tiny_network(mask=False)
    net.hybridize(static_alloc=True)
    steps = train_threaded(net, Step(net, mask=False), batches(net), iterations=3,
                           serial_init=True)
    assert len(steps) == 3
    for results in steps:
        check_step(net, results)


def test_gluoncv_task_in_threads_passes_each_threads_own_flags():
    """GluonCV's (patched) ForwardBackwardTask in Parallel threads, as train_faster_rcnn.py does."""
    net = tiny_network(mask=False)
    net.hybridize()
    trainer = gluon.Trainer(net.collect_train_params(), 'sgd', {'learning_rate': 1e-3})
    task = FasterTask(net, trainer, gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False),
                      gluon.loss.HuberLoss(rho=1 / 9.), gluon.loss.SoftmaxCrossEntropyLoss(),
                      gluon.loss.HuberLoss(), mix_ratio=1.0, amp_enabled=False)
    executor = Parallel(len(CONTEXTS), task, serial_init=True)
    data = [part[:5] for part in batches(net)]
    targets = {ctx: [] for ctx in CONTEXTS}
    for _ in range(2):
        for part in data:
            executor.put(part)
        for _ in CONTEXTS:
            result = executor.get()
            assert all(np.isfinite(r.asnumpy()).all() for r in result[:4])
            cls_target = result[6][0][0]  # (rcnn_acc_metric) the second stage's class targets
            targets[cls_target.context].append(cls_target.asnumpy())
        trainer.step(len(CONTEXTS))
    assert all(len(t) == 2 for t in targets.values())
    # Context 1's image has only hard boxes: no second-stage positive there; context 0 has some.
    assert all((t <= 0).all() for t in targets[mx.cpu(1)])
    assert all((t > 0).any() for t in targets[mx.cpu(0)])


def main(argv=None):
    """Unguarded first calls from two threads at once; prints what happened (a repro)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('--install', action='store_true', help='samplers.gluoncv.install() first')
    parser.add_argument('--mask', action='store_true', help='Mask R-CNN instead of Faster R-CNN')
    parser.add_argument('--timeout', type=float, default=60, help='seconds to wait per step')
    args = parser.parse_args(argv)
    if args.install:
        sg.install()
    net = tiny_network(args.mask)
    net.hybridize()
    step = Step(net, args.mask)
    if not args.install:  # a stock network takes no hard flags
        step.net = lambda data, box, cls, hard: net(data, box, cls)
        step.net.mask_target = getattr(net, 'mask_target', None)
    data = batches(net)
    results = []

    def run(part):
        results.append(step.forward_backward(part))
    threads = [threading.Thread(target=run, args=(part,), daemon=True) for part in data]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.timeout)
    hung = sum(thread.is_alive() for thread in threads)
    for result in results:
        print('error' if isinstance(result, Exception) else 'ok',
              ' '.join(repr(result).split())[:200])
    print('{} of {} first calls returned, {} still running after {} s'.format(
        len(results), len(threads), hung, args.timeout))
    return 1 if hung or any(isinstance(r, Exception) for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
