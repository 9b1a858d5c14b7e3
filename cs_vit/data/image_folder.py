"""Your own images: one folder per class, as torchvision's ``ImageFolder`` reads them.

    root/cat/001.jpg, root/cat/002.png, root/dog/...          (split here, by name)
    root/train/cat/..., root/test/cat/...                    (split already made)

Without train/ and test/ folders, an image goes to the test split when a hash of
its own path (and the seed) says so: adding or removing other files never moves
it between splits, so a model is never evaluated on images it trained on.

Pass ``cache_dir`` to keep the decoded arrays in an ``.npz`` there, so the next
load skips decoding; nothing is ever written inside ``root``.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from cs_vit.data.dataset import ArrayDataset
from cs_vit.data.image_cache import cache_file, read_cache, write_cache
from cs_vit.data.image_decode import IMAGE_EXTENSIONS, decode_images
from cs_vit.io import existing_folder

_LISTED = 10


def load_image_folder(root, image_size=None, test_fraction=0.2, seed=0, cache_dir=None):
    """(train, test) ArrayDatasets of RGB images (N, 3, H, W) uint8; class names are folder names.

    image_size: None (all images must share one size), an int, or (H, W) to resize to.
    test_fraction, seed: without train/ and test/ folders, an image is a test image when
    a hash of ``seed`` and its path relative to ``root`` falls below ``test_fraction``, so
    each class's share is about ``test_fraction`` (a class with few images may miss a split).
    Files that are not images, or that PIL cannot read, are skipped with a warning.
    Each split's ``files`` lists its images' paths relative to ``root``.
    """
    root = existing_folder(root, "image folder").resolve()
    size = _check_size(image_size)
    if (root / "train").is_dir() and (root / "test").is_dir():
        class_names, test_classes = _class_folders(root / "train"), _class_folders(root / "test")
        if test_classes != class_names:
            raise ValueError(f"{root / 'test'} must hold the same class folders as "
                             f"{root / 'train'}: train has {class_names}, test has {test_classes}")
        splits = {name: root / name for name in ("train", "test")}
    else:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
        class_names = _class_folders(root)
        splits = {"all": root}
    files = [(split, path, label) for split, folder in splits.items()
             for path, label in _list_images(folder, class_names)]
    arrays = _decode_or_load_cache(root, files, size, cache_dir)
    for split, folder in splits.items():
        _check_every_class(arrays[split + "_labels"], class_names, folder)
    relative = {split: np.array([path.relative_to(root).as_posix() for s, path, _ in files
                                 if s == split], dtype=object)[arrays[split + "_keep"]]
                for split in splits}
    if "all" in splits:
        images, labels, paths = arrays["all_images"], arrays["all_labels"], relative["all"]
        is_test = _split(paths, labels, class_names, test_fraction, seed, root)
        train, test = ((images[m], labels[m], list(paths[m])) for m in (~is_test, is_test))
    else:
        train, test = ((arrays[s + "_images"], arrays[s + "_labels"], list(relative[s]))
                       for s in ("train", "test"))
    name = f"folder:{root.name}"
    train = ArrayDataset(*train[:2], class_names, name=name, files=train[2])
    return train, ArrayDataset(*test[:2], class_names, train.mean, train.std, name, test[2])


def _check_size(image_size):
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return size


def _class_folders(folder):
    names = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise ValueError(f"no class folders in {folder}; expected one folder per class, "
                         f"e.g. {folder}/cat/001.jpg and {folder}/dog/001.jpg")
    return names


def _list_images(folder, class_names):
    """[(path, label)] for every image under folder/<class>/, sorted; warns about other files."""
    items, others = [], []
    for label, name in enumerate(class_names):
        count = len(items)
        for dirpath, dirnames, filenames in os.walk(folder / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(f for f in filenames if not f.startswith(".")):
                path = Path(dirpath) / filename
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    items.append((path, label))
                else:
                    others.append(path)
        if len(items) == count:
            raise ValueError(f"class folder {folder / name} has no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}); add some or remove the folder")
    if others:
        _warn(f"skipped {len(others)} files that are not images ({', '.join(IMAGE_EXTENSIONS)})",
              others)
    return items


def _warn(message, paths):
    shown = ", ".join(str(p) for p in paths[:_LISTED])
    more = f" and {len(paths) - _LISTED} more" if len(paths) > _LISTED else ""
    warnings.warn(f"{message}: {shown}{more}", stacklevel=3)


def _decode_or_load_cache(root, files, size, cache_dir):
    """{"<split>_images", "<split>_labels", "<split>_keep", "skipped"}: the decoded files
    (``keep`` marks the readable ones, ``skipped`` says why the others are not), cached if asked."""
    path = cache_file(cache_dir, root, files, size) if cache_dir is not None else None
    arrays = read_cache(path) if path is not None else None
    if arrays is None:
        arrays, skipped = {}, []
        for split in dict.fromkeys(split for split, _, _ in files):
            paths = [p for s, p, _ in files if s == split]
            labels = np.array([label for s, _, label in files if s == split], dtype=np.int64)
            images, keep, reasons = decode_images(paths, size, desc=f"decoding {root.name}/{split}")
            arrays[split + "_images"], arrays[split + "_labels"] = images, labels[keep]
            arrays[split + "_keep"] = keep
            skipped += reasons
        arrays["skipped"] = np.array(skipped, dtype=str)
        if path is not None:
            write_cache(path, arrays)
    if len(arrays["skipped"]):
        _warn(f"skipped {len(arrays['skipped'])} unreadable image files", list(arrays["skipped"]))
    return arrays


def _check_every_class(labels, class_names, folder):
    for name, count in zip(class_names, np.bincount(labels, minlength=len(class_names))):
        if count == 0:
            raise ValueError(f"class {name!r} in {folder} has no readable images")


def _split(paths, labels, class_names, test_fraction, seed, root):
    """Boolean mask of the test images: those whose :func:`_unit_hash` is below ``test_fraction``.

    An image's split depends on its own path only, so it never moves when others
    are added or removed. A class that ends up with no image in a split is named.
    """
    counts = np.bincount(labels, minlength=len(class_names))
    for name, count in zip(class_names, counts):
        if count < 2:
            raise ValueError(f"class {name!r} has only {count} image; a class needs at "
                             "least 2 to be split into train and test")
    is_test = np.array([_unit_hash(seed, path) < test_fraction for path in paths], dtype=bool)
    advice = ("an image's split follows a hash of its name; add images, change test_fraction, "
              "or make train/ and test/ folders")
    if is_test.all() or not is_test.any():
        raise ValueError(f"all {len(paths)} images of {root} fell in the "
                         f"{'test' if is_test.all() else 'train'} split ({advice})")
    for split, in_split in (("train", ~is_test), ("test", is_test)):
        for name, count in zip(class_names, np.bincount(labels[in_split], minlength=len(counts))):
            if count == 0:
                warnings.warn(f"class {name!r} of {root} has no {split} image ({advice})",
                              stacklevel=3)
    return is_test


def _unit_hash(seed, path):
    """A number in [0, 1) fixed by ``seed`` and the relative ``path`` alone."""
    digest = hashlib.sha256(f"{seed}/{path}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
