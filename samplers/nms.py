"""Non-maximum suppression for OHEM's de-duplication: the first survivors in a given order.

Two implementations of one rule: walk the candidates hardest first and skip one whose box
has IoU > ``thresh`` with a box already chosen, until ``quota`` are chosen or the candidates
run out. :func:`greedy_nms_first` and :func:`dedup_np` on the host, :func:`dedup_F` with
``F`` operators (``mx.nd`` on the input's context, or ``mx.sym``).
"""
from __future__ import annotations

import numpy as np

from ._arrays import neg_inf_like_F
from .boxes import box_iou

__all__ = ['greedy_nms_first', 'dedup_np', 'dedup_F']

#: Dense hardness ranks are packed as ``rank * _PACK + column`` in float64
#: (exact while both stay below 2**26 = 67M anchors).
_PACK = float(2 ** 26)


def greedy_nms_first(boxes, k, thresh):
    """Positions of the first ``k`` boxes that survive greedy NMS walked in the given order.

    ``boxes`` (n, 4) corner boxes, hardest first. A box is skipped when its
    IoU (:func:`samplers.boxes.box_iou`) with an earlier kept box is above
    ``thresh``: ``box_nms`` stopped after ``k`` survivors. Works in blocks of
    the next few boxes: drop those overlapping a box kept before, then run
    the greedy pass on the block's own IoU matrix. The cost is about ``k``
    IoUs per box walked, not ``n`` per box.
    """
    num = boxes.shape[0]
    kept = []
    start = 0
    while len(kept) < k and start < num:
        block = np.arange(start, min(num, start + max(64, 2 * (k - len(kept)))))
        start = block[-1] + 1
        if kept:
            block = block[~(box_iou(boxes[kept], boxes[block]) > thresh).any(axis=0)]
        overlaps = box_iou(boxes[block], boxes[block]) > thresh
        live = np.ones(block.size, bool)
        for j in range(block.size):
            if live[j]:
                kept.append(block[j])
                if len(kept) == k:
                    break
                live[j + 1:] &= ~overlaps[j, j + 1:]
    return np.asarray(kept, dtype=np.int64)


def dedup_np(loss, candidate, quota, boxes, thresh):
    """(B, N) float32 0/1: per image the first ``quota`` candidates surviving NMS, hardest first.

    numpy arrays: ``loss`` (B, N) larger is harder (ties to the lower index); ``candidate``
    (B, N) 0/1; ``quota`` (B, 1); ``boxes`` (B, N, 4) corners (a non-finite box is never
    chosen). Uses :func:`greedy_nms_first` per image.
    """
    candidate = (candidate > 0) & np.isfinite(boxes).all(axis=-1)
    negative = np.zeros(candidate.shape, np.float32)
    quota = np.minimum(quota[:, 0], candidate.shape[1]).astype(np.int64)
    for i, (row_loss, row_cand, row_boxes) in enumerate(zip(loss, candidate, boxes)):
        idx = np.flatnonzero(row_cand)
        idx = idx[np.argsort(-row_loss[idx], kind='stable')]  # hardest first
        negative[i, idx[greedy_nms_first(row_boxes[idx], quota[i], thresh)]] = 1
    return negative


def dedup_F(F, loss, candidate, quota, boxes, thresh):
    """:func:`dedup_np` with ``F`` operators: ``quota`` (B, 1) float32, no host copy.

    ``box_nms`` sorts by score, so each candidate gets a unique score that
    falls with (hardness, then index). MXNet's argsort is not stable, so
    the hardness first becomes a dense rank (sort, cumsum of changes,
    gathered back to each anchor), packed with the column into one exact
    float64 key. ``box_nms`` returns the survivors in that order with
    their flat anchor index, which ``index_copy`` scatters back.
    """
    key = F.where(candidate > 0, loss, neg_inf_like_F(F, loss))
    order = F.argsort(key, axis=1, is_ascend=False)  # ties in arbitrary order
    where_in_order = F.argsort(order, axis=1)
    ranked = F.sort(key, axis=1, is_ascend=False)
    previous = F.slice_axis(F.concat(F.slice_axis(ranked, axis=1, begin=0, end=1), ranked,
                                     dim=1), axis=1, begin=0, end=-1)
    dense = F.cumsum(F.cast(ranked != previous, 'float64'), axis=1)  # 0: the hardest value
    row = F.broadcast_like(F.reshape(F.contrib.arange_like(key, axis=0), shape=(-1, 1)), key)
    dense = F.gather_nd(dense, F.stack(F.cast(row, 'float64'),
                                       F.cast(where_in_order, 'float64'), axis=0))
    column = F.cast(F.broadcast_like(F.reshape(F.contrib.arange_like(key, axis=1),
                                               shape=(1, -1)), key), 'float64')
    order_key = dense * _PACK + column  # unique, smaller = chosen first
    nms_score = F.where(candidate > 0, (_PACK * _PACK) - order_key, F.zeros_like(order_key))
    flat = F.cast(F.contrib.arange_like(key), 'float64')
    data = F.concat(F.expand_dims(nms_score, axis=2), F.cast(boxes, 'float64'),
                    F.expand_dims(flat, axis=2), dim=2)
    kept = F.contrib.box_nms(data, overlap_thresh=thresh, valid_thresh=0.5,
                             topk=-1, coord_start=1, score_index=0, id_index=-1,
                             force_suppress=True, in_format='corner', out_format='corner')
    alive = F.cast(F.slice_axis(kept, axis=2, begin=0, end=1) > 0, 'float32')
    alive = F.reshape(alive, shape=(0, -1))
    num_neg = F.minimum(quota, F.sum(alive, axis=1, keepdims=True))
    slot = F.reshape(F.contrib.arange_like(alive, axis=1), shape=(1, -1))
    take = alive * F.broadcast_lesser(slot, num_neg)
    dummy = F.max(flat) + 1  # one past the last anchor: where the rest is written
    target = F.where(take > 0, F.reshape(F.slice_axis(kept, axis=2, begin=5, end=6),
                                         shape=(0, -1)),
                     F.broadcast_like(F.reshape(dummy, shape=(1, 1)), take))
    blank = F.zeros_like(F.reshape(take, shape=(-1,)))
    chosen = F.contrib.index_copy(F.concat(blank, F.slice_axis(blank, axis=0, begin=0, end=1),
                                           dim=0),
                                  F.reshape(target, shape=(-1,)), F.reshape(take, shape=(-1,)))
    chosen = F.slice_axis(chosen, axis=0, begin=0, end=-1)
    return F.reshape_like(chosen, take)
