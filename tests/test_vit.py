import numpy as np
import pytest
import torch
import torchvision

from cs_vit.models import VisionTransformer
from cs_vit.models.torchvision_convert import to_torch_state_dict
from tests.gradcheck import (
    assert_all_close, assert_close, assert_float32_matches_float64, assert_gradients_match,
    assert_same_parameters, randomize_parameters, with_fixed_masks,
)

TINY = dict(image_size=8, patch_size=4, in_channels=2, num_classes=3, embed_dim=8,
            depth=2, num_heads=2, mlp_dim=12)


def images(n, c, size, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, size, size))


def torchvision_vit(**overrides):
    torch.manual_seed(0)
    kwargs = dict(image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=8,
                  mlp_dim=16, num_classes=5)
    kwargs.update(overrides)
    model = torchvision.models.VisionTransformer(**kwargs).double()
    with torch.no_grad():  # not torchvision's start (LayerNorms at ones/zeros, zero CLS and head)
        for parameter in model.parameters():
            parameter.normal_(std=0.5)
    return model


def run_torch(module, x, dlogits):
    x_t = torch.from_numpy(x).requires_grad_()
    logits = module(x_t)
    logits.backward(torch.from_numpy(dlogits))
    return logits, x_t.grad


def test_from_torchvision_keeps_the_models_dtype_or_takes_one():
    tv = torchvision_vit()
    assert {value.dtype for _, value, _ in VisionTransformer.from_torchvision(tv).parameters()} \
        == {np.dtype(np.float64)}
    model = VisionTransformer.from_torchvision(tv, dtype="float32")
    assert {value.dtype for _, value, _ in model.parameters()} == {np.dtype(np.float32)}


@pytest.mark.task7
def test_vit_matches_torchvision_forward_and_backward_in_float64():
    tv = torchvision_vit()
    model = VisionTransformer.from_torchvision(tv)
    x = images(3, 3, 16)
    dlogits = np.random.default_rng(1).standard_normal((3, 5))
    logits_t, dx_t = run_torch(tv, x, dlogits)

    logits = model.forward(x)
    compared = {"logits": (logits, logits_t), "dx": (model.backward(dlogits), dx_t)}
    grads = {name: grad for name, _, grad in model.parameters()}
    torch_grads = {k: p.grad.numpy() for k, p in tv.named_parameters()}
    compared.update({tv_name: (ours, torch_grads[tv_name])
                     for tv_name, ours in to_torch_state_dict(grads, model.config).items()})
    assert_all_close(compared, "torchvision")


@pytest.mark.task7
@pytest.mark.usefixtures("stored_sincos")
@pytest.mark.parametrize("pos", ["sincos1d", "sincos2d"])
def test_fixed_positions_become_a_frozen_torchvision_pos_embedding(float64, pos):
    model = randomize_parameters(VisionTransformer(**TINY, pos_encoding=pos))
    tv = model.to_torchvision().eval()
    assert not tv.encoder.pos_embedding.requires_grad
    trainable = sum(p.numel() for p in tv.parameters() if p.requires_grad)
    assert trainable == sum(value.size for _, value, _ in model.parameters())
    x = images(2, 2, 8)
    with torch.no_grad():
        expected = tv(torch.from_numpy(x)).numpy()
    assert_close(model.eval().forward(x), expected, "logits vs torchvision")


def test_mean_pooled_vit_has_no_torchvision_twin():
    with pytest.raises(ValueError, match="pool='mean'"):
        VisionTransformer(**TINY, pool="mean").to_torchvision()


@pytest.mark.task7
def test_vit_round_trips_through_torchvision(float64):
    model = randomize_parameters(VisionTransformer(**TINY))
    tv = model.to_torchvision()
    x = images(2, 2, 8)
    tv.eval()
    with torch.no_grad():
        expected = tv(torch.from_numpy(x)).numpy()
    assert_close(model.eval().forward(x), expected, "logits vs torchvision")
    back = VisionTransformer.from_torchvision(tv)
    assert_same_parameters(model, back)


@pytest.mark.task7
@pytest.mark.usefixtures("stored_sincos")
@pytest.mark.parametrize("pool,pos", [("cls", "learned"), ("mean", "sincos2d"), ("cls", "sincos1d")])
def test_vit_backward_matches_numerical_gradient(float64, pool, pos):
    model = VisionTransformer(**dict(TINY, depth=1, pool=pool, pos_encoding=pos))
    assert_gradients_match(model, (images(2, 2, 8),))


@pytest.mark.task7
@pytest.mark.usefixtures("stored_sincos")
@pytest.mark.parametrize("pos", ["learned", "sincos2d"])
def test_vit_with_dropout_in_training_mode_matches_numerical_gradient(float64, pos):
    model = VisionTransformer(**dict(TINY, depth=1, pos_encoding=pos, dropout=0.2,
                                     attention_dropout=0.2))
    # Seeds 0-2 draw gradient entries of 1e-7 beside entries of 0.2; the numerical gradient
    # resolves those to about 1e-13, a rel_error near the 1e-7 limit on such an entry.
    assert_gradients_match(model, (images(2, 2, 8),), call=with_fixed_masks(model.forward),
                           seed=3)
    assert model.training and (model.pos_encoding.dropout.mask == 0).any()
    block = model.blocks[0]
    assert (block.attn.attn_drop.mask == 0).any() and (block.mlp.drop1.mask == 0).any()


class TorchMeanPoolViT(torch.nn.Module):
    """The same structure as cs_vit's pool="mean" ViT, written with torch modules."""

    def __init__(self, model):
        super().__init__()
        c = model.config
        self.conv = torch.nn.Conv2d(c.in_channels, c.embed_dim, c.patch_size, c.patch_size)
        self.pos = torch.nn.Parameter(torch.zeros(1, model.patch_embed.num_patches, c.embed_dim))
        self.blocks = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(c.embed_dim, c.num_heads, c.mlp_dim, dropout=0.0,
                                             activation="gelu", batch_first=True,
                                             norm_first=True, layer_norm_eps=1e-6)
            for _ in range(c.depth))
        self.norm = torch.nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.head = torch.nn.Linear(c.embed_dim, c.num_classes)

    def forward(self, x):
        x = self.conv(x).flatten(2).transpose(1, 2) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))


def mean_pool_torch_names(model):
    """cs_vit parameter name -> (torch parameter name, reshape to torch's shape)."""
    names = {"patch_embed.proj.weight": "conv.weight", "patch_embed.proj.bias": "conv.bias",
             "pos_encoding.pos_embed": "pos", "norm.weight": "norm.weight",
             "norm.bias": "norm.bias", "head.weight": "head.weight", "head.bias": "head.bias"}
    block = {"norm1": "norm1", "norm2": "norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.fc1": "linear1", "mlp.fc2": "linear2"}
    for i in range(model.config.depth):
        for ours, theirs in block.items():
            for p in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{p}"] = f"blocks.{i}.{theirs}.{p}"
    return names


@pytest.mark.task7
def test_mean_pool_vit_matches_equivalent_torch_model(float64):
    model = randomize_parameters(VisionTransformer(**dict(TINY, pool="mean")))
    ref = TorchMeanPoolViT(model).double()
    ours = {name: value for name, value, _ in model.parameters()}
    names = mean_pool_torch_names(model)
    torch_params = dict(ref.named_parameters())
    with torch.no_grad():
        for name, tname in names.items():
            torch_params[tname].copy_(torch.from_numpy(ours[name]).reshape(torch_params[tname].shape))
        for i in range(model.config.depth):
            qkv = [ours[f"blocks.{i}.attn.{p}_proj.{k}"] for k in ("weight", "bias") for p in "qkv"]
            torch_params[f"blocks.{i}.self_attn.in_proj_weight"].copy_(torch.from_numpy(np.concatenate(qkv[:3])))
            torch_params[f"blocks.{i}.self_attn.in_proj_bias"].copy_(torch.from_numpy(np.concatenate(qkv[3:])))
    x = images(3, 2, 8)
    dlogits = np.random.default_rng(2).standard_normal((3, 3))
    logits_t, dx_t = run_torch(ref, x, dlogits)
    compared = {"logits": (model.forward(x), logits_t), "dx": (model.backward(dlogits), dx_t)}
    grads = {name: grad for name, _, grad in model.parameters()}
    compared.update({name: (grads[name], torch_params[tname].grad.reshape(grads[name].shape))
                     for name, tname in names.items()})
    assert_all_close(compared, "the torch model")


def test_vit_parameters_follow_timm_names():
    names = [name for name, _, _ in VisionTransformer(**TINY).parameters()]
    assert names[0] == "cls_token"
    assert "blocks.1.attn.q_proj.weight" in names and names[-1] == "head.bias"


@pytest.mark.task7
def test_vit_save_and_load_round_trip(tmp_path):
    model = VisionTransformer(**TINY)
    path = tmp_path / "vit.npz"
    model.save(path)
    restored = VisionTransformer.from_file(path)
    assert restored.config == model.config
    x = images(2, 2, 8).astype(np.float32)
    np.testing.assert_array_equal(model.eval().forward(x), restored.eval().forward(x))
    other = VisionTransformer(**TINY).load(path)
    np.testing.assert_array_equal(other.eval().forward(x), restored.forward(x))


def test_loading_a_checkpoint_from_another_config_names_the_mismatch(tmp_path):
    path = tmp_path / "vit.npz"
    VisionTransformer(**TINY).save(path)
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.q_proj\.weight"):
        VisionTransformer(**dict(TINY, depth=1)).load(path)
    with pytest.raises(ValueError, match=r"shape mismatches: \['blocks"):
        VisionTransformer(**dict(TINY, mlp_dim=16)).load(path)


def test_vit_rejects_integer_images():
    with pytest.raises(TypeError, match="floating point"):
        VisionTransformer(**TINY).forward(np.zeros((1, 2, 8, 8), dtype=np.uint8))


def test_vit_rejects_bad_config():
    with pytest.raises(ValueError, match="pool"):
        VisionTransformer(pool="max")
    with pytest.raises(ValueError, match="pos_encoding"):
        VisionTransformer(pos_encoding="rope")


@pytest.mark.task7
@pytest.mark.usefixtures("stored_sincos")
@pytest.mark.parametrize("pool, pos", [("cls", "learned"), ("mean", "sincos2d")])
def test_vit_in_float32_follows_float64(pool, pos):
    assert_float32_matches_float64(
        lambda: VisionTransformer(**dict(TINY, pool=pool, pos_encoding=pos)), (images(2, 2, 8),))


@pytest.mark.task7
def test_attention_weights_are_kept_per_block():
    model = VisionTransformer(**TINY)
    model.forward(images(2, 2, 8).astype(np.float32))
    weights = model.attention_weights()
    assert len(weights) == 2 and weights[0].shape == (2, 2, 5, 5)
