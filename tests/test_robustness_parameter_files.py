"""Parameter files (model.npz, checkpoint.npz): checked when read, written with the user's umask."""
import hashlib
import os
import zipfile

import numpy as np
import pytest

from cs_vit.data import download, download_file
from cs_vit.io import atomic_savez, load_npz
from cs_vit.models import VisionTransformer
from cs_vit.solvers.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from tests.data_files import npy_bytes, npz_bytes
from tests.robustness_helpers import TINY_MODEL, tiny_digits, tiny_solver


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the previous one back."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_an_atomically_written_file_gets_the_users_umask(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_savez(tmp_path / "model.npz", {"w": np.zeros(3)})
    assert os.stat(tmp_path / "model.npz").st_mode & 0o777 == mode


def test_a_downloaded_file_gets_the_users_umask(tmp_path, umask, monkeypatch):
    def fetch(url, out, label, timeout):
        out.write(b"data")
        return hashlib.md5(b"data").hexdigest()

    monkeypatch.setattr(download, "_fetch", fetch)
    md5 = hashlib.md5(b"data").hexdigest()
    dest = download_file("https://example.invalid/f", tmp_path / "f", md5)
    assert os.stat(dest).st_mode & 0o777 == 0o644


def test_a_model_file_full_of_nan_is_refused_by_name(tmp_path):
    model = VisionTransformer(**TINY_MODEL)
    model.params["cls_token"][...] = np.nan
    model.save(tmp_path / "model.npz")
    with pytest.raises(ValueError, match=r"model.npz holds NaN or infinite values \(in "
                                         r"cls_token\): .*diverged; use an earlier copy"):
        VisionTransformer.from_file(tmp_path / "model.npz")


@pytest.mark.training
def test_resume_refuses_a_checkpoint_whose_parameters_are_not_finite(tmp_path):
    data = tiny_digits()
    tiny_solver(data, num_epochs=1, checkpoint_dir=tmp_path).train("cpu")
    model, best, optim, meta = load_checkpoint(checkpoint_path(tmp_path))
    model["head.weight"][0, 0] = np.inf
    save_checkpoint(checkpoint_path(tmp_path), model, best, optim, meta)
    with pytest.raises(ValueError, match=r"checkpoint.npz holds NaN or infinite values \(in "
                                         r"model/head.weight\)"):
        tiny_solver(data, checkpoint_dir=tmp_path, resume=True).train("cpu")


def test_an_npz_member_declaring_more_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(npz_bytes({"w": npy_bytes(np.zeros(4, np.float32), shape=(2**40,))}))
    with pytest.raises(ValueError, match=r"model.npz is not a readable cs_vit .npz file \(member "
                                         r"'w.npy' declares shape \(1099511627776,\) float32 "
                                         r"\(4,398,046,511,104 bytes\) but holds 16 bytes\)"):
        load_npz(path)


def test_an_npz_member_inflating_far_beyond_its_size_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    zeros = np.zeros(20 * 2**20, np.float32)  # 80 MB that deflate to about 80 KB
    path.write_bytes(npz_bytes({"w": npy_bytes(zeros)}, zipfile.ZIP_DEFLATED))
    with pytest.raises(ValueError, match=r"member 'w.npy' inflates to 83,886,208 bytes, which "
                                         r"would take 80.0 MB of memory from 0.1 MB on disk"):
        load_npz(path)
