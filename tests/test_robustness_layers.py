"""Layers and the model refuse wrong inputs and gradients where they are passed, naming them.

Shape checks that already have their own tests (Linear's last dimension, PatchEmbedding's
channels and size, attention's query/key/mask shapes, ...) live in each layer's test file.
"""
import numpy as np
import pytest

from cs_vit.layers import (
    GELU, MLP, Dropout, LayerNorm, LearnedPositionalEmbedding, Linear, MultiHeadAttention,
    PatchEmbedding, ReLU, SinusoidalPositionalEncoding, TransformerEncoderBlock,
    softmax_cross_entropy,
)
from cs_vit.models import VisionTransformer
from tests.robustness_helpers import TINY_MODEL

TOKENS = (2, 5, 8)  # (N, T, D)


def floats(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


# name -> (a layer taking one input, the shape of that input)
LAYERS = {
    "Linear": (lambda: Linear(8, 4), TOKENS),
    "LayerNorm": (lambda: LayerNorm(8), TOKENS),
    "GELU": (GELU, TOKENS),
    "ReLU": (ReLU, TOKENS),
    "Dropout": (lambda: Dropout(0.5), TOKENS),
    "MLP": (lambda: MLP(8, 16), TOKENS),
    "SinusoidalPositionalEncoding": (lambda: SinusoidalPositionalEncoding(8), TOKENS),
    "LearnedPositionalEmbedding": (lambda: LearnedPositionalEmbedding(5, 8), TOKENS),
    "MultiHeadAttention": (lambda: MultiHeadAttention(8, 2), TOKENS),
    "TransformerEncoderBlock": (lambda: TransformerEncoderBlock(8, 2, 16), TOKENS),
    "PatchEmbedding": (lambda: PatchEmbedding(8, 4, 3, 8), (2, 3, 8, 8)),
    "VisionTransformer": (lambda: VisionTransformer(**TINY_MODEL), (2, 1, 8, 8)),
}
# The layer whose check fires first: composite layers pass their input to a sub-layer.
FIRST_CHECK = {"TransformerEncoderBlock": "TransformerEncoderBlock"}
# The student task whose code a case runs (in the student tree, its stub fails the case):
# when the layer is built, and when its forward pass runs.
TASK_TO_BUILD = {"SinusoidalPositionalEncoding": "task2"}
TASK_TO_RUN = {"LayerNorm": "task3", "GELU": "task4", "MLP": "task4", "MultiHeadAttention": "task5",
               "TransformerEncoderBlock": "task7", "PatchEmbedding": "task1",
               "VisionTransformer": "task7", **TASK_TO_BUILD}


def layer_cases(tasks):
    """The names of LAYERS, each marked with its task in ``tasks`` (if any)."""
    return [pytest.param(name, marks=getattr(pytest.mark, tasks[name])) if name in tasks
            else name for name in LAYERS]
ARG = {"MultiHeadAttention": "query", "VisionTransformer": "images"}


@pytest.mark.parametrize("name", layer_cases(TASK_TO_BUILD))
def test_forward_refuses_integer_inputs_naming_the_layer_and_dtype(name):
    make, shape = LAYERS[name]
    owner, arg = FIRST_CHECK.get(name, name), ARG.get(name, "x")
    with pytest.raises(TypeError, match=rf"{owner} expected {arg} to be floating point "
                                        r"\(float32 or float64\), got dtype uint8"):
        make().forward(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("name", layer_cases(TASK_TO_BUILD))
def test_forward_refuses_a_list_naming_the_layer_and_type(name):
    make, shape = LAYERS[name]
    owner, arg = FIRST_CHECK.get(name, name), ARG.get(name, "x")
    with pytest.raises(TypeError, match=rf"{owner} expected {arg} to be a numpy array, got list"):
        make().forward(floats(*shape).tolist())


@pytest.mark.parametrize("name", layer_cases(TASK_TO_RUN))
def test_backward_refuses_a_gradient_that_numpy_would_broadcast(name):
    layer, shape = LAYERS[name][0](), LAYERS[name][1]
    out = layer.forward(floats(*shape))
    wrong = floats(*out.shape[1:])  # one sample's gradient: broadcastable, but wrong
    with pytest.raises(ValueError, match=rf"{name}.backward expected dout of shape "
                                         rf"\({', '.join(map(str, out.shape))}\) \(the shape of "
                                         rf"forward's output\), got shape \({wrong.shape[0]},"):
        layer.backward(wrong)


@pytest.mark.parametrize("name", layer_cases(TASK_TO_BUILD))
def test_backward_before_forward_says_to_run_forward_first(name):
    layer, shape = LAYERS[name][0](), LAYERS[name][1]
    with pytest.raises(RuntimeError, match=f"{name}.backward was called before {name}.forward"):
        layer.backward(floats(*shape))


@pytest.mark.task4
@pytest.mark.parametrize("name", ["Dropout", "GELU"])
def test_eval_mode_backward_still_checks_the_gradient_shape(name):
    layer = LAYERS[name][0]().eval()
    layer.forward(floats(*TOKENS))
    with pytest.raises(ValueError, match=rf"{name}.backward expected dout of shape \(2, 5, 8\)"):
        layer.backward(floats(5, 8))


def test_backward_refuses_an_integer_gradient():
    layer = Linear(8, 4)
    layer.forward(floats(2, 8))
    with pytest.raises(TypeError, match="Linear.backward expected dout to be floating point"):
        layer.backward(np.ones((2, 4), np.int64))


def test_a_transformer_block_refuses_tokens_without_a_batch_axis():
    with pytest.raises(ValueError, match=r"TransformerEncoderBlock expected x of shape \(N, T, "
                                         r"D=8\), got shape \(5, 8\)"):
        TransformerEncoderBlock(8, 2, 16).forward(floats(5, 8))


def test_linear_refuses_a_scalar_input():
    with pytest.raises(ValueError, match=r"Linear expected inputs with last dimension 8, got "
                                         r"shape \(\)"):
        Linear(8, 4).forward(np.ones((), np.float32))


def test_the_loss_refuses_integer_logits():
    with pytest.raises(TypeError, match="softmax_cross_entropy expected logits to be floating "
                                        "point .*got dtype int64"):
        softmax_cross_entropy(np.zeros((2, 3), np.int64), np.array([0, 1]))


def test_the_loss_refuses_labels_given_as_a_list():
    with pytest.raises(TypeError, match="softmax_cross_entropy expected labels to be a numpy "
                                        "array, got list"):
        softmax_cross_entropy(floats(2, 3), [0, 1])


@pytest.mark.task7
def test_a_model_fed_images_with_other_channels_names_in_channels():
    model = VisionTransformer(**TINY_MODEL)
    with pytest.raises(ValueError, match=r"expected images with 1 channels \(in_channels\), got 3 "
                                         r"channels in an input of shape \(2, 3, 8, 8\)"):
        model.forward(floats(2, 3, 8, 8))


@pytest.mark.task7
def test_a_model_fed_images_of_another_size_names_image_size():
    model = VisionTransformer(**TINY_MODEL)
    with pytest.raises(ValueError, match=r"expected 8x8 images \(image_size\), got 16x16"):
        model.forward(floats(2, 1, 16, 16))


@pytest.mark.task7
def test_a_model_fed_a_single_image_asks_for_a_batch():
    model = VisionTransformer(**TINY_MODEL)
    with pytest.raises(ValueError, match=r"batch of images of shape \(N, C, H, W\), got an array "
                                         r"of shape \(1, 8, 8\)"):
        model.forward(floats(1, 8, 8))


def test_a_model_whose_image_size_is_not_divisible_by_the_patch_size_is_refused():
    with pytest.raises(ValueError, match="image height 30 is not divisible by patch_size 4"):
        VisionTransformer(**dict(TINY_MODEL, image_size=30))


def test_a_model_whose_embed_dim_is_not_divisible_by_num_heads_is_refused():
    with pytest.raises(ValueError, match="embed_dim 18 is not divisible by num_heads 4"):
        VisionTransformer(**dict(TINY_MODEL, embed_dim=18, num_heads=4))


def test_a_model_file_from_another_config_is_refused_naming_the_file(tmp_path):
    VisionTransformer(**TINY_MODEL).save(tmp_path / "model.npz")
    model = VisionTransformer(**dict(TINY_MODEL, num_classes=5))
    with pytest.raises(ValueError, match=r"(?s)model.npz does not fit this model.*head.weight: "
                                         r"checkpoint \(10, 16\) vs model \(5, 16\)"):
        model.load(tmp_path / "model.npz")


def test_float64_inputs_are_still_accepted_by_a_float32_layer():
    """Only the kind of dtype is checked: mixing float32 and float64 is allowed."""
    assert Linear(8, 4).forward(floats(2, 8).astype(np.float64)).shape == (2, 4)
