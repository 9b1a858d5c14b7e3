# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
"""The fast tier's one-thread-per-item CUDA kernels, compiled as C++ and run on the CPU.

A kernel whose threads share nothing (no shared memory, no warp shuffles, no
barriers) computes the same numbers when its threads run one after another on the
host. :func:`emulated_kernel` compiles such a kernel's CUDA source, exactly as
``cuda_kernels`` hands it to CuPy, with a C++ compiler and a few lines that stand in
for CUDA's built-in thread indices; calling it with ``(grid, block, args)`` runs every
thread in turn over NumPy arrays. So CI, which has no GPU, tests the kernels' index
arithmetic and maths; ``tests/test_fast_gpu.py`` tests them on a GPU.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from cs_vit.fast import cuda_kernels

_PRELUDE = r"""
#include <algorithm>
#include <cmath>
using std::exp; using std::isfinite; using std::log;
using std::max; using std::min; using std::sqrt;
struct ThreadIndex { unsigned int x, y, z; };
static ThreadIndex blockIdx, threadIdx, blockDim;
#define __global__
extern "C" void emulation_set_thread(unsigned int block, unsigned int thread,
                                     unsigned int threads) {
    blockIdx.x = block; threadIdx.x = thread; blockDim.x = threads;
}
"""

_C_TYPES = {np.dtype(np.int64): ctypes.c_longlong, np.dtype(np.int32): ctypes.c_int,
            np.dtype(np.float64): ctypes.c_double, np.dtype(np.float32): ctypes.c_float}


def compiler():
    """The C++ compiler on PATH, or None."""
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


class EmulatedKernel:
    """A compiled kernel: ``kernel(grid, block, args)`` runs each thread of the launch."""

    def __init__(self, library, name):
        self.library, self.function = library, getattr(library, name)

    def __call__(self, grid, block, args):
        if len(grid) != 1 or len(block) != 1:
            raise ValueError("only one-dimensional launches are emulated")
        c_args = [_c_argument(arg) for arg in args]
        for block_index in range(grid[0]):
            for thread in range(block[0]):
                self.library.emulation_set_thread(block_index, thread, block[0])
                self.function(*c_args)


def _c_argument(arg):
    """A kernel argument as C receives it: an array's data pointer, a scalar of its type."""
    if isinstance(arg, np.ndarray):
        return ctypes.c_void_p(arg.ctypes.data)
    return _C_TYPES[np.asarray(arg).dtype](arg)


@functools.lru_cache(maxsize=None)
def emulated_kernel(name, dtype, head_dim=None):
    """``cuda_kernels._raw_kernel``'s stand-in: kernel ``name`` compiled for the CPU."""
    source = _PRELUDE + cuda_kernels.kernel_source(name, dtype, head_dim)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "cs_vit_kernel_emulation"
    folder.mkdir(exist_ok=True)
    library = folder / f"{name}_{digest}.so"
    if not library.exists():
        source_file = folder / f"{name}_{digest}.cpp"
        source_file.write_text(source)
        partial = folder / f"{name}_{digest}.{os.getpid()}.partial"
        command = [compiler(), "-O1", "-shared", "-fPIC", str(source_file), "-o", str(partial)]
        subprocess.run(command, check=True, capture_output=True, text=True)
        partial.replace(library)  # whole or absent, should tests run side by side
    return EmulatedKernel(ctypes.CDLL(str(library)), name)
