"""Negatives inside COCO crowd regions in GluonCV's real training scripts, stock and installed.

Run from the checkout::

    python -m tools.crowd_check --gluoncv DIR [--out crowd_check.json] [--scripts faster,mask]

``DIR`` is a checkout of GluonCV (its ``scripts/`` folder is not in the pip package; it is
read, never copied). For each script (``scripts/detection/faster_rcnn/train_faster_rcnn.py
--dataset coco`` and ``scripts/instance/mask_rcnn/train_mask_rcnn.py``) and each arm, a
fresh process trains one epoch of a tiny COCO-format set with crowd regions
(:func:`write_coco`; 4 training images, so 4 iterations at batch size 1, no validation):

* ``stock``: the script as it is;
* ``ours``: the script with the two lines ``import samplers.gluoncv`` and
  ``samplers.gluoncv.install()`` after its last import, nothing else changed.

No internet: the launcher (:func:`child`) sets ``HOME`` so that GluonCV's default dataset
root, ``~/.mxnet/datasets/coco``, is the tiny set, and makes ``get_model`` build the network
with ``pretrained_base=False``. To count, it watches, without changing anything: the
batches the script hands its ``Parallel`` executor (labels and RPN targets) and the
network's training outputs (anchors, sampled proposals and their labels). A crowd region's
box in network coordinates comes from the annotation file, scaled like the image and
flipped when the label's boxes show the transform flipped it.

Counted per arm: RPN anchors with target 0 (negative) at least ``IOF`` (0.7) inside a crowd
region, and second-stage sampled proposals labelled -1 (negative) at least 0.7 inside one;
stock GluonCV should show some, ``ours`` none.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

__all__ = ['write_coco', 'crowd_boxes', 'count_inside', 'IOF', 'main']

IOF = 0.7          # Detectron's crowd filter: at least 70 % of the box inside the region
SIZE = 256         # every image is SIZE x SIZE pixels
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {
    'faster': ('scripts/detection/faster_rcnn/train_faster_rcnn.py',
               ['--dataset', 'coco', '--network', 'resnet50_v1b']),
    'mask': ('scripts/instance/mask_rcnn/train_mask_rcnn.py',
             ['--dataset', 'coco', '--network', 'resnet18_v1b']),
}
INSTALL_LINES = 'import samplers.gluoncv\nsamplers.gluoncv.install()\n'

# Objects per image: (category id, x, y, w, h, kind); kind 'polygon' (a normal object),
# 'crowd-rle' or 'crowd-polygon' (iscrowd=1 with an RLE or a polygon segmentation).
TRAIN = [
    [(1, 20, 20, 90, 100, 'polygon'), (3, 150, 30, 80, 70, 'polygon'),
     (1, 10, 140, 236, 106, 'crowd-rle')],
    [(18, 140, 120, 100, 120, 'polygon'), (1, 8, 10, 120, 236, 'crowd-polygon')],
    [(3, 30, 170, 90, 70, 'polygon'), (1, 150, 150, 90, 90, 'polygon'),
     (15, 16, 8, 224, 140, 'crowd-rle')],
    [(1, 100, 60, 60, 150, 'polygon'), (1, 170, 20, 80, 220, 'crowd-rle'),
     (1, 4, 30, 90, 210, 'crowd-polygon')],
]
VAL = [
    [(1, 30, 30, 100, 120, 'polygon'), (1, 140, 120, 110, 130, 'crowd-rle')],
    [(3, 60, 60, 120, 100, 'polygon')],
]


# ----------------------------------------------------------------------------- the tiny set
def _rle(x, y, w, h):
    """COCO's uncompressed RLE (column-major run lengths) of a filled rectangle."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y:y + h, x:x + w] = 1
    flat = mask.flatten(order='F')
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts  # runs start with background
    return {'size': [SIZE, SIZE], 'counts': [int(c) for c in counts]}


def _annotation(ann_id, image_id, obj):
    cat, x, y, w, h, kind = obj
    polygon = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return {'id': ann_id, 'image_id': image_id, 'category_id': cat, 'bbox': [x, y, w, h],
            'area': float(w * h), 'iscrowd': int(kind.startswith('crowd')),
            'segmentation': _rle(x, y, w, h) if kind == 'crowd-rle' else polygon}


def write_coco(root, train=TRAIN, val=VAL):
    """Write a COCO-format set under ``root`` (GluonCV's layout: ``annotations/instances_
    {train,val}2017.json``, images in ``train2017/`` and ``val2017/``); returns ``root``.

    ``train`` / ``val``: per image, a list of ``(category_id, x, y, w, h, kind)`` objects
    (see :data:`TRAIN`). Categories are COCO's 80 (ids 1 to 80, GluonCV's names); images
    are SIZE x SIZE noise with each object filled in its own grey.
    """
    from gluoncv.data import COCODetection
    from PIL import Image
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    categories = [{'id': i + 1, 'name': name, 'supercategory': 'thing'}
                  for i, name in enumerate(COCODetection.CLASSES)]
    rng = np.random.RandomState(0)
    ann_id = 1
    for split, images in (('train2017', train), ('val2017', val)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        entries, annotations = [], []
        for index, objects in enumerate(images):
            image_id = index + 1
            name = '{:012d}.jpg'.format(image_id)
            pixels = rng.randint(0, 80, size=(SIZE, SIZE, 3)).astype(np.uint8)
            for k, (_, x, y, w, h, _) in enumerate(objects):
                pixels[y:y + h, x:x + w] = 100 + 40 * k
            Image.fromarray(pixels).save(os.path.join(root, split, name))
            entries.append({'id': image_id, 'file_name': name, 'width': SIZE, 'height': SIZE,
                            'coco_url': 'http://images.cocodataset.org/{}/{}'.format(split,
                                                                                       name)})
            for obj in objects:
                annotations.append(_annotation(ann_id, image_id, obj))
                ann_id += 1
        with open(os.path.join(root, 'annotations', 'instances_{}.json'.format(split)),
                  'w') as f:
            json.dump({'images': entries, 'annotations': annotations,
                       'categories': categories}, f)
    return root


def crowd_boxes(objects):
    """(K, 4) corner boxes of the crowd regions among ``objects`` (one image of :data:`TRAIN`)."""
    return np.array([[x, y, x + w, y + h] for _, x, y, w, h, kind in objects
                     if kind.startswith('crowd')], np.float32).reshape(-1, 4)


def object_boxes(objects):
    """(M, 4) corner boxes of the normal objects among ``objects``."""
    return np.array([[x, y, x + w, y + h] for _, x, y, w, h, kind in objects
                     if not kind.startswith('crowd')], np.float32).reshape(-1, 4)


def count_inside(boxes, regions, thresh=IOF):
    """How many of ``boxes`` (N, 4) lie at least ``thresh`` inside one of ``regions`` (K, 4)."""
    from samplers import box_iof
    if not len(boxes) or not len(regions):
        return 0
    return int((box_iof(np.asarray(boxes, np.float32), regions) >= thresh).any(axis=1).sum())


def regions_in_network_coordinates(label, height, width, images=TRAIN, inclusive=True):
    """Crowd regions of the training image whose objects ``label`` holds, as the network sees
    them: the label's own crowd rows (hard column 5 = 2) if it has any, else the annotation
    file's, scaled to ``height`` x ``width`` and flipped as the label's boxes show.

    ``label`` (M, 5+) numpy, padding rows -1. ``inclusive``: the dataset's corners are
    ``x + w - 1`` (``COCODetection``) rather than ``x + w`` (``COCOInstance``).
    """
    rows = label[(label[:, :4] >= 0).any(axis=1)]
    if rows.shape[1] > 5 and (rows[:, 5] == 2).any():
        return rows[rows[:, 5] == 2, :4]
    got = rows[np.lexsort(rows[:, :4].T[::-1])][:, :4]
    scale = np.array([width / SIZE, height / SIZE] * 2, np.float32)
    for objects in images:
        for flip in (False, True):
            last = [0, 0, 1, 1] if inclusive else 0
            boxes = (object_boxes(objects) - last) * scale
            regions = (crowd_boxes(objects) - last) * scale
            if flip:
                boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0],
                                  boxes[:, 3]], axis=1)
                regions = np.stack([width - regions[:, 2], regions[:, 1],
                                    width - regions[:, 0], regions[:, 3]], axis=1)
            want = boxes[np.lexsort(boxes.T[::-1])]
            if want.shape == got.shape and np.allclose(want, got, atol=0.5 * scale.max()):
                return regions
    raise AssertionError('no training image has the boxes {}'.format(got.tolist()))


# ----------------------------------------------------------------------------- one run
class _Counter:
    """What a run saw: anchors and proposals, negatives, and negatives inside a crowd region."""

    def __init__(self, rois_at, samples_at, anchors_at, rpn_at):
        self.at = (rois_at, samples_at, anchors_at)
        self.rpn_at = rpn_at  # index of the RPN class targets in a batch
        self.batch = None
        self.counts = dict(iterations=0, rpn_negatives=0, rpn_negatives_in_crowd=0,
                           rcnn_negatives=0, rcnn_negatives_in_crowd=0,
                           crowd_rows_in_labels=0)

    def saw_batch(self, x):
        self.batch = x

    def saw_outputs(self, out):
        data, label, rpn_cls = (self.batch[i] for i in (0, 1, self.rpn_at))
        label = label.asnumpy()[0]
        height, width = data.shape[2:]
        regions = regions_in_network_coordinates(label, height, width,
                                                 inclusive=self.rpn_at == 2)
        if label.shape[1] > 5:
            self.counts['crowd_rows_in_labels'] += int((label[:, 5] == 2).sum())
        rois_at, samples_at, anchors_at = self.at
        anchors = out[anchors_at].asnumpy().reshape(-1, 4)
        rpn_cls = rpn_cls.asnumpy().reshape(-1)
        assert len(anchors) == len(rpn_cls), (anchors.shape, rpn_cls.shape)
        rpn_neg = anchors[rpn_cls == 0]
        rois = out[rois_at].asnumpy().reshape(-1, 4)
        samples = out[samples_at].asnumpy().reshape(-1)
        rcnn_neg = rois[samples == -1]
        c = self.counts
        c['iterations'] += 1
        c['rpn_negatives'] += len(rpn_neg)
        c['rpn_negatives_in_crowd'] += count_inside(rpn_neg, regions)
        c['rcnn_negatives'] += len(rcnn_neg)
        c['rcnn_negatives_in_crowd'] += count_inside(rcnn_neg, regions)


def child(script, arm, root, gluoncv_dir, out):
    """Run one script (``faster`` / ``mask``) in this process, stock or with the install lines,
    and write the counts to ``out`` (JSON)."""
    # Outputs: (rois, samples, anchors) positions; batches: (data, label[, masks], rpn targets)
    counter = _Counter(*((3, 4, 8, 3) if script == 'mask' else (2, 3, 7, 2)))
    path, args = SCRIPTS[script]
    run_script(gluoncv_dir, path, args, INSTALL_LINES if arm == 'ours' else '',
               {'coco': root}, counter.saw_batch, counter.saw_outputs)
    result = dict(script=script, arm=arm, **counter.counts)
    with open(out, 'w') as f:
        json.dump(result, f)


def run_script(gluoncv_dir, path, args, install_lines, datasets, saw_batch, saw_outputs):
    """Run GluonCV's training script ``path`` (under ``gluoncv_dir``) in this process, offline.

    ``install_lines`` go after the script's ``ForwardBackwardTask`` import ('' for the stock
    script); ``datasets`` maps names under ``~/.mxnet/datasets`` to folders (``HOME`` is a
    fresh temporary folder); ``get_model`` builds with ``pretrained_base=False``. Watches,
    changing nothing: ``saw_batch(x)`` for each batch handed to ``Parallel``,
    ``saw_outputs(out)`` for each training forward of the network. ``args``: the script's
    arguments before the common ones (CPU, batch size 1, one epoch, no validation).
    """
    import runpy
    home = tempfile.mkdtemp(prefix='gluoncv-home-')
    os.makedirs(os.path.join(home, '.mxnet', 'datasets'))
    for name, root in datasets.items():
        os.symlink(os.path.abspath(root), os.path.join(home, '.mxnet', 'datasets', name))
    os.environ['HOME'] = home
    import mxnet as mx
    import gluoncv.model_zoo
    from gluoncv.utils import parallel
    build = gluoncv.model_zoo.get_model

    def get_model(name, **kwargs):
        kwargs['pretrained_base'] = False  # no internet: nothing to download
        net = build(name, **kwargs)

        def forward(*args):
            result = type(net).forward(net, *args)
            if mx.autograd.is_training() and len(args) >= 3:
                saw_outputs(result)
            return result
        net.forward = forward  # watches; the class's forward (GluonCV's or patched) runs
        return net
    gluoncv.model_zoo.get_model = get_model
    put = parallel.Parallel.put

    def watched_put(self, x):
        saw_batch(x)
        return put(self, x)
    parallel.Parallel.put = watched_put

    with open(os.path.join(gluoncv_dir, path)) as f:
        source = f.read()
    anchor = 'data_parallel import ForwardBackwardTask\n'
    assert anchor in source
    source = source.replace(anchor, anchor + install_lines, 1)
    run_file = os.path.join(home, os.path.basename(path))
    with open(run_file, 'w') as f:
        f.write(source)
    sys.argv = [run_file] + args + [
        '--gpus', '', '--batch-size', '1', '--num-workers', '0', '--epochs', '1',
        '--val-interval', '1000', '--save-interval', '0', '--log-interval', '1',
        '--kv-store', 'local', '--save-prefix', os.path.join(home, 'run_')]
    sys.path.insert(0, REPO)
    runpy.run_path(run_file, run_name='__main__')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--gluoncv', required=True, help='a checkout of GluonCV (its scripts/)')
    parser.add_argument('--scripts', default='faster,mask')
    parser.add_argument('--out', default='crowd_check.json')
    parser.add_argument('--child', nargs=3, metavar=('SCRIPT', 'ARM', 'ROOT'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.gluoncv, args.out)
        return
    root = write_coco(tempfile.mkdtemp(prefix='crowd-coco-'))
    results = []
    for script in args.scripts.split(','):
        for arm in ('stock', 'ours'):
            out = tempfile.mktemp(suffix='.json')
            subprocess.run([sys.executable, '-m', 'tools.crowd_check', '--gluoncv',
                            args.gluoncv, '--out', out, '--child', script, arm, root],
                           check=True, cwd=REPO)
            with open(out) as f:
                results.append(json.load(f))
            r = results[-1]
            print('{script:6s} {arm:5s}  iterations {iterations}  RPN negatives {rpn_negatives} '
                  '(in crowd >= 0.7: {rpn_negatives_in_crowd})  second-stage negatives '
                  '{rcnn_negatives} (in crowd >= 0.7: {rcnn_negatives_in_crowd})  crowd rows '
                  'in labels {crowd_rows_in_labels}'.format(**r), flush=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
