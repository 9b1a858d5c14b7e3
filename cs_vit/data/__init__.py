"""Datasets as in-memory NumPy arrays, and the batches a solver trains on.

Every loader returns ``(train, test)`` ArrayDatasets with images (N, C, H, W):

    >>> from cs_vit.data import load_dataset, BatchLoader, default_augment
    >>> train, test = load_dataset("digits")   # or "cifar10", "mnist", "fashion-mnist", "folder"
    >>> loader = BatchLoader(train, batch_size=64, augment=default_augment(train.name))

Datasets live on the host. The solver asks for ``on_device`` batches: a copy of the
dataset is made once on the active backend (the GPU on CuPy) and batches are cut there.
"""
from cs_vit.data.cifar10 import load_cifar10
from cs_vit.data.convert import as_dataset
from cs_vit.data.dataset import ArrayDataset, hold_out
from cs_vit.data.digits import load_digits
from cs_vit.data.download import DownloadError, download_file, extract_tar, md5_of
from cs_vit.data.idx import load_fashion_mnist, load_mnist, read_idx
from cs_vit.data.image_folder import load_image_folder
from cs_vit.data.loader import BatchLoader, default_augment, iterate_batches
from cs_vit.data.registry import DATASET_NAMES, default_root, load_dataset
from cs_vit.data.safe_pickle import RestrictedUnpickler, UnsafePickleError, safe_load
from cs_vit.data.transforms import (
    DATASET_STATS,
    channel_stats,
    normalize,
    random_crop,
    random_horizontal_flip,
    to_unit_float,
)

__all__ = [
    "ArrayDataset", "hold_out", "as_dataset", "load_dataset", "default_root", "DATASET_NAMES",
    "load_cifar10", "load_mnist", "load_fashion_mnist", "load_image_folder", "load_digits",
    "read_idx", "BatchLoader", "iterate_batches", "default_augment",
    "DATASET_STATS", "channel_stats", "normalize", "random_crop", "random_horizontal_flip",
    "to_unit_float", "download_file", "extract_tar", "md5_of", "DownloadError",
    "RestrictedUnpickler", "UnsafePickleError", "safe_load",
]
