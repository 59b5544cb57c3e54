"""Make mxnet 1.9.1 and gluoncv 0.10.5 importable on numpy >= 1.24 (Python 3.12).

numpy 1.24 removed the deprecated aliases ``np.bool``, ``np.int``, ``np.float``,
``np.complex``, ``np.object`` and ``np.str``. mxnet 1.9.1 reads some of them
while it is imported, and GluonCV 0.10.5 reads some while it runs (for example
``np.float`` in its RPN anchor generator). On Python 3.12 the oldest numpy
there is a build for is 1.26, so without the aliases neither library works.

Importing this module (``samplers/__init__.py`` does it on its first line,
before anything imports mxnet) adds each alias that is missing, bound to the
builtin it used to name (``np.bool is bool``, ``np.int is int``, ...), exactly
as numpy < 1.24 defined them. Aliases numpy still has are left alone, so on
numpy 1.23 (Python 3.8 to 3.11 under ``constraints.txt``) this does nothing.

This changes the ``numpy`` module of the whole process, not only this
package's view of it: after ``import samplers``, any code in the process sees
``np.float`` and the others again (and code that tests ``hasattr(np, 'bool')``
to detect numpy >= 1.24 is misled). It must run before mxnet is imported: on
Python 3.12, ``import samplers`` before ``import mxnet`` or ``import gluoncv``.
"""
import builtins
import warnings

import numpy as np

#: The aliases numpy 1.24 removed, each naming a builtin type.
REMOVED_ALIASES = ('bool', 'int', 'float', 'complex', 'object', 'str')


def add_numpy_aliases(module=np):
    """Bind each missing alias of :data:`REMOVED_ALIASES` on ``module`` to its builtin.

    ``module`` defaults to :mod:`numpy`. Returns the names that were added (an
    empty tuple when the numpy in use still has them all). Calling it again
    adds nothing.
    """
    added = []
    for name in REMOVED_ALIASES:
        # numpy 1.20 to 1.23 still answer with a DeprecationWarning (not ours to show);
        # numpy 1.24 to 1.26 raise AttributeError: then the alias is missing.
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            present = hasattr(module, name)
        if not present:
            setattr(module, name, getattr(builtins, name))
            added.append(name)
    return tuple(added)


ADDED = add_numpy_aliases()
