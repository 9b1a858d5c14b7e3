# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""LayerNorm in cache-sized row blocks, with BLAS row means and a two-product backward.

Same results as the textbook LayerNorm (up to float rounding), about three
times faster on the CPU: every block's temporaries stay in the L2 cache
(``row_blocks``), the row means are matrix-vector products, and the backward
uses the collapsed form of the chain rule,
``dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))``, whose two
means are products with ``weight / D``. On the GPU each pass is one kernel
(``cuda_kernels``: a warp per row) plus, in backward, the two parameter sums.
"""
from __future__ import annotations

from cs_vit.backend import xp
from cs_vit.checks import check_dout
from cs_vit.fast import cuda_kernels
from cs_vit.fast.reductions import mean_last, sum_leading
from cs_vit.fast.row_blocks import row_blocks
from cs_vit.layers.base import keep
from cs_vit.layers.layernorm import LayerNorm


def _normalize(x, eps, xhat, inv_std):
    """Rows of x (R, D) -> xhat = (x - mean) * inv_std into ``xhat``, 1 / sqrt(var + eps) into ``inv_std`` (R, 1)."""
    xp.subtract(x, mean_last(x), out=xhat)
    inv_std[...] = mean_last(xhat * xhat)  # the variance, for now
    inv_std += eps
    xp.sqrt(inv_std, out=inv_std)
    xp.reciprocal(inv_std, out=inv_std)
    xhat *= inv_std


def _normalize_backward(dout, xhat, inv_std, weight, dx):
    """dx (R, D) into ``dx`` from dout (R, D); returns this block's (dweight, dbias), each (D,)."""
    dout_xhat = dout * xhat
    dweight, dbias = sum_leading(dout_xhat), sum_leading(dout)
    weight_mean = weight / weight.shape[0]
    mean_dxhat_xhat = (dout_xhat @ weight_mean)[:, None]
    xp.multiply(dout, weight, out=dx)  # dxhat
    dx -= (dout @ weight_mean)[:, None]
    dx -= xp.multiply(xhat, mean_dxhat_xhat, out=dout_xhat)
    dx *= inv_std
    return dweight, dbias


def layernorm_forward(self, x):
    """Same contract as ``LayerNorm.forward``; keeps (xhat, inv_std) as its cache."""
    self.take_input(x)
    x2d = x.reshape(-1, self.dim)
    if _kernels_apply(x2d, self.params["weight"]):
        out, xhat, inv_std = cuda_kernels.layernorm_forward(
            x2d, self.params["weight"], self.params["bias"], self.eps)
        self.cache = keep((xhat, inv_std))
        return out.reshape(x.shape)
    xhat, out = xp.empty_like(x2d), xp.empty_like(x2d)
    inv_std = xp.empty((x2d.shape[0], 1), dtype=x2d.dtype)
    for rows in row_blocks(x2d):
        _normalize(x2d[rows], self.eps, xhat[rows], inv_std[rows])
        xp.multiply(xhat[rows], self.params["weight"], out=out[rows])
        out[rows] += self.params["bias"]
    self.cache = keep((xhat, inv_std))
    return out.reshape(x.shape)


def layernorm_backward(self, dout):
    """Same contract as ``LayerNorm.backward``, from ``layernorm_forward``'s cache."""
    check_dout(dout, self.input_shape, "LayerNorm")
    xhat, inv_std = self.cache
    dout2d = dout.reshape(-1, self.dim)
    if _kernels_apply(dout2d, xhat, self.params["weight"]):
        sum_leading(dout2d * xhat, out=self.grads["weight"])
        sum_leading(dout2d, out=self.grads["bias"])
        dx = cuda_kernels.layernorm_backward(dout2d, xhat, inv_std, self.params["weight"])
        return dx.reshape(dout.shape)
    dx = xp.empty_like(dout2d)
    dweight, dbias = self.grads["weight"], self.grads["bias"]  # summed over the blocks
    dweight[...], dbias[...] = 0.0, 0.0
    for rows in row_blocks(dout2d):
        block_dweight, block_dbias = _normalize_backward(
            dout2d[rows], xhat[rows], inv_std[rows], self.params["weight"], dx[rows])
        dweight += block_dweight
        dbias += block_dbias
    return dx.reshape(dout.shape)


def _kernels_apply(x, *others):
    """Whether the GPU kernels run: CuPy arrays, all of one dtype (the parameters')."""
    return cuda_kernels.on_gpu(x) and all(a.dtype == x.dtype for a in others)


REPLACEMENTS = {LayerNorm.forward: layernorm_forward, LayerNorm.backward: layernorm_backward}
