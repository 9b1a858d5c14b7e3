"""Layer normalisation over the last axis, as ``torch.nn.LayerNorm(D)``."""
from __future__ import annotations

from cs_vit.backend import xp
from cs_vit.layers.base import Layer
from cs_vit.layers.init import ones, zeros


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
        self.xmu = None
        self.inv_std = None
        self.xhat = None

    def forward(self, x):
        """x: (..., D) -> out: (..., D)."""
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"LayerNorm expected inputs with last dimension {self.dim}, got shape {x.shape}"
            )
        self.xmu = x - x.mean(axis=-1, keepdims=True)
        var = (self.xmu**2).mean(axis=-1, keepdims=True)
        self.inv_std = 1.0 / xp.sqrt(var + self.eps)
        self.xhat = self.xmu * self.inv_std
        return self.xhat * self.params["weight"] + self.params["bias"]

    def backward(self, dout):
        """dout: (..., D) -> dx: (..., D); fills grads of weight and bias, each (D,)."""
        D = self.dim
        leading = tuple(range(dout.ndim - 1))
        self.grads["weight"] = (dout * self.xhat).sum(axis=leading)
        self.grads["bias"] = dout.sum(axis=leading)
        dxhat = dout * self.params["weight"]
        dvar = (dxhat * self.xmu).sum(axis=-1, keepdims=True) * -0.5 * self.inv_std**3
        # var's own dependence on the mean drops out: it is a multiple of sum(xmu) = 0.
        dmean = -dxhat.sum(axis=-1, keepdims=True) * self.inv_std
        return dxhat * self.inv_std + dvar * 2.0 * self.xmu / D + dmean / D
