"""Multi-head scaled dot-product attention, as torch's ``nn.MultiheadAttention``.

Each head h attends with its own slice of the projected queries, keys and values:
``A_h = softmax(q_h k_h^T / sqrt(Dh))`` and ``out_h = A_h v_h``; the heads are
concatenated and mixed by ``out_proj``. All heads run in one batched matmul on
(N, num_heads, S, Dh) arrays.
"""
from __future__ import annotations

import math

from cs_vit.backend import xp
from cs_vit.layers.base import Layer
from cs_vit.layers.dropout import Dropout
from cs_vit.layers.linear import Linear


def _split_heads(x, num_heads):
    """(N, S, D) -> (N, num_heads, S, Dh)."""
    N, S, D = x.shape
    return x.reshape(N, S, num_heads, D // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(x):
    """(N, num_heads, S, Dh) -> (N, S, D); the inverse of ``_split_heads``."""
    N, num_heads, S, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(N, S, num_heads * Dh)


def _check_inputs(query, key, value, attn_mask, embed_dim):
    """Raise a ValueError naming the argument whose shape does not fit."""
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


def _masked_softmax(scores, blocked):
    """Softmax over the last axis that gives blocked entries weight 0.

    A row with every entry blocked has no finite score; it gets all-zero weights
    instead of the NaN that 0/0 would give.
    """
    if blocked is not None:
        scores = xp.where(blocked, -math.inf, scores)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = xp.where(xp.isfinite(row_max), row_max, 0.0)
    exp_scores = xp.exp(scores - row_max)
    row_sum = exp_scores.sum(axis=-1, keepdims=True)
    return exp_scores / xp.where(row_sum > 0, row_sum, 1.0)


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

        q = _split_heads(self.q_proj(query), self.num_heads)  # (N, num_heads, S, Dh)
        k = _split_heads(self.k_proj(key), self.num_heads)    # (N, num_heads, T, Dh)
        v = _split_heads(self.v_proj(value), self.num_heads)  # (N, num_heads, T, Dh)
        scores = xp.matmul(q, k.transpose(0, 1, 3, 2)) * self.scale  # (N, num_heads, S, T)
        attn = _masked_softmax(scores, blocked)
        attn_dropped = self.attn_drop(attn)
        context = xp.matmul(attn_dropped, v)  # (N, num_heads, S, Dh)

        self.attn_weights = attn
        self.cache = (q, k, v, attn, attn_dropped, inputs_given)
        return self.out_proj(_merge_heads(context))

    def backward(self, dout):
        """dout: (N, S, D) -> input gradients; fills every projection's grads.

        Returns dx (N, S, D) for self-attention, (dquery, dkey) when only key was
        given (dkey includes value's share), and (dquery, dkey, dvalue) otherwise.
        """
        q, k, v, attn, attn_dropped, inputs_given = self.cache
        dcontext = _split_heads(self.out_proj.backward(dout), self.num_heads)
        dattn_dropped = xp.matmul(dcontext, v.transpose(0, 1, 3, 2))
        dv = xp.matmul(attn_dropped.transpose(0, 1, 3, 2), dcontext)
        dattn = self.attn_drop.backward(dattn_dropped)
        # Softmax backward in one reduction; blocked entries have attn = 0, so get no gradient.
        dscores = attn * (dattn - (dattn * attn).sum(axis=-1, keepdims=True)) * self.scale
        dq = xp.matmul(dscores, k)
        dk = xp.matmul(dscores.transpose(0, 1, 3, 2), q)

        dquery = self.q_proj.backward(_merge_heads(dq))
        dkey = self.k_proj.backward(_merge_heads(dk))
        dvalue = self.v_proj.backward(_merge_heads(dv))
        if inputs_given == 0:
            return dquery + dkey + dvalue
        if inputs_given == 1:
            return dquery, dkey + dvalue
        return dquery, dkey, dvalue
