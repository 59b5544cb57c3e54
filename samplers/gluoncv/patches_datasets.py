"""What :func:`samplers.gluoncv.install` patches in GluonCV's COCO datasets: crowd regions.

GluonCV's training scripts drop COCO's crowd annotations (``iscrowd=1``: a
stadium audience, a flock): ``train_faster_rcnn.py --dataset coco`` builds
``COCODetection(..., use_crowd=False)``, and ``COCOInstance`` always drops
them, so the anchors and proposals inside a crowd are taught as background.
With ``use_crowd=True`` a crowd region is one ordinary box.

Patched, a *training* dataset (``skip_empty=True``, GluonCV's training
setting; both scripts build their validation sets with ``skip_empty=False``)
gives labels with a sixth column, the hard column: 0 for each box GluonCV
gives, and one more row per crowd region, marked
:data:`~samplers.gluoncv._common.CROWD` (2). ``COCOInstance`` gives a crowd
row an empty polygon list: no mask (the patched Mask R-CNN transform
rasterises it as zeros). The images and the other rows are GluonCV's (for
``use_crowd=True`` the crowd rows move from GluonCV's ordinary boxes to the
end as crowd rows); an image is kept when GluonCV keeps it with
``use_crowd=False``. Validation sets (``skip_empty=False``) are GluonCV's.

A crowd region's box is its ``bbox`` clipped to the image, kept when it has
an area and GluonCV's area rule and ``ignore`` flag would keep an object.
The labels are read when a dataset is built: a dataset built under
:func:`~samplers.gluoncv.install` keeps its crowd rows after
:func:`~samplers.gluoncv.uninstall`. :func:`patches` lists the replacements.
"""
from __future__ import annotations

import numpy as np
from gluoncv.data.mscoco import detection as _detection
from gluoncv.data.mscoco import instance as _instance
from gluoncv.utils import bbox as _gluoncv_bbox

from ._common import CROWD, INSTALLED

_COCODetection = _detection.COCODetection
_COCOInstance = _instance.COCOInstance
# Taken at import, before any install(): the GluonCV bodies the patched methods call.
_GLUONCV = {'detection': _COCODetection._check_load_bbox,
            'instance': _COCOInstance._check_load_bbox}


def _is_crowd(annotation):
    return bool(annotation.get('iscrowd', 0))


class _WithoutCrowd:
    """A pycocotools ``COCO`` whose ``getAnnIds`` leaves out the crowd annotations."""

    def __init__(self, coco):
        self._coco = coco

    def getAnnIds(self, *args, **kwargs):
        ids = self._coco.getAnnIds(*args, **kwargs)
        return [i for i in ids if not _is_crowd(self._coco.anns[i])]

    def __getattr__(self, name):
        return getattr(self._coco, name)


def _detection_corners(bbox, width, height):
    """``COCODetection``'s corners: GluonCV's own conversion and clipping."""
    return _gluoncv_bbox.bbox_clip_xyxy(_gluoncv_bbox.bbox_xywh_to_xyxy(bbox), width, height)


def _instance_corners(bbox, width, height):
    """``COCOInstance``'s corners: ``x + w`` and ``y + h``, clipped to [0, width] x [0, height]."""
    x, y, w, h = (float(v) for v in bbox)
    x1, x2 = np.clip([x, x + max(w, 0.0)], 0, width)
    y1, y2 = np.clip([y, y + max(h, 0.0)], 0, height)
    return x1, y1, x2, y2


def _crowd_rows(dataset, coco, entry, area_ok, corners):
    """``[x1, y1, x2, y2, class, CROWD]`` for each crowd region of the image ``entry``.

    The box is ``corners(bbox, width, height)``, the dataset's own reading of the
    annotation's ``bbox``; a region is kept when ``area_ok(area)``, it is not marked
    ``ignore``, and its box has an area.
    """
    rows = []
    # In a list: pycocotools would iterate a string id's characters ("12" as "1" and "2").
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[entry['id']], iscrowd=None)):
        if not _is_crowd(ann) or ann.get('ignore', 0) == 1 or not area_ok(ann['area']):
            continue
        x1, y1, x2, y2 = corners(ann['bbox'], entry['width'], entry['height'])
        if x2 > x1 and y2 > y1:
            rows.append([float(x1), float(y1), float(x2), float(y2),
                         dataset.json_id_to_contiguous[ann['category_id']], CROWD])
    return rows


def _with_crowd(dataset):
    """Whether ``dataset``, being built now, gets crowd rows: install()'s option is on and it
    is a training set (``skip_empty=True``)."""
    return INSTALLED.coco_crowd and dataset._skip_empty


def _detection_boxes(self, coco, entry):
    """GluonCV's rows for the objects (crowd regions left out) with a 0 hard column, then
    the crowd regions as hard column 2; GluonCV's result for a validation set."""
    if not _with_crowd(self):
        return _GLUONCV['detection'](self, coco, entry)
    rows = _GLUONCV['detection'](self, _WithoutCrowd(coco), entry)
    if not rows:
        return rows
    minimum = self._min_object_area
    crowd = _crowd_rows(self, coco, entry, lambda area: area >= minimum, _detection_corners)
    return [list(row) + [0] for row in rows] + crowd


def _instance_boxes(self, coco, entry):
    """GluonCV's ``(label, polygons)`` with a 0 hard column, then the crowd regions as hard
    column 2 with no polygon; GluonCV's result for a validation set."""
    label, segm = _GLUONCV['instance'](self, coco, entry)
    if label is None or not _with_crowd(self):
        return label, segm
    minimum = self._min_object_area
    crowd = _crowd_rows(self, coco, entry, lambda area: area > minimum, _instance_corners)
    label = np.concatenate([label, np.zeros((len(label), 1), label.dtype)], axis=1)
    if crowd:
        label = np.concatenate([label, np.asarray(crowd, label.dtype)])
    return label, list(segm) + [[] for _ in crowd]


_PATCHES = (
    (_COCODetection, '_check_load_bbox', _detection_boxes),
    (_COCOInstance, '_check_load_bbox', _instance_boxes),
)


def patches():
    """(owner, attribute, replacement) triples that install() applies to GluonCV's datasets."""
    return _PATCHES
