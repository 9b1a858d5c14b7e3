"""Multi-head scaled dot-product attention, as torch's ``nn.MultiheadAttention``.

Each head h attends with its own slice of the projected queries, keys and values:
``A_h = softmax(q_h k_h^T / sqrt(Dh))`` and ``out_h = A_h v_h``; the heads are
concatenated and mixed by ``out_proj``. All heads run in one batched matmul on
(N, num_heads, S, Dh) arrays. As in timm, the queries are scaled by 1 / sqrt(Dh)
before the product, which costs less than scaling the (S, T) scores.
"""
from __future__ import annotations

import math

from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import Layer, keep
from cs_vit.layers.dropout import Dropout
from cs_vit.layers.linear import Linear
from cs_vit.layers.reductions import sum_leading


def _split_heads(x, num_heads):
    """(N, S, D) -> (N, num_heads, S, Dh)."""
    N, S, D = x.shape
    return x.reshape(N, S, num_heads, D // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(x):
    """(N, num_heads, S, Dh) -> (N, S, D); the inverse of ``_split_heads``."""
    N, num_heads, S, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(N, S, num_heads * Dh)


def _check_inputs(query, key, value, attn_mask, embed_dim):
    """Raise a TypeError/ValueError naming the argument whose dtype or shape does not fit."""
    for arg, array in (("query", query), ("key", key), ("value", value)):
        check_float_array(array, arg, "MultiHeadAttention")
    if query.ndim != 3 or query.shape[-1] != embed_dim:
        raise ValueError(
            f"query must have shape (N, S, embed_dim={embed_dim}), got shape {query.shape}"
        )
    N, S, _ = query.shape
    if key.ndim != 3 or key.shape[0] != N or key.shape[-1] != embed_dim:
        raise ValueError(
            f"key must have shape (N={N}, T, embed_dim={embed_dim}) to match query "
            f"{query.shape}, got shape {key.shape}"
        )
    if value.shape != key.shape:
        raise ValueError(
            f"value must have the same shape as key {key.shape} (one value per key token), "
            f"got shape {value.shape}"
        )
    T = key.shape[1]
    if attn_mask is not None and attn_mask.shape not in ((S, T), (N, S, T)):
        raise ValueError(
            f"attn_mask must have shape (S, T)=({S}, {T}) or (N, S, T)=({N}, {S}, {T}), "
            f"got shape {attn_mask.shape}"
        )


def _blocked(attn_mask):
    """Boolean array, True where attention is blocked, broadcastable to (N, num_heads, S, T)."""
    mask = xp.asarray(attn_mask)
    if mask.dtype != bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(
                "attn_mask must be boolean or hold only 0 and 1 (0 blocks attention); "
                "it is not an additive mask of 0 and -inf as in torch"
            )
        mask = mask != 0
    blocked = ~mask
    return blocked[:, None] if blocked.ndim == 3 else blocked


def _keys_first_products(a, b):
    """a @ b^T for every batch element and head, stored keys first.

    a: (N, num_heads, S, Dh), b: (N, num_heads, T, Dh) -> (T, N, num_heads, S).
    Softmax over the keys then reduces over axis 0, which NumPy does several
    times faster than over a short last axis; ``_queries_first`` gives the
    usual (N, num_heads, S, T) view of the result. a^T is copied into row-major
    (Dh, S) matrices first: NumPy's batched matmul runs about twice as fast on
    them as on a transposed view, which more than pays for the copy.
    """
    N, num_heads, S, _ = a.shape
    out = xp.empty((b.shape[2], N, num_heads, S), dtype=xp.result_type(a, b))
    a_transposed = xp.ascontiguousarray(a.transpose(0, 1, 3, 2))  # (N, num_heads, Dh, S)
    xp.matmul(b, a_transposed, out=out.transpose(1, 2, 0, 3))
    return out


def _queries_first(x):
    """(T, N, num_heads, S) keys-first array -> its (N, num_heads, S, T) view."""
    return x.transpose(1, 2, 3, 0)


def _masked_softmax(scores, blocked):
    """Softmax over the keys (axis 0 of keys-first scores), in place; blocked entries get 0.

    A row with every entry blocked has no finite score; it gets all-zero weights
    instead of the NaN that 0/0 would give.
    """
    # BEGIN SOLUTION task5
    # HINT: softmax over axis 0 (the keys) of keys-first scores, in place: subtract each
    # HINT: row's max, exp, divide by the sum; blocked entries get weight 0, and a row with
    # HINT: every key blocked all zeros (not NaN)
    if blocked is not None:
        scores = xp.where(blocked, -math.inf, scores)
    row_max = scores.max(axis=0)
    scores -= xp.where(xp.isfinite(row_max), row_max, 0.0)
    exp_scores = xp.exp(scores, out=scores)
    row_sum = exp_scores.sum(axis=0)
    exp_scores /= xp.where(row_sum > 0, row_sum, 1.0)
    return exp_scores
    # END SOLUTION


def _softmax_backward(attn, dattn):
    """Gradient of the (keys-first) scores from that of ``attn = softmax(scores)``, over ``dattn``.

    dscores = attn * (dattn - sum(dattn * attn)), one reduction per query; blocked
    entries have attn = 0, so they get no gradient.
    """
    # BEGIN SOLUTION task5
    # HINT: dscores = attn * (dattn - sum over the keys of dattn * attn), written over dattn
    dattn -= (dattn * attn).sum(axis=0)
    dattn *= attn
    return dattn
    # END SOLUTION


def _qkv_gradients(dscores, dcontext, q, k, attn_dropped, out=(None, None, None)):
    """dq, dk, dv (each (N, num_heads, ., Dh)) through scores = q k^T and context = attn v.

    ``out`` optionally names three arrays to write them into.
    """
    # BEGIN SOLUTION task5
    # HINT: scores = q k^T and context = attn_dropped v, so dq = dscores k, dk = dscores^T q
    # HINT: and dv = attn_dropped^T dcontext (per batch element and head; pass out=out[i])
    dq = xp.matmul(dscores, k, out=out[0])
    dk = xp.matmul(dscores.transpose(0, 1, 3, 2), q, out=out[1])
    dv = xp.matmul(attn_dropped.transpose(0, 1, 3, 2), dcontext, out=out[2])
    return dq, dk, dv
    # END SOLUTION


class MultiHeadAttention(Layer):
    """Multi-head attention with separate q/k/v/out projections (D -> D each).

    Sub-layers: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (Linear) and
    ``attn_drop`` (Dropout with drop probability ``dropout`` on the attention
    weights). After each forward, ``attn_weights`` holds the weights before
    dropout, shape (N, num_heads, S, T), for visualisation.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}; each head "
                f"gets embed_dim // num_heads features, so choose num_heads dividing embed_dim"
            )
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)
        self.attn_drop = Dropout(dropout)
        self.attn_weights = None
        self.cache = None
        self.qkv_cache = None

    def forward(self, query, key=None, value=None, attn_mask=None):
        """Attend from ``query`` to ``key``/``value``.

        query: (N, S, D); key, value: (N, T, D). ``key=None`` is self-attention
        (key = value = query); ``value=None`` uses value = key.
        attn_mask: (S, T) or (N, S, T), bool or 0/1; 0/False blocks attention.
        Returns out: (N, S, D).
        """
        if key is None and value is not None:
            raise ValueError("value was given without key; pass key as well (or neither)")
        inputs_given = (key is not None) + (value is not None)
        key = query if key is None else key
        value = key if value is None else value
        _check_inputs(query, key, value, attn_mask, self.embed_dim)
        blocked = None if attn_mask is None else _blocked(attn_mask)

        if inputs_given == 0:
            q, k, v = self._fused_qkv(query)  # each (N, num_heads, T, Dh), q already scaled
        else:
            q = _split_heads(self.q_proj(query), self.num_heads)  # (N, num_heads, S, Dh)
            q *= self.scale
            k = _split_heads(self.k_proj(key), self.num_heads)    # (N, num_heads, T, Dh)
            v = _split_heads(self.v_proj(value), self.num_heads)  # (N, num_heads, T, Dh)
        # BEGIN SOLUTION task5
        # HINT: scores = q k^T (q is already scaled), keys first (_keys_first_products);
        # HINT: attn = _masked_softmax(scores, blocked moved keys first); attn_dropped =
        # HINT: self.attn_drop(attn); context (N, S, num_heads, Dh) = attn_dropped v
        scores = _keys_first_products(q, k)  # q k^T / sqrt(Dh), (T, N, num_heads, S)
        if blocked is not None:
            blocked = xp.broadcast_to(blocked, _queries_first(scores).shape).transpose(3, 0, 1, 2)
        attn = _masked_softmax(scores, blocked)
        attn_dropped = self.attn_drop(attn)
        # The heads' outputs go straight into their (N, S, num_heads, Dh) slots: no merge copy.
        N, S, _ = query.shape
        context = xp.empty((N, S, self.num_heads, self.head_dim),
                           dtype=xp.result_type(attn_dropped, v))
        xp.matmul(_queries_first(attn_dropped), v, out=context.transpose(0, 2, 1, 3))
        # END SOLUTION

        self.attn_weights = keep(_queries_first(attn))
        self.cache = keep((q, k, v, attn, attn_dropped, inputs_given))
        return self.out_proj(context.reshape(N, S, self.embed_dim))

    def backward(self, dout):
        """dout: (N, S, D) -> input gradients; fills every projection's grads.

        Returns dx (N, S, D) for self-attention, (dquery, dkey) when only key was
        given (dkey includes value's share), and (dquery, dkey, dvalue) otherwise.
        """
        context = self.out_proj.x  # (N, S, D), the shape of the output
        check_dout(dout, None if context is None else context.shape, "MultiHeadAttention")
        q, k, v, attn, attn_dropped, inputs_given = self.cache
        # BEGIN SOLUTION task5
        # HINT: reverse the forward: out_proj and the heads give dcontext; then attn_dropped
        # HINT: v, the dropout and the softmax (_softmax_backward) give dscores (queries
        # HINT: first for _qkv_gradients)
        dcontext = _split_heads(self.out_proj.backward(dout), self.num_heads)
        dattn = self.attn_drop.backward(_keys_first_products(dcontext, v))
        dscores = _softmax_backward(attn, dattn)
        dscores, attn_dropped = _queries_first(dscores), _queries_first(attn_dropped)
        # END SOLUTION
        if inputs_given == 0:
            # dq, dk, dv go into one buffer laid out as the fused projection's output.
            dqkv = xp.empty((q.shape[0], q.shape[2], 3, self.num_heads, self.head_dim),
                            dtype=q.dtype)
            _qkv_gradients(dscores, dcontext, q, k, attn_dropped, out=dqkv.transpose(2, 0, 3, 1, 4))
            return self._fused_qkv_backward(dqkv)

        dq, dk, dv = _qkv_gradients(dscores, dcontext, q, k, attn_dropped)
        dq *= self.scale  # q = q_proj(query) * scale
        dquery = self.q_proj.backward(_merge_heads(dq))
        dkey = self.k_proj.backward(_merge_heads(dk))
        dvalue = self.v_proj.backward(_merge_heads(dv))
        if inputs_given == 1:
            return dquery, dkey + dvalue
        return dquery, dkey, dvalue

    def _fused_qkv(self, x):
        """Self-attention's q, k, v from x (N, T, D) in one GEMM, as torch's ``in_proj``.

        The same as ``_split_heads(self.q_proj(x), num_heads) * scale`` and so on, but
        one (N*T, D) x (D, 3D) product is faster than three (N*T, D) x (D, D) ones, and
        scaling q_proj's weight and bias scales q for free.
        Returns three (N, num_heads, T, Dh) views of the (N, T, 3, num_heads, Dh) result.
        """
        projections = (self.q_proj, self.k_proj, self.v_proj)
        weight = xp.concatenate([p.params["weight"] for p in projections])  # (3D, D)
        bias = xp.concatenate([p.params["bias"] for p in projections])      # (3D,)
        N, T, D = x.shape
        weight[:D] *= self.scale  # q's rows: the product then gives q already scaled
        bias[:D] *= self.scale
        qkv = x.reshape(N * T, D) @ weight.T
        qkv += bias
        self.qkv_cache = keep((x, weight))
        return qkv.reshape(N, T, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)

    def _fused_qkv_backward(self, dqkv):
        """dqkv: (N, T, 3, num_heads, Dh) -> dx: (N, T, D); fills q/k/v_proj's grads.

        dqkv holds the gradients of the scaled q and of k, v; q_proj's share is scaled back.
        """
        x, weight = self.qkv_cache
        N, T, D = x.shape
        dqkv = dqkv.reshape(N * T, 3 * D)
        dweight = dqkv.T @ x.reshape(N * T, D)
        dbias = sum_leading(dqkv)
        dweight[:D] *= self.scale
        dbias[:D] *= self.scale
        for i, projection in enumerate((self.q_proj, self.k_proj, self.v_proj)):
            rows = slice(i * D, (i + 1) * D)
            projection.grads["weight"] = dweight[rows]
            projection.grads["bias"] = dbias[rows]
        return (dqkv @ weight).reshape(N, T, D)
