import numpy as np
import pytest

from cs_vit.data import channel_stats, normalize, random_crop, random_horizontal_flip
from cs_vit.data.transforms import crop_at, flip_where


def _batch(n=6, c=3, h=8, w=8):
    return np.random.default_rng(0).random((n, c, h, w), dtype=np.float32)


def test_normalize_scales_uint8_to_unit_range_first():
    images = np.full((2, 2, 3, 3), 255, np.uint8)
    out = normalize(images, mean=(0.5, 0.0), std=(0.5, 2.0))
    assert out.dtype == np.float32 and out.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(out[:, 0], 1.0)
    np.testing.assert_allclose(out[:, 1], 0.5)


def test_normalize_keeps_float32_unit_images_as_is():
    images = _batch()
    out = normalize(images, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, images)


def test_normalize_needs_one_mean_per_channel():
    with pytest.raises(ValueError, match="one value per channel \\(3\\)"):
        normalize(_batch(), (0.5,), (0.5,))


def test_random_crop_keeps_shape_and_dtype_and_is_deterministic():
    images = _batch()
    first = random_crop(images, 2, np.random.default_rng(5))
    second = random_crop(images, 2, np.random.default_rng(5))
    assert first.shape == images.shape and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)


def test_random_crop_takes_a_shifted_window_of_the_zero_padded_image():
    images = _batch(n=20)
    out = random_crop(images, 2, np.random.default_rng(1))
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for image, crop in zip(padded, out):
        offsets = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(image[:, dy:dy + 8, dx:dx + 8], crop)]
        assert offsets
    assert not np.array_equal(out, images)


def test_random_crop_with_zero_padding_returns_the_images():
    images = _batch()
    np.testing.assert_array_equal(random_crop(images, 0, np.random.default_rng(0)), images)


def test_random_crop_rejects_negative_padding():
    with pytest.raises(ValueError, match="padding"):
        random_crop(_batch(), -1, np.random.default_rng(0))


def test_random_horizontal_flip_mirrors_some_images_deterministically():
    images = _batch(n=40)
    out = random_horizontal_flip(images, np.random.default_rng(3))
    flipped = [np.array_equal(o, i[:, :, ::-1]) for o, i in zip(out, images)]
    kept = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < 40
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, random_horizontal_flip(images, np.random.default_rng(3)))


def test_channel_stats_match_numpy_on_the_unit_scale():
    images = np.random.default_rng(0).integers(0, 256, (10, 3, 4, 4), dtype=np.uint8)
    mean, std = channel_stats(images, chunk=3)
    scaled = images / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)))


def test_crop_at_places_each_image_at_its_own_offset():
    images = _batch(n=3)
    out = crop_at(images, 2, np.array([2, 0, 4]), np.array([2, 4, 1]))
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    np.testing.assert_array_equal(out[0], images[0])  # (padding, padding): unchanged
    np.testing.assert_array_equal(out[1], padded[1][:, 0:8, 4:12])
    np.testing.assert_array_equal(out[2], padded[2][:, 4:12, 1:9])
    assert out.dtype == images.dtype


def test_flip_where_mirrors_exactly_the_chosen_images():
    images = _batch(n=3)
    out = flip_where(images, np.array([True, False, True]))
    np.testing.assert_array_equal(out[0], images[0][:, :, ::-1])
    np.testing.assert_array_equal(out[1], images[1])
    np.testing.assert_array_equal(out[2], images[2][:, :, ::-1])
