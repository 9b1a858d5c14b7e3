"""Image folders: special files, every image mode, a split that stays put, any file name."""
import os
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

from cs_vit import viz
from cs_vit.data import image_decode, load_image_folder
from tests.data_files import write_folder, write_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    write_folder(tmp_path, per_class=5)
    os.mkfifo(tmp_path / "cat" / "fifo.png")
    script = textwrap.dedent(f"""
        import warnings
        from cs_vit.data import load_image_folder
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train, test = load_image_folder({str(tmp_path)!r})
        print(len(train) + len(test), *[str(w.message) for w in caught], sep="\\n")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    count, *warnings = result.stdout.splitlines()
    assert count == "10"
    assert any("skipped 1 unreadable" in w and "fifo.png is not a regular file" in w
               for w in warnings)


def test_a_16_bit_greyscale_png_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    for split in ("train", "test"):
        path = tmp_path / split / "a" / "0.png"
        path.parent.mkdir(parents=True)
        Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    train, _ = load_image_folder(tmp_path)
    np.testing.assert_array_equal(train.images[0], np.broadcast_to([[0, 1, 128, 255]], (3, 1, 4)))


def test_an_image_mode_it_does_not_handle_is_skipped_naming_the_mode(tmp_path, monkeypatch):
    paths = [write_image(tmp_path / f"{i}.png", size=size) for i, size in enumerate([(8, 8), (6, 6)])]
    opened = Image.open

    def open_6x6_as_float(fp, formats=None):
        image = opened(fp, formats=formats)
        return image.convert("F") if image.size == (6, 6) else image

    monkeypatch.setattr(image_decode.Image, "open", open_6x6_as_float)
    images, keep, reasons = image_decode.decode_images(paths, size=(8, 8))
    assert keep.tolist() == [True, False] and len(images) == 1
    assert reasons == [f"{paths[1]} has mode 'F', which cs_vit does not decode; convert it to "
                       "8-bit RGB or greyscale"]


def test_adding_and_removing_images_never_moves_an_image_between_splits(tmp_path):
    write_folder(tmp_path, per_class=40)
    train, test = load_image_folder(tmp_path)
    for i in range(40, 60):
        write_image(tmp_path / "dog" / f"{i:03d}.png", seed=100 + i)
    for i in range(0, 40, 3):
        os.remove(tmp_path / "cat" / f"{i:03d}.png")
    train_after, test_after = load_image_folder(tmp_path)
    assert not set(test.files) & set(train_after.files)
    assert not set(train.files) & set(test_after.files)
    assert set(test_after.files) - set(test.files) <= {f"dog/{i:03d}.png" for i in range(40, 60)}


def test_a_class_folder_whose_name_is_not_utf8_trains_and_plots(tmp_path):
    write_folder(tmp_path, classes=("dog",), per_class=8)
    folder = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    os.mkdir(folder)
    for i in range(8):
        write_image(tmp_path / os.fsdecode(os.path.join(folder, b"%d.png" % i)), seed=i)
    train, test = load_image_folder(tmp_path)
    assert train.class_names == ["caf\\xe9", "dog"]
    figure = viz.plot_confusion_matrix(test.labels, test.labels, test.class_names,
                                       save_path=tmp_path / "confusion.png")
    assert figure is not None and (tmp_path / "confusion.png").stat().st_size > 0
