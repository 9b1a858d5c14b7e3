"""Shared fixtures: every test starts on NumPy, float32, seed 0, with the textbook layers.

The tests check the code students write (the textbook tier). Where the
instructor's fast tier is installed it is switched off for every test, and for
the programs the tests start (``CS_VIT_FAST=0``); its own tests switch it on.
"""
import os

os.environ["CS_VIT_FAST"] = "0"  # before cs_vit is imported, and for subprocesses

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cs_vit import backend, tiers  # noqa: E402
from cs_vit.layers import positional  # noqa: E402

STORED_SINCOS = json.loads((Path(__file__).parent / "expected" / "positional.json").read_text())


@pytest.fixture(autouse=True)
def fresh_backend():
    backend.use("numpy")
    backend.set_default_dtype("float32")
    backend.seed(0)
    tiers.restore_all()
    yield
    backend.use("numpy")
    backend.set_default_dtype("float32")
    tiers.restore_all()


@pytest.fixture
def float64():
    """Gradient checks and torch comparisons run in float64."""
    backend.set_default_dtype("float64")
    yield
    backend.set_default_dtype("float32")


@pytest.fixture
def stored_sincos(monkeypatch):
    """Fixed positions read from the stored sin-cos tables (positions 0..11, dims 4 to 8).

    A test of a whole ViT (task 7) with sin-cos positions then runs no task-2 code, so in
    the student tree it reaches task 7's stub first.
    """
    def sincos_1d(positions, dim):
        table = np.array(STORED_SINCOS["sincos1d"][f"T=12,dim={dim}"])
        return backend.xp.asarray(table[backend.to_numpy(positions)], dtype=backend.default_dtype())

    monkeypatch.setattr(positional, "sincos_1d", sincos_1d)
