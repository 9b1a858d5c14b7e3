"""Speed and memory of cs_vit against PyTorch eager: the same ViT, batch, dtype and threads.

    python bench/compare_torch.py                  # NumPy backend vs torch on the CPU
    python bench/compare_torch.py --device cuda    # CuPy backend vs torch CUDA
    python bench/compare_torch.py --rounds 15 --steps 3 --configs patch8

Both sides start from the same weights (``VisionTransformer.to_torchvision``),
train with AdamW (the same no-decay rule) on the same float32 batch, and run with
the same number of threads: ``torch.set_num_threads`` gets the BLAS thread count
NumPy uses, as threadpoolctl reports it. A round times a few training steps
(forward + backward + AdamW update, the loss fetched as a Python float) of one
side, then of the other; rounds alternate which side goes first, and the table
gives medians over all rounds, so load from other processes hits both sides.
Inference (a forward pass in eval mode under ``no_grad``, as under
``torch.no_grad()`` on the torch side) is timed the same way.
Achieved GFLOP/s counts the model's matrix products (3x the forward pass for a
training step) against the best float32 matmul rate measured in the same run.
Peak memory comes from a fresh subprocess per side: on the CPU the peak resident
memory minus the resident memory before the model was built; on the GPU the
peak of each library's memory pool.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.models import VisionTransformer as TorchvisionViT

from cs_vit import backend
from cs_vit.layers import no_grad, softmax_cross_entropy
from cs_vit.models import ViTConfig, VisionTransformer
from cs_vit.optim import AdamW

HERE = Path(__file__).resolve().parent
CONFIGS = {"patch8": dict(patch_size=8), "patch4": dict(patch_size=4)}
LABELS = {"patch8": "seed config (patch 8)", "patch4": "patch 4"}
LR, WEIGHT_DECAY = 1e-3, 0.05
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def numpy_blas():
    """threadpoolctl's record of the BLAS that NumPy itself links (not SciPy's or torch's)."""
    from threadpoolctl import threadpool_info
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    numpy_dir = os.path.dirname(np.__file__)
    own = [info for info in blas if info["filepath"].startswith(os.path.dirname(numpy_dir))
           and "numpy" in info["filepath"]]
    return (own or blas)[0]


def set_torch_threads():
    """Give torch as many threads as NumPy's BLAS uses."""
    torch.set_num_threads(numpy_blas()["num_threads"])


# ---------------------------------------------------------------- the two sides


def make_sides(config, batch, device):
    """(ours, theirs): dicts of ``train``, ``eval``, ``infer`` and ``sync`` callables.

    Both sides hold the same initial weights and see the same batch; ``eval``
    switches a side to evaluation mode (for ``infer``) once training is timed.
    """
    set_torch_threads()
    backend.use_device(device)
    backend.seed(0)
    model = VisionTransformer(**config)
    reference = model.to_torchvision().to(device).train()
    model.to_active_backend()
    model.flatten_parameters()
    optimizer = AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    images, labels = make_batch(batch, model.config)
    x, y = backend.asarray(images), backend.asarray(labels)
    xt, yt = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    torch_optimizer = torch_adamw(reference)

    def train():
        logits = model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        model.backward(dlogits, input_grad=False)
        optimizer.step()
        return loss

    def train_torch():
        torch_optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(reference(xt), yt)
        loss.backward()
        torch_optimizer.step()
        return loss.item()

    def infer_torch():
        with torch.no_grad():
            return reference(xt)

    sync_torch = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    ours = dict(train=train, eval=model.eval, infer=lambda: infer_ours(model, x), sync=device_sync(device))
    theirs = dict(train=train_torch, eval=reference.eval, infer=infer_torch, sync=sync_torch)
    return ours, theirs


def infer_ours(model, x):
    with no_grad():
        return model.forward(x)


def make_batch(batch, config):
    rng = np.random.default_rng(0)
    shape = (batch, config.in_channels, config.image_size, config.image_size)
    return (rng.standard_normal(shape).astype(np.float32),
            rng.integers(0, config.num_classes, size=batch))


def torch_adamw(reference):
    """torch AdamW with cs_vit's default rule: no decay for 1-D params, CLS token, positions."""
    decay, no_decay = [], []
    for name, p in reference.named_parameters():
        excluded = p.ndim <= 1 or name in ("class_token", "encoder.pos_embedding")
        (no_decay if excluded else decay).append(p)
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR)


def device_sync(device):
    if device != "cuda":
        return lambda: None
    import cupy
    return lambda: cupy.cuda.get_current_stream().synchronize()


# ---------------------------------------------------------------- timing


def alternate(ours, theirs, kind, rounds, steps):
    """Per-call seconds of ``kind`` ("train"/"infer") for each side, alternating sides by round."""
    times = {"ours": [], "torch": []}
    sides = [("ours", ours), ("torch", theirs)]
    for r in range(rounds):
        for name, side in sides if r % 2 == 0 else sides[::-1]:
            side[kind]()  # untimed: lets the other library's threads go idle first
            side["sync"]()
            for _ in range(steps):
                start = time.perf_counter()
                side[kind]()
                side["sync"]()
                times[name].append(time.perf_counter() - start)
    return times


def matmul_rate(device, size):
    """Best float32 GFLOP/s of NumPy/CuPy and of torch on a size^3 matrix product."""
    set_torch_threads()
    if device == "cuda":
        import cupy as xp
    else:
        xp = np
    a = xp.asarray(np.random.default_rng(0).standard_normal((size, size), dtype=np.float32))
    at = torch.as_tensor(np.asarray(a.get() if device == "cuda" else a), device=device)
    sync_ours, sync_torch = device_sync(device), (torch.cuda.synchronize if device == "cuda" else (lambda: None))
    rates = {}
    for name, fn, sync in (("ours", lambda: a @ a, sync_ours), ("torch", lambda: at @ at, sync_torch)):
        fn(), sync()
        best = min(_timed(fn, sync) for _ in range(5))
        rates[name] = 2 * size**3 / best / 1e9
    return rates


def _timed(fn, sync):
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def forward_flops(config, batch):
    """Multiply-adds x 2 of the forward pass's matrix products (element-wise work left out)."""
    P, C, D, M = config.patch_size, config.in_channels, config.embed_dim, config.mlp_dim
    patches = (config.image_size // P) ** 2
    T = patches + 1
    patch_embed = 2 * batch * patches * C * P * P * D
    block = 2 * batch * T * D * (3 * D + D + 2 * M) + 2 * 2 * batch * T * T * D
    return patch_embed + config.depth * block + 2 * batch * D * config.num_classes, patch_embed


# ---------------------------------------------------------------- memory


def probe_memory(side, kind, name, batch, device):
    """Run in a subprocess: peak memory (bytes) of 3 ``kind`` calls of one side, as JSON."""
    set_torch_threads()
    config = ViTConfig(**CONFIGS[name])
    images, labels = make_batch(batch, config)
    warm = np.ones((256, 256), np.float32)
    (warm @ warm, torch.ones(256, 256) @ torch.ones(256, 256))  # start both thread pools
    before = _reset_peak_resident_bytes() if device != "cuda" else 0
    if side == "ours":
        run = _ours_runner(config, images, labels, kind, device)
    else:
        run = _torch_runner(config, images, labels, kind, device)
    for _ in range(3):
        run()
    if device == "cuda":
        peak = (torch.cuda.max_memory_reserved() if side == "torch"
                else __import__("cupy").get_default_memory_pool().total_bytes())
    else:
        peak = _proc_status_bytes("VmHWM") - before
    print(json.dumps({"peak_bytes": peak}))


def _reset_peak_resident_bytes():
    """Reset the kernel's peak-RSS mark to the current RSS (Linux), and return that RSS.

    (``getrusage``'s ru_maxrss would not do: it keeps the parent's peak across exec.)
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _proc_status_bytes("VmRSS")


def _proc_status_bytes(field):
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _ours_runner(config, images, labels, kind, device):
    backend.use_device(device)
    model = VisionTransformer(**vars(config))
    model.flatten_parameters()
    x, y = backend.asarray(images), backend.asarray(labels)
    if kind == "infer":
        model.eval()
        return lambda: infer_ours(model, x)
    optimizer = AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    def train():
        loss, dlogits = softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits, input_grad=False)
        optimizer.step()
    return train


def _torch_runner(config, images, labels, kind, device):
    model = TorchvisionViT(config.image_size, config.patch_size, config.depth, config.num_heads,
                           config.embed_dim, config.mlp_dim, num_classes=config.num_classes).to(device)
    xt, yt = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    if kind == "infer":
        model.eval()
        return lambda: torch.no_grad()(model)(xt)
    optimizer = torch_adamw(model)

    def train():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        optimizer.step()
        loss.item()
    return train


def measure_memory(side, kind, name, batch, device):
    command = [sys.executable, __file__, "--probe", side, kind, "--configs", name,
               "--batch", str(batch), "--device", device]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


# ---------------------------------------------------------------- report


def environment(device, threads):
    import scipy
    import torchvision
    blas = numpy_blas()
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    mkl = [line.split("Version")[1].split("-")[0].strip()
           for line in torch.__config__.show().splitlines() if "Math Kernel Library" in line]
    torch_blas = f"MKL {mkl[0]}" if mkl else "its bundled BLAS"
    lines = [
        f"- machine: {cpu}, {os.cpu_count()} logical cores; {threads} threads on each side "
        f"(torch.set_num_threads = NumPy's BLAS threads from threadpoolctl)",
        f"- NumPy {np.__version__} with {blas['internal_api']} {blas['version']} "
        f"(kernel {blas.get('architecture', '?')}, {blas['threading_layer']}); SciPy {scipy.__version__}; "
        f"PyTorch {torch.__version__} with {torch_blas} (eager, torchvision {torchvision.__version__} ViT)",
        f"- Python {platform.python_version()}, {datetime.date.today()}; "
        f"environment: {', '.join(f'{v}={os.environ[v]}' for v in OPENBLAS_VARS if v in os.environ) or 'no OpenBLAS/OpenMP variables set'}",
    ]
    if device == "cuda":
        import cupy
        lines.append(f"- GPU: {torch.cuda.get_device_name()}; CuPy {cupy.__version__}, "
                     f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
    return lines


def median_ms(seconds):
    return statistics.median(seconds) * 1e3


def run(args):
    threads = numpy_blas()["num_threads"]
    load_before = os.getloadavg()[0]
    size = 8192 if args.device == "cuda" else 2048
    peak_rates = matmul_rate(args.device, size)
    peak = max(peak_rates.values())
    rows, agreement = [], []
    for name in args.configs:
        config = ViTConfig(**CONFIGS[name])
        ours, theirs = make_sides(vars(config), args.batch, args.device)
        first_loss_diff = abs(ours["train"]() - theirs["train"]())
        train = alternate(ours, theirs, "train", args.rounds, args.steps)
        ours["eval"](), theirs["eval"]()
        infer = alternate(ours, theirs, "infer", args.rounds, args.steps)
        logits_diff = float(np.max(np.abs(backend.to_numpy(ours["infer"]()) - theirs["infer"]().cpu().numpy())))
        agreement.append(f"{LABELS[name]}: first-step loss differs by {first_loss_diff:.1e}, logits "
                         f"after {1 + args.rounds * (args.steps + 1)} identical AdamW steps by "
                         f"{logits_diff:.1e} (max abs)")
        fwd, patch_embed = forward_flops(config, args.batch)
        train_flops = 3 * fwd - patch_embed  # no gradient for the input images
        memory = {(side, kind): measure_memory(side, kind, name, args.batch, args.device)
                  for side in ("ours", "torch") for kind in ("train", "infer")}
        rows.append(row(LABELS[name], train, infer, train_flops, fwd, peak, memory))
        print(rows[-1], flush=True)
    load_after = os.getloadavg()[0]
    report = render(args, rows, agreement, threads, peak_rates, size, (load_before, load_after))
    print(report)
    if args.out:
        Path(args.out).write_text(report)


def row(label, train, infer, train_flops, infer_flops, peak, memory):
    ms = {k: (median_ms(train[k]), median_ms(infer[k])) for k in ("ours", "torch")}
    rate = {k: train_flops / ms[k][0] / 1e6 for k in ms}
    mib = {key: value / 2**20 for key, value in memory.items()}
    return (f"| {label} | {ms['ours'][0]:.1f} | {ms['torch'][0]:.1f} | **{ms['ours'][0] / ms['torch'][0]:.2f}** "
            f"| {ms['ours'][1]:.1f} | {ms['torch'][1]:.1f} | **{ms['ours'][1] / ms['torch'][1]:.2f}** "
            f"| {rate['ours']:.0f} ({100 * rate['ours'] / peak:.0f}%) "
            f"| {rate['torch']:.0f} ({100 * rate['torch'] / peak:.0f}%) "
            f"| {mib['ours', 'train']:.0f} / {mib['torch', 'train']:.0f} "
            f"(**{mib['ours', 'train'] / mib['torch', 'train']:.2f}**) "
            f"| {mib['ours', 'infer']:.0f} / {mib['torch', 'infer']:.0f} |")


def render(args, rows, agreement, threads, peak_rates, size, loads):
    backend_name = "CuPy" if args.device == "cuda" else "NumPy"
    torch_name = "torch CUDA" if args.device == "cuda" else "torch CPU"
    memory_kind = "memory-pool peak" if args.device == "cuda" else "peak RSS growth"
    header = (
        f"# cs_vit ({backend_name}) vs PyTorch eager ({torch_name}), float32, batch {args.batch}\n\n"
        "Model: image 32x32, dim 128, depth 6, 4 heads, MLP 256, 10 classes, CLS token. "
        f"Median of {args.rounds} alternating rounds x {args.steps} calls per side; "
        "ratio = cs_vit / torch (below 1: cs_vit is faster).\n\n"
        f"| config | train step cs_vit (ms) | torch (ms) | ratio | inference cs_vit (ms) | torch (ms) "
        f"| ratio | train GFLOP/s cs_vit (% of peak) | torch | train {memory_kind} cs_vit / torch (MiB) "
        f"| inference {memory_kind} (MiB) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    notes = [
        f"- matmul peak ({size}^3 float32 product, same run): {backend_name} "
        f"{peak_rates['ours']:.0f} GFLOP/s, torch {peak_rates['torch']:.0f} GFLOP/s; "
        "GFLOP/s counts only the model's matrix products, those of the full model on both "
        "sides (cs_vit's last block computes the CLS token alone, so it does fewer)",
        f"- same results: {'; '.join(agreement)}",
        f"- load average before / after: {loads[0]:.2f} / {loads[1]:.2f}",
        *environment(args.device, threads),
        f"- command: `python bench/compare_torch.py {' '.join(sys.argv[1:])}`".replace("  ", " "),
    ]
    return header + "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["patch8", "patch4"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=10, help="alternating rounds per side")
    p.add_argument("--steps", type=int, default=3, help="timed calls per round")
    p.add_argument("--out", help="write the Markdown table here (default bench/results_<device>.md)")
    p.add_argument("--probe", nargs=2, metavar=("SIDE", "KIND"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        probe_memory(*args.probe, args.configs[0], args.batch, args.device)
        return
    if args.out is None:
        args.out = str(HERE / f"results_{args.device}.md")
    run(args)


if __name__ == "__main__":
    main()
