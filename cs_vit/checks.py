"""Argument checks that turn a mistake into an error at the call that made it.

Each message names the argument, what it got and what was expected, so that
``Linear.forward`` fed a list, or ``LayerNorm.backward`` fed a gradient of the
wrong shape, fails there instead of deep inside NumPy (or, worse, broadcasts).
"""
from __future__ import annotations

import math
import numbers

from cs_vit import backend
from cs_vit.backend import xp


def _type_name(value):
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"


def check_array(x, arg, owner):
    """``x`` must be an array of the active backend (numpy or cupy)."""
    if not isinstance(x, xp.ndarray):
        raise TypeError(
            f"{owner} expected {arg} to be a {backend.name()} array, got {_type_name(x)}; "
            "convert it with cs_vit.backend.asarray(...)"
        )


def check_float_array(x, arg, owner, advice=None):
    """``x`` must be an array of the active backend with a floating dtype.

    ``advice`` replaces the default hint (an ``astype``) in the error message.
    """
    check_array(x, arg, owner)
    if x.dtype.kind != "f":
        advice = advice or f"convert it with {arg}.astype(cs_vit.backend.default_dtype())"
        raise TypeError(
            f"{owner} expected {arg} to be floating point (float32 or float64), got dtype "
            f"{x.dtype}; {advice}"
        )


def check_dout(dout, expected_shape, owner):
    """``dout`` must be a float array shaped like the output of the last forward pass.

    ``expected_shape`` is None when forward has not run yet.
    """
    if expected_shape is None:
        raise RuntimeError(f"{owner}.backward was called before {owner}.forward (or after a "
                           "forward inside no_grad()); run forward first, outside no_grad(): "
                           "it stores what backward needs")
    check_float_array(dout, "dout", f"{owner}.backward")
    if tuple(dout.shape) != tuple(expected_shape):
        raise ValueError(
            f"{owner}.backward expected dout of shape {tuple(expected_shape)} (the shape of "
            f"forward's output), got shape {tuple(dout.shape)}"
        )


def integer_at_least(arg, value, minimum):
    """``value`` as an int >= ``minimum``, or a TypeError/ValueError naming ``arg``.

    A float with an integer value (``2.0``) counts as that integer; ``True`` does not.
    """
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and math.isfinite(value) and int(value) == value)
    if isinstance(value, bool) or not integral:
        raise TypeError(f"{arg} must be {expected}, got {value!r} ({_type_name(value)})")
    if value < minimum:
        raise ValueError(f"{arg} must be {expected}, got {value!r}")
    return int(value)


def positive_int(arg, value):
    """``value`` as an int >= 1, or a ValueError/TypeError naming ``arg``."""
    return integer_at_least(arg, value, 1)


def real_number(arg, value):
    """``value`` as a float, or a TypeError naming ``arg`` if it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{arg} must be a number, got {value!r} ({_type_name(value)})")
    return float(value)


def finite_non_negative(arg, value):
    """``value`` as a finite float >= 0, or a ValueError/TypeError naming ``arg``."""
    real_number(arg, value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{arg} must be a finite number >= 0, got {value}")
    return float(value)
