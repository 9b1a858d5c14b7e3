import numpy as np
import pytest

from cs_vit.data import load_digits


def test_load_digits_gives_uint8_8x8_images_and_a_stratified_split():
    train, test = load_digits(test_fraction=0.2, seed=0)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == np.uint8
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert train.images.max() == 255 and train.class_names == [str(d) for d in range(10)]
    assert np.bincount(test.labels).min() >= 35
    assert test.mean == train.mean and train.name == "digits"


def test_load_digits_split_is_fixed_by_seed():
    first, second, other = (load_digits(seed=s)[1] for s in (0, 0, 1))
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert not np.array_equal(first.images, other.images)


def test_load_digits_rejects_a_test_fraction_outside_0_1():
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.0)
