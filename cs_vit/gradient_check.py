"""Numerical gradients by centred differences, with CS231n's signatures.

Each function perturbs ``x`` in place, so ``f`` must close over that same
array. They run on NumPy and CuPy arrays alike; use float64 for checks.
"""
from __future__ import annotations

from random import randrange

import numpy

from cs_vit.backend import get_array_module, to_numpy


def rel_error(x, y):
    """Largest relative error: max(|x - y| / max(1e-8, |x| + |y|))."""
    x, y = to_numpy(x), to_numpy(y)
    return float(numpy.max(numpy.abs(x - y) / numpy.maximum(1e-8, numpy.abs(x) + numpy.abs(y))))


def _centred_difference(f, x, index, h):
    """(f(x + h e_i) - f(x - h e_i)) / 2h, where f returns an array or a scalar."""
    old = x[index].copy()
    x[index] = old + h
    fxph = f(x)
    x[index] = old - h
    fxmh = f(x)
    x[index] = old
    return fxph, fxmh


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """Gradient of a scalar function ``f`` at ``x``: array of x's shape."""
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    for index in numpy.ndindex(*x.shape):
        fxph, fxmh = _centred_difference(f, x, index, h)
        grad[index] = (fxph - fxmh) / (2 * h)
        if verbose:
            print(index, grad[index])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Gradient of sum(f(x) * df) at ``x``, for a function ``f`` returning an array."""
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    for index in numpy.ndindex(*x.shape):
        fxph, fxmh = _centred_difference(lambda arr: f(arr).copy(), x, index, h)
        grad[index] = xp.sum((fxph - fxmh) * df) / (2 * h)
    return grad


def eval_numerical_gradient_blobs(f, inputs, output, h=1e-5):
    """Gradients of sum(f(*inputs) * output) for each array in ``inputs``."""
    return [
        eval_numerical_gradient_array(lambda _arr: f(*inputs), arr, output, h=h)
        for arr in inputs
    ]


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5):
    """Compare ``analytic_grad`` with the numerical gradient at random positions."""
    errors = []
    for _ in range(num_checks):
        index = tuple(randrange(m) for m in x.shape)
        fxph, fxmh = _centred_difference(f, x, index, h)
        numerical = float((fxph - fxmh) / (2 * h))
        analytic = float(analytic_grad[index])
        error = abs(numerical - analytic) / max(1e-12, abs(numerical) + abs(analytic))
        errors.append(error)
        print(f"numerical: {numerical:f} analytic: {analytic:f}, relative error: {error:e}")
    return errors
