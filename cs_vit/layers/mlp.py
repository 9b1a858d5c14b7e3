"""The transformer's position-wise feed-forward network (timm's ``Mlp``)."""
from __future__ import annotations

from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.activations import GELU
from cs_vit.layers.base import Layer
from cs_vit.layers.dropout import Dropout
from cs_vit.layers.linear import Linear
from cs_vit.tiers import replaceable


class MLP(Layer):
    """``fc1`` -> ``act`` (GELU) -> ``drop1`` -> ``fc2`` -> ``drop2``, on every token.

    ``dropout`` is the drop probability of both Dropout layers, placed as in
    torch's ``nn.TransformerEncoderLayer`` feed-forward block.
    """

    def __init__(self, dim, hidden_dim, dropout=0.0):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim)
        self.act = GELU()
        self.drop1 = Dropout(dropout)
        self.fc2 = Linear(hidden_dim, dim)
        self.drop2 = Dropout(dropout)

    @replaceable
    def forward(self, x):
        """x: (..., dim) -> out: (..., dim)."""
        check_float_array(x, "x", "MLP")
        # BEGIN SOLUTION task4
        # HINT: fc1 -> act -> drop1 -> fc2 -> drop2
        hidden = self.drop1(self.act(self.fc1(x)))
        return self.drop2(self.fc2(hidden))
        # END SOLUTION

    def backward(self, dout):
        """dout: (..., dim) -> dx: (..., dim); fills fc1's and fc2's grads."""
        check_dout(dout, self.drop2.input_shape, "MLP")
        # BEGIN SOLUTION task4
        # HINT: call each sub-layer's backward in the reverse order of forward
        dhidden = self.fc2.backward(self.drop2.backward(dout))
        return self.fc1.backward(self.act.backward(self.drop1.backward(dhidden)))
        # END SOLUTION
