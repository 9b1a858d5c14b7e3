"""Which classes the model confuses: the confusion matrix and its plot."""
from __future__ import annotations

import numpy

from cs_vit.backend import to_numpy
from cs_vit.viz._common import finish, new_figure

MAX_CLASSES_WITH_NUMBERS = 20


def _labels(y, name, num_classes):
    """``y`` as a host int array of shape (N,) with every value in [0, num_classes)."""
    y = to_numpy(y)
    if y.ndim != 1:
        raise ValueError(
            f"{name} must be class indices of shape (N,), got shape {y.shape}; "
            f"for scores of shape (N, K) take scores.argmax(axis=1) first"
        )
    if y.size and y.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{name} holds labels from {y.min()} to {y.max()}, but there are "
            f"{num_classes} classes (labels 0 to {num_classes - 1})"
        )
    return y.astype(numpy.int64)


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts of (true, predicted) pairs.

    Inputs: y_true (N,) and y_pred (N,) integer labels in [0, num_classes).
    Returns an int array (K, K), K = num_classes: entry [i, j] counts the images
    of true class i that were predicted as class j, so row i sums to the number
    of images of class i and the diagonal holds the correct predictions.
    """
    y_true = _labels(y_true, "y_true", num_classes)
    y_pred = _labels(y_pred, "y_pred", num_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true has {y_true.size} labels but y_pred has {y_pred.size}; "
            f"give one prediction per image"
        )
    pair_index = num_classes * y_true + y_pred
    return numpy.bincount(pair_index, minlength=num_classes**2).reshape(num_classes, num_classes)


def _write_cells(ax, values, vmax, normalize, counts):
    """Each non-empty cell's value, in white on dark cells and black on light ones."""
    fontsize = 9 if len(values) <= 10 else 7
    for i, j in zip(*numpy.nonzero(counts)):
        text = f"{values[i, j]:.2f}" if normalize else f"{counts[i, j]}"
        color = "white" if values[i, j] > 0.5 * vmax else "black"
        ax.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)


def plot_confusion_matrix(y_true, y_pred, class_names, normalize=True, save_path=None):
    """Plot the confusion matrix with per-class and overall accuracy.

    Inputs:
    - y_true, y_pred: (N,) integer labels in [0, K)
    - class_names: K names, in label order
    - normalize: show each row as fractions of its true class (True) or raw counts
    - save_path: if given, the figure is also written there as a PNG

    Returns the matplotlib Figure. The y tick labels give each class's accuracy
    (its diagonal entry over its row sum), the title the overall accuracy; cells
    with no images are left blank, and values are written when K <= 20.
    """
    class_names = list(class_names)
    K = len(class_names)
    counts = confusion_matrix(y_true, y_pred, K)
    support = counts.sum(axis=1)
    per_class = numpy.diag(counts) / numpy.maximum(support, 1)
    values = counts / numpy.maximum(support, 1)[:, None] if normalize else counts
    vmax = 1.0 if normalize else max(int(counts.max()), 1)

    side = min(14.0, max(4.5, 0.55 * K + 2.5))
    fig = new_figure((side + 1.2, side))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, shrink=0.8,
                 label="fraction of the true class" if normalize else "number of images")
    if K <= MAX_CLASSES_WITH_NUMBERS:
        _write_cells(ax, values, vmax, normalize, counts)
    row_labels = [f"{name} ({acc:.0%})" if n else f"{name} (no images)"
                  for name, acc, n in zip(class_names, per_class, support)]
    many = K > MAX_CLASSES_WITH_NUMBERS
    ax.set_xticks(range(K), labels=class_names, rotation=90 if many else 45, ha="right",
                  va="center" if many else "top", rotation_mode="anchor")
    ax.set_yticks(range(K), labels=row_labels)
    ax.tick_params(labelsize=max(4, int(600 / K)) if many else 10)
    ax.set(xlabel="predicted class", ylabel="true class (per-class accuracy)")
    total = int(counts.sum())
    correct = int(numpy.trace(counts))
    ax.set_title(f"overall accuracy {correct / max(total, 1):.1%} ({correct}/{total} images)")
    return finish(fig, save_path)
