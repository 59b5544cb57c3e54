"""A seeded study of the RPN sampling rules: several seeds, spread, paired intervals.

Run it from the checkout as ``python -m tools.study [--seeds N] [--steps S] [--arms A,B,...]
[--out DIR]``; ``python -m tools.demo`` (``make demo``) is the same study
with a small budget. For every seed it

1. draws a seeded synthetic detection set (:func:`~tools.study.data.make_dataset`): shapes of
   three classes on noisy backgrounds; tiny or faint shapes are flagged hard
   (label column 5, like VOC's ``difficult``);
2. trains the same small RPN (:class:`~tools.study.model.TinyRPN`) from the same initial weights
   on the same batches under every arm (see :data:`~tools.study.arms.ARMS`), so the arms are
   *paired* by seed: they differ only in how anchors are labelled and
   weighted;
3. scores each net on the seed's validation set (:func:`~tools.study.model.evaluate`): recall of
   normal objects by the top 10 and top 100 proposals at IoU 0.5 and 0.7, and
   false alarms on hard objects (top-10 proposals that land on a hard box).

It prints per arm the mean and standard deviation over seeds, and for every
arm against the baseline (the first arm, GluonCV's generator by default, or
``--baseline``) the mean paired difference with a 95 % Student t interval
(:func:`~tools.study.stats.paired_interval`, numpy only). Results go to ``study.json`` in
``--out`` after every run, so an interrupted study keeps its finished seeds
(``--report`` prints the tables from that file), and the pictures
``loss_curves.png`` and ``differences.png`` are drawn there. ``--probe``
adds signs of a collapsed net (:func:`~tools.study.model.probe`); ``--sampling-offset``
reseeds only the targets' subsampling, to measure the training's own noise.

Nothing here is tuned for one arm to win: the numbers are whatever comes out.

The modules: ``data`` (the synthetic set and the anchors), ``model`` (TinyRPN, proposals,
the metrics), ``arms`` (the target rules compared), ``train`` (one training run and the
whole study, saved as it goes), ``stats`` (t quantiles, paired intervals, the tables),
``plots`` (the pictures) and ``__main__`` (the command line).
"""
