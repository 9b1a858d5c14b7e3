"""Element-wise non-linearities: GELU (as in ViT's MLP) and ReLU."""
from __future__ import annotations

import math

from cs_vit.backend import get_array_module, xp
from cs_vit.layers.base import Layer

_APPROXIMATIONS = ("none", "tanh")
# Constants of the tanh approximation (Hendrycks & Gimpel, 2016), as in torch.
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715


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
    ``approximate="tanh"`` uses ``Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2``,
    matching ``torch.nn.functional.gelu(x, approximate=...)``.
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in _APPROXIMATIONS:
            raise ValueError(
                f"GELU approximate must be one of {_APPROXIMATIONS}, got {approximate!r}"
            )
        self.approximate = approximate
        self.x = None
        self.cdf = None
        self.tanh_u = None

    def forward(self, x):
        """x: any shape -> out: same shape."""
        self.x = x
        if self.approximate == "none":
            self.cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
        else:
            self.tanh_u = xp.tanh(_SQRT_2_OVER_PI * (x + _CUBIC * x**3))
            self.cdf = 0.5 * (1.0 + self.tanh_u)
        return x * self.cdf

    def backward(self, dout):
        """dout: any shape -> dx: same shape; d(x Phi(x))/dx = Phi(x) + x Phi'(x)."""
        x = self.x
        if self.approximate == "none":
            dcdf = xp.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
        else:
            du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _CUBIC * x**2)
            dcdf = 0.5 * (1.0 - self.tanh_u**2) * du
        return dout * (self.cdf + x * dcdf)


class ReLU(Layer):
    """Rectified linear unit: ``relu(x) = max(x, 0)``; its gradient at 0 is taken as 0."""

    def __init__(self):
        super().__init__()
        self.positive = None

    def forward(self, x):
        """x: any shape -> out: same shape."""
        self.positive = x > 0
        return x * self.positive

    def backward(self, dout):
        """dout: any shape -> dx: same shape."""
        return dout * self.positive
