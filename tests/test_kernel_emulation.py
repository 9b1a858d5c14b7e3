# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
"""The fast tier's one-thread-per-item GPU kernels, run on the CPU (``kernel_emulation``).

Each kernel's CUDA source, compiled as C++, must give the textbook formula's numbers:
the streamed attention of inference, the softmax over the keys and its backward, the
loss. With the kernels standing in for the GPU's, the fast attention layer must equal
the textbook layer, in training and inside ``no_grad()``, where it must hold no array
the size of the scores. Skipped without a C++ compiler.
"""
import tracemalloc

import numpy as np
import pytest

from cs_vit import backend, fast
from cs_vit.fast import cuda_kernels
from cs_vit.layers import MultiHeadAttention, no_grad, softmax_cross_entropy
from tests.kernel_emulation import compiler, emulated_kernel

pytestmark = pytest.mark.skipif(compiler() is None, reason="needs a C++ compiler")

TOLERANCE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


@pytest.fixture
def kernels_on_the_cpu(monkeypatch):
    """cuda_kernels launches the emulated kernels, on NumPy arrays."""
    monkeypatch.setattr(cuda_kernels, "_raw_kernel", emulated_kernel)


def randn(seed, *shape, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_close(value, reference, what):
    assert value.shape == reference.shape and value.dtype == reference.dtype, what
    tol = TOLERANCE[reference.dtype] * max(1.0, float(np.max(np.abs(reference), initial=0.0)))
    diff = float(np.max(np.abs(value - reference), initial=0.0))
    assert diff <= tol, f"{what}: differs by {diff:.3g} > {tol:.3g}"


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
    scores = randn(0, 9, 4, 2, 7, dtype=dtype) * 40  # large: exp overflows without the max
    dattn = randn(1, 9, 4, 2, 7, dtype=dtype)
    shifted = np.exp(scores - scores.max(axis=0))
    attn = shifted / shifted.sum(axis=0)
    assert_close(cuda_kernels.softmax_keys_first(scores.copy()), attn, "softmax")
    expected = attn * (dattn - (dattn * attn).sum(axis=0))
    assert_close(cuda_kernels.softmax_backward_keys_first(attn, dattn.copy()), expected,
                 "softmax backward")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_kernel_equals_the_textbook_loss(kernels_on_the_cpu, smoothing):
    logits = randn(0, 37, 10) * 4
    labels = np.random.default_rng(1).integers(0, 10, 37)
    loss, dlogits = softmax_cross_entropy(logits, labels, smoothing)
    row_loss, row_correct, kernel_dlogits = cuda_kernels.cross_entropy(logits, labels, smoothing)
    assert row_loss.sum() / 37 == pytest.approx(loss, rel=1e-12)
    assert_close(kernel_dlogits, dlogits, "dlogits")
    assert row_correct.sum() == (logits.argmax(axis=1) == labels).sum()


def run_attention(layer, args, dout, keeping):
    """(out, input gradients) of one pass, or (out,) inside no_grad()."""
    if not keeping:
        with no_grad():
            return (layer.forward(*args),)
    out = layer.forward(*args)
    grads = layer.backward(dout)
    return (out, *(grads if isinstance(grads, tuple) else (grads,)))


@pytest.mark.parametrize("keeping", [True, False], ids=["training", "no_grad"])
@pytest.mark.parametrize("queries", ["all", "first"])
def test_fast_attention_with_its_gpu_kernels_equals_the_textbook_attention(
        kernels_on_the_cpu, monkeypatch, keeping, queries):
    """The GPU's code path (softmax kernels; inference's streamed kernel) on the CPU."""
    with backend.precision(np.float64):  # float32 weights would round q's fused scaling
        layer = MultiHeadAttention(16, 2).eval()
    x = randn(0, 3, 6, 16)
    args = (x,) if queries == "all" else (x[:, :1], x)
    dout = randn(1, 3, 6 if queries == "all" else 1, 16)
    with fast.enabled(False):
        expected = run_attention(layer, args, dout, keeping)
    launched = []
    monkeypatch.setattr(cuda_kernels, "on_gpu", lambda *arrays: True)
    monkeypatch.setattr(cuda_kernels, "_raw_kernel",
                        lambda name, *key: launched.append(name) or emulated_kernel(name, *key))
    with fast.enabled(True):
        got = run_attention(layer, args, dout, keeping)
    for i, (value, reference) in enumerate(zip(got, expected)):
        assert_close(value, reference, f"output {i}")
    assert launched == (["softmax_keys_first", "softmax_backward_keys_first"] if keeping
                        else ["attention_context"])
    assert (layer.attn_weights is None) == (not keeping)


def test_inference_attention_on_the_gpu_path_holds_no_scores(kernels_on_the_cpu, monkeypatch):
    """Inside no_grad() the GPU's path makes the q/k/v projection and the context, and no
    array the size of the scores (N, num_heads, T, T) beside them (tracemalloc's peak)."""
    N, T, D, heads = 8, 65, 128, 4
    layer = MultiHeadAttention(D, heads).eval()
    x = randn(0, N, T, D, dtype=np.float32)
    monkeypatch.setattr(cuda_kernels, "on_gpu", lambda *arrays: True)
    with fast.enabled(True), no_grad():
        layer.forward(x)  # compiles the kernel before the measurement
        tracemalloc.start()
        out = layer.forward(x)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    qkv, context, scores = N * T * 3 * D * 4, N * T * D * 4, N * heads * T * T * 4
    assert peak < qkv + context + scores // 2, (peak, qkv, context, scores)
    assert out.shape == (N, T, D)
