"""A tiny VOC-format data set written to disk, with difficult objects: for SSD end-to-end runs.

``write_voc(root)`` writes ``root/VOC2007`` (Annotations, JPEGImages, ImageSets/Main/train.txt)
readable by ``gluoncv.data.VOCDetection(root=root, splits=[(2007, 'train')])``. Every
``cat`` is difficult and no other object is, so a positive target of class ``cat`` would
be a positive on a hard box.
"""
import os

import numpy as np
from PIL import Image

#: (name, xmin, ymin, xmax, ymax, difficult) per image; 1-based VOC pixel coordinates.
OBJECTS = [
    [('dog', 20, 30, 150, 180, 0), ('cat', 160, 40, 290, 200, 1)],
    [('cat', 30, 30, 260, 210, 1)],                       # only a hard object
    [('person', 100, 20, 200, 220, 0), ('cat', 10, 120, 90, 215, 1), ('dog', 210, 60, 295, 150, 0)],
    [('car', 40, 80, 280, 200, 0)],
]
WIDTH, HEIGHT = 300, 225
HARD_CLASS = 'cat'


def write_voc(root, seed=0):
    """Write the set under ``root``; returns the number of images."""
    rng = np.random.RandomState(seed)
    base = os.path.join(str(root), 'VOC2007')
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    names = []
    for i, objects in enumerate(OBJECTS):
        name = '{:06d}'.format(i)
        names.append(name)
        pixels = rng.randint(0, 255, (HEIGHT, WIDTH, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(base, 'JPEGImages', name + '.jpg'))
        rows = ''.join(
            '<object><name>{}</name><difficult>{}</difficult><bndbox><xmin>{}</xmin>'
            '<ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>'.format(
                cls, hard, x1, y1, x2, y2) for cls, x1, y1, x2, y2, hard in objects)
        with open(os.path.join(base, 'Annotations', name + '.xml'), 'w') as f:
            f.write('<annotation><filename>{}.jpg</filename><size><width>{}</width><height>{}'
                    '</height><depth>3</depth></size>{}</annotation>'.format(
                        name, WIDTH, HEIGHT, rows))
    with open(os.path.join(base, 'ImageSets', 'Main', 'train.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    return len(names)


def rectangle_mask(polys, size):
    """(height, width) 0/1 mask of one object's rectangle polygons, as GluonCV's ``to_mask``.

    GluonCV's needs pycocotools, which this project does not depend on; the tiny sets'
    polygons are rectangles, so a rectangle fill stands in for it.
    """
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    for poly in polys:
        (x1, y1), (x2, y2) = poly.min(axis=0).astype(int), np.ceil(poly.max(axis=0)).astype(int)
        mask[y1:y2, x1:x2] = 1
    return mask
