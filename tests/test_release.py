# cs-vit: instructor-only (tests of the release tool; not copied into the student release)
"""``cs-vit release``: solution regions become stubs, and the student tree fails exactly its TODOs.

The first tests use small made-up files; the last ones build the release of this
project and run the student tree's own tests in a subprocess.
"""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cs_vit.cli import main
from cs_vit.release import (
    ReleaseError, find_regions, is_instructor_only, make_release, project_files, release_file,
)
from cs_vit.release.regions import enclosing_functions, function_of

ROOT = Path(__file__).resolve().parents[1]
TASK = re.compile(r"^task\d+$")
TRAINING = "training"  # the marker of whole training runs, which need every task
STUB_ERROR = re.compile(r"is not written yet; check it with: pytest -m (task\d+)")


def py(source):
    return textwrap.dedent(source).lstrip("\n")


def released_python(source, path="pkg/mod.py"):
    return release_file(path, py(source).encode())[0].decode()


def notebook(*cells):
    """A minimal nbformat-4 notebook: cells are (cell_type, source) pairs."""
    def cell(kind, source):
        extra = {"outputs": [{"output_type": "stream", "name": "stdout", "text": "42\n"}],
                 "execution_count": 3} if kind == "code" else {}
        return {"cell_type": kind, "metadata": {}, "source": py(source), **extra}
    return json.dumps({"cells": [cell(*c) for c in cells], "metadata": {}, "nbformat": 4,
                       "nbformat_minor": 5})


def released_notebook(*cells):
    return json.loads(release_file("nb/course.ipynb", notebook(*cells).encode())[0])["cells"]


LAYER = """
class Norm:
    def forward(self, x):
        \"\"\"x: (N, D) -> (N, D).\"\"\"
        out = None
        # BEGIN SOLUTION task3
        # HINT: subtract the mean of each row
        out = x - x.mean(axis=1, keepdims=True)
        # END SOLUTION
        return out
"""


def test_region_becomes_a_hint_and_an_error_naming_function_task_and_check():
    student = released_python(LAYER)
    assert "x.mean(axis=1" not in student and "SOLUTION" not in student and "HINT" not in student
    assert "        # TODO (task3): subtract the mean of each row\n" in student
    namespace = {}
    exec(student, namespace)
    with pytest.raises(NotImplementedError, match=r"Norm\.forward \(task3\) in pkg/mod\.py.*"
                                                  r"pytest -m task3"):
        namespace["Norm"]().forward(None)


def test_set_up_lines_outside_the_region_are_kept():
    student = released_python(LAYER)
    assert "        out = None\n" in student and "        return out\n" in student
    assert '"""x: (N, D) -> (N, D)."""' in student


def test_stub_keeps_the_marker_indentation_and_long_hints_span_lines():
    student = released_python("""
    def f(x):
        if x:
            # BEGIN SOLUTION
            # HINT: first line of the hint
            # HINT: second line
            return 1
            # END SOLUTION
        return 0
    """)
    assert ("        # TODO: first line of the hint\n"
            "        #   second line\n"
            "        raise NotImplementedError(\n"
            "            'f in pkg/mod.py is not written yet')\n"
            "    return 0\n") in student


def test_region_outside_functions_names_the_module():
    student = released_python("""
    # BEGIN SOLUTION
    TABLE = [1, 2]
    # END SOLUTION
    """)
    assert "'mod in pkg/mod.py is not written yet'" in student


def test_file_without_markers_is_copied_unchanged():
    source = py(LAYER).replace("# BEGIN SOLUTION task3", "").replace("# END SOLUTION", "")
    assert release_file("a.py", source.encode()) == (source.encode(), 0)


@pytest.mark.parametrize("source, message", [
    ("""
    # BEGIN SOLUTION
    a = 1
    # BEGIN SOLUTION
    b = 2
    # END SOLUTION
    """, r"pkg/mod\.py, line 3: BEGIN SOLUTION inside the region opened at line 1"),
    ("""
    x = 0
    # BEGIN SOLUTION
    a = 1
    """, r"pkg/mod\.py, line 2: BEGIN SOLUTION is never closed"),
    ("""
    a = 1
    # END SOLUTION
    """, r"pkg/mod\.py, line 2: END SOLUTION without a BEGIN SOLUTION"),
    ("""
    def f():
        # BEGIN SOLUTION
        return 1
    # END SOLUTION
    """, r"pkg/mod\.py, line 4: END SOLUTION is indented differently from its BEGIN "
         r"SOLUTION at line 2"),
    ("""
    def f():
        # BEGIN SOLUTION
        a = 1
    b = 2
        # END SOLUTION
    """, r"pkg/mod\.py, line 4: this line is indented less than the BEGIN SOLUTION at line 2"),
    ("""
    # BEGIN SOLUTION
    # HINT: nothing to write
    # END SOLUTION
    """, r"pkg/mod\.py, line 1: the solution region is empty"),
    ("""
    # BEGIN SOLUTION task 3
    a = 1
    # END SOLUTION
    """, r"pkg/mod\.py, line 1: 'task 3' is not a task name"),
])
def test_malformed_markers_are_refused_naming_file_and_line(source, message):
    with pytest.raises(ReleaseError, match=message):
        released_python(source)


def test_marker_words_inside_a_string_or_a_longer_comment_are_not_markers():
    source = py('''
    TEXT = """
    BEGIN SOLUTION
    """
    # this is not a BEGIN SOLUTION marker
    ''')
    assert find_regions(source.splitlines(), "x.py") == []


def test_notebook_code_region_becomes_a_marked_gap_and_outputs_are_cleared():
    cells = released_notebook(("markdown", "Train it."), ("code", """
    setup = 1
    # BEGIN SOLUTION
    # HINT: pick a learning rate
    learning_rate = 3e-4
    # END SOLUTION
    print(learning_rate)
    """))
    source = cells[1]["source"]
    assert "3e-4" not in source and "SOLUTION" not in source
    assert source.startswith("setup = 1\n# TODO: pick a learning rate\n")
    assert "YOUR CODE HERE" in source and source.endswith("print(learning_rate)\n")
    assert cells[1]["outputs"] == [] and cells[1]["execution_count"] is None
    assert cells[0]["source"] == "Train it."


def test_notebook_markdown_region_becomes_an_answer_gap():
    cells = released_notebook(("markdown", """
    **Question.** Why scale?

    <!-- BEGIN SOLUTION -->
    Because the variance grows with the head size.
    <!-- END SOLUTION -->
    """))
    assert cells[0]["source"] == "**Question.** Why scale?\n\n**Your answer:** *write it here*\n"


def test_notebook_marker_errors_name_the_cell_and_line():
    with pytest.raises(ReleaseError, match=r"nb/course\.ipynb, cell 1, line 2: BEGIN SOLUTION "
                                           r"is never closed"):
        released_notebook(("markdown", "hi"), ("code", "a = 1\n# BEGIN SOLUTION\nb = 2\n"))


def fake_project(root):
    files = {
        "pyproject.toml": "[project]\nname = 'demo'\n",
        "pkg/mod.py": py(LAYER),
        "tests/test_mod.py": "def test_a():\n    pass\n",
        "tests/test_tool.py": "# cs-vit: instructor-only\ndef test_b():\n    pass\n",
        "datasets/README.md": "where data goes\n",
        "datasets/cifar10/data_batch_1": "data",
        ".venv/lib/site.py": "x = 1\n",
        "pkg/__pycache__/mod.cpython-311.pyc": "bytes",
        "runs/a/history.json": "{}",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_release_of_a_folder_copies_the_project_stubs_solutions_and_drops_instructor_files(
        tmp_path):
    src = fake_project(tmp_path / "src")
    summary = make_release(src, tmp_path / "out")
    assert sorted(summary.files) == ["datasets/README.md", "pkg/mod.py", "pyproject.toml",
                                     "tests/test_mod.py"]
    assert summary.regions == {"pkg/mod.py": 1}
    assert summary.instructor_only == ["tests/test_tool.py"]
    assert "NotImplementedError" in (tmp_path / "out" / "pkg" / "mod.py").read_text()


def test_release_refuses_a_folder_that_is_not_empty_or_inside_the_project(tmp_path):
    src = fake_project(tmp_path / "src")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ReleaseError, match="already exists and is not empty"):
        make_release(src, tmp_path / "full")
    with pytest.raises(ReleaseError, match="inside the project"):
        make_release(src, src / "student")
    with pytest.raises(ReleaseError, match="no pyproject.toml"):
        make_release(tmp_path / "full", tmp_path / "out")


def test_release_command_writes_the_tree_and_reports_errors_as_a_message(tmp_path, capsys):
    src = fake_project(tmp_path / "src")
    assert main(["release", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "pkg/mod.py: 1" in out and "tests/test_tool.py" in out
    (src / "pkg" / "bad.py").write_text("# BEGIN SOLUTION\nx = 1\n")
    with pytest.raises(SystemExit, match=r"cs-vit release: pkg/bad\.py, line 1"):
        main(["release", "--src", str(src), "--out", str(tmp_path / "out2")])


# The project itself -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "student"
    return make_release(ROOT, out)


def _texts(relative):
    """[(text, is_markdown)] of a .py file (one text) or a notebook (one per cell)."""
    if relative.endswith(".py"):
        return [((ROOT / relative).read_text(), False)]
    cells = json.loads((ROOT / relative).read_text())["cells"]
    return [("".join(c["source"]), c["cell_type"] == "markdown") for c in cells]


def released_sources():
    """The project's .py and .ipynb files that go into the release."""
    return [relative for relative in project_files(ROOT) if relative.endswith((".py", ".ipynb"))
            and not is_instructor_only((ROOT / relative).read_bytes())]


def solution_regions():
    """[(relative path, Region)] of every solution region in the project."""
    return [(relative, region) for relative in released_sources()
            for text, markdown in _texts(relative)
            for region in find_regions(text.splitlines(), relative, markdown)]


def _lines_outside_regions(relative):
    outside = set()
    for text, markdown in _texts(relative):
        lines = text.splitlines()
        hidden = {n for r in find_regions(lines, relative, markdown)
                  for n in range(r.begin, r.end + 1)}
        outside |= {line.strip() for n, line in enumerate(lines, start=1) if n not in hidden}
    return outside


def task_markers(config):
    names = [line.split(":")[0].strip() for line in config.getini("markers")]
    return [name for name in names if TASK.match(name)]


def test_every_task_has_solution_regions_and_every_region_a_registered_task(request):
    tasks = task_markers(request.config)
    assert tasks, "register the task markers (task1, ...) in pyproject.toml"
    tags = {region.tag for _, region in solution_regions() if region.tag}
    assert tags == set(tasks)


def test_no_line_of_a_solution_region_appears_in_the_release(student):
    """(a) Each code line of a region is absent from the released files, unless the solution
    tree also has it outside every region (``return out``, ``backend.seed(0)``, ...)."""
    inside = {line.strip() for _, region in solution_regions() for line in region.code_lines()}
    outside = set()
    for relative in released_sources():
        outside |= _lines_outside_regions(relative)
    secret = inside - outside
    assert secret
    for relative in student.files:
        text = (student.out_dir / relative).read_text(errors="replace")
        lines = _text_lines(relative, text)
        leaked = sorted(secret & lines)
        assert not leaked, f"{relative} shows solution lines: {leaked}"
        if relative.endswith((".py", ".ipynb")):
            assert not [line for line in lines if re.match(r"(#|<!--).*(SOLUTION|HINT:)", line)]


def _text_lines(relative, text):
    if relative.endswith(".ipynb"):
        text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
    return {line.strip() for line in text.splitlines()}


def stubbed_functions():
    """{task: the qualified names its stubs give, e.g. "LayerNorm.forward"} over the .py files."""
    names = {}
    for relative in released_sources():
        if relative.endswith(".py"):
            source = (ROOT / relative).read_text()
            functions = enclosing_functions(source, relative)
            for region in find_regions(source.splitlines(), relative):
                names.setdefault(region.tag, set()).add(
                    function_of(region, functions, Path(relative).stem))
    return names


def test_each_task_section_of_the_notebook_names_exactly_the_functions_to_write():
    cells = json.loads((ROOT / "notebooks" / "ViT.ipynb").read_text())["cells"]
    sections = {}
    for cell in cells:
        text = "".join(cell["source"])
        heading = re.match(r"## Task (\d+):", text)
        if cell["cell_type"] == "markdown" and heading:
            sections[f"task{heading.group(1)}"] = text
    stubs = stubbed_functions()
    assert set(sections) == set(stubs)
    for task, names in stubs.items():
        named = {name for name in set().union(*stubs.values()) if f"`{name}" in sections[task]}
        assert named == names, (task, sorted(names), sorted(named))


def test_the_student_tree_has_its_own_readme(student):
    readme = (student.out_dir / "README.md").read_text()
    assert readme == (ROOT / "README.student.md").read_text()
    assert "README.md" in student.instructor_only
    assert not (student.out_dir / "README.student.md").exists()
    assert "fast" not in {Path(f).parts[1] for f in student.files if f.startswith("cs_vit/")
                          and len(Path(f).parts) > 2}
    for task, names in stubbed_functions().items():
        assert f"pytest -m {task}" in readme


def test_release_notebooks_have_no_outputs_and_instructor_files_stay_out(student):
    nbformat = pytest.importorskip("nbformat")
    notebooks = [f for f in student.files if f.endswith(".ipynb")]
    assert len(notebooks) == 3
    for relative in notebooks:
        released = nbformat.read(student.out_dir / relative, as_version=4)
        nbformat.validate(released)
        for cell in released.cells:
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None
    assert {"tests/test_release.py", "tests/test_notebooks.py"} <= set(student.instructor_only)
    assert not (student.out_dir / "tests" / "test_release.py").exists()


PROBE = r'''
"""Records each test's outcome, exception and markers, for tests/test_release.py."""
import json
import os

import pytest

RECORDS = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call" or report.failed or report.skipped:
        error = call.excinfo.value if call.excinfo else None
        RECORDS.append({
            "test": item.nodeid, "function": item.originalname, "when": report.when,
            "outcome": report.outcome, "error": type(error).__name__ if error else None,
            # a test that runs cs_vit in a subprocess sees the stub's error in its stderr
            "message": f"{error}\n{getattr(error, 'stderr', '')}" if error else "",
            "markers": sorted({m.name for m in item.iter_markers()}),
        })


def pytest_sessionfinish(session):
    import cs_vit
    with open(os.environ["RELEASE_PROBE_OUT"], "w") as f:
        json.dump({"cs_vit": cs_vit.__file__, "records": RECORDS}, f)
'''


@pytest.fixture(scope="module")
def student_test_run(student, tmp_path_factory):
    """Run the student tree's own tests against the student package, in a subprocess."""
    probe = tmp_path_factory.mktemp("probe")
    (probe / "release_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "CS_VIT"))}
    env.update(PYTHONPATH=os.pathsep.join([str(student.out_dir), str(probe)]),
               RELEASE_PROBE_OUT=str(probe / "records.json"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         "-p", "release_probe"], cwd=student.out_dir, env=env, capture_output=True,
        text=True, timeout=900)
    records_file = probe / "records.json"
    assert records_file.exists(), (f"the student tests did not run:\n{result.stdout[-3000:]}"
                                   f"\n{result.stderr[-3000:]}")
    return result, json.loads(records_file.read_text())


def test_student_tree_imports_its_own_package(student, student_test_run):
    _, records = student_test_run
    assert Path(records["cs_vit"]).resolve().is_relative_to(student.out_dir)


def test_student_tree_fails_exactly_the_todo_tests_with_not_implemented_error(
        request, student_test_run):
    """(b) every test without a task or training marker passes; (c) only tests with one fail,
    each in the test itself (not its set-up) with the NotImplementedError of a stub: a task
    test with its own task's, a whole training run (``training``, which needs every task)
    with any task's; every such test function fails (for a parametrized one: at least one
    case), and every task has failing tests."""
    result, records = student_test_run
    records = records["records"]
    tasks = task_markers(request.config)
    graded = set(tasks) | {TRAINING}
    failed = [r for r in records if r["outcome"] == "failed"]
    summary = result.stdout[-3000:]
    unmarked = [r["test"] for r in failed if not set(r["markers"]) & graded]
    assert not unmarked, f"failing tests without a task or training marker: {unmarked}\n{summary}"
    for r in failed:
        stub = STUB_ERROR.search(r["message"])
        assert stub and (r["error"] == "NotImplementedError"
                         or "NotImplementedError" in r["message"]), (r["test"], r["message"])
        own = [m for m in r["markers"] if m in graded]
        assert own in ([stub.group(1)], [TRAINING]), (r["test"], r["markers"], r["message"])
        assert r["when"] == "call", f"{r['test']} errors in its {r['when']}: {r['message']}"
    marked = {(r["test"].split("::")[0], r["function"]) for r in records
              if set(r["markers"]) & graded}
    failing = {(r["test"].split("::")[0], r["function"]) for r in failed}
    assert marked == failing, f"marked but passing in the release: {sorted(marked - failing)}"
    assert {m for r in failed for m in r["markers"] if m in tasks} == set(tasks)
    assert any(TRAINING in r["markers"] for r in failed), "no whole training run was checked"