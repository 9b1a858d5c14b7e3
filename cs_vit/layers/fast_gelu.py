"""GELU for float32 NumPy arrays without SciPy's slow float32 ``erf``.

``GELU`` uses ``gelu_float32`` for float32 NumPy inputs; the plain formula in
``activations.py`` (SciPy's ``erf``) stays for float64, CuPy and as the reference
it is tested against. SciPy's float32 ``erf`` converts every element to double
and back one at a time; here the erfc fit of Abramowitz & Stegun runs as a few
whole-array float32 operations, on cache-sized blocks spread over worker threads.
"""
from __future__ import annotations

import contextvars
import math
import os
from concurrent.futures import ThreadPoolExecutor

from cs_vit.backend import xp

# Abramowitz & Stegun, Handbook of Mathematical Functions, formula 7.1.26: for z >= 0,
# erfc(z) = t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-z^2), t = 1 / (1 + p z),
# with an absolute error below 1.5e-7.
_ERFC_P = 0.3275911
_ERFC_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
# With z = |x| / sqrt(2): Phi(-|x|) = erfc(z) / 2 = t Q(t) phi(x), Q's coefficients being these.
_TAIL_P = _ERFC_P / math.sqrt(2.0)
_TAIL_A = tuple(a * math.sqrt(math.pi / 2.0) for a in _ERFC_A)
# Elements per block of the float32 GELU: its ~25 temporaries then stay in the CPU cache.
_BLOCK = 32768
_POOL = None  # the worker threads of _run_blocks, started on first use


def gelu_float32(x, derivative=True):
    """``x * normal_cdf(x)`` and, if asked, gelu'(x) of a float32 NumPy array; ~5x faster.

    Returns (out, dgelu), dgelu None if not asked; both within 3e-7 * max(1, |x|)
    of the plain computation. SciPy's float32 ``erf`` works one element at a time
    in double precision; this evaluates formula 7.1.26 with whole-array float32
    operations, block by block so that the temporaries stay in the CPU cache.
    """
    flat = xp.ascontiguousarray(x).reshape(-1)
    out = xp.empty_like(flat)
    dgelu = xp.empty_like(flat) if derivative else None
    _run_blocks(lambda block: _gelu_block_float32(flat[block], out[block],
                                                  dgelu[block] if derivative else None), flat.size)
    return out.reshape(x.shape), None if dgelu is None else dgelu.reshape(x.shape)


def _gelu_block_float32(x, out, dgelu):
    """gelu(x) into ``out`` and, unless ``dgelu`` is None, gelu'(x) = Phi(x) + x phi(x) into it.

    tail = Phi(-|x|) comes from formula 7.1.26; Phi(x) is tail for x < 0, 1 - tail otherwise.
    """
    magnitude = xp.abs(x)
    t = magnitude * _TAIL_P
    t += 1.0
    xp.reciprocal(t, out=t)
    pdf = magnitude * magnitude
    pdf *= -0.5
    xp.exp(pdf, out=pdf)
    pdf *= 1.0 / math.sqrt(2.0 * math.pi)
    tail = t * _TAIL_A[-1]
    for a in reversed(_TAIL_A[:-1]):
        tail += a
        tail *= t
    tail *= pdf
    cdf = xp.multiply(tail, -2.0, out=t)
    cdf += 1.0
    cdf *= x >= 0
    cdf += tail
    xp.multiply(x, cdf, out=out)
    if dgelu is not None:
        pdf *= x
        xp.add(cdf, pdf, out=dgelu)


def _run_blocks(work, size):
    """Call ``work(block)`` for consecutive slices of ``range(size)``, on worker threads.

    NumPy runs each element-wise operation on one core, where torch uses all of
    them; but NumPy lets go of the GIL inside its loops, so blocks on different
    threads do run at once. As many threads as NumPy's BLAS uses by default.
    """
    blocks = [slice(start, start + _BLOCK) for start in range(0, size, _BLOCK)]
    if len(blocks) == 1 or _worker_count() == 1:
        for block in blocks:
            work(block)
        return
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_worker_count(), thread_name_prefix="cs_vit-gelu")
    # Each block runs in a copy of the caller's context, so that np.errstate settings hold there too.
    contexts = [contextvars.copy_context() for _ in blocks]
    for _ in _POOL.map(lambda context, block: context.run(work, block), contexts, blocks):
        pass


def _worker_count():
    """OPENBLAS_NUM_THREADS or OMP_NUM_THREADS if set, else the cores this process may use."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(name, "").isdigit() and int(os.environ[name]) > 0:
            return int(os.environ[name])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
