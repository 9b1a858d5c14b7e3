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
import re
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
_SIGNATURE = r'extern "C" __global__ void {name}\(([^)]*)\)'


def compiler():
    """The C++ compiler on PATH, or None."""
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def parameter_types(source, name, dtype):
    """[(is_pointer, numpy dtype)] of kernel ``name``'s parameters, read off its source."""
    match = re.search(_SIGNATURE.format(name=name), source)
    c_names = {"long long": np.int64, "int": np.int32, "double": np.float64, "T": dtype}
    types = []
    for parameter in match.group(1).split(","):
        words = parameter.replace("const ", "").replace("*", " * ").split()[:-1]  # less the name
        pointer = words[-1] == "*"
        types.append((pointer, np.dtype(c_names[" ".join(words[:-1] if pointer else words)])))
    return types


class EmulatedKernel:
    """A compiled kernel: ``kernel(grid, block, args)`` runs each thread of the launch.

    Each argument is checked against the kernel's signature as CUDA would read it: an array
    for a pointer (of the pointed-to type), a NumPy scalar of the exact C type otherwise,
    so a wrong width or a missing argument fails here instead of shifting the others.
    """

    def __init__(self, library, name, types):
        self.library, self.name, self.types = library, name, types
        self.function = getattr(library, name)
        self.function.argtypes = [ctypes.c_void_p if pointer else _C_TYPES[dtype]
                                  for pointer, dtype in types]

    def __call__(self, grid, block, args):
        if len(grid) != 1 or len(block) != 1:
            raise ValueError("only one-dimensional launches are emulated")
        if len(args) != len(self.types):
            raise TypeError(f"{self.name} takes {len(self.types)} arguments, got {len(args)}")
        values = [self._value(i, arg, *kind) for i, (arg, kind) in enumerate(zip(args, self.types))]
        for block_index in range(grid[0]):
            for thread in range(block[0]):
                self.library.emulation_set_thread(block_index, thread, block[0])
                self.function(*values)

    def _value(self, index, arg, pointer, dtype):
        """What C receives for argument ``index``: an array's data pointer, or the scalar."""
        given = np.asarray(arg).dtype
        fits = isinstance(arg, np.ndarray) if pointer else isinstance(arg, np.generic)
        if not fits or given != dtype:
            kind = f"an array of {dtype}" if pointer else f"a NumPy {dtype} scalar"
            raise TypeError(f"{self.name} argument {index} must be {kind}, "
                            f"got {type(arg).__name__} of {given}")
        return arg.ctypes.data if pointer else arg.item()


@functools.lru_cache(maxsize=None)
def emulated_kernel(name, dtype, head_dim=None):
    """``cuda_kernels._raw_kernel``'s stand-in: kernel ``name`` compiled for the CPU."""
    source = _PRELUDE + cuda_kernels.kernel_source(name, dtype, head_dim)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "cs_vit_kernel_emulation"
    folder.mkdir(exist_ok=True)
    library = folder / f"{name}_{digest}.so"
    if not library.exists():
        source_file = folder / f"{name}_{digest}.{os.getpid()}.cpp"  # one per process
        source_file.write_text(source)
        partial = source_file.with_suffix(".partial")
        command = [compiler(), "-O1", "-shared", "-fPIC", str(source_file), "-o", str(partial)]
        subprocess.run(command, check=True, capture_output=True, text=True)
        partial.replace(library)  # whole or absent, should tests run side by side
    return EmulatedKernel(ctypes.CDLL(str(library)), name, parameter_types(source, name, dtype))
