"""An optional ``.npz`` cache of decoded image folders, kept outside the folder itself.

The key hashes every file's relative path, label, size and modification time
with the requested image size, so any change to the folder misses the cache.
"""
from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np


def cache_file(cache_dir, root, files, size):
    """Path of the cache for ``files`` [(split, path, label)] under ``root`` at ``size``."""
    cache_dir = Path(cache_dir).expanduser().resolve()
    if cache_dir == root or root in cache_dir.parents:
        raise ValueError(f"cache_dir {cache_dir} is inside the image folder {root}; "
                         "choose a folder outside it")
    key = hashlib.sha256(repr(size).encode())
    for split, path, label in files:
        stat = path.stat()
        key.update(f"{split}|{path.relative_to(root)}|{label}|{stat.st_size}|"
                   f"{stat.st_mtime_ns}\n".encode())
    return cache_dir / f"{root.name}-{key.hexdigest()[:20]}.npz"


def read_cache(path):
    """The arrays stored at ``path``, or None (with a warning if the file is unreadable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            return {key: cache[key] for key in cache.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        warnings.warn(f"ignoring unreadable cache file {path} ({err}); decoding the images again",
                      stacklevel=3)
        return None


def write_cache(path, arrays):
    """Store ``arrays`` at ``path``; written beside it first so a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
