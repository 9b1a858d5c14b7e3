# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""GELU computing its derivative during the forward pass, with faster kernels for the CDF.

The textbook GELU keeps x and evaluates Phi(x) again in backward. Here a
training forward pass computes gelu'(x) while Phi(x) is at hand and keeps only
that. The exact CDF comes from ``gelu_float32`` for float32 NumPy arrays (SciPy's
float32 erf works one element at a time in double precision) and, on CuPy, from
one kernel that computes gelu(x) and gelu'(x) together (``cuda_kernels.gelu``).
The tanh approximation and float64 NumPy arrays use the textbook code.
"""
from __future__ import annotations

from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.fast import cuda_kernels
from cs_vit.fast.gelu_float32 import gelu_float32
from cs_vit.layers.activations import GELU
from cs_vit.layers.base import keep, keeping


def exact_gelu(x, derivative):
    """(gelu(x), gelu'(x) if ``derivative`` else None) with the exact CDF.

    For float32 NumPy arrays and CuPy arrays (see ``_is_faster``).
    """
    if cuda_kernels.on_gpu(x):
        return cuda_kernels.gelu(x, derivative)
    return gelu_float32(x, derivative)


def gelu_forward(self, x):
    """Same contract as ``GELU.forward``; a training pass keeps gelu'(x) instead of x."""
    if not _is_faster(self, x):
        self.dgelu = None
        return GELU.forward.reference(self, x)
    check_float_array(x, "x", "GELU")
    derivative = self.training and keeping()
    out, self.dgelu = exact_gelu(x, derivative)
    self.x = None if derivative else keep(x)
    return out


def gelu_backward(self, dout):
    """Same contract as ``GELU.backward``."""
    if getattr(self, "dgelu", None) is None:
        if self.x is None or not _is_faster(self, self.x):
            return GELU.backward.reference(self, dout)
        check_dout(dout, self.x.shape, "GELU")
        return dout * exact_gelu(self.x, derivative=True)[1]
    check_dout(dout, self.dgelu.shape, "GELU")
    return dout * self.dgelu


def _is_faster(layer, x):
    """Whether this tier has a faster path for ``x``: the exact GELU, float32 or on CuPy."""
    return layer.approximate == "none" and (x.dtype == xp.float32 or cuda_kernels.on_gpu(x))


REPLACEMENTS = {GELU.forward: gelu_forward, GELU.backward: gelu_backward}
