"""One pre-norm transformer encoder block, the unit a ViT stacks ``depth`` times."""
from __future__ import annotations

from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.attention import MultiHeadAttention
from cs_vit.layers.base import Layer, keep
from cs_vit.layers.dropout import Dropout
from cs_vit.layers.layernorm import LayerNorm
from cs_vit.layers.mlp import MLP


class TransformerEncoderBlock(Layer):
    """Pre-LN block: ``x = x + attn_out_drop(attn(norm1(x)))``; ``x = x + mlp(norm2(x))``.

    Matches torch's ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu",
    batch_first=True)``: ``dropout`` is the drop probability after the attention
    output projection and inside the MLP; ``attention_dropout`` drops attention
    weights inside ``attn``. Sub-layer names follow timm: ``norm1``, ``attn``,
    ``norm2``, ``mlp``. ``norm_eps`` is 1e-5 in torch's layer, 1e-6 in ViTs.
    """

    def __init__(self, dim, num_heads, mlp_dim, dropout=0.0, attention_dropout=0.0,
                 norm_eps=1e-5):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=norm_eps)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=attention_dropout)
        self.attn_out_drop = Dropout(dropout)
        self.norm2 = LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, mlp_dim, dropout=dropout)
        self.output_shape = None

    def forward(self, x, attn_mask=None):
        """x: (N, T, D) -> out: (N, T, D). attn_mask: (T, T) or (N, T, T); 0 blocks."""
        check_float_array(x, "x", "TransformerEncoderBlock")
        if x.ndim != 3 or x.shape[2] != self.norm1.dim:
            raise ValueError(f"TransformerEncoderBlock expected x of shape (N, T, "
                             f"D={self.norm1.dim}), got shape {x.shape}")
        self.output_shape = keep(x.shape)
        out = None
        # BEGIN SOLUTION task7
        # HINT: two pre-norm residual branches, each added to its own input (N, T, D): first
        # HINT: norm1 -> attn (self-attention, with attn_mask) -> attn_out_drop, then
        # HINT: norm2 -> mlp
        x = x + self.attn_out_drop(self.attn(self.norm1(x), attn_mask=attn_mask))
        out = x + self.mlp(self.norm2(x))
        # END SOLUTION
        return out

    def backward(self, dout):
        """dout: (N, T, D) -> dx: (N, T, D); each residual adds its skip path's gradient."""
        check_dout(dout, self.output_shape, "TransformerEncoderBlock")
        dx = None
        # BEGIN SOLUTION task7
        # HINT: the branches in reverse order, each through its sub-layers' backward in reverse;
        # HINT: a residual's input gets the gradient of its skip path and of its branch
        dx = dout + self.norm2.backward(self.mlp.backward(dout))
        dx = dx + self.norm1.backward(self.attn.backward(self.attn_out_drop.backward(dx)))
        # END SOLUTION
        return dx
