"""GluonCV's own training scripts with ``install(rcnn_ohem=True)``, offline, on tiny sets.

Run from the checkout::

    python -m tools.ohem_check --gluoncv DIR [--scripts faster,mask] [--images 4]

``DIR`` holds GluonCV's ``scripts/`` (read, never copied). Each run is a fresh process
(:func:`tools.crowd_check.run_script`: ``HOME`` redirected, ``pretrained_base=False``) that
trains one epoch, batch size 1, of:

* ``faster``: ``train_faster_rcnn.py --dataset voc --network resnet50_v1b`` on a tiny VOC07+12
  set (:func:`tools.detector.data.write_synthetic_voc`'s images, VOC class names), once with
  its ordinary difficult flags and once with every object difficult;
* ``mask``: ``train_mask_rcnn.py --dataset coco --network resnet18_v1b`` on
  :func:`tools.crowd_check.write_coco`'s tiny COCO set.

Arms: ``random`` (the two lines ``import samplers.gluoncv`` / ``samplers.gluoncv.install()``),
``ohem`` (``install(rcnn_ohem=True)``) and ``ohem-no-nms`` (``install(rcnn_ohem=True,
ohem_nms_thresh=None)``: no de-duplication) and ``ohem-all`` (``ohem_top_n=None``: every
proposal scored, not the 512 of highest RPN score), the script
unchanged otherwise and seeded by its own ``--seed``. Printed per run: iterations,
second-stage rows trained (class target >= 0), positives trained, and the trained rows' mean
softmax cross-entropy over the run and at the first step. Only the first step compares like
with like: every arm starts from the same weights on the same image, and after it each arm's
weights follow its own rows.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from tools.crowd_check import REPO, run_script, write_coco

__all__ = ['write_voc07_12', 'main']

INSTALL = {'random': 'import samplers.gluoncv\nsamplers.gluoncv.install()\n',
           'ohem': 'import samplers.gluoncv\nsamplers.gluoncv.install(rcnn_ohem=True)\n',
           'ohem-no-nms': 'import samplers.gluoncv\n'
                          'samplers.gluoncv.install(rcnn_ohem=True, ohem_nms_thresh=None)\n',
           'ohem-all': 'import samplers.gluoncv\n'
                       'samplers.gluoncv.install(rcnn_ohem=True, ohem_top_n=None)\n'}
SCRIPTS = {
    'faster': ('scripts/detection/faster_rcnn/train_faster_rcnn.py',
               ['--dataset', 'voc', '--network', 'resnet50_v1b'], (0, 8)),
    'mask': ('scripts/instance/mask_rcnn/train_mask_rcnn.py',
             ['--dataset', 'coco', '--network', 'resnet18_v1b'], (0, 9)),
}
VOC_NAMES = ('dog', 'car', 'person')  # the synthetic set's three classes, as VOC classes


def write_voc07_12(root, images, all_difficult=False):
    """A tiny VOCdevkit under ``root`` as ``train_faster_rcnn.py --dataset voc`` reads it:
    ``VOC2007`` (trainval, test) and ``VOC2012`` (trainval, the same images). Returns root."""
    from tools.detector.data import CLASSES, write_synthetic_voc
    write_synthetic_voc(root, 0, images, 2)
    base = os.path.join(root, 'VOC2007')
    for path in glob.glob(os.path.join(base, 'Annotations', '*.xml')):
        with open(path) as f:
            text = f.read()
        for ours, voc in zip(CLASSES, VOC_NAMES):
            text = text.replace('<name>{}</name>'.format(ours), '<name>{}</name>'.format(voc))
        if all_difficult:
            text = re.sub('<difficult>0</difficult>', '<difficult>1</difficult>', text)
        with open(path, 'w') as f:
            f.write(text)
    main_dir = os.path.join(base, 'ImageSets', 'Main')
    for ours, voc in (('train', 'trainval'), ('val', 'test')):
        with open(os.path.join(main_dir, ours + '.txt')) as f, \
                open(os.path.join(main_dir, voc + '.txt'), 'w') as g:
            g.write(f.read())
    if not os.path.exists(os.path.join(root, 'VOC2012')):
        os.symlink(base, os.path.join(root, 'VOC2012'))
    return root


class _Rows:
    """Second-stage rows each training forward trained, from the network's outputs."""

    def __init__(self, cls_pred_at, cls_target_at):
        self.at = (cls_pred_at, cls_target_at)
        self.counts = dict(iterations=0, rows=0, positives=0, loss_sum=0.0,
                           first_rows=0, first_mean_cls_loss=float('nan'))

    def saw_outputs(self, out):
        cls_pred, target = (out[i].asnumpy() for i in self.at)
        logp = cls_pred - np.log(np.exp(cls_pred - cls_pred.max(-1, keepdims=True)).sum(
            -1, keepdims=True)) - cls_pred.max(-1, keepdims=True)
        keep = target >= 0
        picked = np.take_along_axis(logp, np.maximum(target, 0).astype(int)[..., None], -1)
        c = self.counts
        c['iterations'] += 1
        c['rows'] += int(keep.sum())
        c['positives'] += int((target > 0).sum())
        c['loss_sum'] += float(-picked[..., 0][keep].sum())
        if c['iterations'] == 1:  # every arm's first step: the same weights and image
            c['first_rows'] = int(keep.sum())
            c['first_mean_cls_loss'] = float(-picked[..., 0][keep].mean()) if keep.any() \
                else float('nan')


def child(script, arm, root, gluoncv_dir, out):
    path, args, at = SCRIPTS[script]
    rows = _Rows(*at)
    run_script(gluoncv_dir, path, args, INSTALL[arm], {'voc' if script == 'faster' else 'coco':
                                                      root}, lambda x: None, rows.saw_outputs)
    c = rows.counts
    with open(out, 'w') as f:
        json.dump(dict(script=script, arm=arm, root=os.path.basename(root),
                       mean_cls_loss=c['loss_sum'] / max(c['rows'], 1), **c), f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--gluoncv', required=True, help="a folder holding GluonCV's scripts/")
    parser.add_argument('--scripts', default='faster,mask')
    parser.add_argument('--images', type=int, default=4, help='training images (iterations)')
    parser.add_argument('--out', default='ohem_check.json')
    parser.add_argument('--child', nargs=3, metavar=('SCRIPT', 'ARM', 'ROOT'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.gluoncv, args.out)
        return
    tmp = tempfile.mkdtemp(prefix='ohem-check-')
    sets = {'faster': [write_voc07_12(os.path.join(tmp, 'voc'), args.images),
                       write_voc07_12(os.path.join(tmp, 'voc-all-difficult'), args.images,
                                      all_difficult=True)],
            'mask': [write_coco(os.path.join(tmp, 'coco'))]}
    results = []
    for script in args.scripts.split(','):
        for root in sets[script]:
            for arm in INSTALL:
                out = tempfile.mktemp(suffix='.json')
                subprocess.run([sys.executable, '-m', 'tools.ohem_check', '--gluoncv',
                                args.gluoncv, '--out', out, '--child', script, arm, root],
                               check=True, cwd=REPO)
                with open(out) as f:
                    results.append(json.load(f))
                print('{script:6s} {root:18s} {arm:11s}  iterations {iterations}  rows trained '
                      '{rows}  positives {positives}  mean cls loss {mean_cls_loss:.4f}  '
                      'first step: rows {first_rows}, mean cls loss {first_mean_cls_loss:.4f}'
                      .format(**results[-1]), flush=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
