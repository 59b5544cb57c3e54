"""Benchmark our samplers against GluonCV's: ``python -m samplers.bench``.

How to add a case: below the existing cases, write one function decorated with
``@case(name, goal, sizes)`` that builds the inputs and returns
``bench.compare(what, ours={path: fn(i)}, reference=fn(i), agree=(ours(), theirs()))``
(see ``_quota_case``); registration in :data:`CASES` puts it in the table, the
JSON, the plot and ``--cases``. Add a row to the table below and a test in
tests/test_bench.py.

Every case runs ours and the reference in one process on identical inputs,
alternating (the order flips every run so neither side always runs on a warm
cache), and reports the median of ``--repeat`` runs (default 7) after one
warm-up. NDArray results are waited for, so asynchronous work is counted.

========================  ==============================================  =====================
case                      what is timed (sizes at ``--scale 1``)          goal
========================  ==============================================  =====================
``rpn-c4``                RPNTargetGenerator, 600x1000 image, stride 16,  >= 4x faster than
                          5 sizes x 3 ratios (34,410 anchors), 20 boxes   GluonCV's
``rpn-fpn``               RPNTargetGenerator, 800x1333 image, strides     >= 4x faster
                          4..64, 1 size x 3 ratios per level (265,845
                          anchors), 50 boxes
``rpn-sampler``           RPNTargetSampler alone on the rpn-fpn IoU       <= 2x the floor
                          matrix; the floor is ``ious.max(axis=1)``
``quota``                 QuotaSampler, 8 images x 2000 proposals x 100   >= 5x faster
                          boxes, num_sample 512, pos_ratio 0.25
``ohem``                  OHEMSampler, 32 x 8732 anchors x 21 classes,    >= 5x faster
                          ratio 3
``rcnn``                  RCNNTargetSampler (second stage), hybridized,   at least as fast
                          2 images x 2000 proposals x 100 boxes,          (>= 1x)
                          num_sample 512, pos_ratio 0.25

``ssd-loss``              SSDMultiBoxLoss (mining with OHEM's selection)  >= 2x faster; and
                          on ohem's inputs: 32 x 8732 anchors x 21        <= 1.5x one
                          classes, ratio 3                                log-softmax pass
``rpn-sampler-memory``    peak memory of RPNTargetSampler at 1,000,000    < 3x the IoU matrix
                          anchors x 10 boxes, as a multiple of the IoU
                          matrix (numpy allocations, via tracemalloc;
                          cross-checked by peak RSS in a subprocess)
``quota-iou-balanced``,   the ``quota`` case with ``neg_sampler=             <= 1.5x the uniform
``quota-instance-         'iou_balanced'`` / ``pos_sampler=                QuotaSampler
balanced``                'instance_balanced'``; the floor is our uniform
                          QuotaSampler on the same inputs
``rpn-sampler-iou-        the ``rpn-sampler`` case with the same options;  <= 1.5x the uniform
balanced``, ``rpn-        the floor is our uniform RPNTargetSampler        RPNTargetSampler
sampler-instance-
balanced``

``rcnn-transform``        FasterRCNNDefaultTrainTransform per image,      >= 2x faster
                          VOC-sized images (500x375, 375x500, 500x333)
                          to short side 600, 3 boxes (some difficult),
                          C4 network; ours is the class install() uses
========================  ==============================================  =====================

Our generators and samplers are timed with the same inputs GluonCV's get
(NDArrays, as GluonCV's transforms and networks pass them: the drop-in path),
which the ratio and the ``path`` column report, and with numpy inputs, which
the notes add. Each RPN
image gets its own boxes; the anchors are the same object every run, as in
GluonCV's transforms, and the notes add our time with a new generator per
call (nothing prepared from the anchors is reused). After timing, ours and
GluonCV's run once more with subsampling off (``num_sample`` 10**6) and the
notes say whether the results are the same (``--no-check`` skips this).

Goals are stated for the sizes at ``--scale 1`` and judged only at scale >= 1;
below (``--quick``), ``met?`` shows ``n/a (scale < 1)``. A case that fails to
build, or a side that raises, shows as ``n/a`` with the reason; the run goes on.
Inputs come from a seeded ``numpy.random.RandomState``; the samplers' own
randomness is seeded once per run (``np.random.seed``, ``mx.random.seed``).

Options: ``--cases`` (subset), ``--repeat N``, ``--scale S`` (multiplies every
size; ``--quick`` is ``--scale 0.01 --repeat 3 --no-rss``), ``--json``
(machine-readable, instead of the table), ``--plot FILE`` (bar chart, needs
matplotlib), ``--readme FILE`` (rewrites the block between ``<!-- bench:start
-->`` and ``<!-- bench:end -->`` in FILE with the table).

``--baseline REV`` compares our code with an earlier git revision instead of
GluonCV (see :func:`run_baseline`): REV's package is imported next to ours
(as ``samplers_baseline_<commit>``, its CustomOps renamed), every path of a
case is built with both and timed alternating, and the table gives the median
of the per-round ratios now / REV with a bootstrap 95% interval; two separate
runs differ by 10-20% from process to process, one paired run by a few percent.
"""
from __future__ import annotations

import argparse
import atexit
import datetime
import importlib
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
import types
import warnings

import numpy as np
import mxnet as mx

from .checks import check_int, check_ratio
from .boxes import box_iou
from .ohem import OHEMSampler
from .quota import QuotaSampler
from .rcnn import RCNNTargetSampler
from .rpn import RPNTargetGenerator, RPNTargetSampler
from .ssd import SSDMultiBoxLoss

__all__ = ['CASES', 'rpn_anchors', 'random_boxes', 'time_alternating', 'goal_met',
           'machine_info', 'run', 'format_table', 'readme_block', 'rewrite_readme',
           'plot', 'main']

README_START = '<!-- bench:start -->'
README_END = '<!-- bench:end -->'

QUICK_SCALE = 0.01

C4_LEVELS = ((16, (32, 64, 128, 256, 512)),)
FPN_LEVELS = ((4, (32,)), (8, (64,)), (16, (128,)), (32, (256,)), (64, (512,)))
RATIOS = (0.5, 1.0, 2.0)


# --------------------------------------------------------------------------- inputs
def rpn_anchors(height, width, levels, ratios=RATIOS):
    """Anchors of GluonCV's ``RPNAnchorGenerator`` for a ``height`` x ``width`` image.

    ``levels`` is a sequence of ``(stride, sizes)``; level ``s`` has a grid of
    ``floor(height / s)`` x ``floor(width / s)`` cells. Each cell carries one
    anchor per (ratio, size), ratio-major, centred on ``offset + (s - 1) / 2``;
    a ratio-r anchor starts as an ``s``-wide square reshaped to integer width
    ``round(sqrt(s*s / r))`` and height ``round(width * r)``, then is scaled
    by ``size / s``. Returns (N, 4) float32 corner boxes, level by level, cells
    row-major. At 600x1000, stride 16 and sizes 32..512 this is 34,410 anchors.
    """
    out = []
    for stride, sizes in levels:
        centre = (stride - 1) / 2.0
        shapes = []
        for ratio in ratios:
            base_w = np.round(np.sqrt(stride * stride / ratio))
            base_h = np.round(base_w * ratio)
            for size in sizes:
                w, h = base_w * size / stride, base_h * size / stride
                shapes.append((centre - 0.5 * (w - 1), centre - 0.5 * (h - 1),
                               centre + 0.5 * (w - 1), centre + 0.5 * (h - 1)))
        shapes = np.array(shapes, dtype=np.float64)  # (A, 4)
        ys = np.arange(height // stride) * stride
        xs = np.arange(width // stride) * stride
        ox, oy = np.meshgrid(xs, ys)
        shift = np.stack([ox.ravel(), oy.ravel(), ox.ravel(), oy.ravel()], axis=1)
        out.append((shift[:, None, :] + shapes[None, :, :]).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def random_boxes(rng, count, height, width, min_size=8.0):
    """``count`` plausible ground-truth boxes inside a ``height`` x ``width`` image.

    Side lengths are log-uniform from ``min_size`` to 70% of the short image
    side, aspect ratios log-uniform in [1/3, 3]; every box lies within
    [0, width - 1] x [0, height - 1]. ``rng`` is a ``np.random.RandomState``.
    Returns (count, 4) float32 corner boxes.
    """
    top = 0.7 * min(height, width)
    low = min(min_size, 0.5 * top)
    side = np.exp(rng.uniform(np.log(low), np.log(top), count))
    aspect = np.exp(rng.uniform(np.log(1 / 3.), np.log(3.), count))
    bw = np.minimum(side * np.sqrt(aspect), width - 1.0)
    bh = np.minimum(side / np.sqrt(aspect), height - 1.0)
    x1 = rng.uniform(0, 1, count) * (width - 1.0 - bw)
    y1 = rng.uniform(0, 1, count) * (height - 1.0 - bh)
    return np.stack([x1, y1, x1 + bw, y1 + bh], axis=1).astype(np.float32)


def _jitter(rng, boxes, amount=0.15):
    """Proposals near ``boxes``: corners moved by up to ``amount`` of the box size."""
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    noise = rng.uniform(-amount, amount, boxes.shape)
    out = boxes + noise * np.concatenate([w, h, w, h], axis=1)
    return np.concatenate([np.minimum(out[:, :2], out[:, 2:]),
                           np.maximum(out[:, :2], out[:, 2:])], axis=1).astype(np.float32)


def _rpn_inputs(rng, sizes, levels, runs):
    height, width = sizes['image']
    anchors = rpn_anchors(height, width, levels)
    boxes = [random_boxes(rng, sizes['boxes'], height, width) for _ in range(runs)]
    return anchors, boxes, width, height


def _rpn_ious(anchors, boxes, width, height):
    """The IoU matrix an RPN sampler sees: anchors crossing the border get -1 (GluonCV's rule)."""
    ious = box_iou(anchors, boxes)
    outside = ((anchors[:, 0] < 0) | (anchors[:, 1] < 0) |
               (anchors[:, 2] >= width) | (anchors[:, 3] >= height))
    ious[outside] = -1
    return ious


def _proposals(rng, sizes):
    """(B, N, 4) RPN-like proposals on a 600x1000 image, 30% jittered copies of the (B, M, 4)
    ground-truth boxes it also returns, the rest anywhere."""
    batch, num, m = sizes['batch'], sizes['proposals'], sizes['boxes']
    height, width = 600, 1000
    gts, props = [], []
    for _ in range(batch):
        gt = random_boxes(rng, m, height, width)
        near = _jitter(rng, gt[rng.randint(0, m, num * 3 // 10)])
        props.append(np.concatenate([near, random_boxes(rng, num - len(near), height, width)]))
        gts.append(gt)
    return np.stack(props), np.stack(gts)


def _quota_inputs(rng, sizes):
    """(B, N) matches and (B, N, M) IoUs of RPN-like proposals against ground truth."""
    props, gts = _proposals(rng, sizes)
    ious = box_iou(props, gts)  # (B, N, M) float32
    best = ious.max(axis=-1)
    matches = np.where(best >= 0.5, ious.argmax(axis=-1), -1).astype(np.float32)
    return matches, ious


def _ohem_inputs(rng, sizes):
    """SSD-like (B, N) matches, (B, N, C) logits and (B, N) best IoUs."""
    batch, num, classes = sizes['batch'], sizes['anchors'], sizes['classes']
    matches = np.full((batch, num), -1, np.float32)
    ious = np.where(rng.uniform(0, 1, (batch, num)) < 0.7, 0,
                    rng.uniform(0, 0.5, (batch, num))).astype(np.float32)
    for b in range(batch):
        pos = rng.choice(num, size=min(num, rng.randint(5, 41)), replace=False)
        matches[b, pos] = rng.randint(0, 20, pos.size)
        ious[b, pos] = rng.uniform(0.5, 1, pos.size)
        unsure = rng.choice(num, size=max(1, num // 100), replace=False)
        unsure = unsure[matches[b, unsure] < 0]
        ious[b, unsure] = rng.uniform(0.5, 0.7, unsure.size)
    logits = rng.normal(0, 1, (batch, num, classes)).astype(np.float32)
    logits[:, :, 0] += 2.0  # most anchors look like background, as in training
    return matches, logits, ious


def _memory_ious(rng, num, m):
    """A sparse-looking (num, m) float32 IoU matrix: mostly 0, a few overlaps, 10% border rows."""
    ious = np.zeros((num, m), np.float32)
    hits = rng.randint(0, num * m, num * m // 30)
    ious.ravel()[hits] = rng.uniform(0, 1, hits.size).astype(np.float32)
    ious[rng.randint(0, num, num // 10)] = -1
    return ious


# --------------------------------------------------------------------------- comparing
#: num_sample large enough that no quota ever bites, so results are deterministic.
NO_SUBSAMPLING = 10 ** 6


def gluoncv(module, name):
    """GluonCV's ``gluoncv.<module>.<name>`` (imported on first use, its warnings silenced).

    ``ImportError`` when gluoncv is not installed: the case then shows n/a with that reason.
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return getattr(importlib.import_module('gluoncv.' + module), name)


def _host(x):
    return x.asnumpy() if isinstance(x, mx.nd.NDArray) else np.asarray(x)


def _count_differences(ours, theirs):
    """How many entries of our outputs differ from GluonCV's (exact, or 1e-5 for floats)."""
    ours = ours if isinstance(ours, (tuple, list)) else (ours,)
    theirs = theirs if isinstance(theirs, (tuple, list)) else (theirs,)
    total = 0
    for a, b in zip(ours, theirs):
        a, b = _host(a).astype(np.float64), _host(b).astype(np.float64)
        if a.shape != b.shape:
            return -1
        total += int((~np.isclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)).sum())
    return total


def _check_agreement(row, ours_fn, theirs_fn, compare=_count_differences):
    """Run both sides once with subsampling off; record whether their results agree.

    Sets ``row['same_as_gluoncv']`` (True, False, or None when a side fails)
    and adds a note. Speed must not come from a different answer.
    """
    try:
        diff = compare(ours_fn(), theirs_fn())
    except Exception as err:  # pylint: disable=broad-except
        row['notes'].append('agreement check failed: {}: {}'.format(type(err).__name__, err))
        return
    row['same_as_gluoncv'] = diff == 0
    row['notes'].append('same results as GluonCV with subsampling off' if diff == 0 else
                        '**differs from GluonCV** with subsampling off ({})'.format(
                            'shapes' if diff < 0 else '{} entries'.format(diff)))


# --------------------------------------------------------------------------- timing
def _sync(out):
    """Wait for every NDArray in ``out`` (nested tuples/lists) so async work is counted."""
    if isinstance(out, (tuple, list)):
        for item in out:
            _sync(item)
    elif isinstance(out, mx.nd.NDArray):
        out.wait_to_read()


def time_alternating(runners, repeat, warmup=1, clock=time.perf_counter, keep=False):
    """Time several callables on the same inputs, alternating between them.

    ``runners`` maps a label to ``fn(i)``, where ``i`` is the run index
    (0 .. warmup + repeat - 1) so each run may take its own inputs. Every run
    calls each runner once, in the given order on even runs and reversed on
    odd ones. The first ``warmup`` runs are not recorded. A runner that raises
    is dropped from later runs. Returns label -> ``{'median', 'min', 'runs'}``
    in seconds, or ``{'error': 'Type: message'}``; ``keep`` adds ``'seconds'``,
    the timed runs in order (run ``k`` of every label is the same round).
    """
    repeat, warmup = check_int('repeat', repeat, 1), check_int('warmup', warmup, 0)
    labels = list(runners)
    seconds = {label: [] for label in labels}
    errors = {}
    mx.nd.waitall()
    for i in range(warmup + repeat):
        for label in (labels if i % 2 == 0 else labels[::-1]):
            if label in errors:
                continue
            try:
                start = clock()
                _sync(runners[label](i))
                mx.nd.waitall()
                took = clock() - start
            except Exception as err:  # pylint: disable=broad-except
                errors[label] = '{}: {}'.format(type(err).__name__, err)
                continue
            if i >= warmup:
                seconds[label].append(took)
    out = {}
    for label in labels:
        if label in errors:
            out[label] = {'error': errors[label]}
        else:
            out[label] = {'median': statistics.median(seconds[label]),
                          'min': min(seconds[label]), 'runs': len(seconds[label])}
            if keep:
                out[label]['seconds'] = seconds[label]
    return out


def goal_met(kind, value, ratio):
    """Whether ``ratio`` meets the goal ``(kind, value)``; None if ratio is unknown."""
    if ratio is None:
        return None
    if kind == 'faster':
        return ratio >= value
    if kind == 'floor':
        return ratio <= value
    if kind == 'memory':
        return ratio < value
    raise ValueError('goal kind must be faster, floor or memory, got {!r}'.format(kind))


def goal_applies(scale):
    """Whether a goal is judged at ``scale``: goals are stated for the sizes at scale 1.

    Below that (``--quick`` is scale 0.01) fixed per-call costs dominate, so
    ``met?`` shows ``n/a`` and the ratio is only a smoke-test number.
    """
    return scale >= 1


def _empty_row(case, what, reference, *notes):
    """A result row with nothing measured yet (every measurement None, shown as n/a)."""
    kind, value = GOALS[case]
    return {'case': case, 'what': what, 'reference': reference, 'ours_ms': None,
            'ref_ms': None, 'ratio': None, 'goal': {'kind': kind, 'value': value}, 'met': None,
            'goal_applies': True, 'path': None, 'timings_ms': {}, 'same_as_gluoncv': None,
            'notes': [n for n in notes if n]}


def _judge(row, applies=True):
    """Fill ``row['met']`` from its ratio, or leave it None when the goal does not apply."""
    row['goal_applies'] = bool(applies)
    row['met'] = goal_met(row['goal']['kind'], row['goal']['value'], row['ratio']) \
        if applies else None


def _row(case, what, reference, timings, ours_labels, ref_label, extra_labels=(), applies=True):
    """One result row from ``time_alternating`` output: our first working path vs the reference."""
    kind = GOALS[case][0]
    row = _empty_row(case, what, reference)
    for label, t in timings.items():
        row['timings_ms'][label] = round(t['median'] * 1e3, 4) if 'median' in t else None
        if 'error' in t:
            row['notes'].append('{}: {}'.format(label, t['error']))
    ok = [lab for lab in ours_labels if 'median' in timings.get(lab, {})]
    if ok:
        best = ok[0]  # the first path listed is the one GluonCV's own inputs take
        row['ours_ms'] = timings[best]['median'] * 1e3
        row['path'] = best.split(':', 1)[1] if ':' in best else best
        if len(ok) > 1:
            row['notes'].append(', '.join('{} {}'.format(
                lab.split(':', 1)[-1], _ms(timings[lab]['median'] * 1e3)) for lab in ok))
    if 'median' in timings.get(ref_label, {}):
        row['ref_ms'] = timings[ref_label]['median'] * 1e3
    if row['ours_ms'] is not None and row['ref_ms'] is not None:
        row['ratio'] = (row['ref_ms'] / row['ours_ms'] if kind == 'faster'
                        else row['ours_ms'] / row['ref_ms'])
    _judge(row, applies)
    for label in extra_labels:
        t = timings.get(label, {})
        if 'median' in t:
            vs_ours = ('' if row['ours_ms'] is None else
                       ' ({:.1f}x ours)'.format(t['median'] * 1e3 / row['ours_ms']))
            row['notes'].append('{} {}{}'.format(label, _ms(t['median'] * 1e3), vs_ours))
    return row


# --------------------------------------------------------------------------- cases
class Case:
    """A registered case: its name, goal, sizes and the function that builds its row.

    ``goal`` is ``(kind, value)``: 'faster' (reference / ours >= value), 'floor'
    (ours / floor <= value) or 'memory' (peak / IoU matrix bytes < value).
    ``sizes(s)`` returns the case's sizes from a :class:`Sizes` ``s``.
    """

    def __init__(self, name, goal, sizes, build):
        self.name, self.goal, self.sizes, self.build = name, goal, sizes, build


#: name -> :class:`Case`, in the order the table lists them (see the top of this file).
CASES = {}
#: Case name -> (goal kind, goal value); filled by :func:`case`.
GOALS = {}


def case(name, goal, sizes):
    """Register the decorated ``build(bench, sizes, rng)`` as case ``name`` (see :class:`Case`)."""
    kind, _ = goal
    if kind not in ('faster', 'floor', 'memory'):
        raise ValueError('goal kind must be faster, floor or memory, got {!r}'.format(kind))

    def register(build):
        CASES[name] = Case(name, goal, sizes, build)
        GOALS[name] = goal
        return build
    return register


class Sizes:
    """Scale-aware sizes: image sides scale by sqrt(scale), counts by scale (with a floor)."""

    def __init__(self, scale):
        self.scale = scale

    def image(self, height, width):
        side = math.sqrt(self.scale)  # so anchor counts scale by `scale`
        return max(64, int(round(height * side))), max(64, int(round(width * side)))

    def count(self, n, low):
        return max(low, int(round(n * self.scale)))


class Bench:
    """What a case's build function gets: the run's settings and :meth:`compare`.

    With ``collect`` (``--baseline``), :meth:`compare` times nothing and returns ``ours``.
    """

    def __init__(self, name, repeat, warmup, scale, seed, check, rss, collect=False):
        self.name, self.repeat, self.warmup, self.scale = name, repeat, warmup, scale
        self.seed, self.check, self.rss, self.collect = seed, check, rss, collect

    def compare(self, what, ours, reference, reference_name='GluonCV', others=None,
                agree=None, notes=()):
        """Time ``ours`` against ``reference`` and return the case's row.

        ``ours`` maps a path label (such as ``'NDArray in'``) to ``fn(i)``; the
        first path is the one the ratio uses (the inputs GluonCV gets).
        ``reference`` is ``fn(i)``, named ``reference_name`` in the table.
        ``others`` (label -> ``fn(i)``) are timed too and reported in the notes.
        ``i`` is the run index, for cases with inputs per run. ``agree``, when
        given, is ``(ours(), theirs())`` or ``(ours(), theirs(), compare)``:
        zero-argument calls with subsampling off whose results must match
        (skipped by ``--no-check``). ``notes`` are added as they are.
        """
        if self.collect:
            return dict(ours)
        runners = {'ours:' + label: fn for label, fn in ours.items()}
        runners[reference_name] = reference
        runners.update(others or {})
        timings = time_alternating(runners, self.repeat, self.warmup)
        row = _row(self.name, what, reference_name, timings, list(runners)[:len(ours)],
                   reference_name, list(others or ()), goal_applies(self.scale))
        row['notes'].extend(notes)
        if agree is not None and self.check:
            _check_agreement(row, *agree)
        return row


def _rpn_generator_case(levels):
    def build(bench, sizes, rng):
        anchors, boxes, width, height = _rpn_inputs(rng, sizes, levels,
                                                    bench.warmup + bench.repeat)
        anchors_nd, boxes_nd = mx.nd.array(anchors), [mx.nd.array(b) for b in boxes]
        theirs_cls = gluoncv('model_zoo.rcnn.rpn.rpn_target', 'RPNTargetGenerator')
        # One instance per path, so neither reuses what the other prepared from the anchors.
        ours_nd, ours_np, theirs = RPNTargetGenerator(), RPNTargetGenerator(), theirs_cls()
        return bench.compare(
            'RPNTargetGenerator, {}x{} image, {:,} anchors x {} boxes'.format(
                height, width, len(anchors), sizes['boxes']),
            ours={'NDArray in': lambda i: ours_nd(boxes_nd[i], anchors_nd, width, height),
                  'numpy in': lambda i: ours_np(boxes[i], anchors, width, height)},
            reference=lambda i: theirs(boxes_nd[i], anchors_nd, width, height),
            # A new generator every call: nothing prepared from the anchors survives, as
            # when every image of an epoch has a new size.
            others={'no anchor cache (new generator per call, NDArray in)':
                    lambda i: RPNTargetGenerator()(boxes_nd[i], anchors_nd, width, height)},
            agree=(lambda: RPNTargetGenerator(NO_SUBSAMPLING)(boxes_nd[0], anchors_nd, width,
                                                              height),
                   lambda: theirs_cls(NO_SUBSAMPLING)(boxes_nd[0], anchors_nd, width, height)))
    return build


case('rpn-c4', ('faster', 4.0),
     lambda s: {'image': s.image(600, 1000), 'boxes': s.count(20, 2)})(
         _rpn_generator_case(C4_LEVELS))
case('rpn-fpn', ('faster', 4.0),
     lambda s: {'image': s.image(800, 1333), 'boxes': s.count(50, 2)})(
         _rpn_generator_case(FPN_LEVELS))


@case('rpn-sampler', ('floor', 2.0), CASES['rpn-fpn'].sizes)
def _rpn_sampler_case(bench, sizes, rng):
    anchors, boxes, width, height = _rpn_inputs(rng, sizes, FPN_LEVELS, 1)
    ious = _rpn_ious(anchors, boxes[0], width, height)
    rule = (256, 0.7, 0.3, 0.5)  # num_sample, pos_iou_thresh, neg_iou_thresh, pos_ratio
    theirs_cls = gluoncv('model_zoo.rcnn.rpn.rpn_target', 'RPNTargetSampler')
    ours, theirs = RPNTargetSampler(*rule), theirs_cls(*rule)
    every = (NO_SUBSAMPLING,) + rule[1:]

    def labels_and_positive_matches(out):
        samples, matches = (_host(v) for v in out)
        return samples, np.where(samples > 0, matches, -1)

    # The floor is the per-anchor max every RPN rule needs; a max over the whole matrix (one
    # contiguous pass, no per-row reduction) is timed too, as a stricter point of comparison.
    return bench.compare(
        'RPNTargetSampler on a {:,} x {} float32 IoU matrix (rpn-fpn)'.format(*ious.shape),
        ours={'numpy in': lambda i: ours(ious)},
        reference=lambda i: ious.max(axis=1), reference_name='floor: ious.max(axis=1)',
        others={'gluoncv': lambda i: theirs(ious),
                'ious.max() whole matrix': lambda i: ious.max()},
        agree=(lambda: labels_and_positive_matches(RPNTargetSampler(*every)(ious)),
               lambda: labels_and_positive_matches(theirs_cls(*every)(ious))))


@case('quota', ('faster', 5.0),
      lambda s: {'batch': s.count(8, 2), 'proposals': s.count(2000, 64),
                 'boxes': s.count(100, 4), 'num_sample': s.count(512, 16), 'pos_ratio': 0.25})
def _quota_case(bench, sizes, rng):
    matches, ious = _quota_inputs(rng, sizes)
    args = dict(num_sample=sizes['num_sample'], pos_thresh=0.5, neg_thresh_high=0.5,
                neg_thresh_low=0.0, pos_ratio=sizes['pos_ratio'])
    every = dict(args, num_sample=NO_SUBSAMPLING)
    theirs_cls = gluoncv('nn.sampler', 'QuotaSampler')
    ours, theirs = QuotaSampler(**args), theirs_cls(**args)
    matches_nd, ious_nd = mx.nd.array(matches), mx.nd.array(ious)
    return bench.compare(
        'QuotaSampler, {} images x {} proposals x {} boxes, num_sample {}'.format(
            sizes['batch'], sizes['proposals'], sizes['boxes'], sizes['num_sample']),
        ours={'NDArray in': lambda i: ours(matches_nd, ious_nd),
              'numpy in': lambda i: ours(matches, ious)},
        reference=lambda i: theirs(matches_nd, ious_nd),
        # The CustomOp twin GluonCV uses inside hybridized R-CNN graphs.
        others={'gluoncv CustomOp': lambda i: mx.nd.Custom(
            matches_nd, ious_nd, op_type='quota_sampler', **args)},
        agree=(lambda: QuotaSampler(**every)(matches_nd, ious_nd),
               lambda: theirs_cls(**every)(matches_nd, ious_nd)))


@case('ohem', ('faster', 5.0),
      lambda s: {'batch': s.count(32, 2), 'anchors': s.count(8732, 64), 'classes': 21,
                 'ratio': 3})
def _ohem_case(bench, sizes, rng):
    arrays = _ohem_inputs(rng, sizes)  # matches, logits, ious
    nds = [mx.nd.array(a) for a in arrays]
    theirs_cls = gluoncv('nn.sampler', 'OHEMSampler')
    ours, theirs = OHEMSampler(sizes['ratio']), theirs_cls(sizes['ratio'])
    return bench.compare(
        'OHEMSampler, {} x {} anchors x {} classes, ratio {}'.format(
            sizes['batch'], sizes['anchors'], sizes['classes'], sizes['ratio']),
        ours={'NDArray in': lambda i: ours(*nds), 'numpy in': lambda i: ours(*arrays)},
        reference=lambda i: theirs(*nds),
        # OHEM draws nothing at random: the timed call is already comparable.
        agree=(lambda: ours(*nds), lambda: theirs(*nds)))


# i10: the SSD loss (its mining shares OHEMSampler's selection)
def _ssd_loss_inputs(rng, sizes):
    """SSD300-like loss inputs: (B, N, C) logits, (B, N*4) box predictions, targets as GluonCV's.

    Class targets are 0 (background) or a class + 1 for 5..40 positives per
    image, with no ignored anchor: what GluonCV's own transform writes.
    """
    matches, logits, _ = _ohem_inputs(rng, sizes)
    target = np.where(matches >= 0, matches + 1, 0).astype(np.float32)
    batch, num = target.shape
    box_pred = rng.normal(0, 1, (batch, num * 4)).astype(np.float32)
    box_target = rng.normal(0, 1, (batch, num, 4)).astype(np.float32)
    return [mx.nd.array(a) for a in (logits, box_pred, target, box_target)]


@case('ssd-loss', ('faster', 2.0), CASES['ohem'].sizes)
def _ssd_loss_case(bench, sizes, rng):
    args = _ssd_loss_inputs(rng, sizes)
    ours, theirs = SSDMultiBoxLoss(sizes['ratio']), gluoncv('loss', 'SSDMultiBoxLoss')(
        sizes['ratio'])

    def flat(out):
        return tuple(x for part in out for x in part)

    # Goal: ours within 1.5x of one log-softmax pass over the logits.
    return bench.compare(
        'SSDMultiBoxLoss, {} x {} anchors x {} classes, ratio {}'.format(
            sizes['batch'], sizes['anchors'], sizes['classes'], sizes['ratio']),
        ours={'NDArray in': lambda i: ours(*args)},
        reference=lambda i: theirs(*args),
        others={'one log-softmax pass': lambda i: mx.nd.log_softmax(args[0], axis=-1)},
        agree=(lambda: flat(ours(*args)), lambda: flat(theirs(*args))),
        notes=['second goal: ours <= 1.5x one log-softmax pass (see that note)'])


def _traced_peak(fn, arg):
    """Peak bytes numpy/Python allocate during ``fn(arg)`` (tracemalloc), result included."""
    fn(arg)  # warm-up outside the trace: lazy imports and caches are not the sampler's cost
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fn(arg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if isinstance(result, (tuple, list)) and any(isinstance(r, mx.nd.NDArray) for r in result):
        raise RuntimeError('result holds NDArrays: tracemalloc cannot see MXNet memory')
    return peak - base


def _rss_child(num, m, seed):
    """Run in a fresh process: peak RSS growth of one RPNTargetSampler call, printed as JSON."""

    def status(key):
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    ious = _memory_ious(np.random.RandomState(seed), num, m)
    sampler = RPNTargetSampler(256, 0.7, 0.3, 0.5)
    sampler(ious[:1000])  # load code paths without touching the big matrix
    with open('/proc/self/clear_refs', 'w') as f:  # reset the peak (VmHWM) to the current RSS
        f.write('5')
    before = status('VmRSS')
    result = sampler(ious)
    _sync(result)
    mx.nd.waitall()
    print(json.dumps({'peak_bytes': status('VmHWM') - before, 'matrix_bytes': ious.nbytes}))


def _rss_peak(num, m, seed):
    """Peak RSS growth of our sampler's call in a subprocess: (bytes, None) or (None, reason)."""
    if not os.path.exists('/proc/self/clear_refs'):
        return None, 'no /proc/self/clear_refs on this system'
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    code = 'from samplers.bench import _rss_child; _rss_child({}, {}, {})'.format(num, m, seed)
    try:
        done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                              env=env, timeout=300, check=False)
        return json.loads(done.stdout.strip().splitlines()[-1])['peak_bytes'], None
    except (subprocess.SubprocessError, ValueError, IndexError, KeyError, OSError) as err:
        tail = done.stderr.strip().splitlines()[-1:] if 'done' in locals() else []
        return None, 'RSS probe failed: {} {}'.format(type(err).__name__, ' '.join(tail))


def _rcnn_inputs(rng, sizes):
    """(B, N, 4) proposals, (B, N, 1) scores and (B, M, 4) boxes: 30% of proposals near a box."""
    rois, gts = _proposals(rng, sizes)
    scores = rng.uniform(0, 1, rois.shape[:2] + (1,)).astype(np.float32)
    return rois, scores, gts


def _rcnn_label_differences(ours, theirs):
    """Rows labelled differently, keyed by (roi, match) per image.

    GluonCV can draw a row twice and skip negatives (README, differences), so rows are
    compared as sets: the positives must be the same, and a row both sides return must
    have the same label on both. Each miss counts once.
    """
    total = 0
    for b in range(_host(ours[1]).shape[0]):
        labels = []
        for rois, samples, matches in (ours, theirs):
            rows = zip(_host(rois)[b].tolist(), _host(samples)[b].tolist(),
                       _host(matches)[b].tolist())
            labels.append({tuple(roi) + (match,): label for roi, label, match in rows})
        positives = [{key for key, label in side.items() if label == 1} for side in labels]
        total += len(positives[0] ^ positives[1])
        total += sum(labels[0][key] != labels[1][key] for key in labels[0].keys() & labels[1])
    return total


@case('rcnn', ('faster', 1.0),
      lambda s: {'batch': 2, 'proposals': s.count(2000, 64), 'boxes': s.count(100, 4),
                 'num_sample': s.count(512, 16), 'pos_ratio': 0.25})
def _rcnn_case(bench, sizes, rng):
    arrays = _rcnn_inputs(rng, sizes)
    nds = [mx.nd.array(a) for a in arrays]
    batch, num, m = sizes['batch'], sizes['proposals'], sizes['boxes']
    theirs_cls = gluoncv('model_zoo.rcnn.faster_rcnn.rcnn_target', 'RCNNTargetSampler')

    def build(cls, num_sample, pos_ratio):
        block = cls(batch, num, num_sample, 0.5, pos_ratio, m)
        getattr(block, 'hybridize', lambda: None)()  # both hybridized, as in the detector
        return block
    ours = build(RCNNTargetSampler, sizes['num_sample'], sizes['pos_ratio'])
    theirs = build(theirs_cls, sizes['num_sample'], sizes['pos_ratio'])
    # Subsampling off: every candidate row is returned, with room for every positive.
    return bench.compare(
        'RCNNTargetSampler, hybridized, {} images x {} proposals x {} boxes, num_sample {}'
        .format(batch, num, m, sizes['num_sample']),
        ours={'NDArray in': lambda i: ours(*nds)},
        reference=lambda i: theirs(*nds),
        agree=(lambda: build(RCNNTargetSampler, num + m, 0.5)(*nds),
               lambda: build(theirs_cls, num + m, 0.5)(*nds), _rcnn_label_differences),
        notes=['agreement: same positives, same label on the rows both return (GluonCV may '
               'repeat rows)'])


@case('rpn-sampler-memory', ('memory', 3.0),
      lambda s: {'anchors': s.count(1000000, 2000), 'boxes': 10})
def _memory_case(bench, sizes, rng):
    num, m = sizes['anchors'], sizes['boxes']
    ious = _memory_ious(rng, num, m)
    row = _empty_row(bench.name, 'RPNTargetSampler peak memory, {:,} anchors x {} boxes '
                     '(IoU matrix {})'.format(num, m, _mb(ious.nbytes)), 'IoU matrix bytes')
    row['matrix_bytes'] = ious.nbytes
    peak = _traced_peak(RPNTargetSampler(256, 0.7, 0.3, 0.5), ious)
    row.update(ours_peak_bytes=peak, ratio=peak / ious.nbytes, path='numpy (tracemalloc)')
    _judge(row, goal_applies(bench.scale))
    try:
        theirs = gluoncv('model_zoo.rcnn.rpn.rpn_target', 'RPNTargetSampler')(256, 0.7, 0.3, 0.5)
        row['gluoncv_peak_bytes'] = _traced_peak(theirs, ious)
        row['notes'].append('GluonCV {:.2f}x matrix'.format(row['gluoncv_peak_bytes'] /
                                                             ious.nbytes))
    except Exception as err:  # pylint: disable=broad-except
        row['notes'].append('gluoncv: {}: {}'.format(type(err).__name__, err))
    if bench.rss:
        rss, why = _rss_peak(num, m, bench.seed)
        if rss is None:
            row['notes'].append(why)
        else:
            row['ours_rss_peak_bytes'] = rss
            row['notes'].append('peak RSS growth (subprocess) {:.2f}x matrix'.format(
                rss / ious.nbytes))
    return row


# --------------------------------------------------------------------------- balanced
#: The two balanced strategies, each timed against our uniform draw.
BALANCED = {'iou-balanced': dict(neg_sampler='iou_balanced'),
            'instance-balanced': dict(pos_sampler='instance_balanced')}


def _options(strategy):
    return ', '.join('{}={!r}'.format(k, v) for k, v in BALANCED[strategy].items())


def _same_labels(ours, uniform):
    """A note: whether the balanced sampler equals the uniform one with subsampling off."""
    diff = _count_differences(ours(), uniform())
    return ('same labels as the uniform sampler with subsampling off' if diff == 0 else
            '**differs from the uniform sampler** with subsampling off ({})'.format(diff))


def _quota_balanced_case(strategy):
    def build(bench, sizes, rng):
        matches, ious = _quota_inputs(rng, sizes)
        args = dict(num_sample=sizes['num_sample'], pos_thresh=0.5, neg_thresh_high=0.5,
                    neg_thresh_low=0.0, pos_ratio=sizes['pos_ratio'])
        ours, uniform = QuotaSampler(**args, **BALANCED[strategy]), QuotaSampler(**args)
        matches_nd, ious_nd = mx.nd.array(matches), mx.nd.array(ious)
        every = dict(args, num_sample=NO_SUBSAMPLING)
        notes = [] if not bench.check else [_same_labels(
            lambda: QuotaSampler(**every, **BALANCED[strategy])(matches_nd, ious_nd),
            lambda: QuotaSampler(**every)(matches_nd, ious_nd))]
        return bench.compare(
            'QuotaSampler({}), {} images x {} proposals x {} boxes, num_sample {}'.format(
                _options(strategy), sizes['batch'], sizes['proposals'], sizes['boxes'],
                sizes['num_sample']),
            ours={'NDArray in': lambda i: ours(matches_nd, ious_nd),
                  'numpy in': lambda i: ours(matches, ious)},
            reference=lambda i: uniform(matches_nd, ious_nd),
            reference_name='floor: uniform QuotaSampler',
            others={'uniform, numpy in': lambda i: uniform(matches, ious)}, notes=notes)
    return build


def _rpn_balanced_case(strategy):
    def build(bench, sizes, rng):
        anchors, boxes, width, height = _rpn_inputs(rng, sizes, FPN_LEVELS, 1)
        ious = _rpn_ious(anchors, boxes[0], width, height)
        rule = (256, 0.7, 0.3, 0.5)
        ours, uniform = RPNTargetSampler(*rule, **BALANCED[strategy]), RPNTargetSampler(*rule)
        every = (NO_SUBSAMPLING,) + rule[1:]
        notes = [] if not bench.check else [_same_labels(
            lambda: RPNTargetSampler(*every, **BALANCED[strategy])(ious)[0],
            lambda: RPNTargetSampler(*every)(ious)[0])]
        return bench.compare(
            'RPNTargetSampler({}) on a {:,} x {} float32 IoU matrix (rpn-fpn)'.format(
                _options(strategy), *ious.shape),
            ours={'numpy in': lambda i: ours(ious)},
            reference=lambda i: uniform(ious), reference_name='floor: uniform RPNTargetSampler',
            notes=notes)
    return build


for _name in BALANCED:
    case('quota-' + _name, ('floor', 1.5), CASES['quota'].sizes)(_quota_balanced_case(_name))
for _name in BALANCED:
    case('rpn-sampler-' + _name, ('floor', 1.5), CASES['rpn-fpn'].sizes)(
        _rpn_balanced_case(_name))

# --------------------------------------------------------------------------- i9b: R-CNN transform
#: VOC's commonest image sizes (height, width), which the transform case cycles through.
VOC_SIZES = ((375, 500), (500, 375), (333, 500))


def _voc_items(rng, sizes, runs):
    """Per run a VOC-like (H, W, 3) uint8 image NDArray and (M, 6) label, some boxes difficult."""
    items = []
    for i in range(runs):
        height, width = sizes['images'][i % len(sizes['images'])]
        boxes = random_boxes(rng, sizes['boxes'], height, width)
        label = np.concatenate([boxes, rng.randint(0, 20, (len(boxes), 1)),
                                rng.uniform(size=(len(boxes), 1)) < 0.2], axis=1)
        image = mx.nd.array(rng.randint(0, 256, (height, width, 3)), dtype='uint8')
        items.append((image, label.astype(np.float32)))
    return items


def _transform_targets(out):
    """A training transform's RPN targets (the image and label are not compared)."""
    return [np.concatenate([np.ravel(t) for t in part]) for part in out[2:]]


@case('rcnn-transform', ('faster', 2.0),
      lambda s: {'images': tuple(s.image(h, w) for h, w in VOC_SIZES),
                 'short': s.image(600, 1000)[0], 'max_size': s.image(600, 1000)[1],
                 'boxes': s.count(3, 1)})
def _rcnn_transform_case(bench, sizes, rng):
    from .gluoncv import FasterRCNNTrainTransform  # needs gluoncv; the case is n/a without
    net = gluoncv('model_zoo', 'get_model')('faster_rcnn_resnet50_v1b_voc', pretrained=False,
                                           pretrained_base=False)
    net.initialize()
    theirs_cls = gluoncv('data.transforms.presets.rcnn', 'FasterRCNNDefaultTrainTransform')
    items = _voc_items(rng, sizes, bench.warmup + bench.repeat)
    settings = dict(short=sizes['short'], max_size=sizes['max_size'], net=net,
                    ashape=net.ashape)
    ours, theirs = FasterRCNNTrainTransform(**settings), theirs_cls(**settings)
    every = dict(settings, num_sample=NO_SUBSAMPLING, flip_p=0.0)
    five = (items[0][0], items[0][1][:, :5])  # no hard flag: GluonCV's targets
    return bench.compare(
        'FasterRCNNDefaultTrainTransform per image (resize, flip, normalise, RPN targets), '
        'VOC-sized images {} to short side {}, {} boxes, C4 network'.format(
            '/'.join('{}x{}'.format(w, h) for h, w in sizes['images']), sizes['short'],
            sizes['boxes']),
        ours={'with install()': lambda i: ours(*items[i])},
        reference=lambda i: theirs(*items[i]),
        agree=(lambda: _transform_targets(FasterRCNNTrainTransform(**every)(*five)),
               lambda: _transform_targets(theirs_cls(**every)(*five))),
        notes=['ours: samplers.gluoncv.FasterRCNNTrainTransform, the class install() makes '
               "GluonCV's behave as; own call body: table look-up normalisation, feature shapes and "
               'numpy anchors once per image size'])


# --------------------------------------------------------------------------- machine
def _version(dist):
    try:
        from importlib import metadata  # pylint: disable=import-outside-toplevel
        return metadata.version(dist)
    except Exception:  # pylint: disable=broad-except
        return None


def _cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """Where the numbers come from: CPU, cores, load, library versions and mxnet build."""
    features = mx.runtime.Features()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None
    return {
        'cpu': _cpu_model(), 'cores': os.cpu_count(), 'usable_cores': usable,
        'load_avg': [round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None,
        'python': platform.python_version(), 'platform': platform.platform(),
        'numpy': np.__version__, 'mxnet': mx.__version__,
        'mxnet_features': {k: features.is_enabled(k) for k in
                           ('CPU_AVX', 'CPU_AVX2', 'CUDA', 'MKLDNN', 'OPENMP')},
        'gluoncv': _version('gluoncv'),
        'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
        'date': datetime.datetime.now().strftime('%Y-%m-%d %H:%M'),
    }


# --------------------------------------------------------------------------- run and report
def run(cases=None, repeat=7, warmup=1, scale=1.0, seed=0, rss=True, check=True):
    """Run the named cases; returns the report dict that ``--json`` prints.

    ``cases`` names from :data:`CASES` (default all); ``repeat`` (>= 1) timed
    runs after ``warmup`` runs; ``scale`` (> 0) multiplies every size (goals
    are judged only at scale >= 1, see :func:`goal_applies`); ``seed`` seeds
    the inputs and the samplers' RNGs; ``rss`` adds the subprocess peak-RSS
    check to the memory case; ``check`` runs ours and GluonCV once more with
    subsampling off and records whether the results agree
    (``same_as_gluoncv``). ``ValueError`` on a bad argument, before any work.
    A case that fails to build shows n/a with the error; the run goes on.
    """
    cases = list(CASES) if cases is None else list(cases)
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        raise ValueError('cases must be a non-empty subset of {}, got {}'.format(
            list(CASES), cases))
    repeat = check_int('repeat', repeat, 1)
    warmup = check_int('warmup', warmup, 0)
    scale = check_ratio('scale', scale, 0.0, 100.0, low_open=True)
    seed = check_int('seed', seed, 0)
    np.random.seed(seed)
    mx.random.seed(seed)
    rows, sizes = [], {}
    for index, (name, spec) in enumerate(CASES.items()):
        if name not in cases:
            continue
        sizes[name] = spec.sizes(Sizes(scale))
        bench = Bench(name, repeat, warmup, scale, seed, check, rss)
        try:
            rows.append(spec.build(bench, sizes[name], np.random.RandomState(seed + index)))
        except Exception as err:  # pylint: disable=broad-except
            rows.append(_empty_row(name, name, 'n/a', 'case failed: {}: {}'.format(
                type(err).__name__, err)))
    return {'machine': machine_info(),
            'settings': {'repeat': repeat, 'warmup': warmup, 'scale': scale, 'seed': seed,
                         'check': bool(check), 'sizes': sizes},
            'cases': rows}


def _mb(nbytes):
    return '{:.3g} MB'.format(nbytes / 2 ** 20)


def _ms(value):
    if value is None:
        return 'n/a'
    return '{:.3g} ms'.format(value) if value < 1000 else '{:,.0f} ms'.format(value)


def _goal_text(goal):
    kind, value = goal['kind'], goal['value']
    return {'faster': '>= {:g}x faster', 'floor': '<= {:g}x floor',
            'memory': '< {:g}x IoU matrix'}[kind].format(value)


def _ratio_text(row):
    if row['ratio'] is None:
        return 'n/a'
    kind = row['goal']['kind']
    return {'faster': '{:.1f}x faster', 'floor': '{:.2f}x floor',
            'memory': '{:.2f}x matrix'}[kind].format(row['ratio'])


def _cell(text):
    return str(text).replace('|', '\\|').replace('\n', ' ')


def machine_line(report):
    """One line naming the machine, libraries and timing settings of ``report``."""
    m, s = report['machine'], report['settings']
    feats = m['mxnet_features']
    yes = {True: 'yes', False: 'no'}
    return ('Machine: {cpu}, {cores} cores ({usable} usable), load {load}; Python {py}, numpy '
            '{np}, mxnet {mx} (AVX {avx}, CUDA {cuda}, MKLDNN {mkl}), gluoncv {gcv}. Median of '
            '{rep} runs after {wu} warm-up, ours and reference alternating; scale {scale:g}; '
            '{date}.').format(
                cpu=m['cpu'], cores=m['cores'], usable=m['usable_cores'],
                load=' '.join(str(x) for x in m['load_avg'] or []) or 'n/a', py=m['python'],
                np=m['numpy'], mx=m['mxnet'], avx=yes[feats['CPU_AVX']],
                cuda=yes[feats['CUDA']], mkl=yes[feats['MKLDNN']], gcv=m['gluoncv'] or 'n/a',
                rep=s['repeat'], wu=s['warmup'], scale=s['scale'], date=m['date'])


def format_table(report):
    """The report as a markdown table followed by the machine line."""
    lines = ['| case | ours | GluonCV / floor | ratio | goal | met? | path | notes |',
             '|---|---:|---:|---:|---|---|---|---|']
    for row in report['cases']:
        if row['goal']['kind'] == 'memory':
            ours = _mb(row['ours_peak_bytes']) if 'ours_peak_bytes' in row else 'n/a'
            ref = _mb(row['matrix_bytes']) + ' (matrix)'
        else:
            ours = _ms(row['ours_ms'])
            ref = _ms(row['ref_ms'])
            if row['ref_ms'] is not None and row['goal']['kind'] == 'floor':
                ref += ' (floor)'
        met = ({True: 'yes', False: '**no**', None: 'n/a'}[row['met']]
               if row.get('goal_applies', True) else 'n/a (scale < 1)')
        lines.append('| ' + ' | '.join(_cell(c) for c in (
            row['case'], ours, ref, _ratio_text(row), _goal_text(row['goal']), met,
            row['path'] or 'n/a', '; '.join([row['what']] + row['notes']))) + ' |')
    return '\n'.join(lines) + '\n\n' + machine_line(report) + '\n'


def readme_block(report, command='python -m samplers.bench --readme README.md'):
    """The README text between the markers: provenance line, table, machine line."""
    return 'Produced by `{}` (not typed by hand).\n\n{}'.format(command, format_table(report))


def _marker_span(text, path):
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError('{} must contain {!r} followed by {!r}'.format(
            path, README_START, README_END))
    return start + len(README_START), end


def rewrite_readme(path, block):
    """Replace the text between the bench markers of file ``path`` by ``block``.

    Everything outside the markers, and the markers themselves, is kept.
    ``ValueError`` naming the file if the markers are missing or out of order.
    """
    with open(path, encoding='utf-8') as f:
        text = f.read()
    begin, end = _marker_span(text, path)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text[:begin] + '\n' + block.strip('\n') + '\n' + text[end:])


def plot(report, path):
    """Bar chart of ``report`` to ``path``: times (log scale) and the memory multiple."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    timed = [r for r in report['cases'] if r['goal']['kind'] != 'memory']
    memory = [r for r in report['cases'] if r['goal']['kind'] == 'memory']
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={'width_ratios': [5, 1]})
    x = np.arange(len(timed))
    ours = [r['ours_ms'] or 0 for r in timed]
    ref = [r['ref_ms'] or 0 for r in timed]
    axes[0].bar(x - 0.2, ours, 0.4, label='ours')
    axes[0].bar(x + 0.2, ref, 0.4, label='GluonCV (rpn-sampler: the floor)')
    axes[0].set_xticks(x)
    axes[0].set_xticklabels([r['case'] for r in timed])
    if any(v > 0 for v in ours + ref):
        axes[0].set_yscale('log')
    axes[0].set_ylabel('median ms (lower is better)')
    axes[0].legend(loc='upper center', bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    for r, xi in zip(timed, x):
        label = _ratio_text(r) + {True: '', False: ' (goal missed)', None: ''}[r['met']]
        axes[0].annotate(label, (xi, max(r['ours_ms'] or 0, r['ref_ms'] or 0) or 1),
                         ha='center', va='bottom', fontsize=8)
    mult = [r['ratio'] or 0 for r in memory]
    axes[1].bar(np.arange(len(memory)), mult, 0.5, color='C2')
    axes[1].set_xticks(np.arange(len(memory)))
    axes[1].set_xticklabels(['rpn-sampler\nmemory'] * len(memory))
    goal = GOALS['rpn-sampler-memory'][1]
    axes[1].axhline(goal, color='k', ls='--', lw=1, label='goal')
    axes[1].set_ylim(0, max([goal * 1.3] + [v * 1.1 for v in mult]))
    axes[1].set_ylabel('peak / IoU matrix bytes')
    axes[1].legend(loc='upper right', fontsize=8)
    m = report['machine']
    fig.suptitle('samplers vs GluonCV {} - {}, {} cores, mxnet {} (AVX {}) - {}'.format(
        m['gluoncv'] or 'n/a', m['cpu'], m['cores'], m['mxnet'],
        'yes' if m['mxnet_features']['CPU_AVX'] else 'no', m['date']), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- --baseline
#: The classes a case builds from module globals; ``--baseline`` rebinds them to REV's.
PIECES = ('RPNTargetGenerator', 'RPNTargetSampler', 'QuotaSampler', 'OHEMSampler',
          'RCNNTargetSampler', 'SSDMultiBoxLoss')
_BASELINES = {}  # commit -> imported baseline package (each extracted once per process)


def _git(root, *args):
    """stdout of ``git -C root args``; ``ValueError`` with git's message when it fails."""
    try:
        done = subprocess.run(['git', '-C', root] + list(args), capture_output=True,
                              check=False)
    except OSError as err:
        raise ValueError('--baseline needs git: {}'.format(err)) from None
    if done.returncode:
        message = done.stderr.decode(errors='replace').strip().splitlines()
        raise ValueError('git {}: {}'.format(args[0], message[-1] if message else 'failed'))
    return done.stdout


def repo_root():
    """The git checkout our ``samplers`` package is imported from; ``ValueError`` if none."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        top = _git(here, 'rev-parse', '--show-toplevel').decode().strip()
    except ValueError as err:
        raise ValueError('--baseline needs samplers imported from a git checkout, not {} '
                         '({})'.format(here, err)) from None
    if os.path.realpath(top) != os.path.realpath(here):
        raise ValueError('--baseline needs samplers at the top of a git checkout; {} is '
                         'inside {}'.format(here, top))
    return top


def rename_ops(folder, suffix):
    """Suffix the CustomOp names registered by the package in ``folder``; returns the old names.

    Names come from lines starting ``OP_TYPE = '...'`` or ``mx.operator.register('...')``;
    every quoted occurrence in the package is rewritten, so the copy registers
    and calls ``name + suffix`` and leaves our ops alone. Absolute
    ``samplers`` imports are pointed at the copy too.
    """
    paths = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
             if f.endswith('.py')]
    texts = {}
    for path in paths:
        with open(path, encoding='utf-8') as f:
            texts[path] = f.read()
    names = sorted({n for text in texts.values() for n in re.findall(
        r'''^\s*(?:OP_TYPE\s*=\s*|@?(?:mx\.)?operator\.register\(\s*)['"]([^'"]+)['"]''',
        text, flags=re.M)})
    package = os.path.basename(folder)
    for path, text in texts.items():
        for name in names:
            text = re.sub(r'''(['"]){}\1'''.format(re.escape(name)), r'\g<1>{}{}\1'.format(
                name, suffix), text)
        text = re.sub(r'^(\s*(?:from|import)\s+)samplers\b', r'\g<1>' + package, text,
                      flags=re.M)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
    return names


def _quota_op_modules():
    """Modules of the CustomOpProp classes MXNet builds when our QuotaSampler labels NDArrays."""
    seen, original = [], mx.operator.CustomOpProp.__init__

    def spy(self, *args, **kwargs):
        seen.append(type(self).__module__)
        original(self, *args, **kwargs)
    mx.operator.CustomOpProp.__init__ = spy
    try:
        _sync(QuotaSampler(2, 0.5, 0.5)(mx.nd.zeros((1, 4)), mx.nd.zeros((1, 4, 1))))
        mx.nd.waitall()
    finally:
        mx.operator.CustomOpProp.__init__ = original
    return seen


def load_baseline(rev):
    """Import revision ``rev``'s ``samplers`` as ``samplers_baseline_<commit>``.

    ``git archive`` extracts REV's package into a temporary folder (removed at
    exit), its CustomOps are renamed (:func:`rename_ops`) and it is imported.
    Returns ``(package, commit, renamed op names)``. ``ValueError`` when there
    is no checkout or REV is unknown; ``RuntimeError`` if our QuotaSampler's op
    is not ours afterwards.
    """
    root = repo_root()
    try:
        commit = _git(root, 'rev-parse', '--verify', '--quiet', '--end-of-options',
                      '{}^{{commit}}'.format(rev)).decode().strip()
    except ValueError:
        commit = ''
    if not commit:
        raise ValueError('--baseline: unknown revision {!r} in {}'.format(rev, root))
    if commit not in _BASELINES:
        archive = _git(root, 'archive', '--format=tar', commit, 'samplers')
        folder = tempfile.mkdtemp(prefix='samplers-baseline-')
        atexit.register(shutil.rmtree, folder, True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, **({'filter': 'data'} if hasattr(tarfile, 'data_filter')
                                      else {}))
        name = 'samplers_baseline_' + commit[:10]
        os.rename(os.path.join(folder, 'samplers'), os.path.join(folder, name))
        ops = rename_ops(os.path.join(folder, name), '_baseline_' + commit[:10])
        sys.path.insert(0, folder)
        try:
            package = importlib.import_module(name)
        finally:
            sys.path.remove(folder)
        _BASELINES[commit] = package, ops
    package, ops = _BASELINES[commit]
    owners = _quota_op_modules()
    if not owners or any(m != QuotaSampler.__module__ for m in owners):
        raise RuntimeError('our QuotaSampler runs the CustomOp of {} after importing the '
                           'baseline'.format(owners))
    return package, commit, ops


def _names_used(code):
    """Global names ``code`` and the functions nested in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def _rebound(fn, names):
    """``fn`` with the module globals in ``names`` replaced (closure and defaults kept)."""
    return types.FunctionType(fn.__code__, dict(fn.__globals__, **names), fn.__name__,
                              fn.__defaults__, fn.__closure__)


def ratio_interval(ratios, level=0.95, rounds=2000, seed=0):
    """Median of ``ratios`` and a bootstrap ``level`` interval for it: ``(median, low, high)``.

    ``rounds`` resamples with replacement from a ``RandomState(seed)``; the
    interval is the central ``level`` of their medians.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    picks = np.random.RandomState(seed).randint(0, len(ratios), (rounds, len(ratios)))
    low, high = np.percentile(np.median(ratios[picks], axis=1),
                              [50 * (1 - level), 50 * (1 + level)])
    return float(np.median(ratios)), float(low), float(high)


def _baseline_row(case_name, path, timings=None, note=None):
    """One ``--baseline`` row: times in ms and the now / baseline ratio, or just a note."""
    row = {'case': case_name, 'path': path, 'base_ms': None, 'now_ms': None, 'ratio': None,
           'low': None, 'high': None, 'rounds': 0, 'notes': [note] if note else []}
    if timings is None:
        return row
    now, base = timings['now:' + path], timings['base:' + path]
    for side, t in (('now', now), ('base', base)):
        if 'error' in t:
            row['notes'].append('{}: {}'.format(side, t['error']))
        else:
            row[side + '_ms'] = t['median'] * 1e3
    if 'seconds' in now and 'seconds' in base:
        ratios = [a / b for a, b in zip(now['seconds'], base['seconds'])]
        row['ratio'], row['low'], row['high'] = ratio_interval(ratios)
        row['rounds'] = len(ratios)
    return row


def _skip_reason(spec, package):
    """Why case ``spec`` cannot be compared with ``package``, or None."""
    if spec.goal[0] == 'memory':
        return 'skipped: memory case (not timed)'
    used = [p for p in PIECES if p in _names_used(spec.build.__code__)]
    if not used:
        return 'skipped: times none of the classes the baseline replaces'
    missing = [p for p in used if not hasattr(package, p)]
    if missing:
        return 'not in baseline (no {})'.format(', '.join(missing))
    return None


def _baseline_case(spec, index, package, settings):
    """Rows of one case: our paths built now and with the baseline's classes, timed together."""
    reason = _skip_reason(spec, package)
    if reason:
        return [_baseline_row(spec.name, None, note=reason)]
    sizes = spec.sizes(Sizes(settings['scale']))
    built = {}
    for side, build in (('now', spec.build),
                        ('base', _rebound(spec.build, {p: getattr(package, p) for p in PIECES
                                                       if hasattr(package, p)}))):
        bench = Bench(spec.name, settings['repeat'], settings['warmup'], settings['scale'],
                      settings['seed'], False, False, collect=True)
        try:
            built[side] = build(bench, sizes, np.random.RandomState(settings['seed'] + index))
        except Exception as err:  # pylint: disable=broad-except
            return [_baseline_row(spec.name, None, note='{} side failed to build: {}: {}'.format(
                side, type(err).__name__, err))]
    paths = [p for p in built['now'] if p in built['base']]
    runners = {'{}:{}'.format(side, p): built[side][p] for p in paths for side in ('now', 'base')}
    timings = time_alternating(runners, settings['repeat'], settings['warmup'], keep=True)
    return [_baseline_row(spec.name, p, timings) for p in paths]


def run_baseline(rev, cases=None, repeat=7, warmup=1, scale=1.0, seed=0):
    """Time our paths now against revision ``rev`` in one process; the ``--baseline`` report.

    Each case's build runs twice on the same seeded inputs, once with our
    classes and once with ``rev``'s (:func:`load_baseline`), and every path is
    timed on both, alternating. A row per case and path gives both medians and
    the median of the per-round ratios now / baseline with a bootstrap 95%
    interval. Memory cases and cases using none of :data:`PIECES` are skipped,
    cases whose classes ``rev`` lacks say so; GluonCV is not timed.
    ``ValueError`` on a bad argument, no checkout or an unknown ``rev``.
    """
    cases = list(CASES) if cases is None else list(cases)
    if not cases or any(c not in CASES for c in cases):
        raise ValueError('cases must be a non-empty subset of {}, got {}'.format(
            list(CASES), cases))
    settings = {'repeat': check_int('repeat', repeat, 1), 'warmup': check_int('warmup', warmup, 0),
                'scale': check_ratio('scale', scale, 0.0, 100.0, low_open=True),
                'seed': check_int('seed', seed, 0)}
    package, commit, ops = load_baseline(rev)
    np.random.seed(settings['seed'])
    mx.random.seed(settings['seed'])
    rows = []
    for index, (name, spec) in enumerate(CASES.items()):
        if name in cases:
            rows.extend(_baseline_case(spec, index, package, settings))
    return {'machine': machine_info(),
            'settings': dict(settings, baseline=rev, baseline_commit=commit, renamed_ops=ops),
            'cases': rows}


def format_baseline_table(report):
    """The ``--baseline`` report as a markdown table and a line on how it was measured."""
    lines = ['| case | path | baseline | now | now / baseline | 95% interval | notes |',
             '|---|---|---:|---:|---:|---|---|']
    for row in report['cases']:
        interval = ('n/a' if row['low'] is None else
                    '[{:.3f}, {:.3f}]'.format(row['low'], row['high']))
        ratio = 'n/a' if row['ratio'] is None else '{:.3f}'.format(row['ratio'])
        lines.append('| ' + ' | '.join(_cell(c) for c in (
            row['case'], row['path'] or 'n/a', _ms(row['base_ms']), _ms(row['now_ms']), ratio,
            interval, '; '.join(row['notes']))) + ' |')
    s, m = report['settings'], report['machine']
    return '\n'.join(lines) + (
        '\n\nBaseline {} ({}) against the working tree, in one process: median of {} rounds '
        'after {} warm-up, alternating; ratio = median of per-round now / baseline (> 1: '
        'slower now), 95% bootstrap interval; GluonCV not timed; scale {:g}. {}, load {}; '
        'mxnet {}; {}.\n').format(
            s['baseline'], s['baseline_commit'][:10], s['repeat'], s['warmup'], s['scale'],
            m['cpu'], ' '.join(str(x) for x in m['load_avg'] or []) or 'n/a', m['mxnet'],
            m['date'])


def _parse(argv):
    parser = argparse.ArgumentParser(prog='python -m samplers.bench', description=(
        'Time our samplers against GluonCV on identical inputs and print a markdown table.'))
    parser.add_argument('--cases', nargs='+', default=None, metavar='CASE',
                        help='subset of: {} (space or comma separated)'.format(', '.join(CASES)))
    parser.add_argument('--repeat', type=int, default=None,
                        help='timed runs per case, median reported (default 7)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs first (default 1)')
    parser.add_argument('--scale', type=float, default=None,
                        help='multiply every size (default 1)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny smoke run: --scale {} --repeat 3 --no-rss'.format(QUICK_SCALE))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-rss', dest='rss', action='store_false', default=None,
                        help='skip the subprocess peak-RSS check of the memory case')
    parser.add_argument('--no-check', dest='check', action='store_false',
                        help='skip the check that ours and GluonCV agree with subsampling off')
    parser.add_argument('--json', action='store_true', help='print JSON instead of the table')
    parser.add_argument('--baseline', metavar='REV',
                        help='time our paths against git revision REV in one process, '
                             'alternating, and print the ratios now / REV instead')
    parser.add_argument('--plot', metavar='FILE', help='write a bar chart (needs matplotlib)')
    parser.add_argument('--readme', metavar='FILE',
                        help='rewrite the block between {} and {} in FILE'.format(
                            README_START, README_END))
    args = parser.parse_args(argv)
    if args.cases is None:
        args.cases = list(CASES)
    else:
        args.cases = [c for arg in args.cases for c in arg.split(',') if c]
    if args.repeat is None:
        args.repeat = 3 if args.quick else 7
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else 1.0
    if args.rss is None:
        args.rss = not args.quick
    if args.baseline is not None and (args.readme or args.plot):
        parser.error('--readme and --plot do not apply to --baseline')
    if args.readme and set(args.cases) != set(CASES):
        parser.error('--readme rewrites the whole table: run every case (drop --cases)')
    return parser, args


def main(argv=None):
    """Command line entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args = _parse(argv)
    try:
        if args.readme:  # fail before the (long) run if the README cannot take the table
            with open(args.readme, encoding='utf-8') as f:
                _marker_span(f.read(), args.readme)
        if args.baseline is not None:
            report = run_baseline(args.baseline, args.cases, args.repeat, args.warmup,
                                  args.scale, args.seed)
        else:
            report = run(args.cases, args.repeat, args.warmup, args.scale, args.seed, args.rss,
                         args.check)
    except (ValueError, OSError) as err:
        parser.error(str(err))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        table = format_table if args.baseline is None else format_baseline_table
        print(table(report), end='')
    if args.readme:
        rewrite_readme(args.readme, readme_block(
            report, ' '.join(['python -m samplers.bench'] + argv)))
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == '__main__':
    sys.exit(main())
