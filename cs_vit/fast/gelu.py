# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""GELU computing its derivative during the forward pass, with faster kernels for the CDF.

The textbook GELU keeps x and evaluates Phi(x) again in backward. Here a
training forward pass computes gelu'(x) while Phi(x) is at hand and keeps only
that. The exact CDF comes from ``gelu_float32`` for float32 NumPy arrays (SciPy's
float32 erf works one element at a time in double precision) and, on CuPy, from
one kernel that computes gelu(x) and gelu'(x) together (``cuda_kernels.gelu``).
The tanh approximation and float64 NumPy arrays use the textbook code.

In inference the MLP's GELU writes its output over fc1's (``mlp_forward``): nothing
else reads fc1's output, so the pass holds one hidden-sized array there, not two
(with the GPU's attention storing no scores, the MLP was inference's largest moment).
"""
from __future__ import annotations

from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.fast import cuda_kernels
from cs_vit.fast.gelu_float32 import gelu_float32
from cs_vit.layers.activations import GELU
from cs_vit.layers.base import keep, keeping
from cs_vit.layers.mlp import MLP


def exact_gelu(x, derivative, out=None):
    """(gelu(x), gelu'(x) if ``derivative`` else None) with the exact CDF.

    For float32 NumPy arrays and CuPy arrays (see ``_is_faster``). ``out``, without
    the derivative, receives gelu(x) and may be ``x`` itself (C-contiguous).
    """
    if cuda_kernels.on_gpu(x):
        return cuda_kernels.gelu(x, derivative, out)
    return gelu_float32(x, derivative, out)


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


def gelu_over_input(layer, x):
    """``layer(x)`` (a GELU) written over ``x``, in a pass that keeps nothing for backward:
    the caller owns ``x`` and reads it no more. Elsewhere (another activation, the tanh
    approximation, float64 NumPy arrays, a non-contiguous x) the layer's own forward,
    into a new array."""
    if (keeping() or type(layer) is not GELU or not _is_faster(layer, x)
            or not x.flags.c_contiguous):
        return layer(x)
    check_float_array(x, "x", "GELU")
    layer.x, layer.dgelu = None, None  # what gelu_forward keeps when nothing is kept
    return exact_gelu(x, derivative=False, out=x)[0]


def mlp_forward(self, x):
    """Same contract as ``MLP.forward``; in inference GELU overwrites fc1's output."""
    if keeping():
        return MLP.forward.reference(self, x)
    check_float_array(x, "x", "MLP")
    hidden = gelu_over_input(self.act, self.fc1(x))  # fc1's output is the pass's own
    return self.drop2(self.fc2(self.drop1(hidden)))


def _is_faster(layer, x):
    """Whether this tier has a faster path for ``x``: the exact GELU, float32 or on CuPy."""
    return layer.approximate == "none" and (x.dtype == xp.float32 or cuda_kernels.on_gpu(x))


REPLACEMENTS = {GELU.forward: gelu_forward, GELU.backward: gelu_backward,
                MLP.forward: mlp_forward}
