"""Decode many image files into one (N, 3, H, W) uint8 array, on a thread pool.

PIL releases the GIL while it decodes, so threads overlap the decoding of
different files; work goes out in chunks to keep the pool's overhead small.

Every file is checked before its pixels are decoded: it must be a regular file
(a FIFO would block forever), its mode one this module handles by name, and its
size one that its bytes on disk can plausibly hold (:mod:`cs_vit.limits`), so a
small crafted PNG cannot claim gigabytes. The images being decoded at one time
share a budget of memory, whatever the number of threads.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager

import numpy as np
from PIL import Image
from tqdm import tqdm

from cs_vit.io import open_regular
from cs_vit.limits import FLOOR, check_inflation, check_memory

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_FORMATS = ("JPEG", "PNG", "BMP")
# PIL's modes, by name. 8-bit ones become RGB as torchvision's loader does (alpha is
# dropped); 16-bit greyscale (PNG; "I" in Pillow < 10) is scaled to 8 bits first.
_EIGHT_BIT = {"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "LA", "PA", "CMYK", "YCbCr"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_CHUNK = 256
# Decoded RGB bytes of the images being decoded at one time, over all threads; an image
# larger than this is decoded alone. Decoding takes about four times its RGB size at peak.
DECODE_BUDGET = 2 * FLOOR
_SMALLER = "pass image_size=(H, W) to resize them, or remove the largest files"


def decode_images(paths, size=None, desc="decoding"):
    """Decode ``paths`` as RGB -> (images (M, 3, H, W) uint8, keep (len(paths),) bool, reasons).

    ``keep`` is False for files that cannot be read, and ``reasons`` says why for
    each of them, in order; ``images`` holds the others, in order. ``size`` (H, W)
    resizes every image; None requires one shared size.
    """
    if size is None:
        reference, (height, width) = _first_readable(paths)
        stored = sum(_file_size(path) for path in paths)
        check_inflation(len(paths) * 3 * height * width, stored,
                        f"{len(paths):,} images of {height}x{width}", _SMALLER)
    else:
        reference, (height, width) = None, size
        check_memory(len(paths) * 3 * height * width,
                     f"{len(paths):,} images of {height}x{width}", "choose a smaller image_size")
    images = np.zeros((len(paths), 3, height, width), dtype=np.uint8)
    keep = np.ones(len(paths), dtype=bool)
    reasons, wrong_size = {}, []
    budget = _Budget(DECODE_BUDGET)

    def decode_chunk(start):
        stop = min(start + _CHUNK, len(paths))
        for i in range(start, stop):
            try:
                image = _decode(paths[i], size, budget)
            except _UNREADABLE as err:
                keep[i], reasons[i] = False, _reason(paths[i], err)
                continue
            if image.shape[:2] == (height, width):
                images[i] = image.transpose(2, 0, 1)
            else:
                wrong_size.append((i, image.shape[:2]))
        return stop - start

    _run_chunks(decode_chunk, len(paths), desc)
    if wrong_size:
        i, (h, w) = min(wrong_size)
        raise ValueError(
            f"images have different sizes: {reference} is {height}x{width} but {paths[i]} is "
            f"{h}x{w} ({len(wrong_size)} images differ); pass image_size=(H, W) (or an int) "
            "to resize them all to one size"
        )
    return (images if keep.all() else images[keep]), keep, [reasons[i] for i in sorted(reasons)]


def _run_chunks(decode_chunk, n, desc):
    """Run ``decode_chunk(start)`` for every chunk on a thread pool, with a progress bar.

    On an error or Ctrl-C the chunks not yet started are cancelled, so the
    caller does not wait for the whole folder to be decoded first.
    """
    pool = ThreadPoolExecutor()
    try:
        with tqdm(total=n, desc=desc, unit="img") as bar:
            for chunk in as_completed([pool.submit(decode_chunk, start)
                                       for start in range(0, n, _CHUNK)]):
                bar.update(chunk.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _file_size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _reason(path, err):
    text = str(err) or type(err).__name__
    return text if str(path) in text else f"{path}: {text}"


class _Budget:
    """Lets the decoding threads hold at most ``limit`` bytes at once (a larger request waits
    until it can run alone)."""

    def __init__(self, limit):
        self.limit, self.free = limit, limit
        self.changed = threading.Condition()

    @contextmanager
    def hold(self, nbytes):
        nbytes = min(nbytes, self.limit)
        with self.changed:
            self.changed.wait_for(lambda: self.free >= nbytes)
            self.free -= nbytes
        try:
            yield
        finally:
            with self.changed:
                self.free += nbytes
                self.changed.notify_all()


def _first_readable(paths):
    """(path, (H, W)) of the first image whose header passes; its size sets everyone's."""
    for path in paths:
        try:
            with open_regular(path) as f, _open_image(f, path) as image:
                return path, (image.height, image.width)
        except _UNREADABLE:
            continue
    return None, (1, 1)  # nothing is readable: every file will be dropped


def _open_image(f, path):
    """The PIL image in the open file ``f``, its header checked; no pixel decoded yet."""
    image = Image.open(f, formats=_FORMATS)
    try:
        if image.mode not in _EIGHT_BIT | _SIXTEEN_BIT:
            raise ValueError(f"{path} has mode {image.mode!r}, which cs_vit does not decode; "
                             "convert it to 8-bit RGB or greyscale")
        check_inflation(3 * image.width * image.height, os.fstat(f.fileno()).st_size,
                        f"{path} is {image.width}x{image.height} pixels", "shrink it or remove it")
    except ValueError:
        image.close()
        raise
    return image


def _decode(path, size, budget):
    with open_regular(path) as f, _open_image(f, path) as image:
        with budget.hold(3 * image.width * image.height):
            rgb = _to_rgb(image)
            if size is not None:
                rgb = rgb.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(rgb)


def _to_rgb(image):
    """An 8-bit RGB copy of ``image`` (16-bit greyscale scaled, rounding, to 0..255)."""
    if image.mode in _SIXTEEN_BIT:
        grey = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        image = Image.fromarray(((grey * 255 + 32767) // 65535).astype(np.uint8), "L")
    return image if image.mode == "RGB" else image.convert("RGB")
