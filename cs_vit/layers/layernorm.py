"""Layer normalisation over the last axis, as ``torch.nn.LayerNorm(D)``."""
from __future__ import annotations

from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import Layer, keep
from cs_vit.layers.init import ones, zeros
from cs_vit.layers.reductions import mean_last, sum_leading
from cs_vit.layers.row_blocks import row_blocks


def _normalize(x, eps, xhat, inv_std):
    """Rows of x (R, D) -> xhat = (x - mean) * inv_std and inv_std = 1 / sqrt(var + eps) (R, 1).

    Writes into ``xhat`` and ``inv_std``; mean and (biased) variance are over the last axis.
    """
    # BEGIN SOLUTION task3
    # HINT: mean_last(a) is a.mean(axis=-1, keepdims=True); write the centred rows into xhat,
    # HINT: then inv_std[...] = 1 / sqrt(variance + eps), then scale xhat by inv_std in place
    xp.subtract(x, mean_last(x), out=xhat)
    inv_std[...] = mean_last(xhat * xhat)  # the variance, for now
    inv_std += eps
    xp.sqrt(inv_std, out=inv_std)
    xp.reciprocal(inv_std, out=inv_std)
    xhat *= inv_std
    # END SOLUTION


def _normalize_backward(dout, xhat, inv_std, weight, dx):
    """dx (R, D) of rows whose output was ``xhat * weight + bias``, from dout (R, D).

    Writes dx; returns this block's shares of the weight and bias gradients, each (D,).
    """
    # BEGIN SOLUTION task3
    # HINT: dweight = sum over rows of dout * xhat, dbias = sum of dout (sum_leading); with
    # HINT: dxhat = dout * weight the chain rule through mean and variance collapses to
    # HINT: dx = inv_std * (dxhat - mean_last(dxhat) - xhat * mean_last(dxhat * xhat))
    dout_xhat = dout * xhat
    dweight, dbias = sum_leading(dout_xhat), sum_leading(dout)
    # xhat = (x - mean) * inv_std. With dvar = -inv_std^3 / 2 * sum(dxhat * (x - mean)) and
    # dmean = -inv_std * sum(dxhat), the chain rule dx = dxhat * inv_std + dvar * 2 (x - mean) / D
    # + dmean / D collapses to inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
    # Both means are matrix-vector products with weight / D: mean(dxhat) = dout @ weight / D.
    weight_mean = weight / weight.shape[0]
    mean_dxhat_xhat = (dout_xhat @ weight_mean)[:, None]
    xp.multiply(dout, weight, out=dx)  # dxhat
    dx -= (dout @ weight_mean)[:, None]
    dx -= xp.multiply(xhat, mean_dxhat_xhat, out=dout_xhat)
    dx *= inv_std
    # END SOLUTION
    return dweight, dbias


class LayerNorm(Layer):
    """Normalise each vector along the last axis, then scale and shift it.

    ``out = (x - mean) / sqrt(var + eps) * weight + bias``, with mean and (biased)
    variance taken over the last axis of an input of any rank (..., D).
    Params: ``weight`` (D,) initialised to ones, ``bias`` (D,) to zeros.
    The rows go through ``_normalize`` and ``_normalize_backward`` a cache-sized
    block at a time (``row_blocks``); the result is the same as in one go.
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
        x2d = x.reshape(-1, self.dim)
        xhat, out = xp.empty_like(x2d), xp.empty_like(x2d)
        inv_std = xp.empty((x2d.shape[0], 1), dtype=x2d.dtype)
        for rows in row_blocks(x2d):
            _normalize(x2d[rows], self.eps, xhat[rows], inv_std[rows])
            xp.multiply(xhat[rows], self.params["weight"], out=out[rows])
            out[rows] += self.params["bias"]
        self.xhat, self.inv_std = keep(xhat.reshape(x.shape)), keep(inv_std)
        return out.reshape(x.shape)

    def backward(self, dout):
        """dout: (..., D) -> dx: (..., D); fills grads of weight and bias, each (D,)."""
        check_dout(dout, None if self.xhat is None else self.xhat.shape, "LayerNorm")
        dout2d, xhat = dout.reshape(-1, self.dim), self.xhat.reshape(-1, self.dim)
        dx = xp.empty_like(dout2d)
        dweight, dbias = self.grads["weight"], self.grads["bias"]  # summed over the blocks
        dweight[...], dbias[...] = 0.0, 0.0
        for rows in row_blocks(dout2d):
            block_dweight, block_dbias = _normalize_backward(
                dout2d[rows], xhat[rows], self.inv_std[rows], self.params["weight"], dx[rows])
            dweight += block_dweight
            dbias += block_dbias
        return dx.reshape(dout.shape)
