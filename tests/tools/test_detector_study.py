"""The detector study (python -m tools.detector): a tiny end-to-end run, and its parts' rules."""
import inspect
import json
import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip('gluoncv')
pytest.importorskip('matplotlib')
from tools.detector import __main__ as cli
from tools.detector import arms, data, evaluate, stats
from tools.detector import model as model_mod

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')

# Smaller than --quick, but 2 seeds (so the intervals exist): every arm, both detectors.
TINY = ['--seeds', '2', '--train-images', '6', '--val-images', '4', '--rcnn-steps', '3',
        '--ssd-steps', '2', '--ssd-batch', '2', '--width', '8']


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('study'))
    assert cli.main(TINY + ['--out', out]) == 0
    with open(os.path.join(out, 'results.json')) as f:
        return out, json.load(f)


def test_every_seed_detector_and_arm_has_a_finite_score(study):
    _, body = study
    runs = {(r['seed'], r['detector'], r['arm']): r for r in body['results']}
    expected = {(seed, d, arm.name) for seed in (0, 1) for d in ('rcnn', 'ssd')
                for arm in arms.runnable(d)[0]}
    assert set(runs) == expected
    for r in runs.values():
        for key in ('map50', 'map75', 'hard_fa', 'hard_hit', 'hard_score'):
            assert math.isfinite(r[key])
        assert 0 <= r['map50'] <= 1 and 0 <= r['map75'] <= 1 and 0 <= r['hard_hit'] <= 1
        assert 0 <= r['hard_score'] <= 1
        assert r['hard_fa'] >= 0 and r['seconds'] > 0
        assert r['steps'] == (3 if r['detector'] == 'rcnn' else 2)


def test_arms_of_a_seed_share_initial_weights_and_batch_order(study):
    _, body = study
    for seed in (0, 1):
        for detector in ('rcnn', 'ssd'):
            runs = [r for r in body['results'] if r['seed'] == seed and r['detector'] == detector]
            assert len({r['init_checksum'] for r in runs}) == 1
            assert len({r['order_checksum'] for r in runs}) == 1
    # ... and different seeds start from different weights.
    first = {(r['seed'], r['detector']): r['init_checksum'] for r in body['results']}
    assert first[0, 'rcnn'] != first[1, 'rcnn']


def test_outputs_are_written(study):
    out, body = study
    for name in ('tables.md', 'metrics.png', 'detections.png'):
        assert os.path.getsize(os.path.join(out, name)) > 0
    with open(os.path.join(out, 'tables.md')) as f:
        tables = f.read()
    for arm in ('include', 'exclude', 'ours', 'flag', 'flag-rpn', 'flag-gluoncv-loss'):
        assert '| {} |'.format(arm) in tables
    assert '| `flag` - `ours` |' in tables and '| `flag` - `exclude` |' in tables
    assert 'Secondary: paired difference from `ours`' in tables
    assert body['timing']['wall_seconds'] > 0


def test_report_only_remakes_the_tables(study, capsys):
    out, _ = study
    os.remove(os.path.join(out, 'tables.md'))
    assert cli.main(['--report-only', '--out', out]) == 0
    assert os.path.exists(os.path.join(out, 'tables.md'))
    assert 'Faster R-CNN' in capsys.readouterr().out


def test_quick_setting_is_every_arm_of_both_detectors():
    p = cli.parser()
    settings = cli.settings_from(p, p.parse_args(['--quick']))
    assert settings.seeds == [0] and settings.detectors == ('rcnn', 'ssd')
    assert settings.arms == {}  # all arms
    assert (settings.rcnn_steps, settings.ssd_steps) == (cli.QUICK['rcnn_steps'],
                                                         cli.QUICK['ssd_steps'])


@pytest.mark.parametrize('argv, option', [
    (['--seeds', '0'], '--seeds'), (['--rcnn-arms', 'flag,bogus'], '--rcnn-arms'),
    (['--detectors', 'yolo'], '--detectors'), (['--classes', 'a,b'], '--classes'),
    (['--gpus', 'x'], '--gpus'), (['--voc-root', '/nonexistent'], '--voc-root')])
def test_bad_options_are_refused_naming_the_option(argv, option, capsys):
    p = cli.parser()
    with pytest.raises(SystemExit):
        cli.settings_from(p, p.parse_args(argv))
    assert option in capsys.readouterr().err


def test_synthetic_set_is_voc_format_with_about_a_quarter_hard(tmp_path):
    root = data.write_synthetic_voc(str(tmp_path), seed=3, train_images=40, val_images=10)
    names = sorted(os.listdir(os.path.join(root, 'VOC2007', 'Annotations')))
    assert len(names) == 50
    hard = [int(o.find('difficult').text) for n in names for o in ET.parse(
        os.path.join(root, 'VOC2007', 'Annotations', n)).getroot().iter('object')]
    assert 0.12 < np.mean(hard) < 0.4
    train = data.voc_dataset(root, 'train')
    assert len(train) == 40 and tuple(train.classes) == data.CLASSES
    labels = [data.label_of(train, i) for i in range(len(train))]
    assert all(arms.has_normal_box(label) for label in labels)  # every image keeps a normal box
    # Written once: a second call rewrites nothing.
    stamp = os.path.getmtime(os.path.join(root, 'VOC2007', 'JPEGImages', '000000.jpg'))
    data.write_synthetic_voc(str(tmp_path), seed=3, train_images=40, val_images=10)
    assert os.path.getmtime(os.path.join(root, 'VOC2007', 'JPEGImages', '000000.jpg')) == stamp


def test_exclude_deletes_difficult_rows_and_include_keeps_them():
    label = np.array([[0, 0, 10, 10, 1, 0], [5, 5, 9, 9, 2, 1]], np.float32)
    include, exclude = arms.select('rcnn', ['include', 'exclude'])
    assert np.array_equal(include.training_label(None, label)[1], label)
    assert np.array_equal(exclude.training_label(None, label)[1], label[:1])


def test_false_alarms_count_confident_detections_claiming_a_hard_box():
    gt = np.array([[0, 0, 10, 10, 0, 0], [20, 20, 30, 30, 1, 1], [40, 40, 50, 50, 1, 1]],
                  np.float32)
    boxes = np.array([[20, 20, 30, 30], [21, 20, 30, 30], [40, 40, 50, 50], [0, 0, 10, 10]],
                     np.float32)
    scores = np.array([0.9, 0.6, 0.2, 0.9])  # the third is below 0.3: no claim
    assert evaluate.hard_claims(boxes, scores, gt).tolist() == [2, 0]
    # The top score per hard box counts detections below the threshold too.
    assert evaluate.hard_top_scores(boxes, scores, gt).tolist() == pytest.approx([0.9, 0.2])


def _runs(detector, values, key='map50'):
    return [dict(detector=detector, arm=arm, seed=seed, **{key: v})
            for arm, per_seed in values.items() for seed, v in enumerate(per_seed)]


def test_secondary_comparisons_pair_over_the_seeds_both_arms_finished():
    results = _runs('ssd', {'include': [0.5, 0.6, 0.7], 'ours': [0.4, 0.5, 0.6, 0.9, 0.1],
                            'flag': [0.6, 0.7, 0.8, 0.7, 0.2]})
    c = stats.compare(results, 'ssd', 'flag', 'include', 'map50')
    assert c['seeds'] == [0, 1, 2]
    assert (c['diff'], c['low'], c['high']) == pytest.approx((0.1, 0.1, 0.1))
    c = stats.compare(results, 'ssd', 'flag', 'ours', 'map50')
    assert c['seeds'] == [0, 1, 2, 3, 4] and c['diff'] == pytest.approx(0.1)
    assert stats.per_arm(results, 'ssd', 'map50')['ours']['seeds'] == [0, 1, 2, 3, 4]


def test_primary_family_is_corrected_over_its_planned_size():
    # flag - ours: d = [1, 2, 2, 3] / 100 (p 0.0163); flag - exclude: d = 0.05 every seed (p 0);
    # the two OHEM comparisons have not run: they count, with p = 1, so m = 4.
    results = _runs('rcnn', {'ours': [0.0, 0.0, 0.01, 0.01], 'flag': [0.01, 0.02, 0.03, 0.04],
                             'exclude': [-0.04, -0.03, -0.02, -0.01]})
    rows = {(r['arm'], r['base']): r for r in stats.primary(results, 'rcnn')}
    assert len(rows) == 4 and rows['ohem', 'ours']['comparison'] is None
    fo, fe = rows['flag', 'ours'], rows['flag', 'exclude']
    assert fo['comparison']['p'] == pytest.approx(0.0162766, abs=1e-6)
    assert fe['p_holm'] == 0 and fe['level'] == pytest.approx(0.05 / 4) and fe['resolved']
    assert fo['p_holm'] == pytest.approx(3 * 0.0162766, abs=1e-5) and fo['resolved']
    assert fo['level'] == pytest.approx(0.05 / 3)
    # The corrected interval is the t interval at 1 - level: wider than the 95 % one.
    half = stats.t_quantile(1 - 0.05 / 3, 3) * math.sqrt(2 / 3) / 2 / 100
    assert (fo['low_holm'], fo['high_holm']) == pytest.approx((0.02 - half, 0.02 + half))
    assert fo['low_holm'] < fo['comparison']['low']
    assert not rows['ohem', 'ours']['resolved']


def test_a_primary_gain_uncorrected_resolved_can_be_unresolved_after_holm():
    # d = [1, 2, 2, 3] / 100 at p 0.0163 < 0.05, but Holm over 4 needs p < 0.0125.
    results = _runs('rcnn', {'ours': [0.0, 0.0, 0.01, 0.01], 'flag': [0.01, 0.02, 0.03, 0.04]})
    row = stats.primary(results, 'rcnn')[0]
    assert row['comparison']['low'] > 0 and not row['resolved'] and row['low_holm'] < 0


def test_merge_combines_runs_of_separate_outputs(study, tmp_path):
    out, body = study
    merged = str(tmp_path / 'merged')
    path = os.path.join(out, 'results.json')
    assert cli.main(['--merge', path, path, '--out', merged]) == 0  # duplicates counted once
    with open(os.path.join(merged, 'results.json')) as f:
        assert len(json.load(f)['results']) == len(body['results'])
    assert os.path.exists(os.path.join(merged, 'tables.md'))


class _FixedBoxNet:
    """Stands in for a detector: one box at 10 % to 90 % of its input's width and height."""

    def __call__(self, img):
        import mxnet as mx
        height, width = img.shape[-2:]
        box = [0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height]
        return mx.nd.array([[[0]]]), mx.nd.array([[[0.9]]]), mx.nd.array([[box]])


def _one_image_set(height, width):
    import mxnet as mx
    from mxnet import gluon
    img = mx.nd.array(np.full((height, width, 3), 128), dtype='uint8')
    label = np.array([[0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height, 0, 0]], np.float32)
    dataset = gluon.data.SimpleDataset([(img, label)])
    dataset.classes = ('rectangle',)
    return dataset


def test_rcnn_boxes_and_ground_truth_share_a_frame_when_the_image_is_resized():
    import mxnet as mx
    # 375 x 500 is resized to 240 x 320 (im_scale 1.5625): the network sees the resized image.
    dataset = _one_image_set(375, 500)
    (_, boxes, _, _, gt), = evaluate.predictions(_FixedBoxNet(), 'rcnn', dataset, [mx.cpu()])
    assert boxes == pytest.approx(gt[:, :4], abs=1e-3)
    assert gt[0, :4] == pytest.approx([50, 37.5, 450, 337.5], abs=1e-3)  # the original frame
    assert evaluate.evaluate(_FixedBoxNet(), 'rcnn', dataset, [mx.cpu()])['map50'] == \
        pytest.approx(1.0)


def _gt(*rows):
    return np.array(rows, np.float32).reshape(-1, 6)


def test_hard_as_normal_counts_a_missed_hard_box_as_a_miss():
    gt = _gt([0, 0, 50, 50, 0, 0], [60, 60, 100, 100, 0, 1])
    found = evaluate.score([([[0, 0, 50, 50]], [0], [0.9], gt)], ['a'])
    assert found['map50'] == pytest.approx(1.0)   # the hard box is ignored
    assert found['map50_all'] == pytest.approx(6 / 11)  # recall 1/2: 6 of 11 VOC07 points
    both = evaluate.score([([[0, 0, 50, 50], [60, 60, 100, 100]], [0, 0], [0.9, 0.8], gt)],
                          ['a'])
    assert both['map50'] == pytest.approx(1.0) and both['map50_all'] == pytest.approx(1.0)


def test_small_normal_ap_scores_only_small_normal_boxes():
    # A small normal box (20 x 20), a large normal box and a small hard one.
    gt = _gt([0, 0, 20, 20, 0, 0], [40, 40, 140, 140, 0, 0], [200, 200, 210, 210, 0, 1])
    large_only = evaluate.score([([[40, 40, 140, 140]], [0], [0.9], gt)], ['a'])
    assert large_only['map50'] == pytest.approx(6 / 11) and large_only['map50_small'] == 0
    small_only = evaluate.score([([[0, 0, 20, 20]], [0], [0.9], gt)], ['a'])
    assert small_only['map50_small'] == pytest.approx(1.0)
    # A large detection on nothing is ignored (COCO's rule); a small one is a false alarm.
    stray_large = evaluate.score([([[0, 0, 20, 20], [150, 0, 250, 100]], [0, 0], [0.5, 0.9],
                                   gt)], ['a'])
    assert stray_large['map50_small'] == pytest.approx(1.0)
    stray_small = evaluate.score([([[0, 0, 20, 20], [150, 0, 170, 20]], [0, 0], [0.5, 0.9],
                                   gt)], ['a'])
    assert stray_small['map50_small'] == pytest.approx(0.5)  # precision 1/2 at every recall


def test_small_normal_ap_is_nan_without_small_normal_boxes():
    gt = _gt([40, 40, 140, 140, 0, 0], [0, 0, 10, 10, 0, 1])
    assert math.isnan(evaluate.score([([[40, 40, 140, 140]], [0], [0.9], gt)], ['a'])[
        'map50_small'])


def test_per_class_ap_is_each_class_own():
    gt = _gt([0, 0, 50, 50, 0, 0], [60, 60, 120, 120, 1, 0])
    out = evaluate.score([([[0, 0, 50, 50], [0, 0, 50, 50]], [0, 1], [0.9, 0.8], gt)],
                         ['a', 'b'])
    assert out['ap50'] == pytest.approx({'a': 1.0, 'b': 0.0})
    assert out['map50'] == pytest.approx(0.5)


def _voc_like(seed, images=40):
    rng = np.random.RandomState(seed)
    return [data.draw_image(rng, (256, 320), 'voc-like') for _ in range(images)]


def test_voc_like_regime_has_occluded_truncated_small_normal_objects_and_noisy_flags():
    objects = [(o, objs) for _, objs in _voc_like(0) for o in objs]
    kinds = {k: [o for o, _ in objects if o[6] == k] for k in (
        'occluded', 'truncated', 'small', 'faint', 'small-normal', 'normal', 'occluder')}
    assert all(len(v) >= 3 for v in kinds.values()), {k: len(v) for k, v in kinds.items()}
    for o, image_objects in objects:
        if o[6] == 'occluded':  # mostly behind an occluder drawn over it
            covers = [c for c in image_objects if c[6] == 'occluder'
                      and c[0] <= o[2] and o[0] <= c[2] and c[1] <= o[3] and o[1] <= c[3]]
            assert covers
        if o[6] == 'truncated':  # cut by the border
            assert o[0] == 0 or o[1] == 0 or o[2] == 320 or o[3] == 256
        if o[6] == 'small-normal':
            assert (o[2] - o[0]) * (o[3] - o[1]) < evaluate.SMALL_AREA
    hard = [o for k in data.HARD_APPEARANCES for o in kinds[k]]
    normal = kinds['normal'] + kinds['small-normal'] + kinds['occluder']
    assert 0 < sum(o[5] == 0 for o in hard) < len(hard) / 2   # some hard ones unflagged
    assert 0 < sum(o[5] == 1 for o in normal) < len(normal) / 5  # some normal ones flagged


def test_voc_like_regime_is_deterministic_per_seed():
    first, again, other = _voc_like(5, 6), _voc_like(5, 6), _voc_like(6, 6)
    assert all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(first, again))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_clean_regime_is_what_it_was():
    # The clean regime keeps its draws (the saved clean-regime runs stay reproducible).
    _, objects = data.draw_image(np.random.RandomState(0), (256, 320))
    assert all(o[6] in ('normal', 'small', 'faint') for o in objects)
    assert all((o[5] == 1) == (o[6] != 'normal') for o in objects)


def _install_with(monkeypatch, *options):
    def fake(hard_column=5, **kwargs):
        pass
    params = [inspect.Parameter('hard_column', inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=5)]
    params += [inspect.Parameter(o, inspect.Parameter.KEYWORD_ONLY, default=False)
               for o in options]
    fake.__signature__ = inspect.Signature(params)
    monkeypatch.setattr(arms.sg, 'install', fake)


def test_ohem_arms_refuse_naming_the_missing_install_option(monkeypatch, capsys):
    _install_with(monkeypatch)  # an install() without the OHEM options
    ohem, = arms.select('rcnn', ['ohem'])
    with pytest.raises(ValueError, match="'rcnn_ohem'"):
        ohem.check()
    rpn, = arms.select('rcnn', ['flag+rpn-ohem'])
    with pytest.raises(ValueError, match="'rpn_ohem'"):
        rpn.check()
    assert [a.name for a in arms.runnable('rcnn')[0]] == [
        'include', 'exclude', 'ours', 'flag', 'flag-rpn', 'ours-rpn']
    p = cli.parser()
    with pytest.raises(SystemExit):
        cli.settings_from(p, p.parse_args(['--rcnn-arms', 'ours,ohem']))
    assert 'rcnn_ohem' in capsys.readouterr().err


def test_ohem_arms_run_once_install_takes_their_options(monkeypatch):
    _install_with(monkeypatch, 'rcnn_ohem', 'rpn_ohem', 'ohem_mode')
    for arm in arms.select('rcnn', ['ohem', 'exclude+ohem', 'flag+ohem', 'flag+rpn-ohem',
                                    'ohem-balanced']):
        arm.check()
    assert len(arms.runnable('rcnn')[0]) == len(arms.RCNN_ARMS)
    assert dict(arms.select('rcnn', ['ohem'])[0].options) == dict(hard_column=None,
                                                                   rcnn_ohem=True)


def test_ohem_balanced_is_the_ohem_arm_with_mmdetections_mode_and_secondary():
    ohem, balanced = arms.select('rcnn', ['ohem', 'ohem-balanced'])
    assert dict(balanced.options) == dict(dict(ohem.options), ohem_mode='balanced')
    assert not balanced.primary
    assert 'ohem-balanced' not in {a for pair in arms.PRIMARY['rcnn'] for a in pair}


def test_ours_rpn_arm_labels_a_difficult_box_as_flag_rpn_does_not():
    # ours-rpn is flag-rpn without flags: an anchor on a difficult box is a positive RPN
    # target, as in GluonCV's own transform; flag-rpn ignores it.
    import mxnet as mx
    from tools.detector import model
    net = model.build('rcnn', data.CLASSES, width=8)
    img = np.zeros((256, 320, 3), np.uint8)
    label = np.array([[40., 40., 160., 160., 0., 1.]], np.float32)
    pos = {}
    for name in ('ours-rpn', 'flag-rpn'):
        arm, = arms.select('rcnn', [name])
        np.random.seed(0)
        with arm.context():
            out = arm.train_transform(net)(mx.nd.array(img, dtype='uint8'), label)
        cls_target = out[2]  # (img, label, cls_target, box_target, box_mask)
        cls_target = cls_target.asnumpy() if hasattr(cls_target, 'asnumpy') else cls_target
        pos[name] = int((np.asarray(cls_target) > 0).sum())
    assert pos['ours-rpn'] > 0 and pos['flag-rpn'] == 0


def test_ours_is_install_without_flags():
    for detector in ('rcnn', 'ssd'):
        ours, = arms.select(detector, ['ours'])
        assert ours.installed and dict(ours.options) == {'hard_column': None}


def test_results_record_commit_versions_cpu_and_arguments(study):
    _, body = study
    env, = body['environments']
    for key in ('commit', 'python', 'mxnet', 'gluoncv', 'numpy', 'cpu', 'argv'):
        assert env[key], key
    assert env['argv'][:2] == TINY[:2]


def test_resume_refuses_other_data_settings_and_a_new_run_will_not_overwrite(study, capsys):
    out, _ = study
    with pytest.raises(SystemExit):
        cli.main(TINY + ['--out', out, '--resume', '--regime', 'voc-like'])
    assert '--regime' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(TINY + ['--out', out])
    assert '--resume' in capsys.readouterr().err


CURVE_RUN = ['--seeds', '1', '--train-images', '4', '--val-images', '3', '--rcnn-steps', '4',
             '--detectors', 'rcnn', '--rcnn-arms', 'flag', '--width', '8', '--regime', 'voc-like']


def test_learning_curve_scores_during_the_run_without_changing_its_end(tmp_path):
    plain, curved = str(tmp_path / 'plain'), str(tmp_path / 'curved')
    assert cli.main(CURVE_RUN + ['--out', plain]) == 0
    assert cli.main(CURVE_RUN + ['--out', curved, '--curve', '0.25,0.5']) == 0
    (a,), (b,) = (json.load(open(os.path.join(d, 'results.json')))['results']
                  for d in (plain, curved))
    assert a['curve'] == [] and [p['step'] for p in b['curve']] == [1, 2, 4]
    assert b['curve'][-1]['map50'] == b['map50']
    for key in ('map50', 'map75', 'map50_all', 'losses'):
        assert a[key] == b[key], key
    assert os.path.exists(os.path.join(curved, 'curves.png'))


def _fake_part(path, seeds, arm_names, **settings):
    from tools.detector import run
    options = dict(train_images=2, val_images=2, detectors=('rcnn',), seeds=list(seeds))
    options.update(settings)
    results = [dict(detector='rcnn', arm=arm, seed=seed, map50=0.1 * seed, map75=0.0,
                    map50_all=0.0, map50_small=0.0, hard_score=0.0, hard_fa=0.0, hard_hit=0.0,
                    seconds=1.0, ap50={'rectangle': 0.0}, example=None, curve=[])
               for seed in seeds for arm in arm_names]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    run.save(path, run.Settings(**options), results, environments=[{'part': path}])
    return path


def test_merge_joins_parts_with_other_seeds_and_arms_and_refuses_other_data(tmp_path, capsys):
    first = _fake_part(str(tmp_path / 'a' / 'results.json'), [0, 1, 2],
                       ['include', 'ours', 'flag'], regime='voc-like')
    second = _fake_part(str(tmp_path / 'b' / 'results.json'), [3, 4], ['ours', 'flag'],
                        regime='voc-like')
    out = str(tmp_path / 'merged')
    assert cli.main(['--merge', first, second, '--out', out]) == 0
    with open(os.path.join(out, 'results.json')) as f:
        body = json.load(f)
    assert len(body['results']) == 13 and body['settings']['seeds'] == [0, 1, 2, 3, 4]
    assert [e['part'] for e in body['environments']] == [first, second]
    rows = {(r['arm'], r['base']): r for r in stats.primary(body['results'], 'rcnn')}
    assert rows['flag', 'ours']['comparison']['seeds'] == [0, 1, 2, 3, 4]
    clean = _fake_part(str(tmp_path / 'c' / 'results.json'), [5], ['ours'], regime='clean')
    with pytest.raises(SystemExit):
        cli.main(['--merge', first, clean, '--out', str(tmp_path / 'bad')])
    assert 'regime' in capsys.readouterr().err


def test_resume_with_a_wider_seed_range_runs_only_the_missing_seeds(tmp_path):
    out = str(tmp_path / 'part')
    assert cli.main(CURVE_RUN + ['--out', out]) == 0
    path = os.path.join(out, 'results.json')
    with open(path) as f:
        first = json.load(f)['results'][0]
    resumed = [a if a != '1' or CURVE_RUN[i - 1] != '--seeds' else '2'
               for i, a in enumerate(CURVE_RUN)]
    assert cli.main(resumed + ['--out', out, '--resume']) == 0
    with open(path) as f:
        body = json.load(f)
    assert [r['seed'] for r in body['results']] == [0, 1]
    assert body['results'][0] == first  # kept, not rerun
    assert len(body['environments']) == 2  # one per part


def test_rows_counts_every_second_stage_row_of_every_arm(tmp_path):
    from tools.detector import rows
    num_sample = inspect.signature(model_mod.faster_rcnn).parameters['num_sample'].default
    got = rows.count_rows(['ours', 'ohem'], steps=3, train_images=6, val_images=3,
                          out=str(tmp_path))
    assert set(got) == {'ours', 'ohem'}
    for name, (map50, counts) in got.items():
        assert np.isfinite(map50)
        assert len(counts) >= 3  # one loss call per step at least
        # Each call holds the second stage's rows of one image: positives at most the quota,
        # and positives, background and ignored rows adding up to num_sample.
        assert np.all(counts.sum(1) == num_sample), name
        assert np.all(counts[:, 0] <= round(0.25 * num_sample)), name
        assert np.all(counts[:, :2].sum(1) > 0), name

