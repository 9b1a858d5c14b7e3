"""``val_split``: the epoch kept is chosen on images held out of the training set, and the
test set is evaluated once, at the end, by the model kept."""
import numpy as np
import pytest

from cs_vit.data import ArrayDataset, hold_out
from tests.robustness_helpers import stop_after_epoch_1, tiny_digits, tiny_solver


@pytest.fixture(scope="module")
def data():
    return tiny_digits()


def numbered(n):
    """n one-pixel images whose pixel value is their index; label = index % 3."""
    return ArrayDataset(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.arange(n) % 3,
                        ["a", "b", "c"], mean=(0.5,), std=(0.25,), name="numbers")


def indices(dataset):
    return dataset.images.ravel().tolist()


def test_hold_out_sets_aside_a_rounded_fraction_drawn_by_the_generator():
    data = numbered(50)
    rest, held = hold_out(data, 0.1, np.random.default_rng(0))
    assert len(held) == 5 and len(rest) == 45
    assert sorted(indices(rest) + indices(held)) == list(range(50))
    for part in (rest, held):
        np.testing.assert_array_equal(part.labels, part.images.ravel() % 3)
        assert (part.name, part.class_names, part.mean, part.std) == (
            data.name, data.class_names, data.mean, data.std)
    assert indices(hold_out(data, 0.1, np.random.default_rng(0))[1]) == indices(held)
    assert indices(hold_out(data, 0.1, np.random.default_rng(1))[1]) != indices(held)


@pytest.mark.parametrize("fraction, held, rest", [(0.005, 0, 50), (0.995, 50, 0)])
def test_hold_out_refuses_a_split_that_leaves_a_part_empty(fraction, held, rest):
    with pytest.raises(ValueError, match=f"leaves {held} held out and {rest} to train on"):
        hold_out(numbered(50), fraction, np.random.default_rng(0))


def rows(*datasets):
    return sorted(image.tobytes() for dataset in datasets for image in dataset.images)


def test_the_solver_trains_on_the_rest_of_a_split_drawn_by_its_seed(data):
    solver = tiny_solver(data, val_split=0.25)
    assert (len(solver.train_data), len(solver.val_data)) == (120, 40)
    assert solver.steps_per_epoch == 120 // 32
    assert rows(solver.train_data, solver.val_data) == rows(data[0])
    assert rows(tiny_solver(data, val_split=0.25).val_data) == rows(solver.val_data)
    assert rows(tiny_solver(data, val_split=0.25, seed=1).val_data) != rows(solver.val_data)


def test_without_a_validation_split_results_have_only_the_course_keys(data):
    assert tiny_solver(data).val_data is None
    assert not {"val_loss", "val_acc@1", "best_val_acc"} & set(tiny_solver(data).results)


@pytest.mark.training
def test_the_epoch_is_chosen_on_validation_and_the_test_set_is_read_once(data):
    solver = tiny_solver(data, num_epochs=3, val_split=0.25)
    evaluated = []
    evaluate = solver.evaluate

    def recording_evaluate(dataset):
        evaluated.append(dataset)
        return evaluate(dataset)

    solver.evaluate = recording_evaluate
    results = solver.train("cpu")
    assert evaluated == [solver.val_data] * 3 + [solver.test_data]
    assert len(results["train_loss"]) == len(results["val_loss"]) == len(results["val_acc@1"]) == 3
    best = results["best_val_acc"]
    assert best == max(results["val_acc@1"])
    assert results["best_epoch"] == results["val_acc@1"].index(best) + 1
    assert evaluate(solver.val_data)[1] == best  # the model kept is that epoch's
    assert len(results["test_loss"]) == 1
    assert results["test_acc@1"] == [results["best_test_acc"]]
    assert evaluate(solver.test_data)[1] == results["best_test_acc"]


@pytest.mark.training
def test_a_run_with_a_validation_split_resumes_to_the_same_results(data, tmp_path):
    straight = tiny_solver(data, val_split=0.25).train("cpu")
    stop_after_epoch_1(tiny_solver(data, val_split=0.25, checkpoint_dir=tmp_path))
    with pytest.raises(ValueError, match="val_split: checkpoint 0.25, now 0.5"):
        tiny_solver(data, val_split=0.5, checkpoint_dir=tmp_path, resume=True).train("cpu")
    resumed = tiny_solver(data, val_split=0.25, checkpoint_dir=tmp_path, resume=True)
    assert resumed.train("cpu") == straight
