"""The tutorial notebooks run from top to bottom without an error."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: Notebooks that must show plots, and how a cell that plots is recognised.
PLOTTING = {"02_analysis_and_masks.ipynb"}
PLOTS = re.compile(r"\.plot\b|\bplt\.(show|imshow)\b")


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebook found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    # the kernel starts in tmp_path, so anything a notebook writes stays out of the repo
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # raises CellExecutionError, naming the cell and the error, if a cell fails
    client.execute()
    plotting = [cell for cell in notebook.cells
                if cell.cell_type == "code" and PLOTS.search(cell.source)]
    for cell in plotting:
        images = [output for output in cell.outputs if "image/png" in output.get("data", {})]
        assert images, f"{path.name}: no plot shown by the cell\n{cell.source}"
    assert plotting or path.name not in PLOTTING, f"{path.name} shows no plot"
