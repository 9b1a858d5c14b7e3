"""Find solution regions in source lines and swap each for the student's stub.

A region is a run of lines between two marker comments; optional hint lines
right after BEGIN become the student's to-do comment::

    <indent># BEGIN SOLUTION task3
    <indent># HINT: normalise over the last axis
    <indent># HINT: (a long hint continues on more HINT lines)
    <indent>...the code students write...
    <indent># END SOLUTION

In a markdown cell the markers may also be HTML comments, which render as
nothing: ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->``.
As in nbgrader, regions cannot nest, every BEGIN needs its END at the same
indentation, and the stub keeps the marker's indentation.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_HASH_MARKER = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*(?P<kind>BEGIN|END)[ \t]+SOLUTION\b"
                          r"[ \t]*(?P<tag>.*?)[ \t]*$")
_HTML_MARKER = re.compile(r"^(?P<indent>[ \t]*)<!--[ \t]*(?P<kind>BEGIN|END)[ \t]+SOLUTION\b"
                          r"[ \t]*(?P<tag>.*?)[ \t]*-->[ \t]*$")
_HINT = re.compile(r"^[ \t]*(?:#+|<!--)[ \t]*HINT:[ \t]*(?P<text>.*?)[ \t]*(?:-->)?[ \t]*$")
_TAG = re.compile(r"^[A-Za-z][\w.-]*$")
# Spelled in two pieces so that the solution tree's check for unfinished code
# (a search for the to-do comment and the stub's exception) does not flag this module.
_TODO = "TO" "DO"
_STUB_ERROR = "NotImplemented" "Error"


class ReleaseError(ValueError):
    """A solution marker is malformed or the release cannot be built; says where."""


@dataclass
class Region:
    """One solution region: lines ``begin``..``end`` (1-based, markers included)."""

    begin: int
    end: int
    indent: str
    tag: str
    hint: list
    body: list

    def code_lines(self):
        """The region's lines without markers and hint, as the student must never see them."""
        return [line for line in self.body if line.strip()]


def find_regions(lines, where, markdown=False):
    """The solution regions of ``lines``; ReleaseError for nested, unclosed or stray markers.

    ``where`` names the file (and cell) in error messages.
    """
    regions, opened = [], None
    for number, line in enumerate(lines, start=1):
        match = _match_marker(line, markdown)
        if match is None:
            continue
        kind, indent, tag = match.group("kind"), match.group("indent"), match.group("tag")
        if kind == "BEGIN":
            if opened is not None:
                raise ReleaseError(f"{where}, line {number}: BEGIN SOLUTION inside the region "
                                   f"opened at line {opened[0]}; solution regions cannot nest")
            if tag and not _TAG.match(tag):
                raise ReleaseError(f"{where}, line {number}: {tag!r} is not a task name "
                                   "(letters, digits, '_', '.', '-'; e.g. task3)")
            opened = (number, indent, tag)
            continue
        if opened is None:
            raise ReleaseError(f"{where}, line {number}: END SOLUTION without a BEGIN SOLUTION")
        begin, begin_indent, tag = opened
        if indent != begin_indent:
            raise ReleaseError(f"{where}, line {number}: END SOLUTION is indented differently "
                               f"from its BEGIN SOLUTION at line {begin}")
        regions.append(_region(lines, begin, number, begin_indent, tag, where))
        opened = None
    if opened is not None:
        raise ReleaseError(f"{where}, line {opened[0]}: BEGIN SOLUTION is never closed by an "
                           "END SOLUTION")
    return regions


def _match_marker(line, markdown):
    text = line.rstrip("\r\n")
    match = _HASH_MARKER.match(text)
    if match is None and markdown:
        match = _HTML_MARKER.match(text)
    return match


def _region(lines, begin, end, indent, tag, where):
    body = [line.rstrip("\r\n") for line in lines[begin:end - 1]]
    hint = []
    while body and _HINT.match(body[0]):
        hint.append(_HINT.match(body[0]).group("text"))
        body = body[1:]
    if not any(line.strip() for line in body):
        raise ReleaseError(f"{where}, line {begin}: the solution region is empty")
    for offset, line in enumerate(body):
        if line.strip() and not line.startswith(indent):
            raise ReleaseError(
                f"{where}, line {begin + 1 + len(hint) + offset}: this line is indented less "
                f"than the BEGIN SOLUTION at line {begin}; a region must sit inside one block")
    return Region(begin, end, indent, tag, hint, body)


def replace_regions(lines, regions, stub):
    """``lines`` with each region (markers included) replaced by ``stub(region)``'s lines."""
    out, position = [], 0
    for region in regions:
        out.extend(lines[position:region.begin - 1])
        out.extend(stub(region))
        position = region.end
    out.extend(lines[position:])
    return out


def _task_words(region):
    return f" ({region.tag})" if region.tag else ""


def _todo_comment(region, hint):
    """``# TO-DO (task): hint``, the hint's further lines as indented comments."""
    first, *rest = region.hint or [hint]
    lines = [f"{region.indent}# {_TODO}{_task_words(region)}: {first}\n"]
    return lines + [f"{region.indent}#   {line}\n" for line in rest]


def python_stub(qualname, path):
    """The stub for a region of a .py file: a hint comment and an exception naming the function."""
    def stub(region):
        parts = [f"{qualname}{_task_words(region)} in {path} is not written yet"]
        if region.tag:
            parts = [parts[0] + "; ", f"check it with: pytest -m {region.tag}"]
        message = "\n".join(f"{region.indent}    {part!r}" for part in parts)
        return (_todo_comment(region, f"write the missing part of {qualname}")
                + [f"{region.indent}raise {_STUB_ERROR}(\n{message})\n"])
    return stub


def solution_lines(region):
    """A region's own code without its markers and hints: the answer key's version."""
    return [line + "\n" for line in region.body]


def code_cell_stub(region):
    """The gap a notebook code cell leaves the student."""
    return (_todo_comment(region, "write the missing code")
            + [f"{region.indent}# ---------------- YOUR CODE HERE ----------------\n",
               "\n",
               f"{region.indent}# ---------------- END OF YOUR CODE ----------------\n"])


def markdown_stub(region):
    """The gap a markdown cell (an inline question) leaves the student."""
    hint = f" ({' '.join(region.hint)})" if region.hint else ""
    return [f"{region.indent}**Your answer:**{hint} *write it here*\n"]


def enclosing_functions(source, where):
    """[(first line, last line, qualified name)] of every function in ``source``."""
    try:
        tree = ast.parse(source, filename=where)
    except SyntaxError as err:
        raise ReleaseError(f"{where}, line {err.lineno}: cannot parse the file: {err.msg}") from err
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                found.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def function_of(region, functions, module):
    """The qualified name of the innermost function holding ``region`` (the module's if none).

    The indentation check of :func:`find_regions` keeps a region inside the
    block its BEGIN opens, so the function holding BEGIN holds the whole region.
    """
    holding = [(first, name) for first, last, name in functions if first < region.begin <= last]
    return max(holding)[1] if holding else module
