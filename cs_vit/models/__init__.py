"""Models assembled from cs_vit.layers."""
from cs_vit.models.vit import ViTConfig, VisionTransformer

__all__ = ["ViTConfig", "VisionTransformer"]
