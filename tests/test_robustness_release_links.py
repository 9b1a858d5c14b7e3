# cs-vit: instructor-only (tests of the release tool; not copied into the student release)
"""``cs-vit release`` copies a symbolic link as a link only where that hands out nothing hidden."""
import os
import subprocess

import pytest

from cs_vit.release import ReleaseError, make_release
from tests.test_release import fake_project


def project_with_link(root, target, name="pkg/link.py"):
    """fake_project with the symbolic link ``name`` -> ``target`` (a path as the link holds it)."""
    fake_project(root)
    os.symlink(target, root / name)
    return root


def test_a_link_to_a_plain_file_of_the_project_is_released_as_a_link(tmp_path):
    src = project_with_link(tmp_path / "src", "../datasets/README.md")
    summary = make_release(src, tmp_path / "out")
    link = tmp_path / "out" / "pkg" / "link.py"
    assert "pkg/link.py" in summary.files
    assert link.is_symlink() and os.readlink(link) == "../datasets/README.md"
    assert link.read_text() == "where data goes\n"


def test_an_absolute_link_inside_the_project_is_released_relative(tmp_path):
    src = project_with_link(tmp_path / "src", str(tmp_path / "src" / "datasets" / "README.md"))
    make_release(src, tmp_path / "out")
    assert os.readlink(tmp_path / "out" / "pkg" / "link.py") == "../datasets/README.md"


def test_a_link_to_a_file_with_solution_regions_is_refused(tmp_path):
    src = project_with_link(tmp_path / "src", "mod.py")
    with pytest.raises(ReleaseError, match=r"pkg/link.py is a symbolic link to pkg/mod.py, which "
                                           r"holds solution regions or is instructor-only"):
        make_release(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["../../secret.py", "SECRET"])
def test_a_link_out_of_the_project_is_refused(tmp_path, target):
    (tmp_path / "secret.py").write_text("ANSWER = 42\n")
    target = str(tmp_path / "secret.py") if target == "SECRET" else target
    src = project_with_link(tmp_path / "src", target)
    with pytest.raises(ReleaseError, match=r"pkg/link.py is a symbolic link to .*secret.py, "
                                           r"outside the project"):
        make_release(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_link_listed_by_git_is_checked_too(tmp_path):
    (tmp_path / "secret.py").write_text("ANSWER = 42\n")
    src = project_with_link(tmp_path / "src", "../../secret.py")
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    subprocess.run(["git", "-C", str(src), "add", "pyproject.toml", "pkg"], check=True)
    with pytest.raises(ReleaseError, match="outside the project"):
        make_release(src, tmp_path / "out")
