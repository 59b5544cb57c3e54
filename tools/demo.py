"""The demo: the seeded study on a small budget, and pictures of what hard flags change.

Run it from the checkout as ``python -m tools.demo [--seeds N] [--steps S] [--arms
A,B,...] [--out DIR]`` (``make demo``). It is :mod:`tools.study` with a budget
that fits in about three minutes on two CPU cores (3 seeds, 200 steps per
run, the five default arms): it prints the study's headline tables (mean ±
sd per arm, paired differences against GluonCV's generator with 95 %
t-intervals) and writes to ``--out`` (default ``samplers-demo``):

* ``samples.png``: one validation image cropped on a faint object flagged
  hard, its anchors labelled by GluonCV's generator, ours with hard flags
  and ours with ``hard_iof_thresh``; the anchors whose label differs from
  GluonCV's are ringed blue and counted in each panel's title;
* ``proposals.png``: every arm's top-10 proposals on hard objects per hard
  box over the seeds, and GluonCV's and the hard-flag arm's top-10 (first
  seed) on the validation image where they differ most, those on a hard
  object drawn thick and counted;
* ``loss_curves.png`` and ``differences.png``, as the study draws them;
* ``study.json``, the per-run numbers.

Three seeds and 200 steps show the machinery, not a verdict: the numbers
the README quotes come from ``python -m tools.study --seeds 10``.
"""
import os
import time

import numpy as np

from samplers import HardRule, box_iof, box_iou

from tools.study import arms, data
from tools.study.__main__ import check_args, parser, report
from tools.study.model import top_proposals
from tools.study.plots import figure
from tools.study.train import load, run_study

__all__ = ['main', 'example_index', 'save_samples_png', 'save_proposals_png', 'hard_hits',
           'pick_image', 'shown_arms']

SEEDS = 3
STEPS = 200
#: Arms whose labels ``samples.png`` shows, left to right.
SAMPLE_ARMS = ('gluoncv', 'hard', 'hard+iof')
SAMPLE_TITLES = {'gluoncv': 'GluonCV, stock (the reference)',
                 'ours': 'samplers, no hard flags',
                 'hard': 'samplers + hard flags',
                 'hard+iof': 'samplers + hard flags + hard_iof_thresh={}'.format(arms.HARD_IOF)}


def example_index(dataset, min_side=28):
    """A validation image with a normal object and a large faint hard one apart from it.

    The hard box's shorter side is at least ``min_side`` px, so the smallest
    anchors fit inside it with IoU < 0.3: that is where the three rules of
    ``samples.png`` all differ (tiny hard boxes change no label at all).
    Returns the index, or 0 when no image qualifies.
    """
    for i, (_, label) in enumerate(dataset):
        hard, normal = label[label[:, 5] > 0], label[label[:, 5] == 0]
        side = np.minimum(hard[:, 2] - hard[:, 0], hard[:, 3] - hard[:, 1])
        apart = box_iou(hard[:, :4], normal[:, :4]).max(axis=1, initial=0) == 0
        if len(normal) >= 1 and ((side >= min_side) & apart).any():
            return i
    return 0


def on_hard(label, anchors, iou=0.3, iof=0.5):
    """(N,) bool: anchors with IoU >= ``iou`` with a hard box or lying ``iof`` inside one.

    The anchors whose label hard flags (IoU) or ``hard_iof_thresh`` (IoF) can change.
    """
    hard = label[label[:, 5] > 0, :4]
    if not len(hard):
        return np.zeros(len(anchors), bool)
    return ((box_iou(anchors, hard) >= iou) | (box_iof(anchors, hard) >= iof)).any(axis=1)


def rule_labels(arm, label, anchors):
    """(N,) labels (package convention) an arm's rule gives ``anchors`` before subsampling.

    The arm's generator with ``num_sample`` = N, so no candidate is dropped at
    random and the picture shows the rule itself.
    """
    from samplers import RPNTargetGenerator
    from samplers.viz import samples_from_cls_target
    n = len(anchors)
    if arm == 'gluoncv':
        from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator as Reference
        import mxnet as mx
        cls_t = Reference(num_sample=n)(mx.nd.array(label[:, :4]), mx.nd.array(anchors),
                                        data.IMAGE_SIZE, data.IMAGE_SIZE)[0]
    else:
        iof = arms.HARD_IOF if arm == 'hard+iof' else None
        cls_t = RPNTargetGenerator(num_sample=n, hard=HardRule(iof_thresh=iof))(
            label[:, :4], anchors, data.IMAGE_SIZE, data.IMAGE_SIZE,
            hard=label[:, 5] if arm != 'ours' else None)[0]
    return samples_from_cls_target(cls_t)


def _crop(label, margin=16):
    """(x1, y1, x2, y2) around the largest hard box of ``label``, or the whole image."""
    hard = label[label[:, 5] > 0]
    if not len(hard):
        return 0, 0, data.IMAGE_SIZE, data.IMAGE_SIZE
    box = hard[np.argmax((hard[:, 2] - hard[:, 0]) * (hard[:, 3] - hard[:, 1])), :4]
    side = max(box[2] - box[0], box[3] - box[1]) + 2 * margin
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(side, 48) / 2
    x1 = float(np.clip(cx - half, 0, data.IMAGE_SIZE - 2 * half))
    y1 = float(np.clip(cy - half, 0, data.IMAGE_SIZE - 2 * half))
    return x1, y1, x1 + 2 * half, y1 + 2 * half


def save_samples_png(path, image, label, anchors, labelled):
    """The anchors on the hard object as each rule labels them, the same crop side by side.

    ``labelled``: (title, labels (N,) in the package convention) per panel;
    the first is the reference (GluonCV's rule), and every later panel rings
    the anchors whose label differs from it (thick blue) and counts them in
    its title. Only the anchors of :func:`on_hard` are drawn, each as its own
    marker (the 15 anchors of a cell on a small ring round its centre), over
    the faded image. Returns the figure.
    """
    from samplers.viz import plot_samples
    fig = figure(4.6 * len(labelled), 6.4)
    x1, y1, x2, y2 = _crop(label)
    near = on_hard(label, anchors)
    reference = labelled[0][1][near]
    for i, (title, samples) in enumerate(labelled):
        ax = fig.add_subplot(1, len(labelled), i + 1)
        plot_samples(image, anchors[near], samples[near], gt_boxes=label[:, :4],
                     hard=label[:, 5], ax=ax, ignored_iou=0.0, image_alpha=0.45,
                     reference=None if i == 0 else reference, spread=2.6)
        ax.set_xlim(x1 - 0.5, x2 - 0.5)
        ax.set_ylim(y2 - 0.5, y1 - 0.5)
        changed = int((samples[near] != reference).sum())
        ax.set_title('{}\n{}'.format(title, '' if i == 0 else
                                      '{} anchor{} changed (blue rings)'.format(
                                          changed, 's' * (changed != 1))),
                     fontsize=10, color='black' if i == 0 else '#1040ff')
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.01), fontsize='x-small', ncol=2,
                  framealpha=1)
    fig.suptitle('The same crop round a faint object flagged hard (dashed magenta), labelled by '
                 'three rules. GluonCV makes an anchor on it positive (green box)\nand the small '
                 'anchors inside it negatives (red dots). Hard flags make that positive ignored '
                 '(amber ring); hard_iof_thresh also ignores\nthe small anchors inside. Each '
                 'anchor with IoU >= 0.3 with the hard box or lying half inside it is one marker '
                 '(a cell\'s 15 anchors ring its centre),\nlabelled before random '
                 'subsampling; blue rings: label differs from GluonCV\'s.', fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.80, bottom=0.15, wspace=0.08)
    fig.savefig(path)
    return fig


def hard_hits(proposals, label, iou=0.5):
    """How many of ``proposals`` (K, 4) overlap a hard box of ``label`` at IoU >= ``iou``.

    The false alarms that ``hard FA@10`` counts (:func:`tools.study.model.evaluate`).
    """
    hard = label[label[:, 5] > 0, :4]
    if not len(hard) or not len(proposals):
        return 0
    return int((box_iou(np.asarray(proposals), hard) >= iou).any(axis=1).sum())


def shown_arms(arms_run):
    """The arms ``proposals.png`` draws on an image: the baseline and the plain hard-flag arm.

    ``hard`` when it was run (else the second arm); one arm when only one was run.
    """
    base = arms_run[0]
    others = [a for a in arms_run if a != base]
    if not others:
        return [base]
    return [base, 'hard' if 'hard' in others else others[0]]


def pick_image(val_set, proposals, shown):
    """The validation image where ``shown[0]`` puts most more proposals on hard boxes than
    ``shown[1]`` (ties: most such proposals in all); with one arm, where it puts most."""
    hits = [[hard_hits(props, label) for props, (_, label) in zip(proposals[arm], val_set)]
            for arm in shown]
    gap = np.subtract(hits[0], hits[-1]) if len(shown) > 1 else np.zeros(len(val_set))
    return int(np.lexsort((-np.sum(hits, axis=0), -gap))[0])


def _hard_fa_panel(ax, results, confidence=0.95):
    """Per arm over the seeds: hard FA@10 for each seed (dots) and its mean with a t-interval."""
    from tools.study.stats import summarize, t_quantile
    seeds, arms_run, stats = summarize(results)
    for y, arm in enumerate(arms_run):
        values = stats[arm]['hard_fa10']['values']
        ax.plot(values, [y] * len(values), 'o', color='0.55', markersize=4, zorder=2)
        err = None
        if len(values) > 1:
            err = t_quantile(confidence, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(
                len(values))
        ax.errorbar([np.mean(values)], [y], xerr=err, fmt='D', color='#c02000', capsize=4,
                    markersize=6, zorder=3)
    ax.set_yticks(range(len(arms_run)))
    ax.set_yticklabels(arms_run, fontsize=9)
    ax.set_ylim(len(arms_run) - 0.5, -0.5)
    ax.set_xlabel('top-10 proposals on a hard box (IoU >= 0.5), per hard box', fontsize=8)
    ax.set_title('hard FA@10 over {} seed{} (lower is better)\ndiamond: mean, bar: {:.0f} % '
                 't-interval, grey: seeds'.format(len(seeds), 's' * (len(seeds) != 1),
                                                   100 * confidence), fontsize=9)
    ax.tick_params(labelsize=8)


def save_proposals_png(path, results, val_set, proposals, top_k=10):
    """Top-``top_k`` proposals on hard objects: per arm over the seeds, and on one image.

    Left: every arm's ``hard FA@10`` over the seeds (``results``). Right: the
    top-``top_k`` proposals of the arms of :func:`shown_arms` (first seed;
    ``proposals``: arm -> per-image (K, 4) boxes of ``val_set``) on the image
    of :func:`pick_image`, those on a hard box thick orange-red and counted in
    the panel's title. Returns the figure.
    """
    from samplers.viz import plot_proposals
    shown = shown_arms([arm for arm in dict.fromkeys(r['arm'] for r in results)
                        if arm in proposals])
    index = pick_image(val_set, proposals, shown)
    image, label = val_set[index]
    fig = figure(4.6 + 3.9 * len(shown), 4.9)
    grid = fig.add_gridspec(1, 1 + len(shown), width_ratios=[1.2] + [1] * len(shown))
    _hard_fa_panel(fig.add_subplot(grid[0, 0]), results)
    for i, arm in enumerate(shown):
        ax = fig.add_subplot(grid[0, i + 1])
        boxes = proposals[arm][index][:top_k]
        plot_proposals(image, boxes, gt_boxes=label[:, :4], hard=label[:, 5], ax=ax,
                       hard_iou=0.5)
        hits = hard_hits(boxes, label)
        ax.set_title('{}: {} of its top-{} proposals\non a hard object'.format(
            arm, hits, len(boxes)), fontsize=10, color='#c02000' if hits else 'black')
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.01), fontsize='x-small', ncol=2,
                  framealpha=1)
    fig.suptitle('Proposals on hard objects (dashed magenta) are false alarms; hard flags aim '
                 'to cut them. Left: how many per hard box, every arm, every seed. Right: {} and '
                 '{}\non validation image {} of the first seed, picked as the one where {}\'s '
                 'top-{} has the most more on hard objects than {}\'s: the largest gap, not a '
                 'typical image.\nOrange-red: proposals on a hard object (IoU >= 0.5); yellow: '
                 'the others; cyan: normal objects.'.format(
                     shown[0], shown[-1], index, shown[0], top_k, shown[-1]), fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.99, top=0.76, bottom=0.2, wspace=0.12)
    fig.savefig(path)
    return fig


def main(argv=None):
    """Run the demo; returns the study's list of result dicts."""
    p = parser(prog='python -m tools.demo', seeds=SEEDS, steps=STEPS)
    args = check_args(p, p.parse_args(argv))
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    path = os.path.join(args.out, 'study.json')
    anchors = data.make_anchors()
    val_set = data.make_dataset(args.val_images, seed=args.first_seed + 1)
    example = example_index(val_set)
    image, label = val_set[example]
    proposals = {}

    def keep(seed, arm, net, _):
        if seed == args.first_seed:
            proposals[arm] = top_proposals(net, [img for img, _ in val_set], anchors, 10)

    if args.report:
        results, histories = load(path)
    else:
        num_hard = sum(int(lab[:, 5].sum()) for _, lab in val_set)
        print('synthetic set per seed: {} train / {} val images of {}x{} px (first seed: {} val '
              'boxes, {} hard); {} anchors per image; {} seed(s) x {} arms x {} steps'.format(
                  args.train_images, args.val_images, data.IMAGE_SIZE, data.IMAGE_SIZE,
                  sum(len(lab) for _, lab in val_set), num_hard, len(anchors), args.seeds,
                  len(args.arms), args.steps))
        results, histories = run_study(
            range(args.first_seed, args.first_seed + args.seeds), args.arms, args.steps,
            args.train_images, args.val_images, json_path=path, keep=keep)
    print()
    names = report(results, histories, args.out)
    if names:  # matplotlib is there
        labelled = [(SAMPLE_TITLES[arm], rule_labels(arm, label, anchors))
                    for arm in SAMPLE_ARMS if arm != 'gluoncv' or arms.gluoncv_targets()]
        save_samples_png(os.path.join(args.out, 'samples.png'), image, label, anchors, labelled)
        names.append('samples.png')
        if proposals:
            save_proposals_png(os.path.join(args.out, 'proposals.png'), results, val_set,
                               proposals)
            names.append('proposals.png')
    print('wrote {} to {} ({:.0f} s in all)'.format(', '.join(['study.json'] + names), args.out,
                                                    time.time() - started))
    return results


if __name__ == '__main__':
    main()
