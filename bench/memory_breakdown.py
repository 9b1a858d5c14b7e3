# cs-vit: instructor-only (measures the fast tier, which the student release leaves out)
"""Where a side's memory goes, stage by stage: model and batch, GPU generator, first
matrix product, inference, optimizer, training.

    python bench/memory_breakdown.py --device cuda              # every side, patch 8
    python bench/memory_breakdown.py --device cpu --sides fast textbook

``bench/compare_torch.py`` gives one peak per side; this script splits it. Each side
runs in a fresh process, built as compare_torch builds it, and after each stage the
bytes held (in use) and the peak during the stage are printed:

- on the GPU, bytes in use: CuPy's allocations through its memory pools (a memory hook,
  as compare_torch's), torch's ``memory_allocated``. Neither counts what a library
  allocates outside its pool (cuBLAS's own workspace when nobody gives it one, as for
  CuPy's products on the textbook tier); both count a workspace taken from the pool;
- on the CPU, cs_vit's sides only: bytes traced by ``tracemalloc`` (NumPy's arrays and
  Python's objects). torch's CPU allocations are invisible to it, so torch is left out.

The captured side also reports the bytes its graphs' private pools reserve: a graph
writes into those blocks on every replay, although the hook counts them free after
the capture. Its forward graph, recorded before the optimizer flattens the parameters,
is dropped then (compare_torch's ``training()``), and the pool row comes first.
"""
from __future__ import annotations

import argparse
import json
import sys
import tracemalloc

import torch

from compare_torch import (CONFIGS, cs_vit_side, cupy_peak_hook, make_batch, run_probe,
                           set_torch_threads, torch_side, torchvision_vit)

SIDES = ("torch", "fast", "fast_graph", "textbook")
CALLS = 3
MIB = 2**20


class Meter:
    """Bytes in use now, and their peak since the last :meth:`mark`, for one side."""

    def __init__(self, side, device):
        self.on_torch, self.device = side == "torch", device
        if device == "cuda" and not self.on_torch:
            self.hook = cupy_peak_hook()
        elif device != "cuda":
            tracemalloc.start()
        self.rows = []

    def _now_and_peak(self):
        if self.device == "cuda" and self.on_torch:
            return torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()
        if self.device == "cuda":
            return self.hook.in_use, self.hook.peak
        return tracemalloc.get_traced_memory()

    def _reset_peak(self):
        if self.device == "cuda" and self.on_torch:
            torch.cuda.reset_peak_memory_stats()
        elif self.device == "cuda":
            self.hook.peak = self.hook.in_use
        else:
            tracemalloc.reset_peak()

    def mark(self, stage, runner):
        """Record ``stage`` as (stage, MiB held after it, MiB peak during it)."""
        runner["sync"]()
        held, peak = self._now_and_peak()
        self.rows.append((stage, held / MIB, peak / MIB))
        self._reset_peak()

    def reserved_by_graphs(self, runner):
        """Record the bytes the captured side's graph pools hold but the hook counts free."""
        pools = [graph.pool for graph in runner.get("graphs", list)() if graph.captured]
        if pools:
            reserved = sum(pool.total_bytes() - pool.used_bytes() for pool in pools) / MIB
            self.rows.append(("graph pools: reserved, counted free", reserved, reserved))


def probe(side, config_name, batch, device):
    """In a fresh process: one side's stages, printed as JSON."""
    set_torch_threads()
    config = CONFIGS[config_name]
    meter = Meter(side, device)
    no_sync = {"sync": lambda: None}
    meter.mark("start", no_sync)
    image = make_batch(1, config)[0][:, 0]  # (1, H, W): one small product
    if side == "torch":
        torch.manual_seed(0)
        runner = torch_side(torchvision_vit(config), config, batch, device)
        meter.mark("model seeded and built, batch on the device; AdamW (no state yet)", runner)
        image = torch.from_numpy(image).to(device)
        image @ image
    else:
        from cs_vit import backend
        from cs_vit.fast import cublas
        runner = cs_vit_side(side, config, batch, device)
        meter.mark("model seeded and built, batch on the device", runner)
        backend.rng()
        meter.mark("GPU random generator made (what dropout draws from)", runner)
        image = backend.asarray(image)
        cublas.matmul(image, image) if side != "textbook" else image @ image
    meter.mark("first matrix product (BLAS handle, workspace)", runner)
    runner["eval"]()
    for _ in range(CALLS):
        runner["infer"]()
    meter.mark(f"inference x{CALLS} (eval, no_grad)", runner)
    meter.reserved_by_graphs(runner)
    runner["model"].train()
    if side != "torch":
        runner["training"]()
    meter.mark("optimizer state (cs_vit's made here, torch's at its first step)", runner)
    for _ in range(CALLS):
        runner["train"]()
    meter.mark(f"training steps x{CALLS}", runner)
    meter.reserved_by_graphs(runner)
    print(json.dumps(meter.rows))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--config", choices=sorted(CONFIGS), default="patch8")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    p.add_argument("--probe", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        probe(args.probe, args.config, args.batch, args.device)
        return
    sides = [side for side in args.sides
             if args.device == "cuda" or side not in ("torch", "fast_graph")]
    unit = "bytes in use" if args.device == "cuda" else "bytes traced by tracemalloc"
    print(f"# Memory by stage: {args.config}, batch {args.batch}, {args.device}, MiB of {unit}\n")
    print("| side | stage | held after (MiB) | peak during (MiB) |\n|---|---|---|---|")
    for side in sides:
        arguments = ["--probe", side, "--config", args.config, "--batch", str(args.batch),
                     "--device", args.device]
        for stage, held, peak in run_probe(__file__, arguments, side):
            print(f"| {side} | {stage} | {held:.1f} | {peak:.1f} |", flush=True)
    print(f"\ncommand: `python bench/memory_breakdown.py {' '.join(sys.argv[1:])}`")


if __name__ == "__main__":
    main()
