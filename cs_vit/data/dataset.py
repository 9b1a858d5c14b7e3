"""The one dataset type every loader returns: a whole split in host (NumPy) arrays.

    images       (N, C, H, W)  uint8 (0..255) or float32 (0..1)
    labels       (N,)          int64, each in [0, len(class_names))
    class_names  list[str]
    mean, std    per-channel normalisation constants (C floats each)
    name         "cifar10", "mnist", "fashion-mnist", "digits", "folder:<dir>", ...
    files        for data read from image files, each image's path relative to the
                 dataset's folder (what a run records of its train/test split); else None
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cs_vit.data.transforms import channel_stats
from cs_vit.limits import MAX_CLASSES


@dataclass
class ArrayDataset:
    """A split held in memory; ``dataset[i]`` is ``(image, label)``, ``len(dataset)`` is N.

    ``mean``/``std`` left as None are computed from ``images`` (right for a
    train split; give a test split its train split's values).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list
    mean: tuple = None
    std: tuple = None
    name: str = "arrays"
    files: list = None
    # The copy on the active backend that loader.device_copy makes once and keeps.
    _device_copy: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.labels = check_labels(self.labels)
        _check_images(self.images, len(self.labels))
        self.class_names = [printable(str(c)) for c in self.class_names]
        self.name = printable(str(self.name))
        check_label_range(self.labels, len(self.class_names), "labels",
                          "; give one class name per class")
        if self.mean is None or self.std is None:
            self.mean, self.std = channel_stats(self.images)
        self.mean, self.std = _check_stat("mean", self.mean, self.channels), _check_stat(
            "std", self.std, self.channels)

    @property
    def channels(self):
        return self.images.shape[1]

    @property
    def image_shape(self):
        """(C, H, W)."""
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self):
        return len(self.class_names)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        """``(images[index], labels[index])``; an int, slice or index array."""
        return self.images[index], self.labels[index]

    def __repr__(self):
        return (f"ArrayDataset(name={self.name!r}, {len(self)} images of shape "
                f"{self.image_shape} {self.images.dtype}, {self.num_classes} classes)")


def _check_images(images, n):
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}; "
                        "use cs_vit.data.as_dataset() to convert tensors or lists")
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D (N, C, H, W), got shape {images.shape}")
    if images.dtype not in (np.uint8, np.float32):
        raise TypeError(f"images must be uint8 (0..255) or float32 (0..1), got {images.dtype}")
    if len(images) != n:
        raise ValueError(f"images and labels must have the same length, got {len(images)} "
                         f"images and {n} labels")


def check_labels(labels, source="labels"):
    """``labels`` as a non-empty int64 array (N,), or a ValueError/TypeError saying why not.

    Floats are refused, not truncated, and no label may reach ``MAX_CLASSES``
    (checked in the labels' own dtype, so a huge uint64 is reported as it is):
    a class count is never taken from a label before this check.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{source} must be 1-D (N,), got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError(f"the dataset is empty: {source} has no entries")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{source} must be integers (class indices), got dtype {labels.dtype}")
    if labels.max() >= MAX_CLASSES:
        raise ValueError(f"{source} must be class indices below {MAX_CLASSES:,} (the most "
                         f"classes cs_vit takes), got a label of {labels.max()}; are they "
                         "corrupt, or ids rather than class indices 0, 1, 2, ...?")
    return labels.astype(np.int64, copy=False)


def check_label_range(labels, num_classes, source, advice=""):
    """A ValueError naming ``source`` unless every label lies in [0, num_classes)."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{source} must lie in [0, {num_classes}) for {num_classes} classes, "
                         f"got labels from {labels.min()} to {labels.max()}{advice}")


def printable(text):
    """``text`` as valid UTF-8: bytes of a non-UTF-8 file name show as ``\\xNN``.

    Python reads such a name with surrogate escapes, which matplotlib, JSON
    readers and terminals cannot encode; class and dataset names go through here.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _check_stat(what, values, channels):
    values = tuple(float(v) for v in np.atleast_1d(values))
    if len(values) != channels:
        raise ValueError(f"{what} needs one value per channel ({channels}), got {values}")
    if what == "std" and min(values) <= 0:
        raise ValueError(f"std must be positive for every channel, got {values}")
    return values


def hold_out(dataset, fraction, rng):
    """(rest, held_out): ``round(fraction * N)`` images of ``dataset`` set aside, drawn by ``rng``.

    For a validation split carved from a training set. The same generator state picks
    the same images. Both parts keep the dataset's name, class names and mean/std, so
    they are normalised alike (and augmented alike: the name decides the default).
    """
    n_held = round(fraction * len(dataset))
    if not 1 <= n_held < len(dataset):
        raise ValueError(f"holding out a fraction {fraction} of the {len(dataset)} images of "
                         f"{dataset.name} leaves {n_held} held out and {len(dataset) - n_held} "
                         "to train on; both need at least one image")
    order = rng.permutation(len(dataset))
    held, rest = np.sort(order[:n_held]), np.sort(order[n_held:])
    return tuple(ArrayDataset(dataset.images[part], dataset.labels[part], dataset.class_names,
                              dataset.mean, dataset.std, dataset.name) for part in (rest, held))
