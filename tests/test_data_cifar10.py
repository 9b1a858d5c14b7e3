import hashlib
import os
import pickle

import numpy as np
import pytest

from cs_vit.data import UnsafePickleError, cifar10, load_cifar10
from tests.data_files import CIFAR_CLASSES, tar_gz, write_cifar


def test_load_cifar10_reads_the_python_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", n=4)
    train, test = load_cifar10(tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == np.uint8
    assert test.images.shape == (4, 3, 32, 32)
    assert train.labels.dtype == np.int64 and train.class_names == CIFAR_CLASSES
    first = batches["data_batch_1"]
    np.testing.assert_array_equal(train.images[:4], first[b"data"].reshape(4, 3, 32, 32))
    np.testing.assert_array_equal(train.labels[:4], first[b"labels"])
    assert train.name == "cifar10" and train.mean == (0.4914, 0.4822, 0.4465)


def test_load_cifar10_accepts_root_pointing_at_the_batches_folder(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    train, _ = load_cifar10(tmp_path / "cifar-10-batches-py")
    assert len(train) == 20


def test_missing_cifar10_files_say_how_to_get_them(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    os.remove(tmp_path / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(FileNotFoundError, match="test_batch.*download=True.*get_datasets.sh"):
        load_cifar10(tmp_path)


def test_truncated_cifar10_batch_is_reported_by_name(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    data = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="data_batch_3 is truncated or corrupt"):
        load_cifar10(tmp_path)


def test_cifar10_batch_with_wrong_row_size_is_rejected(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=3))
    with pytest.raises(ValueError, match="test_batch holds data of shape"):
        load_cifar10(tmp_path)


class _TouchesAFile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_load_cifar10_refuses_a_malicious_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "pwned"
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": _TouchesAFile(marker)}, 3))
    with pytest.raises(UnsafePickleError, match="data_batch_2"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def _serve_archive(tmp_path, monkeypatch):
    """A small CIFAR archive behind a file:// URL, patched in as the official one."""
    source = write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "src" / "cifar-10-python.tar.gz"
    archive.write_bytes(tar_gz({f"cifar-10-batches-py/{name}": pickle.dumps(content, 3)
                                for name, content in source.items()}))
    monkeypatch.setattr(cifar10, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", hashlib.md5(archive.read_bytes()).hexdigest())


def test_load_cifar10_downloads_and_unpacks_the_archive(tmp_path, monkeypatch):
    _serve_archive(tmp_path, monkeypatch)
    train, test = load_cifar10(tmp_path / "data", download=True)
    assert len(train) == 20 and len(test) == 4
    assert (tmp_path / "data" / "cifar-10-batches-py" / "batches.meta").is_file()


def test_load_cifar10_download_skips_files_already_present(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cifar-10-batches-py")
    monkeypatch.setattr(cifar10, "CIFAR10_URL", (tmp_path / "nowhere.tar.gz").as_uri())
    train, _ = load_cifar10(tmp_path, download=True)
    assert len(train) == 20


def test_load_cifar10_reads_the_image_folder_layout(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("airplane", "cat"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    train, test = load_cifar10(tmp_path)
    assert train.name == test.name == "cifar10"
    assert train.images.shape == (4, 3, 32, 32) and train.class_names == ["airplane", "cat"]
