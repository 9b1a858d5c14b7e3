"""The solver answers each mistake with an error that names the argument, the value and the fix."""
import hashlib
import math

import numpy as np
import pytest

from cs_vit.models import VisionTransformer
from cs_vit.solvers import ClassificationSolverViT, TrainingDivergedError
from cs_vit.solvers import classification_solver_vit as solver_module
from cs_vit.solvers.checkpoint import checkpoint_path, load_checkpoint
from tests.gradcheck import assert_same_parameters
from tests.robustness_helpers import TINY_MODEL, tiny_digits, tiny_solver


@pytest.fixture(scope="module")
def data():
    return tiny_digits()


def arrays(data, labels=None, n=None):
    """The train split as an (images, labels) tuple, with other labels or fewer images if given."""
    train, _ = data
    images = train.images if n is None else train.images[:n]
    return images, train.labels[: len(images)] if labels is None else labels


def test_float_labels_are_refused_naming_train_data(data):
    images, labels = arrays(data)
    with pytest.raises(TypeError, match="train_data: labels must be integers .*got dtype float64"):
        tiny_solver(((images, labels.astype(np.float64)), data[1]))


def test_negative_labels_are_refused_naming_test_data(data):
    train, test = data
    labels = test.labels.copy()
    labels[3] = -1
    with pytest.raises(ValueError, match=r"test_data: labels must lie in \[0, 10\).*from -1"):
        tiny_solver((train, (test.images, labels)))


def test_labels_beyond_the_models_classes_are_refused(data):
    images, labels = arrays(data)
    labels = labels.copy()
    labels[0] = 12
    with pytest.raises(ValueError, match=r"train_data \(arrays\) has 13 classes \(labels up to "
                                         r"12\) .*num_classes=10, so labels must lie in \[0, 10\)"):
        tiny_solver(((images, labels), data[1]))


def test_an_empty_training_set_is_refused(data):
    images, labels = arrays(data, n=0)
    with pytest.raises(ValueError, match="train_data: the dataset is empty"):
        tiny_solver(((images, labels), data[1]))


def test_an_empty_test_set_is_refused(data):
    images, labels = arrays(data, n=0)
    with pytest.raises(ValueError, match="test_data: the dataset is empty"):
        tiny_solver((data[0], (images, labels)))


def test_a_batch_larger_than_the_training_set_is_refused(data):
    with pytest.raises(ValueError, match="batch_size must be between 1 and the 40 training "
                                         "images, got 64"):
        ClassificationSolverViT(arrays(data, n=40), data[1], VisionTransformer(**TINY_MODEL),
                                batch_size=64)


def test_images_of_another_size_than_the_model_are_refused(data):
    model = VisionTransformer(**dict(TINY_MODEL, image_size=16))
    with pytest.raises(ValueError, match=r"expects images of shape \(C, H, W\) = \(1, 16, 16\), "
                                         r"but train_data \(digits\) has \(1, 8, 8\)"):
        tiny_solver(data, model=model)


@pytest.mark.parametrize("arg, value, error, match", [
    ("num_epochs", 2.5, TypeError, "num_epochs must be a positive integer, got 2.5"),
    ("num_epochs", 0, ValueError, "num_epochs must be a positive integer, got 0"),
    ("batch_size", "32", TypeError, "batch_size must be a positive integer, got '32'"),
    ("learning_rate", -1e-3, ValueError, "learning_rate must be a finite number >= 0, got -0.001"),
    ("learning_rate", math.nan, ValueError, "learning_rate must be a finite number >= 0, got nan"),
    ("weight_decay", None, TypeError, "weight_decay must be a number, got None"),
])
def test_solver_arguments_of_the_wrong_type_or_range_are_refused(data, arg, value, error, match):
    kwargs = {"num_epochs": 1, "learning_rate": 1e-3, "weight_decay": 0.0, "batch_size": 32,
              arg: value}
    with pytest.raises(error, match=match):
        ClassificationSolverViT(*data, VisionTransformer(**TINY_MODEL), **kwargs)


@pytest.mark.parametrize("options, match", [
    ({"label_smoothing": 1.5}, r"label_smoothing must lie in \[0, 1\], got 1.5"),
    ({"schedule": "cosin"}, "unknown learning-rate schedule 'cosin'"),
    ({"warmup_epochs": 5}, r"warmup_epochs \(5\) must not exceed num_epochs \(2\)"),
    ({"resume": True}, "resume=True needs checkpoint_dir"),
    ({"grad_clip": -1.0}, "grad_clip must be a finite number >= 0, got -1.0"),
    ({"schedule": "step"}, "schedule='step' needs lr_step_epochs, the number of epochs"),
    ({"lr_step_epochs": 2}, "lr_step_epochs only applies to schedule='step', not 'cosine'"),
    ({"schedule": "constant", "min_lr": 1e-4}, "min_lr only applies to schedule='cosine', not "
                                               "'constant'"),
    ({"schedule": "step", "lr_step_epochs": 1, "warmup_epochs": 1},
     "warmup_epochs only applies to schedule='cosine', not 'step'"),
    ({"schedule": "step", "lr_step_epochs": 0.1}, "lr_step_epochs=0.1 is less than one step of "
                                                  "the 5 per epoch; give at least 0.2 epochs"),
    ({"val_split": 1.0}, r"val_split is the fraction .* must lie in \[0, 1\), got 1.0"),
    ({"val_split": 0.001}, "val_split: holding out a fraction 0.001 of the 160 images of digits "
                           "leaves 0 held out and 160 to train on"),
])
def test_bad_options_are_refused_when_the_solver_is_built(data, options, match):
    with pytest.raises(ValueError, match=match):
        tiny_solver(data, **options)


def _poison_gradients_at(solver, step):
    """Make the model's backward write a NaN into one gradient at global ``step``."""
    backward = solver.model.backward

    def backward_then_poison(dlogits, **kwargs):
        dx = backward(dlogits, **kwargs)
        if solver.step == step:
            solver.model.head.grads["weight"][0, 0] = np.nan
        return dx

    solver.model.backward = backward_then_poison


@pytest.mark.training
def test_nan_gradients_stop_training_naming_the_iteration_and_learning_rate(data):
    solver = tiny_solver(data)
    _poison_gradients_at(solver, 3)
    with pytest.raises(TrainingDivergedError, match=r"iteration 3 \(epoch 1, batch 4 of 5\): the "
                                                    r"gradients became non-finite \(norm nan\).*"
                                                    r"learning rate \(.*\) is probably too high"):
        solver.train("cpu")
    assert np.isfinite(solver.model.head.params["weight"]).all()


@pytest.mark.training
def test_an_infinite_loss_stops_training_naming_the_iteration(data, monkeypatch):
    solver = tiny_solver(data)
    loss_and_gradient = solver_module.softmax_cross_entropy

    def loss_overflowing_at_iteration_2(logits, labels, label_smoothing=0.0):
        loss, dlogits = loss_and_gradient(logits, labels, label_smoothing)
        return (math.inf if solver.step == 2 and solver.model.training else loss), dlogits

    monkeypatch.setattr(solver_module, "softmax_cross_entropy", loss_overflowing_at_iteration_2)
    with pytest.raises(TrainingDivergedError, match=r"iteration 2 \(epoch 1, batch 3 of 5\): the "
                                                    r"loss became inf.*learning rate"):
        solver.train("cpu")


@pytest.mark.training
def test_divergence_keeps_the_last_good_checkpoint(data, tmp_path):
    solver = tiny_solver(data, checkpoint_dir=tmp_path)
    path = checkpoint_path(tmp_path)
    digest_before_failure = {}
    backward = solver.model.backward

    def remember_checkpoint_then_poison(dlogits, **kwargs):
        dx = backward(dlogits, **kwargs)
        if solver.step == 7:  # epoch 2, after the epoch-1 checkpoint was written
            digest_before_failure["md5"] = hashlib.md5(open(path, "rb").read()).hexdigest()
            solver.model.head.grads["weight"][0, 0] = np.inf
        return dx

    solver.model.backward = remember_checkpoint_then_poison
    with pytest.raises(TrainingDivergedError, match=r"last good checkpoint \(end of epoch 1\) is "
                                                    rf"kept in {path}"):
        solver.train("cpu")
    assert hashlib.md5(open(path, "rb").read()).hexdigest() == digest_before_failure["md5"]
    model_state, _, _, meta = load_checkpoint(path)
    assert meta["epoch"] == 1 and meta["step"] == 5
    assert all(np.isfinite(value).all() for value in model_state.values())


@pytest.mark.training
def test_a_diverged_run_resumes_from_its_last_good_checkpoint(data, tmp_path):
    straight = tiny_solver(data)
    straight.train("cpu")
    failing = tiny_solver(data, checkpoint_dir=tmp_path)
    _poison_gradients_at(failing, 7)
    with pytest.raises(TrainingDivergedError):
        failing.train("cpu")
    resumed = tiny_solver(data, checkpoint_dir=tmp_path, resume=True)
    resumed.train("cpu")
    assert resumed.results["loss_history"] == straight.results["loss_history"]
    assert_same_parameters(straight.model, resumed.model)
