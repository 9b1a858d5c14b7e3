"""Gradient clipping by the global L2 norm, as ``torch.nn.utils.clip_grad_norm_``."""
from __future__ import annotations

from cs_vit.backend import xp
from cs_vit.layers.base import shared_buffer
from cs_vit.optim.optimizers import non_negative

EPS = 1e-6


def clip_grad_norm(params, max_norm):
    """Scale all gradients in place so that their joint L2 norm is at most ``max_norm``.

    params: ``(name, value, grad)`` triples, e.g. ``model.parameters()``.
    Returns the norm before clipping as a Python float, handy for logging:
    a norm that keeps growing is an early sign of a diverging run.
    """
    max_norm = non_negative("max_norm", max_norm)
    grads = [grad for _, _, grad in params]
    # Gradients laid out by flatten_parameters are one buffer: one reduction over it all.
    flat = shared_buffer(grads)
    squares = xp.dot(flat, flat) if flat is not None else sum(xp.sum(g * g) for g in grads)
    # One host sync for the whole model: the squares are summed on the device first.
    total_norm = float(xp.sqrt(squares))
    clip_coef = max_norm / (total_norm + EPS)
    if clip_coef < 1.0:
        for g in grads if flat is None else [flat]:
            g *= clip_coef
    return total_norm
