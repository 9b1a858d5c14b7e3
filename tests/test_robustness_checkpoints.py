"""Checkpoints: written atomically, refused when corrupt or from another run, RNG state included."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cs_vit import backend
from cs_vit.io import atomic_savez, load_npz
from cs_vit.solvers.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from tests.robustness_helpers import stop_after_epoch_1, tiny_digits, tiny_solver

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREVIOUS = {"weight": np.arange(6, dtype=np.float32).reshape(2, 3)}


@pytest.fixture(scope="module")
def data():
    return tiny_digits()


@pytest.fixture
def finished_run(data, tmp_path):
    """A function that trains a 1-epoch run and returns the folder holding its checkpoint.

    The tests call it themselves, so that a stub in the student tree fails the test, not
    its set-up.
    """
    def train():
        tiny_solver(data, num_epochs=1, checkpoint_dir=tmp_path).train("cpu")
        return tmp_path
    return train


def _rewrite_checkpoint(folder, edit):
    """Load the checkpoint in ``folder``, let ``edit`` change its parts in place, save it back."""
    parts = load_checkpoint(checkpoint_path(folder))
    edit(*parts)
    save_checkpoint(checkpoint_path(folder), *parts)


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    atomic_savez(path, PREVIOUS)

    def write_half_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 half of a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_savez(path, {"weight": np.zeros(3)})
    np.testing.assert_array_equal(load_npz(path)["weight"], PREVIOUS["weight"])
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


def test_a_process_killed_mid_write_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "checkpoint.npz"
    atomic_savez(path, PREVIOUS)
    script = textwrap.dedent(f"""
        import os, signal, numpy
        from cs_vit.io import atomic_savez

        def write_half_then_die(file, **arrays):
            file.write(b"PK\\x03\\x04 half of a zip file")
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        numpy.savez = write_half_then_die
        atomic_savez({str(path)!r}, {{"weight": numpy.zeros(3)}})
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert result.returncode == -signal.SIGKILL
    np.testing.assert_array_equal(load_npz(path)["weight"], PREVIOUS["weight"])


@pytest.mark.training
def test_a_truncated_checkpoint_is_refused_by_name(finished_run, data):
    run = finished_run()
    path = checkpoint_path(run)
    content = open(path, "rb").read()
    open(path, "wb").write(content[: len(content) // 2])
    with pytest.raises(ValueError, match="checkpoint.npz is not a readable cs_vit .npz file"):
        tiny_solver(data, checkpoint_dir=run, resume=True).train("cpu")


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_holding_a_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.npz"
    np.savez(path, payload=np.array([_RunsAShellCommand(marker)], dtype=object))
    with pytest.raises(ValueError, match="checkpoint.npz is not a readable .*allow_pickle=False"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.training
def test_a_checkpoint_from_an_older_format_is_refused(finished_run):
    run = finished_run()
    _rewrite_checkpoint(run, lambda model, best, optim, meta: meta.pop("rng_state"))
    with pytest.raises(ValueError, match=r"lacks \['rng_state'\].*another version of cs_vit"):
        load_checkpoint(checkpoint_path(run))


@pytest.mark.training
def test_resume_refuses_a_checkpoint_from_another_model_config(finished_run, data):
    run = finished_run()
    from cs_vit.models import VisionTransformer
    from tests.robustness_helpers import TINY_MODEL

    model = VisionTransformer(**dict(TINY_MODEL, embed_dim=32))
    with pytest.raises(ValueError, match=r"different model config \(embed_dim: checkpoint 16, now "
                                         r"32\)"):
        tiny_solver(data, model=model, checkpoint_dir=run, resume=True).train("cpu")


@pytest.mark.training
def test_resume_refuses_other_training_settings(finished_run, data):
    run = finished_run()
    solver = tiny_solver(data, checkpoint_dir=run, resume=True, seed=1)
    with pytest.raises(ValueError, match=r"different training settings \(seed: checkpoint 0, "
                                         r"now 1\)"):
        solver.train("cpu")


@pytest.mark.training
def test_resume_refuses_parameters_that_do_not_fit_the_model(finished_run, data):
    run = finished_run()

    def widen_the_head(model, best, optim, meta):
        model["head.weight"] = np.zeros((11, 16), np.float32)

    _rewrite_checkpoint(run, widen_the_head)
    with pytest.raises(ValueError, match=r"shape mismatches: \['head.weight: checkpoint \(11, 16\) "
                                         r"vs model \(10, 16\)'\]"):
        tiny_solver(data, checkpoint_dir=run, resume=True).train("cpu")


@pytest.mark.training
def test_the_checkpoint_holds_the_generator_states_of_the_next_epoch(finished_run):
    run = finished_run()
    meta = load_checkpoint(checkpoint_path(run))[3]
    assert meta["epoch"] == 1
    expected_data_rng = np.random.default_rng([0, 1])
    expected_data_state = json.loads(json.dumps(expected_data_rng.bit_generator.state))
    assert meta["rng_state"]["data"] == expected_data_state
    seed = int(np.random.SeedSequence([0, 1]).generate_state(1)[0])
    backend.seed(seed)
    assert meta["rng_state"]["backend"] == backend.get_rng_state()


@pytest.fixture(scope="module")
def straight_losses(data):
    """A function giving the loss history of an uninterrupted run (trained at the first call)."""
    losses = []

    def history():
        if not losses:
            solver = tiny_solver(data)
            solver.train("cpu")
            losses.extend(solver.results["loss_history"])
        return losses
    return history


@pytest.mark.training
@pytest.mark.parametrize("generator, other_state", [
    ("data", np.random.default_rng(123).bit_generator.state),
    ("backend", json.dumps(np.random.default_rng(123).bit_generator.state)),
])
def test_resume_draws_from_the_generator_states_in_the_checkpoint(data, tmp_path, straight_losses,
                                                                  generator, other_state):
    """Epoch 2 of a resumed run follows the checkpoint's generator state, whatever it is."""
    first, second = tmp_path / "first", tmp_path / "second"
    stop_after_epoch_1(tiny_solver(data, checkpoint_dir=first))

    def replace_state(model, best, optim, meta):
        meta["rng_state"][generator] = other_state

    _rewrite_checkpoint(first, replace_state)
    shutil.copytree(first, second)
    losses = []
    for folder in (first, second):
        resumed = tiny_solver(data, checkpoint_dir=folder, resume=True)
        resumed.train("cpu")
        losses.append(resumed.results["loss_history"])
    assert losses[0] == losses[1]
    straight = straight_losses()
    assert losses[0][:5] == straight[:5] and losses[0][5] != straight[5]
