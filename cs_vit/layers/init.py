"""Parameter initialisers; all draw from ``backend.rng()`` in the default dtype."""
from __future__ import annotations

from cs_vit import backend
from cs_vit.backend import xp


def uniform(shape, bound):
    """U(-bound, bound) samples of ``shape``."""
    return (backend.rng().uniform(-bound, bound, size=shape)).astype(backend.default_dtype())


def trunc_normal(shape, std=0.02, limit=2.0):
    """Normal(0, std) samples, redrawn until all lie within ``limit`` std (as timm's)."""
    values = backend.rng().standard_normal(size=shape)
    outside = xp.abs(values) > limit
    while bool(outside.any()):
        values[outside] = backend.rng().standard_normal(size=int(outside.sum()))
        outside = xp.abs(values) > limit
    return (values * std).astype(backend.default_dtype())


def zeros(shape):
    return xp.zeros(shape, dtype=backend.default_dtype())


def ones(shape):
    return xp.ones(shape, dtype=backend.default_dtype())
