"""What the position embedding learned: the ViT paper's figure 7."""
from __future__ import annotations

import numpy
from matplotlib import colormaps

from cs_vit.backend import to_numpy
from cs_vit.viz._common import finish, grid_shape, new_figure, outline_tiles, tile


def position_similarity(pos_embed, grid_size, num_prefix_tokens=1):
    """Cosine similarity between the position embeddings of every pair of patches.

    Inputs: pos_embed (1, T, D) or (T, D), whose first ``num_prefix_tokens`` rows
    (the CLS token) are dropped, leaving gh * gw patch rows.
    Returns a NumPy array (gh, gw, gh, gw): entry [r, c] is the (gh, gw) map of
    the similarity of patch (r, c) with every patch.
    """
    gh, gw = grid_shape(grid_size)
    embed = to_numpy(pos_embed).astype(numpy.float64)
    if embed.ndim == 3 and embed.shape[0] == 1:
        embed = embed[0]
    if embed.ndim != 2 or embed.shape[0] != num_prefix_tokens + gh * gw:
        raise ValueError(
            f"pos_embed must have shape (1, T, D) or (T, D) with T = num_prefix_tokens + gh * gw "
            f"= {num_prefix_tokens} + {gh * gw}, got shape {to_numpy(pos_embed).shape}"
        )
    patches = embed[num_prefix_tokens:]
    unit = patches / numpy.maximum(numpy.linalg.norm(patches, axis=1, keepdims=True), 1e-12)
    return (unit @ unit.T).reshape(gh, gw, gh, gw)


def plot_position_similarity(pos_embed, grid_size, num_prefix_tokens=1, save_path=None):
    """A gh x gw grid of small maps: patch (r, c)'s position-embedding similarity to all patches.

    Learned position embeddings that encode the 2-D layout show a bright spot
    at each panel's own position, fading with distance, often with a row and
    column pattern. All panels share one colour scale, from the smallest
    similarity to 1, so the pattern stays visible when every similarity is high
    (as with sinusoidal encodings).

    Inputs:
    - pos_embed: (1, T, D) or (T, D), CLS (prefix) rows first
    - grid_size: the patch grid, an int or (gh, gw)
    - num_prefix_tokens: how many leading rows are not patches (1 for a CLS token)
    - save_path: if given, the figure is also written there as a PNG

    Returns the matplotlib Figure.
    """
    similarity = position_similarity(pos_embed, grid_size, num_prefix_tokens)
    gh, gw = similarity.shape[:2]
    gap = max(1, round(max(gh, gw) / 8))
    cmap = colormaps["viridis"].with_extremes(bad="white")
    panel = min(0.7, 8.0 / max(gh, gw))
    fig = new_figure((panel * gw + 1.8, panel * gh + 0.9))
    ax = fig.subplots()
    image = ax.imshow(tile(similarity, gap, fill=numpy.nan), cmap=cmap,
                      vmin=float(similarity.min()), vmax=1.0, interpolation="nearest")
    outline_tiles(ax, gh, gw, gh, gw, gap, color="black", linewidth=0.6)
    ax.set_xticks(numpy.arange(gw) * (gw + gap) + (gw - 1) / 2, labels=range(1, gw + 1))
    ax.set_yticks(numpy.arange(gh) * (gh + gap) + (gh - 1) / 2, labels=range(1, gh + 1))
    ax.tick_params(length=0, labelsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set(xlabel="input patch column", ylabel="input patch row",
           title="position embedding similarity")
    fig.colorbar(image, ax=ax, shrink=0.6, aspect=25, label="cosine similarity")
    return finish(fig, save_path)
