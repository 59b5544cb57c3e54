"""The study's data: a seeded synthetic VOC-format set on disk, and GluonCV's reader for it.

:func:`write_synthetic_voc` writes ``<root>/VOC2007`` (``JPEGImages``,
``Annotations``, ``ImageSets/Main/{train,val}.txt``), the layout GluonCV's
``VOCDetection`` reads; a user's own VOCdevkit-style root is read the same way
by :func:`voc_dataset`.

Each image (256 x 320) has a muted, shaded, noisy background with clutter
(line segments and specks in any colour, which are no class), and 2 to 6
objects: red rectangles, green ellipses or blue triangles (the three classes;
each colour jittered per object). About a quarter of the
objects are hard (``difficult=1``; never the first object of an image, so
every image keeps a normal one), drawn from the same shapes and colours as
the normal ones:

* small: a side of 6 to 13 px (normal objects: 22 to 96 px);
* faint: normal size, blended at 15 to 30 % opacity.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import numpy as np
from gluoncv.data import VOCDetection
from mxnet import gluon
from PIL import Image

from tools.study.data import _shape_mask  # the same three shapes as the RPN study

CLASSES = ('rectangle', 'ellipse', 'triangle')
#: Each class has its shape and its hue (jittered per object): red, green, blue.
CLASS_COLOURS = np.array([[220, 40, 40], [40, 200, 60], [40, 80, 230]], np.float64)
HARD_SHARE = 0.32  # chance that an object after the first is hard (half small, half faint)
YEAR = 2007


def _clutter(rng, img, yy, xx):
    """Line segments (1-3 px wide) and specks in random colours: background, no class."""
    height, width = yy.shape
    for _ in range(rng.randint(3, 9)):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        angle, length = rng.uniform(0, np.pi), rng.uniform(20, 120)
        dx, dy = np.cos(angle), np.sin(angle)
        along = (xx + 0.5 - x0) * dx + (yy + 0.5 - y0) * dy
        across = np.abs(-(xx + 0.5 - x0) * dy + (yy + 0.5 - y0) * dx)
        mask = (along >= 0) & (along <= length) & (across <= rng.uniform(0.5, 1.5))
        img[mask] = rng.uniform(0, 255, 3)
    for _ in range(rng.randint(10, 30)):
        x, y = rng.randint(0, width - 3), rng.randint(0, height - 3)
        img[y:y + rng.randint(1, 4), x:x + rng.randint(1, 4)] = rng.uniform(0, 255, 3)


def draw_image(rng, shape=(256, 320)):
    """One (H, W, 3) uint8 image and its objects: list of (x1, y1, x2, y2, class, difficult).

    Coordinates are 0-based pixel corners (x2, y2 exclusive).
    """
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    grey = rng.uniform(70, 190)  # a muted background: grey, slightly tinted, shaded, noisy
    img = grey + rng.uniform(-15, 15, 3) + yy[..., None] * rng.uniform(-0.15, 0.15, 3) \
        + xx[..., None] * rng.uniform(-0.15, 0.15, 3)
    img = img + rng.normal(0, 10, (height, width, 3))
    _clutter(rng, img, yy, xx)
    objects = []
    for index in range(rng.randint(2, 7)):
        hard = index > 0 and rng.uniform() < HARD_SHARE  # the first object is never hard
        small = hard and rng.uniform() < 0.5
        side = rng.uniform(6, 13) if small else rng.uniform(22, 96)
        w, h = side * rng.uniform(0.75, 1.33), side * rng.uniform(0.75, 1.33)
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        x2, y2 = x1 + w, y1 + h
        kind = rng.randint(len(CLASSES))
        mask = _shape_mask(kind, x1, y1, x2, y2, yy, xx)
        if not mask.any():
            continue
        colour = np.clip(CLASS_COLOURS[kind] + rng.uniform(-30, 30, 3), 0, 255)
        alpha = rng.uniform(0.15, 0.3) if hard and not small else 1.0
        img[mask] = (1 - alpha) * img[mask] + alpha * colour
        box = [int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2))]
        objects.append((box[0], box[1], min(box[2], width), min(box[3], height), kind, int(hard)))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _annotation(name, objects, shape):
    anno = ET.Element('annotation')
    ET.SubElement(anno, 'filename').text = name + '.jpg'
    size = ET.SubElement(anno, 'size')
    for tag, value in (('width', shape[1]), ('height', shape[0]), ('depth', 3)):
        ET.SubElement(size, tag).text = str(value)
    for x1, y1, x2, y2, kind, hard in objects:
        obj = ET.SubElement(anno, 'object')
        ET.SubElement(obj, 'name').text = CLASSES[kind]
        ET.SubElement(obj, 'difficult').text = str(hard)
        box = ET.SubElement(obj, 'bndbox')
        # VOC pixel indices are 1-based and inclusive; VOCDetection subtracts 1 again.
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), (x1 + 1, y1 + 1, x2, y2)):
            ET.SubElement(box, tag).text = str(value)
    return ET.ElementTree(anno)


def write_synthetic_voc(root, seed, train_images, val_images, shape=(256, 320)):
    """Write the set for ``seed`` under ``root`` (a VOCdevkit-style folder), once.

    Returns ``root``. A ``synthetic.json`` records the settings; when it matches,
    nothing is rewritten, so every arm of a seed reads the very same files.
    """
    settings = dict(version=2, seed=int(seed), train_images=int(train_images),
                    val_images=int(val_images), shape=list(shape), classes=list(CLASSES))
    stamp = os.path.join(root, 'synthetic.json')
    if os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == settings:
                return root
    base = os.path.join(root, 'VOC{}'.format(YEAR))
    for sub in ('JPEGImages', 'Annotations', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    rng = np.random.RandomState(seed)
    splits = {'train': [], 'val': []}
    for index in range(train_images + val_images):
        name = '{:06d}'.format(index)
        splits['train' if index < train_images else 'val'].append(name)
        img, objects = draw_image(rng, shape)
        Image.fromarray(img).save(os.path.join(base, 'JPEGImages', name + '.jpg'), quality=95)
        _annotation(name, objects, shape).write(os.path.join(base, 'Annotations', name + '.xml'))
    for split, names in splits.items():
        with open(os.path.join(base, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write('\n'.join(names) + '\n')
    with open(stamp, 'w') as f:
        json.dump(settings, f)
    return root


def voc_dataset(root, split, classes=CLASSES, year=YEAR):
    """GluonCV's ``VOCDetection`` over ``root/VOC<year>/ImageSets/Main/<split>.txt``.

    ``classes``: the class names, in label order (GluonCV's way to read a
    custom VOC-format set is a subclass whose ``CLASSES`` lists them). Labels
    are GluonCV's (M, 6) rows ``[xmin, ymin, xmax, ymax, class, difficult]``;
    difficult boxes are kept (``VOCDetection`` keeps them; it is the training
    arms that decide what to do with them). Images whose every object is of
    another class are dropped, as they give GluonCV's transforms an empty label.
    """
    classes = tuple(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ValueError('classes must be distinct names, got {!r}'.format(classes))
    reader = type('StudyVOC', (VOCDetection,), {'CLASSES': classes})
    dataset = reader(root=str(root), splits=[(year, split)])
    if len(dataset) == 0:
        raise ValueError('no image in split {!r} under voc root {!r}'.format(split, root))
    keep = [i for i in range(len(dataset)) if label_of(dataset, i).shape[0] > 0]
    if not keep:
        raise ValueError('no object of classes {} in split {!r} under voc root {!r}'
                         .format(list(classes), split, root))
    return Subset(dataset, keep) if len(keep) < len(dataset) else dataset


class Subset(gluon.data.Dataset):
    """The items ``indices`` of a GluonCV dataset (same ``classes``, ``transform`` and labels)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)
        self.classes = dataset.classes

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]

    def label(self, i):
        return label_of(self.dataset, self.indices[i])


def label_of(dataset, i):
    """(M, 6) float label of item ``i`` without decoding its image."""
    if isinstance(dataset, Subset):
        return dataset.label(i)
    # pylint: disable=protected-access
    label = dataset._label_cache[i] if dataset._label_cache else dataset._load_label(i)
    return np.asarray(label, np.float32).reshape(-1, 6)
