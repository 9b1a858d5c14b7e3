import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cs_vit.layers import PatchEmbedding, img_to_patch, patch_to_img
from tests.gradcheck import assert_close, assert_gradients_match


def torch_patches(x, patch_size, flatten_channels=True):
    """torch's own patch extraction: ``F.unfold`` with stride P, one column per patch.

    Each column is a patch flattened in (C, P, P) order, the columns in reading order.
    """
    N, C = x.shape[:2]
    columns = torch.nn.functional.unfold(torch.from_numpy(x), patch_size, stride=patch_size)
    patches = columns.transpose(1, 2)  # (N, T, C*P*P)
    return patches if flatten_channels else patches.reshape(N, -1, C, patch_size, patch_size)


@pytest.mark.task1
def test_patch_embedding_backward_matches_numerical_gradient(float64):
    layer = PatchEmbedding((4, 6), patch_size=2, in_channels=2, embed_dim=3)
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 6))
    assert_gradients_match(layer, (x,))


@pytest.mark.task1
@pytest.mark.parametrize("image_size", [8, (8, 12)])
def test_patch_embedding_matches_torch_conv2d(float64, image_size):
    C, D, P = 3, 5, 4
    layer = PatchEmbedding(image_size, P, C, D)
    ref = torch.nn.Conv2d(C, D, kernel_size=P, stride=P).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.proj.params["weight"].reshape(D, C, P, P)))
        ref.bias.copy_(torch.from_numpy(layer.proj.params["bias"]))
    H, W = layer.image_size
    x = np.random.default_rng(2).standard_normal((2, C, H, W))
    dout = np.random.default_rng(3).standard_normal((2, layer.num_patches, D))
    x_t = torch.from_numpy(x).requires_grad_()
    out_t = ref(x_t).flatten(2).transpose(1, 2)
    out_t.backward(torch.from_numpy(dout))

    out = layer.forward(x)
    dx = layer.backward(dout)
    assert_close(out, out_t, 'out vs torch')
    assert_close(dx, x_t.grad, 'dx vs torch')
    assert_close(layer.proj.grads["weight"], ref.weight.grad.reshape(D, -1), 'layer.proj.grads["weight"] vs torch')
    assert_close(layer.proj.grads["bias"], ref.bias.grad, 'layer.proj.grads["bias"] vs torch')


def test_patch_embedding_has_grid_attributes_and_torch_init_bound():
    layer = PatchEmbedding((32, 48), patch_size=8, in_channels=3, embed_dim=16)
    assert layer.grid_size == (4, 6)
    assert layer.num_patches == 24
    weight = layer.proj.params["weight"]
    assert weight.shape == (16, 3 * 8 * 8)
    assert layer.proj.params["bias"].shape == (16,)
    assert np.abs(weight).max() <= 1 / np.sqrt(3 * 8 * 8)
    assert [name for name, _, _ in layer.parameters()] == ["proj.weight", "proj.bias"]


@pytest.mark.task1
def test_patch_embedding_keeps_float32():
    layer = PatchEmbedding(8, 4, 3, 5)
    out = layer.forward(np.ones((2, 3, 8, 8), dtype=np.float32))
    assert out.dtype == np.float32
    assert layer.backward(np.ones_like(out)).dtype == np.float32


def test_patch_embedding_rejects_wrong_channels():
    with pytest.raises(ValueError, match="3 channels.*got 1"):
        PatchEmbedding(8, 4, 3, 5).forward(np.ones((2, 1, 8, 8), dtype=np.float32))


def test_patch_embedding_rejects_wrong_image_size():
    with pytest.raises(ValueError, match="expected 8x8 images.*got 12x8"):
        PatchEmbedding(8, 4, 3, 5).forward(np.ones((2, 3, 12, 8), dtype=np.float32))


def test_patch_embedding_rejects_image_size_not_divisible_by_patch_size():
    with pytest.raises(ValueError, match="image width 30 is not divisible by patch_size 4"):
        PatchEmbedding((32, 30), 4, 3, 5)


@pytest.mark.task1
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), gh=st.integers(1, 4), gw=st.integers(1, 4),
       p=st.integers(1, 4), flatten=st.booleans())
def test_img_to_patch_round_trips_and_matches_torch_unfold(n, c, gh, gw, p, flatten):
    x = np.random.default_rng(0).standard_normal((n, c, gh * p, gw * p))
    patches = img_to_patch(x, p, flatten_channels=flatten)
    assert_close(patches, torch_patches(x, p, flatten), "patches vs torch's unfold", tol=0)
    assert_close(patch_to_img(patches, p, (gh * p, gw * p)), x, "patch_to_img(img_to_patch(x))",
                 tol=0)


@pytest.mark.task1
def test_img_to_patch_reads_patches_row_by_row():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    patches = img_to_patch(x, 2)
    assert patches[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_img_to_patch_rejects_height_not_divisible_by_patch_size():
    message = ("image height 30 is not divisible by patch_size 4; use an image size that is "
               "a multiple of the patch size or pad the images")
    with pytest.raises(ValueError, match=message):
        img_to_patch(np.ones((1, 3, 30, 32)), 4)


def test_img_to_patch_rejects_non_image_input():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        img_to_patch(np.ones((3, 32, 32)), 4)


def test_patch_to_img_rejects_wrong_number_of_patches():
    with pytest.raises(ValueError, match="16 patches.*T=15"):
        patch_to_img(np.ones((1, 15, 12)), 2, 8)
