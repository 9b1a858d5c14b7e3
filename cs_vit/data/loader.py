"""Mini-batches for training: shuffle, augment, normalise.

    >>> loader = BatchLoader(train, batch_size=128, shuffle=True,
    ...                      augment=default_augment(train.name), seed=0)
    >>> for x, y in loader:          # one epoch; x (N, C, H, W) float32, y (N,) int64
    ...     ...

Each epoch draws from its own generator, ``default_rng([seed, epoch])``, so a
run can be repeated batch for batch, and resumed at any epoch. The epoch's
random choices (order, crop offsets, flips) are drawn at its start, on the host.
With ``on_device=True`` the batches are cut from a copy of the dataset on the
active backend (made once; on CuPy it lives on the GPU), and the epoch's
choices go over once, so a training step copies nothing between host and device.
"""
from __future__ import annotations

import math

import numpy as np

from cs_vit import backend
from cs_vit.data.convert import as_dataset
from cs_vit.data.transforms import (
    crop_at, crop_offsets, flip_choices, flip_where, normalize, to_unit_float,
)


def default_augment(dataset_name):
    """Whether to crop and flip by default: yes for CIFAR-10 and image folders (photos,
    where a mirrored cat is still a cat); no for digits and (Fashion-)MNIST, whose small
    centred images gain little and where a mirrored digit is no longer that digit; no
    for any other name."""
    return dataset_name == "cifar10" or dataset_name.startswith("folder")


def iterate_batches(dataset, batch_size, rng=None, shuffle=True, augment=False,
                    drop_last=False, mean=None, std=None, on_device=False):
    """Yield ``(x, y)``: x (B, C, H, W) float32 normalised, y (B,) int64.

    Normalisation uses ``mean``/``std`` when given (e.g. the train split's, for a
    test set), else the dataset's own. Augmentation (random crop with padding
    H // 8, then a random horizontal flip) runs only when ``augment`` is true.
    All randomness comes from ``rng``, which may be None only when there is none.
    Batches are NumPy arrays, or the active backend's with ``on_device=True``.
    """
    dataset = as_dataset(dataset)
    _check_batch_size(batch_size, dataset, drop_last)
    if rng is None and (shuffle or augment):
        raise ValueError("iterate_batches needs rng (e.g. numpy.random.default_rng(seed)) to "
                         "shuffle or augment")
    stats = (dataset.mean if mean is None else mean, dataset.std if std is None else std)
    return _batches(dataset, batch_size, rng, shuffle, augment, drop_last, stats, on_device)


def _batches(dataset, batch_size, rng, shuffle, augment, drop_last, stats, on_device):
    images, labels = device_copy(dataset) if on_device else (dataset.images, dataset.labels)
    n, padding = len(dataset), dataset.images.shape[2] // 8
    # The whole epoch's random choices, drawn now on the host (order, then crop offsets,
    # then flips) and sent to the images' device once per epoch (no copy on NumPy).
    xp = backend.get_array_module(images)
    order = xp.asarray(rng.permutation(n) if shuffle else np.arange(n))
    if augment:
        offsets, flips = xp.asarray(crop_offsets(rng, n, padding)), xp.asarray(flip_choices(rng, n))
    mean, std = (xp.asarray(values, dtype=np.float32) for values in stats)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        batch = slice(start, start + batch_size)
        index = order[batch]
        x = to_unit_float(images[index])
        if augment:
            x = flip_where(crop_at(x, padding, offsets[0, batch], offsets[1, batch]), flips[batch])
        yield normalize(x, mean, std), labels[index]


def device_copy(dataset):
    """(images, labels) of ``dataset`` on the active backend, copied there once and kept.

    On NumPy these are the dataset's own arrays. On CuPy the first call uploads
    them (CIFAR-10's uint8 training images take 150 MB of GPU memory). A new copy
    is made when ``images`` or ``labels`` is replaced, not when edited in place.
    """
    cached = dataset._device_copy
    if (cached is None or cached["backend"] != backend.name()
            or cached["host"][0] is not dataset.images or cached["host"][1] is not dataset.labels):
        cached = {"backend": backend.name(), "host": (dataset.images, dataset.labels),
                  "device": (backend.xp.asarray(dataset.images), backend.xp.asarray(dataset.labels))}
        dataset._device_copy = cached
    return cached["device"]


def _check_batch_size(batch_size, dataset, drop_last):
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    # Without drop_last a batch_size above N just gives one batch of all N images.
    if drop_last and batch_size > len(dataset):
        raise ValueError(f"batch_size {batch_size} is larger than the dataset "
                         f"{dataset.name!r} ({len(dataset)} images), so drop_last=True would "
                         f"leave no batch at all; use batch_size <= {len(dataset)}")


class BatchLoader:
    """Iterable over one epoch of batches per ``for`` loop; ``len()`` is batches per epoch.

    The k-th iteration is epoch k (``set_epoch`` moves it); the same seed and epoch
    always give the same batches. ``mean``/``std`` as in :func:`iterate_batches`.
    """

    def __init__(self, dataset, batch_size, shuffle=True, augment=False, seed=0,
                 drop_last=False, mean=None, std=None, on_device=False):
        self.dataset = as_dataset(dataset)
        _check_batch_size(batch_size, self.dataset, drop_last)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.drop_last, self.on_device = seed, drop_last, on_device
        self.stats = (self.dataset.mean if mean is None else mean,
                      self.dataset.std if std is None else std)
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        if self.drop_last:
            return len(self.dataset) // self.batch_size
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        return _batches(self.dataset, self.batch_size, rng, self.shuffle, self.augment,
                        self.drop_last, self.stats, self.on_device)
