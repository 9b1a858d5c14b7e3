"""Optimizers, learning-rate schedules and gradient clipping for cs_vit models."""
from cs_vit.optim.optimizers import (
    DEFAULT_NO_DECAY,
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    Optimizer,
    decays,
    excluded_from_decay,
    make_optimizer,
)
from cs_vit.optim.schedules import (
    ConstantLR,
    StepLR,
    WarmupCosineLR,
    make_schedule,
    set_lr,
)
from cs_vit.optim.clipping import clip_grad_norm

__all__ = [
    "DEFAULT_NO_DECAY", "OPTIMIZERS", "make_optimizer", "SGD", "Adam", "AdamW", "Optimizer", "decays", "excluded_from_decay",
    "ConstantLR", "StepLR", "WarmupCosineLR", "make_schedule", "set_lr", "clip_grad_norm",
]
