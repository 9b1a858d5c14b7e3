# cs-vit: instructor-only (grading is built from the solution; the release leaves it out)
"""Grading a class: a Gradescope autograder built from the task markers, and a batch grader.

    cs-vit autograder --out autograder.zip            # or make_autograder("autograder.zip")
    cs-vit grade submissions/ --autograder autograder.zip --jobs 4 --out grades.csv

:mod:`.tasks` finds the tasks and their files, :mod:`.points` their points;
:mod:`.build` writes the zip; :mod:`.expected` computes its expected values from
the solution; :mod:`.batch` runs the zip's ``run_autograder`` over a folder of
submissions. :mod:`.runtime` is what runs inside the autograder.

The package is instructor-only: it needs the solution (the expected values come
from the solution's regions), so the student release leaves it out, and
``cs-vit`` offers these commands only where it is present.
"""
from cs_vit.grading.batch import add_grade_parser, grade_folder
from cs_vit.grading.build import add_autograder_parser, make_autograder
from cs_vit.grading.tasks import AutograderError

__all__ = ["AutograderError", "add_autograder_parser", "add_grade_parser", "add_grading_parsers",
           "grade_folder", "make_autograder"]


def add_grading_parsers(subparsers):
    """Register ``cs-vit autograder`` and ``cs-vit grade``."""
    add_autograder_parser(subparsers)
    add_grade_parser(subparsers)
