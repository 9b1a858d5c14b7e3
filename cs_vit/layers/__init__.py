"""Every ViT building block, each with a hand-written forward and backward pass."""
from cs_vit.layers.base import GradientDict, Layer
from cs_vit.layers.linear import Linear
