# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""The fast tier: faster implementations of the textbook layers, switched on by default.

Each module here holds the faster version of some textbook code in
``cs_vit.layers``, ``cs_vit.models`` or ``cs_vit.optim``, and a ``REPLACEMENTS``
dict mapping the ``@replaceable`` function it stands in for to its own. With the
tier on, every call of such a function runs the replacement; the tests check
that both give the same results. The student release leaves this package out,
so a student's tree runs the student's own code.

Switch it off with ``CS_VIT_FAST=0`` in the environment, ``cs_vit.fast.enable(False)``
in Python (``with cs_vit.fast.enabled(False): ...`` for a block), or
``cs-vit train --reference``. Switch between forward and backward passes, not
between a forward pass and its backward: each tier reads only its own caches.
"""
from __future__ import annotations

import contextlib
import os

from cs_vit import tiers
from cs_vit.fast import attention, captured, flat, gelu, layernorm, linear, vit
from cs_vit.fast.allocator import keep_freed_memory

_MODULES = (linear, layernorm, gelu, attention, vit, flat, captured)


def enable(on=True):
    """Switch the fast tier on (the default) or off, for the whole process."""
    tiers.restore_all()
    if on:
        for module in _MODULES:
            for target, replacement in module.REPLACEMENTS.items():
                tiers.replace(target, replacement)


def is_enabled():
    """Whether the fast tier is on."""
    return tiers.any_replaced()


@contextlib.contextmanager
def enabled(on=True):
    """``with enabled(False): ...`` runs a block on the textbook tier (or on the fast one)."""
    previous = is_enabled()
    enable(on)
    try:
        yield
    finally:
        enable(previous)


keep_freed_memory()
enable(os.environ.get("CS_VIT_FAST", "1") != "0")
