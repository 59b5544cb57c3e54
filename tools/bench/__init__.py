"""Benchmark our samplers against GluonCV's: ``python -m tools.bench`` from the checkout.

The modules: :mod:`~tools.bench.harness` (timing, rows, goals, the case registry and
``run``), :mod:`~tools.bench.cases` (the cases and their inputs; how to add one is
there), :mod:`~tools.bench.report` (the table, docs/bench.md, the plot),
:mod:`~tools.bench.baseline` (``--baseline REV``) and ``__main__`` (the command line).

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
``rpn-sampler-c4``        the same on the rpn-c4 IoU matrix (34,410       <= 1.5x the floor
                          anchors x 20 boxes), where fixed costs weigh
                          more
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
                                                                          (median per-round
                                                                          ratio)
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

``ohem-step``             a training step (GluonCV's ForwardBackwardTask  OHEM <= 1.5x the
                          + trainer.step, hybridized) of the detector     plain step
                          study's Faster R-CNN with install(rcnn_ohem=
                          True), 256x320 image, against the same step
                          with install()'s random draw
``ohem-step-r50``         the same for faster_rcnn_resnet50_v1b_voc       reported (no goal)
                          (random weights, 192x256 image)
========================  ==============================================  =====================

Our generators and samplers are timed with the same inputs GluonCV's get
(NDArrays, as GluonCV's transforms and networks pass them: the drop-in path),
which the ratio and the ``path`` column report, and with numpy inputs, which
the case's note under the table adds. Each RPN image gets its own boxes; the
anchors are the same object every run, as in GluonCV's transforms, and the
note adds our time with a new generator per call (nothing prepared from the
anchors is reused). After timing, ours and GluonCV's run once more with
subsampling off (``num_sample`` 10**6) and the ``same?`` column says whether
the results are the same (``--no-check`` skips this).

Goals are stated for the sizes at ``--scale 1`` and judged only at scale >= 1;
below (``--quick``), ``met?`` says ``not judged`` and a line under the table
says why. A case that fails to build, or a side that raises, shows as ``n/a``
with the reason in its note; the run goes on.
Inputs come from a seeded ``numpy.random.RandomState``; the samplers' own
randomness is seeded once per run (``np.random.seed``, ``mx.random.seed``).

Options: ``--cases`` (subset), ``--repeat N``, ``--scale S`` (multiplies every
size; ``--quick`` is ``--scale 0.01 --repeat 3 --no-rss``), ``--json``
(machine-readable, instead of the table), ``--plot FILE`` (bar chart, needs
matplotlib), ``--write-table [PATH]`` (rewrites the block between ``<!-- bench:start
-->`` and ``<!-- bench:end -->`` in PATH, default docs/bench.md, with the table; it
refuses a subset of cases).

``--baseline REV`` compares our code with an earlier git revision instead of
GluonCV (see :mod:`tools.bench.baseline`): REV's package is imported next to ours
(as ``samplers_baseline_<commit>``, its CustomOps renamed), every path of a
case is built with both and timed alternating, and the table gives the median
of the per-round ratios now / REV with a bootstrap 95% interval; two separate
runs differ by 10-20% from process to process, one paired run by a few percent.
"""
from . import cases  # noqa: F401  registers the cases
from .harness import CASES, GOALS, run

__all__ = ['CASES', 'GOALS', 'run']
