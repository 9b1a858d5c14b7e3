"""An optional ``.npz`` cache of decoded image folders, kept outside the folder itself.

The key hashes every file's relative path, label, size and modification time
with the requested image size and the cache's format version, so any change
to the folder misses the cache.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from cs_vit.io import atomic_savez, load_npz

# Part of the key: a cache written in an older layout is never read.
FORMAT = "2"


def cache_file(cache_dir, root, files, size):
    """Path of the cache for ``files`` [(split, path, label)] under ``root`` at ``size``."""
    cache_dir = Path(cache_dir).expanduser().resolve()
    if cache_dir == root or root in cache_dir.parents:
        raise ValueError(f"cache_dir {cache_dir} is inside the image folder {root}; "
                         "choose a folder outside it")
    key = hashlib.sha256(f"{FORMAT}|{size!r}".encode())
    for split, path, label in files:
        stat = path.stat()
        key.update(f"{split}|{path.relative_to(root)}|{label}|{stat.st_size}|"
                   f"{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return cache_dir / f"{root.name}-{key.hexdigest()[:20]}.npz"


def read_cache(path):
    """The arrays stored at ``path``, or None (with a warning if the file is unreadable)."""
    if not path.is_file():
        return None
    try:
        return load_npz(path)
    except (OSError, ValueError) as err:
        warnings.warn(f"ignoring unreadable cache file {path} ({err}); decoding the images again",
                      stacklevel=3)
        return None


def write_cache(path, arrays):
    """Store ``arrays`` at ``path`` atomically, so a crash leaves no half file."""
    atomic_savez(path, arrays)
