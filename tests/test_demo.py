"""The demo (`python -m samplers.demo`): data, anchors, the runs, the table and the pictures."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from samplers import demo

pytest.importorskip('matplotlib')  # the demo draws its pictures with the viz extra

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b'\x89PNG\r\n\x1a\n'
TINY = ['--steps', '2', '--train-images', '8', '--val-images', '8']
PICTURES = ('samples.png', 'loss_curves.png', 'proposals.png')


def test_cli_prints_a_table_per_run_and_writes_the_pictures(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONWARNINGS='ignore')
    run = subprocess.run([sys.executable, '-m', 'samplers.demo', '--out', str(tmp_path)] + TINY,
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith('run '))
    assert 'recall@{} normal'.format(demo.TOP_K) in lines[header]
    assert 'top-{} on hard'.format(demo.TOP_K) in lines[header]
    rows = [line.split()[0] for line in lines[header + 2:header + 5]]
    assert rows == ['gluoncv', 'hard-aware', 'hard-aware+OHEM']
    assert 'GluonCV RPNTargetGenerator' in lines[header + 2]
    for name in PICTURES:
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_shows_progress_on_stderr(tmp_path, capsys):
    demo.main(['--out', str(tmp_path), '--no-ohem'] + TINY)
    err = capsys.readouterr().err
    assert 'gluoncv' in err and 'hard-aware' in err and '2/2' in err


def test_progress_works_without_tqdm(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'tqdm', None)  # import tqdm now raises ImportError
    demo.main(['--out', str(tmp_path), '--no-ohem'] + TINY)
    assert 'hard-aware: 2/2' in capsys.readouterr().err


def test_no_ohem_skips_the_third_run(tmp_path):
    rows = demo.main(['--out', str(tmp_path), '--no-ohem'] + TINY)
    assert [row['run'] for row in rows] == ['gluoncv', 'hard-aware']


def test_baseline_says_when_gluoncv_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, 'gluoncv_targets', lambda: None)
    rows = demo.main(['--out', str(tmp_path), '--no-ohem'] + TINY)
    assert rows[0]['run'] == 'no hard flags'
    assert 'gluoncv not installed' in rows[0]['source']


def test_same_seed_gives_the_same_table(tmp_path):
    args = ['--out', str(tmp_path), '--no-ohem', '--seed', '3'] + TINY
    first, second = demo.main(args), demo.main(args)
    strip = [{k: v for k, v in row.items() if k != 'time'} for row in first]
    assert strip == [{k: v for k, v in row.items() if k != 'time'} for row in second]


@pytest.mark.parametrize('steps', ['0', '-1'])
def test_rejects_fewer_than_one_step(steps, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(['--steps', steps])
    assert '--steps must be >= 1, got {}'.format(steps) in capsys.readouterr().err


@pytest.mark.parametrize('seed', ['-1', str(2 ** 32 - 1)])
def test_rejects_a_seed_outside_numpys_range(seed, capsys):
    # The validation set is drawn from seed + 1, so 2**32 - 2 is the largest usable seed.
    with pytest.raises(SystemExit):
        demo.parse_args(['--seed', seed])
    assert '--seed must be in [0, {}], got {}'.format(2 ** 32 - 2, seed) in \
        capsys.readouterr().err


def test_default_output_folder_is_samplers_demo():
    assert demo.parse_args([]).out == 'samplers-demo'


# ----------------------------------------------------------------------------- pieces
def test_dataset_is_the_same_for_the_same_seed():
    a, b, c = demo.make_dataset(4, seed=7), demo.make_dataset(4, seed=7), demo.make_dataset(4, 8)
    for (img_a, lab_a), (img_b, lab_b) in zip(a, b):
        np.testing.assert_array_equal(img_a, img_b)
        np.testing.assert_array_equal(lab_a, lab_b)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_dataset_images_and_labels_have_the_documented_form():
    for img, lab in demo.make_dataset(20, seed=0):
        assert img.shape == (demo.IMAGE_SIZE, demo.IMAGE_SIZE, 3) and img.dtype == np.uint8
        assert lab.ndim == 2 and lab.shape[1] == 6 and lab.dtype == np.float32
        assert np.isin(lab[:, 5], (0, 1)).all()
        assert np.isin(lab[:, 4], range(demo.NUM_CLASSES)).all()
        assert (lab[:, :2] >= 0).all() and (lab[:, 2:4] <= demo.IMAGE_SIZE).all()


def test_dataset_flags_every_tiny_object_hard():
    labels = np.concatenate([lab for _, lab in demo.make_dataset(100, seed=0)])
    side = np.maximum(labels[:, 2] - labels[:, 0], labels[:, 3] - labels[:, 1])
    assert (labels[side < 10, 5] == 1).all()
    assert (labels[:, 5] == 1).any() and (labels[:, 5] == 0).any()


def test_anchors_follow_the_rpn_output_order():
    anchors = demo.make_anchors()
    net = demo.TinyRPN()
    net.initialize()
    scores, deltas = net(mx.nd.zeros((1, 3, demo.IMAGE_SIZE, demo.IMAGE_SIZE)))
    per_cell = len(demo.ANCHOR_SIZES) * len(demo.ANCHOR_RATIOS)
    cells = demo.IMAGE_SIZE // demo.STRIDE
    assert scores.shape == (1, len(anchors)) and deltas.shape == (1, len(anchors), 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    grid = centres.reshape(cells, cells, per_cell, 2)
    assert np.allclose(grid[0, 1, :, 0], 1.5 * demo.STRIDE)  # x grows along a row
    assert np.allclose(grid[1, 0, :, 1], 1.5 * demo.STRIDE)  # y grows down the rows


def test_table_has_a_header_a_rule_and_one_line_per_run():
    row = dict(run='r', source='s', recall=0.5, hard='1 (of 2 hard objects)', cls=0.1, box=0.2,
               time=1.0)
    lines = demo.format_table([row, dict(row, run='second')]).splitlines()
    assert len(lines) == 4 and set(lines[1].replace(' ', '')) == {'-'}
    assert lines[3].startswith('second')
