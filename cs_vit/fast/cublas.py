# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""Matrix products on the GPU that a CUDA graph can capture: cuBLAS called directly.

CuPy refuses every cuBLAS call while a stream is being captured into a CUDA graph
("calling cuBLAS API during stream capture is currently unsupported", CuPy 14;
``bench/gpu_runs/2026-11-27_capture_probe.log``), although cuBLAS itself supports
capture. So the fast tier's products on CuPy arrays call cuBLAS's strided-batched
GEMM through ``ctypes``, on a handle of its own, with a workspace it owns (cuBLAS
must not allocate during a capture). On NumPy arrays :func:`matmul` is ``numpy.matmul``.

cuBLAS is column-major. A row-major (rows, cols) matrix with row stride ``ld`` is, to
cuBLAS, the column-major (cols, rows) matrix, its transpose; a transposed view (unit
stride along its rows) is the column-major matrix itself. So the row-major
``C = A @ B`` is asked for as the column-major ``C^T = B^T A^T``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

from cs_vit.backend import get_array_module

MIB = 1024 * 1024
_NO_TRANSPOSE, _TRANSPOSE = 0, 1


def matmul(a, b, out=None):
    """``a @ b`` for (..., M, K) and (..., K, N) arrays with the same leading shape.

    On CuPy, one cuBLAS call that CUDA graphs can capture; ``out``, if given, gets
    the result. On NumPy, ``numpy.matmul(a, b, out=out)``.
    """
    module = get_array_module(a, b)
    library = None if module.__name__ == "numpy" else _Cublas.get()
    if library is None:
        return module.matmul(a, b, out=out)
    return library.matmul(module, a, b, out)


def _operand(module, a):
    """(array, op, ld, batch stride): ``a`` (batch, rows, cols) as cuBLAS reads it (copied
    if its layout is neither row- nor column-major).

    op is the transpose flag cuBLAS needs to read the row-major matrix's transpose.
    """
    item = a.itemsize
    rows, cols = a.shape[-2:]
    if a.strides[-1] == item and a.strides[-2] >= max(1, cols) * item:
        return a, _NO_TRANSPOSE, a.strides[-2] // item, a.strides[0] // item
    if a.strides[-2] == item and a.strides[-1] >= max(1, rows) * item:
        return a, _TRANSPOSE, a.strides[-1] // item, a.strides[0] // item
    a = module.ascontiguousarray(a)
    return a, _NO_TRANSPOSE, cols, rows * cols


def _as_batch(module, a):
    """``a`` (..., rows, cols) as (batch, rows, cols): a view if its leading axes collapse."""
    if a.ndim == 2:
        return _batch_view(module, a, 0)
    if not _collapses(a):
        a = module.ascontiguousarray(a)
    return _batch_view(module, a, a.strides[-3])


def _batch_view(module, a, batch_stride):
    """The (batch, rows, cols) view of ``a`` with batches ``batch_stride`` bytes apart."""
    batch = a.size // max(1, a.shape[-2] * a.shape[-1]) if a.ndim > 2 else 1
    return module.lib.stride_tricks.as_strided(
        a, shape=(batch, *a.shape[-2:]), strides=(batch_stride, *a.strides[-2:]))


def _collapses(a):
    """Whether the leading axes of ``a`` (all but the last two) step by one stride."""
    return all(a.strides[i] == a.strides[i + 1] * a.shape[i + 1] for i in range(a.ndim - 3))


def _writable_batch(module, out, rows, cols):
    """``out`` as a (batch, rows, cols) view of its memory that cuBLAS can write, or None."""
    if out.strides[-1] != out.itemsize or out.strides[-2] < cols * out.itemsize:
        return None
    if out.ndim == 2:
        return _batch_view(module, out, 0)
    if not _collapses(out) or out.strides[-3] < rows * out.strides[-2]:
        return None  # leading axes out of step, or matrices interleaved in memory
    return _batch_view(module, out, out.strides[-3])


class _Cublas:
    """libcublas (a copy this process has loaded: CuPy's, or torch's for the same CUDA),
    one handle and its workspace."""

    @classmethod
    @functools.lru_cache(maxsize=1)
    def get(cls):
        """The one instance, or None where libcublas cannot be found (then CuPy's matmul)."""
        try:
            return cls()
        except OSError:
            return None

    def __init__(self):
        import cupy

        self.lib = ctypes.CDLL(_loaded_library_path("libcublas.so"))
        handle = ctypes.c_void_p()
        _check(self.lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self.handle = handle
        self.workspace_bytes = workspace_bytes(cupy.cuda.Device().compute_capability)
        # From CuPy's default pool, whichever allocator is current at the first product (a
        # CUDA graph's private pool while its work warms up): the workspace outlives any graph.
        self.workspace = cupy.get_default_memory_pool().malloc(self.workspace_bytes)
        self.stream = None
        self.scalars = {}
        for dtype, name in (("float32", "cublasSgemmStridedBatched"),
                            ("float64", "cublasDgemmStridedBatched")):
            c_type = ctypes.c_float if dtype == "float32" else ctypes.c_double
            self.scalars[dtype] = (getattr(self.lib, name), c_type(1.0), c_type(0.0))

    def _use_stream(self, stream_ptr):
        # cublasSetStream resets the workspace to cuBLAS's own pool, so set ours after it.
        if stream_ptr != self.stream:
            _check(self.lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream_ptr)),
                   "cublasSetStream")
            _check(self.lib.cublasSetWorkspace_v2(
                self.handle, ctypes.c_void_p(self.workspace.ptr),
                ctypes.c_size_t(self.workspace_bytes)), "cublasSetWorkspace")
            self.stream = stream_ptr

    def matmul(self, module, a, b, out):
        dtype = module.result_type(a, b)
        if (a.ndim < 2 or b.ndim < 2 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]
                or str(dtype) not in self.scalars):
            return module.matmul(a, b, out=out)  # vectors, broadcasting, other dtypes: CuPy's
        a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
        M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
        result_shape = (*a.shape[:-2], M, N)
        fits = out is not None and out.dtype == dtype and out.shape == result_shape
        target = _writable_batch(module, out, M, N) if fits else None
        result = module.empty(result_shape, dtype) if target is None else out
        c = _writable_batch(module, result, M, N) if target is None else target
        if K == 0:
            c[...] = 0
        elif c.size:
            a3, opa, lda, stride_a = _operand(module, _as_batch(module, a))
            b3, opb, ldb, stride_b = _operand(module, _as_batch(module, b))
            gemm, one, zero = self.scalars[str(dtype)]
            self._use_stream(module.cuda.get_current_stream().ptr)
            _check(gemm(self.handle, opb, opa, N, M, K, ctypes.byref(one),
                        ctypes.c_void_p(b3.data.ptr), ldb, ctypes.c_longlong(stride_b),
                        ctypes.c_void_p(a3.data.ptr), lda, ctypes.c_longlong(stride_a),
                        ctypes.byref(zero), ctypes.c_void_p(c.data.ptr), c.strides[1] // c.itemsize,
                        ctypes.c_longlong(c.strides[0] // c.itemsize), c.shape[0]), "gemm")
        if out is not None and target is None:
            out[...] = result
            return out
        return result


def workspace_bytes(compute_capability):
    """cuBLAS's recommended workspace for a GPU of ``compute_capability`` ("90", "80", ...):
    32 MiB on Hopper and later, 4 MiB before (PyTorch takes 32 MiB and about 8 MiB)."""
    return 32 * MIB if int(compute_capability) >= 90 else 4 * MIB


def _loaded_library_path(prefix):
    """The path of the shared library named ``prefix*`` that this process has loaded
    (Linux's /proc/self/maps), else whatever the dynamic loader finds."""
    import cupy

    cupy.ones((1, 1), "f") @ cupy.ones((1, 1), "f")  # CuPy loads libcublas on first use
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/" in path and path.rsplit("/", 1)[-1].startswith(prefix):
                    return path
    except OSError:
        pass  # not Linux
    return ctypes.util.find_library(prefix[3:].split(".")[0]) or prefix  # let the loader search


def _check(status, what):
    """Raise RuntimeError for a cuBLAS call that did not return CUBLAS_STATUS_SUCCESS (0)."""
    if status != 0:
        raise RuntimeError(f"cuBLAS {what} failed with status {status}")
