import gzip
import hashlib
import os

import numpy as np
import pytest

from cs_vit.data import idx, load_fashion_mnist, load_mnist, read_idx
from tests.data_files import idx_bytes, write_idx


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_reads_idx_files_gzipped_or_not(tmp_path, gz):
    arrays = write_idx(tmp_path, n_train=6, n_test=4, gz=gz)
    train, test = load_mnist(tmp_path)
    assert train.images.shape == (6, 1, 28, 28) and test.images.shape == (4, 1, 28, 28)
    np.testing.assert_array_equal(train.images[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(test.labels, arrays["t10k-labels-idx1-ubyte"])
    assert train.labels.dtype == np.int64 and train.class_names == [str(d) for d in range(10)]
    assert train.images.flags.writeable


def test_load_fashion_mnist_names_its_classes(tmp_path):
    write_idx(tmp_path)
    train, _ = load_fashion_mnist(tmp_path)
    assert train.class_names[0] == "T-shirt/top" and train.class_names[9] == "Ankle boot"
    assert train.name == "fashion-mnist" and train.mean == (0.2860,)


def test_truncated_idx_file_is_reported_by_name(tmp_path):
    write_idx(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is truncated"):
        load_mnist(tmp_path)


def test_truncated_gzip_is_reported_by_name(tmp_path):
    write_idx(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is not a valid gzip"):
        load_mnist(tmp_path)


def test_idx_file_with_wrong_magic_number_is_rejected(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8), 2049))
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        read_idx(path, 2051)


def test_image_and_label_counts_must_agree(tmp_path):
    write_idx(tmp_path, gz=False)
    labels = idx_bytes(np.zeros(5, np.uint8), 2049)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels)
    with pytest.raises(ValueError, match="6 images but .* has 5 labels"):
        load_mnist(tmp_path)


def test_test_split_alone_is_not_enough(tmp_path):
    write_idx(tmp_path)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        os.remove(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="test split is there.*download=True"):
        load_mnist(tmp_path)


def test_load_mnist_downloads_missing_files(tmp_path, monkeypatch):
    write_idx(tmp_path / "src")
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (tmp_path / "src").iterdir()}
    monkeypatch.setattr(idx, "MNIST_URL", (tmp_path / "src").as_uri() + "/")
    monkeypatch.setattr(idx, "MNIST_MD5", md5)
    train, test = load_mnist(tmp_path / "mnist", download=True)
    assert len(train) == 6 and len(test) == 4
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(md5)


def test_load_mnist_download_keeps_files_already_present(tmp_path, monkeypatch):
    write_idx(tmp_path, gz=False)
    monkeypatch.setattr(idx, "MNIST_URL", (tmp_path / "nowhere").as_uri() + "/")
    train, _ = load_mnist(tmp_path, download=True)
    assert len(train) == 6


def test_load_mnist_download_with_wrong_md5_fails_clearly(tmp_path, monkeypatch):
    write_idx(tmp_path / "src")
    monkeypatch.setattr(idx, "MNIST_URL", (tmp_path / "src").as_uri() + "/")
    monkeypatch.setattr(idx, "MNIST_MD5", dict.fromkeys(idx.MNIST_MD5, "0" * 32))
    with pytest.raises(ValueError, match="MD5 mismatch for train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path / "mnist", download=True)
    assert not (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_read_idx_rejects_trailing_bytes(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8), 2049) + b"\0"))
    with pytest.raises(ValueError, match="longer than declared"):
        read_idx(path, 2049)
