# cs-vit: instructor-only (part of the grading runtime)
"""The parent's verdict: compare a child's output arrays with the expected ones.

Every message shows values: which output, its ``rel_error`` (CS231n's), the
largest absolute difference, and where it is with both numbers, so a student
can tell a sign error from a missing factor from a wrong shape.
"""
from __future__ import annotations

import numpy as np

# An output passes when max |got - expected| <= RTOL * max |expected| + ATOL: the reference
# and a textbook float64 implementation agree to ~1e-14; every usual mistake is off by far more.
RTOL = 1e-6
ATOL = 1e-12


def rel_error(x, y):
    """max |x - y| / max(1e-8, |x| + |y|), CS231n's definition.

    The same as ``cs_vit.gradient_check.rel_error``: repeated here because the
    parent process never imports cs_vit.
    """
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y)), initial=0.0))


def compare(name, expected, got):
    """(passed, one line about output ``name``, its rel_error or None)."""
    if got is None:
        return False, f"{name}: not returned", None
    if got.shape != expected.shape:
        return False, f"{name}: has shape {got.shape}, expected shape {expected.shape}", None
    if not np.isfinite(got).all() and np.isfinite(expected).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(got))[0])
        return False, (f"{name}: holds NaN or inf (first at index {where}, expected "
                       f"{expected[where]:.6g}): an overflow, or 0/0?"), None
    gap = np.abs(got - expected)
    largest = float(gap.max(initial=0.0))
    error = rel_error(got, expected)
    if largest <= RTOL * float(np.abs(expected).max(initial=0.0)) + ATOL:
        return True, f"{name}: matches (rel_error {error:.1e})", error
    where = np.unravel_index(int(np.argmax(gap)), gap.shape)
    return False, (f"{name}: wrong values: rel_error {error:.2g}, max |diff| {largest:.3g} at "
                   f"index {tuple(int(i) for i in where)} (expected {expected[where]:.6g}, got "
                   f"{got[where]:.6g})"), error


def judge_case(case, expected, outputs, error):
    """(passed, text) for one case: ``outputs`` {name: array} from the child, or its ``error``.

    A passed case is one line (with its largest rel_error); a failed one lists each
    output that is wrong, and why.
    """
    if error is not None:
        return False, f"FAILED  {case['name']}\n    {error}"
    checks = [compare(name, expected[name], outputs.get(name)) for name in case["outputs"]]
    if all(ok for ok, _, _ in checks):
        worst = max(e for _, _, e in checks)
        return True, f"passed  {case['name']} (largest rel_error {worst:.1e})"
    return False, f"FAILED  {case['name']}" + "".join(
        f"\n    {text}" for ok, text, _ in checks if not ok)
