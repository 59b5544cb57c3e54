"""The demo: the seeded study on a small budget, and pictures of what hard flags change.

Run it from the checkout as ``python -m tools.demo [--seeds N] [--steps S] [--arms
A,B,...] [--out DIR]`` (``make demo``). It is :mod:`tools.study` with a budget
that fits in about three minutes on two CPU cores (3 seeds, 200 steps per
run, the five default arms): it prints the study's headline tables (mean ±
sd per arm, paired differences against GluonCV's generator with 95 %
t-intervals) and writes to ``--out`` (default ``samplers-demo``):

* ``samples.png``: one validation image cropped on a faint object flagged
  hard, with the anchors labelled by GluonCV's generator, ours with hard
  flags and ours with ``hard_iof_thresh``;
* ``proposals.png``: the top-10 proposals of each arm (first seed) on it;
* ``loss_curves.png`` and ``differences.png``, as the study draws them;
* ``study.json``, the per-run numbers.

Three seeds and 200 steps show the machinery, not a verdict: the numbers
the README quotes come from ``python -m tools.study --seeds 10``.
"""
import os
import time

import numpy as np

from samplers import box_iof, box_iou

from tools.study import arms, data
from tools.study.__main__ import check_args, parser, report
from tools.study.model import top_proposals
from tools.study.plots import figure
from tools.study.train import load, run_study

__all__ = ['main', 'example_index', 'save_samples_png', 'save_proposals_png']

SEEDS = 3
STEPS = 200
#: Arms whose labels ``samples.png`` shows, left to right.
SAMPLE_ARMS = ('gluoncv', 'hard', 'hard+iof')


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
    from samplers import RPNTargetGenerator  # pylint: disable=import-outside-toplevel
    from samplers.viz import samples_from_cls_target  # pylint: disable=import-outside-toplevel
    n = len(anchors)
    if arm == 'gluoncv':
        from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator as Reference
        import mxnet as mx
        cls_t = Reference(num_sample=n)(mx.nd.array(label[:, :4]), mx.nd.array(anchors),
                                        data.IMAGE_SIZE, data.IMAGE_SIZE)[0]
    else:
        iof = arms.HARD_IOF if arm == 'hard+iof' else None
        cls_t = RPNTargetGenerator(num_sample=n, hard_iof_thresh=iof)(
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
    """One panel per arm: the anchors on the hard object as that arm labels them, cropped there.

    ``labelled``: (title, labels (N,) in the package convention) per panel.
    Only the anchors of :func:`on_hard` are drawn, over the faded image.
    """
    from samplers.viz import plot_samples  # pylint: disable=import-outside-toplevel
    fig = figure(4.4 * len(labelled), 6.2)
    x1, y1, x2, y2 = _crop(label)
    near = on_hard(label, anchors)
    for i, (title, samples) in enumerate(labelled):
        ax = fig.add_subplot(1, len(labelled), i + 1)
        plot_samples(image, anchors[near], samples[near], gt_boxes=label[:, :4],
                     hard=label[:, 5], ax=ax, ignored_iou=0.0, image_alpha=0.55)
        ax.set_xlim(x1 - 0.5, x2 - 0.5)
        ax.set_ylim(y2 - 0.5, y1 - 0.5)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.01), fontsize='x-small', ncol=2,
                  framealpha=1)
    fig.suptitle('Look at the anchors on the faint object flagged hard (dashed magenta). GluonCV '
                 'teaches it as an object (green boxes: positives)\nand the small anchors inside '
                 'it as background (red dots: negatives). Hard flags: no positive (amber rings: '
                 'ignored).\n+ hard_iof_thresh: the small anchors inside it are ignored too. '
                 'Drawn: anchors with IoU >= 0.3 with the hard box or lying half inside it,\n'
                 'labelled before random subsampling; a crop of a faded validation image; '
                 'legends count what is drawn.', fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.80, bottom=0.15, wspace=0.08)
    fig.savefig(path)


def save_proposals_png(path, image, label, proposals, top_k=10):
    """The top ``top_k`` proposals of each arm on one validation image."""
    from samplers.viz import plot_proposals  # pylint: disable=import-outside-toplevel
    fig = figure(3.6 * len(proposals), 4.2)
    for i, (name, boxes) in enumerate(proposals):
        ax = fig.add_subplot(1, len(proposals), i + 1)
        plot_proposals(image, boxes[:top_k], gt_boxes=label[:, :4], hard=label[:, 5], ax=ax)
        ax.set_title('{}: top-{} proposals'.format(name, min(top_k, len(boxes))), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.get_legend().remove()
    fig.suptitle('yellow: proposals; cyan: ground truth; dashed magenta: hard ground truth '
                 '(first seed)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


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
    proposals = []

    def keep(seed, arm, net, _):
        if seed == args.first_seed:
            proposals.append((arm, top_proposals(net, [image], anchors, 10)[0]))

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
        labelled = [('{} labels'.format(arm), rule_labels(arm, label, anchors))
                    for arm in SAMPLE_ARMS if arm != 'gluoncv' or arms.gluoncv_targets()]
        save_samples_png(os.path.join(args.out, 'samples.png'), image, label, anchors, labelled)
        names.append('samples.png')
        if proposals:
            save_proposals_png(os.path.join(args.out, 'proposals.png'), image, label, proposals)
            names.append('proposals.png')
    print('wrote {} to {} ({:.0f} s in all)'.format(', '.join(['study.json'] + names), args.out,
                                                    time.time() - started))
    return results


if __name__ == '__main__':
    main()
