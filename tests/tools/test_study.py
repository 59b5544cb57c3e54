"""The study (`python -m tools.study`): statistics, arms, data, a tiny paired run."""
import io
import json
import math

import mxnet as mx
import numpy as np
import pytest

from samplers import IGNORE, NEGATIVE, POSITIVE, box_iof, box_iou

from tools.study import __main__ as cli
from tools.study import arms, data, model, stats
from tools.study import train as training

TINY = dict(steps=2, train_images=8, val_images=8)


# ----------------------------------------------------------------------------- statistics
@pytest.mark.parametrize('df, expected', [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776),
                                          (9, 2.262), (30, 2.042), (120, 1.980)])
def test_t_quantile_matches_the_printed_table(df, expected):
    assert stats.t_quantile(0.95, df) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize('df, expected', [(4, 4.604), (9, 3.250)])
def test_t_quantile_at_99_percent(df, expected):
    assert stats.t_quantile(0.99, df) == pytest.approx(expected, abs=1e-3)


def test_t_cdf_is_zero_at_zero_and_grows_to_one():
    for df in (1, 2, 5, 10):
        values = [stats.t_cdf_two_sided(t, df) for t in (0, 0.5, 1, 2, 5, 50)]
        assert values[0] == 0 and values == sorted(values) and values[-1] > 0.98


def test_t_quantile_rejects_a_confidence_outside_0_1():
    with pytest.raises(ValueError, match='confidence'):
        stats.t_quantile(1.0, 3)
    with pytest.raises(ValueError, match='df'):
        stats.t_cdf_two_sided(1.0, 0)


def test_paired_interval_on_hand_made_numbers():
    # d = [1, 2, 2, 3]: mean 2, sd sqrt(2/3), n 4, t(0.975, 3) = 3.1824
    mean, low, high = stats.paired_interval([1, 2, 3, 4], [0, 0, 1, 1])
    half = 3.182446 * math.sqrt(2 / 3) / 2
    assert mean == 2
    assert (low, high) == pytest.approx((2 - half, 2 + half), abs=1e-5)


def test_paired_interval_removes_the_spread_between_seeds():
    # Seeds differ a lot, but the arm is always exactly 0.1 better: a zero-width interval.
    base = [0.2, 0.6, 0.4, 0.9]
    mean, low, high = stats.paired_interval(np.add(base, 0.1), base)
    assert (mean, low, high) == pytest.approx((0.1, 0.1, 0.1))


def test_paired_interval_of_one_pair_has_no_width():
    mean, low, high = stats.paired_interval([0.5], [0.25])
    assert mean == 0.25 and math.isnan(low) and math.isnan(high)


def test_paired_interval_rejects_unpaired_input():
    with pytest.raises(ValueError, match='equal-length'):
        stats.paired_interval([1, 2, 3], [1, 2])


def test_paired_p_value_on_hand_made_numbers():
    # d = [1, 2, 2, 3]: t = 2 / (sqrt(2/3) / 2) = 4.899 on 3 df, two-sided p 0.0162766.
    assert stats.paired_p_value([1, 2, 3, 4], [0, 0, 1, 1]) == pytest.approx(0.0162766, abs=1e-6)
    assert stats.paired_p_value([1, 2], [1, 2]) == 1.0
    assert math.isnan(stats.paired_p_value([1], [0]))


def test_paired_p_value_is_below_alpha_exactly_when_the_interval_excludes_zero():
    rng = np.random.RandomState(0)
    for _ in range(50):
        a, b = rng.normal(0.1, 0.1, 5), rng.normal(0, 0.1, 5)
        _, low, high = stats.paired_interval(a, b, 0.95)
        assert (stats.paired_p_value(a, b) < 0.05) == (low > 0 or high < 0)


def test_holm_adjusts_step_down_and_stops_at_the_first_failure():
    # Sorted: 0.01 (x3 = 0.03, < 0.05/3: rejected), 0.03 (x2 = 0.06, not < 0.025: stop),
    # 0.04 (x1, but the running max keeps 0.06; its level stays at the stopped step's 0.025).
    out = stats.holm([0.01, 0.04, 0.03])
    assert [p for p, _ in out] == pytest.approx([0.03, 0.06, 0.06])
    assert [level for _, level in out] == pytest.approx([0.05 / 3, 0.025, 0.025])
    assert stats.holm([0.001, 0.002])[1] == pytest.approx((0.002, 0.05))


def test_holm_level_interval_excludes_zero_exactly_when_holm_rejects():
    rng = np.random.RandomState(1)
    for _ in range(30):
        pairs = [(rng.normal(shift, 0.05, 6), rng.normal(0, 0.05, 6)) for shift in
                 rng.uniform(0, 0.08, 4)]
        ps = [stats.paired_p_value(a, b) for a, b in pairs]
        for (a, b), (p_holm, level) in zip(pairs, stats.holm(ps)):
            _, low, high = stats.interval_at(a, b, level)
            assert (p_holm < 0.05) == (low > 0 or high < 0)


def test_markdown_table_has_a_header_rule_and_one_line_per_row():
    assert stats.markdown_table(['a', 'b'], [['1', '2']]).splitlines() == [
        '| a | b |', '|---|---|', '| 1 | 2 |']


def _result(arm, seed, value):
    return dict(arm=arm, seed=seed, **{key: value for key in model.METRICS})


def test_summarize_keeps_only_the_seeds_every_arm_finished():
    results = [_result('a', 0, 0.5), _result('b', 0, 0.6), _result('a', 1, 0.3),
               _result('b', 1, 0.5), _result('a', 2, 0.9)]  # seed 2 interrupted
    seeds, names, summary = stats.summarize(results)
    assert seeds == [0, 1] and names == ['a', 'b']
    entry = summary['b']['r10_50']
    assert entry['values'] == [0.6, 0.5] and entry['mean'] == pytest.approx(0.55)
    assert entry['diff'] == pytest.approx(0.15)  # paired: (0.1 + 0.2) / 2
    assert 'diff' not in summary['a']['r10_50']  # the baseline


def test_tables_give_mean_sd_and_paired_intervals():
    results = [_result('a', s, v) for s, v in enumerate((0.5, 0.3, 0.4))]
    results += [_result('b', s, v + 0.1) for s, v in enumerate((0.5, 0.3, 0.4))]
    text = stats.format_tables(results)
    assert 'Mean ± sd over 3 seed(s) (0, 1, 2)' in text
    assert '| a | 0.400 ± 0.100 |' in text
    assert '| b | +0.100 [+0.100, +0.100] |' in text
    assert 'Paired difference against a' in text


# ----------------------------------------------------------------------------- data and model
def test_dataset_is_the_same_for_the_same_seed():
    a, b, c = data.make_dataset(4, seed=7), data.make_dataset(4, 7), data.make_dataset(4, 8)
    for (img_a, lab_a), (img_b, lab_b) in zip(a, b):
        np.testing.assert_array_equal(img_a, img_b)
        np.testing.assert_array_equal(lab_a, lab_b)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def test_dataset_images_and_labels_have_the_documented_form():
    for img, lab in data.make_dataset(20, seed=0):
        assert img.shape == (data.IMAGE_SIZE, data.IMAGE_SIZE, 3) and img.dtype == np.uint8
        assert lab.ndim == 2 and lab.shape[1] == 6 and lab.dtype == np.float32
        assert np.isin(lab[:, 5], (0, 1)).all()
        assert np.isin(lab[:, 4], range(data.NUM_CLASSES)).all()
        assert (lab[:, :2] >= 0).all() and (lab[:, 2:4] <= data.IMAGE_SIZE).all()


def test_dataset_flags_every_tiny_object_hard():
    labels = np.concatenate([lab for _, lab in data.make_dataset(100, seed=0)])
    side = np.maximum(labels[:, 2] - labels[:, 0], labels[:, 3] - labels[:, 1])
    assert (labels[side < 10, 5] == 1).all()
    assert (labels[:, 5] == 1).any() and (labels[:, 5] == 0).any()


def test_anchors_follow_the_rpn_output_order():
    anchors = data.make_anchors()
    net = model.TinyRPN()
    net.initialize()
    scores, deltas = net(mx.nd.zeros((1, 3, data.IMAGE_SIZE, data.IMAGE_SIZE)))
    per_cell = len(data.ANCHOR_SIZES) * len(data.ANCHOR_RATIOS)
    cells = data.IMAGE_SIZE // data.STRIDE
    assert scores.shape == (1, len(anchors)) and deltas.shape == (1, len(anchors), 4)
    grid = ((anchors[:, :2] + anchors[:, 2:]) / 2).reshape(cells, cells, per_cell, 2)
    assert np.allclose(grid[0, 1, :, 0], 1.5 * data.STRIDE)  # x grows along a row
    assert np.allclose(grid[1, 0, :, 1], 1.5 * data.STRIDE)  # y grows down the rows


class _Fixed:
    """A stand-in net whose scores and deltas are given: evaluate() then has known answers."""

    def __init__(self, scores, deltas):
        self.scores, self.deltas = scores, deltas

    def __call__(self, x):
        b = x.shape[0]
        return (mx.nd.array(np.tile(self.scores, (b, 1))),
                mx.nd.array(np.tile(self.deltas, (b, 1, 1))))


def test_evaluate_counts_recall_at_each_k_and_iou_and_hard_false_alarms():
    anchors = data.make_anchors()
    inside = data._inside(anchors)
    normal = anchors[np.flatnonzero(inside)[40]]   # found exactly by the best proposal
    hard = anchors[np.flatnonzero(inside)[-40]]    # found by the second best
    shifted = normal + np.float32([3, 0, 3, 0])    # IoU with `normal` about 0.6-0.8 < 1
    label = np.array([list(normal) + [0, 0], list(hard) + [1, 1],
                      list(shifted + 200) + [0, 0]], np.float32)  # the third is off-image
    scores = np.full(len(anchors), -10, np.float32)
    scores[np.flatnonzero(inside)[40]] = 5
    scores[np.flatnonzero(inside)[-40]] = 4
    net = _Fixed(scores, np.zeros((len(anchors), 4), np.float32))
    metrics = model.evaluate(net, [(np.zeros((data.IMAGE_SIZE,) * 2 + (3,), np.uint8),
                                    label)], anchors)
    assert set(metrics) == set(model.METRICS)
    assert metrics['r10_50'] == metrics['r10_70'] == 0.5  # 1 of 2 normal boxes
    assert metrics['r100_50'] == 0.5
    assert metrics['hard_fa10'] == 1.0  # one top-10 proposal on the one hard box


# ----------------------------------------------------------------------------- arms
def _one_faint_box(size=40.0):
    """One image label: a normal box and a large hard box far from it."""
    return np.array([[70, 70, 110, 110, 0, 0], [10, 10, 10 + size, 10 + size, 1, 1]],
                    np.float32)


@pytest.mark.parametrize('name', sorted(arms.ARMS))
def test_every_arm_builds_targets_of_gluoncvs_form(name):
    targets = arms.ARMS[name].targets()
    anchors = data.make_anchors()
    cls_t, box_t, box_m = (np.asarray(v) for v in targets(_one_faint_box(), anchors))
    assert cls_t.shape == (len(anchors),) and box_t.shape == box_m.shape == (len(anchors), 4)
    assert np.isin(cls_t, (-1, 0, 1)).all() and (cls_t > 0).any()


def _labels_without_subsampling(name, label, anchors):
    from tools import demo
    return demo.rule_labels(name, label, anchors)


def test_hard_arm_turns_the_hard_boxs_positives_into_ignored():
    anchors, label = data.make_anchors(), _one_faint_box()
    on_hard = box_iou(anchors, label[1:, :4])[:, 0] >= 0.7
    base = _labels_without_subsampling('gluoncv', label, anchors)
    hard = _labels_without_subsampling('hard', label, anchors)
    assert (base[on_hard] == POSITIVE).all() and on_hard.any()
    assert (hard[on_hard] == IGNORE).all()
    np.testing.assert_array_equal(base[~on_hard], hard[~on_hard])


def test_iof_arm_also_ignores_small_anchors_inside_the_hard_box():
    anchors, label = data.make_anchors(), _one_faint_box()
    inside_hard = box_iof(anchors, label[1:, :4])[:, 0] >= arms.HARD_IOF
    low_iou = box_iou(anchors, label[1:, :4])[:, 0] < 0.3
    hard = _labels_without_subsampling('hard', label, anchors)
    iof = _labels_without_subsampling('hard+iof', label, anchors)
    changed = inside_hard & low_iou & data._inside(anchors)
    assert changed.any() and (hard[changed] == NEGATIVE).all() and (iof[changed] == IGNORE).all()


def test_ours_without_flags_labels_as_gluoncv_without_subsampling():
    anchors = data.make_anchors()
    for _, label in data.make_dataset(12, seed=3):
        np.testing.assert_array_equal(_labels_without_subsampling('ours', label, anchors),
                                      _labels_without_subsampling('gluoncv', label, anchors))


def _mining_inputs():
    """2 images x 6 anchors: anchor 0 positive; random sample = anchors 0-2; best IoUs."""
    cls_t = mx.nd.array([[1, 0, 0, -1, -1, -1]] * 2)
    scores = mx.nd.array([[3, -5, -4, 2, 1, 0.5], [3, -5, -4, 0.5, 1, 2]])
    best = mx.nd.array([[0.8, 0.1, 0.1, 0.1, 0.1, 0.5]] * 2)  # anchor 5 overlaps an object
    return scores, cls_t, best


def test_ohem_on_top_of_the_random_sample_keeps_it_and_adds_the_hardest():
    scores, cls_t, best = _mining_inputs()
    weights = arms.ohem_weights(1, 0, keep_random=True)(scores, cls_t, best).asnumpy()
    # the sample (0, 1, 2) stays; 1 negative per positive: the hardest candidate, never anchor 5
    np.testing.assert_array_equal(weights, [[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 1, 0]])


def test_ohem_only_takes_just_the_hardest_negatives():
    scores, cls_t, best = _mining_inputs()
    weights = arms.ohem_weights(2, 0, keep_random=False)(scores, cls_t, best).asnumpy()
    np.testing.assert_array_equal(weights, [[1, 0, 0, 1, 1, 0], [1, 0, 0, 1, 1, 0]])


def test_ohem_only_mines_exactly_the_top_scoring_background_candidates():
    # No sampler defect behind the OHEM-only collapse: on real targets the mined negatives
    # are the candidates (best IoU < 0.3) with the largest scores, max(min_samples, 3 * pos).
    anchors = data.make_anchors()
    labels = [lab for _, lab in data.make_dataset(4, seed=2)]
    targets = arms.ARMS['hard+ohem-only'].targets()
    cls_t = arms._batch_targets(targets, labels, anchors)[0]
    best = arms._best_ious(labels, anchors)
    scores = mx.nd.array(np.random.RandomState(0).normal(size=cls_t.shape))
    weights = arms.ohem_weights(3, 32, keep_random=False)(scores, cls_t, best).asnumpy()
    c, s, b = cls_t.asnumpy(), scores.asnumpy(), best.asnumpy()
    for w, ci, si, bi in zip(weights, c, s, b):
        mined = (w > 0) & (ci <= 0)
        candidates = (ci <= 0) & (bi < 0.3)
        want = min(max(32, 3 * int((ci > 0).sum())), int(candidates.sum()))
        assert mined.sum() == want and (w[ci > 0] == 1).all()
        assert si[mined].min() >= si[candidates & ~mined].max()


# ----------------------------------------------------------------------------- runs
def test_the_same_seed_trains_the_same_net():
    train_set, anchors = data.make_dataset(8, seed=5), data.make_anchors()
    _, first, _ = training.train('ours', train_set, anchors, 3, seed=5)
    _, second, _ = training.train('ours', train_set, anchors, 3, seed=5)
    assert first == second


def test_sampling_offset_changes_only_the_subsampling_and_is_reproducible():
    train_set, anchors = data.make_dataset(8, seed=5), data.make_anchors()
    _, base, _ = training.train('ours', train_set, anchors, 3, seed=5)
    _, moved, _ = training.train('ours', train_set, anchors, 3, seed=5, sampling_offset=7)
    _, again, _ = training.train('ours', train_set, anchors, 3, seed=5, sampling_offset=7)
    assert moved == again and moved != base
    assert moved['cls'][0] != base['cls'][0] or moved['box'][0] != base['box'][0]


def test_tiny_study_runs_every_default_arm_on_two_seeds_and_saves_as_it_goes(tmp_path):
    path = str(tmp_path / 'study.json')
    seen = []
    results, histories = training.run_study([0, 1], json_path=path,
                                         keep=lambda *a: seen.append(a[:2]), **TINY)
    assert [(r['seed'], r['arm']) for r in results] == \
        [(s, a) for s in (0, 1) for a in arms.DEFAULT_ARMS] == seen
    for row in results:
        assert all(0 <= row[key] <= 1 for key in model.METRICS if key != 'hard_fa10')
        assert row['steps'] == 2 and row['seconds'] > 0
    assert {a: len(h) for a, h in histories.items()} == {a: 2 for a in arms.DEFAULT_ARMS}
    loaded, loaded_hist = training.load(path)
    assert loaded == json.loads(json.dumps(results)) and loaded_hist == histories
    assert 'Mean ± sd over 2 seed(s)' in stats.format_tables(loaded)


def test_cli_report_reprints_a_saved_study_without_training(tmp_path, capsys):
    results = [_result('gluoncv', s, 0.1 * s) for s in range(3)]
    results += [_result('hard', s, 0.1 * s + 0.05) for s in range(3)]
    for row in results:
        row['seconds'] = 1.0
    histories = {'gluoncv': [dict(cls=[1, 0.5, 0.2, 0.1], box=[0.1] * 4)] * 3,
                 'hard': [dict(cls=[1, 0.4, 0.2, 0.1], box=[0.1] * 4)] * 3}
    (tmp_path / 'study.json').write_text(json.dumps(dict(results=results,
                                                         histories=histories)))
    cli.main(['--report', '--out', str(tmp_path)])
    out = capsys.readouterr().out
    assert '| hard | +0.050 [+0.050, +0.050] |' in out
    assert (tmp_path / 'differences.png').read_bytes()[:4] == b'\x89PNG'
    assert (tmp_path / 'loss_curves.png').read_bytes()[:4] == b'\x89PNG'
    cli.main(['--report', '--out', str(tmp_path), '--baseline', 'hard'])
    out = capsys.readouterr().out
    assert 'Paired difference against hard' in out
    assert '| gluoncv | -0.050 [-0.050, -0.050] |' in out
    with pytest.raises(SystemExit):
        cli.main(['--report', '--out', str(tmp_path), '--baseline', 'ours'])
    assert "--baseline must be one of the arms in" in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['--seeds', '0'], '--seeds must be >= 1, got 0'),
    (['--steps', '-1'], '--steps must be >= 1, got -1'),
    (['--arms', 'gluoncv,nope'], '--arms must name known arms'),
    (['--arms', 'hard,hard'], '--arms names an arm twice'),
    (['--arms', 'ours,hard', '--baseline', 'gluoncv'], '--baseline must be one of the arms run'),
    (['--first-seed', str(2 ** 32 - 2), '--seeds', '2'], 'seeds must lie in [0, 4294967294]'),
])
def test_cli_rejects_bad_arguments(argv, message, capsys):
    p = cli.parser()
    with pytest.raises(SystemExit):
        cli.check_args(p, p.parse_args(argv))
    assert message in capsys.readouterr().err


def test_progress_off_a_terminal_is_one_plain_line_per_run():
    stream = io.StringIO()
    bar = training._Progress(50, 'seed 0 hard', stream=stream)
    for _ in range(50):
        bar.update(0.25)
    bar.close()
    text = stream.getvalue()
    assert '\r' not in text and text.count('\n') == 1
    assert text.startswith('seed 0 hard: 50/50 steps, loss 0.250')


def test_probe_sees_a_collapsed_net():
    anchors, images = data.make_anchors(), data.make_dataset(2, seed=0)
    net = model.TinyRPN()
    net.initialize(mx.init.Xavier(magnitude=2))
    alive = model.probe(net, images, anchors)
    assert alive['head_alive'] > 0 and alive['score_sd'] > 0
    net.head.bias.set_data(mx.nd.full(net.head.bias.shape, -1e3))  # every head unit dead
    dead = model.probe(net, images, anchors)
    assert dead['head_alive'] == 0 and dead['score_sd'] == 0
    assert dead['body_alive'] == alive['body_alive']


def test_cli_probe_prints_one_line_per_run(tmp_path, capsys):
    cli.main(['--out', str(tmp_path), '--seeds', '1', '--steps', '1', '--arms', 'ours,hard',
                '--train-images', '4', '--val-images', '4', '--probe'])
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('seed  arm'))
    assert [line.split()[:2] for line in lines[start + 1:start + 3]] == [['0', 'ours'],
                                                                         ['0', 'hard']]


def test_tables_of_one_seed_show_no_spread_and_no_interval():
    text = stats.format_tables([_result('a', 4, 0.5), _result('b', 4, 0.75)])
    assert '| a | 0.500 |' in text and '| b | +0.250 |' in text
    assert 'nan' not in text and 'one seed gives no interval' in text


# ----------------------------------------------------------------------------- pictures
def _loss_histories():
    base = dict(cls=list(np.linspace(1, 0.2, 40)), box=list(np.linspace(0.1, 0.02, 40)))
    lower = dict(cls=list(np.linspace(0.9, 0.1, 40)), box=list(np.linspace(0.1, 0.01, 40)))
    return {'gluoncv': [base] * 2, 'ours': [base] * 2, 'hard': [lower] * 2}


def test_loss_curves_give_every_arm_its_own_colour_dashes_and_marker(tmp_path):
    pytest.importorskip('matplotlib')
    from tools.study.plots import save_loss_png
    fig = save_loss_png(str(tmp_path / 'loss.png'), _loss_histories(), window=5)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 3
        looks = [(ln.get_color(), str(ln.get_linestyle()), ln.get_marker(),
                  ln.get_linewidth()) for ln in lines]
        assert len({c for c, *_ in looks}) == 3 and len({m for _, _, m, _ in looks}) == 3
        # coinciding curves: the later one is drawn thinner and dashed over the wider one
        assert looks[0][3] > looks[1][3] and looks[1][1] != looks[0][1]


def test_loss_legend_names_the_arm_whose_curve_another_repeats(tmp_path):
    pytest.importorskip('matplotlib')
    from tools.study.plots import save_loss_png
    fig = save_loss_png(str(tmp_path / 'loss.png'), _loss_histories(), window=5)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ['gluoncv (2 seeds)', 'ours (2 seeds), same curve as gluoncv',
                     'hard (2 seeds)']


def test_loss_picture_says_levels_are_not_comparable_across_arms(tmp_path):
    pytest.importorskip('matplotlib')
    from tools.study.plots import save_loss_png
    fig = save_loss_png(str(tmp_path / 'loss.png'), _loss_histories(), window=5)
    assert 'own targets' in fig._suptitle.get_text()
    assert 'not comparable' in fig._suptitle.get_text()


#: recall@10 IoU.7 of a demo run (3 seeds x the default arms): intervals from -0.1 to +0.13,
#: where matplotlib's default ticks (-0.100, -0.075, ... at 7 pt) ran into each other.
DEMO_R10_70 = {'gluoncv': (0.14, 0.114, 0.076), 'ours': (0.115, 0.102, 0.08),
               'hard': (0.132, 0.114, 0.139), 'hard+iof': (0.103, 0.142, 0.1),
               'hard+ohem': (0.119, 0.138, 0.131)}


def test_difference_tick_labels_do_not_overlap(tmp_path):
    pytest.importorskip('matplotlib')
    from helpers import overlapping_tick_labels
    from tools.study.plots import save_differences_png
    results = [_result(arm, s, values[s]) for s in range(3)
               for arm, values in DEMO_R10_70.items()]
    fig = save_differences_png(str(tmp_path / 'differences.png'), results)
    assert len(fig.axes) == len(model.METRICS)
    assert overlapping_tick_labels(fig) == []
    shown = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert '0' in shown and all(t == '0' or t[0] in '+-' for t in shown)
