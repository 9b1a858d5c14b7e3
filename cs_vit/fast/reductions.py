# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""Sums over the last axis and over the leading axes, as matrix-vector products.

NumPy reduces a short last axis (D = 128 features, say) one row at a time; BLAS
does the same sums as a matrix-vector product several times faster, and on all
its threads. The results equal ``x.mean(axis=-1, keepdims=True)`` and
``x.sum(axis=leading)`` up to float rounding. The constant vectors they multiply
by are made once per length and kept. On the GPU the sums are CuPy's own
reductions, one kernel each.
"""
from __future__ import annotations

import functools

import numpy

from cs_vit.fast.cuda_kernels import on_gpu


def mean_last(x):
    """x.mean(axis=-1, keepdims=True): (..., D) -> (..., 1)."""
    D = x.shape[-1]
    if on_gpu(x):
        return x.mean(axis=-1, keepdims=True)
    return (x.reshape(-1, D) @ _constant_vector_like(x, D, 1.0 / D)).reshape(*x.shape[:-1], 1)


def sum_leading(x, out=None):
    """x summed over every axis but the last: (..., D) -> (D,), into ``out`` if given."""
    D = x.shape[-1]
    x2d = x.reshape(-1, D)
    if on_gpu(x):
        return x2d.sum(axis=0, out=out)
    return numpy.matmul(_constant_vector_like(x, x2d.shape[0], 1.0), x2d, out=out)


def _constant_vector_like(like, length, value):
    """A shared, read-only (length,) NumPy vector of ``value`` in ``like``'s dtype.

    Made once per (length, value, dtype) and kept. Only the CPU paths use it: on the GPU
    the sums above are CuPy's reductions.
    """
    return _constant_vector(length, float(value), like.dtype.str)


@functools.lru_cache(maxsize=64)
def _constant_vector(length, value, dtype):
    vector = numpy.full(length, value, dtype=dtype)
    vector.flags.writeable = False
    return vector
