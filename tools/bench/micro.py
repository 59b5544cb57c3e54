"""The micro-measurements behind the library's numpy fast paths: ``python -m tools.bench.micro``.

Each line times one numpy idiom the library uses against the plain form it replaces, on an
input of the size it meets (a C4 RPN image: 34,410 anchors x 20 boxes), and prints the plain
form's time over the idiom's (above 1: the idiom is faster). The code comments say why an
idiom is there; the ratios are here, re-measured, and in docs/bench.md. Short runs (the
best of ``--repeat`` timings of a few calls each), so figures move with the machine's load.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from samplers import backend, boxes, draws, group_rank
from samplers._arrays import finite_rows_numpy


def _best(fn, repeat):
    """The fastest of ``repeat`` timings of ``fn()``, in seconds per call."""
    calls = 5
    fn()
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def cases(rng):
    """``(name, where, plain, idiom)``: the two forms of each measured idiom."""
    ious = rng.uniform(size=(34410, 20)).astype(np.float32)
    mask = rng.uniform(size=(2, 34410)) < 0.9
    row = mask[0].view(np.uint8)  # a compact (uint8) mask, as the rules count them
    ids = rng.randint(0, 200, 30000).astype(np.int32)
    table = rng.uniform(size=200).astype(np.float32)
    values = rng.uniform(size=30000).astype(np.float32)
    keys = rng.uniform(size=30000).astype(np.float32)
    cols = rng.randint(0, 34410, 30000)
    sort_ids = rng.randint(0, 400, 30000).astype(np.int64)
    boxes4 = rng.uniform(size=(34410, 4)).astype(np.float32)
    image = rng.randint(0, 256, (600, 1000, 3)).astype(np.uint8)
    lut = rng.uniform(size=(3, 256)).astype(np.float32)
    out = [
        ('max over the last axis: argmax + gather', 'backend._np_max',
         lambda: ious.max(axis=-1), lambda: backend._np_max(ious, -1)),
        ('count per row: count_nonzero row by row', 'draws._np_keep',
         lambda: np.count_nonzero(mask, axis=1),
         lambda: np.array([np.count_nonzero(r) for r in mask])),
        ('count of one row: count_nonzero', 'backend._np_count',
         lambda: row.sum(axis=-1, keepdims=True, dtype=np.float64),
         lambda: backend._np_count(row)),
        ('look-up per id: index by intp', 'group_rank._group_share_numpy',
         lambda: np.take(table, ids), lambda: table[ids.astype(np.intp)]),
        ('max per id: stable sort + reduceat', 'group_rank._group_max',
         lambda: np.maximum.at(np.zeros(200, np.float32), ids, values),
         lambda: group_rank._group_max(values, ids, 200)),
        ('sort by (id, key, col): one packed uint64 sort', 'group_rank._sort_by_id_then_key',
         lambda: np.lexsort((cols, keys, sort_ids)),
         lambda: group_rank._sort_by_id_then_key(sort_ids, keys, cols, 34410)),
        ('finite rows: row sums first', '_arrays.finite_rows_numpy',
         lambda: np.isfinite(boxes4).all(axis=-1), lambda: finite_rows_numpy(boxes4)),
        ('max over axis 0: rows folded', 'boxes.col_max',
         lambda: ious.max(axis=0), lambda: boxes.col_max(ious)),
        ('keep k: partial selection', 'draws.keep_top',
         lambda: np.argsort(-ious[:, 0], kind='stable')[:256],
         lambda: draws.keep_top(backend.NUMPY, ious[None, :, 0], np.ones((1, 34410)), 256)),
    ]
    try:
        import cv2
    except ImportError:  # pragma: no cover - the look-up then runs in numpy anyway
        return out
    planes = cv2.split(image)
    out.append(('image table look-up: cv2.LUT', 'gluoncv.transforms',
                lambda: np.stack([lut[c][image[..., c]] for c in range(3)]),
                lambda: [cv2.LUT(planes[c], lut[c].reshape(1, 256)) for c in range(3)]))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tools.bench.micro',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=5, help='timings per form (default 5)')
    args = parser.parse_args(argv)
    print('| idiom | where | plain (ms) | idiom (ms) | plain / idiom |')
    print('|---|---|---:|---:|---:|')
    for name, where, plain, idiom in cases(np.random.RandomState(0)):
        a, b = _best(plain, args.repeat), _best(idiom, args.repeat)
        print('| {} | `{}` | {:.3f} | {:.3f} | {:.1f} |'.format(name, where, a * 1e3, b * 1e3,
                                                               a / b))


if __name__ == '__main__':
    main()
