# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
"""The fast tier computes what the textbook tier computes.

Every replacement in ``cs_vit.fast`` is run next to the textbook code it stands
in for, on the same inputs, parameters and dropout masks (the same seed):
forward and backward, training and eval mode, inside and outside ``no_grad()``,
float64 to 1e-10 and float32 to 1e-5 (relative to the largest value).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import ndtr

from cs_vit import backend, fast, tiers
from cs_vit.fast.cublas import workspace_bytes
from cs_vit.fast.flat import flatten_parameters, shared_buffer
from cs_vit.fast.gelu_float32 import gelu_float32
from cs_vit.fast.reductions import mean_last, sum_leading
from cs_vit.fast.row_blocks import BLOCK_ELEMENTS, row_blocks
from cs_vit.fast.vit import block_backward_first_tokens, block_forward_first_tokens
from cs_vit.layers import (
    GELU, MLP, LayerNorm, Linear, MultiHeadAttention, ReLU, TransformerEncoderBlock, no_grad,
    softmax_cross_entropy,
)
from cs_vit.models import VisionTransformer
from cs_vit.optim import AdamW, clip_grad_norm, make_optimizer
from cs_vit.solvers import ClassificationSolverViT
from tests.fast_checks import assert_close, in_both_tiers, randn, traced_peak
from tests.gradcheck import randomize_parameters

TINY = dict(image_size=8, patch_size=4, in_channels=3, num_classes=5, embed_dim=8, depth=2,
            num_heads=2, mlp_dim=16)
SMALL_SHAPES = settings(max_examples=15, deadline=None)


def assert_tiers_agree(run):
    """``run()`` returns {name: array}; each array is the same in both tiers."""
    fast_result, reference_result = in_both_tiers(run)
    assert fast_result.keys() == reference_result.keys()
    for name in reference_result:
        assert_close(fast_result[name], reference_result[name], name)


def forward_backward(layer, inputs, dout_seed=11, **kwargs):
    """{out, d<input i>, every parameter gradient} of one forward and backward of ``layer``."""
    out = layer.forward(*inputs, **kwargs)
    dout = randn(dout_seed, *out.shape, dtype=out.dtype)
    dinputs = layer.backward(dout)
    dinputs = dinputs if isinstance(dinputs, tuple) else (dinputs,)
    result = {"out": out.copy()}
    result.update({f"dinput{i}": d.copy() for i, d in enumerate(dinputs)})
    result.update({name: grad.copy() for name, _, grad in layer.parameters()})
    return result


def randomized(make_layer, dtype, seed=3):
    """``make_layer()`` built in ``dtype``, every parameter drawn at random (norms too)."""
    with backend.precision(dtype):
        return randomize_parameters(make_layer(), seed)


def test_the_fast_tier_is_on_by_default_and_switches_off():
    with fast.enabled(True):
        assert fast.is_enabled() and tiers.replaced(LayerNorm.forward)
        with fast.enabled(False):
            assert not fast.is_enabled() and not tiers.replaced(LayerNorm.forward)
        assert fast.is_enabled()


def test_replacing_something_not_replaceable_is_refused():
    with pytest.raises(TypeError, match="not marked @replaceable"):
        tiers.replace(print, print)


DTYPES = st.sampled_from([np.float64, np.float32])
ROWS = st.lists(st.integers(1, 5), min_size=1, max_size=3)


@SMALL_SHAPES
@given(leading=ROWS, features=st.integers(1, 9), dtype=DTYPES)
def test_linear(leading, features, dtype):
    layer = randomized(lambda: Linear(features, 4), dtype)
    x = randn(0, *leading, features, dtype=dtype)
    assert_tiers_agree(lambda: forward_backward(layer, (x,)))


@SMALL_SHAPES
@given(leading=ROWS, features=st.integers(1, 40), dtype=DTYPES, scale=st.sampled_from([1e-3, 1, 50]))
def test_layernorm(leading, features, dtype, scale):
    layer = randomized(lambda: LayerNorm(features), dtype)
    x = randn(0, *leading, features, dtype=dtype) * scale
    assert_tiers_agree(lambda: forward_backward(layer, (x,)))


@SMALL_SHAPES
@given(leading=ROWS, dtype=DTYPES, training=st.booleans(), approximate=st.sampled_from(["none", "tanh"]))
def test_gelu(leading, dtype, training, approximate):
    layer = GELU(approximate).train(training)
    x = randn(0, *leading, 6, dtype=dtype) * 3
    assert_tiers_agree(lambda: forward_backward(layer, (x,)))


@SMALL_SHAPES
@given(leading=ROWS, dtype=DTYPES, training=st.booleans(), keeping=st.booleans(),
       dropout=st.sampled_from([0.0, 0.3]), approximate=st.sampled_from(["none", "tanh"]))
def test_mlp(leading, dtype, training, keeping, dropout, approximate):
    """In training, eval and no_grad(), where inference writes GELU over fc1's output."""
    layer = randomized(lambda: MLP(6, 12, dropout), dtype).train(training)
    layer.act.approximate = approximate
    x = randn(0, *leading, 6, dtype=dtype)
    if keeping:
        assert_tiers_agree(lambda: forward_backward(layer, (x,)))
        return

    def infer():
        with no_grad():
            return {"out": layer.forward(x)}
    assert_tiers_agree(infer)


def test_inference_mlp_with_another_activation_runs_that_activation():
    layer = MLP(6, 12).eval()
    layer.act = ReLU()
    x = randn(0, 4, 6, dtype=np.float32)
    with fast.enabled(True), no_grad():
        out = layer.forward(x)
    hidden = np.maximum(x @ layer.fc1.params["weight"].T + layer.fc1.params["bias"], 0)
    expected = hidden @ layer.fc2.params["weight"].T + layer.fc2.params["bias"]
    assert_close(out, expected, "out")


def test_inference_mlp_holds_one_hidden_sized_array():
    """Inside no_grad() GELU overwrites fc1's output: tracemalloc's peak is that array and
    the output (plus GELU's cache-sized blocks), not two hidden-sized arrays."""
    layer = MLP(32, 128).eval()
    x = randn(0, 256, 65, 32, dtype=np.float32)
    hidden_bytes = x.size * 4 * 4
    with fast.enabled(True), no_grad():
        out, peak = traced_peak(lambda: layer.forward(x))
    assert peak < 1.5 * hidden_bytes, (peak, hidden_bytes)
    assert out.shape == x.shape and layer.act.x is None


@SMALL_SHAPES
@given(batch=st.integers(1, 3), queries=st.integers(1, 5), keys=st.integers(1, 5),
       heads=st.sampled_from([1, 2, 4]), inputs=st.sampled_from(["self", "key", "key_value"]),
       masked=st.booleans(), dropout=st.sampled_from([0.0, 0.3]), training=st.booleans(),
       dtype=DTYPES)
def test_attention(batch, queries, keys, heads, inputs, masked, dropout, training, dtype):
    layer = randomized(lambda: MultiHeadAttention(8, heads, dropout=dropout), dtype).train(training)
    keys = queries if inputs == "self" else keys
    query, key, value = (randn(i, batch, n, 8, dtype=dtype) for i, n in
                         enumerate((queries, keys, keys)))
    args = {"self": (query,), "key": (query, key), "key_value": (query, key, value)}[inputs]
    mask = (np.random.default_rng(5).random((batch, queries, keys)) > 0.3) if masked else None

    def run():
        result = forward_backward(layer, args, attn_mask=mask)
        result["attn_weights"] = layer.attn_weights.copy()
        return result
    assert_tiers_agree(run)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_attention_self_and_cross_paths_of_the_fast_tier_agree(dtype):
    """The fused q/k/v product (self-attention) equals three separate projections."""
    layer = randomized(lambda: MultiHeadAttention(8, 2), dtype)
    x = randn(0, 2, 5, 8, dtype=dtype)
    with fast.enabled(True):
        fused = forward_backward(layer, (x,))
        separate = forward_backward(layer, (x, x, x))
    separate["dinput0"] = separate.pop("dinput0") + separate.pop("dinput1") + separate.pop("dinput2")
    for name in fused:
        assert_close(fused[name], separate[name], name)


VIT_CONFIGS = {
    "cls_learned": {},
    "mean_sincos2d": dict(pool="mean", pos_encoding="sincos2d"),
    "cls_dropout": dict(dropout=0.2, attention_dropout=0.1, pos_encoding="sincos1d"),
}


@pytest.mark.parametrize("config", VIT_CONFIGS)
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vision_transformer(config, mode, dtype):
    model = randomized(lambda: VisionTransformer(**TINY, **VIT_CONFIGS[config]), dtype)
    model.train(mode == "train")
    images = randn(0, 3, 3, 8, 8, dtype=dtype)
    assert_tiers_agree(lambda: forward_backward(model, (images,)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vision_transformer_under_no_grad(dtype):
    model = randomized(lambda: VisionTransformer(**TINY), dtype).eval()
    images = randn(0, 3, 3, 8, 8, dtype=dtype)

    def run():
        with no_grad():
            return {"logits": model.forward(images)}
    assert_tiers_agree(run)


def test_last_block_computes_the_cls_row_alone_only_when_nothing_else_is_read():
    model = VisionTransformer(**TINY)
    images = randn(0, 2, 3, 8, 8, dtype=np.float32)
    with fast.enabled(True):
        model.forward(images)  # training: the last block attends from the CLS token only
        assert model.attention_weights()[-1].shape == (2, 2, 1, 5)
        model.eval().forward(images)  # eval outside no_grad: full maps for visualisation
        assert model.attention_weights()[-1].shape == (2, 2, 5, 5)


@pytest.mark.parametrize("first_tokens", [1, 2])
def test_block_first_tokens_are_the_first_rows_of_the_full_block(float64, first_tokens):
    block = randomized(lambda: TransformerEncoderBlock(8, 2, 16), np.float64)
    x, dout = randn(0, 2, 5, 8), randn(1, 2, first_tokens, 8)
    full = block.forward(x)
    dfull = np.zeros_like(full)
    dfull[:, :first_tokens] = dout
    expected_dx = block.backward(dfull)
    expected_grads = {name: grad.copy() for name, _, grad in block.parameters()}
    with fast.enabled(True):
        first = block_forward_first_tokens(block, x, first_tokens)
        dx = block_backward_first_tokens(block, dout, first_tokens)
    assert_close(first, full[:, :first_tokens], "out")
    assert_close(dx, expected_dx, "dx")
    for name, _, grad in block.parameters():
        assert_close(grad, expected_grads[name], name)


OPTIMIZER_CONFIGS = {
    "sgd": ("sgd", dict(weight_decay=0.1)),
    "sgd_nesterov": ("sgd", dict(momentum=0.8, nesterov=True, weight_decay=0.1)),
    "adam": ("adam", dict(weight_decay=0.1)),
    "adamw": ("adamw", dict(weight_decay=0.2)),
    "adamw_decay_everything": ("adamw", dict(weight_decay=0.2, no_decay=None)),
}


@pytest.mark.parametrize("config", OPTIMIZER_CONFIGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_optimizer_step_and_state(config, dtype):
    name, options = OPTIMIZER_CONFIGS[config]
    initial = randomized(lambda: VisionTransformer(**TINY), dtype).state_dict()
    rng_grads = [randn(20 + step, 1, dtype=dtype) for step in range(3)]

    def run():
        with backend.precision(dtype):
            model = VisionTransformer(**TINY)
        model.load_state_dict(initial)
        optimizer = make_optimizer(name, model, 0.05, **options)
        for step, scale in enumerate(rng_grads):
            for i, (_, _, grad) in enumerate(model.parameters()):
                grad[...] = randn(100 * step + i, *grad.shape, dtype=dtype) * scale
            optimizer.lr = 0.05 * (1 - 0.2 * step)
            optimizer.step()
        result = {f"param/{n}": v.copy() for n, v, _ in model.parameters()}
        state = optimizer.state_dict()
        result["step"] = np.asarray(state.pop("step") * 1.0 + state.pop("lr"), dtype=dtype)
        result.update({f"state/{k}": v for k, v in state.items()})
        return result
    assert_tiers_agree(run)


def test_fast_optimizer_lays_the_parameters_out_in_two_buffers():
    model = VisionTransformer(**TINY)
    values = {name: value.copy() for name, value, _ in model.parameters()}
    with fast.enabled(True):
        optimizer = make_optimizer("adamw", model, 0.01)
    params = list(model.parameters())
    assert shared_buffer([value for _, value, _ in params]) is optimizer.flat.values
    assert shared_buffer([grad for _, _, grad in params]) is optimizer.flat.grads
    for name, value, _ in params:
        np.testing.assert_array_equal(value, values[name])


MID_VIT = dict(TINY, embed_dim=64, mlp_dim=128)


def test_fast_optimizer_state_is_one_flat_buffer_per_state():
    model = VisionTransformer(**MID_VIT)
    with fast.enabled(True):
        optimizer = make_optimizer("adamw", model, 0.01)
    assert set(optimizer.flat_state) == {"exp_avg", "exp_avg_sq"}
    for buffer, arrays in optimizer.state.items():
        flat = optimizer.flat_state[buffer]
        assert flat.shape == optimizer.flat.values.shape and not flat.any()
        assert shared_buffer(list(arrays.values())) is flat
        for name, value, _ in model.parameters():
            assert arrays[name].shape == value.shape


def test_fast_optimizer_makes_its_state_once_and_scratch_only_at_its_first_step():
    model = VisionTransformer(**MID_VIT)
    with fast.enabled(True):
        optimizer, peak = traced_peak(lambda: make_optimizer("adamw", model, 0.01))
        # Two parameter-sized buffers (values, gradients) and one per state; no per-parameter
        # state made first and thrown away, no scratch space before the first step.
        assert peak < (2 + len(optimizer.buffers) + 0.5) * optimizer.flat.values.nbytes
        assert optimizer.flat_scratch is None
        optimizer.step()
    assert set(optimizer.flat_scratch) == {"scratch", "denom"}


def test_fast_optimizer_state_over_parameters_that_do_not_tile_a_buffer_is_per_parameter():
    model = VisionTransformer(**TINY)
    params = [(name, value, grad) for name, value, grad in model.parameters()][1::2]
    with fast.enabled(True):
        optimizer = AdamW(params, lr=0.01)
    for arrays in optimizer.state.values():
        assert shared_buffer(list(arrays.values())) is None
        for name, value, _ in params:
            assert arrays[name].shape == value.shape and not arrays[name].any()


@pytest.mark.parametrize("capability, mib", [("75", 4), ("80", 4), ("89", 4), ("90", 32),
                                              ("100", 32)])
def test_cublas_workspace_is_cublas_recommended_size(capability, mib):
    assert workspace_bytes(capability) == mib * 2**20


@pytest.mark.parametrize("max_norm", [0.5, 1e6, math.inf])
def test_clip_grad_norm(max_norm):
    model = VisionTransformer(**TINY)
    with fast.enabled(True):
        make_optimizer("sgd", model, 0.1)  # flat gradients
    for i, (_, _, grad) in enumerate(model.parameters()):
        grad[...] = randn(i, *grad.shape, dtype=np.float32)
    initial = {name: grad.copy() for name, _, grad in model.parameters()}

    def run():
        for name, _, grad in model.parameters():
            grad[...] = initial[name]
        norm = clip_grad_norm(model.parameters(), max_norm)
        return {"norm": np.float32(norm), **{n: g.copy() for n, _, g in model.parameters()}}
    assert_tiers_agree(run)


def test_shared_buffer_rejects_arrays_that_do_not_tile_one_buffer_in_order():
    flat = np.zeros(10)
    a, b = flat[:4].reshape(2, 2), flat[4:]
    assert shared_buffer([a, b]) is flat
    assert shared_buffer([b, a]) is None
    assert shared_buffer([a]) is None
    assert shared_buffer([np.zeros(4), np.zeros(6)]) is None
    assert shared_buffer([]) is None


def test_flatten_parameters_keeps_values_and_grads():
    model = VisionTransformer(**TINY)
    before = {name: (value.copy(), grad + 1.0) for name, value, grad in model.parameters()}
    for name, _, grad in model.parameters():
        grad[...] = before[name][1]
    flat = flatten_parameters(model)
    assert flat.values.size == sum(value.size for _, value, _ in model.parameters())
    for name, value, grad in model.parameters():
        np.testing.assert_array_equal(value, before[name][0])
        np.testing.assert_array_equal(grad, before[name][1])


def test_solver_trains_the_same_in_both_tiers():
    from cs_vit.data import load_digits
    train, test = load_digits()
    config = dict(image_size=8, patch_size=4, in_channels=1, num_classes=10, embed_dim=16,
                  depth=2, num_heads=2, mlp_dim=32)

    def run():
        backend.seed(0)
        model = VisionTransformer(**config)
        solver = ClassificationSolverViT(train, test, model, num_epochs=1, learning_rate=3e-3,
                                         weight_decay=0.05, batch_size=64, verbose=False,
                                         grad_clip=1.0, warmup_epochs=0.5)
        results = solver.train("cpu")
        return {"loss": np.asarray(results["loss_history"], dtype=np.float32),
                **{n: v.copy() for n, v, _ in model.parameters()}}
    fast_result, reference_result = in_both_tiers(run)
    np.testing.assert_allclose(fast_result["loss"], reference_result["loss"], rtol=1e-3)


def test_a_float32_training_step_never_upcasts_to_float64():
    model = VisionTransformer(**TINY)
    x, labels = randn(0, 2, 3, 8, 8, dtype=np.float32), np.array([1, 3])
    with fast.enabled(True):
        optimizer = make_optimizer("adamw", model, lr=0.01, weight_decay=0.1)
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


def exact_gelu(x):
    """gelu(x) and gelu'(x) in float64 from SciPy's normal CDF."""
    x = x.astype(np.float64)
    cdf, pdf = ndtr(x), np.exp(-x**2 / 2) / math.sqrt(2 * math.pi)
    return x * cdf, cdf + x * pdf


def test_float32_gelu_is_within_3e_7_of_the_exact_gelu_everywhere():
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.0, -0.0, 40.0, -40.0]]).astype(np.float32)
    out, dgelu = gelu_float32(x)
    expected_out, expected_dgelu = exact_gelu(x)
    scale = np.maximum(1.0, np.abs(x))
    assert out.dtype == dgelu.dtype == np.float32
    assert np.max(np.abs(out - expected_out) / scale) <= 3e-7
    assert np.max(np.abs(dgelu - expected_dgelu) / scale) <= 3e-7
    assert gelu_float32(x[:5], derivative=False)[1] is None


def test_float32_gelu_handles_blocks_and_non_finite_values():
    x = randn(1, 70_001, dtype=np.float32)  # several blocks and a partial one
    x[:3] = [np.inf, -np.inf, np.nan]
    with np.errstate(invalid="ignore"):
        out, _ = gelu_float32(x)
    np.testing.assert_array_equal(out[:3], [np.inf, np.nan, np.nan])  # as x * Phi(x)
    np.testing.assert_allclose(out[3:], exact_gelu(x[3:])[0], atol=1e-6)


def test_float32_gelu_writes_over_its_input_when_asked():
    x = randn(2, 3, 70_001, dtype=np.float32)  # several blocks
    expected = gelu_float32(x, derivative=False)[0]
    out, dgelu = gelu_float32(x, derivative=False, out=x)
    assert out.base is x and dgelu is None
    np.testing.assert_array_equal(x, expected)
    with pytest.raises(ValueError, match="without the derivative"):
        gelu_float32(x, derivative=True, out=x)
    with pytest.raises(ValueError, match="C-contiguous array of x's shape"):
        gelu_float32(x[:, ::2], derivative=False, out=x[:, ::2])


@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 3, 7)])
def test_blas_reductions_equal_numpy_reductions(shape):
    x = randn(0, *shape)
    np.testing.assert_allclose(mean_last(x), x.mean(axis=-1, keepdims=True), rtol=1e-13, atol=1e-15)
    leading = tuple(range(x.ndim - 1))
    np.testing.assert_allclose(sum_leading(x), x.sum(axis=leading), rtol=1e-13, atol=1e-15)
    assert mean_last(x.astype(np.float32)).dtype == sum_leading(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("shape", [(5,), (70_000,), (3000, 128), (10, 100_000), (0, 4)])
def test_row_blocks_cover_every_row_in_order_within_the_block_size(shape):
    array = np.empty(shape, dtype=np.float32)
    blocks = row_blocks(array)
    covered = [i for block in blocks for i in range(*block.indices(shape[0]))]
    assert covered == list(range(shape[0]))
    row_size = math.prod(shape[1:])
    assert all(array[block].size <= max(BLOCK_ELEMENTS, row_size) for block in blocks)


def test_layernorm_in_many_row_blocks_equals_the_textbook_layer(float64, monkeypatch):
    import cs_vit.fast.row_blocks as blocking
    monkeypatch.setattr(blocking, "BLOCK_ELEMENTS", 16 * 4)  # blocks of 4 rows
    layer = randomized(lambda: LayerNorm(16), np.float64)
    x = randn(0, 7, 9, 16)
    assert_tiers_agree(lambda: forward_backward(layer, (x,)))


def test_fused_optimizer_update_covers_buffers_larger_than_one_block(monkeypatch):
    import cs_vit.fast.row_blocks as blocking
    monkeypatch.setattr(blocking, "BLOCK_ELEMENTS", 100)
    test_optimizer_step_and_state("adamw", np.float64)
