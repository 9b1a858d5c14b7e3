# cs-vit: instructor-only (the fast tier; the student release leaves it out)
"""A ViT whose last block computes the CLS token alone, when nothing else is read.

With CLS pooling only the last block's CLS row reaches the head. Its other rows
still serve as keys and values of that block's attention, but their attention
outputs, MLP and the final norm are never used: computing the CLS row alone
(``first_tokens=1``) gives the same logits and gradients and saves most of the
last block. Eval mode outside ``no_grad()`` runs the whole block, so that
``attention_weights()`` has full maps.
"""
from __future__ import annotations

from cs_vit.backend import xp
from cs_vit.checks import check_dout, check_float_array
from cs_vit.layers.base import keeping
from cs_vit.models.vit import VisionTransformer


def block_forward_first_tokens(block, x, first_tokens):
    """The rows of ``block.forward(x)`` for the first k tokens: (N, T, D) -> (N, k, D).

    They attend to every token, so they equal those rows of the full output.
    """
    normed = block.norm1(x)
    attended = block.attn(normed[:, :first_tokens], normed)  # queries: the first k tokens
    x = x[:, :first_tokens] + block.attn_out_drop(attended)
    return x + block.mlp(block.norm2(x))


def block_backward_first_tokens(block, dout, first_tokens):
    """dout: (N, k, D) -> dx: (N, T, D), for ``block_forward_first_tokens``.

    norm1(x) fed the keys and values of every token and the queries of the first
    k: their gradients add up there, as do the skip paths of the first k rows.
    """
    dx = dout + block.norm2.backward(block.mlp.backward(dout))
    dqueries, dnormed = block.attn.backward(block.attn_out_drop.backward(dx))
    dnormed[:, :first_tokens] += dqueries
    dinput = block.norm1.backward(dnormed)
    dinput[:, :first_tokens] += dx
    return dinput


def cls_only_last_block(model):
    """Whether ``model``'s next forward pass can compute the last block's CLS row alone.

    Not in training with dropout: the last block's dropout layers would draw masks
    of another shape than the textbook model's, and so other random numbers.
    """
    dropping = model.training and (model.config.dropout > 0 or model.config.attention_dropout > 0)
    return model.num_prefix_tokens == 1 and (model.training or not keeping()) and not dropping


def vit_forward(self, images):
    """Same contract as ``VisionTransformer.forward``."""
    self.cls_only = cls_only_last_block(self)
    if not self.cls_only:
        return VisionTransformer.forward.reference(self, images)
    check_float_array(images, "images", "VisionTransformer", "normalise uint8 pixels "
                      "first, with cs_vit.data.normalize(images, mean, std)")
    x = self.patch_embed(images)  # (N, T, D); rebound below, so it is not held all the way
    cls = xp.broadcast_to(self.params["cls_token"], (x.shape[0], 1, x.shape[2]))
    x = self.pos_encoding(xp.concatenate([cls, x], axis=1))
    self.num_tokens = x.shape[1]
    for block in self.blocks[:-1]:
        x = block(x)
    cls_row = block_forward_first_tokens(self.blocks[-1], x, 1)[:, 0]
    return self.head(self.norm(cls_row))  # LayerNorm acts on each token alone


def vit_backward(self, dlogits, input_grad=True):
    """Same contract as ``VisionTransformer.backward``, after ``vit_forward``."""
    if not getattr(self, "cls_only", False):
        return VisionTransformer.backward.reference(self, dlogits, input_grad)
    pooled = self.head.x
    expected = None if pooled is None else (pooled.shape[0], self.config.num_classes)
    check_dout(dlogits, expected, "VisionTransformer")
    dcls_row = self.norm.backward(self.head.backward(dlogits))
    dx = block_backward_first_tokens(self.blocks[-1], dcls_row[:, None, :], 1)
    for block in reversed(self.blocks[:-1]):
        dx = block.backward(dx)
    dx = self.pos_encoding.backward(dx)
    self.grads["cls_token"] = dx[:, :1].sum(axis=0, keepdims=True)
    return self.patch_embed.backward(dx[:, 1:], input_grad)


REPLACEMENTS = {VisionTransformer.forward: vit_forward, VisionTransformer.backward: vit_backward}
