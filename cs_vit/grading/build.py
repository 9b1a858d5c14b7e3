# cs-vit: instructor-only (builds the autograder from the solution)
"""Build the Gradescope autograder: ``cs-vit autograder --out autograder.zip``.

The zip holds, in Gradescope's layout::

    setup.sh, run_autograder, requirements.txt
    student/cs_vit/         the student release of the package (stubs, no fast tier)
    grader/cs_vit_grader/   the grading runtime (cs_vit/grading/runtime)
    grader/private/         config.json, cases.json, inputs.npz, expected.npz, hidden/
                            (made root-only when the autograder runs)

The tasks and their files come from the solution regions' tags; the expected
values come from running every case on this tree's solution, in a subprocess,
in float64, on the reference tier. No solution code goes into the zip.
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cs_vit.grading.points import POINTS_FILE, parse_points, resolve_points
from cs_vit.grading.tasks import AutograderError, task_files, task_order, task_titles
from cs_vit.release.build import make_release, project_root
from cs_vit.release.regions import ReleaseError

RUNTIME = Path(__file__).with_name("runtime")
LIMITS = {
    # A task's cases take a few seconds on half a CPU; 7 tasks at their limit and the
    # training check still fit Gradescope's default 10 minutes.
    "task": {"cpu_s": 30, "wall_s": 40, "memory_mb": 1024},
    "training": {"cpu_s": 120, "wall_s": 120, "memory_mb": 1024},
}
TRAINING_CHECK = {
    "threshold": 0.9,
    # 5 tokens of 32 features, 2 blocks: ~97% after 20 epochs, ~3 s of one core on the
    # reference solution, so half a CPU core and a slower textbook tier have ample margin.
    "model": {"image_size": 8, "patch_size": 4, "in_channels": 1, "num_classes": 10,
              "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_dim": 64},
    "solver": {"num_epochs": 20, "batch_size": 32, "learning_rate": 3e-3,
               "weight_decay": 0.05, "warmup_epochs": 1.0},
    "seed": 0, "noise": 16.0, "test_fraction": 0.2, "val_fraction": 0.1,
}

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image: Python and the
# student tree's dependencies, in a virtual environment the sandbox user can read.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /autograder/venv
chmod o+x /autograder  # the sandbox user (nobody) runs /autograder/venv/bin/python
/autograder/venv/bin/pip install --no-cache-dir -r "$HERE/requirements.txt"
"""
RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission (as /autograder/run_autograder, a copy).
# Elsewhere: CS_VIT_AUTOGRADER_ROOT=DIR (DIR/submission, DIR/results) and
# CS_VIT_AUTOGRADER_SOURCE=DIR (the unpacked zip); `cs-vit grade` sets both.
ROOT="${CS_VIT_AUTOGRADER_ROOT:-/autograder}"
SOURCE="${CS_VIT_AUTOGRADER_SOURCE:-$ROOT/source}"
PYTHON="${CS_VIT_AUTOGRADER_PYTHON:-/autograder/venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
RESULTS="$ROOT/results/results.json"
PYTHONPATH="$SOURCE/grader${PYTHONPATH:+:$PYTHONPATH}" \
  "$PYTHON" -s -B -m cs_vit_grader.run --root "$ROOT" --source "$SOURCE"
if [ ! -s "$RESULTS" ]; then  # Python itself could not start: still leave a valid results.json
  mkdir -p "$(dirname "$RESULTS")"
  printf '%s' '{"score": 0, "execution_time": 0, "visibility": "visible",' \
    ' "stdout_visibility": "hidden", "tests": [],' \
    ' "output": "The autograder could not start its Python; ask your instructor."}' > "$RESULTS"
fi
"""


@dataclass
class AutograderSummary:
    """What :func:`make_autograder` built: the zip, its size, tasks, cases and points."""

    path: Path
    size: int
    points: dict
    cases: dict = field(default_factory=dict)
    hidden: int = 0


def _merged(defaults, overrides):
    merged = copy.deepcopy(defaults)
    for key, value in (overrides or {}).items():
        merged[key] = dict(merged[key], **value) if isinstance(value, dict) else value
    return merged


def _dependencies(src):
    """The project's runtime dependencies (pyproject's [project] dependencies), one a line."""
    text = (Path(src) / "pyproject.toml").read_text()
    block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M)
    return "".join(f"{d}\n" for d in re.findall(r'"([^"]+)"', block.group(1) if block else ""))


def expected_values(src, out, hidden_tests=None):
    """Run every case on the solution at ``src`` (a subprocess, reference tier) into ``out``."""
    env = dict(os.environ, CS_VIT_FAST="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "cs_vit.grading.expected", str(out)]
    done = subprocess.run(command + ([str(hidden_tests)] if hidden_tests else []), env=env,
                          cwd=src, capture_output=True, text=True)
    if done.returncode != 0:
        raise AutograderError(f"computing the expected values failed:\n{done.stderr[-3000:]}")


def make_autograder(out, src=None, points=None, hidden_tests=None, per_test=False, limits=None,
                    training=None):
    """Write the Gradescope autograder zip for the project at ``src`` (default: this checkout).

    ``points``: {task or "training": points} over the points file's; ``hidden_tests``: a
    folder of hidden-test modules; ``per_test``: one results entry per case instead of
    per task; ``limits``/``training``: overrides of :data:`LIMITS`/:data:`TRAINING_CHECK`.
    Returns an :class:`AutograderSummary`; raises AutograderError or ReleaseError.
    """
    src = Path(src or project_root() or ".").resolve()
    tasks = task_files(src)
    if not tasks:
        raise AutograderError(f"{src} has no tagged solution regions (# BEGIN SOLUTION task1)")
    if hidden_tests and not Path(hidden_tests).is_dir():
        raise AutograderError(f"--hidden-tests {hidden_tests} is not a folder")
    config = {"tasks": tasks, "titles": task_titles(src, tasks),
              "points": resolve_points(tasks, points), "per_test": bool(per_test),
              "limits": _merged(LIMITS, limits),
              "training": _merged(TRAINING_CHECK, training)}
    config["training"]["title"] = (f"your ViT learns the digits (at least "
                                   f"{config['training']['threshold']:.0%} test accuracy within "
                                   f"{config['limits']['training']['wall_s']:g} s)")
    with tempfile.TemporaryDirectory(prefix="cs_vit_autograder_") as tmp:
        tmp = Path(tmp)
        make_release(src, tmp / "student")
        expected_values(src, tmp / "expected", hidden_tests)
        cases = json.loads((tmp / "expected" / "cases.json").read_text())
        unknown = sorted({c["task"] for c in cases} - set(tasks))
        if unknown:
            raise AutograderError(f"hidden tests name tasks that have no regions: {unknown}")
        untested = [t for t in tasks if config["points"][t] and
                    not any(c["task"] == t and not c["hidden"] for c in cases)]
        if untested:
            raise AutograderError(f"{untested} have points but no grading cases: add cases to "
                                  "cs_vit/grading/runtime/cases.py, or give them 0 points")
        config["hidden_tasks"] = sorted({c["task"] for c in cases if c["hidden"]}, key=task_order)
        _write_zip(Path(out), src, tmp, config, hidden_tests)
    summary = AutograderSummary(Path(out), Path(out).stat().st_size, config["points"])
    for c in (c for c in cases if not c["hidden"]):
        summary.cases[c["task"]] = summary.cases.get(c["task"], 0) + 1
    summary.hidden = sum(c["hidden"] for c in cases)
    return summary


def _add(archive, name, data, mode):
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _write_zip(out, src, tmp, config, hidden_tests):
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        _add(archive, "setup.sh", SETUP_SH, 0o755)
        _add(archive, "run_autograder", RUN_AUTOGRADER, 0o755)
        _add(archive, "requirements.txt", _dependencies(src), 0o644)
        for path in sorted(RUNTIME.glob("*.py")):
            _add(archive, f"grader/cs_vit_grader/{path.name}", path.read_bytes(), 0o644)
        _add(archive, "grader/private/config.json", json.dumps(config, indent=1), 0o600)
        for name in ("cases.json", "inputs.npz", "expected.npz"):
            _add(archive, f"grader/private/{name}", (tmp / "expected" / name).read_bytes(), 0o600)
        for path in sorted(Path(hidden_tests).glob("*.py")) if hidden_tests else []:
            _add(archive, f"grader/private/hidden/hidden_{path.name}", path.read_bytes(), 0o600)
        package = tmp / "student" / "cs_vit"
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                _add(archive, f"student/{path.relative_to(tmp / 'student').as_posix()}",
                     path.read_bytes(), 0o644)
    os.replace(partial, out)


def add_autograder_parser(subparsers):
    """Register ``cs-vit autograder --out ZIP [--points ...] [--hidden-tests DIR] [--per-test]``."""
    p = subparsers.add_parser("autograder", help="build the Gradescope autograder zip from the "
                                                 "solution (instructors)")
    p.add_argument("--out", required=True, help="the zip to write, e.g. autograder.zip")
    p.add_argument("--points", help="points per task over the defaults in "
                                    f"{POINTS_FILE.name}, e.g. task1=10,task5=25,training=0")
    p.add_argument("--hidden-tests", help="a folder of hidden-test modules (*.py with CASES), "
                                          "shown to students after the due date")
    p.add_argument("--per-test", action="store_true",
                   help="one Gradescope entry per case instead of one per task")
    p.add_argument("--accuracy", type=float, help="test accuracy the training check needs "
                                                  f"(default {TRAINING_CHECK['threshold']})")
    p.add_argument("--training-seconds", type=float, help="wall-clock limit of the training "
                   f"check (default {LIMITS['training']['wall_s']})")
    p.add_argument("--src", default=project_root(), help="the solution checkout to build from")
    p.set_defaults(func=_autograder_command)


def _autograder_command(args):
    training = {} if args.accuracy is None else {"threshold": args.accuracy}
    limits = ({} if args.training_seconds is None else
              {"training": {"wall_s": args.training_seconds, "cpu_s": args.training_seconds}})
    try:
        summary = make_autograder(args.out, args.src, parse_points(args.points),
                                  args.hidden_tests, args.per_test, limits, training)
    except (AutograderError, ReleaseError) as err:
        raise SystemExit(f"cs-vit autograder: {err}") from err
    total = sum(summary.points.values())
    print(f"wrote {summary.path} ({summary.size / 1024:.0f} KiB)")
    for name, value in summary.points.items():
        cases = f", {summary.cases[name]} cases" if name in summary.cases else ""
        print(f"  {name}: {value:g} points{cases}")
    print(f"  total: {total:g} points; hidden cases: {summary.hidden}")
    print("upload it to Gradescope (Programming assignment > Configure autograder > zip file), "
          "or try it first with: cs-vit grade SUBMISSIONS_DIR --autograder "
          f"{summary.path}")
    return 0
