# cs-vit: instructor-only (compares the fast tier, which the student release leaves out)
"""Where a training step's time goes, for cs_vit and for torch: host time, GPU kernels, copies.

    python bench/profile_step.py --device cuda             # both sides, seed config
    python bench/profile_step.py --device cuda --config patch4 --top 25

For each side (by default cs_vit's fast and textbook tiers, torch, and on the GPU the
fast tier's step replayed as a CUDA graph) it times a few training steps (the same
step as bench/compare_torch.py),
then records them with torch.profiler (which sees CuPy's kernels too: CUPTI records
every kernel of the process) and prints per step: wall time, the GPU's busy time
(the kernels' summed durations), the number of kernels and of host<->device copies,
and the kernels that take the most time. A wall time well above the busy time means
the step is bound by launching kernels from Python, not by the GPU. A captured
step's kernels are counted too, although the host launches them all as one graph.
"""
from __future__ import annotations

import argparse
import cProfile
import collections
import pstats
import statistics
import time

from torch.profiler import ProfilerActivity, profile

from compare_torch import CONFIGS, GPU_SIDES, make_sides


def wall_ms(side, steps):
    side["train"]()
    side["sync"]()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        side["train"]()
        side["sync"]()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def kernel_profile(side, steps):
    """GPU activity of ``steps`` training steps, recorded by torch.profiler.

    Returns (busy ms per step, kernels and copies per step, Counter of copies by
    direction over all steps, Counter of ms per step by kernel, Counter of launches
    per step by kernel).
    """
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities) as prof:
        for _ in range(steps):
            side["train"]()
        side["sync"]()
    per_kernel, launches, copies = collections.Counter(), collections.Counter(), collections.Counter()
    for event in prof.events():
        if event.device_type.name != "CUDA":
            continue
        for kind in ("HtoD", "DtoH", "DtoD"):
            if f"Memcpy {kind}" in event.name:
                copies[kind] += 1
        per_kernel[event.name[:90]] += event.time_range.elapsed_us() / 1e3 / steps
        launches[event.name[:90]] += 1 / steps
    return sum(per_kernel.values()), sum(launches.values()), copies, per_kernel, launches


def host_profile(side, steps, top):
    """cProfile of ``steps`` training steps: the functions with the most host time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        side["train"]()
    side["sync"]()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--config", choices=sorted(CONFIGS), default="patch8")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--sides", nargs="+", choices=GPU_SIDES,
                   help="which sides to profile (see bench/compare_torch.py; default: fast, "
                        "textbook and torch, and on the GPU fast_graph, the captured step)")
    p.add_argument("--host-profile", action="store_true",
                   help="also print cProfile's busiest functions for cs_vit's steps")
    args = p.parse_args()
    if args.sides is None:
        on_gpu = ["fast_graph"] if args.device == "cuda" else []
        args.sides = ["fast", "textbook", "torch"] + on_gpu
    sides = make_sides(CONFIGS[args.config], args.batch, args.device, names=args.sides)
    for name, side in sides.items():
        wall = wall_ms(side, args.steps)
        print(f"\n## {name}: {args.config}, batch {args.batch}, {args.device}")
        if args.device == "cpu":  # no kernels to record: wall time and the host profile only
            print(f"wall {wall:.2f} ms/step")
            if name != "torch" and args.host_profile:
                host_profile(side, args.steps, 3 * args.top)
            continue
        busy, kernels, copies, per_kernel, launches = kernel_profile(side, args.steps)
        print(f"wall {wall:.2f} ms/step; GPU busy {busy:.2f} ms/step; {kernels:.0f} kernels and "
              f"copies/step; copies over {args.steps} steps: {dict(copies)}")
        print("by GPU time per step:")
        for kernel, ms in per_kernel.most_common(args.top):
            print(f"  {ms:7.3f} ms  {kernel}")
        print("by launches per step:")
        for kernel, count in launches.most_common(args.top):
            print(f"  {count:5.0f}  {kernel}")
        if name != "torch" and args.host_profile:
            host_profile(side, args.steps, 3 * args.top)


if __name__ == "__main__":
    main()
