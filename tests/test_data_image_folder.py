import os

import numpy as np
import pytest
from PIL import Image

from cs_vit.data import load_image_folder
from tests.data_files import write_folder, write_image


def test_load_image_folder_splits_each_class_by_about_test_fraction(tmp_path):
    write_folder(tmp_path, classes=("cat", "dog"), per_class=60)
    train, test = load_image_folder(tmp_path, test_fraction=0.2)
    assert train.class_names == ["cat", "dog"]
    assert len(train) + len(test) == 120 and train.images.shape[1:] == (3, 8, 8)
    assert train.images.dtype == np.uint8
    assert all(6 <= count <= 18 for count in np.bincount(test.labels))
    assert test.mean == train.mean and train.name == f"folder:{tmp_path.name}"
    assert sorted(train.files + test.files) == sorted(
        f"{c}/{i:03d}.png" for c in ("cat", "dog") for i in range(60))


def test_image_folder_pixels_match_the_files(tmp_path):
    path = write_image(tmp_path / "train" / "a" / "0.png", size=(4, 6), seed=3)
    write_image(tmp_path / "test" / "a" / "1.png", size=(4, 6), seed=4)
    train, test = load_image_folder(tmp_path)
    expected = np.asarray(Image.open(path)).transpose(2, 0, 1)
    both = np.concatenate([train.images, test.images])
    assert any((image == expected).all() for image in both)
    assert both.shape[1:] == (3, 4, 6)


def test_image_folder_split_is_fixed_by_seed(tmp_path):
    write_folder(tmp_path, per_class=10)
    first, second, other = (load_image_folder(tmp_path, seed=s)[1] for s in (0, 0, 1))
    np.testing.assert_array_equal(first.images, second.images)
    assert not np.array_equal(first.images, other.images)


def test_image_folder_uses_train_and_test_subfolders(tmp_path):
    write_folder(tmp_path / "train", per_class=3)
    write_folder(tmp_path / "test", per_class=2)
    train, test = load_image_folder(tmp_path)
    assert len(train) == 6 and len(test) == 4 and test.class_names == ["cat", "dog"]


def test_train_and_test_subfolders_must_hold_the_same_classes(tmp_path):
    write_folder(tmp_path / "train", classes=("cat", "dog"))
    write_folder(tmp_path / "test", classes=("cat",))
    with pytest.raises(ValueError, match="same class folders"):
        load_image_folder(tmp_path)


def test_image_folder_resizes_to_image_size(tmp_path):
    write_image(tmp_path / "a" / "0.jpg", size=(10, 20))
    write_image(tmp_path / "a" / "1.JPEG", size=(30, 12))
    train, test = load_image_folder(tmp_path, image_size=(6, 5), test_fraction=0.5)
    assert train.images.shape == (1, 3, 6, 5) and test.images.shape == (1, 3, 6, 5)
    square, _ = load_image_folder(tmp_path, image_size=7, test_fraction=0.5)
    assert square.images.shape[2:] == (7, 7)


def test_image_folder_with_mixed_sizes_suggests_image_size(tmp_path):
    write_image(tmp_path / "a" / "0.png", size=(8, 8))
    write_image(tmp_path / "a" / "1.png", size=(9, 8))
    with pytest.raises(ValueError, match="different sizes.*1.png is 9x8.*image_size"):
        load_image_folder(tmp_path)


def test_grayscale_images_become_rgb(tmp_path):
    write_image(tmp_path / "train" / "a" / "0.png", mode="L")
    write_image(tmp_path / "test" / "a" / "1.bmp", mode="L")
    train, test = load_image_folder(tmp_path)
    assert train.images.shape == (1, 3, 8, 8)
    for split in (train, test):
        assert (split.images[:, 0] == split.images[:, 2]).all()


def test_non_image_files_are_skipped_with_a_warning(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"hidden files are ignored silently")
    with pytest.warns(UserWarning, match="not images.*notes.txt") as record:
        train, test = load_image_folder(tmp_path)
    assert len(train) + len(test) == 10
    assert not any(".DS_Store" in str(w.message) for w in record)


def test_corrupt_image_files_are_skipped_with_a_warning(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff definitely not a jpeg")
    with pytest.warns(UserWarning, match="unreadable.*broken.jpg"):
        train, test = load_image_folder(tmp_path)
    assert len(train) + len(test) == 10


def test_class_folder_without_images_is_named(tmp_path):
    write_folder(tmp_path, classes=("cat",))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class has no images"):
        load_image_folder(tmp_path)


def test_folder_without_class_folders_is_rejected(tmp_path):
    write_image(tmp_path / "loose.png")
    with pytest.raises(ValueError, match="no class folders"):
        load_image_folder(tmp_path)


def test_missing_image_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        load_image_folder(tmp_path / "does_not_exist")


def test_a_class_needs_two_images_to_be_split(tmp_path):
    write_folder(tmp_path, classes=("cat", "dog"), per_class=2)
    write_image(tmp_path / "owl" / "0.png")
    with pytest.raises(ValueError, match="'owl' has only 1 image"):
        load_image_folder(tmp_path)


def test_image_folder_cache_round_trips_outside_the_folder(tmp_path):
    root = write_folder(tmp_path / "images")
    cache = tmp_path / "cache"
    train, test = load_image_folder(root, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    assert sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    # A cache hit decodes nothing: blank a file but keep its size and time, so the key holds.
    path = root / "cat" / "000.png"
    stat = path.stat()
    path.write_bytes(bytes(stat.st_size))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    train_again, test_again = load_image_folder(root, cache_dir=cache)
    np.testing.assert_array_equal(train.images, train_again.images)
    np.testing.assert_array_equal(test.labels, test_again.labels)


def test_image_folder_cache_is_rebuilt_when_files_change(tmp_path):
    root = write_folder(tmp_path / "images")
    cache = tmp_path / "cache"
    load_image_folder(root, cache_dir=cache)
    write_image(root / "cat" / "extra.png", seed=99)
    train, test = load_image_folder(root, cache_dir=cache)
    assert len(train) + len(test) == 11
    assert len(list(cache.glob("*.npz"))) == 2


def test_cache_dir_inside_the_image_folder_is_refused(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(ValueError, match="inside the image folder"):
        load_image_folder(tmp_path, cache_dir=tmp_path / "cache")
