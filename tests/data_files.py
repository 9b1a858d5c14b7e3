"""Tiny dataset files in the real on-disk formats, written by the data tests themselves."""
import gzip
import io
import pickle
import struct
import tarfile
import zipfile
import zlib

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def cifar_batch(n, seed):
    """A batch dict as in the official files: uint8 rows of 3072 and a list of labels."""
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, n)]}


def write_cifar(folder, n=4, protocol=3):
    """folder/{data_batch_1..5, test_batch, batches.meta} with n images a batch."""
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": cifar_batch(n, i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(n, 0)
    batches["batches.meta"] = {b"label_names": [c.encode() for c in CIFAR_CLASSES]}
    for name, content in batches.items():
        # Protocol 3 stores bytes natively, as the Python 2 originals do.
        (folder / name).write_bytes(pickle.dumps(content, protocol=protocol))
    return batches


def cifar_with_label(root, batch, label, index=2):
    """A CIFAR-10 folder in root whose ``batch`` file holds ``label`` at ``index``."""
    folder = root / "cifar-10-batches-py"
    write_cifar(folder)
    content = cifar_batch(4, seed=1)
    content[b"labels"][index] = label
    (folder / batch).write_bytes(pickle.dumps(content, protocol=3))
    return root


def idx_bytes(array, magic):
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(root, n_train=6, n_test=4, gz=True, seed=0):
    """The four MNIST-style files in root; returns {file name: array}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, n, dtype=np.uint8)
    for name, array in arrays.items():
        data = idx_bytes(array, 2051 if array.ndim == 3 else 2049)
        if gz:
            (root / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return arrays


def write_image(path, size=(8, 8), mode="RGB", seed=0):
    """A random image of size (H, W) at path; the format follows the suffix."""
    rng = np.random.default_rng(seed)
    shape = size if mode == "L" else (*size, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def write_folder(root, classes=("cat", "dog"), per_class=5, size=(8, 8), suffix=".png"):
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{i:03d}{suffix}", size, seed=10 * c + i)
    return root


def tar_gz(members):
    """A .tar.gz as bytes from {member name: file bytes}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def flat_png(path, width, height):
    """A greyscale PNG of width x height zeros, written row by row (a few KB per million pixels)."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter type 0, then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


def npz_bytes(members, compression=zipfile.ZIP_STORED):
    """An .npz file as bytes from {name: .npy bytes}, as numpy.savez lays it out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name + ".npy", data)
    return buffer.getvalue()


def npy_bytes(array, shape=None):
    """``array`` as .npy bytes, its header declaring ``shape`` (default: its own)."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
              "shape": array.shape if shape is None else shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + array.tobytes()
