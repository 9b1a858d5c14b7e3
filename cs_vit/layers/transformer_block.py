"""One pre-norm transformer encoder block, the unit a ViT stacks ``depth`` times."""
from __future__ import annotations

from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.attention import MultiHeadAttention
from cs_vit.layers.base import Layer
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
        self.first_tokens = None

    def forward(self, x, attn_mask=None, first_tokens=None):
        """x: (N, T, D) -> out: (N, T, D). attn_mask: (T, T) or (N, T, T); 0 blocks.

        ``first_tokens=k`` computes the output of the first k tokens only, (N, k, D):
        they still attend to all T tokens, so their rows equal the full output's.
        A ViT's last block needs only its CLS token, which saves most of that block.
        """
        check_float_array(x, "x", "TransformerEncoderBlock")
        if x.ndim != 3 or x.shape[2] != self.norm1.dim:
            raise ValueError(f"TransformerEncoderBlock expected x of shape (N, T, "
                             f"D={self.norm1.dim}), got shape {x.shape}")
        self.first_tokens = first_tokens
        # BEGIN SOLUTION task7
        # HINT: two pre-norm residual branches: x + attn_out_drop(attn(norm1(x))), then x +
        # HINT: mlp(norm2(x)). With first_tokens=k, only the first k tokens of norm1(x) are
        # HINT: queries (keys and values stay all tokens) and only x[:, :k] goes on
        if first_tokens is None:
            x = x + self.attn_out_drop(self.attn(self.norm1(x), attn_mask=attn_mask))
        else:
            normed = self.norm1(x)
            queries = normed[:, :first_tokens]
            mask = None if attn_mask is None else attn_mask[..., :first_tokens, :]
            x = x[:, :first_tokens] + self.attn_out_drop(self.attn(queries, normed, attn_mask=mask))
        return x + self.mlp(self.norm2(x))
        # END SOLUTION

    def backward(self, dout):
        """dout: (N, T or first_tokens, D) -> dx: (N, T, D); each residual adds its skip path's gradient."""
        check_dout(dout, self.attn_out_drop.input_shape, "TransformerEncoderBlock")
        # BEGIN SOLUTION task7
        # HINT: each residual passes dout straight through and adds its branch's backward.
        # HINT: With first_tokens=k, norm1(x) fed the keys/values of every token and the
        # HINT: queries of the first k: their gradients add up there, as do the skip paths
        dx = dout + self.norm2.backward(self.mlp.backward(dout))
        dattn = self.attn.backward(self.attn_out_drop.backward(dx))
        if self.first_tokens is None:
            return dx + self.norm1.backward(dattn)
        dqueries, dnormed = dattn  # dnormed: (N, T, D), the keys' and values' share
        dnormed[:, :self.first_tokens] += dqueries
        dinput = self.norm1.backward(dnormed)
        dinput[:, :self.first_tokens] += dx
        return dinput
        # END SOLUTION
