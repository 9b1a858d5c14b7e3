"""Every fast path equals the plain computation it replaces.

The float32 GELU, the fused q/k/v projection, the flat parameter layout and the
fused optimizer update are there for speed only; these tests pin them to the
readable versions kept next to them.
"""
import math

import numpy as np
import pytest
from scipy.special import ndtr

from cs_vit.layers import GELU, LayerNorm, Linear, MultiHeadAttention, softmax_cross_entropy
from cs_vit.layers.activations import normal_cdf, normal_pdf
from cs_vit.layers.fast_gelu import gelu_float32
from cs_vit.layers.base import shared_buffer
from cs_vit.layers.reductions import mean_last, sum_leading
from cs_vit.layers.row_blocks import BLOCK_ELEMENTS, row_blocks
from cs_vit.models import VisionTransformer
from cs_vit.optim import SGD, Adam, AdamW, clip_grad_norm
from tests.gradcheck import max_abs_diff

TINY = dict(image_size=8, patch_size=4, in_channels=3, num_classes=5, embed_dim=8, depth=2,
            num_heads=2, mlp_dim=16)


def randn(seed, *shape, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def gelu_reference(x):
    """gelu(x) and gelu'(x) in float64 from SciPy's normal CDF."""
    x = x.astype(np.float64)
    cdf, pdf = ndtr(x), np.exp(-x**2 / 2) / math.sqrt(2 * math.pi)
    return x * cdf, cdf + x * pdf


def test_float32_gelu_is_within_3e_7_of_the_exact_gelu_everywhere():
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.0, -0.0, 40.0, -40.0]]).astype(np.float32)
    out, dgelu = gelu_float32(x)
    expected_out, expected_dgelu = gelu_reference(x)
    scale = np.maximum(1.0, np.abs(x))
    assert out.dtype == dgelu.dtype == np.float32
    assert np.max(np.abs(out - expected_out) / scale) <= 3e-7
    assert np.max(np.abs(dgelu - expected_dgelu) / scale) <= 3e-7


def test_float32_gelu_matches_the_plain_formula_on_any_shape():
    x = 3 * randn(0, 4, 5, 3, dtype=np.float32)
    out, dgelu = gelu_float32(x)
    cdf = normal_cdf(x)
    np.testing.assert_allclose(out, x * cdf, atol=1e-6)
    np.testing.assert_allclose(dgelu, cdf + x * normal_pdf(x), atol=1e-6)
    assert gelu_float32(x, derivative=False)[1] is None


def test_float32_gelu_handles_blocks_and_non_finite_values():
    x = randn(1, 70_001, dtype=np.float32)  # several blocks and a partial one
    x[:3] = [np.inf, -np.inf, np.nan]
    with np.errstate(invalid="ignore"):
        out, _ = gelu_float32(x)
        plain = x[:3] * normal_cdf(x[:3])
    np.testing.assert_array_equal(out[:3], plain)  # inf, nan (-inf * 0), nan: as the plain GELU
    np.testing.assert_allclose(out[3:], gelu_reference(x[3:])[0], atol=1e-6)


@pytest.mark.task4
def test_gelu_layer_backward_in_eval_mode_equals_training_mode():
    x = randn(2, 3, 4, 5, dtype=np.float32)
    dout = randn(3, 3, 4, 5, dtype=np.float32)
    layer = GELU()
    layer.forward(x)
    trained = layer.backward(dout)
    layer.eval().forward(x)
    np.testing.assert_array_equal(layer.backward(dout), trained)


@pytest.mark.task5
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_qkv_self_attention_equals_three_separate_projections(dtype):
    layer = MultiHeadAttention(8, 2)
    for _, value, _ in layer.parameters():
        value[...] = value.astype(dtype)
    x = randn(0, 2, 5, 8, dtype=dtype)
    dout = randn(1, 2, 5, 8, dtype=dtype)
    fused_out = layer.forward(x)  # key=None: the fused path
    fused_dx = layer.backward(dout)
    fused_grads = {name: grad.copy() for name, _, grad in layer.parameters()}
    plain_out = layer.forward(x, x, x)  # key and value given: the separate projections
    plain_dx = sum(layer.backward(dout))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert max_abs_diff(fused_out, plain_out) <= tol
    assert max_abs_diff(fused_dx, plain_dx) <= tol
    for name, _, grad in layer.parameters():
        assert max_abs_diff(fused_grads[name], grad) <= tol, name


def test_flatten_parameters_keeps_values_and_grads_as_views_of_two_buffers():
    model = VisionTransformer(**TINY)
    before = {name: (value.copy(), grad + 1.0) for name, value, grad in model.parameters()}
    for name, _, grad in model.parameters():
        grad[...] = before[name][1]
    flat_params, flat_grads = model.flatten_parameters()
    params = list(model.parameters())
    assert shared_buffer([value for _, value, _ in params]) is flat_params
    assert shared_buffer([grad for _, _, grad in params]) is flat_grads
    assert flat_params.size == sum(value.size for _, value, _ in params)
    for name, value, grad in params:
        np.testing.assert_array_equal(value, before[name][0])
        np.testing.assert_array_equal(grad, before[name][1])


def test_shared_buffer_rejects_arrays_that_do_not_tile_one_buffer_in_order():
    flat = np.zeros(10)
    a, b = flat[:4].reshape(2, 2), flat[4:]
    assert shared_buffer([a, b]) is flat
    assert shared_buffer([b, a]) is None
    assert shared_buffer([a]) is None
    assert shared_buffer([np.zeros(4), np.zeros(6)]) is None
    assert shared_buffer([]) is None


@pytest.mark.task7
def test_flattened_model_trains_exactly_like_the_unflattened_one():
    x, labels = randn(0, 3, 3, 8, 8, dtype=np.float32), np.array([0, 4, 2])
    initial = VisionTransformer(**TINY).state_dict()
    trained = []
    for flatten in (False, True):
        model = VisionTransformer(**TINY)
        model.load_state_dict(initial)
        if flatten:
            model.flatten_parameters()
        optimizer = AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
        assert optimizer.fused == flatten
        for _ in range(3):
            _, dlogits = softmax_cross_entropy(model.forward(x), labels)
            model.backward(dlogits, input_grad=False)
            optimizer.step()
        trained.append(model.state_dict())
    for name, value in trained[0].items():
        np.testing.assert_array_equal(trained[1][name], value, err_msg=name)


OPTIMIZERS = {
    "sgd_nesterov_decay": (SGD, dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.1)),
    "adam_decay": (Adam, dict(lr=0.01, weight_decay=0.1)),
    "adamw": (AdamW, dict(lr=0.01, weight_decay=0.2)),
    "adamw_decay_everything": (AdamW, dict(lr=0.01, weight_decay=0.2, no_decay=None)),
}


@pytest.mark.parametrize("config", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_update_equals_per_parameter_update_bit_for_bit(config, dtype):
    cls, kwargs = OPTIMIZERS[config]
    layers = [Linear(4, 3), Linear(3, 2, bias=False), Linear(2, 2)]
    separate = _param_triples(layers, dtype, seed=0)
    flat = _flat_triples(separate)
    plain, fused = cls(separate, **kwargs), cls(flat, **kwargs)
    assert not plain.fused and fused.fused
    rng = np.random.default_rng(1)
    for step in range(4):
        for (_, _, g1), (_, _, g2) in zip(separate, flat):
            g1[...] = g2[...] = rng.standard_normal(g1.shape)
        plain.lr = fused.lr = kwargs["lr"] * (1 - 0.2 * step)
        plain.step()
        fused.step()
    for (name, v1, _), (_, v2, _) in zip(separate, flat):
        assert v2.dtype == dtype
        np.testing.assert_array_equal(v1, v2, err_msg=name)
    for key, value in plain.state_dict().items():
        np.testing.assert_array_equal(fused.state_dict()[key], value, err_msg=key)


def _param_triples(layers, dtype, seed):
    rng = np.random.default_rng(seed)
    return [(f"layer{i}.{key}", rng.standard_normal(value.shape).astype(dtype),
             np.zeros(value.shape, dtype))
            for i, layer in enumerate(layers) for key, value in layer.params.items()]


def _flat_triples(triples):
    """Copies of ``triples`` laid out as flatten_parameters lays them out."""
    total = sum(value.size for _, value, _ in triples)
    values, grads = np.empty(total, triples[0][1].dtype), np.zeros(total, triples[0][1].dtype)
    out, offset = [], 0
    for name, value, _ in triples:
        span = slice(offset, offset + value.size)
        offset += value.size
        values[span] = value.ravel()
        out.append((name, values[span].reshape(value.shape), grads[span].reshape(value.shape)))
    return out


def test_clip_grad_norm_of_flat_gradients_equals_the_per_parameter_one():
    separate = _param_triples([Linear(5, 4), Linear(4, 3)], np.float64, seed=0)
    for i, (_, _, grad) in enumerate(separate):
        grad[...] = randn(i, *grad.shape)
    flat = _flat_triples(separate)
    for (_, _, g1), (_, _, g2) in zip(separate, flat):
        g2[...] = g1
    assert clip_grad_norm(flat, 0.5) == pytest.approx(clip_grad_norm(separate, 0.5), rel=1e-12)
    for (_, _, g1), (_, _, g2) in zip(separate, flat):
        np.testing.assert_allclose(g2, g1, rtol=1e-12)


@pytest.mark.task7
def test_model_backward_without_input_grad_fills_the_same_parameter_grads():
    model = VisionTransformer(**TINY)
    x, dlogits = randn(0, 2, 3, 8, 8), randn(1, 2, 5)
    model.forward(x)
    dx = model.backward(dlogits)
    expected = {name: grad.copy() for name, _, grad in model.parameters()}
    model.forward(x)
    assert dx.shape == x.shape and model.backward(dlogits, input_grad=False) is None
    for name, _, grad in model.parameters():
        np.testing.assert_array_equal(grad, expected[name], err_msg=name)


@pytest.mark.task7
def test_last_block_for_the_cls_token_alone_gives_the_full_models_logits_and_grads():
    model = VisionTransformer(**TINY)
    x, dlogits = randn(0, 2, 3, 8, 8), randn(1, 2, 5)
    logits = model.forward(x)  # training mode: the last block computes the CLS row only
    assert model.blocks[-1].first_tokens == 1
    assert model.attention_weights()[-1].shape == (2, 2, 1, 5)
    dx = model.backward(dlogits)
    pruned = {name: grad.copy() for name, _, grad in model.parameters()}
    model.eval()  # eval mode outside no_grad runs the whole last block, for attention maps
    full_logits = model.forward(x)
    assert model.blocks[-1].first_tokens is None
    assert model.attention_weights()[-1].shape == (2, 2, 5, 5)
    np.testing.assert_allclose(full_logits, logits, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(model.backward(dlogits), dx, rtol=1e-10, atol=1e-13)
    for name, _, grad in model.parameters():
        np.testing.assert_allclose(grad, pruned[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_linear_backward_without_input_grad_returns_none_and_fills_grads():
    layer = Linear(3, 2)
    layer.forward(randn(0, 4, 3))
    assert layer.backward(randn(1, 4, 2), input_grad=False) is None
    assert np.any(layer.grads["weight"] != 0)


@pytest.mark.task7
def test_a_float32_training_step_never_upcasts_to_float64():
    model = VisionTransformer(**TINY)
    model.flatten_parameters()
    optimizer = AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    x, labels = randn(0, 2, 3, 8, 8, dtype=np.float32), np.array([1, 3])
    logits = model.forward(x)
    _, dlogits = softmax_cross_entropy(logits, labels)
    model.backward(dlogits, input_grad=False)
    optimizer.step()
    arrays = [logits, dlogits] + [a for _, value, grad in model.parameters() for a in (value, grad)]
    arrays += [a for bufs in optimizer.state.values() for a in bufs.values()]
    for layer in [model, *_walk(model)]:
        for value in vars(layer).values():
            arrays += [v for v in (value if isinstance(value, tuple) else (value,))
                       if hasattr(v, "dtype") and v.dtype.kind == "f"]
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}


def _walk(layer):
    for _, child in layer.children():
        yield child
        yield from _walk(child)


@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 3, 7)])
def test_blas_reductions_equal_numpy_reductions(shape):
    x = randn(0, *shape)
    np.testing.assert_allclose(mean_last(x), x.mean(axis=-1, keepdims=True), rtol=1e-13, atol=1e-15)
    leading = tuple(range(x.ndim - 1))
    np.testing.assert_allclose(sum_leading(x), x.sum(axis=leading), rtol=1e-13, atol=1e-15)
    assert mean_last(x.astype(np.float32)).dtype == sum_leading(x.astype(np.float32)).dtype == np.float32


def test_fused_optimizer_update_covers_buffers_larger_than_one_block():
    separate = [("big", randn(0, 70_000), np.zeros(70_000)), ("small", randn(1, 5), np.zeros(5))]
    flat = _flat_triples(separate)
    plain, fused = AdamW(separate, lr=0.1), AdamW(flat, lr=0.1)
    for (_, _, g1), (_, _, g2) in zip(separate, flat):
        g1[...] = g2[...] = 1.0
    plain.step()
    fused.step()
    for (_, v1, _), (_, v2, _) in zip(separate, flat):
        np.testing.assert_array_equal(v1, v2)


@pytest.mark.parametrize("shape", [(5,), (70_000,), (3000, 128), (10, 100_000), (0, 4)])
def test_row_blocks_cover_every_row_in_order_within_the_block_size(shape):
    array = np.empty(shape, dtype=np.float32)
    blocks = row_blocks(array)
    covered = [i for block in blocks for i in range(*block.indices(shape[0]))]
    assert covered == list(range(shape[0]))
    row_size = math.prod(shape[1:])
    assert all(array[block].size <= max(BLOCK_ELEMENTS, row_size) for block in blocks)


@pytest.mark.task3
def test_layernorm_in_row_blocks_equals_one_block(float64, monkeypatch):
    import cs_vit.layers.row_blocks as blocking
    x, dout = randn(0, 7, 9, 16), randn(1, 7, 9, 16)
    results = []
    for block_elements in (16 * 4, 10**9):  # blocks of 4 rows, then one block
        monkeypatch.setattr(blocking, "BLOCK_ELEMENTS", block_elements)
        layer = LayerNorm(16)
        layer.params["weight"][...] = randn(2, 16)
        out = layer.forward(x)
        results.append((out, layer.backward(dout), layer.grads["weight"].copy(),
                        layer.grads["bias"].copy()))
    for blocked, whole in zip(*results):
        np.testing.assert_allclose(blocked, whole, rtol=1e-12, atol=1e-13)
