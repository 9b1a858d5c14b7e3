"""Where the model looks: per-head attention maps and attention rollout."""
from __future__ import annotations

import math

import numpy
from matplotlib import colormaps
from matplotlib.colors import ListedColormap

from cs_vit.backend import to_numpy
from cs_vit.viz._common import display_images, finish, grid_shape, new_figure, show_image

HEAD_FUSIONS = {"mean": numpy.mean, "max": numpy.max, "min": numpy.min}
# Low attention fades to transparent, so the image shows where the model does not look.
_HEAT = colormaps["inferno"](numpy.linspace(0.0, 1.0, 256))
_HEAT[:, 3] = numpy.linspace(0.15, 0.85, 256)
ATTENTION_CMAP = ListedColormap(_HEAT, name="inferno_fading")


def _attention_layers(attn_weights_per_layer):
    """The per-layer attention weights as host arrays, each checked to be (N, num_heads, T, T)."""
    layers = [to_numpy(a) for a in attn_weights_per_layer]
    if not layers:
        raise ValueError("attn_weights_per_layer is empty; give one (N, num_heads, T, T) per layer")
    for i, attn in enumerate(layers):
        if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2] or attn.shape != layers[0].shape:
            raise ValueError(
                f"attention weights of layer {i} have shape {attn.shape}; every layer must "
                f"give (N, num_heads, T, T) with the shape of layer 0, {layers[0].shape}"
            )
    return layers


def _discard_smallest(weights, ratio):
    """Zero the smallest ``ratio`` fraction of each row of ``weights`` (..., T, T)."""
    k = int(weights.shape[-1] * ratio)
    if k == 0:
        return weights
    smallest = numpy.argpartition(weights, k - 1, axis=-1)[..., :k]
    kept = weights.copy()
    numpy.put_along_axis(kept, smallest, 0.0, axis=-1)
    return kept


def attention_rollout(attn_weights_per_layer, head_fusion="mean", discard_ratio=0.0):
    """Attention rollout (Abnar & Zuidema, 2020): attention traced through every layer.

    Each layer's heads are fused into one (N, T, T) matrix (mean, max or min
    over heads), optionally the smallest ``discard_ratio`` of each row's weights
    is set to zero (to filter noise), and the identity is added because the
    residual connection carries every token past the attention; the rows are
    renormalised, which for softmax rows gives 0.5 * attention + 0.5 * I.
    Rollout is the product A_L ... A_2 A_1, so row i says how much token i's
    final representation draws on each input token.

    Inputs:
    - attn_weights_per_layer: list of L arrays (N, num_heads, T, T), NumPy or backend
    - head_fusion: "mean", "max" or "min"
    - discard_ratio: fraction in [0, 1) of each row's smallest weights to drop

    Returns a NumPy array (N, T, T) whose rows sum to 1.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {list(HEAD_FUSIONS)}, got {head_fusion!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    layers = _attention_layers(attn_weights_per_layer)
    dtype = numpy.result_type(layers[0].dtype, numpy.float32)
    identity = numpy.eye(layers[0].shape[-1], dtype=dtype)
    rollout = identity
    for attn in layers:
        fused = _discard_smallest(HEAD_FUSIONS[head_fusion](attn, axis=1), discard_ratio)
        A = fused.astype(dtype) + identity
        A /= A.sum(axis=-1, keepdims=True)
        rollout = A @ rollout
    return rollout


def _patch_scores(attn, num_prefix_tokens, gh, gw):
    """One (T, T) attention matrix as a (gh, gw) map over the patches.

    With a CLS token (at position 0) it is the CLS row; without prefix tokens it
    is the mean attention each patch receives from all tokens.
    """
    scores = attn[0, num_prefix_tokens:] if num_prefix_tokens else attn.mean(axis=0)
    return scores.reshape(gh, gw)


def _faded_grey(picture):
    """An (H, W, C) image as light grey (H, W, 1), so the heat map's colours stay readable."""
    return 0.45 + 0.55 * picture.mean(axis=-1, keepdims=True)


def plot_attention_maps(image, attn_weights, grid_size, layer=-1, mean=None, std=None,
                        rollout=None, index=0, save_path=None):
    """The input, each head's attention in one layer, and the rollout, over the image.

    Inputs:
    - image: (C, H, W), C = 1 or 3; uint8, or floats (normalised ones are
      un-normalised with ``mean``/``std``, one value or one per channel)
    - attn_weights: list of L arrays (N, num_heads, T, T), the attention of the
      batch that holds ``image`` at position ``index``
    - grid_size: the patch grid, an int or (gh, gw); T = gh * gw plus any prefix
      tokens, the CLS token first
    - layer: which layer's heads to show (python indexing, -1 is the last)
    - rollout: (N, T, T) or (T, T) from attention_rollout; computed with the
      defaults when None
    - index: which image of the batch ``image`` is
    - save_path: if given, the figure is also written there as a PNG

    Each map is divided by its own maximum and drawn over a faded grey copy of
    the image, one block per patch (nearest upsampling). Returns the Figure.
    """
    picture = display_images(image, mean, std)[0]
    layers = _attention_layers(attn_weights)
    gh, gw = grid_shape(grid_size)
    T = layers[0].shape[-1]
    num_prefix_tokens = T - gh * gw
    if num_prefix_tokens < 0:
        raise ValueError(
            f"the attention has T = {T} tokens but grid_size {gh}x{gw} needs {gh * gw} patches; "
            f"pass the grid of the model that produced the attention (image size / patch size)"
        )
    if not -len(layers) <= layer < len(layers):
        raise ValueError(f"layer {layer} does not exist; the attention has {len(layers)} layers")
    rollout = to_numpy(attention_rollout(layers) if rollout is None else rollout)
    rollout = rollout[index] if rollout.ndim == 3 else rollout
    if rollout.shape != (T, T):
        raise ValueError(
            f"rollout must have shape (N, {T}, {T}) or ({T}, {T}) to match the attention, "
            f"got {rollout.shape}"
        )
    heads = layers[layer][index]
    maps = [_patch_scores(head, num_prefix_tokens, gh, gw) for head in heads]
    maps.append(_patch_scores(rollout, num_prefix_tokens, gh, gw))
    layer_number = range(len(layers))[layer] + 1
    titles = [f"head {h + 1}" for h in range(len(heads))] + [f"rollout, {len(layers)} layers"]

    num_panels = len(maps) + 1
    nrows = math.ceil(num_panels / 7)
    ncols = math.ceil(num_panels / nrows)
    fig = new_figure((2.3 * ncols + 0.9, 2.65 * nrows + 0.45))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    show_image(axes[0], picture)
    axes[0].set_title("input")
    H, W = picture.shape[:2]
    backdrop = _faded_grey(picture)
    for ax, scores, title in zip(axes[1:], maps, titles):
        show_image(ax, backdrop)
        overlay = ax.imshow(scores / max(float(scores.max()), 1e-12), cmap=ATTENTION_CMAP,
                            vmin=0.0, vmax=1.0, extent=(-0.5, W - 0.5, H - 0.5, -0.5),
                            interpolation="nearest")
        ax.set_title(title)
    for ax in axes[num_panels:]:
        ax.set_axis_off()
    fig.colorbar(overlay, ax=axes, shrink=0.8, aspect=25, pad=0.01, label="attention / map maximum")
    what = ("CLS token's attention to each patch" if num_prefix_tokens
            else "mean attention each patch receives (no CLS token)")
    fig.suptitle(f"{what}: heads of layer {layer_number} of {len(layers)}, and rollout")
    return finish(fig, save_path)
