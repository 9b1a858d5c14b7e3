"""``cs-vit`` answers a wrong flag, file or run in one line naming the command, no traceback."""
import json
import re

import numpy as np
import pytest

from cs_vit.cli import main
from cs_vit.models import VisionTransformer
from tests.robustness_helpers import TINY_MODEL


def run_args(folder, **saved):
    """A run folder's run_args.json, as ``cs-vit train`` writes it."""
    args = {"dataset": "digits", "data_dir": None, "image_size": None, **saved}
    folder.mkdir(exist_ok=True)
    (folder / "run_args.json").write_text(json.dumps(args))
    return folder


@pytest.mark.parametrize("flag, value, expected", [
    ("--epochs", "0", "a positive integer"),
    ("--batch-size", "2.5", "a positive integer"),
    ("--embed-dim", "-8", "a positive integer"),
    ("--lr", "nan", "a finite number >= 0"),
    ("--weight-decay", "-0.1", "a finite number >= 0"),
    ("--label-smoothing", "1.5", r"a number in \[0, 1\]"),
    ("--seed", "-1", r"an integer in \[0, 2\*\*32\)"),
])
def test_a_flag_value_out_of_range_is_refused_naming_the_flag(capsys, flag, value, expected):
    with pytest.raises(SystemExit):
        main(["train", flag, value])
    assert re.search(f"argument {flag}: expected {expected}, got '{value}'",
                     capsys.readouterr().err)


def test_resume_refuses_flags_it_would_ignore(tmp_path):
    folder = run_args(tmp_path / "run", embed_dim=16)
    with pytest.raises(SystemExit, match=r"--embed-dim 32 \(the run has 16\) would be ignored; "
                                         r"only --epochs, --device, --data-on-host, "
                                         r"--no-cuda-graph, --quiet and --reference may change"):
        main(["train", "--resume", "--out", str(folder), "--embed-dim", "32"])


def test_an_error_in_the_run_is_one_line_naming_the_command(tmp_path):
    with pytest.raises(SystemExit, match="cs-vit train: image_size only applies to 'folder' "
                                         "datasets; 'digits' has a fixed image size"):
        main(["train", "--image-size", "16", "--out", str(tmp_path)])


def test_evaluate_without_a_run_folder_says_what_it_needs(tmp_path):
    with pytest.raises(SystemExit, match=r"cs-vit evaluate: .*missing not found; --checkpoint "
                                         r"takes a run folder written by cs-vit train"):
        main(["evaluate", "--checkpoint", str(tmp_path / "missing")])


def test_evaluate_refuses_a_model_file_whose_parameters_do_not_fit_its_config(tmp_path):
    folder = run_args(tmp_path / "run")
    VisionTransformer(**TINY_MODEL).save(folder / "model.npz")
    saved = dict(np.load(folder / "model.npz"))
    config = json.loads(str(saved["__config__"]))
    saved["__config__"] = np.array(json.dumps(dict(config, mlp_dim=64)))
    np.savez(folder / "model.npz", **saved)
    with pytest.raises(SystemExit, match=r"(?s)cs-vit evaluate: .*does not fit this model.*"
                                         r"blocks.0.mlp.fc1.weight: checkpoint \(32, 16\) vs "
                                         r"model \(64, 16\)"):
        main(["evaluate", "--checkpoint", str(folder)])


def test_evaluate_refuses_a_model_trained_for_other_images(tmp_path):
    folder = run_args(tmp_path / "run")
    VisionTransformer(**dict(TINY_MODEL, in_channels=3, image_size=16)).save(folder / "model.npz")
    with pytest.raises(SystemExit, match=r"cs-vit evaluate: the model expects images of shape "
                                         r"\(C, H, W\) = \(3, 16, 16\), but train_data \(digits\) "
                                         r"has \(1, 8, 8\)"):
        main(["evaluate", "--checkpoint", str(folder / "model.npz")])


def test_evaluate_refuses_a_corrupt_model_file(tmp_path):
    folder = run_args(tmp_path / "run")
    (folder / "model.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SystemExit, match="cs-vit evaluate: .*model.npz is not a readable cs_vit "
                                         ".npz file"):
        main(["evaluate", "--checkpoint", str(folder)])


@pytest.mark.training
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_diverging_cli_run_stops_with_the_learning_rate_advice(tmp_path):
    with pytest.raises(SystemExit, match=r"cs-vit train: training diverged at iteration \d+ .*"
                                         r"learning rate \(.*e\+29\) is probably too high"):
        main(["train", "--lr", "1e30", "--warmup-epochs", "0", "--epochs", "1", "--embed-dim",
              "16", "--depth", "1", "--quiet", "--out", str(tmp_path)])
