import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cs_vit.layers import Dropout
from tests.gradcheck import assert_gradients_match, with_fixed_masks


def test_dropout_backward_matches_numerical_gradient(float64):
    layer = Dropout(0.3)
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    assert_gradients_match(layer, (x,), call=with_fixed_masks(layer.forward))


def test_dropout_backward_uses_the_forward_mask():
    layer = Dropout(0.5)
    out = layer.forward(np.ones((8, 8), dtype=np.float32))
    np.testing.assert_array_equal(layer.backward(np.ones((8, 8), dtype=np.float32)), out)


def test_dropout_is_identity_in_eval_mode():
    layer = Dropout(0.5).eval()
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)


def test_dropout_with_p_zero_is_identity_in_train_mode():
    layer = Dropout(0.0)
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_zeroes_a_fraction_p_of_a_large_tensor(p):
    out = Dropout(p).forward(np.ones((500, 500), dtype=np.float32))
    assert abs(np.mean(out == 0) - p) < 0.005


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_preserves_the_expectation(p):
    out = Dropout(p).forward(np.ones((500, 500), dtype=np.float32))
    assert abs(out.mean() - 1.0) < 0.01


def test_dropout_keeps_float32():
    layer = Dropout(0.5)
    out = layer.forward(np.ones((4, 5), dtype=np.float32))
    assert out.dtype == np.float32
    assert layer.backward(np.ones_like(out)).dtype == np.float32


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_p_outside_zero_one(p):
    with pytest.raises(ValueError, match=r"probability of dropping .* \[0, 1\), got p="):
        Dropout(p)


@pytest.mark.parametrize("p", ["0.1", None, True])
def test_dropout_rejects_p_that_is_not_a_number(p):
    with pytest.raises(TypeError, match=r"Dropout p .*must be a number, got"):
        Dropout(p)


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       p=st.floats(0.0, 0.95), seed=st.integers(0, 2**16))
def test_dropout_output_is_zero_or_scaled_input(shape, p, seed):
    x = np.random.default_rng(seed).uniform(1.0, 2.0, size=shape).astype(np.float32)
    out = Dropout(p).forward(x)
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / np.float32(1 - p), rtol=1e-6)
