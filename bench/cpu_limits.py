# cs-vit: instructor-only (compares the fast tier, which the student release leaves out)
"""What bounds cs_vit's CPU speed against PyTorch: its operations timed one by one, side by side.

    python bench/cpu_limits.py                 # writes bench/results_cpu_limits.md

bench/compare_torch.py times whole steps; this script times their parts at the
patch-4 model's shapes (batch 64, 65 tokens, dim 128, MLP 256, 4 heads), with the
same thread count on both sides and alternating rounds:

1. the element-wise layers (GELU, LayerNorm, softmax over the keys): cs_vit's
   layer against torch's kernel, forward alone and forward + backward, with the
   cs_vit time also expressed in NumPy passes (one pass: ``x *= -1`` over the same
   data, as cheap as an element-wise operation gets in NumPy);
2. the matrix products of one transformer block's training step: NumPy (its
   BLAS) against torch (its BLAS) for each distinct shape;
3. cs_vit's GELU with its cache-sized blocks shared between two Python threads
   against one thread: NumPy runs one operation per call on one core, and two
   threads would have to take turns holding the interpreter lock between calls.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from compare_torch import environment, numpy_blas, set_torch_threads
from cs_vit import fast
from cs_vit.fast.attention import masked_softmax_keys_first, softmax_backward_keys_first
from cs_vit.fast.gelu_float32 import _gelu_block_float32
from cs_vit.fast.row_blocks import row_blocks
from cs_vit.layers import GELU, LayerNorm

HERE = Path(__file__).resolve().parent
N, T, D, M, HEADS = 64, 65, 128, 256, 4
ROWS, DH = N * T, D // HEADS
WARM_UP_S = 0.2


def alternating_ms(ours, theirs, rounds, calls=5):
    """Median ms per call of each callable, the two alternating round by round."""
    times = ([], [])
    for r in range(rounds):
        for side in ((0, 1) if r % 2 == 0 else (1, 0)):
            _timed_turn((ours, theirs)[side], calls, times[side])
    return tuple(statistics.median(t) * 1e3 for t in times)


def median_ms(fn, rounds, calls=5):
    """Median ms per call of one callable."""
    times = []
    for _ in range(rounds):
        _timed_turn(fn, calls, times)
    return statistics.median(times) * 1e3


def _timed_turn(fn, calls, times):
    """WARM_UP_S of untimed calls, then ``calls`` timed ones, their seconds appended to ``times``.

    The warm-up matters: after a matrix product each library's idle worker threads
    keep spinning for a while, and would slow the other side's first calls (a 1 ms
    product measured up to 4x slower).
    """
    warm_until = time.perf_counter() + WARM_UP_S
    while time.perf_counter() < warm_until:
        fn()
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)


def layer_pair(layer, x, fast_tier=True):
    """(forward in eval mode, forward + backward in training mode) of a cs_vit layer on x.

    ``fast_tier=False`` runs the textbook layer (the code students write).
    """
    def forward():
        with fast.enabled(fast_tier):
            layer.eval()
            return layer.forward(x)

    def train():
        with fast.enabled(fast_tier):
            layer.train()
            return layer.backward(layer.forward(x))
    return forward, train


def torch_pair(fn, x):
    """(forward under no_grad, forward + backward) of a torch function on a copy of x."""
    xt = torch.from_numpy(x.copy()).requires_grad_(True)

    def forward():
        with torch.no_grad():
            return fn(xt)

    def train():
        xt.grad = None
        out = fn(xt)
        out.backward(out)
        return xt.grad
    return forward, train


def softmax_pair(scores_queries_first):
    """cs_vit's softmax over the keys, forward and forward + backward, on keys-first scores.

    Both work in place, as in the layer; repeated calls transform the same buffers
    again, which changes their values but not the work done.
    """
    scores = np.ascontiguousarray(scores_queries_first.transpose(3, 0, 1, 2))
    dattn = scores.copy()

    def forward():
        return masked_softmax_keys_first(scores, None)

    def train():
        return softmax_backward_keys_first(forward(), dattn)
    return forward, train


def elementwise_rows(rounds, rng):
    hidden = rng.standard_normal((ROWS, M), dtype=np.float32)
    tokens = rng.standard_normal((ROWS, D), dtype=np.float32)
    scores = rng.standard_normal((N, HEADS, T, T), dtype=np.float32)
    # torch's LayerNorm with its affine weight and bias, as ours has (and their gradients).
    weight = torch.ones(D, requires_grad=True)
    bias = torch.zeros(D, requires_grad=True)
    cases = [
        ("GELU", (ROWS, M), GELU, hidden, torch.nn.functional.gelu),
        ("LayerNorm", (ROWS, D), lambda: LayerNorm(D), tokens,
         lambda x: torch.nn.functional.layer_norm(x, (D,), weight, bias)),
        ("softmax over the keys", scores.shape, None, scores, lambda x: torch.softmax(x, dim=-1)),
    ]
    rows = []
    for name, shape, make_layer, x, torch_fn in cases:
        data = np.ones(shape, np.float32)
        one_pass = median_ms(lambda: np.multiply(data, -1.0, out=data), rounds)
        ours = layer_pair(make_layer(), x) if make_layer else softmax_pair(x)
        textbook = layer_pair(make_layer(), x, fast_tier=False) if make_layer else None
        theirs = torch_pair(torch_fn, x)
        for kind, index in (("forward", 0), ("forward + backward", 1)):
            mine, torch_ms = alternating_ms(ours[index], theirs[index], rounds)
            plain = (f"{alternating_ms(textbook[index], theirs[index], rounds)[0]:.2f}"
                     if textbook else "— (inside the attention layer)")
            rows.append(f"| {name} {shape} | {kind} | {mine:.2f} | {plain} | {torch_ms:.2f} "
                        f"| **{mine / torch_ms:.1f}** | {mine / one_pass:.0f} |")
    return rows


def gemm_rows(rounds, rng):
    """(x @ W.T, dout @ W, dout.T @ x) of each Linear, and the attention's batched products."""
    shapes = []
    for name, fan_in, fan_out in (("q/k/v", D, 3 * D), ("out_proj", D, D), ("fc1", D, M), ("fc2", M, D)):
        shapes += [(f"{name} forward", (ROWS, fan_in), (fan_in, fan_out)),
                   (f"{name} input grad", (ROWS, fan_out), (fan_out, fan_in)),
                   (f"{name} weight grad", (fan_out, ROWS), (ROWS, fan_in))]
    shapes += [("attention q k^T (x3 per step)", (N * HEADS, T, DH), (N * HEADS, DH, T)),
               ("attention A v (x3 per step)", (N * HEADS, T, T), (N * HEADS, T, DH))]
    rows, totals = [], [0.0, 0.0]
    for name, a_shape, b_shape in shapes:
        if "weight" in name:  # dout.T: a transposed view of the (rows, out) gradient, as in Linear
            a = rng.standard_normal(a_shape[::-1], dtype=np.float32).T
        else:
            a = rng.standard_normal(a_shape, dtype=np.float32)
        b = rng.standard_normal(b_shape, dtype=np.float32)
        at, bt = torch.from_numpy(a), torch.from_numpy(b)
        mine, torch_ms = alternating_ms(lambda: a @ b, lambda: at @ bt, rounds)
        count = 3 if name.startswith("attention") else 1
        totals[0] += count * mine
        totals[1] += count * torch_ms
        rows.append(f"| {name} | {a_shape} @ {b_shape} | {mine:.3f} | {torch_ms:.3f} | **{mine / torch_ms:.2f}** |")
    rows.append(f"| **one block's training step, all products** | | {totals[0]:.2f} | {totals[1]:.2f} "
                f"| **{totals[0] / totals[1]:.2f}** |")
    return rows


def two_thread_row(rounds, rng):
    """cs_vit's float32 GELU (value and derivative), its blocks run by one thread or shared by two."""
    x = rng.standard_normal((ROWS * M,), dtype=np.float32)
    out, dgelu = np.empty_like(x), np.empty_like(x)
    blocks = row_blocks(x)
    pool = ThreadPoolExecutor(max_workers=1)

    def run(some_blocks):
        for block in some_blocks:
            _gelu_block_float32(x[block], out[block], dgelu[block])

    def two_threads():
        half = len(blocks) // 2
        other = pool.submit(run, blocks[:half])
        run(blocks[half:])
        other.result()
    one, two = alternating_ms(lambda: run(blocks), two_threads, rounds)
    pool.shutdown()
    return f"| GELU value and derivative, {len(blocks)} blocks of {blocks[0].stop} | {one:.2f} | {two:.2f} | **{one / two:.2f}** |"


def render(rounds, elementwise, gemms, threads, loads):
    return "\n".join([
        "# What bounds cs_vit on the CPU: its parts against torch's, one by one",
        "",
        f"Patch-4 model shapes (batch {N}, {T} tokens, dim {D}, MLP {M}, {HEADS} heads), float32; "
        f"median over {rounds} alternating rounds x 5 calls. Ratio = cs_vit / torch.",
        "",
        "## Element-wise layers",
        "",
        "| layer (shape) | pass | cs_vit fast tier (ms) | cs_vit textbook tier (ms) | torch (ms) "
        "| ratio fast / torch | fast tier in NumPy passes |",
        "|---|---|---|---|---|---|---|",
        *elementwise,
        "",
        "A NumPy pass is `x *= -1` over the same data. torch runs each of these layers as one",
        "vectorised kernel over all its threads; NumPy runs one operation per call on one core.",
        "",
        "## Matrix products (each once; the attention's three times per training step)",
        "",
        "| product | shapes | NumPy (ms) | torch (ms) | ratio |",
        "|---|---|---|---|---|",
        *gemms,
        "",
        "## Two threads for NumPy's element-wise work",
        "",
        "| work | one thread (ms) | two Python threads (ms) | speed-up |",
        "|---|---|---|---|",
        threads,
        "",
        *environment("cpu", numpy_blas()["num_threads"]),
        f"- load average before / after: {loads[0]:.2f} / {loads[1]:.2f}",
        f"- command: `{' '.join(['python bench/cpu_limits.py', *sys.argv[1:]])}`",
        "",
    ])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6, help="alternating rounds per measurement")
    p.add_argument("--out", default=str(HERE / "results_cpu_limits.md"))
    args = p.parse_args()
    set_torch_threads()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0]
    rows = (elementwise_rows(args.rounds, rng), gemm_rows(args.rounds, rng),
            two_thread_row(args.rounds, rng))
    report = render(args.rounds, *rows, (load_before, os.getloadavg()[0]))
    print(report)
    Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
