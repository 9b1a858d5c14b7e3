# cs-vit: instructor-only (tests of the task tests; they hold the solution's code)
"""Each task's tests catch a student's usual mistakes, and say what is off.

The answer-key tree (``make_release(..., keep_solutions=True)``: the student tree
with the textbook answers filled in, no fast tier) passes every task's tests and
trains on the digits. Then each mutation below, a mistake students make, is
applied to that tree's solution code, and the task's own tests must fail with a
message that shows values (which output or gradient, how far off), never a
bare ``AssertionError``.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cs_vit.release import make_release

ROOT = Path(__file__).resolve().parents[1]
LAYERS = "cs_vit/layers/"
# The test file whose task tests run first for each task (the ones closest to its code).
TASK_TESTS = {"task1": "test_patch_embedding.py", "task2": "test_positional.py",
              "task3": "test_layernorm.py", "task4": "test_activations.py",
              "task5": "test_attention.py", "task6": "test_loss.py", "task7": "test_vit.py"}
# (name, task, file, the solution's line, the mistaken line)
MUTATIONS = [
    ("patches in column-major order", "task1", LAYERS + "patch_embedding.py",
     "patches = x.reshape(N, C, gh, P, gw, P).transpose(0, 2, 4, 1, 3, 5)",
     "patches = x.reshape(N, C, gh, P, gw, P).transpose(0, 4, 2, 1, 3, 5)"),
    ("learned table's gradient averaged, not summed over the batch", "task2",
     LAYERS + "positional.py",
     'self.grads["pos_embed"] = dx.sum(axis=0, keepdims=True)',
     'self.grads["pos_embed"] = dx.mean(axis=0, keepdims=True)'),
    ("learned table's gradient taken before dropout's backward", "task2",
     LAYERS + "positional.py",
     'self.grads["pos_embed"] = dx.sum(axis=0, keepdims=True)',
     'self.grads["pos_embed"] = dout.sum(axis=0, keepdims=True)'),
    ("unbiased variance", "task3", LAYERS + "layernorm.py",
     "var = (xmu**2).mean(axis=-1, keepdims=True)",
     "var = (xmu**2).sum(axis=-1, keepdims=True) / (x.shape[-1] - 1)"),
    ("eps outside the square root", "task3", LAYERS + "layernorm.py",
     "std = xp.sqrt(var + self.eps)", "std = xp.sqrt(var) + self.eps"),
    ("LayerNorm backward without the path through the mean", "task3", LAYERS + "layernorm.py",
     "dx = dxhat / std + dvar * 2.0 * xmu / D + dmean / D",
     "dx = dxhat / std + dvar * 2.0 * xmu / D"),
    ("GELU derivative without the x Phi'(x) term", "task4", LAYERS + "activations.py",
     "dx = dout * (cdf + x * dcdf)", "dx = dout * cdf"),
    ("softmax without the max subtraction", "task5", LAYERS + "attention.py",
     "exp_scores = xp.exp(scores - row_max)", "exp_scores = xp.exp(scores)"),
    ("the 1/sqrt(Dh) scale missing", "task5", LAYERS + "attention.py",
     "scores = q @ k.transpose(0, 1, 3, 2) * self.scale",
     "scores = q @ k.transpose(0, 1, 3, 2)"),
    ("the 1/sqrt(Dh) scale applied twice", "task5", LAYERS + "attention.py",
     "scores = q @ k.transpose(0, 1, 3, 2) * self.scale",
     "scores = q @ k.transpose(0, 1, 3, 2) * self.scale * self.scale"),
    ("the mask ignored", "task5", LAYERS + "attention.py",
     "scores = xp.where(blocked, -xp.inf, scores)", "scores = scores"),
    ("dv from attn instead of the dropped weights", "task5", LAYERS + "attention.py",
     "dv = attn_dropped.transpose(0, 1, 3, 2) @ dcontext",
     "dv = attn.transpose(0, 1, 3, 2) @ dcontext"),
    ("no dropout in backward", "task5", LAYERS + "attention.py",
     "dattn = self.attn_drop.backward(dattn_dropped)", "dattn = dattn_dropped"),
    ("softmax backward without its sum term", "task5", LAYERS + "attention.py",
     "dscores = attn * (dattn - (dattn * attn).sum(axis=-1, keepdims=True))",
     "dscores = attn * dattn"),
    ("loss gradient not divided by the batch size", "task6", LAYERS + "loss.py",
     "dlogits = (xp.exp(log_probs) - target) / N", "dlogits = xp.exp(log_probs) - target"),
    ("residual skip path missing in the block's backward", "task7",
     LAYERS + "transformer_block.py",
     "dx = dout + self.norm2.backward(self.mlp.backward(dout))",
     "dx = self.norm2.backward(self.mlp.backward(dout))"),
    ("missing CLS-token gradient", "task7", "cs_vit/models/vit.py",
     'self.grads["cls_token"] = dx[:, :1].sum(axis=0, keepdims=True)',
     'self.grads["cls_token"] = 0.0 * dx[:, :1].sum(axis=0, keepdims=True)'),
]
# What a failure message must show: the size of the error (or which gradient).
SHOWS_VALUES = ("max |diff|", "rel_error", "differs from torch", "gradients off")


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    return make_release(ROOT, tmp_path_factory.mktemp("answers") / "tree",
                        keep_solutions=True).out_dir


def run_in(tree, *args, timeout=900):
    """Run ``python -m ...`` in ``tree`` against the cs_vit of that tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "CS_VIT"))}
    env["PYTHONPATH"] = str(tree)
    return subprocess.run([sys.executable, "-m", *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=timeout)


def pytest_in(tree, task, *extra):
    """``pytest -m task`` in ``tree``, in one process unless ``extra`` says otherwise."""
    extra = extra if "-n" in extra else ("-n", "0", *extra)
    return run_in(tree, "pytest", "-m", task, "-q", "-p", "no:cacheprovider", *extra)


def test_the_answer_key_has_no_fast_tier_and_passes_every_task(answers):
    assert not (answers / "cs_vit" / "fast").exists()
    result = pytest_in(answers, " or ".join(f"task{i}" for i in range(1, 8)), "-n", "2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_answer_key_trains_on_the_digits(answers, tmp_path):
    result = run_in(answers, "cs_vit", "train", "--quiet", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    accuracy = float(result.stdout.split("best test accuracy ")[1].split()[0])
    assert accuracy >= 0.95, result.stdout[-2000:]


@pytest.mark.parametrize("name, task, relative, right, wrong", MUTATIONS,
                         ids=[m[0].replace(" ", "_") for m in MUTATIONS])
def test_a_usual_mistake_fails_its_tasks_tests_showing_values(answers, tmp_path, name, task,
                                                              relative, right, wrong):
    tree = tmp_path / "tree"
    shutil.copytree(answers, tree)
    path = tree / relative
    source = path.read_text()
    assert source.count(right) == 1, f"the mutation of {name!r} no longer applies to {relative}"
    path.write_text(source.replace(right, wrong))
    first = "tests/" + TASK_TESTS[task]  # then the rest, so that -x stops at its failure
    rest = sorted(str(p.relative_to(tree)) for p in tree.glob("tests/test_*.py"))
    result = pytest_in(tree, task, "-x", first, *[p for p in rest if p != first])
    output = result.stdout + result.stderr
    assert result.returncode == 1, f"{task}'s tests did not catch {name!r}:\n{output[-3000:]}"
    assert any(words in output for words in SHOWS_VALUES), (
        f"{task}'s tests caught {name!r} without saying what is off:\n{output[-3000:]}")
