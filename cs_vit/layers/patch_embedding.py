"""Patch embedding: cut an image into P x P patches and project each one to D dims.

``img_to_patch`` flattens every patch in the element order of a Conv2d weight
(C, P, P), so ``PatchEmbedding`` (patchify + ``Linear``) computes exactly what
``Conv2d(C, D, kernel_size=P, stride=P)`` computes, one token per patch.
"""
from __future__ import annotations

from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import Layer
from cs_vit.layers.linear import Linear


def as_pair(value, name):
    """An int ``s`` -> (s, s); a pair (a, b) -> (a, b); anything else -> TypeError."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise TypeError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")


def _grid_shape(height, width, patch_size):
    """(H, W), P -> (H/P, W/P), after checking that the patches tile the image exactly."""
    for side, size in (("height", height), ("width", width)):
        if size % patch_size != 0:
            raise ValueError(
                f"image {side} {size} is not divisible by patch_size {patch_size}; use an image "
                "size that is a multiple of the patch size or pad the images"
            )
    return height // patch_size, width // patch_size


def _image_shape(x):
    """The (N, C, H, W) shape of ``x``, or a ValueError if it is not a batch of images."""
    if x.ndim != 4:
        raise ValueError(
            f"expected a batch of images of shape (N, C, H, W), got an array of shape {x.shape}"
        )
    return x.shape


def img_to_patch(x, patch_size, flatten_channels=True):
    """Split images into non-overlapping patches, in reading order.

    x: (N, C, H, W) -> patches: (N, T, C*P*P), or (N, T, C, P, P) with
    ``flatten_channels=False``, where T = (H/P) * (W/P).
    """
    N, C, H, W = _image_shape(x)
    P = patch_size
    gh, gw = _grid_shape(H, W, P)
    # BEGIN SOLUTION task1
    # HINT: one reshape and one transpose give (N, gh, gw, C, P, P); merge gh and gw into T
    # HINT: to get patches (N, T, C, P, P)
    patches = x.reshape(N, C, gh, P, gw, P).transpose(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(N, gh * gw, C, P, P)
    # END SOLUTION
    return patches.reshape(N, gh * gw, C * P * P) if flatten_channels else patches


def patch_to_img(patches, patch_size, image_size):
    """Inverse of ``img_to_patch`` (and its backward, as it only moves elements).

    patches: (N, T, C*P*P) or (N, T, C, P, P); image_size: int or (H, W)
    -> x: (N, C, H, W).
    """
    P = patch_size
    H, W = as_pair(image_size, "image_size")
    gh, gw = _grid_shape(H, W, P)
    if patches.ndim == 3 and patches.shape[2] % (P * P) == 0:
        N, T, C = patches.shape[0], patches.shape[1], patches.shape[2] // (P * P)
    elif patches.ndim == 5 and patches.shape[3:] == (P, P):
        N, T, C = patches.shape[:3]
    else:
        raise ValueError(
            f"patches must have shape (N, T, C*P*P) or (N, T, C, P, P) with P = patch_size "
            f"{P}, got {patches.shape}"
        )
    if T != gh * gw:
        raise ValueError(
            f"a {H}x{W} image has {gh * gw} patches of size {P}, but got T={T} patches"
        )
    # BEGIN SOLUTION task1
    # HINT: undo img_to_patch: bring the patches back to x of shape (N, C, gh, P, gw, P)
    x = patches.reshape(N, gh, gw, C, P, P).transpose(0, 3, 1, 4, 2, 5)
    # END SOLUTION
    return x.reshape(N, C, H, W)


class PatchEmbedding(Layer):
    """Images -> one D-dimensional token per P x P patch (a Conv2d with stride P).

    Sub-layer ``proj``: ``Linear(C*P*P, D)``, whose weight is a Conv2d weight
    (D, C, P, P) flattened; Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init is
    torch's Conv2d default. Attributes: ``grid_size`` (H/P, W/P), ``num_patches``.
    """

    def __init__(self, image_size, patch_size, in_channels, embed_dim):
        super().__init__()
        self.image_size = as_pair(image_size, "image_size")
        self.patch_size, self.in_channels, self.embed_dim = patch_size, in_channels, embed_dim
        self.grid_size = _grid_shape(*self.image_size, patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = Linear(in_channels * patch_size * patch_size, embed_dim)

    def forward(self, x):
        """x: (N, C, H, W) -> tokens: (N, T, D), T = num_patches in reading order."""
        check_float_array(x, "x", "PatchEmbedding")
        _, C, H, W = _image_shape(x)
        if C != self.in_channels:
            raise ValueError(
                f"PatchEmbedding expected images with {self.in_channels} channels "
                f"(in_channels), got {C} channels in an input of shape {x.shape}"
            )
        if (H, W) != self.image_size:
            raise ValueError(
                f"PatchEmbedding expected {self.image_size[0]}x{self.image_size[1]} images "
                f"(image_size), got {H}x{W}; resize the images or build the layer for that size"
            )
        return self.proj.forward(img_to_patch(x, self.patch_size))

    def backward(self, dout, input_grad=True):
        """dout: (N, T, D) -> dx: (N, C, H, W); fills proj's grads.

        ``input_grad=False`` returns None without computing dx (training needs
        only the parameters' gradients, not the images').
        """
        patches = self.proj.x  # (N, T, C*P*P)
        expected = None if patches is None else (*patches.shape[:-1], self.embed_dim)
        check_dout(dout, expected, "PatchEmbedding")
        dpatches = self.proj.backward(dout, input_grad)
        return patch_to_img(dpatches, self.patch_size, self.image_size) if input_grad else None
