import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cs_vit import backend
from cs_vit.layers import LayerNorm
from tests.gradcheck import (
    assert_float32_matches_float64, assert_gradients_match, assert_matches_torch,
    randomize_parameters,
)


@pytest.mark.task3
def test_layernorm_backward_matches_numerical_gradient(float64):
    layer = LayerNorm(5)
    x = np.random.default_rng(1).standard_normal((2, 3, 5))
    assert_gradients_match(layer, (x,))


@pytest.mark.task3
def test_layernorm_backward_matches_numerical_gradient_on_2d_input(float64):
    layer = LayerNorm(4)
    x = np.random.default_rng(1).standard_normal((3, 4))
    assert_gradients_match(layer, (x,))


@pytest.mark.task3
def test_layernorm_matches_torch_forward_and_backward(float64):
    layer = LayerNorm(6)
    ref = torch.nn.LayerNorm(6).double()
    x = 2 + 3 * np.random.default_rng(2).standard_normal((4, 3, 6))
    assert_matches_torch(layer, ref, x, {"weight": ref.weight, "bias": ref.bias})


@pytest.mark.task3
def test_layernorm_matches_torch_on_rows_of_small_variance(float64):
    """Rows whose variance is near eps: where eps sits in the formula matters here."""
    layer = LayerNorm(6)
    ref = torch.nn.LayerNorm(6).double()
    x = 1e-3 * np.random.default_rng(3).standard_normal((4, 3, 6))
    assert_matches_torch(layer, ref, x, {"weight": ref.weight, "bias": ref.bias})


def test_layernorm_starts_as_pure_normalisation():
    layer = LayerNorm(3)
    np.testing.assert_array_equal(layer.params["weight"], np.ones(3))
    np.testing.assert_array_equal(layer.params["bias"], np.zeros(3))


@pytest.mark.task3
def test_layernorm_in_float32_follows_float64():
    x = 2 + 3 * np.random.default_rng(4).standard_normal((2, 3, 4))
    assert_float32_matches_float64(lambda: LayerNorm(4), (x,))


def test_layernorm_rejects_wrong_feature_size():
    with pytest.raises(ValueError, match="last dimension 4, got shape \\(2, 5\\)"):
        LayerNorm(4).forward(np.ones((2, 5), dtype=np.float32))


shapes = st.tuples(st.lists(st.integers(1, 3), min_size=0, max_size=2), st.integers(1, 8))


@pytest.mark.task3
@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_layernorm_output_has_zero_mean_and_unit_variance_per_row(shape, seed):
    lead, D = shape
    x = 5 + 2 * np.random.default_rng(seed).standard_normal((*lead, D))
    with backend.precision("float64"):
        out = LayerNorm(D).forward(x)
    var_x = x.var(axis=-1)
    np.testing.assert_allclose(out.mean(axis=-1), 0, atol=1e-12)
    # Exactly 1 up to eps: var(out) = var(x) / (var(x) + eps).
    np.testing.assert_allclose(out.var(axis=-1), var_x / (var_x + 1e-5), rtol=1e-10)


@pytest.mark.task3
@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_layernorm_input_gradient_sums_to_zero_along_last_axis(shape, seed):
    # Adding a constant to a row leaves the output unchanged, so dx is orthogonal to ones.
    lead, D = shape
    rng = np.random.default_rng(seed)
    with backend.precision("float64"):
        layer = randomize_parameters(LayerNorm(D), seed)
    layer.forward(rng.standard_normal((*lead, D)))
    dx = layer.backward(rng.standard_normal((*lead, D)))
    assert dx.shape == (*lead, D)
    assert layer.grads["weight"].shape == (D,)
    np.testing.assert_allclose(dx.sum(axis=-1), 0, atol=1e-10)
