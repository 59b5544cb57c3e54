"""Run GluonCV's ``train_faster_rcnn.py`` offline, with the two install lines, on a tiny VOC set.

``python -m tools.dist.launch --write-voc ROOT`` writes the set; ``python -m tools.dist.launch
SCRIPT [script options]`` runs SCRIPT as ``__main__`` after three changes made here, none in the
script's file:

* ``import samplers.gluoncv; samplers.gluoncv.install()`` inserted right after the script's
  ``...faster_rcnn.data_parallel import ForwardBackwardTask`` line, where the README says to
  add them (the run stops if that line is missing);
* ``gluoncv.model_zoo.get_model`` builds with ``pretrained_base=False`` (no network here) and
  sets the network's ``short`` / ``max_size`` to ``$DIST_SHORT`` / ``$DIST_MAX_SIZE`` (default
  192 / 256, to keep a CPU run short);
* ``gluoncv.data.VOCDetection`` reads ``$DIST_VOC_ROOT`` instead of ``~/.mxnet/datasets/voc``.

``tools/dist/run_dist_sync.sh`` starts the processes; see docs/distributed.md.
"""
import os
import sys
import xml.etree.ElementTree as ET

ANCHOR = 'from gluoncv.model_zoo.rcnn.faster_rcnn.data_parallel import ForwardBackwardTask'
INSTALL_LINES = 'import samplers.gluoncv\nsamplers.gluoncv.install()\n'
# (xmin, ymin, xmax, ymax, VOC class name, difficult) per image; 0-based pixels.
IMAGES = [
    [(16, 16, 112, 112, 'dog', 0), (128, 40, 240, 176, 'person', 1)],
    [(24, 32, 120, 160, 'car', 1), (140, 20, 236, 110, 'bird', 1)],     # every object difficult
    [(60, 50, 200, 170, 'car', 0)],
    [(4, 4, 250, 186, 'person', 1), (100, 60, 160, 120, 'dog', 0)],      # nearly covered, hard
]
WIDTH, HEIGHT = 256, 192
SPLITS = ((2007, 'trainval'), (2012, 'trainval'), (2007, 'test'))


def write_voc(root):
    """IMAGES under ``root``/VOC2007 and VOC2012, in every split train_faster_rcnn.py reads."""
    import numpy as np
    from PIL import Image
    rng = np.random.RandomState(0)
    for year, split in SPLITS:
        base = os.path.join(root, 'VOC{}'.format(year))
        for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        names = []
        # VOC2007 trainval holds the first two images, VOC2012 trainval the other two: four
        # training iterations per worker in all (the test split, never evaluated here, all four).
        chosen = {(2007, 'trainval'): (0, 1), (2012, 'trainval'): (2, 3)}.get((year, split),
                                                                             range(4))
        for i, objects in enumerate(IMAGES):
            if i not in chosen:
                continue
            name = '{}_{:06d}'.format(split, i)
            names.append(name)
            Image.fromarray(rng.randint(0, 255, (HEIGHT, WIDTH, 3)).astype(np.uint8)).save(
                os.path.join(base, 'JPEGImages', name + '.jpg'))
            anno = ET.Element('annotation')
            size = ET.SubElement(anno, 'size')
            for tag, value in (('width', WIDTH), ('height', HEIGHT), ('depth', 3)):
                ET.SubElement(size, tag).text = str(value)
            for x1, y1, x2, y2, cls, difficult in objects:
                obj = ET.SubElement(anno, 'object')
                ET.SubElement(obj, 'name').text = cls
                ET.SubElement(obj, 'difficult').text = str(difficult)
                box = ET.SubElement(obj, 'bndbox')
                for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), (x1, y1, x2, y2)):
                    ET.SubElement(box, tag).text = str(value + 1)  # VOC is 1-based
            ET.ElementTree(anno).write(os.path.join(base, 'Annotations', name + '.xml'))
        with open(os.path.join(base, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write('\n'.join(names) + '\n')


def with_install_lines(source):
    """``source`` with the two install lines after the ForwardBackwardTask import."""
    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == ANCHOR:
            return ''.join(lines[:i + 1]) + INSTALL_LINES + ''.join(lines[i + 1:])
    raise SystemExit('no line {!r} in the script: is it train_faster_rcnn.py?'.format(ANCHOR))


def patch_gluoncv(voc_root, short, max_size):
    """Offline model building and the tiny data set, as the module docstring says."""
    import gluoncv
    from gluoncv import data as gdata
    from gluoncv import model_zoo

    zoo_get_model = model_zoo.get_model

    def get_model(name, **kwargs):
        kwargs['pretrained_base'] = False
        net = zoo_get_model(name, **kwargs)
        net.short, net.max_size = short, max_size
        return net

    class VOCDetection(gdata.VOCDetection):
        def __init__(self, root=voc_root, **kwargs):
            super().__init__(root=root, **kwargs)

    model_zoo.get_model = get_model
    gluoncv.model_zoo.get_model = get_model
    gdata.VOCDetection = VOCDetection


def main(argv):
    if len(argv) == 2 and argv[0] == '--write-voc':
        write_voc(argv[1])
        return
    if not argv:
        raise SystemExit(__doc__)
    import samplers  # noqa: F401  (before mxnet: numpy aliases on Python 3.12)
    script = argv[0]
    patch_gluoncv(os.environ['DIST_VOC_ROOT'], int(os.environ.get('DIST_SHORT', 192)),
                  int(os.environ.get('DIST_MAX_SIZE', 256)))
    with open(script) as f:
        code = compile(with_install_lines(f.read()), script, 'exec')
    sys.argv = argv
    exec(code, {'__name__': '__main__', '__file__': script})  # pylint: disable=exec-used


if __name__ == '__main__':
    main(sys.argv[1:])
