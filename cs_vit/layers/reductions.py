"""Sums over the last axis and over the leading axes, as matrix-vector products.

NumPy reduces a short last axis (D = 128 features, say) one row at a time; BLAS
does the same sums as a matrix-vector product several times faster, and on all
its threads. The results equal ``x.mean(axis=-1, keepdims=True)`` and
``x.sum(axis=leading)`` up to float rounding.
"""
from __future__ import annotations

from cs_vit.backend import xp


def mean_last(x):
    """x.mean(axis=-1, keepdims=True): (..., D) -> (..., 1)."""
    D = x.shape[-1]
    return (x.reshape(-1, D) @ xp.full(D, 1.0 / D, dtype=x.dtype)).reshape(*x.shape[:-1], 1)


def sum_leading(x):
    """x summed over every axis but the last: (..., D) -> (D,)."""
    D = x.shape[-1]
    x2d = x.reshape(-1, D)
    return xp.ones(x2d.shape[0], dtype=x.dtype) @ x2d
