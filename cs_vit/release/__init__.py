"""The student release: the project with every solution region stubbed out.

Instructors mark the code students write with ``# BEGIN SOLUTION task3`` /
``# END SOLUTION`` comment lines (an optional ``# HINT: ...`` line first);
``cs-vit release --out DIR`` or :func:`make_release` writes the student tree.
"""
from cs_vit.release.build import (
    add_release_parser, is_instructor_only, make_release, project_files, release_file,
)
from cs_vit.release.regions import ReleaseError, find_regions

__all__ = ["ReleaseError", "add_release_parser", "find_regions", "is_instructor_only",
           "make_release", "project_files", "release_file"]
