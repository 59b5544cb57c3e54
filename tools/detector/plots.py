"""The study's pictures: one validation image per arm with its detections, and metrics per arm."""
from __future__ import annotations

import numpy as np

from .stats import arms_of, per_arm

DETECTOR_NAMES = {'rcnn': 'Faster R-CNN', 'ssd': 'SSD'}
CLASS_COLOURS = ('#e41a1c', '#377eb8', '#ff7f00', '#984ea3', '#4daf4a', '#a65628')


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_detections_png(path, results, seed, images, classes):
    """Rows: detectors; columns: arms. Each panel: the seed's example validation image.

    Ground truth in white (hard boxes dashed), detections with score >= 0.3 in
    their class colour with class name and score. ``images``: detector ->
    (H, W, 3) uint8 image in the frame its detections are in.
    """
    plt = _pyplot()
    rows = [(d, [r for r in results if r['detector'] == d and r['seed'] == seed
                 and r.get('example')]) for d in DETECTOR_NAMES if d in images]
    rows = [(d, runs) for d, runs in rows if runs]
    if not rows:
        return None
    cols = max(len(runs) for _, runs in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.6 * cols, 3.2 * len(rows)),
                             squeeze=False)
    for (detector, runs), line in zip(rows, axes):
        for ax, run in zip(line, runs):
            ax.imshow(images[detector])
            example = run['example']
            for x1, y1, x2, y2, _, hard, *_ in example['gt']:
                ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                           edgecolor='white', linewidth=1.2,
                                           linestyle='--' if hard == 1 else '-'))
            for (x1, y1, x2, y2), cls, score in zip(example['boxes'], example['ids'],
                                                    example['scores']):
                colour = CLASS_COLOURS[int(cls) % len(CLASS_COLOURS)]
                ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                           edgecolor=colour, linewidth=2))
                ax.text(x1, y1 - 2, '{} {:.2f}'.format(classes[int(cls)], score), fontsize=6,
                        color='white', backgroundcolor=colour, va='bottom')
            ax.set_title('{} {}  mAP {:.2f}'.format(DETECTOR_NAMES[detector], run['arm'],
                                                    run['map50']), fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in line[len(runs):]:
            ax.axis('off')
    fig.suptitle('Validation image {} of seed {}: ground truth white (hard dashed), '
                 'detections with score >= 0.3 coloured'.format(rows[0][1][0]['example']['index'],
                                                                seed), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def save_metrics_png(path, results):
    """Per detector: mAP@0.5 and mAP@0.5 with hard boxes counted as normal, per arm.

    Grey: one dot per seed, joined through the arms for the seeds every arm has
    (the pairing); black: mean and 95 % t interval over the arm's seeds.
    """
    plt = _pyplot()
    detectors = [d for d in DETECTOR_NAMES if any(r['detector'] == d for r in results)]
    if not detectors:
        return None
    keys = (('map50', 'mAP@0.5 (VOC07, difficult ignored)'),
            ('map50_all', 'mAP@0.5, hard boxes counted as normal'))
    fig, axes = plt.subplots(len(detectors), 2, figsize=(10, 3.1 * len(detectors)),
                             squeeze=False)
    for detector, line in zip(detectors, axes):
        arms = arms_of(results, detector)
        x = np.arange(len(arms))
        for ax, (key, label) in zip(line, keys):
            stats = per_arm(results, detector, key)
            shared = sorted(set.intersection(*(set(stats[a]['seeds']) for a in arms)))
            for seed in shared:
                ax.plot(x, [stats[a]['values'][stats[a]['seeds'].index(seed)] for a in arms],
                        color='0.8', linewidth=0.8, zorder=1)
            for i, a in enumerate(arms):
                ax.plot([i] * len(stats[a]['values']), stats[a]['values'], '.', color='0.6',
                        zorder=1)
            half = [stats[a]['half'] if np.isfinite(stats[a]['half']) else 0 for a in arms]
            ax.errorbar(x, [stats[a]['mean'] for a in arms], yerr=half, fmt='o',
                        color='black', capsize=4, zorder=2)
            ax.set_xticks(x)
            ax.set_xticklabels(arms, fontsize=7, rotation=20)
            ax.set_ylabel(label, fontsize=8)
            ax.set_title('{} (seeds per arm: {})'.format(
                DETECTOR_NAMES[detector], sorted({len(stats[a]['seeds']) for a in arms})),
                fontsize=9)
            ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def save_curves_png(path, results):
    """Per detector: mAP@0.5 against training steps, one line per arm (mean over seeds, with
    the seeds' own curves faint); None when no run has a curve."""
    plt = _pyplot()
    detectors = [d for d in DETECTOR_NAMES
                 if any(r['detector'] == d and r.get('curve') for r in results)]
    if not detectors:
        return None
    fig, axes = plt.subplots(1, len(detectors), figsize=(5.5 * len(detectors), 3.4),
                             squeeze=False)
    for detector, ax in zip(detectors, axes[0]):
        runs = [r for r in results if r['detector'] == detector and r.get('curve')]
        for i, arm in enumerate(arms_of(runs, detector)):
            colour = CLASS_COLOURS[i % len(CLASS_COLOURS)]
            mine = [r for r in runs if r['arm'] == arm]
            for r in mine:
                ax.plot([p['step'] for p in r['curve']], [p['map50'] for p in r['curve']],
                        color=colour, alpha=0.25, linewidth=0.8)
            steps = sorted({p['step'] for r in mine for p in r['curve']})
            means = [np.mean([p['map50'] for r in mine for p in r['curve'] if p['step'] == s])
                     for s in steps]
            ax.plot(steps, means, marker='o', color=colour,
                    label='{} ({} seeds)'.format(arm, len(mine)))
        ax.set_xlabel('training steps', fontsize=8)
        ax.set_ylabel('mAP@0.5', fontsize=8)
        ax.set_title('{}: learning curves'.format(DETECTOR_NAMES[detector]), fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path
