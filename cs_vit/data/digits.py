"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, no download needed.

Small enough to train a tiny ViT on a laptop CPU in seconds, which makes it the
dataset for checking that a model learns at all before moving to CIFAR-10.
"""
from __future__ import annotations

import numpy as np

from cs_vit.data.dataset import ArrayDataset


def load_digits(test_fraction=0.2, seed=0):
    """(train, test) ArrayDatasets of images (N, 1, 8, 8) uint8, classes "0".."9".

    The split is stratified (every digit keeps its share) and fixed by ``seed``;
    mean/std come from the train split.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    bunch = sklearn_digits()
    # sklearn stores intensities 0..16; rescale to the 0..255 of every other dataset.
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    class_names = [str(d) for d in range(10)]
    train = ArrayDataset(x_train, y_train, class_names, name="digits")
    return train, ArrayDataset(x_test, y_test, class_names, train.mean, train.std, "digits")
