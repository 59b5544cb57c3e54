"""samplers.viz.plot_samples: what gets drawn, how, and which inputs are refused."""
import io

import pytest

matplotlib = pytest.importorskip('matplotlib')  # the viz extra
matplotlib.use('Agg')  # headless; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from samplers.viz import (CHANGED_STYLE, LABEL_STYLES, plot_proposals, plot_samples,  # noqa: E402
                          samples_from_cls_target)
from conftest import requires_gpu  # noqa: E402

ANCHORS = np.array([[0, 0, 10, 10],     # positive
                    [20, 20, 30, 30],   # negative
                    [40, 40, 50, 50],   # ignored, overlaps the gt box below
                    [80, 80, 90, 90]],  # ignored, far from everything
                   dtype=np.float32)
SAMPLES = np.array([1, -1, 0, 0], dtype=np.float32)
GT = np.array([[0, 0, 12, 12], [38, 38, 52, 52]], dtype=np.float32)
IMAGE = np.zeros((100, 100, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')


def rects(ax, color=None):
    """Rectangles on ``ax`` (optionally of one colour), as (x1, y1, x2, y2) tuples."""
    out = []
    for p in ax.patches:
        if isinstance(p, Rectangle) and (color is None or to_hex(p.get_edgecolor()) == color):
            x, y = p.get_xy()
            out.append((x, y, x + p.get_width(), y + p.get_height()))
    return sorted(out)


def color(label):
    return LABEL_STYLES[label]['color']


def test_returns_the_axes_it_was_given():
    _, ax = plt.subplots()
    assert plot_samples(IMAGE, ANCHORS, SAMPLES, ax=ax) is ax


def test_makes_new_axes_when_none_given():
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES)
    assert ax.figure is not None


def centres(ax, name):
    """(x, y) of the markers drawn for label ``name``."""
    line, = [ln for ln in ax.get_lines() if ln.get_label().startswith(name)]
    return sorted(zip(line.get_xdata(), line.get_ydata()))


def test_draws_each_positive_anchor_as_a_green_box():
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES)
    assert rects(ax, color(1)) == [tuple(ANCHORS[0])]


def test_draws_each_negative_anchor_as_a_dot_at_its_centre():
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES)
    assert centres(ax, 'negative') == [(25, 25)]
    assert rects(ax, color(-1)) == []


def test_draws_ignored_anchors_near_ground_truth_as_rings_at_their_centres():
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT)
    assert centres(ax, 'ignored') == [(45, 45)]
    assert rects(ax, color(0)) == []


def test_ignored_iou_sets_how_close_to_ground_truth_ignored_anchors_must_be():
    # ANCHORS[2] has IoU 100/196 with GT[1], ANCHORS[3] overlaps nothing.
    def drawn(iou):
        return centres(plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT, ignored_iou=iou),
                       'ignored')
    assert drawn(0.52) == []
    assert drawn(0.0) == [(45, 45), (85, 85)]
    assert drawn(None) == []


def test_draws_no_ignored_anchor_without_ground_truth():
    assert centres(plot_samples(IMAGE, ANCHORS, SAMPLES), 'ignored') == []


def test_legend_counts_every_label_including_undrawn_ignored():
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert 'positive (1)' in texts and 'negative (1, dots)' in texts
    assert any(t.startswith('ignored (2, 1 ') for t in texts)


def test_hard_ground_truth_is_dashed_and_normal_is_solid():
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT, hard=np.array([0, 1]))
    gt_patches = {tuple(b): p for p in ax.patches if p.get_zorder() == 5
                  for b in [(p.get_x(), p.get_y(), p.get_x() + p.get_width(),
                             p.get_y() + p.get_height())]}
    assert gt_patches[tuple(GT[0])].get_linestyle() == '-'
    assert gt_patches[tuple(GT[1])].get_linestyle() == '--'
    assert to_hex(gt_patches[tuple(GT[0])].get_edgecolor()) != \
        to_hex(gt_patches[tuple(GT[1])].get_edgecolor())


def test_accepts_a_label_array_as_gt_boxes():
    label = np.concatenate([GT, [[3], [4]]], axis=1)
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=label)
    assert len([p for p in ax.patches if p.get_zorder() == 5]) == len(GT)


def test_accepts_ndarrays_on_a_non_default_context():
    ctx = mx.cpu(1)
    ax = plot_samples(mx.nd.array(IMAGE, ctx=ctx, dtype='uint8'), mx.nd.array(ANCHORS, ctx=ctx),
                      mx.nd.array(SAMPLES, ctx=ctx), gt_boxes=mx.nd.array(GT, ctx=ctx),
                      hard=mx.nd.array([0, 1], ctx=ctx))
    assert rects(ax, color(1)) == [tuple(ANCHORS[0])]


@requires_gpu
def test_accepts_ndarrays_on_a_gpu():
    ctx = mx.gpu(0)
    ax = plot_samples(mx.nd.array(IMAGE, ctx=ctx, dtype='uint8'), mx.nd.array(ANCHORS, ctx=ctx),
                      mx.nd.array(SAMPLES, ctx=ctx), gt_boxes=mx.nd.array(GT, ctx=ctx))
    assert rects(ax, color(1)) == [tuple(ANCHORS[0])]


def test_chw_float_tensor_is_shown_as_an_hwc_image():
    tensor = np.random.normal(size=(3, 40, 60)).astype(np.float32)
    ax = plot_samples(tensor, ANCHORS, SAMPLES)
    shown = ax.get_images()[0].get_array()
    assert shown.shape == (40, 60, 3)
    assert shown.min() >= 0 and shown.max() <= 1


def test_axes_cover_the_whole_image_with_y_pointing_down():
    ax = plot_samples(np.zeros((40, 60), np.uint8), ANCHORS, SAMPLES)
    assert ax.get_xlim() == (-0.5, 59.5)
    assert ax.get_ylim() == (39.5, -0.5)


def test_without_image_axes_cover_every_box():
    ax = plot_samples(None, ANCHORS, SAMPLES, gt_boxes=GT)
    x1, x2 = ax.get_xlim()
    y2, y1 = ax.get_ylim()
    assert x1 <= ANCHORS[:, 0].min() and x2 >= ANCHORS[:, 2].max()
    assert y1 <= ANCHORS[:, 1].min() and y2 >= ANCHORS[:, 3].max()


def test_skips_anchors_with_non_finite_coordinates():
    anchors = ANCHORS.copy()
    anchors[:2, 2] = np.nan
    ax = plot_samples(IMAGE, anchors, SAMPLES)
    assert rects(ax, color(1)) == []
    assert centres(ax, 'negative') == []


def test_skips_ground_truth_boxes_with_non_finite_coordinates():
    gt = np.array([[38, 38, 52, 52], [0, 0, np.nan, 12], [0, 0, np.inf, 12]], np.float32)
    ax = plot_samples(None, ANCHORS, SAMPLES, gt_boxes=gt, hard=np.array([0, 0, 1]))
    assert [p.get_zorder() for p in ax.patches].count(5) == 1
    assert np.isfinite(ax.get_xlim()).all() and np.isfinite(ax.get_ylim()).all()


def test_renders_headless_to_png():
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT, hard=np.array([0, 1]))
    buf = io.BytesIO()
    ax.figure.savefig(buf, format='png')
    assert buf.getvalue()[:8] == b'\x89PNG\r\n\x1a\n'


def changed_ring(ax):
    """The line that rings changed anchors, or None."""
    found = [ln for ln in ax.get_lines() if ln.get_label().startswith('changed')]
    return found[0] if found else None


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_reference_rings_each_anchor_whose_label_changed_and_counts_them():
    # SAMPLES ignores anchors 2 and 3; the reference made them positive and negative
    reference = np.array([1, -1, 1, -1], np.float32)
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT, reference=reference)
    ring = changed_ring(ax)
    assert sorted(zip(ring.get_xdata(), ring.get_ydata())) == [(45, 45), (85, 85)]
    assert to_hex(ring.get_markeredgecolor()) == CHANGED_STYLE['color']
    assert 'changed (2, 1 neg→ign, 1 pos→ign)' in legend_texts(ax)


def test_reference_draws_the_box_of_a_former_positive_dashed_blue():
    reference = np.array([1, -1, 1, 0], np.float32)
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT, reference=reference)
    assert rects(ax, CHANGED_STYLE['color']) == [tuple(ANCHORS[2])]
    assert 'was positive (1, dashed box)' in legend_texts(ax)


def test_without_reference_nothing_is_ringed_as_changed():
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT)
    assert changed_ring(ax) is None
    assert rects(ax, CHANGED_STYLE['color']) == []


def test_the_same_labels_as_the_reference_change_nothing():
    ax = plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT, reference=SAMPLES)
    assert len(changed_ring(ax).get_xdata()) == 0
    assert 'changed (0)' in legend_texts(ax)


def test_spread_draws_anchors_sharing_a_centre_apart_on_a_ring():
    anchors = np.array([[40, 40, 50, 50], [35, 35, 55, 55], [42, 30, 48, 60]], np.float32)
    labels = np.array([-1, -1, -1], np.float32)
    together = centres(plot_samples(None, anchors, labels), 'negative')
    assert together == [(45, 45)] * 3
    apart = centres(plot_samples(None, anchors, labels, spread=3), 'negative')
    assert len(set(apart)) == 3
    np.testing.assert_allclose([np.hypot(x - 45, y - 45) for x, y in apart], 3)


def test_spread_leaves_an_anchor_alone_at_its_centre():
    ax = plot_samples(None, ANCHORS, SAMPLES, spread=3)
    assert centres(ax, 'negative') == [(25, 25)]


@pytest.mark.parametrize('kwargs, match', [
    (dict(reference=np.array([1, -1, 0])), r'reference must have shape \(4,\).*got \(3,\)'),
    (dict(reference=np.array([1, -1, 0, 5])), 'reference must hold only 1, -1 and 0, got 5'),
    (dict(spread=-1), 'spread must be a number >= 0, got -1'),
])
def test_rejects_a_bad_reference_or_spread(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_samples(IMAGE, ANCHORS, SAMPLES, **kwargs)


def test_proposals_on_hard_objects_are_drawn_apart_and_counted():
    proposals = np.array([[38, 38, 52, 52], [39, 39, 52, 52], [0, 0, 12, 12], [70, 70, 90, 90]],
                         np.float32)
    ax = plot_proposals(IMAGE, proposals, gt_boxes=GT, hard=[0, 1], hard_iou=0.5)
    assert sorted(legend_texts(ax)) == ['ground truth', 'hard ground truth',
                                        'on hard objects (2)', 'proposals (2)']
    thick = [p for p in ax.patches if p.get_zorder() == 4.5]
    assert len(thick) == 2 and all(p.get_linewidth() > 2 for p in thick)


def test_proposals_without_hard_iou_are_all_alike():
    ax = plot_proposals(IMAGE, GT, gt_boxes=GT, hard=[0, 1])
    assert 'proposals (2)' in legend_texts(ax)
    assert not any(t.startswith('on hard') for t in legend_texts(ax))


@pytest.mark.parametrize('samples, match', [
    (np.array([1, -1, 0]), r'samples must have shape \(4,\).*got \(3,\)'),
    (np.array([1, -1, 0, 2]), r'samples must hold only 1, -1 and 0, got 2'),
    (np.array([1, -1, 0, np.nan]), r'samples must hold only .* got nan'),
])
def test_rejects_bad_samples(samples, match):
    with pytest.raises(ValueError, match=match):
        plot_samples(IMAGE, ANCHORS, samples)


def test_rejects_an_ignored_iou_that_is_not_a_number():
    with pytest.raises(ValueError, match="ignored_iou must be a number, got 'x'"):
        plot_samples(IMAGE, ANCHORS, SAMPLES, ignored_iou='x')


def test_rejects_anchors_that_are_not_n_by_4():
    with pytest.raises(ValueError, match=r'anchors must have shape \(N, 4\), got \(4, 3\)'):
        plot_samples(IMAGE, ANCHORS[:, :3], SAMPLES)


def test_rejects_hard_flags_without_gt_boxes():
    with pytest.raises(ValueError, match='hard was given .* without gt_boxes'):
        plot_samples(IMAGE, ANCHORS, SAMPLES, hard=np.array([0, 1]))


def test_rejects_hard_flags_of_the_wrong_length():
    with pytest.raises(ValueError, match=r'hard must have shape \(2,\).*got \(3,\)'):
        plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT, hard=np.array([0, 1, 0]))


def test_rejects_gt_boxes_with_fewer_than_four_columns():
    with pytest.raises(ValueError, match=r'gt_boxes must have shape .* got \(2, 3\)'):
        plot_samples(IMAGE, ANCHORS, SAMPLES, gt_boxes=GT[:, :3])


def test_rejects_an_image_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r'image must have shape .* got \(10, 10, 5\)'):
        plot_samples(np.zeros((10, 10, 5)), ANCHORS, SAMPLES)


@pytest.mark.parametrize('kind', ['numpy', 'ndarray'])
def test_samples_from_cls_target_maps_1_0_minus1_to_1_minus1_0(kind):
    cls = np.array([[1, 0, -1]], np.float32)
    out = samples_from_cls_target(cls if kind == 'numpy' else mx.nd.array(cls))
    np.testing.assert_array_equal(out, [[1, -1, 0]])
    assert out.dtype == np.float32
