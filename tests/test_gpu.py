"""The CuPy backend on a real GPU: same results as NumPy, and no copies per training step.

Skipped on machines without CuPy and a CUDA GPU (CI has neither); run them on a GPU
machine with ``pytest tests/test_gpu.py``. They run the textbook layers (the fast
tier's GPU kernels have their own tests).
"""
import contextlib

import numpy as np
import pytest

from cs_vit import backend
from cs_vit.data import ArrayDataset, iterate_batches, load_digits
from cs_vit.layers import (
    GELU,
    Dropout,
    LayerNorm,
    MultiHeadAttention,
    no_grad,
    softmax_cross_entropy,
)
from cs_vit.models import VisionTransformer
from cs_vit.optim import make_optimizer
from cs_vit.solvers import ClassificationSolverViT
from tests.gradcheck import assert_gradients_match


def _gpu_available():
    try:
        backend.use("cupy")
    except backend.BackendUnavailableError:
        return False
    backend.use("numpy")
    return True


pytestmark = pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU")

SMALL_VIT = dict(image_size=8, patch_size=4, in_channels=2, num_classes=5, embed_dim=16,
                 depth=2, num_heads=2, mlp_dim=24)
DIGIT_MODEL = dict(image_size=8, patch_size=4, in_channels=1, num_classes=10, embed_dim=32,
                   depth=2, num_heads=2, mlp_dim=64)


def run_model(model, images, dlogits):
    """logits, input gradient and parameter gradients of one step, all as NumPy arrays."""
    logits = model.forward(backend.asarray(images))
    dimages = model.backward(backend.asarray(dlogits))
    grads = {name: backend.to_numpy(grad).copy() for name, _, grad in model.parameters()}
    return backend.to_numpy(logits), backend.to_numpy(dimages), grads


def on_both_backends(make_model, images, dlogits, training=True):
    """``run_model`` on NumPy, then on CuPy with the same (moved) parameters."""
    model = make_model().train(training)
    host = run_model(model, images, dlogits)
    backend.use("cupy")
    model.to_active_backend()
    device = run_model(model, images, dlogits)
    return host, device


@pytest.mark.parametrize("options", [dict(), dict(pool="mean", pos_encoding="sincos2d"),
                                     dict(pos_encoding="sincos1d")])
@pytest.mark.parametrize("training", [True, False])
def test_whole_vit_forward_and_backward_on_the_gpu_equal_numpy_in_float64(float64, options,
                                                                         training):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 2, 8, 8))
    dlogits = rng.standard_normal((3, 5))
    host, device = on_both_backends(lambda: VisionTransformer(**SMALL_VIT, **options),
                                    images, dlogits, training)
    np.testing.assert_allclose(device[0], host[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(device[1], host[1], rtol=0, atol=1e-12)
    assert device[2].keys() == host[2].keys()
    for name in host[2]:
        np.testing.assert_allclose(device[2][name], host[2][name], rtol=0, atol=1e-12,
                                   err_msg=name)


def test_float32_vit_on_the_gpu_stays_close_to_float64_numpy():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((4, 3, 32, 32))
    dlogits = rng.standard_normal((4, 10)) / 4
    backend.seed(0)
    with backend.precision("float64"):
        reference = VisionTransformer(patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_dim=48)
        host = run_model(reference, images, dlogits)
    model = VisionTransformer(patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_dim=48)
    model.load_state_dict(reference.state_dict())
    backend.use("cupy")
    model.to_active_backend()
    device = run_model(model, images.astype(np.float32), dlogits.astype(np.float32))
    assert device[0].dtype == np.float32
    np.testing.assert_allclose(device[0], host[0], atol=2e-5)
    np.testing.assert_allclose(device[1], host[1], atol=2e-5)
    for name in host[2]:
        np.testing.assert_allclose(device[2][name], host[2][name], atol=5e-5, err_msg=name)


@pytest.mark.parametrize("make_layer, shape", [
    (lambda: MultiHeadAttention(8, 2), (2, 3, 8)),
    (lambda: LayerNorm(6), (2, 3, 6)),
    (lambda: GELU(), (2, 3, 5)),
    (lambda: GELU(approximate="tanh"), (2, 3, 5)),
])
def test_layers_pass_the_numerical_gradient_check_on_the_gpu(float64, make_layer, shape):
    backend.use("cupy")
    backend.seed(0)
    layer = make_layer()
    x = backend.asarray(np.random.default_rng(2).standard_normal(shape))
    assert_gradients_match(layer, (x,))


def adamw_on_both_backends(device_context=contextlib.nullcontext):
    """Parameters after 3 AdamW steps from the same start: on NumPy, then on CuPy.

    The CuPy steps run inside ``device_context()`` (the fast tier's tests switch it on).
    """
    rng = np.random.default_rng(3)
    images, dlogits = rng.standard_normal((2, 2, 8, 8)), rng.standard_normal((2, 5))

    def three_steps(model):
        optimizer = make_optimizer("adamw", model, lr=1e-2, weight_decay=0.1)
        for _ in range(3):
            model.forward(backend.asarray(images))
            model.backward(backend.asarray(dlogits))
            optimizer.step()
        return model.state_dict()

    backend.seed(0)
    model = VisionTransformer(**SMALL_VIT)
    start = model.state_dict()
    host = three_steps(model)
    backend.use("cupy")
    model = VisionTransformer(**SMALL_VIT)
    model.load_state_dict(start)
    with device_context():
        return host, three_steps(model)


def test_adamw_on_the_gpu_equals_numpy(float64):
    host, device = adamw_on_both_backends()
    # Not 1e-12: a gradient that is rounding noise (the key bias's, which softmax ignores)
    # gets an update of up to lr * noise / eps from Adam, so it differs by ~1e-10 here.
    for name in host:
        np.testing.assert_allclose(device[name], host[name], rtol=0, atol=1e-8, err_msg=name)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def digit_solver(digits, **options):
    backend.use("numpy")
    backend.seed(0)
    model = VisionTransformer(**DIGIT_MODEL)
    return ClassificationSolverViT(*digits, model, num_epochs=6, learning_rate=2e-3,
                                   weight_decay=0.05, batch_size=32, verbose=False, **options)


def test_training_on_the_gpu_follows_the_cpu_run_and_learns_the_digits(digits):
    cpu = digit_solver(digits).train("cpu")
    gpu = digit_solver(digits).train("cuda")
    # Same initial weights and batches, no dropout: only float32 rounding differs.
    np.testing.assert_allclose(gpu["loss_history"][:10], cpu["loss_history"][:10], rtol=1e-3)
    assert gpu["best_test_acc"] > 0.85
    assert abs(gpu["best_test_acc"] - cpu["best_test_acc"]) < 0.03


def _memcpy_counts(profiler):
    counts = {"HtoD": 0, "DtoH": 0, "kernels": 0}
    for event in profiler.events():
        name = event.name
        if "Memcpy HtoD" in name:
            counts["HtoD"] += 1
        elif "Memcpy DtoH" in name:
            counts["DtoH"] += 1
        elif event.device_type.name == "CUDA":
            counts["kernels"] += 1
    return counts


def test_a_training_step_copies_only_the_logged_scalars_between_host_and_device(digits):
    torch_profiler = pytest.importorskip("torch.profiler")
    solver = digit_solver(digits, augment=True)
    solver.num_epochs = 1
    solver.train("cuda")  # builds the optimizer and schedule, uploads the dataset
    batches = iterate_batches(solver.train_data, 32, np.random.default_rng(0), augment=True,
                              drop_last=True, on_device=True)
    steps = [next(batches) for _ in range(4)]  # the epoch's choices are uploaded here
    solver._train_step(*steps[0], 0)
    backend.xp.cuda.get_current_stream().synchronize()
    with torch_profiler.profile(activities=[torch_profiler.ProfilerActivity.CUDA]) as profiler:
        for x, y in steps[1:]:
            solver._train_step(x, y, 0)
        backend.xp.cuda.get_current_stream().synchronize()
    counts = _memcpy_counts(profiler)
    assert counts["kernels"] > 100, f"the profiler saw too few GPU kernels to judge: {counts}"
    assert counts["HtoD"] == 0, counts
    # Per step: the loss and the gradient norm, the two scalars the solver logs.
    assert counts["DtoH"] <= 2 * 3, counts


def test_the_solvers_training_epoch_copies_per_epoch_not_per_step(digits):
    torch_profiler = pytest.importorskip("torch.profiler")
    solver = digit_solver(digits, augment=True)
    solver.num_epochs = 1
    solver.train("cuda")  # the first epoch copies the datasets to the GPU
    solver._seed_epoch(1)
    backend.xp.cuda.get_current_stream().synchronize()
    with torch_profiler.profile(activities=[torch_profiler.ProfilerActivity.CUDA]) as profiler:
        solver._train_epoch(1)  # past the schedule's end: learning rate 0, same work
        backend.xp.cuda.get_current_stream().synchronize()
    counts, steps = _memcpy_counts(profiler), solver.steps_per_epoch
    assert counts["kernels"] > 50 * steps, f"the profiler saw too few GPU kernels: {counts}"
    # Once an epoch: its order, crop offsets and flips, and the mean and std.
    assert counts["HtoD"] <= 8, counts
    # Per step the logged loss and gradient norm; once an epoch the number correct.
    assert counts["DtoH"] <= 2 * steps + 2, counts


def test_gpu_run_checkpoints_and_resumes(digits, tmp_path):
    first = digit_solver(digits, checkpoint_dir=str(tmp_path))
    first.num_epochs = 3
    first.train("cuda")
    resumed = digit_solver(digits, checkpoint_dir=str(tmp_path), resume=True)
    results = resumed.train("cuda")
    assert len(results["test_acc@1"]) == 6
    assert results["best_test_acc"] > 0.85


def test_inference_on_the_gpu_keeps_float32_and_no_caches():
    backend.use("cupy")
    model = VisionTransformer(patch_size=4).eval()
    x = backend.asarray(np.random.default_rng(4).standard_normal((8, 3, 32, 32)))
    with no_grad():
        logits = model.forward(x)
    assert logits.dtype == np.float32 and logits.shape == (8, 10)
    block = model.blocks[0]
    assert block.attn.cache is None and block.norm1.cache is None and block.mlp.fc1.x is None
    loss, dlogits = softmax_cross_entropy(logits, backend.xp.arange(8) % 10)
    assert np.isfinite(loss) and dlogits.dtype == np.float32


def test_device_copy_of_a_dataset_is_made_once_and_batches_equal_the_host_ones(digits):
    backend.use("cupy")
    train = ArrayDataset(digits[0].images[:128], digits[0].labels[:128], digits[0].class_names)
    first = next(iterate_batches(train, 32, np.random.default_rng(0), augment=True,
                                 on_device=True))
    images_on_gpu = train._device_copy["device"][0]
    second = next(iterate_batches(train, 32, np.random.default_rng(0), augment=True,
                                  on_device=True))
    assert train._device_copy["device"][0] is images_on_gpu  # kept, not made again
    assert type(first[0]).__module__.startswith("cupy")
    np.testing.assert_array_equal(backend.to_numpy(first[0]), backend.to_numpy(second[0]))
    host = next(iterate_batches(train, 32, np.random.default_rng(0), augment=True))
    np.testing.assert_allclose(backend.to_numpy(first[0]), host[0], atol=1e-6)  # crops, flips
    np.testing.assert_array_equal(backend.to_numpy(first[1]), host[1])


def test_initialisers_draw_on_the_host_and_dropout_from_the_gpu_generator():
    backend.use("numpy")
    backend.seed(0)
    on_cpu = VisionTransformer(**SMALL_VIT, dropout=0.5).state_dict()
    backend.use("cupy")
    backend.seed(0)
    model = VisionTransformer(**SMALL_VIT, dropout=0.5)  # uniform and truncated normal inits
    assert all(type(value).__module__.startswith("cupy") for _, value, _ in model.parameters())
    for name, value in model.state_dict().items():  # the same weights as on the CPU
        np.testing.assert_array_equal(value, on_cpu[name], err_msg=name)
    assert backend._state.device_rng is None  # no GPU generator until something drops out
    dropout = Dropout(0.25)
    x = backend.xp.ones((200, 100), dtype=np.float32)
    out = dropout.forward(x)
    assert type(backend._state.device_rng).__module__.startswith("cupy")  # made by dropout
    dropped = float((out == 0).mean())
    assert 0.2 < dropped < 0.3
    np.testing.assert_array_equal(backend.to_numpy(dropout.backward(x)), backend.to_numpy(out))


def test_gpu_training_with_batches_copied_per_step_equals_batches_kept_on_the_gpu(digits):
    kept = digit_solver(digits).train("cuda")
    copied = digit_solver(digits, data_on_device=False).train("cuda")
    np.testing.assert_allclose(copied["loss_history"], kept["loss_history"], rtol=1e-6)
