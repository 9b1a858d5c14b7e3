"""Shared fixtures: every test starts on NumPy, float32, seed 0."""
import pytest

from cs_vit import backend


@pytest.fixture(autouse=True)
def fresh_backend():
    backend.use("numpy")
    backend.set_default_dtype("float32")
    backend.seed(0)
    yield
    backend.use("numpy")
    backend.set_default_dtype("float32")


@pytest.fixture
def float64():
    """Gradient checks and torch comparisons run in float64."""
    backend.set_default_dtype("float64")
    yield
    backend.set_default_dtype("float32")
