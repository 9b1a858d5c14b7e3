"""The Vision Transformer (Dosovitskiy et al., 2021) built from cs_vit layers.

images (N, C, H, W)
  -> patch_embed          (N, T, D)       T = (H/P) * (W/P)
  -> [cls_token ; x]      (N, 1 + T, D)   only for pool="cls"
  -> + position encoding
  -> depth x pre-LN TransformerEncoderBlock
  -> norm                 final LayerNorm
  -> pool                 CLS token, or the mean over tokens
  -> head                 (N, num_classes) logits
"""
from __future__ import annotations

import dataclasses
import json

from cs_vit import backend
from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.io import atomic_savez, load_npz
from cs_vit.layers import (
    LayerNorm, LearnedPositionalEmbedding, Linear, PatchEmbedding,
    SinusoidalPositionalEncoding, SinusoidalPositionalEncoding2D, TransformerEncoderBlock,
)
from cs_vit.layers.base import Layer, keeping
from cs_vit.layers.init import zeros

POOLS = ("cls", "mean")
POS_ENCODINGS = ("learned", "sincos1d", "sincos2d")
CONFIG_KEY = "__config__"
# torchvision and timm ViTs use eps=1e-6 in every LayerNorm; so do we, to convert exactly.
NORM_EPS = 1e-6


@dataclasses.dataclass
class ViTConfig:
    image_size: int = 32
    patch_size: int = 8
    in_channels: int = 3
    num_classes: int = 10
    embed_dim: int = 128
    depth: int = 6
    num_heads: int = 4
    mlp_dim: int = 256
    dropout: float = 0.0
    attention_dropout: float = 0.0
    pool: str = "cls"
    pos_encoding: str = "learned"

    def __post_init__(self):
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"pos_encoding must be one of {POS_ENCODINGS}, got {self.pos_encoding!r}")
        for name in ("image_size", "patch_size", "in_channels", "num_classes",
                     "embed_dim", "depth", "num_heads", "mlp_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a number in [0, 1) (the probability of "
                                 f"dropping), got {value!r}")


class VisionTransformer(Layer):
    """ViT classifier. Parameter names follow timm: patch_embed, cls_token, blocks, norm, head."""

    def __init__(self, image_size=32, patch_size=8, in_channels=3, num_classes=10,
                 embed_dim=128, depth=6, num_heads=4, mlp_dim=256, dropout=0.0,
                 attention_dropout=0.0, pool="cls", pos_encoding="learned"):
        super().__init__()
        config = ViTConfig(image_size, patch_size, in_channels, num_classes, embed_dim, depth,
                           num_heads, mlp_dim, dropout, attention_dropout, pool, pos_encoding)
        self.config = config
        self.patch_embed = PatchEmbedding(image_size, patch_size, in_channels, embed_dim)
        self.num_prefix_tokens = 1 if pool == "cls" else 0
        if pool == "cls":
            self.add_param("cls_token", zeros((1, 1, embed_dim)))
        self.pos_encoding = self._make_position_encoding(config)
        self.blocks = [
            TransformerEncoderBlock(embed_dim, num_heads, mlp_dim, dropout, attention_dropout,
                                    norm_eps=NORM_EPS)
            for _ in range(depth)
        ]
        self.norm = LayerNorm(embed_dim, eps=NORM_EPS)
        self.head = Linear(embed_dim, num_classes)
        self.num_tokens = None

    def _make_position_encoding(self, config):
        num_positions = self.num_prefix_tokens + self.patch_embed.num_patches
        if config.pos_encoding == "learned":
            return LearnedPositionalEmbedding(num_positions, config.embed_dim, config.dropout)
        if config.pos_encoding == "sincos1d":
            return SinusoidalPositionalEncoding(config.embed_dim, num_positions, config.dropout)
        return SinusoidalPositionalEncoding2D(config.embed_dim, self.patch_embed.grid_size,
                                              config.dropout, self.num_prefix_tokens)

    def forward(self, images):
        """images: (N, C, H, W) floats -> logits (N, num_classes)."""
        check_float_array(images, "images", "VisionTransformer", "normalise uint8 pixels "
                          "first, with cs_vit.data.normalize(images, mean, std)")
        # BEGIN SOLUTION task7
        # HINT: patch_embed; prepend cls_token (broadcast to the batch) if pooling by CLS;
        # HINT: pos_encoding; blocks; norm; pool (CLS row or token mean); head. Keep
        # HINT: self.num_tokens for backward
        x = self.patch_embed.forward(images)
        if self.num_prefix_tokens:
            cls = xp.broadcast_to(self.params["cls_token"], (x.shape[0], 1, x.shape[2]))
            x = xp.concatenate([cls, x], axis=1)
        x = self.pos_encoding.forward(x)
        self.num_tokens = x.shape[1]
        for block in self.blocks[:-1]:
            x = block.forward(x)
        # Only the CLS token of the last block reaches the head: compute just that row there.
        x = self.blocks[-1].forward(x, first_tokens=1 if self._cls_only_last_block() else None)
        if self.num_prefix_tokens:
            # LayerNorm acts on each token alone: normalising only the CLS token gives the same logits.
            pooled = self.norm.forward(x[:, 0])
        else:
            pooled = self.norm.forward(x).mean(axis=1)
        return self.head.forward(pooled)
        # END SOLUTION

    def backward(self, dlogits, input_grad=True):
        """dlogits: (N, num_classes) -> dimages (N, C, H, W); fills every parameter's grad.

        ``input_grad=False`` returns None instead of dimages, skipping a gradient
        that training never uses (as torch does for inputs that need no grad).
        """
        pooled = self.head.x  # (N, D)
        expected = None if pooled is None else (pooled.shape[0], self.config.num_classes)
        check_dout(dlogits, expected, "VisionTransformer")
        # BEGIN SOLUTION task7
        # HINT: the forward in reverse: head, norm and pooling, blocks (last first),
        # HINT: pos_encoding, the cls_token's grad, patch_embed
        dpooled = self.head.backward(dlogits)
        N, D = dpooled.shape
        if self.num_prefix_tokens:
            dcls = self.norm.backward(dpooled)
            if self.blocks[-1].first_tokens:  # the last block output the CLS row only
                dx = dcls[:, None, :]
            else:
                dx = xp.zeros((N, self.num_tokens, D), dtype=dpooled.dtype)
                dx[:, 0] = dcls
        else:
            dnormed = xp.broadcast_to(dpooled[:, None, :] / self.num_tokens, (N, self.num_tokens, D))
            dx = self.norm.backward(dnormed)
        for block in reversed(self.blocks):
            dx = block.backward(dx)
        dx = self.pos_encoding.backward(dx)
        if self.num_prefix_tokens:
            self.grads["cls_token"] = dx[:, :1].sum(axis=0, keepdims=True)
            dx = dx[:, 1:]
        return self.patch_embed.backward(dx, input_grad)
        # END SOLUTION

    def _cls_only_last_block(self):
        """Whether the last block computes the CLS token alone (``first_tokens=1``).

        With CLS pooling the head reads nothing else, so the logits and every gradient
        are the same either way. The full block runs only in eval mode outside
        ``no_grad()``, where ``attention_weights()`` is read for visualisation.
        """
        return self.num_prefix_tokens == 1 and (self.training or not keeping())

    def attention_weights(self):
        """The last forward pass's attention, one (N, num_heads, T, T) array per block.

        In training mode the last block attends from the CLS token only, so its
        array is (N, num_heads, 1, T); call ``model.eval()`` first for full maps.
        """
        return [block.attn.attn_weights for block in self.blocks]

    def state_dict(self):
        """{parameter name: NumPy array}, a copy independent of the model."""
        return {name: backend.to_numpy(value).copy() for name, value, _ in self.parameters()}

    def load_state_dict(self, state, source="checkpoint"):
        """Copy ``state`` into the parameters; every key and shape must match.

        ``source`` names the state in the error message (e.g. the file it came from).
        """
        own = {name: value for name, value, _ in self.parameters()}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong_shape = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                       for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
        if missing or unexpected or wrong_shape:
            raise ValueError(
                f"{source} does not fit this model (was it saved from another config?):"
                f"\n  missing keys: {missing}\n  unexpected keys: {unexpected}"
                f"\n  shape mismatches: {wrong_shape}"
            )
        for name, value in own.items():
            value[...] = backend.asarray(state[name], dtype=value.dtype)

    def save(self, path):
        """Write the config and parameters to ``path`` (.npz, atomically, no pickle)."""
        arrays = self.state_dict()
        arrays[CONFIG_KEY] = json.dumps(dataclasses.asdict(self.config))
        atomic_savez(path, arrays)

    def load(self, path):
        """Load parameters saved by :meth:`save` into this model."""
        state = load_npz(path)
        state.pop(CONFIG_KEY, None)
        self.load_state_dict(state, str(path))
        return self

    @classmethod
    def from_file(cls, path):
        """Build the model described by a saved file and load its parameters."""
        state = load_npz(path)
        if CONFIG_KEY not in state:
            raise ValueError(f"{path} has no model config; was it written by VisionTransformer.save?")
        try:
            model = cls(**json.loads(str(state.pop(CONFIG_KEY))))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path} holds a model config that this cs_vit cannot build ({err}); "
                             "was it written by another version of cs_vit?") from None
        model.load_state_dict(state, str(path))
        return model

    @classmethod
    def from_torchvision(cls, tv_model):
        """A cs_vit copy of a ``torchvision.models.VisionTransformer`` (weights included)."""
        from cs_vit.models.torchvision_convert import from_torchvision
        return from_torchvision(cls, tv_model)

    def to_torchvision(self):
        """A ``torchvision.models.VisionTransformer`` with this model's weights (pool="cls")."""
        from cs_vit.models.torchvision_convert import to_torchvision
        return to_torchvision(self)
