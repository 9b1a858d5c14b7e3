# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
"""Helpers shared by the fast tier's tests: a run in both tiers and the tolerance of
their comparison, the peak of memory traced during a call, and kernel checks that run on
either array library, on the GPU's kernels (``tests/test_fast_gpu.py``) and on their CPU
emulation (``tests/test_kernel_emulation.py``). Each check takes its arrays from the caller.
"""
import tracemalloc

import numpy as np
import pytest

from cs_vit import backend, fast
from cs_vit.backend import get_array_module
from cs_vit.fast import cuda_kernels
from cs_vit.layers import softmax_cross_entropy

TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


def randn(seed, *shape, dtype=np.float64):
    """Standard normal NumPy samples of ``shape`` in ``dtype``, from ``seed``."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_close(value, reference, what):
    """Same shape and dtype, and within TOLERANCE of ``reference``'s largest magnitude
    (NumPy or CuPy arrays, or numbers)."""
    value, reference = backend.to_numpy(value), backend.to_numpy(reference)
    assert value.shape == reference.shape, (what, value.shape, reference.shape)
    assert value.dtype == reference.dtype, (what, value.dtype, reference.dtype)
    tol = TOLERANCE[reference.dtype] * max(1.0, float(np.max(np.abs(reference), initial=0.0)))
    diff = float(np.max(np.abs(value - reference), initial=0.0))
    assert diff <= tol, f"{what}: differs from the reference by {diff:.3g} > {tol:.3g}"


def in_both_tiers(run):
    """[``run()`` on the fast tier, ``run()`` on the textbook tier], each from the same seed."""
    results = []
    for on in (True, False):
        backend.seed(7)
        with fast.enabled(on):
            results.append(run())
    return results


def traced_peak(run):
    """(``run()``, the peak of bytes that tracemalloc traced while it ran)."""
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def check_softmax_kernels(scores, dattn):
    """The keys-first softmax and its backward against the formula; scores (T, ...)."""
    xp = get_array_module(scores)
    shifted = xp.exp(scores - scores.max(axis=0))
    attn = shifted / shifted.sum(axis=0)
    got = cuda_kernels.softmax_keys_first(scores.copy())
    assert bool(xp.isfinite(got).all())
    assert_close(got, attn, "softmax")
    expected = attn * (dattn - (dattn * attn).sum(axis=0))
    assert_close(cuda_kernels.softmax_backward_keys_first(attn, dattn.copy()), expected,
                 "softmax backward")


def check_loss_kernel(logits, labels, smoothing):
    """The loss kernel's mean loss, dlogits and number correct against the textbook loss."""
    loss, dlogits = softmax_cross_entropy(logits, labels, smoothing)
    row_loss, row_correct, kernel_dlogits = cuda_kernels.cross_entropy(logits, labels, smoothing)
    rows = logits.shape[0]
    assert float(row_loss.sum()) / rows == pytest.approx(loss, rel=TOLERANCE[logits.dtype])
    assert_close(kernel_dlogits, dlogits, "dlogits")
    assert int(row_correct.sum()) == int((logits.argmax(axis=1) == labels).sum())
