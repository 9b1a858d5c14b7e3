"""Numerical gradients by centred differences, with CS231n's signatures.

Each function perturbs ``x`` in place, so ``f`` must close over that same
array; ``x`` gets its value back after every evaluation, even when ``f``
raises. They run on NumPy and CuPy arrays alike. Differences are taken in
float64, from an ``x`` that can hold ``x + h``: float64 for checks (float32
works, less precisely); an integer or float16 ``x`` is refused, since ``x + h``
would round back to ``x`` and give a wrong (often zero) gradient.
"""
from __future__ import annotations

import math
import numbers
from random import randrange

import numpy

from cs_vit.backend import get_array_module, to_numpy


def rel_error(x, y):
    """Largest relative error: max(|x - y| / max(1e-8, |x| + |y|)); x and y of one shape."""
    x, y = to_numpy(x), to_numpy(y)
    if x.shape != y.shape:
        raise ValueError(f"rel_error compares arrays of one shape, got {x.shape} and {y.shape} "
                         "(NumPy would broadcast them and hide the difference); compare the "
                         "gradient with the array of the same quantity")
    return float(numpy.max(numpy.abs(x - y) / numpy.maximum(1e-8, numpy.abs(x) + numpy.abs(y))))


def _check_point(x, h, caller):
    """Refuse an ``x`` or ``h`` for which centred differences would be silently wrong."""
    if not (hasattr(x, "dtype") and hasattr(x, "shape")):
        raise TypeError(f"{caller} perturbs x in place, so x must be a NumPy or CuPy array, "
                        f"got {type(x).__name__}")
    if x.dtype.kind != "f" or x.dtype.itemsize < 4:
        raise TypeError(f"{caller} needs x of a float dtype that can hold x + h, got dtype "
                        f"{x.dtype}; gradient checks compute in float64, so pass "
                        "x.astype(numpy.float64) (and let f close over that array)")
    if x.size == 0:
        raise ValueError(f"{caller} got an empty x (shape {x.shape}): there is no gradient to "
                         "check")
    if isinstance(h, bool) or not isinstance(h, numbers.Real) or not (math.isfinite(h) and h > 0):
        raise ValueError(f"{caller} needs a step h > 0 (1e-5 is usual), got {h!r}")


def _centred_difference(f, x, index, h):
    """(f(x + h e_i), f(x - h e_i)); x[index] is restored whatever f does."""
    old = x[index].copy()
    try:
        x[index] = old + h
        fxph = f(x)
        x[index] = old - h
        fxmh = f(x)
    finally:
        x[index] = old
    return fxph, fxmh


def _scalar(value, caller):
    """``value`` (what f returned) as a float64, refused if it is not one number."""
    if getattr(value, "size", 1) != 1:
        raise ValueError(f"{caller} needs f to return one number (a loss), got an array of "
                         f"shape {value.shape}; for a function that returns an array, use "
                         "eval_numerical_gradient_array(f, x, df) with df the upstream gradient")
    return float(value)


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """Gradient of a scalar function ``f`` at ``x``: a float64 array of x's shape."""
    _check_point(x, h, "eval_numerical_gradient")
    xp = get_array_module(x)
    grad = xp.zeros(x.shape, dtype=numpy.float64)
    for index in numpy.ndindex(*x.shape):
        fxph, fxmh = _centred_difference(f, x, index, h)
        grad[index] = (_scalar(fxph, "eval_numerical_gradient")
                       - _scalar(fxmh, "eval_numerical_gradient")) / (2 * h)
        if verbose:
            print(index, grad[index])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Gradient of sum(f(x) * df) at ``x`` (a float64 array of x's shape), for a function
    ``f`` returning an array of df's shape."""
    _check_point(x, h, "eval_numerical_gradient_array")
    xp = get_array_module(x)
    grad = xp.zeros(x.shape, dtype=numpy.float64)
    for index in numpy.ndindex(*x.shape):
        fxph, fxmh = _centred_difference(lambda arr: xp.array(f(arr), dtype=numpy.float64), x,
                                         index, h)
        if fxph.shape != df.shape:
            raise ValueError(f"eval_numerical_gradient_array: f(x) has shape {fxph.shape} but df "
                             f"has shape {df.shape}; df is the upstream gradient, shaped like "
                             "f's output")
        grad[index] = xp.sum((fxph - fxmh) * df) / (2 * h)
    return grad


def eval_numerical_gradient_blobs(f, inputs, output, h=1e-5):
    """Gradients of sum(f(*inputs) * output) for each array in ``inputs``."""
    return [
        eval_numerical_gradient_array(lambda _arr: f(*inputs), arr, output, h=h)
        for arr in inputs
    ]


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5):
    """Compare ``analytic_grad`` (x's shape) with the numerical gradient at random positions."""
    _check_point(x, h, "grad_check_sparse")
    if tuple(analytic_grad.shape) != tuple(x.shape):
        raise ValueError(f"grad_check_sparse: analytic_grad has shape {analytic_grad.shape} but "
                         f"x has shape {x.shape}; pass the gradient with respect to x")
    errors = []
    for _ in range(num_checks):
        index = tuple(randrange(m) for m in x.shape)
        fxph, fxmh = _centred_difference(f, x, index, h)
        fxph, fxmh = (_scalar(value, "grad_check_sparse") for value in (fxph, fxmh))
        numerical = (fxph - fxmh) / (2 * h)
        analytic = float(analytic_grad[index])
        error = abs(numerical - analytic) / max(1e-12, abs(numerical) + abs(analytic))
        errors.append(error)
        print(f"numerical: {numerical:f} analytic: {analytic:f}, relative error: {error:e}")
    return errors
