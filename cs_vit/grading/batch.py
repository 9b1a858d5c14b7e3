# cs-vit: instructor-only (grades a class with the autograder zip)
"""Grade a folder of submissions on this machine with the autograder zip.

    cs-vit grade SUBMISSIONS_DIR --autograder autograder.zip --jobs 4 --out grades.csv

Each sub-folder of SUBMISSIONS_DIR is one submission. Each runs the zip's own
``run_autograder`` (what Gradescope runs), N at a time, in a temporary folder
of its own; ``grades.csv`` gets a row per submission (its folder name, the
total and one column per task) and ``RESULTS_DIR/<name>.json`` its results.json.
A submission that breaks the grader gets a row with the error; the run goes on.
As root, each parallel job's sandbox gets a user of its own (see
:mod:`.runtime.sandbox`).
"""
from __future__ import annotations

import csv
import json
import os
import pwd
import queue
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from cs_vit.grading.runtime.sandbox import UID_VARIABLE, Sandbox

SLACK_S = 300  # a submission's time limit: its tasks' and training's limits, plus this
ERROR_CHARS = 500


def unpack(autograder, folder):
    """Extract the zip into ``folder`` with the modes it records; returns ``folder``."""
    folder = Path(folder)
    with zipfile.ZipFile(autograder) as archive:
        for info in archive.infolist():
            target = folder / info.filename
            if not target.resolve().is_relative_to(folder.resolve()):
                raise ValueError(f"{autograder} holds a path outside its folder: {info.filename}")
            archive.extract(info, folder)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode)
    return folder


def columns(config):
    """The CSV's score columns: the tasks with points, training, then hidden tests per task."""
    names = [t for t in config["tasks"] if config["points"].get(t)]
    if config["points"].get("training"):
        names.append("training")
    return names + [f"{t} (hidden)" for t in config.get("hidden_tasks", [])]


def _sandbox_users(jobs):
    """One sandbox uid per parallel job (root only): nobody's, then unused uids below it."""
    if os.geteuid() != 0:
        return [None] * jobs
    nobody = pwd.getpwnam("nobody").pw_uid
    users, uid = [nobody], nobody - 1
    while len(users) < jobs and uid > 1000:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            users.append(uid)
        uid -= 1
    return users


def grade_one(folder, source, python, timeout, uid):
    """(results dict or None, error text) of one submission folder."""
    with tempfile.TemporaryDirectory(prefix="cs_vit_grade_", ignore_cleanup_errors=True) as root:
        root = Path(root)
        shutil.copytree(folder, root / "submission", symlinks=True)
        env = dict(os.environ, CS_VIT_AUTOGRADER_ROOT=str(root),
                   CS_VIT_AUTOGRADER_SOURCE=str(source), CS_VIT_AUTOGRADER_PYTHON=python)
        env.pop(UID_VARIABLE, None)
        if uid is not None:
            env[UID_VARIABLE] = str(uid)
        try:
            done = subprocess.run(["bash", str(source / "run_autograder")], env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"run_autograder did not finish within {timeout:g} s"
        try:
            return json.loads((root / "results" / "results.json").read_text()), ""
        except (OSError, ValueError) as err:
            tail = (done.stderr or done.stdout)[-ERROR_CHARS:]
            return None, f"no valid results.json ({type(err).__name__}): {tail}"


def row(name, results, error, names):
    """The CSV row of one submission: total, one score per column, and any error."""
    cells = {"submission": name, "total": "", "error": error}
    if results is not None:
        cells["total"] = results["score"]
        for column in names:
            cells[column] = round(sum(t["score"] for t in results["tests"]
                                      if t["name"].split(":")[0] == column), 4)
    return cells


def grade_folder(submissions, autograder, out="grades.csv", jobs=1, results_dir=None,
                 timeout=None, python=sys.executable, progress=True):
    """Grade every sub-folder of ``submissions``; write the CSV and each results.json.

    Returns the rows, as written. ``timeout`` (seconds per submission) defaults to
    the zip's limits plus :data:`SLACK_S`.
    """
    submissions, out = Path(submissions), Path(out)
    results_dir = Path(results_dir) if results_dir else out.with_name(out.stem + "_results")
    folders = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    results_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and not Sandbox(python).isolated:
        print(f"warning: nobody may not run {python}, so the submissions' code runs as root; "
              "pass --python with a Python outside /root to grade untrusted code",
              file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="cs_vit_autograder_") as tmp:
        source = unpack(autograder, Path(tmp) / "source")
        config = json.loads((source / "grader/private/config.json").read_text())
        names = columns(config)
        if timeout is None:
            limits = config["limits"]
            timeout = SLACK_S + len(config["tasks"]) * limits["task"]["wall_s"] + (
                limits["training"]["wall_s"])
        users = queue.Queue()
        for uid in _sandbox_users(jobs):
            users.put(uid)

        def job(folder):
            uid = users.get()
            try:
                return grade_one(folder, source, python, timeout, uid)
            except Exception as err:  # one broken submission never stops the class
                return None, f"{type(err).__name__}: {err}"
            finally:
                users.put(uid)

        rows = []
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(job, folder): folder for folder in folders}
            for future in tqdm(as_completed(futures), total=len(futures), desc="grading",
                               unit="submission", disable=not progress):
                folder = futures[future]
                results, error = future.result()
                if results is not None:
                    (results_dir / f"{folder.name}.json").write_text(json.dumps(results, indent=1))
                rows.append(row(folder.name, results, error, names))
    rows.sort(key=lambda r: r["submission"])
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, ["submission", "total", *names, "error"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def add_grade_parser(subparsers):
    """Register ``cs-vit grade SUBMISSIONS_DIR --autograder ZIP [--jobs N] [--out CSV]``."""
    p = subparsers.add_parser("grade", help="grade a folder of submissions with the "
                                            "autograder zip (instructors)")
    p.add_argument("submissions", help="a folder with one sub-folder per submission")
    p.add_argument("--autograder", required=True, help="the zip cs-vit autograder wrote")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    p.add_argument("--out", default="grades.csv", help="the CSV to write (default grades.csv)")
    p.add_argument("--results-dir", help="where each submission's results.json goes "
                                         "(default: OUT's name + _results)")
    p.add_argument("--timeout", type=float, help="seconds per submission (default: the zip's "
                                                 "limits plus 5 minutes)")
    p.add_argument("--python", default=sys.executable,
                   help="the Python that runs the autograder (default: this one); as root, the "
                        "sandbox user must be allowed to run it, which a venv under /root is not")
    p.set_defaults(func=_grade_command)


def _grade_command(args):
    if args.jobs < 1:
        raise SystemExit("cs-vit grade: --jobs must be at least 1")
    rows = grade_folder(args.submissions, args.autograder, args.out, args.jobs,
                        args.results_dir, args.timeout, args.python)
    failed = [r["submission"] for r in rows if r["error"]]
    print(f"graded {len(rows)} submissions into {args.out}"
          + (f"; {len(failed)} could not be graded: {', '.join(failed)}" if failed else ""))
    return 0
