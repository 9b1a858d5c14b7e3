# cs-vit: instructor-only (independent implementations of task answers; not for the student tree)
"""The expected values stored for the students' tests are right.

``tests/expected/*.json`` hold values the student tests compare against, so that
no student-visible file computes a task's answer. Here they are checked against
implementations written independently of the solution (MAE's and a plain loop),
which is why this file is instructor-only.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

EXPECTED = json.loads((Path(__file__).parent / "expected" / "positional.json").read_text())


def mae_1d_sincos(embed_dim, pos):
    """MAE's get_1d_sincos_pos_embed_from_grid: [sin | cos] of pos * omega."""
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def mae_2d_sincos(embed_dim, grid_h, grid_w, cls_token=False):
    """MAE's get_2d_sincos_pos_embed, generalised to a grid_h x grid_w grid."""
    grid = np.meshgrid(np.arange(grid_w, dtype=np.float64), np.arange(grid_h, dtype=np.float64))
    grid = np.stack(grid, axis=0).reshape(2, 1, grid_h, grid_w)
    emb_h = mae_1d_sincos(embed_dim // 2, grid[0])
    emb_w = mae_1d_sincos(embed_dim // 2, grid[1])
    pos_embed = np.concatenate([emb_h, emb_w], axis=1)
    if cls_token:
        pos_embed = np.concatenate([np.zeros((1, embed_dim)), pos_embed], axis=0)
    return pos_embed


def loop_1d_sincos(T, d):
    table = np.zeros((T, d))
    for i in range(T):
        for j in range(d):
            if j % 2 == 0:
                table[i, j] = math.sin(i * 10000 ** (-j / d))
            else:
                table[i, j] = math.cos(i * 10000 ** (-(j - 1) / d))
    return table


@pytest.mark.parametrize("dim", [4, 6, 7, 8])
def test_stored_1d_tables_follow_the_formula(dim):
    stored = np.array(EXPECTED["sincos1d"][f"T=12,dim={dim}"])
    np.testing.assert_allclose(stored, loop_1d_sincos(12, dim), rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid, prefix", [((4, 4), 0), ((3, 5), 1)])
def test_stored_2d_tables_follow_mae(grid, prefix):
    stored = np.array(EXPECTED["sincos2d"][f"grid={grid[0]}x{grid[1]},dim=8,prefix={prefix}"])
    np.testing.assert_allclose(stored, mae_2d_sincos(8, *grid, cls_token=prefix == 1),
                               rtol=0, atol=1e-12)
