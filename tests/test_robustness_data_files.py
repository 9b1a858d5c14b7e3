"""Corrupt dataset files are reported by name (the other file cases live in test_data_*.py)."""
import pickle

import numpy as np
import pytest

from cs_vit.data import load_cifar10, load_image_folder, load_mnist
from tests.data_files import cifar_with_label, idx_bytes, write_cifar, write_folder, write_idx


def test_a_cifar10_batch_of_garbage_bytes_is_reported_by_name(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_4").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ValueError, match="data_batch_4 is truncated or corrupt"):
        load_cifar10(tmp_path)


def test_a_cifar10_batch_with_labels_out_of_range_is_reported_by_name(tmp_path):
    cifar_with_label(tmp_path, "data_batch_1", 12)
    with pytest.raises(ValueError, match=r"labels in .*data_batch_1 must lie in \[0, 10\) for "
                                         r"10 classes, got labels from \d+ to 12; the file is "
                                         r"corrupt"):
        load_cifar10(tmp_path)


def test_cifar10_metadata_without_class_names_is_reported_by_name(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"names": []}, protocol=3))
    with pytest.raises(ValueError, match="batches.meta is not a CIFAR-10 batch: it has no "
                                         "b'label_names' entry"):
        load_cifar10(tmp_path)


def test_an_idx_labels_file_with_labels_out_of_range_is_reported_by_name(tmp_path):
    write_idx(tmp_path, gz=False)
    labels = np.array([0, 1, 2, 3, 200, 5], np.uint8)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels, 2049))
    with pytest.raises(ValueError, match=r"labels in .*train-labels-idx1-ubyte must lie in "
                                         r"\[0, 10\) .*got labels from 0 to 200"):
        load_mnist(tmp_path)


def test_a_class_whose_images_are_all_unreadable_is_named(tmp_path):
    write_folder(tmp_path, classes=("cat",))
    (tmp_path / "dog").mkdir()
    for i in range(2):
        (tmp_path / "dog" / f"{i}.png").write_bytes(b"\x89PNG truncated")
    with pytest.warns(UserWarning, match="unreadable.*dog"):
        with pytest.raises(ValueError, match="class 'dog' in .* has no readable images"):
            load_image_folder(tmp_path)
