"""Experiments beside the library, run from the checkout and not part of the wheel.

``python -m tools.bench`` (the benchmark), ``python -m tools.study`` (the RPN study) and
``python -m tools.demo`` (the study on a small budget, with pictures).
"""
# First, before any tool imports mxnet: on Python 3.12 (numpy 1.26) mxnet needs the numpy
# aliases that importing samplers restores (see samplers/_compat.py).
import samplers  # noqa: F401
