"""Pictures of what a sampler picked: anchors coloured by label over the image.

Needs the ``viz`` extra (matplotlib), imported only when a picture is drawn,
so ``import samplers.viz`` itself costs nothing. Labels follow the package
convention (see :mod:`samplers`).
"""
from __future__ import annotations

import numpy as np

from ._arrays import IGNORE, NEGATIVE, POSITIVE, to_numpy
from .checks import check_boxes, check_positive, check_ratio, check_thresh
from .boxes import box_iou, labels_from_cls_target

__all__ = ['plot_samples', 'plot_proposals', 'samples_from_cls_target', 'LABEL_STYLES',
           'CHANGED_STYLE']

#: How each label is drawn: matplotlib colour, line width, line style. Every mark
#: also gets a thin black outline, so it reads on light and dark images alike.
LABEL_STYLES = {
    POSITIVE: dict(color='#00ff40', linewidth=1.6, linestyle='-', name='positive'),
    NEGATIVE: dict(color='#ff2020', linewidth=0.6, linestyle='-', name='negative'),
    IGNORE: dict(color='#ffc000', linewidth=1.2, linestyle=':', name='ignored'),
}
_GT_STYLE = dict(color='#00e5ff', linewidth=2.2, linestyle='-')
_HARD_STYLE = dict(color='#ff00ff', linewidth=2.2, linestyle='--')
_PROPOSAL_STYLE = dict(color='#ffdd00', linewidth=1.2, linestyle='-')
_ON_HARD_STYLE = dict(color='#ff3000', linewidth=2.6, linestyle='-')
#: Anchors whose label differs from ``reference`` (see :func:`plot_samples`).
CHANGED_STYLE = dict(color='#1040ff', linewidth=2.0, linestyle='--', name='changed')
_SHORT = {POSITIVE: 'pos', NEGATIVE: 'neg', IGNORE: 'ign'}


def _matplotlib():
    """matplotlib's ``patches`` module, with an install hint when the extra is missing."""
    try:
        from matplotlib import patches
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('samplers.viz needs matplotlib: pip install "gluon-samplers[viz]"') \
            from err
    return patches


def _displayable(image):
    """(H, W, 3) or (H, W) array ready for ``imshow``; CHW tensors are transposed.

    uint8 images are shown as they are; float images are min-max scaled to
    [0, 1], so a normalized network input tensor is still readable.
    """
    img = to_numpy(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3, 4):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
        raise ValueError('image must have shape (H, W), (H, W, 3) or (3, H, W), got {}'.format(
            tuple(np.shape(image))))
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float64)
    finite = np.isfinite(img)
    if not finite.any():
        return np.zeros(img.shape)
    low, high = img[finite].min(), img[finite].max()
    img = np.where(finite, img, low)
    return (img - low) / (high - low) if high > low else np.zeros(img.shape)


def _outline(linewidth):
    """matplotlib path effects: a black stroke under the mark, for contrast on any image."""
    from matplotlib import patheffects
    return [patheffects.Stroke(linewidth=linewidth + 1.6, foreground='black', alpha=0.8),
            patheffects.Normal()]


def _rect(patches, box, style, zorder, label=None):
    x1, y1, x2, y2 = (float(v) for v in box)
    return patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, zorder=zorder,
                             label=label, color=style['color'], linewidth=style['linewidth'],
                             linestyle=style['linestyle'],
                             path_effects=_outline(style['linewidth']))


def samples_from_cls_target(cls_target):
    """RPN ``cls_target`` (1 positive, 0 negative, -1 ignored) -> labels (1, -1, 0), float32.

    ``cls_target`` is what ``RPNTargetGenerator`` and the Faster R-CNN
    training transforms return, numpy or NDArray, any shape; the result is
    numpy of the same shape, ready for :func:`plot_samples`
    (:func:`samplers.boxes.labels_from_cls_target` on the host).
    """
    return labels_from_cls_target(to_numpy(cls_target))


def plot_samples(image, anchors, samples, gt_boxes=None, hard=None, ax=None, *,
                 ignored_iou=0.3, image_alpha=1.0, reference=None, spread=None):
    """Draw the anchors a sampler labelled over the image, and return the axes.

    Parameters
    ----------
    image : (H, W, 3), (H, W) or (3, H, W) numpy array or NDArray, or None
        uint8 is shown as is; float (e.g. the normalized network input) is
        min-max scaled for display. None draws on a blank canvas.
    anchors : (N, 4) corner boxes (x1, y1, x2, y2), numpy or NDArray.
    samples : (N,) labels, 1 positive, -1 negative, 0 ignored (the package
        convention; convert an RPN ``cls_target`` with
        :func:`samples_from_cls_target`).
    gt_boxes : (M, 4) ground-truth corner boxes, or an (M, 5+) label array
        whose first four columns are the boxes; default None draws none.
    hard : (M,) 0/1 hard flags for ``gt_boxes``; default None means none hard.
    ax : matplotlib axes to draw into; default None makes a new figure.
    ignored_iou : float or None, default 0.3 (keyword only)
        Ignored anchors are drawn where their IoU with some ground-truth box
        (hard or not) is at least this; None draws none.
    image_alpha : float in (0, 1], default 1 (keyword only)
        Opacity of the image over the white axes: below 1 it is faded, so the
        marks stand out on a busy image.
    reference : (N,) labels or None, default None (keyword only)
        Another rule's labels for the same anchors (for example GluonCV's,
        beside ours with hard flags). Every anchor whose label differs is
        ringed in thick blue; one that ``reference`` made positive also gets
        its box drawn dashed blue. The legend counts the changes, e.g.
        ``changed (3, 2 neg→ign, 1 pos→ign)``.
    spread : float or None, default None (keyword only)
        Anchors sharing a centre (the sizes and ratios of one cell) are drawn
        as separate markers on a ring of this radius (image pixels) around
        it, in anchor order, so that no label hides another. None draws them
        all at the centre.

    An image has hundreds of negatives and thousands of ignored anchors, so
    only positives are drawn as boxes (green); negatives are red dots at
    their centres, and the ignored anchors near ground truth (see
    ``ignored_iou``; none without ``gt_boxes``) amber rings at theirs.
    Ground truth is drawn cyan, hard ground truth dashed magenta. The legend
    gives every label's full count. Anchors and ground-truth boxes with a
    non-finite coordinate are skipped.
    """
    anchors_np = to_numpy(anchors, np.float64)
    check_boxes('anchors', anchors_np, batched=False)
    labels = _check_labels('samples', samples, anchors_np)
    if ignored_iou is not None:
        ignored_iou = check_thresh('ignored_iou', ignored_iou)
    image_alpha = check_ratio('image_alpha', image_alpha, low_open=True)
    if reference is not None:
        reference = _check_labels('reference', reference, anchors_np)
    if spread is not None:
        spread = check_positive('spread', spread, zero_ok=True)
    gt, hard_flags = _check_gt(gt_boxes, hard)
    if gt is not None:
        shown = np.isfinite(gt).all(axis=1)
        gt, hard_flags = gt[shown], hard_flags[shown]
    picture = None if image is None else _displayable(image)

    patches = _matplotlib()
    if ax is None:
        import matplotlib.pyplot as plt  # only here: drawing into given axes needs no pyplot
        _, ax = plt.subplots(figsize=(6, 6))
    if picture is not None:
        ax.imshow(picture, cmap='gray' if picture.ndim == 2 else None, interpolation='nearest',
                  alpha=image_alpha)

    finite = np.isfinite(anchors_np).all(axis=1)
    near_gt = np.zeros(len(anchors_np), dtype=bool)
    if gt is not None and len(gt) and ignored_iou is not None and finite.any():
        near_gt[finite] = (box_iou(anchors_np[finite], gt) >= ignored_iou).any(axis=1)
    counts = {value: int((labels == value).sum()) for value in LABEL_STYLES}
    at = _marker_positions(anchors_np, finite, spread)

    if reference is not None:
        changed = finite & (labels != reference)
        _changed(ax, patches, anchors_np, at, changed, reference, labels)
    style = LABEL_STYLES[IGNORE]
    chosen = (labels == IGNORE) & finite & near_gt
    small = spread is not None  # markers shrink so that a cell's ring of anchors stays apart
    _centres(ax, at[chosen], style, 2, 'o', '{} ({}, {} near objects: rings)'.format(
        style['name'], counts[IGNORE], int(chosen.sum())), filled=False, small=small)
    style = LABEL_STYLES[NEGATIVE]
    _centres(ax, at[(labels == NEGATIVE) & finite], style, 3, 'o',
             '{} ({}, dots)'.format(style['name'], counts[NEGATIVE]), small=small)

    style = LABEL_STYLES[POSITIVE]
    positive = (labels == POSITIVE) & finite
    _boxes(ax, patches, anchors_np[positive], style, 4,
           '{} ({})'.format(style['name'], counts[POSITIVE]))
    if spread is not None:
        _centres(ax, at[positive], style, 4, 's', '_positive markers', small=small)

    if gt is not None:
        _boxes(ax, patches, gt[~hard_flags], _GT_STYLE, 5, 'ground truth', always=False)
        _boxes(ax, patches, gt[hard_flags], _HARD_STYLE, 5, 'hard ground truth', always=False)
    _set_limits(ax, picture, anchors_np[finite], gt)
    ax.legend(loc='upper right', fontsize='x-small', framealpha=0.8)
    return ax


def plot_proposals(image, proposals, gt_boxes=None, hard=None, ax=None, *, hard_iou=None):
    """Draw proposals (yellow) over the image with the ground truth, and return the axes.

    ``image``, ``gt_boxes``, ``hard`` and ``ax`` as in :func:`plot_samples`;
    ``proposals`` (K, 4) corner boxes, numpy or NDArray. Ground truth is cyan,
    hard ground truth dashed magenta; boxes with a non-finite coordinate are
    skipped. ``hard_iou`` (keyword only, default None): proposals with IoU
    >= ``hard_iou`` with a hard box (false alarms, for a rule that should not
    propose hard objects) are drawn thick orange-red and counted apart in the
    legend, ``on hard objects (n)``.
    """
    boxes = to_numpy(proposals, np.float64)
    check_boxes('proposals', boxes, batched=False)
    if hard_iou is not None:
        hard_iou = check_thresh('hard_iou', hard_iou)
    gt, hard_flags = _check_gt(gt_boxes, hard)
    picture = None if image is None else _displayable(image)
    patches = _matplotlib()
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(6, 6))
    if picture is not None:
        ax.imshow(picture, cmap='gray' if picture.ndim == 2 else None, interpolation='nearest')
    boxes = boxes[np.isfinite(boxes).all(axis=1)]
    if gt is not None:
        gt, hard_flags = gt[np.isfinite(gt).all(axis=1)], hard_flags[np.isfinite(gt).all(axis=1)]
    on_hard = np.zeros(len(boxes), dtype=bool)
    if hard_iou is not None and gt is not None and hard_flags.any() and len(boxes):
        on_hard = (box_iou(boxes, gt[hard_flags]) >= hard_iou).any(axis=1)
    _boxes(ax, patches, boxes[~on_hard], _PROPOSAL_STYLE, 4,
           'proposals ({})'.format(int((~on_hard).sum())))
    if hard_iou is not None:
        _boxes(ax, patches, boxes[on_hard], _ON_HARD_STYLE, 4.5,
               'on hard objects ({})'.format(int(on_hard.sum())))
    if gt is not None:
        _boxes(ax, patches, gt[~hard_flags], _GT_STYLE, 5, 'ground truth', always=False)
        _boxes(ax, patches, gt[hard_flags], _HARD_STYLE, 5, 'hard ground truth', always=False)
    _set_limits(ax, picture, boxes.reshape(-1, 4), gt)
    ax.legend(loc='upper right', fontsize='x-small', framealpha=0.8)
    return ax


def _check_labels(name, values, anchors):
    """(N,) numpy labels holding only 1, -1 and 0, one per anchor."""
    labels = to_numpy(values)
    if labels.shape != anchors.shape[:1]:
        raise ValueError('{} must have shape ({},) to match anchors {}, got {}'.format(
            name, anchors.shape[0], anchors.shape, labels.shape))
    unknown = ~np.isin(labels, (POSITIVE, NEGATIVE, IGNORE))
    if unknown.any():
        raise ValueError('{} must hold only 1, -1 and 0, got {!r}'.format(
            name, labels[unknown][0]))
    return labels


def _marker_positions(anchors, finite, spread):
    """(N, 2) where each anchor's marker goes: its centre, or with ``spread`` a point on a ring.

    Anchors sharing a centre are placed in anchor order on a circle of radius
    ``spread`` around it, starting at the top and going clockwise on screen.
    """
    at = np.full((len(anchors), 2), np.nan)
    at[finite] = (anchors[finite, :2] + anchors[finite, 2:]) / 2
    if not spread or not finite.any():
        return at
    index = np.flatnonzero(finite)
    _, group = np.unique(np.round(at[index], 6), axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind='stable')
    sizes = np.bincount(group)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(len(index), dtype=np.int64)
    rank[order] = np.arange(len(index)) - starts[group[order]]
    angle = 2 * np.pi * rank / sizes[group]
    shared = sizes[group] > 1
    at[index[shared], 0] += spread * np.sin(angle[shared])
    at[index[shared], 1] -= spread * np.cos(angle[shared])
    return at


def _changed(ax, patches, anchors, at, changed, reference, labels):
    """Thick blue rings on the anchors whose label differs from ``reference``, counted."""
    pairs = {}
    for old, new in zip(reference[changed], labels[changed]):
        key = '{} {}'.format(_SHORT[old], _SHORT[new])
        pairs[key] = pairs.get(key, 0) + 1
    legend = '{} ({}{})'.format(CHANGED_STYLE['name'], int(changed.sum()), ''.join(
        ', {} {}'.format(n, k.replace(' ', '→')) for k, n in sorted(pairs.items())))
    ax.plot(at[changed, 0], at[changed, 1], linestyle='none', marker='o', markersize=8,
            markerfacecolor='none', markeredgecolor=CHANGED_STYLE['color'],
            markeredgewidth=CHANGED_STYLE['linewidth'], zorder=1.5, label=legend)
    was_positive = changed & (reference == POSITIVE)
    _boxes(ax, patches, anchors[was_positive], CHANGED_STYLE, 4,
           'was positive ({}, dashed box)'.format(int(was_positive.sum())), always=False)


def _centres(ax, at, style, zorder, marker, legend, filled=True, small=False):
    """One marker per (x, y) row of ``at`` (anchors at one point share a marker).

    Filled markers get a black edge; rings are drawn over a wider black ring,
    or, ``small``, thinner and without it (faint beside the filled ones).
    """
    cx, cy = at[:, 0], at[:, 1]
    if not filled and not small:
        ax.plot(cx, cy, linestyle='none', marker=marker, markersize=7, markerfacecolor='none',
                markeredgecolor='black', markeredgewidth=2.6, alpha=0.8, zorder=zorder)
    ax.plot(cx, cy, linestyle='none', marker=marker,
            markersize=(3.5 if filled else 4.5) if small else (4 if filled else 7),
            alpha=0.75 if small and not filled else None,
            color=style['color'], markerfacecolor=style['color'] if filled else 'none',
            markeredgewidth=0.6 if filled else 1.3,
            markeredgecolor='black' if filled else style['color'], zorder=zorder, label=legend)


def _boxes(ax, patches, boxes, style, zorder, legend, always=True):
    """Draw ``boxes`` as rectangles; with ``always`` the legend entry appears even for none."""
    for i, box in enumerate(boxes):
        ax.add_patch(_rect(patches, box, style, zorder, legend if i == 0 else None))
    if always and not len(boxes):
        ax.plot([], [], color=style['color'], linestyle=style['linestyle'], label=legend)


def _check_gt(gt_boxes, hard):
    """Validated (M, 4) float boxes and (M,) bool hard flags, or (None, None)."""
    if gt_boxes is None:
        if hard is not None:
            raise ValueError('hard was given ({} flags) without gt_boxes'.format(
                np.size(to_numpy(hard))))
        return None, None
    gt = to_numpy(gt_boxes, np.float64)
    if gt.ndim != 2 or gt.shape[1] < 4:
        raise ValueError('gt_boxes must have shape (M, 4) or (M, 5+), got {}'.format(gt.shape))
    gt = gt[:, :4]
    if hard is None:
        return gt, np.zeros(len(gt), dtype=bool)
    flags = to_numpy(hard)
    if flags.shape != (len(gt),):
        raise ValueError('hard must have shape ({},) to match gt_boxes, got {}'.format(
            len(gt), flags.shape))
    return gt, flags > 0


def _set_limits(ax, picture, anchors, gt):
    """Show the whole image, or every box when there is no image; y grows downwards."""
    if picture is not None:
        height, width = picture.shape[:2]
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        return
    boxes = anchors if gt is None else np.concatenate([anchors, gt])
    if len(boxes) == 0:
        ax.invert_yaxis()
        return
    ax.set_xlim(boxes[:, 0].min() - 1, boxes[:, 2].max() + 1)
    ax.set_ylim(boxes[:, 3].max() + 1, boxes[:, 1].min() - 1)
    ax.set_aspect('equal')
