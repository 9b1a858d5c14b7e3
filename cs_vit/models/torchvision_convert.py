"""Weight conversion between cs_vit's VisionTransformer and torchvision's.

torchvision keeps q, k and v in one ``in_proj_weight`` (3D, D) and the patch
projection as a Conv2d weight (D, C, P, P); cs_vit keeps separate q/k/v Linear
layers and a Linear on flattened patches (D, C*P*P). Everything else is a rename.
"""
from __future__ import annotations

import numpy

from cs_vit import backend


def _block_names(i):
    """(cs_vit name, torchvision name) pairs for encoder block ``i`` (q/k/v excluded)."""
    ours, theirs = f"blocks.{i}.", f"encoder.layers.encoder_layer_{i}."
    pairs = {"norm1": "ln_1", "norm2": "ln_2", "attn.out_proj": "self_attention.out_proj",
             "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3"}
    return [(ours + a + p, theirs + b + p) for a, b in pairs.items() for p in (".weight", ".bias")]


def _renamed_pairs(depth):
    """Every parameter whose value is the same array in both models, up to a rename."""
    pairs = [("patch_embed.proj.bias", "conv_proj.bias"), ("cls_token", "class_token"),
             ("pos_encoding.pos_embed", "encoder.pos_embedding"),
             ("norm.weight", "encoder.ln.weight"), ("norm.bias", "encoder.ln.bias"),
             ("head.weight", "heads.head.weight"), ("head.bias", "heads.head.bias")]
    for i in range(depth):
        pairs += _block_names(i)
    return pairs


def to_torch_state_dict(state, config):
    """cs_vit state dict (NumPy arrays) -> torchvision state dict (NumPy arrays)."""
    out = {theirs: state[ours] for ours, theirs in _renamed_pairs(config.depth)}
    P, C = config.patch_size, config.in_channels
    out["conv_proj.weight"] = state["patch_embed.proj.weight"].reshape(-1, C, P, P)
    for i in range(config.depth):
        attn, tv = f"blocks.{i}.attn.", f"encoder.layers.encoder_layer_{i}.self_attention."
        for kind in ("weight", "bias"):
            out[tv + f"in_proj_{kind}"] = numpy.concatenate(
                [state[attn + f"{p}_proj.{kind}"] for p in "qkv"])
    return out


def from_torch_state_dict(tv_state, depth):
    """torchvision state dict (NumPy arrays) -> cs_vit state dict (NumPy arrays)."""
    out = {ours: tv_state[theirs] for ours, theirs in _renamed_pairs(depth)}
    conv = tv_state["conv_proj.weight"]
    out["patch_embed.proj.weight"] = conv.reshape(conv.shape[0], -1)
    for i in range(depth):
        attn, tv = f"blocks.{i}.attn.", f"encoder.layers.encoder_layer_{i}.self_attention."
        for kind in ("weight", "bias"):
            q, k, v = numpy.split(tv_state[tv + f"in_proj_{kind}"], 3)
            out.update({attn + f"q_proj.{kind}": q, attn + f"k_proj.{kind}": k,
                        attn + f"v_proj.{kind}": v})
    return out


def _torchvision_config(tv_model):
    """cs_vit constructor arguments describing a torchvision VisionTransformer."""
    layers = tv_model.encoder.layers
    first = layers[0]
    if tv_model.representation_size is not None:
        raise ValueError("torchvision ViTs with a representation (pre-logits) layer are not supported")
    return dict(
        image_size=tv_model.image_size, patch_size=tv_model.patch_size,
        in_channels=tv_model.conv_proj.in_channels, num_classes=tv_model.num_classes,
        embed_dim=tv_model.hidden_dim, depth=len(layers),
        num_heads=first.self_attention.num_heads, mlp_dim=tv_model.mlp_dim,
        dropout=tv_model.dropout, attention_dropout=tv_model.attention_dropout,
        pool="cls", pos_encoding="learned",
    )


def from_torchvision(model_class, tv_model, dtype=None):
    """Build a cs_vit VisionTransformer holding ``tv_model``'s weights, in ``dtype``.

    ``dtype`` None keeps ``tv_model``'s own (float32 or float64), whatever the backend's
    default dtype: a float64 model converted for a parity check stays float64.
    """
    config = _torchvision_config(tv_model)
    tv_state = {k: v.detach().cpu().numpy() for k, v in tv_model.state_dict().items()}
    with backend.precision(tv_state["class_token"].dtype if dtype is None else dtype):
        model = model_class(**config)
    model.load_state_dict(from_torch_state_dict(tv_state, config["depth"]))
    return model


def to_torchvision(model):
    """A torchvision VisionTransformer (in the model's dtype) holding ``model``'s weights.

    torchvision learns its positions. A model with fixed sin-cos positions gets
    them as torchvision's ``pos_embedding``, frozen (``requires_grad=False``): the
    same function, and the same training once the optimizer skips frozen tensors.
    """
    import torch
    from torchvision.models import VisionTransformer as TorchvisionViT

    config = model.config
    if config.pool != "cls":
        raise ValueError(
            "torchvision's VisionTransformer pools its CLS token; "
            f"this model has pool={config.pool!r}"
        )
    tv_model = TorchvisionViT(
        image_size=config.image_size, patch_size=config.patch_size, num_layers=config.depth,
        num_heads=config.num_heads, hidden_dim=config.embed_dim, mlp_dim=config.mlp_dim,
        dropout=config.dropout, attention_dropout=config.attention_dropout,
        num_classes=config.num_classes,
    )
    if config.in_channels != 3:
        tv_model.conv_proj = torch.nn.Conv2d(config.in_channels, config.embed_dim,
                                             config.patch_size, config.patch_size)
    state = model.state_dict()
    fixed_positions = config.pos_encoding != "learned"
    if fixed_positions:
        num_tokens = model.num_prefix_tokens + model.patch_embed.num_patches
        table = backend.to_numpy(model.pos_encoding.table[:num_tokens])
        state["pos_encoding.pos_embed"] = table[None].astype(state["cls_token"].dtype)
    state = to_torch_state_dict(state, config)
    dtype = torch.float64 if state["class_token"].dtype == numpy.float64 else torch.float32
    tv_model = tv_model.to(dtype)
    tv_model.load_state_dict({k: torch.from_numpy(numpy.ascontiguousarray(v)) for k, v in state.items()})
    tv_model.encoder.pos_embedding.requires_grad_(not fixed_positions)
    return tv_model
