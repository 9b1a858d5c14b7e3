# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""Row-wise work done block by block, so that each block's temporaries stay in the CPU cache.

An element-wise NumPy operation on a whole (4160, 128) activation streams 2 MB
through memory; on a block of a few hundred rows it runs from the CPU's L2
cache, about three times faster. Work whose rows are independent (LayerNorm,
GELU, the optimizer update) loops over ``row_blocks(array)`` and runs its
plain formula on each block. On CuPy there is one block: the GPU wants the
largest operations it can get.
"""
from __future__ import annotations

import math

from cs_vit.backend import get_array_module

# About 256 KiB of float32 per array per block: a few such arrays fit in a 1-2 MiB L2 cache.
BLOCK_ELEMENTS = 65536


def row_blocks(array):
    """Slices along axis 0 of ``array`` covering it in order, each of at most BLOCK_ELEMENTS elements."""
    num_rows = array.shape[0]
    if get_array_module(array).__name__ != "numpy":
        return [slice(0, num_rows)]
    rows = max(1, BLOCK_ELEMENTS // max(1, math.prod(array.shape[1:])))
    return [slice(start, start + rows) for start in range(0, num_rows, rows)]
