"""Positional encodings: add a (T, D) table that tells each token where it sits.

Attention alone is blind to order, so every token gets a position-dependent
vector added: a fixed sin-cos table (1-D as in "Attention Is All You Need",
or 2-D over the patch grid as in MAE / MoCo v3) or a learned one (as in ViT).
"""
from __future__ import annotations

from cs_vit import backend
from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import Layer
from cs_vit.layers.dropout import Dropout
from cs_vit.layers.init import trunc_normal
from cs_vit.layers.patch_embedding import as_pair


def sincos_1d(positions, dim):
    """Sin-cos table: positions (T,) -> (T, dim) in the default dtype.

    Column j holds sin(pos * 10000^(-j/dim)) for even j and
    cos(pos * 10000^(-(j-1)/dim)) for odd j.
    """
    # Computed in float64 so that a float32 table is the correctly rounded one.
    positions = xp.asarray(positions, dtype=xp.float64)
    # BEGIN SOLUTION task2
    # HINT: table[pos, 2i] = sin(pos / 10000^(2i/dim)) and table[pos, 2i+1] = cos of the
    # HINT: same angle; build table (T, dim) in float64 (dim may be odd)
    exponents = xp.arange(0, dim, 2, dtype=xp.float64) / dim
    angles = positions[:, None] * 10000.0 ** -exponents[None, :]
    table = xp.empty((positions.shape[0], dim), dtype=xp.float64)
    table[:, 0::2] = xp.sin(angles)
    table[:, 1::2] = xp.cos(angles[:, : dim // 2])
    # END SOLUTION
    return table.astype(backend.default_dtype())


def _sin_then_cos(positions, dim):
    """positions (T,) -> (T, dim) laid out as MAE's: [sin block | cos block]."""
    table = sincos_1d(positions, dim)
    return xp.concatenate([table[:, 0::2], table[:, 1::2]], axis=1)


class _AddedTable(Layer):
    """Base: ``out = dropout(x + table)``; a subclass defines ``_table(T)``.

    ``_table(T)`` returns an array broadcastable to (N, T, D) and raises a
    ValueError when the encoding cannot serve T tokens.
    """

    def __init__(self, embed_dim, dropout):
        super().__init__()
        self.embed_dim = embed_dim
        self.dropout = Dropout(dropout)

    def forward(self, x):
        """x: (N, T, D) -> out: (N, T, D)."""
        check_float_array(x, "x", type(self).__name__)
        if x.ndim != 3 or x.shape[2] != self.embed_dim:
            raise ValueError(
                f"{type(self).__name__} expected tokens of shape (N, T, D) with "
                f"D = embed_dim = {self.embed_dim}, got shape {x.shape}"
            )
        return self.dropout.forward(x + self._table(x.shape[1]))

    def backward(self, dout):
        """dout: (N, T, D) -> dx: (N, T, D)."""
        check_dout(dout, self.dropout.input_shape, type(self).__name__)
        return self.dropout.backward(dout)


class SinusoidalPositionalEncoding(_AddedTable):
    """Fixed 1-D sin-cos encoding of the token index (a buffer, not a parameter).

    ``table``: (max_len, D); forward adds its first T rows. ``dropout`` is the
    probability of dropping, as in ``torch.nn.Dropout``.
    """

    def __init__(self, embed_dim, max_len=5000, dropout=0.0):
        super().__init__(embed_dim, dropout)
        self.max_len = max_len
        self.table = sincos_1d(xp.arange(max_len), embed_dim)

    def _table(self, T):
        if T > self.max_len:
            raise ValueError(
                f"SinusoidalPositionalEncoding got T={T} tokens but max_len is "
                f"{self.max_len}; build it with max_len >= {T}"
            )
        return self.table[:T]


class SinusoidalPositionalEncoding2D(_AddedTable):
    """Fixed 2-D sin-cos encoding of each patch's (row, column), as in MAE / MoCo v3.

    The first D/2 dims encode the column and the last D/2 the row, each as
    [sin block | cos block] with frequencies 1/10000^(k/(D/4)). Tokens are in
    reading order, after ``num_prefix_tokens`` zero rows (e.g. for a CLS token).
    ``table``: (num_prefix_tokens + gh*gw, D), a buffer.
    """

    def __init__(self, embed_dim, grid_size, dropout=0.0, num_prefix_tokens=0):
        if embed_dim % 4 != 0:
            raise ValueError(
                f"SinusoidalPositionalEncoding2D needs embed_dim divisible by 4 (a sin and a "
                f"cos half for rows and for columns), got embed_dim={embed_dim}"
            )
        super().__init__(embed_dim, dropout)
        self.grid_size = as_pair(grid_size, "grid_size")
        self.num_prefix_tokens = num_prefix_tokens
        gh, gw = self.grid_size
        rows, cols = xp.divmod(xp.arange(gh * gw), gw)
        grid = xp.concatenate(
            [_sin_then_cos(cols, embed_dim // 2), _sin_then_cos(rows, embed_dim // 2)], axis=1
        )
        prefix = xp.zeros((num_prefix_tokens, embed_dim), dtype=grid.dtype)
        self.table = xp.concatenate([prefix, grid], axis=0)

    def _table(self, T):
        expected = self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
        if T != expected:
            raise ValueError(
                f"SinusoidalPositionalEncoding2D expected T = num_prefix_tokens + gh*gw = "
                f"{self.num_prefix_tokens} + {self.grid_size[0]}*{self.grid_size[1]} = {expected} "
                f"tokens, got T={T}"
            )
        return self.table


class LearnedPositionalEmbedding(_AddedTable):
    """A learned vector per position, as in ViT.

    Param ``pos_embed``: (1, num_positions, D), truncated normal with std 0.02.
    """

    def __init__(self, num_positions, embed_dim, dropout=0.0):
        super().__init__(embed_dim, dropout)
        self.num_positions = num_positions
        self.add_param("pos_embed", trunc_normal((1, num_positions, embed_dim), std=0.02))

    def _table(self, T):
        if T != self.num_positions:
            raise ValueError(
                f"LearnedPositionalEmbedding expected T = num_positions = {self.num_positions} "
                f"tokens, got T={T}"
            )
        return self.params["pos_embed"]

    def backward(self, dout):
        """dout: (N, T, D) -> dx: (N, T, D); fills grads["pos_embed"]."""
        dx = super().backward(dout)
        # BEGIN SOLUTION task2
        # HINT: the same table is added to every image of the batch
        self.grads["pos_embed"] = dx.sum(axis=0, keepdims=True)
        # END SOLUTION
        return dx
