# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""Element-wise functions compiled into one GPU kernel each (``cupy.fuse``)."""
from __future__ import annotations

import functools

from cs_vit.backend import _import_cupy


def _is_cupy_array(a):
    """True for a cupy.ndarray; False for the tracing values cupy.fuse passes (whose
    module is cupy's too, so ``get_array_module`` would not tell them apart)."""
    return type(a).__name__ == "ndarray" and type(a).__module__.startswith("cupy")


def fuse(function):
    """Decorator: run ``function`` as one GPU kernel on CuPy arrays; unchanged on NumPy.

    On the GPU each operation (``a * b``, ``xp.exp(a)``) is a kernel launch that
    costs the host ~10 us, more than the arithmetic of a small array; ``cupy.fuse``
    compiles a whole function of element-wise operations into a single kernel.
    ``function`` must be pure element-wise maths: arrays and Python scalars in,
    ``xp`` ufuncs, ``xp.where`` and arithmetic inside, its results returned (a fused
    kernel does not write into its arguments: ``a += b`` inside one is lost).
    ``function`` itself runs on NumPy arrays, and also when called from inside
    another fused function (CuPy then passes tracing values, not arrays).
    The compiled kernel is kept as the wrapper's ``kernel`` attribute.
    """
    @functools.wraps(function)
    def call(*args):
        if not any(_is_cupy_array(a) for a in args):
            return function(*args)
        if call.kernel is None:
            call.kernel = _import_cupy().fuse(kernel_name=function.__name__)(function)
        return call.kernel(*args)

    call.kernel = None
    return call
