"""Write im2rec ``.lst`` files with a hard column, from VOC XML or COCO JSON.

One line per image, tab-separated::

    index  4  6  width  height  [class x1 y1 x2 y2 hard] * objects  path

The first four label numbers are the header: its length (4), the width of
one object (6), and the image's width and height. Each object is its class
index, its corners (divided by the image's width and height unless
``normalized=False``) and its hard-column value: :data:`HARD` (1) for a VOC
``difficult`` box, :data:`CROWD` (2) for a COCO ``iscrowd`` region, 0 otherwise,
the values :func:`samplers.gluoncv.install` reads (1 by the IoU rule, 2 by the
IoF rule of crowd regions).
GluonCV's ``LstDetection`` reads such a file (and ``RecordFileDetection`` the
``.rec`` that im2rec packs from it) into labels ``[x1, y1, x2, y2, class,
hard]``: the flag lands in column 5, where :func:`samplers.gluoncv.install`
reads it. Pass ``coord_normalized=False`` to those datasets for a file
written with ``normalized=False``.

Images without objects are left out: GluonCV's readers reject a label
without an object. The converter itself needs only the standard library
(importing :mod:`samplers.gluoncv` needs the ``gluoncv`` extra)::

    python -m samplers.gluoncv.lst voc VOCdevkit/VOC2007 train.lst --split trainval
    python -m samplers.gluoncv.lst coco instances_train2017.json train.lst --image-dir train2017
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import uuid
import xml.etree.ElementTree as ET
from typing import Iterable, Sequence

__all__ = ['VOC_CLASSES', 'HEADER_LENGTH', 'OBJECT_WIDTH', 'HARD', 'CROWD', 'lst_line',
           'write_lst', 'voc_to_lst', 'coco_to_lst', 'main']

#: The 20 Pascal VOC class names, in the order of their class indices.
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')
#: Label numbers before the objects: header length, object width, image width, image height.
HEADER_LENGTH = 4
#: Numbers per object: class, x1, y1, x2, y2, hard.
OBJECT_WIDTH = 6
#: Hard-column values: a hard box (VOC ``difficult``) and a crowd region (COCO ``iscrowd``).
#: The same values as ``samplers.gluoncv._common``'s, written here so that this module needs
#: only the standard library (a test holds the two equal).
HARD, CROWD = 1, 2

_LOG = logging.getLogger(__name__)


def _text(value):
    return format(float(value), '.8g')


def lst_line(index: int, path: str, width: float, height: float,
             objects: Iterable[Sequence[float]], normalized: bool = True) -> str:
    """One ``.lst`` line (without the newline) for the image at ``path`` (relative to the root
    a reader is given) of ``width`` x ``height`` pixels.

    ``objects``: ``(class, x1, y1, x2, y2, hard)`` per object, corners in pixels. With
    ``normalized`` the corners are written divided by ``width`` / ``height``.
    """
    if not all(math.isfinite(v) and v > 0 for v in (width, height)):
        raise ValueError('width and height must be finite and > 0, got {} and {} for {}'
                         .format(width, height, path))
    if '\t' in path or '\n' in path:
        raise ValueError('path must not hold a tab or a newline, got {!r}'.format(path))
    numbers = [HEADER_LENGTH, OBJECT_WIDTH, width, height]
    sx, sy = (float(width), float(height)) if normalized else (1.0, 1.0)
    for cls, x1, y1, x2, y2, hard in objects:
        numbers += [cls, x1 / sx, y1 / sy, x2 / sx, y2 / sy, hard]
    return '\t'.join([str(int(index))] + [_text(v) for v in numbers] + [path])


def write_lst(lst_path: str, images: Iterable[tuple], normalized: bool = True) -> int:
    """Write ``images`` (``(path, width, height, objects)`` each, as :func:`lst_line` takes
    them) to ``lst_path``, indexed from 0, in UTF-8; images without objects are left out.
    Returns the number of lines written.

    The lines go to a temporary file in ``lst_path``'s folder, renamed to ``lst_path`` once
    every image is written: an error on the way (a bad annotation) leaves a previous
    ``lst_path`` as it was, and no partial file.
    """
    folder, name = os.path.split(os.path.abspath(lst_path))
    tmp_path = os.path.join(folder, '.{}.{}.{}.tmp'.format(name, os.getpid(), uuid.uuid4().hex))
    # O_EXCL: a new file of our own; mode 0o666 less the umask, as open(path, 'w') gives.
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        count = 0
        with os.fdopen(fd, 'w', encoding='utf-8', newline='\n') as out:
            for path, width, height, objects in images:
                objects = list(objects)
                if objects:
                    out.write(lst_line(count, path, width, height, objects, normalized) + '\n')
                    count += 1
        os.replace(tmp_path, lst_path)
    except BaseException:
        os.unlink(tmp_path)
        raise
    return count


# --------------------------------------------------------------------------- VOC
def _number(where, field, text):
    """``float(text)``; a ``ValueError`` naming ``where`` and ``field`` if it is no number."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ValueError('{}: {} must be a number, got {!r}'.format(where, field, text)) from None


def _voc_size(xml_path, root):
    size = root.find('size')
    if size is None or size.find('width') is None or size.find('height') is None:
        raise ValueError('{} has no <size> with <width> and <height>'.format(xml_path))
    width, height = (_number(xml_path, '<{}>'.format(tag), size.findtext(tag))
                     for tag in ('width', 'height'))
    for tag, value in (('width', width), ('height', height)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError('{}: <{}> must be a finite number > 0, got {}'
                             .format(xml_path, tag, value))
    return width, height


def _voc_difficult(xml_path, text):
    """``<difficult>`` as VOCDetection reads it: an integer, 0 or 1; 0 for a number that is not
    written as an integer (``1.9``, ``1.0``: its ``int()`` fails and it takes 0), and when the
    tag is missing or empty. Text that is no finite number (``true``, ``inf``) raises."""
    text = (text or '').strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        if math.isfinite(_number(xml_path, '<difficult>', text)):
            return 0
        raise ValueError('{}: <difficult> must be 0 or 1, got {!r}'.format(xml_path, text)) \
            from None
    if value not in (0, 1):
        raise ValueError('{}: <difficult> must be 0 or 1, got {}'.format(xml_path, value))
    return HARD if value else 0


def _voc_corners(xml_path, obj):
    """GluonCV's 0-based corners of ``obj``: VOC counts pixels from 1, VOCDetection subtracts 1."""
    box = obj.find('bndbox')
    if box is None:
        raise ValueError('{}: an <object> has no <bndbox>'.format(xml_path))
    return tuple(_number(xml_path, '<bndbox><{}>'.format(tag), box.findtext(tag)) - 1
                 for tag in ('xmin', 'ymin', 'xmax', 'ymax'))


def _voc_keeps(x1, y1, x2, y2, width, height):
    """VOCDetection's rule for a box it keeps: ``0 <= x1 < x2 <= width`` and the same for y (a
    NaN corner fails it)."""
    return 0 <= x1 < width and 0 <= y1 < height and x1 < x2 <= width and y1 < y2 <= height


def _voc_image(voc_dir, name, classes):
    """``(path, width, height, objects)`` of one VOC annotation: the boxes VOCDetection keeps."""
    xml_path = os.path.join(voc_dir, 'Annotations', name + '.xml')
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as error:
        raise ValueError('{} is not well-formed XML: {}'.format(xml_path, error)) from None
    width, height = _voc_size(xml_path, root)
    filename = root.findtext('filename') or name + '.jpg'
    objects = []
    for obj in root.iter('object'):
        cls = obj.findtext('name', '').strip().lower()
        if cls not in classes:
            raise ValueError('{}: class {!r} is not in classes {}'.format(xml_path, cls,
                                                                         list(classes)))
        difficult = _voc_difficult(xml_path, obj.findtext('difficult'))
        corners = _voc_corners(xml_path, obj)
        if not _voc_keeps(*corners, width, height):
            _LOG.warning('%s: box %s of a %s is left out, as VOCDetection leaves it out: it '
                         'is not inside the %gx%g image', xml_path, corners, cls, width, height)
            continue
        objects.append((classes.index(cls),) + corners + (difficult,))
    return os.path.join('JPEGImages', filename), width, height, objects


def voc_to_lst(voc_dir: str, lst_path: str, split: str = 'trainval',
               classes: Sequence[str] = VOC_CLASSES, normalized: bool = True) -> int:
    """Write a ``.lst`` of the VOC split ``voc_dir/ImageSets/Main/<split>.txt``.

    ``voc_dir`` is one year's folder (``VOCdevkit/VOC2007``); image paths are written
    relative to it (``JPEGImages/...``), so readers take ``root=voc_dir``. Class indices are
    positions in ``classes`` (default: VOC's 20, as GluonCV's ``VOCDetection``); an object of
    another class raises ``ValueError``. Corners are GluonCV's (VOC's minus 1); the hard flag
    is ``difficult``, read as ``VOCDetection`` reads it. The boxes ``VOCDetection`` leaves out
    are left out, with a logged warning: not ``0 <= x1 < x2 <= width`` (or the same for y),
    a NaN corner. A missing or non-numeric field raises ``ValueError`` naming the file and
    the field, as do a size that is not finite and > 0, a ``difficult`` that is no number
    or not 0/1, and a file that is not well-formed XML. Returns the number of images written.
    """
    classes = list(classes)
    with open(os.path.join(voc_dir, 'ImageSets', 'Main', split + '.txt'), encoding='utf-8') as f:
        names = [line.split()[0] for line in f if line.strip()]
    return write_lst(lst_path, (_voc_image(voc_dir, name, classes) for name in names), normalized)


# --------------------------------------------------------------------------- COCO
def _coco_box(where, ann):
    """COCO's ``[x, y, w, h]`` of ``ann`` as floats; None for a box COCODetection leaves out
    (no width or height, a NaN value). A missing, short or infinite ``bbox`` raises."""
    bbox = ann.get('bbox')
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ValueError('{}: bbox must be [x, y, width, height], got {!r}'.format(where, bbox))
    x, y, w, h = (_number(where, 'bbox', v) for v in bbox)
    if any(math.isinf(v) for v in (x, y, w, h)):
        raise ValueError('{}: bbox must be finite, got {}'.format(where, bbox))
    return (x, y, w, h) if w > 0 and h > 0 and x == x and y == y else None


def _coco_crowd(where, ann):
    crowd = ann.get('iscrowd', 0)
    if crowd not in (0, 1):
        raise ValueError('{}: iscrowd must be 0 or 1, got {!r}'.format(where, crowd))
    return CROWD if crowd else 0


def _first(item):
    return item[0]


def _coco_image(annotation_file, image, image_dir):
    """``(id, path, width, height)`` of a COCO ``images`` entry; a missing or bad field raises
    ``ValueError`` naming the file, the image and the field."""
    where = '{} image {}'.format(annotation_file, image.get('id'))
    if 'id' not in image:
        raise ValueError('{}: an image has no id'.format(annotation_file))
    name = image.get('file_name')
    if not isinstance(name, str):
        raise ValueError('{}: file_name must be a string, got {!r}'.format(where, name))
    size = [_number(where, field, image.get(field)) for field in ('width', 'height')]
    for field, value in zip(('width', 'height'), size):
        if not (math.isfinite(value) and value > 0):
            raise ValueError('{}: {} must be finite and > 0, got {}'.format(where, field, value))
    return (image['id'], os.path.join(image_dir, name)) + tuple(size)


def _coco_objects(annotation_file, annotations, names, classes):
    """Per image id, ``(class, x1, y1, x2, y2, hard)`` of its annotations of ``classes``."""
    objects = {}
    for ann in annotations:
        where = '{} annotation {}'.format(annotation_file, ann.get('id'))
        name = names.get(ann.get('category_id'))
        box = _coco_box(where, ann)
        if name not in classes or box is None:
            continue
        x, y, w, h = box
        objects.setdefault(ann.get('image_id'), []).append(
            (classes.index(name), x, y, x + w, y + h, _coco_crowd(where, ann)))
    return objects


def coco_to_lst(annotation_file: str, lst_path: str, image_dir: str = '',
                classes: Sequence[str] | None = None, normalized: bool = True) -> int:
    """Write a ``.lst`` of a COCO annotation file (``instances_*.json``).

    Image paths are ``image_dir/file_name``. Class indices are positions in ``classes``
    (category names; default: every category, by increasing id, as GluonCV's
    ``COCODetection``); annotations of other categories are left out. Corners are COCO's
    ``[x, y, x + w, y + h]``; boxes with no width or height or a NaN value are left out, as
    ``COCODetection`` leaves them out. The hard column is :data:`CROWD` (2) for ``iscrowd=1``,
    a crowd region, and 0 otherwise, as install() gives ``COCODetection``'s crowd regions. A
    missing or non-numeric ``bbox``, an infinite value in it, and an ``iscrowd`` other than
    0/1 raise ``ValueError`` naming the file, the annotation and the field, as do an image's
    missing or bad ``file_name``, ``width`` or ``height`` (naming the image) and a file that
    is not JSON. Returns the number of images written.
    """
    with open(annotation_file, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError('{} is not JSON: {}'.format(annotation_file, error)) from None
    categories = sorted(data.get('categories', []), key=lambda c: c['id'])
    names = {c['id']: c['name'] for c in categories}
    classes = [c['name'] for c in categories] if classes is None else list(classes)
    objects = _coco_objects(annotation_file, data.get('annotations', []), names, classes)
    images = [_coco_image(annotation_file, im, image_dir) for im in data.get('images', [])]
    return write_lst(lst_path, ((path, width, height, objects.get(image_id, []))
                                for image_id, path, width, height in sorted(images, key=_first)),
                     normalized)


# --------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m samplers.gluoncv.lst {voc,coco} SOURCE OUT.lst [options]``."""
    parser = argparse.ArgumentParser(
        prog='python -m samplers.gluoncv.lst',
        description='Write an im2rec .lst file with a hard column (label width 6: class, '
                    'x1, y1, x2, y2, hard) from VOC XML or COCO JSON.')
    parser.add_argument('--pixels', action='store_true',
                        help='write pixel corners (readers then need coord_normalized=False)')
    sub = parser.add_subparsers(dest='source', required=True)
    voc = sub.add_parser('voc', help='VOC: hard = 1 for difficult=1')
    voc.add_argument('voc_dir', help="one year's folder, e.g. VOCdevkit/VOC2007")
    voc.add_argument('lst', help='the .lst file to write')
    voc.add_argument('--split', default='trainval', help='ImageSets/Main/<split>.txt')
    voc.add_argument('--classes', help='comma-separated class names (default: VOC\'s 20)')
    coco = sub.add_parser('coco', help='COCO: hard = 2 (a crowd region) for iscrowd=1')
    coco.add_argument('annotations', help='instances_*.json')
    coco.add_argument('lst', help='the .lst file to write')
    coco.add_argument('--image-dir', default='', help='prefix of every image path')
    coco.add_argument('--classes', help='comma-separated category names (default: all)')
    args = parser.parse_args(argv)
    classes = None if args.classes is None else [c.strip() for c in args.classes.split(',')]
    if args.source == 'voc':
        count = voc_to_lst(args.voc_dir, args.lst, args.split, classes or VOC_CLASSES,
                           normalized=not args.pixels)
    else:
        count = coco_to_lst(args.annotations, args.lst, args.image_dir, classes,
                            normalized=not args.pixels)
    print('wrote {} images to {}'.format(count, args.lst))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
