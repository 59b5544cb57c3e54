"""Specification of ``python -m tools.bench``: inputs, timing harness, report and docs table.

Smoke runs use ``--quick`` (tiny sizes); nothing here asserts on a time (speed is the
benchmark's business, never a unit test's).
"""
import json
import os
import shutil
import subprocess
import warnings

import mxnet as mx
import numpy as np
import pytest

from tools.bench import __main__ as cli
from tools.bench import baseline, cases, harness, report

PAGE = 'intro\n\n{}\nold table\n{}\n\nafter\n'.format(report.TABLE_START, report.TABLE_END)


@pytest.fixture(scope='module')
def quick_report():
    """One tiny run of every case, shared by the structure tests."""
    return harness.run(repeat=1, scale=harness.QUICK_SCALE, rss=False)


def table_rows(text):
    """The cells of each body row of the markdown table at the top of ``text``."""
    lines = text.splitlines()
    body = [line for line in lines[2:lines.index('')] if line.startswith('|')]
    return [[cell.strip() for cell in line.split('|')[1:-1]] for line in body]


HEADER = ['case', 'ours', 'reference', 'ratio', 'goal', 'met?', 'same?', 'input']


def column(text, name):
    return [row[HEADER.index(name)] for row in table_rows(text)]


class FakeSampler:
    """Stands in for one of our pieces: answers every call with zeros, or raises."""

    def __init__(self, *args, fail=False, **kwargs):
        self.fail = fail

    def __call__(self, *args):
        if self.fail:
            raise RuntimeError('not finished')
        return np.zeros(3)


OUR_PIECES = ('RPNTargetGenerator', 'RPNTargetSampler', 'QuotaSampler', 'OHEMSampler',
              'RCNNTargetSampler')
GLUONCV_HOMES = {'RPNTargetGenerator': 'model_zoo.rcnn.rpn.rpn_target',
                 'RPNTargetSampler': 'model_zoo.rcnn.rpn.rpn_target',
                 'QuotaSampler': 'nn.sampler', 'OHEMSampler': 'nn.sampler',
                 'RCNNTargetSampler': 'model_zoo.rcnn.faster_rcnn.rcnn_target'}


def use_fakes(monkeypatch, fail=False):
    """Every case times FakeSampler as ours (the cases look our classes up in their module)."""
    for name in OUR_PIECES:
        monkeypatch.setattr(cases, name, lambda *a, **k: FakeSampler(fail=fail))


def use_gluoncv_as_ours(monkeypatch):
    """Pretend GluonCV's own pieces are ours: the answers then agree by construction."""
    for name in OUR_PIECES:
        monkeypatch.setattr(cases, name, harness.gluoncv(GLUONCV_HOMES[name], name))


# --------------------------------------------------------------------------- inputs
def test_c4_anchors_number_34410():
    assert len(cases.rpn_anchors(600, 1000, cases.C4_LEVELS)) == 37 * 62 * 15


def test_fpn_anchors_number_265845():
    grids = [(800 // s) * (1333 // s) for s in (4, 8, 16, 32, 64)]
    assert len(cases.rpn_anchors(800, 1333, cases.FPN_LEVELS)) == 3 * sum(grids)


@pytest.mark.parametrize('stride, sizes', [(16, (32, 64, 128, 256, 512)), (4, (32,)),
                                           (64, (512,))])
def test_anchors_equal_gluoncv_rpn_anchor_generator(stride, sizes):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from gluoncv.model_zoo.rcnn.rpn.anchor import RPNAnchorGenerator
    height, width = 5 * stride, 7 * stride
    gen = RPNAnchorGenerator(stride, 16, list(cases.RATIOS), [s / 16 for s in sizes], (8, 8))
    gen.initialize()
    theirs = gen(mx.nd.zeros((1, 3, 5, 7))).reshape((-1, 4)).asnumpy()
    np.testing.assert_array_equal(cases.rpn_anchors(height, width, [(stride, sizes)]), theirs)


@pytest.mark.parametrize('height, width', [(600, 1000), (64, 100), (20, 20)])
def test_random_boxes_lie_inside_the_image_with_positive_area(height, width):
    boxes = cases.random_boxes(np.random.RandomState(0), 200, height, width)
    assert boxes.shape == (200, 4) and boxes.dtype == np.float32
    assert (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= width - 1).all() and (boxes[:, 3] <= height - 1).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()


def test_inputs_do_not_depend_on_the_global_rng():
    np.random.seed(1)
    a = cases.random_boxes(np.random.RandomState(5), 10, 600, 1000)
    np.random.seed(2)
    b = cases.random_boxes(np.random.RandomState(5), 10, 600, 1000)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- timing harness
def test_time_alternating_flips_the_order_every_run():
    calls = []
    runners = {'ours': lambda i: calls.append(('ours', i)),
               'theirs': lambda i: calls.append(('theirs', i))}
    harness.time_alternating(runners, repeat=2, warmup=1)
    assert calls == [('ours', 0), ('theirs', 0), ('theirs', 1), ('ours', 1),
                     ('ours', 2), ('theirs', 2)]


def test_time_alternating_reports_the_median_of_timed_runs_only():
    ticks = iter([0, 100,  # warm-up run: 100 s, not recorded
                  0, 1, 0, 5, 0, 3])
    out = harness.time_alternating({'a': lambda i: None}, repeat=3, warmup=1,
                                 clock=lambda: next(ticks))
    assert out['a'] == {'median': 3, 'min': 1, 'runs': 3}


def test_time_alternating_waits_for_ndarray_results(monkeypatch):
    waited = []
    monkeypatch.setattr(mx.nd.NDArray, 'wait_to_read', lambda self: waited.append(self.shape))
    result = mx.nd.zeros((1,))
    harness.time_alternating({'a': lambda i: (result, [result])}, repeat=1, warmup=0)
    assert len(waited) == 2


def test_time_alternating_drops_a_runner_that_raises_and_keeps_the_others():
    calls = []

    def broken(i):
        calls.append(i)
        raise RuntimeError('boom')

    out = harness.time_alternating({'broken': broken, 'ok': lambda i: None}, repeat=3)
    assert out['broken'] == {'error': 'RuntimeError: boom'}
    assert calls == [0] and out['ok']['runs'] == 3


def test_time_alternating_rejects_zero_repeats():
    with pytest.raises(ValueError, match='repeat'):
        harness.time_alternating({'a': lambda i: None}, repeat=0)


@pytest.mark.parametrize('kind, value, ratio, met', [
    ('faster', 4, 4.0, True), ('faster', 4, 3.99, False),
    ('floor', 2, 2.0, True), ('floor', 2, 2.01, False),
    ('memory', 3, 2.99, True), ('memory', 3, 3.0, False),
    ('faster', 4, None, None)])
def test_goal_met_follows_the_goal_kind(kind, value, ratio, met):
    assert harness.goal_met(kind, value, ratio) is met


def test_goal_met_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match='goal kind'):
        harness.goal_met('slower', 1, 1.0)


# --------------------------------------------------------------------------- report
def test_report_has_one_row_per_case_in_order(quick_report):
    assert [row['case'] for row in quick_report['cases']] == list(harness.CASES)


def test_every_row_has_the_report_fields(quick_report):
    fields = {'case', 'what', 'reference', 'ours_ms', 'ref_ms', 'ratio', 'goal', 'met',
              'path', 'notes'}
    for row in quick_report['cases']:
        assert fields <= set(row), row['case']
        assert row['goal'] == dict(zip(('kind', 'value'), harness.GOALS[row['case']]))


def test_gluoncv_side_is_timed_in_every_time_case(quick_report):
    for row in quick_report['cases']:
        if row['goal']['kind'] != 'memory':
            assert row['ref_ms'] > 0, row


def test_machine_record_names_cores_and_mxnet_build(quick_report):
    machine = quick_report['machine']
    assert machine['cores'] >= 1 and machine['usable_cores'] >= 1
    assert machine['mxnet'] == mx.__version__ and machine['numpy'] == np.__version__
    assert {'CPU_AVX', 'CUDA', 'MKLDNN'} <= set(machine['mxnet_features'])


def test_machine_record_names_the_cpu_as_lscpu_does(quick_report):
    # Figures differ between CPUs (Intel Xeon, AMD EPYC): every table names its own.
    if shutil.which('lscpu'):
        out = subprocess.run(['lscpu'], capture_output=True, text=True,
                             env=dict(os.environ, LC_ALL='C')).stdout
        names = [line.split(':', 1)[1].strip() for line in out.splitlines()
                 if line.startswith('Model name:')]
    else:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f
                     if line.startswith('model name')]
    assert quick_report['machine']['cpu'] == (names[0] if names else harness.cpu_model())
    assert quick_report['machine']['cpu']


def test_table_has_header_one_line_per_case_a_note_per_case_and_the_machine(quick_report):
    text = report.format_table(quick_report)
    lines = text.splitlines()
    assert [cell.strip() for cell in lines[0].split('|')[1:-1]] == HEADER
    assert [row[0] for row in table_rows(text)] == list(harness.CASES)
    notes = [line for line in lines if line.startswith('- ')]
    assert [line[2:].split(':', 1)[0] for line in notes] == list(harness.CASES)
    machine = next(i for i, line in enumerate(lines) if line.startswith('Machine: '))
    assert quick_report['machine']['cpu'] in ' '.join(lines[machine:])
    assert 'mxnet' in ' '.join(lines[machine:])


def test_table_reads_in_a_terminal_aligned_columns_and_wrapped_notes(quick_report):
    lines = report.format_table(quick_report).splitlines()
    table = [line for line in lines if line.startswith('|')]
    assert len({len(line) for line in table}) == 1  # every column padded to one width
    assert all(len(line) <= report.WIDTH for line in lines if not line.startswith('|'))
    assert all(len(cell) <= 30 for row in table_rows('\n'.join(lines)) for cell in row)


@pytest.mark.parametrize('kind, ratio, text', [
    ('faster', 4.0, '4.0x faster'), ('faster', 0.5, '2.0x slower'), ('faster', 1.0, '1.0x faster'),
    ('floor', 1.36, '1.36x floor'), ('memory', 0.88, '0.88x matrix'), ('faster', None, 'n/a')])
def test_ratio_says_slower_when_slower(kind, ratio, text):
    assert report.ratio_text({'ratio': ratio, 'goal': {'kind': kind, 'value': 1}}) == text


def test_json_output_parses_back_to_the_report(capsys, monkeypatch, quick_report):
    monkeypatch.setattr(cli, 'run', lambda *a, **k: quick_report)
    assert cli.main(['--quick', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['cases'] == json.loads(
        json.dumps(quick_report['cases']))


def test_case_that_fails_to_build_shows_na_with_the_reason_and_the_run_goes_on(monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError('bad constructor')

    monkeypatch.setattr(cases, 'QuotaSampler', broken)
    rows = harness.run(['quota', 'ohem'], repeat=1, scale=harness.QUICK_SCALE)['cases']
    assert rows[0]['ours_ms'] is None and rows[0]['ratio'] is None and rows[0]['met'] is None
    assert 'case failed: TypeError: bad constructor' in rows[0]['notes']
    assert table_rows(report.format_table({'cases': rows[:1], **_meta()}))[0][:2] == [
        'quota', 'n/a']
    assert rows[1]['case'] == 'ohem' and rows[1]['ours_ms'] > 0


def test_piece_that_raises_shows_na_with_the_error(monkeypatch):
    use_fakes(monkeypatch, fail=True)
    row = harness.run(['ohem'], repeat=1, scale=harness.QUICK_SCALE)['cases'][0]
    assert row['ours_ms'] is None and row['met'] is None
    assert any('RuntimeError: not finished' in note for note in row['notes'])


def test_ratio_is_filled_when_both_sides_run_and_met_is_none_below_scale_1(monkeypatch):
    use_fakes(monkeypatch)
    row = harness.run(['rpn-c4'], repeat=1, scale=harness.QUICK_SCALE)['cases'][0]
    assert row['path'] in ('NDArray in', 'numpy in')
    assert row['ratio'] == pytest.approx(row['ref_ms'] / row['ours_ms'])
    assert row['goal_applies'] is False and row['met'] is None


def test_quick_table_says_goals_are_not_judged_and_why(quick_report):
    table = report.format_table(quick_report)
    assert column(table, 'met?') == ['not judged'] * len(harness.CASES)
    why = ' '.join(line for line in table.splitlines() if not line.startswith('|'))
    assert 'met?: not judged at scale 0.01: the goals are stated for the full sizes' in why
    assert 'Run without --quick to judge them.' in why


def test_quick_table_still_judges_agreement(quick_report):
    # Whether ours gives GluonCV's answer does not depend on the sizes: judged in quick mode.
    text = report.format_table(quick_report)
    same = dict(zip(column(text, 'case'), column(text, 'same?')))
    for name in ('rpn-sampler-memory', 'ohem-step', 'ohem-step-r50'):  # nothing to compare
        assert same.pop(name) == '-'
    assert set(same.values()) == {'yes'}, same


def test_full_scale_table_has_no_explanation_for_unjudged_goals(quick_report):
    rows = [dict(row, goal_applies=True, met=True) for row in quick_report['cases']]
    table = report.format_table(dict(quick_report, cases=rows))
    assert set(column(table, 'met?')) == {'yes'} and 'met?: not judged' not in table


@pytest.mark.parametrize('scale, applies', [(0.01, False), (0.999, False), (1, True), (2, True)])
def test_goals_are_judged_from_scale_1(scale, applies):
    assert harness.goal_applies(scale) is applies


@pytest.mark.parametrize('ours, theirs, met', [(1.0, 4.0, True), (1.0, 3.9, False)])
def test_met_follows_the_goal_where_it_applies(ours, theirs, met):
    timings = {'ours:NDArray in': {'median': ours}, 'gluoncv': {'median': theirs}}
    row = harness.make_row('rpn-c4', 'what', 'GluonCV', timings, ['ours:NDArray in'], 'gluoncv')
    assert row['met'] is met
    assert column(report.format_table({'cases': [row], **_meta()}), 'met?') == [
        'yes' if met else '**no**']


def test_floor_case_ratio_is_ours_over_the_floor(monkeypatch):
    use_fakes(monkeypatch)
    row = harness.run(['rpn-sampler'], repeat=1, scale=harness.QUICK_SCALE)['cases'][0]
    assert row['reference'].startswith('floor')
    assert row['ratio'] == pytest.approx(row['ours_ms'] / row['ref_ms'])
    assert any(note.startswith('gluoncv ') for note in row['notes'])


def test_memory_case_reports_peak_as_multiple_of_the_iou_matrix(monkeypatch):
    use_fakes(monkeypatch)
    row = harness.run(['rpn-sampler-memory'], scale=harness.QUICK_SCALE, rss=False)['cases'][0]
    assert row['ratio'] == pytest.approx(row['ours_peak_bytes'] / row['matrix_bytes'])
    assert any(note.startswith('GluonCV ') for note in row['notes'])


@pytest.mark.parametrize('case', ['rpn-c4', 'rpn-sampler', 'quota', 'ohem', 'rcnn'])
def test_agreement_with_gluoncv_is_recorded(monkeypatch, case):
    use_gluoncv_as_ours(monkeypatch)
    row = harness.run([case], repeat=1, scale=harness.QUICK_SCALE)['cases'][0]
    assert row['same_as_gluoncv'] is True
    assert column(report.format_table({'cases': [row], **_meta()}), 'same?') == ['yes']


def test_disagreement_with_gluoncv_is_flagged(monkeypatch):
    use_fakes(monkeypatch)
    row = harness.run(['quota'], repeat=1, scale=harness.QUICK_SCALE)['cases'][0]
    assert row['same_as_gluoncv'] is False
    assert any('differs from GluonCV' in note for note in row['notes'])
    assert column(report.format_table({'cases': [row], **_meta()}), 'same?') == ['**no**']


def test_no_check_skips_the_agreement_run(monkeypatch):
    use_fakes(monkeypatch)
    row = harness.run(['quota'], repeat=1, scale=harness.QUICK_SCALE, check=False)['cases'][0]
    assert row['same_as_gluoncv'] is None
    assert not any('GluonCV with subsampling' in note for note in row['notes'])
    assert column(report.format_table({'cases': [row], **_meta()}), 'same?') == ['-']


# --------------------------------------------------------------------------- adding a case
@pytest.fixture
def registry(monkeypatch):
    """CASES and GOALS as copies, so a case registered by a test goes away after it."""
    monkeypatch.setattr(harness, 'CASES', dict(harness.CASES))
    monkeypatch.setattr(harness, 'GOALS', dict(harness.GOALS))


def test_a_registered_case_is_one_function_and_runs_like_the_others(registry):
    @harness.case('toy', ('faster', 2.0), lambda s: {'n': s.count(1000, 10)})
    def toy(b, sizes, rng):
        x = rng.uniform(size=sizes['n'])
        return b.compare('sum of {} numbers'.format(sizes['n']),
                         ours={'numpy in': lambda i: x.sum()},
                         reference=lambda i: sum(x.tolist()),
                         agree=(lambda: x.sum(), lambda: np.float64(sum(x.tolist()))),
                         notes=['a toy'])

    out = harness.run(['toy'], repeat=1, scale=harness.QUICK_SCALE)
    row = out['cases'][0]
    assert list(harness.CASES)[-1] == 'toy' and harness.GOALS['toy'] == ('faster', 2.0)
    assert out['settings']['sizes'] == {'toy': {'n': 10}}
    assert row['ratio'] == pytest.approx(row['ref_ms'] / row['ours_ms'])
    assert row['same_as_gluoncv'] is True and 'a toy' in row['notes']
    assert [r[0] for r in table_rows(report.format_table(out))] == ['toy']


def test_a_case_with_an_unknown_goal_kind_is_refused(registry):
    with pytest.raises(ValueError, match='goal kind'):
        harness.case('toy', ('slower', 2.0), lambda s: {})


def test_count_differences_allows_float_rounding_only():
    count = harness.count_differences
    ours = (np.array([1., -1., 0.]), np.array([0.5, 0.25]))
    assert count(ours, (np.array([1, -1, 0]), np.array([0.5, 0.25 + 1e-9]))) == 0
    assert count(ours, (np.array([1, 0, 0]), np.array([0.5, 0.26]))) == 2
    assert count(ours, (np.zeros(2), np.zeros(2))) == -1


def test_rss_probe_measures_our_sampler_in_a_subprocess():
    import samplers.rpn  # noqa: F401  (a broken library fails here, it is not skipped)
    peak, why = cases._rss_peak(20000, 10, 0)
    assert why is None and peak >= 0


def _meta():
    out = harness.run(['rpn-sampler-memory'], scale=harness.QUICK_SCALE, rss=False)
    return {'machine': out['machine'], 'settings': out['settings']}


# --------------------------------------------------------------------------- options
def test_cases_option_runs_only_the_named_cases(monkeypatch):
    seen = {}
    meta = _meta()

    def fake_run(cases, *args):
        seen['cases'] = cases
        return {'cases': [], **meta}

    monkeypatch.setattr(cli, 'run', fake_run)
    cli.main(['--cases', 'quota,ohem', 'rpn-c4', '--quick'])
    assert seen['cases'] == ['quota', 'ohem', 'rpn-c4']


def test_unknown_case_is_rejected_naming_the_cases():
    with pytest.raises(ValueError, match='cases must be .*rpn-c4.*nope'):
        harness.run(['nope'])


def test_unknown_case_on_the_command_line_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['--cases', 'nope'])
    assert exit_info.value.code == 2 and 'nope' in capsys.readouterr().err


@pytest.mark.parametrize('kwargs, name', [({'repeat': 0}, 'repeat'), ({'scale': 0}, 'scale'),
                                          ({'warmup': -1}, 'warmup')])
def test_bad_settings_are_rejected_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        harness.run(**kwargs)


def test_quick_means_tiny_sizes_few_repeats_and_no_subprocess():
    _, args = cli._parse(['--quick'])
    assert (args.scale, args.repeat, args.rss) == (harness.QUICK_SCALE, 3, False)


def test_defaults_are_full_size_seven_repeats_and_rss_check():
    _, args = cli._parse([])
    assert (args.scale, args.repeat, args.rss, args.cases) == (1.0, 7, True, list(harness.CASES))


# --------------------------------------------------------------------------- docs table and plot
COMMAND = 'python -m tools.bench --write-table'


def test_table_block_between_markers_is_replaced_and_the_rest_kept(tmp_path, quick_report):
    path = tmp_path / 'bench.md'
    path.write_text(PAGE)
    report.write_table(str(path), report.table_block(quick_report, COMMAND))
    text = path.read_text()
    before, rest = text.split(report.TABLE_START)
    block, after = rest.split(report.TABLE_END)
    assert before == 'intro\n\n' and after == '\n\nafter\n'
    assert 'old table' not in block and report.format_table(quick_report) in block


def test_table_block_names_the_command_and_the_cpu(quick_report):
    first = report.table_block(quick_report, COMMAND).split('\n\n')[0].replace('\n', ' ')
    assert '`{}`'.format(COMMAND) in first
    assert 'on {} '.format(quick_report['machine']['cpu']) in first


def test_rewriting_the_table_twice_leaves_one_block(tmp_path, quick_report):
    path = tmp_path / 'bench.md'
    path.write_text(PAGE)
    report.write_table(str(path), report.table_block(quick_report, COMMAND))
    once = path.read_text()
    report.write_table(str(path), report.table_block(quick_report, COMMAND))
    assert path.read_text() == once


def test_write_table_flag_rewrites_the_file(tmp_path, monkeypatch, capsys, quick_report):
    monkeypatch.setattr(cli, 'run', lambda *a, **k: quick_report)
    path = tmp_path / 'bench.md'
    path.write_text(PAGE)
    cli.main(['--quick', '--write-table', str(path)])
    assert [row[0] for row in table_rows(path.read_text().split(report.TABLE_START)[1]
                                         .split('\n\n', 1)[1])][0] == 'rpn-c4'
    assert '--write-table' in path.read_text()  # says which command produced it


def test_write_table_defaults_to_docs_bench_md_of_the_checkout():
    _, args = cli._parse(['--write-table'])
    assert args.write_table == os.path.join(cases.ROOT, 'docs', 'bench.md')
    with open(args.write_table, encoding='utf-8') as f:
        report.check_markers(f.read(), args.write_table)  # the page can take the table


def test_write_table_without_markers_fails_before_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, 'run', lambda *a, **k: pytest.fail('ran anyway'))
    path = tmp_path / 'bench.md'
    path.write_text('no markers here\n')
    with pytest.raises(SystemExit):
        cli.main(['--write-table', str(path)])
    assert 'bench:start' in capsys.readouterr().err
    assert path.read_text() == 'no markers here\n'


def test_plot_writes_a_png(tmp_path, quick_report):
    pytest.importorskip('matplotlib')
    path = tmp_path / 'bench.png'
    report.plot(quick_report, str(path))
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_ratio_reports_the_path_taking_gluoncvs_own_inputs_even_when_numpy_is_faster():
    timings = {'ours:NDArray in': {'median': 0.004}, 'ours:numpy in': {'median': 0.002},
               'gluoncv': {'median': 0.040}}
    row = harness.make_row('quota', 'what', 'gluoncv', timings,
                     ['ours:NDArray in', 'ours:numpy in'], 'gluoncv')
    assert row['path'] == 'NDArray in'
    assert row['ratio'] == pytest.approx(10.0)


def test_ssd_loss_case_times_ours_gluoncv_and_one_log_softmax_pass():
    row = harness.run(['ssd-loss'], repeat=1, scale=harness.QUICK_SCALE)['cases'][0]
    assert row['ours_ms'] > 0 and row['ref_ms'] > 0 and row['path'] == 'NDArray in'
    assert any(note.startswith('one log-softmax pass ') for note in row['notes'])
    assert any(note.startswith('second goal, ours <= 1.5x one log-softmax pass (median of the '
                               'per-round ratio): ') and
               note.endswith(', not judged below scale 1') for note in row['notes'])
    assert set(row['paired']) == {'one log-softmax pass'} and row['paired'][
        'one log-softmax pass'] > 0
    assert row['same_as_gluoncv'] is True


# --------------------------------------------------------------------------- balanced draws
def test_balanced_cases_time_each_strategy_against_the_uniform_sampler(quick_report):
    rows = [r for r in quick_report['cases'] if 'balanced' in r['case']]
    assert [r['case'] for r in rows] == ['quota-iou-balanced', 'quota-instance-balanced',
                                         'rpn-sampler-iou-balanced',
                                         'rpn-sampler-instance-balanced']
    for row in rows:
        assert row['reference'].startswith('floor: uniform') and row['ours_ms'] > 0, row
        assert row['same_as_uniform'] is True, row


# --------------------------------------------------------------------------- rcnn-transform
def test_rcnn_transform_case_times_the_class_install_uses_and_agrees_with_gluoncv(quick_report):
    row = next(r for r in quick_report['cases'] if r['case'] == 'rcnn-transform')
    assert row['path'] == 'with install()' and row['ours_ms'] > 0 and row['ref_ms'] > 0
    assert row['same_as_gluoncv'] is True


# --------------------------------------------------------------------------- --baseline
@pytest.fixture(scope='module')
def checkout():
    """The git checkout samplers is imported from; skips when there is none (or no git)."""
    try:
        return baseline.repo_root()
    except ValueError as err:
        pytest.skip(str(err))


@pytest.fixture(scope='module')
def head_report(checkout):
    """One tiny ``--baseline HEAD`` run: two timed cases and the memory case."""
    return baseline.run_baseline('HEAD', ['quota', 'rpn-sampler', 'rpn-sampler-memory'], repeat=3,
                              scale=harness.QUICK_SCALE)


def test_baseline_head_gives_each_path_a_ratio_inside_its_interval(head_report):
    rows = [r for r in head_report['cases'] if r['path']]
    assert [(r['case'], r['path']) for r in rows] == [
        ('rpn-sampler', 'numpy in'), ('quota', 'NDArray in'), ('quota', 'numpy in')]
    for row in rows:
        assert row['base_ms'] > 0 and row['now_ms'] > 0 and row['rounds'] == 3
        assert row['low'] <= row['ratio'] <= row['high']


def test_baseline_skips_the_memory_case_saying_so(head_report):
    row = head_report['cases'][-1]
    assert row['case'] == 'rpn-sampler-memory' and row['ratio'] is None
    assert 'skipped: memory case' in row['notes'][0]


def test_baseline_table_has_one_line_per_row_and_names_the_commit(head_report):
    table = report.format_baseline_table(head_report)
    commit = head_report['settings']['baseline_commit']
    assert [row[0] for row in table_rows(table)].count('quota') == 2
    assert 'now / baseline' in table.splitlines()[0]
    assert 'Baseline HEAD ({})'.format(commit[:10]) in table


def test_baseline_copy_registers_its_op_under_a_suffixed_name(checkout):
    package, commit, ops = baseline.load_baseline('HEAD')
    assert ops == ['samplers_quota']
    assert package.quota.OP_TYPE == 'samplers_quota_baseline_' + commit[:10]
    assert package.__name__ == 'samplers_baseline_' + commit[:10]


def test_our_quota_sampler_still_runs_our_op_after_the_baseline_import(checkout):
    baseline.load_baseline('HEAD')
    owners = baseline._quota_op_modules()
    assert owners and set(owners) == {'samplers.quota'}


def test_rename_ops_suffixes_registered_names_and_absolute_imports(tmp_path):
    folder = tmp_path / 'copy'
    folder.mkdir()
    (folder / 'a.py').write_text("OP_TYPE = 'x_op'\n@mx.operator.register(\"y_op\")\n"
                                 "F.Custom(op_type=OP_TYPE)\nF.Custom(op_type='y_op')\n"
                                 "NAME = 'x_op_other'\n")
    (folder / 'b.py').write_text("    from samplers.rpn import R\nfrom .a import OP_TYPE\n")
    assert baseline.rename_ops(str(folder), '_b') == ['x_op', 'y_op']
    assert (folder / 'a.py').read_text() == (
        "OP_TYPE = 'x_op_b'\n@mx.operator.register(\"y_op_b\")\n"
        "F.Custom(op_type=OP_TYPE)\nF.Custom(op_type='y_op_b')\nNAME = 'x_op_other'\n")
    assert (folder / 'b.py').read_text() == "    from copy.rpn import R\nfrom .a import OP_TYPE\n"


def test_baseline_times_its_own_classes_on_the_same_inputs(monkeypatch):
    seen = {'now': [], 'base': []}

    def recorder(side):
        def make(*args, **kwargs):
            return lambda *inputs: seen[side].append([harness.host(x) for x in inputs])
        return make

    monkeypatch.setattr(cases, 'QuotaSampler', recorder('now'))
    fake = type('Package', (), {'QuotaSampler': staticmethod(recorder('base'))})
    monkeypatch.setattr(baseline, 'load_baseline', lambda rev: (fake, 'f' * 40, []))
    out = baseline.run_baseline('fake', ['quota', 'rpn-sampler'], repeat=1,
                                scale=harness.QUICK_SCALE)
    assert len(seen['now']) == len(seen['base']) == 4  # 2 paths x (warm-up + 1 run)
    for ours, theirs in zip(seen['now'], seen['base']):
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)
    assert [r['path'] for r in out['cases']] == [None, 'NDArray in', 'numpy in']
    assert out['cases'][0]['notes'] == ['not in baseline (no RPNTargetSampler)']


def test_baseline_json_parses_and_unknown_revision_is_a_one_line_usage_error(checkout, capsys):
    cli.main(['--baseline', 'HEAD', '--cases', 'ohem', '--quick', '--json'])
    rows = json.loads(capsys.readouterr().out)['cases']
    assert [r['path'] for r in rows] == ['NDArray in', 'numpy in']
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['--baseline', 'no-such-revision', '--quick'])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "unknown revision 'no-such-revision'" in err
    assert 'Traceback' not in err


def test_baseline_outside_a_checkout_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(baseline, 'package_parent', lambda: str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['--baseline', 'HEAD', '--quick'])
    assert exit_info.value.code == 2 and 'git checkout' in capsys.readouterr().err


def test_write_table_refuses_a_subset_of_cases(tmp_path, capsys):
    # The block holds the whole table; a subset would silently drop the other rows.
    path = tmp_path / 'bench.md'
    text = 'x\n{}\nold\n{}\n'.format(report.TABLE_START, report.TABLE_END)
    path.write_text(text)
    with pytest.raises(SystemExit):
        cli.main(['--quick', '--cases', 'quota', '--write-table', str(path)])
    assert 'whole table' in capsys.readouterr().err
    assert path.read_text() == text


def test_a_paired_multiple_is_the_median_of_the_per_round_ratios(registry, monkeypatch):
    # Round by round, ours / other: 2/1, 4/1, 3/3 -> median 2; the medians' ratio would be 3.
    rounds = {'ours:numpy in': [2.0, 4.0, 3.0], 'GluonCV': [5.0, 5.0, 5.0],
              'other': [1.0, 1.0, 3.0]}

    def fake_time_alternating(runners, repeat, warmup=1, keep=False):
        assert keep and list(runners) == list(rounds)
        return {label: {'median': float(np.median(s)), 'min': min(s), 'runs': len(s),
                        'seconds': s} for label, s in rounds.items()}

    monkeypatch.setattr(harness, 'time_alternating', fake_time_alternating)

    @harness.case('toy', ('faster', 2.0), lambda s: {'n': 1})
    def toy(b, sizes, rng):
        return b.compare('toy', ours={'numpy in': lambda i: None}, reference=lambda i: None,
                         others={'other': lambda i: None}, paired=('other',))

    row = harness.run(['toy'], repeat=3, scale=harness.QUICK_SCALE, check=False)['cases'][0]
    assert row['paired'] == {'other': pytest.approx(2.0)}
    assert row['ours_ms'] / row['timings_ms']['other'] == pytest.approx(3.0)


def test_ohem_step_case_times_the_ohem_step_against_the_plain_step():
    row = harness.run(['ohem-step'], repeat=1, scale=harness.QUICK_SCALE)['cases'][0]
    assert row['reference'] == 'plain step' and row['ref_ms'] > 0
    assert row['path'] == 'OHEM top_n 128' and row['ours_ms'] > 0
