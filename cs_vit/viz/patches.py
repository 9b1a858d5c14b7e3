"""How a ViT sees an image: the grid of patches that become its tokens."""
from __future__ import annotations

import math

from cs_vit.layers.patch_embedding import img_to_patch
from cs_vit.viz._common import display_images, finish, new_figure, outline_tiles, show_image, tile


def patch_mosaic(image, patch_size, gap):
    """An (H, W, C) image cut into patches and laid out with ``gap`` white pixels between them.

    The patches are the ones the patch embedding cuts, by ``img_to_patch`` (task 1).

    Returns an array of shape (gh * (P + gap) - gap, gw * (P + gap) - gap, C).
    """
    H, W, C = image.shape
    P = patch_size
    patches = img_to_patch(image.transpose(2, 0, 1)[None], P, flatten_channels=False)[0]
    grid = patches.reshape(H // P, W // P, C, P, P).transpose(0, 1, 3, 4, 2)  # (gh, gw, P, P, C)
    return tile(grid, gap, fill=1.0)


def show_patches(images, patch_size, mean=None, std=None, max_images=4, save_path=None):
    """Show each image as its grid of ``patch_size`` x ``patch_size`` patches.

    Inputs:
    - images: (N, C, H, W), C = 1 or 3; uint8, or floats (normalised ones are
      un-normalised with ``mean``/``std``, one value or one per channel)
    - patch_size: P, which must divide H and W
    - max_images: how many of the N images to show (one panel each)
    - save_path: if given, the figure is also written there as a PNG

    Returns the matplotlib Figure.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    if int(patch_size) != patch_size or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    pictures = display_images(images, mean, std)[:max_images]
    _, H, W, _ = pictures.shape
    if H % patch_size or W % patch_size:
        raise ValueError(
            f"image size {H}x{W} is not divisible by patch_size {patch_size}; "
            f"use a patch size that divides both the height and the width"
        )
    gh, gw = H // patch_size, W // patch_size
    gap = max(1, patch_size // 4)
    nrows = math.ceil(len(pictures) / 4)
    ncols = math.ceil(len(pictures) / nrows)
    fig = new_figure((3.4 * ncols, 3.5 * nrows))
    fig.get_layout_engine().set(wspace=0.15, hspace=0.1)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= len(pictures):
            ax.set_axis_off()
            continue
        show_image(ax, patch_mosaic(pictures[i], patch_size, gap), interpolation="nearest")
        # A thin frame keeps white image content apart from the white gaps.
        outline_tiles(ax, gh, gw, patch_size, patch_size, gap, color="0.6", linewidth=0.5)
        ax.set_title(f"image {i}: {gh}x{gw} patches of {patch_size}x{patch_size}", fontsize=10)
        for spine in ax.spines.values():
            spine.set_visible(False)
    return finish(fig, save_path)
