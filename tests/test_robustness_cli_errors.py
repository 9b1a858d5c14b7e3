"""Every mistake reaching ``cs-vit`` ends in one line that names the input and the fix."""
import json
import struct

import numpy as np
import pytest

from cs_vit.cli import main
from cs_vit.data import read_idx
from cs_vit.models import VisionTransformer
from tests.data_files import write_folder
from tests.robustness_helpers import TINY_MODEL
from tests.test_robustness_cli import run_args

TINY = ["--embed-dim", "16", "--depth", "1", "--num-heads", "2", "--mlp-dim", "32", "--quiet"]


def saved_model(folder, **config):
    """``folder/model.npz`` of a tiny ViT whose stored config is changed by ``config``."""
    VisionTransformer(**TINY_MODEL).save(folder / "model.npz")
    saved = dict(np.load(folder / "model.npz"))
    stored = json.loads(str(saved["__config__"]))
    saved["__config__"] = np.array(json.dumps(dict(stored, **config)))
    np.savez(folder / "model.npz", **saved)


def test_a_warmup_longer_than_the_run_is_refused_naming_both(tmp_path):
    with pytest.raises(SystemExit, match=r"cs-vit train: warmup_epochs \(1e\+308\) must not "
                                         r"exceed num_epochs \(30\); shorten the warmup"):
        main(["train", "--warmup-epochs", "1e308", "--out", str(tmp_path / "run"), *TINY])


@pytest.mark.parametrize("flags", [["--embed-dim", "10000000"], ["--depth", "1000000000"],
                                   ["--mlp-dim", "100000000000"]])
def test_a_model_too_big_for_memory_is_refused_before_it_is_built(tmp_path, flags):
    args = ["train", "--out", str(tmp_path / "run"), *TINY, *flags]
    with pytest.raises(SystemExit, match=r"cs-vit train: a model of embed_dim .* would take "
                                         r".* MB of memory, more than this machine has .*; "
                                         r"choose smaller --embed-dim, --depth, --mlp-dim"):
        main(args)


def test_images_resized_beyond_memory_are_refused_before_decoding(tmp_path):
    write_folder(tmp_path / "pets", per_class=5)
    with pytest.raises(SystemExit, match=r"cs-vit train: 10 images of 1000000x1000000 would take "
                                         r".* more than this machine has .*; choose a smaller "
                                         r"image_size"):
        main(["train", "--dataset", "folder", "--data-dir", str(tmp_path / "pets"),
              "--image-size", "1000000", "--out", str(tmp_path / "run"), *TINY])


def test_running_out_of_memory_is_one_line(tmp_path, monkeypatch):
    def exhausted(*args):
        raise MemoryError

    monkeypatch.setattr("cs_vit.cli.load_data", exhausted)
    with pytest.raises(SystemExit, match=r"^cs-vit train: out of memory; the model or the data "
                                         r"does not fit .*; try smaller --embed-dim"):
        main(["train", "--out", str(tmp_path / "run"), *TINY])


@pytest.mark.parametrize("content, expected", [
    ("{not json", r"run_args.json is not valid JSON \(.*\); restore it"),
    ("[1, 2]", r"run_args.json holds settings that cs-vit train would refuse \(a list, not a "
               r"dict of settings\)"),
    ('{"data_dir": null, "image_size": null}', r"missing settings \['dataset'\]"),
    ('{"dataset": "digits", "data_dir": null, "image_size": null, "colour": 1}',
     r"unknown settings \['colour'\]"),
    ('{"dataset": "digits", "data_dir": null, "image_size": "big"}',
     r"argument --image-size: expected a positive integer, got 'big'"),
    ('{"dataset": "digits", "data_dir": null, "image_size": null, "no_augment": "yes"}',
     r"no_augment must be true or false, got 'yes'"),
])
def test_a_damaged_run_args_json_is_named_with_what_is_wrong(tmp_path, content, expected):
    folder = run_args(tmp_path / "run")
    (folder / "run_args.json").write_text(content)
    VisionTransformer(**TINY_MODEL).save(folder / "model.npz")
    for command in (["evaluate", "--checkpoint", str(folder)],
                    ["train", "--resume", "--out", str(folder)]):
        with pytest.raises(SystemExit, match=rf"cs-vit {command[0]}: .*{expected}"):
            main(command)


@pytest.mark.parametrize("config, expected", [
    ({"colour": "blue"}, "unexpected argument 'colour'"),
    ({"dropout": "0.1"}, r"dropout must be a number in \[0, 1\) .*got '0.1'"),
])
def test_a_model_file_with_a_config_it_cannot_build_is_named(tmp_path, config, expected):
    folder = run_args(tmp_path / "run")
    saved_model(folder, **config)
    with pytest.raises(SystemExit, match=rf"cs-vit evaluate: .*model.npz holds a model config "
                                         rf"that this cs_vit cannot build \(.*{expected}"):
        main(["evaluate", "--checkpoint", str(folder)])


@pytest.mark.training
def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(tmp_path):
    folder = tmp_path / "run"
    main(["train", "--epochs", "2", "--out", str(folder), *TINY])
    before = (folder / "run_args.json").read_text()
    with pytest.raises(SystemExit, match=r"cannot resume from .*checkpoint.npz with 1 epochs: it "
                                         r"was written at the end of epoch 2; ask for at least 2"):
        main(["train", "--resume", "--epochs", "1", "--out", str(folder), "--quiet"])
    assert (folder / "run_args.json").read_text() == before


def test_a_data_dir_for_the_bundled_digits_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="the digits come with scikit-learn, so a dataset folder "
                                         r"\(.*\) does not apply to them"):
        main(["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), *TINY])


def test_a_file_given_as_data_dir_is_named(tmp_path):
    (tmp_path / "mnist.gz").write_bytes(b"not a folder")
    with pytest.raises(SystemExit, match=r"cs-vit train: the mnist folder .*mnist.gz is a file, "
                                         r"not a folder"):
        main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "mnist.gz"),
              "--out", str(tmp_path / "run"), *TINY])


def test_idx_dimensions_whose_product_overflows_are_named_with_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", 2051, 2**31, 2**31, 4))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte is truncated: .*declares dims "
                                         r"\(2147483648, 2147483648, 4\), i.e. "
                                         r"18,446,744,073,709,551,616 bytes"):
        read_idx(path, 2051)


@pytest.mark.training
@pytest.mark.usefixtures("stored_sincos")  # the folder recipe's sin-cos positions
def test_evaluate_refuses_data_whose_split_changed_since_training(tmp_path):
    pets = write_folder(tmp_path / "pets", per_class=10)
    folder = tmp_path / "run"
    main(["train", "--dataset", "folder", "--data-dir", str(pets), "--image-size", "8",
          "--epochs", "1", "--batch-size", "4", "--out", str(folder), *TINY])
    split = json.loads((folder / "split.json").read_text())
    assert sorted(split["train"] + split["test"]) == sorted(
        f"{c}/{i:03d}.png" for c in ("cat", "dog") for i in range(10))
    main(["evaluate", "--checkpoint", str(folder)])
    moved = split["test"][0]
    split["train"].append(moved)  # as if the image had been trained on
    (folder / "split.json").write_text(json.dumps(split))
    with pytest.raises(SystemExit, match=rf"cs-vit evaluate: 1 images changed split since the "
                                         rf"run .*recorded its split \(e.g. {moved}\), so the "
                                         rf"model would be tested on images it trained on"):
        main(["evaluate", "--checkpoint", str(folder)])
