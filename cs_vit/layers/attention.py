"""Multi-head scaled dot-product attention, as torch's ``nn.MultiheadAttention``.

Each head h attends with its own slice of the projected queries, keys and values:
``A_h = softmax(q_h k_h^T / sqrt(Dh))`` and ``out_h = A_h v_h``; the heads are
concatenated and mixed by ``out_proj``. All heads run at once on
(N, num_heads, S, Dh) arrays: ``@`` multiplies the last two axes of every
(batch element, head) pair.
"""
from __future__ import annotations

import math

from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import Layer, keep
from cs_vit.layers.dropout import Dropout
from cs_vit.layers.linear import Linear
from cs_vit.tiers import replaceable


def split_heads(x, num_heads):
    """(N, S, D) -> (N, num_heads, S, Dh): head h gets features h*Dh .. (h+1)*Dh - 1."""
    N, S, D = x.shape
    return x.reshape(N, S, num_heads, D // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(N, num_heads, S, Dh) -> (N, S, D); the inverse of ``split_heads``."""
    N, num_heads, S, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(N, S, num_heads * Dh)


def check_attention_inputs(query, key, value, attn_mask, embed_dim):
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


def blocked_positions(attn_mask):
    """Boolean array, True where attention is blocked, broadcastable to (N, num_heads, S, T).

    attn_mask: (S, T) or (N, S, T), boolean or 0/1, where 0/False blocks attention.
    """
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


def input_gradients(dquery, dkey, dvalue, inputs_given):
    """What backward returns: dx for self-attention, else the gradient of each input given.

    Self-attention used x as query, key and value, so its gradient is the sum of
    the three; with only ``key`` given, key was also the value.
    """
    if inputs_given == 0:
        return dquery + dkey + dvalue
    if inputs_given == 1:
        return dquery, dkey + dvalue
    return dquery, dkey, dvalue


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
        self.output_shape = None
        self.inputs_given = 0

    @replaceable
    def forward(self, query, key=None, value=None, attn_mask=None):
        """Attend from ``query`` to ``key``/``value``.

        query: (N, S, D); key, value: (N, T, D). ``key=None`` is self-attention
        (key = value = query); ``value=None`` uses value = key.
        attn_mask: (S, T) or (N, S, T), bool or 0/1; 0/False blocks attention.
        Returns out: (N, S, D).
        """
        key, value, blocked = self.take_inputs(query, key, value, attn_mask)
        out, attn, cache = None, None, None
        # BEGIN SOLUTION task5
        # HINT: 1. q, k, v: project query, key and value (q_proj, k_proj, v_proj) and split the
        # HINT:    heads (split_heads): (N, num_heads, S, Dh) and (N, num_heads, T, Dh).
        # HINT: 2. scores (N, num_heads, S, T): every query against every key, times self.scale;
        # HINT:    where blocked is True a score must get no weight (-inf before the softmax).
        # HINT: 3. attn: softmax over the keys (the last axis), computed so that exp() cannot
        # HINT:    overflow; a query whose keys are all blocked gets all-zero weights, not NaN.
        # HINT: 4. self.attn_drop on attn; the weighted sum of the values per head; merge the
        # HINT:    heads (merge_heads) and apply out_proj: out (N, S, D).
        # HINT: Bind attn (before dropout, for attention maps) and set cache to a tuple of
        # HINT: what your backward needs.
        q = split_heads(self.q_proj(query), self.num_heads)
        k = split_heads(self.k_proj(key), self.num_heads)
        v = split_heads(self.v_proj(value), self.num_heads)
        scores = q @ k.transpose(0, 1, 3, 2) * self.scale
        if blocked is not None:
            scores = xp.where(blocked, -xp.inf, scores)
        row_max = scores.max(axis=-1, keepdims=True)
        row_max = xp.where(xp.isfinite(row_max), row_max, 0.0)  # a row with every key blocked
        exp_scores = xp.exp(scores - row_max)
        row_sum = exp_scores.sum(axis=-1, keepdims=True)
        attn = exp_scores / xp.where(row_sum > 0, row_sum, 1.0)
        attn_dropped = self.attn_drop(attn)
        context = attn_dropped @ v
        out = self.out_proj(merge_heads(context))
        cache = (q, k, v, attn, attn_dropped)
        # END SOLUTION
        self.attn_weights = keep(attn)
        self.cache = keep(cache)
        return out

    def take_inputs(self, query, key, value, attn_mask):
        """(key, value, blocked) for ``forward``, after checking every input.

        Fills in key = query and value = key where they are not given, records how
        many were given (``inputs_given``, which decides what backward returns) and
        the output's shape; ``blocked`` is True where a query may not attend to a key,
        broadcastable to (N, num_heads, S, T), or None without a mask.
        """
        if key is None and value is not None:
            raise ValueError("value was given without key; pass key as well (or neither)")
        self.inputs_given = (key is not None) + (value is not None)
        key = query if key is None else key
        value = key if value is None else value
        check_attention_inputs(query, key, value, attn_mask, self.embed_dim)
        self.output_shape = keep(query.shape)
        return key, value, None if attn_mask is None else blocked_positions(attn_mask)

    @replaceable
    def backward(self, dout):
        """dout: (N, S, D) -> input gradients; fills every projection's grads.

        Returns dx (N, S, D) for self-attention, (dquery, dkey) when only key was
        given (dkey includes value's share), and (dquery, dkey, dvalue) otherwise.
        """
        check_dout(dout, self.output_shape, "MultiHeadAttention")
        dquery, dkey, dvalue = None, None, None
        # BEGIN SOLUTION task5
        # HINT: go back through forward's steps in reverse order, with each array's gradient
        # HINT: shaped like the array: out_proj.backward and split_heads give dcontext
        # HINT: (N, num_heads, S, Dh); from context's product, the gradients of the dropped
        # HINT: weights (N, num_heads, S, T) and of v; attn_drop.backward; then the softmax's
        # HINT: backward, which for each query row needs attn, dattn and a sum over the keys;
        # HINT: the scale; from the scores' product dq and dk; and the three projections'
        # HINT: backward (after merge_heads) give dquery, dkey and dvalue, each (N, ., D)
        q, k, v, attn, attn_dropped = self.cache
        dcontext = split_heads(self.out_proj.backward(dout), self.num_heads)
        dattn_dropped = dcontext @ v.transpose(0, 1, 3, 2)
        dv = attn_dropped.transpose(0, 1, 3, 2) @ dcontext
        dattn = self.attn_drop.backward(dattn_dropped)
        dscores = attn * (dattn - (dattn * attn).sum(axis=-1, keepdims=True))
        dscores = dscores * self.scale
        dq = dscores @ k
        dk = dscores.transpose(0, 1, 3, 2) @ q
        dquery = self.q_proj.backward(merge_heads(dq))
        dkey = self.k_proj.backward(merge_heads(dk))
        dvalue = self.v_proj.backward(merge_heads(dv))
        # END SOLUTION
        return input_gradients(dquery, dkey, dvalue, self.inputs_given)
