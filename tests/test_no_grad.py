"""no_grad(): forward passes that keep nothing for backward, as torch.no_grad()."""
import numpy as np
import pytest

from cs_vit.layers import no_grad
from cs_vit.layers.base import keeping
from cs_vit.models import VisionTransformer

TINY = dict(image_size=8, patch_size=4, in_channels=3, num_classes=5, embed_dim=8, depth=2,
            num_heads=2, mlp_dim=16)


def cached_arrays(model):
    """Every array a layer of ``model`` holds outside its params and grads."""
    layers = [model] + [child for _, child in _walk(model)]
    found = []
    for layer in layers:
        for name, value in vars(layer).items():
            values = value if isinstance(value, tuple) else (value,)
            found += [(type(layer).__name__, name) for v in values
                      if hasattr(v, "shape") and hasattr(v, "dtype") and name != "table"]
    return found


def _walk(layer):
    for name, child in layer.children():
        yield name, child
        yield from _walk(child)


@pytest.mark.task7
def test_no_grad_forward_gives_the_same_logits_and_keeps_no_caches():
    model = VisionTransformer(**TINY).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with no_grad():
        logits = model.forward(x)
        assert not keeping()
    assert keeping()
    assert cached_arrays(model) == []
    assert model.attention_weights() == [None, None]
    # Outside no_grad the eval-mode forward runs the whole last block (for attention maps),
    # not the CLS row alone: the same logits up to float32 rounding.
    np.testing.assert_allclose(logits, model.forward(x), rtol=1e-5, atol=1e-6)
    assert cached_arrays(model)


@pytest.mark.task7
def test_training_mode_forward_under_no_grad_keeps_nothing_either():
    model = VisionTransformer(**TINY, dropout=0.1)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with no_grad():
        model.forward(x)
    assert cached_arrays(model) == []
