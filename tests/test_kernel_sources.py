# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
"""Every raw CUDA kernel of the fast tier compiles, for both dtypes, without a GPU.

CuPy compiles these sources on first use, on the GPU's machine; a typo there would
surface only on a lent GPU. Here ``nvcc`` compiles each to PTX for Hopper (sm_90),
where the CUDA compiler is installed (skipped where it is not). nvcc includes the CUDA
runtime header that NVRTC, CuPy's compiler, leaves out, so a source that needs that
header still passes here: ``tests/test_fast_gpu.py`` is the final word.
"""
import shutil
import subprocess

import pytest

from cs_vit.fast import cuda_kernels

HEAD_DIM = {"attention_context": 32}  # kernels built per head size: one size that ViTs use


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs the CUDA compiler, nvcc")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(cuda_kernels._SOURCES))
def test_kernel_source_compiles(tmp_path, name, dtype):
    source = tmp_path / f"{name}.cu"
    source.write_text(cuda_kernels.kernel_source(name, dtype, HEAD_DIM.get(name)))
    command = ["nvcc", "-arch=sm_90", "--ptx", str(source), "-o", str(tmp_path / f"{name}.ptx")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f".entry {name}(" in (tmp_path / f"{name}.ptx").read_text()
