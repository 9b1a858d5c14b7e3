"""Normalisation and augmentation of batches of shape (N, C, H, W), NumPy or CuPy.

Everything is deterministic given a ``numpy.random.Generator`` and keeps
float32 in -> float32 out. The order matches torchvision's usual pipeline
(crop and flip the 0..1 image, then normalise), so padded pixels are black.
The random choices are drawn on the host; ``crop_at`` and ``flip_where`` then
apply them to images wherever those live (the loader keeps a GPU copy of the
dataset on CuPy, so a batch never crosses to the device).
"""
from __future__ import annotations

import numpy as np

from cs_vit.backend import get_array_module

# Per-channel (mean, std) of the train split, on images scaled to 0..1.
DATASET_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
}


def to_unit_float(images):
    """uint8 0..255 -> float32 0..1; float images are taken as already 0..1."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) * np.float32(1 / 255)
    return images.astype(np.float32, copy=False)


def channel_stats(images, chunk=4096):
    """Per-channel (mean, std) of images (N, C, H, W) on the 0..1 scale, as float tuples.

    Sums run in float64 over chunks, so 50,000 CIFAR images need no big temporary.
    """
    total = np.zeros(images.shape[1])
    total_sq = np.zeros(images.shape[1])
    for start in range(0, len(images), chunk):
        x = to_unit_float(images[start:start + chunk]).astype(np.float64)
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x * x).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    # A constant channel would divide by zero; leave it unscaled instead.
    std[std == 0] = 1.0
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def normalize(images, mean, std):
    """images (N, C, H, W), uint8 or float32 0..1 -> float32 (images - mean) / std per channel.

    mean, std: C numbers each, as sequences or as arrays of the images' module
    (the loader passes device arrays on CuPy, so no step copies them over again).
    """
    if len(mean) != images.shape[1] or len(std) != images.shape[1]:
        raise ValueError(f"mean and std need one value per channel ({images.shape[1]}), got "
                         f"mean={tuple(mean)} std={tuple(std)}")
    xp = get_array_module(images)
    mean = xp.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = xp.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return (to_unit_float(images) - mean) / std


def random_crop(images, padding, rng):
    """Zero-pad each side by ``padding``, then crop every image back to (H, W) at its own
    random offset. images (N, C, H, W) -> (N, C, H, W), same dtype."""
    return crop_at(images, padding, *crop_offsets(rng, len(images), padding))


def crop_offsets(rng, n, padding):
    """(dy, dx) of n random crops, two (n,) int arrays in [0, 2 * padding], drawn from ``rng``."""
    _check_padding(padding)
    return rng.integers(0, 2 * padding + 1, size=(2, n))


def crop_at(images, padding, dy, dx):
    """Zero-pad each side by ``padding`` and crop image i at offset (dy[i], dx[i]).

    images (N, C, H, W); dy, dx (N,) ints -> (N, C, H, W), same dtype. Offsets must
    lie in [0, 2 * padding], as ``crop_offsets`` draws them; they are not checked,
    since on the GPU a check would wait for the device. Offset (padding, padding)
    gives the image back unchanged, as does padding 0.
    """
    _check_padding(padding)
    xp = get_array_module(images)
    n, c, h, w = images.shape
    if padding == 0:
        return images.copy()
    padded = xp.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    rows = xp.asarray(dy)[:, None] + xp.arange(h)  # (N, H): the padded rows image i keeps
    cols = xp.asarray(dx)[:, None] + xp.arange(w)  # (N, W)
    return padded[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def _check_padding(padding):
    if not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")


def random_horizontal_flip(images, rng, p=0.5):
    """Mirror each image left-right with probability ``p``. (N, C, H, W) -> same shape."""
    return flip_where(images, flip_choices(rng, len(images), p))


def flip_choices(rng, n, p=0.5):
    """(n,) bools drawn from ``rng``, each true with probability ``p``: which images to mirror."""
    return rng.random(n) < p


def flip_where(images, flip):
    """Mirror left-right the images whose ``flip`` (N,) bool is true. (N, C, H, W) -> same shape."""
    xp = get_array_module(images)
    return xp.where(xp.asarray(flip)[:, None, None, None], images[..., ::-1], images)
