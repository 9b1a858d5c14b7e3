"""What every plot shares: the figure class, saving, and turning arrays into pictures."""
from __future__ import annotations

import io
from pathlib import Path

import numpy
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cs_vit.backend import to_numpy

SAVE_DPI = 150


class VizFigure(Figure):
    """A plain matplotlib ``Figure`` that a notebook shows as a PNG.

    The figures are not created through pyplot, so they need no display, are
    not kept alive by pyplot's global list, and a notebook cell that ends with
    ``plot_history(h)`` shows the plot once, even before ``%matplotlib inline``.
    """

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def new_figure(figsize, layout="constrained"):
    """An empty figure of ``figsize`` inches."""
    return VizFigure(figsize=figsize, layout=layout)


def finish(fig, save_path):
    """Write ``fig`` to ``save_path`` as a PNG (if a path is given) and return it."""
    if save_path is not None:
        path = Path(save_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=SAVE_DPI, bbox_inches="tight")
    return fig


def grid_shape(grid_size):
    """``grid_size`` (an int or a pair) as the patch grid ``(gh, gw)``."""
    gh, gw = (grid_size, grid_size) if numpy.isscalar(grid_size) else tuple(grid_size)
    if int(gh) != gh or int(gw) != gw or gh < 1 or gw < 1:
        raise ValueError(
            f"grid_size must be a positive int or a pair (gh, gw) of them, got {grid_size!r}"
        )
    return int(gh), int(gw)


def display_images(images, mean=None, std=None):
    """Images (N, C, H, W) as floats in [0, 1] of shape (N, H, W, C), ready for imshow.

    One image (C, H, W) is treated as a batch of one. uint8 images are divided
    by 255. Float images are un-normalised with ``x * std + mean`` when
    ``mean``/``std`` (one value or one per channel) are given; float images that
    still fall outside [0, 1] (normalised images with no mean/std given) are
    min-max scaled image by image.
    """
    images = to_numpy(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have shape (N, C, H, W) or (C, H, W) with C = 1 (grey) or 3 (RGB), "
            f"got shape {images.shape}"
        )
    if images.dtype == numpy.uint8:
        return images.transpose(0, 2, 3, 1) / 255.0
    images = images.astype(numpy.float64)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std to un-normalise the images, or neither")
    if mean is not None:
        mean = _per_channel(mean, "mean", images.shape[1])
        std = _per_channel(std, "std", images.shape[1])
        images = numpy.clip(images * std + mean, 0.0, 1.0)
    elif images.min() < 0.0 or images.max() > 1.0:
        low = images.min(axis=(1, 2, 3), keepdims=True)
        high = images.max(axis=(1, 2, 3), keepdims=True)
        images = (images - low) / numpy.maximum(high - low, 1e-12)
    return images.transpose(0, 2, 3, 1)


def _per_channel(value, name, channels):
    """``value`` (one number or one per channel) shaped (C, 1, 1) for broadcasting."""
    value = numpy.asarray(value, dtype=numpy.float64).ravel()
    if value.size not in (1, channels):
        raise ValueError(
            f"{name} has {value.size} values but the images have {channels} channel(s); "
            f"give one value, or one per channel"
        )
    return numpy.broadcast_to(value, (channels,))[:, None, None]


def show_image(ax, image, **kwargs):
    """imshow an (H, W, C) image in [0, 1]: grey colormap for C = 1; no ticks."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, **kwargs)
    else:
        ax.imshow(image, **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])


def tile(blocks, gap, fill):
    """Lay a grid of equal blocks out as one array, with ``gap`` pixels of ``fill`` between them.

    Inputs: blocks (R, K, h, w, ...): R rows and K columns of (h, w, ...) blocks.
    Returns (R * (h + gap) - gap, K * (w + gap) - gap, ...).
    """
    R, K, h, w = blocks.shape[:4]
    rest = blocks.shape[4:]
    padding = [(0, 0), (0, 0), (0, gap), (0, gap)] + [(0, 0)] * len(rest)
    padded = numpy.pad(blocks, padding, constant_values=fill)
    laid_out = padded.swapaxes(1, 2).reshape(R * (h + gap), K * (w + gap), *rest)
    return laid_out[: laid_out.shape[0] - gap, : laid_out.shape[1] - gap]


def outline_tiles(ax, rows, cols, h, w, gap, color, linewidth):
    """A frame around each (h, w) block of an imshow'n :func:`tile` layout."""
    frames = [Rectangle((c * (w + gap) - 0.5, r * (h + gap) - 0.5), w, h)
              for r in range(rows) for c in range(cols)]
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor=color,
                                      linewidth=linewidth))
