import json
import subprocess
import sys

import pytest

from cs_vit.cli import main


def run_cli(*args):
    return main(list(args))


@pytest.mark.training
def test_default_train_reaches_95_percent_on_the_embedded_digits(tmp_path, capsys):
    assert run_cli("train", "--out", str(tmp_path), "--quiet") == 0
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["best_test_acc"] >= 0.95
    for name in ("model.npz", "checkpoint.npz", "curves.png", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    out = capsys.readouterr().out
    assert "best test accuracy" in out and str(tmp_path) in out


@pytest.mark.training
def test_train_with_flags_then_resume_to_more_epochs_and_evaluate(tmp_path, capsys):
    run_cli("train", "--epochs", "1", "--embed-dim", "16", "--depth", "1", "--out",
            str(tmp_path), "--quiet")
    # --data-on-host (batches sent over one by one) and --no-cuda-graph may change on
    # resume, like --device.
    run_cli("train", "--resume", "--out", str(tmp_path), "--epochs", "2", "--data-on-host",
            "--no-cuda-graph", "--quiet")
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["test_acc@1"]) == 2
    assert history["model_config"]["embed_dim"] == 16
    capsys.readouterr()
    run_cli("evaluate", "--checkpoint", str(tmp_path))
    out = capsys.readouterr().out
    assert f"test accuracy {history['best_test_acc']:.4f}" in out


@pytest.mark.training
def test_train_with_a_step_schedule_drops_the_lr_every_lr_step_epochs(tmp_path):
    run_cli("train", "--epochs", "2", "--embed-dim", "16", "--depth", "1", "--lr", "0.002",
            "--schedule", "step", "--lr-step-epochs", "1", "--out", str(tmp_path), "--quiet")
    lrs = json.loads((tmp_path / "history.json").read_text())["lr_history"]
    steps_per_epoch = len(lrs) // 2
    assert lrs == pytest.approx([0.002] * steps_per_epoch + [0.0002] * steps_per_epoch,
                                rel=1e-12)


@pytest.mark.training
def test_train_with_a_validation_split_evaluates_the_test_set_once(tmp_path, capsys):
    run_cli("train", "--epochs", "2", "--embed-dim", "16", "--depth", "1", "--val-split", "0.2",
            "--out", str(tmp_path), "--quiet")
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["val_acc@1"]) == 2 and len(history["test_acc@1"]) == 1
    assert history["best_val_acc"] == max(history["val_acc@1"])
    assert history["best_test_acc"] == history["test_acc@1"][0]
    assert "epoch chosen on validation accuracy" in capsys.readouterr().out


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(SystemExit, match="--resume needs --out"):
        run_cli("train", "--resume")
    with pytest.raises(SystemExit, match="cannot resume"):
        run_cli("train", "--resume", "--out", str(tmp_path / "nothing"))


def test_unknown_flags_and_datasets_are_rejected(capsys):
    with pytest.raises(SystemExit):
        run_cli("train", "--learning-rate", "1")
    assert "unrecognized arguments: --learning-rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli("train", "--dataset", "imagenet")
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err


def test_folder_dataset_needs_a_data_dir():
    with pytest.raises(SystemExit, match="--data-dir"):
        run_cli("train", "--dataset", "folder")


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "cs_vit", "--help"], capture_output=True,
                            text=True, check=True)
    assert "train" in result.stdout and "evaluate" in result.stdout


@pytest.mark.training
def test_no_cuda_graph_reaches_the_solver_as_graph_false(tmp_path, monkeypatch):
    import cs_vit.solvers as solvers

    options = []

    class Recording(solvers.ClassificationSolverViT):
        def __init__(self, *args, **kwargs):
            options.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(solvers, "ClassificationSolverViT", Recording)
    for flags, graph in (((), True), (("--no-cuda-graph",), False)):
        run_cli("train", "--epochs", "1", "--embed-dim", "16", "--depth", "1", "--out",
                str(tmp_path / str(graph)), "--quiet", *flags)
        assert options[-1]["graph"] is graph
