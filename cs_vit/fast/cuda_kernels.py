# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""Fused GPU kernels: each does in one launch what the textbook code does in several.

On the GPU a small operation costs more to launch (~10 us of host time) than to
run, so a layer's speed is its number of launches. Each kernel here computes one
piece of the textbook maths whole: LayerNorm forward and backward (one warp per
row), the softmax over the keys and its backward (one thread per query, keys
first), attention without stored scores for inference (one thread per query),
GELU with its derivative, the loss and its gradient (one thread per row), the
gradient norm, clipping, and the AdamW update of the flat parameter buffer. They
run on CuPy arrays of float32 or float64 and are compiled on first use;
``tests/test_fast_gpu.py`` checks each against the textbook tier, and
``tests/test_kernel_emulation.py`` runs the one-thread-per-item ones on the CPU.
"""
from __future__ import annotations

import functools

import numpy

from cs_vit.backend import _import_cupy, get_array_module

WARPS_PER_BLOCK = 8      # LayerNorm: rows per block of 32 x 8 threads
THREADS_PER_BLOCK = 256  # one-thread-per-row kernels


@functools.lru_cache(maxsize=None)
def _raw_kernel(name, dtype, head_dim=None):
    """The RawKernel ``name`` of ``_SOURCES`` compiled for ``dtype`` (float32 or float64),
    and for kernels that keep a row of each head in registers, for ``head_dim``."""
    return _import_cupy().RawKernel(kernel_source(name, dtype, head_dim), name)


def kernel_source(name, dtype, head_dim=None):
    """The CUDA source of kernel ``name`` for ``dtype``, as ``_raw_kernel`` compiles it."""
    c_type = {"float32": "float", "float64": "double"}[dtype]
    defines = "" if head_dim is None else f"#define HEAD_DIM {int(head_dim)}\n"
    return f"typedef {c_type} T;\n{defines}" + _SOURCES[name]


def on_gpu(*arrays):
    """Whether every one of ``arrays`` is a CuPy array (the case these kernels serve)."""
    return all(get_array_module(a).__name__ != "numpy" for a in arrays)


def _blocks(count, per_block):
    """The grid: enough blocks of ``per_block`` threads (or rows) to cover ``count``."""
    return ((int(count) + per_block - 1) // per_block,)


_SOURCES = {
    "layernorm_forward": r"""
extern "C" __global__ void layernorm_forward(const T* x, const T* weight, const T* bias, T* out,
                                             T* xhat, T* inv_std, long long rows, int D,
                                             double eps) {
    long long row = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) return;  /* a whole warp leaves together: it owns one row */
    const T* xr = x + row * D;
    T sum = 0;
    for (int j = threadIdx.x; j < D; j += 32) sum += xr[j];
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    T mean = sum / D;
    T squares = 0;
    for (int j = threadIdx.x; j < D; j += 32) { T d = xr[j] - mean; squares += d * d; }
    for (int o = 16; o > 0; o >>= 1) squares += __shfl_xor_sync(0xffffffffu, squares, o);
    T inv = (T)1 / sqrt(squares / D + (T)eps);
    for (int j = threadIdx.x; j < D; j += 32) {
        T h = (xr[j] - mean) * inv;
        xhat[row * D + j] = h;
        out[row * D + j] = h * weight[j] + bias[j];
    }
    if (threadIdx.x == 0) inv_std[row] = inv;
}
""",
    "layernorm_backward": r"""
extern "C" __global__ void layernorm_backward(const T* dout, const T* xhat, const T* inv_std,
                                              const T* weight, T* dx, long long rows, int D) {
    long long row = (long long)blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) return;
    const T* g = dout + row * D;
    const T* h = xhat + row * D;
    T mean_dxhat = 0, mean_dxhat_xhat = 0;
    for (int j = threadIdx.x; j < D; j += 32) {
        T dxhat = g[j] * weight[j];
        mean_dxhat += dxhat;
        mean_dxhat_xhat += dxhat * h[j];
    }
    for (int o = 16; o > 0; o >>= 1) {
        mean_dxhat += __shfl_xor_sync(0xffffffffu, mean_dxhat, o);
        mean_dxhat_xhat += __shfl_xor_sync(0xffffffffu, mean_dxhat_xhat, o);
    }
    mean_dxhat /= D;
    mean_dxhat_xhat /= D;
    for (int j = threadIdx.x; j < D; j += 32)
        dx[row * D + j] = inv_std[row] * (g[j] * weight[j] - mean_dxhat - h[j] * mean_dxhat_xhat);
}
""",
    "softmax_keys_first": r"""
extern "C" __global__ void softmax_keys_first(T* scores, long long keys, long long columns) {
    long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= columns) return;
    T top = scores[c];
    for (long long t = 1; t < keys; ++t) top = max(top, scores[t * columns + c]);
    if (!isfinite(top)) top = 0;
    T total = 0;
    for (long long t = 0; t < keys; ++t) {
        T e = exp(scores[t * columns + c] - top);
        scores[t * columns + c] = e;
        total += e;
    }
    if (!(total > 0)) total = 1;
    for (long long t = 0; t < keys; ++t) scores[t * columns + c] /= total;
}
""",
    "softmax_backward_keys_first": r"""
extern "C" __global__ void softmax_backward_keys_first(const T* attn, T* dattn, long long keys,
                                                       long long columns) {
    long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= columns) return;
    T total = 0;
    for (long long t = 0; t < keys; ++t) total += dattn[t * columns + c] * attn[t * columns + c];
    for (long long t = 0; t < keys; ++t) {
        long long i = t * columns + c;
        dattn[i] = (dattn[i] - total) * attn[i];
    }
}
""",
    "attention_context": r"""
extern "C" __global__ void attention_context(const T* q, const T* k, const T* v, T* context,
                                             long long threads, int num_heads, long long S,
                                             long long T_keys, long long q_n, long long q_h,
                                             long long q_s, long long k_n, long long k_h,
                                             long long k_t, long long v_n, long long v_h,
                                             long long v_t) {
    /* One thread per (image, head, query): its row of softmax(q k^T) v, the keys read once
       with a running maximum (the online softmax), so no score is ever stored. Strides are
       in elements; context is (N, S, num_heads, HEAD_DIM), contiguous. */
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= threads) return;
    long long s = i % S, h = (i / S) % num_heads, n = i / (S * num_heads);
    const T* q_row = q + n * q_n + h * q_h + s * q_s;
    const T* k_head = k + n * k_n + h * k_h;
    const T* v_head = v + n * v_n + h * v_h;
    T query[HEAD_DIM], sum[HEAD_DIM];
    for (int d = 0; d < HEAD_DIM; ++d) { query[d] = q_row[d]; sum[d] = 0; }
    T top = 0, total = 0;  /* the largest score so far; the sum of exp(score - top) */
    for (long long t = 0; t < T_keys; ++t) {
        const T* k_row = k_head + t * k_t;
        const T* v_row = v_head + t * v_t;
        T score = 0;
        for (int d = 0; d < HEAD_DIM; ++d) score += query[d] * k_row[d];
        if (t == 0) top = score;
        T new_top = max(top, score);
        T rescale = exp(top - new_top), weight = exp(score - new_top);
        total = total * rescale + weight;
        for (int d = 0; d < HEAD_DIM; ++d) sum[d] = sum[d] * rescale + weight * v_row[d];
        top = new_top;
    }
    T* out = context + ((n * S + s) * num_heads + h) * HEAD_DIM;
    for (int d = 0; d < HEAD_DIM; ++d) out[d] = sum[d] / total;
}
""",
    "cross_entropy_rows": r"""
extern "C" __global__ void cross_entropy_rows(const T* logits, const long long* labels,
                                              T* dlogits, T* row_loss, long long* row_correct,
                                              int N, int K, double smoothing) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    const T* z = logits + (long long)i * K;
    long long label = labels[i];
    T top = z[0];
    int best = 0;
    for (int k = 1; k < K; ++k) if (z[k] > top) { top = z[k]; best = k; }
    T total = 0;
    for (int k = 0; k < K; ++k) total += exp(z[k] - top);
    T log_total = log(total);
    T off = (T)(smoothing / K), on = (T)(1.0 - smoothing), loss = 0;
    for (int k = 0; k < K; ++k) {
        T log_p = z[k] - top - log_total;
        T target = k == label ? off + on : off;
        loss -= target * log_p;
        dlogits[(long long)i * K + k] = (exp(log_p) - target) / (T)N;
    }
    row_loss[i] = loss;
    row_correct[i] = best == label;
}
""",
    "record_step": r"""
extern "C" __global__ void record_step(const T* loss, const T* grad_norm, T* loss_log,
                                       T* norm_log, long long* count, long long capacity) {
    long long k = count[0];
    if (k < capacity) { loss_log[k] = loss[0]; norm_log[k] = grad_norm[0]; }
    count[0] = k + 1;
}
""",
}


def layernorm_forward(x2d, weight, bias, eps):
    """(out, xhat, inv_std) of LayerNorm over the rows of x2d (R, D); inv_std is (R, 1)."""
    cupy = _import_cupy()
    rows, D = x2d.shape
    x2d = cupy.ascontiguousarray(x2d)
    out, xhat = cupy.empty_like(x2d), cupy.empty_like(x2d)
    inv_std = cupy.empty((rows, 1), x2d.dtype)
    _raw_kernel("layernorm_forward", x2d.dtype.name)(
        _blocks(rows, WARPS_PER_BLOCK), (32, WARPS_PER_BLOCK),
        (x2d, weight, bias, out, xhat, inv_std, numpy.int64(rows), numpy.int32(D),
         numpy.float64(eps)))
    return out, xhat, inv_std


def layernorm_backward(dout2d, xhat, inv_std, weight):
    """dx (R, D) of LayerNorm from its forward's xhat and inv_std (R, 1)."""
    cupy = _import_cupy()
    rows, D = dout2d.shape
    dout2d = cupy.ascontiguousarray(dout2d)
    dx = cupy.empty_like(dout2d)
    _raw_kernel("layernorm_backward", dout2d.dtype.name)(
        _blocks(rows, WARPS_PER_BLOCK), (32, WARPS_PER_BLOCK),
        (dout2d, xhat, inv_std, weight, dx, numpy.int64(rows), numpy.int32(D)))
    return dx


def softmax_keys_first(scores):
    """Softmax over axis 0 of C-contiguous keys-first scores (T, ...), in place; returns them."""
    keys, columns = scores.shape[0], scores.size // max(1, scores.shape[0])
    _raw_kernel("softmax_keys_first", scores.dtype.name)(
        _blocks(columns, THREADS_PER_BLOCK), (THREADS_PER_BLOCK,),
        (scores, numpy.int64(keys), numpy.int64(columns)))
    return scores


def softmax_backward_keys_first(attn, dattn):
    """dscores = attn * (dattn - sum over the keys of dattn * attn), written over ``dattn``."""
    keys, columns = attn.shape[0], attn.size // max(1, attn.shape[0])
    _raw_kernel("softmax_backward_keys_first", attn.dtype.name)(
        _blocks(columns, THREADS_PER_BLOCK), (THREADS_PER_BLOCK,),
        (attn, dattn, numpy.int64(keys), numpy.int64(columns)))
    return dattn


def attention_context(q, k, v):
    """softmax(q k^T) v for every image and head, in one pass that stores no scores.

    q: (N, num_heads, S, Dh), already scaled; k, v: (N, num_heads, T, Dh), T >= 1; all of
    one dtype, any strides (views of a fused projection included).
    Returns the context (N, S, num_heads, Dh), laid out as out_proj reads it.
    """
    module = get_array_module(q, k, v)
    N, num_heads, S, head_dim = q.shape
    T = k.shape[2]
    if k.shape != (N, num_heads, T, head_dim) or v.shape != k.shape or T == 0:
        raise ValueError(f"attention_context needs k and v of shape (N, num_heads, T >= 1, Dh) "
                         f"matching q {q.shape}; got k {k.shape}, v {v.shape}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"attention_context needs one dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    q, k, v = (a if a.strides[-1] == a.itemsize else module.ascontiguousarray(a) for a in (q, k, v))
    context = module.empty((N, S, num_heads, head_dim), q.dtype)
    threads = N * num_heads * S
    if threads == 0:
        return context  # CUDA refuses a launch of no blocks
    strides = [numpy.int64(step // a.itemsize) for a in (q, k, v) for step in a.strides[:3]]
    _raw_kernel("attention_context", q.dtype.name, head_dim)(
        _blocks(threads, THREADS_PER_BLOCK), (THREADS_PER_BLOCK,),
        (q, k, v, context, numpy.int64(threads), numpy.int32(num_heads), numpy.int64(S),
         numpy.int64(T), *strides))
    return context


def cross_entropy(logits, labels, label_smoothing):
    """(per-row loss (N,), per-row correct (N,) int64, dlogits (N, K)) of the mean loss.

    ``labels`` must be int64 on the GPU; the mean loss is ``row_loss.sum() / N``.
    """
    module = get_array_module(logits)
    N, K = logits.shape
    logits = module.ascontiguousarray(logits)
    dlogits, row_loss = module.empty_like(logits), module.empty(N, logits.dtype)
    row_correct = module.empty(N, module.int64)
    _raw_kernel("cross_entropy_rows", logits.dtype.name)(
        _blocks(N, THREADS_PER_BLOCK), (THREADS_PER_BLOCK,),
        (logits, labels, dlogits, row_loss, row_correct, numpy.int32(N), numpy.int32(K),
         numpy.float64(label_smoothing)))
    return row_loss, row_correct, dlogits


def record_step(loss, grad_norm, loss_log, norm_log, count):
    """Append the 0-d ``loss`` and ``grad_norm`` to the logs at ``count`` (a (1,) int64 array)."""
    _raw_kernel("record_step", loss.dtype.name)(
        (1,), (1,), (loss, grad_norm, loss_log, norm_log, count, numpy.int64(loss_log.size)))


@functools.lru_cache(maxsize=None)
def _elementwise(name):
    cupy = _import_cupy()
    # The constants are doubles, so erf and exp run in float64 even for float32 x: cheap
    # on data-centre GPUs, slower on consumer ones (a float32 variant is a possible next step).
    if name == "gelu_with_derivative":
        return cupy.ElementwiseKernel(
            "T x", "T y, T d",
            "T cdf = 0.5 * (1.0 + erf(x * 0.70710678118654752440));"
            "y = x * cdf;"
            "d = cdf + x * exp(-0.5 * x * x) * 0.39894228040143267794;",
            "cs_vit_gelu_with_derivative")
    if name == "gelu":
        return cupy.ElementwiseKernel(
            "T x", "T y", "y = x * (0.5 * (1.0 + erf(x * 0.70710678118654752440)));", "cs_vit_gelu")
    if name == "l2_norm":
        return cupy.ReductionKernel("T x", "T y", "x * x", "a + b", "y = sqrt(a)", "0",
                                    "cs_vit_l2_norm")
    if name == "clip":
        return cupy.ElementwiseKernel(
            "raw T norm, T max_norm, T eps", "T g",
            "T coef = max_norm / (norm[0] + eps); if (coef < 1) g = g * coef;", "cs_vit_clip")
    update = ("if (decay != 0) p = p * decay_factor;"
              "m = beta1 * m + one_minus_beta1 * g;"
              "v = beta2 * v + one_minus_beta2 * g * g;"
              "p = p - step_size * m / (sqrt(v) / sqrt_bias_correction2 + eps);")
    constants = "T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T eps"
    if name == "adamw":
        return cupy.ElementwiseKernel(
            f"T g, T decay, T step_size, T decay_factor, T sqrt_bias_correction2, {constants}",
            "T p, T m, T v", update, "cs_vit_adamw")
    if name == "adamw_device_hyper":  # the step's numbers read from the GPU (CUDA graphs)
        return cupy.ElementwiseKernel(
            f"T g, T decay, raw T hyper, {constants}", "T p, T m, T v",
            "T step_size = hyper[0], decay_factor = hyper[1], sqrt_bias_correction2 = hyper[2];"
            + update, "cs_vit_adamw_device_hyper")
    raise KeyError(name)


def gelu(x, derivative, out=None):
    """(gelu(x), gelu'(x) if ``derivative`` else None) with the exact CDF, in one launch.

    ``out`` (without the derivative) receives gelu(x); it may be ``x`` itself, as each
    element is read before it is written.
    """
    if derivative:
        return _elementwise("gelu_with_derivative")(x)
    kernel = _elementwise("gelu")
    return (kernel(x) if out is None else kernel(x, out)), None  # CuPy takes no None for out


def l2_norm_into(x, out):
    """sqrt(sum(x * x)) into the 0-d GPU array ``out``."""
    return _elementwise("l2_norm")(x, out=out)


def clip_by_norm(g, norm, max_norm, eps):
    """g *= min(1, max_norm / (norm + eps)) in place, ``norm`` a 0-d GPU array."""
    _elementwise("clip")(norm, g.dtype.type(max_norm), g.dtype.type(eps), g)


def adamw(p, g, m, v, decay, betas, eps, hyper):
    """One AdamW update of the flat buffers p, m, v from g, in place.

    ``decay`` is 1 where weight decay applies, else 0. ``hyper`` holds the step's
    (step size lr / (1 - beta1^t), 1 - lr * weight_decay, sqrt(1 - beta2^t)):
    a tuple of numbers, or a (3,) GPU array (what a CUDA graph reads at replay).
    """
    t = p.dtype.type
    beta1, beta2 = betas
    constants = (t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(eps))
    if isinstance(hyper, tuple):
        _elementwise("adamw")(g, decay, *(t(h) for h in hyper), *constants, p, m, v)
    else:
        _elementwise("adamw_device_hyper")(g, decay, hyper, *constants, p, m, v)
