"""A run folder is owned: never replaced by accident, one run at a time, nothing lost on Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from cs_vit.cli import main
from cs_vit.run_folder import LOCK_NAME, RunFolder
from cs_vit.solvers import ClassificationSolverViT

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--embed-dim", "16", "--depth", "1", "--num-heads", "2", "--mlp-dim", "32", "--quiet"]


def finished_run(folder):
    """A folder holding what a finished run leaves: its settings, checkpoint and model."""
    folder.mkdir()
    (folder / "run_args.json").write_text(json.dumps({"dataset": "digits", "data_dir": None,
                                                      "image_size": None, "epochs": 3}))
    for name in ("checkpoint.npz", "model.npz"):
        (folder / name).write_bytes(b"the old run's " + name.encode())
    return folder


def contents(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_train_refuses_an_out_folder_that_holds_a_run(tmp_path):
    run = finished_run(tmp_path / "run")
    before = contents(run)
    with pytest.raises(SystemExit, match=r"run already holds a run; continue it with --resume, "
                                         r"replace it with --overwrite \(it is kept in "
                                         r".*run.replaced until the new run ends with a "
                                         r"checkpoint\)"):
        main(["train", "--out", str(run), *TINY])
    assert contents(run) == before


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(SystemExit, match="is not empty and is not a cs-vit run folder"):
        main(["train", "--overwrite", "--out", str(tmp_path), *TINY])
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_an_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(tmp_path):
    run = finished_run(tmp_path / "run")
    before = contents(run)
    with pytest.raises(SystemExit, match="the digits come with scikit-learn"):
        main(["train", "--overwrite", "--out", str(run), "--data-dir", str(tmp_path), *TINY])
    assert contents(run) == before
    assert sorted(os.listdir(tmp_path)) == ["run"]


@pytest.mark.training
def test_an_overwrite_keeps_the_old_run_aside_until_its_first_checkpoint(tmp_path, monkeypatch):
    run = finished_run(tmp_path / "run")
    seen = []
    save = ClassificationSolverViT._save

    def save_and_look(solver, path):
        seen.append(sorted(os.listdir(tmp_path)))
        save(solver, path)

    monkeypatch.setattr(ClassificationSolverViT, "_save", save_and_look)
    assert main(["train", "--overwrite", "--out", str(run), "--epochs", "2", *TINY]) == 0
    assert seen == [["run", "run.replaced"]] * 2
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert json.loads((run / "run_args.json").read_text())["epochs"] == 2


def test_a_second_run_on_a_folder_in_use_is_refused(tmp_path):
    with RunFolder(tmp_path / "run"):
        with pytest.raises(SystemExit, match=rf"run is in use by another cs-vit train \(process "
                                             rf"{os.getpid()}\); wait for it to finish"):
            main(["train", "--out", str(tmp_path / "run"), *TINY])
    assert os.listdir(tmp_path / "run") == []


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        from cs_vit.run_folder import RunFolder
        RunFolder({str(tmp_path / "run")!r}).__enter__()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert result.returncode == -signal.SIGKILL
    lock = tmp_path / "run" / LOCK_NAME
    dead = int(lock.read_text())
    with RunFolder(tmp_path / "run"):
        assert int(lock.read_text()) == os.getpid() != dead
    assert not lock.exists()


def test_the_run_kept_aside_by_a_killed_overwrite_is_never_deleted_silently(tmp_path):
    run = finished_run(tmp_path / "run")
    before = contents(run)
    script = textwrap.dedent(f"""
        import os, signal
        from cs_vit.run_folder import RunFolder
        RunFolder({str(run)!r}, overwrite=True).__enter__()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert contents(tmp_path / "run.replaced") == before
    for again in ([], ["--overwrite"]):
        with pytest.raises(SystemExit, match=r"run.replaced holds the run that an earlier "
                                             r"--overwrite of .*run replaced, kept because that "
                                             r"new run stopped before its first checkpoint"):
            main(["train", "--out", str(run), *again, *TINY])
    assert contents(tmp_path / "run.replaced") == before


@pytest.mark.training
def test_ctrl_c_says_where_the_last_checkpoint_is_and_how_to_resume(tmp_path, monkeypatch,
                                                                    capsys):
    save = ClassificationSolverViT._save

    def save_then_ctrl_c(solver, path):
        save(solver, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(ClassificationSolverViT, "_save", save_then_ctrl_c)
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "5", *TINY]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"cs-vit train: interrupted; the last checkpoint (end of epoch 1) is "
                   f"{tmp_path / 'run' / 'checkpoint.npz'}; continue the run with: cs-vit train "
                   f"--resume --out {tmp_path / 'run'}")


def test_ctrl_c_before_the_first_checkpoint_leaves_no_half_run(tmp_path, monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("cs_vit.cli.load_data", interrupted)
    assert main(["train", "--out", str(tmp_path / "run"), *TINY]) == 130
    assert capsys.readouterr().err.strip() == (
        f"cs-vit train: interrupted before the first checkpoint of {tmp_path / 'run'}, so there "
        "is nothing to resume")
    assert not (tmp_path / "run").exists()
