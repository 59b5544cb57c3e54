"""The option objects (samplers.options): Draw and HardRule as values, and the flat keywords of
earlier releases, which still work for one release behind one DeprecationWarning."""
import dataclasses
import pickle
import warnings

import numpy as np
import mxnet as mx
import pytest

import samplers
from samplers import (Draw, HardRule, QuotaSampler, RCNNTargetSampler, RPNTargetGenerator,
                      RPNTargetSampler, SSDTargetGenerator)
from samplers.options import FLAT_DRAW, FLAT_HARD, fold


# --------------------------------------------------------------------------- the values
@pytest.mark.parametrize('cls', [Draw, HardRule])
def test_values_are_frozen_hashable_equal_by_fields_and_pickle(cls):
    a, b = cls(), cls()
    assert a == b and hash(a) == hash(b)
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.__setattr__(dataclasses.fields(cls)[0].name, None)
    assert len({a, b}) == 1


def test_values_normalise_their_fields():
    assert Draw(num_bins=2.0, floor_thr=0) == Draw(num_bins=2, floor_thr=0.0)
    assert isinstance(Draw(num_bins=2.0).num_bins, int)
    assert HardRule(iof_thresh=1) == HardRule(iof_thresh=1.0)
    assert HardRule(min_size=np.float32(4)).min_size == 4.0


@pytest.mark.parametrize('make, field', [
    (lambda: Draw(pos_sampler='iou_balanced'), 'pos_sampler'),
    (lambda: Draw(neg_sampler='hard'), 'neg_sampler'),
    (lambda: Draw(num_bins=0), 'num_bins'),
    (lambda: Draw(num_bins=2.5), 'num_bins'),
    (lambda: Draw(floor_thr=1.5), 'floor_thr'),
    (lambda: Draw(floor_thr=True), 'floor_thr'),
    (lambda: Draw(floor_fraction=float('nan')), 'floor_fraction'),
    (lambda: HardRule(iou_thresh=0.0), 'iou_thresh'),
    (lambda: HardRule(iof_thresh=1.5), 'iof_thresh'),
    (lambda: HardRule(crowd_iof_thresh=float('nan')), 'crowd_iof_thresh'),
    (lambda: HardRule(min_size=-1), 'min_size'),
    (lambda: HardRule(min_size=float('inf')), 'min_size'),
])
def test_bad_fields_raise_value_error_naming_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


@pytest.mark.parametrize('make, field', [
    (lambda h: RCNNTargetSampler(1, 8, 4, hard=h), 'min_size'),
    (lambda h: RPNTargetGenerator(hard=h), 'iou_thresh'),
    (lambda h: SSDTargetGenerator(hard=h), 'iof_thresh'),
])
def test_a_field_the_sampler_cannot_honour_raises_naming_it(make, field):
    value = 0.5 if field != 'min_size' else 4
    with pytest.raises(ValueError, match='HardRule.{}'.format(field)):
        make(HardRule(**{field: value}))


@pytest.mark.parametrize('make', [lambda: RPNTargetSampler(8, 0.7, 0.3, 0.5, draw='uniform'),
                                  lambda: RCNNTargetSampler(1, 8, 4, hard=0.3),
                                  lambda: SSDTargetGenerator(hard={'min_size': 4})])
def test_an_option_that_is_not_its_object_raises_value_error(make):
    with pytest.raises(ValueError, match='samplers.(Draw|HardRule)'):
        make()


def test_one_value_configures_several_samplers_alike():
    draw = Draw(neg_sampler='iou_balanced', num_bins=2)
    assert RPNTargetSampler(8, 0.7, 0.3, 0.5, draw=draw).draw is draw
    assert RPNTargetGenerator(draw=draw).draw is draw
    assert 'draw=' + repr(draw) in repr(QuotaSampler(8, 0.5, 0.5, draw=draw))
    assert 'draw=' + repr(draw) in repr(RCNNTargetSampler(1, 8, 4, draw=draw))


def test_defaults_stay_out_of_the_repr():
    for sampler in (QuotaSampler(8, 0.5, 0.5, draw=Draw()), RCNNTargetSampler(1, 8, 4),
                    SSDTargetGenerator(hard=HardRule())):
        assert 'draw=' not in repr(sampler) and 'hard=' not in repr(sampler)


# --------------------------------------------------------------------------- the flat keywords
_FLAT_CASES = [
    # (constructor, flat keywords, the same as objects)
    (lambda **k: RPNTargetSampler(16, 0.5, 0.3, 0.5, **k),
     dict(neg_sampler='iou_balanced', num_bins=2), dict(draw=Draw(neg_sampler='iou_balanced',
                                                                  num_bins=2))),
    (lambda **k: QuotaSampler(16, 0.5, 0.5, 0.0, **k),
     dict(pos_sampler='instance_balanced'), dict(draw=Draw(pos_sampler='instance_balanced'))),
    (lambda **k: RCNNTargetSampler(1, 8, 4, **k),
     dict(hard_iou_thresh=0.4, hard_iof_thresh=0.6, crowd_iof_thresh=0.8,
          neg_sampler='iou_balanced'),
     dict(hard=HardRule(iou_thresh=0.4, iof_thresh=0.6, crowd_iof_thresh=0.8),
          draw=Draw(neg_sampler='iou_balanced'))),
    (lambda **k: RPNTargetGenerator(**k),
     dict(hard_iof_thresh=0.5, hard_min_size=6, floor_thr=0.1),
     dict(hard=HardRule(iof_thresh=0.5, min_size=6), draw=Draw(floor_thr=0.1))),
    (lambda **k: SSDTargetGenerator(**k), dict(hard_min_size=6), dict(hard=HardRule(min_size=6))),
]


@pytest.mark.parametrize('make, flat, objects', _FLAT_CASES)
def test_flat_keywords_warn_once_and_build_the_same_sampler(make, flat, objects):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        old = make(**flat)
    deprecations = [w for w in seen if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == 1
    message = str(deprecations[0].message)
    assert all(name in message for name in flat)
    assert deprecations[0].filename == __file__  # it points at the caller
    assert repr(old) == repr(make(**objects))


@pytest.mark.parametrize('make, flat, objects', _FLAT_CASES)
def test_a_field_given_flat_and_in_its_object_raises_value_error(make, flat, objects):
    name = sorted(flat)[0]
    which = 'draw' if name in FLAT_DRAW else 'hard'
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=name):
        make(**{name: flat[name], which: objects[which]})


def test_a_keyword_that_was_never_flat_is_a_type_error():
    with pytest.raises(TypeError, match='bogus'):
        RCNNTargetSampler(1, 8, 4, bogus=1)
    with pytest.raises(TypeError, match='hard_min_size'):  # QuotaSampler has no hard rule
        QuotaSampler(8, 0.5, 0.5, hard_min_size=4)


def test_flat_keywords_label_as_the_objects_do():
    rng = np.random.RandomState(0)
    ious = rng.uniform(0, 0.8, (200, 5)).astype(np.float32)
    new = RPNTargetSampler(64, 0.6, 0.3, 0.5, draw=Draw(neg_sampler='iou_balanced'))
    with pytest.warns(DeprecationWarning):
        old = RPNTargetSampler(64, 0.6, 0.3, 0.5, neg_sampler='iou_balanced')
    np.random.seed(3)
    mx.random.seed(3)
    a = old(ious)[0]
    np.random.seed(3)
    mx.random.seed(3)
    b = new(ious)[0]
    np.testing.assert_array_equal(a, b)


def test_fold_updates_the_base_field_by_field_and_objects_replace_it():
    base = {'hard': HardRule(iof_thresh=0.5, crowd_iof_thresh=0.8), 'x': 1}
    with pytest.warns(DeprecationWarning):
        out = fold('owner', {'hard_min_size': 4}, base=base)
    assert out == {'hard': HardRule(iof_thresh=0.5, crowd_iof_thresh=0.8, min_size=4), 'x': 1}
    assert fold('owner', {'hard': HardRule()}, base=base)['hard'] == HardRule()
    assert fold('owner', {}, base=base) == base


def test_every_flat_keyword_maps_to_a_field():
    assert set(FLAT_DRAW.values()) == {f.name for f in dataclasses.fields(Draw)}
    assert set(FLAT_HARD.values()) == {f.name for f in dataclasses.fields(HardRule)}


def test_install_keeps_its_flat_options_without_a_warning():
    sg = pytest.importorskip('samplers.gluoncv')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', DeprecationWarning)
            sg.install(hard_iof_thresh=0.5, rcnn_hard_iou_thresh=0.4, hard_min_size=6,
                       crowd_iof_thresh=0.8)
        from samplers.gluoncv._common import INSTALLED
        assert INSTALLED.rpn_options['hard'] == HardRule(iof_thresh=0.5, crowd_iof_thresh=0.8,
                                                         min_size=6)
        assert INSTALLED.rcnn_options['hard'] == HardRule(iou_thresh=0.4, crowd_iof_thresh=0.8)
        with pytest.raises(ValueError, match='rcnn_hard_iof_thresh'):
            sg.install(rcnn_hard_iof_thresh=2)
    finally:
        sg.uninstall()


def test_the_objects_are_exported_at_the_top():
    assert samplers.Draw is Draw and samplers.HardRule is HardRule
    assert {'Draw', 'HardRule'} <= set(samplers.__all__)


def test_ohem_second_stage_refuses_a_draw_it_would_not_use():
    from samplers.rcnn_ohem import OHEMTargetSampler
    assert 'draw=' not in repr(OHEMTargetSampler(1, 8, 4, draw=Draw()))
    with pytest.raises(ValueError, match='draw'):
        OHEMTargetSampler(1, 8, 4, draw=Draw(neg_sampler='iou_balanced'))


def test_a_transform_refuses_hard_min_size_given_twice():
    sg = pytest.importorskip('samplers.gluoncv')
    for make in (lambda **k: sg.FasterRCNNTrainTransform(**k),
                 lambda **k: sg.SSDTrainTransform(64, 64, **k)):
        with pytest.raises(ValueError, match='hard_min_size given both'):
            make(hard_min_size=4, hard=HardRule(min_size=3))
    # Once is fine, either way, and both ways reach the generator alike.
    anchors = mx.nd.array([[[32, 32, 16, 16]]])
    ways = [sg.SSDTrainTransform(64, 64, anchors, hard_min_size=4),
            sg.SSDTrainTransform(64, 64, anchors, hard=HardRule(min_size=4))]
    assert [w._target_generator.hard for w in ways] == [HardRule(min_size=4)] * 2
