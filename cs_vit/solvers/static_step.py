"""The hooks through which a faster tier may run the solver's work over fixed buffers.

``ClassificationSolverViT`` asks :func:`make_static_step` for a training step when
training starts, and :func:`make_static_forward` for an evaluation pass. The
textbook answer is None: the solver runs its steps one by one (forward, loss,
backward, clipping and update, each a call you can read in ``_train_step``) and
calls ``model.forward`` to evaluate. The fast tier (where installed) answers on
the GPU with the same work recorded once as a CUDA graph and replayed for every
batch (``cs_vit.fast.captured``); its results equal the call-by-call ones.
"""
from __future__ import annotations

from cs_vit.tiers import replaceable


@replaceable
def make_static_step(model, optimizer, batch_size, label_smoothing, grad_clip):
    """A step ``step(images, labels, lr)`` over fixed buffers for this run, or None.

    Such a step keeps its losses, gradient norms and number correct on the device
    until ``step.flush()`` returns them: ``(losses, grad_norms, correct)``.
    """
    return None


@replaceable
def make_static_forward(model, batch_size):
    """A pass ``forward(images) -> logits`` of ``model`` under ``no_grad()`` over a fixed
    batch size, or None (the textbook tier: the solver calls ``model.forward``).

    The logits it returns are overwritten by its next call.
    """
    return None
