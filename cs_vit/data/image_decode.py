"""Decode many image files into one (N, 3, H, W) uint8 array, on a thread pool.

PIL releases the GIL while it decodes, so threads overlap the decoding of
different files; work goes out in chunks to keep the pool's overhead small.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
from PIL import Image
from tqdm import tqdm

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_FORMATS = ("JPEG", "PNG", "BMP")
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_CHUNK = 256


def decode_images(paths, size=None, desc="decoding"):
    """Decode ``paths`` as RGB -> (images (M, 3, H, W) uint8, keep (len(paths),) bool).

    ``keep`` is False for files PIL cannot read; ``images`` holds the others, in
    order. ``size`` (H, W) resizes every image; None requires one shared size.
    """
    if size is None:
        reference, (height, width) = _first_readable(paths)
    else:
        reference, (height, width) = None, size
    images = np.zeros((len(paths), 3, height, width), dtype=np.uint8)
    keep = np.ones(len(paths), dtype=bool)
    wrong_size = []

    def decode_chunk(start):
        stop = min(start + _CHUNK, len(paths))
        for i in range(start, stop):
            try:
                image = _decode(paths[i], size)
            except _UNREADABLE:
                keep[i] = False
                continue
            if image.shape[:2] == (height, width):
                images[i] = image.transpose(2, 0, 1)
            else:
                wrong_size.append((i, image.shape[:2]))
        return stop - start

    with ThreadPoolExecutor() as pool, tqdm(total=len(paths), desc=desc, unit="img") as bar:
        for chunk in as_completed([pool.submit(decode_chunk, start)
                                   for start in range(0, len(paths), _CHUNK)]):
            bar.update(chunk.result())
    if wrong_size:
        i, (h, w) = min(wrong_size)
        raise ValueError(
            f"images have different sizes: {reference} is {height}x{width} but {paths[i]} is "
            f"{h}x{w} ({len(wrong_size)} images differ); pass image_size=(H, W) (or an int) "
            "to resize them all to one size"
        )
    return (images if keep.all() else images[keep]), keep


def _first_readable(paths):
    """(path, (H, W)) of the first image whose header reads; its size sets everyone's."""
    for path in paths:
        try:
            with Image.open(path, formats=_FORMATS) as image:
                return path, (image.height, image.width)
        except _UNREADABLE:
            continue
    return None, (1, 1)  # nothing is readable: every file will be dropped


def _decode(path, size):
    with Image.open(path, formats=_FORMATS) as image:
        if image.mode != "RGB":
            image = image.convert("RGB")
        if size is not None:
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(image)
