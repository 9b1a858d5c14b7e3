"""Gradient clipping by the global L2 norm, as ``torch.nn.utils.clip_grad_norm_``."""
from __future__ import annotations

import math

from cs_vit.backend import xp
from cs_vit.checks import finite_non_negative
from cs_vit.tiers import replaceable

EPS = 1e-6


def check_max_norm(max_norm):
    """``max_norm`` as a float: a number >= 0, or ``math.inf`` (measure the norm only)."""
    if max_norm == math.inf:
        return math.inf
    return finite_non_negative("max_norm", max_norm)


@replaceable
def clip_grad_norm(params, max_norm):
    """Scale all gradients in place so that their joint L2 norm is at most ``max_norm``.

    params: ``(name, value, grad)`` triples, e.g. ``model.parameters()``.
    ``max_norm=math.inf`` only measures the norm. Returns the norm before clipping
    as a Python float, handy for logging: a norm that keeps growing is an early
    sign of a diverging run.
    """
    max_norm = check_max_norm(max_norm)
    grads = [grad for _, _, grad in params]
    # One host sync for the whole model: the squares are summed on the device first.
    total_norm = float(xp.sqrt(sum(xp.sum(g * g) for g in grads)))
    clip_coef = max_norm / (total_norm + EPS)
    if clip_coef < 1.0:
        for g in grads:
            g *= clip_coef
    return total_norm
