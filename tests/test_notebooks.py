# cs-vit: instructor-only (the student notebooks have gaps to fill, so they cannot run as they are)
"""Every course notebook runs top to bottom in quick mode, as CI runs it.

Quick mode (``CS_VIT_QUICK=1``) swaps in the 8x8 digits bundled with
scikit-learn and tiny models, so each notebook needs no download and runs in
well under a minute.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["ViT.ipynb", "Patches_and_Attention.ipynb", "Image_Folder.ipynb"]
CELL_TIMEOUT_S = 120


def test_the_course_has_these_notebooks():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name):
    notebook = json.loads((NOTEBOOKS / name).read_text())
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell["outputs"] == [] and cell["execution_count"] is None, "".join(cell["source"])


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom_in_quick_mode(name, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("CS_VIT_QUICK", "1")
    monkeypatch.delenv("CS_VIT_DATA_DIR", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # The "python3" kernel is started with this interpreter (jupyter_client swaps in
    # sys.executable for "python"), so it imports the cs_vit under test.
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
    images = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if "image/png" in output.get("data", {})]
    assert images, "the notebook showed no plot"


def test_the_checks_of_the_stored_notebooks_need_neither_nbformat_nor_nbclient(tmp_path):
    for package in ("nbformat", "nbclient"):
        (tmp_path / f"{package}.py").write_text("raise ImportError('hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         f"{__file__}::test_the_course_has_these_notebooks",
         f"{__file__}::test_notebook_is_stored_without_outputs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "4 passed" in result.stdout, result.stdout[-2000:]
