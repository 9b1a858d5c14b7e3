# cs-vit: instructor-only (tests of the autograder; it is built from the solution)
"""The autograder: built from this tree, run on the solution, the stubs, partial and hostile work.

Two zips are built per module: the default one (with the training check and a
hidden test) and a fast one for hostile submissions (no training check, one
entry per case, short limits). Each folder of submissions is graded once, by
``cs-vit grade``, which runs the zip's own ``run_autograder`` on every
submission as Gradescope would; the tests read the CSV and each results.json.
As root, the grading runs with a Python the sandbox user can run, so the
sandbox drops privileges as it does on Gradescope.
"""
import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cs_vit.cli import main
from cs_vit.grading import AutograderError, make_autograder
from cs_vit.grading.points import parse_points, resolve_points
from cs_vit.grading.tasks import task_files
from cs_vit.grading.runtime import run as run_module
from cs_vit.grading.runtime.replay import Recorder, Replayer, ReplayMismatch
from cs_vit.grading.runtime.sandbox import Limits, Sandbox
from cs_vit.grading.runtime.submission import Submission
from cs_vit.release import find_regions, make_release

ROOT = Path(__file__).resolve().parents[1]
TASKS = task_files(ROOT)
POINTS = resolve_points(TASKS)
RESULT_FIELDS = {"score", "execution_time", "output", "visibility", "stdout_visibility", "tests"}
TEST_FIELDS = {"name", "number", "score", "max_score", "status", "output", "visibility"}
STUB = "is not written yet; check it with: pytest -m {task}"
HIDDEN_POINTS = 2.0
HIDDEN_TESTS = '''
import numpy as np

CASES = [{"task": "task4", "name": "GELU (exact) from -8 to 8", "kind": "wide_gelu",
          "params": {"width": 40}, "points": %r}]


def inputs_wide_gelu(rng, width):
    return {"x": np.linspace(-8.0, 8.0, 2 * width).reshape(2, width),
            "dout": rng.standard_normal((2, width))}


def run_wide_gelu(arrays, swap, width):
    from cs_vit.layers import GELU
    gelu = GELU()
    out = gelu.forward(arrays["x"])
    return {"out": out, "dx": gelu.backward(arrays["dout"])}
''' % HIDDEN_POINTS
# Appended to the solution's layernorm.py: LayerNorm runs, but its outputs are doubled.
WRONG_LAYERNORM = '''
_solution_forward = LayerNorm.forward
LayerNorm.forward = lambda self, x: 2.0 * _solution_forward(self, x)
'''
# Each runs when the (wrong) layernorm.py above is imported, in every process that grades it.
HOSTILE = {
    "writes_results": '''
import glob, os
def _forge(folder):
    try:
        with open(os.path.join(folder, "results.json"), "w") as f:
            f.write('{"score": 1000, "output": "forged", "tests": []}')
    except OSError:
        pass
for _folder in ["/autograder/results"] + glob.glob("/tmp/cs_vit_grade_*/results"):
    _forge(_folder)
try:
    with open(f"/proc/{os.getppid()}/environ", "rb") as _f:
        for _item in _f.read().split(b"\\0"):
            if _item.startswith(b"CS_VIT_AUTOGRADER_ROOT="):
                _forge(os.path.join(_item.split(b"=", 1)[1].decode(), "results"))
except OSError:
    pass
''',
    "exits_at_import": "import os\nos._exit(0)\n",
    "monkeypatches": '''
import sys, types
import numpy
numpy.allclose = lambda *args, **kwargs: True
numpy.testing.assert_allclose = lambda *args, **kwargs: None
sys.modules["pytest"] = types.SimpleNamespace(approx=lambda value, **kwargs: value)
import cs_vit.gradient_check
cs_vit.gradient_check.rel_error = lambda x, y: 0.0
import cs_vit_grader.judge
cs_vit_grader.judge.compare = lambda *args: (True, "matches", 0.0)
cs_vit_grader.judge.RTOL = 1e300
''',
    "prints_a_fake_summary": '''
import sys
print('{"score": 100, "output": "all tests passed", "tests": []}')
print("========================= 28 passed in 0.42s =========================")
sys.stderr.write("All checks passed. Score: 100/100\\n")
''',
    "sleeps_forever": "import time\nwhile True:\n    time.sleep(60)\n",
    "allocates_10_gb": "import numpy\n_hog = numpy.ones(10 * 2**30 // 8)\n",
    "links_expected_values_as_results": '''
import glob, os, sys
for _source in ["/autograder/source"] + glob.glob("/tmp/cs_vit_autograder_*/source"):
    try:
        os.symlink(os.path.join(_source, "grader/private/expected.npz"),
                   os.path.join(sys.argv[1], "result.npz"))
        os._exit(0)
    except OSError:
        pass
''',
}
# Only the sandbox user's file permissions stop this one: it runs where the grader is root.
READS_EXPECTED = '''
import glob, os, sys
import numpy
for _path in glob.glob("/autograder/source/grader/private/expected.npz") + glob.glob(
        "/tmp/cs_vit_autograder_*/source/grader/private/expected.npz"):
    try:
        with numpy.load(_path) as _expected:
            _forged = {key: _expected[key] for key in _expected.files}
        _forged["__errors__"] = numpy.array("{}")
        numpy.savez(os.path.join(sys.argv[1], "result.npz"), **_forged)
        os._exit(0)
    except OSError:
        pass
'''
HOSTILE_WALL_S = 10


def _flat(folder, relatives, root=ROOT):
    folder.mkdir(parents=True, exist_ok=True)
    for relative in relatives:
        (folder / Path(relative).name).write_bytes((root / relative).read_bytes())
    return folder


def _task_files(*tasks):
    return [f for task in tasks for f in TASKS[task]]


@pytest.fixture(scope="module")
def sandbox_python():
    """(python, PYTHONPATH, isolated): as root, a Python the ``nobody`` user can run.

    This checkout's interpreter may sit under /root, where nobody may not enter; the
    system Python of the same version runs with this environment's packages instead.
    """
    packages = str(Path(np.__file__).resolve().parents[1])
    if os.geteuid() != 0:
        return sys.executable, packages, False
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/python{version}"):
        try:
            probe = subprocess.run([python, "-c", "import numpy, scipy, sklearn, tqdm, PIL"],
                                   user="nobody", env={"PYTHONPATH": packages}, cwd="/",
                                   capture_output=True, timeout=120)
        except OSError:
            continue
        if probe.returncode == 0:
            return python, packages, True
    return sys.executable, packages, False


def _grade(folder, autograder, sandbox_python, out):
    """Run ``cs-vit grade`` on ``folder``; (CSV rows, {name: results}, seconds)."""
    python, packages, _ = sandbox_python
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", packages)
        assert main(["grade", str(folder), "--autograder", str(autograder), "--jobs", "2",
                     "--out", str(out), "--python", python]) == 0
    seconds = time.monotonic() - started
    with open(out, newline="") as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    results_dir = out.with_name(out.stem + "_results")
    results = {p.stem: json.loads(p.read_text()) for p in results_dir.glob("*.json")}
    return rows, results, seconds


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return make_release(ROOT, tmp_path_factory.mktemp("release") / "student").out_dir


@pytest.fixture(scope="module")
def graded(tmp_path_factory, student, sandbox_python):
    """The default zip, and the grades of the solution, the stubs and partial submissions."""
    tmp = tmp_path_factory.mktemp("autograder")
    (tmp / "hidden").mkdir()
    (tmp / "hidden" / "wide_gelu.py").write_text(HIDDEN_TESTS)
    summary = make_autograder(tmp / "autograder.zip", ROOT, hidden_tests=tmp / "hidden")
    subs = tmp / "submissions"
    solution = _flat(subs / "solution", _task_files(*TASKS))
    (solution / "history.json").write_text(json.dumps(
        {"best_test_acc": 0.512, "best_epoch": 2, "train_loss": [1.9, 1.5],
         "val_acc@1": [0.43, 0.52], "test_acc@1": [0.512],  # a validation split: test read once
         "dataset": "cifar10", "train_seconds": 812.0}))
    untouched = subs / "untouched"
    for relative in _task_files(*TASKS):  # at their paths in the release
        (untouched / relative).parent.mkdir(parents=True, exist_ok=True)
        (untouched / relative).write_bytes((student / relative).read_bytes())
    _flat(subs / "only_task3", TASKS["task3"])
    wrong = _flat(subs / "wrong_task2", _task_files(*list(TASKS)[2:]))
    for relative in TASKS["task2"]:
        (wrong / Path(relative).name).write_text((ROOT / relative).read_text() + textwrap.dedent(
            """
            _solution_sincos_1d = sincos_1d
            def sincos_1d(positions, dim):
                return -_solution_sincos_1d(positions, dim)
            """))
    (wrong / "conftest.py").write_text("raise SystemExit('a submitted conftest.py runs')\n")
    (wrong / "tests").mkdir()
    (wrong / "tests" / "test_mine.py").write_text("def test_nothing():\n    pass\n")
    (subs / "special_file").mkdir()
    os.mkfifo(subs / "special_file" / "layernorm.py")
    rows, results, seconds = _grade(subs, summary.path, sandbox_python, tmp / "grades.csv")
    return summary, rows, results


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, sandbox_python):
    """A zip without training check, one entry per case; each submission right but for task 3."""
    tmp = tmp_path_factory.mktemp("hostile")
    summary = make_autograder(tmp / "autograder.zip", ROOT, points={"training": 0},
                              per_test=True, limits={"task": {"wall_s": HOSTILE_WALL_S,
                                                              "cpu_s": HOSTILE_WALL_S}})
    attacks = dict(HOSTILE, **({"reads_expected_values": READS_EXPECTED}
                               if sandbox_python[2] else {}))
    others = [f for task, files in TASKS.items() if task != "task3" for f in files]
    for name, attack in attacks.items():
        folder = _flat(tmp / "submissions" / name, others)
        for relative in TASKS["task3"]:
            text = (ROOT / relative).read_text() + WRONG_LAYERNORM + attack
            (folder / Path(relative).name).write_text(text)
    rows, results, seconds = _grade(tmp / "submissions", summary.path, sandbox_python,
                                    tmp / "grades.csv")
    return summary, rows, results, seconds, attacks


def _by_task(results):
    """{column: (score, max_score, outputs)} summed over a results.json's entries."""
    found = {}
    for test in results["tests"]:
        key = test["name"].split(":")[0]
        score, most, outputs = found.get(key, (0.0, 0.0, []))
        found[key] = (score + test["score"], most + test["max_score"], outputs + [test["output"]])
    return found


def test_task_files_come_from_the_region_tags():
    assert list(TASKS) == [f"task{n}" for n in range(1, 8)]
    assert TASKS["task3"] == ["cs_vit/layers/layernorm.py"]
    assert set(TASKS["task7"]) == {"cs_vit/layers/transformer_block.py", "cs_vit/models/vit.py"}


def test_points_come_from_the_points_file_and_overrides_are_checked():
    assert sum(POINTS.values()) == 100 and POINTS["training"] == 10
    assert resolve_points(TASKS, parse_points("task5=30, training=0"))["task5"] == 30
    with pytest.raises(AutograderError, match="unknown .*task9"):
        resolve_points(TASKS, {"task9": 1})
    with pytest.raises(AutograderError, match="name=number"):
        parse_points("task5")


def test_zip_holds_the_student_tree_and_expected_values_but_no_solution(graded):
    import zipfile
    summary = graded[0]
    with zipfile.ZipFile(summary.path) as archive:
        names = set(archive.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in archive.infolist()}
        released = {f: archive.read(f"student/{f}").decode() for f in _task_files(*TASKS)}
    assert {"setup.sh", "run_autograder", "grader/private/expected.npz"} <= names
    assert modes["run_autograder"] == 0o755 and modes["grader/private/expected.npz"] == 0o600
    assert not any(n.startswith(("student/cs_vit/grading", "student/cs_vit/fast")) for n in names)
    for relative, text in released.items():
        solution = (ROOT / relative).read_text().splitlines()
        regions = find_regions(solution, relative)
        inside = {n for r in regions for n in range(r.begin, r.end + 1)}
        outside = {line.strip() for n, line in enumerate(solution, 1) if n not in inside}
        hidden = {line.strip() for r in regions for line in r.code_lines()} - outside
        assert not hidden & {line.strip() for line in text.splitlines()}, relative
        assert "raise NotImplementedError(" in text, relative
    assert "grader/private/hidden/hidden_wide_gelu.py" in names
    assert summary.size < 2 * 1024 * 1024


def test_solution_gets_full_marks_and_its_history_is_reported(graded):
    summary, rows, results = graded
    solution = results["solution"]
    assert solution["score"] == sum(POINTS.values()) + HIDDEN_POINTS
    assert all(t["status"] == "passed" for t in solution["tests"]), solution["output"]
    assert "best test accuracy 51.2% (epoch 2), 2 epochs, dataset cifar10" in solution["output"]
    assert "inline questions" in solution["output"] and "CIFAR-10" in solution["output"]
    training = _by_task(solution)["training"]
    assert training[0] == POINTS["training"] and "test accuracy" in training[2][0]


def test_untouched_student_tree_scores_zero_with_each_task_failing_on_its_stub(graded):
    results = graded[2]["untouched"]
    assert results["score"] == 0
    for task in TASKS:
        score, _, outputs = _by_task(results)[task]
        assert score == 0 and STUB.format(task=task) in outputs[0], outputs[0]


def test_only_task3_right_gets_exactly_task3s_points(graded):
    results = graded[2]["only_task3"]
    assert results["score"] == POINTS["task3"]
    assert _by_task(results)["task3"][0] == POINTS["task3"]


def test_wrong_task2_costs_nothing_in_tasks_3_to_7(graded):
    results = graded[2]["wrong_task2"]
    tasks = _by_task(results)
    for task in list(TASKS)[2:]:
        assert tasks[task][0] == POINTS[task], tasks[task][2]
    assert 0 < tasks["task2"][0] < POINTS["task2"]
    assert "table: wrong values" in tasks["task2"][2][0]
    assert "Ignored (only the task files are graded): conftest.py, tests/test_mine.py" in (
        results["output"])


def test_results_json_has_exactly_gradescopes_fields(graded):
    for results in graded[2].values():
        assert set(results) == RESULT_FIELDS
        assert results["visibility"] == "visible" and results["stdout_visibility"] == "hidden"
        for test in results["tests"]:
            assert set(test) == TEST_FIELDS
            assert test["status"] in ("passed", "failed")
            assert test["visibility"] in ("visible", "after_due_date")
            assert 0 <= test["score"] <= test["max_score"]
        hidden = [t for t in results["tests"] if t["visibility"] == "after_due_date"]
        assert [t["name"].split(":")[0] for t in hidden] == ["task4 (hidden)"]


def test_grade_writes_one_csv_row_per_submission_with_a_column_per_task(graded):
    rows = graded[1]
    assert list(rows) == ["only_task3", "solution", "special_file", "untouched", "wrong_task2"]
    header = list(rows["solution"])
    assert header == ["submission", "total", *TASKS, "training", "task4 (hidden)", "error"]
    assert float(rows["solution"]["total"]) == sum(POINTS.values()) + HIDDEN_POINTS
    assert float(rows["only_task3"]["task3"]) == POINTS["task3"]
    assert float(rows["untouched"]["total"]) == 0
    expected_wrong = sum(POINTS[t] for t in list(TASKS)[2:]) + HIDDEN_POINTS
    assert float(rows["wrong_task2"]["total"]) == pytest.approx(
        expected_wrong + float(rows["wrong_task2"]["task2"]))
    crashed = rows["special_file"]
    assert crashed["total"] == "" and "pipe" in crashed["error"], crashed


def test_hostile_submissions_forge_nothing_and_finish_within_their_limits(hostile):
    summary, rows, results, seconds, attacks = hostile
    honest = sum(points for task, points in POINTS.items() if task not in ("task3", "training"))
    assert set(rows) == set(attacks)
    for name in attacks:
        assert not rows[name]["error"], (name, rows[name]["error"])
        result = results[name]
        assert set(result) == RESULT_FIELDS and "forged" not in result["output"]
        assert result["score"] == pytest.approx(honest), (name, result["output"])
        task3 = [t for t in result["tests"] if t["name"].startswith("task3:")]
        assert len(task3) == 3 and all(t["score"] == 0 for t in task3), (name, task3)
        assert result["execution_time"] < 2 * HOSTILE_WALL_S + 60
    assert seconds < 300


def test_hostile_submissions_are_told_what_happened(hostile):
    results = hostile[2]
    reasons = {name: next(t["output"] for t in results[name]["tests"]
                          if t["name"].startswith("task3:")) for name in results}
    assert "did not finish within its 10 s" in reasons["sleeps_forever"]
    assert "MemoryError" in reasons["allocates_10_gb"]
    assert "os._exit()" in reasons["exits_at_import"]
    assert "refused" in reasons["links_expected_values_as_results"]
    assert "out: wrong values" in reasons["monkeypatches"]


def test_run_autograder_writes_valid_results_even_when_the_zip_is_broken(tmp_path):
    results = tmp_path / "results" / "results.json"
    assert run_module.main(["--root", str(tmp_path), "--source", str(tmp_path / "missing")]) == 0
    written = json.loads(results.read_text())
    assert set(written) == RESULT_FIELDS and written["score"] == 0
    assert "The autograder itself failed (FileNotFoundError" in written["output"]


def test_run_autograder_writes_valid_results_even_when_python_cannot_start_it(graded, tmp_path):
    import zipfile
    with zipfile.ZipFile(graded[0].path) as archive:
        (tmp_path / "run_autograder").write_bytes(archive.read("run_autograder"))
    env = dict(os.environ, CS_VIT_AUTOGRADER_ROOT=str(tmp_path),
               CS_VIT_AUTOGRADER_SOURCE=str(tmp_path / "no-such-folder"),
               CS_VIT_AUTOGRADER_PYTHON=sys.executable)
    subprocess.run(["bash", str(tmp_path / "run_autograder")], env=env, capture_output=True)
    written = json.loads((tmp_path / "results" / "results.json").read_text())
    assert set(written) == RESULT_FIELDS and "could not start" in written["output"]


def test_submission_files_at_release_paths_flat_or_nested_and_never_through_links(tmp_path):
    (tmp_path / "repo" / "cs_vit" / "layers").mkdir(parents=True)
    (tmp_path / "repo" / "cs_vit" / "layers" / "layernorm.py").write_text("nested")
    (tmp_path / "loss.py").write_text("flat")
    secret = tmp_path / "secret.npz"
    secret.write_text("expected values")
    (tmp_path / "mlp.py").symlink_to(secret)
    found = Submission(tmp_path, _task_files(*TASKS))
    assert found.files(TASKS["task3"]) == {"cs_vit/layers/layernorm.py": b"nested"}
    assert found.files(TASKS["task6"]) == {"cs_vit/layers/loss.py": b"flat"}
    assert found.files(TASKS["task4"]) == {}


@pytest.mark.usefixtures("float64")
def test_replay_matches_rows_of_a_tokenwise_layer_and_backpropagates_any_gradient():
    from cs_vit.layers import LayerNorm
    rng = np.random.default_rng(0)
    x, arrays = rng.standard_normal((2, 3, 4)), {}
    recorder = Recorder(arrays, rng)
    norm = LayerNorm(4)
    recorder.params(norm)
    recorder.replay(norm, "norm", tokenwise=True)
    norm.forward(x)
    meta = recorder.finish()
    replayed = LayerNorm(4)
    Replayer(arrays, meta).replay(replayed, "norm", tokenwise=True)
    reference = LayerNorm(4)
    reference.params.update({k: arrays["param." + k] for k in ("weight", "bias")})
    cls_rows = x[:, 0]
    np.testing.assert_allclose(replayed.forward(cls_rows), reference.forward(cls_rows))
    dout = rng.standard_normal((2, 4))
    np.testing.assert_allclose(replayed.backward(dout), reference.backward(dout), rtol=1e-10)
    with pytest.raises(ReplayMismatch, match="norm.forward.*a token \\(row\\) that the reference"):
        replayed.forward(x[:, 0] + 0.1)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_sandbox_user_cannot_read_root_files_and_its_daemons_are_killed(tmp_path, sandbox_python):
    python, packages, isolated = sandbox_python
    if not isolated:
        pytest.skip("no Python here that the sandbox user may run")
    secret = tmp_path / "secret"
    secret.write_text("expected values")
    secret.chmod(0o600)
    script = textwrap.dedent(f"""
        import os, subprocess, sys
        try:
            open({str(secret)!r}).read()
            print("read the secret")
        except PermissionError:
            print("no permission")
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         start_new_session=True)
    """)
    os.chmod(tmp_path, 0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", packages)
        sandbox = Sandbox(python)
    assert sandbox.isolated
    outcome = sandbox.run([python, "-c", script], "/", {"PATH": "/usr/bin:/bin"},
                          Limits(cpu_s=10, wall_s=20, memory_mb=512), tmp_path / "log")
    assert outcome.returncode == 0 and "no permission" in outcome.log_tail
    listed = subprocess.run(["ps", "-o", "stat=", "-u", str(sandbox.uid)], capture_output=True,
                            text=True).stdout.split()
    assert [s for s in listed if not s.startswith("Z")] == [], "a sandbox process survived"
