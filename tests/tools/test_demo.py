"""The demo (`python -m tools.demo`, `make demo`): the study on a small budget, pictures."""
import os
import subprocess
import sys

import numpy as np
import pytest

from samplers import IGNORE, NEGATIVE, POSITIVE

from tools import demo
from tools.study import __main__ as cli
from tools.study import arms, data, model

pytest.importorskip('matplotlib')  # the demo draws its pictures with the viz extra

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PNG = b'\x89PNG\r\n\x1a\n'
TINY = ['--seeds', '2', '--steps', '2', '--train-images', '8', '--val-images', '16']
PICTURES = ('samples.png', 'loss_curves.png', 'proposals.png', 'differences.png')


def test_cli_prints_the_headline_tables_and_writes_the_pictures(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONWARNINGS='ignore')
    run = subprocess.run([sys.executable, '-m', 'tools.demo', '--out', str(tmp_path),
                          '--arms', 'gluoncv,hard'] + TINY,
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert 'Mean ± sd over 2 seed(s) (0, 1)' in out
    assert 'Paired difference against gluoncv (mean, 95 % t-interval over seeds)' in out
    header = '| arm | ' + ' | '.join(model.METRICS.values()) + ' |'
    assert out.count(header) == 2
    assert [line.split('|')[1].strip() for line in out.splitlines()
            if line.startswith('| hard')] == ['hard', 'hard']
    for name in PICTURES + ('study.json',):
        assert (tmp_path / name).exists()
    for name in PICTURES:
        assert (tmp_path / name).read_bytes()[:8] == PNG
    # stderr is a pipe here: a plain line per run, no carriage returns
    assert '\r' not in run.stderr
    assert 'seed 1 hard: 2/2 steps' in run.stderr


def test_default_budget_is_three_seeds_of_200_steps_on_the_default_arms():
    p = cli.parser(prog='python -m tools.demo', seeds=demo.SEEDS, steps=demo.STEPS)
    args = cli.check_args(p, p.parse_args([]))
    assert (args.seeds, args.steps, args.arms) == (3, 200, list(arms.DEFAULT_ARMS))
    assert args.out == 'samplers-demo'


def test_baseline_is_ours_without_flags_when_gluoncv_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(arms, 'gluoncv_targets', lambda: None)
    results = demo.main(['--out', str(tmp_path), '--arms', 'gluoncv,hard', '--seeds', '1',
                         '--steps', '1', '--train-images', '4', '--val-images', '4'])
    assert [r['arm'] for r in results] == ['ours', 'hard']
    assert 'gluoncv is not installed' in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['--steps', '0'], '--steps must be >= 1, got 0'),
    (['--first-seed', '-1'], 'seeds must lie in'),
])
def test_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        demo.main(argv)
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- pictures
def test_example_image_has_a_large_hard_box_apart_from_the_normal_ones():
    val_set = data.make_dataset(128, seed=1)
    _, label = val_set[demo.example_index(val_set)]
    hard, normal = label[label[:, 5] > 0], label[label[:, 5] == 0]
    side = np.minimum(hard[:, 2] - hard[:, 0], hard[:, 3] - hard[:, 1])
    assert len(normal) >= 1 and (side >= 28).any()


def test_samples_picture_shows_where_the_three_rules_differ():
    # On the anchors samples.png draws, each rule left to right changes something.
    val_set = data.make_dataset(128, seed=1)
    _, label = val_set[demo.example_index(val_set)]
    anchors = data.make_anchors()
    near = demo.on_hard(label, anchors)
    base, hard, iof = (demo.rule_labels(arm, label, anchors)[near] for arm in demo.SAMPLE_ARMS)
    assert (base == POSITIVE).any() and not (hard == POSITIVE).any()
    assert (hard == NEGATIVE).any() and not (iof == NEGATIVE).any()
    assert ((base == POSITIVE) <= (hard == IGNORE)).all()


def test_crop_is_square_inside_the_image_and_holds_the_hard_box():
    label = np.array([[100, 2, 126, 30, 0, 1], [10, 10, 20, 20, 0, 0]], np.float32)
    x1, y1, x2, y2 = demo._crop(label)
    assert x2 - x1 == y2 - y1 >= 48
    assert 0 <= x1 <= 100 and x2 <= data.IMAGE_SIZE and 0 <= y1 <= 2 and y2 >= 30


def test_plot_proposals_draws_each_proposal_and_the_ground_truth():
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from samplers.viz import plot_proposals
    ax = Figure().add_subplot()
    boxes = np.array([[1, 1, 5, 5], [2, 2, 9, 9], [np.nan, 0, 1, 1]], np.float32)
    plot_proposals(None, boxes, gt_boxes=[[0, 0, 4, 4], [5, 5, 8, 8]], hard=[0, 1], ax=ax)
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(rects) == 4  # two finite proposals, two ground-truth boxes
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == \
        ['ground truth', 'hard ground truth', 'proposals (2)']


def test_plot_samples_fades_the_image_on_request():
    from matplotlib.figure import Figure
    from samplers.viz import plot_samples
    ax = Figure().add_subplot()
    plot_samples(np.zeros((8, 8, 3), np.uint8), [[0, 0, 4, 4]], [1], ax=ax, image_alpha=0.5)
    assert ax.images[0].get_alpha() == 0.5
    with pytest.raises(ValueError, match='image_alpha'):
        plot_samples(None, [[0, 0, 4, 4]], [1], ax=ax, image_alpha=0)


def _sample_figure(tmp_path):
    val_set = data.make_dataset(128, seed=1)
    _, label = val_set[demo.example_index(val_set)]
    anchors = data.make_anchors()
    labelled = [(demo.SAMPLE_TITLES[arm], demo.rule_labels(arm, label, anchors))
                for arm in demo.SAMPLE_ARMS]
    image = val_set[demo.example_index(val_set)][0]
    fig = demo.save_samples_png(str(tmp_path / 'samples.png'), image, label, anchors, labelled)
    near = demo.on_hard(label, anchors)
    return fig, [(labels[near] != labelled[0][1][near]).sum() for _, labels in labelled]


def test_samples_picture_rings_and_counts_the_anchors_each_rule_changes(tmp_path):
    fig, changed = _sample_figure(tmp_path)
    assert len(fig.axes) == len(demo.SAMPLE_ARMS)
    assert changed == [0, 1, 47]  # as docs/study.md says
    for ax, n in zip(fig.axes[1:], changed[1:]):
        assert '{} anchor{} changed'.format(n, 's' * (n != 1)) in ax.get_title()
        ring, = [ln for ln in ax.get_lines() if ln.get_label().startswith('changed')]
        assert len(ring.get_xdata()) == n
    assert not any(ln.get_label().startswith('changed') for ln in fig.axes[0].get_lines())


def test_samples_picture_draws_each_anchor_as_its_own_marker(tmp_path):
    # the anchors of a cell share a centre; spread apart, no marker hides another
    fig, _ = _sample_figure(tmp_path)
    for ax in fig.axes:
        points = [xy for ln in ax.get_lines() if not ln.get_label().startswith('changed')
                  for xy in zip(ln.get_xdata(), ln.get_ydata())]
        assert len(points) == len(set(points)) > 50


def test_hard_hits_counts_proposals_on_a_hard_box_at_iou_half():
    label = np.array([[0, 0, 20, 20, 0, 1], [50, 50, 70, 70, 0, 0]], np.float32)
    props = np.array([[0, 0, 20, 20], [2, 2, 20, 20], [0, 0, 10, 10], [50, 50, 70, 70]],
                     np.float32)
    assert demo.hard_hits(props, label) == 2
    assert demo.hard_hits(props[:0], label) == 0
    assert demo.hard_hits(props, label[1:]) == 0


def _proposal_case():
    """Four validation images with one hard box each, and two arms' top proposals on them."""
    hard_box = np.array([[10, 10, 40, 40, 0, 1], [80, 80, 120, 120, 0, 0]], np.float32)
    val_set = [(np.zeros((128, 128, 3), np.uint8), hard_box.copy()) for _ in range(4)]
    on, off = [10, 10, 40, 40], [80, 80, 120, 120]
    base = [np.array([on] * k + [off] * (10 - k), np.float32) for k in (1, 4, 2, 0)]
    hard = [np.array([on] * k + [off] * (10 - k), np.float32) for k in (1, 0, 2, 0)]
    return val_set, {'gluoncv': base, 'hard': hard}


def test_pick_image_takes_the_largest_gap_between_the_two_arms():
    val_set, proposals = _proposal_case()
    assert demo.pick_image(val_set, proposals, ['gluoncv', 'hard']) == 1
    assert demo.pick_image(val_set, proposals, ['hard']) == 2


def test_shown_arms_are_the_baseline_and_plain_hard_flags():
    assert demo.shown_arms(list(arms.DEFAULT_ARMS)) == ['gluoncv', 'hard']
    assert demo.shown_arms(['ours', 'hard+iof']) == ['ours', 'hard+iof']
    assert demo.shown_arms(['hard']) == ['hard']


def test_proposals_picture_shows_hard_false_alarms_per_arm_and_on_one_image(tmp_path):
    from helpers import overlapping_tick_labels
    val_set, proposals = _proposal_case()
    results = [dict(arm=arm, seed=s, **{key: 0.1 * s + 0.2 * (arm == 'gluoncv')
                                        for key in model.METRICS})
               for s in range(3) for arm in ('gluoncv', 'hard')]
    fig = demo.save_proposals_png(str(tmp_path / 'p.png'), results, val_set, proposals)
    chart, left, right = fig.axes
    assert [t.get_text() for t in chart.get_yticklabels()] == ['gluoncv', 'hard']
    assert left.get_title().startswith('gluoncv: 4 of its top-10 proposals')
    assert right.get_title().startswith('hard: 0 of its top-10 proposals')
    assert 'validation image 1 ' in fig._suptitle.get_text()
    assert overlapping_tick_labels(fig) == []
