# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""Multi-head attention with one fused q/k/v product, keys-first scores and in-place softmax.

The same results as the textbook ``MultiHeadAttention`` (up to float rounding):

- Self-attention's q, k and v come from one (N*T, D) x (D, 3D) product, as torch's
  ``in_proj``, with q_proj's rows scaled by 1 / sqrt(Dh): q comes out scaled for free.
- Scores are stored keys first, (T, N, num_heads, S): NumPy reduces over axis 0
  several times faster than over a short last axis. The softmax and its backward
  run in place on that array.
- Products write into their final layouts (``out=``), so no merge copy is made
  (on NumPy; cuBLAS writes these interleaved layouts through a temporary and a copy).
- On the GPU, each softmax and its backward is one kernel (``cuda_kernels``), and each
  product one cuBLAS call that a CUDA graph can capture (``cublas``).
- Inference on the GPU (inside ``no_grad()``, no mask, no attention dropout) skips the
  scores altogether: one kernel computes softmax(q k^T) v a query at a time, with a
  running maximum (the online softmax of FlashAttention), so that the pass holds
  neither the (N, num_heads, S, T) scores nor copies of q, k and v (nor does torch's
  fused attention, which its inference takes).
"""
from __future__ import annotations

import math

from cs_vit.backend import xp
from cs_vit.checks import check_dout
from cs_vit.fast import cuda_kernels
from cs_vit.fast.cublas import matmul
from cs_vit.fast.reductions import sum_leading
from cs_vit.layers.attention import MultiHeadAttention, input_gradients, merge_heads, split_heads
from cs_vit.layers.base import keep, keeping

# The streamed kernel keeps two head-sized rows per thread: in registers for float32 up to
# 64, partly spilled to (cached) local memory beyond; correct either way.
MAX_STREAMED_HEAD_DIM = 128


def keys_first_products(a, b):
    """a @ b^T for every batch element and head, stored keys first.

    a: (N, num_heads, S, Dh), b: (N, num_heads, T, Dh) -> (T, N, num_heads, S).
    a^T is copied into row-major (Dh, S) matrices first: NumPy's batched matmul
    runs about twice as fast on them as on a transposed view.
    """
    N, num_heads, S, _ = a.shape
    out = xp.empty((b.shape[2], N, num_heads, S), dtype=xp.result_type(a, b))
    a_transposed = xp.ascontiguousarray(a.transpose(0, 1, 3, 2))  # (N, num_heads, Dh, S)
    matmul(b, a_transposed, out=out.transpose(1, 2, 0, 3))
    return out


def queries_first(x):
    """(T, N, num_heads, S) keys-first array -> its (N, num_heads, S, T) view."""
    return x.transpose(1, 2, 3, 0)


def masked_softmax_keys_first(scores, blocked):
    """Softmax over axis 0 (the keys) of keys-first scores, in place; blocked entries get 0."""
    if blocked is None and _one_gpu_kernel(scores):
        return cuda_kernels.softmax_keys_first(scores)
    if blocked is not None:
        scores = xp.where(blocked, -math.inf, scores)
    row_max = scores.max(axis=0)
    scores -= xp.where(xp.isfinite(row_max), row_max, 0.0)
    exp_scores = xp.exp(scores, out=scores)
    row_sum = exp_scores.sum(axis=0)
    exp_scores /= xp.where(row_sum > 0, row_sum, 1.0)
    return exp_scores


def softmax_backward_keys_first(attn, dattn):
    """dscores = attn * (dattn - sum over the keys of dattn * attn), written over ``dattn``."""
    if _one_gpu_kernel(attn, dattn):
        return cuda_kernels.softmax_backward_keys_first(attn, dattn)
    dattn -= (dattn * attn).sum(axis=0)
    dattn *= attn
    return dattn


def _one_gpu_kernel(*arrays):
    """Whether the keys-first softmax kernels apply: C-contiguous CuPy arrays."""
    return cuda_kernels.on_gpu(*arrays) and all(a.flags.c_contiguous for a in arrays)


def qkv_gradients(dscores, dcontext, q, k, attn_dropped, out=(None, None, None)):
    """dq, dk, dv (each (N, num_heads, ., Dh)) through scores = q k^T and context = attn v."""
    dq = matmul(dscores, k, out=out[0])
    dk = matmul(dscores.transpose(0, 1, 3, 2), q, out=out[1])
    dv = matmul(attn_dropped.transpose(0, 1, 3, 2), dcontext, out=out[2])
    return dq, dk, dv


def fused_qkv(layer, x):
    """Self-attention's q (scaled), k, v from x (N, T, D) in one product.

    Returns three (N, num_heads, T, Dh) views of the (N, T, 3, num_heads, Dh) result.
    """
    projections = (layer.q_proj, layer.k_proj, layer.v_proj)
    weight = xp.concatenate([p.params["weight"] for p in projections])  # (3D, D)
    bias = xp.concatenate([p.params["bias"] for p in projections])      # (3D,)
    N, T, D = x.shape
    weight[:D] *= layer.scale  # q's rows: the product then gives q already scaled
    bias[:D] *= layer.scale
    qkv = matmul(x.reshape(N * T, D), weight.T)
    qkv += bias
    layer.qkv_cache = keep((x, weight))
    return qkv.reshape(N, T, 3, layer.num_heads, layer.head_dim).transpose(2, 0, 3, 1, 4)


def fused_qkv_backward(layer, dqkv):
    """dqkv: (N, T, 3, num_heads, Dh) -> dx: (N, T, D); fills q/k/v_proj's grads."""
    x, weight = layer.qkv_cache
    N, T, D = x.shape
    dqkv = dqkv.reshape(N * T, 3 * D)
    dweight = matmul(dqkv.T, x.reshape(N * T, D))
    dbias = sum_leading(dqkv)
    dweight[:D] *= layer.scale
    dbias[:D] *= layer.scale
    for i, projection in enumerate((layer.q_proj, layer.k_proj, layer.v_proj)):
        rows = slice(i * D, (i + 1) * D)
        projection.grads["weight"] = dweight[rows]
        projection.grads["bias"] = dbias[rows]
    return matmul(dqkv, weight).reshape(N, T, D)


def projected_heads(layer, query, key, value):
    """q (scaled), k, v, each (N, num_heads, ., Dh), from the inputs (N, ., D)."""
    if layer.inputs_given == 0:
        return fused_qkv(layer, query)
    q = split_heads(layer.q_proj(query), layer.num_heads) * layer.scale
    k = split_heads(layer.k_proj(key), layer.num_heads)
    v = split_heads(layer.v_proj(value), layer.num_heads)
    return q, k, v


def uses_streamed_attention(layer, query, key, blocked):
    """Whether this forward pass takes the GPU kernel that stores no scores: inference
    (nothing kept for backward, no attention dropout), no mask, at least one key, and
    heads of at most MAX_STREAMED_HEAD_DIM features."""
    dropping = layer.training and layer.attn_drop.p > 0
    return (cuda_kernels.on_gpu(query, key) and not keeping() and not dropping
            and blocked is None and key.shape[1] > 0 and layer.head_dim <= MAX_STREAMED_HEAD_DIM)


def streamed_context(layer, query, key, value):
    """The attention's output before ``out_proj``, (N, S, D), in one kernel launch.

    Only the context is made: no score matrix, and the projections are freed on return.
    """
    q, k, v = projected_heads(layer, query, key, value)
    dtype = xp.result_type(q, k, v)
    context = cuda_kernels.attention_context(*(a.astype(dtype, copy=False) for a in (q, k, v)))
    return context.reshape(query.shape[0], query.shape[1], layer.embed_dim)


def attention_forward(self, query, key=None, value=None, attn_mask=None):
    """Same contract as ``MultiHeadAttention.forward``."""
    key, value, blocked = self.take_inputs(query, key, value, attn_mask)
    if uses_streamed_attention(self, query, key, blocked):
        self.attn_weights, self.cache = None, None  # as the textbook keeps under no_grad()
        return self.out_proj(streamed_context(self, query, key, value))
    q, k, v = projected_heads(self, query, key, value)  # q already scaled
    scores = keys_first_products(q, k)  # (T, N, num_heads, S)
    if blocked is not None:
        blocked = xp.broadcast_to(blocked, queries_first(scores).shape).transpose(3, 0, 1, 2)
    attn = masked_softmax_keys_first(scores, blocked)
    # Dropout sees the (N, num_heads, S, T) view, so it draws the textbook layer's mask.
    attn_dropped = self.attn_drop(queries_first(attn))
    N, S, _ = query.shape
    context = xp.empty((N, S, self.num_heads, self.head_dim), dtype=xp.result_type(attn, v))
    matmul(attn_dropped, v, out=context.transpose(0, 2, 1, 3))
    self.attn_weights = keep(queries_first(attn))
    self.cache = keep((q, k, v, attn, attn_dropped))
    return self.out_proj(context.reshape(N, S, self.embed_dim))


def attention_backward(self, dout):
    """Same contract as ``MultiHeadAttention.backward``, from ``attention_forward``'s cache."""
    check_dout(dout, self.output_shape, "MultiHeadAttention")
    q, k, v, attn, attn_dropped = self.cache
    dcontext = split_heads(self.out_proj.backward(dout), self.num_heads)
    dattn = self.attn_drop.backward(queries_first(keys_first_products(dcontext, v)))
    dscores = queries_first(softmax_backward_keys_first(attn, dattn.transpose(3, 0, 1, 2)))
    if self.inputs_given == 0:
        # dq, dk, dv go into one buffer laid out as the fused projection's output.
        dqkv = xp.empty((q.shape[0], q.shape[2], 3, self.num_heads, self.head_dim), dtype=q.dtype)
        qkv_gradients(dscores, dcontext, q, k, attn_dropped, out=dqkv.transpose(2, 0, 3, 1, 4))
        return fused_qkv_backward(self, dqkv)
    dq, dk, dv = qkv_gradients(dscores, dcontext, q, k, attn_dropped)
    dq *= self.scale  # q = q_proj(query) * scale
    dquery = self.q_proj.backward(merge_heads(dq))
    dkey = self.k_proj.backward(merge_heads(dk))
    dvalue = self.v_proj.backward(merge_heads(dv))
    return input_gradients(dquery, dkey, dvalue, self.inputs_given)


REPLACEMENTS = {MultiHeadAttention.forward: attention_forward,
                MultiHeadAttention.backward: attention_backward}
