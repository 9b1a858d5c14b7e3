"""Layer normalisation over the last axis, as ``torch.nn.LayerNorm(D)``."""
from __future__ import annotations

from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import Layer, keep
from cs_vit.layers.init import ones, zeros
from cs_vit.layers.reductions import mean_last, sum_leading


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
        self.xhat = None
        self.inv_std = None

    def forward(self, x):
        """x: (..., D) -> out: (..., D)."""
        check_float_array(x, "x", "LayerNorm")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"LayerNorm expected inputs with last dimension {self.dim}, got shape {x.shape}"
            )
        # BEGIN SOLUTION task3
        # HINT: normalise over the last axis (mean_last is x.mean(axis=-1, keepdims=True));
        # HINT: keep xhat and inv_std = 1 / sqrt(var + eps) on self with keep(...) for
        # HINT: backward; out = xhat * weight + bias
        xmu = x - mean_last(x)
        var = mean_last(xmu * xmu)
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        xhat = xmu
        xhat *= inv_std  # in place: xmu is not needed any more
        self.xhat, self.inv_std = keep(xhat), keep(inv_std)
        out = xhat * self.params["weight"]
        out += self.params["bias"]
        # END SOLUTION
        return out

    def backward(self, dout):
        """dout: (..., D) -> dx: (..., D); fills grads of weight and bias, each (D,)."""
        check_dout(dout, None if self.xhat is None else self.xhat.shape, "LayerNorm")
        # BEGIN SOLUTION task3
        # HINT: weight and bias grads sum over every leading axis (sum_leading); then the
        # HINT: chain rule through xhat, var and mean, each reduced over the last axis
        self.grads["weight"] = sum_leading(dout * self.xhat)
        self.grads["bias"] = sum_leading(dout)
        dxhat = dout * self.params["weight"]
        # xhat = (x - mean) * inv_std. With dvar = -inv_std^3 / 2 * sum(dxhat * (x - mean)) and
        # dmean = -inv_std * sum(dxhat), the chain rule dx = dxhat * inv_std + dvar * 2 (x - mean) / D
        # + dmean / D collapses to inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
        dx = dxhat - mean_last(dxhat)
        dx -= self.xhat * mean_last(dxhat * self.xhat)
        dx *= self.inv_std
        # END SOLUTION
        return dx
