"""Labels and datasets: range-checked before anything is built from them, never coerced silently.

(A label of 2**40 is tried under a memory limit, in test_robustness_memory.py.)
"""
import numpy as np
import pytest

from cs_vit.data import ArrayDataset, as_dataset, load_cifar10
from tests.data_files import cifar_with_label


def _images(n):
    return np.zeros((n, 1, 4, 4), np.uint8)


def test_a_huge_uint64_label_is_reported_as_it_is():
    labels = np.array([0, 2**63 + 5], dtype=np.uint64)
    with pytest.raises(ValueError, match="got a label of 9223372036854775813"):
        ArrayDataset(_images(2), labels, ["a", "b"])


def test_float_labels_of_an_iterated_dataset_are_refused_not_truncated():
    items = [(np.zeros((1, 4, 4), np.float32), label) for label in (1.9, 0.0, 2.0)]
    with pytest.raises(TypeError, match="labels must be integers .*got dtype float64"):
        as_dataset(items)


def test_float_cifar10_labels_are_refused_not_truncated(tmp_path):
    cifar_with_label(tmp_path, "data_batch_2", 1.9)
    with pytest.raises(ValueError, match=r"labels in .*data_batch_2 must be integer class "
                                         r"indices, got 1.9 \(float\); the file is corrupt"):
        load_cifar10(tmp_path)


def test_a_dict_is_refused_as_a_dataset_with_what_to_pass():
    with pytest.raises(TypeError, match="cannot make a dataset from dict; pass an ArrayDataset, "
                                        "a torchvision dataset, or an .images, labels. tuple"):
        as_dataset({"images": _images(2), "labels": np.array([0, 1])})


def test_a_torchvision_dataset_with_normalize_is_converted_back_to_0_1():
    datasets = pytest.importorskip("torchvision.datasets")
    transforms = pytest.importorskip("torchvision.transforms")
    normalize = transforms.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    plain = datasets.FakeData(size=4, image_size=(3, 5, 6), num_classes=2,
                              transform=transforms.ToTensor())
    normalized = datasets.FakeData(size=4, image_size=(3, 5, 6), num_classes=2,
                                   transform=transforms.Compose([transforms.ToTensor(), normalize]))
    data = as_dataset(normalized)
    np.testing.assert_allclose(data.images, as_dataset(plain).images, atol=1e-6)
    assert data.mean == (0.5, 0.4, 0.3) and data.std == (0.2, 0.25, 0.3)
