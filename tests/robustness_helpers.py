"""A tiny digits problem shared by the robustness tests (solver, checkpoints, kill/resume)."""
import pytest

from cs_vit import backend
from cs_vit.data import ArrayDataset, load_digits
from cs_vit.models import VisionTransformer
from cs_vit.solvers import ClassificationSolverViT

TINY_MODEL = dict(image_size=8, patch_size=4, in_channels=1, num_classes=10, embed_dim=16,
                  depth=1, num_heads=2, mlp_dim=32, dropout=0.1)


def tiny_digits(n_train=160, n_test=64):
    """(train, test): the first images of scikit-learn's digits, 5 batches of 32 per epoch."""
    train, test = load_digits()
    return (ArrayDataset(train.images[:n_train], train.labels[:n_train], train.class_names,
                         train.mean, train.std, train.name),
            ArrayDataset(test.images[:n_test], test.labels[:n_test], test.class_names,
                         train.mean, train.std, test.name))


def tiny_solver(data, num_epochs=2, model=None, **options):
    """A solver on ``data`` with a freshly seeded tiny ViT (or ``model``)."""
    backend.seed(0)
    model = model or VisionTransformer(**TINY_MODEL)
    options = {"verbose": False, "augment": True, **options}
    return ClassificationSolverViT(*data, model, num_epochs=num_epochs, learning_rate=2e-3,
                                   weight_decay=0.05, batch_size=32, **options)


def stop_after_epoch_1(solver):
    """Train ``solver`` until its first checkpoint is written, then stop as if killed."""
    save = solver._save

    def save_then_stop(path):
        save(path)
        raise KeyboardInterrupt

    solver._save = save_then_stop
    with pytest.raises(KeyboardInterrupt):
        solver.train("cpu")
