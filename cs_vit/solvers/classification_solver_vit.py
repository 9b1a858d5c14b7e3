"""ClassificationSolverViT: trains an image classifier, as in the CS231n ViT assignment.

    solver = ClassificationSolverViT(train_data, test_data, model, num_epochs=2,
                                     learning_rate=1e-3, weight_decay=0.05, batch_size=64)
    solver.train("cpu")                    # or "cuda" for the CuPy backend
    solver.results["best_test_acc"]

Like CS231n's solver it keeps the epoch whose test accuracy is best, so that figure is
chosen on the test set. ``val_split=0.1`` holds out 10% of the training images instead:
the epoch is chosen on them, and the test set is read once, by the model kept.

Every epoch draws its shuffling, augmentation and dropout from generators seeded
by (seed, epoch). The checkpoint written after each epoch holds those generators'
states for the next epoch, with the parameters, optimizer state and counters, so a
run killed at any moment and resumed from its last checkpoint ends bitwise where an
uninterrupted run ends (same seed, same backend).
"""
from __future__ import annotations

import json
import math
import os

import numpy
from tqdm.auto import tqdm

from cs_vit import backend
from cs_vit.checks import finite_non_negative, positive_int
from cs_vit.data import as_dataset, default_augment, hold_out, iterate_batches
from cs_vit.layers import no_grad, softmax_cross_entropy
from cs_vit.optim import OPTIMIZERS, clip_grad_norm, make_optimizer, make_schedule, set_lr
from cs_vit.solvers.checkpoint import (
    check_epochs, check_resumable, checkpoint_path, load_checkpoint, restore_rng, rng_state,
    save_checkpoint,
)
from cs_vit.solvers.static_step import make_static_forward, make_static_step

DEFAULT_OPTIONS = {
    "optimizer": "adamw",       # "adamw" | "adam" | "sgd"
    "momentum": 0.9,            # SGD only
    "schedule": "cosine",       # "cosine" (with warmup) | "step" | "constant"
    "warmup_epochs": 0.0,       # linear warmup length, in epochs (fractions allowed)
    "min_lr": 0.0,              # "cosine" only: the lr it ends at
    "lr_step_epochs": None,     # "step" only: the lr is multiplied by 0.1 every this many
                                # epochs (fractions allowed; rounded to whole steps)
    "label_smoothing": 0.0,
    "augment": None,            # None: on for CIFAR-10 / image folders, off for digits
    "grad_clip": None,          # max global gradient norm, or None
    "seed": 0,
    "val_split": None,          # fraction of train_data held out to choose the best epoch on
                                # (drawn by seed); None or 0: choose on test_data, as CS231n
    "checkpoint_dir": None,     # write checkpoint.npz there after every epoch
    "resume": False,            # continue from checkpoint_dir's checkpoint
    "eval_batch_size": 256,
    "data_on_device": True,     # on CuPy: copy the datasets to the GPU once, so that no
                                # step copies a batch; False: each batch goes over (less GPU memory)
    "graph": True,              # on CuPy with the fast tier: record the training step (with
                                # AdamW, no dropout) and the evaluation pass once as CUDA graphs
                                # and replay them; False: call by call
    "verbose": True,
}
# Options of one learning-rate schedule only, and that schedule.
SCHEDULE_OPTIONS = {"warmup_epochs": "cosine", "min_lr": "cosine", "lr_step_epochs": "step"}
# Options a resumed run may change; every other setting must match the checkpoint's.
FREE_ON_RESUME = ("checkpoint_dir", "resume", "eval_batch_size", "data_on_device", "graph",
                  "verbose")
# A step recorded as a CUDA graph keeps its losses on the GPU: they reach the host this often.
LOG_EVERY = 50


class TrainingDivergedError(FloatingPointError):
    """The loss or the gradients became NaN or infinite."""


def _epoch_seed(seed, epoch):
    return int(numpy.random.SeedSequence([seed, epoch]).generate_state(1)[0])


# The validation split draws from (seed, VALIDATION_STREAM), apart from each epoch's (seed, epoch).
VALIDATION_STREAM = 2**32 - 1


def _as_split(arg, data):
    """``as_dataset(data)``; its errors name the solver argument the data came in."""
    try:
        return as_dataset(data)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{arg}: {err}") from None


class ClassificationSolverViT:
    """Trains ``model`` on ``train_data`` and evaluates on ``test_data`` after every epoch.

    Datasets may be cs_vit datasets, torchvision datasets or (images, labels) tuples.
    ``results`` holds per-epoch ``train_loss``, ``train_acc@1``, ``test_loss``,
    ``test_acc@1`` (accuracies in [0, 1]), ``best_test_acc``, ``best_epoch`` (the epoch
    kept, counted from 1), and per-iteration ``loss_history``, ``lr_history`` (the lr of
    each step) and ``grad_norm_history`` (the gradient norm before clipping).

    With ``val_split`` the held-out images (``val_data``) are evaluated after every epoch
    instead, into ``val_loss``, ``val_acc@1`` and ``best_val_acc``; ``best_epoch`` is the
    epoch of ``best_val_acc``. The test set is evaluated once, after the last epoch, with
    that epoch's parameters: ``test_loss`` and ``test_acc@1`` hold one value each, and
    ``best_test_acc`` is that accuracy (the test accuracy of the model chosen on
    validation, not a maximum over epochs).
    """

    def __init__(self, train_data, test_data, model, num_epochs=2, learning_rate=1e-3,
                 weight_decay=0.0, batch_size=64, **options):
        unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
        if unknown:
            raise ValueError(f"unrecognized options {unknown}; valid options: {sorted(DEFAULT_OPTIONS)}")
        self.options = {**DEFAULT_OPTIONS, **options}
        self._check_options()
        self.train_data = _as_split("train_data", train_data)
        self.test_data = _as_split("test_data", test_data)
        self.val_data = None
        if self.options["val_split"]:
            self.train_data, self.val_data = self._hold_out_validation()
        self.model = model
        self.num_epochs = positive_int("num_epochs", num_epochs)
        self.batch_size = positive_int("batch_size", batch_size)
        self.learning_rate = finite_non_negative("learning_rate", learning_rate)
        self.weight_decay = finite_non_negative("weight_decay", weight_decay)
        self._check_fit()
        augment = self.options["augment"]
        self.augment = default_augment(self.train_data.name) if augment is None else bool(augment)
        self.steps_per_epoch = len(self.train_data) // self.batch_size
        self._build_schedule()  # built again in train(); here it reports a bad setting early
        self.epoch, self.step = 0, 0
        self.static_step = self._static_forward = None
        self.data_rng = None
        self.best_state = None
        self.results = {"train_loss": [], "train_acc@1": [], "test_loss": [], "test_acc@1": [],
                        "best_test_acc": 0.0, "best_epoch": -1, "loss_history": [],
                        "lr_history": [], "grad_norm_history": []}
        if self.val_data is not None:
            self.results.update({"val_loss": [], "val_acc@1": [], "best_val_acc": 0.0})

    def _check_options(self):
        options = self.options
        if options["optimizer"] not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, "
                             f"got {options['optimizer']!r}")
        if options["resume"] and not options["checkpoint_dir"]:
            raise ValueError("resume=True needs checkpoint_dir, the folder holding checkpoint.npz")
        if finite_non_negative("label_smoothing", options["label_smoothing"]) > 1:
            raise ValueError("label_smoothing must lie in [0, 1], "
                             f"got {options['label_smoothing']}")
        if options["grad_clip"] is not None:
            finite_non_negative("grad_clip", options["grad_clip"])
        finite_non_negative("warmup_epochs", options["warmup_epochs"])
        self._check_schedule_options()
        if options["val_split"] is not None and finite_non_negative(
                "val_split", options["val_split"]) >= 1:
            raise ValueError(f"val_split is the fraction of train_data held out for validation "
                             f"and must lie in [0, 1), got {options['val_split']}")
        positive_int("eval_batch_size", options["eval_batch_size"])
        for flag in ("data_on_device", "graph"):
            if not isinstance(options[flag], bool):
                raise TypeError(f"{flag} must be True or False, got {options[flag]!r}")

    def _hold_out_validation(self):
        """(train part, validation part) of train_data, drawn by the seed."""
        rng = numpy.random.default_rng([self.options["seed"], VALIDATION_STREAM])
        try:
            return hold_out(self.train_data, self.options["val_split"], rng)
        except ValueError as err:
            raise ValueError(f"val_split: {err}; use a larger or smaller val_split") from None

    def _check_schedule_options(self):
        """The step schedule gets its step size; no schedule gets another's option."""
        schedule = self.options["schedule"]
        if schedule == "step" and self.options["lr_step_epochs"] is None:
            raise ValueError("schedule='step' needs lr_step_epochs, the number of epochs "
                             "between two drops of the learning rate (each x0.1)")
        for option, owner in SCHEDULE_OPTIONS.items():
            if self.options[option] and schedule != owner:
                raise ValueError(f"{option} only applies to schedule={owner!r}, not "
                                 f"{schedule!r}; leave it out or use schedule={owner!r}")

    def _check_fit(self):
        """Clear errors for data that cannot train this model."""
        config = self.model.config
        if self.batch_size > len(self.train_data):
            raise ValueError(f"batch_size must be between 1 and the {len(self.train_data)} "
                             f"training images, got {self.batch_size}")
        expected = (config.in_channels, config.image_size, config.image_size)
        for arg, split in (("train_data", self.train_data), ("test_data", self.test_data)):
            if split.image_shape != expected:
                raise ValueError(
                    f"the model expects images of shape (C, H, W) = {expected}, but {arg} "
                    f"({split.name}) has {split.image_shape}; build the model with matching "
                    "in_channels/image_size or resize the data")
            if split.num_classes > config.num_classes:
                raise ValueError(
                    f"{arg} ({split.name}) has {split.num_classes} classes (labels up to "
                    f"{int(split.labels.max())}) but the model's head has num_classes="
                    f"{config.num_classes}, so labels must lie in [0, {config.num_classes}); "
                    "build the model with num_classes matching the data")

    def _build_optimizer(self):
        name = self.options["optimizer"]
        extra = {"momentum": self.options["momentum"]} if name == "sgd" else {}
        return make_optimizer(name, self.model, self.learning_rate, self.weight_decay, **extra)

    def _build_schedule(self):
        if self.options["warmup_epochs"] > self.num_epochs:
            raise ValueError(f"warmup_epochs ({self.options['warmup_epochs']}) must not exceed "
                             f"num_epochs ({self.num_epochs}); shorten the warmup")
        total = self.num_epochs * self.steps_per_epoch
        warmup = int(round(self.options["warmup_epochs"] * self.steps_per_epoch))
        name = self.options["schedule"]
        extra = ({"min_lr": self.options["min_lr"]} if name == "cosine" else
                 {"step_size": self._lr_step_size()} if name == "step" else {})
        return make_schedule(name, self.learning_rate, total, warmup, **extra)

    def _lr_step_size(self):
        """``lr_step_epochs`` in steps, at least one."""
        epochs = self.options["lr_step_epochs"]
        steps = int(round(finite_non_negative("lr_step_epochs", epochs) * self.steps_per_epoch))
        if steps < 1:
            raise ValueError(f"lr_step_epochs={epochs} is less than one step of the "
                             f"{self.steps_per_epoch} per epoch; give at least "
                             f"{1 / self.steps_per_epoch:.3g} epochs")
        return steps

    def train(self, device="cpu"):
        """Train for ``num_epochs`` on ``device`` ("cpu" or "cuda"); returns ``results``."""
        backend.use_device(device)
        self.model.to_active_backend()
        self.optimizer = self._build_optimizer()
        self.schedule = self._build_schedule()
        folder = self.options["checkpoint_dir"]
        if self.options["resume"]:
            self._resume(folder)
        else:
            self._seed_epoch(self.epoch)
        graph = self.options["graph"]
        self.static_step = make_static_step(
            self.model, self.optimizer, self.batch_size, self.options["label_smoothing"],
            self.options["grad_clip"]) if graph else None
        self._static_forward = make_static_forward(
            self.model, self.options["eval_batch_size"]) if graph else None
        held_out = self.test_data if self.val_data is None else self.val_data
        for epoch in range(self.epoch, self.num_epochs):
            self._train_epoch(epoch)
            self._record_epoch(epoch, *self.evaluate(held_out))
            self.epoch = epoch + 1
            self._seed_epoch(self.epoch)
            if folder:
                self._save(checkpoint_path(folder))
        self.model.load_state_dict(self.best_state)
        if self.val_data is not None:
            self._record_test(*self.evaluate(self.test_data))
        return self.results

    def _seed_epoch(self, epoch):
        """Seed the generators of ``epoch``: the backend's (dropout) and the data's."""
        backend.seed(_epoch_seed(self.options["seed"], epoch))
        self.data_rng = numpy.random.default_rng([self.options["seed"], epoch])

    def _train_epoch(self, epoch):
        batches = iterate_batches(self.train_data, self.batch_size, self.data_rng, shuffle=True,
                                  augment=self.augment, drop_last=True,
                                  on_device=self.options["data_on_device"])
        self.model.train()
        bar = tqdm(batches, total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.num_epochs}",
                   disable=not self.options["verbose"], leave=True)
        if self.static_step:
            return self._train_epoch_static(epoch, bar, self.static_step)
        losses, correct, seen = [], 0, 0
        for x, y in bar:
            x, y = backend.asarray(x), backend.asarray(y)  # no copy if already on the device
            loss, batch_correct = self._train_step(x, y, epoch)
            losses.append(loss)
            correct += batch_correct
            seen += len(y)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.optimizer.lr:.2e}")
        self._record_training(losses, correct, seen)

    def _record_training(self, losses, correct, seen):
        """The epoch's mean training loss and accuracy (``correct`` of ``seen`` images)."""
        self.results["train_loss"].append(float(numpy.mean(losses)))
        self.results["train_acc@1"].append(int(correct) / seen)

    def _train_epoch_static(self, epoch, bar, static_step):
        """``_train_epoch`` through a step over fixed buffers (a CUDA graph on the GPU).

        Its losses and gradient norms stay on the device and reach the host every
        LOG_EVERY steps, where they are checked and recorded.
        """
        losses, correct, seen = [], 0, 0
        for i, (x, y) in enumerate(bar):
            lr = self.schedule(self.step)
            static_step(backend.asarray(x), backend.asarray(y), lr)
            self.step += 1
            seen += len(y)
            self.results["lr_history"].append(lr)
            if (i + 1) % LOG_EVERY == 0 or i + 1 == self.steps_per_epoch:
                new_losses, norms, new_correct = static_step.flush()
                self._record_logged_steps(new_losses, norms, epoch)
                losses += new_losses
                correct += new_correct
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.2e}")
        self._record_training(losses, correct, seen)

    def _record_logged_steps(self, losses, grad_norms, epoch):
        """Record the losses and gradient norms of the last len(losses) steps; stop on NaN/inf."""
        first = self.step - len(losses)
        for k, (loss, grad_norm) in enumerate(zip(losses, grad_norms)):
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                self._diverged(loss, grad_norm, epoch, self.results["lr_history"][first + k],
                               first + k)
        self.results["loss_history"] += losses
        self.results["grad_norm_history"] += grad_norms

    def _train_step(self, x, y, epoch):
        """One forward, backward and update; returns (loss, number correct on device)."""
        lr = self.schedule(self.step)
        set_lr(self.optimizer, lr)
        logits = self.model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y, self.options["label_smoothing"])
        self.model.backward(dlogits, input_grad=False)  # the images need no gradient
        clip = self.options["grad_clip"]
        grad_norm = clip_grad_norm(self.optimizer.params, clip if clip else math.inf)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self._diverged(loss, grad_norm, epoch, lr)
        self.optimizer.step()
        self.step += 1
        self.results["loss_history"].append(loss)
        self.results["lr_history"].append(lr)
        self.results["grad_norm_history"].append(grad_norm)
        return loss, (logits.argmax(axis=1) == y).sum()

    def _diverged(self, loss, grad_norm, epoch, lr, step=None):
        """Raise TrainingDivergedError for iteration ``step`` (default: the current one)."""
        step = self.step if step is None else step
        folder = self.options["checkpoint_dir"]
        kept = (f" The last good checkpoint (end of epoch {self.epoch}) is kept in "
                f"{checkpoint_path(folder)}; resume from it with the fix."
                if folder and os.path.exists(checkpoint_path(folder)) else "")
        what = (f"the loss became {loss}" if not math.isfinite(loss) else
                f"the gradients became non-finite (norm {grad_norm}) while the loss was {loss:.4g}")
        batch = step - epoch * self.steps_per_epoch + 1
        raise TrainingDivergedError(
            f"training diverged at iteration {step} (epoch {epoch + 1}, batch {batch} of "
            f"{self.steps_per_epoch}): {what}. The learning rate ({lr:.3g}) is probably too "
            f"high: try a smaller learning_rate, a longer warmup, or grad_clip=1.0.{kept}")

    def _record_epoch(self, epoch, loss, acc):
        """Record the held-out loss and accuracy (validation, else test); keep the best epoch."""
        held_out = "test" if self.val_data is None else "val"
        self.results[f"{held_out}_loss"].append(loss)
        self.results[f"{held_out}_acc@1"].append(acc)
        if self.best_state is None or acc > self.results[f"best_{held_out}_acc"]:
            self.results[f"best_{held_out}_acc"], self.results["best_epoch"] = acc, epoch + 1
            self.best_state = self.model.state_dict()
        if self.options["verbose"]:
            tqdm.write(f"epoch {epoch + 1}/{self.num_epochs}: train loss "
                       f"{self.results['train_loss'][-1]:.4f}, train acc "
                       f"{self.results['train_acc@1'][-1]:.4f}, {held_out} loss {loss:.4f}, "
                       f"{held_out} acc {acc:.4f}")

    def _record_test(self, loss, acc):
        """The one test evaluation of a run with a validation split, by the model kept."""
        self.results.update({"test_loss": [loss], "test_acc@1": [acc], "best_test_acc": acc})
        if self.options["verbose"]:
            tqdm.write(f"test acc {acc:.4f}, test loss {loss:.4f} (the model of epoch "
                       f"{self.results['best_epoch']}, chosen on validation)")

    def predict(self, dataset):
        """Class predictions (NumPy, (N,)) of the model in eval mode, plus the mean loss."""
        dataset = as_dataset(dataset)
        self.model.eval()
        predictions, losses = [], []
        batches = iterate_batches(dataset, self.options["eval_batch_size"], None, shuffle=False,
                                  augment=False, drop_last=False, mean=self.train_data.mean,
                                  std=self.train_data.std, on_device=self.options["data_on_device"])
        for x, y in tqdm(batches, desc="evaluate", leave=False, disable=not self.options["verbose"]):
            x, y = backend.asarray(x), backend.asarray(y)  # no copy if already on the device
            logits = self._forward(x)
            loss, _ = softmax_cross_entropy(logits, y)
            losses.append(loss * len(y))
            predictions.append(logits.argmax(axis=1))
        self.model.train()
        return backend.to_numpy(backend.xp.concatenate(predictions)), sum(losses) / len(dataset)

    def _forward(self, x):
        """The model's logits for a batch x, keeping nothing for backward."""
        if self._static_forward and len(x) == self.options["eval_batch_size"]:
            return self._static_forward(x)  # on the GPU: one recorded graph per full batch
        with no_grad():  # evaluation keeps no caches for backward
            return self.model.forward(x)

    def evaluate(self, dataset):
        """(mean loss, accuracy in [0, 1]) of the current model on ``dataset``."""
        dataset = as_dataset(dataset)
        predictions, loss = self.predict(dataset)
        return loss, float(numpy.mean(predictions == dataset.labels))

    def _settings(self):
        """The training settings a resumed run must share with its checkpoint, as JSON values."""
        settings = {k: v for k, v in self.options.items() if k not in FREE_ON_RESUME}
        settings.update(batch_size=self.batch_size, learning_rate=self.learning_rate,
                        weight_decay=self.weight_decay)
        return json.loads(json.dumps(settings, default=str))

    def _save(self, path):
        meta = {"epoch": self.epoch, "step": self.step, "results": self.results,
                "num_epochs": self.num_epochs, "settings": self._settings(),
                "model_config": vars(self.model.config), "rng_state": rng_state(self.data_rng)}
        save_checkpoint(path, self.model.state_dict(), self.best_state,
                        self.optimizer.state_dict(), meta)

    def _resume(self, folder):
        path = checkpoint_path(folder)
        if not os.path.exists(path):
            raise FileNotFoundError(f"cannot resume: no checkpoint at {path}")
        model_state, best_state, optim_state, meta = load_checkpoint(path)
        check_epochs(path, meta["epoch"], self.num_epochs)
        check_resumable(path, meta, vars(self.model.config), self._settings())
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optim_state)
        self.best_state, self.results = best_state, meta["results"]
        self.epoch, self.step = meta["epoch"], meta["step"]
        self.data_rng = restore_rng(meta["rng_state"],
                                    _epoch_seed(self.options["seed"], self.epoch))
