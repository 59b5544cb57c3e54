"""GluonCV drop-in: FasterRCNNTrainTransform, install()/uninstall(), workers, real networks."""
import copy
import inspect
import json
import os
import pickle
import random
import subprocess
import sys
from multiprocessing.pool import ThreadPool

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from mxnet import autograd, gluon

gluoncv = pytest.importorskip('gluoncv')
from gluoncv.data.batchify import Append, Tuple  # noqa: E402
from gluoncv.data.transforms.presets import rcnn  # noqa: E402
from gluoncv.model_zoo import get_model  # noqa: E402
from gluoncv.model_zoo.rcnn.faster_rcnn.data_parallel import ForwardBackwardTask  # noqa: E402
from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN  # noqa: E402
from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import \
    RCNNTargetSampler as GluonCVRCNNTargetSampler  # noqa: E402
from gluoncv.model_zoo.rcnn.faster_rcnn.rcnn_target import RCNNTargetGenerator  # noqa: E402
from gluoncv.model_zoo.rcnn.mask_rcnn.rcnn_target import MaskTargetGenerator  # noqa: E402
from gluoncv.model_zoo.rcnn.rpn import rpn_target  # noqa: E402
from gluoncv.utils.metrics.rcnn import RCNNL1LossMetric, RPNL1LossMetric  # noqa: E402
from gluoncv.data.transforms import mask as tmask  # noqa: E402

import samplers.gluoncv as sg  # noqa: E402
import samplers.gluoncv._common as sg_common  # noqa: E402
import samplers.gluoncv.patches_rcnn as sg_patches  # noqa: E402
import samplers.gluoncv.transforms as sg_transforms  # noqa: E402
from conftest import CPU_CONTEXTS, requires_gpu, zoo_fixture  # noqa: E402
from samplers import HardRule, force_ndarray_backend  # noqa: E402
from helpers import grid_anchors, rectangle_mask, zoo_net  # noqa: E402

# GluonCV's FPN network warns while tracing its features symbol; not ours to fix.
pytestmark = [pytest.mark.filterwarnings('ignore:Cannot decide type:UserWarning'),
              pytest.mark.usefixtures('uninstall_gluoncv')]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: A fresh process that imports mxnet before samplers needs, on Python 3.12, the numpy aliases
#: samplers/_compat.py restores; run from the file, it adds them without importing samplers.
COMPAT_FIRST = 'import runpy; runpy.run_path("samplers/_compat.py")\n'
GluonCVTransform = rcnn.FasterRCNNDefaultTrainTransform
GluonCVMaskTransform = rcnn.MaskRCNNDefaultTrainTransform
MISSING = object()
# GluonCV's own objects, read before any test can install anything: every one install() patches.
ORIGINALS = {(owner, name): vars(owner).get(name, MISSING)
             for owner, name, _ in sg_patches.patches()}
GLUONCV_GENERATOR = rpn_target.RPNTargetGenerator
GLUONCV_SAMPLER = rpn_target.RPNTargetSampler
NO_SUBSAMPLING = 10 ** 7  # num_sample above any anchor count: the quotas never bite
SHORT = 256               # small images keep the network tests quick

# One object, square on the stride-16 anchor grid so that GluonCV gives it positives.
BOX = [64., 64., 192., 192.]


c4_net = zoo_fixture('c4_net', 'faster_rcnn_resnet50_v1b_voc')


FPN_NETS = []


@pytest.fixture(scope='module')
def fpn_net():
    net = zoo_net('faster_rcnn_fpn_resnet50_v1b_coco')
    FPN_NETS.append(net)
    return net


def image(height=256, width=320):
    return mx.nd.array(np.random.RandomState(0).randint(0, 255, (height, width, 3)), dtype='uint8')


def label(*rows):
    """(M, len(row)) float32 label from rows like BOX + [class, difficult]."""
    return np.array(rows, dtype=np.float32).reshape(len(rows), -1)


def make(cls, net, **kwargs):
    """``cls`` (a training transform) for ``net``, not flipping unless told."""
    kwargs.setdefault('flip_p', 0.0)
    kwargs.setdefault('multi_stage', net in FPN_NETS)
    return cls(SHORT, net.max_size, net, ashape=net.ashape, **kwargs)


def apply(transform, img, lab, seed=0):
    np.random.seed(seed)
    mx.random.seed(seed)
    return transform(img, lab)


def cls_targets(outputs):
    """All levels' cls_target values of a transform's outputs, flattened."""
    return np.concatenate([c.ravel() for c in outputs[2]])


def assert_same_outputs(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        xs, ys = (x, y) if isinstance(x, list) else ([x], [y])
        assert len(xs) == len(ys)
        for u, v in zip(xs, ys):
            assert type(u) is type(v)
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u.asnumpy() if isinstance(u, mx.nd.NDArray) else u,
                                          v.asnumpy() if isinstance(v, mx.nd.NDArray) else v)


# ----------------------------------------------------------------------------- importing
def test_importing_samplers_patches_nothing():
    code = ('import samplers, sys\n'
            'from gluoncv.data.transforms.presets import rcnn\n'
            'from gluoncv.model_zoo.rcnn.rpn import rpn_target\n'
            'assert "samplers.gluoncv" not in sys.modules\n'
            'assert rcnn.FasterRCNNDefaultTrainTransform.__call__.__module__ == rcnn.__name__\n'
            'assert rpn_target.RPNTargetGenerator.__module__ == rpn_target.__name__\n'
            'assert rpn_target.RPNTargetSampler.__module__ == rpn_target.__name__\n')
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONWARNINGS='ignore')
    subprocess.run([sys.executable, '-c', code], check=True, env=env, cwd=REPO)


def test_importing_samplers_gluoncv_patches_nothing():
    assert vars(GluonCVTransform)['__call__'].__module__ == rcnn.__name__
    assert vars(GluonCVTransform)['_target_generator'].fget.__module__ == rcnn.__name__
    assert '__reduce_ex__' not in vars(GluonCVTransform)
    assert rpn_target.RPNTargetGenerator.__module__ == rpn_target.__name__
    assert rpn_target.RPNTargetSampler.__module__ == rpn_target.__name__
    assert not sg.is_installed()


# ----------------------------------------------------------------------------- install()
def test_install_swaps_our_generator_and_sampler_into_gluoncv():
    sg.install()
    assert rpn_target.RPNTargetGenerator is sg.RPNTargetGenerator
    assert rpn_target.RPNTargetSampler is sg.RPNTargetSampler
    assert GluonCVTransform.__call__ is sg.FasterRCNNTrainTransform.__call__
    assert sg.is_installed()


def assert_gluoncv_restored():
    for (owner, name), original in ORIGINALS.items():
        assert vars(owner).get(name, MISSING) is original, (owner, name)


def test_install_patches_every_listed_object():
    sg.install()
    for owner, name, new in sg_patches.patches():
        now = vars(owner)[name]
        assert now is new


def test_uninstall_restores_the_very_same_gluoncv_objects():
    sg.install()
    sg.uninstall()
    assert_gluoncv_restored()
    assert '__reduce_ex__' not in vars(GluonCVTransform)
    assert 'forward' not in vars(FasterRCNN)
    assert not sg.is_installed()


def test_install_twice_then_uninstall_once_restores_gluoncv():
    sg.install()
    sg.install(hard_column=None)
    sg.uninstall()
    assert_gluoncv_restored()


def test_uninstall_without_install_changes_nothing():
    sg.uninstall()
    assert_gluoncv_restored()


@pytest.mark.parametrize('bad', [4, 0, -1, 5.5, 'difficult', True])
def test_install_rejects_a_hard_column_that_is_not_an_integer_from_5(bad):
    with pytest.raises(ValueError, match='hard_column must be'):
        sg.install(hard_column=bad)
    assert not sg.is_installed()


def test_installed_gluoncv_transform_gives_our_targets(c4_net):
    lab = label(BOX + [3, 1])
    ours = apply(make(sg.FasterRCNNTrainTransform, c4_net), image(), lab)
    sg.install()
    theirs = apply(make(GluonCVTransform, c4_net), image(), lab)
    assert_same_outputs(theirs, ours)


def test_transform_built_before_install_is_patched_too(c4_net):
    transform = make(GluonCVTransform, c4_net)
    lab = label(BOX + [3, 1])
    assert (cls_targets(apply(transform, image(), lab)) > 0).any()
    sg.install()
    assert not (cls_targets(apply(transform, image(), lab)) > 0).any()


def test_after_uninstall_a_used_transform_gives_gluoncv_outputs_again(c4_net):
    lab = label(BOX + [3, 1])
    transform = make(GluonCVTransform, c4_net)
    sg.install()
    apply(transform, image(), lab)
    sg.uninstall()
    assert type(transform._target_generator) is GLUONCV_GENERATOR
    assert_same_outputs(apply(transform, image(), lab),
                        apply(make(GluonCVTransform, c4_net), image(), lab))


def test_install_with_hard_column_none_reads_no_flags(c4_net):
    sg.install(hard_column=None)
    out = apply(make(GluonCVTransform, c4_net), image(), label(BOX + [3, 1]))
    assert (cls_targets(out) > 0).any()


def test_install_reads_the_hard_column_it_is_given(c4_net):
    sg.install(hard_column=6)
    transform = make(GluonCVTransform, c4_net)
    assert not (cls_targets(apply(transform, image(), label(BOX + [3, 0, 1]))) > 0).any()
    assert (cls_targets(apply(transform, image(), label(BOX + [3, 1, 0]))) > 0).any()


# ----------------------------------------------------------------------------- the transform
def test_difficult_object_gives_no_positive_and_more_ignored_anchors(c4_net):
    transform = make(sg.FasterRCNNTrainTransform, c4_net, num_sample=NO_SUBSAMPLING)
    normal = cls_targets(apply(transform, image(), label(BOX + [3, 0])))
    hard = cls_targets(apply(transform, image(), label(BOX + [3, 1])))
    assert (hard > 0).sum() == 0
    assert (hard < 0).sum() > (normal < 0).sum()


def test_normal_object_gives_positive_anchors(c4_net):
    out = apply(make(sg.FasterRCNNTrainTransform, c4_net), image(), label(BOX + [3, 0]))
    assert (cls_targets(out) > 0).sum() > 0


def test_difficult_object_gives_no_positive_with_fpn(fpn_net):
    transform = make(sg.FasterRCNNTrainTransform, fpn_net)
    assert (cls_targets(apply(transform, image(), label(BOX + [3, 0]))) > 0).any()
    assert not (cls_targets(apply(transform, image(), label(BOX + [3, 1]))) > 0).any()


def test_differs_from_gluoncv_on_difficult_objects(c4_net):
    # GluonCV ignores the difficult column and teaches the object as a positive.
    lab = label(BOX + [3, 1])
    theirs = cls_targets(apply(make(GluonCVTransform, c4_net), image(), lab))
    ours = cls_targets(apply(make(sg.FasterRCNNTrainTransform, c4_net), image(), lab))
    assert (theirs > 0).any() and not (ours > 0).any()


@pytest.mark.parametrize('network', ['c4_net', 'fpn_net'])
def test_five_column_labels_give_gluoncv_outputs_exactly_without_subsampling(network, request):
    net = request.getfixturevalue(network)
    lab = label(BOX + [3], [180., 20., 300., 110., 5])
    kwargs = dict(num_sample=NO_SUBSAMPLING, flip_p=0.5)
    for seed in (0, 1):  # one flipped, one not
        assert_same_outputs(apply(make(sg.FasterRCNNTrainTransform, net, **kwargs), image(), lab,
                                  seed),
                            apply(make(GluonCVTransform, net, **kwargs), image(), lab, seed))


def test_all_zero_hard_column_equals_five_column_labels(c4_net):
    transform = make(sg.FasterRCNNTrainTransform, c4_net)
    lab = label(BOX + [3, 0], [180., 20., 300., 110., 5, 0])
    six = apply(transform, image(), lab)
    five = apply(transform, image(), lab[:, :5])
    for a, b in zip(six[2:], five[2:]):
        assert_same_outputs(a, b)


def test_outputs_have_gluoncv_types_dtypes_and_shapes(c4_net):
    lab = label(BOX + [3, 1])
    ours = apply(make(sg.FasterRCNNTrainTransform, c4_net), image(), lab)
    theirs = apply(make(GluonCVTransform, c4_net), image(), lab)
    assert len(ours) == len(theirs) == 5
    for x, y in zip(ours, theirs):
        xs, ys = (x, y) if isinstance(x, list) else ([x], [y])
        assert [(type(u), u.dtype, u.shape) for u in xs] == [(type(v), v.dtype, v.shape)
                                                             for v in ys]


def test_without_net_returns_image_and_label_only():
    img, lab = sg.FasterRCNNTrainTransform(short=64, flip_p=0)(image(), label(BOX + [3, 1]))
    assert img.shape[0] == 3 and lab.shape == (1, 6)


def test_without_net_does_not_read_the_hard_column():
    # No targets are made, so a column 5 that is no hard flag (a mixup weight) is left alone.
    lab = label(BOX + [3, 0.5])
    img, out = sg.FasterRCNNTrainTransform(short=64, flip_p=0)(image(), lab)
    assert out.shape == (1, 6) and out[0, 5] == 0.5
    sg.install()
    img, out = GluonCVTransform(short=64, flip_p=0)(image(), lab)
    assert out.shape == (1, 6) and out[0, 5] == 0.5


def test_hard_column_none_teaches_difficult_objects_as_gluoncv_does(c4_net):
    transform = make(sg.FasterRCNNTrainTransform, c4_net, hard_column=None)
    assert (cls_targets(apply(transform, image(), label(BOX + [3, 1]))) > 0).any()


def test_rejects_a_hard_column_that_is_not_0_or_1(c4_net):
    transform = make(sg.FasterRCNNTrainTransform, c4_net)
    with pytest.raises(ValueError, match=r'label column 5 .* 0/1 .* got values \[0\.5\].*'
                                         r'hard_column=None'):
        transform(image(), label(BOX + [3, 0.5]))


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_sample=0), 'num_sample must be >= 1, got 0'),
    (dict(pos_ratio=1.5), r'pos_ratio must be in \[0.0, 1.0\], got 1.5'),
    (dict(hard_column=3), 'hard_column must be >= 5, got 3'),
])
def test_rejects_bad_settings_when_constructed(c4_net, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(sg.FasterRCNNTrainTransform, c4_net, **kwargs)


@pytest.mark.parametrize('build', [
    lambda net: make(sg.FasterRCNNTrainTransform, net, box_norm='x'),
    lambda net: make(sg.MaskRCNNTrainTransform, net, box_norm=(1, 1, 0, 1)),
    lambda net: sg.SSDTrainTransform(64, 64, box_norm='x'),
    lambda net: (sg.install(), GluonCVTransform(SHORT, SHORT, net, box_norm='x'))[1]
    ._target_generator], ids=['faster', 'mask', 'ssd', 'installed'])
def test_a_bad_box_norm_is_named_box_norm(c4_net, build):
    # The transforms pass box_norm to their target generator as stds: the error names the
    # transform's argument.
    with pytest.raises(ValueError, match='box_norm must be 4 positive numbers'):
        build(c4_net)


def test_passes_generator_options_through(c4_net):
    # A huge allowed_border keeps anchors across the image border, which GluonCV always drops.
    lab = label(BOX + [3, 0])
    wide = make(sg.FasterRCNNTrainTransform, c4_net, allowed_border=1e9,
                num_sample=NO_SUBSAMPLING)
    plain = make(sg.FasterRCNNTrainTransform, c4_net, num_sample=NO_SUBSAMPLING)
    assert (cls_targets(apply(wide, image(), lab)) == 0).sum() > \
        (cls_targets(apply(plain, image(), lab)) == 0).sum()


# ----------------------------------------------------------------------------- GluonCV-typed parts
@pytest.mark.parametrize('ctx', CPU_CONTEXTS, ids=str)
def test_generator_returns_gluoncv_numpy_types_for_ndarrays(ctx):
    anchors = mx.nd.array([[0, 0, 16, 16], [8, 8, 24, 24], [40, 40, 60, 60]], ctx=ctx)
    cls, box, mask = sg.RPNTargetGenerator()(mx.nd.array([[0, 0, 16, 16]], ctx=ctx),
                                                   anchors, 64, 64)
    assert [(type(a), a.dtype, a.shape) for a in (cls, box, mask)] == [
        (np.ndarray, np.float32, (3,)), (np.ndarray, np.float32, (3, 4)),
        (np.ndarray, np.float64, (3, 4))]
    assert cls[0] == 1


@pytest.mark.parametrize('kind', ['numpy', 'ndarray'])
@pytest.mark.parametrize('dtype', ['float16', 'float32', 'float64'])
def test_generator_returns_gluoncv_dtypes_for_any_float_input(dtype, kind):
    def arr(x):
        return np.array(x, dtype) if kind == 'numpy' else mx.nd.array(x, dtype=dtype)
    cls, box, mask = sg.RPNTargetGenerator()(arr([[0, 0, 16, 16]]),
                                                   arr([[0, 0, 16, 16], [40, 40, 60, 60]]), 64, 64)
    assert (cls.dtype, box.dtype, mask.dtype) == (np.float32, np.float32, np.float64)
    np.testing.assert_array_equal(cls, [1, 0])


@requires_gpu
def test_generator_returns_gluoncv_numpy_types_for_gpu_ndarrays():
    ctx = mx.gpu(0)
    cls, box, mask = sg.RPNTargetGenerator()(
        mx.nd.array([[0, 0, 16, 16]], ctx=ctx), mx.nd.array([[0, 0, 16, 16]], ctx=ctx), 64, 64)
    assert [type(a) for a in (cls, box, mask)] == [np.ndarray] * 3
    assert cls[0] == 1


def test_generator_outside_a_transform_has_no_hard_box():
    gen = sg.RPNTargetGenerator()
    cls, _, _ = gen(np.array([[0, 0, 16, 16]], np.float32),
                    np.array([[0, 0, 16, 16]], np.float32), 64, 64)
    assert cls[0] == 1


boxes_in_64 = st.lists(st.tuples(st.integers(0, 48), st.integers(0, 48), st.integers(8, 40),
                                 st.integers(8, 40)), min_size=1, max_size=5).map(
    lambda rows: np.array([[x, y, min(x + w, 63), min(y + h, 63)] for x, y, w, h in rows],
                          np.float32))


@settings(max_examples=200, deadline=None)
@given(boxes_in_64)
def test_generator_matches_gluoncv_generator_without_subsampling(gt):
    anchors = grid_anchors()
    ours = sg.RPNTargetGenerator(num_sample=NO_SUBSAMPLING)(
        mx.nd.array(gt), mx.nd.array(anchors), 64, 64)
    theirs = GLUONCV_GENERATOR(num_sample=NO_SUBSAMPLING)(mx.nd.array(gt), mx.nd.array(anchors),
                                                          64, 64)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2 ** 31 - 1))
def test_sampler_matches_gluoncv_sampler_without_subsampling(n, m, seed):
    rng = np.random.RandomState(seed)
    ious = rng.choice([0., 0.125, 0.25, 0.375, 0.5, 0.75, 1.], size=(n, m)).astype(np.float32)
    ious[rng.uniform(size=n) < 0.1] = -1  # anchors outside the image
    ious[:, (ious.max(axis=0) <= 0)] = 0.5  # every box overlaps some anchor (see rpn.py)
    ours = sg.RPNTargetSampler(NO_SUBSAMPLING, 0.7, 0.3, 0.5)(ious)
    theirs = GLUONCV_SAMPLER(NO_SUBSAMPLING, 0.7, 0.3, 0.5)(ious)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('dtype', ['float16', 'float32', 'float64'])
def test_sampler_returns_samples_in_the_ious_float_dtype_as_gluoncv(dtype):
    ious = np.array([[0.9, 0.1], [0.1, 0.2]], dtype)
    ours = sg.RPNTargetSampler(256, 0.7, 0.3, 0.5)(ious)
    theirs = GLUONCV_SAMPLER(256, 0.7, 0.3, 0.5)(ious)
    assert [a.dtype for a in ours] == [b.dtype for b in theirs] == [np.dtype(dtype), np.int64]


def test_installed_sampler_keeps_gluoncv_constructor_and_call():
    sg.install()
    sampler = rpn_target.RPNTargetSampler(256, 0.7, 0.3, 0.5)
    samples, matches = sampler(np.array([[0.9, 0.1], [0.1, 0.2]], np.float32))
    np.testing.assert_array_equal(samples, [1, -1])
    assert matches.dtype == np.int64


# ----------------------------------------------------------------------------- threads, processes
class _Objects(mx.gluon.data.Dataset):
    """Image i holds BOX, difficult when i is odd."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return image(), label(BOX + [3, i % 2])


def _positives_per_image(loader):
    counts = []
    for batch in loader:
        counts += [int((c[0] > 0).sum().asscalar()) for c in batch[2]]
    return counts


def _loader(transform, **kwargs):
    return mx.gluon.data.DataLoader(_Objects().transform(transform), batch_size=2,
                                    batchify_fn=Tuple(*[Append() for _ in range(5)]), **kwargs)


@pytest.mark.parametrize('way', ['install', 'FasterRCNNTrainTransform'])
def test_dataloader_worker_processes_get_hard_aware_targets(c4_net, way):
    if way == 'install':
        sg.install()
    transform = make(GluonCVTransform if way == 'install' else sg.FasterRCNNTrainTransform, c4_net)
    counts = _positives_per_image(_loader(transform, num_workers=2))
    assert all(c > 0 for c in counts[0::2]) and not any(counts[1::2])


def test_dataloader_thread_pool_gets_hard_aware_targets(c4_net):
    sg.install()
    counts = _positives_per_image(_loader(make(GluonCVTransform, c4_net), num_workers=2,
                                          thread_pool=True))
    assert all(c > 0 for c in counts[0::2]) and not any(counts[1::2])


def test_concurrent_calls_each_use_their_own_label_flags(c4_net):
    transform = make(sg.FasterRCNNTrainTransform, c4_net)
    flags = [i % 2 for i in range(16)]
    with ThreadPool(4) as pool:
        outs = pool.map(lambda f: transform(image(), label(BOX + [3, f])), flags)
    assert [bool((cls_targets(o) > 0).any()) for o in outs] == [not f for f in flags]


def test_installed_gluoncv_transform_unpickles_hard_aware_in_a_fresh_process(c4_net, tmp_path):
    sg.install()
    transform = make(GluonCVTransform, c4_net)
    apply(transform, image(), label(BOX + [3, 0]))  # caches a generator: it must not travel
    path = tmp_path / 'transform.pkl'
    path.write_bytes(pickle.dumps(transform))
    code = (COMPAT_FIRST +
            'import pickle, sys, numpy as np, mxnet as mx\n'
            'from gluoncv.model_zoo.rcnn.rpn import rpn_target\n'
            't = pickle.load(open(sys.argv[1], "rb"))\n'
            'img = mx.nd.array(np.zeros((256, 320, 3)), dtype="uint8")\n'
            'lab = np.array([[64, 64, 192, 192, 3, 1]], np.float32)\n'
            'pos = sum(int((c > 0).sum()) for c in t(img, lab)[2])\n'
            'assert rpn_target.RPNTargetGenerator.__module__ == rpn_target.__name__\n'
            'print(type(t).__name__, pos)\n')
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONWARNINGS='ignore')
    out = subprocess.run([sys.executable, '-c', code, str(path)], check=True, env=env, cwd=REPO,
                         capture_output=True, text=True).stdout.split()
    assert out == ['FasterRCNNTrainTransform', '0']


class _GluonCVSubclass(GluonCVTransform):
    """A user's own transform built on GluonCV's."""


class _OurSubclass(sg.FasterRCNNTrainTransform):
    """A user's own transform built on ours."""


@pytest.mark.parametrize('cls', [_GluonCVSubclass, _OurSubclass])
def test_installed_patch_pickles_and_copies_subclasses_as_themselves(cls):
    sg.install()
    transform = cls(short=64, flip_p=0)
    assert type(pickle.loads(pickle.dumps(transform))) is cls
    assert type(copy.deepcopy(transform)) is cls


def test_our_transform_survives_pickling(c4_net):
    transform = make(sg.FasterRCNNTrainTransform, c4_net, hard_column=None)
    copy = pickle.loads(pickle.dumps(transform))
    lab = label(BOX + [3, 1])
    assert_same_outputs(apply(copy, image(), lab), apply(transform, image(), lab))


# ----------------------------------------------------------------------------- install() options
def test_install_passes_rpn_options_to_gluoncv_transforms(c4_net):
    sg.install(allow_low_quality_matches=True, hard_iof_thresh=0.5)
    generator = make(GluonCVTransform, c4_net)._target_generator
    assert generator._hard_iof == 0.5 and generator._sampler._allow_low_quality
    # The transform's own keyword arguments win.
    generator = make(GluonCVTransform, c4_net, hard=HardRule(iof_thresh=0.25))._target_generator
    assert generator._hard_iof == 0.25


def test_install_passes_second_stage_options_to_networks_built_after():
    sg.install(rcnn_hard_iou_thresh=0.4, rcnn_hard_iof_thresh=0.6)
    net = get_model('faster_rcnn_resnet50_v1b_voc', pretrained=False, pretrained_base=False)
    assert isinstance(net.sampler, sg.RCNNTargetSampler)
    assert (net.sampler.sampler._hard_iou_thresh, net.sampler.sampler._hard_iof_thresh) == \
        (0.4, 0.6)


@pytest.mark.parametrize('kwargs, match', [
    (dict(hard_iof_thresh=0), 'hard_iof_thresh'),
    (dict(rcnn_hard_iou_thresh=1.5), 'rcnn_hard_iou_thresh'),
    (dict(rcnn_hard_iou_thresh=0), 'rcnn_hard_iou_thresh'),
    (dict(rcnn_hard_iof_thresh=-1), 'rcnn_hard_iof_thresh'),
])
def test_install_rejects_bad_options_and_patches_nothing(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sg.install(**kwargs)
    assert not sg.is_installed()
    assert_gluoncv_restored()


BOOL_INSTALL_OPTIONS = sorted(name for name, p in inspect.signature(sg.install).parameters.items()
                              if isinstance(p.default, bool))


def test_install_has_boolean_options():
    assert 'allow_low_quality_matches' in BOOL_INSTALL_OPTIONS


@pytest.mark.parametrize('name', BOOL_INSTALL_OPTIONS)
@pytest.mark.parametrize('value', ['no', 'False', '', 2, 1, 0, None])
def test_install_boolean_options_refuse_anything_but_a_bool(name, value):
    with pytest.raises(ValueError, match='{} must be True or False'.format(name)):
        sg.install(**{name: value})
    assert not sg.is_installed()


@pytest.mark.parametrize('name', BOOL_INSTALL_OPTIONS)
@pytest.mark.parametrize('value', [True, False, np.bool_(True)])
def test_install_boolean_options_take_a_bool_or_numpy_bool(name, value):
    sg.install(**{name: value})
    assert sg.is_installed()


# ----------------------------------------------------------------------------- a second install()
def rpn_options(transform):
    generator = transform._target_generator
    return generator._sampler._allow_low_quality, generator._hard_iof


def test_second_install_leaves_the_hard_column_of_transforms_built_before_it(c4_net):
    difficult = label(BOX + [3, 1])
    sg.install()
    used, unused = make(GluonCVTransform, c4_net), make(GluonCVTransform, c4_net)
    assert not (cls_targets(apply(used, image(), difficult)) > 0).any()
    sg.install(hard_column=None)
    for transform in (used, unused):
        assert not (cls_targets(apply(transform, image(), difficult)) > 0).any()
        copy_ = pickle.loads(pickle.dumps(transform))  # as a worker process gets it
        assert not (cls_targets(apply(copy_, image(), difficult)) > 0).any()
    assert (cls_targets(apply(make(GluonCVTransform, c4_net), image(), difficult)) > 0).any()


def test_second_install_leaves_the_rpn_options_of_transforms_built_before_it(c4_net):
    sg.install(allow_low_quality_matches=True, hard_iof_thresh=0.5)
    used, unused = make(GluonCVTransform, c4_net), make(GluonCVTransform, c4_net)
    apply(used, image(), label(BOX + [3, 0]))
    sg.install(hard_iof_thresh=0.25)
    for transform in (used, unused):
        assert rpn_options(transform) == (True, 0.5)
        copy_ = pickle.loads(pickle.dumps(transform))
        assert rpn_options(copy_) == (True, 0.5)
    assert rpn_options(make(GluonCVTransform, c4_net)) == (False, 0.25)


def test_second_install_changes_transforms_built_before_any_install_used_or_not(c4_net):
    used, unused = make(GluonCVTransform, c4_net), make(GluonCVTransform, c4_net)
    sg.install(allow_low_quality_matches=True, hard_iof_thresh=0.5)
    apply(used, image(), label(BOX + [3, 0]))
    assert rpn_options(used) == (True, 0.5)
    sg.install(hard_column=None, hard_iof_thresh=0.25)
    difficult = label(BOX + [3, 1])
    for transform in (used, unused):
        assert rpn_options(transform) == (False, 0.25)
        assert (cls_targets(apply(transform, image(), difficult)) > 0).any()


def test_second_install_leaves_the_hard_column_of_a_task_built_before_it():
    sg.install(hard_column=6)
    task = ForwardBackwardTask(gluoncv_net(), None, None, None, None, None, mix_ratio=1.0,
                               amp_enabled=False)
    sg.install(hard_column=None)
    flags_seen = sg_patches._with_task_flags(lambda self, x: sg_common.NETWORK.task)
    batch_label = mx.nd.array([[BOX + [3, 0, 1], BOX + [3, 1, 0]]])
    seen = flags_seen(task, (None, batch_label))
    np.testing.assert_array_equal(seen.asnumpy().ravel(), [1, 0])  # column 6, not none


# ----------------------------------------------------------------------------- the network
GT_BOX = [[16, 16, 112, 112], [128, 40, 240, 176], [-1, -1, -1, -1]]  # the last row: padding
GT_LABEL = [[11], [14], [-1]]
GT_HARD = [[0], [1], [-1]]  # box 1 is hard


def net_inputs():
    x = mx.nd.array(np.random.RandomState(0).uniform(size=(1, 3, 192, 256)))
    return x, mx.nd.array([GT_BOX]), mx.nd.array([GT_LABEL]), mx.nd.array([GT_HARD])


def second_stage(net, *inputs, seed=0):
    """(samples, matches) of one training forward."""
    mx.random.seed(seed)
    np.random.seed(seed)
    with autograd.record():
        out = net(*inputs)
    return out[3].asnumpy()[0], out[4].asnumpy()[0]


# A C4 network built while install() is in effect: it has our second-stage sampler.
installed_net = zoo_fixture('installed_net', 'faster_rcnn_resnet50_v1b_voc', installed=True)


def test_network_built_after_install_has_our_sampler_with_gluoncv_type(installed_net):
    sampler = installed_net.sampler
    assert isinstance(sampler, sg.RCNNTargetSampler)
    assert isinstance(sampler, GluonCVRCNNTargetSampler)
    assert sampler._max_pos == 32  # GluonCV's round(128 * 0.25), which its target generator uses


def test_second_stage_positives_never_match_a_hard_box(installed_net):
    # Hybridized networks: tests/test_e2e_rcnn.py.
    sg.install()
    samples, matches = second_stage(installed_net, *net_inputs())
    assert (samples > 0).any()
    assert set(matches[samples > 0].astype(int)) == {0}


def test_differs_from_gluoncv_second_stage_teaches_difficult_objects(c4_net):
    # GluonCV's network has no fourth input: the difficult box 1 makes positives.
    x, box, cls, _ = net_inputs()
    samples, matches = second_stage(c4_net, x, box, cls)
    assert 1 in set(matches[samples > 0].astype(int))


def test_without_flags_a_training_forward_equals_all_zero_flags(installed_net):
    sg.install()
    x, box, cls, hard = net_inputs()
    none = second_stage(installed_net, x, box, cls)
    zeros = second_stage(installed_net, x, box, cls, mx.nd.zeros_like(hard))
    for a, b in zip(none, zeros):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('bad', [0.5, 3, np.nan])
def test_network_refuses_gt_hard_values_other_than_the_hard_column_values(installed_net, bad):
    sg.install()
    x, box, cls, _ = net_inputs()
    with pytest.raises(ValueError, match=r'gt_hard must hold 0/1 flags'):
        second_stage(installed_net, x, box, cls, mx.nd.array([[[0], [bad], [-1]]]))


def test_network_refuses_bad_flags_a_task_passes(installed_net):
    sg.install()
    x, box, cls, _ = net_inputs()
    with sg_common.bound(sg_common.NETWORK, 'task', mx.nd.array([[[0], [0.5], [-1]]])):
        with pytest.raises(ValueError, match='gt_hard'):
            second_stage(installed_net, x, box, cls)


def test_network_reads_no_gt_hard_on_the_device_path(installed_net, no_host_copies):
    # On a GPU context the flags are not copied to the host to be checked: any value > 0 is
    # hard there (docs/rules.md). force_ndarray_backend runs that path on CPU.
    sg.install()
    x, box, cls, _ = net_inputs()
    with force_ndarray_backend(), autograd.record():
        out = installed_net(x, box, cls, mx.nd.array([[[0], [0.5], [-1]]]))
        mx.nd.waitall()
    assert len(out) > 4


def test_a_network_hybridized_under_install_trains_after_uninstall():
    # Its cached graph took the fourth input, gt_hard; GluonCV's forward passes three.
    net = zoo_net('faster_rcnn_resnet50_v1b_voc', 16, installed=True)
    x, box, cls, _ = net_inputs()
    sg.install()
    net.hybridize()
    try:
        second_stage(net, x, box, cls)
        sg.uninstall()
        samples, matches = second_stage(net, x, box, cls)
    finally:
        net.hybridize(False)
    assert (samples > 0).any() and set(matches[samples > 0].astype(int)) <= {0, 1}


def test_a_network_hybridized_before_install_trains_under_install():
    # Its cached graph took GluonCV's three inputs; under install() the training forward has four.
    net = zoo_net('faster_rcnn_resnet50_v1b_voc', 16, installed=True)
    x, box, cls, hard = net_inputs()
    net.hybridize()
    try:
        second_stage(net, x, box, cls)
        sg.install()
        samples, matches = second_stage(net, x, box, cls, hard)
    finally:
        net.hybridize(False)
    assert (samples > 0).any() and not (matches[samples > 0] == 1).any()  # box 1 is hard


def test_network_built_before_install_refuses_flags(c4_net):
    sg.install()
    with pytest.raises(ValueError, match=r"RCNNTargetSampler .*use_hard_sampler\(net\)"):
        second_stage(c4_net, *net_inputs())
    samples, _ = second_stage(c4_net, *net_inputs()[:3])  # without flags: GluonCV's forward
    assert (samples > 0).any()


def gluoncv_net():
    net = get_model('faster_rcnn_resnet50_v1b_voc', pretrained=False, pretrained_base=False)
    net.initialize()
    return net


def test_forward_backward_task_gives_an_earlier_network_our_sampler():
    net = gluoncv_net()
    old = net.sampler
    sg.install()
    ForwardBackwardTask(net, None, None, None, None, None, mix_ratio=1.0, amp_enabled=False)
    assert isinstance(net.sampler, sg.RCNNTargetSampler)
    for name in ('_num_image', '_num_proposal', '_num_sample', '_max_pos', '_pos_iou_thresh',
                 '_max_num_gt'):
        assert getattr(net.sampler, name) == getattr(old, name)


def test_use_hard_sampler_takes_install_options():
    net = gluoncv_net()
    sg.install(rcnn_hard_iou_thresh=0.45)
    assert sg.use_hard_sampler(net) is net
    assert net.sampler.sampler._hard_iou_thresh == 0.45


def inference_graph(net):
    """The operators and inputs of the graph ``net.export`` writes (traced, not run)."""
    graph = json.loads(net(mx.sym.var('data'))[0].tojson())
    return [node['op'] for node in graph['nodes']], \
        [graph['nodes'][i]['name'] for i in graph['arg_nodes']]


def test_inference_graph_is_unaffected(installed_net):
    gluoncv_graph = inference_graph(installed_net)
    sg.install()
    assert inference_graph(installed_net) == gluoncv_graph
    assert 'data' in gluoncv_graph[1] and 'data1' not in gluoncv_graph[1]


# ----------------------------------------------------------------------------- swapping classes in
def test_our_rcnn_sampler_swaps_into_a_gluoncv_network_without_install():
    net = gluoncv_net()
    net.sampler = sg.RCNNTargetSampler(1, 2000, 128, max_num_gt=100)
    x, box, cls, _ = net_inputs()
    with autograd.record():
        out = net(x, box, cls)
    shapes = [o.shape for o in out[:5]]
    assert shapes == [(1, 128, 21), (1, 32, 20, 4), (1, 128, 4), (1, 128), (1, 128)]
    assert set(np.unique(out[3].asnumpy())) <= {-1, 0, 1}


def test_our_rpn_generator_swaps_into_gluoncv_transform_and_batchify(c4_net):
    transform = make(GluonCVTransform, c4_net)
    transform._internal_target_generator = sg.RPNTargetGenerator()
    items = [transform(image(), label(BOX + [3, 0])) for _ in range(2)]
    batch = Tuple(*[Append() for _ in range(5)])(items)
    assert all(isinstance(c, mx.nd.NDArray) for c in batch[2])
    assert (batch[2][0].asnumpy() > 0).any()


def test_our_rpn_sampler_swaps_into_gluoncv_generator():
    generator = GLUONCV_GENERATOR()
    generator._sampler = sg.RPNTargetSampler(256, 0.7, 0.3, 0.5)
    cls, _, _ = generator(mx.nd.array([[0, 0, 16, 16]]),
                          mx.nd.array([[0, 0, 16, 16], [40, 40, 60, 60]]), 64, 64)
    np.testing.assert_array_equal(cls.asnumpy() if isinstance(cls, mx.nd.NDArray) else cls,
                                  [1, 0])


# ----------------------------------------------------------------------------- Mask R-CNN
@pytest.fixture(scope='module')
def mask_net():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tmask, 'to_mask', rectangle_mask)
        net = get_model('mask_rcnn_resnet18_v1b_coco', pretrained=False, pretrained_base=False)
        net.initialize()
        yield net


def segm(lab):
    return [[np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)]
            for x1, y1, x2, y2 in lab[:, :4]]


def mask_transform(cls, net, **kwargs):
    return cls(SHORT, net.max_size, net, ashape=net.ashape, **kwargs)


def mask_rpn_targets(outputs):
    return np.concatenate([c.ravel() for c in outputs[2]])


def test_mask_transform_gives_no_positive_for_a_difficult_object(mask_net):
    transform = mask_transform(sg.MaskRCNNTrainTransform, mask_net)
    normal, hard = label(BOX + [3, 0]), label(BOX + [3, 1])
    assert (mask_rpn_targets(apply_mask(transform, normal)) > 0).any()
    assert not (mask_rpn_targets(apply_mask(transform, hard)) > 0).any()


def apply_mask(transform, lab, seed=0):
    np.random.seed(seed)
    mx.random.seed(seed)
    return transform(image(), lab, segm(lab))


def test_installed_gluoncv_mask_transform_gives_our_outputs(mask_net):
    lab = label(BOX + [3, 1])
    ours = apply_mask(mask_transform(sg.MaskRCNNTrainTransform, mask_net), lab)
    sg.install()
    theirs = apply_mask(mask_transform(GluonCVMaskTransform, mask_net), lab)
    assert_same_outputs(theirs, ours)
    assert not (mask_rpn_targets(theirs) > 0).any()


def test_installed_gluoncv_mask_transform_pickles_as_ours(mask_net):
    sg.install(hard_iof_thresh=0.5)
    copy_ = pickle.loads(pickle.dumps(mask_transform(GluonCVMaskTransform, mask_net)))
    assert type(copy_) is sg.MaskRCNNTrainTransform
    sg.uninstall()
    assert copy_._target_generator._hard_iof == 0.5
    assert not (mask_rpn_targets(apply_mask(copy_, label(BOX + [3, 1]))) > 0).any()


def mask_targets(cls_targets):
    generator = MaskTargetGenerator(1, 4, 3, (2, 2))
    rois = mx.nd.array([[[0, 0, 8, 8]] * 4])
    gt_masks = mx.nd.ones((1, 1, 8, 8))
    return generator(rois, gt_masks, mx.nd.zeros((1, 4)), mx.nd.array([cls_targets]))


def test_mask_loss_is_zero_not_nan_without_positive_rois():
    sg.install()
    targets, masks = mask_targets([0, 0, 0, -1])
    loss = sg_patches._WithoutPhantom(gluon.loss.SigmoidBinaryCrossEntropyLoss())
    pred = mx.nd.random.normal(shape=targets.shape)
    # GluonCV's Mask R-CNN task normalises the mask loss by the weights' sum.
    total = (loss(pred, targets, masks) * targets.size / masks.sum()).asnumpy()
    assert np.isfinite(total).all() and (total == 0).all()


def test_mask_targets_and_loss_unchanged_with_a_positive_roi():
    before = mask_targets([2, 0, 0, -1])
    sg.install()
    after = mask_targets([2, 0, 0, -1])
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    pred = mx.nd.random.normal(shape=after[0].shape)
    plain = gluon.loss.SigmoidBinaryCrossEntropyLoss()
    np.testing.assert_array_equal(sg_patches._WithoutPhantom(plain)(pred, *after).asnumpy(),
                                  plain(pred, *after).asnumpy())


def rcnn_targets(samples):
    """GluonCV's R-CNN targets for one image of four rows, all matched to box 0 (class 3)."""
    generator = RCNNTargetGenerator(5, max_pos=2)
    generator.initialize()
    rois = mx.nd.array([[[0, 0, 8, 8], [1, 1, 9, 9], [2, 2, 9, 9], [0, 0, 4, 4]]])
    return generator(rois, mx.nd.array([samples]), mx.nd.zeros((1, 4)), mx.nd.array([[3]]),
                     mx.nd.array([[[0, 0, 8, 8]]]))


def test_rcnn_losses_are_zero_not_nan_when_every_row_is_ignored():
    sg.install()
    cls_targets, box_targets, box_masks, _ = rcnn_targets([0, 0, 0, 0])
    cls_loss = sg_patches._WithoutPhantomClass(gluon.loss.SoftmaxCrossEntropyLoss())
    pred = mx.nd.random.normal(shape=(1, 4, 6))
    # GluonCV's tasks normalise both losses by the number of class targets >= 0.
    count = (cls_targets >= 0).sum()
    cls = cls_loss(pred, cls_targets, cls_targets.expand_dims(-1) >= 0) * cls_targets.size / count
    box = gluon.loss.HuberLoss()(mx.nd.ones_like(box_targets), box_targets, box_masks) \
        * box_targets.size / count
    assert (cls.asnumpy() == 0).all() and (box.asnumpy() == 0).all()


def test_rcnn_targets_and_cls_loss_unchanged_with_a_sampled_row():
    before = rcnn_targets([1, -1, 0, 0])
    sg.install()
    after = rcnn_targets([1, -1, 0, 0])
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    pred = mx.nd.random.normal(shape=(1, 4, 6))
    plain = gluon.loss.SoftmaxCrossEntropyLoss()
    weight = after[0].expand_dims(-1) >= 0
    np.testing.assert_array_equal(
        sg_patches._WithoutPhantomClass(plain)(pred, after[0], weight).asnumpy(),
        plain(pred, after[0], weight).asnumpy())


@pytest.mark.parametrize('hybridize', [False, True])
def test_training_step_on_an_image_covered_by_a_hard_box_has_finite_losses_and_gradients(
        hybridize):
    # Every second-stage row is ignored: the proposals lie inside the hard box (IoF 1 >= 0.5)
    # and nothing else is there. GluonCV's task would divide its R-CNN losses by 0.
    from tools.soak import tiny_faster_rcnn
    sg.install(rcnn_hard_iof_thresh=0.5)
    net = tiny_faster_rcnn(256, 320)
    net.initialize(mx.init.Xavier())
    net.collect_params().setattr('grad_req', 'null')
    net.collect_train_params().setattr('grad_req', 'write')
    transform = make(GluonCVTransform, net)
    outputs = apply(transform, image(), label([0, 0, 320, 256, 3, 1]))
    data, lab, rpn_cls, rpn_box, rpn_mask = (mx.nd.array(x) for x in outputs)
    batch = [data.expand_dims(0), lab.expand_dims(0), rpn_cls.reshape((1, -1)),
             rpn_box.reshape((1, -1, 4)), rpn_mask.reshape((1, -1, 4))]
    losses = [gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False),
              gluon.loss.HuberLoss(rho=1 / 9.), gluon.loss.SoftmaxCrossEntropyLoss(),
              gluon.loss.HuberLoss()]
    trainer = gluon.Trainer(net.collect_train_params(), 'sgd', {'learning_rate': 0.0})
    task = ForwardBackwardTask(net, trainer, *losses, mix_ratio=1.0, amp_enabled=False)
    seen = []
    if hybridize:  # the generator then runs inside the network's graph, where hooks see symbols
        net.hybridize()
        metrics = task.forward_backward(batch)
    else:
        hook = net.target_generator.register_forward_hook(
            lambda block, inputs, out: seen.append(inputs[1].asnumpy()))
        try:
            metrics = task.forward_backward(batch)
        finally:
            hook.detach()
        assert (seen[0] == 0).all(), 'the case needs every second-stage row ignored'
    assert all(np.isfinite(m.asnumpy()).all() for m in metrics[:4])
    assert metrics[2].asscalar() == 0 and metrics[3].asscalar() == 0
    grads = [p.grad().asnumpy() for p in net.collect_train_params().values()
             if p.grad_req != 'null']
    assert grads and all(np.isfinite(g).all() for g in grads)


# ----------------------------------------------------------------------------- metrics
@pytest.mark.parametrize('metric_cls', [RPNL1LossMetric, RCNNL1LossMetric])
def test_installed_l1_metrics_report_zero_not_nan_without_positive_boxes(metric_cls):
    metric = metric_cls()
    zeros = mx.nd.zeros((1, 8, 4))
    metric.update([zeros, zeros], [zeros + 1])
    assert np.isnan(metric.get()[1])  # GluonCV's: 0 / 0
    sg.install()
    assert metric.get()[1] == 0.0
    metric.update([zeros, zeros + 1], [zeros + 1])
    assert metric.get()[1] > 0


# ----------------------------------------------------------------------------- feature shapes
def test_transform_infers_the_feature_shape_once_per_image_size(c4_net):
    transform = make(sg.FasterRCNNTrainTransform, c4_net)
    for _ in range(3):
        apply(transform, image(), label(BOX + [3, 0]))
    apply(transform, image(320, 256), label(BOX + [3, 0]))
    assert len(transform._feat_sym.shapes) == 2


# ----------------------------------------------------------------------------- fast transform body

def bits(x):
    """The float32 bit patterns of an image tensor NDArray (bit-for-bit comparison)."""
    return x.asnumpy().view(np.uint32)


@pytest.mark.parametrize('use_cv2', [True, False])
@pytest.mark.parametrize('network', ['c4_net', 'fpn_net'])
def test_our_transform_outputs_equal_gluoncv_bit_for_bit(network, use_cv2, request, monkeypatch):
    net = request.getfixturevalue(network)
    if not use_cv2:
        monkeypatch.setattr(sg_transforms, '_cv2', None)
    lab = label(BOX + [3, 0], [180., 20., 300., 110., 5, 0])
    for flip_p in (0.0, 1.0):
        kwargs = dict(num_sample=NO_SUBSAMPLING, flip_p=flip_p)
        for height, width in ((256, 320), (171, 233)):
            ours = apply(make(sg.FasterRCNNTrainTransform, net, **kwargs), image(height, width),
                         lab)
            theirs = apply(make(GluonCVTransform, net, **kwargs), image(height, width), lab[:, :5])
            assert_same_outputs(ours[2:], theirs[2:])
            assert np.array_equal(ours[1][:, :5], theirs[1]) and ours[1].dtype == theirs[1].dtype
            assert type(ours[0]) is type(theirs[0]) and ours[0].dtype == theirs[0].dtype
            np.testing.assert_array_equal(bits(ours[0]), bits(theirs[0]))


def test_pixel_table_gives_to_tensor_and_normalize_values_for_every_uint8(monkeypatch):
    mean, std = (0.5, 0.25, 0.125), (0.3, 0.7, 0.11)
    pixels = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16),
                       np.arange(255, -1, -1, dtype=np.uint8).reshape(16, 16),
                       np.roll(np.arange(256, dtype=np.uint8), 7).reshape(16, 16)], axis=2)
    theirs = mx.nd.image.normalize(mx.nd.image.to_tensor(mx.nd.array(pixels, dtype='uint8')),
                                   mean=mean, std=std)
    table = sg_transforms._pixel_table(mean, std)
    np.testing.assert_array_equal(bits(sg_transforms._image_tensor(pixels, table, False)),
                                  bits(theirs))
    monkeypatch.setattr(sg_transforms, '_cv2', None)
    np.testing.assert_array_equal(bits(sg_transforms._image_tensor(pixels, table, True)),
                                  bits(theirs)[:, :, ::-1])


def test_flip_draws_from_numpy_as_gluoncv_does(c4_net):
    lab = label([10., 64., 100., 192., 3])
    flipped = set()
    for seed in range(6):
        ours = apply(make(sg.FasterRCNNTrainTransform, c4_net, flip_p=0.5), image(), lab, seed)
        theirs = apply(make(GluonCVTransform, c4_net, flip_p=0.5), image(), lab, seed)
        np.testing.assert_array_equal(ours[1], theirs[1])
        np.testing.assert_array_equal(bits(ours[0]), bits(theirs[0]))
        flipped.add(bool(ours[1][0, 0] > 100))
    assert flipped == {False, True}  # the seeds cover both draws


def test_mask_transform_outputs_equal_gluoncv_bit_for_bit(mask_net, monkeypatch):
    monkeypatch.setattr(tmask, 'to_mask', rectangle_mask)
    lab = label([10., 64., 100., 192., 3, 0], [180., 20., 300., 110., 5, 0])
    for seed in range(3):  # GluonCV's Mask R-CNN flips with probability 0.5
        ours = apply_mask(mask_transform(sg.MaskRCNNTrainTransform, mask_net,
                                         num_sample=NO_SUBSAMPLING), lab, seed)
        theirs = apply_mask(mask_transform(GluonCVMaskTransform, mask_net,
                                           num_sample=NO_SUBSAMPLING), lab[:, :5], seed)
        assert len(ours) == len(theirs) == 6
        assert_same_outputs(ours[2:], theirs[2:])
        assert np.array_equal(ours[1][:, :5], theirs[1]) and ours[1].dtype == theirs[1].dtype
        np.testing.assert_array_equal(bits(ours[0]), bits(theirs[0]))


def test_random_short_side_draws_from_python_random_as_gluoncv_does(c4_net):
    kwargs = dict(num_sample=NO_SUBSAMPLING, flip_p=0.5, short=(200, 300))
    lab = label(BOX + [3])
    for seed in range(3):
        outputs = []
        for cls in (sg.FasterRCNNTrainTransform, GluonCVTransform):
            random.seed(seed)
            outputs.append(apply(cls(net=c4_net, ashape=c4_net.ashape, **kwargs), image(), lab,
                                 seed))
        assert_same_outputs(*outputs)
        np.testing.assert_array_equal(bits(outputs[0][0]), bits(outputs[1][0]))
