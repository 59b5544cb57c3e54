"""Bench cases for second-stage OHEM: a training step with ``install(rcnn_ohem=True)`` against
the same step with install()'s random draw, for two networks (see :mod:`tools.bench.cases`).

Both sides are GluonCV's ``ForwardBackwardTask`` step plus ``trainer.step`` on one image, the
networks hybridized, the same weights (one seed); the reference is the plain step, so the
ratio column is plain / OHEM (goal: OHEM at most 1.5x the plain step). The other OHEM
``top_n`` settings are timed alongside and reported in the notes.
"""
import mxnet as mx
import numpy as np

from .harness import case, gluoncv


def _task(net):
    """GluonCV's Faster R-CNN ``ForwardBackwardTask`` over ``net`` and its trainer, as the
    script sets them up (only the training parameters get gradients)."""
    from mxnet import gluon
    task_cls = gluoncv('model_zoo.rcnn.faster_rcnn.data_parallel', 'ForwardBackwardTask')
    net.collect_params().setattr('grad_req', 'null')
    net.collect_train_params().setattr('grad_req', 'write')
    trainer = gluon.Trainer(net.collect_train_params(), 'sgd',
                            {'learning_rate': 1e-4, 'momentum': 0.9, 'clip_gradient': 5})
    losses = [gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False),
              gluon.loss.HuberLoss(rho=1 / 9.), gluon.loss.SoftmaxCrossEntropyLoss(),
              gluon.loss.HuberLoss()]
    return task_cls(net, trainer, *losses, mix_ratio=1.0, amp_enabled=False), trainer


def _batch(net, rng, height, width, boxes, classes):
    """One random image with ``boxes`` labelled boxes (a fifth difficult) through GluonCV's
    training transform and batchify, on the CPU."""
    presets = gluoncv('data.transforms.presets', 'rcnn')
    batchify = gluoncv('data.batchify', 'FasterRCNNTrainBatchify')
    x1 = rng.uniform(0, width * 0.6, boxes)
    y1 = rng.uniform(0, height * 0.6, boxes)
    label = np.stack([x1, y1, x1 + rng.uniform(16, width * 0.4, boxes),
                      y1 + rng.uniform(16, height * 0.4, boxes), rng.randint(0, classes, boxes),
                      rng.uniform(size=boxes) < 0.2], axis=1).astype(np.float32)
    image = mx.nd.array(rng.randint(0, 256, (height, width, 3)), dtype='uint8')
    transform = presets.FasterRCNNDefaultTrainTransform(height, width, net, ashape=net.ashape,
                                                        flip_p=0.0)
    parts = batchify(net, 1)([transform(image, label)])
    return [(p[0] if isinstance(p, (list, tuple)) else p).as_in_context(mx.cpu())
            for p in parts]


def _steps(make_net, arms, sizes, rng):
    """``arm -> step(i)`` for each ``arm`` (``top_n`` or 'plain'), networks of one seed."""
    import samplers.gluoncv as sg
    steps, batch = {}, None
    for arm in arms:
        sg.install(rcnn_ohem=arm != 'plain', ohem_top_n=None if arm in ('plain', 'all') else arm)
        mx.random.seed(0)
        net = make_net()
        if batch is None:
            batch = _batch(net, rng, sizes['height'], sizes['width'], sizes['boxes'],
                           net.num_class)
        task, trainer = _task(net)
        net.hybridize(static_alloc=True)

        def step(_i, task=task, trainer=trainer, batch=batch):
            out = task.forward_backward(batch)
            trainer.step(1)
            mx.nd.waitall()
            return out
        steps[arm] = step
    sg.install(rcnn_ohem=True)  # every step's network keeps its own sampler
    return steps


def _compare(bench, what, steps, default):
    import samplers.gluoncv as sg
    try:
        return bench.compare(
            what, ours={'OHEM top_n {}'.format(default): steps.pop(default)},
            reference=steps.pop('plain'), reference_name='plain step',
            others={'OHEM top_n {}'.format(k): fn for k, fn in steps.items()},
            notes=['ratio: plain step / OHEM step (goal: OHEM <= 1.5x the plain step, '
                   'ratio >= 0.67); GluonCV ForwardBackwardTask + trainer.step, hybridized'])
    finally:
        sg.uninstall()


# Fixed sizes (the networks' own); the ratio is the first OHEM arm's, the others go in the
# notes. Below --scale 1 one small top_n only (a quick run stays quick and small).
@case('ohem-step', ('faster', 1 / 1.5),
      lambda s: {'height': 256, 'width': 320, 'boxes': 4,
                 'arms': ['plain', 128, 'all'] if s.scale >= 1 else ['plain', 128]})
def _ohem_step_case(bench, sizes, rng):
    from tools.detector import model
    steps = _steps(lambda: model.build('rcnn', ('a', 'b', 'c')), sizes['arms'], sizes, rng)
    return _compare(bench, "training step of the detector study's Faster R-CNN, 256x320 "
                    'image, 256 proposals, num_sample 64', steps, sizes['arms'][1])


@case('ohem-step-r50', ('faster', 0.0),
      lambda s: {'height': 192, 'width': 256, 'boxes': 4,
                 'arms': ['plain', 512, 256, 128] if s.scale >= 1 else ['plain', 128]})
def _ohem_step_r50_case(bench, sizes, rng):
    get_model = gluoncv('model_zoo', 'get_model')

    def make():
        net = get_model('faster_rcnn_resnet50_v1b_voc', pretrained=False, pretrained_base=False)
        net.initialize()
        return net
    steps = _steps(make, sizes['arms'], sizes, rng)
    return _compare(bench, 'training step of faster_rcnn_resnet50_v1b_voc (random weights), '
                    '192x256 image, 2000 proposals, num_sample 128', steps, sizes['arms'][1])
