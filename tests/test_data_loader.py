import numpy as np
import pytest

from cs_vit.data import ArrayDataset, BatchLoader, default_augment, iterate_batches, normalize
from cs_vit.data.loader import device_copy


def _dataset(n=10, size=8):
    images = np.random.default_rng(0).integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    return ArrayDataset(images, np.arange(n) % 3, ["a", "b", "c"], name="test")


def _epoch(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


def test_batch_loader_yields_normalised_float32_batches_of_every_image():
    data = _dataset()
    batches = _epoch(BatchLoader(data, batch_size=4, shuffle=False))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x = np.concatenate([x for x, _ in batches])
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, normalize(data.images, data.mean, data.std), rtol=1e-6)
    assert np.concatenate([y for _, y in batches]).dtype == np.int64


def test_batch_loader_len_counts_batches_with_and_without_drop_last():
    assert len(BatchLoader(_dataset(), 4)) == 3
    loader = BatchLoader(_dataset(), 4, drop_last=True)
    assert len(loader) == 2 and len(_epoch(loader)) == 2


def test_batch_loader_shuffles_each_epoch_reproducibly():
    first = BatchLoader(_dataset(), 4, shuffle=True, augment=True, seed=7)
    second = BatchLoader(_dataset(), 4, shuffle=True, augment=True, seed=7)
    epoch0, epoch1 = _epoch(first), _epoch(first)
    for (x, y), (x2, y2) in zip(epoch0, _epoch(second)):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(epoch0, epoch1))
    second.set_epoch(1)
    np.testing.assert_array_equal(_epoch(second)[0][0], epoch1[0][0])


def test_augment_changes_images_but_keeps_shape():
    data = _dataset()
    plain = next(iter(BatchLoader(data, 10, shuffle=False)))[0]
    augmented = next(iter(BatchLoader(data, 10, shuffle=False, augment=True)))[0]
    assert augmented.shape == plain.shape and augmented.dtype == np.float32
    assert not np.array_equal(augmented, plain)


def test_iterate_batches_draws_only_from_the_given_generator():
    data = _dataset()
    runs = [list(iterate_batches(data, 3, np.random.default_rng(1), augment=True)) for _ in "ab"]
    for (x, y), (x2, y2) in zip(*runs):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("batch_size, match", [(0, "positive"), (2.5, "positive"),
                                               (11, "larger than the dataset")])
def test_batch_loader_rejects_bad_batch_sizes(batch_size, match):
    with pytest.raises(ValueError, match=match):
        BatchLoader(_dataset(), batch_size, drop_last=True)


def test_batch_larger_than_the_dataset_without_drop_last_is_one_batch():
    assert [len(y) for _, y in BatchLoader(_dataset(), 64, shuffle=False)] == [10]


def test_iterate_batches_normalises_with_given_train_statistics():
    data = _dataset()
    x, _ = next(iterate_batches(data, 10, shuffle=False, mean=(0.5,) * 3, std=(0.25,) * 3))
    np.testing.assert_allclose(x, normalize(data.images, (0.5,) * 3, (0.25,) * 3), rtol=1e-6)


def test_iterate_batches_needs_rng_to_shuffle():
    with pytest.raises(ValueError, match="needs rng"):
        iterate_batches(_dataset(), 2, None, shuffle=True)


def test_batch_loader_accepts_an_images_labels_tuple():
    images = np.zeros((4, 1, 4, 4), np.uint8)
    x, y = next(iter(BatchLoader((images, [0, 1, 0, 1]), 2, shuffle=False)))
    assert x.shape == (2, 1, 4, 4) and y.tolist() == [0, 1]


@pytest.mark.parametrize("name, expected", [("cifar10", True), ("folder:pets", True),
                                            ("digits", False), ("mnist", False),
                                            ("fashion-mnist", False), ("arrays", False)])
def test_default_augment_is_on_for_natural_images_only(name, expected):
    assert default_augment(name) is expected


def test_iterate_batches_checks_batch_size_before_iterating():
    with pytest.raises(ValueError, match="positive"):
        iterate_batches(_dataset(), 0, np.random.default_rng(0))


def test_on_device_batches_on_numpy_are_the_host_batches():
    data = _dataset()
    host = list(iterate_batches(data, 4, np.random.default_rng(2), augment=True))
    device = list(iterate_batches(data, 4, np.random.default_rng(2), augment=True,
                                  on_device=True))
    for (x, y), (x2, y2) in zip(host, device, strict=True):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)


def test_device_copy_is_kept_until_the_dataset_arrays_change():
    data = _dataset()
    images, labels = device_copy(data)
    assert images is data.images and labels is data.labels  # NumPy: the arrays themselves
    data._device_copy["device"] = (images.copy(), labels.copy())  # stand-in for a GPU copy
    assert device_copy(data)[0] is data._device_copy["device"][0]  # kept, not made again
    data.images = data.images.copy()
    assert device_copy(data)[0] is data.images  # new images: a new copy
