"""Element-wise non-linearities: GELU (as in ViT's MLP) and ReLU."""
from __future__ import annotations

import math

from cs_vit.backend import get_array_module, xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import Layer, keep
from cs_vit.tiers import replaceable

APPROXIMATIONS = ("none", "tanh")
# Constants of the tanh approximation (Hendrycks & Gimpel, 2016), as in torch.
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
CUBIC = 0.044715


def erf(x):
    """Error function of ``x``, element-wise, in x's dtype, on NumPy or CuPy arrays.

    Neither NumPy nor CuPy has ``erf`` in its main namespace, so we take it from
    SciPy (installed with scikit-learn) or from ``cupyx.scipy.special`` on the GPU.
    """
    if get_array_module(x).__name__ == "cupy":
        from cupyx.scipy.special import erf as erf_cupy
        return erf_cupy(x)
    from scipy.special import erf as erf_scipy
    return erf_scipy(x)


class GELU(Layer):
    """Gaussian Error Linear Unit: ``gelu(x) = x * Phi(x)``, Phi the standard normal CDF.

    ``approximate="none"`` uses the exact ``Phi(x) = (1 + erf(x / sqrt(2))) / 2``;
    ``approximate="tanh"`` uses ``Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2``
    (the constants are ``SQRT_2_OVER_PI`` and ``CUBIC``), matching
    ``torch.nn.functional.gelu(x, approximate=...)``.
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in APPROXIMATIONS:
            raise ValueError(
                f"GELU approximate must be one of {APPROXIMATIONS}, got {approximate!r}"
            )
        self.approximate = approximate
        self.x = None

    @replaceable
    def forward(self, x):
        """x: any shape -> out: same shape; keeps x for backward."""
        check_float_array(x, "x", "GELU")
        self.x = keep(x)
        out = None
        # BEGIN SOLUTION task4
        # HINT: Phi(x) element-wise, exact (erf) or in the tanh approximation, as
        # HINT: self.approximate says; out (same shape as x) is x times Phi(x)
        if self.approximate == "tanh":
            cdf = 0.5 * (1.0 + xp.tanh(SQRT_2_OVER_PI * (x + CUBIC * x**3)))
        else:
            cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
        out = x * cdf
        # END SOLUTION
        return out

    @replaceable
    def backward(self, dout):
        """dout: any shape -> dx: same shape."""
        check_dout(dout, None if self.x is None else self.x.shape, "GELU")
        x, dx = self.x, None
        # BEGIN SOLUTION task4
        # HINT: the product rule on x * Phi(x) needs Phi(x) and its derivative Phi'(x): the
        # HINT: normal density for the exact Phi, the chain rule through tanh for the
        # HINT: approximation; dx is dout times gelu'(x), element-wise
        if self.approximate == "tanh":
            tanh_u = xp.tanh(SQRT_2_OVER_PI * (x + CUBIC * x**3))
            cdf = 0.5 * (1.0 + tanh_u)
            dcdf = 0.5 * (1.0 - tanh_u**2) * SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * x**2)
        else:
            cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
            dcdf = xp.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
        dx = dout * (cdf + x * dcdf)
        # END SOLUTION
        return dx


class ReLU(Layer):
    """Rectified linear unit: ``relu(x) = max(x, 0)``; its gradient at 0 is taken as 0."""

    def __init__(self):
        super().__init__()
        self.positive = None

    def forward(self, x):
        """x: any shape -> out: same shape."""
        check_float_array(x, "x", "ReLU")
        positive = x > 0
        self.positive = keep(positive)
        return x * positive

    def backward(self, dout):
        """dout: any shape -> dx: same shape."""
        check_dout(dout, None if self.positive is None else self.positive.shape, "ReLU")
        return dout * self.positive
