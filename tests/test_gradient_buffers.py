"""Gradient buffers: made when first used (as torch's ``.grad``), then kept and written into."""
import copy
import pickle

import numpy as np
import pytest

from cs_vit.layers import Linear, no_grad
from cs_vit.models import VisionTransformer
from cs_vit.optim import make_optimizer
from tests.test_no_grad import TINY


def gradient_buffers_made(model):
    """How many gradient buffers exist below ``model`` (reading ``parameters()`` makes them)."""
    layers = {id(layer): layer for _, layer, _ in model._parameter_slots()}
    return sum(len(layer.grads) for layer in layers.values())


@pytest.mark.task7
def test_a_model_used_for_inference_only_holds_no_gradient_buffer():
    model = VisionTransformer(**TINY).eval()
    with no_grad():
        model.forward(np.zeros((2, 3, 8, 8), np.float32))
    model.forward(np.zeros((2, 3, 8, 8), np.float32))  # keeping caches still makes none
    assert gradient_buffers_made(model) == 0


def test_reading_a_gradient_makes_a_zeroed_buffer_of_its_parameters_shape_and_dtype():
    layer = Linear(3, 4)
    grad = layer.grads["weight"]
    assert grad.shape == (4, 3) and grad.dtype == layer.params["weight"].dtype
    assert not grad.any()
    assert layer.grads["weight"] is grad  # made once, then kept
    with pytest.raises(KeyError, match="no parameter 'weights'.*'weight', 'bias'"):
        layer.grads["weights"]
    layer.to_active_backend()  # a parameter moved: its new buffer is made where it lives
    assert len(layer.grads) == 0


def test_the_first_gradient_is_copied_into_a_buffer_and_its_shape_checked():
    layer = Linear(3, 4)
    dweight = np.ones((4, 3), np.float32)
    layer.grads["weight"] = dweight
    assert layer.grads["weight"] is not dweight  # the layer's own buffer
    np.testing.assert_array_equal(layer.grads["weight"], dweight)
    with pytest.raises(ValueError, match=r"gradient 'bias' has shape \(3,\), but the parameter "
                                         r"has shape \(4,\)"):
        layer.grads["bias"] = np.ones(3, np.float32)


def test_an_optimizer_keeps_reading_the_buffers_that_backward_writes():
    layer = Linear(3, 4)
    optimizer = make_optimizer("sgd", layer, 0.1)
    held = [grad for _, _, grad in layer.parameters()]
    assert len(layer.grads) == 2  # made for the optimizer
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    layer.backward(np.ones_like(layer.forward(x)))
    assert all(a is b for a, (_, _, b) in zip(held, layer.parameters()))
    np.testing.assert_allclose(held[1], np.full(4, 5.0))  # the bias gradient: dout summed
    weight = layer.params["weight"].copy()
    optimizer.step()
    np.testing.assert_allclose(layer.params["weight"], weight - 0.1 * held[0], rtol=1e-6)


@pytest.mark.parametrize("duplicate", [pickle.loads, copy.deepcopy], ids=["pickle", "deepcopy"])
def test_a_layer_with_gradient_buffers_survives_pickle_and_deepcopy(duplicate):
    layer = Linear(3, 4)
    layer.grads["weight"] = np.full((4, 3), 2.0, np.float32)
    twin = duplicate(pickle.dumps(layer)) if duplicate is pickle.loads else duplicate(layer)
    np.testing.assert_array_equal(twin.grads["weight"], layer.grads["weight"])
    assert twin.grads["weight"] is not layer.grads["weight"]
    assert "bias" not in twin.grads  # still made when first used, from the twin's bias
    assert twin.grads["bias"].shape == (4,) and not twin.grads["bias"].any()
