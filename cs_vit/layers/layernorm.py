"""Layer normalisation over the last axis, as ``torch.nn.LayerNorm(D)``."""
from __future__ import annotations

from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import Layer, keep
from cs_vit.layers.init import ones, zeros
from cs_vit.tiers import replaceable


class LayerNorm(Layer):
    """Normalise each vector along the last axis, then scale and shift it.

    ``out = (x - mean) / sqrt(var + eps) * weight + bias``, with mean and (biased)
    variance taken over the last axis of an input of any rank (..., D).
    Params: ``weight`` (D,) initialised to ones, ``bias`` (D,) to zeros.
    """

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.add_param("weight", ones((dim,)))
        self.add_param("bias", zeros((dim,)))
        self.input_shape = None
        self.cache = None

    def take_input(self, x):
        """Check that x is a float array (..., D) and record its shape for backward."""
        check_float_array(x, "x", "LayerNorm")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"LayerNorm expected inputs with last dimension {self.dim}, got shape {x.shape}"
            )
        self.input_shape = keep(x.shape)

    @replaceable
    def forward(self, x):
        """x: (..., D) -> out: (..., D); keeps in ``self.cache`` what backward needs."""
        self.take_input(x)
        out, cache = None, None
        # BEGIN SOLUTION task3
        # HINT: over the last axis of x (keepdims=True): the mean, the biased variance (divide
        # HINT: by D), the normalised xhat (..., D); then out = xhat scaled by weight, shifted by
        # HINT: bias. Set cache to a tuple of the intermediates your backward will need
        mean = x.mean(axis=-1, keepdims=True)
        xmu = x - mean
        var = (xmu**2).mean(axis=-1, keepdims=True)
        std = xp.sqrt(var + self.eps)
        xhat = xmu / std
        out = xhat * self.params["weight"] + self.params["bias"]
        cache = (xhat, xmu, std)
        # END SOLUTION
        self.cache = keep(cache)
        return out

    @replaceable
    def backward(self, dout):
        """dout: (..., D) -> dx: (..., D); fills grads of weight and bias, each (D,)."""
        check_dout(dout, self.input_shape, "LayerNorm")
        dx = None
        leading_axes = tuple(range(dout.ndim - 1))  # every axis but the feature axis
        # BEGIN SOLUTION task3
        # HINT: grads["weight"] and grads["bias"] (D,) sum over leading_axes. Then the chain
        # HINT: rule back through forward, one intermediate per line, each reduced over the
        # HINT: last axis where forward reduced: dxhat (..., D), dvar (..., 1), dmean (..., 1),
        # HINT: and dx (..., D), which collects the paths through xhat, var and mean
        xhat, xmu, std = self.cache
        D = self.dim
        self.grads["weight"] = (dout * xhat).sum(axis=leading_axes)
        self.grads["bias"] = dout.sum(axis=leading_axes)
        dxhat = dout * self.params["weight"]
        dvar = (dxhat * xmu).sum(axis=-1, keepdims=True) * -0.5 / std**3
        dmean = -(dxhat / std).sum(axis=-1, keepdims=True) - dvar * 2.0 * xmu.mean(
            axis=-1, keepdims=True)
        dx = dxhat / std + dvar * 2.0 * xmu / D + dmean / D
        # END SOLUTION
        return dx
