"""Learning-rate schedules: ``schedule(step) -> lr`` for the global step 0, 1, 2, ...

    >>> schedule = make_schedule("cosine", base_lr=1e-3, total_steps=1000, warmup_steps=50)
    >>> for step in range(1000):
    ...     set_lr(optimizer, schedule(step))
    ...     ...  # forward, backward, optimizer.step()

A schedule is a plain function of the step, not of its own history, so a run
resumed from a checkpoint gets the same learning rates as one never stopped.
"""
from __future__ import annotations

import math

from cs_vit.checks import finite_non_negative, integer_at_least

SCHEDULES = ("constant", "step", "cosine")


class ConstantLR:
    """The same learning rate at every step."""

    def __init__(self, base_lr):
        self.base_lr = finite_non_negative("base_lr", base_lr)

    def __call__(self, step):
        return self.base_lr


class StepLR:
    """``base_lr * gamma ** (step // step_size)``, as ``torch.optim.lr_scheduler.StepLR``."""

    def __init__(self, base_lr, step_size, gamma=0.1):
        self.base_lr = finite_non_negative("base_lr", base_lr)
        self.step_size = integer_at_least("step_size", step_size, 1)
        self.gamma = finite_non_negative("gamma", gamma)

    def __call__(self, step):
        return self.base_lr * self.gamma ** (step // self.step_size)


class WarmupCosineLR:
    """Linear warmup to ``base_lr`` at ``warmup_steps``, then a cosine down to ``min_lr``.

    Warmup: ``base_lr * (step + 1) / (warmup_steps + 1)``; the +1 gives the first
    step a small non-zero lr and puts the peak exactly at ``step == warmup_steps``.
    Cosine: ``min_lr + (base_lr - min_lr) * (1 + cos(pi * progress)) / 2`` with
    progress going 0 -> 1 from ``warmup_steps`` to ``total_steps``; ``min_lr`` after.
    """

    def __init__(self, base_lr, warmup_steps, total_steps, min_lr=0.0):
        self.base_lr = finite_non_negative("base_lr", base_lr)
        self.total_steps = integer_at_least("total_steps", total_steps, 1)
        self.warmup_steps = integer_at_least("warmup_steps", warmup_steps, 0)
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps ({warmup_steps}) must not exceed total_steps ({total_steps})"
            )
        self.min_lr = finite_non_negative("min_lr", min_lr)
        if self.min_lr > self.base_lr:
            raise ValueError(f"min_lr ({min_lr}) must not exceed base_lr ({base_lr})")

    def __call__(self, step):
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / (self.warmup_steps + 1)
        cosine_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / cosine_steps)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer, lr):
    """Give ``optimizer`` the learning rate ``lr`` for its next steps."""
    optimizer.lr = lr


def make_schedule(name, base_lr, total_steps, warmup_steps=0, **kw):
    """The schedule called ``name``: "constant", "step" (needs ``step_size``) or "cosine".

    Extra keywords go to the schedule's class (``gamma`` for "step", ``min_lr``
    for "cosine"); warmup is part of the "cosine" schedule only.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r}; expected one of {SCHEDULES}")
    if name == "cosine":
        return WarmupCosineLR(base_lr, warmup_steps, total_steps, **kw)
    if warmup_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps} is only supported by the 'cosine' schedule, "
            f"not {name!r}; use schedule 'cosine' or warmup_steps=0"
        )
    if name == "step":
        return StepLR(base_lr, **kw)
    return ConstantLR(base_lr, **kw)
