# cs-vit: instructor-only (part of the grading runtime)
"""The training check: the student's own ViT learns scikit-learn's 8x8 digits.

The parent (:func:`digits_for_child`) splits the digits, keeps the test labels
and adds fresh noise to the test images on every run; the child (:func:`train`)
trains the student's ``VisionTransformer`` with the student tree's solver, every
layer the student's, and returns its predictions on those images. The parent
computes the accuracy (:func:`judge_training`) and measures the time itself.

What the parent cannot verify is *how* the predictions were made: a submission
that hides some other classifier in its task files could pass. The noise only
keeps a submission from looking the test images up in the public dataset.
"""
from __future__ import annotations

import numpy as np

CLASSES = 10
# sklearn stores intensities 0..16; cs_vit.data.digits rescales them to 0..255 the same way.
SCALE = 255 / 16


def digits_for_child(settings, noise_seed):
    """({name: array} for the child, test labels kept by the parent)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * SCALE).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=settings["test_fraction"], random_state=0, stratify=labels)
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=settings["val_fraction"], random_state=0, stratify=y_train)
    noise = np.random.default_rng(noise_seed).normal(0.0, settings["noise"], x_test.shape)
    noisy = np.clip(np.round(x_test + noise), 0, 255).astype(np.uint8)
    arrays = {"train_images": x_train, "train_labels": y_train, "val_images": x_val,
              "val_labels": y_val, "test_images": noisy}
    return arrays, y_test


def train(arrays, settings, files):
    """In the child: ({"predictions": (N_test,)}, {}) or ({}, {"training": error})."""
    from .child import describe
    try:
        from cs_vit import backend
        from cs_vit.data.dataset import ArrayDataset
        from cs_vit.models import VisionTransformer
        from cs_vit.solvers import ClassificationSolverViT

        backend.set_default_dtype("float32")
        backend.seed(settings["seed"])
        names = [str(c) for c in range(CLASSES)]
        train_data = ArrayDataset(arrays["train_images"], arrays["train_labels"], names)
        val_data = ArrayDataset(arrays["val_images"], arrays["val_labels"], names,
                                train_data.mean, train_data.std)
        model = VisionTransformer(**settings["model"])
        solver = ClassificationSolverViT(train_data, val_data, model, verbose=False,
                                         seed=settings["seed"], **settings["solver"])
        solver.train("cpu")
        unlabelled = np.zeros(len(arrays["test_images"]), dtype=np.int64)
        test_data = ArrayDataset(arrays["test_images"], unlabelled, names, train_data.mean,
                                 train_data.std)
        predictions, _ = solver.predict(test_data)
        return {"predictions": np.asarray(predictions)}, {}
    except BaseException as err:
        return {}, {"training": describe(err, files)}


def judge_training(predictions, labels, settings, outcome):
    """(passed, text): the accuracy the parent computes from the child's predictions."""
    need = settings["threshold"]
    if predictions is None or predictions.shape != labels.shape:
        shape = None if predictions is None else predictions.shape
        return False, f"the predictions have shape {shape}, expected {labels.shape}"
    accuracy = float(np.mean(predictions == labels))
    verdict = "passed" if accuracy >= need else "FAILED"
    return accuracy >= need, (
        f"{verdict}: test accuracy {accuracy:.1%} on {len(labels)} held-out digits with noise "
        f"(needed: {need:.0%}); trained in {outcome.wall_s:.1f} s ({outcome.cpu_s:.1f} s of CPU)")
