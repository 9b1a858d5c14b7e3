# cs-vit: instructor-only (probes what the fast tier's captured GPU step may use)
"""What this CuPy can capture into a CUDA graph: run once per GPU machine, keep the log.

    python bench/gpu_capture_probe.py

Each probe captures a small piece of work on a non-blocking stream, launches the
graph twice and compares with the same work run eagerly. It prints OK or the
error (type, message, where it was raised). The captured training step
(``cs_vit.fast.captured``) relies on the probes marked "needed".
"""
from __future__ import annotations

import traceback

import cupy
import numpy
from cupy_backends.cuda.libs import cublas


def probe(name, body, expect, stream, warmups=1, launches=2):
    """Warm up ``body`` on ``stream``, capture it, launch the graph, compare with ``expect()``."""
    try:
        with stream:
            for _ in range(warmups):
                body()
            stream.synchronize()
            stream.begin_capture()
            try:
                out = body()
            finally:
                graph = stream.end_capture()
            for _ in range(launches):
                graph.launch()
            stream.synchronize()
        diff = float(abs(out - expect()).max())
        print(f"OK     {name}: max |graph - eager| = {diff:.2e}")
        return graph, out
    except Exception as err:  # report every failure and go on with the next probe
        frame = traceback.extract_tb(err.__traceback__)[-1]
        print(f"FAILED {name}: {type(err).__name__}: {err} "
              f"(raised at {frame.filename}:{frame.lineno})")
        return None, None


def main():
    print("CuPy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "driver", cupy.cuda.runtime.driverGetVersion(),
          "device", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
    rng = numpy.random.default_rng(0)
    a = cupy.asarray(rng.standard_normal((64, 128), dtype=numpy.float32))
    b = cupy.asarray(rng.standard_normal((128, 96), dtype=numpy.float32))
    stream = cupy.cuda.Stream(non_blocking=True)

    probe("element-wise and reduction, default pool", lambda: (a * 2 + 1).sum(axis=0),
          lambda: (a * 2 + 1).sum(axis=0), stream)
    probe("cupy.matmul, default pool (needed, else cuBLAS is called directly)",
          lambda: a @ b, lambda: a @ b, stream)

    handle = cublas.create()
    cublas.setStream(handle, stream.ptr)
    one, zero = numpy.ones(1, numpy.float32), numpy.zeros(1, numpy.float32)
    c = cupy.empty((64, 96), numpy.float32)

    def direct_gemm():  # row-major c = a @ b is column-major c^T = b^T a^T
        cublas.sgemm(handle, 0, 0, 96, 64, 128, one.ctypes.data, b.data.ptr, 96,
                     a.data.ptr, 128, zero.ctypes.data, c.data.ptr, 96)
        return c
    probe("cublas.sgemm on an own handle (needed if cupy.matmul is refused)", direct_gemm,
          lambda: a @ b, stream)

    pool = cupy.cuda.MemoryPool()
    with cupy.cuda.using_allocator(pool.malloc):
        probe("temporaries from a private pool after warm-up (needed)",
              lambda: ((a * 3) - 1) * ((a * 3) + 1), lambda: ((a * 3) - 1) * ((a * 3) + 1),
              stream, warmups=2, launches=3)
    print("private pool: used", pool.used_bytes(), "held", pool.total_bytes())

    try:
        async_pool = cupy.cuda.MemoryAsyncPool()
        with cupy.cuda.using_allocator(async_pool.malloc):
            probe("an output allocated inside the graph by MemoryAsyncPool, launched twice",
                  lambda: a * 5, lambda: a * 5, stream, warmups=0, launches=2)
    except Exception as err:
        print(f"FAILED MemoryAsyncPool: {type(err).__name__}: {err}")

    lr = cupy.full((), 0.5, numpy.float32)
    scale = cupy.ElementwiseKernel("T x, raw T lr", "T y", "y = x * lr[0]",
                                   "probe_scale_by_device_scalar")
    graph, out = probe("a kernel reading a device scalar (needed: lr changes between launches)",
                       lambda: scale(a, lr), lambda: a * 0.5, stream)
    if graph is not None:
        lr.fill(2.0)
        with stream:
            graph.launch()
        stream.synchronize()
        print("       after lr.fill(2.0) and a launch: max |out - 2a| =",
              float(abs(out - 2 * a).max()))


if __name__ == "__main__":
    main()
