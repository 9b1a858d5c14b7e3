import hashlib
import subprocess
from pathlib import Path

import pytest

from cs_vit.data import default_root, idx, load_dataset
from cs_vit.data.get_datasets import main
from tests.data_files import write_folder, write_idx


def test_load_dataset_dispatches_by_name(tmp_path):
    train, _ = load_dataset("digits", test_fraction=0.5)
    assert train.name == "digits" and len(train) == 898
    write_idx(tmp_path)
    assert load_dataset("fashion-mnist", root=tmp_path)[0].name == "fashion-mnist"
    write_folder(tmp_path / "pets", size=(9, 9))
    folder_train, _ = load_dataset("folder", root=tmp_path / "pets", image_size=4)
    assert folder_train.images.shape[1:] == (3, 4, 4)


def test_load_dataset_lists_valid_names_for_an_unknown_one():
    with pytest.raises(ValueError, match="unknown dataset 'cifar100'.*digits, cifar10, mnist"):
        load_dataset("cifar100")


def test_folder_dataset_needs_a_root():
    with pytest.raises(ValueError, match="needs root"):
        load_dataset("folder")


def test_image_size_only_applies_to_folders():
    with pytest.raises(ValueError, match="image_size only applies"):
        load_dataset("digits", image_size=16)


def test_downloadable_datasets_reject_unknown_options(tmp_path):
    with pytest.raises(TypeError, match="seed"):
        load_dataset("mnist", root=tmp_path, seed=1)


def test_default_root_is_datasets_in_a_checkout_else_the_user_cache():
    root = default_root("cifar10")
    repo = Path(__file__).resolve().parents[1]
    assert root in (repo / "datasets" / "cifar10", Path.home() / ".cache" / "cs_vit" / "cifar10")


def test_get_datasets_fetches_into_root(tmp_path, monkeypatch, capsys):
    write_idx(tmp_path / "src")
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (tmp_path / "src").iterdir()}
    monkeypatch.setattr(idx, "MNIST_URL", (tmp_path / "src").as_uri() + "/")
    monkeypatch.setattr(idx, "MNIST_MD5", md5)
    assert main(["mnist", "--root", str(tmp_path / "datasets")]) == 0
    assert (tmp_path / "datasets" / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert "mnist: 6 train / 4 test" in capsys.readouterr().out


def test_get_datasets_reports_a_failed_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(idx, "MNIST_URL", (tmp_path / "nowhere").as_uri() + "/")
    assert main(["mnist", "--root", str(tmp_path)]) == 1
    assert "could not download" in capsys.readouterr().err


def test_get_datasets_rejects_unknown_names():
    with pytest.raises(SystemExit):
        main(["imagenet"])


def test_get_datasets_script_runs_the_python_entry_point():
    script = Path(__file__).resolve().parents[1] / "datasets" / "get_datasets.sh"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--root" in result.stdout
