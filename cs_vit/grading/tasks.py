# cs-vit: instructor-only (builds the autograder from the solution)
"""The graded tasks: the tags of the solution regions, their files and their titles."""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from cs_vit.release.build import is_instructor_only, project_files
from cs_vit.release.regions import find_regions

TASK_TITLE = re.compile(r'"(?P<task>[\w.-]+): student task \d+, (?P<title>[^("]+?)\s*\(')


class AutograderError(ValueError):
    """The autograder cannot be built as asked; the message says why."""


def task_files(src):
    """{task: [relative paths]}: the released .py files with that task's regions, in task order."""
    tasks = {}
    for relative in project_files(src):
        data = (Path(src) / relative).read_bytes()
        if not relative.endswith(".py") or is_instructor_only(data):
            continue
        for region in find_regions(data.decode("utf-8").splitlines(), relative):
            if region.tag and relative not in tasks.setdefault(region.tag, []):
                tasks[region.tag].append(relative)
    names = [PurePosixPath(f).name for files in tasks.values() for f in files]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise AutograderError(f"task files share the names {clashes}: a flat submission could "
                              "not tell them apart; rename one of them")
    return dict(sorted(tasks.items(), key=lambda item: task_order(item[0])))


def task_order(task):
    """Sort key: task2 before task10."""
    digits = "".join(ch for ch in task if ch.isdigit())
    return (int(digits) if digits else 0, task)


def task_titles(src, tasks):
    """{task: title} from the pytest markers' descriptions in pyproject.toml, else its files."""
    text = (Path(src) / "pyproject.toml").read_text()
    found = {m.group("task"): m.group("title") for m in TASK_TITLE.finditer(text)}
    return {task: found.get(task, ", ".join(files)) for task, files in tasks.items()}
