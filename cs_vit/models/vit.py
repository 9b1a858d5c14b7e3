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
from cs_vit.layers.base import Layer
from cs_vit.layers.init import zeros
from cs_vit.tiers import replaceable

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


# torchvision's VisionTransformer names two of the fields differently.
TORCHVISION_NAMES = {"num_layers": "depth", "hidden_dim": "embed_dim"}


def config_from_arguments(arguments, torchvision_names):
    """A ViTConfig from ``VisionTransformer``'s arguments, torchvision's names mapped to ours."""
    fields = {f.name: arguments[f.name] for f in dataclasses.fields(ViTConfig)}
    for name, value in torchvision_names.items():
        if name not in TORCHVISION_NAMES:
            raise TypeError(f"VisionTransformer got an unexpected argument {name!r}; its "
                            f"arguments are {sorted(fields)} (or torchvision's "
                            f"{sorted(TORCHVISION_NAMES)})")
        ours = TORCHVISION_NAMES[name]
        if fields[ours] != getattr(DEFAULT_CONFIG, ours) and fields[ours] != value:
            raise ValueError(f"{name}={value} and {ours}={fields[ours]} name the same setting; "
                             f"give one of them")
        fields[ours] = value
    return ViTConfig(**fields)


DEFAULT_CONFIG = ViTConfig()


class VisionTransformer(Layer):
    """ViT classifier. Parameter names follow timm: patch_embed, cls_token, blocks, norm, head.

    The arguments are the fields of :class:`ViTConfig`; torchvision's names
    ``num_layers`` (for ``depth``) and ``hidden_dim`` (for ``embed_dim``) work too.
    ``VisionTransformer.from_config(config)`` builds one from a ViTConfig.
    """

    def __init__(self, image_size=32, patch_size=8, in_channels=3, num_classes=10,
                 embed_dim=128, depth=6, num_heads=4, mlp_dim=256, dropout=0.0,
                 attention_dropout=0.0, pool="cls", pos_encoding="learned", **torchvision_names):
        super().__init__()
        config = config_from_arguments(locals(), torchvision_names)
        self.config = config
        self.patch_embed = PatchEmbedding(config.image_size, config.patch_size,
                                          config.in_channels, config.embed_dim)
        self.num_prefix_tokens = 1 if config.pool == "cls" else 0
        if self.num_prefix_tokens:
            self.add_param("cls_token", zeros((1, 1, config.embed_dim)))
        self.pos_encoding = self._make_position_encoding(config)
        self.blocks = [
            TransformerEncoderBlock(config.embed_dim, config.num_heads, config.mlp_dim,
                                    config.dropout, config.attention_dropout, norm_eps=NORM_EPS)
            for _ in range(config.depth)
        ]
        self.norm = LayerNorm(config.embed_dim, eps=NORM_EPS)
        self.head = Linear(config.embed_dim, config.num_classes)
        self.num_tokens = None

    @classmethod
    def from_config(cls, config):
        """The model a :class:`ViTConfig` describes, freshly initialised."""
        return cls(**dataclasses.asdict(config))

    def _make_position_encoding(self, config):
        num_positions = self.num_prefix_tokens + self.patch_embed.num_patches
        if config.pos_encoding == "learned":
            return LearnedPositionalEmbedding(num_positions, config.embed_dim, config.dropout)
        if config.pos_encoding == "sincos1d":
            return SinusoidalPositionalEncoding(config.embed_dim, num_positions, config.dropout)
        return SinusoidalPositionalEncoding2D(config.embed_dim, self.patch_embed.grid_size,
                                              config.dropout, self.num_prefix_tokens)

    @replaceable
    def forward(self, images):
        """images: (N, C, H, W) floats -> logits (N, num_classes)."""
        check_float_array(images, "images", "VisionTransformer", "normalise uint8 pixels "
                          "first, with cs_vit.data.normalize(images, mean, std)")
        logits = None
        # BEGIN SOLUTION task7
        # HINT: patch_embed: tokens (N, T, D); with pool "cls" (self.num_prefix_tokens == 1)
        # HINT: put cls_token (1, 1, D), repeated for each image, in front: (N, 1 + T, D);
        # HINT: then pos_encoding, every block in order, norm; pool: the CLS token's row, or
        # HINT: the mean over the tokens, (N, D); head: logits (N, num_classes). Keep
        # HINT: self.num_tokens (the token count after the CLS token) for backward
        x = self.patch_embed(images)
        if self.num_prefix_tokens:
            cls = xp.broadcast_to(self.params["cls_token"], (x.shape[0], 1, x.shape[2]))
            x = xp.concatenate([cls, x], axis=1)
        x = self.pos_encoding(x)
        self.num_tokens = x.shape[1]
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        pooled = x[:, 0] if self.num_prefix_tokens else x.mean(axis=1)
        logits = self.head(pooled)
        # END SOLUTION
        return logits

    @replaceable
    def backward(self, dlogits, input_grad=True):
        """dlogits: (N, num_classes) -> dimages (N, C, H, W); fills every parameter's grad.

        ``input_grad=False`` returns None instead of dimages, skipping a gradient
        that training never uses (as torch does for inputs that need no grad).
        """
        pooled = self.head.x  # (N, D)
        expected = None if pooled is None else (pooled.shape[0], self.config.num_classes)
        check_dout(dlogits, expected, "VisionTransformer")
        dimages = None
        # BEGIN SOLUTION task7
        # HINT: forward in reverse: head; the pooling (only the CLS row, or every token
        # HINT: equally, got a share of dpooled): dnormed (N, self.num_tokens, D); norm;
        # HINT: the blocks, last first; pos_encoding; grads["cls_token"] (1, 1, D) collects
        # HINT: its gradient from every image; patch_embed.backward(dtokens, input_grad)
        dpooled = self.head.backward(dlogits)
        N, D = dpooled.shape
        if self.num_prefix_tokens:
            dnormed = xp.zeros((N, self.num_tokens, D), dtype=dpooled.dtype)
            dnormed[:, 0] = dpooled
        else:
            dnormed = xp.broadcast_to(dpooled[:, None, :] / self.num_tokens, (N, self.num_tokens, D))
        dx = self.norm.backward(dnormed)
        for block in reversed(self.blocks):
            dx = block.backward(dx)
        dx = self.pos_encoding.backward(dx)
        if self.num_prefix_tokens:
            self.grads["cls_token"] = dx[:, :1].sum(axis=0, keepdims=True)
            dx = dx[:, 1:]
        dimages = self.patch_embed.backward(dx, input_grad)
        # END SOLUTION
        return dimages

    def attention_weights(self):
        """The last forward pass's attention, one (N, num_heads, T, T) array per block.

        With the fast tier on, the last block of a training pass (or of a pass inside
        ``no_grad()``) attends from the CLS token only, so its array is
        (N, num_heads, 1, T); run ``model.eval()`` outside ``no_grad()`` for full maps.
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
    def from_torchvision(cls, tv_model, dtype=None):
        """A cs_vit copy of a ``torchvision.models.VisionTransformer`` (weights included).

        ``dtype`` ("float32" or "float64") defaults to the torchvision model's own.
        """
        from cs_vit.models.torchvision_convert import from_torchvision
        return from_torchvision(cls, tv_model, dtype)

    def to_torchvision(self):
        """A ``torchvision.models.VisionTransformer`` with this model's weights (pool="cls")."""
        from cs_vit.models.torchvision_convert import to_torchvision
        return to_torchvision(self)
