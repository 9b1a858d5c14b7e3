"""Files as cs_vit reads and writes them: atomically, with the user's umask, checked when read.

Writes go to a temporary file beside the target, which is flushed and renamed
over it in one step, so a crash never leaves half a file. Reads open regular
files only (a FIFO named like a dataset file would block forever), and ``.npz``
files are read without pickle, each array checked against the size its member
holds (see :mod:`cs_vit.limits`) and against NaN and infinity.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import stat
import zipfile
from pathlib import Path

import numpy
from numpy.lib import format as npy_format

from cs_vit.limits import check_inflation

_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0,
                   (2, 0): npy_format.read_array_header_2_0}


def open_regular(path, mode="rb"):
    """``open(path, mode)`` for reading, refusing anything but a regular file.

    The file is opened without blocking and checked before any byte is read, so
    a FIFO, socket or device raises a ValueError instead of hanging the reader.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file (a FIFO, socket or device?); "
                             "replace it by the file it stands for, or remove it")
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def existing_folder(path, what, must_exist=True):
    """``path`` as a Path (``~`` expanded); refused by name if it is a file, or if it is missing
    and ``must_exist``."""
    path = Path(path).expanduser()
    if must_exist and not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file, not a folder; give the folder that "
                                 "holds the dataset's files")
    return path


def temp_file_beside(path, suffix=".tmp"):
    """(open binary file, its path): a new file in ``path``'s folder, for a later ``os.replace``.

    It is created with mode 0o666 less the umask, as ``open`` would, so the file
    it becomes is readable by whoever could read any other file the user writes.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    while True:
        tmp = os.path.join(folder, f".tmp-{os.path.basename(path)}-{secrets.token_hex(4)}{suffix}")
        try:
            return os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb"), tmp
        except FileExistsError:
            continue


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file, then rename it to ``path`` in one step.

    The data are flushed to disk before ``os.replace`` (atomic), so a crash at any
    moment leaves either the previous file or the new one, never half of one.
    """
    path = os.fspath(path)
    f, tmp = temp_file_beside(path)
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_savez(path, arrays: dict) -> None:
    """Write ``arrays`` to ``path`` (.npz, uncompressed) atomically."""
    atomic_write(path, lambda f: numpy.savez(f, **arrays))


def atomic_write_json(path, value) -> None:
    """Write ``value`` to ``path`` as indented JSON, atomically."""
    text = json.dumps(value, indent=2)
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path, fix):
    """The JSON value in the file at ``path``; if it is not JSON, a ValueError naming it and ``fix``."""
    try:
        with open_regular(path) as f:
            return json.loads(f.read().decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); {fix}") from err


def load_npz(path) -> dict:
    """Every array of an ``.npz`` file as a dict, refusing pickled objects.

    Each member's header must declare exactly the bytes the member holds (a
    deflated member may inflate at most as :func:`cs_vit.limits.check_inflation`
    allows), and no floating-point array may hold NaN or infinity.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with open_regular(path) as f, zipfile.ZipFile(f) as archive:
            arrays = {info.filename[:-len(".npy")]: _read_member(archive, info)
                      for info in archive.infolist()}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable cs_vit .npz file ({err})") from err
    _check_finite(path, arrays)
    return arrays


def _read_member(archive, info):
    """One ``.npy`` member as an array, once its header is checked against the member's size."""
    if not info.filename.endswith(".npy"):
        raise ValueError(f"member {info.filename!r} is not a NumPy array")
    check_inflation(info.file_size, info.compress_size, f"member {info.filename!r} inflates to "
                    f"{info.file_size:,} bytes", "use the file that cs_vit wrote")
    with archive.open(info) as member:
        version = npy_format.read_magic(member)
        if version not in _HEADER_READERS:
            raise ValueError(f"member {info.filename!r} has .npy format version {version}")
        shape, _, dtype = _HEADER_READERS[version](member)
        declared = math.prod(shape) * dtype.itemsize
        held = info.file_size - member.tell()
        if not dtype.hasobject and declared != held:
            raise ValueError(f"member {info.filename!r} declares shape {shape} {dtype} "
                             f"({declared:,} bytes) but holds {held:,} bytes")
    with archive.open(info) as member:
        return npy_format.read_array(member, allow_pickle=False)


def _check_finite(path, arrays):
    bad = [key for key, value in arrays.items()
           if value.dtype.kind in "fc" and not numpy.isfinite(value).all()]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"{path} holds NaN or infinite values (in {shown}): it was saved from "
                         "a model whose training diverged; use an earlier copy, or train again "
                         "with a smaller learning rate")
