import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cs_vit.layers import Linear
from tests.gradcheck import (
    assert_float32_matches_float64, assert_gradients_match, assert_matches_torch,
)


def test_linear_backward_matches_numerical_gradient(float64):
    layer = Linear(5, 4)
    x = np.random.default_rng(1).standard_normal((2, 3, 5))
    assert_gradients_match(layer, (x,))


def test_linear_matches_torch_forward_and_backward(float64):
    layer = Linear(6, 3)
    ref = torch.nn.Linear(6, 3).double()
    x = np.random.default_rng(2).standard_normal((4, 2, 6))
    assert_matches_torch(layer, ref, x, {"weight": ref.weight, "bias": ref.bias})


def test_linear_without_bias_has_only_a_weight():
    assert list(Linear(3, 2, bias=False).params) == ["weight"]


def test_linear_without_bias_backward_matches_numerical_gradient(float64):
    layer = Linear(3, 2, bias=False)
    x = np.random.default_rng(1).standard_normal((4, 3))
    assert set(assert_gradients_match(layer, (x,))) == {"dx0", "weight"}


def test_linear_without_bias_matches_torch_forward_and_backward(float64):
    layer = Linear(6, 3, bias=False)
    ref = torch.nn.Linear(6, 3, bias=False).double()
    x = np.random.default_rng(2).standard_normal((4, 2, 6))
    assert_matches_torch(layer, ref, x, {"weight": ref.weight})


def test_linear_rejects_wrong_feature_size():
    with pytest.raises(ValueError, match="last dimension 4"):
        Linear(4, 2).forward(np.ones((3, 5), dtype=np.float32))


@pytest.mark.parametrize("bias", [True, False])
def test_linear_in_float32_follows_float64(bias):
    x = np.random.default_rng(3).standard_normal((3, 2, 4))
    assert_float32_matches_float64(lambda: Linear(4, 2, bias=bias), (x,))


@settings(max_examples=20, deadline=None)
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       d_in=st.integers(1, 6), d_out=st.integers(1, 6))
def test_linear_handles_any_leading_dims(lead, d_in, d_out):
    layer = Linear(d_in, d_out)
    x = np.ones((*lead, d_in), dtype=np.float32)
    out = layer.forward(x)
    assert out.shape == (*lead, d_out)
    assert layer.backward(np.ones_like(out)).shape == x.shape
