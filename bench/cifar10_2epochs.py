"""Train the default CIFAR-10 recipe for 2 epochs; report test accuracy and wall time.

    python bench/cifar10_2epochs.py                       # cs_vit (NumPy), fast tier
    python bench/cifar10_2epochs.py --reference           # cs_vit, the textbook tier students write
    python bench/cifar10_2epochs.py --torch               # the same recipe in PyTorch
    python bench/cifar10_2epochs.py --data-dir DIR --patch-size 8 --lr 2e-3

DIR holds CIFAR-10 as the official python batches or as image folders
(train/<class>/*.jpg, test/<class>/*.jpg). By default the JPEG copy in
../shared/datasets is unpacked to ~/.cache/cs_vit/cifar10-jpeg. Both sides get
the same batches (same seed, same augmentation), the same initial weights,
AdamW with the same no-decay rule, the same schedule and label smoothing, and
the same number of threads (torch.set_num_threads gets NumPy's BLAS thread count).
Each run appends a row to bench/results_cifar10.md, naming the CPU model, the
threads and the load average before and after.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from cs_vit import backend, tiers
from cs_vit.data import ArrayDataset, iterate_batches, load_cifar10
from cs_vit.models import VisionTransformer
from cs_vit.optim import make_schedule
from cs_vit.recipes import CIFAR10
from cs_vit.solvers import ClassificationSolverViT

HERE = Path(__file__).resolve().parent
SHARED_TAR = HERE.parent.parent / "shared" / "datasets" / "cifar10-jpeg" / "cifar10-jpeg.tar.xz"
DEFAULT_DIR = Path.home() / ".cache" / "cs_vit" / "cifar10-jpeg"
RESULTS = HERE / "results_cifar10.md"


def data_dir(path):
    """The CIFAR-10 folder to use, unpacking the shared JPEG copy if needed."""
    if path:
        return Path(path)
    if not (DEFAULT_DIR / "train").is_dir() and SHARED_TAR.exists():
        DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-xJf", str(SHARED_TAR), "-C", str(DEFAULT_DIR)], check=True)
    return DEFAULT_DIR


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir")
    p.add_argument("--torch", action="store_true", help="run the recipe in PyTorch instead")
    p.add_argument("--reference", action="store_true",
                   help="cs_vit's textbook tier (the code students write), not the fast tier")
    p.add_argument("--epochs", type=int, default=CIFAR10["epochs"])
    p.add_argument("--seed", type=int, default=0)
    for key in ("batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "dropout"):
        p.add_argument("--" + key.replace("_", "-"), type=type(CIFAR10[key]), default=CIFAR10[key])
    for key, value in CIFAR10["model"].items():
        p.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   default=bool(CIFAR10["augment"]), help="random crop + flip")
    p.add_argument("--train-subset", type=int,
                   help="train on N random training images only (quick recipe studies)")
    return p.parse_args()


def build_model(args):
    backend.seed(args.seed)
    model = {k: getattr(args, k) for k in CIFAR10["model"]}
    return VisionTransformer(**model, dropout=args.dropout)


def run_cs_vit(args, train, test):
    solver = ClassificationSolverViT(
        train, test, build_model(args), num_epochs=args.epochs, learning_rate=args.lr,
        weight_decay=args.weight_decay, batch_size=args.batch_size,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
        augment=args.augment, seed=args.seed)
    return solver.train("cpu")["test_acc@1"]


def torch_decays(name, param):
    """cs_vit's no-decay rule (biases, norms, positions, CLS token) in torchvision's names."""
    return param.ndim > 1 and name not in ("class_token", "encoder.pos_embedding")


def run_torch(args, train, test):
    """The same recipe with a torchvision ViT holding the same initial weights."""
    import torch

    torch.set_num_threads(blas_threads())
    model = build_model(args).to_torchvision()  # fixed positions come frozen
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in params if torch_decays(n, p)],
               "weight_decay": args.weight_decay},
              {"params": [p for n, p in params if not torch_decays(n, p)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    steps = len(train) // args.batch_size
    schedule = make_schedule("cosine", args.lr, args.epochs * steps,
                             int(round(args.warmup_epochs * steps)))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    augment = args.augment
    accuracies, step = [], 0
    for epoch in range(args.epochs):
        model.train()
        rng = np.random.default_rng([args.seed, epoch])
        for x, y in iterate_batches(train, args.batch_size, rng, shuffle=True, augment=augment,
                                    drop_last=True):
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            optimizer.zero_grad()
            loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            optimizer.step()
            step += 1
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in iterate_batches(test, 256, None, shuffle=False, augment=False,
                                        mean=train.mean, std=train.std):
                correct += int((model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
        accuracies.append(correct / len(test))
        print(f"torch epoch {epoch + 1}: test acc {accuracies[-1]:.4f}", flush=True)
    return accuracies


def blas_threads():
    """The number of threads NumPy's BLAS uses (threadpoolctl), given to torch as well."""
    from threadpoolctl import threadpool_info
    return max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


def cpu_model():
    """The CPU's model name (Linux's /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def side_name(args):
    if args.torch:
        return f"PyTorch {__import__('torch').__version__}"
    return "cs_vit (NumPy, textbook tier)" if args.reference else "cs_vit (NumPy, fast tier)"


def record(args, accuracies, seconds, loads):
    model = ", ".join(f"{k} {getattr(args, k)}" for k in CIFAR10["model"] if k != "image_size")
    row = (f"| {side_name(args)} "
           f"| {model} | batch {args.batch_size}, "
           f"lr {args.lr:g}, wd {args.weight_decay:g}, warmup {args.warmup_epochs:g} ep, "
           f"smoothing {args.label_smoothing:g}, dropout {args.dropout:g}, "
           f"augment {args.augment}"
           f"{f', {args.train_subset} train images' if args.train_subset else ''} | {args.epochs} | {max(accuracies):.4f} "
           f"| {accuracies[-1]:.4f} | {seconds:.0f} s | {time.strftime('%Y-%m-%d')}, "
           f"{cpu_model()}, {os.cpu_count()} cores, {blas_threads()} threads, "
           f"load {loads[0]:.1f} -> {loads[1]:.1f} |\n")
    if not RESULTS.exists():
        RESULTS.write_text(
            "# CIFAR-10, 2 epochs (bench/cifar10_2epochs.py)\n\n"
            "| run | model | recipe | epochs | best test acc | final test acc | wall time | machine |\n"
            "|---|---|---|---|---|---|---|---|\n")
    with open(RESULTS, "a") as f:
        f.write(row)
    print(row)


def main():
    args = parse_args()
    train, test = load_cifar10(data_dir(args.data_dir))
    if args.train_subset:
        keep = np.sort(np.random.default_rng(0).permutation(len(train))[:args.train_subset])
        train = ArrayDataset(train.images[keep], train.labels[keep], train.class_names,
                             train.mean, train.std, train.name)
    if args.reference:
        tiers.restore_all()  # every layer runs its textbook code
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    accuracies = (run_torch if args.torch else run_cs_vit)(args, train, test)
    record(args, accuracies, time.perf_counter() - started, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
