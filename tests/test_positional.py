import json
import math
from pathlib import Path

import numpy as np
import pytest

from cs_vit import backend
from cs_vit.layers import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    SinusoidalPositionalEncoding2D,
)
from tests.gradcheck import (
    assert_close, assert_float32_matches_float64, assert_gradients_match, with_fixed_masks,
)


EXPECTED = json.loads((Path(__file__).parent / "expected" / "positional.json").read_text())


@pytest.mark.task2
@pytest.mark.parametrize("embed_dim", [6, 7])
def test_sinusoidal_values_match_the_stored_table(float64, embed_dim):
    layer = SinusoidalPositionalEncoding(embed_dim, max_len=12)
    out = layer.forward(np.zeros((1, 12, embed_dim)))
    expected = np.array(EXPECTED["sincos1d"][f"T=12,dim={embed_dim}"])
    assert_close(out[0], expected, "sin-cos table", rtol=1e-12)


@pytest.mark.task2
@pytest.mark.parametrize("grid_size, prefix", [((4, 4), 0), ((3, 5), 1)])
def test_sinusoidal_2d_values_match_the_stored_table(float64, grid_size, prefix):
    layer = SinusoidalPositionalEncoding2D(8, grid_size, num_prefix_tokens=prefix)
    gh, gw = layer.grid_size
    out = layer.forward(np.zeros((1, prefix + gh * gw, 8)))
    expected = np.array(EXPECTED["sincos2d"][f"grid={gh}x{gw},dim=8,prefix={prefix}"])
    assert_close(out[0], expected, "2-D sin-cos table", rtol=1e-12)


@pytest.mark.task2
def test_sinusoidal_rows_are_distinct():
    tables = [SinusoidalPositionalEncoding(16, max_len=64).table,
              SinusoidalPositionalEncoding2D(16, (6, 7)).table]
    for table in tables:
        assert len(np.unique(table.round(5), axis=0)) == len(table)


@pytest.mark.task2
def test_sinusoidal_tables_follow_the_default_dtype():
    assert SinusoidalPositionalEncoding(8, max_len=10).table.dtype == np.float32
    assert SinusoidalPositionalEncoding2D(8, 3).table.dtype == np.float32
    with backend.precision("float64"):
        assert SinusoidalPositionalEncoding(8, max_len=10).table.dtype == np.float64
        assert SinusoidalPositionalEncoding2D(8, 3).table.dtype == np.float64


@pytest.mark.task2
def test_sinusoidal_tables_are_buffers_not_parameters():
    assert list(SinusoidalPositionalEncoding(8).parameters()) == []
    assert list(SinusoidalPositionalEncoding2D(8, 3).parameters()) == []


@pytest.mark.task2
def test_positional_encodings_in_float32_follow_float64():
    x = np.random.default_rng(3).standard_normal((2, 4, 8))
    for make_layer in (lambda: SinusoidalPositionalEncoding(8),
                       lambda: SinusoidalPositionalEncoding2D(8, 2),
                       lambda: LearnedPositionalEmbedding(4, 8)):
        assert_float32_matches_float64(make_layer, (x,))


@pytest.mark.task2
@pytest.mark.parametrize("make_layer", [
    lambda: SinusoidalPositionalEncoding(4, max_len=10),
    lambda: SinusoidalPositionalEncoding2D(4, (1, 3)),
    lambda: LearnedPositionalEmbedding(3, 4),
])
def test_positional_backward_matches_numerical_gradient(float64, make_layer):
    layer = make_layer()
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    errors = assert_gradients_match(layer, (x,))
    assert set(errors) == {"dx0"} | {name for name, _, _ in layer.parameters()}


@pytest.mark.task2
@pytest.mark.parametrize("make_layer", [
    lambda: SinusoidalPositionalEncoding(4, max_len=10, dropout=0.5),
    lambda: SinusoidalPositionalEncoding2D(4, (1, 3), dropout=0.5),
    lambda: LearnedPositionalEmbedding(3, 4, dropout=0.5),
])
def test_positional_dropout_backward_matches_numerical_gradient(float64, make_layer):
    layer = make_layer()
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    assert_gradients_match(layer, (x,), call=with_fixed_masks(layer.forward))
    assert (layer.dropout.mask == 0).any()


@pytest.mark.task2
def test_learned_gradient_is_dout_summed_over_the_batch(float64):
    layer = LearnedPositionalEmbedding(3, 4)
    dout = np.random.default_rng(2).standard_normal((5, 3, 4))
    layer.forward(np.zeros((5, 3, 4)))
    assert np.array_equal(layer.backward(dout), dout)
    assert np.allclose(layer.grads["pos_embed"], dout.sum(axis=0, keepdims=True))


def test_learned_init_is_truncated_normal_with_std_002():
    pos_embed = LearnedPositionalEmbedding(200, 64).params["pos_embed"]
    assert pos_embed.shape == (1, 200, 64)
    # A normal with std 0.02 cut at +-2 std keeps std 0.02 * 0.8796 (the tails are gone).
    phi_2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    truncated_std = 0.02 * math.sqrt(1 - 4 * phi_2 / math.erf(2 / math.sqrt(2)))
    assert abs(pos_embed.std() - truncated_std) < 0.001
    assert np.abs(pos_embed).max() <= 0.04


def test_learned_rejects_wrong_number_of_tokens():
    with pytest.raises(ValueError, match="num_positions = 5 tokens, got T=4"):
        LearnedPositionalEmbedding(5, 8).forward(np.ones((2, 4, 8), dtype=np.float32))


@pytest.mark.task2
def test_sinusoidal_rejects_more_tokens_than_max_len():
    with pytest.raises(ValueError, match="T=11 tokens but max_len is 10"):
        SinusoidalPositionalEncoding(8, max_len=10).forward(np.ones((1, 11, 8), dtype=np.float32))


@pytest.mark.task2
def test_sinusoidal_2d_rejects_wrong_number_of_tokens():
    with pytest.raises(ValueError, match="= 10 tokens, got T=9"):
        SinusoidalPositionalEncoding2D(8, 3, num_prefix_tokens=1).forward(
            np.ones((1, 9, 8), dtype=np.float32))


def test_sinusoidal_2d_rejects_embed_dim_not_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4.*embed_dim=6"):
        SinusoidalPositionalEncoding2D(6, 3)


@pytest.mark.task2
def test_positional_rejects_wrong_embed_dim():
    with pytest.raises(ValueError, match="embed_dim = 8"):
        SinusoidalPositionalEncoding(8).forward(np.ones((1, 4, 6), dtype=np.float32))


@pytest.mark.task2
@pytest.mark.parametrize("make_layer", [
    lambda: SinusoidalPositionalEncoding(8, dropout=0.5),
    lambda: SinusoidalPositionalEncoding2D(8, 2, dropout=0.5),
    lambda: LearnedPositionalEmbedding(4, 8, dropout=0.5),
])
def test_positional_dropout_is_random_in_training_and_off_in_eval(make_layer):
    layer = make_layer()
    x = np.ones((2, 4, 8), dtype=np.float32)
    assert not np.array_equal(layer.forward(x), layer.forward(x))
    layer.eval()
    assert np.array_equal(layer.forward(x), layer.forward(x))
    assert np.array_equal(layer.backward(x), x)
