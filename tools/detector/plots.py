"""The study's pictures: one validation image per arm with its detections, and metrics per arm."""
from __future__ import annotations

import numpy as np

from .stats import summarize

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
    """Per detector: mAP@0.5 and the mean top detection score on hard boxes, per arm.

    Grey: one line per seed through the arms (the pairing); black: mean and
    95 % t interval over seeds.
    """
    plt = _pyplot()
    detectors = [d for d in DETECTOR_NAMES if any(r['detector'] == d for r in results)]
    if not detectors:
        return None
    keys = (('map50', 'mAP@0.5 (VOC07)'), ('hard_score', 'top detection score on hard boxes'))
    fig, axes = plt.subplots(len(detectors), 2, figsize=(9, 3.1 * len(detectors)),
                             squeeze=False)
    for detector, line in zip(detectors, axes):
        seeds, arms, stats = summarize(results, detector)
        x = np.arange(len(arms))
        for ax, (key, label) in zip(line, keys):
            if seeds:
                values = np.array([stats[a][key]['values'] for a in arms])  # arms x seeds
                ax.plot(x, values, color='0.75', linewidth=0.8, marker='.', zorder=1)
                means = [stats[a][key]['mean'] for a in arms]
                half = [stats[a][key]['half'] if np.isfinite(stats[a][key]['half']) else 0
                        for a in arms]
                ax.errorbar(x, means, yerr=half, fmt='o', color='black', capsize=4, zorder=2)
            ax.set_xticks(x)
            ax.set_xticklabels(arms, fontsize=8)
            ax.set_ylabel(label, fontsize=8)
            ax.set_title('{} ({} seeds)'.format(DETECTOR_NAMES[detector], len(seeds)),
                         fontsize=9)
            ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path
