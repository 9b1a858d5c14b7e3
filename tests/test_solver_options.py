"""Each solver option changes what it should, checked through ``ClassificationSolverViT``.

The solver trains a tiny ViT in float64 while the tests record what it hands the
optimizer at every step (the gradients before and after clipping, the learning rate).
torch then replays those steps from the same start with its own optimizer, clipping
and schedule, and must end on the solver's parameters.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cs_vit import backend
from cs_vit.data import ArrayDataset
from cs_vit.models import VisionTransformer
from cs_vit.optim import OPTIMIZERS, decays
from cs_vit.solvers import ClassificationSolverViT
from cs_vit.solvers import classification_solver_vit as solver_module
from tests.gradcheck import assert_all_close, torch_optimizer

MODEL = dict(image_size=8, patch_size=4, in_channels=1, num_classes=4, embed_dim=8, depth=1,
             num_heads=2, mlp_dim=16)
STEPS_PER_EPOCH = 3  # 48 images, batches of 16
TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 1, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 4, 64)
    names = ["a", "b", "c", "d"]
    return (ArrayDataset(images[:48], labels[:48], names, name="noise"),
            ArrayDataset(images[48:], labels[48:], names, name="noise"))


def make_solver(data, num_epochs=1, learning_rate=0.05, weight_decay=0.1, **options):
    backend.seed(0)
    options = {"verbose": False, "augment": False, "schedule": "constant", **options}
    return ClassificationSolverViT(*data, VisionTransformer(**MODEL), num_epochs=num_epochs,
                                   learning_rate=learning_rate, weight_decay=weight_decay,
                                   batch_size=16, **options)


class StepRecorder:
    """Records, at each step of ``solver``, the gradients before and after clipping, the lr
    the optimizer steps with and the parameters after its step."""

    def __init__(self, solver, monkeypatch):
        self.start = solver.model.state_dict()
        self.steps = []
        model, backward = solver.model, solver.model.backward

        def recording_backward(dlogits, **kwargs):
            dimages = backward(dlogits, **kwargs)
            self.steps.append({"dlogits": dlogits.copy(), "grads": grads_of(model)})
            return dimages

        def recording_make_optimizer(*args, **kwargs):
            optimizer = make_optimizer(*args, **kwargs)
            step = optimizer.step

            def recording_step():
                self.steps[-1].update(clipped=grads_of(model), lr=optimizer.lr)
                step()
                self.steps[-1]["after"] = model.state_dict()

            optimizer.step = recording_step
            return optimizer

        make_optimizer = solver_module.make_optimizer
        model.backward = recording_backward
        monkeypatch.setattr(solver_module, "make_optimizer", recording_make_optimizer)


def grads_of(model):
    return {name: grad.copy() for name, _, grad in model.parameters()}


def torch_replay(recorder, lrs, optimizer, weight_decay, grad_clip=None, **options):
    """The parameters torch reaches from ``recorder.start`` with the recorded gradients
    before clipping, its own clipping and the learning rates ``lrs``."""
    tensors = {name: torch.tensor(value) for name, value in recorder.start.items()}
    decayed = {name for name, value in recorder.start.items() if decays(name, value)}
    reference = torch_optimizer(TORCH_OPTIMIZERS[optimizer], tensors, decayed, weight_decay,
                                lr=lrs[0], **options)
    for lr, step in zip(lrs, recorder.steps):
        for name, tensor in tensors.items():
            tensor.grad = torch.tensor(step["grads"][name])
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(list(tensors.values()), grad_clip)
        for group in reference.param_groups:
            group["lr"] = lr
        reference.step()
    return {name: tensor.numpy() for name, tensor in tensors.items()}


def assert_solver_ends_where_torch_does(recorder, lrs, optimizer, weight_decay, **options):
    expected = torch_replay(recorder, lrs, optimizer, weight_decay, **options)
    final = recorder.steps[-1]["after"]
    assert_all_close({name: (final[name], expected[name]) for name in expected},
                     f"torch's {optimizer} replaying the solver's steps")


@pytest.mark.training
@pytest.mark.parametrize("optimizer, options, torch_options", [
    ("sgd", {"momentum": 0.5}, {"momentum": 0.5}),
    ("sgd", {"momentum": 0.0}, {}),
    ("adam", {}, {}),
    ("adamw", {}, {}),
], ids=["sgd_momentum_0.5", "sgd_no_momentum", "adam", "adamw"])
def test_the_optimizer_and_its_momentum_step_as_torchs_do(float64, data, monkeypatch,
                                                          optimizer, options, torch_options):
    solver = make_solver(data, num_epochs=2, optimizer=optimizer, **options)
    recorder = StepRecorder(solver, monkeypatch)
    solver.train("cpu")
    assert type(solver.optimizer) is OPTIMIZERS[optimizer]
    assert len(recorder.steps) == 2 * STEPS_PER_EPOCH
    assert_solver_ends_where_torch_does(recorder, [0.05] * 6, optimizer, 0.1, **torch_options)


@pytest.mark.training
def test_every_update_uses_gradients_clipped_to_grad_clip(float64, data, monkeypatch):
    grad_clip = 0.05
    solver = make_solver(data, num_epochs=2, optimizer="sgd", momentum=0.0, grad_clip=grad_clip)
    recorder = StepRecorder(solver, monkeypatch)
    results = solver.train("cpu")
    norms = []
    for step, recorded_norm in zip(recorder.steps, results["grad_norm_history"]):
        norm = math.sqrt(sum(np.sum(g * g) for g in step["grads"].values()))
        clipped_norm = math.sqrt(sum(np.sum(g * g) for g in step["clipped"].values()))
        assert recorded_norm == pytest.approx(norm, rel=1e-12)
        assert clipped_norm <= grad_clip * (1 + 1e-12)
        scale = min(1.0, grad_clip / (norm + 1e-6))
        assert_all_close({name: (step["clipped"][name], scale * grad)
                          for name, grad in step["grads"].items()}, "the scaled gradients")
        norms.append(norm)
    assert min(norms) > grad_clip, "the limit must be low enough to clip every step"
    assert_solver_ends_where_torch_does(recorder, [0.05] * 6, "sgd", 0.1, grad_clip=grad_clip)


def warmup_cosine(base_lr, min_lr, warmup_steps, total_steps):
    """The cosine schedule's lr at each step: linear warmup, then a half cosine to min_lr."""
    return [base_lr * (step + 1) / (warmup_steps + 1) if step < warmup_steps else
            min_lr + (base_lr - min_lr) * (1 + math.cos(
                math.pi * (step - warmup_steps) / (total_steps - warmup_steps))) / 2
            for step in range(total_steps)]


SCHEDULES = {
    "cosine_with_warmup": ({"schedule": "cosine", "warmup_epochs": 1.0, "min_lr": 0.005},
                           warmup_cosine(0.05, 0.005, 3, 9)),
    "constant": ({"schedule": "constant"}, [0.05] * 9),
    "step_every_epoch": ({"schedule": "step", "lr_step_epochs": 1}, [0.05] * 3 + [0.005] * 3
                         + [0.0005] * 3),
    "step_every_2_epochs": ({"schedule": "step", "lr_step_epochs": 2}, [0.05] * 6 + [0.005] * 3),
    "step_every_third_of_an_epoch": ({"schedule": "step", "lr_step_epochs": 1 / 3},
                                     [0.05 * 0.1 ** step for step in range(9)]),
}


@pytest.mark.training
@pytest.mark.parametrize("name", SCHEDULES)
def test_each_step_uses_the_schedules_learning_rate(float64, data, monkeypatch, name):
    options, expected = SCHEDULES[name]
    solver = make_solver(data, num_epochs=3, optimizer="sgd", momentum=0.0, **options)
    recorder = StepRecorder(solver, monkeypatch)
    results = solver.train("cpu")
    assert results["lr_history"] == pytest.approx(expected, rel=1e-12, abs=0)
    assert [step["lr"] for step in recorder.steps] == results["lr_history"]
    assert_solver_ends_where_torch_does(recorder, expected, "sgd", 0.1)


@pytest.mark.training
def test_the_cosine_schedule_reaches_min_lr_at_the_end_of_training(float64, data):
    solver = make_solver(data, num_epochs=3, schedule="cosine", warmup_epochs=1.0, min_lr=0.005)
    lrs = solver.train("cpu")["lr_history"]
    assert solver.step == 9 and solver.schedule(solver.step) == pytest.approx(0.005, rel=1e-12)
    assert min(lrs) == lrs[-1] > 0.005
    assert lrs[-1] == pytest.approx(0.005 + 0.045 * (1 - math.cos(math.pi / 6)) / 2, rel=1e-12)


@pytest.mark.training
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_label_smoothing_gives_torchs_loss_and_gradient(float64, data, monkeypatch,
                                                        label_smoothing):
    solver = make_solver(data, num_epochs=1, label_smoothing=label_smoothing)
    recorder = StepRecorder(solver, monkeypatch)
    batches = []
    loss_of = solver_module.softmax_cross_entropy

    def recording_loss(logits, labels, *args):
        if solver.model.training:
            batches.append((logits.copy(), labels.copy()))
        return loss_of(logits, labels, *args)

    monkeypatch.setattr(solver_module, "softmax_cross_entropy", recording_loss)
    results = solver.train("cpu")
    assert len(batches) == STEPS_PER_EPOCH
    for (logits, labels), loss, step in zip(batches, results["loss_history"], recorder.steps):
        logits_t = torch.tensor(logits, requires_grad=True)
        loss_t = F.cross_entropy(logits_t, torch.tensor(labels), label_smoothing=label_smoothing)
        loss_t.backward()
        assert loss == pytest.approx(loss_t.item(), rel=1e-12)
        assert_all_close({"dlogits": (step["dlogits"], logits_t.grad)}, "torch's cross_entropy")
        unsmoothed = F.cross_entropy(torch.tensor(logits), torch.tensor(labels)).item()
        assert (loss == pytest.approx(unsmoothed, rel=1e-12)) == (label_smoothing == 0)
