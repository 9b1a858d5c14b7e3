# cs-vit: instructor-only (part of the grading runtime)
"""results.json in Gradescope's format: the score, the output, one entry per task (or case)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

NOT_AUTOGRADED = ("Not graded automatically: the notebook's inline questions and its CIFAR-10 "
                  "training run; your instructor grades them by hand.")
INDEPENDENCE = ("Each task is graded on its own: where its code calls another task's layer, "
                "the reference solution's outputs stand in, so a mistake costs points only in "
                "the task that holds it.")


class Report:
    """The results.json being built; :meth:`write` always leaves a valid file."""

    def __init__(self, path):
        self.path, self.started = Path(path), time.monotonic()
        self.tests, self.lines = [], []

    def write(self, status=None):
        score = round(sum(t["score"] for t in self.tests), 4)
        total = round(sum(t["max_score"] for t in self.tests), 4)
        head = status or f"Autograded score: {score:g} / {total:g} points."
        results = {"score": score, "execution_time": round(time.monotonic() - self.started, 1),
                   "output": "\n\n".join([head] + self.lines), "visibility": "visible",
                   "stdout_visibility": "hidden", "tests": self.tests}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(results, indent=1))
        os.replace(temporary, self.path)


def entry(name, number, score, max_score, output, visibility):
    """One Gradescope test entry; scores unrounded, so that per-case shares add up exactly."""
    return {"name": name, "number": number, "score": score, "max_score": max_score,
            "status": "passed" if score >= max_score else "failed", "output": output,
            "visibility": visibility}


def entries(key, title, number, judged, per_test, visibility):
    """Results entries for ``judged`` [(case, points, passed, text)]: one, or one per case."""
    if per_test:
        return [entry(f"{key}: {case['name']}", f"{number}.{i}", points if passed else 0.0,
                      points, text, visibility)
                for i, (case, points, passed, text) in enumerate(judged, start=1)]
    passed_count = sum(passed for _, _, passed, _ in judged)
    head = f"{passed_count} of {len(judged)} checks passed."
    return [entry(f"{key}: {title}", str(number),
                  sum(points for _, points, passed, _ in judged if passed),
                  sum(points for _, points, _, _ in judged),
                  "\n".join([head] + [text for *_, text in judged]), visibility)]
