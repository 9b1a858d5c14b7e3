# cs-vit: instructor-only (part of the grading runtime)
"""``run_autograder``: grade one submission, task by task, and write results.json.

    python -m cs_vit_grader.run [--root /autograder] [--source DIR] [--submission DIR]
                                [--results FILE]

Gradescope's layout by default: the zip unpacked in ``ROOT/source``, the
submission in ``ROOT/submission``, the results in ``ROOT/results/results.json``.
For each task the parent builds a tree (the student release, with the
submission's files of that task and no others), runs the task's cases there in
a sandboxed child and compares the child's outputs with the expected values;
then the training check. The parent never imports the student's code, and it
always leaves a valid results.json: a placeholder first, then one after each
task, then the final one.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .report import INDEPENDENCE, NOT_AUTOGRADED, Report, entries, entry

PRIVATE = Path("grader/private")  # config, inputs, expected values, hidden tests: root only
RUNTIME = Path("grader/cs_vit_grader")
STUDENT = Path("student/cs_vit")
MAX_RESULT_BYTES = 64 << 20
MAX_RESULT_ENTRIES = 10_000


class Grader:
    """Everything one submission's grading needs: paths, config, sandbox, scratch folder."""

    def __init__(self, source, submission, base):
        from .sandbox import Limits, Sandbox
        from .submission import Submission

        self.source, self.base = Path(source), Path(base)
        private = self.source / PRIVATE
        if os.geteuid() == 0:
            _set_modes(private, 0o700, 0o600)
        self.config = json.loads((private / "config.json").read_text())
        self.cases = json.loads((private / "cases.json").read_text())
        self.limits = {kind: Limits(**values) for kind, values in self.config["limits"].items()}
        self.sandbox = Sandbox()
        self.submission = Submission(submission, self.all_files())
        print(f"sandbox: {self.sandbox.note}", flush=True)

    def all_files(self):
        return [f for files in self.config["tasks"].values() for f in files]

    def tree(self, name, files):
        """base/name: the student package with ``files`` over it, and the grading runtime."""
        tree = self.base / name
        shutil.copytree(self.source / STUDENT, tree / "cs_vit")
        shutil.copytree(self.source / RUNTIME, tree / "cs_vit_grader")
        for relative, data in files.items():
            (tree / relative).write_bytes(data)
        _set_modes(tree, 0o755, 0o644)  # readable by the sandbox user, writable by root alone
        return tree

    def run_child(self, name, files, request, arrays, limits, hidden=()):
        """(outcome, outputs or None, errors, why no outputs) of one sandboxed child."""
        import numpy as np

        tree, scratch = self.tree(name, files), self.base / f"{name}-scratch"
        self.sandbox.make_private(scratch)
        (scratch / "request.json").write_text(json.dumps(request))
        with open(scratch / "inputs.npz", "xb") as f:
            np.savez(f, **arrays)
        if hidden:
            (scratch / "hidden").mkdir()
            for module in hidden:
                shutil.copyfile(self.source / PRIVATE / "hidden" / f"{module}.py",
                                scratch / "hidden" / f"{module}.py")  # not the 0600 mode
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch),
               "TMPDIR": str(scratch), "PYTHONDONTWRITEBYTECODE": "1",
               # the parent's import path (its libraries), behind the task's tree
               "PYTHONPATH": os.pathsep.join(filter(None, [str(tree),
                                                           os.environ.get("PYTHONPATH")])),
               "PYTHONNOUSERSITE": "1", "PYTHONSAFEPATH": "1", "PYTHONHASHSEED": "0",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "CS_VIT_FAST": "0", "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(scratch),
               "LC_ALL": "C.UTF-8"}
        started = time.monotonic()
        outcome = self.sandbox.run([sys.executable, "-s", "-B", "-m", "cs_vit_grader.child",
                                    str(scratch)], scratch, env, limits,
                                   self.base / f"{name}.log")
        print(f"{name}: {time.monotonic() - started:.1f} s", flush=True)
        outputs, errors, why = read_results(scratch / "result.npz", self.sandbox.uid)
        if outputs is None:
            why = f"the grading process {outcome.describe(limits)}{why}"
            if outcome.log_tail.strip():
                why += f"\n    Its last output was:\n{_indent(outcome.log_tail.strip())}"
        return outcome, outputs, errors, why

    def grade_cases(self, name, cases, files, expected):
        """[(case, passed, text)] for ``cases`` run in one child on the submitted ``files``."""
        from .judge import judge_case

        ids = {case["id"] for case in cases}
        request = {"mode": "cases", "files": list(files), "cases": [
            {k: case[k] for k in ("id", "kind", "params", "module", "seed", "replay")}
            for case in cases]}
        with _load_npz(self.source / PRIVATE / "inputs.npz") as inputs:
            arrays = {k: inputs[k] for k in inputs.files if k.split("/")[0] in ids}
        hidden = sorted({case["module"] for case in cases if case["module"]})
        _, outputs, errors, why = self.run_child(name, self.submission.files(files), request,
                                                 arrays, self.limits["task"], hidden)
        judged = []
        for case in cases:
            prefix = case["id"] + "/"
            error = why if outputs is None else errors.get(case["id"])
            got = {n: outputs.get(prefix + n) for n in case["outputs"]} if outputs else {}
            want = {n: expected[prefix + n] for n in case["outputs"]}
            judged.append((case, *judge_case(case, want, got, error)))
        return judged

    def grade_training(self):
        """(passed, text) of the training check on every submitted task file."""
        from .training import digits_for_child, judge_training

        settings = self.config["training"]
        arrays, labels = digits_for_child(settings, int.from_bytes(os.urandom(4), "little"))
        request = {"mode": "training", "training": settings, "files": self.all_files()}
        files = self.submission.files(self.all_files())
        outcome, outputs, errors, why = self.run_child("training", files, request, arrays,
                                                       self.limits["training"])
        if outputs is None:
            return False, f"FAILED: {why}"
        if "training" in errors:
            return False, f"FAILED: {errors['training']}"
        return judge_training(outputs.get("predictions"), labels, settings, outcome)


def _set_modes(folder, folder_mode, file_mode):
    for here, _, files in os.walk(folder):
        os.chmod(here, folder_mode)
        for name in files:
            os.chmod(os.path.join(here, name), file_mode)


def _indent(text):
    return "\n".join("      " + line for line in text.splitlines())


def _load_npz(path):
    import numpy as np
    return np.load(path, allow_pickle=False)


def read_results(path, owner):
    """(outputs {key: float64 array} or None, errors {case id: text}, why none) of a child.

    The file is the untrusted child's: read only if it is a plain file (no link),
    not too large, its archive members not too many nor too large unpacked, and
    with NumPy's pickle support off; anything else counts as no results.
    """
    import numpy as np

    from .child import ERRORS, MESSAGE_CHARS
    from .sandbox import read_regular_file

    try:
        data = read_regular_file(path, MAX_RESULT_BYTES, owner)
    except FileNotFoundError:
        return None, {}, ""
    except (OSError, ValueError) as err:
        return None, {}, f" (its results file was refused: {err})"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if (len(members) > MAX_RESULT_ENTRIES
                    or sum(m.file_size for m in members) > MAX_RESULT_BYTES):
                raise ValueError("too many or too large arrays")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as err:  # garbage from the child: anything NumPy or zipfile may raise
        return None, {}, f" (its results file is not valid: {type(err).__name__})"
    errors = {}
    described = arrays.pop(ERRORS, None)
    try:
        parsed = json.loads(str(described[()]))
        errors = {str(k): str(v)[:MESSAGE_CHARS] for k, v in parsed.items()}
    except Exception:  # a missing or malformed error list: the outputs still count
        pass
    outputs = {key: value.astype(np.float64) for key, value in arrays.items()
               if value.dtype.kind in "biuf"}
    return outputs, errors, ""


def grade(source, submission, report):
    """Grade ``submission`` with the autograder in ``source``, filling ``report``."""
    with tempfile.TemporaryDirectory(prefix="cs_vit_grading_", ignore_cleanup_errors=True) as base:
        os.chmod(base, 0o711)  # the sandbox user passes through to its own folders only
        grader = Grader(source, submission, base)
        config = grader.config
        report.lines = [INDEPENDENCE, NOT_AUTOGRADED, grader.submission.history_note(),
                        "\n".join(grader.submission.summary(grader.all_files()))]
        with _load_npz(Path(source) / PRIVATE / "expected.npz") as npz:
            expected = {key: npz[key] for key in npz.files}
        number = 0
        for task, files in config["tasks"].items():
            points = config["points"].get(task, 0)
            own = [c for c in grader.cases if c["task"] == task and not c["hidden"]]
            if not points or not own:
                continue
            number += 1
            judged = grader.grade_cases(task, own, files, expected)
            judged = [(case, points / len(own), passed, text) for case, passed, text in judged]
            report.tests += entries(task, config["titles"].get(task, task), number, judged,
                                    config["per_test"], "visible")
            report.write()
        if config["points"].get("training", 0):
            number += 1
            passed, text = grader.grade_training()
            points = config["points"]["training"]
            report.tests.append(entry(f"training: {config['training']['title']}", str(number),
                                      points if passed else 0.0, points, text, "visible"))
            report.write()
        for task, files in config["tasks"].items():
            hidden = [c for c in grader.cases if c["task"] == task and c["hidden"]]
            if hidden:
                number += 1
                judged = grader.grade_cases(f"{task}-hidden", hidden, files, expected)
                judged = [(case, case["points"], passed, text) for case, passed, text in judged]
                report.tests += entries(f"{task} (hidden)", "hidden tests", number, judged,
                                        config["per_test"], "after_due_date")
                report.write()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("CS_VIT_AUTOGRADER_ROOT", "/autograder"))
    parser.add_argument("--source", help="the unpacked autograder (default: ROOT/source)")
    parser.add_argument("--submission", help="default: ROOT/submission")
    parser.add_argument("--results", help="default: ROOT/results/results.json")
    args = parser.parse_args(argv)
    root = Path(args.root)
    report = Report(args.results or root / "results" / "results.json")
    report.write("Grading did not finish: the autograder stopped before its end; ask your "
                 "instructor.")
    try:
        grade(args.source or root / "source", args.submission or root / "submission", report)
    except BaseException as err:  # a broken container or a grader bug: still a valid results.json
        report.lines.append(f"The autograder itself failed ({type(err).__name__}: {err}); the "
                            "entries above are complete, the rest is missing. Ask your instructor.")
        print(f"autograder error: {type(err).__name__}: {err}", file=sys.stderr)
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
