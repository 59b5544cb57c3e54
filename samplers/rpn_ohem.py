"""RPN OHEM: train, per image, the labelled anchors the classifier finds hardest.

The selection, for anchor labels as in :mod:`samplers` (``POSITIVE``, ``NEGATIVE``,
``IGNORE``) and a per-anchor loss (larger is harder):

* **candidates:** the anchors labelled positive or negative whose loss is finite. An
  ignored anchor (on a hard box, inside a crowd region, across the image border, padding)
  is never a candidate, and neither is an anchor with a NaN or infinite loss;
* **chosen:** per image the ``min(num_sample, #candidates)`` candidates with the largest
  loss; ties at the cut go to the lower anchor index (keep-top, :mod:`samplers.draws`).

Positives and negatives are ranked together, with no ratio between them (the top-k
cross-entropy of the widely copied Keras Mask R-CNN variant). Where the anchors come from
and how the chosen ones train is :mod:`samplers.gluoncv.patches_rpn_ohem`.
"""
from __future__ import annotations

from . import backend, draws
from ._arrays import IGNORE, Array
from .checks import check_count

__all__ = ['hardest_anchors']


def hardest_anchors(loss: Array, labels: Array, num_sample: int) -> Array:
    """The anchors to train: the ``num_sample`` hardest labelled anchors of each image.

    Parameters
    ----------
    loss : (N,) or (B, N) float numpy array or NDArray
        Each anchor's classification loss; NaN and inf are never chosen.
    labels : ``loss``'s shape and kind
        Each anchor's label (``POSITIVE``, ``NEGATIVE`` or ``IGNORE``).
    num_sample : int >= 1
        Anchors chosen per image.

    Returns a float32 0/1 mask of ``loss``'s shape: numpy for numpy input, an
    NDArray on ``loss``'s context for NDArrays (``mx.nd`` operators, no host read). Rule
    and edges in the module docstring; an image with at most ``num_sample`` candidates has
    them all chosen.
    """
    num_sample = check_count('num_sample', num_sample, minimum=1)
    if tuple(labels.shape) != tuple(loss.shape) or len(loss.shape) not in (1, 2):
        raise ValueError('loss and labels must have one shape, (N,) or (B, N), got {} and {}'
                         .format(tuple(loss.shape), tuple(labels.shape)))
    be = backend.of_kind(loss)
    squeeze = len(loss.shape) == 1
    if squeeze:
        loss, labels = be.expand(loss, 0), be.expand(labels, 0)
    candidate = be.mask(labels != IGNORE) * be.finite_rows(be.expand(loss, -1))
    quota = be.minimum(be.count(candidate), float(num_sample))
    chosen = be.float32(draws.keep_top(be, be.where(candidate, loss, 0.0), candidate, quota))
    return chosen[0] if squeeze else chosen
