"""``load_dataset(name)``: every dataset by name, and where its files live by default."""
from __future__ import annotations

from pathlib import Path

from cs_vit.data.cifar10 import load_cifar10
from cs_vit.data.digits import load_digits
from cs_vit.data.idx import load_fashion_mnist, load_mnist
from cs_vit.data.image_folder import load_image_folder

DOWNLOADERS = {"cifar10": load_cifar10, "mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
DATASET_NAMES = ("digits", *DOWNLOADERS, "folder")


def default_root(name):
    """Where dataset ``name`` lives unless told: ``<repo>/datasets/<name>`` in a source
    checkout, else ``~/.cache/cs_vit/<name>``."""
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file() and (repo / "datasets").is_dir():
        return repo / "datasets" / name
    return Path.home() / ".cache" / "cs_vit" / name


def load_dataset(name, root=None, download=False, image_size=None, **options):
    """(train, test) ArrayDatasets for ``name``: "digits", "cifar10", "mnist",
    "fashion-mnist" or "folder" (your own images at ``root``).

    ``image_size`` resizes "folder" images; ``options`` (test_fraction, seed,
    cache_dir) go to :func:`load_image_folder` or :func:`load_digits`. "digits"
    ships with scikit-learn, so a ``root`` for it is refused (``download`` does nothing).
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if name == "folder":
        if root is None:
            raise ValueError("the 'folder' dataset needs root=<folder with one sub-folder "
                             "per class>")
        return load_image_folder(root, image_size=image_size, **options)
    if image_size is not None:
        raise ValueError(f"image_size only applies to 'folder' datasets; {name!r} has a fixed "
                         "image size")
    if name == "digits":
        if root is not None:
            raise ValueError(f"the digits come with scikit-learn, so a dataset folder ({root}) "
                             "does not apply to them; leave --data-dir/root out, or choose "
                             "--dataset folder to train on the images in it")
        return load_digits(**options)
    if options:
        raise TypeError(f"{name!r} takes no options besides root and download, got "
                        f"{', '.join(sorted(options))}")
    return DOWNLOADERS[name](root if root is not None else default_root(name), download)
