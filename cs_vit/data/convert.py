"""``as_dataset``: turn what a student already has into an ``ArrayDataset``.

A torchvision dataset (CIFAR10, MNIST, FakeData, ImageFolder, ...) or an
``(images, labels)`` pair of arrays or tensors, so the solver accepts them all.
torch is never imported here: tensors are recognised by their ``detach`` method.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from tqdm import tqdm

from cs_vit.data.dataset import ArrayDataset, check_labels
from cs_vit.data.transforms import DATASET_STATS

# torchvision class name -> our dataset name (decides normalisation and augmentation).
_TORCHVISION_NAMES = {"CIFAR10": "cifar10", "MNIST": "mnist", "FashionMNIST": "fashion-mnist",
                      "ImageFolder": "folder"}


def as_dataset(obj, *, name=None, class_names=None, mean=None, std=None):
    """An ``ArrayDataset`` from an ArrayDataset (returned unchanged), a torchvision
    dataset, or an ``(images, labels)`` pair of arrays or tensors.

    Images may be (N, H, W), (N, C, H, W) or channels-last (N, H, W, C) with C 1 or
    3, uint8 or float in 0..1. Torchvision datasets with ``.data``/``.targets``
    (CIFAR10, MNIST, ...) convert in one go; others are iterated item by item, and
    a ``Normalize`` in their transform is undone (its mean and std become the
    dataset's). Pass a test split the train split's ``mean``/``std``.
    """
    if isinstance(obj, ArrayDataset):
        return obj
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        images, labels = obj
        default_name = "arrays"
    elif hasattr(obj, "data") and hasattr(obj, "targets"):
        images, labels = obj.data, obj.targets
        default_name = _torchvision_name(obj)
    elif hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, Mapping):
        images, labels = _iterate(obj)
        default_name = _torchvision_name(obj)
        normalized = _find_normalize(obj)
        if normalized is not None:
            images = _undo_normalize(images, normalized)
            if mean is None:
                mean, std = (_per_channel(v, images) for v in (normalized.mean, normalized.std))
    else:
        raise TypeError(
            f"cannot make a dataset from {type(obj).__name__}; pass an ArrayDataset, a "
            "torchvision dataset, or an (images, labels) tuple of arrays"
        )
    labels = check_labels(_to_numpy(labels))
    name = name or default_name
    if class_names is None:
        class_names = getattr(obj, "classes", None)
    if class_names is None:
        class_names = [str(c) for c in range(labels.max() + 1)]
    if mean is None and name in DATASET_STATS:
        mean, std = DATASET_STATS[name]
    return ArrayDataset(_to_nchw(_to_numpy(images)), labels, list(class_names), mean, std, name)


def _torchvision_name(obj):
    cls = type(obj).__name__
    return _TORCHVISION_NAMES.get(cls, cls.lower())


def _to_numpy(a):
    if hasattr(a, "detach"):  # a torch tensor; torch itself is never imported here
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _to_nchw(images):
    """(N, H, W) / (N, H, W, C) / (N, C, H, W) -> (N, C, H, W) uint8 or float32."""
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.dtype.kind == "f":
        if images.size and (images.min() < 0 or images.max() > 1):
            raise ValueError(f"float images must hold 0..1, got values from {images.min()} to "
                             f"{images.max()}; divide by 255, or pass uint8 images")
        return np.ascontiguousarray(images, dtype=np.float32)
    if images.dtype.kind in "iu" and images.size and (images.min() < 0 or images.max() > 255):
        raise ValueError(f"integer images must hold 0..255, got values from {images.min()} "
                         f"to {images.max()}")
    return np.ascontiguousarray(images, dtype=np.uint8)


def _find_normalize(dataset):
    """The torchvision ``Normalize`` step of ``dataset.transform`` (or a Compose of it), or None."""
    transform = getattr(dataset, "transform", None)
    steps = getattr(transform, "transforms", [transform])
    found = [step for step in steps if type(step).__name__ == "Normalize"
             and hasattr(step, "mean") and hasattr(step, "std")]
    return found[-1] if found else None


def _per_channel(values, images):
    """``values`` (one number, or one per channel) as one float per channel of ``images``."""
    return np.broadcast_to(np.asarray(_to_numpy(values), np.float64).ravel(), (images.shape[1],))


def _undo_normalize(images, normalized):
    """(x - mean) / std back to x in 0..1; rounding just outside [0, 1] is clipped."""
    mean, std = (_per_channel(v, images)[:, None, None] for v in (normalized.mean, normalized.std))
    images = (images * std + mean).astype(np.float32)
    tolerance = 1e-3
    if images.size and images.min() >= -tolerance and images.max() <= 1 + tolerance:
        np.clip(images, 0.0, 1.0, out=images)
    return images


def _iterate(dataset):
    """The slow path: read a generic dataset item by item into two arrays."""
    if len(dataset) == 0:
        raise ValueError(f"the {type(dataset).__name__} dataset is empty")
    images, labels = [], []
    for i in tqdm(range(len(dataset)), desc=f"converting {type(dataset).__name__}", unit="img"):
        item, label = dataset[i]
        channels_last = hasattr(item, "getpixel")  # a PIL image reads as (H, W, C)
        image = _to_numpy(item)
        if image.ndim == 2:
            image = image[None]
        elif channels_last:
            image = image.transpose(2, 0, 1)
        images.append(image)
        labels.append(_to_numpy(label))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"the dataset's images have different shapes {sorted(shapes)}; "
                         "resize them to one size (e.g. with a transform) first")
    return np.stack(images), np.asarray(labels)
