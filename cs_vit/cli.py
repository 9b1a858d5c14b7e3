"""The ``cs-vit`` command: ``cs-vit train``, ``cs-vit evaluate``, ``cs-vit release``.

``cs-vit train`` with no arguments trains a tiny ViT on the 8x8 digits bundled
with scikit-learn (no download) and writes plots and a checkpoint to ./runs/.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import pickle
import sys
import time

from cs_vit import backend, tiers
from cs_vit.recipes import RECIPES
from cs_vit.release import add_release_parser

DATASETS = tuple(RECIPES)
MODEL_FLAGS = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_dim")
RUN_ARGS = "run_args.json"
# What --resume lets a run change; every other flag comes from the run's run_args.json.
FREE_ON_RESUME = ("resume", "out", "device", "data_on_host", "quiet", "epochs", "reference")
# Mistakes in what the user asked for; main() reports them in one line, without a traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError, pickle.UnpicklingError,
               backend.BackendUnavailableError)


def _number(convert, low, high, expected):
    """An argparse ``type`` accepting ``convert(text)`` in [low, high], else saying ``expected``."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


POSITIVE_INT = _number(int, 1, math.inf, "a positive integer")
NON_NEGATIVE_INT = _number(int, 0, 2**32 - 1, "an integer in [0, 2**32)")
NON_NEGATIVE = _number(float, 0.0, math.inf, "a finite number >= 0")
FRACTION = _number(float, 0.0, 1.0, "a number in [0, 1]")


def _add_train_parser(subparsers):
    p = subparsers.add_parser("train", help="train a ViT and write plots, history and checkpoint")
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--data-dir", help="dataset folder (default: datasets/<name> in a checkout, "
                                      "else ~/.cache/cs_vit/<name>; required for 'folder')")
    p.add_argument("--download", action="store_true", help="download the dataset if missing")
    p.add_argument("--image-size", type=POSITIVE_INT, help="resize images (image folders only)")
    p.add_argument("--epochs", type=POSITIVE_INT)
    p.add_argument("--batch-size", type=POSITIVE_INT)
    p.add_argument("--lr", type=NON_NEGATIVE, help="peak learning rate")
    p.add_argument("--weight-decay", type=NON_NEGATIVE)
    p.add_argument("--warmup-epochs", type=NON_NEGATIVE)
    p.add_argument("--label-smoothing", type=FRACTION)
    p.add_argument("--dropout", type=FRACTION, help="drop probability, in [0, 1)")
    for flag in MODEL_FLAGS:
        p.add_argument("--" + flag.replace("_", "-"), type=POSITIVE_INT)
    p.add_argument("--pool", choices=("cls", "mean"), help="default: the dataset's recipe")
    p.add_argument("--pos-encoding", choices=("learned", "sincos1d", "sincos2d"),
                   help="default: the dataset's recipe")
    p.add_argument("--no-augment", action="store_true", help="turn data augmentation off")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--data-on-host", action="store_true",
                   help="with --device cuda: send each batch to the GPU instead of keeping a "
                        "copy of the datasets there (for datasets too big for its memory)")
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0)
    p.add_argument("--out", help="run folder (default: runs/<dataset>-<time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--reference", action="store_true",
                   help="run the textbook layers even where the instructor's fast tier "
                        "(cs_vit.fast) is installed")
    p.set_defaults(func=train)


def _add_evaluate_parser(subparsers):
    p = subparsers.add_parser("evaluate", help="test accuracy of a saved run")
    p.add_argument("--checkpoint", required=True, help="a run folder or its model.npz")
    p.add_argument("--data-dir", help="override the dataset folder recorded in the run")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.set_defaults(func=evaluate)


def build_parser():
    parser = argparse.ArgumentParser(prog="cs-vit", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(subparsers)
    _add_evaluate_parser(subparsers)
    add_release_parser(subparsers)
    if importlib.util.find_spec("cs_vit.grading") is not None:  # instructor-only: not in the release
        from cs_vit.grading import add_grading_parsers
        add_grading_parsers(subparsers)
    return parser


def resolve_settings(args):
    """The dataset's recipe with every flag the user gave laid over it."""
    recipe = RECIPES[args.dataset]
    model = dict(recipe["model"])
    model.update({f: getattr(args, f) for f in MODEL_FLAGS if getattr(args, f) is not None})
    if args.image_size:
        model["image_size"] = args.image_size
    model.update({f: getattr(args, f) for f in ("pool", "pos_encoding") if getattr(args, f)})
    settings = {k: v for k, v in recipe.items() if k != "model"}
    for key in ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs",
                "label_smoothing", "dropout"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    model["dropout"] = settings.pop("dropout")
    return model, settings


def load_data(dataset, data_dir, download, image_size):
    from cs_vit.data import load_dataset
    if dataset == "folder" and not data_dir:
        raise SystemExit("cs-vit: --dataset folder needs --data-dir pointing at one folder per class")
    return load_dataset(dataset, root=data_dir, download=download, image_size=image_size)


def _run_folder(args):
    if args.resume and not args.out:
        raise SystemExit("cs-vit: --resume needs --out RUN_DIR, the run to continue")
    return args.out or os.path.join("runs", f"{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")


def _restore_args(args, run_dir):
    """For --resume: the arguments the run was started with.

    The device (and --data-on-host) may change, and --epochs may extend a finished run; any other flag
    that differs from the run's is refused rather than silently ignored.
    """
    path = os.path.join(run_dir, RUN_ARGS)
    if not os.path.exists(path):
        raise SystemExit(f"cs-vit: cannot resume, {path} not found (is {run_dir} a cs-vit run?)")
    with open(path) as f:
        saved = json.load(f)
    defaults = vars(build_parser().parse_args(["train"]))
    changed = [f"--{key.replace('_', '-')} {value} (the run has {saved.get(key)})"
               for key, value in vars(args).items()
               if key not in FREE_ON_RESUME and key in saved
               and value != defaults[key] and value != saved[key]]
    if changed:
        raise SystemExit(
            f"cs-vit: --resume continues {run_dir} with the flags it was started with, so "
            f"{', '.join(changed)} would be ignored; only --epochs, --device, --data-on-host, "
            "--quiet and --reference may change. Start a new run with another --out to change "
            "the others.")
    saved.update(resume=True, out=run_dir, device=args.device, data_on_host=args.data_on_host,
                 quiet=args.quiet, reference=args.reference)
    if args.epochs is not None:
        saved["epochs"] = args.epochs
    return argparse.Namespace(**saved)


def train(args):
    from cs_vit.models import VisionTransformer
    from cs_vit.solvers import ClassificationSolverViT

    run_dir = _run_folder(args)
    if args.resume:
        args = _restore_args(args, run_dir)
    if args.reference:
        tiers.restore_all()  # every layer runs its textbook code
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, RUN_ARGS), "w") as f:
        json.dump({k: v for k, v in vars(args).items() if k != "func"}, f, indent=2)
    model_config, settings = resolve_settings(args)
    train_data, test_data = load_data(args.dataset, args.data_dir, args.download, args.image_size)
    model_config.update(in_channels=train_data.channels, num_classes=train_data.num_classes)
    backend.seed(args.seed)
    model = VisionTransformer(**model_config)
    solver = ClassificationSolverViT(
        train_data, test_data, model, num_epochs=settings["epochs"],
        learning_rate=settings["lr"], weight_decay=settings["weight_decay"],
        batch_size=settings["batch_size"], warmup_epochs=settings["warmup_epochs"],
        label_smoothing=settings["label_smoothing"], augment=False if args.no_augment else settings["augment"],
        seed=args.seed, checkpoint_dir=run_dir, resume=args.resume, verbose=not args.quiet,
        data_on_device=not args.data_on_host)
    started = time.perf_counter()
    results = solver.train(args.device)
    seconds = time.perf_counter() - started
    write_run_outputs(run_dir, solver, test_data, model_config, settings, seconds)
    print(f"\nbest test accuracy {results['best_test_acc']:.4f} (epoch {results['best_epoch']}) "
          f"in {seconds:.1f} s")
    print(f"run folder: {os.path.abspath(run_dir)}")
    for name in ("model.npz", "history.json", "curves.png", "confusion_matrix.png"):
        print(f"  {name}")
    return 0


def write_run_outputs(run_dir, solver, test_data, model_config, settings, seconds):
    """model.npz (best weights), history.json and the PNG plots of a finished run."""
    from cs_vit import viz

    solver.model.save(os.path.join(run_dir, "model.npz"))
    predictions, _ = solver.predict(test_data)
    history = dict(solver.results, model_config=model_config, settings=settings,
                   dataset=test_data.name, class_names=list(test_data.class_names),
                   train_seconds=seconds, backend=backend.name())
    with open(os.path.join(run_dir, "history.json"), "w") as f:
        json.dump(history, f, indent=2)
    viz.plot_history(solver.results, save_path=os.path.join(run_dir, "curves.png"))
    viz.plot_confusion_matrix(test_data.labels, predictions, test_data.class_names,
                              save_path=os.path.join(run_dir, "confusion_matrix.png"))


def evaluate(args):
    from cs_vit.models import VisionTransformer
    from cs_vit.solvers import ClassificationSolverViT

    run_dir, model_path = _run_files(args.checkpoint)
    with open(os.path.join(run_dir, RUN_ARGS)) as f:
        run = json.load(f)
    backend.use_device(args.device)
    model = VisionTransformer.from_file(model_path)
    train_data, test_data = load_data(run["dataset"], args.data_dir or run["data_dir"],
                                      False, run["image_size"])
    solver = ClassificationSolverViT(train_data, test_data, model, batch_size=1, verbose=False)
    model.to_active_backend()
    loss, accuracy = solver.evaluate(test_data)
    print(f"{model_path}: test accuracy {accuracy:.4f} ({len(test_data)} images, loss {loss:.4f})")
    return 0


def _run_files(path):
    """(run folder, model file) for ``--checkpoint``: a run folder or its model.npz."""
    if os.path.isdir(path):
        run_dir, model_path = path, os.path.join(path, "model.npz")
    else:
        run_dir, model_path = os.path.dirname(path) or ".", path
    for needed in (model_path, os.path.join(run_dir, RUN_ARGS)):
        if not os.path.isfile(needed):
            raise SystemExit(f"cs-vit evaluate: {needed} not found; --checkpoint takes a run "
                             "folder written by cs-vit train, or the model.npz inside one")
    return run_dir, model_path


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        raise SystemExit(f"cs-vit {args.command}: {err}") from err


if __name__ == "__main__":
    sys.exit(main())
