# cs-vit: instructor-only (compares the fast tier, which the student release leaves out)
"""Speed and memory of cs_vit against PyTorch eager: the same ViT, batch, dtype and threads.

    python bench/compare_torch.py                  # NumPy backend vs torch on the CPU
    python bench/compare_torch.py --device cuda    # CuPy backend vs torch CUDA
    python bench/compare_torch.py --rounds 15 --steps 3 --configs patch8 --malloc tuned
    python bench/compare_torch.py --with-torch-loop  # + torch with AdamW's per-tensor loop

Sides, all from the same weights (``VisionTransformer.to_torchvision``), on the same
float32 batch, each with AdamW and the same no-decay rule:

- ``torch``: torchvision's ViT, eager, with ``torch.optim.AdamW(fused=True)``
  (``foreach=True`` where fused is not available), its best setting;
- ``fast``: cs_vit's fast tier (``cs_vit.fast``), whose last block computes the
  CLS token alone: fewer matrix products than the model asks for, so its own row;
- ``fast, full last block``: the fast tier with every token through every block,
  the same computation as torch's;
- ``textbook``: the textbook tier (``CS_VIT_FAST=0``), the code students write;
- on the GPU also ``fast, CUDA graph``: the fast tier's step (CLS-only last block)
  and inference pass over fixed buffers, each recorded once as a CUDA graph and
  replayed (``cs_vit.fast.captured``, what the solver runs on the GPU by default).

Every side runs with the same number of threads: ``torch.set_num_threads`` gets
the BLAS thread count NumPy uses (threadpoolctl); both are printed. A round
times a few training steps (forward + backward + AdamW, the loss fetched as a
Python float) of each side in turn; the order rotates every round and the table
gives medians over all rounds, so load from other processes hits every side.
Inference (eval mode under ``no_grad`` / ``torch.no_grad()``) is timed the same way.

``import cs_vit`` raises glibc's malloc thresholds for the whole process
(``CS_VIT_KEEP_FREED_MEMORY``), which changes torch's timings too: ``--malloc
both`` (the default) measures once with the setting on and once, in a new
process, with it off; each table says which.

Memory: each side runs 3 steps in a fresh process; torch's never imports cs_vit.
An inference probe builds no optimizer on either side (torch's AdamW allocates its
state at its first step, and cs_vit's sides make theirs at their first training step).
On the CPU the figure is the peak resident memory minus the resident memory
before the model was built (the same measure for both libraries); on the GPU it
is the peak of bytes in use (torch's ``max_memory_allocated``, CuPy's allocations
tracked by a memory hook), not the pools' reserved bytes.
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

HERE = Path(__file__).resolve().parent
MODEL = dict(image_size=32, in_channels=3, num_classes=10, embed_dim=128, depth=6,
             num_heads=4, mlp_dim=256)
CONFIGS = {"patch8": dict(MODEL, patch_size=8), "patch4": dict(MODEL, patch_size=4)}
LABELS = {"patch8": "seed config (patch 8)", "patch4": "patch 4"}
SIDES = ("torch", "fast", "fast_full", "textbook")
GPU_SIDES = SIDES + ("fast_graph",)
SIDE_LABELS = {"torch": "PyTorch eager", "fast": "cs_vit fast (CLS-only last block)",
               "fast_full": "cs_vit fast, full last block", "textbook": "cs_vit textbook",
               "fast_graph": "cs_vit fast, CUDA graph (CLS-only last block)",
               "torch_loop": "PyTorch eager, AdamW per-tensor loop (the 2026-11-26 setting)"}
CLS_ONLY_SIDES = ("fast", "fast_graph")
LR, WEIGHT_DECAY = 1e-3, 0.05
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
MALLOC_VAR = "CS_VIT_KEEP_FREED_MEMORY"


def numpy_blas():
    """threadpoolctl's record of the BLAS that NumPy itself links (not SciPy's or torch's)."""
    from threadpoolctl import threadpool_info
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    numpy_dir = os.path.dirname(np.__file__)
    own = [info for info in blas if info["filepath"].startswith(os.path.dirname(numpy_dir))
           and "numpy" in info["filepath"]]
    return (own or blas)[0]


def set_torch_threads():
    """Give torch as many threads as NumPy's BLAS uses; returns that number."""
    threads = numpy_blas()["num_threads"]
    torch.set_num_threads(threads)
    return threads


def torch_adamw(reference, loop=False):
    """torch AdamW, fused (else foreach), with cs_vit's rule: no decay for 1-D params, CLS, positions.

    ``loop=True``: torch's per-tensor loop (neither fused nor foreach), the setting of the
    benchmark's 2026-11-26 table, for a row that reproduces that comparison.
    """
    decay, no_decay = [], []
    for name, p in reference.named_parameters():
        if p.requires_grad:
            excluded = p.ndim <= 1 or name in ("class_token", "encoder.pos_embedding")
            (no_decay if excluded else decay).append(p)
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY},
              {"params": no_decay, "weight_decay": 0.0}]
    if loop:
        return torch.optim.AdamW(groups, lr=LR, foreach=False, fused=False)
    try:
        return torch.optim.AdamW(groups, lr=LR, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=LR, foreach=True)


def adamw_kind(optimizer):
    return "fused" if optimizer.defaults.get("fused") else "foreach"


def make_batch(batch, config):
    rng = np.random.default_rng(0)
    shape = (batch, config["in_channels"], config["image_size"], config["image_size"])
    return (rng.standard_normal(shape).astype(np.float32),
            rng.integers(0, config["num_classes"], size=batch))


def device_sync(device, library):
    if device != "cuda":
        return lambda: None
    if library == "torch":
        return torch.cuda.synchronize
    import cupy
    return lambda: cupy.cuda.get_current_stream().synchronize()


# ---------------------------------------------------------------- the sides


def in_tier(side, function):
    """``function`` run with cs_vit's tiers set as ``side`` wants them, restored after."""
    from cs_vit import fast, tiers
    from cs_vit.models import VisionTransformer

    def run():
        with fast.enabled(side != "textbook"):
            if side == "fast_full":  # the textbook ViT wiring: every token through every block
                tiers.restore(VisionTransformer.forward)
                tiers.restore(VisionTransformer.backward)
            return function()
    return run


def cs_vit_side(side, config, batch, device, initial_state=None):
    """``train``, ``eval``, ``infer``, ``sync`` callables and the model of one cs_vit side.

    The optimizer (and the captured side's training step) is made by ``training()``,
    which the first ``train()`` call runs: inference never builds one, as torch's AdamW
    allocates nothing before its first step, so an inference-only memory probe holds no
    optimizer state on either side. ``graphs()`` lists the captured side's replayed work.
    """
    from cs_vit import backend
    from cs_vit.layers import no_grad, softmax_cross_entropy
    from cs_vit.models import VisionTransformer
    from cs_vit.optim import make_optimizer

    backend.use_device(device)
    backend.seed(0)
    model = VisionTransformer(**config)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    model.to_active_backend()
    images, labels = make_batch(batch, config)
    x, y = backend.asarray(images), backend.asarray(labels)
    made = {}

    def training():
        """(optimizer, captured step or None), made on first use."""
        if "optimizer" not in made:
            # The optimizer moves the parameters into flat buffers: a forward graph
            # recorded before would read the old arrays, so it is dropped (and re-recorded).
            made.pop("forward", None)
            made["optimizer"] = make_optimizer("adamw", model, LR, WEIGHT_DECAY)
            made["step"] = None
            if side == "fast_graph":
                from cs_vit.fast.captured import StaticTrainStep
                made["step"] = StaticTrainStep(model, made["optimizer"], batch)
        return made["optimizer"], made["step"]

    def train():
        optimizer, step = training()
        if step is not None:  # the same step, replayed as a graph; its loss fetched too
            step(x, y, LR)
            return float(step.loss)
        logits = model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        model.backward(dlogits, input_grad=False)
        optimizer.step()
        return loss

    def infer():
        if side == "fast_graph":  # the same pass, replayed as a graph
            if "forward" not in made:
                from cs_vit.fast.captured import StaticForward
                made["forward"] = StaticForward(model, batch)
            return made["forward"](x)
        with no_grad():
            return model.forward(x)

    def graphs():
        return [made[key] for key in ("forward", "step") if made.get(key) is not None]

    return dict(train=in_tier(side, train), eval=model.eval, infer=in_tier(side, infer),
                sync=device_sync(device, "cupy"), model=model, training=in_tier(side, training),
                graphs=graphs)


def torch_side(reference, config, batch, device, loop=False):
    """The same callables for a torchvision ViT (``loop``: AdamW's per-tensor loop)."""
    reference = reference.to(device).train()
    optimizer = torch_adamw(reference, loop)
    images, labels = make_batch(batch, config)
    xt, yt = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)

    def train():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(reference(xt), yt)
        loss.backward()
        optimizer.step()
        return loss.item()

    def infer():
        with torch.no_grad():
            return reference(xt)

    return dict(train=train, eval=reference.eval, infer=infer, sync=device_sync(device, "torch"),
                optimizer=optimizer, model=reference)


def make_sides(config, batch, device, names=SIDES):
    """{side name: callables}, every side starting from the same weights."""
    from cs_vit import backend
    from cs_vit.models import VisionTransformer

    set_torch_threads()
    backend.use("numpy")
    backend.seed(0)
    start = VisionTransformer(**config)
    sides = {name: cs_vit_side(name, config, batch, device, start.state_dict())
             for name in names if not name.startswith("torch")}
    for name in ("torch", "torch_loop"):
        if name in names:
            sides[name] = torch_side(start.to_torchvision(), config, batch, device,
                                     loop=name == "torch_loop")
    return sides


# ---------------------------------------------------------------- timing


def rotate(sides, kind, rounds, steps):
    """Per-call seconds of ``kind`` ("train"/"infer") for each side; the order rotates by round."""
    names = list(sides)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            side = sides[name]
            side[kind]()  # untimed: lets the other sides' threads go idle first
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
    rates = {}
    for name, fn, sync in (("ours", lambda: a @ a, device_sync(device, "cupy")),
                           ("torch", lambda: at @ at, device_sync(device, "torch"))):
        fn(), sync()
        best = min(_timed(fn, sync) for _ in range(5))
        rates[name] = 2 * size**3 / best / 1e9
    return rates


def _timed(fn, sync):
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def forward_flops(config, batch, cls_only_last_block=False):
    """Multiply-adds x 2 of the forward pass's matrix products (element-wise work left out).

    Returns (total, patch embedding's share). With ``cls_only_last_block`` the last
    block computes its queries, attention output, MLP for the CLS token alone.
    """
    P, C, D, M = config["patch_size"], config["in_channels"], config["embed_dim"], config["mlp_dim"]
    patches = (config["image_size"] // P) ** 2
    T, N = patches + 1, batch
    patch_embed = 2 * N * patches * C * P * P * D
    block = 2 * N * T * D * (3 * D + D + 2 * M) + 2 * 2 * N * T * T * D
    last = block
    if cls_only_last_block:  # keys and values of every token; everything else for one row
        last = 2 * N * T * D * 2 * D + 2 * N * D * (D + D + 2 * M) + 2 * 2 * N * T * D
    total = patch_embed + (config["depth"] - 1) * block + last + 2 * N * D * config["num_classes"]
    return total, patch_embed


# ---------------------------------------------------------------- memory


def probe_memory(side, kind, name, batch, device):
    """Run in a subprocess: peak memory (bytes) of 3 ``kind`` calls of one side, as JSON.

    torch's probe never imports cs_vit (no malloc retuning, nothing of ours loaded).
    """
    set_torch_threads()
    config = CONFIGS[name]
    warm = np.ones((256, 256), np.float32)
    (warm @ warm, torch.ones(256, 256) @ torch.ones(256, 256))  # start both thread pools
    on_torch = side.startswith("torch")
    hook = cupy_peak_hook() if device == "cuda" and not on_torch else None
    before = _reset_peak_resident_bytes() if device != "cuda" else 0
    if on_torch:
        runner = torch_side(torchvision_vit(config), config, batch, device,
                            loop=side == "torch_loop")
    else:
        runner = cs_vit_side(side, config, batch, device)
    if kind == "infer":
        runner["eval"]()
    for _ in range(3):
        runner[kind]()
    runner["sync"]()
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() if on_torch else hook.peak
    else:
        peak = _proc_status_bytes("VmHWM") - before
    print(json.dumps({"peak_bytes": peak}))


def cupy_peak_hook():
    """A CuPy memory hook, entered, counting the peak of bytes handed out by the pool."""
    from cupy.cuda import memory_hook

    class PeakInUse(memory_hook.MemoryHook):
        name = "PeakInUse"

        def __init__(self):
            self.in_use = self.peak = 0

        def malloc_postprocess(self, **kwargs):
            self.in_use += kwargs["mem_size"]
            self.peak = max(self.peak, self.in_use)

        def free_postprocess(self, **kwargs):
            self.in_use -= kwargs["mem_size"]

    hook = PeakInUse()
    hook.__enter__()
    return hook


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


def measure_memory(side, kind, name, batch, device):
    arguments = ["--probe", side, kind, "--configs", name, "--batch", str(batch), "--device", device]
    return run_probe(__file__, arguments, side)["peak_bytes"]


def run_probe(script, arguments, side):
    """Run ``script`` with ``arguments`` in a fresh process, in ``side``'s tier; return the JSON
    its last line prints (RuntimeError with its error output if it fails)."""
    env = dict(os.environ, CS_VIT_FAST="0" if side == "textbook" else "1")
    done = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(script).name} {' '.join(arguments)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torchvision_vit(config):
    """torchvision's VisionTransformer for ``config`` (weights from torch's own init)."""
    return TorchvisionViT(config["image_size"], config["patch_size"], config["depth"],
                          config["num_heads"], config["embed_dim"], config["mlp_dim"],
                          num_classes=config["num_classes"])


# ---------------------------------------------------------------- report


def cpu_model():
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device, threads):
    import scipy
    import torchvision
    blas = numpy_blas()
    mkl = [line.split("Version")[1].split("-")[0].strip()
           for line in torch.__config__.show().splitlines() if "Math Kernel Library" in line]
    torch_blas = f"MKL {mkl[0]}" if mkl else "its bundled BLAS"
    variables = ", ".join(f"{v}={os.environ[v]}" for v in OPENBLAS_VARS if v in os.environ)
    lines = [
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores; threads: NumPy's BLAS "
        f"{blas['num_threads']}, torch {torch.get_num_threads()} (set to NumPy's)",
        f"- NumPy {np.__version__} with {blas['internal_api']} {blas['version']} "
        f"(kernel {blas.get('architecture', '?')}, {blas['threading_layer']}); SciPy {scipy.__version__}; "
        f"PyTorch {torch.__version__} with {torch_blas} (eager, torchvision {torchvision.__version__} ViT)",
        f"- Python {platform.python_version()}, {datetime.date.today()}; "
        f"environment: {variables or 'no OpenBLAS/OpenMP variables set'}",
    ]
    if device == "cuda":
        import cupy
        lines.append(f"- GPU: {torch.cuda.get_device_name()}; CuPy {cupy.__version__}, "
                     f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
        from cs_vit.fast.cublas import workspace_bytes
        ours = workspace_bytes(cupy.cuda.Device().compute_capability) / 2**20
        lines.append("- memory: torch's figures and the fast tier's include a cuBLAS workspace "
                     "taken from the library's pool (torch's: 32 MiB on Hopper, about 8 MiB "
                     f"elsewhere; the fast tier's on this GPU: {ours:.0f} MiB); the textbook "
                     "tier's products go through CuPy's cuBLAS handle, whose workspace cuBLAS "
                     "allocates itself, outside CuPy's pool and these figures; "
                     "`bench/memory_breakdown.py` splits them stage by stage")
    return lines


def median_ms(seconds):
    return statistics.median(seconds) * 1e3


def malloc_setting():
    """How this process left glibc's malloc: cs_vit's setting, or untouched."""
    if os.environ.get(MALLOC_VAR, "1") == "0":
        return f"malloc untouched ({MALLOC_VAR}=0): both libraries with glibc's defaults"
    return "malloc retuned by `import cs_vit` (the default), for torch in this process too"


def run(args):
    threads = set_torch_threads()
    load_before = os.getloadavg()[0]
    size = 8192 if args.device == "cuda" else 2048
    peak_rates = matmul_rate(args.device, size)
    peak = max(peak_rates.values())
    rows, agreement = [], []
    for name in args.configs:
        config = CONFIGS[name]
        names = (GPU_SIDES if args.device == "cuda" else SIDES) + (
            ("torch_loop",) if args.with_torch_loop else ())
        sides = make_sides(config, args.batch, args.device, names)
        first_losses = {side: sides[side]["train"]() for side in names}
        train = rotate(sides, "train", args.rounds, args.steps)
        for side in sides.values():
            side["eval"]()
        infer = rotate(sides, "infer", args.rounds, args.steps)
        agreement.append(agreement_line(name, sides, first_losses, args))
        memory = {(side, kind): measure_memory(side, kind, name, args.batch, args.device)
                  for side in names for kind in ("train", "infer")}
        rows += table_rows(name, config, args.batch, train, infer, memory, peak, names)
        print("\n".join(rows[-len(names):]), flush=True)
    load_after = os.getloadavg()[0]
    adamw = adamw_kind(sides["torch"]["optimizer"])
    return render(args, rows, agreement, threads, peak_rates, size, (load_before, load_after), adamw)


def agreement_line(name, sides, first_losses, args):
    from cs_vit import backend
    logits = {side: backend.to_numpy(sides[side]["infer"]()) for side in sides
              if not side.startswith("torch")}
    torch_logits = sides["torch"]["infer"]().cpu().numpy()
    loss_diff = max(abs(first_losses[side] - first_losses["torch"]) for side in logits)
    logits_diff = max(float(np.max(np.abs(value - torch_logits))) for value in logits.values())
    return (f"{LABELS[name]}: first-step losses differ from torch's by at most {loss_diff:.1e}, "
            f"logits after {1 + 2 * args.rounds * (args.steps + 1)} identical AdamW steps by at "
            f"most {logits_diff:.1e} (max abs, every cs_vit side)")


def table_rows(name, config, batch, train, infer, memory, peak, names):
    rows = []
    torch_ms = (median_ms(train["torch"]), median_ms(infer["torch"]))
    for side in names:
        ms = (median_ms(train[side]), median_ms(infer[side]))
        fwd, patch_embed = forward_flops(config, batch, cls_only_last_block=side in CLS_ONLY_SIDES)
        rate = (3 * fwd - patch_embed) / ms[0] / 1e6  # no gradient for the input images
        mib = {kind: memory[side, kind] / 2**20 for kind in ("train", "infer")}
        torch_mib = {kind: memory["torch", kind] / 2**20 for kind in ("train", "infer")}
        ratio = (lambda ours, theirs: "1" if side == "torch" else f"**{ours / theirs:.2f}**")
        rows.append(
            f"| {LABELS[name]} | {SIDE_LABELS[side]} | {ms[0]:.1f} | {ratio(ms[0], torch_ms[0])} "
            f"| {ms[1]:.1f} | {ratio(ms[1], torch_ms[1])} | {rate:.0f} ({100 * rate / peak:.0f}%) "
            f"| {mib['train']:.0f} ({ratio(mib['train'], torch_mib['train'])}) "
            f"| {mib['infer']:.0f} ({ratio(mib['infer'], torch_mib['infer'])}) |")
    return rows


def render(args, rows, agreement, threads, peak_rates, size, loads, adamw):
    backend_name = "CuPy" if args.device == "cuda" else "NumPy"
    torch_name = "torch CUDA" if args.device == "cuda" else "torch CPU"
    memory_kind = "peak bytes in use" if args.device == "cuda" else "peak RSS growth"
    header = (
        f"# cs_vit ({backend_name}) vs PyTorch eager ({torch_name}), float32, batch {args.batch}\n\n"
        f"{malloc_setting()}.\n\n"
        "Model: image 32x32, dim 128, depth 6, 4 heads, MLP 256, 10 classes, CLS token. "
        f"Median of {args.rounds} rotating rounds x {args.steps} calls per side; "
        "ratio = side / torch (below 1: faster or smaller than torch). The CLS-only row "
        "does fewer matrix products than torch (its GFLOP/s counts its own); the full-last-block "
        "row does the same computation as torch.\n\n"
        f"| config | side | train step (ms) | ratio | inference (ms) | ratio "
        f"| train GFLOP/s (% of matmul peak) | train {memory_kind} MiB (ratio) "
        f"| inference {memory_kind} MiB (ratio) |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    notes = [
        f"- PyTorch's optimizer: torch.optim.AdamW({adamw}=True); cs_vit's: make_optimizer("
        "\"adamw\") (the fast tier's flat update, the textbook tier's per-parameter one)",
        f"- matmul peak ({size}^3 float32 product, same run): {backend_name} "
        f"{peak_rates['ours']:.0f} GFLOP/s, torch {peak_rates['torch']:.0f} GFLOP/s",
        f"- same results: {'; '.join(agreement)}",
        f"- load average before / after: {loads[0]:.2f} / {loads[1]:.2f}",
        *environment(args.device, threads),
        f"- command: `{command_line(args)}`",
    ]
    return header + "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def command_line(args):
    prefix = f"{MALLOC_VAR}=0 " if os.environ.get(MALLOC_VAR) == "0" else ""
    return f"{prefix}python bench/compare_torch.py {' '.join(sys.argv[1:])}".strip()


def run_both_malloc_settings(args):
    """The whole comparison twice, each in its own process: malloc retuned, then untouched."""
    reports = []
    for setting in ("tuned", "untouched"):
        command = [sys.executable, __file__, "--malloc", setting, "--out", "-",
                   "--device", args.device, "--batch", str(args.batch), "--rounds",
                   str(args.rounds), "--steps", str(args.steps), "--configs", *args.configs,
                   *(["--with-torch-loop"] if args.with_torch_loop else [])]
        env = dict(os.environ)
        if setting == "untouched":
            env[MALLOC_VAR] = "0"
        else:
            env.pop(MALLOC_VAR, None)
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
        reports.append(out.split("<<report>>\n", 1)[1])
    return "\n".join(reports)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["patch8", "patch4"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=10, help="rotating rounds per side")
    p.add_argument("--steps", type=int, default=3, help="timed calls per round")
    p.add_argument("--malloc", choices=("both", "tuned", "untouched"), default="both",
                   help="cs_vit's malloc setting for the timing process (see the docstring)")
    p.add_argument("--out", help="write the Markdown tables here (default bench/results_<device>.md)")
    p.add_argument("--with-torch-loop", action="store_true",
                   help="add a torch row whose AdamW loops over the tensors (the setting of the "
                        "earlier, unequal comparison), to set old ratios beside new ones")
    p.add_argument("--probe", nargs=2, metavar=("SIDE", "KIND"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        probe_memory(*args.probe, args.configs[0], args.batch, args.device)
        return
    if args.out is None:
        args.out = str(HERE / f"results_{args.device}.md")
    if args.malloc == "both":
        report = run_both_malloc_settings(args)
    else:
        report = run(args)
    if args.out == "-":
        print("<<report>>\n" + report, end="")
    else:
        print(report)
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
