"""The ``cs-vit`` command: ``cs-vit train``, ``cs-vit evaluate``, ``cs-vit release``.

``cs-vit train`` with no arguments trains a tiny ViT on the 8x8 digits bundled
with scikit-learn (no download) and writes plots and a checkpoint to ./runs/.
Every mistake, a full memory or Ctrl-C ends a command with one line naming the
input and what to do, never a traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import pickle
import sys
import time
from pathlib import Path

from cs_vit import backend, tiers
from cs_vit.io import atomic_write_json, read_json
from cs_vit.limits import check_memory
from cs_vit.optim.schedules import SCHEDULES
from cs_vit.recipes import RECIPES
from cs_vit.release import add_release_parser
from cs_vit.run_folder import RUN_ARGS, RunFolder, check_split, record_split

DATASETS = tuple(RECIPES)
MODEL_FLAGS = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_dim")
# What --resume lets a run change; every other flag comes from the run's run_args.json.
FREE_ON_RESUME = ("resume", "overwrite", "out", "device", "data_on_host", "no_cuda_graph", "quiet",
                  "epochs", "reference")
# What a run's run_args.json must hold; any other setting it lacks takes its flag's default.
RUN_IDENTITY = ("dataset", "data_dir", "image_size")
# Mistakes in what the user asked for; main() reports them in one line, without a traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError, pickle.UnpicklingError,
               backend.BackendUnavailableError)
# What main() says when an allocation fails, by command.
OUT_OF_MEMORY = {
    "train": "the model or the data does not fit in this machine's memory; try smaller "
             "--embed-dim, --depth, --mlp-dim, --image-size or --batch-size",
    "evaluate": "the model or the data does not fit in this machine's memory",
    "release": "the project does not fit in this machine's memory",
}


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
    _add_train_arguments(p)
    p.set_defaults(func=train)


def _add_train_arguments(p):
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--data-dir", help="dataset folder (default: datasets/<name> in a checkout, "
                                      "else ~/.cache/cs_vit/<name>; required for 'folder'; "
                                      "refused for 'digits', which scikit-learn bundles)")
    p.add_argument("--download", action="store_true", help="download the dataset if missing")
    p.add_argument("--image-size", type=POSITIVE_INT, help="resize images (image folders only)")
    p.add_argument("--epochs", type=POSITIVE_INT,
                   help="with --resume: at least the epochs done; more extend the run (its "
                        "learning-rate schedule is stretched to the new length)")
    p.add_argument("--batch-size", type=POSITIVE_INT)
    p.add_argument("--lr", type=NON_NEGATIVE, help="peak learning rate")
    p.add_argument("--weight-decay", type=NON_NEGATIVE)
    p.add_argument("--warmup-epochs", type=NON_NEGATIVE, help="at most --epochs")
    p.add_argument("--label-smoothing", type=FRACTION)
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="learning-rate schedule; the recipes' warmup is for 'cosine'")
    p.add_argument("--lr-step-epochs", type=NON_NEGATIVE,
                   help="with --schedule step: epochs between two drops of the lr (each x0.1)")
    p.add_argument("--val-split", type=FRACTION,
                   help="hold out this fraction of the training images to choose the best "
                        "epoch on; the test set is then evaluated once, at the end")
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
    p.add_argument("--no-cuda-graph", action="store_true",
                   help="with --device cuda: run training steps and evaluation call by call "
                        "instead of replaying them as recorded CUDA graphs (the fast tier's "
                        "default)")
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0)
    p.add_argument("--out", help="run folder, new or empty unless --resume or --overwrite "
                                 "(default: runs/<dataset>-<time>)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out (kept in <out>.replaced until the new "
                            "run ends with a checkpoint)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--reference", action="store_true",
                   help="run the textbook layers even where the instructor's fast tier "
                        "(cs_vit.fast) is installed")


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
    if (Path(__file__).parent / "grading" / "__init__.py").is_file():  # not in the release
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
    if args.schedule != "cosine" and args.warmup_epochs is None:
        settings["warmup_epochs"] = 0.0  # a recipe's warmup belongs to its cosine schedule
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


class _SettingsParser(argparse.ArgumentParser):
    """The train flags, parsed from the dict in a run's ``run_args.json``: errors name the file.

    A setting the file lacks takes its flag's default (a flag added since the run
    was started), except the data's: without them, other data could be used silently.
    """

    def __init__(self, path):
        super().__init__(prog=path, add_help=False)
        self.path = path
        _add_train_arguments(self)

    def error(self, message):
        raise ValueError(f"{self.path} holds settings that cs-vit train would refuse "
                         f"({message}); restore the file, or start a new run")

    def parse_settings(self, saved):
        """The Namespace of the settings in ``saved``, each checked as its flag would be."""
        if not isinstance(saved, dict):
            self.error(f"a {type(saved).__name__}, not a dict of settings")
        unknown = sorted(set(saved) - {action.dest for action in self._actions} - {"command"})
        missing = [key for key in RUN_IDENTITY if key not in saved]
        if unknown or missing:
            self.error(f"unknown settings {unknown}, missing settings {missing}")
        argv = []
        for action in self._actions:
            value = saved.get(action.dest)
            if action.nargs == 0 and not isinstance(value, (bool, type(None))):
                self.error(f"{action.dest} must be true or false, got {value!r}")
            if value is True:
                argv.append(action.option_strings[0])
            elif action.nargs != 0 and value is not None:
                argv.append(f"{action.option_strings[0]}={value}")
        return self.parse_args(argv)


def read_run_args(run_dir):
    """The ``cs-vit train`` arguments a run was started with, checked as the flags are."""
    path = os.path.join(run_dir, RUN_ARGS)
    return _SettingsParser(path).parse_settings(read_json(path, "restore it, or start a new run"))


def _restore_args(args, run_dir):
    """For --resume: the arguments the run was started with.

    The device (and --data-on-host, --no-cuda-graph) may change, and --epochs may extend
    the run; any other flag that differs from the run's is refused rather than silently
    ignored.
    """
    saved = vars(read_run_args(run_dir))
    defaults = vars(build_parser().parse_args(["train"]))
    changed = [f"--{key.replace('_', '-')} {value} (the run has {saved.get(key)})"
               for key, value in vars(args).items()
               if key not in FREE_ON_RESUME and key in saved
               and value != defaults[key] and value != saved[key]]
    if changed:
        raise SystemExit(
            f"cs-vit: --resume continues {run_dir} with the flags it was started with, so "
            f"{', '.join(changed)} would be ignored; only --epochs, --device, --data-on-host, "
            "--no-cuda-graph, --quiet and --reference may change. Start a new run with another "
            "--out to change the others.")
    saved.update(resume=True, overwrite=False, out=run_dir, device=args.device,
                 data_on_host=args.data_on_host, no_cuda_graph=args.no_cuda_graph,
                 quiet=args.quiet, reference=args.reference)
    if args.epochs is not None:
        saved["epochs"] = args.epochs
    return argparse.Namespace(**saved)


def train(args):
    """``cs-vit train``: one run, in a run folder it owns (:mod:`cs_vit.run_folder`)."""
    run = RunFolder(_run_folder(args), resume=args.resume, overwrite=args.overwrite)
    try:
        with run:
            return _train(args, run)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(run.interrupted()) from None


def _train(args, run):
    from cs_vit.models import VisionTransformer
    from cs_vit.solvers import ClassificationSolverViT

    if args.resume:
        args = _restore_args(args, run.path)
    if args.reference:
        tiers.restore_all()  # every layer runs its textbook code
    model_config, settings = resolve_settings(args)
    train_data, test_data = load_data(args.dataset, args.data_dir, args.download, args.image_size)
    if args.resume:
        run.check_resumable(settings["epochs"])
        check_split(run.path, train_data, test_data)
    model_config.update(in_channels=train_data.channels, num_classes=train_data.num_classes)
    _check_model_size(model_config)
    backend.seed(args.seed)
    model = VisionTransformer(**model_config)
    solver = ClassificationSolverViT(
        train_data, test_data, model, num_epochs=settings["epochs"],
        learning_rate=settings["lr"], weight_decay=settings["weight_decay"],
        batch_size=settings["batch_size"], warmup_epochs=settings["warmup_epochs"],
        label_smoothing=settings["label_smoothing"], augment=False if args.no_augment else settings["augment"],
        seed=args.seed, checkpoint_dir=run.path, resume=args.resume, verbose=not args.quiet,
        data_on_device=not args.data_on_host, graph=not args.no_cuda_graph, schedule=args.schedule,
        lr_step_epochs=args.lr_step_epochs, val_split=args.val_split)
    atomic_write_json(run.file(RUN_ARGS), {k: v for k, v in vars(args).items()
                                           if k not in ("func", "command")})
    record_split(run, train_data, test_data)
    started = time.perf_counter()
    results = solver.train(args.device)
    seconds = time.perf_counter() - started
    write_run_outputs(run.path, solver, test_data, model_config, settings, seconds)
    print(f"\nbest test accuracy {results['best_test_acc']:.4f} (epoch {results['best_epoch']}) "
          f"in {seconds:.1f} s")
    if solver.val_data is not None:
        print(f"  (epoch chosen on validation accuracy {results['best_val_acc']:.4f}, "
              f"{len(solver.val_data)} training images held out; test set evaluated once)")
    print(f"run folder: {os.path.abspath(run.path)}")
    for name in ("model.npz", "history.json", "curves.png", "confusion_matrix.png"):
        print(f"  {name}")
    return 0


def _check_model_size(config):
    """Refuse a model whose parameters, gradients and optimizer state cannot fit in memory."""
    D, M, depth, P = config["embed_dim"], config["mlp_dim"], config["depth"], config["patch_size"]
    patches = (config["image_size"] // P) ** 2
    # Each block's q, k, v and output projections (4 D^2) and MLP (2 D M) dominate; then
    # the positions, the patch embedding and the head.
    parameters = (depth * (4 * D * D + 2 * D * M)
                  + D * (patches + 1 + config["in_channels"] * P * P + config["num_classes"]))
    copies = 6  # parameters, gradients, two AdamW moments, the best parameters, a saved copy
    check_memory(parameters * copies * 4,
                 f"a model of embed_dim {D}, depth {depth} and mlp_dim {M} on {patches} patches "
                 f"(about {parameters:,} parameters, kept {copies} times over)",
                 "choose smaller --embed-dim, --depth, --mlp-dim or --image-size")


def write_run_outputs(run_dir, solver, test_data, model_config, settings, seconds):
    """model.npz (best weights), history.json and the PNG plots of a finished run."""
    from cs_vit import viz

    solver.model.save(os.path.join(run_dir, "model.npz"))
    predictions, _ = solver.predict(test_data)
    history = dict(solver.results, model_config=model_config, settings=settings,
                   dataset=test_data.name, class_names=list(test_data.class_names),
                   train_seconds=seconds, backend=backend.name())
    atomic_write_json(os.path.join(run_dir, "history.json"), history)
    viz.plot_history(solver.results, save_path=os.path.join(run_dir, "curves.png"))
    viz.plot_confusion_matrix(test_data.labels, predictions, test_data.class_names,
                              save_path=os.path.join(run_dir, "confusion_matrix.png"))


def evaluate(args):
    from cs_vit.models import VisionTransformer
    from cs_vit.solvers import ClassificationSolverViT

    run_dir, model_path = _run_files(args.checkpoint)
    run = read_run_args(run_dir)
    backend.use_device(args.device)
    model = VisionTransformer.from_file(model_path)
    train_data, test_data = load_data(run.dataset, args.data_dir or run.data_dir, False,
                                      run.image_size)
    check_split(run_dir, train_data, test_data)
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
    """Run one command; a mistake, a full memory or Ctrl-C ends it with one line."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        print(f"cs-vit {args.command}: {err or 'interrupted'}", file=sys.stderr)
        return 130
    except MemoryError as err:
        raise SystemExit(f"cs-vit {args.command}: out of memory; "
                         f"{OUT_OF_MEMORY[args.command]}") from err
    except USER_ERRORS as err:
        raise SystemExit(f"cs-vit {args.command}: {err}") from err


if __name__ == "__main__":
    sys.exit(main())
