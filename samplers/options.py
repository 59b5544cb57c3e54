"""The two option objects every sampler shares: how it draws (:class:`Draw`) and how it treats
hard boxes (:class:`HardRule`).

GluonCV's own constructor parameters (``num_sample``, ``pos_iou_thresh``, ...) stay flat, as
GluonCV has them; the options this package adds come as one value each::

    from samplers import Draw, HardRule, RCNNTargetSampler
    sampler = RCNNTargetSampler(2, 2000, 128, hard=HardRule(iof_thresh=0.5),
                                draw=Draw(neg_sampler='iou_balanced'))

Both are frozen dataclasses: checked once when built (``ValueError`` naming the field),
equal when their fields are, hashable and picklable, so one value can configure several
samplers. The flat keywords of earlier releases (``pos_sampler=``, ``hard_iof_thresh=``, ...)
still work for one release, with a ``DeprecationWarning`` (:func:`resolve`).
"""
from __future__ import annotations

import dataclasses
import numbers
import warnings
from dataclasses import dataclass

from .checks import check_int, check_min_size, check_ratio

__all__ = ['Draw', 'HardRule', 'POS_SAMPLERS', 'NEG_SAMPLERS', 'check_iou_balanced', 'fold',
           'resolve']

#: The ``pos_sampler`` choices: a uniform draw, or evenly per ground-truth box.
POS_SAMPLERS = ('uniform', 'instance_balanced')
#: The ``neg_sampler`` choices: a uniform draw, or evenly across IoU bins.
NEG_SAMPLERS = ('uniform', 'iou_balanced')


def check_iou_balanced(num_bins=3, floor_thr=-1.0, floor_fraction=0.0):
    """Validated ``(num_bins, floor_thr, floor_fraction)``, or ``ValueError`` naming the argument.

    ``num_bins`` an integer >= 1; ``floor_thr`` -1 (no floor) or a number in [0, 1];
    ``floor_fraction`` in [0, 1].
    """
    num_bins = check_int('num_bins', num_bins, minimum=1)
    if isinstance(floor_thr, bool) or not isinstance(floor_thr, numbers.Real) or not (
            floor_thr == -1 or 0 <= floor_thr <= 1):
        raise ValueError('floor_thr must be -1 (no floor) or in [0, 1], got {!r}'.format(
            floor_thr))
    return num_bins, float(floor_thr), check_ratio('floor_fraction', floor_fraction)


def _set(obj, **fields):
    """Store checked values on a frozen dataclass (from ``__post_init__`` only)."""
    for name, value in fields.items():
        object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Draw:
    """How a quota-based sampler draws its positives and negatives.

    Parameters
    ----------
    pos_sampler : 'uniform' (default) or 'instance_balanced'
        The positive quota drawn uniformly, or evenly per ground-truth box
        (:func:`samplers.balanced.instance_balanced_draw`).
    neg_sampler : 'uniform' (default) or 'iou_balanced'
        The negative quota drawn uniformly, or evenly across IoU bins (Libra R-CNN,
        :func:`samplers.balanced.iou_balanced_draw`).
    num_bins : int >= 1, default 3
        The IoU-balanced draw's bins.
    floor_thr : -1 (default, no floor) or a number in [0, 1]
        The IoU-balanced draw's floor: negatives below it are drawn at random.
    floor_fraction : float in [0, 1], default 0
        The share of the negative quota drawn below ``floor_thr``.
    """

    pos_sampler: str = 'uniform'
    neg_sampler: str = 'uniform'
    num_bins: int = 3
    floor_thr: float = -1.0
    floor_fraction: float = 0.0

    def __post_init__(self):
        for name, allowed in (('pos_sampler', POS_SAMPLERS), ('neg_sampler', NEG_SAMPLERS)):
            if getattr(self, name) not in allowed:
                raise ValueError('{} must be one of {}, got {!r}'.format(
                    name, allowed, getattr(self, name)))
        num_bins, floor_thr, floor_fraction = check_iou_balanced(
            self.num_bins, self.floor_thr, self.floor_fraction)
        _set(self, num_bins=num_bins, floor_thr=floor_thr, floor_fraction=floor_fraction)

    @property
    def uniform(self) -> bool:
        """Whether both quotas are drawn uniformly (the samplers' original behaviour)."""
        return self.pos_sampler == 'uniform' and self.neg_sampler == 'uniform'

    def settings(self) -> dict:
        """The fields as keyword arguments."""
        return dataclasses.asdict(self)

    def iou_options(self) -> dict:
        """The IoU-balanced draw's keyword arguments (``num_bins``, ``floor_thr``,
        ``floor_fraction``), as :mod:`samplers.balanced`'s functions take them."""
        return dict(num_bins=self.num_bins, floor_thr=self.floor_thr,
                    floor_fraction=self.floor_fraction)

    def attrs(self) -> dict:
        """The fields as CustomOp attributes (strings)."""
        return {name: str(value) for name, value in self.settings().items()}

    @classmethod
    def from_attrs(cls, pos_sampler='uniform', neg_sampler='uniform', num_bins='3',
                   floor_thr='-1', floor_fraction='0') -> 'Draw':
        """Rebuild from :meth:`attrs` (absent attributes: the uniform defaults)."""
        return cls(pos_sampler, neg_sampler, int(float(num_bins)), float(floor_thr),
                   float(floor_fraction))


@dataclass(frozen=True)
class HardRule:
    """How a sampler treats hard boxes (flagged, or too small) and crowd regions.

    A hard box never makes a positive; what it changes is which of the other candidates
    may still be taught as background. Each sampler reads the fields that apply to its
    stage and raises ``ValueError`` naming a field it cannot honour (set to other than its
    default), rather than ignoring it.

    Parameters
    ----------
    iou_thresh : float in (0, 1] or None, default None
        A candidate that is not positive and overlaps a hard box at IoU >= this is ignored.
        None: the stage's own threshold, 0.3 in :class:`samplers.RCNNTargetSampler`;
        the RPN and SSD generators always use their negative threshold
        (``neg_iou_thresh`` / ``neg_thresh``) and take only None.
    iof_thresh : float in (0, 1] or None, default None
        Also ignore a non-positive candidate when this share of its own area lies in a hard
        box (RPN and second stage).
    crowd_iof_thresh : float in (0, 1], default 0.7
        Ignore a non-positive candidate when this share of its own area lies in a crowd
        region (Detectron's crowd filter; RPN and second stage).
    min_size : positive finite float or None, default None
        A box whose shorter side is below this (in the boxes' units) is hard as well
        (RPN and SSD generators; the second stage sees such boxes through its hard flags,
        which GluonCV's transforms set: :mod:`samplers.gluoncv.transforms`).
    """

    iou_thresh: float | None = None
    iof_thresh: float | None = None
    crowd_iof_thresh: float = 0.7
    min_size: float | None = None

    def __post_init__(self):
        _set(self,
             iou_thresh=None if self.iou_thresh is None else
             check_ratio('iou_thresh', self.iou_thresh, low_open=True),
             iof_thresh=None if self.iof_thresh is None else
             check_ratio('iof_thresh', self.iof_thresh, low_open=True),
             crowd_iof_thresh=check_ratio('crowd_iof_thresh', self.crowd_iof_thresh,
                                          low_open=True),
             min_size=check_min_size('min_size', self.min_size))

    def only(self, owner: str, fields) -> 'HardRule':
        """This rule, or ``ValueError`` naming each field outside ``fields`` that is not at its
        default: ``owner`` (a class name) has no use for it."""
        unused = [f.name for f in dataclasses.fields(self)
                  if f.name not in fields and getattr(self, f.name) != f.default]
        if unused:
            raise ValueError('{} does not use HardRule.{} (got {}); leave {} at the '
                             'default'.format(owner, ', '.join(unused), ', '.join(
                                 '{}={!r}'.format(n, getattr(self, n)) for n in unused),
                                 'it' if len(unused) == 1 else 'them'))
        return self


def _check_type(name, value, cls):
    if value is not None and not isinstance(value, cls):
        raise ValueError('{} must be a samplers.{} or None, got {!r}'.format(
            name, cls.__name__, value))


#: The flat keywords of earlier releases, and the field each became.
FLAT_DRAW = {name: name for name in ('pos_sampler', 'neg_sampler', 'num_bins', 'floor_thr',
                                     'floor_fraction')}
FLAT_HARD = {'hard_iou_thresh': 'iou_thresh', 'hard_iof_thresh': 'iof_thresh',
             'crowd_iof_thresh': 'crowd_iof_thresh', 'hard_min_size': 'min_size'}


def _known(accepts):
    """The flat keywords ``accepts`` (a subset of ('draw', 'hard')) covers: name -> (object,
    field)."""
    known = {k: ('draw', v) for k, v in FLAT_DRAW.items() if 'draw' in accepts}
    known.update((k, ('hard', v)) for k, v in FLAT_HARD.items() if 'hard' in accepts)
    return known


_CLASSES = {'draw': Draw, 'hard': HardRule}


def fold(owner: str, options: dict, base: dict | None = None, accepts=('draw', 'hard'),
         stacklevel: int = 3) -> dict:
    """Keyword options with the deprecated flat keywords folded into ``draw=`` / ``hard=``.

    ``options`` a constructor's keyword arguments; ``base`` (optional) the defaults they
    override, such as install()'s: a flat keyword changes that field of ``base``'s object
    and keeps the others, an object replaces ``base``'s whole. Flat keywords warn once per
    call (``DeprecationWarning`` naming ``owner``); a field given both flat and in an
    object of ``options`` raises ``ValueError``. Other keys pass through.
    """
    known = _known(accepts)
    base = dict(base or {})
    flat = {k: v for k, v in options.items() if k in known}
    out = dict(base, **{k: v for k, v in options.items() if k not in known})
    for which in _CLASSES:
        _check_type(which, out.get(which), _CLASSES[which])
    if not flat:
        return out
    warnings.warn('{}: the flat keyword(s) {} are deprecated and will be removed in the next '
                  'release; pass {}'.format(owner, ', '.join(sorted(flat)), ', '.join(sorted(
                      {'{}={}(...)'.format(known[k][0], _CLASSES[known[k][0]].__name__)
                       for k in flat}))), DeprecationWarning, stacklevel=stacklevel)
    for which, cls in _CLASSES.items():
        names = sorted(k for k in flat if known[k][0] == which)
        if not names:
            continue
        if options.get(which) is not None:
            raise ValueError('{}: {} given both as a flat keyword and in {}=; pass it once, '
                             'in {}='.format(owner, ', '.join(names), which, which))
        out[which] = dataclasses.replace(base.get(which) or cls(),
                                         **{known[k][1]: flat[k] for k in names})
    return out


def resolve(owner: str, flat: dict, draw: Draw | None = None, hard: HardRule | None = None,
            accepts=('draw', 'hard')) -> tuple[Draw, HardRule]:
    """``(draw, hard)`` for ``owner``'s constructor, from its ``draw=`` and ``hard=`` and the
    flat keywords of earlier releases (``flat``, its ``**kwargs``).

    A flat keyword is deprecated: it warns once per call (``DeprecationWarning``) and is
    folded into its object (:func:`fold`); one given both ways raises ``ValueError``. A
    keyword that was never flat raises ``TypeError``, as Python does. ``accepts``: which of
    the two objects ``owner`` takes (a flat keyword of the other is unknown to it).
    """
    unknown = sorted(set(flat) - set(_known(accepts)))
    if unknown:
        raise TypeError('{}() got an unexpected keyword argument {!r}'.format(owner, unknown[0]))
    options = dict(flat, **{k: v for k, v in (('draw', draw), ('hard', hard)) if v is not None})
    out = fold(owner, options, accepts=accepts, stacklevel=4)
    return out.get('draw') or Draw(), out.get('hard') or HardRule()
