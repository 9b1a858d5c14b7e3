"""What one call costs the host on the GPU: CuPy's operations next to torch's.

    python bench/gpu_call_overhead.py [OUT_FILE]

Each operation runs 2000 times back to back on (64, 65, 128) float32 arrays (the
activations of a patch-8 batch) and the mean time per call is printed. The arrays
are small enough that launching a kernel, not the GPU's arithmetic, sets the pace:
this is the floor under every operation a training step makes.
"""
from __future__ import annotations

import sys
import time

import cupy
import torch
from cupyx.scipy.special import erf

CALLS = 2000


def per_call_us(operation):
    operation()
    cupy.cuda.Device().synchronize()
    start = time.perf_counter()
    for _ in range(CALLS):
        operation()
    cupy.cuda.Device().synchronize()
    return (time.perf_counter() - start) / CALLS * 1e6


def multiply_add(x, y):
    return x * y + x


def operations():
    a = cupy.ones((64, 65, 128), cupy.float32)
    b, w = cupy.ones_like(a), cupy.ones((128, 128), cupy.float32)
    rows = a.reshape(-1, 128)
    fused = cupy.fuse(multiply_add)
    ta, tw = torch.ones(64, 65, 128, device="cuda"), torch.ones(128, 128, device="cuda")
    tb = torch.ones_like(ta)
    return {
        "add": lambda: a + b, "add out=": lambda: cupy.add(a, b, out=a),
        "scalar mul": lambda: a * 0.5, "erf": lambda: erf(a),
        "2-D matmul": lambda: rows @ w, "batched matmul": lambda: cupy.matmul(a, a.transpose(0, 2, 1)),
        "sum over last axis": lambda: a.sum(axis=-1), "transposed copy": lambda: cupy.ascontiguousarray(a.transpose(1, 0, 2)),
        "cupy.fuse, 2 ops": lambda: fused(a, b),
        "torch add": lambda: ta + tb, "torch 2-D matmul": lambda: ta.view(-1, 128) @ tw,
        "torch sum over last axis": lambda: ta.sum(-1),
    }


def main():
    lines = [f"{name:26s} {per_call_us(op):6.1f} us/call" for name, op in operations().items()]
    print("\n".join(lines))
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
