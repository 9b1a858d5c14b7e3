# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""Let the C allocator keep freed memory for reuse instead of giving it back at once.

Every training step allocates and frees the same few dozen arrays of a few MB.
glibc's malloc serves blocks that large with fresh ``mmap`` pages and returns
them to the kernel on ``free``, so each new array is page-faulted in and zeroed
by the kernel again: a quarter of an inference pass went to that. Raising the
mmap and trim thresholds makes malloc keep the freed blocks and reuse them, as
PyTorch's caching allocator does for its tensors. Peak memory is unchanged.

``import cs_vit`` (through the fast tier, ``cs_vit.fast``) calls :func:`keep_freed_memory` on Linux with glibc; set the
environment variable ``CS_VIT_KEEP_FREED_MEMORY=0`` to leave malloc as it is.
"""
from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameters from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to 32 MiB (glibc's upper limit for the mmap threshold) come from the heap;
# up to 1 GiB of free heap is kept for reuse before any is returned to the kernel.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory():
    """Raise glibc's mmap and trim thresholds; True if done, False where it does not apply.

    A no-op (False) on other C libraries and operating systems, and when
    ``CS_VIT_KEEP_FREED_MEMORY`` is ``0``.
    """
    if os.environ.get("CS_VIT_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
