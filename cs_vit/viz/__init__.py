"""Plots for a ViT course: patches, training curves, confusion, attention, positions.

Every function returns a matplotlib Figure built without pyplot (so no display
is needed and nothing is left open), and writes a PNG when given ``save_path``.
Inputs may be NumPy or backend (CuPy) arrays; plotting runs on the host.
"""
from cs_vit.viz.attention import attention_rollout, plot_attention_maps
from cs_vit.viz.confusion import confusion_matrix, plot_confusion_matrix
from cs_vit.viz.history import plot_history
from cs_vit.viz.patches import show_patches
from cs_vit.viz.position import plot_position_similarity, position_similarity

__all__ = [
    "attention_rollout",
    "confusion_matrix",
    "plot_attention_maps",
    "plot_confusion_matrix",
    "plot_history",
    "plot_position_similarity",
    "position_similarity",
    "show_patches",
]
