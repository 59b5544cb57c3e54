"""Run one of GluonCV's own training scripts offline on a tiny set, with install() lines added.

Run from the checkout::

    python -m tools.gluoncv_script --gluoncv DIR [--script faster|mask|PATH] [--data voc|coco]
        [--install "rpn_ohem=True"] [--stock] [--images 4] [--all-difficult] [-- SCRIPT ARGS]

``DIR`` is a checkout of GluonCV (its ``scripts/`` folder is read, never copied). The script
runs in this process, changed only by the two lines ``import samplers.gluoncv`` and
``samplers.gluoncv.install(<--install>)`` after its last import (``--stock``: unchanged),
for one epoch at batch size 1 on CPU without validation, logging every iteration. What it
prints is its own log.

No internet: ``HOME`` is a temporary folder whose ``~/.mxnet/datasets/voc`` (or ``coco``) is
the tiny set, and ``get_model`` builds the network with ``pretrained_base=False``.

* ``--data voc``: the detector study's synthetic VOC-format set
  (:func:`tools.detector.data.write_synthetic_voc`; its three shapes renamed to VOC classes),
  ``--images`` training images as VOC2007 and VOC2012 ``trainval`` and 2007 ``test``;
  ``--all-difficult`` marks every object difficult.
* ``--data coco``: the crowd check's COCO-format set (:func:`tools.crowd_check.write_coco`).
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import tempfile
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {
    'faster': ('scripts/detection/faster_rcnn/train_faster_rcnn.py',
               ['--network', 'resnet50_v1b']),
    'mask': ('scripts/instance/mask_rcnn/train_mask_rcnn.py', ['--network', 'resnet18_v1b']),
}
# The synthetic set's shapes as VOC class names (VOCDetection reads VOC's 20 classes only).
VOC_NAMES = {'rectangle': 'car', 'ellipse': 'dog', 'triangle': 'person'}
COMMON_ARGS = ['--gpus', '', '--batch-size', '1', '--num-workers', '0', '--epochs', '1',
               '--val-interval', '1000', '--save-interval', '0', '--log-interval', '1',
               '--kv-store', 'local']


def write_voc(home, images, all_difficult=False):
    """The synthetic set under ``home/.mxnet/datasets/voc`` as the scripts' VOC splits."""
    from tools.detector.data import write_synthetic_voc
    root = os.path.join(home, '.mxnet', 'datasets', 'voc')
    write_synthetic_voc(root, seed=0, train_images=images, val_images=2)
    base = os.path.join(root, 'VOC2007')
    for name in os.listdir(os.path.join(base, 'Annotations')):
        path = os.path.join(base, 'Annotations', name)
        tree = ET.parse(path)
        for obj in tree.getroot().iter('object'):
            obj.find('name').text = VOC_NAMES[obj.find('name').text]
            if all_difficult:
                obj.find('difficult').text = '1'
        tree.write(path)
    main = os.path.join(base, 'ImageSets', 'Main')
    os.rename(os.path.join(main, 'train.txt'), os.path.join(main, 'trainval.txt'))
    os.rename(os.path.join(main, 'val.txt'), os.path.join(main, 'test.txt'))
    os.symlink(base, os.path.join(root, 'VOC2012'))  # the scripts train on 07+12 trainval


def write_coco_home(home):
    from tools.crowd_check import write_coco
    root = os.path.join(home, '.mxnet', 'datasets', 'coco')
    os.makedirs(root)
    write_coco(root)


def script_source(path, install):
    """The script's text, with the install lines after its last import unless ``install`` is
    None."""
    with open(path) as f:
        source = f.read()
    if install is None:
        return source
    anchor = 'data_parallel import ForwardBackwardTask\n'
    if anchor not in source:
        raise ValueError('{} has no line ending in {!r}'.format(path, anchor.strip()))
    lines = 'import samplers.gluoncv\nsamplers.gluoncv.install({})\n'.format(install)
    return source.replace(anchor, anchor + lines, 1)


def offline_models():
    """``get_model`` builds networks with ``pretrained_base=False``: nothing is downloaded."""
    import gluoncv.model_zoo
    build = gluoncv.model_zoo.get_model

    def get_model(name, **kwargs):
        kwargs['pretrained_base'] = False
        return build(name, **kwargs)
    gluoncv.model_zoo.get_model = get_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--gluoncv', required=True, help='a checkout of GluonCV (its scripts/)')
    parser.add_argument('--script', default='faster', help='faster, mask or a path in DIR')
    parser.add_argument('--data', choices=('voc', 'coco'), default=None,
                        help='default: voc for faster, coco for mask')
    parser.add_argument('--install', default='', help="install()'s arguments, as Python")
    parser.add_argument('--stock', action='store_true', help='run the script unchanged')
    parser.add_argument('--images', type=int, default=4, help='training images (voc)')
    parser.add_argument('--all-difficult', action='store_true', help='every object difficult')
    parser.add_argument('script_args', nargs='*', help='after --: more arguments for the script')
    args = parser.parse_args(argv)
    path, defaults = SCRIPTS.get(args.script, (args.script, []))
    data = args.data or ('coco' if args.script == 'mask' else 'voc')
    home = tempfile.mkdtemp(prefix='gluoncv-script-home-')
    if data == 'voc':
        write_voc(home, args.images, args.all_difficult)
    else:
        write_coco_home(home)
    os.environ['HOME'] = home
    offline_models()
    run_file = os.path.join(home, os.path.basename(path))
    with open(run_file, 'w') as f:
        f.write(script_source(os.path.join(args.gluoncv, path),
                              None if args.stock else args.install))
    sys.argv = [run_file, '--dataset', data] + defaults + COMMON_ARGS + [
        '--save-prefix', os.path.join(home, 'run_')] + args.script_args
    sys.path.insert(0, REPO)
    print('running', ' '.join(sys.argv), 'HOME=' + home, flush=True)
    runpy.run_path(run_file, run_name='__main__')


if __name__ == '__main__':
    main()
