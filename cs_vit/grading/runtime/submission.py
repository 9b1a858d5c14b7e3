# cs-vit: instructor-only (part of the grading runtime)
"""What a submission holds: its task files, its history.json, and what is ignored.

A task file counts at its path in the tree (``cs_vit/layers/layernorm.py``), at
that path under any folder (a zipped checkout), or flat by its name
(``layernorm.py``); the shallowest wins. Links are never followed and files
over a size limit are not read: the grader runs as root, and a link could
otherwise carry a root-only file into the student's sandbox.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import PurePosixPath

from .sandbox import read_regular_file

MAX_FILES = 10_000
MAX_FILE_BYTES = 1 << 20
MAX_HISTORY_BYTES = 4 << 20
SHOWN_IGNORED = 8


def submitted_files(folder):
    """{relative posix path: absolute path} of the submission's files; links left out."""
    found = {}
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(here, d)))
        for name in sorted(files):
            path = os.path.join(here, name)
            if not os.path.islink(path):
                found[PurePosixPath(os.path.relpath(path, folder)).as_posix()] = path
            if len(found) >= MAX_FILES:
                return found
    return found


def _shallowest(paths):
    return min(paths, key=lambda p: (p.count("/"), p)) if paths else None


class Submission:
    """The task files found in a submission folder, read once."""

    def __init__(self, folder, task_files):
        self.found = submitted_files(folder)
        self.where, self.contents, self.problems = {}, {}, []
        for relative in task_files:
            name = PurePosixPath(relative).name
            place = relative if relative in self.found else _shallowest(
                [p for p in self.found if p.endswith("/" + relative)]) or _shallowest(
                [p for p in self.found if PurePosixPath(p).name == name])
            if place is None:
                continue
            try:
                self.contents[relative] = read_regular_file(self.found[place], MAX_FILE_BYTES)
                self.where[relative] = place
            except (OSError, ValueError) as err:
                self.problems.append(f"{place} was not used: {err}")

    def files(self, task_files):
        """{relative path: bytes} of the submitted ones among ``task_files``."""
        return {r: self.contents[r] for r in task_files if r in self.contents}

    def summary(self, task_files):
        """Lines for the results' output: files used, missing and ignored."""
        used = [r if self.where[r] == r else f"{r} (as {self.where[r]})" for r in task_files
                if r in self.where]
        missing = [r for r in task_files if r not in self.where]
        ignored = sorted(set(self.found) - set(self.where.values()) - set(self.histories()))
        lines = [f"Graded files: {', '.join(used) or 'none'}."]
        if missing:
            lines.append(f"Not found in the submission (graded as the unwritten stub): "
                         f"{', '.join(missing)}.")
        if ignored:
            shown = ", ".join(ignored[:SHOWN_IGNORED])
            extra = len(ignored) - SHOWN_IGNORED
            more = f" and {extra} more" if extra > 0 else ""
            lines.append(f"Ignored (only the task files are graded): {shown}{more}.")
        return lines + self.problems

    def histories(self):
        return [p for p in self.found if PurePosixPath(p).name == "history.json"]

    def history_note(self):
        """One line on the submitted history.json: reported, never graded automatically."""
        place = _shallowest(self.histories())
        if place is None:
            return "No history.json in the submission."
        try:
            history = json.loads(read_regular_file(self.found[place], MAX_HISTORY_BYTES))
        except (OSError, ValueError) as err:
            return f"{place} could not be read ({type(err).__name__})."
        if not isinstance(history, dict):
            return f"{place} is not a JSON object."
        facts = []
        best, epoch = history.get("best_test_acc"), history.get("best_epoch")
        if _number(best):
            facts.append(f"best test accuracy {best:.1%}"
                         + (f" (epoch {epoch})" if _number(epoch) else ""))
        # One train loss per epoch; with a validation split the test set is read only once.
        per_epoch = history.get("train_loss", history.get("test_acc@1"))
        if isinstance(per_epoch, list):
            facts.append(f"{len(per_epoch)} epochs")
        if isinstance(history.get("dataset"), str):
            facts.append(f"dataset {history['dataset'][:40]}")
        if _number(history.get("train_seconds")):
            facts.append(f"{history['train_seconds']:.0f} s of training")
        return (f"{place}: {', '.join(facts) or 'no results recognised'} "
                "(reported for the grader; not graded automatically).")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
