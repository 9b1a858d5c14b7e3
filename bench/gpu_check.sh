#!/usr/bin/env bash
# cs-vit: instructor-only (runs the fast tier's benchmarks, which the student release leaves out)
# The GPU checks, on a machine with an NVIDIA GPU, CuPy and PyTorch (CUDA), in under 8 minutes:
#   bench/gpu_check.sh [OUTPUT_DIR] [--extras]     (default: runs/gpu_check)
# 1. tests/test_gpu.py, tests/test_fast_gpu.py: the CuPy backend against NumPy (the whole ViT
#    forward and backward in float64, both tiers), gradient checks on the GPU, training,
#    checkpoints, no copies per step, the fast tier's cuBLAS products and fused kernels
#    (inference's streamed attention included), the captured training step and forward pass
#    against the uncaptured ones (the static step's NumPy tests, tests/test_captured_step.py,
#    and the kernels emulated on the CPU, tests/test_kernel_emulation.py, run in CI);
# 2. bench/compare_torch.py --device cuda: the speed and memory table (results_cuda.md; one
#    process, malloc as cs_vit sets it: the host allocator barely touches a GPU step);
# 3. bench/profile_step.py: where a GPU training step's time goes, cs_vit (step by step and
#    captured) and torch: launches per step and the GPU's busy share;
# 4. bench/memory_breakdown.py: bytes in use stage by stage (model, generator, workspace,
#    inference, optimizer, training), every side.
# The order is what a short stay needs first: if the machine is taken back early, the
# tests and the table are in OUTPUT_DIR already (each stage writes its own file).
# With --extras, first: bench/gpu_capture_probe.py (what this CuPy lets a CUDA graph capture)
# and bench/gpu_call_overhead.py (the host time of one CuPy call and of one torch call).
set -uo pipefail
cd "$(dirname "$0")/.."
out=runs/gpu_check extras=0
for arg in "$@"; do
    if [ "$arg" = --extras ]; then extras=1; else out=$arg; fi
done
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
took() { echo "== $1 took $SECONDS s in all so far"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import cupy, numpy, torch; print('CuPy', cupy.__version__, 'NumPy', numpy.__version__, 'torch', torch.__version__)"
extra=0
if [ "$extras" = 1 ]; then
    python3 bench/gpu_capture_probe.py 2>&1 | tee "$out/capture_probe.log"
    python3 bench/gpu_call_overhead.py "$out/call_overhead.txt"
    extra=$?
    took extras
fi
python3 -m pytest tests/test_gpu.py tests/test_fast_gpu.py -n 0 -p no:cacheprovider -q -rs 2>&1 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
took tests
python3 bench/compare_torch.py --device cuda --rounds 6 --steps 5 --malloc tuned --out "$out/results_cuda.md"
bench=$?
took benchmark
python3 bench/profile_step.py --device cuda --config patch8 --sides fast fast_graph torch 2>&1 | tee "$out/gpu_profile.log"
profile=${PIPESTATUS[0]}
took profile
python3 bench/memory_breakdown.py --device cuda | tee "$out/memory_breakdown.md"
memory=${PIPESTATUS[0]}
took "memory breakdown"
echo "exit status: tests $tests, benchmark $bench, profile $profile, memory breakdown $memory, extras $extra"
exit $(( tests || bench || profile || memory || extra ))
