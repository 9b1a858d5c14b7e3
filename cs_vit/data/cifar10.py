"""CIFAR-10 from the official "CIFAR-10 python version" files.

Layout: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
(``root`` may also be that folder itself). The pickles are read with the
restricted unpickler, so a tampered file cannot run code.

CIFAR-10 stored as image folders (``root/train/<class>/*.jpg`` and
``root/test/<class>/*.jpg``, as in the JPEG copy many courses share) loads too.
"""
from __future__ import annotations

import pickle

import numpy as np

from cs_vit.data.dataset import ArrayDataset, check_label_range, check_labels
from cs_vit.data.download import download_file, extract_tar
from cs_vit.data.image_folder import load_image_folder
from cs_vit.data.safe_pickle import UnsafePickleError, safe_load
from cs_vit.data.transforms import DATASET_STATS
from cs_vit.io import existing_folder
from cs_vit.limits import MAX_CLASSES

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
FILES = TRAIN_BATCHES + ["test_batch", "batches.meta"]
_CORRUPT = "; the file is corrupt, delete it and download CIFAR-10 again"


def load_cifar10(root, download=False):
    """(train, test) ArrayDatasets: 50,000 / 10,000 images (N, 3, 32, 32) uint8, 10 classes.

    ``download=True`` fetches and unpacks the archive into ``root`` unless the
    files are already there.
    """
    root = existing_folder(root, "the CIFAR-10 folder", must_exist=False)
    mean, std = DATASET_STATS["cifar10"]
    if (root / "train").is_dir() and (root / "test").is_dir():
        return tuple(ArrayDataset(split.images, split.labels, split.class_names, mean, std,
                                  "cifar10", split.files) for split in load_image_folder(root))
    folder = _find_folder(root)
    if download and _missing(folder):
        archive = download_file(CIFAR10_URL, root / CIFAR10_URL.rsplit("/", 1)[-1], CIFAR10_MD5)
        extract_tar(archive, root)
        folder = _find_folder(root)
    missing = _missing(folder)
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 files not found in {folder}: missing {', '.join(missing)}. Get them with "
            f"load_cifar10({str(root)!r}, download=True), or datasets/get_datasets.sh cifar10, "
            f"or download {CIFAR10_URL} and unpack it into {root}"
        )
    meta = _read(folder / "batches.meta")
    names = _field(meta, b"label_names", folder / "batches.meta")
    if not isinstance(names, list):
        raise ValueError(f"{folder / 'batches.meta'} holds label_names of type "
                         f"{type(names).__name__}, not a list of class names{_CORRUPT}")
    class_names = [n.decode("utf-8", "backslashreplace") if isinstance(n, bytes) else str(n)
                   for n in names]
    train = [_read_batch(folder / name, len(class_names)) for name in TRAIN_BATCHES]
    test = _read_batch(folder / "test_batch", len(class_names))
    return (
        ArrayDataset(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                     class_names, mean, std, "cifar10"),
        ArrayDataset(test[0], test[1], class_names, mean, std, "cifar10"),
    )


def _find_folder(root):
    """``root/cifar-10-batches-py`` unless ``root`` is already that folder."""
    if (root / "batches.meta").is_file() and not (root / FOLDER).is_dir():
        return root
    return root / FOLDER


def _missing(folder):
    return [name for name in FILES if not (folder / name).is_file()]


def _read(path):
    try:
        return safe_load(path)
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as err:
        raise ValueError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); "
                         "delete the folder and download CIFAR-10 again") from err


def _field(batch, key, path):
    if not isinstance(batch, dict) or key not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch: it has no {key!r} entry")
    return batch[key]


def _read_batch(path, num_classes):
    """One batch file -> images (N, 3, 32, 32) uint8, labels (N,) int64 in [0, num_classes).

    Types and shapes are checked before any conversion: a list that shares one row
    many times costs a few bytes a row in the file but a full row in an array.
    """
    batch = _read(path)
    data = _field(batch, b"data", path)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        got = (f"shape {data.shape} {data.dtype}" if isinstance(data, np.ndarray)
               else f"type {type(data).__name__}")
        raise ValueError(f"{path} holds data of {got}; a CIFAR-10 batch holds a uint8 array "
                         "of rows of 3072 values (3 x 32 x 32)")
    labels = _labels(_field(batch, b"labels", path), path)
    if len(labels) != len(data):
        raise ValueError(f"{path} has {len(data)} images but {len(labels)} labels")
    check_label_range(labels, num_classes, f"the labels in {path}", _CORRUPT)
    return data.reshape(-1, 3, 32, 32), labels


def _labels(labels, path):
    """A batch's labels (a list or array of integers) as int64; floats refused, not truncated."""
    if isinstance(labels, list):
        wrong = [v for v in labels if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
        if wrong:
            raise ValueError(f"the labels in {path} must be integer class indices, got "
                             f"{wrong[0]!r} ({type(wrong[0]).__name__}){_CORRUPT}")
        # NumPy turns a list holding an int past int64 into floats; report the label itself.
        highest = max(labels, default=0)
        labels = np.array(labels if highest < MAX_CLASSES else [highest])
    elif not isinstance(labels, np.ndarray):
        raise ValueError(f"the labels in {path} must be a list of class indices, got "
                         f"{type(labels).__name__}{_CORRUPT}")
    try:
        return check_labels(labels, f"the labels in {path}")
    except TypeError as err:
        raise ValueError(f"{err}{_CORRUPT}") from None
