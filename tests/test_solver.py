import numpy as np
import pytest

from cs_vit import backend
from cs_vit.data import ArrayDataset, channel_stats, load_digits
from cs_vit.models import VisionTransformer
from cs_vit.solvers import ClassificationSolverViT, TrainingDivergedError
from tests.gradcheck import assert_same_parameters

DIGIT_MODEL = dict(image_size=8, patch_size=4, in_channels=1, num_classes=10, embed_dim=32,
                   depth=2, num_heads=2, mlp_dim=64)


@pytest.fixture(scope="module")
def digits():
    train, test = load_digits()
    return subset(train, 320), subset(test, 160)


def subset(dataset, n):
    return ArrayDataset(dataset.images[:n], dataset.labels[:n], dataset.class_names,
                        dataset.mean, dataset.std, dataset.name)


def digit_solver(digits, **options):
    backend.seed(0)
    model = VisionTransformer(**DIGIT_MODEL, dropout=0.1)
    options = {"verbose": False, **options}
    train, test = digits
    return ClassificationSolverViT(train, test, model, num_epochs=3,
                                   learning_rate=2e-3, weight_decay=0.05, batch_size=32, **options)


@pytest.mark.training
def test_overfits_one_batch_of_64_cifar_like_images_within_100_iterations():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    data = ArrayDataset(images, rng.integers(0, 10, 64), [str(i) for i in range(10)])
    backend.seed(0)
    model = VisionTransformer(patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_dim=128)
    solver = ClassificationSolverViT(data, data, model, num_epochs=100, learning_rate=1e-3,
                                     weight_decay=0.0, batch_size=64, augment=False,
                                     schedule="constant", verbose=False)
    results = solver.train("cpu")
    assert len(results["loss_history"]) == 100
    assert results["best_test_acc"] == 1.0
    assert solver.evaluate(data)[1] == 1.0


@pytest.mark.training
def test_results_have_the_course_keys_and_keep_the_best_parameters(digits):
    solver = digit_solver(digits)
    results = solver.train("cpu")
    for key in ("train_loss", "train_acc@1", "test_loss", "test_acc@1"):
        assert len(results[key]) == 3, key
    assert results["best_test_acc"] == max(results["test_acc@1"])
    assert results["test_acc@1"][results["best_epoch"] - 1] == results["best_test_acc"]
    assert len(results["loss_history"]) == len(results["lr_history"]) == 3 * 10
    assert solver.evaluate(solver.test_data)[1] == results["best_test_acc"]
    assert results["best_test_acc"] > 0.5


def test_a_typo_in_an_option_is_an_error(digits):
    with pytest.raises(ValueError, match="unrecognized options \\['lerning_rate'\\]"):
        digit_solver(digits, lerning_rate=1.0)


@pytest.mark.training
def test_resuming_from_a_checkpoint_gives_the_same_parameters(digits, tmp_path):
    straight = digit_solver(digits)
    straight.train("cpu")
    interrupted = digit_solver(digits, checkpoint_dir=tmp_path)
    save = interrupted._save

    def save_then_stop_after_epoch_2(path):
        save(path)
        if interrupted.epoch == 2:
            raise KeyboardInterrupt

    interrupted._save = save_then_stop_after_epoch_2
    with pytest.raises(KeyboardInterrupt):
        interrupted.train("cpu")
    resumed = digit_solver(digits, checkpoint_dir=tmp_path, resume=True)
    resumed.train("cpu")
    assert resumed.results["loss_history"] == straight.results["loss_history"]
    assert_same_parameters(straight.model, resumed.model)


@pytest.mark.training
def test_checkpoint_is_written_every_epoch(digits, tmp_path):
    solver = digit_solver(digits, checkpoint_dir=tmp_path)
    solver.num_epochs = 1
    solver.train("cpu")
    assert (tmp_path / "checkpoint.npz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_resume_without_a_checkpoint_is_a_clear_error(digits, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        digit_solver(digits, checkpoint_dir=tmp_path, resume=True).train("cpu")


@pytest.mark.training
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_diverging_run_stops_with_a_message_about_the_learning_rate(digits, tmp_path):
    solver = digit_solver(digits, checkpoint_dir=tmp_path)
    solver.learning_rate = 1e30
    with pytest.raises(TrainingDivergedError, match="learning rate"):
        solver.train("cpu")


def test_data_that_does_not_fit_the_model_is_rejected(digits):
    backend.seed(0)
    model = VisionTransformer(**dict(DIGIT_MODEL, in_channels=3))
    with pytest.raises(ValueError, match="expects images of shape"):
        ClassificationSolverViT(*digits, model, batch_size=32)
    with pytest.raises(ValueError, match="batch_size"):
        ClassificationSolverViT(*digits, VisionTransformer(**DIGIT_MODEL), batch_size=10_000)


class TorchvisionStyleDataset:
    """What torchvision's MNIST looks like to the solver: .data, .targets, .classes."""

    def __init__(self, dataset):
        self.data = dataset.images[:, 0]
        self.targets = list(dataset.labels)
        self.classes = dataset.class_names


@pytest.mark.training
def test_torchvision_style_datasets_train_exactly_like_the_same_arrays(digits):
    train, test = digits
    mean, std = channel_stats(train.images)  # what a dataset without known statistics gets
    arrays = [ArrayDataset(split.images, split.labels, split.class_names, mean, std)
              for split in digits]
    results = []
    for splits in ([TorchvisionStyleDataset(train), TorchvisionStyleDataset(test)], arrays):
        backend.seed(0)
        solver = ClassificationSolverViT(*splits, VisionTransformer(**DIGIT_MODEL), num_epochs=2,
                                         learning_rate=2e-3, batch_size=32, verbose=False)
        results.append(solver.train("cpu"))
    assert results[0]["loss_history"] == results[1]["loss_history"]
    assert results[0]["test_acc@1"] == results[1]["test_acc@1"]
    assert results[0]["best_test_acc"] > 0.5


def test_asking_for_cuda_without_a_gpu_is_a_clear_error(digits):
    pytest.importorskip("numpy")
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(backend.BackendUnavailableError, match="CuPy"):
        digit_solver(digits).train("cuda")


@pytest.mark.training
def test_batches_copied_per_step_train_exactly_like_batches_kept_on_the_device(digits):
    kept = digit_solver(digits, augment=True).train("cpu")
    copied = digit_solver(digits, augment=True, data_on_device=False).train("cpu")
    assert copied["loss_history"] == kept["loss_history"]
    assert copied["test_acc@1"] == kept["test_acc@1"]


def test_data_on_device_must_be_true_or_false(digits):
    with pytest.raises(TypeError, match="data_on_device must be True or False"):
        digit_solver(digits, data_on_device="yes")
