import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from cs_vit.layers import GELU, ReLU
from cs_vit.layers.activations import erf
from tests.gradcheck import assert_close, assert_gradients_match


def away_from_zero(shape, seed):
    """Values in +-[0.1, 2]: no ReLU kink within a finite-difference step."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def torch_forward_backward(fn, x, dout):
    x_t = torch.from_numpy(x).requires_grad_()
    out_t = fn(x_t)
    out_t.backward(torch.from_numpy(dout))
    return out_t, x_t.grad


def test_erf_matches_math_erf_in_float64():
    x = np.linspace(-6.0, 6.0, 101)
    expected = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(erf(x) - expected)) <= 1e-15


def test_erf_keeps_float32():
    assert erf(np.ones(3, dtype=np.float32)).dtype == np.float32


@pytest.mark.task4
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_backward_matches_numerical_gradient(float64, approximate):
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    assert_gradients_match(GELU(approximate), (x,))


def test_relu_backward_matches_numerical_gradient(float64):
    assert_gradients_match(ReLU(), (away_from_zero((2, 3, 4), seed=1),))


@pytest.mark.task4
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_forward_and_backward(float64, approximate):
    x = 3 * np.random.default_rng(2).standard_normal((4, 5, 6))
    dout = np.random.default_rng(3).standard_normal(x.shape)
    out_t, dx_t = torch_forward_backward(lambda t: F.gelu(t, approximate=approximate), x, dout)
    layer = GELU(approximate)
    assert_close(layer.forward(x), out_t, 'layer.forward(x) vs torch')
    assert_close(layer.backward(dout), dx_t, 'layer.backward(dout) vs torch')


def test_relu_matches_torch_forward_and_backward(float64):
    x = away_from_zero((4, 5, 6), seed=2)
    dout = np.random.default_rng(3).standard_normal(x.shape)
    out_t, dx_t = torch_forward_backward(F.relu, x, dout)
    layer = ReLU()
    assert_close(layer.forward(x), out_t, 'layer.forward(x) vs torch')
    assert_close(layer.backward(dout), dx_t, 'layer.backward(dout) vs torch')


@pytest.mark.task4
@pytest.mark.parametrize("make_layer", [lambda: GELU("none"), lambda: GELU("tanh"), ReLU],
                         ids=["gelu", "gelu_tanh", "relu"])
def test_activations_keep_float32(make_layer):
    layer = make_layer()
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    out = layer.forward(x)
    assert out.dtype == np.float32
    assert layer.backward(np.ones_like(out)).dtype == np.float32


def test_activations_have_no_params():
    assert GELU().params == {} and ReLU().params == {}


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate must be one of .* got 'exact'"):
        GELU(approximate="exact")


@pytest.mark.task4
@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       seed=st.integers(0, 2**16), approximate=st.sampled_from(["none", "tanh"]))
def test_gelu_of_x_minus_gelu_of_minus_x_is_x(shape, seed, approximate):
    # Phi(x) + Phi(-x) = 1 for the exact CDF and for its tanh approximation alike.
    x = 4 * np.random.default_rng(seed).standard_normal(shape)
    layer = GELU(approximate)
    np.testing.assert_allclose(layer.forward(x) - layer.forward(-x), x, atol=1e-12)
