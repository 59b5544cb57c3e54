"""The block mixin every sampler shares: pickling, keyword calls, repr and a keyed graph cache.

:class:`SamplerBlock` goes first among a sampler's bases (``class X(SamplerBlock,
gluon.HybridBlock)``), so its methods come before Gluon's.
"""
from __future__ import annotations

import inspect
import threading

from mxnet import gluon

from .options import Draw, HardRule

__all__ = ['SamplerBlock', 'option_settings', 'traced']

# Gluon keeps one cached graph per block: threads that share a hybridized sampler take turns.
_GRAPH_LOCK = threading.RLock()
# What the graph being traced in this thread was built for (see SamplerBlock._keyed_graph).
_TRACE = threading.local()

# A built graph holds C handles: these attributes are reset in a pickle (rebuilt on use).
_GRAPH_STATE = {'_cached_graph': (), '_cached_op': None, '_cached_op_args': []}


def option_settings(draw=None, hard=None):
    """The non-default option objects for a repr: ``draw=`` and ``hard=`` when not the
    defaults (:mod:`samplers.options`)."""
    out = {}
    if draw is not None and draw != Draw():
        out['draw'] = draw
    if hard is not None and hard != HardRule():
        out['hard'] = hard
    return out


def traced(default):
    """The value :meth:`SamplerBlock._keyed_graph` gave the graph traced in this thread."""
    return getattr(_TRACE, 'value', default)


class SamplerBlock:
    """Mixin for a sampler's Gluon block.

    * pickles without its built graph (it is rebuilt on the next call);
    * takes its inputs by keyword as well (``sampler(matches, ious, hard=hard)``): Gluon's
      ``Block.__call__`` takes them by position only; the names are ``forward``'s;
    * ``repr`` from :meth:`_settings` (a dict of constructor arguments);
    * :meth:`_keyed_graph`: one cached graph per key (for example the inputs' dtypes).
    """

    _graph_key = None

    def _settings(self):
        """The constructor arguments to show in ``repr``."""
        return {}

    def __repr__(self):
        return '{}({})'.format(type(self).__name__, ', '.join(
            '{}={!r}'.format(k, v) for k, v in self._settings().items()))

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update({k: v for k, v in _GRAPH_STATE.items() if k in state})
        state.pop('_graph_key', None)
        return state

    def __call__(self, *args, **kwargs):
        if kwargs:
            bound = _signature(type(self)).bind(*args, **kwargs)
            bound.apply_defaults()
            args = bound.args
        return super().__call__(*args)

    def _keyed_graph(self, key, args, trace=None):
        """``HybridBlock.forward(*args)`` through a graph built for ``key``.

        The graph is rebuilt when ``key`` differs from the last call's. While it is traced,
        :func:`traced` returns ``trace`` in this thread (a graph fixes what it learnt then).
        """
        with _GRAPH_LOCK:
            if key != self._graph_key:
                self._clear_cached_op()
                self._graph_key = key
            _TRACE.value = trace
            try:
                return gluon.HybridBlock.forward(self, *args)
            finally:
                del _TRACE.value


_SIGNATURES = {}


def _signature(cls):
    """``cls.forward``'s signature without ``self``, once per class."""
    if cls not in _SIGNATURES:
        sig = inspect.signature(cls.forward)
        _SIGNATURES[cls] = sig.replace(parameters=list(sig.parameters.values())[1:])
    return _SIGNATURES[cls]
