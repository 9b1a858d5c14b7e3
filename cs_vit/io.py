"""Safe, atomic array files: ``.npz`` written to a temp file then renamed, read without pickle."""
from __future__ import annotations

import os
import tempfile
import zipfile

import numpy


def atomic_savez(path, arrays: dict) -> None:
    """Write ``arrays`` to ``path`` (.npz) so that a crash never leaves a half-written file.

    The data go to a temporary file in the same folder, which is flushed to disk
    and then renamed over ``path`` in one step (``os.replace`` is atomic).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            numpy.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_npz(path) -> dict:
    """Every array of an ``.npz`` file as a dict, refusing pickled objects."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with numpy.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable cs_vit .npz file ({err})") from err
