"""Build the student tree: copy the project, stub out solutions, clear notebook outputs.

    cs-vit release --out ../student          # or: make_release(".", "../student")

Files come from ``git ls-files`` (tracked and untracked-but-not-ignored) in a
git checkout, else from a walk that skips virtualenvs, caches, runs and the
downloaded datasets. A file whose first lines hold the comment
``# cs-vit: instructor-only`` (the fast tier, tests of the release tool) is left
out, and ``README.student.md`` becomes the student tree's ``README.md``.
A symbolic link is released as a link, and only when it points inside the
project at something students may see; one that points outside the project,
or at a file with solution regions or left out, stops the release.

``cs-vit release --with-solutions`` keeps each region's code (markers and hints
removed) in a tree otherwise the same as the students': the answer key, and the
tree of a student who wrote the textbook answers.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cs_vit.release.regions import (
    ReleaseError, code_cell_stub, enclosing_functions, find_regions, function_of,
    markdown_stub, python_stub, replace_regions, solution_lines,
)

INSTRUCTOR_ONLY = re.compile(r"^#[ \t]*cs-vit:[ \t]*instructor-only\b", re.MULTILINE)
_HEAD_LINES = 5
SKIPPED_DIRS = {".git", ".venv", ".venv-ci", "__pycache__", "runs", "build", "dist",
                ".pytest_cache", ".hypothesis", ".ipynb_checkpoints", ".device"}
# Only the instructions and fetch scripts of datasets/ belong to the project, not the data.
DATASET_FILES = {".md", ".sh", ".py"}
# The student tree's README (set-up, tasks, checks) replaces the solution's README.md.
STUDENT_README = "README.student.md"


@dataclass
class ReleaseSummary:
    """What :func:`make_release` did: files written, regions stubbed per file, files left out."""

    out_dir: Path
    files: list = field(default_factory=list)
    regions: dict = field(default_factory=dict)
    instructor_only: list = field(default_factory=list)


def project_root():
    """The source checkout this package lives in, or None for an installed copy."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def make_release(src_root, out_dir, keep_solutions=False):
    """Write the student version of the project at ``src_root`` into ``out_dir``.

    Every solution region of a .py file becomes a to-do comment and a
    NotImplementedError naming the function and task; in a notebook it becomes a
    marked gap; marker lines go; notebook outputs are cleared; instructor-only
    files are left out; ``README.student.md`` becomes ``README.md``. With
    ``keep_solutions=True`` each region keeps its code instead (markers and hints
    removed). ``out_dir`` must be new (or empty) and outside ``src_root``.
    Returns a :class:`ReleaseSummary`; raises ReleaseError.
    """
    src, out = Path(src_root).resolve(), Path(out_dir).resolve()
    if not (src / "pyproject.toml").is_file():
        raise ReleaseError(f"{src} is not the project root (it has no pyproject.toml)")
    if out == src or src in out.parents:
        raise ReleaseError(f"the release folder {out} is inside the project {src}; "
                           "choose a folder outside it")
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} already exists and is not empty; choose a new folder "
                           "or delete it first")
    summary = ReleaseSummary(out)
    released, links = {}, {}
    files = project_files(src)
    for relative in files:
        if (src / relative).is_symlink():
            links[relative] = link_target(src, relative)
            continue
        data = (src / relative).read_bytes()
        if is_instructor_only(data) or (relative == "README.md" and STUDENT_README in files):
            summary.instructor_only.append(relative)
            continue
        data, count = release_file(relative, data, keep_solutions)
        released["README.md" if relative == STUDENT_README else relative] = (data, relative)
        if count:
            summary.regions[relative] = count
    for relative, (data, source) in released.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        shutil.copymode(src / source, target)
        summary.files.append(relative)
    for relative, target in links.items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, out / relative)
        summary.files.append(relative)
    return summary


def link_target(src, relative):
    """What the symbolic link ``relative`` points at, relative to its folder, for the release.

    Raises ReleaseError if it points outside the project (the release would hand
    out that content), at nothing, or at a file the release stubs out or leaves out.
    """
    link = src / relative
    target = link.resolve()
    if target != src and src not in target.parents:
        raise ReleaseError(f"{relative} is a symbolic link to {target}, outside the project, so "
                           "the release would hand out that file; replace the link by a copy of "
                           "what students may see, or remove it")
    if not target.exists():
        raise ReleaseError(f"{relative} is a symbolic link to {target}, which does not exist; "
                           "fix the link or remove it")
    inside = target.relative_to(src).as_posix()
    if target.is_file():
        data = target.read_bytes()
        if is_instructor_only(data) or release_file(inside, data)[1]:
            raise ReleaseError(f"{relative} is a symbolic link to {inside}, which holds solution "
                               "regions or is instructor-only, so the link must not be released; "
                               "remove it, or link to a file students may see")
    return os.path.relpath(target, link.parent.resolve())


def project_files(src):
    """Relative paths (posix strings, sorted) of the files that make up the project."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(src), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return sorted(_walk(src))
    return sorted(p for p in listed if p and ((src / p).is_file() or (src / p).is_symlink()))


def _walk(src):
    for folder, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        relative = Path(folder).relative_to(src)
        for name in files:
            path = relative / name
            in_datasets = path.parts[0] == "datasets"
            if in_datasets and (len(path.parts) > 2 or path.suffix not in DATASET_FILES):
                continue
            yield path.as_posix()


def is_instructor_only(data):
    """Whether a file's bytes hold the instructor-only comment in their first lines."""
    head = b"\n".join(data.splitlines()[:_HEAD_LINES])
    return INSTRUCTOR_ONLY.search(head.decode("utf-8", "replace")) is not None


def release_file(relative, data, keep_solutions=False):
    """(student bytes, number of solution regions) for one project file."""
    if relative.endswith(".py"):
        text, count = strip_python(data.decode("utf-8"), relative, keep_solutions)
        return text.encode("utf-8"), count
    if relative.endswith(".ipynb"):
        text, count = strip_notebook(data.decode("utf-8"), relative, keep_solutions)
        return text.encode("utf-8"), count
    return data, 0


def strip_python(source, where, keep_solutions=False):
    """(student source, number of regions) for a .py file's text."""
    lines = source.splitlines(keepends=True)
    regions = find_regions(lines, where)
    if not regions:
        return source, 0
    functions = enclosing_functions(source, where)
    module = Path(where).stem

    def stub(region):
        if keep_solutions:
            return solution_lines(region)
        return python_stub(function_of(region, functions, module), where)(region)

    released = "".join(replace_regions(lines, regions, stub))
    try:
        compile(released, where, "exec")
    except SyntaxError as err:
        raise ReleaseError(f"{where}: the student version does not parse at line {err.lineno} "
                           f"({err.msg}); check where its solution regions start and end") from err
    return released, len(regions)


def strip_notebook(text, where, keep_solutions=False):
    """(student notebook JSON, number of regions): regions gapped, outputs cleared."""
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReleaseError(f"{where}: not a valid notebook ({err})") from err
    count = 0
    for index, cell in enumerate(notebook.get("cells", [])):
        source = cell.get("source", "")
        lines = (source if isinstance(source, list) else [source])
        lines = "".join(lines).splitlines(keepends=True)
        markdown = cell.get("cell_type") == "markdown"
        regions = find_regions(lines, f"{where}, cell {index}", markdown=markdown)
        if regions:
            stub = markdown_stub if markdown else code_cell_stub
            stub = solution_lines if keep_solutions else stub
            cell["source"] = "".join(replace_regions(lines, regions, stub))
            count += len(regions)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
            cell.get("metadata", {}).pop("execution", None)
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", count


def add_release_parser(subparsers):
    """Register ``cs-vit release --out DIR [--src ROOT]``."""
    p = subparsers.add_parser(
        "release", help="write the student version of the project (solutions stubbed out)")
    p.add_argument("--out", required=True, help="new folder for the student tree")
    p.add_argument("--src", default=project_root(),
                   help="project root to release (default: this checkout)")
    p.add_argument("--with-solutions", action="store_true",
                   help="keep the solution regions' code (an answer key without the fast tier)")
    p.set_defaults(func=_release_command)


def _release_command(args):
    if args.src is None:
        raise SystemExit("cs-vit release: this cs_vit is not a source checkout; pass --src "
                         "with the project root")
    try:
        summary = make_release(args.src, args.out, keep_solutions=args.with_solutions)
    except ReleaseError as err:
        raise SystemExit(f"cs-vit release: {err}") from err
    regions = sum(summary.regions.values())
    done = "kept (markers removed)" if args.with_solutions else "stubbed"
    print(f"wrote {len(summary.files)} files to {summary.out_dir}")
    print(f"  {regions} solution regions {done} in {len(summary.regions)} files:")
    for path, count in sorted(summary.regions.items()):
        print(f"    {path}: {count}")
    if summary.instructor_only:
        print(f"  left out (instructor-only): {', '.join(summary.instructor_only)}")
    return 0
