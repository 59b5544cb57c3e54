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

That is the ``clean`` regime: hardness is a clean function of appearance. The
``voc-like`` regime (:func:`draw_voc_like_objects`) is closer to VOC, whose
difficult objects are mostly occluded or truncated and whose flags are set
inconsistently. Its objects after the first are, by chance:

* occluded (:data:`VOC_LIKE_SHARES`): a normal-size object drawn first and then
  mostly covered (less than half of its pixels left visible) by a normal
  object drawn over it; its box is the bounding box of its visible pixels;
* truncated: a normal-size object placed so that less than half of its pixels
  lie inside the image; its box is clipped to the image;
* small (6 to 13 px) or faint (15 to 30 % opacity), as in ``clean``;
* small but normal: 14 to 24 px a side, fully opaque, not hard;
* normal: 22 to 96 px, as in ``clean``.

Flags are noisy: a hard object (occluded, truncated, small, faint) is flagged
``difficult`` with probability :data:`FLAG_HARD` only, a normal one (small
normal and occluders included) with probability :data:`FLAG_NORMAL`. The
annotation keeps the truth in a ``<appearance>`` tag per object, which
``VOCDetection`` does not read.
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
REGIMES = ('clean', 'voc-like')
#: voc-like: the chance of each appearance for an object after the first (the rest: normal).
VOC_LIKE_SHARES = (('occluded', 0.14), ('truncated', 0.12), ('small', 0.07), ('faint', 0.07),
                   ('small-normal', 0.15))
HARD_APPEARANCES = ('occluded', 'truncated', 'small', 'faint')
FLAG_HARD = 0.8     # voc-like: chance that a hard object is flagged difficult
FLAG_NORMAL = 0.05  # voc-like: chance that a normal object is flagged difficult


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


def draw_image(rng, shape=(256, 320), regime='clean'):
    """One (H, W, 3) uint8 image and its objects: list of
    ``(x1, y1, x2, y2, class, difficult, appearance)``.

    Coordinates are 0-based pixel corners (x2, y2 exclusive); ``appearance``
    is 'normal', 'small', 'faint' and, in the voc-like regime, 'occluded',
    'truncated', 'small-normal' or 'occluder' (the normal object covering an
    occluded one).
    """
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    grey = rng.uniform(70, 190)  # a muted background: grey, slightly tinted, shaded, noisy
    img = grey + rng.uniform(-15, 15, 3) + yy[..., None] * rng.uniform(-0.15, 0.15, 3) \
        + xx[..., None] * rng.uniform(-0.15, 0.15, 3)
    img = img + rng.normal(0, 10, (height, width, 3))
    _clutter(rng, img, yy, xx)
    if regime == 'voc-like':
        objects = draw_voc_like_objects(rng, img, yy, xx)
        return np.clip(img, 0, 255).astype(np.uint8), objects
    if regime != 'clean':
        raise ValueError('regime must be one of {}, got {!r}'.format(REGIMES, regime))
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
        appearance = ('small' if small else 'faint') if hard else 'normal'
        objects.append((box[0], box[1], min(box[2], width), min(box[3], height), kind, int(hard),
                        appearance))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _paint(rng, img, mask, kind, alpha=1.0):
    colour = np.clip(CLASS_COLOURS[kind] + rng.uniform(-30, 30, 3), 0, 255)
    img[mask] = (1 - alpha) * img[mask] + alpha * colour


def _bbox(mask):
    """[x1, y1, x2, y2) of a non-empty boolean mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _box_of_side(rng, side):
    return side * rng.uniform(0.75, 1.33), side * rng.uniform(0.75, 1.33)


def _full_area(kind, x1, y1, x2, y2):
    """Pixels of the shape's whole mask, inside the image or not."""
    yy, xx = np.mgrid[int(np.floor(y1)):int(np.ceil(y2)), int(np.floor(x1)):int(np.ceil(x2))]
    return int(_shape_mask(kind, x1, y1, x2, y2, yy, xx).sum())


def _occluded_pair(rng, yy, xx):
    """(hidden mask, occluder box, occluder kind, hidden kind) with under half the hidden
    object's pixels left visible by the occluder, or None after a few tries."""
    height, width = yy.shape
    for _ in range(8):
        w, h = _box_of_side(rng, rng.uniform(28, 80))
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        kind, cover_kind = rng.randint(len(CLASSES)), rng.randint(len(CLASSES))
        hidden = _shape_mask(kind, x1, y1, x1 + w, y1 + h, yy, xx)
        cw, ch = w * rng.uniform(1.0, 1.3), h * rng.uniform(1.0, 1.3)
        cx1 = x1 + w * rng.uniform(-0.2, 0.2) - (cw - w) / 2
        cy1 = y1 + h * rng.uniform(-0.2, 0.2) - (ch - h) / 2
        cover = (cx1, cy1, cx1 + cw, cy1 + ch)
        visible = hidden & ~_shape_mask(cover_kind, *cover, yy, xx)
        if hidden.any() and 0.1 * hidden.sum() < visible.sum() < 0.5 * hidden.sum():
            return visible, cover, cover_kind, kind
    return None


def _truncated(rng, yy, xx):
    """(visible mask, kind) of a normal-size object with under half of it inside the image."""
    height, width = yy.shape
    for _ in range(8):
        w, h = _box_of_side(rng, rng.uniform(28, 96))
        kind = rng.randint(len(CLASSES))
        inside = rng.uniform(0.2, 0.45)  # share of the box's side inside the image
        side = rng.randint(4)
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        x1 = {0: -w * (1 - inside), 1: width - w * inside}.get(side, x1)
        y1 = {2: -h * (1 - inside), 3: height - h * inside}.get(side, y1)
        mask = _shape_mask(kind, x1, y1, x1 + w, y1 + h, yy, xx)
        if 0 < mask.sum() < 0.5 * _full_area(kind, x1, y1, x1 + w, y1 + h):
            return mask, kind
    return None


def _flag(rng, appearance):
    return int(rng.uniform() < (FLAG_HARD if appearance in HARD_APPEARANCES else FLAG_NORMAL))


def _appearance(rng, index):
    if index == 0:
        return 'normal'
    r, total = rng.uniform(), 0.0
    for name, share in VOC_LIKE_SHARES:
        total += share
        if r < total:
            return name
    return 'normal'


def draw_voc_like_objects(rng, img, yy, xx):
    """Paint the voc-like regime's 2 to 6 objects onto ``img``; their list (see :func:`draw_image`).

    The first object is normal and never flagged, so every image has a normal box.
    """
    height, width = yy.shape
    objects = []
    for index in range(rng.randint(2, 7)):
        appearance = _appearance(rng, index)
        if appearance == 'occluded':
            pair = _occluded_pair(rng, yy, xx)
            if pair is not None:
                visible, cover, cover_kind, kind = pair
                _paint(rng, img, visible, kind)
                objects.append(tuple(_bbox(visible)) + (kind, _flag(rng, appearance), appearance))
                mask = _shape_mask(cover_kind, *cover, yy, xx)
                _paint(rng, img, mask, cover_kind)
                objects.append(tuple(_bbox(mask)) + (cover_kind, _flag(rng, 'occluder'),
                                                     'occluder'))
                continue
            appearance = 'normal'
        if appearance == 'truncated':
            found = _truncated(rng, yy, xx)
            if found is not None:
                mask, kind = found
                _paint(rng, img, mask, kind)
                objects.append(tuple(_bbox(mask)) + (kind, _flag(rng, appearance), appearance))
                continue
            appearance = 'normal'
        side = {'small': (6, 13), 'small-normal': (14, 24)}.get(appearance, (22, 96))
        w, h = _box_of_side(rng, rng.uniform(*side))
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        kind = rng.randint(len(CLASSES))
        mask = _shape_mask(kind, x1, y1, x1 + w, y1 + h, yy, xx)
        if not mask.any():
            continue
        _paint(rng, img, mask, kind, rng.uniform(0.15, 0.3) if appearance == 'faint' else 1.0)
        flag = 0 if index == 0 else _flag(rng, appearance)
        objects.append(tuple(_bbox(mask)) + (kind, flag, appearance))
    return objects


def _annotation(name, objects, shape):
    anno = ET.Element('annotation')
    ET.SubElement(anno, 'filename').text = name + '.jpg'
    size = ET.SubElement(anno, 'size')
    for tag, value in (('width', shape[1]), ('height', shape[0]), ('depth', 3)):
        ET.SubElement(size, tag).text = str(value)
    for x1, y1, x2, y2, kind, hard, appearance in objects:
        obj = ET.SubElement(anno, 'object')
        ET.SubElement(obj, 'name').text = CLASSES[kind]
        ET.SubElement(obj, 'difficult').text = str(hard)
        ET.SubElement(obj, 'appearance').text = appearance
        box = ET.SubElement(obj, 'bndbox')
        # VOC pixel indices are 1-based and inclusive; VOCDetection subtracts 1 again.
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), (x1 + 1, y1 + 1, x2, y2)):
            ET.SubElement(box, tag).text = str(value)
    return ET.ElementTree(anno)


def write_synthetic_voc(root, seed, train_images, val_images, shape=(256, 320),
                        regime='clean'):
    """Write the set for ``seed`` and ``regime`` under ``root`` (a VOCdevkit-style folder), once.

    Returns ``root``. A ``synthetic.json`` records the settings; when it matches,
    nothing is rewritten, so every arm of a seed reads the very same files.
    """
    if regime not in REGIMES:
        raise ValueError('regime must be one of {}, got {!r}'.format(REGIMES, regime))
    settings = dict(version=3, seed=int(seed), train_images=int(train_images),
                    val_images=int(val_images), shape=list(shape), classes=list(CLASSES),
                    regime=regime)
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
        img, objects = draw_image(rng, shape, regime)
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
