import numpy as np
import pytest
import torch

from cs_vit.data import ArrayDataset, as_dataset


def _images(n=4, c=3, h=5, w=5):
    return np.random.default_rng(0).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def test_array_dataset_indexes_to_image_and_label():
    data = ArrayDataset(_images(), np.array([0, 1, 2, 1]), ["a", "b", "c"])
    image, label = data[2]
    assert image.shape == (3, 5, 5) and label == 2 and len(data) == 4
    assert data[1:3][0].shape == (2, 3, 5, 5)
    assert data.num_classes == 3 and data.image_shape == (3, 5, 5)


def test_array_dataset_computes_mean_and_std_when_not_given():
    images = np.zeros((2, 1, 2, 2), np.uint8)
    images[1] = 255
    data = ArrayDataset(images, np.array([0, 0]), ["x"])
    assert data.mean == pytest.approx((0.5,)) and data.std == pytest.approx((0.5,))


@pytest.mark.parametrize("images, labels, match", [
    (_images()[0], np.zeros(4, int), "4-D"),
    (_images(), np.zeros((4, 1), int), "1-D"),
    (_images(), np.zeros(3, int), "same length"),
    (_images(), np.array([0, 1, 2, 3]), r"\[0, 3\)"),
    (_images(), np.array([0, -1, 0, 0]), r"\[0, 3\)"),
    (_images(0), np.zeros(0, int), "empty"),
])
def test_array_dataset_rejects_inconsistent_arrays(images, labels, match):
    with pytest.raises(ValueError, match=match):
        ArrayDataset(images, labels, ["a", "b", "c"])


@pytest.mark.parametrize("images, labels, match", [
    (_images().astype(np.float64), np.zeros(4, int), "uint8.*float32"),
    (_images(), np.zeros(4), "integers"),
])
def test_array_dataset_rejects_wrong_dtypes(images, labels, match):
    with pytest.raises(TypeError, match=match):
        ArrayDataset(images, labels, ["a"])


def test_as_dataset_returns_an_array_dataset_unchanged():
    data = ArrayDataset(_images(), np.zeros(4, int), ["a"])
    assert as_dataset(data) is data


class _FakeCIFAR10:
    """What torchvision.datasets.CIFAR10 exposes: channels-last numpy data, list targets."""

    def __init__(self):
        self.data = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        self.targets = [0, 1, 2, 3, 9]
        self.classes = [f"c{i}" for i in range(10)]


class _FakeMNIST:
    def __init__(self):
        self.data = torch.zeros(3, 28, 28, dtype=torch.uint8)
        self.targets = torch.tensor([1, 2, 3])
        self.classes = [str(d) for d in range(10)]


_FakeCIFAR10.__name__ = "CIFAR10"
_FakeMNIST.__name__ = "MNIST"


def test_as_dataset_converts_a_torchvision_style_cifar10():
    source = _FakeCIFAR10()
    data = as_dataset(source)
    assert data.images.shape == (5, 3, 32, 32) and data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.images[1], source.data[1].transpose(2, 0, 1))
    assert data.class_names == source.classes and data.name == "cifar10"
    assert data.mean == (0.4914, 0.4822, 0.4465)


def test_as_dataset_converts_torch_tensors_from_a_torchvision_style_mnist():
    data = as_dataset(_FakeMNIST())
    assert data.images.shape == (3, 1, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [1, 2, 3] and data.name == "mnist"


def test_as_dataset_converts_an_images_labels_tuple():
    images = np.random.default_rng(0).random((4, 6, 6, 3))
    data = as_dataset((images, [0, 1, 1, 0]), mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert data.images.shape == (4, 3, 6, 6) and data.images.dtype == np.float32
    assert data.class_names == ["0", "1"] and data.mean == (0.5, 0.5, 0.5)


def test_as_dataset_rejects_float_images_on_the_0_255_scale():
    with pytest.raises(ValueError, match="0..1"):
        as_dataset((np.full((2, 1, 4, 4), 200.0), [0, 1]))


def test_as_dataset_rejects_what_it_cannot_read():
    with pytest.raises(TypeError, match="cannot make a dataset from int"):
        as_dataset(3)


class _ItemDataset:
    """A generic map-style dataset without .data: items are (CHW tensor, int)."""

    def __init__(self):
        self.items = [(torch.rand(3, 4, 4), i % 2) for i in range(4)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_as_dataset_iterates_a_generic_dataset():
    source = _ItemDataset()
    data = as_dataset(source)
    assert data.images.shape == (4, 3, 4, 4) and data.labels.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(data.images[2], source.items[2][0].numpy())


def test_as_dataset_reads_torchvision_fake_data_of_pil_images():
    datasets = pytest.importorskip("torchvision.datasets")
    source = datasets.FakeData(size=5, image_size=(3, 6, 7), num_classes=3)
    data = as_dataset(source)
    assert data.images.shape == (5, 3, 6, 7) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images[0], np.asarray(source[0][0]).transpose(2, 0, 1))
