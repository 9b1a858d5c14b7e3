"""Training curves from the history dictionary the solver fills."""
from __future__ import annotations

import numpy
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cs_vit.viz._common import finish, new_figure

HELD_OUT_NAMES = {"val": "validation", "test": "test"}


def moving_average(values, window):
    """Trailing mean of the last ``window`` values (of all values so far, at the start).

    Inputs: values (n,), window >= 1. Returns (n,), so the curve starts at iteration 1.
    """
    values = numpy.asarray(values, dtype=numpy.float64)
    cumulative = numpy.concatenate([[0.0], numpy.cumsum(values)])
    ends = numpy.arange(1, len(values) + 1)
    starts = numpy.maximum(0, ends - window)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def _series(history, *keys):
    """The first of ``keys`` that ``history`` has, as a float array; empty if it has none."""
    values = next((history[key] for key in keys if key in history), [])
    return numpy.array([float(v) for v in values], dtype=numpy.float64)


def _held_out(history):
    """The split evaluated every epoch: "val" with a validation split, else "test"."""
    return "val" if "val_acc@1" in history or "val_loss" in history else "test"


def _plot_loss(ax, history):
    loss = _series(history, "loss_history")
    iterations = numpy.arange(1, len(loss) + 1)
    window = max(1, min(100, len(loss) // 10))
    ax.plot(iterations, loss, color="C0", alpha=0.3 if window > 1 else 1.0, linewidth=0.8,
            label="per iteration")
    if window > 1:
        ax.plot(iterations, moving_average(loss, window), color="C0", linewidth=1.8,
                label=f"moving average ({window} it.)")
    held_out = _held_out(history)
    epoch_style = {"train_loss": dict(marker="o", color="C0", markeredgecolor="black",
                                      linestyle="none", label="train (epoch mean)"),
                   f"{held_out}_loss": dict(marker="s", color="C1",
                                            label=f"{HELD_OUT_NAMES[held_out]} (epoch)")}
    for key, style in epoch_style.items():
        epoch_loss = _series(history, key)
        if epoch_loss.size:
            epoch_ends = numpy.arange(1, len(epoch_loss) + 1) * len(loss) / len(epoch_loss)
            ax.plot(epoch_ends, epoch_loss, zorder=3, **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title="training loss", xlabel="iteration", ylabel="loss")
    ax.legend(fontsize=8)


def _plot_accuracy(ax, train_acc, held_acc, held_name, test_once=None):
    """Accuracy per epoch: train and the held-out split (the best epoch starred).

    ``test_once``: with a validation split, the one test accuracy, of the epoch kept.
    """
    once = numpy.array([] if test_once is None else [test_once])
    measured = numpy.concatenate([train_acc, held_acc, once])
    scale = 1.0 if measured.max() <= 1.0 else 100.0
    for acc, marker, color, label in ((train_acc, "o", "C0", "train"),
                                      (held_acc, "s", "C1", held_name)):
        if acc.size:
            ax.plot(numpy.arange(1, len(acc) + 1), acc, marker=marker, color=color, label=label)
    if held_acc.size:
        best = int(numpy.argmax(held_acc))
        ax.plot(best + 1, held_acc[best], marker="*", markersize=16, color="C3", zorder=3,
                linestyle="none",
                label=f"best {held_name}: {100 * held_acc[best] / scale:.1f}% (epoch {best + 1})")
        if test_once is not None:
            ax.plot(best + 1, test_once, marker="D", color="C2", zorder=3, linestyle="none",
                    label=f"test, read once: {100 * test_once / scale:.1f}%")
    margin = 0.05 * scale
    ax.set_ylim(max(0.0, measured.min() - margin), min(scale, measured.max() + margin))
    ax.set_xlim(0.5, max(len(train_acc), len(held_acc)) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=scale, decimals=0))
    ax.set(title="accuracy", xlabel="epoch", ylabel="accuracy")
    ax.legend(fontsize=8, loc="lower right")


def _plot_lr(ax, lr):
    ax.plot(numpy.arange(1, len(lr) + 1), lr, color="C4")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title="learning-rate schedule", xlabel="iteration", ylabel="learning rate")


def plot_history(history, save_path=None):
    """Loss per iteration, accuracy per epoch and (if recorded) the learning rate.

    Inputs:
    - history: dict as the solver fills it: ``loss_history`` (per iteration),
      ``train_acc_history`` / ``test_acc_history`` (per epoch, or the solver's
      ``train_acc@1`` / ``test_acc@1``; read as fractions when none exceeds 1,
      as percentages otherwise); optional ``lr_history`` (per iteration) and ``train_loss`` /
      ``test_loss`` (per epoch, drawn on the loss panel at each epoch's end). With a
      validation split (``val_acc@1``, ``val_loss``) the validation set is the per-epoch
      curve and the test accuracy, read once, is marked at the epoch kept
    - save_path: if given, the figure is also written there as a PNG

    Returns the matplotlib Figure: one panel each for loss, accuracy (when an
    accuracy was recorded) and learning rate (when ``lr_history`` is not empty).
    """
    if not len(history.get("loss_history", [])):
        raise ValueError(
            "history['loss_history'] is missing or empty; plot_history needs the loss of "
            "at least one training iteration (pass the solver's history after training)"
        )
    held_out = _held_out(history)
    train_acc = _series(history, "train_acc_history", "train_acc@1")
    held_acc = _series(history, f"{held_out}_acc_history", f"{held_out}_acc@1")
    test_once = _series(history, "test_acc@1") if held_out == "val" else []
    lr = _series(history, "lr_history")
    has_accuracy = bool(train_acc.size or held_acc.size)
    num_panels = 1 + has_accuracy + bool(lr.size)
    fig = new_figure((4.6 * num_panels, 3.6))
    axes = list(fig.subplots(1, num_panels, squeeze=False)[0])
    _plot_loss(axes.pop(0), history)
    if has_accuracy:
        _plot_accuracy(axes.pop(0), train_acc, held_acc, HELD_OUT_NAMES[held_out],
                       test_once[0] if len(test_once) else None)
    if lr.size:
        _plot_lr(axes.pop(0), lr)
    for ax in fig.axes:
        ax.grid(alpha=0.3)
    return finish(fig, save_path)
