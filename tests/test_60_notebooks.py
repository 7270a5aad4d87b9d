"""The tutorial notebooks run from top to bottom, and their figures explain themselves.

Each notebook runs once, with two cells added: a first one that notes what
every figure shows (titles, axis labels, tick labels, orientation) each time
it is drawn for the reader, and a last one that prints those notes as JSON.
The figure tests read the notes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebooks

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
IDS = [path.name for path in NOTEBOOKS]
#: Notebooks that must show plots, and how a cell that plots is recognised.
PLOTTING = {"02_analysis_and_masks.ipynb"}
PLOTS = re.compile(r"\.plot\b|\bplt\.(show|imshow)\b")

#: Wraps the canvas method that renders a figure for the notebook, so each
#: figure is described as the reader sees it (the inline backend closes it after).
RECORD_FIGURES = """\
import json as _probe_json

from matplotlib.backend_bases import FigureCanvasBase as _ProbeCanvas
from matplotlib.collections import PathCollection as _ProbePathCollection
from matplotlib.collections import QuadMesh as _ProbeQuadMesh
from matplotlib.patches import Rectangle as _ProbeRectangle

_probe_figures = {}
_probe_print_figure = _ProbeCanvas.print_figure


def _probe_box(artist):
    box = artist.get_window_extent()
    return [float(box.x0), float(box.y0), float(box.x1), float(box.y1)]


def _probe_points(ax):
    points = [line.get_transform().transform(line.get_xydata())
              for line in ax.get_lines() if line.get_visible()]
    points += [dots.get_offset_transform().transform(dots.get_offsets())
               for dots in ax.collections
               if isinstance(dots, _ProbePathCollection) and dots.get_visible()]
    return [[float(x), float(y)] for block in points for x, y in block]


def _probe_axes(ax):
    images = [image.get_array().shape for image in ax.images]
    images += [mesh.get_array().shape for mesh in ax.collections
               if isinstance(mesh, _ProbeQuadMesh)]
    return {
        "colorbar": ax.get_label() == "<colorbar>",
        "title": " ".join(ax.get_title(loc) for loc in ("left", "center", "right")).strip(),
        "xlabel": ax.get_xlabel(),
        "ylabel": ax.get_ylabel(),
        "xticks": [float(tick) for tick in ax.get_xticks()],
        "yticks": [float(tick) for tick in ax.get_yticks()],
        "xticklabels": [label.get_text() for label in ax.get_xticklabels()],
        "yticklabels": [label.get_text() for label in ax.get_yticklabels()],
        "images": [list(shape) for shape in images],
        "y_inverted": bool(ax.yaxis_inverted()),
        # where legends, bars and data points were drawn, in pixels of the figure
        "legends": [_probe_box(legend) for legend in [ax.get_legend()] if legend is not None],
        "bars": [_probe_box(patch) for patch in ax.patches
                 if isinstance(patch, _ProbeRectangle) and patch.get_visible()],
        "points": _probe_points(ax),
    }


def _probe_record(canvas, *args, **kwargs):
    result = _probe_print_figure(canvas, *args, **kwargs)
    figure = canvas.figure
    suptitle = figure._suptitle.get_text() if figure._suptitle is not None else ""
    _probe_figures[id(figure)] = {
        "suptitle": suptitle, "axes": [_probe_axes(ax) for ax in figure.axes],
        "legends": [_probe_box(legend) for legend in figure.legends]}
    return result


_ProbeCanvas.print_figure = _probe_record
"""

REPORT_FIGURES = """\
import os as _probe_os
_probe_stimuli = globals().get("stimuli")
_probe_folder = globals().get("folder")
_probe_held = []
for _probe_fd in _probe_os.listdir("/proc/self/fd"):
    try:
        _probe_held.append(_probe_os.readlink(f"/proc/self/fd/{_probe_fd}"))
    except OSError:  # the descriptor listdir itself used
        pass
print(_probe_json.dumps({
    "figures": list(_probe_figures.values()),
    "stimuli": None if _probe_stimuli is None
    else _probe_stimuli.table[["stimID", "condition"]].astype(str).to_dict("list"),
    "held": [] if _probe_folder is None
    else sorted(p for p in _probe_held if p.startswith(str(_probe_folder))),
}))
"""


def execute(path: Path, folder: Path) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
    """Run a notebook with the probe cells; its own cells run, and what they drew."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = list(notebook.cells)
    notebook.cells = [nbformat.v4.new_code_cell(RECORD_FIGURES), *cells,
                      nbformat.v4.new_code_cell(REPORT_FIGURES)]
    # the kernel starts in folder, so anything a notebook writes stays out of the repo
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(folder)}},
    )
    # raises CellExecutionError, naming the cell and the error, if a cell fails
    client.execute()
    report = notebook.cells[-1]
    text = "".join(output.get("text", "") for output in report.outputs
                   if output.get("name") == "stdout")
    notebook.cells = cells
    return notebook, json.loads(text)


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory):
    """Run each notebook once, for all the tests that look at it."""
    runs: dict[Path, Any] = {}

    def run(path: Path) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
        if path not in runs:
            try:
                runs[path] = execute(path, tmp_path_factory.mktemp(path.stem))
            except Exception as error:  # one failed run, reported by every test of it
                runs[path] = error
        if isinstance(runs[path], Exception):
            raise runs[path]
        return runs[path]

    return run


def plots(figure: dict[str, Any]) -> list[dict[str, Any]]:
    """The axes of a figure that hold a plot, not a colorbar."""
    return [ax for ax in figure["axes"] if not ax["colorbar"]]


def describe(figure: dict[str, Any]) -> str:
    """Name a figure in a failure message by its titles."""
    titles = [figure["suptitle"], *(ax["title"] for ax in plots(figure))]
    return " / ".join(title for title in titles if title) or "an untitled figure"


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebook found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs(path: Path, executed):
    notebook, _ = executed(path)
    plotting = [cell for cell in notebook.cells
                if cell.cell_type == "code" and PLOTS.search(cell.source)]
    for cell in plotting:
        images = [output for output in cell.outputs if "image/png" in output.get("data", {})]
        assert images, f"{path.name}: no plot shown by the cell\n{cell.source}"
    assert plotting or path.name not in PLOTTING, f"{path.name} shows no plot"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_a_notebook_closes_the_files_it_deletes(path: Path, executed):
    # bug: notebook 04 deleted its folder with the per-session files still open (harmless
    # on Linux, an error on Windows, and a habit a reader copies)
    _, report = executed(path)
    assert report["held"] == [], f"{path.name} still holds files of its folder open"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_figures_have_titles_and_axis_labels(path: Path, executed):
    _, report = executed(path)
    assert report["figures"] or path.name not in PLOTTING, f"{path.name}: no figure recorded"
    for figure in report["figures"]:
        name = f"{path.name}: {describe(figure)}"
        axes = plots(figure)
        # a grid of plots says what it shows as a whole, above the titles of its panels
        if len(axes) > 1:
            assert figure["suptitle"], f"{name}: a grid of plots without a title above it"
        assert all(ax["title"] for ax in axes), f"{name}: a plot without a title"
        # a grid of plots labels its outer axes only
        assert any(ax["xlabel"] for ax in axes), f"{name}: no x axis label"
        assert any(ax["ylabel"] for ax in axes), f"{name}: no y axis label"
        for colorbar in (ax for ax in figure["axes"] if ax["colorbar"]):
            assert colorbar["xlabel"] or colorbar["ylabel"], f"{name}: a colorbar without a label"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_maps_and_matrices_have_row_1_on_top(path: Path, executed):
    _, report = executed(path)
    for figure in report["figures"]:
        for ax in plots(figure):
            if ax["images"]:
                assert ax["y_inverted"], (
                    f"{path.name}: {describe(figure)}: the first row is drawn at the bottom")


def _overlap(box: list[float], other: list[float]) -> bool:
    """Whether two boxes (x0, y0, x1, y1) share more than an edge."""
    return (min(box[2], other[2]) > max(box[0], other[0])
            and min(box[3], other[3]) > max(box[1], other[1]))


def _inside(point: list[float], box: list[float]) -> bool:
    return box[0] < point[0] < box[2] and box[1] < point[1] < box[3]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_legends_hide_no_bar_or_point(path: Path, executed):
    _, report = executed(path)
    for figure in report["figures"]:
        legends = [*figure["legends"], *(box for ax in figure["axes"] for box in ax["legends"])]
        for legend in legends:
            for ax in plots(figure):
                hidden = [bar for bar in ax["bars"] if _overlap(bar, legend)]
                assert not hidden, (
                    f"{path.name}: {describe(figure)}: the legend hides {len(hidden)} bar(s)")
                covered = [point for point in ax["points"] if _inside(point, legend)]
                assert not covered, (
                    f"{path.name}: {describe(figure)}: the legend hides {len(covered)} point(s)")


def test_similarity_matrix_names_its_stimuli(executed):
    _, report = executed(NOTEBOOK_DIR / "02_analysis_and_masks.ipynb")
    conditions = dict(zip(report["stimuli"]["stimID"], report["stimuli"]["condition"],
                          strict=True))
    n = len(conditions)
    matrices = [ax for figure in report["figures"] for ax in plots(figure)
                if ax["images"] == [[n, n]]]
    assert len(matrices) == 1, f"expected one {n} x {n} stimulus matrix, found {len(matrices)}"
    [matrix] = matrices
    for axis in ("x", "y"):
        labels = [label for label in matrix[f"{axis}ticklabels"] if label]
        assert matrix[f"{axis}ticks"] == list(range(n)), f"{axis}: not one tick per stimulus"
        named = [[stim for stim in conditions if stim in label] for label in labels]
        assert all(len(stims) == 1 for stims in named), f"{axis}: labels {labels}"
        assert sorted(stim for [stim] in named) == sorted(conditions), f"{axis}: {labels}"
        for label, [stim] in zip(labels, named, strict=True):
            assert conditions[stim] in label, f"{axis}: {label!r} does not say {stim}'s condition"
