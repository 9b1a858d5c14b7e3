"""A run killed with SIGKILL mid-epoch and resumed ends bitwise where an uninterrupted run ends."""
import os
import signal
import subprocess
import sys
import time

import pytest

from cs_vit.io import load_npz
from cs_vit.solvers.checkpoint import load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RUN = ["train", "--dataset", "digits", "--epochs", "12", "--embed-dim", "16", "--depth", "1",
            "--num-heads", "2", "--mlp-dim", "32", "--seed", "0", "--quiet"]


def _python(*args, check=True):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, check=check,
                          capture_output=True, text=True)


def assert_bitwise_equal_files(path_a, path_b):
    a, b = load_npz(path_a), load_npz(path_b)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), key


def _wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, "the run ended before writing its first checkpoint"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.002)


@pytest.mark.training
def test_a_solver_run_killed_at_a_mid_epoch_iteration_resumes_bitwise(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _python("-m", "tests.kill_resume_run", straight)
    # 5 iterations an epoch: iteration 7 is the third batch of epoch 2.
    result = _python("-m", "tests.kill_resume_run", killed, "--kill-at", 7, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr
    meta = load_checkpoint(killed / "checkpoint.npz")[3]
    assert (meta["epoch"], meta["step"]) == (1, 5)
    _python("-m", "tests.kill_resume_run", killed, "--resume")
    assert_bitwise_equal_files(straight / "checkpoint.npz", killed / "checkpoint.npz")


@pytest.mark.training
def test_a_cli_run_killed_with_sigkill_mid_epoch_resumes_bitwise(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _python("-m", "cs_vit", *TINY_RUN, "--out", straight)
    process = subprocess.Popen([sys.executable, "-m", "cs_vit", *TINY_RUN, "--out", str(killed)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(killed / "checkpoint.npz", process)
        time.sleep(0.02)  # a few iterations into the next epoch
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.npz").exists()
    assert 1 <= load_checkpoint(killed / "checkpoint.npz")[3]["epoch"] < 12
    _python("-m", "cs_vit", "train", "--resume", "--out", killed, "--quiet")
    assert_bitwise_equal_files(straight / "model.npz", killed / "model.npz")
    assert_bitwise_equal_files(straight / "checkpoint.npz", killed / "checkpoint.npz")
