"""Train the default CIFAR-10 recipe for 2 epochs; report test accuracy and wall time.

    python bench/cifar10_2epochs.py                       # cs_vit (NumPy), fast tier
    python bench/cifar10_2epochs.py --reference           # cs_vit, the textbook tier students write
    python bench/cifar10_2epochs.py --torch               # the same recipe in PyTorch
    python bench/cifar10_2epochs.py --data-dir DIR --patch-size 8 --lr 2e-3
    python bench/cifar10_2epochs.py --train-subset 10000 --val-split 0.1 --lr 2e-3   # recipe study

DIR holds CIFAR-10 as the official python batches or as image folders
(train/<class>/*.jpg, test/<class>/*.jpg). By default the JPEG copy in
../shared/datasets is unpacked to ~/.cache/cs_vit/cifar10-jpeg. Both sides get
the same batches (same seed, same augmentation), the same initial weights,
AdamW with the same no-decay rule, the same schedule and label smoothing, and
the same number of threads (torch.set_num_threads gets NumPy's BLAS thread count).
Each run appends a row to bench/results_cifar10.md, naming the split its epoch
was chosen on (the test set, as CS231n's solver does, or with --val-split a
validation split carved from the training images, the test set then read once),
the CPU model, the threads and the load average before and after. Compare recipes
on validation rows only.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from dataclasses import dataclass
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
    p.add_argument("--val-split", type=float,
                   help="hold out this fraction of the training images: the epoch is chosen "
                        "on them and the test set is read once, at the end (recipe studies)")
    return p.parse_args()


def build_model(args):
    backend.seed(args.seed)
    model = {k: getattr(args, k) for k in CIFAR10["model"]}
    return VisionTransformer(**model, dropout=args.dropout)


@dataclass
class Selection:
    """What a run chose its epoch on, that split's accuracy after each epoch, and the
    test accuracy of the epoch kept (read once when the split is a validation split)."""

    split: str
    per_epoch: list
    test_acc: float


def run_cs_vit(args, train, test):
    solver = ClassificationSolverViT(
        train, test, build_model(args), num_epochs=args.epochs, learning_rate=args.lr,
        weight_decay=args.weight_decay, batch_size=args.batch_size,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
        augment=args.augment, seed=args.seed, val_split=args.val_split)
    results = solver.train("cpu")
    if args.val_split:
        return Selection(f"validation ({args.val_split:g} of train)", results["val_acc@1"],
                         results["best_test_acc"])
    return Selection("test", results["test_acc@1"], results["best_test_acc"])


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
    return Selection("test", accuracies, max(accuracies))


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


HEADER = ("| run | model | recipe | epochs | epoch chosen on | its accuracy per epoch "
          "| test acc of the kept epoch | wall time | machine |\n"
          "|---|---|---|---|---|---|---|---|---|\n")


def record(args, selection, seconds, loads):
    model = ", ".join(f"{k} {getattr(args, k)}" for k in CIFAR10["model"] if k != "image_size")
    subset = f", {args.train_subset} train images" if args.train_subset else ""
    per_epoch = " / ".join(f"{acc:.4f}" for acc in selection.per_epoch)
    row = (f"| {side_name(args)} | {model} | batch {args.batch_size}, lr {args.lr:g}, "
           f"wd {args.weight_decay:g}, warmup {args.warmup_epochs:g} ep, smoothing "
           f"{args.label_smoothing:g}, dropout {args.dropout:g}, augment {args.augment}{subset} "
           f"| {args.epochs} | {selection.split} | {per_epoch} | {selection.test_acc:.4f} "
           f"| {seconds:.0f} s | {time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} "
           f"cores, {blas_threads()} threads, load {loads[0]:.1f} -> {loads[1]:.1f} |\n")
    if not RESULTS.exists() or HEADER not in RESULTS.read_text():
        with open(RESULTS, "a") as f:
            f.write("\n## Runs (the epoch kept is chosen on the split named)\n\n" + HEADER)
    with open(RESULTS, "a") as f:
        f.write(row)
    print(row)


def main():
    args = parse_args()
    if args.torch and args.val_split:
        raise SystemExit("--val-split is for cs_vit runs (recipe studies); the PyTorch run "
                         "reproduces the default recipe on the test set")
    train, test = load_cifar10(data_dir(args.data_dir))
    if args.train_subset:
        keep = np.sort(np.random.default_rng(0).permutation(len(train))[:args.train_subset])
        train = ArrayDataset(train.images[keep], train.labels[keep], train.class_names,
                             train.mean, train.std, train.name)
    if args.reference:
        tiers.restore_all()  # every layer runs its textbook code
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    selection = (run_torch if args.torch else run_cs_vit)(args, train, test)
    record(args, selection, time.perf_counter() - started, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
