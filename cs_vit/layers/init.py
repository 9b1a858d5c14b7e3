"""Parameter initialisers: they draw on the host from ``backend.host_rng()`` (the same
weights on every device for a seed) and return arrays of the active backend in the
default dtype."""
from __future__ import annotations

from cs_vit import backend
from cs_vit.backend import xp


def uniform(shape, bound):
    """U(-bound, bound) samples of ``shape``."""
    return backend.asarray(backend.host_rng().uniform(-bound, bound, size=shape))


def trunc_normal(shape, std=0.02, limit=2.0):
    """Normal(0, std) samples, redrawn until all lie within ``limit`` std (as timm's)."""
    rng = backend.host_rng()
    values = rng.standard_normal(size=shape)  # a NumPy array, so abs() rather than xp.abs
    outside = abs(values) > limit
    while outside.any():
        values[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = abs(values) > limit
    return backend.asarray(values * std)


def zeros(shape):
    return xp.zeros(shape, dtype=backend.default_dtype())


def ones(shape):
    return xp.ones(shape, dtype=backend.default_dtype())
