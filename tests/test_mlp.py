import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cs_vit.layers import MLP
from tests.gradcheck import (
    assert_float32_matches_float64, assert_gradients_match, assert_matches_torch, with_fixed_masks,
)


@pytest.mark.task4
def test_mlp_backward_matches_numerical_gradient(float64):
    layer = MLP(4, 6)
    assert_gradients_match(layer, (np.random.default_rng(1).standard_normal((2, 3, 4)),))


@pytest.mark.task4
def test_mlp_with_dropout_backward_matches_numerical_gradient(float64):
    layer = MLP(4, 6, dropout=0.3)
    assert_gradients_match(layer, (np.random.default_rng(1).standard_normal((2, 3, 4)),),
                           call=with_fixed_masks(layer.forward))
    assert (layer.drop1.mask == 0).any() and (layer.drop2.mask == 0).any()


@pytest.mark.task4
def test_mlp_matches_torch_forward_and_backward(float64):
    layer = MLP(5, 7)
    ref = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.GELU(), torch.nn.Linear(7, 5))
    ref = ref.double()
    torch_params = {f"fc{i}.{key}": getattr(ref[index], key)
                    for i, index in ((1, 0), (2, 2)) for key in ("weight", "bias")}
    x = np.random.default_rng(2).standard_normal((2, 3, 5))
    assert_matches_torch(layer, ref, x, torch_params)


@pytest.mark.task4
def test_mlp_dropout_is_identity_in_eval_mode():
    layer = MLP(4, 8, dropout=0.5)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    layer.eval()
    first = layer.forward(x)
    np.testing.assert_array_equal(first, layer.forward(x))
    layer.drop1.p = layer.drop2.p = 0.0
    np.testing.assert_array_equal(first, layer.forward(x))


@pytest.mark.task4
def test_mlp_in_float32_follows_float64():
    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    assert_float32_matches_float64(lambda: MLP(4, 8), (x,))


@pytest.mark.task4
@settings(max_examples=20, deadline=None)
@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       dim=st.integers(1, 6), hidden_dim=st.integers(1, 6))
def test_mlp_keeps_the_input_shape(lead, dim, hidden_dim):
    layer = MLP(dim, hidden_dim)
    x = np.ones((*lead, dim), dtype=np.float32)
    out = layer.forward(x)
    assert out.shape == x.shape
    assert layer.backward(np.ones_like(out)).shape == x.shape
