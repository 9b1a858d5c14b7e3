# cs-vit: instructor-only (tests of the fast tier, which the student release leaves out)
"""The static-buffer training step (what the GPU captures as a CUDA graph), run on NumPy.

On NumPy ``StaticTrainStep`` runs the same step as the solver's ``_train_step``
over fixed buffers, so it must give the same parameters, losses and gradient
norms bit for bit; the solver's graph path (``_train_epoch_static``) must record
the same results as its step-by-step path. tests/test_fast_gpu.py runs the
captured graph itself against the uncaptured step on a GPU.
"""
import math

import numpy as np
import pytest

from cs_vit import backend, fast
from cs_vit.fast import captured
from cs_vit.fast.captured import StaticForward, StaticTrainStep, check_capturable
from cs_vit.layers import no_grad, softmax_cross_entropy
from cs_vit.models import VisionTransformer
from cs_vit.optim import clip_grad_norm, make_optimizer, set_lr
from cs_vit.solvers import ClassificationSolverViT, TrainingDivergedError
from cs_vit.solvers import classification_solver_vit as solver_module
from tests.test_robustness_solver import _poison_gradients_at

CONFIG = dict(image_size=8, patch_size=4, in_channels=1, num_classes=4, embed_dim=16, depth=2,
              num_heads=2, mlp_dim=32)
BATCH = 6


@pytest.fixture(autouse=True)
def fast_tier():
    with fast.enabled(True):
        yield


def model_and_optimizer(seed=0, **config):
    backend.seed(seed)
    model = VisionTransformer(**{**CONFIG, **config})
    return model, make_optimizer("adamw", model, lr=1e-2, weight_decay=0.05)


def batches(count, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((BATCH, 1, 8, 8)).astype(np.float32),
             rng.integers(0, 4, BATCH)) for _ in range(count)]


def eager_steps(model, optimizer, data, lrs, grad_clip=None):
    """The solver's _train_step, written out: losses and gradient norms per step."""
    losses, norms = [], []
    for (x, y), lr in zip(data, lrs):
        set_lr(optimizer, lr)
        loss, dlogits = softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits, input_grad=False)
        norms.append(clip_grad_norm(optimizer.params, grad_clip if grad_clip else math.inf))
        optimizer.step()
        losses.append(loss)
    return losses, norms


@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_static_step_on_numpy_equals_the_solvers_step_bit_for_bit(grad_clip):
    data, lrs = batches(5), [1e-2, 5e-3, 2e-3, 1e-3, 1e-3]
    model, optimizer = model_and_optimizer()
    losses, norms = eager_steps(model, optimizer, data, lrs, grad_clip)
    static_model, static_optimizer = model_and_optimizer()
    step = StaticTrainStep(static_model, static_optimizer, BATCH, grad_clip=grad_clip)
    for (x, y), lr in zip(data, lrs):
        step(x, y, lr)
    static_losses, static_norms, correct = step.flush()
    assert static_losses == pytest.approx(losses, rel=1e-6, abs=0)
    assert static_norms == pytest.approx(norms, rel=1e-6, abs=0)
    if grad_clip:
        assert max(norms) > grad_clip  # the clip was exercised
    for (name, value, _), (_, static_value, _) in zip(model.parameters(),
                                                     static_model.parameters()):
        np.testing.assert_array_equal(static_value, value, err_msg=name)
    assert static_optimizer.step_count == optimizer.step_count == 5
    assert 0 <= correct <= 5 * BATCH


def test_flush_returns_each_step_once_and_counts_the_correct_predictions():
    model, optimizer = model_and_optimizer()
    step = StaticTrainStep(model, optimizer, BATCH)
    data = batches(3)
    expected_correct = 0
    for x, y in data:
        logits = model.forward(x)  # the prediction the step's forward pass will make
        expected_correct += int((logits.argmax(axis=1) == y).sum())
        step(x, y, 1e-3)
        if len(step.flush()[0]) != 1:
            pytest.fail("each flush returns the one step since the last")
    assert step.flush() == ([], [], 0)
    model2, optimizer2 = model_and_optimizer()
    step2 = StaticTrainStep(model2, optimizer2, BATCH)
    for x, y in data:
        step2(x, y, 1e-3)
    assert step2.flush()[2] == expected_correct


def test_logs_beyond_the_device_capacity_move_to_the_host(monkeypatch):
    monkeypatch.setattr(captured, "LOG_CAPACITY", 2)
    model, optimizer = model_and_optimizer()
    step = StaticTrainStep(model, optimizer, BATCH)
    for x, y in batches(5):
        step(x, y, 1e-3)
    losses, norms, _ = step.flush()
    assert len(losses) == len(norms) == 5 and all(math.isfinite(v) for v in losses + norms)


def test_a_batch_of_another_shape_is_refused_with_both_shapes():
    model, optimizer = model_and_optimizer()
    step = StaticTrainStep(model, optimizer, BATCH)
    x, y = batches(1)[0]
    with pytest.raises(ValueError, match=r"built for batches of images \(6, 1, 8, 8\)"):
        step(x[:4], y[:4], 1e-3)


def test_only_the_flat_adamw_of_a_model_without_dropout_can_be_captured():
    model, _ = model_and_optimizer()
    with pytest.raises(ValueError, match="flat AdamW.*got SGD"):
        check_capturable(model, make_optimizer("sgd", model, lr=0.1))
    with fast.enabled(False):
        textbook = make_optimizer("adamw", model, lr=0.1)
    with pytest.raises(ValueError, match="flat AdamW"):
        check_capturable(model, textbook)
    dropping, optimizer = model_and_optimizer(dropout=0.1)
    with pytest.raises(ValueError, match="without dropout.*dropout=0.1"):
        check_capturable(dropping, optimizer)


def solver(graph, **options):
    rng = np.random.default_rng(3)
    images = rng.random((60, 1, 8, 8), dtype=np.float32)
    labels = rng.integers(0, 4, 60)
    model, _ = model_and_optimizer()
    return ClassificationSolverViT((images, labels), (images[:20], labels[:20]), model,
                                   num_epochs=2, learning_rate=1e-2, weight_decay=0.05,
                                   batch_size=BATCH, graph=graph, verbose=False,
                                   warmup_epochs=0.5, **options)


def test_the_cpu_solver_steps_one_by_one():
    run = solver(True)
    run.train("cpu")
    assert not run.static_step  # no graph on the CPU: the textbook loop ran


def test_the_solvers_graph_path_records_what_its_step_by_step_path_records(monkeypatch):
    eager = solver(False, grad_clip=1.0)
    eager.train("cpu")
    monkeypatch.setattr(solver_module, "LOG_EVERY", 4)  # flushes mid-epoch and at its end
    monkeypatch.setattr(solver_module, "make_static_step", StaticTrainStep)
    static = solver(True, grad_clip=1.0)
    static.train("cpu")
    assert isinstance(static.static_step, StaticTrainStep)
    for key in ("loss_history", "grad_norm_history", "train_loss"):
        assert static.results[key] == pytest.approx(eager.results[key], rel=1e-6, abs=0), key
    for key in ("lr_history", "train_acc@1", "test_acc@1", "test_loss"):
        assert static.results[key] == eager.results[key], key
    assert len(static.results["loss_history"]) == 2 * (60 // BATCH)


def test_a_diverging_graph_run_names_the_first_bad_iteration(monkeypatch):
    monkeypatch.setattr(solver_module, "LOG_EVERY", 4)  # found at the flush after iteration 7
    monkeypatch.setattr(solver_module, "make_static_step", StaticTrainStep)
    run = solver(True)
    _poison_gradients_at(run, 6)
    with pytest.raises(TrainingDivergedError, match=r"iteration 6 \(epoch 1, batch 7 of 10\): the "
                                                    r"gradients became non-finite \(norm nan\)"):
        run.train("cpu")


def test_static_forward_on_numpy_gives_the_models_logits():
    model, _ = model_and_optimizer()
    model.eval()
    forward = StaticForward(model, BATCH)
    for x, _ in batches(3):
        with no_grad():
            expected = model.forward(x)
        np.testing.assert_array_equal(forward(x), expected)
    assert not forward.captured  # graphs are for the GPU
    with pytest.raises(ValueError, match=r"built for images \(6, 1, 8, 8\), got \(2, 1, 8, 8\)"):
        forward(x[:2])


def test_graph_must_be_true_or_false():
    with pytest.raises(TypeError, match="graph must be True or False, got 'yes'"):
        solver("yes")
