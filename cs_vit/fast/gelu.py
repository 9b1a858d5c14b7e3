# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""GELU computing its derivative during the forward pass, with faster kernels for the CDF.

The textbook GELU keeps x and evaluates Phi(x) again in backward. Here a
training forward pass computes gelu'(x) while Phi(x) is at hand and keeps only
that. The exact CDF comes from ``gelu_float32`` for float32 NumPy arrays (SciPy's
float32 erf works one element at a time in double precision) and from one fused
kernel each for Phi and phi on CuPy (one launch instead of four). The tanh
approximation and float64 NumPy arrays use the textbook code.
"""
from __future__ import annotations

import math

from cs_vit.backend import get_array_module, xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.fast.fuse import fuse
from cs_vit.fast.gelu_float32 import gelu_float32
from cs_vit.layers.activations import GELU, erf
from cs_vit.layers.base import keep, keeping


@fuse  # one GPU kernel instead of four
def normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt(2))) / 2, the standard normal CDF, element-wise."""
    return 0.5 * (1.0 + erf(x / math.sqrt(2.0)))


@fuse  # one GPU kernel instead of four
def normal_pdf(x):
    """phi(x) = exp(-x^2 / 2) / sqrt(2 pi), the standard normal density, element-wise."""
    return xp.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)


def exact_gelu(x, derivative):
    """(gelu(x), gelu'(x) if ``derivative`` else None) with the exact CDF.

    For float32 NumPy arrays and CuPy arrays (see ``_is_faster``).
    """
    if get_array_module(x).__name__ == "numpy":
        return gelu_float32(x, derivative)
    cdf = normal_cdf(x)
    return x * cdf, (cdf + x * normal_pdf(x)) if derivative else None


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
    on_numpy = get_array_module(x).__name__ == "numpy"
    return layer.approximate == "none" and (x.dtype == xp.float32 or not on_numpy)


REPLACEMENTS = {GELU.forward: gelu_forward, GELU.backward: gelu_backward}
