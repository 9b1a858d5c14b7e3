import numpy as np
import pytest
import torch

from cs_vit.layers import TransformerEncoderBlock
from tests.gradcheck import (
    assert_all_close,
    assert_float32_matches_float64,
    assert_gradients_match,
    copy_params_to_torch,
    param_grad_pairs,
    randomize_parameters,
    torch_encoder_layer_params,
    with_fixed_masks,
)


def randn(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.task7
def test_block_backward_matches_numerical_gradient(float64):
    block = TransformerEncoderBlock(4, 2, 8)
    assert_gradients_match(block, (randn(1, 2, 3, 4),))


@pytest.mark.task7
def test_block_with_dropout_backward_matches_numerical_gradient(float64):
    block = TransformerEncoderBlock(4, 2, 8, dropout=0.2, attention_dropout=0.2)
    assert_gradients_match(block, (randn(2, 2, 3, 4),), call=with_fixed_masks(block.forward))
    assert (block.attn_out_drop.mask == 0).any()


@pytest.mark.task7
def test_block_with_mask_backward_matches_numerical_gradient(float64):
    block = TransformerEncoderBlock(4, 2, 8)
    mask = np.tril(np.ones((3, 3), dtype=bool))
    assert_gradients_match(block, (randn(1, 2, 3, 4),),
                                     call=lambda x: block.forward(x, attn_mask=mask))


@pytest.mark.task7
@pytest.mark.parametrize("causal", [False, True])
def test_block_matches_torch_encoder_layer(float64, causal):
    D, num_heads, mlp_dim, T = 8, 2, 16, 5
    block = randomize_parameters(TransformerEncoderBlock(D, num_heads, mlp_dim))
    ref = torch.nn.TransformerEncoderLayer(
        d_model=D, nhead=num_heads, dim_feedforward=mlp_dim, dropout=0.0,
        activation="gelu", batch_first=True, norm_first=True).double()
    pairs = torch_encoder_layer_params(ref)
    copy_params_to_torch(block, pairs)
    mask = np.tril(np.ones((T, T), dtype=bool)) if causal else None
    x = randn(1, 2, T, D)
    dout = randn(2, 2, T, D)
    x_t = torch.from_numpy(x).requires_grad_()
    # torch's boolean mask marks the *blocked* positions with True.
    out_t = ref(x_t, src_mask=None if mask is None else torch.from_numpy(~mask))
    out_t.backward(torch.from_numpy(dout))

    out = block.forward(x, attn_mask=mask)
    dx = block.backward(dout)
    compared = {"out": (out, out_t), "dx": (dx, x_t.grad), **param_grad_pairs(block, pairs)}
    assert_all_close(compared, "torch")


def test_block_uses_timm_sub_layer_names():
    block = TransformerEncoderBlock(8, 2, 16)
    names = [name for name, _, _ in block.parameters()]
    assert "norm1.weight" in names and "norm2.bias" in names
    assert "attn.q_proj.weight" in names and "attn.out_proj.bias" in names
    assert "mlp.fc1.weight" in names and "mlp.fc2.bias" in names


def test_block_rejects_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match="embed_dim 6 is not divisible by num_heads 4"):
        TransformerEncoderBlock(6, 4, 12)


@pytest.mark.task7
def test_block_is_deterministic_in_eval_mode():
    block = TransformerEncoderBlock(8, 2, 16, dropout=0.5, attention_dropout=0.5).eval()
    x = randn(0, 2, 3, 8).astype(np.float32)
    np.testing.assert_array_equal(block.forward(x), block.forward(x))


@pytest.mark.task7
def test_block_in_float32_follows_float64():
    assert_float32_matches_float64(lambda: TransformerEncoderBlock(8, 2, 16),
                                   (randn(0, 2, 3, 8),))
