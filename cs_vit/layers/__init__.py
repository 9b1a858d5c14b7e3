"""Every ViT building block, each with a hand-written forward and backward pass."""
from cs_vit.layers.base import GradientDict, Layer, no_grad
from cs_vit.layers.linear import Linear
from cs_vit.layers.activations import GELU, ReLU
from cs_vit.layers.dropout import Dropout
from cs_vit.layers.layernorm import LayerNorm
from cs_vit.layers.loss import softmax_cross_entropy
from cs_vit.layers.patch_embedding import PatchEmbedding, img_to_patch, patch_to_img
from cs_vit.layers.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    SinusoidalPositionalEncoding2D,
)
from cs_vit.layers.attention import MultiHeadAttention
from cs_vit.layers.mlp import MLP
from cs_vit.layers.transformer_block import TransformerEncoderBlock
