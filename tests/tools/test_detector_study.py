"""The detector study (python -m tools.detector): a tiny end-to-end run, and its parts' rules."""
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
                for arm in arms.ARMS[d]}
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
    for arm in ('include', 'exclude', 'flag', 'flag-rpn', 'flag-gluoncv-loss'):
        assert '| {} |'.format(arm) in tables
    assert 'Paired difference from `include`' in tables
    assert 'Paired difference from `exclude`' in tables
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


def test_paired_differences_against_both_baselines():
    results = [dict(detector='ssd', arm=arm, seed=seed, map50=value)
               for arm, values in (('include', [0.5, 0.6, 0.7]), ('exclude', [0.4, 0.5, 0.6]),
                                   ('flag', [0.6, 0.7, 0.8]))
               for seed, value in enumerate(values)]
    seeds, arm_names, table = stats.summarize(results, 'ssd', metrics=('map50',))
    assert seeds == [0, 1, 2] and arm_names == ['include', 'exclude', 'flag']
    diff, low, high = table['flag']['map50']['vs_include']
    assert diff == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    assert table['flag']['map50']['vs_exclude'][0] == pytest.approx(0.2)
    assert 'vs_include' not in table['include']['map50']


def test_merge_combines_runs_of_separate_outputs(study, tmp_path):
    out, body = study
    merged = str(tmp_path / 'merged')
    path = os.path.join(out, 'results.json')
    assert cli.main(['--merge', path, path, '--out', merged]) == 0  # duplicates counted once
    with open(os.path.join(merged, 'results.json')) as f:
        assert len(json.load(f)['results']) == len(body['results'])
    assert os.path.exists(os.path.join(merged, 'tables.md'))
