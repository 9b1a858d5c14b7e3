"""Shared fixtures: every test starts on NumPy, float32, seed 0, with the textbook layers.

The tests check the code students write (the textbook tier). Where the
instructor's fast tier is installed it is switched off for every test, and for
the programs the tests start (``CS_VIT_FAST=0``); its own tests switch it on.
"""
import os

os.environ["CS_VIT_FAST"] = "0"  # before cs_vit is imported, and for subprocesses

import pytest  # noqa: E402

from cs_vit import backend, tiers  # noqa: E402


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
