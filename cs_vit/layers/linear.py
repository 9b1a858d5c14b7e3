"""Fully connected layer: ``out = x @ W.T + b`` over the last axis."""
from __future__ import annotations

import math

from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import Layer, keep
from cs_vit.layers.init import uniform
from cs_vit.tiers import replaceable


class Linear(Layer):
    """Affine map on the last axis, with weights stored as torch's ``nn.Linear``.

    Params: ``weight`` (out_features, in_features), ``bias`` (out_features,).
    Initialised like torch: U(-1/sqrt(in), 1/sqrt(in)) for both.
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.add_param("weight", uniform((out_features, in_features), bound))
        if bias:
            self.add_param("bias", uniform((out_features,), bound))
        self.x = None

    def take_input(self, x):
        """Check that x is a float array (..., in_features) and keep it for backward."""
        check_float_array(x, "x", "Linear")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear expected inputs with last dimension {self.in_features}, "
                f"got shape {x.shape}"
            )
        self.x = keep(x)

    @replaceable
    def forward(self, x):
        """x: (..., in_features) -> out: (..., out_features)."""
        self.take_input(x)
        # One 2-D matrix product over all leading dims is much faster than a batched one.
        out = x.reshape(-1, self.in_features) @ self.params["weight"].T
        if "bias" in self.params:
            out = out + self.params["bias"]
        return out.reshape(*x.shape[:-1], self.out_features)

    @replaceable
    def backward(self, dout, input_grad=True):
        """dout: (..., out_features) -> dx: (..., in_features); fills grads.

        ``input_grad=False`` skips dx and returns None, for a first layer whose
        input is data: training never uses that gradient.
        """
        expected = None if self.x is None else (*self.x.shape[:-1], self.out_features)
        check_dout(dout, expected, "Linear")
        x2d = self.x.reshape(-1, self.in_features)
        dout2d = dout.reshape(-1, self.out_features)
        self.grads["weight"] = dout2d.T @ x2d
        if "bias" in self.params:
            self.grads["bias"] = dout2d.sum(axis=0)
        if not input_grad:
            return None
        dx = dout2d @ self.params["weight"]
        return dx.reshape(self.x.shape)
