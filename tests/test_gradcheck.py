"""The helpers the task tests rely on fail on a wrong backward: a passing check means something."""
import numpy as np
import pytest
import torch

from cs_vit.layers import Linear
from cs_vit.layers.base import Layer
from cs_vit.layers.init import ones, zeros
from tests.gradcheck import assert_close, assert_gradients_match

class TwoAffineMaps(Layer):
    """out = w2 * (w1 * x + b1) + b2 on (N, D) inputs, like two LayerNorms' affine parts.

    Each map starts as the identity (gains one, shifts zero), where a backward with
    ``mistake`` gives the right numbers: "dropped term" forgets w2 on the way to w1, b1
    and x; "swapped pair" swaps the gradients of w1 and w2; "unused parameter" never
    adds b1, whose gradient is then zero on both sides.
    """

    def __init__(self, dim, mistake=None):
        super().__init__()
        for key, init in (("w1", ones), ("b1", zeros), ("w2", ones), ("b2", zeros)):
            self.add_param(key, init((dim,)))
        self.mistake = mistake
        self.x = self.hidden = None

    def forward(self, x):
        self.x = x
        shift = 0.0 if self.mistake == "unused parameter" else self.params["b1"]
        self.hidden = self.params["w1"] * x + shift
        return self.params["w2"] * self.hidden + self.params["b2"]

    def backward(self, dout):
        dhidden = dout if self.mistake == "dropped term" else dout * self.params["w2"]
        grads = {"w1": (dhidden * self.x).sum(axis=0), "w2": (dout * self.hidden).sum(axis=0),
                 "b1": dhidden.sum(axis=0), "b2": dout.sum(axis=0)}
        if self.mistake == "swapped pair":
            grads["w1"], grads["w2"] = grads["w2"], grads["w1"]
        if self.mistake == "unused parameter":
            grads["b1"] = np.zeros_like(grads["b1"])
        for key, grad in grads.items():
            self.grads[key] = grad
        return dhidden * self.params["w1"]


class Product(Layer):
    """out = x * y; with ``forget_y`` its backward returns dx only, not (dx, dy)."""

    def __init__(self, forget_y=False):
        super().__init__()
        self.forget_y = forget_y
        self.inputs = None

    def forward(self, x, y):
        self.inputs = (x, y)
        return x * y

    def backward(self, dout):
        x, y = self.inputs
        return dout * y if self.forget_y else (dout * y, dout * x)


class KeyProjection(Layer):
    """A Linear named ``k_proj`` whose bias does reach the output (unlike in attention)."""

    def __init__(self):
        super().__init__()
        self.k_proj = Linear(3, 2)

    def forward(self, x):
        return self.k_proj(x)

    def backward(self, dout):
        return self.k_proj.backward(dout)


def randn(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


def test_a_right_backward_passes_the_gradient_check(float64):
    errors = assert_gradients_match(TwoAffineMaps(4), (randn(0, 3, 4),))
    assert set(errors) == {"dx0", "w1", "b1", "w2", "b2"}
    assert set(assert_gradients_match(Product(), (randn(1, 2, 3), randn(2, 2, 3)))) == {"dx0",
                                                                                        "dx1"}


@pytest.mark.parametrize("mistake, gradient", [("dropped term", "dx0"), ("swapped pair", "w1"),
                                                ("unused parameter", "b1")])
def test_a_backward_right_only_at_the_identity_start_fails_the_gradient_check(float64, mistake,
                                                                              gradient):
    with pytest.raises(AssertionError, match=f"gradients off.*'{gradient}'"):
        assert_gradients_match(TwoAffineMaps(4, mistake), (randn(0, 3, 4),))


def test_a_missing_input_gradient_fails_the_gradient_check(float64):
    with pytest.raises(AssertionError, match=r"returned 1 input gradient\(s\) for 2 input\(s\)"):
        assert_gradients_match(Product(forget_y=True), (randn(1, 2, 3), randn(2, 2, 3)))


def test_a_key_bias_gradient_that_is_not_zero_fails_the_gradient_check(float64):
    with pytest.raises(AssertionError, match="'k_proj.bias': 'must be zero"):
        assert_gradients_match(KeyProjection(), (randn(3, 4, 3),))


def layer_norm(x, eps):
    return torch.nn.functional.layer_norm(torch.from_numpy(x), x.shape[-1:], eps=eps)


def test_the_torch_tolerance_tells_a_vit_layernorm_eps_from_none():
    """ViTs use eps=1e-6: on a unit-scale input, leaving it out changes the output by 4e-7."""
    x = 2 + 3 * np.random.default_rng(2).standard_normal((4, 3, 6))
    assert_close(layer_norm(x, 1e-6), layer_norm(x, 1e-6), "the same LayerNorm")
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        assert_close(layer_norm(x, 0.0), layer_norm(x, 1e-6), "LayerNorm without eps")


def test_the_torch_tolerance_tells_float32_rounded_weights_from_float64():
    weight = np.random.default_rng(4).standard_normal((5, 6))
    x = np.random.default_rng(5).standard_normal((3, 6))
    rounded = weight.astype(np.float32).astype(np.float64)
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        assert_close(x @ rounded.T, x @ weight.T, "product with float32-rounded weights")
