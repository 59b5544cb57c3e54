"""End to end: a model-zoo SSD trained for two iterations on a tiny VOC set with difficult objects.

Shaped like GluonCV's SSD training loop (our code): VOCDetection, the SSD training
transform, GluonCV's DataLoader with Stack batchify and two worker processes, the
network under autograd, the SSD loss, a trainer step. Both ways in: the explicit
classes, and GluonCV's own classes after ``install()``. Checked: no positive target
is a hard box, hard boxes leave ignored anchors, ignored anchors get no
classification gradient, the losses are finite.
"""
import mxnet as mx
import numpy as np
import pytest

gluoncv = pytest.importorskip('gluoncv')
from gluoncv.data import VOCDetection  # noqa: E402
from gluoncv.data.batchify import Stack, Tuple  # noqa: E402
from gluoncv.data.transforms.presets.ssd import SSDDefaultTrainTransform  # noqa: E402
from gluoncv.model_zoo import get_model  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402
from helpers import HARD_CLASS, write_voc  # noqa: E402

pytestmark = [pytest.mark.filterwarnings('ignore:Cannot decide type:UserWarning'),
              pytest.mark.usefixtures('uninstall_gluoncv')]
SIZE = 256
ITERATIONS = 2


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('voc')
    write_voc(root)
    return root


@pytest.fixture(scope='module')
def net():
    net = get_model('ssd_512_mobilenet1.0_voc', pretrained_base=False)
    net.initialize()
    return net


def train(net, dataset, transform, loss_fn):
    """Two iterations of SSD training; returns what each iteration saw."""
    loader = mx.gluon.data.DataLoader(
        dataset.transform(transform), batch_size=2, shuffle=False, last_batch='rollover',
        batchify_fn=Tuple(Stack(), Stack(), Stack()), num_workers=2)
    trainer = mx.gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1e-3})
    seen = []
    for i, batch in enumerate(loader):
        if i == ITERATIONS:
            break
        data, cls_targets, box_targets = (  # worker batches live in shared memory
            mx.gluon.utils.split_and_load(part, ctx_list=[mx.cpu()])[0] for part in batch)
        with mx.autograd.record():
            cls_pred, box_pred, _ = net(data)
            total, cls_loss, box_loss = loss_fn([cls_pred], [box_pred], [cls_targets],
                                                [box_targets])
            mx.autograd.backward(total)
        trainer.step(1)
        # The classification gradient each anchor gets, from the same loss on a copy.
        logits = cls_pred.detach()
        logits.attach_grad()
        with mx.autograd.record():
            again = loss_fn([logits], [box_pred.detach()], [cls_targets], [box_targets])[1]
        mx.autograd.backward(again)
        seen.append({'cls_targets': cls_targets.asnumpy(), 'grad': logits.grad.asnumpy(),
                     'losses': [x.asnumpy() for part in (total, cls_loss, box_loss)
                                for x in part]})
    return seen


@pytest.mark.parametrize('way', ['explicit', 'install'])
def test_ssd_training_on_difficult_objects(voc_root, net, way):
    dataset = VOCDetection(root=str(voc_root), splits=[(2007, 'train')])
    hard_id = dataset.classes.index(HARD_CLASS) + 1  # SSD class targets are id + 1
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, SIZE, SIZE)))
    if way == 'explicit':
        transform, loss_fn = sg.SSDTrainTransform(SIZE, SIZE, anchors), sg.SSDMultiBoxLoss()
    else:
        sg.install()  # what a user adds to train_ssd.py; the rest is GluonCV's own classes
        transform, loss_fn = SSDDefaultTrainTransform(SIZE, SIZE, anchors), \
            gluoncv.loss.SSDMultiBoxLoss()
    seen = train(net, dataset, transform, loss_fn)
    assert len(seen) == ITERATIONS
    targets = np.concatenate([s['cls_targets'] for s in seen])
    grads = np.concatenate([s['grad'] for s in seen])
    assert (targets > 0).any()                 # normal objects give positives
    assert not (targets == hard_id).any()      # no positive on a hard (difficult) box
    assert (targets < 0).any()                 # difficult objects leave ignored anchors
    assert not grads[targets < 0].any()        # ignored anchors carry no classification loss
    assert grads[targets > 0].any()
    assert all(np.isfinite(x).all() for s in seen for x in s['losses'])
