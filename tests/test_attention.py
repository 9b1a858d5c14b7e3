import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cs_vit import backend
from cs_vit.layers import MultiHeadAttention
from tests.gradcheck import (
    assert_close,
    TORCH_TOL,
    as_tuple,
    assert_gradients_match,
    copy_params_to_torch,
    max_abs_diff,
    param_grad_diffs,
    torch_attention_params,
)


def randn(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


def mask_with_fully_blocked_row():
    """(N=2, S=3, T=4) mask, 1 = attend; batch 1's query 2 may attend to nothing."""
    mask = np.array([[[1, 0, 1, 1], [1, 1, 0, 0], [0, 1, 1, 1]],
                     [[1, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]], dtype=bool)
    return mask


def torch_attention(layer, inputs, dout, torch_mask=None):
    """Run torch's MultiheadAttention with ``layer``'s weights on ``inputs``.

    inputs: (x,) for self-attention or (query, key, value).
    Returns (out, weights, input grads, parameter pairs) from torch.
    """
    ref = torch.nn.MultiheadAttention(layer.embed_dim, layer.num_heads,
                                      batch_first=True, bias=True).double()
    pairs = torch_attention_params(ref)
    copy_params_to_torch(layer, pairs)
    tensors = [torch.from_numpy(a).requires_grad_() for a in inputs]
    qkv = tensors * 3 if len(tensors) == 1 else tensors
    out, weights = ref(*qkv, attn_mask=torch_mask, need_weights=True,
                       average_attn_weights=False)
    out.backward(torch.from_numpy(dout))
    return out, weights, [t.grad for t in tensors], pairs


def assert_matches_torch(layer, inputs, mask=None, torch_mask=None):
    out = layer.forward(*inputs, attn_mask=mask)
    dout = randn(9, *out.shape)
    dinputs = as_tuple(layer.backward(dout))
    out_t, weights_t, dinputs_t, pairs = torch_attention(layer, inputs, dout, torch_mask)
    diffs = {"out": max_abs_diff(out, out_t),
             "attn_weights": max_abs_diff(layer.attn_weights, weights_t)}
    diffs.update({f"dx{i}": max_abs_diff(d, d_t) for i, (d, d_t) in
                  enumerate(zip(dinputs, dinputs_t))})
    diffs.update(param_grad_diffs(layer, pairs))
    bad = {k: v for k, v in diffs.items() if not v <= TORCH_TOL}
    assert not bad, f"differs from torch by more than {TORCH_TOL}: {bad}"


@pytest.mark.task5
def test_self_attention_backward_matches_numerical_gradient(float64):
    layer = MultiHeadAttention(6, 2)
    assert_gradients_match(layer, (randn(1, 2, 4, 6),))


@pytest.mark.task5
def test_cross_attention_backward_matches_numerical_gradient(float64):
    layer = MultiHeadAttention(6, 3)
    inputs = (randn(1, 2, 3, 6), randn(2, 2, 5, 6), randn(3, 2, 5, 6))
    errors = assert_gradients_match(layer, inputs)
    assert {"dx0", "dx1", "dx2"} <= set(errors)


@pytest.mark.task5
def test_key_without_value_returns_dquery_and_dkey(float64):
    layer = MultiHeadAttention(4, 2)
    errors = assert_gradients_match(layer, (randn(1, 2, 3, 4), randn(2, 2, 5, 4)))
    assert {"dx0", "dx1"} <= set(errors)


@pytest.mark.task5
def test_masked_attention_with_fully_blocked_row_has_finite_gradients(float64):
    layer = MultiHeadAttention(4, 2)
    mask = mask_with_fully_blocked_row()
    inputs = (randn(1, 2, 3, 4), randn(2, 2, 4, 4), randn(3, 2, 4, 4))
    out = layer.forward(*inputs, attn_mask=mask)
    dinputs = layer.backward(randn(4, *out.shape))
    assert np.isfinite(out).all()
    assert all(np.isfinite(d).all() for d in dinputs)
    assert all(np.isfinite(g).all() for _, _, g in layer.parameters())
    assert_close(layer.attn_weights[1, :, 2], np.zeros((2, 4)),
                 "weights of the query whose keys are all blocked", tol=0)
    assert_close(layer.attn_weights[0, :, 0, 1], np.zeros(2), "weights of a blocked key", tol=0)
    assert_gradients_match(layer, inputs,
                           call=lambda q, k, v: layer.forward(q, k, v, attn_mask=mask))


@pytest.mark.task5
def test_attention_dropout_backward_matches_numerical_gradient(float64):
    layer = MultiHeadAttention(4, 2, dropout=0.3)

    def call(x):
        backend.seed(0)
        return layer.forward(x)

    assert_gradients_match(layer, (randn(1, 2, 5, 4),), call=call)
    assert (layer.attn_drop.mask == 0).any()


@pytest.mark.task5
def test_attn_weights_are_kept_before_dropout(float64):
    layer = MultiHeadAttention(4, 2, dropout=0.5)
    layer.forward(randn(1, 2, 5, 4))
    np.testing.assert_allclose(layer.attn_weights.sum(axis=-1), 1.0)


@pytest.mark.task5
def test_self_attention_matches_torch(float64):
    assert_matches_torch(MultiHeadAttention(8, 2), (randn(1, 2, 5, 8),))


@pytest.mark.task5
def test_attention_with_huge_scores_matches_torch(float64):
    """Scores of several thousand: exp() overflows unless the softmax subtracts each row's max."""
    assert_matches_torch(MultiHeadAttention(8, 2), (300 * randn(1, 2, 5, 8),))


@pytest.mark.task5
def test_cross_attention_matches_torch(float64):
    inputs = (randn(1, 2, 3, 8), randn(2, 2, 5, 8), randn(3, 2, 5, 8))
    assert_matches_torch(MultiHeadAttention(8, 4), inputs)


@pytest.mark.task5
def test_masked_attention_with_2d_bool_mask_matches_torch(float64):
    mask = np.tril(np.ones((5, 5), dtype=bool))
    # torch's boolean mask marks the *blocked* positions with True.
    assert_matches_torch(MultiHeadAttention(8, 2), (randn(1, 2, 5, 8),),
                         mask=mask, torch_mask=torch.from_numpy(~mask))


@pytest.mark.task5
def test_masked_attention_with_3d_01_mask_matches_torch(float64):
    layer = MultiHeadAttention(8, 2)
    mask = (np.random.default_rng(5).random((2, 3, 4)) < 0.6).astype(np.int64)
    mask[:, :, 0] = 1
    # torch wants a float mask per (batch, head): 0 to attend, -inf to block.
    torch_mask = torch.from_numpy(np.where(mask == 1, 0.0, -np.inf))
    inputs = (randn(1, 2, 3, 8), randn(2, 2, 4, 8), randn(3, 2, 4, 8))
    assert_matches_torch(layer, inputs, mask=mask,
                         torch_mask=torch_mask.repeat_interleave(layer.num_heads, dim=0))


@pytest.mark.task5
def test_fully_blocked_row_matches_torch_on_other_rows_and_is_zero(float64):
    layer = MultiHeadAttention(4, 2)
    mask = mask_with_fully_blocked_row()
    inputs = (randn(1, 2, 3, 4), randn(2, 2, 4, 4), randn(3, 2, 4, 4))
    out = layer.forward(*inputs, attn_mask=mask)
    torch_mask = torch.from_numpy(~mask).repeat_interleave(layer.num_heads, dim=0)
    out_t, weights_t, _, _ = torch_attention(layer, inputs, np.zeros(out.shape), torch_mask)
    rows = mask.any(axis=-1)
    assert_close(out[rows], out_t[torch.from_numpy(rows)], 'out[rows] vs torch')
    weights_rows = layer.attn_weights.transpose(0, 2, 1, 3)[rows]
    weights_rows_t = weights_t.transpose(1, 2)[torch.from_numpy(rows)]
    assert_close(weights_rows, weights_rows_t, 'weights_rows vs torch')
    # A query that may attend to nothing gets a zero context: only out_proj's bias is left.
    np.testing.assert_allclose(out[1, 2], layer.out_proj.params["bias"])


def test_attention_rejects_embed_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match="embed_dim 10 is not divisible by num_heads 3"):
        MultiHeadAttention(10, 3)


@pytest.mark.parametrize("query, key, value, match", [
    ((2, 6), None, None, "query must have shape"),
    ((2, 3, 5), None, None, "query must have shape"),
    ((2, 3, 6), (2, 4, 5), None, "key must have shape"),
    ((2, 3, 6), (1, 4, 6), None, "key must have shape"),
    ((2, 3, 6), (2, 4, 6), (2, 5, 6), "value must have the same shape as key"),
    ((2, 3, 6), None, (2, 3, 6), "value was given without key"),
])
def test_attention_rejects_wrong_input_shapes(query, key, value, match):
    layer = MultiHeadAttention(6, 2)
    arrays = [None if s is None else np.ones(s, dtype=np.float32) for s in (query, key, value)]
    with pytest.raises(ValueError, match=match):
        layer.forward(*arrays)


@pytest.mark.parametrize("shape", [(3,), (4, 3), (3, 4, 4), (2, 3, 5)])
def test_attention_rejects_bad_mask_shape(shape):
    layer = MultiHeadAttention(6, 2)
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(S, T\)=\(3, 4\)"):
        layer.forward(np.ones((2, 3, 6), dtype=np.float32), np.ones((2, 4, 6), dtype=np.float32),
                      attn_mask=np.ones(shape, dtype=bool))


def test_attention_rejects_additive_float_mask():
    layer = MultiHeadAttention(6, 2)
    mask = np.where(np.tril(np.ones((3, 3))) == 1, 0.0, -np.inf)
    with pytest.raises(ValueError, match="only 0 and 1"):
        layer.forward(np.ones((2, 3, 6), dtype=np.float32), attn_mask=mask)


@pytest.mark.task5
def test_attention_keeps_float32():
    layer = MultiHeadAttention(8, 2, dropout=0.2)
    rng = np.random.default_rng(0)
    query = rng.standard_normal((2, 3, 8)).astype(np.float32)
    key = rng.standard_normal((2, 4, 8)).astype(np.float32)
    mask = rng.random((3, 4)) < 0.7
    out = layer.forward(query, key, key, attn_mask=mask)
    assert out.dtype == np.float32 and layer.attn_weights.dtype == np.float32
    assert all(d.dtype == np.float32 for d in layer.backward(np.ones_like(out)))
    assert all(g.dtype == np.float32 for _, _, g in layer.parameters())


@pytest.mark.task5
@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 3), S=st.integers(1, 4), T=st.integers(1, 5),
       num_heads=st.integers(1, 3), head_dim=st.integers(1, 3), masked=st.booleans(),
       seed=st.integers(0, 2**16))
def test_attention_shapes_and_weights_rows_sum_to_one(N, S, T, num_heads, head_dim,
                                                      masked, seed):
    D = num_heads * head_dim
    rng = np.random.default_rng(seed)
    layer = MultiHeadAttention(D, num_heads)
    query = rng.standard_normal((N, S, D)).astype(np.float32)
    key = rng.standard_normal((N, T, D)).astype(np.float32)
    mask = rng.random((N, S, T)) < 0.5 if masked else np.ones((N, S, T), dtype=bool)
    out = layer.forward(query, key, attn_mask=mask if masked else None)
    assert out.shape == (N, S, D)
    assert layer.attn_weights.shape == (N, num_heads, S, T)
    expected = np.broadcast_to(mask.any(axis=-1)[:, None], (N, num_heads, S))
    np.testing.assert_allclose(layer.attn_weights.sum(axis=-1), expected, atol=1e-5)
