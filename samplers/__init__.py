"""samplers: drop-in positive/negative samplers for MXNet/Gluon object detection.

Label convention
----------------
Every sampler in this package labels each anchor or proposal with

* ``1``  (:data:`POSITIVE`): trained as an object,
* ``-1`` (:data:`NEGATIVE`): trained as background,
* ``0``  (:data:`IGNORE`): not trained at all,

in an array of the same shape as the matching results it was given, on the
input's context. This is GluonCV's convention; the RPN target *encoders*
(``RPNTargetGenerator``'s ``cls_target``) use GluonCV's encoded form instead
(1 positive, 0 negative, -1 ignore), as their docstrings say.

"Hard" ground truth (VOC ``difficult``, crowd, unreadably small objects) is
flagged with a 0/1 array over the boxes; a hard box never produces a
positive, and anchors that overlap it are ignored rather than taught as
background.

Options this package adds to GluonCV's parameters come as two values shared by every
sampler (:mod:`samplers.options`): :class:`Draw` (balanced draws, :mod:`samplers.balanced`)
and :class:`HardRule` (what a hard box or crowd region changes).
"""
# First, before anything imports mxnet: the numpy aliases mxnet 1.9.1 needs on numpy >= 1.24
# (Python 3.12). This changes the numpy module of the whole process; see samplers/_compat.py.
from . import _compat  # noqa: F401

__version__ = '0.1.0'

from ._arrays import POSITIVE, NEGATIVE, IGNORE, force_ndarray_backend
from .boxes import box_iou, box_iof
from .naive import NaiveSampler
from .options import Draw, HardRule
from .ohem import OHEMSampler
from .quota import QuotaSampler
from .rcnn import RCNNTargetSampler
from .rpn import RPNTargetGenerator, RPNTargetSampler
from .ssd import SSDMultiBoxLoss, SSDTargetGenerator

__all__ = ['POSITIVE', 'NEGATIVE', 'IGNORE', 'box_iou', 'box_iof', 'force_ndarray_backend',
           'Draw', 'HardRule',
           'NaiveSampler', 'OHEMSampler', 'QuotaSampler', 'RCNNTargetSampler',
           'RPNTargetSampler', 'RPNTargetGenerator', 'SSDTargetGenerator', 'SSDMultiBoxLoss']
# samplers.gluoncv (the GluonCV integration) and samplers.viz (pictures) are imported on
# demand: importing samplers patches nothing and needs neither gluoncv nor matplotlib.
