"""No input file under 1 MB makes a loader use more than 1 GB: each crafted file is refused
before anything is allocated from what it declares (checked under ``ulimit -v``)."""
import gzip
import os
import pickle
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from tests.data_files import flat_png, npy_bytes, npz_bytes, write_cifar

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 2**20


def gzip_bomb(path):
    """An IDX images file of 15 gzip members of 64 MB of zeros: 960 MB from under 1 MB."""
    member = gzip.compress(bytes(64 * MB), compresslevel=9)
    header = gzip.compress(struct.pack(">IIII", 2051, 15 * 64 * MB // 784, 28, 28))
    path.write_bytes(header + member * 15)
    return path


def shared_rows_cifar(root):
    """A CIFAR-10 folder whose first batch shares one row 200,000 times (5 GB as an array)."""
    write_cifar(root)
    row = list(range(256)) * 12
    batch = {b"data": [row] * 200_000, b"labels": [0] * 200_000}
    (root / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=3))
    return root


def oversized_bytes_cifar(root):
    """A CIFAR-10 folder whose first batch declares a 64 GB bytes object it does not hold."""
    write_cifar(root)
    (root / "data_batch_1").write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**36) + b"abc")
    return root


def memo_cifar(root):
    """A CIFAR-10 folder whose first batch stores into memo slot 2**32 - 2 (32 GB of memo)."""
    write_cifar(root)
    (root / "data_batch_1").write_bytes(b"\x80\x02Nr" + struct.pack("<I", 2**32 - 2) + b".")
    return root


def png_bomb(root):
    """An image folder holding a 170 KB PNG of 13,000 x 13,000 pixels (500 MB as RGB)."""
    for name in ("a", "b"):
        flat_png(root / "cat" / f"{name}.png", 13_000, 13_000)
    return root


def npz_header_bomb(path):
    """An .npz whose one array declares 2**40 float32 values and holds four."""
    path.write_bytes(npz_bytes({"w": npy_bytes(np.zeros(4, np.float32), shape=(2**40,))}))
    return path


def huge_label(path):
    """One label of 2**40, as an .npy file (a class name per class would be 2**40 strings)."""
    np.save(path, np.array([2**40]))
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("loader, make, name, refusal", [
    ("idx", gzip_bomb, "images-idx3-ubyte.gz", "which would take .* from 0.9 MB on disk"),
    ("cifar10", shared_rows_cifar, "cifar", "data_batch_1 holds data of type list"),
    ("cifar10", oversized_bytes_cifar, "cifar", "data_batch_1 is truncated or corrupt"),
    ("cifar10", memo_cifar, "cifar", "data_batch_1 is truncated or corrupt .*memo index"),
    ("image_folder", png_bomb, "images", "13000x13000 pixels"),
    ("npz", npz_header_bomb, "w.npz", r"declares shape \(1099511627776,\)"),
    ("labels", huge_label, "labels.npy", "below 1,000,000 .* got a label of 1099511627776"),
])
def test_a_crafted_file_under_1_mb_is_refused_within_1_gb_of_memory(tmp_path, loader, make,
                                                                      name, refusal):
    path = make(tmp_path / name)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    assert all(p.stat().st_size < MB for p in files)
    # glibc reserves 64 MB of address space per thread's arena, memory no one uses.
    env = dict(os.environ, MALLOC_ARENA_MAX="1")
    result = subprocess.run([sys.executable, "-m", "tests.memory_limit_run", loader, str(path)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("refused: ")
    # An image folder skips the file with a warning (on stderr), then finds no image left.
    assert re.search(refusal, result.stdout + result.stderr), result.stdout + result.stderr
