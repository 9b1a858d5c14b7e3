"""Mini-batches for training: shuffle, augment, normalise, all on the host.

    >>> loader = BatchLoader(train, batch_size=128, shuffle=True,
    ...                      augment=default_augment(train.name), seed=0)
    >>> for x, y in loader:          # one epoch; x (N, C, H, W) float32, y (N,) int64
    ...     ...

Each epoch draws from its own generator, ``default_rng([seed, epoch])``, so a
run can be repeated batch for batch, and resumed at any epoch.
"""
from __future__ import annotations

import math

import numpy as np

from cs_vit.data.convert import as_dataset
from cs_vit.data.transforms import normalize, random_crop, random_horizontal_flip, to_unit_float


def default_augment(dataset_name):
    """Whether to crop and flip by default: yes for CIFAR-10 and image folders (photos,
    where a mirrored cat is still a cat); no for digits and (Fashion-)MNIST, whose small
    centred images gain little and where a mirrored digit is no longer that digit; no
    for any other name."""
    return dataset_name == "cifar10" or dataset_name.startswith("folder")


def iterate_batches(dataset, batch_size, rng=None, shuffle=True, augment=False,
                    drop_last=False, mean=None, std=None):
    """Yield ``(x, y)``: x (B, C, H, W) float32 normalised, y (B,) int64.

    Normalisation uses ``mean``/``std`` when given (e.g. the train split's, for a
    test set), else the dataset's own. Augmentation (random crop with padding
    H // 8, then a random horizontal flip) runs only when ``augment`` is true.
    All randomness comes from ``rng``, which may be None only when there is none.
    """
    dataset = as_dataset(dataset)
    _check_batch_size(batch_size, dataset, drop_last)
    if rng is None and (shuffle or augment):
        raise ValueError("iterate_batches needs rng (e.g. numpy.random.default_rng(seed)) to "
                         "shuffle or augment")
    stats = (dataset.mean if mean is None else mean, dataset.std if std is None else std)
    return _batches(dataset, batch_size, rng, shuffle, augment, drop_last, stats)


def _batches(dataset, batch_size, rng, shuffle, augment, drop_last, stats):
    order = rng.permutation(len(dataset)) if shuffle else np.arange(len(dataset))
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        x = to_unit_float(dataset.images[index])
        if augment:
            x = random_horizontal_flip(random_crop(x, dataset.images.shape[2] // 8, rng), rng)
        yield normalize(x, *stats), dataset.labels[index]


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
                 drop_last=False, mean=None, std=None):
        self.dataset = as_dataset(dataset)
        _check_batch_size(batch_size, self.dataset, drop_last)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.drop_last = seed, drop_last
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
                        self.drop_last, self.stats)
