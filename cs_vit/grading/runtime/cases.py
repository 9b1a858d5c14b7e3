# cs-vit: instructor-only (part of the grading runtime)
"""The graded cases: for each task, the inputs drawn at build time and the code that runs them.

A case is a dict: ``task``, ``name`` (what the student reads), ``kind`` and
``params``. ``inputs_<kind>(rng, **params)`` draws the case's input arrays at
build time; ``run_<kind>(arrays, swap, **params)`` runs the code under test and
returns its outputs by name. The same ``run_`` function computes the expected
values from the solution (at build time, where ``swap`` records) and the
student's values (in the sandbox, where ``swap`` replays), so both sides call
the layers in the same way. Only the public API of each task is used, and a
layer of another task is always replayed (see :mod:`.replay`).

Hidden tests are modules of the same form: a ``CASES`` list, using these kinds or
their own ``inputs_``/``run_`` functions.
"""
import numpy as np


def case(task, name, kind, **params):
    return {"task": task, "name": name, "kind": kind, "params": params}


# Sizes are small (the cases run in float64 and record Jacobians) and differ from each
# other where a mix-up of axes would otherwise go unnoticed.
CASES = [
    case("task1", "img_to_patch: 2 RGB images of 8x8, patches of 4 (both layouts)",
         "img_to_patch", shape=(2, 3, 8, 8), patch_size=4),
    case("task1", "img_to_patch: 3 two-channel images of 6x9, patches of 3 (both layouts)",
         "img_to_patch", shape=(3, 2, 6, 9), patch_size=3),
    case("task1", "patch_to_img: back to 2 RGB images of 8x12, patches of 4 (both layouts)",
         "patch_to_img", shape=(2, 3, 8, 12), patch_size=4),
    case("task1", "patch_to_img: back to 1 grey image of 6x4, patches of 2 (both layouts)",
         "patch_to_img", shape=(1, 1, 6, 4), patch_size=2),
    case("task2", "sincos_1d: 9 positions, not in order, dim 16", "sincos_1d", count=9, dim=16),
    case("task2", "sincos_1d: 6 positions, odd dim 7", "sincos_1d", count=6, dim=7),
    case("task2", "SinusoidalPositionalEncoding2D.forward: a 2x3 grid after a CLS token, "
         "embed_dim 16", "sincos_2d", batch=2, embed_dim=16, grid_size=(2, 3), prefix=1),
    case("task2", "LearnedPositionalEmbedding forward and backward, x (3, 4, 6)",
         "learned_positions", shape=(3, 4, 6), dropout=0.0),
    case("task2", "LearnedPositionalEmbedding forward and backward, x (2, 5, 6), dropout 0.25",
         "learned_positions", shape=(2, 5, 6), dropout=0.25),
    case("task3", "LayerNorm forward and backward, x (2, 3, 8), eps 1e-5", "layernorm",
         shape=(2, 3, 8), eps=1e-5, shift=1.0),
    case("task3", "LayerNorm forward and backward, x (4, 6), eps 0.5", "layernorm",
         shape=(4, 6), eps=0.5, shift=0.0),
    case("task3", "LayerNorm forward and backward, x (2, 2, 3, 5) around 50, eps 1e-6",
         "layernorm", shape=(2, 2, 3, 5), eps=1e-6, shift=50.0),
    case("task4", "GELU (exact) forward and backward, x (3, 7)", "gelu", shape=(3, 7),
         approximate="none", training=True),
    case("task4", "GELU (tanh approximation) forward and backward, x (3, 7)", "gelu",
         shape=(3, 7), approximate="tanh", training=True),
    case("task4", "GELU (exact) forward and backward in eval mode, x (4, 5)", "gelu",
         shape=(4, 5), approximate="none", training=False),
    case("task4", "MLP 6 -> 10 -> 6 forward and backward, x (2, 3, 6)", "mlp",
         shape=(2, 3, 6), hidden=10, dropout=0.0),
    case("task4", "MLP 6 -> 10 -> 6 forward and backward, x (2, 3, 6), dropout 0.3", "mlp",
         shape=(2, 3, 6), hidden=10, dropout=0.3),
    case("task5", "self-attention forward and backward, x (2, 5, 12), 3 heads", "attention",
         batch=2, queries=5, keys=0, embed_dim=12, num_heads=3, mask="", dropout=0.0,
         score_scale=1.0),
    case("task5", "self-attention with a causal (T, T) boolean mask", "attention",
         batch=2, queries=5, keys=0, embed_dim=12, num_heads=3, mask="causal", dropout=0.0,
         score_scale=1.0),
    case("task5", "cross-attention: 4 queries, 5 keys and values, an (N, S, T) 0/1 mask, "
         "attention dropout 0.3", "attention", batch=2, queries=4, keys=5, embed_dim=12,
         num_heads=3, mask="random", dropout=0.3, score_scale=1.0),
    case("task5", "self-attention with scores in the thousands (the softmax must not overflow)",
         "attention", batch=2, queries=5, keys=0, embed_dim=12, num_heads=3, mask="",
         dropout=0.0, score_scale=40.0),
    case("task6", "softmax_cross_entropy: 5 examples, 4 classes", "loss", batch=5, classes=4,
         label_smoothing=0.0, scale=2.0),
    case("task6", "softmax_cross_entropy with label_smoothing 0.2", "loss", batch=6, classes=3,
         label_smoothing=0.2, scale=2.0),
    case("task6", "softmax_cross_entropy with logits in the thousands (exp must not overflow)",
         "loss", batch=4, classes=5, label_smoothing=0.1, scale=1000.0),
    case("task7", "TransformerEncoderBlock forward and backward, x (2, 5, 8), dropout 0.25 "
         "after attention", "block", shape=(2, 5, 8), num_heads=2, mlp_dim=12, dropout=0.25,
         causal=False),
    case("task7", "TransformerEncoderBlock forward and backward with a causal attn_mask",
         "block", shape=(2, 5, 8), num_heads=2, mlp_dim=12, dropout=0.0, causal=True),
    case("task7", "VisionTransformer forward and backward, CLS pooling", "vit", pool="cls"),
    case("task7", "VisionTransformer forward and backward, mean pooling", "vit", pool="mean"),
]
# The ViT of the task 7 cases: 2 images of 2x8x8 -> 4 patches (+ CLS) of 8 features.
VIT = dict(image_size=8, patch_size=4, in_channels=2, num_classes=3, embed_dim=8, depth=2,
           num_heads=2, mlp_dim=12, pos_encoding="learned")
VIT_BATCH = 2


def case_function(module, prefix, kind):
    """``<prefix>_<kind>`` (``inputs_`` or ``run_``) from a hidden-test module, else from here."""
    function = getattr(module, f"{prefix}_{kind}", None) or globals().get(f"{prefix}_{kind}")
    if function is None:
        raise ValueError(f"no function {prefix}_{kind} for cases of kind {kind!r}")
    return function


def _normal(rng, shape, scale=1.0, shift=0.0):
    return shift + scale * rng.standard_normal(shape)


def _dropout_mask(rng, shape, p):
    """An inverted-dropout mask: 0 where dropped, 1 / (1 - p) where kept."""
    return (rng.random(shape) >= p) / (1.0 - p)


def _grads(layer, skip=()):
    """{"grad.<name>": gradient} of ``layer``'s parameters, except those under ``skip``."""
    return {"grad." + name: grad for name, _, grad in layer.parameters()
            if not name.startswith(tuple(skip))}


def inputs_img_to_patch(rng, shape, patch_size):
    return {"x": _normal(rng, shape)}


def run_img_to_patch(arrays, swap, shape, patch_size):
    from cs_vit.layers.patch_embedding import img_to_patch
    x = arrays["x"]
    return {"patches": img_to_patch(x, patch_size),
            "patches_5d": img_to_patch(x, patch_size, flatten_channels=False)}


def inputs_patch_to_img(rng, shape, patch_size):
    N, C, H, W = shape
    return {"patches": _normal(rng, (N, (H // patch_size) * (W // patch_size),
                                     C * patch_size * patch_size))}


def run_patch_to_img(arrays, swap, shape, patch_size):
    from cs_vit.layers.patch_embedding import patch_to_img
    N, C, H, W = shape
    patches = arrays["patches"]
    patches_5d = patches.reshape(N, patches.shape[1], C, patch_size, patch_size)
    return {"image": patch_to_img(patches, patch_size, (H, W)),
            "image_from_5d": patch_to_img(patches_5d, patch_size, (H, W))}


def inputs_sincos_1d(rng, count, dim):
    return {"positions": rng.permutation(4 * count)[:count].astype(float)}


def run_sincos_1d(arrays, swap, count, dim):
    from cs_vit.layers.positional import sincos_1d
    return {"table": sincos_1d(arrays["positions"], dim)}


def inputs_sincos_2d(rng, batch, embed_dim, grid_size, prefix):
    return {"x": _normal(rng, (batch, prefix + grid_size[0] * grid_size[1], embed_dim))}


def run_sincos_2d(arrays, swap, batch, embed_dim, grid_size, prefix):
    from cs_vit.layers import SinusoidalPositionalEncoding2D
    encoding = SinusoidalPositionalEncoding2D(embed_dim, tuple(grid_size),
                                              num_prefix_tokens=prefix)
    return {"out": encoding.forward(arrays["x"])}


def inputs_learned_positions(rng, shape, dropout):
    arrays = {"x": _normal(rng, shape), "dout": _normal(rng, shape)}
    if dropout:
        arrays["drop_mask"] = _dropout_mask(rng, shape, dropout)
    return arrays


def run_learned_positions(arrays, swap, shape, dropout):
    from cs_vit.layers import LearnedPositionalEmbedding
    embedding = LearnedPositionalEmbedding(shape[1], shape[2], dropout)
    swap.params(embedding)
    if dropout:
        swap.fixed_dropout(embedding.dropout, "drop_mask")
    out = embedding.forward(arrays["x"])
    return {"out": out, "dx": embedding.backward(arrays["dout"]), **_grads(embedding)}


def inputs_layernorm(rng, shape, eps, shift):
    return {"x": _normal(rng, shape, 2.0, shift), "dout": _normal(rng, shape)}


def run_layernorm(arrays, swap, shape, eps, shift):
    from cs_vit.layers import LayerNorm
    norm = LayerNorm(shape[-1], eps=eps)
    swap.params(norm)
    out = norm.forward(arrays["x"])
    return {"out": out, "dx": norm.backward(arrays["dout"]), **_grads(norm)}


def inputs_gelu(rng, shape, approximate, training):
    return {"x": _normal(rng, shape, 3.0), "dout": _normal(rng, shape)}


def run_gelu(arrays, swap, shape, approximate, training):
    from cs_vit.layers import GELU
    gelu = GELU(approximate).train(training)
    out = gelu.forward(arrays["x"])
    return {"out": out, "dx": gelu.backward(arrays["dout"])}


def inputs_mlp(rng, shape, hidden, dropout):
    arrays = {"x": _normal(rng, shape), "dout": _normal(rng, shape)}
    if dropout:
        arrays["drop1_mask"] = _dropout_mask(rng, (*shape[:-1], hidden), dropout)
        arrays["drop2_mask"] = _dropout_mask(rng, shape, dropout)
    return arrays


def run_mlp(arrays, swap, shape, hidden, dropout):
    from cs_vit.layers import MLP
    mlp = MLP(shape[-1], hidden, dropout)
    swap.params(mlp)
    if dropout:
        swap.fixed_dropout(mlp.drop1, "drop1_mask")
        swap.fixed_dropout(mlp.drop2, "drop2_mask")
    out = mlp.forward(arrays["x"])
    return {"out": out, "dx": mlp.backward(arrays["dout"]), **_grads(mlp)}


def inputs_attention(rng, batch, queries, keys, embed_dim, num_heads, mask, dropout,
                     score_scale):
    T = keys or queries
    arrays = {"query": _normal(rng, (batch, queries, embed_dim)),
              "dout": _normal(rng, (batch, queries, embed_dim))}
    if keys:
        arrays["key"] = _normal(rng, (batch, keys, embed_dim))
        arrays["value"] = _normal(rng, (batch, keys, embed_dim))
    if mask == "causal":
        arrays["attn_mask"] = np.tril(np.ones((queries, T), dtype=bool))
    elif mask == "random":
        allowed = (rng.random((batch, queries, T)) < 0.6).astype(np.int64)
        # Every query keeps at least one key: a fully blocked row is a corner case of its own.
        chosen = rng.integers(0, T, (batch, queries))
        allowed[np.arange(batch)[:, None], np.arange(queries), chosen] = 1
        arrays["attn_mask"] = allowed
    if dropout:
        arrays["drop_mask"] = _dropout_mask(rng, (batch, num_heads, queries, T), dropout)
    return arrays


def run_attention(arrays, swap, batch, queries, keys, embed_dim, num_heads, mask, dropout,
                  score_scale):
    from cs_vit.layers import MultiHeadAttention
    attention = MultiHeadAttention(embed_dim, num_heads, dropout)
    swap.params(attention, scale={"q_proj.weight": score_scale, "k_proj.weight": score_scale})
    if dropout:
        swap.fixed_dropout(attention.attn_drop, "drop_mask")
    inputs = {name: arrays[name] for name in ("key", "value", "attn_mask") if name in arrays}
    out = attention.forward(arrays["query"], **inputs)
    grads = attention.backward(arrays["dout"])
    names = ("dquery", "dkey", "dvalue") if keys else ("dx",)
    grads = grads if keys else (grads,)
    return {"out": out, **dict(zip(names, grads)), **_grads(attention)}


def inputs_loss(rng, batch, classes, label_smoothing, scale):
    return {"logits": _normal(rng, (batch, classes), scale),
            "labels": rng.integers(0, classes, batch)}


def run_loss(arrays, swap, batch, classes, label_smoothing, scale):
    from cs_vit.layers.loss import softmax_cross_entropy
    loss, dlogits = softmax_cross_entropy(arrays["logits"], arrays["labels"], label_smoothing)
    return {"loss": np.float64(loss), "dlogits": dlogits}


def inputs_block(rng, shape, num_heads, mlp_dim, dropout, causal):
    arrays = {"x": _normal(rng, shape), "dout": _normal(rng, shape)}
    if causal:
        arrays["attn_mask"] = np.tril(np.ones(shape[1:2] * 2, dtype=bool))
    if dropout:
        arrays["drop_mask"] = _dropout_mask(rng, shape, dropout)
    return arrays


def run_block(arrays, swap, shape, num_heads, mlp_dim, dropout, causal):
    """The block's wiring, with its LayerNorms, attention and MLP replayed."""
    from cs_vit.layers import TransformerEncoderBlock
    block = TransformerEncoderBlock(shape[-1], num_heads, mlp_dim)
    swap.params(block)
    for name in ("norm1", "mlp", "norm2"):
        swap.replay(getattr(block, name), name, tokenwise=True)
    swap.replay(block.attn, "attn")
    if dropout:
        swap.fixed_dropout(block.attn_out_drop, "drop_mask")
    out = block.forward(arrays["x"], attn_mask=arrays.get("attn_mask"))
    return {"out": out, "dx": block.backward(arrays["dout"])}


def inputs_vit(rng, pool):
    size, classes = VIT["image_size"], VIT["num_classes"]
    return {"images": _normal(rng, (VIT_BATCH, VIT["in_channels"], size, size)),
            "dlogits": _normal(rng, (VIT_BATCH, classes))}


def run_vit(arrays, swap, pool):
    """The ViT's wiring, with patch embedding, positions, blocks and final norm replayed."""
    from cs_vit.models import VisionTransformer
    model = VisionTransformer(**VIT, pool=pool)
    swap.params(model)
    replayed = ["patch_embed", "pos_encoding", "norm"]
    for name in replayed:
        swap.replay(getattr(model, name), name, tokenwise=name == "norm")
    for i, block in enumerate(model.blocks):
        swap.replay(block, f"blocks.{i}")
    logits = model.forward(arrays["images"])
    dimages = model.backward(arrays["dlogits"])
    return {"logits": logits, "dimages": dimages,
            **_grads(model, skip=[name + "." for name in replayed + ["blocks"]])}
