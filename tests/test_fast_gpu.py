# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
"""The fast tier on a real GPU: its kernels and its whole model equal the textbook tier.

Its cuBLAS products equal CuPy's on every layout the model uses; each fused kernel
(inference's streamed attention included) equals the textbook code it replaces
(float64 to 1e-10, float32 to 1e-5, relative to the largest value); a step captured
as a CUDA graph equals the uncaptured step.
Skipped on machines without CuPy and a CUDA GPU (CI has neither).
"""
import numpy as np
import pytest

from cs_vit import backend, fast
from cs_vit.fast import cublas, cuda_kernels
from cs_vit.fast.captured import StaticForward, StaticTrainStep
from cs_vit.fast.cublas import matmul
from cs_vit.layers import GELU, MLP, LayerNorm, MultiHeadAttention, no_grad
from cs_vit.models import VisionTransformer
from cs_vit.optim import clip_grad_norm, make_optimizer
from cs_vit.optim.clipping import EPS
from tests.fast_checks import (
    TOLERANCE, assert_close, check_loss_kernel, check_softmax_kernels, in_both_tiers, randn,
)
from tests.test_gpu import (
    DIGIT_MODEL, SMALL_VIT, _gpu_available, adamw_on_both_backends, digit_solver, digits,
    run_model,
)

pytestmark = pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU")


@pytest.mark.parametrize("options", [dict(), dict(pool="mean", pos_encoding="sincos2d")])
@pytest.mark.parametrize("training", [True, False])
def test_fast_vit_on_the_gpu_equals_the_textbook_vit_on_numpy_in_float64(float64, options,
                                                                          training):
    rng = np.random.default_rng(0)
    images, dlogits = rng.standard_normal((3, 2, 8, 8)), rng.standard_normal((3, 5))
    model = VisionTransformer(**SMALL_VIT, **options).train(training)
    host = run_model(model, images, dlogits)
    backend.use("cupy")
    model.to_active_backend()
    with fast.enabled(True):
        device = run_model(model, images, dlogits)
    np.testing.assert_allclose(device[0], host[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(device[1], host[1], rtol=0, atol=1e-12)
    for name in host[2]:
        np.testing.assert_allclose(device[2][name], host[2][name], rtol=0, atol=1e-12,
                                   err_msg=name)


def test_flat_adamw_on_the_gpu_equals_the_textbook_adamw_on_numpy(float64):
    host, device = adamw_on_both_backends(lambda: fast.enabled(True))
    for name in host:  # not 1e-12: see tests/test_gpu.py's AdamW test
        np.testing.assert_allclose(device[name], host[name], rtol=0, atol=1e-8, err_msg=name)


def gpu_randn(seed, *shape, dtype=np.float64):
    backend.use("cupy")
    return backend.xp.asarray(randn(seed, *shape, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cublas_products_equal_cupy_matmul_on_every_layout_the_model_uses(dtype):
    x, w = gpu_randn(0, 130, 16, dtype=dtype), gpu_randn(1, 48, 16, dtype=dtype)
    dout = gpu_randn(2, 130, 48, dtype=dtype)
    keys_first = gpu_randn(3, 9, 4, 2, 7, dtype=dtype)       # (T, N, H, S)
    attn = keys_first.transpose(1, 2, 3, 0)                   # (N, H, S, T), keys-first memory
    v = gpu_randn(4, 4, 9, 2, 8, dtype=dtype).transpose(0, 2, 1, 3)  # (N, H, T, Dh): N, H apart
    q, k = gpu_randn(5, 4, 2, 7, 8, dtype=dtype), gpu_randn(6, 4, 2, 9, 8, dtype=dtype)
    cases = {"x @ W^T": (x, w.T), "dout^T @ x": (dout.T, x), "dout @ W": (dout, w),
             "attn @ v": (attn, v), "q @ k^T": (q, k.transpose(0, 1, 3, 2)),
             "k @ q^T": (k, q.transpose(0, 1, 3, 2))}
    for what, (a, b) in cases.items():
        assert_close(matmul(a, b), backend.xp.matmul(a, b), what)
    xp = backend.xp
    into_keys_first = xp.empty((9, 4, 2, 7), dtype)            # k q^T written keys first
    matmul(k, q.transpose(0, 1, 3, 2), out=into_keys_first.transpose(1, 2, 0, 3))
    assert_close(into_keys_first.transpose(1, 2, 0, 3), xp.matmul(k, q.transpose(0, 1, 3, 2)),
                 "out= interleaved keys-first view")
    context = xp.empty((4, 7, 2, 8), dtype)                     # (N, S, H, Dh), written per head
    matmul(attn, v, out=context.transpose(0, 2, 1, 3))
    assert_close(context.transpose(0, 2, 1, 3), xp.matmul(attn, v), "out= non-collapsible view")
    grad = xp.empty((48, 16), dtype)
    assert matmul(dout.T, x, out=grad) is grad
    assert_close(grad, xp.matmul(dout.T, x), "out= gradient buffer")
    narrower = xp.empty((48, 16), np.float32)  # float64 products into a float32 buffer: cast
    matmul(dout.T.astype(np.float64), x.astype(np.float64), out=narrower)
    assert_close(narrower, xp.matmul(dout.T, x).astype(np.float32), "out= of another dtype")


def test_cublas_workspace_comes_from_the_default_pool_whatever_allocator_is_current():
    import cupy
    private = cupy.cuda.MemoryPool()  # as a graph's pool is current while its work warms up
    with cupy.cuda.using_allocator(private.malloc):
        library = cublas._Cublas()
    assert private.used_bytes() == 0  # nothing of the library's lives in the graph's pool
    assert library.workspace.mem.size >= library.workspace_bytes


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layernorm_kernels_equal_the_textbook_layernorm(dtype):
    x, dout = gpu_randn(0, 5, 13, 40, dtype=dtype) * 3 + 1, gpu_randn(1, 5, 13, 40, dtype=dtype)
    results = []
    for on in (True, False):
        with backend.precision(dtype):  # parameters of x's dtype: the case the kernels take
            layer = LayerNorm(40)
        layer.to_active_backend()
        layer.params["weight"][...] = gpu_randn(2, 40, dtype=dtype)
        layer.params["bias"][...] = gpu_randn(3, 40, dtype=dtype)
        with fast.enabled(on):
            out = layer.forward(x)
            dx = layer.backward(dout)
        results.append((out, dx, layer.grads["weight"].copy(), layer.grads["bias"].copy()))
    for what, fast_value, textbook in zip(("out", "dx", "dweight", "dbias"), *results):
        assert_close(fast_value, textbook, what)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_kernels_over_the_keys_equal_the_formula(dtype):
    # large scores: exp overflows without the maximum
    check_softmax_kernels(gpu_randn(0, 9, 4, 2, 7, dtype=dtype) * 40,
                          gpu_randn(1, 9, 4, 2, 7, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("queries", ["all", "first"])
def test_inference_attention_kernel_equals_the_textbook_attention(monkeypatch, dtype, queries):
    """Inside no_grad() the fast attention stores no scores (one streamed kernel)."""
    x = gpu_randn(0, 3, 7, 32, dtype=dtype) * 2
    with backend.precision(dtype):
        layer = MultiHeadAttention(32, 4).eval()
    layer.to_active_backend()
    args = (x,) if queries == "all" else (x[:, :1], x)  # the CLS-only last block's form
    launches, kernel = [], cuda_kernels.attention_context
    monkeypatch.setattr(cuda_kernels, "attention_context",
                        lambda *arrays: launches.append(1) or kernel(*arrays))
    with no_grad():
        fast_out, textbook_out = in_both_tiers(lambda: layer.forward(*args))
    assert launches == [1]
    assert_close(fast_out, textbook_out, "attention output")


def test_fast_vit_inference_on_the_gpu_equals_the_textbook_vit_on_numpy_in_float64(float64):
    images = np.random.default_rng(0).standard_normal((3, 2, 8, 8))
    model = VisionTransformer(**SMALL_VIT).eval()
    with fast.enabled(False), no_grad():
        host = model.forward(images)
    backend.use("cupy")
    model.to_active_backend()
    with fast.enabled(True), no_grad():
        device = backend.to_numpy(model.forward(backend.asarray(images)))
    np.testing.assert_allclose(device, host, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_kernel_equals_the_textbook_gelu(dtype):
    x, dout = gpu_randn(0, 64, 33, dtype=dtype) * 3, gpu_randn(1, 64, 33, dtype=dtype)
    results = []
    for on in (True, False):
        layer = GELU()
        with fast.enabled(on):
            results.append((layer.forward(x), layer.backward(dout)))
    assert_close(results[0][0], results[1][0], "gelu")
    assert_close(results[0][1], results[1][1], "gelu backward")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inference_mlp_writes_its_gelu_over_fc1s_output(dtype, monkeypatch):
    x = gpu_randn(0, 4, 9, 16, dtype=dtype)
    with backend.precision(dtype):
        layer = MLP(16, 32).eval()
    written_over, kernel = [], cuda_kernels.gelu

    def watched_gelu(x, derivative, out=None):
        written_over.append(out is x)
        return kernel(x, derivative, out)
    monkeypatch.setattr(cuda_kernels, "gelu", watched_gelu)
    with no_grad():
        fast_out, textbook_out = in_both_tiers(lambda: layer.forward(x))
    assert_close(fast_out, textbook_out, "MLP")
    assert written_over == [True]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_kernel_equals_the_textbook_loss(dtype, smoothing):
    labels = backend.xp.asarray(np.random.default_rng(1).integers(0, 10, 64))
    check_loss_kernel(gpu_randn(0, 64, 10, dtype=dtype) * 4, labels, smoothing)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_norm_and_clip_kernels_equal_clip_grad_norm(dtype):
    g = gpu_randn(0, 1000, dtype=dtype)
    expected = g.copy()
    norm = clip_grad_norm([("g", None, expected)], 2.0)
    measured = backend.xp.zeros((), dtype)
    cuda_kernels.l2_norm_into(g, measured)
    assert float(measured) == pytest.approx(norm, rel=TOLERANCE[np.dtype(dtype)])
    cuda_kernels.clip_by_norm(g, measured, 2.0, EPS)
    assert_close(g, expected, "clipped")


def captured_and_uncaptured(steps):
    """Parameters after ``steps`` StaticTrainSteps from the same start, captured and not."""
    rng = np.random.default_rng(0)
    data = [(rng.random((16, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, 16))
            for _ in range(steps)]
    results = []
    for capture in (True, False):
        backend.use("numpy")
        backend.seed(0)
        model = VisionTransformer(**DIGIT_MODEL)
        backend.use("cupy")
        model.to_active_backend()
        with fast.enabled(True):
            optimizer = make_optimizer("adamw", model, lr=2e-3, weight_decay=0.05)
            step = StaticTrainStep(model, optimizer, 16, label_smoothing=0.1, grad_clip=1.0,
                                   capture=capture)
            for i, (x, y) in enumerate(data):
                step(backend.xp.asarray(x), backend.xp.asarray(y), 2e-3 * (1 - i / steps))
            losses, norms, correct = step.flush()
        results.append((step, model.state_dict(), losses, norms, correct))
    return results


def test_a_captured_step_equals_the_uncaptured_step_after_20_steps():
    (graph, graph_state, graph_losses, graph_norms, graph_correct), \
        (plain, plain_state, losses, norms, correct) = captured_and_uncaptured(20)
    assert graph.captured and not plain.captured
    for name in plain_state:
        np.testing.assert_allclose(graph_state[name], plain_state[name], rtol=0, atol=1e-6,
                                   err_msg=name)
    np.testing.assert_allclose(graph_losses, losses, rtol=1e-6)
    np.testing.assert_allclose(graph_norms, norms, rtol=1e-6)
    assert graph_correct == correct and len(losses) == 20


def test_training_on_digits_with_the_captured_step_follows_the_uncaptured_run(digits):
    with fast.enabled(True):
        plain = digit_solver(digits, graph=False)
        plain_results = plain.train("cuda")
        graph = digit_solver(digits)
        graph_results = graph.train("cuda")
    assert graph.static_step and graph.static_step.captured
    assert graph._static_forward and graph._static_forward.captured  # evaluation's graph
    assert not plain.static_step and not plain._static_forward
    np.testing.assert_allclose(graph_results["loss_history"][:20],
                               plain_results["loss_history"][:20], rtol=1e-4)
    assert graph_results["best_test_acc"] > 0.85
    assert abs(graph_results["best_test_acc"] - plain_results["best_test_acc"]) < 0.02


def test_a_captured_forward_pass_equals_the_models_forward_pass():
    rng = np.random.default_rng(0)
    backend.use("numpy")
    backend.seed(0)
    model = VisionTransformer(**DIGIT_MODEL).eval()
    backend.use("cupy")
    model.to_active_backend()
    with fast.enabled(True):
        forward = StaticForward(model, 16)
        for i in range(5):
            x = backend.xp.asarray(rng.random((16, 1, 8, 8), dtype=np.float32))
            with no_grad():
                expected = model.forward(x)
            np.testing.assert_allclose(backend.to_numpy(forward(x)), backend.to_numpy(expected),
                                       rtol=0, atol=1e-6, err_msg=f"call {i}")
    assert forward.captured
