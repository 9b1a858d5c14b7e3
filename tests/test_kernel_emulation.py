# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
"""The fast tier's one-thread-per-item GPU kernels, run on the CPU (``kernel_emulation``).

Each kernel's CUDA source, compiled as C++, must give the textbook formula's numbers:
the streamed attention of inference, the softmax over the keys and its backward, the
loss. With the kernels standing in for the GPU's, the fast attention layer must equal
the textbook layer, in training and inside ``no_grad()``, where it must hold no array
the size of the scores; a whole ViT's inference on that path must hold at most six
token-sized arrays at once. Skipped without a C++ compiler.
"""
import numpy as np
import pytest

from cs_vit import backend, fast
from cs_vit.fast import attention, cuda_kernels, row_blocks
from cs_vit.layers import MultiHeadAttention, no_grad
from cs_vit.models import VisionTransformer
from tests.fast_checks import (
    assert_close, check_loss_kernel, check_softmax_kernels, in_both_tiers, randn, traced_peak,
)
from tests.kernel_emulation import compiler, emulated_kernel

pytestmark = pytest.mark.skipif(compiler() is None, reason="needs a C++ compiler")


@pytest.fixture
def kernels_on_the_cpu(monkeypatch):
    """cuda_kernels launches the emulated kernels, on NumPy arrays."""
    monkeypatch.setattr(cuda_kernels, "_raw_kernel", emulated_kernel)


def attention_formula(q, k, v):
    """softmax(q k^T) v in float64, as (N, S, num_heads, Dh)."""
    scores = q.astype(np.float64) @ k.astype(np.float64).transpose(0, 1, 3, 2)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return (weights @ v.astype(np.float64)).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_streamed_attention_kernel_reads_views_of_a_fused_projection(kernels_on_the_cpu, dtype):
    N, T, heads, head_dim = 3, 7, 2, 8
    qkv = randn(0, N, T, 3, heads, head_dim, dtype=dtype) * 2  # a fused projection's layout
    q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # views, (N, heads, T, Dh) each
    context = cuda_kernels.attention_context(q, k, v)
    assert_close(context, attention_formula(q, k, v).astype(dtype), "context")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_streamed_attention_kernel_with_fewer_queries_than_keys(kernels_on_the_cpu, dtype):
    q = randn(0, 2, 4, 1, 16, dtype=dtype)  # the CLS row's queries alone
    k, v = randn(1, 2, 4, 9, 16, dtype=dtype), randn(2, 2, 4, 9, 16, dtype=dtype)
    context = cuda_kernels.attention_context(q, k, v)
    assert context.shape == (2, 1, 4, 16)
    assert_close(context, attention_formula(q, k, v).astype(dtype), "context")


def test_streamed_attention_kernel_reads_q_k_v_each_in_its_own_layout(kernels_on_the_cpu):
    q = randn(0, 2, 3, 5, 16)[..., ::2]  # every other feature: a strided last axis
    k = randn(1, 2, 3, 7, 8)  # contiguous
    v = randn(2, 2, 7, 3, 8).transpose(0, 2, 1, 3)  # split heads: tokens outermost
    assert_close(cuda_kernels.attention_context(q, k, v), attention_formula(q, k, v), "context")


def test_streamed_attention_kernel_on_an_empty_batch_launches_nothing(kernels_on_the_cpu):
    empty = np.zeros((0, 2, 5, 8))
    assert cuda_kernels.attention_context(empty, empty, empty).shape == (0, 5, 2, 8)


def test_streamed_attention_kernel_refuses_mismatched_keys_and_values(kernels_on_the_cpu):
    q, k = randn(0, 2, 3, 5, 8), randn(1, 2, 3, 7, 8)
    with pytest.raises(ValueError, match="k and v of shape"):
        cuda_kernels.attention_context(q, k, k[:, :, :6])
    with pytest.raises(TypeError, match="one dtype"):
        cuda_kernels.attention_context(q, k, k.astype(np.float32))


@pytest.mark.parametrize("scores", [(-1e4, 0, 1e4), (-1e4, -9999, -9998)],
                         ids=["rising", "all-below-exp-range"])
def test_streamed_attention_kernel_survives_scores_far_beyond_exp_range(kernels_on_the_cpu,
                                                                        scores):
    """exp(+-1e4) overflows or underflows in any float: the running maximum, taken from the
    first key on, keeps every exponent in range, whatever the scores."""
    q = np.ones((1, 1, 1, 4), np.float32)
    k = np.repeat(np.array(scores, np.float32)[:, None] / 4, 4, axis=1)[None, None]  # q.k = score
    v = randn(0, 1, 1, 3, 4, dtype=np.float32)
    context = cuda_kernels.attention_context(q, k, v)
    assert_close(context, attention_formula(q, k, v).astype(np.float32), "context")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_kernels_over_the_keys_equal_the_formula(kernels_on_the_cpu, dtype):
    # large scores: exp overflows without the maximum
    check_softmax_kernels(randn(0, 9, 4, 2, 7, dtype=dtype) * 40, randn(1, 9, 4, 2, 7, dtype=dtype))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_kernel_equals_the_textbook_loss(kernels_on_the_cpu, smoothing):
    check_loss_kernel(randn(0, 37, 10) * 4, np.random.default_rng(1).integers(0, 10, 37), smoothing)


def test_an_emulated_kernel_refuses_an_argument_of_another_c_type(kernels_on_the_cpu):
    """On the GPU a wrong width would shift every later argument; here it is refused."""
    scores = randn(0, 3, 4, dtype=np.float32)
    kernel = emulated_kernel("softmax_keys_first", "float32")
    with pytest.raises(TypeError, match="argument 1 must be a NumPy int64 scalar"):
        kernel((1,), (4,), (scores, np.int32(3), np.int64(4)))
    with pytest.raises(TypeError, match="takes 3 arguments, got 2"):
        kernel((1,), (4,), (scores, np.int64(3)))
    with pytest.raises(TypeError, match="argument 0 must be an array of float32"):
        kernel((1,), (4,), (scores.astype(np.float64), np.int64(3), np.int64(4)))


def run_attention(layer, args, dout, keeping):
    """(out, input gradients) of one pass, or (out,) inside no_grad()."""
    if not keeping:
        with no_grad():
            return (layer.forward(*args),)
    out = layer.forward(*args)
    grads = layer.backward(dout)
    return (out, *(grads if isinstance(grads, tuple) else (grads,)))


@pytest.fixture
def gpu_code_path(monkeypatch):
    """The fast tier takes its GPU paths on NumPy arrays, launching the emulated kernels;
    yields the names of the kernels launched."""
    launched = []
    monkeypatch.setattr(cuda_kernels, "on_gpu", lambda *arrays: True)
    monkeypatch.setattr(cuda_kernels, "_raw_kernel",
                        lambda name, *key: launched.append(name) or emulated_kernel(name, *key))
    return launched


@pytest.mark.parametrize("keeping", [True, False], ids=["training", "no_grad"])
@pytest.mark.parametrize("queries", ["all", "first"])
def test_fast_attention_with_its_gpu_kernels_equals_the_textbook_attention(
        gpu_code_path, keeping, queries):
    """The GPU's code path (softmax kernels; inference's streamed kernel) on the CPU."""
    with backend.precision(np.float64):  # float32 weights would round q's fused scaling
        layer = MultiHeadAttention(16, 2).eval()
    x = randn(0, 3, 6, 16)
    args = (x,) if queries == "all" else (x[:, :1], x)
    dout = randn(1, 3, 6 if queries == "all" else 1, 16)
    got, expected = in_both_tiers(lambda: run_attention(layer, args, dout, keeping))
    for i, (value, reference) in enumerate(zip(got, expected)):
        assert_close(value, reference, f"output {i}")
    assert gpu_code_path == (["softmax_keys_first", "softmax_backward_keys_first"] if keeping
                             else ["attention_context"])
    assert (layer.attn_weights is None) == (not keeping)


def test_no_grad_in_training_mode_keeps_the_attention_dropout(gpu_code_path):
    """The streamed kernel drops nothing, so training mode with attention dropout takes the
    other path, and draws the textbook layer's mask from the same random numbers."""
    with backend.precision(np.float64):
        layer = MultiHeadAttention(16, 2, dropout=0.5).train()
    x = randn(0, 3, 6, 16)
    with no_grad():
        fast_out, textbook_out = in_both_tiers(lambda: layer.forward(x))
    assert gpu_code_path == ["softmax_keys_first"]
    assert_close(fast_out, textbook_out, "output")


def test_inference_attention_on_the_gpu_path_holds_no_scores(gpu_code_path):
    """Inside no_grad() the GPU's path makes the q/k/v projection and the context, and no
    array the size of the scores (N, num_heads, T, T) beside them (tracemalloc's peak)."""
    N, T, D, heads = 8, 65, 128, 4
    layer = MultiHeadAttention(D, heads).eval()
    x = randn(0, N, T, D, dtype=np.float32)
    with fast.enabled(True), no_grad():
        layer.forward(x)  # compiles the kernel before the measurement
        out, peak = traced_peak(lambda: layer.forward(x))
    qkv, context, scores = N * T * 3 * D * 4, N * T * D * 4, N * heads * T * T * 4
    assert peak < qkv + context + scores // 2, (peak, qkv, context, scores)
    assert out.shape == (N, T, D) and gpu_code_path == ["attention_context"] * 2


@pytest.fixture
def streamed_attention_on_the_cpu(kernels_on_the_cpu, monkeypatch):
    """The fast attention takes inference's GPU kernel (emulated) on NumPy arrays, under the
    same conditions as on the GPU; every other layer keeps its CPU code."""
    uses_streamed_attention = attention.uses_streamed_attention

    def as_if_on_the_gpu(*args):
        with monkeypatch.context() as patch:
            patch.setattr(cuda_kernels, "on_gpu", lambda *arrays: True)
            return uses_streamed_attention(*args)
    monkeypatch.setattr(attention, "uses_streamed_attention", as_if_on_the_gpu)


def test_vit_inference_on_the_gpu_path_holds_at_most_six_token_arrays(
        streamed_attention_on_the_cpu, monkeypatch):
    """Beyond the parameters and the batch, at most six (N, T, D) arrays at once: in each
    block's attention its input, the normed tokens, q/k/v (three) and the context; in its
    MLP the input, the new tokens, the normed tokens and the hidden layer (two, GELU written
    over fc1's output), then the output (one less than a separate GELU output would hold)."""
    monkeypatch.setattr(row_blocks, "BLOCK_ELEMENTS", 256)  # the CPU's GELU temporaries: tiny
    model = VisionTransformer(image_size=32, patch_size=4, in_channels=3, num_classes=10,
                              embed_dim=128, depth=2, num_heads=4, mlp_dim=256).eval()
    images = randn(0, 8, 3, 32, 32, dtype=np.float32)
    with fast.enabled(True), no_grad():
        model.forward(images)  # compiles the kernel before the measurement
        _, peak = traced_peak(lambda: model.forward(images))
    token_array = images.shape[0] * 65 * 128 * 4
    assert peak < 6.5 * token_array, peak / token_array
