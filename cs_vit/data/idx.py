"""MNIST and Fashion-MNIST from their IDX files (gzipped or not).

An IDX file is a big-endian header (magic number, then one uint32 per
dimension) followed by the raw uint8 values. Images have magic 2051 and dims
(N, 28, 28); labels have magic 2049 and dims (N,).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from cs_vit.data.dataset import ArrayDataset, check_label_range
from cs_vit.data.download import download_file
from cs_vit.data.transforms import DATASET_STATS
from cs_vit.io import existing_folder, open_regular
from cs_vit.limits import check_inflation

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_CLASSES = [str(d) for d in range(10)]

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83fd310",
}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_mnist(root, download=False):
    """(train, test) ArrayDatasets: 60,000 / 10,000 digits (N, 1, 28, 28) uint8, classes 0..9."""
    return _load("mnist", root, download, MNIST_URL, MNIST_MD5, MNIST_CLASSES)


def load_fashion_mnist(root, download=False):
    """(train, test) ArrayDatasets: 60,000 / 10,000 clothing images (N, 1, 28, 28) uint8."""
    return _load("fashion-mnist", root, download, FASHION_MNIST_URL, FASHION_MNIST_MD5,
                 FASHION_MNIST_CLASSES)


def _load(name, root, download, url, md5, class_names):
    root = existing_folder(root, f"the {name} folder", must_exist=False)
    if download:
        for base in SPLITS["train"] + SPLITS["test"]:
            if _find(root, base) is None:
                download_file(url + base + ".gz", root / (base + ".gz"), md5[base + ".gz"])
    paths = {split: [_find(root, base) for base in bases] for split, bases in SPLITS.items()}
    missing = [base for split, bases in SPLITS.items()
               for base, path in zip(bases, paths[split]) if path is None]
    if missing:
        only_test = set(missing) == set(SPLITS["train"])
        raise FileNotFoundError(
            f"{name} files not found in {root}: missing {', '.join(missing)} (.gz or not)"
            + ("; the test split is there but the loader needs the training split too"
               if only_test else "")
            + f". Get them with download=True, or datasets/get_datasets.sh {name}"
        )
    mean, std = DATASET_STATS[name]
    train, test = (_read_split(*paths[split], len(class_names)) for split in ("train", "test"))
    return (ArrayDataset(*train, class_names, mean, std, name),
            ArrayDataset(*test, class_names, mean, std, name))


def _find(root, base):
    for path in (root / base, root / (base + ".gz")):
        if path.is_file():
            return path
    return None


def _read_split(images_path, labels_path, num_classes):
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    check_label_range(labels, num_classes, f"the labels in {labels_path}",
                      "; the file is corrupt, download it again")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} has {len(images)} images but {labels_path} has "
                         f"{len(labels)} labels; the two files must come from the same split")
    return images[:, None], labels.astype(np.int64)


def read_idx(path, magic):
    """The uint8 array stored in the IDX file at ``path`` (``.gz`` is decompressed).

    ``magic`` is the expected magic number: 2051 for images, 2049 for labels. The
    header is read and checked against the file's size first (a gzipped file may
    inflate only as far as :func:`cs_vit.limits.check_inflation` allows); only then
    is the array allocated, once, and filled from the file.
    """
    path = Path(path)
    try:
        with open_regular(path) as raw, _decompressed(path, raw) as f:
            dims = _read_dims(path, f, magic)
            _check_declared(path, dims, os.fstat(raw.fileno()).st_size, f is not raw)
            data = np.empty(math.prod(dims), dtype=np.uint8)
            got, extra = f.readinto(data), len(f.read(1))
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{path} is not a valid gzip file ({err}); download it again") from err
    if got < len(data) or extra:
        state = "truncated" if got < len(data) else "longer than declared"
        raise ValueError(f"{path} is {state}: the header declares dims {dims}, i.e. "
                         f"{len(data):,} bytes of data, but it holds "
                         f"{'only ' + format(got, ',') if got < len(data) else 'more'}; "
                         "download it again")
    return data.reshape(dims)


def _decompressed(path, raw):
    """``raw`` itself, or a gzip reader over it if ``path`` ends in .gz."""
    return gzip.GzipFile(fileobj=raw, mode="rb") if path.suffix == ".gz" else raw


def _read_dims(path, f, magic):
    """The dims in the IDX header at the start of ``f``, after its magic number is checked."""
    head = f.read(4)
    if len(head) < 4:
        raise ValueError(f"{path} is too short ({len(head)} bytes) to be an IDX file")
    (got,) = struct.unpack(">I", head)
    if got != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise ValueError(f"{path} has magic number {got}, expected {magic} (an IDX {kind} file); "
                         "is it the right file, and not compressed twice?")
    ndim = magic & 0xFF
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(f"{path} is truncated: its header ends after {4 + len(raw_dims)} bytes")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    if 0 in dims:
        raise ValueError(f"{path} declares dims {dims}, which hold no data; download it again")
    return dims


def _check_declared(path, dims, stored, compressed):
    """Refuse dims that ask for more than the ``stored`` bytes of the file can hold."""
    declared = math.prod(dims)
    what = f"{path} declares dims {dims}, i.e. {declared:,} bytes of data"
    if compressed:
        check_inflation(declared, stored, what, "download it again")
    elif stored != 4 + 4 * len(dims) + declared:
        state = "truncated" if stored < 4 + 4 * len(dims) + declared else "longer than declared"
        raise ValueError(f"{path} is {state}: {what}, but the file has {stored:,} bytes in all; "
                         "download it again")
